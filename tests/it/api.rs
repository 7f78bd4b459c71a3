//! The HTTP API over real HTTP, on a real nats-server with an in-process service: dispatchers
//! list and read everything; a department reads and moves its own cases and is refused another's;
//! keys are required; a resident, through their source system's app (a source key), follows up by
//! the source system's id, sees no personal data, and reopens the case by rating it unsolved; a
//! department key may not use the residents' endpoints, a source key may not use the cases'; a
//! blank reason (reassign, cancel) or note (progress) is refused as invalid. A
//! department's webhook deliveries are visible to dispatchers and to that department, and the
//! per-department figures count its acceptances. Every response is validated against the OpenAPI
//! document the server serves (generated from the Rust types, committed as `docs/openapi.json`):
//! an undocumented status or a body that breaks its schema fails the test.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use jiff::Timestamp;
use linkbus::config::Config;
use linkbus::service::Service;
use linkbus_cases::webhooks::{self, WebhookConfig};
use linkbus_http::auth::hash_key;
use linkbus_http::config::{ApiKey, ApiRole};
use linkbus_http::openapi;
use linkbus_http::state::ApiState;
use linkbus_tests::{TestBus, WAIT, case, publish_case, wait_for_case};
use linkbus_wire::{self as wire, CaseState, SourceSystem};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Mission District, San Francisco: sewer issues go to `puc-sewer-ops`, street cleaning to
/// `dpw-ops-queue` (with volunteers).
pub(super) const MISSION: (f64, f64) = (-122.4194, 37.7599);
const DISPATCHER: &str = "k-dispatcher-5f0c3a9e61d24b7c8e1f";
pub(super) const SEWER: &str = "k-puc-sewer-ops-0b7e44c1a9d35f62";
const DPW: &str = "k-dpw-ops-queue-9d1a6c3e5b7f2048";
const OPERATOR: &str = "k-operator-3c8e1b5d7f9a0246";
/// The SF 311 app, relaying its residents' follow-ups and ratings.
const SOURCE: &str = "k-sf311-app-6e2d9b4a1c7f3058";
/// Resident requests allowed per minute: enough for the scenario, few enough to see a 429.
const PUBLIC_RATE: u32 = 20;

/// An HTTP client for the API that checks every response against the OpenAPI document.
struct Api {
    base: String,
    http: reqwest::Client,
    doc: Value,
    /// (path template, method, status) of every response seen.
    seen: Mutex<BTreeSet<(String, String, u16)>>,
}

impl Api {
    /// Sends a request to `path` (an instance of the documented `template`) and returns the status
    /// and the JSON body, once they are checked against the document.
    async fn call(
        &self,
        method: Method,
        template: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.http.request(method.clone(), format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        let response = tokio::time::timeout(WAIT, request.send()).await.expect("answered in time").expect("response");
        let status = response.status().as_u16();
        let content_type =
            response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let bytes = response.bytes().await.expect("body");
        let method = method.as_str().to_ascii_lowercase();
        let documented = &self.doc["paths"][template][&method]["responses"][status.to_string()];
        assert!(documented.is_object(), "{method} {path} answered {status}, which {template} does not document");
        self.seen.lock().expect("lock").insert((template.to_owned(), method.clone(), status));
        if content_type.starts_with("text/plain") {
            assert!(documented["content"]["text/plain"].is_object(), "{method} {path}: undocumented text/plain");
            return (status, Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        }
        assert!(content_type.starts_with("application/json"), "{method} {path}: content type {content_type}");
        let body: Value = serde_json::from_slice(&bytes).expect("a JSON body");
        let schema = &documented["content"]["application/json"]["schema"];
        assert!(schema.is_object(), "{method} {path} {status}: no JSON schema documented");
        let validator = validator(schema, &self.doc["components"]);
        let errors: Vec<String> =
            validator.iter_errors(&body).map(|e| format!("{e} at {}", e.instance_path())).collect();
        assert!(
            errors.is_empty(),
            "{method} {path} {status} does not match the OpenAPI document:\n{}\n{body}",
            errors.join("\n")
        );
        (status, body)
    }
}

/// A validator for a response schema of the document, its `$ref`s resolved in `components`, and
/// strict: objects may hold only the properties the document lists.
fn validator(schema: &Value, components: &Value) -> jsonschema::Validator {
    let mut root = schema.clone();
    let mut components = components.clone();
    strict(&mut root);
    strict(&mut components);
    root["components"] = components;
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("the document's schema does not compile: {e}"))
}

/// Adds `additionalProperties: false` to every object schema that lists properties and says
/// nothing of others, so a field added to a response but not to the document is caught.
fn strict(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            map.values_mut().for_each(strict);
        }
        Value::Array(items) => items.iter_mut().for_each(strict),
        _ => {}
    }
}

