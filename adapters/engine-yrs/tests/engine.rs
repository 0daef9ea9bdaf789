//! The yrs-specific checks (set and dependency semantics, garbage inputs, change size, value
//! round trips, validation, fuzz regressions). The `# Behavior` bullets of
//! `onefolder_core::Engine` are checked by the conformance suite (`engine_checks`).

use std::collections::BTreeSet;

use onefolder_core::{Engine, EngineError, Op, Record, Value};
use onefolder_engine_yrs::YrsEngine;
use proptest::prelude::*;

const FILES: &str = "files";
const TAGS: &str = "tags";
/// A 32-hex-digit id like the model's hashed ids.
const FILE_ID: &str = "0123456789abcdef0123456789abcdef";

fn write(e: &mut YrsEngine, ops: &[Op]) {
    e.write(ops).expect("write");
}

fn take(e: &mut YrsEngine) -> Vec<u8> {
    e.take_local_changes().expect("take").expect("some local changes")
}

fn apply(e: &mut YrsEngine, bytes: &[u8]) {
    e.apply_remote(bytes).expect("apply");
}

fn rec(e: &YrsEngine, collection: &str, id: &str) -> Option<Record> {
    e.record(collection, id).expect("record")
}

fn set(members: &[&str]) -> Value {
    Value::Set(members.iter().map(|m| (*m).to_owned()).collect::<BTreeSet<_>>())
}

/// Sends each engine's local changes to the other.
fn exchange(a: &mut YrsEngine, b: &mut YrsEngine) {
    let from_a = a.take_local_changes().expect("take a");
    let from_b = b.take_local_changes().expect("take b");
    if let Some(bytes) = from_a {
        apply(b, &bytes);
    }
    if let Some(bytes) = from_b {
        apply(a, &bytes);
    }
}

/// Two engines that both hold `files/FILE_ID` with `name` and a `tags` set holding `t1`.
fn two_with_file() -> (YrsEngine, YrsEngine) {
    let mut a = YrsEngine::new();
    let mut b = YrsEngine::new();
    write(
        &mut a,
        &[
            Op::create(FILES, FILE_ID),
            Op::put(FILES, FILE_ID, "name", "cat.jpg"),
            Op::set_add(FILES, FILE_ID, "tags", "t1"),
        ],
    );
    exchange(&mut a, &mut b);
    assert_eq!(rec(&a, FILES, FILE_ID), rec(&b, FILES, FILE_ID));
    (a, b)
}

/// What two replicas must agree on once they hold the same changes.
fn view(e: &YrsEngine) -> (Vec<u8>, bool, onefolder_core::Collection, onefolder_core::Collection) {
    (e.version(), e.has_pending(), e.collection(FILES).expect("files"), e.collection(TAGS).expect("tags"))
}

/// Everything one replica can observe, snapshot bytes included, for "state unchanged" checks.
fn observe(e: &YrsEngine) -> (Vec<u8>, Vec<u8>, bool, onefolder_core::Collection, onefolder_core::Collection) {
    (
        e.snapshot().expect("snapshot"),
        e.version(),
        e.has_pending(),
        e.collection(FILES).expect("files"),
        e.collection(TAGS).expect("tags"),
    )
}

#[test]
fn emptied_set_reads_as_absent() {
    // As on automerge: a set is its members, so an emptied one is no field at all.
    let (mut a, mut b) = two_with_file();
    assert_eq!(a.engine_id(), "yrs");
    write(&mut a, &[Op::set_remove(FILES, FILE_ID, "tags", "t1")]);
    assert_eq!(rec(&a, FILES, FILE_ID).unwrap().get("tags"), None);
    exchange(&mut a, &mut b);
    assert_eq!(rec(&b, FILES, FILE_ID).unwrap().get("tags"), None);
}

