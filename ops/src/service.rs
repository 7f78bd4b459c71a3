//! One running linkbus service on a NATS connection: streams provisioned, volunteers seeded and
//! followed, the router consuming. `linkbus up` runs one; tests start them in-process too.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream;
use bytes::Bytes;
use linkbus_bus::nats;
use linkbus_cases::book::CaseBook;
use linkbus_cases::webhooks;
use linkbus_geo_data::Region;
use linkbus_routers::Router;
use linkbus_routers::service::{self as router_service, RouterState};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Config;

/// How long start-up waits for the volunteers bucket to be read in full.
const VOLUNTEERS_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Connects to NATS at `url` (comma-separated URLs for a cluster), retrying for up to
/// `patience` while the server comes up. Reconnects forever afterwards.
pub async fn connect(url: &str, patience: Duration) -> anyhow::Result<async_nats::Client> {
    let started = std::time::Instant::now();
    let urls: Vec<&str> = url.split(',').map(str::trim).filter(|u| !u.is_empty()).collect();
    let mut attempt = 0;
    loop {
        let options = async_nats::ConnectOptions::new()
            .name("linkbus")
            .subscription_capacity(1 << 16)
            .connection_timeout(Duration::from_secs(5));
        match options.connect(urls.as_slice()).await {
            Ok(client) => return Ok(client),
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
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Service {
    /// Provisions the streams, seeds volunteers if asked and the bucket is empty, starts
    /// following volunteers and, once they are loaded, the router.
    pub async fn start(
        config: &Config,
        region: &Region,
        client: async_nats::Client,
        source: String,
    ) -> anyhow::Result<Self> {
        let js = jetstream::new(client.clone());
        nats::provision(&js, &config.stream_settings()).await.context("provisioning streams")?;
        if config.region.seed_volunteers {
            seed_volunteers(&js, region).await?;
        }
        let state = RouterState::new(Router::new(region, config.routing_params()));
        let shutdown = CancellationToken::new();
        let ready = CancellationToken::new();
        let mut tasks = Vec::new();

        let follower = router_service::follow_volunteers(js.clone(), state.clone(), ready.clone(), shutdown.clone());
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
        info!(volunteers = state.stats.volunteer_updates.load(Ordering::Relaxed), "volunteers loaded");

        let (cases, book_tasks) =
            CaseBook::start(js.clone(), state.clone(), config.book_config(format!("{source}/cases")), shutdown.clone())
                .await
                .context("opening the case book")?;
        tasks.extend(book_tasks);
        provision_department_consumers(&js, region).await?;
        webhooks::provision(&js, &config.stream_settings()).await.context("provisioning webhook deliveries")?;
        for webhook in config.webhooks.clone() {
            let department = webhook.department.clone();
            let run = webhooks::run(js.clone(), webhook, shutdown.clone());
            tasks.push(tokio::spawn(async move {
                if let Err(e) = run.await {
                    warn!(department, error = %e, "webhook stopped");
                }
            }));
        }

        let router = router_service::run(js.clone(), state.clone(), config.service_config(source), shutdown.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = router.await {
                warn!(error = %e, "router stopped");
            }
        }));
        Ok(Self { client, js, state, cases, shutdown, tasks })
    }

    /// True while every task runs.
    pub fn is_running(&self) -> bool {
        self.tasks.iter().all(|t| !t.is_finished())
    }

    /// Stops consuming, lets in-flight cases finish, and drains the connection.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        if let Err(e) = self.client.drain().await {
            warn!(error = %e, "draining the NATS connection failed");
        }
    }
}

/// Gives every department of the region a durable consumer `dept-<id>` on its subjects, so a
/// department that was offline gets everything routed to it meanwhile when it returns.
async fn provision_department_consumers(js: &jetstream::Context, region: &Region) -> anyhow::Result<()> {
    let stream = js.get_stream(nats::STREAM_ROUTED).await.context("opening the routed stream")?;
    for d in &region.departments.departments {
        let name = format!("dept-{}", d.id);
        stream
            .get_or_create_consumer(
                &name,
                jetstream::consumer::pull::Config {
                    durable_name: Some(name.clone()),
                    description: Some(format!("cases for {}", d.name)),
                    filter_subject: linkbus_bus::subjects::routed_department(&d.id, "*"),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ..Default::default()
                },
            )
            .await
            .with_context(|| format!("creating the durable consumer {name}"))?;
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
