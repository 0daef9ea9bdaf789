//! # onefolder-store-lmdb
//!
//! The [`Store`] of OneFolder Sync on LMDB (through `heed`, with LMDB compiled in).
//!
//! A device's local state lives in one directory that is **never** inside the synced folder:
//!
//! - `data.mdb` — the LMDB environment (one per device), [`DATA_FILE_NAME`];
//! - `lock.mdb` — LMDB's own reader table;
//! - `state.lock` — an advisory, exclusive file lock held for the whole life of an
//!   [`LmdbStore`] (the same lock as the SQLite store), so that only one process (and only one
//!   store value) uses the state at a time. A second [`LmdbStore::open`] fails with
//!   [`StoreError::Locked`].
//!
//! ## Durability
//!
//! Every [`Store`] method is one LMDB transaction: it commits entirely or not at all. LMDB
//! writes with `write(2)` (the map is read-only; `MDB_WRITEMAP` is not used), and a commit
//! becomes visible by writing a meta page after the data pages, so a committed method is in the
//! operating system's page cache when it returns and survives the process being killed at any
//! point. What it survives beyond that is [`Durability`]:
//!
//! - [`Durability::Durable`] (the default): LMDB's default, the data pages and then the meta
//!   page are synced to disk before a commit returns. An acknowledged edit also survives an
//!   operating-system crash or a power loss. The cost is two `fsync`s per commit, which is
//!   negligible at the rate of a person tagging pictures.
//! - [`Durability::Relaxed`] (`MDB_NOMETASYNC`): one `fsync` per commit (the data pages); the
//!   meta page reaches the disk with the next commit. A power loss may undo the last commit,
//!   but never damages the environment.
//!
//! `MDB_NOSYNC` is deliberately not offered: it is only as safe as the file system's write
//! ordering, and an operating-system crash can then damage the environment, which is not a
//! trade a user of a tag database expects.
//!
//! ## Map size
//!
//! LMDB maps the whole environment into memory and fails a write with `MDB_MAP_FULL` once the
//! map is full. The map starts small ([`LmdbOptions::initial_map_size`], 16 MiB by default, or
//! twice the size of an existing data file if that is larger), and when a write fails with
//! `MDB_MAP_FULL` the transaction is aborted, the map is doubled and the whole method is
//! retried — up to [`LmdbOptions::max_map_size`], after which the method fails with
//! [`StoreError::Io`] and nothing was committed. Resizing needs that no transaction of the
//! environment is active; that holds because transactions never outlive a method, resizing
//! happens only inside `&mut self` methods, and the process lock keeps other processes out.
//!
//! ## Layout
//!
//! Named databases, schema version 1 ([`SCHEMA_VERSION`]); all integers are big-endian.
//!
//! | database   | key                          | value                                                     |
//! |------------|------------------------------|-----------------------------------------------------------|
//! | `meta`     | `u/` + caller's key (UTF-8)  | the caller's bytes                                        |
//! |            | `sys/application`            | `onefolder-sync state` (marks the environment as ours)   |
//! |            | `sys/schema_version`         | `u32`                                                     |
//! |            | `sys/last_log_id`            | `u64`: the highest log id ever handed out                 |
//! | `log`      | `u64` log id                 | kind `u8` (0 local, 1 remote), flushed `u8` (0/1), flushed seq `u64`, payload |
//! | `snapshot` | `snapshot`                   | the latest engine snapshot                                |
//! | `flushes`  | `u64` own seq                | `upto u64`, `checksum u32`, `size u64`, `at_ms i64`, file name |
//! | `applied`  | device (16 bytes) + file name | `seq_start u64`, `seq_end u64`, `checksum u32`, `size u64`, `applied_at_ms i64`, file name |
//!
//! Big-endian keys make LMDB's byte order the numeric order, so the log and the flushes are
//! iterated by id and seq. `sys/last_log_id` keeps log ids strictly increasing forever, even
//! after [`Store::compact`] deleted the newest entries. Caller keys live under `u/` so that no
//! caller key (the empty one included) can collide with an internal one. LMDB limits keys to
//! 511 bytes: a meta key longer than [`MAX_META_KEY_LEN`] is refused with
//! [`StoreError::Invalid`], and an applied segment whose file name does not fit in a key is
//! keyed by a prefix of the name, a `0xFF` byte (never part of UTF-8) and a 64-bit FNV-1a hash
//! of the whole name (the value always holds the whole name).
//!
//! Opening a directory whose environment holds databases but no `meta` marked
//! `sys/application` belongs to another program and is refused ([`StoreError::Corrupt`])
//! without being modified; a newer schema is refused with [`StoreError::TooNew`].
//!
//! ## Errors
//!
//! LMDB's "invalid" (not an LMDB file), "corrupted", "page not found", "version mismatch" and
//! "incompatible", and any record this program cannot decode, map to [`StoreError::Corrupt`];
//! an environment already open in this process maps to [`StoreError::Locked`]; everything else
//! to [`StoreError::Io`]. In every case the method did not commit. [`Store::commit_flush`]
//! returns [`StoreError::Invalid`] when `upto` is beyond the last log id ever handed out or the
//! seq is already recorded. LMDB has no page checksums: damage is detected when a structure
//! does not make sense, not byte by byte.

