//! How a file is stored as a record: the one place that maps [`File`] to fields and back.
//!
//! Cost follows the number of engine entries per file (a yrs item is ~65 B encoded and ~540 B
//! of memory), so a file record holds few of them (format 2 of the library):
//!
//! | field | value | written by |
//! |---|---|---|
//! | [`FILE_META`] (`m`) | [`Value::Bytes`]: the facts the indexer reads from disk, one register ([`Meta`]) | the indexer |
//! | [`FILE_TAGS`] (`t`) | an add-wins set of tag ids | the user |
//! | `annotations` | a string, when there is one | the user |
//! | `missing` | `true` while the file is gone from disk; absent otherwise | the indexer |
//!
//! The facts in [`Meta`] are only ever written together, by whichever computer indexed the file
//! last, so one last-writer-wins register loses nothing a field per fact would keep; the fields a
//! user edits stay registers (or set members) of their own, so concurrent edits of different
//! ones still merge. `name` and `extension` are not stored: they follow from the path.
//!
//! [`Meta`] is a version byte followed by the [postcard] encoding of its fields. A value that
//! does not decode (another writer, a newer version) reads as a file without facts, with a
//! warning; it never fails a read.

use std::collections::BTreeSet;

use onefolder_core::{Op, Record, Value};
use serde::{Deserialize, Serialize};

use crate::{FILES, File, FileMeta, set_field, str_field};

/// Field of a file record holding its [`Meta`].
pub const FILE_META: &str = "m";
/// Set field of a file record holding its tag ids.
pub const FILE_TAGS: &str = "t";
/// Field of a file record holding its annotations.
pub const FILE_ANNOTATIONS: &str = "annotations";
/// Field of a file record that format 2 set while a file was gone from some computer's disk;
/// presence is now each computer's own, and this is only ever cleared.
pub const FILE_MISSING: &str = "missing";

/// Version byte of the [`Meta`] encoding without `date_last_indexed`.
const META_VERSION: u8 = 1;
/// Version byte of the [`Meta`] encoding followed by `date_last_indexed`: written only when it
/// is set, so records of indexers that do not report it stay readable by every version.
const META_VERSION_INDEXED: u8 = 2;

/// The facts about a file that only the indexer writes, stored as one value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Location id.
    pub location: String,
    /// Location-relative path, `/` separators, NFC.
    pub path: String,
    /// Size in bytes.
    pub size: i64,
    /// When it was first indexed, ms since epoch.
    pub date_added: i64,
    /// Modification time on disk, ms since epoch.
    pub date_modified: i64,
    /// Creation time on disk, ms since epoch.
    pub date_created: i64,
    /// Content fingerprint.
    pub fingerprint: Option<String>,
    /// Image width in pixels.
    pub width: Option<i64>,
    /// Image height in pixels.
    pub height: Option<i64>,
    /// When an app last read the file's metadata and thumbnail, ms since epoch (OneFolder's
    /// `dateLastIndexed`), if the indexer reports it.
    #[serde(skip)]
    pub date_last_indexed: Option<i64>,
}

impl Meta {
    /// The facts of `meta` for the file at `path` in `location`, first indexed at `date_added`.
    pub fn new(location: &str, path: &str, meta: &FileMeta, date_added: i64) -> Self {
        Meta {
            location: location.to_owned(),
            path: path.to_owned(),
            size: meta.size,
            date_added,
            date_modified: meta.date_modified,
            date_created: meta.date_created,
            fingerprint: meta.fingerprint.clone(),
            width: meta.width,
            height: meta.height,
            date_last_indexed: meta.date_last_indexed,
        }
    }

    /// The stored value: the version byte, then postcard (then, in version 2, the postcard
    /// of `date_last_indexed`).
    pub fn encode(&self) -> Value {
        let mut out = vec![if self.date_last_indexed.is_some() { META_VERSION_INDEXED } else { META_VERSION }];
        out.extend(postcard::to_allocvec(self).expect("postcard encodes plain structs into a Vec"));
        if let Some(indexed) = self.date_last_indexed {
            out.extend(postcard::to_allocvec(&indexed).expect("postcard encodes an i64 into a Vec"));
        }
        Value::Bytes(out)
    }

