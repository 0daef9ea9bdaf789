//! The Dropbox API v2 emulator: the files routes OneFolder Sync uses, the notify host's long
//! poll and the OAuth 2 (PKCE) endpoints, with Dropbox's request and response shapes.
//!
//! # What it serves
//!
//! One base URL ([`DropboxEmulator::url`]) stands for every Dropbox host:
//!
//! - RPC (api host), JSON bodies: `POST /2/files/list_folder`, `/2/files/list_folder/continue`,
//!   `/2/files/list_folder/get_latest_cursor`, `/2/files/get_metadata`, `/2/files/delete_v2`,
//!   `/2/files/create_folder_v2`.
//! - Content host: `POST /2/files/upload` and `/2/files/download`, the arguments in the
//!   `Dropbox-API-Arg` header (JSON, non-ASCII escaped as `\uXXXX`), the download's metadata
//!   in the `Dropbox-API-Result` header.
//! - Notify host: `POST /2/files/list_folder/longpoll`, without authentication (a request
//!   carrying an `Authorization` header is refused with 400), holding the request until a
//!   change under the cursor's folder or `timeout` seconds (30–480), answering
//!   `{"changes":bool,"backoff":N?}`.
//! - OAuth: `GET /oauth2/authorize` approves at once and redirects (302) to `redirect_uri`
//!   with `code` and `state`; `POST /oauth2/token` takes the `authorization_code` grant (PKCE
//!   `code_verifier` checked against the S256 `code_challenge`) and the `refresh_token`
//!   grant, answering as Dropbox does (`{"error":"invalid_grant",...}` with 400 on failure).
//!
//! Errors are Dropbox's `.tag`ged unions: 409 with
//! `{"error_summary":"path/not_found/..","error":{".tag":"path","path":{".tag":"not_found"}}}`,
//! 429 with a `Retry-After` header and `{"error":{"reason":{".tag":"too_many_requests"},"retry_after":N}}`
//! (`too_many_write_operations`: the header only),
//! 401 with `{"error":{".tag":"expired_access_token"}}`. Bearer tokens are checked on every
//! authenticated route: [`ACCESS_TOKEN`] is always valid, tokens from the token endpoint
//! expire after `expires_in` (or earlier, under [`Faults::token_lifetime`]).
//!
//! # A directory on disk
//!
//! The Dropbox root is a directory ([`DropboxEmulator::start`]): `/Pictures/x.seg` is
//! `<dir>/Pictures/x.seg`. Every request rescans the directory, so files that another program
//! writes there (a device on the folder transport, as the desktop client would sync them) show
//! up in listings, in `list_folder/continue` and wake long polls (which rescan every 50 ms
//! while they wait). Paths are case-insensitive as on Dropbox: they are matched on their lower
//! case, and a new file goes into the existing folder whatever casing the request used.
//! Names starting with `.` on disk are not part of the emulated Dropbox (temporary files).
//!
//! # Faults and counters
//!
//! [`Faults`] (set at run time with [`DropboxEmulator::set_faults`], or [`Faults::chaos`])
//! inject rate limits (429 `too_many_requests` with `Retry-After`, `too_many_write_operations`
//! on writes), 500s, slow responses, listings that lag behind writes, cursor resets, long-poll
//! `backoff` and tokens that expire early; [`DropboxEmulator::fail_next`] scripts exact
//! failures for a route. [`DropboxEmulator::requests`] counts requests per route (every one,
//! failed or not), for tests and benchmarks.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::server::Running;

/// An access token the emulator always accepts (never expires).
pub const ACCESS_TOKEN: &str = "emulator-fixed-access-token";
/// The app key (OAuth `client_id`) the emulator knows.
pub const CLIENT_ID: &str = "emulator-app-key";
/// How long an access token from the token endpoint lives (Dropbox: 4 hours).
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(4 * 3600);

/// Faults the emulator injects, each with a probability per request (0.0 = never).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// Seeds the fault dice.
    pub seed: u64,
    /// 429 `too_many_requests` with `Retry-After: retry_after`, on any files route.
    pub too_many_requests: f64,
    /// 429 `too_many_write_operations` with `Retry-After: retry_after`, on uploads and deletes.
    pub too_many_write_operations: f64,
    /// The `Retry-After` seconds of injected `too_many_requests`.
    pub retry_after: u32,
    /// The `Retry-After` seconds of injected `too_many_write_operations` (0: no header, as
    /// Dropbox often sends them).
    pub write_retry_after: u32,
    /// 500 Internal Server Error, on any files route.
    pub server_error: f64,
    /// A response delayed by `slow_by`.
    pub slow: f64,
    /// How long a slow response waits.
    pub slow_by: Duration,
    /// Listings (`list_folder`, `continue`, long polls) see only changes older than this.
    pub listing_lag: Duration,
    /// `list_folder/continue` answers `reset` (every cursor handed out so far is invalid).
    pub cursor_reset: f64,
    /// Long polls that report changes ask the client to wait this many seconds.
    pub longpoll_backoff: Option<u64>,
    /// Access tokens issued from now on expire after this long.
    pub token_lifetime: Option<Duration>,
}

impl Faults {
    /// No faults.
    pub fn none() -> Faults {
        Faults::default()
    }

    /// Every fault at a moderate rate, short delays, rate limits that mostly leave the wait to
    /// the client (a rare `too_many_requests` says `Retry-After: 1`), and access tokens that
    /// expire after 2 s (the fixed [`ACCESS_TOKEN`] does not), so that a client retrying within
    /// bounds still gets through in a few seconds.
    pub fn chaos(seed: u64) -> Faults {
        Faults {
            seed,
            too_many_requests: 0.003,
            too_many_write_operations: 0.05,
            retry_after: 1,
            write_retry_after: 0,
            server_error: 0.05,
            slow: 0.05,
            slow_by: Duration::from_millis(30),
            listing_lag: Duration::from_millis(40),
            cursor_reset: 0.05,
            longpoll_backoff: Some(1),
            token_lifetime: Some(Duration::from_secs(2)),
        }
    }
}

/// A scripted failure for [`DropboxEmulator::fail_next`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// 429 `too_many_requests` with `Retry-After` (seconds).
    TooManyRequests {
        /// Seconds, in the header and the body.
        retry_after: u32,
    },
    /// 429 `too_many_write_operations` with `Retry-After` (seconds).
    TooManyWriteOperations {
        /// Seconds, in the header and the body.
        retry_after: u32,
    },
    /// 500.
    ServerError,
    /// 401 `expired_access_token`, whatever the token.
    ExpiredToken,
}

