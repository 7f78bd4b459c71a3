//! The opening loop: a record for every routed case, merged into an open case of the same
//! incident if there is one.
//!
//! Merging is safe across replicas: each replica opens some of an incident's reports, and every
//! report's check, after its own record is stored, first waits for this replica's copy of the
//! bucket to hold every record stored before it (so of two reports opened at once, the later
//! one's check sees the earlier). A check that finds duplicates then decides under a lock every
//! replica shares (a key in the KV bucket [`BUCKET_MERGE_LOCK`]), on the bucket as it is once the
//! lock is held: one decision at a time, each seeing the merges before it, so an incident has
//! one primary ([`lifecycle::primary`]).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv};
use bytes::Bytes;
use jiff::Timestamp;
use linkbus_bus::nats::{self, DeadLetter};
use linkbus_bus::pull;
use linkbus_bus::sync::read;
use linkbus_wire::subjects;
use linkbus_wire::{CaseRecord, CloudEvent, RoutedCase, TraceContext};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::error::{ActError, store_err};
use super::handle::CaseBook;
use super::stored::{Stored, key};
use crate::lifecycle;

/// Records the case book opens at once ([`pull::Limits::in_flight`]; as many are read ahead).
/// Opening them concurrently is safe: each `case.<id>.routed` creates its record with a
/// create-if-absent (a second delivery of the same case finds it and changes nothing), and the
/// duplicate check that follows runs one at a time (`merging`) after the record is cached.
/// Measured (`ops/scripts/bench`, release): at 64 the last of 250,000 records of a 50 k/s run
/// was stored as the departments got their copies (58.5 s); in a debug build the flood fault
/// test was faster one at a time (38 s vs 51–65 s), for a cause not found.
pub const OPEN_IN_FLIGHT: usize = 64;

/// KV bucket holding the merge lock (one key, [`LOCK_KEY`]) every replica's case book shares.
pub const BUCKET_MERGE_LOCK: &str = "linkbus_case_merging";
/// The lock's key.
const LOCK_KEY: &str = "lock";
/// How long a lock is kept at most: the bucket's `max_age`, so the lock of a replica that died
/// holding it goes away. A decision takes milliseconds.
const LOCK_LEASE: Duration = Duration::from_secs(10);
/// How long a check waits for the lock, or for the follower to catch up, before the routed case
/// is left for a retry.
const MERGE_WAIT: Duration = Duration::from_secs(30);
/// Between two tries at a lock another replica holds.
const LOCK_RETRY: Duration = Duration::from_millis(2);

impl CaseBook {
    /// Opens a record for every routed case ([`OPEN_IN_FLIGHT`] at once), merging it into an open
    /// case of the same incident.
    pub(super) async fn open_routed(self: Arc<Self>, shutdown: CancellationToken) -> Result<(), ActError> {
        let stream = self.js.get_stream(nats::STREAM_CASES).await.map_err(store_err)?;
        let consumer: consumer::PullConsumer = stream
            .get_or_create_consumer(
                &self.config.durable,
                consumer::pull::Config {
                    durable_name: Some(self.config.durable.clone()),
                    description: Some("linkbus case book: opens a record per routed case".into()),
                    filter_subject: subjects::case_event("*", "routed"),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: Duration::from_secs(30),
                    ..Default::default()
                },
            )
            .await
            .map_err(store_err)?;
        let limits = pull::Limits { in_flight: OPEN_IN_FLIGHT, ahead: OPEN_IN_FLIGHT };
        let book = &*self;
        let done = pull::consume(&consumer, limits, &shutdown, |msg| book.open_msg(msg)).await;
        info!(handled = done.handled, handed_back = done.handed_back, "case book stopped opening records");
        Ok(())
    }

    /// Opens the record of one `case.<id>.routed` message (or dead-letters what is not a routed
    /// case), then acks it; naks it for a retry in a second when the store failed.
    async fn open_msg(&self, msg: jetstream::Message) {
        let done = match serde_json::from_slice::<CloudEvent<RoutedCase>>(&msg.payload) {
            Ok(ev) => self.open_one(&ev.data, TraceContext::from_extensions(&ev.extensions)).await,
            Err(e) => {
                // Not written by a router: keep it where operators look, then move on.
                let letter = DeadLetter {
                    stage: "cases",
                    reason: &format!("not a routed case: {e}"),
                    code: "malformed",
                    original_subject: &msg.subject,
                    original_msg_id: None,
                    msg_id: &format!("cases:{}", msg.info().map(|i| i.stream_sequence).unwrap_or_default()),
                    payload: msg.payload.clone(),
                };
                let stored = nats::store_deadletter(&self.js, letter).await.map_err(|e| ActError::Store(e.to_string()));
                if stored.is_ok() {
                    self.metrics.deadletter_cases.inc("malformed");
                }
                stored
            }
        };
        match done {
            Ok(()) => {
                let _ = msg.ack().await;
            }
            Err(e) => {
                warn!(error = %e, "could not open a case record; will retry");
                let _ = msg.ack_with(jetstream::AckKind::Nak(Some(Duration::from_secs(1)))).await;
            }
        }
    }

    /// Opens the record of `routed`, keeping the `trace` its routed event carried.
    async fn open_one(&self, routed: &RoutedCase, trace: Option<TraceContext>) -> Result<(), ActError> {
        let now = Timestamp::now();
        let mut record = lifecycle::open(routed, now, &self.config.policy);
        record.trace = trace;
        let stored = Stored { record, outbox: vec![] };
        let body = Bytes::from(serde_json::to_vec(&stored).map_err(|e| ActError::Store(e.to_string()))?);
        let revision = match self.store.create(key(&routed.case_id), body).await {
            Ok(revision) => {
                self.metrics.opened(&stored.record);
                self.remember(stored, revision);
                revision
            }
            // Opened by an earlier delivery: its check may not have run; it runs again.
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => self.load(&routed.case_id).await?.1,
            Err(e) => return Err(store_err(e)),
        };
        self.merge_duplicates(routed, revision).await
    }

