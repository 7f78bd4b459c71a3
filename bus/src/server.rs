//! The embedded nats-server: a child process with JetStream, for `linkbus up` when no NATS URL
//! is configured and for tests, which kill and restart it.
//!
//! The server listens on loopback, on a fixed port or on one it picks itself (read back from
//! its ports file, so there is no race for a free port), and keeps its JetStream files and log
//! in `data_dir` (made `0700`: only its user may enter). A restart keeps the port and the data,
//! so clients reconnect and find their streams.
//!
//! - **Who may connect**: [`ServerConfig::authorization`] names an `authorization { … }` file to
//!   include (linkbus writes one of NKey users); without it anyone on the machine may connect,
//!   which only the tests ask for.
//! - **Durability**: [`ServerConfig::sync`] sets when JetStream syncs to disk
//!   ([`SyncPolicy`]); setting it requires nats-server [`MIN_VERSION`] or newer, checked before
//!   the start with a message that says why and where to get one.
//! - **One owner**: a start locks `data_dir/lock` (a second `linkbus up` on the same folder is
//!   refused), and stops a nats-server left running from this folder by an owner that died
//!   (found by its pid file and its command line).
//! - **Dies with its owner**: where util-linux's `setpriv` is installed, the child is started
//!   through `setpriv --pdeathsig TERM`, so the kernel stops it when the process that started it
//!   dies, even by SIGKILL (a parent-death signal without `unsafe` code here).
//! - **A taken port**: when the configured port is taken by another process (Debian's
//!   nats-server package runs a system server on 4222), the server listens on a free port
//!   instead and [`NatsServer::port_taken`] says so; [`running_url`] finds it for clients.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
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
    /// When JetStream syncs what it stored to disk. `None` leaves the server's default (every two
    /// minutes: an acknowledged message can be lost in a power cut) and runs any version; `Some`
    /// requires nats-server [`MIN_VERSION`].
    pub sync: Option<SyncPolicy>,
    /// A file holding an `authorization { … }` block to include (best inside `data_dir`; one
    /// elsewhere is copied in); `None` lets every local process connect without credentials
    /// (the tests' servers).
    pub authorization: Option<PathBuf>,
    /// The JetStream store; `data_dir/jetstream` when `None` (the power-cut test mounts a
    /// filesystem that forgets unsynced writes there).
    pub store_dir: Option<PathBuf>,
}

impl ServerConfig {
    /// A server on a port of its choosing, storing under `data_dir`, with an 8 MiB payload limit,
    /// the server's default sync and no authentication.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            bin: None,
            data_dir: data_dir.into(),
            port: None,
            max_payload: 8 * 1024 * 1024,
            sync: None,
            authorization: None,
            store_dir: None,
        }
    }

    fn store(&self) -> PathBuf {
        self.store_dir.clone().unwrap_or_else(|| self.data_dir.join("jetstream"))
    }
}

/// When JetStream syncs its files to disk before a message counts as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncPolicy {
    /// Sync every write before acknowledging it (`sync_interval: always`): an acknowledged message
    /// survives a power cut.
    #[default]
    Always,
    /// Sync at this interval: faster, and a power cut (not a process crash) loses up to an
    /// interval of acknowledged messages.
    Interval(Duration),
}

impl SyncPolicy {
    /// The value of `sync_interval` in nats-server's configuration.
    fn conf_value(&self) -> String {
        match self {
            SyncPolicy::Always => "always".to_owned(),
            SyncPolicy::Interval(d) => format!("\"{}ms\"", d.as_millis().max(1)),
        }
    }
}

impl fmt::Display for SyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncPolicy::Always => f.write_str("always"),
            SyncPolicy::Interval(d) => write!(f, "interval:{}ms", d.as_millis()),
        }
    }
}

impl FromStr for SyncPolicy {
    type Err = String;

    /// `always`, or `interval:<n>ms|s|m` (e.g. `interval:100ms`, `interval:2m`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{text:?}: expected \"always\" or \"interval:<n>ms|s|m\", e.g. \"interval:100ms\"");
        if text == "always" {
            return Ok(SyncPolicy::Always);
        }
        let spec = text.strip_prefix("interval:").ok_or_else(bad)?;
        let (digits, unit) = spec.split_at(spec.find(|c: char| !c.is_ascii_digit()).unwrap_or(spec.len()));
        let n: u64 = digits.parse().map_err(|_| bad())?;
        let interval = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            _ => return Err(bad()),
        };
        if interval.is_zero() {
            return Err(format!("{text:?}: the interval must be above zero (\"always\" syncs every write)"));
        }
        Ok(SyncPolicy::Interval(interval))
    }
}

