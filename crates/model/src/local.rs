//! What each computer keeps for itself beside the shared library (per-device settings of a
//! [`Replica`], never synced), shared by every shell (the CLI, the Node binding).

use std::path::{Path, PathBuf};

use onefolder_core::Replica;

use crate::{Location, Result};

/// The per-device setting holding the absolute path of a location outside the library folder.
pub fn location_path_setting(location: &str) -> String {
    format!("location/{location}/path")
}

/// Where a location is on this computer: inside the library folder `library` for a location
/// with a relative path, else the per-device setting (`None` when this computer has not mapped
/// it).
pub fn location_path(replica: &Replica, library: &Path, loc: &Location) -> Result<Option<PathBuf>> {
    Ok(match &loc.rel_path {
        Some(rel) if rel.is_empty() => Some(library.to_path_buf()),
        Some(rel) => Some(library.join(rel)),
        None => replica.setting(&location_path_setting(&loc.id))?.map(PathBuf::from),
    })
}
