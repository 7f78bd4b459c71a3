//! Property tests of the datum conversion (`Datum`, wire/src/datum.rs): for any point where
//! the Chinese datums apply, and any other, WGS-84 → datum → WGS-84 comes back within a metre,
//! and no conversion moves a point further than its datum's offset.

use linkbus_wire::Datum;
use proptest::prelude::*;

/// Metres between two nearby points (equirectangular; fine at these distances).
fn metres(a: (f64, f64), b: (f64, f64)) -> f64 {
    let k = 111_320.0;
    let dx = (a.0 - b.0) * k * a.1.to_radians().cos();
    let dy = (a.1 - b.1) * k;
    (dx * dx + dy * dy).sqrt()
}

/// Within ~3 km of the box where the `coordtransform` crate applies the Chinese offsets (lon
/// 72.004–135.05, lat 3.86–53.55): there a point just inside is moved just outside, where the
/// offset stops, so two points share one image and no inverse can tell them apart: `to_wgs84`
/// returns one of them, up to ~150 m from the other. The northern edge (53.55° N) crosses Mohe
/// county (漠河), so a few real places are affected; `the_inverse_is_a_preimage_everywhere`
/// checks that even there the answer converts back to what was given.
fn near_the_offset_box_edge(lon: f64, lat: f64) -> bool {
    const MARGIN: f64 = 0.03;
    [lon - 72.004, 135.05 - lon].iter().any(|d| d.abs() < MARGIN) && (3.86..53.55).contains(&lat)
        || [lat - 3.86, 53.55 - lat].iter().any(|d| d.abs() < MARGIN) && (72.004..135.05).contains(&lon)
}

fn datum() -> impl Strategy<Value = Datum> {
    prop_oneof![Just(Datum::Wgs84), Just(Datum::Gcj02), Just(Datum::Bd09)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5_000))]

    /// Across China (where the offsets apply) and its surroundings.
    #[test]
    fn round_trips_within_a_metre_in_china(lon in 72.0f64..136.0, lat in 17.0f64..54.0, datum in datum()) {
        prop_assume!(!near_the_offset_box_edge(lon, lat));
        let there = datum.from_wgs84(lon, lat);
        let back = datum.to_wgs84(there.0, there.1);
        prop_assert!(metres((lon, lat), back) < 1.0, "{datum} at ({lon}, {lat}) came back as {back:?}");
    }

    /// Anywhere on earth (away from the poles, where a metre of longitude is ill-defined).
    #[test]
    fn round_trips_within_a_metre_anywhere(lon in -180.0f64..180.0, lat in -85.0f64..85.0, datum in datum()) {
        prop_assume!(!near_the_offset_box_edge(lon, lat));
        let there = datum.from_wgs84(lon, lat);
        let back = datum.to_wgs84(there.0, there.1);
        prop_assert!(metres((lon, lat), back) < 1.0, "{datum} at ({lon}, {lat}) came back as {back:?}");
    }

    /// The conversion moves a point by at most about a kilometre (GCJ-02's offset is a few
    /// hundred metres; BD-09 adds a few hundred more), never somewhere else entirely.
    /// Even at the box's edge, what comes back is a point that converts to what was given.
    #[test]
    fn the_inverse_is_a_preimage_everywhere(lon in 71.0f64..136.0, lat in 3.0f64..55.0, datum in datum()) {
        let there = datum.from_wgs84(lon, lat);
        let back = datum.to_wgs84(there.0, there.1);
        prop_assert!(metres(there, datum.from_wgs84(back.0, back.1)) < 0.01, "{datum} at ({lon}, {lat})");
    }

    #[test]
    fn offsets_stay_small(lon in 72.0f64..136.0, lat in 17.0f64..54.0, datum in datum()) {
        let there = datum.from_wgs84(lon, lat);
        prop_assert!(metres((lon, lat), there) < 2_000.0, "{datum} moved ({lon}, {lat}) to {there:?}");
    }
}
