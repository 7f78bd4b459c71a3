//! Who may issue which case ids (issue 16, section 1), against real nats-servers and real HTTP.
//!
//! The two attacks of the issue, performed as written: on a nats-server locked down with the
//! users `linkbus nats-auth` generates, a 12345 app holding exactly the permissions of a
//! public-service source (publish `ingest.public_service.>`) tries to block the next fire
//! (reserve its CAD event id) and to take one over (report it first, under the CAD's id and
//! source, at priority 4 elsewhere); the CAD system's fire must be routed as reported either way,
//! and each attempt is a dead letter with its own reason code and counted. Then each new reason
//! code is produced and counted, the adapter says what happened when an id is not its report's,
//! the single ingest stream of earlier versions is retired, and emergency reports are routed
//! first while a flood of complaints is being routed (the latencies are printed).

use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures::StreamExt;
use linkbus::config::Config;
use linkbus::nats_access::NatsAuth;
use linkbus::nats_auth::{self, AuthOptions, Role};
use linkbus::service::{self, Service};
use linkbus_adapters::cad::CadConfig;
use linkbus_adapters::vocabulary::CategoryMap;
use linkbus_bus::nats::{self, HEADER_ORIGINAL_ID, HEADER_REASON_CODE, STREAM_DEADLETTER};
use linkbus_http::auth;
use linkbus_http::config::{ApiKey, ApiRole};
use linkbus_tests::nats_process::{NatsProcess, free_port};
use linkbus_tests::{TestBus, WAIT, case, header, publish_raw, read_stream, sf_region, sf_region_dir};
use linkbus_wire::{CaseReport, CloudEvent, SourceSystem, subjects};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The CAD system's source key (source `/cad`).
pub(crate) const DISPATCH: &str = "k-sfdem-cad-5e0b71d3";
/// A dispatcher's key.
const DISPATCHER: &str = "k-dispatcher-li-8a41c2";
/// Mission District, San Francisco: fire station 7's.
pub(crate) const MISSION: (f64, f64) = (-122.4194, 37.7599);
/// Far from it: the Sunset.
const SUNSET: (f64, f64) = (-122.4862, 37.7534);

/// A nats-server locked down with `linkbus nats-auth`'s users, the service under its own user,
/// and the HTTP API with the CAD adapter.
struct Locked {
    _dir: tempfile::TempDir,
    auth_dir: std::path::PathBuf,
    server: NatsProcess,
    service: Service,
    base: String,
    http: reqwest::Client,
    stop: CancellationToken,
    api: JoinHandle<std::io::Result<()>>,
}

impl Locked {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let region = sf_region();
        let auth_dir = dir.path().join("auth");
        nats_auth::generate(&region, &AuthOptions { out: auth_dir.clone(), operators: vec![], volunteers: false })
            .expect("linkbus nats-auth");
        let port = free_port();
        let conf = dir.path().join("nats-server.conf");
        let store = dir.path().join("js").display().to_string();
        let text = format!(
            "host: 127.0.0.1\nport: {port}\njetstream {{ store_dir: {store:?} }}\ninclude \"auth/authorization.conf\"\n"
        );
        std::fs::write(&conf, text).expect("server config");
        let server = NatsProcess::start(&conf, port, &[], &dir.path().join("nats-server.log")).await;

