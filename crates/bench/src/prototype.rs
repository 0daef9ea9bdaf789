//! Baseline: the workload W in **the JavaScript prototype's layout**, written straight into the
//! CRDT engine crate (no `onefolder_core::Engine`, no model).
//!
//! The prototype held the whole library in one Yjs document with four root maps, `files`,
//! `tags`, `locations` and `searches`; each record is **one whole JSON-like value** under its id
//! (the DTOs of OneFolder: [`file_record`], [`tag_record`], [`location_record`]), so a tag
//! assignment rewrites the whole file record. Users compare OneFolder Sync with it, so
//! `cargo xtask bench` measures it next to ours:
//!
//! - [`build`] (step `build-prototype`): every record of W written once, with its final tags,
//!   in transactions of [`BATCH`] records (the smallest document this layout can have: no
//!   history of the rewrites the app made while it tagged). Times the engine writes only;
//!   making the records (and, on automerge, their JSON) is not timed, as op generation is not
//!   in `measure::build_raw`. Then the snapshot goes to [`prototype_path`] and one more tag
//!   assignment (the first one the `bytes` step makes: same file, same tag) is made the
//!   prototype's way; its update is `assignment_bytes`.
//! - [`open`] (step `open-prototype`): load of that snapshot into a fresh document (file read
//!   included, as in `measure::open_raw`), peak RSS right after it, then the prototype's
//!   in-memory tag query ([`query_target`]), timed on its own.
//!
//! The engines, by the `--engine` name:
//! - `yrs`: `doc.get_or_insert_map("files")` etc.; a record is a `yrs::Any::Map` of its fields
//!   (integers `Any::Number`, encoded the way lib0 encodes JavaScript numbers; strings
//!   `Any::String`; arrays `Any::Array`). Snapshot: `encode_state_as_update_v1` of the empty
//!   state vector; load: `Update::decode_v1` + `apply_update` on `Doc::new()`.
//! - `automerge`: root keys `files` etc. are map objects made once; a record is one `Str` scalar
//!   holding its JSON (`serde_json`), the whole-record register of that engine. Snapshot:
//!   `Automerge::save`; load: `Automerge::load`; an assignment's bytes are the raw bytes of its
//!   change (what our adapter writes to a segment).

// A build without either engine keeps the records and the query target but cannot build.
#![cfg_attr(not(any(feature = "yrs", feature = "automerge")), allow(dead_code, unused_variables))]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde::Serialize;
use serde_json::{Value, json};

use crate::measure::ms_since;
use crate::workload::{Edit, LOCATIONS_SPEC, RAW_DATE_ADDED, Workload};

/// The engines this baseline can be built on (when their cargo feature is on).
pub const ENGINES: &[&str] = &["yrs", "automerge"];

/// Records per transaction while building.
pub const BATCH: usize = 1000;

/// The root maps of the prototype's document.
pub const COLLECTIONS: [&str; 4] = ["files", "tags", "locations", "searches"];

/// The home folder the locations' absolute paths are under.
pub const HOME: &str = "/home/user";

/// The snapshot [`build`] writes in a working directory.
pub fn prototype_path(dir: &Path) -> PathBuf {
    dir.join("prototype.bin")
}

/// The absolute path of location `i` of [`LOCATIONS_SPEC`].
pub fn location_path(i: usize) -> String {
    format!("{HOME}/{}", LOCATIONS_SPEC[i].1)
}

/// The LocationDTO of location `i`: `id, path, dateAdded, subLocations [], index`.
pub fn location_record(w: &Workload, i: usize) -> (String, Value) {
    let id = w.location_id(i).to_owned();
    let record = json!({
        "id": id,
        "path": location_path(i),
        "dateAdded": RAW_DATE_ADDED,
        "subLocations": [],
        "index": i,
    });
    (id, record)
}

/// The children of every tag, in index order (creation order, the order of `subTags`).
pub fn tag_children(w: &Workload) -> Vec<Vec<usize>> {
    let mut children = vec![Vec::new(); w.preset().tags];
    for j in 0..w.preset().tags {
        if let Some(p) = w.tag(j).parent {
            children[p].push(j);
        }
    }
    children
}

