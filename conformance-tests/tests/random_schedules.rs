//! Random schedules: 2–4 devices make random library edits through `onefolder_model::Library`
//! while the shared medium delays, reorders, duplicates and partitions delivery, and each
//! device flushes, ingests, restarts, compacts, restores and tidies its own folder whenever the
//! schedule says (a snapshot every few own deltas, no grace period). Then everything is delivered
//! (partitions healed, faults off, every held segment released, two full sync rounds) and:
//! - every device has the same canonical export;
//! - every tag created under a unique name and never deleted by anyone is on every device;
//! - nothing waits for a missing dependency, and a further flush writes nothing;
//! - views hold no dangling id and no cycle.
//!
//! Each device reads the medium through three layers (outermost first):
//! [`Offline`] (a partition: listings and reads fail) → [`FaultLayer`] (conflict copies, case
//! changes, partial and 0-byte files, read errors, missed listings, junk) → [`HoldBack`]
//! (every peer segment is held until a `Deliver` step releases it, in any order).
//!
//! Steps are small and refer to tags and files by index into the acting device's current view
//! (modulo its size), so every shrunk schedule is still valid and failures shrink to a short,
//! readable list. The failure message also carries the resolved trace of the minimal case.
//!
//! `ONEFOLDER_PROPTEST_CASES=2000 cargo test -p onefolder-conformance --test random_schedules`
//! runs more cases than the default (500 per combination on the memory and folder media, about
//! two minutes on two cores; 50 on the media behind HTTP).

use onefolder_core::TransportExt;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use onefolder_conformance::layers::{HoldBack, Offline};
use onefolder_conformance::{Backend, Cluster, Env, test_config};
use onefolder_core::fault::{FaultConfig, FaultLayer};
use onefolder_core::{DeviceId, Error, FolderCompaction, ReplicaConfig, Transport, TransportError, names};
use onefolder_model::{Export, FileMeta, ImportMode, ModelError};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// Cases per combination on the in-process media (memory, folder) unless
/// `ONEFOLDER_PROPTEST_CASES` says otherwise.
const DEFAULT_CASES: u32 = 500;
/// Cases per combination on a medium behind HTTP (the emulators, moto, wsgidav): what a
/// schedule explores is the replica's and the engine's; on those media a case costs round
/// trips (0.2–0.5 s instead of 0.07 s), and their own contract and faults are the matrix's.
const DEFAULT_CASES_OVER_HTTP: u32 = 50;

