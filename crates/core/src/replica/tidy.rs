//! Keeping the shared medium and the store bounded.
//!
//! - **Own snapshots.** After enough own delta segments ([`FolderCompaction::due`]), the next
//!   flush also publishes the whole document as `snap-<seq>.seg` (the same path as a snapshot
//!   published because own segments were damaged, see `own.rs`). It covers every own seq up
//!   to it: the document holds every own change, flushed or not.
//! - **Deleting what a snapshot covers.** Once the newest own snapshot has been on the medium
//!   for the grace period, [`Replica::tidy_own_folder`] deletes the own segments below it and
//!   forgets their flush records; own seqs below it are ignored by the own-folder check from
//!   then on (a sync client may bring a deleted file back; the tidy after the next snapshot
//!   deletes it again).
//! - **Peers skip what a snapshot covers.** Ingest reads a peer's newest snapshot first and
//!   skips every canonical segment whose seq the applied segments already cover, so a device
//!   that joins reads one snapshot per peer and what followed it. Conflict copies are never
//!   skipped this way: their bytes may differ from the segment of their seq.
//! - **Folding applied records.** When many of a peer's applied records are covered, they are
//!   replaced by one record ([`COVERED_RECORD`], `1..=seq`), so the store's table of applied
//!   segments stays about as long as the peer's folder.

use std::collections::HashSet;

use serde::Serialize;

use super::Replica;
use super::config::FolderCompaction;
use super::state::{COVERED_RECORD, META_DEVICE_FIRST_SEQ, META_PRUNED_BELOW, State, read_u64_meta};
use crate::Result;
use crate::ids::DeviceId;
use crate::names::SegmentName;
use crate::segment::SegmentKind;
use crate::store::{AppliedSegment, FlushRecord};
use crate::transport::TransportError;

/// A peer's covered applied records are folded into one once there are this many.
const FOLD_APPLIED_AT: usize = 64;

/// What [`Replica::tidy_own_folder`] found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TidyReport {
    /// The newest own snapshot segment's seq, if there is one.
    pub snapshot: Option<u64>,
    /// Own segments it covers that were deleted from the medium now.
    pub deleted: usize,
    /// Own segments it covers that stay until its grace period has passed.
    pub waiting: usize,
}

fn is_snapshot(record: &FlushRecord) -> bool {
    SegmentName::parse(&record.file_name).is_some_and(|n| n.kind == SegmentKind::Snapshot)
}

impl State {
    /// The flush records of the current device id, by seq.
    fn own_flushes(&self) -> Result<Vec<FlushRecord>> {
        let first_seq = read_u64_meta(self.store.as_ref(), META_DEVICE_FIRST_SEQ)?.unwrap_or(0);
        Ok(self.store.flushes()?.into_iter().filter(|r| r.seq >= first_seq).collect())
    }

    /// Counts, from the flush records, the own deltas since the last own snapshot.
    pub(super) fn count_own_segments(&mut self) -> Result<()> {
        self.own_deltas = (0, 0);
        self.own_snapshot_bytes = 0;
        for record in self.own_flushes()? {
            self.count_own(&record);
        }
        Ok(())
    }

    fn count_own(&mut self, record: &FlushRecord) {
        if is_snapshot(record) {
            self.own_deltas = (0, 0);
            self.own_snapshot_bytes = record.size;
        } else {
            self.own_deltas.0 += 1;
            self.own_deltas.1 += record.size;
        }
    }

    /// Notes an own segment that was written; a snapshot is due at this flush when the
    /// deltas since the last one call for it.
    pub(super) fn note_own_flush(&mut self, record: &FlushRecord, policy: &FolderCompaction) {
        self.count_own(record);
        let (deltas, bytes) = self.own_deltas;
        if policy.due(deltas, bytes, self.own_snapshot_bytes) {
            self.republish_due = true;
        }
    }

    /// A snapshot that could not be published (over the segment limit): the next attempt
    /// waits for as many deltas again, and for deltas as large as this snapshot.
    pub(super) fn snapshot_refused(&mut self, bytes: u64) {
        self.own_deltas = (0, 0);
        self.own_snapshot_bytes = self.own_snapshot_bytes.max(bytes);
        self.republish_due = false;
    }

