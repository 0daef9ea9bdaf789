//! The Google Drive API v3 emulator: the subset of `files`, `changes` and the OAuth endpoints
//! that `onefolder-transport-gdrive` uses, with Drive's request and response shapes.
//!
//! # Routes
//!
//! | route | Drive method |
//! | --- | --- |
//! | `GET /drive/v3/files` | `files.list` (`q` with `'<id>' in parents`, `name = '…'`, `mimeType = '…'` / `!=`, `trashed = false`, joined by `and`; `pageSize`, `pageToken`) |
//! | `GET /drive/v3/files/{id}` | `files.get` (`alt=media` gives the content) |
//! | `POST /drive/v3/files` | `files.create` without media (folders) |
//! | `POST /upload/drive/v3/files?uploadType=multipart` | `files.create` with a `multipart/related` body |
//! | `PATCH /upload/drive/v3/files/{id}?uploadType=multipart` | `files.update` of the content |
//! | `DELETE /drive/v3/files/{id}` | `files.delete` (a folder with everything in it) |
//! | `GET /drive/v3/changes/startPageToken`, `GET /drive/v3/changes` | the changes feed |
//! | `GET /o/oauth2/v2/auth` | consent, auto-approved: a 302 to `redirect_uri` with `code` and `state` |
//! | `POST /token` | `authorization_code` and `refresh_token` grants |
//!
//! int64 fields (`size`, `version`) are JSON strings; errors are Drive's
//! `{"error":{"code":…,"message":…,"errors":[{"domain":…,"reason":…,"message":…}]}}`. Every
//! API request needs `Authorization: Bearer <token>`: [`ACCESS_TOKEN`] always works, tokens
//! from the token endpoint work until they expire.
//!
//! # Storage
//!
//! [`GdriveEmulator::start`] keeps everything in memory. [`GdriveEmulator::start_on_dir`]
//! makes a directory the Drive root: API writes go to the directory, and files that others
//! write there (a device on the folder transport) appear in listings and in the changes feed
//! (the directory is rescanned on every request that reads). File ids are stable per path.
//! Names a file system cannot hold (a second file of one name, a folder named `..`) live in
//! memory only.
//!
//! # Faults
//!
//! Set at run time: [`GdriveEmulator::fail_next`] (429 with `Retry-After`, 403 rate limits,
//! 500), [`GdriveEmulator::set_delay`], [`GdriveEmulator::set_listing_lag`],
//! [`GdriveEmulator::duplicate_next_uploads`], [`GdriveEmulator::reset_changes`],
//! [`GdriveEmulator::expire_tokens`], [`GdriveEmulator::set_max_page_size`], and a seeded
//! mix of them, [`GdriveEmulator::set_chaos`]. [`GdriveEmulator::counts`] counts requests per
//! endpoint.

// Handlers answer errors as ready axum responses.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State as Ext};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use serde_json::{Value, json};

use crate::server::Running;

/// The access token that every emulator accepts (it never expires).
pub const ACCESS_TOKEN: &str = "emulator-access-token";
/// The OAuth client the emulator knows from the start.
pub const CLIENT_ID: &str = "emulator-client.apps.googleusercontent.com";
/// The secret of [`CLIENT_ID`].
pub const CLIENT_SECRET: &str = "emulator-client-secret";
/// Drive's folder MIME type.
pub const FOLDER_MIME: &str = "application/vnd.google-apps.folder";
/// The id of the My Drive root (also reachable as `root`).
pub const ROOT_ID: &str = "0AEmulatorRootFolder";

/// An error the emulator can be told to answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 429 Too Many Requests with `Retry-After: <secs>`.
    TooManyRequests {
        /// The `Retry-After` header, in seconds.
        retry_after_secs: u64,
    },
    /// 403 with reason `rateLimitExceeded` (`user: false`) or `userRateLimitExceeded`.
    RateLimit403 {
        /// Which reason.
        user: bool,
    },
    /// 500 backendError.
    ServerError,
}

/// What the emulator does besides answering.
#[derive(Default)]
struct Faults {
    queue: Vec<Fault>,
    delay: Duration,
    listing_lag: Duration,
    duplicate_uploads: u32,
    max_page_size: Option<usize>,
    rotate_refresh_tokens: bool,
    chaos: Option<u64>,
}

#[derive(Clone)]
struct Node {
    id: String,
    name: String,
    parent: Option<String>,
    folder: bool,
    mime: String,
    content: Arc<Vec<u8>>,
    version: i64,
    created_ms: i64,
    modified_ms: i64,
    /// Hidden from `files.list` until then (a lagging listing).
    listed_from: Option<Instant>,
    /// Path relative to the served directory, when the node is on disk.
    disk: Option<PathBuf>,
    /// Size and modification time of the disk file when last seen.
    sig: Option<(u64, SystemTime)>,
}

struct Issued {
    expires: Instant,
}

struct Code {
    client_id: String,
    redirect_uri: String,
    scope: String,
}

#[derive(Default)]
struct State {
    nodes: BTreeMap<String, Node>,
    next_id: u64,
    last_ms: i64,
    /// Every change, in order: the file id. A page token is 1 + a position in it.
    feed: Vec<String>,
    /// Bumped by a reset: page tokens of an earlier epoch are invalid.
    feed_epoch: usize,
    tokens: HashMap<String, Issued>,
    token_lifetime: Option<Duration>,
    refresh_tokens: HashMap<String, String>,
    codes: HashMap<String, Code>,
    clients: HashMap<String, String>,
    counts: BTreeMap<String, u64>,
    faults: Faults,
    dir: Option<PathBuf>,
    path_ids: HashMap<PathBuf, String>,
    rng: u64,
}

type Shared = Arc<Mutex<State>>;

/// Feed positions per epoch of page tokens.
const TOKEN_EPOCH: usize = 1_000_000_000;

fn lock(s: &Shared) -> MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running Google Drive emulator; it stops when dropped.
pub struct GdriveEmulator {
    running: Running,
    state: Shared,
}

impl std::fmt::Debug for GdriveEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GdriveEmulator").field("url", &self.running.url()).finish_non_exhaustive()
    }
}

impl GdriveEmulator {
    /// Starts an emulator that keeps its Drive in memory.
    pub fn start() -> std::io::Result<GdriveEmulator> {
        Self::start_inner(None)
    }

