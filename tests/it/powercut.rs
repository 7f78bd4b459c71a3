//! "Acknowledged" means "on disk" (issue 16, section 5): a power cut under `linkbus up` loses no
//! report that JetStream acknowledged to its source, and routes none twice.
//!
//! The embedded server's JetStream store lives on `tests/tools/lazyfs.py`, a FUSE filesystem
//! that holds every write in memory until the file is fsync'ed (after Jepsen's lazyfs). The test
//! publishes reports as a source system would and keeps those acknowledged; then cuts the power:
//! SIGKILL to nats-server and `linkbus up`, SIGKILL to the filesystem (its unsynced writes are
//! gone), unmount. It mounts the disk again, starts `linkbus up` on the same folder and counts:
//! every acknowledged report is there and routed once. With the default policy (`sync =
//! "always"`) that must hold; with a lazy one (`interval:10m`) it must not, which shows the test
//! can fail.
//!
//! Needs root (to mount FUSE), libfuse 3 and mfusepy (`ops/scripts/ensure-test-tools` installs
//! them into `.linkbus/tools/python`), and a nats-server that syncs (the pinned 2.15.1).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use linkbus_bus::nats::STREAM_CASES;
use linkbus_tests::{Running, WAIT, case, publish_case, read_stream, repo_root, sf_region_dir, write_config};
use linkbus_wire::SourceSystem;

/// Reports published before each power cut.
const REPORTS: usize = 150;

/// A mount of `tests/tools/lazyfs.py`: `backing` seen through `mount`, unsynced writes in the
/// memory of its process.
struct LazyFs {
    process: Option<Running>,
    mount: PathBuf,
}

impl LazyFs {
    fn mount(backing: &Path, mount: &Path) -> Self {
        let python = repo_root().join(".linkbus/tools/python");
        assert!(
            python.join("mfusepy.py").is_file(),
            "mfusepy is not installed in {}: run ops/scripts/ensure-test-tools",
            python.display()
        );
        let process = Running(
            Command::new("python3")
                .arg(repo_root().join("tests/tools/lazyfs.py"))
                .arg(backing)
                .arg(mount)
                .env("PYTHONPATH", &python)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("python3 runs lazyfs.py"),
        );
        let mut fs = Self { process: Some(process), mount: mount.to_owned() };
        let deadline = Instant::now() + WAIT;
        while !fs.mounted() {
            if let Some(Ok(Some(status))) = fs.process.as_mut().map(|p| p.try_wait()) {
                panic!("lazyfs.py exited ({status}) without mounting: is /dev/fuse there, and are we root?");
            }
            assert!(Instant::now() < deadline, "lazyfs.py never mounted {}", mount.display());
            std::thread::sleep(Duration::from_millis(20));
        }
        fs
    }

    fn mounted(&self) -> bool {
        let target = self.mount.to_string_lossy().into_owned();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .any(|line| line.split(' ').nth(4) == Some(target.as_str()))
    }

    /// The power cut: the filesystem's process dies with every write not synced, and the mount
    /// goes.
    fn cut(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

impl Drop for LazyFs {
    fn drop(&mut self) {
        self.cut();
    }
}

/// What a power cut did to the acknowledged reports.
struct Count {
    acknowledged: usize,
    routed_once: usize,
    missing: Vec<String>,
    routed_twice: Vec<String>,
    /// `linkbus up` started again on the folder after the cut.
    restarted: bool,
}

impl std::fmt::Display for Count {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} acknowledged, {} routed once, {} missing, {} routed twice{}",
            self.acknowledged,
            self.routed_once,
            self.missing.len(),
            self.routed_twice.len(),
            if self.restarted { "" } else { " (linkbus up did not start again)" }
        )
    }
}

fn alive(pid: u32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
}

fn sigkill(pid: u32) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
}

/// Starts `linkbus up`; `None` if it exits before saying it is up.
fn try_up(config: &Path) -> Option<(Running, String)> {
    let mut up = Running(
        Command::new(env!("CARGO_BIN_EXE_linkbus-under-test"))
            .args(["up", "--config"])
            .arg(config)
            .env_remove("LINKBUS_NATS_URL")
            .stderr(Stdio::piped())
            .spawn()
            .expect("linkbus up starts"),
    );
    let rx = linkbus_tests::stderr_lines(&mut up);
    let deadline = Instant::now() + WAIT * 2;
    let mut said = Vec::new();
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) if line.contains("linkbus is up") => return Some((up, line)),
            Ok(line) => said.push(line),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
    println!("linkbus up did not come up after the power cut; it said:\n{}", said.join("\n"));
    None
}

