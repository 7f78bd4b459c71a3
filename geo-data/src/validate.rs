//! Checks of a region's community map, used by `linkbus geo validate`, by [`Region::load`]
//! (which refuses a map with errors) and by live reload:
//!
//! - each boundary is valid (geo's OGC validation: self-intersections, rings with too few
//!   points, holes outside their shell, parts overlapping);
//! - no two communities overlap by more than [`Tolerances::overlap_m2`] and more than
//!   [`Tolerances::overlap_share`] of the smaller one (smaller overlaps along a shared border
//!   are slivers of digitisation, as in San Francisco's published neighborhoods: warnings);
//! - gaps (holes in the union of all communities) larger than [`Tolerances::gap_m2`] are
//!   reported as warnings: a case there goes to the nearest community within the border
//!   tolerance, or the catch-all;
//! - orphans: a community without a district, a sub-district listed under two districts, or a
//!   12-digit code that disagrees with its parents' codes;
//! - ring orientation (GeoJSON wants shells counter-clockwise) and repeated points are warnings
//!   with a safe repair ([`repair`]).
//!
//! Areas are geodesic (m²), [`stats`] and [`diff`] describe a map and what changed between two.

use std::collections::{BTreeMap, HashMap};

use geo::orient::{Direction, Orient};
use geo::{BooleanOps, BoundingRect, CoordsIter, GeodesicArea, RemoveRepeatedPoints, Validation, Winding};
use geo::{MultiPolygon, Polygon};
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{AABB, RTree};
use serde::Serialize;

use crate::{Community, Region};

/// How serious a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The map cannot be used: [`Region::load`] refuses it.
    Error,
    /// Worth knowing; routing copes.
    Warning,
}

/// What kind of problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A boundary is not a valid polygon (self-intersection, too few points, …).
    InvalidBoundary,
    /// Two communities cover the same ground.
    Overlap,
    /// Ground surrounded by communities that none covers.
    Gap,
    /// A community whose parents are missing or disagree.
    Orphan,
    /// A shell clockwise or a hole counter-clockwise (GeoJSON's right-hand rule).
    RingOrientation,
    /// A ring repeats a position.
    RepeatedPoint,
}

/// One problem, naming the communities at fault.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    /// How serious.
    pub severity: Severity,
    /// What kind.
    pub kind: ProblemKind,
    /// The communities concerned.
    pub ids: Vec<String>,
    /// What is wrong, with the figures.
    pub message: String,
    /// Whether [`repair`] fixes it.
    pub repairable: bool,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{severity}: {}: {}", self.ids.join(", "), self.message)?;
        if self.repairable {
            write!(f, " (repairable: `linkbus geo validate --repair`)")?;
        }
        Ok(())
    }
}

/// What counts as an overlap or a gap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerances {
    /// Overlaps up to this many m² are rounding (coordinates to 1e-6° ≈ 0.1 m): not reported.
    pub overlap_m2: f64,
    /// Larger overlaps up to this share of the smaller community's area are slivers along a
    /// shared border: warnings. Beyond it: errors.
    pub overlap_share: f64,
    /// Gaps up to this many m² are not reported.
    pub gap_m2: f64,
}

impl Default for Tolerances {
    fn default() -> Self {
        Self { overlap_m2: 10.0, overlap_share: 0.01, gap_m2: 1_000.0 }
    }
}

type Envelope = GeomWithData<Rectangle<[f64; 2]>, usize>;

fn envelope(mp: &MultiPolygon<f64>) -> Option<Rectangle<[f64; 2]>> {
    let r = mp.bounding_rect()?;
    Some(Rectangle::from_corners([r.min().x, r.min().y], [r.max().x, r.max().y]))
}

