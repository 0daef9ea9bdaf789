//! [`Library::in_batch`]: many model edits as one local change and one durable store commit
//! (an index run writes thousands of records; one commit per record would spend most of its
//! time committing, and on a store that syncs every commit, one `fsync` per edit).

use onefolder_core::{Document, Group};

use crate::{Library, Result};

/// The library [`Library::in_batch`] hands to its closure: a library on the
/// [`Group`] of the document underneath. Its reads see its own writes.
pub type Batch<'g, 'a> = Library<&'g Group<'a>>;

impl<D: Document> Library<D> {
    /// Runs `edits` on a batch ([`Document::group`]): every edit is applied at once, so later
    /// reads and checks in `edits` see it, and the whole batch becomes durable as one local
    /// change when `edits` returns `Ok` (on a replica: acknowledged only then). When `edits`
    /// fails, nothing of it is kept. Other users of the document wait while `edits` runs: keep
    /// a batch to a burst (the CLI's index run commits every 500 files), and inside `edits`
    /// use only the batch — on a replica, a call on the library it came from would wait for
    /// the batch to end, which never comes.
    pub fn in_batch<R>(&self, edits: impl FnOnce(&Batch<'_, '_>) -> Result<R>) -> Result<R> {
        self.doc().group(|group| {
            // The batch starts from this library's kept tag tree and hands it back.
            let batch = Library::with_memo(group, self.take_memo());
            let result = edits(&batch)?;
            self.put_memo(batch.into_memo());
            Ok(result)
        })
    }
}

impl Batch<'_, '_> {
    /// Operations the batch has written so far.
    pub fn pending(&self) -> usize {
        self.doc().ops()
    }
}
