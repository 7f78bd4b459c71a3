//! The production layout of `ops/deploy/` on loopback: three nats-server processes run from the
//! shipped `nats-server.conf` (each node's settings from its environment, as systemd gives them),
//! JetStream replicated three ways, and two `linkbus up` processes from the shipped `linkbus.toml`
//! sharing the work, locked down with the users of `linkbus nats-auth` as docs/operations.md says.
//! Every case is routed exactly once; then the node leading the routed stream is SIGKILLed, cases
//! keep coming, the node comes back, and still every case is routed once.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use async_nats::jetstream;
use futures::{StreamExt, TryStreamExt};
use linkbus::config::Config;
use linkbus::nats_auth::{self, AuthOptions};
use linkbus_adapters::sf311;
use linkbus_bus::nats::{STREAM_CASES, STREAM_INGEST_PUBLIC_SERVICE, STREAM_ROUTED, StreamSettings};
use linkbus_tests::nats_process::{NatsProcess, free_ports};
use linkbus_tests::{Running, WAIT, repo_root, sf_region, sf_region_dir};
use linkbus_wire::{CaseReport, CloudEvent};

/// Cases published in each phase: cluster whole, one node down, node back.
const PER_PHASE: usize = 100;

fn deploy(file: &str) -> std::path::PathBuf {
    repo_root().join("ops/deploy").join(file)
}

/// The shipped node configuration, locked down as docs/operations.md says: the users of
/// `linkbus nats-auth` next to it and its `include` uncommented.
fn locked_down_node_config(dir: &Path) -> std::path::PathBuf {
    // Volunteers' users are tested in permissions.rs; 2,000 seed files would only slow this one.
    let options = AuthOptions { out: dir.join("auth"), operators: vec!["noc".into()], volunteers: false };
    let report = nats_auth::generate(&sf_region(), &options).expect("users generated");
    std::fs::copy(&report.conf, dir.join("authorization.conf")).expect("copy authorization.conf");
    let shipped = std::fs::read_to_string(deploy("nats-server.conf")).expect("ops/deploy/nats-server.conf");
    let include = "# include \"authorization.conf\"";
    assert!(shipped.contains(include), "the shipped configuration has the include to uncomment");
    let path = dir.join("nats-server.conf");
    std::fs::write(&path, shipped.replace(include, include.trim_start_matches("# "))).expect("write");
    path
}

/// Three nodes from the node configuration `conf`, on free loopback ports.
async fn start_cluster(dir: &Path, conf: &Path) -> Vec<NatsProcess> {
    let ports = free_ports(9);
    let (clients, routes, monitors) = (&ports[0..3], &ports[3..6], &ports[6..9]);
    let route = |n: usize| format!("nats-route://127.0.0.1:{}", routes[n]);
    let mut nodes = Vec::new();
    for n in 0..3 {
        let name = format!("nats-{}", n + 1);
        let env = [
            ("NATS_NODE", name.clone()),
            ("NATS_CLIENT_LISTEN", format!("127.0.0.1:{}", clients[n])),
            ("NATS_MONITOR_LISTEN", format!("127.0.0.1:{}", monitors[n])),
            ("NATS_CLUSTER_LISTEN", format!("127.0.0.1:{}", routes[n])),
            ("NATS_STORE_DIR", dir.join(&name).display().to_string()),
            ("NATS_ROUTE_1", route(0)),
            ("NATS_ROUTE_2", route(1)),
            ("NATS_ROUTE_3", route(2)),
        ];
        let log = dir.join(format!("{name}.log"));
        nodes.push(NatsProcess::start(conf, clients[n], &env, &log).await);
    }
    nodes
}

