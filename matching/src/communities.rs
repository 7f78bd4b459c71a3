//! Which community a point is in: an R-tree of the envelopes of every polygon part, then an
//! exact point-in-polygon test on the few candidates; outside them all, the nearest boundary
//! within a tolerance, else unmatched.
//!
//! Real boundaries run to tens of thousands of vertices, and point-in-polygon is linear in
//! them: at load, a part with more than [`MAX_PIECE_VERTICES`] is cut in halves across its
//! longer side, again and again, until every piece is small. A point strictly inside a piece
//! is inside the community; one on a piece's boundary (which may be a cut) is decided on the
//! whole part; distances to a community are the least over its pieces, which for a point
//! outside it is the distance to its real boundary.

use geo::coordinate_position::CoordPos;
use geo::{
    BooleanOps, BoundingRect, Closest, CoordinatePosition, CoordsIter, HaversineClosestPoint, Point, Polygon, Rect,
};
use linkbus_geo_data::Community;
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{AABB, RTree};

use crate::geodesy;

/// Where a point fell.
#[derive(Debug, Clone, PartialEq)]
pub enum Located {
    /// Strictly inside this community (index into [`CommunityIndex::communities`]).
    Inside(usize),
    /// On the boundary of these communities, lowest id first.
    OnBorder(Vec<usize>),
    /// Outside all, within tolerance of these, nearest first, with their distances in metres.
    Nearest(Vec<(usize, f64)>),
    /// Outside all and beyond the tolerance.
    Unmatched,
}

/// Parts with more vertices than this are cut into pieces at load.
pub const MAX_PIECE_VERTICES: usize = 256;
/// How many times a part may be halved (2^12 pieces at most).
const MAX_CUTS: usize = 12;

/// A piece of a community's polygon part.
#[derive(Debug, Clone)]
struct Piece {
    community: usize,
    part: usize,
    polygon: Polygon<f64>,
    /// True when the piece is a cut of its part (its boundary may run through the inside).
    cut: bool,
}

type Entry = GeomWithData<Rectangle<[f64; 2]>, usize>;

/// The community index.
#[derive(Debug, Clone)]
pub struct CommunityIndex {
    communities: Vec<Community>,
    pieces: Vec<Piece>,
    tree: RTree<Entry>,
    tolerance_m: f64,
}

impl CommunityIndex {
    /// Indexes `communities`; a point outside every one but within `tolerance_m` metres of one
    /// is located to the nearest.
    pub fn new(communities: Vec<Community>, tolerance_m: f64) -> Self {
        Self::with_max_piece_vertices(communities, tolerance_m, MAX_PIECE_VERTICES)
    }

    /// [`CommunityIndex::new`], cutting parts into pieces of at most about `max_vertices`
    /// (`usize::MAX`: never cut, for comparison).
    pub fn with_max_piece_vertices(communities: Vec<Community>, tolerance_m: f64, max_vertices: usize) -> Self {
        let mut pieces = Vec::new();
        for (c, community) in communities.iter().enumerate() {
            for (p, polygon) in community.boundary.0.iter().enumerate() {
                let mut cut = Vec::new();
                split(polygon, max_vertices, MAX_CUTS, &mut cut);
                let is_cut = cut.len() > 1;
                pieces.extend(cut.into_iter().map(|polygon| Piece { community: c, part: p, polygon, cut: is_cut }));
            }
        }
        let entries = pieces
            .iter()
            .enumerate()
            .filter_map(|(i, piece)| {
                let rect = piece.polygon.bounding_rect()?;
                let (min, max) = (rect.min(), rect.max());
                Some(Entry::new(Rectangle::from_corners([min.x, min.y], [max.x, max.y]), i))
            })
            .collect();
        Self { communities, pieces, tree: RTree::bulk_load(entries), tolerance_m }
    }

    /// How many pieces the parts were cut into (as many as parts when none was big).
    pub fn pieces(&self) -> usize {
        self.pieces.len()
    }

    /// Every community, in load order; [`Located`] indexes into this.
    pub fn communities(&self) -> &[Community] {
        &self.communities
    }

    /// The tolerance for points just outside.
    pub fn tolerance_m(&self) -> f64 {
        self.tolerance_m
    }

