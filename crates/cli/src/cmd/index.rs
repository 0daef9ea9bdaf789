//! `index`: walk the locations and bring the file records up to date.
//!
//! - A file's record id comes from its location and location-relative path, so two computers
//!   indexing the same folder agree without talking to each other.
//! - The fingerprint is `b3:<size>:<hash>`: BLAKE3 of the whole content for files up to 2 MiB,
//!   of the first and last MiB for larger ones (so that indexing a big library, or a cloud
//!   folder whose files are online-only, does not read every byte). It is recomputed only when
//!   a file's size or modification time changed.
//! - A record whose file vanished and whose fingerprint equals that of a new file is a move or
//!   a rename: the record is relocated and keeps its tags. Other vanished files are missing
//!   *on this computer* (their records and tags stay); a file that comes back is present again.
//! - Presence is a fact about one computer's disk, never shared: a picture the sync client has
//!   not brought yet, an online-only placeholder or a location that is not mounted here is not
//!   shown missing anywhere else. The missing set lives in this computer's local state
//!   ([`MISSING_SETTING`]); `index` writes no edit for it. Removing a record is an edit of the
//!   library (shared): removing a location or a file.
//! - Empty (0-byte) files are not indexed and not marked missing: they are online-only
//!   placeholders, or downloads that have not started.
//! - Ignored: `onefolder_tags/`, hidden files and folders (`.DS_Store`, `.dropbox*`,
//!   `.stfolder`, `.stversions`, …), `desktop.ini`, `Thumbs.db`, `Icon\r`, Synology's `@eaDir`
//!   and `#recycle`, temporary files (`*.tmp`, `~$…`, `*.partial`, `*.crdownload`), symbolic
//!   links (not followed), and the folders of other locations (the innermost location owns a
//!   file). Cloud conflict copies of pictures are ordinary pictures and are indexed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use onefolder_core::Replica;
use onefolder_model::{File, FileMeta, Location};
use serde::{Deserialize, Serialize};

use crate::error::user;
use crate::out::{self, outln};
use crate::session::{Global, Session};

/// The per-device setting holding what the last index skipped.
pub const SKIPPED_SETTING: &str = "cli/index_skipped";
/// Files with more entries than this get a progress bar (on a terminal).
const PROGRESS_FROM: usize = 500;
/// Records written per store commit.
const BATCH: usize = 500;
/// Files up to twice this size are hashed whole; larger ones by their first and last part.
const SAMPLE: u64 = 1024 * 1024;

/// A file that `index` could not read, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedFile {
    /// Where (absolute path).
    pub path: String,
    /// Why.
    pub reason: String,
}

/// The per-device setting holding the ids of the files the last index found missing from this
/// computer's disk (a JSON array).
pub const MISSING_SETTING: &str = "cli/index_missing";

/// The files missing from this computer's disk at its last index.
pub fn missing_here(replica: &Replica) -> Result<BTreeSet<String>> {
    Ok(replica.setting(MISSING_SETTING)?.and_then(|text| serde_json::from_str(&text).ok()).unwrap_or_default())
}

/// What the last index skipped (for `status`).
pub fn skipped_files(replica: &Replica) -> Result<Vec<SkippedFile>> {
    Ok(replica.setting(SKIPPED_SETTING)?.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default())
}

/// Options of `index`.
#[derive(Args, Debug)]
pub struct IndexArgs {
    /// Index only this location (its id, or its name; see `onefolder-sync location list`).
    #[arg(long, value_name = "ID")]
    pub location: Option<String>,
}

/// Whether a directory entry is never indexed.
pub fn ignored(name: &str) -> bool {
    const NAMES: &[&str] =
        &["onefolder_tags", "desktop.ini", "thumbs.db", "ehthumbs.db", "icon\r", "$recycle.bin", "@eadir", "#recycle"];
    name.starts_with('.') || NAMES.contains(&name.to_lowercase().as_str()) || onefolder_core::names::is_temporary(name)
}

/// `b3:<size>:<hash>` (see the module documentation).
pub fn fingerprint(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    let mut hasher = blake3::Hasher::new();
    if size <= 2 * SAMPLE {
        std::io::copy(&mut file, &mut hasher)?;
    } else {
        let mut buf = vec![0u8; SAMPLE as usize];
        file.read_exact(&mut buf)?;
        hasher.update(&buf);
        file.seek(SeekFrom::End(-(SAMPLE as i64)))?;
        file.read_exact(&mut buf)?;
        hasher.update(&buf);
    }
    let hash = hasher.finalize();
    let hex: String = hash.as_bytes()[..16].iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("b3:{size}:{hex}"))
}

