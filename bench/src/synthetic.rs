//! A seeded synthetic city at any scale, for the benchmarks: a grid of community polygons with
//! jittered borders that tile a ~43 × 56 km box around Beijing (116.4, 39.9) — more communities
//! are smaller ones — sub-districts and districts over them, departments with rules at every
//! level, 30 categories, and volunteers uniform in the box. Every generator takes its own
//! ChaCha8 seed, so runs are comparable.

use std::path::PathBuf;

use geo::{Coord, LineString, MultiPolygon, Polygon};
use jiff::Timestamp;
use linkbus_geo_data::{Area, Category, Community, Department, Departments, Duty, Manifest, Region};
use linkbus_wire::{CaseReport, Datum, JurisdictionLevel, Location, SourceSystem, VolunteerStatus};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const CENTRE_LON: f64 = 116.4;
const CENTRE_LAT: f64 = 39.9;
/// Half the side of the box that the grid of communities and the volunteers both cover, degrees
/// (≈ 43 × 56 km at Beijing's latitude).
const HALF_SIDE: f64 = 0.25;
/// The volunteers' skills.
pub const SKILLS: [&str; 5] = ["first_aid", "elderly_care", "cleanup", "translation", "driving"];
/// Categories in [`categories`].
pub const CATEGORIES: usize = 30;
/// Vertices of each community of the synthetic city the benchmarks route in (the lookup
/// benchmarks also try more).
pub const VERTICES: usize = 64;
/// The region's area code, where the city-wide department's rule applies.
pub const REGION_AREA: &str = "beijing-synthetic";

/// A seeded random generator.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// `n` points uniform in a lon/lat box.
pub fn points(seed: u64, n: usize, min: Coord, max: Coord) -> Vec<(f64, f64)> {
    let mut rng = rng(seed);
    (0..n).map(|_| (rng.random_range(min.x..max.x), rng.random_range(min.y..max.y))).collect()
}

/// Id of category `n`: `cat_00` … `cat_29`.
pub fn category_id(n: usize) -> String {
    format!("cat_{n:02}")
}

fn sub_district_code(n: usize) -> String {
    format!("s{n:03}")
}

fn district_code(n: usize) -> String {
    format!("d{n:02}")
}

/// Synthetic communities on a grid, with their sub-district (10 × 10 blocks of cells) and
/// district (columns of 10 blocks) numbers.
pub struct Grid {
    /// The communities, row by row.
    pub communities: Vec<Community>,
    /// Each community's sub-district number.
    pub sub_district: Vec<usize>,
    /// Each community's district number.
    pub district: Vec<usize>,
    /// South-west corner of the grid.
    pub min: Coord,
    /// North-east corner of the grid.
    pub max: Coord,
}

/// Columns and rows of a grid of `n` cells: the divisor of `n` nearest its square root.
fn grid_dims(n: usize) -> (usize, usize) {
    let mut rows = n.isqrt().max(1);
    while !n.is_multiple_of(rows) {
        rows -= 1;
    }
    (n / rows, rows)
}

