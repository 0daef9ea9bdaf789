//! Every measurement of `cargo xtask bench`, each a function of an engine factory (and a store
//! factory where the store takes part) plus a working directory.
//!
//! The steps of one engine × store pair share a working directory `dir`:
//!
//! ```text
//! dir/library/onefolder_tags/…   the shared folder (FolderTransport)
//! dir/state/                     the device's local store
//! dir/snapshot.bin               the engine snapshot of W after `build`
//! ```
//!
//! and run in this order, each in its own process so that peak RSS belongs to one step:
//! [`build`] → [`open`] (as the import left the store) → [`compact`] → [`open`] (compacted)
//! → [`join`] (from snapshots, then from every delta) → [`bytes`] → [`ingest`] →
//! [`propagation`] → [`idle`]; [`converge`] uses its own folder.
//! [`build_raw`], [`build_bare`] and [`open_raw`] are the engine-only baselines.
//!
//! Times are wall-clock milliseconds (`f64`); nothing here asserts on a time.

use onefolder_core::TransportExt;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use onefolder_core::names::{SegmentName, delta_name};
use onefolder_core::segment::{self, Expect, SegmentKind};
use onefolder_core::{
    AppliedSegment, DeviceId, Document, Engine, Indexed, LibraryManifest, Op, OpenMode, Replica, ReplicaConfig,
    StatusEvent, Transport,
};
use onefolder_model::{FILES, Library};
use onefolder_transport_folder::FolderTransport;
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;

use crate::backends::{Backend, EngineFn};
use std::sync::atomic::Ordering;

use crate::metered::{Meter, Metered};
use crate::workload::{Preset, Workload};

/// Milliseconds since `t`.
pub fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// The shared library folder of a working directory.
pub fn library_dir(dir: &Path) -> PathBuf {
    dir.join("library")
}

/// The device's local state directory of a working directory.
pub fn state_dir(dir: &Path) -> PathBuf {
    dir.join("state")
}

/// The engine snapshot written by [`build`].
pub fn snapshot_path(dir: &Path) -> PathBuf {
    dir.join("snapshot.bin")
}

/// A tokio runtime like an app's: two worker threads.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}

/// Production replica settings, with a name and an open mode.
pub fn config(name: &str, mode: OpenMode) -> ReplicaConfig {
    ReplicaConfig { device_name: name.to_owned(), mode, ..ReplicaConfig::default() }
}

fn folder(dir: &Path) -> Arc<dyn Transport> {
    Arc::new(FolderTransport::for_library(library_dir(dir)))
}

async fn open_replica(b: &Backend, dir: &Path, transport: Arc<dyn Transport>, mode: OpenMode) -> Result<Replica> {
    let store = (b.store)(&state_dir(dir))?;
    Replica::open((b.engine)(), store, transport, config("bench-device", mode)).await.context("opening the replica")
}

fn manifest(dir: &Path) -> Result<LibraryManifest> {
    let path = library_dir(dir).join(onefolder_transport_folder::TAGS_DIR).join(onefolder_core::names::MANIFEST_FILE);
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(serde_json::from_slice(&bytes)?)
}

fn count_files(e: &dyn Engine) -> Result<usize> {
    Ok(e.ids(FILES)?.len())
}

/// Result of building the workload.
#[derive(Clone, Debug, Serialize)]
pub struct BuildReport {
    /// Edits made.
    pub edits: usize,
    /// Wall time of the edits (and, through a replica, of the flushes).
    pub ms: f64,
    /// Size of the engine snapshot afterwards.
    pub snapshot_bytes: u64,
    /// Segments written to the shared medium (replica only).
    pub segments: u64,
    /// Bytes written to the shared medium (replica only).
    pub segment_bytes: u64,
}

/// Edits per batch of pre-generated ops in [`build_raw`]: generating ops is not timed.
const RAW_CHUNK: usize = 4096;

/// Baseline: the workload's op batches written straight into an engine (`Engine::write`, then
/// the local change is taken and dropped, as nothing syncs a bare engine). Op generation is not
/// timed. Writes the snapshot to `out` when given.
pub fn build_raw(engine: EngineFn, w: &Workload, out: Option<&Path>) -> Result<BuildReport> {
    let mut e = engine();
    let mut orders = HashMap::new();
    let mut edits = w.edits().peekable();
    let mut total = Duration::ZERO;
    let mut count = 0;
    while edits.peek().is_some() {
        let chunk: Vec<_> = edits.by_ref().take(RAW_CHUNK).map(|edit| w.ops(edit, &mut orders)).collect();
        count += chunk.len();
        let t = Instant::now();
        for ops in &chunk {
            e.write(ops)?;
            e.take_local_changes()?;
        }
        total += t.elapsed();
    }
    let snapshot = e.snapshot()?;
    if let Some(out) = out {
        std::fs::write(out, &snapshot)?;
    }
    ensure!(count_files(e.as_ref())? == w.preset().files, "raw build lost files");
    Ok(BuildReport {
        edits: count,
        ms: total.as_secs_f64() * 1000.0,
        snapshot_bytes: snapshot.len() as u64,
        segments: 0,
        segment_bytes: 0,
    })
}

/// The workload through the model (`onefolder_model::Library`) on a bare engine: the model's
/// own cost (its reads and checks) without any store or transport.
pub fn build_bare(engine: EngineFn, w: &Workload) -> Result<BuildReport> {
    // The layer a replica puts on its engine too: it answers the model's tag-tree reads.
    let lib = Library::new(Mutex::new(Box::new(Indexed::new(engine())) as Box<dyn Engine>));
    let mut total = Duration::ZERO;
    let mut edits = 0;
    let mut all = w.edits().peekable();
    while all.peek().is_some() {
        // The calls' arguments are made before the timer, as `build_raw` makes its ops.
        let chunk: Vec<_> = all.by_ref().take(RAW_CHUNK).map(|edit| w.model_edit(edit)).collect();
        let t = Instant::now();
        for edit in &chunk {
            edit.apply(&lib)?;
        }
        total += t.elapsed();
        edits += chunk.len();
    }
    let ms = total.as_secs_f64() * 1000.0;
    let snapshot_bytes = lib.doc().read(|e| e.snapshot())?.len() as u64;
    ensure!(lib.doc().read(count_files)? == w.preset().files, "bare build lost files");
    Ok(BuildReport { edits, ms, snapshot_bytes, segments: 0, segment_bytes: 0 })
}

/// Edits per [`Library::in_batch`] in [`build`]: what the CLI's index run commits at once.
pub const BUILD_BATCH: usize = 500;

