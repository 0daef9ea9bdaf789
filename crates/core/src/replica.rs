//! [`Replica`]: one device's copy of a library, kept in sync through a [`Transport`].
//!
//! Outgoing: edit → engine transaction → take local changes → store commit (the edit is
//! acknowledged here) → debounce → merge unflushed changes → segment → atomic write → flush
//! recorded in the store.
//!
//! Incoming: change hint or poll → list peers → for each file not yet applied: read → verify
//! (length, checksums, library, engine, device) → engine apply → store commit with the cursor.
//! A file that fails any check is skipped with a [`Warning`] and retried on the next pass.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{Notify, broadcast};
use tokio::time::Instant;

use crate::engine::Engine;
use crate::ids::{DeviceId, LibraryId};
use crate::manifest::{DeviceInfo, LibraryManifest, MANIFEST_VERSION, now_ms};
use crate::names::{DEVICE_FILE, MANIFEST_FILE, SegmentName, delta_name, is_temporary};
use crate::segment::{self, Expect, HEADER_LEN, SegmentKind};
use crate::store::{AppliedSegment, FlushRecord, Store};
use crate::transport::{FileEntry, Transport, TransportError};
use crate::value::Op;
use crate::{Error, Result};

const META_DEVICE_ID: &str = "device_id";
const META_LIBRARY_ID: &str = "library_id";
const META_NEXT_SEQ: &str = "next_seq";
const META_CREATED: &str = "device_created_ms";

/// Whether [`Replica::open`] may create the library.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Create `library.json`; fail if the library already exists.
    Create,
    /// Join an existing library; fail if there is none.
    Join,
    /// Join if it exists, create otherwise.
    CreateOrJoin,
}

/// Tuning of a [`Replica`]. `Default` gives the production values.
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    /// Human name of this device, written to `device.json`.
    pub device_name: String,
    /// Create or join.
    pub mode: OpenMode,
    /// Quiet time after the last edit before a flush (default 2 s).
    pub debounce: Duration,
    /// Longest time an edit waits for a flush while edits keep coming (default 30 s).
    pub max_delay: Duration,
    /// Polling interval when hints are missing or unreliable (default 30 s).
    pub poll_interval: Duration,
    /// Largest segment payload accepted (default 64 MiB).
    pub max_payload: u32,
    /// Log entries after which the store is compacted into a snapshot (default 1000).
    pub compact_every: usize,
    /// The wall clock, in ms since the Unix epoch. Only advisory timestamps come from it
    /// (dates shown to users, status); merging never depends on it, so a device whose clock
    /// is wrong or jumps back still converges. Tests inject skewed clocks here.
    pub clock: Clock,
}

/// A source of wall-clock time in ms since the Unix epoch.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> i64 + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock(Arc::new(now_ms))
    }

    /// A clock computed by `f` (e.g. the system clock shifted by hours, or one that jumps back).
    pub fn from_fn(f: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        Clock(Arc::new(f))
    }

    /// The current time.
    pub fn now_ms(&self) -> i64 {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now_ms())
    }
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        Self {
            device_name: "device".into(),
            mode: OpenMode::CreateOrJoin,
            debounce: Duration::from_secs(2),
            max_delay: Duration::from_secs(30),
            poll_interval: Duration::from_secs(30),
            max_payload: segment::DEFAULT_MAX_PAYLOAD,
            compact_every: 1000,
            clock: Clock::system(),
        }
    }
}

/// A file in the shared folder that was skipped, and why. It is retried on every pass.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// Device folder name (raw).
    pub folder: String,
    /// File name, when the warning is about one file.
    pub file: Option<String>,
    /// What is wrong, in words a user can act on.
    pub message: String,
}

/// The last own flush.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FlushInfo {
    /// Own seq.
    pub seq: u64,
    /// Segment size in bytes, header included.
    pub bytes: u64,
    /// Local changes it carried.
    pub changes: usize,
    /// Wall-clock ms since epoch (advisory).
    pub at_ms: i64,
}