    /// Reads a stored value; `None` for anything [`Meta::encode`] does not write.
    pub fn decode(value: &Value) -> Option<Self> {
        let Value::Bytes(bytes) = value else { return None };
        let (&version, rest) = bytes.split_first()?;
        let (mut meta, rest) = postcard::take_from_bytes::<Meta>(rest).ok()?;
        match (version, rest) {
            (META_VERSION, []) => Some(meta),
            (META_VERSION_INDEXED, rest) => match postcard::take_from_bytes::<i64>(rest) {
                Ok((indexed, [])) => {
                    meta.date_last_indexed = Some(indexed);
                    Some(meta)
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// The file's meta fields as the indexer reports them.
    pub fn file_meta(&self) -> FileMeta {
        FileMeta {
            size: self.size,
            date_modified: self.date_modified,
            date_created: self.date_created,
            fingerprint: self.fingerprint.clone(),
            width: self.width,
            height: self.height,
            date_last_indexed: self.date_last_indexed,
        }
    }
}

/// The file name and lower-case extension of a location-relative path.
pub fn name_and_extension(path: &str) -> (String, String) {
    let name = path.rsplit('/').next().unwrap_or(path).to_owned();
    let extension = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => ext.to_lowercase(),
        _ => String::new(),
    };
    (name, extension)
}

/// The stored meta of a file record, if it decodes.
pub fn record_meta(r: &Record) -> Option<Meta> {
    r.get(FILE_META).and_then(Meta::decode)
}

/// The ops that create file `id` with `meta` and nothing else (no tags, not missing): what the
/// model writes when the indexer first sees a file.
pub fn create_file_ops(id: &str, meta: &Meta) -> Vec<Op> {
    vec![Op::create(FILES, id), Op::put(FILES, id, FILE_META, meta.encode())]
}

/// A file as views see it: tag ids that are not in `existing_tags` are left out.
pub fn file_from_record(id: String, r: &Record, existing_tags: &BTreeSet<String>) -> File {
    let meta = r.get(FILE_META).and_then(|v| {
        let meta = Meta::decode(v);
        if meta.is_none() {
            tracing::warn!(file = %id, "a file's facts are in a form this version does not read");
        }
        meta
    });
    let meta = meta.unwrap_or_default();
    let (name, extension) = name_and_extension(&meta.path);
    File {
        name,
        extension,
        location: meta.location,
        path: meta.path,
        size: meta.size,
        width: meta.width,
        height: meta.height,
        date_added: meta.date_added,
        date_modified: meta.date_modified,
        date_created: meta.date_created,
        fingerprint: meta.fingerprint,
        date_last_indexed: meta.date_last_indexed,
        annotations: str_field(r, FILE_ANNOTATIONS),
        tags: set_field(r, FILE_TAGS).intersection(existing_tags).cloned().collect(),
        id,
    }
}

/// Whether a record carries the shared `missing` flag that format 2 wrote. Presence is now
/// each computer's own (not in the document); the flag is only ever cleared.
pub(crate) fn is_missing(r: &Record) -> bool {
    r.get(FILE_MISSING).and_then(Value::as_bool).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips_and_rejects_what_it_does_not_write() {
        let m = Meta {
            location: "loc".into(),
            path: "2024/IMG_1.JPG".into(),
            size: 1_234_567,
            date_added: 1_750_000_000_000,
            date_modified: -5,
            date_created: 0,
            fingerprint: Some("b3:1:ab".into()),
            width: Some(4000),
            height: None,
            date_last_indexed: None,
        };
        let v = m.encode();
        assert_eq!(Meta::decode(&v), Some(m.clone()));
        let indexed = Meta { date_last_indexed: Some(1_750_000_000_001), ..m.clone() };
        let Value::Bytes(v2) = indexed.encode() else { unreachable!() };
        assert_eq!(v2[0], META_VERSION_INDEXED);
        assert_eq!(Meta::decode(&Value::Bytes(v2.clone())), Some(indexed), "version 2 carries dateLastIndexed");
        assert_eq!(Meta::decode(&Value::Bytes(v2[..v2.len() - 1].to_vec())), None, "truncated version 2");
        let Value::Bytes(mut bytes) = v else { unreachable!() };
        assert_eq!(Meta::decode(&Value::Bytes(bytes[..bytes.len() - 1].to_vec())), None, "truncated");
        bytes.push(0);
        assert_eq!(Meta::decode(&Value::Bytes(bytes.clone())), None, "trailing bytes");
        bytes[0] = 3;
        assert_eq!(Meta::decode(&Value::Bytes(bytes)), None, "unknown version");
        assert_eq!(Meta::decode(&Value::from("m")), None);
        assert_eq!(Meta::decode(&Value::Bytes(vec![1, 0xff, 0xff, 0xff, 0xff, 0x0f])), None, "a hostile length");
        assert_eq!(name_and_extension("a/b/IMG.JPG"), ("IMG.JPG".into(), "jpg".into()));
        assert_eq!(name_and_extension(".hidden"), (".hidden".into(), String::new()));
    }
}