#[derive(Clone, Debug)]
struct FileInfo {
    rev: String,
    size: u64,
    modified: String,
    stamp: Stamp,
}

/// What tells a file changed on disk: length, modification time, inode.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp(u64, i128, u64);

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        let mtime = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i128);
        #[cfg(unix)]
        let ino = std::os::unix::fs::MetadataExt::ino(m);
        #[cfg(not(unix))]
        let ino = 0;
        Stamp(m.len(), mtime, ino)
    }
}

#[derive(Clone, Debug)]
struct Node {
    /// The full display path (`/Pictures/onefolder_tags`).
    display: String,
    disk: PathBuf,
    id: String,
    /// `None` for a folder.
    file: Option<FileInfo>,
}

struct Change {
    at: Instant,
    lower: String,
    display: String,
    /// The metadata after the change (with `.tag`), `None` when deleted.
    meta: Option<Value>,
}

struct Grant {
    client_id: String,
    challenge: Option<String>,
    redirect_uri: Option<String>,
    offline: bool,
    scope: String,
}

struct State {
    nodes: BTreeMap<String, Node>,
    log: Vec<Change>,
    epoch: u64,
    next: u64,
    faults: Faults,
    dice: u64,
    script: HashMap<String, VecDeque<Failure>>,
    counts: BTreeMap<String, u64>,
    /// Issued access tokens and when they expire.
    tokens: HashMap<String, Instant>,
    /// Refresh token → (client id, scope).
    refresh: HashMap<String, (String, String)>,
    codes: HashMap<String, Grant>,
    page_size: usize,
    rotate_refresh_tokens: bool,
}

struct Shared {
    root: PathBuf,
    state: Mutex<State>,
    changed: tokio::sync::Notify,
    closed: AtomicBool,
}

/// A running Dropbox emulator serving a directory; it stops when dropped.
pub struct DropboxEmulator {
    running: Running,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for DropboxEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DropboxEmulator").field("url", &self.url()).field("root", &self.shared.root).finish()
    }
}

impl Drop for DropboxEmulator {
    fn drop(&mut self) {
        // Long polls waiting in the server's runtime return at once.
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.changed.notify_waiters();
    }
}

impl DropboxEmulator {
    /// Starts an emulator whose Dropbox root is the directory `root` (created if missing).
    pub fn start(root: impl Into<PathBuf>) -> std::io::Result<DropboxEmulator> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        let state = State {
            nodes: BTreeMap::new(),
            log: Vec::new(),
            epoch: 1,
            next: 1,
            faults: Faults::none(),
            dice: 0,
            script: HashMap::new(),
            counts: BTreeMap::new(),
            tokens: HashMap::new(),
            refresh: HashMap::new(),
            codes: HashMap::new(),
            page_size: 500,
            rotate_refresh_tokens: false,
        };
        let shared = Arc::new(Shared {
            root,
            state: Mutex::new(state),
            changed: tokio::sync::Notify::new(),
            closed: AtomicBool::new(false),
        });
        drop(shared.lock_scanned());
        let router = axum::Router::new()
            .fallback(handle)
            .layer(axum::extract::DefaultBodyLimit::max(256 << 20))
            .with_state(shared.clone());
        let running = Running::start(router)?;
        Ok(DropboxEmulator { running, shared })
    }

    /// The base URL standing for the api, content and notify hosts (and the OAuth pages):
    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.running.url()
    }

    /// The directory holding the Dropbox root.
    pub fn root(&self) -> &Path {
        &self.shared.root
    }

    /// The OAuth authorize page (`<url>/oauth2/authorize`).
    pub fn authorize_url(&self) -> String {
        format!("{}/oauth2/authorize", self.url())
    }

    /// The OAuth token endpoint (`<url>/oauth2/token`).
    pub fn token_url(&self) -> String {
        format!("{}/oauth2/token", self.url())
    }

    /// Replaces the faults in force.
    pub fn set_faults(&self, faults: Faults) {
        let mut st = self.shared.lock();
        st.dice = faults.seed;
        st.faults = faults;
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        self.shared.lock().faults.clone()
    }

    /// The next `times` requests to `route` (`"files/upload"`, `"oauth2/token"`, …) fail with
    /// `failure`, before any other fault or check.
    pub fn fail_next(&self, route: &str, times: usize, failure: Failure) {
        let mut st = self.shared.lock();
        let queue = st.script.entry(route.trim_start_matches('/').to_owned()).or_default();
        queue.extend(std::iter::repeat_n(failure, times));
    }

    /// Entries per `list_folder` / `continue` page (500 by default).
    pub fn set_page_size(&self, entries: usize) {
        self.shared.lock().page_size = entries.max(1);
    }

    /// Whether the refresh grant hands out a new refresh token each time (Dropbox does not).
    pub fn set_rotate_refresh_tokens(&self, rotate: bool) {
        self.shared.lock().rotate_refresh_tokens = rotate;
    }

    /// Every access token issued so far expires now (the fixed [`ACCESS_TOKEN`] does not).
    pub fn expire_tokens(&self) {
        let now = Instant::now();
        self.shared.lock().tokens.values_mut().for_each(|t| *t = now);
    }

    /// Every cursor handed out so far answers `reset`.
    pub fn reset_cursors(&self) {
        self.shared.lock().epoch += 1;
    }

    /// A refresh token for `client_id` as the token endpoint would issue it (for tests that
    /// skip the browser step).
    pub fn issue_refresh_token(&self, client_id: &str) -> String {
        let mut st = self.shared.lock();
        let token = st.secret("refresh");
        st.refresh.insert(token.clone(), (client_id.to_owned(), String::new()));
        token
    }

    /// Requests made to `route` (`"files/list_folder"`, `"files/upload"`,
    /// `"files/list_folder/longpoll"`, `"oauth2/token"`, …), failed ones included.
    pub fn requests(&self, route: &str) -> u64 {
        self.shared.lock().counts.get(route.trim_start_matches('/')).copied().unwrap_or(0)
    }

    /// Requests per route so far.
    pub fn request_counts(&self) -> BTreeMap<String, u64> {
        self.shared.lock().counts.clone()
    }

    /// Requests to every route so far.
    pub fn total_requests(&self) -> u64 {
        self.shared.lock().counts.values().sum()
    }

    /// Forgets the request counts.
    pub fn reset_counts(&self) {
        self.shared.lock().counts.clear();
    }

    /// Writes `bytes` at the Dropbox path `path` (`/Pictures/onefolder_tags/database/x/y`)
    /// directly, bypassing every check a client would meet (as the desktop client or a user
    /// can); missing folders are created. Fails when the disk cannot hold the name.
    pub fn plant(&self, path: &str, bytes: &[u8]) -> std::io::Result<()> {
        let mut st = self.shared.lock_scanned();
        let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        if components.is_empty() || components.iter().any(|c| *c == "." || *c == "..") {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"));
        }
        st.put_file(&self.shared.root, &components, bytes).map_err(|e| std::io::Error::other(e.1))?;
        drop(st);
        self.shared.changed.notify_waiters();
        Ok(())
    }

    /// Plays the user's browser: GETs `authorize_url` (this emulator's authorize page, which
    /// approves at once), then follows its redirect to the loopback address the app listens
    /// on. Returns once the app answered the redirect with a success status.
    pub async fn consent(&self, authorize_url: &str) -> Result<(), String> {
        let (status, headers, body) = http_get(authorize_url).await?;
        if status != 302 {
            return Err(format!("the authorize page answered {status}: {body}"));
        }
        let location = headers.get("location").ok_or("the authorize page did not redirect")?;
        let (status, _, body) = http_get(location).await?;
        if !(200..300).contains(&status) {
            return Err(format!("the app's redirect page answered {status}: {body}"));
        }
        Ok(())
    }
}

