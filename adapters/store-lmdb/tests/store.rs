//! Behaviour specific to `LmdbStore`: options, meta key limits, long file names, schema
//! versioning, damaged and foreign files, map growth, thread moves and durability across a
//! process kill. The `Store` trait's Behavior bullets are checked by the conformance suite
//! (`onefolder-conformance`, `store_checks`).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use heed::types::Bytes;
use heed::{CommitOrAbort, Database, EnvOpenOptions};
use onefolder_core::{AppliedSegment, DeviceId, FlushRecord, LogEntry, LogKind, Store, StoreError};
use onefolder_store_lmdb::{DATA_FILE_NAME, Durability, LmdbOptions, LmdbStore, MAX_META_KEY_LEN, SCHEMA_VERSION};

const MIB: usize = 1 << 20;

fn open(dir: &Path) -> LmdbStore {
    LmdbStore::open(dir, LmdbOptions::default()).expect("open store")
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

/// Opens the raw LMDB environment of a (closed) store and runs `f` on its `meta` database in a
/// write transaction, which is committed.
fn with_raw_meta(dir: &Path, f: impl FnOnce(&mut heed::RwTxn<'_>, Database<'_, Bytes, Bytes>)) {
    let env = unsafe { EnvOpenOptions::new().max_dbs(8).open(dir) }.unwrap();
    let meta: Database<'static, Bytes, Bytes> = env
        .open_databases_and_commit(env.read_txn().unwrap(), |opener, txn| {
            opener.open_database(txn, Some("meta")).map(CommitOrAbort::<_, ()>::Commit)
        })
        .unwrap()
        .unwrap_commit()
        .expect("meta database");
    let mut txn = env.write_txn().unwrap();
    f(&mut txn, meta);
    txn.commit().unwrap();
}

/// What is specific to LMDB beside the generic `Store` checks of the conformance suite: the id,
/// the file location, and that `Relaxed` durability changes durability only.
#[test]
fn relaxed_durability_reads_back_with_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let peer = DeviceId::random();
    let before = {
        let options = LmdbOptions { durability: Durability::Relaxed, ..LmdbOptions::default() };
        let mut store = LmdbStore::open(dir.path(), options).unwrap();
        assert_eq!(store.store_id(), "lmdb");
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
    assert_eq!(store.data_path(), dir.path().canonicalize().unwrap().join(DATA_FILE_NAME));
}

#[test]
fn meta_keys_never_collide_with_bookkeeping() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    for internal in ["sys/schema_version", "sys/last_log_id", "sys/application"] {
        assert_eq!(store.get_meta(internal).unwrap(), None);
        store.set_meta(internal, Some(b"mine")).unwrap();
        assert_eq!(store.get_meta(internal).unwrap(), Some(b"mine".to_vec()));
    }
    let id = store.append_local(b"still works").unwrap();
    assert_eq!(id, 1);
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.get_meta("sys/schema_version").unwrap(), Some(b"mine".to_vec()));
    assert_eq!(ids(&store.load().unwrap().log), vec![1]);
}

#[test]
fn meta_keys_longer_than_an_lmdb_key_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    // The longest key fits; a longer one is refused, reads as missing and deletes as a no-op.
    let longest = "k".repeat(MAX_META_KEY_LEN);
    store.set_meta(&longest, Some(b"long")).unwrap();
    assert_eq!(store.get_meta(&longest).unwrap(), Some(b"long".to_vec()));
    let too_long = "k".repeat(MAX_META_KEY_LEN + 1);
    assert!(matches!(store.set_meta(&too_long, Some(b"x")), Err(StoreError::Invalid(_))));
    assert_eq!(store.get_meta(&too_long).unwrap(), None);
    store.set_meta(&too_long, None).unwrap();
}

