//! `linkbus up --simulate`: a **simulated** feed, for regions with no public incident data
//! (Beijing). The cases are made up, and say so: event ids `sim-…`, source
//! `/linkbus/simulated-feed`, and a description starting `SIMULATED`. What is real:
//!
//! - where: the region's community centres (the `centre` property `linkbus-geo-build china` writes;
//!   a point inside the boundary for regions without one);
//! - what: the category mix of the real SF 311 sample (4,984 requests), restricted to the
//!   categories the region knows;
//! - when: arrivals are a Poisson process whose rate follows the sample's hour-of-day profile
//!   (SF local time), scaled so that the daily mean is `rate` cases a second; the simulated
//!   clock runs [`SIM_SPEEDUP`] times faster than the real one, so a day's profile passes in
//!   24 minutes.
//!
//! The departments are **simulated** too ([`SimulatedDepartments`]), so the supervision figures
//! are not empty in a demo: the department a case is routed to accepts it (85 %, after a
//! log-normal delay of median 10 simulated minutes), sends it back (退单, 10 %, median 20
//! minutes) or never answers (5 %: the deadline escalates it); an accepted case is resolved (92 %,
//! median 8 hours after acceptance), and three in four resolved cases are rated by the resident
//! (median 2 hours later): solved 85 % of the time, scores mostly 4–5 when solved and 1–2 when
//! not (a "not solved" reopens the case). Every action goes through `replay.action`, at its
//! simulated time, with the note `SIMULATED …`; the draws are deterministic for a seed.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt as _;
use geo::InteriorPoint;
use jiff::Timestamp;
use linkbus_adapters::sf311;
use linkbus_geo_data::Region;
use linkbus_wire::{Action, Actor, ActorKind, Datum, Location, SourceSystem, subjects};
use rand::{RngExt, SeedableRng};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::client::{self, NewCase};
use crate::outcomes::{Enactor, Step};

/// Simulated seconds per real second.
pub const SIM_SPEEDUP: f64 = 60.0;
/// The CloudEvents source of every simulated case.
pub const SOURCE: &str = "/linkbus/simulated-feed";

/// When and what real cases arrive: taken from a real 311 sample.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Categories with their counts in the sample.
    pub categories: Vec<(String, usize)>,
    /// Share of the sample opened in each local hour (sums to 1).
    pub hourly: [f64; 24],
}

impl Profile {
    /// Counts categories and opening hours of an SF 311 CSV; rows the adapter refuses are
    /// skipped (the replay reports them).
    pub fn from_sf311(path: &Path) -> anyhow::Result<Self> {
        let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let tz = jiff::tz::TimeZone::get(sf311::TIME_ZONE)?;
        let mut counts = std::collections::BTreeMap::<String, usize>::new();
        let mut hours = [0usize; 24];
        for converted in sf311::read(std::io::BufReader::new(file)).flatten() {
            let case = converted.event.data;
            *counts.entry(case.category).or_default() += 1;
            hours[usize::from(tz.to_datetime(case.reported_at).hour().unsigned_abs()) % 24] += 1;
        }
        let total = hours.iter().sum::<usize>();
        anyhow::ensure!(total > 0, "{} holds no usable 311 request", path.display());
        Ok(Self { categories: counts.into_iter().collect(), hourly: hours.map(|n| n as f64 / total as f64) })
    }
}

/// Draws simulated cases for a region.
pub struct Simulator {
    categories: Vec<(String, usize)>,
    total: usize,
    centres: Vec<(String, Location)>,
    hourly: [f64; 24],
    rng: rand_chacha::ChaCha8Rng,
    run: i64,
    next: u64,
}

impl Simulator {
    /// A simulator of `region`'s cases with `profile`'s mix, seeded.
    pub fn new(region: &Region, profile: &Profile, seed: u64) -> anyhow::Result<Self> {
        let categories: Vec<(String, usize)> =
            profile.categories.iter().filter(|(c, _)| region.category(c).is_some()).cloned().collect();
        let total = categories.iter().map(|c| c.1).sum();
        anyhow::ensure!(total > 0, "region {} knows none of the profile's categories", region.manifest.id);
        let centres = centres(region)?;
        anyhow::ensure!(!centres.is_empty(), "region {} has no community centres", region.manifest.id);
        Ok(Self {
            categories,
            total,
            centres,
            hourly: profile.hourly,
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(seed),
            run: Timestamp::now().as_second(),
            next: 0,
        })
    }