#[test]
fn local_changes_integrate_without_the_remote_changes_they_saw() {
    let mut a = YrsEngine::new();
    let mut b = YrsEngine::new();
    write(&mut b, &[Op::create(TAGS, "from-b")]);
    apply(&mut a, &take(&mut b));
    write(&mut a, &[Op::create(TAGS, "from-a"), Op::put(TAGS, "from-a", "name", "A")]);
    // yrs tracks dependencies per item: A's change does not wait for B's.
    let mut c = YrsEngine::new();
    apply(&mut c, &take(&mut a));
    assert!(!c.has_pending());
    assert_eq!(c.ids(TAGS).unwrap(), ["from-a"]);
    assert_eq!(rec(&c, TAGS, "from-a").unwrap().get("name"), Some(&Value::from("A")));
}

#[test]
fn snapshot_with_a_hole_converges() {
    let mut a = YrsEngine::new();
    write(&mut a, &[Op::create(FILES, "f"), Op::put(FILES, "f", "name", "x")]);
    let c1 = take(&mut a);
    write(&mut a, &[Op::put(FILES, "f", "name", "y"), Op::put(FILES, "f", "size", 10)]);
    let c2 = take(&mut a);
    write(&mut a, &[Op::set_add(FILES, "f", "tags", "t")]);
    let c3 = take(&mut a);
    write(&mut a, &[Op::set_remove(FILES, "f", "tags", "t"), Op::set_add(FILES, "f", "tags", "u")]);
    let c4 = take(&mut a);
    let mut in_order = YrsEngine::new();
    for c in [&c1, &c2, &c3, &c4] {
        apply(&mut in_order, c);
    }
    // yrs integrates a block with no missing dependency at once, behind a hole for the
    // missing clocks; a snapshot taken then still converges once the hole is filled.
    let mut holed = YrsEngine::new();
    apply(&mut holed, &c3);
    let mut restored = YrsEngine::new();
    restored.load_snapshot(&holed.snapshot().unwrap()).unwrap();
    for c in [&c4, &c1, &c2] {
        apply(&mut holed, c);
        apply(&mut restored, c);
    }
    assert_eq!(view(&holed), view(&in_order));
    assert_eq!(view(&restored), view(&in_order));
}

#[test]
fn delete_clears_sets_and_clear_empties_a_set() {
    let mut e = YrsEngine::new();
    write(
        &mut e,
        &[Op::create(FILES, "f"), Op::set_add(FILES, "f", "tags", "a"), Op::set_add(FILES, "f", "tags", "b")],
    );
    write(&mut e, &[Op::delete(FILES, "f"), Op::create(FILES, "f"), Op::set_add(FILES, "f", "tags", "c")]);
    assert_eq!(rec(&e, FILES, "f").unwrap().get("tags"), Some(&set(&["c"])));
    write(&mut e, &[Op::clear(FILES, "f", "tags"), Op::set_add(FILES, "f", "tags", "d")]);
    assert_eq!(rec(&e, FILES, "f").unwrap().get("tags"), Some(&set(&["d"])));
    // A scalar Put over a set drops its members too.
    write(&mut e, &[Op::put(FILES, "f", "tags", 1), Op::set_add(FILES, "f", "tags", "e")]);
    assert_eq!(rec(&e, FILES, "f").unwrap().get("tags"), Some(&set(&["e"])));
}

#[test]
fn pending_delete_waits_for_its_item() {
    let mut a = YrsEngine::new();
    write(&mut a, &[Op::create(FILES, "f"), Op::set_add(FILES, "f", "tags", "t")]);
    let c1 = take(&mut a);
    write(&mut a, &[Op::set_remove(FILES, "f", "tags", "t")]);
    let c2 = take(&mut a);
    let mut b = YrsEngine::new();
    apply(&mut b, &c2);
    assert!(b.has_pending(), "a delete of an unknown item waits");
    apply(&mut b, &c1);
    assert!(!b.has_pending());
    assert_eq!(rec(&b, FILES, "f").unwrap().get("tags"), None);
}

