//! Opening a replica with the adapters compiled into this build.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use onefolder_core::{Engine, Replica, ReplicaConfig, Store, Transport};

/// An empty engine of the named kind.
pub fn engine(name: &str) -> Result<Box<dyn Engine>> {
    match name {
        #[cfg(feature = "yrs")]
        "yrs" => Ok(Box::new(onefolder_engine_yrs::YrsEngine::new())),
        other => anyhow::bail!("unknown engine {other:?} (this build has: {})", ENGINES.join(", ")),
    }
}

/// Engines compiled in.
pub const ENGINES: &[&str] = &[
    #[cfg(feature = "yrs")]
    "yrs",
];

/// Opens the store of the named kind in `dir`.
pub fn store(name: &str, dir: &Path) -> Result<Box<dyn Store>> {
    match name {
        #[cfg(feature = "sqlite")]
        "sqlite" => Ok(Box::new(
            onefolder_store_sqlite::SqliteStore::open(dir, onefolder_store_sqlite::SqliteOptions::default())
                .with_context(|| format!("opening the local state in {}", dir.display()))?,
        )),
        other => anyhow::bail!("unknown store {other:?}"),
    }
}

/// The folder transport on a library folder.
#[cfg(feature = "folder")]
pub fn folder_transport(library: &Path) -> Arc<dyn Transport> {
    Arc::new(onefolder_transport_folder::FolderTransport::for_library(library))
}

/// Opens a replica: engine + store (in `state`) + folder transport on `library`.
#[cfg(feature = "folder")]
pub async fn open(
    engine_name: &str,
    store_name: &str,
    state: &Path,
    library: &Path,
    config: ReplicaConfig,
) -> Result<Replica> {
    let replica = Replica::open(engine(engine_name)?, store(store_name, state)?, folder_transport(library), config)
        .await
        .with_context(|| format!("opening the library in {}", library.display()))?;
    Ok(replica)
}
