//! `linkbus up`'s embedded nats-server as a local process meets it (issue 16, sections 2 and 6):
//! it refuses clients without a key, while the `linkbus` subcommands find theirs in the data
//! folder; it dies with a `linkbus up` killed by SIGKILL, and the next start on the same folder
//! works (a leftover server of the folder is stopped); a port held by another process (Debian's
//! system nats-server on 4222) is replaced by a free one that the subcommands find; a nats-server
//! too old to sync before acknowledging is refused with a message that says why.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use linkbus_bus::nats::STREAM_CASES;
use linkbus_tests::{Running, WAIT, read_stream, sf_region_dir, write_config};

fn linkbus() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_linkbus-under-test"));
    command.env_remove("LINKBUS_NATS_URL").env_remove("LINKBUS_CONFIG");
    command
}

/// A configuration of `linkbus up` with its embedded server in `dir/nats`, on `port` (0: any).
fn config(dir: &Path, port: u16) -> PathBuf {
    write_config(
        dir,
        &format!(
            "[nats]\nembedded_data_dir = \"{}\"\nembedded_port = {port}\n[region]\ndir = \"{}\"\n[api]\nlisten = \"\"\n",
            dir.join("nats").display(),
            sf_region_dir().display()
        ),
    )
}

/// A temporary folder, a configuration in it on a free fixed port, and the data folder.
fn on_a_fixed_port() -> (tempfile::TempDir, PathBuf, PathBuf, u16) {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = linkbus_tests::nats_process::free_port();
    let config = config(dir.path(), port);
    let data = dir.path().join("nats");
    (dir, config, data, port)
}

fn up(config: &Path) -> (Running, linkbus_tests::Announcement, Vec<String>) {
    linkbus_tests::start_up_logged(linkbus().args(["up", "--config"]).arg(config))
}

/// `linkbus report` of a sewer case in the Mission (routed to `puc-sewer-ops`), with no flag
/// but the configuration.
fn report(config: &Path, id: &str) -> std::process::Output {
    linkbus()
        .args(["report", "--config"])
        .arg(config)
        .args(["--id", id, "--system", "public_service", "--category", "sewer_issues"])
        .args(["--lon", "-122.4194", "--lat", "37.7599"])
        .output()
        .expect("linkbus report runs")
}

