//! The OneFolder Sync [`Transport`] on the Dropbox v2 API, through `dropbox-sdk`'s async
//! routes and our own HTTP client (hyper 1, rustls on ring).
//!
//! # Layout
//!
//! The same as on disk, so that one device can use this API while another uses the Dropbox
//! desktop client (and the folder transport) on the same library, and both converge. The
//! library folder is a Dropbox path ([`DropboxOptions::library`], e.g. `/Pictures`):
//!
//! ```text
//! /Pictures/onefolder_tags/
//!   library.json                 the manifest (uploaded once, never replaced)
//!   database/<deviceId>/         one folder per device, written only by that device
//!     device.json                replaced on each write (WriteMode::Overwrite)
//!     <seq>.seg, snap-<seq>.seg  immutable segments (WriteMode::Add)
//! ```
//!
//! # API calls
//!
//! | operation | calls |
//! | --- | --- |
//! | [`Transport::read_manifest`], [`Transport::read`] | `files/download`; the size in its `Dropbox-API-Result` header is checked against the cap before the body is read |
//! | [`Transport::create_manifest`], [`Transport::write`] | `files/upload` with `mode: add`, `autorename: false`, `strict_conflict: true` (a segment is never overwritten: `path/conflict` → [`TransportError::AlreadyExists`]), or `mode: overwrite` for [`WriteMode::Replace`] |
//! | [`Transport::delete`] | `files/delete_v2` (a missing file is fine) |
//! | [`Transport::list_devices`], [`Transport::list`] | `files/list_folder` (+ `continue` while `has_more`) |
//! | [`Transport::changes_since`] | first `files/list_folder` of `database` recursively (a complete listing), then `files/list_folder/continue` from the stored cursor: one request when nothing changed. A `reset` cursor gives a complete listing again |
//! | [`Transport::changes`] | `files/list_folder/get_latest_cursor`, then `files/list_folder/longpoll` (notify host, no `Authorization` header, its `backoff` honoured) and a `continue` after each change to name the device folder |
//!
//! [`FileEntry::version`] is the file's `rev`. Dropbox paths are case-insensitive: entries
//! are matched on `path_lower` and names are reported as displayed.
//!
//! # Errors and consistency
//!
//! 429 (`too_many_requests`, `too_many_write_operations`) is
//! [`TransportError::RateLimited`] with the `Retry-After` header (read by our HTTP client; the
//! SDK does not expose it), 5xx and network failures are [`TransportError::Transient`], 401
//! `expired_access_token` refreshes the token once and retries (the SDK's `update_token`), 409
//! path errors map to `NotFound` / `AlreadyExists` / `InvalidName`. A listing that lags behind
//! this handle's own writes is completed from what it wrote (its own folder's files and the
//! folder itself are listed until the listing shows them, for a few minutes at most).
//!
//! [`Transport::changes`] takes its cursor before returning, so every change after the call
//! is hinted. Before the tags folder exists it watches the library folder (or the Dropbox
//! root) and narrows down after the first change. The loop holds no reference to the
//! transport: dropping the stream or the last clone of the transport ends it, an open long
//! poll included.
//!
//! The arguments of content routes (`Dropbox-API-Arg`) are escaped by us rather than by the
//! SDK, whose escaping of characters beyond the BMP (an emoji in a folder name) is not valid
//! JSON for the intended character.
//!
//! # Endpoints
//!
//! [`DropboxOptions::from_env`] reads `ONEFOLDER_SYNC_DROPBOX_URL` (one base URL for the api,
//! content and notify hosts, e.g. an emulator), or `ONEFOLDER_SYNC_DROPBOX_API_URL`,
//! `_CONTENT_URL`, `_NOTIFY_URL` each; plain `http://` is accepted for loopback hosts only.
//! Sign-in and tokens are in [`auth`].

#![warn(missing_docs)]

pub mod auth;
mod http;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use dropbox_sdk::async_routes::files;
use futures::AsyncReadExt;
use onefolder_core::names::{MANIFEST_FILE, is_temporary};
use onefolder_core::transport::check_name;
use onefolder_core::{
    Capabilities, ChangeCursor, ChangeHint, ChangeSet, ChangeStream, DeviceId, FileEntry, Transport, TransportError,
    WriteMode,
};
use tokio::sync::{mpsc, watch};

use crate::auth::Tokens;
use crate::http::{Call, Credentials, Endpoints, Http};

/// Name of the folder, inside a library, that holds everything OneFolder Sync writes.
pub const TAGS_DIR: &str = "onefolder_tags";
/// Name of the folder, inside [`TAGS_DIR`], that holds one folder per device.
pub const DATABASE_DIR: &str = "database";
/// Largest manifest [`Transport::read_manifest`] accepts.
pub const MANIFEST_CAP: u64 = 1024 * 1024;
/// Dropbox's limit for a single `files/upload`.
pub const MAX_UPLOAD: u64 = 150 << 20;
/// Dropbox's real hosts.
pub const DEFAULT_API_URL: &str = "https://api.dropboxapi.com";
/// The content host (uploads, downloads).
pub const DEFAULT_CONTENT_URL: &str = "https://content.dropboxapi.com";
/// The notify host (long polls).
pub const DEFAULT_NOTIFY_URL: &str = "https://notify.dropboxapi.com";

