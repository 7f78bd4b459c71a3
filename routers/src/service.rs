//! The router service: a durable JetStream pull consumer on each of the four ingest streams
//! (one per kind of source system), shared by every router process (JetStream hands each
//! message to one of them), emergency reports started first ([`ServiceConfig::emergency_first`]).
//! Each message is decoded, checked against its system's claims (its `Nats-Msg-Id` is its id;
//! its id and source are its system's: [`linkbus_wire::claims`]), routed and published to its
//! output subjects; it is acked only once JetStream has stored all of those, so a router that
//! dies mid-message leaves it to be redelivered, and the outputs' `Nats-Msg-Id`s make the retry a
//! no-op where the first try got through. What cannot be decoded or is not its system's to send
//! goes to `deadletter.ingest` with the reason and the original bytes (a bounded excerpt of an
//! oversized one), then is acked; so does a report whose id was already routed for another
//! report (`id_taken`), which would otherwise take that case over.
//!
//! [`crate::volunteers::follow_volunteers`] keeps the [`VolunteerIndex`] of [`RouterState`] in
//! step with the volunteers KV bucket.
//!
//! What it does is counted in [`RouterState::metrics`] ([`crate::metrics`]); every 5 s [`run`]
//! also samples its consumer's backlog and the volunteers on duty into gauges.

use std::future::IntoFuture;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::jetstream::{self, AckKind, consumer, kv};
use bytes::Bytes;
use futures::{StreamExt, TryFutureExt, future};
use jiff::Timestamp;
use linkbus_bus::nats::{self, BusError, DeadLetter};
use linkbus_bus::pull;
use linkbus_bus::storage::StorageHealth;
use linkbus_bus::sync::{read, write};
use linkbus_wire::claims::Claims;
use linkbus_wire::decode::{Rejection, decode_ingest};
use linkbus_wire::subjects;
use linkbus_wire::{self as wire, CaseReport, CloudEvent, RoutedCase, SourceSystem, TraceContext, VolunteerOffer};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::metrics::{Routed, RouterMetrics};
use linkbus_matching::{OfferLedger, Router, VolunteerIndex};

/// How often [`run`] samples its consumer's backlog and the volunteers on duty.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// How the router service consumes.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Durable consumer name; every router process sharing the work uses the same one.
    pub durable: String,
    /// How long JetStream waits for an ack before redelivering.
    pub ack_wait: Duration,
    /// Messages handed out but not yet acked, across all routers.
    pub max_ack_pending: i64,
    /// Largest case report accepted, bytes.
    pub max_payload: usize,
    /// Messages this process routes concurrently.
    pub max_in_flight: usize,
    /// The `source` of events this router emits, e.g. `/linkbus/router/host-1`.
    pub source: String,
    /// Which id prefixes and sources each kind of source system may issue.
    pub claims: Claims,
    /// Start emergency reports before any other held (then commercial, public service,
    /// management); false: in the order they arrived.
    pub emergency_first: bool,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            durable: "linkbus-routers".into(),
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 20_000,
            max_payload: 64 * 1024,
            max_in_flight: 256,
            source: "/linkbus/router".into(),
            claims: Claims::default(),
            emergency_first: true,
        }
    }
}

/// What went wrong setting up the service (per-message failures are retried, not returned).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The ingest stream or the consumer could not be opened.
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
    /// The volunteers bucket could not be opened or watched.
    #[error("cannot follow the volunteers bucket: {0}")]
    Volunteers(#[source] async_nats::Error),
}

/// Counters of what the service did, for summaries (Prometheus gets [`RouterMetrics`]).
#[derive(Debug, Default)]
pub struct RouterStats {
    /// Cases routed and acked.
    pub routed: AtomicU64,
    /// Messages dead-lettered and acked.
    pub dead_lettered: AtomicU64,
    /// Messages left for redelivery after a publish failed.
    pub retried: AtomicU64,
    /// Volunteer updates applied.
    pub volunteer_updates: AtomicU64,
    /// Volunteer updates refused (dead-lettered).
    pub volunteer_rejected: AtomicU64,
    /// Region versions swapped in ([`crate::regions`]).
    pub region_reloads: AtomicU64,
    /// Region versions refused.
    pub region_refused: AtomicU64,
    /// How long the last region swap held the router lock, nanoseconds.
    pub region_swap_pause_ns: AtomicU64,
}

