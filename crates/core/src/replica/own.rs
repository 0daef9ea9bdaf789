//! This device's own folder on the shared medium, checked against what the store says was
//! written there (the flush records hold each segment's name, size and payload checksum).
//!
//! - **A segment another copy of this local state wrote** (a disk image restored on a second
//!   computer; both flushed the same seq before the cloud settled, and the sync client kept one
//!   write under the canonical name and the other as a conflict copy): its header names this
//!   device, but its payload is not the one this device wrote under that seq, or there is no
//!   record of the seq at all. Since a device never ingests its own folder, each copy would miss
//!   the other's edits forever. This device takes a new id; the old folder becomes an ordinary
//!   peer, and the next pass applies everything in it — the other copy's segments included.
//! - **Own segments damaged on the medium** (truncated, emptied, deleted by a sync client, a user
//!   or a conflict resolution): peers would never get those edits. The whole document is
//!   published again as one snapshot segment (`snap-<seq>.seg`, through the flush path, so a
//!   failed write is retried with the same bytes and consumes no further seq). A damaged segment
//!   older than an intact own snapshot is covered by it. The check deletes nothing: a file that
//!   only looks damaged (an online-only placeholder, a listing that lags) stays as it is, until
//!   a snapshot covers it and the grace period has passed (`tidy.rs`).
//!
//! - **Conflict copies of `device.json`** (only this device writes it, so a copy is stale) are
//!   removed.
//!
//! Only files whose listing disagrees with the records are read (a size that differs, a name
//! without a record, a conflict copy or a seq that has one), so a check of an intact folder is
//! one listing. What looks damaged is listed and read a second time before anything is
//! published: a read caught half-way is not damage.

use std::collections::{BTreeMap, BTreeSet};

use super::Replica;
use super::state::{META_DEVICE_FIRST_SEQ, META_PRUNED_BELOW};
use crate::ids::DeviceId;
use crate::names::{DEVICE_FILE, SegmentName};
use crate::segment::{self, Expect, HEADER_LEN, SegmentKind};
use crate::store::FlushRecord;
use crate::transport::{FileEntry, TransportError};
use crate::{Error, Result};

/// What a check of the own folder found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnFolderCheck {
    /// Files another copy of this local state wrote (this device then took a new id).
    pub foreign: Vec<String>,
    /// Own segments missing or damaged on the medium and not covered by a later snapshot.
    pub damaged: Vec<String>,
    /// The seq of the snapshot segment published because of them.
    pub republished: Option<u64>,
}

/// What one look at the own folder says.
#[derive(Default)]
struct Findings {
    foreign: Vec<String>,
    /// Seq → file name of records whose file is missing or damaged.
    damaged: BTreeMap<u64, String>,
    /// Seqs of intact own snapshot segments.
    snapshots: BTreeSet<u64>,
    /// The sync client's conflict copies of this device's `device.json`.
    device_copies: Vec<String>,
}

impl Replica {
    /// Checks this device's folder on the medium against the flush records (see the module
    /// docs of `own.rs`): takes a new device id when another copy of this local state wrote
    /// there, and publishes the document again as a snapshot segment when own segments are
    /// missing or damaged. Runs every [`ReplicaConfig::own_check_every`] in [`Replica::run`];
    /// at open the same check runs, and the snapshot it calls for waits for the next flush.
    /// A listing that fails is an error and changes nothing.
    ///
    /// [`ReplicaConfig::own_check_every`]: super::ReplicaConfig::own_check_every
    pub async fn check_own_folder(&self) -> Result<OwnFolderCheck> {
        let mut check = self.inspect_own_folder().await?;
        // Damaged now, or found so at open and not published yet.
        if !check.damaged.is_empty() || self.lock().republish_due {
            self.flush().await?;
            let st = self.lock();
            check.republished = st.last_flush.as_ref().map(|f| f.seq).filter(|_| !st.republish_due);
        }
        Ok(check)
    }

