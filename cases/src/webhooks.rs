//! Webhooks: departments without NATS receive their cases as signed HTTP POSTs.
//!
//! A webhook is configured per department ([`WebhookConfig`]). [`run`] reads a durable JetStream
//! pull consumer `webhook-<department>` on stream `LINKBUS_ROUTED` with filter subject
//! `routed.dept.<department>.>` — every message the department would receive over NATS: routed
//! cases (`org.linkbus.case.routed`) and, with the closed loop, assignments
//! (`org.linkbus.case.assigned`) and case events (`org.linkbus.case.event`) — and POSTs each to
//! the department's URL, one at a time. A message is acknowledged only once the receiver answered
//! 2xx; until then JetStream keeps it, so a receiver that is down, or a linkbus restart, loses
//! nothing. Each attempt is recorded in the KV bucket `linkbus_webhook_deliveries` under
//! `<department>.<stream sequence>` ([`Delivery`], listed by [`deliveries`]). After
//! `max_attempts` failed attempts the message goes to `deadletter.webhook` with the reason and
//! its original bytes, and is given up.
//!
//! # The contract for receivers
//!
//! ```text
//! POST <the configured URL>
//! Content-Type: application/cloudevents+json
//! Linkbus-Webhook-Id: sf311-4292128:routed:dept:puc-sewer-ops
//! Linkbus-Timestamp: 1733932862
//! Linkbus-Signature: sha256=3f1c…(64 lowercase hex digits)
//! Linkbus-Attempt: 1
//!
//! {"specversion":"1.0","id":"sf311-4292128:routed","type":"org.linkbus.case.routed",…}
//! ```
//!
//! - **Body**: the CloudEvent exactly as it is on the bus (`docs/wire.md`), byte for byte.
//! - **Verify the signature** before anything else: HMAC-SHA256, keyed with the shared secret,
//!   over the bytes of the `Linkbus-Timestamp` value, a `.`, then the raw body as received
//!   (before any JSON parsing); lowercase hex; compare with what follows `sha256=` in constant
//!   time. Refuse (401) a mismatch.
//! - **Refuse stale requests**: a `Linkbus-Timestamp` (unix seconds, set at each attempt) more
//!   than 5 minutes from your clock, so a captured request cannot be replayed later.
//! - **Deduplicate on `Linkbus-Webhook-Id`**: it is the message's `Nats-Msg-Id`, the same on every
//!   retry of that message (`Linkbus-Attempt` counts the attempts, from 1) and never shared by two
//!   messages. Delivery is at least once: a 2xx lost on the way back, or linkbus stopping between
//!   your answer and its bookkeeping, brings the same message again. Answer a repeat with 2xx and
//!   store nothing new.
//! - **Answer 2xx only once the message is stored.** Anything else — an error status, a redirect
//!   (never followed), no answer within the timeout (10 s by default) — is retried later, with
//!   the configured backoff (1 s, 5 s, 30 s, 2 min, 10 min, 30 min, then hourly by default; 12
//!   attempts). Only the status matters; at most 4 KiB of the response body is read, for the
//!   delivery record.
//! - **Order** is not guaranteed: a message waiting for a retry does not hold back the next one.
//!
//! In Python, for instance:
//!
//! ```text
//! import hashlib, hmac, time
//!
//! def verified(secret: bytes, headers, body: bytes) -> bool:
//!     ts = headers["Linkbus-Timestamp"]
//!     if abs(time.time() - int(ts)) > 300:
//!         return False
//!     mac = hmac.new(secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
//!     return hmac.compare_digest("sha256=" + mac, headers["Linkbus-Signature"])
//! ```
//!
//! [`verify`] does the same in Rust.
//!
//! # Retries and restarts
//!
//! The retry schedule is kept by JetStream, not in memory: a failed attempt is negatively
//! acknowledged with the delay before the next (JetStream's consumer `backoff` is not used: it
//! applies only to acknowledgement timeouts, not to naks, and it replaces `ack_wait` by its first
//! delay, which would redeliver a message while its POST is still in flight). The consumer's
//! `ack_wait` is the HTTP timeout plus 30 s, so a linkbus that dies mid-attempt has the message
//! redelivered after that. Attempts are counted by JetStream's delivery count and limited here,
//! not by the consumer's `max_deliver` (unlimited): a process that died during the last attempt,
//! or could not store the dead letter, still dead-letters the message on the next delivery
//! instead of JetStream dropping it silently, and a new `max_attempts` or `backoff` in the
//! configuration applies at once.

