//! [`crate::FolderTransport`]'s change hints: a debounced `notify` watcher on the root.

use std::fs;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, EventKind, MetadataKind, ModifyKind};
use notify::{Config, Event, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventHandler, DebounceEventResult, RecommendedCache};
use onefolder_core::names::{MANIFEST_FILE, is_temporary};
use onefolder_core::{ChangeHint, ChangeStream, DeviceId, TransportError};
use tokio::sync::mpsc;

use crate::DATABASE_DIR;

/// Pending hints beyond this are dropped: one pending hint already wakes the sync loop.
const CHANNEL_CAPACITY: usize = 64;

/// Starts watching `root` (blocking: creates `root/database` and registers the watches).
/// `Ok(None)` when the platform watcher cannot be set up; the caller then polls.
pub(crate) fn start(root: &Path, debounce: Duration) -> Result<Option<ChangeStream>, TransportError> {
    crate::fsops::ensure_dir(&root.join(DATABASE_DIR))?;
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    let mut roots = vec![root.to_path_buf()];
    // Some back ends (FSEvents) report canonical paths (`/private/var/…` for `/var/…`).
    if let Ok(canonical) = fs::canonicalize(root) {
        if canonical != root {
            roots.push(canonical);
        }
    }
    let handler = HintSender { tx, roots };
    // Never follow links while adding watches: a linked folder may lead outside the library.
    let config = Config::default().with_follow_symlinks(false);
    let debouncer = notify_debouncer_full::new_debouncer_opt::<_, RecommendedWatcher, RecommendedCache>(
        debounce,
        None,
        handler,
        RecommendedCache::new(),
        config,
    );
    let mut debouncer = match debouncer {
        Ok(debouncer) => debouncer,
        Err(e) => {
            tracing::warn!(error = %e, "cannot create a file watcher; polling only");
            return Ok(None);
        }
    };
    if let Err(e) = debouncer.watch(root, RecursiveMode::Recursive) {
        tracing::warn!(root = %root.display(), error = %e, "cannot watch the library folder; polling only");
        return Ok(None);
    }
    Ok(Some(ChangeStream::new(rx, Box::new(debouncer))))
}

/// Turns debounced watcher events into [`ChangeHint`]s.
struct HintSender {
    tx: mpsc::Sender<ChangeHint>,
    /// The watched root as given and canonicalized: event paths start with one of them.
    roots: Vec<PathBuf>,
}

impl DebounceEventHandler for HintSender {
    fn handle_event(&mut self, result: DebounceEventResult) {
        let mut hints: Vec<Option<DeviceId>> = Vec::new();
        let mut add = |device: Option<DeviceId>| {
            if !hints.contains(&device) {
                hints.push(device);
            }
        };
        match result {
            Ok(events) => {
                for event in &events {
                    self.hints_for(event, &mut add);
                }
            }
            Err(errors) => {
                // E.g. the watch limit was reached while adding a new folder: changes there may
                // be missed until the next poll; wake the loop for a full pass now.
                for e in errors {
                    tracing::warn!(error = %e, "file watcher error; changes may be noticed late");
                }
                add(None);
            }
        }
        for device in hints {
            match self.tx.try_send(ChangeHint { device }) {
                // Full: a wake-up is already pending, which is all a hint is for.
                Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
    }
}

impl HintSender {
    /// The hints one event calls for (none for reads and temporary files).
    fn hints_for(&self, event: &Event, add: &mut impl FnMut(Option<DeviceId>)) {
        if event.need_rescan() {
            // The back end dropped events: anything may have changed.
            add(None);
            return;
        }
        match event.kind {
            // Reading a file (ours included) must not wake the reader again.
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => {}
            EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)) => return,
            _ => {}
        }
        if event.paths.is_empty() {
            add(None);
        }
        for path in &event.paths {
            if let Some(device) = self.classify(path) {
                add(device);
            }
        }
    }

    /// What a changed path means: `None` to ignore it, `Some(device)` for a hint about that
    /// device folder (`Some(None)`: about no folder in particular).
    fn classify(&self, path: &Path) -> Option<Option<DeviceId>> {
        let Some(rel) = self.roots.iter().find_map(|root| path.strip_prefix(root).ok()) else {
            // A path form we do not recognise: a spurious hint is harmless, a lost one is not.
            return Some(None);
        };
        let mut parts = rel.components().filter_map(|c| match c {
            Component::Normal(part) => Some(part.to_str()),
            _ => None,
        });
        match parts.next() {
            // The root itself (removed, moved back).
            None => Some(None),
            Some(Some(top)) if top.eq_ignore_ascii_case(MANIFEST_FILE) => Some(None),
            Some(Some(top)) if top.eq_ignore_ascii_case(DATABASE_DIR) => match parts.next() {
                // The database folder itself.
                None => Some(None),
                Some(Some(folder)) if !folder.starts_with('.') => match parts.next() {
                    // The device folder itself: a new folder may hold files the watcher missed.
                    None => Some(folder.parse().ok()),
                    // A file in it, unless a temporary one.
                    Some(Some(file)) if parts.next().is_none() && !is_temporary(file) => Some(folder.parse().ok()),
                    // Temporary files, non-UTF-8 names, anything deeper: never listed.
                    _ => None,
                },
                _ => None,
            },
            // `backups/`, hidden and temporary files of the root: not the sync loop's business.
            _ => None,
        }
    }
}
