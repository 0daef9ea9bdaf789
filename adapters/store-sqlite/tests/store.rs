//! Behaviour specific to `SqliteStore`: options, schema versioning, damaged and foreign files,
//! the in-memory store and durability across a process kill. The `Store` trait's Behavior
//! bullets are checked by the conformance suite (`onefolder-conformance`, `store_checks`).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use onefolder_core::{AppliedSegment, DeviceId, FlushRecord, LogEntry, LogKind, Store, StoreError, StoredState};
use onefolder_store_sqlite::{DB_FILE_NAME, SCHEMA_VERSION, SqliteOptions, SqliteStore, Synchronous};

fn open(dir: &Path) -> SqliteStore {
    SqliteStore::open(dir, SqliteOptions::default()).expect("open store")
}

fn flush(seq: u64, upto: u64) -> FlushRecord {
    FlushRecord {
        seq,
        upto,
        file_name: format!("d-{seq:016}.seg"),
        checksum: 0xDEAD_BEEF ^ seq as u32,
        size: 100 + seq,
        at_ms: 1_700_000_000_000 + seq as i64,
    }
}

fn segment(device: DeviceId, seq: u64, file_name: &str) -> AppliedSegment {
    AppliedSegment {
        device,
        file_name: file_name.to_owned(),
        seq_start: seq,
        seq_end: seq,
        checksum: 7 * seq as u32,
        size: 1000 + seq,
        applied_at_ms: 1_700_000_000_000 + seq as i64,
    }
}

fn ids(entries: &[LogEntry]) -> Vec<u64> {
    entries.iter().map(|e| e.id).collect()
}

/// What is specific to SQLite beside the generic `Store` checks of the conformance suite: the id,
/// the file location, and that `synchronous` changes durability only.
#[test]
fn full_synchronous_reads_back_with_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let peer = DeviceId::random();
    let before = {
        let mut store = SqliteStore::open(dir.path(), SqliteOptions { synchronous: Synchronous::Full }).unwrap();
        assert_eq!(store.store_id(), "sqlite");
        store.set_meta("device_id", Some(b"me")).unwrap();
        let a = store.append_local(b"a").unwrap();
        store.commit_flush(&flush(1, a)).unwrap();
        store.commit_remote(&segment(peer, 3, "p3"), Some(b"r")).unwrap();
        (
            store.get_meta("device_id").unwrap(),
            store.load().unwrap(),
            store.flushes().unwrap(),
            store.applied().unwrap(),
        )
    };
    let store = open(dir.path());
    let after = (
        store.get_meta("device_id").unwrap(),
        store.load().unwrap(),
        store.flushes().unwrap(),
        store.applied().unwrap(),
    );
    assert_eq!(after, before);
    assert_eq!(store.db_path(), Some(dir.path().join(DB_FILE_NAME).as_path()));
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    open(dir.path()).set_meta("k", Some(b"v")).unwrap();
    let db = dir.path().join(DB_FILE_NAME);
    let set_version = |v: u32| {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.pragma_update(None, "user_version", v).unwrap();
    };
    set_version(SCHEMA_VERSION + 7);
    match SqliteStore::open(dir.path(), SqliteOptions::default()) {
        Err(StoreError::TooNew { found, supported }) => {
            assert_eq!((found, supported), (SCHEMA_VERSION + 7, SCHEMA_VERSION));
        }
        other => panic!("expected TooNew, got {other:?}"),
    }
    // The refused open released its lock and left the data alone.
    set_version(SCHEMA_VERSION);
    assert_eq!(open(dir.path()).get_meta("k").unwrap(), Some(b"v".to_vec()));
}

