//! The replica's in-memory state beside the engine: the store, identity, cursors, and what
//! is pending; and the operations that keep engine and store in step.

use std::collections::{BTreeMap, HashMap, HashSet};

use tokio::time::Instant;

use super::backoff::Failure;
use super::flush::PendingFlush;
use super::status::{FlushInfo, PeerStatus, Warning};
use crate::Result;
use crate::engine::Engine;
use crate::ids::DeviceId;
use crate::names::SegmentName;
use crate::store::{AppliedSegment, Store, StoreError};
use crate::transport::{ChangeCursor, FileEntry};

pub(super) const META_DEVICE_ID: &str = "device_id";
pub(super) const META_LIBRARY_ID: &str = "library_id";
pub(super) const META_NEXT_SEQ: &str = "next_seq";
pub(super) const META_CREATED: &str = "device_created_ms";
/// What `device.json` said when this device last wrote it (without the last-seen time).
pub(super) const META_DEVICE_INFO: &str = "device_info_written";
/// The first seq written under the current device id (absent: since the state was created).
pub(super) const META_DEVICE_FIRST_SEQ: &str = "device_first_seq";
/// When this device last wrote `device.json` (ms since the Unix epoch).
pub(super) const META_DEVICE_INFO_AT: &str = "device_info_written_ms";
/// The segment prepared by a flush and not yet known to be written (see `flush.rs`).
pub(super) const META_PREPARED: &str = "prepared_flush";
/// Own seqs below this were deleted from the medium, covered by an own snapshot, and their
/// flush records forgotten (see `tidy.rs`).
pub(super) const META_PRUNED_BELOW: &str = "own_pruned_below";

pub(super) type ContentKey = (DeviceId, u64, u64, u32);

pub(super) struct State {
    pub(super) engine: Box<dyn Engine>,
    pub(super) store: Box<dyn Store>,
    pub(super) device: DeviceId,
    pub(super) next_seq: u64,
    pub(super) applied_names: HashMap<DeviceId, HashMap<String, u64>>,
    pub(super) applied_content: HashSet<ContentKey>,
    pub(super) peers: BTreeMap<DeviceId, PeerStatus>,
    pub(super) warnings: BTreeMap<(String, Option<String>), Warning>,
    pub(super) pending_edits: usize,
    pub(super) first_pending: Option<Instant>,
    pub(super) last_edit: Option<Instant>,
    pub(super) last_flush: Option<FlushInfo>,
    /// The store's log since the last compaction: entries and payload bytes.
    pub(super) log_since_compact: usize,
    pub(super) log_bytes_since_compact: u64,
    /// Size of the snapshot the store holds (0 when it has none).
    pub(super) snapshot_bytes: u64,
    /// The segment of a flush that failed, retried as is (same seq, same bytes).
    pub(super) prepared: Option<PendingFlush>,
    pub(super) flush_failure: Option<Failure>,
    pub(super) ingest_failure: Option<Failure>,
    /// Where the next ingest pass resumes the transport's change feed (`None`: list all).
    pub(super) cursor: Option<ChangeCursor>,
    /// Peer files skipped with a warning, tried again on the next pass.
    pub(super) retry: HashMap<(DeviceId, String), FileEntry>,
    /// Failed writes of `device.json` (retried with backoff, never on every pass).
    pub(super) device_info_failure: Option<Failure>,
    /// Own segments are damaged on the medium: the next flush publishes a snapshot.
    pub(super) republish_due: bool,
    /// Peer files whose payload the engine rejected, skipped until they change.
    pub(super) quarantine: HashMap<(DeviceId, String), Quarantined>,
    /// Per peer, the seqs its applied segments cover under their canonical names.
    pub(super) coverage: HashMap<DeviceId, Coverage>,
    /// Own delta segments written since the last own snapshot segment (under the current
    /// device id): how many, and their bytes.
    pub(super) own_deltas: (usize, u64),
    /// Size of the last own snapshot segment (0: none yet).
    pub(super) own_snapshot_bytes: u64,
}

/// The seqs of one peer that applied segments cover: every seq up to `upto`, and the ranges
/// beyond a gap. Only canonical names count (a conflict copy may hold other bytes than the
/// segment of its seq), and a snapshot covers `1..=seq`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Coverage {
    pub(super) upto: u64,
    beyond: BTreeMap<u64, u64>,
}

