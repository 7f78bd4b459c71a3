use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use geo::{MultiPolygon, Point};
use linkbus_wire::{self as wire, JurisdictionLevel, SourceSystem, VolunteerStatus};
use serde::{Deserialize, Serialize};

/// `manifest.toml`: what the region is and where each file came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Region id, e.g. `san-francisco`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Data version; every routing decision records it.
    pub version: String,
    /// Date from which this version is in force (YYYY-MM-DD).
    pub effective_date: String,
    /// IANA time zone of the region, e.g. `America/Los_Angeles`.
    pub time_zone: String,
    /// Region-level area id used for region-wide jurisdictions.
    pub region_area: String,
    /// Where each file came from.
    #[serde(default)]
    pub files: Vec<FileSource>,
}

/// Provenance of one file of the region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSource {
    /// File name inside the region folder.
    pub path: String,
    /// What it holds.
    pub description: String,
    /// Where it came from.
    pub source: String,
    /// Its licence and attribution.
    pub licence: String,
    /// True when the content is derived or synthetic rather than published as is.
    #[serde(default)]
    pub derived: bool,
}

/// A named administrative area (sub-district or district).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Area {
    /// Code, e.g. `110101` or `06075`.
    pub code: String,
    /// Display name.
    pub name: String,
}

/// One community (社区, or a neighborhood) with its boundary.
#[derive(Debug, Clone, PartialEq)]
pub struct Community {
    /// Id, a subject token.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Parent sub-district (街道), where the region has them.
    pub sub_district: Option<Area>,
    /// Parent district (区).
    pub district: Area,
    /// Boundary, WGS-84.
    pub boundary: MultiPolygon<f64>,
}

/// What a department handles where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Duty {
    /// Categories handled.
    pub categories: Vec<String>,
    /// Level of the areas below.
    pub level: JurisdictionLevel,
    /// Community ids, sub-district or district codes, or the region id.
    pub areas: Vec<String>,
}

/// A department (部门): fire station, police station, street office, utility, agency queue…
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Department {
    /// Id, a subject token: cases reach it on `routed.dept.<id>.<category>[.<community>]`.
    pub id: String,
    /// Display name, in the region's language.
    pub name: String,
    /// The name in other languages, by BCP 47 tag (`en`, `zh-CN`), for readers in them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub names: BTreeMap<String, String>,
    /// Department a case escalates to when this one does not act.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// How to reach it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
    /// What it handles where.
    #[serde(default)]
    pub duties: Vec<Duty>,
}

/// `departments.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Departments {
    /// The department that takes what no rule covers (dispatchers' desk).
    pub catch_all: String,
    /// Every department.
    pub departments: Vec<Department>,
}

/// A case category of the region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Category {
    /// Id, as on the bus.
    pub id: String,
    /// Display name, in the region's language.
    pub name: String,
    /// The name in other languages, by BCP 47 tag (`en`, `zh-CN`), for readers in them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub names: BTreeMap<String, String>,
    /// The kind of source system it usually comes from.
    pub system: SourceSystem,
    /// Default priority, 1–4.
    pub priority: u8,
    /// Volunteer skill the category calls for; none means no volunteers are offered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volunteer_skill: Option<String>,
    /// Kind of facility the accepting volunteer is pointed to (`aed`, `fire_station`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facility_kind: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CategoriesFile {
    category: Vec<Category>,
}

/// A facility: fire station, AED, hospital.
#[derive(Debug, Clone, PartialEq)]
pub struct Facility {
    /// Id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Kind, e.g. `fire_station`.
    pub kind: String,
    /// Position, WGS-84.
    pub location: Point<f64>,
}

/// A loaded, checked region.
#[derive(Debug, Clone)]
pub struct Region {
    /// The folder it was loaded from.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    /// Communities.
    pub communities: Vec<Community>,
    /// Departments and catch-all.
    pub departments: Departments,
    /// Categories.
    pub categories: Vec<Category>,
    /// Facilities (may be empty).
    pub facilities: Vec<Facility>,
    /// How CAP geocodes name its areas (empty: none known).
    pub geocodes: crate::Geocodes,
}

/// Region data that cannot be used, with the file and the item at fault.
#[derive(Debug, thiserror::Error)]
pub enum GeoDataError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be parsed.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// The community map has errors (see [`crate::validate`]).
    #[error("{path}: {} map error(s): {}", problems.len(), problems.iter().take(10).map(|p| p.to_string()).collect::<Vec<_>>().join("; "))]
    Map {
        /// The communities file.
        path: PathBuf,
        /// The errors, each naming the communities at fault.
        problems: Vec<crate::validate::Problem>,
    },
    /// A file parsed but its content is wrong.
    #[error("{path}: {item}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The feature, department or line at fault.
        item: String,
        /// What is wrong.
        message: String,
    },
}