        let mut config = Config { storage: linkbus_tests::test_storage(), ..Default::default() };
        config.nats.url = Some(server.url());
        config.nats.auth = auth_for(&auth_dir, &Role::Service);
        config.region.dir = sf_region_dir();
        config.router.ack_wait_secs = 2;
        config.api.listen = "127.0.0.1:0".into();
        config.api.keys = vec![
            cad_key(),
            ApiKey { role: ApiRole::Dispatcher, id: "li".into(), sha256: auth::hash_key(DISPATCHER), source: None },
        ];
        config.adapters.cad = cad_config();
        let client = service::connect_configured(&server.url(), &config.nats, WAIT, None).await.expect("connects");
        let service = Service::start(&config, &region, client, "/linkbus/trust".into()).await.expect("service starts");
        let listener = tokio::net::TcpListener::bind(&config.api.listen).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = linkbus::up::api_app(&config, &region, &service).expect("app");
        let stop = CancellationToken::new();
        let api = tokio::spawn(linkbus_http::serve(listener, app, stop.clone().cancelled_owned()));
        let http = reqwest::Client::builder().timeout(WAIT).build().expect("client");
        Self { _dir: dir, auth_dir, server, service, base: format!("http://{addr}"), http, stop, api }
    }

    /// JetStream as a party with exactly the permissions `linkbus nats-auth` gave `role`.
    async fn party(&self, role: &Role) -> jetstream::Context {
        let auth = auth_for(&self.auth_dir, role);
        let options = linkbus::nats_access::connect_options(&auth, &Default::default()).await.expect("options");
        let client = options.connect(self.server.url()).await.expect("the party connects");
        jetstream::new(client)
    }

    /// The CAD system posts a new incident.
    async fn cad_fire(&self, incident: &str) -> (u16, Value) {
        post_fire(&self.http, &self.base, incident, "Smoke from 2nd floor, elderly resident inside").await
    }

    /// `GET /api/cases/<id>` as a dispatcher: the status and the record, once routed.
    async fn case(&self, case_id: &str) -> (u16, Value) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let response = self
                .http
                .get(format!("{}/api/cases/{case_id}", self.base))
                .bearer_auth(DISPATCHER)
                .send()
                .await
                .expect("a response");
            let status = response.status().as_u16();
            if status != 404 || tokio::time::Instant::now() > deadline {
                return (status, json_body(response).await);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(WAIT, self.api).await;
        self.service.stop().await;
    }
}

/// The CAD system's source key, as configured.
pub(crate) fn cad_key() -> ApiKey {
    ApiKey {
        role: ApiRole::Source,
        id: "sfdem-cad".into(),
        sha256: auth::hash_key(DISPATCH),
        source: Some("/cad".into()),
    }
}

/// The CAD adapter, taking structure fires.
pub(crate) fn cad_config() -> CadConfig {
    CadConfig { categories: CategoryMap::from_pairs([("STRUCTURE FIRE", "fire")]), ..Default::default() }
}

/// The CAD system posts incident `incident`, a structure fire at `MISSION`, to the API at
/// `base`: the status and the body.
pub(crate) async fn post_fire(http: &reqwest::Client, base: &str, incident: &str, narrative: &str) -> (u16, Value) {
    let fire = json!({
        "kind": "new", "incident_id": incident, "type": "STRUCTURE FIRE", "priority": 1,
        "lon": MISSION.0, "lat": MISSION.1, "address": "2400 Mission St",
        "narrative": narrative, "flags": ["persons_trapped"]
    });
    let response = http
        .post(format!("{base}/api/adapters/cad"))
        .bearer_auth(DISPATCH)
        .header("content-type", "application/json")
        .body(fire.to_string())
        .send()
        .await
        .expect("a response");
    let status = response.status().as_u16();
    (status, json_body(response).await)
}

async fn json_body(response: reqwest::Response) -> Value {
    let bytes = response.bytes().await.expect("a body");
    serde_json::from_slice(&bytes).unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)))
}

fn auth_for(dir: &std::path::Path, role: &Role) -> NatsAuth {
    NatsAuth {
        nkey_seed_file: Some(dir.join("nkeys").join(format!("{}.nk", role.user()))),
        inbox_prefix: Some(role.inbox_prefix()),
        ..Default::default()
    }
}

/// The dead letter of stage `ingest` whose original `Nats-Msg-Id` was `msg_id`, once there.
async fn ingest_dead_letter(js: &jetstream::Context, msg_id: &str) -> jetstream::Message {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let letters = read_stream(js, STREAM_DEADLETTER, "deadletter.ingest", 0).await;
        if let Some(letter) = letters.into_iter().find(|m| header(m, HEADER_ORIGINAL_ID).as_deref() == Some(msg_id)) {
            return letter;
        }
        assert!(tokio::time::Instant::now() < deadline, "no dead letter of {msg_id}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of the series `name{labels}` in `service`'s metrics (0 when absent).
fn metric(service: &Service, series: &str) -> f64 {
    let text = linkbus_http::api::render(service.metrics.registry());
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok())).unwrap_or(0.0)
}

