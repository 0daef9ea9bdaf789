//! Incoming: what changed on the medium → read (a few at once) → verify → apply → record the
//! cursor.
//!
//! A pass asks the transport what changed since the last pass ([`Transport::changes_since`]:
//! one request on a provider with a change feed, a listing of every peer folder otherwise), or,
//! when a change hint named its folders, lists just those. Files that fail are remembered and
//! tried again on the next pass even when the feed does not mention them again.
//!
//! [`Transport::changes_since`]: crate::Transport::changes_since

use std::collections::{BTreeMap, HashSet};

use futures::stream::{self, StreamExt};

use super::backoff::Failure;
use super::state::Quarantined;
use super::{IngestReport, Replica, StatusEvent, Warning};
use crate::Result;
use crate::ids::DeviceId;
use crate::names::{SegmentName, is_temporary};
use crate::segment::{self, Expect, HEADER_LEN, SegmentKind};
use crate::store::AppliedSegment;
use crate::transport::{ChangeSet, FileEntry, TransportError};

/// Why a file was not applied: a warning for the user, and the file is tried again later;
/// or, when `gone`, the file is no longer there and is forgotten without a warning.
struct Skip {
    message: String,
    gone: bool,
}

impl Skip {
    fn new(message: String) -> Self {
        Skip { message, gone: false }
    }
}

impl Replica {
    /// One pass over every peer folder: applies every segment not applied yet. Files that fail
    /// a check are skipped with a warning and retried on the next pass; they never stop the
    /// other files or peers.
    pub async fn ingest(&self) -> Result<IngestReport> {
        self.ingest_pass(None).await
    }

    /// A pass over the named peer folders only (what a change hint names). On a transport
    /// with a change feed this is a full pass, which costs no more.
    pub async fn ingest_from(&self, peers: &[DeviceId]) -> Result<IngestReport> {
        self.ingest_pass(Some(peers)).await
    }

    async fn ingest_pass(&self, peers: Option<&[DeviceId]>) -> Result<IngestReport> {
        let _ingesting = self.ingest_lock.lock().await;
        let result = self.ingest_locked(peers).await;
        let mut st = self.lock();
        st.ingest_failure = match &result {
            Ok(_) => None,
            Err(e) => Some(Failure::next(st.ingest_failure.as_ref(), e, self.config.clock.now_ms())),
        };
        result
    }

    /// What changed: from the feed (or a full listing), or by listing the named folders.
    async fn changed(&self, peers: Option<&[DeviceId]>, own: DeviceId) -> Result<(ChangeSet, bool)> {
        match peers {
            Some(peers) if !self.transport.capabilities().changes_feed => {
                let mut set = ChangeSet::default();
                for peer in peers.iter().filter(|&&p| p != own) {
                    let folder = peer.to_string();
                    match self.transport.list(peer).await {
                        Ok(files) => set.files.extend(files.into_iter().map(|f| (folder.clone(), f))),
                        Err(e) => set.failed.push((folder.clone(), e)),
                    }
                    set.folders.push(folder);
                }
                Ok((set, false))
            }
            _ => {
                let cursor = self.lock().cursor.clone();
                Ok((self.transport.changes_since(cursor.as_ref(), Some(&own)).await?, true))
            }
        }
    }