/// Every problem of `communities`, errors first, then by kind and ids.
pub fn validate(communities: &[Community], tolerances: &Tolerances) -> Vec<Problem> {
    let mut problems = Vec::new();
    let problem = |severity, kind, ids: Vec<&str>, message: String, repairable| Problem {
        severity,
        kind,
        ids: ids.into_iter().map(str::to_owned).collect(),
        message,
        repairable,
    };
    for c in communities {
        for e in c.boundary.validation_errors() {
            problems.push(problem(Severity::Error, ProblemKind::InvalidBoundary, vec![&c.id], e.to_string(), false));
        }
        let rings = c
            .boundary
            .0
            .iter()
            .flat_map(|p| std::iter::once((p.exterior(), true)).chain(p.interiors().iter().map(|r| (r, false))));
        let mut misoriented = 0;
        let mut repeated = 0;
        for (ring, shell) in rings {
            if (shell && ring.is_cw()) || (!shell && ring.is_ccw()) {
                misoriented += 1;
            }
            repeated += ring.0.windows(2).filter(|w| w[0] == w[1]).count();
        }
        if misoriented > 0 {
            let message = format!("{misoriented} ring(s) wound against GeoJSON's right-hand rule");
            problems.push(problem(Severity::Warning, ProblemKind::RingOrientation, vec![&c.id], message, true));
        }
        if repeated > 0 {
            let message = format!("{repeated} repeated position(s)");
            problems.push(problem(Severity::Warning, ProblemKind::RepeatedPoint, vec![&c.id], message, true));
        }
    }
    problems.extend(orphans(communities));

    let tree = RTree::bulk_load(
        communities.iter().enumerate().filter_map(|(i, c)| Some(Envelope::new(envelope(&c.boundary)?, i))).collect(),
    );
    for (a, b) in tree.intersection_candidates_with_other_tree(&tree) {
        let (a, b) = (a.data, b.data);
        if a >= b {
            continue;
        }
        let (ca, cb) = (&communities[a], &communities[b]);
        let overlap = ca.boundary.intersection(&cb.boundary).geodesic_area_unsigned();
        if overlap > tolerances.overlap_m2 {
            let smaller = ca.boundary.geodesic_area_unsigned().min(cb.boundary.geodesic_area_unsigned());
            let share = overlap / smaller.max(1.0);
            let (severity, what) = if share > tolerances.overlap_share {
                (Severity::Error, "overlap")
            } else {
                (Severity::Warning, "sliver overlap along their border")
            };
            let message = format!("{what}: {overlap:.0} m², {:.2} % of the smaller", 100.0 * share);
            problems.push(problem(severity, ProblemKind::Overlap, vec![&ca.id, &cb.id], message, false));
        }
    }

    let union = geo::unary_union(communities.iter().map(|c| &c.boundary));
    for hole in union.0.iter().flat_map(|p| p.interiors()) {
        let hole = MultiPolygon::new(vec![Polygon::new(hole.clone(), vec![])]).orient(Direction::Default);
        let area = hole.geodesic_area_unsigned();
        if area <= tolerances.gap_m2 {
            continue;
        }
        let Some(rect) = envelope(&hole) else { continue };
        let around = AABB::from_corners(rect.lower(), rect.upper());
        let mut ids: Vec<&str> =
            tree.locate_in_envelope_intersecting(&around).map(|e| communities[e.data].id.as_str()).collect();
        ids.sort_unstable();
        let message = format!("a gap of {area:.0} m² that no community covers, among these");
        problems.push(problem(Severity::Warning, ProblemKind::Gap, ids, message, false));
    }
    problems.sort_by(|a, b| (a.severity, a.kind, &a.ids).cmp(&(b.severity, b.kind, &b.ids)));
    problems
}

/// Communities whose parents are missing or disagree.
fn orphans(communities: &[Community]) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut district_of: HashMap<&str, &str> = HashMap::new();
    let orphan = |id: &str, message: String| Problem {
        severity: Severity::Error,
        kind: ProblemKind::Orphan,
        ids: vec![id.to_owned()],
        message,
        repairable: false,
    };
    for c in communities {
        if c.district.code.trim().is_empty() {
            problems.push(orphan(&c.id, "no district".into()));
            continue;
        }
        let Some(s) = &c.sub_district else { continue };
        if s.code.trim().is_empty() {
            problems.push(orphan(&c.id, "an empty sub-district code".into()));
            continue;
        }
        match district_of.insert(&s.code, &c.district.code) {
            Some(other) if other != c.district.code => problems.push(orphan(
                &c.id,
                format!("sub-district {} is under district {} here and {other} elsewhere", s.code, c.district.code),
            )),
            _ => {}
        }
        // National statistics codes: district = first 6 digits, sub-district = first 9.
        let national = |code: &str| code.len() == 12 && code.bytes().all(|b| b.is_ascii_digit());
        if national(&c.id) && national(&s.code) {
            if c.id[..9] != s.code[..9] {
                problems.push(orphan(&c.id, format!("its code is not under its sub-district {}", s.code)));
            } else if !s.code.starts_with(&c.district.code) {
                problems
                    .push(orphan(&c.id, format!("sub-district {} is not under district {}", s.code, c.district.code)));
            }
        }
    }
    problems
}

/// Applies the safe repairs: drops repeated positions and winds shells counter-clockwise and
/// holes clockwise. Returns what it changed.
pub fn repair(boundary: &mut MultiPolygon<f64>) -> Vec<&'static str> {
    let mut done = Vec::new();
    let deduped = boundary.remove_repeated_points();
    if deduped.coords_count() != boundary.coords_count() {
        done.push("removed repeated positions");
    }
    let oriented = deduped.orient(Direction::Default);
    if oriented != deduped {
        done.push("wound the rings by the right-hand rule");
    }
    *boundary = oriented;
    done
}

