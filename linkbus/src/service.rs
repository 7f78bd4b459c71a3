//! One running linkbus service on a NATS connection: streams provisioned, volunteers seeded and
//! followed, the router consuming. `linkbus up` runs one; tests start them in-process too.
//! Its metrics go into one registry ([`Metrics`]); [`Service::readiness`] is what `/readyz` asks.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures::future::BoxFuture;
use linkbus_adapters::adapter::LiveGazetteer;
use linkbus_adapters::intake::Intake;
use linkbus_adapters::registry::Adapters;
use linkbus_adapters::tracking::Tracking;
use linkbus_bus::nats;
use linkbus_cases::book::{CaseBook, NextVolunteers};
use linkbus_cases::lifecycle::Ladder;
use linkbus_cases::reports::ReportBook;
use linkbus_cases::webhooks;
use linkbus_geo_data::Region;
use linkbus_http::console::{BUCKET_CONSOLE, bucket_secret};
use linkbus_http::track::Track;
use linkbus_http::volunteer::BUCKET_VOLUNTEER_KEYS;
use linkbus_matching::Router;
use linkbus_matching::areas::Gazetteer;
use linkbus_routers::service::{self as router_service, RouterState};
use linkbus_routers::{regions, volunteer_snapshot};
use linkbus_wire as wire;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{Config, NatsConfig};
use crate::metrics::{Metrics, NatsMetrics};
use crate::nats_access;
use linkbus_http::state::Readiness;

/// How long start-up waits for JetStream to create a stream, bucket or consumer…
const PROVISIONING_TIMEOUT: Duration = Duration::from_secs(10);
/// …and how many times it tries.
const PROVISIONING_ATTEMPTS: u32 = 4;

/// A JetStream context for creating streams, consumers and buckets: it waits longer (see
/// [`idempotent`]).
pub(crate) fn provisioning(js: &jetstream::Context) -> jetstream::Context {
    let mut provisioning = js.clone();
    provisioning.set_timeout(PROVISIONING_TIMEOUT);
    provisioning
}

/// Runs an idempotent start-up step, again after a failure. Replicas starting together create the
/// same streams and consumers, and nats-server answers such concurrent requests late or not at all
/// (nats-io/nats-server#3677, #8350); the next attempt finds them made.
pub(crate) async fn idempotent<T, E, F, Fut>(what: &str, mut step: F) -> anyhow::Result<T>
where
    E: Into<anyhow::Error>,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut attempt = 1;
    loop {
        match step().await.map_err(Into::into) {
            Ok(value) => return Ok(value),
            Err(e) if attempt < PROVISIONING_ATTEMPTS => {
                warn!(error = format!("{e:#}"), attempt, "{what} failed; trying again");
                // A stream just made in a cluster answers "no responders" until its leader is
                // elected: give it a moment, longer each time (1 s, 2 s, 3 s).
                tokio::time::sleep(Duration::from_secs(attempt.into())).await;
                attempt += 1;
            }
            Err(e) => return Err(e.context(format!("{what} ({attempt} attempts)"))),
        }
    }
}

/// The key of the tracking tokens' key in the console's bucket.
const TRACKING_KEY: &str = "tracking-secret";

/// The dispatcher console's bucket (its session secret, and the tracking tokens' key), made the
/// first time.
pub(crate) async fn console_bucket(js: &jetstream::Context, config: &Config) -> anyhow::Result<kv::Store> {
    let settings = config.stream_settings();
    let provisioning = provisioning(js);
    idempotent("provisioning the console's bucket", || {
        nats::provision_bucket(
            &provisioning,
            BUCKET_CONSOLE,
            "the dispatcher console's session secret and the tracking tokens' key",
            Duration::ZERO,
            &settings,
        )
    })
    .await?;
    js.get_key_value(BUCKET_CONSOLE).await.context("opening the console's bucket")
}

/// The volunteers' credentials bucket (their app's sign-in), made the first time, and the
/// volunteers bucket their statuses are put in.
pub(crate) async fn volunteer_buckets(
    js: &jetstream::Context,
    config: &Config,
) -> anyhow::Result<(kv::Store, kv::Store)> {
    let settings = config.stream_settings();
    let provisioning = provisioning(js);
    idempotent("provisioning the volunteers' credentials bucket", || {
        nats::provision_bucket(
            &provisioning,
            BUCKET_VOLUNTEER_KEYS,
            "the volunteers' app credentials (SHA-256 only)",
            Duration::ZERO,
            &settings,
        )
    })
    .await?;
    let keys = js.get_key_value(BUCKET_VOLUNTEER_KEYS).await.context("opening the volunteers' credentials bucket")?;
    let statuses = js.get_key_value(nats::BUCKET_VOLUNTEERS).await.context("opening the volunteers bucket")?;
    Ok((statuses, keys))
}

