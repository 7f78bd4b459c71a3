//! The HTTP surface under load and abuse, on a real nats-server and real sockets: more idle
//! connections than the API allows (and than `linkbus up` has file descriptors for) do not keep
//! `/readyz` or the API from answering, and the cap is logged and counted; a connection that sends
//! no request head, or a body too slowly, is closed or answered 503 in time.

use std::io::{BufRead as _, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use linkbus::config::Config;
use linkbus::service::Service;
use linkbus_bus::nats;
use linkbus_http::auth::hash_key;
use linkbus_http::config::{ApiKey, ApiRole};
use linkbus_tests::{Running, TestBus, WAIT, sf_region, sf_region_dir};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const DISPATCHER: &str = "k-limits-dispatcher-2b7d9f1e4c6a8035";
/// The city's 311 app: the Open311 adapter's source key.
const APP: &str = "k-limits-open311-app-8e4c2a6f0b1d3957";

fn keys() -> Vec<ApiKey> {
    vec![
        ApiKey { role: ApiRole::Dispatcher, id: "ada".into(), sha256: hash_key(DISPATCHER), source: None },
        ApiKey {
            role: ApiRole::Source,
            id: "sf-311-app".into(),
            sha256: hash_key(APP),
            source: Some("/open311".into()),
        },
    ]
}

/// An Open311 request form (GeoReport v2), with `key` as its `api_key` if given.
fn open311_form(key: Option<&str>) -> String {
    let key = key.map(|k| format!("api_key={k}&")).unwrap_or_default();
    format!("{key}service_code=SEWER&lat=37.7599673&long=-122.4236412&description=Sewer+backing+up")
}

/// A service on a fresh bus with the test keys (and `tune` applied to its configuration), its
/// API served on a real socket within `[api]`'s limits, as `linkbus up` serves it.
struct Served {
    bus: TestBus,
    service: Service,
    base: String,
    stop: CancellationToken,
    /// What its HTTP server counts into.
    registry: prometheus::Registry,
    http: reqwest::Client,
}

impl Served {
    async fn start(tune: impl FnOnce(&mut Config)) -> Self {
        let bus = TestBus::start().await;
        let mut config = bus.config();
        config.api.keys = keys();
        tune(&mut config);
        let service = bus.service(&config).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let app = linkbus::up::api_app(&config, &sf_region(), &service).expect("app");
        let registry = prometheus::Registry::new();
        let limits = linkbus_http::server::Limits::of(&config.api);
        let server = linkbus_http::Server::new(limits, &registry).expect("server");
        let stop = CancellationToken::new();
        tokio::spawn(server.serve(listener, app, stop.clone().cancelled_owned()));
        let http = reqwest::Client::builder().timeout(WAIT).build().expect("client");
        Self { bus, service, base, stop, registry, http }
    }

    async fn stop(self) {
        self.stop.cancel();
        self.service.stop().await;
    }
}

/// `linkbus up` on `bus` with at most `open_files` file descriptors (`ulimit -n`), the API on a
/// free port with `api` appended to its `[api]`; its API address and every line of its stderr.
fn start_linkbus(
    bus: &TestBus,
    dir: &std::path::Path,
    open_files: u32,
    api: &str,
) -> (Running, String, Arc<Mutex<Vec<String>>>) {
    let config = linkbus_tests::write_config(
        dir,
        &format!(
            "[nats]\nurl = \"{}\"\n[region]\ndir = \"{}\"\n[api]\nlisten = \"127.0.0.1:0\"\n{api}\n\
             [[api.keys]]\nrole = \"dispatcher\"\nid = \"ada\"\nsha256 = \"{}\"\n",
            bus.server.url(),
            sf_region_dir().display(),
            hash_key(DISPATCHER),
        ),
    );
    let mut child = Command::new("sh")
        .args(["-c", &format!("ulimit -n {open_files} && exec \"$0\" \"$@\"")])
        .arg(env!("CARGO_BIN_EXE_linkbus-under-test"))
        .args(["up", "--config"])
        .arg(&config)
        .env_remove("LINKBUS_NATS_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("linkbus up starts");
    let stderr = child.stderr.take().expect("stderr");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let kept = lines.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("linkbus is up") {
                let _ = tx.send(line.clone());
            }
            kept.lock().expect("lock").push(line);
        }
    });
    let running = Running(child);
    let announced = linkbus_tests::Announcement(rx.recv_timeout(WAIT).expect("linkbus up announces that it is up"));
    let api = announced.api().to_owned();
    (running, api, lines)
}

