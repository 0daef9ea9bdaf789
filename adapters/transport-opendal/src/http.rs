//! The HTTP client under OpenDAL: reqwest with rustls on `ring`, a meter of requests and
//! bytes, and the `Retry-After` of a refused request (OpenDAL's errors do not carry it).
//!
//! Every request runs on a small runtime of this crate's own ("onefolder-http", 2 threads),
//! with its response body read there in full: the connection, its timeouts and the pool
//! never depend on the caller's runtime, so a caller on tokio's paused clock (the backoff
//! tests) or on a current-thread runtime gets real-time network behaviour. Bodies are
//! small here (segments, listings; reads are capped before they start).

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use opendal::{Buffer, HttpBody, HttpTransport};
use opendal_http_transport_reqwest::ReqwestTransport;

/// HTTP requests made and bytes moved by one [`OpendalTransport`](crate::OpendalTransport)
/// (and its clones) since it was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HttpStats {
    /// Requests sent.
    pub requests: u64,
    /// Request body bytes sent.
    pub bytes_sent: u64,
    /// Response body bytes received.
    pub bytes_received: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Meter {
    requests: AtomicU64,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
}

impl Meter {
    pub(crate) fn stats(&self) -> HttpStats {
        HttpStats {
            requests: self.requests.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
        }
    }
}

/// What the last failed HTTP answer within one transport call said.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Refusal {
    /// Its status (4xx, 5xx).
    pub status: Option<u16>,
    /// Its `Retry-After`, in seconds form.
    pub retry_after: Option<Duration>,
}

/// What one transport call asks of, and learns from, its HTTP requests.
struct CallState {
    /// The last answer of 400 or more.
    refusal: Cell<Refusal>,
    /// A `GET` answered with more than this many bytes is not read (a capped read).
    cap: Option<u64>,
    /// The `Content-Length` of a `GET` that was over `cap`.
    oversize: Cell<Option<u64>>,
}

tokio::task_local! {
    static CALL: CallState;
}

/// Runs `fut` (one transport call) and returns its output with the status and `Retry-After`
/// of the last answer of 400 or more during it (OpenDAL's errors carry neither reliably).
pub(crate) async fn with_refusal<T>(fut: impl Future<Output = T>) -> (T, Refusal) {
    let (out, refusal, _) = with_cap(None, fut).await;
    (out, refusal)
}

/// [`with_refusal`] for a read capped at `cap` bytes: a `GET` whose `Content-Length` is over
/// the cap fails without its body being read, and the size comes back as the third value.
pub(crate) async fn with_cap<T>(cap: Option<u64>, fut: impl Future<Output = T>) -> (T, Refusal, Option<u64>) {
    let state = CallState { refusal: Cell::new(Refusal::default()), cap, oversize: Cell::new(None) };
    CALL.scope(state, async move {
        let out = fut.await;
        CALL.with(|c| (out, c.refusal.get(), c.oversize.get()))
    })
    .await
}

fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok())
}

/// A `Retry-After` header value in seconds (the HTTP-date form is read as unknown).
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(|s| Duration::from_secs(s.min(3600)))
}

/// The reqwest client every request goes through: rustls with the `ring` provider and the
/// platform's certificate verifier, bounded connect and request times.
pub(crate) fn client() -> Result<reqwest::Client, String> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_platform_verifier()
        .map_err(|e| e.to_string())?
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(Duration::from_secs(15))
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| e.to_string())
}

/// The runtime every HTTP request runs on.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("onefolder-http")
            .enable_all()
            .build()
            .expect("start the HTTP runtime")
    })
}

/// Aborts a spawned request when the caller stops waiting for it.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `fut` on the HTTP runtime and waits for it; `None` when the runtime cancelled it.
///
/// From inside a tokio runtime the wait happens on that runtime's blocking pool: a blocking
/// task in flight keeps a paused test clock from jumping ahead while the real network
/// answers (tokio does not auto-advance past one), exactly as the folder transport's file
/// system calls do.
pub(crate) async fn on_http_runtime<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> Option<T> {
    let http = runtime().handle().clone();
    let task = http.spawn(fut);
    let _abort = AbortOnDrop(task.abort_handle());
    let joined = match tokio::runtime::Handle::try_current() {
        Ok(caller) => match caller.spawn_blocking(move || http.block_on(task)).await {
            Ok(joined) => joined,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => return None,
        },
        Err(_) => task.await,
    };
    match joined {
        Ok(out) => Some(out),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => None,
    }
}

/// OpenDAL's HTTP transport: reqwest, metered, noting `Retry-After`.
pub(crate) struct Metered {
    pub(crate) inner: ReqwestTransport,
    pub(crate) meter: Arc<Meter>,
}

impl HttpTransport for Metered {
    async fn fetch(&self, req: http::Request<Buffer>) -> opendal::Result<http::Response<HttpBody>> {
        self.meter.requests.fetch_add(1, Ordering::Relaxed);
        self.meter.bytes_sent.fetch_add(req.body().len() as u64, Ordering::Relaxed);
        let head = req.method() == http::Method::HEAD;
        let cap = if req.method() == http::Method::GET { CALL.try_with(|c| c.cap).ok().flatten() } else { None };
        let inner = self.inner.clone();
        let fetched = on_http_runtime(async move {
            let (parts, mut body) = inner.fetch(req).await?.into_parts();
            if let (Some(cap), Some(length)) = (cap, content_length(&parts.headers))
                && parts.status.is_success()
                && length > cap
            {
                // Dropped unread: the connection closes instead of the body being received.
                return Ok((parts, None));
            }
            let buffer = body.to_buffer().await?;
            Ok::<_, opendal::Error>((parts, Some(buffer)))
        })
        .await
        .unwrap_or_else(|| {
            Err(opendal::Error::new(opendal::ErrorKind::Unexpected, "HTTP runtime shutting down").set_temporary())
        });
        let (parts, buffer) = fetched?;
        let Some(buffer) = buffer else {
            let length = content_length(&parts.headers);
            let _ = CALL.try_with(|c| c.oversize.set(length));
            return Err(opendal::Error::new(opendal::ErrorKind::Unexpected, "the file is over the read cap"));
        };
        let size = buffer.len() as u64;
        self.meter.bytes_received.fetch_add(size, Ordering::Relaxed);
        // A HEAD answer announces a length it has no body for.
        let length = if head { None } else { Some(size) };
        let body = HttpBody::new(futures::stream::iter([Ok(buffer)]), length);
        let resp = http::Response::from_parts(parts, body);
        let status = resp.status().as_u16();
        if status >= 400 {
            let after = resp.headers().get(http::header::RETRY_AFTER).and_then(|v| v.to_str().ok());
            let refusal = Refusal { status: Some(status), retry_after: after.and_then(parse_retry_after) };
            let _ = CALL.try_with(|c| c.refusal.set(refusal));
        }
        Ok(resp)
    }
}

impl Meter {
    /// Counts a request made outside OpenDAL (a raw WebDAV `MOVE`).
    pub(crate) fn count_raw(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }
}
