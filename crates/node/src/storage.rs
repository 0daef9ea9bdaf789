//! OneFolder's `DataStorage` on the model: `Library.storage(op, args)` runs one method of that
//! interface (`op` is its name, `args` the JSON array of its arguments) and answers JSON in
//! OneFolder's DTO shapes, with dates as ms since the epoch. `dist/data-storage.js` (from
//! `ts/data-storage.ts`) turns that into the TypeScript class the app uses; the rules are the
//! model's ([`onefolder_model::app`]).
//!
//! What each computer keeps for itself lives here, never in the shared document:
//! - `absolutePath` = this computer's path of the file's location + the relative path;
//! - `ino` (the app's inode number, to recognise a renamed file) in the per-device setting
//!   [`INO_SETTING`];
//! - location paths outside the library folder in the per-device settings the CLI uses too.
//!
//! One JSON string each way is much cheaper than building JS objects field by field through
//! N-API for 100 000 files; `JSON.parse` on the JS side is the fastest way to make them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use onefolder_model::{File, FileMeta, FileOrder, FileSave, ModelError, criteria::Criterion};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Model;
use crate::error::{Code, Failure};

/// The per-device setting holding `{fileId: ino}`.
pub const INO_SETTING: &str = "node/ino";

/// The id OneFolder gives its invisible root tag; its `subTags` are the top-level tags.
pub const ROOT_TAG_ID: &str = "root";

/// This computer's side of a library: its folder, the inode numbers the app reported, and the
/// ids the app gave locations that the library knows by another id.
pub struct Local {
    /// The library folder (absolute).
    folder: PathBuf,
    /// `{fileId: ino}`, loaded on first use.
    inos: Mutex<Option<HashMap<String, String>>>,
    /// App location id → library location id, for locations inside the library folder that
    /// another computer added first (their id follows from their path).
    aliases: Mutex<HashMap<String, String>>,
}

/// A tag as OneFolder's `TagDTO`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TagDto {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    date_added: Option<i64>,
    #[serde(default)]
    color: Option<String>,
    #[serde(default)]
    sub_tags: Vec<String>,
    #[serde(default)]
    implied_tags: Vec<String>,
    #[serde(default)]
    copy_implied_tags: bool,
    #[serde(default)]
    is_hidden: bool,
}

/// A file as the app sends OneFolder's `FileDTO` (plus `base`, the tags the app last read, on
/// saves).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileDto {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    ino: Option<String>,
    location_id: String,
    #[serde(default)]
    relative_path: Option<String>,
    #[serde(default)]
    absolute_path: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    date_added: Option<i64>,
    #[serde(default)]
    date_modified: Option<i64>,
    #[serde(default)]
    date_last_indexed: Option<i64>,
    #[serde(default)]
    size: Option<i64>,
    #[serde(default)]
    width: Option<i64>,
    #[serde(default)]
    height: Option<i64>,
    #[serde(default)]
    date_created: Option<i64>,
    #[serde(default)]
    annotations: Option<String>,
    #[serde(default)]
    base: Option<Vec<String>>,
}

/// A file as OneFolder's `FileDTO`, as this computer answers it: the record plus its local
/// `ino` (`absolutePath` is made on the JS side: [`Local::files_json`]). Unknown width and height read as 0, an unknown
/// `dateLastIndexed` as `dateAdded` (what the app expects).
struct FileOut<'f> {
    f: &'f File,
    ino: &'f str,
}

impl Serialize for FileOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let f = self.f;
        let mut out = s.serialize_struct("FileDTO", 15)?;
        out.serialize_field("id", &f.id)?;
        out.serialize_field("ino", &self.ino)?;
        out.serialize_field("locationId", &f.location)?;
        out.serialize_field("relativePath", &f.path)?;
        out.serialize_field("tags", &f.tags)?;
        out.serialize_field("dateAdded", &f.date_added)?;
        out.serialize_field("dateModified", &f.date_modified)?;
        out.serialize_field("dateLastIndexed", &f.date_last_indexed.unwrap_or(f.date_added))?;
        out.serialize_field("name", &f.name)?;
        out.serialize_field("extension", &f.extension)?;
        out.serialize_field("size", &f.size)?;
        out.serialize_field("width", &f.width.unwrap_or(0))?;
        out.serialize_field("height", &f.height.unwrap_or(0))?;
        out.serialize_field("dateCreated", &f.date_created)?;
        if let Some(a) = &f.annotations {
            out.serialize_field("annotations", a)?;
        }
        out.end()
    }
}

