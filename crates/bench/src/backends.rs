//! The engines and stores the benchmarks know: **the one list** to extend when an adapter
//! lands. `cargo xtask bench` asks the bench binary (`onefolder-bench list`) which of them are
//! compiled in and runs every engine × store pair, so a new adapter is one line below plus its
//! cargo feature in `crates/bench/Cargo.toml`.

use std::path::Path;

use anyhow::{Result, anyhow};
use onefolder_core::{Engine, Store};

/// Makes an empty engine.
pub type EngineFn = fn() -> Box<dyn Engine>;

/// Opens (or reopens) a store in a local state directory.
pub type StoreFn = fn(&Path) -> Result<Box<dyn Store>>;

/// Every engine compiled into this build, by the name used on the command line.
pub const ENGINES: &[(&str, EngineFn)] = &[
    #[cfg(feature = "yrs")]
    ("yrs", || Box::new(onefolder_engine_yrs::YrsEngine::new())),
    #[cfg(feature = "automerge")]
    ("automerge", || Box::new(onefolder_engine_automerge::AutomergeEngine::new())),
];

/// Every store compiled into this build, by the name used on the command line.
pub const STORES: &[(&str, StoreFn)] = &[
    #[cfg(feature = "sqlite")]
    ("sqlite", |dir| {
        let options = onefolder_store_sqlite::SqliteOptions::default();
        Ok(Box::new(onefolder_store_sqlite::SqliteStore::open(dir, options)?))
    }),
    #[cfg(feature = "lmdb")]
    ("lmdb", |dir| {
        let options = onefolder_store_lmdb::LmdbOptions::default();
        Ok(Box::new(onefolder_store_lmdb::LmdbStore::open(dir, options)?))
    }),
];

fn find<T: Copy>(list: &[(&'static str, T)], kind: &str, name: &str) -> Result<(&'static str, T)> {
    list.iter()
        .find(|(n, _)| *n == name)
        .copied()
        .ok_or_else(|| anyhow!("{kind} {name:?} is not compiled into this build (have: {})", names(list).join(", ")))
}

/// The engine factory called `name`.
pub fn engine(name: &str) -> Result<EngineFn> {
    Ok(find(ENGINES, "engine", name)?.1)
}

/// The store factory called `name`.
pub fn store(name: &str) -> Result<StoreFn> {
    Ok(find(STORES, "store", name)?.1)
}

/// The names of a list.
pub fn names<T>(list: &[(&'static str, T)]) -> Vec<&'static str> {
    list.iter().map(|(n, _)| *n).collect()
}

/// An engine × store pair, resolved.
#[derive(Clone, Copy)]
pub struct Backend {
    /// Engine name.
    pub engine_name: &'static str,
    /// Store name.
    pub store_name: &'static str,
    /// Engine factory.
    pub engine: EngineFn,
    /// Store factory.
    pub store: StoreFn,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}×{}", self.engine_name, self.store_name)
    }
}

impl Backend {
    /// The pair called `engine` × `store`.
    pub fn by_name(engine: &str, store: &str) -> Result<Backend> {
        let (engine_name, engine) = find(ENGINES, "engine", engine)?;
        let (store_name, store) = find(STORES, "store", store)?;
        Ok(Backend { engine_name, store_name, engine, store })
    }
}