/// What is known about one peer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PeerStatus {
    /// Highest seq applied.
    pub last_seq: u64,
    /// Segment files applied (conflict copies included).
    pub segments: usize,
    /// Wall-clock ms since epoch of the last apply (advisory).
    pub last_applied_ms: i64,
}

/// A snapshot of the replica's sync state, for `status` and apps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Status {
    /// This device.
    pub device: DeviceId,
    /// The library.
    pub library: LibraryId,
    /// Engine id.
    pub engine: String,
    /// Store id.
    pub store: String,
    /// Acknowledged local edits not yet written to the shared medium.
    pub pending_edits: usize,
    /// The next own seq.
    pub next_seq: u64,
    /// The last own flush in this process.
    pub last_flush: Option<FlushInfo>,
    /// Per peer: what was applied.
    pub peers: BTreeMap<DeviceId, PeerStatus>,
    /// Files skipped on the last passes.
    pub warnings: Vec<Warning>,
}

/// Something that happened, broadcast to subscribers ([`Replica::subscribe`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum StatusEvent {
    /// A local edit was committed; `pending` edits await a flush.
    Edited {
        /// Pending edits.
        pending: usize,
    },
    /// Own changes were written to the shared medium.
    Flushed(FlushInfo),
    /// A peer segment was applied.
    Applied {
        /// The peer.
        device: DeviceId,
        /// File name.
        file: String,
        /// Last seq it covered.
        seq: u64,
        /// Size in bytes.
        bytes: u64,
    },
    /// A file was skipped (new or changed reason only; repeats are not re-sent).
    Warning(Warning),
    /// This device found a segment in its own folder that it did not write (its local state
    /// was copied to another computer) and took a new id.
    NewDeviceId {
        /// The id it had.
        old: DeviceId,
        /// The id it has now.
        new: DeviceId,
    },
    /// A flush or ingest pass failed; it is retried.
    Error {
        /// The error.
        message: String,
    },
}

/// What one [`Replica::ingest`] pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IngestReport {
    /// Segments applied.
    pub applied: usize,
    /// Files recognised as copies of segments already applied.
    pub duplicates: usize,
    /// Files skipped with a warning.
    pub skipped: usize,
    /// Segment files read from the medium.
    pub reads: usize,
}

/// What one [`Replica::sync_once`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    /// The flush, if there was anything to flush.
    pub flushed: Option<FlushInfo>,
    /// The ingest pass.
    pub ingest: IngestReport,
}

/// Read and write access to a library document: implemented by [`Replica`] (persistent,
/// synced) and by a bare engine in a `Mutex` (benchmarks, imports).
pub trait Document {
    /// Runs `f` with read access to the engine.
    fn read<R>(&self, f: impl FnOnce(&dyn Engine) -> R) -> R;
    /// Applies a batch in one transaction; returns once it is durable.
    fn write(&self, ops: &[Op]) -> Result<()>;
    /// Wall-clock time for advisory dates written into records (ms since the Unix epoch).
    fn now_ms(&self) -> i64 {
        now_ms()
    }
}

impl Document for Mutex<Box<dyn Engine>> {
    fn read<R>(&self, f: impl FnOnce(&dyn Engine) -> R) -> R {
        let guard = self.lock().unwrap_or_else(|e| e.into_inner());
        f(guard.as_ref())
    }
    fn write(&self, ops: &[Op]) -> Result<()> {
        let mut guard = self.lock().unwrap_or_else(|e| e.into_inner());
        guard.write(ops)?;
        // Nothing syncs a bare engine: drop the local-change buffer so it does not grow.
        guard.take_local_changes()?;
        Ok(())
    }
}

type ContentKey = (DeviceId, u64, u64, u32);

/// A segment ready to be written by [`Replica::flush`].
struct PendingFlush {
    device: DeviceId,
    bytes: Vec<u8>,
    record: FlushRecord,
    changes: usize,
}

struct State {
    engine: Box<dyn Engine>,
    store: Box<dyn Store>,
    device: DeviceId,
    next_seq: u64,
    applied_names: HashMap<DeviceId, HashMap<String, u64>>,
    applied_content: HashSet<ContentKey>,
    peers: BTreeMap<DeviceId, PeerStatus>,
    warnings: BTreeMap<(String, Option<String>), Warning>,
    pending_edits: usize,
    first_pending: Option<Instant>,
    last_edit: Option<Instant>,
    last_flush: Option<FlushInfo>,
    log_since_compact: usize,
}

