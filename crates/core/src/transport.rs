//! The shared medium boundary.

use std::any::Any;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::ids::DeviceId;

/// Errors of a [`Transport`]. Callers act on the kind: retry `Transient` / `RateLimited` later,
/// skip `NotFound`, ask the user to sign in again on `Unauthorized`, report the rest.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The file or folder does not exist (or no longer exists).
    #[error("not found: {0}")]
    NotFound(String),
    /// A name was rejected: path separators, `..`, absolute paths, control characters, or a
    /// link leading outside the library.
    #[error("rejected name {name:?}: {reason}")]
    InvalidName {
        /// The offending name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// The file exists and must not be overwritten (segments are immutable).
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The operation is not supported by this transport.
    #[error("{op} is not supported by the {adapter} transport")]
    Unsupported {
        /// The operation.
        op: &'static str,
        /// The transport name.
        adapter: &'static str,
    },
    /// The provider asked us to slow down.
    #[error("rate limited by the provider (retry after {retry_after:?})")]
    RateLimited {
        /// How long the provider asked us to wait, if it said.
        retry_after: Option<Duration>,
    },
    /// A failure that may go away by itself (network, a cloud file provider that is not
    /// running, a file still being downloaded).
    #[error("temporary failure: {0}")]
    Transient(String),
    /// A file is larger than the caller's cap; it was not read.
    #[error("{name} is {size} bytes, over the {cap}-byte limit")]
    TooLarge {
        /// The file.
        name: String,
        /// Its size.
        size: u64,
        /// The cap.
        cap: u64,
    },
    /// The provider refused the credentials or the access (an expired sign-in that could not
    /// be refreshed, a revoked app, missing permissions): the user has to act, e.g. sign in
    /// again. Not worth an immediate retry; the sync loop still tries again after its backoff.
    #[error("access refused: {0}")]
    Unauthorized(String),
    /// Any other I/O failure.
    #[error("I/O failure: {0}")]
    Io(#[from] std::io::Error),
}

impl TransportError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, TransportError::Transient(_) | TransportError::RateLimited { .. } | TransportError::Io(_))
    }
}

/// What a transport can do; the Replica and the conformance suite read it instead of guessing.
/// `Default` is the least a transport may offer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// [`Transport::changes`] delivers hints (otherwise only polling finds new files).
    pub watch: bool,
    /// Names differing only by case are the same file.
    pub case_insensitive: bool,
    /// The provider rate-limits requests.
    pub rate_limited: bool,
    /// Largest file the medium accepts, if limited.
    pub max_file_size: Option<u64>,
    /// [`Transport::changes_since`] reads a change feed (one request when nothing changed)
    /// instead of the default full listing.
    pub changes_feed: bool,
    /// Listings carry a [`FileEntry::version`].
    pub versions: bool,
    /// How many reads the caller may have in flight at once (at least 1).
    pub concurrent_reads: usize,
}

impl Default for Capabilities {
    fn default() -> Self {
        Self {
            watch: false,
            case_insensitive: false,
            rate_limited: false,
            max_file_size: None,
            changes_feed: false,
            versions: false,
            concurrent_reads: 1,
        }
    }
}

/// How [`Transport::write`] treats a file that already has the name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WriteMode {
    /// Fail with [`TransportError::AlreadyExists`] and keep the first content: segments are
    /// immutable once visible.
    CreateNew,
    /// Replace the file atomically (`device.json`): a reader sees the old or the new content.
    Replace,
}

/// One file in a device folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    /// File name (no path).
    pub name: String,
    /// Size in bytes as listed (0 for online-only placeholders on some providers).
    pub size: u64,
    /// The provider's version of this file (Drive file id, Dropbox rev, ETag), when the
    /// medium has one: it changes whenever the content does. Two files may share a name on
    /// some providers (Drive); their versions differ.
    pub version: Option<String>,
}

impl FileEntry {
    /// An entry without a provider version.
    pub fn new(name: impl Into<String>, size: u64) -> Self {
        Self { name: name.into(), size, version: None }
    }

    /// The same entry with a provider version.
    pub fn with_version(self, version: impl Into<String>) -> Self {
        Self { version: Some(version.into()), ..self }
    }
}

/// An opaque position in a transport's change feed, returned by [`Transport::changes_since`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangeCursor(pub String);

/// What changed on the medium since a [`ChangeCursor`].
#[derive(Debug, Default)]
pub struct ChangeSet {
    /// Files that are new or changed, each with the raw name of its device folder. When
    /// `complete`, every file of every folder listed (but the skipped one).
    pub files: Vec<(String, FileEntry)>,
    /// Raw names of the device folders seen (every one, when `complete`).
    pub folders: Vec<String>,
    /// Folders that could not be listed this time, with the error; asked again next time.
    pub failed: Vec<(String, TransportError)>,
    /// `files` is a full listing: no cursor was given, the feed was reset or expired, or the
    /// transport has no feed.
    pub complete: bool,
    /// Where the next call resumes.
    pub cursor: ChangeCursor,
}