/// An answer of files ([`Local::files_json`]).
#[derive(Serialize)]
struct FilesAnswer<'f> {
    prefixes: &'f BTreeMap<String, String>,
    files: Vec<FileOut<'f>>,
}

/// A sub-folder of a location as OneFolder's `SubLocationDTO`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubLocationDto {
    name: String,
    #[serde(default)]
    is_excluded: bool,
    #[serde(default)]
    sub_locations: Vec<SubLocationDto>,
    #[serde(default)]
    tags: Vec<String>,
}

/// A location as OneFolder's `LocationDTO`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LocationDto {
    id: String,
    path: String,
    #[serde(default)]
    date_added: Option<i64>,
    #[serde(default)]
    sub_locations: Vec<SubLocationDto>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    index: Option<i64>,
}

/// A saved search as OneFolder's `FileSearchDTO`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SearchDto {
    id: String,
    name: String,
    #[serde(default)]
    criteria: Value,
    #[serde(default)]
    match_any: bool,
    #[serde(default)]
    index: Option<i64>,
}

fn invalid(message: impl Into<String>) -> Failure {
    Failure::new(Code::Invalid, message)
}

/// Argument `i` of `args`, decoded.
fn arg<T: serde::de::DeserializeOwned>(args: &[Value], i: usize, op: &str) -> Result<T, Failure> {
    let value = args.get(i).cloned().unwrap_or(Value::Null);
    serde_json::from_value(value).map_err(|e| invalid(format!("{op}: argument {}: {e}", i + 1)))
}

/// `Ok(())` for a removal of something that is gone already (IndexedDB deletes are
/// idempotent, and the app relies on it).
fn gone_is_fine(result: onefolder_model::Result<()>) -> Result<(), Failure> {
    match result {
        Err(
            ModelError::UnknownTag(_)
            | ModelError::UnknownFile(_)
            | ModelError::UnknownLocation(_)
            | ModelError::UnknownSearch(_),
        ) => Ok(()),
        other => Ok(other?),
    }
}

/// A `FileOrder` by OneFolder key; `random` (shuffled by the caller) and unknown keys read
/// in id order.
fn order(key: &str) -> FileOrder {
    FileOrder::of(key).unwrap_or(FileOrder::Id)
}

/// Saved criteria: one condition or a list of them.
fn criteria(value: Value) -> Result<Vec<Criterion>, Failure> {
    let list = match value {
        Value::Array(items) => items,
        Value::Null => Vec::new(),
        one => vec![one],
    };
    list.into_iter()
        .map(|c| serde_json::from_value(c).map_err(|e| invalid(format!("a search criterion is not understood: {e}"))))
        .collect()
}

/// Excluded location-relative paths of a sub-location tree.
fn exclusions(subs: &[SubLocationDto], prefix: &str, out: &mut BTreeSet<String>) {
    for s in subs {
        let path = if prefix.is_empty() { s.name.clone() } else { format!("{prefix}/{}", s.name) };
        if s.is_excluded {
            out.insert(path.clone());
        }
        exclusions(&s.sub_locations, &path, out);
    }
}

/// The sub-location tree of excluded paths.
fn sub_locations(excluded: &BTreeSet<String>) -> Vec<SubLocationDto> {
    let mut root: Vec<SubLocationDto> = Vec::new();
    for path in excluded {
        let mut level = &mut root;
        let parts: Vec<&str> = path.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            let pos = match level.iter().position(|s| s.name == *part) {
                Some(p) => p,
                None => {
                    level.push(SubLocationDto { name: (*part).to_owned(), ..SubLocationDto::default() });
                    level.len() - 1
                }
            };
            if i + 1 == parts.len() {
                level[pos].is_excluded = true;
            }
            level = &mut level[pos].sub_locations;
        }
    }
    root
}

fn to_json(value: &impl Serialize) -> Result<String, Failure> {
    serde_json::to_string(value).map_err(|e| Failure::new(Code::Other, format!("an answer does not serialize: {e}")))
}