/// What our cursors start with (a cursor from another transport gives a complete listing).
const CURSOR_PREFIX: &str = "dbx1:";
/// How long this handle's own writes complete a lagging listing.
const OWN_WRITES_TTL: Duration = Duration::from_secs(300);

/// Errors of [`DropboxOptions`] and the constructors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OptionsError {
    /// An endpoint URL is unusable.
    #[error(transparent)]
    Url(#[from] auth::AuthError),
    /// The library folder is not a Dropbox path.
    #[error("library folder {0:?} is not a Dropbox path like /Pictures")]
    Library(String),
    /// The long-poll timeout is outside Dropbox's 30–480 s.
    #[error("long-poll timeout {0:?} is outside 30 s to 480 s")]
    LongpollTimeout(Duration),
}

/// Settings of a [`DropboxTransport`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DropboxOptions {
    /// The library folder in Dropbox (`/Pictures`; `/` for the Dropbox root).
    pub library: String,
    /// Base URL of the api host (`https://api.dropboxapi.com`).
    pub api_url: String,
    /// Base URL of the content host.
    pub content_url: String,
    /// Base URL of the notify host.
    pub notify_url: String,
    /// Bound on one request (`None`: unbounded; tests on a paused clock need that).
    pub request_timeout: Option<Duration>,
    /// How long a long poll waits for a change (Dropbox: 30 to 480 s).
    pub longpoll_timeout: Duration,
    /// Reads the caller may have in flight at once.
    pub concurrent_reads: usize,
}

impl DropboxOptions {
    /// Dropbox's real endpoints for the library at `library`.
    pub fn new(library: impl Into<String>) -> DropboxOptions {
        DropboxOptions {
            library: library.into(),
            api_url: DEFAULT_API_URL.to_owned(),
            content_url: DEFAULT_CONTENT_URL.to_owned(),
            notify_url: DEFAULT_NOTIFY_URL.to_owned(),
            request_timeout: Some(Duration::from_secs(60)),
            longpoll_timeout: Duration::from_secs(30),
            concurrent_reads: 4,
        }
    }

    /// The same with one base URL standing for all three hosts (an emulator).
    pub fn with_base_url(self, base: &str) -> DropboxOptions {
        let base = base.trim_end_matches('/').to_owned();
        DropboxOptions { api_url: base.clone(), content_url: base.clone(), notify_url: base, ..self }
    }

    /// [`DropboxOptions::new`] with the endpoints of `ONEFOLDER_SYNC_DROPBOX_URL` (all hosts)
    /// or `ONEFOLDER_SYNC_DROPBOX_API_URL` / `_CONTENT_URL` / `_NOTIFY_URL` (each), checked.
    pub fn from_env(library: impl Into<String>) -> Result<DropboxOptions, OptionsError> {
        let var = |name: &str| std::env::var(name).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let mut options = DropboxOptions::new(library);
        if let Some(base) = var("ONEFOLDER_SYNC_DROPBOX_URL") {
            options = options.with_base_url(&base);
        }
        for (name, field) in [
            ("ONEFOLDER_SYNC_DROPBOX_API_URL", &mut options.api_url),
            ("ONEFOLDER_SYNC_DROPBOX_CONTENT_URL", &mut options.content_url),
            ("ONEFOLDER_SYNC_DROPBOX_NOTIFY_URL", &mut options.notify_url),
        ] {
            if let Some(url) = var(name) {
                *field = url.trim_end_matches('/').to_owned();
            }
        }
        options.check()?;
        Ok(options)
    }

    fn check(&self) -> Result<(), OptionsError> {
        auth::check_url("ONEFOLDER_SYNC_DROPBOX_API_URL", &self.api_url)?;
        auth::check_url("ONEFOLDER_SYNC_DROPBOX_CONTENT_URL", &self.content_url)?;
        auth::check_url("ONEFOLDER_SYNC_DROPBOX_NOTIFY_URL", &self.notify_url)?;
        if !(30..=480).contains(&self.longpoll_timeout.as_secs()) {
            return Err(OptionsError::LongpollTimeout(self.longpoll_timeout));
        }
        library_path(&self.library)?;
        Ok(())
    }
}

/// `/Pictures/` → `/Pictures`; `/` → `` (the root).
fn library_path(library: &str) -> Result<String, OptionsError> {
    let trimmed = library.trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    let bad = || OptionsError::Library(library.to_owned());
    let rest = trimmed.strip_prefix('/').ok_or_else(bad)?;
    if rest.split('/').any(|c| c.is_empty() || c == "." || c == ".." || c.chars().any(char::is_control)) {
        return Err(bad());
    }
    Ok(trimmed.to_owned())
}

/// Dropbox paths of one library.
#[derive(Clone, Debug)]
struct Paths {
    /// The library folder (`""` for the root).
    library: String,
    /// `<lib>/onefolder_tags`.
    root: String,
    /// `<root>/database`.
    db: String,
    /// Its lower case.
    db_lower: String,
    /// How many components `db` has.
    db_depth: usize,
}

impl Paths {
    fn new(library: &str) -> Paths {
        let root = format!("{library}/{TAGS_DIR}");
        let db = format!("{root}/{DATABASE_DIR}");
        let db_depth = db.split('/').filter(|c| !c.is_empty()).count();
        Paths { library: library.to_owned(), db_lower: db.to_lowercase(), root, db, db_depth }
    }

