//! # onefolder-model
//!
//! The OneFolder library — files, tags (a tree), locations and saved searches — expressed on
//! the engine-neutral [`Document`] API of `onefolder-core`, so that every engine merges it the
//! same way (DESIGN.md §5):
//! - file id = hash(location id, NFC location-relative path): the same file indexed on two
//!   computers is one record;
//! - tag id = hash(parent id, normalised name): the same tag created offline twice is one tag;
//! - every field is its own register, so concurrent edits of different fields both survive;
//! - a file's tags are an add-wins set;
//! - the tag tree is a parent pointer plus an order key per tag; cycles made by concurrent
//!   moves are broken at read time by a rule every replica computes the same way;
//! - ids of deleted tags never appear in any view.

#![warn(missing_docs)]

pub mod app;
pub mod backup;
mod batch;
pub mod criteria;
pub mod dates;
mod export;
pub mod ids;
pub mod layout;
pub mod local;
pub mod prototype;
mod tree;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use fractional_index::FractionalIndex;
use onefolder_core::{Document, Engine, EngineError, Op, Record, Value};
use serde::{Deserialize, Serialize};

pub use app::{FileOrder, FileSave, sort_files};
pub use backup::{BACKUP_EXTENSION, Backup, BackupError, BackupHeader, Rotation};
pub use batch::Batch;
pub use export::{Export, ExportFile, ExportLocation, ExportSearch, ExportTag, ImportMode};
pub use prototype::{Place, Prototype, PrototypeImport};
pub use tree::{TagNode, subtree};

/// Collection of files.
pub const FILES: &str = "files";
/// Collection of tags.
pub const TAGS: &str = "tags";
/// Collection of locations.
pub const LOCATIONS: &str = "locations";
/// Collection of saved searches.
pub const SEARCHES: &str = "searches";
/// Set field of a tag record: the tags it implies.
pub const TAG_IMPLIED: &str = "implied";
/// Field of a tag record: whether assigning it assigns the tags it implies (absent = no).
pub const TAG_COPY_IMPLIED: &str = "copyImplied";

/// Errors of the model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// No tag with this id or path.
    #[error("unknown tag: {0}")]
    UnknownTag(String),
    /// No file with this id or path.
    #[error("unknown file: {0}")]
    UnknownFile(String),
    /// No location with this id.
    #[error("unknown location: {0}")]
    UnknownLocation(String),
    /// No saved search with this id or name.
    #[error("unknown saved search: {0}")]
    UnknownSearch(String),
    /// A name was rejected.
    #[error("{0}")]
    InvalidName(String),
    /// A record with the id an app chose exists already.
    #[error("the id {0:?} is in use already")]
    IdTaken(String),
    /// A path was rejected.
    #[error("invalid path: {0}")]
    InvalidPath(String),
    /// Moving a tag under itself or its descendant.
    #[error("cannot move tag {0:?} under itself or one of its descendants")]
    Cycle(String),
    /// A rename or move would give a tag the (normalised) name of a sibling: two tags of one
    /// name under one parent are ambiguous in a tag path. Merging them is what the user meant.
    #[error("there is already a tag named {name:?} there")]
    NameTaken {
        /// The sibling's name as shown.
        name: String,
        /// The sibling's id.
        existing: String,
    },
    /// The engine failed to read.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The replica (engine, store or transport) failed.
    #[error(transparent)]
    Sync(#[from] onefolder_core::Error),
}

/// Result alias for [`ModelError`].
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

/// A file record as seen by views (dangling tag ids removed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct File {
    /// Deterministic id ([`ids::file_id`]).
    pub id: String,
    /// Location id.
    pub location: String,
    /// Location-relative path, `/` separators, NFC.
    pub path: String,
    /// File name.
    pub name: String,
    /// Lower-case extension without the dot.
    pub extension: String,
    /// Size in bytes.
    pub size: i64,
    /// Image width in pixels, when known.
    pub width: Option<i64>,
    /// Image height in pixels, when known.
    pub height: Option<i64>,
    /// When it was first indexed, ms since epoch.
    pub date_added: i64,
    /// Modification time on disk, ms since epoch.
    pub date_modified: i64,
    /// Creation time on disk, ms since epoch.
    pub date_created: i64,
    /// Content fingerprint (size + hash), used to carry tags over moves and renames.
    pub fingerprint: Option<String>,
    /// When an app last read its metadata and thumbnail, ms since epoch, if it reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_last_indexed: Option<i64>,
    /// Free-text annotations.
    pub annotations: Option<String>,
    /// Ids of existing tags assigned to it.
    pub tags: BTreeSet<String>,
}

/// What an indexer knows about a file on disk.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FileMeta {
    /// Size in bytes.
    pub size: i64,
    /// Modification time, ms since epoch.
    pub date_modified: i64,
    /// Creation time, ms since epoch.
    pub date_created: i64,
    /// Content fingerprint.
    pub fingerprint: Option<String>,
    /// Image width.
    pub width: Option<i64>,
    /// Image height.
    pub height: Option<i64>,
    /// When the app last read its metadata and thumbnail (OneFolder's `dateLastIndexed`).
    pub date_last_indexed: Option<i64>,
}

