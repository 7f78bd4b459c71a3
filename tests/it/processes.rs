//! `linkbus` as separate processes: a router killed mid-stream loses no case and routes none
//! twice; `linkbus up` with its embedded nats-server replays real requests and stops cleanly;
//! `linkbus route` and `config check` work as the README shows.

use std::collections::HashSet;
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use linkbus_adapters::sf311;
use linkbus_bus::nats::{STREAM_CASES, STREAM_INGEST_PUBLIC_SERVICE};
use linkbus_tests::{
    Running, TestBus, WAIT, publish_case, read_stream, repo_root, sf_region_dir, stream_messages, wait_for_messages,
    write_config,
};

/// The `linkbus` command line as a separate process.
fn linkbus_command() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_linkbus-under-test"))
}

fn router_config(bus: &TestBus) -> String {
    format!(
        "[nats]\nurl = \"{}\"\n[region]\ndir = \"{}\"\n[router]\nack_wait_secs = 2\n[api]\nlisten = \"127.0.0.1:0\"\n",
        bus.server.url(),
        sf_region_dir().display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_killed_mid_stream_loses_no_case_and_routes_none_twice() {
    let bus = TestBus::start().await;
    let config = write_config(bus.dir.path(), &router_config(&bus));

    // A backlog of real cases waiting on the ingest stream.
    linkbus_bus::nats::provision(&bus.js, &linkbus_tests::test_stream_settings()).await.expect("provision");
    let csv = std::fs::File::open(sf_region_dir().join("sf311-cases-sample.csv")).expect("csv");
    let cases: Vec<_> = sf311::read(csv).map(|c| c.expect("row").event).collect();
    for case in &cases {
        publish_case(&bus.js, case).await;
    }
    let total = cases.len() as u64;
    assert_eq!(stream_messages(&bus.js, STREAM_INGEST_PUBLIC_SERVICE).await, total);

    let mut first = Running(
        linkbus_command().arg("up").arg("--config").arg(&config).stderr(Stdio::null()).spawn().expect("router starts"),
    );
    let routed_before_kill = wait_for_messages(&bus.js, STREAM_CASES, 200, WAIT).await;
    first.kill().expect("SIGKILL");
    first.wait().expect("reaped");
    assert!(routed_before_kill >= 200, "the router routed nothing before the kill");
    let at_kill = read_stream(&bus.js, STREAM_CASES, "case.*.routed", 0).await.len() as u64;
    assert!(
        at_kill < total,
        "the router finished before it was killed ({at_kill} of {total}); the test proved nothing"
    );

    let mut second = Running(
        linkbus_command()
            .arg("up")
            .arg("--config")
            .arg(&config)
            .stderr(Stdio::null())
            .spawn()
            .expect("router restarts"),
    );
    // The stream also carries the case book's timeline events; the count below is of decisions.
    let stored = wait_for_messages(&bus.js, STREAM_CASES, total, Duration::from_secs(120)).await;
    assert!(stored >= total, "cases lost after the router was killed");
    // Past the ack wait, anything redelivered twice would have shown by now.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let timeline = read_stream(&bus.js, STREAM_CASES, "case.*.routed", total as usize).await;
    let distinct: HashSet<&str> = timeline.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!((timeline.len(), distinct.len()), (total as usize, total as usize));
    println!("router killed after {at_kill} of {total} cases; after restart {} routed, each once", distinct.len());

    // SIGTERM: a graceful stop.
    let pid = nix::unistd::Pid::from_raw(second.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let status = tokio::task::spawn_blocking(move || second.wait()).await.expect("join").expect("wait");
    assert!(status.success(), "linkbus up exited with {status} on SIGTERM");
}

#[test]
fn up_with_the_embedded_nats_server_replays_and_stops_cleanly() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The first 300 real requests.
    let sample = std::fs::read_to_string(sf_region_dir().join("sf311-cases-sample.csv")).expect("csv");
    let mut reader = csv::Reader::from_reader(sample.as_bytes());
    let mut writer = csv::Writer::from_path(dir.path().join("first300.csv")).expect("csv out");
    writer.write_record(reader.headers().expect("headers")).expect("write");
    for record in reader.records().take(300) {
        writer.write_record(&record.expect("record")).expect("write");
    }
    writer.flush().expect("flush");
    let config = write_config(
        dir.path(),
        &format!(
            "[nats]\nembedded_data_dir = \"{}\"\nembedded_port = 0\n[region]\ndir = \"{}\"\n[api]\nlisten = \"127.0.0.1:0\"\n",
            dir.path().join("nats").display(),
            sf_region_dir().display()
        ),
    );
    let out = linkbus_command()
        .args(["up", "--config"])
        .arg(&config)
        .arg("--replay")
        .arg(dir.path().join("first300.csv"))
        .arg("--exit-after-replay")
        .env_remove("LINKBUS_NATS_URL")
        .output()
        .expect("linkbus up runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("routed                300"), "{stderr}");
    assert!(stderr.contains("missing               0"), "{stderr}");
    // The embedded server is gone: its port no longer answers.
    let url = stderr.split("NATS nats://").nth(1).and_then(|s| s.split(',').next()).expect("the URL is printed");
    assert!(std::net::TcpStream::connect(url).is_err(), "nats-server still listening on {url}");
}

#[test]
fn route_prints_decisions_offline() {
    let out = linkbus_command()
        .current_dir(repo_root())
        .args([
            "route",
            "--region",
            "san-francisco",
            "--lon",
            "-122.4194",
            "--lat",
            "37.7599",
            "--category",
            "cardiac_arrest",
        ])
        .output()
        .expect("route runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let decision: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(decision["community"]["community"]["id"], "mission");
    assert_eq!(decision["departments"][0]["id"], "sffd-station-7");
    assert_eq!(decision["volunteer_search"]["skill"], "cpr");

    let mut child = linkbus_command()
        .current_dir(repo_root())
        .args(["route", "--region", "san-francisco"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("route runs");
    let input = concat!(
        r#"{"system":"public_service","category":"sewer_issues","priority":3,"location":{"lon":-122.41,"lat":37.76},"source_id":"a","reported_at":"2024-01-01T00:00:00Z"}"#,
        "\nnot json\n",
        r#"{"system":"public_service","category":"sewer_issues","priority":3,"location":{"lon":-122.41,"lat":91},"source_id":"b","reported_at":"2024-01-01T00:00:00Z"}"#,
        "\n"
    );
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("output");
    assert_eq!(out.status.code(), Some(2), "refused lines make the exit code 2");
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["decision"]["departments"][0]["id"], "puc-sewer-ops");
    assert!(lines[1]["error"].as_str().expect("error").contains("not JSON"));
    assert!(lines[2]["error"].as_str().expect("error").contains("latitude"));
}

#[test]
fn config_check_accepts_the_example_and_names_what_is_wrong() {
    let ok = linkbus_command()
        .current_dir(repo_root())
        .args(["config", "check", "ops/linkbus.example.toml"])
        .output()
        .expect("runs");
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(
        String::from_utf8_lossy(&ok.stdout).contains("region beijing"),
        "the example names the default region, Beijing"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let bad = write_config(dir.path(), "[routing]\nvolunteer_radius = 5\n");
    let out = linkbus_command().current_dir(repo_root()).args(["config", "check"]).arg(&bad).output().expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field `volunteer_radius`"));
}

/// The pid of the nats-server that wrote a ports file in `ports_dir`.
fn nats_server_pid(ports_dir: &std::path::Path) -> Option<i32> {
    std::fs::read_dir(ports_dir).ok()?.flatten().find_map(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        name.strip_suffix(".ports")?.rsplit('_').next()?.parse().ok()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_restarts_its_embedded_nats_server_when_it_dies_and_keeps_routing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("nats");
    let config = write_config(
        dir.path(),
        &format!(
            "[nats]\nembedded_data_dir = \"{}\"\nembedded_port = 0\n[region]\ndir = \"{}\"\n[api]\nlisten = \"127.0.0.1:0\"\n",
            data.display(),
            sf_region_dir().display()
        ),
    );
    let (mut up, _) =
        linkbus_tests::start_up(linkbus_command().args(["up", "--config"]).arg(&config).env_remove("LINKBUS_NATS_URL"));
    let js = async_nats::jetstream::new(linkbus_tests::connect_embedded(&data).await);

    let mission = |id: &str| {
        linkbus_tests::case(id, linkbus_wire::SourceSystem::PublicService, "sewer_issues", -122.4194, 37.7599)
    };
    publish_case(&js, &mission("sup-before")).await;
    assert_eq!(read_stream(&js, STREAM_CASES, "case.sup-before.routed", 1).await.len(), 1);

    let ports = data.join("ports");
    let first = nats_server_pid(&ports).expect("the embedded server's ports file");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first), nix::sys::signal::Signal::SIGKILL).expect("SIGKILL");
    let deadline = std::time::Instant::now() + WAIT;
    while nats_server_pid(&ports).is_none_or(|pid| pid == first) {
        assert!(std::time::Instant::now() < deadline, "linkbus up did not restart its nats-server");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The client reconnects; the case published after the restart is routed too.
    let after = mission("sup-after");
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let subject = linkbus_wire::subjects::ingest(after.data.system, &after.data.category);
        let body = bytes::Bytes::from(serde_json::to_vec(&after).expect("json"));
        let acked = match linkbus_bus::nats::publish(&js, subject, &after.id, body).await {
            Ok(ack) => ack.await.is_ok(),
            Err(_) => false,
        };
        if acked {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "could not publish after the restart");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        read_stream(&js, STREAM_CASES, "case.sup-after.routed", 1).await.len(),
        1,
        "not routed after the restart"
    );
    assert_eq!(read_stream(&js, STREAM_CASES, "case.*.routed", 2).await.len(), 2, "the stream survived the crash");

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(up.id() as i32), nix::sys::signal::Signal::SIGTERM)
        .expect("SIGTERM");
    let status = tokio::task::spawn_blocking(move || up.wait()).await.expect("join").expect("wait");
    assert!(status.success(), "linkbus up exited with {status}");
    assert!(
        nats_server_pid(&ports)
            .is_none_or(|pid| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err()),
        "nats-server left running"
    );
}