    /// The check without the publishing: a new device id when another copy wrote here, and a
    /// snapshot due at the next flush when own segments are damaged.
    pub(super) async fn inspect_own_folder(&self) -> Result<OwnFolderCheck> {
        // No flush is half-way meanwhile: its new file would look like another writer's.
        let first = self.look_between_flushes().await?;
        let mut check = OwnFolderCheck::default();
        // Only this device writes its `device.json`: a conflict copy of it is stale by
        // definition, and would show an old name to whoever reads it.
        for copy in &first.device_copies {
            if let Err(e) = self.transport.delete(&self.device(), copy).await {
                tracing::warn!(file = %copy, error = %e, "could not remove a conflict copy of device.json");
            }
        }
        if !first.foreign.is_empty() {
            check.foreign = first.foreign.clone();
            let why = format!("its folder holds segments this device did not write: {}", first.foreign.join(", "));
            self.take_new_device_id(&why)?;
            self.write_device_info().await;
        }
        let mut damaged = uncovered(&first);
        if !damaged.is_empty() && check.foreign.is_empty() {
            // Seen twice before anything is published: a listing or read can catch a file
            // half-way through a sync client's work.
            let again = uncovered(&self.look_between_flushes().await?);
            damaged.retain(|seq, _| again.contains_key(seq));
        }
        if !damaged.is_empty() {
            check.damaged = damaged.into_values().collect();
            tracing::warn!(files = ?check.damaged, "own segments are missing or damaged on the medium; a snapshot is due");
            self.lock().republish_due = true;
        }
        Ok(check)
    }

    async fn look_between_flushes(&self) -> Result<Findings> {
        let _flushing = self.flush_lock.lock().await;
        self.look().await
    }

    /// Lists the own folder and compares it with the flush records.
    async fn look(&self) -> Result<Findings> {
        let device = self.device();
        let listed = self.transport.list(&device).await?;
        let (records, prepared) = {
            let st = self.lock();
            // Records of earlier device ids belong to folders that are peers now.
            let first_seq = super::state::read_u64_meta(st.store.as_ref(), META_DEVICE_FIRST_SEQ)?.unwrap_or(0);
            let mut records: BTreeMap<u64, FlushRecord> =
                st.store.flushes()?.into_iter().filter(|r| r.seq >= first_seq).map(|r| (r.seq, r)).collect();
            let prepared = st.prepared.as_ref().filter(|p| p.device == device).map(|p| p.record.clone());
            if let Some(p) = &prepared {
                records.entry(p.seq).or_insert_with(|| p.clone());
            }
            (records, prepared)
        };
        // Own seqs below this were deleted as covered by an own snapshot (see `tidy.rs`).
        let pruned_below = {
            let st = self.lock();
            super::state::read_u64_meta(st.store.as_ref(), META_PRUNED_BELOW)?.unwrap_or(0)
        };
        let segments: Vec<(SegmentName, &FileEntry)> = listed
            .iter()
            .filter_map(|f| SegmentName::parse(&f.name).map(|n| (n, f)))
            .filter(|(n, _)| n.seq >= pruned_below)
            .collect();
        let with_copies: BTreeSet<u64> = segments.iter().filter(|(n, _)| n.variant).map(|(n, _)| n.seq).collect();
        let device_copies = listed.iter().filter(|f| is_device_file_copy(&f.name)).map(|f| f.name.clone()).collect();
        let mut found = Findings { device_copies, ..Findings::default() };
        let mut intact: BTreeSet<u64> = BTreeSet::new();
        for (name, file) in &segments {
            let record = records
                .get(&name.seq)
                .filter(|r| SegmentName::parse(&r.file_name).is_some_and(|n| n.kind == name.kind));
            let trusted =
                record.is_some_and(|r| r.size == file.size) && !name.variant && !with_copies.contains(&name.seq);
            if trusted {
                intact.insert(name.seq);
                if name.kind == SegmentKind::Snapshot {
                    found.snapshots.insert(name.seq);
                }
                continue;
            }
            match self.read_own(&device, file).await? {
                Some(header) if header.device == device => {
                    if record.is_some_and(|r| r.checksum == header.payload_crc) {
                        // Ours: the canonical file, or a conflict copy with the same bytes.
                        intact.insert(name.seq);
                        if name.kind == SegmentKind::Snapshot && !name.variant {
                            found.snapshots.insert(name.seq);
                        }
                    } else {
                        found.foreign.push(file.name.clone());
                    }
                }
                Some(header) => {
                    tracing::warn!(file = %file.name, claims = %header.device, "a segment of another device sits in this device's folder; ignored");
                }
                // Damaged (or gone since the listing): judged by its record below.
                None => {}
            }
        }
        for (seq, record) in &records {
            let is_prepared = prepared.as_ref().is_some_and(|p| p.seq == *seq);
            if !intact.contains(seq) && !is_prepared {
                found.damaged.insert(*seq, record.file_name.clone());
            }
        }
        Ok(found)
    }

