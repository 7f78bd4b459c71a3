//! The volunteer follower: [`follow_volunteers`] keeps the [`VolunteerIndex`] of a
//! [`RouterState`] in step with the volunteers KV bucket, which volunteers' apps write (each its
//! own key), and refuses what it cannot take:
//!
//! - a value that is not a valid [`VolunteerStatus`], or whose id is not its key, is
//!   dead-lettered on `deadletter.volunteers` with its reason (counted in
//!   `linkbus_deadletters_total{stage="volunteers"}`) and changes nothing: the volunteer's last
//!   good status stays in force, and is put back in the bucket over the refused value (only if
//!   nothing newer came meanwhile), so a router that starts later finds it too;
//! - skills no category of the region calls for are left out of the index: no case can ask for
//!   them, and they cannot use up its 64 distinct skills (the rest of the status is taken).
//!
//! [`VolunteerIndex`]: linkbus_matching::VolunteerIndex

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use linkbus_bus::nats;
use linkbus_bus::sync::{read, write};
use linkbus_matching::{RosterBuilder, Router};
use linkbus_wire::{Location, VolunteerStatus};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::service::{RouterState, ServiceError, dead_letter_entry};
use crate::volunteer_snapshot;

/// Refused values whose good status waits to be put back, at most (more are left refused in the
/// bucket, and logged; the running router keeps the good status all the same).
const RESTORE_QUEUE: usize = 4096;
/// Least time between two rounds of putting good statuses back: each reads the whole index, so
/// a flood of bad values costs one read a second, not one per value.
const RESTORE_EVERY: Duration = Duration::from_secs(1);
/// Distinct skill names logged as left out of the index, at most (one line each).
const IGNORED_LOGGED: usize = 64;

/// Follows the volunteers bucket into `state.volunteers` until `shutdown`: first every current
/// entry, gathered as the index keeps it and bulk-loaded in one go ([`RosterBuilder`]), then each
/// change as it happens, one at a time. The current entries are those of the saved snapshot
/// ([`volunteer_snapshot::load`]) with the bucket's changes since on top, when there is a good
/// snapshot; else the whole bucket. `ready` is cancelled once the current entries are loaded.
/// What it refuses, and how the last good status is kept, is in the [module docs](self).
pub async fn follow_volunteers(
    js: jetstream::Context,
    state: Arc<RouterState>,
    ready: CancellationToken,
    shutdown: CancellationToken,
) -> Result<(), ServiceError> {
    let store = js.get_key_value(nats::BUCKET_VOLUNTEERS).await.map_err(|e| ServiceError::Volunteers(e.into()))?;
    let mut skills = RegionSkills::default();
    skills.current(&state.router());
    let (roster, after) = volunteer_snapshot::load(&js, &store, &skills.sorted()).await.unwrap_or_default();
    let (restore, wanted) = mpsc::channel(RESTORE_QUEUE);
    let restorer = tokio::spawn(put_back_good_statuses(store.clone(), state.clone(), wanted, shutdown.clone()));
    let follower = VolunteerFollower { js: &js, state: &state, roster, last: after, skills, restore };
    nats::follow_bucket_with(&store, ">", after, &ready, &shutdown, follower).await;
    // The follower (and with it the sender) is gone: the restorer finishes its round and ends.
    let _ = restorer.await;
    Ok(())
}

/// Follows the volunteers bucket for [`follow_volunteers`].
struct VolunteerFollower<'a> {
    js: &'a jetstream::Context,
    state: &'a RouterState,
    /// The bucket's current content, gathered until it is all in.
    roster: RosterBuilder,
    /// The revision of the last entry gathered (or of the snapshot started from).
    last: u64,
    /// The skills the region in force calls for.
    skills: RegionSkills,
    /// Refused values over a good status: (key, refused revision), for the restorer.
    restore: mpsc::Sender<(String, u64)>,
}

