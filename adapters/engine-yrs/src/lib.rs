//! # onefolder-engine-yrs
//!
//! The [`Engine`] of OneFolder Sync on [yrs] 0.28, the Rust port of Yjs. Changes are lib0 v1
//! updates, byte-compatible with JavaScript Yjs 13.6.
//!
//! ## Document layout
//!
//! Every map is a **root** map, named by a path whose parts are joined with [`SEPARATOR`]
//! (`'/'`). What a JavaScript client sees:
//!
//! | root map | holds |
//! |---|---|
//! | `doc.getMap("tags")` | the collection index: `record id → true` for every existing record |
//! | `doc.getMap("tags/<id>")` | the record: `field → value` for a scalar field, `<field>/<member> → true` for each member of a set field |
//!
//! This is format 2 of the library (`library.json`'s `format_version`). Format 1 kept a
//! `{"set": true}` marker per set field and the members in a root map of their own per set:
//! two more yrs items and one more shared type per file.
//!
//! Records are root maps, not maps nested in the index, on purpose: in Yjs two replicas that
//! each insert a *new nested map* under the same key produce two different maps and one of
//! them silently loses, with every field inside it. Root maps are identified by name, so the
//! same record created offline on two computers is one map whose fields merge one by one.
//!
//! Hence collection names, record ids and field names must be non-empty and must not contain
//! [`SEPARATOR`] ([`EngineError::InvalidOp`] otherwise); set members may be any string (a
//! member key is split at its first separator).
//!
//! ## Semantics
//!
//! - `Create` inserts the id in the index unless it is there already (so re-creating an existing
//!   record writes nothing, and a concurrent `Delete` wins over it). `Delete` removes the id
//!   from the index and every key of the record map; field writes that race the delete stay in
//!   the record map, invisible until the record is created again.
//! - `Put` is a last-writer-wins register per field (yrs map semantics); a `Put` of the value
//!   the field already holds writes nothing. `Clear` removes the key and the field's members.
//! - `SetAdd` always inserts `<field>/<member> → true`, `SetRemove` deletes that key. A yrs map
//!   delete only removes the entry it observed, so an add concurrent with a remove survives:
//!   add wins. A set whose members were all removed reads as an absent field.
//! - Numbers: see the `codec` module — `Int` is stored as a plain number, an `f64` with an
//!   integral value is stored as `["f64", x]` so that it does not read back as an `Int`.
//! - [`Engine::contains`] and [`Engine::field`] look up one key; [`Engine::for_each_record`]
//!   reads one record map at a time.
//!
//! ## Local changes
//!
//! Writes run in a transaction whose origin is [`LOCAL_ORIGIN`]; [`Engine::write`] keeps the
//! transaction's own update (`TransactionMut::encode_update_v1`, taken just before the commit)
//! and [`Engine::take_local_changes`] merges and drains them. There is deliberately no
//! `observe_update_v1` subscription: yrs encodes the update of *every* transaction for it,
//! remote applies and snapshot loads included, which made a cold open of W 0.5 s slower
//! (1.36 s against 0.86 s to load the same 29 MB snapshot, measured on a 2-core machine).
//! Each engine uses a fresh random 53-bit client id (from a UUID v4), so a restarted process or
//! a cloned disk image never reuses a (client, clock) pair.
//!
//! ## Changes that arrive early
//!
//! Unlike Yjs, yrs 0.28 does not hold back every block that follows a gap in a client's clock:
//! a block whose own dependencies (left/right origin, parent) are present is integrated at once,
//! behind a "skip" range for the missing clocks, and filled in when those arrive. Only blocks
//! whose dependencies are missing, and deletes of items not seen yet, wait; that is what
//! [`Engine::has_pending`] reports (yrs `ReadTxn::has_missing_updates`: pending structs or a
//! pending delete set). An early block is visible only if its record is (the index entry comes
//! with the `Create`), so readers never see half a record. The skip ranges are private to yrs:
//! [`Engine::version`] (the state vector, clients sorted) counts skipped clocks as known, so two
//! replicas that differ only by a hole have the same version. Snapshots keep the holes and
//! converge once they are filled.
//!
//! ## Untrusted bytes
//!
//! Remote bytes and snapshots go through three guards before they touch the document:
//!
//! 1. A structural pre-check (module `precheck`) walks the bytes exactly as yrs' v1 decoder does,
//!    without allocating. yrs 0.28.1 `try_reserve`s attacker-declared counts (clients, blocks,
//!    `Any` arrays and maps) before reading the entries. `try_reserve` only fails when the
//!    allocator refuses; when it succeeds, a `HashMap` reservation writes one control byte per
//!    bucket. Measured on this machine kind (23 GiB RAM, `vm.overcommit_memory=0`, debug build):
//!    the 4 bytes `ff ff ff 7f` (2^28 clients) make `Update::decode_v1` reserve 21 GB and touch
//!    514 MiB in about a second before it fails on the missing data; `ff ff ff 0f` touches
//!    66 MiB; a 14-byte update holding one `Any` map that declares 2^24 entries touches 33 MiB.
//!    Five bytes declaring 2^32 clients fail cleanly here, but where overcommit is unlimited
//!    the reservation succeeds and its memset alone is several GiB. Nested `Any` values are
//!    decoded recursively: 100 000 nested arrays (200 KB) overflow the 8 MiB main-thread stack
//!    and abort the process. The pre-check rejects any count larger than the remaining bytes
//!    could hold, nesting deeper than 64, client ids wider than 53 bits, over-long var-ints and
//!    overflowing clock ranges.
//! 2. `Update::decode_v1` runs under `catch_unwind`: yrs debug builds panic on some garbage
//!    (`ClientID::new` asserts 53 bits, var-int shifts and clock additions overflow).
//! 3. Only a fully decoded update is applied, in its own transaction, also under
//!    `catch_unwind`. Any failure is [`EngineError::Corrupt`].
//!
//! One gap remains: an update that decodes but is semantically invalid (an item whose parent is
//! not a type) makes yrs' `apply_update` fail *half-way*, after some blocks were integrated.
//! Such bytes come only from a buggy or malicious writer (segment checksums catch corruption);
//! the engine then reports `Corrupt` and logs a warning, and the caller should rebuild the
//! engine from its store.

