//! What every adapter shares once a foreign message is understood.
//!
//! - [`Intake`]: publishes a case event on `ingest.<system>.<category>` under its source-derived
//!   id ([`event_id`]; JetStream drops a re-sent id within its duplicate window, and
//!   [`Intake::submit`] first asks the case book, so a report sent again later still finds its
//!   case), keeps what an adapter refused in `deadletter.adapter_<name>` with the reason, and
//!   counts both ([`AdapterMetrics`]).
//! - [`Gate`]: what HTTP adapters ask of the API serving them: who a key belongs to
//!   ([`Caller`]; a source key speaks for one CloudEvents source) and whether a client may make
//!   another request.
//! - [`IntakeError`]: why a message was refused, each mapping to an HTTP status and a code.
//! - [`Adapters`]: the CAP, CAD and commerce adapters, whose messages are a new case or a source
//!   update ([`Message::Act`]: an update, withdrawal or completion of the source's own earlier
//!   case, applied to the case book as an action of a `source` actor); served over HTTP
//!   ([`Adapters::router`]) and NATS ([`Adapters::start`]).
//!
//! | route | body | auth |
//! |---|---|---|
//! | `POST /api/adapters/cap` | CAP 1.2 XML (`application/cap+xml`, `application/xml`, `text/xml`) | `Authorization: Bearer <source key of /cap>` |
//! | `POST /api/adapters/cad` | a [`cad::CadMessage`] (JSON) | `Authorization: Bearer <source key of /cad>` |
//! | `POST /api/adapters/commerce/{platform}/orders` | a [`commerce::OrderEvent`] (JSON) | HMAC signature ([`commerce`]) |
//!
//! Answers: `202` with a [`Receipt`] for a new case (routing follows), `200` with a [`Receipt`]
//! for a source update, else an [`ErrorBody`] with `400` (malformed: not XML/JSON, not UTF-8),
//! `401` (no or bad key or signature, stale timestamp), `403` (another source's key or case), `404` (no
//! such case yet), `409` (the case's state refuses it, or a replayed delivery), `413` (over
//! 256 KiB), `415` (wrong content type), `422` (valid syntax, invalid content) or `503` (the bus
//! is unavailable; retry). Open311 and grid answer in their own formats ([`crate::open311`],
//! [`crate::grid`]).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use futures::StreamExt;
use jiff::Timestamp;
use linkbus_bus::nats::{self, DeadLetter};
use linkbus_cases::book::{ActError, CaseBook, CaseFilter};
use linkbus_cases::lifecycle::Refused;
use linkbus_wire::subjects;
use linkbus_wire::{self as wire, Action, Actor, ActorKind, CaseRecord, CaseReport, CaseState, CloudEvent};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::cad::{self, CadConfig};
use crate::cap::{self, CapConfig};
use crate::commerce::{self, CommerceConfig};
use crate::metrics::AdapterMetrics;
use crate::web;

/// Largest message accepted, bytes (HTTP body or NATS payload).
pub const MAX_BODY: usize = 256 * 1024;
/// NATS queue group of the adapter listeners: replicas share the messages.
pub const QUEUE_GROUP: &str = "linkbus-adapters";

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
}

/// Why a message was refused; each maps to an HTTP status and a `code`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IntakeError {
    /// No or unknown key, bad signature, stale timestamp (401).
    #[error("{0}")]
    Unauthorized(String),
    /// Not parseable: not UTF-8, not XML / JSON, a DTD (400).
    #[error("{0}")]
    Malformed(String),
    /// Larger than [`MAX_BODY`] (413).
    #[error("the message is larger than {MAX_BODY} bytes")]
    TooLarge,
    /// Wrong `Content-Type` (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Parseable but invalid, or valid but not routable (422).
    #[error("{0}")]
    Invalid(String),
    /// The case a source update names does not exist (yet) (404).
    #[error("{0}")]
    NotFound(String),
    /// The case is another source's (403).
    #[error("{0}")]
    Forbidden(String),
    /// The case's state refuses the update, or the delivery was already received (409).
    #[error("{0}")]
    Conflict(String),
    /// The bus or the case store is unavailable; retry (503).
    #[error("{0}")]
    Unavailable(String),
}

