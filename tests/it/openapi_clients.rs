//! Clients generated from the OpenAPI document a running service serves work, as issue 17 asks:
//! openapi-python-client generates a Python package from it, and a script using that package
//! lists a department's cases, reads one and accepts it (and reads the 409 of accepting it
//! twice), then, as a 311 app, reads the Open311 services, posts a request and reads it back,
//! against the same service (served as `linkbus up` serves it, adapters included);
//! openapi-typescript generates TypeScript types from it, and
//! `tsc --strict` accepts a small file using them (`tests/tools/openapi-clients/check.ts`).
//! The generators are pinned in `tests/tools/openapi-clients/` and installed under
//! `.linkbus/tools` by `ops/scripts/ensure-test-tools`, so the test runs offline.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use linkbus::config::Config;
use linkbus::service::Service;
use linkbus_http::auth::hash_key;
use linkbus_http::config::{ApiKey, ApiRole};
use linkbus_tests::{TestBus, WAIT, case, publish_case, repo_root, sf_region, wait_for_case};
use linkbus_wire::{CaseState, SourceSystem};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::api::{MISSION, SEWER, keys};

const TOOLS: &str = "tests/tools/openapi-clients";
/// The city's 311 app, posting as the Open311 adapter's source.
const APP: &str = "k-open311-app-8d2e6a0c4b1f3579";

/// A Python script using the generated package `linkbus_client` (arguments: the base URL, the
/// department's key, a longitude and latitude, the 311 app's key): as the sewer department, lists
/// its public-service cases, reads the first, accepts it, accepts it again; as the 311 app, reads
/// the services and posts a sewer request. Prints what it got.
const SCRIPT: &str = r#"
import json, sys
from linkbus_client import AuthenticatedClient, Client
from linkbus_client.api.default import (
    act_on_case, get_case, list_cases, open_311_create_request, open_311_services,
)
from linkbus_client.models import (
    ActionAccept, CaseList, CaseRecord, CaseState, Created, ErrorBody, Open311CreateRequestBody, Open311Format,
    Service, SourceSystem,
)

client = AuthenticatedClient(base_url=sys.argv[1], token=sys.argv[2], raise_on_unexpected_status=True)
listed = list_cases.sync(client=client, system=SourceSystem.PUBLIC_SERVICE, state=CaseState.ROUTED)
assert isinstance(listed, CaseList), listed
ids = [c.case_id for c in listed.cases]
one = get_case.sync(ids[0], client=client)
assert isinstance(one, CaseRecord), one
after = act_on_case.sync(ids[0], client=client, body=ActionAccept(action="accept"))
assert isinstance(after, CaseRecord), after
again = act_on_case.sync(ids[0], client=client, body=ActionAccept(action="accept"))
assert isinstance(again, ErrorBody), again

app = Client(base_url=sys.argv[1], raise_on_unexpected_status=True)
services = open_311_services.sync(Open311Format.JSON, client=app)
assert all(isinstance(s, Service) for s in services), services
form = Open311CreateRequestBody(
    service_code="SEWER", lat=str(sys.argv[4]), long=str(sys.argv[3]), description="Sewer backing up", api_key=sys.argv[5]
)
created = open_311_create_request.sync(Open311Format.JSON, client=app, body=form)
assert all(isinstance(c, Created) for c in created), created
print(json.dumps({
    "listed": ids,
    "case": one.case_id,
    "state": str(one.state),
    "departments": one.departments,
    "after": str(after.state),
    "events": [str(e.event) for e in after.timeline],
    "again": str(again.code),
    "services": [s.service_code for s in services],
    "request": created[0].service_request_id,
}))
"#;

/// Then, once the request's case is in the case book (arguments: the base URL, the request's
/// id), the 311 app reads the request back.
const READ: &str = r#"
import json, sys
from linkbus_client import Client
from linkbus_client.api.default import open_311_request
from linkbus_client.models import Open311Format, RequestView

app = Client(base_url=sys.argv[1], raise_on_unexpected_status=True)
views = open_311_request.sync(sys.argv[2], Open311Format.JSON, client=app)
assert all(isinstance(v, RequestView) for v in views), views
print(json.dumps([[v.service_request_id, v.service_code, v.status] for v in views]))
"#;