#![warn(missing_docs)]

mod changes;
mod codec;
mod precheck;
pub mod prototype;

use std::any::Any as StdAny;
use std::collections::{BTreeMap, BTreeSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use onefolder_core::engine::replay_merged;
use onefolder_core::{Changed, Collection, Engine, EngineError, Op, Record, Value};
use tracing::{debug, trace, warn};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Any, Doc, Map, MapRef, Out, ReadTxn, StateVector, Transact, TransactionMut, Update, WriteTxn};

use crate::changes::Changes;
use crate::codec::Stored;

/// The engine id written in `library.json` and segment headers.
pub const ENGINE_ID: &str = "yrs";

/// Joins collection and record id into root-map names (`tags/<id>`), and a set field and a member into a record-map key.
pub const SEPARATOR: char = '/';

/// Transaction origin of [`Engine::write`]; only updates of transactions with this origin are
/// returned by [`Engine::take_local_changes`].
pub const LOCAL_ORIGIN: &str = "onefolder-local";

/// Transaction origin of [`Engine::apply_remote`] and [`Engine::load_snapshot`].
const REMOTE_ORIGIN: &str = "onefolder-remote";

/// Largest client id Yjs uses (53 bits, a JavaScript safe integer).
const CLIENT_ID_MASK: u64 = (1 << 53) - 1;

/// Updates of local transactions not yet taken.
type Buffer = Arc<Mutex<Vec<Vec<u8>>>>;

/// An [`Engine`] on a yrs [`Doc`]; see the crate docs for the layout.
pub struct YrsEngine {
    doc: Doc,
    local: Buffer,
    changes: Changes,
    /// An untracked load left root types untyped; see `integrate`.
    untyped_roots: bool,
    /// A peer's change was integrated since the document last encoded to a snapshot that was
    /// decoded back; see [`Engine::snapshot`].
    unchecked_remote: AtomicBool,
}

impl Default for YrsEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for YrsEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("YrsEngine").field("client_id", &self.client_id()).finish_non_exhaustive()
    }
}

impl YrsEngine {
    /// An empty document with a fresh random 53-bit client id.
    pub fn new() -> Self {
        Self::with_client_id(random_client_id())
    }