/// The oldest nats-server linkbus runs as its embedded server with a sync policy: 2.9 refuses
/// `sync_interval` (`unknown field`), and 2.10.20–2.10.22 could lose a whole stream on a process
/// crash. 2.10.25 is the oldest release checked to accept `sync_interval: always`; the project
/// installs and tests 2.15.1 (`ops/scripts/ensure-nats-server`).
pub const MIN_VERSION: Version = Version(2, 10, 25);

/// A nats-server version, `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

impl Version {
    /// The version in `nats-server --version`'s output (`nats-server: v2.15.1`).
    pub fn parse(output: &str) -> Option<Self> {
        let start = output
            .char_indices()
            .zip(output.chars().skip(1))
            .find_map(|((i, c), next)| (c == 'v' && next.is_ascii_digit()).then_some(i + 1))?;
        let rest = &output[start..];
        let end = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
        let mut parts = rest[..end].split('.').map(|p| p.parse::<u32>().ok());
        Some(Version(parts.next()??, parts.next()??, parts.next().flatten().unwrap_or(0)))
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
    /// The executable is older than [`MIN_VERSION`].
    #[error(
        "{bin} is nats-server {found}; linkbus needs {MIN_VERSION} or newer to sync to disk before \
         acknowledging (`sync_interval`, which 2.9 refuses; 2.10.20-2.10.22 could also lose a stream on \
         a crash): run ops/scripts/ensure-nats-server (it installs 2.15.1 into .linkbus/tools), or set \
         LINKBUS_NATS_SERVER to a newer nats-server"
    )]
    TooOld {
        /// The executable.
        bin: PathBuf,
        /// Its version.
        found: Version,
    },
    /// Its version could not be read.
    #[error("cannot read the version of {bin} (`{bin} --version`): {detail}")]
    Version {
        /// The executable.
        bin: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// Another process runs a server on this data folder.
    #[error(
        "another linkbus runs the embedded nats-server of {0} (it holds {0}/lock): stop it, or give this \
         one another [nats] embedded_data_dir"
    )]
    InUse(PathBuf),
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

/// A running nats-server child. Dropping it kills the process and releases the data folder.
#[derive(Debug)]
pub struct NatsServer {
    config: ServerConfig,
    bin: PathBuf,
    child: Child,
    port: u16,
    port_taken: Option<u16>,
    stopped_leftover: Option<u32>,
    /// `data_dir/lock`, locked for as long as this value lives.
    _lock: std::fs::File,
}

const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a leftover server is given to stop on SIGTERM before SIGKILL.
const LEFTOVER_GRACE: Duration = Duration::from_secs(10);

impl NatsServer {
    /// Starts the server and waits until it accepts clients.
    pub async fn start(config: ServerConfig) -> Result<Self, ServerError> {
        let bin = match &config.bin {
            Some(bin) => bin.clone(),
            None => find_nats_server().ok_or(ServerError::NotFound)?,
        };
        if config.sync.is_some() {
            let found = version(&bin).await?;
            if found < MIN_VERSION {
                return Err(ServerError::TooOld { bin, found });
            }
        }
        let dir = &config.data_dir;
        let data_err = |source| ServerError::DataDir { path: dir.clone(), source };
        private_dir(dir).map_err(data_err)?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))
            .map_err(data_err)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(ServerError::InUse(dir.clone())),
            Err(std::fs::TryLockError::Error(e)) => return Err(data_err(e)),
        }
        // This process owns the folder now: a server still running from it is a leftover.
        let stopped_leftover = stop_leftover(dir, &conf_path(dir)).await;
        let port_taken = config.port.filter(|p| !port_is_free(*p));
        let port = if port_taken.is_some() { None } else { config.port };
        let (child, port) = spawn(&bin, &config, port).await?;
        Ok(Self { config, bin, child, port, port_taken, stopped_leftover, _lock: lock })
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The configured port, when another process held it and the server took a free one.
    pub fn port_taken(&self) -> Option<u16> {
        self.port_taken
    }

    /// The pid of a nats-server left running from this data folder that the start stopped.
    pub fn stopped_leftover(&self) -> Option<u32> {
        self.stopped_leftover
    }

    /// The server's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
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
            terminate(pid);
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