/// The test keys, as `[[api.keys]]` holds them.
pub(super) fn keys() -> Vec<ApiKey> {
    let key = |role, id: &str, key: &str| ApiKey { role, id: id.into(), sha256: hash_key(key), source: None };
    vec![
        key(ApiRole::Dispatcher, "ada", DISPATCHER),
        key(ApiRole::Department, "puc-sewer-ops", SEWER),
        key(ApiRole::Department, "dpw-ops-queue", DPW),
        key(ApiRole::Operator, "olga", OPERATOR),
        // The test cases' source (`linkbus_tests::case`).
        ApiKey { source: Some("/tests".into()), ..key(ApiRole::Source, "sf311-app", SOURCE) },
    ]
}

/// Serves the API of `service` as `linkbus up` does, on a real socket, until the token is
/// cancelled; a client for it that checks the served document is the generated one.
async fn serve(config: &Config, service: &Service) -> (Api, CancellationToken, JoinHandle<std::io::Result<()>>) {
    let listener = tokio::net::TcpListener::bind(&config.api.listen).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let state = ApiState::new(service.cases.clone(), &config.api)
        .expect("api state")
        .with_deliveries(Arc::new(service.js.clone()))
        .with_reports(service.reports.clone())
        .with_metrics(service.metrics.registry().clone())
        .with_readiness(service.readiness())
        .with_track(service.track.clone());
    let stop = CancellationToken::new();
    let server = tokio::spawn(linkbus_http::serve(listener, linkbus_http::app(state), stop.clone().cancelled_owned()));
    let http = reqwest::Client::builder().timeout(WAIT).build().expect("client");
    let base = format!("http://{addr}");
    let served = http.get(format!("{base}/api/openapi.json")).send().await.expect("openapi");
    let doc: Value = serde_json::from_slice(&served.bytes().await.expect("body")).expect("JSON");
    assert_eq!(doc, openapi::document(), "the server serves the generated document");
    assert_eq!(doc["openapi"], "3.1.0");
    (Api { base, http, doc, seen: Mutex::default() }, stop, server)
}

fn events(timeline: &Value) -> Vec<String> {
    timeline.as_array().expect("a timeline").iter().filter_map(|e| e["event"].as_str().map(str::to_owned)).collect()
}

fn ids(list: &Value) -> Vec<String> {
    list["cases"].as_array().expect("cases").iter().filter_map(|c| c["case_id"].as_str().map(str::to_owned)).collect()
}

