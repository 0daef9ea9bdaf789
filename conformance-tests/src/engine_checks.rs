//! Checks of the [`Engine`](onefolder_core::Engine) contract, one per `# Behavior` bullet.

use std::collections::BTreeSet;

use onefolder_core::{Collection, Engine, EngineError, Op, Record, Value};

use crate::EngineFactory;

fn pair<E: EngineFactory>() -> (Box<dyn Engine>, Box<dyn Engine>) {
    (E::engine(), E::engine())
}

/// Sends `from`'s local changes to `to`.
fn send(from: &mut dyn Engine, to: &mut dyn Engine) {
    if let Some(bytes) = from.take_local_changes().unwrap() {
        to.apply_remote(&bytes).unwrap();
    }
}

fn set(members: &[&str]) -> Value {
    Value::Set(members.iter().map(|m| m.to_string()).collect())
}

/// Members of a set field; an absent field and an emptied set both count as no members.
fn members(e: &dyn Engine, collection: &str, id: &str, field: &str) -> usize {
    let r = e.record(collection, id).unwrap().expect("record exists");
    r.get(field).and_then(Value::as_set).map(BTreeSet::len).unwrap_or(0)
}

/// What two replicas must agree on once they hold the same changes.
fn view(e: &dyn Engine) -> (Vec<u8>, bool, Collection, Collection) {
    (e.version(), e.has_pending(), e.collection("files").unwrap(), e.collection("tags").unwrap())
}

/// Everything one replica can observe, snapshot bytes included, for "state unchanged" checks.
fn observe(e: &dyn Engine) -> (Vec<u8>, (Vec<u8>, bool, Collection, Collection)) {
    (e.snapshot().unwrap(), view(e))
}

/// `write_then_read`: written fields read back; a record exists only between Create and Delete.
pub fn write_then_read<E: EngineFactory>() {
    let mut e = E::engine();
    let id = e.engine_id();
    assert!(!id.is_empty() && id.len() <= onefolder_core::segment::MAX_ENGINE_ID, "{id:?}");
    assert!(id.bytes().all(|b| b.is_ascii_graphic()), "{id:?}");
    // Fields written before Create are invisible.
    e.write(&[Op::put("tags", "t1", "name", "early")]).unwrap();
    assert!(e.record("tags", "t1").unwrap().is_none());
    assert!(e.collection("tags").unwrap().is_empty());
    e.write(&[
        Op::create("tags", "t1"),
        Op::put("tags", "t1", "name", "Cats"),
        Op::put("tags", "t1", "size", 42i64),
        Op::put("tags", "t1", "ratio", 0.5f64),
        Op::put("tags", "t1", "hidden", true),
        Op::put("tags", "t1", "none", Value::Null),
        Op::put("tags", "t1", "blob", Value::Bytes(vec![0, 1, 255])),
        Op::set_add("tags", "t1", "aliases", "kitty"),
    ])
    .unwrap();
    let r = e.record("tags", "t1").unwrap().expect("record exists");
    assert_eq!(r["name"], Value::from("Cats"));
    assert_eq!(r["size"], Value::Int(42));
    assert_eq!(r["ratio"], Value::Float(0.5));
    assert_eq!(r["hidden"], Value::Bool(true));
    assert_eq!(r["none"], Value::Null);
    assert_eq!(r["blob"], Value::Bytes(vec![0, 1, 255]));
    assert_eq!(r["aliases"], set(&["kitty"]));
    assert_eq!(e.ids("tags").unwrap(), vec!["t1".to_string()]);
    // Ids are sorted; `record` and `collection` agree.
    e.write(&[Op::create("tags", "t0"), Op::create("tags", "t2"), Op::set_add("tags", "t0", "sub", "t1")]).unwrap();
    assert_eq!(e.ids("tags").unwrap(), ["t0", "t1", "t2"]);
    let all = e.collection("tags").unwrap();
    assert_eq!(all.keys().collect::<Vec<_>>(), ["t0", "t1", "t2"]);
    for id in ["t0", "t1", "t2"] {
        assert_eq!(e.record("tags", id).unwrap().as_ref(), all.get(id), "record and collection agree on {id}");
    }
    e.write(&[Op::clear("tags", "t1", "size"), Op::set_remove("tags", "t1", "aliases", "kitty")]).unwrap();
    let r = e.record("tags", "t1").unwrap().unwrap();
    assert!(!r.contains_key("size"));
    assert_eq!(members(e.as_ref(), "tags", "t1", "aliases"), 0);
    // Writes to a record that was never created are invisible.
    e.write(&[Op::put("tags", "ghost", "name", "Boo")]).unwrap();
    assert!(e.record("tags", "ghost").unwrap().is_none());
    e.write(&[Op::delete("tags", "t1"), Op::delete("tags", "t0"), Op::delete("tags", "t2")]).unwrap();
    assert!(e.record("tags", "t1").unwrap().is_none());
    assert!(e.collection("tags").unwrap().is_empty());
    // Created again: the old fields are gone.
    e.write(&[Op::create("tags", "t1")]).unwrap();
    assert_eq!(e.record("tags", "t1").unwrap(), Some(Record::new()));
    e.write(&[Op::delete("tags", "t1")]).unwrap();
    // Unknown collection / record.
    assert!(e.record("nope", "t1").unwrap().is_none());
    assert!(e.collection("nope").unwrap().is_empty());
    assert!(e.ids("nope").unwrap().is_empty());
    // A set value cannot be put, and a bad batch changes nothing.
    let before = e.version();
    let err = e.write(&[Op::create("tags", "t2"), Op::put("tags", "t2", "x", set(&["a"]))]).unwrap_err();
    assert!(matches!(err, EngineError::InvalidOp(_)), "{err:?}");
    assert!(e.record("tags", "t2").unwrap().is_none());
    assert_eq!(e.version(), before);
}

