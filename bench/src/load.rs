//! `linkbus-bench load`: a load generator that drives a running linkbus through NATS as source
//! systems and departments do, and the raw NATS floor ([`floor`]) measured in the same run so
//! that ratios between them hold on a noisy machine.
//!
//! A *run* publishes case reports to one [`Target`] and waits for each to come back:
//!
//! - **linkbus**: reports go to `ingest.<system>.<category>` through JetStream with
//!   `Nats-Msg-Id` (as sources send them, acks awaited); they come back through two ordered
//!   JetStream consumers a department and an auditor would use: `routed.dept.>` on
//!   `LINKBUS_ROUTED` (the latency is measured to the first department copy) and
//!   `case.*.routed` on `LINKBUS_CASES` (the stored decision);
//! - **core floor** and **JetStream floor**: the same reports through a forwarder that only
//!   decodes and re-encodes the JSON ([`floor`]).
//!
//! Paced runs are open-loop: event `n` is due at `start + n / rate` and its latency is counted
//! from when it was due, not from when it went out, so a publisher that falls behind shows in
//! the latency instead of hiding it (no coordinated omission). The unpaced run publishes as fast
//! as JetStream acknowledges (at most [`MAX_UNACKED`] outstanding); its throughput is the events
//! delivered over the time from the first publish to the last first receipt.
//!
//! **Exactly once**: every event must reach a department once per department it was routed to
//! (no `Nats-Msg-Id` twice) and have exactly one stored decision; a linkbus run with any event
//! lost or duplicated fails, and so does `linkbus-bench load` (exit code 5). The floors' losses are
//! reported, not failed on: core NATS promises no delivery.

pub mod floor;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use std::future::IntoFuture as _;

use async_nats::jetstream::{self, consumer};
use bytes::Bytes;
use futures::stream::{BoxStream, FuturesUnordered};
use futures::{FutureExt as _, StreamExt as _};
use geo::{BoundingRect, Contains, Point};
use hdrhistogram::Histogram;
use jiff::Timestamp;
use linkbus_bus::nats::{self, STREAM_CASES, STREAM_ROUTED};
use linkbus_geo_data::Region;
use linkbus_wire::subjects;
use linkbus_wire::{self as wire, CaseReport, CloudEvent, Location, SourceSystem};
use rand::{RngExt as _, SeedableRng as _};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// JetStream publishes a run keeps unacknowledged at most.
pub const MAX_UNACKED: usize = 4096;
/// Once every event is in, how long a run keeps listening for late duplicates.
const QUIET: Duration = Duration::from_millis(500);
/// How long a run waits at most for the stored-message count to settle.
const SETTLE: Duration = Duration::from_secs(300);
/// Distinct case locations and categories a run cycles through.
const POINTS: usize = 1024;
/// Latencies are recorded in microseconds up to this (10 minutes).
const MAX_LATENCY_US: u64 = 600_000_000;

/// What a `linkbus-bench load` does.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Paced runs, events per second.
    pub rates: Vec<u32>,
    /// How long each paced run publishes.
    pub seconds: f64,
    /// Events in the unpaced run; 0 skips it.
    pub unpaced: usize,
    /// Where the runs go, in this order at each rate: linkbus, and the floors to measure at the
    /// same rates and count.
    pub targets: Vec<Target>,
    /// After the last publish, how long to wait for outstanding events while none arrives.
    pub wait: Duration,
    /// Seed of the case locations and categories.
    pub seed: u64,
}

/// Where a run's events go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// A running linkbus: ingest in, departments' and decisions' streams out.
    Linkbus,
    /// The core NATS forwarder (no persistence, no acks).
    CoreFloor,
    /// The JetStream forwarder (stored in and out, acked as linkbus acks).
    JetstreamFloor,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Linkbus => "linkbus",
            Self::CoreFloor => "core floor",
            Self::JetstreamFloor => "jetstream floor",
        })
    }
}

/// Latency percentiles of one run, milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

