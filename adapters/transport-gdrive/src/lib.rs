//! The OneFolder Sync [`Transport`] on the Google Drive v3 API ([`google_drive3`]).
//!
//! # Layout
//!
//! The same as on disk, so that one device can use the API while another uses the Drive
//! desktop client on the same library, and both converge:
//!
//! ```text
//! My Drive/<library path>/onefolder_tags/
//!   library.json                 the manifest (created once)
//!   database/<deviceId>/         one folder per device, written only by that device
//!     device.json                replaced in place (same file id, new content)
//!     <seq>.seg, snap-<seq>.seg  immutable segments
//! ```
//!
//! The library folder is a path under My Drive ([`GdriveOptions::library_path`], e.g.
//! `Pictures` or `Photos/2024`), resolved to folder ids once per handle and cached, as are the
//! ids of `onefolder_tags`, `database` and every device folder. When a path component names
//! several folders, the oldest is used. Shared drives are not supported (My Drive only).
//!
//! # API calls
//!
//! - listing: `files.list` with `q = '<folder id>' in parents and trashed = false` (plus
//!   `name = '…'` and `mimeType` forms for lookups), following `nextPageToken`;
//! - reads: `files.get?alt=media` by file id; the size known from the listing (or a
//!   `files.get`) is checked against the cap first ([`TransportError::TooLarge`] without
//!   downloading), and the download stops once it passes the cap;
//! - writes: `files.create` with a `multipart/related` upload; `device.json`
//!   ([`WriteMode::Replace`]) is updated in place with `files.update` by id; folders are
//!   `POST files` with `mimeType = application/vnd.google-apps.folder`;
//! - deletes: `files.delete` by id (a 404 is success);
//! - the change feed: `changes.getStartPageToken`, then `changes.list` from the cursor (one
//!   request when nothing changed). Each change names a file id and its parents: a parent that
//!   is a known device folder maps it back; an unknown parent is looked up once
//!   (`files.get`) to find new device folders (and remembered when it is not ours). An expired
//!   or invalid page token falls back to [`full_listing`] (`complete: true`).
//!   [`Transport::changes`] polls the same feed every [`GdriveOptions::poll_interval`]
//!   (Drive's push notifications need a public HTTPS endpoint).
//!
//! # Consistency
//!
//! Drive has no conditional create: a segment is created only after a by-name lookup in the
//! device folder found nothing. That is safe because a device folder has exactly one writer;
//! if two writers do race, Drive keeps both files under one name, and that case is handled
//! like any duplicate below. Name listings are not read-after-write consistent: each handle
//! keeps what it wrote (and deleted) until a listing agrees, so a write followed by
//! [`Transport::list`] shows the file even when the server's listing lags.
//!
//! Drive allows several files of one name in a folder. Two folders named `onefolder_tags`,
//! `database` or `<deviceId>` (two devices created one at once) are read as one (the union).
//! In a device folder the oldest file of a name (by `createdTime`, then id) keeps the name;
//! each later *segment* of that name is listed as a conflict copy,
//! `00000000000000000007 (drive <fileId>).seg`, which
//! [`SegmentName::parse`](onefolder_core::names::SegmentName::parse) sees as a variant of the
//! same seq, and which [`Transport::read`] maps back to the file id. Later duplicates of other
//! names (`device.json`) are not listed. [`FileEntry::version`] is `<fileId>.<version>`: Drive's
//! `version` grows with every content change.
//!
//! # Errors
//!
//! 403 `rateLimitExceeded` / `userRateLimitExceeded` and 429 become
//! [`TransportError::RateLimited`] (with `Retry-After`), 5xx and network failures
//! [`TransportError::Transient`], so that [`RetryLayer`](onefolder_core::RetryLayer) backs off;
//! 404 is [`TransportError::NotFound`]. A 401 refreshes the access token once and retries;
//! when that fails, the error says to sign in again ([`TransportError::Unauthorized`], which
//! the retry layer does not retry). No request has a client-side timeout (a retry layer on a paused test
//! clock would fire it at once); the connection pool has none either.
//!
//! # Scope
//!
//! `drive.file` only sees the files this app created: enough when every device uses the API,
//! but a library folder that the Drive desktop client (or the user) filled is invisible to it.
//! Sharing a library with the desktop client needs the full `drive` scope, the default
//! ([`auth::SCOPE_DRIVE`]).
//!
//! # Endpoints
//!
//! [`GdriveOptions::from_env`] reads `ONEFOLDER_SYNC_GDRIVE_URL` (the API server, default
//! `https://www.googleapis.com`; the API base is `<url>/drive/v3/`) and
//! `ONEFOLDER_SYNC_GDRIVE_UPLOAD_URL` (the root uploads go under, default the same server).
//! The OAuth endpoints are in [`auth::OAuthApp`]. Plain `http://` is accepted for loopback
//! hosts only.

#![warn(missing_docs)]

pub mod auth;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use google_drive3::api::File;
use google_drive3::{DriveHub, common};
use http_body_util::BodyExt;
use onefolder_core::names::{MANIFEST_FILE, SegmentName};
use onefolder_core::transport::{check_name, full_listing};
use onefolder_core::{
    Capabilities, ChangeCursor, ChangeHint, ChangeSet, ChangeStream, DeviceId, FileEntry, Transport, TransportError,
    WriteMode,
};

pub use auth::{Account, AuthError, OAuthApp, Tokens};

/// Name of the folder, inside a library, that holds everything OneFolder Sync writes.
pub const TAGS_DIR: &str = "onefolder_tags";
/// Name of the folder, inside [`TAGS_DIR`], that holds one folder per device.
pub const DATABASE_DIR: &str = "database";
/// Drive's folder MIME type.
pub const FOLDER_MIME: &str = "application/vnd.google-apps.folder";
/// The Drive API server.
pub const DEFAULT_URL: &str = "https://www.googleapis.com";
/// Largest manifest [`Transport::read_manifest`] accepts.
pub const MANIFEST_CAP: u64 = 1024 * 1024;
/// How long this handle trusts its own writes over a listing that does not show them yet.
const OWN_WRITES_TTL: Duration = Duration::from_secs(120);
const FILE_FIELDS: &str = "id,name,mimeType,parents,size,version,createdTime,trashed";

type Connector = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;
type HttpClient = common::Client<Connector>;
type Hub = DriveHub<Connector>;

