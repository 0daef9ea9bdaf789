//! What a replica reports: status snapshots, events, and pass reports.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::ids::{DeviceId, LibraryId};

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
    /// A snapshot of the whole document: published because enough own deltas followed the
    /// last one ([`FolderCompaction`]), or again because own segments were damaged on the
    /// medium (see [`Replica::check_own_folder`]).
    ///
    /// [`FolderCompaction`]: crate::FolderCompaction
    /// [`Replica::check_own_folder`]: crate::Replica::check_own_folder
    pub snapshot: bool,
}

/// A kind of pass (flush or ingest) that keeps failing, and when it is tried again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FailureInfo {
    /// Failed attempts in a row.
    pub attempts: u32,
    /// The last error.
    pub message: String,
    /// Wall-clock ms since epoch of the first failure in the row (advisory).
    pub since_ms: i64,
    /// Time until the next attempt, in ms.
    pub retry_in_ms: u64,
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
    /// The seq of a segment prepared by a flush whose write failed (or whose process ended
    /// first); the next flush writes it, under that seq, before anything else.
    pub unwritten_seq: Option<u64>,
    /// Flushes that keep failing (the pending edits wait, durable, for the next attempt).
    pub flush_failure: Option<FailureInfo>,
    /// Ingest passes that keep failing.
    pub ingest_failure: Option<FailureInfo>,
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
