//! # onefolder-store-sqlite
//!
//! The [`Store`] of OneFolder Sync on SQLite (through `rusqlite`, with SQLite compiled in).
//!
//! A device's local state lives in one directory that is **never** inside the synced folder:
//!
//! - `state.sqlite3` — the database (plus SQLite's `state.sqlite3-wal` / `-shm` while open);
//! - `state.lock` — an advisory, exclusive file lock held for the whole life of a
//!   [`SqliteStore`], so that only one process (and only one store value) uses the state at a
//!   time. A second [`SqliteStore::open`] fails with [`StoreError::Locked`].
//!
//! ## Durability
//!
//! The database runs in WAL mode. Every [`Store`] method is one SQLite transaction (or one
//! single-statement autocommit), so it commits entirely or not at all, and a method that
//! returned `Ok` is in the WAL file:
//!
//! - with [`Synchronous::Normal`] (the default) a committed method survives the process being
//!   killed at any point; the last commits may be lost if the operating system crashes or the
//!   power fails before the WAL reaches the disk (the database itself is never damaged);
//! - with [`Synchronous::Full`] the WAL is synced on every commit, so a committed method also
//!   survives a power loss, at the cost of one `fsync` per edit.
//!
//! ## Schema
//!
//! The schema version is SQLite's `PRAGMA user_version`; [`SCHEMA_VERSION`] is the newest this
//! build knows. Opening applies the missing migrations in order, each in its own transaction,
//! and refuses a database written by a newer build ([`StoreError::TooNew`]). The file is tagged
//! with `PRAGMA application_id`; a file with another tag, or an untagged one that already holds
//! tables, belongs to another program and is refused ([`StoreError::Corrupt`]) rather than
//! modified. A damaged file is reported as [`StoreError::Corrupt`] (never repaired in place).
//! Version 1:
//!
//! | table      | columns                                                                   |
//! |------------|---------------------------------------------------------------------------|
//! | `meta`     | `key TEXT PRIMARY KEY`, `value BLOB`: identity and per-device settings    |
//! | `log`      | `id INTEGER PRIMARY KEY AUTOINCREMENT`, `kind` (0 local, 1 remote), `payload BLOB`, `flushed_seq` (own segment seq of a flushed local entry, else NULL) |
//! | `snapshot` | `id = 1`, `bytes BLOB`: the latest engine snapshot                        |
//! | `flushes`  | `seq PRIMARY KEY`, `upto`, `file_name`, `checksum`, `size`, `at_ms`: own segments |
//! | `applied`  | `(device, file_name) PRIMARY KEY`, `seq_start`, `seq_end`, `checksum`, `size`, `applied_at_ms`: peer segments |
//!
//! `AUTOINCREMENT` keeps log ids strictly increasing forever, even after [`Store::compact`]
//! deleted the newest rows. Unsigned 64-bit values (seqs, sizes, flush markers) are stored as
//! the bit-identical signed `INTEGER` and ordered as unsigned when listed; checksums are stored
//! as their (non-negative) `INTEGER` value. All tables are `STRICT`.
//!
//! ## Errors
//!
//! SQLite's "corrupt" and "not a database" map to [`StoreError::Corrupt`], "busy" and "locked"
//! to [`StoreError::Locked`], everything else to [`StoreError::Io`]; in every case the method
//! did not commit. [`Store::commit_flush`] returns [`StoreError::Invalid`] when `upto` is beyond
//! the last log id ever handed out or the seq is already recorded.

#![warn(missing_docs)]

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

use onefolder_core::{
    AppliedSegment, DeviceId, FlushRecord, LoadFn, LogEntry, LogKind, Store, StoreError, StoredState,
};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, Row, TransactionBehavior, params};

/// File name of the database inside the state directory.
pub const DB_FILE_NAME: &str = "state.sqlite3";

/// File name of the process lock inside the state directory.
pub const LOCK_FILE_NAME: &str = "state.lock";

