//! nats-server processes started from a configuration file of the test's (or `ops/deploy/`'s)
//! choosing, for the tests of permissions and of the cluster layout; the embedded server
//! (`linkbus_bus::server`) writes its own configuration and cannot do either.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{Running, WAIT};

/// A free TCP port on 127.0.0.1 (the OS picks one; it is free again once this returns, and
/// stays so unless another process grabs it in between).
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` distinct free ports: each is held until all are picked, so none is handed out twice.
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<std::net::TcpListener> =
        (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port")).collect();
    held.iter().map(|l| l.local_addr().expect("local address").port()).collect()
}

/// A nats-server child started with `-c <conf>` and the given environment (the deployment's
/// configuration takes its node's settings from the environment, as systemd gives them).
pub struct NatsProcess {
    /// The process; SIGTERMed when dropped.
    pub child: Running,
    /// The client port it listens on.
    pub port: u16,
    conf: PathBuf,
    env: Vec<(String, String)>,
    log: PathBuf,
}

impl NatsProcess {
    /// Starts the server, its stderr appended to `log`, and waits (bounded) until it accepts TCP
    /// connections on `port`.
    pub async fn start(conf: &Path, port: u16, env: &[(&str, String)], log: &Path) -> Self {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
        let child = spawn(conf, &env, log);
        let mut process = Self { child, port, conf: conf.to_owned(), env, log: log.to_owned() };
        process.wait_listening().await;
        process
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, as a crash or a pulled plug would, and reap it.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL nats-server");
        self.child.wait().expect("reap nats-server");
    }

    /// Starts it again with the same configuration, environment and data.
    pub async fn restart(&mut self) {
        self.child = spawn(&self.conf, &self.env, &self.log);
        self.wait_listening().await;
    }

    async fn wait_listening(&mut self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("nats-server -c {} exited during start-up: {status}", self.conf.display());
            }
            assert!(tokio::time::Instant::now() < deadline, "nats-server never listened on {}", self.port);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn spawn(conf: &Path, env: &[(String, String)], log: &Path) -> Running {
    let bin = linkbus_bus::server::find_nats_server().expect("nats-server installed");
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log file");
    let child = std::process::Command::new(bin)
        .arg("-c")
        .arg(conf)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("nats-server starts");
    Running(child)
}