/// `fields_merge_independently`: different fields both survive; the same field converges.
pub fn fields_merge_independently<E: EngineFactory>() {
    let (mut a, mut b) = pair::<E>();
    a.write(&[Op::create("tags", "t"), Op::put("tags", "t", "name", "Cats")]).unwrap();
    send(a.as_mut(), b.as_mut());
    a.write(&[Op::put("tags", "t", "name", "Kittens"), Op::put("tags", "t", "size", 1i64)]).unwrap();
    b.write(&[Op::put("tags", "t", "color", "red"), Op::put("tags", "t", "size", 2i64)]).unwrap();
    send(a.as_mut(), b.as_mut());
    send(b.as_mut(), a.as_mut());
    let (ra, rb) = (a.record("tags", "t").unwrap().unwrap(), b.record("tags", "t").unwrap().unwrap());
    assert_eq!(ra, rb);
    assert_eq!(ra["name"], Value::from("Kittens"));
    assert_eq!(ra["color"], Value::from("red"));
    assert!(ra["size"] == Value::Int(1) || ra["size"] == Value::Int(2));
    assert_eq!(a.version(), b.version());
    // A later write over the conflict settles it everywhere.
    b.write(&[Op::put("tags", "t", "size", 3i64)]).unwrap();
    send(b.as_mut(), a.as_mut());
    assert_eq!(a.record("tags", "t").unwrap().unwrap()["size"], Value::Int(3));
}

/// `concurrent_create_merges`: the same record created on two replicas holds both's fields.
pub fn concurrent_create_merges<E: EngineFactory>() {
    let (mut a, mut b) = pair::<E>();
    a.write(&[
        Op::create("files", "f"),
        Op::put("files", "f", "name", "x.jpg"),
        Op::set_add("files", "f", "tags", "t1"),
    ])
    .unwrap();
    b.write(&[Op::create("files", "f"), Op::put("files", "f", "size", 7i64), Op::set_add("files", "f", "tags", "t2")])
        .unwrap();
    send(a.as_mut(), b.as_mut());
    send(b.as_mut(), a.as_mut());
    let r = a.record("files", "f").unwrap().unwrap();
    assert_eq!(r, b.record("files", "f").unwrap().unwrap());
    assert_eq!(r["name"], Value::from("x.jpg"));
    assert_eq!(r["size"], Value::Int(7));
    assert_eq!(r["tags"], set(&["t1", "t2"]));
    for e in [&a, &b] {
        assert_eq!(e.ids("files").unwrap(), ["f"]);
    }
    // Both creations are one record: one Delete that saw them removes it everywhere.
    a.write(&[Op::delete("files", "f")]).unwrap();
    send(a.as_mut(), b.as_mut());
    assert!(b.record("files", "f").unwrap().is_none());
}