/// Looks for `nats-server` in `$LINKBUS_NATS_SERVER`; then in `.linkbus/tools/` of the current
/// folder or the nearest parent that has one (where `ops/scripts/ensure-nats-server` installs the
/// pinned release; only a file of this user or root that no one else may change); then `$PATH`
/// and the usual system folders.
pub fn find_nats_server() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("LINKBUS_NATS_SERVER") {
        return Some(PathBuf::from(bin));
    }
    if let Some(bin) = project_tools() {
        return Some(bin);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/usr/local/bin"].map(PathBuf::from))
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
}

/// The nearest `.linkbus/tools/nats-server` from the current folder up, if it is trusted.
fn project_tools() -> Option<PathBuf> {
    let cwd = std::env::current_dir().ok()?;
    let bin = cwd.ancestors().map(|dir| dir.join(".linkbus/tools/nats-server")).find(|bin| bin.is_file())?;
    trusted(&bin).then_some(bin)
}

#[cfg(unix)]
fn trusted(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(meta) = std::fs::metadata(path) else { return false };
    let me = std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0);
    (meta.uid() == me || meta.uid() == 0) && meta.mode() & 0o022 == 0
}

#[cfg(not(unix))]
fn trusted(_: &Path) -> bool {
    true
}

/// The version `bin --version` reports.
pub async fn version(bin: &Path) -> Result<Version, ServerError> {
    let err = |detail: String| ServerError::Version { bin: bin.to_owned(), detail };
    let out = Command::new(bin).arg("--version").output().await.map_err(|e| err(e.to_string()))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    Version::parse(&text).ok_or_else(|| err(format!("no version in {:?}", text.trim())))
}

/// The URL of the server running from `data_dir` now, read from its ports file (the server
/// writes it once it listens and removes it when it stops; one whose process is gone is
/// ignored): how `linkbus` subcommands find the embedded server, whatever port it took.
pub fn running_url(data_dir: &Path) -> Option<String> {
    let port = read_port(&data_dir.join("ports"), true)?;
    Some(format!("nats://127.0.0.1:{port}"))
}

/// The process id recorded in the pid file of `data_dir`, if that process is alive.
pub fn running_pid(data_dir: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(data_dir.join("nats-server.pid")).ok()?.trim().parse().ok()?;
    alive(pid).then_some(pid)
}

fn conf_path(dir: &Path) -> PathBuf {
    dir.join("nats-server.conf")
}

/// Creates `dir` (and its parents) and makes it `0700`: only its user may enter.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn alive(pid: u32) -> bool {
    i32::try_from(pid).is_ok_and(|pid| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok())
}

fn terminate(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
    }
}

