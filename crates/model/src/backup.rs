//! Backup files: one self-describing file holding a library's canonical state.
//!
//! The file is text, so that a user can look inside:
//!
//! ```text
//! onefolder-sync backup                       ← magic (line 1)
//! {"version":1,"engine":"yrs",…,"crc32":…}    ← the header, one line of JSON (line 2)
//! {"files":{…},"locations":{…},…}             ← the canonical export, `bytes` long
//! ```
//!
//! The header names the format version, the engine and the library, the device and time it
//! was taken, the number of records of each kind, and the length and CRC-32 of the export
//! that follows. [`Backup::decode`] checks all of it before it parses the export, so a
//! truncated, damaged or foreign file is refused with a clear [`BackupError`] and nothing is
//! read from it.

use serde::{Deserialize, Serialize};

use crate::Export;

/// The first line of every backup file.
pub const BACKUP_MAGIC: &str = "onefolder-sync backup";
/// The newest backup format this build writes and reads.
pub const BACKUP_VERSION: u32 = 1;
/// The file name extension of backup files.
pub const BACKUP_EXTENSION: &str = "ofsbackup";
/// The longest header line accepted.
const MAX_HEADER: usize = 64 * 1024;

/// What a backup file says about itself (its second line).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupHeader {
    /// Format version ([`BACKUP_VERSION`]).
    pub version: u32,
    /// The library's engine.
    pub engine: String,
    /// The library id.
    pub library_id: String,
    /// The device that took it.
    pub device: String,
    /// When it was taken, ms since the Unix epoch (advisory).
    pub created_ms: i64,
    /// Tags in it.
    pub tags: usize,
    /// Files in it.
    pub files: usize,
    /// Locations in it.
    pub locations: usize,
    /// Saved searches in it.
    pub searches: usize,
    /// Length of the export that follows the header line.
    pub bytes: u64,
    /// CRC-32 of those bytes.
    pub crc32: u32,
}

/// Why a file is not a usable backup.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// The file does not start with [`BACKUP_MAGIC`].
    #[error("not a onefolder-sync backup (it does not start with {BACKUP_MAGIC:?})")]
    NotABackup,
    /// The header line is missing, too long or not the expected JSON.
    #[error("the backup's header is damaged: {0}")]
    BadHeader(String),
    /// Written by a newer version of this program.
    #[error("the backup has format version {found}; this program reads up to {BACKUP_VERSION}: upgrade OneFolder Sync")]
    TooNew {
        /// The version in the file.
        found: u32,
    },
    /// Fewer or more bytes than the header says.
    #[error(
        "the backup is truncated or has extra bytes: its header says {expected} bytes of content, the file has {found}"
    )]
    Length {
        /// What the header says.
        expected: u64,
        /// What the file holds.
        found: u64,
    },
    /// The content does not match the header's checksum.
    #[error("the backup is damaged: its content does not match its checksum")]
    Checksum,
    /// The content passed the checks but is not an export, or its counts differ from the header.
    #[error("the backup's content is not a valid library: {0}")]
    BadContent(String),
}

/// A backup: its header and the library state it holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Backup {
    /// What the file says about itself.
    pub header: BackupHeader,
    /// The library state.
    pub export: Export,
}

