//! The blocking file system operations behind [`crate::FolderTransport`]. Each function is
//! meant to run on tokio's blocking pool.

use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::path::Path;

use onefolder_core::names::is_temporary;
use onefolder_core::transport::check_name;
use onefolder_core::{DeviceId, FileEntry, TransportError};

/// Maps an I/O error on `what` to a transport error: `NotFound` keeps its meaning.
fn io_error(e: io::Error, what: &str) -> TransportError {
    if e.kind() == io::ErrorKind::NotFound { TransportError::NotFound(what.to_owned()) } else { TransportError::Io(e) }
}

/// Flushes a folder's entries (a new or renamed name) to disk. Best effort: not every
/// platform or file system can open or sync a directory, and the data itself is synced.
pub(crate) fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
        tracing::debug!(dir = %dir.display(), error = %e, "could not sync folder");
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Creates `dir` and its parents if missing, then syncs its parent so the new entry is durable.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), TransportError> {
    if fs::metadata(dir).is_ok_and(|m| m.is_dir()) {
        return Ok(());
    }
    fs::create_dir_all(dir)?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent);
    }
    Ok(())
}

/// Whether a device folder exists. A device folder that is a symbolic link (it may lead
/// outside the library) is rejected; so is a non-folder under a device's name.
pub(crate) fn device_dir_exists(dir: &Path, device: &DeviceId) -> Result<bool, TransportError> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() => {
            Err(TransportError::InvalidName { name: device.to_string(), reason: "symbolic link" })
        }
        Ok(m) if m.is_dir() => Ok(true),
        Ok(_) => Err(TransportError::Io(io::Error::new(
            io::ErrorKind::NotADirectory,
            format!("device folder {device} is not a folder"),
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(TransportError::Io(e)),
    }
}

/// Creates files like any other file of the user's: `0o666` minus the umask.
fn temp_builder() -> tempfile::Builder<'static, 'static> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(".").suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(fs::Permissions::from_mode(0o666));
    }
    builder
}

/// Publishes `bytes` as `dir/name` atomically: temporary `.…tmp` file in `dir`, fsync, rename,
/// folder sync. Without `replace`, an existing `name` fails with
/// [`TransportError::AlreadyExists`] and is left untouched.
pub(crate) fn publish(dir: &Path, name: &str, bytes: &[u8], replace: bool) -> Result<(), TransportError> {
    let target = dir.join(name);
    let mut tmp = temp_builder().tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    if replace {
        tmp.persist(&target).map_err(|e| TransportError::Io(e.error))?;
    } else {
        match tmp.persist_noclobber(&target) {
            Ok(_) => {}
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {
                return Err(TransportError::AlreadyExists(name.to_owned()));
            }
            Err(e) => {
                // Neither a no-replace rename nor a hard link worked (some FUSE and FAT file
                // systems). The folder has a single writer (its device), so "check, then
                // rename" cannot race with another write of this name.
                match fs::symlink_metadata(&target) {
                    Ok(_) => return Err(TransportError::AlreadyExists(name.to_owned())),
                    Err(missing) if missing.kind() == io::ErrorKind::NotFound => {}
                    Err(_) => return Err(TransportError::Io(e.error)),
                }
                tracing::debug!(
                    file = %target.display(),
                    error = %e.error,
                    "no-clobber rename unsupported; renaming after a check"
                );
                e.file.persist(&target).map_err(|e| TransportError::Io(e.error))?;
            }
        }
    }
    sync_dir(dir);
    Ok(())
}

/// The identity of a file, to check that the file opened is the one inspected.
#[cfg(unix)]
fn same_file(a: &Metadata, b: &Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    (a.dev(), a.ino()) == (b.dev(), b.ino())
}

#[cfg(not(unix))]
fn same_file(a: &Metadata, b: &Metadata) -> bool {
    a.is_file() == b.is_file()
}