#[tokio::test]
async fn the_closed_loop_over_http_matches_its_openapi_document() {
    let bus = TestBus::start().await;
    let mut config: Config = bus.config();
    config.api.listen = "127.0.0.1:0".into();
    config.api.public_rate_per_minute = PUBLIC_RATE;
    config.api.keys = keys();
    config.api.public_stats.enabled = true;
    let service = bus.service(&config).await;

    // The API as `linkbus up` serves it, on a real socket.
    let (api, stop, server) = serve(&config, &service).await;

    let (status, ok) = api.call(Method::GET, "/healthz", "/healthz", None, None).await;
    assert_eq!((status, ok), (200, json!("ok")));
    let (status, _) = api.call(Method::GET, "/api/openapi.json", "/api/openapi.json", None, None).await;
    assert_eq!(status, 200);
    let (status, ready) = api.call(Method::GET, "/readyz", "/readyz", None, None).await;
    assert_eq!((status, ready), (200, json!({ "ready": true })));
    let (status, metrics) = api.call(Method::GET, "/metrics", "/metrics", None, None).await;
    assert_eq!(status, 200);
    assert!(metrics.as_str().is_some_and(|m| m.contains("# TYPE linkbus_router_cases_total counter")), "{metrics}");

    // Two cases at the same place, for two departments.
    let before = Timestamp::now();
    let sewer = case("api-sewer-1", SourceSystem::PublicService, "sewer_issues", MISSION.0, MISSION.1);
    let cleanup =
        case("api-clean-1", SourceSystem::PublicService, "street_and_sidewalk_cleaning", MISSION.0, MISSION.1);
    publish_case(&bus.js, &sewer).await;
    publish_case(&bus.js, &cleanup).await;
    wait_for_case(&service, "api-sewer-1", "its record", |_| true).await;
    let cleanup_record = wait_for_case(&service, "api-clean-1", "its record", |_| true).await;
    let volunteer_ids: Vec<String> = cleanup_record.offers.iter().map(|o| o.volunteer_id.clone()).collect();
    assert!(!volunteer_ids.is_empty(), "street cleaning is offered to volunteers");

    const LIST: &str = "/api/cases";
    const CASE: &str = "/api/cases/{id}";
    const ACT: &str = "/api/cases/{id}/actions";
    const REQUEST: &str = "/api/requests/{source_id}";
    const RATE: &str = "/api/requests/{source_id}/rating";
    const DELIVERIES: &str = "/api/webhooks/{department}/deliveries";
    const STATS: &str = "/api/stats/departments";

    // No key, a wrong key: 401, before anything else is looked at.
    assert_eq!(api.call(Method::GET, LIST, "/api/cases", None, None).await.0, 401);
    assert_eq!(api.call(Method::GET, CASE, "/api/cases/api-sewer-1", Some("guess"), None).await.0, 401);
    let accept = json!({"action": "accept"});
    let (status, error) =
        api.call(Method::POST, ACT, "/api/cases/api-sewer-1/actions", None, Some(accept.clone())).await;
    assert_eq!((status, error["code"].clone()), (401, json!("unauthorized")));

    // A source key relays residents' requests and nothing else.
    for (method, template, path, body) in [
        (Method::GET, LIST, "/api/cases", None),
        (Method::GET, CASE, "/api/cases/api-sewer-1", None),
        (Method::POST, ACT, "/api/cases/api-sewer-1/actions", Some(accept.clone())),
        (Method::GET, DELIVERIES, "/api/webhooks/puc-sewer-ops/deliveries", None),
        (Method::GET, STATS, "/api/stats/departments", None),
    ] {
        let (status, error) = api.call(method, template, path, Some(SOURCE), body).await;
        assert_eq!((status, error["code"].clone()), (403, json!("forbidden")), "a source key on {path}");
    }

    // A dispatcher sees both, newest first, and filters.
    let (status, list) = api.call(Method::GET, LIST, "/api/cases", Some(DISPATCHER), None).await;
    assert_eq!(status, 200);
    assert_eq!(BTreeSet::from_iter(ids(&list)), BTreeSet::from(["api-clean-1".into(), "api-sewer-1".into()]));
    let sewer_listed = list["cases"].as_array().expect("cases").iter().find(|c| c["case_id"] == "api-sewer-1");
    let sewer_listed = sewer_listed.expect("listed");
    assert_eq!(sewer_listed["state"], "routed");
    assert_eq!(sewer_listed["departments"], json!(["puc-sewer-ops"]));
    assert!(sewer_listed["decision"]["explanation"].as_array().is_some_and(|e| !e.is_empty()));
    let filtered = format!(
        "/api/cases?state=routed&community=mission&system=public_service&department=puc-sewer-ops&since={before}"
    );
    let (_, list) = api.call(Method::GET, LIST, &filtered, Some(DISPATCHER), None).await;
    assert_eq!(ids(&list), ["api-sewer-1"]);
    let (_, list) = api.call(Method::GET, LIST, &format!("/api/cases?until={before}"), Some(DISPATCHER), None).await;
    assert_eq!(ids(&list), Vec::<String>::new());
    let (_, list) = api.call(Method::GET, LIST, "/api/cases?limit=1", Some(DISPATCHER), None).await;
    assert_eq!((ids(&list).len(), list["more"].clone()), (1, json!(true)));
    let (status, error) = api.call(Method::GET, LIST, "/api/cases?state=open", Some(DISPATCHER), None).await;
    assert_eq!((status, error["code"].clone()), (422, json!("invalid")));
    assert_eq!(api.call(Method::GET, CASE, "/api/cases/no-such-case", Some(DISPATCHER), None).await.0, 404);
    // A dispatcher does not accept on a department's behalf.
    let (status, _) =
        api.call(Method::POST, ACT, "/api/cases/api-sewer-1/actions", Some(DISPATCHER), Some(accept.clone())).await;
    assert_eq!(status, 403);
    // Reassigning or cancelling needs a reason: a blank one is refused as invalid (422), before the
    // case book is asked, and the case is as it was.
    let as_it_was = service.cases.get("api-sewer-1").expect("record");
    for (body, action) in [
        (json!({"action": "reassign", "department": "dpw-ops-queue", "reason": ""}), "reassign"),
        (json!({"action": "reassign", "department": "dpw-ops-queue", "reason": " \t "}), "reassign"),
        (json!({"action": "cancel", "reason": ""}), "cancel"),
        (json!({"action": "cancel", "reason": "   "}), "cancel"),
    ] {
        let (status, error) =
            api.call(Method::POST, ACT, "/api/cases/api-sewer-1/actions", Some(DISPATCHER), Some(body)).await;
        assert_eq!((status, error["code"].clone()), (422, json!("invalid")), "{action}: {error}");
        assert_eq!(error["error"], format!("{action} needs a reason: it is blank"));
    }
    assert_eq!(service.cases.get("api-sewer-1").expect("record"), as_it_was);

    // An operator reads, and only reads.
    assert_eq!(api.call(Method::GET, CASE, "/api/cases/api-sewer-1", Some(OPERATOR), None).await.0, 200);
    let (status, _) =
        api.call(Method::POST, ACT, "/api/cases/api-sewer-1/actions", Some(OPERATOR), Some(accept.clone())).await;
    assert_eq!(status, 403);

    // Each department sees its own case only, whatever it asks for.
    let (_, list) = api.call(Method::GET, LIST, "/api/cases", Some(DPW), None).await;
    assert_eq!(ids(&list), ["api-clean-1"]);
    let (_, list) = api.call(Method::GET, LIST, "/api/cases?department=puc-sewer-ops", Some(DPW), None).await;
    assert_eq!(ids(&list), Vec::<String>::new());
    assert_eq!(api.call(Method::GET, CASE, "/api/cases/api-clean-1", Some(DPW), None).await.0, 200);
    let (status, error) = api.call(Method::GET, CASE, "/api/cases/api-sewer-1", Some(DPW), None).await;
    assert_eq!((status, error["code"].clone()), (403, json!("forbidden")), "a department reads another's case");
    let (status, error) =
        api.call(Method::POST, ACT, "/api/cases/api-sewer-1/actions", Some(DPW), Some(accept.clone())).await;
    assert_eq!((status, error["code"].clone()), (403, json!("forbidden")), "a department acts on another's case");
    assert_eq!(api.call(Method::GET, CASE, "/api/cases/api-clean-1", Some(SEWER), None).await.0, 403);

    // puc-sewer-ops accepts, works and resolves; the timeline names it.
    let act = |action: Value| api.call(Method::POST, ACT, "/api/cases/api-sewer-1/actions", Some(SEWER), Some(action));
    let (status, record) = act(accept.clone()).await;
    assert_eq!(status, 200, "{record}");
    assert_eq!((record["state"].clone(), record["accepted_by"].clone()), (json!("accepted"), json!("puc-sewer-ops")));
    let accepted = record["timeline"].as_array().and_then(|t| t.last()).cloned().expect("an entry");
    assert_eq!(accepted["event"], "accepted");
    assert_eq!(accepted["actor"], json!({"kind": "department", "id": "puc-sewer-ops"}));
    let (status, error) = act(accept.clone()).await;
    assert_eq!((status, error["code"].clone()), (409, json!("conflict")), "accepting twice");
    let (status, error) = act(json!({"action": "progress", "note": ""})).await;
    assert_eq!((status, error["code"].clone()), (422, json!("invalid")), "a blank note: {error}");
    let (status, error) = act(json!({"action": "accept", "by": "someone"})).await;
    assert_eq!((status, error["code"].clone()), (422, json!("invalid")));
    let (status, record) = act(json!({"action": "progress", "note": "crew on site"})).await;
    assert_eq!((status, record["state"].clone()), (200, json!("in_progress")));
    let (status, record) = act(json!({"action": "resolve", "note": "drain cleared"})).await;
    assert_eq!((status, record["state"].clone()), (200, json!("resolved")));
    assert_eq!(service.cases.get("api-sewer-1").expect("record").state, CaseState::Resolved);

    // The figures count the acceptance; a department sees its own row only.
    let (status, stats) = api.call(Method::GET, STATS, "/api/stats/departments", Some(OPERATOR), None).await;
    assert_eq!(status, 200);
    let sewer_row = stats["departments"].as_array().expect("rows").iter().find(|s| s["department"] == "puc-sewer-ops");
    let sewer_row = sewer_row.cloned().expect("a row for puc-sewer-ops");
    assert_eq!((sewer_row["cases"].clone(), sewer_row["accepted"].clone()), (json!(1), json!(1)));
    let (status, own) = api.call(Method::GET, STATS, "/api/stats/departments", Some(SEWER), None).await;
    assert_eq!((status, own["departments"].clone()), (200, json!([sewer_row])));
    let (_, own) = api.call(Method::GET, STATS, "/api/stats/departments", Some(DPW), None).await;
    assert_eq!(own["departments"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        (own["departments"][0]["department"].clone(), own["departments"][0]["accepted"].clone()),
        (json!("dpw-ops-queue"), json!(0))
    );

    // No webhook here: no deliveries, but the endpoint answers and checks who asks.
    // The supervision figures (tests/it/supervision.rs checks their values): as documented.
    const FIGURES: &str = "/api/stats";
    let (status, figures) = api.call(Method::GET, FIGURES, "/api/stats?by=department", Some(SEWER), None).await;
    assert_eq!((status, figures["rows"][0]["key"].clone()), (200, json!("puc-sewer-ops")), "{figures}");
    let (status, _) = api.call(Method::GET, FIGURES, "/api/stats?by=community", Some(SEWER), None).await;
    assert_eq!(status, 403, "a department reads its own rows only");
    let ranking = "/api/stats/ranking?by=community&rate=response_rate";
    let (status, ranking) = api.call(Method::GET, "/api/stats/ranking", ranking, Some(OPERATOR), None).await;
    assert_eq!((status, ranking["rows"][0]["row"]["key"].clone()), (200, json!("mission")), "{ranking}");
    // A month with no case: nothing rising, no repeated address (their values: supervision::).
    let rising = "/api/stats/rising?by=community&place=mission&month=2020-01";
    let (status, rising) = api.call(Method::GET, "/api/stats/rising", rising, Some(OPERATOR), None).await;
    assert_eq!((status, rising["rows"].clone()), (200, json!([])), "{rising}");
    let repeats = "/api/stats/repeats?by=sub_district&place=sd-mission&month=2020-01";
    let (status, repeats) = api.call(Method::GET, "/api/stats/repeats", repeats, Some(OPERATOR), None).await;
    assert_eq!((status, repeats["rows"].clone()), (200, json!([])), "{repeats}");
    const REPORT: &str = "/api/reports/{month}";
    let (status, report) = api.call(Method::POST, REPORT, "/api/reports/2020-01", Some(DISPATCHER), None).await;
    assert_eq!((status, report["version"].clone()), (200, json!(1)), "{report}");
    let (status, again) = api.call(Method::POST, REPORT, "/api/reports/2020-01", Some(DISPATCHER), None).await;
    assert_eq!((status, again["code"].clone()), (422, json!("invalid")), "a correction without a reason");
    assert_eq!(api.call(Method::GET, REPORT, "/api/reports/2020-01", Some(OPERATOR), None).await, (200, report));
    assert_eq!(api.call(Method::GET, REPORT, "/api/reports/2020-02", Some(OPERATOR), None).await.0, 404);
    let (status, list) = api.call(Method::GET, "/api/reports", "/api/reports", Some(SEWER), None).await;
    assert_eq!((status, list["reports"].clone()), (200, json!([{"month": "2020-01", "version": 1}])));
    let (status, public) = api.call(Method::GET, "/public/stats/{month}", "/public/stats/2020-01", None, None).await;
    assert_eq!((status, public["sub_district"].clone()), (200, json!([])), "{public}");

    let hooks = "/api/webhooks/puc-sewer-ops/deliveries";
    let (status, list) = api.call(Method::GET, DELIVERIES, hooks, Some(DISPATCHER), None).await;
    assert_eq!((status, list), (200, json!({"deliveries": []})));
    let (status, error) = api.call(Method::GET, DELIVERIES, hooks, Some(DPW), None).await;
    assert_eq!((status, error["code"].clone()), (403, json!("forbidden")));
    let (status, error) =
        api.call(Method::GET, DELIVERIES, "/api/webhooks/puc.sewer/deliveries", Some(DISPATCHER), None).await;
    assert_eq!((status, error["code"].clone()), (422, json!("invalid")));

    // The residents' endpoints take a key too: no key is 401, a department's is 403.
    let rating = json!({"score": 2, "solved": false, "comment": "still flooding after the rain"});
    let (status, error) = api.call(Method::GET, REQUEST, "/api/requests/api-sewer-1", None, None).await;
    assert_eq!((status, error["code"].clone()), (401, json!("unauthorized")));
    let (status, error) =
        api.call(Method::POST, RATE, "/api/requests/api-sewer-1/rating", None, Some(rating.clone())).await;
    assert_eq!((status, error["code"].clone()), (401, json!("unauthorized")), "anyone reopening a case");
    let (status, error) = api.call(Method::GET, REQUEST, "/api/requests/api-sewer-1", Some(SEWER), None).await;
    assert_eq!((status, error["code"].clone()), (403, json!("forbidden")), "a department reads a request");
    let (status, error) =
        api.call(Method::POST, RATE, "/api/requests/api-sewer-1/rating", Some(SEWER), Some(rating.clone())).await;
    assert_eq!((status, error["code"].clone()), (403, json!("forbidden")), "a department rates its own case");
    let (status, error) =
        api.call(Method::POST, RATE, "/api/requests/api-sewer-1/rating", Some(OPERATOR), Some(rating.clone())).await;
    assert_eq!((status, error["code"].clone()), (403, json!("forbidden")), "an operator rates");
    assert_eq!(api.call(Method::GET, REQUEST, "/api/requests/api-sewer-1", Some(OPERATOR), None).await.0, 200);
    assert_eq!(service.cases.get("api-sewer-1").expect("record").state, CaseState::Resolved);

    // The resident follows up (through the 311 app) by the source system's id: state and event
    // names, no personal data.
    let (status, view) = api.call(Method::GET, REQUEST, "/api/requests/api-sewer-1", Some(SOURCE), None).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!((view["case_id"].clone(), view["state"].clone()), (json!("api-sewer-1"), json!("resolved")));
    assert_eq!(view["can_rate"], true);
    assert_eq!(events(&view["timeline"]), ["routed", "accepted", "progress", "resolved"]);
    assert_eq!(view["timeline"][3]["note"], "drain cleared");
    let (status, cleanup_view) = api.call(Method::GET, REQUEST, "/api/requests/api-clean-1", Some(SOURCE), None).await;
    assert_eq!(status, 200);
    for text in [view.to_string(), cleanup_view.to_string()] {
        let private = ["555-0100", "A. Resident", "1 Test St", "test case", "puc-sewer-ops", "dpw-ops-queue"];
        for private in private.iter().copied().chain(volunteer_ids.iter().map(String::as_str)) {
            assert!(!text.contains(private), "the public view shows {private}: {text}");
        }
    }
    assert_eq!(api.call(Method::GET, REQUEST, "/api/requests/no-such-request", Some(SOURCE), None).await.0, 404);
    let solved = json!({"score": 5, "solved": true});
    let (status, _) =
        api.call(Method::POST, RATE, "/api/requests/api-clean-1/rating", Some(SOURCE), Some(solved)).await;
    assert_eq!(status, 409, "a routed case cannot be rated yet");

    // …and rates it unsolved: the case goes back to the department that resolved it. The rating is
    // the resident's, whoever relayed it.
    let (status, view) =
        api.call(Method::POST, RATE, "/api/requests/api-sewer-1/rating", Some(SOURCE), Some(rating)).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["state"], "accepted");
    assert_eq!(events(&view["timeline"]), ["routed", "accepted", "progress", "resolved", "rated", "reopened"]);
    let (status, record) = api.call(Method::GET, CASE, "/api/cases/api-sewer-1", Some(SEWER), None).await;
    assert_eq!(status, 200);
    assert_eq!((record["state"].clone(), record["reopened"].clone()), (json!("accepted"), json!(1)));
    assert_eq!(record["ratings"][0]["solved"], false);
    assert_eq!(record["ratings"][0]["department"], "puc-sewer-ops");
    let rated = record["timeline"].as_array().expect("timeline").iter().find(|e| e["event"] == "rated").cloned();
    assert_eq!(rated.expect("rated")["actor"], json!({"kind": "resident", "id": "reporter"}));
    let reopened = service.cases.get("api-sewer-1").expect("record");
    assert_eq!((reopened.state, reopened.reopened), (CaseState::Accepted, 1));

    // A search and the repeats, as documented: the two cases share a place.
    let (status, found) = api.call(Method::GET, LIST, "/api/cases?q=api-sewer-1", Some(DISPATCHER), None).await;
    assert_eq!((status, ids(&found)), (200, vec!["api-sewer-1".to_owned()]), "{found}");
    let (status, error) = api.call(Method::GET, LIST, "/api/cases?q=-", Some(DISPATCHER), None).await;
    assert_eq!((status, error["code"].clone()), (422, json!("invalid")), "{error}");
    const REPEATS: &str = "/api/cases/{id}/repeats";
    let (status, repeats) =
        api.call(Method::GET, REPEATS, "/api/cases/api-sewer-1/repeats", Some(DISPATCHER), None).await;
    assert_eq!((status, ids(&repeats)), (200, vec!["api-clean-1".to_owned()]), "{repeats}");
    let (status, _) = api.call(Method::GET, REPEATS, "/api/cases/api-sewer-1/repeats", Some(DPW), None).await;
    assert_eq!(status, 403, "another department's case");

    // Residents' requests are rate-limited per address, keyed as they are.
    let mut limited = None;
    for _ in 0..=PUBLIC_RATE {
        let (status, body) = api.call(Method::GET, REQUEST, "/api/requests/api-sewer-1", Some(SOURCE), None).await;
        if status == 429 {
            limited = Some(body);
            break;
        }
    }
    assert_eq!(limited.expect("a 429 within the bucket's size")["code"], "rate_limited");
    // The cases endpoints, from the same address, are not.
    assert_eq!(api.call(Method::GET, CASE, "/api/cases/api-sewer-1", Some(DISPATCHER), None).await.0, 200);

    // The resident's tracking page, with the token the receipt would have carried (keyed by the
    // secret in the console's bucket): its view, and a rating once the case is resolved again.
    let secret = bus.js.get_key_value("linkbus_console").await.expect("the bucket");
    let key = secret.get("tracking-secret").await.expect("read").expect("the tracking key");
    let key: [u8; 32] = key.as_ref().try_into().expect("32 bytes");
    let token = linkbus_adapters::tracking::Tracking::new(key, "").token("api-sewer-1");
    const TRACK: &str = "/api/track/{id}";
    const TRACK_RATE: &str = "/api/track/{id}/rating";
    let resolve = json!({"action": "resolve", "note": "Drain cleared again"});
    assert_eq!(api.call(Method::POST, ACT, "/api/cases/api-sewer-1/actions", Some(SEWER), Some(resolve)).await.0, 200);
    let (status, view) =
        api.call(Method::POST, TRACK, "/api/track/api-sewer-1", None, Some(json!({"token": token}))).await;
    assert_eq!((status, view["state"].as_str()), (200, Some("resolved")), "{view}");
    let (status, _) = api.call(Method::POST, TRACK, "/api/track/api-sewer-1", None, Some(json!({"token": "00"}))).await;
    assert_eq!(status, 404);
    let (status, _) = api.call(Method::POST, TRACK, "/api/track/api-sewer-1", None, Some(json!({}))).await;
    assert_eq!(status, 422);
    let rating = json!({"token": token, "score": 4, "solved": true});
    let (status, view) = api.call(Method::POST, TRACK_RATE, "/api/track/api-sewer-1/rating", None, Some(rating)).await;
    assert_eq!(status, 200, "{view}");

    // Every documented operation of the closed loop answered 200 at least once. The adapters'
    // routes exist only where `[adapters.*]` configures them; their own tests (adapters_emergency,
    // open311, grid) exercise them, not against the document; so do the volunteers' app's
    // (`volunteer_app`, against `linkbus up`, which serves them).
    let seen = api.seen.lock().expect("lock").clone();
    let adapter = |template: &str| {
        template.starts_with("/api/adapters/")
            || template.starts_with("/open311/")
            || template.contains("/api/volunteer")
    };
    for (template, item) in api.doc["paths"].as_object().expect("paths").iter().filter(|(t, _)| !adapter(t)) {
        for method in item.as_object().expect("operations").keys() {
            assert!(
                seen.contains(&(template.clone(), method.clone(), 200)),
                "{method} {template} was never answered 200 in this test"
            );
        }
    }

    // Graceful shutdown: the server stops, and then nothing listens.
    stop.cancel();
    tokio::time::timeout(WAIT, server).await.expect("the API stops").expect("no panic").expect("served");
    let refused = tokio::time::timeout(Duration::from_secs(5), api.http.get(format!("{}/healthz", api.base)).send())
        .await
        .expect("an answer in time");
    assert!(refused.is_err(), "the API still answers after shutdown");
    service.stop().await;
}

