//! Property tests of the geo invariants routing rests on, on the real San Francisco region:
//!
//! - a point strictly inside exactly one community (by a brute-force test of every polygon) is
//!   located in it, and a case there is routed to it;
//! - the volunteer search returns what a brute-force scan of every volunteer gives: the `k`
//!   nearest available ones with the skill within the radius, nearest first, same distances.

use std::sync::OnceLock;

use geo::coordinate_position::{CoordPos, CoordinatePosition};
use geo::{BoundingRect, Coord};
use jiff::Timestamp;
use linkbus_geo_data::Region;
use linkbus_matching::communities::Located;
use linkbus_matching::geodesy::haversine_m;
use linkbus_matching::{OfferLedger, Router, RoutingParams, VolunteerIndex};
use linkbus_wire::{CaseReport, Datum, Location, SourceSystem, VolunteerStatus};
use proptest::prelude::*;

fn region() -> &'static Region {
    static REGION: OnceLock<Region> = OnceLock::new();
    REGION.get_or_init(|| {
        Region::load(concat!(env!("CARGO_MANIFEST_DIR"), "/../geo-data/san-francisco")).expect("the SF region loads")
    })
}

fn router() -> &'static Router {
    static ROUTER: OnceLock<Router> = OnceLock::new();
    ROUTER.get_or_init(|| Router::new(region(), RoutingParams::default()))
}

/// Where a point is relative to every community, by testing each polygon.
fn brute_force(lon: f64, lat: f64) -> Vec<(usize, CoordPos)> {
    let point = Coord { x: lon, y: lat };
    router()
        .communities()
        .communities()
        .iter()
        .enumerate()
        .map(|(n, c)| (n, c.boundary.coordinate_position(&point)))
        .filter(|(_, pos)| *pos != CoordPos::Outside)
        .collect()
}

fn case_at(lon: f64, lat: f64) -> CaseReport {
    CaseReport {
        system: SourceSystem::PublicService,
        category: "sewer_issues".into(),
        priority: 3,
        location: Location { lon, lat },
        address: None,
        reporter: None,
        description: None,
        source_id: "p".into(),
        reported_at: Timestamp::UNIX_EPOCH,
        flags: vec![],
        datum: Datum::Wgs84,
        received_location: None,
        area: None,
        media_url: None,
    }
}

proptest! {
    // Points in water or on a shared border are drawn again.
    #![proptest_config(ProptestConfig { cases: 3_000, max_global_rejects: 100_000, ..ProptestConfig::default() })]

    /// A point drawn in the bounding box of a community (so most land inside it or a neighbour).
    #[test]
    fn a_point_strictly_inside_one_community_routes_to_it(pick in 0usize..1_000, u in 0.0f64..1.0, v in 0.0f64..1.0) {
        let communities = router().communities().communities();
        let community = &communities[pick % communities.len()];
        let rect = community.boundary.bounding_rect().expect("a boundary has a box");
        let (lon, lat) = (rect.min().x + u * rect.width(), rect.min().y + v * rect.height());
        let found = brute_force(lon, lat);
        prop_assume!(matches!(found.as_slice(), [(_, CoordPos::Inside)]));
        let inside = found[0].0;
        prop_assert_eq!(router().communities().locate(lon, lat), Located::Inside(inside));
        let decision = router().decide(&case_at(lon, lat), &VolunteerIndex::new(), &OfferLedger::new(), 0);
        let routed = decision.community.community.map(|c| c.id);
        prop_assert_eq!(routed.as_deref(), Some(communities[inside].id.as_str()));
    }
}

/// A roster of volunteers around a point, with availability and skills drawn.
fn roster() -> impl Strategy<Value = Vec<VolunteerStatus>> {
    let skills = prop::sample::subsequence(vec!["first_aid", "cpr", "elderly_care"], 0..=3);
    prop::collection::vec((-0.05f64..0.05, -0.05f64..0.05, prop::bool::weighted(0.7), skills), 0..300).prop_map(
        |people| {
            people
                .into_iter()
                .enumerate()
                .map(|(n, (dx, dy, available, skills))| VolunteerStatus {
                    id: format!("v{n:04}"),
                    location: Location { lon: -122.42 + dx, lat: 37.77 + dy },
                    available,
                    skills: skills.into_iter().map(str::to_owned).collect(),
                })
                .collect()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn knn_equals_brute_force(
        people in roster(),
        (dx, dy) in (-0.05f64..0.05, -0.05f64..0.05),
        skill in prop::sample::select(vec!["first_aid", "cpr", "elderly_care", "nobody_has_it"]),
        k in 0usize..12,
        radius_m in 10.0f64..8_000.0,
    ) {
        let (lon, lat) = (-122.42 + dx, 37.77 + dy);
        let index = VolunteerIndex::from_roster(&people).expect("few skills");
        let (chosen, _) = index.nearest(lon, lat, skill, k, radius_m);

        let mut expected: Vec<(f64, &str)> = people
            .iter()
            .filter(|v| v.available && v.skills.iter().any(|s| s == skill))
            .map(|v| (haversine_m(lon, lat, v.location.lon, v.location.lat), v.id.as_str()))
            .collect();
        // Exactly on the radius, the two computations may round differently.
        prop_assume!(expected.iter().all(|(d, _)| (d - radius_m).abs() > 0.01));
        expected.retain(|(d, _)| *d <= radius_m);
        expected.sort_by(|a, b| a.0.total_cmp(&b.0));
        expected.truncate(k);

        prop_assert_eq!(chosen.len(), expected.len());
        for (got, (distance, id)) in chosen.iter().zip(&expected) {
            prop_assert!((got.distance_m - distance).abs() < 0.02, "{} at {} m, brute force {} m", got.id, got.distance_m, distance);
            // Ties aside (they do not happen with random positions), the same volunteer.
            let tied = expected.iter().filter(|(d, _)| (d - distance).abs() < 0.02).count() > 1;
            prop_assert!(tied || got.id == *id, "{} instead of {}", got.id, id);
        }
    }
}
