//! # onefolder-engine-automerge
//!
//! The [`Engine`] of OneFolder Sync on [automerge] 0.12. Changes are automerge change chunks
//! (`Change::raw_bytes`), snapshots are `Automerge::save` documents; any concatenation of
//! them is valid input for [`Engine::apply_remote`].
//!
//! ## Document layout: everything in the root map
//!
//! automerge has the problem the yrs adapter works around: an object (map, list) is identified
//! by the op that created it, so two replicas that each `put_object` a map under the same key
//! create two maps, the key holds a conflict, one map wins and every field of the other one
//! disappears from view. The same file indexed on two computers would lose one side's tags.
//! automerge has no named root types to fall back on, so this adapter **never creates an
//! object**: every entry is a key of the root map, which every replica has from the start.
//!
//! | root-map key | value |
//! |---|---|
//! | `i/<collection>/<id>` | `true`: the record exists (the collection index) |
//! | `f/<collection>/<id>/<field>` | a scalar field |
//! | `s/<collection>/<id>/<field>/<member>` | any scalar: `member` is in the set `field` |
//!
//! Concurrent creates of one record write the same keys and merge key by key; concurrent writes
//! of one field are a conflict on one key, which automerge resolves the same way everywhere
//! (the op with the highest (counter, actor) wins). The root map is ordered by key, so a record
//! (`f/<collection>/<id>/…`), a set, a collection or its index is one range scan
//! (`ReadDoc::map_range`, which seeks to the start key). Hence collection names, record ids and
//! field names must be non-empty and must not contain [`SEPARATOR`] (`'/'`), or the write is
//! [`EngineError::InvalidOp`]; set members may be any string (they are the last part of a key).
//!
//! Keys are kept short because every change carries its keys in full and DESIGN §6 allows 256
//! bytes per tag assignment, segment header included: the kinds are one letter, and record ids
//! and set members that are 32 lowercase hex digits (OneFolder's hashed ids) are written as `~`
//! plus 22 base64url characters (module `layout`; one to one, every other string is kept). A tag
//! assignment is one key of 60 bytes instead of 78.
//!
//! ## Semantics
//!
//! - `Create` writes the index entry unless it is there (re-creating writes nothing, and a
//!   concurrent `Delete` wins over it). `Delete` removes the index entry and every field and
//!   member key of the record; field writes that race the delete stay, invisible until the
//!   record is created again (readers only show records in the index).
//! - `Put` is a last-writer-wins register per field. A `Put` of the value the field holds (same
//!   kind, same float bits) writes nothing. A `Put` over a set also deletes its members; `Clear`
//!   deletes the field and any members.
//! - A set field is the members under its prefix; there is no marker, so the first `SetAdd` of
//!   a file is one op, and a set whose last member was removed reads as absent. `SetAdd` deletes
//!   a scalar of the same field (a delete of a missing key writes nothing), then *always* writes
//!   a new entry for the member, with a value none of the member key's current entries holds:
//!   automerge skips a `put` of the value a key already holds (and for the winning value of a
//!   conflict only deletes the losers), and then a concurrent `SetRemove` — which deletes exactly
//!   the entries it saw — would win. With a new entry, add wins. `SetRemove` deletes the member.
//!   If a concurrent `Put` and `SetAdd` leave both a scalar and members, readers show the scalar
//!   on every replica; the next `SetAdd` or `Put` settles it.
//! - Values: `Int` ↔ int, `Float` ↔ f64, `Str`, `Bytes`, `Bool`, `Null` map one to one and keep
//!   their kind and bits through changes and snapshots.
//! - A batch is validated completely before the transaction starts, and rolled back if automerge
//!   fails during it: all or nothing.
//!
//! ## Local changes
//!
//! Each engine has a fresh random actor id ([`ActorId::random`]), so a restarted process or a
//! cloned disk image never reuses an (actor, seq) pair. After each committed write the change is
//! fetched by its hash and its raw bytes are kept; [`Engine::take_local_changes`] returns and
//! drains them (concatenated), so changes applied from peers are never among them.
//! [`Engine::merge_changes`] checks each blob and concatenates their chunks, dropping duplicate
//! changes: a concatenation of chunks is exactly what `apply_remote` reads.
//!
//! ## Changes that arrive early
//!
//! A change names the hashes of the changes it follows. One whose dependencies are missing
//! waits in the engine (module `causal`, not automerge's own queue) and is applied once they
//! arrive; [`Engine::has_pending`] reports whether any waits. [`Engine::snapshot`] is `save`
//! followed by the waiting changes' chunks, so they survive a snapshot. [`Engine::version`] is
//! the sorted heads: waiting changes are not part of it.
//!
//! Dependencies are whole-history: a change depends on every change its writer had applied,
//! not only on those it touches. A replica that received B's change built on A's cannot show
//! it before A's arrives, unlike yrs, which integrates an update whose own items are complete.
//!
//! ## Untrusted bytes
//!
//! automerge 0.12's `load_incremental` returns `Ok` on corrupt input: on a document with history
//! it keeps the chunks that decoded before the bad one and drops the rest, on an empty document
//! it drops everything, and it only logs a warning. Segment checksums catch transport corruption
//! before any byte gets here, but this adapter does not rely on them: it never calls
//! `load_incremental`, and checks everything before the document changes.
//!
//! 1. Module `chunks` splits the input into chunks (magic, type, length), compares each change's
//!    checksum with its hash, decodes every op, and loads snapshots strictly. Remote changes may
//!    only hold what this adapter writes — `put` of a scalar or `delete`, on a key of the root
//!    map — and op counters must stay below 2^31. automerge 0.12 records a batch in its history
//!    before it merges the ops, and panics half-way on an op for an object the document does
//!    not have; a change whose counters end near 2^32 applies, and every later local change
//!    panics.
//! 2. Module `causal` hands automerge only changes whose dependencies are applied, after
//!    checking that each one's counters, sequence number and overwritten ops agree with its
//!    history. Forged changes with valid checksums that lie about their history made automerge
//!    panic half-way, or apply and leave a document whose snapshot does not load.
//! 3. Everything runs under `catch_unwind`.
//!
//! Any failure is [`EngineError::Corrupt`] and nothing changed. An empty input is a valid, empty
//! sequence of chunks: `Ok`, and nothing changes (`merge_changes(&[])` returns it). What remains
//! is what automerge itself may still reject or panic on after these checks (a snapshot whose
//! history conflicts with ours, e.g. two different changes claiming one actor's seq); the
//! document may then hold part of the input. Only a buggy or malicious writer produces such
//! bytes; the engine reports `Corrupt` and logs a warning, and the caller rebuilds it from its
//! store (as `Replica` does).

