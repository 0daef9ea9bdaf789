//! `location add | list | remove`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use onefolder_model::{Location, ids};
use serde::Serialize;

use crate::error::user;
use crate::out::{self, outln};
use crate::session::{Global, Session, path_setting, rel_string};
use crate::state;

/// `location …`.
#[derive(Subcommand, Debug)]
pub enum LocationCommand {
    /// Add a folder of pictures to the library. A folder inside the library folder is the same
    /// location on every computer. For a folder outside it, the other computers' location of the
    /// same name is matched (or the one given with --as); its path here stays on this computer.
    Add {
        /// The folder.
        dir: PathBuf,
        /// Map the folder to this existing location (an id from `location list`).
        #[arg(long = "as", value_name = "ID", conflicts_with = "new")]
        map_to: Option<String>,
        /// Always create a new location, even if one of the same name exists.
        #[arg(long)]
        new: bool,
    },
    /// List the locations and where each one is on this computer.
    List,
    /// Remove a location and the records of its files (on every computer, after sync).
    Remove {
        /// The location id (or its name, if no other location has it).
        id: String,
    },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LocationRow {
    id: String,
    name: String,
    rel_path: Option<String>,
    path: Option<PathBuf>,
    primary: bool,
    files: usize,
    missing: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Added {
    id: String,
    name: String,
    path: PathBuf,
    /// `created`, `matched` (an existing location of the library) or `unchanged`.
    outcome: &'static str,
}

/// Runs `location …`.
pub async fn run(cmd: LocationCommand, global: &Global) -> Result<()> {
    let s = Session::open(global).await?;
    match cmd {
        LocationCommand::Add { dir, map_to, new } => add(&s, &dir, map_to.as_deref(), new, global.json),
        LocationCommand::List => list(&s, global.json),
        LocationCommand::Remove { id } => remove(&s, &id, global.json),
    }
}

/// Finds a location by id or unique name.
pub fn find(s: &Session, arg: &str) -> Result<Location> {
    let all = s.lib.locations()?;
    if let Some(l) = all.get(arg) {
        return Ok(l.clone());
    }
    let named: Vec<&Location> = all.values().filter(|l| l.name == arg).collect();
    match named.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(user(format!("unknown location {arg:?} (see `onefolder-sync location list`)"))),
        _ => Err(user(format!("{arg:?} names several locations; give its id (see `onefolder-sync location list`)"))),
    }
}

fn add(s: &Session, dir: &std::path::Path, map_to: Option<&str>, new: bool, json: bool) -> Result<()> {
    let abs = state::existing_folder(dir)?;
    let name = abs.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| abs.display().to_string());
    if state::is_inside(&s.dir, &abs) {
        return Err(user(format!("{} holds this computer's local state; it cannot be a location", abs.display())));
    }
    let existing = s.lib.locations()?;
    let added = if let Ok(rel) = abs.strip_prefix(&s.config.library) {
        // Inside the library folder: a deterministic id, the same on every computer.
        if map_to.is_some() || new {
            return Err(user("--as and --new are for folders outside the library folder"));
        }
        let rel = rel_string(rel).ok_or_else(|| user(format!("{}: the path is not valid UTF-8", abs.display())))?;
        if rel.split('/').any(crate::cmd::index::ignored) {
            return Err(user(format!(
                "{} is inside a folder that `index` ignores (onefolder_tags, hidden or system folders)",
                abs.display()
            )));
        }
        let id = ids::library_location_id(&rel)?;
        let outcome = if existing.contains_key(&id) { "matched" } else { "created" };
        let id = s.lib.add_location(&name, Some(&rel))?;
        Added { id, name, path: abs, outcome }
    } else {
        let mapped_here = |l: &Location| -> Result<Option<PathBuf>> { s.location_path(l) };
        for l in existing.values() {
            if l.rel_path.is_none() && mapped_here(l)?.as_deref() == Some(abs.as_path()) {
                let added = Added { id: l.id.clone(), name: l.name.clone(), path: abs.clone(), outcome: "unchanged" };
                return report(&added, json);
            }
        }
        let (id, outcome) = match map_to {
            Some(arg) => {
                let l = find(s, arg)?;
                if l.rel_path.is_some() {
                    return Err(user(format!(
                        "location {} is inside the library folder; it cannot be mapped to another folder",
                        l.id
                    )));
                }
                (l.id, "matched")
            }
            None if new => (s.lib.add_location(&name, None)?, "created"),
            None => {
                let mut candidates = Vec::new();
                for l in
                    existing.values().filter(|l| l.rel_path.is_none() && l.name.to_lowercase() == name.to_lowercase())
                {
                    if mapped_here(l)?.is_none() {
                        candidates.push(l.id.clone());
                    }
                }
                match candidates.as_slice() {
                    [] => (s.lib.add_location(&name, None)?, "created"),
                    [one] => (one.clone(), "matched"),
                    many => {
                        return Err(user(format!(
                            "{} locations are named {name:?}; choose one with --as ID ({}) or make a new one with --new",
                            many.len(),
                            many.join(", ")
                        )));
                    }
                }
            }
        };
        s.replica.set_setting(&path_setting(&id), Some(&abs.to_string_lossy()))?;
        Added { id, name, path: abs, outcome }
    };
    report(&added, json)
}

