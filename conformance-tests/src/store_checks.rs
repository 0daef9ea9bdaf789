//! Checks of the [`Store`](onefolder_core::Store) contract, one per `# Behavior` bullet.

use onefolder_core::{AppliedSegment, DeviceId, FlushRecord, LogEntry, LogKind, StoreError, StoredState};

use crate::StoreFactory;

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

fn local(id: u64, payload: &[u8]) -> LogEntry {
    LogEntry { id, kind: LogKind::Local, payload: payload.to_vec(), flushed_seq: None }
}

fn ids(entries: &[LogEntry]) -> Vec<u64> {
    entries.iter().map(|e| e.id).collect()
}

/// `meta_round_trip`.
pub fn meta_round_trip<S: StoreFactory>() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = S::open(dir.path());
    assert_eq!(s.get_meta("device_id").unwrap(), None);

    s.set_meta("device_id", Some(b"abc")).unwrap();
    assert_eq!(s.get_meta("device_id").unwrap().as_deref(), Some(&b"abc"[..]));
    s.set_meta("device_id", Some(b"xyz")).unwrap();
    assert_eq!(s.get_meta("device_id").unwrap().as_deref(), Some(&b"xyz"[..]));

    // Empty and binary values are values, not deletions; the empty key is a key.
    s.set_meta("empty", Some(b"")).unwrap();
    assert_eq!(s.get_meta("empty").unwrap(), Some(Vec::new()));
    s.set_meta("binary", Some(&[0, 255, 0, 1])).unwrap();
    assert_eq!(s.get_meta("binary").unwrap(), Some(vec![0, 255, 0, 1]));
    s.set_meta("", Some(b"empty key")).unwrap();
    assert_eq!(s.get_meta("").unwrap(), Some(b"empty key".to_vec()));

    s.set_meta("device_id", None).unwrap();
    assert_eq!(s.get_meta("device_id").unwrap(), None);
    // Deleting a missing key is fine and touches no other key.
    s.set_meta("never-set", None).unwrap();
    assert_eq!(s.get_meta("empty").unwrap(), Some(Vec::new()));
    assert_eq!(s.get_meta("").unwrap(), Some(b"empty key".to_vec()));
}

/// `append_local_is_durable`.
pub fn append_local_is_durable<S: StoreFactory>() {
    let dir = tempfile::tempdir().unwrap();
    let expected = {
        let mut s = S::open(dir.path());
        let a = s.append_local(b"first").unwrap();
        let b = s.append_local(b"").unwrap();
        let expected = vec![local(a, b"first"), local(b, b"")];
        assert_eq!(s.unflushed().unwrap(), expected);
        expected
    };
    let s = S::open(dir.path());
    assert_eq!(s.load().unwrap(), StoredState { snapshot: None, log: expected.clone() });
    assert_eq!(s.unflushed().unwrap(), expected);
}

/// `log_ids_increase` (also across compaction and reopen).
pub fn log_ids_increase<S: StoreFactory>() {
    let dir = tempfile::tempdir().unwrap();
    let peer = DeviceId::random();
    let mut seen = Vec::new();
    {
        let mut s = S::open(dir.path());
        for i in 0..5u64 {
            seen.push(s.append_local(format!("local {i}").as_bytes()).unwrap());
            let remote = s.commit_remote(&segment(peer, i + 1, &format!("r{i}")), Some(b"remote")).unwrap();
            seen.push(remote.expect("payload was given"));
        }
        let last_local = seen[8];
        s.commit_flush(&flush(1, last_local)).unwrap();
        // Compaction deletes every entry, including the newest (a remote one): ids must not be reused.
        s.compact(b"snapshot").unwrap();
        assert!(s.load().unwrap().log.is_empty());
        seen.push(s.append_local(b"after compact").unwrap());
        seen.push(s.commit_remote(&segment(peer, 9, "r9"), Some(b"x")).unwrap().unwrap());
        s.commit_flush(&flush(2, *seen.last().unwrap())).unwrap();
        s.compact(b"snapshot 2").unwrap();
    }
    // And across reopening an emptied log.
    let mut s = S::open(dir.path());
    seen.push(s.append_local(b"after reopen").unwrap());
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "ids not strictly increasing: {seen:?}");
}

