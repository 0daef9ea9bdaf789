//! Factories for the adapters compiled into this build (cargo features, all on by default).

#[cfg(any(feature = "sqlite", feature = "lmdb"))]
use std::path::Path;
use std::sync::Arc;

use onefolder_core::Transport;

use crate::{Medium, TransportFactory};

// Factories of the HTTP transports, one file each (their servers start inside the tests).
#[cfg(feature = "dropbox")]
mod dropbox;
#[cfg(feature = "dropbox")]
pub use dropbox::*;
#[cfg(feature = "gdrive")]
mod gdrive;
#[cfg(feature = "gdrive")]
pub use gdrive::*;
#[cfg(any(feature = "s3", feature = "webdav"))]
mod opendal;
#[cfg(any(feature = "s3", feature = "webdav"))]
pub use opendal::*;

/// The in-memory transport (always available).
pub struct Memory;

/// A [`MemoryTransport`](onefolder_core::MemoryTransport) medium.
pub struct MemoryMedium(pub onefolder_core::MemoryTransport);

#[async_trait::async_trait]
impl Medium for MemoryMedium {
    fn open(&self) -> Arc<dyn Transport> {
        Arc::new(self.0.clone())
    }
    async fn plant(&self, folder: &str, name: &str, bytes: &[u8]) -> bool {
        self.0.plant(folder, name, bytes);
        true
    }
}

#[async_trait::async_trait]
impl TransportFactory for Memory {
    async fn medium(_dir: &std::path::Path) -> Box<dyn Medium> {
        Box::new(MemoryMedium(onefolder_core::MemoryTransport::new()))
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

/// A library folder on the local file system, as a sync client keeps it.
#[cfg(feature = "folder")]
pub struct FolderMedium {
    /// The library folder (`onefolder_tags/` goes inside).
    pub library: std::path::PathBuf,
}

#[cfg(feature = "folder")]
#[async_trait::async_trait]
impl Medium for FolderMedium {
    fn open(&self) -> Arc<dyn Transport> {
        Arc::new(onefolder_transport_folder::FolderTransport::for_library(&self.library))
    }
    async fn plant(&self, folder: &str, name: &str, bytes: &[u8]) -> bool {
        let impossible = |n: &str| n.is_empty() || n == "." || n == ".." || n.contains(['/', '\\', '\0']);
        if impossible(folder) || impossible(name) {
            return false;
        }
        let dir = self.library.join(onefolder_transport_folder::TAGS_DIR).join("database").join(folder);
        std::fs::create_dir_all(&dir).expect("create a planted folder");
        std::fs::write(dir.join(name), bytes).expect("plant a file");
        true
    }
    fn library_dir(&self) -> Option<std::path::PathBuf> {
        Some(self.library.clone())
    }
}

#[cfg(feature = "folder")]
#[async_trait::async_trait]
impl TransportFactory for Folder {
    async fn medium(dir: &Path) -> Box<dyn Medium> {
        let library = dir.join("library");
        std::fs::create_dir_all(&library).expect("create the library folder");
        Box::new(FolderMedium { library })
    }
}
