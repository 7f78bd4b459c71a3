//! Which community a point is in: an R-tree of the envelopes of every polygon part, then an
//! exact point-in-polygon test on the few candidates; outside them all, the nearest boundary
//! within a tolerance, else unmatched.

use geo::coordinate_position::CoordPos;
use geo::{BoundingRect, Closest, CoordinatePosition, HaversineClosestPoint, Point};
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

type Entry = GeomWithData<Rectangle<[f64; 2]>, (usize, usize)>;

/// The community index.
#[derive(Debug, Clone)]
pub struct CommunityIndex {
    communities: Vec<Community>,
    tree: RTree<Entry>,
    tolerance_m: f64,
}

impl CommunityIndex {
    /// Indexes `communities`; a point outside every one but within `tolerance_m` metres of one
    /// is located to the nearest.
    pub fn new(communities: Vec<Community>, tolerance_m: f64) -> Self {
        let entries = communities
            .iter()
            .enumerate()
            .flat_map(|(c, community)| {
                community.boundary.0.iter().enumerate().filter_map(move |(p, polygon)| {
                    let rect = polygon.bounding_rect()?;
                    let (min, max) = (rect.min(), rect.max());
                    Some(Entry::new(Rectangle::from_corners([min.x, min.y], [max.x, max.y]), (c, p)))
                })
            })
            .collect();
        Self { communities, tree: RTree::bulk_load(entries), tolerance_m }
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
            let (c, p) = entry.data;
            match self.communities[c].boundary.0[p].coordinate_position(&coord) {
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
            let (c, p) = entry.data;
            if Some(c) == except {
                continue;
            }
            let closest = match self.communities[c].boundary.0[p].haversine_closest_point(&point) {
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
}