/// A hint that something changed on the shared medium. Hints can be lost, merged or spurious:
/// they only wake the sync loop, which then lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeHint {
    /// The device folder that changed, when known.
    pub device: Option<DeviceId>,
}

/// A stream of [`ChangeHint`]s. Dropping it stops the watch.
pub struct ChangeStream {
    rx: mpsc::Receiver<ChangeHint>,
    _guard: Box<dyn Any + Send>,
}

impl ChangeStream {
    /// Wraps a receiver; `guard` is kept alive as long as the stream (e.g. a file watcher).
    pub fn new(rx: mpsc::Receiver<ChangeHint>, guard: Box<dyn Any + Send>) -> Self {
        Self { rx, _guard: guard }
    }

    /// A stream fed by the task `task` (a poll or long-poll loop), which is aborted when the
    /// stream is dropped.
    pub fn from_task(rx: mpsc::Receiver<ChangeHint>, task: tokio::task::JoinHandle<()>) -> Self {
        Self::new(rx, Box::new(AbortOnDrop(task)))
    }

    /// The next hint; `None` once the source has stopped (fall back to polling).
    pub async fn next(&mut self) -> Option<ChangeHint> {
        self.rx.recv().await
    }

    /// A hint that is already waiting, without blocking.
    pub fn try_next(&mut self) -> Option<ChangeHint> {
        self.rx.try_recv().ok()
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl std::fmt::Debug for ChangeStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeStream").finish_non_exhaustive()
    }
}

/// The shared medium, seen as one folder per device holding immutable files, plus the library
/// manifest beside them.
///
/// Implementors: `onefolder-transport-folder` (a synced directory) and [`MemoryTransport`]
/// (in process, with versions and a change feed, as an HTTP provider has). Layers (fault
/// injection, [`RetryLayer`](crate::RetryLayer)) are transports too.
///
/// # Behavior
/// - `manifest_create_once`: [`Transport::create_manifest`] writes the manifest when there is
///   none and returns `true`; when one exists it leaves it untouched and returns `false`.
/// - `write_then_list_read`: after [`Transport::write`], [`Transport::list`] of that device
///   shows the file with its size and [`Transport::read`] returns the same bytes; the device
///   appears in [`Transport::list_devices`].
/// - `write_is_atomic`: a reader never sees a partial file under the final name; temporary
///   files are never listed.
/// - `write_existing_fails`: writing a name that already exists with [`WriteMode::CreateNew`]
///   fails with [`TransportError::AlreadyExists`] and keeps the first content (segments are
///   immutable); with [`WriteMode::Replace`] the new content replaces it.
/// - `read_missing_not_found`: reading a missing file gives [`TransportError::NotFound`].
/// - `list_missing_device_empty`: listing a device folder that does not exist gives an empty list.
/// - `delete_missing_ok`: deleting a missing file succeeds.
/// - `names_are_checked`: names with `/`, `\`, `..`, NUL or a leading `.` are rejected with
///   [`TransportError::InvalidName`] by `read`, `write` and `delete`.
/// - `changes_hint_on_write` (when `capabilities().watch`): a write by another handle on the
///   same medium produces a hint within a generous deadline.
/// - `changes_since_sees_every_write`: [`Transport::changes_since`] without a cursor is a
///   complete listing; from the cursor it returned, a later call reports every file written
///   since (with its size) — a feed reports only those, a full listing everything — and never
///   a file of the skipped folder it was asked not to list.
/// - `versions_follow_content` (when `capabilities().versions`): every listed file has a
///   version; listing twice gives the same versions; a replaced file gets a new one.
/// - `reads_run_concurrently`: `capabilities().concurrent_reads` reads in flight at once all
///   return their own file's bytes.
#[async_trait]
pub trait Transport: Send + Sync {
    /// A short name for logs and errors, e.g. `"folder"`.
    fn name(&self) -> &'static str;

    /// What this transport can do.
    fn capabilities(&self) -> Capabilities;

    /// The library manifest (`library.json`) bytes, if present.
    async fn read_manifest(&self) -> Result<Option<Vec<u8>>, TransportError>;

    /// Writes the manifest if there is none yet. Returns whether it was written.
    async fn create_manifest(&self, bytes: &[u8]) -> Result<bool, TransportError>;

    /// Names of the device folders. Names are raw: callers parse them as [`DeviceId`]s and
    /// skip the rest.
    async fn list_devices(&self) -> Result<Vec<String>, TransportError>;

    /// Files in a device folder (temporary files excluded).
    async fn list(&self, device: &DeviceId) -> Result<Vec<FileEntry>, TransportError>;

    /// The whole content of a file. Fails with [`TransportError::TooLarge`] without reading when
    /// the file is larger than `cap` bytes.
    async fn read(&self, device: &DeviceId, name: &str, cap: u64) -> Result<Vec<u8>, TransportError>;

    /// Writes a file atomically into a device folder (the caller's own); `mode` says what
    /// happens when the name exists.
    async fn write(&self, device: &DeviceId, name: &str, bytes: &[u8], mode: WriteMode) -> Result<(), TransportError>;

