//! Reading the database of OneFolder's JavaScript prototype (for `onefolder-sync
//! import-prototype`).
//!
//! The prototype kept the whole library in one Yjs document and wrote it, whole, as
//! `<library>/onefolder_tags/database/<sessionId>/database.yjs.db`: a Yjs v1 update
//! (`Y.encodeStateAsUpdate`) of a `Y.Doc` with the root maps `files`, `tags`, `locations` and
//! `searches`, each record **one whole JSON value** under its id. Each session merged the
//! others' files into its own document with `Y.applyUpdate`; [`PrototypeReader`] does the
//! same: every update is applied to one document, then the four maps are read as JSON.
//!
//! The bytes are foreign, so they get the guards of the engine's own remote bytes (see the
//! crate docs): a size cap ([`MAX_PROTOTYPE_BYTES`]), the structural pre-check, `decode_v1`
//! under `catch_unwind`, and the re-encoding check. An update is applied to a scratch
//! document first, so that one which yrs rejects half-way leaves the merged document as it
//! was. Nothing here panics on bad input; every failure is a [`PrototypeError`].

use std::panic::{AssertUnwindSafe, catch_unwind};

use serde_json::{Map as JsonMap, Number as JsonNumber, Value as Json};
use yrs::types::ToJson;
use yrs::{Any, Doc, Map, MapRef, Number, Transact, Update};

use crate::{decode_update, panic_message, precheck};

/// The root maps of the prototype's document.
pub const COLLECTIONS: [&str; 4] = ["files", "tags", "locations", "searches"];

/// Largest database file read: 256 MiB, four times the prototype's document of the largest
/// library benchmarked (62.9 MB for 100 000 files).
pub const MAX_PROTOTYPE_BYTES: u64 = 256 * 1024 * 1024;

/// Why a prototype database could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrototypeError {
    /// Larger than [`MAX_PROTOTYPE_BYTES`].
    #[error("{bytes} bytes is more than a prototype database can be ({max} bytes)")]
    TooLarge {
        /// Its size.
        bytes: u64,
        /// The cap.
        max: u64,
    },
    /// Not a Yjs v1 update, or one yrs rejects.
    #[error("not a Yjs update: {0}")]
    Corrupt(String),
    /// A valid Yjs update that holds none of the prototype's root maps.
    #[error(
        "a Yjs update, but not of a OneFolder database (it holds none of the maps files, tags, locations, searches)"
    )]
    Foreign,
}

/// The records of the prototype's four maps, as JSON, by id (the map keys).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PrototypeDoc {
    /// `files`: FileDTOs.
    pub files: JsonMap<String, Json>,
    /// `tags`: TagDTOs.
    pub tags: JsonMap<String, Json>,
    /// `locations`: LocationDTOs.
    pub locations: JsonMap<String, Json>,
    /// `searches`: FileSearchDTOs.
    pub searches: JsonMap<String, Json>,
}

/// Merges prototype database files into one document, as the prototype did, and reads it.
pub struct PrototypeReader {
    doc: Doc,
    maps: Vec<MapRef>,
    updates: usize,
}

impl Default for PrototypeReader {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for PrototypeReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrototypeReader").field("updates", &self.updates).finish_non_exhaustive()
    }
}

/// A document with the four root maps typed as maps (a root an update creates is untyped).
fn new_doc() -> (Doc, Vec<MapRef>) {
    let doc = Doc::new();
    let maps = COLLECTIONS.iter().map(|name| doc.get_or_insert_map(*name)).collect();
    (doc, maps)
}

/// Applies a decoded update in one transaction; yrs' failures and panics become `Corrupt`.
fn apply(doc: &Doc, update: Update) -> Result<(), PrototypeError> {
    let applied = catch_unwind(AssertUnwindSafe(|| doc.transact_mut().apply_update(update).map_err(|e| e.to_string())));
    match applied {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(PrototypeError::Corrupt(e)),
        Err(panic) => Err(PrototypeError::Corrupt(format!("yrs panicked: {}", panic_message(&panic)))),
    }
}

impl PrototypeReader {
    /// An empty document.
    pub fn new() -> Self {
        let (doc, maps) = new_doc();
        Self { doc, maps, updates: 0 }
    }

    /// How many updates were merged.
    pub fn updates(&self) -> usize {
        self.updates
    }

    /// Checks one database file's bytes and merges them into the document. On an error the
    /// document is unchanged.
    pub fn apply(&mut self, bytes: &[u8]) -> Result<(), PrototypeError> {
        if bytes.len() as u64 > MAX_PROTOTYPE_BYTES {
            return Err(PrototypeError::TooLarge { bytes: bytes.len() as u64, max: MAX_PROTOTYPE_BYTES });
        }
        let roots = precheck::root_names_v1(bytes).map_err(|e| PrototypeError::Corrupt(e.to_string()))?;
        if !roots.iter().any(|r| COLLECTIONS.iter().any(|c| c.as_bytes() == *r)) {
            return Err(PrototypeError::Foreign);
        }
        let decode =
            || decode_update(bytes, "prototype database", true).map_err(|e| PrototypeError::Corrupt(e.to_string()));
        // On a scratch document first: an update yrs rejects half-way must not leave a part
        // of itself in the merged document.
        let (scratch, _) = new_doc();
        apply(&scratch, decode()?)?;
        drop(scratch);
        apply(&self.doc, decode()?)?;
        self.updates += 1;
        Ok(())
    }