/// `set_add_wins`: concurrent add and remove of one member leaves it present.
pub fn set_add_wins<E: EngineFactory>() {
    let (mut a, mut b) = pair::<E>();
    a.write(&[Op::create("files", "f"), Op::set_add("files", "f", "tags", "t")]).unwrap();
    send(a.as_mut(), b.as_mut());
    a.write(&[Op::set_remove("files", "f", "tags", "t")]).unwrap();
    assert_eq!(members(a.as_ref(), "files", "f", "tags"), 0);
    b.write(&[Op::set_add("files", "f", "tags", "t")]).unwrap();
    send(b.as_mut(), a.as_mut());
    assert_eq!(a.record("files", "f").unwrap().unwrap()["tags"], set(&["t"]), "the re-add wins on a at once");
    send(a.as_mut(), b.as_mut());
    for e in [&a, &b] {
        assert_eq!(e.record("files", "f").unwrap().unwrap()["tags"], set(&["t"]));
    }
    // A remove that saw the add does remove it.
    a.write(&[Op::set_remove("files", "f", "tags", "t")]).unwrap();
    send(a.as_mut(), b.as_mut());
    assert_eq!(members(b.as_ref(), "files", "f", "tags"), 0);
}

/// `take_local_changes_only_local`: remote changes never come back out; `None` when idle.
pub fn take_local_changes_only_local<E: EngineFactory>() {
    let (mut a, mut b) = pair::<E>();
    assert!(a.take_local_changes().unwrap().is_none());
    a.write(&[Op::create("tags", "a"), Op::put("tags", "a", "name", "from a")]).unwrap();
    send(a.as_mut(), b.as_mut());
    assert!(a.take_local_changes().unwrap().is_none(), "taken once");
    assert!(b.take_local_changes().unwrap().is_none(), "remote changes are not local");
    b.write(&[Op::create("tags", "b"), Op::put("tags", "b", "name", "from b")]).unwrap();
    let only_b = b.take_local_changes().unwrap().unwrap();
    let mut c = E::engine();
    c.apply_remote(&only_b).unwrap();
    // b's bytes never carry a's change. An engine whose changes depend on the whole history
    // (automerge) holds b's change until a's arrives; one that tracks finer dependencies (yrs)
    // shows it at once.
    assert!(c.record("tags", "a").unwrap().is_none());
    assert!(b.take_local_changes().unwrap().is_none(), "a take drains the buffer");
    match c.record("tags", "b").unwrap() {
        Some(r) => assert_eq!(r["name"], Value::from("from b")),
        None => assert!(c.has_pending(), "b's change waits for the change of a it was made on"),
    }
    // Once a's change arrives, b's shows too.
    c.apply_remote(&a.snapshot().unwrap()).unwrap();
    assert_eq!(c.record("tags", "b").unwrap().unwrap()["name"], Value::from("from b"));
    assert!(!c.has_pending());
    // Several writes between two takes all come out; a loaded snapshot is no local change.
    let mut d = E::engine();
    d.write(&[Op::create("tags", "d")]).unwrap();
    d.write(&[Op::put("tags", "d", "name", "D")]).unwrap();
    let mut e = E::engine();
    e.apply_remote(&d.take_local_changes().unwrap().unwrap()).unwrap();
    assert_eq!(e.record("tags", "d").unwrap().unwrap()["name"], Value::from("D"));
    let mut f = E::engine();
    f.load_snapshot(&c.snapshot().unwrap()).unwrap();
    assert!(f.take_local_changes().unwrap().is_none());
}

/// `apply_idempotent_any_order`: duplicates and reordering converge; missing dependencies wait.
pub fn apply_idempotent_any_order<E: EngineFactory>() {
    let mut a = E::engine();
    let mut changes = Vec::new();
    a.write(&[Op::create("tags", "t"), Op::put("tags", "t", "name", "one")]).unwrap();
    changes.push(a.take_local_changes().unwrap().unwrap());
    a.write(&[Op::put("tags", "t", "name", "two"), Op::set_add("tags", "t", "s", "m")]).unwrap();
    changes.push(a.take_local_changes().unwrap().unwrap());
    a.write(&[Op::put("tags", "t", "color", "blue")]).unwrap();
    changes.push(a.take_local_changes().unwrap().unwrap());
    let want = a.collection("tags").unwrap();

    let mut b = E::engine();
    b.apply_remote(&changes[1]).unwrap();
    assert!(b.has_pending(), "the overwrite waits for the first change");
    assert!(b.record("tags", "t").unwrap().is_none(), "nothing of a waiting change is visible");
    for i in [2, 2, 1] {
        b.apply_remote(&changes[i]).unwrap();
    }
    assert!(b.has_pending(), "later changes wait for the first");
    b.apply_remote(&changes[0]).unwrap();
    b.apply_remote(&changes[1]).unwrap();
    assert!(!b.has_pending());
    assert_eq!(b.collection("tags").unwrap(), want);
    assert_eq!(b.version(), a.version());
    // Everything again, in yet another order: nothing changes, and nothing is local.
    let before = observe(b.as_ref());
    for i in [1, 0, 2] {
        b.apply_remote(&changes[i]).unwrap();
    }
    assert_eq!(observe(b.as_ref()), before);
    assert!(b.take_local_changes().unwrap().is_none());
}