    fn device(&self, device: &DeviceId) -> String {
        format!("{}/{device}", self.db)
    }

    fn file(&self, device: &DeviceId, name: &str) -> String {
        format!("{}/{device}/{name}", self.db)
    }

    /// `(folder as displayed, file name)` of a path inside `database/<folder>/<name>`, or
    /// `(folder, None)` for the folder itself; `None` for anything else.
    fn split(&self, path_lower: &str, path_display: Option<&str>) -> Option<(String, Option<String>)> {
        let rest = path_lower.strip_prefix(&self.db_lower)?.strip_prefix('/')?;
        let lower: Vec<&str> = rest.split('/').collect();
        let display: Option<Vec<&str>> = path_display
            .map(|d| d.split('/').filter(|c| !c.is_empty()).skip(self.db_depth).collect())
            .filter(|d: &Vec<&str>| d.len() == lower.len());
        let part = |i: usize| display.as_ref().map_or(lower[i], |d| d[i]).to_owned();
        match lower.len() {
            1 => Some((part(0), None)),
            2 => Some((part(0), Some(part(1)))),
            _ => None,
        }
    }
}

/// This handle's recent writes: folder (lower case) → name (lower case) → (entry, when).
type OwnWrites = HashMap<String, BTreeMap<String, (FileEntry, Instant)>>;

struct Inner {
    http: Arc<Http>,
    creds: Credentials,
    paths: Paths,
    options: DropboxOptions,
    own: Mutex<OwnWrites>,
    /// Closed when the transport goes: long polls in flight end.
    shutdown: watch::Sender<bool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// A [`Transport`] on a library folder in a Dropbox account. Clones share one connection
/// pool and token source.
#[derive(Clone)]
pub struct DropboxTransport {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for DropboxTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DropboxTransport")
            .field("library", &self.inner.options.library)
            .field("http", &self.inner.http)
            .field("credentials", &self.inner.creds)
            .finish()
    }
}

/// The outcome of one SDK call, with what the HTTP client noticed.
struct Outcome<T, E> {
    result: Result<T, dropbox_sdk::Error<E>>,
    retry_after: Option<u64>,
    auth_failure: Option<String>,
}

/// Runs one SDK call with a fresh [`Call`] on the transport's credentials; gives an
/// [`Outcome`].
macro_rules! sdk {
    ($self:ident, |$c:ident| $body:expr) => {{
        let call = Call::authed(&$self.inner.http, &$self.inner.creds);
        sdk!(@run call, |$c| $body)
    }};
    // A content route: its argument goes in the `Dropbox-API-Arg` header, escaped by us.
    ($self:ident, arg $arg:expr, |$c:ident| $body:expr) => {{
        let call = Call::authed(&$self.inner.http, &$self.inner.creds);
        let call = match http::arg_header($arg) {
            Ok(header) => call.with_arg_header(header),
            Err(_) => call,
        };
        sdk!(@run call, |$c| $body)
    }};
    (@run $call:ident, |$c:ident| $body:expr) => {{
        let $c = &$call;
        let result = $body.await;
        Outcome { result, retry_after: $call.retry_after(), auth_failure: $call.auth_failure() }
    }};
}

impl DropboxTransport {
    /// A transport with tokens from a token file ([`auth::Tokens::from_file`]), refreshed as
    /// needed.
    pub fn new(options: DropboxOptions, tokens: Tokens) -> Result<DropboxTransport, OptionsError> {
        Self::build(options, Credentials::Refreshing(tokens))
    }

    /// A transport with a fixed access token (never refreshed: for tests and short scripts).
    pub fn with_access_token(
        options: DropboxOptions,
        access_token: impl Into<String>,
    ) -> Result<DropboxTransport, OptionsError> {
        Self::build(options, Credentials::Fixed(Arc::new(access_token.into())))
    }

    fn build(options: DropboxOptions, creds: Credentials) -> Result<DropboxTransport, OptionsError> {
        options.check()?;
        let library = library_path(&options.library)?;
        let endpoints = Endpoints {
            api: options.api_url.trim_end_matches('/').to_owned(),
            content: options.content_url.trim_end_matches('/').to_owned(),
            notify: options.notify_url.trim_end_matches('/').to_owned(),
        };
        let http = Arc::new(Http::new(endpoints, options.request_timeout));
        let (shutdown, _) = watch::channel(false);
        let inner =
            Inner { http, creds, paths: Paths::new(&library), options, own: Mutex::new(HashMap::new()), shutdown };
        Ok(DropboxTransport { inner: Arc::new(inner) })
    }

    /// The Dropbox path of the device folders (`<library>/onefolder_tags/database`).
    pub fn database_path(&self) -> &str {
        &self.inner.paths.db
    }

    fn own_lock(&self) -> std::sync::MutexGuard<'_, OwnWrites> {
        self.inner.own.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every entry of a folder listing (all pages).
    async fn list_all(&self, path: &str, recursive: bool) -> Result<Option<Vec<files::Metadata>>, TransportError> {
        let arg = files::ListFolderArg::new(path.to_owned()).with_recursive(recursive);
        let first = sdk!(self, |c| files::list_folder(c, &arg));
        let mut page = match first.result {
            Ok(page) => page,
            Err(dropbox_sdk::Error::Api(files::ListFolderError::Path(files::LookupError::NotFound))) => {
                return Ok(None);
            }
            Err(e) => return Err(map_error(e, path, first.retry_after, first.auth_failure, list_error)),
        };
        let mut entries = std::mem::take(&mut page.entries);
        while page.has_more {
            page = self.continue_page(&page.cursor).await.map_err(|e| match e {
                ContinueError::Reset => TransportError::Transient(format!("listing of {path} was reset; list again")),
                ContinueError::Other(e) => e,
            })?;
            entries.append(&mut page.entries);
        }
        Ok(Some(entries))
    }