/// A minimal HTTP/1.1 GET to a loopback `http://` URL; returns status, lower-cased headers and
/// body.
async fn http_get(url: &str) -> Result<(u16, HashMap<String, String>, String), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").ok_or_else(|| format!("not a plain-http URL: {url}"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    if !matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
        return Err(format!("refusing to leave the loopback interface: {authority}"));
    }
    let connect = authority.replace("localhost", "127.0.0.1");
    let connect = connect.trim_start_matches('[').replace("]:", ":");
    let mut stream = tokio::net::TcpStream::connect(&connect).await.map_err(|e| format!("connect {authority}: {e}"))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {head}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok((status, headers, body.to_owned()))
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state, brought up to date with the directory.
    fn lock_scanned(&self) -> MutexGuard<'_, State> {
        let mut st = self.lock();
        if st.rescan(&self.root) {
            self.changed.notify_waiters();
        }
        st
    }
}

/// An error answer: status and body (JSON or text).
type Fail = (StatusCode, String);

fn lower(path: &str) -> String {
    path.to_lowercase()
}

fn parent(lower: &str) -> &str {
    lower.rsplit_once('/').map_or("", |(p, _)| p)
}

fn last(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, n)| n)
}

fn now_stamp() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

fn api_error(summary: &str, error: Value) -> Fail {
    (StatusCode::CONFLICT, json!({ "error_summary": format!("{summary}/.."), "error": error }).to_string())
}

fn bad_request(message: impl Into<String>) -> Fail {
    (StatusCode::BAD_REQUEST, message.into())
}

fn lookup_not_found(variant: &str) -> Fail {
    api_error(&format!("{variant}/not_found"), json!({ ".tag": variant, variant: { ".tag": "not_found" } }))
}

impl State {
    fn secret(&mut self, kind: &str) -> String {
        self.next += 1;
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        let mixed = splitmix(self.next ^ nanos ^ u64::from(std::process::id()));
        format!("sl.{kind}.{:016x}{:08x}", mixed, self.next)
    }

    fn new_rev(&mut self) -> String {
        self.next += 1;
        format!("{:09x}{:06x}", 0x1_0000_0000u64 + self.next, self.epoch & 0xff_ffff)
    }

    fn new_id(&mut self) -> String {
        self.next += 1;
        format!("id:emu{:012x}", self.next)
    }

