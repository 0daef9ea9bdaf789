//! An open library: the located state, the replica and the model on top, plus the lookups
//! every command shares (tags by path, files by path, where a location is on this computer).

use std::collections::BTreeMap;
use std::mem::ManuallyDrop;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use onefolder_core::{OpenMode, Replica, ReplicaConfig};
use onefolder_model::{Library, Location, Tag};

use crate::backend;
use crate::error::user;
use crate::state::{self, Located, StateConfig};

/// Global options that select the library.
#[derive(Clone, Debug, Default)]
pub struct Global {
    /// `--state DIR`.
    pub state: Option<PathBuf>,
    /// `--library FOLDER`.
    pub library: Option<PathBuf>,
    /// `--json`.
    pub json: bool,
}

/// An open library.
pub struct Session {
    /// The state directory.
    pub dir: PathBuf,
    /// `state.json`.
    pub config: StateConfig,
    /// The replica.
    pub replica: ManuallyDrop<Arc<Replica>>,
    /// The model on the replica.
    pub lib: ManuallyDrop<Library<Arc<Replica>>>,
}

/// A command's session ends right before the process exits: the replica is closed without
/// freeing its document ([`Replica::close_leaving_memory`]) when nothing else holds it.
impl Drop for Session {
    fn drop(&mut self) {
        // SAFETY: both fields are taken exactly once, here, and never used again.
        let (lib, replica) = unsafe { (ManuallyDrop::take(&mut self.lib), ManuallyDrop::take(&mut self.replica)) };
        drop(lib);
        if let Ok(replica) = Arc::try_unwrap(replica) {
            replica.close_leaving_memory();
        }
    }
}

/// Turns core errors met while opening into messages that say what to do.
pub fn explain_open_error(err: anyhow::Error, library: &Path, state_dir: &Path) -> anyhow::Error {
    use onefolder_core::Error as E;
    let Some(core) = err.chain().find_map(|e| e.downcast_ref::<E>()) else {
        return err;
    };
    match core {
        E::WrongEngine { library: lib, given } => {
            user(format!("wrong engine: the library in {} uses the {lib} engine, not {given}", library.display()))
        }
        E::WrongLibrary { state, library: lib } => user(format!(
            "the local state in {} belongs to library {state}, but {} holds library {lib}; pass the matching --state \
             — or, if two computers both ran `onefolder-sync init` on this folder, run `onefolder-sync merge-library` \
             to move this computer's library into the one the folder holds",
            state_dir.display(),
            library.display()
        )),
        E::NoLibrary(_) => user(format!(
            "{} is not a OneFolder library (no {}); create one with `onefolder-sync init`",
            library.display(),
            state::manifest_path(library).display()
        )),
        E::BadManifest(why) => user(format!("{}: {why}", state::manifest_path(library).display())),
        _ => err,
    }
}

impl Session {
    /// Opens the library selected by the global options.
    pub async fn open(global: &Global) -> Result<Session> {
        Self::open_with(global, |_| {}).await
    }

    /// Opens the library, letting the caller tune the replica (e.g. `sync --watch` timings).
    /// Inside a `sync --watch` host this is the host's library (the options were the caller's
    /// way to find it).
    pub async fn open_with(global: &Global, tune: impl FnOnce(&mut ReplicaConfig)) -> Result<Session> {
        if let Some(h) = crate::host::hosted() {
            let lib = Library::new(h.replica.clone());
            return Ok(Session {
                dir: h.dir,
                config: h.config,
                replica: ManuallyDrop::new(h.replica),
                lib: ManuallyDrop::new(lib),
            });
        }
        let Located { dir, mut config, changed } = state::locate(global.state.as_deref(), global.library.as_deref())?;
        let mut rc =
            ReplicaConfig { device_name: config.device_name.clone(), mode: OpenMode::Join, ..Default::default() };
        tune(&mut rc);
        let replica = backend::open(&config.engine, &config.store, &dir, &config.library, &config.transport, rc)
            .await
            .map_err(|e| explain_open_error(e, &config.library, &dir))?;
        let replica = Arc::new(replica);
        if changed || config.device_id != Some(replica.device()) {
            config.device_id = Some(replica.device());
            state::write_config(&dir, &config)?;
        }
        let lib = Library::new(replica.clone());
        Ok(Session { dir, config, replica: ManuallyDrop::new(replica), lib: ManuallyDrop::new(lib) })
    }

    /// Where a location is on this computer: inside the library folder it follows the folder;
    /// outside, it is the path recorded by `location add` on this computer (never synced).
    pub fn location_path(&self, loc: &Location) -> Result<Option<PathBuf>> {
        location_path(&self.replica, &self.config.library, loc)
    }

    /// Every location with its path on this computer (when known).
    pub fn locations(&self) -> Result<Vec<(Location, Option<PathBuf>)>> {
        let mut out = Vec::new();
        for loc in self.lib.locations()?.into_values() {
            let path = self.location_path(&loc)?;
            out.push((loc, path));
        }
        Ok(out)
    }

    /// Finds a tag by path (`Animals/Cats`) or by id.
    pub fn tag(&self, arg: &str) -> Result<String> {
        if let Some(id) = self.lib.tag_by_path(arg)? {
            return Ok(id);
        }
        if self.lib.tags()?.contains_key(arg) {
            return Ok(arg.to_owned());
        }
        Err(user(format!("unknown tag {arg:?} (list them with `onefolder-sync tags`)")))
    }