impl Coverage {
    /// Notes the seqs `start..=end` as applied.
    pub(super) fn insert(&mut self, start: u64, end: u64) {
        if start > end {
            return;
        }
        if start > self.upto.saturating_add(1) {
            let e = self.beyond.entry(start).or_insert(end);
            *e = (*e).max(end);
            return;
        }
        self.upto = self.upto.max(end);
        while let Some((&s, &e)) = self.beyond.first_key_value() {
            if s > self.upto.saturating_add(1) {
                break;
            }
            self.beyond.pop_first();
            self.upto = self.upto.max(e);
        }
    }

    /// Whether every seq up to `seq` is covered.
    pub(super) fn covers(&self, seq: u64) -> bool {
        seq <= self.upto
    }
}

/// A peer file that passed every check but the engine's, as it was listed and read: it is
/// not read again (nor the engine rebuilt again) until its listing or content changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Quarantined {
    pub(super) size: u64,
    pub(super) version: Option<String>,
    pub(super) checksum: u32,
    /// The warning it was skipped with.
    pub(super) message: String,
}

impl Quarantined {
    /// Whether a listing shows the same file as the one quarantined.
    pub(super) fn lists_as(&self, file: &FileEntry) -> bool {
        self.size == file.size && self.version == file.version
    }
}

/// Multiple of `ReplicaConfig::compact_every` after which the log is folded whatever its size.
const COMPACT_ENTRIES_CAP: usize = 20;

impl State {
    /// Rebuilds the engine from the store: after open, or after a store failure left the
    /// in-memory engine ahead of what is durable.
    pub(super) fn rebuild_engine(&mut self) -> Result<()> {
        let mut engine = self.engine.new_empty();
        let mut replayed = None;
        self.store.load_with(&mut |snapshot, entries| {
            let log: Vec<&[u8]> = entries.iter().map(|e| e.payload.as_slice()).collect();
            let sizes = (log.len(), log.iter().map(|p| p.len() as u64).sum(), snapshot.map_or(0, |s| s.len() as u64));
            replayed = Some(engine.replay(snapshot, &log).map(|()| sizes));
        })?;
        let replayed = replayed.ok_or_else(|| StoreError::io("the store lent no state to load"))?;
        (self.log_since_compact, self.log_bytes_since_compact, self.snapshot_bytes) = replayed?;
        self.engine = engine;
        Ok(())
    }

    /// Notes one more entry of `bytes` in the store's log.
    pub(super) fn log_grew(&mut self, bytes: usize) {
        self.log_since_compact += 1;
        self.log_bytes_since_compact += bytes as u64;
    }

    /// Whether the log is long enough to fold into a snapshot: [`COMPACT_LOG_BYTES`] and half
    /// the snapshot's size, or at least `every` entries, and
    /// either half the snapshot's size in bytes or `every` × [`COMPACT_ENTRIES_CAP`] entries.
    /// A compaction writes the whole snapshot, so on a large library it waits until the log
    /// is a fair share of it and the work stays proportional to the edits (building W, with a
    /// 30 MB snapshot, compacted after every 1 000 edits spent most of its time there); on a
    /// small one it is due after `every` entries as before. The entry cap bounds what a
    /// reopen replays.
    pub(super) fn compaction_due(&self, every: usize) -> bool {
        compaction_due(self.log_since_compact, self.log_bytes_since_compact, self.snapshot_bytes, every)
    }

    /// Folds the log into a snapshot. Skipped (and tried again after another `compact_every`
    /// entries) while changes wait for missing dependencies, or when the engine refuses to
    /// produce a snapshot: the log still holds everything, so nothing is lost either way.
    pub(super) fn compact(&mut self) -> Result<bool> {
        self.log_since_compact = 0;
        if self.engine.has_pending() {
            return Ok(false);
        }
        let snapshot = match self.engine.snapshot() {
            Ok(snapshot) => snapshot,
            Err(e) => {
                tracing::warn!(error = %e, "the document cannot be snapshotted; the store keeps its log instead");
                return Ok(false);
            }
        };
        self.compact_with(&snapshot)?;
        Ok(true)
    }

    /// Whether a snapshot of the whole document taken for another purpose (an own snapshot
    /// segment) should also fold the log: once the log is a quarter of the stored snapshot,
    /// half of what makes a compaction due on its own, since the encoding is already paid for.
    pub(super) fn fold_worthwhile(&self) -> bool {
        self.log_since_compact > 0 && self.log_bytes_since_compact.saturating_mul(4) >= self.snapshot_bytes
    }

    /// Folds the log into `snapshot`, which must be the engine's snapshot now (the store holds
    /// every change the engine holds, so it covers every log entry).
    pub(super) fn compact_with(&mut self, snapshot: &[u8]) -> Result<()> {
        self.store.compact(snapshot)?;
        let kept = self.store.unflushed()?;
        self.log_since_compact = kept.len();
        self.log_bytes_since_compact = kept.iter().map(|e| e.payload.len() as u64).sum();
        self.snapshot_bytes = snapshot.len() as u64;
        Ok(())
    }