/// The router's live volunteer index and offer ledger, as the case book asks them for the next
/// volunteers of a case.
struct LiveVolunteers(Arc<RouterState>);

impl NextVolunteers for LiveVolunteers {
    fn next_volunteers(
        &self,
        case: &wire::CaseReport,
        skill: &str,
        already: &[&str],
        now: jiff::Timestamp,
    ) -> Vec<wire::VolunteerChoice> {
        let volunteers = linkbus_bus::sync::read(&self.0.volunteers);
        let offers = linkbus_bus::sync::read(&self.0.offers);
        self.0.router().volunteers_for(case, skill, &volunteers, &offers, now.as_second(), already).0
    }
}

/// How long start-up waits for the volunteers bucket to be read in full.
const VOLUNTEERS_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Connects to NATS at `url` (comma-separated URLs for a cluster) without credentials, retrying
/// for up to `patience` while the server comes up. Reconnects forever afterwards.
pub async fn connect(url: &str, patience: Duration) -> anyhow::Result<async_nats::Client> {
    connect_configured(url, &NatsConfig::default(), patience, None).await
}

/// [`connect`], with the client's connection events (connected, disconnected, slow consumer)
/// moving `metrics`.
pub async fn connect_with_metrics(
    url: &str,
    patience: Duration,
    metrics: &NatsMetrics,
) -> anyhow::Result<async_nats::Client> {
    connect_configured(url, &NatsConfig::default(), patience, Some(metrics)).await
}

/// [`connect`] with the credentials and TLS of `[nats.auth]` / `[nats.tls]`, and `metrics` when
/// given. A server refusing the credentials fails it at once, without retrying.
pub async fn connect_configured(
    url: &str,
    nats: &NatsConfig,
    patience: Duration,
    metrics: Option<&NatsMetrics>,
) -> anyhow::Result<async_nats::Client> {
    let started = std::time::Instant::now();
    let urls: Vec<&str> = url.split(',').map(str::trim).filter(|u| !u.is_empty()).collect();
    let mut attempt = 0;
    loop {
        let mut options = nats_access::connect_options(&nats.auth, &nats.tls)
            .await?
            .name("linkbus")
            .subscription_capacity(1 << 16)
            .connection_timeout(Duration::from_secs(5))
            .ping_interval(Duration::from_secs(nats.ping_interval_secs.max(1)));
        if let Some(metrics) = metrics.cloned() {
            options = options.event_callback(move |event| {
                metrics.observe(&event);
                if matches!(event, async_nats::Event::SlowConsumer(_)) {
                    warn!("NATS slow consumer: a subscription's buffer was full and messages were dropped");
                }
                std::future::ready(())
            });
        }
        match options.connect(urls.as_slice()).await {
            // The first `Event::Connected` sets `linkbus_nats_connected`.
            Ok(client) => return Ok(client),
            Err(e) if e.kind() == async_nats::ConnectErrorKind::AuthorizationViolation => {
                return Err(e).with_context(|| format!("NATS at {url} refused the credentials of [nats.auth]"));
            }
            Err(e) if started.elapsed() < patience => {
                if attempt == 0 {
                    warn!(error = %e, url, "NATS not reachable yet; retrying for up to {patience:?}");
                }
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("cannot connect to NATS at {url}")),
        }
    }
}

/// How often a replica looks whether last month's report is due (`[supervision] issue_on_day`).
const REPORT_CHECK: Duration = Duration::from_secs(600);

/// Issues last month's report once it is due ([`ReportBook::issue_if_due`]): at start, then every
/// [`REPORT_CHECK`], until `shutdown`. Every replica runs it; the month is issued once.
async fn issue_reports(reports: Arc<ReportBook>, cases: Arc<CaseBook>, day: i8, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(REPORT_CHECK);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        match reports.issue_if_due(&cases, day, jiff::Timestamp::now()).await {
            Ok(Some(report)) => {
                info!(month = %report.month, version = report.version, "monthly report issued on schedule")
            }
            Ok(None) => {}
            Err(e) => warn!(error = %e, "could not issue last month's report; trying again later"),
        }
    }
}

