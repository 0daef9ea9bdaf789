//! The CRDT engine boundary.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::value::{Collection, Op, Record, Value};

/// Errors of an [`Engine`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// Remote bytes or a snapshot could not be decoded or integrated. Nothing was changed.
    #[error("corrupt engine data: {0}")]
    Corrupt(String),
    /// The operation is malformed (e.g. `Op::Put` with a set value, an empty collection name).
    #[error("invalid operation: {0}")]
    InvalidOp(String),
    /// The engine does not support this operation.
    #[error("{op} is not supported by the {adapter} engine")]
    Unsupported {
        /// The operation.
        op: &'static str,
        /// The engine id.
        adapter: &'static str,
    },
    /// Any other engine failure.
    #[error("engine failure: {0}")]
    Other(String),
}

/// A CRDT document holding *collections* of *records* with *fields*.
///
/// Implementors: `onefolder-engine-yrs`, `onefolder-engine-automerge`. The conformance suite
/// (`onefolder-conformance`) checks every bullet below; a test is named after each.
///
/// # Behavior
/// - `write_then_read`: after [`Engine::write`], [`Engine::record`] and [`Engine::collection`]
///   return the written fields; a record exists only between `Create` and `Delete`.
/// - `fields_merge_independently`: concurrent writes of *different* fields of one record both
///   survive; concurrent writes of the *same* field converge to one value on every replica.
/// - `concurrent_create_merges`: two replicas creating the same record id concurrently end with
///   one record holding the fields and set members of both.
/// - `set_add_wins`: a concurrent `SetAdd` and `SetRemove` of the same member leaves it present.
/// - `take_local_changes_only_local`: [`Engine::take_local_changes`] returns the changes made by
///   this replica since the previous take, and never changes applied with
///   [`Engine::apply_remote`]; it returns `None` when there are none.
/// - `apply_idempotent_any_order`: applying the same bytes twice, or several changes in any
///   order, gives the same state; changes whose dependencies are missing wait inside the engine
///   and integrate once the dependencies arrive.
/// - `apply_garbage_is_corrupt`: bytes that are not a valid change give
///   [`EngineError::Corrupt`], never a panic, and leave the state unchanged. (Bytes crafted to
///   decode and then fail half-way through integration may leave part behind; the Replica
///   rebuilds the engine from its store after every rejected payload.)
/// - `snapshot_round_trip`: [`Engine::load_snapshot`] of [`Engine::snapshot`] on an empty engine
///   reproduces every collection.
/// - `merge_changes_equivalent`: once every dependency is present, applying
///   [`Engine::merge_changes`] of several changes equals applying each change.
/// - `cheap_reads_agree`: [`Engine::contains`], [`Engine::field`],
///   [`Engine::for_each_record`], [`Engine::for_each_field`] and [`Engine::for_each_members`] agree with [`Engine::record`] and [`Engine::collection`] (they
///   exist so that engines can answer them without materialising a collection).
/// - `changes_are_reported`: [`Engine::take_changed`] names every record that reads
///   differently after a write, a remote apply or a snapshot load (or answers `Unknown`, which
///   only a snapshot load may); the engines of this workspace report records once a
///   collection was seen changing.
/// - `indexed_queries_agree`: through [`Indexed`](crate::Indexed), the set-membership queries
///   equal the scans of [`scan`].
/// - `replay_equals_applies_in_order`: [`Engine::replay`] of a snapshot and a log on an empty
///   engine gives the state of loading the snapshot and applying every log entry in order,
///   also while some entries wait for a missing dependency (what a reader sees must not change
///   when the device restarts).
pub trait Engine: Send {
    /// The engine id written in `library.json` and segment headers (ASCII, at most 16 bytes),
    /// e.g. `"yrs"`.
    fn engine_id(&self) -> &'static str;

    /// A new, empty engine of the same kind and configuration.
    fn new_empty(&self) -> Box<dyn Engine>;

    /// Applies a batch of operations in one transaction. Either all apply or none do.
    fn write(&mut self, ops: &[Op]) -> Result<(), EngineError>;

    /// The changes made locally since the previous call, as bytes for [`Engine::apply_remote`]
    /// on another replica; `None` when there were none.
    fn take_local_changes(&mut self) -> Result<Option<Vec<u8>>, EngineError>;