    /// Finds a file of the index from a path relative to the library folder, an absolute path
    /// inside one of the library's locations, or a file id.
    pub fn file(&self, arg: &str) -> Result<String> {
        let locations = self.locations()?;
        let path = Path::new(arg);
        let found = if path.is_absolute() {
            let abs = std::fs::canonicalize(path).unwrap_or_else(|_| lexical(path).unwrap_or_default());
            innermost(&locations, &abs)
        } else {
            let rel = lexical(path)
                .ok_or_else(|| user(format!("{arg} is outside the library: it leaves the library folder")))?;
            let abs = self.config.library.join(&rel);
            innermost(&locations, &abs)
        };
        let Some((loc, rel)) = found else {
            if self.lib.file(arg)?.is_some() {
                return Ok(arg.to_owned());
            }
            return Err(user(format!(
                "{arg} is outside the library: it is in none of its locations (see `onefolder-sync location list`)"
            )));
        };
        let rel = rel_string(&rel).ok_or_else(|| user(format!("{arg}: the path is not valid UTF-8")))?;
        if rel.is_empty() {
            return Err(user(format!("{arg} is a location folder, not a file")));
        }
        match self.lib.file_at(&loc.id, &rel)? {
            Some(id) => Ok(id),
            None if self.lib.file(arg)?.is_some() => Ok(arg.to_owned()),
            None => Err(user(format!(
                "{arg} is not in the library's index (paths are relative to the library folder {}); run \
                 `onefolder-sync index` first",
                self.config.library.display()
            ))),
        }
    }

    /// Tag id → full path (`Animals/Cats`).
    pub fn tag_paths(&self) -> Result<BTreeMap<String, String>> {
        Ok(tag_paths(&self.lib.tags()?))
    }

    /// How a file is shown: its path relative to the library folder when its location is inside
    /// it, else `<location name>/<path>`.
    pub fn display_paths(&self) -> Result<BTreeMap<String, String>> {
        Ok(self
            .lib
            .locations()?
            .into_values()
            .map(|l| {
                let prefix = match &l.rel_path {
                    Some(rel) if rel.is_empty() => String::new(),
                    Some(rel) => format!("{rel}/"),
                    None => format!("[{}]/", l.name),
                };
                (l.id, prefix)
            })
            .collect())
    }
}

/// Where a location is on this computer.
pub fn location_path(replica: &Replica, library: &Path, loc: &Location) -> Result<Option<PathBuf>> {
    Ok(onefolder_model::local::location_path(replica, library, loc)?)
}

pub use onefolder_model::local::location_path_setting as path_setting;

/// The location holding `abs` whose folder is deepest (the innermost location owns a file),
/// with the path relative to it.
pub fn innermost<'a>(locations: &'a [(Location, Option<PathBuf>)], abs: &Path) -> Option<(&'a Location, PathBuf)> {
    locations
        .iter()
        .filter_map(|(l, p)| p.as_ref().map(|p| (l, std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))))
        .filter_map(|(l, root)| abs.strip_prefix(&root).ok().map(|rel| (l, root.components().count(), rel.to_owned())))
        .max_by_key(|(_, depth, _)| *depth)
        .map(|(l, _, rel)| (l, rel))
}

/// Resolves `.` and `..` without touching the disk; `None` when the path climbs above its start.
pub fn lexical(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    let mut depth = 0usize;
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if depth == 0 {
                    return None;
                }
                out.pop();
                depth -= 1;
            }
            Component::Normal(p) => {
                out.push(p);
                depth += 1;
            }
            Component::RootDir | Component::Prefix(_) => out.push(c.as_os_str()),
        }
    }
    Some(out)
}

/// A relative path as the model's `/`-separated string.
pub fn rel_string(rel: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str()?.to_owned()),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(parts.join("/"))
}

/// Tag id → full path of names from the root.
pub fn tag_paths(tags: &BTreeMap<String, Tag>) -> BTreeMap<String, String> {
    fn path_of(id: &str, tags: &BTreeMap<String, Tag>, memo: &mut BTreeMap<String, String>) -> String {
        if let Some(p) = memo.get(id) {
            return p.clone();
        }
        let tag = &tags[id];
        // Effective parents form a forest (cycles are broken by the model), so this ends.
        let p = match &tag.parent {
            Some(parent) if tags.contains_key(parent) => format!("{}/{}", path_of(parent, tags, memo), tag.name),
            _ => tag.name.clone(),
        };
        memo.insert(id.to_owned(), p.clone());
        p
    }
    let mut memo = BTreeMap::new();
    for id in tags.keys() {
        path_of(id, tags, &mut memo);
    }
    memo
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_paths_never_climb_out() {
        assert_eq!(lexical(Path::new("a/./b/../c.jpg")), Some(PathBuf::from("a/c.jpg")));
        assert_eq!(lexical(Path::new("../x.jpg")), None);
        assert_eq!(lexical(Path::new("a/../../x.jpg")), None);
        assert_eq!(rel_string(Path::new("a/b/c.jpg")).as_deref(), Some("a/b/c.jpg"));
    }

    #[test]
    fn innermost_location_owns_a_file() {
        let loc = |id: &str| Location {
            id: id.into(),
            name: id.into(),
            rel_path: None,
            date_added: 0,
            exclusions: Default::default(),
            index: None,
        };
        let locations =
            vec![(loc("outer"), Some(PathBuf::from("/x/lib"))), (loc("inner"), Some(PathBuf::from("/x/lib/Sub")))];
        let (l, rel) = innermost(&locations, Path::new("/x/lib/Sub/a.jpg")).unwrap();
        assert_eq!((l.id.as_str(), rel), ("inner", PathBuf::from("a.jpg")));
        let (l, rel) = innermost(&locations, Path::new("/x/lib/b.jpg")).unwrap();
        assert_eq!((l.id.as_str(), rel), ("outer", PathBuf::from("b.jpg")));
        assert!(innermost(&locations, Path::new("/elsewhere/c.jpg")).is_none());
    }
}