/// Checks that each of `codes` was counted once as a dead letter of `stage`.
fn counted_once(service: &Service, stage: &str, codes: &[&str]) {
    for code in codes {
        let series = format!("linkbus_deadletters_total{{reason=\"{code}\",stage=\"{stage}\"}}");
        assert_eq!(metric(service, &series), 1.0, "{series}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_service_source_cannot_reserve_the_next_fires_id() {
    let s = Locked::start().await;
    // The 12345 app, with its generated user: ingest.public_service.> only.
    let app = s.party(&Role::Source(SourceSystem::PublicService)).await;
    let ack = linkbus_bus::nats::publish(&app, "ingest.public_service.x".into(), "cad-F26-200002", "{}".into())
        .await
        .expect("publish")
        .await
        .expect("its own subject: stored");
    assert!(!ack.duplicate);

    // The CAD system then reports incident F26-200002: a structure fire, priority 1.
    let (status, receipt) = s.cad_fire("F26-200002").await;
    assert_eq!(status, 202, "{receipt}");
    assert_eq!(receipt["cases"][0]["outcome"], "reported", "the fire was not taken for a duplicate: {receipt}");
    let (status, record) = s.case("cad-F26-200002").await;
    assert_eq!(status, 200, "the fire is routed: {record}");
    assert_eq!((record["case"]["category"].as_str(), record["priority"].as_u64()), (Some("fire"), Some(1)));
    assert_eq!(record["departments"], json!(["sffd-station-7"]));

    // The attempt is kept and counted, under its own reason.
    let letter = ingest_dead_letter(&s.service.js, "cad-F26-200002").await;
    assert_eq!(header(&letter, HEADER_REASON_CODE).as_deref(), Some("foreign_id"));
    assert_eq!(metric(&s.service, "linkbus_deadletters_total{reason=\"foreign_id\",stage=\"ingest\"}"), 1.0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_service_source_cannot_take_over_a_fire() {
    let s = Locked::start().await;
    let app = s.party(&Role::Source(SourceSystem::PublicService)).await;
    // First, a valid report under the CAD's id and source, at priority 4, in the Sunset.
    let mut forged = case("cad-F26-200001", SourceSystem::PublicService, "sewer_issues", SUNSET.0, SUNSET.1);
    forged.source = "/cad".into();
    forged.data.source_id = "F26-200001".into();
    forged.data.priority = 4;
    let body = serde_json::to_vec(&forged).expect("json");
    linkbus_bus::nats::publish(&app, "ingest.public_service.sewer_issues".into(), &forged.id, body.into())
        .await
        .expect("publish")
        .await
        .expect("its own subject: stored");
    // Once the router has handled it (routed it, or refused it)…
    let deadline = tokio::time::Instant::now() + WAIT;
    while s.service.cases.get("cad-F26-200001").is_none()
        && !read_stream(&s.service.js, STREAM_DEADLETTER, "deadletter.ingest", 0)
            .await
            .iter()
            .any(|m| header(m, HEADER_ORIGINAL_ID).as_deref() == Some("cad-F26-200001"))
    {
        assert!(tokio::time::Instant::now() < deadline, "the router never handled the forgery");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // …the real fire: routed as the CAD reported it, to the fire station.
    let (status, receipt) = s.cad_fire("F26-200001").await;
    assert_eq!((status, receipt["cases"][0]["outcome"].as_str()), (202, Some("reported")), "{receipt}");
    let (status, record) = s.case("cad-F26-200001").await;
    assert_eq!(status, 200, "{record}");
    assert_eq!((record["case"]["category"].as_str(), record["priority"].as_u64()), (Some("fire"), Some(1)));
    assert_eq!(record["case"]["system"], "emergency");
    assert_eq!(record["departments"], json!(["sffd-station-7"]));
    assert_eq!(record["reports"].as_array().map(Vec::len), Some(1), "the forgery is no report of it");
    let letter = ingest_dead_letter(&s.service.js, "cad-F26-200001").await;
    assert_eq!(header(&letter, HEADER_REASON_CODE).as_deref(), Some("foreign_id"));
    assert_eq!(metric(&s.service, "linkbus_deadletters_total{reason=\"foreign_id\",stage=\"ingest\"}"), 1.0);
    s.stop().await;
}

/// Publishes `event` as `party` on its system's subject under `msg_id`; waits for the ack.
async fn publish_as(party: &jetstream::Context, event: &CloudEvent<CaseReport>, msg_id: &str) {
    let subject = subjects::ingest(event.data.system, &event.data.category);
    let body = serde_json::to_vec(event).expect("json");
    linkbus_bus::nats::publish(party, subject, msg_id, body.into())
        .await
        .expect("publish")
        .await
        .expect("stored in its system's stream");
}

/// A report of `system` with this id and source.
fn report(id: &str, source: &str, system: SourceSystem, category: &str) -> CloudEvent<CaseReport> {
    let mut event = case(id, system, category, MISSION.0, MISSION.1);
    event.source = source.into();
    event
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_refusal_has_its_own_reason_code_and_is_counted() {
    let s = Locked::start().await;
    let public = s.party(&Role::Source(SourceSystem::PublicService)).await;
    let management = s.party(&Role::Source(SourceSystem::Management)).await;
    let sewer = |id: &str, source: &str| report(id, source, SourceSystem::PublicService, "sewer_issues");
    // A report of its own, for comparison: routed.
    publish_as(&public, &sewer("sf311-900", "/sf311"), "sf311-900").await;
    let refused = [
        ("msg_id_mismatch", sewer("sf311-901", "/sf311"), "sf311-9010"),
        ("foreign_id", sewer("grid-902", "/sf311"), "grid-902"),
        ("unknown_id", sewer("app12345-903", "/sf311"), "app12345-903"),
        ("foreign_source", sewer("sf311-904", "/grid"), "sf311-904"),
        ("unknown_source", sewer("sf311-905", "/app-12345"), "sf311-905"),
    ];
    for (_, event, msg_id) in &refused {
        publish_as(&public, event, msg_id).await;
    }
    for (code, _, msg_id) in &refused {
        let letter = ingest_dead_letter(&s.service.js, msg_id).await;
        assert_eq!(header(&letter, HEADER_REASON_CODE).as_deref(), Some(*code), "{msg_id}");
    }
    // A synthetic id every system may use, routed for public service, then sent by management
    // for another report: the stored decision is not its to reuse.
    let mut first = sewer("sim-906", "/linkbus/simulated-feed");
    first.data.source_id = "public-1".into();
    publish_as(&public, &first, "sim-906").await;
    let (status, _) = s.case("sim-906").await;
    assert_eq!(status, 200);
    let mut second = report("sim-906", "/linkbus/simulated-feed", SourceSystem::Management, "street_defects");
    second.data.source_id = "management-1".into();
    publish_as(&management, &second, "sim-906").await;
    let letter = ingest_dead_letter(&s.service.js, "sim-906").await;
    assert_eq!(header(&letter, HEADER_REASON_CODE).as_deref(), Some("id_taken"));
    let record = s.service.cases.get("sim-906").expect("the first report's case");
    assert_eq!(record.case.system, SourceSystem::PublicService, "unchanged");

    let (status, _) = s.case("sf311-900").await;
    assert_eq!(status, 200, "a report of its own is routed");
    let codes = ["msg_id_mismatch", "foreign_id", "unknown_id", "foreign_source", "unknown_source", "id_taken"];
    counted_once(&s.service, "ingest", &codes);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cad_adapter_says_duplicate_only_of_its_own_case() {
    let s = Locked::start().await;
    // The same incident twice: the second is a duplicate of the first's case.
    assert_eq!(s.cad_fire("F26-300003").await.1["cases"][0]["outcome"], "reported");
    assert_eq!(s.cad_fire("F26-300003").await.1["cases"][0]["outcome"], "duplicate");

    // An emergency publisher reserved the id with a message that is no case: the CAD is told so,
    // not "duplicate".
    let emergency = s.party(&Role::Source(SourceSystem::Emergency)).await;
    linkbus_bus::nats::publish(&emergency, "ingest.emergency.fire".into(), "cad-F26-300001", "{}".into())
        .await
        .expect("publish")
        .await
        .expect("stored");
    let letter = ingest_dead_letter(&s.service.js, "cad-F26-300001").await;
    assert_eq!(header(&letter, HEADER_REASON_CODE).as_deref(), Some("malformed"));
    let (status, error) = s.cad_fire("F26-300001").await;
    assert_eq!((status, error["code"].as_str()), (409, Some("conflict")), "{error}");
    assert!(error["error"].as_str().is_some_and(|e| e.contains("reserved by another message")), "{error}");

    // Another emergency source's report holds the id: not this one's case either.
    let mut cap = report("cad-F26-300002", "/cap", SourceSystem::Emergency, "fire");
    cap.data.source_id = "CAP-7".into();
    publish_as(&emergency, &cap, "cad-F26-300002").await;
    assert_eq!(s.case("cad-F26-300002").await.0, 200);
    let (status, error) = s.cad_fire("F26-300002").await;
    assert_eq!((status, error["code"].as_str()), (409, Some("conflict")), "{error}");
    assert!(error["error"].as_str().is_some_and(|e| e.contains("from another report")), "{error}");

    let letters = read_stream(&s.service.js, STREAM_DEADLETTER, "deadletter.adapter_cad", 2).await;
    let codes: Vec<String> = letters.iter().filter_map(|m| header(m, HEADER_REASON_CODE)).collect();
    assert_eq!(codes, ["id_reserved", "id_taken"]);
    counted_once(&s.service, "adapter_cad", &["id_reserved", "id_taken"]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_single_ingest_stream_of_earlier_versions_is_retired_once_routed() {
    let bus = TestBus::start().await;
    let legacy = bus
        .js
        .create_stream(jetstream::stream::Config {
            name: nats::LEGACY_STREAM_INGEST.into(),
            subjects: vec!["ingest.>".into()],
            ..Default::default()
        })
        .await
        .expect("the old stream");
    let consumer: jetstream::consumer::PullConsumer = legacy
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("linkbus-routers".into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .expect("the routers' durable");
    publish_raw(&bus.js, "ingest.public_service.sewer_issues", "sf311-1", "{}".into()).await;
    let err = nats::provision(&bus.js, &linkbus_tests::test_stream_settings()).await.expect_err("an unrouted report");
    assert!(err.to_string().contains("still holds 1 case reports no router has acknowledged"), "{err}");

    let mut batch = consumer.fetch().max_messages(1).messages().await.expect("fetch");
    let msg = tokio::time::timeout(WAIT, batch.next()).await.expect("in time").expect("one").expect("ok");
    msg.double_ack().await.expect("routed");
    nats::provision(&bus.js, &linkbus_tests::test_stream_settings()).await.expect("provisioned once all is routed");
    assert!(bus.js.get_stream(nats::LEGACY_STREAM_INGEST).await.is_err(), "the old stream is gone");
    for stream in nats::INGEST_STREAMS {
        bus.js.get_stream(stream).await.expect("a stream per system");
    }
}

/// What became of the emergency reports sent during a flood of public-service ones.
struct Flooded {
    /// Each emergency report's time from stored to routed, sorted.
    latencies: Vec<Duration>,
    /// Flood reports not yet routed when each emergency report was.
    flood_left: Vec<usize>,
    /// From the flood's first report stored to its last routed.
    drain: Duration,
}

/// Floods public service with `flood` reports, then sends `emergencies` emergency reports 50 ms
/// apart, through a service that serves emergency reports first or not.
async fn flood(emergency_first: bool, flood: usize, emergencies: usize) -> Flooded {
    let bus = TestBus::start().await;
    let mut config = bus.config();
    config.router.emergency_first = emergency_first;
    config.region.seed_volunteers = false;
    let service = bus.service(&config).await;
    let mut routed = bus.client.subscribe(subjects::case_event("*", "routed")).await.expect("subscribe");
    bus.client.flush().await.expect("flush");
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let seen = tokio::spawn(async move {
        let mut at = std::collections::HashMap::new();
        let mut flood_routed = 0;
        loop {
            let msg = tokio::select! {
                _ = stopped.cancelled() => return at,
                msg = routed.next() => match msg { Some(msg) => msg, None => return at },
            };
            let id = msg.subject.split('.').nth(1).unwrap_or_default().to_owned();
            if id.starts_with("flood-") {
                flood_routed += 1;
            }
            at.insert(id, (Instant::now(), flood_routed));
        }
    });
    let started = Instant::now();
    // In bursts, acks awaited after each (async-nats holds at most so many unacknowledged).
    for burst in (0..flood).collect::<Vec<_>>().chunks(500) {
        let mut acks = Vec::with_capacity(burst.len());
        for n in burst {
            let event = case(&format!("flood-{n}"), SourceSystem::PublicService, "noise_report", MISSION.0, MISSION.1);
            let subject = subjects::ingest(event.data.system, &event.data.category);
            let body = serde_json::to_vec(&event).expect("json");
            acks.push(nats::publish(&bus.js, subject, &event.id, body.into()).await.expect("publish"));
        }
        for ack in acks {
            ack.await.expect("stored");
        }
    }
    let mut sent = Vec::with_capacity(emergencies);
    for n in 0..emergencies {
        let event = case(&format!("fire-{n}"), SourceSystem::Emergency, "fire", MISSION.0, MISSION.1);
        publish_raw(
            &bus.js,
            &subjects::ingest(event.data.system, "fire"),
            &event.id,
            serde_json::to_vec(&event).expect("json").into(),
        )
        .await;
        sent.push((event.id, Instant::now()));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all = flood + emergencies;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while (service.state.stats.routed.load(std::sync::atomic::Ordering::Relaxed) as usize) < all {
        assert!(tokio::time::Instant::now() < deadline, "not all routed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.cancel();
    let at = seen.await.expect("the follower");
    service.stop().await;
    let drain =
        (0..flood).filter_map(|n| at.get(&format!("flood-{n}")).map(|(t, _)| *t - started)).max().unwrap_or_default();
    let mut latencies = Vec::new();
    let mut flood_left = Vec::new();
    for (id, stored) in sent {
        let (routed, flood_routed) = at.get(&id).copied().unwrap_or_else(|| panic!("{id} never seen routed"));
        latencies.push(routed.saturating_duration_since(stored));
        flood_left.push(flood - flood_routed);
    }
    latencies.sort();
    Flooded { latencies, flood_left, drain }
}

/// Emergency reports sent while thousands of complaints wait are routed at once when emergency
/// comes first: each while the flood is still being routed. Prints the latencies with and
/// without the priority (`cargo test … trust_ids::emergency -- --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emergency_reports_are_routed_first_during_a_flood_of_complaints() {
    const FLOOD: usize = 6000;
    const FIRES: usize = 20;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for emergency_first in [true, false] {
        let f = flood(emergency_first, FLOOD, FIRES).await;
        let (p50, max) = (f.latencies[FIRES / 2], f.latencies[FIRES - 1]);
        println!(
            "emergency_first = {emergency_first}: {FLOOD} public-service reports routed in {:.0} ms; {FIRES} fires \
             sent during it routed in p50 {:.1} ms, max {:.1} ms; flood reports still unrouted when each fire was: {:?}",
            ms(f.drain),
            ms(p50),
            ms(max),
            f.flood_left
        );
        if emergency_first {
            assert!(
                f.flood_left.iter().all(|left| *left > 0),
                "every fire routed while the flood still waited: {:?}",
                f.flood_left
            );
        }
    }
}
