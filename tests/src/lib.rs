//! End-to-end tests of linkbus against a real nats-server started by each test.
//!
//! The tests live in `tests/it/`; this library holds what they share: a [`TestBus`] (a fresh
//! nats-server in a temporary folder plus a client), the San Francisco region, case builders,
//! and readers that count what the streams hold; [`load`] (steady load and the audit of what
//! became of it) and [`proxy`] (a TCP proxy to cut a connection) serve the fault tests;
//! [`hostile`] holds the checks the fuzz targets and the hostile-input regressions run.

pub mod nats_process;

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use jiff::Timestamp;
use linkbus::config::Config;
use linkbus::service::Service;
use linkbus_bus::server::{NatsServer, ServerConfig};
use linkbus_geo_data::Region;
use linkbus_wire::{self as wire, CaseReport, CloudEvent, Location, SourceSystem};

pub mod hostile;
pub mod load;
pub mod proxy;

/// Every wait in these tests is bounded by this. Each wait ends as soon as what it waits for
/// is there, so the bound costs a passing run nothing; it is wide because the machines that run
/// the suite are shared, and a console test with four Chromiums beside it once took over 30 s.
pub const WAIT: Duration = Duration::from_secs(60);

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The San Francisco region folder.
pub fn sf_region_dir() -> PathBuf {
    repo_root().join("geo-data/san-francisco")
}

/// Writes into `dir` the files of a version of the San Francisco region
/// ([`linkbus_routers::regions::VERSION_FILES`]) as version 2026.11.28 (the shipped one is
/// 2026.11.27), for a test to change and publish as a new version.
pub fn sf_region_next_version(dir: &std::path::Path) {
    for file in linkbus_routers::regions::VERSION_FILES {
        let text = std::fs::read_to_string(sf_region_dir().join(file)).expect("read");
        let text = match file {
            "manifest.toml" => text.replace("version = \"2026.11.27\"", "version = \"2026.11.28\""),
            _ => text,
        };
        std::fs::write(dir.join(file), text).expect("write");
    }
}

/// The San Francisco region, loaded.
pub fn sf_region() -> Region {
    Region::load(sf_region_dir()).expect("the SF region loads")
}

/// A nats-server with JetStream in a temporary folder, and a client connected to it.
pub struct TestBus {
    /// The server (kill and restart it at will).
    pub server: NatsServer,
    /// A connected client.
    pub client: async_nats::Client,
    /// JetStream on that client.
    pub js: jetstream::Context,
    /// The server's data folder (removed on drop).
    pub dir: tempfile::TempDir,
}

impl TestBus {
    /// Starts a fresh server on a free port.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let server = NatsServer::start(ServerConfig::new(dir.path().join("nats"))).await.expect("nats-server starts");
        let client = linkbus::service::connect(&server.url(), WAIT).await.expect("client connects");
        let js = jetstream::new(client.clone());
        Self { server, client, js, dir }
    }

    /// Test configuration: this bus's URL, the SF region, short ack waits so redelivery
    /// after a crash happens within seconds, and the test cases' ids and source ([`case`]'s
    /// `/tests`, which no system claims) accepted from every system.
    pub fn config(&self) -> Config {
        let mut config = Config::default();
        config.nats.url = Some(self.server.url());
        config.region.dir = sf_region_dir();
        config.router.ack_wait_secs = 2;
        config.ingest.unclaimed = linkbus_wire::claims::Unclaimed::Accept;
        config.storage = test_storage();
        config
    }

    /// Starts an in-process service on its own connection.
    pub async fn service(&self, config: &Config) -> Service {
        let client = linkbus::service::connect(&self.server.url(), WAIT).await.expect("service connects");
        Service::start(config, &sf_region(), client, "/linkbus/test".into()).await.expect("service starts")
    }
}