#![warn(missing_docs)]

mod causal;
mod chunks;
mod layout;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};

use automerge::transaction::{Transactable, Transaction};
use automerge::{ActorId, Automerge, AutomergeError, ChangeHash, ROOT, ReadDoc};
use onefolder_core::engine::replay_merged;
use onefolder_core::{Changed, Collection, Engine, EngineError, Op, Record, Value};
use tracing::{debug, trace, warn};

pub use crate::chunks::MAGIC;
use crate::chunks::ParsedChange;
pub use crate::layout::SEPARATOR;
use crate::layout::Stored;

/// The engine id written in `library.json` and segment headers. It is part of the on-disk
/// format: never change it.
pub const ENGINE_ID: &str = "automerge";

/// An [`Engine`] on an automerge [`Automerge`] document; see the crate docs for the layout.
pub struct AutomergeEngine {
    doc: Automerge,
    /// Raw bytes of the local changes not taken yet, oldest first.
    local: Vec<Vec<u8>>,
    /// Remote changes waiting for dependencies (automerge's own queue stays empty).
    waiting: Vec<ParsedChange>,
    /// Remote changes that waited and were dropped as inconsistent (module `causal`).
    rejected: HashSet<ChangeHash>,
    /// Records changed since the last [`Engine::take_changed`]: from the ops of local writes
    /// and the keys of applied remote changes; `Unknown` once a whole document was loaded.
    changed: Changed,
}

impl Default for AutomergeEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for AutomergeEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AutomergeEngine")
            .field("actor", &self.actor_id().to_hex_string())
            .field("untaken_changes", &self.local.len())
            .field("waiting", &self.waiting.len())
            .finish_non_exhaustive()
    }
}

impl AutomergeEngine {
    /// An empty document with a fresh random actor id.
    pub fn new() -> Self {
        Self::with_actor(ActorId::random())
    }

    /// An empty document whose local changes are made by `actor`.
    fn with_actor(actor: ActorId) -> Self {
        Self {
            doc: Automerge::new().with_actor(actor),
            local: Vec::new(),
            waiting: Vec::new(),
            rejected: HashSet::new(),
            changed: Changed::Unknown,
        }
    }

    /// The automerge actor id of this replica (random, one per engine).
    pub fn actor_id(&self) -> &ActorId {
        self.doc.get_actor()
    }

