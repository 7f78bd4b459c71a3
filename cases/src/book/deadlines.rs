//! The ticker: fires what is due (deadlines, offer expiries) and re-sends what a crash left in
//! an outbox.

use std::sync::Arc;

use jiff::Timestamp;
use linkbus_bus::sync::read;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::error::ActError;
use super::handle::CaseBook;
use super::stored::Stored;
use crate::lifecycle;

impl CaseBook {
    /// Fires what is due and re-sends what a crash left in an outbox.
    pub(super) async fn tick_loop(self: Arc<Self>, shutdown: CancellationToken) -> Result<(), ActError> {
        let mut interval = tokio::time::interval(self.config.tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = interval.tick() => {}
            }
            let now = Timestamp::now();
            let (due, unsent): (Vec<String>, Vec<(Stored, u64)>) = {
                let cache = read(&self.cache);
                let index = read(&self.index);
                let unsent =
                    index.unsent().filter_map(|id| cache.get(id)).map(|c| (c.stored.clone(), c.revision)).collect();
                (index.due_by(now), unsent)
            };
            for (stored, revision) in unsent {
                self.flush(&stored.record.case_id, &stored, revision).await;
            }
            for case_id in due {
                let result = self
                    .transact(&case_id, |r| {
                        Ok(lifecycle::tick(r, now, &self.config.policy, &self.ladder, |already| {
                            self.next_volunteers(r, already, now)
                        }))
                    })
                    .await;
                if let Err(e) = result {
                    warn!(case_id, error = %e, "could not fire what is due; will retry");
                }
            }
        }
    }
}
