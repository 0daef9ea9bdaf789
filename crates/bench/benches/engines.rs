//! Micro-benchmarks of each engine adapter compiled in (`onefolder_bench::backends::ENGINES`):
//! one tag assignment (write + take the local change), applying a peer's assignment, merging
//! 100 changes, and snapshot / load of a 1 000-file library.
//!
//! `cargo bench -p onefolder-bench --bench engines`

use std::collections::HashMap;

use onefolder_bench::backends::{ENGINES, engine, names};
use onefolder_bench::workload::{Preset, Workload};
use onefolder_core::Engine;

fn main() {
    divan::main();
}

fn engine_names() -> Vec<&'static str> {
    names(ENGINES)
}

/// A 1 000-file, 50-tag library (3 000 assignments) and its workload.
fn small_library(name: &str) -> (Box<dyn Engine>, Workload) {
    let w = Workload::new(Preset { name: "custom".into(), files: 1_000, tags: 50, ..Preset::quick() });
    let mut e = engine(name).expect("compiled in")();
    let mut orders = HashMap::new();
    for edit in w.edits() {
        e.write(&w.ops(edit, &mut orders)).expect("write");
    }
    e.take_local_changes().expect("take");
    (e, w)
}

#[divan::bench(args = engine_names())]
fn assign_and_take(bencher: divan::Bencher, name: &str) {
    let (mut e, w) = small_library(name);
    let mut edits = w.new_assignments(0, 0, usize::MAX / 2);
    let mut orders = HashMap::new();
    bencher.bench_local(|| {
        let ops = w.ops(edits.next().expect("endless"), &mut orders);
        e.write(&ops).expect("write");
        e.take_local_changes().expect("take")
    });
}

#[divan::bench(args = engine_names())]
fn apply_one_assignment(bencher: divan::Bencher, name: &str) {
    let (base, w) = small_library(name);
    let snapshot = base.snapshot().expect("snapshot");
    let mut peer = base.new_empty();
    peer.load_snapshot(&snapshot).expect("load");
    let mut orders = HashMap::new();
    let edit = w.new_assignments(1, 0, 1).next().expect("one");
    peer.write(&w.ops(edit, &mut orders)).expect("write");
    let change = peer.take_local_changes().expect("take").expect("a change");
    bencher
        .with_inputs(|| {
            let mut e = base.new_empty();
            e.load_snapshot(&snapshot).expect("load");
            e
        })
        .bench_local_refs(|e| e.apply_remote(&change).expect("apply"));
}

#[divan::bench(args = engine_names())]
fn merge_100_changes(bencher: divan::Bencher, name: &str) {
    let (mut e, w) = small_library(name);
    let mut orders = HashMap::new();
    let changes: Vec<Vec<u8>> = w
        .new_assignments(2, 0, 100)
        .map(|edit| {
            e.write(&w.ops(edit, &mut orders)).expect("write");
            e.take_local_changes().expect("take").expect("a change")
        })
        .collect();
    let parts: Vec<&[u8]> = changes.iter().map(Vec::as_slice).collect();
    bencher.bench_local(|| e.merge_changes(divan::black_box(&parts)).expect("merge"));
}

#[divan::bench(args = engine_names())]
fn snapshot_1k_files(bencher: divan::Bencher, name: &str) {
    let (e, _) = small_library(name);
    bencher.bench_local(|| e.snapshot().expect("snapshot"));
}

#[divan::bench(args = engine_names())]
fn load_1k_files(bencher: divan::Bencher, name: &str) {
    let (e, _) = small_library(name);
    let snapshot = e.snapshot().expect("snapshot");
    bencher.bench_local(|| {
        let mut fresh = e.new_empty();
        fresh.load_snapshot(&snapshot).expect("load");
        fresh
    });
}