/// Inputs that must be rejected (each is `Corrupt`, never a panic).
fn garbage_cases() -> Vec<Vec<u8>> {
    let mut deep = vec![1, 1, 1, 0, 8, 1, 1, b'm', 1];
    for _ in 0..100_000 {
        deep.extend_from_slice(&[117, 1]);
    }
    deep.extend_from_slice(&[126, 0]);
    vec![
        vec![],
        vec![0],
        vec![0xff],
        // 2^28 clients in 4 bytes: yrs alone touches ~0.5 GiB for this.
        vec![0xff, 0xff, 0xff, 0x7f],
        vec![0xff, 0xff, 0xff, 0xff, 0x0f],
        // One Any item holding a map that declares 2^24 entries.
        vec![1, 1, 1, 0, 8, 1, 1, b'm', 1, 118, 0xff, 0xff, 0xff, 0x07],
        // 100 000 nested arrays: yrs alone overflows the stack and aborts.
        deep,
        b"{\"not\": \"an update\"}".to_vec(),
        b"OFSEG\x01yrs\0\0\0".to_vec(),
    ]
}

#[test]
fn apply_garbage_is_corrupt() {
    let (mut a, _) = two_with_file();
    a.take_local_changes().unwrap();
    let before = observe(&a);
    for bytes in garbage_cases() {
        let head = &bytes[..bytes.len().min(16)];
        match a.apply_remote(&bytes) {
            Err(EngineError::Corrupt(msg)) => println!("{head:02x?}…: {msg}"),
            other => panic!("{head:02x?}…: expected Corrupt, got {other:?}"),
        }
        assert!(matches!(a.load_snapshot(&bytes), Err(EngineError::Corrupt(_))));
        assert!(matches!(a.merge_changes(&[&bytes]), Err(EngineError::Corrupt(_))));
        assert_eq!(observe(&a), before, "state unchanged");
    }
    assert_eq!(a.take_local_changes().unwrap(), None);
}

/// A few valid changes to mutate.
fn sample_changes() -> Vec<Vec<u8>> {
    let mut e = YrsEngine::with_client_id(77);
    let mut out = Vec::new();
    write(
        &mut e,
        &[Op::create(FILES, "f"), Op::put(FILES, "f", "name", "a.png"), Op::put(FILES, "f", "size", 1_700_000_000_000)],
    );
    out.push(take(&mut e));
    write(&mut e, &[Op::set_add(FILES, "f", "tags", "t"), Op::put(FILES, "f", "ratio", 0.5)]);
    out.push(take(&mut e));
    write(&mut e, &[Op::set_remove(FILES, "f", "tags", "t"), Op::put(FILES, "f", "blob", Value::Bytes(vec![1, 2]))]);
    out.push(take(&mut e));
    write(&mut e, &[Op::delete(FILES, "f")]);
    out.push(take(&mut e));
    out.push(e.snapshot().unwrap());
    out
}

fn check_garbage(target: &mut YrsEngine, bytes: &[u8]) -> Result<(), TestCaseError> {
    let before = observe(target);
    match target.apply_remote(bytes) {
        Ok(()) => {}
        Err(EngineError::Corrupt(_)) => prop_assert_eq!(observe(target), before, "state changed by a rejected input"),
        Err(other) => prop_assert!(false, "expected Ok or Corrupt, got {:?}", other),
    }
    prop_assert_eq!(target.take_local_changes().unwrap(), None);
    Ok(())
}

/// Proptest settings: no regression files (integration tests have no `lib.rs` to put them by).
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn apply_garbage_is_corrupt_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let (mut a, _) = two_with_file();
        a.take_local_changes().unwrap();
        check_garbage(&mut a, &bytes)?;
    }

    #[test]
    fn apply_garbage_is_corrupt_mutated_changes(
        which in 0usize..5,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
    ) {
        let mut bytes = sample_changes().swap_remove(which);
        for (at, byte, kind) in edits {
            if bytes.is_empty() {
                break;
            }
            let i = at.index(bytes.len());
            match kind {
                0 => bytes[i] = byte,
                1 => bytes.truncate(i),
                _ => bytes.insert(i, byte),
            }
        }
        let (mut a, _) = two_with_file();
        a.take_local_changes().unwrap();
        check_garbage(&mut a, &bytes)?;
    }
}

