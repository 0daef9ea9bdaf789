//! [`Document`]: the read / write access the model is written against.

use std::sync::{Arc, Mutex};

use super::Replica;
use crate::Result;
use crate::engine::Engine;
use crate::manifest::now_ms;
use crate::value::Op;

/// Read and write access to a library document: implemented by [`Replica`] (persistent,
/// synced) and by a bare engine in a `Mutex` (benchmarks, imports).
pub trait Document {
    /// Runs `f` with read access to the engine.
    fn read<R>(&self, f: impl FnOnce(&dyn Engine) -> R) -> R;
    /// Applies a batch in one transaction; returns once it is durable.
    fn write(&self, ops: &[Op]) -> Result<()>;
    /// Wall-clock time for advisory dates written into records (ms since the Unix epoch).
    fn now_ms(&self) -> i64 {
        now_ms()
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
}

impl Document for Replica {
    fn read<R>(&self, f: impl FnOnce(&dyn Engine) -> R) -> R {
        Replica::read(self, f)
    }
    fn write(&self, ops: &[Op]) -> Result<()> {
        self.edit(ops)
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
    fn now_ms(&self) -> i64 {
        (**self).now_ms()
    }
}
