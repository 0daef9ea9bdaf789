//! The canonical export (sorted JSON of the whole library) and import (restore).

use std::collections::{BTreeMap, BTreeSet};

use onefolder_core::{Document, Op, Value};
use serde::{Deserialize, Serialize};

use crate::{FILES, LOCATIONS, Library, Result, SEARCHES, TAGS, ids, layout};

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
    /// ms since epoch, when the indexer reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_last_indexed: Option<i64>,
    /// Annotations.
    pub annotations: Option<String>,
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
    /// Implied tag ids.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub implied: BTreeSet<String>,
    /// Assigning it assigns the implied tags.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub copy_implied: bool,
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
    /// Position in the app's list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<i64>,
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
    /// Position in the app's list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<i64>,
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

    /// The same library with the ids of format 1 (32 hex digits) replaced by the ids this
    /// version computes for the same location, tag and file (16 characters; see [`ids`]), so
    /// that an export or backup made by a format-1 version imports as if indexed now: the
    /// indexer finds its files, `tag create` finds its tags. References follow: a file's
    /// location and tags, a tag's parent, tag ids in saved-search criteria. Ids of the
    /// current form, and random ids, are kept; so is an old id whose new one is taken.
    pub fn with_current_ids(&self) -> Export {
        let legacy = |id: &str| id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !self.files.keys().chain(self.tags.keys()).chain(self.locations.keys()).any(|id| legacy(id)) {
            return self.clone();
        }
        let mut out = Export { searches: self.searches.clone(), ..Export::default() };
        // Locations inside the library have an id computed from their path.
        let mut location_ids: BTreeMap<&str, String> = BTreeMap::new();
        for (id, l) in &self.locations {
            let new = match &l.rel_path {
                Some(rel) if legacy(id) => ids::library_location_id(rel).unwrap_or_else(|_| id.clone()),
                _ => id.clone(),
            };
            let new = if out.locations.contains_key(&new) { id.clone() } else { new };
            location_ids.insert(id, new.clone());
            out.locations.insert(new, l.clone());
        }
        // Tags, parents first: an id is computed from the parent's new id and the name.
        let mut tag_ids: BTreeMap<&str, String> = BTreeMap::new();
        let mut pending: Vec<&str> = self.tags.keys().map(String::as_str).collect();
        while !pending.is_empty() {
            let before = pending.len();
            pending.retain(|&id| {
                let tag = &self.tags[id];
                let parent = match tag.parent.as_deref() {
                    None => None,
                    Some(p) if !self.tags.contains_key(p) => None,
                    Some(p) => match tag_ids.get(p) {
                        Some(new) => Some(new.clone()),
                        None => return true,
                    },
                };
                let mut new = if legacy(id) { ids::tag_id(parent.as_deref(), &tag.name) } else { id.to_owned() };
                if out.tags.contains_key(&new) {
                    new = id.to_owned();
                }
                out.tags.insert(new.clone(), ExportTag { parent, ..tag.clone() });
                tag_ids.insert(id, new);
                false
            });
            if pending.len() == before {
                // A parent cycle (an export never has one): keep the rest as they are.
                for id in pending.drain(..) {
                    tag_ids.insert(id, id.to_owned());
                    out.tags.insert(id.to_owned(), self.tags[id].clone());
                }
            }
        }
        for (id, f) in &self.files {
            let location = location_ids.get(f.location.as_str()).cloned().unwrap_or_else(|| f.location.clone());
            let mut new =
                if legacy(id) { ids::file_id(&location, &f.path).unwrap_or_else(|_| id.clone()) } else { id.clone() };
            if out.files.contains_key(&new) {
                new = id.clone();
            }
            let tags = f.tags.iter().map(|t| tag_ids.get(t.as_str()).cloned().unwrap_or_else(|| t.clone())).collect();
            out.files.insert(new, ExportFile { location, tags, ..f.clone() });
        }
        for search in out.searches.values_mut() {
            for (old, new) in &tag_ids {
                if old != new {
                    search.criteria = search.criteria.replace(&format!("\"{old}\""), &format!("\"{new}\""));
                }
            }
        }
        out
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

/// The stored facts of an exported file (its name and extension follow from the path).
fn file_meta(f: &ExportFile) -> layout::Meta {
    layout::Meta {
        location: f.location.clone(),
        path: f.path.clone(),
        size: f.size,
        date_added: f.date_added,
        date_modified: f.date_modified,
        date_created: f.date_created,
        fingerprint: f.fingerprint.clone(),
        width: f.width,
        height: f.height,
        date_last_indexed: f.date_last_indexed,
    }
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
                    date_last_indexed: f.date_last_indexed,
                    annotations: f.annotations,
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
                    implied: t.implied,
                    copy_implied: t.copy_implied,
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
                    index: l.index,
                };
                (id, e)
            })
            .collect();
        let searches = self
            .searches()?
            .into_iter()
            .map(|(id, s)| {
                (id, ExportSearch { name: s.name, criteria: s.criteria, match_any: s.match_any, index: s.index })
            })
            .collect();
        Ok(Export { files, tags, locations, searches })
    }

    /// Imports an export (a backup, or a library moved to another engine) in one transaction.
    /// Only differences are written. Ids of a format-1 export are recomputed first
    /// ([`Export::with_current_ids`]).
    pub fn import(&self, export: &Export, mode: ImportMode) -> Result<()> {
        let export = &export.with_current_ids();
        let current = self.read(|e| {
            [FILES, TAGS, LOCATIONS, SEARCHES].map(|c| e.collection(c)).into_iter().collect::<Result<Vec<_>, _>>()
        })?;
        let mut ops = Vec::new();
        let mut wanted: BTreeMap<&str, BTreeMap<String, BTreeMap<&str, Value>>> = BTreeMap::new();
        let sets: BTreeMap<&str, BTreeMap<String, (&str, &BTreeSet<String>)>> = {
            let mut s: BTreeMap<&str, BTreeMap<String, (&str, &BTreeSet<String>)>> = BTreeMap::new();
            for (id, f) in &export.files {
                s.entry(FILES).or_default().insert(id.clone(), (layout::FILE_TAGS, &f.tags));
            }
            for (id, l) in &export.locations {
                s.entry(LOCATIONS).or_default().insert(id.clone(), ("exclusions", &l.exclusions));
            }
            for (id, t) in &export.tags {
                s.entry(TAGS).or_default().insert(id.clone(), (crate::TAG_IMPLIED, &t.implied));
            }
            s
        };
        for (id, f) in &export.files {
            wanted.entry(FILES).or_default().insert(
                id.clone(),
                BTreeMap::from([
                    (layout::FILE_META, file_meta(f).encode()),
                    (layout::FILE_ANNOTATIONS, opt(f.annotations.clone())),
                    // Presence is each computer's own: a shared flag of format 2 is cleared.
                    (layout::FILE_MISSING, Value::Null),
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
                    (crate::TAG_COPY_IMPLIED, if t.copy_implied { true.into() } else { Value::Null }),
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
                    ("index", opt(l.index)),
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
                    ("index", opt(s.index)),
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use onefolder_core::Engine;

    use super::*;
    use crate::FileMeta;

    /// An export as a format-1 version wrote it: 32-hex-digit ids, a tag under another, a file
    /// in a library location, a search naming a tag.
    const FORMAT_1: &str = r#"{
      "files": {"0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f": {"location": "1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a",
        "path": "2024/cat.jpg", "name": "cat.jpg", "extension": "jpg", "size": 10, "width": null,
        "height": null, "dateAdded": 5, "dateModified": 6, "dateCreated": 7, "fingerprint": null,
        "annotations": "on the sofa", "missing": false,
        "tags": ["cccccccccccccccccccccccccccccccc", "dddddddddddddddddddddddddddddddd"]}},
      "tags": {
        "cccccccccccccccccccccccccccccccc": {"name": "Animals", "parent": null, "color": null, "order": "80", "isHidden": false, "dateAdded": 1},
        "dddddddddddddddddddddddddddddddd": {"name": "Cats", "parent": "cccccccccccccccccccccccccccccccc", "color": "red", "order": "80", "isHidden": false, "dateAdded": 2}},
      "locations": {"1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a": {"name": "Pictures", "relPath": "Pictures", "dateAdded": 3, "exclusions": []}},
      "searches": {"s1": {"name": "cats", "criteria": "[{\"key\":\"tags\",\"value\":[\"dddddddddddddddddddddddddddddddd\"]}]", "matchAny": false}}
    }"#;

    #[test]
    fn a_format_1_export_imports_with_the_ids_this_version_computes() {
        let old = Export::from_json(FORMAT_1).unwrap();
        let lib = Library::new(Mutex::new(Box::new(onefolder_engine_yrs::YrsEngine::new()) as Box<dyn Engine>));
        lib.import(&old, ImportMode::Replace).unwrap();
        let location = ids::library_location_id("Pictures").unwrap();
        assert_eq!(lib.locations().unwrap().keys().collect::<Vec<_>>(), [&location]);
        // The indexer and `tag create` find what the import wrote.
        let animals = lib.create_tag(None, "animals", None).unwrap();
        let cats = lib.create_tag_path("Animals/Cats", None).unwrap();
        assert_eq!(lib.tags().unwrap().len(), 2);
        assert_eq!(lib.tags().unwrap()[&cats].parent.as_deref(), Some(animals.as_str()));
        let meta = FileMeta { size: 10, date_modified: 6, date_created: 7, ..FileMeta::default() };
        let file = lib.upsert_file(&location, "2024/cat.jpg", &meta).unwrap();
        let f = lib.file(&file).unwrap().expect("the imported file");
        assert_eq!(f.tags, [animals.clone(), cats.clone()].into());
        assert_eq!((f.date_added, f.annotations.as_deref(), f.name.as_str()), (5, Some("on the sofa"), "cat.jpg"));
        assert_eq!(lib.files().unwrap().len(), 1);
        let search = lib.searches().unwrap().remove("s1").unwrap();
        assert!(search.criteria.contains(&cats), "{}", search.criteria);
        // A current export is kept as it is, and importing it again changes nothing.
        let now = lib.export().unwrap();
        assert_eq!(now.with_current_ids(), now);
        let before = lib.doc().read(|e| e.version());
        lib.import(&now, ImportMode::Replace).unwrap();
        assert_eq!(lib.doc().read(|e| e.version()), before);
    }
}