impl IntakeError {
    /// The HTTP status and the short code (also the dead letter's reason code).
    pub fn status(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed"),
            Self::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            Self::UnsupportedMediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            Self::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        }
    }
}

impl From<cap::CapError> for IntakeError {
    fn from(e: cap::CapError) -> Self {
        match e {
            cap::CapError::Xml(_) => Self::Malformed(e.to_string()),
            cap::CapError::Invalid(_) | cap::CapError::NotRouted(_) => Self::Invalid(e.to_string()),
        }
    }
}

impl From<ActError> for IntakeError {
    fn from(e: ActError) -> Self {
        match e {
            ActError::NotFound(id) => {
                Self::NotFound(format!("no case {id} (yet): a report just sent may still be routing; retry"))
            }
            ActError::Refused(Refused::Forbidden(why)) => Self::Forbidden(why),
            ActError::Refused(Refused::Invalid(why)) => Self::Conflict(why),
            ActError::Store(why) => Self::Unavailable(format!("the case store is unavailable: {why}")),
        }
    }
}

/// The body of every refusal, as the rest of the HTTP API answers them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, for people.
    pub error: String,
    /// What went wrong, for programs: `unauthorized`, `malformed`, `too_large`,
    /// `unsupported_media_type`, `invalid`, `not_found`, `forbidden`, `conflict`, `unavailable`.
    pub code: String,
}

impl IntoResponse for IntakeError {
    fn into_response(self) -> Response {
        let (status, code) = self.status();
        (status, axum::Json(ErrorBody { error: self.to_string(), code: code.to_owned() })).into_response()
    }
}

/// The running CAP, CAD and commerce adapters of one linkbus process, and the [`Intake`] every
/// adapter (Open311 and grid too) publishes through.
pub struct Adapters {
    intake: Intake,
    cases: Arc<CaseBook>,
    cap: Option<CapConfig>,
    cad: Option<CadConfig>,
    commerce: Option<commerce::Platforms>,
    max_report_bytes: usize,
}

impl std::fmt::Debug for Adapters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Adapters")
            .field("cap", &self.cap.is_some())
            .field("cad", &self.cad.is_some())
            .field("commerce", &self.commerce.is_some())
            .finish_non_exhaustive()
    }
}

/// Which of the CAP, CAD and commerce adapters run (`None`: off, from `enabled = false`).
#[derive(Debug, Clone, Default)]
pub struct AdapterSettings {
    /// CAP alerts.
    pub cap: Option<CapConfig>,
    /// CAD incidents.
    pub cad: Option<CadConfig>,
    /// Commerce order webhooks.
    pub commerce: Option<CommerceConfig>,
    /// The largest case report the routers accept (`[router] max_payload_bytes`): a message
    /// whose case would be larger is refused here, not dead-lettered after a 202.
    pub max_report_bytes: usize,
}

impl Adapters {
    /// Starts the configured CAP and CAD adapters' NATS listeners (until `shutdown`), publishing
    /// through `intake` and applying source updates to `cases`; the HTTP routes come from
    /// [`Adapters::router`].
    pub async fn start(
        js: &jetstream::Context,
        client: async_nats::Client,
        cases: Arc<CaseBook>,
        intake: Intake,
        settings: AdapterSettings,
        shutdown: CancellationToken,
    ) -> Result<(Arc<Self>, Vec<JoinHandle<()>>), String> {
        let commerce = match &settings.commerce {
            Some(config) => Some(commerce::Platforms::open(js, config).await?),
            None => None,
        };
        let adapters = Arc::new(Self {
            intake,
            cases,
            cap: settings.cap,
            cad: settings.cad,
            commerce,
            max_report_bytes: settings.max_report_bytes,
        });
        let mut tasks = Vec::new();
        let listeners = [
            adapters.cap.as_ref().map(|c| (Kind::Cap, c.subject.clone())),
            adapters.cad.as_ref().map(|c| (Kind::Cad, c.subject.clone())),
        ];
        for (kind, subject) in listeners.into_iter().flatten() {
            let subscriber = client
                .queue_subscribe(subject.clone(), QUEUE_GROUP.to_owned())
                .await
                .map_err(|e| format!("cannot subscribe to {subject}: {e}"))?;
            info!(adapter = kind.name(), %subject, "adapter listening on NATS");
            let (adapters, client, shutdown) = (adapters.clone(), client.clone(), shutdown.clone());
            tasks.push(tokio::spawn(async move { adapters.listen(kind, client, subscriber, shutdown).await }));
        }
        Ok((adapters, tasks))
    }

