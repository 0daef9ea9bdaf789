//! The device's durable local state.

use crate::ids::DeviceId;

/// Errors of a [`Store`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The local state is held by another process (file lock).
    #[error("the local state at {path} is already in use by another process")]
    Locked {
        /// The state location.
        path: String,
    },
    /// The stored data is damaged.
    #[error("the local store is corrupt: {0}")]
    Corrupt(String),
    /// The store was written by a newer version of this program.
    #[error("the local store has schema version {found}; this program supports up to {supported}")]
    TooNew {
        /// Version found on disk.
        found: u32,
        /// Newest version this build knows.
        supported: u32,
    },
    /// An argument violated the contract (e.g. flushing log entries that do not exist).
    #[error("invalid store operation: {0}")]
    Invalid(String),
    /// An I/O or database failure; the operation did not commit.
    #[error("local store I/O failure: {message}")]
    Io {
        /// What failed, in words (with the cause's own message).
        message: String,
        /// The underlying error (an `io::Error`, a database error), when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl StoreError {
    /// An I/O failure without an underlying error value.
    pub fn io(message: impl Into<String>) -> Self {
        StoreError::Io { message: message.into(), source: None }
    }

    /// An I/O failure caused by `source`; its message is appended to `what`.
    pub fn io_from(what: impl std::fmt::Display, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Io { message: format!("{what}: {source}"), source: Some(Box::new(source)) }
    }
}

/// Whether a log entry was made on this device or received from a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogKind {
    /// A local edit (engine bytes from `take_local_changes`).
    Local,
    /// A peer's segment payload that was applied.
    Remote,
}

/// One entry of the change log kept beside the snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// Position in the log; strictly increasing.
    pub id: u64,
    /// Local or remote.
    pub kind: LogKind,
    /// Engine bytes.
    pub payload: Vec<u8>,
    /// For local entries: the own segment seq that carried it to the shared medium, once flushed.
    pub flushed_seq: Option<u64>,
}

/// What [`Store::load`] returns: everything needed to rebuild the engine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredState {
    /// The latest engine snapshot, if any.
    pub snapshot: Option<Vec<u8>>,
    /// Log entries not covered by the snapshot (plus unflushed local entries), by id.
    pub log: Vec<LogEntry>,
}

/// A flush of local edits to the shared medium, recorded by [`Store::commit_flush`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlushRecord {
    /// The own segment seq.
    pub seq: u64,
    /// Every unflushed local log entry with `id <= upto` was carried by this segment.
    pub upto: u64,
    /// Segment file name.
    pub file_name: String,
    /// Payload checksum from the segment header.
    pub checksum: u32,
    /// Segment size in bytes.
    pub size: u64,
    /// Wall-clock time of the flush in ms since the Unix epoch (advisory, for status only).
    pub at_ms: i64,
}

/// A peer segment that was applied (or recognised as a copy of one already applied).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedSegment {
    /// The peer.
    pub device: DeviceId,
    /// File name in the peer's folder.
    pub file_name: String,
    /// First seq covered.
    pub seq_start: u64,
    /// Last seq covered.
    pub seq_end: u64,
    /// Payload checksum from the header.
    pub checksum: u32,
    /// File size in bytes.
    pub size: u64,
    /// Wall-clock time of the apply in ms since the Unix epoch (advisory, for status only).
    pub applied_at_ms: i64,
}

/// What [`Store::load_with`] lends the stored state to: the snapshot (if any) and the log
/// entries to replay on top of it.
pub type LoadFn<'a> = dyn FnMut(Option<&[u8]>, &[LogEntry]) + 'a;

