//! The conformance matrix: every adapter passes its trait checks, and every available
//! engine × store × transport runs every scenario. A new adapter is one line here.

#[allow(unused_imports)]
use onefolder_conformance::factories::*;
#[allow(unused_imports)]
use onefolder_conformance::{conformance, engine_conformance, store_conformance, transport_conformance};

// Trait contracts, per adapter.
#[cfg(feature = "yrs")]
engine_conformance!(engine_yrs, Yrs);
#[cfg(feature = "automerge")]
engine_conformance!(engine_automerge, Automerge);
#[cfg(feature = "sqlite")]
store_conformance!(store_sqlite, Sqlite);
#[cfg(feature = "lmdb")]
store_conformance!(store_lmdb, Lmdb);
transport_conformance!(transport_memory, Memory);
#[cfg(feature = "folder")]
transport_conformance!(transport_folder, Folder);

// End-to-end scenarios, per combination.
#[cfg(all(feature = "yrs", feature = "sqlite"))]
conformance!(yrs_sqlite_memory, Yrs, Sqlite, Memory);
#[cfg(all(feature = "yrs", feature = "sqlite", feature = "folder"))]
conformance!(yrs_sqlite_folder, Yrs, Sqlite, Folder);
#[cfg(all(feature = "automerge", feature = "sqlite"))]
conformance!(automerge_sqlite_memory, Automerge, Sqlite, Memory);
#[cfg(all(feature = "automerge", feature = "sqlite", feature = "folder"))]
conformance!(automerge_sqlite_folder, Automerge, Sqlite, Folder);
#[cfg(all(feature = "automerge", feature = "lmdb"))]
conformance!(automerge_lmdb_memory, Automerge, Lmdb, Memory);
#[cfg(all(feature = "automerge", feature = "lmdb", feature = "folder"))]
conformance!(automerge_lmdb_folder, Automerge, Lmdb, Folder);
#[cfg(all(feature = "yrs", feature = "lmdb"))]
conformance!(yrs_lmdb_memory, Yrs, Lmdb, Memory);
#[cfg(all(feature = "yrs", feature = "lmdb", feature = "folder"))]
conformance!(yrs_lmdb_folder, Yrs, Lmdb, Folder);
