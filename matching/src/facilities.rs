//! The facility of a kind nearest a point (the AED for a cardiac arrest), an R-tree of unit
//! vectors per kind.

use foldhash::HashMap;

use linkbus_geo_data::Facility;
use linkbus_wire::{FacilityChoice, Location};
use rstar::RTree;
use rstar::primitives::GeomWithData;

use crate::geodesy;

type Entry = GeomWithData<[f64; 3], usize>;

/// Facilities by kind.
#[derive(Debug, Clone, Default)]
pub struct FacilityIndex {
    facilities: Vec<Facility>,
    by_kind: HashMap<String, RTree<Entry>>,
}

impl FacilityIndex {
    /// Indexes a region's facilities.
    pub fn new(facilities: Vec<Facility>) -> Self {
        let mut entries: HashMap<String, Vec<Entry>> = HashMap::default();
        for (n, f) in facilities.iter().enumerate() {
            entries
                .entry(f.kind.clone())
                .or_default()
                .push(Entry::new(geodesy::unit_vector(f.location.x(), f.location.y()), n));
        }
        let by_kind = entries.into_iter().map(|(kind, e)| (kind, RTree::bulk_load(e))).collect();
        Self { facilities, by_kind }
    }

    /// The facility of `kind` nearest (lon, lat), if the region has any.
    pub fn nearest(&self, kind: &str, lon: f64, lat: f64) -> Option<FacilityChoice> {
        let (entry, chord2) =
            self.by_kind.get(kind)?.nearest_neighbor_iter_with_distance_2(&geodesy::unit_vector(lon, lat)).next()?;
        let f = &self.facilities[entry.data];
        Some(FacilityChoice {
            id: f.id.clone(),
            name: f.name.clone(),
            kind: f.kind.clone(),
            location: Location { lon: f.location.x(), lat: f.location.y() },
            distance_m: (geodesy::chord_to_metres(chord2.sqrt()) * 100.0).round() / 100.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_of_the_kind() {
        let f = |id: &str, kind: &str, lon: f64| Facility {
            id: id.into(),
            name: id.into(),
            kind: kind.into(),
            location: geo::Point::new(lon, 37.77),
        };
        let idx = FacilityIndex::new(vec![
            f("aed-far", "aed", -122.5),
            f("aed-near", "aed", -122.41),
            f("station", "fire_station", -122.4),
        ]);
        assert_eq!(idx.nearest("aed", -122.4, 37.77).map(|c| c.id), Some("aed-near".into()));
        assert_eq!(idx.nearest("fire_station", -122.4, 37.77).map(|c| c.distance_m), Some(0.0));
        assert_eq!(idx.nearest("hospital", -122.4, 37.77), None);
    }
}
