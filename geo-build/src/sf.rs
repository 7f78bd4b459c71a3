//! `linkbus-geo-build sf`: builds `geo-data/san-francisco/` from the public San Francisco data
//! (analysis neighborhoods, 311 requests, OSM fire stations), reproducibly.
//!
//! - communities: the 41 analysis neighborhoods, id = the name as a token;
//! - departments: every 311 `Responsible.Agency` that is the majority handler of a category
//!   city-wide (a region-level duty) or, with at least [`MIN_LOCAL_CASES`] cases and over half
//!   the share, in one neighborhood (a community-level duty); the 45 fire stations, each the
//!   first-due station for the neighborhoods whose interior point is nearest to it (derived);
//!   the fire dispatch centre region-wide, the 311 centre as catch-all and parent;
//! - categories: the 26 311 categories plus four emergency ones, with volunteer skills;
//! - facilities: the fire stations;
//! - volunteers: a synthetic roster, seeded, said so in the manifest.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use geo::InteriorPoint;
use linkbus_adapters::{category_token, sf311};
use linkbus_geo_data::{Category, Community, Department, Departments, Duty, FileSource, Manifest, files};
use linkbus_matching::communities::{CommunityIndex, Located};

use crate::vocabulary;
use linkbus_wire::{JurisdictionLevel, Location, SourceSystem, VolunteerStatus};
use rand::{RngExt, SeedableRng};
use serde::Serialize;

/// A neighborhood-level rule needs at least this many cases.
pub const MIN_LOCAL_CASES: usize = 3;
const CITY: &str = "san-francisco";
const CITY_CODE: &str = "06075";
const CATCH_ALL: &str = "sf-311";
const FIRE_DISPATCH: &str = "sffd-dispatch";
const SKILLS: [&str; 6] = ["first_aid", "cpr", "elderly_care", "cleanup", "neighborhood_watch", "translation"];

/// Inputs and knobs of the build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Data version written to the manifest.
    pub version: String,
    /// Effective date written to the manifest.
    pub effective_date: String,
    /// Volunteers in the synthetic roster.
    pub volunteers: usize,
    /// Seed of the roster.
    pub seed: u64,
}

/// Figures of a build, printed by the command.
#[derive(Debug, Clone, Default)]
pub struct BuildReport {
    /// Communities written.
    pub communities: usize,
    /// Departments written.
    pub departments: usize,
    /// Community-level duties derived from the 311 data.
    pub local_rules: usize,
    /// 311 rows whose agency the derived rules reproduce, of those located in a community.
    pub agreeing_rows: usize,
    /// 311 rows located in a community.
    pub located_rows: usize,
    /// Volunteers written.
    pub volunteers: usize,
}

/// `geocodes.toml`: how CAP `<geocode>`s name San Francisco (the county, so every community).
const GEOCODES: &str = r#"# How CAP <geocode>s name San Francisco's areas: the City and County of San Francisco is
# FIPS county 06075 (the communities' district code), SAME 006075, county UGC CAC075.
[[scheme]]
value_names = ["FIPS6", "FIPS"]
own = true

[[scheme]]
value_names = ["SAME"]
codes = { "006075" = "06075" }

[[scheme]]
value_names = ["UGC"]
codes = { "CAC075" = "06075" }
"#;