/// What one run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    /// Where the events went.
    pub target: Target,
    /// Events per second asked for; `None` for the unpaced run.
    pub rate: Option<u32>,
    /// Events published (and, but for the core floor, acknowledged).
    pub sent: usize,
    /// Events that came back at least once.
    pub delivered: usize,
    /// Events that never came back (nothing arrived for the wait after the last publish).
    pub lost: usize,
    /// Messages that came back twice (same `Nats-Msg-Id`), and decisions beyond one per event.
    pub duplicates: usize,
    /// Seconds from the first publish to the last first receipt.
    pub seconds: f64,
    /// `delivered / seconds`.
    pub events_per_second: f64,
    /// Messages the target's streams stored over the run, per event sent: what each event costs
    /// JetStream. For linkbus, every stream and KV bucket but the floors' (the report itself
    /// included), counted once the case book has caught up; for the floors, their two streams.
    pub stored_per_event: f64,
    /// Seconds from the first publish until the last of those messages was stored (for linkbus,
    /// when the case book had opened every record: the closed loop caught up).
    pub stored_seconds: f64,
    /// From when each event was due (paced) or published (unpaced) to its first receipt.
    pub latency: Latency,
}

impl RunReport {
    /// Whether every event came back exactly once.
    pub fn exactly_once(&self) -> bool {
        self.lost == 0 && self.duplicates == 0
    }
}

/// Every run of a `linkbus-bench load`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BenchReport {
    /// In the order they ran.
    pub runs: Vec<RunReport>,
}

impl BenchReport {
    /// Whether every linkbus run delivered each event exactly once.
    pub fn linkbus_exactly_once(&self) -> bool {
        self.runs.iter().filter(|r| r.target == Target::Linkbus).all(RunReport::exactly_once)
    }
}

/// Runs the benchmark against the linkbus on the NATS at `url`, with cases spread over
/// `region`'s communities and categories.
pub async fn bench(url: &str, region: &Region, options: &BenchOptions) -> anyhow::Result<BenchReport> {
    let client = &crate::load::connect(url).await?;
    let workload = Workload::new(region, options.seed)?;
    let prefix = format!("bench-{}", Timestamp::now().as_millisecond());
    let targets = &options.targets;
    let floors =
        if targets.iter().any(|t| *t != Target::Linkbus) { Some(floor::Floors::start(url).await?) } else { None };
    let mut plans: Vec<Option<u32>> = options.rates.iter().map(|r| Some(*r)).collect();
    if options.unpaced > 0 {
        plans.push(None);
    }
    let mut report = BenchReport::default();
    let mut run_number = 0;
    let mut first = 0;
    let outcome: anyhow::Result<()> = async {
        for rate in plans {
            let count = match rate {
                Some(rate) => (f64::from(rate) * options.seconds).round().max(1.0) as usize,
                None => options.unpaced,
            };
            for &target in targets {
                run_number += 1;
                let run = Run { target, rate, count, first, prefix: format!("{prefix}-{run_number}") };
                first += count;
                tracing::info!(%target, ?rate, count, "bench run");
                report.runs.push(run.execute(client, &workload, options.wait).await?);
            }
        }
        Ok(())
    }
    .await;
    if let Some(floors) = floors {
        floors.stop().await;
    }
    outcome?;
    Ok(report)
}

/// The cases a run publishes: a category of the region and a point inside one of its
/// communities, cycled through.
struct Workload {
    cases: Vec<(SourceSystem, String, Location)>,
}

impl Workload {
    fn new(region: &Region, seed: u64) -> anyhow::Result<Self> {
        anyhow::ensure!(!region.categories.is_empty(), "region {} has no categories", region.manifest.id);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut cases = Vec::with_capacity(POINTS);
        let boxes: Vec<_> = region.communities.iter().filter_map(|c| Some((c, c.boundary.bounding_rect()?))).collect();
        anyhow::ensure!(!boxes.is_empty(), "region {} has no communities", region.manifest.id);
        let mut tries = 0;
        while cases.len() < POINTS {
            tries += 1;
            anyhow::ensure!(
                tries < 100 * POINTS,
                "cannot find points inside the communities of {}",
                region.manifest.id
            );
            let (community, rect) = &boxes[rng.random_range(0..boxes.len())];
            let point = Point::new(
                rng.random_range(rect.min().x..=rect.max().x),
                rng.random_range(rect.min().y..=rect.max().y),
            );
            if community.boundary.contains(&point) {
                let category = &region.categories[rng.random_range(0..region.categories.len())];
                cases.push((category.system, category.id.clone(), Location { lon: point.x(), lat: point.y() }));
            }
        }
        Ok(Self { cases })
    }