/// The schema migrations, in order; migration `i` brings the database to version `i + 1`.
/// Released migrations are never edited: a change is a new entry.
const MIGRATIONS: &[&str] = &[
    // Version 1.
    "
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY NOT NULL,
        value BLOB NOT NULL
    ) STRICT;

    CREATE TABLE log (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        kind        INTEGER NOT NULL CHECK (kind IN (0, 1)),
        payload     BLOB NOT NULL,
        flushed_seq INTEGER,
        CHECK (kind = 0 OR flushed_seq IS NULL)
    ) STRICT;
    CREATE INDEX log_unflushed ON log (id) WHERE kind = 0 AND flushed_seq IS NULL;

    CREATE TABLE snapshot (
        id    INTEGER PRIMARY KEY CHECK (id = 1),
        bytes BLOB NOT NULL
    ) STRICT;

    CREATE TABLE flushes (
        seq       INTEGER PRIMARY KEY,
        upto      INTEGER NOT NULL,
        file_name TEXT NOT NULL,
        checksum  INTEGER NOT NULL CHECK (checksum BETWEEN 0 AND 4294967295),
        size      INTEGER NOT NULL,
        at_ms     INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE applied (
        device        TEXT NOT NULL,
        file_name     TEXT NOT NULL,
        seq_start     INTEGER NOT NULL,
        seq_end       INTEGER NOT NULL,
        checksum      INTEGER NOT NULL CHECK (checksum BETWEEN 0 AND 4294967295),
        size          INTEGER NOT NULL,
        applied_at_ms INTEGER NOT NULL,
        PRIMARY KEY (device, file_name)
    ) STRICT;
    ",
];

/// The newest schema version this build knows (the number of migrations).
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// `PRAGMA application_id` of a OneFolder state database ("OFS1").
const APPLICATION_ID: i32 = 0x4F46_5331;

/// How long a statement waits for a lock held by another connection (e.g. an inspecting
/// `sqlite3` shell) before failing with [`StoreError::Locked`].
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The WAL file is truncated to at most this many bytes after a checkpoint.
const JOURNAL_SIZE_LIMIT: i64 = 16 * 1024 * 1024;

const KIND_LOCAL: i64 = 0;
const KIND_REMOTE: i64 = 1;

/// SQLite's `PRAGMA synchronous` setting, i.e. what a committed change survives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Synchronous {
    /// `synchronous=NORMAL`: survives a process kill; a power loss may drop the last commits.
    #[default]
    Normal,
    /// `synchronous=FULL`: the WAL is synced on every commit; survives a power loss.
    Full,
}

impl Synchronous {
    fn pragma_value(self) -> &'static str {
        match self {
            Self::Normal => "NORMAL",
            Self::Full => "FULL",
        }
    }
}

/// Options of [`SqliteStore::open`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SqliteOptions {
    /// Durability of each commit; [`Synchronous::Normal`] by default.
    pub synchronous: Synchronous,
}

/// A [`Store`] in a SQLite database, owned exclusively by one process.
///
/// Dropping it closes the database and then releases the process lock.
#[derive(Debug)]
pub struct SqliteStore {
    // Field order matters: the connection is closed before the lock file is released.
    conn: Connection,
    /// Shown in errors: the state directory, or `:memory:`.
    location: String,
    db_path: Option<PathBuf>,
    _lock: Option<File>,
}

impl SqliteStore {
    /// Opens (creating it if needed) the store in the device's local state directory `dir`.
    ///
    /// `dir` is created if missing; the database is `dir/state.sqlite3`. Takes an exclusive
    /// lock on `dir/state.lock` for the life of the returned store.
    ///
    /// # Errors
    /// - [`StoreError::Locked`] if another process or another `SqliteStore` holds the state;
    /// - [`StoreError::TooNew`] if the database was written by a newer build;
    /// - [`StoreError::Corrupt`] if the file is not a OneFolder state database or is damaged;
    /// - [`StoreError::Io`] for file system or other database failures.
    pub fn open(dir: &Path, options: SqliteOptions) -> Result<Self, StoreError> {
        let location = dir.display().to_string();
        fs::create_dir_all(dir)
            .map_err(|e| StoreError::io_from(format_args!("cannot create the state directory {location}"), e))?;
        let lock = lock_dir(dir, &location)?;
        let db_path = dir.join(DB_FILE_NAME);
        // No SQLITE_OPEN_URI: the path is a file name, whatever characters it holds.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&db_path, flags).map_err(|e| db_error(&location, "open", e))?;
        let mut store = Self { conn, location, db_path: Some(db_path), _lock: Some(lock) };
        store.prepare(options, true)?;
        tracing::debug!(dir = %store.location, synchronous = ?options.synchronous, "opened SQLite store");
        Ok(store)
    }