/// A running service.
pub struct Service {
    /// The NATS connection.
    pub client: async_nats::Client,
    /// JetStream on that connection.
    pub js: jetstream::Context,
    /// Routing state (matching, volunteers, counters).
    pub state: Arc<RouterState>,
    /// The case book (the closed loop).
    pub cases: Arc<CaseBook>,
    /// The monthly supervision reports as issued.
    pub reports: Arc<ReportBook>,
    /// The source-system adapters: the intake they all publish through, and the CAP, CAD and
    /// commerce adapters (the HTTP routes are served by the API, `crate::adapters::routes`).
    pub adapters: Arc<Adapters>,
    /// The resident's tracking page: its tokens (their key is kept in the console's bucket, so
    /// every replica and a restart honour them), its lockouts, its metrics.
    pub track: Arc<Track>,
    /// The registry every metric of this service is in.
    pub metrics: Metrics,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Service {
    /// Provisions the streams, seeds volunteers if asked and the bucket is empty, starts
    /// following volunteers and, once they are loaded, the router. Its metrics go into a registry
    /// of its own, without the NATS connection's (see [`Service::start_with_metrics`]).
    pub async fn start(
        config: &Config,
        region: &Region,
        client: async_nats::Client,
        source: String,
    ) -> anyhow::Result<Self> {
        let metrics = Metrics::new().context("creating the metrics")?;
        Self::start_with_metrics(config, region, client, source, metrics).await
    }

    /// [`Service::start`], registering the router's and the closed loop's metrics into
    /// `metrics` (which should be the one whose [`NatsMetrics`] the client was connected with,
    /// [`connect_with_metrics`]) and recording the region loaded there.
    pub async fn start_with_metrics(
        config: &Config,
        region: &Region,
        client: async_nats::Client,
        source: String,
        metrics: Metrics,
    ) -> anyhow::Result<Self> {
        let (router_metrics, case_metrics, adapter_metrics) =
            metrics.register_service().context("registering the router's and the case book's metrics")?;
        metrics.region_loaded(region);
        let js = jetstream::new(client.clone());
        // Creating streams and consumers goes through a cluster's meta leader, which answers
        // slowly while replicas start together; it is idempotent, so it may wait longer.
        let provisioning = provisioning(&js);
        let settings = config.stream_settings();
        // First: a bus that holds another region's cases is refused before anything is routed.
        let regions_store =
            idempotent("opening the region versions", || regions::open_bucket(&provisioning, &settings)).await?;
        let claimed = idempotent("checking the bus's region", || async {
            match regions::claim_bus(&regions_store, region).await {
                Err(e @ regions::RegionVersionError::OtherRegion { .. }) => Ok(Err(e)),
                other => other.map(Ok),
            }
        })
        .await?;
        claimed?;
        idempotent("provisioning streams", || nats::provision(&provisioning, &settings)).await?;
        if config.region.seed_volunteers {
            seed_volunteers(&provisioning, region).await?;
        }
        let state = RouterState::with_metrics(Router::new(region, config.routing_params()), router_metrics);
        let shutdown = CancellationToken::new();
        let ready = CancellationToken::new();
        let mut tasks = Vec::new();

        let follower =
            linkbus_routers::volunteers::follow_volunteers(js.clone(), state.clone(), ready.clone(), shutdown.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = follower.await {
                warn!(error = %e, "volunteer follower stopped");
            }
        }));
        let offers = router_service::follow_offers(js.clone(), state.clone(), shutdown.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = offers.await {
                warn!(error = %e, "offer follower stopped");
            }
        }));
        tokio::time::timeout(VOLUNTEERS_READY_TIMEOUT, ready.cancelled())
            .await
            .context("timed out loading volunteers from the bucket")?;
        info!(volunteers = linkbus_bus::sync::read(&state.volunteers).len(), "volunteers loaded");
        if config.router.volunteer_snapshot_secs > 0 {
            let every = Duration::from_secs(config.router.volunteer_snapshot_secs);
            tasks.push(tokio::spawn(volunteer_snapshot::save_every(
                js.clone(),
                state.clone(),
                every,
                shutdown.clone(),
            )));
        }

        let mut book_config = config.book_config(format!("{source}/cases"));
        book_config.time_zone = jiff::tz::TimeZone::get(&region.manifest.time_zone)
            .with_context(|| format!("the region's time zone {:?}", region.manifest.time_zone))?;
        let ladder = {
            let router = state.router();
            let departments = router.departments();
            Ladder::new(
                departments.departments().iter().map(|d| (d.id.clone(), d.parent.clone())),
                &departments.departments()[departments.catch_all()].id,
            )
        };
        let (cases, book_tasks) = CaseBook::start(
            js.clone(),
            ladder,
            Arc::new(LiveVolunteers(state.clone())),
            book_config,
            case_metrics.clone(),
            shutdown.clone(),
        )
        .await
        .context("opening the case book")?;
        tasks.extend(book_tasks);
        idempotent("provisioning department consumers", || provision_department_consumers(&provisioning, region))
            .await?;
        idempotent("provisioning webhook deliveries", || webhooks::provision(&provisioning, &settings)).await?;
        let reports =
            Arc::new(idempotent("opening the monthly reports", || ReportBook::open(&provisioning, &settings)).await?);
        if let Some(day) = config.supervision.issue_on_day {
            tasks.push(tokio::spawn(issue_reports(reports.clone(), cases.clone(), day, shutdown.clone())));
        }
        for webhook in config.webhooks.clone() {
            let department = webhook.department.clone();
            let run = webhooks::run_with_metrics(js.clone(), webhook, case_metrics.webhooks.clone(), shutdown.clone());
            tasks.push(tokio::spawn(async move {
                if let Err(e) = run.await {
                    warn!(department, error = %e, "webhook stopped");
                }
            }));
        }

        // CAP areas named by geocode are placed with the codes of the version in force.
        let gazetteer = Arc::new(LiveGazetteer::new(Gazetteer::new(region)));
        if config.region.follow_published {
            let store = regions_store;
            idempotent("archiving the region version", || regions::archive(&store, region)).await?;
            let process_metrics = metrics.clone();
            let gazetteer = gazetteer.clone();
            let follow = regions::follow_region(
                js.clone(),
                store,
                state.clone(),
                region.manifest.id.clone(),
                config.routing_params(),
                move |loaded: &Region| {
                    process_metrics.region_loaded(loaded);
                    gazetteer.replace(Gazetteer::new(loaded));
                },
                shutdown.clone(),
            );
            tasks.push(tokio::spawn(follow));
        }
        let tracking = Arc::new(Tracking::new(
            bucket_secret(&console_bucket(&js, config).await?, TRACKING_KEY).await?,
            &config.api.public_url,
        ));
        let intake = Intake::new(js.clone(), cases.clone(), adapter_metrics, state.metrics.storage.clone())
            .with_tracking(tracking.clone());
        let (adapters, adapter_tasks) =
            crate::adapters::start(config, gazetteer, &js, client.clone(), intake, shutdown.clone()).await?;
        tasks.extend(adapter_tasks);
        let router = router_service::run(js.clone(), state.clone(), config.service_config(source), shutdown.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = router.await {
                warn!(error = %e, "router stopped");
            }
        }));
        let track = Track::new(tracking, metrics.registry()).context("registering the tracking page's metrics")?;
        Ok(Self { client, js, state, cases, reports, adapters, track: Arc::new(track), metrics, shutdown, tasks })
    }

    /// What `/readyz` asks of this service: NATS connected, no publish refused lately for lack of
    /// storage ("storage refused"), every stream and bucket present, the region loaded.
    pub fn readiness(&self) -> Arc<dyn Readiness> {
        Arc::new(Probe { client: self.client.clone(), js: self.js.clone(), state: self.state.clone() })
    }

    /// True while every task runs.
    pub fn is_running(&self) -> bool {
        self.tasks.iter().all(|t| !t.is_finished())
    }

    /// Stops consuming, hands back what was pulled but not started, lets in-flight cases finish,
    /// waits until the server has read every ack and hand-back, and drains the connection.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        // async-nats's `drain` only asks for a drain and returns: a process exiting right after
        // it could lose acks still in the client's buffer (and leave cases to the ack wait). A
        // JetStream request answered means the server has read everything sent before it.
        match tokio::time::timeout(STOP_ROUND_TRIP_TIMEOUT, self.js.get_stream(nats::STREAM_CASES)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!(error = %e, "the last acks may not have reached NATS"),
            Err(_) => {
                warn!("NATS did not answer within {STOP_ROUND_TRIP_TIMEOUT:?}; the last acks may not have reached it")
            }
        }
        if let Err(e) = self.client.drain().await {
            warn!(error = %e, "draining the NATS connection failed");
        }
    }
}