    /// A roll of the fault dice: true with probability `p`.
    fn roll(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        self.dice = self.dice.wrapping_add(0x9E37_79B9_7F4A_7C15);
        (splitmix(self.dice) >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    fn meta(lower: &str, node: &Node) -> Value {
        let name = last(&node.display);
        match &node.file {
            Some(f) => json!({
                ".tag": "file", "name": name, "id": node.id, "path_lower": lower, "path_display": node.display,
                "client_modified": f.modified, "server_modified": f.modified, "rev": f.rev, "size": f.size,
                "is_downloadable": true,
            }),
            None => {
                json!({ ".tag": "folder", "name": name, "id": node.id, "path_lower": lower, "path_display": node.display })
            }
        }
    }

    /// The same metadata as a plain struct (no `.tag`), as upload and download return it.
    fn untagged(mut meta: Value) -> Value {
        if let Some(map) = meta.as_object_mut() {
            map.remove(".tag");
        }
        meta
    }

    fn record(&mut self, lower: &str) {
        let (display, meta) = match self.nodes.get(lower) {
            Some(node) => (node.display.clone(), Some(State::meta(lower, node))),
            None => (lower.to_owned(), None),
        };
        self.log.push(Change { at: Instant::now(), lower: lower.to_owned(), display, meta });
    }

    fn record_deleted(&mut self, lower: &str, display: &str) {
        self.log.push(Change { at: Instant::now(), lower: lower.to_owned(), display: display.to_owned(), meta: None });
    }

    /// Brings `nodes` in line with the directory; returns whether anything changed.
    fn rescan(&mut self, root: &Path) -> bool {
        let mut seen: BTreeMap<String, (String, PathBuf, Option<Stamp>)> = BTreeMap::new();
        walk(root, "", &mut seen);
        let mut changed = false;
        let gone: Vec<(String, String)> = self
            .nodes
            .iter()
            .filter(|(l, n)| seen.get(*l).is_none_or(|(_, _, s)| s.is_some() != n.file.is_some()))
            .map(|(l, n)| (l.clone(), n.display.clone()))
            .collect();
        for (l, display) in gone {
            self.nodes.remove(&l);
            self.record_deleted(&l, &display);
            changed = true;
        }
        for (l, (display, disk, stamp)) in seen {
            let same = match (self.nodes.get(&l), &stamp) {
                (Some(n), Some(s)) => n.file.as_ref().is_some_and(|f| &f.stamp == s),
                (Some(n), None) => n.file.is_none(),
                (None, _) => false,
            };
            if same {
                continue;
            }
            let id = match self.nodes.get(&l) {
                Some(n) => n.id.clone(),
                None => self.new_id(),
            };
            let file = stamp.map(|stamp| FileInfo { rev: self.new_rev(), size: stamp.0, modified: now_stamp(), stamp });
            self.nodes.insert(l.clone(), Node { display, disk, id, file });
            self.record(&l);
            changed = true;
        }
        changed
    }

    /// How many changes of the log a listing sees now (all but those younger than the lag).
    fn visible_end(&self) -> usize {
        let lag = self.faults.listing_lag;
        if lag.is_zero() {
            return self.log.len();
        }
        let now = Instant::now();
        self.log.partition_point(|c| c.at + lag <= now)
    }

    /// Latest state of every path under `folder` touched in `log[from..to]`, in path order;
    /// from the start of the log, deleted paths are left out.
    fn entries(&self, folder: &str, recursive: bool, from: usize, to: usize) -> Vec<Value> {
        let mut latest: BTreeMap<&str, &Change> = BTreeMap::new();
        for c in &self.log[from.min(to)..to] {
            let inside = if recursive {
                folder.is_empty() || c.lower.strip_prefix(folder).is_some_and(|rest| rest.starts_with('/'))
            } else {
                parent(&c.lower) == folder
            };
            if inside {
                latest.insert(&c.lower, c);
            }
        }
        latest
            .into_values()
            .filter_map(|c| match &c.meta {
                Some(meta) => Some(meta.clone()),
                None if from == 0 => None,
                None => Some(json!({ ".tag": "deleted", "name": last(&c.display), "path_lower": c.lower, "path_display": c.display })),
            })
            .collect()
    }

    /// Creates the missing folders of `components[..n-1]` and writes the file; returns the
    /// file's metadata.
    fn put_file(&mut self, root: &Path, components: &[&str], bytes: &[u8]) -> Result<Value, Fail> {
        let mut disk = root.to_path_buf();
        let mut display = String::new();
        let mut low = String::new();
        let (name, parents) = components.split_last().ok_or_else(|| bad_request("empty path"))?;
        for c in parents {
            low = format!("{low}/{}", lower(c));
            match self.nodes.get(&low) {
                Some(n) if n.file.is_some() => {
                    return Err(api_error(
                        "path/conflict/file_ancestor",
                        json!({ ".tag": "path", "reason": { ".tag": "conflict", "conflict": { ".tag": "file_ancestor" } }, "upload_session_id": "" }),
                    ));
                }
                Some(n) => {
                    disk = n.disk.clone();
                    display = n.display.clone();
                }
                None => {
                    display = format!("{display}/{c}");
                    disk = disk.join(c);
                    std::fs::create_dir_all(&disk)
                        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("create folder: {e}")))?;
                    let id = self.new_id();
                    self.nodes
                        .insert(low.clone(), Node { display: display.clone(), disk: disk.clone(), id, file: None });
                    self.record(&low);
                }
            }
        }
        let low = format!("{low}/{}", lower(name));
        let (display, disk) = match self.nodes.get(&low) {
            Some(n) => (n.display.clone(), n.disk.clone()),
            None => (format!("{display}/{name}"), disk.join(name)),
        };
        self.next += 1;
        let tmp = disk.with_file_name(format!(".dbxemu-{}.tmp", self.next));
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, &disk))
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("write file: {e}")))?;
        let stamp = std::fs::metadata(&disk)
            .map(|m| Stamp::of(&m))
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("stat file: {e}")))?;
        let id = match self.nodes.get(&low) {
            Some(n) => n.id.clone(),
            None => self.new_id(),
        };
        let info = FileInfo { rev: self.new_rev(), size: bytes.len() as u64, modified: now_stamp(), stamp };
        let node = Node { display, disk, id, file: Some(info) };
        let meta = State::meta(&low, &node);
        self.nodes.insert(low.clone(), node);
        self.record(&low);
        Ok(meta)
    }

    fn cursor(&self, folder: &str, recursive: bool, from: usize, to: usize, offset: usize) -> String {
        let hex: String = folder.bytes().map(|b| format!("{b:02x}")).collect();
        format!("AAE{}.{from}.{to}.{offset}.{}.{hex}", self.epoch, u8::from(recursive))
    }

    /// One page of `entries(folder, from, to)` from `offset`, with the cursor that follows it.
    fn page(&self, folder: &str, recursive: bool, from: usize, to: usize, offset: usize) -> Value {
        let all = self.entries(folder, recursive, from, to);
        let end = (offset + self.page_size).min(all.len());
        let has_more = end < all.len();
        let cursor = if has_more {
            self.cursor(folder, recursive, from, to, end)
        } else {
            self.cursor(folder, recursive, to, to, 0)
        };
        json!({ "entries": all[offset.min(end)..end], "cursor": cursor, "has_more": has_more })
    }
}

struct Cursor {
    epoch: u64,
    from: usize,
    to: usize,
    offset: usize,
    recursive: bool,
    folder: String,
}

fn parse_cursor(s: &str) -> Option<Cursor> {
    let mut parts = s.strip_prefix("AAE")?.split('.');
    let epoch = parts.next()?.parse().ok()?;
    let from = parts.next()?.parse().ok()?;
    let to = parts.next()?.parse().ok()?;
    let offset = parts.next()?.parse().ok()?;
    let recursive = parts.next()? == "1";
    let hex = parts.next()?;
    let bytes: Option<Vec<u8>> =
        (0..hex.len()).step_by(2).map(|i| hex.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok())).collect();
    let folder = String::from_utf8(bytes?).ok()?;
    Some(Cursor { epoch, from, to, offset, recursive, folder })
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Every file and folder under `dir` (names starting with `.` skipped), by lower-case path.
fn walk(dir: &Path, prefix: &str, seen: &mut BTreeMap<String, (String, PathBuf, Option<Stamp>)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let Ok(name) = entry.file_name().into_string() else { continue };
        if name.starts_with('.') {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else { continue };
        let display = format!("{prefix}/{name}");
        let low = lower(&display);
        if seen.contains_key(&low) {
            // Two names differing only by case on a case-sensitive disk: Dropbox holds one.
            continue;
        }
        if meta.is_dir() {
            seen.insert(low, (display.clone(), entry.path(), None));
            walk(&entry.path(), &display, seen);
        } else if meta.is_file() {
            seen.insert(low, (display, entry.path(), Some(Stamp::of(&meta))));
        }
    }
}

/// A Dropbox path argument: `""` (the root, for listings) or `/a/b`; returns its components.
fn path_components(path: &str, allow_root: bool) -> Result<Vec<&str>, Fail> {
    if path.is_empty() && allow_root {
        return Ok(Vec::new());
    }
    let malformed =
        || api_error("path/malformed_path", json!({ ".tag": "path", "path": { ".tag": "malformed_path" } }));
    let rest = path.strip_prefix('/').ok_or_else(malformed)?;
    let parts: Vec<&str> = rest.split('/').collect();
    if parts.iter().any(|p| p.is_empty() || *p == "." || *p == "..") {
        return Err(malformed());
    }
    Ok(parts)
}