/// How far the volunteer index follows the bucket, as [`crate::volunteer_snapshot::save`] needs it.
#[derive(Debug, Default)]
pub struct Followed {
    /// The bucket revision of the last entry the index took (or refused); 0 until loaded.
    revision: AtomicU64,
    /// The skills every volunteer of the index was taken with (sorted); none until loaded, or
    /// once a region calling for other skills took over (the index then mixes two).
    skills_called: RwLock<Option<Arc<Vec<String>>>>,
}

impl Followed {
    /// The bucket revision of the last entry the index took.
    pub fn revision(&self) -> u64 {
        self.revision.load(Ordering::Acquire)
    }

    /// The skills every volunteer of the index was taken with, if one set was.
    pub fn skills_called(&self) -> Option<Arc<Vec<String>>> {
        read(&self.skills_called).clone()
    }

    /// The index holds the bucket up to `revision`, every volunteer taken with `skills_called`.
    pub(crate) fn loaded(&self, revision: u64, skills_called: Option<Vec<String>>) {
        *write(&self.skills_called) = skills_called.map(Arc::new);
        self.took(revision);
    }

    /// The index took (or refused) the entry at `revision`.
    pub(crate) fn took(&self, revision: u64) {
        self.revision.fetch_max(revision, Ordering::AcqRel);
    }

    /// A region calling for other skills took over: the index mixes two sets of skills.
    pub(crate) fn mixed(&self) {
        write(&self.skills_called).take();
    }
}

/// Shared state of one router process.
#[derive(Debug)]
pub struct RouterState {
    /// The matching in force; [`RouterState::swap_router`] replaces it (live reload).
    router: RwLock<Arc<Router>>,
    /// Volunteers, updated by [`crate::volunteers::follow_volunteers`].
    pub volunteers: RwLock<VolunteerIndex>,
    /// How far `volunteers` follows the bucket.
    pub volunteers_followed: Followed,
    /// Offers of the last hour, updated by [`follow_offers`].
    pub offers: RwLock<OfferLedger>,
    /// Counters.
    pub stats: RouterStats,
    /// Prometheus metrics.
    pub metrics: RouterMetrics,
}

impl RouterState {
    /// State with an empty volunteer index and offer ledger, and metrics registered nowhere.
    pub fn new(router: Router) -> Arc<Self> {
        Self::with_metrics(router, RouterMetrics::unregistered())
    }

    /// State with an empty volunteer index and offer ledger, counting into `metrics`.
    pub fn with_metrics(router: Router, metrics: RouterMetrics) -> Arc<Self> {
        Arc::new(Self {
            router: RwLock::new(Arc::new(router)),
            volunteers: RwLock::new(VolunteerIndex::new()),
            volunteers_followed: Followed::default(),
            offers: RwLock::new(OfferLedger::new()),
            stats: RouterStats::default(),
            metrics,
        })
    }

    /// The matching in force (one region version): hold on to it for a whole decision.
    pub fn router(&self) -> Arc<Router> {
        read(&self.router).clone()
    }

    /// Puts `router` in force; decisions already under way finish with the one they took.
    /// Returns how long the swap held the lock (the only pause routing sees).
    pub fn swap_router(&self, router: Router) -> Duration {
        let router = Arc::new(router);
        let started = Instant::now();
        let old = std::mem::replace(&mut *write(&self.router), router);
        let pause = started.elapsed();
        drop(old);
        pause
    }

    /// Routes one case with the current volunteers and offer counts (timed into
    /// `linkbus_router_decision_duration_seconds`).
    pub fn decide(&self, case: &CaseReport) -> wire::Decision {
        let started = Instant::now();
        let router = self.router();
        let decision = {
            let volunteers = read(&self.volunteers);
            let offers = read(&self.offers);
            router.decide(case, &volunteers, &offers, Timestamp::now().as_second())
        };
        self.metrics.decision_seconds.observe(started.elapsed().as_secs_f64());
        decision
    }

    /// Samples the volunteers on duty into their gauges.
    pub fn sample_volunteers(&self) {
        let (known, available) = {
            let volunteers = read(&self.volunteers);
            (volunteers.len(), volunteers.available())
        };
        self.metrics.set_volunteers(known, available);
    }
}

