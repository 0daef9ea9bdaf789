//! Signing in to Dropbox: the OAuth 2 authorization-code flow with PKCE (no app secret) and a
//! loopback redirect, a token file, and [`Tokens`] that refresh the short-lived access token.
//!
//! - [`OAuthApp::from_env`] reads the app key and endpoints.
//! - [`sign_in`] shows the user the authorize URL (built with `dropbox_sdk::oauth2`'s
//!   [`AuthorizeUrlBuilder`] and [`PkceCode`], `token_access_type=offline` so that a refresh
//!   token comes back), waits for the browser's redirect to `http://127.0.0.1:<port>/`
//!   (checking `state`), exchanges the code at the token URL and writes the token file
//!   (mode 0600, atomically; parent folders 0700).
//! - [`Tokens::from_file`] loads it for [`DropboxTransport::new`](crate::DropboxTransport::new):
//!   the access token is refreshed when it expires and when Dropbox answers 401
//!   `expired_access_token`, and a new refresh token, if the server rotates it, is written back.
//!
//! The token requests are made here rather than with `dropbox_sdk::oauth2::Authorization`,
//! which logs the whole token response (tokens included) at debug level through `log`, and
//! does not report `expires_in`. Tokens never appear in logs, errors or `Debug` output.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use dropbox_sdk::oauth2::{AuthorizeUrlBuilder, Oauth2Type, PkceCode, TokenType};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::http::{Endpoints, Http};

/// Dropbox's authorize page.
pub const DEFAULT_AUTH_URL: &str = "https://www.dropbox.com/oauth2/authorize";
/// Dropbox's token endpoint.
pub const DEFAULT_TOKEN_URL: &str = "https://api.dropboxapi.com/oauth2/token";
/// The scopes OneFolder Sync needs: list, read and write files.
pub const DEFAULT_SCOPE: &str = "files.metadata.read files.content.read files.content.write";
/// How long [`sign_in`] waits for the browser to come back.
pub const SIGN_IN_TIMEOUT: Duration = Duration::from_secs(300);
/// The provider name in an [`Account`].
pub const PROVIDER: &str = "dropbox";

const ENV_CLIENT_ID: &str = "ONEFOLDER_SYNC_DROPBOX_CLIENT_ID";
const ENV_CLIENT_SECRET: &str = "ONEFOLDER_SYNC_DROPBOX_CLIENT_SECRET";
const ENV_AUTH_URL: &str = "ONEFOLDER_SYNC_DROPBOX_AUTH_URL";
const ENV_TOKEN_URL: &str = "ONEFOLDER_SYNC_DROPBOX_TOKEN_URL";
const ENV_SCOPE: &str = "ONEFOLDER_SYNC_DROPBOX_SCOPE";
const ENV_REDIRECT_PORT: &str = "ONEFOLDER_SYNC_DROPBOX_REDIRECT_PORT";
/// The port of the redirect URI to register for the app: `http://127.0.0.1:53682/`.
pub const DEFAULT_REDIRECT_PORT: u16 = 53682;

