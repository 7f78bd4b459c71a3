//! Faults under steady load, each against real nats-servers and real `linkbus` processes: the
//! nats-server SIGKILLed and restarted; a router SIGKILLed mid-batch and restarted; two routers
//! sharing the work, one SIGKILLed; linkbus cut off from NATS (a TCP proxy between them closes
//! every connection and refuses new ones for `LINKBUS_FAULT_CUT_SECS`, 30 by default); linkbus
//! black-holed (the proxy lets no byte through, sockets open, for `LINKBUS_FAULT_HOLE_SECS`, 20
//! by default); a webhook receiver and a department's consumer that stall; a SIGTERM mid-load
//! (with an hour's ack wait, so only the hand-back can bring back what was not started); an
//! unpaced flood. After each, [`audit`] checks that every case sent was routed exactly once, each
//! department got its copy once, and every case accepted was accepted once (one timeline entry,
//! one event). Each test prints its outcome line, which docs/RELIABILITY.md records.

use std::collections::HashSet;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use futures::StreamExt;
use linkbus_bus::nats::{STREAM_CASES, STREAM_INGEST_PUBLIC_SERVICE, STREAM_ROUTED};
use linkbus_cases::webhooks::WebhookConfig;
use linkbus_tests::load::{self, Acceptor, Load, Outcome, audit};
use linkbus_tests::proxy::Proxy;
use linkbus_tests::{Running, TestBus, WAIT, header, read_stream, sf_region_dir, write_config};
use tokio::sync::watch;

/// Cases per second of the steady load.
const RATE: f64 = 40.0;
/// How long the audit may wait for the system to settle after a fault.
const SETTLE: Duration = Duration::from_secs(120);
/// How long the flood (10,000 cases at once, debug build) may take to be routed and its records
/// opened: a bound on liveness, not a speed target (38–65 s alone on this 2-core machine, ~120 s
/// with the other faults and other builds running).
const FLOOD_SETTLE: Duration = Duration::from_secs(360);

/// The `linkbus` command line as a separate process.
fn linkbus_command() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_linkbus-under-test"))
}

/// A `linkbus up` on `nats_url` (its API on `api`, or none), logging into `<dir>/<name>/linkbus.log`,
/// with a 2 s ack wait and `router` more lines of `[router]`.
fn linkbus_up(dir: &Path, name: &str, nats_url: &str, api: Option<SocketAddr>, router: &str) -> Running {
    linkbus_up_with(dir, name, nats_url, api, "", &format!("ack_wait_secs = 2\n{router}"))
}

/// [`linkbus_up`] with the lines `nats` of `[nats]` and `router` of `[router]` (no ack wait set).
fn linkbus_up_with(
    dir: &Path,
    name: &str,
    nats_url: &str,
    api: Option<SocketAddr>,
    nats: &str,
    router: &str,
) -> Running {
    let config = format!(
        "[nats]\nurl = \"{nats_url}\"\n{nats}\n[region]\ndir = \"{}\"\n[router]\n{router}\n\
         [lifecycle]\nmerge_distance_m = 0.0\n[api]\nlisten = \"{}\"\n",
        sf_region_dir().display(),
        api.map(|a| a.to_string()).unwrap_or_default()
    );
    let dir = dir.join(name);
    std::fs::create_dir_all(&dir).expect("process dir");
    let config = write_config(&dir, &config);
    let log = std::fs::File::create(dir.join("linkbus.log")).expect("log file");
    Running(
        linkbus_command()
            .args(["up", "--config"])
            .arg(&config)
            .env_remove("LINKBUS_NATS_URL")
            .stderr(Stdio::from(log))
            .spawn()
            .expect("linkbus up starts"),
    )
}

/// The in-process configuration of the fault tests: no merging, so each case stays its own.
fn fault_config(bus: &TestBus) -> linkbus::config::Config {
    let mut config = bus.config();
    config.lifecycle.merge_distance_m = 0.0;
    config
}