/// Builds the region from `from` (the `shared/data/sf` folder) into `out`.
pub fn build_sf(from: &Path, out: &Path, options: &BuildOptions) -> anyhow::Result<BuildReport> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut report = BuildReport::default();

    // Communities.
    let hoods = read_feature_collection(&from.join("sf-neighborhoods-analysis.geojson"))?;
    let mut features = Vec::new();
    for f in &hoods.features {
        let name = f.property("nhood").and_then(|v| v.as_str()).context("a neighborhood has no nhood")?;
        let geometry = f.geometry.clone().context("a neighborhood has no geometry")?;
        let properties = CommunityProperties {
            id: category_token(name).replace('_', "-"),
            name: name.to_owned(),
            district_code: CITY_CODE,
            district_name: "San Francisco",
        };
        features.push(serde_json::to_string(&FeatureOut { kind: "Feature", properties, geometry })?);
    }
    write_feature_collection(&out.join(files::COMMUNITIES), &features)?;
    let communities = linkbus_geo_data::load_communities(&out.join(files::COMMUNITIES))?;
    report.communities = communities.len();

    // Fire stations, and each neighborhood's first-due station.
    let stations = read_stations(&from.join("sf-fire-stations-osm.geojson"))?;
    let mut station_features = Vec::new();
    for s in &stations {
        let properties = FacilityProperties { id: &s.id, name: &s.name, kind: "fire_station" };
        let geometry = geojson::Geometry::new_point([s.lon, s.lat]);
        station_features.push(serde_json::to_string(&FeatureOut { kind: "Feature", properties, geometry })?);
    }
    write_feature_collection(&out.join(files::FACILITIES), &station_features)?;
    let first_due = first_due_areas(&communities, &stations);

    // 311 statistics: which agency handles which category, city-wide and per neighborhood.
    let index = CommunityIndex::new(communities.clone(), 100.0);
    let csv_path = from.join("sf311-cases-sample.csv");
    let csv = std::fs::File::open(&csv_path).with_context(|| format!("cannot open {}", csv_path.display()))?;
    let mut city: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let mut local: BTreeMap<(String, String), BTreeMap<String, usize>> = BTreeMap::new();
    let mut labels: BTreeMap<String, String> = BTreeMap::new();
    let mut rows = Vec::new();
    for converted in sf311::read(csv) {
        let converted = converted.context("the SF 311 sample has a bad row")?;
        let case = &converted.event.data;
        let agency = converted.row.responsible_agency.trim().to_owned();
        labels.entry(case.category.clone()).or_insert_with(|| converted.row.category.trim().to_owned());
        *city.entry(case.category.clone()).or_default().entry(agency.clone()).or_default() += 1;
        let community = match index.locate(case.location.lon, case.location.lat) {
            Located::Inside(c) => Some(c),
            Located::OnBorder(cs) => cs.first().copied(),
            Located::Nearest(hits) => hits.first().map(|h| h.0),
            Located::Unmatched => None,
        };
        if let Some(c) = community {
            let key = (case.category.clone(), communities[c].id.clone());
            *local.entry(key.clone()).or_default().entry(agency.clone()).or_default() += 1;
            rows.push((key, agency));
        }
    }
    let majority = |counts: &BTreeMap<String, usize>| {
        counts.iter().max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0))).map(|(a, n)| (a.clone(), *n))
    };
    let mut duties: BTreeMap<String, Vec<Duty>> = BTreeMap::new();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut chosen: HashMap<(String, String), String> = HashMap::new();
    for (category, counts) in &city {
        let (agency, _) = majority(counts).context("a category without agencies")?;
        let id = department_id(&agency);
        names.insert(id.clone(), agency);
        duties.entry(id).or_default().push(Duty {
            categories: vec![category.clone()],
            level: JurisdictionLevel::Region,
            areas: vec![CITY.into()],
        });
    }
    for ((category, community), counts) in &local {
        let total: usize = counts.values().sum();
        let (agency, n) = majority(counts).context("a neighborhood without agencies")?;
        let city_agency = majority(&city[category]).map(|a| a.0).unwrap_or_default();
        let id = department_id(&agency);
        if total >= MIN_LOCAL_CASES && 2 * n > total && agency != city_agency {
            names.insert(id.clone(), agency.clone());
            duties.entry(id.clone()).or_default().push(Duty {
                categories: vec![category.clone()],
                level: JurisdictionLevel::Community,
                areas: vec![community.clone()],
            });
            report.local_rules += 1;
            chosen.insert((category.clone(), community.clone()), agency);
        } else {
            chosen.insert((category.clone(), community.clone()), city_agency);
        }
    }
    report.located_rows = rows.len();
    report.agreeing_rows = rows.iter().filter(|(key, agency)| chosen.get(key) == Some(agency)).count();

    // Categories.
    let mut categories: Vec<Category> = labels
        .iter()
        .map(|(id, label)| Category {
            id: id.clone(),
            name: label.clone(),
            names: vocabulary::chinese(id).map(|zh| vocabulary::other_name("zh-CN", zh)).unwrap_or_default(),
            system: SourceSystem::PublicService,
            priority: 3,
            volunteer_skill: skill_for_311(id).map(str::to_owned),
            facility_kind: None,
        })
        .collect();
    let emergency = [
        ("fire", 1, "first_aid"),
        ("cardiac_arrest", 1, "cpr"),
        ("medical_emergency", 2, "first_aid"),
        ("elderly_assistance", 2, "elderly_care"),
    ];
    for (id, priority, skill) in emergency {
        let (_, name, zh) = vocabulary::CATEGORIES.iter().find(|(c, _, _)| *c == id).expect("in the vocabulary");
        let system = if id == "elderly_assistance" { SourceSystem::PublicService } else { SourceSystem::Emergency };
        // Every SFFD station carries an AED; the data has no AED registry, so stations stand in.
        let facility_kind = (id == "cardiac_arrest").then(|| "fire_station".to_owned());
        categories.push(Category {
            id: id.into(),
            name: (*name).into(),
            names: vocabulary::other_name("zh-CN", zh),
            system,
            priority,
            volunteer_skill: Some(skill.into()),
            facility_kind,
        });
    }
    let mut categories_toml = String::from(
        "# Case categories of the San Francisco region: the 26 SF 311 categories (public_service)\n\
         # and four emergency ones. volunteer_skill: the skill of the volunteers offered the case.\n",
    );
    for c in &categories {
        categories_toml.push('\n');
        categories_toml.push_str(&toml::to_string(&CategoriesOut { category: [c] })?);
    }
    std::fs::write(out.join(files::CATEGORIES), categories_toml)?;

    // Departments.
    let fire_categories: Vec<String> = ["fire", "cardiac_arrest", "medical_emergency"].map(String::from).to_vec();
    let mut departments = vec![
        Department {
            id: CATCH_ALL.into(),
            name: "SF311 Customer Service Center (dispatch desk)".into(),
            names: BTreeMap::new(),
            parent: None,
            contact: Some("311".into()),
            duties: vec![],
        },
        Department {
            id: FIRE_DISPATCH.into(),
            name: "SFFD Division of Emergency Communications".into(),
            names: BTreeMap::new(),
            parent: None,
            contact: Some("911".into()),
            duties: vec![Duty {
                categories: fire_categories.clone(),
                level: JurisdictionLevel::Region,
                areas: vec![CITY.into()],
            }],
        },
        Department {
            id: "sf-das".into(),
            name: "SF Department of Disability and Aging Services".into(),
            names: BTreeMap::new(),
            parent: Some(CATCH_ALL.into()),
            contact: None,
            duties: vec![Duty {
                categories: vec!["elderly_assistance".into()],
                level: JurisdictionLevel::Region,
                areas: vec![CITY.into()],
            }],
        },
    ];
    for (id, name) in &names {
        departments.push(Department {
            id: id.clone(),
            name: name.clone(),
            names: BTreeMap::new(),
            parent: Some(CATCH_ALL.into()),
            contact: None,
            duties: duties.remove(id).unwrap_or_default(),
        });
    }
    for station in &stations {
        let areas = first_due.get(&station.id).cloned().unwrap_or_default();
        let duties = if areas.is_empty() {
            vec![]
        } else {
            vec![Duty { categories: fire_categories.clone(), level: JurisdictionLevel::Community, areas }]
        };
        departments.push(Department {
            id: station.id.clone(),
            name: station.name.clone(),
            names: BTreeMap::new(),
            parent: Some(FIRE_DISPATCH.into()),
            contact: None,
            duties,
        });
    }
    report.departments = departments.len();
    let departments = Departments { catch_all: CATCH_ALL.into(), departments };
    std::fs::write(out.join(files::DEPARTMENTS), serde_json::to_string_pretty(&departments)? + "\n")?;

    // Volunteers.
    let roster = match anywhere(&communities) {
        Some(sample) => synthetic_roster(&index, options.volunteers, options.seed, "sf-v", sample),
        None => Vec::new(),
    };
    let mut lines = String::new();
    for v in &roster {
        writeln!(lines, "{}", serde_json::to_string(v)?)?;
    }
    std::fs::write(out.join(files::VOLUNTEERS), lines)?;
    report.volunteers = roster.len();

    // The 311 sample itself, for `linkbus replay`.
    let sample = out.join("sf311-cases-sample.csv");
    let _ = std::fs::remove_file(&sample);
    std::fs::write(&sample, std::fs::read(&csv_path)?).with_context(|| format!("cannot write {}", sample.display()))?;

    std::fs::write(out.join(files::GEOCODES), GEOCODES)?;

    let manifest = manifest(options);
    std::fs::write(out.join(files::MANIFEST), toml::to_string(&manifest)?)?;
    linkbus_geo_data::Region::load(out).context("the built region does not load")?;
    Ok(report)
}