/// One file found on disk.
#[derive(Clone, Debug)]
struct Found {
    location: String,
    rel: String,
    abs: PathBuf,
    size: i64,
    modified_ms: i64,
    created_ms: i64,
}

struct Walk<'a> {
    other_roots: &'a BTreeSet<PathBuf>,
    exclusions: &'a BTreeSet<String>,
    found: Vec<Found>,
    /// Location-relative folders that could not be read: files under them are not "vanished".
    unreadable: Vec<String>,
    skipped: Vec<SkippedFile>,
    spinner: &'a ProgressBar,
}

fn ms(t: std::io::Result<std::time::SystemTime>) -> Option<i64> {
    let t = t.ok()?;
    Some(match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    })
}

impl Walk<'_> {
    fn skip(&mut self, path: &Path, reason: impl Into<String>) {
        self.skipped.push(SkippedFile { path: path.display().to_string(), reason: reason.into() });
    }

    fn run(&mut self, location: &str, root: &Path) {
        let mut stack: Vec<(PathBuf, String)> = vec![(root.to_path_buf(), String::new())];
        while let Some((dir, rel_dir)) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) => {
                    self.skip(&dir, format!("cannot read the folder: {e}"));
                    self.unreadable.push(rel_dir);
                    continue;
                }
            };
            for entry in entries {
                let entry = match entry {
                    Ok(entry) => entry,
                    Err(e) => {
                        self.skip(&dir, format!("cannot read the folder: {e}"));
                        self.unreadable.push(rel_dir.clone());
                        continue;
                    }
                };
                let path = entry.path();
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    self.skip(&path, "the name is not valid Unicode");
                    continue;
                };
                if ignored(&name) {
                    continue;
                }
                let rel = if rel_dir.is_empty() { name.clone() } else { format!("{rel_dir}/{name}") };
                if self.exclusions.iter().any(|x| rel == *x || rel.starts_with(&format!("{x}/"))) {
                    continue;
                }
                let kind = match entry.file_type() {
                    Ok(kind) => kind,
                    Err(e) => {
                        self.skip(&path, format!("cannot read: {e}"));
                        continue;
                    }
                };
                if kind.is_symlink() {
                    self.skip(&path, "symbolic link (not followed)");
                } else if kind.is_dir() {
                    if !self.other_roots.contains(&path) {
                        stack.push((path, rel));
                    }
                } else if kind.is_file() {
                    match entry.metadata() {
                        Ok(meta) if meta.len() == 0 => {
                            // Not read, and its record (if any) is neither updated nor missing.
                            self.skip(&path, "empty: an online-only placeholder, or a download that has not started");
                            self.unreadable.push(rel);
                        }
                        Ok(meta) => {
                            let modified = ms(meta.modified()).unwrap_or(0);
                            self.found.push(Found {
                                location: location.to_owned(),
                                rel,
                                abs: path,
                                size: meta.len() as i64,
                                modified_ms: modified,
                                created_ms: ms(meta.created()).unwrap_or(modified),
                            });
                            self.spinner.inc(1);
                        }
                        Err(e) => self.skip(&path, format!("cannot read: {e}")),
                    }
                }
            }
        }
    }
}