    /// The intake every adapter publishes through (Open311 and grid take it from here).
    pub fn intake(&self) -> &Intake {
        &self.intake
    }

    async fn listen(
        &self,
        kind: Kind,
        client: async_nats::Client,
        mut subscriber: async_nats::Subscriber,
        shutdown: CancellationToken,
    ) {
        loop {
            let msg = tokio::select! {
                _ = shutdown.cancelled() => break,
                msg = subscriber.next() => match msg { Some(m) => m, None => break },
            };
            let reply = match self.handle(kind, &msg.payload).await {
                Ok(receipt) => serde_json::to_vec(&receipt),
                Err(e) => {
                    self.dead_letter(kind, &msg.subject, msg.payload.clone(), &e).await;
                    serde_json::to_vec(&ErrorBody { error: e.to_string(), code: e.status().1.to_owned() })
                }
            };
            if let (Some(to), Ok(body)) = (msg.reply.clone(), reply)
                && let Err(e) = client.publish(to, body.into()).await
            {
                warn!(adapter = kind.name(), error = %e, "cannot reply to a NATS request");
            }
        }
        let _ = subscriber.unsubscribe().await;
    }

    /// A CAP or CAD message as received over NATS or HTTP.
    async fn handle(&self, kind: Kind, payload: &[u8]) -> Result<Receipt, IntakeError> {
        if payload.len() > MAX_BODY {
            return Err(IntakeError::TooLarge);
        }
        let message = match kind {
            Kind::Cap => {
                let config = self.cap.as_ref().ok_or_else(|| IntakeError::NotFound("CAP is not configured".into()))?;
                cap::to_intake(&cap::parse(payload)?, config)?
            }
            Kind::Cad => {
                let config = self.cad.as_ref().ok_or_else(|| IntakeError::NotFound("CAD is not configured".into()))?;
                cad::to_intake(payload, config)?
            }
            Kind::Commerce => return Err(IntakeError::NotFound("commerce orders come over HTTP only".into())),
        };
        self.submit(kind, message).await
    }

    /// Does what a message asks: publishes its case through the [`Intake`] (counted `reported`
    /// or `duplicate`), or applies its source update to the case book (counted `updated`).
    async fn submit(&self, kind: Kind, message: Message) -> Result<Receipt, IntakeError> {
        match message {
            Message::Report(event) => {
                let size = serde_json::to_vec(&event).map(|b| b.len()).unwrap_or(usize::MAX);
                if size > self.max_report_bytes {
                    return Err(IntakeError::Invalid(format!(
                        "the case would be {size} bytes, over the bus's {}-byte limit for a report: too many area \
                         vertices or too much text",
                        self.max_report_bytes
                    )));
                }
                let submitted = self.intake.for_adapter(kind.name()).submit(&event).await?;
                let outcome = if submitted.duplicate { "duplicate" } else { "reported" };
                Ok(Receipt {
                    cases: vec![CaseReceipt { case_id: submitted.case_id, outcome: outcome.into(), state: None }],
                })
            }
            Message::Act { source, case_ids, action } => {
                let actor = Actor { kind: ActorKind::Source, id: source };
                let outcome = match &action {
                    Action::Cancel { .. } => "cancelled",
                    Action::Resolve { .. } => "resolved",
                    _ => "updated",
                };
                let mut cases = Vec::with_capacity(case_ids.len());
                for case_id in case_ids {
                    let record = self.cases.act(&case_id, &actor, &action).await?;
                    self.intake.metrics.report(kind.name(), "updated");
                    cases.push(CaseReceipt { case_id, outcome: outcome.into(), state: Some(record.state) });
                }
                Ok(Receipt { cases })
            }
        }
    }

