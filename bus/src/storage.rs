//! How much the bus may store, and what a publish refused for lack of storage says.
//!
//! - the byte limit of every stream and KV bucket is [`crate::limits::StorageLimits`];
//! - [`StorageHealth`]: what the parts of one process that publish saw of refusals for lack of
//!   storage ([`refusal`]: JetStream's "maximum bytes exceeded", "insufficient resources"),
//!   counted in `linkbus_bus_storage_refused_total{stream}` and answered by `/readyz` as
//!   "storage refused" until the stream takes messages again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, ErrorCode};
use prometheus::{IntCounterVec, Opts};

use crate::nats::{self, BusError};

/// Why JetStream refused a message for lack of storage, if that is why `error` (or an error
/// it wraps) happened: the stream is at its byte or message limit, the server's store is full,
/// or storing failed (e.g. the disk is full).
pub fn refusal(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(js) = e.downcast_ref::<jetstream::Error>() {
            let code = js.error_code();
            let storage = [ErrorCode::INSUFFICIENT_RESOURCES, ErrorCode::STREAM_STORE_FAILED].contains(&code)
                || code == ErrorCode::STORAGE_RESOURCES_EXCEEDED;
            return storage.then(|| js.to_string());
        }
        next = e.source();
    }
    None
}

/// How long a stream that refused a message for lack of storage counts as refusing when
/// nothing is published to it since.
pub const REFUSING_FOR: Duration = Duration::from_secs(60);

/// What the publishers of one process saw of refusals for lack of storage; clones share it.
#[derive(Debug, Clone)]
pub struct StorageHealth {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    refused: IntCounterVec,
    /// Whether `streams` may hold anything: spares the lock on every stored publish.
    any: AtomicBool,
    /// Streams that refused lately: when last, and why.
    streams: RwLock<HashMap<&'static str, (Instant, String)>>,
}

/// The streams `linkbus_bus_storage_refused_total` names (a fixed set; `other` for the rest).
const STREAM_LABELS: [&str; 11] = [
    nats::STREAM_INGEST_EMERGENCY,
    nats::STREAM_INGEST_COMMERCIAL,
    nats::STREAM_INGEST_PUBLIC_SERVICE,
    nats::STREAM_INGEST_MANAGEMENT,
    nats::STREAM_ROUTED,
    nats::STREAM_OFFERS,
    nats::STREAM_CASES,
    nats::STREAM_DEADLETTER,
    "KV_linkbus_cases",
    "KV_linkbus_volunteers",
    "other",
];

impl StorageHealth {
    /// `linkbus_bus_storage_refused_total{stream}`, unregistered: register it where the
    /// process's metrics are, then give it to [`StorageHealth::new`].
    pub fn counter() -> prometheus::Result<IntCounterVec> {
        IntCounterVec::new(
            Opts::new(
                "linkbus_bus_storage_refused_total",
                "Publishes JetStream refused for lack of storage (a stream at its [storage] limit, the store full), by stream.",
            ),
            &["stream"],
        )
    }

    /// Counting into `refused` (from [`StorageHealth::counter`]); every stream's series starts at 0.
    pub fn new(refused: IntCounterVec) -> Self {
        for stream in STREAM_LABELS {
            refused.with_label_values(&[stream]);
        }
        Self { inner: Arc::new(Inner { refused, any: AtomicBool::new(false), streams: RwLock::default() }) }
    }

    /// Counting nowhere anyone scrapes (tests, tools).
    pub fn unregistered() -> Self {
        Self::new(Self::counter().expect("valid metric options"))
    }

    /// Looks at a publish to `subject` that failed with `error`: when JetStream refused it for
    /// lack of storage, counts it, remembers its stream as refusing, and returns why.
    pub fn observe(&self, subject: &str, error: &(dyn std::error::Error + 'static)) -> Option<String> {
        let why = refusal(error)?;
        let stream = label(subject);
        self.inner.refused.with_label_values(&[stream]).inc();
        tracing::error!(stream, subject, reason = %why, "JetStream refused a message for lack of storage");
        crate::sync::write(&self.inner.streams).insert(stream, (Instant::now(), why.clone()));
        self.inner.any.store(true, Ordering::Release);
        Some(why)
    }

    /// [`StorageHealth::observe`] of a failed publish, as the bus reports it.
    pub fn observe_error(&self, error: &BusError) -> Option<String> {
        match error {
            BusError::Publish { subject, source } => self.observe(subject, source.as_ref()),
            _ => None,
        }
    }

    /// A publish to `subject` was stored: its stream takes messages again.
    pub fn stored(&self, subject: &str) {
        if !self.inner.any.load(Ordering::Acquire) {
            return;
        }
        let mut streams = crate::sync::write(&self.inner.streams);
        streams.remove(label(subject));
        if streams.is_empty() {
            self.inner.any.store(false, Ordering::Release);
        }
    }

    /// `Ok`, or "storage refused: …" naming every stream that refused a message in the last
    /// [`REFUSING_FOR`] and has stored none since, with JetStream's reason.
    pub fn verdict(&self) -> Result<(), String> {
        if !self.inner.any.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut streams = crate::sync::write(&self.inner.streams);
        streams.retain(|_, (at, _)| at.elapsed() < REFUSING_FOR);
        if streams.is_empty() {
            self.inner.any.store(false, Ordering::Release);
            return Ok(());
        }
        let mut refusing: Vec<String> = streams.iter().map(|(stream, (_, why))| format!("{stream} ({why})")).collect();
        refusing.sort();
        Err(format!("storage refused: JetStream refuses messages to {}", refusing.join(", ")))
    }
}

/// The `stream` label of a publish to `subject`.
fn label(subject: &str) -> &'static str {
    let stream = nats::stream_of(subject);
    STREAM_LABELS.into_iter().find(|s| Some(*s) == stream.as_deref()).unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_remembered_until_the_stream_takes_messages_again() {
        let health = StorageHealth::unregistered();
        assert_eq!(health.verdict(), Ok(()));
        let error = |json: &str| serde_json::from_str::<jetstream::Error>(json).expect("a JetStream error");
        let full = error(r#"{"code":503,"err_code":10077,"description":"maximum bytes exceeded"}"#);
        let why = health.observe("ingest.emergency.fire", &full).expect("a storage refusal");
        assert!(why.contains("maximum bytes exceeded"), "{why}");
        let other = error(r#"{"code":404,"err_code":10059,"description":"stream not found"}"#);
        assert_eq!(health.observe("ingest.emergency.fire", &other), None);
        let verdict = health.verdict().expect_err("refusing");
        assert!(verdict.starts_with("storage refused") && verdict.contains(nats::STREAM_INGEST_EMERGENCY), "{verdict}");
        health.stored("ingest.public_service.x");
        assert!(health.verdict().is_err(), "another stream taking messages changes nothing");
        health.stored("ingest.emergency.fire");
        assert_eq!(health.verdict(), Ok(()));
        let text = format!("{:?}", health.inner.refused.with_label_values(&[nats::STREAM_INGEST_EMERGENCY]).get());
        assert_eq!(text, "1");
    }
}