/// The value of an unlabelled metric (or of one label set, written as in the text format).
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in the metrics"))
}

/// The finding: with 1,024 open files, about 1,100 idle keyless connections stopped `/readyz`, the
/// adapters and the console. Here `linkbus up` has 256 open files and allows 100 connections;
/// 400 idle connections are opened (more than both), and `/readyz` and the API still answer at
/// once: each new connection closes an idle one. The cap is logged and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_beyond_the_limit_do_not_lock_out_readyz_and_the_api() {
    let bus = TestBus::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    // A header timeout longer than the test: the idle connections are held, not timed out.
    let (_linkbus, api, log) = start_linkbus(&bus, dir.path(), 256, "max_connections = 100\nheader_timeout_secs = 300");
    let addr: std::net::SocketAddr = api.parse().expect("an address");
    // A server out of file descriptors stops accepting, and connections beyond the kernel's
    // backlog then time out: those are left out.
    let idle: Vec<TcpStream> =
        (0..400).filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()).collect();
    assert!(idle.len() >= 300, "only {} idle connections", idle.len());
    // Let the server accept them all (the kernel holds them in the backlog until then).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("client");
    let ready = http.get(format!("http://{api}/readyz")).send().await.expect("/readyz answers");
    assert_eq!(ready.status(), 200);
    let cases =
        http.get(format!("http://{api}/api/cases")).bearer_auth(DISPATCHER).send().await.expect("the API answers");
    assert_eq!(cases.status(), 200);
    let metrics = http.get(format!("http://{api}/metrics")).send().await.expect("metrics").text().await.expect("text");
    assert!(metric(&metrics, "linkbus_http_connections_open") <= 100.0, "{metrics}");
    // Each connection beyond the cap closed an idle one (some of the 400 may not have connected).
    let evicted = metric(&metrics, "linkbus_http_connections_evicted_total");
    assert!(evicted >= (idle.len() - 100) as f64, "{} idle connections, {evicted} evicted", idle.len());
    assert_eq!(metric(&metrics, "linkbus_http_connections_refused_total"), 0.0);
    assert!(
        log.lock().expect("lock").iter().any(|l| l.contains("HTTP connection limit reached")),
        "reaching the cap is logged"
    );
    // The oldest idle connections were closed by the server.
    let mut first = &idle[0];
    first.set_read_timeout(Some(WAIT)).expect("timeout");
    assert_eq!(first.read(&mut [0u8; 16]).expect("closed, not reset"), 0, "the first idle connection was closed");
    drop(idle);
}

/// A connection that sends no request head, or only part of one, is closed after
/// `header_timeout_secs`, and so is a keep-alive connection idle that long after its answer; a
/// request whose body trickles in is answered 503 after `request_timeout_secs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_slow_clients_are_timed_out() {
    let served = Served::start(|config| {
        config.api.header_timeout_secs = 1;
        config.api.request_timeout_secs = 1;
    })
    .await;
    let addr = served.base.trim_start_matches("http://").to_owned();
    let closed_within = |mut stream: TcpStream, what: &str| {
        let started = Instant::now();
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let waited = started.elapsed();
        assert!(waited < Duration::from_secs(4), "{what}: closed after {waited:?}");
        String::from_utf8_lossy(&answer).into_owned()
    };
    let silent = TcpStream::connect(&addr).expect("connect");
    assert_eq!(closed_within(silent, "a silent connection"), "");
    let mut partial = TcpStream::connect(&addr).expect("connect");
    partial.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").expect("write");
    closed_within(partial, "a partial request head");
    let mut kept_alive = TcpStream::connect(&addr).expect("connect");
    kept_alive.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
    let answer = closed_within(kept_alive, "an idle keep-alive connection");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let mut slow = TcpStream::connect(&addr).expect("connect");
    let head = format!(
        "POST /api/cases/x/actions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {DISPATCHER}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"action\""
    );
    slow.write_all(head.as_bytes()).expect("write");
    let answer = closed_within(slow, "a body sent too slowly");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    let metrics = linkbus_http::api::render(&served.registry);
    assert!(metric(&metrics, "linkbus_http_timeouts_total{kind=\"header\"}") >= 3.0, "{metrics}");
    assert_eq!(metric(&metrics, "linkbus_http_timeouts_total{kind=\"request\"}"), 1.0, "{metrics}");
    served.stop().await;
}

