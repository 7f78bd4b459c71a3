//! The configuration file (`linkbus.toml`): one TOML file, every field optional with the default
//! shown in `ops/linkbus.example.toml`; `LINKBUS_NATS_URL` overrides the NATS URL,
//! `LINKBUS_NATS_PASSWORD` and `LINKBUS_NATS_TOKEN` its credentials, and CLI flags
//! override what changes per run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
pub use linkbus_adapters::registry::AdaptersConfig;
use linkbus_bus::nats::{StorageLimits, StreamSettings};
use linkbus_bus::server::SyncPolicy;
use linkbus_cases::book::BookConfig;
use linkbus_cases::lifecycle::{Deadlines, MergePolicy, Policy};
use linkbus_cases::webhooks::WebhookConfig;
use linkbus_http::config::{ApiConfig, ConsoleConfig};
use linkbus_matching::RoutingParams;
use linkbus_routers::service::ServiceConfig;
use linkbus_wire::SourceSystem;
use linkbus_wire::claims::{Claims, SystemClaims, Unclaimed};
use serde::Deserialize;

use crate::nats_access::{NatsAuth, NatsTls};

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where NATS is, or how to run the embedded server.
    pub nats: NatsConfig,
    /// How many bytes each stream and bucket may hold.
    pub storage: StorageLimits,
    /// Which event ids and sources each kind of source system may publish.
    pub ingest: IngestConfig,
    /// Which region's data to route with.
    pub region: RegionConfig,
    /// Matching parameters.
    pub routing: RoutingParams,
    /// How the router consumes.
    pub router: RouterConfig,
    /// The closed loop: deadlines, volunteer offers, duplicate merging.
    pub lifecycle: LifecycleConfig,
    /// `[[webhooks]]`: departments without NATS that receive their cases by signed HTTP POST.
    pub webhooks: Vec<WebhookConfig>,
    /// The HTTP API: where it listens and who may use it.
    pub api: ApiConfig,
    /// The dispatcher console served with the API (`docs/console.md`).
    pub console: ConsoleConfig,
    /// Source-system adapters (`docs/adapters.md`).
    pub adapters: AdaptersConfig,
    /// `[supervision]`: the monthly reports (`docs/supervision.md`).
    pub supervision: SupervisionConfig,
}

/// `[supervision]`
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SupervisionConfig {
    /// Issue last month's report (its first version) on this day of the month, 1–28, in the
    /// region's time zone, on whichever replica comes first; none (the default): only by hand.
    pub issue_on_day: Option<i8>,
}

/// Accept and resolve deadlines for one priority, seconds.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadlineConfig {
    /// A department must accept (签收) within this many seconds, or the case escalates.
    pub accept_secs: u64,
    /// The accepting department must resolve within this many seconds, or the case escalates.
    pub resolve_secs: u64,
}

/// `[lifecycle]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LifecycleConfig {
    /// Deadlines by priority, from 1 (life-threatening) to 4 (low).
    pub deadlines: [DeadlineConfig; 4],
    /// Seconds a volunteer has to answer an offer before it goes to the next nearest.
    pub offer_timeout_secs: u64,
    /// Reports at most this far apart (metres)…
    pub merge_distance_m: f64,
    /// …and this far apart in time (seconds), of compatible categories, are one incident.
    pub merge_window_secs: u64,
    /// Groups of categories that describe the same kind of incident (a category always matches
    /// itself), e.g. `[["fire", "smoke"]]`.
    pub merge_groups: Vec<Vec<String>>,
    /// Milliseconds between looks for due deadlines and offers.
    pub tick_ms: u64,
    /// Seconds a closed or cancelled case stays in memory (the hot set: the console, default
    /// listings) after its last change; then it is read from the bucket when asked for (by id,
    /// or a listing of closed, cancelled or archived cases). Nothing is deleted.
    pub closed_retention_secs: u64,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        let policy = Policy::default();
        let secs = |d: jiff::SignedDuration| d.as_secs().max(0) as u64;
        Self {
            deadlines: policy
                .deadlines
                .map(|d| DeadlineConfig { accept_secs: secs(d.accept), resolve_secs: secs(d.resolve) }),
            offer_timeout_secs: secs(policy.offer_timeout),
            merge_distance_m: policy.merge.distance_m,
            merge_window_secs: secs(policy.merge.window),
            merge_groups: policy.merge.groups,
            tick_ms: 250,
            closed_retention_secs: BookConfig::default().closed_retention.as_secs(),
        }
    }
}