fn report(added: &Added, json: bool) -> Result<()> {
    if json {
        return out::json(added);
    }
    let what = match added.outcome {
        "created" => "added a new location",
        "matched" => "matched the library's existing location",
        _ => "already a location:",
    };
    outln!("{what} {} ({}) at {}", added.name, added.id, added.path.display());
    if added.outcome != "unchanged" {
        outln!("run `onefolder-sync index` to add its files");
    }
    Ok(())
}

fn list(s: &Session, json: bool) -> Result<()> {
    let files = s.lib.files()?;
    let gone = crate::cmd::index::missing_here(&s.replica)?;
    let mut rows = Vec::new();
    for (l, path) in s.locations()? {
        let (count, missing) = files
            .values()
            .filter(|f| f.location == l.id)
            .fold((0, 0), |(n, m), f| (n + 1, m + usize::from(gone.contains(&f.id))));
        rows.push(LocationRow {
            primary: l.rel_path.as_deref() == Some(""),
            id: l.id,
            name: l.name,
            rel_path: l.rel_path,
            path,
            files: count,
            missing,
        });
    }
    rows.sort_by(|a, b| (!a.primary, &a.name, &a.id).cmp(&(!b.primary, &b.name, &b.id)));
    if json {
        return out::json(&rows);
    }
    for r in &rows {
        let place = match (&r.rel_path, &r.path) {
            (Some(rel), _) if rel.is_empty() => "the library folder".to_owned(),
            (Some(rel), _) => format!("{rel}/ in the library folder"),
            (None, Some(p)) => p.display().to_string(),
            (None, None) => format!("not on this computer (map it: `onefolder-sync location add DIR --as {}`)", r.id),
        };
        let missing = if r.missing > 0 { format!(", {} missing", r.missing) } else { String::new() };
        outln!("{}  {}: {place}, {}{missing}", r.id, r.name, out::n(r.files, "file"));
    }
    Ok(())
}

fn remove(s: &Session, arg: &str, json: bool) -> Result<()> {
    let l = find(s, arg)?;
    if l.rel_path.as_deref() == Some("") {
        return Err(user("the library folder is the primary location and cannot be removed"));
    }
    let files = s.lib.files()?.values().filter(|f| f.location == l.id).count();
    s.lib.remove_location(&l.id)?;
    s.replica.set_setting(&path_setting(&l.id), None)?;
    if json {
        return out::json(&serde_json::json!({ "removed": l.id, "name": l.name, "files": files }));
    }
    outln!("removed location {} ({}) and its {}", l.name, l.id, out::n(files, "file record"));
    Ok(())
}