    /// Combines several change blobs (from [`Engine::take_local_changes`]) into one.
    fn merge_changes(&self, changes: &[&[u8]]) -> Result<Vec<u8>, EngineError>;

    /// Integrates remote changes (idempotent, any order).
    fn apply_remote(&mut self, bytes: &[u8]) -> Result<(), EngineError>;

    /// The full state as bytes.
    fn snapshot(&self) -> Result<Vec<u8>, EngineError>;

    /// Merges a snapshot produced by [`Engine::snapshot`] into this engine.
    fn load_snapshot(&mut self, bytes: &[u8]) -> Result<(), EngineError>;

    /// Rebuilds this **empty** engine from a snapshot and the log recorded after it, in log
    /// order (a device reopening its store). The state, what readers see included, equals
    /// [`Engine::load_snapshot`] followed by [`Engine::apply_remote`] of every entry in order;
    /// the default does exactly that, and engines override it with something faster that keeps
    /// the equality. On an error the engine is in an unspecified state and must be discarded.
    fn replay(&mut self, snapshot: Option<&[u8]>, log: &[&[u8]]) -> Result<(), EngineError> {
        if let Some(snapshot) = snapshot {
            self.load_snapshot(snapshot)?;
        }
        log.iter().try_for_each(|entry| self.apply_remote(entry))
    }

    /// An opaque version of the state (state vector / heads): equal states give equal versions.
    fn version(&self) -> Vec<u8>;

    /// Whether applied changes are waiting for missing dependencies.
    fn has_pending(&self) -> bool;

    /// One record, if it exists.
    fn record(&self, collection: &str, id: &str) -> Result<Option<Record>, EngineError>;

    /// Every existing record of a collection.
    fn collection(&self, collection: &str) -> Result<Collection, EngineError>;

    /// [`Engine::collection`], shared: for the small collections read whole again and again (tags,
    /// locations, searches). [`Indexed`](crate::Indexed) keeps the copy it hands out, updated from
    /// [`Engine::take_changed`], until the engine loses track; never ask it for `files`.
    fn shared_collection(&self, collection: &str) -> Result<Arc<Collection>, EngineError> {
        Ok(Arc::new(self.collection(collection)?))
    }

    /// While a layer keeps `collection` (see [`Engine::shared_collection`]): a number that grows
    /// by exactly one for every record of it read again after a write or an apply, and that no
    /// other copy (kept again later, or by another engine of the process) ever shows. So a
    /// caller that saw `g` before its own write of one record and sees `g + 1` after knows
    /// nothing else changed the collection in between.
    /// `None` when nothing keeps it (the default).
    fn collection_generation(&self, collection: &str) -> Option<u64> {
        let _ = collection;
        None
    }

    /// The ids of every existing record of a collection, sorted.
    fn ids(&self, collection: &str) -> Result<Vec<String>, EngineError> {
        Ok(self.collection(collection)?.into_keys().collect())
    }

    /// Whether the record exists. Engines answer it without reading the record's fields.
    fn contains(&self, collection: &str, id: &str) -> Result<bool, EngineError> {
        Ok(self.record(collection, id)?.is_some())
    }

    /// One field of an existing record; `None` when the record or the field is absent.
    fn field(&self, collection: &str, id: &str, field: &str) -> Result<Option<Value>, EngineError> {
        Ok(self.record(collection, id)?.and_then(|mut r| r.remove(field)))
    }

    /// Calls `visit` with every existing record of a collection, in no particular order,
    /// materialising one record at a time (a scan of 100 000 files never holds them all).
    fn for_each_record(&self, collection: &str, visit: &mut dyn FnMut(&str, Record)) -> Result<(), EngineError> {
        for (id, record) in self.collection(collection)? {
            visit(&id, record);
        }
        Ok(())
    }

    /// Calls `visit` with the id and one field of every existing record of a collection, in
    /// no particular order (what an index build reads).
    fn for_each_field(
        &self,
        collection: &str,
        field: &str,
        visit: &mut dyn FnMut(&str, Option<Value>),
    ) -> Result<(), EngineError> {
        self.for_each_record(collection, &mut |id, mut record| visit(id, record.remove(field)))
    }

