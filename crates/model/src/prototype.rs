//! The database of OneFolder's JavaScript prototype, imported into the library
//! ([`Library::import_prototype`]).
//!
//! The prototype kept one Yjs document with the maps `files`, `tags`, `locations` and
//! `searches`, each record one whole JSON value in OneFolder's DTO shapes (`FileDTO`, `TagDTO`,
//! `LocationDTO`, `FileSearchDTO`). Reading its bytes is an engine's business (the yrs adapter's
//! `prototype` module); this module takes the four maps as JSON ([`Prototype`]) and writes them
//! the way this library keeps them, in one batch, so that the import syncs like any edit:
//!
//! - **Locations.** Where a location's `path` is on this computer decides its id (the caller
//!   says, through [`Place`]): inside the library folder it gets the id its library-relative
//!   path gives ([`ids::library_location_id`], the same on every computer); outside, it keeps
//!   the prototype's id and its path becomes this computer's setting ([`PrototypeImport::local_paths`])
//!   — never a shared field. Records with the same path are one location (the prototype
//!   duplicated locations on reload); `subLocations` marked `isExcluded` become exclusions.
//! - **Tags.** The tree comes from the `subTags` lists, in their order, below OneFolder's root
//!   tag (`root`, not imported); a tag listed by two parents stays under the first one met from
//!   the roots, a tag no root reaches (a cycle) becomes a root. Ids are recomputed from the
//!   parent and the name ([`ids::tag_id`]), so two tags of one name under one parent (the
//!   prototype's duplicates) are one tag; a tag of that name already in the library is that tag.
//!   Colour, hidden, date, implied tags (`impliedTags`, `copyImpliedTags`) are kept.
//! - **Files.** The id is recomputed from the new location id and the location-relative path
//!   ([`ids::file_id`]); `absolutePath` and `ino` are this computer's business and are not
//!   stored. Records that become one file (the same image under two ids, or under duplicated
//!   locations) are merged: the union of their tags, the earliest `dateAdded`, the facts of the
//!   most recently indexed record, every distinct annotation. Tag ids go through the tag map.
//! - **Searches.** Kept with their ids; tag ids inside the criteria go through the tag map, so
//!   a saved search still finds what it found.
//!
//! What is in the library already is kept: an existing file gains the tags it lacks (and an
//! earlier `dateAdded`), existing tags and locations are not changed, so importing twice writes
//! nothing the second time. A record of the wrong shape (a missing or mistyped field) is
//! skipped and counted, with a warning; nothing in the input makes the import panic.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use fractional_index::FractionalIndex;
use onefolder_core::{Document, Op, Value};
use serde::Serialize;
use serde_json::{Map as JsonMap, Value as Json};

use crate::{FILES, LOCATIONS, Library, Result, TAG_COPY_IMPLIED, TAG_IMPLIED, TAGS, dates, ids, layout};

/// The id of OneFolder's invisible root tag: its `subTags` are the top-level tags.
pub const ROOT_TAG_ID: &str = "root";

/// The prototype's four maps: record id → the record's JSON.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Prototype {
    /// `files` (FileDTOs).
    pub files: JsonMap<String, Json>,
    /// `tags` (TagDTOs).
    pub tags: JsonMap<String, Json>,
    /// `locations` (LocationDTOs).
    pub locations: JsonMap<String, Json>,
    /// `searches` (FileSearchDTOs).
    pub searches: JsonMap<String, Json>,
}

/// Where a prototype location's `path` is, as this computer sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    /// Inside the library folder, at this library-relative path (`""` = the folder itself).
    Library(String),
    /// An existing location of the library is at this path on this computer (its id).
    Known(String),
    /// Outside the library folder, a folder on this computer.
    Here,
    /// Not on this computer (a path another computer wrote).
    Elsewhere,
}

/// How many prototype records were merged into another one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Merged {
    /// File records that were the same file as another.
    pub files: usize,
    /// Tag records that were the same tag as another (or as a tag of the library).
    pub tags: usize,
    /// Location records with the path of another.
    pub locations: usize,
}

/// A location of the import that this computer has no path for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Unmapped {
    /// Its id in the library.
    pub id: String,
    /// Its name (the folder name).
    pub name: String,
    /// The path the prototype recorded (on another computer).
    pub path: String,
}

/// What [`Library::import_prototype`] did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrototypeImport {
    /// Files the prototype's records became.
    pub files: usize,
    /// Tags (OneFolder's root tag not counted).
    pub tags: usize,
    /// Locations.
    pub locations: usize,
    /// Saved searches.
    pub searches: usize,
    /// Duplicates merged.
    pub duplicates_merged: Merged,
    /// Records skipped because of their shape (each has a warning).
    pub skipped: usize,
    /// What was skipped or changed, one line each.
    pub warnings: Vec<String>,
    /// Location id → its path on this computer (for [`crate::local::location_path_setting`]);
    /// written by the caller, after the import, since it is not part of the shared document.
    pub local_paths: BTreeMap<String, String>,
    /// Locations this computer has no path for.
    pub unmapped: Vec<Unmapped>,
    /// Edits written (0 when the library held everything already).
    pub edits: usize,
}

impl PrototypeImport {
    fn skip(&mut self, what: String) {
        self.skipped += 1;
        self.warnings.push(format!("{what} (skipped)"));
    }
}

// ---------------------------------------------------------------- reading fields

/// The fields of one record, read with their expected types; `null` is an absent field.
struct Fields<'a> {
    obj: &'a JsonMap<String, Json>,
}

type Field<T> = std::result::Result<T, String>;

impl<'a> Fields<'a> {
    fn of(value: &'a Json) -> Field<Self> {
        value.as_object().map(|obj| Fields { obj }).ok_or_else(|| "is not an object".to_owned())
    }

