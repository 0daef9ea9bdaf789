//! The OneFolder Sync [`Transport`] on [Apache OpenDAL](https://opendal.apache.org): an
//! S3-compatible bucket (AWS S3, MinIO, Cloudflare R2, Backblaze B2, Wasabi) or a WebDAV
//! folder (Nextcloud, ownCloud, Apache `mod_dav`, a NAS).
//!
//! # Use S3 / WebDAV
//!
//! [`from_url`] takes the URL the CLI's `--transport` option gets and reads everything else
//! from the environment (see [`config::parse_url`] for every variable):
//!
//! ```text
//! # MinIO (or any S3-compatible store) on this machine; the library under photos/ in the bucket
//! export AWS_ACCESS_KEY_ID=minioadmin AWS_SECRET_ACCESS_KEY=minioadmin AWS_REGION=us-east-1
//! export ONEFOLDER_SYNC_S3_ENDPOINT=http://127.0.0.1:9000
//! onefolder-sync init ~/Pictures --transport s3://onefolder/photos
//!
//! # AWS S3: no endpoint, the region picks it
//! export AWS_ACCESS_KEY_ID=AKIA… AWS_SECRET_ACCESS_KEY=… AWS_REGION=eu-central-1
//! onefolder-sync join ~/Pictures --transport s3://my-bucket/onefolder
//!
//! # Cloudflare R2
//! export ONEFOLDER_SYNC_S3_ENDPOINT=https://<account id>.r2.cloudflarestorage.com AWS_REGION=auto
//!
//! # Nextcloud (use an app password: Settings → Security → Devices & sessions)
//! export ONEFOLDER_SYNC_WEBDAV_USER=alice
//! export ONEFOLDER_SYNC_WEBDAV_PASSWORD_FILE=~/.config/onefolder/nextcloud-password
//! onefolder-sync join ~/Pictures --transport webdav://cloud.example.com/remote.php/dav/files/alice/Photos
//! ```
//!
//! `webdav://` and `webdavs://` are HTTPS; `webdav+http://` is plain HTTP and is accepted for
//! loopback hosts only (`localhost`, 127.0.0.0/8, `::1`), as is a plain `http://` S3 endpoint,
//! unless `ONEFOLDER_SYNC_ALLOW_PLAIN_HTTP=1`. Credentials never go in the URL (such a URL is
//! refused); they are never logged, and the `Debug` output of every type here redacts them.
//!
//! # Layout
//!
//! The same as on disk, under the URL's prefix (S3) or path (WebDAV):
//!
//! ```text
//! <prefix>/onefolder_tags/
//!   library.json                 the manifest (created once, never replaced)
//!   database/<deviceId>/         one folder per device, written only by that device
//!     device.json                replaced on each write
//!     <seq>.seg, snap-<seq>.seg  immutable segments
//! ```
//!
//! # Consistency
//!
//! - **Segments are never overwritten.** On S3 a create is one `PutObject` with
//!   `If-None-Match: *` (AWS S3 since 2024, MinIO, R2, moto; a store that ignores the header
//!   would overwrite, which the single writer per device folder makes harmless): an existing
//!   key fails with `412 Precondition Failed`, reported as
//!   [`TransportError::AlreadyExists`], and the first bytes stay. WebDAV has no conditional
//!   `PUT` that servers honour uniformly, so a create `PUT`s the bytes to a temporary name in
//!   the device folder (`.<name>.<random>.tmp`, never listed) and then `MOVE`s it to the final
//!   name with `Overwrite: F` (RFC 4918 §10.6): the server refuses with `412` when the name
//!   exists, and the temporary file is deleted. A reader therefore never sees a partial file
//!   under a final name. The server checks and renames within one request; whether two
//!   *concurrent* `MOVE`s to one name are serialized is up to the server. wsgidav tests
//!   `os.path.exists` and then renames: a `MOVE` that loses the race between its own check
//!   and the rename answers `500` (reported as `Transient`; the retry then gets
//!   `AlreadyExists`), and only a loser inside the few bytecodes between the other's check
//!   and rename could replace the file (never seen in the crate's test: 8 writers × 15
//!   rounds, exactly one winner each). A device folder has one writer, so this race does not
//!   occur in use; a create of a name that is already visible is always refused.
//! - **`device.json`** ([`WriteMode::Replace`]): a plain `PutObject` on S3 (atomic); on
//!   WebDAV a `PUT` to a temporary name and a `MOVE` with `Overwrite: T`.
//! - **Versions** ([`FileEntry::version`]) are the ETag (S3: the content's MD5 for a simple
//!   put; WebDAV: the server's `getetag`), or `<last-modified>/<size>` when the server gives
//!   no ETag.
//! - **Reads are capped** and cost one request: a `GET` whose `Content-Length` is over the
//!   cap fails with [`TransportError::TooLarge`] before its body is read (the connection is
//!   dropped); a body sent without a length is checked once received.
//!
//! # Change hints
//!
//! OpenDAL cannot watch: [`Transport::changes`] returns `None` and the sync loop polls.
//! On S3, [`Transport::changes_since`] is **one recursive listing** of `database/`
//! (`ListObjectsV2` without a delimiter, 1000 keys a page) per pass, compared with the
//! listing the cursor names: only files that are new or whose ETag or size changed are
//! reported. An idle pass therefore costs `⌈objects / 1000⌉` requests (one for a library of
//! fewer than 1000 files across all devices) and about 290 bytes of XML per object (measured
//! on moto: 50 devices × 21 files = 1050 objects, 2 requests and 301 KB per idle pass; a new
//! segment adds its `GET`).
//! The cursor names a listing this process keeps in memory (the last 8); a cursor from
//! another process or an older listing gives a complete listing, which the caller handles
//! like the first pass. On WebDAV, where depth-infinity `PROPFIND` is commonly disabled,
//! a pass lists the database folder and then each device folder: `1 + devices` requests
//! ([`Capabilities::changes_feed`] is `false`; 51 requests and about 1 KB per file for 50
//! devices on wsgidav).
//!
//! # Errors
//!
//! OpenDAL's error kinds map to [`TransportError`]: `NotFound` → `NotFound`,
//! `ConditionNotMatch` / `AlreadyExists` on a create → `AlreadyExists`, `RateLimited` (429,
//! S3 `SlowDown`) → `RateLimited` with the server's `Retry-After` when it sent one (any
//! temporary failure that came with a `Retry-After` too), other temporary errors
//! ([`opendal::Error::is_temporary`]: 5xx, connection failures) → `Transient`, the rest
//! (a missing bucket, a bad configuration) → `Io`; 401 / 403 → `Unauthorized` (not
//! retried). OpenDAL's own retry layer is not
//! used: wrap the transport in [`onefolder_core::RetryLayer`].
//!
//! # HTTP
//!
//! One reqwest client with rustls on the `ring` provider and the platform's certificate
//! store (no `aws-lc-rs`, no OpenSSL), 15 s to connect, 120 s per request.
//! [`OpendalTransport::http_stats`] counts requests and bytes.