/// Errors of signing in and of the token file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No app key configured.
    #[error(
        "{ENV_CLIENT_ID} is not set: create an app in the Dropbox App Console \
         (https://www.dropbox.com/developers/apps, \"Scoped access\", permissions files.metadata.read, \
         files.content.read and files.content.write) and set its App key"
    )]
    MissingClientId,
    /// An endpoint URL is unusable (not a URL, or plain `http://` to a host that is not loopback).
    #[error("{what}: {reason}: {url}")]
    InvalidUrl {
        /// Which setting.
        what: String,
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Nobody came back to the loopback address in time.
    #[error("no answer from the browser within {0:?}")]
    Timeout(Duration),
    /// The user (or Dropbox) refused: the redirect carried an `error`.
    #[error("sign-in was refused: {0}")]
    Denied(String),
    /// The redirect's `state` was not ours (a forged or stale redirect).
    #[error("the browser came back with a state that this sign-in did not send")]
    StateMismatch,
    /// The token endpoint refused the code or the refresh token (`invalid_grant`, …).
    #[error("Dropbox refused the token request: {0}; sign in again")]
    Rejected(String),
    /// The token endpoint could not be reached or answered garbage.
    #[error("token request failed: {0}")]
    Network(String),
    /// The token file is unreadable or damaged.
    #[error("token file {path}: {reason}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// There is no token file: not signed in.
    #[error("not signed in to Dropbox (no token file at {0}); run the sign-in first")]
    NotSignedIn(PathBuf),
    /// Local I/O (the loopback listener, creating folders).
    #[error("I/O failure: {0}")]
    Io(#[from] std::io::Error),
}

/// A Dropbox app registration and the OAuth endpoints.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuthApp {
    /// The App key.
    pub client_id: String,
    /// The App secret: not needed with PKCE (and not to be shipped in a desktop app).
    pub client_secret: Option<String>,
    /// The authorize page.
    pub auth_url: String,
    /// The token endpoint.
    pub token_url: String,
    /// Space-separated scopes.
    pub scope: String,
    /// The loopback port the browser comes back to (`http://127.0.0.1:<port>/`): Dropbox only
    /// redirects to URIs registered for the app, so the port is fixed ([`DEFAULT_REDIRECT_PORT`])
    /// and registered once; `0` takes any free port (a server that accepts any, as the tests').
    pub redirect_port: u16,
}

impl std::fmt::Debug for OAuthApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthApp")
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "<redacted>"))
            .field("auth_url", &self.auth_url)
            .field("token_url", &self.token_url)
            .field("scope", &self.scope)
            .field("redirect_port", &self.redirect_port)
            .finish()
    }
}

impl OAuthApp {
    /// An app with Dropbox's real endpoints and [`DEFAULT_SCOPE`].
    pub fn new(client_id: impl Into<String>) -> OAuthApp {
        OAuthApp {
            client_id: client_id.into(),
            client_secret: None,
            auth_url: DEFAULT_AUTH_URL.to_owned(),
            token_url: DEFAULT_TOKEN_URL.to_owned(),
            scope: DEFAULT_SCOPE.to_owned(),
            redirect_port: DEFAULT_REDIRECT_PORT,
        }
    }

    /// Reads `ONEFOLDER_SYNC_DROPBOX_CLIENT_ID` (required), `_CLIENT_SECRET`, `_AUTH_URL`,
    /// `_TOKEN_URL` and `_SCOPE` (defaults: Dropbox's endpoints, [`DEFAULT_SCOPE`]).
    pub fn from_env() -> Result<OAuthApp, AuthError> {
        let var = |name: &str| std::env::var(name).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let client_id = var(ENV_CLIENT_ID).ok_or(AuthError::MissingClientId)?;
        let mut app = OAuthApp::new(client_id);
        app.client_secret = var(ENV_CLIENT_SECRET);
        if let Some(url) = var(ENV_AUTH_URL) {
            app.auth_url = url;
        }
        if let Some(url) = var(ENV_TOKEN_URL) {
            app.token_url = url;
        }
        if let Some(port) = var(ENV_REDIRECT_PORT) {
            app.redirect_port = port.parse().map_err(|_| AuthError::InvalidUrl {
                what: ENV_REDIRECT_PORT.to_owned(),
                url: port.clone(),
                reason: "not a port number (0 to 65535)",
            })?;
        }
        if let Some(scope) = var(ENV_SCOPE) {
            app.scope = scope;
        }
        app.check()?;
        Ok(app)
    }

    fn check(&self) -> Result<(), AuthError> {
        check_url(ENV_AUTH_URL, &self.auth_url)?;
        check_url(ENV_TOKEN_URL, &self.token_url)?;
        Ok(())
    }

    /// A client for the token endpoint.
    fn http(&self) -> Http {
        // The token URL is used as is; the api/content/notify map is unused here.
        let none = Endpoints { api: String::new(), content: String::new(), notify: String::new() };
        Http::new(none, Some(Duration::from_secs(60)))
    }

