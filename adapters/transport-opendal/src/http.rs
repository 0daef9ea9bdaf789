//! The HTTP client under OpenDAL: reqwest with rustls on `ring`, a meter of requests and
//! bytes, and the `Retry-After` of a refused request (OpenDAL's errors do not carry it).

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// Response body bytes announced by `Content-Length`.
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

tokio::task_local! {
    static REFUSAL: Cell<Refusal>;
}

/// Runs `fut` (one transport call) and returns its output with the status and `Retry-After`
/// of the last answer of 400 or more during it (OpenDAL's errors carry neither reliably).
pub(crate) async fn with_refusal<T>(fut: impl Future<Output = T>) -> (T, Refusal) {
    REFUSAL
        .scope(Cell::new(Refusal::default()), async move {
            let out = fut.await;
            (out, REFUSAL.with(Cell::get))
        })
        .await
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
        let resp = self.inner.fetch(req).await?;
        let length = resp
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if !head {
            self.meter.bytes_received.fetch_add(length.unwrap_or(0), Ordering::Relaxed);
        }
        let status = resp.status().as_u16();
        if status >= 400 {
            let after = resp.headers().get(http::header::RETRY_AFTER).and_then(|v| v.to_str().ok());
            let refusal = Refusal { status: Some(status), retry_after: after.and_then(parse_retry_after) };
            let _ = REFUSAL.try_with(|cell| cell.set(refusal));
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