/// The workload through the model on a replica, in batches of [`BUILD_BATCH`] edits (an
/// import): each batch is committed to the store before it returns, and the unflushed edits go
/// to the shared folder once `preset.flush_every` more edits were made (a busy import under the
/// debounce), then once more at the end. Creates the library in
/// `dir` and writes the final engine snapshot to [`snapshot_path`].
pub fn build(b: &Backend, w: &Workload, dir: &Path) -> Result<BuildReport> {
    std::fs::create_dir_all(library_dir(dir))?;
    runtime()?.block_on(async {
        let (transport, meter) = Metered::wrap(folder(dir));
        let replica = Arc::new(open_replica(b, dir, transport, OpenMode::Create).await?);
        let lib = Library::new(replica.clone());
        meter.reset();
        let every = w.preset().flush_every.max(1);
        let mut total = Duration::ZERO;
        let mut edits = 0;
        let mut all = w.edits().peekable();
        while all.peek().is_some() {
            // One batch: a burst as an import writes it, committed once. The calls' arguments
            // are made before the timer, as `build_raw` makes its ops.
            let burst: Vec<_> = all.by_ref().take(BUILD_BATCH).map(|edit| w.model_edit(edit)).collect();
            let t = Instant::now();
            lib.in_batch(|batch| burst.iter().try_for_each(|edit| edit.apply(batch)))?;
            let flushes_before = edits / every;
            edits += burst.len();
            if edits / every > flushes_before {
                replica.flush().await?;
            }
            total += t.elapsed();
        }
        let t = Instant::now();
        replica.flush().await?;
        total += t.elapsed();
        let ms = total.as_secs_f64() * 1000.0;
        let snapshot = replica.read(|e| e.snapshot())?;
        std::fs::write(snapshot_path(dir), &snapshot)?;
        ensure!(replica.read(count_files)? == w.preset().files, "replica build lost files");
        Ok(BuildReport {
            edits,
            ms,
            snapshot_bytes: snapshot.len() as u64,
            segments: meter.writes.load(std::sync::atomic::Ordering::Relaxed),
            segment_bytes: meter.segment_bytes(),
        })
    })
}

/// Result of a cold open.
#[derive(Clone, Debug, Serialize)]
pub struct OpenReport {
    /// Wall time until the library is usable.
    pub ms: f64,
    /// Files in the opened document (a sanity check).
    pub files: usize,
    /// Peak RSS right after the open, KiB.
    pub peak_rss_kib: Option<u64>,
    /// The prototype's tag query through the model (`Library::files_with_tag`, recursive,
    /// the files read), first after the open: it builds the tag index. Replica opens only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag_query_first_ms: Option<f64>,
    /// The same query again, answered from the index kept since.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag_query_ms: Option<f64>,
    /// Files the query found (checked against the workload).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag_query_files: Option<usize>,
    /// The same query for the ids alone (`Library::file_ids_with_tag`, recursive), from the
    /// index: median of [`ID_QUERY_REPEATS`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag_ids_ms: Option<f64>,
    /// Baseline for it: the same ids found by a scan of every file's tag set
    /// (`Engine::for_each_members`, one set per file, lent; the cheapest scan the engine offers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag_scan_ms: Option<f64>,
}

/// Repetitions of the ids-only tag query and of its scan baseline in [`open`].
pub const ID_QUERY_REPEATS: usize = 5;

/// Cold open from the store: `Replica::open` (store open, load, engine rebuild, the checks on
/// the shared folder) on the state [`build`] left in `dir`; then the prototype's tag query
/// ([`crate::prototype::query_target`]) twice through the model.
pub fn open(b: &Backend, w: &Workload, dir: &Path) -> Result<OpenReport> {
    runtime()?.block_on(async {
        let t = Instant::now();
        let replica = Arc::new(open_replica(b, dir, folder(dir), OpenMode::Join).await?);
        let ms = ms_since(t);
        let peak_rss_kib = crate::peak_rss_kib();
        let files = replica.read(count_files)?;
        let target = crate::prototype::query_target(w);
        let lib = Library::new(replica.clone());
        let mut times = Vec::new();
        let mut found = 0;
        for _ in 0..2 {
            let t = Instant::now();
            found = lib.files_with_tag(w.tag_id(target.tag), true)?.len();
            times.push(ms_since(t));
        }
        ensure!(found == target.files, "the tag query found {found} files, expected {}", target.files);
        let tag = w.tag_id(target.tag);
        // Each in its own loop: a scan frees the values of every file, and the allocator's
        // clean-up of them would otherwise land in the next index query's time.
        let (mut ids_times, mut scan_times) = (Vec::new(), Vec::new());
        let mut ids = BTreeSet::new();
        for _ in 0..ID_QUERY_REPEATS {
            let t = Instant::now();
            ids = lib.file_ids_with_tag(tag, true)?;
            ids_times.push(ms_since(t));
        }
        for _ in 0..ID_QUERY_REPEATS {
            let t = Instant::now();
            let scanned = scan_subtree(&lib, tag)?;
            scan_times.push(ms_since(t));
            ensure!(ids == scanned, "the indexed ids ({}) differ from the scan's ({})", ids.len(), scanned.len());
        }
        ids_times.sort_by(f64::total_cmp);
        scan_times.sort_by(f64::total_cmp);
        Ok(OpenReport {
            ms,
            files,
            peak_rss_kib,
            tag_query_first_ms: Some(times[0]),
            tag_query_ms: Some(times[1]),
            tag_query_files: Some(found),
            tag_ids_ms: Some(quantile(&ids_times, 0.5)),
            tag_scan_ms: Some(quantile(&scan_times, 0.5)),
        })
    })
}

/// The ids of the files carrying `tag` or a tag below it, by a scan of every file's tag set.
fn scan_subtree<D: Document>(lib: &Library<D>, tag: &str) -> Result<BTreeSet<String>> {
    let tags = lib.tags()?;
    let wanted = onefolder_model::subtree(&tags, tag);
    let mut ids = BTreeSet::new();
    lib.doc().read(|e| {
        e.for_each_members(FILES, onefolder_model::layout::FILE_TAGS, &mut |id, members| {
            if members.iter().any(|m| wanted.contains(*m)) {
                ids.insert(id.to_owned());
            }
        })
    })?;
    Ok(ids)
}

/// Baseline: the raw engine loading the same state (read [`snapshot_path`], `load_snapshot`).
pub fn open_raw(engine: EngineFn, dir: &Path) -> Result<OpenReport> {
    let t = Instant::now();
    let bytes = std::fs::read(snapshot_path(dir))?;
    let mut e = engine();
    e.load_snapshot(&bytes)?;
    let ms = ms_since(t);
    let peak_rss_kib = crate::peak_rss_kib();
    drop(bytes);
    Ok(OpenReport {
        ms,
        files: count_files(e.as_ref())?,
        peak_rss_kib,
        tag_query_first_ms: None,
        tag_query_ms: None,
        tag_query_files: None,
        tag_ids_ms: None,
        tag_scan_ms: None,
    })
}

/// Result of [`compact`].
#[derive(Clone, Debug, Serialize)]
pub struct CompactReport {
    /// Log entries the store held (and an open replayed) before compaction.
    pub log_entries_before: usize,
    /// Log entries after.
    pub log_entries_after: usize,
    /// Wall time of `Store::compact`.
    pub ms: f64,
    /// `Store::load` of the compacted store: the store's share of a cold open (median of 3).
    pub load_after_ms: f64,
}

