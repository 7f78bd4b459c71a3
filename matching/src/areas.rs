//! Which communities a broadcast's area touches: the area's polygons and circles (a circle as a
//! 64-sided polygon on the sphere, one of radius 0 as its point: the community containing it,
//! CAP's point alert) against every community's boundary, bounding boxes first,
//! then an exact intersection test; and its geocodes through the region's geocode table
//! ([`Geocodes`]): a code naming a community, a sub-district or a district reaches every
//! community within it. Linear in the communities, which is fine for alerts (rare, and a city
//! holds thousands of communities, not millions).

use geo::{
    BoundingRect, Destination, Geometry, GeometryCollection, Haversine, Intersects, LineString, Point, Polygon, Rect,
};
use linkbus_geo_data::{Community, Geocodes, Region};
use linkbus_wire::{Area, Geocode, Location};

use crate::communities::CommunityIndex;

/// Sides of the polygon a circle is drawn as; its edges are within 0.12 % of the radius.
const CIRCLE_SIDES: usize = 64;

/// The area as geo shapes: polygons, circles drawn as polygons, circles of radius 0 as points.
pub fn shapes(area: &Area) -> GeometryCollection<f64> {
    let ring = |points: &[Location]| LineString::from(points.iter().map(|p| (p.lon, p.lat)).collect::<Vec<_>>());
    let mut shapes: Vec<Geometry<f64>> = area.polygons.iter().map(|r| Polygon::new(ring(r), vec![]).into()).collect();
    for c in &area.circles {
        let centre = Point::new(c.center.lon, c.center.lat);
        if c.radius_m == 0.0 {
            shapes.push(centre.into());
            continue;
        }
        let mut vertices: Vec<(f64, f64)> = (0..CIRCLE_SIDES)
            .map(|i| {
                let p = Haversine.destination(centre, 360.0 * i as f64 / CIRCLE_SIDES as f64, c.radius_m);
                (p.x(), p.y())
            })
            .collect();
        vertices.push(vertices[0]);
        shapes.push(Polygon::new(LineString::from(vertices), vec![]).into());
    }
    GeometryCollection::new_from(shapes)
}

/// Indexes (into [`CommunityIndex::communities`]) of the communities whose boundary the area
/// intersects (overlaps, contains, lies within or touches), in id order.
pub fn communities_touching(index: &CommunityIndex, area: &Area) -> Vec<usize> {
    let shapes = shapes(area);
    let Some(bounds) = shapes.bounding_rect() else { return vec![] };
    let mut hits: Vec<usize> = index
        .communities()
        .iter()
        .enumerate()
        .filter(|(_, c)| c.boundary.bounding_rect().is_some_and(|b: Rect<f64>| b.intersects(&bounds)))
        .filter(|(_, c)| c.boundary.intersects(&shapes))
        .map(|(n, _)| n)
        .collect();
    let all = index.communities();
    hits.sort_by(|a, b| all[*a].id.cmp(&all[*b].id));
    hits
}

/// Indexes (into `communities`) of the communities that `geocodes` name through `table`, in id
/// order, and the geocodes that name none (the table does not know them, or the region has no
/// such area).
pub fn communities_named<'g>(
    communities: &[Community],
    table: &Geocodes,
    geocodes: &'g [Geocode],
) -> (Vec<usize>, Vec<&'g Geocode>) {
    let mut hits = Vec::new();
    let mut unknown = Vec::new();
    for g in geocodes {
        let codes = table.region_codes(&g.value_name, &g.value);
        let within = |c: &Community| {
            codes.iter().any(|code| {
                c.id == *code || c.district.code == *code || c.sub_district.as_ref().is_some_and(|s| s.code == *code)
            })
        };
        let before = hits.len();
        hits.extend(communities.iter().enumerate().filter(|(_, c)| within(c)).map(|(n, _)| n));
        if hits.len() == before {
            unknown.push(g);
        }
    }
    hits.sort_by(|a, b| communities[*a].id.cmp(&communities[*b].id));
    hits.dedup();
    (hits, unknown)
}

/// The centre of an area's bounding box: where a broadcast is placed on a map (and what its
/// `location` is set to by adapters).
pub fn centre(area: &Area) -> Option<Location> {
    shapes(area).bounding_rect().map(rect_centre)
}

fn rect_centre(b: Rect<f64>) -> Location {
    Location { lon: (b.min().x + b.max().x) / 2.0, lat: (b.min().y + b.max().y) / 2.0 }
}

/// What an adapter needs to place an area named by geocodes: the region's communities and its
/// geocode table.
#[derive(Debug, Clone, Default)]
pub struct Gazetteer {
    communities: Vec<Community>,
    table: Geocodes,
}

impl Gazetteer {
    /// The region's.
    pub fn new(region: &Region) -> Self {
        Self { communities: region.communities.clone(), table: region.geocodes.clone() }
    }

