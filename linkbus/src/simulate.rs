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

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use geo::InteriorPoint;
use jiff::Timestamp;
use linkbus_adapters::sf311;
use linkbus_geo_data::Region;
use linkbus_wire::{Datum, Location, SourceSystem};
use rand::{RngExt, SeedableRng};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::client::{self, NewCase};

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

/// Publishes simulated cases to `client` at a mean of `rate` a second until `stop`.
pub async fn run(client: async_nats::Client, region: Region, profile: Profile, rate: f64, stop: CancellationToken) {
    let mut simulator = match Simulator::new(&region, &profile, Timestamp::now().as_second().unsigned_abs()) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = format!("{e:#}"), "the simulated feed cannot start");
            return;
        }
    };
    let tz = jiff::tz::TimeZone::get(&region.manifest.time_zone).unwrap_or(jiff::tz::TimeZone::UTC);
    let started = Timestamp::now();
    let start_hour = f64::from(tz.to_datetime(started).hour());
    eprintln!(
        "SIMULATED feed: made-up cases at {}'s community centres, SF 311 category mix and hourly profile, {rate} cases/s on average",
        region.manifest.name
    );
    let mut published = 0u64;
    loop {
        let elapsed = (Timestamp::now() - started).as_secs_f64();
        let hour = (start_hour + elapsed * SIM_SPEEDUP / 3600.0) as usize % 24;
        let (case, wait) = simulator.next_case(&region, hour, rate);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        match client::report(&client, case).await {
            Ok(_) => published += 1,
            Err(e) => warn!(error = format!("{e:#}"), "a simulated case could not be published"),
        }
        if published.is_multiple_of(100) && published > 0 {
            info!(published, simulated_hour = hour, "simulated feed");
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
}
