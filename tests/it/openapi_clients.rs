//! Clients generated from the OpenAPI document a running service serves work, as issue 17 asks:
//! openapi-python-client generates a Python package from it, and a script using that package
//! lists a department's cases, reads one and accepts it (and reads the 409 of accepting it
//! twice) against the same service; openapi-typescript generates TypeScript types from it, and
//! `tsc --strict` accepts a small file using them (`tests/tools/openapi-clients/check.ts`).
//! The generators are pinned in `tests/tools/openapi-clients/` and installed under
//! `.linkbus/tools` by `ops/scripts/ensure-test-tools`, so the test runs offline.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use linkbus_tests::{TestBus, WAIT, case, publish_case, repo_root, wait_for_case};
use linkbus_wire::{CaseState, SourceSystem};
use serde_json::{Value, json};

use super::api::{MISSION, SEWER, keys, serve};

const TOOLS: &str = "tests/tools/openapi-clients";

/// A Python script using the generated package `linkbus_client`: as the sewer department, lists
/// its public-service cases, reads the first, accepts it, accepts it again; prints what it got.
const SCRIPT: &str = r#"
import json, sys
from linkbus_client import AuthenticatedClient
from linkbus_client.api.default import act_on_case, get_case, list_cases
from linkbus_client.models import ActionType0, CaseList, CaseRecord, CaseState, ErrorBody, SourceSystem

client = AuthenticatedClient(base_url=sys.argv[1], token=sys.argv[2], raise_on_unexpected_status=True)
listed = list_cases.sync(client=client, system=SourceSystem.PUBLIC_SERVICE, state=CaseState.ROUTED)
assert isinstance(listed, CaseList), listed
ids = [c.case_id for c in listed.cases]
one = get_case.sync(ids[0], client=client)
assert isinstance(one, CaseRecord), one
after = act_on_case.sync(ids[0], client=client, body=ActionType0(action="accept"))
assert isinstance(after, CaseRecord), after
again = act_on_case.sync(ids[0], client=client, body=ActionType0(action="accept"))
assert isinstance(again, ErrorBody), again
print(json.dumps({
    "listed": ids,
    "case": one.case_id,
    "state": str(one.state),
    "departments": one.departments,
    "after": str(after.state),
    "events": [str(e.event) for e in after.timeline],
    "again": str(again.code),
}))
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

/// The document as the service serves it, written to `dir/openapi.json`.
async fn served_document(base: &str, dir: &Path) -> PathBuf {
    let served = reqwest::get(format!("{base}/api/openapi.json")).await.expect("GET /api/openapi.json");
    assert_eq!(served.status(), 200);
    let path = dir.join("openapi.json");
    std::fs::write(&path, served.bytes().await.expect("body")).expect("write the document");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_python_client_lists_reads_and_accepts_a_case() {
    let bus = TestBus::start().await;
    let mut config = bus.config();
    config.api.listen = "127.0.0.1:0".into();
    config.api.keys = keys();
    let service = bus.service(&config).await;
    let (api, stop, server) = serve(&config, &service).await;
    let sewer = case("py-sewer-1", SourceSystem::PublicService, "sewer_issues", MISSION.0, MISSION.1);
    let cleanup = case("py-clean-1", SourceSystem::PublicService, "street_and_sidewalk_cleaning", MISSION.0, MISSION.1);
    publish_case(&bus.js, &sewer).await;
    publish_case(&bus.js, &cleanup).await;
    wait_for_case(&service, "py-sewer-1", "its record", |_| true).await;
    wait_for_case(&service, "py-clean-1", "its record", |_| true).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let document = served_document(&api.base, dir.path()).await;
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

    let mut script = Command::new("python3");
    let path = std::env::join_paths([dir.path(), &site]).expect("PYTHONPATH");
    script.env("PYTHONPATH", path).args(["-c", SCRIPT, &api.base, SEWER]);
    let out = run(script, "the script using the generated client").await;
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

    stop.cancel();
    tokio::time::timeout(WAIT, server).await.expect("the API stops").expect("no panic").expect("served");
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_types_generated_from_the_served_document_type_check() {
    let bus = TestBus::start().await;
    let mut config = bus.config();
    config.api.listen = "127.0.0.1:0".into();
    let service = bus.service(&config).await;
    let (api, stop, server) = serve(&config, &service).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let document = served_document(&api.base, dir.path()).await;
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