    /// Calls `visit` with the id of every existing record of a collection and the members of
    /// its set `field` (empty when the field is absent or not a set), in no particular order,
    /// lent rather than materialised as a [`Value::Set`] (what a set index is built from).
    fn for_each_members(
        &self,
        collection: &str,
        field: &str,
        visit: &mut dyn FnMut(&str, &[&str]),
    ) -> Result<(), EngineError> {
        self.for_each_field(collection, field, &mut |id, value| {
            let members: Vec<&str> = match &value {
                Some(Value::Set(set)) => set.iter().map(String::as_str).collect(),
                _ => Vec::new(),
            };
            visit(id, &members);
        })
    }

    /// The number of existing records of a collection.
    fn count(&self, collection: &str) -> Result<usize, EngineError> {
        Ok(self.ids(collection)?.len())
    }

    /// The ids of the existing records of `collection` whose set `field` holds `member`,
    /// sorted. The default scans the collection; [`Indexed`](crate::Indexed) answers from an index.
    fn ids_with_member(&self, collection: &str, field: &str, member: &str) -> Result<Vec<String>, EngineError> {
        scan::ids_with_member(self, collection, field, member)
    }

    /// The ids of the existing records of `collection` whose set `field` holds at least one of
    /// `members`, sorted, each once (the files of a tag subtree). The default scans the
    /// collection once; [`Indexed`](crate::Indexed) unites its index entries.
    fn ids_with_any_member(
        &self,
        collection: &str,
        field: &str,
        members: &BTreeSet<String>,
    ) -> Result<Vec<String>, EngineError> {
        scan::ids_with_any_member(self, collection, field, members)
    }

    /// The ids of the existing records of `collection` whose set `field` is empty or absent
    /// (a scalar in its place counts as no member), sorted.
    fn ids_without_members(&self, collection: &str, field: &str) -> Result<Vec<String>, EngineError> {
        scan::ids_without_members(self, collection, field)
    }

    /// Every member of the set `field` over the existing records of `collection`, with the
    /// number of records that hold it.
    fn member_counts(&self, collection: &str, field: &str) -> Result<BTreeMap<String, usize>, EngineError> {
        scan::member_counts(self, collection, field)
    }

    /// Which records changed since the previous call, by [`Engine::write`],
    /// [`Engine::apply_remote`], [`Engine::load_snapshot`] or [`Engine::replay`]: what
    /// [`Indexed`](crate::Indexed) needs to keep its index without rescanning. An engine may answer
    /// [`Changed::Unknown`] whenever it lost track (the default, and after a snapshot load);
    /// when it answers [`Changed::Records`], every record whose [`Engine::record`] may read
    /// differently is in it (conformance check `changes_are_reported`).
    fn take_changed(&mut self) -> Changed {
        Changed::Unknown
    }
}

/// What changed in an engine; see [`Engine::take_changed`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Changed {
    /// These records (collection, id), and no others. Absent ones may have been deleted.
    Records(BTreeSet<(String, String)>),
    /// Anything may have changed.
    Unknown,
}

impl Changed {
    /// Most records a report names: beyond it, it says [`Changed::Unknown`] (an index rebuilds
    /// faster than it re-reads that many records, and an engine nobody takes changes from
    /// keeps its memory bounded).
    pub const MAX_RECORDS: usize = 65_536;

    /// Nothing changed.
    pub fn none() -> Self {
        Changed::Records(BTreeSet::new())
    }

    /// Adds one record.
    pub fn insert(&mut self, collection: &str, id: &str) {
        if let Changed::Records(records) = self {
            records.insert((collection.to_owned(), id.to_owned()));
            if records.len() > Self::MAX_RECORDS {
                *self = Changed::Unknown;
            }
        }
    }

    /// Adds what `other` reports.
    pub fn extend(&mut self, other: Changed) {
        match (&mut *self, other) {
            (Changed::Records(mine), Changed::Records(theirs)) => {
                mine.extend(theirs);
                if mine.len() > Self::MAX_RECORDS {
                    *self = Changed::Unknown;
                }
            }
            (me, _) => *me = Changed::Unknown,
        }
    }

    /// Adds the records that `ops` (a local write) touch.
    pub fn extend_ops(&mut self, ops: &[Op]) {
        for op in ops {
            let (collection, id) = op.record();
            self.insert(collection, id);
        }
    }
}