/// `apply_garbage_is_corrupt`: garbage gives `Corrupt`, never a panic, and changes nothing.
pub fn apply_garbage_is_corrupt<E: EngineFactory>() {
    let mut e = E::engine();
    e.write(&[Op::create("tags", "t"), Op::put("tags", "t", "name", "x")]).unwrap();
    e.take_local_changes().unwrap();
    let before = (e.collection("tags").unwrap(), e.version());
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut garbage: Vec<Vec<u8>> =
        vec![vec![], vec![0], vec![0xff; 4], vec![0x80; 16], b"{\"json\":true}".to_vec(), vec![1, 2, 3, 4]];
    for len in [5usize, 17, 64, 300] {
        for _ in 0..25 {
            garbage.push(
                (0..len)
                    .map(|_| {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        rng as u8
                    })
                    .collect(),
            );
        }
    }
    for g in &garbage {
        // Some inputs are valid empty changes; all that matters is no panic and no damage.
        if let Err(err) = e.apply_remote(g) {
            assert!(matches!(err, EngineError::Corrupt(_)), "{err:?}");
        }
    }
    assert_eq!(e.collection("tags").unwrap(), before.0);
    assert!(e.take_local_changes().unwrap().is_none());
}

/// `snapshot_round_trip`: a snapshot loaded into an empty engine reproduces every collection.
pub fn snapshot_round_trip<E: EngineFactory>() {
    let mut a = E::engine();
    for i in 0..20 {
        let id = format!("f{i}");
        a.write(&[
            Op::create("files", &id),
            Op::put("files", &id, "size", i as i64),
            Op::set_add("files", &id, "tags", "t"),
        ])
        .unwrap();
    }
    a.write(&[Op::delete("files", "f3")]).unwrap();
    a.write(&[
        Op::create("tags", "t"),
        Op::put("tags", "t", "order", 0.25),
        Op::put("tags", "t", "x", Value::Bytes(vec![0, 1])),
    ])
    .unwrap();
    let snap = a.snapshot().unwrap();
    let mut b = E::engine();
    b.load_snapshot(&snap).unwrap();
    assert_eq!(view(b.as_ref()), view(a.as_ref()));
    assert_eq!(b.collection("files").unwrap().len(), 19);
    assert!(b.take_local_changes().unwrap().is_none(), "a loaded snapshot is no local change");
    // A snapshot is also valid input for apply_remote (snapshot segments); loading it twice
    // changes nothing.
    let mut c = E::engine();
    c.apply_remote(&snap).unwrap();
    c.load_snapshot(&snap).unwrap();
    assert_eq!(view(c.as_ref()), view(a.as_ref()));
    // A snapshot merges into a replica with its own history.
    let mut busy = E::engine();
    busy.write(&[Op::create("tags", "own")]).unwrap();
    busy.load_snapshot(&snap).unwrap();
    assert_eq!(busy.ids("tags").unwrap(), ["own", "t"]);
    assert_eq!(busy.collection("files").unwrap(), a.collection("files").unwrap());
    // The loader keeps writing after a load, and its changes reach the original.
    b.write(&[Op::put("tags", "t", "name", "Dogs")]).unwrap();
    let later = b.take_local_changes().unwrap().unwrap();
    a.apply_remote(&later).unwrap();
    assert_eq!(a.record("tags", "t").unwrap().unwrap()["name"], Value::from("Dogs"));
    // A snapshot carries changes that are still waiting for their dependencies.
    a.take_local_changes().unwrap();
    a.write(&[Op::put("tags", "t", "name", "Birds")]).unwrap();
    let later = a.take_local_changes().unwrap().unwrap();
    let mut waiting = E::engine();
    waiting.apply_remote(&later).unwrap();
    assert!(waiting.has_pending());
    let mut restored = E::engine();
    restored.load_snapshot(&waiting.snapshot().unwrap()).unwrap();
    assert!(restored.has_pending(), "the snapshot carries the waiting change");
    restored.load_snapshot(&a.snapshot().unwrap()).unwrap();
    assert!(!restored.has_pending());
    assert_eq!(view(restored.as_ref()), view(a.as_ref()));
}