/// Publishes, cuts the power, restarts and counts, with `[nats] sync = sync`.
async fn power_cut(sync: &str, tag: &str) -> Count {
    let dir = tempfile::tempdir().expect("temp dir");
    let (backing, mount, data) = (dir.path().join("disk"), dir.path().join("mnt"), dir.path().join("nats"));
    for d in [&backing, &mount, &data] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    let config = write_config(
        dir.path(),
        &format!(
            "[nats]\nembedded_data_dir = \"{}\"\nembedded_port = 0\nsync = \"{sync}\"\n[region]\ndir = \"{}\"\n\
             [router]\nack_wait_secs = 2\n[api]\nlisten = \"\"\n",
            data.display(),
            sf_region_dir().display()
        ),
    );
    // Only the JetStream store is on the forgetful disk; the configuration, keys and log are not.
    let mut disk = LazyFs::mount(&backing, &mount);
    std::fs::create_dir(mount.join("jetstream")).expect("store folder on the mount");
    std::os::unix::fs::symlink(mount.join("jetstream"), data.join("jetstream")).expect("symlink the store");

    let (up, _) = try_up(&config).expect("linkbus up starts on the lazy disk");
    let js = async_nats::jetstream::new(linkbus_tests::connect_embedded(&data).await);
    let mut acknowledged = Vec::with_capacity(REPORTS);
    for n in 0..REPORTS {
        let id = format!("pc-{tag}-{n}");
        let report = case(&id, SourceSystem::PublicService, "sewer_issues", -122.4194, 37.7599);
        publish_case(&js, &report).await;
        acknowledged.push(id);
    }

    // The power cut, the server first so that it cannot stop cleanly.
    let server = linkbus_bus::server::running_pid(&data).expect("nats-server's pid");
    sigkill(server);
    sigkill(up.id());
    let deadline = Instant::now() + WAIT;
    while alive(server) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(up);
    disk.cut();

    let _disk = LazyFs::mount(&backing, &mount);
    let Some((up, _)) = try_up(&config) else {
        return Count {
            acknowledged: acknowledged.len(),
            routed_once: 0,
            missing: acknowledged,
            routed_twice: vec![],
            restarted: false,
        };
    };
    let js = async_nats::jetstream::new(linkbus_tests::connect_embedded(&data).await);
    // Wait for the router to finish what the cut interrupted (redelivered after the ack wait),
    // until every acknowledged report is routed or nothing has changed for five seconds.
    let (mut last, mut since) = (usize::MAX, Instant::now());
    let routed = loop {
        let routed = match js.get_stream(STREAM_CASES).await {
            Ok(_) => read_stream(&js, STREAM_CASES, "case.*.routed", 0).await,
            Err(_) => vec![],
        };
        if routed.len() != last {
            (last, since) = (routed.len(), Instant::now());
        }
        if routed.len() >= acknowledged.len() || since.elapsed() > Duration::from_secs(5) {
            break routed;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let mut times: HashMap<String, usize> = HashMap::new();
    for msg in &routed {
        let id = msg.subject.trim_start_matches("case.").trim_end_matches(".routed").to_owned();
        *times.entry(id).or_default() += 1;
    }
    drop(up);
    Count {
        acknowledged: acknowledged.len(),
        routed_once: acknowledged.iter().filter(|id| times.get(*id) == Some(&1)).count(),
        missing: acknowledged.iter().filter(|id| !times.contains_key(*id)).cloned().collect(),
        routed_twice: acknowledged.iter().filter(|id| times.get(*id).is_some_and(|n| *n > 1)).cloned().collect(),
        restarted: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_report_survives_a_power_cut_and_is_routed_once() {
    let count = power_cut("always", "always").await;
    println!("sync = \"always\": {count}");
    assert!(count.restarted, "linkbus up did not start again after the power cut");
    assert!(count.missing.is_empty(), "acknowledged reports lost in the power cut: {:?}", count.missing);
    assert!(count.routed_twice.is_empty(), "reports routed twice: {:?}", count.routed_twice);
    assert_eq!(count.routed_once, REPORTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lazy_sync_policy_loses_acknowledged_reports_in_a_power_cut() {
    let count = power_cut("interval:10m", "lazy").await;
    println!("sync = \"interval:10m\": {count}");
    assert!(
        !count.missing.is_empty(),
        "no acknowledged report was lost with a lazy sync: the power cut did not cut, so the test \
         above proves nothing"
    );
}

/// The throughput cost of syncing, for docs/BENCHMARKS.md, in one run, alternating the two
/// policies on fresh nats-servers on this machine's disk: syncing always, and the server's default
/// (every two minutes). Two figures each: JetStream publishes of 512 bytes with acks (at most 256
/// awaiting theirs), and linkbus end to end (an in-process service on the San Francisco region,
/// reports published with acks until each is routed). A measurement, not a check:
/// `cargo test -p linkbus-tests --test it -- powercut::the_cost_of_syncing --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run it by name"]
async fn the_cost_of_syncing() {
    use std::sync::atomic::Ordering;

    use linkbus_bus::server::{NatsServer, ServerConfig, SyncPolicy};
    const MESSAGES: usize = 20_000;
    const REPORTS: usize = 1_000;
    let payload = bytes::Bytes::from(vec![b'x'; 512]);
    let region = linkbus_tests::sf_region();
    let mut rates: HashMap<(&str, &str), Vec<f64>> = HashMap::new();
    for round in 0..3 {
        for (name, sync) in [("always", Some(SyncPolicy::Always)), ("default", None)] {
            let dir = tempfile::tempdir().expect("temp dir");
            let mut config = ServerConfig::new(dir.path().join("nats"));
            config.sync = sync;
            let server = NatsServer::start(config).await.expect("nats-server starts");
            let client = linkbus::service::connect(&server.url(), WAIT).await.expect("connects");
            let js = async_nats::jetstream::new(client.clone());
            js.create_stream(async_nats::jetstream::stream::Config {
                name: "COST".into(),
                subjects: vec!["cost.>".into()],
                ..Default::default()
            })
            .await
            .expect("stream");
            let started = Instant::now();
            let mut acks: std::collections::VecDeque<async_nats::jetstream::context::PublishAckFuture> =
                std::collections::VecDeque::with_capacity(256);
            for n in 0..MESSAGES {
                if acks.len() >= 256
                    && let Some(ack) = acks.pop_front()
                {
                    ack.await.expect("acked");
                }
                acks.push_back(js.publish(format!("cost.{}", n % 16), payload.clone()).await.expect("publish"));
            }
            for ack in acks.drain(..) {
                ack.await.expect("acked");
            }
            let publish = MESSAGES as f64 / started.elapsed().as_secs_f64();

            let mut linkbus_config = linkbus::config::Config::default();
            linkbus_config.nats.url = Some(server.url());
            linkbus_config.storage = linkbus_tests::test_storage();
            linkbus_config.region.dir = sf_region_dir();
            let service = linkbus::service::Service::start(&linkbus_config, &region, client, "/cost".into())
                .await
                .expect("service starts");
            let started = Instant::now();
            for n in 0..REPORTS {
                if acks.len() >= 256
                    && let Some(ack) = acks.pop_front()
                {
                    ack.await.expect("acked");
                }
                let report =
                    case(&format!("cost-{n}"), SourceSystem::PublicService, "sewer_issues", -122.4194, 37.7599);
                let subject = linkbus_wire::subjects::ingest(report.data.system, &report.data.category);
                let body = bytes::Bytes::from(serde_json::to_vec(&report).expect("json"));
                acks.push_back(linkbus_bus::nats::publish(&js, subject, &report.id, body).await.expect("publish"));
            }
            for ack in acks.drain(..) {
                ack.await.expect("acked");
            }
            let deadline = Instant::now() + Duration::from_secs(300);
            while service.state.stats.routed.load(Ordering::Relaxed) < REPORTS as u64 {
                assert!(Instant::now() < deadline, "not all routed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let routed = REPORTS as f64 / started.elapsed().as_secs_f64();
            service.stop().await;
            println!("round {round}: sync {name}: {publish:.0} publishes/s, linkbus {routed:.0} reports routed/s");
            rates.entry(("publish", name)).or_default().push(publish);
            rates.entry(("linkbus", name)).or_default().push(routed);
        }
    }
    for what in ["publish", "linkbus"] {
        let best = |name| rates[&(what, name)].iter().cloned().fold(0.0, f64::max);
        println!(
            "{what}, best of 3: always {:.0}/s, default {:.0}/s; syncing always keeps {:.3} of the throughput",
            best("always"),
            best("default"),
            best("always") / best("default")
        );
    }
}