    /// An empty document with the given client id (masked to 53 bits). The caller must make
    /// sure no other replica, past or present, uses it; prefer [`YrsEngine::new`].
    pub fn with_client_id(client_id: u64) -> Self {
        let doc = Doc::with_client_id(client_id & CLIENT_ID_MASK);
        let changes = Changes::attach(&doc);
        Self { doc, local: Buffer::default(), changes, untyped_roots: false, unchecked_remote: AtomicBool::new(false) }
    }

    /// The yrs client id of this replica.
    pub fn client_id(&self) -> u64 {
        self.doc.client_id().get()
    }

    /// Pre-checks, decodes and integrates v1 update bytes (a change or a snapshot).
    /// `untrusted` bytes (a peer's change) must also survive re-encoding; a snapshot from this
    /// device's own store skips that check, which would double the cost of a cold open.
    fn integrate(&mut self, bytes: &[u8], what: &str, untrusted: bool) -> Result<(), EngineError> {
        let (update, roots) = decode_update_with_roots(bytes, what, untrusted)?;
        if untrusted {
            // Set before the apply: a failed apply may have integrated part of the update.
            *self.unchecked_remote.get_mut() = true;
        }
        let doc = &self.doc;
        // A root type that arrives in an update is untyped until read as a map, and yrs
        // reports no change of an untyped type. So while changes are tracked, every root the
        // update names is typed before the apply (root types are not part of the document's
        // updates: this writes nothing), and so is every root that an untracked snapshot load
        // or replay left untyped (a later overwrite does not name its root again). Untracked
        // applies type nothing: typed roots would make yrs build a change event for each
        // record of a snapshot.
        let tracked = self.changes.tracking();
        let type_all = tracked && self.untyped_roots;
        let applied = catch_unwind(AssertUnwindSafe(|| {
            let mut txn = doc.transact_mut_with(REMOTE_ORIGIN);
            if type_all {
                let names: Vec<String> = txn.root_refs().map(|(name, _)| name.to_owned()).collect();
                for name in names {
                    txn.get_or_insert_map(name);
                }
            }
            if tracked {
                for name in &roots {
                    if let Ok(name) = std::str::from_utf8(name) {
                        txn.get_or_insert_map(name);
                    }
                }
            }
            txn.apply_update(update).map_err(|e| e.to_string())?;
            // Blocks parked as pending are re-encoded by every later snapshot; a pending update
            // that cannot be re-encoded and merged would make those panic (found by fuzzing).
            if untrusted && txn.has_missing_updates() {
                if let Some(pending) = txn.store().pending_update() {
                    yrs::merge_updates_v1([pending.update.encode_v1()])
                        .map_err(|e| format!("the pending part does not re-encode: {e}"))?;
                }
            }
            Ok::<(), String>(())
        }));
        if matches!(applied, Ok(Ok(()))) {
            self.untyped_roots = !tracked || (self.untyped_roots && !type_all);
        }
        match applied {
            Ok(Ok(())) => {
                trace!(bytes = bytes.len(), what, "applied");
                Ok(())
            }
            Ok(Err(e)) => {
                warn!(error = %e, what, "yrs rejected an update after decoding it; the document may hold part of it");
                Err(EngineError::Corrupt(format!("{what}: {e}")))
            }
            Err(panic) => {
                warn!(what, "yrs panicked while applying an update; the document may hold part of it");
                Err(EngineError::Corrupt(format!("{what}: yrs panicked: {}", panic_message(&panic))))
            }
        }
    }
}

/// A random 53-bit client id from the random bits of a UUID v4.
fn random_client_id() -> u64 {
    // The low 64 bits of a v4 UUID hold 62 random bits (the top two are the variant).
    (uuid::Uuid::new_v4().as_u128() as u64) & CLIENT_ID_MASK
}

fn lock(buffer: &Buffer) -> MutexGuard<'_, Vec<Vec<u8>>> {
    buffer.lock().unwrap_or_else(|e| e.into_inner())
}

fn panic_message(panic: &Box<dyn StdAny + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_owned()
    }
}

/// Pre-checks and decodes v1 update bytes; any failure (or yrs panic) is `Corrupt`.
fn decode_update(bytes: &[u8], what: &str, untrusted: bool) -> Result<Update, EngineError> {
    decode_update_with_roots(bytes, what, untrusted).map(|(update, _)| update)
}

