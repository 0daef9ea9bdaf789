//! The canonical export (sorted JSON of the whole library) and import (restore).

use std::collections::{BTreeMap, BTreeSet};

use onefolder_core::{Document, Op, Value};
use serde::{Deserialize, Serialize};

use crate::{FILES, LOCATIONS, Library, Result, SEARCHES, TAGS};

/// A file in the export.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportFile {
    /// Location id.
    pub location: String,
    /// Location-relative path (`/`, NFC).
    pub path: String,
    /// File name.
    pub name: String,
    /// Extension.
    pub extension: String,
    /// Size in bytes.
    pub size: i64,
    /// Width.
    pub width: Option<i64>,
    /// Height.
    pub height: Option<i64>,
    /// ms since epoch.
    pub date_added: i64,
    /// ms since epoch.
    pub date_modified: i64,
    /// ms since epoch.
    pub date_created: i64,
    /// Fingerprint.
    pub fingerprint: Option<String>,
    /// Annotations.
    pub annotations: Option<String>,
    /// Vanished from disk.
    pub missing: bool,
    /// Sorted tag ids.
    pub tags: BTreeSet<String>,
}

/// A tag in the export.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportTag {
    /// Name.
    pub name: String,
    /// Effective parent id or null.
    pub parent: Option<String>,
    /// Colour or null.
    pub color: Option<String>,
    /// Order key.
    pub order: String,
    /// Hidden.
    pub is_hidden: bool,
    /// ms since epoch.
    pub date_added: i64,
}

/// A location in the export (never an absolute path).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportLocation {
    /// Name.
    pub name: String,
    /// Library-relative path, when inside the library.
    pub rel_path: Option<String>,
    /// ms since epoch.
    pub date_added: i64,
    /// Excluded sub-folders.
    pub exclusions: BTreeSet<String>,
}

/// A saved search in the export.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportSearch {
    /// Name.
    pub name: String,
    /// Criteria JSON.
    pub criteria: String,
    /// Match any.
    pub match_any: bool,
}

/// The whole library, keyed and sorted by id: converged devices produce byte-identical JSON.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Export {
    /// Files by id.
    pub files: BTreeMap<String, ExportFile>,
    /// Tags by id.
    pub tags: BTreeMap<String, ExportTag>,
    /// Locations by id.
    pub locations: BTreeMap<String, ExportLocation>,
    /// Saved searches by id.
    pub searches: BTreeMap<String, ExportSearch>,
}

impl Export {
    /// Canonical JSON text (pretty, sorted keys, trailing newline).
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("export serializes");
        s.push('\n');
        s
    }

    /// Parses an export.
    pub fn from_json(text: &str) -> Result<Export, serde_json::Error> {
        serde_json::from_str(text)
    }
}

/// How [`Library::import`] treats what is already in the library.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportMode {
    /// Make the library equal to the export: records not in it are deleted, fields not in it
    /// cleared. Written as ordinary edits, so it propagates and peers cannot resurrect the old
    /// state.
    Replace,
    /// Add and overwrite what the export holds; keep everything else.
    Merge,
}

fn opt<T: Into<Value>>(v: Option<T>) -> Value {
    v.map_or(Value::Null, Into::into)
}

impl<D: Document> Library<D> {
    /// The canonical export.
    pub fn export(&self) -> Result<Export> {
        let files = self
            .files()?
            .into_iter()
            .map(|(id, f)| {
                let e = ExportFile {
                    location: f.location,
                    path: f.path,
                    name: f.name,
                    extension: f.extension,
                    size: f.size,
                    width: f.width,
                    height: f.height,
                    date_added: f.date_added,
                    date_modified: f.date_modified,
                    date_created: f.date_created,
                    fingerprint: f.fingerprint,
                    annotations: f.annotations,
                    missing: f.missing,
                    tags: f.tags,
                };
                (id, e)
            })
            .collect();
        let tags = self
            .tags()?
            .into_iter()
            .map(|(id, t)| {
                let e = ExportTag {
                    name: t.name,
                    parent: t.parent,
                    color: t.color,
                    order: t.order,
                    is_hidden: t.is_hidden,
                    date_added: t.date_added,
                };
                (id, e)
            })
            .collect();
        let locations = self
            .locations()?
            .into_iter()
            .map(|(id, l)| {
                let e = ExportLocation {
                    name: l.name,
                    rel_path: l.rel_path,
                    date_added: l.date_added,
                    exclusions: l.exclusions,
                };
                (id, e)
            })
            .collect();
        let searches = self
            .searches()?
            .into_iter()
            .map(|(id, s)| (id, ExportSearch { name: s.name, criteria: s.criteria, match_any: s.match_any }))
            .collect();
        Ok(Export { files, tags, locations, searches })
    }