    /// Starts an emulator whose My Drive root is the directory `dir`.
    pub fn start_on_dir(dir: &Path) -> std::io::Result<GdriveEmulator> {
        std::fs::create_dir_all(dir)?;
        Self::start_inner(Some(dir.to_path_buf()))
    }

    fn start_inner(dir: Option<PathBuf>) -> std::io::Result<GdriveEmulator> {
        let mut state = State { dir, rng: 0x9e37_79b9_7f4a_7c15, ..State::default() };
        state.clients.insert(CLIENT_ID.to_owned(), CLIENT_SECRET.to_owned());
        let now = state.now_ms();
        state.nodes.insert(
            ROOT_ID.to_owned(),
            Node {
                id: ROOT_ID.to_owned(),
                name: "My Drive".to_owned(),
                parent: None,
                folder: true,
                mime: FOLDER_MIME.to_owned(),
                content: Arc::default(),
                version: 1,
                created_ms: now,
                modified_ms: now,
                listed_from: None,
                disk: state.dir.as_ref().map(|_| PathBuf::new()),
                sig: None,
            },
        );
        state.path_ids.insert(PathBuf::new(), ROOT_ID.to_owned());
        let state: Shared = Arc::new(Mutex::new(state));
        lock(&state).rescan();
        let router = Router::new()
            .route("/drive/v3/files", get(files_list).post(files_create_metadata))
            .route("/drive/v3/files/{id}", get(files_get).delete(files_delete))
            .route("/upload/drive/v3/files", post(files_create_upload))
            .route("/upload/drive/v3/files/{id}", patch(files_update_upload))
            .route("/drive/v3/changes/startPageToken", get(changes_start))
            .route("/drive/v3/changes", get(changes_list))
            .route("/o/oauth2/v2/auth", get(authorize))
            .route("/token", post(token))
            .with_state(state.clone());
        Ok(GdriveEmulator { running: Running::start(router)?, state })
    }

    /// `http://127.0.0.1:<port>` (no trailing slash).
    pub fn url(&self) -> String {
        self.running.url()
    }

    /// The API base (`DriveHub::base_url`): `<url>/drive/v3/`.
    pub fn api_url(&self) -> String {
        format!("{}/drive/v3/", self.url())
    }

    /// The root URL uploads go under (`DriveHub::root_url`): `<url>/`.
    pub fn upload_url(&self) -> String {
        format!("{}/", self.url())
    }

    /// The consent page: `<url>/o/oauth2/v2/auth`.
    pub fn auth_url(&self) -> String {
        format!("{}/o/oauth2/v2/auth", self.url())
    }

    /// The token endpoint: `<url>/token`.
    pub fn token_url(&self) -> String {
        format!("{}/token", self.url())
    }

    /// Requests per endpoint so far (`files.list`, `files.get`, `files.get.media`,
    /// `files.create`, `files.create.upload`, `files.update.upload`, `files.delete`,
    /// `changes.getStartPageToken`, `changes.list`, `oauth.authorize`, `oauth.token`).
    pub fn counts(&self) -> BTreeMap<String, u64> {
        lock(&self.state).counts.clone()
    }

    /// Requests to one endpoint so far.
    pub fn count(&self, endpoint: &str) -> u64 {
        lock(&self.state).counts.get(endpoint).copied().unwrap_or(0)
    }

    /// Requests to the Drive API (not OAuth) so far.
    pub fn api_requests(&self) -> u64 {
        lock(&self.state).counts.iter().filter(|(k, _)| !k.starts_with("oauth")).map(|(_, v)| v).sum()
    }

    /// Sets every counter back to zero.
    pub fn reset_counts(&self) {
        lock(&self.state).counts.clear();
    }

    /// The next API requests (one each, in order) fail with these faults.
    pub fn fail_next(&self, faults: &[Fault]) {
        lock(&self.state).faults.queue.extend_from_slice(faults);
    }

    /// Every API request waits this long before it is answered.
    pub fn set_delay(&self, delay: Duration) {
        lock(&self.state).faults.delay = delay;
    }

    /// Files created or changed are missing from `files.list` for this long (`files.get`
    /// and the changes feed see them at once).
    pub fn set_listing_lag(&self, lag: Duration) {
        lock(&self.state).faults.listing_lag = lag;
    }

    /// Each of the next `n` multipart uploads creates a second file of the same name and
    /// content beside the one it reports (as two clients creating it at once would).
    pub fn duplicate_next_uploads(&self, n: u32) {
        lock(&self.state).faults.duplicate_uploads = n;
    }

    /// Invalidates every changes page token handed out so far (`changes.list` answers 400).
    pub fn reset_changes(&self) {
        let mut s = lock(&self.state);
        s.feed_epoch += 1;
    }

    /// Expires every access token issued by the token endpoint (the next request with one
    /// gets 401); [`ACCESS_TOKEN`] is not affected.
    pub fn expire_tokens(&self) {
        let now = Instant::now();
        lock(&self.state).tokens.values_mut().for_each(|t| t.expires = now);
    }

    /// Lifetime of newly issued access tokens (`None`: an hour).
    pub fn set_token_lifetime(&self, lifetime: Option<Duration>) {
        lock(&self.state).token_lifetime = lifetime;
    }

    /// Whether a refresh grant hands out a new refresh token (Google does not; others do).
    pub fn set_rotate_refresh_tokens(&self, rotate: bool) {
        lock(&self.state).faults.rotate_refresh_tokens = rotate;
    }

    /// Caps `pageSize` of `files.list` and `changes.list` (`None`: Drive's 1000).
    pub fn set_max_page_size(&self, max: Option<usize>) {
        lock(&self.state).faults.max_page_size = max;
    }

    /// Turns a seeded mix of faults on (`Some(seed)`) or every fault off (`None`): about
    /// one request in ten answered 429 (`Retry-After: 0`), 403 `userRateLimitExceeded` or
    /// 500, a few milliseconds of delay, 50 ms of listing lag, one request in a hundred
    /// expiring every issued access token, and one `changes.list` in fifty finding the feed
    /// reset.
    pub fn set_chaos(&self, seed: Option<u64>) {
        let mut s = lock(&self.state);
        match seed {
            Some(seed) => {
                s.rng = seed ^ 0x9e37_79b9_7f4a_7c15;
                s.faults.chaos = Some(seed);
                s.faults.listing_lag = Duration::from_millis(50);
            }
            None => s.faults = Faults { rotate_refresh_tokens: s.faults.rotate_refresh_tokens, ..Faults::default() },
        }
    }