/// [`decode_update`], also returning the root names the update's blocks name as parents.
fn decode_update_with_roots<'b>(
    bytes: &'b [u8],
    what: &str,
    untrusted: bool,
) -> Result<(Update, Vec<&'b [u8]>), EngineError> {
    let roots = precheck::root_names_v1(bytes).map_err(|e| {
        debug!(error = %e, bytes = bytes.len(), what, "rejected by the pre-check");
        EngineError::Corrupt(format!("{what}: {e}"))
    })?;
    let update = match catch_unwind(|| Update::decode_v1(bytes)) {
        Ok(Ok(update)) => update,
        Ok(Err(e)) => return Err(EngineError::Corrupt(format!("{what}: {e}"))),
        Err(panic) => {
            return Err(EngineError::Corrupt(format!("{what}: yrs panicked: {}", panic_message(&panic))));
        }
    };
    // yrs keeps blocks whose dependencies are missing as a pending update and re-encodes them
    // whenever the state is encoded; an update that decodes but does not survive its own
    // re-encoding would make every later snapshot panic (found by fuzzing). Refuse it now,
    // before it touches the document.
    if !untrusted {
        return Ok((update, roots));
    }
    let round_trip = catch_unwind(AssertUnwindSafe(|| Update::decode_v1(&update.encode_v1()).is_ok()));
    if !matches!(round_trip, Ok(true)) {
        return Err(EngineError::Corrupt(format!("{what}: the update does not survive re-encoding")));
    }
    Ok((update, roots))
}

fn record_root(collection: &str, id: &str) -> String {
    format!("{collection}{SEPARATOR}{id}")
}

/// The record-map key of one set member: `<field>/<member>`.
fn member_key(field: &str, member: &str) -> String {
    format!("{field}{SEPARATOR}{member}")
}

fn check_name(kind: &str, name: &str) -> Result<(), EngineError> {
    if name.is_empty() {
        return Err(EngineError::InvalidOp(format!("empty {kind}")));
    }
    if name.contains(SEPARATOR) {
        return Err(EngineError::InvalidOp(format!("{kind} {name:?} contains {SEPARATOR:?}")));
    }
    Ok(())
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
    check_name("collection name", collection)?;
    check_name("record id", id)?;
    if let Some(field) = field {
        check_name("field name", field)?;
    }
    Ok(())
}

/// Removes every member of a set field from a record map.
fn clear_members(txn: &mut TransactionMut, record: &MapRef, field: &str) {
    let keys: Vec<String> = record
        .keys(&*txn)
        .filter(|key| key.split_once(SEPARATOR).is_some_and(|(f, _)| f == field))
        .map(str::to_owned)
        .collect();
    for key in keys {
        record.remove(txn, &key);
    }
}

/// The record map's entry for a scalar `field`, if it holds a plain value.
fn stored_any(map: &MapRef, txn: &TransactionMut, field: &str) -> Option<Any> {
    match map.get(txn, field)? {
        Out::Any(any) => Some(any),
        _ => None,
    }
}

fn apply_op(txn: &mut TransactionMut, op: &Op) {
    match op {
        Op::Create { collection, id } => {
            let index = txn.get_or_insert_map(collection.as_str());
            if index.get(&*txn, id).is_none() {
                index.insert(txn, id.as_str(), Any::Bool(true));
            }
        }
        Op::Delete { collection, id } => {
            if let Some(index) = txn.get_map(collection.as_str()) {
                index.remove(txn, id);
            }
            if let Some(record) = txn.get_map(record_root(collection, id)) {
                record.clear(txn);
            }
        }
        Op::Put { collection, id, field, value } => {
            let Some(new) = codec::encode_scalar(value) else { return };
            let record = txn.get_or_insert_map(record_root(collection, id));
            clear_members(txn, &record, field);
            // Compare as `Value`s: yrs' `Number` equality treats 1 and 1.0 as equal.
            if stored_any(&record, txn, field)
                .is_some_and(|old| codec::decode_stored(&old) == Stored::Scalar(value.clone()))
            {
                return;
            }
            record.insert(txn, field.as_str(), new);
        }
        Op::Clear { collection, id, field } => {
            if let Some(record) = txn.get_map(record_root(collection, id)) {
                clear_members(txn, &record, field);
                record.remove(txn, field);
            }
        }
        Op::SetAdd { collection, id, field, member } => {
            let record = txn.get_or_insert_map(record_root(collection, id));
            if record.get(&*txn, field).is_some() {
                record.remove(txn, field);
            }
            // Always a new entry, even when the member is there: a concurrent remove only
            // deletes the entry it saw, so this add survives it.
            record.insert(txn, member_key(field, member), Any::Bool(true));
        }
        Op::SetRemove { collection, id, field, member } => {
            if let Some(record) = txn.get_map(record_root(collection, id)) {
                record.remove(txn, &member_key(field, member));
            }
        }
    }
}