    /// Removes a file from a device folder (the caller's own).
    async fn delete(&self, device: &DeviceId, name: &str) -> Result<(), TransportError>;

    /// A stream of change hints, or `None` when this transport cannot watch.
    async fn changes(&self) -> Result<Option<ChangeStream>, TransportError>;

    /// What changed since `cursor` (everything, without one). `skip` names a device folder
    /// the caller does not need (its own); a full listing does not list it. Transports with
    /// a change feed override this (see [`Capabilities::changes_feed`]); the default lists
    /// every device folder: 1 + N requests.
    async fn changes_since(
        &self,
        cursor: Option<&ChangeCursor>,
        skip: Option<&DeviceId>,
    ) -> Result<ChangeSet, TransportError> {
        let _ = cursor;
        full_listing(self, skip).await
    }
}

/// A complete [`ChangeSet`] made by listing every device folder (but `skip`): the default of
/// [`Transport::changes_since`], and what a feed falls back to after a reset.
pub async fn full_listing<T: Transport + ?Sized>(t: &T, skip: Option<&DeviceId>) -> Result<ChangeSet, TransportError> {
    let folders = t.list_devices().await?;
    let mut set = ChangeSet { complete: true, ..ChangeSet::default() };
    for folder in &folders {
        let Ok(device) = folder.parse::<DeviceId>() else { continue };
        if Some(&device) == skip {
            continue;
        }
        match t.list(&device).await {
            Ok(files) => set.files.extend(files.into_iter().map(|f| (folder.clone(), f))),
            Err(e) => set.failed.push((folder.clone(), e)),
        }
    }
    set.folders = folders;
    Ok(set)
}

#[async_trait]
impl<T: Transport + ?Sized> Transport for std::sync::Arc<T> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }
    async fn read_manifest(&self) -> Result<Option<Vec<u8>>, TransportError> {
        (**self).read_manifest().await
    }
    async fn create_manifest(&self, bytes: &[u8]) -> Result<bool, TransportError> {
        (**self).create_manifest(bytes).await
    }
    async fn list_devices(&self) -> Result<Vec<String>, TransportError> {
        (**self).list_devices().await
    }
    async fn list(&self, device: &DeviceId) -> Result<Vec<FileEntry>, TransportError> {
        (**self).list(device).await
    }
    async fn read(&self, device: &DeviceId, name: &str, cap: u64) -> Result<Vec<u8>, TransportError> {
        (**self).read(device, name, cap).await
    }
    async fn write(&self, device: &DeviceId, name: &str, bytes: &[u8], mode: WriteMode) -> Result<(), TransportError> {
        (**self).write(device, name, bytes, mode).await
    }
    async fn delete(&self, device: &DeviceId, name: &str) -> Result<(), TransportError> {
        (**self).delete(device, name).await
    }
    async fn changes(&self) -> Result<Option<ChangeStream>, TransportError> {
        (**self).changes().await
    }
    async fn changes_since(
        &self,
        cursor: Option<&ChangeCursor>,
        skip: Option<&DeviceId>,
    ) -> Result<ChangeSet, TransportError> {
        (**self).changes_since(cursor, skip).await
    }
}

/// Conveniences on every [`Transport`], kept out of the implementor trait.
#[async_trait]
pub trait TransportExt: Transport {
    /// Writes a new immutable file ([`WriteMode::CreateNew`]).
    async fn create(&self, device: &DeviceId, name: &str, bytes: &[u8]) -> Result<(), TransportError> {
        self.write(device, name, bytes, WriteMode::CreateNew).await
    }

    /// Writes or replaces a file ([`WriteMode::Replace`]).
    async fn replace(&self, device: &DeviceId, name: &str, bytes: &[u8]) -> Result<(), TransportError> {
        self.write(device, name, bytes, WriteMode::Replace).await
    }
}

impl<T: Transport + ?Sized> TransportExt for T {}

/// Checks one file or folder name for the shared medium: not empty, no path separators, not
/// `.`/`..`, no NUL or other control characters, no leading `.` (temporary files), at most 255
/// bytes. Every transport calls this before touching a name.
pub fn check_name(name: &str) -> Result<(), TransportError> {
    let reason = if name.is_empty() {
        Some("empty name")
    } else if name.len() > 255 {
        Some("longer than 255 bytes")
    } else if name == "." || name == ".." {
        Some("relative path component")
    } else if name.contains(['/', '\\']) {
        Some("contains a path separator")
    } else if name.chars().any(char::is_control) {
        Some("contains a control character")
    } else if name.starts_with('.') {
        Some("hidden or temporary name")
    } else if name.contains(':') {
        Some("contains a drive or stream separator")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(TransportError::InvalidName { name: name.to_owned(), reason }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_name_rejects_hostile_names() {
        for bad in ["", ".", "..", "../x", "a/b", "a\\b", "/etc", ".tmp-1", "a\0b", "Icon\r", "C:x"] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["00000000000000000001.seg", "device.json", "x (conflicted copy).seg"] {
            check_name(good).unwrap();
        }
    }
}
