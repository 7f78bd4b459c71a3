//! What the CAP, CAD and commerce adapters share: each of their messages is a new case or a
//! source update ([`Message`]: an update, withdrawal or completion of the source's own earlier
//! case, applied to the case book as an action of a `source` actor), taken the same way
//! ([`Messages::take`]) over HTTP and NATS, and answered with a [`Receipt`] or a refusal
//! ([`IntakeError`], dead-lettered with the bytes received).
//!
//! | route | body | auth |
//! |---|---|---|
//! | `POST /api/adapters/cap` | CAP 1.2 XML (`application/cap+xml`, `application/xml`, `text/xml`) | `Authorization: Bearer <source key of /cap>` |
//! | `POST /api/adapters/cad` | a [`crate::cad::CadMessage`] (JSON) | `Authorization: Bearer <source key of /cad>` |
//! | `POST /api/adapters/commerce/{platform}/orders` | a [`crate::commerce::OrderEvent`] (JSON) | HMAC signature ([`crate::commerce`]) |
//!
//! Answers: `202` with a [`Receipt`] for a new case (routing follows), `200` with a [`Receipt`]
//! for a source update, else an [`ErrorBody`](linkbus_wire::http_error::ErrorBody) with `400`
//! (malformed: not XML/JSON, not in its encoding), `401` (no or bad key or signature, stale
//! timestamp), `403` (another source's key or case), `404` (no such case yet), `409` (the case's
//! state refuses it, or a replayed delivery), `413` (over 256 KiB; a CAP alert over 4 MiB), `415`
//! (wrong content type), `422` (valid syntax, invalid content) or `503` (the bus is unavailable;
//! retry). Over NATS, the reply to a request is the same receipt or error body.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use futures::future::BoxFuture;
use linkbus_wire::{Action, CaseReport, CloudEvent};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::adapter::{self, Adapter, BuildContext, BuildError, RouteContext, Routed};
use crate::intake::{Caller, CaseReceipt, Gate, Intake, IntakeError, Message, Receipt};
use crate::kind::AdapterKind;
use crate::web;

/// Largest message accepted, bytes (HTTP body or NATS payload), unless the format says
/// otherwise ([`KeyedFormat::MAX_BODY`]).
pub const MAX_BODY: usize = 256 * 1024;
/// NATS queue group of the CAP and CAD listeners: replicas share the messages.
pub const QUEUE_GROUP: &str = "linkbus-adapters";

/// A format of messages posted with a source key and taken on a NATS subject: CAP alerts, CAD
/// incidents. Its adapter is [`Keyed`].
pub trait KeyedFormat: Send + Sync + 'static {
    /// Which adapter.
    const KIND: AdapterKind;
    /// The CloudEvents `source` of its cases, which a sender's source key must speak for.
    const SOURCE: &'static str;
    /// The route messages are posted to.
    const ROUTE: &'static str;
    /// The media types a posted message may have.
    const CONTENT_TYPES: &'static [&'static str];
    /// The largest message taken, bytes.
    const MAX_BODY: usize = MAX_BODY;
    /// The NATS subject messages are taken on.
    fn subject(&self) -> &str;
    /// What a message (its bytes as received) asks.
    fn read(&self, bytes: &[u8]) -> Result<Message, IntakeError>;
    /// What of a refused message its dead letter keeps: all of it, unless the format knows
    /// parts not worth keeping (a CAP alert's embedded resources).
    fn kept(bytes: Bytes) -> Bytes {
        bytes
    }
}

/// The running adapter of a [`KeyedFormat`]: its route and its NATS listener.
#[derive(Debug)]
pub struct Keyed<F> {
    format: F,
    messages: Messages,
}

impl<F: KeyedFormat> Keyed<F> {
    /// The adapter reading `format`, publishing through the service's intake.
    pub fn new(format: F, cx: &BuildContext) -> Self {
        Self { format, messages: Messages::new(cx, F::KIND) }
    }
}

impl<F: KeyedFormat> Adapter for Keyed<F> {
    fn kind(&self) -> AdapterKind {
        F::KIND
    }

    fn routes(self: Arc<Self>, cx: &RouteContext<'_>) -> Router {
        Router::new().route(F::ROUTE, post(post_keyed::<F>)).with_state((self, cx.gate.clone()))
    }

    fn listen(
        self: Arc<Self>,
        client: async_nats::Client,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, Result<Option<JoinHandle<()>>, BuildError>> {
        let subject = self.format.subject().to_owned();
        Box::pin(adapter::listen(F::KIND, client, subject, QUEUE_GROUP, shutdown, move |msg| {
            let keyed = self.clone();
            async move { keyed.messages.reply(msg, F::MAX_BODY, |bytes| keyed.format.read(bytes), F::kept).await }
        }))
    }
}

async fn post_keyed<F: KeyedFormat>(
    State((keyed, gate)): State<Routed<Keyed<F>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (bytes, received) = read_body(&headers, body, F::MAX_BODY).await;
    let result = async {
        authorize(gate.as_ref(), &headers, F::SOURCE)?;
        content_type_is(&headers, F::CONTENT_TYPES)?;
        received?;
        keyed.messages.take(keyed.format.read(&bytes)?).await
    }
    .await;
    let bytes = if result.is_err() { F::kept(bytes) } else { bytes };
    keyed.messages.answer(F::ROUTE, bytes, result).await
}

/// Takes the messages of one adapter (CAP, CAD or commerce).
#[derive(Debug, Clone)]
pub struct Messages {
    intake: Intake,
    max_report_bytes: usize,
}

impl Messages {
    /// The taker of `kind`'s messages, publishing through the service's intake.
    pub fn new(cx: &BuildContext, kind: AdapterKind) -> Self {
        Self { intake: cx.intake.for_adapter(kind), max_report_bytes: cx.max_report_bytes }
    }