/// Follows the offers stream into `state.offers` until `shutdown`, starting an hour back, so
/// the hourly cap counts the offers of every router replica and survives restarts.
pub async fn follow_offers(
    js: jetstream::Context,
    state: Arc<RouterState>,
    shutdown: CancellationToken,
) -> Result<(), ServiceError> {
    let stream = js.get_stream(nats::STREAM_OFFERS).await.map_err(|e| ServiceError::Volunteers(e.into()))?;
    loop {
        let start = Timestamp::now() - jiff::SignedDuration::from_hours(1);
        let start =
            time::OffsetDateTime::from_unix_timestamp(start.as_second()).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: subjects::OFFERS.into(),
                deliver_policy: consumer::DeliverPolicy::ByStartTime { start_time: start },
                ..Default::default()
            })
            .await;
        let mut messages = match consumer {
            Ok(c) => match c.messages().await {
                Ok(m) => m,
                Err(e) => {
                    warn!(error = %e, "cannot read the offers stream; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            Err(e) => {
                warn!(error = %e, "cannot read the offers stream; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        loop {
            let msg = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                msg = messages.next() => msg,
            };
            match msg {
                Some(Ok(msg)) => {
                    let Some(volunteer) = msg.subject.split('.').nth(1) else { continue };
                    let at = msg
                        .info()
                        .map(|i| i.published.unix_timestamp())
                        .unwrap_or_else(|_| Timestamp::now().as_second());
                    write(&state.offers).record(volunteer, at);
                }
                Some(Err(e)) => {
                    warn!(error = %e, "offers stream error; re-reading");
                    break;
                }
                None => break,
            }
        }
    }
}

/// Consumes the four ingest streams until `shutdown` ([`pull::consume_all`]: at most
/// `max_in_flight` cases routed at once, as many read ahead from each stream, emergency first
/// unless told otherwise), then hands back what it read ahead, finishes what is in flight and
/// returns.
pub async fn run(
    js: jetstream::Context,
    state: Arc<RouterState>,
    config: ServiceConfig,
    shutdown: CancellationToken,
) -> Result<(), ServiceError> {
    let mut consumers = Vec::with_capacity(nats::INGEST_STREAMS.len());
    for name in nats::INGEST_STREAMS {
        let consumer_err = |source: async_nats::Error| ServiceError::Consumer {
            stream: name.into(),
            durable: config.durable.clone(),
            source,
        };
        let stream = js.get_stream(name).await.map_err(|e| consumer_err(e.into()))?;
        let consumer: consumer::PullConsumer = stream
            .get_or_create_consumer(
                &config.durable,
                consumer::pull::Config {
                    durable_name: Some(config.durable.clone()),
                    description: Some("linkbus routers".into()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: config.ack_wait,
                    max_ack_pending: config.max_ack_pending,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| consumer_err(e.into()))?;
        consumers.push(consumer);
    }
    let cases = js.get_stream(nats::STREAM_CASES).await.map_err(|e| ServiceError::Consumer {
        stream: nats::STREAM_CASES.into(),
        durable: config.durable.clone(),
        source: e.into(),
    })?;
    let worker = Worker { js: &js, cases: &cases, state: &state, config: &config };
    info!(durable = %config.durable, emergency_first = config.emergency_first, "router consuming the ingest streams");

    let sampler = tokio::spawn(sample(consumers.clone(), state.clone(), shutdown.clone()));
    // A batch read ahead, as many as are routed at once: on shutdown it is handed back at once
    // (naked without delay) for another router, not left unacknowledged until the ack wait.
    let limits = pull::Limits { in_flight: config.max_in_flight.max(1), ahead: config.max_in_flight.max(1) };
    let order = if config.emergency_first { pull::Order::Priority } else { pull::Order::Arrival };
    let done = pull::consume_all(&consumers, limits, order, &shutdown, |_, msg| worker.handle(msg)).await;
    let _ = sampler.await;
    info!(handled = done.handled, handed_back = done.handed_back, "router stopped");
    Ok(())
}

/// Every [`SAMPLE_EVERY`] until `shutdown`: the consumers' backlog (pending plus handed out but
/// not acked, over the four streams; the last value stays while NATS cannot say) and the
/// volunteers on duty.
async fn sample(mut consumers: Vec<consumer::PullConsumer>, state: Arc<RouterState>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        state.sample_volunteers();
        let mut backlog = Some(0u64);
        for consumer in &mut consumers {
            let behind = match tokio::time::timeout(SAMPLE_EVERY, consumer.info()).await {
                Ok(Ok(info)) => Some(info.num_pending.saturating_add(info.num_ack_pending as u64)),
                Ok(Err(e)) => {
                    debug!(error = %e, "cannot read a router consumer's backlog");
                    None
                }
                Err(_) => {
                    debug!("reading a router consumer's backlog timed out");
                    None
                }
            };
            backlog = backlog.zip(behind).map(|(sum, behind)| sum.saturating_add(behind));
        }
        if let Some(backlog) = backlog {
            state.metrics.backlog.set(i64::try_from(backlog).unwrap_or(i64::MAX));
        }
    }
}

/// What handling one message needs.
struct Worker<'a> {
    js: &'a jetstream::Context,
    cases: &'a jetstream::stream::Stream,
    state: &'a RouterState,
    config: &'a ServiceConfig,
}

impl Worker<'_> {
    async fn handle(&self, msg: jetstream::Message) {
        let (js, state, config) = (self.js, self.state, self.config);
        let msg_id = msg.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")).map(|v| v.as_str());
        // CloudEvents' binary mode on NATS puts the attributes in `ce-` headers; linkbus reads
        // the structured mode only, and says so rather than fail on the body.
        let binary = msg.headers.as_ref().is_some_and(|h| h.get("ce-specversion").is_some());
        let decoded = if binary {
            Err(Rejection::binary_mode())
        } else {
            decode_ingest(&msg.subject, msg_id, &msg.payload, config.max_payload, &config.claims)
        };
        let outcome = match decoded {
            Ok(mut event) => {
                adopt_header_trace(&mut event, msg.headers.as_ref());
                let redelivered = msg.info().map_or(true, |i| i.delivered > 1);
                route(js, self.cases, state, config, event, redelivered).await
            }
            Err(rejection) => Ok(Handled::Refused(rejection)),
        };
        let outcome = match outcome {
            Ok(Handled::Refused(rejection)) => {
                warn!(subject = %msg.subject, msg_id, code = rejection.code(), reason = %rejection, "ingest message refused");
                dead_letter(js, &msg, &rejection).await.map(|()| {
                    state.metrics.deadletter_ingest(rejection.code());
                    Handled::DeadLettered
                })
            }
            other => other,
        };
        match outcome {
            Ok(handled) => match msg.ack().await {
                Ok(()) => match handled {
                    Handled::Routed(routed) => {
                        state.stats.routed.fetch_add(1, Ordering::Relaxed);
                        let m = &state.metrics;
                        m.routed(routed);
                        if let Ok(info) = msg.info() {
                            let waited = time::OffsetDateTime::now_utc() - info.published;
                            m.ingest_to_routed_seconds.observe(waited.as_seconds_f64().max(0.0));
                        }
                    }
                    Handled::DeadLettered | Handled::Refused(_) => {
                        state.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                    }
                },
                Err(e) => warn!(error = %e, subject = %msg.subject, "ack failed; the case will be redelivered"),
            },
            Err(e) => {
                state.stats.retried.fetch_add(1, Ordering::Relaxed);
                state.metrics.storage.observe_error(&e);
                warn!(error = %e, subject = %msg.subject, "publishing failed; leaving the message for redelivery");
                let _ = msg.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await;
            }
        }
    }
}

