//! `linkbus geo validate | stats | diff`: the region map checks of
//! [`linkbus_geo_data::validate`] on the command line.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use linkbus_geo_data::validate::{self, Severity, Tolerances};
use linkbus_geo_data::{Region, files, load_communities};

/// Validates the map of the region in `dir`; with `repair`, writes the repaired map to
/// `communities.repaired.geojson` beside it. Returns the report and whether it has errors.
pub fn validate_region(dir: &Path, tolerances: &Tolerances, repair: bool) -> anyhow::Result<(String, bool)> {
    let path = dir.join(files::COMMUNITIES);
    let mut communities = load_communities(&path)?;
    let mut problems = validate::validate(&communities, tolerances);
    problems.extend(unclosed_rings(&path)?);
    let errors = problems.iter().filter(|p| p.severity == Severity::Error).count();
    let mut out = String::new();
    for p in &problems {
        writeln!(out, "{p}")?;
    }
    writeln!(
        out,
        "{}: {} communities, {errors} error(s), {} warning(s)",
        path.display(),
        communities.len(),
        problems.len() - errors
    )?;
    if repair {
        let mut repaired = 0;
        for c in &mut communities {
            let done = validate::repair(&mut c.boundary);
            if !done.is_empty() {
                repaired += 1;
                writeln!(out, "repaired {}: {}", c.id, done.join(", "))?;
            }
        }
        let target = dir.join("communities.repaired.geojson");
        write_communities(&path, &communities, &target)?;
        writeln!(out, "{repaired} communities repaired; wrote {}", target.display())?;
    }
    Ok((out, errors > 0))
}

/// Rings whose last position is not their first: read as closed (geo closes them), written
/// closed by `--repair`; a warning, by community id.
fn unclosed_rings(path: &Path) -> anyhow::Result<Vec<validate::Problem>> {
    let fc: geojson::FeatureCollection = std::fs::read_to_string(path)?.parse()?;
    let mut problems = Vec::new();
    for (n, f) in fc.features.iter().enumerate() {
        let polygons = match f.geometry.as_ref().map(|g| &g.value) {
            Some(geojson::GeometryValue::Polygon { coordinates }) => vec![coordinates],
            Some(geojson::GeometryValue::MultiPolygon { coordinates }) => coordinates.iter().collect(),
            _ => continue,
        };
        let open = polygons.iter().flat_map(|p| p.iter()).filter(|ring| ring.first() != ring.last()).count();
        if open > 0 {
            let id = f.property("id").and_then(|v| v.as_str()).map_or_else(|| format!("feature {n}"), str::to_owned);
            problems.push(validate::Problem {
                severity: Severity::Warning,
                kind: validate::ProblemKind::InvalidBoundary,
                ids: vec![id],
                message: format!("{open} ring(s) not closed (read as closed)"),
                repairable: true,
            });
        }
    }
    Ok(problems)
}

/// Writes `communities` as `source` had them (properties kept), with their new boundaries.
fn write_communities(source: &Path, communities: &[linkbus_geo_data::Community], target: &Path) -> anyhow::Result<()> {
    let mut fc: geojson::FeatureCollection = std::fs::read_to_string(source)?.parse()?;
    for (f, c) in fc.features.iter_mut().zip(communities) {
        f.geometry = Some(geojson::Geometry::new(geojson::GeometryValue::from(&c.boundary)));
    }
    std::fs::write(target, fc.to_string()).with_context(|| format!("cannot write {}", target.display()))
}

/// The figures of the region in `dir`.
pub fn stats(dir: &Path) -> anyhow::Result<String> {
    let region = Region::load(dir).with_context(|| format!("loading region {}", dir.display()))?;
    let s = validate::stats(&region);
    let [min, median, max] = s.area_min_median_max_km2;
    Ok(format!(
        "{}: {} communities in {} sub-districts and {} districts; {} polygon parts, {} vertices (most: {} in {}); \
         {:.1} km² (community min {min:.3}, median {median:.3}, max {max:.1} km²); {} departments, {} categories",
        s.version,
        s.communities,
        s.sub_districts,
        s.districts,
        s.parts,
        s.vertices,
        s.max_vertices.0,
        s.max_vertices.1,
        s.area_km2,
        s.departments,
        s.categories
    ))
}

