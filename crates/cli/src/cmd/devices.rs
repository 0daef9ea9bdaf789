//! `devices`, `devices forget` and `status`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use onefolder_core::names::{DEVICE_FILE, SegmentName};
use onefolder_core::{DeviceId, DeviceInfo, LibraryId, Transport};
use serde::Serialize;

use crate::backend;
use crate::cmd::index::{SkippedFile, skipped_files};
use crate::cmd::inspect::check_segment;
use crate::cmd::sync::{Flushed, last_flush};
use crate::error::user;
use crate::out::{self, outln};
use crate::session::{Global, Session};

/// `device.json` of a device, if it can be read.
pub async fn device_info(transport: &dyn Transport, device: &DeviceId) -> Option<DeviceInfo> {
    let bytes = transport.read(device, DEVICE_FILE, 64 * 1024).await.ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Options of `devices`.
#[derive(Args, Debug)]
pub struct DevicesArgs {
    #[command(subcommand)]
    command: Option<DevicesCommand>,
}

#[derive(Subcommand, Debug)]
enum DevicesCommand {
    /// Forget what this computer recorded about another device (e.g. a computer you no longer
    /// have). Its changes stay in the library. If its folder is still in the shared folder, the
    /// next sync reads it again; to retire a computer for good, delete its folder
    /// (`onefolder_tags/database/ID`) once every computer has synced.
    Forget {
        /// The device id (or a unique beginning of it), as `onefolder-sync devices` shows it.
        id: String,
    },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeviceRow {
    id: DeviceId,
    name: Option<String>,
    this_device: bool,
    created_ms: Option<i64>,
    last_seen_ms: Option<i64>,
    app_version: Option<String>,
    /// Segment files in its folder.
    segments: usize,
    /// Highest seq in its folder.
    available_seq: u64,
    /// What this computer applied of it (other devices only).
    applied: Option<Applied>,
}

/// What this computer applied of another device's segments.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Applied {
    /// Highest seq applied.
    last_seq: u64,
    /// Segment files applied (conflict copies included).
    segments: usize,
    /// When the last one was applied, ms since the epoch.
    last_applied_ms: i64,
}

/// A file of the shared folder that sync skips, and why.
#[derive(Clone, Debug, Serialize)]
pub struct SkippedSegment {
    /// `<device folder>/<file>`.
    pub file: String,
    /// Why.
    pub reason: String,
}

struct Folder {
    files: Vec<onefolder_core::FileEntry>,
}

async fn folders(s: &Session) -> Result<BTreeMap<DeviceId, Folder>> {
    let transport = s.replica.transport();
    let mut out = BTreeMap::new();
    for name in transport.list_devices().await? {
        let Ok(device) = name.parse::<DeviceId>() else { continue };
        let files = transport.list(&device).await?;
        out.insert(device, Folder { files });
    }
    Ok(out)
}

async fn rows(s: &Session) -> Result<Vec<DeviceRow>> {
    let status = s.replica.status();
    let folders = folders(s).await?;
    let ids: BTreeSet<DeviceId> =
        folders.keys().chain(status.peers.keys()).copied().chain(std::iter::once(status.device)).collect();
    let mut rows = Vec::new();
    for id in ids {
        let info = device_info(s.replica.transport().as_ref(), &id).await;
        let seqs: Vec<u64> = folders
            .get(&id)
            .map(|f| f.files.iter().filter_map(|e| SegmentName::parse(&e.name)).map(|n| n.seq).collect())
            .unwrap_or_default();
        rows.push(DeviceRow {
            id,
            name: info.as_ref().map(|i| i.name.clone()),
            this_device: id == status.device,
            created_ms: info.as_ref().map(|i| i.created_ms),
            last_seen_ms: info.as_ref().map(|i| i.last_seen_ms),
            app_version: info.map(|i| i.app_version),
            segments: seqs.len(),
            available_seq: seqs.iter().copied().max().unwrap_or(0),
            applied: status.peers.get(&id).map(|p| Applied {
                last_seq: p.last_seq,
                segments: p.segments,
                last_applied_ms: p.last_applied_ms,
            }),
        });
    }
    // This device first, then by name.
    rows.sort_by(|a, b| (!a.this_device, &a.name, a.id).cmp(&(!b.this_device, &b.name, b.id)));
    Ok(rows)
}

/// Runs `devices`.
pub async fn run(args: DevicesArgs, global: &Global) -> Result<()> {
    match args.command {
        None => list(global).await,
        Some(DevicesCommand::Forget { id }) => forget(&id, global).await,
    }
}

async fn list(global: &Global) -> Result<()> {
    let s = Session::open(global).await?;
    let rows = rows(&s).await?;
    if global.json {
        return out::json(&rows);
    }
    for r in &rows {
        let name = r.name.as_deref().unwrap_or("(unknown name)");
        let this = if r.this_device { "  (this computer)" } else { "" };
        outln!("{}  {name}{this}", r.id);
        outln!(
            "    last seen {} (device.json, refreshed every few hours), {} in its folder (up to seq {})",
            out::time(r.last_seen_ms.unwrap_or(0)),
            out::n(r.segments, "segment"),
            r.available_seq
        );
        if let Some(a) = &r.applied {
            outln!(
                "    applied here up to seq {} ({}), last at {}",
                a.last_seq,
                out::n(a.segments, "segment"),
                out::time(a.last_applied_ms)
            );
        } else if !r.this_device {
            outln!("    nothing applied here yet (run `onefolder-sync sync --once`)");
        }
    }
    Ok(())
}

/// Finds a device by id or unique prefix among `known`.
fn resolve(arg: &str, known: &BTreeSet<DeviceId>) -> Result<DeviceId> {
    let arg = arg.trim().to_ascii_lowercase();
    let hits: Vec<&DeviceId> = known.iter().filter(|d| d.to_string().starts_with(&arg)).collect();
    match hits.as_slice() {
        [one] => Ok(**one),
        [] => Err(user(format!("unknown device {arg:?} (list them with `onefolder-sync devices`)"))),
        _ => Err(user(format!("{arg:?} matches {} devices; give more of the id", hits.len()))),
    }
}

async fn forget(arg: &str, global: &Global) -> Result<()> {
    let s = Session::open(global).await?;
    let status = s.replica.status();
    let known: BTreeSet<DeviceId> = folders(&s).await?.into_keys().chain(status.peers.keys().copied()).collect();
    let device = resolve(arg, &known.iter().copied().chain(std::iter::once(status.device)).collect())?;
    if device == status.device {
        return Err(user(format!("{device} is this computer; only other devices can be forgotten")));
    }
    let folder = match &s.config.transport {
        spec if spec.is_folder() => backend::device_folder(&s.config.library, &device).display().to_string(),
        spec => format!("{spec}/onefolder_tags/database/{device}"),
    };
    let still_there = !s.replica.transport().list(&device).await.unwrap_or_default().is_empty();
    s.replica.forget_peer(&device)?;
    if global.json {
        return out::json(&serde_json::json!({ "forgot": device, "folderStillShared": still_there }));
    }
    outln!("forgot device {device}");
    if still_there {
        outln!(
            "its folder {folder} is still shared: the next sync reads it again. Delete it once every computer has synced to retire the device."
        );
    }
    Ok(())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusReport {
    library: PathBuf,
    library_id: LibraryId,
    engine: String,
    store: String,
    state: PathBuf,
    device: DeviceId,
    device_name: String,
    pending_edits: usize,
    /// A segment an earlier flush prepared but could not write; the next sync writes it.
    unwritten_seq: Option<u64>,
    last_flush: Option<Flushed>,
    devices: Vec<PeerRow>,
    skipped_segments: Vec<SkippedSegment>,
    skipped_files: Vec<SkippedFile>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PeerRow {
    id: DeviceId,
    name: Option<String>,
    applied_seq: u64,
    applied_segments: usize,
    last_applied_ms: i64,
    available_seq: u64,
    /// Segments in its folder that are newer than what was applied and would apply now.
    waiting: usize,
}

/// Runs `status`.
pub async fn status(global: &Global) -> Result<()> {
    let s = Session::open(global).await?;
    let st = s.replica.status();
    let manifest = s.replica.manifest().clone();
    let transport = s.replica.transport().clone();
    let expect_engine = manifest.engine.clone();
    let mut devices = Vec::new();
    let mut skipped = Vec::new();
    for (id, folder) in folders(&s).await? {
        if id == st.device {
            continue;
        }
        let applied = st.peers.get(&id).cloned().unwrap_or_default();
        let mut waiting = 0;
        let mut available = 0;
        for entry in &folder.files {
            let Some(name) = SegmentName::parse(&entry.name) else { continue };
            available = available.max(name.seq);
            if name.seq <= applied.last_seq {
                continue;
            }
            let label = format!("{id}/{}", entry.name);
            if entry.size == 0 {
                skipped.push(SkippedSegment { file: label, reason: "empty file (still downloading?)".into() });
                continue;
            }
            let cap =
                u64::from(onefolder_core::segment::DEFAULT_MAX_PAYLOAD) + onefolder_core::segment::HEADER_LEN as u64;
            match transport.read(&id, &entry.name, cap).await {
                Ok(bytes) => match check_segment(&bytes, manifest.library_id, &expect_engine, Some(id)) {
                    Ok(_) => waiting += 1,
                    Err(reason) => skipped.push(SkippedSegment { file: label, reason }),
                },
                Err(e) => skipped.push(SkippedSegment { file: label, reason: format!("cannot read: {e}") }),
            }
        }
        let name = device_info(transport.as_ref(), &id).await.map(|i| i.name);
        devices.push(PeerRow {
            id,
            name,
            applied_seq: applied.last_seq,
            applied_segments: applied.segments,
            last_applied_ms: applied.last_applied_ms,
            available_seq: available,
            waiting,
        });
    }
    let report = StatusReport {
        library: s.config.library.clone(),
        library_id: manifest.library_id,
        engine: manifest.engine.clone(),
        store: st.store.clone(),
        state: s.dir.clone(),
        device: st.device,
        device_name: s.config.device_name.clone(),
        pending_edits: st.pending_edits,
        unwritten_seq: st.unwritten_seq,
        last_flush: last_flush(&s.replica)?,
        devices,
        skipped_segments: skipped,
        skipped_files: skipped_files(&s.replica)?,
    };
    if global.json {
        return out::json(&report);
    }
    outln!("library      {} ({})", report.library.display(), report.library_id);
    outln!("this device  {} ({}), engine {}, store {}", report.device_name, report.device, report.engine, report.store);
    outln!("local state  {}", report.state.display());
    if report.pending_edits == 0 {
        outln!("pending      no local edits waiting");
    } else {
        outln!(
            "pending      {} not shared yet (run `onefolder-sync sync --once`)",
            out::n(report.pending_edits, "local edit")
        );
    }
    if let Some(seq) = report.unwritten_seq {
        outln!(
            "             segment {seq} is prepared but not written yet (the shared folder refused it?); the next sync writes it first"
        );
    }
    match &report.last_flush {
        Some(f) => outln!(
            "last flush   segment {} at {}, {}, {}",
            f.seq,
            out::time(f.at_ms),
            out::n(f.changes, "edit"),
            out::size(f.bytes)
        ),
        None => outln!("last flush   never"),
    }
    if report.devices.is_empty() {
        outln!("devices      no other computer yet");
    } else {
        outln!("devices");
    }
    for d in &report.devices {
        let name = d.name.as_deref().unwrap_or("(unknown name)");
        let waiting = if d.waiting > 0 {
            format!(", {} waiting (run `onefolder-sync sync --once`)", out::n(d.waiting, "new segment"))
        } else {
            String::new()
        };
        outln!(
            "  {name} ({}): applied up to seq {} at {}, its folder has up to seq {}{waiting}",
            d.id,
            d.applied_seq,
            out::time(d.last_applied_ms),
            d.available_seq
        );
    }
    if !report.skipped_segments.is_empty() {
        outln!("skipped shared files (retried on every sync)");
        for k in &report.skipped_segments {
            outln!("  {}: {}", k.file, k.reason);
        }
    }
    if !report.skipped_files.is_empty() {
        outln!("skipped by the last index");
        for k in &report.skipped_files {
            outln!("  {}: {}", k.path, k.reason);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_resolve_by_unique_prefix() {
        let a: DeviceId = "0a000000-0000-4000-8000-000000000000".parse().unwrap();
        let b: DeviceId = "0b000000-0000-4000-8000-000000000000".parse().unwrap();
        let known: BTreeSet<DeviceId> = [a, b].into();
        assert_eq!(resolve("0a", &known).unwrap(), a);
        assert_eq!(resolve(&b.to_string(), &known).unwrap(), b);
        assert!(resolve("0", &known).is_err());
        assert!(resolve("ff", &known).is_err());
    }
}
