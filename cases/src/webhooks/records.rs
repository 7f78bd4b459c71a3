//! The delivery records: one per message and department in the `linkbus_webhook_deliveries`
//! bucket, rewritten after every attempt, and listed for the HTTP API.

use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use jiff::Timestamp;
use linkbus_bus::nats::{self, StreamSettings};
use linkbus_wire::is_token;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::error::WebhookError;

/// KV bucket of delivery records, keyed `<department>.<stream sequence>`.
pub const BUCKET_DELIVERIES: &str = "linkbus_webhook_deliveries";

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not yet accepted by the receiver; another attempt is due at `next_attempt_at`.
    Delivering,
    /// The receiver answered 2xx.
    Delivered,
    /// Given up after `max_attempts`; the message is on `deadletter.webhook`.
    Failed,
}

/// The record of one message's delivery to one department: the value under
/// `<department>.<stream sequence>` in the `linkbus_webhook_deliveries` bucket, rewritten after
/// every attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Delivery {
    /// The department.
    pub department: String,
    /// The message's sequence in `LINKBUS_ROUTED`.
    pub stream_sequence: u64,
    /// The case, from the CloudEvent's `data.case_id` or `subject`, when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_id: Option<String>,
    /// The CloudEvent's `type`, when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// The message's `Nats-Msg-Id`: the `Linkbus-Webhook-Id` header.
    pub msg_id: String,
    /// The NATS subject it was routed on.
    pub subject: String,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: i64,
    /// The HTTP status of the last answer, if there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_http_status: Option<u16>,
    /// Why the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the first attempt was made.
    #[schemars(schema_with = "timestamp_schema")]
    pub first_attempt_at: Timestamp,
    /// When the last attempt was made.
    #[schemars(schema_with = "timestamp_schema")]
    pub last_attempt_at: Timestamp,
    /// When the next attempt is due, while `delivering`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_timestamp_schema")]
    pub next_attempt_at: Option<Timestamp>,
    /// When the receiver accepted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_timestamp_schema")]
    pub delivered_at: Option<Timestamp>,
}

fn timestamp_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "string", "format": "date-time" })
}

fn optional_timestamp_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": ["string", "null"], "format": "date-time" })
}

/// Creates or updates the delivery records bucket: records kept as long as the streams keep
/// messages (`settings.max_age`), with the streams' replicas. Idempotent; [`run`](super::run) creates the
/// bucket with the default settings if it is missing.
pub async fn provision(js: &jetstream::Context, settings: &StreamSettings) -> Result<(), WebhookError> {
    let description = "webhook delivery records, per department and routed message";
    nats::provision_bucket(js, BUCKET_DELIVERIES, description, settings.max_age, settings)
        .await
        .map_err(|e| WebhookError::Bucket { bucket: BUCKET_DELIVERIES.into(), source: e.into() })
}

/// The delivery records of a department, oldest message first.
pub async fn deliveries(js: &jetstream::Context, department: &str) -> Result<Vec<Delivery>, WebhookError> {
    if !is_token(department, 64, b"-_") {
        return Err(WebhookError::Invalid { department: department.to_owned(), reason: "not a department id".into() });
    }
    let read_err = |e: async_nats::Error| WebhookError::Read { department: department.to_owned(), source: e };
    let stream = match js.get_stream(format!("KV_{BUCKET_DELIVERIES}")).await {
        Ok(stream) => stream,
        Err(e) if is_not_found(&e) => return Ok(Vec::new()),
        Err(e) => return Err(read_err(e.into())),
    };
    let reader: consumer::PullConsumer = stream
        .create_consumer(consumer::pull::Config {
            filter_subject: format!("$KV.{BUCKET_DELIVERIES}.{department}.>"),
            deliver_policy: consumer::DeliverPolicy::LastPerSubject,
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        })
        .await
        .map_err(|e| read_err(e.into()))?;
    let pending = usize::try_from(reader.cached_info().num_pending).unwrap_or(usize::MAX);
    let mut out = Vec::with_capacity(pending.min(10_000));
    let mut seen = 0;
    while seen < pending {
        let mut batch =
            reader.fetch().max_messages((pending - seen).min(1000)).messages().await.map_err(|e| read_err(e.into()))?;
        let before = seen;
        while let Some(msg) = batch.next().await {
            let msg = msg.map_err(read_err)?;
            seen += 1;
            let op = msg.headers.as_ref().and_then(|h| h.get("KV-Operation")).map(|v| v.as_str().to_owned());
            if op.is_some_and(|op| op == "DEL" || op == "PURGE") {
                continue;
            }
            match serde_json::from_slice::<Delivery>(&msg.payload) {
                Ok(delivery) => out.push(delivery),
                Err(e) => warn!(subject = %msg.subject, error = %e, "unreadable webhook delivery record"),
            }
        }
        if seen == before {
            break;
        }
    }
    out.sort_by_key(|d| d.stream_sequence);
    Ok(out)
}

/// True when JetStream says the stream does not exist.
pub(super) fn is_not_found(e: &jetstream::context::GetStreamError) -> bool {
    matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(js)
        if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
}
