//! [`Indexed`]: an [`Engine`] layer that answers the set-membership queries of the trait
//! (`ids_with_member`, `ids_without_members`, `member_counts`, `count`) from an in-memory
//! index instead of a scan of the collection.
//!
//! An index covers one (collection, set field) pair. It is built by one scan the first time
//! that pair is queried, and kept up to date after every mutating call from what the engine
//! reports with [`Engine::take_changed`]: each reported record is read again (one
//! [`Engine::contains`] and one [`Engine::field`]). When the engine reports
//! [`Changed::Unknown`] (a snapshot was loaded, or it cannot tell) every index is dropped and
//! rebuilt at the next query. So the answers always equal the scans of [`crate::engine::scan`],
//! for local edits and remote applies alike (conformance check `indexed_queries_agree`).
//!
//! Record ids and members are interned once as `u32` numbers: W's index (100 000 files,
//! 300 000 assignments) costs about 13 MB.
//!
//! The same way, a collection asked for with [`Engine::shared_collection`] (the model's tags,
//! locations and searches) is kept whole after the first call and updated record by record, so
//! the tag tree is not read out of the engine again for every tag created or query answered;
//! [`Engine::record`] and [`Engine::contains`] on it are answered from the copy.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::engine::{Changed, Engine, EngineError};
use crate::value::{Collection, Op, Record, Value};

/// An [`Engine`] with indexed set-membership queries; see the module docs.
pub struct Indexed<E> {
    inner: E,
    indexes: RefCell<HashMap<(String, String), SetIndex>>,
    /// The collections asked for with [`Engine::shared_collection`], kept up to date.
    collections: RefCell<HashMap<String, Kept>>,
}

/// Where the generations of the next kept copy of a collection start. Each copy counts up from
/// its own base, [`GENERATION_STRIDE`] apart and never reused in the process: a generation
/// names one state of one copy, even across engines rebuilt from the store (a reader that
/// kept a generation from before can never mistake a new copy for the one it saw).
static NEXT_GENERATION_BASE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Room for the re-reads of one kept copy before its generations would reach the next base.
const GENERATION_STRIDE: u64 = 1 << 40;

fn next_generation_base() -> u64 {
    NEXT_GENERATION_BASE.fetch_add(GENERATION_STRIDE, std::sync::atomic::Ordering::Relaxed)
}

/// A kept collection and its [`Engine::collection_generation`].
struct Kept {
    records: Arc<Collection>,
    generation: u64,
}

impl<E: std::fmt::Debug> std::fmt::Debug for Indexed<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let indexes: Vec<(String, String)> = self.indexes.borrow().keys().cloned().collect();
        f.debug_struct("Indexed").field("inner", &self.inner).field("indexes", &indexes).finish()
    }
}

impl<E: Engine> Indexed<E> {
    /// Wraps `inner`; nothing is indexed until the first query.
    pub fn new(inner: E) -> Self {
        Self { inner, indexes: RefCell::new(HashMap::new()), collections: RefCell::new(HashMap::new()) }
    }

    /// The engine underneath.
    pub fn inner(&self) -> &E {
        &self.inner
    }

    /// Brings every index up to date with what the engine reports changed; drops them all
    /// when it cannot tell, or when the mutating call `result` failed half-way.
    fn absorb<T>(&mut self, result: Result<T, EngineError>) -> Result<T, EngineError> {
        let changed = self.inner.take_changed();
        let records = match (&result, changed) {
            (Ok(_), Changed::Records(records)) => records,
            _ => {
                self.forget();
                return result;
            }
        };
        if let Err(e) = self.update(&records) {
            self.forget();
            return Err(e);
        }
        result
    }