impl State {
    /// Rebuilds the engine from the store: after open, or after a store failure left the
    /// in-memory engine ahead of what is durable.
    fn rebuild_engine(&mut self) -> Result<()> {
        let mut engine = self.engine.new_empty();
        let stored = self.store.load()?;
        let log: Vec<&[u8]> = stored.log.iter().map(|e| e.payload.as_slice()).collect();
        engine.replay(stored.snapshot.as_deref(), &log)?;
        self.log_since_compact = stored.log.len();
        self.engine = engine;
        Ok(())
    }

    /// Folds the log into a snapshot. Skipped (and tried again after another `compact_every`
    /// entries) while changes wait for missing dependencies, or when the engine refuses to
    /// produce a snapshot: the log still holds everything, so nothing is lost either way.
    fn compact(&mut self) -> Result<bool> {
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
        self.store.compact(&snapshot)?;
        self.log_since_compact = self.store.unflushed()?.len();
        Ok(true)
    }

    fn record_applied(&mut self, a: &AppliedSegment) {
        self.applied_names.entry(a.device).or_default().insert(a.file_name.clone(), a.size);
        self.applied_content.insert((a.device, a.seq_start, a.seq_end, a.checksum));
        let peer = self.peers.entry(a.device).or_default();
        peer.last_seq = peer.last_seq.max(a.seq_end);
        peer.segments += 1;
        peer.last_applied_ms = peer.last_applied_ms.max(a.applied_at_ms);
    }
}

/// One device's replica of a library: engine + store + transport, and the sync loop.
///
/// All methods take `&self`; share it with `Arc` between the app and [`Replica::run`].
pub struct Replica {
    transport: Arc<dyn Transport>,
    manifest: LibraryManifest,
    config: ReplicaConfig,
    store_id: &'static str,
    state: Mutex<State>,
    flush_lock: tokio::sync::Mutex<()>,
    ingest_lock: tokio::sync::Mutex<()>,
    events: broadcast::Sender<StatusEvent>,
    edited: Notify,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("library", &self.manifest.library_id)
            .field("device", &self.device())
            .field("transport", &self.transport.name())
            .finish_non_exhaustive()
    }
}

impl Replica {
    /// Opens (or creates, per [`ReplicaConfig::mode`]) the library on `transport` with an
    /// empty `engine` and this device's `store`, and rebuilds the document from the store.
    pub async fn open(
        engine: Box<dyn Engine>,
        mut store: Box<dyn Store>,
        transport: Arc<dyn Transport>,
        config: ReplicaConfig,
    ) -> Result<Replica> {
        let manifest = Self::resolve_manifest(engine.engine_id(), transport.as_ref(), config.mode).await?;

        match store.get_meta(META_LIBRARY_ID)? {
            Some(bytes) => {
                let state = String::from_utf8_lossy(&bytes)
                    .parse::<LibraryId>()
                    .map_err(|_| crate::StoreError::Corrupt("library id in the local store is unreadable".into()))?;
                if state != manifest.library_id {
                    return Err(Error::WrongLibrary { state, library: manifest.library_id });
                }
            }
            None => store.set_meta(META_LIBRARY_ID, Some(manifest.library_id.to_string().as_bytes()))?,
        }
        let device = match store.get_meta(META_DEVICE_ID)? {
            Some(bytes) => String::from_utf8_lossy(&bytes)
                .parse::<DeviceId>()
                .map_err(|_| crate::StoreError::Corrupt("device id in the local store is unreadable".into()))?,
            None => {
                let id = DeviceId::random();
                store.set_meta(META_DEVICE_ID, Some(id.to_string().as_bytes()))?;
                store.set_meta(META_CREATED, Some(config.clock.now_ms().to_string().as_bytes()))?;
                id
            }
        };
        let next_seq = read_u64_meta(store.as_ref(), META_NEXT_SEQ)?.unwrap_or(1).max(1);
        let unflushed = store.unflushed()?.len();
        let applied = store.applied()?;
        let store_id = store.store_id();

        let mut state = State {
            engine,
            store,
            device,
            next_seq,
            applied_names: HashMap::new(),
            applied_content: HashSet::new(),
            peers: BTreeMap::new(),
            warnings: BTreeMap::new(),
            pending_edits: unflushed,
            first_pending: (unflushed > 0).then(Instant::now),
            last_edit: (unflushed > 0).then(Instant::now),
            last_flush: None,
            log_since_compact: 0,
        };
        state.rebuild_engine()?;
        for a in &applied {
            state.record_applied(a);
        }

        let (events, _) = broadcast::channel(1024);
        let replica = Replica {
            transport,
            manifest,
            config,
            store_id,
            state: Mutex::new(state),
            flush_lock: tokio::sync::Mutex::new(()),
            ingest_lock: tokio::sync::Mutex::new(()),
            events,
            edited: Notify::new(),
        };
        replica.detect_clone().await?;
        replica.write_device_info().await;
        Ok(replica)
    }