    /// Opens a fresh store that lives in memory only (for tests): nothing survives dropping it,
    /// and no lock is taken.
    ///
    /// # Errors
    /// [`StoreError::Io`] if SQLite cannot allocate the database.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let location = ":memory:".to_owned();
        let conn = Connection::open_in_memory().map_err(|e| db_error(&location, "open", e))?;
        let mut store = Self { conn, location, db_path: None, _lock: None };
        store.prepare(SqliteOptions::default(), false)?;
        Ok(store)
    }

    /// The database file, or `None` for an in-memory store.
    pub fn db_path(&self) -> Option<&Path> {
        self.db_path.as_deref()
    }

    /// Sets the connection up and brings the schema to [`SCHEMA_VERSION`].
    fn prepare(&mut self, options: SqliteOptions, on_disk: bool) -> Result<(), StoreError> {
        let r = configure(&self.conn, options, on_disk).and_then(|()| migrate(&mut self.conn, &self.location));
        finish(&self.location, "open", r)
    }
}

/// Takes the exclusive process lock of a state directory.
fn lock_dir(dir: &Path, location: &str) -> Result<File, StoreError> {
    let lock_path = dir.join(LOCK_FILE_NAME);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| StoreError::io_from(format_args!("cannot open the lock file {}", lock_path.display()), e))?;
    // Fully qualified: `std::fs::File::try_lock` (Rust 1.89) would shadow the trait method.
    match fs4::FileExt::try_lock(&file) {
        Ok(()) => Ok(file),
        Err(fs4::TryLockError::WouldBlock) => Err(StoreError::Locked { path: location.to_owned() }),
        Err(fs4::TryLockError::Error(e)) => {
            Err(StoreError::io_from(format_args!("cannot lock {}", lock_path.display()), e))
        }
    }
}

/// Connection settings; the first statement that reads the file, so a file that is not a
/// database fails here.
fn configure(conn: &Connection, options: SqliteOptions, on_disk: bool) -> Result<(), Failure> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let app_id: i32 = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
    if app_id != 0 && app_id != APPLICATION_ID {
        return Err(StoreError::Corrupt(format!("not a OneFolder state database (application_id {app_id:#x})")).into());
    }
    if on_disk {
        let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::io(format!("SQLite refused WAL mode (journal_mode is {mode})")).into());
        }
        conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)?;
    }
    conn.pragma_update(None, "synchronous", options.synchronous.pragma_value())?;
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(())
}

/// Applies the missing migrations, each in its own transaction.
fn migrate(conn: &mut Connection, location: &str) -> Result<(), Failure> {
    let found: i32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    // user_version is a signed 32-bit header field; read it as the unsigned version it encodes.
    let found = found as u32;
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew { found, supported: SCHEMA_VERSION }.into());
    }
    if found == 0 {
        // Migrations are transactional, so a version-0 file with tables was written by
        // another program: refuse it rather than add our tables to it.
        let objects: i64 = conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))?;
        if objects > 0 {
            return Err(StoreError::Corrupt(format!(
                "{location} is a SQLite database of another program (schema version 0 with {objects} objects)"
            ))
            .into());
        }
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = index as i64 + 1;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "application_id", APPLICATION_ID)?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        tracing::info!(db = %location, version, "migrated the local store schema");
    }
    Ok(())
}