    /// Keeps a refused message in `deadletter.adapter_<name>` with the reason, and counts it.
    async fn dead_letter(&self, kind: Kind, subject: &str, payload: Bytes, error: &IntakeError) {
        let reason = error.to_string();
        self.intake.for_adapter(kind.name()).dead_letter(error.status().1, &reason, subject, payload).await;
    }

    /// The HTTP routes of the configured adapters; `gate` says whose the Bearer keys of CAP and
    /// CAD senders are (commerce platforms sign instead). Bodies up to [`MAX_BODY`].
    pub fn router<S: Clone + Send + Sync + 'static>(self: &Arc<Self>, gate: Arc<dyn Gate>) -> Router<S> {
        let http = Http { adapters: self.clone(), gate };
        let mut router = Router::new();
        if self.cap.is_some() {
            router = router.route("/api/adapters/cap", post(post_cap));
        }
        if self.cad.is_some() {
            router = router.route("/api/adapters/cad", post(post_cad));
        }
        if self.commerce.is_some() {
            router = router.route("/api/adapters/commerce/{platform}/orders", post(post_order));
        }
        router.with_state(http)
    }
}

/// Which adapter, for metrics, dead letters and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Cap,
    Cad,
    Commerce,
}

impl Kind {
    /// The metrics' `adapter` label; dead letters go to `deadletter.adapter_<name>`.
    fn name(self) -> &'static str {
        match self {
            Self::Cap => "cap",
            Self::Cad => "cad",
            Self::Commerce => "commerce",
        }
    }
}

#[derive(Clone)]
struct Http {
    adapters: Arc<Adapters>,
    gate: Arc<dyn Gate>,
}

impl Http {
    /// A CAP or CAD sender must present a source key speaking for that adapter's source
    /// (`/cap`, `/cad`): a source key reaches only its own system's cases.
    fn authorize(&self, headers: &HeaderMap, source: &str) -> Result<(), IntakeError> {
        let key = web::bearer(headers).ok_or_else(|| {
            IntakeError::Unauthorized("an Authorization: Bearer <source key> header is required".into())
        })?;
        match self.gate.caller(&key) {
            Some(Caller::Source(s)) if s == source => Ok(()),
            Some(Caller::Source(s)) => {
                Err(IntakeError::Forbidden(format!("this key speaks for source {s:?}, not {source:?}")))
            }
            Some(_) => Err(IntakeError::Unauthorized("only a source key may submit source messages".into())),
            None => Err(IntakeError::Unauthorized("unknown API key".into())),
        }
    }

    /// Answers a message: the receipt (202 for a new case, 200 for an update), or the refusal,
    /// dead-lettered with the bytes received.
    async fn answer(&self, kind: Kind, path: &str, body: Bytes, result: Result<Receipt, IntakeError>) -> Response {
        match result {
            Ok(receipt) => {
                let new = receipt.cases.iter().any(|c| c.state.is_none());
                let status = if new { StatusCode::ACCEPTED } else { StatusCode::OK };
                (status, axum::Json(receipt)).into_response()
            }
            Err(e) => {
                self.adapters.dead_letter(kind, path, body, &e).await;
                e.into_response()
            }
        }
    }
}

/// Reads a body of at most [`MAX_BODY`] bytes. A `Content-Length` over it is refused at once,
/// without reading a byte; a body that turns out longer is refused when it passes the limit.
async fn read_body(headers: &HeaderMap, body: Body) -> (Bytes, Result<(), IntakeError>) {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return (Bytes::new(), Err(IntakeError::TooLarge));
    }
    match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(bytes) => (bytes, Ok(())),
        Err(e) => {
            let too_large = std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            let error = if too_large {
                IntakeError::TooLarge
            } else {
                IntakeError::Malformed(format!("cannot read the body: {e}"))
            };
            (Bytes::new(), Err(error))
        }
    }
}