    /// The ids of the communities `geocodes` name ([`communities_named`]), the centre of their
    /// bounding box, and the geocodes that name none.
    pub fn place<'g>(&self, geocodes: &'g [Geocode]) -> (Vec<String>, Option<Location>, Vec<&'g Geocode>) {
        let (hits, unknown) = communities_named(&self.communities, &self.table, geocodes);
        let bounds = hits.iter().filter_map(|n| self.communities[*n].boundary.bounding_rect()).reduce(|a, b| {
            Rect::new(
                (a.min().x.min(b.min().x), a.min().y.min(b.min().y)),
                (a.max().x.max(b.max().x), a.max().y.max(b.max().y)),
            )
        });
        let ids = hits.iter().map(|n| self.communities[*n].id.clone()).collect();
        (ids, bounds.map(rect_centre), unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::{MultiPolygon, polygon};
    use linkbus_geo_data::{Area as District, Community};
    use linkbus_geo_data::{GeocodeScheme, Geocodes};
    use linkbus_wire::Circle;

    fn square(id: &str, x0: f64) -> Community {
        Community {
            id: id.into(),
            name: id.into(),
            sub_district: None,
            district: District { code: "d".into(), name: "d".into() },
            boundary: MultiPolygon::new(vec![polygon![
                (x: x0, y: 0.0), (x: x0 + 0.01, y: 0.0), (x: x0 + 0.01, y: 0.01), (x: x0, y: 0.01), (x: x0, y: 0.0)
            ]]),
        }
    }

    fn loc(lon: f64, lat: f64) -> Location {
        Location { lon, lat }
    }

    /// Three squares in a row: a, b, c.
    fn index() -> CommunityIndex {
        CommunityIndex::new(vec![square("c", 0.02), square("a", 0.0), square("b", 0.01)], 0.0)
    }

    fn ids(index: &CommunityIndex, hits: Vec<usize>) -> Vec<String> {
        hits.into_iter().map(|n| index.communities()[n].id.clone()).collect()
    }

    #[test]
    fn polygon_over_two_of_three() {
        let idx = index();
        let ring = vec![loc(0.005, 0.002), loc(0.015, 0.002), loc(0.015, 0.008), loc(0.005, 0.008), loc(0.005, 0.002)];
        let area = Area { polygons: vec![ring], circles: vec![], geocodes: vec![] };
        assert_eq!(ids(&idx, communities_touching(&idx, &area)), ["a", "b"]);
        let c = centre(&area).expect("centre");
        assert!((c.lon - 0.01).abs() < 1e-12 && (c.lat - 0.005).abs() < 1e-12);
    }

    #[test]
    fn circle_inside_one_and_far_away() {
        let idx = index();
        // 200 m around the middle of c: inside c only.
        let inside = Area {
            polygons: vec![],
            circles: vec![Circle { center: loc(0.025, 0.005), radius_m: 200.0 }],
            geocodes: vec![],
        };
        assert_eq!(ids(&idx, communities_touching(&idx, &inside)), ["c"]);
        // 2 km around the middle of b reaches all three (each is about 1.1 km wide).
        let wide = Area {
            polygons: vec![],
            circles: vec![Circle { center: loc(0.015, 0.005), radius_m: 2_000.0 }],
            geocodes: vec![],
        };
        assert_eq!(ids(&idx, communities_touching(&idx, &wide)), ["a", "b", "c"]);
        let far = Area {
            polygons: vec![],
            circles: vec![Circle { center: loc(1.0, 1.0), radius_m: 1_000.0 }],
            geocodes: vec![],
        };
        assert!(communities_touching(&idx, &far).is_empty());
    }

    #[test]
    fn geocodes_name_communities_through_the_table() {
        let mut communities = index().communities().to_vec();
        communities[0].sub_district = Some(District { code: "s1".into(), name: "s1".into() });
        let scheme = |name: &str, own: bool, codes: &[(&str, &str)]| GeocodeScheme {
            value_names: vec![name.into()],
            own,
            codes: codes.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        };
        let table = Geocodes { scheme: vec![scheme("SAME", false, &[("0001", "d")]), scheme("OWN", true, &[])] };
        let code = |name: &str, value: &str| Geocode { value_name: name.into(), value: value.into() };
        let ids = |hits: Vec<usize>| hits.into_iter().map(|n| communities[n].id.clone()).collect::<Vec<_>>();
        // A district: all three; a sub-district: its community; a community by its id.
        let county = [code("SAME", "0001")];
        let (hits, unknown) = communities_named(&communities, &table, &county);
        assert_eq!((ids(hits), unknown.len()), (vec!["a".to_owned(), "b".into(), "c".into()], 0));
        let geocodes = [code("own", "s1"), code("OWN", "b"), code("OWN", "x"), code("UGC", "0001")];
        let (hits, unknown) = communities_named(&communities, &table, &geocodes);
        assert_eq!(ids(hits), ["b", "c"]);
        assert_eq!(unknown, [&geocodes[2], &geocodes[3]], "an unknown code, an unknown valueName");

        // The gazetteer places them at the centre of the communities named.
        let gazetteer = Gazetteer { communities: communities.clone(), table };
        let (named, centre, unknown) = gazetteer.place(&geocodes);
        assert_eq!((named, unknown), (vec!["b".to_owned(), "c".into()], vec![&geocodes[2], &geocodes[3]]));
        let centre = centre.expect("a centre");
        assert!((centre.lon - 0.02).abs() < 1e-12 && (centre.lat - 0.005).abs() < 1e-12, "{centre:?}");
        assert_eq!(gazetteer.place(&geocodes[2..]), (vec![], None, vec![&geocodes[2], &geocodes[3]]));
    }

    #[test]
    fn a_circle_of_radius_zero_is_the_community_containing_its_point() {
        let idx = index();
        let point = Area {
            polygons: vec![],
            circles: vec![Circle { center: loc(0.013, 0.004), radius_m: 0.0 }],
            geocodes: vec![],
        };
        assert_eq!(ids(&idx, communities_touching(&idx, &point)), ["b"]);
        assert_eq!(centre(&point), Some(loc(0.013, 0.004)));
    }
}