#![warn(missing_docs)]

pub mod config;
mod http;
#[cfg(feature = "test-servers")]
pub mod servers;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use onefolder_core::names::{MANIFEST_FILE, is_temporary};
use onefolder_core::transport::{ChangeCursor, ChangeSet, check_name};
use onefolder_core::{Capabilities, ChangeStream, DeviceId, FileEntry, Transport, TransportError, WriteMode};
use opendal::{ErrorKind, Operator, services};

pub use config::{Config, ConfigError, S3Credentials, S3Options, Secret, WebdavOptions};
pub use http::{HttpStats, Refusal};

/// Name of the folder, under the URL's prefix or path, that holds everything OneFolder Sync
/// writes.
pub const TAGS_DIR: &str = "onefolder_tags";
/// Name of the folder, inside [`TAGS_DIR`], that holds one folder per device.
pub const DATABASE_DIR: &str = "database";
/// Largest manifest [`Transport::read_manifest`] accepts.
pub const MANIFEST_CAP: u64 = 1024 * 1024;
/// Largest object one S3 `PutObject` takes.
pub const S3_MAX_PUT: u64 = 5 * 1024 * 1024 * 1024;
/// How many listings a transport keeps for [`Transport::changes_since`] cursors.
const KEPT_LISTINGS: usize = 8;

/// Builds the transport a URL names, completed from the process environment (see
/// [`config::parse_url`]).
pub fn from_url(url: &str) -> Result<OpendalTransport, ConfigError> {
    OpendalTransport::new(config::parse_url(url, &config::ProcessEnv)?)
}

