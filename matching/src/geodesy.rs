//! Distances on the earth, as a sphere of mean radius: great-circle distance, and unit vectors
//! (ECEF on the unit sphere) whose straight-line (chord) distance orders points exactly as the
//! great-circle distance does, so an R-tree over them finds true nearest neighbours.

/// Mean earth radius, metres (IUGG), the one `geo`'s Haversine uses.
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Unit vector of a lon/lat in degrees.
pub fn unit_vector(lon: f64, lat: f64) -> [f64; 3] {
    let (lon, lat) = (lon.to_radians(), lat.to_radians());
    [lat.cos() * lon.cos(), lat.cos() * lon.sin(), lat.sin()]
}

/// Lon/lat in degrees of a unit vector ([`unit_vector`]'s inverse).
pub fn lon_lat(xyz: [f64; 3]) -> (f64, f64) {
    let [x, y, z] = xyz;
    (y.atan2(x).to_degrees(), z.atan2(x.hypot(y)).to_degrees())
}

/// Great-circle distance in metres for a chord length between unit vectors.
pub fn chord_to_metres(chord: f64) -> f64 {
    2.0 * EARTH_RADIUS_M * (chord / 2.0).min(1.0).asin()
}

/// Chord length between unit vectors for a great-circle distance in metres.
pub fn metres_to_chord(metres: f64) -> f64 {
    2.0 * (metres / (2.0 * EARTH_RADIUS_M)).min(std::f64::consts::FRAC_PI_2).sin()
}

/// Great-circle (haversine) distance between two lon/lat points in degrees, metres.
pub fn haversine_m(lon1: f64, lat1: f64, lon2: f64, lat2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * a.sqrt().min(1.0).asin()
}

/// Degrees of latitude and longitude that `metres` spans at latitude `lat`, for growing a
/// lon/lat bounding box by a distance (generous near the poles).
pub fn metres_to_degrees(metres: f64, lat: f64) -> (f64, f64) {
    let dlat = (metres / EARTH_RADIUS_M).to_degrees();
    let dlon = dlat / lat.to_radians().cos().max(0.01);
    (dlon.min(360.0), dlat.min(180.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chord_and_haversine_agree() {
        let (a, b) = ((-122.4194, 37.7749), (-122.2711, 37.8044));
        let h = haversine_m(a.0, a.1, b.0, b.1);
        let (u, v) = (unit_vector(a.0, a.1), unit_vector(b.0, b.1));
        let chord = ((u[0] - v[0]).powi(2) + (u[1] - v[1]).powi(2) + (u[2] - v[2]).powi(2)).sqrt();
        assert!((chord_to_metres(chord) - h).abs() < 1e-6, "{} vs {h}", chord_to_metres(chord));
        assert!((metres_to_chord(h) - chord).abs() < 1e-12);
        let (lon, lat) = lon_lat(u);
        assert!((lon - a.0).abs() < 1e-9 && (lat - a.1).abs() < 1e-9, "{lon} {lat}");
        // San Francisco to Oakland is about 13.4 km.
        assert!((13_000.0..14_000.0).contains(&h), "{h}");
    }
}
