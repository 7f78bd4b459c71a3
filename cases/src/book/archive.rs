//! The hot set: which records the book keeps in memory. A closed or cancelled case leaves memory
//! [`BookConfig::closed_retention`](super::BookConfig) after its last change (once its messages
//! are sent); it stays in the bucket, in the listing order and in the departments' figures
//! ([`super::index`]), so it is still found by id, by a listing that asks for closed or
//! cancelled cases (or for archived ones), and by its source's id — read from the bucket then. A
//! change to it (a late rating that reopens it) brings it back into memory.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio_util::sync::CancellationToken;

use super::error::ActError;
use super::handle::CaseBook;
use super::stored::Stored;

/// How often, at most, the book looks for records to take out of memory.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

impl CaseBook {
    /// Whether a record is due to leave memory at `now`.
    pub(super) fn archivable(&self, stored: &Stored, now: Timestamp) -> bool {
        let r = &stored.record;
        !r.state.is_open() && stored.outbox.is_empty() && r.updated_at < now - self.retention()
    }

    fn retention(&self) -> SignedDuration {
        SignedDuration::try_from(self.config.closed_retention).unwrap_or(SignedDuration::MAX)
    }

    /// Takes out of memory the records due to leave at `now`; how many.
    pub(super) fn archive_due(&self, now: Timestamp) -> usize {
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        let mut index = self.index.write().unwrap_or_else(|p| p.into_inner());
        let mut archived = 0;
        for id in index.done_before(now - self.retention()) {
            if !cache.get(&id).is_some_and(|c| self.archivable(&c.stored, now)) {
                continue;
            }
            if let Some(cached) = cache.remove(&id) {
                index.archive(&cached.stored, cached.revision);
                archived += 1;
            }
        }
        archived
    }

    /// Sweeps the hot set until `shutdown`: every minute, or more often for a shorter retention.
    pub(super) async fn archive_loop(self: Arc<Self>, shutdown: CancellationToken) -> Result<(), ActError> {
        let every = (self.config.closed_retention / 2).clamp(self.config.tick, SWEEP_EVERY);
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = interval.tick() => {}
            }
            let archived = self.archive_due(Timestamp::now());
            if archived > 0 {
                tracing::debug!(archived, "closed cases left memory");
            }
        }
    }
}