#[derive(Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct IndexReport {
    locations: Vec<LocationReport>,
    added: usize,
    updated: usize,
    unchanged: usize,
    moved: Vec<Moved>,
    missing: usize,
    back: usize,
    skipped: Vec<SkippedFile>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LocationReport {
    id: String,
    name: String,
    path: Option<PathBuf>,
    files: usize,
    indexed: bool,
    note: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Moved {
    from: String,
    to: String,
}

fn progress(len: Option<u64>, json: bool, message: &'static str) -> ProgressBar {
    let bar = match len {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    // Inside a `sync --watch` host there is no terminal of the caller's to draw on.
    let hidden = json || crate::host::hosted().is_some();
    let target = if hidden { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() };
    bar.set_draw_target(target);
    let style = match len {
        Some(_) => ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({eta} left)"),
        None => ProgressStyle::with_template("{spinner} {msg}: {pos} files"),
    };
    if let Ok(style) = style {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message);
    bar
}

/// Runs `index`.
pub async fn run(args: IndexArgs, global: &Global) -> Result<()> {
    let s = Session::open(global).await?;
    let locations = s.locations()?;
    let selected: Vec<&(Location, Option<PathBuf>)> = match &args.location {
        None => locations.iter().collect(),
        Some(arg) => {
            let hit: Vec<_> = locations.iter().filter(|(l, _)| l.id == *arg || l.name == *arg).collect();
            match hit.len() {
                1 => hit,
                0 => return Err(user(format!("unknown location {arg:?} (see `onefolder-sync location list`)"))),
                _ => return Err(user(format!("{arg:?} names several locations; give its id"))),
            }
        }
    };
    let roots: BTreeSet<PathBuf> = locations
        .iter()
        .filter_map(|(_, p)| p.as_ref())
        .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
        .collect();

    let mut report = IndexReport::default();
    let spinner = progress(None, global.json, "looking for files");
    spinner.enable_steady_tick(Duration::from_millis(120));
    let mut found = Vec::new();
    let mut unreadable: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut walked: BTreeSet<String> = BTreeSet::new();
    for (loc, path) in selected {
        let mut lr = LocationReport {
            id: loc.id.clone(),
            name: loc.name.clone(),
            path: path.clone(),
            files: 0,
            indexed: false,
            note: None,
        };
        match path {
            None => {
                lr.note =
                    Some(format!("not on this computer: map it with `onefolder-sync location add DIR --as {}`", loc.id))
            }
            Some(p) if !p.is_dir() => {
                lr.note = Some(format!("{} is not there (unmounted?): skipped, nothing marked missing", p.display()))
            }
            Some(p) => {
                let root = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
                let others: BTreeSet<PathBuf> = roots.iter().filter(|r| **r != root).cloned().collect();
                let mut walk = Walk {
                    other_roots: &others,
                    exclusions: &loc.exclusions,
                    found: Vec::new(),
                    unreadable: Vec::new(),
                    skipped: Vec::new(),
                    spinner: &spinner,
                };
                walk.run(&loc.id, &root);
                lr.files = walk.found.len();
                lr.indexed = true;
                found.extend(walk.found);
                unreadable.insert(loc.id.clone(), walk.unreadable);
                report.skipped.extend(walk.skipped);
                walked.insert(loc.id.clone());
            }
        }
        report.locations.push(lr);
    }
    spinner.finish_and_clear();

    let location_roots: BTreeMap<String, PathBuf> =
        locations.iter().filter_map(|(l, p)| p.clone().map(|p| (l.id.clone(), p))).collect();
    reconcile(&s, found, &location_roots, &walked, &unreadable, &mut report, global.json)?;
    s.replica.set_setting(SKIPPED_SETTING, Some(&serde_json::to_string(&report.skipped)?))?;

    if global.json {
        return out::json(&report);
    }
    for l in &report.locations {
        match &l.note {
            Some(note) => outln!("{}: {note}", l.name),
            None => outln!("{}: {}", l.name, out::n(l.files, "file")),
        }
    }
    outln!(
        "{} added, {} updated, {} unchanged, {} moved or renamed, {} newly missing, {} back",
        report.added,
        report.updated,
        report.unchanged,
        report.moved.len(),
        report.missing,
        report.back
    );
    for m in &report.moved {
        outln!("  moved {} -> {} (tags kept)", m.from, m.to);
    }
    if !report.skipped.is_empty() {
        outln!("{} skipped (see `onefolder-sync status`)", out::n(report.skipped.len(), "file"));
    }
    let pending = s.replica.status().pending_edits;
    if pending > 0 {
        outln!("{} pending (`onefolder-sync sync --once` shares local edits)", out::n(pending, "local edit"));
    }
    Ok(())
}

fn under_any(rel: &str, prefixes: &[String]) -> bool {
    prefixes.iter().any(|p| p.is_empty() || rel == p || rel.starts_with(&format!("{p}/")))
}

/// Brings the records up to date with what the walk found. `roots` maps every location
/// available on this computer to its folder; `walked` names the locations walked this time.
fn reconcile(
    s: &Session,
    found: Vec<Found>,
    roots: &BTreeMap<String, PathBuf>,
    walked: &BTreeSet<String>,
    unreadable: &BTreeMap<String, Vec<String>>,
    report: &mut IndexReport,
    json: bool,
) -> Result<()> {
    let records: BTreeMap<String, File> = s.lib.files()?;
    let mut missing_here = missing_here(&s.replica)?;
    missing_here.retain(|id| records.contains_key(id));
    // Which record each found file is, by deterministic id.
    let mut found_ids: HashMap<String, usize> = HashMap::new();
    for (i, f) in found.iter().enumerate() {
        let id = onefolder_model::ids::file_id(&f.location, &f.rel)?;
        found_ids.insert(id, i);
    }

    // Fingerprints: reused while size and modification time are unchanged.
    let bar = progress((found.len() >= PROGRESS_FROM).then_some(found.len() as u64), json, "reading files");
    if found.len() < PROGRESS_FROM {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let mut prints: Vec<Option<String>> = Vec::with_capacity(found.len());
    let mut skipped_now = Vec::new();
    let ids_by_index: Vec<String> = {
        let mut v = vec![String::new(); found.len()];
        for (id, i) in &found_ids {
            v[*i] = id.clone();
        }
        v
    };
    for (i, f) in found.iter().enumerate() {
        let existing = records.get(&ids_by_index[i]);
        let reuse = existing
            .filter(|r| r.size == f.size && r.date_modified == f.modified_ms)
            .and_then(|r| r.fingerprint.clone());
        let print = match reuse {
            Some(p) => Some(p),
            None => match fingerprint(&f.abs) {
                Ok(p) => Some(p),
                Err(e) => {
                    skipped_now
                        .push(SkippedFile { path: f.abs.display().to_string(), reason: format!("cannot read: {e}") });
                    None
                }
            },
        };
        prints.push(print);
        bar.inc(1);
    }
    bar.finish_and_clear();
    report.skipped.extend(skipped_now);

    // Vanished: records of the walked locations that were not found (and are not under a
    // folder that could not be read), plus records already missing here.
    let vanished: Vec<&File> = records
        .values()
        .filter(|r| !found_ids.contains_key(&r.id))
        .filter(|r| {
            (walked.contains(&r.location)
                && !under_any(&r.path, unreadable.get(&r.location).map(Vec::as_slice).unwrap_or(&[])))
                || missing_here.contains(&r.id)
        })
        .collect();
    // New files (no record yet) sorted by path, so that every computer pairs them the same way.
    let mut new_files: Vec<usize> =
        (0..found.len()).filter(|i| !records.contains_key(&ids_by_index[*i]) && prints[*i].is_some()).collect();
    new_files.sort_by(|a, b| (&found[*a].location, &found[*a].rel).cmp(&(&found[*b].location, &found[*b].rel)));
    let mut by_print: BTreeMap<&str, Vec<&File>> = BTreeMap::new();
    for r in &vanished {
        if let Some(p) = r.fingerprint.as_deref() {
            by_print.entry(p).or_default().push(r);
        }
    }
    // A move out of a location that was not walked this time (`index --location`) is a move
    // too when its old file is gone from disk; the disk is asked only about records whose
    // fingerprint equals a new file's.
    let new_prints: BTreeSet<&str> = new_files.iter().filter_map(|i| prints[*i].as_deref()).collect();
    for r in records.values().filter(|r| !walked.contains(&r.location) && !missing_here.contains(&r.id)) {
        let Some(p) = r.fingerprint.as_deref().filter(|p| new_prints.contains(p)) else { continue };
        let Some(root) = roots.get(&r.location) else { continue };
        if root.is_dir() && !root.join(&r.path).exists() {
            by_print.entry(p).or_default().push(r);
        }
    }
    let mut relocated: BTreeSet<String> = BTreeSet::new();
    // New id → the record it was moved from.
    let mut moved_from: HashMap<String, File> = HashMap::new();
    let display = s.display_paths()?;
    let show = |loc: &str, path: &str| format!("{}{path}", display.get(loc).map(String::as_str).unwrap_or(""));
    for i in new_files {
        let print = prints[i].as_deref().expect("filtered");
        let Some(candidates) = by_print.get_mut(print) else { continue };
        let Some(pos) = candidates.iter().position(|r| !relocated.contains(&r.id)) else { continue };
        let old = candidates.remove(pos);
        let f = &found[i];
        let new_id = s.lib.relocate_file(&old.id, &f.location, &f.rel).context("carrying tags over to a moved file")?;
        relocated.insert(old.id.clone());
        missing_here.remove(&old.id);
        report.moved.push(Moved { from: show(&old.location, &old.path), to: show(&f.location, &f.rel) });
        moved_from.insert(new_id, old.clone());
    }

    // Upserts, in batches of one commit each.
    let indices: Vec<usize> = (0..found.len()).collect();
    for chunk in indices.chunks(BATCH) {
        s.lib.in_batch(|lib| {
            for &i in chunk {
                let f = &found[i];
                let Some(print) = prints[i].clone() else { continue };
                let id = &ids_by_index[i];
                let moved = moved_from.get(id);
                let existing = records.get(id).or(moved);
                let was_missing = missing_here.remove(id);
                // Keep recorded dates when the content did not change: another computer's copy of the
                // file has its own creation (and maybe modification) time, and the library must not
                // flip between them.
                let same_content = existing.is_some_and(|r| r.fingerprint.as_deref() == Some(print.as_str()));
                let meta = FileMeta {
                    size: f.size,
                    date_modified: if same_content {
                        existing.map_or(f.modified_ms, |r| r.date_modified)
                    } else {
                        f.modified_ms
                    },
                    date_created: existing.map_or(f.created_ms, |r| r.date_created),
                    fingerprint: Some(print),
                    width: existing.and_then(|r| r.width),
                    height: existing.and_then(|r| r.height),
                    // The app's own reading of the file; the CLI reads no thumbnail.
                    date_last_indexed: existing.and_then(|r| r.date_last_indexed),
                };
                let before = lib.pending();
                lib.upsert_file(&f.location, &f.rel, &meta)?;
                let wrote = lib.pending() > before;
                match (records.get(id), moved) {
                    (_, Some(_)) => {}
                    (None, None) => report.added += 1,
                    (Some(_), None) if wrote => report.updated += 1,
                    (Some(_), None) => report.unchanged += 1,
                }
                if was_missing {
                    report.back += 1;
                }
            }
            Ok(())
        })?;
    }

    // Newly vanished files of the walked locations: missing here, and only here.
    for r in vanished.iter().filter(|r| !relocated.contains(&r.id) && walked.contains(&r.location)) {
        if missing_here.insert(r.id.clone()) {
            report.missing += 1;
        }
    }
    s.replica.set_setting(MISSING_SETTING, Some(&serde_json::to_string(&missing_here)?))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_clients_and_system_files_are_ignored() {
        for name in [
            "onefolder_tags",
            ".DS_Store",
            ".dropbox",
            ".dropbox.cache",
            ".stfolder",
            ".stversions",
            "desktop.ini",
            "Thumbs.db",
            "Icon\r",
            "@eaDir",
            "photo.jpg.tmp",
            "~$draft.docx",
            "big.jpg.partial",
            ".hidden.jpg",
        ] {
            assert!(ignored(name), "{name:?} should be ignored");
        }
        for name in [
            "cat.jpg",
            "cat (Anna's conflicted copy 2026-11-02).jpg",
            "cat.sync-conflict-20261102-101010-ABCDEFG.jpg",
            "cat-LAPTOP-2.jpg",
            "Icon.png",
        ] {
            assert!(!ignored(name), "{name:?} should be indexed");
        }
    }

    #[test]
    fn fingerprints_depend_on_content_and_size() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, bytes: &[u8]| {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        };
        let a = write("a", b"same bytes");
        let b = write("b", b"same bytes");
        let c = write("c", b"other bytes");
        assert_eq!(fingerprint(&a).unwrap(), fingerprint(&b).unwrap());
        assert_ne!(fingerprint(&a).unwrap(), fingerprint(&c).unwrap());
        assert!(fingerprint(&a).unwrap().starts_with("b3:10:"));
        // Big files: first and last MiB count, the middle does not.
        let mut big = vec![7u8; (3 * SAMPLE) as usize];
        let p1 = write("big1", &big);
        big[(SAMPLE + 10) as usize] = 8;
        let p2 = write("big2", &big);
        assert_eq!(fingerprint(&p1).unwrap(), fingerprint(&p2).unwrap());
        big[5] = 9;
        let p3 = write("big3", &big);
        assert_ne!(fingerprint(&p1).unwrap(), fingerprint(&p3).unwrap());
    }

    #[test]
    fn vanished_files_under_unreadable_folders_are_not_missing() {
        let prefixes = vec!["Raw".to_owned()];
        assert!(under_any("Raw/a.jpg", &prefixes));
        assert!(!under_any("Rawhide/a.jpg", &prefixes));
        assert!(under_any("anything", &[String::new()]));
    }
}
