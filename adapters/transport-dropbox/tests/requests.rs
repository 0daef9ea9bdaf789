//! What replicas on the Dropbox transport cost in API requests, counted by the emulator: an
//! idle pass is one `list_folder/continue`, a flushed edit one `upload`, a peer's new segment
//! one `continue` and one `download`.

use std::sync::Arc;
use std::time::Duration;

use onefolder_core::{OpenMode, Replica, ReplicaConfig, Transport};
use onefolder_emulators::dropbox::{ACCESS_TOKEN, DropboxEmulator};
use onefolder_model::Library;
use onefolder_transport_dropbox::{DropboxOptions, DropboxTransport};

async fn device(emu: &DropboxEmulator, state: &std::path::Path, name: &str) -> Arc<Replica> {
    let options = DropboxOptions::new("/Pictures").with_base_url(&emu.url());
    let transport: Arc<dyn Transport> = Arc::new(DropboxTransport::with_access_token(options, ACCESS_TOKEN).unwrap());
    let store =
        onefolder_store_sqlite::SqliteStore::open(state, onefolder_store_sqlite::SqliteOptions::default()).unwrap();
    let config = ReplicaConfig {
        device_name: name.to_owned(),
        mode: OpenMode::CreateOrJoin,
        debounce: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        ..ReplicaConfig::default()
    };
    let engine = Box::new(onefolder_engine_yrs::YrsEngine::new());
    Arc::new(Replica::open(engine, Box::new(store), transport, config).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_per_idle_pass_per_flushed_edit_and_per_peer_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let emu = DropboxEmulator::start(tmp.path().join("dropbox")).unwrap();
    let a = device(&emu, &tmp.path().join("a"), "a").await;
    let b = device(&emu, &tmp.path().join("b"), "b").await;
    let (lib_a, lib_b) = (Library::new(a.clone()), Library::new(b.clone()));
    lib_a.create_tag(None, "First", None).unwrap();
    a.flush().await.unwrap();
    b.flush().await.unwrap();
    a.ingest().await.unwrap();
    b.ingest().await.unwrap();
    b.ingest().await.unwrap();

    emu.reset_counts();
    b.ingest().await.unwrap();
    let idle = emu.request_counts();
    println!("idle pass: {idle:?}");
    assert_eq!(emu.total_requests(), 1, "an idle pass: {idle:?}");
    assert_eq!(emu.requests("files/list_folder/continue"), 1);

    lib_a.create_tag(None, "Second", None).unwrap();
    emu.reset_counts();
    a.flush().await.unwrap().expect("an edit to flush");
    let edit = emu.request_counts();
    println!("flushed edit: {edit:?}");
    assert_eq!(emu.total_requests(), 1, "a flushed edit: {edit:?}");
    assert_eq!(emu.requests("files/upload"), 1);

    emu.reset_counts();
    let report = b.ingest().await.unwrap();
    let peer = emu.request_counts();
    println!("pass with one new peer segment: {peer:?}");
    assert_eq!(report.applied, 1);
    assert_eq!((emu.requests("files/list_folder/continue"), emu.requests("files/download")), (1, 1), "{peer:?}");
    assert!(lib_b.tag_by_path("Second").unwrap().is_some());
}