/// An internal failure: a database error (classified at the boundary) or a ready store error.
#[derive(Debug)]
enum Failure {
    Sqlite(rusqlite::Error),
    Store(StoreError),
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sqlite(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// Converts an internal result into the trait's error type.
fn finish<T>(location: &str, what: &str, r: Result<T, Failure>) -> Result<T, StoreError> {
    r.map_err(|f| match f {
        Failure::Sqlite(e) => db_error(location, what, e),
        Failure::Store(e) => e,
    })
}

/// Classifies a database error.
fn db_error(location: &str, what: &str, e: rusqlite::Error) -> StoreError {
    let err = match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
            StoreError::Corrupt(format!("{what}: {e} ({location})"))
        }
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Locked { path: location.to_owned() },
        _ => match e {
            // A value of the wrong type or range in a row this program wrote: damaged data.
            rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::IntegralValueOutOfRange(..) => StoreError::Corrupt(format!("{what}: {e} ({location})")),
            _ => StoreError::Io { message: format!("{what}: {e} ({location})"), source: Some(Box::new(e)) },
        },
    };
    tracing::warn!(db = %location, operation = what, error = %err, "local store failure");
    err
}

/// Stores a `u64` as the bit-identical `i64`.
fn to_db(v: u64) -> i64 {
    v as i64
}

/// Reads back a `u64` stored by [`to_db`].
fn from_db(v: i64) -> u64 {
    v as u64
}

/// A log id (a positive rowid) as the trait's `u64`.
fn log_id(id: i64) -> Result<u64, Failure> {
    u64::try_from(id).map_err(|_| StoreError::Corrupt(format!("negative log id {id}")).into())
}

/// A checksum column as `u32`.
fn checksum(v: i64) -> Result<u32, Failure> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("checksum {v} out of range")).into())
}

/// Decodes a row of `SELECT id, kind, payload, flushed_seq FROM log`.
fn log_entry(row: &Row<'_>) -> Result<LogEntry, Failure> {
    let kind = match row.get::<_, i64>(1)? {
        KIND_LOCAL => LogKind::Local,
        KIND_REMOTE => LogKind::Remote,
        other => return Err(StoreError::Corrupt(format!("unknown log entry kind {other}")).into()),
    };
    Ok(LogEntry {
        id: log_id(row.get(0)?)?,
        kind,
        payload: row.get(2)?,
        flushed_seq: row.get::<_, Option<i64>>(3)?.map(from_db),
    })
}

/// Collects `SELECT id, kind, payload, flushed_seq FROM log ...` rows.
fn query_log(conn: &Connection, sql: &str) -> Result<Vec<LogEntry>, Failure> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(log_entry(row)?);
    }
    Ok(out)
}

/// Appends a log row; returns its id.
fn insert_log(conn: &Connection, kind: i64, payload: &[u8]) -> Result<u64, Failure> {
    let id: i64 = conn
        .prepare_cached("INSERT INTO log (kind, payload) VALUES (?1, ?2) RETURNING id")?
        .query_row(params![kind, payload], |r| r.get(0))?;
    log_id(id)
}

/// Inserts (or replaces, by device and file name) an applied-segment row.
fn insert_applied(conn: &Connection, applied: &AppliedSegment) -> Result<(), Failure> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO applied \
         (device, file_name, seq_start, seq_end, checksum, size, applied_at_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        applied.device.to_string(),
        applied.file_name,
        to_db(applied.seq_start),
        to_db(applied.seq_end),
        applied.checksum,
        to_db(applied.size),
        applied.applied_at_ms
    ])?;
    Ok(())
}

