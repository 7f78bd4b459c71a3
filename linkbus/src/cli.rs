//! The command line: `linkbus up | route | replay | watch | report | act | answer | grid-upload |
//! geo validate|stats|diff|publish|rerun | config check | api hash-key | nats-auth |
//! deadletter list|replay`. Building regions is `linkbus-geo-build`; load tests are `linkbus-bench`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use linkbus_geo_data::Region;
use linkbus_geo_data::validate::Tolerances;
use linkbus_wire::{Action, Contact, Datum, Location, SourceSystem};

use crate::client;
use crate::config::Config;
use crate::deadletter;
use crate::geo_tools;
use crate::nats_access;
use crate::nats_auth::{self, AuthOptions};
use crate::replay::{self, ReplayOptions};
use crate::route::Offline;
use crate::service;
use crate::up::{self, UpOptions};
use crate::watch;
use linkbus_http::auth;

/// linkbus: links a community's emergency, commercial, public-service and management systems
/// over NATS, routing each case to its community, department and nearby volunteers.
#[derive(Debug, Parser)]
#[command(name = "linkbus", version)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// What `linkbus replay` does after routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Outcomes {
    /// Nothing: the cases stay as routed.
    None,
    /// Replay each SF 311 request's real acceptance and closure, time-compressed by --speed.
    Real,
}

#[derive(Debug, Args)]
struct Common {
    /// Configuration file (TOML; see ops/linkbus.example.toml). Defaults apply without one.
    #[arg(long, short, env = "LINKBUS_CONFIG")]
    config: Option<PathBuf>,
    /// NATS URL; overrides the configuration and LINKBUS_NATS_URL.
    #[arg(long)]
    nats_url: Option<String>,
    /// Region data folder, or the name of one under geo-data/ (beijing, san-francisco,
    /// shenzhen); overrides [region].dir.
    #[arg(long)]
    region: Option<PathBuf>,
}

impl Common {
    fn config(&self) -> anyhow::Result<Config> {
        let mut config = Config::load(self.config.as_deref())?;
        if let Some(url) = &self.nats_url {
            config.nats.url = Some(url.clone());
        }
        if let Some(region) = &self.region {
            let named = PathBuf::from("geo-data").join(region);
            let by_name = !region.exists() && region.components().count() == 1 && named.exists();
            config.region.dir = if by_name { named } else { region.clone() };
        }
        Ok(config)
    }

