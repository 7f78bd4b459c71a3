//! What every adapter shares once a foreign message is understood; it knows no adapter.
//!
//! - [`Intake`]: publishes a case event on `ingest.<system>.<category>` under its source-derived
//!   id ([`event_id`]; JetStream drops a re-sent id within its duplicate window, and
//!   [`Intake::submit`] first asks the case book, so a report sent again later still finds its
//!   case), applies a source's update to its own case ([`Intake::act`]), keeps what an adapter
//!   refused in `deadletter.adapter_<name>` with the reason, and counts all of it
//!   ([`AdapterMetrics`]). The case book is reached through [`CaseStore`]. A report is answered
//!   `duplicate` only when the case it would open exists with the same origin (system, source,
//!   source id): an id JetStream already holds for another message is refused
//!   ([`IntakeError::IdReserved`], [`IntakeError::IdTaken`]), never passed off as this report's.
//! - [`Message`] and [`Receipt`]: what a CAP, CAD or commerce message asks (a new case, or a
//!   source update of the source's own earlier case) and the answer to it.
//! - [`Gate`]: what HTTP adapters ask of the API serving them: who a key belongs to
//!   ([`Caller`]; a source key speaks for one CloudEvents source) and whether a client may make
//!   another request.
//! - [`with_trace`]: the HTTP adapters' W3C Trace Context: a valid `traceparent` (and
//!   `tracestate`) request header becomes those extension attributes of the reports the request
//!   submits; an invalid one is ignored, as the W3C spec says.
//! - [`IntakeError`]: why a message was refused, each variant with one [`ErrorCode`] (its HTTP
//!   status, and its dead letter's reason code); answered as the one [`ErrorBody`] of linkbus.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use linkbus_bus::nats::{self, BusError, DeadLetter};
use linkbus_bus::storage::StorageHealth;
use linkbus_cases::book::{ActError, CaseStore};
use linkbus_cases::lifecycle::Refused;
use linkbus_wire::http_error::{ErrorBody, ErrorCode};
use linkbus_wire::subjects;
use linkbus_wire::{self as wire, Action, Actor, CaseRecord, CaseReport, CaseState, CloudEvent, TraceContext};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{debug, warn};

use crate::kind::AdapterKind;
use crate::metrics::AdapterMetrics;
use crate::tracking::{Tracking, TrackingLink};

tokio::task_local! {
    /// The trace of the HTTP request being served, set by [`with_trace`].
    static REQUEST_TRACE: Option<TraceContext>;
}

/// Middleware for every adapter's routes: serves the request with the trace of its
/// `traceparent`/`tracestate` headers, which [`Intake::submit_pending`] sets on the reports it
/// publishes (unless a report already has a `traceparent`).
pub async fn with_trace(request: Request, next: Next) -> Response {
    let trace = request_trace(request.headers());
    REQUEST_TRACE.scope(trace, next.run(request)).await
}

/// The trace of a request's headers; an invalid `traceparent` is ignored with a debug log.
pub fn request_trace(headers: &HeaderMap) -> Option<TraceContext> {
    let parent = headers.get(wire::TRACEPARENT)?;
    let state = headers.get(wire::TRACESTATE).and_then(|v| v.to_str().ok());
    let trace = parent.to_str().ok().and_then(|p| TraceContext::parse(p, state));
    if trace.is_none() {
        debug!(traceparent = ?parent, "ignoring an invalid traceparent header");
    }
    trace
}

/// What a CAP, CAD or commerce message asks linkbus to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Report a new case.
    Report(Box<CloudEvent<CaseReport>>),
    /// Act on the source's own earlier case(s) (update, cancel, resolve).
    Act {
        /// The source (CloudEvents `source` of its reports), the actor's id.
        source: String,
        /// The cases concerned.
        case_ids: Vec<String>,
        /// What to do.
        action: Action,
        /// What to report instead when none of the cases exists: the message as a case of its
        /// own (a CAP Update or Cancel of an alert linkbus never received), else nothing (404).
        unseen: Option<Box<CloudEvent<CaseReport>>>,
    },
}

/// The answer to an accepted message: what became of each case it concerns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(rename = "AdapterReceipt")]
pub struct Receipt {
    /// One entry per case.
    pub cases: Vec<CaseReceipt>,
}