    async fn ingest_locked(&self, peers: Option<&[DeviceId]>) -> Result<IngestReport> {
        let mut report = IngestReport::default();
        let own = self.device();
        let (set, from_feed) = self.changed(peers, own).await?;
        for folder in &set.folders {
            if folder.parse::<DeviceId>().is_err() && !is_temporary(folder) {
                self.warn(folder, None, "folder name is not a device id; ignored".into());
            }
        }
        for (folder, e) in &set.failed {
            self.warn(folder, None, format!("could not list: {e}; will retry"));
            report.skipped += 1;
        }
        let mut todo: BTreeMap<DeviceId, Vec<(SegmentName, FileEntry)>> = BTreeMap::new();
        {
            let mut st = self.lock();
            if set.complete {
                // A full listing holds whatever is still there to retry, and a warning about a
                // file it no longer lists is over.
                st.retry.clear();
                let listed: HashSet<(&str, &str)> =
                    set.files.iter().map(|(d, f)| (d.as_str(), f.name.as_str())).collect();
                let unlisted: HashSet<&str> = set.failed.iter().map(|(d, _)| d.as_str()).collect();
                st.warnings.retain(|(folder, file), _| match file {
                    Some(file) => {
                        unlisted.contains(folder.as_str()) || listed.contains(&(folder.as_str(), file.as_str()))
                    }
                    None => true,
                });
                st.quarantine.retain(|(device, file), _| {
                    let folder = device.to_string();
                    unlisted.contains(folder.as_str()) || listed.contains(&(folder.as_str(), file.as_str()))
                });
            }
            let mut seen: HashSet<(DeviceId, String)> = HashSet::new();
            let retry: Vec<(DeviceId, FileEntry)> = st.retry.iter().map(|((d, _), f)| (*d, f.clone())).collect();
            let listed =
                set.files.into_iter().filter_map(|(folder, f)| folder.parse::<DeviceId>().ok().map(|d| (d, f)));
            for (peer, file) in listed.chain(retry) {
                if peer == own || !seen.insert((peer, file.name.clone())) {
                    continue;
                }
                let Some(name) = SegmentName::parse(&file.name) else {
                    continue;
                };
                if st.covered(peer, &name) {
                    // A snapshot (or every delta) before it applied this seq already: a
                    // damaged copy of it needs no retry and no warning any more.
                    let key = (peer, file.name.clone());
                    st.retry.remove(&key);
                    st.quarantine.remove(&key);
                    st.warnings.remove(&(peer.to_string(), Some(file.name)));
                    continue;
                }
                if st.applied_names.get(&peer).and_then(|k| k.get(&file.name)) == Some(&file.size) {
                    continue;
                }
                if st.quarantine.get(&(peer, file.name.clone())).is_some_and(|q| q.lists_as(&file)) {
                    // Rejected by the engine as it is; its warning stays until it changes.
                    report.skipped += 1;
                    continue;
                }
                todo.entry(peer).or_default().push((name, file));
            }
        }
        let parallel = self.transport.capabilities().concurrent_reads.max(1);
        let peers: HashSet<DeviceId> = todo.keys().copied().collect();
        for (peer, files) in todo {
            // The newest snapshot first, one at a time (it covers the most; an older one only
            // when a newer one failed), then the deltas it leaves by seq, canonical names
            // before copies, a few at once.
            let (mut snapshots, mut deltas): (Vec<_>, Vec<_>) =
                files.into_iter().partition(|(n, _)| n.kind == SegmentKind::Snapshot);
            snapshots.sort_by_key(|(n, f)| (std::cmp::Reverse(n.seq), n.variant, f.name.clone()));
            deltas.sort_by_key(|(n, f)| (n.seq, n.variant, f.name.clone()));
            for (name, file) in snapshots {
                if !self.lock().covered(peer, &name) {
                    self.ingest_files(peer, vec![file], 1, &mut report).await?;
                }
            }
            let deltas = {
                let st = self.lock();
                deltas.into_iter().filter(|(n, _)| !st.covered(peer, n)).map(|(_, f)| f).collect()
            };
            self.ingest_files(peer, deltas, parallel, &mut report).await?;
        }
        if from_feed {
            self.lock().cursor = Some(set.cursor);
        }
        self.fold_applied(&peers)?;
        Ok(report)
    }