    /// Re-reads the reported `records` into every index and kept collection.
    fn update(&mut self, records: &BTreeSet<(String, String)>) -> Result<(), EngineError> {
        for ((collection, field), index) in self.indexes.get_mut().iter_mut() {
            for (c, id) in records {
                if c == collection {
                    let members = read_members(&self.inner, collection, id, field)?;
                    let members: Option<Vec<&str>> =
                        members.as_ref().map(|set| set.iter().map(String::as_str).collect());
                    index.set(id, members.as_deref());
                }
            }
        }
        for (collection, kept) in self.collections.get_mut().iter_mut() {
            for (c, id) in records {
                if c == collection {
                    match self.inner.record(collection, id)? {
                        Some(record) => Arc::make_mut(&mut kept.records).insert(id.clone(), record),
                        None => Arc::make_mut(&mut kept.records).remove(id),
                    };
                    kept.generation += 1;
                }
            }
        }
        Ok(())
    }

    /// Drops every index and kept collection: they are built again when next asked for.
    fn forget(&mut self) {
        self.indexes.get_mut().clear();
        self.collections.get_mut().clear();
    }

    /// Runs `query` on the index of (collection, field), building it first when needed.
    fn with_index<R>(
        &self,
        collection: &str,
        field: &str,
        query: impl FnOnce(&SetIndex) -> R,
    ) -> Result<R, EngineError> {
        let mut indexes = self.indexes.borrow_mut();
        let key = (collection.to_owned(), field.to_owned());
        if !indexes.contains_key(&key) {
            let index = SetIndex::build(&self.inner, collection, field)?;
            indexes.insert(key.clone(), index);
        }
        Ok(query(&indexes[&key]))
    }
}

/// The members of the set `field` of a record, `None` when the record does not exist.
fn read_members<E: Engine + ?Sized>(
    engine: &E,
    collection: &str,
    id: &str,
    field: &str,
) -> Result<Option<BTreeSet<String>>, EngineError> {
    if !engine.contains(collection, id)? {
        return Ok(None);
    }
    Ok(Some(match engine.field(collection, id, field)? {
        Some(Value::Set(members)) => members,
        _ => BTreeSet::new(),
    }))
}

/// One (collection, set field) index.
#[derive(Default)]
struct SetIndex {
    /// Record ids and members, each interned once.
    names: Vec<Arc<str>>,
    numbers: foldhash::HashMap<Arc<str>, u32>,
    /// The members of each existing record, by the record's number (`None`: not a record).
    members_of: Vec<Option<Box<[u32]>>>,
    /// Member number → the records that hold it, sorted (a build appends in order: each new
    /// record's number is the largest yet).
    holders: foldhash::HashMap<u32, Vec<u32>>,
    /// Existing records with no member.
    empty: BTreeSet<u32>,
    /// Existing records.
    count: usize,
}