    /// A refresh token for [`CLIENT_ID`], as a finished sign-in leaves (for tests that need
    /// refreshable credentials without a consent round trip).
    pub fn issue_refresh_token(&self) -> String {
        let mut s = lock(&self.state);
        let token = s.new_secret("1//emu-refresh-");
        s.refresh_tokens.insert(token.clone(), CLIENT_ID.to_owned());
        token
    }

    /// Plays the user's browser: GETs `authorize_url` (the consent page approves at once)
    /// and follows its redirect to the loopback address the app listens on.
    pub async fn consent(&self, authorize_url: &str) -> Result<(), String> {
        let (status, headers) = http_get(authorize_url).await?;
        if status != 302 {
            return Err(format!("the consent page answered {status}"));
        }
        let location = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("location"))
            .map(|(_, v)| v.clone())
            .ok_or("no Location in the consent redirect")?;
        let (status, _) = http_get(&location).await?;
        if !(200..300).contains(&status) {
            return Err(format!("the app's redirect page answered {status}"));
        }
        Ok(())
    }

    /// Puts a file at `folders/…/name` under the root directly, bypassing every API check
    /// (folders are created as needed; a folder of the name that exists is reused; a file of
    /// the name that exists gets a second file beside it). Returns the file's id.
    pub fn plant(&self, folders: &[&str], name: &str, bytes: &[u8]) -> String {
        let mut s = lock(&self.state);
        s.rescan();
        let mut parent = ROOT_ID.to_owned();
        for folder in folders {
            let found = s
                .nodes
                .values()
                .filter(|n| n.folder && n.parent.as_deref() == Some(&parent) && n.name == *folder)
                .map(|n| n.id.clone())
                .next();
            parent = match found {
                Some(id) => id,
                None => s.create_node(&parent, folder, true, FOLDER_MIME, Vec::new(), false),
            };
        }
        s.create_node(&parent, name, false, "application/octet-stream", bytes.to_vec(), false)
    }

    /// Ids of the files (or folders) named `name` anywhere, oldest first.
    pub fn ids_named(&self, name: &str) -> Vec<String> {
        let mut s = lock(&self.state);
        s.rescan();
        let mut v: Vec<&Node> = s.nodes.values().filter(|n| n.name == name).collect();
        v.sort_by_key(|n| (n.created_ms, n.id.clone()));
        v.into_iter().map(|n| n.id.clone()).collect()
    }

    /// Creates a folder named `name` in the folder `parent` (an id, or `root`), as another
    /// client would, even when one of that name exists; returns its id.
    pub fn create_folder(&self, parent: &str, name: &str) -> String {
        let mut s = lock(&self.state);
        let parent = if parent == "root" { ROOT_ID.to_owned() } else { parent.to_owned() };
        s.create_node(&parent, name, true, FOLDER_MIME, Vec::new(), false)
    }
}

impl State {
    fn now_ms(&mut self) -> i64 {
        let wall = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        self.last_ms = wall.max(self.last_ms + 1);
        self.last_ms
    }

