//! The one place that maps names (`yrs`, `sqlite`, …) to adapters, behind cargo features.
//!
//! Every engine and store the program *knows* is listed in [`KNOWN_ENGINES`] / [`KNOWN_STORES`],
//! so that an adapter left out of a build (cargo features, all on by default) is answered with
//! a clear "not compiled into this build" instead of "unknown". Wiring an adapter in is its match
//! arm in [`engine_maker`] / [`store_opener`] plus its feature in `Cargo.toml`.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use onefolder_core::{Engine, Replica, ReplicaConfig, RetryLayer, RetryPolicy, Store, StoreError, Transport};

use crate::error::user;
use crate::remote::TransportSpec;

/// Every engine this program knows, compiled in or not.
pub const KNOWN_ENGINES: &[&str] = &["yrs", "automerge"];
/// Every store this program knows, compiled in or not.
pub const KNOWN_STORES: &[&str] = &["sqlite", "lmdb"];

/// The engine used when `init` is given none.
pub const DEFAULT_ENGINE: &str = "yrs";
/// The store used when `init` / `join` are given none.
pub const DEFAULT_STORE: &str = "sqlite";

type MakeEngine = fn() -> Box<dyn Engine>;
type OpenStore = fn(&Path) -> Result<Box<dyn Store>, StoreError>;

/// How to make an empty engine of the named kind, if it is compiled in.
fn engine_maker(name: &str) -> Option<MakeEngine> {
    match name {
        #[cfg(feature = "yrs")]
        "yrs" => Some(|| Box::new(onefolder_engine_yrs::YrsEngine::new())),
        #[cfg(feature = "automerge")]
        "automerge" => Some(|| Box::new(onefolder_engine_automerge::AutomergeEngine::new())),
        _ => None,
    }
}

/// How to open a store of the named kind in a state directory, if it is compiled in.
fn store_opener(name: &str) -> Option<OpenStore> {
    match name {
        #[cfg(feature = "sqlite")]
        "sqlite" => Some(|dir| {
            let options = onefolder_store_sqlite::SqliteOptions::default();
            Ok(Box::new(onefolder_store_sqlite::SqliteStore::open(dir, options)?))
        }),
        #[cfg(feature = "lmdb")]
        "lmdb" => Some(|dir| {
            let options = onefolder_store_lmdb::LmdbOptions::default();
            Ok(Box::new(onefolder_store_lmdb::LmdbStore::open(dir, options)?))
        }),
        _ => None,
    }
}

fn missing(kind: &str, name: &str, known: &[&str], compiled: &[&str]) -> anyhow::Error {
    if known.contains(&name) {
        user(format!(
            "the {name} {kind} is not compiled into this build of onefolder-sync (this build has: {}); \
             rebuild with `--features {name}` or use another {kind}",
            compiled.join(", ")
        ))
    } else {
        user(format!("unknown {kind} {name:?} (known: {})", known.join(", ")))
    }
}

/// Engines compiled in.
pub fn engines() -> Vec<&'static str> {
    KNOWN_ENGINES.iter().copied().filter(|n| engine_maker(n).is_some()).collect()
}

/// Stores compiled in.
pub fn stores() -> Vec<&'static str> {
    KNOWN_STORES.iter().copied().filter(|n| store_opener(n).is_some()).collect()
}

/// An empty engine of the named kind.
pub fn engine(name: &str) -> Result<Box<dyn Engine>> {
    match engine_maker(name) {
        Some(make) => Ok(make()),
        None => Err(missing("engine", name, KNOWN_ENGINES, &engines())),
    }
}

/// Checks that the named engine is compiled in, without building one.
pub fn check_engine(name: &str) -> Result<()> {
    engine_maker(name).map(drop).ok_or_else(|| missing("engine", name, KNOWN_ENGINES, &engines()))
}

/// Checks that the named store is compiled in, without opening one.
pub fn check_store(name: &str) -> Result<()> {
    store_opener(name).map(drop).ok_or_else(|| missing("store", name, KNOWN_STORES, &stores()))
}

/// Turns "the state is locked" into a message that says what to do.
fn locked_hint(e: StoreError) -> anyhow::Error {
    match e {
        StoreError::Locked { path } => user(format!(
            "the local state in {path} is still in use by another onefolder-sync process after waiting \
             {} s (ONEFOLDER_SYNC_WAIT sets how long); let it finish, or pass another --state",
            crate::host::wait_budget().as_secs_f64()
        )),
        other => other.into(),
    }
}