fn content_type_is(headers: &HeaderMap, accepted: &[&str]) -> Result<(), IntakeError> {
    let given = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let essence = given.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    if accepted.contains(&essence.as_str()) {
        Ok(())
    } else {
        Err(IntakeError::UnsupportedMediaType(format!("Content-Type {given:?}: expected {}", accepted.join(" or "))))
    }
}

async fn post_cap(State(http): State<Http>, headers: HeaderMap, body: Body) -> Response {
    let (bytes, read) = read_body(&headers, body).await;
    let result = async {
        http.authorize(&headers, cap::SOURCE)?;
        content_type_is(&headers, &["application/cap+xml", "application/xml", "text/xml"])?;
        read?;
        http.adapters.handle(Kind::Cap, &bytes).await
    }
    .await;
    http.answer(Kind::Cap, "/api/adapters/cap", bytes, result).await
}

async fn post_cad(State(http): State<Http>, headers: HeaderMap, body: Body) -> Response {
    let (bytes, read) = read_body(&headers, body).await;
    let result = async {
        http.authorize(&headers, cad::SOURCE)?;
        content_type_is(&headers, &["application/json"])?;
        read?;
        http.adapters.handle(Kind::Cad, &bytes).await
    }
    .await;
    http.answer(Kind::Cad, "/api/adapters/cad", bytes, result).await
}

async fn post_order(
    State(http): State<Http>,
    Path(platform): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (bytes, read) = read_body(&headers, body).await;
    let path = format!("/api/adapters/commerce/{}/orders", linkbus_wire::truncated(platform.clone(), 64));
    let result = async {
        read?;
        let platforms = http
            .adapters
            .commerce
            .as_ref()
            .ok_or_else(|| IntakeError::NotFound("commerce is not configured".into()))?;
        let now = Timestamp::now().as_second();
        let delivery = platforms.verify(&platform, &headers, &bytes, now)?;
        content_type_is(&headers, &["application/json"])?;
        let message = platforms.to_intake(&platform, &bytes)?;
        platforms.claim(&delivery).await?;
        let submitted = http.adapters.submit(Kind::Commerce, message).await;
        if matches!(submitted, Err(IntakeError::Unavailable(_))) {
            platforms.release(&delivery).await;
        }
        submitted
    }
    .await;
    http.answer(Kind::Commerce, &path, bytes, result).await
}

/// How long a commerce delivery id is remembered: past it the timestamp is stale anyway.
pub const DELIVERY_MEMORY: Duration = Duration::from_secs(10 * 60);

/// A KV store keyed by delivery: `create` fails if the key exists, which is what detects a
/// replay across every linkbus replica.
pub(crate) async fn claim_once(store: &kv::Store, key: &str) -> Result<(), IntakeError> {
    match store.create(key, Bytes::from_static(b"1")).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
            Err(IntakeError::Conflict("this delivery was already received (replayed delivery id)".into()))
        }
        Err(e) => Err(IntakeError::Unavailable(format!("the delivery store is unavailable: {e}"))),
    }
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
        let payload = Bytes::from(
            serde_json::to_vec(event).map_err(|e| IntakeError::Unavailable(format!("encoding the event: {e}")))?,
        );
        let ack = nats::publish(&self.js, subject.clone(), &event.id, payload)
            .await
            .map_err(|e| IntakeError::Unavailable(e.to_string()))?;
        Ok(pending(subject, Some(ack)))
    }

    /// Keeps refused input in `deadletter.adapter_<name>` with the reason and its short `code`
    /// (`too_large`, `malformed`, `invalid`); `original` says where it came from (a subject, or
    /// `POST /open311/v2/requests.json`). Failing to, it logs: the sender has its error either way.
    pub async fn dead_letter(&self, code: &str, reason: &str, original: &str, payload: Bytes) {
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
                ack.await
                    .map_err(|e| {
                        IntakeError::Unavailable(format!("publish to {} not acknowledged: {e}", self.subject))
                    })?
                    .duplicate
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