/// Folds the store's log into a snapshot, as `Replica::compact` does (the replica also compacts
/// by itself once its log is long enough): `Store::compact` with the engine snapshot
/// [`build`] wrote, which holds every edit of the log. The store is used directly because
/// opening a replica on an uncompacted store replays the whole log first.
pub fn compact(b: &Backend, dir: &Path) -> Result<CompactReport> {
    let mut store = (b.store)(&state_dir(dir))?;
    let log_entries_before = store.load()?.log.len();
    let unflushed = store.unflushed()?.len();
    ensure!(unflushed == 0, "{unflushed} local edits were never flushed");
    let snapshot = std::fs::read(snapshot_path(dir))?;
    let t = Instant::now();
    store.compact(&snapshot)?;
    let ms = ms_since(t);
    drop(snapshot);
    let mut loads = Vec::new();
    let mut log_entries_after = 0;
    for _ in 0..3 {
        let t = Instant::now();
        let state = store.load()?;
        loads.push(ms_since(t));
        log_entries_after = state.log.len();
    }
    loads.sort_by(f64::total_cmp);
    Ok(CompactReport { log_entries_before, log_entries_after, ms, load_after_ms: quantile(&loads, 0.5) })
}

/// Bytes written to the shared medium, next to what the prototype wrote (the whole document
/// every cycle).
#[derive(Clone, Debug, Serialize)]
pub struct BytesReport {
    /// One tag assignment, one flush: segment bytes, header included.
    pub one_edit: u64,
    /// The prototype for the same cycle: the whole document.
    pub one_edit_prototype: u64,
    /// 100 assignments, each flushed on its own (100 cycles).
    pub hundred_edits_100_cycles: u64,
    /// The prototype: 100 whole documents.
    pub hundred_edits_100_cycles_prototype: u64,
    /// 100 assignments flushed together (one debounced cycle).
    pub hundred_edits_1_cycle: u64,
    /// The prototype: one whole document.
    pub hundred_edits_1_cycle_prototype: u64,
    /// Ten flushes with nothing to flush.
    pub idle_10_cycles: u64,
    /// The prototype for one idle hour (a whole document every 10 s).
    pub idle_hour_prototype: u64,
}

/// Measurement 2: tag assignments through the model on a replica opened from [`build`]'s
/// state, flushed to the folder; the prototype baseline is `Engine::snapshot().len()` per cycle.
pub fn bytes(b: &Backend, w: &Workload, dir: &Path) -> Result<BytesReport> {
    runtime()?.block_on(async {
        let (transport, meter) = Metered::wrap(folder(dir));
        let replica = Arc::new(open_replica(b, dir, transport, OpenMode::Join).await?);
        let lib = Library::new(replica.clone());
        let mut edits = w.new_assignments(0, 0, 201);
        let doc_len = || -> Result<u64> { Ok(replica.read(|e| e.snapshot())?.len() as u64) };

        meter.reset();
        w.apply_model(&lib, edits.next().expect("201 edits"))?;
        replica.flush().await?;
        let one_edit = meter.segment_bytes();
        let one_edit_prototype = doc_len()?;

        meter.reset();
        for edit in edits.by_ref().take(100) {
            w.apply_model(&lib, edit)?;
            replica.flush().await?;
        }
        let hundred_edits_100_cycles = meter.segment_bytes();

        meter.reset();
        for edit in edits.by_ref().take(100) {
            w.apply_model(&lib, edit)?;
        }
        replica.flush().await?;
        let hundred_edits_1_cycle = meter.segment_bytes();
        let doc = doc_len()?;

        meter.reset();
        for _ in 0..10 {
            replica.flush().await?;
        }
        let idle_10_cycles = meter.written_bytes.load(std::sync::atomic::Ordering::Relaxed);
        Ok(BytesReport {
            one_edit,
            one_edit_prototype,
            hundred_edits_100_cycles,
            hundred_edits_100_cycles_prototype: 100 * doc,
            hundred_edits_1_cycle,
            hundred_edits_1_cycle_prototype: doc,
            idle_10_cycles,
            idle_hour_prototype: 360 * doc,
        })
    })
}

/// Result of [`ingest`].
#[derive(Clone, Debug, Serialize)]
pub struct IngestReport {
    /// Edits in each peer segment.
    pub edits: usize,
    /// Segment size (the first of the runs).
    pub segment_bytes: u64,
    /// Median of the runs of `Replica::ingest`: list, read, verify, apply, commit.
    pub ms: f64,
    /// Median of the runs of the baseline: `Engine::apply_remote` of the same payloads, in the
    /// same order, on an engine that loaded the same state.
    pub raw_ms: f64,
    /// Runs (one new peer segment each).
    pub runs: usize,
    /// The parts of an ingest besides the engine, measured alone: reading one segment from the
    /// folder and decoding it (lengths, checksums)...
    pub read_decode_ms: f64,
    /// ... and `Store::commit_remote` of its payload into a scratch store of the same kind
    /// (the median of three).
    pub store_commit_ms: f64,
}

/// Peer segments ingested one after the other by [`ingest`].
const INGEST_RUNS: usize = 3;