/// Stops the server the pid file of `dir` names, if it is alive and was started with `conf`
/// (its command line says so: a recycled pid of another program is left alone). Returns its pid.
async fn stop_leftover(dir: &Path, conf: &Path) -> Option<u32> {
    let pid = running_pid(dir)?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
    let conf = std::fs::canonicalize(conf).ok()?;
    // An argument naming our configuration, relative to the process's folder or absolute.
    let names_conf = |arg: &[u8]| {
        let arg = Path::new(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(arg));
        std::fs::canonicalize(cwd.join(arg)).is_ok_and(|p| p == conf)
    };
    if !cmdline.split(|b| *b == 0).any(names_conf) {
        return None;
    }
    tracing::warn!(pid, dir = %dir.display(), "a nats-server is still running from this data folder (its linkbus died); stopping it");
    terminate(pid);
    let deadline = Instant::now() + LEFTOVER_GRACE;
    while alive(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if alive(pid)
        && let Ok(raw) = i32::try_from(pid)
    {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), nix::sys::signal::Signal::SIGKILL);
        while alive(pid) && Instant::now() < deadline + LEFTOVER_GRACE {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Some(pid)
}

/// `setpriv` of util-linux, when installed: it starts the server with a parent-death signal.
fn setpriv() -> Option<PathBuf> {
    ["/usr/bin/setpriv", "/bin/setpriv"].map(PathBuf::from).into_iter().find(|p| p.is_file())
}

async fn spawn(bin: &Path, config: &ServerConfig, port: Option<u16>) -> Result<(Child, u16), ServerError> {
    let dir = &config.data_dir;
    let data_err = |source| ServerError::DataDir { path: dir.clone(), source };
    private_dir(dir).map_err(data_err)?;
    let ports_dir = dir.join("ports");
    let _ = std::fs::remove_dir_all(&ports_dir);
    std::fs::create_dir_all(&ports_dir).map_err(data_err)?;
    let log = dir.join("nats-server.log");
    let conf = conf_path(dir);
    // Paths are quoted as JSON strings, which the nats-server config format accepts.
    let quoted = |p: &Path| serde_json::Value::String(p.display().to_string()).to_string();
    let sync = config.sync.map(|s| format!("  sync_interval: {}\n", s.conf_value())).unwrap_or_default();
    // nats-server reads an include relative to the configuration's folder.
    let authorization = match config.authorization.as_deref() {
        Some(file) => {
            let inside = match file.strip_prefix(dir) {
                Ok(inside) => inside.to_owned(),
                Err(_) => {
                    std::fs::copy(file, dir.join("authorization.conf")).map_err(data_err)?;
                    PathBuf::from("authorization.conf")
                }
            };
            format!("include {}\n", quoted(&inside))
        }
        None => String::new(),
    };
    let text = format!(
        "# Written by linkbus at each start of its embedded nats-server; edits are overwritten.\n\
         host: 127.0.0.1\nport: {port}\nmax_payload: {max}\nlog_file: {log}\nports_file_dir: {ports}\n\
         pid_file: {pid}\n{authorization}\
         jetstream {{\n  store_dir: {store}\n{sync}}}\n",
        port = port.map_or(-1, i32::from),
        max = config.max_payload,
        log = quoted(&log),
        ports = quoted(&ports_dir),
        pid = quoted(&dir.join("nats-server.pid")),
        store = quoted(&config.store()),
    );
    std::fs::write(&conf, text).map_err(data_err)?;

    let mut command = match setpriv() {
        Some(setpriv) => {
            let mut command = Command::new(setpriv);
            command.args(["--pdeathsig", "TERM", "--"]).arg(bin);
            command
        }
        None => Command::new(bin),
    };
    // In a process group of its own: a ctrl-c in the terminal reaches linkbus alone, which
    // finishes its cases in flight before it stops the server.
    let mut child = command
        .arg("-c")
        .arg(&conf)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| ServerError::Spawn { bin: bin.to_owned(), source })?;
    let started = Instant::now();
    loop {
        if let Some(port) = read_port(&ports_dir, false) {
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

/// Reads the client port from the `*.ports` file nats-server writes once it listens (named
/// `<exe>_<pid>.ports`); with `live`, only from a file whose process is still alive.
fn read_port(dir: &Path, live: bool) -> Option<u16> {
    let entry = std::fs::read_dir(dir).ok()?.flatten().find(|e| {
        let path = e.path();
        path.extension().is_some_and(|x| x == "ports")
            && (!live
                || path
                    .file_stem()
                    .and_then(|s| s.to_str()?.rsplit('_').next()?.parse::<u32>().ok())
                    .is_some_and(alive))
    })?;
    let ports: serde_json::Value = serde_json::from_slice(&std::fs::read(entry.path()).ok()?).ok()?;
    let url = ports.get("nats")?.get(0)?.as_str()?;
    url.rsplit(':').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_policies_parse_and_print() {
        assert_eq!("always".parse(), Ok(SyncPolicy::Always));
        assert_eq!("interval:100ms".parse(), Ok(SyncPolicy::Interval(Duration::from_millis(100))));
        assert_eq!("interval:2m".parse(), Ok(SyncPolicy::Interval(Duration::from_secs(120))));
        for bad in ["never", "interval:", "interval:5h", "interval:0ms", "100ms"] {
            assert!(bad.parse::<SyncPolicy>().is_err(), "{bad}");
        }
        assert_eq!(SyncPolicy::Interval(Duration::from_secs(2)).to_string(), "interval:2000ms");
        assert_eq!(SyncPolicy::Interval(Duration::from_millis(5)).conf_value(), "\"5ms\"");
    }

    #[test]
    fn versions_are_read_from_the_version_line() {
        assert_eq!(Version::parse("nats-server: v2.15.1\n"), Some(Version(2, 15, 1)));
        // 2.10's output has no newline.
        assert_eq!(Version::parse("nats-server: v2.10.25"), Some(Version(2, 10, 25)));
        assert!(Version::parse("nats-server: v2.9.10").is_some_and(|v| v < MIN_VERSION));
        assert_eq!(Version::parse("garbage"), None);
    }
}