    /// Checks and integrates remote bytes (changes, snapshots, or a concatenation of them).
    fn integrate(&mut self, bytes: &[u8], what: &str) -> Result<(), EngineError> {
        let corrupt = |e: String| {
            debug!(error = %e, bytes = bytes.len(), what, "rejected");
            EngineError::Corrupt(format!("{what}: {e}"))
        };
        let parsed = chunks::parse(bytes).map_err(corrupt)?;
        let (doc, waiting, rejected) = (&self.doc, &self.waiting, &self.rejected);
        let plan =
            catch_unwind(AssertUnwindSafe(|| causal::plan(doc, &parsed.documents, waiting, parsed.changes, rejected)))
                .map_err(|panic| corrupt(format!("automerge panicked: {}", chunks::panic_message(&*panic))))?
                .map_err(corrupt)?;

        // Everything is checked: from here on the document changes.
        let doc = &mut self.doc;
        let documents = parsed.documents;
        // Nothing to collect while everything is unknown anyway (a new engine replaying its log).
        let unknown = !documents.is_empty() || self.changed == Changed::Unknown;
        let mut changed = if unknown { Changed::Unknown } else { Changed::none() };
        for (collection, id) in plan.ready.iter().flat_map(|c| &c.keys).filter_map(|key| layout::record_of_key(key)) {
            if changed == Changed::Unknown {
                break;
            }
            changed.insert(&collection, &id);
        }
        let ready: Vec<_> = plan.ready.into_iter().map(|c| c.change).collect();
        let applied = catch_unwind(AssertUnwindSafe(|| -> Result<(), AutomergeError> {
            for mut loaded in documents {
                if doc.is_empty() {
                    // Nothing to merge with: take the loaded document as it is (what
                    // `load_incremental` does too), keeping this replica's actor.
                    let actor = doc.get_actor().clone();
                    *doc = loaded.with_actor(actor);
                } else {
                    doc.merge(&mut loaded)?;
                }
            }
            if !ready.is_empty() {
                doc.apply_changes(ready)?;
            }
            Ok(())
        }));
        // Even a failed apply may have changed part of the document.
        self.changed.extend(if matches!(applied, Ok(Ok(()))) { changed } else { Changed::Unknown });
        match applied {
            Ok(Ok(())) => {
                self.waiting = plan.waiting;
                for (hash, why) in plan.rejected {
                    warn!(%hash, why, "dropping a remote change that waited for its dependencies: it is inconsistent");
                    self.rejected.insert(hash);
                }
                trace!(bytes = bytes.len(), what, waiting = self.waiting.len(), "applied");
                Ok(())
            }
            Ok(Err(e)) => {
                warn!(error = %e, what, "automerge rejected checked input; the document may hold part of it");
                Err(EngineError::Corrupt(format!("{what}: {e}")))
            }
            Err(panic) => {
                let message = chunks::panic_message(&*panic);
                warn!(what, message, "automerge panicked on checked input; the document may hold part of it");
                Err(EngineError::Corrupt(format!("{what}: automerge panicked: {message}")))
            }
        }
    }
}

/// Checks one operation without touching the document.
fn validate(op: &Op) -> Result<(), EngineError> {
    let (collection, id, field) = match op {
        Op::Create { collection, id } | Op::Delete { collection, id } => (collection, id, None),
        Op::Put { collection, id, field, value } => {
            if matches!(value, Value::Set(_)) {
                return Err(EngineError::InvalidOp(format!(
                    "Put of a set value into {collection}/{id}.{field}; use SetAdd / SetRemove"
                )));
            }
            (collection, id, Some(field))
        }
        Op::Clear { collection, id, field }
        | Op::SetAdd { collection, id, field, .. }
        | Op::SetRemove { collection, id, field, .. } => (collection, id, Some(field)),
    };
    layout::check_name("collection name", collection)?;
    layout::check_name("record id", id)?;
    if let Some(field) = field {
        layout::check_name("field name", field)?;
    }
    Ok(())
}

/// The keys of the root map that start with `prefix` (which ends with the separator).
fn keys_with_prefix<R: ReadDoc>(doc: &R, prefix: &str) -> Vec<String> {
    doc.map_range(ROOT, prefix.to_owned()..layout::prefix_end(prefix)).map(|item| item.key.into_owned()).collect()
}