/// The shipped router configuration with its `[nats.auth]` uncommented (the seed from
/// `locked_down_node_config`) and the API on a free port (two replicas share a host here).
fn router_config(dir: &Path) -> std::path::PathBuf {
    let shipped = std::fs::read_to_string(deploy("linkbus.toml")).expect("ops/deploy/linkbus.toml");
    let config = Config::parse(&shipped).expect("the shipped configuration is valid");
    assert_eq!(config.nats.replicas, 3, "three replicas of every stream");
    assert_eq!(config.nats.url.as_deref().map(|u| u.split(',').count()), Some(3), "every node in the URL");
    let api = "listen = \"0.0.0.0:8080\"";
    let auth =
        "# [nats.auth]\n# nkey_seed_file = \"/etc/linkbus/nats/linkbus.nk\"\n# inbox_prefix = \"_INBOX.linkbus\"\n";
    assert!(shipped.contains(api) && shipped.contains(auth), "the shipped configuration changed");
    let seed = dir.join("auth/nkeys/linkbus.nk");
    let unlocked =
        format!("[nats.auth]\nnkey_seed_file = {:?}\ninbox_prefix = \"_INBOX.linkbus\"\n", seed.display().to_string());
    let path = dir.join("linkbus.toml");
    let config = shipped.replace(api, "listen = \"127.0.0.1:0\"").replace(auth, &unlocked);
    std::fs::write(&path, format!("{config}\n{}", linkbus_tests::storage_toml())).expect("write");
    path
}

