//! Grid-management reports on a real nats-server with the service in process and the API served as
//! `linkbus up` serves it: a patrol app's CSV batch with good and bad rows (each row's case id or
//! error back, bad rows kept in `deadletter.adapter_grid` with their row number, good rows routed as
//! management cases); the same batch again is no new case; a JSON-lines batch; one report over
//! NATS as a request, answered with its case id, and a bad one answered with the reason.

use linkbus::config::Config;
use linkbus::service::Service;
use linkbus_adapters::grid::{BATCH_PATH, BatchResult, Outcome, SUBJECT};
use linkbus_bus::nats;
use linkbus_http::auth;
use linkbus_http::config::{ApiKey, ApiRole};
use linkbus_tests::{TestBus, WAIT, header, read_stream, sf_region, wait_for_case};
use linkbus_wire::SourceSystem;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The patrol app of the grid-management centre.
const PATROL: &str = "k-grid-patrol-2c4e6a8b0d1f3579";
/// The 311 app: a source key, for another source.
const APP: &str = "k-open311-app-4b1d8e0c2a6f9357";

fn keys() -> Vec<ApiKey> {
    let key = |id: &str, key: &str, source: &str| ApiKey {
        role: ApiRole::Source,
        id: id.into(),
        sha256: auth::hash_key(key),
        source: Some(source.into()),
    };
    vec![key("grid-centre", PATROL, "/grid"), key("sf-311-app", APP, "/open311")]
}

async fn serve(config: &Config, service: &Service) -> (String, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let app = linkbus::up::api_app(config, &sf_region(), service).expect("app");
    let stop = CancellationToken::new();
    tokio::spawn(linkbus_http::serve(listener, app, stop.clone().cancelled_owned()));
    (base, stop)
}

