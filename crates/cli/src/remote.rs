//! Which medium a library's database travels through: the library folder itself (a sync
//! client shares it), or a provider's API (`--transport gdrive:PATH`, `dropbox:PATH`,
//! `s3://bucket/prefix`, `webdav://host/path`).
//!
//! With an API transport the library folder on this computer still holds the pictures (it is
//! the primary location); only `onefolder_tags/` lives at the provider, under the given path.
//! Sign-in tokens are kept in `<data dir>/auth/<provider>.json` (mode 0600), shared by every
//! library of this user on this computer.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use anyhow::Result;
use onefolder_core::Transport;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::user;

/// The providers whose API this program knows, compiled in or not.
pub const KNOWN_PROVIDERS: &[&str] = &["gdrive", "dropbox", "s3", "webdav"];

/// Where the database of a library lives.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum TransportSpec {
    /// `onefolder_tags/` inside the library folder, kept equal by a sync client.
    #[default]
    Folder,
    /// The Google Drive API; the path of the library folder under My Drive.
    Gdrive(String),
    /// The Dropbox API; the path of the library folder in the Dropbox.
    Dropbox(String),
    /// An S3-compatible bucket or a WebDAV server through OpenDAL (`s3://…`, `webdav://…`).
    Url(String),
}

impl TransportSpec {
    /// Whether the database lives inside the library folder on this disk.
    pub fn is_folder(&self) -> bool {
        matches!(self, TransportSpec::Folder)
    }
}

fn provider_path(kind: &str, path: &str) -> Result<String> {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        return Err(user(format!(
            "--transport {kind}:PATH needs the path of the library folder at the provider, e.g. {kind}:Pictures"
        )));
    }
    if trimmed.split('/').any(|part| part.is_empty() || part == "." || part == "..") {
        return Err(user(format!("--transport {kind}:{path}: the path must not contain empty, `.` or `..` parts")));
    }
    Ok(trimmed.to_owned())
}

impl FromStr for TransportSpec {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        if s == "folder" {
            return Ok(TransportSpec::Folder);
        }
        if let Some(path) = s.strip_prefix("gdrive:") {
            return Ok(TransportSpec::Gdrive(provider_path("gdrive", path)?));
        }
        if let Some(path) = s.strip_prefix("dropbox:") {
            return Ok(TransportSpec::Dropbox(provider_path("dropbox", path)?));
        }
        if ["s3://", "webdav://", "webdavs://", "webdav+https://", "webdav+http://"].iter().any(|p| s.starts_with(p)) {
            return Ok(TransportSpec::Url(s.to_owned()));
        }
        Err(user(format!(
            "unknown transport {s:?}: use folder (the default), gdrive:PATH, dropbox:PATH, s3://BUCKET/PREFIX or \
             webdav://HOST/PATH"
        )))
    }
}

impl fmt::Display for TransportSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportSpec::Folder => f.write_str("folder"),
            TransportSpec::Gdrive(path) => write!(f, "gdrive:{path}"),
            TransportSpec::Dropbox(path) => write!(f, "dropbox:{path}"),
            TransportSpec::Url(url) => f.write_str(url),
        }
    }
}

impl Serialize for TransportSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TransportSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(|e: anyhow::Error| serde::de::Error::custom(crate::error::one_line(&e)))
    }
}

/// Parses `--transport` for clap.
pub fn parse_spec(s: &str) -> Result<TransportSpec, String> {
    s.parse::<TransportSpec>().map_err(|e| crate::error::one_line(&e))
}

/// Opens the API transport `spec` names (not the folder transport: see
/// [`backend::transport`](crate::backend::transport)).
pub fn open(spec: &TransportSpec) -> Result<Arc<dyn Transport>> {
    match spec {
        TransportSpec::Folder => Err(user("the folder transport has no provider API")),
        TransportSpec::Gdrive(path) => gdrive(path),
        TransportSpec::Dropbox(path) => dropbox(path),
        TransportSpec::Url(url) => opendal(url),
    }
}