    fn next_random(&mut self) -> u64 {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn new_id(&mut self) -> String {
        self.next_id += 1;
        let salt = self.next_random() % 0x1_0000_0000;
        format!("1Emu{:08x}{:010}", salt, self.next_id)
    }

    fn new_secret(&mut self, prefix: &str) -> String {
        let a = self.next_random()
            ^ SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        let b = self.next_random();
        format!("{prefix}{a:016x}{b:016x}")
    }

    fn count(&mut self, endpoint: &str) {
        *self.counts.entry(endpoint.to_owned()).or_default() += 1;
    }

    fn resolve(&self, id: &str) -> String {
        if id == "root" { ROOT_ID.to_owned() } else { id.to_owned() }
    }

    fn abs(&self, rel: &Path) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(rel))
    }

    /// Creates a node in `parent` (on disk when the parent is and the name is free there).
    fn create_node(&mut self, parent: &str, name: &str, folder: bool, mime: &str, bytes: Vec<u8>, lag: bool) -> String {
        let id = self.new_id();
        let now = self.now_ms();
        let disk = self.disk_path_for(parent, name);
        let mut sig = None;
        if let (Some(rel), Some(abs)) = (disk.as_ref(), disk.as_ref().and_then(|r| self.abs(r))) {
            let written = if folder { std::fs::create_dir(&abs) } else { write_atomic(&abs, &bytes) };
            match written {
                Ok(()) => {
                    sig = disk_sig(&abs);
                    self.path_ids.insert(rel.clone(), id.clone());
                }
                Err(e) => tracing::warn!(error = %e, "emulator could not write to its directory"),
            }
        }
        let disk = if sig.is_some() || (folder && disk.is_some()) { disk } else { None };
        let listed_from = (lag && !self.faults.listing_lag.is_zero()).then(|| Instant::now() + self.faults.listing_lag);
        let node = Node {
            id: id.clone(),
            name: name.to_owned(),
            parent: Some(parent.to_owned()),
            folder,
            mime: mime.to_owned(),
            content: Arc::new(bytes),
            version: 1,
            created_ms: now,
            modified_ms: now,
            listed_from,
            disk,
            sig,
        };
        self.nodes.insert(id.clone(), node);
        self.feed.push(id.clone());
        id
    }

    /// Where a new child `name` of `parent` goes on disk: `None` in memory mode, when the
    /// parent is not on disk, when the name cannot be a file name or is taken there.
    fn disk_path_for(&self, parent: &str, name: &str) -> Option<PathBuf> {
        self.dir.as_ref()?;
        let parent_rel = self.nodes.get(parent)?.disk.clone()?;
        let impossible = name.is_empty() || name == "." || name == ".." || name.starts_with('.');
        if impossible || name.contains(['/', '\\', '\0']) {
            return None;
        }
        let rel = parent_rel.join(name);
        let abs = self.abs(&rel)?;
        (!abs.exists()).then_some(rel)
    }

    fn update_content(&mut self, id: &str, bytes: Vec<u8>, lag: bool) {
        let now = self.now_ms();
        let lag_until = (lag && !self.faults.listing_lag.is_zero()).then(|| Instant::now() + self.faults.listing_lag);
        let abs = self.nodes.get(id).and_then(|n| n.disk.clone()).and_then(|r| self.abs(&r));
        let mut sig = None;
        if let Some(abs) = abs {
            match write_atomic(&abs, &bytes) {
                Ok(()) => sig = disk_sig(&abs),
                Err(e) => tracing::warn!(error = %e, "emulator could not write to its directory"),
            }
        }
        if let Some(n) = self.nodes.get_mut(id) {
            n.content = Arc::new(bytes);
            n.version += 1;
            n.modified_ms = now;
            if sig.is_some() {
                n.sig = sig;
            }
            if lag_until.is_some() {
                n.listed_from = lag_until;
            }
        }
        self.feed.push(id.to_owned());
    }

    fn delete_node(&mut self, id: &str) {
        let children: Vec<String> =
            self.nodes.values().filter(|n| n.parent.as_deref() == Some(id)).map(|n| n.id.clone()).collect();
        for child in children {
            self.delete_node(&child);
        }
        if let Some(node) = self.nodes.remove(id) {
            if let Some(rel) = &node.disk {
                if let Some(abs) = self.abs(rel) {
                    let removed = if node.folder { std::fs::remove_dir_all(&abs) } else { std::fs::remove_file(&abs) };
                    if let Err(e) = removed {
                        if e.kind() != std::io::ErrorKind::NotFound {
                            tracing::warn!(error = %e, "emulator could not delete from its directory");
                        }
                    }
                }
                self.path_ids.remove(rel);
            }
            self.feed.push(id.to_owned());
        }
    }

    /// Brings the nodes in line with the served directory: new files and folders appear,
    /// changed files get a new version, vanished ones are removed (each a change).
    fn rescan(&mut self) {
        let Some(dir) = self.dir.clone() else { return };
        let mut seen: Vec<PathBuf> = vec![PathBuf::new()];
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(dir.join(&rel)) else { continue };
            let parent_id = match self.path_ids.get(&rel) {
                Some(id) => id.clone(),
                None => continue,
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                let child = rel.join(&name);
                let abs = dir.join(&child);
                let Ok(meta) = std::fs::symlink_metadata(&abs) else { continue };
                if !(meta.is_dir() || meta.is_file()) {
                    continue;
                }
                seen.push(child.clone());
                let sig = (!meta.is_dir()).then(|| (meta.len(), meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)));
                match self.path_ids.get(&child).cloned() {
                    Some(id) => {
                        let changed = self.nodes.get(&id).is_some_and(|n| !n.folder && n.sig != sig);
                        if changed {
                            let bytes = std::fs::read(&abs).unwrap_or_default();
                            let now = self.now_ms();
                            if let Some(n) = self.nodes.get_mut(&id) {
                                n.content = Arc::new(bytes);
                                n.version += 1;
                                n.modified_ms = now;
                                n.sig = sig;
                            }
                            self.feed.push(id);
                        }
                    }
                    None => {
                        let id = self.new_id();
                        let now = self.now_ms();
                        let folder = meta.is_dir();
                        let content = if folder { Vec::new() } else { std::fs::read(&abs).unwrap_or_default() };
                        self.nodes.insert(
                            id.clone(),
                            Node {
                                id: id.clone(),
                                name,
                                parent: Some(parent_id.clone()),
                                folder,
                                mime: if folder { FOLDER_MIME } else { "application/octet-stream" }.to_owned(),
                                content: Arc::new(content),
                                version: 1,
                                created_ms: now,
                                modified_ms: now,
                                listed_from: None,
                                disk: Some(child.clone()),
                                sig,
                            },
                        );
                        self.path_ids.insert(child.clone(), id.clone());
                        self.feed.push(id);
                    }
                }
                if meta.is_dir() {
                    stack.push(child);
                }
            }
        }
        let seen: std::collections::HashSet<PathBuf> = seen.into_iter().collect();
        let gone: Vec<String> = self
            .nodes
            .values()
            .filter(|n| n.disk.as_ref().is_some_and(|p| !seen.contains(p)))
            .map(|n| n.id.clone())
            .collect();
        for id in gone {
            if let Some(node) = self.nodes.remove(&id) {
                if let Some(rel) = node.disk {
                    self.path_ids.remove(&rel);
                }
                // Children held in memory only go with their folder.
                let orphans: Vec<String> =
                    self.nodes.values().filter(|n| n.parent.as_deref() == Some(&id)).map(|n| n.id.clone()).collect();
                for orphan in orphans {
                    self.nodes.remove(&orphan);
                    self.feed.push(orphan);
                }
                self.feed.push(id);
            }
        }
    }

    fn file_json(&self, n: &Node) -> Value {
        let mut v = json!({
            "kind": "drive#file",
            "id": n.id,
            "name": n.name,
            "mimeType": n.mime,
            "parents": n.parent.iter().collect::<Vec<_>>(),
            "trashed": false,
            "version": n.version.to_string(),
            "createdTime": rfc3339(n.created_ms),
            "modifiedTime": rfc3339(n.modified_ms),
        });
        if !n.folder {
            v["size"] = json!(n.content.len().to_string());
        }
        v
    }

    /// Checks the bearer token; `Err` is the 401 to answer.
    fn check_auth(&mut self, headers: &HeaderMap) -> Result<(), Response> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if token == ACCESS_TOKEN {
            return Ok(());
        }
        match self.tokens.get(token) {
            Some(t) if t.expires > Instant::now() => Ok(()),
            _ => Err(unauthenticated()),
        }
    }

    /// The fault to answer this request with, if any.
    fn take_fault(&mut self) -> Option<Fault> {
        if !self.faults.queue.is_empty() {
            return Some(self.faults.queue.remove(0));
        }
        self.faults.chaos?;
        let roll = self.next_random() % 1000;
        match roll {
            0..=39 => Some(Fault::TooManyRequests { retry_after_secs: 0 }),
            40..=69 => Some(Fault::RateLimit403 { user: roll % 2 == 0 }),
            70..=99 => Some(Fault::ServerError),
            _ => None,
        }
    }

    /// The page token of a feed position (numeric, as Drive's are; the epoch in front).
    fn page_token(&self, position: usize) -> String {
        (self.feed_epoch * TOKEN_EPOCH + position).to_string()
    }

    fn page_size(&self, asked: Option<&String>, default: usize) -> usize {
        let asked = asked.and_then(|s| s.parse::<usize>().ok()).unwrap_or(default).clamp(1, 1000);
        self.faults.max_page_size.map_or(asked, |m| asked.min(m.max(1)))
    }
}