use std::error::Error as _;
use std::fmt;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer, kv};
use bytes::Bytes;
use futures::StreamExt;
use hmac::{Hmac, Mac};
use jiff::{SignedDuration, Timestamp};
use linkbus_bus::nats::{self, DeadLetter, StreamSettings};
use linkbus_wire::is_token;
use linkbus_wire::subjects;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::metrics::WebhookMetrics;

/// KV bucket of delivery records, keyed `<department>.<stream sequence>`.
pub const BUCKET_DELIVERIES: &str = "linkbus_webhook_deliveries";
/// Header: the message's `Nats-Msg-Id`, stable across retries.
pub const HEADER_WEBHOOK_ID: &str = "Linkbus-Webhook-Id";
/// Header: unix seconds when the attempt was made; part of the signed bytes.
pub const HEADER_TIMESTAMP: &str = "Linkbus-Timestamp";
/// Header: `sha256=<hex HMAC-SHA256 over "<timestamp>.<body>">`.
pub const HEADER_SIGNATURE: &str = "Linkbus-Signature";
/// Header: the attempt number, from 1.
pub const HEADER_ATTEMPT: &str = "Linkbus-Attempt";
/// Content type of every POST: a CloudEvent in JSON structured mode.
pub const CONTENT_TYPE: &str = "application/cloudevents+json";
/// Dead-letter stage (`deadletter.webhook`) of messages given up.
pub const STAGE: &str = "webhook";
/// Dead-letter reason code of messages given up.
pub const REASON_CODE: &str = "undeliverable";
/// How far a receiver should let `Linkbus-Timestamp` be from its clock ([`verify`]).
pub const TIMESTAMP_TOLERANCE: Duration = Duration::from_secs(5 * 60);
/// At most this much of a response body is read.
pub const MAX_RESPONSE_BYTES: usize = 4096;

/// What `ack_wait` adds to the HTTP timeout: time for the status record and the ack.
const ACK_MARGIN: Duration = Duration::from_secs(30);
/// How long one pull waits for a message.
const PULL_WAIT: Duration = Duration::from_secs(30);
/// Delay before redelivery when the bookkeeping (not the receiver) failed.
const RETRY_BOOKKEEPING: Duration = Duration::from_secs(1);
/// Longest error text kept in a delivery record.
const MAX_ERROR_LEN: usize = 512;

/// One department's webhook: an entry of `[[webhooks]]` in the configuration file.
///
/// ```toml
/// [[webhooks]]
/// department = "puc-sewer-ops"
/// url = "https://sewer.example.org/linkbus"
/// secret_env = "LINKBUS_WEBHOOK_SECRET_PUC_SEWER_OPS"
/// timeout_ms = 10000
/// max_attempts = 12
/// backoff_ms = [1000, 5000, 30000, 120000, 600000, 1800000, 3600000]
/// ```
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The department id (as in the region's `departments.json`): its cases, on
    /// `routed.dept.<department>.>`, are delivered.
    pub department: String,
    /// Where to POST, `http://` or `https://` (https in production: the body holds the
    /// reporter's contact).
    pub url: String,
    /// The shared secret that signs each request. Leave empty and set `secret_env` to keep it out
    /// of the file.
    #[serde(default)]
    pub secret: String,
    /// Name of an environment variable holding the secret, read when the webhook starts; used
    /// when `secret` is empty (setting both is refused).
    #[serde(default)]
    pub secret_env: Option<String>,
    /// How long to wait for the receiver's answer, from connecting to the end of the response
    /// headers (`timeout_ms` in the file, milliseconds).
    #[serde(default = "default_timeout", rename = "timeout_ms", deserialize_with = "millis")]
    pub timeout: Duration,
    /// Attempts before a message is given up and dead-lettered, the first included.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: i64,
    /// Delay after the n-th failed attempt before the next; the last repeats
    /// (`backoff_ms` in the file, milliseconds).
    #[serde(default = "default_backoff", rename = "backoff_ms", deserialize_with = "millis_list")]
    pub backoff: Vec<Duration>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_max_attempts() -> i64 {
    12
}

fn default_backoff() -> Vec<Duration> {
    [1, 5, 30, 120, 600, 1800, 3600].into_iter().map(Duration::from_secs).collect()
}

fn millis<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_millis)
}