/// `[nats]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsConfig {
    /// URL of an existing NATS server or cluster (comma-separated for several). Unset: linkbus
    /// starts and supervises its own nats-server. `LINKBUS_NATS_URL` overrides it.
    pub url: Option<String>,
    /// Data folder of the embedded nats-server (JetStream files, log, its users' keys). Unset
    /// (the default): `.linkbus/nats-<region id>`, a folder per region, so regions run one after
    /// another on this machine never share a bus (a bus holds one region's cases: `linkbus up`
    /// refuses one made for another region).
    pub embedded_data_dir: Option<PathBuf>,
    /// Client port of the embedded server on 127.0.0.1; 0 lets it pick a free one. When another
    /// process holds it (Debian's nats-server package runs a system server on 4222), the embedded
    /// server takes a free port, says which, and the `linkbus` subcommands find it in the data
    /// folder.
    pub embedded_port: u16,
    /// When the embedded server syncs JetStream's files to disk, before it acknowledges a message:
    /// `"always"` (the default) syncs every write, so a report acknowledged to its source survives
    /// a power cut, at a cost in throughput (docs/BENCHMARKS.md); `"interval:<n>ms|s|m"` syncs at
    /// that interval, faster, and a power cut (not a process crash) loses the reports acknowledged
    /// in the last interval. Needs nats-server 2.10.25 or newer. A cluster sets this in its own
    /// nats-server.conf (`ops/deploy/nats-server.conf`).
    #[serde(deserialize_with = "from_str")]
    pub sync: SyncPolicy,
    /// Replicas of each stream: 1 on one server, 3 in a three-node cluster.
    pub replicas: usize,
    /// Seconds within which a re-sent event id is dropped as a duplicate.
    pub duplicate_window_secs: u64,
    /// Days messages are kept in the streams.
    pub retention_days: u64,
    /// Seconds between the client's pings to the server. A connection that answers none of
    /// three in a row (a link that went silent without closing: a black hole) is given up and
    /// the client reconnects, so it is noticed within about three intervals.
    pub ping_interval_secs: u64,
    /// `[nats.auth]`: credentials for `url` (see `linkbus/src/nats_access.rs`).
    pub auth: NatsAuth,
    /// `[nats.tls]`: TLS for `url`.
    pub tls: NatsTls,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: None,
            embedded_data_dir: None,
            embedded_port: 4222,
            sync: SyncPolicy::Always,
            replicas: 1,
            duplicate_window_secs: 600,
            retention_days: 7,
            ping_interval_secs: 10,
            auth: NatsAuth::default(),
            tls: NatsTls::default(),
        }
    }
}

impl NatsConfig {
    /// The embedded nats-server's data folder for region `region_id`: `embedded_data_dir`, or
    /// the region's own, [`default_data_dir`].
    pub fn data_dir_for(&self, region_id: &str) -> PathBuf {
        self.embedded_data_dir.clone().unwrap_or_else(|| default_data_dir(region_id))
    }
}

/// Where the folders of the embedded nats-servers are by default (relative to the working
/// directory), one `nats-<region id>` per region.
pub const DEFAULT_DATA_PARENT: &str = ".linkbus";

/// The default data folder of region `region_id`'s embedded nats-server: `.linkbus/nats-<id>`.
pub fn default_data_dir(region_id: &str) -> PathBuf {
    PathBuf::from(DEFAULT_DATA_PARENT).join(format!("nats-{region_id}"))
}

/// Deserializes a value from its text form ([`std::str::FromStr`]).
fn from_str<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr<Err = String>,
{
    let text = String::deserialize(deserializer)?;
    text.parse().map_err(serde::de::Error::custom)
}