/// `commit_flush_marks_entries`.
pub fn commit_flush_marks_entries<S: StoreFactory>() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = S::open(dir.path());
    let peer = DeviceId::random();
    let l1 = s.append_local(b"1").unwrap();
    let l2 = s.append_local(b"2").unwrap();
    let r = s.commit_remote(&segment(peer, 1, "p1"), Some(b"remote")).unwrap().unwrap();
    let l3 = s.append_local(b"3").unwrap();
    let l4 = s.append_local(b"4").unwrap();

    s.commit_flush(&flush(1, l3)).unwrap();
    assert_eq!(ids(&s.unflushed().unwrap()), vec![l4]);
    assert_eq!(s.flushes().unwrap(), vec![flush(1, l3)]);
    let log = s.load().unwrap().log;
    let marks: Vec<(u64, Option<u64>)> = log.iter().map(|e| (e.id, e.flushed_seq)).collect();
    assert_eq!(marks, vec![(l1, Some(1)), (l2, Some(1)), (r, None), (l3, Some(1)), (l4, None)]);
    // Marking keeps the payloads.
    assert_eq!(log[3].payload, b"3");

    // A later flush marks only what is still unflushed; earlier marks stay.
    s.commit_flush(&flush(2, l4)).unwrap();
    assert!(s.unflushed().unwrap().is_empty());
    assert_eq!(s.flushes().unwrap(), vec![flush(1, l3), flush(2, l4)]);
    let marks: Vec<Option<u64>> = s.load().unwrap().log.iter().map(|e| e.flushed_seq).collect();
    assert_eq!(marks, vec![Some(1), Some(1), None, Some(1), Some(2)]);
}

/// `commit_flush_refuses_invalid`.
pub fn commit_flush_refuses_invalid<S: StoreFactory>() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = S::open(dir.path());
    let l1 = s.append_local(b"1").unwrap();
    s.commit_flush(&flush(1, l1)).unwrap();
    let l2 = s.append_local(b"2").unwrap();
    let before = (s.load().unwrap(), s.flushes().unwrap());

    // `upto` beyond the last log id, and a seq already recorded.
    for bad in [flush(2, l2 + 1), flush(3, u64::MAX), flush(1, l2)] {
        match s.commit_flush(&bad) {
            Err(StoreError::Invalid(msg)) => assert!(!msg.is_empty()),
            other => panic!("expected Invalid for {bad:?}, got {other:?}"),
        }
    }
    // Refused flushes change nothing.
    assert_eq!((s.load().unwrap(), s.flushes().unwrap()), before);
    assert_eq!(s.unflushed().unwrap(), vec![local(l2, b"2")]);
    s.commit_flush(&flush(2, l2)).unwrap();
    assert!(s.unflushed().unwrap().is_empty());
}

/// `commit_remote_records_cursor`.
pub fn commit_remote_records_cursor<S: StoreFactory>() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = S::open(dir.path());
    let (p, q) = (DeviceId::random(), DeviceId::random());
    let mine = s.append_local(b"mine").unwrap();

    let id = s.commit_remote(&segment(p, 1, "a"), Some(b"payload a")).unwrap().unwrap();
    assert!(id > mine);
    // A duplicate (conflict copy) records the cursor without touching the log.
    assert_eq!(s.commit_remote(&segment(p, 1, "a (copy)"), None).unwrap(), None, "no payload, no log entry");
    s.commit_remote(&segment(q, 4, "b"), Some(b"payload b")).unwrap();

    let log = s.load().unwrap().log;
    assert_eq!(log.len(), 3);
    assert_eq!(log[1], LogEntry { id, kind: LogKind::Remote, payload: b"payload a".to_vec(), flushed_seq: None });
    assert_eq!(ids(&s.unflushed().unwrap()), vec![mine], "remote entries are never unflushed");

    let by_name = |x: &AppliedSegment, y: &AppliedSegment| (x.device, &x.file_name).cmp(&(y.device, &y.file_name));
    let mut applied = s.applied().unwrap();
    applied.sort_by(by_name);
    let mut expected = vec![segment(p, 1, "a"), segment(p, 1, "a (copy)"), segment(q, 4, "b")];
    expected.sort_by(by_name);
    assert_eq!(applied, expected);

    // The same file again replaces its record.
    let mut again = segment(p, 1, "a");
    again.applied_at_ms = 42;
    s.commit_remote(&again, None).unwrap();
    let applied = s.applied().unwrap();
    assert_eq!(applied.len(), 3);
    assert!(applied.contains(&again));

    s.forget_peer(&p).unwrap();
    assert_eq!(s.applied().unwrap(), vec![segment(q, 4, "b")]);
    // Forgetting a peer does not rewrite history.
    assert_eq!(s.load().unwrap().log.len(), 3);
}