/// `merge_changes_equivalent`: one merged blob equals applying each change.
pub fn merge_changes_equivalent<E: EngineFactory>() {
    let (mut a, mut other) = pair::<E>();
    let mut changes = Vec::new();
    for i in 0..5 {
        let id = format!("t{i}");
        a.write(&[Op::create("tags", &id), Op::put("tags", &id, "name", format!("tag {i}"))]).unwrap();
        changes.push(a.take_local_changes().unwrap().unwrap());
    }
    // Changes of another replica, and ones that depend on earlier ones.
    other.write(&[Op::create("files", "f"), Op::set_add("files", "f", "tags", "t0")]).unwrap();
    changes.push(other.take_local_changes().unwrap().unwrap());
    a.write(&[Op::put("tags", "t1", "name", "renamed"), Op::set_add("tags", "t1", "s", "m")]).unwrap();
    changes.push(a.take_local_changes().unwrap().unwrap());

    let parts: Vec<&[u8]> = changes.iter().map(Vec::as_slice).collect();
    let merged = a.merge_changes(&parts).unwrap();
    let mut one = E::engine();
    one.apply_remote(&merged).unwrap();
    let mut each = E::engine();
    for c in &changes {
        each.apply_remote(c).unwrap();
    }
    assert!(!one.has_pending());
    assert_eq!(view(one.as_ref()), view(each.as_ref()));
    assert_eq!(one.record("tags", "t1").unwrap().unwrap()["name"], Value::from("renamed"));

    // Merging a subset out of order still integrates once the rest arrives.
    let tail = a.merge_changes(&[&changes[6], &changes[2]]).unwrap();
    let mut partial = E::engine();
    partial.apply_remote(&tail).unwrap();
    assert!(partial.has_pending());
    for (i, c) in changes.iter().enumerate() {
        if i != 2 && i != 6 {
            partial.apply_remote(c).unwrap();
        }
    }
    assert_eq!(view(partial.as_ref()), view(each.as_ref()));

    // A merge of nothing is valid and changes nothing.
    let nothing = a.merge_changes(&[]).unwrap();
    let before = observe(partial.as_ref());
    partial.apply_remote(&nothing).unwrap();
    assert_eq!(observe(partial.as_ref()), before);
}

/// `cheap_reads_agree`: `contains`, `field`, `for_each_record`, `for_each_field` and `for_each_members` agree with `record` and
/// `collection`, locally and on a replica that received the changes.
pub fn cheap_reads_agree<E: EngineFactory>() {
    let (mut a, mut b) = pair::<E>();
    a.write(&[
        Op::create("files", "f1"),
        Op::put("files", "f1", "name", "a.jpg"),
        Op::put("files", "f1", "meta", Value::Bytes(vec![1, 2, 3])),
        Op::set_add("files", "f1", "tags", "t1"),
        Op::set_add("files", "f1", "tags", "t2/with a slash"),
        Op::create("files", "f2"),
        Op::set_add("files", "f2", "tags", "t1"),
        Op::set_remove("files", "f2", "tags", "t1"),
        Op::put("files", "ghost", "name", "never created"),
    ])
    .unwrap();
    send(a.as_mut(), b.as_mut());
    for e in [&a, &b] {
        let all = e.collection("files").unwrap();
        let mut visited = Collection::new();
        e.for_each_record("files", &mut |id, r| {
            assert!(visited.insert(id.to_owned(), r).is_none(), "{id} visited twice");
        })
        .unwrap();
        assert_eq!(visited, all);
        for field in ["name", "tags", "missing"] {
            let mut fields = std::collections::BTreeMap::new();
            e.for_each_field("files", field, &mut |id, v| {
                assert!(fields.insert(id.to_owned(), v).is_none(), "{id} visited twice");
            })
            .unwrap();
            let want: std::collections::BTreeMap<String, Option<Value>> =
                all.iter().map(|(id, r)| (id.clone(), r.get(field).cloned())).collect();
            assert_eq!(fields, want, "for_each_field {field}");
            let mut members = std::collections::BTreeMap::new();
            e.for_each_members("files", field, &mut |id, m| {
                let m: std::collections::BTreeSet<String> = m.iter().map(|m| (*m).to_owned()).collect();
                assert!(members.insert(id.to_owned(), m).is_none(), "{id} visited twice");
            })
            .unwrap();
            let want: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> = all
                .iter()
                .map(|(id, r)| (id.clone(), onefolder_core::engine::scan::members(r, field).cloned().collect()))
                .collect();
            assert_eq!(members, want, "for_each_members {field}");
        }
        for id in ["f1", "f2", "ghost", "nope"] {
            let record = e.record("files", id).unwrap();
            assert_eq!(e.contains("files", id).unwrap(), record.is_some(), "contains {id}");
            for field in ["name", "meta", "tags", "missing"] {
                let want = record.as_ref().and_then(|r| r.get(field)).cloned();
                assert_eq!(e.field("files", id, field).unwrap(), want, "{id}.{field}");
            }
        }
        assert_eq!(e.field("files", "f1", "tags").unwrap(), Some(set(&["t1", "t2/with a slash"])));
        assert!(!e.contains("nope", "f1").unwrap());
        e.for_each_record("nope", &mut |id, _| panic!("{id} in an unknown collection")).unwrap();
    }
}