#![warn(missing_docs)]

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::path::Path;

use heed::byteorder::BigEndian;
use heed::types::{Bytes, DecodeIgnore, U64};
use heed::{CommitOrAbort, Database, Env, EnvFlags, EnvOpenOptions, MdbError, RoTxn, RwTxn, WithoutTls};
use onefolder_core::{
    AppliedSegment, DeviceId, FlushRecord, LoadFn, LogEntry, LogKind, Store, StoreError, StoredState,
};

/// File name of LMDB's data file inside the state directory.
pub const DATA_FILE_NAME: &str = "data.mdb";

/// File name of the process lock inside the state directory.
pub const LOCK_FILE_NAME: &str = "state.lock";

/// The newest schema version this build knows.
pub const SCHEMA_VERSION: u32 = 1;

/// The longest meta key [`Store::set_meta`] accepts, in bytes (LMDB's 511-byte key limit minus
/// the `u/` prefix).
pub const MAX_META_KEY_LEN: usize = LMDB_MAX_KEY - META_USER_PREFIX.len();

/// Default [`LmdbOptions::initial_map_size`]: 16 MiB.
pub const DEFAULT_INITIAL_MAP_SIZE: usize = 16 << 20;

/// Default [`LmdbOptions::max_map_size`]: 1 TiB of address space on 64-bit targets, 1 GiB on
/// others. Only the used part of the map takes disk space.
#[cfg(target_pointer_width = "64")]
pub const DEFAULT_MAX_MAP_SIZE: usize = 1 << 40;

/// Default [`LmdbOptions::max_map_size`]: 1 TiB of address space on 64-bit targets, 1 GiB on
/// others. Only the used part of the map takes disk space.
#[cfg(not(target_pointer_width = "64"))]
pub const DEFAULT_MAX_MAP_SIZE: usize = 1 << 30;

/// Map sizes are multiples of this (a multiple of every page size in use).
const MAP_ALIGN: usize = 1 << 20;

/// LMDB's compile-time key limit (`MDB_MAXKEYSIZE`).
const LMDB_MAX_KEY: usize = 511;

/// Named databases: meta, log, snapshot, flushes, applied.
const MAX_DBS: u32 = 8;

const DB_META: &str = "meta";
const DB_LOG: &str = "log";
const DB_SNAPSHOT: &str = "snapshot";
const DB_FLUSHES: &str = "flushes";
const DB_APPLIED: &str = "applied";

const META_USER_PREFIX: &[u8] = b"u/";
const META_APPLICATION: &[u8] = b"sys/application";
const META_SCHEMA_VERSION: &[u8] = b"sys/schema_version";
const META_LAST_LOG_ID: &[u8] = b"sys/last_log_id";

/// The value of `sys/application`.
const APPLICATION: &[u8] = b"onefolder-sync state";

const SNAPSHOT_KEY: &[u8] = b"snapshot";

const KIND_LOCAL: u8 = 0;
const KIND_REMOTE: u8 = 1;

/// Log value header: kind, flushed flag, flushed seq.
const LOG_HEADER: usize = 1 + 1 + 8;
/// Flush value header: upto, checksum, size, at_ms.
const FLUSH_HEADER: usize = 8 + 4 + 8 + 8;
/// Applied value header: seq_start, seq_end, checksum, size, applied_at_ms.
const APPLIED_HEADER: usize = 8 + 8 + 4 + 8 + 8;
/// Device id bytes at the start of an applied key.
const DEVICE_LEN: usize = 16;
/// In an applied key of a long file name: the `0xFF` marker and the 8-byte hash.
const LONG_NAME_SUFFIX: usize = 1 + 8;

/// What a committed change survives, beyond a process kill (which it always survives).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Durability {
    /// Data and meta pages are synced before a commit returns: survives a power loss.
    #[default]
    Durable,
    /// `MDB_NOMETASYNC`: the data pages are synced, the meta page with the next commit. A power
    /// loss may undo the last commit; the environment is never damaged.
    Relaxed,
}