    /// POSTs a form to the token endpoint and parses a token answer.
    async fn token_request(&self, http: &Http, mut form: form::Form) -> Result<TokenAnswer, TokenFailure> {
        form.pair("client_id", &self.client_id);
        if let Some(secret) = &self.client_secret {
            form.pair("client_secret", secret);
        }
        let answer =
            http.post_form(&self.token_url, form.finish()).await.map_err(|e| TokenFailure::Network(e.to_string()))?;
        if answer.status == 200 {
            return serde_json::from_slice(&answer.body)
                .map_err(|e| TokenFailure::Network(format!("unexpected token answer: {e}")));
        }
        #[derive(Deserialize)]
        struct OAuthErr {
            error: String,
            #[serde(default)]
            error_description: String,
        }
        match serde_json::from_slice::<OAuthErr>(&answer.body) {
            Ok(e) if (400..500).contains(&answer.status) => {
                Err(TokenFailure::Rejected(format!("{} ({})", e.error, e.error_description)))
            }
            _ if answer.status >= 500 || answer.status == 429 => {
                Err(TokenFailure::Network(format!("token endpoint answered HTTP {}", answer.status)))
            }
            _ => Err(TokenFailure::Rejected(format!("token endpoint answered HTTP {}", answer.status))),
        }
    }
}

/// `http://` only for loopback hosts; `https://` anywhere.
pub(crate) fn check_url(what: &str, raw: &str) -> Result<(), AuthError> {
    let invalid = |reason| AuthError::InvalidUrl { what: what.to_owned(), url: raw.to_owned(), reason };
    let url = url::Url::parse(raw).map_err(|_| invalid("not a URL"))?;
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&url) => Ok(()),
        "http" => Err(invalid("plain http:// is accepted only for loopback hosts (127.0.0.0/8, ::1, localhost)")),
        _ => Err(invalid("not an http(s) URL")),
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Who is signed in; what the CLI shows. Never holds a token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// `"dropbox"`.
    pub provider: String,
    /// The app key used.
    pub client_id: String,
    /// The scopes granted.
    pub scope: String,
    /// When the sign-in happened (RFC 3339, UTC).
    pub signed_in: String,
    /// Dropbox's account id, when the token endpoint said.
    pub account_id: Option<String>,
}

/// The token file's content.
#[derive(Clone, Serialize, Deserialize)]
struct TokenFile {
    provider: String,
    client_id: String,
    scope: String,
    signed_in: String,
    #[serde(default)]
    account_id: Option<String>,
    refresh_token: String,
    #[serde(default)]
    access_token: Option<String>,
    /// Milliseconds since the Unix epoch.
    #[serde(default)]
    expires_at_ms: Option<u64>,
}

impl TokenFile {
    fn account(&self) -> Account {
        Account {
            provider: self.provider.clone(),
            client_id: self.client_id.clone(),
            scope: self.scope.clone(),
            signed_in: self.signed_in.clone(),
            account_id: self.account_id.clone(),
        }
    }

    fn read(path: &Path) -> Result<Option<TokenFile>, AuthError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(AuthError::TokenFile { path: path.to_owned(), reason: e.to_string() }),
        };
        let file: TokenFile = serde_json::from_slice(&bytes)
            .map_err(|e| AuthError::TokenFile { path: path.to_owned(), reason: format!("not a token file ({e})") })?;
        if file.provider != PROVIDER {
            return Err(AuthError::TokenFile {
                path: path.to_owned(),
                reason: format!("holds a {} sign-in, not Dropbox", file.provider),
            });
        }
        Ok(Some(file))
    }

    /// Writes atomically (a temporary file in the same folder, renamed), mode 0600; creates
    /// missing parent folders with mode 0700.
    fn write(&self, path: &Path) -> Result<(), AuthError> {
        let fail = |reason: String| AuthError::TokenFile { path: path.to_owned(), reason };
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !parent.exists() {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(parent).map_err(|e| fail(format!("create its folder: {e}")))?;
        }
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| fail(e.to_string()))?;
        // tempfile creates the file with mode 0600 on Unix.
        let mut tmp = tempfile::Builder::new()
            .prefix(".token-")
            .suffix(".tmp")
            .tempfile_in(parent)
            .map_err(|e| fail(format!("create a temporary file: {e}")))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(|e| fail(e.to_string()))?;
        }
        std::io::Write::write_all(&mut tmp, &bytes).map_err(|e| fail(e.to_string()))?;
        tmp.as_file().sync_all().map_err(|e| fail(e.to_string()))?;
        tmp.persist(path).map_err(|e| fail(e.error.to_string()))?;
        Ok(())
    }
}