/// A valid case report at a point.
pub fn case(id: &str, system: SourceSystem, category: &str, lon: f64, lat: f64) -> CloudEvent<CaseReport> {
    let now = Timestamp::now();
    CloudEvent::new(
        id.to_owned(),
        "/tests",
        wire::TYPE_CASE_REPORTED,
        Some(id.to_owned()),
        now,
        CaseReport {
            system,
            category: category.to_owned(),
            priority: 3,
            location: Location { lon, lat },
            address: Some("1 Test St".into()),
            reporter: Some(wire::Contact {
                name: Some("A. Resident".into()),
                phone: Some("555-0100".into()),
                ..Default::default()
            }),
            description: Some("test case".into()),
            source_id: id.to_owned(),
            reported_at: now,
            flags: vec![],
            datum: wire::Datum::Wgs84,
            received_location: None,
            area: None,
            media_url: None,
        },
    )
}

/// Publishes a case event to its ingest subject with `Nats-Msg-Id` = its id; waits for the ack.
pub async fn publish_case(js: &jetstream::Context, event: &CloudEvent<CaseReport>) -> jetstream::publish::PublishAck {
    let subject = linkbus_wire::subjects::ingest(event.data.system, &event.data.category);
    publish_raw(js, &subject, &event.id, serde_json::to_vec(event).expect("serialise").into()).await
}

/// Publishes raw bytes to a subject with a `Nats-Msg-Id`; waits for the ack.
pub async fn publish_raw(
    js: &jetstream::Context,
    subject: &str,
    msg_id: &str,
    payload: bytes::Bytes,
) -> jetstream::publish::PublishAck {
    linkbus_bus::nats::publish(js, subject.to_owned(), msg_id, payload)
        .await
        .expect("publish")
        .await
        .expect("publish ack")
}

/// Reads every message currently in `stream` on `filter`, through a fresh ephemeral consumer,
/// waiting until at least `at_least` are there (or the wait runs out).
pub async fn read_stream(
    js: &jetstream::Context,
    stream: &str,
    filter: &str,
    at_least: usize,
) -> Vec<jetstream::Message> {
    read_filtered(js, stream, vec![filter.to_owned()], at_least).await
}

/// Every routed case for `community` in `LINKBUS_ROUTED`, as a community's consumer reads them
/// ([`subjects::routed_community_filters`]), once there are `at_least` (or after [`WAIT`]).
pub async fn read_community(js: &jetstream::Context, community: &str, at_least: usize) -> Vec<jetstream::Message> {
    let filters = linkbus_wire::subjects::routed_community_filters(community).into();
    read_filtered(js, linkbus_bus::nats::STREAM_ROUTED, filters, at_least).await
}

async fn read_filtered(
    js: &jetstream::Context,
    stream: &str,
    filters: Vec<String>,
    at_least: usize,
) -> Vec<jetstream::Message> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let all = read_stream_once(js, stream, &filters).await;
        if all.len() >= at_least || tokio::time::Instant::now() > deadline {
            return all;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn read_stream_once(js: &jetstream::Context, stream: &str, filters: &[String]) -> Vec<jetstream::Message> {
    let stream = js.get_stream(stream).await.expect("stream exists");
    let consumer: consumer::PullConsumer = stream
        .create_consumer(consumer::pull::Config {
            filter_subjects: filters.to_vec(),
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        })
        .await
        .expect("ephemeral consumer");
    let pending = consumer.cached_info().num_pending as usize;
    let mut out = Vec::with_capacity(pending);
    if pending == 0 {
        return out;
    }
    let mut messages =
        consumer.fetch().max_messages(pending).expires(Duration::from_secs(5)).messages().await.expect("fetch");
    while let Some(Ok(msg)) = tokio::time::timeout(WAIT, messages.next()).await.ok().flatten() {
        out.push(msg);
        if out.len() == pending {
            break;
        }
    }
    out
}

/// The value of a header, if present.
pub fn header(msg: &jetstream::Message, name: &str) -> Option<String> {
    msg.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_owned())
}

/// Messages a stream holds now.
pub async fn stream_messages(js: &jetstream::Context, stream: &str) -> u64 {
    let mut stream = js.get_stream(stream).await.expect("stream exists");
    stream.info().await.expect("stream info").state.messages
}

