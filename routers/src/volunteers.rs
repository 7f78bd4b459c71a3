//! Volunteers' live positions, availability and skills, and the k nearest available ones with a
//! skill within a radius. Points live in an R-tree of unit vectors, so the tree's nearest-first
//! walk is in true great-circle order; the walk stops at the radius.

use std::collections::{HashMap, VecDeque};

use linkbus_bus::wire::{VolunteerChoice, VolunteerSearch, VolunteerStatus};
use rstar::RTree;
use rstar::primitives::GeomWithData;

use crate::geodesy;

type Entry = GeomWithData<[f64; 3], u32>;

#[derive(Debug, Clone)]
struct Slot {
    id: String,
    xyz: [f64; 3],
    available: bool,
    skills: u64,
}

/// More distinct skills than the index can hold (64).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("volunteer skill {0:?} would be the 65th distinct skill; at most 64 are supported")]
pub struct TooManySkills(pub String);

/// The live volunteer index.
#[derive(Debug, Clone, Default)]
pub struct VolunteerIndex {
    tree: RTree<Entry>,
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    by_id: HashMap<String, u32>,
    skill_bits: HashMap<String, u64>,
}

impl VolunteerIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds an index from a roster in one bulk load (faster than upserting one by one).
    pub fn from_roster<'a>(roster: impl IntoIterator<Item = &'a VolunteerStatus>) -> Result<Self, TooManySkills> {
        let mut index = Self::new();
        for v in roster {
            let slot = index.slot_for(v)?;
            match index.by_id.get(&v.id) {
                Some(&n) => index.slots[n as usize] = Some(slot),
                None => {
                    index.by_id.insert(v.id.clone(), index.slots.len() as u32);
                    index.slots.push(Some(slot));
                }
            }
        }
        let entries = index
            .slots
            .iter()
            .enumerate()
            .filter_map(|(n, s)| s.as_ref().map(|s| Entry::new(s.xyz, n as u32)))
            .collect();
        index.tree = RTree::bulk_load(entries);
        Ok(index)
    }

    /// Number of volunteers known.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// True when no volunteer is known.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Number of volunteers available now.
    pub fn available(&self) -> usize {
        self.slots.iter().flatten().filter(|s| s.available).count()
    }

    fn slot_for(&mut self, v: &VolunteerStatus) -> Result<Slot, TooManySkills> {
        let mut skills = 0u64;
        for skill in &v.skills {
            skills |= self.skill_bit(skill)?;
        }
        Ok(Slot {
            id: v.id.clone(),
            xyz: geodesy::unit_vector(v.location.lon, v.location.lat),
            available: v.available,
            skills,
        })
    }

    fn skill_bit(&mut self, skill: &str) -> Result<u64, TooManySkills> {
        if let Some(bit) = self.skill_bits.get(skill) {
            return Ok(*bit);
        }
        let n = self.skill_bits.len();
        if n >= 64 {
            return Err(TooManySkills(skill.to_owned()));
        }
        self.skill_bits.insert(skill.to_owned(), 1 << n);
        Ok(1 << n)
    }

    /// Adds a volunteer or replaces what is known of them.
    pub fn upsert(&mut self, v: &VolunteerStatus) -> Result<(), TooManySkills> {
        let new = self.slot_for(v)?;
        match self.by_id.get(&v.id) {
            Some(&slot) => {
                let old = self.slots[slot as usize].replace(new.clone());
                if let Some(old) = old.filter(|old| old.xyz != new.xyz) {
                    self.tree.remove(&Entry::new(old.xyz, slot));
                    self.tree.insert(Entry::new(new.xyz, slot));
                }
            }
            None => {
                let slot = match self.free.pop() {
                    Some(slot) => {
                        self.slots[slot as usize] = Some(new.clone());
                        slot
                    }
                    None => {
                        self.slots.push(Some(new.clone()));
                        (self.slots.len() - 1) as u32
                    }
                };
                self.tree.insert(Entry::new(new.xyz, slot));
                self.by_id.insert(v.id.clone(), slot);
            }
        }
        Ok(())
    }

    /// Forgets a volunteer; false when unknown.
    pub fn remove(&mut self, id: &str) -> bool {
        let Some(slot) = self.by_id.remove(id) else { return false };
        if let Some(old) = self.slots[slot as usize].take() {
            self.tree.remove(&Entry::new(old.xyz, slot));
        }
        self.free.push(slot);
        true
    }

    /// The `k` nearest available volunteers with `skill` within `radius_m` of a point, nearest
    /// first, with an account of who was passed over.
    pub fn nearest(
        &self,
        lon: f64,
        lat: f64,
        skill: &str,
        k: usize,
        radius_m: f64,
    ) -> (Vec<VolunteerChoice>, VolunteerSearch) {
        self.nearest_except(lon, lat, skill, k, radius_m, |_| None)
    }

    /// [`nearest`](Self::nearest), also passing over whoever `skip` names: those already offered
    /// the case, or at their hourly cap of offers.
    pub fn nearest_except(
        &self,
        lon: f64,
        lat: f64,
        skill: &str,
        k: usize,
        radius_m: f64,
        skip: impl Fn(&str) -> Option<Skip>,
    ) -> (Vec<VolunteerChoice>, VolunteerSearch) {
        let mut search = VolunteerSearch {
            skill: Some(skill.to_owned()),
            k,
            radius_m,
            examined: 0,
            skipped_unavailable: 0,
            skipped_skill: 0,
            skipped_capped: 0,
            reached_radius: false,
        };
        let mut chosen = Vec::with_capacity(k);
        // A skill nobody has: nobody qualifies, and there is no need to walk the tree.
        let Some(&bit) = self.skill_bits.get(skill) else { return (chosen, search) };
        if k == 0 {
            return (chosen, search);
        }
        let query = geodesy::unit_vector(lon, lat);
        let max_chord2 = geodesy::metres_to_chord(radius_m).powi(2);
        for (entry, chord2) in self.tree.nearest_neighbor_iter_with_distance_2(&query) {
            if chord2 > max_chord2 {
                search.reached_radius = true;
                break;
            }
            search.examined += 1;
            let Some(slot) = &self.slots[entry.data as usize] else { continue };
            if !slot.available {
                search.skipped_unavailable += 1;
            } else if slot.skills & bit == 0 {
                search.skipped_skill += 1;
            } else {
                match skip(&slot.id) {
                    Some(Skip::Capped) => search.skipped_capped += 1,
                    Some(Skip::AlreadyOffered) => {}
                    None => {
                        let distance_m = (geodesy::chord_to_metres(chord2.sqrt()) * 100.0).round() / 100.0;
                        chosen.push(VolunteerChoice { id: slot.id.clone(), distance_m });
                        if chosen.len() == k {
                            break;
                        }
                    }
                }
            }
        }
        (chosen, search)
    }
}