/// File names inside a region folder.
pub mod files {
    /// The manifest.
    pub const MANIFEST: &str = "manifest.toml";
    /// Community boundaries.
    pub const COMMUNITIES: &str = "communities.geojson";
    /// Departments.
    pub const DEPARTMENTS: &str = "departments.json";
    /// Categories.
    pub const CATEGORIES: &str = "categories.toml";
    /// Facilities.
    pub const FACILITIES: &str = "facilities.geojson";
    /// Volunteer roster.
    pub const VOLUNTEERS: &str = "volunteers.jsonl";
    /// CAP geocode table.
    pub const GEOCODES: &str = "geocodes.toml";
}

fn read(path: &Path) -> Result<String, GeoDataError> {
    std::fs::read_to_string(path).map_err(|source| GeoDataError::Read { path: path.to_owned(), source })
}

fn parse_err(path: &Path, message: impl ToString) -> GeoDataError {
    GeoDataError::Parse { path: path.to_owned(), message: message.to_string() }
}

fn invalid(path: &Path, item: impl Into<String>, message: impl Into<String>) -> GeoDataError {
    GeoDataError::Invalid { path: path.to_owned(), item: item.into(), message: message.into() }
}

/// Ids that name subjects: ASCII letters, digits, `-` and `_`, at most 64 bytes.
pub fn is_id(s: &str) -> bool {
    wire::is_token(s, 64, b"-_")
}

