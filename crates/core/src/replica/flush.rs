//! Outgoing: unflushed local changes → one segment → the own device folder.
//!
//! A flush *prepares* a segment (merges the unflushed changes, consumes the seq, persists the
//! segment in the store), then writes it. A write that fails leaves the prepared segment in
//! place: the next attempt — in this process or after a restart — writes the same bytes under
//! the same name, so retrying consumes no seq and a name never gets two contents. When the
//! name already exists, the existing file is read back: the same bytes mean an earlier attempt
//! did land (its reply was lost); other bytes mean a copy of this local state wrote the seq.

use super::backoff::Failure;
use super::state::{META_NEXT_SEQ, META_PREPARED, State};
use super::{FlushInfo, Replica, StatusEvent};
use crate::ids::DeviceId;
use crate::names::{SegmentName, delta_name, snapshot_name};
use crate::segment::{self, Expect, HEADER_LEN, SegmentKind};
use crate::store::FlushRecord;
use crate::transport::{TransportError, WriteMode};
use crate::{Error, Result};

/// A segment prepared by [`Replica::flush`] and not yet known to be written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct PendingFlush {
    pub(super) device: DeviceId,
    pub(super) bytes: Vec<u8>,
    pub(super) record: FlushRecord,
    pub(super) changes: usize,
}

/// Fixed part of a persisted [`PendingFlush`]: seq, upto, changes, at_ms, checksum, device.
const PREPARED_HEADER: usize = 8 + 8 + 8 + 8 + 4 + 16;

impl PendingFlush {
    /// The bytes kept in the store's meta while the segment is not known to be written.
    fn encode(&self) -> Vec<u8> {
        let r = &self.record;
        let mut out = Vec::with_capacity(PREPARED_HEADER + self.bytes.len());
        out.extend_from_slice(&r.seq.to_le_bytes());
        out.extend_from_slice(&r.upto.to_le_bytes());
        out.extend_from_slice(&(self.changes as u64).to_le_bytes());
        out.extend_from_slice(&r.at_ms.to_le_bytes());
        out.extend_from_slice(&r.checksum.to_le_bytes());
        out.extend_from_slice(self.device.as_bytes());
        out.extend_from_slice(&self.bytes);
        out
    }

    fn decode(b: &[u8]) -> Option<Self> {
        let (head, bytes) = (b.get(..PREPARED_HEADER)?, b.get(PREPARED_HEADER..)?);
        let u64_at = |i: usize| u64::from_le_bytes(head[i..i + 8].try_into().expect("8 bytes"));
        let seq = u64_at(0);
        let record = FlushRecord {
            seq,
            upto: u64_at(8),
            file_name: delta_name(seq),
            checksum: u32::from_le_bytes(head[32..36].try_into().expect("4 bytes")),
            size: bytes.len() as u64,
            at_ms: u64_at(24) as i64,
        };
        let device = DeviceId::from_bytes(head[36..52].try_into().expect("16 bytes"));
        // A snapshot published again (see `own.rs`) is prepared like a delta.
        let kind = segment::decode_header(bytes).map_or(SegmentKind::Delta, |h| h.kind);
        let record = FlushRecord { file_name: segment_name(kind, seq), ..record };
        Some(PendingFlush { device, bytes: bytes.to_vec(), record, changes: u64_at(16) as usize })
    }
}

/// The canonical name of an own segment of `kind` at `seq`.
fn segment_name(kind: SegmentKind, seq: u64) -> String {
    match kind {
        SegmentKind::Delta => delta_name(seq),
        SegmentKind::Snapshot => snapshot_name(seq),
    }
}

impl State {
    /// Loads the segment a previous process prepared and may not have written. It is kept
    /// only while it is still this device's and its changes are still unflushed (a crash
    /// after the flush was recorded leaves a stale one behind).
    pub(super) fn load_prepared(&mut self) -> Result<()> {
        let Some(bytes) = self.store.get_meta(META_PREPARED)? else {
            return Ok(());
        };
        let prepared = PendingFlush::decode(&bytes);
        let first_unflushed = self.store.unflushed()?.first().map(|e| e.id);
        match prepared {
            Some(p) if p.device == self.device && first_unflushed.is_some_and(|id| id <= p.record.upto) => {
                self.prepared = Some(p);
            }
            _ => self.discard_prepared()?,
        }
        Ok(())
    }