    /// Event `id`, the `n`th of the whole bench: its ingest subject and JSON. Each time round the
    /// cycle moves the point a centimetre east, so that no two events of a bench share a place:
    /// each is a distinct incident (with `lifecycle.merge_distance_m = 0`, none is merged as a
    /// duplicate; a later bench against the same linkbus takes the same places again, at other
    /// instants, so add `merge_window_secs = 0` there).
    fn event(&self, id: String, n: usize) -> anyhow::Result<(String, Bytes)> {
        let (system, category, at) = &self.cases[n % self.cases.len()];
        let location = Location { lon: at.lon + (n / self.cases.len()) as f64 * 1e-7, lat: at.lat };
        let now = Timestamp::now();
        let report = CaseReport {
            system: *system,
            category: category.clone(),
            priority: 3,
            location,
            address: Some(format!("{n} Bench Street")),
            reporter: None,
            description: Some("linkbus bench".into()),
            source_id: id.clone(),
            reported_at: now,
            flags: vec![],
            datum: wire::Datum::Wgs84,
            received_location: None,
            area: None,
            media_url: None,
        };
        let event = CloudEvent::new(id.clone(), "/linkbus-bench", wire::TYPE_CASE_REPORTED, Some(id), now, report);
        Ok((subjects::ingest(*system, category), serde_json::to_vec(&event)?.into()))
    }
}

/// One run: `count` events to `target`, paced at `rate` or unpaced.
struct Run {
    target: Target,
    rate: Option<u32>,
    count: usize,
    /// Event ids are `<prefix>-<n>`, unique across runs (JetStream drops a repeated id).
    prefix: String,
    /// Events the bench sent before this run: where this run's places continue from.
    first: usize,
}

/// One message that came back: which event, and what must not come twice.
struct Receipt {
    n: usize,
    kind: ReceiptKind,
}

enum ReceiptKind {
    /// A delivery, named by its `Nats-Msg-Id` (a department's copy, a floor's output).
    Delivery(String),
    /// A stored decision (linkbus only).
    Decision,
}

impl Run {
    async fn execute(
        &self,
        client: &async_nats::Client,
        workload: &Workload,
        wait: Duration,
    ) -> anyhow::Result<RunReport> {
        let js = jetstream::new(client.clone());
        let stored_before = stored_messages(&js, self.target).await?;
        let receipts = self.subscribe(client, &js).await?;
        let due: Arc<[AtomicU64]> = (0..self.count).map(|_| AtomicU64::new(0)).collect();
        let started = Instant::now();
        let published_all = CancellationToken::new();
        let tally = Tally::new(self.count, self.target == Target::Linkbus)?;
        let receiver = tokio::spawn(tally.collect(receipts, due.clone(), started, published_all.clone(), wait));

        let published = self.publish(client, &js, workload, &due, started).await;
        published_all.cancel();
        if let Err(e) = published {
            receiver.abort();
            return Err(e);
        }
        let tally = receiver.await?;
        let mut report = tally.report(self.target, self.rate, self.count, started);
        let last_receipt = started + Duration::from_secs_f64(report.seconds);
        let (stored, stored_at) = settled(&js, self.target, last_receipt).await?;
        report.stored_per_event = stored.saturating_sub(stored_before) as f64 / self.count.max(1) as f64;
        report.stored_seconds = (stored_at - started).as_secs_f64();
        Ok(report)
    }