/// The common start of every API handler: count, wait, authenticate, inject faults.
async fn enter(state: &Shared, endpoint: &str, headers: &HeaderMap) -> Result<(), Response> {
    let delay = {
        let mut s = lock(state);
        s.count(endpoint);
        let mut delay = s.faults.delay;
        if s.faults.chaos.is_some() {
            delay += Duration::from_millis(s.next_random() % 4);
        }
        delay
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut s = lock(state);
    if s.faults.chaos.is_some() && s.next_random() % 100 == 0 {
        // Chaos: every issued access token expires early (the client must refresh).
        let now = Instant::now();
        s.tokens.values_mut().for_each(|t| t.expires = now);
    }
    if s.faults.chaos.is_some() && endpoint == "changes.list" && s.next_random() % 50 == 0 {
        // Chaos: the changes feed is reset (the client falls back to a full listing).
        s.feed_epoch += 1;
    }
    s.check_auth(headers)?;
    match s.take_fault() {
        None => {
            s.rescan();
            Ok(())
        }
        Some(Fault::TooManyRequests { retry_after_secs }) => {
            let mut r =
                drive_error(StatusCode::TOO_MANY_REQUESTS, "usageLimits", "rateLimitExceeded", "Rate Limit Exceeded");
            r.headers_mut().insert(header::RETRY_AFTER, retry_after_secs.into());
            Err(r)
        }
        Some(Fault::RateLimit403 { user }) => Err(if user {
            drive_error(StatusCode::FORBIDDEN, "usageLimits", "userRateLimitExceeded", "User rate limit exceeded.")
        } else {
            drive_error(StatusCode::FORBIDDEN, "usageLimits", "rateLimitExceeded", "Rate limit exceeded.")
        }),
        Some(Fault::ServerError) => {
            Err(drive_error(StatusCode::INTERNAL_SERVER_ERROR, "global", "backendError", "Backend Error"))
        }
    }
}

fn drive_error(status: StatusCode, domain: &str, reason: &str, message: &str) -> Response {
    let body = json!({"error": {"code": status.as_u16(), "message": message,
        "errors": [{"domain": domain, "reason": reason, "message": message}]}});
    (status, axum::Json(body)).into_response()
}

fn invalid_parameter(location: &str) -> Response {
    let body = json!({"error": {"code": 400, "message": "Invalid Value",
        "errors": [{"domain": "global", "reason": "invalid", "message": "Invalid Value",
                    "locationType": "parameter", "location": location}]}});
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

fn not_found(id: &str) -> Response {
    let message = format!("File not found: {id}.");
    let body = json!({"error": {"code": 404, "message": message,
        "errors": [{"domain": "global", "reason": "notFound", "message": message,
                    "locationType": "parameter", "location": "fileId"}]}});
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

fn unauthenticated() -> Response {
    let message = "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or \
                   other valid authentication credential.";
    let body = json!({"error": {"code": 401, "message": message,
        "errors": [{"message": "Invalid Credentials", "domain": "global", "reason": "authError",
                    "location": "Authorization", "locationType": "header"}],
        "status": "UNAUTHENTICATED"}});
    let mut r = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer realm=\"emulator\""));
    r
}

/// One clause of a `q` expression.
#[derive(Debug, PartialEq)]
enum Clause {
    InParents(String),
    Name(String),
    Mime(String, bool),
    Trashed(bool),
}

fn parse_query(q: &str) -> Option<Vec<Clause>> {
    let mut clauses = Vec::new();
    let mut rest = q.trim();
    loop {
        let (clause, after) = parse_clause(rest)?;
        clauses.push(clause);
        rest = after.trim_start();
        if rest.is_empty() {
            return Some(clauses);
        }
        rest = rest.strip_prefix("and ")?.trim_start();
    }
}

/// A quoted string at the start of `s` (with `\'` and `\\` escapes) and what follows it.
fn quoted(s: &str) -> Option<(String, &str)> {
    let body = s.strip_prefix('\'')?;
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?.1),
            '\'' => return Some((out, &body[i + 1..])),
            c => out.push(c),
        }
    }
    None
}

fn parse_clause(s: &str) -> Option<(Clause, &str)> {
    if s.starts_with('\'') {
        let (value, rest) = quoted(s)?;
        let rest = rest.trim_start().strip_prefix("in")?.trim_start().strip_prefix("parents")?;
        return Some((Clause::InParents(value), rest));
    }
    let (field, rest) = s.split_once(char::is_whitespace)?;
    let rest = rest.trim_start();
    let (negated, rest) =
        if let Some(r) = rest.strip_prefix("!=") { (true, r) } else { (false, rest.strip_prefix('=')?) };
    let rest = rest.trim_start();
    match field {
        "trashed" if !negated => {
            if let Some(r) = rest.strip_prefix("false") {
                Some((Clause::Trashed(false), r))
            } else {
                rest.strip_prefix("true").map(|r| (Clause::Trashed(true), r))
            }
        }
        "name" if !negated => quoted(rest).map(|(v, r)| (Clause::Name(v), r)),
        "mimeType" => quoted(rest).map(|(v, r)| (Clause::Mime(v, negated), r)),
        _ => None,
    }
}

fn matches(clauses: &[Clause], n: &Node, state: &State) -> bool {
    clauses.iter().all(|c| match c {
        Clause::InParents(p) => n.parent.as_deref() == Some(state.resolve(p).as_str()),
        Clause::Name(name) => &n.name == name,
        Clause::Mime(m, negated) => (&n.mime == m) != *negated,
        Clause::Trashed(t) => !*t,
    })
}

type Params = Query<HashMap<String, String>>;

async fn files_list(Ext(state): Ext<Shared>, headers: HeaderMap, Query(p): Params) -> Response {
    if let Err(r) = enter(&state, "files.list", &headers).await {
        return r;
    }
    let s = lock(&state);
    let clauses = match p.get("q").map(|q| parse_query(q)) {
        None => Vec::new(),
        Some(Some(c)) => c,
        Some(None) => return invalid_parameter("q"),
    };
    let now = Instant::now();
    let mut hits: Vec<&Node> = s
        .nodes
        .values()
        .filter(|n| n.id != ROOT_ID && n.listed_from.is_none_or(|t| t <= now) && matches(&clauses, n, &s))
        .collect();
    hits.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
    let size = s.page_size(p.get("pageSize"), 100);
    let start = match p.get("pageToken").map(|t| t.parse::<usize>()) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => return invalid_parameter("pageToken"),
    };
    let page: Vec<Value> = hits.iter().skip(start).take(size).map(|n| s.file_json(n)).collect();
    let mut body = json!({"kind": "drive#fileList", "incompleteSearch": false, "files": page});
    if start + size < hits.len() {
        body["nextPageToken"] = json!((start + size).to_string());
    }
    axum::Json(body).into_response()
}