    /// Imports an export (a backup, or a library moved to another engine) in one transaction.
    /// Only differences are written.
    pub fn import(&self, export: &Export, mode: ImportMode) -> Result<()> {
        let current = self.read(|e| {
            [FILES, TAGS, LOCATIONS, SEARCHES].map(|c| e.collection(c)).into_iter().collect::<Result<Vec<_>, _>>()
        })?;
        let mut ops = Vec::new();
        let mut wanted: BTreeMap<&str, BTreeMap<String, BTreeMap<&str, Value>>> = BTreeMap::new();
        let sets: BTreeMap<&str, BTreeMap<String, (&str, &BTreeSet<String>)>> = {
            let mut s: BTreeMap<&str, BTreeMap<String, (&str, &BTreeSet<String>)>> = BTreeMap::new();
            for (id, f) in &export.files {
                s.entry(FILES).or_default().insert(id.clone(), ("tags", &f.tags));
            }
            for (id, l) in &export.locations {
                s.entry(LOCATIONS).or_default().insert(id.clone(), ("exclusions", &l.exclusions));
            }
            s
        };
        for (id, f) in &export.files {
            wanted.entry(FILES).or_default().insert(
                id.clone(),
                BTreeMap::from([
                    ("location", f.location.clone().into()),
                    ("path", f.path.clone().into()),
                    ("name", f.name.clone().into()),
                    ("extension", f.extension.clone().into()),
                    ("size", f.size.into()),
                    ("width", opt(f.width)),
                    ("height", opt(f.height)),
                    ("dateAdded", f.date_added.into()),
                    ("dateModified", f.date_modified.into()),
                    ("dateCreated", f.date_created.into()),
                    ("fingerprint", opt(f.fingerprint.clone())),
                    ("annotations", opt(f.annotations.clone())),
                    ("missing", f.missing.into()),
                ]),
            );
        }
        for (id, t) in &export.tags {
            wanted.entry(TAGS).or_default().insert(
                id.clone(),
                BTreeMap::from([
                    ("name", t.name.clone().into()),
                    ("parent", opt(t.parent.clone())),
                    ("color", opt(t.color.clone())),
                    ("order", t.order.clone().into()),
                    ("isHidden", t.is_hidden.into()),
                    ("dateAdded", t.date_added.into()),
                ]),
            );
        }
        for (id, l) in &export.locations {
            wanted.entry(LOCATIONS).or_default().insert(
                id.clone(),
                BTreeMap::from([
                    ("name", l.name.clone().into()),
                    ("relPath", opt(l.rel_path.clone())),
                    ("dateAdded", l.date_added.into()),
                ]),
            );
        }
        for (id, s) in &export.searches {
            wanted.entry(SEARCHES).or_default().insert(
                id.clone(),
                BTreeMap::from([
                    ("name", s.name.clone().into()),
                    ("criteria", s.criteria.clone().into()),
                    ("matchAny", s.match_any.into()),
                ]),
            );
        }
        for (coll, existing) in [FILES, TAGS, LOCATIONS, SEARCHES].into_iter().zip(current.iter()) {
            let want = wanted.remove(coll).unwrap_or_default();
            let want_sets = sets.get(coll);
            if mode == ImportMode::Replace {
                ops.extend(existing.keys().filter(|id| !want.contains_key(*id)).map(|id| Op::delete(coll, id)));
            }
            for (id, fields) in want {
                let cur = existing.get(&id);
                if cur.is_none() {
                    if mode == ImportMode::Replace {
                        // A record re-created by a restore may still hold field writes and set
                        // members that raced its delete (invisible while it was deleted): a
                        // delete first removes them, so the record is exactly the backup's.
                        ops.push(Op::delete(coll, &id));
                    }
                    ops.push(Op::create(coll, &id));
                }
                for (field, value) in &fields {
                    let have = cur.and_then(|r| r.get(*field));
                    match (value, have) {
                        (Value::Null, None) => {}
                        (Value::Null, Some(_)) => ops.push(Op::clear(coll, &id, field)),
                        (v, h) if h == Some(v) => {}
                        (v, _) => ops.push(Op::put(coll, &id, field, v.clone())),
                    }
                }
                if let Some((field, members)) = want_sets.and_then(|s| s.get(&id)) {
                    let have = cur.map(|r| crate::set_field(r, field)).unwrap_or_default();
                    ops.extend(members.difference(&have).map(|m| Op::set_add(coll, &id, field, m)));
                    if mode == ImportMode::Replace {
                        ops.extend(have.difference(members).map(|m| Op::set_remove(coll, &id, field, m)));
                    }
                }
                if mode == ImportMode::Replace {
                    if let Some(r) = cur {
                        for field in r.keys() {
                            let is_set = want_sets.and_then(|s| s.get(&id)).is_some_and(|(f, _)| f == field);
                            if !fields.contains_key(field.as_str()) && !is_set {
                                ops.push(Op::clear(coll, &id, field));
                            }
                        }
                    }
                }
            }
        }
        self.write(&ops)
    }
}