    /// Locates a WGS-84 point.
    pub fn locate(&self, lon: f64, lat: f64) -> Located {
        let coord = geo::coord! { x: lon, y: lat };
        let mut on_border = Vec::new();
        for entry in self.tree.locate_all_at_point(&[lon, lat]) {
            let piece = &self.pieces[entry.data];
            let (c, p) = (piece.community, piece.part);
            let mut position = piece.polygon.coordinate_position(&coord);
            if position == CoordPos::OnBoundary && piece.cut {
                position = self.communities[c].boundary.0[p].coordinate_position(&coord);
            }
            match position {
                CoordPos::Inside => return Located::Inside(c),
                CoordPos::OnBoundary => on_border.push(c),
                CoordPos::Outside => {}
            }
        }
        if !on_border.is_empty() {
            on_border.sort_by(|a, b| self.communities[*a].id.cmp(&self.communities[*b].id));
            on_border.dedup();
            return Located::OnBorder(on_border);
        }
        self.nearest_within_tolerance(lon, lat)
    }

    fn nearest_within_tolerance(&self, lon: f64, lat: f64) -> Located {
        let best = self.within(lon, lat, self.tolerance_m, None);
        if best.is_empty() { Located::Unmatched } else { Located::Nearest(best) }
    }

    /// The communities other than `inside` whose boundary is within `radius_m` metres of the
    /// point, nearest first, with their distances: the other candidates of a point near a border.
    pub fn near(&self, lon: f64, lat: f64, radius_m: f64, inside: usize) -> Vec<(usize, f64)> {
        self.within(lon, lat, radius_m, Some(inside))
    }

    /// Communities (but `except`) whose boundary is within `radius_m` of the point, nearest first.
    fn within(&self, lon: f64, lat: f64, radius_m: f64, except: Option<usize>) -> Vec<(usize, f64)> {
        if radius_m <= 0.0 {
            return Vec::new();
        }
        let (dlon, dlat) = geodesy::metres_to_degrees(radius_m, lat);
        let search = AABB::from_corners([lon - dlon, lat - dlat], [lon + dlon, lat + dlat]);
        let point = Point::new(lon, lat);
        let mut best: Vec<(usize, f64)> = Vec::new();
        for entry in self.tree.locate_in_envelope_intersecting(&search) {
            let piece = &self.pieces[entry.data];
            let c = piece.community;
            if Some(c) == except {
                continue;
            }
            let closest = match piece.polygon.haversine_closest_point(&point) {
                Closest::SinglePoint(q) | Closest::Intersection(q) => q,
                Closest::Indeterminate => continue,
            };
            let d = geodesy::haversine_m(lon, lat, closest.x(), closest.y());
            if d > radius_m {
                continue;
            }
            match best.iter_mut().find(|(b, _)| *b == c) {
                Some(seen) => seen.1 = seen.1.min(d),
                None => best.push((c, d)),
            }
        }
        best.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| self.communities[a.0].id.cmp(&self.communities[b.0].id)));
        best
    }
}

