//! `linkbus up`: the whole service. Connects to the configured NATS, or starts and supervises an
//! embedded nats-server (restarted if it dies; its users and keys: [`crate::embedded`]); runs the
//! router and the case book; serves the HTTP API on `[api].listen`; optionally replays a file
//! through it or drives the simulated feed; stops cleanly on ctrl-c or SIGTERM (the API first,
//! letting requests in progress finish, then the service).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use linkbus_bus::server::{NatsServer, ServerConfig};
use linkbus_geo_data::Region;
use linkbus_routers::regions::RegionVersionError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::replay::{self, ReplayOptions};
use crate::service::{self, Service};
use crate::simulate;
use linkbus_http::config::ApiRole;
use linkbus_http::console::Console;
use linkbus_http::names::RegionNames;
use linkbus_http::server::Limits;
use linkbus_http::state::ApiState;
use linkbus_http::volunteer::VolunteerApp;

/// What `up` was asked to do besides running.
#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    /// Replay this file once the service is ready.
    pub replay: Option<PathBuf>,
    /// Replay pace, cases per second (`None`: as fast as possible).
    pub rate: Option<f64>,
    /// Stop after the replay instead of running until ctrl-c.
    pub exit_after_replay: bool,
    /// Drive a simulated feed with the category mix and hourly profile of this SF 311 sample
    /// (see [`crate::simulate`]); `rate` is its mean, 2 cases a second when absent.
    pub simulate: Option<PathBuf>,
    /// Seed of the simulated feed's draws (cases and departments); the clock's seconds when absent.
    pub simulate_seed: Option<u64>,
}