fn millis_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
    Vec::<u64>::deserialize(d).map(|v| v.into_iter().map(Duration::from_millis).collect())
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("department", &self.department)
            .field("url", &self.url)
            .field("secret", &if self.secret.is_empty() { "" } else { "<redacted>" })
            .field("secret_env", &self.secret_env)
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .finish()
    }
}

impl WebhookConfig {
    /// A webhook with the default timeout, attempts and backoff.
    pub fn new(department: &str, url: &str, secret: &str) -> Self {
        Self {
            department: department.to_owned(),
            url: url.to_owned(),
            secret: secret.to_owned(),
            secret_env: None,
            timeout: default_timeout(),
            max_attempts: default_max_attempts(),
            backoff: default_backoff(),
        }
    }

    /// Checks the department id, the URL, the secret (reading `secret_env` if named) and the
    /// retry settings; the error says which and why.
    pub fn validate(&self) -> Result<(), String> {
        if !is_token(&self.department, 64, b"-_") {
            return Err(format!("department {:?} must be 1-64 ASCII letters, digits, '-' or '_'", self.department));
        }
        let url = reqwest::Url::parse(&self.url).map_err(|e| format!("url {:?}: {e}", self.url))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
            return Err(format!("url {:?} must be http:// or https:// with a host", self.url));
        }
        self.signing_secret()?;
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(300) {
            return Err("timeout_ms must be 1 ms to 5 minutes".into());
        }
        if self.max_attempts < 1 {
            return Err("max_attempts must be at least 1".into());
        }
        if self.backoff.is_empty() || self.backoff.iter().any(|d| d.is_zero() || *d > Duration::from_secs(86_400)) {
            return Err("backoff_ms must list at least one delay, each 1 ms to 1 day".into());
        }
        Ok(())
    }

    /// The secret: `secret`, or the value of the environment variable `secret_env` names.
    pub fn signing_secret(&self) -> Result<String, String> {
        resolve_secret(&self.secret, self.secret_env.as_deref())
    }

    /// `webhook-<department>`: the durable consumer.
    pub fn durable(&self) -> String {
        format!("webhook-{}", self.department)
    }

    /// The delay after failed attempt number `attempt` (from 1): its backoff entry, the last
    /// one repeating.
    pub fn delay_after(&self, attempt: i64) -> Duration {
        let index = usize::try_from(attempt.saturating_sub(1)).unwrap_or(0);
        self.backoff.get(index).or(self.backoff.last()).copied().unwrap_or(Duration::from_secs(1))
    }
}

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

/// What went wrong setting up a webhook or reading its records (failed deliveries are retried,
/// not returned).
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The configuration is unusable.
    #[error("invalid webhook for department {department}: {reason}")]
    Invalid {
        /// The department as configured.
        department: String,
        /// What is wrong.
        reason: String,
    },
    /// The HTTP client could not be built (TLS set-up).
    #[error("cannot build the http client for the webhook of {department}: {source}")]
    Client {
        /// The department.
        department: String,
        /// The client error.
        #[source]
        source: reqwest::Error,
    },
    /// The delivery records bucket could not be created or opened.
    #[error("cannot open bucket {bucket}: {source}")]
    Bucket {
        /// The bucket.
        bucket: String,
        /// The JetStream error.
        #[source]
        source: async_nats::Error,
    },
    /// The routed stream or the department's consumer could not be opened.
    #[error("cannot open consumer {durable} on {stream}: {source}")]
    Consumer {
        /// Stream name.
        stream: String,
        /// Consumer name.
        durable: String,
        /// The JetStream error.
        #[source]
        source: async_nats::Error,
    },
    /// The delivery records could not be read.
    #[error("cannot read the webhook deliveries of {department}: {source}")]
    Read {
        /// The department.
        department: String,
        /// The JetStream error.
        #[source]
        source: async_nats::Error,
    },
}