/// The HTTP client: rustls on ring with the webpki roots, HTTP/1.1, plain HTTP allowed
/// (endpoints are checked by [`check_endpoint`]).
fn http_client() -> HttpClient {
    let connector =
        hyper_rustls::HttpsConnectorBuilder::new().with_webpki_roots().https_or_http().enable_http1().build();
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector)
}

/// `https://…`, or `http://` on a loopback host only.
fn check_endpoint(url: &str) -> Result<(), String> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| format!("{url:?} is not a URL"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if authority.starts_with('[') {
        authority.split_once(']').map_or(authority, |(h, _)| h).trim_start_matches('[')
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    match scheme.to_ascii_lowercase().as_str() {
        "https" => Ok(()),
        "http" => {
            let loopback = host.eq_ignore_ascii_case("localhost")
                || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if loopback {
                Ok(())
            } else {
                Err(format!("{url:?}: plain http:// is accepted for loopback hosts only (127.0.0.0/8, ::1, localhost)"))
            }
        }
        _ => Err(format!("{url:?}: only https:// URLs are accepted")),
    }
}

/// Unix seconds as RFC 3339 (`2026-12-01T22:05:59Z`).
fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// Errors of setting a [`GdriveTransport`] up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GdriveError {
    /// An option is unusable (a bad URL, an empty library path).
    #[error("{0}")]
    Config(String),
}

/// Settings of a [`GdriveTransport`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GdriveOptions {
    /// The library folder, as a path under My Drive (`Pictures`, `Photos/2024`); created
    /// when missing at the first write.
    pub library_path: String,
    /// The API base (`DriveHub::base_url`), ending in `/`: `https://www.googleapis.com/drive/v3/`.
    pub api_url: String,
    /// The root uploads go under (`DriveHub::root_url`), ending in `/`:
    /// `https://www.googleapis.com/`.
    pub upload_url: String,
    /// The OAuth scope sent with each call (informational for the token source).
    pub scope: String,
    /// Reads a caller may have in flight at once.
    pub concurrent_reads: usize,
    /// How often the hint stream of [`Transport::changes`] polls the changes feed.
    pub poll_interval: Duration,
    /// `pageSize` of listings and of the changes feed.
    pub page_size: i32,
}

impl GdriveOptions {
    /// Google's endpoints, the given library path.
    pub fn new(library_path: impl Into<String>) -> GdriveOptions {
        GdriveOptions::with_server(library_path, DEFAULT_URL, DEFAULT_URL)
    }

    /// Endpoints under `server` (`https://www.googleapis.com`, or an emulator's
    /// `http://127.0.0.1:<port>`), uploads under `upload_server`.
    pub fn with_server(library_path: impl Into<String>, server: &str, upload_server: &str) -> GdriveOptions {
        GdriveOptions {
            library_path: library_path.into(),
            api_url: format!("{}/drive/v3/", server.trim_end_matches('/')),
            upload_url: format!("{}/", upload_server.trim_end_matches('/')),
            scope: auth::SCOPE_DRIVE.to_owned(),
            concurrent_reads: 4,
            poll_interval: Duration::from_secs(10),
            page_size: 1000,
        }
    }

    /// [`GdriveOptions::with_server`] from `ONEFOLDER_SYNC_GDRIVE_URL` and
    /// `ONEFOLDER_SYNC_GDRIVE_UPLOAD_URL` (each defaulting to [`DEFAULT_URL`], the upload
    /// server to the API server) and `ONEFOLDER_SYNC_GDRIVE_SCOPE`.
    pub fn from_env(library_path: impl Into<String>) -> Result<GdriveOptions, GdriveError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let server = var("ONEFOLDER_SYNC_GDRIVE_URL").unwrap_or_else(|| DEFAULT_URL.to_owned());
        let upload = var("ONEFOLDER_SYNC_GDRIVE_UPLOAD_URL").unwrap_or_else(|| server.clone());
        let mut options = GdriveOptions::with_server(library_path, &server, &upload);
        if let Some(scope) = var("ONEFOLDER_SYNC_GDRIVE_SCOPE") {
            options.scope = scope;
        }
        options.validate()?;
        Ok(options)
    }

    fn validate(&self) -> Result<(), GdriveError> {
        check_endpoint(&self.api_url).map_err(GdriveError::Config)?;
        check_endpoint(&self.upload_url).map_err(GdriveError::Config)?;
        let parts = self.path_parts();
        if parts.is_empty() {
            return Err(GdriveError::Config(format!(
                "the library path {:?} names no folder under My Drive",
                self.library_path
            )));
        }
        for part in &parts {
            check_name(part).map_err(|e| GdriveError::Config(format!("library path {:?}: {e}", self.library_path)))?;
        }
        Ok(())
    }

    fn path_parts(&self) -> Vec<String> {
        self.library_path.split(['/', '\\']).filter(|p| !p.is_empty()).map(str::to_owned).collect()
    }
}

/// One file as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Remote {
    id: String,
    name: String,
    size: u64,
    version: i64,
    created: i64,
}

impl Remote {
    fn from_file(f: &File) -> Option<Remote> {
        Some(Remote {
            id: f.id.clone()?,
            name: f.name.clone()?,
            size: f.size.unwrap_or(0).max(0) as u64,
            version: f.version.unwrap_or(0),
            created: f.created_time.map_or(i64::MAX, |t| t.timestamp_millis()),
        })
    }

    fn entry(&self, name: String) -> FileEntry {
        FileEntry::new(name, self.size).with_version(format!("{}.{}", self.id, self.version))
    }
}

/// The listed name of each file: the oldest of a name keeps it, later segments of that name
/// become `<stem> (drive <id>).seg`, later others are not listed.
fn display_names(files: &[Remote]) -> Vec<(String, &Remote)> {
    let mut by_name: BTreeMap<&str, Vec<&Remote>> = BTreeMap::new();
    for f in files {
        by_name.entry(f.name.as_str()).or_default().push(f);
    }
    let mut out = Vec::new();
    for (name, mut group) in by_name {
        group.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        group.dedup_by(|a, b| a.id == b.id);
        out.push((name.to_owned(), group[0]));
        if SegmentName::parse(name).is_some() {
            let stem = &name[..name.len() - 4];
            for f in &group[1..] {
                let variant = format!("{stem} (drive {}).seg", f.id);
                if check_name(&variant).is_ok() {
                    out.push((variant, f));
                }
            }
        }
    }
    out
}

