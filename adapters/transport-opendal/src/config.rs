//! Where the shared library lives and how to sign in: URLs, options, secrets.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

/// A secret (a password, a secret access key). Its `Debug` and `Display` print `<redacted>`;
/// only [`Secret::expose`] gives the value, to hand it to the HTTP layer.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself (never log it).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Why a configuration was refused. Messages name the URL part or the variable at fault and
/// never contain a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The URL could not be parsed or has a part this transport does not accept.
    #[error("invalid transport URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given (URLs carrying a password are refused before they get here).
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A plain `http://` endpoint for a host that is not on this machine.
    #[error(
        "plain http to {host} would send credentials and data unencrypted; use https, or set \
         ONEFOLDER_SYNC_ALLOW_PLAIN_HTTP=1 to allow it anyway"
    )]
    PlainHttp {
        /// The host.
        host: String,
    },
    /// An environment variable holds something unusable.
    #[error("environment variable {name}: {reason}")]
    InvalidEnv {
        /// The variable.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A password file could not be read.
    #[error("cannot read the password file {path}: {source}")]
    PasswordFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// OpenDAL refused the configuration.
    #[error("OpenDAL refused the configuration: {0}")]
    Backend(String),
}

/// Settings of an S3-compatible bucket (AWS S3, MinIO, Cloudflare R2, Backblaze B2, Wasabi).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Options {
    /// The bucket.
    pub bucket: String,
    /// The key prefix of the library inside the bucket (no leading or trailing `/`; empty for
    /// the bucket's root). Files go under `<prefix>/onefolder_tags/`.
    pub prefix: String,
    /// The endpoint, e.g. `https://s3.eu-central-1.amazonaws.com` or `http://127.0.0.1:9000`;
    /// `None` for AWS S3 in [`S3Options::region`].
    pub endpoint: Option<String>,
    /// The region (`us-east-1` when unset; `auto` for R2).
    pub region: Option<String>,
    /// Static credentials; `None` lets OpenDAL's default chain find them (profile files,
    /// web identity, instance metadata).
    pub credentials: Option<S3Credentials>,
    /// Address the bucket as `https://<bucket>.<endpoint host>` instead of
    /// `https://<endpoint host>/<bucket>`.
    pub virtual_host_style: bool,
    /// Accept a plain `http://` endpoint that is not a loopback address.
    pub allow_plain_http: bool,
}

/// Static S3 credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Credentials {
    /// The access key id (not a secret by itself, shown in Debug output).
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: Secret,
    /// A session token for temporary credentials.
    pub session_token: Option<Secret>,
}

/// Settings of a WebDAV server (Nextcloud, ownCloud, Apache `mod_dav`, a NAS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebdavOptions {
    /// `https://host[:port]` (or `http://` for loopback), without a path.
    pub endpoint: String,
    /// The library folder's path on the server, e.g. `/remote.php/dav/files/alice/Photos`
    /// (starts with `/`, no trailing `/`; empty for the server's root). Files go under
    /// `<path>/onefolder_tags/`.
    pub path: String,
    /// The user for HTTP basic authentication.
    pub user: Option<String>,
    /// The password (for Nextcloud, an app password).
    pub password: Option<Secret>,
    /// Accept a plain `http://` endpoint that is not a loopback address.
    pub allow_plain_http: bool,
}

/// What a transport URL names, with its settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Config {
    /// An S3-compatible bucket.
    S3(S3Options),
    /// A WebDAV folder.
    Webdav(WebdavOptions),
}

/// Whether `host` is this machine: `localhost`, 127.0.0.0/8 or `::1`.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Checks an `http(s)://host[:port]` endpoint; plain http only for loopback hosts (or when
/// allowed). Returns the endpoint without a trailing `/`.
pub(crate) fn check_endpoint(endpoint: &str, allow_plain_http: bool) -> Result<String, ConfigError> {
    let invalid = |reason: &str| ConfigError::InvalidUrl { url: endpoint.to_owned(), reason: reason.to_owned() };
    let url = reqwest::Url::parse(endpoint).map_err(|e| invalid(&e.to_string()))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("credentials do not belong in the URL; use the environment variables"));
    }
    let host = url.host_str().ok_or_else(|| invalid("no host"))?.to_owned();
    match url.scheme() {
        "https" => {}
        "http" if allow_plain_http || is_loopback_host(&host) => {}
        "http" => return Err(ConfigError::PlainHttp { host }),
        _ => return Err(invalid("the endpoint must be http:// or https://")),
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("no query or fragment allowed"));
    }
    Ok(endpoint.trim_end_matches('/').to_owned())
}

/// Where configuration values come from: the process environment, or a map in tests.
pub trait EnvSource {
    /// The value of variable `name`, if set and not empty.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl<F: Fn(&str) -> Option<String>> EnvSource for F {
    fn var(&self, name: &str) -> Option<String> {
        self(name).filter(|v| !v.is_empty())
    }
}

fn flag(env: &dyn EnvSource, name: &'static str) -> Result<bool, ConfigError> {
    match env.var(name).as_deref() {
        None | Some("0" | "false" | "no") => Ok(false),
        Some("1" | "true" | "yes") => Ok(true),
        Some(_) => Err(ConfigError::InvalidEnv { name, reason: "expected 1 or 0".into() }),
    }
}