/// The device's durable local state: engine snapshot, the log of changes not yet in a snapshot,
/// per-peer cursors, the flush history, device identity and per-device settings.
///
/// Implementors: `onefolder-store-sqlite`, `onefolder-store-lmdb`. Every method is atomic: it
/// commits entirely or not at all, and a method that returned `Ok` survives a process kill.
///
/// # Behavior
/// - `meta_round_trip`: [`Store::set_meta`] then [`Store::get_meta`] returns the value (empty
///   and binary values, and the empty key, included); `None` deletes; a missing key reads as
///   `None`, and deleting it succeeds.
/// - `append_local_is_durable`: an entry returned by [`Store::append_local`] (an empty payload
///   included) is in [`Store::unflushed`] and in [`Store::load`] after reopening.
/// - `log_ids_increase`: log ids returned by `append_local` / `commit_remote` strictly increase,
///   also after [`Store::compact`] dropped the newest entries and after reopening; an id is never
///   reused.
/// - `commit_flush_marks_entries`: after [`Store::commit_flush`] with `upto = n`, no entry with
///   `id <= n` is in `unflushed`, later ones are; every local entry it carried gets its
///   `flushed_seq` (remote entries never do, payloads stay); [`Store::flushes`] lists the
///   record; a later flush marks only what is still unflushed.
/// - `commit_flush_refuses_invalid`: `commit_flush` with an `upto` beyond the last log id ever
///   handed out, or with a seq already recorded, returns [`StoreError::Invalid`] and changes
///   nothing.
/// - `commit_remote_records_cursor`: [`Store::commit_remote`] appends the payload (when given)
///   and the [`AppliedSegment`] in one commit; [`Store::applied`] lists it; the same file again
///   replaces its record; [`Store::forget_peer`] drops that peer's records and keeps the log.
/// - `replace_applied_prunes`: [`Store::replace_applied`] drops the named records of one
///   peer and records the given one in one commit; other peers' records, names it does not
///   hold, and the log stay as they were.
/// - `forget_flushes_before_prunes`: [`Store::forget_flushes_before`] drops the flush records
///   below a seq (unsigned order) and keeps the later ones; the log, its `flushed_seq` marks
///   included, is untouched.
/// - `compact_keeps_unflushed`: [`Store::compact`] replaces the snapshot and drops every log
///   entry except unflushed local ones, which `load` still returns; flushes and applied
///   segments are kept.
/// - `reopen_sees_everything`: dropping the store and opening it again at the same location
///   returns the same meta, log, snapshot, flushes and applied segments.
/// - `load_with_lends_what_load_returns`: [`Store::load_with`] calls its function exactly once
///   with what [`Store::load`] returns (no snapshot, an empty one and a large one; before and
///   after reopening).
/// - `u64_values_round_trip_and_order_as_unsigned`: `u64` fields of `2^63` and more (up to
///   `u64::MAX`) round-trip; `flushes` lists by seq and `applied` a peer's segments by
///   `seq_start`, both in unsigned order.
/// - `second_open_is_locked_until_the_first_is_dropped`: opening a location (created if
///   missing) that an open store holds fails with [`StoreError::Locked`] naming it, without
///   disturbing the holder; once the holder is dropped it opens.
pub trait Store: Send {
    /// The store id, e.g. `"sqlite"`.
    fn store_id(&self) -> &'static str;

    /// Reads a per-device setting or identity value.
    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Writes (`Some`) or deletes (`None`) a per-device setting or identity value.
    fn set_meta(&mut self, key: &str, value: Option<&[u8]>) -> Result<(), StoreError>;

    /// Durably appends a local change; returns its log id. The edit is acknowledged after this.
    fn append_local(&mut self, payload: &[u8]) -> Result<u64, StoreError>;

    /// Local entries not yet carried by an own segment, by id.
    fn unflushed(&self) -> Result<Vec<LogEntry>, StoreError>;

    /// Records an own segment that carried every unflushed local entry with `id <= upto`.
    fn commit_flush(&mut self, flush: &FlushRecord) -> Result<(), StoreError>;

    /// Every recorded own flush, by seq.
    fn flushes(&self) -> Result<Vec<FlushRecord>, StoreError>;

    /// Records an applied peer segment, appending its payload to the log when given, in one
    /// commit. Returns the log id of the payload, if one was appended.
    fn commit_remote(&mut self, applied: &AppliedSegment, payload: Option<&[u8]>) -> Result<Option<u64>, StoreError>;

    /// Every applied peer segment.
    fn applied(&self) -> Result<Vec<AppliedSegment>, StoreError>;

    /// Forgets everything recorded about a peer's segments (used by `devices forget`).
    fn forget_peer(&mut self, device: &DeviceId) -> Result<(), StoreError>;

    /// Replaces records of one peer's applied segments: drops those named in `drop` (names it
    /// does not hold are ignored) and records `keep` (replacing a record of the same name), in
    /// one commit. The replica folds the records a peer's snapshot covers into one this way.
    fn replace_applied(&mut self, device: &DeviceId, drop: &[String], keep: &AppliedSegment) -> Result<(), StoreError>;

    /// Drops the records of own flushes with a seq below `seq` (their segments were deleted
    /// from the medium, covered by an own snapshot segment).
    fn forget_flushes_before(&mut self, seq: u64) -> Result<(), StoreError>;

    /// Snapshot plus the log entries to replay on top of it.
    fn load(&self) -> Result<StoredState, StoreError>;

    /// What [`Store::load`] returns, lent to `f` (called exactly once, from one read) rather
    /// than handed over. A store overrides it to lend its snapshot without copying it out
    /// (LMDB's memory map, SQLite's row), so that opening a large library holds its snapshot
    /// bytes once, not twice, while the engine decodes them.
    fn load_with(&self, f: &mut LoadFn<'_>) -> Result<(), StoreError> {
        let stored = self.load()?;
        f(stored.snapshot.as_deref(), &stored.log);
        Ok(())
    }

    /// Replaces the snapshot with one that includes every log entry so far, and drops the log
    /// except unflushed local entries.
    fn compact(&mut self, snapshot: &[u8]) -> Result<(), StoreError>;
}