    async fn continue_page(&self, cursor: &str) -> Result<files::ListFolderResult, ContinueError> {
        let arg = files::ListFolderContinueArg::new(cursor.to_owned());
        let out = sdk!(self, |c| files::list_folder_continue(c, &arg));
        match out.result {
            Ok(page) => Ok(page),
            Err(dropbox_sdk::Error::Api(files::ListFolderContinueError::Reset))
            | Err(dropbox_sdk::Error::Api(files::ListFolderContinueError::Path(files::LookupError::NotFound))) => {
                Err(ContinueError::Reset)
            }
            Err(e) => Err(ContinueError::Other(map_error(
                e,
                "list_folder/continue",
                out.retry_after,
                out.auth_failure,
                |e, what| TransportError::Io(std::io::Error::other(format!("{what}: {e}"))),
            ))),
        }
    }

    async fn download(&self, path: &str, name: &str, cap: u64) -> Result<Vec<u8>, TransportError> {
        let arg = files::DownloadArg::new(path.to_owned());
        let out = sdk!(self, arg & arg, |c| files::download(c, &arg, None, None));
        let response = out.result.map_err(|e| map_error(e, path, out.retry_after, out.auth_failure, download_error))?;
        let size = response.result.size;
        if size > cap {
            // The body is dropped unread.
            return Err(TransportError::TooLarge { name: name.to_owned(), size, cap });
        }
        let mut body = response.body.ok_or_else(|| TransportError::Transient(format!("{path}: no body")))?;
        let mut bytes = Vec::with_capacity(size as usize);
        let mut limited = (&mut body).take(cap.saturating_add(1));
        let read = limited.read_to_end(&mut bytes);
        let read = match self.inner.options.request_timeout {
            Some(t) => tokio::time::timeout(t, read)
                .await
                .map_err(|_| TransportError::Transient(format!("{path}: the download stalled for {t:?}")))?,
            None => read.await,
        };
        read.map_err(|e| TransportError::Transient(format!("{path}: reading the download: {e}")))?;
        if bytes.len() as u64 > cap {
            return Err(TransportError::TooLarge { name: name.to_owned(), size: bytes.len() as u64, cap });
        }
        Ok(bytes)
    }

    /// Uploads; `Ok(None)` when the name exists and `mode` is create-only.
    async fn upload(
        &self,
        path: &str,
        bytes: &[u8],
        mode: WriteMode,
    ) -> Result<Option<files::FileMetadata>, TransportError> {
        let write_mode = match mode {
            WriteMode::CreateNew => files::WriteMode::Add,
            WriteMode::Replace => files::WriteMode::Overwrite,
        };
        let arg = files::UploadArg::new(path.to_owned())
            .with_mode(write_mode)
            .with_autorename(false)
            .with_mute(true)
            .with_strict_conflict(true);
        let body = Bytes::copy_from_slice(bytes);
        let out = sdk!(self, arg & arg, |c| files::upload(c, &arg, body));
        match out.result {
            Ok(meta) => Ok(Some(meta)),
            Err(dropbox_sdk::Error::Api(files::UploadError::Path(failed)))
                if matches!(failed.reason, files::WriteError::Conflict(files::WriteConflictError::File)) =>
            {
                Ok(None)
            }
            Err(e) => Err(map_error(e, path, out.retry_after, out.auth_failure, upload_error)),
        }
    }

    /// Notes an own write, for listings that lag behind it.
    fn remember(&self, device: &DeviceId, meta: &files::FileMetadata) {
        let entry = FileEntry::new(meta.name.clone(), meta.size).with_version(meta.rev.clone());
        let mut own = self.own_lock();
        own.entry(device.to_string()).or_default().insert(meta.name.to_lowercase(), (entry, Instant::now()));
    }

    /// `listed` completed with own writes it does not show yet.
    fn with_own_writes(&self, device: &DeviceId, mut listed: Vec<FileEntry>) -> Vec<FileEntry> {
        let mut own = self.own_lock();
        let Some(mine) = own.get_mut(&device.to_string()) else { return listed };
        mine.retain(|name, (entry, at)| {
            if at.elapsed() > OWN_WRITES_TTL {
                return false;
            }
            match listed.iter_mut().find(|f| f.name.to_lowercase() == *name) {
                // The listing caught up.
                Some(f) if f.version == entry.version => false,
                // The listing shows an older content of our own file.
                Some(f) => {
                    *f = entry.clone();
                    true
                }
                None => {
                    listed.push(entry.clone());
                    true
                }
            }
        });
        listed
    }

