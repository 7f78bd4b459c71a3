//! The decision-latency harness: what criterion's means do not show.
//!
//! - [`scales`]: every decision timed alone into an HDR histogram (p50 … p99.9, max) at growing
//!   numbers of communities and volunteers, single-threaded, so the growth with scale and the
//!   tail are read off one run;
//! - [`start_up`]: start-up with the data of a city — build the router over the communities,
//!   parse each volunteer's JSON and upsert it into the index (as the router takes them from the
//!   KV bucket) — and the resident memory once that is done; a bulk load for comparison;
//! - [`updates_while_routing`]: one thread applying paced volunteer position updates through the
//!   router's own lock ([`RouterState`]) while another routes paced cases through it; reports
//!   whether the updates kept their pace and each decision's time meanwhile, waiting for the
//!   lock included.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use linkbus_bus::sync::write;
use linkbus_geo_data::Region;
use linkbus_matching::{OfferLedger, Router, RoutingParams, VolunteerIndex};
use linkbus_routers::service::RouterState;
use linkbus_wire::{CaseReport, Location, VolunteerStatus};
use rand::RngExt as _;
use serde::Serialize;

use crate::cpu::thread_seconds as thread_cpu_seconds;
use crate::synthetic;

/// Distinct cases a run cycles through.
const CASES: usize = 65_536;

/// Percentiles of a histogram of nanoseconds, in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest.
    pub max_us: f64,
}

impl Percentiles {
    /// The percentiles of `h`, a histogram of nanoseconds.
    pub fn of(h: &Histogram<u64>) -> Self {
        let us = |ns: u64| ns as f64 / 1_000.0;
        Self {
            mean_us: h.mean() / 1_000.0,
            p50_us: us(h.value_at_quantile(0.5)),
            p90_us: us(h.value_at_quantile(0.9)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
        }
    }
}

/// A histogram of nanoseconds up to a minute.
fn histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).context("histogram")
}

/// A synthetic city, indexed, with cases to route in it.
pub struct City {
    /// The router over its communities.
    pub router: Router,
    /// Its volunteers, indexed.
    pub volunteers: VolunteerIndex,
    /// Cases in it, cycled through.
    pub cases: Vec<CaseReport>,
    /// The volunteers' statuses, for updates.
    pub roster: Vec<VolunteerStatus>,
}

impl City {
    /// `communities` communities of 64 vertices and `volunteers` volunteers.
    pub fn new(communities: usize, volunteers: usize) -> anyhow::Result<Self> {
        let grid = synthetic::grid(communities, synthetic::VERTICES);
        let (min, max) = (grid.min, grid.max);
        let region = synthetic::region(grid);
        let roster = synthetic::volunteers(volunteers);
        Ok(Self {
            router: Router::new(&region, RoutingParams::default()),
            volunteers: VolunteerIndex::from_roster(&roster)?,
            cases: synthetic::cases(8, CASES, &region, min, max),
            roster,
        })
    }
}

/// Decision latency at one scale.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleReport {
    /// Communities.
    pub communities: usize,
    /// Volunteers.
    pub volunteers: usize,
    /// Decisions timed.
    pub decisions: usize,
    /// Decisions per second on one thread (1 / mean).
    pub decisions_per_second: f64,
    /// CPU time the thread spent on the timed decisions (timing and recording included), s.
    pub cpu_seconds: f64,
    /// Decisions per CPU-second of the thread: what one core does, however busy the machine
    /// (a thread taken off its core for a while adds to the wall time, not to this).
    pub decisions_per_cpu_second: f64,
    /// Each decision's time.
    pub latency: Percentiles,
}

/// Times `decisions` decisions, one by one, at each (communities, volunteers) scale.
pub fn scales(scales: &[(usize, usize)], decisions: usize) -> anyhow::Result<Vec<ScaleReport>> {
    let mut reports = Vec::with_capacity(scales.len());
    for &(communities, volunteers) in scales {
        let city = City::new(communities, volunteers)?;
        let offers = OfferLedger::new();
        let mut h = histogram()?;
        // Warm up the caches and the branch predictors on a pass over the cases.
        for case in &city.cases {
            std::hint::black_box(city.router.decide(case, &city.volunteers, &offers, 0));
        }
        let cpu = thread_cpu_seconds();
        for case in city.cases.iter().cycle().take(decisions) {
            let started = Instant::now();
            std::hint::black_box(city.router.decide(std::hint::black_box(case), &city.volunteers, &offers, 0));
            h.saturating_record(started.elapsed().as_nanos() as u64);
        }
        let cpu_seconds = thread_cpu_seconds() - cpu;
        let latency = Percentiles::of(&h);
        reports.push(ScaleReport {
            communities,
            volunteers,
            decisions,
            decisions_per_second: 1e6 / latency.mean_us,
            cpu_seconds,
            decisions_per_cpu_second: decisions as f64 / cpu_seconds.max(f64::EPSILON),
            latency,
        });
    }
    Ok(reports)
}