/// How long [`Service::stop`] waits for NATS to confirm it read the last acks.
const STOP_ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(5);

/// The readiness probe of a [`Service`].
struct Probe {
    client: async_nats::Client,
    js: jetstream::Context,
    state: Arc<RouterState>,
}

/// How long the probe waits for JetStream to describe one stream.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

impl Readiness for Probe {
    fn ready(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            match self.client.connection_state() {
                async_nats::connection::State::Connected => {}
                async_nats::connection::State::Pending => return Err("NATS is not connected: reconnecting".into()),
                async_nats::connection::State::Disconnected => return Err("NATS is not connected".into()),
            }
            self.state.metrics.storage.verdict()?;
            let streams = [
                nats::STREAM_INGEST_EMERGENCY.to_owned(),
                nats::STREAM_INGEST_COMMERCIAL.to_owned(),
                nats::STREAM_INGEST_PUBLIC_SERVICE.to_owned(),
                nats::STREAM_INGEST_MANAGEMENT.to_owned(),
                nats::STREAM_ROUTED.to_owned(),
                nats::STREAM_OFFERS.to_owned(),
                nats::STREAM_CASES.to_owned(),
                nats::STREAM_DEADLETTER.to_owned(),
                format!("KV_{}", nats::BUCKET_VOLUNTEERS),
                format!("KV_{}", nats::BUCKET_CASES),
            ];
            let checks = streams.iter().map(|name| async move {
                match tokio::time::timeout(PROBE_TIMEOUT, self.js.get_stream(name)).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(format!("stream {name} is not available: {e}")),
                    Err(_) => Err(format!("stream {name}: no answer from JetStream within {PROBE_TIMEOUT:?}")),
                }
            });
            futures::future::try_join_all(checks).await?;
            if self.state.router().communities().communities().is_empty() {
                return Err("no region loaded: the region has no community".into());
            }
            Ok(())
        })
    }
}