fn start_router(config: &Path, urls: &str, log: &Path) -> Running {
    let log = std::fs::File::create(log).expect("log file");
    Running(
        std::process::Command::new(env!("CARGO_BIN_EXE_linkbus-under-test"))
            .args(["up", "--config"])
            .arg(config)
            .arg("--region")
            .arg(sf_region_dir())
            .env("LINKBUS_NATS_URL", urls)
            .env("LINKBUS_LOG", "info,async_nats=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("linkbus up starts"),
    )
}

/// Waits until a process's log has a line containing `what`.
async fn wait_logged(log: &Path, what: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    while !std::fs::read_to_string(log).is_ok_and(|text| text.contains(what)) {
        if tokio::time::Instant::now() >= deadline {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!("{} never said {what:?}; its last lines:\n{}", log.display(), tail.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Publishes until JetStream stores it: a publish meeting a leader election is retried under the
/// same `Nats-Msg-Id`, so a retry of one that was in fact stored is dropped as a duplicate.
async fn publish_stored(js: &jetstream::Context, event: &CloudEvent<CaseReport>) {
    let subject = linkbus_wire::subjects::ingest(event.data.system, &event.data.category);
    let body: bytes::Bytes = serde_json::to_vec(event).expect("json").into();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let sent = linkbus_bus::nats::publish(js, subject.clone(), &event.id, body.clone()).await;
        let acked = match sent {
            Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match acked {
            Ok(()) => return,
            Err(e) => {
                assert!(tokio::time::Instant::now() < deadline, "case {} never stored: {e}", event.id);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Publishes a phase's cases all at once, so that they queue up and the routers share them.
async fn publish_burst(js: &jetstream::Context, cases: &[CloudEvent<CaseReport>]) {
    futures::future::join_all(cases.iter().map(|case| publish_stored(js, case))).await;
}

/// Routed decisions by case: every message of the routed stream is one output of one decision;
/// a case decided twice would show two decision times (or two routers), a copy stored twice the
/// same `Nats-Msg-Id` twice.
struct Decisions {
    /// Case id → distinct (router, decision time) pairs seen on its outputs.
    by_case: HashMap<String, HashSet<(String, String)>>,
    /// `Nats-Msg-Id`s seen more than once.
    repeated_ids: Vec<String>,
    /// The routers that decided.
    routers: HashSet<String>,
}

/// The decisions on the routed stream once every case of `published` has one there (bounded:
/// a router writes a case's timeline event first and its copies to departments right after).
async fn decisions(js: &jetstream::Context, published: &[String]) -> Decisions {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let d = read_decisions(js).await;
        if published.iter().all(|id| d.by_case.contains_key(id)) || tokio::time::Instant::now() > deadline {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn read_decisions(js: &jetstream::Context) -> Decisions {
    let messages = read_all(js, STREAM_ROUTED, "routed.dept.>").await;
    let mut ids = HashMap::<String, usize>::new();
    let mut by_case = HashMap::<String, HashSet<(String, String)>>::new();
    let mut routers = HashSet::new();
    for msg in &messages {
        let id = linkbus_tests::header(msg, "Nats-Msg-Id").expect("every output has an id");
        *ids.entry(id).or_default() += 1;
        let event: serde_json::Value = serde_json::from_slice(&msg.payload).expect("a routed case");
        let router = event["source"].as_str().expect("source").to_owned();
        let time = event["time"].as_str().expect("time").to_owned();
        let case = event["data"]["case_id"].as_str().expect("case id").to_owned();
        routers.insert(router.clone());
        by_case.entry(case).or_default().insert((router, time));
    }
    let repeated_ids = ids.into_iter().filter(|(_, n)| *n > 1).map(|(id, _)| id).collect();
    Decisions { by_case, repeated_ids, routers }
}

/// Every message of `stream` on `filter`, through an ephemeral consumer; tried again (bounded)
/// while the cluster is still electing leaders after a node came back.
async fn read_all(js: &jetstream::Context, stream: &str, filter: &str) -> Vec<jetstream::Message> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match try_read_all(js, stream, filter).await {
            Ok(messages) => return messages,
            Err(e) => {
                assert!(tokio::time::Instant::now() < deadline, "cannot read {stream}: {e}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

async fn try_read_all(
    js: &jetstream::Context,
    stream: &str,
    filter: &str,
) -> Result<Vec<jetstream::Message>, async_nats::Error> {
    let consumer: jetstream::consumer::PullConsumer = js
        .get_stream(stream)
        .await?
        .create_consumer(jetstream::consumer::pull::Config {
            filter_subject: filter.to_owned(),
            ack_policy: jetstream::consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        })
        .await?;
    let pending = consumer.cached_info().num_pending as usize;
    let mut out = Vec::with_capacity(pending);
    let mut messages = consumer.stream().max_messages_per_batch(1000).messages().await?;
    while out.len() < pending {
        let next = tokio::time::timeout(WAIT, messages.next()).await.map_err(|_| "reading stalled")?;
        out.push(next.ok_or("the consumer ended")??);
    }
    Ok(out)
}

/// Waits until both routers have a pull request waiting on their shared consumer, so that
/// neither finds the first cases all to itself. (A router whose first request reached the
/// consumer before its leader was elected asks again after a missed heartbeat.)
async fn wait_both_pulling(js: &jetstream::Context, durable: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let waiting = match js
            .get_consumer_from_stream::<jetstream::consumer::pull::Config, _, _>(durable, STREAM_INGEST_PUBLIC_SERVICE)
            .await
        {
            Ok(mut consumer) => consumer.info().await.map(|i| i.num_waiting).unwrap_or(0),
            Err(_) => 0,
        };
        if waiting >= 2 {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "the routers never both pulled ({waiting} waiting)");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until `n` cases have their decision on the case timeline (one subject per case; stream
/// info, which makes no consumer, so the waiting adds no load to the cluster's meta layer).
async fn wait_routed(js: &jetstream::Context, n: usize, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    let mut have = 0;
    while tokio::time::Instant::now() < deadline {
        have = routed_cases(js).await.unwrap_or(have);
        if have >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("only {have} of {n} cases routed within {within:?}");
}

async fn routed_cases(js: &jetstream::Context) -> Option<usize> {
    let stream = js.get_stream(STREAM_CASES).await.ok()?;
    let subjects = stream.info_with_subjects("case.*.routed").await.ok()?;
    subjects.try_collect::<Vec<_>>().await.ok().map(|s| s.len())
}

fn assert_each_once(d: &Decisions, published: &[String]) {
    assert_eq!(d.repeated_ids, Vec::<String>::new(), "outputs stored twice");
    let twice: Vec<_> = d.by_case.iter().filter(|(_, decisions)| decisions.len() != 1).collect();
    assert!(twice.is_empty(), "cases decided more than once: {twice:?}");
    let missing: Vec<_> = published.iter().filter(|id| !d.by_case.contains_key(*id)).collect();
    assert!(missing.is_empty(), "cases never routed to a department: {missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_with_two_routers_routes_each_case_once_through_a_node_crash() {
    let started = std::time::Instant::now();
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let mut nodes = start_cluster(dir, &locked_down_node_config(dir)).await;
    let urls = nodes.iter().map(NatsProcess::url).collect::<Vec<_>>().join(",");
    let config = router_config(dir);
    let nats = Config::load(Some(&config)).expect("config").nats;
    assert!(linkbus::service::connect(&urls, WAIT).await.is_err(), "locked: no way in without a key");
    // The test reads and publishes as the service's user.
    let client = linkbus::service::connect_configured(&urls, &nats, WAIT, None).await.expect("client connects");
    let js = jetstream::new(client.clone());
    // JetStream answers once the nodes have elected a meta leader; provisioning (which every
    // `linkbus up` does too, idempotently) is the real condition.
    let settings = StreamSettings { replicas: 3, ..linkbus_tests::test_stream_settings() };
    let deadline = tokio::time::Instant::now() + WAIT;
    while let Err(e) = linkbus_bus::nats::provision(&js, &settings).await {
        assert!(tokio::time::Instant::now() < deadline, "the cluster never served JetStream: {e}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut routed = js.get_stream(STREAM_ROUTED).await.expect("routed stream");
    let info = routed.info().await.expect("stream info");
    assert_eq!(info.config.num_replicas, 3);

    let first = start_router(&config, &urls, &dir.join("router-1.log"));
    let second = start_router(&config, &urls, &dir.join("router-2.log"));
    let pids = [first.id(), second.id()];
    // Both consuming before the first case, so that neither finds a backlog all to itself. Each
    // first makes a durable consumer per department, three replicas each: slow on a busy machine
    // (with the rest of the suite running, the cluster's meta requests time out and are retried).
    for n in 1..=2 {
        wait_logged(&dir.join(format!("router-{n}.log")), "router consuming", Duration::from_secs(180)).await;
    }
    let durable = Config::parse(&std::fs::read_to_string(&config).expect("config")).expect("config").router.durable;
    // A pull request lost while the consumer's leader is elected is noticed when async-nats gives
    // up on it (~6 s) and sent again, perhaps more than once on a busy machine.
    wait_both_pulling(&js, &durable, Duration::from_secs(90)).await;
    let routers_up = started.elapsed();

    let csv = std::fs::File::open(sf_region_dir().join("sf311-cases-sample.csv")).expect("csv");
    let cases: Vec<_> = sf311::read(csv).take(3 * PER_PHASE).map(|c| c.expect("row").event).collect();
    let ids: Vec<String> = cases.iter().map(|c| c.id.clone()).collect();
    let mut phases = cases.chunks(PER_PHASE);

    // The whole cluster: both routers take cases.
    publish_burst(&js, phases.next().expect("phase 1")).await;
    wait_routed(&js, PER_PHASE, WAIT).await;
    let d = decisions(&js, &ids[..PER_PHASE]).await;
    assert_each_once(&d, &ids[..PER_PHASE]);
    let expected: HashSet<String> = pids.iter().map(|pid| format!("/linkbus/router/{pid}")).collect();
    assert!(d.routers.is_subset(&expected), "decided by {:?}", d.routers);

    // The node leading the routed stream crashes; cases keep coming.
    let leader = routed.info().await.expect("stream info").cluster.as_ref().and_then(|c| c.leader.clone());
    let leader = leader.expect("the routed stream has a leader");
    let victim = leader.strip_prefix("nats-").and_then(|n| n.parse::<usize>().ok()).expect("a node nats-<n>") - 1;
    nodes[victim].kill();
    publish_burst(&js, phases.next().expect("phase 2")).await;
    wait_routed(&js, 2 * PER_PHASE, WAIT).await;

    // It comes back and catches up; more cases.
    nodes[victim].restart().await;
    publish_burst(&js, phases.next().expect("phase 3")).await;
    wait_routed(&js, 3 * PER_PHASE, WAIT).await;
    let d = decisions(&js, &ids).await;
    assert_each_once(&d, &ids);
    assert_eq!(d.routers, expected, "both routers took cases");
    println!(
        "{} cases through a crash of {leader}: each decided once, by {} routers \
         (cluster and both routers up after {routers_up:.1?}, all done after {:.1?})",
        d.by_case.len(),
        d.routers.len(),
        started.elapsed()
    );
    // SIGTERM to both routers, then to every node, each group at once (drop waits for each
    // process, and kills it if it hangs).
    let sigterm = |pid: u32| {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM);
    };
    [first.id(), second.id()].into_iter().for_each(sigterm);
    drop((first, second));
    let stopping = started.elapsed();
    client.drain().await.expect("the test's connection drains");
    nodes.iter().for_each(|n| sigterm(n.child.id()));
    drop(nodes);
    println!("routers stopped after {:.1?}, nodes after {:.1?}", stopping, started.elapsed());
}
