//! Property tests of the datum conversion (`Datum`, bus/src/wire/datum.rs): for any point where
//! the Chinese datums apply, and any other, WGS-84 → datum → WGS-84 comes back within a metre,
//! and no conversion moves a point further than its datum's offset — except within a kilometre
//! of the edges of GCJ-02's box, where the conversion is not invertible (see
//! [`near_the_gcj02_box_edge`]).

use linkbus_bus::wire::Datum;
use proptest::prelude::*;

/// Metres between two nearby points (equirectangular; fine at these distances).
fn metres(a: (f64, f64), b: (f64, f64)) -> f64 {
    let k = 111_320.0;
    let dx = (a.0 - b.0) * k * a.1.to_radians().cos();
    let dy = (a.1 - b.1) * k;
    (dx * dx + dy * dy).sqrt()
}

/// Within about a kilometre of the edges of the box where the GCJ-02 offset applies
/// (`coordtransform`: 72.004 < lon < 135.05, 3.86 < lat < 53.55). There the offset moves a point
/// across the edge, where the conversion is the identity, so the mapping is not invertible: a
/// GCJ-02 point in that band may have two WGS-84 sources or none, and `to_wgs84` returns the
/// identity (up to ~150 m off). Found by these properties; see docs/RELIABILITY.md.
fn near_the_gcj02_box_edge(lon: f64, lat: f64) -> bool {
    let near = |v: f64, edge: f64| (v - edge).abs() < 0.01;
    near(lon, 72.004) || near(lon, 135.05) || near(lat, 3.86) || near(lat, 53.55)
}

fn datum() -> impl Strategy<Value = Datum> {
    prop_oneof![Just(Datum::Wgs84), Just(Datum::Gcj02), Just(Datum::Bd09)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5_000))]

    /// Across China (where the offsets apply) and its surroundings.
    #[test]
    fn round_trips_within_a_metre_in_china(lon in 72.0f64..136.0, lat in 17.0f64..54.0, datum in datum()) {
        prop_assume!(!near_the_gcj02_box_edge(lon, lat));
        let there = datum.from_wgs84(lon, lat);
        let back = datum.to_wgs84(there.0, there.1);
        prop_assert!(metres((lon, lat), back) < 1.0, "{datum} at ({lon}, {lat}) came back as {back:?}");
    }

    /// Anywhere on earth (away from the poles, where a metre of longitude is ill-defined).
    #[test]
    fn round_trips_within_a_metre_anywhere(lon in -180.0f64..180.0, lat in -85.0f64..85.0, datum in datum()) {
        prop_assume!(!near_the_gcj02_box_edge(lon, lat));
        let there = datum.from_wgs84(lon, lat);
        let back = datum.to_wgs84(there.0, there.1);
        prop_assert!(metres((lon, lat), back) < 1.0, "{datum} at ({lon}, {lat}) came back as {back:?}");
    }

    /// The conversion moves a point by at most about a kilometre (GCJ-02's offset is a few
    /// hundred metres; BD-09 adds a few hundred more), never somewhere else entirely.
    #[test]
    fn offsets_stay_small(lon in 72.0f64..136.0, lat in 17.0f64..54.0, datum in datum()) {
        let there = datum.from_wgs84(lon, lat);
        prop_assert!(metres((lon, lat), there) < 2_000.0, "{datum} moved ({lon}, {lat}) to {there:?}");
    }
}
