//! Tuning of a replica: open mode, debounce and polling, the wall clock.

use std::sync::Arc;
use std::time::Duration;

use crate::manifest::now_ms;
use crate::segment;

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
    /// Log entries after which the store is compacted into a snapshot (default 1000), once
    /// they also hold half the snapshot's bytes (or 20 times this many entries), so that a
    /// large library is not rewritten whole every 1000 edits.
    pub compact_every: usize,
    /// How often `device.json` is rewritten only to refresh its last-seen time (default 6 h);
    /// it is also written whenever what it says changes (name, app version, device id).
    pub device_info_every: Duration,
    /// How often [`Replica::run`] checks this device's own folder on the medium for segments
    /// another copy of the local state wrote, or own segments damaged there (default 10 min;
    /// also checked at open). See [`Replica::check_own_folder`].
    ///
    /// [`Replica::run`]: super::Replica::run
    /// [`Replica::check_own_folder`]: super::Replica::check_own_folder
    pub own_check_every: Duration,
    /// When this device replaces its own segments on the medium by one snapshot segment, and
    /// how long the segments it covers stay there afterwards.
    pub folder: FolderCompaction,
    /// The wall clock, in ms since the Unix epoch. Only advisory timestamps come from it
    /// (dates shown to users, status); merging never depends on it, so a device whose clock
    /// is wrong or jumps back still converges. Tests inject skewed clocks here.
    pub clock: Clock,
}

/// How a device keeps its own folder on the shared medium bounded.
///
/// After enough own delta segments, the next flush also publishes the whole document as one
/// snapshot segment `snap-<seq>.seg`, which covers every own seq up to it. Once the snapshot
/// has been on the medium for [`grace`](Self::grace), [`Replica::tidy_own_folder`] deletes
/// the own segments it covers. Peers that read the snapshot skip what it covers, so a device
/// that joins, or returns after a long time offline, reads one snapshot per peer plus what
/// followed it.
///
/// [`Replica::tidy_own_folder`]: super::Replica::tidy_own_folder
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderCompaction {
    /// A snapshot is due once the own deltas since the last one hold as many bytes as that
    /// snapshot, and at least this many (default 16 KiB).
    pub min_bytes: u64,
    /// A snapshot is due once this many own deltas followed the last one, whatever their
    /// size (default 1000), so that a listing of the folder stays short.
    pub max_segments: usize,
    /// How long the segments a snapshot covers stay on the medium after it was written
    /// (default 3 days), so that a peer whose sync client is slow to download the snapshot
    /// keeps reading the deltas meanwhile. Measured on [`ReplicaConfig::clock`]: a clock that
    /// jumps ahead only deletes sooner, which delays such a peer but loses nothing.
    pub grace: Duration,
}

impl Default for FolderCompaction {
    fn default() -> Self {
        Self { min_bytes: 16 << 10, max_segments: 1000, grace: Duration::from_secs(3 * 24 * 3600) }
    }
}

impl FolderCompaction {
    /// Whether `deltas` own delta segments of `bytes` in all, written since the last own
    /// snapshot of `snapshot_bytes` (0: none yet), call for a new snapshot.
    pub fn due(&self, deltas: usize, bytes: u64, snapshot_bytes: u64) -> bool {
        deltas > 0 && (deltas >= self.max_segments || bytes >= snapshot_bytes.max(self.min_bytes))
    }
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
            device_info_every: Duration::from_secs(6 * 3600),
            own_check_every: Duration::from_secs(600),
            folder: FolderCompaction::default(),
            clock: Clock::system(),
        }
    }
}