/// `[ingest]`: the id prefixes and CloudEvents sources each kind of source system may publish
/// on its `ingest.<system>.>` subjects, besides those of linkbus's own adapters (see
/// `linkbus_wire::claims`; docs/wire.md, "Who may issue which ids").
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// An id prefix or a source no system claims: "refuse" it (dead letter `unknown_id` or
    /// `unknown_source`), or "accept" it from any system (for development only: then any
    /// publisher may squat such ids in its own stream).
    pub unclaimed: Unclaimed,
    /// Whether every system may publish the synthetic feeds' ids and sources (`sim-…` from
    /// `/linkbus/simulated-feed`, `bench-…` from `/linkbus-bench`): `linkbus up --simulate` and
    /// `linkbus-bench load` need it; a production deployment may turn it off.
    pub synthetic_feeds: bool,
    /// Emergency systems' own publishers (110/119/120 gateways publishing directly on NATS).
    pub emergency: SystemClaims,
    /// Commercial services' own publishers.
    pub commercial: SystemClaims,
    /// Public services' own publishers (a 12345 app, a social-assistance system).
    pub public_service: SystemClaims,
    /// Management systems' own publishers.
    pub management: SystemClaims,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            unclaimed: Unclaimed::Refuse,
            synthetic_feeds: true,
            emergency: SystemClaims::default(),
            commercial: SystemClaims::default(),
            public_service: SystemClaims::default(),
            management: SystemClaims::default(),
        }
    }
}

impl IngestConfig {
    fn of(&self, system: SourceSystem) -> &SystemClaims {
        match system {
            SourceSystem::Emergency => &self.emergency,
            SourceSystem::Commercial => &self.commercial,
            SourceSystem::PublicService => &self.public_service,
            SourceSystem::Management => &self.management,
        }
    }
}

/// `[region]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegionConfig {
    /// Region folder (see `geo-data/README.md`).
    pub dir: PathBuf,
    /// At start-up, fill an empty volunteers bucket from the region's roster, if it ships one.
    pub seed_volunteers: bool,
    /// Follow the region's versions published with `linkbus geo publish` (KV bucket
    /// `linkbus_regions`): each new one is checked, built aside and swapped in without pausing
    /// routing; one that fails is refused and the old one stays.
    pub follow_published: bool,
}

impl Default for RegionConfig {
    fn default() -> Self {
        Self { dir: PathBuf::from("geo-data/beijing"), seed_volunteers: true, follow_published: true }
    }
}

/// `[router]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouterConfig {
    /// Durable consumer name shared by every router process.
    pub durable: String,
    /// Seconds JetStream waits for an ack before redelivering a case to a router.
    pub ack_wait_secs: u64,
    /// Cases handed out but not yet acked, across all routers.
    pub max_ack_pending: i64,
    /// Largest case report accepted, bytes; bigger ones are dead-lettered.
    pub max_payload_bytes: usize,
    /// Cases this process routes concurrently.
    pub max_in_flight: usize,
    /// Start held emergency reports before any other (then commercial, public service,
    /// management), so that a flood of one kind cannot delay a 119 call; false: in the order
    /// they arrived.
    pub emergency_first: bool,
    /// Seconds between two snapshots of the volunteer index saved aside (routers start from the
    /// latest and read only the volunteers' changes since); 0: none are saved.
    pub volunteer_snapshot_secs: u64,
}

impl Default for RouterConfig {
    fn default() -> Self {
        let s = ServiceConfig::default();
        Self {
            durable: s.durable,
            ack_wait_secs: s.ack_wait.as_secs(),
            max_ack_pending: s.max_ack_pending,
            max_payload_bytes: s.max_payload,
            max_in_flight: s.max_in_flight,
            emergency_first: s.emergency_first,
            volunteer_snapshot_secs: 60,
        }
    }
}