impl nats::BucketFollower for VolunteerFollower<'_> {
    async fn snapshot_entry(&mut self, entry: kv::Entry) {
        self.last = entry.revision;
        match entry.operation {
            kv::Operation::Delete | kv::Operation::Purge => {
                self.roster.remove(&entry.key);
            }
            kv::Operation::Put => {
                let taken = self.take(&entry).and_then(|v| self.roster.put(&v).map_err(|e| ("invalid", e.to_string())));
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
        let skills = (!self.skills.changed).then(|| self.skills.sorted());
        self.state.volunteers_followed.loaded(self.last, skills);
        info!(volunteers = known, load_ms = started.elapsed().as_secs_f64() * 1e3, "volunteers bulk-loaded");
    }

    async fn apply(&mut self, entry: kv::Entry) {
        let state = self.state;
        let revision = entry.revision;
        match entry.operation {
            kv::Operation::Delete | kv::Operation::Purge => {
                write(&state.volunteers).remove(&entry.key);
                state.stats.volunteer_updates.fetch_add(1, Ordering::Relaxed);
            }
            kv::Operation::Put => {
                let applied = self
                    .take(&entry)
                    .and_then(|v| write(&state.volunteers).upsert(&v).map_err(|e| ("invalid", e.to_string())));
                match applied {
                    Ok(()) => {
                        state.stats.volunteer_updates.fetch_add(1, Ordering::Relaxed);
                    }
                    Err((code, reason)) => {
                        refuse_volunteer(self.js, state, &entry, code, &reason).await;
                        self.put_back_later(&entry);
                    }
                }
            }
        }
        if self.skills.changed {
            state.volunteers_followed.mixed();
        }
        state.volunteers_followed.took(revision);
    }
}

impl VolunteerFollower<'_> {
    /// The volunteer a put entry holds, with only the skills the region calls for, or why it is
    /// refused (code, reason).
    fn take(&mut self, entry: &kv::Entry) -> Result<VolunteerStatus, (&'static str, String)> {
        let mut v = parse_volunteer(entry)?;
        let skills = self.skills.current(&self.state.router());
        if v.skills.iter().any(|s| !skills.contains(s)) {
            self.skills.log_ignored(&v, &skills);
            v.skills.retain(|s| skills.contains(s));
        }
        Ok(v)
    }

    /// Asks the restorer to put the volunteer's good status, if the index has one, back over
    /// the refused `entry`.
    fn put_back_later(&self, entry: &kv::Entry) {
        if let Err(e) = self.restore.try_send((entry.key.clone(), entry.revision)) {
            warn!(key = %entry.key, error = %e, "cannot queue the good status to be put back; the refused value stays");
        }
    }
}

/// The skills the region in force calls for, recomputed when a region reload swaps the router.
#[derive(Default)]
struct RegionSkills {
    /// The router they were read from.
    router: Option<Arc<Router>>,
    names: Arc<HashSet<String>>,
    /// Skill names already logged as left out.
    logged: HashSet<String>,
    /// Whether a region calling for other skills took over since the first.
    changed: bool,
}

impl RegionSkills {
    fn current(&mut self, router: &Arc<Router>) -> Arc<HashSet<String>> {
        if !self.router.as_ref().is_some_and(|r| Arc::ptr_eq(r, router)) {
            let names: HashSet<String> = router.volunteer_skills().map(str::to_owned).collect();
            self.changed |= self.router.is_some() && names != *self.names;
            self.names = Arc::new(names);
            self.router = Some(router.clone());
        }
        self.names.clone()
    }

    /// The skills last read by [`RegionSkills::current`] (those the entries since were taken
    /// with), sorted.
    fn sorted(&self) -> Vec<String> {
        let mut names: Vec<String> = self.names.iter().cloned().collect();
        names.sort_unstable();
        names
    }

    /// Logs, once per skill name (the first [`IGNORED_LOGGED`] of them), the skills of `v` that
    /// the index leaves out.
    fn log_ignored(&mut self, v: &VolunteerStatus, skills: &HashSet<String>) {
        for skill in v.skills.iter().filter(|s| !skills.contains(*s)) {
            if self.logged.len() < IGNORED_LOGGED && !self.logged.contains(skill) {
                self.logged.insert(skill.clone());
                info!(key = %v.id, skill, "a skill no category of the region calls for is left out of the volunteer index");
            }
        }
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

/// Puts volunteers' good statuses, as the index holds them, back over the values refused after
/// them, until the follower is gone or `shutdown` (a volunteer the index does not know has
/// none: its refused value stays). A value written meanwhile wins: the put is conditional on
/// the refused revision being the last ([`kv::Store::update`]). Rounds are at least
/// [`RESTORE_EVERY`] apart, each gathering every request waiting.
async fn put_back_good_statuses(
    store: kv::Store,
    state: Arc<RouterState>,
    mut wanted: mpsc::Receiver<(String, u64)>,
    shutdown: CancellationToken,
) {
    while let Some((key, revision)) = wanted.recv().await {
        let mut round = HashMap::from([(key, revision)]);
        while let Ok((key, revision)) = wanted.try_recv() {
            round.insert(key, revision);
        }
        // One read of the index for the whole round (the index lists, it does not look up).
        let good: Vec<VolunteerStatus> = read(&state.volunteers)
            .positions()
            .into_iter()
            .filter(|p| round.contains_key(&p.id))
            .map(|p| VolunteerStatus {
                id: p.id,
                location: Location { lon: p.lon, lat: p.lat },
                available: p.available,
                skills: p.skills,
            })
            .collect();
        for v in good {
            let revision = round[&v.id];
            let value = match serde_json::to_vec(&v) {
                Ok(value) => Bytes::from(value),
                Err(e) => {
                    warn!(key = %v.id, error = %e, "cannot encode a good volunteer status");
                    continue;
                }
            };
            match store.update(&v.id, value, revision).await {
                Ok(_) => info!(key = %v.id, refused = revision, "the last good volunteer status put back"),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                    debug!(key = %v.id, "a newer value came: the good status is not put back")
                }
                Err(e) => warn!(key = %v.id, error = %e, "cannot put the good volunteer status back"),
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(RESTORE_EVERY) => {}
        }
    }
}