/// A trace given in the message's NATS headers (`traceparent`, `tracestate`: W3C Trace Context,
/// as a tracing library's NATS propagator writes them) goes with the case as its CloudEvent
/// extension would. The event's own attributes, where valid, win; an invalid header is ignored.
fn adopt_header_trace(event: &mut CloudEvent<CaseReport>, headers: Option<&async_nats::HeaderMap>) {
    if TraceContext::from_extensions(&event.extensions).is_some() {
        return;
    }
    let Some(headers) = headers else { return };
    let Some(parent) = headers.get(wire::TRACEPARENT) else { return };
    let state = headers.get(wire::TRACESTATE).map(|v| v.as_str());
    match TraceContext::parse(parent.as_str(), state) {
        Some(trace) => trace.set_on(&mut event.extensions),
        // As the HTTP adapters do with an invalid header (docs/wire.md).
        None => debug!(traceparent = parent.as_str(), "ignoring an invalid traceparent header"),
    }
}

/// What became of an ingest message.
enum Handled {
    /// Routed, as the stored decision says.
    Routed(Routed),
    /// Refused: to be dead-lettered.
    Refused(Rejection),
    /// Dead-lettered.
    DeadLettered,
}

/// Publishes a refused ingest message to `deadletter.ingest`, keyed by its stream and sequence
/// (never by its own `Nats-Msg-Id`, which it may have had no right to) so a retry is a
/// duplicate (by a hash of subject and bytes, should they be unknown). An oversized message is
/// kept as an excerpt pointing at its original, which the ingest stream still holds.
async fn dead_letter(js: &jetstream::Context, msg: &jetstream::Message, rejection: &Rejection) -> Result<(), BusError> {
    let original_msg_id = msg.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")).map(|v| v.as_str());
    let info = msg.info().ok();
    let msg_id = match &info {
        Some(info) => format!("ingest:{}:{}", info.stream, info.stream_sequence),
        None => {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            (msg.subject.as_str(), &msg.payload[..]).hash(&mut hasher);
            format!("ingest:hash:{:016x}", hasher.finish())
        }
    };
    let reason = rejection.to_string();
    let letter = DeadLetter {
        stage: "ingest",
        reason: &reason,
        code: rejection.code(),
        original_subject: &msg.subject,
        original_msg_id,
        msg_id: &msg_id,
        payload: msg.payload.clone(),
    };
    let ack = match (&info, rejection) {
        (Some(info), Rejection::TooLarge { .. }) => {
            let original = nats::Stored { stream: info.stream, sequence: info.stream_sequence };
            nats::publish_deadletter_excerpt(js, letter, original).await?
        }
        _ => nats::publish_deadletter(js, letter).await?,
    };
    ack.await.map_err(|e| publish_err("deadletter.ingest", e))?;
    Ok(())
}

