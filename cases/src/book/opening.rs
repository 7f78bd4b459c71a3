//! The opening loop: a record for every routed case, merged into an open case of the same
//! incident if there is one.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv};
use bytes::Bytes;
use jiff::Timestamp;
use linkbus_bus::nats::{self, DeadLetter};
use linkbus_bus::pull;
use linkbus_bus::sync::read;
use linkbus_wire::subjects;
use linkbus_wire::{CloudEvent, RoutedCase};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

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
            Ok(ev) => self.open_one(&ev.data).await,
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

    async fn open_one(&self, routed: &RoutedCase) -> Result<(), ActError> {
        let now = Timestamp::now();
        let record = lifecycle::open(routed, now, &self.config.policy);
        let stored = Stored { record, outbox: vec![] };
        let body = Bytes::from(serde_json::to_vec(&stored).map_err(|e| ActError::Store(e.to_string()))?);
        match self.store.create(key(&routed.case_id), body).await {
            Ok(revision) => {
                self.metrics.opened(&stored.record);
                self.remember(stored, revision);
            }
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
            Err(e) => return Err(store_err(e)),
        }
        self.merge_duplicates(routed, now).await
    }

    /// Folds together the reports of one incident: of this routed case and the open cases it
    /// duplicates, the record opened first is the primary and the others are merged into it
    /// (idempotent: a retry finds it done). One check at a time (`merging`), each after its own
    /// record is in the cache, so of two duplicates opened at once the later check sees both.
    async fn merge_duplicates(&self, routed: &RoutedCase, now: Timestamp) -> Result<(), ActError> {
        let _one_at_a_time = self.merging.lock().await;
        let mut group: Vec<(Timestamp, String)> = {
            let cache = read(&self.cache);
            let index = read(&self.index);
            let at = routed.case.location;
            index
                .open_near(at.lon, at.lat, self.config.policy.merge.distance_m)
                .filter_map(|id| cache.get(id))
                .map(|c| &c.stored.record)
                .filter(|p| lifecycle::is_duplicate(p, routed, &self.config.policy.merge))
                .map(|p| (p.created_at, p.case_id.clone()))
                .collect()
        };
        if group.is_empty() {
            return Ok(());
        }
        let own = self.load(&routed.case_id).await?.0.record;
        if own.merged_into.is_some() || !own.state.is_open() {
            return Ok(());
        }
        group.push((own.created_at, own.case_id.clone()));
        group.sort_unstable();
        let (_, primary) = &group[0];
        if *primary == own.case_id {
            for (_, report) in &group[1..] {
                self.merge_into(primary, report, now).await?;
            }
            Ok(())
        } else {
            self.merge_into(primary, &own.case_id, now).await
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
