//! Edits and queries in the shape OneFolder's app makes them (its `DataStorage` interface):
//! ids the app chose, a tag's whole list of children, whole-file saves, searches with an order.
//!
//! The rules stay the model's: a saved child list becomes tree moves and order keys (never an
//! overwritten array), a saved tag set becomes set additions and removals relative to what the
//! app last read (so a concurrent assignment on another computer survives), and file ids stay
//! derived from location and path (so two computers indexing one folder agree).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use fractional_index::FractionalIndex;
use onefolder_core::{Document, Op, Value};

use crate::criteria::{self, Criterion, Kind};
use crate::{
    FILES, File, FileMeta, LOCATIONS, Library, ModelError, Result, SEARCHES, TAG_COPY_IMPLIED, TAG_IMPLIED, TAGS, ids,
    layout, tree,
};

/// A file as the app saves it: where it is, what the indexer knows, and the user's fields.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FileSave {
    /// The id the app knows the file by, if any: a record with this id is the file (and is
    /// moved when `location` / `path` differ). Otherwise the file is found or created by
    /// location and path.
    pub id: Option<String>,
    /// Location id.
    pub location: String,
    /// Location-relative path.
    pub path: String,
    /// The indexer's facts (a `None` fingerprint keeps the stored one).
    pub meta: FileMeta,
    /// `dateAdded` for a file that is new to the library (now when absent); an existing
    /// file keeps its own.
    pub date_added: Option<i64>,
    /// The tag ids the file should carry.
    pub tags: BTreeSet<String>,
    /// The tag ids the app read for this file before the user changed them. When given, only
    /// the difference between `base` and `tags` is written, so tags another computer assigned
    /// meanwhile stay; when absent, `tags` is compared with the library's current set.
    pub base: Option<BTreeSet<String>>,
    /// Annotations (`None` clears them).
    pub annotations: Option<String>,
}

/// How [`Library::sorted`] orders files: by one OneFolder file field, then by id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileOrder {
    /// `id`.
    Id,
    /// `name`.
    Name,
    /// `extension`.
    Extension,
    /// `relativePath`.
    RelativePath,
    /// `absolutePath`: the location's path on this computer, then the relative path.
    AbsolutePath,
    /// `locationId`.
    Location,
    /// `size`.
    Size,
    /// `width`.
    Width,
    /// `height`.
    Height,
    /// `dateAdded`.
    DateAdded,
    /// `dateModified`.
    DateModified,
    /// `dateCreated`.
    DateCreated,
    /// `dateLastIndexed` (falls back to `dateAdded` when unknown).
    DateLastIndexed,
}

impl FileOrder {
    /// The order for a OneFolder `FileDTO` key; `None` for keys that are not fields of a file.
    pub fn of(key: &str) -> Option<FileOrder> {
        Some(match key {
            "id" => FileOrder::Id,
            "name" => FileOrder::Name,
            "extension" => FileOrder::Extension,
            "relativePath" => FileOrder::RelativePath,
            "absolutePath" => FileOrder::AbsolutePath,
            "locationId" => FileOrder::Location,
            "size" => FileOrder::Size,
            "width" => FileOrder::Width,
            "height" => FileOrder::Height,
            "dateAdded" => FileOrder::DateAdded,
            "dateModified" => FileOrder::DateModified,
            "dateCreated" => FileOrder::DateCreated,
            "dateLastIndexed" => FileOrder::DateLastIndexed,
            _ => return None,
        })
    }

    fn compare(self, a: &File, b: &File, prefixes: &BTreeMap<String, String>) -> Ordering {
        let prefix = |f: &File| prefixes.get(&f.location).map_or("", String::as_str);
        let by = match self {
            FileOrder::Id => Ordering::Equal,
            FileOrder::Name => a.name.cmp(&b.name),
            FileOrder::Extension => a.extension.cmp(&b.extension),
            FileOrder::RelativePath => a.path.cmp(&b.path),
            FileOrder::AbsolutePath => (prefix(a), &a.path).cmp(&(prefix(b), &b.path)),
            FileOrder::Location => a.location.cmp(&b.location),
            FileOrder::Size => a.size.cmp(&b.size),
            FileOrder::Width => a.width.unwrap_or(0).cmp(&b.width.unwrap_or(0)),
            FileOrder::Height => a.height.unwrap_or(0).cmp(&b.height.unwrap_or(0)),
            FileOrder::DateAdded => a.date_added.cmp(&b.date_added),
            FileOrder::DateModified => a.date_modified.cmp(&b.date_modified),
            FileOrder::DateCreated => a.date_created.cmp(&b.date_created),
            FileOrder::DateLastIndexed => {
                a.date_last_indexed.unwrap_or(a.date_added).cmp(&b.date_last_indexed.unwrap_or(b.date_added))
            }
        };
        by.then_with(|| a.id.cmp(&b.id))
    }
}

