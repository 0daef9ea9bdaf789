//! Outgoing: unflushed local changes → one segment → the own device folder.

use super::state::META_NEXT_SEQ;
use super::{FlushInfo, Replica, StatusEvent};
use crate::Result;
use crate::ids::DeviceId;
use crate::names::delta_name;
use crate::segment::{self, SegmentKind};
use crate::store::FlushRecord;
use crate::transport::{TransportError, WriteMode};

/// A segment ready to be written by [`Replica::flush`].
struct PendingFlush {
    device: DeviceId,
    bytes: Vec<u8>,
    record: FlushRecord,
    changes: usize,
}

impl Replica {
    /// Writes every acknowledged, unflushed local change as one new segment. Returns `None`
    /// when there was nothing to write (nothing is written while nothing changes).
    pub async fn flush(&self) -> Result<Option<FlushInfo>> {
        let _flushing = self.flush_lock.lock().await;
        let mut collided = false;
        loop {
            let Some(pending) = self.prepare_flush()? else {
                return Ok(None);
            };
            match self
                .transport
                .write(&pending.device, &pending.record.file_name, &pending.bytes, WriteMode::CreateNew)
                .await
            {
                Ok(()) => return self.finish_flush(pending).map(Some),
                Err(TransportError::AlreadyExists(_)) if !collided => {
                    // Our own folder already holds this seq: another copy of this local state
                    // wrote it. Become a new device and write the same changes under its id.
                    collided = true;
                    self.take_new_device_id("its next segment name was already taken")?;
                    self.write_device_info().await;
                }
                Err(e) => {
                    let message = format!("flush of {} failed: {e}", pending.record.file_name);
                    let _ = self.events.send(StatusEvent::Error { message });
                    return Err(e.into());
                }
            }
        }
    }

    /// Merges the unflushed local changes into a segment and consumes its seq. The seq is
    /// consumed before the write: a write that failed half-way (or a crash after it became
    /// visible) must never be followed by different bytes under the same name.
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
        let seq = st.next_seq;
        st.store.set_meta(META_NEXT_SEQ, Some(&(seq + 1).to_le_bytes()))?;
        st.next_seq = seq + 1;
        let bytes = segment::encode(
            SegmentKind::Delta,
            &self.manifest.engine,
            self.manifest.library_id,
            st.device,
            seq,
            seq,
            &payload,
        )?;
        let record = FlushRecord {
            seq,
            upto,
            file_name: delta_name(seq),
            checksum: crc32fast::hash(&payload),
            size: bytes.len() as u64,
            at_ms: self.config.clock.now_ms(),
        };
        Ok(Some(PendingFlush { device: st.device, bytes, record, changes: entries.len() }))
    }

    fn finish_flush(&self, pending: PendingFlush) -> Result<FlushInfo> {
        let PendingFlush { record, changes, .. } = pending;
        let info = FlushInfo { seq: record.seq, bytes: record.size, changes, at_ms: record.at_ms };
        {
            let mut st = self.lock();
            st.store.commit_flush(&record)?;
            st.pending_edits = st.pending_edits.saturating_sub(changes);
            if st.pending_edits == 0 {
                st.first_pending = None;
                st.last_edit = None;
            }
            st.last_flush = Some(info.clone());
            // Local edits grow the log too: fold it once it is long, so that reopening does not
            // replay every edit ever made on this device.
            if st.log_since_compact >= self.config.compact_every {
                st.compact()?;
            }
        }
        tracing::debug!(seq = info.seq, bytes = info.bytes, changes, "flushed");
        let _ = self.events.send(StatusEvent::Flushed(info.clone()));
        Ok(info)
    }
}