/// Options of [`LmdbStore::open`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LmdbOptions {
    /// What a commit survives; [`Durability::Durable`] by default.
    pub durability: Durability,
    /// The map size to start with, in bytes ([`DEFAULT_INITIAL_MAP_SIZE`] by default). Rounded
    /// up to a multiple of 1 MiB; raised to twice the data file when reopening a larger store.
    pub initial_map_size: usize,
    /// The map never grows beyond this many bytes ([`DEFAULT_MAX_MAP_SIZE`] by default); a
    /// write that does not fit then fails with [`StoreError::Io`]. Rounded down to a multiple
    /// of 1 MiB (at least 1 MiB).
    pub max_map_size: usize,
}

impl Default for LmdbOptions {
    fn default() -> Self {
        Self {
            durability: Durability::default(),
            initial_map_size: DEFAULT_INITIAL_MAP_SIZE,
            max_map_size: DEFAULT_MAX_MAP_SIZE,
        }
    }
}

/// The named databases of a store.
#[derive(Clone, Copy, Debug)]
struct Dbs {
    meta: Database<'static, Bytes, Bytes>,
    log: Database<'static, U64<BigEndian>, Bytes>,
    snapshot: Database<'static, Bytes, Bytes>,
    flushes: Database<'static, U64<BigEndian>, Bytes>,
    applied: Database<'static, Bytes, Bytes>,
}

/// A [`Store`] in an LMDB environment, owned exclusively by one process.
///
/// It is `Send` and `Sync`: transactions never outlive a method, and the environment is opened
/// with `MDB_NOTLS`, so a read transaction is not tied to the thread that began it and a store
/// used from a thread pool (a replica on a tokio runtime) does not exhaust LMDB's reader slots.
/// Dropping it closes the environment and then releases the process lock.
#[derive(Debug)]
pub struct LmdbStore {
    // Field order matters: the environment is closed before the lock file is released.
    env: Env<WithoutTls>,
    dbs: Dbs,
    /// Shown in errors: the state directory.
    location: String,
    max_map_size: usize,
    _lock: File,
}

// The `Store` trait requires `Send`; keep it a compile-time fact.
const _: fn() = || {
    fn assert_send<T: Send>() {}
    assert_send::<LmdbStore>();
};

impl LmdbStore {
    /// Opens (creating it if needed) the store in the device's local state directory `dir`.
    ///
    /// `dir` is created if missing; the environment is `dir/data.mdb` (+ `dir/lock.mdb`).
    /// Takes an exclusive lock on `dir/state.lock` for the life of the returned store.
    ///
    /// # Errors
    /// - [`StoreError::Locked`] if another process or another `LmdbStore` holds the state;
    /// - [`StoreError::TooNew`] if the environment was written by a newer build;
    /// - [`StoreError::Corrupt`] if the files are not a OneFolder state environment or are
    ///   damaged;
    /// - [`StoreError::Io`] for file system or other database failures.
    pub fn open(dir: &Path, options: LmdbOptions) -> Result<Self, StoreError> {
        let location = dir.display().to_string();
        fs::create_dir_all(dir)
            .map_err(|e| StoreError::io_from(format_args!("cannot create the state directory {location}"), e))?;
        let lock = lock_dir(dir, &location)?;

        let max_map_size = (options.max_map_size / MAP_ALIGN).max(1) * MAP_ALIGN;
        let existing = match fs::metadata(dir.join(DATA_FILE_NAME)) {
            Ok(m) => usize::try_from(m.len()).unwrap_or(usize::MAX),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(StoreError::io_from(format_args!("cannot read the data file in {location}"), e)),
        };
        // Room for the existing data plus as much again, so a reopened store does not start full.
        let map_size = align_up(options.initial_map_size.max(existing.saturating_mul(2)).min(max_map_size))
            .max(align_up(existing));

        let mut env_options = EnvOpenOptions::new().read_txn_without_tls();
        env_options.map_size(map_size).max_dbs(MAX_DBS);
        if options.durability == Durability::Relaxed {
            // SAFETY: MDB_NOMETASYNC keeps the environment consistent; it only defers syncing
            // the meta page (see the crate docs).
            unsafe { env_options.flags(EnvFlags::NO_META_SYNC) };
        }
        // SAFETY: LMDB's memory map must not be modified behind its back. The exclusive lock on
        // `state.lock` keeps every other OneFolder process out, heed refuses to open the same
        // environment twice in one process, and the map is opened read-only (no MDB_WRITEMAP),
        // so stray writes cannot reach it.
        let env = unsafe { env_options.open(dir) }.map_err(|e| heed_error(&location, "open", e))?;

        let mut map_size = env.info().map_size;
        let dbs = loop {
            match init(&env) {
                Err(Failure::Heed(heed::Error::Mdb(MdbError::MapFull))) => {
                    // SAFETY: `init`'s transaction is gone and the environment is not shared yet.
                    map_size = unsafe { grow(&env, &location, max_map_size) }?;
                }
                r => break finish(&location, "open", r)?,
            }
        };
        tracing::debug!(dir = %location, durability = ?options.durability, map_size, "opened LMDB store");
        Ok(Self { env, dbs, location, max_map_size, _lock: lock })
    }

