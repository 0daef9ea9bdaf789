//! Signing in to Google Drive: the installed-app OAuth flow with a loopback redirect, the
//! token file, and access tokens that refresh themselves.
//!
//! The token file (JSON, mode 0600, its folder 0700, written atomically) holds the refresh
//! token, the last access token and its expiry, and the [`Account`] fields. Nothing secret is
//! ever logged or shown by `Debug`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use google_drive3::common;
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{HttpClient, http_client};

/// The provider name in [`Account::provider`].
pub const PROVIDER: &str = "gdrive";
/// Google's consent page.
pub const DEFAULT_AUTH_URL: &str = "https://accounts.google.com/o/oauth2/v2/auth";
/// Google's token endpoint.
pub const DEFAULT_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
/// Full Drive access: needed to share a library folder with the desktop client (see the
/// crate docs on scopes).
pub const SCOPE_DRIVE: &str = "https://www.googleapis.com/auth/drive";
/// Access to the files this app created only.
pub const SCOPE_DRIVE_FILE: &str = "https://www.googleapis.com/auth/drive.file";
/// How long [`sign_in`] waits for the browser to come back.
pub const SIGN_IN_TIMEOUT: Duration = Duration::from_secs(300);

/// Errors of signing in and of the token file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// A required setting is missing or unusable.
    #[error("{0}")]
    Config(String),
    /// There is no token file: sign in first.
    #[error("not signed in to Google Drive (no token file at {0}); run `onefolder-sync auth gdrive`")]
    NotSignedIn(PathBuf),
    /// The token file exists but cannot be used.
    #[error("the token file {path} is unusable: {reason}")]
    BadTokenFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The user (or Google) refused the consent.
    #[error("the sign-in was refused: {0}")]
    Denied(String),
    /// The browser did not come back in time.
    #[error("no answer from the browser within {0:?}")]
    Timeout(Duration),
    /// The token endpoint refused (`invalid_grant`: the refresh token was revoked or expired;
    /// sign in again).
    #[error("the token endpoint refused ({status}): {error}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The OAuth error code and description (never a token).
        error: String,
    },
    /// The token endpoint could not be reached or answered 5xx; try again later.
    #[error("the token endpoint is unreachable: {0}")]
    Unreachable(String),
    /// Reading or writing the token file or the loopback socket failed.
    #[error("I/O failure: {0}")]
    Io(#[from] std::io::Error),
}

impl AuthError {
    /// Whether trying again later may succeed (network trouble, a 5xx).
    pub fn is_transient(&self) -> bool {
        matches!(self, AuthError::Unreachable(_))
    }
}

/// The OAuth client (an installed app registered in a Google Cloud project) and Google's
/// endpoints. `Debug` does not show the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuthApp {
    /// The OAuth client id.
    pub client_id: String,
    /// The client secret (Google gives installed apps one; it is not really secret).
    pub client_secret: Option<String>,
    /// The consent page.
    pub auth_url: String,
    /// The token endpoint.
    pub token_url: String,
    /// The scope asked for (space-separated).
    pub scope: String,
}

impl std::fmt::Debug for OAuthApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthApp")
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "<redacted>"))
            .field("auth_url", &self.auth_url)
            .field("token_url", &self.token_url)
            .field("scope", &self.scope)
            .finish()
    }
}

impl OAuthApp {
    /// Reads `ONEFOLDER_SYNC_GDRIVE_CLIENT_ID` (required), `_CLIENT_SECRET`, `_AUTH_URL`,
    /// `_TOKEN_URL` and `_SCOPE` (default [`SCOPE_DRIVE`]).
    pub fn from_env() -> Result<OAuthApp, AuthError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let client_id = var("ONEFOLDER_SYNC_GDRIVE_CLIENT_ID").ok_or_else(|| {
            AuthError::Config(
                "ONEFOLDER_SYNC_GDRIVE_CLIENT_ID is not set: create an OAuth client of type \"Desktop app\" in the \
                 Google Cloud console (APIs & Services > Credentials, with the Google Drive API enabled) and set \
                 ONEFOLDER_SYNC_GDRIVE_CLIENT_ID and ONEFOLDER_SYNC_GDRIVE_CLIENT_SECRET to its id and secret"
                    .to_owned(),
            )
        })?;
        let app = OAuthApp {
            client_id,
            client_secret: var("ONEFOLDER_SYNC_GDRIVE_CLIENT_SECRET"),
            auth_url: var("ONEFOLDER_SYNC_GDRIVE_AUTH_URL").unwrap_or_else(|| DEFAULT_AUTH_URL.to_owned()),
            token_url: var("ONEFOLDER_SYNC_GDRIVE_TOKEN_URL").unwrap_or_else(|| DEFAULT_TOKEN_URL.to_owned()),
            scope: var("ONEFOLDER_SYNC_GDRIVE_SCOPE").unwrap_or_else(|| SCOPE_DRIVE.to_owned()),
        };
        crate::check_endpoint(&app.auth_url).map_err(AuthError::Config)?;
        crate::check_endpoint(&app.token_url).map_err(AuthError::Config)?;
        Ok(app)
    }
}