    /// Keeps a prepared segment, in memory and in the store, for the next flush to write.
    pub(super) fn persist_prepared(&mut self, pending: PendingFlush) -> Result<()> {
        self.store.set_meta(META_PREPARED, Some(&pending.encode()))?;
        self.prepared = Some(pending);
        Ok(())
    }

    /// Forgets the prepared segment (written and recorded, or made obsolete by a new id).
    pub(super) fn discard_prepared(&mut self) -> Result<()> {
        self.prepared = None;
        self.store.set_meta(META_PREPARED, None)?;
        Ok(())
    }
}

/// What became of one write of a prepared segment.
enum Written {
    /// It is on the medium (now, or by an earlier attempt).
    Yes,
    /// The name holds other bytes: another copy of this local state wrote this seq.
    Taken,
}

impl Replica {
    /// Writes every acknowledged, unflushed local change as one new segment. Returns `None`
    /// when there was nothing to write (nothing is written while nothing changes). When own
    /// segments were found damaged on the medium, or enough own deltas followed the last own
    /// snapshot ([`FolderCompaction`](super::FolderCompaction)), a snapshot of the whole
    /// document follows (and is what is returned). After a
    /// failed write the next call retries the same segment (same seq, same bytes) first.
    pub async fn flush(&self) -> Result<Option<FlushInfo>> {
        let _flushing = self.flush_lock.lock().await;
        let mut result = self.flush_locked().await;
        if result.is_ok() && self.lock().republish_due {
            // Own segments were damaged on the medium: the document goes out whole.
            let snapshot = match self.prepare_snapshot() {
                Ok(true) => self.flush_locked().await,
                Ok(false) => Ok(None),
                Err(e) => Err(e),
            };
            // What was written last is reported (a delta that went first is in the events).
            result = match (snapshot, result) {
                (Err(e), _) => Err(e),
                (Ok(None), delta) => delta,
                (Ok(written), _) => Ok(written),
            };
        }
        let mut st = self.lock();
        st.flush_failure = match &result {
            Ok(_) => None,
            Err(e) => Some(Failure::next(st.flush_failure.as_ref(), e, self.config.clock.now_ms())),
        };
        result
    }

    async fn flush_locked(&self) -> Result<Option<FlushInfo>> {
        let mut collided = false;
        loop {
            let prepared = self.lock().prepared.take();
            let pending = match prepared {
                Some(p) => p,
                None => match self.prepare_flush()? {
                    Some(p) => p,
                    None => {
                        // Nothing unflushed: whatever the counters said, nothing is pending.
                        let mut st = self.lock();
                        (st.pending_edits, st.first_pending, st.last_edit) = (0, None, None);
                        return Ok(None);
                    }
                },
            };
            match self.write_prepared(&pending).await {
                Ok(Written::Yes) => return self.finish_flush(pending).map(Some),
                Ok(Written::Taken) if !collided => {
                    // Become a new device and write the same changes under its id.
                    collided = true;
                    self.take_new_device_id("its next segment name was already taken")?;
                    self.write_device_info().await;
                }
                Ok(Written::Taken) => {
                    return Err(TransportError::AlreadyExists(pending.record.file_name).into());
                }
                Err(e) => {
                    tracing::debug!(file = %pending.record.file_name, error = %e, "flush failed; the segment is kept for the next attempt");
                    self.lock().prepared = Some(pending);
                    return Err(e);
                }
            }
        }
    }

    async fn write_prepared(&self, p: &PendingFlush) -> Result<Written> {
        let name = &p.record.file_name;
        match self.transport.write(&p.device, name, &p.bytes, WriteMode::CreateNew).await {
            Ok(()) => Ok(Written::Yes),
            Err(TransportError::AlreadyExists(_)) => {
                let cap = self.config.max_payload as u64 + HEADER_LEN as u64;
                let existing = self.transport.read(&p.device, name, cap).await?;
                if existing == p.bytes {
                    tracing::debug!(file = %name, "an earlier attempt of this flush had landed");
                    return Ok(Written::Yes);
                }
                // A whole, valid segment proves another writer. A read that does not decode
                // may be partial (a sync client still at work): retried a few times before
                // the name counts as taken by whatever damaged file sits there.
                let expect = Expect {
                    library: self.manifest.library_id,
                    engine: &self.manifest.engine,
                    max_payload: self.config.max_payload,
                };
                let failures = self.lock().flush_failure.as_ref().map_or(0, |f| f.attempts);
                if segment::decode(&existing, &expect).is_ok() || failures >= 3 {
                    return Ok(Written::Taken);
                }
                Err(Error::Transport(TransportError::Transient(format!(
                    "{name} exists with other bytes that do not decode (still being written?); will retry"
                ))))
            }
            Err(e) => Err(Error::Transport(e)),
        }
    }