/// The finding: 70 requests without a key made a valid source key's follow-up and its Open311
/// POST answer 429, as the residents' limit ran per address before the key was looked at. Now a
/// key has its own budget, and requests without a valid one share their address's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_requests_cannot_spend_a_keys_budget() {
    let served = Served::start(|_| {}).await;
    let (base, http) = (&served.base, &served.http);
    let post = |form: String, bearer: Option<&str>| {
        let mut request = http
            .post(format!("{base}/open311/v2/requests.json"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form);
        if let Some(key) = bearer {
            request = request.bearer_auth(key);
        }
        async move { request.send().await.expect("answer").status().as_u16() }
    };
    let follow_up = |key: Option<&str>| {
        let mut request = http.get(format!("{base}/api/requests/4292128"));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        async move { request.send().await.expect("answer").status().as_u16() }
    };
    let mut statuses = Vec::new();
    for n in 0..70 {
        statuses.push(match n % 3 {
            0 => follow_up(None).await,
            1 => follow_up(Some("guess")).await,
            _ => post(open311_form(Some("guess")), None).await,
        });
    }
    assert!(statuses[..60].iter().all(|s| [401, 403].contains(s)), "{statuses:?}");
    assert!(statuses[60..].iter().all(|&s| s == 429), "the keyless budget is spent: {statuses:?}");
    // The source key's follow-up and its Open311 posts (key in the form, or in the header).
    assert_eq!(follow_up(Some(APP)).await, 404, "no such request, not 429");
    assert_eq!(post(open311_form(Some(APP)), None).await, 201);
    assert_eq!(post(open311_form(None), Some(APP)).await, 201);
    // Still refused without a key.
    assert_eq!(post(open311_form(None), None).await, 429);
    served.stop().await;
}

/// The finding: `POST /api/cases/%3E/actions` (and `a.*.%3E`) answered 503 "case store is
/// unavailable", as the id went to the bucket as a key. What cannot be a case id is 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_case_id_is_not_found_not_unavailable() {
    let served = Served::start(|_| {}).await;
    let (base, http) = (&served.base, &served.http);
    for id in ["%3E", "a.*.%3E", "a.b", "%2A", &"x".repeat(200)] {
        let act = http
            .post(format!("{base}/api/cases/{id}/actions"))
            .bearer_auth(DISPATCHER)
            .header("content-type", "application/json")
            .body(r#"{"action": "accept"}"#)
            .send()
            .await
            .expect("answer");
        assert_eq!(act.status(), 404, "POST /api/cases/{id}/actions");
        let body: Value = serde_json::from_slice(&act.bytes().await.expect("body")).expect("an error body");
        assert_eq!(body["code"], "not_found");
        let read = http.get(format!("{base}/api/cases/{id}")).bearer_auth(DISPATCHER).send().await.expect("answer");
        assert_eq!(read.status(), 404, "GET /api/cases/{id}");
    }
    served.stop().await;
}

