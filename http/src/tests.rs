//! The HTTP surface end to end without a socket or NATS: [`crate::app`] on a case book in
//! memory (the lifecycle on records in a map) and fixed webhook records, driven with `oneshot`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Method, StatusCode, header};
use futures::future::BoxFuture;
use jiff::Timestamp;
use linkbus_cases::book::{ActError, CaseFilter, CaseStore, DepartmentStats};
use linkbus_cases::lifecycle::{self, Ladder, Policy};
use linkbus_cases::webhooks::{Delivery, DeliveryStatus, WebhookError};
use linkbus_wire::{self as wire, Action, Actor, CaseRecord, CloudEvent, Contact, RoutedCase};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::api::METRICS_CONTENT_TYPE;
use crate::app;
use crate::auth::hash_key;
use crate::config::{ApiConfig, ApiKey, ApiRole};
use crate::error::MAX_BODY;
use crate::openapi;
use crate::state::{ApiState, Deliveries, Readiness};

/// The case book without NATS: the lifecycle on records in memory.
struct Memory {
    records: Mutex<HashMap<String, CaseRecord>>,
    ladder: Ladder,
}

impl CaseStore for Memory {
    fn list(&self, filter: &CaseFilter) -> Vec<CaseRecord> {
        let records = self.records.lock().expect("lock");
        records.values().filter(|r| filter.matches(r)).cloned().collect()
    }

    fn get(&self, case_id: &str) -> Option<CaseRecord> {
        self.records.lock().expect("lock").get(case_id).cloned()
    }

    fn by_source_id(&self, source: Option<&str>, source_id: &str) -> Option<CaseRecord> {
        let records = self.records.lock().expect("lock");
        let from = |r: &CaseRecord| source.is_none_or(|s| r.reports.first().is_some_and(|f| f.source == s));
        records.values().find(|r| r.case.source_id == source_id && from(r)).cloned()
    }

    fn act<'a>(
        &'a self,
        case_id: &'a str,
        actor: &'a Actor,
        action: &'a Action,
    ) -> BoxFuture<'a, Result<CaseRecord, ActError>> {
        Box::pin(async move {
            let mut records = self.records.lock().expect("lock");
            let r = records.get_mut(case_id).ok_or_else(|| ActError::NotFound(case_id.to_owned()))?;
            let outcome = lifecycle::act(r, actor, action, Timestamp::now(), &Policy::default(), &self.ladder)?;
            *r = outcome.record;
            Ok(r.clone())
        })
    }

    fn department_stats(&self) -> Vec<DepartmentStats> {
        let records = self.records.lock().expect("lock");
        let mut out: Vec<DepartmentStats> = Vec::new();
        for r in records.values() {
            for d in r.departments.iter().chain(&r.rejected_by).chain(&r.accepted_by) {
                if out.iter().any(|s| &s.department == d) {
                    continue;
                }
                out.push(DepartmentStats {
                    department: d.clone(),
                    cases: 1,
                    accepted: usize::from(r.accepted_by.as_ref() == Some(d)),
                    rejected: usize::from(r.rejected_by.contains(d)),
                    ..Default::default()
                });
            }
        }
        out.sort_by(|a, b| a.department.cmp(&b.department));
        out
    }
}

/// Webhook delivery records without NATS: a department's, or a read error.
struct Hooks(Result<Vec<Delivery>, String>);

impl Deliveries for Hooks {
    fn deliveries<'a>(&'a self, department: &'a str) -> BoxFuture<'a, Result<Vec<Delivery>, WebhookError>> {
        Box::pin(async move {
            match &self.0 {
                Ok(all) => Ok(all.iter().filter(|d| d.department == department).cloned().collect()),
                Err(e) => Err(WebhookError::Read { department: department.to_owned(), source: e.clone().into() }),
            }
        })
    }
}

fn delivery(department: &str, stream_sequence: u64, status: DeliveryStatus) -> Delivery {
    let at = Timestamp::now();
    Delivery {
        department: department.into(),
        stream_sequence,
        case_id: Some("sf311-4292128".into()),
        event_type: Some(wire::TYPE_CASE_ROUTED.into()),
        msg_id: format!("sf311-4292128:{stream_sequence}"),
        subject: format!("routed.dept.{department}.sewer_issues"),
        status,
        attempts: 1,
        last_http_status: Some(200),
        last_error: None,
        first_attempt_at: at,
        last_attempt_at: at,
        next_attempt_at: None,
        delivered_at: (status == DeliveryStatus::Delivered).then_some(at),
    }
}

