//! Start-up through a real nats-server: the volunteers bucket filled with a city's volunteers,
//! then a fresh process timed from connecting to having them all loaded, as the service takes
//! them ([`linkbus_routers::volunteers::follow_volunteers`]), with its resident memory then:
//! first with no snapshot (the bucket's stream read, each entry parsed and checked, the index
//! bulk-loaded), which saves one ([`linkbus_routers::volunteer_snapshot::save`]); then from that
//! snapshot with the bucket unchanged since, and with a tenth of the volunteers moved since.

use std::collections::VecDeque;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use linkbus_bus::nats::{self, BUCKET_VOLUNTEERS, StreamSettings};
use linkbus_bus::server::{NatsServer, ServerConfig};
use linkbus_matching::{Router, RoutingParams};
use linkbus_routers::service::RouterState;
use linkbus_routers::{volunteer_snapshot, volunteers};
use linkbus_wire::VolunteerStatus;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::decisions::status_mb;
use crate::synthetic;

/// Publishes awaiting acks while filling the bucket.
const FILL_WINDOW: usize = 4096;

/// Start-up through a real nats-server.
#[derive(Debug, Clone, Serialize)]
pub struct BucketReport {
    /// Communities.
    pub communities: usize,
    /// Volunteers in the bucket.
    pub volunteers: usize,
    /// Seconds to fill the bucket (not part of start-up; about 0 when an already filled one was
    /// kept).
    pub fill_seconds: f64,
    /// The fresh process's start-up with no snapshot: the whole bucket read.
    pub follower: FollowerReport,
    /// A fresh process's start-up from the snapshot the first saved, the bucket unchanged.
    pub from_snapshot: FollowerReport,
    /// Volunteers moved after the snapshot was saved, before [`BucketReport::from_snapshot_changed`].
    pub changed: usize,
    /// A fresh process's start-up from the same snapshot once `changed` volunteers moved.
    pub from_snapshot_changed: FollowerReport,
    /// Seconds for the same kind of consumer to read every entry of the bucket and do nothing
    /// with them: what nats-server and the client take to deliver them.
    pub read_seconds: f64,
}

/// What the fresh process measured ([`follow`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FollowerReport {
    /// Seconds from connecting to the volunteers loaded (the region already in memory, as the
    /// service has it after reading its files).
    pub seconds: f64,
    /// Of which connecting.
    pub connect_seconds: f64,
    /// Of which building the router.
    pub router_seconds: f64,
    /// Of which following the bucket until its volunteers were loaded.
    pub volunteers_seconds: f64,
    /// Volunteers in the index then.
    pub loaded: usize,
    /// Entries read from the bucket (the rest came from the snapshot).
    pub entries_read: u64,
    /// Seconds to save a snapshot of the index afterwards, when asked to.
    pub save_seconds: Option<f64>,
    /// Its size, bytes.
    pub snapshot_bytes: Option<usize>,
    /// Resident memory before anything was made, MB.
    pub rss_before_mb: f64,
    /// Resident memory with the volunteers loaded (the synthetic region dropped), MB.
    pub rss_mb: f64,
    /// Peak resident memory, MB.
    pub peak_rss_mb: f64,
}

/// Fills the volunteers bucket of a nats-server (one of its own in a temporary folder, unless
/// `url` names one; with `keep`, a bucket of that server already holding `volunteers` entries is
/// kept as it is) with `volunteers` synthetic volunteers, then times a fresh process
/// (`linkbus-bench bucket-follow`) taking them.
pub async fn run(
    communities: usize,
    volunteers: usize,
    url: Option<String>,
    keep: bool,
) -> anyhow::Result<BucketReport> {
    let dir = tempfile::tempdir()?;
    let mut server = None;
    let url = match url {
        Some(url) => url,
        None => {
            let s =
                NatsServer::start(ServerConfig::new(dir.path().join("nats"))).await.context("starting nats-server")?;
            let url = s.url();
            server = Some(s);
            url
        }
    };
    let client = async_nats::connect(&url).await.context("connecting")?;
    let js = jetstream::new(client.clone());
    nats::provision(&js, &StreamSettings::default()).await?;
    let stream = js.get_stream(format!("KV_{BUCKET_VOLUNTEERS}")).await?;
    let started = Instant::now();
    if keep && stream.get_info().await?.state.messages == volunteers as u64 {
        eprintln!("the bucket holds {volunteers} volunteers already: kept");
    } else {
        stream.purge().await?;
        put_all(&js, synthetic::volunteer_stream(volunteers)).await?;
    }
    let fill_seconds = started.elapsed().as_secs_f64();
    eprintln!("bucket filled in {fill_seconds:.1} s");
    let objects = js.get_object_store(nats::OBJECTS_SNAPSHOTS).await?;
    if objects.info(volunteer_snapshot::SNAPSHOT_OBJECT).await.is_ok() {
        objects.delete(volunteer_snapshot::SNAPSHOT_OBJECT).await?;
    }

    let follower = follow_in_a_fresh_process(&url, communities, volunteers, true)?;
    anyhow::ensure!(
        follower.entries_read == volunteers as u64,
        "the first start read {} entries",
        follower.entries_read
    );
    let from_snapshot = follow_in_a_fresh_process(&url, communities, volunteers, false)?;
    anyhow::ensure!(
        from_snapshot.entries_read == 0,
        "the snapshot was not used: {} entries read",
        from_snapshot.entries_read
    );
    let moved = synthetic::volunteer_stream(volunteers).step_by(10).map(|mut v| {
        v.location.lat += 0.001;
        v
    });
    let changed = put_all(&js, moved).await?;
    let from_snapshot_changed = follow_in_a_fresh_process(&url, communities, volunteers, false)?;
    anyhow::ensure!(
        from_snapshot_changed.entries_read == changed as u64,
        "{} entries read from the bucket, {changed} changed",
        from_snapshot_changed.entries_read
    );

    let started = Instant::now();
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?.take(volunteers);
    while let Some(message) = messages.next().await {
        message?;
    }
    let read_seconds = started.elapsed().as_secs_f64();

    client.drain().await.ok();
    if let Some(mut s) = server {
        s.stop(Duration::from_secs(5)).await;
    }
    Ok(BucketReport {
        communities,
        volunteers,
        fill_seconds,
        follower,
        from_snapshot,
        changed,
        from_snapshot_changed,
        read_seconds,
    })
}

