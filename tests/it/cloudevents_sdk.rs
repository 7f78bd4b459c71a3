//! Events made by the official CloudEvents SDKs, each exactly as its README makes them: the
//! Python SDK (`cloudevents` on PyPI, installed by `ops/scripts/ensure-test-tools` into
//! `.linkbus/tools/python-cloudevents`) and the JavaScript SDK (`cloudevents` on npm, pinned by
//! `tests/tools/cloudevents-js/package-lock.json`, installed into
//! `.linkbus/tools/node-cloudevents`). Neither SDK's default event has a `datacontenttype` (the
//! JavaScript one sends `application/cloudevents+json; charset=utf-8` and a `time` with
//! milliseconds), and an extension attribute (`traceparent`) goes beside the core ones. For
//! each SDK the structured event is routed, and its trace context reaches the department's copy
//! and the stored decision; the binary-mode event (the attributes as `ce-` headers) is refused
//! with a reason that says what to send instead. A trace given as NATS headers instead of
//! attributes reaches the department too.

use async_nats::HeaderMap;
use bytes::Bytes;
use linkbus_bus::nats::{self, HEADER_REASON, HEADER_REASON_CODE, STREAM_CASES, STREAM_DEADLETTER, STREAM_ROUTED};
use linkbus_tests::{TestBus, header, publish_raw, read_stream, repo_root, wait_for_case};
use serde_json::Value;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const SUBJECT: &str = "ingest.public_service.sewer_issues";

/// An official CloudEvents SDK, run as a script given the event's `id` and `traceparent`.
#[derive(Clone, Copy)]
enum Sdk {
    Python,
    JavaScript,
}

const PYTHON: &str = r#"
import json, sys
from cloudevents.core.v1.event import CloudEvent
from cloudevents.core.bindings.http import to_binary_event, to_structured_event
attributes = {
    "type": "org.linkbus.case.reported",
    "source": "/sf311",
    "id": sys.argv[1],
    "traceparent": sys.argv[2],
}
data = {
    "system": "public_service", "category": "sewer_issues", "priority": 3,
    "location": {"lon": -122.4194, "lat": 37.7599}, "source_id": sys.argv[1],
    "reported_at": "2026-12-07T08:00:00Z", "address": "2400 Mission St",
}
event = CloudEvent(attributes, data)
out = {}
for mode, message in (("structured", to_structured_event(event)), ("binary", to_binary_event(event))):
    out[mode] = {"headers": dict(message.headers), "body": message.body.decode()}
print(json.dumps(out))
"#;

const JAVASCRIPT: &str = r#"
const { HTTP, CloudEvent } = require("cloudevents");
const [id, traceparent] = process.argv.slice(1);
const data = {
  system: "public_service", category: "sewer_issues", priority: 3,
  location: { lon: -122.4194, lat: 37.7599 }, source_id: id,
  reported_at: "2026-12-07T08:00:00Z", address: "2400 Mission St",
};
const ce = new CloudEvent({ type: "org.linkbus.case.reported", source: "/sf311", id, traceparent, data });
const out = {};
for (const [mode, message] of [["structured", HTTP.structured(ce)], ["binary", HTTP.binary(ce)]]) {
  out[mode] = { headers: message.headers, body: message.body };
}
console.log(JSON.stringify(out));
"#;