/// Measurement 3: [`INGEST_RUNS`] peers (each holding W) make `preset.ingest_edits` assignments
/// each and write them as one segment; the device ingests them one at a time. Baseline: the
/// raw engine applying the same payloads. Medians of the runs.
pub fn ingest(b: &Backend, w: &Workload, dir: &Path) -> Result<IngestReport> {
    let snapshot = std::fs::read(snapshot_path(dir))?;
    let manifest = manifest(dir)?;
    let n = w.preset().ingest_edits;
    let mut segments = Vec::with_capacity(INGEST_RUNS);
    for run in 0..INGEST_RUNS {
        let mut peer = (b.engine)();
        peer.load_snapshot(&snapshot)?;
        let mut changes = Vec::with_capacity(n);
        let mut orders = HashMap::new();
        for edit in w.new_assignments(1, run * n, n) {
            peer.write(&w.ops(edit, &mut orders))?;
            changes.extend(peer.take_local_changes()?);
        }
        let parts: Vec<&[u8]> = changes.iter().map(Vec::as_slice).collect();
        let payload = peer.merge_changes(&parts)?;
        let id = DeviceId::random();
        let seg = segment::encode(SegmentKind::Delta, &manifest.engine, manifest.library_id, id, 1, 1, &payload)?;
        segments.push((id, payload, seg));
    }

    // The raw engine and the replica both hold W; their applies alternate so that both see the
    // same machine load.
    let mut raw = (b.engine)();
    raw.load_snapshot(&snapshot)?;
    drop(snapshot);
    let (mut times, mut raw_times) = runtime()?.block_on(async {
        let shared = folder(dir);
        let replica = open_replica(b, dir, folder(dir), OpenMode::Join).await?;
        let (mut times, mut raw_times) = (Vec::new(), Vec::new());
        for (id, payload, seg) in &segments {
            let t = Instant::now();
            raw.apply_remote(payload)?;
            raw_times.push(ms_since(t));
            shared.create(id, &delta_name(1), seg).await?;
            let t = Instant::now();
            let report = replica.ingest().await?;
            times.push(ms_since(t));
            ensure!(report.applied == 1, "expected one applied segment, got {report:?}");
        }
        Ok::<_, anyhow::Error>((times, raw_times))
    })?;
    times.sort_by(f64::total_cmp);
    raw_times.sort_by(f64::total_cmp);

    let (id, payload, _) = &segments[0];
    let read_decode_ms = runtime()?.block_on(async {
        let expect = Expect { library: manifest.library_id, engine: &manifest.engine, max_payload: u32::MAX };
        let t = Instant::now();
        let bytes = folder(dir).read(id, &delta_name(1), u64::MAX).await?;
        ensure!(segment::decode(&bytes, &expect)?.payload.len() == payload.len(), "payload changed");
        Ok(ms_since(t))
    })?;
    let mut scratch = (b.store)(&dir.join("scratch-store"))?;
    let mut commits = Vec::new();
    for k in 0..3 {
        let applied = AppliedSegment {
            device: *id,
            file_name: delta_name(k + 1),
            seq_start: k + 1,
            seq_end: k + 1,
            checksum: scratch_checksum(payload),
            size: payload.len() as u64,
            applied_at_ms: 0,
        };
        let t = Instant::now();
        scratch.commit_remote(&applied, Some(payload))?;
        commits.push(ms_since(t));
    }
    commits.sort_by(f64::total_cmp);
    Ok(IngestReport {
        edits: n,
        segment_bytes: segments[0].2.len() as u64,
        ms: quantile(&times, 0.5),
        raw_ms: quantile(&raw_times, 0.5),
        runs: INGEST_RUNS,
        read_decode_ms,
        store_commit_ms: quantile(&commits, 0.5),
    })
}

/// Any checksum will do for a scratch store's cursor.
fn scratch_checksum(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0u32, |h, b| h.rotate_left(5) ^ u32::from(*b))
}

/// Result of [`propagation`].
#[derive(Clone, Debug, Serialize)]
pub struct PropagationReport {
    /// Edits timed (fewer than the preset's when `Preset::budget_secs` ran out).
    pub edits: usize,
    /// Median latency from segment visible to applied.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
    /// Edits not applied within 10 s (counted as 10 s).
    pub timeouts: usize,
    /// For comparison: median `Engine::apply_remote` of one such one-assignment change on a
    /// bare engine holding the same state (the engine's share of each latency).
    pub raw_apply_ms: f64,
}

/// Median time of `Engine::apply_remote` of `runs` one-assignment changes (written by another,
/// empty engine) on an engine that loaded `snapshot`.
pub fn raw_apply_one(engine: EngineFn, w: &Workload, snapshot: &[u8], runs: usize) -> Result<f64> {
    let mut e = engine();
    e.load_snapshot(snapshot)?;
    let mut writer = engine();
    let mut orders = HashMap::new();
    let mut times = Vec::with_capacity(runs);
    for edit in w.new_assignments(2, 5_000_000, runs) {
        writer.write(&w.ops(edit, &mut orders))?;
        let change = writer.take_local_changes()?.context("no change")?;
        let t = Instant::now();
        e.apply_remote(&change)?;
        times.push(ms_since(t));
    }
    times.sort_by(f64::total_cmp);
    Ok(quantile(&times, 0.5))
}

/// The `q`-quantile (0..=1) of sorted values, nearest rank.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Measurement 4: the device (holding W) runs its sync loop with the folder watcher; a second
/// device writes one assignment per segment. Latency = from the moment the writer's segment
/// was renamed into place to the moment the device reports it applied (`StatusEvent::Applied`).
pub fn propagation(b: &Backend, w: &Workload, dir: &Path) -> Result<PropagationReport> {
    let n = w.preset().propagation_edits;
    let raw_apply_ms = raw_apply_one(b.engine, w, &std::fs::read(snapshot_path(dir))?, 5)?;
    runtime()?.block_on(async {
        let device = Arc::new(open_replica(b, dir, folder(dir), OpenMode::Join).await?);
        let mut events = device.subscribe();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runner = tokio::spawn({
            let device = device.clone();
            async move {
                device
                    .run(async {
                        let _ = stopped.await;
                    })
                    .await
            }
        });
        let (transport, meter) = Metered::wrap(folder(dir));
        let writer_state = dir.join("writer-state");
        let writer =
            Replica::open((b.engine)(), (b.store)(&writer_state)?, transport, config("bench-writer", OpenMode::Join))
                .await?;
        let writer_id = writer.device();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut latencies = Vec::with_capacity(n);
        let mut timeouts = 0;
        let mut orders = HashMap::new();
        // One warm-up edit, not counted.
        let started = Instant::now();
        let budget = Duration::from_secs(w.preset().budget_secs);
        for (k, edit) in w.new_assignments(2, 0, n + 1).enumerate() {
            if k > 1 && started.elapsed() > budget {
                break;
            }
            writer.edit(&w.ops(edit, &mut orders))?;
            let info = writer.flush().await?.context("the writer had nothing to flush")?;
            let visible = meter.last_write().context("no write recorded")?;
            let deadline = tokio::time::Instant::from_std(visible + Duration::from_secs(10));
            let applied = loop {
                match tokio::time::timeout_at(deadline, events.recv()).await {
                    Ok(Ok(StatusEvent::Applied { device: d, seq, .. })) if d == writer_id && seq >= info.seq => {
                        break Some(Instant::now());
                    }
                    Ok(Ok(_)) | Ok(Err(RecvError::Lagged(_))) => continue,
                    Ok(Err(RecvError::Closed)) => bail!("the device's event stream closed"),
                    Err(_) => break None,
                }
            };
            if k == 0 {
                continue;
            }
            match applied {
                Some(at) => latencies.push(at.duration_since(visible).as_secs_f64() * 1000.0),
                None => {
                    timeouts += 1;
                    latencies.push(10_000.0);
                }
            }
            tokio::time::sleep(Duration::from_millis(10 + (k as u64 % 7) * 3)).await;
        }
        let _ = stop.send(());
        runner.await??;
        latencies.sort_by(f64::total_cmp);
        Ok(PropagationReport {
            edits: latencies.len(),
            p50_ms: quantile(&latencies, 0.5),
            p99_ms: quantile(&latencies, 0.99),
            max_ms: latencies.last().copied().unwrap_or(f64::NAN),
            timeouts,
            raw_apply_ms,
        })
    })
}