/// Deletes every root-map key that starts with `prefix`.
fn delete_prefix(tx: &mut Transaction<'_>, prefix: &str) -> Result<(), AutomergeError> {
    for key in keys_with_prefix(tx, prefix) {
        tx.delete(ROOT, key)?;
    }
    Ok(())
}

/// What the root map holds at `key`, if anything.
fn stored_at<R: ReadDoc>(doc: &R, key: &str) -> Result<Option<Stored>, AutomergeError> {
    Ok(doc.get(ROOT, key)?.map(|(value, _)| layout::decode_value(&value)))
}

fn apply_op(tx: &mut Transaction<'_>, op: &Op) -> Result<(), AutomergeError> {
    match op {
        Op::Create { collection, id } => {
            let key = layout::index_key(collection, id);
            if tx.get(ROOT, key.as_str())?.is_none() {
                tx.put(ROOT, key, layout::exists())?;
            }
        }
        Op::Delete { collection, id } => {
            tx.delete(ROOT, layout::index_key(collection, id))?;
            delete_prefix(tx, &layout::record_fields_prefix(collection, id))?;
            delete_prefix(tx, &layout::record_members_prefix(collection, id))?;
        }
        Op::Put { collection, id, field, value } => {
            let Some(new) = layout::encode_scalar(value) else {
                unreachable!("validate rejects a Put of a set");
            };
            let key = layout::field_key(collection, id, field);
            match stored_at(tx, &key)? {
                Some(Stored::Scalar(old)) if layout::same_value(&old, value) => return Ok(()),
                // 0.0 and -0.0: automerge compares f64s with `==` and would skip the put.
                Some(Stored::Scalar(Value::Float(old))) if matches!(value, Value::Float(f) if *f == old) => {
                    tx.delete(ROOT, key.as_str())?;
                }
                _ => {}
            }
            // A scalar replaces a set.
            delete_prefix(tx, &layout::members_prefix(collection, id, field))?;
            tx.put(ROOT, key, new)?;
        }
        Op::Clear { collection, id, field } => {
            tx.delete(ROOT, layout::field_key(collection, id, field))?;
            delete_prefix(tx, &layout::members_prefix(collection, id, field))?;
        }
        Op::SetAdd { collection, id, field, member } => {
            // A set replaces a scalar (a delete of a missing key writes nothing).
            tx.delete(ROOT, layout::field_key(collection, id, field))?;
            let key = layout::member_key(collection, id, field, member);
            let current: Vec<_> = tx.get_all(ROOT, key.as_str())?.into_iter().map(|(v, _)| v).collect();
            let value = layout::fresh_member_value(&current);
            tx.put(ROOT, key, value)?;
        }
        Op::SetRemove { collection, id, field, member } => {
            tx.delete(ROOT, layout::member_key(collection, id, field, member))?;
        }
    }
    Ok(())
}

/// Splits what follows a record prefix in a member key: `<field>/<packed member>`.
fn split_member(rest: &str) -> Option<(&str, String)> {
    let (field, member) = rest.split_once(SEPARATOR)?;
    Some((field, layout::unpack(member).into_owned()))
}

/// Adds the sets of `sets` to `record` (a scalar field hides a set of the same name).
fn add_sets(record: &mut Record, sets: BTreeMap<String, BTreeSet<String>>) {
    for (field, members) in sets {
        record.entry(field).or_insert(Value::Set(members));
    }
}

/// Materialises one record (the caller checked the index).
fn read_record<R: ReadDoc>(doc: &R, collection: &str, id: &str) -> Record {
    let mut record = Record::new();
    let prefix = layout::record_fields_prefix(collection, id);
    for item in doc.map_range(ROOT, prefix.clone()..layout::prefix_end(&prefix)) {
        let field = &item.key[prefix.len()..];
        match layout::decode_ref(&item.value) {
            Stored::Scalar(v) => {
                record.insert(field.to_owned(), v);
            }
            Stored::Unsupported => debug!(collection, id, field, "skipping a value OneFolder does not write"),
        }
    }
    let prefix = layout::record_members_prefix(collection, id);
    let mut sets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for key in keys_with_prefix(doc, &prefix) {
        if let Some((field, member)) = split_member(&key[prefix.len()..]) {
            sets.entry(field.to_owned()).or_default().insert(member);
        }
    }
    add_sets(&mut record, sets);
    record
}

/// The index entries of a collection: (packed id, id), in key order.
fn read_index<R: ReadDoc>(doc: &R, collection: &str) -> Vec<(String, String)> {
    let prefix = layout::index_prefix(collection);
    keys_with_prefix(doc, &prefix)
        .into_iter()
        .map(|key| {
            let packed = key[prefix.len()..].to_owned();
            let id = layout::unpack(&packed).into_owned();
            (packed, id)
        })
        .collect()
}