/// Materialises one record map (the caller checked the index). A scalar hides set members of
/// the same field name (as on automerge; only a concurrent `Put` and `SetAdd` of one field,
/// which the model never writes, leaves both).
fn read_record<T: ReadTxn>(txn: &T, collection: &str, id: &str) -> Record {
    let mut record = Record::new();
    let Some(map) = root_map(txn, &record_root(collection, id)) else {
        return record;
    };
    let mut sets: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (key, out) in map.iter(txn) {
        if let Some((field, member)) = key.split_once(SEPARATOR) {
            sets.entry(field).or_default().insert(member.to_owned());
            continue;
        }
        match decode_out(&out) {
            Stored::Scalar(v) => {
                record.insert(key.to_owned(), v);
            }
            Stored::Unsupported => {
                debug!(collection, id, key, "skipping a field holding a value OneFolder does not write")
            }
        }
    }
    for (field, members) in sets {
        record.entry(field.to_owned()).or_insert(Value::Set(members));
    }
    record
}

fn decode_out(out: &Out) -> Stored {
    match out {
        Out::Any(any) => codec::decode_stored(any),
        _ => Stored::Unsupported,
    }
}

/// One field of a record map, without materialising the others.
fn read_field<T: ReadTxn>(txn: &T, collection: &str, id: &str, field: &str) -> Option<Value> {
    field_of(txn, &root_map(txn, &record_root(collection, id))?, field)
}

/// One field of the record map `map`.
fn field_of<T: ReadTxn>(txn: &T, map: &MapRef, field: &str) -> Option<Value> {
    if let Some(Stored::Scalar(v)) = map.get(txn, field).as_ref().map(decode_out) {
        return Some(v);
    }
    let members: BTreeSet<String> = members_of(txn, map, field).map(str::to_owned).collect();
    (!members.is_empty()).then_some(Value::Set(members))
}

/// The members of set `field` in the record map `map` (none when the field holds a scalar),
/// borrowed from the document.
fn members_of<'t, T: ReadTxn>(txn: &'t T, map: &'t MapRef, field: &'t str) -> impl Iterator<Item = &'t str> {
    let scalar = matches!(map.get(txn, field).as_ref().map(decode_out), Some(Stored::Scalar(_)));
    let keys = (!scalar).then(|| map.keys(txn)).into_iter().flatten();
    keys.filter_map(move |key| key.split_once(SEPARATOR).filter(|(f, _)| *f == field).map(|(_, m)| m))
}

/// Calls `visit` with the id and the record map of every record of `collection` (its index
/// map's keys), naming each record's root in one reused buffer: [`ReadTxn::get_map`] would
/// format and copy every name into a new `Arc<str>`, a third of a scan of 100 000 files.
fn for_each_record_map<T: ReadTxn>(txn: &T, collection: &str, mut visit: impl FnMut(&str, Option<MapRef>)) {
    let Some(index) = root_map(txn, collection) else {
        return;
    };
    let mut name = String::new();
    for id in index.keys(txn) {
        name.clear();
        name.push_str(collection);
        name.push(SEPARATOR);
        name.push_str(id);
        visit(id, root_map(txn, &name));
    }
}

/// The root map `name`, as [`ReadTxn::get_map`] finds it, without copying the name into a
/// new `Arc<str>` first.
fn root_map<T: ReadTxn>(txn: &T, name: &str) -> Option<MapRef> {
    match txn.get(name)? {
        Out::YMap(map) => Some(map),
        Out::UndefinedRef(branch) => Some(MapRef::from(branch)),
        _ => txn.get_map(name),
    }
}