impl Sdk {
    /// The SDK's structured and binary HTTP messages for one San Francisco sewer report with
    /// `id`: `{"structured": {"headers", "body"}, "binary": {"headers", "body"}}`, bodies as text.
    fn messages(self, id: &str) -> Value {
        let mut command = match self {
            Sdk::Python => {
                let mut python = std::process::Command::new("python3");
                python.env("PYTHONPATH", repo_root().join(".linkbus/tools/python-cloudevents")).args(["-c", PYTHON]);
                python
            }
            Sdk::JavaScript => {
                let mut node = std::process::Command::new("node");
                node.env("NODE_PATH", repo_root().join(".linkbus/tools/node-cloudevents/node_modules"))
                    .args(["-e", JAVASCRIPT]);
                node
            }
        };
        let out = command.args([id, TRACEPARENT]).output().expect("the SDK's interpreter runs");
        assert!(
            out.status.success(),
            "the SDK (run ops/scripts/ensure-test-tools): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("the script's JSON")
    }
}

/// The SDK's structured event, published on NATS as the SDK made it, is routed, and its trace id
/// reaches the department's copy and the stored decision.
async fn structured_event_is_routed_with_its_trace(sdk: Sdk, id: &str) {
    let bus = TestBus::start().await;
    let service = bus.service(&bus.config()).await;
    let messages = sdk.messages(id);
    let structured = &messages["structured"];
    let content_type = structured["headers"]["content-type"].as_str().unwrap_or_default();
    assert!(content_type.starts_with("application/cloudevents+json"), "{structured}");
    let body: Value = serde_json::from_str(structured["body"].as_str().expect("text")).expect("JSON");
    assert!(body.get("datacontenttype").is_none(), "the SDK's default event has none: {body}");

    publish_raw(&bus.js, SUBJECT, id, Bytes::from(structured["body"].as_str().expect("text").to_owned())).await;
    let record = wait_for_case(&service, id, "routed", |_| true).await;
    assert!(!record.departments.is_empty(), "{record:?}");

    let copies = read_stream(&bus.js, STREAM_ROUTED, "routed.dept.>", 1).await;
    let copy: Value = serde_json::from_slice(&copies[0].payload).expect("a routed copy");
    assert_eq!(copy["data"]["case_id"], id);
    assert_eq!(copy["traceparent"], TRACEPARENT, "the department reads the trace: {copy}");
    let decisions = read_stream(&bus.js, STREAM_CASES, &format!("case.{id}.routed"), 1).await;
    let decision: Value = serde_json::from_slice(&decisions[0].payload).expect("the stored decision");
    assert_eq!(decision["traceparent"], TRACEPARENT);
    service.stop().await;
}

/// The SDK's binary-mode message, its headers as NATS headers, is dead-lettered as
/// `unsupported` with a reason that says to send the structured mode.
async fn binary_mode_is_refused_with_what_to_send(sdk: Sdk, id: &str) {
    let bus = TestBus::start().await;
    let service = bus.service(&bus.config()).await;
    let binary = &sdk.messages(id)["binary"];
    let mut headers = HeaderMap::new();
    for (name, value) in binary["headers"].as_object().expect("headers") {
        headers.insert(name.as_str(), value.as_str().expect("text"));
    }
    assert!(headers.get("ce-specversion").is_some(), "binary mode: {binary}");
    headers.insert("Nats-Msg-Id", id);
    let body = Bytes::from(binary["body"].as_str().expect("text").to_owned());
    bus.js.publish_with_headers(SUBJECT, headers, body).await.expect("publish").await.expect("stored");

    let letters = read_stream(&bus.js, STREAM_DEADLETTER, "deadletter.ingest", 1).await;
    let letter = letters
        .iter()
        .find(|m| header(m, nats::HEADER_ORIGINAL_ID).as_deref() == Some(id))
        .expect("a dead letter for the binary-mode event");
    assert_eq!(header(letter, HEADER_REASON_CODE).as_deref(), Some("unsupported"));
    let reason = header(letter, HEADER_REASON).unwrap_or_default();
    assert!(reason.contains("binary content mode") && reason.contains("structured mode"), "{reason}");
    assert!(service.cases.get(id).is_none(), "not routed");
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdks_event_is_routed_and_its_trace_reaches_the_department() {
    structured_event_is_routed_with_its_trace(Sdk::Python, "sf311-910001").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdks_binary_mode_is_refused_with_what_to_send() {
    binary_mode_is_refused_with_what_to_send(Sdk::Python, "sf311-910002").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_javascript_sdks_event_is_routed_and_its_trace_reaches_the_department() {
    structured_event_is_routed_with_its_trace(Sdk::JavaScript, "sf311-910004").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_javascript_sdks_binary_mode_is_refused_with_what_to_send() {
    binary_mode_is_refused_with_what_to_send(Sdk::JavaScript, "sf311-910005").await;
}

/// The SDK's structured event without the trace attribute, its trace given instead as NATS
/// headers (as a tracing library's NATS propagator sends it): the department's copy carries it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_in_nats_headers_reaches_the_department() {
    let bus = TestBus::start().await;
    let service = bus.service(&bus.config()).await;
    let id = "sf311-910003";
    let structured = &Sdk::Python.messages(id)["structured"];
    let mut body: Value = serde_json::from_str(structured["body"].as_str().expect("text")).expect("JSON");
    body.as_object_mut().expect("an event").remove("traceparent");
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", id);
    headers.insert("traceparent", TRACEPARENT);
    headers.insert("tracestate", "vendor=7");
    let body = Bytes::from(serde_json::to_vec(&body).expect("JSON"));
    bus.js.publish_with_headers(SUBJECT, headers, body).await.expect("publish").await.expect("stored");
    wait_for_case(&service, id, "routed", |_| true).await;

    let copies = read_stream(&bus.js, STREAM_ROUTED, "routed.dept.>", 1).await;
    let copy: Value = serde_json::from_slice(&copies[0].payload).expect("a routed copy");
    assert_eq!((&copy["traceparent"], &copy["tracestate"]), (&TRACEPARENT.into(), &"vendor=7".into()), "{copy}");
    let record = service.cases.get(id).expect("the case record");
    assert_eq!(record.trace.map(|t| t.traceparent).as_deref(), Some(TRACEPARENT));
    service.stop().await;
}