    async fn resolve_manifest(engine_id: &str, transport: &dyn Transport, mode: OpenMode) -> Result<LibraryManifest> {
        let existing = transport.read_manifest().await?;
        let bytes = match (existing, mode) {
            (Some(_), OpenMode::Create) => {
                return Err(Error::Invalid(format!(
                    "a library already exists here ({MANIFEST_FILE} is present); join it instead"
                )));
            }
            (Some(bytes), _) => bytes,
            (None, OpenMode::Join) => return Err(Error::NoLibrary(MANIFEST_FILE.into())),
            (None, _) => {
                let manifest = LibraryManifest {
                    library_id: LibraryId::random(),
                    engine: engine_id.to_owned(),
                    format_version: MANIFEST_VERSION,
                    created_ms: now_ms(),
                };
                let bytes = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
                if transport.create_manifest(&bytes).await? {
                    bytes
                } else {
                    // Another device created it first: use theirs.
                    transport.read_manifest().await?.ok_or_else(|| Error::NoLibrary(MANIFEST_FILE.into()))?
                }
            }
        };
        let manifest: LibraryManifest = serde_json::from_slice(&bytes)
            .map_err(|e| Error::BadManifest(format!("{MANIFEST_FILE} is not valid: {e}")))?;
        if manifest.format_version > MANIFEST_VERSION {
            return Err(Error::BadManifest(format!(
                "format version {} is newer than this program supports ({MANIFEST_VERSION}); upgrade OneFolder Sync",
                manifest.format_version
            )));
        }
        if manifest.engine != engine_id {
            return Err(Error::WrongEngine { library: manifest.engine, given: engine_id.to_owned() });
        }
        Ok(manifest)
    }

    /// A segment in our own folder that this store never wrote means the local state was
    /// copied (a restored disk image on a second computer). Both copies would write the same
    /// seqs with different content, so this copy takes a new device id; the old folder then
    /// becomes an ordinary peer and nothing is lost.
    async fn detect_clone(&self) -> Result<()> {
        let device = self.device();
        let files = match self.transport.list(&device).await {
            Ok(files) => files,
            Err(e) => {
                tracing::warn!(error = %e, "could not list own folder to check for a cloned device");
                return Ok(());
            }
        };
        let next_seq = self.lock().next_seq;
        let foreign = files.iter().filter_map(|f| SegmentName::parse(&f.name)).any(|n| n.seq >= next_seq);
        if !foreign {
            return Ok(());
        }
        self.take_new_device_id("its folder holds segments this device did not write")?;
        Ok(())
    }

    /// Takes a fresh device id: this local state was copied (a restored disk image, a cloned
    /// virtual machine), and both copies would otherwise write different segments under the
    /// same names. The old folder becomes an ordinary peer, so nothing written there is lost;
    /// unflushed edits go out under the new id.
    fn take_new_device_id(&self, why: &str) -> Result<()> {
        let new = DeviceId::random();
        let old = {
            let mut st = self.lock();
            // The seq keeps counting: seqs only need to be unique per folder, and the flush
            // history in the store stays keyed by seq.
            st.store.set_meta(META_DEVICE_ID, Some(new.to_string().as_bytes()))?;
            std::mem::replace(&mut st.device, new)
        };
        tracing::warn!(%old, %new, "this device's local state was copied ({why}); taking a new device id");
        let _ = self.events.send(StatusEvent::NewDeviceId { old, new });
        Ok(())
    }

