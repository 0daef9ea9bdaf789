//! The workspace builds automerge from `vendor/automerge` (0.12.0 with one change, in
//! `src/op_set2/change/batch.rs`): applying a change to a large map seeks each key the change
//! writes instead of walking every op of the map, so one small change costs in proportion to
//! itself, not to the library. The same crate still takes automerge's own full walk whenever a
//! patch log is active; this test applies the same changes both ways and requires the same
//! document, byte for byte, through concurrent overwrites, deletions and batches of changes.

use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, Change, ChangeHash, PatchLog, ROOT, ReadDoc};

/// A small deterministic generator (xorshift64*), so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn key(k: u64) -> String {
    format!("s/files/{k:08x}/tags/t{}", k % 7)
}

fn writer(actor: u8) -> Automerge {
    Automerge::new().with_actor(ActorId::from(vec![actor; 16]))
}

/// One transaction of 1–6 puts and deletions on keys of the first `keys`, often the same
/// few keys, so that concurrent writers conflict.
fn edit(doc: &mut Automerge, rng: &mut Rng, keys: u64) {
    let mut tx = doc.transaction();
    for _ in 0..=rng.below(6) {
        let k = if rng.below(3) == 0 { rng.below(8) } else { rng.below(keys) };
        match rng.below(5) {
            0 => tx.delete(ROOT, key(k)).unwrap(),
            1 => tx.put(ROOT, key(k), format!("v{}", rng.below(1000))).unwrap(),
            _ => tx.put(ROOT, key(k), true).unwrap(),
        }
    }
    tx.commit();
}

fn changes_since(doc: &Automerge, heads: &[ChangeHash]) -> Vec<Change> {
    doc.get_changes(heads)
}

#[test]
fn seeking_keys_merges_as_automerges_full_walk() {
    const KEYS: u64 = 3_000;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut a = writer(1);
    let mut tx = a.transaction();
    for k in 0..KEYS {
        tx.put(ROOT, key(k), k as i64).unwrap();
    }
    tx.commit();
    let base = a.save();
    let mut b = Automerge::load(&base).unwrap().with_actor(ActorId::from(vec![2; 16]));
    let mut fast = Automerge::load(&base).unwrap().with_actor(ActorId::from(vec![3; 16]));
    let mut full = Automerge::load(&base).unwrap().with_actor(ActorId::from(vec![4; 16]));

    for round in 0..60 {
        let (heads_a, heads_b) = (a.get_heads(), b.get_heads());
        for _ in 0..=rng.below(3) {
            edit(&mut a, &mut rng, KEYS);
        }
        for _ in 0..=rng.below(3) {
            edit(&mut b, &mut rng, KEYS);
        }
        let mut batch = changes_since(&a, &heads_a);
        batch.extend(changes_since(&b, &heads_b));
        // The same calls on both: the whole batch at once, or one change at a time (b's first).
        let calls: Vec<Vec<Change>> =
            if round % 2 == 0 { vec![batch] } else { batch.into_iter().rev().map(|c| vec![c]).collect() };
        for changes in calls {
            fast.apply_changes(changes.clone()).unwrap();
            full.apply_changes_log_patches(changes, &mut PatchLog::active()).unwrap();
        }
        if round % 5 == 4 {
            // The writers meet: their next edits overwrite each other's.
            a.merge(&mut b.clone()).unwrap();
            b.merge(&mut a.clone()).unwrap();
        }
        assert_eq!(fast.get_heads(), full.get_heads(), "round {round}: heads");
    }
    for k in 0..KEYS {
        let (f, w) = (fast.get_all(ROOT, key(k)).unwrap(), full.get_all(ROOT, key(k)).unwrap());
        assert_eq!(f, w, "key {k}: the conflicting values");
    }
    assert_eq!(fast.save(), full.save(), "the saved documents");
    assert_eq!(fast.length(ROOT), full.length(ROOT));
}