/// A tag as seen by views: the parent is the *effective* parent (cycles broken, parents that
/// no longer exist replaced by the root).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tag {
    /// Deterministic id ([`ids::tag_id`]).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Colour (any CSS colour string), if set.
    pub color: Option<String>,
    /// Effective parent tag id; `None` for a root tag.
    pub parent: Option<String>,
    /// Fractional order key among siblings.
    pub order: String,
    /// Hidden in the app's tag list.
    pub is_hidden: bool,
    /// When it was created, ms since epoch.
    pub date_added: i64,
    /// Existing tags this one implies (OneFolder's `impliedTags`): an add-wins set.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub implied: BTreeSet<String>,
    /// Whether assigning this tag also assigns the tags it implies (`copyImpliedTags`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub copy_implied: bool,
}

/// A location: a folder whose files are indexed. Its absolute path on a computer is a
/// per-device setting, never part of the shared document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Location {
    /// Shared id.
    pub id: String,
    /// Display name (the folder name).
    pub name: String,
    /// Path relative to the library folder, when the location is inside it (`""` = the
    /// library folder itself); then every computer finds it at the same place.
    pub rel_path: Option<String>,
    /// When it was added, ms since epoch.
    pub date_added: i64,
    /// Location-relative sub-folders excluded from indexing.
    pub exclusions: BTreeSet<String>,
    /// Position in the app's list of locations, when the app set one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<i64>,
}

/// A saved search.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedSearch {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Criteria as JSON (OneFolder's criteria list).
    pub criteria: String,
    /// Match any criterion instead of all.
    pub match_any: bool,
    /// Position in the app's list of searches, when the app set one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<i64>,
}

pub(crate) fn str_field(r: &Record, f: &str) -> Option<String> {
    r.get(f).and_then(Value::as_str).map(str::to_owned)
}
pub(crate) fn int_field(r: &Record, f: &str) -> Option<i64> {
    r.get(f).and_then(Value::as_i64)
}
pub(crate) fn set_field(r: &Record, f: &str) -> BTreeSet<String> {
    r.get(f).and_then(Value::as_set).cloned().unwrap_or_default()
}

/// File counts ([`Library::file_counts`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCounts {
    /// Every file.
    pub files: usize,
    /// Files with no existing tag.
    pub untagged: usize,
}

/// The files of `ids` that exist, in id order.
fn read_files(
    e: &dyn Engine,
    ids: BTreeSet<String>,
    existing_tags: &BTreeSet<String>,
) -> Result<Vec<File>, EngineError> {
    let mut files = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(r) = e.record(FILES, &id)? {
            files.push(layout::file_from_record(id, &r, existing_tags));
        }
    }
    Ok(files)
}

/// The ids of the files with no existing tag: an empty tag set, or only deleted tags.
fn untagged_ids(e: &dyn Engine, existing_tags: &BTreeSet<String>) -> Result<BTreeSet<String>, EngineError> {
    let mut ids: BTreeSet<String> = e.ids_without_members(FILES, layout::FILE_TAGS)?.into_iter().collect();
    for dangling in e.member_counts(FILES, layout::FILE_TAGS)?.keys().filter(|t| !existing_tags.contains(*t)) {
        for id in e.ids_with_member(FILES, layout::FILE_TAGS, dangling)? {
            let only_dangling = match e.field(FILES, &id, layout::FILE_TAGS)? {
                Some(Value::Set(tags)) => tags.is_disjoint(existing_tags),
                _ => true,
            };
            if only_dangling {
                ids.insert(id);
            }
        }
    }
    Ok(ids)
}

/// The OneFolder library on a [`Document`] (a [`onefolder_core::Replica`], or a bare engine).
#[derive(Debug)]
pub struct Library<D> {
    doc: D,
    /// The last [`Library::tag_map`], while the engine's tags are still those it was computed from.
    tags: Mutex<Option<TagMemo>>,
}

/// Every tag with its effective parent, shared ([`Library::tag_map`]).
type TagMap = Arc<BTreeMap<String, Tag>>;

/// See [`Library::tag_map`].
#[derive(Debug)]
struct TagMemo {
    /// The [`Engine::collection_generation`] of the tags `tags` was computed from.
    generation: u64,
    tags: TagMap,
    /// Ids some tag names as its parent or an implied tag, that no tag has.
    dangling: BTreeSet<String>,
}

impl<D: Document> Library<D> {
    /// Wraps a document.
    pub fn new(doc: D) -> Self {
        Self::with_memo(doc, None)
    }

    fn with_memo(doc: D, memo: Option<TagMemo>) -> Self {
        Self { doc, tags: Mutex::new(memo) }
    }