impl Local {
    /// The side of the library in `folder` on this computer.
    pub fn new(folder: PathBuf) -> Local {
        Local { folder, inos: Mutex::new(None), aliases: Mutex::new(HashMap::new()) }
    }

    /// The library's id for a location id the app uses.
    fn location_id(&self, id: &str) -> String {
        self.aliases.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned().unwrap_or_else(|| id.to_owned())
    }

    /// Runs `f` on the inode map, loading it first; saves it when `f` says it changed.
    fn with_inos<R>(
        &self,
        model: &Model,
        f: impl FnOnce(&mut HashMap<String, String>) -> (R, bool),
    ) -> Result<R, Failure> {
        let mut guard = self.inos.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            let stored = model.doc().setting(INO_SETTING)?;
            let map = match stored {
                Some(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "the stored inode numbers do not parse; starting afresh");
                    HashMap::new()
                }),
                None => HashMap::new(),
            };
            *guard = Some(map);
        }
        let map = guard.as_mut().expect("loaded above");
        let (out, changed) = f(map);
        if changed {
            model.doc().set_setting(INO_SETTING, Some(&to_json(map)?))?;
        }
        Ok(out)
    }

    /// Location id → this computer's path of it, with a trailing separator (locations this
    /// computer has not mapped are left out).
    fn prefixes(&self, model: &Model) -> Result<BTreeMap<String, String>, Failure> {
        let mut out = BTreeMap::new();
        for loc in model.locations()?.into_values() {
            if let Some(path) = onefolder_model::local::location_path(model.doc(), &self.folder, &loc)? {
                let mut p = path.to_string_lossy().into_owned();
                if !p.ends_with(std::path::MAIN_SEPARATOR) {
                    p.push(std::path::MAIN_SEPARATOR);
                }
                out.insert(loc.id, p);
            }
        }
        Ok(out)
    }

    /// Files as the JSON of `{prefixes, files}`: `files` are `FileDTO`s without
    /// `absolutePath`, which the JS side makes from `prefixes` (location id → this computer's
    /// path of it, ending in a separator) and `relativePath`: one path per location on the
    /// wire instead of one per file.
    fn files_json(&self, model: &Model, files: &[File]) -> Result<String, Failure> {
        let prefixes = self.prefixes(model)?;
        self.with_inos(model, |inos| {
            let files: Vec<FileOut<'_>> =
                files.iter().map(|f| FileOut { f, ino: inos.get(&f.id).map_or("", String::as_str) }).collect();
            (to_json(&FilesAnswer { prefixes: &prefixes, files }), false)
        })?
    }

    /// Sorted files as [`Local::files_json`].
    fn answer_files(
        &self,
        model: &Model,
        mut files: Vec<File>,
        key: &str,
        descending: bool,
    ) -> Result<String, Failure> {
        let order = order(key);
        let prefixes = if order == FileOrder::AbsolutePath { self.prefixes(model)? } else { BTreeMap::new() };
        onefolder_model::sort_files(&mut files, order, descending, &prefixes);
        self.files_json(model, &files)
    }

    /// The files whose `FileDTO` field `key` equals `value` (IndexedDB's `where(key).equals`;
    /// for `tags`, the files carrying the tag `value`).
    fn files_by_key(&self, model: &Model, key: &str, value: &Value) -> Result<Vec<File>, Failure> {
        let prefixes = self.prefixes(model)?;
        let files: Vec<File> = model.files()?.into_values().collect();
        self.with_inos(model, |inos| {
            let matching = files
                .into_iter()
                .filter(|f| {
                    let have = if key == "absolutePath" {
                        prefixes
                            .get(&f.location)
                            .map(|p| Value::from(format!("{p}{}", f.path.replace('/', std::path::MAIN_SEPARATOR_STR))))
                    } else {
                        let out = FileOut { f, ino: inos.get(&f.id).map_or("", String::as_str) };
                        serde_json::to_value(&out).ok().and_then(|mut v| v.get_mut(key).map(Value::take))
                    };
                    match have {
                        // A list field (`tags`) matches a value it holds, as IndexedDB's
                        // multi-entry index does, or an equal list.
                        Some(Value::Array(items)) => items.contains(value) || value == &Value::Array(items),
                        have => have.as_ref() == Some(value),
                    }
                })
                .collect();
            (matching, false)
        })
    }

    /// The location-relative path of a file the app describes.
    /// `prefixes`: [`Local::prefixes`], read once per save.
    fn relative_path(dto: &FileDto, location: &str, prefixes: &BTreeMap<String, String>) -> Result<String, Failure> {
        if let Some(rel) = dto.relative_path.as_deref().filter(|r| !r.is_empty()) {
            return Ok(rel.to_owned());
        }
        let abs = dto.absolute_path.as_deref().ok_or_else(|| invalid("a file needs a relativePath"))?;
        let root = prefixes.get(location).ok_or_else(|| invalid(format!("location {location} has no path here")))?;
        Path::new(abs)
            .strip_prefix(root)
            .map(|r| r.to_string_lossy().into_owned())
            .map_err(|_| invalid(format!("{abs} is not inside its location {root}")))
    }

    fn file_save(&self, dto: &FileDto, prefixes: &BTreeMap<String, String>) -> Result<FileSave, Failure> {
        let location = self.location_id(&dto.location_id);
        let path = Self::relative_path(dto, &location, prefixes)?;
        let known = |v: Option<i64>| v.filter(|v| *v > 0);
        Ok(FileSave {
            id: dto.id.clone(),
            meta: FileMeta {
                size: dto.size.unwrap_or(0),
                date_modified: dto.date_modified.unwrap_or(0),
                date_created: dto.date_created.unwrap_or(0),
                fingerprint: None,
                width: known(dto.width),
                height: known(dto.height),
                date_last_indexed: dto.date_last_indexed,
            },
            date_added: dto.date_added,
            tags: dto.tags.iter().cloned().collect(),
            base: dto.base.as_ref().map(|b| b.iter().cloned().collect()),
            annotations: dto.annotations.clone().filter(|a| !a.is_empty()),
            location,
            path,
        })
    }

    /// Saves files in one edit and records their inode numbers; skips files that exist when
    /// `only_new`.
    fn save_files(&self, model: &Model, dtos: &[FileDto], only_new: bool) -> Result<(), Failure> {
        let mut saves = Vec::with_capacity(dtos.len());
        let prefixes = self.prefixes(model)?;
        for dto in dtos {
            let save = self.file_save(dto, &prefixes)?;
            if only_new && model.file_at(&save.location, &save.path)?.is_some() {
                continue;
            }
            saves.push((save, dto.ino.clone().filter(|i| !i.is_empty())));
        }
        let ids =
            model.in_batch(|batch| saves.iter().map(|(s, _)| batch.save_file(s)).collect::<Result<Vec<_>, _>>())?;
        self.with_inos(model, |inos| {
            let mut changed = false;
            for (id, (_, ino)) in ids.iter().zip(&saves) {
                if let Some(ino) = ino {
                    changed |= inos.insert(id.clone(), ino.clone()).as_ref() != Some(ino);
                }
            }
            ((), changed)
        })
    }

    fn tag_dtos(&self, model: &Model) -> Result<Vec<TagDto>, Failure> {
        fn walk(nodes: &[onefolder_model::TagNode], out: &mut Vec<TagDto>) {
            for n in nodes {
                let t = &n.tag;
                out.push(TagDto {
                    id: t.id.clone(),
                    name: t.name.clone(),
                    date_added: Some(t.date_added),
                    color: Some(t.color.clone().unwrap_or_default()),
                    sub_tags: n.children.iter().map(|c| c.tag.id.clone()).collect(),
                    implied_tags: t.implied.iter().cloned().collect(),
                    copy_implied_tags: t.copy_implied,
                    is_hidden: t.is_hidden,
                });
                walk(&n.children, out);
            }
        }
        let tree = model.tag_tree()?;
        let mut out = vec![TagDto {
            id: ROOT_TAG_ID.to_owned(),
            name: "Root".to_owned(),
            date_added: Some(0),
            color: Some(String::new()),
            sub_tags: tree.iter().map(|n| n.tag.id.clone()).collect(),
            implied_tags: Vec::new(),
            copy_implied_tags: false,
            is_hidden: false,
        }];
        walk(&tree, &mut out);
        Ok(out)
    }

    /// Writes every field of a tag the app saved (creating it at the root when new).
    fn save_tag(&self, model: &Model, dto: &TagDto) -> Result<(), Failure> {
        if dto.id == ROOT_TAG_ID {
            return Ok(model.arrange_children(None, &dto.sub_tags)?);
        }
        let color = dto.color.as_deref().filter(|c| !c.is_empty());
        let Some(tag) = model.tags()?.remove(&dto.id) else {
            model.create_tag_with_id(&dto.id, None, &dto.name, color, dto.date_added)?;
            return self.save_tag(model, dto);
        };
        if tag.name != dto.name {
            model.rename_tag(&dto.id, &dto.name)?;
        }
        if tag.color.as_deref() != color {
            model.set_tag_color(&dto.id, color)?;
        }
        model.set_tag_hidden(&dto.id, dto.is_hidden)?;
        model.set_tag_implied(&dto.id, &dto.implied_tags.iter().filter(|t| *t != ROOT_TAG_ID).cloned().collect())?;
        model.set_tag_copy_implied(&dto.id, dto.copy_implied_tags)?;
        model.arrange_children(Some(&dto.id), &dto.sub_tags)?;
        Ok(())
    }

    fn location_dtos(&self, model: &Model) -> Result<Vec<LocationDto>, Failure> {
        let mut locations: Vec<onefolder_model::Location> = model.locations()?.into_values().collect();
        locations.sort_by(|a, b| (a.index, a.date_added, &a.id).cmp(&(b.index, b.date_added, &b.id)));
        let mut out = Vec::with_capacity(locations.len());
        for (i, l) in locations.into_iter().enumerate() {
            let path = onefolder_model::local::location_path(model.doc(), &self.folder, &l)?;
            out.push(LocationDto {
                path: path.map(|p| p.to_string_lossy().into_owned()).unwrap_or_default(),
                date_added: Some(l.date_added),
                sub_locations: sub_locations(&l.exclusions),
                tags: Vec::new(),
                index: Some(l.index.unwrap_or(i as i64)),
                id: l.id,
            });
        }
        Ok(out)
    }

    /// The path of `abs` relative to the library folder, when it is inside it.
    fn inside_library(&self, abs: &Path) -> Option<String> {
        let abs = std::fs::canonicalize(abs).unwrap_or_else(|_| abs.to_path_buf());
        abs.strip_prefix(&self.folder).ok().map(|r| r.to_string_lossy().replace('\\', "/"))
    }

    /// Creates or updates a location; returns the library's id for it.
    fn save_location(&self, model: &Model, dto: &LocationDto) -> Result<String, Failure> {
        let abs = PathBuf::from(&dto.path);
        if !abs.is_absolute() {
            return Err(invalid(format!("a location path must be absolute: {:?}", dto.path)));
        }
        let id = self.location_id(&dto.id);
        let known = model.locations()?.contains_key(&id);
        let rel = self.inside_library(&abs);
        let id = if known {
            id
        } else {
            let name = abs.file_name().map_or_else(|| dto.path.clone(), |n| n.to_string_lossy().into_owned());
            let got = model.add_location_with_id(&dto.id, &name, rel.as_deref(), dto.date_added)?;
            if got != dto.id {
                self.aliases.lock().unwrap_or_else(|e| e.into_inner()).insert(dto.id.clone(), got.clone());
            }
            got
        };
        if rel.is_none() {
            let setting = onefolder_model::local::location_path_setting(&id);
            if model.doc().setting(&setting)?.as_deref() != Some(&*dto.path) {
                model.doc().set_setting(&setting, Some(&dto.path))?;
            }
        }
        let mut excluded = BTreeSet::new();
        exclusions(&dto.sub_locations, "", &mut excluded);
        model.set_exclusions(&id, &excluded)?;
        if let Some(index) = dto.index {
            model.set_location_index(&id, index)?;
        }
        Ok(id)
    }

    /// Runs one `DataStorage` method; `args` is the JSON array of its arguments. Answers JSON
    /// (`null` for methods that return nothing).
    pub fn call(&self, model: &Model, op: &str, args: &str) -> Result<String, Failure> {
        let args: Vec<Value> = match serde_json::from_str(args) {
            Ok(Value::Array(items)) => items,
            Ok(Value::Null) => Vec::new(),
            Ok(_) | Err(_) => return Err(invalid(format!("{op}: the arguments are not a JSON array"))),
        };
        let done = || Ok("null".to_owned());
        match op {
            "fetchTags" => to_json(&self.tag_dtos(model)?),
            "fetchFiles" => {
                let files = model.files()?.into_values().collect();
                self.answer_files(model, files, &arg::<String>(&args, 0, op)?, arg::<i64>(&args, 1, op)? == 1)
            }
            "fetchFilesByID" => {
                let ids: Vec<String> = arg(&args, 0, op)?;
                let mut files = Vec::with_capacity(ids.len());
                for id in &ids {
                    files.extend(model.file(id)?);
                }
                self.files_json(model, &files)
            }
            "fetchFilesByKey" => {
                let files = self.files_by_key(model, &arg::<String>(&args, 0, op)?, &arg(&args, 1, op)?)?;
                self.files_json(model, &files)
            }
            "fetchLocations" => to_json(&self.location_dtos(model)?),
            "fetchSearches" => {
                let mut searches: Vec<SearchDto> = model
                    .searches()?
                    .into_values()
                    .map(|s| SearchDto {
                        criteria: serde_json::from_str(&s.criteria).unwrap_or(Value::Array(Vec::new())),
                        id: s.id,
                        name: s.name,
                        match_any: s.match_any,
                        index: s.index,
                    })
                    .collect();
                searches.sort_by(|a, b| (a.index, &a.id).cmp(&(b.index, &b.id)));
                to_json(&searches)
            }
            "searchFiles" => {
                let criteria = criteria(arg(&args, 0, op)?)?;
                let key: String = arg(&args, 1, op)?;
                let descending = arg::<i64>(&args, 2, op)? == 1;
                let match_any = arg::<Option<bool>>(&args, 3, op)?.unwrap_or(false);
                let files = model.search(&criteria, match_any, &self.prefixes(model)?)?;
                self.answer_files(model, files, &key, descending)
            }
            "createTag" => {
                let dto: TagDto = arg(&args, 0, op)?;
                if dto.id != ROOT_TAG_ID {
                    let color = dto.color.as_deref().filter(|c| !c.is_empty());
                    model.create_tag_with_id(&dto.id, None, &dto.name, color, dto.date_added)?;
                    self.save_tag(model, &dto)?;
                }
                done()
            }
            "saveTag" => {
                self.save_tag(model, &arg(&args, 0, op)?)?;
                done()
            }
            "removeTags" => {
                model.delete_tags(&arg::<Vec<String>>(&args, 0, op)?)?;
                done()
            }
            "mergeTags" => {
                model.merge_tags(&arg::<String>(&args, 0, op)?, &arg::<String>(&args, 1, op)?)?;
                done()
            }
            "createFilesFromPath" => {
                self.save_files(model, &arg::<Vec<FileDto>>(&args, 1, op)?, true)?;
                done()
            }
            "saveFiles" => {
                self.save_files(model, &arg::<Vec<FileDto>>(&args, 0, op)?, false)?;
                done()
            }
            "removeFiles" => {
                let ids: Vec<String> = arg(&args, 0, op)?;
                model.remove_files(&ids)?;
                self.with_inos(model, |inos| {
                    let before = inos.len();
                    for id in &ids {
                        inos.remove(id);
                    }
                    ((), inos.len() != before)
                })?;
                done()
            }
            "createLocation" | "saveLocation" => to_json(&self.save_location(model, &arg(&args, 0, op)?)?),
            "removeLocation" => {
                let id = self.location_id(&arg::<String>(&args, 0, op)?);
                gone_is_fine(model.remove_location(&id))?;
                model.doc().set_setting(&onefolder_model::local::location_path_setting(&id), None)?;
                done()
            }
            "createSearch" | "saveSearch" => {
                let dto: SearchDto = arg(&args, 0, op)?;
                model.put_search(&dto.id, &dto.name, &dto.criteria, dto.match_any, dto.index)?;
                done()
            }
            "removeSearch" => {
                gone_is_fine(model.delete_search(&arg::<String>(&args, 0, op)?))?;
                done()
            }
            "countFiles" => {
                let counts = model.file_counts()?;
                to_json(&json!([counts.files, counts.untagged]))
            }
            "clear" => {
                model.clear()?;
                self.with_inos(model, |inos| {
                    let had = !inos.is_empty();
                    inos.clear();
                    ((), had)
                })?;
                done()
            }
            other => Err(invalid(format!("{other:?} is not a DataStorage method"))),
        }
    }
}