/// Writes the `edits` into a peer's engine `e` as its segment `seq` on `medium`.
#[allow(clippy::too_many_arguments)]
async fn write_peer_segment(
    medium: &dyn Transport,
    manifest: &LibraryManifest,
    w: &Workload,
    orders: &mut HashMap<Option<usize>, fractional_index::FractionalIndex>,
    e: &mut dyn Engine,
    peer: DeviceId,
    seq: u64,
    edits: impl Iterator<Item = crate::workload::Edit>,
) -> Result<()> {
    for edit in edits {
        e.write(&w.ops(edit, orders))?;
    }
    let payload = e.take_local_changes()?.context("no change")?;
    let bytes = segment::encode(SegmentKind::Delta, &manifest.engine, manifest.library_id, peer, seq, seq, &payload)?;
    medium.create(&peer, &delta_name(seq), &bytes).await?;
    Ok(())
}

/// Result of [`idle`].
#[derive(Clone, Debug, Serialize)]
pub struct IdleReport {
    /// Peer folders in the shared folder.
    pub peers: usize,
    /// Segments in them.
    pub segments: usize,
    /// Median wall time of an ingest pass with nothing new.
    pub ms: f64,
    /// Segment files read by those passes (the target is 0).
    pub reads: u64,
    /// Folder listings per pass.
    pub lists_per_pass: u64,
    /// The prototype's cycle: read and merge every peer's whole document (the mean of the
    /// merges measured, times the number of peers).
    pub prototype_ms: f64,
    /// Whole-document merges measured for `prototype_ms` (fewer than the peers when
    /// `Preset::budget_secs` ran out).
    pub prototype_merges: usize,
}

/// Idle passes timed after the catch-up pass.
const IDLE_PASSES: usize = 5;

/// Measurement 5: `preset.idle_peers` peers have each written a few segments; after one pass
/// that applies them, idle passes are timed and their segment reads counted. Baseline: the
/// prototype's cycle, which reads and merges (`apply_remote`) every peer's whole document.
pub fn idle(b: &Backend, w: &Workload, dir: &Path) -> Result<IdleReport> {
    let manifest = manifest(dir)?;
    let p = w.preset();
    let rt = runtime()?;
    let (ms, reads, lists) = rt.block_on(async {
        let shared = folder(dir);
        let mut orders = HashMap::new();
        let mut edits = w.new_assignments(2, 1_000_000, p.idle_peers * p.idle_segments_per_peer * 3);
        for _ in 0..p.idle_peers {
            let peer = DeviceId::random();
            let mut e = (b.engine)();
            for seq in 1..=p.idle_segments_per_peer as u64 {
                let batch = edits.by_ref().take(3);
                write_peer_segment(shared.as_ref(), &manifest, w, &mut orders, e.as_mut(), peer, seq, batch).await?;
            }
        }
        let (transport, meter) = Metered::wrap(folder(dir));
        let replica = open_replica(b, dir, transport, OpenMode::Join).await?;
        let first = replica.ingest().await?;
        ensure!(first.skipped == 0, "catch-up pass skipped files: {first:?}");
        let mut times = Vec::new();
        let mut reads = 0;
        meter.reset();
        for _ in 0..IDLE_PASSES {
            let t = Instant::now();
            let r = replica.ingest().await?;
            times.push(ms_since(t));
            reads += r.reads as u64;
        }
        reads = reads.max(meter.reads());
        let lists = meter.lists.load(std::sync::atomic::Ordering::Relaxed) / IDLE_PASSES as u64;
        times.sort_by(f64::total_cmp);
        Ok::<_, anyhow::Error>((quantile(&times, 0.5), reads, lists))
    })?;
    let own = rt.block_on(async { Ok::<_, anyhow::Error>(folder(dir).list_devices().await?.len()) })?;
    let (prototype_ms, prototype_merges) = {
        let snapshot = std::fs::read(snapshot_path(dir))?;
        let mut e = (b.engine)();
        e.load_snapshot(&snapshot)?;
        drop(snapshot);
        let t = Instant::now();
        let mut merges = 0;
        while merges < p.idle_peers && (merges == 0 || t.elapsed() < Duration::from_secs(p.budget_secs)) {
            let dump = std::fs::read(snapshot_path(dir))?;
            e.apply_remote(&dump)?;
            merges += 1;
        }
        (ms_since(t) / merges as f64 * p.idle_peers as f64, merges)
    };
    Ok(IdleReport {
        peers: own.saturating_sub(1),
        segments: p.idle_peers * p.idle_segments_per_peer,
        ms,
        reads,
        lists_per_pass: lists,
        prototype_ms,
        prototype_merges,
    })
}

/// What one device asks of one kind of medium ([`requests`]).
#[derive(Clone, Debug, Serialize)]
pub struct TransportRequests {
    /// The transport.
    pub transport: String,
    /// Whether it has a change feed.
    pub changes_feed: bool,
    /// Requests (listings or feed queries, reads, writes) per ingest pass with nothing new.
    pub idle_pass: f64,
    /// Of those, segment reads.
    pub idle_reads: f64,
    /// Requests to flush one edit (and nothing else).
    pub flushed_edit: u64,
    /// Requests of a pass after one peer wrote one segment.
    pub pass_after_one_segment: u64,
    /// HTTP requests the server saw for the same three (an API transport against its
    /// emulator; folder lookups and pagination included).
    pub http: Option<HttpRequests>,
    /// Median time from a peer's segment being written to this device's sync loop applying
    /// it (change hints, or polling where the medium has none), over `propagation_edits`.
    pub propagation_p50_ms: f64,
    /// The slowest of those.
    pub propagation_max_ms: f64,
}

/// HTTP requests counted by an emulator ([`TransportRequests::http`]).
#[derive(Clone, Debug, Serialize)]
pub struct HttpRequests {
    /// Per ingest pass with nothing new.
    pub idle_pass: f64,
    /// To flush one edit.
    pub flushed_edit: u64,
    /// For the pass after one peer wrote one segment.
    pub pass_after_one_segment: u64,
}

/// Result of [`requests`].
#[derive(Clone, Debug, Serialize)]
pub struct RequestsReport {
    /// Peer folders on the medium.
    pub peers: usize,
    /// Per transport.
    pub transports: Vec<TransportRequests>,
}

/// One kind of medium for [`requests`]: handles on it, and the HTTP request counter of its
/// server when it is an emulated provider.
struct BenchMedium {
    kind: &'static str,
    /// Peers write through this handle; the device under test gets [`BenchMedium::open`]'s.
    peer: Arc<dyn Transport>,
    open: Box<dyn Fn() -> Arc<dyn Transport>>,
    http: Option<Box<dyn Fn() -> u64>>,
    /// Keeps an emulator running.
    _server: Option<Box<dyn std::any::Any>>,
}