    /// Takes the kept tag tree (a batch works on it, then hands it back with [`Self::put_memo`]).
    fn take_memo(&self) -> Option<TagMemo> {
        self.tags.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn put_memo(&self, memo: Option<TagMemo>) {
        *self.tags.lock().unwrap_or_else(|e| e.into_inner()) = memo;
    }

    fn into_memo(self) -> Option<TagMemo> {
        self.tags.into_inner().unwrap_or_else(|e| e.into_inner())
    }

    /// The document underneath.
    pub fn doc(&self) -> &D {
        &self.doc
    }

    fn read<R>(&self, f: impl FnOnce(&dyn Engine) -> Result<R, EngineError>) -> Result<R> {
        Ok(self.doc.read(f)?)
    }

    fn write(&self, ops: &[Op]) -> Result<()> {
        if ops.is_empty() {
            return Ok(());
        }
        self.doc.write(ops)?;
        Ok(())
    }

    // ---------------------------------------------------------------- locations

    /// Adds (or matches) a location. `rel_path` is the folder relative to the library folder
    /// when it lies inside it; such locations get a deterministic id, so the same folder added
    /// on two computers is one location. Locations outside the library get a random id.
    pub fn add_location(&self, name: &str, rel_path: Option<&str>) -> Result<String> {
        let (id, rel) = match rel_path {
            Some(p) => (ids::library_location_id(p)?, Some(ids::normalize_rel_path(p)?)),
            None => (ids::random_id(), None),
        };
        if self.read(|e| e.contains(LOCATIONS, &id))? {
            return Ok(id);
        }
        let mut ops = vec![
            Op::create(LOCATIONS, &id),
            Op::put(LOCATIONS, &id, "name", name),
            Op::put(LOCATIONS, &id, "dateAdded", self.doc.now_ms()),
        ];
        if let Some(rel) = rel {
            ops.push(Op::put(LOCATIONS, &id, "relPath", rel));
        }
        self.write(&ops)?;
        Ok(id)
    }

    /// Every location.
    pub fn locations(&self) -> Result<BTreeMap<String, Location>> {
        let raw = self.read(|e| e.collection(LOCATIONS))?;
        Ok(raw
            .into_iter()
            .map(|(id, r)| {
                let loc = Location {
                    id: id.clone(),
                    name: str_field(&r, "name").unwrap_or_default(),
                    rel_path: str_field(&r, "relPath"),
                    date_added: int_field(&r, "dateAdded").unwrap_or(0),
                    exclusions: set_field(&r, "exclusions"),
                    index: int_field(&r, "index"),
                };
                (id, loc)
            })
            .collect())
    }

    /// Removes a location and every file record in it.
    pub fn remove_location(&self, id: &str) -> Result<()> {
        self.require(LOCATIONS, id, ModelError::UnknownLocation)?;
        let files = self.read(|e| e.collection(FILES))?;
        let mut ops: Vec<Op> = files
            .iter()
            .filter(|(_, r)| layout::record_meta(r).is_some_and(|m| m.location == id))
            .map(|(fid, _)| Op::delete(FILES, fid))
            .collect();
        ops.push(Op::delete(LOCATIONS, id));
        self.write(&ops)
    }

    /// Excludes (or re-includes) a location-relative sub-folder from indexing.
    pub fn set_exclusion(&self, location: &str, rel_path: &str, excluded: bool) -> Result<()> {
        self.require(LOCATIONS, location, ModelError::UnknownLocation)?;
        let p = ids::normalize_rel_path(rel_path)?;
        let op = if excluded {
            Op::set_add(LOCATIONS, location, "exclusions", &p)
        } else {
            Op::set_remove(LOCATIONS, location, "exclusions", &p)
        };
        self.write(&[op])
    }

    // ---------------------------------------------------------------- files

    /// Adds or updates the file at `rel_path` in `location`; writes only what changed.
    /// Returns the file id.
    pub fn upsert_file(&self, location: &str, rel_path: &str, meta: &FileMeta) -> Result<String> {
        let path = ids::normalize_rel_path(rel_path)?;
        let id = ids::file_id(location, &path)?;
        let existing = self.read(|e| e.record(FILES, &id))?;
        let Some(r) = existing else {
            let facts = layout::Meta::new(location, &path, meta, self.doc.now_ms());
            return self.write(&layout::create_file_ops(&id, &facts)).map(|()| id);
        };
        // A record that was deleted concurrently and created again keeps its old dateAdded; a
        // fresh one gets now.
        let date_added = layout::record_meta(&r).map_or_else(|| self.doc.now_ms(), |m| m.date_added);
        let facts = layout::Meta::new(location, &path, meta, date_added).encode();
        let mut ops = Vec::new();
        if r.get(layout::FILE_META) != Some(&facts) {
            ops.push(Op::put(FILES, &id, layout::FILE_META, facts));
        }
        if layout::is_missing(&r) {
            ops.push(Op::clear(FILES, &id, layout::FILE_MISSING));
        }
        self.write(&ops)?;
        Ok(id)
    }

    /// Moves a file record to a new location-relative path (a move or rename on disk): the
    /// new record keeps every field and tag of the old one, which is removed. Returns the new id.
    pub fn relocate_file(&self, id: &str, location: &str, new_rel_path: &str) -> Result<String> {
        let old = self.read(|e| e.record(FILES, id))?.ok_or_else(|| ModelError::UnknownFile(id.to_owned()))?;
        let path = ids::normalize_rel_path(new_rel_path)?;
        let new_id = ids::file_id(location, &path)?;
        if new_id == id {
            return Ok(new_id);
        }
        let mut facts = layout::record_meta(&old).unwrap_or_default();
        facts.location = location.to_owned();
        facts.path = path;
        let mut ops = layout::create_file_ops(&new_id, &facts);
        for (field, value) in &old {
            match (field.as_str(), value) {
                (layout::FILE_META | layout::FILE_MISSING, _) => {}
                (_, Value::Set(members)) => {
                    ops.extend(members.iter().map(|m| Op::set_add(FILES, &new_id, field, m)));
                }
                (_, v) => ops.push(Op::put(FILES, &new_id, field, v.clone())),
            }
        }
        ops.push(Op::delete(FILES, id));
        self.write(&ops)?;
        Ok(new_id)
    }

    /// Removes a file record.
    pub fn remove_file(&self, id: &str) -> Result<()> {
        self.require(FILES, id, ModelError::UnknownFile)?;
        self.write(&[Op::delete(FILES, id)])
    }

    /// Sets (or with `None` clears) a file's annotations.
    pub fn set_annotations(&self, id: &str, text: Option<&str>) -> Result<()> {
        let file = self.require_file(id)?;
        self.write_changed(FILES, id, &file, layout::FILE_ANNOTATIONS, Value::from(text.map(str::to_owned)))
    }

    /// Writes one scalar field only if it differs (`Null` clears it): an edit that changes
    /// nothing writes nothing to the shared medium.
    fn write_changed(&self, coll: &str, id: &str, current: &Record, field: &str, value: Value) -> Result<()> {
        match changed_op(coll, id, current, field, value) {
            Some(op) => self.write(&[op]),
            None => Ok(()),
        }
    }

    fn require_file(&self, id: &str) -> Result<Record> {
        self.read(|e| e.record(FILES, id))?.ok_or_else(|| ModelError::UnknownFile(id.to_owned()))
    }

    fn require_tag(&self, id: &str) -> Result<Record> {
        self.read(|e| e.record(TAGS, id))?.ok_or_else(|| ModelError::UnknownTag(id.to_owned()))
    }

    /// Fails with `missing(id)` unless the record exists (without reading its fields).
    fn require(&self, collection: &str, id: &str, missing: fn(String) -> ModelError) -> Result<()> {
        if self.read(|e| e.contains(collection, id))? { Ok(()) } else { Err(missing(id.to_owned())) }
    }

    /// Assigns a tag to a file (add wins over a concurrent removal).
    pub fn assign(&self, file: &str, tag: &str) -> Result<()> {
        self.require(FILES, file, ModelError::UnknownFile)?;
        self.require(TAGS, tag, ModelError::UnknownTag)?;
        self.write(&[Op::set_add(FILES, file, layout::FILE_TAGS, tag)])
    }

    /// Removes a tag from a file.
    pub fn unassign(&self, file: &str, tag: &str) -> Result<()> {
        self.require(FILES, file, ModelError::UnknownFile)?;
        self.write(&[Op::set_remove(FILES, file, layout::FILE_TAGS, tag)])
    }

    /// Every file; tag sets hold only existing tags.
    pub fn files(&self) -> Result<BTreeMap<String, File>> {
        let (raw, tags) = self.read(|e| Ok((e.collection(FILES)?, e.ids(TAGS)?)))?;
        let tags: BTreeSet<String> = tags.into_iter().collect();
        Ok(raw.into_iter().map(|(id, r)| (id.clone(), layout::file_from_record(id, &r, &tags))).collect())
    }

    /// One file by id.
    pub fn file(&self, id: &str) -> Result<Option<File>> {
        let (raw, tags) = self.read(|e| Ok((e.record(FILES, id)?, e.ids(TAGS)?)))?;
        let tags: BTreeSet<String> = tags.into_iter().collect();
        Ok(raw.map(|r| layout::file_from_record(id.to_owned(), &r, &tags)))
    }

    /// The id of the file at a location-relative path, if indexed.
    pub fn file_at(&self, location: &str, rel_path: &str) -> Result<Option<String>> {
        let id = ids::file_id(location, rel_path)?;
        Ok(self.read(|e| e.contains(FILES, &id))?.then_some(id))
    }

    /// Files carrying `tag`, or (with `recursive`) `tag` or any tag below it, by id. Answered
    /// from the set index of a [`onefolder_core::Replica`]: only the matching records are read.
    pub fn files_with_tag(&self, tag: &str, recursive: bool) -> Result<Vec<File>> {
        let (ids, tags) = self.tagged_ids(tag, recursive)?;
        let existing: BTreeSet<String> = tags.keys().cloned().collect();
        self.read(|e| read_files(e, ids, &existing))
    }

    /// The ids of the files [`Library::files_with_tag`] returns, without reading them.
    pub fn file_ids_with_tag(&self, tag: &str, recursive: bool) -> Result<BTreeSet<String>> {
        Ok(self.tagged_ids(tag, recursive)?.0)
    }

    /// The ids of the files carrying `tag` (or a tag below it), and the tags.
    fn tagged_ids(&self, tag: &str, recursive: bool) -> Result<(BTreeSet<String>, TagMap)> {
        let tags = self.tag_map()?;
        if !tags.contains_key(tag) {
            return Err(ModelError::UnknownTag(tag.to_owned()));
        }
        let wanted: BTreeSet<String> =
            if recursive { tree::subtree(&tags, tag) } else { std::iter::once(tag.to_owned()).collect() };
        // Sorted and distinct: the set is built in one pass.
        let ids = self.read(|e| e.ids_with_any_member(FILES, layout::FILE_TAGS, &wanted))?;
        Ok((ids.into_iter().collect(), tags))
    }

    /// Files with no (existing) tag, by id: those with an empty tag set, and those whose every
    /// tag was deleted.
    pub fn untagged_files(&self) -> Result<Vec<File>> {
        let existing: BTreeSet<String> = self.read(|e| e.ids(TAGS))?.into_iter().collect();
        self.read(|e| {
            let ids = untagged_ids(e, &existing)?;
            read_files(e, ids, &existing)
        })
    }

    /// How many files there are, and how many of them carry no (existing) tag.
    pub fn file_counts(&self) -> Result<FileCounts> {
        let existing: BTreeSet<String> = self.read(|e| e.ids(TAGS))?.into_iter().collect();
        self.read(|e| Ok(FileCounts { files: e.count(FILES)?, untagged: untagged_ids(e, &existing)?.len() }))
    }

    /// For every existing tag that some file carries, how many files carry it directly.
    pub fn tag_file_counts(&self) -> Result<BTreeMap<String, usize>> {
        self.read(|e| {
            let mut counts = e.member_counts(FILES, layout::FILE_TAGS)?;
            let existing: BTreeSet<String> = e.ids(TAGS)?.into_iter().collect();
            counts.retain(|tag, _| existing.contains(tag));
            Ok(counts)
        })
    }

    // ---------------------------------------------------------------- tags

    /// Every tag with its effective parent.
    pub fn tags(&self) -> Result<BTreeMap<String, Tag>> {
        Ok(BTreeMap::clone(&*self.tag_map()?))
    }

    /// [`Library::tags`], shared: computed again only when the tags changed since (the engine's
    /// [`Engine::collection_generation`] moved; an engine without one computes it every time).
    pub(crate) fn tag_map(&self) -> Result<TagMap> {
        Ok(self.tag_map_at()?.0)
    }

    /// [`Library::tag_map`] and the generation of the tags it was computed from.
    fn tag_map_at(&self) -> Result<(TagMap, Option<u64>)> {
        let (raw, generation) = self.read(|e| Ok((e.shared_collection(TAGS)?, e.collection_generation(TAGS))))?;
        let mut memo = self.tags.lock().unwrap_or_else(|e| e.into_inner());
        if let (Some(g), Some(m)) = (generation, memo.as_ref()) {
            if m.generation == g {
                return Ok((Arc::clone(&m.tags), generation));
            }
        }
        let tags = Arc::new(tree::effective_tags(&raw));
        *memo = generation.map(|generation| TagMemo {
            generation,
            tags: Arc::clone(&tags),
            dangling: tree::dangling_refs(&raw),
        });
        Ok((tags, generation))
    }

    /// After this library's own write of one new `tag` on the tags of `generation`: adds it to
    /// the memo in place of a recomputation, when nothing else changed the tags in between, the
    /// id was no tag's before (a renamed tag keeps the id of its first name, and its other
    /// fields), and no tag was waiting for the id (then its effective parent changes too).
    fn tag_created(&self, generation: Option<u64>, tag: Tag) {
        let Some(g) = generation else { return };
        let after = self.doc.read(|e| e.collection_generation(TAGS));
        let mut memo = self.tags.lock().unwrap_or_else(|e| e.into_inner());
        let Some(m) = memo.as_mut() else { return };
        if m.generation != g || after != Some(g + 1) || m.tags.contains_key(&tag.id) || m.dangling.contains(&tag.id) {
            return;
        }
        Arc::make_mut(&mut m.tags).insert(tag.id.clone(), tag);
        m.generation = g + 1;
    }

    /// The tag tree: roots in order, each with its children in order.
    pub fn tag_tree(&self) -> Result<Vec<TagNode>> {
        Ok(tree::build(&*self.tag_map()?))
    }

    /// The tag at a `/`-separated path of names (`Animals/Cats`), matched by normalised name.
    pub fn tag_by_path(&self, path: &str) -> Result<Option<String>> {
        let tags = self.tag_map()?;
        Ok(tree::find_path(&tags, path))
    }

    /// Creates a tag under `parent` (or at the root); if a tag with the same normalised name
    /// exists there already, returns its id. Deterministic: the same call on two computers
    /// creates one tag.
    pub fn create_tag(&self, parent: Option<&str>, name: &str, color: Option<&str>) -> Result<String> {
        let name = ids::clean_tag_name(name)?;
        let (tags, generation) = self.tag_map_at()?;
        if let Some(p) = parent {
            if !tags.contains_key(p) {
                return Err(ModelError::UnknownTag(p.to_owned()));
            }
        }
        // An existing sibling with this name (possibly renamed to it) is the tag.
        let key = ids::tag_name_key(&name);
        if let Some(t) = tags.values().find(|t| t.parent.as_deref() == parent && ids::tag_name_key(&t.name) == key) {
            return Ok(t.id.clone());
        }
        let id = ids::tag_id(parent, &name);
        let order = self.order_after_last(&tags, parent);
        drop(tags);
        let tag = Tag {
            id: id.clone(),
            name,
            color: color.map(str::to_owned),
            parent: parent.map(str::to_owned),
            order,
            is_hidden: false,
            date_added: self.doc.now_ms(),
            implied: BTreeSet::new(),
            copy_implied: false,
        };
        let mut ops = vec![
            Op::create(TAGS, &id),
            Op::put(TAGS, &id, "name", tag.name.as_str()),
            Op::put(TAGS, &id, "parent", Value::from(tag.parent.clone())),
            Op::put(TAGS, &id, "order", tag.order.as_str()),
            Op::put(TAGS, &id, "dateAdded", tag.date_added),
        ];
        if let Some(c) = &tag.color {
            ops.push(Op::put(TAGS, &id, "color", c.as_str()));
        }
        self.write(&ops)?;
        self.tag_created(generation, tag);
        Ok(id)
    }

    /// Creates every missing tag along a `/`-separated path; returns the last one's id.
    pub fn create_tag_path(&self, path: &str, color: Option<&str>) -> Result<String> {
        let mut parent: Option<String> = None;
        let names: Vec<&str> = path.split('/').filter(|s| !s.trim().is_empty()).collect();
        if names.is_empty() {
            return Err(ModelError::InvalidName("a tag path cannot be empty".into()));
        }
        for (i, name) in names.iter().enumerate() {
            let last = i + 1 == names.len();
            parent = Some(self.create_tag(parent.as_deref(), name, if last { color } else { None })?);
        }
        Ok(parent.expect("at least one name"))
    }

    fn order_after_last(&self, tags: &BTreeMap<String, Tag>, parent: Option<&str>) -> String {
        let last = tags
            .values()
            .filter(|t| t.parent.as_deref() == parent)
            .filter_map(|t| FractionalIndex::from_string(&t.order).ok())
            .max();
        match last {
            Some(last) => FractionalIndex::new_after(&last).to_string(),
            None => FractionalIndex::default().to_string(),
        }
    }

    /// Renames a tag (its id does not change). Refuses the name of a sibling
    /// ([`ModelError::NameTaken`]).
    pub fn rename_tag(&self, id: &str, name: &str) -> Result<()> {
        let name = ids::clean_tag_name(name)?;
        let tags = self.tag_map()?;
        let tag = tags.get(id).ok_or_else(|| ModelError::UnknownTag(id.to_owned()))?;
        name_free(&tags, tag.parent.as_deref(), &name, id)?;
        let record = self.require_tag(id)?;
        self.write_changed(TAGS, id, &record, "name", Value::from(name))
    }

    /// Sets or clears a tag's colour.
    pub fn set_tag_color(&self, id: &str, color: Option<&str>) -> Result<()> {
        let tag = self.require_tag(id)?;
        self.write_changed(TAGS, id, &tag, "color", Value::from(color.map(str::to_owned)))
    }

    /// Hides or shows a tag.
    pub fn set_tag_hidden(&self, id: &str, hidden: bool) -> Result<()> {
        let tag = self.require_tag(id)?;
        self.write_changed(TAGS, id, &tag, "isHidden", Value::from(hidden))
    }

    /// Moves a tag under `new_parent` (`None` = root), after its last sibling there. Refuses a
    /// move under itself or a descendant; a cycle made by concurrent moves on two computers is
    /// broken at read time instead.
    pub fn move_tag(&self, id: &str, new_parent: Option<&str>) -> Result<()> {
        let tags = self.tag_map()?;
        if !tags.contains_key(id) {
            return Err(ModelError::UnknownTag(id.to_owned()));
        }
        if let Some(p) = new_parent {
            if !tags.contains_key(p) {
                return Err(ModelError::UnknownTag(p.to_owned()));
            }
            if tree::subtree(&tags, id).contains(p) {
                return Err(ModelError::Cycle(tags[id].name.clone()));
            }
        }
        if new_parent != tags[id].parent.as_deref() {
            name_free(&tags, new_parent, &tags[id].name, id)?;
        }
        let order = self.order_after_last(&tags, new_parent);
        self.write(&[
            Op::put(TAGS, id, "parent", Value::from(new_parent.map(str::to_owned))),
            Op::put(TAGS, id, "order", order),
        ])
    }

    /// Places a tag among its siblings between two of them (either may be `None`).
    pub fn reorder_tag(&self, id: &str, after: Option<&str>, before: Option<&str>) -> Result<()> {
        let tags = self.tag_map()?;
        let key = |t: Option<&str>| -> Result<Option<FractionalIndex>> {
            match t {
                None => Ok(None),
                Some(t) => {
                    let tag = tags.get(t).ok_or_else(|| ModelError::UnknownTag(t.to_owned()))?;
                    Ok(FractionalIndex::from_string(&tag.order).ok())
                }
            }
        };
        self.require_tag(id)?;
        let (lo, hi) = (key(after)?, key(before)?);
        let order = FractionalIndex::new(lo.as_ref(), hi.as_ref())
            .ok_or_else(|| ModelError::InvalidName("`after` must come before `before`".into()))?;
        self.write(&[Op::put(TAGS, id, "order", order.to_string())])
    }

    /// Deletes a tag and its subtree, and removes them from every file. A concurrent
    /// assignment elsewhere cannot bring them back into any view.
    pub fn delete_tag(&self, id: &str) -> Result<()> {
        let tags = self.tag_map()?;
        if !tags.contains_key(id) {
            return Err(ModelError::UnknownTag(id.to_owned()));
        }
        let doomed = tree::subtree(&tags, id);
        let files = self.read(|e| e.collection(FILES))?;
        let mut ops = Vec::new();
        for (fid, r) in &files {
            for t in set_field(r, layout::FILE_TAGS).intersection(&doomed) {
                ops.push(Op::set_remove(FILES, fid, layout::FILE_TAGS, t));
            }
        }
        ops.extend(doomed.iter().map(|t| Op::delete(TAGS, t)));
        self.write(&ops)
    }

    /// Merges tag `from` into `into`: every file tagged `from` gets `into`, `from`'s children
    /// move under `into`, and `from` is deleted.
    pub fn merge_tags(&self, from: &str, into: &str) -> Result<()> {
        let tags = self.tag_map()?;
        for t in [from, into] {
            if !tags.contains_key(t) {
                return Err(ModelError::UnknownTag(t.to_owned()));
            }
        }
        if from == into || tree::subtree(&tags, from).contains(into) {
            return Err(ModelError::Cycle(tags[from].name.clone()));
        }
        let files = self.read(|e| e.collection(FILES))?;
        let mut ops = Vec::new();
        for (fid, r) in &files {
            if set_field(r, layout::FILE_TAGS).contains(from) {
                ops.push(Op::set_add(FILES, fid, layout::FILE_TAGS, into));
                ops.push(Op::set_remove(FILES, fid, layout::FILE_TAGS, from));
            }
        }
        for child in tags.values().filter(|t| t.parent.as_deref() == Some(from)) {
            ops.push(Op::put(TAGS, &child.id, "parent", into));
        }
        ops.push(Op::delete(TAGS, from));
        self.write(&ops)
    }

    // ---------------------------------------------------------------- searches

    /// Saves a search; returns its id.
    pub fn save_search(&self, name: &str, criteria: &serde_json::Value, match_any: bool) -> Result<String> {
        let id = ids::random_id();
        self.write(&[
            Op::create(SEARCHES, &id),
            Op::put(SEARCHES, &id, "name", name),
            Op::put(SEARCHES, &id, "criteria", criteria.to_string()),
            Op::put(SEARCHES, &id, "matchAny", match_any),
        ])?;
        Ok(id)
    }

    /// Every saved search.
    pub fn searches(&self) -> Result<BTreeMap<String, SavedSearch>> {
        let raw = self.read(|e| e.collection(SEARCHES))?;
        Ok(raw
            .into_iter()
            .map(|(id, r)| {
                let s = SavedSearch {
                    id: id.clone(),
                    name: str_field(&r, "name").unwrap_or_default(),
                    criteria: str_field(&r, "criteria").unwrap_or_else(|| "[]".into()),
                    match_any: r.get("matchAny").and_then(Value::as_bool).unwrap_or(false),
                    index: int_field(&r, "index"),
                };
                (id, s)
            })
            .collect())
    }

    /// Deletes a saved search.
    pub fn delete_search(&self, id: &str) -> Result<()> {
        self.require(SEARCHES, id, ModelError::UnknownSearch)?;
        self.write(&[Op::delete(SEARCHES, id)])
    }
}

/// The op that sets one scalar field to `value` (`Null` clears it), or `None` when it holds it.
fn changed_op(coll: &str, id: &str, current: &Record, field: &str, value: Value) -> Option<Op> {
    match (current.get(field), &value) {
        (None, Value::Null) => None,
        (Some(_), Value::Null) => Some(Op::clear(coll, id, field)),
        (Some(have), v) if have == v => None,
        _ => Some(Op::put(coll, id, field, value)),
    }
}

/// Fails with [`ModelError::NameTaken`] when a tag under `parent` other than `except` has the
/// normalised name of `name`.
fn name_free(tags: &BTreeMap<String, Tag>, parent: Option<&str>, name: &str, except: &str) -> Result<()> {
    let key = ids::tag_name_key(name);
    match tags.values().find(|t| t.parent.as_deref() == parent && t.id != except && ids::tag_name_key(&t.name) == key) {
        Some(other) => Err(ModelError::NameTaken { name: other.name.clone(), existing: other.id.clone() }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn library() -> Library<Mutex<Box<dyn Engine>>> {
        Library::new(Mutex::new(Box::new(onefolder_engine_yrs::YrsEngine::new()) as Box<dyn Engine>))
    }

    #[test]
    fn a_rename_or_move_never_gives_two_siblings_one_name() {
        let lib = library();
        let cats = lib.create_tag_path("Animals/Cats", None).unwrap();
        let dogs = lib.create_tag_path("Animals/Dogs", None).unwrap();
        let other_cats = lib.create_tag_path("Pets/cats", None).unwrap();
        let err = lib.rename_tag(&dogs, " CATS ").unwrap_err();
        assert!(matches!(&err, ModelError::NameTaken { existing, .. } if existing == &cats), "{err:?}");
        let animals = lib.tag_by_path("Animals").unwrap().unwrap();
        let err = lib.move_tag(&other_cats, Some(&animals)).unwrap_err();
        assert!(matches!(&err, ModelError::NameTaken { existing, .. } if existing == &cats), "{err:?}");
        // Renaming a tag to its own name in another case, or moving it where it is, is fine.
        lib.rename_tag(&cats, "CATS").unwrap();
        lib.move_tag(&cats, Some(&animals)).unwrap();
        assert_eq!(lib.tags().unwrap()[&cats].name, "CATS");
        assert_eq!(lib.tags().unwrap()[&dogs].name, "Dogs");
    }

    /// The kept tag tree equals one computed from the engine's tags after every step: tags
    /// created one after another (added to the memo), a write past the model, a tag created
    /// with the id a tag's parent was waiting for, and a snapshot load.
    #[test]
    fn the_kept_tag_tree_is_the_one_the_tags_give() {
        let engine = onefolder_core::Indexed::new(onefolder_engine_yrs::YrsEngine::new());
        let lib = Library::new(Mutex::new(Box::new(engine) as Box<dyn Engine>));
        let check = |step: &str| {
            let raw = lib.doc().read(|e| e.collection(TAGS)).unwrap();
            assert_eq!(*lib.tag_map().unwrap(), tree::effective_tags(&raw), "after {step}");
        };
        check("nothing");
        let animals = lib.create_tag(None, "Animals", Some("red")).unwrap();
        for name in ["Cats", "Dogs", "Birds"] {
            lib.create_tag(Some(&animals), name, None).unwrap();
            check(name);
        }
        let generation = || lib.doc().read(|e| e.collection_generation(TAGS)).unwrap();
        let before = generation();
        lib.create_tag(None, "Places", None).unwrap();
        assert_eq!(generation(), before + 1, "one new tag is one record read again");
        assert_eq!(lib.tags.lock().unwrap().as_ref().map(|m| m.generation), Some(before + 1), "the memo took it");
        check("Places");
        // Past the model: a tag whose parent does not exist yet, then that parent.
        let waiting_for = ids::tag_id(None, "Later");
        lib.doc()
            .write(&[
                Op::create(TAGS, "orphan"),
                Op::put(TAGS, "orphan", "name", "Orphan"),
                Op::put(TAGS, "orphan", "parent", waiting_for.as_str()),
            ])
            .unwrap();
        check("a write past the model");
        assert_eq!(lib.tag_map().unwrap()["orphan"].parent, None);
        lib.create_tag(None, "Later", None).unwrap();
        check("the awaited parent");
        assert_eq!(lib.tag_map().unwrap()["orphan"].parent.as_deref(), Some(waiting_for.as_str()));
        // The first name of a renamed, recoloured tag again: the id it had, and its colour.
        let places = lib.tag_by_path("Places").unwrap().unwrap();
        lib.rename_tag(&places, "Towns").unwrap();
        lib.set_tag_color(&places, Some("blue")).unwrap();
        assert_eq!(lib.create_tag(None, "Places", None).unwrap(), places);
        check("the first name of a renamed tag");
        // A snapshot load forgets what the layer kept.
        let snapshot = lib.doc().read(|e| e.snapshot()).unwrap();
        lib.doc().lock().unwrap().load_snapshot(&snapshot).unwrap();
        check("a snapshot load");
        lib.create_tag(Some(&animals), "Fish", None).unwrap();
        check("Fish");
    }

    fn meta(size: i64) -> FileMeta {
        FileMeta { size, ..FileMeta::default() }
    }

    #[test]
    fn a_batch_sees_its_own_writes_and_a_failed_one_writes_nothing() {
        let lib = library();
        let location = lib.add_location("Library", Some("")).unwrap();
        let version = || lib.doc().read(|e| e.version());
        let (a, tag) = lib
            .in_batch(|b| {
                let a = b.upsert_file(&location, "a.jpg", &meta(1))?;
                b.upsert_file(&location, "b.jpg", &meta(2))?;
                assert!(b.pending() > 0);
                assert!(b.file(&a)?.is_some(), "reads in a batch see its writes");
                // A tag created in the batch can be assigned in it.
                let tag = b.create_tag(None, "Fresh", None)?;
                b.assign(&a, &tag)?;
                Ok((a, tag))
            })
            .unwrap();
        assert_eq!(lib.file_counts().unwrap().files, 2);
        assert!(lib.file(&a).unwrap().unwrap().tags.contains(&tag));

        let before = version();
        let err = lib
            .in_batch(|b| {
                b.upsert_file(&location, "c.jpg", &meta(3))?;
                b.assign(&a, "no-such-tag")
            })
            .unwrap_err();
        assert!(matches!(err, ModelError::UnknownTag(_)), "{err:?}");
        assert_eq!(version(), before, "a failed batch writes nothing");
        let c = lib.in_batch(|b| b.upsert_file(&location, "c.jpg", &meta(3))).unwrap();
        assert!(lib.file(&c).unwrap().is_some());
    }

    #[test]
    fn tag_queries_and_counts_come_from_the_index() {
        let engine: Box<dyn Engine> = Box::new(onefolder_core::Indexed::new(onefolder_engine_yrs::YrsEngine::new()));
        let lib = Library::new(Mutex::new(engine));
        let location = lib.add_location("Library", Some("")).unwrap();
        let animals = lib.create_tag_path("Animals", None).unwrap();
        let cats = lib.create_tag_path("Animals/Cats", None).unwrap();
        let drafts = lib.create_tag_path("Drafts", None).unwrap();
        let files: Vec<String> =
            (0..4).map(|i| lib.upsert_file(&location, &format!("{i}.jpg"), &meta(i)).unwrap()).collect();
        // The first query builds the index; everything after keeps it.
        assert_eq!(lib.file_counts().unwrap(), FileCounts { files: 4, untagged: 4 });
        lib.assign(&files[0], &cats).unwrap();
        lib.assign(&files[1], &animals).unwrap();
        lib.assign(&files[2], &drafts).unwrap();
        let ids = |v: Vec<File>| v.into_iter().map(|f| f.id).collect::<Vec<_>>();
        let mut both = vec![files[0].clone(), files[1].clone()];
        both.sort();
        assert_eq!(ids(lib.files_with_tag(&animals, true).unwrap()), both);
        assert_eq!(ids(lib.files_with_tag(&animals, false).unwrap()), [files[1].clone()]);
        assert_eq!(ids(lib.untagged_files().unwrap()), [files[3].clone()]);
        assert_eq!(
            lib.tag_file_counts().unwrap(),
            BTreeMap::from([(animals.clone(), 1), (cats, 1), (drafts.clone(), 1)])
        );
        // A file whose only tag is deleted is untagged; a removed file is gone from every answer.
        lib.delete_tag(&drafts).unwrap();
        lib.remove_file(&files[3]).unwrap();
        assert_eq!(ids(lib.untagged_files().unwrap()), [files[2].clone()]);
        assert_eq!(lib.file_counts().unwrap(), FileCounts { files: 3, untagged: 1 });
        assert!(!lib.tag_file_counts().unwrap().contains_key(&drafts));
        assert!(matches!(lib.files_with_tag(&drafts, true), Err(ModelError::UnknownTag(_))));
    }
}
