//! Our [`dropbox_sdk::async_client_trait::HttpClient`]: hyper 1 over hyper-util's pooled
//! client, rustls on ring, and the SDK's fixed hosts rewritten to the configured endpoints.
//!
//! The SDK builds every URL from `https://{api,content,notify}.dropboxapi.com/2/…`; [`Http`]
//! maps each host to its configured base (one emulator can stand for all three). One [`Call`]
//! is made per SDK call: it carries the credentials (or none, for the long poll, which must
//! not send an `Authorization` header) and notes what the SDK does not expose: the
//! `Retry-After` header of a 429 and why a token refresh failed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use dropbox_sdk::async_client_trait::{HttpClient, HttpRequest, HttpRequestResultRaw, NoauthClient, UserAuthClient};
use futures::TryStreamExt;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;

use crate::auth::Tokens;

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// The hosts the SDK's URLs name, in the order of [`Endpoints`]' fields.
const API_HOST: &str = "https://api.dropboxapi.com/";
const CONTENT_HOST: &str = "https://content.dropboxapi.com/";
const NOTIFY_HOST: &str = "https://notify.dropboxapi.com/";

/// Largest JSON answer we buffer (listings are paged far below this).
const MAX_JSON: usize = 64 << 20;

/// Base URLs (no trailing slash) that stand for Dropbox's hosts.
#[derive(Clone, Debug)]
pub(crate) struct Endpoints {
    pub api: String,
    pub content: String,
    pub notify: String,
}

/// The shared HTTP client (a connection pool) and the endpoint map.
pub(crate) struct Http {
    client: Client<Connector, Full<Bytes>>,
    endpoints: Endpoints,
    timeout: Option<Duration>,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http").field("endpoints", &self.endpoints).field("timeout", &self.timeout).finish()
    }
}

/// A raw HTTP answer, body buffered.
pub(crate) struct Answer {
    pub status: u16,
    pub body: Bytes,
}

impl Http {
    /// A client for `endpoints`; `timeout` bounds each request (headers and buffered body).
    pub(crate) fn new(endpoints: Endpoints, timeout: Option<Duration>) -> Http {
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match builder.with_native_roots() {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "no system CA certificates; HTTPS endpoints will fail verification");
                let config =
                    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                        .with_safe_default_protocol_versions()
                        .expect("ring supports the default protocol versions")
                        .with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth();
                hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
            }
        };
        let connector = builder.https_or_http().enable_http1().build();
        let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
        Http { client, endpoints, timeout }
    }

    /// The URL the SDK asked for, on the configured endpoint.
    fn rewrite(&self, url: &str) -> String {
        for (host, base) in [
            (API_HOST, &self.endpoints.api),
            (CONTENT_HOST, &self.endpoints.content),
            (NOTIFY_HOST, &self.endpoints.notify),
        ] {
            if let Some(rest) = url.strip_prefix(host) {
                return format!("{base}/{rest}");
            }
        }
        url.to_owned()
    }

    /// Sends one POST; returns the status, the headers and the (unread) body.
    async fn send(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: Bytes,
        timeout: Option<Duration>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, std::io::Error> {
        let mut request = hyper::Request::post(url);
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request.body(Full::new(body)).map_err(std::io::Error::other)?;
        let response = self.client.request(request);
        let response = match timeout {
            Some(t) => tokio::time::timeout(t, response)
                .await
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no answer within {t:?}")))?,
            None => response.await,
        };
        response.map_err(|e| std::io::Error::other(describe(&e)))
    }

    /// A form POST whose answer is buffered (the OAuth token endpoint).
    pub(crate) async fn post_form(&self, url: &str, form: String) -> Result<Answer, std::io::Error> {
        let headers = [("Content-Type".to_owned(), "application/x-www-form-urlencoded".to_owned())];
        let response = self.send(url, &headers, Bytes::from(form), self.timeout).await?;
        let status = response.status().as_u16();
        let body = read_all(response.into_body(), self.timeout).await?;
        Ok(Answer { status, body })
    }
}

/// hyper's error with its sources (the useful part is usually the innermost one).
fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

async fn read_all(body: hyper::body::Incoming, timeout: Option<Duration>) -> Result<Bytes, std::io::Error> {
    let limited = http_body_util::Limited::new(body, MAX_JSON);
    let collect = limited.collect();
    let collected = match timeout {
        Some(t) => tokio::time::timeout(t, collect)
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "answer body timed out"))?,
        None => collect.await,
    };
    collected.map(|c| c.to_bytes()).map_err(|e| std::io::Error::other(describe(e.as_ref())))
}

/// The credentials of a transport.
#[derive(Clone)]
pub(crate) enum Credentials {
    /// A fixed access token (tests, or a token from elsewhere): never refreshed.
    Fixed(Arc<String>),
    /// Tokens from a token file, refreshed on expiry and on a 401.
    Refreshing(Tokens),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Fixed(_) => f.write_str("Fixed(<redacted>)"),
            Credentials::Refreshing(t) => write!(f, "Refreshing({t:?})"),
        }
    }
}

/// A request being built by the SDK.
pub(crate) struct Request {
    url: String,
    headers: Vec<(String, String)>,
    /// Our own `Dropbox-API-Arg` value, replacing the SDK's.
    arg_header: Option<String>,
}

impl HttpRequest for Request {
    fn set_header(mut self, name: &str, value: &str) -> Self {
        let value = match &self.arg_header {
            Some(ours) if name.eq_ignore_ascii_case("Dropbox-API-Arg") => ours.clone(),
            _ => value.to_owned(),
        };
        self.headers.push((name.to_owned(), value));
        self
    }
}