/// Start-up with a city's data.
#[derive(Debug, Clone, Serialize)]
pub struct StartUpReport {
    /// Communities.
    pub communities: usize,
    /// Volunteers.
    pub volunteers: usize,
    /// Seconds to build the router and take in every volunteer one at a time: parse each one's
    /// JSON and upsert it into the index (as the service takes changes to the volunteers bucket;
    /// the bucket's content at start it bulk-loads, see [`crate::bucket`]).
    pub seconds: f64,
    /// Of which parsing the JSON.
    pub parse_seconds: f64,
    /// Seconds to parse them all first and bulk-load the index in one go
    /// ([`VolunteerIndex::from_roster`]), as the service loads the volunteers bucket at start.
    pub bulk_seconds: f64,
    /// Resident memory of the process before anything was made, MB.
    pub rss_before_mb: f64,
    /// Resident memory with the router and the volunteer index built and the inputs dropped, MB.
    pub rss_mb: f64,
    /// Peak resident memory, MB.
    pub peak_rss_mb: f64,
}

/// Start-up time and memory with `communities` communities and `volunteers` volunteers. Run it
/// in a fresh process: the memory figures are the process's. The volunteers' JSON is held in one
/// buffer (as a KV snapshot would arrive), so that dropping it gives its memory back.
pub fn start_up(communities: usize, volunteers: usize) -> anyhow::Result<StartUpReport> {
    let rss_before_mb = status_mb("VmRSS")?;
    let region: Region = synthetic::region(synthetic::grid(communities, synthetic::VERTICES));
    let json = roster_json(volunteers)?;

    let started = Instant::now();
    let router = Router::new(&region, RoutingParams::default());
    let mut index = VolunteerIndex::new();
    let mut parse = Duration::ZERO;
    for line in json.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let parsing = Instant::now();
        let v: VolunteerStatus = serde_json::from_slice(line)?;
        parse += parsing.elapsed();
        index.upsert(&v)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    drop((region, json));
    std::hint::black_box((&index, &router));
    let rss_mb = status_mb("VmRSS")?;
    drop(index);

    let json = roster_json(volunteers)?;
    let started = Instant::now();
    let roster: Vec<VolunteerStatus> =
        json.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(serde_json::from_slice).collect::<Result<_, _>>()?;
    std::hint::black_box(VolunteerIndex::from_roster(&roster)?);
    let bulk_seconds = started.elapsed().as_secs_f64();
    Ok(StartUpReport {
        communities,
        volunteers,
        seconds,
        parse_seconds: parse.as_secs_f64(),
        bulk_seconds,
        rss_before_mb,
        rss_mb,
        peak_rss_mb: status_mb("VmHWM")?,
    })
}

/// The JSON of `n` synthetic volunteers, one per line, in one buffer.
fn roster_json(n: usize) -> anyhow::Result<Vec<u8>> {
    let mut json = Vec::with_capacity(n * 160);
    for v in synthetic::volunteer_stream(n) {
        serde_json::to_writer(&mut json, &v)?;
        json.push(b'\n');
    }
    Ok(json)
}

/// A `/proc/self/status` field in kB, as MB.
pub(crate) fn status_mb(field: &str) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.trim().strip_suffix("kB")?.trim().parse::<f64>().ok())
        .with_context(|| format!("no {field} in /proc/self/status"))?;
    Ok(kb / 1_000.0)
}