    /// Connects to a running linkbus's NATS: the configured URL with `[nats.auth]`/`[nats.tls]`,
    /// or the embedded server running from `[nats] embedded_data_dir` (by default the region's
    /// `.linkbus/nats-<region id>`) with the local tools' key
    /// (see [`crate::embedded`]).
    async fn connect(&self) -> anyhow::Result<async_nats::Client> {
        let config = self.config()?;
        let patience = Duration::from_secs(5);
        let data = crate::embedded::client_data_dir(&config.nats, &config.region.dir);
        let (url, nats) = match (&config.nats.url, data) {
            // A URL and no embedded server's folder to find local keys in: as configured.
            (Some(url), Err(_)) => (url.clone(), config.nats.clone()),
            (_, data) => crate::embedded::client_settings(&config.nats, &data?, patience).await?,
        };
        service::connect_configured(&url, &nats, patience, None).await
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service (with an embedded nats-server when no NATS URL is configured).
    Up {
        #[command(flatten)]
        common: Common,
        /// Replay this data file through the service once it is ready (SF 311 .csv or .jsonl).
        #[arg(long)]
        replay: Option<PathBuf>,
        /// Replay pace in cases per second; as fast as possible when absent.
        #[arg(long)]
        rate: Option<f64>,
        /// Stop once the replay is done.
        #[arg(long, requires = "replay")]
        exit_after_replay: bool,
        /// Drive a SIMULATED feed: made-up cases at the region's community centres with the
        /// category mix and hourly profile of the real SF 311 sample (--rate: mean cases/s, 2).
        #[arg(long, conflicts_with = "replay")]
        simulate: bool,
        /// The SF 311 sample the simulated feed takes its mix and profile from.
        #[arg(long, default_value = "geo-data/san-francisco/sf311-cases-sample.csv")]
        simulate_profile: PathBuf,
        /// Seed of the simulated cases and departments (the same seed draws the same feed);
        /// the clock's seconds when absent.
        #[arg(long, requires = "simulate")]
        simulate_seed: Option<u64>,
    },
    /// Route one case (given --lon/--lat/--category) or JSON lines from stdin; no NATS needed.
    Route {
        #[command(flatten)]
        common: Common,
        /// Longitude (WGS-84).
        #[arg(long, requires_all = ["lat", "category"], allow_hyphen_values = true)]
        lon: Option<f64>,
        /// Latitude (WGS-84).
        #[arg(long, requires_all = ["lon", "category"], allow_hyphen_values = true)]
        lat: Option<f64>,
        /// Category, e.g. sewer_issues or cardiac_arrest.
        #[arg(long)]
        category: Option<String>,
        /// Priority 1-4; the category's default when absent.
        #[arg(long)]
        priority: Option<u8>,
    },
    /// Publish a data file's cases to a running linkbus and report what became of them.
    Replay {
        #[command(flatten)]
        common: Common,
        /// SF 311 CSV export, or JSON lines of case-reported events.
        file: PathBuf,
        /// Cases per second; as fast as possible when absent.
        #[arg(long)]
        rate: Option<f64>,
        /// Seconds to wait for outstanding outcomes after the last publish.
        #[arg(long, default_value_t = 60)]
        wait_secs: u64,
        /// After routing, `real` acts out each SF 311 request's real acceptance and closure (as
        /// the responsible department, marked as replayed on the case's timeline).
        #[arg(long, value_enum, default_value_t = Outcomes::None)]
        outcomes: Outcomes,
        /// With --outcomes real: real seconds per replayed second (1000000: a day in 86 ms, the
        /// sample's longest case, 5.4 years, in under 3 minutes).
        #[arg(long, default_value_t = 1_000_000.0)]
        speed: f64,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Subscribe like a department's plain NATS client and print what arrives.
    Watch {
        #[command(flatten)]
        common: Common,
        /// Subjects to subscribe to.
        #[arg(default_value = "routed.dept.>")]
        subjects: Vec<String>,
        /// Stop after this many messages.
        #[arg(long)]
        count: Option<usize>,
    },
    /// Report a case, as a source system would (publishes on ingest.<system>.<category>).
    Report {
        #[command(flatten)]
        common: Common,
        /// Event id, which is also the case id (letters, digits, `-`, `_`, `:`).
        #[arg(long)]
        id: String,
        /// CloudEvents source of the reporting system, e.g. /cad-119.
        #[arg(long, default_value = "/linkbus-cli")]
        source: String,
        /// Kind of system: emergency, commercial, public_service, management.
        #[arg(long, value_parser = parse_system)]
        system: SourceSystem,
        /// Category, e.g. fire.
        #[arg(long)]
        category: String,
        /// Priority 1 (life-threatening) to 4 (low).
        #[arg(long, default_value_t = 3)]
        priority: u8,
        /// Longitude, in the datum given by --datum.
        #[arg(long, allow_hyphen_values = true)]
        lon: f64,
        /// Latitude, in the datum given by --datum.
        #[arg(long, allow_hyphen_values = true)]
        lat: f64,
        /// Datum of --lon/--lat: wgs84, gcj02 (AMap, Tencent) or bd09 (Baidu).
        #[arg(long, default_value = "wgs84", value_parser = parse_datum)]
        datum: Datum,
        /// Street address.
        #[arg(long)]
        address: Option<String>,
        /// What is happening.
        #[arg(long)]
        description: Option<String>,
        /// The reporting system's own id; the event id when absent.
        #[arg(long)]
        source_id: Option<String>,
        /// Reporter's phone (shown to departments only).
        #[arg(long)]
        phone: Option<String>,
        /// A vulnerability flag (elderly_alone, disabled, minor, persons_trapped…); repeatable.
        #[arg(long = "flag")]
        flags: Vec<String>,
    },
    /// Act on a case as a department, over NATS (action.<department>).
    Act {
        #[command(flatten)]
        common: Common,
        /// The department acting.
        #[arg(long)]
        department: String,
        /// The case.
        #[arg(long = "case")]
        case_id: String,
        /// The action as JSON, e.g. '{"action":"accept"}' or '{"action":"reject","reason":"not ours"}'.
        action: String,
    },
    /// Answer an offer as a volunteer, over NATS (volunteer.<id>.answer).
    Answer {
        #[command(flatten)]
        common: Common,
        /// The volunteer answering.
        #[arg(long)]
        volunteer: String,
        /// The case offered.
        #[arg(long = "case")]
        case_id: String,
        /// Accept the offer (decline when absent).
        #[arg(long)]
        accept: bool,
    },
    /// Upload a grid-management batch (CSV or JSON lines) to a running linkbus's grid adapter.
    GridUpload {
        #[command(flatten)]
        common: Common,
        /// The file: .csv, or .jsonl / .ndjson.
        file: PathBuf,
        /// The API's base URL; http://<[api].listen> when absent.
        #[arg(long)]
        api: Option<String>,
        /// The grid system's source key.
        #[arg(long, env = "LINKBUS_API_KEY", hide_env_values = true)]
        key: String,
    },
    /// Issue a volunteer a credential for the volunteers' app (printed once, as JSON), or revoke it.
    VolunteerCredential {
        #[command(flatten)]
        common: Common,
        /// The volunteer.
        #[arg(long)]
        id: String,
        /// Revoke the volunteer's credential instead.
        #[arg(long)]
        revoke: bool,
        /// The API's base URL; http://<[api].listen> when absent.
        #[arg(long)]
        api: Option<String>,
        /// A dispatcher's or operator's key.
        #[arg(long, env = "LINKBUS_API_KEY", hide_env_values = true)]
        key: String,
    },
    /// Region data tools.
    Geo {
        #[command(subcommand)]
        command: GeoCommand,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// HTTP API tools.
    Api {
        #[command(subcommand)]
        command: ApiCommand,
    },
    /// Write the nats-server users of a deployment (NKeys) and what each may do:
    /// OUT/authorization.conf to include in nats-server.conf, OUT/nkeys/<user>.nk to hand out.
    NatsAuth {
        #[command(flatten)]
        common: Common,
        /// Output folder; seeds already in OUT/nkeys are kept.
        #[arg(long, default_value = "nats-auth")]
        out: PathBuf,
        /// An operator's name (read-only user `operator-<name>`); repeatable.
        #[arg(long = "operator", default_values_t = ["ops".to_owned()])]
        operators: Vec<String>,
        /// No user per roster volunteer (see docs/operations.md for large volunteer counts).
        #[arg(long)]
        no_volunteers: bool,
    },
    /// Dead letters: list them, replay them once the cause is fixed.
    Deadletter {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        command: DeadletterCommand,
    },
}

#[derive(Debug, Subcommand)]
enum DeadletterCommand {
    /// List dead letters (sequence, time, stage, reason code, size, original subject, reason).
    List {
        #[command(flatten)]
        filter: DeadletterFilter,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Send dead letters, byte for byte, to the subject they first arrived on; each is sent once
    /// however often this runs (replayed ones are recorded and skipped).
    Replay {
        #[command(flatten)]
        filter: DeadletterFilter,
    },
}

#[derive(Debug, Args)]
struct DeadletterFilter {
    /// Refused at this stage: ingest, cases, volunteers, webhook, adapter…
    #[arg(long)]
    stage: Option<String>,
    /// With this reason code: malformed, invalid, too_large, undeliverable…
    #[arg(long)]
    code: Option<String>,
    /// Arrived on a subject matching this NATS pattern, e.g. 'ingest.emergency.>'.
    #[arg(long)]
    subject: Option<String>,
    /// Dead-lettered at or after this time (RFC 3339, e.g. 2026-11-27T10:00:00Z).
    #[arg(long)]
    since: Option<jiff::Timestamp>,
    /// Dead-lettered before this time (RFC 3339).
    #[arg(long)]
    until: Option<jiff::Timestamp>,
    /// Only this stream sequence (as `list` shows after `#`); repeatable.
    #[arg(long = "seq")]
    sequences: Vec<u64>,
}

impl From<DeadletterFilter> for deadletter::Filter {
    fn from(f: DeadletterFilter) -> Self {
        Self {
            stage: f.stage,
            code: f.code,
            subject: f.subject,
            since: f.since,
            until: f.until,
            sequences: f.sequences,
        }
    }
}

#[derive(Debug, Subcommand)]
enum ApiCommand {
    /// Print the SHA-256 of an API key, for `[[api.keys]] sha256` (the configuration never holds
    /// the key itself).
    HashKey {
        /// The key; read from the first line of stdin when absent (keeps it out of the shell
        /// history and the process list).
        key: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum GeoCommand {
    /// Check a region's map: invalid rings, self-intersections, overlaps, gaps, orphans, by id.
    Validate {
        /// Region folder.
        dir: PathBuf,
        /// Overlaps up to this many m² are rounding: not reported.
        #[arg(long, default_value_t = 10.0)]
        overlap_m2: f64,
        /// Larger overlaps up to this share of the smaller community are border slivers
        /// (warnings); beyond it, errors.
        #[arg(long, default_value_t = 0.01)]
        overlap_share: f64,
        /// Gaps up to this many m² are not reported.
        #[arg(long, default_value_t = 1000.0)]
        gap_m2: f64,
        /// Apply the safe repairs (ring orientation, repeated points) into communities.repaired.geojson.
        #[arg(long)]
        repair: bool,
    },
    /// Publish a region folder as a version (KV bucket linkbus_regions) and make it current:
    /// every router following it checks it, builds it aside and swaps it in.
    Publish {
        #[command(flatten)]
        common: Common,
        /// Region folder; [region].dir when absent.
        dir: Option<PathBuf>,
    },
    /// Re-run past cases against the region version they were routed with and against another
    /// (a folder, or the version now current) to see what would change.
    Rerun {
        #[command(flatten)]
        common: Common,
        /// Case ids.
        #[arg(long = "case", required = true)]
        cases: Vec<String>,
        /// Region folder to compare with; the version now current in the bucket when absent.
        #[arg(long)]
        against: Option<PathBuf>,
    },
    /// Figures of a region: counts, vertices, areas.
    Stats {
        /// Region folder.
        dir: PathBuf,
    },
    /// What changed between two versions of a region's map: added, removed, reshaped (by area).
    Diff {
        /// The old version's folder.
        old: PathBuf,
        /// The new version's folder.
        new: PathBuf,
        /// A boundary counts as reshaped when it gained and lost more than this many m².
        #[arg(long, default_value_t = 100.0)]
        threshold_m2: f64,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check a configuration file and the region it names.
    Check {
        /// The file.
        file: PathBuf,
    },
}

/// Entry point of the `linkbus` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("linkbus: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("linkbus: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn parse_system(text: &str) -> Result<SourceSystem, String> {
    SourceSystem::parse(text).ok_or_else(|| "expected emergency, commercial, public_service or management".to_owned())
}

fn parse_datum(text: &str) -> Result<Datum, String> {
    Datum::parse(text).ok_or_else(|| "expected wgs84, gcj02 or bd09".to_owned())
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LINKBUS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,async_nats=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Up { common, replay, rate, exit_after_replay, simulate, simulate_profile, simulate_seed } => {
            let simulate = simulate.then_some(simulate_profile);
            up::up(common.config()?, UpOptions { replay, rate, exit_after_replay, simulate, simulate_seed }).await?;
        }
        Command::Route { common, lon, lat, category, priority } => {
            let config = common.config()?;
            let region = Region::load(&config.region.dir)
                .with_context(|| format!("loading region {}", config.region.dir.display()))?;
            let offline = Offline::load(region, config.routing_params())?;
            match (lon, lat, category) {
                (Some(lon), Some(lat), Some(category)) => {
                    let case = offline.case_at(lon, lat, &category, priority);
                    println!("{}", serde_json::to_string_pretty(&offline.route(&case)?)?);
                }
                _ => {
                    let (ok, failed) = offline.route_lines(std::io::stdin().lock(), std::io::stdout().lock())?;
                    eprintln!("routed {ok}, refused {failed}");
                    if failed > 0 {
                        return Ok(ExitCode::from(2));
                    }
                }
            }
        }
        Command::Replay { common, file, rate, wait_secs, outcomes, speed, json } => {
            let client = common.connect().await?;
            let real_outcomes = (outcomes == Outcomes::Real).then_some(speed);
            let options = ReplayOptions { rate, wait: Duration::from_secs(wait_secs), progress: !json, real_outcomes };
            let summary = replay::replay(&client, &file, &options).await?;
            if json {
                println!("{}", serde_json::to_string(&summary)?);
            } else {
                println!("{summary}");
            }
            if summary.missing > 0 {
                return Ok(ExitCode::from(3));
            }
        }
        Command::Watch { common, subjects, count } => {
            let client = common.connect().await?;
            watch::watch(&client, &subjects, count).await?;
        }
        Command::Geo { command: GeoCommand::Validate { dir, overlap_m2, overlap_share, gap_m2, repair } } => {
            let tolerances = Tolerances { overlap_m2, overlap_share, gap_m2 };
            let (report, has_errors) = geo_tools::validate_region(&dir, &tolerances, repair)?;
            print!("{report}");
            if has_errors {
                return Ok(ExitCode::from(2));
            }
        }
        Command::Geo { command: GeoCommand::Publish { common, dir } } => {
            let config = common.config()?;
            let dir = dir.unwrap_or(config.region.dir.clone());
            let client = common.connect().await?;
            let js = async_nats::jetstream::new(client);
            let store = linkbus_routers::regions::open_bucket(&js, &config.stream_settings()).await?;
            let current = linkbus_routers::regions::publish_region(&store, &dir).await?;
            println!(
                "published {} version {} (in force from {})",
                dir.display(),
                current.version,
                current.effective_date
            );
        }
        Command::Geo { command: GeoCommand::Rerun { common, cases, against } } => {
            let config = common.config()?;
            let client = common.connect().await?;
            for case in &cases {
                println!("{}", geo_tools::rerun(&client, case, against.as_deref(), &config.routing_params()).await?);
            }
        }
        Command::Geo { command: GeoCommand::Stats { dir } } => println!("{}", geo_tools::stats(&dir)?),
        Command::Geo { command: GeoCommand::Diff { old, new, threshold_m2 } } => {
            println!("{}", geo_tools::diff(&old, &new, threshold_m2)?)
        }
        Command::Report {
            common,
            id,
            source,
            system,
            category,
            priority,
            lon,
            lat,
            datum,
            address,
            description,
            source_id,
            phone,
            flags,
        } => {
            let client = common.connect().await?;
            let case = client::NewCase {
                source_id: source_id.unwrap_or_else(|| id.clone()),
                id,
                source,
                system,
                category,
                priority,
                location: Location { lon, lat },
                datum,
                address,
                description,
                reporter: phone.map(|p| Contact { name: None, phone: Some(p), ..Default::default() }),
                flags,
            };
            let stored = client::report(&client, case).await?;
            println!("{}", if stored { "reported" } else { "already on the bus (duplicate event id)" });
        }
        Command::Act { common, department, case_id, action } => {
            let action: Action = serde_json::from_str(&action).context("the action is not valid JSON of an action")?;
            let client = common.connect().await?;
            let reply = client::act(&client, &department, &case_id, action).await?;
            println!("{}", serde_json::to_string(&reply)?);
            if !reply.ok {
                return Ok(ExitCode::from(4));
            }
        }
        Command::GridUpload { common, file, api, key } => {
            let api = match api {
                Some(api) => api,
                None => format!("http://{}", common.config()?.api.listen),
            };
            let result = crate::grid_upload::upload(&api, &key, &file).await?;
            println!("{}", serde_json::to_string(&result)?);
            if result.rejected > 0 {
                return Ok(ExitCode::from(4));
            }
        }
        Command::VolunteerCredential { common, id, revoke, api, key } => {
            let api = match api {
                Some(api) => api,
                None => format!("http://{}", common.config()?.api.listen),
            };
            match crate::volunteer_credential::run(&api, &key, &id, revoke).await? {
                Some(issued) => println!("{}", serde_json::to_string(&issued)?),
                None => eprintln!("volunteer {id}'s credential revoked"),
            }
        }
        Command::Answer { common, volunteer, case_id, accept } => {
            let client = common.connect().await?;
            let reply = client::answer(&client, &volunteer, &case_id, accept).await?;
            println!("{}", serde_json::to_string(&reply)?);
            if !reply.ok {
                return Ok(ExitCode::from(4));
            }
        }
        Command::Config { command: ConfigCommand::Check { file } } => {
            let config = Config::load(Some(&file))?;
            let missing = nats_access::missing_files(&config.nats.auth, &config.nats.tls);
            anyhow::ensure!(missing.is_empty(), "{}: {}", file.display(), missing.join("; "));
            let region = Region::load(&config.region.dir)
                .with_context(|| format!("loading region {}", config.region.dir.display()))?;
            println!(
                "{}: ok (region {} version {}, {} communities, {} departments, {} categories)",
                file.display(),
                region.manifest.id,
                region.manifest.version,
                region.communities.len(),
                region.departments.departments.len(),
                region.categories.len()
            );
            for warning in config.api.warnings().into_iter().chain(crate::adapters::check(&config.adapters, &region)) {
                eprintln!("warning: {warning}");
            }
        }
        Command::NatsAuth { common, out, operators, no_volunteers } => {
            let config = common.config()?;
            let region = Region::load(&config.region.dir)
                .with_context(|| format!("loading region {}", config.region.dir.display()))?;
            let options = AuthOptions { out, operators, volunteers: !no_volunteers };
            let report = nats_auth::generate(&region, &options)?;
            println!(
                "wrote {} ({} users, {} new keys) and {}/<user>.nk\n\
                 each party connects with [nats.auth] nkey_seed_file = <its .nk> and inbox_prefix = \"_INBOX.<user>\"",
                report.conf.display(),
                report.users,
                report.new_keys,
                options.out.join("nkeys").display()
            );
        }
        Command::Deadletter { common, command } => {
            let settings = common.config()?.stream_settings();
            let client = common.connect().await?;
            let js = async_nats::jetstream::new(client);
            match command {
                DeadletterCommand::List { filter, json } => {
                    for letter in deadletter::list(&js, &filter.into()).await? {
                        if json {
                            println!("{}", serde_json::to_string(&letter)?);
                        } else {
                            println!("{}", deadletter::line(&letter));
                        }
                    }
                }
                DeadletterCommand::Replay { filter } => {
                    let summary = deadletter::replay(&js, &filter.into(), &settings).await?;
                    println!("{summary}");
                    if !summary.failed.is_empty() {
                        return Ok(ExitCode::from(3));
                    }
                }
            }
        }
        Command::Api { command: ApiCommand::HashKey { key } } => {
            let key = match key {
                Some(key) => key,
                None => {
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line).context("reading the key from stdin")?;
                    line.trim_end_matches(['\r', '\n']).to_owned()
                }
            };
            anyhow::ensure!(!key.is_empty(), "the key is empty");
            if key.len() < 32 {
                eprintln!(
                    "warning: a key shorter than 32 characters is easy to guess; `openssl rand -hex 32` makes a good one"
                );
            }
            println!("{}", auth::hash_key(&key));
        }
    }
    Ok(ExitCode::SUCCESS)
}