#[test]
fn one_set_add_is_small() {
    let mut a = YrsEngine::new();
    write(&mut a, &[Op::create(FILES, FILE_ID), Op::put(FILES, FILE_ID, "name", "cat.jpg")]);
    a.take_local_changes().unwrap();

    write(&mut a, &[Op::set_add(FILES, FILE_ID, "tags", "fedcba9876543210fedcba9876543210")]);
    let first = take(&mut a);
    write(&mut a, &[Op::set_add(FILES, FILE_ID, "tags", "00112233445566778899aabbccddeeff")]);
    let second = take(&mut a);
    println!("first tag of a file (with the set marker): {} bytes", first.len());
    println!("another tag of the same file: {} bytes", second.len());
    assert!(first.len() < 180, "{} bytes", first.len());
    assert!(second.len() < 180, "{} bytes", second.len());
}

/// Values whose kind and bits must survive a Put, locally, through a change and a snapshot.
fn all_kinds() -> Vec<Value> {
    vec![
        Value::Null,
        Value::Bool(true),
        Value::Bool(false),
        Value::Int(0),
        Value::Int(-1),
        Value::Int(i64::from(i32::MAX) + 1),
        Value::Int(1_700_000_000_123),
        Value::Int(1 << 40),
        Value::Int(i64::MAX),
        Value::Int(i64::MIN),
        Value::Int(i64::MAX - 1),
        Value::Float(1.5),
        Value::Float(3.0),
        Value::Float(0.0),
        Value::Float(-0.0),
        Value::Float(1e18),
        Value::Float(9_223_372_036_854_775_808.0),
        Value::Float(1e300),
        Value::Float(f64::NAN),
        Value::Float(f64::INFINITY),
        Value::Float(f64::NEG_INFINITY),
        Value::Float(0.1),
        Value::Str(String::new()),
        Value::Str("héllo/wörld".into()),
        Value::Bytes(vec![]),
        Value::Bytes(vec![0, 159, 255]),
    ]
}

/// Equality that tells 0.0 from -0.0 and accepts NaN.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}

/// Puts `values` as fields v0, v1, … and returns what a local read, a remote replica and a
/// snapshot-loaded replica see.
fn put_and_read_everywhere(values: &[Value]) -> [Record; 3] {
    let mut a = YrsEngine::new();
    let mut ops = vec![Op::create(FILES, "f")];
    ops.extend(values.iter().enumerate().map(|(i, v)| Op::put(FILES, "f", &format!("v{i}"), v.clone())));
    write(&mut a, &ops);
    let mut remote = YrsEngine::new();
    apply(&mut remote, &take(&mut a));
    let mut loaded = YrsEngine::new();
    loaded.load_snapshot(&remote.snapshot().unwrap()).unwrap();
    [rec(&a, FILES, "f").unwrap(), rec(&remote, FILES, "f").unwrap(), rec(&loaded, FILES, "f").unwrap()]
}