/// A backlog of `n` cases published before any router runs (a batch for the router to be killed
/// in the middle of); their ids. They are numbered from 20,000, so none is at the point of a
/// case of the steady load (which would merge them).
async fn backlog(bus: &TestBus, prefix: &str, n: usize) -> Vec<String> {
    linkbus_bus::nats::provision(&bus.js, &linkbus_tests::test_stream_settings()).await.expect("provision");
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let event = load::load_case(prefix, 20_000 + i);
        linkbus_tests::publish_case(&bus.js, &event).await;
        ids.push(event.id);
    }
    ids
}

/// Decisions stored so far.
async fn decisions(bus: &TestBus) -> usize {
    read_stream(&bus.js, STREAM_CASES, "case.*.routed", 0).await.len()
}

/// Waits until at least `n` decisions are stored.
async fn wait_decisions(bus: &TestBus, n: usize, within: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let have = decisions(bus).await;
        assert!(have >= n || tokio::time::Instant::now() < deadline, "only {have} of {n} cases routed in time");
        if have >= n {
            return have;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn sigterm(child: &Running) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
}

/// Stops the load and the acceptor, audits, prints and checks the outcome.
async fn finish(bus: &TestBus, fault: &str, load: Load, acceptor: Acceptor, earlier: Vec<String>) -> Outcome {
    let mut sent = earlier;
    sent.extend(load.stop().await);
    let accepted = acceptor.finish().await;
    let outcome = audit(&bus.js, &sent, &accepted, SETTLE).await;
    println!("{fault}: {outcome}");
    assert!(outcome.clean(), "{fault}: {outcome}");
    assert!(outcome.accepted > 0, "{fault}: no case was accepted; the test proved nothing about transitions");
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_server_sigkilled_and_restarted_under_load() {
    let mut bus = TestBus::start().await;
    let service = bus.service(&fault_config(&bus)).await;
    let acceptor = Acceptor::start(bus.client.clone(), bus.js.clone());
    let load = Load::start(bus.js.clone(), "kill9", RATE, Some(acceptor.sender()));
    load.wait_stored(100, WAIT).await;
    let before = wait_decisions(&bus, 50, WAIT).await;

    bus.server.kill().await; // SIGKILL: no flush, no goodbye
    // Down for a moment, while the load keeps trying.
    tokio::time::sleep(Duration::from_secs(2)).await;
    bus.server.restart().await.expect("nats-server restarts on its data");
    let at_restart = load.stored();
    load.wait_stored(at_restart + 100, SETTLE).await;

    let outcome = finish(&bus, "nats-server SIGKILL + restart", load, acceptor, vec![]).await;
    assert!(outcome.sent > before, "the load did not go on after the restart");
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_sigkilled_mid_batch_and_restarted_loses_nothing() {
    let bus = TestBus::start().await;
    let earlier = backlog(&bus, "batch", 1000).await;
    let mut router = linkbus_up(bus.dir.path(), "router-1", &bus.server.url(), None, "");
    let acceptor = Acceptor::start(bus.client.clone(), bus.js.clone());
    let load = Load::start(bus.js.clone(), "midbatch", RATE, Some(acceptor.sender()));
    let at_kill = wait_decisions(&bus, 200, Duration::from_secs(60)).await;
    router.kill().expect("SIGKILL");
    router.wait().expect("reaped");
    assert!(at_kill < earlier.len(), "the router finished the batch before it was killed; the test proved nothing");

    let restarted = linkbus_up(bus.dir.path(), "router-2", &bus.server.url(), None, "");
    let at_restart = load.stored();
    load.wait_stored(at_restart + 100, SETTLE).await;
    finish(&bus, &format!("router SIGKILL after {at_kill} of a 1000-case batch, restarted"), load, acceptor, earlier)
        .await;
    drop(restarted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_routers_share_the_work_and_one_is_sigkilled() {
    let bus = TestBus::start().await;
    let (api_a, api_b) = (free_addr(), free_addr());
    let mut first = linkbus_up(bus.dir.path(), "router-a", &bus.server.url(), Some(api_a), "");
    let second = linkbus_up(bus.dir.path(), "router-b", &bus.server.url(), Some(api_b), "");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("http client");
    for api in [api_a, api_b] {
        wait_http(&http, api, "/readyz", "ready", |s, _| s == 200).await;
    }
    let acceptor = Acceptor::start(bus.client.clone(), bus.js.clone());
    let load = Load::start(bus.js.clone(), "pair", RATE, Some(acceptor.sender()));
    // Killed only once both have routed cases: the one killed was doing its share.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let at_kill = loop {
        let by_router = decisions_by_router(&bus).await;
        if by_router.len() == 2 && by_router.values().sum::<usize>() >= 100 {
            break by_router;
        }
        assert!(tokio::time::Instant::now() < deadline, "the two routers did not both route: {by_router:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    first.kill().expect("SIGKILL");
    first.wait().expect("reaped");

    let at = load.stored();
    load.wait_stored(at + 100, SETTLE).await;
    let fault = format!("two routers sharing the work ({at_kill:?} decisions each), one SIGKILLed");
    finish(&bus, &fault, load, acceptor, vec![]).await;
    // The survivor took over: it routed the cases that came after.
    let after = decisions_by_router(&bus).await;
    let survivor = format!("/linkbus/router/{}", second.id());
    assert!(after[&survivor] >= at_kill[&survivor] + 100, "the surviving router did not take over: {after:?}");
    drop(second);
}

/// Decisions stored so far, by the router process that made them (the event `source`).
async fn decisions_by_router(bus: &TestBus) -> std::collections::BTreeMap<String, usize> {
    let mut by_router = std::collections::BTreeMap::new();
    for msg in read_stream(&bus.js, STREAM_CASES, "case.*.routed", 0).await {
        if let Some(source) = serde_json::from_slice::<serde_json::Value>(&msg.payload)
            .ok()
            .and_then(|v| v["source"].as_str().map(str::to_owned))
        {
            *by_router.entry(source).or_default() += 1;
        }
    }
    by_router
}

/// Seconds linkbus is cut off from NATS: `LINKBUS_FAULT_CUT_SECS`, 30 by default.
fn cut_secs() -> u64 {
    std::env::var("LINKBUS_FAULT_CUT_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(30)
}

/// The status of `GET http://<api><path>`, or `None` when nothing answers.
async fn get(http: &reqwest::Client, api: SocketAddr, path: &str) -> Option<(u16, String)> {
    let response = http.get(format!("http://{api}{path}")).send().await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.unwrap_or_default()))
}

/// Polls `GET path` until `want` holds for its status and body.
async fn wait_http(http: &reqwest::Client, api: SocketAddr, path: &str, what: &str, want: impl Fn(u16, &str) -> bool) {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        if let Some((status, body)) = get(http, api, path).await
            && want(status, &body)
        {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{path}: never {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A free port on 127.0.0.1.
fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr")
}

/// The value of a metric line `name value` (no labels) in Prometheus text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linkbus_cut_off_from_nats_reconnects_without_duplicate_effects() {
    let bus = TestBus::start().await;
    let target: SocketAddr = format!("127.0.0.1:{}", bus.server.port()).parse().expect("addr");
    let proxy = Proxy::start(target).await.expect("proxy starts");
    let api = free_addr();
    let linkbus = linkbus_up(bus.dir.path(), "linkbus", &proxy.url(), Some(api), "");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("http client");
    wait_http(&http, api, "/readyz", "ready", |s, _| s == 200).await;

    let acceptor = Acceptor::start(bus.client.clone(), bus.js.clone());
    let load = Load::start(bus.js.clone(), "cut", RATE, Some(acceptor.sender()));
    wait_decisions(&bus, 50, WAIT).await;

    let secs = cut_secs();
    proxy.cut();
    let cut_at = tokio::time::Instant::now();
    wait_http(&http, api, "/readyz", "503 while cut off", |s, body| s == 503 && body.contains("NATS")).await;
    let routed_during_cut_start = decisions(&bus).await;
    tokio::time::sleep_until(cut_at + Duration::from_secs(secs)).await;
    let routed_during_cut = decisions(&bus).await - routed_during_cut_start;
    let stored_during_cut = load.stored();
    proxy.restore();

    wait_http(&http, api, "/readyz", "ready again", |s, _| s == 200).await;
    load.wait_stored(stored_during_cut + 100, SETTLE).await;
    let outcome = finish(&bus, &format!("linkbus cut off from NATS for {secs} s"), load, acceptor, vec![]).await;
    assert_eq!(routed_during_cut, 0, "cases were routed while linkbus had no connection: the cut was not real");
    assert!(outcome.sent > stored_during_cut, "the load did not go on after the cut");
    let (_, metrics) = get(&http, api, "/metrics").await.expect("metrics");
    let disconnects = metric(&metrics, "linkbus_nats_disconnects_total").unwrap_or_default();
    assert!(disconnects >= 1.0, "the disconnection was not counted:\n{metrics}");
    println!("  linkbus_nats_disconnects_total {disconnects}");
    drop(linkbus);
}

/// A webhook receiver whose answers can be held back (a stalled department app): it records the
/// `Linkbus-Webhook-Id` of every request it answered 2xx, per hook.
#[derive(Clone)]
struct Receiver {
    answered: Arc<Mutex<Vec<(String, String)>>>,
    open: watch::Receiver<bool>,
}

async fn receive(State(receiver): State<Receiver>, UrlPath(hook): UrlPath<String>, headers: HeaderMap) -> StatusCode {
    if hook == "stalled" {
        let mut open = receiver.open.clone();
        // Holds the request until the gate opens (linkbus times out and retries meanwhile).
        if open.wait_for(|o| *o).await.is_err() {
            return StatusCode::SERVICE_UNAVAILABLE;
        }
    }
    let id = headers.get("linkbus-webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    receiver.answered.lock().expect("lock").push((hook, id));
    StatusCode::OK
}

impl Receiver {
    fn ids(&self, hook: &str) -> HashSet<String> {
        self.answered.lock().expect("lock").iter().filter(|(h, _)| h == hook).map(|(_, id)| id.clone()).collect()
    }
}

/// The `Nats-Msg-Id`s of everything on a department's subjects: what its webhook must deliver.
async fn department_ids(bus: &TestBus, department: &str) -> HashSet<String> {
    read_stream(&bus.js, STREAM_ROUTED, &format!("routed.dept.{department}.>"), 0)
        .await
        .iter()
        .filter_map(|m| header(m, "Nats-Msg-Id"))
        .collect()
}

/// Waits until `have()` holds every id of `department`'s subjects.
async fn wait_delivered(bus: &TestBus, department: &str, have: impl Fn() -> HashSet<String>, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let want = department_ids(bus, department).await;
        let got = have();
        if !want.is_empty() && want.is_subset(&got) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{department}: {} of {} messages delivered in time",
            want.intersection(&got).count(),
            want.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_webhook_receiver_holds_up_only_its_own_department() {
    let bus = TestBus::start().await;
    let (gate, open) = watch::channel(false);
    let receiver = Receiver { answered: Arc::default(), open };
    let addr = free_addr();
    let listener = tokio::net::TcpListener::bind(addr).await.expect("receiver binds");
    let app = axum::Router::new().route("/hook/{hook}", axum::routing::post(receive)).with_state(receiver.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let hook = |department: &str, name: &str| {
        let mut config = WebhookConfig::new(department, &format!("http://{addr}/hook/{name}"), "fault-secret");
        config.timeout = Duration::from_secs(1);
        config.backoff = vec![Duration::from_millis(200)];
        config.max_attempts = 10_000;
        config
    };
    let mut config = fault_config(&bus);
    config.webhooks = vec![hook("puc-sewer-ops", "stalled"), hook("dpw-ops-queue", "healthy")];
    let service = bus.service(&config).await;
    let acceptor = Acceptor::start(bus.client.clone(), bus.js.clone());
    let load = Load::start(bus.js.clone(), "webhook", RATE, Some(acceptor.sender()));
    load.wait_stored(200, WAIT).await;

    // The healthy department gets everything routed to it while the other's receiver hangs.
    wait_delivered(&bus, "dpw-ops-queue", || receiver.ids("healthy"), WAIT).await;
    assert!(receiver.ids("stalled").is_empty(), "the stalled receiver answered");
    let healthy_during_stall = receiver.ids("healthy").len();

    gate.send_replace(true);
    let sent = load.stop().await;
    let accepted = acceptor.finish().await;
    wait_delivered(&bus, "puc-sewer-ops", || receiver.ids("stalled"), SETTLE).await;
    wait_delivered(&bus, "dpw-ops-queue", || receiver.ids("healthy"), SETTLE).await;
    let outcome = audit(&bus.js, &sent, &accepted, SETTLE).await;
    println!(
        "stalled webhook receiver: {outcome}; the healthy department got {healthy_during_stall} messages during \
         the stall, the stalled one all {} after it",
        receiver.ids("stalled").len()
    );
    assert!(outcome.clean(), "{outcome}");
    service.stop().await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_department_consumer_holds_up_nobody_else() {
    let bus = TestBus::start().await;
    let service = bus.service(&fault_config(&bus)).await;
    let routed = bus.js.get_stream(STREAM_ROUTED).await.expect("routed stream");
    let stalled: consumer::PullConsumer = routed.get_consumer("dept-puc-sewer-ops").await.expect("dept consumer");
    let healthy: consumer::PullConsumer = routed.get_consumer("dept-dpw-ops-queue").await.expect("dept consumer");

    // The healthy department reads and acks everything, as it arrives.
    let healthy_ids = Arc::new(Mutex::new(HashSet::new()));
    let reader = {
        let ids = healthy_ids.clone();
        tokio::spawn(async move {
            let mut messages = healthy.messages().await.expect("pull");
            while let Some(Ok(msg)) = messages.next().await {
                if let Some(id) = header(&msg, "Nats-Msg-Id") {
                    ids.lock().expect("lock").insert(id);
                }
                msg.ack().await.expect("ack");
            }
        })
    };
    let acceptor = Acceptor::start(bus.client.clone(), bus.js.clone());
    let load = Load::start(bus.js.clone(), "deptstall", RATE, Some(acceptor.sender()));
    // The stalled one takes a few messages and then neither acks them nor asks for more.
    load.wait_stored(20, WAIT).await;
    let held: Vec<jetstream::Message> = stalled
        .fetch()
        .max_messages(5)
        .expires(Duration::from_secs(5))
        .messages()
        .await
        .expect("fetch")
        .filter_map(|m| async { m.ok() })
        .collect()
        .await;
    assert!(!held.is_empty(), "the stalled department received nothing to hold");
    load.wait_stored(300, WAIT).await;
    let sent = load.stop().await;
    let accepted = acceptor.finish().await;
    let outcome = audit(&bus.js, &sent, &accepted, SETTLE).await;
    wait_delivered(&bus, "dpw-ops-queue", || healthy_ids.lock().expect("lock").clone(), SETTLE).await;

    // Nothing of the stalled department's is lost: all of it waits in its consumer.
    let want = department_ids(&bus, "puc-sewer-ops").await;
    let mut stalled = stalled;
    let info = stalled.info().await.expect("consumer info").clone();
    let waiting = info.num_pending + info.num_ack_pending as u64;
    assert_eq!(waiting, want.len() as u64, "the stalled department's consumer does not hold all its messages");

    // It comes back: acks what it held and reads the rest, each message once.
    let mut got: HashSet<String> = HashSet::new();
    for msg in held {
        got.extend(header(&msg, "Nats-Msg-Id"));
        msg.ack().await.expect("ack");
    }
    let mut messages = stalled.messages().await.expect("pull");
    let mut repeats = 0;
    while !want.is_subset(&got) {
        let msg =
            tokio::time::timeout(WAIT, messages.next()).await.expect("the rest arrives").expect("open").expect("msg");
        if !got.insert(header(&msg, "Nats-Msg-Id").unwrap_or_default()) {
            repeats += 1;
        }
        msg.ack().await.expect("ack");
    }
    println!(
        "stalled department consumer: {outcome}; {waiting} messages waited for the stalled department and \
         reached it after, {repeats} repeated"
    );
    assert!(outcome.clean(), "{outcome}");
    assert_eq!(repeats, 0, "messages came twice to the department that came back");
    reader.abort();
    service.stop().await;
}

/// Messages a consumer has handed out and not had acknowledged.
async fn ack_pending(bus: &TestBus, stream: &str, durable: &str) -> usize {
    bus.js
        .get_stream(stream)
        .await
        .expect("stream")
        .get_consumer::<consumer::pull::Config>(durable)
        .await
        .expect("consumer")
        .cached_info()
        .num_ack_pending
}

/// The number after `field=` on the first line of `log` that says `what`.
fn logged(log: &Path, what: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().find(|l| l.contains(what))?;
    let after = &line[line.find(&format!("{field}="))? + field.len() + 1..];
    after.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_load_hands_back_what_was_not_started_and_a_replacement_routes_it_at_once() {
    // An hour's ack wait: whatever the stopped router held and did not hand back would come back
    // only after the test's deadlines, so the audit below passing proves the hand-back.
    const ROUTER: &str = "ack_wait_secs = 3600";
    let bus = TestBus::start().await;
    let earlier = backlog(&bus, "drain", 1000).await;
    let mut router = linkbus_up_with(bus.dir.path(), "router-1", &bus.server.url(), None, "", ROUTER);
    let acceptor = Acceptor::start(bus.client.clone(), bus.js.clone());
    let load = Load::start(bus.js.clone(), "term", RATE, Some(acceptor.sender()));
    let at_term = wait_decisions(&bus, 200, Duration::from_secs(60)).await;
    sigterm(&router);
    let termed = std::time::Instant::now();
    let status = tokio::task::spawn_blocking(move || router.wait()).await.expect("join").expect("wait");
    let exit_secs = termed.elapsed().as_secs_f64();
    assert!(status.success(), "linkbus up exited with {status} on SIGTERM");
    assert!(at_term < earlier.len(), "the batch was done before SIGTERM; the test proved nothing");
    // What the stopped router and case book were handed and did not ack: the messages they handed
    // back (naked without delay, waiting for the next consumer) — nothing else, as the
    // replacement below shows by routing everything at once despite the hour's ack wait.
    let unacked_router = ack_pending(&bus, STREAM_INGEST_PUBLIC_SERVICE, "linkbus-routers").await;
    let unacked_book = ack_pending(&bus, STREAM_CASES, "linkbus-cases").await;
    let log = bus.dir.path().join("router-1").join("linkbus.log");
    let handed_back = logged(&log, "router stopped", "handed_back").expect("the router logs what it handed back");
    let book_handed_back = logged(&log, "case book stopped opening records", "handed_back").unwrap_or_default();
    for line in std::fs::read_to_string(&log).unwrap_or_default().lines().filter(|l| l.contains("WARN")) {
        println!("  router-1: {line}");
    }
    assert_eq!(unacked_router as u64, handed_back, "the stopped router left more unacked than it handed back");
    assert_eq!(unacked_book as u64, book_handed_back, "the stopped case book left more unacked than it handed back");

    // The replacement routes everything stored so far at once (not after an ack wait).
    let restarted = linkbus_up_with(bus.dir.path(), "router-2", &bus.server.url(), None, "", ROUTER);
    let started = std::time::Instant::now();
    let due = earlier.len() + load.stored();
    wait_decisions(&bus, due, Duration::from_secs(60)).await;
    let caught_up_secs = started.elapsed().as_secs_f64();
    let at = load.stored();
    load.wait_stored(at + 100, SETTLE).await;
    finish(
        &bus,
        &format!(
            "SIGTERM after {at_term} decisions, exited in {exit_secs:.1} s, {handed_back} pulled but not started \
             handed back (case book: {book_handed_back}; unacked at exit: router {unacked_router}, case book \
             {unacked_book}); the replacement (ack wait 1 h) had routed all {due} stored before it within \
             {caught_up_secs:.1} s of its start"
        ),
        load,
        acceptor,
        earlier,
    )
    .await;
    drop(restarted);
}

/// Seconds linkbus is black-holed: `LINKBUS_FAULT_HOLE_SECS`, 20 by default.
fn hole_secs() -> u64 {
    std::env::var("LINKBUS_FAULT_HOLE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(20)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linkbus_black_holed_notices_by_ping_and_loses_nothing() {
    const PING_SECS: u64 = 1;
    let bus = TestBus::start().await;
    let target: SocketAddr = format!("127.0.0.1:{}", bus.server.port()).parse().expect("addr");
    let proxy = Proxy::start(target).await.expect("proxy starts");
    let api = free_addr();
    let nats = format!("ping_interval_secs = {PING_SECS}");
    let linkbus = linkbus_up_with(bus.dir.path(), "linkbus", &proxy.url(), Some(api), &nats, "ack_wait_secs = 2");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("http client");
    wait_http(&http, api, "/readyz", "ready", |s, _| s == 200).await;

    let acceptor = Acceptor::start(bus.client.clone(), bus.js.clone());
    let load = Load::start(bus.js.clone(), "hole", RATE, Some(acceptor.sender()));
    wait_decisions(&bus, 50, WAIT).await;

    let secs = hole_secs();
    proxy.black_hole();
    let hole_at = tokio::time::Instant::now();
    wait_http(&http, api, "/readyz", "503 while black-holed", |s, body| {
        s == 503 && body.contains("NATS is not connected")
    })
    .await;
    let noticed = hole_at.elapsed();
    assert!(
        noticed <= Duration::from_secs(6 * PING_SECS + 4),
        "the black hole was noticed only after {noticed:?} (ping interval {PING_SECS} s)"
    );
    let routed_at_notice = decisions(&bus).await;
    tokio::time::sleep_until(hole_at + Duration::from_secs(secs)).await;
    let routed_while_noticed = decisions(&bus).await - routed_at_notice;
    let stored_during_hole = load.stored();
    proxy.release();
    let released_at = tokio::time::Instant::now();

    wait_http(&http, api, "/readyz", "ready again", |s, _| s == 200).await;
    let ready_again = released_at.elapsed();
    load.wait_stored(stored_during_hole + 100, SETTLE).await;
    let fault = format!(
        "linkbus black-holed for {secs} s (ping {PING_SECS} s): /readyz 503 after {:.1} s, {routed_while_noticed} \
         routed from then to the release, ready {:.1} s after it",
        noticed.as_secs_f64(),
        ready_again.as_secs_f64()
    );
    finish(&bus, &fault, load, acceptor, vec![]).await;
    assert_eq!(routed_while_noticed, 0, "cases were routed through the black hole");
    let (_, metrics) = get(&http, api, "/metrics").await.expect("metrics");
    let disconnects = metric(&metrics, "linkbus_nats_disconnects_total").unwrap_or_default();
    assert!(disconnects >= 1.0, "the disconnection was not counted:\n{metrics}");
    println!("  linkbus_nats_disconnects_total {disconnects}");
    drop(linkbus);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpaced_flood_is_absorbed_with_backpressure_and_shows_in_the_metrics() {
    const FLOOD: usize = 10_000;
    let bus = TestBus::start().await;
    let api = free_addr();
    let linkbus = linkbus_up(bus.dir.path(), "linkbus", &bus.server.url(), Some(api), "max_in_flight = 32");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("http client");
    wait_http(&http, api, "/readyz", "ready", |s, _| s == 200).await;

    // A plain (core NATS) subscriber with a small buffer that does not keep up, next to the
    // department's durable consumer on the same subjects.
    let slow_events = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let plain = {
        let events = slow_events.clone();
        async_nats::ConnectOptions::new()
            .subscription_capacity(64)
            .event_callback(move |e| {
                if matches!(e, async_nats::Event::SlowConsumer(_)) {
                    events.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                std::future::ready(())
            })
            .connect(bus.server.url())
            .await
            .expect("plain subscriber connects")
    };
    let mut plain_sub = plain.subscribe("routed.dept.puc-sewer-ops.>").await.expect("subscribe");

    // The flood: every case published at once, up to 1000 acks outstanding.
    // Scrapes until the backlog was seen and is back to 0, or, once the flood is routed, until it
    // reads 0 (a machine too loaded to answer scrapes during the flood fails the assertion below,
    // not the wait).
    let routed = tokio_util::sync::CancellationToken::new();
    let scrape = {
        let (routed, http) = (routed.clone(), reqwest::Client::new());
        tokio::spawn(async move {
            let mut max_backlog = 0.0f64;
            loop {
                if let Some((_, text)) = get(&http, api, "/metrics").await {
                    let backlog = metric(&text, "linkbus_router_ingest_backlog_messages");
                    max_backlog = max_backlog.max(backlog.unwrap_or(0.0));
                    if backlog == Some(0.0) && (max_backlog > 0.0 || routed.is_cancelled()) {
                        return max_backlog;
                    }
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    let started = std::time::Instant::now();
    let mut acks = futures::stream::FuturesUnordered::new();
    let mut sent = Vec::with_capacity(FLOOD);
    for n in 0..FLOOD {
        let event = load::load_case("flood", n);
        let subject = linkbus_wire::subjects::ingest(event.data.system, &event.data.category);
        let body = bytes::Bytes::from(serde_json::to_vec(&event).expect("json"));
        acks.push(linkbus_bus::nats::publish(&bus.js, subject, &event.id, body).await.expect("publish").into_future());
        sent.push(event.id);
        while acks.len() >= 1000 {
            acks.next().await.expect("an ack").expect("stored");
        }
    }
    while let Some(ack) = acks.next().await {
        ack.expect("stored");
    }
    let stored_in = started.elapsed();
    let outcome = audit(&bus.js, &sent, &[], FLOOD_SETTLE).await;
    let routed_in = started.elapsed();
    routed.cancel();
    let max_backlog = tokio::time::timeout(FLOOD_SETTLE, scrape).await.expect("the backlog drains").expect("scraper");
    let (_, text) = get(&http, api, "/metrics").await.expect("metrics");
    let linkbus_slow = metric(&text, "linkbus_nats_slow_consumer_events_total").unwrap_or(-1.0);

    let durable = bus
        .js
        .get_stream(STREAM_ROUTED)
        .await
        .expect("routed")
        .get_consumer::<consumer::pull::Config>("dept-puc-sewer-ops")
        .await
        .expect("dept consumer")
        .cached_info()
        .num_pending;
    let mut plain_got = 0u64;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(200), plain_sub.next()).await {
        plain_got += 1;
    }
    let sewer = department_ids(&bus, "puc-sewer-ops").await.len() as u64;
    println!(
        "flood of {FLOOD}: stored in {:.1} s, {outcome} within {:.1} s; router backlog peaked at {max_backlog} \
         (linkbus_router_ingest_backlog_messages); linkbus slow-consumer events {linkbus_slow}; the department's \
         durable consumer holds {durable} of {sewer}, a plain subscriber with a 64-message buffer got {plain_got} \
         ({} slow-consumer events)",
        stored_in.as_secs_f64(),
        routed_in.as_secs_f64(),
        slow_events.load(std::sync::atomic::Ordering::SeqCst)
    );
    assert!(outcome.clean(), "{outcome}");
    assert!(max_backlog > 0.0, "the backlog metric never showed the flood");
    assert_eq!(linkbus_slow, 0.0, "linkbus's own connection dropped messages");
    assert_eq!(durable, sewer, "the department's durable consumer misses messages");
    drop(linkbus);
}