const DISPATCHER: &str = "key-dispatcher";
const SEWER: &str = "key-sewer";
const OTHER: &str = "key-dpw";
const OPERATOR: &str = "key-operator";
const SOURCE: &str = "key-sf311-app";
/// Another source system's app: it may not reach SF 311's requests.
const OTHER_SOURCE: &str = "key-other-app";

/// The documented example case (sewer issues in the Mission, for `puc-sewer-ops`, source id
/// 4292128), with a reporter, opened by the lifecycle.
fn state(rate_per_minute: u32) -> ApiState {
    let mut routed: CloudEvent<RoutedCase> =
        serde_json::from_str(include_str!("../../docs/examples/case-routed.json")).expect("example");
    routed.data.case.reporter =
        Some(Contact { name: Some("A. Resident".into()), phone: Some("555-0100".into()), ..Default::default() });
    let record = lifecycle::open(&routed.data, Timestamp::now(), &Policy::default());
    let ladder = Ladder::new(["puc-sewer-ops", "dpw-ops-queue", "sf-311"].map(|d| (d.to_owned(), None)), "sf-311");
    let memory = Memory { records: Mutex::new(HashMap::from([(record.case_id.clone(), record)])), ladder };
    let key = |role, id: &str, key: &str| ApiKey { role, id: id.into(), sha256: hash_key(key), source: None };
    let config = ApiConfig {
        listen: String::new(),
        public_rate_per_minute: rate_per_minute,
        keys: vec![
            key(ApiRole::Dispatcher, "ada", DISPATCHER),
            key(ApiRole::Department, "puc-sewer-ops", SEWER),
            key(ApiRole::Department, "dpw-ops-queue", OTHER),
            key(ApiRole::Operator, "ops", OPERATOR),
            ApiKey { source: Some("/sf311".into()), ..key(ApiRole::Source, "sf311-app", SOURCE) },
            key(ApiRole::Source, "other-app", OTHER_SOURCE),
        ],
        ..ApiConfig::default()
    };
    ApiState::new(Arc::new(memory), &config).expect("state")
}

const CASE: &str = "/api/cases/sf311-4292128";

async fn call(app: &Router, method: Method, uri: &str, key: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = axum::http::Request::builder().method(method).uri(uri);
    if let Some(key) = key {
        request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
    let response = app.clone().oneshot(request.body(body).expect("request")).await.expect("response");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
    let value =
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, value)
}

fn assert_error(got: &(StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["code"], code, "{}", got.1);
    assert!(got.1["error"].as_str().is_some_and(|e| !e.is_empty()), "{}", got.1);
}