/// The TagDTO of tag `j`: `id, name, dateAdded, color ("" for none), subTags (child ids in
/// order), impliedTags [], isHidden false`; `children` from [`tag_children`].
pub fn tag_record(w: &Workload, j: usize, children: &[Vec<usize>]) -> (String, Value) {
    let t = w.tag(j);
    let id = w.tag_id(j).to_owned();
    let sub_tags: Vec<&str> = children[j].iter().map(|&c| w.tag_id(c)).collect();
    let record = json!({
        "id": id,
        "name": t.name,
        "dateAdded": RAW_DATE_ADDED,
        "color": t.color.as_deref().unwrap_or(""),
        "subTags": sub_tags,
        "impliedTags": [],
        "isHidden": false,
    });
    (id, record)
}

/// The FileDTO of file `i`: `id, ino, locationId, relativePath, absolutePath, tags, dateAdded,
/// dateModified, dateLastIndexed, name, extension, size, width, height, dateCreated,
/// annotations`, with the tags of its assignment rounds `0..tags_of_file(i)`.
pub fn file_record(w: &Workload, i: usize) -> (String, Value) {
    let f = w.file(i);
    let id = w.file_id(i);
    let name = f.path.rsplit('/').next().unwrap_or(&f.path).to_owned();
    let extension = name.rsplit_once('.').map(|(_, e)| e.to_lowercase()).unwrap_or_default();
    let tags: Vec<&str> = (0..w.tags_of_file(i)).map(|round| w.tag_id(w.assignment_tag(i, round))).collect();
    let m = &f.meta;
    let record = json!({
        "id": id,
        // An inode number, as the prototype stored it: a decimal string.
        "ino": (12_000_000 + i as u64 * 37).to_string(),
        "locationId": w.location_id(f.location),
        "relativePath": f.path,
        "absolutePath": format!("{}/{}", location_path(f.location), f.path),
        "tags": tags,
        "dateAdded": RAW_DATE_ADDED,
        "dateModified": m.date_modified,
        "dateLastIndexed": RAW_DATE_ADDED,
        "name": name,
        "extension": extension,
        "size": m.size,
        "width": m.width.unwrap_or(0),
        "height": m.height.unwrap_or(0),
        "dateCreated": m.date_created,
        "annotations": "",
    });
    (id, record)
}

/// Every record of W, collection by collection (locations, tags, files), in batches of
/// [`BATCH`]: `(collection, records)`.
fn batches(w: &Workload) -> impl Iterator<Item = (&'static str, Vec<(String, Value)>)> + '_ {
    let children = tag_children(w);
    let p = w.preset();
    let locations = chunked(LOCATIONS_SPEC.len(), move |i| location_record(w, i)).map(|b| ("locations", b));
    let tags = chunked(p.tags, move |j| tag_record(w, j, &children)).map(|b| ("tags", b));
    let files = chunked(p.files, move |i| file_record(w, i)).map(|b| ("files", b));
    locations.chain(tags).chain(files)
}

fn chunked<T>(n: usize, f: impl Fn(usize) -> T) -> impl Iterator<Item = Vec<T>> {
    (0..n).step_by(BATCH).map(move |start| (start..(start + BATCH).min(n)).map(&f).collect())
}

/// The tag of the prototype's tag query, and what the query must find.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QueryTarget {
    /// Index of the tag: the level-1 tag with the most files in its subtree (the lowest index
    /// among equals). A level-1 tag rather than a root: a large subtree (about a fifth of the
    /// tags under each root) but not the whole tree.
    pub tag: usize,
    /// Tags in its subtree, itself included.
    pub subtree: usize,
    /// Files with at least one tag of the subtree.
    pub files: usize,
}

/// The tag [`open`] queries, from the workload alone (no document needed).
pub fn query_target(w: &Workload) -> QueryTarget {
    let p = w.preset();
    // The level-1 ancestor of every tag (itself for a level-1 tag; none for a root). Parents
    // come before their children.
    let mut above: Vec<Option<usize>> = Vec::with_capacity(p.tags);
    for j in 0..p.tags {
        let t = w.tag(j);
        above.push(match (t.level, t.parent) {
            (1, _) => Some(j),
            (_, Some(parent)) => above[parent],
            (_, None) => None,
        });
    }
    let mut files = vec![0usize; p.tags];
    let mut seen = Vec::new();
    for i in 0..p.files {
        seen.clear();
        for round in 0..w.tags_of_file(i) {
            match above[w.assignment_tag(i, round)] {
                Some(a) if !seen.contains(&a) => {
                    seen.push(a);
                    files[a] += 1;
                }
                _ => {}
            }
        }
    }
    let tag = (0..p.tags)
        .filter(|&j| w.tag(j).level == 1)
        .max_by_key(|&j| (files[j], std::cmp::Reverse(j)))
        .expect("the workload has level-1 tags");
    QueryTarget { tag, subtree: above.iter().filter(|a| **a == Some(tag)).count(), files: files[tag] }
}