    /// The next case, and the real seconds until it arrives when the simulated clock (at
    /// `SIM_SPEEDUP`) reads `hour` and the daily mean rate is `rate` cases a second.
    pub fn next_case(&mut self, region: &Region, hour: usize, rate: f64) -> (NewCase, Duration) {
        let hourly_rate = (rate * 24.0 * self.hourly[hour % 24]).max(rate / 100.0);
        let wait = -(1.0 - self.rng.random::<f64>()).ln() / hourly_rate;
        let mut pick = self.rng.random_range(0..self.total);
        let category = self
            .categories
            .iter()
            .find(|(_, n)| {
                let hit = pick < *n;
                pick = pick.saturating_sub(*n);
                hit
            })
            .map_or_else(|| self.categories[0].0.clone(), |c| c.0.clone());
        let (community, location) = self.centres[self.rng.random_range(0..self.centres.len())].clone();
        let (system, priority) =
            region.category(&category).map_or((SourceSystem::PublicService, 3), |c| (c.system, c.priority));
        self.next += 1;
        let id = format!("sim-{}-{}", self.run, self.next);
        let case = NewCase {
            source_id: id.clone(),
            id,
            source: SOURCE.into(),
            system,
            category,
            priority,
            location,
            datum: Datum::Wgs84,
            address: None,
            description: Some(format!(
                "SIMULATED case (not a real incident) at the centre of community {community}; category drawn from the real SF 311 mix"
            )),
            reporter: None,
            flags: vec![],
        };
        (case, Duration::from_secs_f64(wait.min(3600.0)))
    }
}

/// Each community's centre: the `centre` property when the file has one, else a point inside.
fn centres(region: &Region) -> anyhow::Result<Vec<(String, Location)>> {
    let given: std::collections::HashMap<String, Location> = linkbus_geo_data::given_centres(region)?
        .into_iter()
        .map(|(id, p)| (id, Location { lon: p.x(), lat: p.y() }))
        .collect();
    Ok(region
        .communities
        .iter()
        .filter_map(|c| {
            let location = given
                .get(&c.id)
                .copied()
                .or_else(|| c.boundary.interior_point().map(|p| Location { lon: p.x(), lat: p.y() }))?;
            Some((c.id.clone(), location))
        })
        .collect())
}

/// How the simulated departments answer (shares of cases; delays in simulated seconds, log-normal
/// with a median and a spread `sigma` of the logarithm).
mod habits {
    /// Share of cases the department accepts.
    pub const ACCEPT: f64 = 0.85;
    /// Share it sends back (退单); the rest it never answers.
    pub const REJECT: f64 = 0.10;
    /// Median delay to accept, and to reject.
    pub const ACCEPT_MEDIAN: f64 = 10.0 * 60.0;
    pub const REJECT_MEDIAN: f64 = 20.0 * 60.0;
    /// Share of accepted cases resolved, and the median delay from acceptance.
    pub const RESOLVE: f64 = 0.92;
    pub const RESOLVE_MEDIAN: f64 = 8.0 * 3600.0;
    /// Share of resolved cases the resident rates, and the median delay from the resolution.
    pub const RATE: f64 = 0.75;
    pub const RATE_MEDIAN: f64 = 2.0 * 3600.0;
    /// Spread of every delay's logarithm.
    pub const SIGMA: f64 = 0.8;
    /// Share of ratings that say solved.
    pub const SOLVED: f64 = 0.85;
    /// Weights of scores 1–5 when solved, and when not.
    pub const SCORES_SOLVED: [f64; 5] = [0.02, 0.03, 0.10, 0.30, 0.55];
    pub const SCORES_UNSOLVED: [f64; 5] = [0.40, 0.30, 0.20, 0.10, 0.0];
    /// Why a department sends a case back, in Chinese and English.
    pub const REJECT_REASONS: [&str; 3] = [
        "不属于本部门职责 (not this department's responsibility)",
        "地址不在本辖区 (the address is outside our area)",
        "应由物业处理 (for the property manager, not the government)",
    ];
}

/// What a simulated department and resident will do to one case, in simulated seconds from its
/// opening.
#[derive(Debug, Clone, PartialEq)]
pub enum SimulatedOutcome {
    /// The department never answers.
    Silent,
    /// Sent back (退单).
    Rejected {
        /// When, simulated seconds after the opening.
        after: f64,
        /// Why.
        reason: &'static str,
    },
    /// Accepted, then maybe resolved and rated.
    Accepted {
        /// When accepted, simulated seconds after the opening.
        accepted: f64,
        /// When resolved, if ever.
        resolved: Option<f64>,
        /// When rated, if ever, with the score and whether solved.
        rated: Option<(f64, u8, bool)>,
    },
}