fn department_id(agency: &str) -> String {
    let token = category_token(agency).replace('_', "-");
    let mut id: String = token.chars().take(64).collect();
    while id.ends_with('-') {
        id.pop();
    }
    id
}

/// Community-minded 311 categories that volunteers can help with.
pub(crate) fn skill_for_311(category: &str) -> Option<&'static str> {
    match category {
        "street_and_sidewalk_cleaning"
        | "graffiti_public_property"
        | "graffiti_private_property"
        | "litter_receptacles"
        | "illegal_postings" => Some("cleanup"),
        "blocked_street_or_sidewalk" | "abandoned_vehicle" => Some("neighborhood_watch"),
        _ => None,
    }
}

struct Station {
    id: String,
    name: String,
    lon: f64,
    lat: f64,
}

fn read_stations(path: &Path) -> anyhow::Result<Vec<Station>> {
    let fc = read_feature_collection(path)?;
    let mut stations = Vec::new();
    for f in &fc.features {
        let number = f.property("station").and_then(|v| v.as_str()).context("a station has no number")?;
        let name = f.property("name").and_then(|v| v.as_str()).unwrap_or("Fire station").to_owned();
        let geometry = f.geometry.as_ref().context("a station has no geometry")?;
        let geo::Geometry::Point(p) = geo::Geometry::<f64>::try_from(&geometry.value)? else {
            anyhow::bail!("station {number} is not a point");
        };
        stations.push(Station { id: format!("sffd-station-{number}"), name, lon: p.x(), lat: p.y() });
    }
    stations.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(stations)
}