    fn get(&self, key: &str) -> Option<&'a Json> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    fn str(&self, key: &str) -> Field<Option<&'a str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Json::String(s)) => Ok(Some(s)),
            Some(_) => Err(format!("{key} is not a string")),
        }
    }

    fn required_str(&self, key: &str) -> Field<&'a str> {
        self.str(key)?.filter(|s| !s.is_empty()).ok_or_else(|| format!("has no {key}"))
    }

    fn int(&self, key: &str) -> Field<Option<i64>> {
        match self.get(key) {
            None => Ok(None),
            Some(Json::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().map(|f| f.round() as i64))
                .map(Some)
                .ok_or_else(|| format!("{key} is not a number")),
            Some(_) => Err(format!("{key} is not a number")),
        }
    }

    fn bool(&self, key: &str) -> Field<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Json::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(format!("{key} is not true or false")),
        }
    }

    /// A date as ms since the epoch: a number, an ISO 8601 string, or (a JavaScript `Date`
    /// that went through Yjs, which keeps none of its value) an empty object, read as unknown.
    fn date(&self, key: &str) -> Field<Option<i64>> {
        match self.get(key) {
            None => Ok(None),
            Some(Json::Object(o)) if o.is_empty() => Ok(None),
            Some(Json::String(s)) => {
                dates::parse_time(s).map(Some).ok_or_else(|| format!("{key} is not a date: {s:?}"))
            }
            Some(Json::Number(_)) => self.int(key),
            Some(_) => Err(format!("{key} is not a date")),
        }
    }

    fn strings(&self, key: &str) -> Field<Vec<&'a str>> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Json::Array(items)) => items
                .iter()
                .map(|v| v.as_str().ok_or_else(|| format!("{key} holds a value that is not an id")))
                .collect(),
            Some(_) => Err(format!("{key} is not a list")),
        }
    }
}

/// Whether a prototype id can be an id here as it is (ids are record keys; the engines refuse
/// some characters).
fn usable_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The library's id for a prototype record that keeps its id.
fn kept_id(collection: &str, id: &str) -> String {
    if usable_id(id) { id.to_owned() } else { ids::foreign_id(collection, id) }
}

/// A location path without trailing separators (`/` stays `/`).
fn trim_path(path: &str) -> &str {
    let t = path.trim_end_matches(['/', '\\']);
    if t.is_empty() { &path[..1.min(path.len())] } else { t }
}

/// The last component of a path.
fn folder_name(path: &str) -> String {
    trim_path(path).rsplit(['/', '\\']).next().filter(|n| !n.is_empty()).unwrap_or(path).to_owned()
}

/// Excluded location-relative paths of a `subLocations` tree.
fn exclusions(value: Option<&Json>, prefix: &str, out: &mut BTreeSet<String>) -> Field<()> {
    let items = match value {
        None | Some(Json::Null) => return Ok(()),
        Some(Json::Array(items)) => items,
        Some(_) => return Err("subLocations is not a list".into()),
    };
    for item in items {
        let f = Fields::of(item).map_err(|e| format!("a sub-location {e}"))?;
        let name = f.required_str("name").map_err(|e| format!("a sub-location {e}"))?;
        let path = if prefix.is_empty() { name.to_owned() } else { format!("{prefix}/{name}") };
        if f.bool("isExcluded")?.unwrap_or(false) {
            out.insert(path.clone());
        }
        exclusions(f.get("subLocations"), &path, out)?;
    }
    Ok(())
}

// ---------------------------------------------------------------- records

struct ProtoLocation<'a> {
    id: &'a str,
    path: &'a str,
    date_added: Option<i64>,
    index: Option<i64>,
    exclusions: BTreeSet<String>,
}

fn location<'a>(id: &'a str, value: &'a Json) -> Field<ProtoLocation<'a>> {
    let f = Fields::of(value)?;
    let mut excluded = BTreeSet::new();
    exclusions(f.get("subLocations"), "", &mut excluded)?;
    Ok(ProtoLocation {
        id,
        path: trim_path(f.required_str("path")?),
        date_added: f.date("dateAdded")?,
        index: f.int("index")?,
        exclusions: excluded,
    })
}

struct ProtoTag<'a> {
    name: String,
    color: Option<&'a str>,
    hidden: bool,
    date_added: Option<i64>,
    sub_tags: Vec<&'a str>,
    implied: Vec<&'a str>,
    copy_implied: bool,
}

fn tag(value: &Json) -> Field<ProtoTag<'_>> {
    let f = Fields::of(value)?;
    let name = f.required_str("name")?;
    Ok(ProtoTag {
        name: name.to_owned(),
        color: f.str("color")?.filter(|c| !c.is_empty()),
        hidden: f.bool("isHidden")?.unwrap_or(false),
        date_added: f.date("dateAdded")?,
        sub_tags: f.strings("subTags")?,
        implied: f.strings("impliedTags")?,
        copy_implied: f.bool("copyImpliedTags")?.unwrap_or(false),
    })
}

struct ProtoFile<'a> {
    key: &'a str,
    location: String,
    path: String,
    tags: Vec<&'a str>,
    size: i64,
    width: Option<i64>,
    height: Option<i64>,
    date_added: Option<i64>,
    date_modified: i64,
    date_created: i64,
    date_last_indexed: Option<i64>,
    annotations: Option<&'a str>,
}

