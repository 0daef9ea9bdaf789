//! `onefolder-bench`: runs one measurement and prints it as one JSON line on stdout.
//!
//! Each measurement runs in its own process so that its peak RSS (`VmHWM`) is its own;
//! `cargo xtask bench` runs them in order for every engine × store. See
//! `onefolder_bench::measure` for what each step does and the working directory they share.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use onefolder_bench::backends::{self, Backend};
use onefolder_bench::{Preset, Workload, cli_query, dump, measure, prototype};
use serde::Serialize;
use serde_json::{Value, json};

#[derive(Parser)]
#[command(name = "onefolder-bench", about = "One OneFolder Sync measurement per run, as a JSON line")]
struct Cli {
    #[command(subcommand)]
    step: Step,
}

#[derive(Args, Clone)]
struct Common {
    /// Engine name (see `list`).
    #[arg(long, default_value = "yrs")]
    engine: String,
    /// Store name (see `list`).
    #[arg(long, default_value = "sqlite")]
    store: String,
    /// Workload preset: `full` (W) or `quick` (W/20).
    #[arg(long, default_value = "quick")]
    preset: String,
    /// Override the preset's file count (assignments are 3 per file).
    #[arg(long)]
    files: Option<usize>,
    /// Override the preset's tag count.
    #[arg(long)]
    tags: Option<usize>,
    /// Working directory shared by the steps of one engine × store.
    #[arg(long, default_value = "target/bench-work")]
    dir: PathBuf,
}

impl Common {
    fn preset(&self) -> Result<Preset> {
        let mut p = Preset::by_name(&self.preset).with_context(|| format!("unknown preset {:?}", self.preset))?;
        if self.files.is_some() || self.tags.is_some() {
            p.name = "custom".into();
            p.files = self.files.unwrap_or(p.files);
            p.tags = self.tags.unwrap_or(p.tags);
        }
        Ok(p)
    }
    fn workload(&self) -> Result<Workload> {
        Ok(Workload::new(self.preset()?))
    }
    fn backend(&self) -> Result<Backend> {
        Backend::by_name(&self.engine, &self.store)
    }
}

#[derive(Subcommand)]
enum Step {
    /// The compiled-in engines and stores.
    List,
    /// The preset's sizes.
    Workload(Common),
    /// Baseline: the workload's ops written straight into the engine.
    BuildRaw(Common),
    /// The workload through the model on a bare engine (no store, no transport).
    BuildBare(Common),
    /// The workload through the model on a replica (store + folder transport); creates `dir`.
    Build(Common),
    /// Cold open of the replica from the store left in `dir`.
    Open(Common),
    /// Baseline: the raw engine loading `dir/snapshot.bin`.
    OpenRaw(Common),
    /// Folds the store's log into a snapshot.
    Compact(Common),
    /// Bytes written per edit, and the prototype's whole-document writes.
    Bytes(Common),
    /// Ingest of a peer's segment, and raw apply of the same payload.
    Ingest(Common),
    /// A new device joins the built library from its snapshot segments and what follows them.
    Join(Common),
    /// The same join from a copy of the folder without snapshot segments (every delta).
    JoinDeltas(Common),
    /// Propagation latency through the folder watcher.
    Propagation(Common),
    /// Idle sync passes with peers.
    Idle(Common),
    /// N devices × M edits: time to converge.
    Converge(Common),
    /// Requests per idle pass and per flushed edit, for each transport.
    Requests(Common),
    /// History growth: snapshot size after overwrites and after deleting and re-adding records.
    History(Common),
    /// Baseline: W in the JavaScript prototype's layout (one document, one whole record per id)
    /// on the engine crate itself (`yrs` | `automerge`); writes `dir/prototype.bin`.
    BuildPrototype(Common),
    /// Baseline: loads `dir/prototype.bin` into a fresh document, then the prototype's tag query.
    OpenPrototype(Common),
    /// Writes the workload as JSON in OneFolder's DTO shapes (for the Node binding's benchmark).
    Dump(DumpArgs),
    /// Writes the `state.json` the `onefolder-sync` command needs into the state `build` left;
    /// reports the tag of the CLI's query.
    CliSetup(Common),
}

#[derive(Args, Clone)]
struct DumpArgs {
    #[command(flatten)]
    common: Common,
    /// The JSON file to write.
    #[arg(long)]
    out: PathBuf,
}