impl Config {
    /// Reads a file, or the defaults when `path` is `None`; then applies `LINKBUS_NATS_URL`.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
                Self::parse(&text).with_context(|| format!("invalid configuration {}", path.display()))?
            }
            None => Self::default(),
        };
        if let Some(url) = std::env::var("LINKBUS_NATS_URL").ok().filter(|u| !u.trim().is_empty()) {
            config.nats.url = Some(url);
        }
        config.nats.auth.apply_env();
        config.nats.auth.check()?;
        Ok(config)
    }

    /// Parses and checks configuration text.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let config: Self = toml::from_str(text)?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> anyhow::Result<()> {
        let r = &self.routing;
        anyhow::ensure!(
            r.border_tolerance_m.is_finite() && r.border_tolerance_m >= 0.0,
            "routing.border_tolerance_m must be >= 0"
        );
        anyhow::ensure!(
            r.volunteer_radius_m.is_finite() && r.volunteer_radius_m > 0.0,
            "routing.volunteer_radius_m must be > 0"
        );
        anyhow::ensure!(r.volunteers_k <= 100, "routing.volunteers_k must be at most 100");
        anyhow::ensure!(r.max_offers_per_hour >= 1, "routing.max_offers_per_hour must be at least 1");
        for rule in &r.priority_rules {
            anyhow::ensure!(
                (1..=4).contains(&rule.priority),
                "routing.priority_rules {}: priority must be 1-4",
                rule.name
            );
        }
        let q = &self.router;
        anyhow::ensure!(q.ack_wait_secs >= 1, "router.ack_wait_secs must be at least 1");
        anyhow::ensure!(q.max_in_flight >= 1, "router.max_in_flight must be at least 1");
        anyhow::ensure!(
            q.max_ack_pending >= q.max_in_flight as i64,
            "router.max_ack_pending must be >= router.max_in_flight"
        );
        anyhow::ensure!(
            (1024..=8 * 1024 * 1024).contains(&q.max_payload_bytes),
            "router.max_payload_bytes must be 1 KiB to 8 MiB"
        );
        anyhow::ensure!((1..=5).contains(&self.nats.replicas), "nats.replicas must be 1 to 5");
        anyhow::ensure!(self.nats.duplicate_window_secs >= 1, "nats.duplicate_window_secs must be at least 1");
        anyhow::ensure!(self.nats.ping_interval_secs >= 1, "nats.ping_interval_secs must be at least 1");
        self.storage.check().map_err(anyhow::Error::msg)?;
        for system in SourceSystem::ALL {
            self.ingest.of(system).validate().map_err(|e| anyhow::anyhow!("ingest.{system}.{e}"))?;
        }
        self.nats.auth.check()?;
        self.nats.tls.check()?;
        let l = &self.lifecycle;
        for (n, d) in l.deadlines.iter().enumerate() {
            anyhow::ensure!(
                d.accept_secs >= 1 && d.resolve_secs >= 1,
                "lifecycle.deadlines[{n}] (priority {}): deadlines must be at least 1 second",
                n + 1
            );
        }
        anyhow::ensure!(l.offer_timeout_secs >= 1, "lifecycle.offer_timeout_secs must be at least 1");
        for w in &self.webhooks {
            w.validate().map_err(|e| anyhow::anyhow!("webhooks ({}): {e}", w.department))?;
        }
        anyhow::ensure!(
            l.merge_distance_m.is_finite() && l.merge_distance_m >= 0.0,
            "lifecycle.merge_distance_m must be >= 0"
        );
        anyhow::ensure!((10..=60_000).contains(&l.tick_ms), "lifecycle.tick_ms must be 10 to 60000");
        self.adapters.validate()?;
        if let Some(day) = self.supervision.issue_on_day {
            anyhow::ensure!((1..=28).contains(&day), "supervision.issue_on_day must be 1 to 28 (every month has it)");
        }
        self.check_api()
    }

    fn check_api(&self) -> anyhow::Result<()> {
        let a = &self.api;
        if !a.listen.is_empty() {
            a.listen
                .parse::<std::net::SocketAddr>()
                .map_err(|_| anyhow::anyhow!("api.listen must be an IP and a port, e.g. 127.0.0.1:8080, or empty"))?;
        }
        anyhow::ensure!(a.public_rate_per_minute >= 1, "api.public_rate_per_minute must be at least 1");
        let mut seen = std::collections::HashSet::new();
        for (n, key) in a.keys.iter().enumerate() {
            anyhow::ensure!(!key.id.trim().is_empty(), "api.keys[{n}]: id must not be empty");
            anyhow::ensure!(
                key.sha256.len() == 64 && key.sha256.bytes().all(|b| b.is_ascii_hexdigit()),
                "api.keys[{n}] ({}): sha256 must be 64 hex digits (`linkbus api hash-key KEY`), never the key itself",
                key.id
            );
            anyhow::ensure!(
                seen.insert(key.sha256.to_ascii_lowercase()),
                "api.keys[{n}] ({}): the same key is configured twice",
                key.id
            );
        }
        Ok(())
    }

    /// Matching parameters.
    pub fn routing_params(&self) -> RoutingParams {
        self.routing.clone()
    }

    /// Stream settings.
    pub fn stream_settings(&self) -> StreamSettings {
        StreamSettings {
            duplicate_window: Duration::from_secs(self.nats.duplicate_window_secs),
            max_age: Duration::from_secs(self.nats.retention_days * 24 * 3600),
            replicas: self.nats.replicas,
            storage: self.storage,
        }
    }

    /// Who may publish which ids: linkbus's own adapters' (with the sources configured for the
    /// Open311 and grid adapters), the synthetic feeds' if allowed, and `[ingest]`'s.
    pub fn claims(&self) -> Claims {
        let mut claims = Claims::built_in(self.ingest.synthetic_feeds).with_unclaimed(self.ingest.unclaimed);
        for system in SourceSystem::ALL {
            claims.add(system, self.ingest.of(system));
        }
        let adapter_source = |source: &str| SystemClaims { id_prefixes: vec![], sources: vec![source.to_owned()] };
        claims.add(SourceSystem::PublicService, &adapter_source(&self.adapters.open311.source));
        claims.add(SourceSystem::Management, &adapter_source(&self.adapters.grid.source));
        claims
    }

    /// The case book's settings; `source` names this process in the events it emits.
    pub fn book_config(&self, source: String) -> BookConfig {
        let l = &self.lifecycle;
        let secs = |s: u64| jiff::SignedDuration::from_secs(s as i64);
        BookConfig {
            policy: Policy {
                deadlines: l
                    .deadlines
                    .map(|d| Deadlines { accept: secs(d.accept_secs), resolve: secs(d.resolve_secs) }),
                offer_timeout: secs(l.offer_timeout_secs),
                merge: MergePolicy {
                    distance_m: l.merge_distance_m,
                    window: secs(l.merge_window_secs),
                    groups: l.merge_groups.clone(),
                },
            },
            tick: Duration::from_millis(l.tick_ms),
            closed_retention: Duration::from_secs(l.closed_retention_secs),
            source,
            ..BookConfig::default()
        }
    }

    /// Router service settings; `source` names this process in the events it emits.
    pub fn service_config(&self, source: String) -> ServiceConfig {
        ServiceConfig {
            durable: self.router.durable.clone(),
            ack_wait: Duration::from_secs(self.router.ack_wait_secs),
            max_ack_pending: self.router.max_ack_pending,
            max_payload: self.router.max_payload_bytes,
            max_in_flight: self.router.max_in_flight,
            source,
            claims: self.claims(),
            emergency_first: self.router.emergency_first,
        }
    }
}