async fn files_get(
    Ext(state): Ext<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    Query(p): Params,
) -> Response {
    let media = p.get("alt").is_some_and(|a| a == "media");
    if let Err(r) = enter(&state, if media { "files.get.media" } else { "files.get" }, &headers).await {
        return r;
    }
    let s = lock(&state);
    let Some(n) = s.nodes.get(&s.resolve(&id)) else { return not_found(&id) };
    if media {
        if n.folder {
            return drive_error(
                StatusCode::FORBIDDEN,
                "global",
                "fileNotDownloadable",
                "Only files with binary content can be downloaded.",
            );
        }
        let mut r = (StatusCode::OK, n.content.as_ref().clone()).into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/octet-stream"));
        return r;
    }
    axum::Json(s.file_json(n)).into_response()
}

/// Parents named in create metadata (the first one; Drive allows one).
fn parent_of(meta: &Value, state: &State) -> Result<String, Response> {
    let parent = match meta.get("parents").and_then(Value::as_array).and_then(|a| a.first()) {
        Some(p) => state.resolve(p.as_str().unwrap_or_default()),
        None => ROOT_ID.to_owned(),
    };
    match state.nodes.get(&parent) {
        Some(n) if n.folder => Ok(parent),
        _ => Err(not_found(&parent)),
    }
}

async fn files_create_metadata(Ext(state): Ext<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = enter(&state, "files.create", &headers).await {
        return r;
    }
    let Ok(meta) = serde_json::from_slice::<Value>(&body) else { return invalid_parameter("body") };
    let mut s = lock(&state);
    let parent = match parent_of(&meta, &s) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let name = meta.get("name").and_then(Value::as_str).unwrap_or("Untitled").to_owned();
    let mime = meta.get("mimeType").and_then(Value::as_str).unwrap_or("application/octet-stream").to_owned();
    let folder = mime == FOLDER_MIME;
    let id = s.create_node(&parent, &name, folder, &mime, Vec::new(), true);
    let n = s.nodes.get(&id).expect("just created");
    axum::Json(s.file_json(n)).into_response()
}

/// The metadata and media parts of a `multipart/related` body.
fn parse_multipart(headers: &HeaderMap, body: &[u8]) -> Option<(Value, Vec<u8>)> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let (kind, params) = ct.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/related") {
        return None;
    }
    let boundary = params.split(';').find_map(|p| p.trim().strip_prefix("boundary="))?.trim_matches('"');
    let delimiter = format!("\r\n--{boundary}");
    let mut data = Vec::with_capacity(body.len() + 2);
    if !body.starts_with(b"\r\n") {
        data.extend_from_slice(b"\r\n");
    }
    data.extend_from_slice(body);
    let positions: Vec<usize> =
        data.windows(delimiter.len()).enumerate().filter(|(_, w)| *w == delimiter.as_bytes()).map(|(i, _)| i).collect();
    let mut parts = Vec::new();
    for pair in positions.windows(2) {
        let part = &data[pair[0] + delimiter.len()..pair[1]];
        let part = part.strip_prefix(b"\r\n")?;
        let split = part.windows(4).position(|w| w == b"\r\n\r\n")?;
        parts.push(&part[split + 4..]);
    }
    let last = *positions.last()?;
    if !data[last + delimiter.len()..].starts_with(b"--") || parts.len() != 2 {
        return None;
    }
    let meta = if parts[0].is_empty() { json!({}) } else { serde_json::from_slice(parts[0]).ok()? };
    Some((meta, parts[1].to_vec()))
}

async fn files_create_upload(Ext(state): Ext<Shared>, headers: HeaderMap, Query(p): Params, body: Bytes) -> Response {
    if let Err(r) = enter(&state, "files.create.upload", &headers).await {
        return r;
    }
    if p.get("uploadType").map(String::as_str) != Some("multipart") {
        return invalid_parameter("uploadType");
    }
    let Some((meta, media)) = parse_multipart(&headers, &body) else { return invalid_parameter("body") };
    let mut s = lock(&state);
    let parent = match parent_of(&meta, &s) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let name = meta.get("name").and_then(Value::as_str).unwrap_or("Untitled").to_owned();
    let mime = meta.get("mimeType").and_then(Value::as_str).unwrap_or("application/octet-stream").to_owned();
    if s.faults.duplicate_uploads > 0 {
        s.faults.duplicate_uploads -= 1;
        s.create_node(&parent, &name, false, &mime, media.clone(), true);
    }
    let id = s.create_node(&parent, &name, false, &mime, media, true);
    let n = s.nodes.get(&id).expect("just created");
    axum::Json(s.file_json(n)).into_response()
}

async fn files_update_upload(
    Ext(state): Ext<Shared>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    Query(p): Params,
    body: Bytes,
) -> Response {
    if let Err(r) = enter(&state, "files.update.upload", &headers).await {
        return r;
    }
    if p.get("uploadType").map(String::as_str) != Some("multipart") {
        return invalid_parameter("uploadType");
    }
    let Some((meta, media)) = parse_multipart(&headers, &body) else { return invalid_parameter("body") };
    let mut s = lock(&state);
    let id = s.resolve(&id);
    match s.nodes.get(&id) {
        Some(n) if !n.folder => {}
        Some(_) => return invalid_parameter("body"),
        None => return not_found(&id),
    }
    if let Some(name) = meta.get("name").and_then(Value::as_str) {
        if let Some(n) = s.nodes.get_mut(&id) {
            n.name = name.to_owned();
        }
    }
    s.update_content(&id, media, true);
    let n = s.nodes.get(&id).expect("exists");
    axum::Json(s.file_json(n)).into_response()
}

