//! This device's local state for one library: where it lives and how commands find it.
//!
//! A state directory holds the store (e.g. `state.sqlite3`) and `state.json`, which names the
//! library folder, its id, the engine and the store, so that every later command needs nothing
//! else. One library per state directory; the directory is never inside the synced folder.
//!
//! Which state a command uses, first match wins:
//! 1. `--state DIR` (or `ONEFOLDER_SYNC_STATE`);
//! 2. `--library FOLDER` (or `ONEFOLDER_SYNC_LIBRARY`): the default state of the library in
//!    FOLDER, `<data dir>/libraries/<library id>`;
//! 3. the *current library*: `<data dir>/current` names the state directory of the library
//!    last set up with `init` / `join` without `--state`.
//!
//! `<data dir>` is the OS data directory for onefolder-sync (`directories::ProjectDirs`, e.g.
//! `~/.local/share/onefolder-sync` on Linux, honouring `XDG_DATA_HOME`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use onefolder_core::{DeviceId, LibraryId, LibraryManifest};
use serde::{Deserialize, Serialize};

use crate::backend;
use crate::error::user;
use crate::remote::TransportSpec;

/// Name of the configuration file in a state directory.
pub const STATE_FILE: &str = "state.json";
/// Name of the current-library pointer in the data directory.
pub const CURRENT_FILE: &str = "current";
/// Version of `state.json` this build writes.
pub const STATE_FORMAT: u32 = 1;

/// `state.json`: what the local state is for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateConfig {
    /// Format version of this file.
    pub format: u32,
    /// The library folder on this computer (absolute).
    pub library: PathBuf,
    /// The library id (from `library.json`).
    pub library_id: LibraryId,
    /// The engine named by `library.json`.
    pub engine: String,
    /// The store kind of this state.
    pub store: String,
    /// This device's name (written to `device.json`).
    pub device_name: String,
    /// This device's id as of the last command (the replica may take a new one if it finds
    /// that its state was copied to another computer).
    pub device_id: Option<DeviceId>,
    /// Where the library's database travels: the library folder (absent from the file), or a
    /// provider's API.
    #[serde(default, skip_serializing_if = "TransportSpec::is_folder")]
    pub transport: TransportSpec,
}

/// The OS data directory of onefolder-sync.
pub fn data_dir() -> Result<PathBuf> {
    directories::ProjectDirs::from("org", "OneFolder", "onefolder-sync")
        .map(|p| p.data_dir().to_path_buf())
        .ok_or_else(|| user("cannot find this computer's data directory (no home directory?); pass --state DIR"))
}

/// The default state directory of a library.
pub fn default_state_dir(library: LibraryId) -> Result<PathBuf> {
    Ok(data_dir()?.join("libraries").join(library.to_string()))
}

/// Reads `state.json` in `dir`; `None` when there is none.
pub fn read_config(dir: &Path) -> Result<Option<StateConfig>> {
    let path = dir.join(STATE_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let config: StateConfig = serde_json::from_str(&text)
        .map_err(|e| user(format!("{} is damaged ({e}); remove the state directory and join again", path.display())))?;
    if config.format > STATE_FORMAT {
        return Err(user(format!("{} was written by a newer onefolder-sync; upgrade", path.display())));
    }
    Ok(Some(config))
}

/// Writes `state.json` atomically.
pub fn write_config(dir: &Path, config: &StateConfig) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let text = serde_json::to_string_pretty(config)? + "\n";
    write_atomic(&dir.join(STATE_FILE), text.as_bytes())
}

