//! Which records a transaction changed, for [`Engine::take_changed`](onefolder_core::Engine::take_changed).
//!
//! Two kinds of yrs callbacks feed one [`Tracker`]:
//! - an after-transaction callback on the document: every root map the transaction changed
//!   whose name is `<collection>/<id>` is a changed record;
//! - a map observer on each collection index (`<collection>`): its changed keys are the
//!   records created or deleted. A Create or Delete need not touch the record map (a record
//!   re-created whose fields raced its delete shows them again without a write to them).
//!
//! An index map gets its observer the first time it is seen changing; that transaction's
//! index keys are unknown, so it reports [`Changed::Unknown`]. Snapshot loads and replays
//! pause tracking (they change everything) and report `Unknown` too.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use onefolder_core::Changed;
use yrs::branch::BranchID;
use yrs::types::Observable;
use yrs::{Doc, MapRef, ReadTxn, Transact, TransactionMut};

use crate::SEPARATOR;

/// Key under which this module's callbacks are registered.
const OBSERVER_KEY: &str = "onefolder-changes";

/// What changed since the last take.
#[derive(Debug)]
struct Tracker {
    changed: Changed,
    /// Nesting depth of pauses (a replay loads a snapshot).
    paused: u32,
    /// Index maps seen changing before they had an observer.
    unobserved: BTreeSet<String>,
}

/// The change tracking of one document.
#[derive(Debug)]
pub(crate) struct Changes {
    tracker: Arc<Mutex<Tracker>>,
    observed: HashSet<String>,
}

fn lock(tracker: &Mutex<Tracker>) -> MutexGuard<'_, Tracker> {
    tracker.lock().unwrap_or_else(|e| e.into_inner())
}

impl Changes {
    /// Starts tracking `doc` (a new engine: everything is unknown until the first take).
    pub(crate) fn attach(doc: &Doc) -> Self {
        let tracker =
            Arc::new(Mutex::new(Tracker { changed: Changed::Unknown, paused: 0, unobserved: BTreeSet::new() }));
        let shared = tracker.clone();
        doc.observe_after_transaction(OBSERVER_KEY, move |txn: &mut TransactionMut| {
            let mut t = lock(&shared);
            if t.paused > 0 || txn.changed_parent_types().is_empty() {
                return;
            }
            for branch in txn.changed_parent_types() {
                let BranchID::Root(name) = branch.id() else {
                    continue;
                };
                match name.split_once(SEPARATOR) {
                    Some((collection, id)) => t.changed.insert(collection, id),
                    None => {
                        t.unobserved.insert(name.to_string());
                    }
                }
            }
        })
        .expect("a new document has no transaction open");
        Self { tracker, observed: HashSet::new() }
    }

    /// Stops tracking until [`Changes::resume_unknown`] (a snapshot load or a replay).
    pub(crate) fn pause(&self) {
        lock(&self.tracker).paused += 1;
    }

    /// Whether changes are tracked now (not paused).
    pub(crate) fn tracking(&self) -> bool {
        lock(&self.tracker).paused == 0
    }

    /// Resumes tracking; what happened while paused is unknown.
    pub(crate) fn resume_unknown(&self) {
        let mut t = lock(&self.tracker);
        t.paused = t.paused.saturating_sub(1);
        t.changed = Changed::Unknown;
    }

    /// What changed since the previous take. Index maps seen changing without an observer get
    /// one now (the document has no transaction open here).
    pub(crate) fn take(&mut self, doc: &Doc) -> Changed {
        let (mut changed, unobserved) = {
            let mut t = lock(&self.tracker);
            (std::mem::replace(&mut t.changed, Changed::none()), std::mem::take(&mut t.unobserved))
        };
        for collection in unobserved {
            if self.observed.contains(&collection) {
                continue;
            }
            // Its keys in the transactions just seen are unknown.
            changed = Changed::Unknown;
            let Some(index) = doc.transact().get_map(collection.as_str()) else {
                continue;
            };
            self.observe(index, collection.clone());
            self.observed.insert(collection);
        }
        changed
    }

    fn observe(&self, index: MapRef, collection: String) {
        let shared = self.tracker.clone();
        index.observe(OBSERVER_KEY, move |txn, event| {
            let mut t = lock(&shared);
            if t.paused > 0 {
                return;
            }
            for id in event.keys(txn).keys() {
                t.changed.insert(&collection, id);
            }
        });
    }
}