/// Which service a transport talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// An S3-compatible bucket.
    S3,
    /// A WebDAV server.
    Webdav,
}

/// A [`Transport`] on an S3-compatible bucket or a WebDAV folder, through OpenDAL. Cloning
/// is cheap; clones share the HTTP client, the meter and the kept listings.
#[derive(Clone)]
pub struct OpendalTransport {
    inner: Arc<Inner>,
}

struct Inner {
    op: Operator,
    service: Service,
    /// Where it points, without secrets (for Debug and logs).
    describe: String,
    meter: Arc<http::Meter>,
    /// Raw requests OpenDAL cannot make (WebDAV `MOVE` with `Overwrite: F`).
    dav: Option<RawDav>,
    feed: Mutex<Feed>,
}

struct RawDav {
    client: reqwest::Client,
    /// `endpoint + path + /onefolder_tags/`, for building request URLs.
    base: reqwest::Url,
    user: Option<String>,
    password: Option<Secret>,
}

/// A listing of `database/`: (folder, name) → (size, version).
type Listing = BTreeMap<(String, String), (u64, Option<String>)>;

#[derive(Default)]
struct Feed {
    /// This transport's cursors start with it (a cursor of another process is foreign).
    id: u64,
    next: u64,
    kept: VecDeque<(u64, Arc<Listing>)>,
}

impl fmt::Debug for OpendalTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpendalTransport")
            .field("service", &self.inner.service)
            .field("location", &self.inner.describe)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for OpendalTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.describe)
    }
}

fn normalize_path(path: &str) -> String {
    path.split('/').filter(|s| !s.is_empty()).collect::<Vec<_>>().join("/")
}

