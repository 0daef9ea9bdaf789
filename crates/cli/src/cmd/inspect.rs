//! `inspect`, `inspect segment FILE` and `verify`: look at what is on disk without changing it.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use onefolder_core::names::{DEVICE_FILE, SegmentName};
use onefolder_core::segment::{self, DEFAULT_MAX_PAYLOAD, Expect, HEADER_LEN, SegmentError};
use onefolder_core::{DeviceId, Engine, LibraryId, LibraryManifest, SegmentHeader, Store, Transport};
use onefolder_model::{FILES, LOCATIONS, SEARCHES, TAGS};
use serde::Serialize;

use crate::backend;
use crate::cmd::devices::device_info;
use crate::error::{EXIT_CORRUPT, corrupt};
use crate::out::{self, outln};
use crate::session::Global;
use crate::state::{self, Located};

/// Why a segment fails its checks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Damaged (exit code 2) rather than merely not usable here (another library, a newer
    /// format, not downloaded yet).
    pub corrupt: bool,
    /// In words.
    pub reason: String,
}

/// Checks a segment file's bytes the way sync does before an engine sees them: length,
/// checksums, library, engine, and (when known) the device folder it was found in.
pub fn check_segment(
    bytes: &[u8],
    library: LibraryId,
    engine: &str,
    folder: Option<DeviceId>,
) -> Result<SegmentHeader, String> {
    check(bytes, library, engine, folder).map_err(|p| p.reason)
}

fn check(bytes: &[u8], library: LibraryId, engine: &str, folder: Option<DeviceId>) -> Result<SegmentHeader, Problem> {
    if bytes.is_empty() {
        return Err(Problem { corrupt: false, reason: "empty file (still downloading?)".into() });
    }
    let expect = Expect { library, engine, max_payload: DEFAULT_MAX_PAYLOAD };
    let seg = segment::decode(bytes, &expect).map_err(|e| {
        let corrupt = !matches!(
            e,
            SegmentError::WrongLibrary { .. } | SegmentError::WrongEngine { .. } | SegmentError::UnsupportedVersion(_)
        );
        Problem { corrupt, reason: e.to_string() }
    })?;
    if let Some(device) = folder
        && seg.header.device != device
    {
        return Err(Problem {
            corrupt: true,
            reason: format!("written by device {}, found in the folder of {device}", seg.header.device),
        });
    }
    Ok(seg.header)
}

/// Options of `inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    #[command(subcommand)]
    command: Option<InspectCommand>,
}

impl InspectArgs {
    /// `inspect segment FILE`, which needs no library.
    pub fn is_segment(&self) -> bool {
        matches!(self.command, Some(InspectCommand::Segment { .. }))
    }
}