/// Sorts files by `order` (ties by id), descending when `descending`. `prefixes` maps a
/// location id to its path on this computer (for [`FileOrder::AbsolutePath`]).
pub fn sort_files(files: &mut [File], order: FileOrder, descending: bool, prefixes: &BTreeMap<String, String>) {
    files.sort_unstable_by(|a, b| {
        let o = order.compare(a, b, prefixes);
        if descending { o.reverse() } else { o }
    });
}

/// The tag ids a criterion list can be answered from the tag index with: a single tag
/// criterion that keeps only files carrying one of some tags.
fn indexed_tags(criteria: &[Criterion], tags: &BTreeMap<String, crate::Tag>) -> Option<BTreeSet<String>> {
    let [c] = criteria else { return None };
    if c.kind().ok()? != Kind::Tags {
        return None;
    }
    let ids: Vec<String> = match &c.value {
        serde_json::Value::Array(items) => {
            items.iter().map(|v| v.as_str().map(str::to_owned)).collect::<Option<_>>()?
        }
        serde_json::Value::String(s) => vec![s.clone()],
        _ => return None,
    };
    if ids.is_empty() {
        return None;
    }
    match c.operator.as_str() {
        "contains" => Some(ids.into_iter().collect()),
        "containsRecursively" => Some(ids.iter().flat_map(|t| tree::subtree(tags, t)).collect()),
        _ => None,
    }
}

impl<D: Document> Library<D> {
    /// The files matching `criteria` (all of them, or with `match_any` any), in id order.
    /// `prefixes` maps a location id to the prefix of its files' `absolutePath` (and the
    /// `path` criteria key). A single "carries one of these tags" criterion reads only the
    /// matching records (the tag index).
    pub fn search(
        &self,
        criteria: &[Criterion],
        match_any: bool,
        prefixes: &BTreeMap<String, String>,
    ) -> Result<Vec<File>> {
        let tags = self.tag_map()?;
        let files: Vec<File> = match indexed_tags(criteria, &tags) {
            Some(wanted) => {
                let existing: BTreeSet<String> = tags.keys().cloned().collect();
                self.read(|e| {
                    let mut ids = BTreeSet::new();
                    for t in wanted.iter().filter(|t| existing.contains(*t)) {
                        ids.extend(e.ids_with_member(FILES, layout::FILE_TAGS, t)?);
                    }
                    crate::read_files(e, ids, &existing)
                })?
            }
            None => self.files()?.into_values().collect(),
        };
        let ctx = criteria::Ctx { tags: &tags, prefixes };
        let keep = criteria::filter(criteria, match_any, &files, &ctx).map_err(ModelError::InvalidName)?;
        let keep: BTreeSet<&str> = keep.into_iter().map(|f| f.id.as_str()).collect();
        let kept = files.iter().filter(|f| keep.contains(f.id.as_str())).cloned().collect();
        Ok(kept)
    }

    // ---------------------------------------------------------------- tags

