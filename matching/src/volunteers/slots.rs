//! Who the index knows: a slot per volunteer (id, unit vector, availability, skills as bits),
//! ids mapped to slot numbers and skill names to bit numbers, and what an entry of each tree
//! carries of them ([`Tag`] in the tree of everyone, [`Who`] in a skill's tree).
//!
//! Slot numbers are reused once freed, so a tree entry stays a few bytes whatever the id.

use std::sync::Arc;

use foldhash::HashMap;
use linkbus_wire::VolunteerStatus;
use rstar::primitives::GeomWithData;

use super::walk::Point;

/// More distinct skills than the index can hold (64).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("volunteer skill {0:?} would be the 65th distinct skill; at most 64 are supported")]
pub struct TooManySkills(pub String);

/// What the tree of everyone knows of a volunteer: enough to say why they were passed over
/// without touching their slot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Tag {
    pub(super) skills: u64,
    pub(super) slot: u32,
    pub(super) available: bool,
}

/// An entry of the tree of everyone.
pub(super) type Anyone = GeomWithData<Point, Tag>;
/// An entry of a skill's tree of available volunteers.
pub(super) type Qualified = GeomWithData<Point, Who>;

/// Longest id (in bytes) a skill tree keeps in its entries.
pub(super) const INLINE_ID: usize = 35;

/// Whom an entry of a skill tree stands for: the slot, and the id itself when it is short (as ids
/// nearly always are), so that the skip check and the choice read it from the entry rather than
/// from the slot and the string's heap, two cache misses per candidate in an index of a million.
/// An entry stays within the size of a tree node (72 bytes) either way.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Who {
    pub(super) slot: u32,
    /// Length of the id, or `u8::MAX` when it is too long to keep here.
    len: u8,
    id: [u8; INLINE_ID],
}

impl Who {
    pub(super) fn new(slot: u32, id: &str) -> Self {
        let mut who = Who { slot, len: u8::MAX, id: [0; INLINE_ID] };
        if id.len() <= INLINE_ID {
            who.len = id.len() as u8;
            who.id[..id.len()].copy_from_slice(id.as_bytes());
        }
        who
    }
}

/// A volunteer as the index keeps them.
#[derive(Debug, Clone)]
pub(super) struct Slot {
    /// Shared with the key of the id map: one allocation per volunteer.
    pub(super) id: Arc<str>,
    pub(super) xyz: Point,
    pub(super) available: bool,
    pub(super) skills: u64,
}

impl Slot {
    pub(super) fn tag(&self, slot: u32) -> Tag {
        Tag { skills: self.skills, slot, available: self.available }
    }

    /// The skills whose trees hold this volunteer: all of theirs when available, else none.
    pub(super) fn searchable(&self) -> u64 {
        if self.available { self.skills } else { 0 }
    }
}

/// The bit numbers set in `mask`, lowest first.
pub(super) fn bits(mut mask: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        (mask != 0).then(|| {
            let bit = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            bit
        })
    })
}

/// Every volunteer known, by slot number, and the skills ever seen, by bit number.
#[derive(Debug, Clone, Default)]
pub(super) struct Slots {
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    by_id: HashMap<Arc<str>, u32>,
    /// Skill names by bit number (a scan of at most 64 beats hashing the name).
    skill_names: Vec<String>,
}

impl Slots {
    /// Nobody yet, room for `volunteers` without growing, the skills `names` known already (bit
    /// `n` for `names[n]`; checked by the caller: at most 64, none twice).
    pub(super) fn with_skills(names: Vec<String>, volunteers: usize) -> Self {
        Self {
            slots: Vec::with_capacity(volunteers),
            by_id: HashMap::with_capacity_and_hasher(volunteers, Default::default()),
            skill_names: names,
            ..Self::default()
        }
    }

    /// Number of volunteers known.
    pub(super) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// The names of the skills ever seen, by bit number.
    pub(super) fn skill_names(&self) -> &[String] {
        &self.skill_names
    }

    /// The slot number of a volunteer known.
    pub(super) fn number(&self, id: &str) -> Option<u32> {
        self.by_id.get(id).copied()
    }