/// A transport or sign-in that this build leaves out (cargo features).
#[derive(Debug, thiserror::Error)]
#[error(
    "the {transport} transport is not compiled into this build of onefolder-sync; rebuild with `--features {feature}`"
)]
pub struct NotCompiled {
    /// The transport asked for.
    pub transport: &'static str,
    /// The cargo feature that brings it.
    pub feature: &'static str,
}

/// Whether `e` says that a provider is not compiled in.
pub fn is_not_compiled(e: &anyhow::Error) -> bool {
    e.downcast_ref::<NotCompiled>().is_some()
}

fn not_compiled(transport: &'static str) -> anyhow::Error {
    let feature = if matches!(transport, "s3" | "webdav") { "opendal" } else { transport };
    NotCompiled { transport, feature }.into()
}

/// Runs a provider's sign-in flow; `show` gets the URL the user opens. Returns what the
/// adapter says of the account (never a token).
pub async fn sign_in(provider: &str, file: &Path, show: &(dyn Fn(&str) + Send + Sync)) -> Result<serde_json::Value> {
    match provider {
        #[cfg(feature = "gdrive")]
        "gdrive" => {
            use onefolder_transport_gdrive::auth;
            let app = auth::OAuthApp::from_env().map_err(|e| user(e.to_string()))?;
            let account =
                auth::sign_in(&app, file, show).await.map_err(|e| user(format!("Google Drive sign-in: {e}")))?;
            Ok(serde_json::to_value(account)?)
        }
        #[cfg(feature = "dropbox")]
        "dropbox" => {
            use onefolder_transport_dropbox::auth;
            let app = auth::OAuthApp::from_env().map_err(|e| user(e.to_string()))?;
            let account = auth::sign_in(&app, file, show).await.map_err(|e| user(format!("Dropbox sign-in: {e}")))?;
            Ok(serde_json::to_value(account)?)
        }
        _ => {
            let _ = (file, show);
            Err(not_compiled(static_kind(provider)))
        }
    }
}

/// What a provider's token file says (`None`: not signed in).
pub fn auth_status(provider: &str, file: &Path) -> Result<Option<serde_json::Value>> {
    match provider {
        #[cfg(feature = "gdrive")]
        "gdrive" => Ok(onefolder_transport_gdrive::auth::status(file)
            .map_err(|e| user(format!("{}: {e}", file.display())))?
            .map(serde_json::to_value)
            .transpose()?),
        #[cfg(feature = "dropbox")]
        "dropbox" => Ok(onefolder_transport_dropbox::auth::status(file)
            .map_err(|e| user(format!("{}: {e}", file.display())))?
            .map(serde_json::to_value)
            .transpose()?),
        _ => {
            let _ = file;
            Err(not_compiled(static_kind(provider)))
        }
    }
}

/// Removes a provider's token file; whether there was one.
pub fn auth_logout(provider: &str, file: &Path) -> Result<bool> {
    match provider {
        #[cfg(feature = "gdrive")]
        "gdrive" => {
            onefolder_transport_gdrive::auth::logout(file).map_err(|e| user(format!("{}: {e}", file.display())))
        }
        #[cfg(feature = "dropbox")]
        "dropbox" => {
            onefolder_transport_dropbox::auth::logout(file).map_err(|e| user(format!("{}: {e}", file.display())))
        }
        _ => {
            let _ = file;
            Err(not_compiled(static_kind(provider)))
        }
    }
}

fn static_kind(provider: &str) -> &'static str {
    KNOWN_PROVIDERS.iter().copied().find(|p| *p == provider).unwrap_or("requested")
}

/// Where to sign in first, when there is no sign-in.
#[cfg(any(feature = "gdrive", feature = "dropbox"))]
fn sign_in_first(provider: &str, e: impl fmt::Display) -> anyhow::Error {
    user(format!("{e}; sign in with `onefolder-sync auth {provider}` first"))
}

