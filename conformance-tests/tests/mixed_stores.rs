//! Mixed stores: the store is a device-local choice. Device A keeps its state in SQLite,
//! device B in LMDB, both on one synced-folder library with the yrs engine; they converge to
//! the same library, and each keeps it across a compaction and a restart.

#![cfg(all(feature = "yrs", feature = "sqlite", feature = "lmdb", feature = "folder"))]

use std::path::Path;
use std::sync::Arc;

use onefolder_conformance::test_config;
use onefolder_core::{Replica, Store};
use onefolder_engine_yrs::YrsEngine;
use onefolder_model::{FileMeta, Library};
use onefolder_store_lmdb::{LmdbOptions, LmdbStore};
use onefolder_store_sqlite::{SqliteOptions, SqliteStore};
use onefolder_transport_folder::FolderTransport;

type Lib = Library<Arc<Replica>>;

fn meta(size: i64) -> FileMeta {
    FileMeta { size, date_modified: 1_700_000_000_000, date_created: 1_700_000_000_000, ..FileMeta::default() }
}

async fn open_device(library: &Path, store: Box<dyn Store>, name: &str) -> Lib {
    let transport = Arc::new(FolderTransport::for_library(library));
    let replica =
        Replica::open(Box::new(YrsEngine::new()), store, transport, test_config(name)).await.expect("open replica");
    Library::new(Arc::new(replica))
}

async fn open_sqlite(library: &Path, state: &Path) -> Lib {
    let store = SqliteStore::open(state, SqliteOptions::default()).expect("open sqlite store");
    open_device(library, Box::new(store), "sqlite-device").await
}

async fn open_lmdb(library: &Path, state: &Path) -> Lib {
    let store = LmdbStore::open(state, LmdbOptions::default()).expect("open lmdb store");
    open_device(library, Box::new(store), "lmdb-device").await
}

/// Flushes both, then lets both ingest, twice.
async fn sync(a: &Lib, b: &Lib) {
    for _ in 0..2 {
        for lib in [a, b] {
            lib.doc().flush().await.expect("flush");
        }
        for lib in [a, b] {
            lib.doc().ingest().await.expect("ingest");
        }
    }
}

fn export(lib: &Lib) -> String {
    lib.export().expect("export").to_json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_and_lmdb_devices_converge() {
    let tmp = tempfile::tempdir().unwrap();
    let library = tmp.path().join("library");
    std::fs::create_dir_all(&library).unwrap();
    let (state_a, state_b) = (tmp.path().join("state-sqlite"), tmp.path().join("state-lmdb"));

    let a = open_sqlite(&library, &state_a).await;
    let b = open_lmdb(&library, &state_b).await;
    assert_eq!(a.doc().manifest().library_id, b.doc().manifest().library_id, "one library");
    assert_ne!(a.doc().device(), b.doc().device());

    // Both index the same folder offline: one location, one record per file.
    let loc = a.add_location("Library", Some("")).unwrap();
    assert_eq!(b.add_location("Library", Some("")).unwrap(), loc);
    let cats = a.create_tag_path("Animals/Cats", Some("orange")).unwrap();
    let tom = a.upsert_file(&loc, "pets/tom.jpg", &meta(100)).unwrap();
    a.assign(&tom, &cats).unwrap();
    let places = b.create_tag_path("Places", None).unwrap();
    let rome = b.upsert_file(&loc, "trips/rome.jpg", &meta(200)).unwrap();
    b.assign(&rome, &places).unwrap();
    assert_eq!(b.upsert_file(&loc, "pets/tom.jpg", &meta(100)).unwrap(), tom);
    b.assign(&tom, &places).unwrap();
    sync(&a, &b).await;
    assert_eq!(export(&a), export(&b));

    // Concurrent edits of one tag on both: field-level merge.
    a.rename_tag(&places, "Travel").unwrap();
    b.set_tag_color(&places, Some("blue")).unwrap();
    b.rename_tag(&cats, "Cats & kittens").unwrap();
    a.unassign(&tom, &places).unwrap();
    sync(&a, &b).await;
    let converged = export(&a);
    assert_eq!(converged, export(&b));
    let tags = b.tags().unwrap();
    assert_eq!(tags.len(), 3, "Animals, Cats and Places");
    assert_eq!((tags[&places].name.as_str(), tags[&places].color.as_deref()), ("Travel", Some("blue")));
    assert_eq!((tags[&cats].name.as_str(), tags[&cats].color.as_deref()), ("Cats & kittens", Some("orange")));
    let files = a.files().unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(files[&tom].tags.len(), 1);

    // Each store folds its log into a snapshot and keeps the library across a restart.
    a.doc().compact().unwrap();
    b.doc().compact().unwrap();
    drop((a, b));
    let a = open_sqlite(&library, &state_a).await;
    let b = open_lmdb(&library, &state_b).await;
    assert_eq!(export(&a), converged);
    assert_eq!(export(&b), converged);

    // And they keep syncing after it.
    let dogs = b.create_tag_path("Animals/Dogs", None).unwrap();
    let rex = b.upsert_file(&loc, "pets/rex.jpg", &meta(300)).unwrap();
    b.assign(&rex, &dogs).unwrap();
    a.delete_tag(&cats).unwrap();
    sync(&a, &b).await;
    let last = export(&a);
    assert_eq!(last, export(&b));
    assert_ne!(last, converged);
    let tags = a.tags().unwrap();
    assert!(tags.contains_key(&dogs) && !tags.contains_key(&cats));
    assert!(b.files().unwrap()[&tom].tags.is_empty(), "no dangling id to the deleted tag");
}