/// `linkbus config check` warns of an API other machines can reach without a TLS proxy in front.
#[test]
fn config_check_warns_of_an_api_reachable_without_tls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let check = |api: &str| {
        let config = linkbus_tests::write_config(
            dir.path(),
            &format!("[region]\ndir = \"{}\"\n[api]\n{api}\n", sf_region_dir().display()),
        );
        let out = Command::new(env!("CARGO_BIN_EXE_linkbus-under-test"))
            .args(["config", "check"])
            .arg(&config)
            .output()
            .expect("runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let warned = check("listen = \"0.0.0.0:8080\"");
    assert!(warned.contains("warning: api.listen = \"0.0.0.0:8080\" is reachable from other machines"), "{warned}");
    assert!(!check("listen = \"127.0.0.1:8080\"").contains("api.listen"));
    assert!(!check("listen = \"0.0.0.0:8080\"\nbehind_tls_proxy = true").contains("api.listen"));
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
async fn store_records(served: &Served, records: &[Value]) {
    let (bus, service) = (&served.bus, &served.service);
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

/// `GET {base}{path}` with `key`: the status and the JSON body (null if none).
async fn get_json(http: &reqwest::Client, base: &str, path: String, key: &str) -> (u16, Value) {
    let response = http.get(format!("{base}{path}")).bearer_auth(key).send().await.expect("answer");
    let status = response.status().as_u16();
    (status, serde_json::from_slice::<Value>(&response.bytes().await.expect("body")).unwrap_or(Value::Null))
}

/// `GET /api/cases` a page at a time: each page the next after its cursor, no case twice or
/// left out. Closed cases leave the hot set `closed_retention_secs` after their last change (at
/// once, those read at start long after): gone from the default listing, still read by id, by
/// `state=closed` and `archived=true`, by their source's id, and counted in the department
/// figures; a late rating that reopens one brings it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_follow_their_cursor_and_closed_cases_leave_the_hot_set_not_the_book() {
    const SF311_APP: &str = "k-limits-sf311-app-5c3e7a9b1d2f4680";
    let served = Served::start(|config| {
        config.api.keys.push(ApiKey {
            role: ApiRole::Source,
            id: "sf311-app".into(),
            sha256: hash_key(SF311_APP),
            source: Some("/sf311".into()),
        });
        config.lifecycle.closed_retention_secs = 2;
    })
    .await;
    let (base, http, service) = (&served.base, &served.http, &served.service);
    let day = Duration::from_secs(24 * 3600);
    let mut records: Vec<Value> =
        (0..5).map(|n| record(&format!("open-{n}"), Duration::from_secs(60 + n), "accepted")).collect();
    records.push(record("closed-long-ago", 2 * day, "closed"));
    records.push(record("closed-just-now", Duration::ZERO, "closed"));
    store_records(&served, &records).await;
    let get = |path: String, key: &'static str| get_json(http, base, path, key);
    let listed = |list: &Value| -> Vec<String> {
        list["cases"]
            .as_array()
            .expect("cases")
            .iter()
            .map(|c| c["case_id"].as_str().expect("an id").to_owned())
            .collect()
    };

    // Pages of two: newest first, each after the last one's cursor.
    let mut pages = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = get(format!("/api/cases?state=accepted&limit=2{cursor}"), DISPATCHER).await;
        assert_eq!(status, 200, "{page}");
        pages.push(listed(&page));
        match page["next"].as_str() {
            Some(next) => {
                assert_eq!(page["more"], true);
                cursor = format!("&cursor={next}");
            }
            None => break,
        }
    }
    assert_eq!(pages, [vec!["open-0", "open-1"], vec!["open-2", "open-3"], vec!["open-4"]]);
    let (status, bad) = get("/api/cases?cursor=nonsense".into(), DISPATCHER).await;
    assert_eq!((status, bad["code"].as_str()), (422, Some("invalid")));

    // The case closed long ago left memory when it was read; the one closed now leaves within
    // seconds.
    let (_, all) = get("/api/cases".into(), DISPATCHER).await;
    assert!(!listed(&all).contains(&"closed-long-ago".to_owned()), "{all}");
    assert!(listed(&all).contains(&"closed-just-now".to_owned()), "{all}");
    let deadline = Instant::now() + WAIT;
    while service.cases.get("closed-just-now").is_some() {
        assert!(Instant::now() < deadline, "the closed case never left memory");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, all) = get("/api/cases".into(), DISPATCHER).await;
    assert_eq!(listed(&all), ["open-0", "open-1", "open-2", "open-3", "open-4"]);
    // Not lost: by a filter that asks for them, by id, by the source's id, in the figures.
    let (_, closed) = get("/api/cases?state=closed".into(), DISPATCHER).await;
    assert_eq!(listed(&closed), ["closed-just-now", "closed-long-ago"]);
    let (_, everything) = get("/api/cases?archived=true&limit=3".into(), DISPATCHER).await;
    assert_eq!(listed(&everything), ["closed-just-now", "open-0", "open-1"]);
    let (status, one) = get("/api/cases/closed-long-ago".into(), DISPATCHER).await;
    assert_eq!((status, one["state"].as_str()), (200, Some("closed")));
    let (status, follow_up) = get("/api/requests/closed-long-ago".into(), SF311_APP).await;
    assert_eq!((status, follow_up["state"].as_str()), (200, Some("closed")), "{follow_up}");
    let (_, stats) = get("/api/stats/departments".into(), DISPATCHER).await;
    assert_eq!(stats["departments"][0]["cases"], 7, "{stats}");

    // A rating that says it is not solved reopens it: back in memory and in the listing.
    let rated = http
        .post(format!("{base}/api/requests/closed-long-ago/rating"))
        .bearer_auth(SF311_APP)
        .header("content-type", "application/json")
        .body(r#"{"score": 1, "solved": false}"#)
        .send()
        .await
        .expect("answer");
    assert_eq!(rated.status(), 200);
    assert!(service.cases.get("closed-long-ago").is_some_and(|r| r.state.is_open()));
    let (_, all) = get("/api/cases".into(), DISPATCHER).await;
    assert!(listed(&all).contains(&"closed-long-ago".to_owned()), "{all}");
    let (_, stats) = get("/api/stats/departments".into(), DISPATCHER).await;
    assert_eq!(
        (stats["departments"][0]["cases"].as_u64(), stats["departments"][0]["not_solved"].as_u64()),
        (Some(7), Some(1))
    );
    served.stop().await;
}

/// What `GET /api/cases?limit=1` costs with 3,000 cases in the book (printed: `cargo test -p
/// linkbus-tests --test it -- http_limits::listing_cost --ignored --nocapture`), and how
/// `/healthz` fares while 50 such requests run at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run it by name"]
async fn listing_cost() {
    let served = Served::start(|_| {}).await;
    let (base, http) = (&served.base, &served.http);
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
    store_records(&served, &records).await;
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
    println!("GET /api/cases?limit=1, 3000 cases, 200 sequential: median {:?}, p90 {:?}", times[100], times[180]);
    let parallel = futures::future::join_all((0..50).map(|_| list("/api/cases?limit=1".into())));
    let health = async {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let started = Instant::now();
        http.get(format!("{base}/healthz")).send().await.expect("answer");
        started.elapsed()
    };
    let (mut parallel, health) = tokio::join!(parallel, health);
    parallel.sort();
    println!("50 in parallel: median {:?}, slowest {:?}; /healthz meanwhile {health:?}", parallel[25], parallel[49]);
    served.stop().await;
}

/// `GET /api/cases?q=`: a search by a source's id, by a phone's digits (punctuated, or only the
/// last four) and by address finds the case from the book's index, a closed case that left
/// memory too (read from the bucket); a department finds only its own cases, and its repeats
/// are only its own; a query too long, or without two letters or digits, is refused (422).
/// `GET /api/cases/{id}/repeats` lists the other cases at the same place or address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_finds_cases_by_ids_phone_and_address_archived_ones_too_but_not_another_departments() {
    const SEWER: &str = "k-search-sewer-3a5c7e9b1d2f4608";
    const DPW: &str = "k-search-dpw-8f6d4b2a0c9e7153";
    let served = Served::start(|config| {
        for (id, key) in [("puc-sewer-ops", SEWER), ("dpw-ops-queue", DPW)] {
            config.api.keys.push(ApiKey {
                role: ApiRole::Department,
                id: id.into(),
                sha256: hash_key(key),
                source: None,
            });
        }
        config.lifecycle.closed_retention_secs = 2;
    })
    .await;
    let (base, http, service) = (&served.base, &served.http, &served.service);
    let caller = |id: &str, age: Duration, state: &str, department: &str, source_id: &str, phone: &str| {
        let mut r = record(id, age, state);
        r["case"]["source_id"] = source_id.into();
        r["reports"][0]["source_id"] = source_id.into();
        r["case"]["address"] = "朝阳区建国路88号".into();
        r["case"]["reporter"] = json!({ "name": "王芳", "phone": phone });
        r["departments"] = json!([department]);
        r["accepted_by"] = department.into();
        r
    };
    let day = Duration::from_secs(24 * 3600);
    store_records(
        &served,
        &[
            caller("search-old", 2 * day, "closed", "puc-sewer-ops", "SR-2026-0007", "135 1111 2222"),
            caller("search-dpw", Duration::from_secs(120), "accepted", "dpw-ops-queue", "SR-2026-0099", "13900008000"),
            caller("search-a", Duration::from_secs(60), "accepted", "puc-sewer-ops", "SR-2026-0042", "13800138000"),
        ],
    )
    .await;
    assert!(service.cases.get("search-old").is_none(), "closed two days ago: it left memory when read");
    let get = |path: String, key: &'static str| get_json(http, base, path, key);
    let found = |path: &str, key: &'static str| {
        let answer = get(path.to_owned(), key);
        async move {
            let (status, list) = answer.await;
            assert_eq!(status, 200, "{list}");
            let cases = list["cases"].as_array().expect("cases");
            cases.iter().map(|c| c["case_id"].as_str().expect("an id").to_owned()).collect::<Vec<_>>()
        }
    };

    // A dispatcher: by the source's id (its parts too), the phone whole and punctuated, its last
    // four digits, the address; the archived case among them.
    assert_eq!(found("/api/cases?q=SR-2026-0042", DISPATCHER).await, ["search-a"]);
    assert_eq!(found("/api/cases?q=sr%202026%200042", DISPATCHER).await, ["search-a"]);
    assert_eq!(found("/api/cases?q=138-0013%208000", DISPATCHER).await, ["search-a"]);
    assert_eq!(found("/api/cases?q=8000", DISPATCHER).await, ["search-a", "search-dpw"]);
    assert_eq!(found("/api/cases?q=2222", DISPATCHER).await, ["search-old"], "archived, found by phone");
    assert_eq!(found("/api/cases?q=0007", DISPATCHER).await, ["search-old"], "archived, found by source id");
    assert_eq!(found("/api/cases?q=建国路88", DISPATCHER).await, ["search-a", "search-dpw", "search-old"]);
    assert_eq!(found("/api/cases?q=建国路88&state=accepted&limit=1", DISPATCHER).await, ["search-a"]);
    let (_, page) = get("/api/cases?q=建国路88&limit=2".into(), DISPATCHER).await;
    let next = page["next"].as_str().expect("a next page");
    assert_eq!(found(&format!("/api/cases?q=建国路88&limit=2&cursor={next}"), DISPATCHER).await, ["search-old"]);
    assert!(found("/api/cases?q=13800138001", DISPATCHER).await.is_empty());

    // A department: its own cases only, whatever it searches.
    assert_eq!(found("/api/cases?q=8000", SEWER).await, ["search-a"]);
    assert!(found("/api/cases?q=SR-2026-0099", SEWER).await.is_empty(), "another department's case");
    assert_eq!(found("/api/cases?q=SR-2026-0099", DPW).await, ["search-dpw"]);
    assert_eq!(found("/api/cases?q=2222", SEWER).await, ["search-old"]);

    // Refused: too long, nothing to search for.
    for q in ["x".repeat(65), " - ".into(), "a".into()] {
        let (status, error) = get(format!("/api/cases?q={q}"), DISPATCHER).await;
        assert_eq!((status, error["code"].as_str()), (422, Some("invalid")), "{q:?}: {error}");
        assert!(error["error"].as_str().is_some_and(|e| e.starts_with("q: not a search")), "{error}");
    }

    // Repeats: the same address and place, within 90 days; a department sees only its own.
    let repeats = |id: &str, key: &'static str| {
        let answer = get(format!("/api/cases/{id}/repeats"), key);
        async move {
            let (status, list) = answer.await;
            let ids: Vec<String> = list["cases"]
                .as_array()
                .map(|cases| cases.iter().map(|c| c["case_id"].as_str().expect("an id").to_owned()).collect())
                .unwrap_or_default();
            (status, ids, list)
        }
    };
    let (status, ids, list) = repeats("search-a", DISPATCHER).await;
    assert_eq!((status, ids), (200, vec!["search-dpw".to_owned(), "search-old".to_owned()]), "{list}");
    assert_eq!((list["radius_m"].as_f64(), list["days"].as_i64()), (Some(50.0), Some(90)));
    assert_eq!(repeats("search-a", SEWER).await.1, ["search-old"]);
    assert_eq!(repeats("search-a", DPW).await.0, 403);
    assert_eq!(repeats("search-none", DISPATCHER).await.0, 404);
    served.stop().await;
}