/// Parses a transport URL and completes it from `env`:
///
/// - `s3://BUCKET[/PREFIX]`: endpoint from `ONEFOLDER_SYNC_S3_ENDPOINT` or `AWS_ENDPOINT_URL_S3`
///   or `AWS_ENDPOINT_URL` (AWS itself when none), region from `AWS_REGION` or
///   `AWS_DEFAULT_REGION`, credentials from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
///   `AWS_SESSION_TOKEN` (OpenDAL's default chain when unset), virtual-host addressing with
///   `ONEFOLDER_SYNC_S3_VIRTUAL_HOST=1`.
/// - `webdav://HOST[:PORT]/PATH` or `webdavs://…`: HTTPS. `webdav+http://HOST[:PORT]/PATH`:
///   plain HTTP, accepted for loopback hosts only (or with `ONEFOLDER_SYNC_ALLOW_PLAIN_HTTP=1`).
///   User from `ONEFOLDER_SYNC_WEBDAV_USER`, password from `ONEFOLDER_SYNC_WEBDAV_PASSWORD` or
///   the file named by `ONEFOLDER_SYNC_WEBDAV_PASSWORD_FILE` (its first line).
///
/// URLs carrying a user or password, a query or a fragment are refused.
pub fn parse_url(url: &str, env: &dyn EnvSource) -> Result<Config, ConfigError> {
    let invalid = |reason: &str| ConfigError::InvalidUrl { url: redact_userinfo(url), reason: reason.to_owned() };
    let (scheme, rest) = url.split_once("://").ok_or_else(|| invalid("expected s3://… or webdav://…"))?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.contains('@') {
        return Err(invalid("credentials do not belong in the URL; use the environment variables"));
    }
    if rest.contains(['?', '#']) {
        return Err(invalid("no query or fragment allowed"));
    }
    if authority.is_empty() {
        return Err(invalid("no bucket or host"));
    }
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segments.iter().any(|s| *s == "." || *s == ".." || s.chars().any(char::is_control) || s.contains('\\')) {
        return Err(invalid("the path has a relative, control or backslash component"));
    }
    let allow_plain_http = flag(env, "ONEFOLDER_SYNC_ALLOW_PLAIN_HTTP")?;
    match scheme.to_ascii_lowercase().as_str() {
        "s3" => {
            let bucket = authority;
            let valid_bucket = (3..=63).contains(&bucket.len())
                && bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
                && !bucket.starts_with(['-', '.'])
                && !bucket.ends_with(['-', '.']);
            if !valid_bucket {
                return Err(invalid("not a valid bucket name (3-63 lowercase letters, digits, '-', '.')"));
            }
            let endpoint = ["ONEFOLDER_SYNC_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
                .iter()
                .find_map(|name| env.var(name))
                .map(|e| check_endpoint(&e, allow_plain_http))
                .transpose()?;
            let credentials = match (env.var("AWS_ACCESS_KEY_ID"), env.var("AWS_SECRET_ACCESS_KEY")) {
                (Some(access_key_id), Some(secret)) => Some(S3Credentials {
                    access_key_id,
                    secret_access_key: Secret::new(secret),
                    session_token: env.var("AWS_SESSION_TOKEN").map(Secret::new),
                }),
                (None, None) => None,
                (Some(_), None) => {
                    return Err(ConfigError::InvalidEnv {
                        name: "AWS_SECRET_ACCESS_KEY",
                        reason: "not set, but AWS_ACCESS_KEY_ID is".into(),
                    });
                }
                (None, Some(_)) => {
                    return Err(ConfigError::InvalidEnv {
                        name: "AWS_ACCESS_KEY_ID",
                        reason: "not set, but AWS_SECRET_ACCESS_KEY is".into(),
                    });
                }
            };
            Ok(Config::S3(S3Options {
                bucket: bucket.to_owned(),
                prefix: segments.join("/"),
                endpoint,
                region: env.var("AWS_REGION").or_else(|| env.var("AWS_DEFAULT_REGION")),
                credentials,
                virtual_host_style: flag(env, "ONEFOLDER_SYNC_S3_VIRTUAL_HOST")?,
                allow_plain_http,
            }))
        }
        s @ ("webdav" | "webdavs" | "webdav+https" | "webdav+http") => {
            let http = if s == "webdav+http" { "http" } else { "https" };
            let endpoint = check_endpoint(&format!("{http}://{authority}"), allow_plain_http)?;
            let password =
                match (env.var("ONEFOLDER_SYNC_WEBDAV_PASSWORD"), env.var("ONEFOLDER_SYNC_WEBDAV_PASSWORD_FILE")) {
                    (Some(p), _) => Some(Secret::new(p)),
                    (None, Some(file)) => {
                        let path = PathBuf::from(file);
                        let text = std::fs::read_to_string(&path)
                            .map_err(|source| ConfigError::PasswordFile { path: path.clone(), source })?;
                        Some(Secret::new(text.lines().next().unwrap_or_default().to_owned()))
                    }
                    (None, None) => None,
                };
            let path = if segments.is_empty() { String::new() } else { format!("/{}", segments.join("/")) };
            Ok(Config::Webdav(WebdavOptions {
                endpoint,
                path,
                user: env.var("ONEFOLDER_SYNC_WEBDAV_USER"),
                password,
                allow_plain_http,
            }))
        }
        _ => Err(invalid("unknown scheme; expected s3, webdav, webdavs or webdav+http")),
    }
}

/// The URL with anything between `://` and `@` replaced, for error messages.
fn redact_userinfo(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else { return url.to_owned() };
    let end = url[start..].find('/').map_or(url.len(), |i| start + i);
    match url[start..end].rfind('@') {
        Some(at) => format!("{}<redacted>{}", &url[..start], &url[start + at..]),
        None => url.to_owned(),
    }
}
