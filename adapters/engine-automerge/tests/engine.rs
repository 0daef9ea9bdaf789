//! The `# Behavior` bullets of `onefolder_core::Engine`, one test each, plus the
//! automerge-specific checks (change size, value round trips, validation, untrusted bytes).

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
fn write_then_read() {
    let mut e = AutomergeEngine::new();
    assert_eq!(e.engine_id(), "automerge");
    assert!(
        ENGINE_ID.len() <= onefolder_core::segment::MAX_ENGINE_ID && ENGINE_ID.bytes().all(|b| b.is_ascii_graphic())
    );
    // Fields written before Create are kept but invisible.
    write(&mut e, &[Op::put(TAGS, "t1", "name", "early")]);
    assert_eq!(rec(&e, TAGS, "t1"), None);
    assert!(e.collection(TAGS).unwrap().is_empty());

    write(
        &mut e,
        &[
            Op::create(TAGS, "t1"),
            Op::put(TAGS, "t1", "name", "Cats"),
            Op::put(TAGS, "t1", "isHidden", false),
            Op::create(TAGS, "t2"),
            Op::set_add(TAGS, "t2", "sub", "t1"),
            Op::create(TAGS, TAG_A),
            Op::set_add(TAGS, TAG_A, "sub", TAG_B),
        ],
    );
    let t1 = rec(&e, TAGS, "t1").expect("t1 exists");
    assert_eq!(t1.get("name"), Some(&Value::from("Cats")));
    assert_eq!(t1.get("isHidden"), Some(&Value::Bool(false)));
    assert_eq!(t1.len(), 2);
    let all = e.collection(TAGS).unwrap();
    assert_eq!(all.keys().collect::<Vec<_>>(), [TAG_A, "t1", "t2"]);
    assert_eq!(all["t2"].get("sub"), Some(&set(&["t1"])));
    assert_eq!(all[TAG_A].get("sub"), Some(&set(&[TAG_B])), "packed ids read back as written");
    assert_eq!(e.ids(TAGS).unwrap(), [TAG_A, "t1", "t2"]);
    for id in [TAG_A, "t1", "t2"] {
        assert_eq!(rec(&e, TAGS, id).as_ref(), all.get(id), "record and collection agree on {id}");
    }

    write(&mut e, &[Op::clear(TAGS, "t1", "isHidden"), Op::set_remove(TAGS, "t2", "sub", "t1")]);
    assert_eq!(rec(&e, TAGS, "t1").unwrap().get("isHidden"), None);
    assert_eq!(rec(&e, TAGS, "t2"), Some(Record::new()), "an emptied set reads as absent");

    write(&mut e, &[Op::delete(TAGS, "t1")]);
    assert_eq!(rec(&e, TAGS, "t1"), None);
    assert_eq!(e.ids(TAGS).unwrap(), [TAG_A, "t2"]);
    // Created again: the old fields are gone.
    write(&mut e, &[Op::create(TAGS, "t1")]);
    assert_eq!(rec(&e, TAGS, "t1"), Some(Record::new()));
    // Unknown collection / record.
    assert_eq!(rec(&e, "nope", "t1"), None);
    assert!(e.collection("nope").unwrap().is_empty());
    assert!(e.ids("nope").unwrap().is_empty());
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
fn fields_merge_independently() {
    let (mut a, mut b) = two_with_file();
    // Different fields: both survive.
    write(&mut a, &[Op::put(FILES, FILE_ID, "name", "renamed.jpg")]);
    write(&mut b, &[Op::put(FILES, FILE_ID, "width", 640)]);
    exchange(&mut a, &mut b);
    for e in [&a, &b] {
        let r = rec(e, FILES, FILE_ID).unwrap();
        assert_eq!(r.get("name"), Some(&Value::from("renamed.jpg")));
        assert_eq!(r.get("width"), Some(&Value::Int(640)));
    }
    // The same field: one value wins, the same on both.
    write(&mut a, &[Op::put(FILES, FILE_ID, "name", "from-a")]);
    write(&mut b, &[Op::put(FILES, FILE_ID, "name", "from-b")]);
    exchange(&mut a, &mut b);
    let name = rec(&a, FILES, FILE_ID).unwrap()["name"].clone();
    assert!(name == Value::from("from-a") || name == Value::from("from-b"), "{name:?}");
    assert_eq!(rec(&a, FILES, FILE_ID), rec(&b, FILES, FILE_ID));
    assert_eq!(a.version(), b.version());
    // A later write over the conflict settles it everywhere.
    write(&mut b, &[Op::put(FILES, FILE_ID, "name", "settled")]);
    exchange(&mut a, &mut b);
    assert_eq!(rec(&a, FILES, FILE_ID).unwrap()["name"], Value::from("settled"));
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
fn concurrent_create_merges() {
    let mut a = AutomergeEngine::new();
    let mut b = AutomergeEngine::new();
    write(
        &mut a,
        &[
            Op::create(FILES, FILE_ID),
            Op::put(FILES, FILE_ID, "name", "cat.jpg"),
            Op::set_add(FILES, FILE_ID, "tags", TAG_A),
        ],
    );
    write(
        &mut b,
        &[
            Op::create(FILES, FILE_ID),
            Op::put(FILES, FILE_ID, "size", 1234),
            Op::set_add(FILES, FILE_ID, "tags", TAG_B),
        ],
    );
    exchange(&mut a, &mut b);
    for e in [&a, &b] {
        let r = rec(e, FILES, FILE_ID).expect("one record");
        assert_eq!(r.get("name"), Some(&Value::from("cat.jpg")));
        assert_eq!(r.get("size"), Some(&Value::Int(1234)));
        assert_eq!(r.get("tags"), Some(&set(&[TAG_A, TAG_B])));
        assert_eq!(e.ids(FILES).unwrap(), [FILE_ID]);
    }
    assert_eq!(a.collection(FILES).unwrap(), b.collection(FILES).unwrap());
    // Both index entries are one conflict: one Delete that saw them removes the record.
    write(&mut a, &[Op::delete(FILES, FILE_ID)]);
    exchange(&mut a, &mut b);
    assert_eq!(rec(&b, FILES, FILE_ID), None);
}

#[test]
fn set_add_wins() {
    let (mut a, mut b) = two_with_file();
    // t1 is present on both; A removes it while B adds it again.
    write(&mut a, &[Op::set_remove(FILES, FILE_ID, "tags", "t1")]);
    write(&mut b, &[Op::set_add(FILES, FILE_ID, "tags", "t1")]);
    let re_add = take(&mut b);
    apply(&mut a, &re_add);
    assert_eq!(rec(&a, FILES, FILE_ID).unwrap().get("tags"), Some(&set(&["t1"])), "re-adding writes a new entry");
    exchange(&mut a, &mut b);
    for e in [&a, &b] {
        assert_eq!(rec(e, FILES, FILE_ID).unwrap().get("tags"), Some(&set(&["t1"])));
    }
    // A remove that saw the add does remove it.
    write(&mut a, &[Op::set_remove(FILES, FILE_ID, "tags", "t1")]);
    exchange(&mut a, &mut b);
    assert_eq!(rec(&b, FILES, FILE_ID).unwrap().get("tags"), None);
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
fn take_local_changes_only_local() {
    let mut a = AutomergeEngine::new();
    let mut b = AutomergeEngine::new();
    assert_eq!(a.take_local_changes().unwrap(), None);

    write(&mut b, &[Op::create(TAGS, "from-b")]);
    let from_b = take(&mut b);
    apply(&mut a, &from_b);
    assert_eq!(a.take_local_changes().unwrap(), None, "a remote apply is not a local change");

    write(&mut a, &[Op::create(TAGS, "from-a")]);
    write(&mut a, &[Op::put(TAGS, "from-a", "name", "A")]);
    apply(&mut a, &from_b);
    let from_a = take(&mut a);
    assert_eq!(a.take_local_changes().unwrap(), None, "a take drains the buffer");

    // The taken bytes hold both local writes and nothing of B: C has not seen B, so A's
    // changes (which depend on B's) wait, and B's record does not appear.
    let mut c = AutomergeEngine::new();
    apply(&mut c, &from_a);
    assert!(c.has_pending(), "A's changes depend on B's, which are not in the bytes");
    assert!(c.ids(TAGS).unwrap().is_empty());
    apply(&mut c, &from_b);
    assert!(!c.has_pending());
    assert_eq!(c.ids(TAGS).unwrap(), ["from-a", "from-b"]);
    assert_eq!(rec(&c, TAGS, "from-a").unwrap().get("name"), Some(&Value::from("A")));
    // Independent of B: a fresh replica with only A's own history.
    let mut d = AutomergeEngine::new();
    write(&mut d, &[Op::create(TAGS, "d1")]);
    write(&mut d, &[Op::put(TAGS, "d1", "name", "D")]);
    let mut e = AutomergeEngine::new();
    apply(&mut e, &take(&mut d));
    assert!(!e.has_pending());
    assert_eq!(rec(&e, TAGS, "d1").unwrap().get("name"), Some(&Value::from("D")));

    // Snapshots loaded are not local changes either.
    let mut f = AutomergeEngine::new();
    f.load_snapshot(&a.snapshot().unwrap()).unwrap();
    assert_eq!(f.take_local_changes().unwrap(), None);
    // A write that changes nothing is no change.
    write(&mut f, &[Op::create(TAGS, "from-a"), Op::put(TAGS, "from-a", "name", "A"), Op::clear(TAGS, "x", "y")]);
    assert_eq!(f.take_local_changes().unwrap(), None);
}

#[test]
fn apply_idempotent_any_order() {
    let mut a = AutomergeEngine::new();
    write(&mut a, &[Op::create(FILES, "f"), Op::put(FILES, "f", "name", "x")]);
    let c1 = take(&mut a);
    write(&mut a, &[Op::put(FILES, "f", "name", "y"), Op::put(FILES, "f", "size", 10)]);
    let c2 = take(&mut a);
    write(&mut a, &[Op::set_add(FILES, "f", "tags", "t")]);
    let c3 = take(&mut a);
    write(&mut a, &[Op::set_remove(FILES, "f", "tags", "t"), Op::set_add(FILES, "f", "tags", "u")]);
    let c4 = take(&mut a);

    let mut in_order = AutomergeEngine::new();
    for c in [&c1, &c2, &c3, &c4] {
        apply(&mut in_order, c);
        assert!(!in_order.has_pending());
    }
    let expected = in_order.collection(FILES).unwrap();
    assert_eq!(expected, a.collection(FILES).unwrap());
    assert_eq!(expected["f"].get("tags"), Some(&set(&["u"])));
    assert_eq!(in_order.version(), a.version());

    let mut shuffled = AutomergeEngine::new();
    apply(&mut shuffled, &c2);
    assert!(shuffled.has_pending(), "c2 waits for c1");
    assert_eq!(rec(&shuffled, FILES, "f"), None, "nothing of a waiting change is visible");
    apply(&mut shuffled, &c4);
    apply(&mut shuffled, &c4);
    apply(&mut shuffled, &c3);
    apply(&mut shuffled, &c3);
    assert!(shuffled.has_pending(), "everything waits for c1");
    assert_eq!(shuffled.version(), AutomergeEngine::new().version(), "waiting changes are not in the version");
    apply(&mut shuffled, &c1);
    assert!(!shuffled.has_pending(), "everything integrated once c1 arrived");
    assert_eq!(shuffled.collection(FILES).unwrap(), expected);
    assert_eq!(shuffled.version(), in_order.version());

    // Everything again, in yet another order and as one blob: nothing changes.
    let before = observe(&shuffled);
    for c in [&c2, &c4, &c1, &c3] {
        apply(&mut shuffled, c);
    }
    apply(&mut shuffled, &[c4.clone(), c3.clone(), c2.clone(), c1.clone()].concat());
    assert_eq!(observe(&shuffled), before);
    assert_eq!(shuffled.take_local_changes().unwrap(), None);

    // A snapshot taken while changes wait keeps them; they integrate once the gap is filled.
    let mut waiting = AutomergeEngine::new();
    apply(&mut waiting, &c1);
    apply(&mut waiting, &c3);
    apply(&mut waiting, &c4);
    assert!(waiting.has_pending());
    let mut restored = AutomergeEngine::new();
    restored.load_snapshot(&waiting.snapshot().unwrap()).unwrap();
    assert!(restored.has_pending(), "the snapshot carries the waiting changes");
    apply(&mut restored, &c2);
    apply(&mut waiting, &c2);
    assert_eq!(view(&restored), view(&in_order));
    assert_eq!(view(&waiting), view(&in_order));
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
fn snapshot_round_trip() {
    let (mut a, mut b) = two_with_file();
    write(
        &mut a,
        &[
            Op::create(TAGS, "t1"),
            Op::put(TAGS, "t1", "name", "Cats"),
            Op::put(TAGS, "t1", "order", 0.25),
            Op::create(TAGS, "gone"),
            Op::delete(TAGS, "gone"),
            Op::set_add(FILES, FILE_ID, "tags", TAG_B),
            Op::put(FILES, FILE_ID, "thumb", Value::Bytes(vec![0, 1, 2])),
        ],
    );
    write(&mut b, &[Op::put(FILES, FILE_ID, "width", 10)]);
    exchange(&mut a, &mut b);

    let snapshot = a.snapshot().unwrap();
    assert_eq!(snapshot[..4], MAGIC);
    let mut fresh = AutomergeEngine::new();
    fresh.load_snapshot(&snapshot).unwrap();
    for coll in [FILES, TAGS] {
        assert_eq!(fresh.collection(coll).unwrap(), a.collection(coll).unwrap());
    }
    assert_eq!(fresh.version(), a.version());
    assert!(!fresh.has_pending());
    assert_eq!(fresh.take_local_changes().unwrap(), None);
    assert_ne!(fresh.actor_id(), a.actor_id(), "a loaded snapshot keeps the loader's own actor");

    // apply_remote takes snapshot bytes too, loading twice changes nothing, and a snapshot
    // merges into a replica that has its own history.
    let mut other = AutomergeEngine::new();
    apply(&mut other, &snapshot);
    other.load_snapshot(&snapshot).unwrap();
    assert_eq!(view(&other), view(&fresh));
    let mut busy = AutomergeEngine::new();
    write(&mut busy, &[Op::create(TAGS, "own")]);
    busy.load_snapshot(&snapshot).unwrap();
    assert_eq!(busy.ids(TAGS).unwrap(), ["own", "t1"]);
    assert_eq!(busy.collection(FILES).unwrap(), a.collection(FILES).unwrap());
    // The loader keeps writing under its own actor after a load.
    write(&mut fresh, &[Op::put(TAGS, "t1", "name", "Dogs")]);
    let later = take(&mut fresh);
    apply(&mut a, &later);
    assert_eq!(rec(&a, TAGS, "t1").unwrap()["name"], Value::from("Dogs"));
}

#[test]
fn merge_changes_equivalent() {
    let mut a = AutomergeEngine::new();
    let mut b = AutomergeEngine::new();
    let mut changes = Vec::new();
    write(&mut a, &[Op::create(FILES, "f"), Op::put(FILES, "f", "name", "x")]);
    changes.push(take(&mut a));
    write(&mut a, &[Op::set_add(FILES, "f", "tags", "t"), Op::put(FILES, "f", "name", "y")]);
    changes.push(take(&mut a));
    write(&mut b, &[Op::create(TAGS, "t"), Op::put(TAGS, "t", "name", "T")]);
    changes.push(take(&mut b));
    write(&mut a, &[Op::set_remove(FILES, "f", "tags", "t")]);
    changes.push(take(&mut a));

    let parts: Vec<&[u8]> = changes.iter().map(Vec::as_slice).collect();
    let merged = a.merge_changes(&parts).unwrap();
    assert_eq!(merged, changes.concat(), "a merge is the chunks, concatenated");
    let mut one = AutomergeEngine::new();
    apply(&mut one, &merged);
    let mut each = AutomergeEngine::new();
    for c in &changes {
        apply(&mut each, c);
    }
    assert_eq!(view(&one), view(&each));
    assert!(!one.has_pending());
    assert_eq!(one.collection(FILES).unwrap()["f"].get("name"), Some(&Value::from("y")));

    // Duplicates are dropped; merges of merges and snapshots work.
    let twice = a.merge_changes(&[&merged, &changes[1], &merged]).unwrap();
    assert_eq!(twice.len(), merged.len());
    let with_snapshot = a.merge_changes(&[&changes[0], &b.snapshot().unwrap()]).unwrap();
    let mut from_snapshot = AutomergeEngine::new();
    apply(&mut from_snapshot, &with_snapshot);
    assert_eq!(from_snapshot.ids(TAGS).unwrap(), ["t"]);
    assert_eq!(from_snapshot.ids(FILES).unwrap(), ["f"]);

    // Merging a subset out of order still integrates once the rest arrives.
    let tail = a.merge_changes(&[&changes[3], &changes[1]]).unwrap();
    let mut partial = AutomergeEngine::new();
    apply(&mut partial, &tail);
    assert!(partial.has_pending());
    apply(&mut partial, &changes[0]);
    apply(&mut partial, &changes[2]);
    assert_eq!(view(&partial), view(&each));

    let nothing = a.merge_changes(&[]).unwrap();
    let before = observe(&partial);
    apply(&mut partial, &nothing);
    assert_eq!(observe(&partial), before);
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