fn alive(pid: u32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

fn sigterm_and_wait(mut up: Running) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(up.id() as i32), nix::sys::signal::Signal::SIGTERM)
        .expect("SIGTERM");
    let status = up.wait().expect("wait");
    assert!(status.success(), "linkbus up exited with {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_server_refuses_clients_without_a_key_and_the_subcommands_find_theirs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(dir.path(), 0);
    let data = dir.path().join("nats");
    let (up, announced, _) = up(&config);
    let url = announced.nats_url().to_owned();

    // Any local process without a key: refused at the door, so it reads no case, no bucket.
    let refused = async_nats::ConnectOptions::new().connect(&url).await;
    let err = refused.expect_err("a client without a key is refused").to_string().to_lowercase();
    assert!(err.contains("authorization"), "{err}");

    // The keys are its user's alone.
    assert_eq!(mode(&data), 0o700, "the data folder");
    assert_eq!(mode(&data.join("auth/nkeys")), 0o700);
    for user in ["linkbus", "local-tools", "dept-puc-sewer-ops", "operator-ops"] {
        assert_eq!(mode(&linkbus::embedded::seed_file(&data, user)), 0o600, "{user}'s seed");
    }

    // A department's key (handed to its client) reaches its own cases only: not the case
    // stream, not the volunteers' bucket.
    let dept = async_nats::ConnectOptions::with_nkey(
        std::fs::read_to_string(linkbus::embedded::seed_file(&data, "dept-puc-sewer-ops"))
            .expect("seed")
            .trim()
            .to_owned(),
    )
    .custom_inbox_prefix("_INBOX.dept-puc-sewer-ops")
    .connect(&url)
    .await
    .expect("a department connects with its key");
    let js = async_nats::jetstream::new(dept.clone());
    let cases = tokio::time::timeout(WAIT, js.get_stream(STREAM_CASES)).await.expect("an answer in time");
    assert!(cases.is_err(), "a department read the case stream's info");
    let volunteers = tokio::time::timeout(WAIT, js.get_key_value("linkbus_volunteers")).await.expect("in time");
    assert!(volunteers.is_err(), "a department opened the volunteers' bucket");

    // The subcommands need no flag but the configuration: watch, report, act.
    let mut watch = Running(
        linkbus()
            .args(["watch", "--config"])
            .arg(&config)
            .args(["--count", "1", "routed.dept.puc-sewer-ops.>"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("linkbus watch starts"),
    );
    let said = linkbus_tests::stderr_lines(&mut watch).recv_timeout(WAIT).expect("linkbus watch says it is watching");
    assert!(said.starts_with("watching"), "{said}");

    let reported = report(&config, "emb-1");
    assert!(reported.status.success(), "{}", String::from_utf8_lossy(&reported.stderr));
    let watched = tokio::task::spawn_blocking(move || {
        let mut watch = watch;
        watch.wait_with_output_or_kill()
    });
    let watched = tokio::time::timeout(WAIT, watched).await.expect("watch ends in time").expect("join");
    assert!(watched.contains("case emb-1"), "linkbus watch saw: {watched}");

    let act = linkbus()
        .args(["act", "--config"])
        .arg(&config)
        .args(["--department", "puc-sewer-ops", "--case", "emb-1", r#"{"action":"accept"}"#])
        .output()
        .expect("linkbus act runs");
    let reply = String::from_utf8_lossy(&act.stdout);
    assert!(act.status.success() && reply.contains("\"ok\":true"), "{reply} {}", String::from_utf8_lossy(&act.stderr));

    // The URL given explicitly (as docs/scenario-119.sh may) finds the key too.
    let listed = linkbus()
        .args(["deadletter", "--config"])
        .arg(&config)
        .args(["--nats-url", &url, "list"])
        .output()
        .expect("linkbus deadletter runs");
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    sigterm_and_wait(up);
}

/// Reads a child's stdout to the end (it stops after `--count`), killing it if it runs past
/// [`WAIT`].
trait WaitOrKill {
    fn wait_with_output_or_kill(&mut self) -> String;
}

impl WaitOrKill for std::process::Child {
    fn wait_with_output_or_kill(&mut self) -> String {
        use std::io::Read as _;
        let deadline = Instant::now() + WAIT;
        while matches!(self.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.kill();
        let mut out = String::new();
        if let Some(mut stdout) = self.stdout.take() {
            let _ = stdout.read_to_string(&mut out);
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_linkbus_up_takes_its_nats_server_along_and_starts_again_on_the_same_folder() {
    let (_dir, config, data, port) = on_a_fixed_port();
    let (mut first, announced, _) = up(&config);
    assert!(announced.nats_url().ends_with(&format!(":{port}")), "{}", announced.0);
    let reported = report(&config, "kill-1");
    assert!(reported.status.success(), "{}", String::from_utf8_lossy(&reported.stderr));
    let server = linkbus_bus::server::running_pid(&data).expect("the embedded server's pid file");

    first.kill().expect("SIGKILL linkbus up");
    first.wait().expect("reaped");
    let deadline = Instant::now() + WAIT;
    while alive(server) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!alive(server), "nats-server {server} outlived the linkbus up that started it");

    let (second, announced, _) = up(&config);
    assert!(announced.nats_url().ends_with(&format!(":{port}")), "the same port again: {}", announced.0);
    let reported = report(&config, "kill-2");
    assert!(reported.status.success(), "{}", String::from_utf8_lossy(&reported.stderr));
    let js = async_nats::jetstream::new(linkbus_tests::connect_embedded(&data).await);
    let routed = read_stream(&js, STREAM_CASES, "case.*.routed", 2).await;
    assert_eq!(routed.len(), 2, "both cases routed, the one before the kill kept");
    sigterm_and_wait(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_server_left_running_from_the_data_folder_is_stopped_at_the_next_start() {
    let (_dir, config, data, port) = on_a_fixed_port();
    let (first, _, _) = up(&config);
    sigterm_and_wait(first);

    // A server of this folder that no linkbus supervises (as one started before the parent-death
    // signal, or by hand, would be), holding the port.
    let bin = linkbus_bus::server::find_nats_server().expect("nats-server");
    let mut leftover = Running(
        Command::new(bin)
            .arg("-c")
            .arg(data.join("nats-server.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("a leftover nats-server starts"),
    );
    let deadline = Instant::now() + WAIT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the leftover server never listened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (second, announced, _) = up(&config);
    assert!(announced.nats_url().ends_with(&format!(":{port}")), "{}", announced.0);
    let deadline = Instant::now() + WAIT;
    while matches!(leftover.try_wait(), Ok(None)) {
        assert!(Instant::now() < deadline, "the leftover nats-server is still running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reported = report(&config, "leftover-1");
    assert!(reported.status.success(), "{}", String::from_utf8_lossy(&reported.stderr));
    sigterm_and_wait(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_taken_by_another_server_is_replaced_by_a_free_one_that_the_subcommands_find() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Another process on the configured port, as Debian's system nats-server on 4222 would be.
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = squatter.local_addr().expect("address").port();
    let config = config(dir.path(), port);
    let (up, announced, said) = up(&config);
    let url = announced.nats_url().to_owned();
    assert!(!url.ends_with(&format!(":{port}")), "{url}");
    assert!(
        said.iter().any(|l| l.contains(&format!("127.0.0.1:{port}")) && l.contains("taken") && l.contains(&url)),
        "linkbus up says plainly which port it took instead: {said:?}"
    );
    let reported = report(&config, "port-1");
    assert!(reported.status.success(), "{}", String::from_utf8_lossy(&reported.stderr));
    assert!(String::from_utf8_lossy(&reported.stdout).contains("reported"));
    sigterm_and_wait(up);
    drop(squatter);
}

#[test]
fn a_nats_server_too_old_to_sync_before_acknowledging_is_refused_plainly() {
    let old = Path::new("/usr/sbin/nats-server");
    let version = Command::new(old).arg("--version").output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    let Some(found) = version.ok().and_then(|v| linkbus_bus::server::Version::parse(&v)) else {
        println!("no /usr/sbin/nats-server (Debian's package) to try; skipped");
        return;
    };
    if found >= linkbus_bus::server::MIN_VERSION {
        println!("/usr/sbin/nats-server is {found}, not older than the minimum; skipped");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let out = linkbus()
        .args(["up", "--config"])
        .arg(config(dir.path(), 0))
        .env("LINKBUS_NATS_SERVER", old)
        .stdin(Stdio::null())
        .output()
        .expect("linkbus up runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("is nats-server {found}")) && stderr.contains("2.10.25"), "{stderr}");
    assert!(stderr.contains("ops/scripts/ensure-nats-server"), "{stderr}");
}