    /// Creates a tag with an id the app chose, under `parent` (the root when `None`) after its
    /// last sibling. Fails with [`ModelError::IdTaken`] when the id is in use and with
    /// [`ModelError::NameTaken`] when a sibling has the name.
    pub fn create_tag_with_id(
        &self,
        id: &str,
        parent: Option<&str>,
        name: &str,
        color: Option<&str>,
        date_added: Option<i64>,
    ) -> Result<()> {
        if id.is_empty() {
            return Err(ModelError::InvalidName("a tag id cannot be empty".into()));
        }
        let name = ids::clean_tag_name(name)?;
        let tags = self.tag_map()?;
        if tags.contains_key(id) {
            return Err(ModelError::IdTaken(id.to_owned()));
        }
        if let Some(p) = parent {
            if !tags.contains_key(p) {
                return Err(ModelError::UnknownTag(p.to_owned()));
            }
        }
        crate::name_free(&tags, parent, &name, id)?;
        let mut ops = vec![
            Op::create(TAGS, id),
            Op::put(TAGS, id, "name", name.as_str()),
            Op::put(TAGS, id, "parent", Value::from(parent.map(str::to_owned))),
            Op::put(TAGS, id, "order", self.order_after_last(&tags, parent)),
            Op::put(TAGS, id, "dateAdded", date_added.unwrap_or_else(|| self.doc.now_ms())),
        ];
        if let Some(c) = color.filter(|c| !c.is_empty()) {
            ops.push(Op::put(TAGS, id, "color", c));
        }
        self.write(&ops)
    }

    /// Makes `children` the first children of `parent` (the root when `None`), in that order:
    /// a listed tag that is elsewhere moves here, order keys change only where the order does.
    /// Tags under `parent` that are not listed keep their place after the listed ones (a move
    /// away happens when the new parent's list is saved, so saving the old parent first loses
    /// nothing). Unknown ids are skipped.
    pub fn arrange_children(&self, parent: Option<&str>, children: &[String]) -> Result<()> {
        let tags = self.tag_map()?;
        if let Some(p) = parent {
            if !tags.contains_key(p) {
                return Err(ModelError::UnknownTag(p.to_owned()));
            }
        }
        let mut listed: Vec<&str> = Vec::new();
        for c in children {
            if tags.contains_key(c) && !listed.contains(&c.as_str()) && Some(c.as_str()) != parent {
                listed.push(c);
            }
        }
        let mut ops = Vec::new();
        for &c in &listed {
            if tags[c].parent.as_deref() == parent {
                continue;
            }
            if let Some(p) = parent {
                if tree::subtree(&tags, c).contains(p) {
                    return Err(ModelError::Cycle(tags[c].name.clone()));
                }
            }
            crate::name_free(&tags, parent, &tags[c].name, c)?;
            ops.push(Op::put(TAGS, c, "parent", Value::from(parent.map(str::to_owned))));
        }
        // The wanted sequence: the listed tags, then the others already here in their order.
        let key = |id: &str| FractionalIndex::from_string(&tags[id].order).ok();
        let mut rest: Vec<&crate::Tag> =
            tags.values().filter(|t| t.parent.as_deref() == parent && !listed.contains(&t.id.as_str())).collect();
        rest.sort_by(|a, b| (key(&a.id), &a.id).cmp(&(key(&b.id), &b.id)));
        let wanted: Vec<&str> = listed.iter().copied().chain(rest.iter().map(|t| t.id.as_str())).collect();
        let mut prev: Option<FractionalIndex> = None;
        for (i, &id) in wanted.iter().enumerate() {
            let have = key(id);
            let fits = match (&have, &prev) {
                (Some(h), Some(p)) => h > p,
                (Some(_), None) => true,
                (None, _) => false,
            };
            let next = if fits {
                have.expect("fits only with a key")
            } else {
                // Between the previous key and the next tag's key when that one is still in
                // order; else just after the previous.
                let upper = wanted.get(i + 1).and_then(|n| key(n)).filter(|n| prev.as_ref().is_none_or(|p| n > p));
                let k = match (&prev, &upper) {
                    (p, Some(u)) => FractionalIndex::new(p.as_ref(), Some(u)),
                    (Some(p), None) => Some(FractionalIndex::new_after(p)),
                    (None, None) => Some(FractionalIndex::default()),
                }
                .expect("prev < upper by construction");
                ops.push(Op::put(TAGS, id, "order", k.to_string()));
                k
            };
            prev = Some(next);
        }
        self.write(&ops)
    }