    /// The current size of the memory map in bytes (it grows as the store fills).
    pub fn map_size(&self) -> usize {
        self.env.info().map_size
    }

    /// The data file, `dir/data.mdb`.
    pub fn data_path(&self) -> std::path::PathBuf {
        self.env.path().join(DATA_FILE_NAME)
    }

    /// Runs `op` in a read transaction.
    fn read<T>(&self, what: &str, op: impl FnOnce(&RoTxn<'_>, &Dbs) -> Result<T, Failure>) -> Result<T, StoreError> {
        let r = self.env.read_txn().map_err(Failure::from).and_then(|txn| op(&txn, &self.dbs));
        finish(&self.location, what, r)
    }

    /// Runs `op` in a write transaction and commits it; on `MDB_MAP_FULL` the transaction is
    /// aborted, the map grown and `op` run again from the start.
    fn write<T>(
        &mut self,
        what: &str,
        mut op: impl FnMut(&mut RwTxn<'_>, &Dbs) -> Result<T, Failure>,
    ) -> Result<T, StoreError> {
        loop {
            let r = (|| {
                let mut txn = self.env.write_txn()?;
                let value = op(&mut txn, &self.dbs)?;
                txn.commit()?;
                Ok(value)
            })();
            match r {
                Err(Failure::Heed(heed::Error::Mdb(MdbError::MapFull))) => {
                    // SAFETY: the transaction above was dropped (aborted); `&mut self` means no
                    // other method of this store runs, and no other handle on the env exists.
                    unsafe { grow(&self.env, &self.location, self.max_map_size) }?;
                }
                r => return finish(&self.location, what, r),
            }
        }
    }
}

/// Doubles the map (up to `max`); returns the new size.
///
/// # Safety
/// No transaction of `env` may be active (LMDB's `mdb_env_set_mapsize` rule).
unsafe fn grow(env: &Env<WithoutTls>, location: &str, max: usize) -> Result<usize, StoreError> {
    let current = env.info().map_size;
    if current >= max {
        let err = StoreError::io(format!(
            "the local store at {location} is full: it reached its maximum map size of {max} bytes"
        ));
        tracing::warn!(db = %location, error = %err, "local store failure");
        return Err(err);
    }
    let new = align_up(current.saturating_mul(2)).min(max);
    // SAFETY: the caller guarantees that no transaction is active.
    unsafe { env.resize(new) }.map_err(|e| heed_error(location, "resize", e))?;
    tracing::info!(db = %location, from = current, to = new, "grew the LMDB map");
    Ok(new)
}

/// Rounds up to a multiple of [`MAP_ALIGN`] (at least one).
fn align_up(n: usize) -> usize {
    n.div_ceil(MAP_ALIGN).max(1).saturating_mul(MAP_ALIGN)
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

/// Checks that the environment is a OneFolder state of a known schema (or empty), creates the
/// databases of a new one, and opens them. Changes nothing unless the environment is new.
fn init(env: &Env<WithoutTls>) -> Result<Dbs, Failure> {
    let txn = env.write_txn()?;
    let dbs = env
        .create_databases_and_commit(txn, |opener, txn| -> Result<CommitOrAbort<_, ()>, Failure> {
            // The unnamed database lists the named ones.
            let main = opener
                .open_database::<Bytes, DecodeIgnore>(txn, None)?
                .ok_or_else(|| StoreError::Corrupt("the LMDB main database is missing".into()))?;
            let mut names = BTreeSet::new();
            for item in main.iter(txn)? {
                let (name, ()) = item?;
                names.insert(String::from_utf8_lossy(name).into_owned());
            }
            if names.is_empty() {
                let meta = opener.create_database::<Bytes, Bytes>(txn, Some(DB_META))?;
                meta.put(txn, META_APPLICATION, APPLICATION)?;
                meta.put(txn, META_SCHEMA_VERSION, &SCHEMA_VERSION.to_be_bytes())?;
                meta.put(txn, META_LAST_LOG_ID, &0u64.to_be_bytes())?;
                let dbs = (
                    meta,
                    opener.create_database::<U64<BigEndian>, Bytes>(txn, Some(DB_LOG))?,
                    opener.create_database::<Bytes, Bytes>(txn, Some(DB_SNAPSHOT))?,
                    opener.create_database::<U64<BigEndian>, Bytes>(txn, Some(DB_FLUSHES))?,
                    opener.create_database::<Bytes, Bytes>(txn, Some(DB_APPLIED))?,
                );
                tracing::info!(version = SCHEMA_VERSION, "created the local store schema");
                return Ok(CommitOrAbort::Commit(dbs));
            }
            let foreign = || {
                StoreError::Corrupt(format!(
                    "not a OneFolder state environment (it holds the databases {})",
                    names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
                ))
            };
            if !names.contains(DB_META) {
                return Err(foreign().into());
            }
            let meta = opener.open_database::<Bytes, Bytes>(txn, Some(DB_META))?.ok_or_else(foreign)?;
            if meta.get(txn, META_APPLICATION)? != Some(APPLICATION) {
                return Err(foreign().into());
            }
            let found = match meta.get(txn, META_SCHEMA_VERSION)? {
                Some(v) => u32::from_be_bytes(fixed(v, "schema version")?),
                None => return Err(StoreError::Corrupt("the schema version is missing".into()).into()),
            };
            if found > SCHEMA_VERSION {
                return Err(StoreError::TooNew { found, supported: SCHEMA_VERSION }.into());
            }
            // Versions start at 1 and there is no older one to migrate from yet; a newer build
            // adds its migrations here, in this transaction.
            if found != SCHEMA_VERSION {
                return Err(StoreError::Corrupt(format!("unknown schema version {found}")).into());
            }
            last_log_id(txn, meta)?;
            let open = |name: &str| StoreError::Corrupt(format!("the {name:?} database is missing"));
            let dbs = (
                meta,
                opener.open_database::<U64<BigEndian>, Bytes>(txn, Some(DB_LOG))?.ok_or_else(|| open(DB_LOG))?,
                opener.open_database::<Bytes, Bytes>(txn, Some(DB_SNAPSHOT))?.ok_or_else(|| open(DB_SNAPSHOT))?,
                opener
                    .open_database::<U64<BigEndian>, Bytes>(txn, Some(DB_FLUSHES))?
                    .ok_or_else(|| open(DB_FLUSHES))?,
                opener.open_database::<Bytes, Bytes>(txn, Some(DB_APPLIED))?.ok_or_else(|| open(DB_APPLIED))?,
            );
            Ok(CommitOrAbort::Commit(dbs))
        })?
        .unwrap_commit();
    let (meta, log, snapshot, flushes, applied) = dbs;
    Ok(Dbs { meta, log, snapshot, flushes, applied })
}

/// An internal failure: a database error (classified at the boundary) or a ready store error.
#[derive(Debug)]
enum Failure {
    Heed(heed::Error),
    Store(StoreError),
}

impl From<heed::Error> for Failure {
    fn from(e: heed::Error) -> Self {
        Self::Heed(e)
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
        Failure::Heed(e) => heed_error(location, what, e),
        Failure::Store(e) => e,
    })
}

/// Classifies a database error.
fn heed_error(location: &str, what: &str, e: heed::Error) -> StoreError {
    let err = match &e {
        heed::Error::Mdb(
            MdbError::Invalid
            | MdbError::Corrupted
            | MdbError::PageNotFound
            | MdbError::VersionMismatch
            | MdbError::Incompatible,
        )
        | heed::Error::Decoding(_) => StoreError::Corrupt(format!("{what}: {e} ({location})")),
        heed::Error::EnvAlreadyOpened => StoreError::Locked { path: location.to_owned() },
        heed::Error::Mdb(MdbError::BadValSize) => StoreError::Invalid(format!("{what}: {e} ({location})")),
        _ => StoreError::Io { message: format!("{what}: {e} ({location})"), source: Some(Box::new(e)) },
    };
    tracing::warn!(db = %location, operation = what, error = %err, "local store failure");
    err
}

/// A fixed-size field of a record.
fn fixed<const N: usize>(bytes: &[u8], what: &str) -> Result<[u8; N], Failure> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("{what}: expected {N} bytes, found {}", bytes.len())).into())
}

