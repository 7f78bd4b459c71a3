//! `linkbus-bench`: the decision-latency harness, start-up through nats-server and the PostGIS
//! baseline, each printing one JSON report on stdout (`ops/scripts/bench` turns them into
//! `docs/BENCHMARKS.md`'s tables), and `load`, the load generator that drives a running linkbus.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use linkbus_bench::load::{self, BenchOptions, Target};
use linkbus_bench::postgis::{self, PostgisOptions};
use linkbus_bench::{bucket, decisions};
use linkbus_geo_data::Region;

/// linkbus benchmarks beyond criterion.
#[derive(Debug, Parser)]
#[command(name = "linkbus-bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load-test a running linkbus through NATS: paced and unpaced runs, latency to the
    /// departments, exactly-once check, and the raw NATS floors (exit code 5 on loss or duplicate).
    Load {
        /// The running linkbus's NATS (without credentials: meant for a test deployment).
        #[arg(long, env = "LINKBUS_NATS_URL", default_value = "nats://127.0.0.1:4222")]
        nats_url: String,
        /// The region that linkbus routes with: the cases are placed in its communities.
        #[arg(long, default_value = "geo-data/beijing")]
        region: PathBuf,
        /// Paced runs, events per second; `--rates` alone runs none.
        #[arg(long, value_delimiter = ',', num_args = 0.., default_values_t = [1_000, 10_000, 50_000])]
        rates: Vec<u32>,
        /// Seconds each paced run publishes for.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Events in the unpaced (maximum throughput) run; 0 skips it.
        #[arg(long, default_value_t = 50_000)]
        unpaced: usize,
        /// Where the runs go, in this order at each rate: linkbus, and the raw NATS floors (the
        /// core and the JetStream forwarder) measured at the same rates and count.
        #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Target::Linkbus])]
        targets: Vec<Target>,
        /// After a run's last publish, seconds to wait for outstanding events while none arrives.
        #[arg(long, default_value_t = 60)]
        wait_secs: u64,
        /// Seed of the case locations and categories.
        #[arg(long, default_value_t = 8)]
        seed: u64,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Start-up time and resident memory with a city's data (run it in a fresh process).
    StartUp {
        /// Communities.
        #[arg(long, default_value_t = 10_000)]
        communities: usize,
        /// Volunteers.
        #[arg(long, default_value_t = 1_000_000)]
        volunteers: usize,
    },
    /// Start-up through a real nats-server: the volunteers bucket filled, then a fresh process
    /// (`bucket-follow`) timed taking them as the service does, with its resident memory: from
    /// the whole bucket (saving a snapshot), then from the snapshot, before and after a tenth of
    /// the volunteers moved.
    Bucket {
        /// Communities.
        #[arg(long, default_value_t = 10_000)]
        communities: usize,
        /// Volunteers.
        #[arg(long, default_value_t = 1_000_000)]
        volunteers: usize,
        /// A nats-server to use (its volunteers bucket is emptied first); without, one of its own.
        #[arg(long)]
        nats_url: Option<String>,
        /// With --nats-url: keep its volunteers bucket if it holds that many entries already.
        #[arg(long, requires = "nats_url")]
        keep: bool,
    },
    /// The fresh process of `bucket`.
    #[command(hide = true)]
    BucketFollow {
        /// The nats-server.
        #[arg(long)]
        url: String,
        /// Communities.
        #[arg(long)]
        communities: usize,
        /// Volunteers expected in the bucket.
        #[arg(long)]
        volunteers: usize,
        /// Then save a snapshot of the index.
        #[arg(long)]
        save_snapshot: bool,
    },
    /// Decision latency percentiles at growing scale, one thread.
    Decisions {
        /// Scales as COMMUNITIES:VOLUNTEERS.
        #[arg(long, value_delimiter = ',', default_values = ["100:10000", "10000:10000", "100:1000000", "10000:1000000"])]
        scales: Vec<String>,
        /// Decisions timed at each scale.
        #[arg(long, default_value_t = 200_000)]
        decisions: usize,
    },
    /// Volunteer position updates applied while routing, through the router's lock.
    Updates {
        /// Communities.
        #[arg(long, default_value_t = 10_000)]
        communities: usize,
        /// Volunteers.
        #[arg(long, default_value_t = 1_000_000)]
        volunteers: usize,
        /// Updates per second.
        #[arg(long, default_value_t = 100_000.0)]
        update_rate: f64,
        /// Decisions per second.
        #[arg(long, default_value_t = 10_000.0)]
        decision_rate: f64,
        /// Seconds to run.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
    /// The same decision answered by PostGIS, checked against linkbus, then timed.
    Postgis {
        /// libpq connection string of a PostgreSQL with PostGIS available.
        #[arg(long)]
        conninfo: String,
        /// Communities.
        #[arg(long, default_value_t = 10_000)]
        communities: usize,
        /// Volunteers.
        #[arg(long, default_value_t = 1_000_000)]
        volunteers: usize,
        /// Cases checked against linkbus before timing.
        #[arg(long, default_value_t = 500)]
        verify: usize,
        /// Decisions timed per run.
        #[arg(long, default_value_t = 20_000)]
        decisions: usize,
        /// Concurrent clients of each run.
        #[arg(long, value_delimiter = ',', default_values_t = [1, 2])]
        clients: Vec<usize>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("linkbus-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one command, printing its report on stdout.
fn run(command: Command) -> anyhow::Result<ExitCode> {
    let json = match command {
        Command::Load { nats_url, region, rates, seconds, unpaced, targets, wait_secs, seed, json } => {
            let options = BenchOptions { rates, seconds, unpaced, targets, wait: Duration::from_secs(wait_secs), seed };
            let region = Region::load(&region).with_context(|| format!("loading region {}", region.display()))?;
            let report = runtime()?.block_on(load::bench(&nats_url, &region, &options))?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!("{report}");
            }
            // Exit code 5: linkbus lost or duplicated an event.
            return Ok(if report.linkbus_exactly_once() { ExitCode::SUCCESS } else { ExitCode::from(5) });
        }
        Command::StartUp { communities, volunteers } => {
            serde_json::to_string(&decisions::start_up(communities, volunteers)?)?
        }
        Command::Bucket { communities, volunteers, nats_url, keep } => {
            serde_json::to_string(&runtime()?.block_on(bucket::run(communities, volunteers, nats_url, keep))?)?
        }
        Command::BucketFollow { url, communities, volunteers, save_snapshot } => serde_json::to_string(
            &runtime()?.block_on(bucket::follow(&url, communities, volunteers, save_snapshot))?,
        )?,
        Command::Decisions { scales, decisions: count } => {
            let scales = scales
                .iter()
                .map(|s| {
                    let (c, v) =
                        s.split_once(':').ok_or_else(|| anyhow::anyhow!("{s}: expected COMMUNITIES:VOLUNTEERS"))?;
                    Ok((c.parse()?, v.parse()?))
                })
                .collect::<anyhow::Result<Vec<(usize, usize)>>>()?;
            serde_json::to_string(&decisions::scales(&scales, count)?)?
        }
        Command::Updates { communities, volunteers, update_rate, decision_rate, seconds } => serde_json::to_string(
            &decisions::updates_while_routing(communities, volunteers, update_rate, decision_rate, seconds)?,
        )?,
        Command::Postgis { conninfo, communities, volunteers, verify, decisions, clients } => {
            let options = PostgisOptions { conninfo, communities, volunteers, verify, decisions, clients };
            serde_json::to_string(&runtime()?.block_on(postgis::run(&options))?)?
        }
    };
    println!("{json}");
    Ok(ExitCode::SUCCESS)
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()
}