    /// A complete listing of `database` (recursive), and the cursor that follows it.
    async fn full_changes(&self, skip: Option<&str>) -> Result<ChangeSet, TransportError> {
        let paths = &self.inner.paths;
        let arg = files::ListFolderArg::new(paths.db.clone()).with_recursive(true);
        let first = sdk!(self, |c| files::list_folder(c, &arg));
        let mut set = ChangeSet { complete: true, ..ChangeSet::default() };
        let mut page = match first.result {
            Ok(page) => page,
            Err(dropbox_sdk::Error::Api(files::ListFolderError::Path(files::LookupError::NotFound))) => {
                // No device folder yet: nothing to list, and no cursor to keep (the next call
                // lists again).
                set.cursor = ChangeCursor(CURSOR_PREFIX.to_owned());
                return Ok(set);
            }
            Err(e) => return Err(map_error(e, &paths.db, first.retry_after, first.auth_failure, list_error)),
        };
        let mut folders = BTreeSet::new();
        loop {
            for entry in std::mem::take(&mut page.entries) {
                match &entry {
                    files::Metadata::File(f) => {
                        let Some((folder, Some(name))) =
                            paths.split(f.path_lower.as_deref().unwrap_or(""), f.path_display.as_deref())
                        else {
                            continue;
                        };
                        let name = if name.to_lowercase() == f.name.to_lowercase() { f.name.clone() } else { name };
                        folders.insert(folder.clone());
                        if is_temporary(&name) || skip.is_some_and(|s| s.eq_ignore_ascii_case(&folder)) {
                            continue;
                        }
                        set.files.push((folder, FileEntry::new(name, f.size).with_version(f.rev.clone())));
                    }
                    files::Metadata::Folder(d) => {
                        if let Some((_, None)) = paths.split(d.path_lower.as_deref().unwrap_or(""), None) {
                            folders.insert(d.name.clone());
                        }
                    }
                    files::Metadata::Deleted(_) => {}
                }
            }
            if !page.has_more {
                break;
            }
            page = match self.continue_page(&page.cursor).await {
                Ok(p) => p,
                Err(ContinueError::Reset) => {
                    return Err(TransportError::Transient("the listing was reset while paging; list again".into()));
                }
                Err(ContinueError::Other(e)) => return Err(e),
            };
        }
        set.folders = dedup_folders(folders);
        set.cursor = ChangeCursor(format!("{CURSOR_PREFIX}{}", page.cursor));
        Ok(set)
    }

    /// The changes since a Dropbox cursor (all pages), or `Reset`.
    async fn feed_changes(&self, cursor: &str, skip: Option<&str>) -> Result<ChangeSet, ContinueError> {
        let paths = &self.inner.paths;
        // Latest state per (folder, name), in feed order: a file written then deleted within
        // the window is not reported.
        let mut latest: BTreeMap<(String, String), Option<(String, FileEntry)>> = BTreeMap::new();
        let mut folders = BTreeSet::new();
        let mut cursor = cursor.to_owned();
        loop {
            let page = self.continue_page(&cursor).await?;
            for entry in page.entries {
                match entry {
                    files::Metadata::File(f) => {
                        let Some((folder, Some(name))) =
                            paths.split(f.path_lower.as_deref().unwrap_or(""), f.path_display.as_deref())
                        else {
                            continue;
                        };
                        let name = if name.to_lowercase() == f.name.to_lowercase() { f.name.clone() } else { name };
                        folders.insert(folder.clone());
                        let key = (folder.to_lowercase(), name.to_lowercase());
                        latest.insert(key, Some((folder, FileEntry::new(name, f.size).with_version(f.rev))));
                    }
                    files::Metadata::Folder(d) => {
                        if let Some((_, None)) = paths.split(d.path_lower.as_deref().unwrap_or(""), None) {
                            folders.insert(d.name);
                        }
                    }
                    files::Metadata::Deleted(d) => {
                        let lower = d.path_lower.unwrap_or_default();
                        match paths.split(&lower, None) {
                            Some((folder, Some(name))) => {
                                latest.insert((folder, name), None);
                            }
                            Some((folder, None)) => {
                                latest.iter_mut().filter(|((f, _), _)| *f == folder).for_each(|(_, v)| *v = None);
                            }
                            None => {}
                        }
                    }
                }
            }
            cursor = page.cursor;
            if !page.has_more {
                break;
            }
        }
        let mut set = ChangeSet { cursor: ChangeCursor(format!("{CURSOR_PREFIX}{cursor}")), ..ChangeSet::default() };
        for (folder, entry) in latest.into_values().flatten() {
            if is_temporary(&entry.name) || skip.is_some_and(|s| s.eq_ignore_ascii_case(&folder)) {
                continue;
            }
            set.files.push((folder, entry));
        }
        set.folders = dedup_folders(folders);
        Ok(set)
    }
}

/// Folder names, one per case-insensitive name.
fn dedup_folders(folders: BTreeSet<String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    folders.into_iter().filter(|f| seen.insert(f.to_lowercase())).collect()
}

enum ContinueError {
    /// The cursor is no longer valid: list from scratch.
    Reset,
    Other(TransportError),
}