/// The proptest settings for the combination whose test module is `module`.
fn config(module: &str) -> ProptestConfig {
    let in_process = module.ends_with("::memory") || module.ends_with("::folder");
    let default = if in_process { DEFAULT_CASES } else { DEFAULT_CASES_OVER_HTTP };
    let cases = std::env::var("ONEFOLDER_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

const NAMES: &[&str] = &["Cats", "dogs", " cats ", "Trips", "Ärger", "2026"];
const COLORS: &[&str] = &["red", "green", "blue"];

/// A tag name: a fresh unique one (`u<counter>`), or one from a small pool (so that the same
/// tag is created on several devices, and renames collide).
#[derive(Clone, Debug)]
enum Name {
    Unique,
    Pool(u8),
}

/// One step of a schedule. `dev`, `to`, `from` are device indices (modulo the cluster size);
/// `tag`, `file`, `parent`, `into` index the acting device's current view (sorted by id,
/// modulo its size); `pick` indexes the held segments.
#[derive(Clone, Debug)]
enum Step {
    CreateTag {
        dev: u8,
        parent: Option<u8>,
        name: Name,
    },
    RenameTag {
        dev: u8,
        tag: u8,
        name: u8,
    },
    Recolor {
        dev: u8,
        tag: u8,
        color: Option<u8>,
    },
    MoveTag {
        dev: u8,
        tag: u8,
        parent: Option<u8>,
    },
    DeleteTag {
        dev: u8,
        tag: u8,
    },
    MergeTags {
        dev: u8,
        from: u8,
        into: u8,
    },
    UpsertFile {
        dev: u8,
        path: u8,
        size: u8,
    },
    Assign {
        dev: u8,
        file: u8,
        tag: u8,
    },
    /// Removes one of the file's own tags.
    Unassign {
        dev: u8,
        file: u8,
        tag: u8,
    },
    Relocate {
        dev: u8,
        file: u8,
        path: u8,
    },
    DeleteFile {
        dev: u8,
        file: u8,
    },
    Annotate {
        dev: u8,
        file: u8,
        text: Option<u8>,
    },
    Hide {
        dev: u8,
        tag: u8,
        hidden: bool,
    },
    /// Places a tag between two neighbouring siblings (`slot` 0 = first).
    Reorder {
        dev: u8,
        tag: u8,
        slot: u8,
    },
    Exclude {
        dev: u8,
        folder: u8,
        excluded: bool,
    },
    SaveSearch {
        dev: u8,
        name: u8,
    },
    DeleteSearch {
        dev: u8,
        search: u8,
    },
    /// Keeps the device's canonical export as a backup.
    Backup {
        dev: u8,
    },
    /// Restores a backup (`merge`: as a plain merge, else replacing the library).
    Restore {
        dev: u8,
        backup: u8,
        merge: bool,
    },
    Flush {
        dev: u8,
    },
    Ingest {
        dev: u8,
    },
    /// The devices in the mask see everything the others in the mask wrote so far, then each
    /// flushes and ingests, all at once (interleaved at awaits).
    SyncTogether {
        mask: u8,
    },
    /// Releases one held segment of `from` to `to` (any one: reordering).
    Deliver {
        to: u8,
        from: u8,
        pick: u8,
    },
    /// Releases everything held for `to` from online devices.
    DeliverAll {
        to: u8,
    },
    /// A sync client makes a conflicted copy of one of `from`'s segments, visible to everyone.
    Duplicate {
        from: u8,
        pick: u8,
    },
    Partition {
        dev: u8,
    },
    Heal {
        dev: u8,
    },
    /// Closes the device without flushing (a crash) and reopens it from its store.
    Restart {
        dev: u8,
    },
    Compact {
        dev: u8,
    },
    /// Deletes the own segments the device's newest snapshot covers (no grace period here).
    Tidy {
        dev: u8,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let d = || 0u8..4;
    let name = prop_oneof![Just(Name::Unique), (0..NAMES.len() as u8).prop_map(Name::Pool)];
    prop_oneof![
        6 => (d(), proptest::option::of(any::<u8>()), name)
            .prop_map(|(dev, parent, name)| Step::CreateTag { dev, parent, name }),
        2 => (d(), any::<u8>(), 0..NAMES.len() as u8).prop_map(|(dev, tag, name)| Step::RenameTag { dev, tag, name }),
        2 => (d(), any::<u8>(), proptest::option::of(0..COLORS.len() as u8))
            .prop_map(|(dev, tag, color)| Step::Recolor { dev, tag, color }),
        3 => (d(), any::<u8>(), proptest::option::of(any::<u8>()))
            .prop_map(|(dev, tag, parent)| Step::MoveTag { dev, tag, parent }),
        2 => (d(), any::<u8>()).prop_map(|(dev, tag)| Step::DeleteTag { dev, tag }),
        1 => (d(), any::<u8>(), any::<u8>()).prop_map(|(dev, from, into)| Step::MergeTags { dev, from, into }),
        4 => (d(), 0u8..8, any::<u8>()).prop_map(|(dev, path, size)| Step::UpsertFile { dev, path, size }),
        5 => (d(), any::<u8>(), any::<u8>()).prop_map(|(dev, file, tag)| Step::Assign { dev, file, tag }),
        2 => (d(), any::<u8>(), any::<u8>()).prop_map(|(dev, file, tag)| Step::Unassign { dev, file, tag }),
        1 => (d(), any::<u8>(), 0u8..8).prop_map(|(dev, file, path)| Step::Relocate { dev, file, path }),
        1 => (d(), any::<u8>()).prop_map(|(dev, file)| Step::DeleteFile { dev, file }),
        1 => (d(), any::<u8>(), proptest::option::of(0u8..3))
            .prop_map(|(dev, file, text)| Step::Annotate { dev, file, text }),
        1 => (d(), any::<u8>(), any::<bool>()).prop_map(|(dev, tag, hidden)| Step::Hide { dev, tag, hidden }),
        2 => (d(), any::<u8>(), any::<u8>()).prop_map(|(dev, tag, slot)| Step::Reorder { dev, tag, slot }),
        1 => (d(), 0u8..3, any::<bool>()).prop_map(|(dev, folder, excluded)| Step::Exclude { dev, folder, excluded }),
        1 => (d(), 0u8..3).prop_map(|(dev, name)| Step::SaveSearch { dev, name }),
        1 => (d(), any::<u8>()).prop_map(|(dev, search)| Step::DeleteSearch { dev, search }),
        1 => d().prop_map(|dev| Step::Backup { dev }),
        1 => (d(), any::<u8>(), any::<bool>()).prop_map(|(dev, backup, merge)| Step::Restore { dev, backup, merge }),
        6 => d().prop_map(|dev| Step::Flush { dev }),
        8 => d().prop_map(|dev| Step::Ingest { dev }),
        4 => (1u8..16).prop_map(|mask| Step::SyncTogether { mask }),
        8 => (d(), d(), any::<u8>()).prop_map(|(to, from, pick)| Step::Deliver { to, from, pick }),
        2 => d().prop_map(|to| Step::DeliverAll { to }),
        1 => (d(), any::<u8>()).prop_map(|(from, pick)| Step::Duplicate { from, pick }),
        1 => d().prop_map(|dev| Step::Partition { dev }),
        1 => d().prop_map(|dev| Step::Heal { dev }),
        1 => d().prop_map(|dev| Step::Restart { dev }),
        1 => d().prop_map(|dev| Step::Compact { dev }),
        1 => d().prop_map(|dev| Step::Tidy { dev }),
    ]
}

/// A whole schedule: cluster size, the fault layers' seed, and the steps.
fn schedule() -> impl Strategy<Value = (usize, u64, Vec<Step>)> {
    (2usize..=4, any::<u64>(), proptest::collection::vec(step(), 1..100))
}

/// The test settings, with a snapshot after every few own deltas and no grace period, so
/// that schedules publish snapshots and tidy steps delete what they cover.
fn schedule_config(name: &str) -> ReplicaConfig {
    ReplicaConfig {
        folder: FolderCompaction { min_bytes: 0, max_segments: 3, grace: std::time::Duration::ZERO },
        ..test_config(name)
    }
}

fn meta(size: u8) -> FileMeta {
    FileMeta {
        size: i64::from(size),
        date_modified: 1_700_000_000_000,
        date_created: 1_700_000_000_000,
        fingerprint: Some(format!("fp-{size}")),
        ..FileMeta::default()
    }
}

fn path(p: u8) -> String {
    format!("dir{}/img{p}.jpg", p % 3)
}

fn short(id: &str) -> &str {
    &id[..id.len().min(8)]
}

/// The fault layer's settings: every fault of [`FaultConfig::chaos`] but no latency (delivery
/// order is the schedule's business, and time would only slow the cases down).
fn faults(seed: u64) -> FaultConfig {
    FaultConfig { max_delay: std::time::Duration::ZERO, ..FaultConfig::chaos(seed) }
}

/// The layers of one device.
#[derive(Clone)]
struct Layers {
    offline: Arc<Offline>,
    faults: Arc<FaultLayer>,
    hold: Arc<HoldBack>,
}

/// One schedule being run on a cluster of backend `B`.
struct Run<B: Backend> {
    c: Cluster<B>,
    n: usize,
    layers: Vec<Layers>,
    ids: Vec<DeviceId>,
    /// The medium without any layer (to plant conflict copies).
    raw: Arc<dyn Transport>,
    /// Seqs held back, per reader, per writer.
    held: Vec<Vec<BTreeSet<u64>>>,
    /// Seqs each device has written, with their file names (a delta, or a snapshot that its
    /// own-folder check published).
    written: Vec<Vec<(u64, String)>>,
    location: String,
    backups: Vec<Export>,
    next_unique: u32,
    /// Tags created under a unique name: id → name.
    unique: BTreeMap<String, String>,
    /// Tags some device deleted (directly, as part of a subtree, or merged away).
    deleted: BTreeSet<String>,
    trace: Vec<String>,
}

type Outcome = Result<(), String>;

impl<B: Backend> Run<B> {
    async fn start(n: usize, seed: u64) -> Self {
        let stash: Arc<Mutex<Vec<Layers>>> = Arc::default();
        let s = stash.clone();
        let c = Cluster::<B>::build(Env::PLAIN, n, schedule_config, move |i, t| {
            let hold = HoldBack::new(t);
            let faults = FaultLayer::new(hold.clone(), faults(seed.wrapping_add(i as u64)));
            let offline = Offline::new(faults.clone());
            s.lock().unwrap().push(Layers { offline: offline.clone(), faults, hold });
            offline
        })
        .await;
        let layers = stash.lock().unwrap().clone();
        let ids = c.devices.iter().map(|d| d.replica.device()).collect();
        let raw = c.medium.open();
        // Every device adds the library folder as a location on its own (one deterministic id).
        let mut location = String::new();
        for i in 0..n {
            location = c.lib(i).add_location("Library", Some("")).expect("add location");
        }
        Run {
            c,
            n,
            layers,
            ids,
            raw,
            held: vec![vec![BTreeSet::new(); n]; n],
            written: vec![Vec::new(); n],
            location,
            backups: Vec::new(),
            next_unique: 0,
            unique: BTreeMap::new(),
            deleted: BTreeSet::new(),
            trace: Vec::new(),
        }
    }

    /// On every device, the indexed queries (files by tag, untagged files, counts) equal a
    /// filter of every file.
    fn indexes_agree(&self) -> Outcome {
        for i in 0..self.n {
            let lib = self.c.lib(i);
            let err = |e: ModelError| self.fail(format!("d{i}: {e}"));
            let files = lib.files().map_err(err)?;
            let ids = |keep: &dyn Fn(&onefolder_model::File) -> bool| -> Vec<String> {
                files.values().filter(|f| keep(f)).map(|f| f.id.clone()).collect()
            };
            for tag in lib.tags().map_err(err)?.keys() {
                let indexed: Vec<String> =
                    lib.files_with_tag(tag, false).map_err(err)?.into_iter().map(|f| f.id).collect();
                if indexed != ids(&|f| f.tags.contains(tag)) {
                    return Err(self.fail(format!("d{i}: the index of tag {} differs from the files", short(tag))));
                }
            }
            let untagged: Vec<String> = lib.untagged_files().map_err(err)?.into_iter().map(|f| f.id).collect();
            if untagged != ids(&|f| f.tags.is_empty()) {
                return Err(self.fail(format!("d{i}: the untagged files differ from the files: {untagged:?}")));
            }
            let counts = lib.file_counts().map_err(err)?;
            if counts.files != files.len() || counts.untagged != untagged.len() {
                return Err(self.fail(format!("d{i}: counts {counts:?} for {} files", files.len())));
            }
        }
        Ok(())
    }

    fn dev(&self, d: u8) -> usize {
        d as usize % self.n
    }

    fn log(&mut self, line: String) {
        self.trace.push(line);
    }

    fn fail(&self, what: String) -> String {
        format!("{what}\nresolved trace:\n  {}", self.trace.join("\n  "))
    }

    /// The acting device's tag ids, sorted.
    fn tag_ids(&self, i: usize) -> Result<Vec<String>, String> {
        Ok(self.c.lib(i).tags().map_err(|e| self.fail(format!("d{i}: tags: {e}")))?.into_keys().collect())
    }

    fn file_ids(&self, i: usize) -> Result<Vec<String>, String> {
        Ok(self.c.lib(i).files().map_err(|e| self.fail(format!("d{i}: files: {e}")))?.into_keys().collect())
    }

    fn pick(list: &[String], k: u8) -> Option<&String> {
        (!list.is_empty()).then(|| &list[k as usize % list.len()])
    }

    /// A model call's result: refusals the model documents (a move under a descendant) are
    /// fine; anything else is a failure.
    fn model<T>(&self, i: usize, what: &str, r: Result<T, ModelError>) -> Result<Option<T>, String> {
        match r {
            Ok(v) => Ok(Some(v)),
            // Refused edits: a move under its own subtree, a name a sibling has.
            Err(ModelError::Cycle(_) | ModelError::NameTaken { .. }) => Ok(None),
            Err(e) => Err(self.fail(format!("d{i}: {what} failed: {e}"))),
        }
    }

    /// Records what a flush wrote and holds it back from every other device.
    fn wrote(&mut self, i: usize, seq: u64, snapshot: bool) {
        let name = if snapshot { names::snapshot_name(seq) } else { names::delta_name(seq) };
        self.written[i].push((seq, name.clone()));
        for r in (0..self.n).filter(|&r| r != i) {
            self.layers[r].hold.hold(self.ids[i], &name);
            self.held[r][i].insert(seq);
        }
    }

    fn release(&mut self, to: usize, from: usize, seq: u64) {
        let name = self.written[from]
            .iter()
            .find(|(s, _)| *s == seq)
            .map_or_else(|| names::delta_name(seq), |(_, n)| n.clone());
        self.layers[to].hold.release(self.ids[from], &name);
        self.held[to][from].remove(&seq);
    }

    async fn flush(&mut self, i: usize) -> Outcome {
        match self.c.dev(i).replica.flush().await {
            Ok(Some(info)) => {
                self.log(format!("d{i}: flushed seq {} ({} edits)", info.seq, info.changes));
                self.wrote(i, info.seq, info.snapshot);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => Err(self.fail(format!("d{i}: flush failed (own writes are never faulted): {e}"))),
        }
    }

    /// One ingest pass; failures of the medium are expected while faults are on.
    fn ingested(&mut self, i: usize, r: Result<onefolder_core::IngestReport, Error>) -> Outcome {
        match r {
            Ok(report) => {
                if report.applied > 0 {
                    self.log(format!("d{i}: ingest applied {}", report.applied));
                }
                Ok(())
            }
            Err(Error::Transport(_)) => Ok(()),
            Err(e) => Err(self.fail(format!("d{i}: ingest failed: {e}"))),
        }
    }

    async fn step(&mut self, step: &Step) -> Outcome {
        match *step {
            Step::CreateTag { dev, parent, ref name } => {
                let i = self.dev(dev);
                let tags = self.tag_ids(i)?;
                let parent = parent.and_then(|p| Self::pick(&tags, p)).cloned();
                let unique = matches!(name, Name::Unique);
                let name = match name {
                    Name::Unique => {
                        self.next_unique += 1;
                        format!("u{}", self.next_unique)
                    }
                    Name::Pool(k) => NAMES[*k as usize].to_owned(),
                };
                let r = self.c.lib(i).create_tag(parent.as_deref(), &name, None);
                if let Some(id) = self.model(i, "create tag", r)? {
                    let under = parent.as_deref().map_or("root", short);
                    self.log(format!("d{i}: create tag {name:?} under {under} -> {}", short(&id)));
                    if unique {
                        self.unique.insert(id, name);
                    }
                }
            }
            Step::RenameTag { dev, tag, name } => {
                let i = self.dev(dev);
                if let Some(t) = Self::pick(&self.tag_ids(i)?, tag).cloned() {
                    let name = NAMES[name as usize];
                    self.log(format!("d{i}: rename {} to {name:?}", short(&t)));
                    let r = self.c.lib(i).rename_tag(&t, name);
                    self.model(i, "rename", r)?;
                }
            }
            Step::Recolor { dev, tag, color } => {
                let i = self.dev(dev);
                if let Some(t) = Self::pick(&self.tag_ids(i)?, tag).cloned() {
                    let color = color.map(|c| COLORS[c as usize]);
                    self.log(format!("d{i}: color {} {color:?}", short(&t)));
                    let r = self.c.lib(i).set_tag_color(&t, color);
                    self.model(i, "recolor", r)?;
                }
            }
            Step::MoveTag { dev, tag, parent } => {
                let i = self.dev(dev);
                let tags = self.tag_ids(i)?;
                if let Some(t) = Self::pick(&tags, tag).cloned() {
                    let parent = parent.and_then(|p| Self::pick(&tags, p)).cloned();
                    let r = self.c.lib(i).move_tag(&t, parent.as_deref());
                    let done = self.model(i, "move", r)?.is_some();
                    let under = parent.as_deref().map_or("root", short);
                    self.log(format!("d{i}: move {} under {under}{}", short(&t), if done { "" } else { " (refused)" }));
                }
            }
            Step::DeleteTag { dev, tag } => {
                let i = self.dev(dev);
                let before = self.tag_ids(i)?;
                if let Some(t) = Self::pick(&before, tag).cloned() {
                    let r = self.c.lib(i).delete_tag(&t);
                    self.model(i, "delete tag", r)?;
                    self.gone(i, &before, format!("delete {}", short(&t)))?;
                }
            }
            Step::MergeTags { dev, from, into } => {
                let i = self.dev(dev);
                let before = self.tag_ids(i)?;
                if let (Some(f), Some(t)) = (Self::pick(&before, from).cloned(), Self::pick(&before, into).cloned()) {
                    let r = self.c.lib(i).merge_tags(&f, &t);
                    if self.model(i, "merge", r)?.is_some() {
                        self.gone(i, &before, format!("merge {} into {}", short(&f), short(&t)))?;
                    }
                }
            }
            Step::UpsertFile { dev, path: p, size } => {
                let i = self.dev(dev);
                let r = self.c.lib(i).upsert_file(&self.location, &path(p), &meta(size));
                if let Some(id) = self.model(i, "upsert", r)? {
                    self.log(format!("d{i}: upsert {} size {size} -> {}", path(p), short(&id)));
                }
            }
            Step::Assign { dev, file, tag } => {
                let i = self.dev(dev);
                let (files, tags) = (self.file_ids(i)?, self.tag_ids(i)?);
                if let (Some(f), Some(t)) = (Self::pick(&files, file).cloned(), Self::pick(&tags, tag).cloned()) {
                    self.log(format!("d{i}: assign {} to {}", short(&t), short(&f)));
                    let r = self.c.lib(i).assign(&f, &t);
                    self.model(i, "assign", r)?;
                }
            }
            Step::Unassign { dev, file, tag } => {
                let i = self.dev(dev);
                if let Some(f) = Self::pick(&self.file_ids(i)?, file).cloned() {
                    let own: Vec<String> =
                        self.c.lib(i).file(&f).ok().flatten().map(|f| f.tags.into_iter().collect()).unwrap_or_default();
                    if let Some(t) = Self::pick(&own, tag).cloned() {
                        self.log(format!("d{i}: unassign {} from {}", short(&t), short(&f)));
                        let r = self.c.lib(i).unassign(&f, &t);
                        self.model(i, "unassign", r)?;
                    }
                }
            }
            Step::Relocate { dev, file, path: p } => {
                let i = self.dev(dev);
                if let Some(f) = Self::pick(&self.file_ids(i)?, file).cloned() {
                    let r = self.c.lib(i).relocate_file(&f, &self.location, &path(p));
                    if let Some(new) = self.model(i, "relocate", r)? {
                        self.log(format!("d{i}: relocate {} to {} -> {}", short(&f), path(p), short(&new)));
                    }
                }
            }
            Step::DeleteFile { dev, file } => {
                let i = self.dev(dev);
                if let Some(f) = Self::pick(&self.file_ids(i)?, file).cloned() {
                    self.log(format!("d{i}: remove file {}", short(&f)));
                    let r = self.c.lib(i).remove_file(&f);
                    self.model(i, "remove file", r)?;
                }
            }
            Step::Annotate { dev, file, text } => {
                let i = self.dev(dev);
                if let Some(f) = Self::pick(&self.file_ids(i)?, file).cloned() {
                    let text = text.map(|t| format!("note {t}"));
                    self.log(format!("d{i}: annotate {} {text:?}", short(&f)));
                    let r = self.c.lib(i).set_annotations(&f, text.as_deref());
                    self.model(i, "annotate", r)?;
                }
            }
            Step::Hide { dev, tag, hidden } => {
                let i = self.dev(dev);
                if let Some(t) = Self::pick(&self.tag_ids(i)?, tag).cloned() {
                    self.log(format!("d{i}: hide {} {hidden}", short(&t)));
                    let r = self.c.lib(i).set_tag_hidden(&t, hidden);
                    self.model(i, "hide", r)?;
                }
            }
            Step::Reorder { dev, tag, slot } => {
                let i = self.dev(dev);
                let tags = self.c.lib(i).tags().map_err(|e| self.fail(e.to_string()))?;
                let ids: Vec<String> = tags.keys().cloned().collect();
                if let Some(t) = Self::pick(&ids, tag).cloned() {
                    let mut siblings: Vec<&onefolder_model::Tag> =
                        tags.values().filter(|s| s.parent == tags[&t].parent && s.id != t).collect();
                    siblings.sort_by(|a, b| a.order.cmp(&b.order).then_with(|| a.id.cmp(&b.id)));
                    let k = slot as usize % (siblings.len() + 1);
                    let after = k.checked_sub(1).map(|k| siblings[k].id.clone());
                    let before = siblings.get(k).map(|s| s.id.clone());
                    let r = self.c.lib(i).reorder_tag(&t, after.as_deref(), before.as_deref());
                    // Two siblings made concurrently can share an order key: nothing fits
                    // between them, and the model refuses.
                    let done = match r {
                        Err(ModelError::InvalidName(_)) => false,
                        r => self.model(i, "reorder", r)?.is_some(),
                    };
                    self.log(format!(
                        "d{i}: reorder {} between {} and {}{}",
                        short(&t),
                        after.as_deref().map_or("start", short),
                        before.as_deref().map_or("end", short),
                        if done { "" } else { " (refused)" }
                    ));
                }
            }
            Step::Exclude { dev, folder, excluded } => {
                let i = self.dev(dev);
                self.log(format!("d{i}: exclude dir{folder} {excluded}"));
                let r = self.c.lib(i).set_exclusion(&self.location, &format!("dir{folder}"), excluded);
                self.model(i, "exclude", r)?;
            }
            Step::SaveSearch { dev, name } => {
                let i = self.dev(dev);
                let criteria = serde_json::json!([{ "key": "tags", "operator": "contains", "value": name }]);
                let r = self.c.lib(i).save_search(&format!("search {name}"), &criteria, name % 2 == 0);
                if let Some(id) = self.model(i, "save search", r)? {
                    self.log(format!("d{i}: save search {name} -> {}", short(&id)));
                }
            }
            Step::DeleteSearch { dev, search } => {
                let i = self.dev(dev);
                let ids: Vec<String> =
                    self.c.lib(i).searches().map_err(|e| self.fail(e.to_string()))?.into_keys().collect();
                if let Some(sid) = Self::pick(&ids, search).cloned() {
                    self.log(format!("d{i}: delete search {}", short(&sid)));
                    let r = self.c.lib(i).delete_search(&sid);
                    self.model(i, "delete search", r)?;
                }
            }
            Step::Backup { dev } => {
                let i = self.dev(dev);
                let export = self.c.lib(i).export().map_err(|e| self.fail(e.to_string()))?;
                self.log(format!("d{i}: backup #{}", self.backups.len()));
                self.backups.push(export);
            }
            Step::Restore { dev, backup, merge } => {
                let i = self.dev(dev);
                if !self.backups.is_empty() {
                    let k = backup as usize % self.backups.len();
                    let before = self.tag_ids(i)?;
                    let mode = if merge { ImportMode::Merge } else { ImportMode::Replace };
                    let r = self.c.lib(i).import(&self.backups[k], mode);
                    self.model(i, "restore", r)?;
                    self.gone(i, &before, format!("restore backup #{k} ({mode:?})"))?;
                }
            }
            Step::Flush { dev } => self.flush(self.dev(dev)).await?,
            Step::Ingest { dev } => {
                let i = self.dev(dev);
                let r = self.c.dev(i).replica.ingest().await;
                self.ingested(i, r)?;
            }
            Step::SyncTogether { mask } => {
                let which: Vec<usize> = (0..self.n).filter(|i| mask & (1 << i) != 0).collect();
                self.log(format!("sync together {which:?}"));
                let online: Vec<usize> =
                    which.iter().copied().filter(|&i| !self.layers[i].offline.is_offline()).collect();
                for &to in &online {
                    for &from in &online {
                        for seq in std::mem::take(&mut self.held[to][from]) {
                            self.release(to, from, seq);
                        }
                    }
                }
                let mut passes = tokio::task::JoinSet::new();
                for &i in &which {
                    let replica = self.c.dev(i).replica.clone();
                    passes.spawn(async move {
                        let (flushed, ingested) = tokio::join!(replica.flush(), replica.ingest());
                        (i, flushed, ingested)
                    });
                }
                let mut results = passes.join_all().await;
                results.sort_by_key(|(i, _, _)| *i);
                for (i, flushed, ingested) in results {
                    match flushed {
                        Ok(Some(info)) => {
                            self.log(format!("d{i}: flushed seq {} ({} edits)", info.seq, info.changes));
                            self.wrote(i, info.seq, info.snapshot);
                        }
                        Ok(None) => {}
                        Err(e) => return Err(self.fail(format!("d{i}: flush failed: {e}"))),
                    }
                    self.ingested(i, ingested)?;
                }
            }
            Step::Deliver { to, from, pick } => {
                let (to, from) = (self.dev(to), self.dev(from));
                let cut = self.layers[to].offline.is_offline() || self.layers[from].offline.is_offline();
                let held: Vec<u64> = self.held[to][from].iter().copied().collect();
                if !cut && !held.is_empty() {
                    let seq = held[pick as usize % held.len()];
                    self.log(format!("deliver d{from} seq {seq} to d{to}"));
                    self.release(to, from, seq);
                }
            }
            Step::DeliverAll { to } => {
                let to = self.dev(to);
                if !self.layers[to].offline.is_offline() {
                    self.log(format!("deliver all to d{to}"));
                    let online: Vec<usize> = (0..self.n).filter(|&f| !self.layers[f].offline.is_offline()).collect();
                    for from in online {
                        for seq in std::mem::take(&mut self.held[to][from]) {
                            self.release(to, from, seq);
                        }
                    }
                }
            }
            Step::Duplicate { from, pick } => {
                let from = self.dev(from);
                if let Some((seq, name)) =
                    self.written[from].get(pick as usize % self.written[from].len().max(1)).cloned()
                {
                    let copy = format!("{} (Laptop's conflicted copy 2026-11-25).seg", name.trim_end_matches(".seg"));
                    let device = self.ids[from];
                    // A tidy that failed half-way may have deleted a segment still listed here.
                    let bytes = match self.raw.read(&device, &name, u64::MAX).await {
                        Ok(bytes) => bytes,
                        Err(TransportError::NotFound(_)) => return Ok(()),
                        Err(e) => return Err(self.fail(e.to_string())),
                    };
                    if self.raw.create(&device, &copy, &bytes).await.is_ok() {
                        self.log(format!("conflicted copy of d{from} seq {seq}"));
                    }
                }
            }
            Step::Partition { dev } => {
                let i = self.dev(dev);
                self.log(format!("d{i} offline"));
                self.layers[i].offline.set_offline(true);
            }
            Step::Heal { dev } => {
                let i = self.dev(dev);
                self.log(format!("d{i} online"));
                self.layers[i].offline.set_offline(false);
            }
            Step::Restart { dev } => {
                let i = self.dev(dev);
                self.log(format!("d{i} restarts without flushing"));
                let before = self.c.lib(i).export().map_err(|e| self.fail(e.to_string()))?;
                self.c.restart(i).await;
                let after = self.c.lib(i).export().map_err(|e| self.fail(e.to_string()))?;
                if before != after {
                    return Err(self.fail(format!("d{i}: a restart changed the library")));
                }
                if self.c.dev(i).replica.device() != self.ids[i] {
                    return Err(self.fail(format!("d{i}: a restart took a new device id")));
                }
            }
            Step::Compact { dev } => {
                let i = self.dev(dev);
                self.log(format!("d{i} compacts"));
                self.c.dev(i).replica.compact().map_err(|e| self.fail(format!("d{i}: compact failed: {e}")))?;
            }
            Step::Tidy { dev } => {
                let i = self.dev(dev);
                match self.c.dev(i).replica.tidy_own_folder().await {
                    Ok(report) => {
                        self.log(format!("d{i} tidies: {report:?}"));
                        if let (Some(snapshot), true) = (report.snapshot, report.deleted > 0) {
                            self.written[i].retain(|(seq, _)| *seq >= snapshot);
                        }
                    }
                    Err(Error::Transport(e)) => self.log(format!("d{i} tidy failed: {e}")),
                    Err(e) => return Err(self.fail(format!("d{i}: tidy failed: {e}"))),
                }
            }
        }
        Ok(())
    }

    /// Records the tags that vanished from device `i`'s view by its own delete or merge.
    fn gone(&mut self, i: usize, before: &[String], what: String) -> Outcome {
        let after: BTreeSet<String> = self.tag_ids(i)?.into_iter().collect();
        let gone: Vec<&String> = before.iter().filter(|t| !after.contains(*t)).collect();
        self.log(format!("d{i}: {what} (gone: {})", gone.iter().map(|t| short(t)).collect::<Vec<_>>().join(" ")));
        self.deleted.extend(gone.into_iter().cloned());
        Ok(())
    }

    /// Faults off, partitions healed, everything delivered, two full sync rounds.
    async fn settle(&mut self) -> Outcome {
        self.log("settle: online, faults off, everything delivered".into());
        for l in &self.layers {
            l.offline.set_offline(false);
            l.faults.set_active(false);
            l.hold.release_all();
        }
        self.held.iter_mut().flatten().for_each(BTreeSet::clear);
        for _ in 0..2 {
            for i in 0..self.n {
                if let Err(e) = self.c.dev(i).replica.flush().await {
                    return Err(self.fail(format!("settle: d{i}: flush failed: {e}")));
                }
            }
            for i in 0..self.n {
                if let Err(e) = self.c.dev(i).replica.ingest().await {
                    return Err(self.fail(format!("settle: d{i}: ingest failed: {e}")));
                }
            }
        }
        Ok(())
    }

    async fn check(&mut self) -> Outcome {
        let exports: Vec<String> = (0..self.n)
            .map(|i| self.c.lib(i).export().map(|e| e.to_json()).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        for (i, e) in exports.iter().enumerate().skip(1) {
            if *e != exports[0] {
                return Err(self.fail(format!("device {i} differs from device 0:\n{}", diff(&exports[0], e))));
            }
        }
        for i in 0..self.n {
            let replica = &self.c.dev(i).replica;
            if replica.read(|e| e.has_pending()) {
                return Err(self.fail(format!("d{i}: changes still wait for missing dependencies")));
            }
            match replica.flush().await {
                Ok(None) => {}
                Ok(Some(info)) => return Err(self.fail(format!("d{i}: wrote seq {} after settling", info.seq))),
                Err(e) => return Err(self.fail(format!("d{i}: flush failed: {e}"))),
            }
            if let Some(w) = replica.status().warnings.iter().find(|w| w.message.contains("engine rejected")) {
                return Err(self.fail(format!("d{i}: the engine rejected a peer's segment: {w:?}")));
            }
        }
        let tags = self.c.lib(0).tags().map_err(|e| e.to_string())?;
        for (id, name) in &self.unique {
            if !self.deleted.contains(id) && !tags.contains_key(id) {
                return Err(self.fail(format!("tag {name:?} ({}) was never deleted but is gone", short(id))));
            }
        }
        self.indexes_agree()?;
        // No view shows a dangling id or a cycle.
        let export = self.c.lib(0).export().map_err(|e| e.to_string())?;
        for (id, f) in &export.files {
            if let Some(t) = f.tags.iter().find(|t| !export.tags.contains_key(*t)) {
                return Err(self.fail(format!("file {} shows deleted tag {}", short(id), short(t))));
            }
        }
        for (id, t) in &export.tags {
            let mut seen = BTreeSet::from([id.as_str()]);
            let mut cur = t.parent.as_deref();
            while let Some(p) = cur {
                let Some(parent) = export.tags.get(p) else {
                    return Err(self.fail(format!("tag {} has a dangling parent {}", short(id), short(p))));
                };
                if !seen.insert(p) {
                    return Err(self.fail(format!("tag {} is in a cycle", short(id))));
                }
                cur = parent.parent.as_deref();
            }
        }
        Ok(())
    }
}

/// The first differing region of two exports, with a little context.
fn diff(a: &str, b: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let first = a.iter().zip(&b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
    let from = first.saturating_sub(6);
    let show = |l: &[&str]| l[from.min(l.len())..(first + 6).min(l.len())].join("\n");
    format!("device 0 (from line {from}):\n{}\n--- device i:\n{}", show(&a), show(&b))
}

async fn run_schedule<B: Backend>(n: usize, seed: u64, steps: &[Step]) -> Outcome {
    let mut run = Run::<B>::start(n, seed).await;
    for step in steps {
        // Every device's tag index exists before each step, so that the steps keep it up to
        // date (local edits, remote applies) rather than the final check building it.
        run.indexes_agree()?;
        run.step(step).await?;
    }
    run.settle().await?;
    run.check().await
}

/// Runs one schedule on a fresh current-thread runtime (one per case).
fn check<B: Backend>(n: usize, seed: u64, steps: &[Step]) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    rt.block_on(run_schedule::<B>(n, seed, steps)).map_err(TestCaseError::fail)
}

/// The shrunk case of the first restart failure: d1 ingested a peer's file, restarted without
/// flushing, and the file was gone (yrs, found at 400 cases per combination). d1's log then
/// held a segment of d0 that waited for an earlier one of d0's segments; replayed as one
/// merged update, every later block of d0 waited behind it, the new file included.
fn restart_after_ingest_steps() -> Vec<Step> {
    vec![
        Step::SaveSearch { dev: 1, name: 0 },
        Step::UpsertFile { dev: 3, path: 4, size: 15 },
        Step::Assign { dev: 3, file: 183, tag: 245 },
        Step::Flush { dev: 0 },
        Step::RenameTag { dev: 2, tag: 216, name: 2 },
        Step::SyncTogether { mask: 1 },
        Step::UpsertFile { dev: 0, path: 5, size: 17 },
        Step::Ingest { dev: 0 },
        Step::UpsertFile { dev: 3, path: 2, size: 15 },
        Step::CreateTag { dev: 0, parent: None, name: Name::Unique },
        Step::CreateTag { dev: 0, parent: None, name: Name::Unique },
        Step::Flush { dev: 2 },
        Step::Flush { dev: 3 },
        Step::Flush { dev: 3 },
        Step::CreateTag { dev: 2, parent: Some(16), name: Name::Pool(4) },
        Step::SyncTogether { mask: 13 },
        Step::Reorder { dev: 0, tag: 5, slot: 169 },
        Step::Deliver { to: 2, from: 1, pick: 105 },
        Step::Deliver { to: 2, from: 2, pick: 154 },
        Step::CreateTag { dev: 3, parent: Some(31), name: Name::Unique },
        Step::Recolor { dev: 3, tag: 235, color: Some(2) },
        Step::MoveTag { dev: 2, tag: 115, parent: None },
        Step::Flush { dev: 0 },
        Step::SyncTogether { mask: 7 },
        Step::Flush { dev: 3 },
        Step::DeleteTag { dev: 2, tag: 157 },
        Step::Deliver { to: 2, from: 0, pick: 140 },
        Step::Flush { dev: 1 },
        Step::DeleteTag { dev: 2, tag: 13 },
        Step::Backup { dev: 0 },
        Step::Ingest { dev: 0 },
        Step::Flush { dev: 3 },
        Step::Flush { dev: 3 },
        Step::Assign { dev: 3, file: 224, tag: 50 },
        Step::DeliverAll { to: 1 },
        Step::Ingest { dev: 2 },
        Step::Assign { dev: 2, file: 22, tag: 22 },
        Step::Recolor { dev: 1, tag: 199, color: None },
        Step::Recolor { dev: 0, tag: 60, color: Some(1) },
        Step::Ingest { dev: 0 },
        Step::UpsertFile { dev: 3, path: 2, size: 40 },
        Step::RenameTag { dev: 3, tag: 90, name: 2 },
        Step::Compact { dev: 0 },
        Step::Deliver { to: 3, from: 2, pick: 33 },
        Step::SyncTogether { mask: 8 },
        Step::RenameTag { dev: 1, tag: 81, name: 4 },
        Step::SyncTogether { mask: 4 },
        Step::DeleteTag { dev: 2, tag: 112 },
        Step::Flush { dev: 0 },
        Step::Flush { dev: 1 },
        Step::Assign { dev: 0, file: 133, tag: 67 },
        Step::Annotate { dev: 1, file: 15, text: None },
        Step::Restart { dev: 1 },
        Step::UpsertFile { dev: 2, path: 1, size: 76 },
        Step::Assign { dev: 2, file: 70, tag: 163 },
        Step::Deliver { to: 3, from: 0, pick: 66 },
        Step::CreateTag { dev: 1, parent: None, name: Name::Unique },
        Step::SyncTogether { mask: 11 },
        Step::MoveTag { dev: 0, tag: 218, parent: Some(47) },
        Step::Ingest { dev: 3 },
        Step::Restart { dev: 1 },
        Step::CreateTag { dev: 3, parent: Some(204), name: Name::Pool(3) },
        Step::CreateTag { dev: 0, parent: None, name: Name::Unique },
        Step::Annotate { dev: 0, file: 250, text: None },
        Step::Ingest { dev: 1 },
        Step::Heal { dev: 3 },
        Step::Deliver { to: 2, from: 0, pick: 252 },
        Step::Ingest { dev: 3 },
        Step::Flush { dev: 0 },
        Step::Reorder { dev: 2, tag: 231, slot: 144 },
        Step::DeliverAll { to: 1 },
        Step::Backup { dev: 1 },
        Step::Flush { dev: 1 },
        Step::UpsertFile { dev: 1, path: 4, size: 244 },
        Step::SyncTogether { mask: 1 },
        Step::Restore { dev: 2, backup: 105, merge: true },
        Step::Ingest { dev: 2 },
        Step::Deliver { to: 2, from: 2, pick: 15 },
        Step::Flush { dev: 2 },
        Step::Annotate { dev: 1, file: 57, text: None },
        Step::Exclude { dev: 2, folder: 1, excluded: false },
        Step::DeleteSearch { dev: 3, search: 29 },
        Step::Ingest { dev: 1 },
        Step::Recolor { dev: 2, tag: 173, color: Some(2) },
        Step::Duplicate { from: 3, pick: 197 },
        Step::Flush { dev: 2 },
        Step::Flush { dev: 2 },
        Step::SyncTogether { mask: 9 },
        Step::DeliverAll { to: 3 },
        Step::Flush { dev: 0 },
        Step::MoveTag { dev: 0, tag: 126, parent: None },
        Step::Assign { dev: 3, file: 98, tag: 233 },
        Step::Ingest { dev: 1 },
        Step::UpsertFile { dev: 2, path: 5, size: 169 },
    ]
}

/// The schedules for the combination `B` in scope.
macro_rules! random_schedules {
    () => {
        proptest! {
            #![proptest_config(config(module_path!()))]
            #[test]
            fn random((n, seed, steps) in schedule()) {
                check::<B>(n, seed, &steps)?;
            }
        }

        /// Regression: a restart right after ingesting a peer's file dropped the file.
        #[test]
        fn restart_after_ingest_keeps_the_peer_file() {
            check::<B>(2, 13709127835086719578, &restart_after_ingest_steps()).unwrap();
        }
    };
}

onefolder_conformance::for_each_combination!(random_schedules);