/// What became of one case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CaseReceipt {
    /// The case id (derived from the source and its own id).
    pub case_id: String,
    /// `reported` (new; routing follows), `duplicate` (already reported: still one case),
    /// `updated`, `cancelled` or `resolved`.
    pub outcome: String,
    /// The case's state after a source update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<CaseState>,
    /// A new (or duplicate) report's tracking page, for the source to pass on to the resident.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking: Option<TrackingLink>,
}

/// Why a message was refused; each variant has one [`ErrorCode`] ([`IntakeError::code`]).
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// No or unknown key, bad signature, stale timestamp (401).
    #[error("{0}")]
    Unauthorized(String),
    /// A key speaking for another source (403).
    #[error("{0}")]
    Forbidden(String),
    /// Not readable: the body broke off, a required header is missing (400).
    #[error("{0}")]
    Malformed(String),
    /// Not UTF-8 (400).
    #[error("not UTF-8: {0}")]
    NotUtf8(#[source] std::str::Utf8Error),
    /// Not the JSON the adapter takes (400); `what` names it, e.g. `a CAD message`.
    #[error("not {what}: {source}")]
    Json {
        /// What was expected.
        what: &'static str,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// An adapter's own reason, with its code: e.g. a CAP alert its parser refuses (400
    /// `malformed` or 422 `invalid`).
    #[error("{source}")]
    Adapter {
        /// The code it answers with.
        code: ErrorCode,
        /// The adapter's error (e.g. [`crate::cap::CapError`]).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Larger than the route or subject takes (413).
    #[error("the message is larger than {limit} bytes")]
    TooLarge {
        /// The limit, bytes.
        limit: usize,
    },
    /// Wrong `Content-Type` (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Parseable but invalid, or valid but not routable (422).
    #[error("{0}")]
    Invalid(String),
    /// A case report the bus would refuse (422).
    #[error("{0}")]
    Report(#[source] wire::Invalid),
    /// The case a source update names does not exist (yet) (404).
    #[error("no case {case_id} (yet): a report just sent may still be routing; retry")]
    NoCase {
        /// The case named.
        case_id: String,
    },
    /// The case's rules refuse the source update: another source's case (403), or its state
    /// does not allow it (409).
    #[error("case {case_id}: {source}")]
    Refused {
        /// The case named.
        case_id: String,
        /// The rule.
        #[source]
        source: Refused,
    },
    /// The delivery was already received (409).
    #[error("this delivery was already received (replayed delivery id)")]
    Replayed,
    /// JetStream already holds the case's id for another message, which has not become a case
    /// (409): a report sent before that is still being routed, or a message that reserved the
    /// id without being this report.
    #[error(
        "event id {case_id} is reserved by another message on the bus, which did not become a case within \
         {settle_secs} s; this report was not routed. If you sent it before, it may still be routing: look it up later"
    )]
    IdReserved {
        /// The case id.
        case_id: String,
        /// How long the case book was given.
        settle_secs: u64,
    },
    /// The case's id belongs to a case of another origin (409).
    #[error("case {case_id} exists, but from another report ({other}); this report was not routed")]
    IdTaken {
        /// The case id.
        case_id: String,
        /// Whose report opened it.
        other: String,
    },
    /// The case store is unavailable; retry (503).
    #[error("the case store is unavailable: {0}")]
    CaseStore(#[source] ActError),
    /// The delivery-id store is unavailable; retry (503).
    #[error("the delivery store is unavailable: {0}")]
    DeliveryStore(#[source] kv::CreateError),
    /// The event could not be encoded (503).
    #[error("encoding the event: {0}")]
    Encode(#[source] serde_json::Error),
    /// The bus refused the publish; retry (503).
    #[error("{0}")]
    Bus(#[source] BusError),
    /// JetStream did not acknowledge the report; retry (503).
    #[error("publish to {subject} not acknowledged: {source}")]
    NotAcknowledged {
        /// The subject published on.
        subject: String,
        /// JetStream's error.
        #[source]
        source: jetstream::context::PublishError,
    },
}

impl IntakeError {
    /// The code of this refusal: its HTTP status, and its dead letter's reason code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Unauthorized(_) => ErrorCode::Unauthorized,
            Self::Forbidden(_) | Self::Refused { source: Refused::Forbidden(_), .. } => ErrorCode::Forbidden,
            Self::Malformed(_) | Self::NotUtf8(_) | Self::Json { .. } => ErrorCode::Malformed,
            Self::Adapter { code, .. } => *code,
            Self::TooLarge { .. } => ErrorCode::TooLarge,
            Self::UnsupportedMediaType(_) => ErrorCode::UnsupportedMediaType,
            Self::Invalid(_) | Self::Report(_) => ErrorCode::Invalid,
            Self::NoCase { .. } => ErrorCode::NotFound,
            Self::Refused { source: Refused::Invalid(_), .. }
            | Self::Replayed
            | Self::IdReserved { .. }
            | Self::IdTaken { .. } => ErrorCode::Conflict,
            Self::CaseStore(_)
            | Self::DeliveryStore(_)
            | Self::Encode(_)
            | Self::Bus(_)
            | Self::NotAcknowledged { .. } => ErrorCode::Unavailable,
        }
    }

    /// The reason code of this refusal's dead letter: [`IntakeError::code`]'s, but `id_reserved`
    /// and `id_taken` for ids that are not this report's.
    pub fn reason_code(&self) -> &'static str {
        match self {
            Self::IdReserved { .. } => "id_reserved",
            Self::IdTaken { .. } => "id_taken",
            other => other.code().as_str(),
        }
    }

    /// What the case book's refusal of `case_id`'s update means for the sender.
    pub fn from_act(case_id: &str, e: ActError) -> Self {
        match e {
            ActError::NotFound(_) => Self::NoCase { case_id: case_id.to_owned() },
            ActError::Refused(source) => Self::Refused { case_id: case_id.to_owned(), source },
            store @ ActError::Store(_) => Self::CaseStore(store),
        }
    }

    /// The body answered for this refusal (over HTTP, and as a NATS reply).
    pub fn body(&self) -> ErrorBody {
        ErrorBody { error: self.to_string(), code: self.code() }
    }
}

impl IntoResponse for IntakeError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code().status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(self.body())).into_response()
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
    /// Its tracking page, for the receipt (where the intake has [`Tracking`]).
    pub tracking: Option<TrackingLink>,
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

/// Publishes adapters' reports and dead letters, applies their source updates, and counts them.
#[derive(Clone)]
pub struct Intake {
    js: jetstream::Context,
    cases: Arc<dyn CaseStore>,
    metrics: AdapterMetrics,
    /// Told of publishes refused for lack of storage (and of those stored since).
    storage: StorageHealth,
    /// The adapter's name ([`AdapterKind::name`]): the metrics' `adapter` label; its dead letters go
    /// to `deadletter.adapter_<name>`.
    adapter: &'static str,
    /// Makes the tracking links of new cases' receipts (none without).
    tracking: Option<Arc<Tracking>>,
}

impl std::fmt::Debug for Intake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intake").field("adapter", &self.adapter).finish_non_exhaustive()
    }
}