/// The file id in a variant name made by [`display_names`].
fn variant_id(name: &str) -> Option<&str> {
    let inner = name.strip_suffix(").seg")?;
    let (_, id) = inner.rsplit_once(" (drive ")?;
    (!id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')).then_some(id)
}

/// A `q` string literal.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// What went wrong with one API call.
#[derive(Debug)]
struct Failure {
    op: String,
    status: Option<u16>,
    reason: Option<String>,
    location: Option<String>,
    message: String,
    retry_after: Option<Duration>,
    network: bool,
    auth: Option<AuthError>,
}

/// Records what the generated client drops from a failure: the status and `Retry-After`.
#[derive(Default)]
struct Capture {
    status: Option<u16>,
    retry_after: Option<Duration>,
}

impl common::Delegate for Capture {
    fn http_failure(&mut self, response: &common::Response, _err: Option<&serde_json::Value>) -> common::Retry {
        self.status = Some(response.status().as_u16());
        self.retry_after = response
            .headers()
            .get(hyper::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        common::Retry::Abort
    }
}

impl Failure {
    fn new(op: &str, error: common::Error, capture: &Capture) -> Failure {
        let mut f = Failure {
            op: op.to_owned(),
            status: capture.status,
            reason: None,
            location: None,
            message: String::new(),
            retry_after: capture.retry_after,
            network: false,
            auth: None,
        };
        match error {
            common::Error::BadRequest(v) => f.read_body(&v),
            common::Error::Failure(response) => {
                f.status = Some(response.status().as_u16());
                f.message = response.status().to_string();
            }
            common::Error::HttpError(e) => {
                f.network = true;
                f.message = e.to_string();
            }
            common::Error::MissingToken(e) => match e.downcast::<AuthError>() {
                Ok(auth) => f.auth = Some(*auth),
                Err(e) => f.message = e.to_string(),
            },
            common::Error::Io(e) => {
                f.network = true;
                f.message = e.to_string();
            }
            common::Error::JsonDecodeError(_, e) => {
                f.network = true;
                f.message = format!("unreadable answer: {e}");
            }
            other => f.message = other.to_string(),
        }
        f
    }

    /// Drive's `{"error":{"code":…,"message":…,"errors":[{"reason":…,"location":…}]}}`.
    fn read_body(&mut self, v: &serde_json::Value) {
        let e = &v["error"];
        if let Some(code) = e["code"].as_u64() {
            self.status = Some(code as u16);
        }
        self.message = e["message"].as_str().unwrap_or_default().to_owned();
        let first = &e["errors"][0];
        self.reason = first["reason"].as_str().map(str::to_owned);
        self.location = first["location"].as_str().map(str::to_owned);
        if self.message.is_empty() {
            // An OAuth-style body: {"error":"invalid_token",…}.
            self.message = v["error"].as_str().unwrap_or("unknown error").to_owned();
        }
    }

    fn unauthorized(&self) -> bool {
        self.status == Some(401)
    }

    fn not_found(&self) -> bool {
        self.status == Some(404)
    }

    /// The changes page token is no longer valid.
    fn bad_page_token(&self) -> bool {
        matches!(self.status, Some(400) | Some(404) | Some(410))
            && (self.location.as_deref() == Some("pageToken") || self.status != Some(400))
    }
}

impl From<Failure> for TransportError {
    fn from(f: Failure) -> TransportError {
        if let Some(auth) = f.auth {
            return if auth.is_transient() {
                TransportError::Transient(format!("{}: {auth}", f.op))
            } else {
                TransportError::Unauthorized(format!(
                    "{}: Google Drive sign-in is no longer valid ({auth}); run `onefolder-sync auth gdrive`",
                    f.op
                ))
            };
        }
        if f.network {
            return TransportError::Transient(format!("{}: {}", f.op, f.message));
        }
        let rate_reason = matches!(f.reason.as_deref(), Some("rateLimitExceeded" | "userRateLimitExceeded"));
        match f.status {
            Some(429) => TransportError::RateLimited { retry_after: f.retry_after },
            Some(403) if rate_reason => TransportError::RateLimited { retry_after: f.retry_after },
            Some(404) => TransportError::NotFound(format!("{}: {}", f.op, f.message)),
            Some(s) if s >= 500 => TransportError::Transient(format!("{}: HTTP {s}: {}", f.op, f.message)),
            Some(401) => TransportError::Unauthorized(format!(
                "{}: Google Drive refused the access token (401); run `onefolder-sync auth gdrive`",
                f.op
            )),
            Some(403) => TransportError::Unauthorized(format!(
                "{}: Google Drive refused (403 {}): {}",
                f.op,
                f.reason.as_deref().unwrap_or("forbidden"),
                f.message
            )),
            Some(s) => TransportError::Io(std::io::Error::other(format!(
                "{}: Google Drive answered {s} ({}): {}",
                f.op,
                f.reason.as_deref().unwrap_or("error"),
                f.message
            ))),
            None => TransportError::Io(std::io::Error::other(format!("{}: {}", f.op, f.message))),
        }
    }
}

/// Runs one generated call with a [`Capture`] delegate; a 401 refreshes the token once and
/// runs it again. Evaluates to `Result<T, Failure>`.
macro_rules! drive {
    ($inner:expr, $op:expr, |$hub:ident, $dlg:ident| $call:expr) => {{
        let mut refreshed = false;
        loop {
            let mut capture = Capture::default();
            let result = {
                let $hub = &$inner.hub;
                let $dlg: &mut dyn common::Delegate = &mut capture;
                $call.await
            };
            match result {
                Ok(v) => break Ok(v),
                Err(e) => {
                    let failure = Failure::new($op, e, &capture);
                    if failure.unauthorized() && !refreshed && $inner.tokens.can_refresh() {
                        tracing::debug!(op = $op, "401: refreshing the access token");
                        refreshed = true;
                        $inner.tokens.invalidate();
                        continue;
                    }
                    break Err(failure);
                }
            }
        }
    }};
}

/// What a handle knows about the folders and files of the library.
#[derive(Default)]
struct Cache {
    library: Option<String>,
    tags: Vec<String>,
    databases: Vec<String>,
    /// Device folder name → its folder ids.
    devices: BTreeMap<String, Vec<String>>,
    /// Device folder id → its name.
    folder_names: HashMap<String, String>,
    /// Parent ids looked up that are not device folders.
    not_ours: HashSet<String>,
    /// The last known files of each device folder (by name), kept up to date by the feed.
    listings: HashMap<String, Vec<Remote>>,
    /// Files this handle wrote that a listing has not shown yet.
    written: HashMap<String, Vec<(Remote, Instant)>>,
    /// Files this handle deleted that a listing may still show.
    deleted: HashSet<String>,
}

struct Inner {
    hub: Hub,
    tokens: Tokens,
    options: GdriveOptions,
    path: Vec<String>,
    cache: Mutex<Cache>,
}

/// A [`Transport`] on a Google Drive library folder. Cloning is cheap (clones share the
/// caches); other instances see each other's writes as two computers do.
#[derive(Clone)]
pub struct GdriveTransport {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for GdriveTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GdriveTransport")
            .field("library_path", &self.inner.options.library_path)
            .field("api_url", &self.inner.options.api_url)
            .finish_non_exhaustive()
    }
}

impl GdriveTransport {
    /// A transport with these options, authenticating with `tokens` (from
    /// [`Tokens::from_file`], refreshed automatically).
    pub fn new(options: GdriveOptions, tokens: Tokens) -> Result<GdriveTransport, GdriveError> {
        options.validate()?;
        let mut hub = DriveHub::new(http_client(), tokens.clone());
        hub.base_url(options.api_url.clone());
        hub.root_url(options.upload_url.clone());
        let path = options.path_parts();
        Ok(GdriveTransport { inner: Arc::new(Inner { hub, tokens, options, path, cache: Mutex::default() }) })
    }

    /// A transport with a fixed access token (tests; never refreshed).
    pub fn with_token(options: GdriveOptions, access_token: impl Into<String>) -> Result<GdriveTransport, GdriveError> {
        GdriveTransport::new(options, Tokens::fixed(access_token))
    }

    /// Its options.
    pub fn options(&self) -> &GdriveOptions {
        &self.inner.options
    }
}

impl Inner {
    fn cache(&self) -> MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every file (or folder, or both) in `parent` matching `extra`, following pagination.
    async fn children(&self, parent: &str, extra: &str) -> Result<Vec<File>, Failure> {
        let q = format!("{} in parents and trashed = false{extra}", quote(parent));
        let fields = format!("nextPageToken,files({FILE_FIELDS})");
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = drive!(self, "files.list", |hub, dlg| {
                let mut call = hub
                    .files()
                    .list()
                    .q(&q)
                    .page_size(self.options.page_size)
                    .spaces("drive")
                    .param("fields", &fields)
                    .add_scope(&self.options.scope)
                    .delegate(dlg);
                if let Some(t) = &token {
                    call = call.page_token(t);
                }
                call.doit()
            })?
            .1;
            out.extend(page.files.unwrap_or_default().into_iter().filter(|f| f.trashed != Some(true)));
            match page.next_page_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(out),
            }
        }
    }

    /// Folders named `name` in `parent`, oldest first.
    async fn folders_named(&self, parent: &str, name: &str) -> Result<Vec<Remote>, Failure> {
        let extra = format!(" and name = {} and mimeType = {}", quote(name), quote(FOLDER_MIME));
        let mut v: Vec<Remote> = self.children(parent, &extra).await?.iter().filter_map(Remote::from_file).collect();
        v.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        Ok(v)
    }

    /// Files (not folders) named `name` in any of `parents`.
    async fn files_named(&self, parents: &[String], name: &str) -> Result<Vec<Remote>, Failure> {
        let extra = format!(" and name = {} and mimeType != {}", quote(name), quote(FOLDER_MIME));
        let mut v = Vec::new();
        for p in parents {
            v.extend(self.children(p, &extra).await?.iter().filter_map(Remote::from_file));
        }
        v.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        Ok(v)
    }

    /// `POST files` with folder metadata (the generated client only creates with media).
    async fn create_folder(&self, parent: &str, name: &str) -> Result<String, Failure> {
        let body = serde_json::json!({"name": name, "mimeType": FOLDER_MIME, "parents": [parent]}).to_string();
        let url = format!("{}files?fields=id", self.options.api_url);
        let mut refreshed = false;
        loop {
            let op = "files.create (folder)";
            let fail = |status: Option<u16>, message: String, network: bool, auth: Option<AuthError>| Failure {
                op: op.to_owned(),
                status,
                reason: None,
                location: None,
                message,
                retry_after: None,
                network,
                auth,
            };
            let token = match self.tokens.access_token().await {
                Ok(t) => t,
                Err(e) => return Err(fail(None, String::new(), false, Some(e))),
            };
            let request = hyper::Request::builder()
                .method(hyper::Method::POST)
                .uri(&url)
                .header(hyper::header::AUTHORIZATION, format!("Bearer {token}"))
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .body(common::to_body(Some(body.clone())))
                .map_err(|e| fail(None, e.to_string(), false, None))?;
            let response = self.hub.client.request(request).await.map_err(|e| fail(None, e.to_string(), true, None))?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(hyper::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let bytes = response.into_body().collect().await.map_err(|e| fail(None, e.to_string(), true, None))?;
            let value: serde_json::Value = serde_json::from_slice(&bytes.to_bytes()).unwrap_or_default();
            if (200..300).contains(&status) {
                return value["id"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| fail(None, "no id in the answer".to_owned(), true, None));
            }
            let mut f = fail(Some(status), String::new(), false, None);
            f.read_body(&value);
            f.status = Some(status);
            f.retry_after = retry_after;
            if f.unauthorized() && !refreshed && self.tokens.can_refresh() {
                refreshed = true;
                self.tokens.invalidate();
                continue;
            }
            return Err(f);
        }
    }

    /// The library folder id; created (with its parents) when missing and `create`.
    async fn library(&self, create: bool) -> Result<Option<String>, TransportError> {
        if let Some(id) = self.cache().library.clone() {
            return Ok(Some(id));
        }
        let mut parent = "root".to_owned();
        for part in &self.path {
            parent = match self.folders_named(&parent, part).await?.first() {
                Some(f) => f.id.clone(),
                None if create => self.create_folder(&parent, part).await?,
                None => return Ok(None),
            };
        }
        self.cache().library = Some(parent.clone());
        Ok(Some(parent))
    }

    /// Ids of every folder named `name` in any of `parents` (created in the first parent when
    /// there is none and `create`).
    async fn union_of(&self, parents: &[String], name: &str, create: bool) -> Result<Vec<String>, TransportError> {
        let mut found = Vec::new();
        for p in parents {
            found.extend(self.folders_named(p, name).await?);
        }
        found.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        let mut ids: Vec<String> = found.into_iter().map(|f| f.id).collect();
        if ids.is_empty() && create {
            if let Some(first) = parents.first() {
                ids.push(self.create_folder(first, name).await?);
            }
        }
        Ok(ids)
    }

    /// The `onefolder_tags` folder ids (refreshed when `refresh`).
    async fn tags(&self, create: bool, refresh: bool) -> Result<Vec<String>, TransportError> {
        if !refresh {
            let cached = self.cache().tags.clone();
            if !cached.is_empty() {
                return Ok(cached);
            }
        }
        let Some(library) = self.library(create).await? else { return Ok(Vec::new()) };
        let ids = self.union_of(&[library], TAGS_DIR, create).await?;
        if !ids.is_empty() {
            self.cache().tags = ids.clone();
        }
        Ok(ids)
    }

    /// The `database` folder ids (refreshed when `refresh`).
    async fn databases(&self, create: bool, refresh: bool) -> Result<Vec<String>, TransportError> {
        if !refresh {
            let cached = self.cache().databases.clone();
            if !cached.is_empty() {
                return Ok(cached);
            }
        }
        let tags = self.tags(create, refresh).await?;
        if tags.is_empty() {
            return Ok(Vec::new());
        }
        let ids = self.union_of(&tags, DATABASE_DIR, create).await?;
        if !ids.is_empty() {
            self.cache().databases = ids.clone();
        }
        Ok(ids)
    }

    fn remember_device_folder(&self, name: &str, id: &str) {
        let mut c = self.cache();
        let ids = c.devices.entry(name.to_owned()).or_default();
        if !ids.iter().any(|i| i == id) {
            ids.push(id.to_owned());
        }
        c.folder_names.insert(id.to_owned(), name.to_owned());
    }

    /// The folder ids of one device folder (looked up when not cached; created when missing
    /// and `create`).
    async fn device_folders(&self, folder: &str, create: bool) -> Result<Vec<String>, TransportError> {
        if let Some(ids) = self.cache().devices.get(folder).filter(|v| !v.is_empty()).cloned() {
            return Ok(ids);
        }
        let databases = self.databases(create, false).await?;
        if databases.is_empty() {
            return Ok(Vec::new());
        }
        let ids = self.union_of(&databases, folder, create).await?;
        for id in &ids {
            self.remember_device_folder(folder, id);
        }
        Ok(ids)
    }

    /// The files of one device folder as the server lists them, merged with this handle's
    /// own writes and deletes; the listing is remembered.
    async fn list_folder(&self, folder: &str) -> Result<Vec<Remote>, TransportError> {
        let ids = self.device_folders(folder, false).await?;
        let mut files: Vec<Remote> = Vec::new();
        let extra = format!(" and mimeType != {}", quote(FOLDER_MIME));
        for id in &ids {
            match self.children(id, &extra).await {
                Ok(found) => files.extend(found.iter().filter_map(Remote::from_file)),
                Err(f) if f.not_found() => {
                    // The folder is gone: forget it (and look it up again next time).
                    let mut c = self.cache();
                    c.devices.remove(folder);
                    c.folder_names.remove(id);
                }
                Err(f) => return Err(f.into()),
            }
        }
        let mut c = self.cache();
        let listed: HashSet<String> = files.iter().map(|f| f.id.clone()).collect();
        c.deleted.retain(|id| listed.contains(id));
        let deleted = c.deleted.clone();
        files.retain(|f| !deleted.contains(&f.id));
        if let Some(written) = c.written.get_mut(folder) {
            written.retain(|(w, at)| {
                let confirmed = files.iter().any(|f| f.id == w.id && f.version >= w.version);
                !confirmed && at.elapsed() < OWN_WRITES_TTL
            });
            for (w, _) in written.iter() {
                files.retain(|f| f.id != w.id);
                files.push(w.clone());
            }
        }
        c.listings.insert(folder.to_owned(), files.clone());
        Ok(files)
    }

    fn remember_written(&self, folder: &str, remote: Remote) {
        let mut c = self.cache();
        let written = c.written.entry(folder.to_owned()).or_default();
        written.retain(|(w, _)| w.id != remote.id);
        written.push((remote.clone(), Instant::now()));
        let listing = c.listings.entry(folder.to_owned()).or_default();
        listing.retain(|f| f.id != remote.id);
        listing.push(remote);
    }

    fn forget(&self, folder: &str, id: &str) {
        let mut c = self.cache();
        c.deleted.insert(id.to_owned());
        if let Some(w) = c.written.get_mut(folder) {
            w.retain(|(r, _)| r.id != id);
        }
        if let Some(l) = c.listings.get_mut(folder) {
            l.retain(|r| r.id != id);
        }
    }

    /// The file a listed name stands for: a variant name's id, else the oldest file of the
    /// name (this handle's knowledge first, then a by-name lookup when `fresh` or unknown).
    async fn locate(&self, folder: &str, name: &str, fresh: bool) -> Result<Option<Remote>, TransportError> {
        if let Some(id) = variant_id(name) {
            let known = {
                let c = self.cache();
                let in_listing = c.listings.get(folder).and_then(|l| l.iter().find(|f| f.id == id)).cloned();
                in_listing.or_else(|| {
                    c.written.get(folder).and_then(|w| w.iter().find(|(f, _)| f.id == id)).map(|(f, _)| f.clone())
                })
            };
            if let (Some(k), false) = (known, fresh) {
                return Ok(Some(k));
            }
            let folders = self.device_folders(folder, false).await?;
            let got = drive!(self, "files.get", |hub, dlg| hub
                .files()
                .get(id)
                .param("fields", FILE_FIELDS)
                .add_scope(&self.options.scope)
                .delegate(dlg)
                .doit());
            return match got {
                Ok((_, f)) => {
                    let ours = f.parents.iter().flatten().any(|p| folders.contains(p)) && f.trashed != Some(true);
                    Ok(Remote::from_file(&f).filter(|_| ours))
                }
                Err(f) if f.not_found() => Ok(None),
                Err(f) => Err(f.into()),
            };
        }
        if !fresh {
            let c = self.cache();
            let written =
                c.written.get(folder).into_iter().flatten().filter(|(f, _)| f.name == name).map(|(f, _)| f.clone());
            let listed = c.listings.get(folder).into_iter().flatten().filter(|f| f.name == name).cloned();
            let mut known: Vec<Remote> = written.chain(listed).filter(|f| !c.deleted.contains(&f.id)).collect();
            known.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
            if let Some(first) = known.into_iter().next() {
                return Ok(Some(first));
            }
        }
        let folders = self.device_folders(folder, false).await?;
        if folders.is_empty() {
            return Ok(None);
        }
        let mut found = self.files_named(&folders, name).await?;
        {
            let c = self.cache();
            found.retain(|f| !c.deleted.contains(&f.id));
            // This handle's own write that the lookup does not show yet.
            if let Some(w) = c.written.get(folder) {
                for (f, _) in w.iter().filter(|(f, _)| f.name == name) {
                    if !found.iter().any(|x| x.id == f.id) {
                        found.push(f.clone());
                    }
                }
            }
        }
        found.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        Ok(found.into_iter().next())
    }

    /// Downloads a file's content, stopping once it passes `cap`.
    async fn download(&self, id: &str, name: &str, cap: u64) -> Result<Vec<u8>, Failure> {
        let (response, _) = drive!(self, "files.get (media)", |hub, dlg| hub
            .files()
            .get(id)
            .param("alt", "media")
            .add_scope(&self.options.scope)
            .delegate(dlg)
            .doit())?;
        let too_large = |size: u64| Failure {
            op: format!("{name} is {size} bytes, over the {cap}-byte limit"),
            status: Some(413),
            reason: Some("tooLarge".to_owned()),
            location: Some(name.to_owned()),
            message: size.to_string(),
            retry_after: None,
            network: false,
            auth: None,
        };
        let length = response
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(len) = length.filter(|&l| l > cap) {
            return Err(too_large(len));
        }
        let mut body = response.into_body();
        let mut out = Vec::with_capacity(length.unwrap_or(0).min(cap) as usize);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| Failure {
                op: "files.get (media)".to_owned(),
                status: None,
                reason: None,
                location: None,
                message: e.to_string(),
                retry_after: None,
                network: true,
                auth: None,
            })?;
            if let Some(data) = frame.data_ref() {
                out.extend_from_slice(data);
                if out.len() as u64 > cap {
                    return Err(too_large(out.len() as u64));
                }
            }
        }
        Ok(out)
    }

    async fn read_file(&self, folder: &str, name: &str, cap: u64) -> Result<Vec<u8>, TransportError> {
        for fresh in [false, true] {
            let Some(file) = self.locate(folder, name, fresh).await? else {
                if fresh {
                    break;
                }
                continue;
            };
            if file.size > cap {
                return Err(TransportError::TooLarge { name: name.to_owned(), size: file.size, cap });
            }
            match self.download(&file.id, name, cap).await {
                Ok(bytes) => return Ok(bytes),
                Err(f) if f.reason.as_deref() == Some("tooLarge") => {
                    let size = f.message.parse().unwrap_or(cap + 1);
                    return Err(TransportError::TooLarge { name: name.to_owned(), size, cap });
                }
                // Deleted since we listed it: look the name up again.
                Err(f) if f.not_found() && !fresh => self.forget(folder, &file.id),
                Err(f) => return Err(f.into()),
            }
        }
        Err(TransportError::NotFound(format!("{folder}/{name}")))
    }

    /// Creates a file with content in `parent` (multipart upload).
    async fn upload_new(&self, parent: &str, name: &str, bytes: &[u8]) -> Result<Remote, TransportError> {
        let (_, file) = drive!(self, "files.create", |hub, dlg| {
            let meta = File { name: Some(name.to_owned()), parents: Some(vec![parent.to_owned()]), ..File::default() };
            hub.files()
                .create(meta)
                .param("fields", FILE_FIELDS)
                .add_scope(&self.options.scope)
                .delegate(dlg)
                .upload(std::io::Cursor::new(bytes), "application/octet-stream".parse().expect("a MIME type"))
        })?;
        Remote::from_file(&file).ok_or_else(|| TransportError::Transient("files.create: no id in the answer".into()))
    }

    /// Replaces the content of the file `id` (multipart update).
    async fn upload_update(&self, id: &str, bytes: &[u8]) -> Result<Remote, Failure> {
        let (_, file) = drive!(self, "files.update", |hub, dlg| hub
            .files()
            .update(File::default(), id)
            .param("fields", FILE_FIELDS)
            .add_scope(&self.options.scope)
            .delegate(dlg)
            .upload(std::io::Cursor::new(bytes), "application/octet-stream".parse().expect("a MIME type")))?;
        Remote::from_file(&file).ok_or_else(|| Failure {
            op: "files.update".to_owned(),
            status: None,
            reason: None,
            location: None,
            message: "no id in the answer".to_owned(),
            retry_after: None,
            network: true,
            auth: None,
        })
    }

    async fn delete_id(&self, id: &str) -> Result<(), TransportError> {
        match drive!(self, "files.delete", |hub, dlg| hub
            .files()
            .delete(id)
            .add_scope(&self.options.scope)
            .delegate(dlg)
            .doit())
        {
            Ok(_) => Ok(()),
            Err(f) if f.not_found() => Ok(()),
            Err(f) => Err(f.into()),
        }
    }

    async fn start_token(&self) -> Result<String, TransportError> {
        let (_, t) = drive!(self, "changes.getStartPageToken", |hub, dlg| hub
            .changes()
            .get_start_page_token()
            .add_scope(&self.options.scope)
            .delegate(dlg)
            .doit())?;
        t.start_page_token.ok_or_else(|| TransportError::Transient("no startPageToken in the answer".into()))
    }

    /// Names the device folder `parent` belongs to, looking an unknown parent up once.
    async fn folder_of(&self, parent: &str) -> Result<Option<String>, TransportError> {
        {
            let c = self.cache();
            if let Some(name) = c.folder_names.get(parent) {
                return Ok(Some(name.clone()));
            }
            if c.not_ours.contains(parent) || c.databases.iter().any(|d| d == parent) || c.tags.contains(&parent.into())
            {
                return Ok(None);
            }
        }
        let databases = self.databases(false, false).await?;
        let got = drive!(self, "files.get", |hub, dlg| hub
            .files()
            .get(parent)
            .param("fields", FILE_FIELDS)
            .add_scope(&self.options.scope)
            .delegate(dlg)
            .doit());
        let file = match got {
            Ok((_, f)) => f,
            Err(f) if f.not_found() => {
                self.cache().not_ours.insert(parent.to_owned());
                return Ok(None);
            }
            Err(f) => return Err(f.into()),
        };
        let is_device_folder = file.mime_type.as_deref() == Some(FOLDER_MIME)
            && file.trashed != Some(true)
            && file.parents.iter().flatten().any(|p| databases.contains(p));
        match (is_device_folder, file.name) {
            (true, Some(name)) => {
                self.remember_device_folder(&name, parent);
                Ok(Some(name))
            }
            _ => {
                self.cache().not_ours.insert(parent.to_owned());
                Ok(None)
            }
        }
    }

    /// The feed from `token`: `None` when the token is no longer valid.
    async fn feed(&self, token: &str, skip: Option<&DeviceId>) -> Result<Option<ChangeSet>, TransportError> {
        let fields = format!("nextPageToken,newStartPageToken,changes(fileId,removed,file({FILE_FIELDS}))");
        let mut changes = Vec::new();
        let mut page = token.to_owned();
        let next = loop {
            let got = drive!(self, "changes.list", |hub, dlg| hub
                .changes()
                .list(&page)
                .page_size(self.options.page_size)
                .spaces("drive")
                .include_removed(true)
                .param("fields", &fields)
                .add_scope(&self.options.scope)
                .delegate(dlg)
                .doit());
            let list = match got {
                Ok((_, list)) => list,
                Err(f) if f.bad_page_token() => {
                    tracing::info!("the Drive changes page token is no longer valid: listing everything");
                    return Ok(None);
                }
                Err(f) => return Err(f.into()),
            };
            changes.extend(list.changes.unwrap_or_default());
            if let Some(t) = list.new_start_page_token {
                break t;
            }
            match list.next_page_token {
                Some(t) => page = t,
                None => return Err(TransportError::Transient("changes.list gave no page token".into())),
            }
        };
        let (databases, tags) = {
            let c = self.cache();
            (c.databases.clone(), c.tags.clone())
        };
        // Folders first: a new device folder (or a second `database`) precedes its files.
        let mut changed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for change in
            changes.iter().filter(|c| c.file.as_ref().and_then(|f| f.mime_type.as_deref()) == Some(FOLDER_MIME))
        {
            let Some(f) = &change.file else { continue };
            let (Some(id), Some(name)) = (&f.id, &f.name) else { continue };
            let parents: Vec<&String> = f.parents.iter().flatten().collect();
            if f.trashed == Some(true) {
                continue;
            }
            if name == DATABASE_DIR && parents.iter().any(|p| tags.contains(p)) {
                let mut c = self.cache();
                if !c.databases.contains(id) {
                    c.databases.push(id.clone());
                }
            } else if parents.iter().any(|p| databases.contains(p) || self.cache().databases.contains(p)) {
                self.remember_device_folder(name, id);
                changed.entry(name.clone()).or_default();
            }
        }
        for change in &changes {
            let id = change.file_id.clone().or_else(|| change.file.as_ref().and_then(|f| f.id.clone()));
            let Some(id) = id else { continue };
            let gone = change.removed == Some(true) || change.file.as_ref().is_some_and(|f| f.trashed == Some(true));
            if gone {
                let mut c = self.cache();
                for listing in c.listings.values_mut() {
                    listing.retain(|f| f.id != id);
                }
                continue;
            }
            let Some(file) = &change.file else { continue };
            if file.mime_type.as_deref() == Some(FOLDER_MIME) {
                continue;
            }
            let Some(remote) = Remote::from_file(file) else { continue };
            let mut folder = None;
            for parent in file.parents.iter().flatten() {
                if let Some(name) = self.folder_of(parent).await? {
                    folder = Some(name);
                    break;
                }
            }
            let Some(folder) = folder else { continue };
            let known = self.cache().listings.contains_key(&folder);
            if known {
                let mut c = self.cache();
                let listing = c.listings.entry(folder.clone()).or_default();
                listing.retain(|f| f.id != remote.id);
                listing.push(remote.clone());
            }
            changed.entry(folder).or_default().insert(remote.id);
        }
        let skip = skip.map(DeviceId::to_string);
        let mut set = ChangeSet { cursor: ChangeCursor(format!("gdrive:{next}")), ..ChangeSet::default() };
        for (folder, ids) in changed {
            set.folders.push(folder.clone());
            if Some(&folder) == skip.as_ref() || ids.is_empty() {
                continue;
            }
            let known = self.cache().listings.get(&folder).cloned();
            let files = match known {
                Some(files) => files,
                // A folder this handle never listed: list it once, so names are right.
                None => match self.list_folder(&folder).await {
                    Ok(files) => files,
                    Err(e) => {
                        set.failed.push((folder, e));
                        continue;
                    }
                },
            };
            for (name, remote) in display_names(&files) {
                if ids.contains(&remote.id) {
                    set.files.push((folder.clone(), remote.entry(name)));
                }
            }
        }
        Ok(Some(set))
    }
}

