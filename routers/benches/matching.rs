//! Benchmarks of the pure matching in `linkbus-routers`:
//!
//! - `community_locate`: point → community ([`CommunityIndex::locate`]) over grids of 100, 1 000
//!   and 10 000 communities, and over the San Francisco neighborhoods when
//!   `geo-data/san-francisco/communities.geojson` exists;
//! - `volunteers_nearest`: the 5 nearest available `first_aid` volunteers within 3 km
//!   ([`VolunteerIndex::nearest`], `rtree/N`) against a brute-force haversine scan of a flat
//!   vector of the same volunteers (`linear_scan/N`), for 1 000 to 1 000 000 volunteers;
//! - `volunteers_upsert`: moving a volunteer anywhere in the box (`move`), a few metres
//!   (`nudge`, as most position updates are), and only flipping their availability, in an index
//!   of 1 000 000;
//! - `departments_choose`: category × community → department(s) over ~10 000 community rules,
//!   100 sub-district, 10 district and one region rule, per winning level;
//! - `decide`: the whole [`Router::decide`] on a synthetic region of 10 000 communities with
//!   1 000 000 volunteers;
//! - `broadcast_area`: the communities a 2 km circle (a CAP alert's area) touches
//!   ([`areas::communities_touching`], a scan of every community's bounding box then exact
//!   intersections), over grids of 1 000 and 10 000 communities.
//!
//! All data is synthetic and seeded (ChaCha8), so runs are comparable: a grid of 64-vertex
//! community polygons with jittered borders that tile a ~43 × 56 km box around Beijing
//! (116.4, 39.9), and volunteers uniform in the same box. Each case cycles through 1 024 seeded
//! queries. Indexes are built once per case, lazily, so a filtered run only builds what it uses
//! (building a million-volunteer index takes seconds).
//!
//! Run with `cargo bench -p linkbus-routers --bench matching`; add `-- --quick` for a short run,
//! or a filter such as `-- volunteers_nearest`.

use std::cell::OnceCell;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use geo::{BoundingRect, Coord, LineString, MultiPolygon, Polygon};
use jiff::Timestamp;
use linkbus_bus::wire::{CaseReport, Circle, JurisdictionLevel, Location, VolunteerChoice, VolunteerStatus};
use linkbus_geo_data::{Area, Category, Community, Department, Departments, Duty, Manifest, Region};
use linkbus_routers::areas;
use linkbus_routers::communities::CommunityIndex;
use linkbus_routers::departments::{Chosen, DepartmentRules};
use linkbus_routers::geodesy::haversine_m;
use linkbus_routers::{Router, RoutingParams, VolunteerIndex};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const CENTRE_LON: f64 = 116.4;
const CENTRE_LAT: f64 = 39.9;
/// Side of a community's grid cell, degrees (≈ 430 m × 555 m at Beijing's latitude).
const CELL: f64 = 0.005;
/// Vertices per side of a community polygon: 4 sides, 64 vertices.
const SIDE_VERTICES: usize = 16;
/// Half the side of the volunteers' box, degrees: the extent of the 100 × 100 grid.
const HALF_SIDE: f64 = 0.25;
const SKILLS: [&str; 5] = ["first_aid", "elderly_care", "cleanup", "translation", "driving"];
const CATEGORIES: usize = 30;
const REGION_AREA: &str = "beijing-synthetic";
/// Seeded queries each case cycles through, so that no case times one lucky point.
const QUERIES: usize = 1024;
/// The volunteer search of [`RoutingParams::default`].
const K: usize = 5;
const RADIUS_M: f64 = 3_000.0;
const BORDER_TOLERANCE_M: f64 = 100.0;

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Endlessly cycles through `items` (not empty).
fn cycle<'a, T>(items: &'a [T]) -> impl FnMut() -> &'a T {
    let mut n = 0;
    move || {
        n = (n + 1) % items.len();
        &items[n]
    }
}

/// `QUERIES` points uniform in a lon/lat box.
fn points(seed: u64, min: Coord, max: Coord) -> Vec<(f64, f64)> {
    let mut rng = rng(seed);
    (0..QUERIES).map(|_| (rng.random_range(min.x..max.x), rng.random_range(min.y..max.y))).collect()
}