/// Reads big-endian fields from a record, failing with `Corrupt` when it is too short.
struct Reader<'a> {
    bytes: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Self { bytes, what }
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], Failure> {
        if self.bytes.len() < N {
            return Err(StoreError::Corrupt(format!("truncated {} record", self.what)).into());
        }
        let (head, rest) = self.bytes.split_at(N);
        self.bytes = rest;
        fixed(head, self.what)
    }

    fn u8(&mut self) -> Result<u8, Failure> {
        Ok(self.take::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, Failure> {
        Ok(u32::from_be_bytes(self.take()?))
    }

    fn u64(&mut self) -> Result<u64, Failure> {
        Ok(u64::from_be_bytes(self.take()?))
    }

    fn i64(&mut self) -> Result<i64, Failure> {
        Ok(i64::from_be_bytes(self.take()?))
    }

    /// The rest, as a UTF-8 string.
    fn rest_str(self) -> Result<String, Failure> {
        String::from_utf8(self.bytes.to_vec()).map_err(|_| {
            StoreError::Corrupt(format!("{} record holds a file name that is not UTF-8", self.what)).into()
        })
    }
}

/// The highest log id ever handed out.
fn last_log_id(txn: &RoTxn<'_>, meta: Database<'_, Bytes, Bytes>) -> Result<u64, Failure> {
    match meta.get(txn, META_LAST_LOG_ID)? {
        Some(v) => Ok(u64::from_be_bytes(fixed(v, "last log id")?)),
        None => Err(StoreError::Corrupt("the last log id is missing".into()).into()),
    }
}

/// Hands out the next log id and appends an entry under it.
fn append_log(txn: &mut RwTxn<'_>, dbs: &Dbs, kind: u8, payload: &[u8]) -> Result<u64, Failure> {
    let id = last_log_id(txn, dbs.meta)?
        .checked_add(1)
        .ok_or_else(|| StoreError::Corrupt("the log ids are exhausted".into()))?;
    dbs.log.put(txn, &id, &encode_log(kind, None, payload))?;
    dbs.meta.put(txn, META_LAST_LOG_ID, &id.to_be_bytes())?;
    Ok(id)
}

fn encode_log(kind: u8, flushed_seq: Option<u64>, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(LOG_HEADER + payload.len());
    v.push(kind);
    v.push(u8::from(flushed_seq.is_some()));
    v.extend_from_slice(&flushed_seq.unwrap_or(0).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// A log record's header: kind and flush mark; the payload follows [`LOG_HEADER`] bytes.
fn log_header(value: &[u8]) -> Result<(LogKind, Option<u64>), Failure> {
    let mut r = Reader::new(value, "log");
    let kind = match r.u8()? {
        KIND_LOCAL => LogKind::Local,
        KIND_REMOTE => LogKind::Remote,
        other => return Err(StoreError::Corrupt(format!("unknown log entry kind {other}")).into()),
    };
    let flushed = match (r.u8()?, r.u64()?) {
        (0, _) => None,
        (1, seq) if kind == LogKind::Local => Some(seq),
        (flag, _) => return Err(StoreError::Corrupt(format!("bad flush mark {flag} on a {kind:?} log entry")).into()),
    };
    Ok((kind, flushed))
}

fn decode_log(id: u64, value: &[u8]) -> Result<LogEntry, Failure> {
    let (kind, flushed_seq) = log_header(value)?;
    Ok(LogEntry { id, kind, payload: value[LOG_HEADER..].to_vec(), flushed_seq })
}

/// Every log entry, by id, that `keep` selects from its header.
fn read_log(
    txn: &RoTxn<'_>,
    dbs: &Dbs,
    mut keep: impl FnMut(LogKind, Option<u64>) -> bool,
) -> Result<Vec<LogEntry>, Failure> {
    let mut out = Vec::new();
    for item in dbs.log.iter(txn)? {
        let (id, value) = item?;
        let (kind, flushed) = log_header(value)?;
        if keep(kind, flushed) {
            out.push(decode_log(id, value)?);
        }
    }
    Ok(out)
}

fn encode_flush(f: &FlushRecord) -> Vec<u8> {
    let mut v = Vec::with_capacity(FLUSH_HEADER + f.file_name.len());
    v.extend_from_slice(&f.upto.to_be_bytes());
    v.extend_from_slice(&f.checksum.to_be_bytes());
    v.extend_from_slice(&f.size.to_be_bytes());
    v.extend_from_slice(&f.at_ms.to_be_bytes());
    v.extend_from_slice(f.file_name.as_bytes());
    v
}

fn decode_flush(seq: u64, value: &[u8]) -> Result<FlushRecord, Failure> {
    let mut r = Reader::new(value, "flush");
    Ok(FlushRecord {
        seq,
        upto: r.u64()?,
        checksum: r.u32()?,
        size: r.u64()?,
        at_ms: r.i64()?,
        file_name: r.rest_str()?,
    })
}

/// 64-bit FNV-1a: a stable hash for keys of long file names.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// The key of an applied segment: device bytes + file name, or for a name too long for an
/// LMDB key, device bytes + a prefix of the name + `0xFF` + the hash of the whole name.
fn applied_key(device: &DeviceId, file_name: &str) -> Vec<u8> {
    let name = file_name.as_bytes();
    let mut key = Vec::with_capacity(LMDB_MAX_KEY);
    key.extend_from_slice(device.as_bytes());
    if DEVICE_LEN + name.len() <= LMDB_MAX_KEY {
        key.extend_from_slice(name);
    } else {
        key.extend_from_slice(&name[..LMDB_MAX_KEY - DEVICE_LEN - LONG_NAME_SUFFIX]);
        key.push(0xFF);
        key.extend_from_slice(&fnv1a64(name).to_be_bytes());
    }
    key
}

fn encode_applied(a: &AppliedSegment) -> Vec<u8> {
    let mut v = Vec::with_capacity(APPLIED_HEADER + a.file_name.len());
    v.extend_from_slice(&a.seq_start.to_be_bytes());
    v.extend_from_slice(&a.seq_end.to_be_bytes());
    v.extend_from_slice(&a.checksum.to_be_bytes());
    v.extend_from_slice(&a.size.to_be_bytes());
    v.extend_from_slice(&a.applied_at_ms.to_be_bytes());
    v.extend_from_slice(a.file_name.as_bytes());
    v
}

fn decode_applied(key: &[u8], value: &[u8]) -> Result<AppliedSegment, Failure> {
    let device: [u8; DEVICE_LEN] = key
        .get(..DEVICE_LEN)
        .and_then(|d| d.try_into().ok())
        .ok_or_else(|| StoreError::Corrupt(format!("applied segment key of {} bytes", key.len())))?;
    let mut r = Reader::new(value, "applied segment");
    let a = AppliedSegment {
        device: DeviceId::from_bytes(device),
        seq_start: r.u64()?,
        seq_end: r.u64()?,
        checksum: r.u32()?,
        size: r.u64()?,
        applied_at_ms: r.i64()?,
        file_name: r.rest_str()?,
    };
    if applied_key(&a.device, &a.file_name) != key {
        return Err(StoreError::Corrupt(format!("applied segment {:?} is filed under another key", a.file_name)).into());
    }
    Ok(a)
}

/// The meta key of a caller's key, or `None` when it is too long to have been stored.
fn meta_key(key: &str) -> Option<Vec<u8>> {
    (key.len() <= MAX_META_KEY_LEN).then(|| [META_USER_PREFIX, key.as_bytes()].concat())
}

impl Store for LmdbStore {
    fn store_id(&self) -> &'static str {
        "lmdb"
    }

    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        // A key too long to store was never stored.
        let Some(key) = meta_key(key) else { return Ok(None) };
        self.read("get_meta", |txn, dbs| Ok(dbs.meta.get(txn, &key)?.map(<[u8]>::to_vec)))
    }

    fn set_meta(&mut self, key: &str, value: Option<&[u8]>) -> Result<(), StoreError> {
        let Some(db_key) = meta_key(key) else {
            return match value {
                // Deleting a key that cannot exist succeeds.
                None => Ok(()),
                Some(_) => Err(StoreError::Invalid(format!(
                    "meta key of {} bytes is longer than {MAX_META_KEY_LEN} bytes",
                    key.len()
                ))),
            };
        };
        self.write("set_meta", |txn, dbs| {
            match value {
                Some(value) => dbs.meta.put(txn, &db_key, value)?,
                None => drop(dbs.meta.delete(txn, &db_key)?),
            }
            Ok(())
        })
    }

    fn append_local(&mut self, payload: &[u8]) -> Result<u64, StoreError> {
        self.write("append_local", |txn, dbs| append_log(txn, dbs, KIND_LOCAL, payload))
    }

    fn unflushed(&self) -> Result<Vec<LogEntry>, StoreError> {
        self.read("unflushed", |txn, dbs| {
            read_log(txn, dbs, |kind, flushed| kind == LogKind::Local && flushed.is_none())
        })
    }

    fn commit_flush(&mut self, flush: &FlushRecord) -> Result<(), StoreError> {
        let record = encode_flush(flush);
        self.write("commit_flush", |txn, dbs| {
            let last = last_log_id(txn, dbs.meta)?;
            if flush.upto > last {
                return Err(StoreError::Invalid(format!(
                    "flush {} claims log entries up to {}, but the last log id is {last}",
                    flush.seq, flush.upto
                ))
                .into());
            }
            if dbs.flushes.get(txn, &flush.seq)?.is_some() {
                return Err(StoreError::Invalid(format!("own segment seq {} is already recorded", flush.seq)).into());
            }
            // Collect first: a database cannot be written while one of its cursors is open.
            let mut marked = Vec::new();
            for item in dbs.log.range(txn, &(..=flush.upto))? {
                let (id, value) = item?;
                if log_header(value)? == (LogKind::Local, None) {
                    marked.push((id, encode_log(KIND_LOCAL, Some(flush.seq), &value[LOG_HEADER..])));
                }
            }
            for (id, value) in &marked {
                dbs.log.put(txn, id, value)?;
            }
            dbs.flushes.put(txn, &flush.seq, &record)?;
            tracing::debug!(seq = flush.seq, upto = flush.upto, marked = marked.len(), "recorded own flush");
            Ok(())
        })
    }

    fn flushes(&self) -> Result<Vec<FlushRecord>, StoreError> {
        self.read("flushes", |txn, dbs| {
            let mut out = Vec::new();
            for item in dbs.flushes.iter(txn)? {
                let (seq, value) = item?;
                out.push(decode_flush(seq, value)?);
            }
            Ok(out)
        })
    }

    fn commit_remote(&mut self, applied: &AppliedSegment, payload: Option<&[u8]>) -> Result<Option<u64>, StoreError> {
        let key = applied_key(&applied.device, &applied.file_name);
        let record = encode_applied(applied);
        self.write("commit_remote", |txn, dbs| {
            let id = payload.map(|payload| append_log(txn, dbs, KIND_REMOTE, payload)).transpose()?;
            dbs.applied.put(txn, &key, &record)?;
            Ok(id)
        })
    }

    fn applied(&self) -> Result<Vec<AppliedSegment>, StoreError> {
        let mut out = self.read("applied", |txn, dbs| {
            let mut out = Vec::new();
            for item in dbs.applied.iter(txn)? {
                let (key, value) = item?;
                out.push(decode_applied(key, value)?);
            }
            Ok(out)
        })?;
        // The same order as the SQLite store: by device, then seq, then name.
        out.sort_by(|a, b| (a.device, a.seq_start, &a.file_name).cmp(&(b.device, b.seq_start, &b.file_name)));
        Ok(out)
    }

    fn forget_peer(&mut self, device: &DeviceId) -> Result<(), StoreError> {
        self.write("forget_peer", |txn, dbs| {
            let mut keys = Vec::new();
            for item in dbs.applied.prefix_iter(txn, device.as_bytes())? {
                let (key, _) = item?;
                keys.push(key.to_vec());
            }
            for key in &keys {
                dbs.applied.delete(txn, key)?;
            }
            Ok(())
        })
    }

    fn replace_applied(&mut self, device: &DeviceId, drop: &[String], keep: &AppliedSegment) -> Result<(), StoreError> {
        if keep.device != *device {
            return Err(StoreError::Invalid(format!("a record of {} given to replace {device}'s", keep.device)));
        }
        let record = encode_applied(keep);
        self.write("replace_applied", |txn, dbs| {
            for name in drop {
                dbs.applied.delete(txn, &applied_key(device, name))?;
            }
            dbs.applied.put(txn, &applied_key(device, &keep.file_name), &record)?;
            Ok(())
        })
    }

    fn forget_flushes_before(&mut self, seq: u64) -> Result<(), StoreError> {
        self.write("forget_flushes_before", |txn, dbs| {
            dbs.flushes.delete_range(txn, &(..seq))?;
            Ok(())
        })
    }

    fn load(&self) -> Result<StoredState, StoreError> {
        // One read transaction: the snapshot and the log are from the same commit.
        self.read("load", |txn, dbs| {
            let snapshot = dbs.snapshot.get(txn, SNAPSHOT_KEY)?.map(<[u8]>::to_vec);
            let log = read_log(txn, dbs, |_, _| true)?;
            Ok(StoredState { snapshot, log })
        })
    }

    fn load_with(&self, f: &mut LoadFn<'_>) -> Result<(), StoreError> {
        // The snapshot is lent straight from the memory map, inside the read transaction.
        self.read("load", |txn, dbs| {
            let log = read_log(txn, dbs, |_, _| true)?;
            f(dbs.snapshot.get(txn, SNAPSHOT_KEY)?, &log);
            Ok(())
        })
    }

    fn compact(&mut self, snapshot: &[u8]) -> Result<(), StoreError> {
        self.write("compact", |txn, dbs| {
            dbs.snapshot.put(txn, SNAPSHOT_KEY, snapshot)?;
            let mut dropped = Vec::new();
            for item in dbs.log.iter(txn)? {
                let (id, value) = item?;
                if log_header(value)? != (LogKind::Local, None) {
                    dropped.push(id);
                }
            }
            for id in &dropped {
                dbs.log.delete(txn, id)?;
            }
            tracing::debug!(snapshot_bytes = snapshot.len(), dropped = dropped.len(), "compacted the local store");
            Ok(())
        })
    }
}
