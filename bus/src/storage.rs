//! How much the bus may store, and what a publish refused for lack of storage says.
//!
//! - [`StorageLimits`]: the byte limit of every stream and KV bucket (`[storage]` in the
//!   configuration). JetStream reserves each stream's limit against its `max_file_store` when
//!   the stream is created, so the limits together can never fill the store; a stream at its
//!   limit refuses new messages (or, for dead letters and offers, drops its oldest).
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
use serde::Deserialize;

use crate::nats::{self, BusError};

/// The byte limits of the bus's streams and buckets, in MiB (`[storage]`). The defaults hold a
/// week (`[nats] retention_days`) of a city of about four million people, 40,000 cases a day,
/// and a million volunteers, with the message sizes measured in docs/operations.md ("Storage"):
/// 10.5 GiB in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageLimits {
    /// Each of the four ingest streams (one per kind of source system). Full, it refuses new
    /// reports: the source is told to retry, and what it sent before is never dropped.
    pub ingest_mib: u64,
    /// Routed cases, per department and community (`LINKBUS_ROUTED`). Full, it refuses: routing
    /// stops, loudly, rather than dropping copies a department has not read yet.
    pub routed_mib: u64,
    /// Case timeline events (`LINKBUS_CASES`), which the case book reads. Full, it refuses.
    pub cases_mib: u64,
    /// Volunteer offers (`LINKBUS_OFFERS`). Full, it drops its oldest: offers live minutes.
    pub offers_mib: u64,
    /// Dead letters (`LINKBUS_DEADLETTER`). Full, it drops its oldest: refused input never
    /// blocks routing (each dead letter is also counted in `linkbus_deadletters_total`).
    pub deadletter_mib: u64,
    /// Case records (KV `linkbus_cases`), one per case, kept until moved out.
    pub case_records_mib: u64,
    /// Volunteers' live state (KV `linkbus_volunteers`), one entry per volunteer.
    pub volunteers_mib: u64,
    /// Each other bucket: the console's, region versions, commerce deliveries, webhook
    /// delivery records, dead-letter replays.
    pub small_bucket_mib: u64,
}

impl Default for StorageLimits {
    fn default() -> Self {
        Self {
            ingest_mib: 256,
            routed_mib: 2048,
            cases_mib: 3072,
            offers_mib: 512,
            deadletter_mib: 256,
            case_records_mib: 3072,
            volunteers_mib: 512,
            small_bucket_mib: 64,
        }
    }
}

const MIB: u64 = 1024 * 1024;

impl StorageLimits {
    /// Every limit is at least 1 MiB and at most 1 PiB.
    pub fn check(&self) -> Result<(), String> {
        let fields = [
            ("ingest_mib", self.ingest_mib),
            ("routed_mib", self.routed_mib),
            ("cases_mib", self.cases_mib),
            ("offers_mib", self.offers_mib),
            ("deadletter_mib", self.deadletter_mib),
            ("case_records_mib", self.case_records_mib),
            ("volunteers_mib", self.volunteers_mib),
            ("small_bucket_mib", self.small_bucket_mib),
        ];
        match fields.iter().find(|(_, mib)| !(1..=1 << 30).contains(mib)) {
            Some((name, mib)) => Err(format!("storage.{name} must be 1 MiB to 1 PiB, not {mib}")),
            None => Ok(()),
        }
    }

    /// The limit of stream `name`, bytes (`-1`: none, for a stream linkbus does not make).
    pub fn stream_bytes(&self, name: &str) -> i64 {
        let mib = match name {
            nats::STREAM_ROUTED => self.routed_mib,
            nats::STREAM_CASES => self.cases_mib,
            nats::STREAM_OFFERS => self.offers_mib,
            nats::STREAM_DEADLETTER => self.deadletter_mib,
            ingest if nats::INGEST_STREAMS.contains(&ingest) => self.ingest_mib,
            _ => return -1,
        };
        bytes(mib)
    }

    /// The limit of KV bucket `bucket`, bytes.
    pub fn bucket_bytes(&self, bucket: &str) -> i64 {
        bytes(match bucket {
            nats::BUCKET_CASES => self.case_records_mib,
            nats::BUCKET_VOLUNTEERS => self.volunteers_mib,
            _ => self.small_bucket_mib,
        })
    }

    /// What the bus's streams and its two large buckets reserve together, bytes, per replica
    /// (the small buckets come on top: at most five of [`StorageLimits::small_bucket_mib`]).
    pub fn total_bytes(&self) -> u64 {
        (4 * self.ingest_mib
            + self.routed_mib
            + self.cases_mib
            + self.offers_mib
            + self.deadletter_mib
            + self.case_records_mib
            + self.volunteers_mib)
            .saturating_mul(MIB)
    }
}

fn bytes(mib: u64) -> i64 {
    i64::try_from(mib.saturating_mul(MIB)).unwrap_or(i64::MAX)
}

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
    fn limits_cover_every_stream_and_bucket() {
        let limits = StorageLimits::default();
        assert!(limits.check().is_ok());
        for stream in nats::INGEST_STREAMS {
            assert_eq!(limits.stream_bytes(stream), 256 * MIB as i64);
        }
        assert_eq!(limits.stream_bytes("SOMEONE_ELSES"), -1);
        assert_eq!(limits.bucket_bytes(nats::BUCKET_CASES), 3072 * MIB as i64);
        assert_eq!(limits.bucket_bytes("linkbus_console"), 64 * MIB as i64);
        assert_eq!(limits.total_bytes() + 5 * limits.small_bucket_mib * MIB, 10_816 * MIB, "10.5 GiB");
        assert!(StorageLimits { routed_mib: 0, ..limits }.check().expect_err("zero").contains("routed_mib"));
    }

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