/// Runs `command` off the runtime's threads (the service answers on them meanwhile), and
/// returns its output once it succeeded.
async fn run(mut command: Command, what: &'static str) -> Output {
    let out = tokio::task::spawn_blocking(move || command.output()).await.expect("joins");
    let out = out.unwrap_or_else(|e| panic!("{what} does not run ({e}): run ops/scripts/ensure-test-tools"));
    assert!(
        out.status.success(),
        "{what}: {}\n{}\n(run ops/scripts/ensure-test-tools if it is missing)",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Serves `service` as `linkbus up` does (the API and the adapters' routes) on a real socket: its
/// base URL, and what stops it.
async fn serve(config: &Config, service: &Service) -> (String, CancellationToken, JoinHandle<std::io::Result<()>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let app = linkbus::up::api_app(config, &sf_region(), service).expect("app");
    let stop = CancellationToken::new();
    let server = tokio::spawn(linkbus_http::serve(listener, app, stop.clone().cancelled_owned()));
    (base, stop, server)
}

/// The document as the service serves it, written to `dir/openapi.json`.
async fn served_document(base: &str, dir: &Path) -> PathBuf {
    let served = reqwest::get(format!("{base}/api/openapi.json")).await.expect("GET /api/openapi.json");
    assert_eq!(served.status(), 200);
    let path = dir.join("openapi.json");
    std::fs::write(&path, served.bytes().await.expect("body")).expect("write the document");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_python_client_works_a_case_and_open311() {
    let bus = TestBus::start().await;
    let mut config = bus.config();
    let app = ApiKey {
        role: ApiRole::Source,
        id: "sf-311-app".into(),
        sha256: hash_key(APP),
        source: Some("/open311".into()),
    };
    config.api.keys = keys().into_iter().chain([app]).collect();
    let service = bus.service(&config).await;
    let (base, stop, server) = serve(&config, &service).await;
    let sewer = case("py-sewer-1", SourceSystem::PublicService, "sewer_issues", MISSION.0, MISSION.1);
    let cleanup = case("py-clean-1", SourceSystem::PublicService, "street_and_sidewalk_cleaning", MISSION.0, MISSION.1);
    publish_case(&bus.js, &sewer).await;
    publish_case(&bus.js, &cleanup).await;
    wait_for_case(&service, "py-sewer-1", "its record", |_| true).await;
    wait_for_case(&service, "py-clean-1", "its record", |_| true).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let document = served_document(&base, dir.path()).await;
    let site = repo_root().join(".linkbus/tools/python-openapi");
    let mut generate = Command::new("python3");
    generate
        .current_dir(dir.path())
        .env("PYTHONPATH", &site)
        .args(["-m", "openapi_python_client", "generate", "--meta", "none", "--path"])
        .arg(&document)
        .arg("--config")
        .arg(repo_root().join(TOOLS).join("config.yaml"));
    run(generate, "openapi-python-client generate").await;
    for module in ["list_cases", "get_case", "act_on_case", "open_311_requests", "open_311_create_request"] {
        let file = dir.path().join(format!("linkbus_client/api/default/{module}.py"));
        assert!(file.exists(), "the client has no {module}: the generator skipped its operation");
    }

    let path = std::env::join_paths([dir.path(), &site]).expect("PYTHONPATH");
    let python = |args: &[&str]| {
        let mut script = Command::new("python3");
        script.env("PYTHONPATH", &path).arg("-c").args(args);
        script
    };
    let (lon, lat) = (MISSION.0.to_string(), MISSION.1.to_string());
    let out = run(python(&[SCRIPT, &base, SEWER, &lon, &lat, APP]), "the script using the generated client").await;
    let got: Value = serde_json::from_slice(&out.stdout).expect("the script's JSON");

    // The department's own case only, read and accepted as the service has it.
    assert_eq!(got["listed"], json!(["py-sewer-1"]), "{got}");
    assert_eq!((&got["case"], &got["state"]), (&json!("py-sewer-1"), &json!("routed")), "{got}");
    assert_eq!(got["departments"], json!(["puc-sewer-ops"]));
    assert_eq!(got["after"], "accepted");
    assert_eq!(got["events"].as_array().and_then(|e| e.last()), Some(&json!("accepted")), "{got}");
    assert_eq!(got["again"], "conflict");
    let record = wait_for_case(&service, "py-sewer-1", "accepted", |r| r.state == CaseState::Accepted).await;
    assert_eq!(record.accepted_by.as_deref(), Some("puc-sewer-ops"));
    let other = wait_for_case(&service, "py-clean-1", "still routed", |_| true).await;
    assert_eq!(other.state, CaseState::Routed, "the other department's case is untouched");
    // The 311 app's request: a case from the Open311 source, and the request as the spec shows it.
    assert!(got["services"].as_array().is_some_and(|s| s.contains(&json!("SEWER"))), "{got}");
    let request = got["request"].as_str().expect("a service_request_id");
    let posted = wait_for_case(&service, &format!("open311-{request}"), "routed", |_| true).await;
    assert_eq!(posted.reports[0].source, "/open311");
    assert_eq!(posted.departments, ["puc-sewer-ops"]);
    let out = run(python(&[READ, &base, request]), "the generated client reading the request").await;
    let viewed: Value = serde_json::from_slice(&out.stdout).expect("the script's JSON");
    assert_eq!(viewed, json!([[request, "SEWER", "open"]]));

    stop.cancel();
    tokio::time::timeout(WAIT, server).await.expect("the API stops").expect("no panic").expect("served");
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_types_generated_from_the_served_document_type_check() {
    let bus = TestBus::start().await;
    let config = bus.config();
    let service = bus.service(&config).await;
    let (base, stop, server) = serve(&config, &service).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let document = served_document(&base, dir.path()).await;
    let bin = repo_root().join(".linkbus/tools/node/node_modules/.bin");

    let mut generate = Command::new(bin.join("openapi-typescript"));
    generate.arg(&document).arg("-o").arg(dir.path().join("linkbus.d.ts"));
    run(generate, "openapi-typescript").await;
    std::fs::copy(repo_root().join(TOOLS).join("check.ts"), dir.path().join("check.ts")).expect("copy check.ts");
    let mut check = Command::new(bin.join("tsc"));
    check.current_dir(dir.path()).args([
        "--noEmit",
        "--strict",
        "--target",
        "es2022",
        "--module",
        "nodenext",
        "--moduleResolution",
        "nodenext",
        "check.ts",
    ]);
    run(check, "tsc on the generated types").await;

    stop.cancel();
    tokio::time::timeout(WAIT, server).await.expect("the API stops").expect("no panic").expect("served");
    service.stop().await;
}
