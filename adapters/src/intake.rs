//! What every adapter does with what it converted: publish the case event under its id (so the
//! same source message twice is one case), keep what it refused in a dead letter with the reason,
//! and — for adapters served over HTTP — ask the host who a key belongs to and whether a client
//! may make another request ([`Gate`]).
//!
//! A report's event id (and so its case id) is `<prefix>-<the source's own id>` ([`event_id`]):
//! JetStream drops a re-sent id within its duplicate window, and [`Intake::submit`] first asks the
//! case book, so a report sent again later still finds its case instead of being routed twice.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use bytes::Bytes;
use linkbus_bus::nats::{self, BusError, DeadLetter};
use linkbus_bus::subjects;
use linkbus_bus::wire::{self, CaseRecord, CaseReport, CloudEvent};
use linkbus_cases::book::{CaseBook, CaseFilter};
use sha2::{Digest, Sha256};
use tracing::{debug, warn};

use crate::metrics::AdapterMetrics;

/// An adapter's failure to hand something to the bus (NATS trouble: the sender should retry).
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// The event could not be serialized (a bug, never the sender's fault).
    #[error("cannot encode the event: {0}")]
    Encode(#[from] serde_json::Error),
    /// The publish could not be sent.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// JetStream did not acknowledge the publish.
    #[error("publish to {subject} not acknowledged: {reason}")]
    Ack {
        /// The subject.
        subject: String,
        /// Why.
        reason: String,
    },
}

/// What adapters need to know of the case book: the case a source's own id became.
pub trait CaseLookup: Send + Sync + 'static {
    /// One case, by its id.
    fn get(&self, case_id: &str) -> Option<CaseRecord>;
    /// The case of the report `source_id` from the CloudEvents `source` (the merged-into case for
    /// a merged report).
    fn by_source_id(&self, source: &str, source_id: &str) -> Option<CaseRecord>;
    /// Every case whose first report came from `source`, newest first.
    fn of_source(&self, source: &str) -> Vec<CaseRecord>;
}

impl CaseLookup for CaseBook {
    fn get(&self, case_id: &str) -> Option<CaseRecord> {
        CaseBook::get(self, case_id)
    }

    fn by_source_id(&self, source: &str, source_id: &str) -> Option<CaseRecord> {
        CaseBook::by_source_id(self, Some(source), source_id)
    }

    fn of_source(&self, source: &str) -> Vec<CaseRecord> {
        let mut all = CaseBook::list(self, &CaseFilter::default());
        all.retain(|r| r.reports.first().is_some_and(|first| first.source == source));
        all
    }
}

/// Who presented an API key, as far as an adapter cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A source system's key: it may submit reports as, and read the requests of, this
    /// CloudEvents source only.
    Source(String),
    /// A dispatcher's or operator's key: reads every request, submits none.
    Staff,
    /// Another key (a department's): neither.
    Other,
}

/// What an HTTP adapter needs of the API serving it (implemented by `linkbus`'s API state).
pub trait Gate: Send + Sync + 'static {
    /// The holder of `key`, or `None` for an unknown key.
    fn caller(&self, key: &str) -> Option<Caller>;
    /// Takes one request from `ip` out of the residents' rate limit, or says how long to wait.
    fn admit(&self, ip: IpAddr) -> Result<(), Duration>;
}

/// What became of a submitted report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// Its case id (the event id).
    pub case_id: String,
    /// True when the bus or the case book already had it: nothing new was published.
    pub duplicate: bool,
}

/// The event id of a report from a source whose own id is `source_id`: `<prefix>-<source_id>`
/// when that makes a valid id, else `<prefix>-h<first 16 hex digits of its SHA-256>` (so any
/// source id, whatever its characters, gives one stable id).
pub fn event_id(prefix: &str, source_id: &str) -> String {
    let plain = format!("{prefix}-{source_id}");
    if wire::is_event_id(&plain) {
        return plain;
    }
    format!("{prefix}-h{}", &hex::encode(Sha256::digest(source_id.as_bytes()))[..16])
}

/// First 16 hex digits of the SHA-256 of `bytes`: a stable id for something without one.
pub fn digest_id(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))[..16].to_owned()
}

/// Publishes adapters' reports and dead letters, and counts them.
#[derive(Clone)]
pub struct Intake {
    js: jetstream::Context,
    cases: Arc<dyn CaseLookup>,
    metrics: AdapterMetrics,
    /// The adapter's name: the metrics' `adapter` label; its dead letters go to
    /// `deadletter.adapter_<name>`.
    adapter: &'static str,
}

impl std::fmt::Debug for Intake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intake").field("adapter", &self.adapter).finish_non_exhaustive()
    }
}

