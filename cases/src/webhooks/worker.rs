//! Delivering: the pull loop on a department's durable consumer, and for each message one
//! attempt (a signed POST), its record, and the ack, the delayed nak or the dead letter after it.

use std::error::Error as _;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer, kv};
use bytes::Bytes;
use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use linkbus_bus::metrics::DeadLetterCounter;
use linkbus_bus::nats::{self, DeadLetter, StreamSettings};
use linkbus_wire::{TRACEPARENT, TRACESTATE, TraceContext, subjects};
use prometheus::{IntCounter, IntCounterVec, Opts};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::config::WebhookConfig;
use super::error::WebhookError;
use super::records::{BUCKET_DELIVERIES, Delivery, DeliveryStatus, is_not_found, provision};
use super::signing::{CONTENT_TYPE, HEADER_ATTEMPT, HEADER_SIGNATURE, HEADER_TIMESTAMP, HEADER_WEBHOOK_ID, sign};

/// Dead-letter stage (`deadletter.webhook`) of messages given up.
pub const STAGE: &str = "webhook";
/// Dead-letter reason code of messages given up.
pub const REASON_CODE: &str = "undeliverable";
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

/// `linkbus_webhook_deliveries_total` (registered by [`crate::metrics`]), resolved per outcome,
/// and the webhooks' dead letters; cheap to clone into each webhook.
#[derive(Debug, Clone)]
pub struct WebhookMetrics {
    /// The receiver answered 2xx.
    pub delivered: IntCounter,
    /// An attempt failed; another is scheduled.
    pub retried: IntCounter,
    /// Given up after the last attempt (and dead-lettered).
    pub failed: IntCounter,
    deadletter: DeadLetterCounter,
}

impl WebhookMetrics {
    /// The handles of `deliveries` (by `outcome`) and of `deadletters` at stage [`STAGE`].
    pub(crate) fn new(deliveries: &IntCounterVec, deadletters: &IntCounterVec) -> Self {
        Self {
            delivered: deliveries.with_label_values(&["delivered"]),
            retried: deliveries.with_label_values(&["retried"]),
            failed: deliveries.with_label_values(&["failed"]),
            deadletter: DeadLetterCounter::new(deadletters, STAGE, &[REASON_CODE]),
        }
    }

    /// Metrics registered nowhere.
    pub fn unregistered() -> Self {
        let unregistered = |name: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, "unregistered"), labels).expect("valid metric options")
        };
        Self::new(
            &unregistered("linkbus_webhook_deliveries_total", &["outcome"]),
            &unregistered("linkbus_deadletters_total", &["stage", "reason"]),
        )
    }
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
        let mut request = self.client.post(self.url.clone());
        // W3C Trace Context: the event's trace, for the receiver's HTTP tracing.
        if let Some(trace) = TraceContext::from_event_json(&msg.payload) {
            request = request.header(TRACEPARENT, trace.traceparent);
            if let Some(state) = trace.tracestate {
                request = request.header(TRACESTATE, state);
            }
        }
        let sent = request
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
    fn errors_are_one_bounded_line() {
        assert_eq!(one_line(" a\nb "), "a b");
        assert_eq!(bounded("é".repeat(400)).len(), 512);
    }
}
