//! Opening a library from JavaScript's options: the adapters by name (as the CLI's `backend.rs`
//! maps them), the transport (the folder transport on `<folder>/onefolder_tags`, or an S3 bucket
//! or WebDAV folder through OpenDAL under the retry layer), and the replica.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use onefolder_core::{
    Engine, LibraryManifest, OpenMode, Replica, ReplicaConfig, RetryLayer, RetryPolicy, Store, Transport,
};
use onefolder_transport_folder::FolderTransport;

use crate::dto::OpenOptions;
use crate::error::{Code, Failure};

/// The engine `create` uses when none is given.
const DEFAULT_ENGINE: &str = "yrs";
/// The store used when none is given.
const DEFAULT_STORE: &str = "sqlite";

/// Which of `Library.create`, `Library.join`, `Library.open` was called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Create the library in the folder (fails if there is one).
    Create,
    /// Join the library in the folder with new or existing local state.
    Join,
    /// Open local state set up before by `create` or `join`.
    Open,
}

fn engine(name: &str) -> Result<Box<dyn Engine>, Failure> {
    match name {
        "yrs" => Ok(Box::new(onefolder_engine_yrs::YrsEngine::new())),
        "automerge" => Ok(Box::new(onefolder_engine_automerge::AutomergeEngine::new())),
        other => Err(Failure::new(Code::Invalid, format!("unknown engine {other:?} (known: yrs, automerge)"))),
    }
}

fn check_store(name: &str) -> Result<(), Failure> {
    match name {
        "sqlite" | "lmdb" => Ok(()),
        other => Err(Failure::new(Code::Invalid, format!("unknown store {other:?} (known: sqlite, lmdb)"))),
    }
}

fn store(name: &str, dir: &Path) -> Result<Box<dyn Store>, Failure> {
    Ok(match name {
        "sqlite" => {
            Box::new(onefolder_store_sqlite::SqliteStore::open(dir, onefolder_store_sqlite::SqliteOptions::default())?)
        }
        "lmdb" => Box::new(onefolder_store_lmdb::LmdbStore::open(dir, onefolder_store_lmdb::LmdbOptions::default())?),
        other => return Err(Failure::new(Code::Invalid, format!("unknown store {other:?}"))),
    })
}

/// The transport `spec` names for the library in `folder`: `folder` (the default) or an
/// OpenDAL URL (`s3://BUCKET/PREFIX`, `webdav://HOST/PATH`, settings and secrets from the same
/// environment variables as the CLI's `--transport`).
fn transport(spec: Option<&str>, folder: &Path) -> Result<Arc<dyn Transport>, Failure> {
    match spec.unwrap_or("folder") {
        "folder" => Ok(Arc::new(FolderTransport::for_library(folder))),
        url if ["s3://", "webdav://", "webdavs://", "webdav+http://", "webdav+https://"]
            .iter()
            .any(|p| url.starts_with(p)) =>
        {
            let api =
                onefolder_transport_opendal::from_url(url).map_err(|e| Failure::new(Code::Invalid, e.to_string()))?;
            Ok(RetryLayer::new(Arc::new(api), RetryPolicy::default()))
        }
        other if other.starts_with("gdrive:") || other.starts_with("dropbox:") => Err(Failure::new(
            Code::Invalid,
            format!(
                "transport {other:?}: the Node binding does not sign in to Google Drive or Dropbox; use their \
                 desktop client's synced folder (transport \"folder\") or the CLI's --transport"
            ),
        )),
        other => Err(Failure::new(
            Code::Invalid,
            format!("unknown transport {other:?} (use \"folder\", s3://BUCKET/PREFIX or webdav://HOST/PATH)"),
        )),
    }
}

/// `path` made absolute and, where it exists, free of links and `..`.
fn absolute(path: &str) -> Result<PathBuf, Failure> {
    if path.is_empty() {
        return Err(Failure::new(Code::Invalid, "a path option is empty"));
    }
    let path = std::path::absolute(path)?;
    Ok(std::fs::canonicalize(&path).unwrap_or(path))
}

/// The engine named in `library.json`, if the folder holds a library.
async fn library_engine(transport: &dyn Transport, folder: &Path) -> Result<String, Failure> {
    let Some(bytes) = transport.read_manifest().await? else {
        return Err(Failure::new(
            Code::NotALibrary,
            format!("{} holds no OneFolder library (no library.json)", folder.display()),
        ));
    };
    let manifest: LibraryManifest = serde_json::from_slice(&bytes)
        .map_err(|e| Failure::new(Code::Corrupt, format!("library.json is not valid: {e}")))?;
    Ok(manifest.engine)
}

/// Opens the replica the options describe; answers it with the absolute library folder.
pub async fn open(options: OpenOptions, mode: Mode) -> Result<(Replica, PathBuf), Failure> {
    let folder = absolute(&options.folder)?;
    if !folder.is_dir() {
        return Err(Failure::new(Code::Invalid, format!("the library folder {} is not a folder", folder.display())));
    }
    let state_dir = absolute(&options.state_dir)?;
    // The local state must not travel with the library folder to the other computers.
    if state_dir.starts_with(&folder) {
        return Err(Failure::new(
            Code::Invalid,
            format!(
                "the state directory {} must not be inside the synced library folder {}",
                state_dir.display(),
                folder.display()
            ),
        ));
    }
    if mode == Mode::Open && std::fs::read_dir(&state_dir).map_or(true, |mut d| d.next().is_none()) {
        return Err(Failure::new(
            Code::Invalid,
            format!(
                "there is no local state in {}; set it up with Library.create or Library.join",
                state_dir.display()
            ),
        ));
    }
    let store_name = options.store.clone().unwrap_or_else(|| DEFAULT_STORE.to_owned());
    check_store(&store_name)?;
    let transport = transport(options.transport.as_deref(), &folder)?;
    let engine_name = match (&options.engine, mode) {
        (Some(name), _) => name.clone(),
        (None, Mode::Create) => DEFAULT_ENGINE.to_owned(),
        (None, Mode::Join | Mode::Open) => library_engine(transport.as_ref(), &folder).await?,
    };
    let engine = engine(&engine_name)?;
    let dir = state_dir.clone();
    let store = tokio::task::spawn_blocking(move || store(&store_name, &dir)).await??;
    let mut config = ReplicaConfig {
        device_name: options.device_name,
        mode: if mode == Mode::Create { OpenMode::Create } else { OpenMode::Join },
        ..ReplicaConfig::default()
    };
    if let Some(ms) = options.debounce_ms {
        config.debounce = Duration::from_millis(ms.into());
    }
    if let Some(ms) = options.poll_interval_ms {
        config.poll_interval = Duration::from_millis(ms.into()).max(Duration::from_millis(10));
    }
    Ok((Replica::open(engine, store, transport, config).await?, folder))
}