/// The scans behind the default query methods of [`Engine`], for engines and tests that
/// want the answer without an index.
pub mod scan {
    use std::collections::{BTreeMap, BTreeSet};

    use super::{Engine, EngineError};
    use crate::value::{Record, Value};

    /// The members of set `field` in `record`; empty when absent or a scalar.
    pub fn members<'r>(record: &'r Record, field: &str) -> impl Iterator<Item = &'r String> {
        record.get(field).and_then(Value::as_set).into_iter().flat_map(BTreeSet::iter)
    }

    /// [`Engine::ids_with_member`] by a scan.
    pub fn ids_with_member<E: Engine + ?Sized>(
        engine: &E,
        collection: &str,
        field: &str,
        member: &str,
    ) -> Result<Vec<String>, EngineError> {
        let mut ids = Vec::new();
        engine.for_each_record(collection, &mut |id, record| {
            if members(&record, field).any(|m| m == member) {
                ids.push(id.to_owned());
            }
        })?;
        ids.sort_unstable();
        Ok(ids)
    }

    /// [`Engine::ids_with_any_member`] by a scan.
    pub fn ids_with_any_member<E: Engine + ?Sized>(
        engine: &E,
        collection: &str,
        field: &str,
        wanted: &BTreeSet<String>,
    ) -> Result<Vec<String>, EngineError> {
        let mut ids = Vec::new();
        engine.for_each_record(collection, &mut |id, record| {
            if members(&record, field).any(|m| wanted.contains(m)) {
                ids.push(id.to_owned());
            }
        })?;
        ids.sort_unstable();
        Ok(ids)
    }

    /// [`Engine::ids_without_members`] by a scan.
    pub fn ids_without_members<E: Engine + ?Sized>(
        engine: &E,
        collection: &str,
        field: &str,
    ) -> Result<Vec<String>, EngineError> {
        let mut ids = Vec::new();
        engine.for_each_record(collection, &mut |id, record| {
            if members(&record, field).next().is_none() {
                ids.push(id.to_owned());
            }
        })?;
        ids.sort_unstable();
        Ok(ids)
    }

    /// [`Engine::member_counts`] by a scan.
    pub fn member_counts<E: Engine + ?Sized>(
        engine: &E,
        collection: &str,
        field: &str,
    ) -> Result<BTreeMap<String, usize>, EngineError> {
        let mut counts = BTreeMap::new();
        engine.for_each_record(collection, &mut |_, record| {
            for m in members(&record, field) {
                *counts.entry(m.clone()).or_default() += 1;
            }
        })?;
        Ok(counts)
    }
}

/// A fast [`Engine::replay`] for engine adapters: loads the snapshot and applies the whole log
/// as one [`Engine::merge_changes`] blob, and keeps the result when `keep` accepts it (the
/// engine's own test that grouping changed nothing). Otherwise — or when the merge or the
/// merged apply fails — it replaces the engine by `fresh` (empty, same identity) and applies
/// entry by entry.
pub fn replay_merged<E: Engine>(
    engine: &mut E,
    snapshot: Option<&[u8]>,
    log: &[&[u8]],
    keep: impl FnOnce(&E) -> bool,
    fresh: impl FnOnce(&E) -> E,
) -> Result<(), EngineError> {
    let load = |engine: &mut E| snapshot.map_or(Ok(()), |s| engine.load_snapshot(s));
    if log.len() > 1 {
        if let Ok(merged) = engine.merge_changes(log) {
            load(engine)?;
            if engine.apply_remote(&merged).is_ok() && keep(engine) {
                return Ok(());
            }
            tracing::debug!(entries = log.len(), engine = engine.engine_id(), "replaying the log entry by entry");
            *engine = fresh(engine);
        }
    }
    load(engine)?;
    log.iter().try_for_each(|entry| engine.apply_remote(entry))
}