impl Region {
    /// Loads and checks every file of the region in `dir`.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, GeoDataError> {
        let dir = dir.as_ref().to_owned();
        let manifest_path = dir.join(files::MANIFEST);
        let manifest: Manifest = toml::from_str(&read(&manifest_path)?).map_err(|e| parse_err(&manifest_path, e))?;
        let communities = load_communities(&dir.join(files::COMMUNITIES))?;
        let departments_path = dir.join(files::DEPARTMENTS);
        let departments: Departments =
            serde_json::from_str(&read(&departments_path)?).map_err(|e| parse_err(&departments_path, e))?;
        let categories_path = dir.join(files::CATEGORIES);
        let categories: CategoriesFile =
            toml::from_str(&read(&categories_path)?).map_err(|e| parse_err(&categories_path, e))?;
        let facilities_path = dir.join(files::FACILITIES);
        let facilities = if facilities_path.exists() { load_facilities(&facilities_path)? } else { Vec::new() };
        let geocodes_path = dir.join(files::GEOCODES);
        let geocodes = if geocodes_path.exists() {
            toml::from_str(&read(&geocodes_path)?).map_err(|e| parse_err(&geocodes_path, e))?
        } else {
            crate::Geocodes::default()
        };
        let region =
            Region { dir, manifest, communities, departments, categories: categories.category, facilities, geocodes };
        region.check()?;
        let problems: Vec<_> = crate::validate::validate(&region.communities, &Default::default())
            .into_iter()
            .filter(|p| p.severity == crate::validate::Severity::Error)
            .collect();
        if !problems.is_empty() {
            return Err(GeoDataError::Map { path: region.dir.join(files::COMMUNITIES), problems });
        }
        Ok(region)
    }

    /// The volunteer roster shipped with the region, if any.
    pub fn roster(&self) -> Result<Vec<VolunteerStatus>, GeoDataError> {
        let path = self.dir.join(files::VOLUNTEERS);
        if !path.exists() {
            return Ok(Vec::new());
        }
        read(&path)?
            .lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(n, line)| {
                let v: VolunteerStatus =
                    serde_json::from_str(line).map_err(|e| parse_err(&path, format!("line {}: {e}", n + 1)))?;
                v.validate().map_err(|e| invalid(&path, format!("line {}", n + 1), e.to_string()))?;
                Ok(v)
            })
            .collect()
    }

    /// The category with this id.
    pub fn category(&self, id: &str) -> Option<&Category> {
        self.categories.iter().find(|c| c.id == id)
    }

    fn check(&self) -> Result<(), GeoDataError> {
        let m = &self.manifest;
        let manifest_path = self.dir.join(files::MANIFEST);
        if !is_id(&m.id) || !is_id(&m.region_area) {
            return Err(invalid(&manifest_path, "id", "id and region_area must be ids (letters, digits, '-', '_')"));
        }
        if jiff::tz::TimeZone::get(&m.time_zone).is_err() {
            return Err(invalid(&manifest_path, "time_zone", "must be an IANA name like Asia/Shanghai"));
        }

        let path = self.dir.join(files::CATEGORIES);
        let mut category_ids = HashSet::new();
        for c in &self.categories {
            if !wire::is_category(&c.id) || !category_ids.insert(c.id.as_str()) {
                return Err(invalid(&path, &c.id, "category ids must be unique lowercase letters, digits, '_'"));
            }
            if !(1..=4).contains(&c.priority) {
                return Err(invalid(&path, &c.id, "priority must be 1-4"));
            }
            if c.volunteer_skill.as_deref().is_some_and(|s| !wire::is_category(s)) {
                return Err(invalid(&path, &c.id, "volunteer_skill must be lowercase letters, digits, '_'"));
            }
        }

        let mut areas: HashMap<JurisdictionLevel, HashSet<&str>> = HashMap::new();
        areas.entry(JurisdictionLevel::Region).or_default().insert(&m.region_area);
        for c in &self.communities {
            areas.entry(JurisdictionLevel::Community).or_default().insert(&c.id);
            areas.entry(JurisdictionLevel::District).or_default().insert(&c.district.code);
            if let Some(s) = &c.sub_district {
                areas.entry(JurisdictionLevel::SubDistrict).or_default().insert(&s.code);
            }
        }

        let path = self.dir.join(files::DEPARTMENTS);
        let ids: HashSet<&str> = self.departments.departments.iter().map(|d| d.id.as_str()).collect();
        if ids.len() != self.departments.departments.len() {
            return Err(invalid(&path, "departments", "department ids must be unique"));
        }
        if !ids.contains(self.departments.catch_all.as_str()) {
            return Err(invalid(&path, "catch_all", format!("{:?} is not a department", self.departments.catch_all)));
        }
        for d in &self.departments.departments {
            if !is_id(&d.id) {
                return Err(invalid(&path, &d.id, "department ids must be letters, digits, '-', '_'"));
            }
            if let Some(parent) = d.parent.as_deref().filter(|p| !ids.contains(p)) {
                return Err(invalid(&path, &d.id, format!("parent {parent:?} is not a department")));
            }
            for duty in &d.duties {
                if let Some(c) = duty.categories.iter().find(|c| !category_ids.contains(c.as_str())) {
                    return Err(invalid(&path, &d.id, format!("category {c:?} is not in {}", files::CATEGORIES)));
                }
                let known = areas.get(&duty.level);
                if let Some(a) = duty.areas.iter().find(|a| !known.is_some_and(|k| k.contains(a.as_str()))) {
                    return Err(invalid(&path, &d.id, format!("no {:?} area {a:?} in this region", duty.level)));
                }
            }
        }

        let path = self.dir.join(files::GEOCODES);
        let is_area = |code: &str| {
            [JurisdictionLevel::Community, JurisdictionLevel::SubDistrict, JurisdictionLevel::District]
                .iter()
                .any(|level| areas.get(level).is_some_and(|k| k.contains(code)))
        };
        for scheme in &self.geocodes.scheme {
            let name = scheme.value_names.first().map_or("", String::as_str);
            if scheme.value_names.is_empty() || scheme.value_names.iter().any(|n| n.trim().is_empty()) {
                return Err(invalid(&path, name, "a scheme needs value_names, none blank"));
            }
            if let Some((value, code)) = scheme.codes.iter().find(|(_, code)| !is_area(code)) {
                return Err(invalid(&path, name, format!("{value:?} names {code:?}, no area of this region")));
            }
        }
        Ok(())
    }
}

fn feature_string(f: &geojson::Feature, key: &str) -> Option<String> {
    f.property(key).and_then(|v| v.as_str()).map(str::to_owned)
}

fn feature_collection(path: &Path) -> Result<geojson::FeatureCollection, GeoDataError> {
    read(path)?.parse().map_err(|e| parse_err(path, e))
}

/// Each community's centre as the region's communities file gives it (the `centre` property,
/// `[lon, lat]`: Beijing's and Shenzhen's registry centres, each inside its community's cell), by
/// community id; empty where the file has none.
pub fn given_centres(region: &Region) -> Result<HashMap<String, Point<f64>>, GeoDataError> {
    let fc = feature_collection(&region.dir.join(files::COMMUNITIES))?;
    Ok(fc
        .features
        .iter()
        .filter_map(|f| {
            let centre = f.property("centre")?.as_array()?;
            Some((feature_string(f, "id")?, Point::new(centre.first()?.as_f64()?, centre.get(1)?.as_f64()?)))
        })
        .collect())
}

