//! Checks of the [`Store`](onefolder_core::Store) contract, one per `# Behavior` bullet.

use onefolder_core::{AppliedSegment, DeviceId, FlushRecord, LogKind};

use crate::StoreFactory;

fn flush(seq: u64, upto: u64) -> FlushRecord {
    FlushRecord { seq, upto, file_name: format!("{seq:020}.seg"), checksum: 7, size: 99, at_ms: 1 }
}

fn applied(device: DeviceId, seq: u64) -> AppliedSegment {
    AppliedSegment {
        device,
        file_name: format!("{seq:020}.seg"),
        seq_start: seq,
        seq_end: seq,
        checksum: u32::MAX - seq as u32,
        size: 100 + seq,
        applied_at_ms: 5,
    }
}

/// `meta_round_trip`.
pub fn meta_round_trip<S: StoreFactory>() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = S::open(dir.path());
    assert_eq!(s.get_meta("missing").unwrap(), None);
    s.set_meta("k", Some(b"v1")).unwrap();
    s.set_meta("k", Some(b"v2")).unwrap();
    s.set_meta("empty", Some(b"")).unwrap();
    assert_eq!(s.get_meta("k").unwrap().as_deref(), Some(&b"v2"[..]));
    assert_eq!(s.get_meta("empty").unwrap().as_deref(), Some(&b""[..]));
    s.set_meta("k", None).unwrap();
    assert_eq!(s.get_meta("k").unwrap(), None);
}

/// `append_local_is_durable`.
pub fn append_local_is_durable<S: StoreFactory>() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let mut s = S::open(dir.path());
        let id = s.append_local(b"change one").unwrap();
        assert_eq!(s.unflushed().unwrap().len(), 1);
        id
    };
    let s = S::open(dir.path());
    let unflushed = s.unflushed().unwrap();
    assert_eq!(unflushed.len(), 1);
    assert_eq!(
        (unflushed[0].id, unflushed[0].kind, unflushed[0].payload.as_slice()),
        (id, LogKind::Local, &b"change one"[..])
    );
    assert_eq!(s.load().unwrap().log.len(), 1);
}

/// `log_ids_increase` (also across compaction).
pub fn log_ids_increase<S: StoreFactory>() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = S::open(dir.path());
    let a = s.append_local(b"a").unwrap();
    let b = s.commit_remote(&applied(DeviceId::random(), 1), Some(b"r")).unwrap().unwrap();
    s.commit_flush(&flush(1, a)).unwrap();
    s.compact(b"snap").unwrap();
    let c = s.append_local(b"c").unwrap();
    assert!(a < b && b < c, "{a} {b} {c}");
}

/// `commit_flush_marks_entries`.
pub fn commit_flush_marks_entries<S: StoreFactory>() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = S::open(dir.path());
    let ids: Vec<u64> = (0..4).map(|i| s.append_local(format!("c{i}").as_bytes()).unwrap()).collect();
    s.commit_flush(&flush(1, ids[1])).unwrap();
    let left: Vec<u64> = s.unflushed().unwrap().iter().map(|e| e.id).collect();
    assert_eq!(left, ids[2..].to_vec());
    assert_eq!(s.flushes().unwrap(), vec![flush(1, ids[1])]);
    let flushed = s.load().unwrap().log.into_iter().find(|e| e.id == ids[0]).unwrap();
    assert_eq!(flushed.flushed_seq, Some(1));
}

/// `commit_remote_records_cursor`.
pub fn commit_remote_records_cursor<S: StoreFactory>() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = S::open(dir.path());
    let peer = DeviceId::random();
    let id = s.commit_remote(&applied(peer, 1), Some(b"payload")).unwrap();
    assert!(id.is_some());
    let copy = AppliedSegment { file_name: "copy.seg".into(), ..applied(peer, 1) };
    assert_eq!(s.commit_remote(&copy, None).unwrap(), None, "no payload, no log entry");
    let mut all = s.applied().unwrap();
    all.sort_by(|a, b| a.file_name.cmp(&b.file_name));
    assert_eq!(all, vec![applied(peer, 1), copy]);
    let log = s.load().unwrap().log;
    assert_eq!(log.len(), 1);
    assert_eq!((log[0].kind, log[0].payload.as_slice()), (LogKind::Remote, &b"payload"[..]));
    s.forget_peer(&peer).unwrap();
    assert!(s.applied().unwrap().is_empty());
}

/// `compact_keeps_unflushed`.
pub fn compact_keeps_unflushed<S: StoreFactory>() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = S::open(dir.path());
    let flushed = s.append_local(b"flushed").unwrap();
    s.commit_flush(&flush(1, flushed)).unwrap();
    s.commit_remote(&applied(DeviceId::random(), 1), Some(b"remote")).unwrap();
    let pending = s.append_local(b"pending").unwrap();
    s.compact(b"snapshot v1").unwrap();
    let state = s.load().unwrap();
    assert_eq!(state.snapshot.as_deref(), Some(&b"snapshot v1"[..]));
    let ids: Vec<u64> = state.log.iter().map(|e| e.id).collect();
    assert_eq!(ids, vec![pending]);
    s.compact(b"snapshot v2").unwrap();
    assert_eq!(s.load().unwrap().snapshot.as_deref(), Some(&b"snapshot v2"[..]));
    assert_eq!(s.unflushed().unwrap().len(), 1);
}

/// `reopen_sees_everything`.
pub fn reopen_sees_everything<S: StoreFactory>() {
    let dir = tempfile::tempdir().unwrap();
    let peer = DeviceId::random();
    let snapshot = {
        let mut s = S::open(dir.path());
        s.set_meta("device_id", Some(b"abc")).unwrap();
        let a = s.append_local(b"a").unwrap();
        s.commit_flush(&flush(1, a)).unwrap();
        s.commit_remote(&applied(peer, 3), Some(b"r")).unwrap();
        s.compact(b"snap").unwrap();
        s.append_local(b"b").unwrap();
        (s.load().unwrap(), s.flushes().unwrap(), s.applied().unwrap())
    };
    let s = S::open(dir.path());
    assert_eq!(s.get_meta("device_id").unwrap().as_deref(), Some(&b"abc"[..]));
    assert_eq!((s.load().unwrap(), s.flushes().unwrap(), s.applied().unwrap()), snapshot);
}

/// Instantiates every store check for one store factory.
#[macro_export]
macro_rules! store_conformance {
    ($name:ident, $store:ty) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $crate::store_conformance!(@tests $store;
                meta_round_trip, append_local_is_durable, log_ids_increase, commit_flush_marks_entries,
                commit_remote_records_cursor, compact_keeps_unflushed, reopen_sees_everything,
            );
        }
    };
    (@tests $s:ty; $($test:ident),* $(,)?) => {
        $( #[test] fn $test() { $crate::store_checks::$test::<$s>(); } )*
    };
}