/// How long a report JetStream calls a duplicate waits for the case book to show the case its
/// id names (the earlier copy may still be routing) before it is refused as
/// [`IntakeError::IdReserved`].
pub const DUPLICATE_SETTLE: Duration = Duration::from_secs(5);

impl Intake {
    /// Publishes on `js`, asking `cases` for reports already known, counting into `metrics`,
    /// telling `storage` of refusals for lack of storage; each adapter takes its own with
    /// [`Intake::for_adapter`].
    pub fn new(
        js: jetstream::Context,
        cases: Arc<dyn CaseStore>,
        metrics: AdapterMetrics,
        storage: StorageHealth,
    ) -> Self {
        Self { js, cases, metrics, storage, adapter: "adapter", tracking: None }
    }

    /// This intake, answering every report with its case's tracking link from `tracking`.
    pub fn with_tracking(self, tracking: Arc<Tracking>) -> Self {
        Self { tracking: Some(tracking), ..self }
    }

    /// This intake for one adapter: its metrics' label, and its dead letters' stage
    /// `adapter_<name>`.
    pub fn for_adapter(&self, kind: AdapterKind) -> Self {
        Self { adapter: kind.name(), ..self.clone() }
    }

    /// The case book this intake asks.
    pub fn cases(&self) -> &dyn CaseStore {
        self.cases.as_ref()
    }

    /// Publishes a checked report on `ingest.<system>.<category>` and waits for JetStream to
    /// store it; a report the case book already has is not published again.
    pub async fn submit(&self, event: &CloudEvent<CaseReport>) -> Result<Submitted, IntakeError> {
        let ack = self.submit_pending(event).await?;
        ack.wait().await
    }

