//! [`Document`]: the read / write access the model is written against, and [`Group`]: many
//! writes made durable as one.

use std::cell::{Cell, RefCell};
use std::sync::{Arc, Mutex};

use super::Replica;
use crate::engine::Engine;
use crate::manifest::now_ms;
use crate::value::Op;
use crate::{Error, Result};

/// Read and write access to a library document: implemented by [`Replica`] (persistent,
/// synced) and by a bare engine in a `Mutex` (benchmarks, imports).
pub trait Document {
    /// Runs `f` with read access to the engine.
    fn read<R>(&self, f: impl FnOnce(&dyn Engine) -> R) -> R;
    /// Applies a batch in one transaction; returns once it is durable.
    fn write(&self, ops: &[Op]) -> Result<()>;
    /// Runs `f` on a [`Group`]: its writes are applied at once (later reads in `f` see them)
    /// and made durable together, as one local change and one store commit, when `f` returns
    /// `Ok` — a burst of edits is one commit (and, on a store that syncs, one `fsync`), not one
    /// each. When `f` fails, or one of its writes did, nothing of the group is kept: a replica
    /// returns to its stored state, a bare engine to a snapshot taken before `f`. Other users
    /// of the document wait until `f` returns, so keep groups to bursts (hundreds of edits,
    /// not a whole walk of the disk). Groups nest: an inner group is part of the outer one.
    fn group<R, E: From<Error>>(&self, f: impl FnOnce(&Group<'_>) -> Result<R, E>) -> Result<R, E>;
    /// Wall-clock time for advisory dates written into records (ms since the Unix epoch).
    fn now_ms(&self) -> i64 {
        now_ms()
    }
}

/// The [`Document`] a [`Document::group`] runs on: the engine of the document underneath,
/// written directly, with the local change taken once, when the group ends.
pub struct Group<'a> {
    engine: RefCell<&'a mut dyn Engine>,
    clock: &'a dyn Fn() -> i64,
    writes: Cell<usize>,
    ops: Cell<usize>,
    failed: Cell<bool>,
}

impl std::fmt::Debug for Group<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group").field("writes", &self.writes.get()).field("ops", &self.ops.get()).finish()
    }
}

/// What [`Group::run`] did: `f`'s result, and whether the engine may have been written.
pub struct GroupRun<R, E> {
    /// `f`'s result; an error when a write of the group failed although `f` went on.
    pub result: Result<R, E>,
    /// Whether any write reached the engine (successful or not).
    pub wrote: bool,
}