    /// Sets the tags a tag implies (OneFolder's `impliedTags`): adds and removes members, so a
    /// concurrent change on another computer to other members survives. Unknown ids and the
    /// tag itself are refused.
    pub fn set_tag_implied(&self, id: &str, implied: &BTreeSet<String>) -> Result<()> {
        let tags = self.tag_map()?;
        let tag = tags.get(id).ok_or_else(|| ModelError::UnknownTag(id.to_owned()))?;
        if let Some(bad) = implied.iter().find(|i| !tags.contains_key(*i) || *i == id) {
            return Err(ModelError::UnknownTag(bad.clone()));
        }
        let mut ops: Vec<Op> =
            implied.difference(&tag.implied).map(|i| Op::set_add(TAGS, id, TAG_IMPLIED, i.as_str())).collect();
        ops.extend(tag.implied.difference(implied).map(|i| Op::set_remove(TAGS, id, TAG_IMPLIED, i.as_str())));
        self.write(&ops)
    }

    /// Sets whether assigning the tag also assigns the tags it implies (`copyImpliedTags`).
    pub fn set_tag_copy_implied(&self, id: &str, copy: bool) -> Result<()> {
        let tag = self.require_tag(id)?;
        self.write_changed(TAGS, id, &tag, TAG_COPY_IMPLIED, if copy { Value::from(true) } else { Value::Null })
    }

    /// Deletes the tags of `ids` that exist, with their subtrees, in one edit.
    pub fn delete_tags(&self, ids: &[String]) -> Result<()> {
        let tags = self.tag_map()?;
        let doomed: BTreeSet<String> =
            ids.iter().filter(|t| tags.contains_key(*t)).flat_map(|t| tree::subtree(&tags, t)).collect();
        if doomed.is_empty() {
            return Ok(());
        }
        let files = self.read(|e| e.collection(FILES))?;
        let mut ops = Vec::new();
        for (fid, r) in &files {
            for t in crate::set_field(r, layout::FILE_TAGS).intersection(&doomed) {
                ops.push(Op::set_remove(FILES, fid, layout::FILE_TAGS, t));
            }
        }
        ops.extend(doomed.iter().map(|t| Op::delete(TAGS, t)));
        self.write(&ops)
    }

    // ---------------------------------------------------------------- files

    /// Saves a file as the app holds it: finds it by `save.id`, else by location and path
    /// (creating it when new), moves it when its path changed, then writes only what differs:
    /// the facts, the tag additions and removals, the annotations. Returns the file id.
    pub fn save_file(&self, save: &FileSave) -> Result<String> {
        let path = ids::normalize_rel_path(&save.path)?;
        self.require(LOCATIONS, &save.location, ModelError::UnknownLocation)?;
        let mut id = ids::file_id(&save.location, &path)?;
        let mut existing = self.read(|e| e.record(FILES, &id))?;
        if let Some(known) = save.id.as_deref().filter(|k| *k != id) {
            if let Some(old) = self.read(|e| e.record(FILES, known))? {
                id = self.relocate_file(known, &save.location, &path)?;
                // What the moved record held before the move.
                existing = Some(old);
            }
        }
        let old = existing.as_ref().and_then(layout::record_meta);
        let date_added = match &old {
            Some(m) => m.date_added,
            None => save.date_added.unwrap_or_else(|| self.doc.now_ms()),
        };
        let mut facts = layout::Meta::new(&save.location, &path, &save.meta, date_added);
        // Apps that do not compute fingerprints keep the one an indexer stored.
        if facts.fingerprint.is_none() {
            facts.fingerprint = old.and_then(|m| m.fingerprint);
        }
        let Some(record) = existing else {
            let mut ops = layout::create_file_ops(&id, &facts);
            ops.extend(self.tag_ops(&id, &save.tags, &BTreeSet::new())?);
            if let Some(a) = &save.annotations {
                ops.push(Op::put(FILES, &id, layout::FILE_ANNOTATIONS, a.as_str()));
            }
            self.write(&ops)?;
            return Ok(id);
        };
        let mut ops = Vec::new();
        let encoded = facts.encode();
        if record.get(layout::FILE_META) != Some(&encoded) {
            ops.push(Op::put(FILES, &id, layout::FILE_META, encoded));
        }
        if layout::is_missing(&record) {
            ops.push(Op::clear(FILES, &id, layout::FILE_MISSING));
        }
        let current = crate::set_field(&record, layout::FILE_TAGS);
        ops.extend(self.tag_ops(&id, &save.tags, save.base.as_ref().unwrap_or(&current))?);
        match (record.get(layout::FILE_ANNOTATIONS).and_then(Value::as_str), save.annotations.as_deref()) {
            (have, want) if have == want => {}
            (Some(_), None) => ops.push(Op::clear(FILES, &id, layout::FILE_ANNOTATIONS)),
            (_, Some(want)) => ops.push(Op::put(FILES, &id, layout::FILE_ANNOTATIONS, want)),
            (None, None) => {}
        }
        self.write(&ops)?;
        Ok(id)
    }

