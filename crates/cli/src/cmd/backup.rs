//! `backup` and `peek`: self-describing backup files of the library (the format is the model's,
//! `onefolder_model::backup`).

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use onefolder_model::{BACKUP_EXTENSION, Backup, BackupError, BackupHeader, Rotation};
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
    /// List the backups in `<library>/onefolder_tags/backups/` and this computer's automatic
    /// ones (taken by `sync --watch`) instead of writing one.
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

/// The folder of this computer's automatic backups (`<state dir>/backups`): they are taken
/// every few minutes while `sync --watch` runs, so they stay on this computer instead of
/// growing the shared folder.
pub fn auto_backups_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("backups")
}

/// File names of automatic backups start with this.
const AUTO_PREFIX: &str = "auto-";

/// A backup file name: `<prefix><UTC time>-<device>.ofsbackup`.
fn backup_name(prefix: &str, now_ms: i64, device: &str) -> String {
    let stamp = out::iso_time(now_ms).replace(':', "-");
    let short: String = device.chars().take(8).collect();
    format!("{prefix}{stamp}-{short}.{BACKUP_EXTENSION}")
}

/// Automatic, rotating backups of one library into [`auto_backups_dir`].
pub struct AutoBackup {
    /// Where they go.
    pub dir: PathBuf,
    /// Which to keep.
    pub rotation: Rotation,
    /// Checksum of the newest automatic backup's content (nothing is written while nothing
    /// changed).
    last_crc: Option<u32>,
}

impl AutoBackup {
    /// Automatic backups in `dir`, kept per `rotation`.
    pub fn new(dir: PathBuf, rotation: Rotation) -> Self {
        let last_crc = newest_auto(&dir).map(|(_, h)| h.crc32);
        AutoBackup { dir, rotation, last_crc }
    }

    /// Takes a backup of `backup` unless it holds what the newest one holds, then drops the
    /// automatic backups the rotation no longer keeps. Returns the new file, if one was written.
    pub fn take(&mut self, backup: &Backup) -> Result<Option<PathBuf>> {
        if self.last_crc == Some(backup.header.crc32) {
            return Ok(None);
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| user(format!("cannot create {}: {e}", self.dir.display())))?;
        let file = self.dir.join(backup_name(AUTO_PREFIX, backup.header.created_ms, &backup.header.device));
        write_atomic(&file, &backup.encode())?;
        self.last_crc = Some(backup.header.crc32);
        self.rotate()?;
        Ok(Some(file))
    }

    /// Removes the automatic backups that the rotation does not keep (never another file).
    fn rotate(&self) -> Result<()> {
        let autos = auto_backups(&self.dir);
        let created: Vec<i64> = autos.iter().map(|(_, h)| h.created_ms).collect();
        let keep = self.rotation.keep(&created);
        for (i, (path, _)) in autos.iter().enumerate() {
            if !keep.contains(&i) {
                std::fs::remove_file(path).map_err(|e| user(format!("cannot remove {}: {e}", path.display())))?;
            }
        }
        Ok(())
    }
}

/// The automatic backups in `dir` whose header reads, with it.
fn auto_backups(dir: &Path) -> Vec<(PathBuf, BackupHeader)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(AUTO_PREFIX))
                && p.extension().is_some_and(|x| x == BACKUP_EXTENSION)
        })
        .filter_map(|p| {
            let bytes = std::fs::read(&p).ok()?;
            let header = Backup::peek_header(&bytes).ok()?;
            Some((p, header))
        })
        .collect()
}

fn newest_auto(dir: &Path) -> Option<(PathBuf, BackupHeader)> {
    auto_backups(dir).into_iter().max_by_key(|(_, h)| h.created_ms)
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
        return list(&[dir, auto_backups_dir(&s.dir)], global);
    }
    let manifest = s.replica.manifest();
    let now = onefolder_core::manifest::now_ms();
    let device = s.replica.device();
    let b = Backup::new(s.lib.export()?, &manifest.engine, &manifest.library_id.to_string(), &device.to_string(), now);
    let file = match args.file {
        Some(file) => file,
        None => {
            std::fs::create_dir_all(&dir).map_err(|e| user(format!("cannot create {}: {e}", dir.display())))?;
            dir.join(backup_name("", now, &device.to_string()))
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

/// Lists the backups in `dirs`: the shared ones, then this computer's automatic ones.
fn list(dirs: &[PathBuf], global: &Global) -> Result<()> {
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in dirs {
        let mut here: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == BACKUP_EXTENSION))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(user(format!("cannot read {}: {e}", dir.display()))),
        };
        here.sort();
        files.extend(here);
    }
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
        let shown: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        outln!("no backups in {}", shown.join(" or "));
    }
    for l in &listed {
        let name = l.file.display().to_string();
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

#[cfg(test)]
mod tests {
    use super::*;
    use onefolder_model::Export;

    fn backup_at(ms: i64, tags: usize) -> Backup {
        let tags: Vec<String> = (0..tags)
            .map(|i| format!(r#""id{i}":{{"name":"t{i}","parent":null,"color":null,"order":"80","isHidden":false,"dateAdded":1}}"#))
            .collect();
        let json = format!(r#"{{"files":{{}},"tags":{{{}}},"locations":{{}},"searches":{{}}}}"#, tags.join(","));
        let export = Export::from_json(&json).expect("a valid export");
        Backup::new(export, "yrs", "lib", "device-1", ms)
    }

    #[test]
    fn automatic_backups_skip_unchanged_content_and_rotate_only_their_own_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("backups");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("mine.ofsbackup"), b"a manual backup the rotation must not touch").unwrap();
        let mut auto = AutoBackup::new(dir.clone(), Rotation { recent: 2, daily: 0, weekly: 0 });
        let day = 86_400_000;
        assert!(auto.take(&backup_at(1000 * day, 1)).unwrap().is_some());
        assert!(auto.take(&backup_at(1000 * day + 60_000, 1)).unwrap().is_none(), "nothing changed");
        for (k, tags) in [2, 3, 4].into_iter().enumerate() {
            assert!(auto.take(&backup_at(1000 * day + (k as i64 + 2) * 60_000, tags)).unwrap().is_some());
        }
        let autos = auto_backups(&dir);
        assert_eq!(autos.len(), 2);
        assert!(autos.iter().all(|(_, h)| h.tags >= 3), "the newest two are kept");
        assert!(dir.join("mine.ofsbackup").is_file());
        // A new run continues from the newest backup: unchanged content writes nothing.
        let mut again = AutoBackup::new(dir.clone(), Rotation::default());
        assert!(again.take(&backup_at(1001 * day, 4)).unwrap().is_none());
    }
}