fn publish_err(subject: &str, e: impl Into<async_nats::Error>) -> BusError {
    BusError::Publish { subject: subject.to_owned(), source: e.into() }
}

/// Routes a decoded case and publishes it to every output; returns, once all are stored, what
/// the metrics count of its decision.
///
/// The decision is stored first, on `case.<id>.routed`; the department, community and volunteer
/// outputs follow. A case seen before (redelivered after its router died or a publish failed,
/// or whose decision JetStream reports as a duplicate) reuses the stored decision, so every
/// retry republishes the same bytes under the same `Nats-Msg-Id`s and JetStream keeps one copy
/// of each: one decision per case, however often it is retried. A stored decision of another
/// report (another system, source or source id under the same id) is not this one's to reuse:
/// the report is refused (`id_taken`) rather than take that case over. A case an earlier version
/// left half-way gets what that version still owed it ([`finish_older_layout`]).
async fn route(
    js: &jetstream::Context,
    cases: &jetstream::stream::Stream,
    state: &RouterState,
    config: &ServiceConfig,
    event: CloudEvent<CaseReport>,
    redelivered: bool,
) -> Result<Handled, BusError> {
    let timeline = subjects::case_event(&event.id, "routed");
    let origin = Origin::of(&event);
    let stored = if redelivered { stored_decision(cases, &timeline).await? } else { None };
    let (routed, body, reused) = match stored {
        Some((routed, body)) => (routed, body, true),
        None => {
            let case_id = event.id;
            let decision = state.decide(&event.data);
            let now = Timestamp::now();
            let mut routed = CloudEvent::new(
                format!("{case_id}:routed"),
                &config.source,
                wire::TYPE_CASE_ROUTED,
                Some(case_id.clone()),
                now,
                RoutedCase { case_id, source: event.source, case: event.data, decision, routed_at: now },
            );
            // The report's extension attributes (a trace context) go with everything about it.
            routed.extensions = event.extensions;
            let body = to_bytes(&routed);
            let ack = nats::publish(js, timeline.clone(), &routed.id, body.clone())
                .await?
                .await
                .map_err(|e| publish_err(&timeline, e))?;
            // A duplicate means an earlier delivery stored a decision: that one stands.
            let earlier = if ack.duplicate { stored_decision(cases, &timeline).await? } else { None };
            match earlier {
                Some((stored, body)) => (stored, body, true),
                None => (routed, body, false),
            }
        }
    };
    let holder = Origin::of_routed(&routed.data);
    if holder != origin {
        let other = format!("{} from {}, its id {:?}", holder.system, holder.source, holder.source_id);
        return Ok(Handled::Refused(Rejection::IdTaken { id: routed.data.case_id.clone(), other }));
    }
    let acks = publish_all(js, &state.metrics.storage, fan_out(&routed, &body)).await?;
    if reused && let Some(first) = acks.first() {
        finish_older_layout(js, &routed, &body, first).await?;
    }
    state.metrics.storage.stored(&timeline);
    Ok(Handled::Routed(Routed::of(routed.data.case.system, &routed.data.decision)))
}

