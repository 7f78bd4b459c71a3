//! What the CAP, CAD and commerce adapters share once a foreign message is understood
//! ([`Intake`]): a new case is published on `ingest.<system>.<category>` under its
//! source-derived id (JetStream drops a repeat within its duplicate window, so the same message
//! twice is one case); a source update (an update, withdrawal or completion of the source's own
//! earlier case) is applied to the case book as an action of a `source` actor. [`Adapters`]
//! serves them over HTTP ([`Adapters::router`]) and NATS ([`Adapters::start`]), and keeps every
//! refused message in `deadletter.adapter_<name>` with the reason.
//!
//! | route | body | auth |
//! |---|---|---|
//! | `POST /api/adapters/cap` | CAP 1.2 XML (`application/cap+xml`, `application/xml`, `text/xml`) | `Authorization: Bearer <source key>` |
//! | `POST /api/adapters/cad` | a [`cad::CadMessage`] (JSON) | `Authorization: Bearer <source key>` |
//! | `POST /api/adapters/commerce/{platform}/orders` | a [`commerce::OrderEvent`] (JSON) | HMAC signature ([`commerce`]) |
//!
//! Answers: `202` with a [`Receipt`] for a new case (routing follows), `200` with a [`Receipt`]
//! for a source update, else an [`ErrorBody`] with `400` (malformed: not XML/JSON, not UTF-8),
//! `401` (no or bad key or signature, stale timestamp), `403` (another source's case), `404` (no
//! such case yet), `409` (the case's state refuses it, or a replayed delivery), `413` (over
//! 256 KiB), `415` (wrong content type), `422` (valid syntax, invalid content) or `503` (the bus
//! is unavailable; retry).

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
use linkbus_bus::subjects;
use linkbus_bus::wire::{Action, Actor, ActorKind, CaseReport, CaseState, CloudEvent};
use linkbus_cases::book::{ActError, CaseBook};
use linkbus_cases::lifecycle::Refused;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cad::{self, CadConfig};
use crate::cap::{self, CapConfig};
use crate::commerce::{self, CommerceConfig};
use crate::metrics::AdapterMetrics;

/// Largest message accepted, bytes (HTTP body or NATS payload).
pub const MAX_BODY: usize = 256 * 1024;
/// NATS queue group of the adapter listeners: replicas share the messages.
pub const QUEUE_GROUP: &str = "linkbus-adapters";

/// What a source message asks linkbus to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Intake {
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    /// One entry per case.
    pub cases: Vec<CaseReceipt>,
}

/// What became of one case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

/// Checks the `Authorization` of a CAP or CAD request (the HTTP API's keys): the key's id when
/// it is a source key, else why not (answered 401).
pub type SourceKeys = Arc<dyn Fn(&HeaderMap) -> Result<String, String> + Send + Sync>;

