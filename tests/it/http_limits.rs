//! The HTTP surface under load and abuse, on a real nats-server and real sockets.

use std::time::{Duration, Instant};

use linkbus::config::Config;
use linkbus::service::Service;
use linkbus_bus::nats;
use linkbus_http::auth::hash_key;
use linkbus_http::config::{ApiKey, ApiRole};
use linkbus_tests::{TestBus, WAIT, sf_region};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const DISPATCHER: &str = "k-limits-dispatcher-2b7d9f1e4c6a8035";

fn keys() -> Vec<ApiKey> {
    vec![ApiKey { role: ApiRole::Dispatcher, id: "ada".into(), sha256: hash_key(DISPATCHER), source: None }]
}

/// Serves the API of `service` as `linkbus up` does, on a real socket; its base URL.
async fn serve(config: &Config, service: &Service) -> (String, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let app = linkbus::up::api_app(config, &sf_region(), service).expect("app");
    let stop = CancellationToken::new();
    tokio::spawn(linkbus_http::serve(listener, app, stop.clone().cancelled_owned()));
    (base, stop)
}

/// The committed example record (accepted, in the Mission) as case `id`, created `age` ago, in
/// `state`.
fn record(id: &str, age: Duration, state: &str) -> Value {
    let mut r: Value =
        serde_json::from_str(include_str!("../../docs/examples/case-record.json")).expect("the example record");
    let at = (jiff::Timestamp::now() - jiff::SignedDuration::try_from(age).expect("an age")).to_string();
    r["case_id"] = id.into();
    r["state"] = state.into();
    r["created_at"] = at.clone().into();
    r["updated_at"] = at.into();
    r["case"]["source_id"] = id.into();
    r["reports"][0]["source_id"] = id.into();
    r["reports"][0]["report_id"] = id.into();
    for deadline in ["accept_by", "resolve_by"] {
        r.as_object_mut().expect("an object").remove(deadline);
    }
    r
}

/// Writes `records` straight into the case book's bucket (as another replica would have stored
/// them) and waits until the book holds the last one.
async fn store_records(bus: &TestBus, service: &Service, records: &[Value]) {
    let store = bus.js.get_key_value(nats::BUCKET_CASES).await.expect("the cases bucket");
    for r in records {
        let id = r["case_id"].as_str().expect("an id");
        let body = serde_json::to_vec(&json!({ "record": r })).expect("JSON");
        store.put(id, body.into()).await.expect("stored");
    }
    let last = records.last().and_then(|r| r["case_id"].as_str()).expect("records");
    let deadline = Instant::now() + WAIT;
    while service.cases.get(last).is_none() {
        assert!(Instant::now() < deadline, "the book never read the records");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What `GET /api/cases?limit=1` costs with 3,000 cases in the book (printed: `cargo test -p
/// linkbus-tests --test it -- http_limits::listing_cost --ignored --nocapture`), and how
/// `/healthz` fares while 50 such requests run at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run it by name"]
async fn listing_cost() {
    let bus = TestBus::start().await;
    let mut config = bus.config();
    config.api.keys = keys();
    let service = bus.service(&config).await;
    let records: Vec<Value> = (0..3000)
        .map(|i| {
            let state = match i % 3 {
                0 => "accepted",
                1 => "closed",
                _ => "in_progress",
            };
            record(&format!("load-{i:05}"), Duration::from_secs(3000 - i), state)
        })
        .collect();
    store_records(&bus, &service, &records).await;
    let (base, stop) = serve(&config, &service).await;
    let http = reqwest::Client::builder().timeout(WAIT).build().expect("client");
    let list = |path: String| {
        let request = http.get(format!("{base}{path}")).bearer_auth(DISPATCHER);
        async move {
            let started = Instant::now();
            let response = request.send().await.expect("answer");
            assert_eq!(response.status(), 200);
            response.bytes().await.expect("body");
            started.elapsed()
        }
    };
    let mut times = Vec::new();
    for _ in 0..200 {
        times.push(list("/api/cases?limit=1".into()).await);
    }
    times.sort();
    println!(
        "GET /api/cases?limit=1, 3000 cases, 200 sequential: median {:?}, p90 {:?}",
        times[100],
        times[180]
    );
    let parallel = futures::future::join_all((0..50).map(|_| list("/api/cases?limit=1".into())));
    let health = async {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let started = Instant::now();
        http.get(format!("{base}/healthz")).send().await.expect("answer");
        started.elapsed()
    };
    let (mut parallel, health) = tokio::join!(parallel, health);
    parallel.sort();
    println!(
        "50 in parallel: median {:?}, slowest {:?}; /healthz meanwhile {health:?}",
        parallel[25],
        parallel[49]
    );
    stop.cancel();
    service.stop().await;
}