impl SetIndex {
    fn build<E: Engine + ?Sized>(engine: &E, collection: &str, field: &str) -> Result<Self, EngineError> {
        let mut index = SetIndex::default();
        engine.for_each_members(collection, field, &mut |id, members| index.set(id, Some(members)))?;
        tracing::debug!(collection, field, records = index.count, "built a set index");
        Ok(index)
    }

    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&n) = self.numbers.get(name) {
            return n;
        }
        let n = u32::try_from(self.names.len()).expect("fewer than 2^32 names");
        let name: Arc<str> = Arc::from(name);
        self.names.push(name.clone());
        self.numbers.insert(name, n);
        n
    }

    /// Records that `id` now holds `members` (`None`: it does not exist).
    fn set(&mut self, id: &str, members: Option<&[&str]>) {
        let n = self.intern(id);
        let slot = n as usize;
        if self.members_of.len() <= slot {
            self.members_of.resize_with(slot + 1, || None);
        }
        if let Some(old) = self.members_of[slot].take() {
            self.count -= 1;
            if old.is_empty() {
                self.empty.remove(&n);
            }
            for m in old.iter() {
                if let Some(holders) = self.holders.get_mut(m) {
                    if let Ok(at) = holders.binary_search(&n) {
                        holders.remove(at);
                    }
                    if holders.is_empty() {
                        self.holders.remove(m);
                    }
                }
            }
        }
        let Some(members) = members else {
            return;
        };
        let mut members: Vec<u32> = members.iter().map(|m| self.intern(m)).collect();
        members.sort_unstable();
        members.dedup();
        let members = members.into_boxed_slice();
        self.count += 1;
        if members.is_empty() {
            self.empty.insert(n);
        }
        for &m in members.iter() {
            let holders = self.holders.entry(m).or_default();
            match holders.last() {
                Some(&last) if last >= n => {
                    if let Err(at) = holders.binary_search(&n) {
                        holders.insert(at, n);
                    }
                }
                _ => holders.push(n),
            }
        }
        // Interning may have grown the table past `slot`: index again.
        if self.members_of.len() <= slot {
            self.members_of.resize_with(slot + 1, || None);
        }
        self.members_of[slot] = Some(members);
    }

    /// The names of `numbers` (distinct), in byte order.
    fn sorted_names<'a>(&self, numbers: impl Iterator<Item = &'a u32>) -> Vec<String> {
        // Sorted by their first 8 bytes as one integer, then by the whole name: the same order
        // as the names', at integer speed (ids seldom share 8 bytes).
        let mut names: Vec<(u64, &str)> = numbers
            .map(|&n| {
                let name = &*self.names[n as usize];
                let mut head = [0u8; 8];
                let k = name.len().min(8);
                head[..k].copy_from_slice(&name.as_bytes()[..k]);
                (u64::from_be_bytes(head), name)
            })
            .collect();
        names.sort_unstable();
        names.into_iter().map(|(_, name)| name.to_owned()).collect()
    }

    fn with_member(&self, member: &str) -> Vec<String> {
        match self.numbers.get(member).and_then(|m| self.holders.get(m)) {
            Some(holders) => self.sorted_names(holders.iter()),
            None => Vec::new(),
        }
    }

    /// The records holding any of `members`: united as numbers, named once.
    fn with_any_member(&self, members: &BTreeSet<String>) -> Vec<String> {
        let mut numbers: Vec<u32> = Vec::new();
        for holders in members.iter().filter_map(|m| self.numbers.get(m.as_str()).and_then(|n| self.holders.get(n))) {
            numbers.extend(holders);
        }
        numbers.sort_unstable();
        numbers.dedup();
        self.sorted_names(numbers.iter())
    }

    fn without_members(&self) -> Vec<String> {
        self.sorted_names(self.empty.iter())
    }

    fn member_counts(&self) -> BTreeMap<String, usize> {
        self.holders.iter().map(|(&m, holders)| (self.names[m as usize].to_string(), holders.len())).collect()
    }
}