#[test]
fn file_names_longer_than_an_lmdb_key_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let (p, q) = (DeviceId::random(), DeviceId::random());
    // Beyond LMDB's 511-byte keys (NTFS allows 255 UTF-16 units, i.e. up to 765 UTF-8 bytes),
    // and two names that differ only after the part that fits in a key.
    let stem = "ü".repeat(300);
    let long_a = format!("{stem} (conflicted copy A).seg");
    let long_b = format!("{stem} (conflicted copy B).seg");
    let expected = {
        let mut store = open(dir.path());
        for (i, name) in [&long_a, &long_b, &"00000000000000000001.seg".to_owned()].into_iter().enumerate() {
            store.commit_remote(&segment(p, 1 + i as u64, name), None).unwrap();
        }
        store.commit_remote(&segment(q, 1, &long_a), None).unwrap();
        // Re-recording a long name replaces its record.
        let mut again = segment(p, 1, &long_a);
        again.applied_at_ms = 7;
        store.commit_remote(&again, None).unwrap();
        let applied = store.applied().unwrap();
        assert_eq!(applied.len(), 4);
        assert!(applied.contains(&again));
        assert!(applied.contains(&segment(p, 2, &long_b)));
        applied
    };
    let mut store = open(dir.path());
    assert_eq!(store.applied().unwrap(), expected);
    store.forget_peer(&p).unwrap();
    assert_eq!(store.applied().unwrap(), vec![segment(q, 1, &long_a)]);
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    open(dir.path()).set_meta("k", Some(b"v")).unwrap();
    let set_version = |v: u32| {
        with_raw_meta(dir.path(), |txn, meta| meta.put(txn, b"sys/schema_version", &v.to_be_bytes()).unwrap());
    };
    set_version(SCHEMA_VERSION + 7);
    match LmdbStore::open(dir.path(), LmdbOptions::default()) {
        Err(StoreError::TooNew { found, supported }) => {
            assert_eq!((found, supported), (SCHEMA_VERSION + 7, SCHEMA_VERSION));
        }
        other => panic!("expected TooNew, got {other:?}"),
    }
    // The refused open released its lock and the environment, and left the data alone.
    set_version(SCHEMA_VERSION);
    assert_eq!(open(dir.path()).get_meta("k").unwrap(), Some(b"v".to_vec()));
}

#[test]
fn damaged_bookkeeping_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    open(dir.path()).append_local(b"x").unwrap();
    with_raw_meta(dir.path(), |txn, meta| meta.put(txn, b"sys/schema_version", b"\x01").unwrap());
    assert!(matches!(LmdbStore::open(dir.path(), LmdbOptions::default()), Err(StoreError::Corrupt(_))));
    with_raw_meta(dir.path(), |txn, meta| {
        meta.put(txn, b"sys/schema_version", &SCHEMA_VERSION.to_be_bytes()).unwrap();
        meta.delete(txn, b"sys/last_log_id").unwrap();
    });
    assert!(matches!(LmdbStore::open(dir.path(), LmdbOptions::default()), Err(StoreError::Corrupt(_))));
}