/// Who is signed in: what `status` shows. Never holds a token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Always [`PROVIDER`].
    pub provider: String,
    /// The OAuth client id used.
    pub client_id: String,
    /// The scope granted.
    pub scope: String,
    /// When the sign-in finished (RFC 3339, UTC).
    pub signed_in_at: String,
}

/// The token file's content.
#[derive(Clone, Serialize, Deserialize)]
struct TokenFile {
    #[serde(flatten)]
    account: Account,
    refresh_token: String,
    #[serde(default)]
    access_token: Option<String>,
    /// Unix seconds.
    #[serde(default)]
    expires_at: Option<u64>,
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn read_token_file(path: &Path) -> Result<Option<TokenFile>, AuthError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| AuthError::BadTokenFile { path: path.to_owned(), reason: format!("not a token file: {e}") }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Writes the token file atomically with mode 0600 (its folder created 0700).
fn write_token_file(path: &Path, file: &TokenFile) -> Result<(), AuthError> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)?;
    let bytes = serde_json::to_vec_pretty(file).map_err(std::io::Error::other)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "token".to_owned());
    let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let result = (|| {
        let mut f = options.open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    Ok(result?)
}

/// Who is signed in with `token_file`, or `None` when there is no file.
pub fn status(token_file: &Path) -> Result<Option<Account>, AuthError> {
    Ok(read_token_file(token_file)?.map(|f| f.account))
}

/// Signs out: removes `token_file`. Returns whether there was one.
pub fn logout(token_file: &Path) -> Result<bool, AuthError> {
    match std::fs::remove_file(token_file) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// What the token endpoint answers.
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

/// POSTs a form to the token endpoint.
async fn token_request(client: &HttpClient, url: &str, form: &[(&str, &str)]) -> Result<TokenResponse, AuthError> {
    let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let request = hyper::Request::builder()
        .method(hyper::Method::POST)
        .uri(url)
        .header(hyper::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(hyper::header::ACCEPT, "application/json")
        .body(common::to_body(Some(body)))
        .map_err(|e| AuthError::Config(format!("bad token URL {url}: {e}")))?;
    let response = client.request(request).await.map_err(|e| AuthError::Unreachable(e.to_string()))?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.map_err(|e| AuthError::Unreachable(e.to_string()))?.to_bytes();
    if (200..300).contains(&status) {
        return serde_json::from_slice(&bytes)
            .map_err(|e| AuthError::Unreachable(format!("the token endpoint answered something else: {e}")));
    }
    if status >= 500 || status == 429 {
        return Err(AuthError::Unreachable(format!("HTTP {status}")));
    }
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let code = v.get("error").and_then(|e| e.as_str()).unwrap_or("unknown_error");
    let description = v.get("error_description").and_then(|e| e.as_str()).unwrap_or("");
    Err(AuthError::Refused { status, error: format!("{code}: {description}").trim_end_matches(": ").to_owned() })
}

fn random_state() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// Signs in: the installed-app flow with a loopback redirect. `show_url` gets the URL the
/// user opens in a browser; the redirect to `http://127.0.0.1:<port>/` is awaited for
/// [`SIGN_IN_TIMEOUT`] (its `state` must match), the code is exchanged at the token endpoint,
/// and the token file is written (0600).
pub async fn sign_in(
    app: &OAuthApp,
    token_file: &Path,
    show_url: &(dyn Fn(&str) + Send + Sync),
) -> Result<Account, AuthError> {
    sign_in_within(app, token_file, show_url, SIGN_IN_TIMEOUT).await
}

/// [`sign_in`] with another timeout.
pub async fn sign_in_within(
    app: &OAuthApp,
    token_file: &Path,
    show_url: &(dyn Fn(&str) + Send + Sync),
    timeout: Duration,
) -> Result<Account, AuthError> {
    crate::check_endpoint(&app.auth_url).map_err(AuthError::Config)?;
    crate::check_endpoint(&app.token_url).map_err(AuthError::Config)?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let redirect_uri = format!("http://127.0.0.1:{}/", listener.local_addr()?.port());
    let state = random_state();
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("client_id", &app.client_id)
        .append_pair("redirect_uri", &redirect_uri)
        .append_pair("response_type", "code")
        .append_pair("scope", &app.scope)
        .append_pair("state", &state)
        .append_pair("access_type", "offline")
        .append_pair("prompt", "consent")
        .finish();
    let sep = if app.auth_url.contains('?') { '&' } else { '?' };
    show_url(&format!("{}{sep}{query}", app.auth_url));
    let code = tokio::time::timeout(timeout, wait_for_code(&listener, &state))
        .await
        .map_err(|_| AuthError::Timeout(timeout))??;
    drop(listener);
    let client = http_client();
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("client_id", app.client_id.as_str()),
        ("redirect_uri", redirect_uri.as_str()),
    ];
    if let Some(secret) = &app.client_secret {
        form.push(("client_secret", secret));
    }
    let answer = token_request(&client, &app.token_url, &form).await?;
    let refresh_token = answer.refresh_token.ok_or_else(|| AuthError::Refused {
        status: 200,
        error: "no refresh token was granted (ask for offline access)".to_owned(),
    })?;
    let account = Account {
        provider: PROVIDER.to_owned(),
        client_id: app.client_id.clone(),
        scope: answer.scope.unwrap_or_else(|| app.scope.clone()),
        signed_in_at: crate::rfc3339(unix_now()),
    };
    let file = TokenFile {
        account: account.clone(),
        refresh_token,
        access_token: Some(answer.access_token),
        expires_at: answer.expires_in.map(|s| unix_now() + s),
    };
    write_token_file(token_file, &file)?;
    tracing::info!(client_id = %app.client_id, "signed in to Google Drive");
    Ok(account)
}

/// Writes a token file for a refresh token obtained elsewhere (another sign-in tool, a test
/// emulator), as [`sign_in`] would; the first API call gets an access token with it.
pub fn store_refresh_token(app: &OAuthApp, token_file: &Path, refresh_token: &str) -> Result<Account, AuthError> {
    let account = Account {
        provider: PROVIDER.to_owned(),
        client_id: app.client_id.clone(),
        scope: app.scope.clone(),
        signed_in_at: crate::rfc3339(unix_now()),
    };
    let file = TokenFile {
        account: account.clone(),
        refresh_token: refresh_token.to_owned(),
        access_token: None,
        expires_at: None,
    };
    write_token_file(token_file, &file)?;
    Ok(account)
}

/// Accepts connections on the loopback listener until one brings `code` with our `state`
/// (or an `error`); other requests (a favicon, a wrong state) get a 400 and are ignored.
async fn wait_for_code(listener: &tokio::net::TcpListener, state: &str) -> Result<String, AuthError> {
    loop {
        let (mut stream, _) = listener.accept().await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 2048];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
            let n = stream.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let head = String::from_utf8_lossy(&buf);
        let target = head.lines().next().and_then(|l| l.split_whitespace().nth(1)).unwrap_or("/");
        let query = target.split_once('?').map_or("", |(_, q)| q);
        let params: std::collections::HashMap<String, String> =
            form_urlencoded::parse(query.as_bytes()).into_owned().collect();
        let state_ok = params.get("state").map(String::as_str) == Some(state);
        let (status, page, outcome) = match (state_ok, params.get("error"), params.get("code")) {
            (true, Some(error), _) => ("200 OK", "Sign-in refused. You can close this tab.", Some(Err(error.clone()))),
            (true, None, Some(code)) => {
                ("200 OK", "Signed in to OneFolder Sync. You can close this tab.", Some(Ok(code.clone())))
            }
            _ => ("400 Bad Request", "This is not the sign-in answer OneFolder Sync is waiting for.", None),
        };
        let reply = format!(
            "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
            page.len()
        );
        let _ = stream.write_all(reply.as_bytes()).await;
        let _ = stream.shutdown().await;
        match outcome {
            Some(Ok(code)) => return Ok(code),
            Some(Err(error)) => return Err(AuthError::Denied(error)),
            None => tracing::debug!("ignored a request on the sign-in address"),
        }
    }
}

// Held once, behind an Arc.
#[allow(clippy::large_enum_variant)]
enum Source {
    Fixed(String),
    Refreshing { app: OAuthApp, file: PathBuf, client: HttpClient, current: tokio::sync::Mutex<TokenFile> },
}

/// Access tokens for the Drive API: a fixed one (tests), or from a token file, refreshed
/// before they expire and after a 401 ([`Tokens::invalidate`]); a refresh token the endpoint
/// rotates is written back to the file (0600). Cloning shares the state. `Debug` shows no
/// token.
#[derive(Clone)]
pub struct Tokens {
    source: Arc<Source>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &*self.source {
            Source::Fixed(_) => f.write_str("Tokens(fixed)"),
            Source::Refreshing { file, .. } => f.debug_struct("Tokens").field("file", file).finish_non_exhaustive(),
        }
    }
}

