//! Compare the CRDT engines on a OneFolder-shaped library — the engine half of
//! `cargo xtask bench`, small enough to run in seconds and easy to point at your own data.
//!
//! ```sh
//! cargo run --release -p onefolder-examples --example bench_engines              # --small: 2 000 files
//! cargo run --release -p onefolder-examples --example bench_engines -- --files 100000 --tags 2000
//! ```
//!
//! For every engine compiled into `onefolder-bench` it measures, each against the raw engine:
//! building the library through the model, the snapshot size, loading it, and the bytes one tag
//! assignment puts on the shared medium (segment header included).
//!
//! **Your own data:** the library is `onefolder_bench::Workload`, a deterministic generator.
//! To measure your own library instead, replace `edits()` below with your files and tags
//! (e.g. read from an export: `onefolder_model::Export::from_json`) and keep the rest.

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use onefolder_bench::backends::{ENGINES, EngineFn};
use onefolder_bench::measure::{self, BuildReport};
use onefolder_bench::{Preset, Workload};
use onefolder_core::segment::HEADER_LEN;

/// The library to measure: 2 000 files / 40 tags by default (`--small`), or `--files N --tags N`.
fn workload() -> Result<Workload> {
    let mut preset = Preset { name: "custom".into(), files: 2_000, tags: 40, ..Preset::quick() };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut number = || -> Result<usize> { Ok(it.next().context("a number")?.parse()?) };
        match flag.as_str() {
            "--small" => {}
            "--files" => preset.files = number()?,
            "--tags" => preset.tags = number()?,
            other => bail!("unknown option {other:?} (--small, --files N, --tags N)"),
        }
    }
    Ok(Workload::new(preset))
}

/// Bytes of a segment carrying one new tag assignment made on an engine that holds the library.
fn one_assignment_bytes(engine: EngineFn, w: &Workload, snapshot: &[u8]) -> Result<usize> {
    let mut e = engine();
    e.load_snapshot(snapshot)?;
    let edit = w.new_assignments(0, 0, 1).next().context("one edit")?;
    e.write(&w.ops(edit, &mut HashMap::new()))?;
    let change = e.take_local_changes()?.context("a change")?;
    Ok(HEADER_LEN + change.len())
}

fn main() -> Result<()> {
    let w = workload()?;
    let p = w.preset();
    println!(
        "{} files, {} tags (5 levels), {} assignments = {} edits per engine\n",
        p.files,
        p.tags,
        p.assignments(),
        p.edits()
    );
    println!(
        "{:<10} {:>12} {:>14} {:>7} {:>12} {:>12} {:>14}",
        "engine", "raw build", "model build", "ratio", "snapshot", "load", "1 assignment"
    );
    for (name, engine) in ENGINES {
        let tmp = tempfile::tempdir()?;
        let raw: BuildReport = measure::build_raw(*engine, &w, Some(&measure::snapshot_path(tmp.path())))?;
        let model = measure::build_bare(*engine, &w)?;
        let load_ms = measure::open_raw(*engine, tmp.path())?.ms;
        let snapshot = std::fs::read(measure::snapshot_path(tmp.path()))?;
        let one = one_assignment_bytes(*engine, &w, &snapshot)?;
        println!(
            "{name:<10} {:>9.0} ms {:>11.0} ms {:>6.2}× {:>9.0} kB {:>9.1} ms {:>12} B",
            raw.ms,
            model.ms,
            model.ms / raw.ms,
            raw.snapshot_bytes as f64 / 1000.0,
            load_ms,
            one
        );
    }
    println!("\nThe full matrix (stores, sync, propagation, convergence): cargo xtask bench --quick");
    Ok(())
}