#[test]
fn garbage_file_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let garbage: Vec<u8> = (0..16 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(dir.path().join(DATA_FILE_NAME), &garbage).unwrap();
    match LmdbStore::open(dir.path(), LmdbOptions::default()) {
        Err(StoreError::Corrupt(msg)) => assert!(!msg.is_empty()),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // Nothing was "repaired" over the user's file.
    assert_eq!(std::fs::read(dir.path().join(DATA_FILE_NAME)).unwrap(), garbage);
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
    let page_size = {
        let env = unsafe { EnvOpenOptions::new().max_dbs(8).open(dir.path()) }.unwrap();
        env.unnamed_database_stat().page_size as usize
    };
    // Keep the two meta pages, damage every other page (the trees they point to).
    let db = dir.path().join(DATA_FILE_NAME);
    let mut bytes = std::fs::read(&db).unwrap();
    assert!(bytes.len() > 4 * page_size, "the data reached the file");
    bytes[2 * page_size..].fill(0xA5);
    std::fs::write(&db, &bytes).unwrap();
    match LmdbStore::open(dir.path(), LmdbOptions::default()) {
        Err(StoreError::Corrupt(_)) => {}
        Ok(store) => match store.load() {
            Err(StoreError::Corrupt(_)) => {}
            other => panic!("expected Corrupt from load, got {other:?}"),
        },
        Err(other) => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn damaged_records_are_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let peer = DeviceId::random();
    {
        let mut store = open(dir.path());
        store.append_local(b"fine").unwrap();
        store.commit_remote(&segment(peer, 1, "p"), None).unwrap();
    }
    // Valid LMDB, but records this program cannot have written.
    let env = unsafe { EnvOpenOptions::new().max_dbs(8).open(dir.path()) }.unwrap();
    let (log, applied): (Database<'static, Bytes, Bytes>, Database<'static, Bytes, Bytes>) = env
        .open_databases_and_commit(env.read_txn().unwrap(), |opener, txn| {
            let log = opener.open_database(txn, Some("log"))?.unwrap();
            let applied = opener.open_database(txn, Some("applied"))?.unwrap();
            Ok::<_, heed::Error>(CommitOrAbort::<_, ()>::Commit((log, applied)))
        })
        .unwrap()
        .unwrap_commit();
    let mut txn = env.write_txn().unwrap();
    log.put(&mut txn, &2u64.to_be_bytes(), &[9, 0]).unwrap();
    applied.put(&mut txn, b"short", b"").unwrap();
    txn.commit().unwrap();
    drop(env);

    let store = open(dir.path());
    assert!(matches!(store.load(), Err(StoreError::Corrupt(_))));
    assert!(matches!(store.unflushed(), Err(StoreError::Corrupt(_))));
    assert!(matches!(store.applied(), Err(StoreError::Corrupt(_))));
    assert_eq!(store.flushes().unwrap(), Vec::new(), "undamaged parts stay readable");
}

#[test]
fn foreign_lmdb_environment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let env = unsafe { EnvOpenOptions::new().max_dbs(4).open(dir.path()) }.unwrap();
        let photos: Database<'static, Bytes, Bytes> = env
            .create_databases_and_commit(env.write_txn().unwrap(), |opener, txn| {
                opener.create_database(txn, Some("photos")).map(CommitOrAbort::<_, ()>::Commit)
            })
            .unwrap()
            .unwrap_commit();
        let mut txn = env.write_txn().unwrap();
        photos.put(&mut txn, b"IMG_0001", b"cat").unwrap();
        txn.commit().unwrap();
    }
    let before = std::fs::read(dir.path().join(DATA_FILE_NAME)).unwrap();
    match LmdbStore::open(dir.path(), LmdbOptions::default()) {
        Err(StoreError::Corrupt(msg)) => assert!(msg.contains("photos"), "{msg}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // Left as it was: none of our databases were added.
    assert_eq!(std::fs::read(dir.path().join(DATA_FILE_NAME)).unwrap(), before);

    // A `meta` database without our mark is foreign too.
    let dir = tempfile::tempdir().unwrap();
    {
        let env = unsafe { EnvOpenOptions::new().max_dbs(4).open(dir.path()) }.unwrap();
        let meta: Database<'static, Bytes, Bytes> = env
            .create_databases_and_commit(env.write_txn().unwrap(), |opener, txn| {
                opener.create_database(txn, Some("meta")).map(CommitOrAbort::<_, ()>::Commit)
            })
            .unwrap()
            .unwrap_commit();
        let mut txn = env.write_txn().unwrap();
        meta.put(&mut txn, b"version", b"3").unwrap();
        txn.commit().unwrap();
    }
    assert!(matches!(LmdbStore::open(dir.path(), LmdbOptions::default()), Err(StoreError::Corrupt(_))));
}

#[test]
fn map_grows_instead_of_failing() {
    let dir = tempfile::tempdir().unwrap();
    let options = LmdbOptions { initial_map_size: MIB, ..LmdbOptions::default() };
    let peer = DeviceId::random();
    let big = |i: u8| vec![i; MIB];
    let expected_log = {
        let mut store = LmdbStore::open(dir.path(), options).unwrap();
        assert_eq!(store.map_size(), MIB);
        let mut ids = Vec::new();
        for i in 0..4u8 {
            ids.push(store.append_local(&big(i)).unwrap());
        }
        ids.push(store.commit_remote(&segment(peer, 1, "big"), Some(&big(9))).unwrap().unwrap());
        // A value larger than the map doubled once.
        store.set_meta("big", Some(&vec![7; 3 * MIB])).unwrap();
        store.commit_flush(&flush(1, ids[1])).unwrap();
        // A snapshot bigger than everything so far, replacing flushed and remote entries.
        store.compact(&vec![5; 6 * MIB]).unwrap();
        store.append_local(&big(4)).unwrap();
        assert!(store.map_size() >= 8 * MIB, "map grew to {}", store.map_size());

        let state = store.load().unwrap();
        assert_eq!(state.snapshot, Some(vec![5; 6 * MIB]));
        assert_eq!(state.log.len(), 3, "two unflushed locals kept, plus the new one");
        assert_eq!(state.log[0].payload, big(2));
        assert_eq!(state.log[2].payload, big(4));
        assert_eq!(store.get_meta("big").unwrap(), Some(vec![7; 3 * MIB]));
        assert_eq!(store.applied().unwrap(), vec![segment(peer, 1, "big")]);
        state.log
    };
    // Reopened with the small initial size, the map starts with room to spare.
    let mut store = LmdbStore::open(dir.path(), options).unwrap();
    let file = std::fs::metadata(dir.path().join(DATA_FILE_NAME)).unwrap().len() as usize;
    assert!(store.map_size() >= 2 * file, "map {} for a {file}-byte file", store.map_size());
    assert_eq!(store.load().unwrap().log, expected_log);
    assert_eq!(store.load().unwrap().snapshot, Some(vec![5; 6 * MIB]));
    store.append_local(&big(8)).unwrap();
}

#[test]
fn map_stops_growing_at_the_maximum_and_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let options = LmdbOptions { initial_map_size: MIB, max_map_size: 4 * MIB, ..LmdbOptions::default() };
    let mut store = LmdbStore::open(dir.path(), options).unwrap();
    let kept = store.append_local(&vec![1; MIB]).unwrap();
    match store.append_local(&vec![2; 5 * MIB]) {
        Err(StoreError::Io { message, .. }) => assert!(message.contains("full"), "{message}"),
        other => panic!("expected Io, got {other:?}"),
    }
    assert_eq!(store.map_size(), 4 * MIB);
    // Nothing of the failed append was committed, and the store keeps working.
    assert_eq!(ids(&store.load().unwrap().log), vec![kept]);
    let next = store.append_local(b"small").unwrap();
    assert_eq!(next, kept + 1, "the failed append consumed no id");
    drop(store);
    let store = LmdbStore::open(dir.path(), options).unwrap();
    assert_eq!(ids(&store.load().unwrap().log), vec![kept, next]);
}

#[test]
fn store_moves_between_threads() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    let a = store.append_local(b"on the first thread").unwrap();
    // Used on one thread after another, as a replica behind a mutex on a tokio runtime is.
    for i in 0..3 {
        store = std::thread::spawn(move || {
            assert_eq!(store.unflushed().unwrap()[0].id, a);
            store.set_meta(&format!("thread {i}"), Some(b"seen")).unwrap();
            store
        })
        .join()
        .unwrap();
    }
    assert_eq!(store.get_meta("thread 2").unwrap(), Some(b"seen".to_vec()));
}