/// A file record; `locations` maps prototype location ids to (new id, prototype path).
fn file<'a>(key: &'a str, value: &'a Json, locations: &BTreeMap<&str, (String, &str)>) -> Field<ProtoFile<'a>> {
    let f = Fields::of(value)?;
    let location = f.required_str("locationId")?;
    let (new_location, root) = locations
        .get(location)
        .ok_or_else(|| format!("is in location {location:?}, which the database does not hold"))?;
    let rel = match f.str("relativePath")?.filter(|p| !p.is_empty()) {
        Some(rel) => rel.to_owned(),
        None => {
            let abs = f.str("absolutePath")?.ok_or_else(|| "has no relativePath".to_owned())?;
            abs.strip_prefix(*root)
                .filter(|r| r.starts_with(['/', '\\']))
                .map(|r| r.trim_start_matches(['/', '\\']).to_owned())
                .ok_or_else(|| format!("has no relativePath, and its absolutePath is not in its location {root}"))?
        }
    };
    let path = ids::normalize_rel_path(&rel).map_err(|e| e.to_string())?;
    if path.is_empty() {
        return Err("has an empty relativePath".into());
    }
    let known = |v: Option<i64>| v.filter(|v| *v > 0);
    Ok(ProtoFile {
        key,
        location: new_location.clone(),
        path,
        tags: f.strings("tags")?,
        size: f.int("size")?.unwrap_or(0),
        width: known(f.int("width")?),
        height: known(f.int("height")?),
        date_added: known(f.date("dateAdded")?),
        date_modified: f.date("dateModified")?.unwrap_or(0),
        date_created: f.date("dateCreated")?.unwrap_or(0),
        date_last_indexed: known(f.date("dateLastIndexed")?),
        annotations: f.str("annotations")?.filter(|a| !a.trim().is_empty()),
    })
}

struct ProtoSearch {
    name: String,
    criteria: Vec<Json>,
    match_any: bool,
    index: Option<i64>,
}

fn search(value: &Json) -> Field<ProtoSearch> {
    let f = Fields::of(value)?;
    let criteria = match f.get("criteria") {
        None => Vec::new(),
        Some(Json::Array(items)) => items.clone(),
        Some(one @ Json::Object(_)) => vec![one.clone()],
        Some(_) => return Err("criteria is not a list".into()),
    };
    if criteria.iter().any(|c| !c.is_object()) {
        return Err("a criterion is not an object".into());
    }
    Ok(ProtoSearch {
        name: f.required_str("name")?.to_owned(),
        criteria,
        match_any: f.bool("matchAny")?.unwrap_or(false),
        index: f.int("index")?,
    })
}

/// A prototype tag name as a name here: `/` (the tag path separator) becomes `-`, control
/// characters spaces.
fn tag_name(name: &str) -> Option<String> {
    let replaced: String = name
        .chars()
        .map(|c| {
            if c == '/' {
                '-'
            } else if c.is_control() {
                ' '
            } else {
                c
            }
        })
        .collect();
    ids::clean_tag_name(&replaced).ok()
}

/// Order keys for `n` children after `last`.
fn keys_after(last: Option<&str>, n: usize) -> Vec<String> {
    let mut prev = last.and_then(|l| FractionalIndex::from_string(l).ok());
    (0..n)
        .map(|_| {
            let next = match &prev {
                Some(p) => FractionalIndex::new_after(p),
                None => FractionalIndex::default(),
            };
            let s = next.to_string();
            prev = Some(next);
            s
        })
        .collect()
}

/// Tag ids in one criterion's value mapped through `map` (ids it does not know are kept: they
/// matched nothing in the prototype either).
fn remap_criterion(mut c: Json, map: &BTreeMap<&str, String>) -> Json {
    if c.get("key").and_then(Json::as_str) != Some("tags") {
        return c;
    }
    let swap = |v: &mut Json| {
        if let Some(new) = v.as_str().and_then(|id| map.get(id)) {
            *v = Json::String(new.clone());
        }
    };
    if let Some(value) = c.get_mut("value") {
        match value {
            Json::Array(items) => items.iter_mut().for_each(swap),
            v @ Json::String(_) => swap(v),
            _ => {}
        }
    }
    c
}