/// Cuts `polygon` in halves across its longer side until each piece has at most
/// `max_vertices` (or `cuts` run out), into `out`.
fn split(polygon: &Polygon<f64>, max_vertices: usize, cuts: usize, out: &mut Vec<Polygon<f64>>) {
    let Some(rect) = polygon.bounding_rect().filter(|_| cuts > 0 && polygon.coords_count() > max_vertices) else {
        out.push(polygon.clone());
        return;
    };
    let (min, max) = (rect.min(), rect.max());
    let halves = if rect.width() >= rect.height() {
        let mid = (min.x + max.x) / 2.0;
        [Rect::new(min, geo::coord! { x: mid, y: max.y }), Rect::new(geo::coord! { x: mid, y: min.y }, max)]
    } else {
        let mid = (min.y + max.y) / 2.0;
        [Rect::new(min, geo::coord! { x: max.x, y: mid }), Rect::new(geo::coord! { x: min.x, y: mid }, max)]
    };
    for half in halves {
        for piece in polygon.intersection(&half.to_polygon()) {
            split(&piece, max_vertices, cuts - 1, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::{MultiPolygon, Polygon, polygon};
    use linkbus_geo_data::Area;

    fn community(id: &str, polygon: Polygon<f64>) -> Community {
        Community {
            id: id.into(),
            name: id.into(),
            sub_district: None,
            district: Area { code: "d".into(), name: "d".into() },
            boundary: MultiPolygon::new(vec![polygon]),
        }
    }

    /// Two squares side by side sharing the edge x = 1; the left one has a hole.
    fn index() -> CommunityIndex {
        let left = polygon!(
            exterior: [(x: 0.0, y: 0.0), (x: 0.01, y: 0.0), (x: 0.01, y: 0.01), (x: 0.0, y: 0.01), (x: 0.0, y: 0.0)],
            interiors: [[(x: 0.004, y: 0.004), (x: 0.006, y: 0.004), (x: 0.006, y: 0.006), (x: 0.004, y: 0.006), (x: 0.004, y: 0.004)]],
        );
        let right =
            polygon![(x: 0.01, y: 0.0), (x: 0.02, y: 0.0), (x: 0.02, y: 0.01), (x: 0.01, y: 0.01), (x: 0.01, y: 0.0)];
        CommunityIndex::new(vec![community("left", left), community("right", right)], 100.0)
    }

    #[test]
    fn inside_border_hole_tolerance_and_far() {
        let idx = index();
        assert_eq!(idx.locate(0.002, 0.002), Located::Inside(0));
        assert_eq!(idx.locate(0.015, 0.005), Located::Inside(1));
        assert_eq!(idx.locate(0.01, 0.005), Located::OnBorder(vec![0, 1]));
        // In the hole: 0.001° ≈ 111 m from the hole's edge, beyond the 100 m tolerance.
        assert_eq!(idx.locate(0.005, 0.005), Located::Unmatched);
        // Just in the hole, 0.0005° ≈ 56 m from its edge: nearest is the holed community itself.
        match idx.locate(0.0045, 0.005) {
            Located::Nearest(hits) => {
                assert_eq!(hits[0].0, 0);
                assert!((hits[0].1 - 55.6).abs() < 1.0, "{hits:?}");
            }
            other => panic!("{other:?}"),
        }
        // 0.0005° south of the shared corner: both are about 56 m away.
        match idx.locate(0.01, -0.0005) {
            Located::Nearest(hits) => assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>().len(), 2),
            other => panic!("{other:?}"),
        }
        assert_eq!(idx.locate(0.05, 0.05), Located::Unmatched);
    }

    /// A 40,000-vertex star-shaped ring (a real district boundary's size) is cut into small
    /// pieces, and locating random points gives exactly what the uncut polygon says.
    #[test]
    fn big_polygons_are_cut_into_small_pieces_that_locate_the_same() {
        use rand::{RngExt, SeedableRng};
        let n = 40_000;
        let ring: Vec<geo::Coord<f64>> = (0..=n)
            .map(|i| {
                let a = std::f64::consts::TAU * (i % n) as f64 / n as f64;
                let r = 0.05 * (1.0 + 0.3 * (7.0 * a).sin() + 0.05 * (97.0 * a).cos());
                geo::coord! { x: 116.4 + r * a.cos(), y: 39.9 + r * a.sin() }
            })
            .collect();
        let star = Polygon::new(geo::LineString::new(ring), vec![]);
        let big = community("big", star.clone());
        let cut = CommunityIndex::new(vec![big.clone()], 0.0);
        let whole = CommunityIndex::with_max_piece_vertices(vec![big], 0.0, usize::MAX);
        assert_eq!(whole.pieces(), 1);
        assert!(cut.pieces() > 100, "{} pieces", cut.pieces());
        assert!(cut.pieces.iter().all(|p| p.polygon.coords_count() <= 2 * MAX_PIECE_VERTICES));
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for _ in 0..2_000 {
            let (lon, lat) = (116.4 + rng.random_range(-0.07..0.07), 39.9 + rng.random_range(-0.07..0.07));
            let expected = match star.coordinate_position(&geo::coord! { x: lon, y: lat }) {
                CoordPos::Inside => Located::Inside(0),
                CoordPos::OnBoundary => Located::OnBorder(vec![0]),
                CoordPos::Outside => Located::Unmatched,
            };
            assert_eq!(cut.locate(lon, lat), expected, "({lon}, {lat})");
            assert_eq!(whole.locate(lon, lat), expected);
        }
    }

    #[test]
    fn near_finds_the_other_side_of_a_border_within_the_radius() {
        let idx = index();
        // 0.0002° ≈ 22 m west of the shared edge, inside the left square.
        assert_eq!(idx.locate(0.0098, 0.002), Located::Inside(0));
        let near = idx.near(0.0098, 0.002, 30.0, 0);
        assert_eq!(near.len(), 1);
        assert_eq!(near[0].0, 1);
        assert!((near[0].1 - 22.2).abs() < 1.0, "{near:?}");
        assert!(idx.near(0.0098, 0.002, 20.0, 0).is_empty());
        assert!(idx.near(0.002, 0.002, 30.0, 0).is_empty());
    }

    /// A `width` × `height` rectangle from the origin with `per_side` vertices on each side,
    /// every other one a little inside (so that no cut can merge them, as it merges collinear
    /// ones): its bounding box is the rectangle's.
    fn dense_rectangle(width: f64, height: f64, per_side: usize) -> Polygon<f64> {
        let corners = [(0.0, 0.0), (width, 0.0), (width, height), (0.0, height), (0.0, 0.0)];
        let mut ring = Vec::new();
        for pair in corners.windows(2) {
            let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
            // Inward: to the left of the edge, the ring running anticlockwise.
            let (nx, ny) = (-(y1 - y0).signum(), (x1 - x0).signum());
            for i in 0..per_side {
                let (t, dent) = (i as f64 / per_side as f64, if i % 2 == 1 { 1e-5 } else { 0.0 });
                ring.push(geo::coord! { x: x0 + t * (x1 - x0) + dent * nx, y: y0 + t * (y1 - y0) + dent * ny });
            }
        }
        ring.push(ring[0]);
        Polygon::new(geo::LineString::new(ring), vec![])
    }

    /// The bounding boxes of what `split` cuts `polygon` into, in order, rounded to 1e-9°
    /// (a cut moves vertices by about 1e-11°).
    fn split_boxes(polygon: &Polygon<f64>, max_vertices: usize, cuts: usize) -> Vec<[f64; 4]> {
        let mut out = Vec::new();
        split(polygon, max_vertices, cuts, &mut out);
        let round = |v: f64| (v * 1e9).round() / 1e9;
        out.iter()
            .map(|piece| {
                let rect = piece.bounding_rect().expect("a piece is not empty");
                [rect.min().x, rect.min().y, rect.max().x, rect.max().y].map(round)
            })
            .collect()
    }

    #[test]
    fn a_cut_halves_the_longer_side_and_a_square_across_its_width() {
        let wide = dense_rectangle(0.02, 0.01, 100);
        assert_eq!(split_boxes(&wide, 4, 1), [[0.0, 0.0, 0.01, 0.01], [0.01, 0.0, 0.02, 0.01]]);
        let tall = dense_rectangle(0.01, 0.02, 100);
        assert_eq!(split_boxes(&tall, 4, 1), [[0.0, 0.0, 0.01, 0.01], [0.0, 0.01, 0.01, 0.02]]);
        let square = dense_rectangle(0.02, 0.02, 100);
        assert_eq!(split_boxes(&square, 4, 1), [[0.0, 0.0, 0.01, 0.02], [0.01, 0.0, 0.02, 0.02]]);
        // Twice: the halves of a 4:1 one are 2:1, each cut across its width in turn.
        assert_eq!(
            split_boxes(&dense_rectangle(0.04, 0.01, 100), 4, 2),
            [[0.0, 0.0, 0.01, 0.01], [0.01, 0.0, 0.02, 0.01], [0.02, 0.0, 0.03, 0.01], [0.03, 0.0, 0.04, 0.01]]
        );
    }

    #[test]
    fn a_part_is_cut_only_while_it_has_more_vertices_than_allowed_and_cuts_are_left() {
        let rectangle = dense_rectangle(0.02, 0.01, 100);
        let n = rectangle.coords_count();
        assert_eq!(split_boxes(&rectangle, n, MAX_CUTS).len(), 1, "exactly as many vertices as allowed");
        assert_eq!(split_boxes(&rectangle, n - 1, MAX_CUTS).len(), 2, "one too many");
        assert_eq!(split_boxes(&rectangle, 4, 0).len(), 1, "no cut left");
        assert_eq!(split_boxes(&rectangle, 4, 3).len(), 8, "three cuts, however many vertices remain");
        // Small parts are left whole, however many cuts are allowed.
        assert_eq!(index().pieces(), 2);
        assert!(index().pieces.iter().all(|piece| !piece.cut));
    }

    #[test]
    fn the_pieces_of_a_part_cover_it_exactly_and_say_they_are_cuts() {
        use geo::Area as _;
        let rectangle = dense_rectangle(0.02, 0.01, 400);
        let idx = CommunityIndex::new(vec![community("long", rectangle.clone())], 0.0);
        assert!(idx.pieces() > 4, "{} pieces", idx.pieces());
        assert!(idx.pieces.iter().all(|piece| piece.cut && piece.polygon.coords_count() <= MAX_PIECE_VERTICES));
        let area: f64 = idx.pieces.iter().map(|piece| piece.polygon.unsigned_area()).sum();
        assert!((area - rectangle.unsigned_area()).abs() < 1e-12, "{area}");
        // On the first cut, at x = 0.01, and on later ones: inside the part, as the whole says.
        for (lon, lat) in [(0.01, 0.003), (0.005, 0.007), (0.01, 0.005)] {
            assert_eq!(idx.locate(lon, lat), Located::Inside(0), "({lon}, {lat})");
        }
    }

    #[test]
    fn the_index_keeps_its_communities_and_tolerance() {
        let idx = index();
        assert_eq!(idx.tolerance_m(), 100.0);
        assert_eq!(idx.communities().iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["left", "right"]);
    }

    #[test]
    fn near_reaches_a_boundary_exactly_at_the_radius_but_not_with_none() {
        let idx = index();
        // South-east of the right square's corner (0.02, 0), about 31 m away.
        let d = idx.near(0.0202, -0.0002, 40.0, 0)[0].1;
        assert!((d - 31.4).abs() < 0.1, "{d}");
        assert_eq!(idx.near(0.0202, -0.0002, d, 0), [(1, d)]);
        // On the shared edge, the other side is 0 m away, yet a radius of 0 looks nowhere.
        assert_eq!(idx.near(0.01, 0.005, 0.0, 0), []);
        assert_eq!(idx.near(0.01, 0.005, 1.0, 0), [(1, 0.0)]);
    }

    #[test]
    fn nearest_communities_at_the_same_distance_come_in_id_order_once_each() {
        let west =
            polygon![(x: 0.0, y: 0.0), (x: 0.01, y: 0.0), (x: 0.01, y: 0.01), (x: 0.0, y: 0.01), (x: 0.0, y: 0.0)];
        let east =
            polygon![(x: 0.01, y: 0.0), (x: 0.02, y: 0.0), (x: 0.02, y: 0.01), (x: 0.01, y: 0.01), (x: 0.01, y: 0.0)];
        // Both named either way round, so that the id order is once west to east, once not.
        for (west_id, east_id) in [("a", "b"), ("b", "a")] {
            let communities = vec![community(west_id, west.clone()), community(east_id, east.clone())];
            let idx = CommunityIndex::new(communities, 200.0);
            // South of the corner they share: both are as far.
            match idx.locate(0.01, -0.0005) {
                Located::Nearest(hits) => {
                    let ids: Vec<&str> = hits.iter().map(|h| idx.communities()[h.0].id.as_str()).collect();
                    assert_eq!(ids, ["a", "b"]);
                    assert_eq!(hits[0].1, hits[1].1);
                }
                other => panic!("{other:?}"),
            }
        }
        // A community cut into pieces is listed once, at its nearest piece's distance.
        let long = CommunityIndex::new(vec![community("long", dense_rectangle(0.02, 0.01, 400))], 200.0);
        assert!(long.pieces() > 4);
        match long.locate(0.01, -0.001) {
            Located::Nearest(hits) => {
                assert_eq!(hits.len(), 1, "{hits:?}");
                assert!((hits[0].1 - 111.2).abs() < 0.5, "{hits:?}");
            }
            other => panic!("{other:?}"),
        }
    }
}