    /// [`Intake::submit`] without waiting for the acknowledgement, so a batch can be published
    /// back to back and its acknowledgements awaited after. A case already opened for this
    /// report's source and source id that is not this report's (another system's, or under
    /// another id) refuses it ([`IntakeError::IdTaken`]).
    pub async fn submit_pending(&self, event: &CloudEvent<CaseReport>) -> Result<PendingSubmit, IntakeError> {
        let subject = subjects::ingest(event.data.system, &event.data.category);
        let origin = Origin::of(event);
        let pending = |subject, ack| PendingSubmit { subject, ack, origin: origin.clone(), intake: self.clone() };
        if let Some(known) = self.cases.by_source_id(Some(&event.source), &event.data.source_id) {
            debug!(case_id = %known.case_id, "report already has a case");
            origin.holds(&known)?;
            return Ok(pending(subject, None));
        }
        let trace = REQUEST_TRACE.try_with(Clone::clone).ok().flatten();
        let payload = match trace.filter(|_| !event.extensions.contains_key(wire::TRACEPARENT)) {
            Some(trace) => {
                let mut traced = event.clone();
                trace.set_on(&mut traced.extensions);
                serde_json::to_vec(&traced)
            }
            None => serde_json::to_vec(event),
        };
        let payload = Bytes::from(payload.map_err(IntakeError::Encode)?);
        let ack = nats::publish(&self.js, subject.clone(), &event.id, payload).await.map_err(|e| {
            self.storage.observe_error(&e);
            IntakeError::Bus(e)
        })?;
        Ok(pending(subject, Some(ack)))
    }

    /// Applies a source's update `action` to its case `case_id`, as the `source` actor `source`
    /// (the case book refuses another source's case); counted `updated`.
    pub async fn act(&self, case_id: &str, source: &str, action: &Action) -> Result<CaseRecord, IntakeError> {
        let actor = Actor { kind: wire::ActorKind::Source, id: source.to_owned() };
        let record = self.cases.act(case_id, &actor, action).await.map_err(|e| IntakeError::from_act(case_id, e))?;
        self.metrics.report(self.adapter, "updated");
        Ok(record)
    }

    /// Keeps a refused message in `deadletter.adapter_<name>` with the refusal as its reason and
    /// its [`IntakeError::reason_code`]; `original` says where it came from (a subject or a route).
    pub async fn refuse(&self, error: &IntakeError, original: &str, payload: Bytes) {
        self.keep(error.reason_code(), &error.to_string(), original, payload).await;
    }

    /// Keeps refused input in `deadletter.adapter_<name>` with the reason and its `code`
    /// (`too_large`, `malformed`, `invalid`…); `original` says where it came from (a subject, or
    /// `POST /open311/v2/requests.json`). Failing to, it logs: the sender has its error either way.
    pub async fn dead_letter(&self, code: ErrorCode, reason: &str, original: &str, payload: Bytes) {
        self.keep(code.as_str(), reason, original, payload).await;
    }

    async fn keep(&self, code: &str, reason: &str, original: &str, payload: Bytes) {
        let stage = format!("adapter_{}", self.adapter);
        let stage = stage.as_str();
        self.metrics.dead_letter(self.adapter, stage, code);
        // The same bytes refused again for the same reason on the same route are one dead letter.
        let mut id_input = Vec::with_capacity(original.len() + payload.len() + reason.len() + 2);
        id_input.extend_from_slice(original.as_bytes());
        id_input.push(0);
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
        match nats::store_deadletter(&self.js, letter).await {
            Ok(()) => debug!(stage, code, reason, "dead-lettered"),
            Err(e) => {
                self.storage.observe_error(&e);
                warn!(stage, code, reason, error = %e, "could not keep refused input in a dead letter")
            }
        }
    }
}

/// Who sent a report: its case id, kind of system, CloudEvents source and source-system id.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    case_id: String,
    system: wire::SourceSystem,
    source: String,
    source_id: String,
}

impl Origin {
    fn of(event: &CloudEvent<CaseReport>) -> Self {
        Self {
            case_id: event.id.clone(),
            system: event.data.system,
            source: event.source.clone(),
            source_id: event.data.source_id.clone(),
        }
    }

    /// `Ok` when `record` holds this report (as its first report or a merged one), else
    /// [`IntakeError::IdTaken`] naming whose report it holds.
    fn holds(&self, record: &CaseRecord) -> Result<(), IntakeError> {
        let mine = |r: &wire::ReportRef| {
            r.report_id == self.case_id
                && r.system == self.system
                && r.source == self.source
                && r.source_id == self.source_id
        };
        if record.reports.iter().any(mine) {
            return Ok(());
        }
        let theirs = record.reports.iter().find(|r| r.report_id == self.case_id).or(record.reports.first());
        let other = theirs.map_or_else(
            || "unknown".to_owned(),
            |r| format!("{} from {}, its id {:?}", r.system, r.source, r.source_id),
        );
        Err(IntakeError::IdTaken { case_id: record.case_id.clone(), other })
    }
}