/// Each community goes to the station nearest its interior point (an approximation of the
/// first-due area, labelled derived in the manifest).
fn first_due_areas(communities: &[Community], stations: &[Station]) -> BTreeMap<String, Vec<String>> {
    let mut areas: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in communities {
        let Some(p) = c.boundary.interior_point() else { continue };
        let nearest = stations.iter().min_by(|a, b| {
            let da = linkbus_matching::geodesy::haversine_m(p.x(), p.y(), a.lon, a.lat);
            let db = linkbus_matching::geodesy::haversine_m(p.x(), p.y(), b.lon, b.lat);
            da.total_cmp(&db)
        });
        if let Some(s) = nearest {
            areas.entry(s.id.clone()).or_default().push(c.id.clone());
        }
    }
    areas
}

/// Uniformly random positions inside the communities' bounding box.
fn anywhere(communities: &[Community]) -> Option<impl FnMut(&mut rand_chacha::ChaCha8Rng) -> (f64, f64)> {
    use geo::BoundingRect;
    let bounds = communities.iter().filter_map(|c| c.boundary.bounding_rect()).reduce(|a, b| {
        geo::Rect::new(
            geo::coord! { x: a.min().x.min(b.min().x), y: a.min().y.min(b.min().y) },
            geo::coord! { x: a.max().x.max(b.max().x), y: a.max().y.max(b.max().y) },
        )
    })?;
    Some(move |rng: &mut rand_chacha::ChaCha8Rng| {
        (rng.random_range(bounds.min().x..bounds.max().x), rng.random_range(bounds.min().y..bounds.max().y))
    })
}

/// `count` synthetic volunteers with ids `<prefix><n>`, at the positions `sample` draws that
/// fall inside a community, with random skills and availability, seeded.
pub(crate) fn synthetic_roster(
    index: &CommunityIndex,
    count: usize,
    seed: u64,
    prefix: &str,
    mut sample: impl FnMut(&mut rand_chacha::ChaCha8Rng) -> (f64, f64),
) -> Vec<VolunteerStatus> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut roster = Vec::with_capacity(count);
    while roster.len() < count {
        let (lon, lat) = sample(&mut rng);
        if !matches!(index.locate(lon, lat), Located::Inside(_)) {
            continue;
        }
        let mut skills: Vec<String> = SKILLS.iter().filter(|_| rng.random_bool(0.35)).map(|s| s.to_string()).collect();
        if skills.is_empty() {
            skills.push(SKILLS[rng.random_range(0..SKILLS.len())].to_owned());
        }
        roster.push(VolunteerStatus {
            id: format!("{prefix}{:05}", roster.len() + 1),
            location: Location { lon: (lon * 1e6).round() / 1e6, lat: (lat * 1e6).round() / 1e6 },
            available: rng.random_bool(0.7),
            skills,
        });
    }
    roster
}