/// `n` communities, each a polygon of `vertices` vertices (a multiple of 4, at least 4) filling
/// its grid cell. Whatever `n`, the grid covers the same box (the volunteers' one, for a square
/// `n`), so more communities means smaller ones, not a bigger city: 10 000 are ≈ 430 × 555 m.
/// The interior vertices of every cell side are jittered across it, by the same amount for the
/// two cells sharing the side and with coordinates computed the same way, so the cells tile
/// exactly with wiggly borders (and overlapping envelopes, as real ones have).
pub fn grid(n: usize, vertices: usize) -> Grid {
    let side = (vertices / 4).max(1);
    let (cols, rows) = grid_dims(n);
    let cell = 2.0 * HALF_SIDE / cols.max(rows) as f64;
    let step = cell / side as f64;
    let interior = side - 1;
    let mut rng = rng(1);
    // Less than a step, so that sides meeting at a corner cannot cross.
    let mut jitter =
        |count: usize| -> Vec<f64> { (0..count).map(|_| rng.random_range(-0.4 * step..0.4 * step)).collect() };
    let horizontal = jitter((rows + 1) * cols * interior);
    let vertical = jitter(rows * (cols + 1) * interior);
    // Offset of vertex k of the bottom side of cell (row, col), across it (corners stay put).
    let h = |row: usize, col: usize, k: usize| {
        if k == 0 || k == side { 0.0 } else { horizontal[(row * cols + col) * interior + k - 1] }
    };
    // Offset of vertex k of the left side of cell (row, col).
    let v = |row: usize, col: usize, k: usize| {
        if k == 0 || k == side { 0.0 } else { vertical[(row * (cols + 1) + col) * interior + k - 1] }
    };
    let (x0, y0) = (CENTRE_LON - cols as f64 * cell / 2.0, CENTRE_LAT - rows as f64 * cell / 2.0);
    let x = |i: usize| x0 + i as f64 * step;
    let y = |j: usize| y0 + j as f64 * step;
    let s = side;
    let block_cols = cols.div_ceil(10);

    let mut grid = Grid {
        communities: Vec::with_capacity(n),
        sub_district: Vec::with_capacity(n),
        district: Vec::with_capacity(n),
        min: Coord { x: x(0), y: y(0) },
        max: Coord { x: x(cols * s), y: y(rows * s) },
    };
    for row in 0..rows {
        for col in 0..cols {
            let mut ring = Vec::with_capacity(4 * s + 1);
            ring.extend((0..s).map(|k| Coord { x: x(col * s + k), y: y(row * s) + h(row, col, k) }));
            ring.extend((0..s).map(|k| Coord { x: x((col + 1) * s) + v(row, col + 1, k), y: y(row * s + k) }));
            ring.extend((1..=s).rev().map(|k| Coord { x: x(col * s + k), y: y((row + 1) * s) + h(row + 1, col, k) }));
            ring.extend((1..=s).rev().map(|k| Coord { x: x(col * s) + v(row, col, k), y: y(row * s + k) }));
            ring.push(ring[0]);

            let i = row * cols + col;
            let (sub, district) = ((row / 10) * block_cols + col / 10, col / 10);
            grid.communities.push(Community {
                id: format!("c{i:05}"),
                name: format!("Community {i}"),
                sub_district: Some(Area { code: sub_district_code(sub), name: format!("Sub-district {sub}") }),
                district: Area { code: district_code(district), name: format!("District {district}") },
                boundary: MultiPolygon::new(vec![Polygon::new(LineString::new(ring), vec![])]),
            });
            grid.sub_district.push(sub);
            grid.district.push(district);
        }
    }
    grid
}

/// `n` volunteers uniform in [`volunteer_box`], 20% available, each with a uniformly drawn
/// non-empty subset of the 5 skills (so about half have `first_aid`).
pub fn volunteers(n: usize) -> Vec<VolunteerStatus> {
    volunteer_stream(n).collect()
}

/// [`volunteers`] one at a time, without holding them all.
pub fn volunteer_stream(n: usize) -> impl Iterator<Item = VolunteerStatus> {
    let mut rng = rng(2);
    (0..n).map(move |i| {
        let mask: u8 = rng.random_range(1..32);
        VolunteerStatus {
            id: format!("v{i:07}"),
            location: Location {
                lon: CENTRE_LON + rng.random_range(-HALF_SIDE..HALF_SIDE),
                lat: CENTRE_LAT + rng.random_range(-HALF_SIDE..HALF_SIDE),
            },
            available: rng.random_bool(0.2),
            skills: SKILLS
                .iter()
                .enumerate()
                .filter(|(b, _)| mask & (1 << b) != 0)
                .map(|(_, s)| (*s).to_owned())
                .collect(),
        }
    })
}

/// The box the volunteers are in: the extent of a square grid.
pub fn volunteer_box() -> (Coord, Coord) {
    (
        Coord { x: CENTRE_LON - HALF_SIDE, y: CENTRE_LAT - HALF_SIDE },
        Coord { x: CENTRE_LON + HALF_SIDE, y: CENTRE_LAT + HALF_SIDE },
    )
}