    /// The set edits that turn `base` into `wanted` on file `id`; assigning an unknown tag
    /// fails.
    fn tag_ops(&self, id: &str, wanted: &BTreeSet<String>, base: &BTreeSet<String>) -> Result<Vec<Op>> {
        let added: Vec<&String> = wanted.difference(base).collect();
        if !added.is_empty() {
            let existing: BTreeSet<String> = self.read(|e| e.ids(TAGS))?.into_iter().collect();
            if let Some(bad) = added.iter().find(|t| !existing.contains(**t)) {
                return Err(ModelError::UnknownTag((*bad).clone()));
            }
        }
        let mut ops: Vec<Op> =
            added.into_iter().map(|t| Op::set_add(FILES, id, layout::FILE_TAGS, t.as_str())).collect();
        ops.extend(base.difference(wanted).map(|t| Op::set_remove(FILES, id, layout::FILE_TAGS, t.as_str())));
        Ok(ops)
    }

    /// Removes the files of `ids` that exist, in one edit.
    pub fn remove_files(&self, ids: &[String]) -> Result<()> {
        let ops = self.read(|e| {
            let mut ops = Vec::new();
            for id in ids {
                if e.contains(FILES, id)? {
                    ops.push(Op::delete(FILES, id));
                }
            }
            Ok(ops)
        })?;
        self.write(&ops)
    }

    // ---------------------------------------------------------------- locations

    /// Adds a location the app named `id`. A location inside the library folder (`rel_path`)
    /// gets the id derived from that path instead, so the same folder added on two computers
    /// is one location; the id it got is returned (an existing one when it is there already).
    pub fn add_location_with_id(
        &self,
        id: &str,
        name: &str,
        rel_path: Option<&str>,
        date_added: Option<i64>,
    ) -> Result<String> {
        let (id, rel) = match rel_path {
            Some(p) => (ids::library_location_id(p)?, Some(ids::normalize_rel_path(p)?)),
            None if id.is_empty() => return Err(ModelError::InvalidName("a location id cannot be empty".into())),
            None => (id.to_owned(), None),
        };
        if self.read(|e| e.contains(LOCATIONS, &id))? {
            return Ok(id);
        }
        let mut ops = vec![
            Op::create(LOCATIONS, &id),
            Op::put(LOCATIONS, &id, "name", name),
            Op::put(LOCATIONS, &id, "dateAdded", date_added.unwrap_or_else(|| self.doc.now_ms())),
        ];
        if let Some(rel) = rel {
            ops.push(Op::put(LOCATIONS, &id, "relPath", rel));
        }
        self.write(&ops)?;
        Ok(id)
    }

    /// Sets a location's position in the app's list.
    pub fn set_location_index(&self, id: &str, index: i64) -> Result<()> {
        let record =
            self.read(|e| e.record(LOCATIONS, id))?.ok_or_else(|| ModelError::UnknownLocation(id.to_owned()))?;
        self.write_changed(LOCATIONS, id, &record, "index", Value::from(index))
    }

    /// Makes a location's excluded sub-folders exactly `excluded` (set additions and removals).
    pub fn set_exclusions(&self, id: &str, excluded: &BTreeSet<String>) -> Result<()> {
        let location = self.locations()?.remove(id).ok_or_else(|| ModelError::UnknownLocation(id.to_owned()))?;
        let excluded: BTreeSet<String> =
            excluded.iter().map(|p| ids::normalize_rel_path(p)).collect::<Result<_, _>>()?;
        let mut ops: Vec<Op> = excluded
            .difference(&location.exclusions)
            .map(|p| Op::set_add(LOCATIONS, id, "exclusions", p.as_str()))
            .collect();
        ops.extend(
            location.exclusions.difference(&excluded).map(|p| Op::set_remove(LOCATIONS, id, "exclusions", p.as_str())),
        );
        self.write(&ops)
    }