/// Maps an SDK failure; `api` maps the route's own error union.
fn map_error<E: std::error::Error>(
    e: dropbox_sdk::Error<E>,
    what: &str,
    retry_after: Option<u64>,
    auth_failure: Option<String>,
    api: impl FnOnce(E, &str) -> TransportError,
) -> TransportError {
    use dropbox_sdk::Error;
    let denied = TransportError::Unauthorized;
    let rate_limited = |body_secs: u64| TransportError::RateLimited {
        retry_after: retry_after.or(Some(body_secs)).filter(|s| *s > 0).map(Duration::from_secs),
    };
    match e {
        Error::Api(inner) => api(inner, what),
        Error::RateLimited { retry_after_seconds, .. } => rate_limited(u64::from(retry_after_seconds)),
        Error::ServerError(_) => TransportError::Transient(format!("{what}: Dropbox server error")),
        Error::UnexpectedHttpError { code, .. } if code >= 500 => {
            TransportError::Transient(format!("{what}: Dropbox answered HTTP {code}"))
        }
        Error::UnexpectedHttpError { code: 429, .. } => rate_limited(0),
        Error::HttpClient(e) => TransportError::Transient(format!("{what}: {e}")),
        Error::Authentication(e) => match auth_failure {
            Some(why) => denied(format!("Dropbox refused the refresh token ({why}); sign in again")),
            None => denied(format!("Dropbox refused the access token ({e}); sign in again")),
        },
        Error::AccessDenied(e) => denied(format!("{what}: access denied: {e}")),
        Error::BadRequest(msg) => TransportError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{what}: Dropbox rejected the request: {msg}"),
        )),
        other => TransportError::Io(std::io::Error::other(format!("{what}: {other}"))),
    }
}

fn lookup_error(e: files::LookupError, what: &str) -> TransportError {
    use files::LookupError as L;
    match e {
        L::NotFound | L::NotFile | L::NotFolder => TransportError::NotFound(what.to_owned()),
        L::MalformedPath(_) => TransportError::InvalidName { name: what.to_owned(), reason: "rejected by Dropbox" },
        L::Locked => TransportError::Transient(format!("{what}: locked")),
        other => TransportError::Unauthorized(format!("{what}: {other}")),
    }
}

fn write_error(e: files::WriteError, what: &str) -> TransportError {
    use files::WriteError as W;
    match e {
        W::Conflict(_) => TransportError::AlreadyExists(what.to_owned()),
        W::TooManyWriteOperations => TransportError::RateLimited { retry_after: None },
        W::MalformedPath(_) | W::DisallowedName => {
            TransportError::InvalidName { name: what.to_owned(), reason: "rejected by Dropbox" }
        }
        W::InsufficientSpace | W::TeamFolderInsufficientSpace | W::MemberFolderInsufficientSpace => {
            TransportError::Io(std::io::Error::other(format!("{what}: the Dropbox account is full")))
        }
        other => TransportError::Unauthorized(format!("{what}: {other}")),
    }
}

fn list_error(e: files::ListFolderError, what: &str) -> TransportError {
    match e {
        files::ListFolderError::Path(l) => lookup_error(l, what),
        other => TransportError::Io(std::io::Error::other(format!("{what}: {other}"))),
    }
}

fn download_error(e: files::DownloadError, what: &str) -> TransportError {
    match e {
        files::DownloadError::Path(l) => lookup_error(l, what),
        other => TransportError::Io(std::io::Error::other(format!("{what}: {other}"))),
    }
}

fn upload_error(e: files::UploadError, what: &str) -> TransportError {
    match e {
        files::UploadError::Path(failed) => write_error(failed.reason, what),
        files::UploadError::PayloadTooLarge => {
            TransportError::Io(std::io::Error::other(format!("{what}: over Dropbox's upload limit")))
        }
        other => TransportError::Io(std::io::Error::other(format!("{what}: {other}"))),
    }
}

fn delete_error(e: files::DeleteError, what: &str) -> TransportError {
    match e {
        files::DeleteError::PathLookup(l) => lookup_error(l, what),
        files::DeleteError::PathWrite(w) => write_error(w, what),
        files::DeleteError::TooManyWriteOperations => TransportError::RateLimited { retry_after: None },
        other => TransportError::Io(std::io::Error::other(format!("{what}: {other}"))),
    }
}