/// Opens the store of the named kind in the state directory `dir`.
///
/// A store held by another command is waited for ([`crate::host::wait_budget`]), with a note on
/// stderr; one held by a running `sync --watch` that takes commands stops with
/// [`crate::host::UseHost`], so that the command is sent there instead.
pub fn store(name: &str, dir: &Path) -> Result<Box<dyn Store>> {
    let open = store_opener(name).ok_or_else(|| missing("store", name, KNOWN_STORES, &stores()))?;
    let deadline = std::time::Instant::now() + crate::host::wait_budget();
    let mut pause = std::time::Duration::from_millis(20);
    let mut told = false;
    loop {
        match open(dir) {
            Err(StoreError::Locked { .. }) if crate::host::is_hosted(dir) => {
                return Err(crate::host::UseHost { dir: dir.to_owned() }.into());
            }
            Err(StoreError::Locked { .. }) if std::time::Instant::now() + pause < deadline => {
                if !told && pause >= std::time::Duration::from_millis(300) {
                    crate::out::err_line(format!(
                        "waiting for another onefolder-sync command to finish with the local state in {}…",
                        dir.display()
                    ));
                    told = true;
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(500));
            }
            result => {
                return result
                    .map_err(locked_hint)
                    .with_context(|| format!("opening the local state in {}", dir.display()));
            }
        }
    }
}

/// The transport a library's database travels through: the folder transport on the library
/// folder (`<library>/onefolder_tags`), or a provider's API (wrapped in a [`RetryLayer`]).
pub fn transport(spec: &TransportSpec, library: &Path) -> Result<Arc<dyn Transport>> {
    match spec {
        TransportSpec::Folder => folder_transport(library),
        remote => {
            crate::remote::open(remote).map(|t| -> Arc<dyn Transport> { RetryLayer::new(t, RetryPolicy::default()) })
        }
    }
}

fn folder_transport(library: &Path) -> Result<Arc<dyn Transport>> {
    #[cfg(feature = "folder")]
    {
        Ok(Arc::new(onefolder_transport_folder::FolderTransport::for_library(library)))
    }
    #[cfg(not(feature = "folder"))]
    {
        let _ = library;
        Err(user("the folder transport is not compiled into this build of onefolder-sync"))
    }
}

/// Name of the folder a library keeps its database in, inside the library folder.
pub const TAGS_DIR: &str = "onefolder_tags";

/// The folder of one device on the shared folder (`<library>/onefolder_tags/database/<id>`).
pub fn device_folder(library: &Path, device: &onefolder_core::DeviceId) -> std::path::PathBuf {
    library.join(TAGS_DIR).join("database").join(device.to_string())
}

/// Opens a replica: engine + store (in `state`) + the transport `spec` names for `library`.
pub async fn open(
    engine_name: &str,
    store_name: &str,
    state: &Path,
    library: &Path,
    spec: &TransportSpec,
    config: ReplicaConfig,
) -> Result<Replica> {
    let replica = Replica::open(engine(engine_name)?, store(store_name, state)?, transport(spec, library)?, config)
        .await
        .with_context(|| format!("opening the library in {}", library.display()))?;
    Ok(replica)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_adapters_not_compiled_in_say_so() {
        for (known, compiled, check) in
            [(KNOWN_ENGINES, engines(), check_engine as fn(&str) -> Result<()>), (KNOWN_STORES, stores(), check_store)]
        {
            assert!(!compiled.is_empty());
            for name in known {
                match check(name) {
                    Ok(()) => assert!(compiled.contains(name)),
                    Err(e) => {
                        assert!(!compiled.contains(name));
                        assert!(e.to_string().contains("not compiled into this build"), "{e}");
                        assert_eq!(crate::error::exit_code(&e), crate::error::EXIT_USER);
                    }
                }
            }
            assert!(check("nosuch").unwrap_err().to_string().starts_with("unknown"));
        }
    }

    #[cfg(feature = "folder")]
    #[test]
    fn layout_matches_the_folder_transport() {
        assert_eq!(TAGS_DIR, onefolder_transport_folder::TAGS_DIR);
        let device = onefolder_core::DeviceId::random();
        let transport = onefolder_transport_folder::FolderTransport::for_library("/lib");
        assert_eq!(device_folder(Path::new("/lib"), &device), transport.device_dir(&device));
    }
}