impl Backup {
    /// A backup of `export`, taken by `device` of library `library_id` (engine `engine`) at
    /// `created_ms`.
    pub fn new(export: Export, engine: &str, library_id: &str, device: &str, created_ms: i64) -> Backup {
        let content = export.to_json();
        let header = BackupHeader {
            version: BACKUP_VERSION,
            engine: engine.to_owned(),
            library_id: library_id.to_owned(),
            device: device.to_owned(),
            created_ms,
            tags: export.tags.len(),
            files: export.files.len(),
            locations: export.locations.len(),
            searches: export.searches.len(),
            bytes: content.len() as u64,
            crc32: crc32fast::hash(content.as_bytes()),
        };
        Backup { header, export }
    }

    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let header = serde_json::to_string(&self.header).expect("a backup header serializes");
        let content = self.export.to_json();
        let mut out = Vec::with_capacity(BACKUP_MAGIC.len() + header.len() + content.len() + 2);
        out.extend_from_slice(BACKUP_MAGIC.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(header.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(content.as_bytes());
        out
    }

    /// Reads a backup file's bytes: magic, header, version, length and checksum are checked
    /// before the content is parsed, and the content must hold what the header counts.
    pub fn decode(bytes: &[u8]) -> Result<Backup, BackupError> {
        let (header, content) = split(bytes)?;
        if content.len() as u64 != header.bytes {
            return Err(BackupError::Length { expected: header.bytes, found: content.len() as u64 });
        }
        if crc32fast::hash(content) != header.crc32 {
            return Err(BackupError::Checksum);
        }
        let text = std::str::from_utf8(content).map_err(|e| BackupError::BadContent(e.to_string()))?;
        let export = Export::from_json(text).map_err(|e| BackupError::BadContent(e.to_string()))?;
        let counts = (export.tags.len(), export.files.len(), export.locations.len(), export.searches.len());
        if counts != (header.tags, header.files, header.locations, header.searches) {
            return Err(BackupError::BadContent(format!(
                "it holds {} tags, {} files, {} locations and {} searches; its header says {}, {}, {} and {}",
                counts.0, counts.1, counts.2, counts.3, header.tags, header.files, header.locations, header.searches
            )));
        }
        Ok(Backup { header, export })
    }

    /// Only the header, checked as far as it can be without the content (magic, JSON, version).
    pub fn peek_header(bytes: &[u8]) -> Result<BackupHeader, BackupError> {
        split(bytes).map(|(header, _)| header)
    }
}

/// Which automatic backups to keep, as OneFolder 1.x did: the most recent few, then the newest
/// of each of the last days, then the newest of each of the last weeks. A backup kept by any
/// rule is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// The newest this many backups.
    pub recent: usize,
    /// The newest backup of each of this many most recent days (UTC) that have one.
    pub daily: usize,
    /// The newest backup of each of this many most recent weeks that have one.
    pub weekly: usize,
}

impl Default for Rotation {
    /// 6 recent (an hour at one every 10 minutes), 7 daily, 4 weekly.
    fn default() -> Self {
        Rotation { recent: 6, daily: 7, weekly: 4 }
    }
}

impl Rotation {
    /// The indexes into `created_ms` (each backup's creation time) of the backups to keep.
    pub fn keep(&self, created_ms: &[i64]) -> std::collections::BTreeSet<usize> {
        const DAY_MS: i64 = 86_400_000;
        let mut newest_first: Vec<usize> = (0..created_ms.len()).collect();
        newest_first.sort_by_key(|&i| std::cmp::Reverse((created_ms[i], i)));
        let mut keep: std::collections::BTreeSet<usize> = newest_first.iter().take(self.recent).copied().collect();
        for (count, bucket_ms) in [(self.daily, DAY_MS), (self.weekly, 7 * DAY_MS)] {
            let mut buckets = Vec::new();
            for &i in &newest_first {
                let bucket = created_ms[i].div_euclid(bucket_ms);
                if buckets.len() == count {
                    break;
                }
                if !buckets.contains(&bucket) {
                    buckets.push(bucket);
                    keep.insert(i);
                }
            }
        }
        keep
    }
}