/// The media compiled in: memory, folder, and the API transports on their emulators.
fn bench_media(sub: &Path) -> Result<Vec<BenchMedium>> {
    let memory = onefolder_core::MemoryTransport::new();
    let m2 = memory.clone();
    let library = library_dir(sub);
    let mut media = vec![
        BenchMedium {
            kind: "memory",
            peer: Arc::new(memory),
            open: Box::new(move || Arc::new(m2.clone())),
            http: None,
            _server: None,
        },
        BenchMedium {
            kind: "folder",
            peer: Arc::new(FolderTransport::for_library(&library)),
            open: Box::new(move || Arc::new(FolderTransport::for_library(&library))),
            http: None,
            _server: None,
        },
    ];
    #[cfg(feature = "gdrive")]
    {
        use onefolder_emulators::gdrive::{ACCESS_TOKEN, GdriveEmulator};
        use onefolder_transport_gdrive::{GdriveOptions, GdriveTransport, Tokens};
        let emulator = Arc::new(GdriveEmulator::start().context("starting the Drive emulator")?);
        let url = emulator.url();
        let make = move || -> Arc<dyn Transport> {
            let mut options = GdriveOptions::with_server("Library", &url, &url);
            // The changes feed is polled for hints; a second, as a desktop app would.
            options.poll_interval = Duration::from_secs(1);
            Arc::new(GdriveTransport::new(options, Tokens::fixed(ACCESS_TOKEN)).expect("emulator options"))
        };
        let counter = emulator.clone();
        media.push(BenchMedium {
            kind: "gdrive",
            peer: make(),
            open: Box::new(make),
            http: Some(Box::new(move || counter.api_requests())),
            _server: Some(Box::new(emulator)),
        });
    }
    #[cfg(feature = "dropbox")]
    {
        use onefolder_emulators::dropbox::{ACCESS_TOKEN, DropboxEmulator};
        use onefolder_transport_dropbox::{DropboxOptions, DropboxTransport};
        let emulator = Arc::new(DropboxEmulator::start(sub.join("dropbox")).context("starting the Dropbox emulator")?);
        let url = emulator.url();
        let make = move || -> Arc<dyn Transport> {
            let options = DropboxOptions::new("/Library").with_base_url(&url);
            Arc::new(DropboxTransport::with_access_token(options, ACCESS_TOKEN).expect("emulator options"))
        };
        let counter = emulator.clone();
        media.push(BenchMedium {
            kind: "dropbox",
            peer: make(),
            open: Box::new(make),
            http: Some(Box::new(move || counter.total_requests())),
            _server: Some(Box::new(emulator)),
        });
    }
    Ok(media)
}

/// Measurement 7: requests one device makes of the medium, for each transport: per idle pass
/// with `preset.idle_peers` peers, per flushed edit, and for a pass after one new segment —
/// as calls of the `Transport` trait and, for the API transports, as HTTP requests their
/// emulator saw — then the time from a peer's write to this device's apply, with its sync loop
/// running.
pub fn requests(b: &Backend, w: &Workload, dir: &Path) -> Result<RequestsReport> {
    let p = w.preset();
    let rt = runtime()?;
    let mut transports = Vec::new();
    let sub = dir.join("requests");
    if sub.exists() {
        std::fs::remove_dir_all(&sub)?;
    }
    std::fs::create_dir_all(&sub)?;
    let media = rt.block_on(async { bench_media(&sub) })?;
    for medium in media {
        let state = sub.join(format!("state-{}", medium.kind));
        let report = rt.block_on(async {
            let http = || medium.http.as_ref().map(|count| count());
            let (transport, meter) = Metered::wrap((medium.open)());
            let replica = Arc::new(open_replica(b, &state, transport.clone(), OpenMode::Create).await?);
            let manifest = replica.manifest().clone();
            let mut orders = HashMap::new();
            let mut edits = w.new_assignments(2, 3_000_000, p.idle_peers * 2 + 4 + p.propagation_edits + 1);
            let mut peers = Vec::new();
            for _ in 0..p.idle_peers {
                let peer = DeviceId::random();
                let mut e = (b.engine)();
                for seq in 1..=2u64 {
                    let batch = edits.by_ref().take(1);
                    write_peer_segment(medium.peer.as_ref(), &manifest, w, &mut orders, e.as_mut(), peer, seq, batch)
                        .await?;
                }
                peers.push((peer, e));
            }
            let first = replica.ingest().await?;
            ensure!(first.skipped == 0, "catch-up pass skipped files: {first:?}");
            let requests = |m: &Meter| m.lists.load(Ordering::Relaxed) + m.reads() + m.writes.load(Ordering::Relaxed);
            meter.reset();
            let h0 = http();
            for _ in 0..IDLE_PASSES {
                replica.ingest().await?;
            }
            let idle_pass = requests(&meter) as f64 / IDLE_PASSES as f64;
            let idle_reads = meter.reads() as f64 / IDLE_PASSES as f64;
            let http_idle = h0.zip(http()).map(|(a, b)| (b - a) as f64 / IDLE_PASSES as f64);

            let lib = Library::new(replica.clone());
            meter.reset();
            let h0 = http();
            lib.create_tag(None, "one edit", None)?;
            replica.flush().await?.context("nothing flushed")?;
            let flushed_edit = requests(&meter);
            let http_flush = h0.zip(http()).map(|(a, b)| b - a);

            let (peer, e) = &mut peers[0];
            let batch = edits.by_ref().take(1);
            write_peer_segment(medium.peer.as_ref(), &manifest, w, &mut orders, e.as_mut(), *peer, 3, batch).await?;
            meter.reset();
            let h0 = http();
            let r = replica.ingest().await?;
            ensure!(r.applied == 1, "the new segment was not applied: {r:?}");
            let pass_after_one_segment = requests(&meter);
            let http_after = h0.zip(http()).map(|(a, b)| b - a);

            // Propagation: the sync loop runs; the peer writes one segment at a time.
            let mut events = replica.subscribe();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let runner = tokio::spawn({
                let replica = replica.clone();
                async move {
                    replica
                        .run(async {
                            let _ = stopped.await;
                        })
                        .await
                }
            });
            tokio::time::sleep(Duration::from_millis(300)).await;
            let mut latencies = Vec::new();
            for (k, seq) in (4..).take(p.propagation_edits.min(20) + 1).enumerate() {
                let batch = edits.by_ref().take(1);
                write_peer_segment(medium.peer.as_ref(), &manifest, w, &mut orders, e.as_mut(), *peer, seq, batch)
                    .await?;
                let visible = Instant::now();
                let deadline = tokio::time::Instant::from_std(visible + Duration::from_secs(60));
                let applied = loop {
                    match tokio::time::timeout_at(deadline, events.recv()).await {
                        Ok(Ok(StatusEvent::Applied { device, seq: s, .. })) if device == *peer && s >= seq => {
                            break Instant::now();
                        }
                        Ok(Ok(_)) | Ok(Err(RecvError::Lagged(_))) => continue,
                        Ok(Err(RecvError::Closed)) => bail!("the device's event stream closed"),
                        Err(_) => bail!("segment {seq} of the peer was not applied within 60 s"),
                    }
                };
                if k > 0 {
                    latencies.push(applied.duration_since(visible).as_secs_f64() * 1000.0);
                }
            }
            let _ = stop.send(());
            runner.await??;
            latencies.sort_by(f64::total_cmp);
            let http = match (http_idle, http_flush, http_after) {
                (Some(idle_pass), Some(flushed_edit), Some(pass_after_one_segment)) => {
                    Some(HttpRequests { idle_pass, flushed_edit, pass_after_one_segment })
                }
                _ => None,
            };
            Ok::<_, anyhow::Error>(TransportRequests {
                transport: medium.kind.into(),
                changes_feed: transport.capabilities().changes_feed,
                idle_pass,
                idle_reads,
                flushed_edit,
                pass_after_one_segment,
                http,
                propagation_p50_ms: quantile(&latencies, 0.5),
                propagation_max_ms: latencies.last().copied().unwrap_or(f64::NAN),
            })
        })?;
        transports.push(report);
        rt.block_on(async { drop(medium) });
    }
    let _ = std::fs::remove_dir_all(&sub);
    Ok(RequestsReport { peers: p.idle_peers, transports })
}

