//! Holding remote changes back until their dependencies are here, and checking each one's place
//! in the history before automerge sees it.
//!
//! automerge 0.12 queues a change whose dependencies are missing and applies it later, without
//! asking again. It trusts what a change says about its history, and a change that lies makes it
//! panic half-way through a batch, or — worse — apply and leave a document whose snapshot no
//! longer loads, or on which every later local change panics. Found by forging changes with
//! valid checksums: a seq 2 from an actor nobody has seen, a pred naming an op nobody has,
//! counters reused from an earlier change. So this adapter keeps its own waiting list and hands
//! automerge only changes whose dependencies are all applied, after checking what every real
//! automerge writer guarantees (see `Transaction` in automerge 0.12):
//!
//! - **counters**: `start_op` is one more than the largest `max_op` of its dependencies (a
//!   writer starts after every op it has seen, and its dependencies are its whole history), or 1
//!   without dependencies;
//! - **sequence**: seq 1, or one of its dependencies is the same actor's change with seq − 1
//!   (automerge adds the actor's last change to the dependencies when it is not a head);
//! - **preds**: every op it overwrites or deletes exists (in the document, a snapshot arriving
//!   with it, an earlier change of the batch, or earlier in the change itself).
//!
//! A change that fails a check when it arrives makes the whole input `Corrupt` (nothing
//! changes). One that waited and fails once its dependencies arrive is dropped with a warning,
//! with everything that depends on it: its bytes were accepted earlier and can never apply.

use std::collections::{HashMap, HashSet};

use automerge::{ActorId, Automerge, ChangeHash, ObjId};

use crate::chunks::ParsedChange;

/// What to do with the changes at hand.
pub(crate) struct Plan {
    /// Changes to apply now, each after its dependencies.
    pub(crate) ready: Vec<ParsedChange>,
    /// Changes that keep waiting for dependencies.
    pub(crate) waiting: Vec<ParsedChange>,
    /// Changes that waited and turned out inconsistent (or depend on one), with why.
    pub(crate) rejected: Vec<(ChangeHash, String)>,
}

/// What a check needs to know about a change.
struct Meta {
    actor: ActorId,
    seq: u64,
    max_op: u64,
}

/// Everything known while planning: the document, the snapshots arriving with the input, and
/// the changes found ready so far.
struct Known<'a> {
    doc: &'a Automerge,
    documents: &'a [Automerge],
    batch: HashMap<ChangeHash, Meta>,
    /// Op counter ranges of the ready changes, per actor.
    batch_ops: HashMap<ActorId, Vec<(u64, u64)>>,
}

impl Known<'_> {
    fn docs(&self) -> impl Iterator<Item = &Automerge> {
        std::iter::once(self.doc).chain(self.documents)
    }

    /// Whether a change is applied already (or arrives in a snapshot).
    fn applied(&self, hash: &ChangeHash) -> bool {
        self.docs().any(|d| d.get_change_meta_by_hash(hash).is_some())
    }

    fn meta(&self, hash: &ChangeHash) -> Option<Meta> {
        if let Some(m) = self.batch.get(hash) {
            return Some(Meta { actor: m.actor.clone(), seq: m.seq, max_op: m.max_op });
        }
        self.docs().find_map(|d| d.get_change_meta_by_hash(hash)).map(|m| Meta {
            actor: m.actor.into_owned(),
            seq: m.seq,
            max_op: m.max_op,
        })
    }

    /// Whether the op (counter, actor) exists.
    fn has_op(&self, counter: u64, actor: &ActorId) -> bool {
        if self.batch_ops.get(actor).is_some_and(|ranges| ranges.iter().any(|(s, e)| (*s..=*e).contains(&counter))) {
            return true;
        }
        // The actor index is only a hint; `usize::MAX` makes automerge look the actor up.
        let id = ObjId::Id(counter, actor.clone(), usize::MAX);
        self.docs().any(|d| d.hash_for_opid(&id).is_some())
    }

    fn add(&mut self, change: &ParsedChange) {
        let c = &change.change;
        let max_op = c.start_op().get() + c.len() as u64 - 1;
        self.batch.insert(c.hash(), Meta { actor: c.actor_id().clone(), seq: c.seq(), max_op });
        if !c.is_empty() {
            self.batch_ops.entry(c.actor_id().clone()).or_default().push((c.start_op().get(), max_op));
        }
    }

    /// The checks of the module docs, for a change whose dependencies are all known.
    fn check(&self, change: &ParsedChange) -> Result<(), String> {
        let c = &change.change;
        let mut deps = Vec::with_capacity(c.deps().len());
        for dep in c.deps() {
            deps.push(self.meta(dep).ok_or_else(|| format!("dependency {dep} vanished"))?);
        }
        let expected = deps.iter().map(|m| m.max_op).max().unwrap_or(0) + 1;
        if c.start_op().get() != expected {
            return Err(format!(
                "its ops start at {}, after its dependencies they must start at {expected}",
                c.start_op()
            ));
        }
        if c.seq() > 1 && !deps.iter().any(|m| m.actor == *c.actor_id() && m.seq + 1 == c.seq()) {
            return Err(format!("seq {} of its actor does not follow that actor's seq {}", c.seq(), c.seq() - 1));
        }
        // An op may overwrite an earlier op of the same change (a put then a delete of one key).
        let own = c.start_op().get()..c.start_op().get() + c.len() as u64;
        let exists = |counter: u64, actor: &ActorId| {
            (actor == c.actor_id() && own.contains(&counter)) || self.has_op(counter, actor)
        };
        if let Some((counter, actor)) = change.preds.iter().find(|(counter, actor)| !exists(*counter, actor)) {
            return Err(format!("it overwrites op {counter}@{actor}, which does not exist"));
        }
        Ok(())
    }
}