    // ---------------------------------------------------------------- searches

    /// Creates or updates the saved search `id` (an id the app chose); writes only the fields
    /// that differ.
    pub fn put_search(
        &self,
        id: &str,
        name: &str,
        criteria: &serde_json::Value,
        match_any: bool,
        index: Option<i64>,
    ) -> Result<()> {
        if id.is_empty() {
            return Err(ModelError::InvalidName("a search id cannot be empty".into()));
        }
        let fields = [
            ("name", Value::from(name)),
            ("criteria", Value::from(criteria.to_string())),
            ("matchAny", Value::from(match_any)),
            ("index", index.map_or(Value::Null, Value::from)),
        ];
        match self.read(|e| e.record(SEARCHES, id))? {
            None => {
                let mut ops = vec![Op::create(SEARCHES, id)];
                ops.extend(
                    fields.into_iter().filter(|(_, v)| *v != Value::Null).map(|(f, v)| Op::put(SEARCHES, id, f, v)),
                );
                self.write(&ops)
            }
            Some(record) => {
                let ops: Vec<Op> =
                    fields.into_iter().filter_map(|(f, v)| crate::changed_op(SEARCHES, id, &record, f, v)).collect();
                self.write(&ops)
            }
        }
    }

    // ---------------------------------------------------------------- whole library