#[cfg(feature = "gdrive")]
fn gdrive(path: &str) -> Result<Arc<dyn Transport>> {
    use onefolder_transport_gdrive::{GdriveOptions, GdriveTransport, auth};
    let file = token_file("gdrive")?;
    if !file.is_file() {
        return Err(sign_in_first("gdrive", "not signed in to Google Drive"));
    }
    let app = auth::OAuthApp::from_env().map_err(|e| user(e.to_string()))?;
    let tokens = auth::Tokens::from_file(&app, &file).map_err(|e| sign_in_first("gdrive", e))?;
    let options = GdriveOptions::from_env(path).map_err(|e| user(e.to_string()))?;
    Ok(Arc::new(GdriveTransport::new(options, tokens).map_err(|e| user(e.to_string()))?))
}

#[cfg(feature = "dropbox")]
fn dropbox(path: &str) -> Result<Arc<dyn Transport>> {
    use onefolder_transport_dropbox::{DropboxOptions, DropboxTransport, auth};
    let file = token_file("dropbox")?;
    if !file.is_file() {
        return Err(sign_in_first("dropbox", "not signed in to Dropbox"));
    }
    let app = auth::OAuthApp::from_env().map_err(|e| user(e.to_string()))?;
    let tokens = auth::Tokens::from_file(&app, &file).map_err(|e| sign_in_first("dropbox", e))?;
    // Dropbox paths are absolute; the spec keeps them without the leading slash.
    let options = DropboxOptions::from_env(format!("/{path}")).map_err(|e| user(e.to_string()))?;
    Ok(Arc::new(DropboxTransport::new(options, tokens).map_err(|e| user(e.to_string()))?))
}

#[cfg(feature = "opendal")]
fn opendal(url: &str) -> Result<Arc<dyn Transport>> {
    Ok(Arc::new(onefolder_transport_opendal::from_url(url).map_err(|e| user(e.to_string()))?))
}

#[cfg(not(feature = "gdrive"))]
fn gdrive(_path: &str) -> Result<Arc<dyn Transport>> {
    Err(not_compiled("gdrive"))
}

#[cfg(not(feature = "dropbox"))]
fn dropbox(_path: &str) -> Result<Arc<dyn Transport>> {
    Err(not_compiled("dropbox"))
}

#[cfg(not(feature = "opendal"))]
fn opendal(url: &str) -> Result<Arc<dyn Transport>> {
    Err(not_compiled(if url.starts_with("s3://") { "s3" } else { "webdav" }))
}

/// The folder holding sign-in tokens (`<data dir>/auth`).
pub fn auth_dir() -> Result<PathBuf> {
    Ok(crate::state::data_dir()?.join("auth"))
}

/// The token file of a provider.
pub fn token_file(provider: &str) -> Result<PathBuf> {
    Ok(auth_dir()?.join(format!("{provider}.json")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_round_trip() {
        for s in
            ["folder", "gdrive:Pictures", "gdrive:Photos/2024", "dropbox:Pictures", "s3://bucket/lib", "webdav://h/p"]
        {
            let spec: TransportSpec = s.parse().unwrap();
            assert_eq!(spec.to_string(), s);
            let json = serde_json::to_string(&spec).unwrap();
            assert_eq!(serde_json::from_str::<TransportSpec>(&json).unwrap(), spec);
        }
        assert_eq!("gdrive:/Pictures/".parse::<TransportSpec>().unwrap(), TransportSpec::Gdrive("Pictures".into()));
        assert_eq!("webdavs://h/p".parse::<TransportSpec>().unwrap(), TransportSpec::Url("webdavs://h/p".into()));
    }

    #[test]
    fn bad_specs_say_what_to_write() {
        for bad in ["gdrive:", "dropbox:/", "gdrive:a/../b", "ftp://x", "Folder", ""] {
            let e = bad.parse::<TransportSpec>().unwrap_err();
            assert_eq!(crate::error::exit_code(&e), crate::error::EXIT_USER, "{bad}");
        }
    }
}