/// Volunteer updates applied while routing.
#[derive(Debug, Clone, Serialize)]
pub struct UpdatesReport {
    /// Communities.
    pub communities: usize,
    /// Volunteers.
    pub volunteers: usize,
    /// Updates per second asked for.
    pub update_rate: f64,
    /// Updates per second applied.
    pub updates_per_second: f64,
    /// Furthest the updates fell behind their schedule, milliseconds.
    pub update_max_lag_ms: f64,
    /// Updates per second of the updater thread's own CPU time: what a core would absorb, however
    /// busy the machine.
    pub updates_per_cpu_second: f64,
    /// Share of the wall time the updater thread was on a CPU.
    pub updater_cpu_share: f64,
    /// Decisions per second asked for.
    pub decision_rate: f64,
    /// Decisions per second made.
    pub decisions_per_second: f64,
    /// Share of the wall time the routing thread was on a CPU.
    pub router_cpu_share: f64,
    /// Each decision's time, waiting for the lock included.
    pub latency: Percentiles,
}

/// Runs `seconds` of `update_rate` position updates per second (volunteers moving up to ~10 m)
/// beside `decision_rate` decisions per second, each on its own thread, through one
/// [`RouterState`].
pub fn updates_while_routing(
    communities: usize,
    volunteers: usize,
    update_rate: f64,
    decision_rate: f64,
    seconds: f64,
) -> anyhow::Result<UpdatesReport> {
    let city = City::new(communities, volunteers)?;
    let mut rng = synthetic::rng(11);
    let updates: Vec<VolunteerStatus> = (0..(update_rate as usize).clamp(1, 1_000_000))
        .map(|_| {
            let v = &city.roster[rng.random_range(0..city.roster.len())];
            VolunteerStatus {
                location: Location {
                    lon: v.location.lon + rng.random_range(-0.0001..0.0001),
                    lat: v.location.lat + rng.random_range(-0.0001..0.0001),
                },
                ..v.clone()
            }
        })
        .collect();
    let state = RouterState::new(city.router);
    *write(&state.volunteers) = city.volunteers;
    let cases = city.cases;
    let duration = Duration::from_secs_f64(seconds);
    let done = Arc::new(AtomicBool::new(false));

    let ((applied, max_lag, updater_cpu), (made, router_cpu), elapsed, h) =
        std::thread::scope(|scope| -> anyhow::Result<_> {
            let updater = scope.spawn(|| {
                let cpu = thread_cpu_seconds();
                let started = Instant::now();
                let (mut applied, mut max_lag) = (0usize, 0usize);
                while !done.load(Ordering::Relaxed) {
                    let due = (started.elapsed().as_secs_f64() * update_rate) as usize;
                    max_lag = max_lag.max(due.saturating_sub(applied));
                    while applied < due {
                        // One write lock per update, as the router's bucket follower takes it.
                        let _ = write(&state.volunteers).upsert(&updates[applied % updates.len()]);
                        applied += 1;
                    }
                    std::thread::sleep(Duration::from_micros(100));
                }
                (applied, max_lag, thread_cpu_seconds() - cpu)
            });
            let mut h = histogram()?;
            let cpu = thread_cpu_seconds();
            let started = Instant::now();
            let mut made = 0usize;
            while started.elapsed() < duration {
                let due_count = (started.elapsed().as_secs_f64() * decision_rate) as usize;
                while made < due_count {
                    let call = Instant::now();
                    std::hint::black_box(state.decide(&cases[made % cases.len()]));
                    h.saturating_record(call.elapsed().as_nanos() as u64);
                    made += 1;
                }
                std::thread::sleep(Duration::from_micros(100));
            }
            let elapsed = started.elapsed().as_secs_f64();
            let router_cpu = thread_cpu_seconds() - cpu;
            done.store(true, Ordering::Relaxed);
            let updated = updater.join().map_err(|_| anyhow::anyhow!("the updater panicked"))?;
            Ok((updated, (made, router_cpu), elapsed, h))
        })?;
    Ok(UpdatesReport {
        communities,
        volunteers,
        update_rate,
        updates_per_second: applied as f64 / elapsed,
        update_max_lag_ms: max_lag as f64 / update_rate * 1_000.0,
        updates_per_cpu_second: applied as f64 / updater_cpu.max(f64::EPSILON),
        updater_cpu_share: updater_cpu / elapsed,
        decision_rate,
        decisions_per_second: made as f64 / elapsed,
        router_cpu_share: router_cpu / elapsed,
        latency: Percentiles::of(&h),
    })
}