impl OpendalTransport {
    /// A transport for a parsed [`Config`].
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        match config {
            Config::S3(o) => Self::s3(o),
            Config::Webdav(o) => Self::webdav(o),
        }
    }

    /// A transport on an S3-compatible bucket.
    pub fn s3(options: S3Options) -> Result<Self, ConfigError> {
        let prefix = normalize_path(&options.prefix);
        let root = if prefix.is_empty() { format!("/{TAGS_DIR}/") } else { format!("/{prefix}/{TAGS_DIR}/") };
        let region = options.region.clone().unwrap_or_else(|| "us-east-1".to_owned());
        let mut builder = services::S3::default().bucket(&options.bucket).root(&root).region(&region);
        if let Some(endpoint) = &options.endpoint {
            builder = builder.endpoint(&config::check_endpoint(endpoint, options.allow_plain_http)?);
        }
        if let Some(c) = &options.credentials {
            // Static keys: read no profile file or variable behind our back, never ask the
            // instance metadata service.
            builder = builder
                .access_key_id(&c.access_key_id)
                .secret_access_key(c.secret_access_key.expose())
                .disable_config_load()
                .disable_ec2_metadata();
            if let Some(token) = &c.session_token {
                builder = builder.session_token(token.expose());
            }
        }
        if options.virtual_host_style {
            builder = builder.enable_virtual_host_style();
        }
        let endpoint = options.endpoint.as_deref().unwrap_or("AWS");
        let describe = format!("s3://{}/{prefix} (endpoint {endpoint}, region {region})", options.bucket);
        let op = Operator::new(builder).map_err(|e| ConfigError::Backend(e.to_string()))?;
        Self::finish(op, Service::S3, describe, None)
    }

    /// A transport on a WebDAV folder.
    pub fn webdav(options: WebdavOptions) -> Result<Self, ConfigError> {
        let endpoint = config::check_endpoint(&options.endpoint, options.allow_plain_http)?;
        let path = normalize_path(&options.path);
        let root = if path.is_empty() { format!("/{TAGS_DIR}/") } else { format!("/{path}/{TAGS_DIR}/") };
        let mut builder = services::Webdav::default().endpoint(&endpoint).root(&root);
        if let Some(user) = &options.user {
            builder = builder.username(user);
        }
        if let Some(password) = &options.password {
            builder = builder.password(password.expose());
        }
        let mut base = reqwest::Url::parse(&endpoint)
            .map_err(|e| ConfigError::InvalidUrl { url: endpoint.clone(), reason: e.to_string() })?;
        {
            let mut segments = base.path_segments_mut().map_err(|()| ConfigError::InvalidUrl {
                url: endpoint.clone(),
                reason: "cannot be a base URL".into(),
            })?;
            segments.clear();
            segments.extend(path.split('/').filter(|s| !s.is_empty()));
            segments.push(TAGS_DIR);
            segments.push("");
        }
        let user = options.user.as_deref().map(|u| format!(" as {u}")).unwrap_or_default();
        let describe = format!("webdav {endpoint}/{path}{user}");
        let op = Operator::new(builder).map_err(|e| ConfigError::Backend(e.to_string()))?;
        let client = http::client().map_err(ConfigError::Backend)?;
        let dav = RawDav { client, base, user: options.user, password: options.password };
        Self::finish(op, Service::Webdav, describe, Some(dav))
    }

    fn finish(op: Operator, service: Service, describe: String, dav: Option<RawDav>) -> Result<Self, ConfigError> {
        let meter = Arc::new(http::Meter::default());
        let client = match &dav {
            Some(dav) => dav.client.clone(),
            None => http::client().map_err(ConfigError::Backend)?,
        };
        let metered = http::Metered {
            inner: opendal_http_transport_reqwest::ReqwestTransport::new(client),
            meter: meter.clone(),
        };
        let ctx = opendal::OperationContext::new().with_http_transport(opendal::HttpTransporter::new(metered));
        let op = op.with_context(ctx);
        let feed = Feed { id: rand_u64(), ..Feed::default() };
        Ok(Self { inner: Arc::new(Inner { op, service, describe, meter, dav, feed: Mutex::new(feed) }) })
    }

    /// The service this transport talks to.
    pub fn service(&self) -> Service {
        self.inner.service
    }

    /// The OpenDAL operator, rooted at `<prefix>/onefolder_tags/` (tests and tools use it to
    /// put files directly).
    pub fn operator(&self) -> &Operator {
        &self.inner.op
    }

    /// Requests made and bytes moved so far by this transport and its clones.
    pub fn http_stats(&self) -> HttpStats {
        self.inner.meter.stats()
    }

    fn file_path(device: &DeviceId, name: &str) -> String {
        format!("{DATABASE_DIR}/{device}/{name}")
    }

    /// Runs one OpenDAL call and maps its error, with the `Retry-After` the server sent.
    async fn call<T>(
        &self,
        what: &str,
        fut: impl IntoFuture<Output = opendal::Result<T>>,
    ) -> Result<T, (ErrorKind, TransportError)> {
        let (out, refusal) = http::with_refusal(fut.into_future()).await;
        out.map_err(|e| (e.kind(), map_error(&e, what, refusal)))
    }

    /// One `GET`: a file whose `Content-Length` is over `cap` fails with `TooLarge` before its
    /// body is read; a body without a length is checked once read.
    async fn read_capped(&self, path: &str, what: &str, cap: u64) -> Result<Vec<u8>, TransportError> {
        let (out, refusal, oversize) = http::with_cap(Some(cap), self.inner.op.read(path).into_future()).await;
        if let Some(size) = oversize {
            return Err(TransportError::TooLarge { name: what.to_owned(), size, cap });
        }
        let bytes = out.map_err(|e| map_error(&e, what, refusal))?.to_vec();
        if bytes.len() as u64 > cap {
            return Err(TransportError::TooLarge { name: what.to_owned(), size: bytes.len() as u64, cap });
        }
        Ok(bytes)
    }

    /// Lists one folder (relative to the root, ending in `/`): its entries but itself.
    async fn list_dir(&self, dir: &str, what: &str) -> Result<Vec<opendal::Entry>, TransportError> {
        match self.call(what, self.inner.op.list(dir)).await {
            Ok(entries) => Ok(entries.into_iter().filter(|e| e.path() != dir).collect()),
            Err((ErrorKind::NotFound, _)) => Ok(Vec::new()),
            Err((_, e)) => Err(e),
        }
    }

    /// Creates `path` unless it exists; `Ok(false)` when it does.
    async fn create(&self, path: &str, bytes: &[u8], what: &str) -> Result<bool, TransportError> {
        match self.inner.service {
            Service::S3 => {
                let write = self.inner.op.write_with(path, bytes.to_vec()).if_not_exists(true);
                match self.call(what, write).await {
                    Ok(_) => Ok(true),
                    Err((ErrorKind::ConditionNotMatch | ErrorKind::AlreadyExists, _)) => Ok(false),
                    Err((_, e)) => Err(e),
                }
            }
            Service::Webdav => self.dav_publish(path, bytes, false, what).await,
        }
    }

    async fn replace(&self, path: &str, bytes: &[u8], what: &str) -> Result<(), TransportError> {
        match self.inner.service {
            Service::S3 => {
                self.call(what, self.inner.op.write(path, bytes.to_vec())).await.map(|_| ()).map_err(|(_, e)| e)
            }
            Service::Webdav => self.dav_publish(path, bytes, true, what).await.map(|_| ()),
        }
    }

    /// WebDAV: `PUT` to a temporary name beside `path`, then `MOVE` onto `path`. Without
    /// `overwrite`, returns `Ok(false)` (and removes the temporary file) when `path` exists.
    async fn dav_publish(&self, path: &str, bytes: &[u8], overwrite: bool, what: &str) -> Result<bool, TransportError> {
        let (dir, name) = path.rsplit_once('/').map_or(("", path), |(d, n)| (d, n));
        let tmp_name = format!(".{name}.{:016x}.tmp", rand_u64());
        let tmp = if dir.is_empty() { tmp_name } else { format!("{dir}/{tmp_name}") };
        self.call(what, self.inner.op.write(&tmp, bytes.to_vec())).await.map_err(|(_, e)| e)?;
        let moved = self.dav_move(&tmp, path, overwrite, what).await;
        if !matches!(moved, Ok(true))
            && let Err((_, e)) = self.call(what, self.inner.op.delete(&tmp)).await
        {
            tracing::warn!(file = what, error = %e, "could not remove a temporary file");
        }
        moved
    }

    /// `MOVE from to` with `Overwrite: T` or `F`; `Ok(false)` when refused because `to` exists.
    async fn dav_move(&self, from: &str, to: &str, overwrite: bool, what: &str) -> Result<bool, TransportError> {
        let dav = self.inner.dav.as_ref().expect("a WebDAV transport has its raw client");
        let url = |path: &str| {
            let mut url = dav.base.clone();
            url.path_segments_mut().expect("a base URL").pop_if_empty().extend(path.split('/'));
            url
        };
        let method = reqwest::Method::from_bytes(b"MOVE").expect("a valid method");
        let mut req = dav
            .client
            .request(method, url(from))
            .header("Destination", url(to).as_str())
            .header("Overwrite", if overwrite { "T" } else { "F" });
        if let Some(user) = &dav.user {
            req = req.basic_auth(user, dav.password.as_ref().map(Secret::expose));
        }
        self.inner.meter.count_raw();
        let sent = http::on_http_runtime(async move {
            req.send().await.map(|r| {
                let retry_after = r
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(http::parse_retry_after);
                (r.status().as_u16(), retry_after)
            })
        });
        let (status, retry_after) = match sent.await {
            None => return Err(TransportError::Transient(format!("{what}: HTTP runtime shutting down"))),
            Some(Ok(answer)) => answer,
            Some(Err(e)) => {
                let e = e.without_url();
                return Err(if e.is_timeout() || e.is_connect() || e.is_request() || e.is_body() {
                    TransportError::Transient(format!("{what}: {e}"))
                } else {
                    TransportError::Io(std::io::Error::other(format!("{what}: {e}")))
                });
            }
        };
        match status {
            200..=299 => Ok(true),
            412 if !overwrite => Ok(false),
            404 | 409 => Err(TransportError::NotFound(what.to_owned())),
            429 => Err(TransportError::RateLimited { retry_after }),
            503 if retry_after.is_some() => Err(TransportError::RateLimited { retry_after }),
            401 | 403 => Err(TransportError::Unauthorized(format!("{what}: the server refused the MOVE ({status})"))),
            408 | 423 | 500..=599 => Err(TransportError::Transient(format!("{what}: MOVE answered {status}"))),
            _ => Err(TransportError::Io(std::io::Error::other(format!("{what}: MOVE answered {status}")))),
        }
    }

    /// One recursive listing of `database/`.
    async fn list_database(&self) -> Result<Listing, TransportError> {
        let dir = format!("{DATABASE_DIR}/");
        let entries = match self.call("database", self.inner.op.list_with(&dir).recursive(true)).await {
            Ok(entries) => entries,
            Err((ErrorKind::NotFound, _)) => Vec::new(),
            Err((_, e)) => return Err(e),
        };
        let mut listing = Listing::new();
        for entry in entries {
            let Some(rest) = entry.path().strip_prefix(&dir) else { continue };
            let Some((folder, name)) = rest.split_once('/') else { continue };
            if name.contains('/') || is_temporary(name) || check_name(name).is_err() || !entry.metadata().is_file() {
                continue;
            }
            let meta = entry.metadata();
            listing.insert((folder.to_owned(), name.to_owned()), (meta.content_length(), version(meta)));
        }
        Ok(listing)
    }

    fn keep(&self, listing: Listing) -> ChangeCursor {
        let mut feed = self.inner.feed.lock().unwrap_or_else(|e| e.into_inner());
        let generation = feed.next;
        feed.next += 1;
        feed.kept.push_back((generation, Arc::new(listing)));
        while feed.kept.len() > KEPT_LISTINGS {
            feed.kept.pop_front();
        }
        ChangeCursor(format!("{:016x}:{generation}", feed.id))
    }

    fn kept(&self, cursor: Option<&ChangeCursor>) -> Option<Arc<Listing>> {
        let feed = self.inner.feed.lock().unwrap_or_else(|e| e.into_inner());
        let (id, generation) = cursor?.0.split_once(':')?;
        if id != format!("{:016x}", feed.id) {
            return None;
        }
        let generation: u64 = generation.parse().ok()?;
        feed.kept.iter().find(|(g, _)| *g == generation).map(|(_, l)| l.clone())
    }
}