/// `replay_equals_applies_in_order`: a replay of snapshot + log shows what applying the entries
/// one by one showed, also while an entry waits for a missing dependency.
pub fn replay_equals_applies_in_order<E: EngineFactory>() {
    let (mut peer, mut own) = pair::<E>();
    // The peer's first change never arrives before the replay; its second depends on it (it
    // overwrites a field the first wrote); its third depends on nothing of the first.
    peer.write(&[Op::create("tags", "t1"), Op::put("tags", "t1", "name", "one")]).unwrap();
    let first = peer.take_local_changes().unwrap().unwrap();
    peer.write(&[Op::put("tags", "t1", "name", "renamed")]).unwrap();
    let second = peer.take_local_changes().unwrap().unwrap();
    peer.write(&[Op::create("files", "f1"), Op::put("files", "f1", "path", "a.jpg")]).unwrap();
    let third = peer.take_local_changes().unwrap().unwrap();

    own.write(&[Op::create("tags", "mine"), Op::put("tags", "mine", "name", "before the snapshot")]).unwrap();
    own.take_local_changes().unwrap();
    let snapshot = own.snapshot().unwrap();
    own.write(&[Op::put("tags", "mine", "color", "red")]).unwrap();
    let local = own.take_local_changes().unwrap().unwrap();
    let log: Vec<&[u8]> = vec![&second, &local, &third];

    let mut live = E::engine();
    live.load_snapshot(&snapshot).unwrap();
    for entry in &log {
        live.apply_remote(entry).unwrap();
    }
    let mut replayed = E::engine();
    replayed.replay(Some(&snapshot), &log).unwrap();
    assert_eq!(view(replayed.as_ref()), view(live.as_ref()), "replay differs while a dependency is missing");
    assert_eq!(replayed.record("tags", "mine").unwrap().unwrap()["color"], Value::from("red"));

    // Once the missing change arrives, both hold everything.
    for e in [&mut live, &mut replayed] {
        e.apply_remote(&first).unwrap();
        assert!(!e.has_pending());
    }
    assert_eq!(view(replayed.as_ref()), view(live.as_ref()));
    assert_eq!(replayed.record("tags", "t1").unwrap().unwrap()["name"], Value::from("renamed"));
    assert!(replayed.record("files", "f1").unwrap().is_some());

    // A log with every dependency present, without a snapshot; one entry; nothing.
    let full: Vec<&[u8]> = vec![&first, &second, &third];
    let mut each = E::engine();
    full.iter().for_each(|entry| each.apply_remote(entry).unwrap());
    for log in [&full[..], &full[..1], &[]] {
        let mut expected = E::engine();
        log.iter().for_each(|entry| expected.apply_remote(entry).unwrap());
        let mut replayed = E::engine();
        replayed.replay(None, log).unwrap();
        assert_eq!(view(replayed.as_ref()), view(expected.as_ref()));
    }
    let mut replayed = E::engine();
    replayed.replay(None, &full).unwrap();
    assert_eq!(view(replayed.as_ref()), view(each.as_ref()));
}