    /// Reads (`parallel` at once), verifies and applies `files` of `peer`, in order.
    async fn ingest_files(
        &self,
        peer: DeviceId,
        files: Vec<FileEntry>,
        parallel: usize,
        report: &mut IngestReport,
    ) -> Result<()> {
        let folder = peer.to_string();
        let mut reads = stream::iter(files.into_iter().map(|file| async move {
            let bytes = self.fetch(peer, &file).await;
            (file, bytes)
        }))
        .buffered(parallel);
        while let Some((file, fetched)) = reads.next().await {
            let outcome = match fetched {
                Ok(bytes) => {
                    report.reads += 1;
                    self.apply_file(peer, &file, &bytes, report)?
                }
                Err(skip) => Err(skip),
            };
            let key = (peer, file.name.clone());
            match outcome {
                Ok(()) => {
                    let mut st = self.lock();
                    st.retry.remove(&key);
                    st.quarantine.remove(&key);
                    st.warnings.remove(&(folder.clone(), Some(file.name.clone())));
                }
                Err(Skip { gone: true, .. }) => {
                    tracing::debug!(%peer, file = %file.name, "listed file is gone");
                    let mut st = self.lock();
                    st.retry.remove(&key);
                    st.quarantine.remove(&key);
                    st.warnings.remove(&(folder.clone(), Some(file.name.clone())));
                }
                Err(Skip { message, .. }) => {
                    self.warn(&folder, Some(&file.name), message);
                    report.skipped += 1;
                    let mut st = self.lock();
                    if !st.quarantine.contains_key(&key) {
                        // A quarantined file waits for a change, not for the next pass.
                        st.retry.insert(key, file);
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads one listed file, unless its listing already says it cannot be a segment yet.
    async fn fetch(&self, peer: DeviceId, file: &FileEntry) -> Result<Vec<u8>, Skip> {
        let cap = self.config.max_payload as u64 + HEADER_LEN as u64;
        if file.size == 0 {
            return Err(Skip::new("empty file (not downloaded yet?); will retry".into()));
        }
        if file.size > cap {
            return Err(Skip::new(format!("{} bytes is over the {cap}-byte segment limit; ignored", file.size)));
        }
        self.transport.read(&peer, &file.name, cap).await.map_err(|e| match e {
            TransportError::NotFound(_) => Skip { message: String::new(), gone: true },
            e => Skip::new(format!("could not read: {e}; will retry")),
        })
    }

    /// Verifies and applies one segment's bytes. `Ok(Err(_))` is a file skipped with a
    /// warning; `Err(_)` a failure of the local store, which ends the pass.
    fn apply_file(
        &self,
        peer: DeviceId,
        file: &FileEntry,
        bytes: &[u8],
        report: &mut IngestReport,
    ) -> Result<Result<(), Skip>> {
        let expect = Expect {
            library: self.manifest.library_id,
            engine: &self.manifest.engine,
            max_payload: self.config.max_payload,
        };
        let seg = match segment::decode(bytes, &expect) {
            Ok(seg) => seg,
            Err(e) => return Ok(Err(Skip::new(format!("{e}; skipped, will retry")))),
        };
        if seg.header.device != peer {
            return Ok(Err(Skip::new(format!(
                "segment claims to be written by device {}; skipped",
                seg.header.device
            ))));
        }
        if let Some(name) = SegmentName::parse(&file.name) {
            // What a peer skips as covered follows from names and ranges: they must agree.
            let h = &seg.header;
            let start = if name.kind == SegmentKind::Snapshot { 1 } else { name.seq };
            if h.kind != name.kind || h.seq_start != start || h.seq_end != name.seq {
                return Ok(Err(Skip::new(format!(
                    "its header says {:?} seqs {}..={}, which its name does not; skipped",
                    h.kind, h.seq_start, h.seq_end
                ))));
            }
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
        let spot = (peer, file.name.clone());
        if let Some(q) = st.quarantine.get_mut(&spot) {
            if q.checksum == seg.header.payload_crc {
                // Listed anew (another version, a re-upload) but the same rejected payload.
                q.size = file.size;
                q.version = file.version.clone();
                return Ok(Err(Skip::new(q.message.clone())));
            }
            st.quarantine.remove(&spot);
        }
        if st.applied_content.contains(&key) {
            // A conflict copy (or a re-upload) of a segment already applied.
            st.store.commit_remote(&applied, None)?;
            st.record_applied(&applied);
            report.duplicates += 1;
            return Ok(Ok(()));
        }
        if let Err(e) = st.engine.apply_remote(seg.payload) {
            // An engine may have integrated part of a payload it then rejected: return to the
            // stored state so nothing unrecorded stays visible. Rebuilding costs a replay of the
            // whole store, so the file is not tried again until it changes.
            st.rebuild_engine()?;
            let message = format!("engine rejected the payload: {e}; skipped until the file changes");
            let checksum = seg.header.payload_crc;
            let q = Quarantined { size: file.size, version: file.version.clone(), checksum, message: message.clone() };
            st.quarantine.insert(spot, q);
            return Ok(Err(Skip::new(message)));
        }
        let payload_len = seg.payload.len();
        if let Err(e) = st.store.commit_remote(&applied, Some(seg.payload)) {
            st.rebuild_engine()?;
            return Err(e.into());
        }
        st.record_applied(&applied);
        st.log_grew(payload_len);
        if st.compaction_due(self.config.compact_every) {
            st.compact()?;
        }
        drop(st);
        report.applied += 1;
        tracing::debug!(%peer, file = %file.name, "applied");
        let _ = self.events.send(StatusEvent::Applied {
            device: peer,
            file: file.name.clone(),
            seq: applied.seq_end,
            bytes: applied.size,
        });
        Ok(Ok(()))
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