/// Why [`VolunteerIndex::nearest_except`] passes over a qualified volunteer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// They already had the hourly maximum of offers.
    Capped,
    /// They were already offered this case.
    AlreadyOffered,
}

/// Offers sent to each volunteer in the last hour, for the cap that protects volunteers from
/// alert fatigue. Fed from the offers stream, so it counts the offers of every router replica.
#[derive(Debug, Default)]
pub struct OfferLedger {
    sent: HashMap<String, VecDeque<i64>>,
}

const HOUR_SECONDS: i64 = 3600;

impl OfferLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Notes an offer to `volunteer` at `at` (unix seconds).
    pub fn record(&mut self, volunteer: &str, at: i64) {
        let times = self.sent.entry(volunteer.to_owned()).or_default();
        times.push_back(at);
        while times.front().is_some_and(|t| *t <= at - HOUR_SECONDS) {
            times.pop_front();
        }
    }

    /// Offers to `volunteer` in the hour before `now` (unix seconds).
    pub fn in_last_hour(&self, volunteer: &str, now: i64) -> usize {
        self.sent.get(volunteer).map_or(0, |times| times.iter().filter(|t| **t > now - HOUR_SECONDS).count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use linkbus_bus::wire::Location;

    fn v(id: &str, lon: f64, lat: f64, available: bool, skills: &[&str]) -> VolunteerStatus {
        VolunteerStatus {
            id: id.into(),
            location: Location { lon, lat },
            available,
            skills: skills.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn filters_ranks_and_follows_updates() {
        let roster = [
            v("near-busy", -122.4001, 37.7749, false, &["first_aid"]),
            v("near-other-skill", -122.4002, 37.7749, true, &["cleanup"]),
            v("second", -122.4100, 37.7749, true, &["first_aid", "cleanup"]),
            v("first", -122.4050, 37.7749, true, &["first_aid"]),
            v("far", -122.5, 37.7749, true, &["first_aid"]),
        ];
        let mut idx = VolunteerIndex::from_roster(&roster).expect("index");
        let (got, search) = idx.nearest(-122.4, 37.7749, "first_aid", 5, 2_000.0);
        assert_eq!(got.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["first", "second"]);
        assert!((got[0].distance_m - 440.0).abs() < 5.0, "{got:?}");
        assert_eq!((search.skipped_unavailable, search.skipped_skill, search.reached_radius), (1, 1, true));

        idx.upsert(&v("near-busy", -122.4001, 37.7749, true, &["first_aid"])).expect("upsert");
        idx.upsert(&v("far", -122.4003, 37.7749, true, &["first_aid"])).expect("move");
        assert!(idx.remove("second"));
        let (got, _) = idx.nearest(-122.4, 37.7749, "first_aid", 2, 2_000.0);
        assert_eq!(got.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["near-busy", "far"]);
        assert_eq!(idx.nearest(-122.4, 37.7749, "unknown_skill", 2, 2_000.0).0, vec![]);
        assert_eq!(idx.len(), 4);
    }

    #[test]
    fn nearest_equals_a_brute_force_scan_on_random_data() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let skills = ["first_aid", "cpr", "cleanup"];
        let roster: Vec<VolunteerStatus> = (0..5_000)
            .map(|n| {
                let mine: Vec<&str> = skills.iter().copied().filter(|_| rng.random_bool(0.4)).collect();
                v(
                    &format!("v{n}"),
                    116.3 + rng.random_range(0.0..0.2),
                    39.8 + rng.random_range(0.0..0.2),
                    rng.random_bool(0.3),
                    &mine,
                )
            })
            .collect();
        let idx = VolunteerIndex::from_roster(&roster).expect("index");
        for _ in 0..200 {
            let (lon, lat) = (116.3 + rng.random_range(0.0..0.2), 39.8 + rng.random_range(0.0..0.2));
            let skill = skills[rng.random_range(0..skills.len())];
            let (k, radius) = (rng.random_range(1..8), rng.random_range(200.0..3_000.0));
            let mut brute: Vec<(f64, &str)> = roster
                .iter()
                .filter(|r| r.available && r.skills.iter().any(|s| s == skill))
                .map(|r| (geodesy::haversine_m(lon, lat, r.location.lon, r.location.lat), r.id.as_str()))
                .filter(|(d, _)| *d <= radius)
                .collect();
            brute.sort_by(|a, b| a.0.total_cmp(&b.0));
            brute.truncate(k);
            let (got, _) = idx.nearest(lon, lat, skill, k, radius);
            assert_eq!(
                got.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
                brute.iter().map(|b| b.1).collect::<Vec<_>>()
            );
            for (c, b) in got.iter().zip(&brute) {
                assert!((c.distance_m - b.0).abs() < 0.01, "{} vs {}", c.distance_m, b.0);
            }
        }
    }
}
