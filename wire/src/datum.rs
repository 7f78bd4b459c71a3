//! Geodetic datums a source may send coordinates in, and their conversion to WGS-84.
//!
//! The bus's datum is WGS-84. Maps and apps in mainland China use GCJ-02 (the "Mars" offset
//! every licensed map applies, a few hundred metres) or Baidu's BD-09 (GCJ-02 shifted once
//! more). The forward transforms come from the `coordtransform` crate; their inverses have no
//! closed form, so [`Datum::to_wgs84`] solves them by Newton's method to about a millimetre
//! instead of the usual one-step approximations (off by up to ~2 m, and by hundreds of metres at
//! the edges of China).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The datum of a longitude/latitude pair.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Datum {
    /// WGS-84, the datum of GPS and of the bus.
    #[default]
    Wgs84,
    /// GCJ-02 (国测局坐标), used by AMap/Gaode, Tencent and most Chinese apps.
    Gcj02,
    /// BD-09 (百度坐标), used by Baidu Maps.
    Bd09,
}

/// The inverse stops once the forward image is this close to the target, in degrees (~0.1 mm).
const INVERSE_TOLERANCE: f64 = 1e-9;
/// Newton steps allowed; two or three suffice almost everywhere.
const INVERSE_STEPS: usize = 30;

impl Datum {
    /// The name used on the wire and in configuration: `wgs84`, `gcj02`, `bd09`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Wgs84 => "wgs84",
            Self::Gcj02 => "gcj02",
            Self::Bd09 => "bd09",
        }
    }

    /// Parses a wire name, accepting the common spellings (`WGS-84`, `GCJ02`, `bd-09`, …).
    pub fn parse(name: &str) -> Option<Self> {
        let folded: String = name.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_lowercase();
        match folded.as_str() {
            "wgs84" => Some(Self::Wgs84),
            "gcj02" => Some(Self::Gcj02),
            "bd09" | "bd09ll" => Some(Self::Bd09),
            _ => None,
        }
    }

    /// True for WGS-84 (lets serde skip the default).
    pub fn is_wgs84(&self) -> bool {
        *self == Self::Wgs84
    }

    /// Converts `(lon, lat)` in this datum to WGS-84.
    pub fn to_wgs84(self, lon: f64, lat: f64) -> (f64, f64) {
        match self {
            Self::Wgs84 => (lon, lat),
            Self::Gcj02 | Self::Bd09 => invert(|lon, lat| self.from_wgs84(lon, lat), lon, lat),
        }
    }

    /// Converts WGS-84 `(lon, lat)` into this datum.
    pub fn from_wgs84(self, lon: f64, lat: f64) -> (f64, f64) {
        match self {
            Self::Wgs84 => (lon, lat),
            Self::Gcj02 => coordtransform::wgs84_to_gcj02(lon, lat),
            Self::Bd09 => {
                let (lon, lat) = coordtransform::wgs84_to_gcj02(lon, lat);
                coordtransform::gcj02_to_bd09(lon, lat)
            }
        }
    }
}

impl std::fmt::Display for Datum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Inverts an offset `forward`: finds `w` with `forward(w) = (lon, lat)` by Newton's method
/// with a numerical Jacobian, starting from the target. (A plain fixed-point iteration diverges
/// where GCJ-02's offset varies fast, far from its centre, e.g. near 135° E 17° N.)
fn invert(forward: impl Fn(f64, f64) -> (f64, f64), lon: f64, lat: f64) -> (f64, f64) {
    const H: f64 = 1e-6;
    let (mut x, mut y) = (lon, lat);
    for _ in 0..INVERSE_STEPS {
        let (fx, fy) = forward(x, y);
        let (rx, ry) = (fx - lon, fy - lat);
        if rx.abs() < INVERSE_TOLERANCE && ry.abs() < INVERSE_TOLERANCE {
            break;
        }
        let (ax, ay) = forward(x + H, y);
        let (bx, by) = forward(x, y + H);
        let (j11, j21, j12, j22) = ((ax - fx) / H, (ay - fy) / H, (bx - fx) / H, (by - fy) / H);
        let det = j11 * j22 - j12 * j21;
        if !det.is_finite() || det.abs() < 1e-12 {
            // Where the transform is not invertible locally, fall back to the residual step.
            x -= rx;
            y -= ry;
            continue;
        }
        x -= (j22 * rx - j12 * ry) / det;
        y -= (j11 * ry - j21 * rx) / det;
    }
    (x, y)
}

#[cfg(test)]
mod tests {
    use super::Datum;

    /// Metres between two nearby points (equirectangular; fine at these distances).
    fn metres(a: (f64, f64), b: (f64, f64)) -> f64 {
        let k = 111_320.0;
        let dx = (a.0 - b.0) * k * a.1.to_radians().cos();
        let dy = (a.1 - b.1) * k;
        (dx * dx + dy * dy).sqrt()
    }

    /// The vectors published with the widely used `coordtransform` JavaScript library
    /// (wandergis/coordtransform README), for Tiananmen at (116.404, 39.915).
    #[test]
    fn published_vectors() {
        let close = |a: (f64, f64), b: (f64, f64)| (a.0 - b.0).abs() < 1e-9 && (a.1 - b.1).abs() < 1e-9;
        assert!(close(Datum::Gcj02.from_wgs84(116.404, 39.915), (116.41024449916938, 39.91640428150164)));
        assert!(close(coordtransform::gcj02_to_bd09(116.404, 39.915), (116.41036949371029, 39.92133699351021)));
        assert!(close(coordtransform::bd09_to_gcj02(116.404, 39.915), (116.39762729119315, 39.90865673957631)));
        // The library's one-step inverse is published as (116.39775550083061, 39.91359571849836);
        // the exact inverse differs from it by about a metre.
        let exact = Datum::Gcj02.to_wgs84(116.404, 39.915);
        assert!(metres(exact, (116.39775550083061, 39.91359571849836)) < 3.0);
    }

    #[test]
    fn round_trips_within_a_millimetre_across_china() {
        for i in 0..40 {
            for j in 0..30 {
                let p = (74.0 + f64::from(i) * 1.5, 18.0 + f64::from(j) * 1.2);
                for datum in [Datum::Wgs84, Datum::Gcj02, Datum::Bd09] {
                    let there = datum.from_wgs84(p.0, p.1);
                    let back = datum.to_wgs84(there.0, there.1);
                    assert!(metres(p, back) < 0.001, "{datum} at {p:?} came back as {back:?}");
                }
            }
        }
    }

    #[test]
    fn outside_china_gcj02_is_the_identity() {
        assert_eq!(Datum::Gcj02.from_wgs84(-122.4194, 37.7749), (-122.4194, 37.7749));
        assert_eq!(Datum::Gcj02.to_wgs84(-122.4194, 37.7749), (-122.4194, 37.7749));
    }

    #[test]
    fn names() {
        for datum in [Datum::Wgs84, Datum::Gcj02, Datum::Bd09] {
            assert_eq!(Datum::parse(datum.as_str()), Some(datum));
        }
        assert_eq!(Datum::parse("WGS-84"), Some(Datum::Wgs84));
        assert_eq!(Datum::parse("GCJ-02"), Some(Datum::Gcj02));
        assert_eq!(Datum::parse("BD-09"), Some(Datum::Bd09));
        assert_eq!(Datum::parse("nad27"), None);
    }
}