#[async_trait]
impl Transport for DropboxTransport {
    fn name(&self) -> &'static str {
        "dropbox"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            watch: true,
            case_insensitive: true,
            rate_limited: true,
            max_file_size: Some(MAX_UPLOAD),
            changes_feed: true,
            versions: true,
            concurrent_reads: self.inner.options.concurrent_reads.max(1),
        }
    }

    async fn read_manifest(&self) -> Result<Option<Vec<u8>>, TransportError> {
        let path = format!("{}/{MANIFEST_FILE}", self.inner.paths.root);
        match self.download(&path, MANIFEST_FILE, MANIFEST_CAP).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(TransportError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn create_manifest(&self, bytes: &[u8]) -> Result<bool, TransportError> {
        let path = format!("{}/{MANIFEST_FILE}", self.inner.paths.root);
        Ok(self.upload(&path, bytes, WriteMode::CreateNew).await?.is_some())
    }

    async fn list_devices(&self) -> Result<Vec<String>, TransportError> {
        let entries = self.list_all(&self.inner.paths.db, false).await?.unwrap_or_default();
        let mut folders: BTreeSet<String> = entries
            .into_iter()
            .filter_map(|e| match e {
                files::Metadata::Folder(f) => Some(f.name),
                _ => None,
            })
            .collect();
        let own: Vec<String> =
            self.own_lock().iter().filter(|(_, files)| !files.is_empty()).map(|(f, _)| f.clone()).collect();
        folders.extend(own);
        Ok(dedup_folders(folders))
    }

    async fn list(&self, device: &DeviceId) -> Result<Vec<FileEntry>, TransportError> {
        let path = self.inner.paths.device(device);
        let entries = self.list_all(&path, false).await?.unwrap_or_default();
        let listed = entries
            .into_iter()
            .filter_map(|e| match e {
                files::Metadata::File(f) if !is_temporary(&f.name) => {
                    Some(FileEntry::new(f.name, f.size).with_version(f.rev))
                }
                _ => None,
            })
            .collect();
        Ok(self.with_own_writes(device, listed))
    }

    async fn read(&self, device: &DeviceId, name: &str, cap: u64) -> Result<Vec<u8>, TransportError> {
        check_name(name)?;
        self.download(&self.inner.paths.file(device, name), name, cap).await
    }

    async fn write(&self, device: &DeviceId, name: &str, bytes: &[u8], mode: WriteMode) -> Result<(), TransportError> {
        check_name(name)?;
        let path = self.inner.paths.file(device, name);
        match self.upload(&path, bytes, mode).await? {
            Some(meta) => {
                self.remember(device, &meta);
                Ok(())
            }
            None => Err(TransportError::AlreadyExists(format!("{device}/{name}"))),
        }
    }

    async fn delete(&self, device: &DeviceId, name: &str) -> Result<(), TransportError> {
        check_name(name)?;
        if let Some(mine) = self.own_lock().get_mut(&device.to_string()) {
            mine.remove(&name.to_lowercase());
        }
        let path = self.inner.paths.file(device, name);
        let arg = files::DeleteArg::new(path.clone());
        let out = sdk!(self, |c| files::delete_v2(c, &arg));
        match out.result {
            Ok(_) => Ok(()),
            Err(e) => match map_error(e, &path, out.retry_after, out.auth_failure, delete_error) {
                TransportError::NotFound(_) => Ok(()),
                e => Err(e),
            },
        }
    }

    async fn changes(&self) -> Result<Option<ChangeStream>, TransportError> {
        let (tx, rx) = mpsc::channel(64);
        let watcher = Watcher {
            http: self.inner.http.clone(),
            creds: self.inner.creds.clone(),
            paths: self.inner.paths.clone(),
            timeout: self.inner.options.longpoll_timeout,
            request_timeout: self.inner.options.request_timeout,
            shutdown: self.inner.shutdown.subscribe(),
            tx,
        };
        // The cursor is taken now, so that every change after this call is seen.
        let cursor = watcher.acquire().await?;
        let task = tokio::spawn(watcher.run(cursor));
        Ok(Some(ChangeStream::from_task(rx, task)))
    }

    /// The feed: `list_folder/continue` from the cursor (one request when nothing changed);
    /// without one, or after a reset, a complete recursive listing of `database`.
    async fn changes_since(
        &self,
        cursor: Option<&ChangeCursor>,
        skip: Option<&DeviceId>,
    ) -> Result<ChangeSet, TransportError> {
        let skip = skip.map(DeviceId::to_string);
        let ours = cursor.and_then(|c| c.0.strip_prefix(CURSOR_PREFIX)).filter(|c| !c.is_empty());
        if let Some(dropbox_cursor) = ours {
            match self.feed_changes(dropbox_cursor, skip.as_deref()).await {
                Ok(set) => return Ok(set),
                Err(ContinueError::Reset) => tracing::debug!("Dropbox cursor reset; listing everything"),
                Err(ContinueError::Other(e)) => return Err(e),
            }
        }
        self.full_changes(skip.as_deref()).await
    }
}

/// The long-poll loop behind [`Transport::changes`]. It holds no reference to the transport:
/// it ends when the stream is dropped or the transport goes.
struct Watcher {
    http: Arc<Http>,
    creds: Credentials,
    paths: Paths,
    timeout: Duration,
    request_timeout: Option<Duration>,
    shutdown: watch::Receiver<bool>,
    tx: mpsc::Sender<ChangeHint>,
}

/// What one step of the watcher saw.
enum Seen {
    /// Hints to send.
    Hints(Vec<ChangeHint>),
    /// Nothing yet.
    Nothing,
}

impl Watcher {
    async fn run(self, mut cursor: Option<(String, bool)>) {
        let mut shutdown = self.shutdown.clone();
        let mut failures = 0u32;
        loop {
            let step = self.step(&mut cursor);
            let outcome = tokio::select! {
                r = step => r,
                _ = self.tx.closed() => return,
                _ = shutdown.changed() => return,
            };
            let wait = match outcome {
                Ok((seen, backoff)) => {
                    failures = 0;
                    if let Seen::Hints(hints) = seen {
                        for hint in hints {
                            if let Err(mpsc::error::TrySendError::Closed(_)) = self.tx.try_send(hint) {
                                return;
                            }
                        }
                    }
                    backoff
                }
                Err(e) => {
                    failures += 1;
                    let wait = match &e {
                        TransportError::RateLimited { retry_after: Some(d) } => *d,
                        _ => Duration::from_millis(500) * 2u32.pow(failures.min(7)),
                    };
                    tracing::debug!(error = %e, ?wait, "Dropbox long poll failed; waiting");
                    Some(wait.min(Duration::from_secs(120)))
                }
            };
            if let Some(wait) = wait.filter(|w| !w.is_zero()) {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = self.tx.closed() => return,
                    _ = shutdown.changed() => return,
                }
            }
        }
    }

    /// A cursor at the present state of the tags folder (`false`), or, before it exists, of
    /// the nearest folder that does (`true`: any change there is a hint, then we narrow down).
    async fn acquire(&self) -> Result<Option<(String, bool)>, TransportError> {
        let mut scopes = vec![self.paths.root.clone(), self.paths.library.clone()];
        if !self.paths.library.is_empty() {
            scopes.push(String::new());
        }
        for (i, path) in scopes.into_iter().enumerate() {
            let arg = files::ListFolderArg::new(path).with_recursive(true);
            let call = Call::authed(&self.http, &self.creds);
            match files::list_folder_get_latest_cursor(&call, &arg).await {
                Ok(latest) => return Ok(Some((latest.cursor, i > 0))),
                Err(dropbox_sdk::Error::Api(files::ListFolderError::Path(files::LookupError::NotFound))) => {}
                Err(e) => {
                    return Err(map_error(e, "get_latest_cursor", call.retry_after(), call.auth_failure(), list_error));
                }
            }
        }
        Ok(None)
    }

    /// Gets a cursor if there is none, else long-polls and drains the changes; returns the
    /// hints and the backoff the server asked for.
    async fn step(&self, cursor: &mut Option<(String, bool)>) -> Result<(Seen, Option<Duration>), TransportError> {
        let Some((current, broad)) = cursor.clone() else {
            *cursor = self.acquire().await?;
            let wait = cursor.is_none().then_some(Duration::from_secs(5));
            return Ok((Seen::Nothing, wait));
        };
        let poll_timeout = Some(self.timeout + Duration::from_secs(120));
        let call = Call::noauth(&self.http, poll_timeout.filter(|_| self.request_timeout.is_some()));
        let arg = files::ListFolderLongpollArg::new(current.clone()).with_timeout(self.timeout.as_secs());
        let polled = match files::list_folder_longpoll(&call, &arg).await {
            Ok(r) => r,
            Err(dropbox_sdk::Error::Api(files::ListFolderLongpollError::Reset)) => {
                *cursor = None;
                return Ok((Seen::Hints(vec![ChangeHint { device: None }]), None));
            }
            Err(e) => {
                return Err(map_error(e, "list_folder/longpoll", call.retry_after(), None, |e, what| {
                    TransportError::Io(std::io::Error::other(format!("{what}: {e}")))
                }));
            }
        };
        let backoff = polled.backoff.map(Duration::from_secs);
        if !polled.changes {
            return Ok((Seen::Nothing, backoff));
        }
        if broad {
            *cursor = None;
            return Ok((Seen::Hints(vec![ChangeHint { device: None }]), backoff));
        }
        // Drain the changes to name the folders (and to move the cursor on).
        let mut devices = BTreeSet::new();
        let mut other = false;
        let mut next = current;
        loop {
            let call = Call::authed(&self.http, &self.creds);
            let arg = files::ListFolderContinueArg::new(next.clone());
            let page = match files::list_folder_continue(&call, &arg).await {
                Ok(page) => page,
                Err(dropbox_sdk::Error::Api(_)) => {
                    *cursor = None;
                    return Ok((Seen::Hints(vec![ChangeHint { device: None }]), backoff));
                }
                Err(e) => {
                    return Err(map_error(
                        e,
                        "list_folder/continue",
                        call.retry_after(),
                        call.auth_failure(),
                        |e, what| TransportError::Io(std::io::Error::other(format!("{what}: {e}"))),
                    ));
                }
            };
            for entry in &page.entries {
                let lower = match entry {
                    files::Metadata::File(f) => f.path_lower.clone(),
                    files::Metadata::Folder(f) => f.path_lower.clone(),
                    files::Metadata::Deleted(d) => d.path_lower.clone(),
                };
                match self
                    .paths
                    .split(lower.as_deref().unwrap_or(""), None)
                    .and_then(|(f, _)| f.parse::<DeviceId>().ok())
                {
                    Some(device) => {
                        devices.insert(device);
                    }
                    None => other = true,
                }
            }
            next = page.cursor;
            if !page.has_more {
                break;
            }
        }
        *cursor = Some((next, false));
        let mut hints: Vec<ChangeHint> = devices.into_iter().map(|d| ChangeHint { device: Some(d) }).collect();
        if other {
            hints.push(ChangeHint { device: None });
        }
        Ok((Seen::Hints(hints), backoff))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_paths_are_normalized() {
        assert_eq!(library_path("/Pictures/").unwrap(), "/Pictures");
        assert_eq!(library_path("/").unwrap(), "");
        assert!(library_path("Pictures").is_err());
        assert!(library_path("/a/../b").is_err());
    }

    #[test]
    fn split_finds_folder_and_file() {
        let p = Paths::new("/Pictures");
        let dev = "/pictures/onefolder_tags/database/abc";
        assert_eq!(p.split(dev, Some("/Pictures/onefolder_tags/database/ABC")), Some(("ABC".into(), None)));
        assert_eq!(p.split(&format!("{dev}/x.seg"), None), Some(("abc".into(), Some("x.seg".into()))));
        assert_eq!(p.split(&format!("{dev}/a/b"), None), None);
        assert_eq!(p.split("/pictures/onefolder_tags/library.json", None), None);
    }
}