#[test]
fn garbage_file_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let garbage: Vec<u8> = (0..16 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(dir.path().join(DB_FILE_NAME), &garbage).unwrap();
    match SqliteStore::open(dir.path(), SqliteOptions::default()) {
        Err(StoreError::Corrupt(msg)) => assert!(!msg.is_empty()),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // Nothing was "repaired" over the user's file.
    assert_eq!(std::fs::read(dir.path().join(DB_FILE_NAME)).unwrap(), garbage);
}

#[test]
fn damaged_pages_are_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = open(dir.path());
        for i in 0..50u32 {
            store.append_local(&vec![i as u8; 3000]).unwrap();
        }
    }
    // Closing checkpointed the WAL into the database file; damage every page after the first.
    let db = dir.path().join(DB_FILE_NAME);
    let mut bytes = std::fs::read(&db).unwrap();
    assert!(bytes.len() > 8192, "the data reached the main file");
    bytes[4096..].fill(0xA5);
    std::fs::write(&db, &bytes).unwrap();
    match SqliteStore::open(dir.path(), SqliteOptions::default()) {
        Err(StoreError::Corrupt(_)) => {}
        Ok(store) => match store.load() {
            Err(StoreError::Corrupt(_)) => {}
            other => panic!("expected Corrupt from load, got {other:?}"),
        },
        Err(other) => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn foreign_sqlite_database_is_refused() {
    for setup in
        ["PRAGMA application_id = 1234; CREATE TABLE photos (id INTEGER);", "CREATE TABLE photos (id INTEGER);"]
    {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join(DB_FILE_NAME);
        rusqlite::Connection::open(&db).unwrap().execute_batch(setup).unwrap();
        match SqliteStore::open(dir.path(), SqliteOptions::default()) {
            Err(StoreError::Corrupt(_)) => {}
            other => panic!("expected Corrupt for {setup:?}, got {other:?}"),
        }
        // Left as it was: none of our tables were added.
        let conn = rusqlite::Connection::open(&db).unwrap();
        let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0)).unwrap();
        assert_eq!(tables, 1);
    }
}

#[test]
fn in_memory_store_works() {
    let mut store = SqliteStore::open_in_memory().unwrap();
    assert_eq!(store.db_path(), None);
    let a = store.append_local(b"a").unwrap();
    store.commit_flush(&flush(1, a)).unwrap();
    let b = store.append_local(b"b").unwrap();
    store.compact(b"snap").unwrap();
    assert_eq!(store.load().unwrap().snapshot.as_deref(), Some(&b"snap"[..]));
    assert_eq!(ids(&store.unflushed().unwrap()), vec![b]);
    // Independent instances: no shared state, no lock.
    let other = SqliteStore::open_in_memory().unwrap();
    assert_eq!(other.load().unwrap(), StoredState::default());
}

const CHILD_ENV: &str = "ONEFOLDER_SQLITE_CHILD";
const CRASH_TEST: &str = "acknowledged_appends_survive_kill";

fn crash_payload(i: u64) -> Vec<u8> {
    // Sizes vary from a few bytes to several pages, so commits span WAL frames.
    let mut p = format!("change {i}:").into_bytes();
    p.resize(p.len() + (i as usize * 397) % 9000, (i % 251) as u8);
    p
}

/// The child side: appends until killed, printing `ack <id> <i>` after each `append_local`
/// returned. Stops on its own after a bound, or when the parent is gone (stdout closed).
fn crash_child(dir: &Path) {
    let mut store = open(dir);
    let mut out = std::io::stdout().lock();
    for i in 0..1_000_000u64 {
        let id = store.append_local(&crash_payload(i)).unwrap();
        if writeln!(out, "ack {id} {i}").and_then(|()| out.flush()).is_err() {
            return;
        }
    }
}

/// Kills the child if the parent test fails before it does.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn acknowledged_appends_survive_kill() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        crash_child(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", CRASH_TEST, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix("ack ") {
                let (id, i) = rest.split_once(' ').expect("ack line");
                if tx.send((id.parse::<u64>().unwrap(), i.parse::<u64>().unwrap())).is_err() {
                    break;
                }
            }
        }
    });

    // Kill the child while it is appending, once it acknowledged enough entries.
    let mut acked = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.len() < 300 {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(ack) => acked.push(ack),
            Err(e) => panic!("child stopped acknowledging after {} entries: {e}", acked.len()),
        }
    }
    child.0.kill().unwrap();
    let status = child.0.wait().unwrap();
    assert!(!status.success(), "the child was killed, not finished");
    // Acknowledgements already in the pipe count too.
    reader.join().unwrap();
    acked.extend(rx.try_iter());

    let mut store = open(dir.path());
    let log = store.load().unwrap().log;
    assert!(log.len() >= acked.len());
    for (id, i) in &acked {
        let entry = log.iter().find(|e| e.id == *id).unwrap_or_else(|| panic!("acknowledged id {id} lost"));
        assert_eq!(entry.kind, LogKind::Local);
        assert_eq!(entry.payload, crash_payload(*i), "payload of id {id}");
    }
    assert!(acked.windows(2).all(|w| w[0].0 < w[1].0));
    // The store is fully usable after the crash.
    let next = store.append_local(b"after crash").unwrap();
    assert!(next > log.last().unwrap().id);
}
