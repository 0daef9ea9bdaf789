//! The automerge-specific checks (id packing, set and dependency semantics, change size, value
//! round trips, validation, untrusted bytes). The `# Behavior` bullets of
//! `onefolder_core::Engine` are checked by the conformance suite (`engine_checks`).

use std::collections::BTreeSet;

use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, Change, ExpandedChange, ObjType, ROOT, ScalarValue};
use onefolder_core::segment::{self, Expect, SegmentKind};
use onefolder_core::{Collection, DeviceId, Engine, EngineError, LibraryId, Op, Record, SegmentError, Value};
use onefolder_engine_automerge::{AutomergeEngine, ENGINE_ID, MAGIC};
use proptest::prelude::*;

const FILES: &str = "files";
const TAGS: &str = "tags";
/// A 32-hex-digit id like the model's hashed ids.
const FILE_ID: &str = "0123456789abcdef0123456789abcdef";
const TAG_A: &str = "fedcba9876543210fedcba9876543210";
const TAG_B: &str = "00112233445566778899aabbccddeeff";
/// Size of a segment header (`onefolder_core::segment::HEADER_LEN`).
const SEGMENT_HEADER: usize = segment::HEADER_LEN;
/// DESIGN §6: bytes written per tag assignment, segment header included.
const ASSIGNMENT_BUDGET: usize = 256;

fn write(e: &mut AutomergeEngine, ops: &[Op]) {
    e.write(ops).expect("write");
}

fn take(e: &mut AutomergeEngine) -> Vec<u8> {
    e.take_local_changes().expect("take").expect("some local changes")
}

fn apply(e: &mut AutomergeEngine, bytes: &[u8]) {
    e.apply_remote(bytes).expect("apply");
}

fn rec(e: &AutomergeEngine, collection: &str, id: &str) -> Option<Record> {
    e.record(collection, id).expect("record")
}

fn set(members: &[&str]) -> Value {
    Value::Set(members.iter().map(|m| (*m).to_owned()).collect::<BTreeSet<_>>())
}