#[cfg(test)]
mod tests {
    use linkbus_adapters::adapter::AdapterConfig as _;
    use linkbus_http::config::ApiRole;

    use super::*;

    #[test]
    fn example_file_parses_to_the_defaults() {
        let text = include_str!("../../ops/linkbus.example.toml");
        let parsed = Config::parse(text).expect("example parses");
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn adapters_parse_and_are_checked() {
        let text = "[adapters.cap]\n[adapters.cap.categories]\nmap = { \"Flood Warning\" = \"sewer_issues\" }\n\
                    [adapters.cad]\nsubject = \"cad.in\"\n\
                    [[adapters.commerce.platforms]]\nid = \"meals\"\nsecret = \"s\"\n";
        let config = Config::parse(text).expect("adapters parse");
        assert_eq!(config.adapters.cad.subject, "cad.in");
        assert!(config.adapters.commerce.enabled(), "a platform configured: commerce runs");
        let off = Config::parse("[adapters.cap]\nenabled = false\n").expect("parses");
        assert!(!off.adapters.cap.enabled() && off.adapters.cad.enabled());
        assert!(!off.adapters.commerce.enabled(), "no platform: no commerce routes");
        assert_eq!(config.adapters.cap.subject, "adapter.cap");
        let unsigned = "[[adapters.commerce.platforms]]\nid = \"meals\"\n";
        assert!(Config::parse(unsigned).expect_err("no secret").to_string().contains("secret"));
        assert!(Config::parse("[adapters.cap.categories]\nmap = { a = \"Fire!\" }\n").is_err());
    }

    #[test]
    fn the_sync_policy_is_always_unless_configured() {
        assert_eq!(Config::default().nats.sync, SyncPolicy::Always);
        let lazy = Config::parse("[nats]\nsync = \"interval:250ms\"\n").expect("an interval parses");
        assert_eq!(lazy.nats.sync, SyncPolicy::Interval(Duration::from_millis(250)));
        let err = format!("{:#}", Config::parse("[nats]\nsync = \"never\"\n").expect_err("never"));
        assert!(err.contains("always"), "{err}");
    }

    #[test]
    fn ingest_claims_add_to_the_adapters_own() {
        let text = "[ingest.public_service]\nid_prefixes = [\"app12345\"]\nsources = [\"/app-12345/\"]\n\
                    [adapters.open311]\nsource = \"/sf-311\"\n";
        let claims = Config::parse(text).expect("parses").claims();
        let public = SourceSystem::PublicService;
        assert_eq!(claims.check(public, "app12345-1", "/app-12345/beijing"), Ok(()));
        assert_eq!(claims.check(public, "open311-1", "/sf-311"), Ok(()), "the adapter's configured source");
        assert_eq!(claims.check(public, "sf311-1", "/sf311"), Ok(()), "the built-in ones stay");
        assert_eq!(claims.check(SourceSystem::Emergency, "app12345-1", "/cad").expect_err("").code(), "foreign_id");
        assert_eq!(claims.check(public, "x-1", "/sf311").expect_err("").code(), "unknown_id");
        let open = Config::parse("[ingest]\nunclaimed = \"accept\"\nsynthetic_feeds = false\n").expect("parses");
        assert_eq!(open.claims().check(public, "x-1", "/x"), Ok(()));
        assert!(open.claims().check(public, "sim-1", "/sf311").is_ok(), "unclaimed once synthetic feeds are off");
        let err =
            format!("{:#}", Config::parse("[ingest.emergency]\nid_prefixes = [\"cad-119\"]\n").expect_err("a dash"));
        assert!(err.contains("ingest.emergency.id_prefixes"), "{err}");
        assert!(Config::parse("[storage]\nrouted_mib = 0\n").is_err());
        assert!(Config::parse("[ingest]\nunclaimed = \"maybe\"\n").is_err());
    }

    #[test]
    fn unknown_and_bad_fields_are_refused() {
        assert!(Config::parse("[routing]\nborder_tolerance = 3\n").is_err());
        let err = Config::parse("[routing]\nvolunteer_radius_m = -1\n").expect_err("negative radius");
        assert!(err.to_string().contains("volunteer_radius_m"), "{err}");
    }

    #[test]
    fn adapter_tables_are_checked() {
        let config = Config::parse("[adapters.open311]\nsource = \"/sf-311\"\npublic_reads = true\n").expect("parses");
        assert_eq!((config.adapters.open311.source.as_str(), config.adapters.open311.public_reads), ("/sf-311", true));
        assert!(!config.adapters.grid.categories.map.is_empty(), "the shipped map stays when the table is absent");
        for (bad, names) in [
            ("[adapters.open311]\npriority = 9\n", "adapters.open311.priority"),
            ("[adapters.open311]\nsource = \"open311\"\n", "adapters.open311.source"),
            ("[adapters.grid.categories]\nmap = { \"component:0101\" = \"Sewer!\" }\n", "adapters.grid.categories"),
            ("[adapters.grid.categories]\nmap = { \"manhole\" = \"sewer_issues\" }\n", "adapters.grid.categories"),
            ("[adapters.grid]\nmax_batch_rows = 0\n", "adapters.grid.max_batch_rows"),
        ] {
            let err = format!("{:#}", Config::parse(bad).expect_err(bad));
            assert!(err.contains(names), "{bad}: {err}");
        }
        assert!(Config::parse("[adapters.telegraph]\n").is_err(), "unknown adapters are refused");
    }

    #[test]
    fn api_keys_are_hashes_and_listen_is_an_address() {
        let hash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let ok = format!(
            "[api]\nlisten = \"\"\n[[api.keys]]\nrole = \"department\"\nid = \"puc-sewer-ops\"\nsha256 = \"{hash}\"\n"
        );
        let config = Config::parse(&ok).expect("a hashed key parses");
        assert_eq!(config.api.keys[0].role, ApiRole::Department);
        let plain = ok.replace(hash, "my-secret-key");
        let err = Config::parse(&plain).expect_err("a plaintext key");
        assert!(err.to_string().contains("sha256"), "{err}");
        let twice = format!("{ok}[[api.keys]]\nrole = \"operator\"\nid = \"ops\"\nsha256 = \"{hash}\"\n");
        assert!(Config::parse(&twice).is_err());
        assert!(Config::parse("[api]\nlisten = \"localhost\"\n").is_err());
        assert!(Config::parse("[api]\npublic_rate_per_minute = 0\n").is_err());
        assert!(Config::parse("[[api.keys]]\nrole = \"admin\"\nid = \"x\"\nsha256 = \"00\"\n").is_err());
        let source = ok.replace("\"department\"", "\"source\"");
        assert_eq!(Config::parse(&source).expect("a source key parses").api.keys[0].role, ApiRole::Source);
    }
}