/// Writes a `u64` as a lib0 var-uint.
fn write_var_u64(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

impl Engine for YrsEngine {
    fn engine_id(&self) -> &'static str {
        ENGINE_ID
    }

    fn new_empty(&self) -> Box<dyn Engine> {
        Box::new(YrsEngine::new())
    }

    fn write(&mut self, ops: &[Op]) -> Result<(), EngineError> {
        ops.iter().try_for_each(validate)?;
        if ops.is_empty() {
            return Ok(());
        }
        let mut txn = self.doc.transact_mut_with(LOCAL_ORIGIN);
        if self.untyped_roots {
            // After an untracked load the roots this write changes may be untyped, and yrs
            // would report no change of them (see `integrate`).
            for op in ops {
                let (collection, id) = op.record();
                txn.get_or_insert_map(collection);
                txn.get_or_insert_map(record_root(collection, id));
            }
        }
        for op in ops {
            apply_op(&mut txn, op);
        }
        // What yrs would hand an update observer, without encoding every remote apply too.
        let changed = !txn.delete_set().is_empty() || txn.state_vector() != *txn.before_state();
        let update = changed.then(|| txn.encode_update_v1());
        txn.commit();
        if let Some(update) = update {
            lock(&self.local).push(update);
        }
        Ok(())
    }

    fn take_local_changes(&mut self) -> Result<Option<Vec<u8>>, EngineError> {
        let mut buffer = lock(&self.local);
        match buffer.len() {
            0 => Ok(None),
            1 => Ok(buffer.pop()),
            _ => match merge_in_tree(&buffer) {
                Ok(merged) => {
                    buffer.clear();
                    Ok(Some(merged))
                }
                // The buffer is kept: nothing is lost, the next take retries.
                Err(e) => Err(EngineError::Other(format!("merging local updates: {e}"))),
            },
        }
    }

    fn merge_changes(&self, changes: &[&[u8]]) -> Result<Vec<u8>, EngineError> {
        for change in changes {
            precheck::check_update_v1(change).map_err(|e| EngineError::Corrupt(format!("change to merge: {e}")))?;
        }
        match catch_unwind(|| merge_in_tree(changes)) {
            Ok(Ok(merged)) => Ok(merged),
            Ok(Err(e)) => Err(EngineError::Corrupt(format!("changes to merge: {e}"))),
            Err(panic) => {
                Err(EngineError::Corrupt(format!("changes to merge: yrs panicked: {}", panic_message(&panic))))
            }
        }
    }

    fn apply_remote(&mut self, bytes: &[u8]) -> Result<(), EngineError> {
        self.integrate(bytes, "remote change", true)
    }

    /// One merged apply instead of one transaction per entry, when that gives the same state.
    /// It does only while no dependency is missing: yrs parks *every* later block of a client
    /// that follows a block with a missing dependency in the same update, so a merged log hides
    /// blocks that integrated when their entries were applied one by one (a peer's new file,
    /// while an earlier segment of that peer is still missing). When the merged apply leaves
    /// anything pending, the document starts over and applies entry by entry.
    fn replay(&mut self, snapshot: Option<&[u8]>, log: &[&[u8]]) -> Result<(), EngineError> {
        self.changes.pause();
        let result = replay_merged(self, snapshot, log, |e| !e.has_pending(), |e| Self::with_client_id(e.client_id()));
        self.changes.resume_unknown();
        result
    }

    fn snapshot(&self) -> Result<Vec<u8>, EngineError> {
        // Encoding re-encodes pending blocks; never let a yrs panic there escape.
        let bytes =
            catch_unwind(AssertUnwindSafe(|| self.doc.transact().encode_state_as_update_v1(&StateVector::default())))
                .map_err(|panic| EngineError::Corrupt(format!("snapshot: yrs panicked: {}", panic_message(&panic))))?;
        // A document that took in a crafted peer change can encode to bytes yrs cannot decode
        // (found by fuzzing). A snapshot is what a device reopens from, so once a peer's change
        // was integrated, the next snapshot is decoded back before it is handed out. A document
        // built only from this device's writes and from snapshots that passed this check (its
        // own store's) skips it: decoding a large document back allocated every item again and
        // was a quarter of building W.
        if self.unchecked_remote.load(Ordering::Acquire) {
            decode_update(&bytes, "snapshot", false).map_err(|e| {
                EngineError::Corrupt(format!("the document does not encode to a loadable snapshot: {e}"))
            })?;
            self.unchecked_remote.store(false, Ordering::Release);
        }
        Ok(bytes)
    }

    fn load_snapshot(&mut self, bytes: &[u8]) -> Result<(), EngineError> {
        self.changes.pause();
        let result = self.integrate(bytes, "snapshot", false);
        self.changes.resume_unknown();
        result
    }

    /// The state vector in lib0 v1 encoding, with clients sorted so that equal states give
    /// equal bytes (yrs' own encoding follows hash-map order).
    fn version(&self) -> Vec<u8> {
        let sv = self.doc.transact().state_vector();
        let mut clients: Vec<(u64, u32)> = sv.iter().map(|(client, clock)| (client.get(), *clock)).collect();
        clients.sort_unstable();
        let mut out = Vec::with_capacity(1 + clients.len() * 12);
        write_var_u64(&mut out, clients.len() as u64);
        for (client, clock) in clients {
            write_var_u64(&mut out, client);
            write_var_u64(&mut out, u64::from(clock));
        }
        out
    }

    fn has_pending(&self) -> bool {
        self.doc.transact().has_missing_updates()
    }

    fn record(&self, collection: &str, id: &str) -> Result<Option<Record>, EngineError> {
        let txn = self.doc.transact();
        let Some(index) = root_map(&txn, collection) else {
            return Ok(None);
        };
        if index.get(&txn, id).is_none() {
            return Ok(None);
        }
        Ok(Some(read_record(&txn, collection, id)))
    }

    fn collection(&self, collection: &str) -> Result<Collection, EngineError> {
        let txn = self.doc.transact();
        let Some(index) = root_map(&txn, collection) else {
            return Ok(Collection::new());
        };
        Ok(index.keys(&txn).map(|id| (id.to_owned(), read_record(&txn, collection, id))).collect())
    }

    fn ids(&self, collection: &str) -> Result<Vec<String>, EngineError> {
        let txn = self.doc.transact();
        let Some(index) = root_map(&txn, collection) else {
            return Ok(Vec::new());
        };
        let mut ids: Vec<String> = index.keys(&txn).map(str::to_owned).collect();
        ids.sort_unstable();
        Ok(ids)
    }

    fn contains(&self, collection: &str, id: &str) -> Result<bool, EngineError> {
        let txn = self.doc.transact();
        Ok(root_map(&txn, collection).is_some_and(|index| index.get(&txn, id).is_some()))
    }

    fn field(&self, collection: &str, id: &str, field: &str) -> Result<Option<Value>, EngineError> {
        if !self.contains(collection, id)? {
            return Ok(None);
        }
        Ok(read_field(&self.doc.transact(), collection, id, field))
    }

    fn for_each_record(&self, collection: &str, visit: &mut dyn FnMut(&str, Record)) -> Result<(), EngineError> {
        let txn = self.doc.transact();
        if let Some(index) = root_map(&txn, collection) {
            for id in index.keys(&txn) {
                visit(id, read_record(&txn, collection, id));
            }
        }
        Ok(())
    }

    fn for_each_field(
        &self,
        collection: &str,
        field: &str,
        visit: &mut dyn FnMut(&str, Option<Value>),
    ) -> Result<(), EngineError> {
        let txn = self.doc.transact();
        for_each_record_map(&txn, collection, |id, map| visit(id, map.and_then(|map| field_of(&txn, &map, field))));
        Ok(())
    }

    fn for_each_members(
        &self,
        collection: &str,
        field: &str,
        visit: &mut dyn FnMut(&str, &[&str]),
    ) -> Result<(), EngineError> {
        let txn = self.doc.transact();
        for_each_record_map(&txn, collection, |id, map| match map {
            Some(map) => visit(id, &members_of(&txn, &map, field).collect::<Vec<_>>()),
            None => visit(id, &[]),
        });
        Ok(())
    }

    fn count(&self, collection: &str) -> Result<usize, EngineError> {
        let txn = self.doc.transact();
        Ok(root_map(&txn, collection).map_or(0, |index| index.len(&txn) as usize))
    }

    /// From the document's observers; see the `changes` module.
    fn take_changed(&mut self) -> Changed {
        self.changes.take(&self.doc)
    }
}

