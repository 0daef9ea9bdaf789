//! `backup` and `peek`: self-describing backup files of the library (the format is the model's,
//! `onefolder_model::backup`).

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use onefolder_model::{BACKUP_EXTENSION, Backup, BackupError, BackupHeader};
use serde::Serialize;

use crate::backend::TAGS_DIR;
use crate::error::{corrupt, user};
use crate::out::{self, outln};
use crate::session::{Global, Session};
use crate::state::write_atomic;

/// Options of `backup`.
#[derive(Args, Debug)]
pub struct BackupArgs {
    /// Where to write the backup (default: a new file in `<library>/onefolder_tags/backups/`).
    pub file: Option<PathBuf>,
    /// List the backups in `<library>/onefolder_tags/backups/` instead of writing one.
    #[arg(long, conflicts_with = "file")]
    pub list: bool,
}

/// Options of `peek`.
#[derive(Args, Debug)]
pub struct PeekArgs {
    /// A backup file written by `onefolder-sync backup`.
    pub file: PathBuf,
}

/// The folder backups go to by default.
pub fn backups_dir(library: &Path) -> PathBuf {
    library.join(TAGS_DIR).join("backups")
}

/// Reads and checks a backup file: damage is corruption (exit code 2), anything else that is
/// not a backup a user error.
pub fn read_backup(path: &Path) -> Result<Backup> {
    let bytes = std::fs::read(path).map_err(|e| user(format!("{}: {e}", path.display())))?;
    Backup::decode(&bytes).map_err(|e| backup_error(path, e))
}

/// The CLI error for a file that is not a usable backup.
pub fn backup_error(path: &Path, e: BackupError) -> anyhow::Error {
    let message = format!("{}: {e}", path.display());
    match e {
        BackupError::NotABackup | BackupError::TooNew { .. } => user(message),
        _ => corrupt(message),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Written {
    file: PathBuf,
    #[serde(flatten)]
    header: BackupHeader,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Listed {
    file: PathBuf,
    /// The header, when the file is a whole, valid backup.
    header: Option<BackupHeader>,
    /// Why it is not, otherwise.
    error: Option<String>,
}

/// Runs `backup`.
pub async fn backup(args: BackupArgs, global: &Global) -> Result<()> {
    let s = Session::open(global).await?;
    let dir = backups_dir(&s.config.library);
    if args.list {
        return list(&dir, global);
    }
    let manifest = s.replica.manifest();
    let now = onefolder_core::manifest::now_ms();
    let device = s.replica.device();
    let b = Backup::new(s.lib.export()?, &manifest.engine, &manifest.library_id.to_string(), &device.to_string(), now);
    let file = match args.file {
        Some(file) => file,
        None => {
            std::fs::create_dir_all(&dir).map_err(|e| user(format!("cannot create {}: {e}", dir.display())))?;
            let stamp = out::iso_time(now).replace(':', "-");
            let short: String = device.to_string().chars().take(8).collect();
            dir.join(format!("{stamp}-{short}.{BACKUP_EXTENSION}"))
        }
    };
    write_atomic(&file, &b.encode())?;
    if global.json {
        return out::json(&Written { file, header: b.header });
    }
    outln!(
        "wrote {} ({}, {}, {}, {})",
        file.display(),
        out::n(b.header.tags, "tag"),
        out::n(b.header.files, "file"),
        out::n(b.header.locations, "location"),
        searches(b.header.searches)
    );
    Ok(())
}

fn list(dir: &Path, global: &Global) -> Result<()> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == BACKUP_EXTENSION))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(user(format!("cannot read {}: {e}", dir.display()))),
    };
    files.sort();
    let listed: Vec<Listed> = files
        .into_iter()
        .map(|file| {
            match std::fs::read(&file)
                .map_err(|e| e.to_string())
                .and_then(|b| Backup::decode(&b).map_err(|e| e.to_string()))
            {
                Ok(b) => Listed { file, header: Some(b.header), error: None },
                Err(error) => Listed { file, header: None, error: Some(error) },
            }
        })
        .collect();
    if global.json {
        return out::json(&listed);
    }
    if listed.is_empty() {
        outln!("no backups in {}", dir.display());
    }
    for l in &listed {
        let name = l.file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        match (&l.header, &l.error) {
            (Some(h), _) => {
                outln!("{name}  {}  {}, {}", out::time(h.created_ms), out::n(h.tags, "tag"), out::n(h.files, "file"))
            }
            (None, Some(e)) => outln!("{name}  unusable: {e}"),
            (None, None) => {}
        }
    }
    Ok(())
}

fn searches(n: usize) -> String {
    if n == 1 { "1 saved search".into() } else { format!("{n} saved searches") }
}

/// Runs `peek`: what a backup holds, without opening any library.
pub fn peek(args: PeekArgs, global: &Global) -> Result<()> {
    let b = read_backup(&args.file)?;
    if global.json {
        return out::json(&b.header);
    }
    let h = &b.header;
    outln!("backup of library {} ({} engine)", h.library_id, h.engine);
    outln!("taken        {} by device {}", out::time(h.created_ms), h.device);
    outln!(
        "holds        {}, {}, {}, {}",
        out::n(h.tags, "tag"),
        out::n(h.files, "file"),
        out::n(h.locations, "location"),
        searches(h.searches)
    );
    Ok(())
}