/// Gives every department of the region a durable consumer `dept-<id>` on its subjects, so a
/// department that was offline gets everything routed to it meanwhile when it returns. One made
/// by an earlier version, on `routed.dept.<id>.*`, is widened to `routed.dept.<id>.>` (where
/// the copies that also serve the community are), keeping its position and its other settings.
async fn provision_department_consumers(js: &jetstream::Context, region: &Region) -> anyhow::Result<()> {
    let stream = js.get_stream(nats::STREAM_ROUTED).await.context("opening the routed stream")?;
    for d in &region.departments.departments {
        let name = format!("dept-{}", d.id);
        let filter = linkbus_wire::subjects::routed_department(&d.id, ">");
        let consumer: jetstream::consumer::PullConsumer = stream
            .get_or_create_consumer(
                &name,
                jetstream::consumer::pull::Config {
                    durable_name: Some(name.clone()),
                    description: Some(format!("cases for {}", d.name)),
                    filter_subject: filter.clone(),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ..Default::default()
                },
            )
            .await
            .with_context(|| format!("creating the durable consumer {name}"))?;
        let config = &consumer.cached_info().config;
        if config.filter_subject != filter && config.filter_subjects.is_empty() {
            info!(consumer = %name, from = %config.filter_subject, to = %filter, "widening the filter");
            let widened = jetstream::consumer::Config { filter_subject: filter, ..config.clone() };
            stream.update_consumer(widened).await.with_context(|| format!("widening {name}"))?;
        }
    }
    warn_of_outdated_filters(&stream).await
}

/// Warns of each consumer on the routed stream (a department's or a community's own) whose
/// filters were written for the earlier layout and now miss cases: linkbus does not change
/// consumers it did not make.
async fn warn_of_outdated_filters(stream: &jetstream::stream::Stream) -> anyhow::Result<()> {
    use futures::TryStreamExt;
    let mut consumers = stream.consumers();
    while let Some(info) = consumers.try_next().await.context("listing the routed stream's consumers")? {
        let config = &info.config;
        let filters = if config.filter_subjects.is_empty() {
            vec![config.filter_subject.clone()]
        } else {
            config.filter_subjects.clone()
        };
        for advice in linkbus_wire::subjects::missed_by_routed_filters(&filters) {
            warn!(consumer = %info.name, stream = nats::STREAM_ROUTED, "{advice} (docs/wire.md, \"Changed 2026-12-08\")");
        }
    }
    Ok(())
}

/// Puts the region's roster into an empty volunteers bucket.
async fn seed_volunteers(js: &jetstream::Context, region: &Region) -> anyhow::Result<()> {
    let store = js.get_key_value(nats::BUCKET_VOLUNTEERS).await.context("opening the volunteers bucket")?;
    let status = store.status().await.context("reading the volunteers bucket status")?;
    if status.values() > 0 {
        return Ok(());
    }
    let roster = region.roster().context("reading the volunteer roster")?;
    if roster.is_empty() {
        return Ok(());
    }
    for v in &roster {
        let value = Bytes::from(serde_json::to_vec(v)?);
        store.put(&v.id, value).await.with_context(|| format!("seeding volunteer {}", v.id))?;
    }
    info!(count = roster.len(), region = %region.manifest.id, "seeded the volunteers bucket from the roster");
    Ok(())
}