#[derive(Subcommand, Debug)]
enum InspectCommand {
    /// Decode one segment file's header and check its length and checksums (no library needed).
    Segment {
        /// The segment file (`…/onefolder_tags/database/<device>/<seq>.seg`).
        file: PathBuf,
    },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SegmentRow {
    file: String,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    header: Option<SegmentHeader>,
    check: String,
    corrupt: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeviceScan {
    folder: String,
    device: Option<DeviceId>,
    name: Option<String>,
    this_device: bool,
    segments: Vec<SegmentRow>,
    other_files: Vec<String>,
}

async fn scan(
    transport: &dyn Transport,
    manifest: &LibraryManifest,
    own: Option<DeviceId>,
    mut engine: Option<&mut Box<dyn Engine>>,
) -> Result<Vec<DeviceScan>> {
    let cap = u64::from(DEFAULT_MAX_PAYLOAD) + HEADER_LEN as u64;
    let mut out = Vec::new();
    let mut names = transport.list_devices().await.context("listing the device folders")?;
    names.sort();
    for folder in names {
        let Ok(device) = folder.parse::<DeviceId>() else {
            out.push(DeviceScan {
                folder,
                device: None,
                name: None,
                this_device: false,
                segments: Vec::new(),
                other_files: vec!["(not a device folder: ignored by sync)".into()],
            });
            continue;
        };
        let mut files = transport.list(&device).await.with_context(|| format!("listing {folder}"))?;
        files.sort_by_key(|f| (SegmentName::parse(&f.name).map(|n| n.seq), f.name.clone()));
        let mut segments = Vec::new();
        let mut other_files = Vec::new();
        for f in files {
            if SegmentName::parse(&f.name).is_none() {
                if f.name != DEVICE_FILE {
                    other_files.push(f.name);
                }
                continue;
            }
            let (header, problem) = match transport.read(&device, &f.name, cap).await {
                Err(e) => (None, Some(Problem { corrupt: false, reason: format!("cannot read: {e}") })),
                Ok(bytes) => match check(&bytes, manifest.library_id, &manifest.engine, Some(device)) {
                    Err(p) => (segment::decode_header(&bytes).ok(), Some(p)),
                    Ok(header) => {
                        let applied = match engine.as_deref_mut() {
                            Some(engine) => engine.apply_remote(&bytes[HEADER_LEN..]).err(),
                            None => None,
                        };
                        let problem = applied
                            .map(|e| Problem { corrupt: true, reason: format!("the engine rejects the payload: {e}") });
                        (Some(header), problem)
                    }
                },
            };
            segments.push(SegmentRow {
                file: f.name,
                size: f.size,
                header,
                corrupt: problem.as_ref().is_some_and(|p| p.corrupt),
                check: problem.map_or_else(|| "ok".to_owned(), |p| p.reason),
            });
        }
        out.push(DeviceScan {
            name: device_info(transport, &device).await.map(|i| i.name),
            folder,
            device: Some(device),
            this_device: Some(device) == own,
            segments,
            other_files,
        });
    }
    Ok(out)
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct StoreReport {
    ok: bool,
    problem: Option<String>,
    snapshot_bytes: usize,
    log_entries: usize,
    unflushed_local: usize,
    applied_segments: usize,
    own_flushes: usize,
    records: std::collections::BTreeMap<String, usize>,
    engine_bytes: usize,
}

/// Opens the store read-only in spirit (nothing is written) and rebuilds the document from it.
/// Inside a `sync --watch` host, the host's store is checked (sync waits meanwhile).
fn check_store(located: &Located) -> Result<StoreReport> {
    if let Some(h) = crate::host::hosted() {
        return Ok(h.replica.with_store(|store| store_report(store, &located.config.engine)));
    }
    let store: Box<dyn Store> = match backend::store(&located.config.store, &located.dir) {
        Ok(store) => store,
        Err(e) if crate::error::exit_code(&e) == EXIT_CORRUPT => {
            return Ok(StoreReport { problem: Some(crate::error::one_line(&e)), ..Default::default() });
        }
        Err(e) => return Err(e),
    };
    Ok(store_report(store.as_ref(), &located.config.engine))
}

/// Reads everything the store holds and rebuilds a document from it.
fn store_report(store: &dyn Store, engine_name: &str) -> StoreReport {
    let mut report = StoreReport::default();
    let result = (|| -> Result<(), String> {
        let stored = store.load().map_err(|e| e.to_string())?;
        report.snapshot_bytes = stored.snapshot.as_ref().map_or(0, Vec::len);
        report.log_entries = stored.log.len();
        report.unflushed_local = store.unflushed().map_err(|e| e.to_string())?.len();
        report.applied_segments = store.applied().map_err(|e| e.to_string())?.len();
        report.own_flushes = store.flushes().map_err(|e| e.to_string())?.len();
        let mut engine = backend::engine(engine_name).map_err(|e| e.to_string())?;
        if let Some(snapshot) = &stored.snapshot {
            engine.load_snapshot(snapshot).map_err(|e| format!("the snapshot does not load: {e}"))?;
        }
        for entry in &stored.log {
            engine.apply_remote(&entry.payload).map_err(|e| format!("log entry {} does not apply: {e}", entry.id))?;
        }
        for c in [FILES, TAGS, LOCATIONS, SEARCHES] {
            report.records.insert(c.to_owned(), engine.ids(c).map_err(|e| e.to_string())?.len());
        }
        report.engine_bytes = engine.snapshot().map_err(|e| e.to_string())?.len();
        Ok(())
    })();
    report.ok = result.is_ok();
    report.problem = result.err();
    report
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InspectReport {
    library: PathBuf,
    manifest: LibraryManifest,
    state: PathBuf,
    store_kind: String,
    this_device: Option<DeviceId>,
    devices: Vec<DeviceScan>,
    store: StoreReport,
}

/// The library's `library.json`, read from the medium its database is on.
async fn load_manifest(located: &Located, transport: &dyn Transport) -> Result<LibraryManifest> {
    if located.config.transport.is_folder() {
        return state::read_manifest(&located.config.library)?
            .ok_or_else(|| crate::error::user(format!("{} has no library.json", located.config.library.display())));
    }
    let bytes = transport
        .read_manifest()
        .await
        .context("reading library.json")?
        .ok_or_else(|| crate::error::user(format!("{} holds no library.json", located.config.transport)))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| crate::error::user(format!("library.json at {} is not valid: {e}", located.config.transport)))
}

fn corrupt_count(devices: &[DeviceScan]) -> usize {
    devices.iter().flat_map(|d| &d.segments).filter(|s| s.corrupt).count()
}

/// Runs `inspect`.
pub async fn inspect(args: InspectArgs, global: &Global) -> Result<()> {
    if let Some(InspectCommand::Segment { file }) = args.command {
        return inspect_segment(&file, global);
    }
    let located = state::locate(global.state.as_deref(), global.library.as_deref())?;
    let transport = backend::transport(&located.config.transport, &located.config.library)?;
    let manifest = load_manifest(&located, transport.as_ref()).await?;
    let store = check_store(&located)?;
    let devices = scan(transport.as_ref(), &manifest, located.config.device_id, None).await?;
    let report = InspectReport {
        library: located.config.library.clone(),
        manifest,
        state: located.dir.clone(),
        store_kind: located.config.store.clone(),
        this_device: located.config.device_id,
        devices,
        store,
    };
    let bad = corrupt_count(&report.devices) + usize::from(!report.store.ok);
    if global.json {
        out::json(&report)?;
    } else {
        let m = &report.manifest;
        outln!("library.json  {}", state::manifest_path(&report.library).display());
        outln!("  library id  {}", m.library_id);
        outln!("  engine      {}", m.engine);
        outln!("  format      {}", m.format_version);
        outln!("  created     {}", out::time(m.created_ms));
        outln!("local state   {} ({})", report.state.display(), report.store_kind);
        outln!();
        outln!("device folders");
        for d in &report.devices {
            let name = d.name.as_deref().unwrap_or("(no device.json)");
            let this = if d.this_device { ", this computer" } else { "" };
            let bytes: u64 = d.segments.iter().map(|s| s.size).sum();
            outln!("  {}  {name}{this}: {}, {}", d.folder, out::n(d.segments.len(), "segment"), out::size(bytes));
            for s in &d.segments {
                let seq = s.header.as_ref().map_or_else(
                    || "?".to_owned(),
                    |h| {
                        if h.seq_start == h.seq_end {
                            h.seq_end.to_string()
                        } else {
                            format!("{}-{}", h.seq_start, h.seq_end)
                        }
                    },
                );
                let kind = s.header.as_ref().map_or("?", |h| match h.kind {
                    onefolder_core::SegmentKind::Delta => "delta",
                    onefolder_core::SegmentKind::Snapshot => "snapshot",
                });
                outln!("    {}  {kind} seq {seq}, {} bytes: {}", s.file, s.size, s.check);
            }
            for f in &d.other_files {
                outln!("    {f}  (not a segment: ignored)");
            }
        }
        outln!();
        let st = &report.store;
        outln!("document");
        for (c, n) in &st.records {
            outln!("  {c:<10} {}", out::n(*n, "record"));
        }
        outln!("  engine     {} bytes as a snapshot", st.engine_bytes);
        outln!("local store");
        outln!("  snapshot {} bytes, log of {}", st.snapshot_bytes, out::n(st.log_entries, "change"));
        outln!("  {} not shared yet", out::n(st.unflushed_local, "local edit"));
        outln!(
            "  {} applied, {} written",
            out::n(st.applied_segments, "peer segment"),
            out::n(st.own_flushes, "own segment")
        );
        outln!("  check    {}", st.problem.as_deref().unwrap_or("ok"));
    }
    if bad > 0 {
        return Err(corrupt(format!("{} (run `onefolder-sync verify` for the list)", out::n(bad, "corrupt item"))));
    }
    Ok(())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SegmentFileReport {
    file: PathBuf,
    size: u64,
    header: Option<SegmentHeader>,
    payload_ok: bool,
    problem: Option<String>,
}

fn inspect_segment(file: &std::path::Path, global: &Global) -> Result<()> {
    let bytes = std::fs::read(file).map_err(|e| crate::error::user(format!("{}: {e}", file.display())))?;
    let size = bytes.len() as u64;
    let (header, problem) = match segment::decode_header(&bytes) {
        Err(e) => (None, Some(e.to_string())),
        Ok(h) => {
            let expect = Expect { library: h.library, engine: &h.engine, max_payload: u32::MAX };
            (Some(h.clone()), segment::decode(&bytes, &expect).err().map(|e| e.to_string()))
        }
    };
    let report = SegmentFileReport {
        file: file.to_path_buf(),
        size,
        payload_ok: header.is_some() && problem.is_none(),
        header,
        problem,
    };
    if global.json {
        out::json(&report)?;
    } else {
        outln!("{} ({size} bytes)", report.file.display());
        if let Some(h) = &report.header {
            outln!("  format     {}", h.version);
            outln!("  kind       {:?}", h.kind);
            outln!("  engine     {}", h.engine);
            outln!("  library    {}", h.library);
            outln!("  device     {}", h.device);
            outln!("  seq        {}..={}", h.seq_start, h.seq_end);
            outln!("  payload    {} bytes, crc32 {:08x}", h.payload_len, h.payload_crc);
        }
        outln!("  check      {}", report.problem.as_deref().unwrap_or("ok"));
    }
    match report.problem {
        Some(p) => Err(corrupt(format!("{}: {p}", file.display()))),
        None => Ok(()),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct VerifyReport {
    segments: usize,
    corrupt: Vec<String>,
    warnings: Vec<String>,
    store: StoreReport,
    ok: bool,
}

/// Runs `verify`: every segment of every device (checksums, then the engine applies each
/// payload to a scratch document) and the local store (it must load and rebuild the
/// document). Exit code 2 if anything is corrupt.
pub async fn verify(global: &Global) -> Result<()> {
    let located = state::locate(global.state.as_deref(), global.library.as_deref())?;
    let transport = backend::transport(&located.config.transport, &located.config.library)?;
    let manifest = load_manifest(&located, transport.as_ref()).await?;
    let store = check_store(&located)?;
    let mut scratch = backend::engine(&manifest.engine)?;
    let devices = scan(transport.as_ref(), &manifest, located.config.device_id, Some(&mut scratch)).await?;
    let mut corrupt_items = Vec::new();
    let mut warnings = Vec::new();
    for d in &devices {
        for s in d.segments.iter().filter(|s| s.check != "ok") {
            let line = format!("{}/{}: {}", d.folder, s.file, s.check);
            if s.corrupt { corrupt_items.push(line) } else { warnings.push(line) }
        }
        if d.device.is_none() {
            warnings.push(format!("{}: not a device folder (ignored by sync)", d.folder));
        }
    }
    if let Some(p) = &store.problem {
        corrupt_items.push(format!("local store in {}: {p}", located.dir.display()));
    }
    let report = VerifyReport {
        segments: devices.iter().map(|d| d.segments.len()).sum(),
        ok: corrupt_items.is_empty(),
        corrupt: corrupt_items,
        warnings,
        store,
    };
    if global.json {
        out::json(&report)?;
    } else {
        for c in &report.corrupt {
            outln!("CORRUPT  {c}");
        }
        for w in &report.warnings {
            outln!("warning  {w}");
        }
        outln!(
            "{} checked, {} corrupt; local store {}",
            out::n(report.segments, "segment"),
            report.corrupt.iter().filter(|c| !c.starts_with("local store")).count(),
            if report.store.ok { "ok" } else { "CORRUPT" }
        );
    }
    if report.ok { Ok(()) } else { Err(corrupt(format!("{} found", out::n(report.corrupt.len(), "corrupt item")))) }
}