/// The JSON of `arg` for the `Dropbox-API-Arg` header: everything outside printable ASCII as
/// `\uXXXX`, characters beyond the BMP as UTF-16 surrogate pairs. (dropbox-sdk 0.21 writes
/// those as one `\u` with 5 or 6 hex digits, which JSON reads as a different character
/// followed by a digit: a library folder named with an emoji would land elsewhere.)
pub(crate) fn arg_header(arg: &impl serde::Serialize) -> Result<String, serde_json::Error> {
    let json = serde_json::to_string(arg)?;
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if (' '..'\x7f').contains(&c) {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    Ok(out)
}

/// One SDK call's client (see the module docs).
pub(crate) struct Call<'a> {
    http: &'a Http,
    auth: Option<&'a Credentials>,
    timeout: Option<Duration>,
    /// The `Retry-After` seconds of the last 429.
    pub retry_after: Mutex<Option<u64>>,
    /// Why refreshing the access token failed for good (revoked, signed out).
    pub auth_failure: Mutex<Option<String>>,
    /// The `Dropbox-API-Arg` to send instead of the SDK's (see [`arg_header`]).
    arg_header: Option<String>,
}

impl<'a> Call<'a> {
    /// A call with the transport's credentials.
    pub(crate) fn authed(http: &'a Http, auth: &'a Credentials) -> Call<'a> {
        Call {
            http,
            auth: Some(auth),
            timeout: http.timeout,
            retry_after: Mutex::new(None),
            auth_failure: Mutex::new(None),
            arg_header: None,
        }
    }

    /// The same call sending `header` as its `Dropbox-API-Arg`.
    pub(crate) fn with_arg_header(self, header: String) -> Call<'a> {
        Call { arg_header: Some(header), ..self }
    }

    /// A call without an `Authorization` header (the long poll), with its own timeout.
    pub(crate) fn noauth(http: &'a Http, timeout: Option<Duration>) -> Call<'a> {
        Call {
            http,
            auth: None,
            timeout,
            retry_after: Mutex::new(None),
            auth_failure: Mutex::new(None),
            arg_header: None,
        }
    }

    /// The `Retry-After` the server sent with its last 429, if any.
    pub(crate) fn retry_after(&self) -> Option<u64> {
        *self.retry_after.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Why the token could not be refreshed, if that is what failed.
    pub(crate) fn auth_failure(&self) -> Option<String> {
        self.auth_failure.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn sdk_io(e: std::io::Error) -> dropbox_sdk::Error {
    dropbox_sdk::Error::HttpClient(Box::new(e))
}

impl HttpClient for Call<'_> {
    type Request = Request;

    async fn execute(&self, request: Request, body: Bytes) -> Result<HttpRequestResultRaw, dropbox_sdk::Error> {
        let download = request.url.ends_with("/files/download");
        let response = self.http.send(&request.url, &request.headers, body, self.timeout).await.map_err(sdk_io)?;
        let status = response.status().as_u16();
        let headers = response.headers();
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let result_header = header("dropbox-api-result");
        let content_length = header("content-length").and_then(|v| v.parse().ok());
        if status == 429 {
            let seconds = header("retry-after").and_then(|v| v.trim().parse::<u64>().ok());
            *self.retry_after.lock().unwrap_or_else(|e| e.into_inner()) = seconds;
        }
        let body: Box<dyn futures::AsyncRead + Send + Unpin> = if download && (200..300).contains(&status) {
            // Streamed: the caller checks the size in the result header before reading.
            let stream = http_body_util::BodyStream::new(response.into_body())
                .map_ok(|frame| frame.into_data().unwrap_or_default())
                .map_err(|e| std::io::Error::other(describe(&e)));
            Box::new(Box::pin(stream).into_async_read())
        } else {
            let bytes = read_all(response.into_body(), self.timeout).await.map_err(sdk_io)?;
            Box::new(futures::io::Cursor::new(bytes))
        };
        Ok(HttpRequestResultRaw { status, result_header, content_length, body })
    }

    fn new_request(&self, url: &str) -> Request {
        Request { url: self.http.rewrite(url), headers: Vec::new(), arg_header: self.arg_header.clone() }
    }

    async fn update_token(&self, old_token: Arc<String>) -> Result<bool, dropbox_sdk::Error> {
        match self.auth {
            Some(Credentials::Refreshing(tokens)) => match tokens.refresh(&old_token).await {
                Ok(()) => Ok(true),
                Err(crate::auth::RefreshError::Rejected(why)) => {
                    *self.auth_failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
                    Ok(false)
                }
                Err(crate::auth::RefreshError::Transient(why)) => {
                    Err(sdk_io(std::io::Error::other(format!("refreshing the access token: {why}"))))
                }
            },
            _ => Ok(false),
        }
    }

    fn token(&self) -> Option<Arc<String>> {
        match self.auth? {
            Credentials::Fixed(token) => Some(token.clone()),
            // None when expired: the SDK then refreshes before sending.
            Credentials::Refreshing(tokens) => tokens.current(),
        }
    }
}

impl UserAuthClient for Call<'_> {}
impl NoauthClient for Call<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arg_header_escapes_astral_characters_as_surrogate_pairs() {
        let header = arg_header(&serde_json::json!({"path": "/Fotos/é😀"})).unwrap();
        assert_eq!(header, r#"{"path":"/Fotos/\u00e9\ud83d\ude00"}"#);
        let back: serde_json::Value = serde_json::from_str(&header).unwrap();
        assert_eq!(back["path"], "/Fotos/é😀");
    }
}