/// `replace_applied_prunes`.
pub fn replace_applied_prunes<S: StoreFactory>() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = S::open(dir.path());
    let (p, q) = (DeviceId::random(), DeviceId::random());
    for seq in 1..=4 {
        s.commit_remote(&segment(p, seq, &format!("{seq}.seg")), Some(format!("p{seq}").as_bytes())).unwrap();
    }
    s.commit_remote(&segment(q, 2, "2.seg"), Some(b"q2")).unwrap();
    let log = s.load().unwrap().log;

    let folded = AppliedSegment { seq_start: 1, seq_end: 3, ..segment(p, 3, "covered") };
    let drop: Vec<String> = ["1.seg", "2.seg", "3.seg", "never-applied.seg"].map(String::from).to_vec();
    s.replace_applied(&p, &drop, &folded).unwrap();
    let mut expected = vec![folded.clone(), segment(p, 4, "4.seg"), segment(q, 2, "2.seg")];
    let key = |a: &AppliedSegment| (a.device, a.seq_start, a.file_name.clone());
    expected.sort_by_key(key);
    let mut applied = s.applied().unwrap();
    applied.sort_by_key(key);
    assert_eq!(applied, expected, "only p's named records are dropped, and the folded one is kept");
    assert_eq!(s.load().unwrap().log, log, "the log is untouched");

    // The kept record replaces one of the same name.
    let wider = AppliedSegment { seq_end: 4, ..folded.clone() };
    s.replace_applied(&p, &["4.seg".to_owned()], &wider).unwrap();
    let mut applied = s.applied().unwrap();
    applied.sort_by_key(key);
    let mut expected = vec![wider, segment(q, 2, "2.seg")];
    expected.sort_by_key(key);
    assert_eq!(applied, expected);
    drop_and_reopen_sees::<S>(s, dir.path(), &expected);

    // A record of another device is refused and changes nothing.
    let mut s = S::open(dir.path());
    let err = s.replace_applied(&q, &["2.seg".to_owned()], &folded).unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert_eq!(s.applied().unwrap().len(), 2);
}

fn drop_and_reopen_sees<S: StoreFactory>(
    s: Box<dyn onefolder_core::Store>,
    dir: &std::path::Path,
    expected: &[AppliedSegment],
) {
    drop(s);
    let s = S::open(dir);
    let mut applied = s.applied().unwrap();
    applied.sort_by_key(|a| (a.device, a.seq_start, a.file_name.clone()));
    assert_eq!(applied, expected, "after reopening");
}

/// `forget_flushes_before_prunes`.
pub fn forget_flushes_before_prunes<S: StoreFactory>() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = S::open(dir.path());
    let mut records = Vec::new();
    for seq in [1, 2, 3, 5, 1 << 63, (1 << 63) + 5] {
        let id = s.append_local(format!("e{seq}").as_bytes()).unwrap();
        records.push(flush(seq, id));
        s.commit_flush(records.last().unwrap()).unwrap();
    }
    let log = s.load().unwrap().log;
    s.forget_flushes_before(3).unwrap();
    assert_eq!(s.flushes().unwrap(), records[2..].to_vec());
    assert_eq!(s.load().unwrap().log, log, "the log and its flushed marks are untouched");
    // Unsigned order: 2^63 is above every seq below it and below 2^63 + 5.
    s.forget_flushes_before((1 << 63) + 1).unwrap();
    assert_eq!(s.flushes().unwrap(), records[5..].to_vec());
    s.forget_flushes_before(0).unwrap();
    assert_eq!(s.flushes().unwrap(), records[5..].to_vec());
    drop(s);
    assert_eq!(S::open(dir.path()).flushes().unwrap(), records[5..].to_vec(), "after reopening");
}

