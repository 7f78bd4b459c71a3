//! Benchmarks of the pure matching in `linkbus-routers`:
//!
//! - `community_locate`: point → community ([`CommunityIndex::locate`]) over grids of 100, 1 000
//!   and 10 000 communities of 64 vertices (`grid/N`) and of 256, 1 024 and 4 096 vertices
//!   (`grid_V_vertices/N`), and over the San Francisco neighborhoods when
//!   `geo-data/san-francisco/communities.geojson` exists, and in one 40 000-vertex boundary
//!   cut into pieces at load (`big_cut`) or whole (`big_whole`);
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
//! All data is synthetic and seeded ([`linkbus_bench::synthetic`]), so runs are comparable: a
//! grid of community polygons with jittered borders that tile a ~43 × 56 km box around Beijing
//! (116.4, 39.9), and volunteers uniform in the same box. Each case cycles through 1 024 seeded
//! queries. Indexes are built once per case, lazily, so a filtered run only builds what it uses
//! (building a million-volunteer index takes seconds).
//!
//! Run with `cargo bench -p linkbus-bench --bench matching`; add `-- --quick` for a short run,
//! or a filter such as `-- volunteers_nearest`.

use std::cell::OnceCell;
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use geo::{BoundingRect, Coord, LineString, MultiPolygon, Polygon};
use linkbus_bench::synthetic::{
    self, CATEGORIES, REGION_AREA, SKILLS, VERTICES, category_id, departments, grid, points, rng, volunteer_box,
    volunteers,
};
use linkbus_matching::areas;
use linkbus_matching::communities::CommunityIndex;
use linkbus_matching::departments::{Chosen, DepartmentRules};
use linkbus_matching::geodesy::haversine_m;
use linkbus_matching::{Router, RoutingParams, VolunteerIndex};
use linkbus_wire::{Circle, JurisdictionLevel, Location, VolunteerChoice, VolunteerStatus};
use rand::RngExt;

/// Seeded queries each case cycles through, so that no case times one lucky point.
const QUERIES: usize = 1024;
/// The volunteer search of [`RoutingParams::default`].
const K: usize = 5;
const RADIUS_M: f64 = 3_000.0;
const BORDER_TOLERANCE_M: f64 = 100.0;

/// Endlessly cycles through `items` (not empty).
fn cycle<'a, T>(items: &'a [T]) -> impl FnMut() -> &'a T {
    let mut n = 0;
    move || {
        n = (n + 1) % items.len();
        &items[n]
    }
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

fn community_locate(c: &mut Criterion) {
    let mut group = c.benchmark_group("community_locate");
    // 64 vertices at every scale; longer boundaries (256, 1 024, 4 096 vertices) too.
    let cases =
        [100, 1_000, 10_000].into_iter().flat_map(|n| [VERTICES, 256, 1_024, 4_096].into_iter().map(move |v| (n, v)));
    for (n, vertices) in cases {
        let mut setup = None;
        let name = if vertices == VERTICES { "grid".to_owned() } else { format!("grid_{vertices}_vertices") };
        group.bench_function(BenchmarkId::new(name, n), |b| {
            let (index, queries) = setup.get_or_insert_with(|| {
                let grid = grid(n, vertices);
                let queries = points(3, QUERIES, grid.min, grid.max);
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
        let queries = points(4, QUERIES, rect.min(), rect.max());
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

    // One 40,000-vertex boundary (a real district's size): cut into pieces at load (`cut`)
    // against the whole polygon (`whole`).
    let n = 40_000;
    let ring: Vec<Coord> = (0..=n)
        .map(|i| {
            let a = std::f64::consts::TAU * (i % n) as f64 / n as f64;
            let r = 0.05 * (1.0 + 0.3 * (7.0 * a).sin() + 0.05 * (97.0 * a).cos());
            Coord { x: 116.4 + r * a.cos(), y: 39.9 + r * a.sin() }
        })
        .collect();
    let big = linkbus_geo_data::Community {
        id: "big".into(),
        name: "big".into(),
        sub_district: None,
        district: linkbus_geo_data::Area { code: "d".into(), name: "d".into() },
        boundary: MultiPolygon::new(vec![Polygon::new(LineString::new(ring), vec![])]),
    };
    let queries = points(6, QUERIES, Coord { x: 116.33, y: 39.83 }, Coord { x: 116.47, y: 39.97 });
    for (name, max) in [("cut", linkbus_matching::communities::MAX_PIECE_VERTICES), ("whole", usize::MAX)] {
        let index = CommunityIndex::with_max_piece_vertices(vec![big.clone()], BORDER_TOLERANCE_M, max);
        group.bench_function(BenchmarkId::new(format!("big_{name}"), n), |b| {
            let mut next = cycle(&queries);
            b.iter(|| {
                let &(lon, lat) = next();
                black_box(index.locate(black_box(lon), black_box(lat)))
            });
        });
    }
    group.finish();
}

fn volunteers_nearest(c: &mut Criterion) {
    let mut group = c.benchmark_group("volunteers_nearest");
    let (min, max) = volunteer_box();
    let queries = points(5, QUERIES, min, max);
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
    let grid = grid(10_000, VERTICES);
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
            let grid = grid(10_000, VERTICES);
            let (min, max) = (grid.min, grid.max);
            let region = synthetic::region(grid);
            let router = Router::new(&region, RoutingParams::default());
            let index = VolunteerIndex::from_roster(volunteers(N)).expect("5 skills fit the index");
            let cases = synthetic::cases(8, QUERIES, &region, min, max);
            (router, index, cases)
        });
        let mut next = cycle(cases);
        let offers = linkbus_matching::OfferLedger::new();
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
                let grid = grid(n, VERTICES);
                let queries: Vec<linkbus_wire::Area> = points(5, QUERIES, grid.min, grid.max)
                    .into_iter()
                    .map(|(lon, lat)| linkbus_wire::Area {
                        polygons: vec![],
                        circles: vec![Circle { center: Location { lon, lat }, radius_m: 2_000.0 }],
                        geocodes: vec![],
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
