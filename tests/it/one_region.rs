//! One region's cases on one region's bus, with real `linkbus up` processes: a bus records the
//! region it was made for, and `linkbus up` of another region refuses to start on it, naming both
//! regions and what to do (on an embedded server's data folder, and on a NATS given by URL);
//! without a configured data folder each region's embedded server has its own, so running San
//! Francisco and then Beijing on one machine, as the quick start does, just works.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use linkbus_bus::server::find_nats_server;
use linkbus_tests::{Running, TestBus, WAIT, repo_root, sf_region_dir, write_config};

fn linkbus(config: &Path, region: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_linkbus-under-test"));
    command.args(["up", "--config"]).arg(config).arg("--region").arg(region).args(args).env_remove("LINKBUS_NATS_URL");
    command
}

fn beijing() -> std::path::PathBuf {
    repo_root().join("geo-data/beijing")
}

/// The first `n` requests of the SF 311 sample, as a CSV file in `dir`.
fn sf_sample(dir: &Path, n: usize) -> std::path::PathBuf {
    let path = dir.join(format!("first{n}.csv"));
    let sample = std::fs::read_to_string(sf_region_dir().join("sf311-cases-sample.csv")).expect("csv");
    let mut reader = csv::Reader::from_reader(sample.as_bytes());
    let mut writer = csv::Writer::from_path(&path).expect("csv out");
    writer.write_record(reader.headers().expect("headers")).expect("write");
    for record in reader.records().take(n) {
        writer.write_record(&record.expect("record")).expect("write");
    }
    writer.flush().expect("flush");
    path
}

/// Runs `command` to its end, or stops it after [`WAIT`] (a `linkbus up` that should have refused
/// to start and runs instead): how it ended (`None`: it was still running) and its stderr.
fn run_within(command: &mut Command) -> (Option<std::process::ExitStatus>, String) {
    let mut child = Running(command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("linkbus up starts"));
    let lines = linkbus_tests::stderr_lines(&mut child);
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        match child.try_wait().expect("wait") {
            Some(status) => break Some(status),
            None if std::time::Instant::now() > deadline => break None,
            None => std::thread::sleep(std::time::Duration::from_millis(100)),
        }
    };
    drop(child);
    (status, lines.iter().collect::<Vec<_>>().join("\n"))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts that `linkbus up` refused Beijing on San Francisco's bus, saying what to do.
fn assert_refused((status, said): &(Option<std::process::ExitStatus>, String), names: &str) {
    assert!(status.is_some_and(|s| !s.success()), "Beijing started on San Francisco's bus:\n{said}");
    assert!(!said.contains("linkbus is up"), "{said}");
    for needed in [
        "this bus holds the cases of region san-francisco (San Francisco)",
        "this linkbus is for region beijing (北京市 Beijing)",
        "embedded_data_dir",
        "--region san-francisco",
        names,
    ] {
        assert!(said.contains(needed), "the refusal does not say {needed:?}:\n{said}");
    }
}

#[test]
fn a_bus_made_for_one_region_refuses_another_regions_linkbus() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("nats");
    let config = write_config(
        dir.path(),
        &format!("[nats]\nembedded_data_dir = \"{}\"\nembedded_port = 0\n[api]\nlisten = \"\"\n", data.display()),
    );
    let sample = sf_sample(dir.path(), 50);
    let replay = ["--replay", sample.to_str().expect("utf-8"), "--exit-after-replay"];
    let sf = linkbus(&config, &sf_region_dir(), &replay).output().expect("linkbus up runs");
    assert!(sf.status.success() && stderr(&sf).contains("routed                50"), "{}", stderr(&sf));

    let refused = run_within(&mut linkbus(&config, &beijing(), &[]));
    assert_refused(
        &refused,
        &format!("refusing to start on the embedded nats-server's data folder {}: ", data.display()),
    );
    assert!(refused.1.contains(&format!("delete {}", data.display())), "{}", refused.1);

    // San Francisco itself still starts there, its cases kept.
    let again = linkbus(&config, &sf_region_dir(), &replay).output().expect("linkbus up runs");
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(stderr(&again).contains("already on the bus    50"), "{}", stderr(&again));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_given_by_url_made_for_one_region_refuses_another() {
    let bus = TestBus::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let url = bus.server.url();
    let config = write_config(dir.path(), &format!("[nats]\nurl = \"{url}\"\n[api]\nlisten = \"\"\n"));
    let sample = sf_sample(dir.path(), 20);
    let replay = ["--replay", sample.to_str().expect("utf-8"), "--exit-after-replay"];
    let sf = tokio::task::spawn_blocking({
        let mut command = linkbus(&config, &sf_region_dir(), &replay);
        move || command.output().expect("linkbus up runs")
    });
    let sf = sf.await.expect("joined");
    assert!(sf.status.success(), "{}", stderr(&sf));
    let refused = tokio::task::spawn_blocking({
        let mut command = linkbus(&config, &beijing(), &[]);
        move || run_within(&mut command)
    });
    assert_refused(&refused.await.expect("joined"), &format!("refusing to start on NATS {url}: this bus"));
}

#[test]
fn each_region_has_its_own_data_folder_by_default() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = find_nats_server().expect("a nats-server: run ops/scripts/ensure-nats-server");
    let config = write_config(dir.path(), "[nats]\nembedded_port = 0\n[api]\nlisten = \"\"\n");
    let sample = sf_sample(dir.path(), 20);
    let replay = ["--replay", sample.to_str().expect("utf-8"), "--exit-after-replay"];
    let run = |region: &Path| {
        let out = linkbus(&config, region, &replay)
            .current_dir(dir.path())
            .env("LINKBUS_NATS_SERVER", &server)
            .output()
            .expect("linkbus up runs");
        assert!(out.status.success(), "{}", stderr(&out));
        out
    };
    run(&sf_region_dir());
    let sf_folder = dir.path().join(".linkbus/nats-san-francisco");
    assert!(sf_folder.join("jetstream").is_dir(), "San Francisco's bus is in {}", sf_folder.display());
    // Beijing's cases are SF's coordinates here: outside its map, each goes to its catch-all,
    // on Beijing's own bus.
    let bj = run(&beijing());
    assert!(stderr(&bj).contains("published             20"), "{}", stderr(&bj));
    assert!(dir.path().join(".linkbus/nats-beijing/jetstream").is_dir());
    assert!(!dir.path().join(".linkbus/nats").exists(), "no folder shared by the regions");

    // With San Francisco running, a `linkbus` command configured for Beijing (the default
    // region) finds the only server running, as the quick start's `linkbus watch` does.
    let (_sf, _) = linkbus_tests::start_up(
        linkbus(&config, &sf_region_dir(), &[]).current_dir(dir.path()).env("LINKBUS_NATS_SERVER", &server),
    );
    let tool = |region: &Path| {
        Command::new(env!("CARGO_BIN_EXE_linkbus-under-test"))
            .args(["deadletter", "--config"])
            .arg(&config)
            .arg("--region")
            .arg(region)
            .arg("list")
            .current_dir(dir.path())
            .env_remove("LINKBUS_NATS_URL")
            .output()
            .expect("linkbus deadletter runs")
    };
    let listed = tool(&beijing());
    assert!(listed.status.success(), "{}", stderr(&listed));
    let listed = tool(&sf_region_dir());
    assert!(listed.status.success(), "{}", stderr(&listed));
}