/// A report published (or found known) whose acknowledgement is still to come.
pub struct PendingSubmit {
    subject: String,
    ack: Option<jetstream::context::PublishAckFuture>,
    origin: Origin,
    intake: Intake,
}

impl PendingSubmit {
    /// Waits for JetStream to store the report; says whether it was a duplicate: one whose case
    /// exists with the same origin (waiting up to [`DUPLICATE_SETTLE`] for the case book to
    /// show it). A duplicate id without such a case is refused.
    pub async fn wait(self) -> Result<Submitted, IntakeError> {
        let intake = &self.intake;
        let duplicate = match self.ack {
            None => true,
            Some(ack) => match ack.await {
                Ok(ack) => {
                    intake.storage.stored(&self.subject);
                    ack.duplicate
                }
                Err(source) => {
                    intake.storage.observe(&self.subject, &source);
                    return Err(IntakeError::NotAcknowledged { subject: self.subject, source });
                }
            },
        };
        if duplicate {
            self.origin.settle(intake.cases.as_ref()).await?;
        }
        intake.metrics.report(intake.adapter, if duplicate { "duplicate" } else { "reported" });
        let tracking = self.intake.tracking.as_ref().map(|t| t.link(&self.origin.case_id));
        Ok(Submitted { case_id: self.origin.case_id, duplicate, tracking })
    }
}

impl Origin {
    /// Waits (up to [`DUPLICATE_SETTLE`]) for the case this report's id names: `Ok` once it
    /// shows with this origin; [`IntakeError::IdTaken`] with another;
    /// [`IntakeError::IdReserved`] if it never shows.
    async fn settle(&self, cases: &dyn CaseStore) -> Result<(), IntakeError> {
        let deadline = tokio::time::Instant::now() + DUPLICATE_SETTLE;
        loop {
            let found = cases.get(&self.case_id).or_else(|| cases.by_source_id(Some(&self.source), &self.source_id));
            if let Some(record) = found {
                return self.holds(&record);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(IntakeError::IdReserved {
                    case_id: self.case_id.clone(),
                    settle_secs: DUPLICATE_SETTLE.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_trace_is_its_valid_traceparent_header_and_an_invalid_one_is_ignored() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut headers = HeaderMap::new();
        assert_eq!(request_trace(&headers), None);
        headers.insert("tracestate", "congo=t61rcWkgMzE".parse().expect("header"));
        assert_eq!(request_trace(&headers), None, "a tracestate alone is no trace");
        headers.insert("traceparent", good.parse().expect("header"));
        let trace = request_trace(&headers).expect("traced");
        assert_eq!((trace.traceparent.as_str(), trace.tracestate.as_deref()), (good, Some("congo=t61rcWkgMzE")));
        headers.insert("traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01".parse().expect("h"));
        assert_eq!(request_trace(&headers), None);
        headers.insert("traceparent", axum::http::HeaderValue::from_bytes(b"00-\xff").expect("h"));
        assert_eq!(request_trace(&headers), None);
    }

    #[test]
    fn event_ids_are_the_source_id_when_they_can_be_and_a_digest_otherwise() {
        assert_eq!(event_id("grid", "GX-2026-000123"), "grid-GX-2026-000123");
        let odd = event_id("grid", "巡查/2026.001");
        assert!(odd.starts_with("grid-h") && odd.len() == "grid-h".len() + 16, "{odd}");
        assert!(wire::is_event_id(&odd));
        assert_eq!(odd, event_id("grid", "巡查/2026.001"), "stable");
        assert_ne!(odd, event_id("grid", "巡查/2026.002"));
    }

    #[test]
    fn case_book_refusals_keep_their_codes() {
        let code = |e: ActError| IntakeError::from_act("cad-1", e).code();
        assert_eq!(code(ActError::NotFound("cad-1".into())), ErrorCode::NotFound);
        assert_eq!(code(ActError::Refused(Refused::Forbidden("not yours".into()))), ErrorCode::Forbidden);
        assert_eq!(code(ActError::Refused(Refused::Invalid("cancelled".into()))), ErrorCode::Conflict);
        assert_eq!(code(ActError::Store("down".into())), ErrorCode::Unavailable);
    }
}