/// The version of a listed file: its ETag, or last-modified and size.
fn version(meta: &opendal::Metadata) -> Option<String> {
    match (meta.etag(), meta.last_modified()) {
        (Some(etag), _) => Some(etag.to_owned()),
        (None, Some(modified)) => Some(format!("{modified}/{}", meta.content_length())),
        (None, None) => None,
    }
}

fn entry(name: &str, size: u64, version: &Option<String>) -> FileEntry {
    let e = FileEntry::new(name, size);
    match version {
        Some(v) => e.with_version(v.clone()),
        None => e,
    }
}

fn rand_u64() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}

/// Maps an OpenDAL error of the call `what` to a [`TransportError`] kind; `refusal` is what
/// the server's last failed answer said (its status also decides where a service leaves the
/// error `Unexpected`, as OpenDAL's WebDAV service does for 429 and 401).
pub fn map_error(e: &opendal::Error, what: &str, refusal: Refusal) -> TransportError {
    let Refusal { status, retry_after } = refusal;
    let denied = || TransportError::Unauthorized(format!("{what}: {e}"));
    match (e.kind(), status) {
        (ErrorKind::NotFound, _) => TransportError::NotFound(what.to_owned()),
        (ErrorKind::ConditionNotMatch | ErrorKind::AlreadyExists, _) => TransportError::AlreadyExists(what.to_owned()),
        (ErrorKind::RateLimited, _) | (_, Some(429)) => TransportError::RateLimited { retry_after },
        (_, Some(503)) if retry_after.is_some() => TransportError::RateLimited { retry_after },
        _ if e.is_temporary() && retry_after.is_some() => TransportError::RateLimited { retry_after },
        _ if e.is_temporary() => TransportError::Transient(format!("{what}: {e}")),
        (_, Some(408 | 423 | 500..=599)) => TransportError::Transient(format!("{what}: {e}")),
        (ErrorKind::PermissionDenied, _) | (_, Some(401 | 403)) => denied(),
        _ => TransportError::Io(std::io::Error::other(format!("{what}: {e}"))),
    }
}