/// A successful token answer.
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    account_id: Option<String>,
}

enum TokenFailure {
    Rejected(String),
    Network(String),
}

impl From<TokenFailure> for AuthError {
    fn from(f: TokenFailure) -> Self {
        match f {
            TokenFailure::Rejected(why) => AuthError::Rejected(why),
            TokenFailure::Network(why) => AuthError::Network(why),
        }
    }
}

/// Why a refresh failed (for the HTTP client).
pub(crate) enum RefreshError {
    /// For good: sign in again.
    Rejected(String),
    /// Maybe later.
    Transient(String),
}

mod form {
    /// A form body being built.
    pub(super) struct Form(Vec<(String, String)>);

    impl Form {
        pub(super) fn new() -> Form {
            Form(Vec::new())
        }
        pub(super) fn pair(&mut self, k: &str, v: &str) -> &mut Form {
            self.0.push((k.to_owned(), v.to_owned()));
            self
        }
        pub(super) fn finish(self) -> String {
            url::form_urlencoded::Serializer::new(String::new()).extend_pairs(self.0).finish()
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// RFC 3339 (UTC, seconds) of a Unix time in seconds.
fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// When a token answered now with `expires_in` seconds should be treated as expired: a minute
/// early. A life under two minutes is not tracked here (the 401 `expired_access_token` path
/// refreshes it), so that a token is never dropped before it was used once.
fn expiry(expires_in: Option<u64>) -> Option<u64> {
    let life_ms = expires_in.filter(|s| *s >= 120)? * 1000;
    Some(now_ms() + life_ms - 60_000)
}

/// Runs the sign-in (see the module docs): `show_url` gets the URL for the user's browser.
pub async fn sign_in(
    app: &OAuthApp,
    token_file: &Path,
    show_url: &(dyn Fn(&str) + Send + Sync),
) -> Result<Account, AuthError> {
    sign_in_within(app, token_file, show_url, SIGN_IN_TIMEOUT).await
}

/// [`sign_in`] with a chosen wait for the browser.
pub async fn sign_in_within(
    app: &OAuthApp,
    token_file: &Path,
    show_url: &(dyn Fn(&str) + Send + Sync),
    wait: Duration,
) -> Result<Account, AuthError> {
    app.check()?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", app.redirect_port)).await.map_err(|e| {
        AuthError::Io(std::io::Error::new(
            e.kind(),
            format!(
                "cannot listen on 127.0.0.1:{} for the browser's answer ({e}); free the port or set {ENV_REDIRECT_PORT} \
                 to another one registered for the app",
                app.redirect_port
            ),
        ))
    })?;
    let redirect_uri = format!("http://127.0.0.1:{}/", listener.local_addr()?.port());
    let state = uuid::Uuid::new_v4().simple().to_string();
    let pkce = PkceCode::new();
    let flow = Oauth2Type::PKCE(pkce.clone());
    let built = AuthorizeUrlBuilder::new(&app.client_id, &flow)
        .redirect_uri(&redirect_uri)
        .state(&state)
        .scope(&app.scope)
        .token_type(TokenType::ShortLivedAndRefresh)
        .build();
    let sep = if app.auth_url.contains('?') { '&' } else { '?' };
    let url = format!("{}{sep}{}", app.auth_url, built.query().unwrap_or(""));
    show_url(&url);
    let code =
        tokio::time::timeout(wait, wait_for_code(&listener, &state)).await.map_err(|_| AuthError::Timeout(wait))??;
    drop(listener);
    let http = app.http();
    let mut form = form::Form::new();
    form.pair("grant_type", "authorization_code")
        .pair("code", &code)
        .pair("code_verifier", &pkce.code)
        .pair("redirect_uri", &redirect_uri);
    let answer = app.token_request(&http, form).await?;
    let refresh_token = answer.refresh_token.ok_or_else(|| {
        AuthError::Rejected("no refresh token in the answer (token_access_type=offline refused)".into())
    })?;
    let file = TokenFile {
        provider: PROVIDER.to_owned(),
        client_id: app.client_id.clone(),
        scope: answer.scope.unwrap_or_else(|| app.scope.clone()),
        signed_in: rfc3339(now_ms() / 1000),
        account_id: answer.account_id,
        refresh_token,
        expires_at_ms: expiry(answer.expires_in),
        access_token: Some(answer.access_token),
    };
    file.write(token_file)?;
    tracing::info!(client_id = %app.client_id, "signed in to Dropbox");
    Ok(file.account())
}

/// Accepts loopback connections until one brings the redirect; answers each.
async fn wait_for_code(listener: &tokio::net::TcpListener, state: &str) -> Result<String, AuthError> {
    loop {
        let (mut stream, _) = listener.accept().await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let head = String::from_utf8_lossy(&buf);
        let target = head.lines().next().and_then(|l| l.split_whitespace().nth(1)).unwrap_or("");
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let params: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
        let reply = |status: &str, text: &str| {
            format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            )
        };
        if path != "/" || (!params.contains_key("code") && !params.contains_key("error")) {
            let _ = stream.write_all(reply("404 Not Found", "Not found").as_bytes()).await;
            continue;
        }
        if params.get("state").map(String::as_str) != Some(state) {
            let _ = stream
                .write_all(reply("400 Bad Request", "This sign-in link is not the current one.").as_bytes())
                .await;
            return Err(AuthError::StateMismatch);
        }
        if let Some(error) = params.get("error") {
            let why = params.get("error_description").map_or(error.clone(), |d| format!("{error}: {d}"));
            let _ =
                stream.write_all(reply("200 OK", "Sign-in was cancelled. You can close this tab.").as_bytes()).await;
            return Err(AuthError::Denied(why));
        }
        let _ = stream
            .write_all(reply("200 OK", "OneFolder Sync is signed in to Dropbox. You can close this tab.").as_bytes())
            .await;
        let _ = stream.shutdown().await;
        return Ok(params.get("code").cloned().unwrap_or_default());
    }
}