/// Result of [`converge`].
#[derive(Clone, Debug, Serialize)]
pub struct ConvergeReport {
    /// Devices.
    pub devices: usize,
    /// Edits each made before the run.
    pub edits_per_device: usize,
    /// Wall time from starting every sync loop to every device holding the same state.
    pub ms: f64,
    /// Whether every device reached the same state (and the same export) before the deadline.
    pub converged: bool,
    /// Baseline: for every device, `apply_remote` of every other device's segments on a bare
    /// engine, summed (the CRDT work the run cannot avoid, done one device after another).
    pub raw_apply_ms: f64,
    /// Segments the devices wrote during the run.
    pub segments: usize,
    /// Their bytes.
    pub segment_bytes: u64,
}

/// Settings of the converging devices: the watcher wakes them; a short debounce so that the
/// figure measures the sync, not the 2 s debounce; a 5 s poll as a fallback for lost hints.
pub fn converge_config(name: &str, mode: OpenMode) -> ReplicaConfig {
    ReplicaConfig {
        debounce: Duration::from_millis(50),
        max_delay: Duration::from_millis(500),
        poll_interval: Duration::from_secs(5),
        ..config(name, mode)
    }
}

/// How long [`converge`] waits.
const CONVERGE_DEADLINE: Duration = Duration::from_secs(300);