/// Puts each volunteer's status in the bucket, [`FILL_WINDOW`] publishes awaiting their acks at
/// most; how many.
async fn put_all(js: &jetstream::Context, statuses: impl Iterator<Item = VolunteerStatus>) -> anyhow::Result<usize> {
    let mut acks = VecDeque::with_capacity(FILL_WINDOW);
    let mut put = 0;
    for v in statuses {
        if acks.len() == FILL_WINDOW {
            let ack: jetstream::context::PublishAckFuture = acks.pop_front().expect("a full window");
            ack.await?;
        }
        acks.push_back(js.publish(format!("$KV.{BUCKET_VOLUNTEERS}.{}", v.id), serde_json::to_vec(&v)?.into()).await?);
        put += 1;
    }
    for ack in acks {
        ack.await?;
    }
    Ok(put)
}

/// Runs `linkbus-bench bucket-follow` (a fresh process) and reads its report.
fn follow_in_a_fresh_process(
    url: &str,
    communities: usize,
    volunteers: usize,
    save: bool,
) -> anyhow::Result<FollowerReport> {
    let exe = std::env::current_exe()?;
    let mut command = Command::new(exe);
    command.args(["bucket-follow", "--url", url]).args([
        "--communities",
        &communities.to_string(),
        "--volunteers",
        &volunteers.to_string(),
    ]);
    if save {
        command.arg("--save-snapshot");
    }
    let out = command.output().context("running linkbus-bench bucket-follow")?;
    if !out.status.success() {
        anyhow::bail!("bucket-follow failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    eprintln!("follower: {}", String::from_utf8_lossy(&out.stdout).trim());
    serde_json::from_slice(&out.stdout).context("reading bucket-follow's report")
}

/// In a fresh process: connects to `url`, builds the router for `communities` synthetic
/// communities and follows the volunteers bucket as the service does until its volunteers are
/// loaded (from the snapshot, if there is one); `expected` is how many there should be. With
/// `save`, then saves a snapshot of the index.
pub async fn follow(url: &str, communities: usize, expected: usize, save: bool) -> anyhow::Result<FollowerReport> {
    let rss_before_mb = status_mb("VmRSS")?;
    let region = synthetic::region(synthetic::grid(communities, synthetic::VERTICES));

    let started = Instant::now();
    let client = async_nats::connect(url).await.context("connecting")?;
    let js = jetstream::new(client.clone());
    let connect_seconds = started.elapsed().as_secs_f64();
    let router = Router::new(&region, RoutingParams::default());
    let router_seconds = started.elapsed().as_secs_f64() - connect_seconds;
    let state = RouterState::new(router);
    let (ready, shutdown) = (CancellationToken::new(), CancellationToken::new());
    let follower =
        tokio::spawn(volunteers::follow_volunteers(js.clone(), state.clone(), ready.clone(), shutdown.clone()));
    tokio::select! {
        _ = ready.cancelled() => {}
        ended = follower => anyhow::bail!("the volunteer follower stopped: {:?}", ended?),
    }
    let seconds = started.elapsed().as_secs_f64();
    let loaded = linkbus_bus::sync::read(&state.volunteers).len();
    anyhow::ensure!(loaded == expected, "{loaded} volunteers loaded, {expected} expected");
    drop(region);
    let rss_mb = status_mb("VmRSS")?;
    let entries_read = state.stats.volunteer_updates.load(std::sync::atomic::Ordering::Relaxed);
    let (save_seconds, snapshot_bytes) = if save {
        let started = Instant::now();
        let saved = volunteer_snapshot::save(&js, &state).await?.context("nothing to save")?;
        (Some(started.elapsed().as_secs_f64()), Some(saved.bytes))
    } else {
        (None, None)
    };
    shutdown.cancel();
    client.drain().await.ok();
    Ok(FollowerReport {
        seconds,
        connect_seconds,
        router_seconds,
        volunteers_seconds: seconds - connect_seconds - router_seconds,
        loaded,
        entries_read,
        save_seconds,
        snapshot_bytes,
        rss_before_mb,
        rss_mb,
        peak_rss_mb: status_mb("VmHWM")?,
    })
}
