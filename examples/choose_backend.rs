//! Open a OneFolder library with the engine, store and transport picked **at run time**, as an
//! app's settings screen or a config file would pick them.
//!
//! ```sh
//! cargo run -p onefolder-examples --example choose_backend                      # yrs + sqlite
//! cargo run -p onefolder-examples --example choose_backend -- --store lmdb
//! cargo run -p onefolder-examples --example choose_backend -- --engine automerge
//! cargo run -p onefolder-examples --example choose_backend -- --library ~/Pictures --state /tmp/laptop
//! ```
//!
//! Without `--library` / `--state` it works in a temporary folder: a "laptop" creates the
//! library and tags a picture, then a "desktop" with the *other* store joins through the same
//! shared folder and sees the tag. The engine is fixed per library (`library.json` names it);
//! the store is each computer's own choice.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Result, bail};
use onefolder_core::{Engine, OpenMode, Replica, ReplicaConfig, Store, Transport};
use onefolder_model::{FileMeta, Library};

/// The engine called `name`. Another engine is its crate plus one arm here.
fn engine(name: &str) -> Result<Box<dyn Engine>> {
    Ok(match name {
        "yrs" => Box::new(onefolder_engine_yrs::YrsEngine::new()),
        "automerge" => Box::new(onefolder_engine_automerge::AutomergeEngine::new()),
        other => bail!("unknown engine {other:?} (this example knows: yrs, automerge)"),
    })
}

/// The store called `name`, keeping its files in `state` (never inside the synced folder).
fn store(name: &str, state: &Path) -> Result<Box<dyn Store>> {
    Ok(match name {
        "sqlite" => Box::new(onefolder_store_sqlite::SqliteStore::open(state, Default::default())?),
        "lmdb" => Box::new(onefolder_store_lmdb::LmdbStore::open(state, Default::default())?),
        other => bail!("unknown store {other:?} (this example knows: sqlite, lmdb)"),
    })
}

/// The shared medium: here always the synced folder (`<library>/onefolder_tags`).
fn transport(library: &Path) -> Arc<dyn Transport> {
    Arc::new(onefolder_transport_folder::FolderTransport::for_library(library))
}

/// Opens (or creates) the library with adapters chosen by name.
async fn open(engine_name: &str, store_name: &str, library: &Path, state: &Path, name: &str) -> Result<Arc<Replica>> {
    let config = ReplicaConfig { device_name: name.into(), mode: OpenMode::CreateOrJoin, ..Default::default() };
    let replica = Replica::open(engine(engine_name)?, store(store_name, state)?, transport(library), config).await?;
    Ok(Arc::new(replica))
}

struct Args {
    engine: String,
    store: String,
    library: Option<PathBuf>,
    state: Option<PathBuf>,
}

fn args() -> Result<Args> {
    let mut a = Args { engine: "yrs".into(), store: "sqlite".into(), library: None, state: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| anyhow::anyhow!("{flag} needs a value"));
        match flag.as_str() {
            "--engine" => a.engine = value()?,
            "--store" => a.store = value()?,
            "--library" => a.library = Some(value()?.into()),
            "--state" => a.state = Some(value()?.into()),
            other => bail!("unknown option {other:?} (--engine, --store, --library DIR, --state DIR)"),
        }
    }
    Ok(a)
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = args()?;
    if let (Some(library), Some(state)) = (&a.library, &a.state) {
        // A real library: open it and show what is there.
        let replica = open(&a.engine, &a.store, library, state, "choose-backend").await?;
        replica.ingest().await?;
        let lib = Library::new(replica.clone());
        let status = replica.status();
        println!("library {} · engine {} · store {}", status.library, status.engine, status.store);
        println!("{} files, {} tags, {} peers", lib.files()?.len(), lib.tags()?.len(), status.peers.len());
        return Ok(());
    }

    let tmp = tempfile::tempdir()?;
    let library = tmp.path().join("Pictures");
    std::fs::create_dir_all(&library)?;
    let other_store = if a.store == "sqlite" { "lmdb" } else { "sqlite" };

    let laptop = open(&a.engine, &a.store, &library, &tmp.path().join("laptop"), "laptop").await?;
    let lib = Library::new(laptop.clone());
    let location = lib.add_location("Pictures", Some(""))?;
    let tag = lib.create_tag_path("Trips/Rome", Some("orange"))?;
    let meta = FileMeta { size: 2_400_000, date_modified: 1_700_000_000_000, ..Default::default() };
    let file = lib.upsert_file(&location, "2024/colosseum.jpg", &meta)?;
    lib.assign(&file, &tag)?;
    let flushed = laptop.flush().await?.expect("edits to flush");
    println!("laptop ({} + {}): wrote {} bytes to the shared folder", a.engine, a.store, flushed.bytes);

    let desktop = open(&a.engine, other_store, &library, &tmp.path().join("desktop"), "desktop").await?;
    let report = desktop.ingest().await?;
    let seen = Library::new(desktop.clone());
    let tags = seen.file(&file)?.map(|f| f.tags).unwrap_or_default();
    println!(
        "desktop ({} + {other_store}): applied {} segment(s); the picture has {} tag(s): {}",
        a.engine,
        report.applied,
        tags.len(),
        tags.iter().filter_map(|t| seen.tags().ok()?.get(t).map(|t| t.name.clone())).collect::<Vec<_>>().join(", ")
    );
    if tags.contains(&tag) {
        println!("converged");
        Ok(())
    } else {
        bail!("the desktop does not see the laptop's tag")
    }
}