/// A shared secret given in the configuration either as `secret` or as the name of the
/// environment variable holding it (`secret_env`), not both.
pub fn resolve_secret(secret: &str, secret_env: Option<&str>) -> Result<String, String> {
    match (secret.is_empty(), secret_env) {
        (false, None) => Ok(secret.to_owned()),
        (false, Some(_)) => Err("set secret or secret_env, not both".into()),
        (true, None) => Err("secret (or secret_env) is required".into()),
        (true, Some(var)) => match std::env::var(var) {
            Ok(value) if !value.is_empty() => Ok(value),
            _ => Err(format!("secret_env names {var:?}, which is not set or empty")),
        },
    }
}

/// `Linkbus-Signature` for a body sent at `timestamp`: `sha256=` and the lowercase hex
/// HMAC-SHA256, keyed with `secret`, of `"<timestamp>.<body>"`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(mac(secret, timestamp, body).finalize().into_bytes()))
}

/// What a receiver does with a request ([module docs](self)): true when `signature` is the
/// signature of `body` at `timestamp` (the header values as received) with `secret`, compared in
/// constant time, and `timestamp` is within [`TIMESTAMP_TOLERANCE`] of `now` (unix seconds).
pub fn verify(secret: &[u8], timestamp: &str, body: &[u8], signature: &str, now: i64) -> bool {
    let Ok(ts) = timestamp.parse::<i64>() else { return false };
    if ts.to_string() != timestamp || now.abs_diff(ts) > TIMESTAMP_TOLERANCE.as_secs() {
        return false;
    }
    let Some(given) = signature.strip_prefix("sha256=").and_then(|h| hex::decode(h).ok()) else { return false };
    mac(secret, ts, body).verify_slice(&given).is_ok()
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("hmac accepts any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Creates or updates the delivery records bucket: records kept as long as the streams keep
/// messages (`settings.max_age`), with the streams' replicas. Idempotent; [`run`] creates the
/// bucket with the default settings if it is missing.
pub async fn provision(js: &jetstream::Context, settings: &StreamSettings) -> Result<(), WebhookError> {
    let description = "webhook delivery records, per department and routed message";
    nats::provision_bucket(js, BUCKET_DELIVERIES, description, settings.max_age, settings.replicas)
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

fn is_not_found(e: &jetstream::context::GetStreamError) -> bool {
    matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(js)
        if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
}

/// Delivers the department's messages until `shutdown`; an attempt under way when it comes is
/// finished (it takes at most the timeout) before returning. Counts into metrics registered
/// nowhere (see [`run_with_metrics`]).
pub async fn run(
    js: jetstream::Context,
    config: WebhookConfig,
    shutdown: CancellationToken,
) -> Result<(), WebhookError> {
    run_with_metrics(js, config, WebhookMetrics::unregistered(), shutdown).await
}

/// [`run`], counting each attempt's outcome (and the dead letters) into `metrics`.
pub async fn run_with_metrics(
    js: jetstream::Context,
    config: WebhookConfig,
    metrics: WebhookMetrics,
    shutdown: CancellationToken,
) -> Result<(), WebhookError> {
    let invalid = |reason: String| WebhookError::Invalid { department: config.department.clone(), reason };
    config.validate().map_err(invalid)?;
    let secret = config.signing_secret().map_err(invalid)?;
    let url = reqwest::Url::parse(&config.url).map_err(|e| invalid(e.to_string()))?;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(config.timeout)
        .connect_timeout(config.timeout)
        .user_agent(concat!("linkbus-webhook/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| WebhookError::Client { department: config.department.clone(), source: e })?;

    match js.get_stream(format!("KV_{BUCKET_DELIVERIES}")).await {
        Ok(_) => {}
        Err(e) if is_not_found(&e) => provision(&js, &StreamSettings::default()).await?,
        Err(e) => return Err(WebhookError::Bucket { bucket: BUCKET_DELIVERIES.into(), source: e.into() }),
    }
    let records = js
        .get_key_value(BUCKET_DELIVERIES)
        .await
        .map_err(|e| WebhookError::Bucket { bucket: BUCKET_DELIVERIES.into(), source: e.into() })?;

    let durable = config.durable();
    let consumer_err = |source: async_nats::Error| WebhookError::Consumer {
        stream: nats::STREAM_ROUTED.into(),
        durable: durable.clone(),
        source,
    };
    let routed = js.get_stream(nats::STREAM_ROUTED).await.map_err(|e| consumer_err(e.into()))?;
    // Created or updated, so that a new timeout changes the ack wait.
    let consumer: consumer::PullConsumer = routed
        .create_consumer(consumer::pull::Config {
            durable_name: Some(durable.clone()),
            description: Some(format!("linkbus: webhook of department {}", config.department)),
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: config.timeout + ACK_MARGIN,
            // Attempts are counted and limited here (see the module docs), never dropped by JetStream.
            max_deliver: -1,
            max_ack_pending: 1000,
            filter_subject: subjects::routed_department(&config.department, ">"),
            ..Default::default()
        })
        .await
        .map_err(|e| consumer_err(e.into()))?;

    let worker = Worker {
        js: &js,
        records: &records,
        client: &client,
        url: &url,
        secret: secret.as_bytes(),
        config: &config,
        metrics: &metrics,
    };
    info!(department = %config.department, durable = %durable, "webhook delivering");
    while !shutdown.is_cancelled() {
        let batch = tokio::select! {
            _ = shutdown.cancelled() => break,
            batch = consumer.batch().max_messages(1).expires(PULL_WAIT).messages() => batch,
        };
        let mut batch = match batch {
            Ok(batch) => batch,
            Err(e) => {
                warn!(department = %config.department, error = %e, "cannot pull webhook messages; retrying");
                pause(&shutdown, RETRY_BOOKKEEPING).await;
                continue;
            }
        };
        let next = tokio::select! {
            _ = shutdown.cancelled() => break,
            next = batch.next() => next,
        };
        match next {
            Some(Ok(msg)) => worker.handle(msg).await,
            Some(Err(e)) => {
                warn!(department = %config.department, error = %e, "webhook pull failed; retrying");
                pause(&shutdown, RETRY_BOOKKEEPING).await;
            }
            None => {}
        }
    }
    info!(department = %config.department, "webhook stopped");
    Ok(())
}

async fn pause(shutdown: &CancellationToken, delay: Duration) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(delay) => {}
    }
}

/// What delivering one message needs.
struct Worker<'a> {
    js: &'a jetstream::Context,
    records: &'a kv::Store,
    client: &'a reqwest::Client,
    url: &'a reqwest::Url,
    secret: &'a [u8],
    config: &'a WebhookConfig,
    metrics: &'a WebhookMetrics,
}

/// A failed attempt: the status, if the receiver answered, and what went wrong.
struct Failure {
    status: Option<u16>,
    error: String,
}

impl Worker<'_> {
    async fn handle(&self, msg: jetstream::Message) {
        let department = &self.config.department;
        let (sequence, attempt) = match msg.info() {
            Ok(info) => (info.stream_sequence, info.delivered.max(1)),
            Err(e) => {
                warn!(department = %department, error = %e, "webhook message without delivery info; left for redelivery");
                return;
            }
        };
        let key = format!("{department}.{sequence}");
        let previous = self.load(&key).await;
        match previous.as_ref().map(|d| d.status) {
            // Delivered (or given up) by an earlier delivery whose ack was lost: do not send it again.
            Some(DeliveryStatus::Delivered) => return settle(&msg, AckKind::Ack, &key).await,
            Some(DeliveryStatus::Failed) => return settle(&msg, AckKind::Term, &key).await,
            Some(DeliveryStatus::Delivering) | None => {}
        }
        let mut record = previous.unwrap_or_else(|| self.new_record(&msg, sequence));
        if attempt > self.config.max_attempts {
            // The last attempt was made, but linkbus stopped (or the dead letter failed) before it
            // was given up: give it up now, without another attempt.
            record.attempts = record.attempts.max(attempt - 1);
            let failure = Failure {
                status: record.last_http_status,
                error: record.last_error.clone().unwrap_or_else(|| "outcome of the last attempt unknown".into()),
            };
            return self.give_up(&msg, &key, record, &failure).await;
        }

        let now = Timestamp::now();
        let outcome = self.post(&msg, &record.msg_id, now.as_second(), attempt).await;
        record.attempts = attempt;
        record.last_attempt_at = now;
        match outcome {
            Ok(status) => {
                debug!(department = %department, key, attempt, status, "webhook delivered");
                record.status = DeliveryStatus::Delivered;
                record.last_http_status = Some(status);
                record.last_error = None;
                record.next_attempt_at = None;
                record.delivered_at = Some(now);
                self.metrics.delivered.inc();
                self.save(&key, &record).await;
                if let Err(e) = msg.double_ack().await {
                    warn!(department = %department, key, error = %e, "webhook ack failed; a redelivery will find it delivered");
                }
            }
            Err(failure) if attempt >= self.config.max_attempts => self.give_up(&msg, &key, record, &failure).await,
            Err(failure) => {
                let delay = self.config.delay_after(attempt);
                self.metrics.retried.inc();
                warn!(department = %department, key, attempt, error = %failure.error, retry_in = ?delay, "webhook attempt failed");
                record.status = DeliveryStatus::Delivering;
                record.last_http_status = failure.status;
                record.last_error = Some(failure.error);
                record.next_attempt_at = SignedDuration::try_from(delay).ok().and_then(|d| now.checked_add(d).ok());
                self.save(&key, &record).await;
                if let Err(e) = msg.ack_with(AckKind::Nak(Some(delay))).await {
                    warn!(department = %department, key, error = %e, "webhook nak failed; redelivered after the ack wait");
                }
            }
        }
    }

    /// Dead-letters the message, records it as failed and terminates it; if the dead letter
    /// cannot be stored, leaves the message for redelivery, which tries again.
    async fn give_up(&self, msg: &jetstream::Message, key: &str, mut record: Delivery, failure: &Failure) {
        let department = &self.config.department;
        let attempts = record.attempts.max(1);
        let plural = if attempts == 1 { "" } else { "s" };
        let reason =
            format!("webhook of department {department} failed {attempts} attempt{plural}; last: {}", failure.error);
        warn!(department = %department, key, reason, "webhook delivery given up");
        let letter_id = format!("{STAGE}:{department}:{}", record.stream_sequence);
        let letter = DeadLetter {
            stage: STAGE,
            reason: &reason,
            code: REASON_CODE,
            original_subject: &msg.subject,
            original_msg_id: Some(&record.msg_id),
            msg_id: &letter_id,
            payload: msg.payload.clone(),
        };
        let stored = nats::store_deadletter(self.js, letter).await;
        record.last_http_status = failure.status;
        record.last_error = Some(failure.error.clone());
        record.next_attempt_at = None;
        if let Err(e) = stored {
            warn!(department = %department, key, error = %e, "cannot dead-letter an undeliverable webhook message; retrying");
            record.status = DeliveryStatus::Delivering;
            self.save(key, &record).await;
            let _ = msg.ack_with(AckKind::Nak(Some(RETRY_BOOKKEEPING))).await;
            return;
        }
        record.status = DeliveryStatus::Failed;
        self.metrics.failed.inc();
        self.metrics.deadletter.inc(REASON_CODE);
        self.save(key, &record).await;
        settle(msg, AckKind::Term, key).await;
    }

    /// POSTs the message; `Ok` with the status when the receiver answered 2xx.
    async fn post(
        &self,
        msg: &jetstream::Message,
        webhook_id: &str,
        timestamp: i64,
        attempt: i64,
    ) -> Result<u16, Failure> {
        let signature = sign(self.secret, timestamp, &msg.payload);
        let sent = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .header(HEADER_WEBHOOK_ID, webhook_id)
            .header(HEADER_TIMESTAMP, timestamp.to_string())
            .header(HEADER_SIGNATURE, signature)
            .header(HEADER_ATTEMPT, attempt.to_string())
            .body(msg.payload.clone())
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(e) => return Err(Failure { status: None, error: describe(e, self.config.timeout) }),
        };
        let status = response.status();
        let body = read_capped(&mut response).await;
        if status.is_success() {
            return Ok(status.as_u16());
        }
        let mut error = format!("http status {status}");
        let text = one_line(&String::from_utf8_lossy(&body[..body.len().min(200)]));
        if !text.is_empty() {
            error.push_str(": ");
            error.push_str(&text);
        }
        Err(Failure { status: Some(status.as_u16()), error: bounded(error) })
    }

    fn new_record(&self, msg: &jetstream::Message, sequence: u64) -> Delivery {
        let event = serde_json::from_slice::<serde_json::Value>(&msg.payload).ok();
        let text = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()).map(str::to_owned);
        let case_id = event.as_ref().and_then(|e| text(e.pointer("/data/case_id")).or_else(|| text(e.get("subject"))));
        let event_type = event.as_ref().and_then(|e| text(e.get("type")));
        let msg_id = msg
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.as_str().to_owned())
            .unwrap_or_else(|| format!("{}:{sequence}", nats::STREAM_ROUTED));
        let now = Timestamp::now();
        Delivery {
            department: self.config.department.clone(),
            stream_sequence: sequence,
            case_id,
            event_type,
            msg_id,
            subject: msg.subject.to_string(),
            status: DeliveryStatus::Delivering,
            attempts: 0,
            last_http_status: None,
            last_error: None,
            first_attempt_at: now,
            last_attempt_at: now,
            next_attempt_at: None,
            delivered_at: None,
        }
    }

    async fn load(&self, key: &str) -> Option<Delivery> {
        match self.records.get(key).await {
            Ok(Some(value)) => serde_json::from_slice(&value)
                .map_err(|e| warn!(key, error = %e, "unreadable webhook delivery record; starting afresh"))
                .ok(),
            Ok(None) => None,
            Err(e) => {
                warn!(key, error = %e, "cannot read a webhook delivery record");
                None
            }
        }
    }

    async fn save(&self, key: &str, record: &Delivery) {
        let value = match serde_json::to_vec(record) {
            Ok(value) => Bytes::from(value),
            Err(e) => return warn!(key, error = %e, "cannot encode a webhook delivery record"),
        };
        if let Err(e) = self.records.put(key, value).await {
            warn!(key, error = %e, "cannot store a webhook delivery record");
        }
    }
}

