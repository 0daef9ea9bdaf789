//! The OneFolder Sync [`Transport`] on a directory that a sync client (Dropbox, Google Drive,
//! OneDrive, Syncthing, a network share) keeps equal between computers.
//!
//! # Layout
//!
//! A [`FolderTransport`] is rooted at `<library>/onefolder_tags` ([`FolderTransport::for_library`]):
//!
//! ```text
//! onefolder_tags/
//!   library.json                 the manifest (create once, never replaced)
//!   database/<deviceId>/         one folder per device, written only by that device
//!     device.json                advisory, replaced on each write
//!     <seq>.seg, snap-<seq>.seg  immutable segments
//! ```
//!
//! # Atomicity
//!
//! Every file is published the same way: the bytes go to a temporary file in the *same*
//! folder whose name starts with `.` and ends in `.tmp`, the file is flushed with `fsync`,
//! then it is renamed to its final name and the folder itself is flushed (best effort, Unix
//! only). Segments and the manifest are published without replacing anything (Linux and macOS
//! `renameat2(RENAME_NOREPLACE)`, else a hard link, on Windows `MoveFileExW` without
//! `REPLACE_EXISTING`): a name that exists already fails with
//! [`TransportError::AlreadyExists`] and keeps its first content. `device.json` is replaced by
//! an atomic rename. A reader therefore never sees a partial file under a final name that we
//! wrote, and readers ([`Transport::list`]) never list temporary names
//! ([`onefolder_core::names::is_temporary`]: our `.…tmp` files, sync clients' `.tmp-`,
//! `.partial`, `~$…` files). Files written by a *sync client* may still be incomplete when
//! they appear: the caller verifies each segment's length and checksum and retries later.
//!
//! On file systems that support neither no-replace rename nor hard links (some FUSE mounts),
//! the no-clobber publish falls back to "check that the name is free, then rename". That is
//! not atomic against a second writer of the same name, which is acceptable because a device
//! folder has exactly one writer.
//!
//! Files are created with mode `0o666` minus the process umask (usually `0o644`), exactly like
//! any other file the user creates, rather than `tempfile`'s private `0o600`: a sync daemon
//! running as another user (Syncthing as a system service on a NAS, a group-shared library)
//! must be able to read them, and the segments reveal nothing that the pictures beside them do
//! not.
//!
//! # Safety against a hostile folder
//!
//! Every name goes through [`onefolder_core::transport::check_name`]. Symbolic links are never
//! followed out of the library: a device folder that is a link is skipped by
//! [`Transport::list_devices`] (with a warning) and rejected by the other methods, a file that
//! is a link is skipped by [`Transport::list`] and rejected by [`Transport::read`] with
//! [`TransportError::InvalidName`]. Reads are capped: a file over the caller's cap is rejected
//! from its metadata without being read.
//!
//! # Watcher
//!
//! [`Transport::changes`] watches `root` recursively with a `notify` watcher (inotify,
//! FSEvents, ReadDirectoryChangesW) behind a `notify-debouncer-full` debouncer
//! ([`FolderOptions::debounce`], 50 ms by default, so that a peer's segment is seen well within
//! 100 ms). Each batch of events becomes one [`ChangeHint`](onefolder_core::ChangeHint) per
//! device folder touched (the folder name after `database/`, or `None` when it is not a device
//! id, for the manifest, and when the watcher lost events). Events for temporary names and
//! pure reads (open / close without write) are ignored, so that reading a peer's files does
//! not wake the reader again; other hints may be spurious. A new device folder (created or
//! moved in) produces a hint of its own: files created in it before the watcher added the
//! folder are missed by the watcher, and the hint makes the sync loop list the folder. When
//! the watcher cannot be created (e.g. the inotify watch limit is reached), `changes` returns
//! `Ok(None)` and the sync loop polls. `root/library.json` and `root/database/…` are watched;
//! other files of the root (`backups/`) produce no hint.
//!
//! Blocking file system calls run on tokio's blocking pool (`spawn_blocking`); the runtime's
//! worker threads are never blocked. The only exception is [`FolderTransport::new`], which
//! probes case sensitivity with a couple of `stat` calls unless
//! [`FolderOptions::case_insensitive`] is given.

#![warn(missing_docs)]

mod fsops;
mod watch;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use onefolder_core::names::MANIFEST_FILE;
use onefolder_core::transport::check_name;
use onefolder_core::{Capabilities, ChangeStream, DeviceId, FileEntry, Transport, TransportError, WriteMode};

/// Name of the folder, inside a library, that holds everything OneFolder Sync writes.
pub const TAGS_DIR: &str = "onefolder_tags";
/// Name of the folder, inside [`TAGS_DIR`], that holds one folder per device.
pub const DATABASE_DIR: &str = "database";
/// Largest manifest [`Transport::read_manifest`] accepts (a real one is a few hundred bytes).
pub const MANIFEST_CAP: u64 = 1024 * 1024;

/// Settings of a [`FolderTransport`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderOptions {
    /// How long the watcher waits for a burst of events on one file to settle before it sends
    /// a hint. Hints arrive between `debounce` and `1.25 × debounce` after the last event.
    pub debounce: Duration,
    /// Whether the file system treats names differing only by case as the same file; `None`
    /// probes the file system once, when the transport is created.
    pub case_insensitive: Option<bool>,
}

