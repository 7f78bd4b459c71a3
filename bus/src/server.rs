//! The embedded nats-server: a child process with JetStream, for `linkbus up` when no NATS URL
//! is configured and for tests, which kill and restart it.
//!
//! The server listens on loopback, on a fixed port or on one it picks itself (read back from
//! its ports file, so there is no race for a free port), and keeps its JetStream files and log
//! in `data_dir`. A restart keeps the port and the data, so clients reconnect and find their
//! streams.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// Where and how to run the embedded server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The `nats-server` executable; `None` searches `$LINKBUS_NATS_SERVER`, `$PATH` and the
    /// Debian location `/usr/sbin`.
    pub bin: Option<PathBuf>,
    /// JetStream storage, configuration and log live here.
    pub data_dir: PathBuf,
    /// Client port on 127.0.0.1; `None` lets the server pick a free one.
    pub port: Option<u16>,
    /// Largest message the server accepts, bytes. Above the bus's own limit, so that an
    /// oversized case reaches the router and is dead-lettered with a reason instead of being
    /// refused at the door with none kept.
    pub max_payload: usize,
}

impl ServerConfig {
    /// A server on a port of its choosing, storing under `data_dir`, with an 8 MiB payload limit.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self { bin: None, data_dir: data_dir.into(), port: None, max_payload: 8 * 1024 * 1024 }
    }
}

/// What went wrong starting or stopping the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// No executable found.
    #[error(
        "nats-server not found (looked in $LINKBUS_NATS_SERVER, $PATH, /usr/sbin): install it \
         (Debian: apt-get install nats-server) or configure a NATS URL"
    )]
    NotFound,
    /// Filesystem trouble with the data folder.
    #[error("nats-server data folder {path}: {source}")]
    DataDir {
        /// The folder.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The process could not be started.
    #[error("cannot start {bin}: {source}")]
    Spawn {
        /// The executable.
        bin: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// It started but never said which port it listens on.
    #[error("nats-server did not become ready within {0:?}; see its log at {1}")]
    NotReady(Duration, PathBuf),
    /// It exited during start-up.
    #[error("nats-server exited during start-up ({status}); see its log at {log}")]
    Exited {
        /// Exit status.
        status: std::process::ExitStatus,
        /// Its log file.
        log: PathBuf,
    },
}

/// A running nats-server child. Dropping it kills the process.
#[derive(Debug)]
pub struct NatsServer {
    config: ServerConfig,
    bin: PathBuf,
    child: Child,
    port: u16,
}

const READY_TIMEOUT: Duration = Duration::from_secs(15);

impl NatsServer {
    /// Starts the server and waits until it accepts clients.
    pub async fn start(config: ServerConfig) -> Result<Self, ServerError> {
        let bin = match &config.bin {
            Some(bin) => bin.clone(),
            None => find_nats_server().ok_or(ServerError::NotFound)?,
        };
        let (child, port) = spawn(&bin, &config, config.port).await?;
        Ok(Self { config, bin, child, port })
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's log file.
    pub fn log_file(&self) -> PathBuf {
        self.config.data_dir.join("nats-server.log")
    }

    /// Kills the server with SIGKILL, as a crash would, and waits for it to be gone.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Starts it again on the same port with the same data (after [`kill`](Self::kill),
    /// [`stop`](Self::stop) or a crash).
    pub async fn restart(&mut self) -> Result<(), ServerError> {
        let _ = self.child.kill().await;
        let (child, _) = spawn(&self.bin, &self.config, Some(self.port)).await?;
        self.child = child;
        Ok(())
    }

    /// Asks the server to shut down (SIGTERM) and waits up to `grace`, then kills it.
    pub async fn stop(&mut self, grace: Duration) {
        if let Some(pid) = self.child.id() {
            let pid = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            if tokio::time::timeout(grace, self.child.wait()).await.is_ok() {
                return;
            }
        }
        let _ = self.child.kill().await;
    }

    /// Waits until the process exits by itself; for supervision.
    pub async fn exited(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.child.wait().await
    }
}

/// Looks for `nats-server` in `$LINKBUS_NATS_SERVER`, `$PATH`, then the usual system folders.
pub fn find_nats_server() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("LINKBUS_NATS_SERVER") {
        return Some(PathBuf::from(bin));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/usr/local/bin"].map(PathBuf::from))
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
}

async fn spawn(bin: &Path, config: &ServerConfig, port: Option<u16>) -> Result<(Child, u16), ServerError> {
    let dir = &config.data_dir;
    let data_err = |source| ServerError::DataDir { path: dir.clone(), source };
    std::fs::create_dir_all(dir).map_err(data_err)?;
    let ports_dir = dir.join("ports");
    let _ = std::fs::remove_dir_all(&ports_dir);
    std::fs::create_dir_all(&ports_dir).map_err(data_err)?;
    let log = dir.join("nats-server.log");
    let conf = dir.join("nats-server.conf");
    // Paths are quoted as JSON strings, which the nats-server config format accepts.
    let quoted = |p: &Path| serde_json::Value::String(p.display().to_string()).to_string();
    let text = format!(
        "host: 127.0.0.1\nport: {port}\nmax_payload: {max}\nlog_file: {log}\nports_file_dir: {ports}\n\
         jetstream {{\n  store_dir: {store}\n}}\n",
        port = port.map_or(-1, i32::from),
        max = config.max_payload,
        log = quoted(&log),
        ports = quoted(&ports_dir),
        store = quoted(&dir.join("jetstream")),
    );
    std::fs::write(&conf, text).map_err(data_err)?;

    let mut child = Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| ServerError::Spawn { bin: bin.to_owned(), source })?;
    let started = Instant::now();
    loop {
        if let Some(port) = read_port(&ports_dir) {
            return Ok((child, port));
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(ServerError::Exited { status, log });
        }
        if started.elapsed() > READY_TIMEOUT {
            let _ = child.kill().await;
            return Err(ServerError::NotReady(READY_TIMEOUT, log));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads the client port from the `*.ports` file nats-server writes once it listens.
fn read_port(dir: &Path) -> Option<u16> {
    let entry = std::fs::read_dir(dir).ok()?.flatten().find(|e| e.path().extension().is_some_and(|x| x == "ports"))?;
    let ports: serde_json::Value = serde_json::from_slice(&std::fs::read(entry.path()).ok()?).ok()?;
    let url = ports.get("nats")?.get(0)?.as_str()?;
    url.rsplit(':').next()?.parse().ok()
}