    /// The volunteer in slot `n`, one in use.
    pub(super) fn get(&self, n: u32) -> &Slot {
        self.slots[n as usize].as_ref().expect("a slot in use is filled")
    }

    /// The volunteer in slot `n`, one in use, to change in place.
    pub(super) fn get_mut(&mut self, n: u32) -> &mut Slot {
        self.slots[n as usize].as_mut().expect("a slot in use is filled")
    }

    /// Every volunteer known with their slot number, in slot order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (u32, &Slot)> {
        self.slots.iter().enumerate().filter_map(|(n, slot)| Some((n as u32, slot.as_ref()?)))
    }

    /// What the index keeps of `v`, allotting bits to skills not seen before; refuses a 65th
    /// distinct skill (those of `v`'s skills allotted before it keep their bits).
    pub(super) fn slot_for(&mut self, v: &VolunteerStatus) -> Result<Slot, TooManySkills> {
        Ok(Slot {
            id: Arc::from(v.id.as_str()),
            xyz: crate::geodesy::unit_vector(v.location.lon, v.location.lat),
            available: v.available,
            skills: self.skills_of(&v.skills)?,
        })
    }

    /// The bits of `skills`, allotting the next one to each skill not seen before; refuses a
    /// 65th distinct skill as [`Slots::slot_for`] does.
    pub(super) fn skills_of(&mut self, skills: &[String]) -> Result<u64, TooManySkills> {
        let mut bits = 0u64;
        for skill in skills {
            bits |= 1 << self.skill_bit(skill)?;
        }
        Ok(bits)
    }

    /// The bit number of `skill`, allotting the next one to a new skill.
    fn skill_bit(&mut self, skill: &str) -> Result<u8, TooManySkills> {
        if let Some(bit) = self.bit_of(skill) {
            return Ok(bit);
        }
        let n = self.skill_names.len();
        if n >= 64 {
            return Err(TooManySkills(skill.to_owned()));
        }
        self.skill_names.push(skill.to_owned());
        Ok(n as u8)
    }

    /// The bit number of a skill someone has or had.
    pub(super) fn bit_of(&self, skill: &str) -> Option<u8> {
        self.skill_names.iter().position(|s| s == skill).map(|n| n as u8)
    }

    /// Gives a volunteer not yet known a slot (one freed before, or a new one at the end) and
    /// maps its id there; its number.
    pub(super) fn claim(&mut self, slot: Slot) -> u32 {
        let n = match self.free.pop() {
            Some(n) => n,
            None => {
                self.slots.push(None);
                (self.slots.len() - 1) as u32
            }
        };
        self.by_id.insert(Arc::clone(&slot.id), n);
        self.slots[n as usize] = Some(slot);
        n
    }

    /// Forgets where a volunteer was: its slot's number and what it held (`None` when unknown).
    pub(super) fn release(&mut self, id: &str) -> Option<(u32, Option<Slot>)> {
        let n = self.by_id.remove(id)?;
        let old = self.slots[n as usize].take();
        self.free.push(n);
        Some((n, old))
    }

    /// The id of the volunteer a skill tree's entry stands for.
    pub(super) fn id_of<'a>(&'a self, who: &'a Who) -> &'a str {
        match who.id.get(..usize::from(who.len)) {
            Some(id) => std::str::from_utf8(id).expect("an id kept inline is a whole string"),
            None => &self.get(who.slot).id,
        }
    }
}

#[cfg(test)]
mod tests {
    use rstar::RTreeNode;

    use super::*;

    fn status(id: &str, skills: &[&str]) -> VolunteerStatus {
        super::super::testing::v(id, 116.4, 39.9, true, skills)
    }

    fn claim(slots: &mut Slots, id: &str) -> u32 {
        let slot = slots.slot_for(&status(id, &["cpr"])).expect("one skill");
        slots.claim(slot)
    }