/// Reads communities from a GeoJSON FeatureCollection of Polygon/MultiPolygon features.
pub fn load_communities(path: &Path) -> Result<Vec<Community>, GeoDataError> {
    let fc = feature_collection(path)?;
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(fc.features.len());
    for (n, f) in fc.features.iter().enumerate() {
        let item = feature_string(f, "id").unwrap_or_else(|| format!("feature {n}"));
        let bad = |message: &str| invalid(path, item.clone(), message);
        let id = feature_string(f, "id")
            .filter(|id| is_id(id))
            .ok_or_else(|| bad("property id must be an id (letters, digits, '-', '_')"))?;
        if !seen.insert(id.clone()) {
            return Err(bad("duplicate id"));
        }
        let name = feature_string(f, "name").ok_or_else(|| bad("property name is missing"))?;
        let district = Area {
            code: feature_string(f, "district_code").ok_or_else(|| bad("property district_code is missing"))?,
            name: feature_string(f, "district_name").unwrap_or_default(),
        };
        let sub_district = feature_string(f, "sub_district_code")
            .map(|code| Area { code, name: feature_string(f, "sub_district_name").unwrap_or_default() });
        let geometry = f.geometry.as_ref().ok_or_else(|| bad("no geometry"))?;
        let geometry = to_geo(&geometry.value).map_err(|e| bad(&e))?;
        let boundary = match geometry {
            geo::Geometry::Polygon(p) => MultiPolygon::new(vec![p]),
            geo::Geometry::MultiPolygon(mp) => mp,
            _ => return Err(bad("geometry must be a Polygon or MultiPolygon")),
        };
        check_boundary(&boundary).map_err(|m| bad(&m))?;
        out.push(Community { id, name, sub_district, district, boundary });
    }
    if out.is_empty() {
        return Err(invalid(path, "features", "no communities"));
    }
    Ok(out)
}

/// A GeoJSON geometry as `geo` types, once every position has two or three numbers (the
/// `geojson` conversion indexes positions without checking: a position `[1]` made it panic,
/// found by the fuzz target `geojson_region`).
fn to_geo(value: &geojson::GeometryValue) -> Result<geo::Geometry<f64>, String> {
    fn positions_ok(value: &geojson::GeometryValue) -> bool {
        use geojson::GeometryValue as V;
        let ok = |p: &geojson::Position| (2..=3).contains(&p.as_slice().len());
        match value {
            V::Point { coordinates } => ok(coordinates),
            V::MultiPoint { coordinates } | V::LineString { coordinates } => coordinates.iter().all(ok),
            V::MultiLineString { coordinates } | V::Polygon { coordinates } => coordinates.iter().flatten().all(ok),
            V::MultiPolygon { coordinates } => coordinates.iter().flatten().flatten().all(ok),
            V::GeometryCollection { geometries } => geometries.iter().all(|g| positions_ok(&g.value)),
        }
    }
    if !positions_ok(value) {
        return Err("a position must be [longitude, latitude]".into());
    }
    geo::Geometry::<f64>::try_from(value).map_err(|e| e.to_string())
}

fn check_boundary(boundary: &MultiPolygon<f64>) -> Result<(), String> {
    if boundary.0.is_empty() {
        return Err("empty boundary".into());
    }
    for polygon in &boundary.0 {
        for ring in std::iter::once(polygon.exterior()).chain(polygon.interiors()) {
            if ring.0.len() < 4 {
                return Err("a ring has fewer than 4 positions".into());
            }
            if let Some(c) = ring.0.iter().find(|c| wire::Location { lon: c.x, lat: c.y }.validate("position").is_err())
            {
                return Err(format!("position ({}, {}) is not WGS-84 lon/lat", c.x, c.y));
            }
        }
    }
    Ok(())
}

/// Reads facilities from a GeoJSON FeatureCollection of Point features with `id`, `name`, `kind`.
pub fn load_facilities(path: &Path) -> Result<Vec<Facility>, GeoDataError> {
    let fc = feature_collection(path)?;
    fc.features
        .iter()
        .enumerate()
        .map(|(n, f)| {
            let item = feature_string(f, "id").unwrap_or_else(|| format!("feature {n}"));
            let bad = |message: &str| invalid(path, item.clone(), message);
            let geometry = f.geometry.as_ref().ok_or_else(|| bad("no geometry"))?;
            let location = match to_geo(&geometry.value).map_err(|e| bad(&e))? {
                geo::Geometry::Point(p) => p,
                _ => return Err(bad("geometry must be a Point")),
            };
            Ok(Facility {
                id: feature_string(f, "id").ok_or_else(|| bad("property id is missing"))?,
                name: feature_string(f, "name").unwrap_or_default(),
                kind: feature_string(f, "kind").ok_or_else(|| bad("property kind is missing"))?,
                location,
            })
        })
        .collect()
}