    /// Folds together the reports of one incident: this routed case (its record stored at
    /// `revision`) and the open cases it duplicates are merged into one primary
    /// ([`lifecycle::primary`]; idempotent: a retry finds it done). One check at a time in this
    /// process (`merging`), and across replicas as the [module docs](self) say.
    async fn merge_duplicates(&self, routed: &RoutedCase, revision: u64) -> Result<(), ActError> {
        let _one_at_a_time = self.merging.lock().await;
        // Every record stored before this one is in the cache once the follower passed it.
        self.followed_to(revision).await?;
        if self.duplicates(routed).is_empty() {
            return Ok(());
        }
        let lock = self.lock_merging().await?;
        let merged = async {
            // What the replica that held the lock before did is in the bucket: follow it in.
            let last = lock.status().await.map_err(store_err)?.info.state.last_sequence;
            self.followed_to(last).await?;
            // Stamped when it is made, not when the report was opened: the wait may be long.
            self.merge_group(routed, Timestamp::now()).await
        }
        .await;
        if let Err(e) = lock.delete(LOCK_KEY).await {
            warn!(error = %e, "could not release the merge lock; it lapses on its own");
        }
        merged
    }

    /// The open records the cache holds that `routed` duplicates.
    fn duplicates(&self, routed: &RoutedCase) -> Vec<CaseRecord> {
        let cache = read(&self.cache);
        let index = read(&self.index);
        let at = routed.case.location;
        index
            .open_near(at.lon, at.lat, self.config.policy.merge.distance_m)
            .filter_map(|id| cache.get(id))
            .map(|c| &c.stored.record)
            .filter(|p| lifecycle::is_duplicate(p, routed, &self.config.policy.merge))
            .cloned()
            .collect()
    }

    /// Merges `routed` and its duplicates into their primary (the merge lock held).
    async fn merge_group(&self, routed: &RoutedCase, now: Timestamp) -> Result<(), ActError> {
        let mut group = self.duplicates(routed);
        if group.is_empty() {
            return Ok(());
        }
        let own = self.load(&routed.case_id).await?.0.record;
        if own.merged_into.is_some() || !own.state.is_open() {
            return Ok(());
        }
        group.push(own);
        let Some(primary) = lifecycle::primary(&group).map(|p| p.case_id.clone()) else { return Ok(()) };
        for report in group.iter().filter(|r| r.case_id != primary) {
            self.merge_into(&primary, &report.case_id, now).await?;
        }
        Ok(())
    }

    /// Waits until the follower has brought the cache up to bucket revision `revision`.
    async fn followed_to(&self, revision: u64) -> Result<(), ActError> {
        let mut followed = self.followed.subscribe();
        match tokio::time::timeout(MERGE_WAIT, followed.wait_for(|&at| at >= revision)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(ActError::Store("the case book stopped following the bucket".into())),
            Err(_) => {
                Err(ActError::Store(format!("the case book did not follow the bucket to revision {revision} in time")))
            }
        }
    }

    /// Takes the merge lock every replica shares (opening its bucket the first time); the
    /// bucket, to release it by deleting [`LOCK_KEY`].
    async fn lock_merging(&self) -> Result<&kv::Store, ActError> {
        let lock = self
            .merge_lock
            .get_or_try_init(|| async {
                let cases = self.store.status().await.map_err(store_err)?;
                let replicas = cases.info.config.num_replicas.max(1);
                let about = "the case books' merge lock (duplicate reports are merged one decision at a time)";
                let settings = nats::StreamSettings { replicas, ..nats::StreamSettings::default() };
                nats::provision_bucket(&self.js, BUCKET_MERGE_LOCK, about, LOCK_LEASE, &settings)
                    .await
                    .map_err(|e| ActError::Store(e.to_string()))?;
                self.js.get_key_value(BUCKET_MERGE_LOCK).await.map_err(store_err)
            })
            .await?;
        let deadline = tokio::time::Instant::now() + MERGE_WAIT;
        loop {
            match lock.create(LOCK_KEY, Bytes::from(self.config.source.clone())).await {
                Ok(_) => return Ok(lock),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                    if tokio::time::Instant::now() > deadline {
                        return Err(ActError::Store("the merge lock stayed taken".into()));
                    }
                    debug!("the merge lock is taken; waiting");
                    tokio::time::sleep(LOCK_RETRY).await;
                }
                Err(e) => return Err(store_err(e)),
            }
        }
    }

    /// Merges the record of `report_id` into `primary_id`, unless it was merged or acted on.
    async fn merge_into(&self, primary_id: &str, report_id: &str, now: Timestamp) -> Result<(), ActError> {
        let report = self.load(report_id).await?.0.record;
        if report.merged_into.is_some() || report.timeline.len() > 1 {
            return Ok(());
        }
        let merged = self
            .transact(primary_id, |p| {
                if p.reports.iter().any(|r| r.report_id == report.case_id) || !p.state.is_open() {
                    return Ok(None);
                }
                Ok(Some(lifecycle::merge(p, &report, now).0))
            })
            .await?;
        self.transact(report_id, |r| {
            if r.merged_into.is_some() {
                return Ok(None);
            }
            Ok(Some(lifecycle::merge(&merged, r, now).1))
        })
        .await?;
        info!(case_id = %report_id, into = %primary_id, "merged a duplicate report");
        Ok(())
    }
}
