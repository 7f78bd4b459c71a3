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
    let problems = validate::validate(&communities, tolerances);
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