/// What changed between the maps in `old` and `new`.
pub fn diff(old: &Path, new: &Path, threshold_m2: f64) -> anyhow::Result<String> {
    let old_map = load_communities(&old.join(files::COMMUNITIES))?;
    let new_map = load_communities(&new.join(files::COMMUNITIES))?;
    let d = validate::diff(&old_map, &new_map, threshold_m2);
    let mut out = String::new();
    for id in &d.added {
        writeln!(out, "added     {id}")?;
    }
    for id in &d.removed {
        writeln!(out, "removed   {id}")?;
    }
    for r in &d.reshaped {
        writeln!(
            out,
            "reshaped  {} {}: +{:.0} m² −{:.0} m² ({:.1} % of {:.0} m²)",
            r.id,
            r.name,
            r.gained_m2,
            r.lost_m2,
            100.0 * (r.gained_m2 + r.lost_m2) / r.old_area_m2.max(1.0),
            r.old_area_m2
        )?;
    }
    for (id, what) in &d.relabelled {
        writeln!(out, "relabelled {id}: {what}")?;
    }
    write!(
        out,
        "{} added, {} removed, {} reshaped (over {threshold_m2} m²), {} relabelled",
        d.added.len(),
        d.removed.len(),
        d.reshaped.len(),
        d.relabelled.len()
    )?;
    Ok(out)
}

/// One past case re-run: what it was routed to, what its version gives now, and what another
/// version gives.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Rerun {
    /// The case.
    pub case_id: String,
    /// The version it was routed with.
    pub routed_with: String,
    /// Community and departments as stored.
    pub stored: Outcome,
    /// The same version again (should equal `stored`).
    pub same_version: Outcome,
    /// The version compared against, and what it gives.
    pub against: (String, Outcome),
}

/// Where a case goes: the part of a decision a map version decides (volunteers move on their
/// own, so they are not compared).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Outcome {
    /// Community id, or none.
    pub community: Option<String>,
    /// Department ids.
    pub departments: Vec<String>,
}

impl Outcome {
    fn of(d: &linkbus_wire::Decision) -> Self {
        Self {
            community: d.community.community.as_ref().map(|c| c.id.clone()),
            departments: d.departments.iter().map(|d| d.id.clone()).collect(),
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "community {} → {}", self.community.as_deref().unwrap_or("-"), self.departments.join(", "))
    }
}

impl std::fmt::Display for Rerun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}: routed with {}: {}", self.case_id, self.routed_with, self.stored)?;
        let same = if self.same_version == self.stored { "same" } else { "DIFFERS" };
        writeln!(f, "  re-run with {}: {} ({same})", self.routed_with, self.same_version)?;
        let changed = if self.against.1 == self.stored { "no change" } else { "CHANGES" };
        write!(f, "  with {}: {} ({changed})", self.against.0, self.against.1)
    }
}

/// Re-runs the stored case `case_id` against the region version it was routed with (fetched
/// from the bucket) and against `against` (a region folder), or the version now current.
pub async fn rerun(
    client: &async_nats::Client,
    case_id: &str,
    against: Option<&Path>,
    params: &linkbus_matching::RoutingParams,
) -> anyhow::Result<Rerun> {
    use linkbus_matching::{OfferLedger, Router, VolunteerIndex};
    use linkbus_routers::regions;
    use linkbus_wire::{CloudEvent, RoutedCase};
    let js = async_nats::jetstream::new(client.clone());
    let cases = js.get_stream(linkbus_bus::nats::STREAM_CASES).await.context("opening the cases stream")?;
    let subject = linkbus_wire::subjects::case_event(case_id, "routed");
    let stored = cases
        .get_last_raw_message_by_subject(&subject)
        .await
        .with_context(|| format!("no routed decision of case {case_id} on {subject}"))?;
    let routed: CloudEvent<RoutedCase> = serde_json::from_slice(&stored.payload).context("the stored decision")?;
    let (case, decision) = (&routed.data.case, &routed.data.decision);
    let (region_id, version) =
        decision.geo_version.split_once('@').with_context(|| format!("geo_version {:?}", decision.geo_version))?;
    let store = js.get_key_value(regions::BUCKET_REGIONS).await.context("opening the region versions bucket")?;
    let decide = |region: &Region| {
        let router = Router::new(region, params.clone());
        (
            router.geo_version().to_owned(),
            Outcome::of(&router.decide(case, &VolunteerIndex::new(), &OfferLedger::new(), 0)),
        )
    };
    let then = regions::load_version(&store, region_id, version).await?;
    let other = match against {
        Some(dir) => Region::load(dir).with_context(|| format!("loading region {}", dir.display()))?,
        None => {
            let current = store
                .get(regions::current_key(region_id))
                .await?
                .with_context(|| format!("no current version of {region_id} in the bucket"))?;
            let current: regions::Current = serde_json::from_slice(&current)?;
            regions::load_version(&store, region_id, &current.version).await?
        }
    };
    Ok(Rerun {
        case_id: case_id.to_owned(),
        routed_with: decision.geo_version.clone(),
        stored: Outcome::of(decision),
        same_version: decide(&then).1,
        against: decide(&other),
    })
}
