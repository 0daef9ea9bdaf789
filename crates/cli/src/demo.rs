//! `onefolder-sync demo`: two simulated computers converge through a shared folder.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use onefolder_core::{OpenMode, Replica, ReplicaConfig};
use onefolder_model::{FileMeta, Library, TagNode};
use serde::Serialize;

use crate::backend;
use crate::remote::TransportSpec;

/// Options of `demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Keep the demo's shared folder and local states in DIR (default: a temporary folder
    /// that is removed afterwards).
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
    /// The CRDT engine.
    #[arg(long, default_value = "yrs")]
    engine: String,
    /// The local store.
    #[arg(long, default_value = "sqlite")]
    store: String,
}

#[derive(Serialize)]
struct DemoReport {
    converged: bool,
    shared_folder: String,
    bytes_written: Vec<u64>,
    devices: Vec<serde_json::Value>,
}

fn config(name: &str, mode: OpenMode) -> ReplicaConfig {
    ReplicaConfig { device_name: name.to_owned(), mode, ..ReplicaConfig::default() }
}

fn meta(size: i64) -> FileMeta {
    FileMeta { size, date_modified: 1_764_000_000_000, date_created: 1_764_000_000_000, ..FileMeta::default() }
}

/// Runs the demo; exit code 0 when the two devices converged.
pub async fn run(args: DemoArgs, json: bool) -> Result<ExitCode> {
    let tmp;
    let root: &Path = match &args.keep {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            dir
        }
        None => {
            tmp = tempfile::tempdir().context("creating a temporary folder")?;
            tmp.path()
        }
    };
    let shared = root.join("Shared Pictures");
    std::fs::create_dir_all(&shared)?;
    let open = |name: &'static str, mode| {
        let state = root.join(format!("state-{name}"));
        let (engine, store, shared) = (args.engine.clone(), args.store.clone(), shared.clone());
        async move {
            backend::open(&engine, &store, &state, &shared, &TransportSpec::Folder, config(name, mode))
                .await
                .map(Arc::new)
        }
    };
    let laptop = open("laptop", OpenMode::Create).await?;
    let desktop = open("desktop", OpenMode::Join).await?;
    let (a, b) = (Library::new(laptop.clone()), Library::new(desktop.clone()));
    let mut bytes_written = Vec::new();
    let mut sync = async |r: &Replica| -> Result<()> {
        let report = r.sync_once().await?;
        bytes_written.extend(report.flushed.map(|f| f.bytes));
        Ok(())
    };

    // The laptop sets the library up.
    let loc = a.add_location("Shared Pictures", Some(""))?;
    let cats = a.create_tag_path("Animals/Cats", Some("orange"))?;
    let dogs = a.create_tag_path("Animals/Dogs", None)?;
    let tom = a.upsert_file(&loc, "2026/tom.jpg", &meta(2_400_000))?;
    let rex = a.upsert_file(&loc, "2026/rex.jpg", &meta(3_100_000))?;
    a.assign(&tom, &cats)?;
    a.assign(&rex, &dogs)?;
    sync(&laptop).await?;
    sync(&desktop).await?;

    // The desktop indexes the same folder: same file ids, no duplicates.
    let loc_b = b.add_location("Shared Pictures", Some(""))?;
    let tom_b = b.upsert_file(&loc_b, "2026/tom.jpg", &meta(2_400_000))?;
    anyhow::ensure!(tom_b == tom, "file identity must not depend on the computer");

    // Concurrent edits while both are offline.
    a.rename_tag(&cats, "Cats & kittens")?;
    b.set_tag_color(&cats, Some("#ffa500"))?;
    let rome = b.create_tag_path("Places/Rome", None)?;
    b.assign(&rex, &rome)?;
    a.unassign(&rex, &dogs)?;
    b.assign(&rex, &dogs)?; // concurrent remove + add: add wins
    a.create_tag_path("Places/Rome", Some("red"))?; // created offline on both: one tag

    for _ in 0..2 {
        sync(&laptop).await?;
        sync(&desktop).await?;
    }
    let (ea, eb) = (a.export()?, b.export()?);
    let converged = ea == eb && ea.to_json() == eb.to_json();

    if json {
        let report = DemoReport {
            converged,
            shared_folder: shared.display().to_string(),
            bytes_written,
            devices: vec![serde_json::to_value(&ea)?, serde_json::to_value(&eb)?],
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("Shared folder: {}", shared.display());
        for (name, lib) in [("laptop", &a), ("desktop", &b)] {
            println!("\n== {name} ==");
            print_library(lib)?;
        }
        let total: u64 = bytes_written.iter().sum();
        println!(
            "\n{} segments written to the shared folder, {total} bytes in all ({:?})",
            bytes_written.len(),
            bytes_written
        );
        println!("{}", if converged { "converged" } else { "DIVERGED: the two exports differ" });
    }
    Ok(if converged { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

fn print_library(lib: &Library<Arc<Replica>>) -> Result<()> {
    fn print_nodes(nodes: &[TagNode], depth: usize) {
        for n in nodes {
            let color = n.tag.color.as_deref().map(|c| format!(" ({c})")).unwrap_or_default();
            println!("  {}{}{}", "  ".repeat(depth), n.tag.name, color);
            print_nodes(&n.children, depth + 1);
        }
    }
    println!("tags:");
    print_nodes(&lib.tag_tree()?, 0);
    let tags = lib.tags()?;
    println!("files:");
    let mut files: Vec<_> = lib.files()?.into_values().collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    for f in &files {
        let mut names: Vec<&str> = f.tags.iter().filter_map(|t| tags.get(t)).map(|t| t.name.as_str()).collect();
        names.sort();
        println!("  {:<16} {}", f.path, names.join(", "));
    }
    Ok(())
}
