//! [`Batch`]: many model edits committed as one engine transaction and one durable store
//! commit (an index run writes thousands of records; one commit per record would spend most
//! of its time committing).

use std::sync::Mutex;

use onefolder_core::{Document, Engine, Op};

use crate::{Library, Result};

/// A [`Document`] that reads the document underneath and collects writes until
/// [`Library::commit`]. Reads do **not** see the collected writes: within one batch, write each
/// record at most once, or read it before the batch. Dropping a batch with collected writes
/// discards them (with a warning).
#[derive(Debug)]
pub struct Batch<'d, D: Document> {
    doc: &'d D,
    ops: Mutex<Vec<Op>>,
}

impl<D: Document> Document for Batch<'_, D> {
    fn read<R>(&self, f: impl FnOnce(&dyn Engine) -> R) -> R {
        self.doc.read(f)
    }
    fn write(&self, ops: &[Op]) -> onefolder_core::Result<()> {
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(ops);
        Ok(())
    }
    fn now_ms(&self) -> i64 {
        self.doc.now_ms()
    }
}

impl<D: Document> Drop for Batch<'_, D> {
    fn drop(&mut self) {
        let left = self.ops.get_mut().map_or(0, |ops| ops.len());
        if left > 0 {
            tracing::warn!(ops = left, "a batch of edits was dropped without a commit; they are discarded");
        }
    }
}

impl<D: Document> Library<D> {
    /// A library whose edits are collected and committed together by [`Library::commit`].
    pub fn batch(&self) -> Library<Batch<'_, D>> {
        Library::new(Batch { doc: self.doc(), ops: Mutex::new(Vec::new()) })
    }

    /// Runs `edits` on a batch and commits it as one edit; nothing is written when `edits`
    /// fails.
    pub fn in_batch<R>(&self, edits: impl FnOnce(&Library<Batch<'_, D>>) -> Result<R>) -> Result<R> {
        let batch = self.batch();
        match edits(&batch) {
            Ok(r) => {
                batch.commit()?;
                Ok(r)
            }
            Err(e) => {
                batch.discard();
                Err(e)
            }
        }
    }
}

impl<D: Document> Library<Batch<'_, D>> {
    /// Operations collected and not committed yet.
    pub fn pending(&self) -> usize {
        self.doc().ops.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Writes the collected operations as one edit of the document underneath (durable when
    /// it returns, on a replica); returns how many there were. The batch stays usable.
    pub fn commit(&self) -> Result<usize> {
        let ops = std::mem::take(&mut *self.doc().ops.lock().unwrap_or_else(|e| e.into_inner()));
        if !ops.is_empty() {
            self.doc().doc.write(&ops)?;
        }
        Ok(ops.len())
    }

    /// Forgets the collected operations.
    pub fn discard(&self) {
        self.doc().ops.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}