impl<D: Document> Library<D> {
    /// Imports the prototype's records ([`Prototype`]) in one batch, merged with what the
    /// library holds (see the module docs). `place` says where a location path the prototype
    /// recorded is on this computer. The caller records [`PrototypeImport::local_paths`] as
    /// this computer's location paths once this returns.
    pub fn import_prototype(&self, proto: &Prototype, place: impl Fn(&str) -> Place) -> Result<PrototypeImport> {
        let mut report = PrototypeImport::default();
        let now = self.doc.now_ms();
        let existing_tags = self.tags()?;
        let existing_locations = self.locations()?;
        let mut ops: Vec<Op> = Vec::new();

        // ---- locations, grouped by path
        let mut by_path: BTreeMap<&str, Vec<ProtoLocation<'_>>> = BTreeMap::new();
        for (id, value) in &proto.locations {
            match location(id, value) {
                Ok(l) => by_path.entry(l.path).or_default().push(l),
                Err(e) => report.skip(format!("location {id:?}: {e}")),
            }
        }
        // prototype location id → (new id, its prototype path)
        let mut location_map: BTreeMap<&str, (String, &str)> = BTreeMap::new();
        // new id → (name, rel path, date added, index, exclusions) of locations to write
        struct NewLocation {
            name: String,
            rel: Option<String>,
            date_added: Option<i64>,
            index: Option<i64>,
            exclusions: BTreeSet<String>,
            records: usize,
        }
        let mut new_locations: BTreeMap<String, NewLocation> = BTreeMap::new();
        for (path, mut group) in by_path {
            group.sort_by_key(|l| (l.date_added.unwrap_or(i64::MAX), l.index.unwrap_or(i64::MAX), l.id));
            let first = &group[0];
            let (id, rel) = match place(path) {
                Place::Library(rel) => {
                    match ids::library_location_id(&rel).and_then(|id| Ok((id, ids::normalize_rel_path(&rel)?))) {
                        Ok((id, rel)) => (id, Some(rel)),
                        Err(e) => {
                            for l in &group {
                                report.skip(format!("location {:?} at {path}: {e}", l.id));
                            }
                            continue;
                        }
                    }
                }
                Place::Known(id) => (id, None),
                Place::Here => {
                    let id = kept_id(LOCATIONS, first.id);
                    report.local_paths.insert(id.clone(), path.to_owned());
                    (id, None)
                }
                Place::Elsewhere => {
                    let id = kept_id(LOCATIONS, first.id);
                    report.unmapped.push(Unmapped { id: id.clone(), name: folder_name(path), path: path.to_owned() });
                    (id, None)
                }
            };
            let entry = new_locations.entry(id.clone()).or_insert_with(|| NewLocation {
                name: folder_name(path),
                rel,
                date_added: None,
                index: None,
                exclusions: BTreeSet::new(),
                records: 0,
            });
            for l in &group {
                location_map.insert(l.id, (id.clone(), path));
                entry.records += 1;
                entry.date_added = match (entry.date_added, l.date_added.filter(|d| *d > 0)) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                entry.index = match (entry.index, l.index) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                for x in &l.exclusions {
                    match ids::normalize_rel_path(x) {
                        Ok(p) if !p.is_empty() => {
                            entry.exclusions.insert(p);
                        }
                        _ => report
                            .warnings
                            .push(format!("location {:?}: excluded folder {x:?} is not a path (dropped)", l.id)),
                    }
                }
            }
        }
        for (id, l) in &new_locations {
            report.duplicates_merged.locations += l.records - 1;
            let have = existing_locations.get(id);
            if have.is_none() {
                ops.push(Op::create(LOCATIONS, id));
                ops.push(Op::put(LOCATIONS, id, "name", l.name.as_str()));
                ops.push(Op::put(LOCATIONS, id, "dateAdded", l.date_added.unwrap_or(now)));
                if let Some(rel) = &l.rel {
                    ops.push(Op::put(LOCATIONS, id, "relPath", rel.as_str()));
                }
                if let Some(index) = l.index {
                    ops.push(Op::put(LOCATIONS, id, "index", index));
                }
            }
            let excluded = have.map(|h| &h.exclusions);
            for x in l.exclusions.iter().filter(|x| !excluded.is_some_and(|e| e.contains(*x))) {
                ops.push(Op::set_add(LOCATIONS, id, "exclusions", x.as_str()));
            }
        }
        report.locations = new_locations.len();

        // ---- tags: the tree from `subTags`
        let mut tags: BTreeMap<&str, ProtoTag<'_>> = BTreeMap::new();
        let mut root_children: Vec<&str> = Vec::new();
        for (id, value) in &proto.tags {
            if id == ROOT_TAG_ID {
                match Fields::of(value).and_then(|f| f.strings("subTags")) {
                    Ok(children) => root_children = children,
                    Err(e) => report.warnings.push(format!("OneFolder's root tag {e}: the top-level order is lost")),
                }
                continue;
            }
            match tag(value) {
                Ok(t) => {
                    tags.insert(id, t);
                }
                Err(e) => report.skip(format!("tag {id:?}: {e}")),
            }
        }
        let listed: BTreeSet<&str> = tags.values().flat_map(|t| t.sub_tags.iter().copied()).collect();
        let mut roots: Vec<&str> = root_children.iter().copied().filter(|c| tags.contains_key(c)).collect();
        let mut others: Vec<&str> =
            tags.keys().copied().filter(|id| !listed.contains(id) && !roots.contains(id)).collect();
        others.sort_by_key(|id| (tags[id].date_added.unwrap_or(i64::MAX), ids::tag_name_key(&tags[id].name), *id));
        roots.extend(others);
        // Breadth first from the roots: parents before children, children in list order.
        let mut placed: Vec<(&str, Option<&str>)> = Vec::new();
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        let mut queue: VecDeque<(&str, Option<&str>)> = VecDeque::new();
        let mut pending_roots = roots.into_iter();
        loop {
            while let Some((id, parent)) = queue.pop_front() {
                placed.push((id, parent));
                for &c in &tags[id].sub_tags {
                    if tags.contains_key(c) && seen.insert(c) {
                        queue.push_back((c, Some(id)));
                    }
                }
            }
            let next = pending_roots.find(|r| !seen.contains(r)).or_else(|| {
                // Tags only a cycle reaches: the first of them becomes a root.
                let left = tags.keys().copied().find(|id| !seen.contains(id));
                if let Some(id) = left {
                    report.warnings.push(format!(
                        "tag {id:?} ({}) is in a cycle of subTags; it is a top-level tag now",
                        tags[id].name
                    ));
                }
                left
            });
            let Some(root) = next else { break };
            seen.insert(root);
            queue.push_back((root, None));
        }
        let mut tag_map: BTreeMap<&str, String> = BTreeMap::new();
        // new id → what to write for a tag new to the library
        struct NewTag {
            name: String,
            parent: Option<String>,
            color: Option<String>,
            hidden: bool,
            date_added: Option<i64>,
            implied: BTreeSet<String>,
            copy_implied: bool,
        }
        let mut new_tags: BTreeMap<String, NewTag> = BTreeMap::new();
        let mut order_of_new: Vec<String> = Vec::new();
        let mut proto_of: Vec<(&str, String)> = Vec::new();
        for (id, parent) in placed {
            let t = &tags[id];
            let Some(name) = tag_name(&t.name) else {
                report.skip(format!("tag {id:?}: has no name"));
                continue;
            };
            if t.name.contains(|c: char| c == '/' || c.is_control()) {
                report.warnings.push(format!("tag {:?} is named {name:?} here (a tag name cannot hold '/')", t.name));
            }
            // A parent skipped for its name: the tag goes to the root.
            let new_parent = parent.and_then(|p| tag_map.get(p)).cloned();
            let key = ids::tag_name_key(&name);
            let sibling = |candidate_parent: Option<&String>, candidate_name: &str| {
                candidate_parent == new_parent.as_ref() && ids::tag_name_key(candidate_name) == key
            };
            let known = existing_tags.values().find(|e| sibling(e.parent.as_ref(), &e.name)).map(|e| e.id.clone());
            let converted =
                || new_tags.iter().find(|(_, n)| sibling(n.parent.as_ref(), &n.name)).map(|(id, _)| id.clone());
            let new_id = match known.or_else(converted) {
                Some(id) => {
                    if let Some(n) = new_tags.get_mut(&id) {
                        n.color = n.color.take().or(t.color.map(str::to_owned));
                        n.date_added = match (n.date_added, t.date_added) {
                            (Some(a), Some(b)) => Some(a.min(b)),
                            (a, b) => a.or(b),
                        };
                        n.copy_implied |= t.copy_implied;
                    }
                    id
                }
                None => {
                    let id = ids::tag_id(new_parent.as_deref(), &name);
                    // A tag of the library with this id (moved elsewhere since) is the tag.
                    if !existing_tags.contains_key(&id) {
                        order_of_new.push(id.clone());
                        new_tags.insert(
                            id.clone(),
                            NewTag {
                                name,
                                parent: new_parent.clone(),
                                color: t.color.map(str::to_owned),
                                hidden: t.hidden,
                                date_added: t.date_added,
                                implied: BTreeSet::new(),
                                copy_implied: t.copy_implied,
                            },
                        );
                    }
                    id
                }
            };
            tag_map.insert(id, new_id.clone());
            proto_of.push((id, new_id));
        }
        for (id, new_id) in &proto_of {
            let implied: Vec<String> =
                tags[id].implied.iter().filter_map(|i| tag_map.get(i)).filter(|i| *i != new_id).cloned().collect();
            if let Some(n) = new_tags.get_mut(new_id) {
                n.implied.extend(implied);
            }
        }
        report.tags = tag_map.values().collect::<BTreeSet<_>>().len();
        report.duplicates_merged.tags = tag_map.len() - report.tags;
        // Order keys: new children after the library's last child of their parent, in the
        // order they were placed.
        let mut by_parent: BTreeMap<Option<String>, Vec<&String>> = BTreeMap::new();
        for id in &order_of_new {
            by_parent.entry(new_tags[id].parent.clone()).or_default().push(id);
        }
        for (parent, children) in by_parent {
            let last = existing_tags
                .values()
                .filter(|t| t.parent == parent)
                .filter_map(|t| FractionalIndex::from_string(&t.order).ok())
                .max()
                .map(|k| k.to_string());
            let keys = keys_after(last.as_deref(), children.len());
            for (id, key) in children.into_iter().zip(keys) {
                let n = &new_tags[id];
                ops.push(Op::create(TAGS, id));
                ops.push(Op::put(TAGS, id, "name", n.name.as_str()));
                ops.push(Op::put(TAGS, id, "parent", Value::from(n.parent.clone())));
                ops.push(Op::put(TAGS, id, "order", key));
                ops.push(Op::put(TAGS, id, "dateAdded", n.date_added.unwrap_or(now)));
                if let Some(c) = &n.color {
                    ops.push(Op::put(TAGS, id, "color", c.as_str()));
                }
                if n.hidden {
                    ops.push(Op::put(TAGS, id, "isHidden", true));
                }
                if n.copy_implied {
                    ops.push(Op::put(TAGS, id, TAG_COPY_IMPLIED, true));
                }
                ops.extend(n.implied.iter().map(|i| Op::set_add(TAGS, id, TAG_IMPLIED, i.as_str())));
            }
        }

        // ---- files, grouped by their new id
        let mut by_id: BTreeMap<String, Vec<ProtoFile<'_>>> = BTreeMap::new();
        for (key, value) in &proto.files {
            match file(key, value, &location_map)
                .and_then(|f| Ok((ids::file_id(&f.location, &f.path).map_err(|e| e.to_string())?, f)))
            {
                Ok((id, f)) => by_id.entry(id).or_default().push(f),
                Err(e) => report.skip(format!("file {key:?}: {e}")),
            }
        }
        report.files = by_id.len();
        let unknown: BTreeSet<&str> = by_id
            .values()
            .flat_map(|group| group.iter().flat_map(|f| f.tags.iter()))
            .filter(|t| !tag_map.contains_key(**t) && **t != ROOT_TAG_ID)
            .copied()
            .collect();
        if !unknown.is_empty() {
            let some: Vec<&str> = unknown.iter().take(5).copied().collect();
            report.warnings.push(format!(
                "files carry {} tag id(s) the database defines no tag for ({}{}): those assignments are left out",
                unknown.len(),
                some.join(", "),
                if unknown.len() > some.len() { ", …" } else { "" }
            ));
        }
        for (id, group) in by_id {
            report.duplicates_merged.files += group.len() - 1;
            let tags: BTreeSet<&str> =
                group.iter().flat_map(|f| f.tags.iter().filter_map(|t| tag_map.get(t)).map(String::as_str)).collect();
            let mut notes: Vec<&str> = Vec::new();
            for a in group.iter().filter_map(|f| f.annotations) {
                if !notes.contains(&a) {
                    notes.push(a);
                }
            }
            let annotations = (!notes.is_empty()).then(|| notes.join("\n"));
            let date_added = group.iter().filter_map(|f| f.date_added).min();
            let latest = group
                .iter()
                .max_by_key(|f| (f.date_last_indexed.unwrap_or(0), f.date_modified, std::cmp::Reverse(f.key)))
                .expect("a group is never empty");
            let record = self.read(|e| e.record(FILES, &id))?;
            match record {
                None => {
                    let meta = layout::Meta {
                        location: latest.location.clone(),
                        path: latest.path.clone(),
                        size: latest.size,
                        date_added: date_added.unwrap_or(now),
                        date_modified: latest.date_modified,
                        date_created: latest.date_created,
                        fingerprint: None,
                        width: latest.width,
                        height: latest.height,
                        date_last_indexed: latest.date_last_indexed,
                    };
                    ops.extend(layout::create_file_ops(&id, &meta));
                    ops.extend(tags.iter().map(|t| Op::set_add(FILES, &id, layout::FILE_TAGS, t)));
                    if let Some(a) = annotations {
                        ops.push(Op::put(FILES, &id, layout::FILE_ANNOTATIONS, a));
                    }
                }
                Some(r) => {
                    let have = crate::set_field(&r, layout::FILE_TAGS);
                    ops.extend(
                        tags.iter()
                            .filter(|t| !have.contains(**t))
                            .map(|t| Op::set_add(FILES, &id, layout::FILE_TAGS, t)),
                    );
                    if let (None, Some(a)) = (r.get(layout::FILE_ANNOTATIONS), annotations) {
                        ops.push(Op::put(FILES, &id, layout::FILE_ANNOTATIONS, a));
                    }
                    // The prototype knew when the file was first added.
                    if let (Some(mut meta), Some(earlier)) = (layout::record_meta(&r), date_added) {
                        if earlier < meta.date_added {
                            meta.date_added = earlier;
                            ops.push(Op::put(FILES, &id, layout::FILE_META, meta.encode()));
                        }
                    }
                }
            }
        }

        // ---- searches
        let mut searches = Vec::new();
        for (id, value) in &proto.searches {
            match search(value) {
                Ok(s) => searches.push((kept_id(crate::SEARCHES, id), s)),
                Err(e) => report.skip(format!("search {id:?}: {e}")),
            }
        }
        report.searches = searches.len();

        report.edits = self.in_batch(|batch| {
            batch.write(&ops)?;
            for (id, s) in searches {
                let criteria: Vec<Json> = s.criteria.into_iter().map(|c| remap_criterion(c, &tag_map)).collect();
                batch.put_search(&id, &s.name, &Json::Array(criteria), s.match_any, s.index)?;
            }
            Ok(batch.pending())
        })?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use onefolder_core::Engine;
    use serde_json::json;

    use super::*;
    use crate::criteria::Criterion;

    type Lib = Library<Mutex<Box<dyn Engine>>>;

    fn library() -> Lib {
        Library::new(Mutex::new(Box::new(onefolder_engine_yrs::YrsEngine::new()) as Box<dyn Engine>))
    }

    fn records(items: &[Json]) -> JsonMap<String, Json> {
        items.iter().map(|r| (r["id"].as_str().unwrap().to_owned(), r.clone())).collect()
    }

    fn proto(files: &[Json], tags: &[Json], locations: &[Json], searches: &[Json]) -> Prototype {
        Prototype {
            files: records(files),
            tags: records(tags),
            locations: records(locations),
            searches: records(searches),
        }
    }

    /// `/pics` is the library folder, `/elsewhere/*` another computer's, `/here/*` folders here.
    fn place(path: &str) -> Place {
        if let Some(rel) = path.strip_prefix("/pics") {
            Place::Library(rel.trim_start_matches('/').to_owned())
        } else if path.starts_with("/here") {
            Place::Here
        } else {
            Place::Elsewhere
        }
    }

    fn tag(id: &str, name: &str, sub_tags: &[&str]) -> Json {
        json!({"id": id, "name": name, "color": "", "subTags": sub_tags, "impliedTags": [], "isHidden": false, "dateAdded": 5})
    }

    fn file(id: &str, location: &str, rel: &str, tags: &[&str]) -> Json {
        json!({"id": id, "locationId": location, "relativePath": rel, "absolutePath": format!("/x/{rel}"),
               "ino": "7", "tags": tags, "size": 10, "width": 0, "height": 0, "dateAdded": 100,
               "dateModified": 50, "dateCreated": 40, "dateLastIndexed": 100, "name": "n", "extension": "jpg"})
    }

    fn paths(lib: &Lib) -> BTreeMap<String, String> {
        let tags = lib.tags().unwrap();
        let mut out = BTreeMap::new();
        for t in tags.values() {
            let mut path = t.name.clone();
            let mut cur = t.parent.clone();
            while let Some(p) = cur {
                path = format!("{}/{path}", tags[&p].name);
                cur = tags[&p].parent.clone();
            }
            out.insert(t.id.clone(), path);
        }
        out
    }

    fn tags_of(lib: &Lib, file: &str) -> Vec<String> {
        let paths = paths(lib);
        lib.file(file)
            .unwrap()
            .unwrap()
            .tags
            .iter()
            .map(|t| paths[t].clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    #[test]
    fn duplicated_locations_and_files_are_merged_with_the_union_of_their_tags() {
        let lib = library();
        let p = proto(
            &[
                file("f1", "l1", "2024/cat.jpg", &["cats"]),
                json!({"id": "f2", "locationId": "l2", "relativePath": "2024\\cat.jpg", "tags": ["cute", "gone"],
                       "dateAdded": "1970-01-01T00:00:00.090Z", "annotations": "on the sofa"}),
                file("f3", "l3", "2024/cat.jpg", &["cats2"]),
                file("f4", "l1", "2024/dog.jpg", &[]),
            ],
            &[tag("cats", "Cats", &[]), tag("cats2", " cats ", &[]), tag("cute", "Cute", &[])],
            &[
                json!({"id": "l1", "path": "/pics", "dateAdded": 3, "subLocations": [], "index": 0}),
                json!({"id": "l2", "path": "/pics/", "dateAdded": 2, "index": 1,
                       "subLocations": [{"name": "Private", "isExcluded": true, "subLocations": []}]}),
                json!({"id": "l3", "path": "/elsewhere/Pictures", "dateAdded": 1}),
            ],
            &[],
        );
        let report = lib.import_prototype(&p, place).unwrap();
        assert_eq!((report.files, report.tags, report.locations, report.searches), (3, 2, 2, 0), "{report:#?}");
        assert_eq!(report.duplicates_merged, Merged { files: 1, tags: 1, locations: 1 });
        assert_eq!(report.skipped, 0, "{:?}", report.warnings);

        let root = ids::library_location_id("").unwrap();
        let locations = lib.locations().unwrap();
        assert_eq!(locations.len(), 2);
        assert_eq!(locations[&root].rel_path.as_deref(), Some(""));
        assert_eq!(locations[&root].exclusions, BTreeSet::from(["Private".to_owned()]));
        assert_eq!((locations[&root].date_added, locations[&root].index), (2, Some(0)));
        assert_eq!(
            report.unmapped,
            [Unmapped { id: "l3".into(), name: "Pictures".into(), path: "/elsewhere/Pictures".into() }]
        );
        assert!(report.local_paths.is_empty());

        // The same image under two ids and a duplicated location: one file, both tags.
        let cat = ids::file_id(&root, "2024/cat.jpg").unwrap();
        assert_eq!(tags_of(&lib, &cat), ["Cats", "Cute"]);
        let f = lib.file(&cat).unwrap().unwrap();
        assert_eq!((f.date_added, f.annotations.as_deref(), f.width), (90, Some("on the sofa"), None));
        // Another computer's location of the same name stays its own location.
        let other = ids::file_id("l3", "2024/cat.jpg").unwrap();
        assert_eq!(tags_of(&lib, &other), ["Cats"]);
        assert_eq!(lib.files().unwrap().len(), 3);

        // Importing again changes nothing.
        let before = lib.doc().read(|e| e.version());
        let again = lib.import_prototype(&p, place).unwrap();
        assert_eq!(again.edits, 0);
        assert_eq!(lib.doc().read(|e| e.version()), before);
    }

    #[test]
    fn the_tag_tree_comes_from_sub_tags_in_their_order() {
        let lib = library();
        let existing_places = lib.create_tag_path("Places", Some("green")).unwrap();
        let mut hidden = tag("b", "Birds", &[]);
        hidden["isHidden"] = json!(true);
        hidden["color"] = json!("#00ff00");
        hidden["impliedTags"] = json!(["a", "nope"]);
        let p = proto(
            &[],
            &[
                tag(ROOT_TAG_ID, "Root", &["z", "a", "places"]),
                tag("a", "Animals", &["d", "b", "c"]),
                tag("b", "Birds", &[]),
                tag("c", "Cats", &[]),
                tag("d", "Dogs", &["c"]),
                tag("z", "Zoo", &[]),
                tag("places", "places", &["rome"]),
                tag("rome", "Rome/Italy", &[]),
                tag("x", "X", &["y"]),
                tag("y", "Y", &["x"]),
            ],
            &[],
            &[],
        )
        .tap(|p| {
            p.tags.insert("b".into(), hidden);
        });
        let report = lib.import_prototype(&p, place).unwrap();
        assert_eq!(report.skipped, 0, "{:?}", report.warnings);
        assert!(report.warnings.iter().any(|w| w.contains("\"Rome-Italy\"")), "{:?}", report.warnings);
        let names = |nodes: &[crate::TagNode]| nodes.iter().map(|n| n.tag.name.clone()).collect::<Vec<_>>();
        let tree = lib.tag_tree().unwrap();
        // The root tag's order, then the tags no list names; a cycle becomes a root.
        assert_eq!(names(&tree), ["Places", "Zoo", "Animals", "X"]);
        let animals = &tree[2];
        assert_eq!(names(&animals.children), ["Dogs", "Birds", "Cats"], "listed by two parents: the first met");
        assert_eq!(names(&tree[3].children), ["Y"]);
        // The library's "Places" is the prototype's "places"; its child goes under it.
        assert_eq!(tree[0].tag.id, existing_places);
        assert_eq!(tree[0].tag.color.as_deref(), Some("green"), "an existing tag is not changed");
        assert_eq!(names(&tree[0].children), ["Rome-Italy"]);
        let birds = &animals.children[1].tag;
        assert_eq!(birds.id, ids::tag_id(Some(&animals.tag.id), "Birds"));
        assert!(birds.is_hidden);
        assert_eq!(birds.color.as_deref(), Some("#00ff00"));
        assert_eq!(birds.implied, BTreeSet::from([animals.tag.id.clone()]));
        assert_eq!(report.tags, 9);
    }

    #[test]
    fn tag_ids_in_saved_criteria_follow_the_tags() {
        let lib = library();
        let criteria = json!([{"key": "tags", "valueType": "array", "operator": "containsRecursively", "value": ["animals"]},
                              {"key": "name", "valueType": "string", "operator": "contains", "value": "animals"}]);
        let p = proto(
            &[file("f1", "l1", "cat.jpg", &["cats"]), file("f2", "l1", "car.jpg", &[])],
            &[tag("animals", "Animals", &["cats"]), tag("cats", "Cats", &[])],
            &[json!({"id": "l1", "path": "/pics"})],
            &[
                json!({"id": "s1", "name": "Animals", "criteria": criteria, "matchAny": true, "index": 2}),
                json!({"id": "s/2", "name": "One", "criteria": {"key": "tags", "operator": "contains", "value": "cats"}}),
            ],
        );
        let report = lib.import_prototype(&p, place).unwrap();
        assert_eq!(report.searches, 2);
        let animals = ids::tag_id(None, "Animals");
        let cats = ids::tag_id(Some(&animals), "Cats");
        let searches = lib.searches().unwrap();
        let s1 = &searches["s1"];
        let saved: Vec<Criterion> = serde_json::from_str(&s1.criteria).unwrap();
        assert_eq!(saved[0].value, json!([animals]));
        assert_eq!(saved[1].value, json!("animals"), "only tag criteria hold tag ids");
        assert_eq!((s1.match_any, s1.index), (true, Some(2)));
        let found = lib.search(&saved[..1], false, &BTreeMap::new()).unwrap();
        assert_eq!(found.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), ["cat.jpg"]);
        // An id the engines cannot take gets a stable one.
        let two = &searches[&ids::foreign_id(crate::SEARCHES, "s/2")];
        assert_eq!(
            serde_json::from_str::<Json>(&two.criteria).unwrap(),
            json!([{"key": "tags", "operator": "contains", "value": cats}])
        );
    }

    #[test]
    fn an_assignment_of_an_undefined_tag_is_left_out_with_a_warning() {
        let lib = library();
        let p = proto(
            &[file("f1", "l1", "cat.jpg", &["cats", "ghost"])],
            &[tag("cats", "Cats", &[])],
            &[json!({"id": "l1", "path": "/pics"})],
            &[],
        );
        let report = lib.import_prototype(&p, place).unwrap();
        assert!(
            report.warnings.iter().any(|w| w.contains("1 tag id(s)") && w.contains("ghost")),
            "{:?}",
            report.warnings
        );
        let cats = ids::tag_id(None, "Cats");
        let files = lib.files().unwrap();
        let f = files.values().next().unwrap();
        assert_eq!(f.tags, BTreeSet::from([cats]));
    }

    #[test]
    fn bad_records_are_skipped_and_counted() {
        let lib = library();
        let p = proto(
            &[
                file("good", "l1", "a.jpg", &["t"]),
                json!({"id": "no-path", "locationId": "l1"}),
                json!({"id": "number-path", "locationId": "l1", "relativePath": 7}),
                json!({"id": "no-location", "relativePath": "b.jpg"}),
                json!({"id": "unknown-location", "locationId": "nowhere", "relativePath": "b.jpg"}),
                json!({"id": "climbs", "locationId": "l1", "relativePath": "../b.jpg"}),
                json!({"id": "tags-not-list", "locationId": "l1", "relativePath": "c.jpg", "tags": "t"}),
                json!({"id": "bad-date", "locationId": "l1", "relativePath": "d.jpg", "dateAdded": true}),
                json!({"id": "from-abs", "locationId": "l1", "absolutePath": "/pics/sub/e.jpg", "dateAdded": {}}),
            ],
            &[
                tag("t", "T", &[]),
                json!({"id": "nameless", "subTags": []}),
                json!({"id": "blank", "name": "  "}),
                json!({"id": "sub-not-list", "name": "S", "subTags": 3}),
            ],
            &[
                json!({"id": "l1", "path": "/pics"}),
                json!({"id": "pathless"}),
                json!({"id": "bad-subs", "path": "/q", "subLocations": [1]}),
            ],
            &[
                json!({"id": "s1", "criteria": []}),
                json!({"id": "s2", "name": "x", "criteria": "tags"}),
                json!({"id": "s3", "name": "ok"}),
            ],
        )
        .tap(|p| {
            p.files.insert("not-an-object".into(), json!([1, 2]));
            p.tags.insert("null".into(), Json::Null);
        });
        let report = lib.import_prototype(&p, place).unwrap();
        assert_eq!((report.files, report.tags, report.locations, report.searches), (2, 1, 1, 1), "{report:#?}");
        assert_eq!(report.skipped, 16, "{:#?}", report.warnings);
        assert_eq!(report.warnings.len(), 16);
        assert!(
            report.warnings.iter().any(|w| w.contains("\"number-path\": relativePath is not a string")),
            "{:?}",
            report.warnings
        );
        let root = ids::library_location_id("").unwrap();
        let from_abs =
            lib.file(&ids::file_id(&root, "sub/e.jpg").unwrap()).unwrap().expect("the path from absolutePath");
        assert!(from_abs.date_added > 0, "an unknown date is the import's time");
        assert_eq!(tags_of(&lib, &ids::file_id(&root, "a.jpg").unwrap()), ["T"]);
    }

    #[test]
    fn outside_locations_keep_only_this_computers_path() {
        let lib = library();
        let mine = lib.add_location("Mine", None).unwrap();
        let p = proto(
            &[file("f1", "out", "a.jpg", &[]), file("f2", "known", "b.jpg", &[])],
            &[],
            &[json!({"id": "out", "path": "/here/Scans/", "index": 4}), json!({"id": "known", "path": "/known/Mine"})],
            &[],
        );
        let report = lib
            .import_prototype(&p, |path| if path == "/known/Mine" { Place::Known(mine.clone()) } else { place(path) })
            .unwrap();
        assert_eq!(report.local_paths, BTreeMap::from([("out".to_owned(), "/here/Scans".to_owned())]));
        assert!(report.unmapped.is_empty());
        let locations = lib.locations().unwrap();
        assert_eq!(locations.len(), 2);
        assert_eq!(
            (locations["out"].name.as_str(), locations["out"].rel_path.as_deref(), locations["out"].index),
            ("Scans", None, Some(4))
        );
        assert!(lib.file_at(&mine, "b.jpg").unwrap().is_some());
        let export = lib.export().unwrap().to_json();
        assert!(!export.contains("/here") && !export.contains("/x/"), "no absolute path is shared: {export}");
    }

    trait Tap: Sized {
        fn tap(mut self, f: impl FnOnce(&mut Self)) -> Self {
            f(&mut self);
            self
        }
    }
    impl Tap for Prototype {}
}