#[async_trait]
impl Transport for OpendalTransport {
    fn name(&self) -> &'static str {
        match self.inner.service {
            Service::S3 => "s3",
            Service::Webdav => "webdav",
        }
    }

    fn capabilities(&self) -> Capabilities {
        match self.inner.service {
            Service::S3 => Capabilities {
                rate_limited: true,
                max_file_size: Some(S3_MAX_PUT),
                changes_feed: true,
                versions: true,
                concurrent_reads: 8,
                ..Capabilities::default()
            },
            Service::Webdav => {
                Capabilities { rate_limited: true, versions: true, concurrent_reads: 4, ..Capabilities::default() }
            }
        }
    }

    async fn read_manifest(&self) -> Result<Option<Vec<u8>>, TransportError> {
        match self.read_capped(MANIFEST_FILE, MANIFEST_FILE, MANIFEST_CAP).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(TransportError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn create_manifest(&self, bytes: &[u8]) -> Result<bool, TransportError> {
        self.create(MANIFEST_FILE, bytes, MANIFEST_FILE).await
    }

    async fn list_devices(&self) -> Result<Vec<String>, TransportError> {
        let entries = self.list_dir(&format!("{DATABASE_DIR}/"), DATABASE_DIR).await?;
        let mut folders: Vec<String> = entries
            .iter()
            .filter(|e| e.metadata().is_dir())
            .map(|e| e.name().trim_end_matches('/').to_owned())
            .filter(|n| !n.is_empty())
            .collect();
        folders.sort();
        folders.dedup();
        Ok(folders)
    }

    async fn list(&self, device: &DeviceId) -> Result<Vec<FileEntry>, TransportError> {
        let dir = format!("{DATABASE_DIR}/{device}/");
        let entries = self.list_dir(&dir, &device.to_string()).await?;
        Ok(entries
            .iter()
            .filter(|e| e.metadata().is_file() && !is_temporary(e.name()) && check_name(e.name()).is_ok())
            .map(|e| entry(e.name(), e.metadata().content_length(), &version(e.metadata())))
            .collect())
    }

    async fn read(&self, device: &DeviceId, name: &str, cap: u64) -> Result<Vec<u8>, TransportError> {
        check_name(name)?;
        self.read_capped(&Self::file_path(device, name), &format!("{device}/{name}"), cap).await
    }

    async fn write(&self, device: &DeviceId, name: &str, bytes: &[u8], mode: WriteMode) -> Result<(), TransportError> {
        check_name(name)?;
        let (path, what) = (Self::file_path(device, name), format!("{device}/{name}"));
        match mode {
            WriteMode::CreateNew => match self.create(&path, bytes, &what).await? {
                true => Ok(()),
                false => Err(TransportError::AlreadyExists(what)),
            },
            WriteMode::Replace => self.replace(&path, bytes, &what).await,
        }
    }

    async fn delete(&self, device: &DeviceId, name: &str) -> Result<(), TransportError> {
        check_name(name)?;
        let what = format!("{device}/{name}");
        match self.call(&what, self.inner.op.delete(&Self::file_path(device, name))).await {
            Ok(()) | Err((ErrorKind::NotFound, _)) => Ok(()),
            Err((_, e)) => Err(e),
        }
    }

    async fn changes(&self) -> Result<Option<ChangeStream>, TransportError> {
        Ok(None)
    }

    /// S3: one recursive listing, compared with the one the cursor names (see the crate
    /// docs). WebDAV: a complete listing of every device folder.
    async fn changes_since(
        &self,
        cursor: Option<&ChangeCursor>,
        skip: Option<&DeviceId>,
    ) -> Result<ChangeSet, TransportError> {
        if self.inner.service != Service::S3 {
            return onefolder_core::transport::full_listing(self, skip).await;
        }
        let previous = self.kept(cursor);
        let listing = self.list_database().await?;
        let skip = skip.map(DeviceId::to_string);
        let mut set = ChangeSet { complete: previous.is_none(), ..ChangeSet::default() };
        let mut folders = BTreeSet::new();
        for ((folder, name), (size, version)) in &listing {
            if set.complete {
                folders.insert(folder.clone());
            }
            if Some(folder) == skip.as_ref() {
                continue;
            }
            let changed = match &previous {
                None => true,
                Some(prev) => prev.get(&(folder.clone(), name.clone())) != Some(&(*size, version.clone())),
            };
            if changed {
                folders.insert(folder.clone());
                set.files.push((folder.clone(), entry(name, *size, version)));
            }
        }
        set.folders = folders.into_iter().collect();
        set.cursor = self.keep(listing);
        Ok(set)
    }
}
