//! `library.json` and `device.json`.

use serde::{Deserialize, Serialize};

use crate::ids::{DeviceId, LibraryId};

/// The library format version this build writes and understands: the layout of the shared
/// folder, of segments and of the document inside them. Format 2 has the lean document layout
/// (grouped file facts, 16-character ids, no set markers); format 1 libraries are refused with
/// [`crate::Error::OldFormat`].
pub const MANIFEST_VERSION: u32 = 2;

/// `onefolder_tags/library.json`: written once when the library is created, never changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LibraryManifest {
    /// The library id (also in every segment header).
    pub library_id: LibraryId,
    /// The CRDT engine every device of this library uses (e.g. `"yrs"`).
    pub engine: String,
    /// Format version of the library layout and segments.
    pub format_version: u32,
    /// Creation time, RFC 3339 or ms since epoch as written by the creator (advisory).
    pub created_ms: i64,
}

/// `database/<deviceId>/device.json`: advisory facts about a device, rewritten on open.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// The device id (equal to its folder name).
    pub device_id: DeviceId,
    /// A human name (e.g. the computer's host name).
    pub name: String,
    /// When the device was created, ms since epoch.
    pub created_ms: i64,
    /// Version of the program that last wrote this file.
    pub app_version: String,
    /// Last time the device opened the library, ms since epoch (advisory: clocks may be wrong).
    pub last_seen_ms: i64,
}

/// Milliseconds since the Unix epoch by the local clock (advisory values only; correctness
/// never depends on it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