/// Runs until ctrl-c / SIGTERM (or the replay ends, if asked).
pub async fn up(config: Config, options: UpOptions) -> anyhow::Result<()> {
    // First, so that a SIGTERM during start-up stops linkbus cleanly once it is up.
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let region =
        Region::load(&config.region.dir).with_context(|| format!("loading region {}", config.region.dir.display()))?;
    info!(
        region = %region.manifest.id,
        version = %region.manifest.version,
        communities = region.communities.len(),
        departments = region.departments.departments.len(),
        "region loaded"
    );

    // Bound first, so a taken port stops `up` before anything else starts.
    let api_listener = bind_api(&config).await?;
    let mut server = None;
    let data = config.nats.data_dir_for(&region.manifest.id);
    let (url, nats) = match &config.nats.url {
        Some(url) => (url.clone(), config.nats.clone()),
        None => {
            let s = start_embedded(&config, &region, &data).await?;
            let url = s.url();
            server = Some(s);
            (url, crate::embedded::service_settings(&config.nats, &data))
        }
    };
    let metrics = Metrics::new().context("creating the metrics")?;
    let client = service::connect_configured(&url, &nats, Duration::from_secs(30), Some(&metrics.nats)).await?;
    let source = format!("/linkbus/router/{}", std::process::id());
    let svc = match Service::start_with_metrics(&config, &region, client.clone(), source, metrics).await {
        Ok(svc) => svc,
        Err(e) => {
            let other = e.downcast_ref::<RegionVersionError>().and_then(|e| match e {
                RegionVersionError::OtherRegion { bus, .. } => Some(bus.clone()),
                _ => None,
            });
            if let Some(mut s) = server {
                s.stop(Duration::from_secs(10)).await;
            }
            return Err(match (other, &config.nats.url) {
                (Some(bus), None) => anyhow::anyhow!(
                    "refusing to start on the embedded nats-server's data folder {data}: {e}; to throw {bus}'s cases \
                     away, delete {data}",
                    data = data.display()
                ),
                (Some(_), Some(url)) => anyhow::anyhow!("refusing to start on NATS {url}: {e}"),
                (None, _) => e,
            });
        }
    };
    let api_stop = CancellationToken::new();
    let api = match api_listener {
        Some(listener) => Some(serve_api(listener, &config, &region, &svc, api_stop.clone()).await?),
        None => None,
    };
    let volunteers = svc.state.volunteers.read().map(|v| (v.len(), v.available())).unwrap_or_default();
    eprintln!(
        "linkbus is up: NATS {url}, region {} ({} communities, {} departments), {} volunteers ({} available), {}. Ctrl-C stops it.",
        region.manifest.name,
        region.communities.len(),
        region.departments.departments.len(),
        volunteers.0,
        volunteers.1,
        api.as_ref().map_or_else(
            || "API off".to_owned(),
            |(addr, _)| {
                let console = if config.console.enabled { format!(", console http://{addr}/") } else { String::new() };
                format!("API http://{addr}{console}")
            }
        )
    );

    let stop = CancellationToken::new();
    let afresh = match &config.nats.url {
        None => format!("remove the data folder {} to watch them routed afresh", data.display()),
        Some(_) => "replay after the duplicate window to watch them routed afresh".to_owned(),
    };
    let replay_task = options.replay.clone().map(|path| {
        let client = client.clone();
        let stop = stop.clone();
        let exit_after = options.exit_after_replay;
        let replay_options =
            ReplayOptions { rate: options.rate, wait: Duration::from_secs(60), progress: true, real_outcomes: None };
        tokio::spawn(async move {
            eprintln!("replaying {} …", path.display());
            match replay::replay(&client, &path, &replay_options).await {
                Ok(summary) => {
                    eprintln!("{summary}");
                    if summary.duplicates > 0 && summary.published == 0 {
                        eprintln!("every case was already on the bus (replayed within the duplicate window); {afresh}");
                    }
                }
                Err(e) => error!(error = format!("{e:#}"), "replay failed"),
            }
            if exit_after {
                stop.cancel();
            }
        })
    });

    let simulate_task = match &options.simulate {
        Some(sample) => {
            let profile = simulate::Profile::from_sf311(sample)?;
            let rate = options.rate.unwrap_or(2.0);
            let seed = options.simulate_seed.unwrap_or_else(|| jiff::Timestamp::now().as_second().unsigned_abs());
            let feed = simulate::FeedOptions { rate, seed, speedup: simulate::SIM_SPEEDUP };
            Some(tokio::spawn(simulate::run(client.clone(), region.clone(), profile, feed, stop.clone())))
        }
        None => None,
    };

    let mut stats_tick = tokio::time::interval(Duration::from_secs(10));
    let mut last_routed = 0;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = stop.cancelled() => break,
            exited = async { match server.as_mut() { Some(s) => s.exited().await, None => std::future::pending().await } } => {
                warn!(status = ?exited, "embedded nats-server exited; restarting it");
                if let Some(s) = server.as_mut() {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    s.restart().await.context("restarting the embedded nats-server")?;
                }
            }
            _ = stats_tick.tick() => {
                let stats = &svc.state.stats;
                let routed = stats.routed.load(Ordering::Relaxed);
                if routed != last_routed {
                    info!(
                        routed,
                        dead_lettered = stats.dead_lettered.load(Ordering::Relaxed),
                        retried = stats.retried.load(Ordering::Relaxed),
                        volunteer_updates = stats.volunteer_updates.load(Ordering::Relaxed),
                        "router progress"
                    );
                    last_routed = routed;
                }
                if !svc.is_running() {
                    anyhow::bail!("a service task stopped unexpectedly; see the log above");
                }
                if api.as_ref().is_some_and(|(_, task)| task.is_finished()) {
                    anyhow::bail!("the HTTP API stopped unexpectedly; see the log above");
                }
            }
        }
    }
    eprintln!("stopping: finishing cases in flight …");
    for task in replay_task.into_iter().chain(simulate_task) {
        task.abort();
    }
    api_stop.cancel();
    if let Some((_, task)) = api {
        match tokio::time::timeout(API_STOP_TIMEOUT, task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => warn!(error = %e, "the HTTP API failed"),
            Ok(Err(e)) => warn!(error = %e, "the HTTP API task failed"),
            Err(_) => warn!("requests to the HTTP API still open after {API_STOP_TIMEOUT:?}; stopping anyway"),
        }
    }
    svc.stop().await;
    if let Some(mut s) = server {
        s.stop(Duration::from_secs(10)).await;
    }
    eprintln!("stopped");
    Ok(())
}

