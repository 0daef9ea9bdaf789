//! `import-prototype`: the tags of OneFolder's JavaScript prototype into this library.
//!
//! The prototype wrote its whole database, per session, to
//! `<library>/onefolder_tags/database/<sessionId>/database.yjs.db`. Every such file is read
//! and merged (the yrs adapter's `prototype` module), a file that cannot be read is a warning,
//! and the records are converted by the model ([`onefolder_model::prototype`]) in one batch, so
//! the import syncs like any edit. Where a location's recorded path is on this computer is
//! decided here: inside the library folder (or under a `--was` path), a folder here, a
//! location already mapped here, or another computer's.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use onefolder_model::{Place, Prototype, PrototypeImport};
use serde::Serialize;

use crate::error::{corrupt, user};
use crate::out::{self, errln, outln};
use crate::session::{Global, Session, path_setting, rel_string};

/// Options of `import-prototype`.
#[derive(Args, Debug)]
pub struct ImportPrototypeArgs {
    /// The prototype's library folder, or its `onefolder_tags` folder, or its
    /// `onefolder_tags/database` folder.
    pub folder: PathBuf,
    /// Where this library folder was on a computer whose prototype wrote the database (e.g.
    /// `--was /home/ann/Pictures`): locations the prototype recorded under PATH are the
    /// library's own. Repeatable, one per computer.
    #[arg(long = "was", value_name = "PATH")]
    pub was: Vec<String>,
}

/// One database file found.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DatabaseFile {
    file: PathBuf,
    /// Merged into the import.
    read: bool,
    /// Why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    folder: PathBuf,
    sessions: Vec<DatabaseFile>,
    #[serde(flatten)]
    import: PrototypeImport,
}

/// Whether a file name is a session's database (or a sync client's conflict copy of one,
/// `database.yjs (conflicted copy).db`).
fn is_database(name: &str) -> bool {
    name.ends_with(".yjs.db") || (name.starts_with("database.yjs") && name.ends_with(".db"))
}

/// The `database` folder of the prototype: FOLDER is the library folder, its `onefolder_tags`
/// folder or that `database` folder.
fn database_folder(folder: &Path) -> Result<PathBuf> {
    if !folder.is_dir() {
        return Err(user(format!("{} is not a folder", folder.display())));
    }
    for candidate in [folder.join("onefolder_tags").join("database"), folder.join("database")] {
        if candidate.is_dir() {
            return Ok(candidate);
        }
    }
    Ok(folder.to_path_buf())
}

/// The database files, one session folder after another (in name order); symbolic links are
/// not followed.
fn database_files(database: &Path) -> Result<Vec<PathBuf>> {
    let entries = |dir: &Path| -> Result<Vec<std::fs::DirEntry>> {
        let mut all: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| user(format!("{}: {e}", dir.display())))?
            .collect::<std::io::Result<_>>()
            .map_err(|e| user(format!("{}: {e}", dir.display())))?;
        all.sort_by_key(|e| e.file_name());
        Ok(all)
    };
    let mut files = Vec::new();
    for session in entries(database)? {
        if !session.file_type()?.is_dir() {
            continue;
        }
        for f in entries(&session.path())? {
            if f.file_type()?.is_file() && is_database(&f.file_name().to_string_lossy()) {
                files.push(f.path());
            }
        }
    }
    Ok(files)
}

/// Reads and merges the database files: the records, and what became of each file.
#[cfg(feature = "yrs")]
fn read(files: &[PathBuf]) -> Result<(Prototype, Vec<DatabaseFile>)> {
    use onefolder_engine_yrs::prototype::{MAX_PROTOTYPE_BYTES, PrototypeError, PrototypeReader};

    let mut reader = PrototypeReader::new();
    let mut sessions = Vec::new();
    for file in files {
        let outcome = std::fs::metadata(file)
            .map_err(|e| e.to_string())
            .and_then(|m| {
                if m.len() > MAX_PROTOTYPE_BYTES {
                    Err(PrototypeError::TooLarge { bytes: m.len(), max: MAX_PROTOTYPE_BYTES }.to_string())
                } else {
                    std::fs::read(file).map_err(|e| e.to_string())
                }
            })
            .and_then(|bytes| reader.apply(&bytes).map_err(|e| e.to_string()));
        let error = outcome.err();
        if let Some(e) = &error {
            errln!("warning: {}: {e}; skipped", file.display());
        }
        sessions.push(DatabaseFile { file: file.clone(), read: error.is_none(), error });
    }
    let doc = reader.read();
    let proto = Prototype { files: doc.files, tags: doc.tags, locations: doc.locations, searches: doc.searches };
    Ok((proto, sessions))
}