    /// Opens what the run's events come back through, before anything is published.
    async fn subscribe(
        &self,
        client: &async_nats::Client,
        js: &jetstream::Context,
    ) -> anyhow::Result<BoxStream<'static, Receipt>> {
        let prefix = format!("{}-", self.prefix);
        let number = move |id: &str| id.strip_prefix(&prefix).and_then(|n| n.parse::<usize>().ok());
        match self.target {
            Target::Linkbus => {
                let number = Arc::new(number);
                let departments = ordered(js, STREAM_ROUTED, "routed.dept.>").await?;
                let n = number.clone();
                let departments = departments.filter_map(move |msg| {
                    let id = msg_id(&msg);
                    let receipt = id.as_deref().and_then(|id| {
                        let (case, _) = id.split_once(":routed:dept:")?;
                        Some(Receipt { n: n(case)?, kind: ReceiptKind::Delivery(id.to_owned()) })
                    });
                    std::future::ready(receipt)
                });
                let decisions = ordered(js, STREAM_CASES, &subjects::case_event("*", "routed")).await?;
                let decisions = decisions.filter_map(move |msg| {
                    let case = msg.subject.split('.').nth(1).unwrap_or_default();
                    std::future::ready(number(case).map(|n| Receipt { n, kind: ReceiptKind::Decision }))
                });
                Ok(futures::stream::select(departments, decisions).boxed())
            }
            Target::CoreFloor => {
                let out = client.subscribe(format!("{}.>", floor::CORE_OUT)).await?;
                client.flush().await?;
                Ok(out
                    .filter_map(move |msg| {
                        let id = msg.subject.rsplit('.').next().unwrap_or_default().to_owned();
                        std::future::ready(number(&id).map(|n| Receipt { n, kind: ReceiptKind::Delivery(id) }))
                    })
                    .boxed())
            }
            Target::JetstreamFloor => {
                let out = ordered(js, floor::STREAM_OUT, &format!("{}.>", floor::JETSTREAM_OUT)).await?;
                Ok(out
                    .filter_map(move |msg| {
                        let id = msg_id(&msg);
                        let receipt =
                            id.and_then(|id| Some(Receipt { n: number(&id)?, kind: ReceiptKind::Delivery(id) }));
                        std::future::ready(receipt)
                    })
                    .boxed())
            }
        }
    }

    /// Publishes the run's events, recording in `due` when each was due (nanoseconds after
    /// `started`, plus one so that zero means not yet).
    async fn publish(
        &self,
        client: &async_nats::Client,
        js: &jetstream::Context,
        workload: &Workload,
        due: &[AtomicU64],
        started: Instant,
    ) -> anyhow::Result<()> {
        let mut acks = FuturesUnordered::new();
        for (n, slot) in due.iter().enumerate() {
            let at = match self.rate {
                Some(rate) => {
                    let at = started + Duration::from_secs_f64(n as f64 / f64::from(rate));
                    tokio::time::sleep_until(at.into()).await;
                    at
                }
                None => Instant::now(),
            };
            let id = format!("{}-{n}", self.prefix);
            let (subject, payload) = workload.event(id.clone(), self.first + n)?;
            slot.store(u64::try_from((at - started).as_nanos()).unwrap_or(u64::MAX - 1) + 1, Ordering::Release);
            match self.target {
                Target::Linkbus => acks.push(nats::publish(js, subject, &id, payload).await?.into_future()),
                Target::JetstreamFloor => acks.push(
                    nats::publish(js, format!("{}.{id}", floor::JETSTREAM_IN), &id, payload).await?.into_future(),
                ),
                Target::CoreFloor => client.publish(format!("{}.{id}", floor::CORE_IN), payload).await?,
            }
            while acks.len() >= MAX_UNACKED {
                check_ack(acks.next().await)?;
            }
            while let Some(Some(ack)) = acks.next().now_or_never() {
                check_ack(Some(ack))?;
            }
        }
        while let Some(ack) = acks.next().await {
            check_ack(Some(ack))?;
        }
        client.flush().await?;
        Ok(())
    }
}

fn check_ack(
    ack: Option<Result<jetstream::publish::PublishAck, jetstream::context::PublishError>>,
) -> anyhow::Result<()> {
    if let Some(ack) = ack {
        let ack = ack.context("JetStream did not store a bench event")?;
        anyhow::ensure!(!ack.duplicate, "JetStream took bench event {} for a duplicate", ack.sequence);
    }
    Ok(())
}