/// Magic, header and content of a backup file; the header parsed and its version checked.
fn split(bytes: &[u8]) -> Result<(BackupHeader, &[u8]), BackupError> {
    let rest = bytes
        .strip_prefix(BACKUP_MAGIC.as_bytes())
        .and_then(|r| r.strip_prefix(b"\n"))
        .ok_or(BackupError::NotABackup)?;
    let end = rest
        .iter()
        .take(MAX_HEADER)
        .position(|&b| b == b'\n')
        .ok_or_else(|| BackupError::BadHeader("no end of the header line".into()))?;
    let line = &rest[..end];
    // The version first, so that a newer format with other fields says "too new".
    #[derive(Deserialize)]
    struct Version {
        version: u32,
    }
    let version: Version = serde_json::from_slice(line).map_err(|e| BackupError::BadHeader(e.to_string()))?;
    if version.version > BACKUP_VERSION {
        return Err(BackupError::TooNew { found: version.version });
    }
    let header: BackupHeader = serde_json::from_slice(line).map_err(|e| BackupError::BadHeader(e.to_string()))?;
    Ok((header, &rest[end + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::ExportTag;

    fn sample() -> Backup {
        let mut export = Export::default();
        let tag = ExportTag {
            name: "Cats".into(),
            parent: None,
            color: Some("orange".into()),
            order: "80".into(),
            is_hidden: false,
            date_added: 1,
            implied: std::collections::BTreeSet::new(),
            copy_implied: false,
        };
        export.tags.insert("t1".into(), tag);
        Backup::new(export, "yrs", "lib-1", "dev-1", 1_700_000_000_000)
    }

    #[test]
    fn round_trips_and_describes_itself() {
        let b = sample();
        let bytes = b.encode();
        assert!(bytes.starts_with(b"onefolder-sync backup\n{\"version\":1,"));
        assert_eq!(Backup::decode(&bytes).unwrap(), b);
        let h = Backup::peek_header(&bytes).unwrap();
        assert_eq!((h.tags, h.files, h.engine.as_str()), (1, 0, "yrs"));
    }

    #[test]
    fn damaged_files_are_refused_with_their_reason() {
        let bytes = sample().encode();
        assert!(matches!(Backup::decode(b"{\"files\":{}}"), Err(BackupError::NotABackup)));
        assert!(matches!(Backup::decode(&[]), Err(BackupError::NotABackup)));
        assert!(matches!(Backup::decode(&bytes[..bytes.len() - 3]), Err(BackupError::Length { .. })));
        let mut extra = bytes.clone();
        extra.push(b' ');
        assert!(matches!(Backup::decode(&extra), Err(BackupError::Length { .. })));
        let mut flipped = bytes.clone();
        let last = flipped.len() - 2;
        flipped[last] ^= 0x20;
        assert!(matches!(Backup::decode(&flipped), Err(BackupError::Checksum)));
        let cut = b"onefolder-sync backup\n{\"version\":1";
        assert!(matches!(Backup::decode(cut), Err(BackupError::BadHeader(_))));
        let newer = b"onefolder-sync backup\n{\"version\":2,\"other\":true}\n{}";
        assert!(matches!(Backup::decode(newer), Err(BackupError::TooNew { found: 2 })));
    }

    #[test]
    fn rotation_keeps_recent_daily_and_weekly() {
        const MIN: i64 = 60_000;
        const DAY: i64 = 1440 * MIN;
        let now = 1_000 * DAY;
        // Every 10 minutes for the last hour and a half, then one a day for 30 days.
        let mut created: Vec<i64> = (0..9).map(|k| now - k * 10 * MIN).collect();
        created.extend((1..=30).map(|d| now - d * DAY - 3 * MIN));
        let r = Rotation { recent: 6, daily: 7, weekly: 4 };
        let keep = r.keep(&created);
        // The 6 newest, one per day for 7 days (today's newest is among the recent), and one
        // per week for 4 weeks.
        for i in 0..6 {
            assert!(keep.contains(&i), "recent {i}");
        }
        for i in 6..9 {
            assert!(!keep.contains(&i), "older ones of today go: {i}");
        }
        for d in 1..=6 {
            assert!(keep.contains(&(8 + d)), "day {d}");
        }
        assert!(keep.len() <= 6 + 7 + 4, "{keep:?}");
        let oldest_kept = keep.iter().map(|&i| created[i]).min().unwrap();
        assert!(oldest_kept >= now - 28 * DAY, "kept a backup older than four weeks");
        assert!(oldest_kept <= now - 20 * DAY, "weekly backups reach back weeks");
        // Fewer backups than the rules allow: all are kept; none: nothing.
        assert_eq!(r.keep(&created[..3]).len(), 3);
        assert!(r.keep(&[]).is_empty());
        assert!(Rotation { recent: 0, daily: 0, weekly: 0 }.keep(&created).is_empty());
    }

    #[test]
    fn counts_must_match_the_content() {
        let mut b = sample();
        b.header.tags = 2;
        assert!(matches!(Backup::decode(&b.encode()), Err(BackupError::BadContent(_))));
    }
}