#[cfg(not(feature = "yrs"))]
fn read(_files: &[PathBuf]) -> Result<(Prototype, Vec<DatabaseFile>)> {
    Err(user("this build of onefolder-sync has no yrs engine, which reads the prototype's Yjs files"))
}

/// `/a/b/` → `/a/b`.
fn trimmed(path: &str) -> &str {
    let t = path.trim_end_matches(['/', '\\']);
    if t.is_empty() { path } else { t }
}

/// Where a path the prototype recorded is on this computer.
fn place(library: &Path, was: &[String], mapped: &[(String, PathBuf)], path: &str) -> Place {
    let p = Path::new(path);
    if p.is_absolute() {
        let abs = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        if let Some(rel) = abs.strip_prefix(library).ok().and_then(rel_string) {
            return Place::Library(rel);
        }
        if let Some((id, _)) = mapped.iter().find(|(_, m)| *m == abs) {
            return Place::Known(id.clone());
        }
    }
    for w in was {
        let w = trimmed(w);
        if let Some(rest) = path.strip_prefix(w)
            && (rest.is_empty() || rest.starts_with(['/', '\\']))
        {
            return Place::Library(rest.trim_start_matches(['/', '\\']).replace('\\', "/"));
        }
    }
    if p.is_absolute() && p.is_dir() { Place::Here } else { Place::Elsewhere }
}

/// Runs `import-prototype`.
pub async fn run(args: ImportPrototypeArgs, global: &Global) -> Result<()> {
    // Opened first: a command sent on to a running `sync --watch` has read nothing yet.
    let s = Session::open(global).await?;
    let database = database_folder(&args.folder)?;
    let files = database_files(&database)?;
    if files.is_empty() {
        return Err(user(format!(
            "{} holds no database of OneFolder's prototype (looked for onefolder_tags/database/<session>/database.yjs.db)",
            args.folder.display()
        )));
    }
    let (proto, sessions) = read(&files)?;
    if sessions.iter().all(|f| !f.read) {
        return Err(corrupt(format!(
            "no database file of OneFolder's prototype in {} can be read ({} found, see the warnings); nothing was \
             imported",
            database.display(),
            files.len()
        )));
    }

    let library = std::fs::canonicalize(&s.config.library).unwrap_or_else(|_| s.config.library.clone());
    let mut mapped = Vec::new();
    for (loc, path) in s.locations()? {
        if let (None, Some(path)) = (&loc.rel_path, path) {
            mapped.push((loc.id, std::fs::canonicalize(&path).unwrap_or(path)));
        }
    }
    let import = s.lib.import_prototype(&proto, |path| place(&library, &args.was, &mapped, path))?;
    for (id, path) in &import.local_paths {
        let abs = std::fs::canonicalize(path).unwrap_or_else(|_| PathBuf::from(path));
        s.replica.set_setting(&path_setting(id), Some(&abs.to_string_lossy()))?;
    }
    for w in &import.warnings {
        errln!("warning: {w}");
    }

    let library_name = library.file_name().map(|n| n.to_string_lossy().into_owned());
    let report = Report { folder: args.folder.clone(), sessions, import };
    if global.json {
        return out::json(&report);
    }
    let i = &report.import;
    let read = report.sessions.iter().filter(|f| f.read).count();
    outln!(
        "imported OneFolder's prototype database from {} ({} of {})",
        args.folder.display(),
        read,
        out::n(report.sessions.len(), "session file")
    );
    outln!(
        "  {}, {}, {}, {}",
        out::n(i.files, "file"),
        out::n(i.tags, "tag"),
        out::n(i.locations, "location"),
        if i.searches == 1 { "1 saved search".to_owned() } else { format!("{} saved searches", i.searches) }
    );
    let m = &i.duplicates_merged;
    if m.files + m.tags + m.locations > 0 {
        outln!(
            "  duplicates merged: {}, {}, {}",
            out::n(m.files, "file"),
            out::n(m.tags, "tag"),
            out::n(m.locations, "location")
        );
    }
    if i.skipped > 0 {
        outln!("  skipped {} (see the warnings)", out::n(i.skipped, "bad record"));
    }
    if i.edits == 0 {
        outln!("  the library held all of it already: nothing changed");
    }
    for u in &i.unmapped {
        outln!(
            "location {} ({}) was at {} on another computer; map it here with `onefolder-sync location add DIR --as {}`",
            u.name,
            u.id,
            u.path,
            u.id
        );
        if library_name.as_deref() == Some(u.name.as_str()) {
            outln!("  (if that was this library folder there, import again with --was {})", u.path);
        }
    }
    outln!("`onefolder-sync sync --once` shares the result with the other computers");
    Ok(())
}