    /// Folds the applied records of `peer` that its coverage holds into one record, once
    /// there are [`FOLD_APPLIED_AT`] of them.
    fn fold_applied(&mut self, peer: DeviceId, now_ms: i64) -> Result<()> {
        let Some(upto) = self.coverage.get(&peer).map(|c| c.upto).filter(|&u| u > 0) else {
            return Ok(());
        };
        let Some(names) = self.applied_names.get(&peer) else {
            return Ok(());
        };
        let covered: Vec<String> = names
            .keys()
            .filter(|name| SegmentName::parse(name).is_some_and(|n| !n.variant && n.seq <= upto))
            .cloned()
            .collect();
        if covered.len() < FOLD_APPLIED_AT {
            return Ok(());
        }
        let keep = AppliedSegment {
            device: peer,
            file_name: COVERED_RECORD.to_owned(),
            seq_start: 1,
            seq_end: upto,
            checksum: 0,
            size: 0,
            applied_at_ms: now_ms,
        };
        self.store.replace_applied(&peer, &covered, &keep)?;
        let names = self.applied_names.entry(peer).or_default();
        for name in &covered {
            names.remove(name);
        }
        let had_fold = names.insert(COVERED_RECORD.to_owned(), 0).is_some();
        if let Some(status) = self.peers.get_mut(&peer) {
            status.segments = status.segments.saturating_sub(covered.len()) + usize::from(!had_fold);
        }
        tracing::debug!(%peer, folded = covered.len(), upto, "applied records folded");
        Ok(())
    }
}

impl Replica {
    /// Deletes the own segments the newest own snapshot segment covers, once it has been on
    /// the medium for [`FolderCompaction::grace`], and forgets their flush records. Nothing is
    /// deleted while the snapshot is not listed as it was written (the own-folder check
    /// publishes a new one then). Once tidied for a snapshot it makes no request until the
    /// next one. [`Replica::run`] calls it with the own-folder check, [`Replica::sync_once`]
    /// after its ingest.
    pub async fn tidy_own_folder(&self) -> Result<TidyReport> {
        let _flushing = self.flush_lock.lock().await;
        let device = self.device();
        let (newest, covered, first_seq, pruned) = {
            let st = self.lock();
            let records = st.own_flushes()?;
            let Some(newest) = records.iter().rev().find(|r| is_snapshot(r)).cloned() else {
                return Ok(TidyReport::default());
            };
            let covered = records.iter().filter(|r| r.seq < newest.seq).count();
            let first_seq = read_u64_meta(st.store.as_ref(), META_DEVICE_FIRST_SEQ)?.unwrap_or(0);
            let pruned = read_u64_meta(st.store.as_ref(), META_PRUNED_BELOW)?.unwrap_or(0);
            (newest, covered, first_seq, pruned)
        };
        let mut report = TidyReport { snapshot: Some(newest.seq), ..TidyReport::default() };
        if covered == 0 && pruned >= newest.seq {
            // Tidied already for this snapshot: no request until the next one.
            return Ok(report);
        }
        let grace_ms = i64::try_from(self.config.folder.grace.as_millis()).unwrap_or(i64::MAX);
        if self.config.clock.now_ms().saturating_sub(newest.at_ms) < grace_ms {
            report.waiting = covered;
            return Ok(report);
        }
        let listed = self.transport.list(&device).await?;
        if !listed.iter().any(|f| f.name == newest.file_name && f.size == newest.size) {
            tracing::debug!(file = %newest.file_name, "own snapshot not listed as written; nothing deleted");
            report.waiting = covered;
            return Ok(report);
        }
        // Canonical names only: a conflict copy is left to the own-folder check.
        let doomed: Vec<&str> = listed
            .iter()
            .filter(|f| {
                SegmentName::parse(&f.name).is_some_and(|n| !n.variant && n.seq >= first_seq && n.seq < newest.seq)
            })
            .map(|f| f.name.as_str())
            .collect();
        for name in &doomed {
            match self.transport.delete(&device, name).await {
                Ok(()) | Err(TransportError::NotFound(_)) => report.deleted += 1,
                Err(e) => return Err(e.into()),
            }
        }
        let mut st = self.lock();
        if pruned < newest.seq {
            st.store.set_meta(META_PRUNED_BELOW, Some(&newest.seq.to_le_bytes()))?;
        }
        if covered > 0 {
            st.store.forget_flushes_before(newest.seq)?;
        }
        drop(st);
        if report.deleted > 0 {
            tracing::info!(
                deleted = report.deleted,
                snapshot = newest.seq,
                "own segments covered by a snapshot deleted"
            );
        }
        Ok(report)
    }

    /// Folds the covered applied records of the peers named (see [`State::fold_applied`]).
    pub(super) fn fold_applied(&self, peers: &HashSet<DeviceId>) -> Result<()> {
        let now = self.config.clock.now_ms();
        let mut st = self.lock();
        for &peer in peers {
            st.fold_applied(peer, now)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::FolderCompaction;

    #[test]
    fn a_snapshot_is_due_after_as_many_bytes_or_many_deltas() {
        let p = FolderCompaction { min_bytes: 1000, max_segments: 10, ..FolderCompaction::default() };
        assert!(!p.due(0, 0, 0));
        assert!(!p.due(3, 999, 0), "under the floor");
        assert!(p.due(3, 1000, 0));
        assert!(!p.due(3, 4000, 5000), "under the last snapshot's size");
        assert!(p.due(3, 5000, 5000));
        assert!(p.due(10, 10, 5000), "many small deltas");
    }
}