impl Default for FolderOptions {
    fn default() -> Self {
        Self { debounce: Duration::from_millis(50), case_insensitive: None }
    }
}

/// A [`Transport`] on a directory: `root/library.json` and `root/database/<deviceId>/…`.
///
/// Cloning is cheap; clones and other instances on the same root see each other's writes, as
/// two computers sharing the synced folder do.
#[derive(Clone, Debug)]
pub struct FolderTransport {
    root: PathBuf,
    debounce: Duration,
    case_insensitive: bool,
}

impl FolderTransport {
    /// A transport rooted at `root`, i.e. `<library>/onefolder_tags`, with default options.
    /// Nothing is created until the first write.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self::with_options(root, FolderOptions::default())
    }

    /// A transport rooted at `root` (`<library>/onefolder_tags`) with the given options.
    pub fn with_options(root: impl Into<PathBuf>, options: FolderOptions) -> Self {
        let root = root.into();
        let case_insensitive = options.case_insensitive.unwrap_or_else(|| fsops::detect_case_insensitive(&root));
        Self { root, debounce: options.debounce, case_insensitive }
    }

    /// A transport for the library at `library_folder`, rooted at
    /// `library_folder/onefolder_tags`.
    pub fn for_library(library_folder: impl AsRef<Path>) -> Self {
        Self::new(library_folder.as_ref().join(TAGS_DIR))
    }

    /// The root folder (`<library>/onefolder_tags`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder holding the device folders (`root/database`).
    pub fn database_dir(&self) -> PathBuf {
        self.root.join(DATABASE_DIR)
    }

    /// The folder of one device (`root/database/<deviceId>`).
    pub fn device_dir(&self, device: &DeviceId) -> PathBuf {
        self.database_dir().join(device.to_string())
    }
}

/// Runs blocking file system work on tokio's blocking pool.
async fn blocking<T, F>(f: F) -> Result<T, TransportError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, TransportError> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(TransportError::Transient("file system task cancelled (runtime shutting down)".into())),
    }
}

#[async_trait]
impl Transport for FolderTransport {
    fn name(&self) -> &'static str {
        "folder"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            watch: true,
            case_insensitive: self.case_insensitive,
            concurrent_reads: 4,
            ..Capabilities::default()
        }
    }

    async fn read_manifest(&self) -> Result<Option<Vec<u8>>, TransportError> {
        let path = self.root.join(MANIFEST_FILE);
        blocking(move || match fsops::read_capped(&path, MANIFEST_FILE, MANIFEST_CAP) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(TransportError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    async fn create_manifest(&self, bytes: &[u8]) -> Result<bool, TransportError> {
        let root = self.root.clone();
        let bytes = bytes.to_vec();
        blocking(move || {
            fsops::ensure_dir(&root)?;
            match fsops::publish(&root, MANIFEST_FILE, &bytes, false) {
                Ok(()) => Ok(true),
                Err(TransportError::AlreadyExists(_)) => Ok(false),
                Err(e) => Err(e),
            }
        })
        .await
    }

    async fn list_devices(&self) -> Result<Vec<String>, TransportError> {
        let database = self.database_dir();
        blocking(move || fsops::list_devices(&database)).await
    }

    async fn list(&self, device: &DeviceId) -> Result<Vec<FileEntry>, TransportError> {
        let dir = self.device_dir(device);
        let device = *device;
        blocking(move || fsops::list_files(&dir, &device)).await
    }

    async fn read(&self, device: &DeviceId, name: &str, cap: u64) -> Result<Vec<u8>, TransportError> {
        check_name(name)?;
        let dir = self.device_dir(device);
        let (device, name) = (*device, name.to_owned());
        blocking(move || {
            if !fsops::device_dir_exists(&dir, &device)? {
                return Err(TransportError::NotFound(format!("{device}/{name}")));
            }
            fsops::read_capped(&dir.join(&name), &format!("{device}/{name}"), cap)
        })
        .await
    }

    async fn write(&self, device: &DeviceId, name: &str, bytes: &[u8], mode: WriteMode) -> Result<(), TransportError> {
        check_name(name)?;
        let dir = self.device_dir(device);
        let (device, name, bytes) = (*device, name.to_owned(), bytes.to_vec());
        blocking(move || {
            if !fsops::device_dir_exists(&dir, &device)? {
                fsops::ensure_dir(&dir)?;
            }
            fsops::publish(&dir, &name, &bytes, mode == WriteMode::Replace).map_err(|e| match e {
                TransportError::AlreadyExists(_) => TransportError::AlreadyExists(format!("{device}/{name}")),
                e => e,
            })
        })
        .await
    }

    async fn delete(&self, device: &DeviceId, name: &str) -> Result<(), TransportError> {
        check_name(name)?;
        let dir = self.device_dir(device);
        let (device, name) = (*device, name.to_owned());
        blocking(move || {
            if !fsops::device_dir_exists(&dir, &device)? {
                return Ok(());
            }
            fsops::remove(&dir, &name)
        })
        .await
    }

    async fn changes(&self) -> Result<Option<ChangeStream>, TransportError> {
        let root = self.root.clone();
        let debounce = self.debounce;
        blocking(move || watch::start(&root, debounce)).await
    }
}