impl SimulatedOutcome {
    /// The actions of this outcome on a case routed to `department`, drawn with `seed`, at
    /// simulated times ÷ `speedup`.
    pub fn steps(&self, department: &str, seed: u64, speedup: f64) -> Vec<Step> {
        let dept = Actor { kind: ActorKind::Department, id: department.to_owned() };
        let origin = format!("SIMULATED department (linkbus simulated feed, seed {seed}), not a real action");
        let step = |after: f64, actor: &Actor, action| Step {
            after_secs: after / speedup,
            actor: actor.clone(),
            action,
            origin: origin.clone(),
        };
        match self {
            SimulatedOutcome::Silent => vec![],
            SimulatedOutcome::Rejected { after, reason } => {
                vec![step(*after, &dept, Action::Reject { reason: format!("SIMULATED 退单: {reason}") })]
            }
            SimulatedOutcome::Accepted { accepted, resolved, rated } => {
                let mut steps = vec![step(*accepted, &dept, Action::Accept {})];
                if let Some(resolved) = resolved {
                    steps.push(step(*resolved, &dept, Action::Resolve { note: "SIMULATED: 已办结 (handled)".into() }));
                }
                if let Some((at, score, solved)) = rated {
                    let resident = Actor { kind: ActorKind::Resident, id: "reporter".into() };
                    let comment = Some(format!("SIMULATED resident rating (seed {})", seed));
                    let mut rate = step(*at, &resident, Action::Rate { score: *score, solved: *solved, comment });
                    rate.origin =
                        format!("SIMULATED resident (linkbus simulated feed, seed {}), not a real rating", seed);
                    steps.push(rate);
                }
                steps
            }
        }
    }
}

/// Draws what the simulated departments and residents do, deterministic for a seed.
pub struct SimulatedDepartments {
    rng: rand_chacha::ChaCha8Rng,
}

impl SimulatedDepartments {
    /// Departments drawing from `seed`.
    pub fn new(seed: u64) -> Self {
        // A stream of its own, so the cases drawn are the same with or without departments.
        Self { rng: rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_0fde_9a27_0000) }
    }

    /// A log-normal delay of median `median` simulated seconds.
    fn delay(&mut self, median: f64) -> f64 {
        // Box–Muller: a standard normal from two uniforms in (0, 1].
        let (u1, u2) = (1.0 - self.rng.random::<f64>(), self.rng.random::<f64>());
        let normal = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        median * (habits::SIGMA * normal).exp()
    }

    fn score(&mut self, weights: &[f64; 5]) -> u8 {
        let mut pick = self.rng.random::<f64>() * weights.iter().sum::<f64>();
        for (n, w) in weights.iter().enumerate() {
            if pick < *w {
                return n as u8 + 1;
            }
            pick -= w;
        }
        5
    }

    /// The next case's outcome.
    pub fn draw(&mut self) -> SimulatedOutcome {
        let verdict = self.rng.random::<f64>();
        if verdict >= habits::ACCEPT + habits::REJECT {
            return SimulatedOutcome::Silent;
        }
        if verdict >= habits::ACCEPT {
            let reason = habits::REJECT_REASONS[self.rng.random_range(0..habits::REJECT_REASONS.len())];
            return SimulatedOutcome::Rejected { after: self.delay(habits::REJECT_MEDIAN), reason };
        }
        let accepted = self.delay(habits::ACCEPT_MEDIAN);
        let resolved =
            (self.rng.random::<f64>() < habits::RESOLVE).then(|| accepted + self.delay(habits::RESOLVE_MEDIAN));
        let rated = match resolved {
            Some(at) if self.rng.random::<f64>() < habits::RATE => {
                let solved = self.rng.random::<f64>() < habits::SOLVED;
                let score = self.score(if solved { &habits::SCORES_SOLVED } else { &habits::SCORES_UNSOLVED });
                Some((at + self.delay(habits::RATE_MEDIAN), score, solved))
            }
            _ => None,
        };
        SimulatedOutcome::Accepted { accepted, resolved, rated }
    }
}

/// How the simulated feed runs.
#[derive(Debug, Clone, Copy)]
pub struct FeedOptions {
    /// Mean cases a second.
    pub rate: f64,
    /// Seed of the cases' and the departments' draws.
    pub seed: u64,
    /// Simulated seconds per real second ([`SIM_SPEEDUP`] in `linkbus up --simulate`).
    pub speedup: f64,
}

