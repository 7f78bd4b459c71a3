//! The volunteer follower: [`follow_volunteers`] keeps the [`VolunteerIndex`] of a
//! [`RouterState`] in step with the volunteers KV bucket, which volunteers' apps write (each its
//! own key). A value that cannot be taken is dead-lettered on `deadletter.volunteers` and changes
//! nothing.
//!
//! [`VolunteerIndex`]: linkbus_matching::VolunteerIndex

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use async_nats::jetstream::{self, kv};
use linkbus_bus::nats;
use linkbus_bus::sync::write;
use linkbus_matching::RosterBuilder;
use linkbus_wire::VolunteerStatus;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::service::{RouterState, ServiceError, dead_letter_entry};

/// Follows the volunteers bucket into `state.volunteers` until `shutdown`: first every current
/// entry, gathered as the index keeps it and bulk-loaded in one go ([`RosterBuilder`]), then each
/// change as it happens, one at a time. `ready` is cancelled once the current entries are
/// loaded. A value that is not a valid [`VolunteerStatus`] (or whose id differs from its key, or
/// that would bring a 65th distinct skill) is dead-lettered on `deadletter.volunteers` and
/// changes nothing.
pub async fn follow_volunteers(
    js: jetstream::Context,
    state: Arc<RouterState>,
    ready: CancellationToken,
    shutdown: CancellationToken,
) -> Result<(), ServiceError> {
    let store = js.get_key_value(nats::BUCKET_VOLUNTEERS).await.map_err(|e| ServiceError::Volunteers(e.into()))?;
    let follower = VolunteerFollower { js: &js, state: &state, roster: RosterBuilder::new() };
    nats::follow_bucket_with(&store, ">", &ready, &shutdown, follower).await;
    Ok(())
}

/// Follows the volunteers bucket for [`follow_volunteers`].
struct VolunteerFollower<'a> {
    js: &'a jetstream::Context,
    state: &'a RouterState,
    /// The bucket's current content, gathered until it is all in.
    roster: RosterBuilder,
}

impl nats::BucketFollower for VolunteerFollower<'_> {
    async fn snapshot_entry(&mut self, entry: kv::Entry) {
        match entry.operation {
            kv::Operation::Delete | kv::Operation::Purge => {
                self.roster.remove(&entry.key);
            }
            kv::Operation::Put => {
                let taken =
                    parse_volunteer(&entry).and_then(|v| self.roster.put(&v).map_err(|e| ("invalid", e.to_string())));
                if let Err((code, reason)) = taken {
                    refuse_volunteer(self.js, self.state, &entry, code, &reason).await;
                    return;
                }
            }
        }
        self.state.stats.volunteer_updates.fetch_add(1, Ordering::Relaxed);
    }

    async fn caught_up(&mut self) {
        let started = Instant::now();
        let index = std::mem::take(&mut self.roster).build();
        let known = index.len();
        *write(&self.state.volunteers) = index;
        info!(volunteers = known, load_ms = started.elapsed().as_secs_f64() * 1e3, "volunteers bulk-loaded");
    }

    async fn apply(&mut self, entry: kv::Entry) {
        apply_volunteer(self.js, self.state, &entry).await;
    }
}

/// The volunteer a put entry holds, or why it is refused (code, reason).
fn parse_volunteer(entry: &kv::Entry) -> Result<VolunteerStatus, (&'static str, String)> {
    serde_json::from_slice::<VolunteerStatus>(&entry.value)
        .map_err(|e| ("malformed", e.to_string()))
        .and_then(|v| v.validate().map(|_| v).map_err(|e| ("invalid", e.to_string())))
        .and_then(|v| {
            if v.id == entry.key {
                Ok(v)
            } else {
                Err(("invalid", format!("id {:?} differs from key {:?}", v.id, entry.key)))
            }
        })
}

async fn apply_volunteer(js: &jetstream::Context, state: &RouterState, entry: &kv::Entry) {
    let stats = &state.stats;
    match entry.operation {
        kv::Operation::Delete | kv::Operation::Purge => {
            write(&state.volunteers).remove(&entry.key);
            stats.volunteer_updates.fetch_add(1, Ordering::Relaxed);
        }
        kv::Operation::Put => {
            let applied = parse_volunteer(entry)
                .and_then(|v| write(&state.volunteers).upsert(&v).map_err(|e| ("invalid", e.to_string())));
            match applied {
                Ok(()) => {
                    stats.volunteer_updates.fetch_add(1, Ordering::Relaxed);
                }
                Err((code, reason)) => refuse_volunteer(js, state, entry, code, &reason).await,
            }
        }
    }
}

/// Counts, logs and dead-letters a refused volunteer entry.
async fn refuse_volunteer(js: &jetstream::Context, state: &RouterState, entry: &kv::Entry, code: &str, reason: &str) {
    state.stats.volunteer_rejected.fetch_add(1, Ordering::Relaxed);
    warn!(key = %entry.key, reason, "volunteer update refused");
    match dead_letter_entry(js, nats::BUCKET_VOLUNTEERS, "volunteers", code, reason, entry).await {
        Ok(()) => state.metrics.deadletter_volunteers(code),
        Err(e) => {
            warn!(key = %entry.key, error = %e, "could not dead-letter a refused volunteer update")
        }
    }
}