/// Result of [`build`].
#[derive(Clone, Debug, Serialize)]
pub struct BuildPrototypeReport {
    /// Records written (locations, tags, files).
    pub records: usize,
    /// Transactions they were written in.
    pub transactions: usize,
    /// Wall time of the engine writes.
    pub ms: f64,
    /// Size of the snapshot written to [`prototype_path`].
    pub snapshot_bytes: u64,
    /// Bytes of the update (yrs) or change (automerge) of one more tag assignment on the built
    /// document: the whole file record rewritten.
    pub assignment_bytes: u64,
    /// The JSON (`serde_json`) of that file record after the assignment, for comparison.
    pub assignment_record_json_bytes: u64,
}

/// Result of [`open`].
#[derive(Clone, Debug, Serialize)]
pub struct OpenPrototypeReport {
    /// Wall time of reading the snapshot and loading it into a fresh document.
    pub ms: f64,
    /// Peak RSS right after the load, KiB.
    pub peak_rss_kib: Option<u64>,
    /// Records in `files` (checked against the preset).
    pub files: usize,
    /// Records in `tags` (checked against the preset).
    pub tags: usize,
    /// Records in `locations`.
    pub locations: usize,
    /// Name of the queried tag ([`QueryTarget::tag`]).
    pub tag_query_tag: String,
    /// Tags in its subtree, found through the `subTags` of the tag records.
    pub tag_query_subtree: usize,
    /// Files found: those whose `tags` array holds a tag of the subtree (checked against the
    /// workload).
    pub tag_query_files: usize,
    /// Wall time of the query: the subtree from `subTags`, then every file record's `tags`.
    pub tag_query_ms: f64,
}

