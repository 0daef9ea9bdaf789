//! The long-running loop: debounced flushes, change hints, polling.

use std::collections::BTreeSet;
use std::future::Future;

use tokio::time::Instant;

use super::{Replica, StatusEvent, SyncReport};
use crate::Result;
use crate::ids::DeviceId;

impl Replica {
    /// Flushes own changes, applies everything new from peers, then tidies the own folder
    /// ([`Replica::tidy_own_folder`]).
    pub async fn sync_once(&self) -> Result<SyncReport> {
        let flushed = self.flush().await?;
        let ingest = self.ingest().await?;
        if let Err(e) = self.tidy_own_folder().await {
            // The next sync tries again; nothing it would delete is needed meanwhile.
            tracing::warn!("tidying the own folder failed: {e}");
        }
        Ok(SyncReport { flushed, ingest })
    }

    /// When the run loop flushes next: after the debounce (or the longest delay), and never
    /// before a failed flush's backoff has passed.
    pub(super) fn flush_deadline(&self) -> Option<Instant> {
        let st = self.lock();
        if st.pending_edits == 0 && st.prepared.is_none() && !st.republish_due {
            return None;
        }
        let quiet = st.last_edit.map(|t| t + self.config.debounce);
        let max = st.first_pending.map(|t| t + self.config.max_delay);
        let due = match (quiet, max) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or_else(Instant::now),
        };
        Some(st.flush_failure.as_ref().map_or(due, |f| due.max(f.retry_at)))
    }

    /// When the run loop may ingest again after failed passes (`None`: any time).
    fn ingest_backoff(&self) -> Option<Instant> {
        self.lock().ingest_failure.as_ref().map(|f| f.retry_at)
    }

    /// The long-running loop: flushes after the debounce, ingests on change hints and on the
    /// polling interval, until `shutdown` completes; then flushes once more. Errors of one
    /// pass are reported as [`StatusEvent::Error`] and retried; they never end the loop.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<()> {
        tokio::pin!(shutdown);
        let mut hints = match self.transport.changes().await {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "change hints unavailable; polling only");
                None
            }
        };
        let mut poll = tokio::time::interval(self.config.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Open has just checked the own folder.
        let mut own_checked = Instant::now();
        loop {
            let deadline = self.flush_deadline();
            let backoff = self.ingest_backoff();
            let own = self.device();
            tokio::select! {
                _ = &mut shutdown => break,
                hint = next_hint(&mut hints) => {
                    match hint {
                        None => {
                            tracing::warn!("change hints stopped; polling only");
                            hints = None;
                        }
                        Some(hint) => {
                            // Coalesce a burst of hints into one pass over what they name.
                            let mut named = BTreeSet::new();
                            let mut everything = false;
                            for hint in std::iter::once(hint).chain(std::iter::from_fn(|| hints.as_mut()?.try_next())) {
                                match hint.device {
                                    Some(device) if device == own => {}
                                    Some(device) => {
                                        named.insert(device);
                                    }
                                    None => everything = true,
                                }
                            }
                            // While ingest backs off, the retry below covers the hint.
                            if backoff.is_none() {
                                if everything {
                                    self.report(self.ingest().await.map(drop));
                                } else if !named.is_empty() {
                                    let named: Vec<DeviceId> = named.into_iter().collect();
                                    self.report(self.ingest_from(&named).await.map(drop));
                                }
                            }
                        }
                    }
                }
                _ = poll.tick(), if backoff.is_none() => {
                    self.report(self.ingest().await.map(drop));
                    self.write_device_info().await;
                    if own_checked.elapsed() >= self.config.own_check_every {
                        own_checked = Instant::now();
                        self.report(self.check_own_folder().await.map(drop));
                        self.report(self.tidy_own_folder().await.map(drop));
                    }
                }
                _ = sleep_until_opt(backoff) => {
                    self.report(self.ingest().await.map(drop));
                }
                _ = sleep_until_opt(deadline) => {
                    self.report(self.flush().await.map(drop));
                }
                _ = self.edited.notified() => {}
            }
        }
        self.flush().await?;
        Ok(())
    }

    /// Reports a failed pass (a warning and an [`StatusEvent::Error`]); the pass has already
    /// scheduled its retry.
    pub(super) fn report(&self, result: Result<()>) {
        if let Err(e) = result {
            tracing::warn!(error = %e, "sync pass failed; will retry");
            let _ = self.events.send(StatusEvent::Error { message: e.to_string() });
        }
    }
}

async fn next_hint(hints: &mut Option<crate::transport::ChangeStream>) -> Option<crate::transport::ChangeHint> {
    match hints {
        Some(stream) => stream.next().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