impl Store for SqliteStore {
    fn store_id(&self) -> &'static str {
        "sqlite"
    }

    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let r = self
            .conn
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")
            .and_then(|mut stmt| stmt.query_row([key], |r| r.get(0)).optional())
            .map_err(Failure::from);
        finish(&self.location, "get_meta", r)
    }

    fn set_meta(&mut self, key: &str, value: Option<&[u8]>) -> Result<(), StoreError> {
        let r = match value {
            Some(value) => self.conn.prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .and_then(|mut stmt| stmt.execute(params![key, value])),
            None => self.conn.prepare_cached("DELETE FROM meta WHERE key = ?1").and_then(|mut stmt| stmt.execute([key])),
        };
        finish(&self.location, "set_meta", r.map(drop).map_err(Failure::from))
    }

    fn append_local(&mut self, payload: &[u8]) -> Result<u64, StoreError> {
        // One autocommit statement: durable when it returns.
        let r = insert_log(&self.conn, KIND_LOCAL, payload);
        finish(&self.location, "append_local", r)
    }

    fn unflushed(&self) -> Result<Vec<LogEntry>, StoreError> {
        let r = query_log(
            &self.conn,
            "SELECT id, kind, payload, flushed_seq FROM log WHERE kind = 0 AND flushed_seq IS NULL ORDER BY id",
        );
        finish(&self.location, "unflushed", r)
    }

    fn commit_flush(&mut self, flush: &FlushRecord) -> Result<(), StoreError> {
        let r = (|| -> Result<(), Failure> {
            let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // The highest log id ever handed out (AUTOINCREMENT keeps it even if rows were deleted).
            let last: i64 = tx
                .query_row("SELECT seq FROM sqlite_sequence WHERE name = 'log'", [], |r| r.get(0))
                .optional()?
                .unwrap_or(0);
            let last = log_id(last)?;
            if flush.upto > last {
                return Err(StoreError::Invalid(format!(
                    "flush {} claims log entries up to {}, but the last log id is {last}",
                    flush.seq, flush.upto
                ))
                .into());
            }
            let exists = tx
                .prepare_cached("SELECT 1 FROM flushes WHERE seq = ?1")?
                .query_row([to_db(flush.seq)], |_| Ok(()))
                .optional()?
                .is_some();
            if exists {
                return Err(StoreError::Invalid(format!("own segment seq {} is already recorded", flush.seq)).into());
            }
            // `upto <= last`, and log ids are positive i64, so the conversion is exact.
            let marked = tx
                .prepare_cached("UPDATE log SET flushed_seq = ?1 WHERE kind = 0 AND flushed_seq IS NULL AND id <= ?2")?
                .execute(params![to_db(flush.seq), to_db(flush.upto)])?;
            tx.prepare_cached(
                "INSERT INTO flushes (seq, upto, file_name, checksum, size, at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                to_db(flush.seq),
                to_db(flush.upto),
                flush.file_name,
                flush.checksum,
                to_db(flush.size),
                flush.at_ms
            ])?;
            tx.commit()?;
            tracing::debug!(seq = flush.seq, upto = flush.upto, marked, "recorded own flush");
            Ok(())
        })();
        finish(&self.location, "commit_flush", r)
    }

    fn flushes(&self) -> Result<Vec<FlushRecord>, StoreError> {
        let r = (|| -> Result<Vec<FlushRecord>, Failure> {
            // `seq < 0` first: bit-cast values above i64::MAX sort after all others, as unsigned.
            let mut stmt = self.conn.prepare_cached(
                "SELECT seq, upto, file_name, checksum, size, at_ms FROM flushes ORDER BY seq < 0, seq",
            )?;
            let mut rows = stmt.query([])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(FlushRecord {
                    seq: from_db(row.get(0)?),
                    upto: from_db(row.get(1)?),
                    file_name: row.get(2)?,
                    checksum: checksum(row.get(3)?)?,
                    size: from_db(row.get(4)?),
                    at_ms: row.get(5)?,
                });
            }
            Ok(out)
        })();
        finish(&self.location, "flushes", r)
    }

    fn commit_remote(&mut self, applied: &AppliedSegment, payload: Option<&[u8]>) -> Result<Option<u64>, StoreError> {
        let r = (|| -> Result<Option<u64>, Failure> {
            let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let id = payload.map(|payload| insert_log(&tx, KIND_REMOTE, payload)).transpose()?;
            insert_applied(&tx, applied)?;
            tx.commit()?;
            Ok(id)
        })();
        finish(&self.location, "commit_remote", r)
    }

    fn applied(&self) -> Result<Vec<AppliedSegment>, StoreError> {
        let r = (|| -> Result<Vec<AppliedSegment>, Failure> {
            let mut stmt = self.conn.prepare_cached(
                "SELECT device, file_name, seq_start, seq_end, checksum, size, applied_at_ms FROM applied \
                 ORDER BY device, seq_start < 0, seq_start, file_name",
            )?;
            let mut rows = stmt.query([])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                let device: String = row.get(0)?;
                let device = device
                    .parse::<DeviceId>()
                    .map_err(|e| StoreError::Corrupt(format!("bad device id {device:?} in applied segments: {e}")))?;
                out.push(AppliedSegment {
                    device,
                    file_name: row.get(1)?,
                    seq_start: from_db(row.get(2)?),
                    seq_end: from_db(row.get(3)?),
                    checksum: checksum(row.get(4)?)?,
                    size: from_db(row.get(5)?),
                    applied_at_ms: row.get(6)?,
                });
            }
            Ok(out)
        })();
        finish(&self.location, "applied", r)
    }

    fn forget_peer(&mut self, device: &DeviceId) -> Result<(), StoreError> {
        let r = self
            .conn
            .prepare_cached("DELETE FROM applied WHERE device = ?1")
            .and_then(|mut stmt| stmt.execute([device.to_string()]))
            .map(drop)
            .map_err(Failure::from);
        finish(&self.location, "forget_peer", r)
    }

    fn replace_applied(&mut self, device: &DeviceId, drop: &[String], keep: &AppliedSegment) -> Result<(), StoreError> {
        let r = (|| -> Result<(), Failure> {
            if keep.device != *device {
                return Err(
                    StoreError::Invalid(format!("a record of {} given to replace {device}'s", keep.device)).into()
                );
            }
            let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let device_text = device.to_string();
            {
                let mut delete = tx.prepare_cached("DELETE FROM applied WHERE device = ?1 AND file_name = ?2")?;
                for name in drop {
                    delete.execute(params![device_text, name])?;
                }
            }
            insert_applied(&tx, keep)?;
            tx.commit()?;
            Ok(())
        })();
        finish(&self.location, "replace_applied", r)
    }

    fn forget_flushes_before(&mut self, seq: u64) -> Result<(), StoreError> {
        let r = (|| -> Result<(), Failure> {
            // Seqs are stored bit-cast to i64: values of 2^63 and more are negative.
            let bound = to_db(seq);
            if bound >= 0 {
                self.conn.prepare_cached("DELETE FROM flushes WHERE seq >= 0 AND seq < ?1")?.execute([bound])?;
            } else {
                self.conn.prepare_cached("DELETE FROM flushes WHERE seq >= 0 OR seq < ?1")?.execute([bound])?;
            }
            Ok(())
        })();
        finish(&self.location, "forget_flushes_before", r)
    }

    fn load(&self) -> Result<StoredState, StoreError> {
        let r = (|| -> Result<StoredState, Failure> {
            // One read transaction: the snapshot and the log are from the same commit.
            let tx = self.conn.unchecked_transaction()?;
            let snapshot = tx.query_row("SELECT bytes FROM snapshot WHERE id = 1", [], |r| r.get(0)).optional()?;
            let log = query_log(&tx, "SELECT id, kind, payload, flushed_seq FROM log ORDER BY id")?;
            tx.commit()?;
            Ok(StoredState { snapshot, log })
        })();
        finish(&self.location, "load", r)
    }

    fn load_with(&self, f: &mut LoadFn<'_>) -> Result<(), StoreError> {
        let r = (|| -> Result<(), Failure> {
            // One read transaction, as in `load`; the snapshot is lent from the row.
            let tx = self.conn.unchecked_transaction()?;
            let log = query_log(&tx, "SELECT id, kind, payload, flushed_seq FROM log ORDER BY id")?;
            let mut f = Some(f);
            tx.query_row("SELECT bytes FROM snapshot WHERE id = 1", [], |r| {
                if let Some(f) = f.take() {
                    f(Some(r.get_ref(0)?.as_blob()?), &log);
                }
                Ok(())
            })
            .optional()?;
            if let Some(f) = f {
                f(None, &log);
            }
            tx.commit()?;
            Ok(())
        })();
        finish(&self.location, "load", r)
    }

    fn compact(&mut self, snapshot: &[u8]) -> Result<(), StoreError> {
        let r = (|| -> Result<(), Failure> {
            let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute("INSERT OR REPLACE INTO snapshot (id, bytes) VALUES (1, ?1)", [snapshot])?;
            let dropped = tx.execute("DELETE FROM log WHERE NOT (kind = 0 AND flushed_seq IS NULL)", [])?;
            tx.commit()?;
            tracing::debug!(snapshot_bytes = snapshot.len(), dropped, "compacted the local store");
            Ok(())
        })();
        finish(&self.location, "compact", r)
    }
}
