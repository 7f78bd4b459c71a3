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

use std::time::Duration;

use async_nats::jetstream;
use linkbus::config::Config;
use linkbus::nats_access::NatsAuth;
use linkbus::nats_auth::{self, AuthOptions, Role};
use linkbus::service::{self, Service};
use linkbus_adapters::cad::CadConfig;
use linkbus_adapters::vocabulary::CategoryMap;
use linkbus_bus::nats::{HEADER_ORIGINAL_ID, HEADER_REASON_CODE, STREAM_DEADLETTER};
use linkbus_http::auth;
use linkbus_http::config::{ApiKey, ApiRole};
use linkbus_tests::nats_process::{NatsProcess, free_port};
use linkbus_tests::{WAIT, case, header, read_stream, sf_region, sf_region_dir};
use linkbus_wire::SourceSystem;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The CAD system's source key (source `/cad`).
const DISPATCH: &str = "k-sfdem-cad-5e0b71d3";
/// A dispatcher's key.
const DISPATCHER: &str = "k-dispatcher-li-8a41c2";
/// Mission District, San Francisco: fire station 7's.
const MISSION: (f64, f64) = (-122.4194, 37.7599);
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

        let mut config = Config::default();
        config.nats.url = Some(server.url());
        config.nats.auth = auth_for(&auth_dir, &Role::Service);
        config.region.dir = sf_region_dir();
        config.router.ack_wait_secs = 2;
        config.api.listen = "127.0.0.1:0".into();
        let key = |role, id: &str, key: &str, source: Option<&str>| ApiKey {
            role,
            id: id.into(),
            sha256: auth::hash_key(key),
            source: source.map(str::to_owned),
        };
        config.api.keys = vec![
            key(ApiRole::Source, "sfdem-cad", DISPATCH, Some("/cad")),
            key(ApiRole::Dispatcher, "li", DISPATCHER, None),
        ];
        config.adapters.cad =
            CadConfig { categories: CategoryMap::from_pairs([("STRUCTURE FIRE", "fire")]), ..Default::default() };
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
        let fire = json!({
            "kind": "new", "incident_id": incident, "type": "STRUCTURE FIRE", "priority": 1,
            "lon": MISSION.0, "lat": MISSION.1, "address": "2400 Mission St",
            "narrative": "Smoke from 2nd floor, elderly resident inside", "flags": ["persons_trapped"]
        });
        let response = self
            .http
            .post(format!("{}/api/adapters/cad", self.base))
            .bearer_auth(DISPATCH)
            .header("content-type", "application/json")
            .body(fire.to_string())
            .send()
            .await
            .expect("a response");
        let status = response.status().as_u16();
        (status, json_body(response).await)
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