    /// The records of the merged document.
    pub fn read(&self) -> PrototypeDoc {
        let txn = self.doc.transact();
        let mut out = PrototypeDoc::default();
        for (map, target) in
            self.maps.iter().zip([&mut out.files, &mut out.tags, &mut out.locations, &mut out.searches])
        {
            for (id, value) in map.iter(&txn) {
                target.insert(id.to_owned(), to_json(&value.to_json(&txn)));
            }
        }
        out
    }
}

/// A Yjs value as JSON: integral numbers as integers, `undefined` as `null`, binary as an
/// array of bytes.
pub fn to_json(any: &Any) -> Json {
    match any {
        Any::Null | Any::Undefined => Json::Null,
        Any::Bool(b) => Json::Bool(*b),
        Any::Number(Number::Int(i)) => Json::from(*i),
        Any::Number(Number::Float(f)) => {
            if f.fract() == 0.0 && f.abs() <= Number::F64_MAX_SAFE_INTEGER {
                Json::from(*f as i64)
            } else {
                JsonNumber::from_f64(*f).map_or(Json::Null, Json::Number)
            }
        }
        Any::String(s) => Json::String(s.to_string()),
        Any::Buffer(b) => Json::Array(b.iter().map(|&x| Json::from(x)).collect()),
        Any::Array(items) => Json::Array(items.iter().map(to_json).collect()),
        Any::Map(m) => Json::Object(m.iter().map(|(k, v)| (k.clone(), to_json(v))).collect()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use yrs::updates::decoder::Decode;
    use yrs::{ReadTxn, StateVector, WriteTxn};

    use super::*;

    fn record(fields: &[(&str, Any)]) -> Any {
        Any::Map(Arc::new(fields.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect::<HashMap<_, _>>()))
    }

    /// A session's database: `edit` run on a document that has applied `base` first.
    fn session(client: u64, base: Option<&[u8]>, edit: impl FnOnce(&mut yrs::TransactionMut)) -> Vec<u8> {
        let doc = Doc::with_client_id(client);
        if let Some(base) = base {
            doc.transact_mut().apply_update(Update::decode_v1(base).unwrap()).unwrap();
        }
        {
            let mut txn = doc.transact_mut();
            edit(&mut txn);
        }
        doc.transact().encode_state_as_update_v1(&StateVector::default())
    }

    fn put(txn: &mut yrs::TransactionMut, collection: &str, id: &str, value: Any) {
        let map = txn.get_or_insert_map(collection);
        map.insert(txn, id, value);
    }

    #[test]
    fn sessions_merge_into_one_document_read_as_json() {
        let a = session(1, None, |txn| {
            put(
                txn,
                "tags",
                "t1",
                record(&[("id", "t1".into()), ("name", "Cats".into()), ("subTags", Any::from(Vec::<Any>::new()))]),
            );
            put(
                txn,
                "files",
                "f1",
                record(&[("size", Any::Number(Number::Int(12))), ("width", Any::Number(Number::Float(3.0)))]),
            );
        });
        let b = session(2, Some(&a), |txn| {
            put(txn, "tags", "t1", record(&[("id", "t1".into()), ("name", "Kitties".into())]));
            put(txn, "searches", "s1", record(&[("ratio", Any::Number(Number::Float(0.5)))]));
        });
        let mut reader = PrototypeReader::new();
        reader.apply(&a).unwrap();
        reader.apply(&b).unwrap();
        // Applying a session twice changes nothing.
        reader.apply(&a).unwrap();
        let doc = reader.read();
        assert_eq!(doc.tags["t1"]["name"], "Kitties", "the later edit wins");
        assert_eq!(doc.files["f1"]["size"], 12);
        assert_eq!(doc.files["f1"]["width"], 3);
        assert_eq!(doc.searches["s1"]["ratio"], 0.5);
        assert!(doc.locations.is_empty());
        assert_eq!(reader.updates(), 3);
    }

    #[test]
    fn bad_bytes_are_errors_and_change_nothing() {
        let good = session(7, None, |txn| put(txn, "files", "f", record(&[("name", "a.jpg".into())])));
        let mut reader = PrototypeReader::new();
        reader.apply(&good).unwrap();
        let before = reader.read();
        for bad in [&b""[..], b"SQLite format 3\0", &[0xff, 0xff, 0xff, 0x7f], &good[..good.len() / 2]] {
            let e = reader.apply(bad).unwrap_err();
            assert!(matches!(e, PrototypeError::Corrupt(_)), "{bad:?}: {e:?}");
        }
        let other = session(8, None, |txn| put(txn, "notes", "n", "hello".into()));
        assert!(matches!(reader.apply(&other), Err(PrototypeError::Foreign)));
        let empty = Doc::new().transact().encode_state_as_update_v1(&StateVector::default());
        assert!(matches!(reader.apply(&empty), Err(PrototypeError::Foreign)));
        assert_eq!(reader.read(), before);
        assert_eq!(reader.updates(), 1);
    }
}