/// Waits until `stream` holds at least `n` messages; returns how many it holds.
pub async fn wait_for_messages(js: &jetstream::Context, stream: &str, n: u64, within: Duration) -> u64 {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let have = stream_messages(js, stream).await;
        if have >= n || tokio::time::Instant::now() > deadline {
            return have;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A client of the embedded nats-server that a `linkbus up` runs from `data_dir`, with the key of
/// the local tools from that folder (the server refuses clients without one), as the `linkbus`
/// subcommands connect.
pub async fn connect_embedded(data_dir: &std::path::Path) -> async_nats::Client {
    let nats = linkbus::config::NatsConfig::default();
    let (url, nats) =
        linkbus::embedded::client_settings(&nats, data_dir, WAIT).await.expect("the embedded server is running");
    linkbus::service::connect_configured(&url, &nats, WAIT, None).await.expect("connects with the local tools' key")
}

/// Writes a configuration file for `linkbus` processes on this bus: `extra`, with the test
/// cases' ids and source ([`case`]'s) accepted from every system (`[ingest] unclaimed`) and the
/// tests' storage limits ([`storage_toml`]).
pub fn write_config(dir: &std::path::Path, extra: &str) -> PathBuf {
    let path = dir.join("linkbus.toml");
    let text = format!("[ingest]\nunclaimed = \"accept\"\n\n{}\n{extra}", storage_toml());
    std::fs::write(&path, text).expect("write config");
    path
}

/// The service's metrics in Prometheus's text format.
pub fn metrics_text(service: &Service) -> String {
    let mut text = Vec::new();
    prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &service.metrics.registry().gather(), &mut text)
        .expect("metrics encode");
    String::from_utf8(text).expect("utf-8")
}

/// [`test_storage`] as a `[storage]` table, for configuration files.
pub fn storage_toml() -> String {
    let storage = test_storage();
    format!(
        "[storage]\ningest_mib = {}\nrouted_mib = {}\ncases_mib = {}\noffers_mib = {}\ndeadletter_mib = {}\n\
         case_records_mib = {}\nvolunteers_mib = {}\nsnapshots_mib = {}\nsmall_bucket_mib = {}\n",
        storage.ingest_mib,
        storage.routed_mib,
        storage.cases_mib,
        storage.offers_mib,
        storage.deadletter_mib,
        storage.case_records_mib,
        storage.volunteers_mib,
        storage.snapshots_mib,
        storage.small_bucket_mib,
    )
}

/// The default stream settings with [`test_storage`]'s limits, for a test that provisions the
/// bus itself.
pub fn test_stream_settings() -> linkbus_bus::nats::StreamSettings {
    linkbus_bus::nats::StreamSettings { storage: test_storage(), ..Default::default() }
}

/// Byte limits for a test's streams and buckets: JetStream reserves each limit against its
/// store (75 % of the free disk by default) when the stream is made, so the defaults, sized for a
/// city (10.5 GiB), would make every test depend on the free disk of the machine it runs on.
pub fn test_storage() -> linkbus_bus::limits::StorageLimits {
    linkbus_bus::limits::StorageLimits {
        ingest_mib: 64,
        routed_mib: 256,
        cases_mib: 256,
        offers_mib: 64,
        deadletter_mib: 64,
        case_records_mib: 256,
        volunteers_mib: 64,
        snapshots_mib: 32,
        small_bucket_mib: 16,
    }
}

/// Sends a department's action as a NATS request on `action.<department>` and returns the reply.
pub async fn department_action(
    client: &async_nats::Client,
    department: &str,
    case_id: &str,
    action: wire::Action,
) -> wire::ActionReply {
    let request = wire::ActionRequest { case_id: case_id.to_owned(), action };
    let body = serde_json::to_vec(&request).expect("json");
    let reply = tokio::time::timeout(WAIT, client.request(linkbus_wire::subjects::action(department), body.into()))
        .await
        .expect("a reply in time")
        .expect("request");
    serde_json::from_slice(&reply.payload).expect("an action reply")
}

/// Sends a volunteer's answer as a NATS request on `volunteer.<id>.answer`.
pub async fn volunteer_answer(
    client: &async_nats::Client,
    volunteer: &str,
    case_id: &str,
    accept: bool,
) -> wire::ActionReply {
    let answer = wire::VolunteerAnswer { case_id: case_id.to_owned(), accept };
    let body = serde_json::to_vec(&answer).expect("json");
    let reply =
        tokio::time::timeout(WAIT, client.request(linkbus_wire::subjects::volunteer_answer(volunteer), body.into()))
            .await
            .expect("a reply in time")
            .expect("request");
    serde_json::from_slice(&reply.payload).expect("an action reply")
}

/// Waits until the case book of `service` has `case_id` in a state `ready` accepts.
pub async fn wait_for_case(
    service: &Service,
    case_id: &str,
    what: &str,
    ready: impl Fn(&wire::CaseRecord) -> bool,
) -> wire::CaseRecord {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(r) = service.cases.get(case_id).filter(|r| ready(r)) {
            return r;
        }
        assert!(tokio::time::Instant::now() < deadline, "case {case_id}: gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a starting `linkbus up` announces on stderr once it is ready: `linkbus is up: NATS <url>,
/// region …, API http://<addr>, console http://<addr>/. Ctrl-C stops it.`
#[derive(Debug, Clone)]
pub struct Announcement(pub String);

impl Announcement {
    /// The NATS URL clients connect to.
    pub fn nats_url(&self) -> &str {
        self.after("NATS ", &[','])
    }

    /// The HTTP API's `host:port`.
    pub fn api(&self) -> &str {
        self.after("API http://", &[',', ' '])
    }

    /// The console's `host:port`.
    pub fn console(&self) -> &str {
        self.after("console http://", &['/', ' ', ','])
    }

    fn after(&self, marker: &str, stops: &[char]) -> &str {
        let rest = self.0.split(marker).nth(1).unwrap_or_else(|| panic!("no {marker:?} in {:?}", self.0));
        rest.split(stops).next().unwrap_or_default().trim_end_matches('.')
    }
}

/// Spawns `linkbus up` from `command` with stderr piped, reads its stderr to the end on a thread
/// (so the child never blocks on a full pipe), and waits up to [`WAIT`] for its announcement.
pub fn start_up(command: &mut std::process::Command) -> (Running, Announcement) {
    let (up, announcement, _) = start_up_logged(command);
    (up, announcement)
}

/// The lines a child writes to its piped stderr, read to the end on a thread of their own (so the
/// child never blocks on a full pipe).
pub fn stderr_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead as _;
    let stderr = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// [`start_up`], with the lines `linkbus up` wrote to stderr before its announcement.
pub fn start_up_logged(command: &mut std::process::Command) -> (Running, Announcement, Vec<String>) {
    let mut up = Running(command.stderr(std::process::Stdio::piped()).spawn().expect("linkbus up starts"));
    let rx = stderr_lines(&mut up);
    let deadline = std::time::Instant::now() + WAIT;
    let mut before = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("linkbus up did not announce that it is up; it said:\n{}", before.join("\n")));
        if line.contains("linkbus is up") {
            return (up, Announcement(line), before);
        }
        before.push(line);
    }
}

/// A `linkbus` child process that is stopped if the test ends without stopping it (a failing
/// assertion must not leave a server running).
pub struct Running(pub std::process::Child);

impl std::ops::Deref for Running {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Running {
    /// SIGTERM first, so `linkbus up` finishes and stops its embedded nats-server itself (after a
    /// SIGKILL the kernel's parent-death signal stops it); SIGKILL after 10 s.
    fn drop(&mut self) {
        if !matches!(self.0.try_wait(), Ok(None)) {
            return;
        }
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while matches!(self.0.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `entry` (a receipt's answer for a new case) without its `tracking` part, which must be there:
/// the case's tracking token and page (relative, without `[api].public_url`).
pub fn untracked(entry: &serde_json::Value) -> serde_json::Value {
    let mut entry = entry.clone();
    let case_id = entry["case_id"].as_str().expect("a case id").to_owned();
    let tracking = entry.as_object_mut().and_then(|o| o.remove("tracking")).expect("a tracking part");
    let token = tracking["token"].as_str().expect("a tracking token");
    assert_eq!(tracking["url"], serde_json::json!(format!("/track/{case_id}?t={token}")), "{tracking}");
    entry
}