async fn upload(base: &str, key: Option<&str>, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    let http = reqwest::Client::builder().timeout(WAIT).build().expect("client");
    let mut request = http.post(format!("{base}{BATCH_PATH}")).header("content-type", content_type).body(body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = tokio::time::timeout(WAIT, request.send()).await.expect("in time").expect("response");
    let status = response.status().as_u16();
    (status, serde_json::from_slice(&response.bytes().await.expect("body")).expect("JSON"))
}

/// A patrol app's export: a manhole cover, exposed rubbish, a burst main, and five bad rows.
fn batch() -> Vec<u8> {
    let mut csv = b"report_id,kind,code,lon,lat,datum,address,description,reporter,phone,reported_at,priority\n\
        GX-0001,component,0102,-122.4194,37.7599,,Mission St & 20th St,sewage cover missing,Zhang San,555-0101,2026-11-27T08:00:00+08:00,2\n\
        GX-0002,event,0102,-122.4330,37.7793,,Fillmore St,exposed rubbish by the kerb,Li Si,,,\n\
        GX-0003,event,0402,-122.4089,37.7837,wgs84,Market St,water main burst,Wang Wu,,,\n\
        GX-0004,event,0102,-122.4194,91,,,,,,,\n\
        GX-0005,event,0102,-122.4194,NaN,,,,,,,\n\
        GX-0006,alarm,0102,-122.4194,37.7599,,,,,,,\n\
        GX-0007,event,0102,-122.4194\n"
        .to_vec();
    csv.extend_from_slice(b"GX-\xff\xfe,event,0102,-122.4194,37.7599,,,,,,,\n");
    csv
}

#[tokio::test]
async fn a_patrol_batch_and_a_nats_report_become_management_cases() {
    let bus = TestBus::start().await;
    let mut config = bus.config();
    config.api.keys = keys();
    let service = bus.service(&config).await;
    let (base, stop) = serve(&config, &service).await;

    // Only the grid system's key may upload.
    let (status, error) = upload(&base, None, "text/csv", batch()).await;
    assert_eq!((status, error["code"].clone()), (401, json!("unauthorized")));
    let (status, error) = upload(&base, Some(APP), "text/csv", batch()).await;
    assert_eq!((status, error["code"].clone()), (403, json!("forbidden")));

    // The batch: good rows taken, bad ones refused with their row number and reason.
    let (status, answer) = upload(&base, Some(PATROL), "text/csv; charset=utf-8", batch()).await;
    assert_eq!(status, 200, "{answer}");
    let result: BatchResult = serde_json::from_value(answer.clone()).expect("a batch result");
    assert_eq!((result.accepted, result.duplicates, result.rejected), (3, 0, 5), "{answer}");
    let accepted: Vec<&str> = result
        .rows
        .iter()
        .filter_map(|o| match o {
            Outcome::Accepted { case_id, .. } => Some(case_id.as_str()),
            Outcome::Refused { .. } => None,
        })
        .collect();
    assert_eq!(accepted, ["grid-GX-0001", "grid-GX-0002", "grid-GX-0003"]);
    let refusal = |row: usize| {
        result.rows.iter().find_map(|o| match o {
            Outcome::Refused { row: r, error } if *r == row => Some(error.clone()),
            _ => None,
        })
    };
    assert!(refusal(4).is_some_and(|e| e.contains("91")), "{answer}");
    assert!(refusal(5).is_some_and(|e| e.contains("NaN")), "{answer}");
    assert!(refusal(6).is_some_and(|e| e.contains("alarm")), "{answer}");
    assert!(refusal(7).is_some_and(|e| e.contains("CSV")), "{answer}");
    assert!(refusal(8).is_some_and(|e| e.contains("UTF-8")), "{answer}");

    // Each bad row is kept with its number and reason.
    let letters = read_stream(&bus.js, nats::STREAM_DEADLETTER, "deadletter.adapter_grid", 5).await;
    let reasons: Vec<String> = letters.iter().filter_map(|m| header(m, nats::HEADER_REASON)).collect();
    assert_eq!(reasons.len(), 5, "{reasons:?}");
    for row in 4..=8 {
        assert!(reasons.iter().any(|r| r.starts_with(&format!("row {row}: "))), "row {row}: {reasons:?}");
    }
    let lat91 =
        letters.iter().find(|m| header(m, nats::HEADER_REASON).is_some_and(|r| r.starts_with("row 4"))).expect("row 4");
    assert!(String::from_utf8_lossy(&lat91.payload).contains("GX-0004"), "the row itself is kept");

    // The good rows are routed as management cases, with the classification's category.
    let cover = wait_for_case(&service, "grid-GX-0001", "routed", |_| true).await;
    assert_eq!((cover.case.system, cover.case.category.as_str()), (SourceSystem::Management, "sewer_issues"));
    assert_eq!((cover.case.priority, cover.departments.clone()), (2, vec!["puc-sewer-ops".to_owned()]));
    assert_eq!(cover.case.reported_at.to_string(), "2026-11-27T00:00:00Z");
    let rubbish = wait_for_case(&service, "grid-GX-0002", "routed", |_| true).await;
    assert_eq!(rubbish.case.category, "street_and_sidewalk_cleaning");
    let burst = wait_for_case(&service, "grid-GX-0003", "routed", |_| true).await;
    assert_eq!(burst.case.category, "sewer_issues", "a subclass mapped on its own");
    let ingested = read_stream(&bus.js, nats::STREAM_INGEST_MANAGEMENT, "ingest.management.>", 3).await;
    assert_eq!(ingested.len(), 3);

    // The same file again: every good row a duplicate, nothing new on the bus.
    let (status, answer) = upload(&base, Some(PATROL), "text/csv", batch()).await;
    assert_eq!(status, 200);
    assert_eq!((answer["accepted"].clone(), answer["duplicates"].clone()), (json!(3), json!(3)), "{answer}");
    assert_eq!(read_stream(&bus.js, nats::STREAM_INGEST_MANAGEMENT, "ingest.management.>", 3).await.len(), 3);

    // JSON lines, one unknown class: routed to the catch-all, flagged.
    let lines = concat!(
        r#"{"report_id":"GX-0100","kind":"事件","code":"0901","lon":-122.4783,"lat":37.7434,"description":"unknown class"}"#,
        "\n\n",
        r#"{"report_id":"GX-0101","kind":"event","code":"0102","lon":-122.4783,"lat":37.7434,"colour":"red"}"#,
        "\n"
    );
    let (status, answer) = upload(&base, Some(PATROL), "application/x-ndjson", lines.as_bytes().to_vec()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        linkbus_tests::untracked(&answer["rows"][0]),
        json!({"row": 1, "case_id": "grid-GX-0100", "duplicate": false})
    );
    assert_eq!(answer["rows"][1]["row"], 3, "line numbers count blank lines");
    assert!(answer["rows"][1]["error"].as_str().is_some_and(|e| e.contains("colour")), "{answer}");
    let unknown = wait_for_case(&service, "grid-GX-0100", "routed", |_| true).await;
    assert_eq!(
        (unknown.case.category.as_str(), unknown.case.flags.clone()),
        ("uncategorized", vec!["unmapped_category".to_owned()])
    );

    // The same from the command line, as an operator uploads a file by hand.
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("patrol.csv");
    std::fs::write(
        &file,
        "report_id,kind,code,lon,lat\nGX-0300,event,0201,-122.4180,37.7750\nGX-0301,event,0201,181,37.7750\n",
    )
    .expect("write");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_linkbus-under-test"))
        .args(["grid-upload", "--api", &base])
        .arg(&file)
        .env("LINKBUS_API_KEY", PATROL)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(WAIT, output).await.expect("done in time").expect("runs");
    assert_eq!(output.status.code(), Some(4), "a refused row: exit 4");
    let printed: Value = serde_json::from_slice(&output.stdout).expect("the result as JSON");
    assert_eq!(
        linkbus_tests::untracked(&printed["rows"][0]),
        json!({"row": 1, "case_id": "grid-GX-0300", "duplicate": false})
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("row 2: location.lon: 181"), "{output:?}");

    // Not CSV nor JSON lines; too big.
    let (status, error) = upload(&base, Some(PATROL), "text/plain", b"hello".to_vec()).await;
    assert_eq!((status, error["code"].clone()), (415, json!("unsupported_media_type")));
    let (status, error) = upload(&base, Some(PATROL), "text/csv", vec![b'a'; 10 * 1024 * 1024]).await;
    assert_eq!((status, error["code"].clone()), (413, json!("too_large")));

    // One report over NATS, as a request: answered with its case id, routed.
    let report = json!({
        "report_id": "GX-0200", "kind": "component", "code": "0104", "lon": -122.4090, "lat": 37.7870,
        "address": "Powell St", "description": "storm-drain grate blocked", "reporter": "Zhao Liu"
    });
    let reply = tokio::time::timeout(WAIT, bus.client.request(SUBJECT, report.to_string().into()))
        .await
        .expect("answered in time")
        .expect("request");
    let answer: Value = serde_json::from_slice(&reply.payload).expect("JSON");
    assert_eq!(linkbus_tests::untracked(&answer), json!({"case_id": "grid-GX-0200", "duplicate": false}));
    let grate = wait_for_case(&service, "grid-GX-0200", "routed", |_| true).await;
    assert_eq!(grate.case.category, "catch_basin_maintenance");
    // Sent again: the same case.
    let reply = tokio::time::timeout(WAIT, bus.client.request(SUBJECT, report.to_string().into()))
        .await
        .expect("answered in time")
        .expect("request");
    let answer: Value = serde_json::from_slice(&reply.payload).expect("JSON");
    assert_eq!(linkbus_tests::untracked(&answer), json!({"case_id": "grid-GX-0200", "duplicate": true}));
    // A bad one: the reason back, and a dead letter.
    let reply = tokio::time::timeout(WAIT, bus.client.request(SUBJECT, b"{\"report_id\": 1".to_vec().into()))
        .await
        .expect("answered in time")
        .expect("request");
    let answer: Value = serde_json::from_slice(&reply.payload).expect("JSON");
    assert!(answer["error"].as_str().is_some_and(|e| e.contains("not a grid report")), "{answer}");
    let letters = read_stream(&bus.js, nats::STREAM_DEADLETTER, "deadletter.adapter_grid", 9).await;
    assert!(
        letters.iter().any(|m| header(m, nats::HEADER_ORIGINAL_SUBJECT).as_deref() == Some(SUBJECT)),
        "the NATS report is kept"
    );

    // Counted: 3 + 1 + 1 + 1 accepted, 3 + 1 duplicates; refusals by reason (the second upload's too:
    // its dead letters are duplicates on the stream, but they were refused again).
    let text = linkbus_http::api::render(service.metrics.registry());
    for series in [
        r#"linkbus_adapter_messages_total{adapter="grid",outcome="reported"} 6"#,
        r#"linkbus_adapter_messages_total{adapter="grid",outcome="duplicate"} 4"#,
        r#"linkbus_deadletters_total{reason="invalid",stage="adapter_grid"} 5"#,
        r#"linkbus_deadletters_total{reason="malformed",stage="adapter_grid"} 9"#,
        r#"linkbus_deadletters_total{reason="too_large",stage="adapter_grid"} 1"#,
    ] {
        assert!(text.contains(series), "{series} in\n{text}");
    }

    stop.cancel();
    service.stop().await;
}

/// A batch larger than the JetStream context's budget of outstanding acknowledgements (5000,
/// shared with the router and the case book) is answered, and the service can still publish: the
/// batch never holds more than a window of them (holding them all stalled every publish).
#[tokio::test]
async fn a_batch_larger_than_the_ack_budget_is_taken_and_the_service_keeps_publishing() {
    let bus = TestBus::start().await;
    let mut config = bus.config();
    config.api.keys = keys();
    let service = bus.service(&config).await;
    let (base, stop) = serve(&config, &service).await;

    let rows = 6000;
    let mut csv = String::from("report_id,kind,code,lon,lat\n");
    for n in 0..rows {
        let (lon, lat) = (-122.50 + (n % 100) as f64 * 0.0012, 37.71 + (n / 100) as f64 * 0.0015);
        csv.push_str(&format!("GX-BIG-{n:05},event,0102,{lon:.6},{lat:.6}\n"));
    }
    let (status, answer) = upload(&base, Some(PATROL), "text/csv", csv.into_bytes()).await;
    assert_eq!(status, 200);
    assert_eq!((answer["accepted"].clone(), answer["rejected"].clone()), (json!(rows), json!(0)));
    // The service's own publishes are not starved: a report sent now is taken at once.
    let report = json!({"report_id": "GX-AFTER", "kind": "event", "code": "0201", "lon": -122.41, "lat": 37.78});
    let reply = tokio::time::timeout(WAIT, bus.client.request(SUBJECT, report.to_string().into()))
        .await
        .expect("answered in time")
        .expect("request");
    let answer: Value = serde_json::from_slice(&reply.payload).expect("JSON");
    assert_eq!(linkbus_tests::untracked(&answer), json!({"case_id": "grid-GX-AFTER", "duplicate": false}));

    stop.cancel();
    service.stop().await;
}