/// `compact_keeps_unflushed`.
pub fn compact_keeps_unflushed<S: StoreFactory>() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = S::open(dir.path());
    let peer = DeviceId::random();
    let flushed = s.append_local(b"flushed").unwrap();
    s.commit_flush(&flush(1, flushed)).unwrap();
    s.commit_remote(&segment(peer, 1, "p"), Some(b"remote")).unwrap();
    let pending = local(s.append_local(b"pending").unwrap(), b"pending");

    s.compact(b"snapshot one").unwrap();
    assert_eq!(s.load().unwrap(), StoredState { snapshot: Some(b"snapshot one".to_vec()), log: vec![pending.clone()] });
    assert_eq!(s.unflushed().unwrap(), vec![pending.clone()]);
    // Cursors and flush history are not part of the log.
    assert_eq!(s.flushes().unwrap(), vec![flush(1, flushed)]);
    assert_eq!(s.applied().unwrap(), vec![segment(peer, 1, "p")]);

    // A second compaction replaces the snapshot.
    s.compact(b"snapshot two").unwrap();
    assert_eq!(s.load().unwrap(), StoredState { snapshot: Some(b"snapshot two".to_vec()), log: vec![pending] });
}

/// `reopen_sees_everything`.
pub fn reopen_sees_everything<S: StoreFactory>() {
    let dir = tempfile::tempdir().unwrap();
    let peer = DeviceId::random();
    let read = |s: &dyn onefolder_core::Store| {
        (
            s.get_meta("device_id").unwrap(),
            s.get_meta("setting/location").unwrap(),
            s.load().unwrap(),
            s.unflushed().unwrap(),
            s.flushes().unwrap(),
            s.applied().unwrap(),
        )
    };
    let before = {
        let mut s = S::open(dir.path());
        s.set_meta("device_id", Some(b"me")).unwrap();
        s.set_meta("setting/location", Some(b"/home/me/Pictures")).unwrap();
        let a = s.append_local(b"a").unwrap();
        s.commit_flush(&flush(1, a)).unwrap();
        s.commit_remote(&segment(peer, 3, "p3"), Some(b"r")).unwrap();
        s.compact(b"snap").unwrap();
        s.append_local(b"b").unwrap();
        s.commit_remote(&segment(peer, 4, "p4"), Some(b"r4")).unwrap();
        s.append_local(b"c").unwrap();
        read(s.as_ref())
    };
    assert_eq!(before.2.log.len(), 3);
    assert_eq!(before.2.snapshot.as_deref(), Some(&b"snap"[..]));
    let s = S::open(dir.path());
    assert_eq!(read(s.as_ref()), before);
}

/// `load_with_lends_what_load_returns`.
pub fn load_with_lends_what_load_returns<S: StoreFactory>() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = S::open(dir.path());
    let lent = |s: &dyn onefolder_core::Store| {
        let mut calls = Vec::new();
        s.load_with(&mut |snapshot, log| {
            calls.push(StoredState { snapshot: snapshot.map(<[u8]>::to_vec), log: log.to_vec() })
        })
        .unwrap();
        assert_eq!(calls.len(), 1, "load_with calls its function exactly once");
        calls.pop().unwrap()
    };
    // No snapshot yet, then an empty one, then a large one (LMDB keeps it in overflow pages).
    assert_eq!(lent(s.as_ref()), StoredState { snapshot: None, log: vec![] });
    let a = s.append_local(b"a").unwrap();
    assert_eq!(lent(s.as_ref()), s.load().unwrap());
    s.commit_flush(&flush(1, a)).unwrap();
    s.compact(b"").unwrap();
    assert_eq!(lent(s.as_ref()), StoredState { snapshot: Some(Vec::new()), log: vec![] });
    let large: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    s.compact(&large).unwrap();
    s.append_local(b"b").unwrap();
    s.commit_remote(&segment(DeviceId::random(), 1, "p"), Some(b"remote")).unwrap();
    let loaded = s.load().unwrap();
    assert_eq!(loaded.snapshot.as_deref(), Some(&large[..]));
    assert_eq!(loaded.log.len(), 2);
    assert_eq!(lent(s.as_ref()), loaded);
    drop(s);
    let s = S::open(dir.path());
    assert_eq!(lent(s.as_ref()), loaded, "after reopening");
}

