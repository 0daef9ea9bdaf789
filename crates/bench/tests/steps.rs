//! Every measurement runs on a tiny workload and counts what it should. No timing assertion:
//! times are only checked to be numbers.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use onefolder_bench::backends::{self, Backend};
use onefolder_bench::measure;
use onefolder_bench::{Preset, Workload};
use onefolder_core::segment::HEADER_LEN;
use onefolder_core::{Document, Engine, Record, Value};
use onefolder_model::{FILES, LOCATIONS, Library, SEARCHES, TAGS, layout};

fn tiny() -> Preset {
    Preset {
        name: "custom".into(),
        files: 120,
        tags: 20,
        ingest_edits: 50,
        propagation_edits: 4,
        idle_peers: 3,
        idle_segments_per_peer: 2,
        converge_devices: 3,
        converge_edits: 10,
        converge_base_files: 40,
        flush_every: 100,
        budget_secs: 60,
    }
}

/// Every engine compiled in, each with a different store in turn (so both stores are covered
/// without running the whole matrix in debug builds).
fn pairs() -> Vec<Backend> {
    let stores = backends::names(backends::STORES);
    backends::names(backends::ENGINES)
        .into_iter()
        .enumerate()
        .map(|(i, e)| Backend::by_name(e, stores[i % stores.len()]).expect("compiled in"))
        .collect()
}

/// Every record of every collection, without the `dateAdded` timestamps the model takes from
/// the clock.
fn contents(e: &dyn Engine) -> BTreeMap<&'static str, BTreeMap<String, Record>> {
    [FILES, TAGS, LOCATIONS, SEARCHES]
        .into_iter()
        .map(|c| {
            let mut coll = e.collection(c).expect("read");
            for r in coll.values_mut() {
                r.remove("dateAdded");
                if let Some(mut meta) = layout::record_meta(r) {
                    meta.date_added = 0;
                    r.insert(layout::FILE_META.into(), meta.encode());
                }
            }
            (c, coll)
        })
        .collect()
}

#[test]
fn raw_ops_write_what_the_model_writes() {
    for b in pairs() {
        raw_ops_match_model(b);
    }
}

fn raw_ops_match_model(b: Backend) {
    let w = Workload::new(tiny());
    let engine = b.engine;
    let lib = Library::new(Mutex::new(engine()));
    let mut raw = engine();
    let mut orders = HashMap::new();
    for edit in w.edits() {
        w.apply_model(&lib, edit).expect("model edit");
        raw.write(&w.ops(edit, &mut orders)).expect("raw edit");
    }
    let model = lib.doc().read(contents);
    assert_eq!(model, contents(raw.as_ref()), "{b:?}");
    assert_eq!(model[FILES].len(), 120);
    assert_eq!(model[TAGS].len(), 20);
    let assigned: usize = model[FILES].values().map(|r| r[layout::FILE_TAGS].as_set().map_or(0, |s| s.len())).sum();
    assert_eq!(assigned, 360);
    assert!(model[TAGS].values().any(|r| r["parent"] == Value::Null));
}

#[test]
fn every_step_runs_and_counts() {
    for b in pairs() {
        every_step(b);
    }
}

fn every_step(b: Backend) {
    let w = Workload::new(tiny());
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("pair");

    let raw = measure::build_raw(b.engine, &w, None).expect("build-raw");
    assert_eq!(raw.edits, w.preset().edits());
    let bare = measure::build_bare(b.engine, &w).expect("build-bare");
    assert_eq!(bare.edits, w.preset().edits());

    let built = measure::build(&b, &w, &dir).expect("build");
    assert_eq!(built.edits, w.preset().edits());
    assert!(built.segments >= 2, "flushed every 100 edits: {built:?}");
    assert!(measure::snapshot_path(&dir).exists());

    let open = measure::open(&b, &w, &dir).expect("open");
    assert_eq!(open.files, 120);
    let target = onefolder_bench::prototype::query_target(&w);
    assert_eq!(open.tag_query_files, Some(target.files), "the model's tag query finds what the prototype's does");
    let compact = measure::compact(&b, &dir).expect("compact");
    // One log entry per batch since the build's last own snapshot segment, which folded the
    // store's log with the same bytes: at most one per batch, and fewer here (the tiny build's
    // own snapshot segment folded its first batch).
    let batches = w.preset().edits().div_ceil(measure::BUILD_BATCH);
    assert!(compact.log_entries_before < batches, "{compact:?}");
    assert_eq!(compact.log_entries_after, 0);
    assert_eq!(measure::open(&b, &w, &dir).expect("open").files, 120);
    let raw_open = measure::open_raw(b.engine, &dir).expect("open-raw");
    assert_eq!(raw_open.files, 120);
    assert!(raw_open.ms.is_finite());

    let bytes = measure::bytes(&b, &w, &dir).expect("bytes");
    assert!(bytes.one_edit > HEADER_LEN as u64, "{bytes:?}");
    assert!(bytes.hundred_edits_100_cycles > 100 * HEADER_LEN as u64);
    assert!(bytes.hundred_edits_1_cycle < bytes.hundred_edits_100_cycles);
    assert_eq!(bytes.idle_10_cycles, 0);
    assert_eq!(bytes.hundred_edits_100_cycles_prototype, 100 * bytes.hundred_edits_1_cycle_prototype);

    let ingest = measure::ingest(&b, &w, &dir).expect("ingest");
    assert_eq!(ingest.edits, 50);
    assert!(ingest.segment_bytes > HEADER_LEN as u64);

    let prop = measure::propagation(&b, &w, &dir).expect("propagation");
    assert_eq!(prop.edits, 4);
    assert!(prop.p50_ms <= prop.p99_ms && prop.p99_ms <= prop.max_ms);

    let idle = measure::idle(&b, &w, &dir).expect("idle");
    assert_eq!(idle.reads, 0, "an idle pass read segments: {idle:?}");
    // 3 idle peers, 3 ingest peers, the propagation writer.
    assert_eq!(idle.peers, 7);
    assert_eq!(idle.segments, 6);

    let conv = measure::converge(&b, w.preset(), &tmp.path().join("converge")).expect("converge");
    assert!(conv.converged, "{b:?}: {conv:?}");
    assert_eq!(conv.devices, 3);
    assert!(conv.segments >= 3, "{conv:?}");
}

#[test]
fn quantile_is_nearest_rank() {
    let v: Vec<f64> = (1..=200).map(f64::from).collect();
    assert_eq!(measure::quantile(&v, 0.5), 100.0);
    assert_eq!(measure::quantile(&v, 0.99), 198.0);
    assert_eq!(measure::quantile(&v[..1], 0.99), 1.0);
    assert!(measure::quantile(&[], 0.5).is_nan());
}