/// Starts the embedded nats-server: its users written, the configured sync policy, the configured
/// port unless another process holds it.
async fn start_embedded(config: &Config, region: &Region, data: &std::path::Path) -> anyhow::Result<NatsServer> {
    let authorization = crate::embedded::write_users(data, region).context("writing the embedded server's users")?;
    let mut server_config = ServerConfig::new(data);
    server_config.port = Some(config.nats.embedded_port).filter(|p| *p != 0);
    server_config.sync = Some(config.nats.sync);
    server_config.authorization = Some(authorization);
    let s = NatsServer::start(server_config).await.context("starting the embedded nats-server")?;
    if let Some(pid) = s.stopped_leftover() {
        warn!(pid, "stopped a nats-server left running from {} by a linkbus that died", data.display());
    }
    if let Some(taken) = s.port_taken() {
        eprintln!(
            "127.0.0.1:{taken} ([nats] embedded_port) is taken by another process, so the embedded nats-server \
             listens on {} instead; `linkbus` commands with this configuration find it. (Debian's nats-server \
             package runs a system server on 4222: `systemctl disable --now nats-server` stops it; or set \
             [nats] embedded_port.)",
            s.url()
        );
    }
    info!(
        url = %s.url(),
        sync = %config.nats.sync,
        log = %s.log_file().display(),
        keys = %data.join("auth/nkeys").display(),
        "embedded nats-server started; clients need a key from its data folder"
    );
    Ok(s)
}

/// How long stopping waits for requests to the API in progress.
const API_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Listens on `[api].listen`, unless it is empty.
async fn bind_api(config: &Config) -> anyhow::Result<Option<tokio::net::TcpListener>> {
    let listen = &config.api.listen;
    if listen.is_empty() {
        return Ok(None);
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (api.listen; \"\" turns the API off)"))?;
    Ok(Some(listener))
}

/// Serves the HTTP API (and the console, if enabled) on `listener` until `stop`; its address and
/// task.
async fn serve_api(
    listener: tokio::net::TcpListener,
    config: &Config,
    region: &Region,
    svc: &Service,
    stop: CancellationToken,
) -> anyhow::Result<(std::net::SocketAddr, JoinHandle<std::io::Result<()>>)> {
    for key in config.api.keys.iter().filter(|k| k.role == ApiRole::Department) {
        if !region.departments.departments.iter().any(|d| d.id == key.id) {
            warn!(department = %key.id, "an API key names a department the region does not have: it will see no case");
        }
    }
    if config.api.keys.is_empty() {
        warn!("no [[api.keys]] configured: the API answers only /healthz, /readyz, /metrics and /api/openapi.json");
    }
    let state = api_state(config, region, svc)?;
    let state = if config.console.enabled {
        let store = crate::service::console_bucket(&svc.js, config).await?;
        let console = Console::start(
            svc.metrics.registry(),
            &store,
            svc.cases.clone(),
            svc.state.clone(),
            region,
            &config.console,
            stop.clone(),
        )
        .await?;
        state.with_console(Arc::new(console))
    } else {
        state
    };
    let (statuses, keys) = crate::service::volunteer_buckets(&svc.js, config).await?;
    let volunteers =
        VolunteerApp::new(svc.metrics.registry(), svc.cases.clone(), svc.state.clone(), statuses, keys, stop.clone())?;
    let state = state.with_volunteers(Arc::new(volunteers));
    let addr = listener.local_addr().context("reading the API's address")?;
    info!(%addr, keys = config.api.keys.len(), "HTTP API listening");
    let server = linkbus_http::Server::new(Limits::of(&config.api), svc.metrics.registry())
        .context("registering the HTTP server's metrics")?;
    Ok((addr, tokio::spawn(server.serve(listener, linkbus_http::app(state), stop.cancelled_owned()))))
}

/// The HTTP API of `svc` as `linkbus up` serves it, without the console: the closed loop's
/// endpoints and the source-system adapters' routes.
pub fn api_app(config: &Config, region: &Region, svc: &Service) -> anyhow::Result<axum::Router> {
    Ok(linkbus_http::app(api_state(config, region, svc)?))
}

fn api_state(config: &Config, region: &Region, svc: &Service) -> anyhow::Result<ApiState> {
    let state = ApiState::new(svc.cases.clone(), &config.api)?
        .with_deliveries(Arc::new(svc.js.clone()))
        .with_reports(svc.reports.clone())
        .with_metrics(svc.metrics.registry().clone())
        .with_readiness(svc.readiness())
        .with_region_names(Arc::new(RegionNames::new(region)))
        .with_track(svc.track.clone());
    let adapters = crate::adapters::routes(&config.adapters, region, &svc.adapters, Arc::new(state.clone()));
    Ok(state.with_adapters(adapters))
}

/// Resolves on ctrl-c (SIGINT) or SIGTERM. The handlers are installed when this is called, not
/// when the future is first polled, so a signal that arrives in between (during start-up, or
/// while the main loop is busy) is kept, not lost, and no longer kills the process unhandled.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let interrupt = signal(SignalKind::interrupt());
        async move {
            match (term, interrupt) {
                (Ok(mut term), Ok(mut interrupt)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = interrupt.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