    /// Does what a message asks: publishes its case through the [`Intake`] (counted `reported`
    /// or `duplicate`), or applies its source update to the case book (counted `updated`).
    /// A source update of cases none of which exists, carrying a report of its own, reports it.
    pub async fn take(&self, message: Message) -> Result<Receipt, IntakeError> {
        match message {
            Message::Report(event) => self.report(&event).await,
            Message::Act { source, case_ids, action, unseen } => {
                let outcome = match &action {
                    Action::Cancel { .. } => "cancelled",
                    Action::Resolve { .. } => "resolved",
                    _ => "updated",
                };
                let mut cases = Vec::with_capacity(case_ids.len());
                for case_id in case_ids {
                    let record = match self.intake.act(&case_id, &source, &action).await {
                        Ok(record) => record,
                        Err(IntakeError::NoCase { .. }) if unseen.is_some() => continue,
                        Err(e) => return Err(e),
                    };
                    cases.push(CaseReceipt {
                        case_id,
                        outcome: outcome.into(),
                        state: Some(record.state),
                        tracking: None,
                    });
                }
                match unseen {
                    Some(event) if cases.is_empty() => self.report(&event).await,
                    _ => Ok(Receipt { cases }),
                }
            }
        }
    }

    /// Publishes a new case (counted `reported` or `duplicate`).
    async fn report(&self, event: &CloudEvent<CaseReport>) -> Result<Receipt, IntakeError> {
        let size = serde_json::to_vec(event).map(|b| b.len()).unwrap_or(usize::MAX);
        if size > self.max_report_bytes {
            return Err(IntakeError::Invalid(format!(
                "the case would be {size} bytes, over the bus's {}-byte limit for a report: too many area vertices \
                 or too much text",
                self.max_report_bytes
            )));
        }
        let submitted = self.intake.submit(event).await?;
        let outcome = if submitted.duplicate { "duplicate" } else { "reported" };
        Ok(Receipt {
            cases: vec![CaseReceipt {
                case_id: submitted.case_id,
                outcome: outcome.into(),
                state: None,
                tracking: submitted.tracking,
            }],
        })
    }

    /// Answers an HTTP message: the receipt (202 for a new case, 200 for an update), or the
    /// refusal, dead-lettered with the bytes received on `route`.
    pub async fn answer(&self, route: &str, body: Bytes, result: Result<Receipt, IntakeError>) -> Response {
        match result {
            Ok(receipt) => {
                let new = receipt.cases.iter().any(|c| c.state.is_none());
                let status = if new { StatusCode::ACCEPTED } else { StatusCode::OK };
                (status, axum::Json(receipt)).into_response()
            }
            Err(e) => {
                self.intake.refuse(&e, route, body).await;
                e.into_response()
            }
        }
    }

    /// Takes a message of at most `limit` bytes received over NATS, read by `read`; the reply:
    /// the receipt, or the refusal's error body (the refusal dead-lettered with what `kept`
    /// keeps of the payload).
    pub async fn reply(
        &self,
        msg: async_nats::Message,
        limit: usize,
        read: impl FnOnce(&[u8]) -> Result<Message, IntakeError>,
        kept: impl FnOnce(Bytes) -> Bytes,
    ) -> Bytes {
        let result = if msg.payload.len() > limit {
            Err(IntakeError::TooLarge { limit })
        } else {
            match read(&msg.payload) {
                Ok(message) => self.take(message).await,
                Err(e) => Err(e),
            }
        };
        let body = match result {
            Ok(receipt) => serde_json::to_vec(&receipt),
            Err(e) => {
                self.intake.refuse(&e, &msg.subject, kept(msg.payload.clone())).await;
                serde_json::to_vec(&e.body())
            }
        };
        body.map(Bytes::from).unwrap_or_default()
    }
}

/// A CAP or CAD sender must present a source key speaking for that adapter's source (`/cap`,
/// `/cad`): a source key reaches only its own system's cases.
fn authorize(gate: &dyn Gate, headers: &HeaderMap, source: &str) -> Result<(), IntakeError> {
    let key = web::bearer(headers)
        .ok_or_else(|| IntakeError::Unauthorized("an Authorization: Bearer <source key> header is required".into()))?;
    match gate.caller(&key) {
        Some(Caller::Source(s)) if s == source => Ok(()),
        Some(Caller::Source(s)) => {
            Err(IntakeError::Forbidden(format!("this key speaks for source {s:?}, not {source:?}")))
        }
        Some(_) => Err(IntakeError::Unauthorized("only a source key may submit source messages".into())),
        None => Err(IntakeError::Unauthorized("unknown API key".into())),
    }
}

/// Reads a body of at most `limit` bytes. A `Content-Length` over it is refused at once,
/// without reading a byte; a body that turns out longer is refused when it passes the limit.
pub(crate) async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> (Bytes, Result<(), IntakeError>) {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let too_large = IntakeError::TooLarge { limit };
    if declared.is_some_and(|n| n > limit as u64) {
        return (Bytes::new(), Err(too_large));
    }
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => (bytes, Ok(())),
        Err(e) => {
            let over = std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            let error = if over { too_large } else { IntakeError::Malformed(format!("cannot read the body: {e}")) };
            (Bytes::new(), Err(error))
        }
    }
}

/// Refuses a `Content-Type` whose media type is not one of `accepted`.
pub(crate) fn content_type_is(headers: &HeaderMap, accepted: &[&str]) -> Result<(), IntakeError> {
    if accepted.contains(&web::media_type(headers).as_str()) {
        return Ok(());
    }
    let given = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    Err(IntakeError::UnsupportedMediaType(format!("Content-Type {given:?}: expected {}", accepted.join(" or "))))
}
