//! The plain objects JavaScript sees, converted from and to the model's types. Field names are
//! camelCase (napi-rs renames `#[napi(object)]` fields); dates are ms since the epoch.

use napi_derive::napi;
use serde_json::Value;

/// Options of `Library.create`, `Library.join` and `Library.open`.
#[napi(object)]
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// The library folder the sync client shares; the database lives in
    /// `<folder>/onefolder_tags`.
    pub folder: String,
    /// This device's local state (outside `folder`).
    pub state_dir: String,
    /// This device's name as the other devices see it.
    pub device_name: String,
    /// The CRDT engine: `"yrs"` (default for `create`) or `"automerge"`. `join` and `open`
    /// take the library's engine when it is not given, and fail with `WRONG_ENGINE` when it
    /// differs.
    pub engine: Option<String>,
    /// The local store: `"sqlite"` (default) or `"lmdb"`.
    pub store: Option<String>,
    /// Where the database is shared: `"folder"` (default: `<folder>/onefolder_tags`, kept
    /// equal by a sync client), or an S3 bucket (`s3://BUCKET/PREFIX`) or WebDAV folder
    /// (`webdav://HOST/PATH`), configured by the environment variables the CLI reads.
    pub transport: Option<String>,
    /// Quiet time after the last edit before the sync loop writes (ms, default 2000).
    pub debounce_ms: Option<u32>,
    /// How often the sync loop lists the shared folder when no change hint arrives (ms,
    /// default 30000).
    pub poll_interval_ms: Option<u32>,
}

/// A tag.
#[napi(object)]
#[derive(Clone, Debug)]
pub struct Tag {
    /// Id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Colour (a CSS colour string), if set.
    pub color: Option<String>,
    /// Effective parent tag id; absent for a root tag.
    pub parent: Option<String>,
    /// Fractional order key among siblings.
    pub order: String,
    /// Hidden in the app's tag list.
    pub is_hidden: bool,
    /// When it was created, ms since the epoch.
    pub date_added: i64,
}

impl From<onefolder_model::Tag> for Tag {
    fn from(t: onefolder_model::Tag) -> Self {
        Tag {
            id: t.id,
            name: t.name,
            color: t.color,
            parent: t.parent,
            order: t.order,
            is_hidden: t.is_hidden,
            date_added: t.date_added,
        }
    }
}

/// A file record.
#[napi(object)]
#[derive(Clone, Debug)]
pub struct File {
    /// Id.
    pub id: String,
    /// Location id.
    pub location: String,
    /// Location-relative path, `/` separators.
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
    /// When it was first indexed, ms since the epoch.
    pub date_added: i64,
    /// Modification time on disk, ms since the epoch.
    pub date_modified: i64,
    /// Creation time on disk, ms since the epoch.
    pub date_created: i64,
    /// Content fingerprint.
    pub fingerprint: Option<String>,
    /// Free-text annotations.
    pub annotations: Option<String>,
    /// Ids of the (existing) tags assigned to it, in id order.
    pub tags: Vec<String>,
}

impl From<onefolder_model::File> for File {
    fn from(f: onefolder_model::File) -> Self {
        File {
            id: f.id,
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
            tags: f.tags.into_iter().collect(),
        }
    }
}

/// What an indexer knows about a file on disk (every field optional; numbers default to 0).
#[napi(object)]
#[derive(Clone, Debug, Default)]
pub struct FileMeta {
    /// Size in bytes.
    pub size: Option<i64>,
    /// Modification time, ms since the epoch.
    pub date_modified: Option<i64>,
    /// Creation time, ms since the epoch.
    pub date_created: Option<i64>,
    /// Content fingerprint.
    pub fingerprint: Option<String>,
    /// Image width.
    pub width: Option<i64>,
    /// Image height.
    pub height: Option<i64>,
}

impl From<FileMeta> for onefolder_model::FileMeta {
    fn from(m: FileMeta) -> Self {
        onefolder_model::FileMeta {
            size: m.size.unwrap_or(0),
            date_modified: m.date_modified.unwrap_or(0),
            date_created: m.date_created.unwrap_or(0),
            fingerprint: m.fingerprint,
            width: m.width,
            height: m.height,
            date_last_indexed: None,
        }
    }
}

/// A location.
#[napi(object)]
#[derive(Clone, Debug)]
pub struct Location {
    /// Id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Path relative to the library folder when the location is inside it (`""` = the library
    /// folder itself).
    pub rel_path: Option<String>,
    /// When it was added, ms since the epoch.
    pub date_added: i64,
    /// Location-relative sub-folders excluded from indexing.
    pub exclusions: Vec<String>,
}

impl From<onefolder_model::Location> for Location {
    fn from(l: onefolder_model::Location) -> Self {
        Location {
            id: l.id,
            name: l.name,
            rel_path: l.rel_path,
            date_added: l.date_added,
            exclusions: l.exclusions.into_iter().collect(),
        }
    }
}

/// A serialized core value (`Status`, `StatusEvent`) as JavaScript sees it: object keys
/// camelCase (`pending_edits` → `pendingEdits`), string values untouched (`event: "applied"`).
pub fn to_js_json(value: &impl serde::Serialize) -> Value {
    camel_keys(serde_json::to_value(value).unwrap_or(Value::Null))
}

fn camel_keys(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (camel(&k), camel_keys(v))).collect()),
        Value::Array(items) => Value::Array(items.into_iter().map(camel_keys).collect()),
        other => other,
    }
}

/// `snake_case` → `camelCase`; names without `_` (ids, `event`) are unchanged.
fn camel(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}