/// Figures of a region's map.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// Region id and version.
    pub version: String,
    /// Communities.
    pub communities: usize,
    /// Distinct sub-districts.
    pub sub_districts: usize,
    /// Distinct districts.
    pub districts: usize,
    /// Polygon parts.
    pub parts: usize,
    /// Vertices in all.
    pub vertices: usize,
    /// The most vertices of one community, and its id.
    pub max_vertices: (usize, String),
    /// Total area, km².
    pub area_km2: f64,
    /// Smallest, median and largest community area, km².
    pub area_min_median_max_km2: [f64; 3],
    /// Departments.
    pub departments: usize,
    /// Categories.
    pub categories: usize,
}

/// The figures of `region`.
pub fn stats(region: &Region) -> Stats {
    let cs = &region.communities;
    let distinct = |f: &dyn Fn(&Community) -> Option<&str>| {
        cs.iter().filter_map(f).collect::<std::collections::BTreeSet<_>>().len()
    };
    let mut areas: Vec<f64> = cs.iter().map(|c| c.boundary.geodesic_area_unsigned() / 1e6).collect();
    areas.sort_by(f64::total_cmp);
    let max_vertices = cs
        .iter()
        .map(|c| (c.boundary.coords_count(), c.id.clone()))
        .max_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.cmp(&a.1)))
        .unwrap_or_default();
    Stats {
        version: format!("{}@{}", region.manifest.id, region.manifest.version),
        communities: cs.len(),
        sub_districts: distinct(&|c| c.sub_district.as_ref().map(|s| s.code.as_str())),
        districts: distinct(&|c| Some(c.district.code.as_str())),
        parts: cs.iter().map(|c| c.boundary.0.len()).sum(),
        vertices: cs.iter().map(|c| c.boundary.coords_count()).sum(),
        max_vertices,
        area_km2: areas.iter().sum(),
        area_min_median_max_km2: [
            areas.first().copied().unwrap_or_default(),
            areas.get(areas.len() / 2).copied().unwrap_or_default(),
            areas.last().copied().unwrap_or_default(),
        ],
        departments: region.departments.departments.len(),
        categories: region.categories.len(),
    }
}

/// A community whose boundary changed between two versions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reshaped {
    /// Id.
    pub id: String,
    /// Name in the new version.
    pub name: String,
    /// Area gained, m².
    pub gained_m2: f64,
    /// Area lost, m².
    pub lost_m2: f64,
    /// Area in the old version, m².
    pub old_area_m2: f64,
}

/// What changed between two versions of a map.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Diff {
    /// Ids only in the new version.
    pub added: Vec<String>,
    /// Ids only in the old version.
    pub removed: Vec<String>,
    /// Communities whose boundary moved by more than the threshold.
    pub reshaped: Vec<Reshaped>,
    /// Communities whose name or parents changed: (id, what).
    pub relabelled: Vec<(String, String)>,
}

/// Compares two maps by community id; a boundary counts as reshaped when the area gained plus
/// lost exceeds `threshold_m2`.
pub fn diff(old: &[Community], new: &[Community], threshold_m2: f64) -> Diff {
    let old_by_id: BTreeMap<&str, &Community> = old.iter().map(|c| (c.id.as_str(), c)).collect();
    let new_by_id: BTreeMap<&str, &Community> = new.iter().map(|c| (c.id.as_str(), c)).collect();
    let mut out = Diff {
        added: new_by_id.keys().filter(|id| !old_by_id.contains_key(*id)).map(|id| id.to_string()).collect(),
        removed: old_by_id.keys().filter(|id| !new_by_id.contains_key(*id)).map(|id| id.to_string()).collect(),
        ..Diff::default()
    };
    for (id, n) in &new_by_id {
        let Some(o) = old_by_id.get(id) else { continue };
        if o.name != n.name || o.sub_district != n.sub_district || o.district != n.district {
            let what = format!(
                "{} ({:?}, {}) → {} ({:?}, {})",
                o.name,
                o.sub_district.as_ref().map(|s| &s.code),
                o.district.code,
                n.name,
                n.sub_district.as_ref().map(|s| &s.code),
                n.district.code
            );
            out.relabelled.push((id.to_string(), what));
        }
        if o.boundary == n.boundary {
            continue;
        }
        let gained = n.boundary.difference(&o.boundary).geodesic_area_unsigned();
        let lost = o.boundary.difference(&n.boundary).geodesic_area_unsigned();
        if gained + lost > threshold_m2 {
            out.reshaped.push(Reshaped {
                id: id.to_string(),
                name: n.name.clone(),
                gained_m2: gained,
                lost_m2: lost,
                old_area_m2: o.boundary.geodesic_area_unsigned(),
            });
        }
    }
    out
}