/// The running CAP, CAD and commerce adapters of one linkbus process.
pub struct Adapters {
    js: jetstream::Context,
    cases: Arc<CaseBook>,
    cap: Option<CapConfig>,
    cad: Option<CadConfig>,
    commerce: Option<commerce::Platforms>,
    max_report_bytes: usize,
    metrics: AdapterMetrics,
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

/// Which adapters run, from `[adapters.cap]`, `[adapters.cad]`, `[adapters.commerce]`.
#[derive(Debug, Clone, Default)]
pub struct AdapterSettings {
    /// CAP alerts, when configured.
    pub cap: Option<CapConfig>,
    /// CAD incidents, when configured.
    pub cad: Option<CadConfig>,
    /// Commerce order webhooks, when configured.
    pub commerce: Option<CommerceConfig>,
    /// The largest case report the routers accept (`[router] max_payload_bytes`): a message
    /// whose case would be larger is refused here, not dead-lettered after a 202.
    pub max_report_bytes: usize,
}

impl Adapters {
    /// Starts the configured adapters' NATS listeners (until `shutdown`), counting into
    /// `metrics`; the HTTP routes come from [`Adapters::router`].
    pub async fn start(
        js: jetstream::Context,
        client: async_nats::Client,
        cases: Arc<CaseBook>,
        settings: AdapterSettings,
        metrics: AdapterMetrics,
        shutdown: CancellationToken,
    ) -> Result<(Arc<Self>, Vec<JoinHandle<()>>), String> {
        let commerce = match &settings.commerce {
            Some(config) => Some(commerce::Platforms::open(&js, config).await?),
            None => None,
        };
        let adapters = Arc::new(Self {
            js,
            cases,
            cap: settings.cap,
            cad: settings.cad,
            commerce,
            max_report_bytes: settings.max_report_bytes,
            metrics,
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
            let result = self.handle(kind, &msg.payload).await;
            let reply = match &result {
                Ok(receipt) => {
                    self.count(kind, receipt);
                    serde_json::to_vec(receipt)
                }
                Err(e) => {
                    self.dead_letter(kind, &msg.subject, msg.payload.clone(), e).await;
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
        let intake = match kind {
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
        self.submit(intake).await
    }

    /// Does what a message asks: publishes its case, or applies its source update.
    pub async fn submit(&self, intake: Intake) -> Result<Receipt, IntakeError> {
        match intake {
            Intake::Report(event) => {
                let subject = subjects::ingest(event.data.system, &event.data.category);
                let body = Bytes::from(
                    serde_json::to_vec(&event).map_err(|e| IntakeError::Unavailable(format!("encoding: {e}")))?,
                );
                if body.len() > self.max_report_bytes {
                    return Err(IntakeError::Invalid(format!(
                        "the case would be {} bytes, over the bus's {}-byte limit for a report: too many area \
                         vertices or too much text",
                        body.len(),
                        self.max_report_bytes
                    )));
                }
                let unavailable = |e: nats::BusError| IntakeError::Unavailable(e.to_string());
                let ack = nats::publish(&self.js, subject.clone(), &event.id, body).await.map_err(unavailable)?;
                let ack = ack.await.map_err(|e| IntakeError::Unavailable(format!("publish to {subject}: {e}")))?;
                let outcome = if ack.duplicate { "duplicate" } else { "reported" };
                Ok(Receipt { cases: vec![CaseReceipt { case_id: event.id, outcome: outcome.into(), state: None }] })
            }
            Intake::Act { source, case_ids, action } => {
                let actor = Actor { kind: ActorKind::Source, id: source };
                let outcome = match &action {
                    Action::Cancel { .. } => "cancelled",
                    Action::Resolve { .. } => "resolved",
                    _ => "updated",
                };
                let mut cases = Vec::with_capacity(case_ids.len());
                for case_id in case_ids {
                    let record = self.cases.act(&case_id, &actor, &action).await?;
                    cases.push(CaseReceipt { case_id, outcome: outcome.into(), state: Some(record.state) });
                }
                Ok(Receipt { cases })
            }
        }
    }

    /// Counts what an accepted message did to each of its cases.
    fn count(&self, kind: Kind, receipt: &Receipt) {
        for case in &receipt.cases {
            let outcome = match case.outcome.as_str() {
                "reported" | "duplicate" => case.outcome.as_str(),
                _ => "updated",
            };
            self.metrics.message(kind.name(), outcome);
        }
    }

    /// Keeps a refused message in `deadletter.adapter_<name>` with the reason, and counts it.
    async fn dead_letter(&self, kind: Kind, subject: &str, payload: Bytes, error: &IntakeError) {
        self.metrics.message(kind.name(), "refused");
        let stage = kind.stage();
        let reason = error.to_string();
        // The same bytes refused again for the same reason on the same route are one dead letter.
        let digest = Sha256::new().chain_update(subject).chain_update(&payload).chain_update(&reason).finalize();
        let msg_id = format!("{stage}:{}", &hex::encode(digest)[..32]);
        let letter = DeadLetter {
            stage,
            reason: &reason,
            code: error.status().1,
            original_subject: subject,
            original_msg_id: None,
            msg_id: &msg_id,
            payload,
        };
        let stored = match nats::publish_deadletter(&self.js, letter).await {
            Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match stored {
            Ok(()) => {
                let counter = match kind {
                    Kind::Cap => &self.metrics.deadletter_cap,
                    Kind::Cad => &self.metrics.deadletter_cad,
                    Kind::Commerce => &self.metrics.deadletter_commerce,
                };
                counter.inc(error.status().1);
                info!(adapter = kind.name(), code = error.status().1, %reason, "message refused and dead-lettered")
            }
            Err(e) => {
                warn!(adapter = kind.name(), error = %e, %reason, "cannot store the dead letter of a refused message")
            }
        }
    }

    /// The HTTP routes of the configured adapters; `keys` checks the Bearer keys of CAP and CAD
    /// senders (commerce platforms sign instead). Bodies up to [`MAX_BODY`].
    pub fn router<S: Clone + Send + Sync + 'static>(self: &Arc<Self>, keys: SourceKeys) -> Router<S> {
        let http = Http { adapters: self.clone(), keys };
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

/// Which adapter, for dead letters and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Cap,
    Cad,
    Commerce,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Cap => "cap",
            Self::Cad => "cad",
            Self::Commerce => "commerce",
        }
    }

    /// The dead letter stage, `deadletter.<stage>`.
    fn stage(self) -> &'static str {
        match self {
            Self::Cap => "adapter_cap",
            Self::Cad => "adapter_cad",
            Self::Commerce => "adapter_commerce",
        }
    }
}

#[derive(Clone)]
struct Http {
    adapters: Arc<Adapters>,
    keys: SourceKeys,
}

impl Http {
    fn authorize(&self, headers: &HeaderMap) -> Result<String, IntakeError> {
        (self.keys)(headers).map_err(IntakeError::Unauthorized)
    }

    /// Answers a message: the receipt (202 for a new case, 200 for an update), or the refusal,
    /// dead-lettered with the bytes received.
    async fn answer(&self, kind: Kind, path: &str, body: Bytes, result: Result<Receipt, IntakeError>) -> Response {
        match result {
            Ok(receipt) => {
                self.adapters.count(kind, &receipt);
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
        http.authorize(&headers)?;
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
        http.authorize(&headers)?;
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
    let path = format!("/api/adapters/commerce/{}/orders", nats::truncated(platform.clone(), 64));
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
        let intake = platforms.to_intake(&platform, &bytes)?;
        platforms.claim(&delivery).await?;
        let submitted = http.adapters.submit(intake).await;
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