#[async_trait]
impl Transport for GdriveTransport {
    fn name(&self) -> &'static str {
        "gdrive"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            watch: true,
            case_insensitive: false,
            rate_limited: true,
            max_file_size: None,
            changes_feed: true,
            versions: true,
            concurrent_reads: self.inner.options.concurrent_reads.max(1),
        }
    }

    async fn read_manifest(&self) -> Result<Option<Vec<u8>>, TransportError> {
        let inner = &self.inner;
        let tags = inner.tags(false, false).await?;
        if tags.is_empty() {
            return Ok(None);
        }
        let Some(file) = inner.files_named(&tags, MANIFEST_FILE).await?.into_iter().next() else { return Ok(None) };
        if file.size > MANIFEST_CAP {
            return Err(TransportError::TooLarge {
                name: MANIFEST_FILE.to_owned(),
                size: file.size,
                cap: MANIFEST_CAP,
            });
        }
        match inner.download(&file.id, MANIFEST_FILE, MANIFEST_CAP).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(f) if f.not_found() => Ok(None),
            Err(f) if f.reason.as_deref() == Some("tooLarge") => Err(TransportError::TooLarge {
                name: MANIFEST_FILE.to_owned(),
                size: MANIFEST_CAP + 1,
                cap: MANIFEST_CAP,
            }),
            Err(f) => Err(f.into()),
        }
    }

    async fn create_manifest(&self, bytes: &[u8]) -> Result<bool, TransportError> {
        let inner = &self.inner;
        let tags = inner.tags(true, false).await?;
        if !inner.files_named(&tags, MANIFEST_FILE).await?.is_empty() {
            return Ok(false);
        }
        let mine = inner.upload_new(&tags[0], MANIFEST_FILE, bytes).await?;
        // Two devices creating a library at once: the oldest manifest wins.
        let all = inner.files_named(&tags, MANIFEST_FILE).await?;
        if all.first().is_some_and(|first| first.id != mine.id) {
            inner.delete_id(&mine.id).await?;
            return Ok(false);
        }
        Ok(true)
    }

    async fn list_devices(&self) -> Result<Vec<String>, TransportError> {
        let inner = &self.inner;
        let databases = inner.databases(false, true).await?;
        let mut names = BTreeSet::new();
        let extra = format!(" and mimeType = {}", quote(FOLDER_MIME));
        for db in &databases {
            for f in inner.children(db, &extra).await? {
                if let (Some(id), Some(name)) = (&f.id, &f.name) {
                    inner.remember_device_folder(name, id);
                    names.insert(name.clone());
                }
            }
        }
        // Folders this handle created that the listing does not show yet.
        let c = inner.cache();
        names.extend(c.written.keys().filter(|k| c.devices.contains_key(*k)).cloned());
        Ok(names.into_iter().collect())
    }

    async fn list(&self, device: &DeviceId) -> Result<Vec<FileEntry>, TransportError> {
        let files = self.inner.list_folder(&device.to_string()).await?;
        Ok(display_names(&files).into_iter().map(|(name, f)| f.entry(name)).collect())
    }

    async fn read(&self, device: &DeviceId, name: &str, cap: u64) -> Result<Vec<u8>, TransportError> {
        check_name(name)?;
        self.inner.read_file(&device.to_string(), name, cap).await
    }

    async fn write(&self, device: &DeviceId, name: &str, bytes: &[u8], mode: WriteMode) -> Result<(), TransportError> {
        check_name(name)?;
        let inner = &self.inner;
        let folder = device.to_string();
        let folders = inner.device_folders(&folder, true).await?;
        // A create-only write asks the server; a replace may use the id this handle knows
        // (it stays the same; a 404 below creates the file again).
        let existing = inner.locate(&folder, name, mode == WriteMode::CreateNew).await?;
        let remote = match (mode, existing) {
            (WriteMode::CreateNew, Some(_)) => return Err(TransportError::AlreadyExists(format!("{folder}/{name}"))),
            (WriteMode::Replace, Some(file)) => match inner.upload_update(&file.id, bytes).await {
                Ok(r) => r,
                Err(f) if f.not_found() => {
                    inner.forget(&folder, &file.id);
                    inner.upload_new(&folders[0], name, bytes).await?
                }
                Err(f) => return Err(f.into()),
            },
            (_, None) => inner.upload_new(&folders[0], name, bytes).await?,
        };
        inner.remember_written(&folder, remote);
        Ok(())
    }

    async fn delete(&self, device: &DeviceId, name: &str) -> Result<(), TransportError> {
        check_name(name)?;
        let inner = &self.inner;
        let folder = device.to_string();
        let Some(file) = inner.locate(&folder, name, false).await? else { return Ok(()) };
        inner.delete_id(&file.id).await?;
        inner.forget(&folder, &file.id);
        Ok(())
    }

    async fn changes(&self) -> Result<Option<ChangeStream>, TransportError> {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let inner = self.inner.clone();
        let mut cursor = ChangeCursor(format!("gdrive:{}", inner.start_token().await?));
        let interval = inner.options.poll_interval;
        let task = tokio::spawn(async move {
            let me = GdriveTransport { inner };
            loop {
                tokio::time::sleep(interval).await;
                if tx.is_closed() {
                    break;
                }
                match me.changes_since(Some(&cursor), None).await {
                    Ok(set) => {
                        cursor = set.cursor;
                        let hints: Vec<ChangeHint> = if set.complete {
                            vec![ChangeHint { device: None }]
                        } else {
                            set.folders.iter().map(|f| ChangeHint { device: f.parse().ok() }).collect()
                        };
                        for hint in hints {
                            if let Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) = tx.try_send(hint) {
                                return;
                            }
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "polling the Drive changes feed failed"),
                }
            }
        });
        Ok(Some(ChangeStream::from_task(rx, task)))
    }

    async fn changes_since(
        &self,
        cursor: Option<&ChangeCursor>,
        skip: Option<&DeviceId>,
    ) -> Result<ChangeSet, TransportError> {
        let inner = &self.inner;
        if let Some(token) = cursor.and_then(|c| c.0.strip_prefix("gdrive:")) {
            if let Some(set) = inner.feed(token, skip).await? {
                return Ok(set);
            }
        }
        // The token first: nothing written during the listing is missed.
        let token = inner.start_token().await?;
        let mut set = full_listing(self, skip).await?;
        set.cursor = ChangeCursor(format!("gdrive:{token}"));
        Ok(set)
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    fn remote(id: &str, name: &str, created: i64) -> Remote {
        Remote { id: id.into(), name: name.into(), size: 1, version: 1, created }
    }

    #[test]
    fn duplicate_segment_names_become_variants_of_the_same_seq() {
        let files = vec![
            remote("b", "00000000000000000007.seg", 2),
            remote("a", "00000000000000000007.seg", 1),
            remote("c", "device.json", 1),
            remote("d", "device.json", 3),
        ];
        let names: Vec<(String, String)> = display_names(&files).into_iter().map(|(n, f)| (n, f.id.clone())).collect();
        assert_eq!(
            names,
            vec![
                ("00000000000000000007.seg".to_owned(), "a".to_owned()),
                ("00000000000000000007 (drive b).seg".to_owned(), "b".to_owned()),
                ("device.json".to_owned(), "c".to_owned()),
            ]
        );
        let variant = SegmentName::parse("00000000000000000007 (drive b).seg").unwrap();
        assert_eq!((variant.seq, variant.variant), (7, true));
        check_name("00000000000000000007 (drive 1Emu-x_9).seg").unwrap();
        assert_eq!(variant_id("00000000000000000007 (drive 1Emu-x_9).seg"), Some("1Emu-x_9"));
        assert_eq!(variant_id("00000000000000000007 (Anna's conflicted copy).seg"), None);
    }

    #[test]
    fn plain_http_only_on_loopback() {
        for ok in [
            "https://www.googleapis.com/drive/v3/",
            "http://127.0.0.1:8080/",
            "http://localhost/",
            "http://[::1]:9/",
            "http://127.3.4.5/",
        ] {
            check_endpoint(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["http://example.com/", "http://10.0.0.1/", "ftp://127.0.0.1/", "http://127.0.0.1.evil.com/", "nope"]
        {
            assert!(check_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn q_literals_are_escaped() {
        assert_eq!(quote("Anna's \\ copy"), "'Anna\\'s \\\\ copy'");
    }
}