/// An ordered consumer of new messages on `filter` in `stream`, as a stream of messages (errors
/// are logged and skipped: the ordered consumer recreates itself).
async fn ordered(
    js: &jetstream::Context,
    stream: &str,
    filter: &str,
) -> anyhow::Result<BoxStream<'static, jetstream::Message>> {
    let consumer = js
        .get_stream(stream)
        .await
        .with_context(|| format!("no stream {stream} (is linkbus running on this NATS?)"))?
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: filter.to_owned(),
            deliver_policy: consumer::DeliverPolicy::New,
            ..Default::default()
        })
        .await
        .with_context(|| format!("cannot consume {filter} from {stream}"))?;
    let messages = consumer.messages().await.with_context(|| format!("cannot consume {filter} from {stream}"))?;
    Ok(messages
        .filter_map(|m| {
            std::future::ready(m.map_err(|e| tracing::warn!(error = %e, "bench consumer error; continuing")).ok())
        })
        .boxed())
}

/// Messages ever stored in `target`'s streams (the sum of their last sequences), to count what
/// a run stores.
async fn stored_messages(js: &jetstream::Context, target: Target) -> anyhow::Result<u64> {
    let mut streams = js.streams();
    let mut total = 0;
    while let Some(info) = streams.next().await {
        let info = info.context("cannot list the JetStream streams")?;
        if info.config.name.starts_with(floor::STREAM_PREFIX) == (target != Target::Linkbus) {
            total += info.state.last_sequence;
        }
    }
    Ok(total)
}

/// [`stored_messages`] once it stops growing (what linkbus stores after the departments have
/// their copies — the case book's record — still counts), waiting at most [`SETTLE`]; and when
/// it last grew (`since` if not after the first look).
async fn settled(js: &jetstream::Context, target: Target, since: Instant) -> anyhow::Result<(u64, Instant)> {
    let deadline = Instant::now() + SETTLE;
    let mut tick = tokio::time::interval(QUIET / 5);
    let (mut last, mut grew) = (stored_messages(js, target).await?, since);
    loop {
        tick.tick().await;
        let now = stored_messages(js, target).await?;
        if now != last {
            (last, grew) = (now, Instant::now());
        } else if grew.elapsed() >= QUIET || Instant::now() > deadline {
            return Ok((now, grew));
        }
    }
}

fn msg_id(msg: &jetstream::Message) -> Option<String> {
    msg.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")).map(|v| v.as_str().to_owned())
}

/// What came back of one run.
struct Tally {
    /// Per event: whether it was delivered, and its decisions.
    delivered: Vec<bool>,
    decisions: Vec<u32>,
    count_decisions: bool,
    delivered_count: usize,
    decided_count: usize,
    seen: HashSet<String>,
    duplicates: usize,
    latency_us: Histogram<u64>,
    /// When the last first delivery came.
    last: Option<Instant>,
}