    async fn write_device_info(&self) {
        let device = self.device();
        let created_ms = self
            .lock()
            .store
            .get_meta(META_CREATED)
            .ok()
            .flatten()
            .and_then(|b| String::from_utf8_lossy(&b).parse().ok())
            .unwrap_or_else(|| self.config.clock.now_ms());
        let info = DeviceInfo {
            device_id: device,
            name: self.config.device_name.clone(),
            created_ms,
            app_version: env!("CARGO_PKG_VERSION").to_owned(),
            last_seen_ms: self.config.clock.now_ms(),
        };
        let bytes = serde_json::to_vec_pretty(&info).expect("device info serializes");
        if let Err(e) = self.transport.write(&device, DEVICE_FILE, &bytes).await {
            tracing::warn!(error = %e, "could not write {DEVICE_FILE}");
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This device's id.
    pub fn device(&self) -> DeviceId {
        self.lock().device
    }

    /// The library manifest.
    pub fn manifest(&self) -> &LibraryManifest {
        &self.manifest
    }

    /// The transport.
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.transport
    }

    /// Subscribes to status events.
    pub fn subscribe(&self) -> broadcast::Receiver<StatusEvent> {
        self.events.subscribe()
    }

    /// Reads a per-device setting from the store (e.g. a location's local path).
    pub fn setting(&self, key: &str) -> Result<Option<String>> {
        Ok(self.lock().store.get_meta(&format!("setting/{key}"))?.map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// Writes (or with `None` removes) a per-device setting. Settings never leave this device.
    pub fn set_setting(&self, key: &str, value: Option<&str>) -> Result<()> {
        self.lock().store.set_meta(&format!("setting/{key}"), value.map(str::as_bytes))?;
        Ok(())
    }

    /// Applies `ops` in one engine transaction and commits the change to the store. Returns
    /// once the edit is durable (acknowledged); the flush to the shared medium follows later.
    pub fn edit(&self, ops: &[Op]) -> Result<()> {
        let mut st = self.lock();
        if let Err(e) = st.engine.write(ops) {
            // A failed write may have left a partial local change behind; drop it.
            st.rebuild_engine()?;
            return Err(e.into());
        }
        let Some(change) = st.engine.take_local_changes()? else {
            return Ok(());
        };
        if let Err(e) = st.store.append_local(&change) {
            // The engine is ahead of what is durable: return to the stored state.
            st.rebuild_engine()?;
            return Err(e.into());
        }
        st.pending_edits += 1;
        st.log_since_compact += 1;
        let now = Instant::now();
        st.first_pending.get_or_insert(now);
        st.last_edit = Some(now);
        let pending = st.pending_edits;
        drop(st);
        self.edited.notify_one();
        let _ = self.events.send(StatusEvent::Edited { pending });
        Ok(())
    }

    /// Runs `f` with read access to the engine.
    pub fn read<R>(&self, f: impl FnOnce(&dyn Engine) -> R) -> R {
        let st = self.lock();
        f(st.engine.as_ref())
    }

    /// The current sync state.
    pub fn status(&self) -> Status {
        let st = self.lock();
        Status {
            device: st.device,
            library: self.manifest.library_id,
            engine: self.manifest.engine.clone(),
            store: self.store_id.to_owned(),
            pending_edits: st.pending_edits,
            next_seq: st.next_seq,
            last_flush: st.last_flush.clone(),
            peers: st.peers.clone(),
            warnings: st.warnings.values().cloned().collect(),
        }
    }

    /// Writes every acknowledged, unflushed local change as one new segment. Returns `None`
    /// when there was nothing to write (nothing is written while nothing changes).
    pub async fn flush(&self) -> Result<Option<FlushInfo>> {
        let _flushing = self.flush_lock.lock().await;
        let mut collided = false;
        loop {
            let Some(pending) = self.prepare_flush()? else {
                return Ok(None);
            };
            match self.transport.write(&pending.device, &pending.record.file_name, &pending.bytes).await {
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

    /// One pass over every peer folder: applies every segment not applied yet. Files that fail
    /// a check are skipped with a warning and retried on the next pass; they never stop the
    /// other files or peers.
    pub async fn ingest(&self) -> Result<IngestReport> {
        let _ingesting = self.ingest_lock.lock().await;
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

    fn warn(&self, folder: &str, file: Option<&str>, message: String) {
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

    /// Flushes own changes, then applies everything new from peers.
    pub async fn sync_once(&self) -> Result<SyncReport> {
        let flushed = self.flush().await?;
        let ingest = self.ingest().await?;
        Ok(SyncReport { flushed, ingest })
    }

    /// Compacts the store now: the log is folded into a snapshot. Returns `false` when skipped
    /// (changes wait for missing dependencies, or the engine refused to snapshot).
    pub fn compact(&self) -> Result<bool> {
        self.lock().compact()
    }

    fn flush_deadline(&self) -> Option<Instant> {
        let st = self.lock();
        if st.pending_edits == 0 {
            return None;
        }
        let quiet = st.last_edit.map(|t| t + self.config.debounce);
        let max = st.first_pending.map(|t| t + self.config.max_delay);
        match (quiet, max) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The long-running loop: flushes after the debounce, ingests on change hints and on the
    /// polling interval, until `shutdown` completes; then flushes once more. Errors of one
    /// pass are reported as [`StatusEvent::Error`] and retried; they never end the loop.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<()> {
        tokio::pin!(shutdown);
        let mut hints = match self.transport.changes().await {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "change hints unavailable; polling only");
                None
            }
        };
        let mut poll = tokio::time::interval(self.config.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = self.flush_deadline();
            let own = self.device();
            tokio::select! {
                _ = &mut shutdown => break,
                hint = next_hint(&mut hints) => {
                    match hint {
                        None => {
                            tracing::warn!("change hints stopped; polling only");
                            hints = None;
                        }
                        Some(hint) => {
                            let mut relevant = hint.device != Some(own);
                            // Coalesce a burst of hints into one pass.
                            while let Some(more) = hints.as_mut().and_then(|h| h.try_next()) {
                                relevant |= more.device != Some(own);
                            }
                            if relevant {
                                self.report(self.ingest().await.map(drop));
                            }
                        }
                    }
                }
                _ = poll.tick() => {
                    self.report(self.ingest().await.map(drop));
                }
                _ = sleep_until_opt(deadline) => {
                    self.report(self.flush().await.map(drop));
                }
                _ = self.edited.notified() => {}
            }
        }
        self.flush().await?;
        Ok(())
    }

    fn report(&self, result: Result<()>) {
        if let Err(e) = result {
            tracing::warn!(error = %e, "sync pass failed; will retry");
            let _ = self.events.send(StatusEvent::Error { message: e.to_string() });
        }
    }
}

impl Document for Replica {
    fn read<R>(&self, f: impl FnOnce(&dyn Engine) -> R) -> R {
        Replica::read(self, f)
    }
    fn write(&self, ops: &[Op]) -> Result<()> {
        self.edit(ops)
    }
    fn now_ms(&self) -> i64 {
        self.config.clock.now_ms()
    }
}

impl<D: Document> Document for Arc<D> {
    fn read<R>(&self, f: impl FnOnce(&dyn Engine) -> R) -> R {
        (**self).read(f)
    }
    fn write(&self, ops: &[Op]) -> Result<()> {
        (**self).write(ops)
    }
    fn now_ms(&self) -> i64 {
        (**self).now_ms()
    }
}

async fn next_hint(hints: &mut Option<crate::transport::ChangeStream>) -> Option<crate::transport::ChangeHint> {
    match hints {
        Some(stream) => stream.next().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

fn read_u64_meta(store: &dyn Store, key: &str) -> Result<Option<u64>> {
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