/// The operations the measurements need of a document in the prototype's layout.
trait Layout: Sized {
    /// A record, ready to be written (made before the timed writes).
    type Record;
    fn new() -> Result<Self>;
    fn encode(record: &Value) -> Result<Self::Record>;
    /// Writes `records` into `collection` in one transaction.
    fn write(&mut self, collection: &'static str, records: Vec<(String, Self::Record)>) -> Result<()>;
    fn save(&self) -> Result<Vec<u8>>;
    /// Adds `tag_id` to the `tags` of file `file_id` by rewriting the whole record, in one
    /// transaction; returns the bytes of its update.
    fn assign(&mut self, file_id: &str, tag_id: &str) -> Result<u64>;
    fn load(bytes: &[u8]) -> Result<Self>;
    fn count(&self, collection: &'static str) -> Result<usize>;
    /// The `subTags` of tag `id`.
    fn sub_tags(&self, id: &str) -> Result<Vec<String>>;
    /// Files whose `tags` hold a member of `tags`.
    fn count_tagged(&self, tags: &HashSet<String>) -> Result<usize>;
}

fn build_with<L: Layout>(w: &Workload, dir: &Path) -> Result<BuildPrototypeReport> {
    let mut doc = L::new()?;
    let (mut records, mut transactions, mut total) = (0, 0, Duration::ZERO);
    for (collection, batch) in batches(w) {
        let batch: Vec<(String, L::Record)> =
            batch.into_iter().map(|(id, v)| Ok((id, L::encode(&v)?))).collect::<Result<_>>()?;
        records += batch.len();
        transactions += 1;
        let t = Instant::now();
        doc.write(collection, batch)?;
        total += t.elapsed();
    }
    let snapshot = doc.save()?;
    std::fs::create_dir_all(dir)?;
    std::fs::write(prototype_path(dir), &snapshot).context("writing the prototype's snapshot")?;
    ensure!(doc.count("files")? == w.preset().files, "the prototype build lost files");
    let Some(Edit::Assign { file, tag }) = w.new_assignments(0, 0, 1).next() else {
        bail!("the workload has no new assignment")
    };
    let assignment_bytes = doc.assign(&w.file_id(file), w.tag_id(tag))?;
    let (_, mut record) = file_record(w, file);
    record["tags"].as_array_mut().context("a file record has tags")?.push(w.tag_id(tag).into());
    let assignment_record_json_bytes = serde_json::to_string(&record)?.len() as u64;
    Ok(BuildPrototypeReport {
        records,
        transactions,
        ms: total.as_secs_f64() * 1000.0,
        snapshot_bytes: snapshot.len() as u64,
        assignment_bytes,
        assignment_record_json_bytes,
    })
}

fn open_with<L: Layout>(w: &Workload, dir: &Path) -> Result<OpenPrototypeReport> {
    let target = query_target(w);
    let path = prototype_path(dir);
    let t = Instant::now();
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let doc = L::load(&bytes)?;
    let ms = ms_since(t);
    let peak_rss_kib = crate::peak_rss_kib();
    drop(bytes);
    let p = w.preset();
    let (files, tags, locations) = (doc.count("files")?, doc.count("tags")?, doc.count("locations")?);
    ensure!(files == p.files, "the prototype's document holds {files} files, the preset {}", p.files);
    ensure!(tags == p.tags, "the prototype's document holds {tags} tags, the preset {}", p.tags);

    let t = Instant::now();
    let root = w.tag_id(target.tag).to_owned();
    let mut subtree = HashSet::from([root.clone()]);
    let mut todo = vec![root];
    while let Some(id) = todo.pop() {
        for child in doc.sub_tags(&id)? {
            if subtree.insert(child.clone()) {
                todo.push(child);
            }
        }
    }
    let found = doc.count_tagged(&subtree)?;
    let tag_query_ms = ms_since(t);
    ensure!(subtree.len() == target.subtree, "the subtree has {} tags, expected {}", subtree.len(), target.subtree);
    ensure!(found == target.files, "the tag query found {found} files, expected {}", target.files);
    Ok(OpenPrototypeReport {
        ms,
        peak_rss_kib,
        files,
        tags,
        locations,
        tag_query_tag: w.tag(target.tag).name.clone(),
        tag_query_subtree: subtree.len(),
        tag_query_files: found,
        tag_query_ms,
    })
}

fn unknown(engine: &str) -> anyhow::Error {
    let compiled: Vec<&str> = ENGINES.iter().copied().filter(|e| compiled_in(e)).collect();
    anyhow::anyhow!(
        "the prototype baseline has no engine {engine:?}: it is built on {} (compiled in: {})",
        ENGINES.join(" | "),
        compiled.join(", ")
    )
}

fn compiled_in(engine: &str) -> bool {
    (engine == "yrs" && cfg!(feature = "yrs")) || (engine == "automerge" && cfg!(feature = "automerge"))
}

/// Step `build-prototype`: W in the prototype's layout on `engine` (`yrs` | `automerge`), its
/// snapshot written to [`prototype_path`] in `dir` (created if needed).
pub fn build(engine: &str, w: &Workload, dir: &Path) -> Result<BuildPrototypeReport> {
    match engine {
        #[cfg(feature = "yrs")]
        "yrs" => build_with::<on_yrs::YrsLayout>(w, dir),
        #[cfg(feature = "automerge")]
        "automerge" => build_with::<on_automerge::AutomergeLayout>(w, dir),
        other => Err(unknown(other)),
    }
}

/// Step `open-prototype`: loads what [`build`] wrote in `dir` into a fresh document of `engine`,
/// checks the record counts and runs the tag query.
pub fn open(engine: &str, w: &Workload, dir: &Path) -> Result<OpenPrototypeReport> {
    match engine {
        #[cfg(feature = "yrs")]
        "yrs" => open_with::<on_yrs::YrsLayout>(w, dir),
        #[cfg(feature = "automerge")]
        "automerge" => open_with::<on_automerge::AutomergeLayout>(w, dir),
        other => Err(unknown(other)),
    }
}

/// Fields of a file record the tag query reads (the rest of the JSON is skipped).
#[cfg(feature = "automerge")]
#[derive(serde::Deserialize)]
struct TagsOf {
    #[serde(default, rename = "tags")]
    tags: Vec<String>,
}

/// Fields of a tag record the tag query reads.
#[cfg(feature = "automerge")]
#[derive(serde::Deserialize)]
struct SubTagsOf {
    #[serde(default, rename = "subTags")]
    sub_tags: Vec<String>,
}

#[cfg(feature = "yrs")]
mod on_yrs {
    use std::collections::{HashMap, HashSet};
    use std::sync::Arc;

    use anyhow::{Context, Result, bail};
    use serde_json::Value;
    use yrs::updates::decoder::Decode;
    use yrs::{Any, Doc, Map, MapRef, Number, Out, ReadTxn, StateVector, Transact, Update};

    use super::{COLLECTIONS, Layout};

    pub(super) struct YrsLayout {
        doc: Doc,
        maps: HashMap<&'static str, MapRef>,
    }

    impl YrsLayout {
        fn with(doc: Doc) -> Self {
            let maps = COLLECTIONS.iter().map(|&name| (name, doc.get_or_insert_map(name))).collect();
            YrsLayout { doc, maps }
        }
        fn map(&self, collection: &str) -> Result<&MapRef> {
            self.maps.get(collection).with_context(|| format!("no root map {collection:?}"))
        }
    }

    /// A JSON value as the prototype's Yjs stored it.
    fn to_any(v: &Value) -> Result<Any> {
        Ok(match v {
            Value::Null => Any::Null,
            Value::Bool(b) => Any::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Any::Number(Number::Int(i)),
                None => Any::Number(Number::Float(n.as_f64().context("a JSON number")?)),
            },
            Value::String(s) => Any::String(Arc::from(s.as_str())),
            Value::Array(a) => Any::Array(a.iter().map(to_any).collect::<Result<Arc<[Any]>>>()?),
            Value::Object(o) => {
                Any::Map(Arc::new(o.iter().map(|(k, v)| Ok((k.clone(), to_any(v)?))).collect::<Result<_>>()?))
            }
        })
    }

    fn strings(v: Option<&Any>) -> impl Iterator<Item = &str> {
        let items: &[Any] = match v {
            Some(Any::Array(a)) => a,
            _ => &[],
        };
        items.iter().filter_map(|t| match t {
            Any::String(s) => Some(&**s),
            _ => None,
        })
    }

    fn record(out: Option<Out>) -> Option<Arc<HashMap<String, Any>>> {
        match out {
            Some(Out::Any(Any::Map(m))) => Some(m),
            _ => None,
        }
    }

    impl Layout for YrsLayout {
        type Record = Any;

        fn new() -> Result<Self> {
            Ok(Self::with(Doc::new()))
        }

        fn encode(record: &Value) -> Result<Any> {
            to_any(record)
        }

        fn write(&mut self, collection: &'static str, records: Vec<(String, Any)>) -> Result<()> {
            let map = self.map(collection)?.clone();
            let mut txn = self.doc.transact_mut();
            for (id, value) in records {
                map.insert(&mut txn, id, value);
            }
            Ok(())
        }

        fn save(&self) -> Result<Vec<u8>> {
            Ok(self.doc.transact().encode_state_as_update_v1(&StateVector::default()))
        }

        fn assign(&mut self, file_id: &str, tag_id: &str) -> Result<u64> {
            let files = self.map("files")?.clone();
            let mut txn = self.doc.transact_mut();
            let Some(old) = record(files.get(&txn, file_id)) else { bail!("no file record {file_id:?}") };
            let mut new: HashMap<String, Any> = (*old).clone();
            let mut tags: Vec<Any> = strings(old.get("tags")).map(|s| Any::String(Arc::from(s))).collect();
            tags.push(Any::String(Arc::from(tag_id)));
            new.insert("tags".into(), Any::Array(tags.into()));
            files.insert(&mut txn, file_id, Any::Map(Arc::new(new)));
            Ok(txn.encode_update_v1().len() as u64)
        }

        fn load(bytes: &[u8]) -> Result<Self> {
            let update = Update::decode_v1(bytes).context("decoding the prototype's snapshot")?;
            let doc = Doc::new();
            doc.transact_mut().apply_update(update).context("applying the prototype's snapshot")?;
            Ok(Self::with(doc))
        }

        fn count(&self, collection: &'static str) -> Result<usize> {
            Ok(self.map(collection)?.len(&self.doc.transact()) as usize)
        }

        fn sub_tags(&self, id: &str) -> Result<Vec<String>> {
            let txn = self.doc.transact();
            let tag = record(self.map("tags")?.get(&txn, id)).with_context(|| format!("no tag record {id:?}"))?;
            Ok(strings(tag.get("subTags")).map(str::to_owned).collect())
        }

        fn count_tagged(&self, tags: &HashSet<String>) -> Result<usize> {
            let txn = self.doc.transact();
            Ok(self
                .map("files")?
                .iter(&txn)
                .filter(|(_, out)| match out {
                    Out::Any(Any::Map(m)) => strings(m.get("tags")).any(|t| tags.contains(t)),
                    _ => false,
                })
                .count())
        }
    }
}

#[cfg(feature = "automerge")]
mod on_automerge {
    use std::collections::{HashMap, HashSet};