fn arg_str<'a>(arg: &'a Value, key: &str) -> Result<&'a str, Fail> {
    arg.get(key).and_then(Value::as_str).ok_or_else(|| bad_request(format!("missing argument {key:?}")))
}

fn json_response(value: Value) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], value.to_string()).into_response()
}

fn fail_response((status, body): Fail) -> Response {
    let ctype = if body.starts_with('{') { "application/json" } else { "text/plain; charset=utf-8" };
    (status, [(header::CONTENT_TYPE, ctype)], body).into_response()
}

/// 429 with `Retry-After` (when not 0). `too_many_requests` repeats the seconds in the body;
/// `too_many_write_operations` does not (as Dropbox sends them: only the header says).
fn rate_limited(reason: &str, retry_after: u32) -> Response {
    let mut error = json!({ "reason": { ".tag": reason } });
    if reason == "too_many_requests" {
        error["retry_after"] = json!(retry_after);
    }
    let body = json!({ "error_summary": format!("{reason}/.."), "error": error });
    let mut response =
        (StatusCode::TOO_MANY_REQUESTS, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
    if retry_after > 0 {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    }
    response
}

fn expired_token() -> Response {
    fail_response((
        StatusCode::UNAUTHORIZED,
        json!({ "error_summary": "expired_access_token/..", "error": { ".tag": "expired_access_token" } }).to_string(),
    ))
}

/// Escapes everything outside printable ASCII as `\uXXXX`, as Dropbox does in headers.
fn header_json(value: &Value) -> String {
    let mut out = String::new();
    for c in value.to_string().chars() {
        if (' '..'\x7f').contains(&c) {
            out.push(c);
        } else {
            let mut buf = [0u16; 2];
            for unit in c.encode_utf16(&mut buf) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

const WRITE_ROUTES: [&str; 3] = ["files/upload", "files/delete_v2", "files/create_folder_v2"];

async fn handle(
    AxState(shared): AxState<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    let route = path.strip_prefix("/2/").unwrap_or(path.trim_start_matches('/')).to_owned();
    let scripted = {
        let mut st = shared.lock();
        *st.counts.entry(route.clone()).or_default() += 1;
        st.script.get_mut(&route).and_then(VecDeque::pop_front)
    };
    match scripted {
        Some(Failure::TooManyRequests { retry_after }) => return rate_limited("too_many_requests", retry_after),
        Some(Failure::TooManyWriteOperations { retry_after }) => {
            return rate_limited("too_many_write_operations", retry_after);
        }
        Some(Failure::ServerError) => {
            return fail_response((StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error".into()));
        }
        Some(Failure::ExpiredToken) => return expired_token(),
        None => {}
    }
    match (method, route.as_str()) {
        (Method::GET, "oauth2/authorize") => return authorize(&shared, uri.query().unwrap_or("")),
        (Method::POST, "oauth2/token") => return token(&shared, &body),
        (Method::POST, "files/list_folder/longpoll") => {
            if headers.contains_key(header::AUTHORIZATION) {
                return fail_response(bad_request(
                    "Error in call to API function \"files/list_folder/longpoll\": this function does not use an Authorization header",
                ));
            }
            return longpoll(&shared, &body).await.unwrap_or_else(fail_response);
        }
        (Method::POST, r) if r.starts_with("files/") => {}
        _ => return fail_response((StatusCode::NOT_FOUND, format!("Unknown API function: {route:?}"))),
    }
    // Faults of the files routes.
    let (fault, slow) = {
        let mut st = shared.lock();
        let f = st.faults.clone();
        let fault = if st.roll(f.too_many_requests) {
            Some(rate_limited("too_many_requests", f.retry_after))
        } else if WRITE_ROUTES.contains(&route.as_str()) && st.roll(f.too_many_write_operations) {
            Some(rate_limited("too_many_write_operations", f.write_retry_after))
        } else if st.roll(f.server_error) {
            Some(fail_response((StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error".into())))
        } else {
            None
        };
        (fault, st.roll(f.slow).then_some(f.slow_by))
    };
    if let Some(delay) = slow {
        tokio::time::sleep(delay).await;
    }
    if let Some(response) = fault {
        return response;
    }
    if let Some(response) = token_failure(&shared, &headers) {
        return response;
    }
    let arg: Result<Value, Fail> = if route == "files/upload" || route == "files/download" {
        headers
            .get("dropbox-api-arg")
            .ok_or_else(|| bad_request("missing the Dropbox-API-Arg header"))
            .and_then(|h| h.to_str().map_err(|_| bad_request("Dropbox-API-Arg is not ASCII")))
            .and_then(|h| serde_json::from_str(h).map_err(|e| bad_request(format!("Dropbox-API-Arg: {e}"))))
    } else if body.is_empty() {
        Ok(Value::Null)
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| bad_request(format!("request body: could not decode input as JSON: {e}")))
    };
    let arg = match arg {
        Ok(a) => a,
        Err(e) => return fail_response(e),
    };
    let result = match route.as_str() {
        "files/list_folder" => list_folder(&shared, &arg),
        "files/list_folder/continue" => list_folder_continue(&shared, &arg),
        "files/list_folder/get_latest_cursor" => latest_cursor(&shared, &arg),
        "files/get_metadata" => get_metadata(&shared, &arg),
        "files/delete_v2" => delete(&shared, &arg),
        "files/create_folder_v2" => create_folder(&shared, &arg),
        "files/upload" => upload(&shared, &arg, &body),
        "files/download" => return download(&shared, &arg).unwrap_or_else(fail_response),
        _ => Err((StatusCode::NOT_FOUND, format!("Unknown API function: {route:?}"))),
    };
    match result {
        Ok(value) => json_response(value),
        Err(e) => fail_response(e),
    }
}

/// The answer refusing the request's token, if it is not valid.
fn token_failure(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    let Some(auth) = headers.get(header::AUTHORIZATION).and_then(|h| h.to_str().ok()) else {
        return Some(fail_response(bad_request(
            "Error in call to API function: Must provide HTTP header \"Authorization\"",
        )));
    };
    let token = auth.strip_prefix("Bearer ").unwrap_or("");
    if token == ACCESS_TOKEN {
        return None;
    }
    match shared.lock().tokens.get(token) {
        Some(expires) if *expires > Instant::now() => None,
        Some(_) => Some(expired_token()),
        None => Some(fail_response((
            StatusCode::UNAUTHORIZED,
            json!({ "error_summary": "invalid_access_token/..", "error": { ".tag": "invalid_access_token" } })
                .to_string(),
        ))),
    }
}

fn list_folder(shared: &Shared, arg: &Value) -> Result<Value, Fail> {
    let path = arg_str(arg, "path")?;
    let recursive = arg.get("recursive").and_then(Value::as_bool).unwrap_or(false);
    path_components(path, true)?;
    let st = shared.lock_scanned();
    let folder = lower(path);
    if !folder.is_empty() {
        match st.nodes.get(&folder) {
            None => return Err(lookup_not_found("path")),
            Some(n) if n.file.is_some() => {
                return Err(api_error("path/not_folder", json!({ ".tag": "path", "path": { ".tag": "not_folder" } })));
            }
            Some(_) => {}
        }
    }
    let to = st.visible_end();
    Ok(st.page(&folder, recursive, 0, to, 0))
}

fn reset_error() -> Fail {
    api_error("reset", json!({ ".tag": "reset" }))
}

/// Parses a cursor and checks it is still valid (not reset, by a fault or an epoch change).
fn valid_cursor(st: &mut State, cursor: &str) -> Result<Cursor, Fail> {
    let c = parse_cursor(cursor).ok_or_else(|| bad_request("Invalid \"cursor\" parameter"))?;
    if c.epoch != st.epoch {
        return Err(reset_error());
    }
    let p = st.faults.cursor_reset;
    if st.roll(p) {
        st.epoch += 1;
        return Err(reset_error());
    }
    if c.to > st.log.len() {
        return Err(bad_request("Invalid \"cursor\" parameter"));
    }
    Ok(c)
}

fn list_folder_continue(shared: &Shared, arg: &Value) -> Result<Value, Fail> {
    let cursor = arg_str(arg, "cursor")?;
    let mut st = shared.lock_scanned();
    let c = valid_cursor(&mut st, cursor)?;
    let to = if c.offset == 0 { c.to.max(st.visible_end()) } else { c.to };
    Ok(st.page(&c.folder, c.recursive, c.from, to, c.offset))
}

fn latest_cursor(shared: &Shared, arg: &Value) -> Result<Value, Fail> {
    let path = arg_str(arg, "path")?;
    let recursive = arg.get("recursive").and_then(Value::as_bool).unwrap_or(false);
    path_components(path, true)?;
    let st = shared.lock_scanned();
    let folder = lower(path);
    if !folder.is_empty() && !st.nodes.contains_key(&folder) {
        return Err(lookup_not_found("path"));
    }
    let end = st.visible_end();
    Ok(json!({ "cursor": st.cursor(&folder, recursive, end, end, 0) }))
}

async fn longpoll(shared: &Arc<Shared>, body: &[u8]) -> Result<Response, Fail> {
    let arg: Value = serde_json::from_slice(body).map_err(|e| bad_request(format!("request body: {e}")))?;
    let cursor = arg_str(&arg, "cursor")?.to_owned();
    let timeout = arg.get("timeout").and_then(Value::as_u64).unwrap_or(30);
    if !(30..=480).contains(&timeout) {
        return Err(bad_request(
            "Error in call to API function \"files/list_folder/longpoll\": timeout must be between 30 and 480",
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(timeout);
    loop {
        let notified = shared.changed.notified();
        {
            let st = shared.lock_scanned();
            let c = parse_cursor(&cursor).ok_or_else(|| bad_request("Invalid \"cursor\" parameter"))?;
            if c.epoch != st.epoch {
                return Err(reset_error());
            }
            let end = st.visible_end();
            if end > c.from && !st.entries(&c.folder, c.recursive, c.from, end).is_empty() {
                let mut answer = json!({ "changes": true });
                if let Some(backoff) = st.faults.longpoll_backoff {
                    answer["backoff"] = json!(backoff);
                }
                return Ok(json_response(answer));
            }
        }
        if shared.closed.load(Ordering::SeqCst) || Instant::now() >= deadline {
            return Ok(json_response(json!({ "changes": false })));
        }
        // Changes made through the API wake us at once; others' files on disk and lagging
        // listings are seen by the next rescan.
        let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
    }
}

fn get_metadata(shared: &Shared, arg: &Value) -> Result<Value, Fail> {
    let path = arg_str(arg, "path")?;
    path_components(path, false)?;
    let st = shared.lock_scanned();
    let low = lower(path);
    st.nodes.get(&low).map(|n| State::meta(&low, n)).ok_or_else(|| lookup_not_found("path"))
}

fn delete(shared: &Shared, arg: &Value) -> Result<Value, Fail> {
    let path = arg_str(arg, "path")?;
    path_components(path, false)?;
    let mut st = shared.lock_scanned();
    let low = lower(path);
    let node = st.nodes.get(&low).cloned().ok_or_else(|| lookup_not_found("path_lookup"))?;
    let meta = State::meta(&low, &node);
    let removed =
        if node.file.is_some() { std::fs::remove_file(&node.disk) } else { std::fs::remove_dir_all(&node.disk) };
    removed.map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("delete: {e}")))?;
    let prefix = format!("{low}/");
    let doomed: Vec<(String, String)> = st
        .nodes
        .iter()
        .filter(|(l, _)| **l == low || l.starts_with(&prefix))
        .map(|(l, n)| (l.clone(), n.display.clone()))
        .collect();
    for (l, display) in doomed {
        st.nodes.remove(&l);
        st.record_deleted(&l, &display);
    }
    drop(st);
    shared.changed.notify_waiters();
    Ok(json!({ "metadata": meta }))
}

fn create_folder(shared: &Shared, arg: &Value) -> Result<Value, Fail> {
    let path = arg_str(arg, "path")?;
    let components = path_components(path, false)?;
    let mut st = shared.lock_scanned();
    let low = lower(path);
    if let Some(n) = st.nodes.get(&low) {
        let kind = if n.file.is_some() { "file" } else { "folder" };
        return Err(api_error(
            &format!("path/conflict/{kind}"),
            json!({ ".tag": "path", "path": { ".tag": "conflict", "conflict": { ".tag": kind } } }),
        ));
    }
    // Create it through a placeholder file's parents, then drop the placeholder.
    let mut disk = shared.root.clone();
    let mut display = String::new();
    let mut l = String::new();
    for c in components {
        l = format!("{l}/{}", lower(c));
        match st.nodes.get(&l) {
            Some(n) if n.file.is_some() => {
                return Err(api_error(
                    "path/conflict/file_ancestor",
                    json!({ ".tag": "path", "path": { ".tag": "conflict", "conflict": { ".tag": "file_ancestor" } } }),
                ));
            }
            Some(n) => {
                disk = n.disk.clone();
                display = n.display.clone();
            }
            None => {
                display = format!("{display}/{c}");
                disk = disk.join(c);
                std::fs::create_dir_all(&disk)
                    .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("create folder: {e}")))?;
                let id = st.new_id();
                st.nodes.insert(l.clone(), Node { display: display.clone(), disk: disk.clone(), id, file: None });
                st.record(&l);
            }
        }
    }
    let meta = st.nodes.get(&low).map(|n| State::untagged(State::meta(&low, n))).unwrap_or(Value::Null);
    drop(st);
    shared.changed.notify_waiters();
    Ok(json!({ "metadata": meta }))
}

/// The `.tag` of a union argument given either as `"add"` or as `{".tag":"add"}`.
fn tag_of(value: Option<&Value>) -> Option<&str> {
    match value? {
        Value::String(s) => Some(s),
        Value::Object(map) => map.get(".tag").and_then(Value::as_str),
        _ => None,
    }
}

fn upload(shared: &Shared, arg: &Value, body: &[u8]) -> Result<Value, Fail> {
    let path = arg_str(arg, "path")?;
    let components = path_components(path, false)?;
    let mode = tag_of(arg.get("mode")).unwrap_or("add");
    let strict = arg.get("strict_conflict").and_then(Value::as_bool).unwrap_or(false);
    if arg.get("autorename").and_then(Value::as_bool).unwrap_or(false) {
        return Err(bad_request("autorename is not emulated"));
    }
    let conflict = |kind: &str| {
        api_error(
            &format!("path/conflict/{kind}"),
            json!({ ".tag": "path", "reason": { ".tag": "conflict", "conflict": { ".tag": kind } }, "upload_session_id": "" }),
        )
    };
    let mut st = shared.lock_scanned();
    let low = lower(path);
    if let Some(existing) = st.nodes.get(&low) {
        let Some(file) = &existing.file else { return Err(conflict("folder")) };
        match mode {
            "overwrite" => {}
            "update" => {
                let rev = arg.get("mode").and_then(|m| m.get("update")).and_then(Value::as_str);
                if rev != Some(file.rev.as_str()) {
                    return Err(conflict("file"));
                }
            }
            "add" => {
                let same = std::fs::read(&existing.disk).is_ok_and(|b| b == body);
                if strict || !same {
                    return Err(conflict("file"));
                }
                // Dropbox: adding identical content is a no-op returning the existing file.
                return Ok(State::untagged(State::meta(&low, existing)));
            }
            other => return Err(bad_request(format!("unknown write mode {other:?}"))),
        }
    }
    let meta = st.put_file(&shared.root, &components, body)?;
    drop(st);
    shared.changed.notify_waiters();
    Ok(State::untagged(meta))
}

fn download(shared: &Shared, arg: &Value) -> Result<Response, Fail> {
    let path = arg_str(arg, "path")?;
    path_components(path, false)?;
    let st = shared.lock_scanned();
    let low = lower(path);
    let node = st.nodes.get(&low).ok_or_else(|| lookup_not_found("path"))?;
    if node.file.is_none() {
        return Err(api_error("path/not_file", json!({ ".tag": "path", "path": { ".tag": "not_file" } })));
    }
    let bytes = std::fs::read(&node.disk).map_err(|_| lookup_not_found("path"))?;
    let meta = State::untagged(State::meta(&low, node));
    let mut response = (StatusCode::OK, [(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response();
    let value =
        HeaderValue::from_str(&header_json(&meta)).map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    response.headers_mut().insert("dropbox-api-result", value);
    Ok(response)
}

fn query_pairs(query: &[u8]) -> HashMap<String, String> {
    form_urlencoded::parse(query).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

fn authorize(shared: &Shared, query: &str) -> Response {
    let q = query_pairs(query.as_bytes());
    let page = |status: StatusCode, text: String| (status, [(header::CONTENT_TYPE, "text/html")], text).into_response();
    if q.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
        return page(StatusCode::BAD_REQUEST, "Invalid client_id".into());
    }
    if q.get("response_type").map(String::as_str) != Some("code") {
        return page(StatusCode::BAD_REQUEST, "Invalid response_type".into());
    }
    let challenge = q.get("code_challenge").cloned();
    if challenge.is_some() && q.get("code_challenge_method").map(String::as_str) != Some("S256") {
        return page(StatusCode::BAD_REQUEST, "Invalid code_challenge_method".into());
    }
    let redirect_uri = q.get("redirect_uri").cloned();
    let mut st = shared.lock();
    let code = st.secret("code");
    st.codes.insert(
        code.clone(),
        Grant {
            client_id: CLIENT_ID.to_owned(),
            challenge,
            redirect_uri: redirect_uri.clone(),
            offline: q.get("token_access_type").map(String::as_str) == Some("offline"),
            scope: q.get("scope").cloned().unwrap_or_default(),
        },
    );
    drop(st);
    let Some(redirect) = redirect_uri else {
        return page(StatusCode::OK, format!("Enter this code into your app: {code}"));
    };
    let mut params = form_urlencoded::Serializer::new(String::new());
    params.append_pair("code", &code);
    if let Some(state) = q.get("state") {
        params.append_pair("state", state);
    }
    let sep = if redirect.contains('?') { '&' } else { '?' };
    let location = format!("{redirect}{sep}{}", params.finish());
    match HeaderValue::from_str(&location) {
        Ok(value) => (StatusCode::FOUND, [(header::LOCATION, value)]).into_response(),
        Err(_) => page(StatusCode::BAD_REQUEST, "Invalid redirect_uri".into()),
    }
}

fn oauth_error(error: &str, description: &str) -> Response {
    let body = json!({ "error": error, "error_description": description });
    (StatusCode::BAD_REQUEST, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn s256(verifier: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = digest.as_ref();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn token(shared: &Shared, body: &[u8]) -> Response {
    let form = query_pairs(body);
    let mut st = shared.lock();
    let (client_id, scope, offline) = match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let Some(grant) = form.get("code").and_then(|c| st.codes.remove(c)) else {
                return oauth_error("invalid_grant", "code doesn't exist or has expired");
            };
            if form.get("client_id") != Some(&grant.client_id) {
                return oauth_error("invalid_client", "Invalid client_id or client_secret");
            }
            match (&grant.challenge, form.get("code_verifier")) {
                (Some(challenge), Some(verifier)) if s256(verifier) == *challenge => {}
                (Some(_), _) => return oauth_error("invalid_grant", "invalid code verifier"),
                (None, _) => return oauth_error("invalid_client", "Invalid client_id or client_secret"),
            }
            if grant.redirect_uri.is_some() && form.get("redirect_uri") != grant.redirect_uri.as_ref() {
                return oauth_error("invalid_grant", "redirect_uri mismatch");
            }
            (grant.client_id, grant.scope, grant.offline)
        }
        Some("refresh_token") => {
            let Some((client, scope)) = form.get("refresh_token").and_then(|r| st.refresh.get(r)).cloned() else {
                return oauth_error("invalid_grant", "refresh token is invalid or revoked");
            };
            if form.get("client_id") != Some(&client) {
                return oauth_error("invalid_client", "Invalid client_id or client_secret");
            }
            if st.rotate_refresh_tokens {
                if let Some(old) = form.get("refresh_token") {
                    st.refresh.remove(old);
                }
                (client, scope, true)
            } else {
                (client, scope, false)
            }
        }
        _ => return oauth_error("unsupported_grant_type", "grant_type must be authorization_code or refresh_token"),
    };
    let lifetime = st.faults.token_lifetime.unwrap_or(TOKEN_LIFETIME);
    let access = st.secret("access");
    st.tokens.insert(access.clone(), Instant::now() + lifetime);
    let mut answer = json!({
        "access_token": access,
        "token_type": "bearer",
        "expires_in": lifetime.as_secs_f64().ceil() as u64,
        "scope": scope,
        "uid": "12345",
        "account_id": "dbid:emulated-account",
    });
    if offline {
        let refresh = st.secret("refresh");
        st.refresh.insert(refresh.clone(), (client_id, scope));
        answer["refresh_token"] = json!(refresh);
    }
    json_response(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_matches_rfc7636_example() {
        assert_eq!(s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    }

    #[test]
    fn cursors_round_trip() {
        let st = State {
            nodes: BTreeMap::new(),
            log: Vec::new(),
            epoch: 7,
            next: 0,
            faults: Faults::none(),
            dice: 0,
            script: HashMap::new(),
            counts: BTreeMap::new(),
            tokens: HashMap::new(),
            refresh: HashMap::new(),
            codes: HashMap::new(),
            page_size: 1,
            rotate_refresh_tokens: false,
        };
        let c = parse_cursor(&st.cursor("/pictures/ü", true, 3, 9, 2)).unwrap();
        assert_eq!(
            (c.epoch, c.from, c.to, c.offset, c.recursive, c.folder.as_str()),
            (7, 3, 9, 2, true, "/pictures/ü")
        );
    }

    /// A raw POST; returns the status line, the lower-cased headers and the body.
    async fn post(
        url: &str,
        route: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, HashMap<String, String>, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let authority = url.strip_prefix("http://").unwrap();
        let mut stream = tokio::net::TcpStream::connect(authority).await.unwrap();
        let mut request = format!(
            "POST /{route} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let mut lines = head.lines();
        let status = lines.next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        (status, headers, body.to_owned())
    }

    #[tokio::test]
    async fn errors_have_dropboxs_shapes() {
        let dir = std::env::temp_dir().join(format!("dbx-emu-shapes-{}", std::process::id()));
        let emu = DropboxEmulator::start(&dir).unwrap();
        let url = emu.url();
        let bearer = format!("Bearer {ACCESS_TOKEN}");
        let json = [("Content-Type", "application/json"), ("Authorization", bearer.as_str())];
        let (status, _, _) = post(&url, "2/files/get_metadata", &json[..1], r#"{"path":"/x"}"#).await;
        assert_eq!(status, 400, "no Authorization header");
        let (status, _, body) = post(&url, "2/files/get_metadata", &json, r#"{"path":"/missing"}"#).await;
        assert_eq!(status, 409);
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error_summary"], "path/not_found/..");
        assert_eq!(body["error"], json!({".tag": "path", "path": {".tag": "not_found"}}));
        emu.fail_next("files/list_folder", 1, Failure::TooManyRequests { retry_after: 4 });
        let (status, headers, body) = post(&url, "2/files/list_folder", &json, r#"{"path":""}"#).await;
        assert_eq!((status, headers.get("retry-after").map(String::as_str)), (429, Some("4")));
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"], json!({"reason": {".tag": "too_many_requests"}, "retry_after": 4}));
        let (status, _, body) =
            post(&url, "2/files/list_folder/longpoll", &json, r#"{"cursor":"AAE1.0.0.0.1.","timeout":30}"#).await;
        assert_eq!(status, 400, "the long poll takes no Authorization header: {body}");
        let (status, _, body) =
            post(&url, "2/files/list_folder/longpoll", &json[..1], r#"{"cursor":"x","timeout":5}"#).await;
        assert_eq!(status, 400, "timeout below 30 s: {body}");
        let upload =
            [("Authorization", bearer.as_str()), ("Dropbox-API-Arg", r#"{"path":"/d/\u00e9.seg","mode":"add"}"#)];
        let (status, _, body) = post(&url, "2/files/upload", &upload, "abc").await;
        assert_eq!(status, 200, "{body}");
        assert!(dir.join("d/é.seg").is_file());
        let (status, _, body) = post(&url, "2/files/upload", &upload, "other").await;
        assert_eq!(status, 409);
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"]["reason"], json!({".tag": "conflict", "conflict": {".tag": "file"}}));
        let download = [("Authorization", bearer.as_str()), ("Dropbox-API-Arg", r#"{"path":"/D/\u00c9.SEG"}"#)];
        let (status, headers, body) = post(&url, "2/files/download", &download, "").await;
        assert_eq!((status, body.as_str()), (200, "abc"), "case-insensitive paths");
        let result: Value = serde_json::from_str(&headers["dropbox-api-result"]).unwrap();
        assert_eq!((result["name"].as_str(), result["size"].as_u64()), (Some("é.seg"), Some(3)));
        assert!(headers["dropbox-api-result"].is_ascii());
        assert_eq!(emu.requests("files/upload"), 2);
        drop(emu);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn header_json_escapes_non_ascii() {
        assert_eq!(header_json(&json!({"name": "é😀"})), r#"{"name":"\u00e9\ud83d\ude00"}"#);
    }
}