fn category_id(n: usize) -> String {
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
struct Grid {
    communities: Vec<Community>,
    sub_district: Vec<usize>,
    district: Vec<usize>,
    min: Coord,
    max: Coord,
}

/// Columns and rows of a grid of `n` cells: the divisor of `n` nearest its square root.
fn grid_dims(n: usize) -> (usize, usize) {
    let mut rows = n.isqrt().max(1);
    while !n.is_multiple_of(rows) {
        rows -= 1;
    }
    (n / rows, rows)
}

/// `n` communities, each a 64-vertex polygon filling its grid cell. The interior vertices of
/// every cell side are jittered across it, by the same amount for the two cells sharing the side
/// and with coordinates computed the same way, so the cells tile exactly with wiggly borders
/// (and overlapping envelopes, as real ones have).
fn grid(n: usize) -> Grid {
    let (cols, rows) = grid_dims(n);
    let step = CELL / SIDE_VERTICES as f64;
    let interior = SIDE_VERTICES - 1;
    let mut rng = rng(1);
    // Less than a step, so that sides meeting at a corner cannot cross.
    let mut jitter =
        |count: usize| -> Vec<f64> { (0..count).map(|_| rng.random_range(-0.4 * step..0.4 * step)).collect() };
    let horizontal = jitter((rows + 1) * cols * interior);
    let vertical = jitter(rows * (cols + 1) * interior);
    // Offset of vertex k of the bottom side of cell (row, col), across it (corners stay put).
    let h = |row: usize, col: usize, k: usize| match k {
        0 | SIDE_VERTICES => 0.0,
        k => horizontal[(row * cols + col) * interior + k - 1],
    };
    // Offset of vertex k of the left side of cell (row, col).
    let v = |row: usize, col: usize, k: usize| match k {
        0 | SIDE_VERTICES => 0.0,
        k => vertical[(row * (cols + 1) + col) * interior + k - 1],
    };
    let (x0, y0) = (CENTRE_LON - cols as f64 * CELL / 2.0, CENTRE_LAT - rows as f64 * CELL / 2.0);
    let x = |i: usize| x0 + i as f64 * step;
    let y = |j: usize| y0 + j as f64 * step;
    let s = SIDE_VERTICES;
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

/// `n` volunteers uniform in the box, 20% available, each with a uniformly drawn non-empty
/// subset of the 5 skills (so about half have `first_aid`).
fn volunteers(n: usize) -> Vec<VolunteerStatus> {
    let mut rng = rng(2);
    (0..n)
        .map(|i| {
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
        .collect()
}

fn volunteer_box() -> (Coord, Coord) {
    (
        Coord { x: CENTRE_LON - HALF_SIDE, y: CENTRE_LAT - HALF_SIDE },
        Coord { x: CENTRE_LON + HALF_SIDE, y: CENTRE_LAT + HALF_SIDE },
    )
}

/// One volunteer of the baseline, with the skills as bits of [`SKILLS`].
struct Flat {
    lon: f64,
    lat: f64,
    available: bool,
    skills: u8,
}

/// The baseline the R-tree is measured against: every volunteer in a flat vector, scanned whole
/// for each query; the cheap filters first, then the haversine distance, keeping the `k` nearest.
struct LinearScan<'a> {
    roster: &'a [VolunteerStatus],
    flat: Vec<Flat>,
}

impl<'a> LinearScan<'a> {
    fn new(roster: &'a [VolunteerStatus]) -> Self {
        let flat = roster
            .iter()
            .map(|v| Flat {
                lon: v.location.lon,
                lat: v.location.lat,
                available: v.available,
                skills: SKILLS
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| v.skills.iter().any(|skill| skill == *s))
                    .fold(0, |bits, (b, _)| bits | 1 << b),
            })
            .collect();
        Self { roster, flat }
    }

    fn nearest(&self, lon: f64, lat: f64, skill: &str, k: usize, radius_m: f64) -> Vec<VolunteerChoice> {
        let Some(bit) = SKILLS.iter().position(|s| *s == skill) else {
            return Vec::new();
        };
        if k == 0 {
            return Vec::new();
        }
        let bit = 1u8 << bit;
        let mut best: Vec<(f64, usize)> = Vec::with_capacity(k + 1);
        for (n, v) in self.flat.iter().enumerate() {
            if !v.available || v.skills & bit == 0 {
                continue;
            }
            let d = haversine_m(lon, lat, v.lon, v.lat);
            if d > radius_m || (best.len() == k && d >= best[k - 1].0) {
                continue;
            }
            best.insert(best.partition_point(|(b, _)| *b <= d), (d, n));
            best.truncate(k);
        }
        best.into_iter().map(|(d, n)| VolunteerChoice { id: self.roster[n].id.clone(), distance_m: d }).collect()
    }
}

/// Departments over a grid of communities, each level's rules on its own categories so a query
/// can aim at a level:
/// - `city`: region-wide, all 30 categories;
/// - `district-m`: category 20 + m % 10 in district m;
/// - `street-k`: category 10 + k % 10 in sub-district k;
/// - `station-j`: communities 10j..10j+10, community i for category i % 10 (one rule each);
/// - `desk`: the catch-all.
fn departments(grid: &Grid) -> Departments {
    let department =
        |id: String, duties: Vec<Duty>| Department { name: id.clone(), id, parent: None, contact: None, duties };
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
fn categories() -> Vec<Category> {
    (0..CATEGORIES)
        .map(|i| Category {
            id: category_id(i),
            name: format!("Category {i}"),
            system: linkbus_bus::wire::SourceSystem::ALL[i % 4],
            priority: (i % 4 + 1) as u8,
            volunteer_skill: (i % 6 != 5).then(|| SKILLS[i % 5].to_owned()),
            facility_kind: None,
        })
        .collect()
}

fn community_locate(c: &mut Criterion) {
    let mut group = c.benchmark_group("community_locate");
    for n in [100, 1_000, 10_000] {
        let mut setup = None;
        group.bench_function(BenchmarkId::new("grid", n), |b| {
            let (index, queries) = setup.get_or_insert_with(|| {
                let grid = grid(n);
                let queries = points(3, grid.min, grid.max);
                (CommunityIndex::new(grid.communities, BORDER_TOLERANCE_M), queries)
            });
            let mut next = cycle(queries);
            b.iter(|| {
                let &(lon, lat) = next();
                black_box(index.locate(black_box(lon), black_box(lat)))
            });
        });
    }

    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../geo-data/san-francisco/communities.geojson"));
    if path.exists() {
        let communities = linkbus_geo_data::load_communities(path).expect("load the San Francisco communities");
        let rect = communities
            .iter()
            .filter_map(|c| c.boundary.bounding_rect())
            .reduce(|a, b| {
                geo::Rect::new(
                    Coord { x: a.min().x.min(b.min().x), y: a.min().y.min(b.min().y) },
                    Coord { x: a.max().x.max(b.max().x), y: a.max().y.max(b.max().y) },
                )
            })
            .expect("the San Francisco communities have an extent");
        // Points over the city's bounding box: mostly inside, some in the bay or the ocean.
        let queries = points(4, rect.min(), rect.max());
        let n = communities.len();
        let index = CommunityIndex::new(communities, BORDER_TOLERANCE_M);
        group.bench_function(BenchmarkId::new("san_francisco", n), |b| {
            let mut next = cycle(&queries);
            b.iter(|| {
                let &(lon, lat) = next();
                black_box(index.locate(black_box(lon), black_box(lat)))
            });
        });
    } else {
        println!("community_locate/san_francisco: skipped, {} not found", path.display());
    }
    group.finish();
}

fn volunteers_nearest(c: &mut Criterion) {
    let mut group = c.benchmark_group("volunteers_nearest");
    let (min, max) = volunteer_box();
    let queries = points(5, min, max);
    for n in [1_000, 100_000, 1_000_000] {
        let roster_cell = OnceCell::new();
        let roster = || roster_cell.get_or_init(|| volunteers(n));
        let mut index = None;
        group.bench_function(BenchmarkId::new("rtree", n), |b| {
            let index =
                index.get_or_insert_with(|| VolunteerIndex::from_roster(roster()).expect("5 skills fit the index"));
            let mut next = cycle(&queries);
            b.iter(|| {
                let &(lon, lat) = next();
                black_box(index.nearest(black_box(lon), black_box(lat), "first_aid", K, RADIUS_M))
            });
        });
        let mut scan = None;
        group.bench_function(BenchmarkId::new("linear_scan", n), |b| {
            let scan = scan.get_or_insert_with(|| {
                let scan = LinearScan::new(roster());
                // The baseline must find what the index finds (which rounds distances to the
                // centimetre; ties may come in another order).
                if let Some(index) = &index {
                    for &(lon, lat) in &queries[..32] {
                        let (want, _) = index.nearest(lon, lat, "first_aid", K, RADIUS_M);
                        let got = scan.nearest(lon, lat, "first_aid", K, RADIUS_M);
                        assert_eq!(got.len(), want.len(), "linear scan and index disagree at ({lon}, {lat})");
                        for (g, w) in got.iter().zip(&want) {
                            assert!((g.distance_m - w.distance_m).abs() < 0.01, "{got:?} vs {want:?}");
                        }
                    }
                }
                scan
            });
            let mut next = cycle(&queries);
            b.iter(|| {
                let &(lon, lat) = next();
                black_box(scan.nearest(black_box(lon), black_box(lat), "first_aid", K, RADIUS_M))
            });
        });
    }
    group.finish();
}

/// The updates of one upsert case.
struct Updates {
    moves: Vec<VolunteerStatus>,
    nudges: Vec<VolunteerStatus>,
    flips: Vec<VolunteerStatus>,
}

/// The index for the upsert cases, then the updates each case cycles through: every volunteer
/// picked has two statuses, the first half of the cycle holding one and the second half the
/// other, so each upsert changes something. Moves pick from the first third of the roster,
/// nudges from the second, availability flips from the last, so the cases do not disturb each
/// other.
fn upsert_setup(n: usize) -> (VolunteerIndex, Updates) {
    let roster = volunteers(n);
    let index = VolunteerIndex::from_roster(&roster).expect("5 skills fit the index");
    let mut rng = rng(6);
    let picks = QUERIES / 2;
    let moved: Vec<&VolunteerStatus> = (0..picks).map(|_| &roster[rng.random_range(0..n / 3)]).collect();
    let (min, max) = volunteer_box();
    let mut moves = Vec::with_capacity(QUERIES);
    for _ in 0..2 {
        moves.extend(moved.iter().map(|v| VolunteerStatus {
            location: Location { lon: rng.random_range(min.x..max.x), lat: rng.random_range(min.y..max.y) },
            ..(*v).clone()
        }));
    }
    // Up to about 10 m each way.
    let nudged: Vec<&VolunteerStatus> = (0..picks).map(|_| &roster[rng.random_range(n / 3..2 * n / 3)]).collect();
    let mut nudges: Vec<VolunteerStatus> = nudged
        .iter()
        .map(|v| VolunteerStatus {
            location: Location {
                lon: v.location.lon + rng.random_range(-0.0001..0.0001),
                lat: v.location.lat + rng.random_range(-0.0001..0.0001),
            },
            ..(*v).clone()
        })
        .collect();
    nudges.extend(nudged.iter().map(|v| (*v).clone()));
    let flipped: Vec<&VolunteerStatus> = (0..picks).map(|_| &roster[rng.random_range(2 * n / 3..n)]).collect();
    let mut flips: Vec<VolunteerStatus> =
        flipped.iter().map(|v| VolunteerStatus { available: !v.available, ..(*v).clone() }).collect();
    flips.extend(flipped.iter().map(|v| (*v).clone()));
    (index, Updates { moves, nudges, flips })
}

fn volunteers_upsert(c: &mut Criterion) {
    const N: usize = 1_000_000;
    let mut group = c.benchmark_group("volunteers_upsert");
    let mut setup = None;
    group.bench_function(BenchmarkId::new("move", N), |b| {
        let (index, updates) = setup.get_or_insert_with(|| upsert_setup(N));
        let mut next = cycle(&updates.moves);
        b.iter(|| index.upsert(black_box(next())).expect("known skills"));
    });
    group.bench_function(BenchmarkId::new("nudge", N), |b| {
        let (index, updates) = setup.get_or_insert_with(|| upsert_setup(N));
        let mut next = cycle(&updates.nudges);
        b.iter(|| index.upsert(black_box(next())).expect("known skills"));
    });
    group.bench_function(BenchmarkId::new("availability_only", N), |b| {
        let (index, updates) = setup.get_or_insert_with(|| upsert_setup(N));
        let mut next = cycle(&updates.flips);
        b.iter(|| index.upsert(black_box(next())).expect("known skills"));
    });
    group.finish();
}

/// Which department rule a `departments_choose` case must hit.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Wins {
    Level(JurisdictionLevel),
    CatchAll,
    /// A mix of levels: not checked.
    Any,
}

fn departments_choose(c: &mut Criterion) {
    let mut group = c.benchmark_group("departments_choose");
    let grid = grid(10_000);
    let rules = DepartmentRules::new(departments(&grid), REGION_AREA);
    let mut rng = rng(7);
    let mut mix = self::rng(10);
    // `QUERIES` (category, community) pairs, random communities, the category chosen for each.
    let mut queries = |category: &mut dyn FnMut(usize) -> String| -> Vec<(String, usize)> {
        (0..QUERIES)
            .map(|_| {
                let i = rng.random_range(0..grid.communities.len());
                (category(i), i)
            })
            .collect()
    };
    let cases = [
        ("community", Wins::Level(JurisdictionLevel::Community), queries(&mut |i| category_id(i % 10))),
        (
            "sub_district",
            Wins::Level(JurisdictionLevel::SubDistrict),
            queries(&mut |i| category_id(10 + grid.sub_district[i] % 10)),
        ),
        (
            "district",
            Wins::Level(JurisdictionLevel::District),
            queries(&mut |i| category_id(20 + grid.district[i] % 10)),
        ),
        // Another community's community-level category: no rule below the region's.
        ("region", Wins::Level(JurisdictionLevel::Region), queries(&mut |i| category_id((i + 1) % 10))),
        ("catch_all", Wins::CatchAll, queries(&mut |_| "not_a_category".to_owned())),
        ("mixed", Wins::Any, queries(&mut |_| category_id(mix.random_range(0..CATEGORIES)))),
    ];
    for (name, wins, queries) in &cases {
        if *wins != Wins::Any {
            for (category, i) in queries {
                let got = match rules.choose(category, Some(&grid.communities[*i])) {
                    Chosen::ByRule { level, .. } => Wins::Level(level),
                    Chosen::CatchAll => Wins::CatchAll,
                };
                assert_eq!(got, *wins, "{name}: {category} in {}", grid.communities[*i].id);
            }
        }
        group.bench_function(*name, |b| {
            let mut next = cycle(queries);
            b.iter(|| {
                let (category, i) = next();
                black_box(rules.choose(black_box(category), Some(&grid.communities[*i])));
            });
        });
    }
    group.finish();
}

fn decide(c: &mut Criterion) {
    const N: usize = 1_000_000;
    let mut group = c.benchmark_group("decide");
    let mut setup = None;
    group.bench_function(BenchmarkId::new("volunteers", N), |b| {
        let (router, index, cases) = setup.get_or_insert_with(|| {
            let grid = grid(10_000);
            let region = Region {
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
            };
            let router = Router::new(&region, RoutingParams::default());
            let index = VolunteerIndex::from_roster(&volunteers(N)).expect("5 skills fit the index");
            let mut rng = rng(8);
            let cases: Vec<CaseReport> = points(9, grid.min, grid.max)
                .into_iter()
                .enumerate()
                .map(|(n, (lon, lat))| {
                    let category = &region.categories[rng.random_range(0..CATEGORIES)];
                    CaseReport {
                        system: category.system,
                        category: category.id.clone(),
                        priority: category.priority,
                        location: Location { lon, lat },
                        address: None,
                        reporter: None,
                        description: None,
                        source_id: format!("bench-{n}"),
                        reported_at: Timestamp::UNIX_EPOCH,
                        flags: vec![],
                        datum: linkbus_bus::wire::Datum::Wgs84,
                        received_location: None,
                        area: None,
                    }
                })
                .collect();
            (router, index, cases)
        });
        let mut next = cycle(cases);
        let offers = linkbus_routers::OfferLedger::new();
        b.iter(|| black_box(router.decide(black_box(next()), index, &offers, 0)));
    });
    group.finish();
}

fn broadcast_area(c: &mut Criterion) {
    let mut group = c.benchmark_group("broadcast_area");
    for n in [1_000, 10_000] {
        let mut setup = None;
        group.bench_function(BenchmarkId::new("circle_2km", n), |b| {
            let (index, queries) = setup.get_or_insert_with(|| {
                let grid = grid(n);
                let queries: Vec<linkbus_bus::wire::Area> = points(5, grid.min, grid.max)
                    .into_iter()
                    .map(|(lon, lat)| linkbus_bus::wire::Area {
                        polygons: vec![],
                        circles: vec![Circle { center: Location { lon, lat }, radius_m: 2_000.0 }],
                    })
                    .collect();
                (CommunityIndex::new(grid.communities, BORDER_TOLERANCE_M), queries)
            });
            let mut next = cycle(queries);
            b.iter(|| black_box(areas::communities_touching(index, black_box(next()))));
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1))
}

criterion_group! {
    name = benches;
    config = config();
    targets = community_locate, volunteers_nearest, volunteers_upsert, departments_choose, decide, broadcast_area
}
criterion_main!(benches);