#[tokio::test]
async fn keys_are_required_and_checked() {
    let app = app(state(60));
    let missing = call(&app, Method::GET, "/api/cases", None, None).await;
    assert_error(&missing, StatusCode::UNAUTHORIZED, "unauthorized");
    assert_error(&call(&app, Method::GET, CASE, Some("nope"), None).await, StatusCode::UNAUTHORIZED, "unauthorized");
    let basic = axum::http::Request::get("/api/cases").header(header::AUTHORIZATION, "Basic a2V5").body(Body::empty());
    let response = app.clone().oneshot(basic.expect("request")).await.expect("response");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
    // Authentication comes before anything else is looked at.
    let post = call(&app, Method::POST, "/api/cases/nope/actions", None, Some(json!({"bad": 1}))).await;
    assert_error(&post, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, text) = call(&app, Method::GET, "/healthz", None, None).await;
    assert_eq!((status, text), (StatusCode::OK, Value::String("ok".into())));
    let (status, doc) = call(&app, Method::GET, "/api/openapi.json", None, None).await;
    assert_eq!((status, doc), (StatusCode::OK, openapi::document()));
    assert_error(&call(&app, Method::GET, "/api/nothing", None, None).await, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn departments_see_and_act_on_their_cases_only() {
    let app = app(state(60));
    let (status, list) = call(&app, Method::GET, "/api/cases", Some(OTHER), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["cases"], json!([]));
    // Asking for another department's cases does not widen what a department key sees.
    let (_, list) = call(&app, Method::GET, "/api/cases?department=puc-sewer-ops", Some(OTHER), None).await;
    assert_eq!(list["cases"], json!([]));
    assert_error(&call(&app, Method::GET, CASE, Some(OTHER), None).await, StatusCode::FORBIDDEN, "forbidden");
    let accept = json!({"action": "accept"});
    let other = call(&app, Method::POST, &format!("{CASE}/actions"), Some(OTHER), Some(accept.clone())).await;
    assert_error(&other, StatusCode::FORBIDDEN, "forbidden");
    let operator = call(&app, Method::POST, &format!("{CASE}/actions"), Some(OPERATOR), Some(accept.clone())).await;
    assert_error(&operator, StatusCode::FORBIDDEN, "forbidden");
    let (status, _) = call(&app, Method::GET, CASE, Some(OPERATOR), None).await;
    assert_eq!(status, StatusCode::OK);

    let (status, list) = call(&app, Method::GET, "/api/cases", Some(SEWER), None).await;
    assert_eq!((status, list["cases"][0]["case_id"].clone()), (StatusCode::OK, json!("sf311-4292128")));
    let (status, record) =
        call(&app, Method::POST, &format!("{CASE}/actions"), Some(SEWER), Some(accept.clone())).await;
    assert_eq!(status, StatusCode::OK, "{record}");
    assert_eq!(record["state"], "accepted");
    let last = &record["timeline"].as_array().expect("timeline").last().cloned().expect("entry");
    assert_eq!(last["actor"], json!({"kind": "department", "id": "puc-sewer-ops"}));
    let again = call(&app, Method::POST, &format!("{CASE}/actions"), Some(SEWER), Some(accept)).await;
    assert_error(&again, StatusCode::CONFLICT, "conflict");
    // A dispatcher acts under their own name.
    let close = json!({"action": "close", "note": "duplicate of a known outage"});
    let (status, record) = call(&app, Method::POST, &format!("{CASE}/actions"), Some(DISPATCHER), Some(close)).await;
    assert_eq!(status, StatusCode::OK, "{record}");
    let last = &record["timeline"].as_array().expect("timeline").last().cloned().expect("entry");
    assert_eq!(last["actor"], json!({"kind": "dispatcher", "id": "ada"}));
    let missing =
        call(&app, Method::POST, "/api/cases/nope/actions", Some(DISPATCHER), Some(json!({"action": "accept"})));
    assert_error(&missing.await, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn malformed_requests_are_422() {
    let app = app(state(60));
    for uri in ["/api/cases?state=open", "/api/cases?colour=red", "/api/cases?limit=0", "/api/cases?since=yesterday"] {
        assert_error(
            &call(&app, Method::GET, uri, Some(DISPATCHER), None).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        );
    }
    let (status, list) = call(&app, Method::GET, "/api/cases?state=routed&limit=1", Some(DISPATCHER), None).await;
    assert_eq!((status, list["more"].clone()), (StatusCode::OK, json!(false)));
    for body in [
        json!({"action": "explode"}),
        json!({"action": "reject"}),
        json!({"action": "accept", "x": 1}),
        json!({"action": "acknowledge_escalation", "reason": "seen"}),
    ] {
        let got = call(&app, Method::POST, &format!("{CASE}/actions"), Some(SEWER), Some(body)).await;
        assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    }
    let long = json!({"action": "reject", "reason": "x".repeat(wire::MAX_TEXT_LEN + 1)});
    let got = call(&app, Method::POST, &format!("{CASE}/actions"), Some(SEWER), Some(long)).await;
    assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    let huge = json!({"action": "reject", "reason": "x".repeat(MAX_BODY)});
    let got = call(&app, Method::POST, &format!("{CASE}/actions"), Some(SEWER), Some(huge)).await;
    assert_error(&got, StatusCode::PAYLOAD_TOO_LARGE, "too_large");
}

#[tokio::test]
async fn residents_see_a_reduced_view_and_rate_resolved_cases() {
    let app = app(state(60));
    let (status, view) = call(&app, Method::GET, "/api/requests/4292128", Some(SOURCE), None).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["state"], "routed");
    assert_eq!(view["can_rate"], false);
    let text = view.to_string();
    for private in ["555-0100", "A. Resident", "puc-sewer-ops", "GUERRERO", "-122.42"] {
        assert!(!text.contains(private), "the public view shows {private}: {text}");
    }
    let rating = json!({"score": 2, "solved": false});
    let early = call(&app, Method::POST, "/api/requests/4292128/rating", Some(SOURCE), Some(rating.clone())).await;
    assert_error(&early, StatusCode::CONFLICT, "conflict");
    for step in [json!({"action": "accept"}), json!({"action": "resolve", "note": "drain cleared"})] {
        let (status, _) = call(&app, Method::POST, &format!("{CASE}/actions"), Some(SEWER), Some(step)).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, view) = call(&app, Method::POST, "/api/requests/4292128/rating", Some(SOURCE), Some(rating)).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["state"], "accepted");
    let events: Vec<&str> =
        view["timeline"].as_array().expect("timeline").iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(events, ["routed", "accepted", "resolved", "rated", "reopened"]);
    assert_eq!(view["timeline"][2]["note"], "drain cleared");
    assert!(view["timeline"][0].get("note").is_none(), "routing notes name departments");
    let bad = json!({"score": 6, "solved": true});
    let bad = call(&app, Method::POST, "/api/requests/4292128/rating", Some(SOURCE), Some(bad)).await;
    assert_error(&bad, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    let missing = call(&app, Method::GET, "/api/requests/0", Some(SOURCE), None).await;
    assert_error(&missing, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn residents_endpoints_take_a_source_dispatcher_or_operator_key() {
    let app = app(state(60));
    const REQUEST: &str = "/api/requests/4292128";
    const RATING: &str = "/api/requests/4292128/rating";
    let rating = json!({"score": 2, "solved": false});
    // No key, an unknown key: 401 with a challenge, before the body or the request is looked at.
    for (method, uri, body) in [(Method::GET, REQUEST, None), (Method::POST, RATING, Some(rating.clone()))] {
        assert_error(
            &call(&app, method.clone(), uri, None, body.clone()).await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        );
        assert_error(
            &call(&app, method.clone(), uri, Some("nope"), body).await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        );
        let request = axum::http::Request::builder().method(method).uri(uri).body(Body::empty()).expect("request");
        let response = app.clone().oneshot(request).await.expect("response");
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }
    let unknown = call(&app, Method::POST, "/api/requests/0/rating", None, Some(json!({"bad": 1}))).await;
    assert_error(&unknown, StatusCode::UNAUTHORIZED, "unauthorized");
    // Another source system's key does not reach SF 311's requests: source ids are per source.
    assert_error(&call(&app, Method::GET, REQUEST, Some(OTHER_SOURCE), None).await, StatusCode::NOT_FOUND, "not_found");
    let other = call(&app, Method::POST, RATING, Some(OTHER_SOURCE), Some(rating.clone())).await;
    assert_error(&other, StatusCode::NOT_FOUND, "not_found");
    // A department key may do neither, even for its own case; an operator reads but does not rate.
    assert_error(&call(&app, Method::GET, REQUEST, Some(SEWER), None).await, StatusCode::FORBIDDEN, "forbidden");
    let department = call(&app, Method::POST, RATING, Some(SEWER), Some(rating.clone())).await;
    assert_error(&department, StatusCode::FORBIDDEN, "forbidden");
    assert_error(
        &call(&app, Method::GET, "/api/requests/0", Some(SEWER), None).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_eq!(call(&app, Method::GET, REQUEST, Some(OPERATOR), None).await.0, StatusCode::OK);
    let operator = call(&app, Method::POST, RATING, Some(OPERATOR), Some(rating.clone())).await;
    assert_error(&operator, StatusCode::FORBIDDEN, "forbidden");
    // A dispatcher reads, and records a rating taken by phone: as the resident's.
    assert_eq!(call(&app, Method::GET, REQUEST, Some(DISPATCHER), None).await.0, StatusCode::OK);
    for step in [json!({"action": "accept"}), json!({"action": "resolve", "note": "drain cleared"})] {
        let (status, _) = call(&app, Method::POST, &format!("{CASE}/actions"), Some(SEWER), Some(step)).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, view) = call(&app, Method::POST, RATING, Some(DISPATCHER), Some(rating)).await;
    assert_eq!((status, view["state"].clone()), (StatusCode::OK, json!("accepted")), "{view}");
    let (_, record) = call(&app, Method::GET, CASE, Some(DISPATCHER), None).await;
    let rated = record["timeline"].as_array().expect("timeline").iter().find(|e| e["event"] == "rated").cloned();
    assert_eq!(rated.expect("rated")["actor"], json!({"kind": "resident", "id": "reporter"}));
}

#[tokio::test]
async fn source_keys_may_not_use_the_cases_endpoints() {
    let app = app(state(60));
    for (method, uri, body) in [
        (Method::GET, "/api/cases", None),
        (Method::GET, CASE, None),
        (Method::GET, "/api/cases/nope", None),
        (Method::POST, "/api/cases/sf311-4292128/actions", Some(json!({"action": "accept"}))),
        (Method::POST, "/api/cases/sf311-4292128/actions", Some(json!({"bad": 1}))),
    ] {
        assert_error(&call(&app, method, uri, Some(SOURCE), body).await, StatusCode::FORBIDDEN, "forbidden");
    }
    let (_, record) = call(&app, Method::GET, CASE, Some(DISPATCHER), None).await;
    assert_eq!(record["state"], "routed");
}

#[tokio::test]
async fn residents_are_rate_limited_per_key_and_keyless_requests_per_address() {
    let app = app(state(2));
    let from = |ip: [u8; 4]| app.clone().layer(MockConnectInfo(SocketAddr::from((ip, 4000))));
    let (one, two) = (from([192, 0, 2, 1]), from([192, 0, 2, 2]));
    for _ in 0..2 {
        assert_eq!(call(&one, Method::GET, "/api/requests/4292128", Some(SOURCE), None).await.0, StatusCode::OK);
    }
    // A (leaked) key does not go faster than its budget, from any address.
    let third = call(&two, Method::GET, "/api/requests/4292128", Some(SOURCE), None).await;
    assert_error(&third, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    // Requests without a valid key spend their address's budget, not a key's: the dispatcher on
    // the same address still gets through.
    for key in [None, Some("not-a-key")] {
        let refused = call(&one, Method::GET, "/api/requests/4292128", key, None).await;
        assert_error(&refused, StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let keyless = call(&one, Method::GET, "/api/requests/4292128", None, None).await;
    assert_error(&keyless, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let rating = json!({"score": 5, "solved": true});
    let rate = call(&one, Method::POST, "/api/requests/4292128/rating", Some(DISPATCHER), Some(rating)).await;
    assert_error(&rate, StatusCode::CONFLICT, "conflict");
    // Another address without a key has its own budget.
    let elsewhere = call(&two, Method::GET, "/api/requests/4292128", None, None).await;
    assert_error(&elsewhere, StatusCode::UNAUTHORIZED, "unauthorized");
    // The cases endpoints are not limited.
    assert_eq!(call(&one, Method::GET, CASE, Some(DISPATCHER), None).await.0, StatusCode::OK);
}

#[tokio::test]
async fn webhook_deliveries_are_the_departments_own_newest_first() {
    let hooks = Hooks(Ok(vec![
        delivery("puc-sewer-ops", 3, DeliveryStatus::Delivered),
        delivery("puc-sewer-ops", 7, DeliveryStatus::Delivering),
        delivery("dpw-ops-queue", 5, DeliveryStatus::Failed),
    ]));
    let app = app(state(60).with_deliveries(Arc::new(hooks)));
    const SEWER_HOOKS: &str = "/api/webhooks/puc-sewer-ops/deliveries";
    for key in [DISPATCHER, OPERATOR, SEWER] {
        let (status, list) = call(&app, Method::GET, SEWER_HOOKS, Some(key), None).await;
        assert_eq!(status, StatusCode::OK, "{list}");
        let sequences: Vec<&Value> =
            list["deliveries"].as_array().expect("deliveries").iter().map(|d| &d["stream_sequence"]).collect();
        assert_eq!(sequences, [&json!(7), &json!(3)], "newest first");
        assert_eq!(list["deliveries"][1]["status"], "delivered");
    }
    let (_, list) = call(&app, Method::GET, &format!("{SEWER_HOOKS}?limit=1"), Some(DISPATCHER), None).await;
    assert_eq!(list["deliveries"].as_array().map(Vec::len), Some(1));
    assert_eq!(list["deliveries"][0]["stream_sequence"], 7);
    let (_, list) = call(&app, Method::GET, "/api/webhooks/sf-311/deliveries", Some(DISPATCHER), None).await;
    assert_eq!(list, json!({"deliveries": []}));
    // Another department's, or any with a source key: 403.
    for (key, uri) in [(OTHER, SEWER_HOOKS), (SEWER, "/api/webhooks/dpw-ops-queue/deliveries"), (SOURCE, SEWER_HOOKS)] {
        assert_error(&call(&app, Method::GET, uri, Some(key), None).await, StatusCode::FORBIDDEN, "forbidden");
    }
    assert_error(&call(&app, Method::GET, SEWER_HOOKS, None, None).await, StatusCode::UNAUTHORIZED, "unauthorized");
    for uri in [
        "/api/webhooks/puc.sewer/deliveries",
        "/api/webhooks/puc-sewer-ops/deliveries?limit=0",
        "/api/webhooks/puc-sewer-ops/deliveries?limit=1001",
        "/api/webhooks/puc-sewer-ops/deliveries?limit=1&limit=2",
        "/api/webhooks/puc-sewer-ops/deliveries?status=failed",
    ] {
        let got = call(&app, Method::GET, uri, Some(DISPATCHER), None).await;
        assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    }
    let (status, _) =
        call(&app, Method::GET, "/api/webhooks/puc-sewer-ops/deliveries?limit=1000", Some(SEWER), None).await;
    assert_eq!(status, StatusCode::OK);

    // Records that cannot be read, or none to read: 503.
    let down = crate::app(state(60).with_deliveries(Arc::new(Hooks(Err("no responders".into())))));
    let got = call(&down, Method::GET, SEWER_HOOKS, Some(DISPATCHER), None).await;
    assert_error(&got, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    let none = crate::app(state(60));
    let got = call(&none, Method::GET, SEWER_HOOKS, Some(DISPATCHER), None).await;
    assert_error(&got, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
}

#[tokio::test]
async fn department_stats_are_everyones_for_dispatchers_and_own_for_departments() {
    let app = app(state(60));
    let accept = json!({"action": "accept"});
    assert_eq!(call(&app, Method::POST, &format!("{CASE}/actions"), Some(SEWER), Some(accept)).await.0, StatusCode::OK);
    for key in [DISPATCHER, OPERATOR] {
        let (status, stats) = call(&app, Method::GET, "/api/stats/departments", Some(key), None).await;
        assert_eq!(status, StatusCode::OK, "{stats}");
        assert_eq!(stats["departments"].as_array().map(Vec::len), Some(1), "{stats}");
        assert_eq!(stats["departments"][0]["department"], "puc-sewer-ops");
        assert_eq!(stats["departments"][0]["accepted"], 1);
    }
    let (_, own) = call(&app, Method::GET, "/api/stats/departments", Some(SEWER), None).await;
    assert_eq!(own["departments"][0]["accepted"], 1);
    let (status, other) = call(&app, Method::GET, "/api/stats/departments", Some(OTHER), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        other,
        json!({"departments": [{
            "department": "dpw-ops-queue", "cases": 0, "accepted": 0, "rejected": 0, "ratings": 0,
            "average_score": null, "not_solved": 0, "reopen_rate": null
        }]}),
        "a department with no case gets its own row, empty"
    );
    let got = call(&app, Method::GET, "/api/stats/departments", Some(SOURCE), None).await;
    assert_error(&got, StatusCode::FORBIDDEN, "forbidden");
    let got = call(&app, Method::GET, "/api/stats/departments", None, None).await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized");
}

/// A readiness probe with a fixed answer.
struct Fixed(Result<(), String>);

impl Readiness for Fixed {
    fn ready(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(std::future::ready(self.0.clone()))
    }
}

#[tokio::test]
async fn readyz_and_metrics_answer_without_a_key() {
    let (status, body) = call(&app(state(60)), Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "no probe: not ready");
    assert_eq!(body["ready"], false, "{body}");
    let ready = app(state(60).with_readiness(Arc::new(Fixed(Ok(())))));
    assert_eq!(call(&ready, Method::GET, "/readyz", None, None).await, (StatusCode::OK, json!({ "ready": true })));
    let down = app(state(60).with_readiness(Arc::new(Fixed(Err("NATS is not connected".into())))));
    assert_eq!(
        call(&down, Method::GET, "/readyz", None, None).await,
        (StatusCode::SERVICE_UNAVAILABLE, json!({ "ready": false, "reason": "NATS is not connected" }))
    );

    let registry = prometheus::Registry::new();
    let counter = prometheus::IntCounter::new("linkbus_test_things_total", "Things.").expect("counter");
    registry.register(Box::new(counter.clone())).expect("registers");
    counter.inc();
    let response = app(state(60).with_metrics(registry))
        .oneshot(axum::http::Request::get("/metrics").body(Body::empty()).expect("request"))
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], METRICS_CONTENT_TYPE);
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("# TYPE linkbus_test_things_total counter\nlinkbus_test_things_total 1\n"), "{text}");
}

#[tokio::test]
async fn supervision_figures_are_checked_and_a_department_reads_only_its_own() {
    let app = app(state(60));
    let (status, all) = call(&app, Method::GET, "/api/stats?by=department&period=month", Some(OPERATOR), None).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    assert_eq!(all["rows"][0]["key"], "puc-sewer-ops", "{all}");
    assert_eq!(all["rows"][0]["received"], 1, "{all}");
    let (_, own) = call(&app, Method::GET, "/api/stats?by=department", Some(SEWER), None).await;
    assert_eq!(own["rows"].as_array().map(Vec::len), Some(1), "{own}");
    let (_, other) = call(&app, Method::GET, "/api/stats?by=department", Some(OTHER), None).await;
    assert_eq!(other["rows"], json!([]), "another department's rows are not {OTHER}'s");
    for (key, uri) in [(SEWER, "/api/stats?by=sub_district"), (SEWER, "/api/stats/ranking"), (SOURCE, "/api/stats")] {
        assert_error(&call(&app, Method::GET, uri, Some(key), None).await, StatusCode::FORBIDDEN, "forbidden");
    }
    for uri in [
        "/api/stats?by=street",
        "/api/stats?period=year",
        "/api/stats?from=2026-13-01",
        "/api/stats?from=2026-03-02&to=2026-03-01",
        "/api/stats?from=2020-01-01&to=2026-01-01",
        "/api/stats?by=district&by=community",
        "/api/stats?limit=3",
        "/api/stats/ranking?rate=speed",
        "/api/stats/ranking?month=2026-3",
        "/api/stats/ranking?by=department",
    ] {
        assert_error(
            &call(&app, Method::GET, uri, Some(DISPATCHER), None).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        );
    }
}

#[tokio::test]
async fn supervision_figures_come_as_csv_when_asked() {
    let request = axum::http::Request::builder()
        .uri("/api/stats?by=department&period=month")
        .header(header::AUTHORIZATION, format!("Bearer {DISPATCHER}"))
        .header(header::ACCEPT, "text/csv")
        .body(Body::empty())
        .expect("request");
    let response = app(state(60)).oneshot(request).await.expect("response");
    assert_eq!(response.headers()[header::CONTENT_TYPE], "text/csv; charset=utf-8");
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
    let mut reader = csv::Reader::from_reader(bytes.as_ref());
    let headers = reader.headers().expect("a header line").clone();
    assert_eq!(headers.iter().take(3).collect::<Vec<_>>(), ["key", "period", "received"]);
    let rows: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>().expect("rows");
    assert_eq!(rows.len(), 1);
    assert_eq!((&rows[0][0], &rows[0][2]), ("puc-sewer-ops", "1"));
}

#[tokio::test]
async fn reports_are_refused_where_none_are_kept_and_the_public_export_is_opt_in() {
    let app = app(state(60));
    let got = call(&app, Method::GET, "/api/reports/2026-02", Some(OPERATOR), None).await;
    assert_error(&got, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    let got = call(&app, Method::POST, "/api/reports/2026-02", Some(OPERATOR), None).await;
    assert_error(&got, StatusCode::FORBIDDEN, "forbidden");
    let got = call(&app, Method::POST, "/api/reports/2026-2", Some(DISPATCHER), None).await;
    assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    let got = call(&app, Method::POST, "/api/reports/2026-02", Some(DISPATCHER), Some(json!({"why": "x"}))).await;
    assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    let long = json!({"reason": "x".repeat(crate::api::MAX_REASON_CHARS + 1)});
    let got = call(&app, Method::POST, "/api/reports/2026-02", Some(DISPATCHER), Some(long)).await;
    assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    let this_month = Timestamp::now().strftime("%Y-%m").to_string();
    let got = call(&app, Method::POST, &format!("/api/reports/{this_month}"), Some(DISPATCHER), None).await;
    assert_error(&got, StatusCode::CONFLICT, "conflict");
    let got = call(&app, Method::GET, "/public/stats/2026-02", None, None).await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found");
}
