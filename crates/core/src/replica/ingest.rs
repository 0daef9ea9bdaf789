//! Incoming: list peer folders → read → verify → apply → record the cursor.

use super::backoff::Failure;
use super::{IngestReport, Replica, StatusEvent, Warning};
use crate::Result;
use crate::ids::DeviceId;
use crate::names::{SegmentName, is_temporary};
use crate::segment::{self, Expect, HEADER_LEN, SegmentKind};
use crate::store::AppliedSegment;
use crate::transport::FileEntry;

impl Replica {
    /// One pass over every peer folder: applies every segment not applied yet. Files that fail
    /// a check are skipped with a warning and retried on the next pass; they never stop the
    /// other files or peers.
    pub async fn ingest(&self) -> Result<IngestReport> {
        let _ingesting = self.ingest_lock.lock().await;
        let result = self.ingest_locked().await;
        let mut st = self.lock();
        st.ingest_failure = match &result {
            Ok(_) => None,
            Err(e) => Some(Failure::next(st.ingest_failure.as_ref(), e, self.config.clock.now_ms())),
        };
        result
    }

    async fn ingest_locked(&self) -> Result<IngestReport> {
        let mut report = IngestReport::default();
        let own = self.device();
        for folder in self.transport.list_devices().await? {
            let peer = match folder.parse::<DeviceId>() {
                Ok(peer) if peer == own => continue,
                Ok(peer) => peer,
                Err(_) => {
                    if !is_temporary(&folder) {
                        self.warn(&folder, None, "folder name is not a device id; ignored".into());
                    }
                    continue;
                }
            };
            let files = match self.transport.list(&peer).await {
                Ok(files) => files,
                Err(e) => {
                    self.warn(&folder, None, format!("could not list: {e}; will retry"));
                    report.skipped += 1;
                    continue;
                }
            };
            let mut todo: Vec<(SegmentName, FileEntry)> = {
                let st = self.lock();
                let known = st.applied_names.get(&peer);
                files
                    .into_iter()
                    .filter(|f| known.and_then(|k| k.get(&f.name)) != Some(&f.size))
                    .filter_map(|f| SegmentName::parse(&f.name).map(|n| (n, f)))
                    .collect()
            };
            // Snapshots first (they cover the most), then by seq, canonical names before copies.
            todo.sort_by_key(|(n, f)| (n.kind != SegmentKind::Snapshot, n.seq, n.variant, f.name.clone()));
            for (_, file) in todo {
                self.ingest_file(peer, &folder, file, &mut report).await?;
            }
        }
        Ok(report)
    }

    async fn ingest_file(
        &self,
        peer: DeviceId,
        folder: &str,
        file: FileEntry,
        report: &mut IngestReport,
    ) -> Result<()> {
        let cap = self.config.max_payload as u64 + HEADER_LEN as u64;
        if file.size == 0 {
            self.warn(folder, Some(&file.name), "empty file (not downloaded yet?); will retry".into());
            report.skipped += 1;
            return Ok(());
        }
        if file.size > cap {
            self.warn(
                folder,
                Some(&file.name),
                format!("{} bytes is over the {cap}-byte segment limit; ignored", file.size),
            );
            report.skipped += 1;
            return Ok(());
        }
        report.reads += 1;
        let bytes = match self.transport.read(&peer, &file.name, cap).await {
            Ok(bytes) => bytes,
            Err(e) => {
                self.warn(folder, Some(&file.name), format!("could not read: {e}; will retry"));
                report.skipped += 1;
                return Ok(());
            }
        };
        let expect = Expect {
            library: self.manifest.library_id,
            engine: &self.manifest.engine,
            max_payload: self.config.max_payload,
        };
        let seg = match segment::decode(&bytes, &expect) {
            Ok(seg) => seg,
            Err(e) => {
                self.warn(folder, Some(&file.name), format!("{e}; skipped, will retry"));
                report.skipped += 1;
                return Ok(());
            }
        };
        if seg.header.device != peer {
            self.warn(
                folder,
                Some(&file.name),
                format!("segment claims to be written by device {}; skipped", seg.header.device),
            );
            report.skipped += 1;
            return Ok(());
        }
        let applied = AppliedSegment {
            device: peer,
            file_name: file.name.clone(),
            seq_start: seg.header.seq_start,
            seq_end: seg.header.seq_end,
            checksum: seg.header.payload_crc,
            size: bytes.len() as u64,
            applied_at_ms: self.config.clock.now_ms(),
        };
        let key = (peer, applied.seq_start, applied.seq_end, applied.checksum);
        let mut st = self.lock();
        if st.applied_content.contains(&key) {
            // A conflict copy (or a re-upload) of a segment already applied.
            st.store.commit_remote(&applied, None)?;
            st.record_applied(&applied);
            st.warnings.remove(&(folder.to_owned(), Some(file.name.clone())));
            report.duplicates += 1;
            return Ok(());
        }
        if let Err(e) = st.engine.apply_remote(seg.payload) {
            // An engine may have integrated part of a payload it then rejected: return to the
            // stored state so nothing unrecorded stays visible.
            st.rebuild_engine()?;
            drop(st);
            self.warn(folder, Some(&file.name), format!("engine rejected the payload: {e}; skipped, will retry"));
            report.skipped += 1;
            return Ok(());
        }
        if let Err(e) = st.store.commit_remote(&applied, Some(seg.payload)) {
            st.rebuild_engine()?;
            return Err(e.into());
        }
        st.record_applied(&applied);
        st.warnings.remove(&(folder.to_owned(), Some(file.name.clone())));
        st.log_since_compact += 1;
        if st.log_since_compact >= self.config.compact_every {
            st.compact()?;
        }
        drop(st);
        report.applied += 1;
        tracing::debug!(%peer, file = %file.name, "applied");
        let _ = self.events.send(StatusEvent::Applied {
            device: peer,
            file: file.name,
            seq: applied.seq_end,
            bytes: applied.size,
        });
        Ok(())
    }

    pub(super) fn warn(&self, folder: &str, file: Option<&str>, message: String) {
        let warning = Warning { folder: folder.to_owned(), file: file.map(str::to_owned), message };
        let mut st = self.lock();
        let key = (warning.folder.clone(), warning.file.clone());
        if st.warnings.get(&key) == Some(&warning) {
            return;
        }
        st.warnings.insert(key, warning.clone());
        drop(st);
        tracing::warn!(folder = %warning.folder, file = ?warning.file, "{}", warning.message);
        let _ = self.events.send(StatusEvent::Warning(warning));
    }
}