    /// Merges the unflushed local changes into a segment, consumes its seq and persists the
    /// segment. The seq is consumed before the write: a write that failed half-way (or a
    /// crash after it became visible) must never be followed by different bytes under the
    /// same name.
    fn prepare_flush(&self) -> Result<Option<PendingFlush>> {
        let mut st = self.lock();
        let entries = st.store.unflushed()?;
        let Some(last) = entries.last() else {
            return Ok(None);
        };
        let upto = last.id;
        let payload = match entries.as_slice() {
            [one] => one.payload.clone(),
            many => {
                let parts: Vec<&[u8]> = many.iter().map(|e| e.payload.as_slice()).collect();
                st.engine.merge_changes(&parts)?
            }
        };
        let pending = self.seal(&mut st, SegmentKind::Delta, &payload, upto, entries.len())?;
        st.store.set_meta(META_PREPARED, Some(&pending.encode()))?;
        Ok(Some(pending))
    }

    /// Consumes the next seq and makes the segment of `kind` carrying `payload` (every
    /// unflushed local entry up to `upto`, `changes` of them), with its flush record.
    pub(super) fn seal(
        &self,
        st: &mut State,
        kind: SegmentKind,
        payload: &[u8],
        upto: u64,
        changes: usize,
    ) -> Result<PendingFlush> {
        let seq = st.next_seq;
        // A delta covers its own seq; a snapshot covers everything up to it.
        let first = if kind == SegmentKind::Snapshot { 1 } else { seq };
        let bytes =
            segment::encode(kind, &self.manifest.engine, self.manifest.library_id, st.device, first, seq, payload)?;
        // Consumed only once the segment exists, so a refused encode consumes nothing.
        st.store.set_meta(META_NEXT_SEQ, Some(&(seq + 1).to_le_bytes()))?;
        st.next_seq = seq + 1;
        let record = FlushRecord {
            seq,
            upto,
            file_name: segment_name(kind, seq),
            checksum: crc32fast::hash(payload),
            size: bytes.len() as u64,
            at_ms: self.config.clock.now_ms(),
        };
        Ok(PendingFlush { device: st.device, bytes, record, changes })
    }

    fn finish_flush(&self, pending: PendingFlush) -> Result<FlushInfo> {
        let PendingFlush { record, changes, .. } = pending;
        let snapshot = SegmentName::parse(&record.file_name).is_some_and(|n| n.kind == SegmentKind::Snapshot);
        let info = FlushInfo { seq: record.seq, bytes: record.size, changes, at_ms: record.at_ms, snapshot };
        {
            let mut st = self.lock();
            st.store.commit_flush(&record)?;
            st.discard_prepared()?;
            st.note_own_flush(&record, &self.config.folder);
            st.pending_edits = st.pending_edits.saturating_sub(changes);
            if st.pending_edits == 0 {
                st.first_pending = None;
                st.last_edit = None;
            }
            st.last_flush = Some(info.clone());
            // Local edits grow the log too: fold it once it is long, so that reopening does not
            // replay every edit ever made on this device. When an own snapshot segment follows
            // right away, that snapshot folds it instead (`prepare_snapshot`): one encoding of
            // the whole document rather than two.
            if st.compaction_due(self.config.compact_every) && !st.republish_due {
                st.compact()?;
            }
        }
        tracing::debug!(seq = info.seq, bytes = info.bytes, changes, "flushed");
        let _ = self.events.send(StatusEvent::Flushed(info.clone()));
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepared_flush_round_trips() {
        let p = PendingFlush {
            device: DeviceId::random(),
            bytes: vec![1, 2, 3, 4, 5],
            record: FlushRecord {
                seq: u64::MAX - 1,
                upto: 42,
                file_name: delta_name(u64::MAX - 1),
                checksum: 0xdead_beef,
                size: 5,
                at_ms: -7,
            },
            changes: 3,
        };
        assert_eq!(PendingFlush::decode(&p.encode()), Some(p));
        assert_eq!(PendingFlush::decode(&[0; 10]), None);
    }
}
