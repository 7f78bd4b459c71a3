//! `[api]` and `[console]` of the configuration file: the HTTP surface's own settings, which the
//! `linkbus` binary's configuration embeds.

use serde::Deserialize;

/// `[api]`: the HTTP API of the closed loop ([`crate::api`], described by `docs/openapi.json`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Address the API listens on, an IP and a port (`0.0.0.0:8080` for every interface); empty:
    /// no API. Port 0 picks a free one (printed by `linkbus up`).
    pub listen: String,
    /// Requests per minute to the resident endpoints (`/api/requests/…`, and the Open311
    /// adapter's): each key gets this budget (so even a leaked key cannot read or rate requests in
    /// bulk by guessing source ids), and requests without a valid key share one per client IP (so
    /// they cannot spend a key's); more are answered 429.
    pub public_rate_per_minute: u32,
    /// Connections open at once, at most. At the limit a new connection closes the connection
    /// that has waited longest without a request in progress (one that never sent one first); if
    /// every connection has a request in progress, the new one is answered 503 and closed. Keep
    /// it well under the process's open-file limit (`LimitNOFILE` in the systemd unit).
    pub max_connections: usize,
    /// Seconds a connection has to send a complete request head, from when it opens or its
    /// previous answer ends: also how long an idle keep-alive connection is kept. Then it is
    /// closed.
    pub header_timeout_secs: u64,
    /// Seconds a request has for its body to arrive and its answer to start; else it is answered
    /// 503. (The console's live event stream is not cut: its answer starts at once.)
    pub request_timeout_secs: u64,
    /// A TLS-terminating proxy is in front of `listen`, so keys and session cookies cross the
    /// network encrypted: set it to silence `linkbus config check`'s warning about a `listen`
    /// that is not a loopback address.
    pub behind_tls_proxy: bool,
    /// The public base URL residents reach `linkbus up` at (e.g. `https://linkbus.example.gov`):
    /// the links to the tracking page (`/track/…`) in every receipt start with it; empty: they
    /// are relative (`/track/…`), for the source system to complete.
    pub public_url: String,
    /// Who may call the API (every endpoint but `/healthz`, `/readyz`, `/metrics` and
    /// `/api/openapi.json` takes a key).
    /// Only SHA-256 hashes of the keys are configured (`linkbus api hash-key`), so this file holds
    /// no secret.
    pub keys: Vec<ApiKey>,
    /// The opt-in public export of the monthly reports (`[api.public_stats]`).
    pub public_stats: PublicStatsConfig,
}

/// `[api.public_stats]`: whether `GET /public/stats/{month}` serves the issued monthly figures by
/// 街道 and category to anyone, and the smallest group it shows (`docs/supervision.md`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PublicStatsConfig {
    /// Serve it (off unless configured).
    pub enabled: bool,
    /// Leave out groups with fewer cases received than this.
    pub min_count: u64,
}

impl Default for PublicStatsConfig {
    fn default() -> Self {
        Self { enabled: false, min_count: 10 }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            public_rate_per_minute: 60,
            max_connections: 512,
            header_timeout_secs: 10,
            request_timeout_secs: 30,
            behind_tls_proxy: false,
            public_url: String::new(),
            keys: vec![],
            public_stats: PublicStatsConfig::default(),
        }
    }
}

impl ApiConfig {
    /// What `linkbus config check` warns of: a `listen` reachable from other machines without a
    /// TLS proxy declared in front (keys and session cookies would cross the network in clear);
    /// a `public_url` that cannot start a link.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.listen.is_empty() && !self.behind_tls_proxy && !is_loopback(&self.listen) {
            out.push(format!(
                "api.listen = {:?} is reachable from other machines, and no TLS proxy is declared in front \
                 (api.behind_tls_proxy): API keys and console session cookies would cross the network in \
                 clear; put a TLS-terminating proxy in front (and set console.secure_cookie), or listen on \
                 127.0.0.1",
                self.listen
            ));
        }
        let url = &self.public_url;
        let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
        if !url.is_empty() && (!scheme_ok || url.contains(['?', '#', ' '])) {
            out.push(format!(
                "api.public_url = {url:?} is not an http(s) base URL without a query: the tracking links in \
                 receipts would not work"
            ));
        }
        out
    }
}