/// `u64_values_round_trip_and_order_as_unsigned`.
pub fn u64_values_round_trip_and_order_as_unsigned<S: StoreFactory>() {
    let dir = tempfile::tempdir().unwrap();
    let peer = DeviceId::random();
    let big = 1u64 << 63;
    {
        let mut s = S::open(dir.path());
        let id = s.append_local(b"x").unwrap();
        let extreme = |seq: u64| FlushRecord {
            seq,
            upto: id,
            file_name: format!("f{seq}"),
            checksum: u32::MAX,
            size: u64::MAX - seq,
            at_ms: i64::MIN,
        };
        s.commit_flush(&extreme(u64::MAX)).unwrap();
        s.commit_flush(&extreme(big)).unwrap();
        s.commit_flush(&extreme(5)).unwrap();
        let seg = |seq_start: u64, name: &str| AppliedSegment {
            device: peer,
            file_name: name.to_owned(),
            seq_start,
            seq_end: u64::MAX,
            checksum: u32::MAX,
            size: u64::MAX,
            applied_at_ms: -1,
        };
        s.commit_remote(&seg(u64::MAX, "z"), None).unwrap();
        s.commit_remote(&seg(3, "y"), None).unwrap();
        s.commit_remote(&seg(big, "x"), None).unwrap();
    }
    let s = S::open(dir.path());
    assert_eq!(s.load().unwrap().log[0].flushed_seq, Some(u64::MAX), "first flush marked the entry");
    let flushes = s.flushes().unwrap();
    assert_eq!(flushes.iter().map(|f| f.seq).collect::<Vec<_>>(), vec![5, big, u64::MAX]);
    assert!(flushes.iter().all(|f| f.checksum == u32::MAX && f.size == u64::MAX - f.seq && f.at_ms == i64::MIN));
    let applied = s.applied().unwrap();
    assert_eq!(applied.iter().map(|a| a.seq_start).collect::<Vec<_>>(), vec![3, big, u64::MAX]);
    assert!(applied.iter().all(|a| a.seq_end == u64::MAX && a.size == u64::MAX && a.checksum == u32::MAX));
    assert!(applied.iter().all(|a| a.applied_at_ms == -1));
}

/// `second_open_is_locked_until_the_first_is_dropped`.
pub fn second_open_is_locked_until_the_first_is_dropped<S: StoreFactory>() {
    let dir = tempfile::tempdir().unwrap();
    // A location that does not exist yet is created.
    let state = dir.path().join("nested").join("state");
    let mut first = S::open(&state);
    first.set_meta("k", Some(b"v")).unwrap();
    match S::try_open(&state) {
        Err(StoreError::Locked { path }) => assert_eq!(path, state.display().to_string()),
        Err(other) => panic!("expected Locked, got {other:?}"),
        Ok(_) => panic!("expected Locked, got a second store"),
    }
    // The refused open did not disturb the owner.
    assert_eq!(first.get_meta("k").unwrap(), Some(b"v".to_vec()));
    drop(first);
    let second = S::open(&state);
    assert_eq!(second.get_meta("k").unwrap(), Some(b"v".to_vec()));
}

/// Every store check as a test for the factory `S` in scope; expand it per adapter with
/// [`for_each_store!`](crate::for_each_store).
#[macro_export]
macro_rules! store_conformance {
    () => {
            $crate::store_conformance!(@tests S;
                meta_round_trip, append_local_is_durable, log_ids_increase, commit_flush_marks_entries,
                commit_flush_refuses_invalid, commit_remote_records_cursor, compact_keeps_unflushed,
                replace_applied_prunes, forget_flushes_before_prunes,
                reopen_sees_everything, load_with_lends_what_load_returns,
                u64_values_round_trip_and_order_as_unsigned, second_open_is_locked_until_the_first_is_dropped,
            );
    };
    (@tests $s:ty; $($test:ident),* $(,)?) => {
        $( #[test] fn $test() { $crate::store_checks::$test::<$s>(); } )*
    };
}
