//! A roster gathered one volunteer at a time, then indexed in one bulk load: how the service
//! reads the volunteers bucket at start, and [`VolunteerIndex::from_roster`].

use std::borrow::Borrow;

use linkbus_wire::VolunteerStatus;

use super::index::VolunteerIndex;
use super::slots::{Anyone, Qualified, Slots, TooManySkills, Who, bits};
use super::tree::bulk_load;

/// Volunteers gathered one at a time for one bulk load ([`RosterBuilder::build`]), as a roster
/// or a bucket is read: each kept as the index keeps it, so nothing is converted twice.
#[derive(Debug, Default)]
pub struct RosterBuilder {
    slots: Slots,
}

impl RosterBuilder {
    /// Nobody yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everyone in `slots`.
    pub(super) fn with_slots(slots: Slots) -> Self {
        Self { slots }
    }

    /// Adds a volunteer, or replaces one put before; refuses one that would bring a 65th distinct
    /// skill, as [`VolunteerIndex::upsert`] does (nothing of them is kept).
    pub fn put(&mut self, v: &VolunteerStatus) -> Result<(), TooManySkills> {
        let slot = self.slots.slot_for(v)?;
        match self.slots.number(&v.id) {
            Some(n) => *self.slots.get_mut(n) = slot,
            None => {
                self.slots.claim(slot);
            }
        }
        Ok(())
    }

    /// Forgets a volunteer put before (a key deleted); false when unknown.
    pub fn remove(&mut self, id: &str) -> bool {
        self.slots.release(id).is_some()
    }

    /// The index of everyone put and not removed, its trees bulk-loaded.
    pub fn build(self) -> VolunteerIndex {
        let slots = self.slots;
        let mut everyone = Vec::with_capacity(slots.len());
        let mut qualified: Vec<Vec<Qualified>> = vec![Vec::new(); slots.skill_names().len()];
        let mut available = 0;
        for (n, slot) in slots.iter() {
            everyone.push(Anyone::new(slot.xyz, slot.tag(n)));
            for bit in bits(slot.searchable()) {
                qualified[bit].push(Qualified::new(slot.xyz, Who::new(n, &slot.id)));
            }
            available += usize::from(slot.available);
        }
        // The tree of everyone on a thread of its own, the skill trees meanwhile on this one.
        let (everyone, qualified) = std::thread::scope(|scope| {
            let everyone = scope.spawn(|| bulk_load(everyone));
            let qualified = qualified.into_iter().map(bulk_load).collect();
            (everyone.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)), qualified)
        });
        VolunteerIndex::from_parts(slots, everyone, qualified, available)
    }
}

impl VolunteerIndex {
    /// Builds an index from a roster in one bulk load (faster than upserting one by one); of a
    /// volunteer listed twice, the last listing stands.
    pub fn from_roster<V: Borrow<VolunteerStatus>>(roster: impl IntoIterator<Item = V>) -> Result<Self, TooManySkills> {
        let mut builder = RosterBuilder::new();
        for v in roster {
            builder.put(v.borrow())?;
        }
        Ok(builder.build())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::v;
    use super::*;

    #[test]
    fn a_roster_refuses_the_65th_skill_as_upserting_would() {
        let skills: Vec<String> = (0..64).map(|n| format!("s{n}")).collect();
        let with =
            |id: &str, skills: &[String]| VolunteerStatus { skills: skills.to_vec(), ..v(id, 116.4, 39.9, true, &[]) };
        let mut roster = RosterBuilder::new();
        roster.put(&with("a", &skills[..40])).expect("40 skills");
        roster.put(&with("b", &skills[30..])).expect("64 skills in all");
        let refused = roster.put(&with("c", &["s1".into(), "s64".into()])).expect_err("65th skill");
        assert_eq!(refused, TooManySkills("s64".into()));
        let mut upserted =
            VolunteerIndex::from_roster([with("a", &skills[..40]), with("b", &skills[30..])]).expect("64");
        assert_eq!(upserted.upsert(&with("c", &["s1".into(), "s64".into()])), Err(TooManySkills("s64".into())));
        roster.put(&with("d", &skills[10..12])).expect("known skills");
        let index = roster.build();
        assert_eq!(index.len(), 3);
        assert_eq!(index.nearest(116.4, 39.9, "s63", 5, 100.0).0.len(), 1, "b alone has s63");
    }

    #[test]
    fn a_roster_keeps_whoever_is_put_again_after_a_remove() {
        let mut roster = RosterBuilder::new();
        for id in ["a", "b", "c"] {
            roster.put(&v(id, 116.4, 39.9, true, &["cpr"])).expect("valid");
        }
        assert!(roster.remove("a") && roster.remove("b") && !roster.remove("never-put"));
        roster.put(&v("b", 116.5, 39.9, false, &["cpr"])).expect("valid");
        roster.put(&v("e", 116.4, 39.9, true, &["cpr"])).expect("valid");
        let index = roster.build();
        assert_eq!(index.len(), 3);
        let mut ids: Vec<String> = index.positions().into_iter().map(|p| p.id).collect();
        ids.sort();
        assert_eq!(ids, ["b", "c", "e"]);
        assert_eq!(index.available(), 2, "b came back unavailable");
        let near: Vec<String> = index.nearest(116.4, 39.9, "cpr", 5, 1000.0).0.into_iter().map(|c| c.id).collect();
        assert_eq!(near.len(), 2, "{near:?}");
    }
}