    use anyhow::{Context, Result, bail};
    use automerge::transaction::Transactable;
    use automerge::{Automerge, ObjId, ObjType, ROOT, ReadDoc, ScalarValueRef, ValueRef};
    use serde_json::Value;

    use super::{COLLECTIONS, Layout, SubTagsOf, TagsOf};

    pub(super) struct AutomergeLayout {
        doc: Automerge,
        objs: HashMap<&'static str, ObjId>,
    }

    impl AutomergeLayout {
        fn obj(&self, collection: &str) -> Result<&ObjId> {
            self.objs.get(collection).with_context(|| format!("no root map {collection:?}"))
        }
        fn json(&self, collection: &str, id: &str) -> Result<Option<String>> {
            Ok(match self.doc.get(self.obj(collection)?, id)? {
                Some((v, _)) => Some(v.as_str().context("a record is a string")?.to_owned()),
                None => None,
            })
        }
    }

    impl Layout for AutomergeLayout {
        type Record = String;

        fn new() -> Result<Self> {
            let mut doc = Automerge::new();
            let mut tx = doc.transaction();
            let mut objs = HashMap::new();
            for name in COLLECTIONS {
                objs.insert(name, tx.put_object(ROOT, name, ObjType::Map)?);
            }
            tx.commit();
            Ok(AutomergeLayout { doc, objs })
        }