    /// Removes everything: every file, tag, location and search, as edits that propagate to
    /// every computer (an import of the empty library in [`crate::ImportMode::Replace`]).
    pub fn clear(&self) -> Result<()> {
        self.import(&crate::Export::default(), crate::ImportMode::Replace)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use onefolder_core::Engine;

    use super::*;
    use crate::ImportMode;

    fn library() -> Library<Mutex<Box<dyn Engine>>> {
        Library::new(Mutex::new(Box::new(onefolder_engine_yrs::YrsEngine::new()) as Box<dyn Engine>))
    }

    fn children(lib: &Library<Mutex<Box<dyn Engine>>>, parent: Option<&str>) -> Vec<String> {
        let tree = lib.tag_tree().unwrap();
        let nodes = match parent {
            None => tree,
            Some(p) => {
                fn find(nodes: Vec<crate::TagNode>, id: &str) -> Option<crate::TagNode> {
                    nodes.into_iter().find_map(|n| if n.tag.id == id { Some(n) } else { find(n.children, id) })
                }
                find(tree, p).unwrap().children
            }
        };
        nodes.into_iter().map(|n| n.tag.id).collect()
    }

    #[test]
    fn a_saved_child_list_becomes_moves_and_order_keys_and_nothing_when_unchanged() {
        let lib = library();
        for (id, name) in [("p", "Parent"), ("a", "A"), ("b", "B"), ("c", "C")] {
            lib.create_tag_with_id(id, None, name, None, Some(1)).unwrap();
        }
        assert!(matches!(lib.create_tag_with_id("a", None, "Other", None, None), Err(ModelError::IdTaken(_))));
        let list = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        lib.arrange_children(Some("p"), &list(&["c", "a"])).unwrap();
        assert_eq!(children(&lib, Some("p")), ["c", "a"]);
        assert_eq!(children(&lib, None), ["p", "b"]);
        let version = || lib.doc().read(|e| e.version());
        let before = version();
        lib.arrange_children(Some("p"), &list(&["c", "a"])).unwrap();
        assert_eq!(version(), before, "the same list writes nothing");
        // A list without a child leaves it (its new parent's save moves it), after the listed.
        lib.arrange_children(Some("p"), &list(&["a"])).unwrap();
        assert_eq!(children(&lib, Some("p")), ["a", "c"]);
        lib.arrange_children(None, &list(&["b", "c", "p", "gone"])).unwrap();
        assert_eq!(children(&lib, None), ["b", "c", "p"]);
        assert_eq!(children(&lib, Some("p")), ["a"]);
        assert!(matches!(lib.arrange_children(Some("a"), &list(&["p"])), Err(ModelError::Cycle(_))));
    }

    #[test]
    fn a_file_save_writes_the_users_change_against_what_the_app_read() {
        let lib = library();
        let loc = lib.add_location_with_id("app-loc", "Pictures", Some(""), Some(5)).unwrap();
        assert_eq!(loc, ids::library_location_id("").unwrap(), "inside the library the path gives the id");
        for t in ["red", "blue"] {
            lib.create_tag_with_id(t, None, t, None, None).unwrap();
        }
        let save = FileSave {
            id: Some("app-id".into()),
            location: loc.clone(),
            path: "a.jpg".into(),
            meta: FileMeta { size: 3, date_last_indexed: Some(9), ..FileMeta::default() },
            date_added: Some(7),
            ..FileSave::default()
        };
        let id = lib.save_file(&save).unwrap();
        assert_eq!(id, ids::file_id(&loc, "a.jpg").unwrap());
        let f = lib.file(&id).unwrap().unwrap();
        assert_eq!((f.date_added, f.date_last_indexed, f.size), (7, Some(9), 3));
        // Another writer tags it red; the app, which read no tags, saves blue.
        lib.assign(&id, "red").unwrap();
        let blue = FileSave { tags: ["blue".to_owned()].into(), base: Some(BTreeSet::new()), ..save.clone() };
        lib.save_file(&blue).unwrap();
        assert_eq!(lib.file(&id).unwrap().unwrap().tags, ["blue".to_owned(), "red".to_owned()].into());
        // Without a base, the save is the whole set.
        lib.save_file(&FileSave { tags: ["blue".to_owned()].into(), ..save.clone() }).unwrap();
        assert_eq!(lib.file(&id).unwrap().unwrap().tags, ["blue".to_owned()].into());
        let version = lib.doc().read(|e| e.version());
        lib.save_file(&FileSave { tags: ["blue".to_owned()].into(), ..save.clone() }).unwrap();
        assert_eq!(lib.doc().read(|e| e.version()), version, "an unchanged save writes nothing");
        let unknown = FileSave { tags: ["nope".to_owned()].into(), ..save };
        assert!(matches!(lib.save_file(&unknown), Err(ModelError::UnknownTag(_))));
    }

    #[test]
    fn what_the_app_adds_survives_export_and_import() {
        let lib = library();
        let loc = lib.add_location_with_id("outside", "Elsewhere", None, Some(5)).unwrap();
        assert_eq!(loc, "outside");
        lib.set_location_index(&loc, 2).unwrap();
        lib.create_tag_with_id("a", None, "A", Some("red"), None).unwrap();
        lib.create_tag_with_id("b", None, "B", None, None).unwrap();
        lib.set_tag_implied("b", &["a".to_owned()].into()).unwrap();
        lib.set_tag_copy_implied("b", true).unwrap();
        assert!(matches!(lib.set_tag_implied("b", &["b".to_owned()].into()), Err(ModelError::UnknownTag(_))));
        let meta = FileMeta { size: 1, date_last_indexed: Some(42), ..FileMeta::default() };
        lib.save_file(&FileSave { location: loc.clone(), path: "x.jpg".into(), meta, ..FileSave::default() }).unwrap();
        lib.put_search("s", "Red", &serde_json::json!([]), true, Some(3)).unwrap();
        let export = lib.export().unwrap();
        let other = library();
        other.import(&export, ImportMode::Replace).unwrap();
        assert_eq!(other.export().unwrap(), export);
        let b = &other.tags().unwrap()["b"];
        assert_eq!((b.implied.iter().map(String::as_str).collect::<Vec<_>>(), b.copy_implied), (vec!["a"], true));
        assert_eq!(export.files.values().next().unwrap().date_last_indexed, Some(42));
        assert_eq!(export.locations["outside"].index, Some(2));
        assert_eq!(export.searches["s"].index, Some(3));
        // An implied tag that is deleted leaves the views; clear() empties everything.
        other.delete_tags(&["a".to_owned()]).unwrap();
        assert!(other.tags().unwrap()["b"].implied.is_empty());
        other.clear().unwrap();
        assert_eq!(other.export().unwrap(), crate::Export::default());
    }
}
