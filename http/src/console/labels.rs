//! Where the map writes each area's name, computed once at start: a community's label point is
//! the centre its file gives (Beijing's and Shenzhen's registry centres), else a point deep inside
//! its largest polygon (a coarse-to-fine grid search for the point farthest from the boundary, as
//! polylabel finds it); a district's or sub-district's (街道) is the area-weighted mean of its
//! communities' points when that falls inside one of them, else the nearest of those points. Each
//! label carries the area's size (the square root of its area, in metres), from which the page
//! chooses the level to label at a zoom.

use std::collections::BTreeMap;

use geo::{ChamberlainDuquetteArea as _, Contains as _, MultiPolygon, Point, Polygon};
use linkbus_geo_data::Region;
use serde_json::{Value, json};

/// A community's label point and size (metres), in the order of `region.communities`.
pub(super) fn community_labels(region: &Region) -> Vec<(Point<f64>, f64)> {
    let given = linkbus_geo_data::given_centres(region).unwrap_or_default();
    region
        .communities
        .iter()
        .map(|c| {
            let point =
                given.get(&c.id).copied().filter(|p| c.boundary.contains(p)).unwrap_or_else(|| deep_point(&c.boundary));
            (point, c.boundary.chamberlain_duquette_unsigned_area().sqrt())
        })
        .collect()
}

/// The districts and sub-districts with their label points and sizes, for `/console/region`:
/// `[{level, code, name, label: [lat, lon], size_m}]`, districts first.
pub(super) fn area_labels(region: &Region, communities: &[(Point<f64>, f64)]) -> Vec<Value> {
    // Per area: (name, member indices).
    let mut districts: BTreeMap<&str, (&str, Vec<usize>)> = BTreeMap::new();
    let mut subs: BTreeMap<&str, (&str, Vec<usize>)> = BTreeMap::new();
    for (i, c) in region.communities.iter().enumerate() {
        districts.entry(&c.district.code).or_insert((&c.district.name, Vec::new())).1.push(i);
        if let Some(s) = &c.sub_district {
            subs.entry(&s.code).or_insert((&s.name, Vec::new())).1.push(i);
        }
    }
    let label = |level: &str, code: &str, name: &str, members: &[usize]| {
        let area: f64 = members.iter().map(|&i| communities[i].1.powi(2)).sum();
        let weight = |i: usize| communities[i].1.powi(2) / area.max(f64::MIN_POSITIVE);
        let mean = members.iter().fold(Point::new(0.0, 0.0), |sum, &i| sum + communities[i].0 * weight(i));
        let inside = members.iter().any(|&i| region.communities[i].boundary.contains(&mean));
        let point = if inside {
            mean
        } else {
            let d = |i: usize| (communities[i].0.x() - mean.x()).hypot(communities[i].0.y() - mean.y());
            members
                .iter()
                .map(|&i| communities[i].0)
                .zip(members.iter().map(|&i| d(i)))
                .fold((mean, f64::INFINITY), |best, (p, dist)| if dist < best.1 { (p, dist) } else { best })
                .0
        };
        json!({ "level": level, "code": code, "name": name, "label": [point.y(), point.x()], "size_m": area.sqrt().round() })
    };
    let mut out: Vec<Value> =
        districts.iter().map(|(code, (name, members))| label("district", code, name, members)).collect();
    out.extend(subs.iter().map(|(code, (name, members))| label("sub_district", code, name, members)));
    out
}

/// A point deep inside `boundary`'s largest polygon: of a grid over its bounds, the point inside
/// farthest from its rings, then finer grids around the best so far (distances in metres-like
/// units: longitude scaled by the cosine of the latitude).
fn deep_point(boundary: &MultiPolygon<f64>) -> Point<f64> {
    use geo::{Area as _, BoundingRect as _, InteriorPoint as _};
    let fallback = boundary.interior_point().unwrap_or_else(|| Point::new(0.0, 0.0));
    let Some(polygon) = boundary.0.iter().max_by(|a, b| a.unsigned_area().total_cmp(&b.unsigned_area())) else {
        return fallback;
    };
    let Some(rect) = polygon.bounding_rect() else { return fallback };
    let scale = rect.center().y.to_radians().cos();
    let clearance = |p: Point<f64>| if polygon.contains(&p) { distance_to_rings(polygon, p, scale) } else { -1.0 };
    let (mut best, mut best_d) = (fallback, clearance(fallback));
    let (mut centre, mut half_w, mut half_h) = (rect.center(), rect.width() / 2.0, rect.height() / 2.0);
    const STEPS: i32 = 8;
    for _ in 0..4 {
        for i in -STEPS..=STEPS {
            for j in -STEPS..=STEPS {
                let p = Point::new(
                    centre.x + half_w * f64::from(i) / f64::from(STEPS),
                    centre.y + half_h * f64::from(j) / f64::from(STEPS),
                );
                let d = clearance(p);
                if d > best_d {
                    (best, best_d) = (p, d);
                }
            }
        }
        centre = best.0;
        half_w /= 4.0;
        half_h /= 4.0;
    }
    best
}

/// The distance from `p` to the nearest edge of `polygon`'s rings, longitudes scaled by `scale`.
fn distance_to_rings(polygon: &Polygon<f64>, p: Point<f64>, scale: f64) -> f64 {
    let mut nearest = f64::INFINITY;
    for ring in std::iter::once(polygon.exterior()).chain(polygon.interiors()) {
        for line in ring.lines() {
            let (ax, ay) = ((line.start.x - p.x()) * scale, line.start.y - p.y());
            let (bx, by) = ((line.end.x - p.x()) * scale, line.end.y - p.y());
            let (dx, dy) = (bx - ax, by - ay);
            let len = dx * dx + dy * dy;
            let t = if len > 0.0 { (-(ax * dx + ay * dy) / len).clamp(0.0, 1.0) } else { 0.0 };
            nearest = nearest.min((ax + t * dx).hypot(ay + t * dy));
        }
    }
    nearest
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// Communities' label points by id.
    fn by_id(region: &Region) -> HashMap<String, Point<f64>> {
        let points = community_labels(region).into_iter().map(|(p, _)| p);
        region.communities.iter().map(|c| c.id.clone()).zip(points).collect()
    }

    fn region(name: &str) -> Region {
        Region::load(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../geo-data").join(name))
            .expect("the region loads")
    }

    #[test]
    fn every_label_point_lies_inside_its_area() {
        for name in ["san-francisco", "beijing"] {
            let region = region(name);
            let points = by_id(&region);
            for c in &region.communities {
                assert!(c.boundary.contains(&points[&c.id]), "{name}: {} labelled outside", c.id);
            }
            let communities = community_labels(&region);
            for area in area_labels(&region, &communities) {
                let (lat, lon) = (area["label"][0].as_f64().expect("lat"), area["label"][1].as_f64().expect("lon"));
                let code = area["code"].as_str().expect("code");
                let within = region.communities.iter().any(|c| {
                    let member = c.district.code == code || c.sub_district.as_ref().is_some_and(|s| s.code == code);
                    member && c.boundary.contains(&Point::new(lon, lat))
                });
                assert!(within, "{name}: {code} labelled outside");
            }
        }
    }
}