impl Intake {
    /// Publishes on `js`, asking `cases` for reports already known, counting into `metrics`.
    pub fn new(js: jetstream::Context, cases: Arc<dyn CaseLookup>, metrics: AdapterMetrics) -> Self {
        Self { js, cases, metrics, adapter: "adapter" }
    }

    /// This intake for one adapter, by its name (`open311`, `grid`): its metrics' label, and its
    /// dead letters' stage `adapter_<name>`.
    pub fn for_adapter(&self, adapter: &'static str) -> Self {
        Self { adapter, ..self.clone() }
    }

    /// The case book this intake asks.
    pub fn cases(&self) -> &dyn CaseLookup {
        self.cases.as_ref()
    }

    /// Publishes a checked report on `ingest.<system>.<category>` and waits for JetStream to
    /// store it; a report the case book already has is not published again.
    pub async fn submit(&self, event: &CloudEvent<CaseReport>) -> Result<Submitted, IntakeError> {
        let ack = self.submit_pending(event).await?;
        ack.wait().await
    }

    /// [`Intake::submit`] without waiting for the acknowledgement, so a batch can be published
    /// back to back and its acknowledgements awaited after.
    pub async fn submit_pending(&self, event: &CloudEvent<CaseReport>) -> Result<PendingSubmit, IntakeError> {
        let subject = subjects::ingest(event.data.system, &event.data.category);
        let pending = |subject, ack| PendingSubmit {
            case_id: event.id.clone(),
            subject,
            ack,
            metrics: self.metrics.clone(),
            adapter: self.adapter,
        };
        if let Some(known) = self.cases.by_source_id(&event.source, &event.data.source_id) {
            debug!(case_id = %known.case_id, "report already has a case");
            return Ok(pending(subject, None));
        }
        let payload = Bytes::from(serde_json::to_vec(event)?);
        let ack = nats::publish(&self.js, subject.clone(), &event.id, payload).await?;
        Ok(pending(subject, Some(ack)))
    }

    /// Keeps refused input in `deadletter.adapter_<name>` with the reason and its short `code`
    /// (`too_large`, `malformed`, `invalid`); `original` says where it came from (a subject, or
    /// `POST /open311/v2/requests.json`). Failing to, it logs: the sender has its error either way.
    pub async fn dead_letter(&self, code: &str, reason: &str, original: &str, payload: Bytes) {
        let stage = format!("adapter_{}", self.adapter);
        let stage = stage.as_str();
        self.metrics.dead_letter(self.adapter, stage, code);
        let mut id_input = Vec::with_capacity(payload.len() + reason.len() + 1);
        id_input.extend_from_slice(&payload);
        id_input.push(0);
        id_input.extend_from_slice(reason.as_bytes());
        let msg_id = format!("{stage}:{}", digest_id(&id_input));
        let letter = DeadLetter {
            stage,
            reason,
            code,
            original_subject: original,
            original_msg_id: None,
            msg_id: &msg_id,
            payload,
        };
        let published = match nats::publish_deadletter(&self.js, letter).await {
            Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match published {
            Ok(()) => debug!(stage, code, reason, "dead-lettered"),
            Err(e) => warn!(stage, code, reason, error = %e, "could not keep refused input in a dead letter"),
        }
    }
}

/// A report published (or found known) whose acknowledgement is still to come.
pub struct PendingSubmit {
    case_id: String,
    subject: String,
    ack: Option<jetstream::context::PublishAckFuture>,
    metrics: AdapterMetrics,
    adapter: &'static str,
}

impl PendingSubmit {
    /// Waits for JetStream to store the report; says whether it was a duplicate.
    pub async fn wait(self) -> Result<Submitted, IntakeError> {
        let duplicate = match self.ack {
            None => true,
            Some(ack) => {
                ack.await.map_err(|e| IntakeError::Ack { subject: self.subject, reason: e.to_string() })?.duplicate
            }
        };
        self.metrics.report(self.adapter, if duplicate { "duplicate" } else { "reported" });
        Ok(Submitted { case_id: self.case_id, duplicate })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_the_source_id_when_they_can_be_and_a_digest_otherwise() {
        assert_eq!(event_id("grid", "GX-2026-000123"), "grid-GX-2026-000123");
        let odd = event_id("grid", "巡查/2026.001");
        assert!(odd.starts_with("grid-h") && odd.len() == "grid-h".len() + 16, "{odd}");
        assert!(wire::is_event_id(&odd));
        assert_eq!(odd, event_id("grid", "巡查/2026.001"), "stable");
        assert_ne!(odd, event_id("grid", "巡查/2026.002"));
    }
}