impl<E: Engine + ?Sized> Engine for Box<E> {
    fn engine_id(&self) -> &'static str {
        (**self).engine_id()
    }
    fn new_empty(&self) -> Box<dyn Engine> {
        (**self).new_empty()
    }
    fn write(&mut self, ops: &[Op]) -> Result<(), EngineError> {
        (**self).write(ops)
    }
    fn take_local_changes(&mut self) -> Result<Option<Vec<u8>>, EngineError> {
        (**self).take_local_changes()
    }
    fn merge_changes(&self, changes: &[&[u8]]) -> Result<Vec<u8>, EngineError> {
        (**self).merge_changes(changes)
    }
    fn apply_remote(&mut self, bytes: &[u8]) -> Result<(), EngineError> {
        (**self).apply_remote(bytes)
    }
    fn snapshot(&self) -> Result<Vec<u8>, EngineError> {
        (**self).snapshot()
    }
    fn load_snapshot(&mut self, bytes: &[u8]) -> Result<(), EngineError> {
        (**self).load_snapshot(bytes)
    }
    fn replay(&mut self, snapshot: Option<&[u8]>, log: &[&[u8]]) -> Result<(), EngineError> {
        (**self).replay(snapshot, log)
    }
    fn version(&self) -> Vec<u8> {
        (**self).version()
    }
    fn has_pending(&self) -> bool {
        (**self).has_pending()
    }
    fn record(&self, collection: &str, id: &str) -> Result<Option<Record>, EngineError> {
        (**self).record(collection, id)
    }
    fn collection(&self, collection: &str) -> Result<Collection, EngineError> {
        (**self).collection(collection)
    }
    fn shared_collection(&self, collection: &str) -> Result<Arc<Collection>, EngineError> {
        (**self).shared_collection(collection)
    }
    fn collection_generation(&self, collection: &str) -> Option<u64> {
        (**self).collection_generation(collection)
    }
    fn ids(&self, collection: &str) -> Result<Vec<String>, EngineError> {
        (**self).ids(collection)
    }
    fn contains(&self, collection: &str, id: &str) -> Result<bool, EngineError> {
        (**self).contains(collection, id)
    }
    fn field(&self, collection: &str, id: &str, field: &str) -> Result<Option<Value>, EngineError> {
        (**self).field(collection, id, field)
    }
    fn for_each_record(&self, collection: &str, visit: &mut dyn FnMut(&str, Record)) -> Result<(), EngineError> {
        (**self).for_each_record(collection, visit)
    }
    fn for_each_field(
        &self,
        collection: &str,
        field: &str,
        visit: &mut dyn FnMut(&str, Option<Value>),
    ) -> Result<(), EngineError> {
        (**self).for_each_field(collection, field, visit)
    }
    fn for_each_members(
        &self,
        collection: &str,
        field: &str,
        visit: &mut dyn FnMut(&str, &[&str]),
    ) -> Result<(), EngineError> {
        (**self).for_each_members(collection, field, visit)
    }
    fn count(&self, collection: &str) -> Result<usize, EngineError> {
        (**self).count(collection)
    }
    fn ids_with_member(&self, collection: &str, field: &str, member: &str) -> Result<Vec<String>, EngineError> {
        (**self).ids_with_member(collection, field, member)
    }
    fn ids_with_any_member(
        &self,
        collection: &str,
        field: &str,
        members: &BTreeSet<String>,
    ) -> Result<Vec<String>, EngineError> {
        (**self).ids_with_any_member(collection, field, members)
    }
    fn ids_without_members(&self, collection: &str, field: &str) -> Result<Vec<String>, EngineError> {
        (**self).ids_without_members(collection, field)
    }
    fn member_counts(&self, collection: &str, field: &str) -> Result<BTreeMap<String, usize>, EngineError> {
        (**self).member_counts(collection, field)
    }
    fn take_changed(&mut self) -> Changed {
        (**self).take_changed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_report_past_its_cap_says_unknown() {
        let mut changed = Changed::none();
        changed.extend_ops(&[Op::create("files", "a"), Op::put("files", "a", "x", 1), Op::create("tags", "t")]);
        assert_eq!(
            changed,
            Changed::Records(BTreeSet::from([("files".into(), "a".into()), ("tags".into(), "t".into())]))
        );
        for i in 0..Changed::MAX_RECORDS {
            changed.insert("files", &i.to_string());
        }
        assert_eq!(changed, Changed::Unknown, "past the cap");
        changed.insert("files", "b");
        assert_eq!(changed, Changed::Unknown, "unknown stays unknown");
        let mut small = Changed::none();
        small.extend(Changed::Unknown);
        assert_eq!(small, Changed::Unknown);
    }
}