/// Departments over a grid of communities, each level's rules on its own categories so a query
/// can aim at a level:
/// - `city`: region-wide, all 30 categories;
/// - `district-m`: category 20 + m % 10 in district m;
/// - `street-k`: category 10 + k % 10 in sub-district k;
/// - `station-j`: communities 10j..10j+10, community i for category i % 10 (one rule each);
/// - `desk`: the catch-all.
pub fn departments(grid: &Grid) -> Departments {
    let department = |id: String, duties: Vec<Duty>| Department {
        name: id.clone(),
        names: Default::default(),
        id,
        parent: None,
        contact: None,
        duties,
    };
    let duty = |category: usize, level: JurisdictionLevel, area: String| Duty {
        categories: vec![category_id(category)],
        level,
        areas: vec![area],
    };
    let mut departments = vec![
        department("desk".into(), vec![]),
        department(
            "city".into(),
            vec![Duty {
                categories: (0..CATEGORIES).map(category_id).collect(),
                level: JurisdictionLevel::Region,
                areas: vec![REGION_AREA.into()],
            }],
        ),
    ];
    let districts = grid.district.iter().max().map_or(0, |m| m + 1);
    departments.extend((0..districts).map(|m| {
        department(format!("district-{m}"), vec![duty(20 + m % 10, JurisdictionLevel::District, district_code(m))])
    }));
    let sub_districts = grid.sub_district.iter().max().map_or(0, |k| k + 1);
    departments.extend((0..sub_districts).map(|k| {
        department(format!("street-{k}"), vec![duty(10 + k % 10, JurisdictionLevel::SubDistrict, sub_district_code(k))])
    }));
    departments.extend(grid.communities.chunks(10).enumerate().map(|(j, communities)| {
        let duties = communities
            .iter()
            .enumerate()
            .map(|(i, c)| duty((10 * j + i) % 10, JurisdictionLevel::Community, c.id.clone()))
            .collect();
        department(format!("station-{j}"), duties)
    }));
    Departments { catch_all: "desk".into(), departments }
}

/// 30 categories; all but every sixth call for one of the 5 skills.
pub fn categories() -> Vec<Category> {
    (0..CATEGORIES)
        .map(|i| Category {
            id: category_id(i),
            name: format!("Category {i}"),
            names: Default::default(),
            system: SourceSystem::ALL[i % 4],
            priority: (i % 4 + 1) as u8,
            volunteer_skill: (i % 6 != 5).then(|| SKILLS[i % 5].to_owned()),
            facility_kind: None,
        })
        .collect()
}

/// The whole region over a grid: its communities, [`departments`] and [`categories`].
pub fn region(grid: Grid) -> Region {
    Region {
        dir: PathBuf::from("synthetic"),
        manifest: Manifest {
            id: REGION_AREA.into(),
            name: "Synthetic Beijing".into(),
            version: "bench".into(),
            effective_date: "2025-01-01".into(),
            time_zone: "Asia/Shanghai".into(),
            region_area: REGION_AREA.into(),
            files: vec![],
        },
        departments: departments(&grid),
        communities: grid.communities,
        categories: categories(),
        facilities: vec![],
        geocodes: Default::default(),
    }
}

/// `n` case reports at points uniform in the box `min`–`max`, each of a random category of
/// `region`.
pub fn cases(seed: u64, n: usize, region: &Region, min: Coord, max: Coord) -> Vec<CaseReport> {
    let mut rng = rng(seed + 1);
    points(seed, n, min, max)
        .into_iter()
        .enumerate()
        .map(|(i, (lon, lat))| {
            let category = &region.categories[rng.random_range(0..region.categories.len())];
            CaseReport {
                system: category.system,
                category: category.id.clone(),
                priority: category.priority,
                location: Location { lon, lat },
                address: None,
                reporter: None,
                description: None,
                source_id: format!("bench-{i}"),
                reported_at: Timestamp::UNIX_EPOCH,
                flags: vec![],
                datum: Datum::Wgs84,
                received_location: None,
                area: None,
                media_url: None,
            }
        })
        .collect()
}