impl<E: Engine> Engine for Indexed<E> {
    fn engine_id(&self) -> &'static str {
        self.inner.engine_id()
    }
    fn new_empty(&self) -> Box<dyn Engine> {
        Box::new(Indexed::new(self.inner.new_empty()))
    }
    fn write(&mut self, ops: &[Op]) -> Result<(), EngineError> {
        let result = self.inner.write(ops);
        self.absorb(result)
    }
    fn take_local_changes(&mut self) -> Result<Option<Vec<u8>>, EngineError> {
        self.inner.take_local_changes()
    }
    fn merge_changes(&self, changes: &[&[u8]]) -> Result<Vec<u8>, EngineError> {
        self.inner.merge_changes(changes)
    }
    fn apply_remote(&mut self, bytes: &[u8]) -> Result<(), EngineError> {
        let result = self.inner.apply_remote(bytes);
        self.absorb(result)
    }
    fn snapshot(&self) -> Result<Vec<u8>, EngineError> {
        self.inner.snapshot()
    }
    fn load_snapshot(&mut self, bytes: &[u8]) -> Result<(), EngineError> {
        let result = self.inner.load_snapshot(bytes);
        self.absorb(result)
    }
    fn replay(&mut self, snapshot: Option<&[u8]>, log: &[&[u8]]) -> Result<(), EngineError> {
        let result = self.inner.replay(snapshot, log);
        self.absorb(result)
    }
    fn version(&self) -> Vec<u8> {
        self.inner.version()
    }
    fn has_pending(&self) -> bool {
        self.inner.has_pending()
    }
    fn record(&self, collection: &str, id: &str) -> Result<Option<Record>, EngineError> {
        match self.collections.borrow().get(collection) {
            Some(kept) => Ok(kept.records.get(id).cloned()),
            None => self.inner.record(collection, id),
        }
    }
    fn collection(&self, collection: &str) -> Result<Collection, EngineError> {
        match self.collections.borrow().get(collection) {
            Some(kept) => Ok(Collection::clone(&kept.records)),
            None => self.inner.collection(collection),
        }
    }
    /// Kept after the first call, and updated from what the engine reports changed.
    fn shared_collection(&self, collection: &str) -> Result<Arc<Collection>, EngineError> {
        if let Some(kept) = self.collections.borrow().get(collection) {
            return Ok(Arc::clone(&kept.records));
        }
        let records = Arc::new(self.inner.collection(collection)?);
        let generation = next_generation_base();
        self.collections.borrow_mut().insert(collection.to_owned(), Kept { records: Arc::clone(&records), generation });
        Ok(records)
    }
    fn collection_generation(&self, collection: &str) -> Option<u64> {
        self.collections.borrow().get(collection).map(|kept| kept.generation)
    }
    fn ids(&self, collection: &str) -> Result<Vec<String>, EngineError> {
        self.inner.ids(collection)
    }
    fn contains(&self, collection: &str, id: &str) -> Result<bool, EngineError> {
        match self.collections.borrow().get(collection) {
            Some(kept) => Ok(kept.records.contains_key(id)),
            None => self.inner.contains(collection, id),
        }
    }
    fn field(&self, collection: &str, id: &str, field: &str) -> Result<Option<Value>, EngineError> {
        self.inner.field(collection, id, field)
    }
    fn for_each_record(&self, collection: &str, visit: &mut dyn FnMut(&str, Record)) -> Result<(), EngineError> {
        self.inner.for_each_record(collection, visit)
    }
    fn for_each_field(
        &self,
        collection: &str,
        field: &str,
        visit: &mut dyn FnMut(&str, Option<Value>),
    ) -> Result<(), EngineError> {
        self.inner.for_each_field(collection, field, visit)
    }
    fn for_each_members(
        &self,
        collection: &str,
        field: &str,
        visit: &mut dyn FnMut(&str, &[&str]),
    ) -> Result<(), EngineError> {
        self.inner.for_each_members(collection, field, visit)
    }
    /// From any index of the collection; otherwise the engine's own count.
    fn count(&self, collection: &str) -> Result<usize, EngineError> {
        let indexed = self.indexes.borrow().iter().find(|((c, _), _)| c == collection).map(|(_, index)| index.count);
        match indexed {
            Some(count) => Ok(count),
            None => self.inner.count(collection),
        }
    }
    fn ids_with_member(&self, collection: &str, field: &str, member: &str) -> Result<Vec<String>, EngineError> {
        self.with_index(collection, field, |index| index.with_member(member))
    }
    fn ids_with_any_member(
        &self,
        collection: &str,
        field: &str,
        members: &BTreeSet<String>,
    ) -> Result<Vec<String>, EngineError> {
        self.with_index(collection, field, |index| index.with_any_member(members))
    }
    fn ids_without_members(&self, collection: &str, field: &str) -> Result<Vec<String>, EngineError> {
        self.with_index(collection, field, SetIndex::without_members)
    }
    fn member_counts(&self, collection: &str, field: &str) -> Result<BTreeMap<String, usize>, EngineError> {
        self.with_index(collection, field, SetIndex::member_counts)
    }
    /// The changes were consumed by the index: a layer above must rescan.
    fn take_changed(&mut self) -> Changed {
        Changed::Unknown
    }
}