/// Who sent a report: a stored decision is reused only for the same.
#[derive(Debug, PartialEq, Eq)]
struct Origin {
    system: SourceSystem,
    source: String,
    source_id: String,
}

impl Origin {
    fn of(event: &CloudEvent<CaseReport>) -> Self {
        Self { system: event.data.system, source: event.source.clone(), source_id: event.data.source_id.clone() }
    }

    fn of_routed(routed: &RoutedCase) -> Self {
        Self { system: routed.case.system, source: routed.source.clone(), source_id: routed.case.source_id.clone() }
    }
}

/// The decision already stored for a case, if a previous delivery got that far.
async fn stored_decision(
    cases: &jetstream::stream::Stream,
    timeline: &str,
) -> Result<Option<(CloudEvent<RoutedCase>, Bytes)>, BusError> {
    match cases.get_last_raw_message_by_subject(timeline).await {
        Ok(stored) => match serde_json::from_slice(&stored.payload) {
            Ok(routed) => Ok(Some((routed, stored.payload))),
            Err(e) => {
                warn!(subject = timeline, error = %e, "stored decision unreadable; deciding again");
                Ok(None)
            }
        },
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(publish_err(timeline, e)),
    }
}

/// Every output of a routed case but its timeline event: one copy per department (the first
/// department's names the community and is its copy too: every stored copy costs nats-server a
/// write, and under `sync_interval: always` a disk sync), one per community it is broadcast to,
/// one offer per volunteer (without the reporter's contact).
fn fan_out(routed: &CloudEvent<RoutedCase>, body: &Bytes) -> Vec<(String, String, Bytes)> {
    let r = &routed.data;
    let (case, decision, case_id) = (&r.case, &r.decision, &r.case_id);
    let home = decision.community.community.as_ref();
    let mut outputs = Vec::with_capacity(1 + decision.departments.len() + decision.volunteers.len());
    for (n, d) in decision.departments.iter().enumerate() {
        let subject = match home.filter(|_| n == 0) {
            Some(c) => subjects::routed_department_in(&d.id, &case.category, &c.id),
            None => subjects::routed_department(&d.id, &case.category),
        };
        outputs.push((subject, department_copy_id(&routed.id, &d.id), body.clone()));
    }
    for c in decision.broadcast.iter().filter(|c| home.is_none_or(|m| m.id != c.id)) {
        outputs.push((subjects::routed_community(&c.id), community_copy_id(&routed.id, &c.id), body.clone()));
    }
    let Some(skill) = &decision.volunteer_search.skill else { return outputs };
    for (rank, v) in decision.volunteers.iter().enumerate() {
        let offer = VolunteerOffer {
            case_id: case_id.clone(),
            volunteer_id: v.id.clone(),
            rank: rank + 1,
            category: case.category.clone(),
            priority: case.priority,
            location: case.location,
            address: case.address.clone(),
            description: case.description.clone(),
            distance_m: v.distance_m,
            skill: skill.clone(),
        };
        let id = format!("{case_id}:offer:{}", v.id);
        let mut ev = CloudEvent::new(
            id.clone(),
            &routed.source,
            wire::TYPE_VOLUNTEER_OFFER,
            Some(case_id.clone()),
            routed.time,
            offer,
        );
        ev.extensions = routed.extensions.clone();
        outputs.push((subjects::volunteer_offer(&v.id), id, to_bytes(&ev)));
    }
    outputs
}