impl Tally {
    fn new(count: usize, count_decisions: bool) -> anyhow::Result<Self> {
        Ok(Self {
            delivered: vec![false; count],
            decisions: vec![0; if count_decisions { count } else { 0 }],
            count_decisions,
            delivered_count: 0,
            decided_count: 0,
            seen: HashSet::with_capacity(count),
            duplicates: 0,
            latency_us: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).context("latency histogram")?,
            last: None,
        })
    }

    fn complete(&self) -> bool {
        let count = self.delivered.len();
        self.delivered_count == count && (!self.count_decisions || self.decided_count == count)
    }

    /// Reads `receipts` until every event is in and [`QUIET`] passes without a message, or,
    /// once `published_all` is cancelled, nothing has come for `idle` (a slow service that is
    /// still delivering is waited for; one that stopped is not).
    async fn collect(
        mut self,
        mut receipts: BoxStream<'static, Receipt>,
        due: Arc<[AtomicU64]>,
        started: Instant,
        published_all: CancellationToken,
        idle: Duration,
    ) -> Self {
        let mut last_activity = Instant::now();
        let mut publishing = true;
        loop {
            if publishing && published_all.is_cancelled() {
                publishing = false;
                last_activity = Instant::now();
            }
            match tokio::time::timeout(QUIET, receipts.next()).await {
                Ok(Some(receipt)) => {
                    self.record(receipt, &due, started);
                    last_activity = Instant::now();
                }
                Ok(None) => break,
                Err(_) if self.complete() => break,
                Err(_) if !publishing && last_activity.elapsed() >= idle => break,
                Err(_) => {}
            }
        }
        self
    }

    fn record(&mut self, receipt: Receipt, due: &[AtomicU64], started: Instant) {
        let now = Instant::now();
        let Some(delivered) = self.delivered.get_mut(receipt.n) else { return };
        match receipt.kind {
            ReceiptKind::Decision => {
                let decisions = &mut self.decisions[receipt.n];
                *decisions += 1;
                if *decisions == 1 {
                    self.decided_count += 1;
                } else {
                    self.duplicates += 1;
                }
            }
            ReceiptKind::Delivery(id) => {
                if !self.seen.insert(id) {
                    self.duplicates += 1;
                    return;
                }
                if *delivered {
                    return;
                }
                *delivered = true;
                self.delivered_count += 1;
                let sent = due[receipt.n].load(Ordering::Acquire);
                let at = u64::try_from((now - started).as_nanos()).unwrap_or(u64::MAX);
                if sent > 0 {
                    let micros = at.saturating_sub(sent - 1) / 1_000;
                    self.latency_us.saturating_record(micros.clamp(1, MAX_LATENCY_US));
                }
                self.last = Some(now);
            }
        }
    }

    /// The run's figures but what it stored (filled in by the run).
    fn report(&self, target: Target, rate: Option<u32>, sent: usize, started: Instant) -> RunReport {
        let seconds = self.last.map_or(0.0, |last| (last - started).as_secs_f64());
        let ms = |q: f64| self.latency_us.value_at_quantile(q) as f64 / 1_000.0;
        let latency = if self.latency_us.is_empty() {
            Latency::default()
        } else {
            Latency {
                p50_ms: ms(0.5),
                p90_ms: ms(0.9),
                p99_ms: ms(0.99),
                p999_ms: ms(0.999),
                max_ms: self.latency_us.max() as f64 / 1_000.0,
            }
        };
        let undecided = if self.count_decisions { self.decisions.iter().filter(|d| **d == 0).count() } else { 0 };
        RunReport {
            target,
            rate,
            sent,
            delivered: self.delivered_count,
            lost: (sent - self.delivered_count).max(undecided),
            duplicates: self.duplicates,
            seconds,
            events_per_second: if seconds > 0.0 { self.delivered_count as f64 / seconds } else { 0.0 },
            stored_per_event: 0.0,
            stored_seconds: 0.0,
            latency,
        }
    }
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{:<16} {:>8} {:>8} {:>6} {:>6} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "target",
            "rate/s",
            "sent",
            "lost",
            "dups",
            "events/s",
            "stored/e",
            "stored s",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms"
        )?;
        for r in &self.runs {
            let rate = r.rate.map_or_else(|| "max".to_owned(), |r| r.to_string());
            writeln!(
                f,
                "{:<16} {:>8} {:>8} {:>6} {:>6} {:>10.0} {:>8.1} {:>8.1} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
                r.target.to_string(),
                rate,
                r.sent,
                r.lost,
                r.duplicates,
                r.events_per_second,
                r.stored_per_event,
                r.stored_seconds,
                r.latency.p50_ms,
                r.latency.p99_ms,
                r.latency.p999_ms,
                r.latency.max_ms
            )?;
        }
        write!(
            f,
            "exactly once (linkbus): {}",
            if self.linkbus_exactly_once() { "yes" } else { "NO: events lost or duplicated" }
        )
    }
}
/// A connection for the load generator: a large subscription buffer, since its consumers read at
/// the rates it publishes.
pub(crate) async fn connect(url: &str) -> anyhow::Result<async_nats::Client> {
    async_nats::ConnectOptions::new()
        .name("linkbus-bench")
        .subscription_capacity(1 << 16)
        .connection_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .with_context(|| format!("cannot connect to NATS at {url}"))
}