const CHILD_ENV: &str = "ONEFOLDER_LMDB_CHILD";

fn crash_payload(i: u64) -> Vec<u8> {
    // Sizes vary from a few bytes to several pages, so commits span overflow pages.
    let mut p = format!("change {i}:").into_bytes();
    p.resize(p.len() + (i as usize * 397) % 9000, (i % 251) as u8);
    p
}

/// The child side: appends until killed, printing `ack <id> <i>` after each `append_local`
/// returned. Stops on its own after a bound, or when the parent is gone (stdout closed).
fn crash_child(dir: &Path, durability: Durability) {
    // A small map, so that the child also grows it while being killed.
    let options = LmdbOptions { durability, initial_map_size: MIB, ..LmdbOptions::default() };
    let mut store = LmdbStore::open(dir, options).unwrap();
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

/// Runs the child as `test` (this very test, re-executed), kills it with SIGKILL once it
/// acknowledged enough entries, and checks that every acknowledged entry survived.
fn kill_test(test: &str, durability: Durability) {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        crash_child(Path::new(&dir), durability);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
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

    // Kill the child while it is appending, once it acknowledged enough entries (more than fit
    // in the initial 1 MiB map).
    let mut acked = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.len() < 400 {
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

#[test]
fn acknowledged_appends_survive_kill() {
    kill_test("acknowledged_appends_survive_kill", Durability::Durable);
}

#[test]
fn acknowledged_appends_survive_kill_relaxed() {
    kill_test("acknowledged_appends_survive_kill_relaxed", Durability::Relaxed);
}