async fn files_delete(Ext(state): Ext<Shared>, headers: HeaderMap, UrlPath(id): UrlPath<String>) -> Response {
    if let Err(r) = enter(&state, "files.delete", &headers).await {
        return r;
    }
    let mut s = lock(&state);
    let id = s.resolve(&id);
    if id == ROOT_ID || !s.nodes.contains_key(&id) {
        return not_found(&id);
    }
    s.delete_node(&id);
    StatusCode::NO_CONTENT.into_response()
}

async fn changes_start(Ext(state): Ext<Shared>, headers: HeaderMap) -> Response {
    if let Err(r) = enter(&state, "changes.getStartPageToken", &headers).await {
        return r;
    }
    let s = lock(&state);
    axum::Json(json!({"kind": "drive#startPageToken", "startPageToken": s.page_token(s.feed.len() + 1)}))
        .into_response()
}

async fn changes_list(Ext(state): Ext<Shared>, headers: HeaderMap, Query(p): Params) -> Response {
    if let Err(r) = enter(&state, "changes.list", &headers).await {
        return r;
    }
    let s = lock(&state);
    let end = s.feed.len() + 1;
    let from = match p.get("pageToken").map(|t| t.parse::<usize>()) {
        Some(Ok(n)) if n / TOKEN_EPOCH == s.feed_epoch && (1..=end).contains(&(n % TOKEN_EPOCH)) => n % TOKEN_EPOCH,
        _ => return invalid_parameter("pageToken"),
    };
    let size = s.page_size(p.get("pageSize"), 100);
    // Drive lists each changed file once, at its latest change.
    let mut latest: BTreeMap<&str, usize> = BTreeMap::new();
    let window_end = (from - 1 + size).min(s.feed.len());
    for (i, id) in s.feed.iter().enumerate().take(window_end).skip(from - 1) {
        latest.insert(id.as_str(), i);
    }
    let mut order: Vec<(usize, &str)> = latest.into_iter().map(|(id, i)| (i, id)).collect();
    order.sort();
    let changes: Vec<Value> = order
        .into_iter()
        .map(|(i, id)| {
            let time = rfc3339(s.last_ms - (s.feed.len() - i) as i64);
            match s.nodes.get(id) {
                Some(n) => json!({"kind": "drive#change", "changeType": "file", "type": "file", "fileId": id,
                                  "removed": false, "time": time, "file": s.file_json(n)}),
                None => json!({"kind": "drive#change", "changeType": "file", "type": "file", "fileId": id,
                               "removed": true, "time": time}),
            }
        })
        .collect();
    let mut body = json!({"kind": "drive#changeList", "changes": changes});
    if window_end < s.feed.len() {
        body["nextPageToken"] = json!(s.page_token(window_end + 1));
    } else {
        body["newStartPageToken"] = json!(s.page_token(end));
    }
    axum::Json(body).into_response()
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (status, axum::Json(json!({"error": error, "error_description": description}))).into_response()
}

fn is_loopback_redirect(uri: &str) -> bool {
    let Some(rest) = uri.strip_prefix("http://") else { return false };
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    host == "127.0.0.1" || host == "localhost" || host == "[::1]"
}

async fn authorize(Ext(state): Ext<Shared>, Query(p): Params) -> Response {
    let mut s = lock(&state);
    s.count("oauth.authorize");
    let client_id = p.get("client_id").cloned().unwrap_or_default();
    if !s.clients.contains_key(&client_id) {
        return (StatusCode::UNAUTHORIZED, "Error 401: invalid_client. The OAuth client was not found.")
            .into_response();
    }
    let redirect_uri = p.get("redirect_uri").cloned().unwrap_or_default();
    if !is_loopback_redirect(&redirect_uri) {
        return (StatusCode::BAD_REQUEST, "Error 400: redirect_uri_mismatch").into_response();
    }
    if p.get("response_type").map(String::as_str) != Some("code") {
        return (StatusCode::BAD_REQUEST, "Error 400: unsupported_response_type").into_response();
    }
    let scope = p.get("scope").cloned().unwrap_or_default();
    let code = s.new_secret("4/emu-code-");
    s.codes.insert(code.clone(), Code { client_id, redirect_uri: redirect_uri.clone(), scope: scope.clone() });
    let mut query = form_urlencoded::Serializer::new(String::new());
    if let Some(st) = p.get("state") {
        query.append_pair("state", st);
    }
    query.append_pair("code", &code).append_pair("scope", &scope);
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    let location = format!("{redirect_uri}{sep}{}", query.finish());
    let mut r = StatusCode::FOUND.into_response();
    if let Ok(v) = header::HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

async fn token(Ext(state): Ext<Shared>, body: Bytes) -> Response {
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let mut s = lock(&state);
    s.count("oauth.token");
    let client_id = form.get("client_id").cloned().unwrap_or_default();
    let secret_ok = s.clients.get(&client_id).is_some_and(|sec| form.get("client_secret") == Some(sec));
    if !secret_ok {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "Unauthorized");
    }
    let lifetime = s.token_lifetime.unwrap_or(Duration::from_secs(3600));
    match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let code = form.get("code").cloned().unwrap_or_default();
            let Some(c) = s.codes.remove(&code) else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Malformed auth code.");
            };
            if c.client_id != client_id || form.get("redirect_uri") != Some(&c.redirect_uri) {
                return oauth_error(StatusCode::BAD_REQUEST, "redirect_uri_mismatch", "Bad Request");
            }
            let access = s.new_secret("ya29.emu-");
            let refresh = s.new_secret("1//emu-refresh-");
            s.tokens.insert(access.clone(), Issued { expires: Instant::now() + lifetime });
            s.refresh_tokens.insert(refresh.clone(), client_id);
            axum::Json(json!({"access_token": access, "expires_in": lifetime.as_secs(), "refresh_token": refresh,
                              "scope": c.scope, "token_type": "Bearer"}))
            .into_response()
        }
        Some("refresh_token") => {
            let refresh = form.get("refresh_token").cloned().unwrap_or_default();
            if s.refresh_tokens.get(&refresh) != Some(&client_id) {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Token has been expired or revoked.");
            }
            let access = s.new_secret("ya29.emu-");
            s.tokens.insert(access.clone(), Issued { expires: Instant::now() + lifetime });
            let mut body = json!({"access_token": access, "expires_in": lifetime.as_secs(),
                                  "scope": "https://www.googleapis.com/auth/drive", "token_type": "Bearer"});
            if s.faults.rotate_refresh_tokens {
                let next = s.new_secret("1//emu-refresh-");
                s.refresh_tokens.remove(&refresh);
                s.refresh_tokens.insert(next.clone(), client_id);
                body["refresh_token"] = json!(next);
            }
            axum::Json(body).into_response()
        }
        _ => oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "Invalid grant_type"),
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.gdrive-emulator.tmp"));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