/// A step of [`CHANGING_STEPS`]: edits on two replicas and the exchange of their changes.
type Step = (&'static str, fn(&mut dyn Engine, &mut dyn Engine));

/// Edits whose effect on reads is easy to get wrong: a Create that only shows fields written
/// before it, a delete raced by writes, a re-create that shows them again, a scalar that hides
/// a set, and a snapshot load. `a` and `b` start empty; their "files" carry the set "tags".
const CHANGING_STEPS: &[Step] = &[
    ("create", |a, b| {
        a.write(&[
            Op::create("files", "f1"),
            Op::set_add("files", "f1", "tags", "t1"),
            Op::set_add("files", "f1", "tags", "t2"),
            Op::create("files", "f2"),
            Op::create("files", "f3"),
            Op::set_add("files", "f3", "tags", "t1"),
            Op::create("tags", "t1"),
        ])
        .unwrap();
        send(a, b);
    }),
    ("remove and add members", |a, b| {
        b.write(&[Op::set_remove("files", "f1", "tags", "t2"), Op::set_add("files", "f2", "tags", "t3")]).unwrap();
        send(b, a);
    }),
    ("fields first, create later", |a, b| {
        a.write(&[Op::put("files", "ghost", "name", "g"), Op::set_add("files", "ghost", "tags", "t1")]).unwrap();
        send(a, b);
        b.write(&[Op::create("files", "ghost")]).unwrap();
        send(b, a);
    }),
    ("a delete raced by writes", |a, b| {
        a.write(&[Op::delete("files", "f3")]).unwrap();
        b.write(&[Op::set_add("files", "f3", "tags", "t9"), Op::put("files", "f3", "name", "raced")]).unwrap();
        send(a, b);
        send(b, a);
    }),
    ("created again", |a, b| {
        a.write(&[Op::create("files", "f3")]).unwrap();
        send(a, b);
    }),
    ("a scalar hides a set", |a, b| {
        b.write(&[Op::put("files", "f2", "tags", "scalar"), Op::delete("tags", "t1")]).unwrap();
        send(b, a);
    }),
    ("snapshot loaded", |a, b| {
        let snapshot = b.snapshot().unwrap();
        a.load_snapshot(&snapshot).unwrap();
        b.write(&[Op::set_add("files", "f1", "tags", "t4")]).unwrap();
        send(b, a);
    }),
];

/// Both replicas' records of the collections the steps touch, by (collection, id).
fn records(e: &dyn Engine) -> std::collections::BTreeMap<(String, String), Record> {
    let mut all = std::collections::BTreeMap::new();
    for c in ["files", "tags"] {
        for (id, r) in e.collection(c).unwrap() {
            all.insert((c.to_owned(), id), r);
        }
    }
    all
}

/// `changes_are_reported`: after each step, [`Engine::take_changed`] names every record that
/// reads differently; and once a collection was seen changing, local writes and remote changes
/// are reported as records, not as "unknown" (what keeps an index cheap).
pub fn changes_are_reported<E: EngineFactory>() {
    let (mut a, mut b) = pair::<E>();
    // Warm-up: each replica sees both collections change once.
    a.write(&[Op::create("files", "warm"), Op::create("tags", "warm")]).unwrap();
    send(a.as_mut(), b.as_mut());
    b.write(&[Op::delete("files", "warm"), Op::delete("tags", "warm")]).unwrap();
    send(b.as_mut(), a.as_mut());
    a.take_changed();
    b.take_changed();
    for (name, step) in CHANGING_STEPS {
        let before = (records(a.as_ref()), records(b.as_ref()));
        step(a.as_mut(), b.as_mut());
        for (replica, e, before) in [("a", &mut a, before.0), ("b", &mut b, before.1)] {
            let after = records(e.as_ref());
            let differ: BTreeSet<(String, String)> =
                before.keys().chain(after.keys()).filter(|k| before.get(*k) != after.get(*k)).cloned().collect();
            match e.take_changed() {
                onefolder_core::Changed::Records(reported) => {
                    let missed: Vec<_> = differ.difference(&reported).collect();
                    assert!(missed.is_empty(), "step {name:?}: {replica} did not report {missed:?}");
                }
                onefolder_core::Changed::Unknown => {
                    assert_eq!(*name, "snapshot loaded", "step {name:?}: {replica} lost track of its changes");
                }
            }
        }
    }
    // A replica that starts from a snapshot (a device reopening) reports a peer's overwrite of
    // a field it loaded, and a peer's removal of a member, once it has seen each collection change.
    let mut c = E::engine();
    c.load_snapshot(&a.snapshot().unwrap()).unwrap();
    a.write(&[Op::put("files", "ghost", "name", "warm"), Op::put("tags", "t4", "name", "warm")]).unwrap();
    send(a.as_mut(), c.as_mut());
    c.take_changed();
    // Its own first writes after the load: a delete and a member removal of loaded records.
    let mut d = E::engine();
    d.load_snapshot(&a.snapshot().unwrap()).unwrap();
    d.take_changed();
    for (ops, id) in
        [(vec![Op::delete("files", "f2")], "f2"), (vec![Op::set_remove("files", "ghost", "tags", "t1")], "ghost")]
    {
        d.write(&ops).unwrap();
        match d.take_changed() {
            onefolder_core::Changed::Records(r) => {
                assert!(r.contains(&("files".to_owned(), id.to_owned())), "{ops:?} was not reported: {r:?}")
            }
            // Allowed for the first change of a collection after a load (its index gets an
            // observer), never after.
            onefolder_core::Changed::Unknown => assert_eq!(id, "f2", "{ops:?}: lost track of a local write"),
        }
    }
    // An overwrite of a field it loaded (the update does not name the record), then a removal
    // (the update holds only deletions).
    for (ops, id) in [
        (vec![Op::put("files", "f3", "name", "overwritten")], "f3"),
        (vec![Op::set_remove("files", "f1", "tags", "t1")], "f1"),
    ] {
        a.write(&ops).unwrap();
        send(a.as_mut(), c.as_mut());
        match c.take_changed() {
            onefolder_core::Changed::Records(r) => {
                assert!(r.contains(&("files".to_owned(), id.to_owned())), "{ops:?} was not reported: {r:?}")
            }
            onefolder_core::Changed::Unknown => panic!("a replica loaded from a snapshot lost track of {ops:?}"),
        }
    }
}

/// `indexed_queries_agree`: through [`onefolder_core::Indexed`], `ids_with_member`,
/// `ids_with_any_member`, `ids_without_members`, `member_counts` and `count` equal the scans of
/// [`onefolder_core::engine::scan`] after every step, the index built before the first.
pub fn indexed_queries_agree<E: EngineFactory>() {
    use onefolder_core::Indexed;
    use onefolder_core::engine::scan;
    let (mut a, mut b) = (Indexed::new(E::engine()), Indexed::new(E::engine()));
    let check = |name: &str, e: &Indexed<Box<dyn Engine>>| {
        let inner = e.inner().as_ref();
        for member in ["t1", "t2", "t3", "t4", "t9", "none"] {
            assert_eq!(
                e.ids_with_member("files", "tags", member).unwrap(),
                scan::ids_with_member(inner, "files", "tags", member).unwrap(),
                "step {name:?}: files with {member}"
            );
        }
        for members in [&["t1", "t2"][..], &["t3", "t9", "none"], &["t1", "t2", "t3", "t4"], &[]] {
            let members: std::collections::BTreeSet<String> = members.iter().map(|m| m.to_string()).collect();
            assert_eq!(
                e.ids_with_any_member("files", "tags", &members).unwrap(),
                scan::ids_with_any_member(inner, "files", "tags", &members).unwrap(),
                "step {name:?}: files with any of {members:?}"
            );
        }
        assert_eq!(
            e.ids_without_members("files", "tags").unwrap(),
            scan::ids_without_members(inner, "files", "tags").unwrap(),
            "step {name:?}: files without members"
        );
        assert_eq!(
            e.member_counts("files", "tags").unwrap(),
            scan::member_counts(inner, "files", "tags").unwrap(),
            "step {name:?}: member counts"
        );
        assert_eq!(e.count("files").unwrap(), inner.ids("files").unwrap().len(), "step {name:?}: count");
    };
    check("before", &a);
    check("before", &b);
    for (name, step) in CHANGING_STEPS {
        step(&mut a, &mut b);
        check(name, &a);
        check(name, &b);
    }
    assert_eq!(a.ids_with_member("files", "tags", "t1").unwrap(), ["f1", "ghost"]);
    assert_eq!(a.ids_without_members("files", "tags").unwrap(), ["f2"], "the scalar hides f2's set");

    // A replica reopened from a snapshot, its index built at once: its own edits and a peer's.
    let mut c = Indexed::new(E::engine());
    c.load_snapshot(&a.snapshot().unwrap()).unwrap();
    check("reopened", &c);
    c.write(&[Op::delete("files", "f1")]).unwrap();
    check("reopened, then a local delete", &c);
    c.write(&[Op::set_remove("files", "ghost", "tags", "t1")]).unwrap();
    check("reopened, then a local member removal", &c);
    a.write(&[Op::set_add("files", "f3", "tags", "t2"), Op::delete("files", "ghost")]).unwrap();
    send(&mut a, &mut c);
    check("reopened, then a peer's edits", &c);
}

/// Every engine check as a test for the factory `E` in scope; expand it per adapter with
/// [`for_each_engine!`](crate::for_each_engine).
#[macro_export]
macro_rules! engine_conformance {
    () => {
            $crate::engine_conformance!(@tests E;
                write_then_read, fields_merge_independently, concurrent_create_merges, set_add_wins,
                take_local_changes_only_local, apply_idempotent_any_order, apply_garbage_is_corrupt,
                snapshot_round_trip, merge_changes_equivalent, replay_equals_applies_in_order, cheap_reads_agree,
                changes_are_reported, indexed_queries_agree,
            );
    };
    (@tests $e:ty; $($test:ident),* $(,)?) => {
        $( #[test] fn $test() { $crate::engine_checks::$test::<$e>(); } )*
    };
}