pub(crate) fn read_feature_collection(path: &Path) -> anyhow::Result<geojson::FeatureCollection> {
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .parse()
        .with_context(|| format!("{} is not GeoJSON", path.display()))
}

/// A GeoJSON Feature with typed properties, so the output's key order never depends on how
/// `serde_json` orders maps.
#[derive(Serialize)]
pub(crate) struct FeatureOut<P> {
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) properties: P,
    pub(crate) geometry: geojson::Geometry,
}

#[derive(Serialize)]
struct CommunityProperties {
    id: String,
    name: String,
    district_code: &'static str,
    district_name: &'static str,
}

#[derive(Serialize)]
struct FacilityProperties<'a> {
    id: &'a str,
    name: &'a str,
    kind: &'static str,
}

/// One `[[category]]` table of `categories.toml`.
#[derive(Serialize)]
pub(crate) struct CategoriesOut<'a> {
    pub(crate) category: [&'a Category; 1],
}

/// Writes a FeatureCollection, one serialised feature a line.
pub(crate) fn write_feature_collection(path: &Path, features: &[String]) -> anyhow::Result<()> {
    let text = format!("{{\"type\":\"FeatureCollection\",\"features\":[\n{}\n]}}\n", features.join(",\n"));
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn manifest(options: &BuildOptions) -> Manifest {
    let file = |path: &str, description: &str, source: &str, licence: &str, derived: bool| FileSource {
        path: path.into(),
        description: description.into(),
        source: source.into(),
        licence: licence.into(),
        derived,
    };
    let datasf = "DataSF, public domain (ODC-PDDL)";
    let osm = "ODbL 1.0, © OpenStreetMap contributors";
    Manifest {
        id: CITY.into(),
        name: "San Francisco".into(),
        version: options.version.clone(),
        effective_date: options.effective_date.clone(),
        time_zone: sf311::TIME_ZONE.into(),
        region_area: CITY.into(),
        files: vec![
            file(
                files::COMMUNITIES,
                "the 41 Analysis Neighborhoods as communities",
                "DataSF dataset p5b7-5n3h via sfchronicle/sf-shapefiles @93e4ef6",
                datasf,
                false,
            ),
            file(
                files::DEPARTMENTS,
                "311 agencies with the categories they handle city-wide and per neighborhood (majority of the 311 sample), fire stations with first-due neighborhoods (nearest station to each neighborhood's interior point), dispatch desks",
                "derived by `linkbus-geo-build sf` from the SF 311 sample and the OSM fire stations",
                "derived from ODC-PDDL and ODbL 1.0 data, © OpenStreetMap contributors",
                true,
            ),
            file(
                files::CATEGORIES,
                "the 26 SF 311 categories and four emergency categories, with volunteer skills",
                "SF 311 sample categories; emergency categories and skills chosen by linkbus",
                datasf,
                true,
            ),
            file(
                files::FACILITIES,
                "45 fire stations",
                "OpenStreetMap amenity=fire_station via dimasrdwiaji/sf-fire-dt @64ad040",
                osm,
                false,
            ),
            file(
                files::VOLUNTEERS,
                "SYNTHETIC volunteer roster: random positions inside the neighborhoods, random skills and availability (seeded), for demos and tests; no real person",
                "generated by `linkbus-geo-build sf`",
                "no rights (synthetic)",
                true,
            ),
            file(
                "sf311-cases-sample.csv",
                "4,984 real SF 311 service requests 2008-2016, for `linkbus replay`",
                "DataSF vw6y-z8j6 sample via sfbrigade/data-science-wg @f1625ab",
                datasf,
                false,
            ),
        ],
    }
}

/// Default build options.
impl Default for BuildOptions {
    fn default() -> Self {
        Self { version: "2026.11.27".into(), effective_date: "2026-11-27".into(), volunteers: 2_000, seed: 311 }
    }
}