/// Publishes simulated cases to `client` at a mean of `options.rate` a second until `stop`, and
/// acts out the simulated departments' answers to them.
pub async fn run(
    client: async_nats::Client,
    region: Region,
    profile: Profile,
    options: FeedOptions,
    stop: CancellationToken,
) {
    let FeedOptions { rate, seed, speedup } = options;
    let mut simulator = match Simulator::new(&region, &profile, seed) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = format!("{e:#}"), "the simulated feed cannot start");
            return;
        }
    };
    let mut departments = SimulatedDepartments::new(seed);
    let mut routed = match client.subscribe(subjects::case_event("*", "routed")).await {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "the simulated feed cannot follow routing");
            return;
        }
    };
    let mut enactor = Enactor::new(client.clone());
    let tz = jiff::tz::TimeZone::get(&region.manifest.time_zone).unwrap_or(jiff::tz::TimeZone::UTC);
    let started = Timestamp::now();
    let start_hour = f64::from(tz.to_datetime(started).hour());
    eprintln!(
        "SIMULATED feed: made-up cases at {}'s community centres, SF 311 category mix and hourly profile, {rate} cases/s on average; \
         SIMULATED departments accept, send back (退单), resolve and are rated (seed {seed}), each action noted SIMULATED on the case",
        region.manifest.name
    );
    let mut published = 0u64;
    loop {
        let elapsed = (Timestamp::now() - started).as_secs_f64();
        let hour = (start_hour + elapsed * speedup / 3600.0) as usize % 24;
        let (case, wait) = simulator.next_case(&region, hour, rate);
        let due = tokio::time::Instant::now() + wait;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep_until(due) => break,
                Some(msg) = routed.next() => {
                    if let Some(id) = msg.subject.split('.').nth(1) {
                        enactor.routed(id, &msg, tokio::time::Instant::now());
                    }
                }
            }
        }
        let (id, outcome) = (case.id.clone(), departments.draw());
        match client::report(&client, case).await {
            Ok(_) => {
                // Planned after the publish: its routed message waits in `routed` until the next turn.
                enactor.plan(id, Box::new(move |department| outcome.steps(department, seed, speedup)));
                published += 1;
            }
            Err(e) => warn!(error = format!("{e:#}"), "a simulated case could not be published"),
        }
        if published.is_multiple_of(100) && published > 0 {
            let tally = enactor.reap();
            info!(published, simulated_hour = hour, done = ?tally.done, refused = tally.refused, "SIMULATED feed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use linkbus_matching::communities::{CommunityIndex, Located};

    fn repo() -> std::path::PathBuf {
        std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
    }

    #[test]
    fn simulated_cases_sit_at_community_centres_with_the_sf_mix_and_say_they_are_simulated() {
        let profile =
            Profile::from_sf311(&repo().join("geo-data/san-francisco/sf311-cases-sample.csv")).expect("profile");
        assert_eq!(profile.categories.len(), 26);
        assert_eq!(profile.categories.iter().map(|c| c.1).sum::<usize>(), 4_984);
        assert!((profile.hourly.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        let region = Region::load(repo().join("geo-data/beijing")).expect("Beijing loads");
        let index = CommunityIndex::new(region.communities.clone(), 0.0);
        let mut simulator = Simulator::new(&region, &profile, 7).expect("simulator");
        let mut drawn = std::collections::HashMap::<String, usize>::new();
        for _ in 0..2_000 {
            let (case, wait) = simulator.next_case(&region, 12, 10.0);
            assert!(case.id.starts_with("sim-") && case.source == SOURCE);
            let description = case.description.as_deref().unwrap_or_default();
            assert!(description.starts_with("SIMULATED"), "{description}");
            let Located::Inside(c) = index.locate(case.location.lon, case.location.lat) else {
                panic!("{:?} is not inside a community", case.location);
            };
            assert!(description.contains(&index.communities()[c].id), "{description}");
            assert!(wait > Duration::ZERO);
            *drawn.entry(case.category).or_default() += 1;
        }
        let most_common =
            |counts: &mut dyn Iterator<Item = (&String, usize)>| counts.max_by_key(|c| c.1).map(|c| c.0.clone());
        assert_eq!(
            most_common(&mut drawn.iter().map(|(c, n)| (c, *n))),
            most_common(&mut profile.categories.iter().map(|(c, n)| (c, *n))),
            "the simulated mix follows the SF sample's"
        );
    }

    #[test]
    fn simulated_departments_are_deterministic_plausible_and_say_they_are_simulated() {
        let draw = |seed| {
            let mut d = SimulatedDepartments::new(seed);
            (0..10_000).map(|_| d.draw()).collect::<Vec<_>>()
        };
        let drawn = draw(7);
        assert_eq!(drawn, draw(7), "the same seed draws the same answers");
        assert_ne!(drawn, draw(8));
        let share = |n: usize, of: usize| n as f64 / of as f64;
        let (mut silent, mut rejected, mut accept_delays, mut resolved, mut rated, mut solved) =
            (0, 0, vec![], 0, 0, 0);
        let (mut solved_scores, mut unsolved_scores) = (vec![], vec![]);
        let (mut resolve_gaps, mut rating_gaps) = (vec![], vec![]);
        for outcome in &drawn {
            match outcome {
                SimulatedOutcome::Silent => silent += 1,
                SimulatedOutcome::Rejected { after, .. } => {
                    assert!(*after > 0.0);
                    rejected += 1;
                }
                SimulatedOutcome::Accepted { accepted, resolved: r, rated: rating } => {
                    accept_delays.push(*accepted);
                    if let Some(at) = r {
                        assert!(at > accepted, "resolved after accepted");
                        resolve_gaps.push(at - accepted);
                        resolved += 1;
                    }
                    if let Some((at, score, s)) = rating {
                        assert!(r.is_some_and(|r| *at > r) && (1..=5).contains(score), "rated after resolved, 1-5");
                        rating_gaps.push(at - r.unwrap_or_default());
                        rated += 1;
                        if *s {
                            solved += 1;
                            solved_scores.push(f64::from(*score));
                        } else {
                            unsolved_scores.push(f64::from(*score));
                        }
                    }
                }
            }
        }
        let accepted = accept_delays.len();
        let near = |x: f64, want: f64| (x - want).abs() < 0.02;
        assert!(near(share(accepted, 10_000), habits::ACCEPT), "accepted {accepted}");
        assert!(near(share(rejected, 10_000), habits::REJECT), "rejected {rejected}");
        assert!(near(share(silent, 10_000), 1.0 - habits::ACCEPT - habits::REJECT), "silent {silent}");
        assert!(near(share(resolved, accepted), habits::RESOLVE), "resolved {resolved}");
        assert!(near(share(rated, resolved), habits::RATE), "rated {rated}");
        assert!(near(share(solved, rated), habits::SOLVED), "solved {solved}");
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        for (what, delays, want) in [
            ("accept", &mut accept_delays, habits::ACCEPT_MEDIAN),
            ("resolve", &mut resolve_gaps, habits::RESOLVE_MEDIAN),
            ("rating", &mut rating_gaps, habits::RATE_MEDIAN),
        ] {
            let got = median(delays);
            assert!((got / want - 1.0).abs() < 0.1, "median {what} delay {got} s, not {want}");
        }
        // Log-normal: about 68 % within one spread of the median.
        let (low, high) = (habits::ACCEPT_MEDIAN / habits::SIGMA.exp(), habits::ACCEPT_MEDIAN * habits::SIGMA.exp());
        let within = accept_delays.iter().filter(|d| (low..=high).contains(*d)).count();
        assert!((share(within, accepted) - 0.683).abs() < 0.03, "{within} of {accepted} within one spread");
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        assert!(mean(&solved_scores) > 4.0 && mean(&unsolved_scores) < 2.5, "solved cases score high, unsolved low");

        let rating =
            SimulatedOutcome::Accepted { accepted: 600.0, resolved: Some(3600.0), rated: Some((7200.0, 5, true)) };
        let steps = rating.steps("dongcheng-x", 7, 60.0);
        let what: Vec<(f64, &str, ActorKind)> =
            steps.iter().map(|s| (s.after_secs, s.action.name(), s.actor.kind)).collect();
        assert_eq!(
            what,
            [
                (10.0, "accept", ActorKind::Department),
                (60.0, "resolve", ActorKind::Department),
                (120.0, "rate", ActorKind::Resident)
            ]
        );
        let reject = SimulatedOutcome::Rejected { after: 60.0, reason: habits::REJECT_REASONS[0] };
        let steps = steps.into_iter().chain(reject.steps("dongcheng-x", 7, 60.0)).collect::<Vec<_>>();
        for step in &steps {
            assert!(step.origin.starts_with("SIMULATED") && step.origin.contains("seed 7"), "{}", step.origin);
            match &step.action {
                Action::Reject { reason } => assert!(reason.starts_with("SIMULATED 退单"), "{reason}"),
                Action::Resolve { note } => assert!(note.starts_with("SIMULATED"), "{note}"),
                Action::Rate { comment, .. } => assert!(comment.as_deref().is_some_and(|c| c.starts_with("SIMULATED"))),
                _ => {}
            }
        }
        assert!(SimulatedOutcome::Silent.steps("d", 7, 60.0).is_empty());
    }
}