        fn encode(record: &Value) -> Result<String> {
            Ok(serde_json::to_string(record)?)
        }

        fn write(&mut self, collection: &'static str, records: Vec<(String, String)>) -> Result<()> {
            let obj = self.obj(collection)?.clone();
            let mut tx = self.doc.transaction();
            for (id, json) in records {
                tx.put(&obj, id, json)?;
            }
            tx.commit();
            Ok(())
        }

        fn save(&self) -> Result<Vec<u8>> {
            Ok(self.doc.save())
        }

        fn assign(&mut self, file_id: &str, tag_id: &str) -> Result<u64> {
            let Some(old) = self.json("files", file_id)? else { bail!("no file record {file_id:?}") };
            let mut record: Value = serde_json::from_str(&old)?;
            record["tags"].as_array_mut().context("a file record has tags")?.push(tag_id.into());
            let json = serde_json::to_string(&record)?;
            let obj = self.obj("files")?.clone();
            let mut tx = self.doc.transaction();
            tx.put(&obj, file_id, json)?;
            let (hash, _) = tx.commit();
            let hash = hash.context("the assignment made no change")?;
            let change = self.doc.get_change_by_hash(&hash).context("the assignment's change")?;
            Ok(change.raw_bytes().len() as u64)
        }

        fn load(bytes: &[u8]) -> Result<Self> {
            let doc = Automerge::load(bytes).context("loading the prototype's snapshot")?;
            let mut objs = HashMap::new();
            for name in COLLECTIONS {
                let (_, id) = doc.get(ROOT, name)?.with_context(|| format!("no root map {name:?}"))?;
                objs.insert(name, id);
            }
            Ok(AutomergeLayout { doc, objs })
        }

        fn count(&self, collection: &'static str) -> Result<usize> {
            Ok(self.doc.length(self.obj(collection)?))
        }