/// `linkbus up` as a process serves the API next to the service, prints its address, and stops it
/// on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linkbus_up_serves_the_api_and_stops_it_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = linkbus_tests::write_config(
        dir.path(),
        &format!(
            "[nats]\nembedded_data_dir = \"{}\"\nembedded_port = 0\n[region]\ndir = \"{}\"\n\
             [api]\nlisten = \"127.0.0.1:0\"\n[[api.keys]]\nrole = \"operator\"\nid = \"olga\"\nsha256 = \"{}\"\n",
            dir.path().join("nats").display(),
            linkbus_tests::sf_region_dir().display(),
            hash_key(OPERATOR)
        ),
    );
    let (mut up, announced) = linkbus_tests::start_up(
        std::process::Command::new(env!("CARGO_BIN_EXE_linkbus-under-test"))
            .args(["up", "--config"])
            .arg(&config)
            .env_remove("LINKBUS_NATS_URL"),
    );
    let addr = announced.api().to_owned();
    let http = reqwest::Client::builder().timeout(WAIT).build().expect("client");
    let get = |path: &str, key: Option<&str>| {
        let mut request = http.get(format!("http://{addr}{path}"));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        async move {
            let response = request.send().await.expect("an answer");
            (response.status().as_u16(), response.bytes().await.expect("body"))
        }
    };
    assert_eq!(get("/healthz", None).await, (200, bytes::Bytes::from_static(b"ok")));
    let (status, doc) = get("/api/openapi.json", None).await;
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_slice::<Value>(&doc).expect("JSON"), openapi::document());
    assert_eq!(get("/api/cases", None).await.0, 401);
    assert_eq!(get("/api/cases", Some(OPERATOR)).await.0, 200);

    let pid = nix::unistd::Pid::from_raw(i32::try_from(up.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let status = tokio::time::timeout(WAIT, tokio::task::spawn_blocking(move || up.wait()))
        .await
        .expect("linkbus up stops in time")
        .expect("join")
        .expect("wait");
    assert!(status.success(), "linkbus up exited with {status} on SIGTERM");
    assert!(std::net::TcpStream::connect(&addr).is_err(), "the API still listens on {addr}");
}

/// A webhook configured for `puc-sewer-ops` delivers its case; the deliveries endpoint shows the
/// delivery `delivered` to a dispatcher and to `puc-sewer-ops`, and refuses `dpw-ops-queue`; the
/// department figures count its acceptance.
#[tokio::test]
async fn webhook_deliveries_and_department_stats_over_http() {
    const DELIVERIES: &str = "/api/webhooks/{department}/deliveries";
    const SEWER_HOOKS: &str = "/api/webhooks/puc-sewer-ops/deliveries";
    const STATS: &str = "/api/stats/departments";

    // A receiver that takes everything and notes each request's Linkbus-Webhook-Id.
    let received: Arc<Mutex<Vec<String>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("receiver binds");
    let receiver_addr = listener.local_addr().expect("addr");
    let seen = received.clone();
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap| async move {
            let id = headers.get(webhooks::HEADER_WEBHOOK_ID).and_then(|v| v.to_str().ok()).unwrap_or_default();
            seen.lock().expect("lock").push(id.to_owned());
            axum::http::StatusCode::NO_CONTENT
        }),
    );
    let receiver_stop = CancellationToken::new();
    let receiver_task = tokio::spawn(
        axum::serve(listener, receiver).with_graceful_shutdown(receiver_stop.clone().cancelled_owned()).into_future(),
    );

    let bus = TestBus::start().await;
    let mut config: Config = bus.config();
    config.api.listen = "127.0.0.1:0".into();
    config.api.keys = keys();
    let mut webhook =
        WebhookConfig::new("puc-sewer-ops", &format!("http://{receiver_addr}/hook"), "api-test-secret-41c7");
    webhook.timeout = Duration::from_secs(2);
    config.webhooks = vec![webhook];
    let service = bus.service(&config).await;
    let (api, stop, server) = serve(&config, &service).await;

    publish_case(&bus.js, &case("hook-sewer-1", SourceSystem::PublicService, "sewer_issues", MISSION.0, MISSION.1))
        .await;
    wait_for_case(&service, "hook-sewer-1", "its record", |_| true).await;

    // The routed case is delivered, and its record says so.
    let deadline = tokio::time::Instant::now() + WAIT;
    let delivery = loop {
        let (status, list) = api.call(Method::GET, DELIVERIES, SEWER_HOOKS, Some(DISPATCHER), None).await;
        assert_eq!(status, 200, "{list}");
        let found = list["deliveries"].as_array().expect("deliveries").iter().find(|d| {
            d["case_id"] == "hook-sewer-1" && d["event_type"] == wire::TYPE_CASE_ROUTED && d["status"] == "delivered"
        });
        if let Some(found) = found {
            break found.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "the routed case was never delivered: {list}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(delivery["department"], "puc-sewer-ops");
    assert_eq!((delivery["attempts"].clone(), delivery["last_http_status"].clone()), (json!(1), json!(204)));
    assert!(delivery["delivered_at"].is_string(), "{delivery}");
    let msg_id = delivery["msg_id"].as_str().expect("msg_id").to_owned();
    assert!(received.lock().expect("lock").contains(&msg_id), "the receiver got {msg_id}");

    // The department reads its own (and an operator anyone's); another department and a source
    // key may not.
    for key in [SEWER, OPERATOR] {
        let (status, list) = api.call(Method::GET, DELIVERIES, SEWER_HOOKS, Some(key), None).await;
        assert_eq!(status, 200, "{list}");
        assert!(list["deliveries"].as_array().expect("deliveries").contains(&delivery), "{list}");
    }
    for key in [DPW, SOURCE] {
        let (status, error) = api.call(Method::GET, DELIVERIES, SEWER_HOOKS, Some(key), None).await;
        assert_eq!((status, error["code"].clone()), (403, json!("forbidden")), "{error}");
    }
    let (status, list) =
        api.call(Method::GET, DELIVERIES, "/api/webhooks/dpw-ops-queue/deliveries", Some(DPW), None).await;
    assert_eq!((status, list), (200, json!({"deliveries": []})), "dpw-ops-queue has no webhook");

    // puc-sewer-ops accepts: its figures count it.
    let accept = json!({"action": "accept"});
    let (status, record) = api
        .call(Method::POST, "/api/cases/{id}/actions", "/api/cases/hook-sewer-1/actions", Some(SEWER), Some(accept))
        .await;
    assert_eq!((status, record["state"].clone()), (200, json!("accepted")), "{record}");
    for key in [DISPATCHER, SEWER] {
        let (status, stats) = api.call(Method::GET, STATS, "/api/stats/departments", Some(key), None).await;
        assert_eq!(status, 200, "{stats}");
        let row = stats["departments"].as_array().expect("rows").iter().find(|s| s["department"] == "puc-sewer-ops");
        let row = row.expect("a row for puc-sewer-ops");
        assert_eq!(
            (row["cases"].clone(), row["accepted"].clone(), row["rejected"].clone()),
            (json!(1), json!(1), json!(0))
        );
    }
    let (status, error) = api.call(Method::GET, STATS, "/api/stats/departments", Some(SOURCE), None).await;
    assert_eq!((status, error["code"].clone()), (403, json!("forbidden")));

    // A second case, a kilometre north (not merged into the first): listed first, and alone with
    // `limit=1`.
    let north = MISSION.1 + 0.009;
    publish_case(&bus.js, &case("hook-sewer-2", SourceSystem::PublicService, "sewer_issues", MISSION.0, north)).await;
    let second = wait_for_case(&service, "hook-sewer-2", "its record", |_| true).await;
    assert_eq!((second.merged_into, second.departments), (None, vec!["puc-sewer-ops".to_owned()]));
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, list) = api.call(Method::GET, DELIVERIES, SEWER_HOOKS, Some(SEWER), None).await;
        let deliveries = list["deliveries"].as_array().expect("deliveries");
        let sequences: Vec<u64> = deliveries.iter().filter_map(|d| d["stream_sequence"].as_u64()).collect();
        assert!(sequences.windows(2).all(|w| w[0] > w[1]), "newest first: {sequences:?}");
        if deliveries.first().is_some_and(|d| d["case_id"] == "hook-sewer-2" && d["status"] == "delivered") {
            let limited = format!("{SEWER_HOOKS}?limit=1");
            let (_, newest) = api.call(Method::GET, DELIVERIES, &limited, Some(SEWER), None).await;
            assert_eq!(newest["deliveries"], json!([deliveries[0]]));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the second case was never delivered: {list}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    stop.cancel();
    tokio::time::timeout(WAIT, server).await.expect("the API stops").expect("no panic").expect("served");
    service.stop().await;
    receiver_stop.cancel();
    tokio::time::timeout(WAIT, receiver_task).await.expect("the receiver stops").expect("no panic").expect("served");
}
