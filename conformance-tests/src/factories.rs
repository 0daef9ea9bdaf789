//! Factories for the adapters compiled into this build (cargo features, all on by default).

#[cfg(any(feature = "sqlite", feature = "lmdb"))]
use std::path::Path;
use std::sync::Arc;

use onefolder_core::Transport;

use crate::{Medium, TransportFactory};

/// The in-memory transport (always available).
pub struct Memory;

impl TransportFactory for Memory {
    fn open(medium: &Medium) -> Arc<dyn Transport> {
        Arc::new(medium.memory.clone())
    }
}

/// The yrs engine.
#[cfg(feature = "yrs")]
pub struct Yrs;

#[cfg(feature = "yrs")]
impl crate::EngineFactory for Yrs {
    fn engine() -> Box<dyn onefolder_core::Engine> {
        Box::new(onefolder_engine_yrs::YrsEngine::new())
    }
}

/// The automerge engine.
#[cfg(feature = "automerge")]
pub struct Automerge;

#[cfg(feature = "automerge")]
impl crate::EngineFactory for Automerge {
    fn engine() -> Box<dyn onefolder_core::Engine> {
        Box::new(onefolder_engine_automerge::AutomergeEngine::new())
    }
}

/// The SQLite store.
#[cfg(feature = "sqlite")]
pub struct Sqlite;

#[cfg(feature = "sqlite")]
impl crate::StoreFactory for Sqlite {
    fn try_open(dir: &Path) -> Result<Box<dyn onefolder_core::Store>, onefolder_core::StoreError> {
        let options = onefolder_store_sqlite::SqliteOptions::default();
        Ok(Box::new(onefolder_store_sqlite::SqliteStore::open(dir, options)?))
    }
}

/// The LMDB store.
#[cfg(feature = "lmdb")]
pub struct Lmdb;

#[cfg(feature = "lmdb")]
impl crate::StoreFactory for Lmdb {
    fn try_open(dir: &Path) -> Result<Box<dyn onefolder_core::Store>, onefolder_core::StoreError> {
        let options = onefolder_store_lmdb::LmdbOptions::default();
        Ok(Box::new(onefolder_store_lmdb::LmdbStore::open(dir, options)?))
    }
}

/// The synced-folder transport (with its file watcher).
#[cfg(feature = "folder")]
pub struct Folder;

#[cfg(feature = "folder")]
impl TransportFactory for Folder {
    fn open(medium: &Medium) -> Arc<dyn Transport> {
        Arc::new(onefolder_transport_folder::FolderTransport::for_library(&medium.library))
    }
}