/// Decides which of `waiting` (held from earlier inputs) and `incoming` apply now, given the
/// document and the snapshots arriving with the input. `rejected` are changes dropped earlier.
/// Fails (and nothing may change) when an incoming change is inconsistent.
pub(crate) fn plan(
    doc: &Automerge,
    documents: &[Automerge],
    waiting: &[ParsedChange],
    incoming: Vec<ParsedChange>,
    rejected: &HashSet<ChangeHash>,
) -> Result<Plan, String> {
    let mut known = Known { doc, documents, batch: HashMap::new(), batch_ops: HashMap::new() };
    // Candidates: what waits, then what is new (not applied, not waiting, not dropped before).
    let old = waiting.len();
    let mut candidates: Vec<ParsedChange> = waiting.to_vec();
    let mut index: HashMap<ChangeHash, usize> =
        candidates.iter().enumerate().map(|(i, c)| (c.change.hash(), i)).collect();
    for change in incoming {
        let hash = change.change.hash();
        if index.contains_key(&hash) || rejected.contains(&hash) || known.applied(&hash) {
            continue;
        }
        index.insert(hash, candidates.len());
        candidates.push(change);
    }

    // Kahn's algorithm over the candidates; a dependency that is neither applied nor a
    // candidate keeps its dependents waiting.
    let n = candidates.len();
    let mut missing = vec![0usize; n];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut doomed = vec![false; n];
    for (i, c) in candidates.iter().enumerate() {
        for dep in c.change.deps() {
            if rejected.contains(dep) {
                doomed[i] = true;
            } else if let Some(&j) = index.get(dep) {
                missing[i] += 1;
                dependents[j].push(i);
            } else if !known.applied(dep) {
                missing[i] += 1;
            }
        }
    }
    let mut dropped: Vec<(usize, String)> = Vec::new();
    let mut stack: Vec<usize> = (0..n).filter(|&i| missing[i] == 0 && !doomed[i]).collect();
    stack.reverse();
    let mut ready = Vec::new();
    while let Some(i) = stack.pop() {
        match known.check(&candidates[i]) {
            Ok(()) => {
                known.add(&candidates[i]);
                ready.push(i);
                for &d in &dependents[i] {
                    missing[d] -= 1;
                    if missing[d] == 0 && !doomed[d] {
                        stack.push(d);
                    }
                }
            }
            Err(e) if i >= old => return Err(format!("change {}: {e}", candidates[i].change.hash())),
            Err(e) => dropped.push((i, e)),
        }
    }
    // Everything that depends on a dropped or doomed change is dropped too.
    let mut gone = vec![false; n];
    let mut reasons: Vec<(usize, String)> = Vec::new();
    let mut todo: Vec<(usize, String)> = dropped;
    todo.extend((0..n).filter(|&i| doomed[i]).map(|i| (i, "it depends on a change dropped before".to_owned())));
    while let Some((i, why)) = todo.pop() {
        if std::mem::replace(&mut gone[i], true) {
            continue;
        }
        let hash = candidates[i].change.hash();
        todo.extend(dependents[i].iter().map(|&d| (d, format!("it depends on {hash}, which was dropped"))));
        reasons.push((i, why));
    }

    let is_ready: HashSet<usize> = ready.iter().copied().collect();
    let rejected = reasons.into_iter().map(|(i, why)| (candidates[i].change.hash(), why)).collect();
    let mut slots: Vec<Option<ParsedChange>> = candidates.into_iter().map(Some).collect();
    let ready_changes = ready.iter().map(|&i| slots[i].take().expect("each candidate is taken once")).collect();
    let waiting = slots
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !gone[*i] && !is_ready.contains(i))
        .filter_map(|(_, c)| c)
        .collect();
    Ok(Plan { ready: ready_changes, waiting, rejected })
}
