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
//! traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
//! tracestate: congo=t61rcWkgMzE
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
//! - **Trace context**: when the case has a W3C trace (its report came with one: a
//!   `traceparent` CloudEvent attribute or an adapter's `traceparent` request header), the
//!   `traceparent` header (and `tracestate`, when there is one) is the event's own
//!   `traceparent`/`tracestate` attribute, the same on every delivery about the case: continue
//!   the trace from it in your HTTP server's tracing. Absent otherwise.
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
//!
//! # Layout
//!
//! One concept per module, each using only those listed before it: `signing` (the headers and
//! [`sign`] / [`verify`]), `config` ([`WebhookConfig`]), `error` ([`WebhookError`]), `records`
//! (the delivery records: [`Delivery`], [`deliveries`], [`provision`]) and `worker` ([`run`]:
//! the pull loop, each attempt, and what is counted).

mod config;
mod error;
mod records;
mod signing;
mod worker;

pub use config::{WebhookConfig, resolve_secret};
pub use error::WebhookError;
pub use records::{BUCKET_DELIVERIES, Delivery, DeliveryStatus, deliveries, provision};
pub use signing::{
    CONTENT_TYPE, HEADER_ATTEMPT, HEADER_SIGNATURE, HEADER_TIMESTAMP, HEADER_WEBHOOK_ID, TIMESTAMP_TOLERANCE, sign,
    verify,
};
pub use worker::{MAX_RESPONSE_BYTES, REASON_CODE, STAGE, WebhookMetrics, run, run_with_metrics};