/// Measurement 6: `preset.converge_devices` devices share a small library
/// (`preset.converge_base_files` files), each makes `preset.converge_edits` edits offline
/// (assignments, removals, renames, recolours, annotations), then all start their sync loops
/// at once; timed until every device holds the same state.
pub fn converge(b: &Backend, preset: &Preset, dir: &Path) -> Result<ConvergeReport> {
    let base = Workload::new(Preset {
        name: "converge-base".into(),
        files: preset.converge_base_files,
        tags: preset.tags.min(200),
        ..preset.clone()
    });
    let n = preset.converge_devices;
    let per = preset.converge_edits;
    let library = dir.join("converge");
    std::fs::create_dir_all(library_dir(&library))?;
    runtime()?.block_on(async {
        let mut devices: Vec<Arc<Replica>> = Vec::with_capacity(n);
        for i in 0..n {
            let mode = if i == 0 { OpenMode::Create } else { OpenMode::Join };
            let store = (b.store)(&library.join(format!("state-{i}")))?;
            let replica =
                Replica::open((b.engine)(), store, folder(&library), converge_config(&format!("device-{i}"), mode))
                    .await?;
            let replica = Arc::new(replica);
            if i == 0 {
                let lib = Library::new(replica.clone());
                for edit in base.edits() {
                    base.apply_model(&lib, edit)?;
                }
                replica.flush().await?;
            } else {
                replica.ingest().await?;
            }
            devices.push(replica);
        }
        let base_snapshot = devices[0].read(|e| e.snapshot())?;
        // Offline edits.
        let p = base.preset();
        for (i, d) in devices.iter().enumerate() {
            let lib = Library::new(d.clone());
            for k in 0..per {
                let h = crate::workload::mix(0xC0_4E_26, (i * per + k) as u64) as usize;
                let file = h % p.files;
                let tag = (h >> 20) % p.tags;
                match k % 10 {
                    0..=5 => lib.assign(&base.file_id(file), base.tag_id(tag))?,
                    6 => lib.unassign(&base.file_id(file), base.tag_id(base.assignment_tag(file, 0)))?,
                    7 => lib.rename_tag(base.tag_id(tag), &format!("Renamed {i}.{k}"))?,
                    8 => lib.set_tag_color(base.tag_id(tag), Some(&format!("#{:06x}", h & 0xff_ffff)))?,
                    _ => lib.set_annotations(&base.file_id(file), Some(&format!("note {i}.{k}")))?,
                }
            }
        }
        let first_seq: Vec<u64> = devices.iter().map(|d| d.status().next_seq).collect();

        let t = Instant::now();
        let mut stops = Vec::new();
        let mut runners = Vec::new();
        for d in &devices {
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            stops.push(stop);
            let d = d.clone();
            runners.push(tokio::spawn(async move {
                d.run(async {
                    let _ = stopped.await;
                })
                .await
            }));
        }
        let same = || {
            let first = devices[0].read(|e| e.version());
            devices.iter().all(|d| d.status().pending_edits == 0 && d.read(|e| e.version()) == first)
        };
        let mut converged = false;
        while t.elapsed() < CONVERGE_DEADLINE {
            if same() {
                converged = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let ms = ms_since(t);
        for stop in stops {
            let _ = stop.send(());
        }
        for r in runners {
            r.await??;
        }
        if converged {
            let exports: Vec<String> = devices
                .iter()
                .map(|d| Library::new(d.clone()).export().map(|e| e.to_json()))
                .collect::<Result<_, _>>()?;
            converged = exports.iter().all(|e| e == &exports[0]);
        }

        // What each device wrote during the run.
        let manifest = manifest(&library)?;
        let expect = Expect { library: manifest.library_id, engine: &manifest.engine, max_payload: u32::MAX };
        let shared = folder(&library);
        let mut payloads: Vec<Vec<Vec<u8>>> = Vec::with_capacity(n);
        let mut segment_bytes = 0;
        for (d, from) in devices.iter().zip(&first_seq) {
            let id = d.device();
            let mut own = Vec::new();
            let mut names: Vec<(u64, String)> = shared
                .list(&id)
                .await?
                .into_iter()
                .filter_map(|f| SegmentName::parse(&f.name).map(|s| (s.seq, f.name)))
                .filter(|(seq, _)| seq >= from)
                .collect();
            names.sort();
            for (_, name) in names {
                let bytes = shared.read(&id, &name, u64::MAX).await?;
                segment_bytes += bytes.len() as u64;
                own.push(segment::decode(&bytes, &expect)?.payload.to_vec());
            }
            payloads.push(own);
        }
        let segments = payloads.iter().map(Vec::len).sum();
        drop(devices);

        let mut raw = Duration::ZERO;
        for i in 0..n {
            let mut e = (b.engine)();
            e.load_snapshot(&base_snapshot)?;
            for p in &payloads[i] {
                e.apply_remote(p)?;
            }
            let t = Instant::now();
            for (j, theirs) in payloads.iter().enumerate() {
                if j != i {
                    for p in theirs {
                        e.apply_remote(p)?;
                    }
                }
            }
            raw += t.elapsed();
        }
        Ok(ConvergeReport {
            devices: n,
            edits_per_device: per,
            ms,
            converged,
            raw_apply_ms: raw.as_secs_f64() * 1000.0,
            segments,
            segment_bytes,
        })
    })
}

/// Result of [`history`].
#[derive(Clone, Debug, Serialize)]
pub struct HistoryReport {
    /// Puts made to the same three fields of one record.
    pub overwrites: usize,
    /// Snapshot bytes after them.
    pub overwrite_snapshot: usize,
    /// Baseline: snapshot bytes of a fresh document holding only the final values.
    pub overwrite_baseline: usize,
    /// Records created, deleted and created again (same ids, same fields).
    pub records: usize,
    /// Snapshot bytes after that.
    pub readd_snapshot: usize,
    /// Baseline: snapshot bytes of a fresh document holding the records created once.
    pub readd_baseline: usize,
}

fn record_ops(id: &str, round: usize) -> Vec<Op> {
    vec![
        Op::create(FILES, id),
        Op::put(FILES, id, "name", format!("{id}.jpg")),
        Op::put(FILES, id, "path", format!("2026/{id}.jpg")),
        Op::put(FILES, id, "size", (round as i64 + 1) * 1000),
    ]
}

/// Measurement 8 (history growth): what a CRDT keeps of overwritten values and of deleted
/// records. The snapshot after `overwrites` puts to the same three fields, and after `records`
/// records were created, deleted and re-added, each against a fresh document that holds the
/// same final state (the history-free size). Changes are taken every 100 writes, as flushes
/// would.
pub fn history(engine: EngineFn, overwrites: usize, records: usize) -> Result<HistoryReport> {
    let fields = ["name", "color", "dateModified"];
    let mut e = engine();
    e.write(&[Op::create(FILES, "f")])?;
    for k in 0..overwrites {
        e.write(&[Op::put(FILES, "f", fields[k % fields.len()], format!("value {k}"))])?;
        if k % 100 == 99 {
            e.take_local_changes()?;
        }
    }
    let overwrite_snapshot = e.snapshot()?.len();
    let mut fresh = engine();
    let mut last = vec![Op::create(FILES, "f")];
    for (i, field) in fields.iter().enumerate() {
        if let Some(k) = (0..overwrites).rev().find(|k| k % fields.len() == i) {
            last.push(Op::put(FILES, "f", field, format!("value {k}")));
        }
    }
    fresh.write(&last)?;
    let overwrite_baseline = fresh.snapshot()?.len();

    let ids: Vec<String> = (0..records).map(|i| format!("{i:032x}")).collect();
    let mut e = engine();
    for round in 0..2 {
        for chunk in ids.chunks(100) {
            let ops: Vec<Op> = chunk.iter().flat_map(|id| record_ops(id, round)).collect();
            e.write(&ops)?;
            e.take_local_changes()?;
        }
        if round == 0 {
            for chunk in ids.chunks(100) {
                let ops: Vec<Op> = chunk.iter().map(|id| Op::delete(FILES, id)).collect();
                e.write(&ops)?;
                e.take_local_changes()?;
            }
        }
    }
    let readd_snapshot = e.snapshot()?.len();
    let mut fresh = engine();
    for chunk in ids.chunks(100) {
        let ops: Vec<Op> = chunk.iter().flat_map(|id| record_ops(id, 1)).collect();
        fresh.write(&ops)?;
    }
    let readd_baseline = fresh.snapshot()?.len();
    ensure!(e.collection(FILES)?.len() == records, "the re-added records are not all there");
    Ok(HistoryReport { overwrites, overwrite_snapshot, overwrite_baseline, records, readd_snapshot, readd_baseline })
}

/// Result of [`join`].
#[derive(Clone, Debug, Serialize)]
pub struct JoinReport {
    /// `"snapshots"`: the folder as the build left it; `"deltas"`: a copy of it without the
    /// snapshot segments, every delta since the start.
    pub from: String,
    /// Snapshot and delta segments in the builder's folder the device joined.
    pub snapshots: usize,
    /// See `snapshots`.
    pub deltas: usize,
    /// Bytes of segments in that folder.
    pub folder_bytes: u64,
    /// Wall time from opening an empty local store to holding W (one ingest pass).
    pub ms: f64,
    /// Segment files the pass read, and their bytes.
    pub reads: u64,
    /// See `reads`.
    pub read_bytes: u64,
}

/// Measurement 8: a new device joins the library that [`build`] left: from the folder as it is
/// (the builder's newest snapshot segment and the deltas after it), or, with `from_snapshots`
/// false, from a copy of it without snapshot segments (every delta, as before snapshots).
pub fn join(b: &Backend, w: &Workload, dir: &Path, from_snapshots: bool) -> Result<JoinReport> {
    let source = library_dir(dir);
    let work = dir.join(if from_snapshots { "join-snapshots" } else { "join-deltas" });
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    // Hard links: the copy costs no disk space.
    link_tree(&source, &library_dir(&work), &|name| from_snapshots || !name.starts_with("snap-"))?;
    let report = runtime()?.block_on(async {
        let (transport, meter) = Metered::wrap(folder(&work));
        let (mut snapshots, mut deltas, mut folder_bytes) = (0, 0, 0);
        for folder_name in transport.list_devices().await? {
            let Ok(peer) = folder_name.parse::<DeviceId>() else { continue };
            for f in transport.list(&peer).await? {
                match SegmentName::parse(&f.name).map(|n| n.kind) {
                    Some(SegmentKind::Snapshot) => snapshots += 1,
                    Some(SegmentKind::Delta) => deltas += 1,
                    None => continue,
                }
                folder_bytes += f.size;
            }
        }
        meter.reset();
        let t = Instant::now();
        let replica = open_replica(b, &work, transport, OpenMode::Join).await?;
        replica.ingest().await?;
        let ms = ms_since(t);
        ensure!(replica.read(count_files)? == w.preset().files, "the joined device lacks files");
        Ok::<_, anyhow::Error>(JoinReport {
            from: if from_snapshots { "snapshots" } else { "deltas" }.into(),
            snapshots,
            deltas,
            folder_bytes,
            ms,
            reads: meter.reads.load(Ordering::Relaxed),
            read_bytes: meter.read_bytes.load(Ordering::Relaxed),
        })
    })?;
    std::fs::remove_dir_all(&work)?;
    Ok(report)
}

/// Mirrors the tree `from` into `to` with hard links, leaving out files `keep` refuses.
fn link_tree(from: &Path, to: &Path, keep: &dyn Fn(&str) -> bool) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            link_tree(&entry.path(), &target, keep)?;
        } else if keep(&entry.file_name().to_string_lossy()) {
            std::fs::hard_link(entry.path(), &target).with_context(|| format!("linking {}", entry.path().display()))?;
        }
    }
    Ok(())
}
