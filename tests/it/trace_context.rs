//! W3C Trace Context end to end, against a real nats-server, real HTTP and a real webhook
//! receiver: a CAD POST with a `traceparent` header opens a case whose routed copy, the
//! department's acceptance on `case.<id>.accepted` and the webhook delivery (HTTP headers) all
//! carry the caller's trace id; an invalid header is ignored, not refused, and its report (merged
//! into the first: same incident) is delivered without trace headers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use linkbus::config::{AdaptersConfig, Config};
use linkbus_adapters::cad::CadConfig;
use linkbus_adapters::vocabulary::CategoryMap;
use linkbus_bus::nats::{STREAM_CASES, STREAM_ROUTED};
use linkbus_cases::webhooks::{self, WebhookConfig};
use linkbus_http::auth;
use linkbus_http::config::{ApiKey, ApiRole};
use linkbus_tests::{TestBus, WAIT, department_action, read_stream, sf_region, wait_for_case};
use linkbus_wire::{Action, CaseState};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The dispatch (CAD) system's source key (source `/cad`).
const DISPATCH: &str = "k-sfdem-cad-5e0b71d3";
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const STATION: &str = "sffd-station-7";

type Received = Arc<Mutex<Vec<(HashMap<String, String>, Value)>>>;

async fn record(State(received): State<Received>, headers: HeaderMap, body: axum::body::Bytes) -> StatusCode {
    let headers =
        headers.iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned())).collect();
    received.lock().expect("lock").push((headers, serde_json::from_slice(&body).expect("a JSON event")));
    StatusCode::OK
}

fn trace_id(traceparent: &Value) -> Option<&str> {
    traceparent.as_str().and_then(|t| t.get(3..35))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cad_posts_trace_reaches_the_acceptance_and_its_webhook() {
    let bus = TestBus::start().await;
    let mut config: Config = bus.config();
    config.api.listen = "127.0.0.1:0".into();
    config.api.keys = vec![ApiKey {
        role: ApiRole::Source,
        id: "sfdem-cad".into(),
        sha256: auth::hash_key(DISPATCH),
        source: Some("/cad".into()),
    }];
    config.adapters = AdaptersConfig {
        cad: CadConfig { categories: CategoryMap::from_pairs([("STRUCTURE FIRE", "fire")]), ..Default::default() },
        ..Default::default()
    };
    let service = bus.service(&config).await;
    let listener = tokio::net::TcpListener::bind(&config.api.listen).await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let app = linkbus::up::api_app(&config, &sf_region(), &service).expect("app");
    let stop = CancellationToken::new();
    let server = tokio::spawn(linkbus_http::serve(listener, app, stop.clone().cancelled_owned()));

    // The station's webhook receiver.
    let received = Received::default();
    let hook_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hook_url = format!("http://{}/hook", hook_listener.local_addr().expect("addr"));
    let app = axum::Router::new().route("/hook", axum::routing::post(record)).with_state(received.clone());
    let hook_stop = stop.clone();
    tokio::spawn(
        async move { axum::serve(hook_listener, app).with_graceful_shutdown(hook_stop.cancelled_owned()).await },
    );
    let hook =
        tokio::spawn(webhooks::run(bus.js.clone(), WebhookConfig::new(STATION, &hook_url, "s3cret"), stop.clone()));

    let http = reqwest::Client::builder().timeout(WAIT).build().expect("client");
    let post = |id: &str, traceparent: &str| {
        let body = json!({"kind": "new", "incident_id": id, "type": "STRUCTURE FIRE", "priority": 1,
            "lon": -122.4194, "lat": 37.7599, "address": "2400 Mission St", "narrative": "Smoke from 2nd floor"});
        http.post(format!("{base}/api/adapters/cad"))
            .bearer_auth(DISPATCH)
            .header("traceparent", traceparent)
            .header("tracestate", "congo=t61rcWkgMzE")
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    assert_eq!(post("F26-7001", TRACEPARENT).await.expect("answer").status(), 202);
    // An invalid traceparent (all-zero trace id) is ignored, not refused.
    let zero = "00-00000000000000000000000000000000-b7ad6b7169203331-01";
    assert_eq!(post("F26-7002", zero).await.expect("answer").status(), 202);

    let record = wait_for_case(&service, "cad-F26-7001", "routed", |r| r.state == CaseState::Routed).await;
    let trace = record.trace.expect("the case keeps the trace");
    assert_eq!((trace.traceparent.as_str(), trace.tracestate.as_deref()), (TRACEPARENT, Some("congo=t61rcWkgMzE")));
    let untraced = wait_for_case(&service, "cad-F26-7002", "routed", |_| true).await;
    assert_eq!(untraced.trace, None, "an invalid header is ignored");

    let copies = read_stream(&bus.js, STREAM_ROUTED, &format!("routed.dept.{STATION}.fire.>"), 1).await;
    let copy: Value = serde_json::from_slice(&copies[0].payload).expect("json");
    assert_eq!(trace_id(&copy["traceparent"]), Some(TRACE_ID), "the department's copy: {copy}");

    let reply = department_action(&bus.client, STATION, "cad-F26-7001", Action::Accept {}).await;
    assert!(reply.ok, "{reply:?}");
    let accepted = read_stream(&bus.js, STREAM_CASES, "case.cad-F26-7001.accepted", 1).await;
    let event: Value = serde_json::from_slice(&accepted[0].payload).expect("json");
    assert_eq!(event["type"], "org.linkbus.case.event");
    assert_eq!(trace_id(&event["traceparent"]), Some(TRACE_ID), "the timeline event: {event}");
    assert_eq!(event["tracestate"], "congo=t61rcWkgMzE");

    // The webhook delivers the routed copy with the trace headers, the same as its attributes;
    // the second report, merged into the first, is delivered as a case book event without them.
    let deadline = tokio::time::Instant::now() + WAIT;
    let [(traced, event), (untraced, merged)] = loop {
        let all = received.lock().expect("lock").clone();
        let find = |id: &str| all.iter().find(|(_, e)| e["id"] == id).cloned();
        if let (Some(routed), Some(merged)) =
            (find("cad-F26-7001:routed"), find("cad-F26-7002:notify:sffd-station-7:1"))
        {
            break [routed, merged];
        }
        assert!(tokio::time::Instant::now() < deadline, "webhook deliveries: {all:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(traced.get("traceparent").map(String::as_str), event["traceparent"].as_str(), "{traced:?}");
    assert_eq!(traced.get("traceparent").and_then(|t| t.get(3..35)), Some(TRACE_ID), "{traced:?}");
    assert_eq!(traced.get("tracestate").map(String::as_str), Some("congo=t61rcWkgMzE"));
    assert_eq!(merged["type"], "org.linkbus.case.event", "{merged}");
    assert!(!untraced.contains_key("traceparent") && !untraced.contains_key("tracestate"), "{untraced:?}");

    stop.cancel();
    let _ = tokio::time::timeout(WAIT, server).await;
    let _ = tokio::time::timeout(WAIT, hook).await;
    service.stop().await;
}