impl<'a> Group<'a> {
    /// Runs `f` on a group over `engine`, for implementors of [`Document::group`]: the caller
    /// takes the local change when `result` is `Ok`, and undoes the writes when it is an
    /// error and `wrote` is set.
    pub fn run<R, E: From<Error>>(
        engine: &'a mut dyn Engine,
        clock: &'a dyn Fn() -> i64,
        f: impl FnOnce(&Group<'a>) -> Result<R, E>,
    ) -> GroupRun<R, E> {
        let group = Group {
            engine: RefCell::new(engine),
            clock,
            writes: Cell::new(0),
            ops: Cell::new(0),
            failed: Cell::new(false),
        };
        let result = match f(&group) {
            Ok(_) if group.failed.get() => {
                Err(E::from(Error::Invalid("a write of this group failed; the group's edits were undone".into())))
            }
            other => other,
        };
        GroupRun { result, wrote: group.writes.get() > 0 }
    }

    /// Writes applied so far (each [`Document::write`] call counts once).
    pub fn writes(&self) -> usize {
        self.writes.get()
    }

    /// Operations applied so far.
    pub fn ops(&self) -> usize {
        self.ops.get()
    }
}

impl Document for Group<'_> {
    fn read<R>(&self, f: impl FnOnce(&dyn Engine) -> R) -> R {
        f(&**self.engine.borrow())
    }
    fn write(&self, ops: &[Op]) -> Result<()> {
        if self.failed.get() {
            return Err(Error::Invalid("an earlier write of this group failed".into()));
        }
        if ops.is_empty() {
            return Ok(());
        }
        self.writes.set(self.writes.get() + 1);
        if let Err(e) = self.engine.borrow_mut().write(ops) {
            self.failed.set(true);
            return Err(e.into());
        }
        self.ops.set(self.ops.get() + ops.len());
        Ok(())
    }
    fn group<R, E: From<Error>>(&self, f: impl FnOnce(&Group<'_>) -> Result<R, E>) -> Result<R, E> {
        f(self)
    }
    fn now_ms(&self) -> i64 {
        (self.clock)()
    }
}

/// Runs a group on a bare engine: a snapshot taken before `f` is what a failed group returns
/// to (nothing else keeps the engine's state), and the local change of a successful one is
/// handed to `keep` (a bare engine drops it; an embedding may flush it itself).
pub fn group_on_engine<R, E: From<Error>>(
    engine: &mut Box<dyn Engine>,
    f: impl FnOnce(&Group<'_>) -> Result<R, E>,
    keep: impl FnOnce(Vec<u8>),
) -> Result<R, E> {
    let before = engine.snapshot().map_err(|e| E::from(e.into()))?;
    let clock = now_ms;
    let run = Group::run(engine.as_mut(), &clock, f);
    match run.result {
        Ok(r) => {
            if let Some(change) = engine.take_local_changes().map_err(|e| E::from(e.into()))? {
                keep(change);
            }
            Ok(r)
        }
        Err(e) => {
            if run.wrote {
                let mut fresh = engine.new_empty();
                fresh.load_snapshot(&before).map_err(|e| E::from(e.into()))?;
                *engine = fresh;
            }
            Err(e)
        }
    }
}

impl Document for Mutex<Box<dyn Engine>> {
    fn read<R>(&self, f: impl FnOnce(&dyn Engine) -> R) -> R {
        let guard = self.lock().unwrap_or_else(|e| e.into_inner());
        f(guard.as_ref())
    }
    fn write(&self, ops: &[Op]) -> Result<()> {
        let mut guard = self.lock().unwrap_or_else(|e| e.into_inner());
        guard.write(ops)?;
        // Nothing syncs a bare engine: drop the local-change buffer so it does not grow.
        guard.take_local_changes()?;
        Ok(())
    }
    fn group<R, E: From<Error>>(&self, f: impl FnOnce(&Group<'_>) -> Result<R, E>) -> Result<R, E> {
        let mut guard = self.lock().unwrap_or_else(|e| e.into_inner());
        // Nothing syncs a bare engine: its local change is dropped.
        group_on_engine(&mut guard, f, drop)
    }
}

impl Document for Replica {
    fn read<R>(&self, f: impl FnOnce(&dyn Engine) -> R) -> R {
        Replica::read(self, f)
    }
    fn write(&self, ops: &[Op]) -> Result<()> {
        self.edit(ops)
    }
    fn group<R, E: From<Error>>(&self, f: impl FnOnce(&Group<'_>) -> Result<R, E>) -> Result<R, E> {
        self.edit_group(f)
    }
    fn now_ms(&self) -> i64 {
        self.config.clock.now_ms()
    }
}

impl<D: Document> Document for Arc<D> {
    fn read<R>(&self, f: impl FnOnce(&dyn Engine) -> R) -> R {
        (**self).read(f)
    }
    fn write(&self, ops: &[Op]) -> Result<()> {
        (**self).write(ops)
    }
    fn group<R, E: From<Error>>(&self, f: impl FnOnce(&Group<'_>) -> Result<R, E>) -> Result<R, E> {
        (**self).group(f)
    }
    fn now_ms(&self) -> i64 {
        (**self).now_ms()
    }
}

impl<D: Document + ?Sized> Document for &D {
    fn read<R>(&self, f: impl FnOnce(&dyn Engine) -> R) -> R {
        (**self).read(f)
    }
    fn write(&self, ops: &[Op]) -> Result<()> {
        (**self).write(ops)
    }
    fn group<R, E: From<Error>>(&self, f: impl FnOnce(&Group<'_>) -> Result<R, E>) -> Result<R, E> {
        (**self).group(f)
    }
    fn now_ms(&self) -> i64 {
        (**self).now_ms()
    }
}