    /// Reads an own file and decodes it; `None` when it is gone or does not decode.
    async fn read_own(&self, device: &DeviceId, file: &FileEntry) -> Result<Option<segment::SegmentHeader>> {
        if file.size == 0 {
            return Ok(None);
        }
        let cap = self.config.max_payload as u64 + HEADER_LEN as u64;
        let bytes = match self.transport.read(device, &file.name, cap).await {
            Ok(bytes) => bytes,
            Err(TransportError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(Error::Transport(e)),
        };
        let expect = Expect {
            library: self.manifest.library_id,
            engine: &self.manifest.engine,
            max_payload: self.config.max_payload,
        };
        Ok(segment::decode(&bytes, &expect).ok().map(|s| s.header))
    }

    /// Prepares the whole document as a snapshot segment for the flush path to write (retried
    /// as is when the write fails). Called by [`Replica::flush`] with its lock held, after the
    /// pending edits went out.
    /// Returns `false` when the snapshot is over the segment limit peers accept: it is not
    /// published, and the next attempt waits (see `tidy.rs`).
    pub(super) fn prepare_snapshot(&self) -> Result<bool> {
        let mut st = self.lock();
        let entries = st.store.unflushed()?;
        let last_upto = st.store.flushes()?.iter().map(|r| r.upto).max().unwrap_or(0);
        let upto = entries.last().map_or(last_upto, |e| e.id);
        let payload = st.engine.snapshot()?;
        // The same bytes fold the store's log (the lock is held: the store holds exactly what
        // the engine holds); `finish_flush` left that to this snapshot.
        if !st.engine.has_pending() && (st.compaction_due(self.config.compact_every) || st.fold_worthwhile()) {
            st.compact_with(&payload)?;
        }
        if payload.len() > self.config.max_payload as usize {
            tracing::warn!(
                bytes = payload.len(),
                limit = self.config.max_payload,
                "the document is over the segment limit; no snapshot segment is published, own deltas stay"
            );
            st.snapshot_refused(payload.len() as u64);
            return Ok(false);
        }
        let pending = self.seal(&mut st, SegmentKind::Snapshot, &payload, upto, entries.len())?;
        st.persist_prepared(pending)?;
        st.republish_due = false;
        Ok(true)
    }
}

/// Whether a name is a sync client's conflict copy of `device.json`
/// (`device.sync-conflict-….json`, `device (… conflicted copy …).json`, `device-PC-2.json`).
fn is_device_file_copy(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower != DEVICE_FILE && lower.starts_with("device") && lower.ends_with(".json") && !name.starts_with('.')
}

/// Damaged records not covered by a later intact own snapshot.
fn uncovered(f: &Findings) -> BTreeMap<u64, String> {
    let newest = f.snapshots.last().copied();
    f.damaged.iter().filter(|(seq, _)| newest.is_none_or(|s| **seq > s)).map(|(s, n)| (*s, n.clone())).collect()
}