/// Updates merged at once by [`merge_in_tree`]; larger lists are merged in groups of this many,
/// then the results again.
const MERGE_FAN_IN: usize = 16;

/// `yrs::merge_updates_v1` over `updates`, done in a tree of [`MERGE_FAN_IN`]-way merges. yrs
/// walks its list of pending updates once per block it emits, so one merge of n small updates
/// costs about n² (a flush of 1 000 one-edit updates spent most of its time there); merging is
/// associative, so a tree gives an equivalent update for about n·log n.
fn merge_in_tree<T: AsRef<[u8]>>(updates: &[T]) -> Result<Vec<u8>, yrs::encoding::read::Error> {
    if updates.len() <= MERGE_FAN_IN {
        return yrs::merge_updates_v1(updates.iter().map(AsRef::as_ref));
    }
    let level = updates.chunks(MERGE_FAN_IN).map(merge_in_tree).collect::<Result<Vec<_>, _>>()?;
    merge_in_tree(&level)
}

#[cfg(test)]
mod merge_tests {
    use super::*;
    use onefolder_core::{Op, Value};

    #[test]
    fn a_merge_in_a_tree_is_the_flat_merge() {
        let mut e = YrsEngine::new();
        let mut updates = Vec::new();
        for k in 0..300u32 {
            let id = format!("r{}", k % 40);
            let ops = if k % 7 == 3 {
                vec![Op::Delete { collection: "c".into(), id }]
            } else {
                let field = format!("f{}", k % 3);
                vec![
                    Op::Create { collection: "c".into(), id: id.clone() },
                    Op::Put { collection: "c".into(), id, field, value: Value::Int(k.into()) },
                ]
            };
            e.write(&ops).unwrap();
            updates.extend(e.take_local_changes().unwrap());
        }
        assert!(updates.len() > MERGE_FAN_IN * MERGE_FAN_IN, "three levels of the tree");
        let flat = yrs::merge_updates_v1(&updates).unwrap();
        let tree = merge_in_tree(&updates).unwrap();
        let load = |bytes: &[u8]| {
            let mut fresh = YrsEngine::new();
            fresh.apply_remote(bytes).unwrap();
            (fresh.collection("c").unwrap(), fresh.version())
        };
        assert_eq!(load(&tree), load(&flat));
        let records = e.collection("c").unwrap();
        assert!(records.len() > 30, "{}", records.len());
        assert_eq!(load(&tree).0, records);
    }