/// Writes a token file for a refresh token obtained elsewhere (another machine's sign-in, a
/// headless setup, a test); the first request gets an access token with it.
pub fn save_refresh_token(app: &OAuthApp, token_file: &Path, refresh_token: &str) -> Result<Account, AuthError> {
    app.check()?;
    let file = TokenFile {
        provider: PROVIDER.to_owned(),
        client_id: app.client_id.clone(),
        scope: app.scope.clone(),
        signed_in: rfc3339(now_ms() / 1000),
        account_id: None,
        refresh_token: refresh_token.to_owned(),
        access_token: None,
        expires_at_ms: None,
    };
    file.write(token_file)?;
    Ok(file.account())
}

/// Who is signed in according to `token_file`, or `None` without one.
pub fn status(token_file: &Path) -> Result<Option<Account>, AuthError> {
    Ok(TokenFile::read(token_file)?.map(|f| f.account()))
}

/// Removes the token file; returns whether there was one.
pub fn logout(token_file: &Path) -> Result<bool, AuthError> {
    match std::fs::remove_file(token_file) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(AuthError::TokenFile { path: token_file.to_owned(), reason: e.to_string() }),
    }
}

struct Current {
    file: TokenFile,
    access: Option<Arc<String>>,
}

struct TokensInner {
    app: OAuthApp,
    path: PathBuf,
    http: Http,
    current: Mutex<Current>,
    refreshing: tokio::sync::Mutex<()>,
}