/// Writes a file through a temporary file in the same folder and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("writing into {}", dir.display()))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The state directory of the current library, if one was set.
pub fn current() -> Result<Option<PathBuf>> {
    let path = data_dir()?.join(CURRENT_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => Ok(Some(PathBuf::from(text.trim_end_matches(['\n', '\r'])))),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Makes `state_dir` the current library.
pub fn set_current(state_dir: &Path) -> Result<()> {
    let dir = data_dir()?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    write_atomic(&dir.join(CURRENT_FILE), format!("{}\n", state_dir.display()).as_bytes())
}

/// Path of `library.json` in a library folder.
pub fn manifest_path(folder: &Path) -> PathBuf {
    folder.join(backend::TAGS_DIR).join(onefolder_core::names::MANIFEST_FILE)
}

/// Reads `library.json` of a library folder; `None` when there is none.
pub fn read_manifest(folder: &Path) -> Result<Option<LibraryManifest>> {
    let path = manifest_path(folder);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let manifest = serde_json::from_slice(&bytes)
        .map_err(|e| user(format!("{} is not a valid library manifest: {e}", path.display())))?;
    Ok(Some(manifest))
}

/// An existing folder, made absolute (symbolic links resolved).
pub fn existing_folder(folder: &Path) -> Result<PathBuf> {
    let abs = std::fs::canonicalize(folder).map_err(|e| user(format!("{}: {e}", folder.display())))?;
    if !abs.is_dir() {
        return Err(user(format!("{} is not a folder", folder.display())));
    }
    Ok(abs)
}

/// A path made absolute without requiring it to exist (for a state directory to create).
pub fn absolute(path: &Path) -> Result<PathBuf> {
    if let Ok(p) = std::fs::canonicalize(path) {
        return Ok(p);
    }
    Ok(std::path::absolute(path)?)
}

/// A located state: its directory and `state.json`.
#[derive(Clone, Debug)]
pub struct Located {
    /// The state directory.
    pub dir: PathBuf,
    /// Its configuration.
    pub config: StateConfig,
    /// The configuration changed (the library folder moved) and is to be saved once the
    /// library opened.
    pub changed: bool,
}

fn not_a_state(dir: &Path) -> anyhow::Error {
    user(format!(
        "{} holds no onefolder-sync state (no {STATE_FILE}); set it up with `onefolder-sync --state {} init FOLDER` \
         or `join FOLDER`",
        dir.display(),
        dir.display()
    ))
}

/// Finds a local state (`--state DIR`, or the current library's) without checking what its
/// library folder holds now (`merge-library` runs exactly when it holds another library).
pub fn locate_state(state: Option<&Path>) -> Result<Located> {
    let dir = match state {
        Some(dir) => absolute(dir)?,
        None => current()?.ok_or_else(|| user("no library selected: pass --state DIR"))?,
    };
    let config = read_config(&dir)?.ok_or_else(|| not_a_state(&dir))?;
    Ok(Located { dir, config, changed: false })
}

/// Finds the state to use (see the module documentation) and checks that its library folder
/// is still where it was. With `--library`, a library folder that moved is recorded anew.
pub fn locate(state: Option<&Path>, library: Option<&Path>) -> Result<Located> {
    let library = library.map(existing_folder).transpose()?;
    let manifest = match &library {
        Some(folder) => Some(read_manifest(folder)?.ok_or_else(|| {
            user(format!("{} is not a OneFolder library (no {})", folder.display(), manifest_path(folder).display()))
        })?),
        None => None,
    };
    let dir = match (state, &manifest) {
        (Some(dir), _) => absolute(dir)?,
        (None, Some(m)) => default_state_dir(m.library_id)?,
        (None, None) => current()?.ok_or_else(|| {
            user(
                "no library selected: set one up with `onefolder-sync init FOLDER` or `onefolder-sync join FOLDER`, \
                 or pass --library FOLDER or --state DIR",
            )
        })?,
    };
    let mut config = match read_config(&dir)? {
        Some(config) => config,
        None if state.is_none() && manifest.is_some() => {
            let folder = library.as_ref().expect("manifest read from --library");
            return Err(user(format!(
                "this computer has not joined the library in {} yet; run `onefolder-sync join {}`",
                folder.display(),
                folder.display()
            )));
        }
        None if state.is_none() => {
            return Err(user(format!(
                "the current library's local state {} is gone; set the library up again with \
                 `onefolder-sync join FOLDER`, or pass --library FOLDER or --state DIR",
                dir.display()
            )));
        }
        None => return Err(not_a_state(&dir)),
    };
    let mut changed = false;
    if let (Some(folder), Some(m)) = (&library, &manifest) {
        if m.library_id != config.library_id {
            return Err(user(format!(
                "the state in {} belongs to library {}, but {} holds library {}",
                dir.display(),
                config.library_id,
                folder.display(),
                m.library_id
            )));
        }
        if *folder != config.library {
            // The library folder moved (or is mounted elsewhere): remember where it is now.
            config.library = folder.clone();
            changed = true;
        }
    }
    if !config.transport.is_folder() {
        // The database is at the provider (the replica checks its manifest when it opens);
        // the folder here only holds the pictures.
        if !config.library.is_dir() {
            return Err(user(format!(
                "the library folder {} is gone (moved, renamed or not mounted?); mount it again, or set this \
                 computer up again with `onefolder-sync join FOLDER --transport {}`",
                config.library.display(),
                config.transport
            )));
        }
        return Ok(Located { dir, config, changed });
    }
    match read_manifest(&config.library) {
        Ok(Some(m)) if m.library_id == config.library_id => {}
        Ok(Some(m)) => {
            return Err(user(format!(
                "{} now holds another library ({}); pass --library FOLDER to say where library {} is — or, if two \
                 computers both ran `onefolder-sync init` on this folder, run `onefolder-sync merge-library` to move \
                 this computer's library into the one the folder holds",
                config.library.display(),
                m.library_id,
                config.library_id
            )));
        }
        Ok(None) | Err(_) => {
            return Err(user(format!(
                "the library folder {} is gone (moved, renamed or not mounted?); pass --library FOLDER to say where \
                 it is now",
                config.library.display()
            )));
        }
    }
    Ok(Located { dir, config, changed })
}

/// This computer's name, for `device.json` when `--name` is not given.
pub fn host_name() -> String {
    let from_env = ["COMPUTERNAME", "HOSTNAME"].iter().find_map(|k| std::env::var(k).ok());
    let from_file =
        || ["/proc/sys/kernel/hostname", "/etc/hostname"].iter().find_map(|p| std::fs::read_to_string(p).ok());
    from_env
        .or_else(from_file)
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "this computer".to_owned())
}

/// Whether `inner` is `outer` or lies inside it (both absolute).
pub fn is_inside(inner: &Path, outer: &Path) -> bool {
    inner.starts_with(outer)
}