/// True when `listen` (`IP:port`, or `localhost:port`) is a loopback address.
fn is_loopback(listen: &str) -> bool {
    match listen.parse::<std::net::SocketAddr>() {
        Ok(addr) => addr.ip().is_loopback(),
        Err(_) => listen.rsplit_once(':').is_some_and(|(host, _)| host.eq_ignore_ascii_case("localhost")),
    }
}

/// `[console]`: the dispatcher console, served by `linkbus up` at `/` of the API's address.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Serve the console (it needs the API: `[api].listen` set).
    pub enabled: bool,
    /// A base map's tile URL template (`https://tiles.example.org/{z}/{x}/{y}.png`); empty: no
    /// base map, only the region's community boundaries (the console works offline).
    pub tile_url: String,
    /// The attribution the tile provider requires, shown on the map.
    pub tile_attribution: String,
    /// Hours a console login lasts (a shift); then the dispatcher enters their key again.
    pub session_hours: u32,
    /// Mark the session cookie `Secure` (sent over HTTPS only): set it when the console is
    /// reached through a TLS-terminating proxy.
    pub secure_cookie: bool,
    /// Sign-in attempts per minute, at most, from each client IP and with each key tried (right
    /// or wrong); more are answered 429, so keys cannot be guessed quickly.
    pub sign_in_per_minute: u32,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            tile_url: String::new(),
            tile_attribution: String::new(),
            session_hours: 12,
            secure_cookie: false,
            sign_in_per_minute: 60,
        }
    }
}

/// One API key (`[[api.keys]]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// What the holder may do.
    pub role: ApiRole,
    /// The dispatcher's name (recorded in the timeline of what they do), the department's id (the
    /// cases it sees and acts on), the operator's name, or the source system's name (logged with
    /// the ratings it relays).
    pub id: String,
    /// SHA-256 of the key, 64 hex digits (`linkbus api hash-key KEY`).
    pub sha256: String,
    /// For a source key: the CloudEvents `source` of the system it speaks for (`/open311`,
    /// `/grid`, `/sf311`…); it submits reports as that source and reads and rates that source's
    /// requests only. Default `/<id>`.
    #[serde(default)]
    pub source: Option<String>,
}

impl ApiKey {
    /// The CloudEvents `source` a source key speaks for.
    pub fn source(&self) -> String {
        self.source.clone().unwrap_or_else(|| format!("/{}", self.id))
    }
}

/// What an API key allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiRole {
    /// Reads every case and acts on any (reassign, cancel, close, acknowledge escalations, split);
    /// reads residents' follow-ups and records the ratings they give by phone (回访).
    Dispatcher,
    /// Reads the cases it has or had, and accepts, rejects, progresses, resolves and closes them;
    /// not the residents' endpoints.
    Department,
    /// Reads every case and residents' follow-ups; acts on none.
    Operator,
    /// A source system relaying its residents' follow-ups and ratings (their 12345/311 app): may
    /// read the public view of a request and rate it (`/api/requests/…`); nothing else.
    Source,
}

impl ApiRole {
    /// The role as the configuration writes it (and as logs and the console show it).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dispatcher => "dispatcher",
            Self::Department => "department",
            Self::Operator => "operator",
            Self::Source => "source",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_beyond_loopback_without_tls_is_warned_of() {
        let warned = |listen: &str, behind_tls_proxy: bool| {
            !ApiConfig { listen: listen.into(), behind_tls_proxy, ..ApiConfig::default() }.warnings().is_empty()
        };
        for quiet in ["127.0.0.1:8080", "[::1]:8080", "localhost:8080", ""] {
            assert!(!warned(quiet, false), "{quiet}");
        }
        for loud in ["0.0.0.0:8080", "10.1.2.3:80", "[::]:8080", "api.example.org:8080"] {
            assert!(warned(loud, false), "{loud}");
            assert!(!warned(loud, true), "{loud} behind a TLS proxy");
        }
    }

    #[test]
    fn a_public_url_that_cannot_start_a_link_is_warned_of() {
        let warned = |url: &str| !ApiConfig { public_url: url.into(), ..ApiConfig::default() }.warnings().is_empty();
        for quiet in ["", "https://linkbus.example.gov", "http://10.0.0.5:8080/linkbus/"] {
            assert!(!warned(quiet), "{quiet}");
        }
        for loud in ["linkbus.example.gov", "ftp://x", "https://x/?a=1", "https://x/#top", "https://x y"] {
            assert!(warned(loud), "{loud}");
        }
    }
}