        fn sub_tags(&self, id: &str) -> Result<Vec<String>> {
            let json = self.json("tags", id)?.with_context(|| format!("no tag record {id:?}"))?;
            Ok(serde_json::from_str::<SubTagsOf>(&json)?.sub_tags)
        }

        fn count_tagged(&self, tags: &HashSet<String>) -> Result<usize> {
            let mut n = 0;
            for item in self.doc.map_range(self.obj("files")?, ..) {
                let ValueRef::Scalar(ScalarValueRef::Str(json)) = &item.value else { continue };
                if serde_json::from_str::<TagsOf>(json)?.tags.iter().any(|t| tags.contains(t)) {
                    n += 1;
                }
            }
            Ok(n)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::Preset;

    fn tiny() -> Workload {
        Workload::new(Preset { name: "custom".into(), files: 60, tags: 20, ..Preset::quick() })
    }

    /// The query's answer the slow way: walk up from every assigned tag.
    fn brute_force(w: &Workload, tag: usize) -> (usize, usize) {
        let under = |mut j: usize| loop {
            if j == tag {
                return true;
            }
            match w.tag(j).parent {
                Some(p) => j = p,
                None => return false,
            }
        };
        let subtree = (0..w.preset().tags).filter(|&j| under(j)).count();
        let files =
            (0..w.preset().files).filter(|&i| (0..w.tags_of_file(i)).any(|r| under(w.assignment_tag(i, r)))).count();
        (subtree, files)
    }

    #[test]
    fn the_query_target_is_the_busiest_level_one_tag() {
        let w = tiny();
        let t = query_target(&w);
        assert_eq!(w.tag(t.tag).level, 1);
        assert_eq!(brute_force(&w, t.tag), (t.subtree, t.files));
        for j in (0..w.preset().tags).filter(|&j| w.tag(j).level == 1) {
            assert!(brute_force(&w, j).1 <= t.files, "tag {j} has more files than the target");
        }
        assert!(t.files > 0);
    }

    #[test]
    fn records_carry_the_dto_fields() {
        let w = tiny();
        let (id, f) = file_record(&w, 3);
        assert_eq!(id, w.file_id(3));
        assert_eq!(f["tags"].as_array().map(Vec::len), Some(w.tags_of_file(3)));
        assert!(f["absolutePath"].as_str().unwrap().ends_with(f["relativePath"].as_str().unwrap()));
        assert!(f["ino"].as_str().unwrap().parse::<u64>().is_ok());
        assert_eq!(f.as_object().unwrap().len(), 16);
        let children = tag_children(&w);
        let (_, root) = tag_record(&w, 0, &children);
        assert_eq!(root["subTags"].as_array().unwrap().len(), children[0].len());
        assert_eq!(tag_record(&w, 5, &children).1.as_object().unwrap().len(), 7);
        assert_eq!(location_record(&w, 1).1["path"], format!("{HOME}/Archive"));
    }

    #[test]
    fn builds_and_reopens_on_every_engine() {
        let w = tiny();
        let target = query_target(&w);
        let engines: Vec<&str> = ENGINES.iter().copied().filter(|e| compiled_in(e)).collect();
        assert!(!engines.is_empty());
        for engine in engines {
            let dir = tempfile::tempdir().unwrap();
            let built = build(engine, &w, dir.path()).unwrap();
            assert_eq!(built.records, LOCATIONS_SPEC.len() + 20 + 60, "{engine}");
            assert_eq!(built.snapshot_bytes, std::fs::metadata(prototype_path(dir.path())).unwrap().len());
            // The assignment rewrites the whole record.
            assert!(built.assignment_bytes * 2 > built.assignment_record_json_bytes, "{engine}: {built:?}");
            let opened = open(engine, &w, dir.path()).unwrap();
            assert_eq!((opened.files, opened.tags, opened.locations), (60, 20, LOCATIONS_SPEC.len()), "{engine}");
            assert_eq!((opened.tag_query_subtree, opened.tag_query_files), (target.subtree, target.files));
        }
    }

    #[test]
    fn an_unknown_engine_is_named() {
        let w = tiny();
        let dir = tempfile::tempdir().unwrap();
        let e = build("loro", &w, dir.path()).unwrap_err().to_string();
        assert!(e.contains("\"loro\"") && e.contains("yrs | automerge"), "{e}");
        assert!(open("loro", &w, dir.path()).is_err());
    }
}