    /// Whether `name` in `peer`'s folder is a canonical segment whose seqs are all applied.
    pub(super) fn covered(&self, peer: DeviceId, name: &SegmentName) -> bool {
        !name.variant && self.coverage.get(&peer).is_some_and(|c| c.covers(name.seq))
    }

    pub(super) fn record_applied(&mut self, a: &AppliedSegment) {
        if a.file_name == COVERED_RECORD || SegmentName::parse(&a.file_name).is_some_and(|n| !n.variant) {
            self.coverage.entry(a.device).or_default().insert(a.seq_start, a.seq_end);
        }
        self.applied_names.entry(a.device).or_default().insert(a.file_name.clone(), a.size);
        self.applied_content.insert((a.device, a.seq_start, a.seq_end, a.checksum));
        let peer = self.peers.entry(a.device).or_default();
        peer.last_seq = peer.last_seq.max(a.seq_end);
        peer.segments += 1;
        peer.last_applied_ms = peer.last_applied_ms.max(a.applied_at_ms);
    }
}

/// The file name of the record that stands for every canonical segment of a peer up to its
/// `seq_end` (see `tidy.rs`); it is not a segment name, so no listed file matches it.
pub(super) const COVERED_RECORD: &str = "(covered)";

/// See [`State::compaction_due`].
fn compaction_due(entries: usize, bytes: u64, snapshot_bytes: u64, every: usize) -> bool {
    let fair_share = bytes.saturating_mul(2) >= snapshot_bytes;
    (entries >= every && (fair_share || entries >= every.saturating_mul(COMPACT_ENTRIES_CAP)))
        || (bytes >= COMPACT_LOG_BYTES && fair_share)
}

/// A log of this many bytes, and at least half the snapshot's size, is folded whatever its
/// entry count: a join ingests a library's whole history in a few hundred large segments (W:
/// 404 entries, 30 MB), and replaying them at every open took 4.9 s against 1.1 s for loading
/// the same state as one snapshot. (Half the snapshot's size, so that the snapshots a join
/// writes grow by half each time — 4, 8, 12, 18, 27 MB — rather than one per 4 MB.)
const COMPACT_LOG_BYTES: u64 = 4 << 20;

pub(super) fn read_u64_meta(store: &dyn Store, key: &str) -> Result<Option<u64>> {
    match store.get_meta(key)? {
        None => Ok(None),
        Some(bytes) => {
            let arr: [u8; 8] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| crate::StoreError::Corrupt(format!("meta {key} is not a u64")))?;
            Ok(Some(u64::from_le_bytes(arr)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Coverage, compaction_due};

    #[test]
    fn coverage_joins_ranges_across_gaps() {
        let mut c = Coverage::default();
        c.insert(2, 2);
        c.insert(4, 5);
        assert!(!c.covers(1));
        c.insert(1, 1);
        assert_eq!(c.upto, 2);
        c.insert(3, 3);
        assert_eq!(c.upto, 5, "the range beyond the gap joins");
        c.insert(1, 9);
        assert_eq!(c.upto, 9, "a snapshot covers everything up to it");
        c.insert(7, 3);
        assert_eq!(c.upto, 9, "a reversed range is ignored");
        c.insert(10, u64::MAX);
        assert!(c.covers(u64::MAX));
    }

    #[test]
    fn compaction_waits_for_a_fair_share_of_a_large_snapshot() {
        // Small library, or none yet: due after `every` entries.
        assert!(!compaction_due(999, 100_000, 50_000, 1000));
        assert!(compaction_due(1000, 100_000, 50_000, 1000));
        assert!(compaction_due(1000, 10, 0, 1000));
        // A 30 MB snapshot and 1000 assignments of ~60 B: not yet.
        assert!(!compaction_due(1000, 60_000, 30_000_000, 1000));
        assert!(compaction_due(1000, 15_000_000, 30_000_000, 1000));
        // However small the entries, 20 × `every` of them are folded.
        assert!(!compaction_due(19_999, 1_200_000, 30_000_000, 1000));
        assert!(compaction_due(20_000, 1_200_000, 30_000_000, 1000));
        // A join's few large entries: folded once they are megabytes and a fair share.
        assert!(compaction_due(404, 30_000_000, 0, 1000));
        assert!(!compaction_due(404, 3_000_000, 0, 1000));
        assert!(!compaction_due(404, 5_000_000, 30_000_000, 1000));
        assert!(compaction_due(404, 5_000_000, 9_000_000, 1000));
    }
}