/// The tokens of a token file: the current access token, refreshed when it expires (or when
/// Dropbox says it has), with a rotated refresh token written back. Cheap to clone.
#[derive(Clone)]
pub struct Tokens {
    inner: Arc<TokensInner>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").field("file", &self.inner.path).field("tokens", &"<redacted>").finish()
    }
}

impl Tokens {
    /// Loads `token_file` (written by [`sign_in`]) for `app`.
    pub fn from_file(app: &OAuthApp, token_file: &Path) -> Result<Tokens, AuthError> {
        app.check()?;
        let file = TokenFile::read(token_file)?.ok_or_else(|| AuthError::NotSignedIn(token_file.to_owned()))?;
        if file.client_id != app.client_id {
            return Err(AuthError::TokenFile {
                path: token_file.to_owned(),
                reason: format!("was signed in with app key {}, not {}; sign in again", file.client_id, app.client_id),
            });
        }
        let access = file.access_token.clone().map(Arc::new);
        Ok(Tokens {
            inner: Arc::new(TokensInner {
                app: app.clone(),
                path: token_file.to_owned(),
                http: app.http(),
                current: Mutex::new(Current { file, access }),
                refreshing: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// Who signed in.
    pub fn account(&self) -> Account {
        self.lock().file.account()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Current> {
        self.inner.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The access token, unless it is missing or expired.
    pub(crate) fn current(&self) -> Option<Arc<String>> {
        let cur = self.lock();
        let fresh = cur.file.expires_at_ms.is_none_or(|at| now_ms() < at);
        cur.access.clone().filter(|_| fresh)
    }

    /// Gets a new access token, unless another caller already replaced `old` with a fresh one.
    pub(crate) async fn refresh(&self, old: &str) -> Result<(), RefreshError> {
        let _one_at_a_time = self.inner.refreshing.lock().await;
        if self.current().is_some_and(|t| t.as_str() != old) {
            return Ok(());
        }
        let refresh_token = self.lock().file.refresh_token.clone();
        let mut form = form::Form::new();
        form.pair("grant_type", "refresh_token").pair("refresh_token", &refresh_token);
        let answer = self.inner.app.token_request(&self.inner.http, form).await.map_err(|f| match f {
            TokenFailure::Rejected(why) => RefreshError::Rejected(why),
            TokenFailure::Network(why) => RefreshError::Transient(why),
        })?;
        let snapshot = {
            let mut cur = self.lock();
            cur.access = Some(Arc::new(answer.access_token.clone()));
            cur.file.access_token = Some(answer.access_token);
            cur.file.expires_at_ms = expiry(answer.expires_in);
            if let Some(rotated) = answer.refresh_token {
                cur.file.refresh_token = rotated;
            }
            cur.file.clone()
        };
        tracing::debug!("refreshed the Dropbox access token");
        if let Err(e) = snapshot.write(&self.inner.path) {
            // The new access token works for this run; a rotated refresh token not saved
            // means signing in again next time, so say so.
            tracing::warn!(error = %e, "could not save the refreshed tokens");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_http_only() {
        for ok in
            ["https://api.dropboxapi.com/oauth2/token", "http://127.0.0.1:9/x", "http://[::1]:9/", "http://localhost/"]
        {
            check_url("x", ok).unwrap();
        }
        for bad in ["http://example.com/token", "http://10.0.0.1/", "ftp://127.0.0.1/", "nonsense"] {
            assert!(check_url("x", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_redirect_port_is_fixed_unless_set() {
        assert_eq!(OAuthApp::new("key").redirect_port, DEFAULT_REDIRECT_PORT);
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let mut app = OAuthApp::new("key");
        app.client_secret = Some("very-secret".into());
        assert!(!format!("{app:?}").contains("very-secret"));
    }

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_709_210_096), "2024-02-29T12:34:56Z");
    }
}