#[test]
fn put_each_value_kind_round_trips() {
    let values = all_kinds();
    for (where_, record) in ["local", "remote", "snapshot"].iter().zip(put_and_read_everywhere(&values)) {
        for (i, v) in values.iter().enumerate() {
            let got = record.get(&format!("v{i}")).unwrap_or_else(|| panic!("{where_}: v{i} missing"));
            assert!(same(got, v), "{where_}: put {v:?}, read {got:?}");
        }
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn numbers_keep_their_kind(i in any::<i64>(), f in any::<f64>()) {
        let values = [Value::Int(i), Value::Float(f)];
        for record in put_and_read_everywhere(&values) {
            prop_assert!(same(&record["v0"], &values[0]), "{:?} read as {:?}", values[0], record["v0"]);
            prop_assert!(same(&record["v1"], &values[1]), "{:?} read as {:?}", values[1], record["v1"]);
        }
    }
}

#[test]
fn put_of_the_same_value_writes_nothing_but_int_and_float_differ() {
    let mut a = YrsEngine::new();
    write(&mut a, &[Op::create(FILES, "f"), Op::put(FILES, "f", "n", 1)]);
    a.take_local_changes().unwrap();
    write(&mut a, &[Op::put(FILES, "f", "n", 1), Op::create(FILES, "f")]);
    assert_eq!(a.take_local_changes().unwrap(), None);
    write(&mut a, &[Op::put(FILES, "f", "n", 1.0)]);
    assert!(a.take_local_changes().unwrap().is_some(), "1 and 1.0 are different values");
    assert_eq!(rec(&a, FILES, "f").unwrap().get("n"), Some(&Value::Float(1.0)));
}

#[test]
fn invalid_ops_are_rejected_and_batches_are_atomic() {
    let mut a = YrsEngine::new();
    let invalid = [
        Op::put(FILES, "f", "tags", set(&["x"])),
        Op::create("", "f"),
        Op::create(FILES, ""),
        Op::put(FILES, "f", "", 1),
        Op::create("files/x", "f"),
        Op::create(FILES, "a/b"),
        Op::set_add(FILES, "f", "t/x", "m"),
        Op::clear(FILES, "f", ""),
        Op::set_remove(FILES, "", "tags", "m"),
        Op::delete("", "f"),
    ];
    for op in invalid {
        let batch = [Op::create(FILES, "f"), Op::put(FILES, "f", "name", "x"), op.clone()];
        match a.write(&batch) {
            Err(EngineError::InvalidOp(msg)) => println!("{op:?}: {msg}"),
            other => panic!("{op:?}: expected InvalidOp, got {other:?}"),
        }
        assert_eq!(rec(&a, FILES, "f"), None, "nothing of the batch applied");
        assert_eq!(a.take_local_changes().unwrap(), None);
    }
    // Set members may hold the separator; an empty batch is fine.
    write(
        &mut a,
        &[Op::create(FILES, "f"), Op::set_add(FILES, "f", "tags", "a/b"), Op::set_add(FILES, "f", "tags", "")],
    );
    assert_eq!(rec(&a, FILES, "f").unwrap().get("tags"), Some(&set(&["", "a/b"])));
    a.take_local_changes().unwrap();
    write(&mut a, &[]);
    assert_eq!(a.take_local_changes().unwrap(), None);
}

#[test]
fn every_engine_has_its_own_client_id() {
    let a = YrsEngine::new();
    let b = YrsEngine::default();
    assert_ne!(a.client_id(), b.client_id());
    assert!(a.client_id() < 1 << 53);
    let empty = a.new_empty();
    assert_eq!(empty.engine_id(), "yrs");
    assert_eq!(empty.version(), YrsEngine::new().version(), "an empty engine's version is the empty state vector");
    assert!(empty.collection(FILES).unwrap().is_empty());
    // Two replicas of one history written by different processes do not collide.
    let mut first = YrsEngine::new();
    write(&mut first, &[Op::create(TAGS, "x")]);
    let mut restarted = YrsEngine::new();
    restarted.load_snapshot(&first.snapshot().unwrap()).unwrap();
    write(&mut restarted, &[Op::put(TAGS, "x", "name", "after restart")]);
    let change = take(&mut restarted);
    apply(&mut first, &change);
    assert!(!first.has_pending());
    assert_eq!(rec(&first, TAGS, "x").unwrap().get("name"), Some(&Value::from("after restart")));
}

#[test]
fn version_ignores_apply_order() {
    let mut writers: Vec<YrsEngine> = (0..5).map(|_| YrsEngine::new()).collect();
    let changes: Vec<Vec<u8>> = writers
        .iter_mut()
        .enumerate()
        .map(|(i, w)| {
            write(w, &[Op::create(TAGS, &format!("t{i}"))]);
            take(w)
        })
        .collect();
    let mut forward = YrsEngine::new();
    let mut backward = YrsEngine::new();
    for c in &changes {
        apply(&mut forward, c);
    }
    for c in changes.iter().rev() {
        apply(&mut backward, c);
    }
    assert_eq!(forward.version(), backward.version());
    assert_ne!(forward.version(), YrsEngine::new().version());
}

#[test]
fn semantically_invalid_update_is_corrupt_and_may_apply_partly() {
    // Client 5, two blocks from clock 0: (1) `true` under key "k" of root map "m" — i.e. record
    // "k" of collection "m"; (2) a value whose parent is block 1, which is not a type.
    let bytes = [
        1, 2, 5, 0, // one client section: 2 blocks of client 5 from clock 0
        0x28, 1, 1, b'm', 1, b'k', 1, 120, // Any + parent sub, parent root "m", key "k", [true]
        0x28, 0, 5, 0, 1, b'z', 1, 120, // Any + parent sub, parent id (5, 0), key "z", [true]
        0,   // empty delete set
    ];
    let mut e = YrsEngine::new();
    assert!(matches!(e.apply_remote(&bytes), Err(EngineError::Corrupt(_))));
    // The documented gap: yrs integrated block 1 before it failed on block 2. The replica must
    // rebuild the engine from its store after such an error.
    assert!(rec(&e, "m", "k").is_some());
    assert_eq!(e.take_local_changes().unwrap(), None);
}

/// Found by `cargo fuzz` (engine_yrs_apply): 14 bytes that decode, park a block as pending,
/// and then made every later snapshot panic inside yrs. Now refused before they touch the doc.
#[test]
fn fuzz_crash_pending_block_that_does_not_reencode() {
    let input = [0x01, 0x01, 0x52, 0x52, 0x52, 0x52, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00];
    let mut e = YrsEngine::new();
    e.write(&[Op::create("tags", "t"), Op::put("tags", "t", "name", "seed")]).unwrap();
    let before = e.snapshot().unwrap();
    let err = e.apply_remote(&input).unwrap_err();
    assert!(matches!(err, EngineError::Corrupt(_)), "{err:?}");
    assert!(!e.has_pending());
    assert_eq!(e.snapshot().unwrap(), before);
}

/// Found by `cargo fuzz` (engine_yrs_apply): 12 bytes that pass the re-encoding check but
/// leave a pending part behind that does not re-encode. Refused at apply time; the engine
/// never panics afterwards.
#[test]
fn fuzz_crash_pending_part_that_does_not_reencode() {
    let input = [0x01, 0x01, 0x42, 0x01, 0x52, 0x01, 0x01, 0x00, 0x00, 0x01, 0x41, 0x00];
    let mut e = YrsEngine::new();
    e.write(&[Op::create("tags", "t"), Op::put("tags", "t", "name", "seed")]).unwrap();
    let err = e.apply_remote(&input).unwrap_err();
    assert!(matches!(err, EngineError::Corrupt(_)), "{err:?}");
    // The engine may hold part of it (the Replica rebuilds from its store), but never panics.
    let _ = e.snapshot();
    assert_eq!(e.record("tags", "t").unwrap().unwrap()["name"], Value::from("seed"));
}

/// Found by `cargo fuzz` (engine_yrs_apply): an accepted change after which the document
/// encoded to a snapshot that does not load. `snapshot` now refuses instead of handing out
/// bytes a device could not reopen from.
#[test]
fn fuzz_crash_snapshot_that_does_not_reload() {
    let input =
        [1, 1, 82, 0, 34, 1, 4, 0, 0, 0, 0, 0, 0, 0, 1, 82, 0, 34, 95, 109, 151, 95, 109, 151, 251, 0, 0, 1, 0, 109];
    let mut e = YrsEngine::new();
    e.write(&[Op::create("tags", "t"), Op::put("tags", "t", "name", "seed")]).unwrap();
    e.take_local_changes().unwrap();
    if e.apply_remote(&input).is_ok() {
        match e.snapshot() {
            Ok(snapshot) => YrsEngine::new().load_snapshot(&snapshot).unwrap(),
            Err(err) => assert!(matches!(err, EngineError::Corrupt(_)), "{err:?}"),
        }
    }
    assert_eq!(e.record("tags", "t").unwrap().unwrap()["name"], Value::from("seed"));
}