/// The ids in a collection's index, sorted.
fn read_ids<R: ReadDoc>(doc: &R, collection: &str) -> Vec<String> {
    let mut ids: Vec<String> = read_index(doc, collection).into_iter().map(|(_, id)| id).collect();
    ids.sort_unstable();
    ids
}

/// A record being read: its id, its scalar fields and its sets.
type Partial = (String, Record, BTreeMap<String, BTreeSet<String>>);

/// Materialises every existing record of a collection with three range scans.
fn read_collection<R: ReadDoc>(doc: &R, collection: &str) -> Collection {
    let mut by_packed: HashMap<String, Partial> = read_index(doc, collection)
        .into_iter()
        .map(|(packed, id)| (packed, (id, Record::new(), BTreeMap::new())))
        .collect();
    if by_packed.is_empty() {
        return Collection::new();
    }
    let prefix = layout::collection_fields_prefix(collection);
    for item in doc.map_range(ROOT, prefix.clone()..layout::prefix_end(&prefix)) {
        let Some((packed, field)) = item.key[prefix.len()..].split_once(SEPARATOR) else { continue };
        let Some((id, record, _)) = by_packed.get_mut(packed) else { continue };
        match layout::decode_ref(&item.value) {
            Stored::Scalar(v) => {
                record.insert(field.to_owned(), v);
            }
            Stored::Unsupported => debug!(collection, id, field, "skipping a value OneFolder does not write"),
        }
    }
    let prefix = layout::collection_members_prefix(collection);
    for key in keys_with_prefix(doc, &prefix) {
        let Some((packed, rest)) = key[prefix.len()..].split_once(SEPARATOR) else { continue };
        let Some((_, _, sets)) = by_packed.get_mut(packed) else { continue };
        if let Some((field, member)) = split_member(rest) {
            sets.entry(field.to_owned()).or_default().insert(member);
        }
    }
    by_packed
        .into_values()
        .map(|(id, mut record, sets)| {
            add_sets(&mut record, sets);
            (id, record)
        })
        .collect()
}