    #[test]
    fn an_inline_id_costs_no_memory() {
        let node = size_of::<RTreeNode<GeomWithData<Point, u32>>>();
        assert_eq!(size_of::<RTreeNode<Qualified>>(), node);
        assert_eq!(size_of::<RTreeNode<Anyone>>(), node);
    }

    #[test]
    fn bits_lists_the_bits_set_lowest_first() {
        assert_eq!(bits(0).count(), 0);
        assert_eq!(bits(0b1011_0000_0001).collect::<Vec<_>>(), [0, 8, 9, 11]);
        assert_eq!(bits(1 << 63 | 2).collect::<Vec<_>>(), [1, 63]);
        assert_eq!(bits(u64::MAX).count(), 64);
    }

    #[test]
    fn an_id_is_read_inline_when_short_and_from_the_slot_when_long() {
        let mut slots = Slots::default();
        let short = "s".repeat(INLINE_ID);
        let long = "l".repeat(INLINE_ID + 1);
        let a = claim(&mut slots, &short);
        let b = claim(&mut slots, &long);
        let (who_a, who_b) = (Who::new(a, &short), Who::new(b, &long));
        assert_eq!(usize::from(who_a.len), INLINE_ID);
        assert_eq!(who_b.len, u8::MAX);
        assert_eq!(slots.id_of(&who_a), short);
        assert_eq!(slots.id_of(&who_b), long);
        // An empty id is kept inline too.
        assert_eq!(slots.id_of(&Who::new(7, "")), "");
    }

    #[test]
    fn freed_slots_are_claimed_again_before_new_ones() {
        let mut slots = Slots::default();
        assert_eq!([claim(&mut slots, "a"), claim(&mut slots, "b"), claim(&mut slots, "c")], [0, 1, 2]);
        let (n, old) = slots.release("b").expect("known");
        assert_eq!((n, old.map(|s| s.id)), (1, Some(Arc::from("b"))));
        assert!(slots.release("b").is_none(), "released twice");
        assert_eq!((slots.len(), slots.number("b")), (2, None));
        assert_eq!(claim(&mut slots, "d"), 1);
        assert_eq!(claim(&mut slots, "e"), 3);
        assert_eq!(
            slots.iter().map(|(n, s)| (n, &*s.id)).collect::<Vec<_>>(),
            [(0, "a"), (1, "d"), (2, "c"), (3, "e")]
        );
        assert_eq!(slots.number("e"), Some(3));
    }

    #[test]
    fn skills_get_bits_in_the_order_first_seen_up_to_64() {
        let mut slots = Slots::default();
        let names = |skills: &[&str]| skills.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(slots.skills_of(&names(&["cpr", "first_aid"])), Ok(0b11));
        assert_eq!(slots.skills_of(&names(&["first_aid", "driving", "cpr"])), Ok(0b111));
        assert_eq!(slots.skills_of(&names(&["driving"])), Ok(0b100));
        assert_eq!((slots.bit_of("driving"), slots.bit_of("cleanup")), (Some(2), None));
        let more: Vec<String> = (3..64).map(|n| format!("s{n}")).collect();
        assert_eq!(slots.skills_of(&more), Ok(!0b111));
        assert_eq!(slots.bit_of("s63"), Some(63));
        // The 65th is refused, but a skill before it in the same list keeps the bit it got.
        let refused = slots.skills_of(&names(&["s5", "s64"]));
        assert_eq!(refused, Err(TooManySkills("s64".into())));
        assert_eq!(slots.skill_names().len(), 64);
        assert_eq!(slots.skills_of(&names(&["s63"])), Ok(1 << 63));
    }

    #[test]
    fn a_slot_is_searchable_in_its_skills_only_while_available() {
        let mut slot = Slots::default().slot_for(&status("a", &["cpr", "driving"])).expect("two skills");
        assert_eq!((slot.searchable(), slot.tag(4)), (0b11, Tag { skills: 0b11, slot: 4, available: true }));
        slot.available = false;
        assert_eq!((slot.searchable(), slot.tag(4).available), (0, false));
        assert_eq!(slot.xyz, crate::geodesy::unit_vector(116.4, 39.9));
    }
}