/// Sends each engine's local changes to the other.
fn exchange(a: &mut AutomergeEngine, b: &mut AutomergeEngine) {
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
fn two_with_file() -> (AutomergeEngine, AutomergeEngine) {
    let mut a = AutomergeEngine::new();
    let mut b = AutomergeEngine::new();
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
fn view(e: &AutomergeEngine) -> (Vec<u8>, bool, Collection, Collection) {
    (e.version(), e.has_pending(), e.collection(FILES).expect("files"), e.collection(TAGS).expect("tags"))
}

/// Everything one replica can observe, snapshot bytes included, for "state unchanged" checks.
fn observe(e: &AutomergeEngine) -> (Vec<u8>, Vec<u8>, bool, Collection, Collection) {
    (
        e.snapshot().expect("snapshot"),
        e.version(),
        e.has_pending(),
        e.collection(FILES).expect("files"),
        e.collection(TAGS).expect("tags"),
    )
}

#[test]
fn packed_ids_read_back_and_emptied_sets_read_as_absent() {
    let (mut a, mut b) = two_with_file();
    assert_eq!(a.engine_id(), "automerge");
    assert!(
        ENGINE_ID.len() <= onefolder_core::segment::MAX_ENGINE_ID && ENGINE_ID.bytes().all(|b| b.is_ascii_graphic())
    );
    write(&mut a, &[Op::create(TAGS, TAG_A), Op::set_add(TAGS, TAG_A, "sub", TAG_B)]);
    assert_eq!(rec(&a, TAGS, TAG_A).unwrap().get("sub"), Some(&set(&[TAG_B])), "packed ids read back as written");
    assert_eq!(a.ids(TAGS).unwrap(), [TAG_A]);
    write(&mut a, &[Op::set_remove(TAGS, TAG_A, "sub", TAG_B)]);
    assert_eq!(rec(&a, TAGS, TAG_A), Some(Record::new()), "an emptied set reads as absent");
    write(&mut b, &[Op::set_add(FILES, FILE_ID, "tags", TAG_A)]);
    write(&mut a, &[Op::set_remove(FILES, FILE_ID, "tags", "t1")]);
    exchange(&mut a, &mut b);
    assert_eq!(rec(&a, FILES, FILE_ID).unwrap().get("tags"), Some(&set(&[TAG_A])));
    write(&mut a, &[Op::set_remove(FILES, FILE_ID, "tags", TAG_A)]);
    exchange(&mut a, &mut b);
    assert_eq!(rec(&b, FILES, FILE_ID).unwrap().get("tags"), None);
}

#[test]
fn records_with_similar_ids_stay_apart() {
    let mut e = AutomergeEngine::new();
    let ids = ["a", "ab", "a.b", "a-b", "~", "~~", "~a", FILE_ID, &FILE_ID.to_uppercase(), &FILE_ID[..31]];
    for (i, id) in ids.iter().enumerate() {
        write(
            &mut e,
            &[Op::create(FILES, id), Op::put(FILES, id, "n", i as i64), Op::set_add(FILES, id, "s", &format!("m{i}"))],
        );
    }
    let all = e.collection(FILES).unwrap();
    assert_eq!(all.len(), ids.len());
    for (i, id) in ids.iter().enumerate() {
        let r = &all[*id];
        assert_eq!(r.get("n"), Some(&Value::Int(i as i64)), "{id}");
        assert_eq!(r.get("s"), Some(&set(&[&format!("m{i}")])), "{id}");
        assert_eq!(rec(&e, FILES, id).as_ref(), Some(r));
    }
    let mut sorted: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    sorted.sort();
    assert_eq!(e.ids(FILES).unwrap(), sorted);
    write(&mut e, &[Op::delete(FILES, "a")]);
    assert_eq!(e.collection(FILES).unwrap().len(), ids.len() - 1);
    assert_eq!(rec(&e, FILES, "ab").unwrap().get("n"), Some(&Value::Int(1)));
}

#[test]
fn delete_clears_sets_and_clear_empties_a_set() {
    let mut e = AutomergeEngine::new();
    write(
        &mut e,
        &[Op::create(FILES, "f"), Op::set_add(FILES, "f", "tags", "a"), Op::set_add(FILES, "f", "tags", "b")],
    );
    write(&mut e, &[Op::delete(FILES, "f"), Op::create(FILES, "f"), Op::set_add(FILES, "f", "tags", "c")]);
    assert_eq!(rec(&e, FILES, "f").unwrap().get("tags"), Some(&set(&["c"])));
    write(&mut e, &[Op::clear(FILES, "f", "tags"), Op::set_add(FILES, "f", "tags", "d")]);
    assert_eq!(rec(&e, FILES, "f").unwrap().get("tags"), Some(&set(&["d"])));
    // A scalar Put over a set drops its members, and a SetAdd over a scalar drops the scalar.
    write(&mut e, &[Op::put(FILES, "f", "tags", 1)]);
    assert_eq!(rec(&e, FILES, "f").unwrap().get("tags"), Some(&Value::Int(1)));
    write(&mut e, &[Op::set_add(FILES, "f", "tags", "e")]);
    assert_eq!(rec(&e, FILES, "f").unwrap().get("tags"), Some(&set(&["e"])));
    write(&mut e, &[Op::clear(FILES, "f", "tags")]);
    assert_eq!(rec(&e, FILES, "f"), Some(Record::new()));
}

#[test]
fn concurrent_scalar_and_set_writes_converge() {
    let (mut a, mut b) = two_with_file();
    write(&mut a, &[Op::put(FILES, FILE_ID, "tags", "scalar now")]);
    write(&mut b, &[Op::set_add(FILES, FILE_ID, "tags", "t2")]);
    exchange(&mut a, &mut b);
    assert_eq!(rec(&a, FILES, FILE_ID), rec(&b, FILES, FILE_ID));
    assert_eq!(rec(&a, FILES, FILE_ID).unwrap()["tags"], Value::from("scalar now"), "a scalar hides the set");
    // The next SetAdd makes it a set again, with the member that raced the Put.
    write(&mut a, &[Op::set_add(FILES, FILE_ID, "tags", "t3")]);
    exchange(&mut a, &mut b);
    assert_eq!(rec(&b, FILES, FILE_ID).unwrap()["tags"], set(&["t2", "t3"]));
    assert_eq!(rec(&a, FILES, FILE_ID), rec(&b, FILES, FILE_ID));
}

#[test]
fn set_add_wins_over_a_remove_of_a_conflicted_member() {
    // Both add the same member concurrently: its key holds a conflict of two entries.
    let (mut a, mut b) = two_with_file();
    write(&mut a, &[Op::set_add(FILES, FILE_ID, "tags", TAG_A)]);
    write(&mut b, &[Op::set_add(FILES, FILE_ID, "tags", TAG_A)]);
    exchange(&mut a, &mut b);
    // A removes both entries it sees; B adds again, concurrently.
    write(&mut a, &[Op::set_remove(FILES, FILE_ID, "tags", TAG_A)]);
    write(&mut b, &[Op::set_add(FILES, FILE_ID, "tags", TAG_A)]);
    exchange(&mut a, &mut b);
    for e in [&a, &b] {
        assert_eq!(rec(e, FILES, FILE_ID).unwrap().get("tags"), Some(&set(&["t1", TAG_A])));
    }
}

#[test]
fn local_changes_wait_for_the_history_they_were_made_on() {
    let mut a = AutomergeEngine::new();
    let mut b = AutomergeEngine::new();
    write(&mut b, &[Op::create(TAGS, "from-b")]);
    let from_b = take(&mut b);
    apply(&mut a, &from_b);
    write(&mut a, &[Op::create(TAGS, "from-a")]);
    write(&mut a, &[Op::put(TAGS, "from-a", "name", "A")]);
    let from_a = take(&mut a);
    // The bytes hold nothing of B, but A's changes depend on B's and wait for them.
    let mut c = AutomergeEngine::new();
    apply(&mut c, &from_a);
    assert!(c.has_pending(), "A's changes depend on B's, which are not in the bytes");
    assert!(c.ids(TAGS).unwrap().is_empty());
    apply(&mut c, &from_b);
    assert!(!c.has_pending());
    assert_eq!(c.ids(TAGS).unwrap(), ["from-a", "from-b"]);
    // A write that changes nothing is no change.
    write(&mut c, &[Op::create(TAGS, "from-a"), Op::put(TAGS, "from-a", "name", "A"), Op::clear(TAGS, "x", "y")]);
    assert_eq!(c.take_local_changes().unwrap(), None);
}

#[test]
fn waiting_changes_stay_out_of_the_version_and_blobs_concatenate() {
    let mut a = AutomergeEngine::new();
    write(&mut a, &[Op::create(FILES, "f"), Op::put(FILES, "f", "name", "x")]);
    let c1 = take(&mut a);
    write(&mut a, &[Op::put(FILES, "f", "name", "y"), Op::put(FILES, "f", "size", 10)]);
    let c2 = take(&mut a);
    write(&mut a, &[Op::set_add(FILES, "f", "tags", "t")]);
    let c3 = take(&mut a);
    let mut shuffled = AutomergeEngine::new();
    apply(&mut shuffled, &c3);
    apply(&mut shuffled, &c2);
    assert!(shuffled.has_pending(), "everything waits for c1");
    assert_eq!(shuffled.version(), AutomergeEngine::new().version(), "waiting changes are not in the version");
    // Several changes as one blob, in any order, apply like each one.
    apply(&mut shuffled, &[c3.clone(), c2.clone(), c1.clone()].concat());
    assert!(!shuffled.has_pending());
    assert_eq!(view(&shuffled), view(&a));
}

/// Inputs that must be rejected (each is `Corrupt`, never a panic).
fn garbage_cases() -> Vec<Vec<u8>> {
    let mut a = AutomergeEngine::new();
    write(&mut a, &[Op::create(FILES, "f"), Op::put(FILES, "f", "name", "x")]);
    let change = take(&mut a);
    let mut bad_checksum = change.clone();
    bad_checksum[5] ^= 1;
    let mut bad_body = change.clone();
    let last = bad_body.len() - 1;
    bad_body[last] ^= 0x40;
    let mut compressed = change.clone();
    compressed[8] = 2;
    let mut bundle = change.clone();
    bundle[8] = 3;
    let mut unknown_type = change.clone();
    unknown_type[8] = 9;
    let mut huge_length = MAGIC.to_vec();
    huge_length.extend_from_slice(&[0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    let snapshot = a.snapshot().unwrap();
    vec![
        vec![0],
        vec![0xff],
        MAGIC.to_vec(),
        vec![0xff, 0xff, 0xff, 0x7f],
        b"{\"not\": \"a change\"}".to_vec(),
        b"OFSG\x01\x00\x00\x00automerge\0\0".to_vec(),
        change[..change.len() - 1].to_vec(),
        [&change[..], &[0]].concat(),
        [&change[..], &MAGIC[..]].concat(),
        // A good change followed by a damaged one: load_incremental would keep the first.
        [&change[..], &bad_body[..]].concat(),
        bad_checksum,
        bad_body,
        compressed,
        bundle,
        unknown_type,
        huge_length,
        snapshot[..snapshot.len() / 2].to_vec(),
        [&snapshot[..], &[1, 2, 3]].concat(),
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
    // The empty input is an empty sequence of chunks: accepted, and nothing changes.
    a.apply_remote(&[]).unwrap();
    a.load_snapshot(&[]).unwrap();
    assert_eq!(observe(&a), before);
}

#[test]
fn load_incremental_alone_silently_drops_corrupt_input() {
    // Why the adapter checks everything itself: automerge 0.12's `load_incremental` returns Ok
    // on a damaged chunk and drops data without a word.
    let mut a = AutomergeEngine::new();
    let mut changes = Vec::new();
    for name in ["first", "second", "third"] {
        write(&mut a, &[Op::create(TAGS, name)]);
        changes.push(take(&mut a));
    }
    let mut damaged = changes[2].clone();
    let last = damaged.len() - 1;
    damaged[last] ^= 0x40;

    // On a document with history: the chunks before the damaged one are kept, the rest dropped.
    let mut raw = automerge::Automerge::new();
    raw.load_incremental(&changes[0]).unwrap();
    let tail = [&changes[1][..], &damaged[..]].concat();
    assert!(raw.load_incremental(&tail).is_ok(), "automerge accepts a damaged tail");
    let mut expected = automerge::Automerge::new();
    expected.load_incremental(&[&changes[0][..], &changes[1][..]].concat()).unwrap();
    assert_eq!(raw.get_heads(), expected.get_heads(), "…keeping the good prefix only");
    // On an empty document: everything is dropped, the good prefix too.
    let mut fresh = automerge::Automerge::new();
    let input = [&changes[0][..], &damaged[..]].concat();
    assert!(fresh.load_incremental(&input).is_ok());
    assert!(fresh.get_heads().is_empty(), "…and an empty document stays empty");

    // The adapter: all or nothing, and it says so.
    let mut engine = AutomergeEngine::new();
    apply(&mut engine, &changes[0]);
    let before = observe(&engine);
    assert!(matches!(engine.apply_remote(&tail), Err(EngineError::Corrupt(_))));
    assert_eq!(observe(&engine), before);
    let mut empty = AutomergeEngine::new();
    assert!(matches!(empty.apply_remote(&input), Err(EngineError::Corrupt(_))));
    assert!(empty.version().is_empty());
}

/// The segment a replica would write for `payload`.
fn segment_of(library: LibraryId, device: DeviceId, payload: &[u8]) -> Vec<u8> {
    segment::encode(SegmentKind::Delta, ENGINE_ID, library, device, 1, 1, payload).expect("encode")
}

#[test]
fn corrupt_payload_in_a_valid_segment_cannot_damage_state() {
    // A writer that damaged its payload *before* checksumming the segment: the segment layer
    // passes it, so the engine is the last line. Every single-bit flip of a change is rejected.
    let (mut target, _) = two_with_file();
    target.take_local_changes().unwrap();
    let mut writer = AutomergeEngine::new();
    write(&mut writer, &[Op::create(TAGS, TAG_A), Op::put(TAGS, TAG_A, "name", "Planted")]);
    let change = take(&mut writer);
    let (library, device) = (LibraryId::random(), DeviceId::random());
    let expect = Expect { library, engine: ENGINE_ID, max_payload: segment::DEFAULT_MAX_PAYLOAD };
    let before = observe(&target);
    let mut rejected = 0;
    for bit in 0..change.len() * 8 {
        let mut bad = change.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let seg = segment_of(library, device, &bad);
        let decoded = segment::decode(&seg, &expect).expect("the segment itself is intact");
        match target.apply_remote(decoded.payload) {
            Err(EngineError::Corrupt(_)) => rejected += 1,
            other => panic!("bit {bit}: expected Corrupt, got {other:?}"),
        }
    }
    assert_eq!(rejected, change.len() * 8);
    assert_eq!(observe(&target), before, "state unchanged");
    // The intact payload applies.
    let seg = segment_of(library, device, &change);
    apply(&mut target, segment::decode(&seg, &expect).unwrap().payload);
    assert_eq!(rec(&target, TAGS, TAG_A).unwrap()["name"], Value::from("Planted"));
}

#[test]
fn segment_decoder_rejects_a_bit_flipped_automerge_segment() {
    let mut writer = AutomergeEngine::new();
    write(&mut writer, &[Op::create(FILES, FILE_ID), Op::set_add(FILES, FILE_ID, "tags", TAG_A)]);
    let change = take(&mut writer);
    let (library, device) = (LibraryId::random(), DeviceId::random());
    let expect = Expect { library, engine: ENGINE_ID, max_payload: segment::DEFAULT_MAX_PAYLOAD };
    let seg = segment_of(library, device, &change);
    assert_eq!(segment::decode(&seg, &expect).unwrap().payload, &change[..]);
    for bit in 0..seg.len() * 8 {
        let mut bad = seg.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let err = segment::decode(&bad, &expect).expect_err("a flipped bit never gets through");
        if bit / 8 >= SEGMENT_HEADER {
            assert_eq!(err, SegmentError::PayloadChecksum, "bit {bit}");
        }
    }
}

/// A few valid changes (and a snapshot) to mutate.
fn sample_changes() -> Vec<Vec<u8>> {
    let mut e = AutomergeEngine::new();
    let mut out = Vec::new();
    write(
        &mut e,
        &[Op::create(FILES, "f"), Op::put(FILES, "f", "name", "a.png"), Op::put(FILES, "f", "size", 1_700_000_000_000)],
    );
    out.push(take(&mut e));
    write(&mut e, &[Op::set_add(FILES, "f", "tags", TAG_A), Op::put(FILES, "f", "ratio", 0.5)]);
    out.push(take(&mut e));
    write(&mut e, &[Op::set_remove(FILES, "f", "tags", TAG_A), Op::put(FILES, "f", "blob", Value::Bytes(vec![1, 2]))]);
    out.push(take(&mut e));
    write(&mut e, &[Op::delete(FILES, "f")]);
    out.push(take(&mut e));
    out.push(e.snapshot().unwrap());
    out
}

fn check_garbage(target: &mut AutomergeEngine, bytes: &[u8]) -> Result<(), TestCaseError> {
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
    fn apply_garbage_is_corrupt_random_chunks(
        kind in 0u8..4,
        body in proptest::collection::vec(any::<u8>(), 0..120),
        checksum in any::<[u8; 4]>(),
    ) {
        // Well-framed chunks with random bodies: they get past the framing to automerge.
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&checksum);
        bytes.push(kind);
        bytes.push(body.len() as u8);
        bytes.extend_from_slice(&body);
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

/// A change made with automerge directly, by another writer.
fn foreign_change(build: impl FnOnce(&mut AutoCommit)) -> Vec<u8> {
    let mut doc = AutoCommit::new();
    build(&mut doc);
    doc.commit();
    doc.save_incremental()
}

#[test]
fn ops_this_engine_never_writes_are_corrupt() {
    let (mut a, _) = two_with_file();
    a.take_local_changes().unwrap();
    let before = observe(&a);
    let cases = [
        foreign_change(|d| {
            d.put_object(ROOT, "i/files/x", ObjType::Map).unwrap();
        }),
        foreign_change(|d| {
            let list = d.put_object(ROOT, "l", ObjType::List).unwrap();
            d.insert(&list, 0, "x").unwrap();
        }),
        foreign_change(|d| {
            d.put(ROOT, "c", ScalarValue::counter(1)).unwrap();
            d.increment(ROOT, "c", 2).unwrap();
        }),
        foreign_change(|d| {
            d.put_object(ROOT, "t", ObjType::Text).unwrap();
        }),
    ];
    for bytes in cases {
        match a.apply_remote(&bytes) {
            Err(EngineError::Corrupt(msg)) => println!("{msg}"),
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert_eq!(observe(&a), before);
    }
    // Plain root-map puts from another writer are fine (and unknown kinds are skipped).
    let plain = foreign_change(|d| {
        d.put(ROOT, "i/files/other", true).unwrap();
        d.put(ROOT, "f/files/other/name", "from elsewhere").unwrap();
        d.put(ROOT, "f/files/other/when", ScalarValue::Timestamp(5)).unwrap();
    });
    apply(&mut a, &plain);
    assert_eq!(rec(&a, FILES, "other").unwrap(), Record::from([("name".to_owned(), Value::from("from elsewhere"))]));
}

/// A change built from `base` with `edit` applied, re-encoded with a valid checksum: what a
/// buggy or malicious writer could send.
fn forge(base: &[u8], edit: impl FnOnce(&mut ExpandedChange)) -> Vec<u8> {
    let mut expanded = Change::from_bytes(base.to_vec()).unwrap().decode();
    expanded.hash = None;
    edit(&mut expanded);
    Change::from(expanded).raw_bytes().to_vec()
}

fn hash_of(change: &[u8]) -> automerge::ChangeHash {
    Change::from_bytes(change.to_vec()).unwrap().hash()
}

/// A writer's two changes: `x` created, then renamed.
fn history() -> (Vec<u8>, Vec<u8>) {
    let mut writer = AutomergeEngine::new();
    write(&mut writer, &[Op::create(TAGS, "x"), Op::put(TAGS, "x", "name", "n")]);
    let c1 = take(&mut writer);
    write(&mut writer, &[Op::put(TAGS, "x", "name", "m")]);
    (c1, take(&mut writer))
}

#[test]
fn changes_that_lie_about_their_history_are_corrupt() {
    // Each of these made automerge 0.12 panic half-way, or apply and leave a document whose
    // snapshot does not load or whose next local change panics.
    let (c1, c2) = history();
    let (h1, h2) = (hash_of(&c1), hash_of(&c2));
    let max_op_c2 = {
        let c = Change::from_bytes(c2.clone()).unwrap();
        c.start_op().get() + c.len() as u64 - 1
    };
    let forged = [
        // Counters reused: seq 3 starting where c2 started.
        forge(&c2, |e| {
            e.seq = 3;
            e.deps = vec![h2];
        }),
        // Seq 2 of an actor nobody has seen (counters right).
        forge(&c2, |e| {
            e.actor_id = ActorId::random();
            e.deps = vec![h1];
            e.operations
                .iter_mut()
                .for_each(|op| op.pred = Vec::<automerge::legacy::OpId>::new().into_iter().collect());
        }),
        // Overwrites an op that does not exist (seq and counters right).
        forge(&c2, |e| {
            e.actor_id = ActorId::random();
            e.seq = 1;
            e.deps = vec![h2];
            e.start_op = std::num::NonZeroU64::new(max_op_c2 + 1).unwrap();
            for op in &mut e.operations {
                op.pred = vec![automerge::legacy::OpId(99, ActorId::random())].into_iter().collect();
            }
        }),
        // Counters near 2^32: applies in automerge, and every later local change panics.
        forge(&c2, |e| {
            e.actor_id = ActorId::random();
            e.seq = 1;
            e.deps = vec![];
            e.start_op = std::num::NonZeroU64::new(u64::from(u32::MAX) - 1).unwrap();
            e.operations
                .iter_mut()
                .for_each(|op| op.pred = Vec::<automerge::legacy::OpId>::new().into_iter().collect());
        }),
    ];
    for bad in &forged {
        let mut target = AutomergeEngine::new();
        apply(&mut target, &c1);
        apply(&mut target, &c2);
        let before = observe(&target);
        match target.apply_remote(bad) {
            Err(EngineError::Corrupt(msg)) => println!("{msg}"),
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert_eq!(observe(&target), before, "state unchanged");
        // Alone in a batch with a good change: all or nothing.
        let mut fresh = AutomergeEngine::new();
        apply(&mut fresh, &c1);
        let before = observe(&fresh);
        assert!(matches!(fresh.apply_remote(&[&c2[..], &bad[..]].concat()), Err(EngineError::Corrupt(_))));
        assert_eq!(observe(&fresh), before);
        // The engine still works and its snapshot loads.
        write(&mut target, &[Op::create(TAGS, "after")]);
        let mut reloaded = AutomergeEngine::new();
        reloaded.load_snapshot(&target.snapshot().unwrap()).unwrap();
        assert_eq!(reloaded.ids(TAGS).unwrap(), ["after", "x"]);
    }
}

#[test]
fn a_lying_change_that_waited_is_dropped_with_its_dependents() {
    let (c1, c2) = history();
    // Seq 3 reusing c2's counters, depending on c2; and an honest-looking change on top of it.
    let liar = forge(&c2, |e| {
        e.seq = 3;
        e.deps = vec![hash_of(&c2)];
    });
    let on_top = forge(&c2, |e| {
        e.actor_id = ActorId::random();
        e.seq = 1;
        e.deps = vec![hash_of(&liar)];
        e.start_op = std::num::NonZeroU64::new(4).unwrap();
        e.operations.iter_mut().for_each(|op| op.pred = Vec::<automerge::legacy::OpId>::new().into_iter().collect());
    });
    let mut honest = AutomergeEngine::new();
    apply(&mut honest, &c1);
    apply(&mut honest, &c2);

    let mut target = AutomergeEngine::new();
    apply(&mut target, &liar);
    apply(&mut target, &on_top);
    assert!(target.has_pending(), "both wait for c2");
    // The waiting changes ride along in a snapshot.
    let mut restored = AutomergeEngine::new();
    restored.load_snapshot(&target.snapshot().unwrap()).unwrap();
    assert!(restored.has_pending());
    for e in [&mut target, &mut restored] {
        apply(e, &c1);
        apply(e, &c2);
        assert!(!e.has_pending(), "the liar and what depends on it are dropped");
        assert_eq!(view(e), view(&honest));
        // Delivered again, they are ignored.
        apply(e, &liar);
        apply(e, &on_top);
        assert!(!e.has_pending());
        let mut reloaded = AutomergeEngine::new();
        reloaded.load_snapshot(&e.snapshot().unwrap()).unwrap();
        assert_eq!(view(&reloaded), view(&honest));
    }
}

#[test]
fn snapshot_has_the_magic_and_keeps_the_loaders_actor() {
    let (mut a, _) = two_with_file();
    let snapshot = a.snapshot().unwrap();
    assert_eq!(snapshot[..4], MAGIC);
    let mut fresh = AutomergeEngine::new();
    fresh.load_snapshot(&snapshot).unwrap();
    assert_ne!(fresh.actor_id(), a.actor_id(), "a loaded snapshot keeps the loader's own actor");
    write(&mut fresh, &[Op::put(FILES, FILE_ID, "name", "dog.jpg")]);
    apply(&mut a, &take(&mut fresh));
    assert_eq!(rec(&a, FILES, FILE_ID).unwrap()["name"], Value::from("dog.jpg"));
}

#[test]
fn merge_is_the_chunks_concatenated_without_duplicates() {
    let mut a = AutomergeEngine::new();
    let mut b = AutomergeEngine::new();
    let mut changes = Vec::new();
    write(&mut a, &[Op::create(FILES, "f"), Op::put(FILES, "f", "name", "x")]);
    changes.push(take(&mut a));
    write(&mut a, &[Op::set_add(FILES, "f", "tags", "t"), Op::put(FILES, "f", "name", "y")]);
    changes.push(take(&mut a));
    write(&mut b, &[Op::create(TAGS, "t"), Op::put(TAGS, "t", "name", "T")]);
    changes.push(take(&mut b));

    let parts: Vec<&[u8]> = changes.iter().map(Vec::as_slice).collect();
    let merged = a.merge_changes(&parts).unwrap();
    assert_eq!(merged, changes.concat(), "a merge is the chunks, concatenated");
    // Duplicates are dropped; merges of merges and snapshots work.
    let twice = a.merge_changes(&[&merged, &changes[1], &merged]).unwrap();
    assert_eq!(twice.len(), merged.len());
    let with_snapshot = a.merge_changes(&[&changes[0], &b.snapshot().unwrap()]).unwrap();
    let mut from_snapshot = AutomergeEngine::new();
    apply(&mut from_snapshot, &with_snapshot);
    assert_eq!(from_snapshot.ids(TAGS).unwrap(), ["t"]);
    assert_eq!(from_snapshot.ids(FILES).unwrap(), ["f"]);
}

/// Bytes of the change for one tag assignment on `a`.
fn assignment(a: &mut AutomergeEngine, tag: &str) -> Vec<u8> {
    write(a, &[Op::set_add(FILES, FILE_ID, "tags", tag)]);
    take(a)
}

#[test]
fn one_set_add_is_small() {
    let mut a = AutomergeEngine::new();
    let mut b = AutomergeEngine::new();
    write(&mut a, &[Op::create(FILES, FILE_ID), Op::put(FILES, FILE_ID, "name", "cat.jpg")]);
    apply(&mut b, &take(&mut a));

    // One dependency (the previous change of this replica).
    let first = assignment(&mut a, TAG_A);
    let second = assignment(&mut a, TAG_B);
    println!(
        "first tag of a file: {} bytes (+{SEGMENT_HEADER} header = {})",
        first.len(),
        first.len() + SEGMENT_HEADER
    );
    println!("another tag: {} bytes (+{SEGMENT_HEADER} = {})", second.len(), second.len() + SEGMENT_HEADER);
    assert!(first.len() + SEGMENT_HEADER <= ASSIGNMENT_BUDGET, "{} bytes", first.len());
    assert!(second.len() + SEGMENT_HEADER <= ASSIGNMENT_BUDGET, "{} bytes", second.len());

    // Two dependencies: after a peer's change that built on ours, automerge lists both the
    // peer's head and our own last change.
    apply(&mut b, &[first, second].concat());
    write(&mut b, &[Op::put(FILES, FILE_ID, "width", 1)]);
    apply(&mut a, &take(&mut b));
    let after_peer = assignment(&mut a, "11112222333344445555666677778888");
    let deps = Change::from_bytes(after_peer.clone()).unwrap().deps().len();
    println!(
        "a tag after a peer's edit ({deps} deps): {} bytes (+{SEGMENT_HEADER} = {})",
        after_peer.len(),
        after_peer.len() + SEGMENT_HEADER
    );
    assert_eq!(deps, 2);
    assert!(after_peer.len() < 256, "{} bytes", after_peer.len());

    // A peer's first change renaming our tag: one dependency and one other actor (the pred).
    let mut c = AutomergeEngine::new();
    apply(&mut c, &a.snapshot().unwrap());
    write(&mut c, &[Op::put(FILES, FILE_ID, "name", "Felines")]);
    let rename = take(&mut c);
    println!("a rename by a peer: {} bytes (+{SEGMENT_HEADER} = {})", rename.len(), rename.len() + SEGMENT_HEADER);
    assert!(rename.len() + SEGMENT_HEADER <= ASSIGNMENT_BUDGET, "{} bytes", rename.len());
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
        Value::Int(i64::MAX),
        Value::Int(i64::MIN),
        Value::Float(1.5),
        Value::Float(3.0),
        Value::Float(0.0),
        Value::Float(-0.0),
        Value::Float(1e300),
        Value::Float(f64::NAN),
        Value::Float(f64::INFINITY),
        Value::Float(f64::NEG_INFINITY),
        Value::Float(f64::MIN_POSITIVE / 2.0),
        Value::Str(String::new()),
        Value::Str("héllo/wörld".into()),
        Value::Str("~".into()),
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
    let mut a = AutomergeEngine::new();
    let mut ops = vec![Op::create(FILES, "f")];
    ops.extend(values.iter().enumerate().map(|(i, v)| Op::put(FILES, "f", &format!("v{i}"), v.clone())));
    write(&mut a, &ops);
    let mut remote = AutomergeEngine::new();
    apply(&mut remote, &take(&mut a));
    let mut loaded = AutomergeEngine::new();
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

    #[test]
    fn ids_and_members_round_trip(id in "[^/]{1,40}", member in ".{0,40}", hex in "[0-9a-f]{32}") {
        let mut a = AutomergeEngine::new();
        write(&mut a, &[
            Op::create(FILES, &id),
            Op::set_add(FILES, &id, "tags", &member),
            Op::set_add(FILES, &id, "tags", &hex),
            Op::create(FILES, &hex),
            Op::put(FILES, &hex, "n", 1),
        ]);
        let mut remote = AutomergeEngine::new();
        apply(&mut remote, &take(&mut a));
        for e in [&a, &remote] {
            let r = rec(e, FILES, &id).unwrap();
            prop_assert_eq!(&r["tags"], &set(&[&member, &hex]));
            prop_assert!(e.ids(FILES).unwrap().contains(&id));
            let all = e.collection(FILES).unwrap();
            prop_assert_eq!(all[&hex].get("n"), Some(&Value::Int(1)));
        }
    }
}

#[test]
fn put_of_the_same_value_writes_nothing_but_kinds_and_zero_signs_differ() {
    let mut a = AutomergeEngine::new();
    write(&mut a, &[Op::create(FILES, "f"), Op::put(FILES, "f", "n", 1), Op::put(FILES, "f", "z", 0.0)]);
    a.take_local_changes().unwrap();
    write(&mut a, &[Op::put(FILES, "f", "n", 1), Op::create(FILES, "f"), Op::put(FILES, "f", "z", 0.0)]);
    assert_eq!(a.take_local_changes().unwrap(), None);
    write(&mut a, &[Op::put(FILES, "f", "n", 1.0)]);
    assert!(a.take_local_changes().unwrap().is_some(), "1 and 1.0 are different values");
    assert!(same(&rec(&a, FILES, "f").unwrap()["n"], &Value::Float(1.0)));
    // automerge alone would take -0.0 over 0.0 as no change.
    write(&mut a, &[Op::put(FILES, "f", "z", -0.0)]);
    let change = take(&mut a);
    assert!(same(&rec(&a, FILES, "f").unwrap()["z"], &Value::Float(-0.0)));
    let mut b = AutomergeEngine::new();
    b.load_snapshot(&a.snapshot().unwrap()).unwrap();
    apply(&mut b, &change);
    assert!(same(&rec(&b, FILES, "f").unwrap()["z"], &Value::Float(-0.0)));
}

#[test]
fn invalid_ops_are_rejected_and_batches_are_atomic() {
    let mut a = AutomergeEngine::new();
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
        assert!(a.version().is_empty());
    }
    // Set members may hold the separator or be empty; an empty batch is fine.
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
fn every_engine_has_its_own_actor() {
    let a = AutomergeEngine::new();
    let b = AutomergeEngine::default();
    assert_ne!(a.actor_id(), b.actor_id());
    assert_eq!(a.actor_id().to_bytes().len(), 16);
    let empty = a.new_empty();
    assert_eq!(empty.engine_id(), ENGINE_ID);
    assert!(empty.version().is_empty(), "an empty engine has no heads");
    assert!(empty.collection(FILES).unwrap().is_empty());
    assert!(format!("{a:?}").contains(&a.actor_id().to_hex_string()));
    // Two replicas of one history written by different processes do not collide.
    let mut first = AutomergeEngine::new();
    write(&mut first, &[Op::create(TAGS, "x")]);
    let mut restarted = AutomergeEngine::new();
    restarted.load_snapshot(&first.snapshot().unwrap()).unwrap();
    write(&mut restarted, &[Op::put(TAGS, "x", "name", "after restart")]);
    let change = take(&mut restarted);
    apply(&mut first, &change);
    assert!(!first.has_pending());
    assert_eq!(rec(&first, TAGS, "x").unwrap().get("name"), Some(&Value::from("after restart")));
}

#[test]
fn version_ignores_apply_order() {
    let mut writers: Vec<AutomergeEngine> = (0..5).map(|_| AutomergeEngine::new()).collect();
    let changes: Vec<Vec<u8>> = writers
        .iter_mut()
        .enumerate()
        .map(|(i, w)| {
            write(w, &[Op::create(TAGS, &format!("t{i}"))]);
            take(w)
        })
        .collect();
    let mut forward = AutomergeEngine::new();
    let mut backward = AutomergeEngine::new();
    for c in &changes {
        apply(&mut forward, c);
    }
    for c in changes.iter().rev() {
        apply(&mut backward, c);
    }
    assert_eq!(forward.version(), backward.version());
    assert_eq!(forward.version().len(), 5 * 32, "five heads");
    assert_ne!(forward.version(), AutomergeEngine::new().version());
}