impl Engine for AutomergeEngine {
    fn engine_id(&self) -> &'static str {
        ENGINE_ID
    }

    fn new_empty(&self) -> Box<dyn Engine> {
        Box::new(AutomergeEngine::new())
    }

    fn write(&mut self, ops: &[Op]) -> Result<(), EngineError> {
        ops.iter().try_for_each(validate)?;
        if ops.is_empty() {
            return Ok(());
        }
        let doc = &mut self.doc;
        let committed = catch_unwind(AssertUnwindSafe(|| {
            let mut tx = doc.transaction();
            for op in ops {
                if let Err(e) = apply_op(&mut tx, op) {
                    tx.rollback();
                    return Err(EngineError::Other(format!("automerge failed on {op:?}: {e}")));
                }
            }
            let (hash, _) = tx.commit();
            let Some(hash) = hash else {
                // Every op was a no-op: automerge made no change.
                return Ok(None);
            };
            match doc.get_change_by_hash(&hash) {
                Some(change) if change.hash() == hash => Ok(Some(change.raw_bytes().to_vec())),
                // Never seen; the caller rebuilds the engine from its store on an error.
                _ => Err(EngineError::Other(format!("automerge cannot return the change {hash} it just committed"))),
            }
        }))
        .unwrap_or_else(|panic| {
            // The caller rebuilds the engine from its store on an error.
            Err(EngineError::Other(format!("automerge panicked in a write: {}", chunks::panic_message(&*panic))))
        })?;
        if committed.is_some() {
            self.changed.extend_ops(ops);
        }
        self.local.extend(committed);
        Ok(())
    }

    fn take_local_changes(&mut self) -> Result<Option<Vec<u8>>, EngineError> {
        match self.local.len() {
            0 => Ok(None),
            1 => Ok(self.local.pop()),
            _ => Ok(Some(std::mem::take(&mut self.local).concat())),
        }
    }

    fn merge_changes(&self, changes: &[&[u8]]) -> Result<Vec<u8>, EngineError> {
        let mut documents = Vec::new();
        let mut seen = HashSet::new();
        let mut merged = Vec::with_capacity(changes.iter().map(|c| c.len()).sum());
        for blob in changes {
            let parsed = chunks::parse(blob).map_err(|e| EngineError::Corrupt(format!("change to merge: {e}")))?;
            documents.extend(parsed.document_bytes);
            for change in parsed.changes {
                if seen.insert(change.change.hash()) {
                    merged.extend_from_slice(&change.bytes);
                }
            }
        }
        // Snapshots first: they usually cover the changes that follow.
        Ok(documents.into_iter().flatten().chain(merged).collect())
    }

    fn apply_remote(&mut self, bytes: &[u8]) -> Result<(), EngineError> {
        self.integrate(bytes, "remote change")
    }

    /// The log as one merged apply: an automerge apply costs time in proportion to the
    /// document, so entry by entry is quadratic (40 000 entries took over 30 s). Unlike yrs,
    /// grouping changes the outcome of nothing: a change integrates whole once all of its
    /// dependencies are present, however the changes were grouped. Entry by entry remains the
    /// fallback when the merged apply fails.
    fn replay(&mut self, snapshot: Option<&[u8]>, log: &[&[u8]]) -> Result<(), EngineError> {
        replay_merged(self, snapshot, log, |_| true, |e| Self::with_actor(e.actor_id().clone()))
    }

    /// `Automerge::save`, followed by the chunks of the changes still waiting for dependencies.
    fn snapshot(&self) -> Result<Vec<u8>, EngineError> {
        let mut bytes = catch_unwind(AssertUnwindSafe(|| self.doc.save())).map_err(|panic| {
            EngineError::Other(format!("automerge panicked in save: {}", chunks::panic_message(&*panic)))
        })?;
        for change in &self.waiting {
            bytes.extend_from_slice(&change.bytes);
        }
        Ok(bytes)
    }

    fn load_snapshot(&mut self, bytes: &[u8]) -> Result<(), EngineError> {
        self.integrate(bytes, "snapshot")
    }

    /// The heads (hashes of the changes nothing applied depends on), sorted and concatenated.
    fn version(&self) -> Vec<u8> {
        let mut heads = self.doc.get_heads();
        heads.sort_unstable();
        heads.iter().flat_map(|h| h.0).collect()
    }

    fn has_pending(&self) -> bool {
        // automerge's own queue is empty unless a snapshot brought orphans it kept.
        !self.waiting.is_empty() || !self.doc.get_missing_deps(&[]).is_empty()
    }

    fn record(&self, collection: &str, id: &str) -> Result<Option<Record>, EngineError> {
        let exists = self
            .doc
            .get(ROOT, layout::index_key(collection, id))
            .map_err(|e| EngineError::Other(e.to_string()))?
            .is_some();
        Ok(exists.then(|| read_record(&self.doc, collection, id)))
    }

    fn collection(&self, collection: &str) -> Result<Collection, EngineError> {
        Ok(read_collection(&self.doc, collection))
    }

    fn ids(&self, collection: &str) -> Result<Vec<String>, EngineError> {
        Ok(read_ids(&self.doc, collection))
    }

    fn contains(&self, collection: &str, id: &str) -> Result<bool, EngineError> {
        Ok(self
            .doc
            .get(ROOT, layout::index_key(collection, id))
            .map_err(|e| EngineError::Other(e.to_string()))?
            .is_some())
    }

    fn field(&self, collection: &str, id: &str, field: &str) -> Result<Option<Value>, EngineError> {
        if !self.contains(collection, id)? {
            return Ok(None);
        }
        let prefix = layout::members_prefix(collection, id, field);
        let members: BTreeSet<String> = keys_with_prefix(&self.doc, &prefix)
            .iter()
            .map(|key| layout::unpack(&key[prefix.len()..]).into_owned())
            .collect();
        let scalar = self
            .doc
            .get(ROOT, layout::field_key(collection, id, field))
            .map_err(|e| EngineError::Other(e.to_string()))?
            .and_then(|(value, _)| match layout::decode_value(&value) {
                Stored::Scalar(v) => Some(v),
                Stored::Unsupported => None,
            });
        // As in `read_record`: a scalar field hides a set of the same name.
        Ok(scalar.or_else(|| (!members.is_empty()).then_some(Value::Set(members))))
    }

    fn for_each_record(&self, collection: &str, visit: &mut dyn FnMut(&str, Record)) -> Result<(), EngineError> {
        for (id, record) in read_collection(&self.doc, collection) {
            visit(&id, record);
        }
        Ok(())
    }

    fn take_changed(&mut self) -> Changed {
        std::mem::replace(&mut self.changed, Changed::none())
    }
}