impl Tokens {
    /// A fixed access token that is never refreshed (tests, or a token from elsewhere).
    pub fn fixed(access_token: impl Into<String>) -> Tokens {
        Tokens { source: Arc::new(Source::Fixed(access_token.into())) }
    }

    /// Tokens from the file [`sign_in`] wrote, refreshed with `app`.
    pub fn from_file(app: &OAuthApp, token_file: &Path) -> Result<Tokens, AuthError> {
        let file = read_token_file(token_file)?.ok_or_else(|| AuthError::NotSignedIn(token_file.to_owned()))?;
        if file.account.client_id != app.client_id {
            return Err(AuthError::BadTokenFile {
                path: token_file.to_owned(),
                reason: format!(
                    "it was made for the OAuth client {}, not {}: sign in again",
                    file.account.client_id, app.client_id
                ),
            });
        }
        crate::check_endpoint(&app.token_url).map_err(AuthError::Config)?;
        Ok(Tokens {
            source: Arc::new(Source::Refreshing {
                app: app.clone(),
                file: token_file.to_owned(),
                client: http_client(),
                current: tokio::sync::Mutex::new(file),
            }),
        })
    }

    /// Whether these tokens can be refreshed.
    pub fn can_refresh(&self) -> bool {
        matches!(&*self.source, Source::Refreshing { .. })
    }