/// Acks or terminates, waiting for JetStream to confirm.
async fn settle(msg: &jetstream::Message, kind: AckKind, key: &str) {
    if let Err(e) = msg.double_ack_with(kind).await {
        warn!(key, error = %e, "webhook ack failed; the message will come again");
    }
}

/// Reads at most [`MAX_RESPONSE_BYTES`] of a response body; errors end the read.
async fn read_capped(response: &mut reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < MAX_RESPONSE_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk[..chunk.len().min(MAX_RESPONSE_BYTES - body.len())]),
            Ok(None) | Err(_) => break,
        }
    }
    body
}

/// A request error in words, without the URL, with its causes.
fn describe(e: reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("no answer within {timeout:?}");
    }
    let e = e.without_url();
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let c_text = c.to_string();
        if !text.contains(&c_text) {
            text.push_str(": ");
            text.push_str(&c_text);
        }
        cause = c.source();
    }
    bounded(one_line(&text))
}

fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect::<String>().trim().to_owned()
}

fn bounded(text: String) -> String {
    linkbus_wire::truncated(text, MAX_ERROR_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_reject_tampering_and_stale_timestamps() {
        let body = br#"{"id":"x"}"#;
        let sig = sign(b"s3cret", 1_700_000_000, body);
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64);
        assert!(verify(b"s3cret", "1700000000", body, &sig, 1_700_000_100));
        assert!(!verify(b"other", "1700000000", body, &sig, 1_700_000_100));
        assert!(!verify(b"s3cret", "1700000000", br#"{"id":"y"}"#, &sig, 1_700_000_100));
        assert!(!verify(b"s3cret", "1700000001", body, &sig, 1_700_000_100));
        assert!(!verify(b"s3cret", "1700000000", body, &sig, 1_700_000_000 + 301));
        assert!(!verify(b"s3cret", "01700000000", body, &sig, 1_700_000_100));
    }

    #[test]
    fn signature_matches_a_known_vector() {
        // python3 -c 'import hmac, hashlib; print(hmac.new(b"s3cret", b"1700000000.{\"id\":\"x\"}", hashlib.sha256).hexdigest())'
        assert_eq!(
            sign(b"s3cret", 1_700_000_000, br#"{"id":"x"}"#),
            "sha256=2382c1d0968a5e57238c68de957f44d87e83d3049a5588ec251442ca372b8aec"
        );
    }

    #[test]
    fn config_parses_with_defaults_and_validates() {
        let config: WebhookConfig =
            toml::from_str("department = \"puc-sewer-ops\"\nurl = \"https://example.org/hook\"\nsecret = \"k\"\n")
                .expect("parses");
        assert_eq!(config, WebhookConfig::new("puc-sewer-ops", "https://example.org/hook", "k"));
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.durable(), "webhook-puc-sewer-ops");
        assert_eq!(config.delay_after(1), Duration::from_secs(1));
        assert_eq!(config.delay_after(7), Duration::from_secs(3600));
        assert_eq!(config.delay_after(50), Duration::from_secs(3600));
        assert!(!format!("{config:?}").contains("\"k\""), "the secret is not printed");

        let tuned: WebhookConfig = toml::from_str(
            "department = \"d\"\nurl = \"http://127.0.0.1:9/x\"\nsecret = \"k\"\ntimeout_ms = 1500\nmax_attempts = 3\nbackoff_ms = [200, 400]\n",
        )
        .expect("parses");
        assert_eq!(tuned.timeout, Duration::from_millis(1500));
        assert_eq!(tuned.backoff, vec![Duration::from_millis(200), Duration::from_millis(400)]);
        assert!(
            toml::from_str::<WebhookConfig>("department = \"d\"\nurl = \"http://x\"\nsecret = \"k\"\nretries = 3\n")
                .is_err()
        );

        let bad = |f: &dyn Fn(&mut WebhookConfig)| {
            let mut c = config.clone();
            f(&mut c);
            c.validate().expect_err("refused")
        };
        assert!(bad(&|c| c.department = "a.b".into()).contains("department"));
        assert!(bad(&|c| c.url = "ftp://example.org".into()).contains("url"));
        assert!(bad(&|c| c.url = "not a url".into()).contains("url"));
        assert!(bad(&|c| c.secret = String::new()).contains("secret"));
        assert!(bad(&|c| c.secret_env = Some("X".into())).contains("not both"));
        assert!(bad(&|c| c.max_attempts = 0).contains("max_attempts"));
        assert!(bad(&|c| c.backoff.clear()).contains("backoff"));
        assert!(bad(&|c| c.timeout = Duration::ZERO).contains("timeout"));
    }

    #[test]
    fn secret_can_come_from_the_environment() {
        let mut config = WebhookConfig::new("d", "https://example.org", "");
        config.secret_env = Some("LINKBUS_TEST_WEBHOOK_SECRET_UNSET_7F3A".into());
        assert!(config.validate().expect_err("unset").contains("not set"));
        config.secret_env = Some("PATH".into()); // always set: stands in for a real secret variable
        assert_eq!(config.signing_secret(), std::env::var("PATH").map_err(|e| e.to_string()));
    }

    #[test]
    fn errors_are_one_bounded_line() {
        assert_eq!(one_line(" a\nb "), "a b");
        assert_eq!(bounded("é".repeat(400)).len(), 512);
    }
}
