//! `export` and `import`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use onefolder_model::backup::BACKUP_MAGIC;
use onefolder_model::{Backup, Export, ImportMode, ids};

use super::backup;
use serde::Serialize;

use crate::error::user;
use crate::out::{self, errln, outln};
use crate::session::{Global, Session};
use crate::state::write_atomic;

/// Options of `export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Write the export to FILE instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Options of `import`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// An export written by `onefolder-sync export`, or a backup written by `onefolder-sync
    /// backup` (`-` reads standard input).
    pub file: PathBuf,
    /// Add what the file holds and keep everything else, instead of making the library equal
    /// to the file (the default, which deletes what the file does not hold — on every
    /// computer, after sync).
    #[arg(long)]
    pub merge: bool,
}

/// The canonical export text: every object's keys sorted, two converged computers print the
/// same bytes.
pub fn canonical(export: &Export) -> Result<String> {
    Ok(out::to_json(export)? + "\n")
}

/// Runs `export`. The export is JSON whether or not `--json` is given.
pub async fn export(args: ExportArgs, global: &Global) -> Result<()> {
    let s = Session::open(global).await?;
    let text = canonical(&s.lib.export()?)?;
    match &args.output {
        Some(path) => {
            write_atomic(path, text.as_bytes())?;
            if !global.json {
                errln!("wrote {}", path.display());
            }
        }
        None => out::line(text.trim_end_matches('\n')),
    }
    Ok(())
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct Counts {
    added: usize,
    changed: usize,
    removed: usize,
}

fn diff<T: PartialEq>(
    before: &std::collections::BTreeMap<String, T>,
    after: &std::collections::BTreeMap<String, T>,
) -> Counts {
    Counts {
        added: after.keys().filter(|k| !before.contains_key(*k)).count(),
        removed: before.keys().filter(|k| !after.contains_key(*k)).count(),
        changed: after.iter().filter(|(k, v)| before.get(*k).is_some_and(|b| b != *v)).count(),
    }
}

/// Checks what the model cannot: file ids must be the ones every computer derives from the
/// location and path, or a later `index` would create a second record for the same file.
fn check(export: &Export) -> Result<()> {
    for (id, f) in &export.files {
        let expected = ids::file_id(&f.location, &f.path).map_err(|e| user(format!("file {id}: {e}")))?;
        if *id != expected {
            return Err(user(format!(
                "file {id} ({}) does not have the id its location and path give ({expected}); the export was edited",
                f.path
            )));
        }
    }
    Ok(())
}

/// Runs `import`.
pub async fn import(args: ImportArgs, global: &Global) -> Result<()> {
    // Opened first: a command sent on to a running `sync --watch` has read nothing yet.
    let s = Session::open(global).await?;
    let bytes = if args.file.as_os_str() == "-" {
        crate::host::read_stdin().context("reading standard input")?
    } else {
        std::fs::read(&args.file).map_err(|e| user(format!("{}: {e}", args.file.display())))?
    };
    let (export, of_library) = if bytes.starts_with(BACKUP_MAGIC.as_bytes()) {
        let b = Backup::decode(&bytes).map_err(|e| backup::backup_error(&args.file, e))?;
        (b.export, Some(b.header.library_id))
    } else {
        let text = String::from_utf8(bytes)
            .map_err(|_| user(format!("{} is not a onefolder-sync export or backup", args.file.display())))?;
        let export = Export::from_json(&text)
            .map_err(|e| user(format!("{} is not a onefolder-sync export: {e}", args.file.display())))?;
        (export, None)
    };
    check(&export)?;
    let here = s.replica.manifest().library_id.to_string();
    if let Some(other) = of_library.filter(|id| *id != here) {
        return Err(user(format!(
            "{} is a backup of library {other}, not of this one ({here}); export it from there and import the export to copy its tags over",
            args.file.display()
        )));
    }
    let before = s.lib.export()?;
    let mode = if args.merge { ImportMode::Merge } else { ImportMode::Replace };
    s.lib.import(&export, mode)?;
    let after = s.lib.export()?;
    let report = serde_json::json!({
        "mode": if args.merge { "merge" } else { "replace" },
        "files": diff(&before.files, &after.files),
        "tags": diff(&before.tags, &after.tags),
        "locations": diff(&before.locations, &after.locations),
        "searches": diff(&before.searches, &after.searches),
    });
    if global.json {
        return out::json(&report);
    }
    outln!(
        "imported {} ({})",
        args.file.display(),
        if args.merge { "merged" } else { "the library now equals the file" }
    );
    for (what, c) in [
        ("files", diff(&before.files, &after.files)),
        ("tags", diff(&before.tags, &after.tags)),
        ("locations", diff(&before.locations, &after.locations)),
        ("searches", diff(&before.searches, &after.searches)),
    ] {
        outln!("  {what:<10} {} added, {} changed, {} removed", c.added, c.changed, c.removed);
    }
    outln!("`onefolder-sync sync --once` shares the result with the other computers");
    Ok(())
}