    /// Forgets the current access token (the API answered 401): the next call refreshes.
    pub fn invalidate(&self) {
        if let Source::Refreshing { current, .. } = &*self.source {
            if let Ok(mut f) = current.try_lock() {
                f.access_token = None;
            } else {
                // A refresh is under way: it brings a new token anyway.
            }
        }
    }

    /// A valid access token, refreshing it when it expires within a minute.
    pub async fn access_token(&self) -> Result<String, AuthError> {
        let (app, path, client, current) = match &*self.source {
            Source::Fixed(t) => return Ok(t.clone()),
            Source::Refreshing { app, file, client, current } => (app, file, client, current),
        };
        let mut f = current.lock().await;
        if let (Some(token), Some(expires)) = (&f.access_token, f.expires_at) {
            if expires > unix_now() + 60 {
                return Ok(token.clone());
            }
        }
        let refresh = f.refresh_token.clone();
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
            ("client_id", app.client_id.as_str()),
        ];
        if let Some(secret) = &app.client_secret {
            form.push(("client_secret", secret));
        }
        let answer = token_request(client, &app.token_url, &form).await?;
        tracing::debug!(rotated = answer.refresh_token.is_some(), "refreshed the Google Drive access token");
        f.access_token = Some(answer.access_token.clone());
        f.expires_at = Some(unix_now() + answer.expires_in.unwrap_or(3600));
        if let Some(rotated) = answer.refresh_token {
            f.refresh_token = rotated;
        }
        write_token_file(path, &f)?;
        Ok(answer.access_token)
    }
}

impl common::GetToken for Tokens {
    fn get_token<'a>(
        &'a self,
        _scopes: &'a [&str],
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<Option<String>, Box<dyn std::error::Error + Send + Sync>>>
                + Send
                + 'a,
        >,
    > {
        Box::pin(async move {
            self.access_token().await.map(Some).map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        })
    }
}