    /// A snapshot is decoded back once after a peer's change came in, and not for a
    /// document made of this device's own writes and of snapshots that were checked.
    #[test]
    fn a_snapshot_is_checked_after_a_peer_change_only() {
        let put = |e: &mut YrsEngine, id: &str| {
            let op = Op::Put { collection: "c".into(), id: id.into(), field: "f".into(), value: Value::Int(1) };
            e.write(&[Op::Create { collection: "c".into(), id: id.into() }, op]).unwrap();
            e.take_local_changes().unwrap().unwrap()
        };
        let unchecked = |e: &YrsEngine| e.unchecked_remote.load(Ordering::Acquire);
        let mut a = YrsEngine::new();
        let change = put(&mut a, "x");
        assert!(!unchecked(&a), "own writes");
        let mut b = YrsEngine::new();
        b.load_snapshot(&a.snapshot().unwrap()).unwrap();
        put(&mut b, "y");
        assert!(!unchecked(&b), "own store's snapshot and own writes");
        b.apply_remote(&change).unwrap();
        assert!(unchecked(&b), "a peer's change");
        let snapshot = b.snapshot().unwrap();
        assert!(!unchecked(&b), "the snapshot was decoded back");
        let mut c = YrsEngine::new();
        c.load_snapshot(&snapshot).unwrap();
        assert_eq!(c.collection("c").unwrap(), b.collection("c").unwrap());
        assert!(b.apply_remote(b"not an update").is_err());
        assert!(!unchecked(&b), "nothing was integrated");
    }
}