fn line(step: &str, c: Option<&Common>, report: impl Serialize) -> Result<()> {
    let mut v = serde_json::to_value(report)?;
    let obj = v.as_object_mut().context("reports are objects")?;
    obj.insert("step".into(), json!(step));
    if let Some(c) = c {
        obj.insert("engine".into(), json!(c.engine));
        obj.insert("store".into(), json!(c.store));
        obj.insert("preset".into(), json!(c.preset()?.name));
    }
    obj.entry("peak_rss_kib").or_insert_with(|| json!(onefolder_bench::peak_rss_kib()));
    println!("{}", Value::Object(obj.clone()));
    Ok(())
}

/// The allocator the CLI uses (`crates/cli/src/main.rs`): every figure of this binary, ours and
/// the prototype baseline's alike, is measured with it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<()> {
    let cli = Cli::parse();
    match &cli.step {
        Step::List => line(
            "list",
            None,
            json!({ "engines": backends::names(backends::ENGINES), "stores": backends::names(backends::STORES) }),
        ),
        Step::Workload(c) => {
            let p = c.preset()?;
            let assignments = p.assignments();
            let edits = p.edits();
            line("workload", Some(c), json!({ "sizes": p, "assignments": assignments, "edits": edits }))
        }
        Step::BuildRaw(c) => {
            let engine = backends::engine(&c.engine)?;
            line("build-raw", Some(c), measure::build_raw(engine, &c.workload()?, None)?)
        }
        Step::BuildBare(c) => {
            line("build-bare", Some(c), measure::build_bare(backends::engine(&c.engine)?, &c.workload()?)?)
        }
        Step::Build(c) => {
            if c.dir.exists() {
                std::fs::remove_dir_all(&c.dir).with_context(|| format!("clearing {}", c.dir.display()))?;
            }
            line("build", Some(c), measure::build(&c.backend()?, &c.workload()?, &c.dir)?)
        }
        Step::Open(c) => line("open", Some(c), measure::open(&c.backend()?, &c.workload()?, &c.dir)?),
        Step::OpenRaw(c) => line("open-raw", Some(c), measure::open_raw(backends::engine(&c.engine)?, &c.dir)?),
        Step::Compact(c) => line("compact", Some(c), measure::compact(&c.backend()?, &c.dir)?),
        Step::Bytes(c) => line("bytes", Some(c), measure::bytes(&c.backend()?, &c.workload()?, &c.dir)?),
        Step::Ingest(c) => line("ingest", Some(c), measure::ingest(&c.backend()?, &c.workload()?, &c.dir)?),
        Step::Join(c) => line("join", Some(c), measure::join(&c.backend()?, &c.workload()?, &c.dir, true)?),
        Step::JoinDeltas(c) => {
            line("join-deltas", Some(c), measure::join(&c.backend()?, &c.workload()?, &c.dir, false)?)
        }
        Step::Propagation(c) => {
            line("propagation", Some(c), measure::propagation(&c.backend()?, &c.workload()?, &c.dir)?)
        }
        Step::Idle(c) => line("idle", Some(c), measure::idle(&c.backend()?, &c.workload()?, &c.dir)?),
        Step::Requests(c) => line("requests", Some(c), measure::requests(&c.backend()?, &c.workload()?, &c.dir)?),
        Step::History(c) => {
            let (overwrites, records) = c.preset()?.history_sizes();
            line("history", Some(c), measure::history(backends::engine(&c.engine)?, overwrites, records)?)
        }
        Step::BuildPrototype(c) => {
            line("build-prototype", Some(c), prototype::build(&c.engine, &c.workload()?, &c.dir)?)
        }
        Step::CliSetup(c) => line("cli-setup", Some(c), cli_query::setup(&c.backend()?, &c.workload()?, &c.dir)?),
        Step::Dump(d) => line("dump", None, dump::dump(&d.common.workload()?, &d.out)?),
        Step::OpenPrototype(c) => line("open-prototype", Some(c), prototype::open(&c.engine, &c.workload()?, &c.dir)?),
        Step::Converge(c) => {
            let dir = c.dir.join("converge-run");
            if dir.exists() {
                std::fs::remove_dir_all(&dir)?;
            }
            line("converge", Some(c), measure::converge(&c.backend()?, &c.preset()?, &dir)?)
        }
    }
}