/// The `Nats-Msg-Id` of the copy of the routed event `routed_id` for department `department`.
fn department_copy_id(routed_id: &str, department: &str) -> String {
    format!("{routed_id}:dept:{department}")
}

/// The `Nats-Msg-Id` of the copy of the routed event `routed_id` for community `community`.
fn community_copy_id(routed_id: &str, community: &str) -> String {
    format!("{routed_id}:community:{community}")
}

/// Publishes every output and waits until all are stored (each stream that stores one is
/// known to `storage` to take messages again); their acks, in the outputs' order.
async fn publish_all(
    js: &jetstream::Context,
    storage: &StorageHealth,
    outputs: Vec<(String, String, Bytes)>,
) -> Result<Vec<(String, PublishAck)>, BusError> {
    let mut acks = Vec::with_capacity(outputs.len());
    for (subject, msg_id, payload) in outputs {
        let ack = nats::publish(js, subject.clone(), &msg_id, payload).await?;
        let failed = subject.clone();
        acks.push(ack.into_future().map_ok(move |ack| (subject, ack)).map_err(move |e| publish_err(&failed, e)));
    }
    let stored = future::try_join_all(acks).await?;
    for (subject, _) in &stored {
        storage.stored(subject);
    }
    Ok(stored)
}

/// Finishes a case that a version before 2026-12-08 routed half-way: it stored the responsible
/// department's copy on `routed.dept.<department>.<category>`, then stopped before the
/// community's copy on `routed.community.<community>`. This version's copy for both (the first
/// of [`fan_out`]'s outputs, with its ack) has the same `Nats-Msg-Id` and is dropped as a duplicate,
/// so without this the community would never get the case. The copy JetStream kept says which
/// version stored it; an older one's gets the community copy that version would have sent.
async fn finish_older_layout(
    js: &jetstream::Context,
    routed: &CloudEvent<RoutedCase>,
    body: &Bytes,
    (subject, ack): &(String, PublishAck),
) -> Result<(), BusError> {
    let r = &routed.data;
    let (Some(home), Some(department)) = (&r.decision.community.community, r.decision.departments.first()) else {
        return Ok(());
    };
    // Stored just now: this version's copy, nothing left to finish.
    if !ack.duplicate {
        return Ok(());
    }
    let stream = js.get_stream_no_info(nats::STREAM_ROUTED).await.map_err(|e| publish_err(subject, e))?;
    let kept = match stream.get_raw_message(ack.sequence).await {
        Ok(kept) => kept,
        // Gone already (the stream's limits): whatever it was, it has been delivered or dropped.
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(()),
        Err(e) => return Err(publish_err(subject, e)),
    };
    let msg_id = department_copy_id(&routed.id, &department.id);
    let older = kept.subject.as_str() == subjects::routed_department(&department.id, &r.case.category)
        && kept.headers.get("Nats-Msg-Id").map(|v| v.as_str()) == Some(msg_id.as_str());
    if !older {
        return Ok(());
    }
    let community = subjects::routed_community(&home.id);
    let msg_id = community_copy_id(&routed.id, &home.id);
    nats::publish(js, community.clone(), &msg_id, body.clone()).await?.await.map_err(|e| publish_err(&community, e))?;
    info!(case_id = %r.case_id, community = %home.id, "finished a case an earlier version routed half-way");
    Ok(())
}

fn to_bytes<T: serde::Serialize>(value: &T) -> Bytes {
    // The wire types are plain structs with string keys: serialising them to a Vec cannot fail.
    Bytes::from(serde_json::to_vec(value).expect("wire types always serialise"))
}

/// Keeps a refused entry of KV `bucket` in `deadletter.<stage>`: its value as it was, its key as
/// the original subject, one dead letter per revision however often it is refused.
pub(crate) async fn dead_letter_entry(
    js: &jetstream::Context,
    bucket: &str,
    stage: &str,
    code: &str,
    reason: &str,
    entry: &kv::Entry,
) -> Result<(), BusError> {
    let subject = format!("$KV.{bucket}.{}", entry.key);
    let msg_id = format!("{stage}:{}", entry.revision);
    let letter = DeadLetter {
        stage,
        reason,
        code,
        original_subject: &subject,
        original_msg_id: None,
        msg_id: &msg_id,
        payload: entry.value.clone(),
    };
    nats::store_deadletter(js, letter).await
}