fn disk_sig(path: &Path) -> Option<(u64, SystemTime)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)))
}

/// Milliseconds since the epoch as RFC 3339 (`2026-12-01T22:05:59.123Z`).
fn rfc3339(ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(at).to_string()
}

/// A GET over plain HTTP/1.1 to a loopback address: the status and the headers.
async fn http_get(url: &str) -> Result<(u16, Vec<(String, String)>), String> {
    http(url, "GET", &[], b"").await.map(|(status, headers, _)| (status, headers))
}

/// A request over plain HTTP/1.1 to a loopback address: the status, headers and body.
async fn http(
    url: &str,
    method: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, Vec<(String, String)>, Vec<u8>), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").ok_or_else(|| format!("not a plain-HTTP URL: {url}"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    if !(host == "127.0.0.1" || host == "localhost" || host == "[::1]") {
        return Err(format!("refusing a non-loopback address: {authority}"));
    }
    let addr = authority.replace("localhost", "127.0.0.1");
    let mut stream = tokio::net::TcpStream::connect(&addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes).await.map_err(|e| e.to_string())?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await.map_err(|e| e.to_string())?;
    let split = reply.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(reply.len());
    let text = String::from_utf8_lossy(&reply[..split]);
    let head = text.as_ref();
    let body = reply.get(split + 4..).unwrap_or_default().to_vec();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no HTTP status from {authority}"))?;
    let headers =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())).collect();
    Ok((status, headers, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_forms_the_adapter_sends_parse() {
        let q = "'abc' in parents and name = 'it\\'s.seg' and mimeType != 'application/vnd.google-apps.folder' and trashed = false";
        assert_eq!(
            parse_query(q).unwrap(),
            vec![
                Clause::InParents("abc".into()),
                Clause::Name("it's.seg".into()),
                Clause::Mime(FOLDER_MIME.into(), true),
                Clause::Trashed(false)
            ]
        );
        assert!(parse_query("name contains 'x'").is_none());
        assert!(parse_query("name = 'x' or name = 'y'").is_none());
    }

    fn bearer() -> (&'static str, &'static str) {
        ("Authorization", "Bearer emulator-access-token")
    }

    async fn call(
        emu: &GdriveEmulator,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, Value) {
        let (status, _, body) = http(&format!("{}{path}", emu.url()), method, headers, body).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    #[tokio::test]
    async fn the_wire_shapes_are_drives() {
        let emu = GdriveEmulator::start().unwrap();
        let (status, body) = call(&emu, "GET", "/drive/v3/files", &[], b"").await;
        assert_eq!(status, 401);
        assert_eq!(body["error"]["code"], 401);
        assert_eq!(body["error"]["errors"][0]["reason"], "authError");

        let meta = br#"{"name":"Lib","mimeType":"application/vnd.google-apps.folder","parents":["root"]}"#;
        let (status, folder) =
            call(&emu, "POST", "/drive/v3/files", &[bearer(), ("Content-Type", "application/json")], meta).await;
        assert_eq!(status, 200, "{folder}");
        assert_eq!(folder["mimeType"], FOLDER_MIME);
        let folder_id = folder["id"].as_str().unwrap().to_owned();

        let body = format!(
            "--B\r\nContent-Type: application/json\r\n\r\n{{\"name\":\"a.seg\",\"parents\":[\"{folder_id}\"]}}\r\n--B\r\nContent-Type: application/octet-stream\r\n\r\nhello\r\n--B--\r\n"
        );
        let ct = ("Content-Type", "multipart/related; boundary=B");
        let (status, file) =
            call(&emu, "POST", "/upload/drive/v3/files?uploadType=multipart", &[bearer(), ct], body.as_bytes()).await;
        assert_eq!(status, 200, "{file}");
        assert_eq!(file["size"], "5", "int64 as a string");
        assert_eq!(file["version"], "1");

        let q = format!("'{folder_id}'%20in%20parents%20and%20trashed%20%3D%20false");
        let (status, list) = call(&emu, "GET", &format!("/drive/v3/files?q={q}"), &[bearer()], b"").await;
        assert_eq!(status, 200);
        assert_eq!(list["kind"], "drive#fileList");
        assert_eq!(list["files"][0]["name"], "a.seg");

        emu.fail_next(&[Fault::TooManyRequests { retry_after_secs: 4 }]);
        let (status, headers, body) =
            http(&format!("{}/drive/v3/changes/startPageToken", emu.url()), "GET", &[bearer()], b"").await.unwrap();
        assert_eq!(status, 429);
        assert!(headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("retry-after") && v == "4"), "{headers:?}");
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["errors"][0]["domain"], "usageLimits");
        assert_eq!(body["error"]["errors"][0]["reason"], "rateLimitExceeded");

        let (_, start) = call(&emu, "GET", "/drive/v3/changes/startPageToken", &[bearer()], b"").await;
        let token = start["startPageToken"].as_str().unwrap().to_owned();
        emu.reset_changes();
        let (status, body) = call(&emu, "GET", &format!("/drive/v3/changes?pageToken={token}"), &[bearer()], b"").await;
        assert_eq!((status, body["error"]["errors"][0]["location"].as_str()), (400, Some("pageToken")));
        assert_eq!(emu.count("changes.getStartPageToken"), 2);
        assert_eq!(emu.count("files.create.upload"), 1);
    }

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_730_759_123), "2026-11-26T22:05:59.123Z");
    }

    #[test]
    fn multipart_related_bodies_parse() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, "multipart/related;boundary=XYZ".parse().unwrap());
        let body = b"\r\n--XYZ\r\ncontent-type: application/json\r\ncontent-length: 13\r\n\r\n{\"name\":\"a\"}\r\n--XYZ\r\ncontent-type: application/octet-stream\r\n\r\nbin\r\n\x00ary\r\n--XYZ--\r\n";
        let (meta, media) = parse_multipart(&headers, body).unwrap();
        assert_eq!(meta["name"], "a");
        assert_eq!(media, b"bin\r\n\x00ary");
    }
}