/// Reads a whole regular file of at most `cap` bytes. Symbolic links are rejected, a file
/// over `cap` is rejected from its metadata without being read; `what` names the file in
/// errors.
pub(crate) fn read_capped(path: &Path, what: &str, cap: u64) -> Result<Vec<u8>, TransportError> {
    let meta = fs::symlink_metadata(path).map_err(|e| io_error(e, what))?;
    if meta.file_type().is_symlink() {
        return Err(TransportError::InvalidName { name: what.to_owned(), reason: "symbolic link" });
    }
    if !meta.is_file() {
        return Err(TransportError::InvalidName { name: what.to_owned(), reason: "not a regular file" });
    }
    if meta.len() > cap {
        return Err(TransportError::TooLarge { name: what.to_owned(), size: meta.len(), cap });
    }
    let file = File::open(path).map_err(|e| io_error(e, what))?;
    let opened = file.metadata()?;
    if !opened.is_file() || !same_file(&meta, &opened) {
        // Replaced between the check and the open (a sync client at work): look again later.
        return Err(TransportError::Transient(format!("{what} was replaced while being opened")));
    }
    // The file may still grow (a sync client writing it): never read more than `cap` + 1.
    let mut bytes = Vec::with_capacity(opened.len().min(cap) as usize);
    file.take(cap.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(TransportError::TooLarge {
            name: what.to_owned(),
            size: opened.len().max(bytes.len() as u64),
            cap,
        });
    }
    Ok(bytes)
}

/// Names of the device folders in `database`: real folders only (links are skipped with a
/// warning), UTF-8 names not starting with `.`, sorted.
pub(crate) fn list_devices(database: &Path) -> Result<Vec<String>, TransportError> {
    let entries = match fs::read_dir(database) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            tracing::debug!(path = %entry.path().display(), "device folder name is not UTF-8; ignored");
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let meta = match fs::symlink_metadata(entry.path()) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        if meta.file_type().is_symlink() {
            tracing::warn!(folder = %name, "device folder is a symbolic link; not followed");
            continue;
        }
        if meta.is_dir() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Regular files in a device folder, sorted by name, without temporary names, names that
/// [`check_name`] rejects, folders and symbolic links. A missing folder is empty.
pub(crate) fn list_files(dir: &Path, device: &DeviceId) -> Result<Vec<FileEntry>, TransportError> {
    if !device_dir_exists(dir, device)? {
        return Ok(Vec::new());
    }
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            tracing::debug!(path = %entry.path().display(), "file name is not UTF-8; ignored");
            continue;
        };
        if is_temporary(&name) {
            continue;
        }
        if check_name(&name).is_err() {
            tracing::debug!(%device, file = %name, "file name not allowed on the shared medium; ignored");
            continue;
        }
        let meta = match fs::symlink_metadata(entry.path()) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        if meta.file_type().is_symlink() {
            tracing::warn!(%device, file = %name, "file is a symbolic link; not followed");
            continue;
        }
        if meta.is_file() {
            files.push(FileEntry::new(name, meta.len()));
        }
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// Removes `dir/name`; a missing file is fine. A link is removed itself, never its target.
pub(crate) fn remove(dir: &Path, name: &str) -> Result<(), TransportError> {
    match fs::remove_file(dir.join(name)) {
        Ok(()) => {
            sync_dir(dir);
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Whether the file system holding `root` ignores case in names, probed without writing: the
/// nearest existing path component with letters is looked up with its case flipped. Falls
/// back to the platform's usual default (case-insensitive on macOS and Windows) when nothing
/// can be probed.
pub(crate) fn detect_case_insensitive(root: &Path) -> bool {
    for path in root.ancestors() {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
            continue;
        };
        let Ok(meta) = fs::symlink_metadata(path) else {
            continue;
        };
        let lower = name.to_lowercase();
        let flipped = if name == lower { name.to_uppercase() } else { lower };
        if flipped == name {
            continue;
        }
        return match fs::symlink_metadata(parent.join(&flipped)) {
            Ok(other) => same_file(&meta, &other),
            Err(_) => false,
        };
    }
    cfg!(any(target_os = "macos", target_os = "ios", windows))
}
