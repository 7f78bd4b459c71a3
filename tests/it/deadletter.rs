//! `linkbus deadletter list | replay` as an operator runs it, against a real nats-server: cases
//! refused for a cause that is then fixed (a payload limit too low) are listed with their stage,
//! code, size and subject, replayed to where they first arrived and routed, each once; running
//! the replay again sends nothing; a replayed input that is still bad goes back to the dead
//! letters with its reason.

use linkbus_bus::nats::{STREAM_CASES, STREAM_DEADLETTER};
use linkbus_tests::{TestBus, WAIT, case, publish_case, publish_raw, read_stream, wait_for_messages};
use linkbus_wire::SourceSystem;

/// Mission District, San Francisco.
const MISSION: (f64, f64) = (-122.4194, 37.7599);

/// Runs `linkbus deadletter ARGS…` against `bus`; its stdout, and whether it succeeded (exit 0)
/// rather than having some dead letters it could not replay (exit 3).
fn deadletter(bus: &TestBus, args: &[&str]) -> (String, bool) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_linkbus-under-test"))
        .args(["deadletter", "--nats-url", &bus.server.url()])
        .args(args)
        .env_remove("LINKBUS_CONFIG")
        .output()
        .expect("linkbus deadletter runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("linkbus deadletter {args:?}:\n{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success() || out.status.code() == Some(3),
        "linkbus deadletter {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (stdout, out.status.success())
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_and_replayed_once_after_the_cause_is_fixed() {
    let bus = TestBus::start().await;
    // The cause: a payload limit lower than the cases real systems send.
    let mut strict = bus.config();
    strict.router.max_payload_bytes = 1024;
    let service = bus.service(&strict).await;

    let long = |id: &str| {
        let mut event = case(id, SourceSystem::PublicService, "sewer_issues", MISSION.0, MISSION.1);
        event.data.description = Some("water coming up through the drain, ".repeat(60));
        event
    };
    publish_case(&bus.js, &long("dl-long-1")).await;
    publish_case(&bus.js, &long("dl-long-2")).await;
    publish_case(&bus.js, &case("dl-short", SourceSystem::PublicService, "sewer_issues", MISSION.0, MISSION.1)).await;
    publish_raw(&bus.js, "ingest.public_service.sewer_issues", "dl-garbage", "not json at all".into()).await;
    assert_eq!(wait_for_messages(&bus.js, STREAM_DEADLETTER, 3, WAIT).await, 3);
    assert_eq!(read_stream(&bus.js, STREAM_CASES, "case.dl-short.routed", 1).await.len(), 1);

    // The fix: the default limit.
    service.stop().await;
    let service = bus.service(&bus.config()).await;

    let (text, _) = deadletter(&bus, &["list"]);
    assert_eq!(text.lines().count(), 3, "{text}");
    assert_eq!(text.matches("too_large").count(), 2, "{text}");
    assert!(text.contains("ingest.public_service.sewer_issues"), "{text}");
    let (listed, _) = deadletter(&bus, &["list", "--code", "malformed", "--json"]);
    let garbage = json_lines(&listed);
    assert_eq!(garbage.len(), 1, "{listed}");
    assert_eq!((garbage[0]["stage"].as_str(), garbage[0]["size"].as_u64()), (Some("ingest"), Some(15)));
    assert_eq!(garbage[0]["original_msg_id"], "dl-garbage");

    let (summary, ok) = deadletter(&bus, &["replay", "--code", "too_large"]);
    assert!(ok && summary.contains("replayed          2"), "{summary}");
    for id in ["dl-long-1", "dl-long-2"] {
        let routed = read_stream(&bus.js, STREAM_CASES, &format!("case.{id}.routed"), 1).await;
        assert_eq!(routed.len(), 1, "{id} not routed after the replay");
    }

    // Idempotent: the same replay again sends nothing; the list shows what was replayed.
    let (again, ok) = deadletter(&bus, &["replay", "--code", "too_large"]);
    assert!(ok && again.contains("replayed          0") && again.contains("already replayed  2"), "{again}");
    let (listed, _) = deadletter(&bus, &["list", "--stage", "ingest", "--json"]);
    let replayed = json_lines(&listed).iter().filter(|l| !l["replayed"].is_null()).count();
    assert_eq!(replayed, 2, "{listed}");

    // Still bad after a replay: back in the dead letters, with its reason, as a new one.
    let seq = garbage[0]["sequence"].as_u64().expect("sequence").to_string();
    let (summary, ok) = deadletter(&bus, &["replay", "--seq", &seq]);
    assert!(ok && summary.contains("replayed          1"), "{summary}");
    assert_eq!(wait_for_messages(&bus.js, STREAM_DEADLETTER, 4, WAIT).await, 4);
    let (listed, _) = deadletter(&bus, &["list", "--code", "malformed", "--json"]);
    assert_eq!(json_lines(&listed).len(), 2, "{listed}");

    // Each case routed exactly once.
    let routed = read_stream(&bus.js, STREAM_CASES, "case.*.routed", 3).await;
    let mut ids: Vec<&str> = routed.iter().map(|m| m.subject.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["case.dl-long-1.routed", "case.dl-long-2.routed", "case.dl-short.routed"]);
    service.stop().await;
}
