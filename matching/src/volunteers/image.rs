//! A volunteer index's content as plain data ([`RosterImage`]): saved aside, it is loaded again
//! without parsing and checking every volunteer's status, and without the trigonometry of
//! placing them, since it keeps each one as the index does (a unit vector, skills as bits).
//!
//! An image is read from outside the process, so [`RosterBuilder::from_image`] checks all of it
//! and refuses it whole if any part is wrong: a volunteer index half loaded would route as if
//! the missing volunteers did not exist.

use std::sync::Arc;

use linkbus_wire::{VolunteerStatus, is_category};
use serde::{Deserialize, Serialize};

use super::index::VolunteerIndex;
use super::roster::RosterBuilder;
use super::slots::{Slot, Slots};

/// How far from 1 the length of a volunteer's unit vector may be (rounding, not a wrong point).
const UNIT_TOLERANCE: f64 = 1e-9;

/// Everyone an index holds, as the index keeps them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RosterImage {
    /// Skill names by bit number.
    pub skills: Vec<String>,
    /// Each volunteer once.
    pub volunteers: Vec<ImageEntry>,
}

/// One volunteer of a [`RosterImage`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageEntry {
    /// Volunteer id.
    pub id: String,
    /// Position as a unit vector ([`crate::geodesy::unit_vector`]).
    pub xyz: [f64; 3],
    /// On duty and free to take an offer.
    pub available: bool,
    /// Skills, bit `n` standing for [`RosterImage::skills`]`[n]`.
    pub skills: u64,
}

/// Why an image was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BadImage {
    /// More than 64 skill names, or one that is not a category's syntax, or one twice.
    #[error("skill names: {0}")]
    Skills(String),
    /// A volunteer that could not be in an index.
    #[error("volunteer {index}: {reason}")]
    Volunteer {
        /// Its place in the image.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
}

impl VolunteerIndex {
    /// Everyone this index holds, as it keeps them, borrowed: it serialises as its
    /// [`RosterImage`] would, without copying a million volunteers first.
    pub fn image(&self) -> ImageView<'_> {
        ImageView(self.slots())
    }
}

/// An index's content, borrowed ([`VolunteerIndex::image`]).
#[derive(Debug, Clone, Copy)]
pub struct ImageView<'a>(&'a Slots);

impl ImageView<'_> {
    /// The same content, owned.
    pub fn to_image(&self) -> RosterImage {
        RosterImage {
            skills: self.0.skill_names().to_vec(),
            volunteers: self
                .entries()
                .map(|e| ImageEntry { id: e.id.to_owned(), xyz: e.xyz, available: e.available, skills: e.skills })
                .collect(),
        }
    }

    fn entries(&self) -> impl Iterator<Item = EntryView<'_>> {
        self.0.iter().map(|(_, slot)| EntryView {
            id: &slot.id,
            xyz: slot.xyz,
            available: slot.available,
            skills: slot.skills,
        })
    }
}

/// [`ImageEntry`], borrowed: the same fields in the same order, so it serialises alike.
#[derive(Serialize)]
struct EntryView<'a> {
    id: &'a str,
    xyz: [f64; 3],
    available: bool,
    skills: u64,
}

impl Serialize for ImageView<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeSeq, SerializeStruct};
        struct Entries<'a>(ImageView<'a>);
        impl Serialize for Entries<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut seq = serializer.serialize_seq(Some(self.0.0.len()))?;
                for entry in self.0.entries() {
                    seq.serialize_element(&entry)?;
                }
                seq.end()
            }
        }
        let mut image = serializer.serialize_struct("RosterImage", 2)?;
        image.serialize_field("skills", self.0.skill_names())?;
        image.serialize_field("volunteers", &Entries(*self))?;
        image.end()
    }
}

impl RosterBuilder {
    /// A roster holding everyone of `image`, to take later changes ([`RosterBuilder::put`],
    /// [`RosterBuilder::remove`]) before it is built; the whole image is refused if any part of
    /// it could not have come from an index.
    pub fn from_image(image: RosterImage) -> Result<Self, BadImage> {
        check_skills(&image.skills)?;
        let known = if image.skills.len() == 64 { u64::MAX } else { (1u64 << image.skills.len()) - 1 };
        let mut slots = Slots::with_skills(image.skills, image.volunteers.len());
        for (index, v) in image.volunteers.into_iter().enumerate() {
            let bad = |reason: String| BadImage::Volunteer { index, reason };
            if !VolunteerStatus::is_id(&v.id) {
                return Err(bad(format!("{:?} is not a volunteer id", v.id)));
            }
            if slots.number(&v.id).is_some() {
                return Err(bad(format!("{:?} is listed twice", v.id)));
            }
            let length = v.xyz.iter().map(|c| c * c).sum::<f64>().sqrt();
            let on_sphere = (1.0 - length).abs() <= UNIT_TOLERANCE;
            if !on_sphere {
                return Err(bad(format!("{:?} is not placed on the sphere (length {length})", v.id)));
            }
            if v.skills & !known != 0 {
                return Err(bad(format!("{:?} has a skill bit with no name", v.id)));
            }
            slots.claim(Slot { id: Arc::from(v.id), xyz: v.xyz, available: v.available, skills: v.skills });
        }
        Ok(Self::with_slots(slots))
    }
}

/// At most 64 names, each a category's syntax, none twice.
fn check_skills(names: &[String]) -> Result<(), BadImage> {
    if names.len() > 64 {
        return Err(BadImage::Skills(format!("{} names, at most 64", names.len())));
    }
    for (n, name) in names.iter().enumerate() {
        if !is_category(name) {
            return Err(BadImage::Skills(format!("{name:?} is not a skill")));
        }
        if names[..n].contains(name) {
            return Err(BadImage::Skills(format!("{name:?} twice")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::v;
    use super::*;

    fn index() -> VolunteerIndex {
        VolunteerIndex::from_roster([
            v("a", 116.40, 39.90, true, &["cpr", "first_aid"]),
            v("b", 116.41, 39.91, false, &["first_aid"]),
            v("c", 116.42, 39.92, true, &[]),
        ])
        .expect("valid")
    }

    fn sorted(mut positions: Vec<super::super::VolunteerPosition>) -> Vec<super::super::VolunteerPosition> {
        positions.sort_by(|x, y| x.id.cmp(&y.id));
        positions
    }

    #[test]
    fn an_index_loaded_from_its_image_holds_and_finds_the_same_volunteers() {
        let index = index();
        let image = index.image().to_image();
        assert_eq!(image.skills, ["cpr", "first_aid"]);
        assert_eq!(image.volunteers.len(), 3);
        let loaded = RosterBuilder::from_image(image.clone()).expect("its own image").build();
        assert_eq!(loaded.image().to_image(), image, "the same slots, bit for bit");
        assert_eq!(sorted(loaded.positions()), sorted(index.positions()));
        assert_eq!(loaded.available(), 2);
        let near = |i: &VolunteerIndex, skill| i.nearest(116.40, 39.90, skill, 5, 10_000.0).0;
        assert_eq!(near(&loaded, "cpr"), near(&index, "cpr"));
        assert_eq!(near(&loaded, "first_aid").len(), 1, "b is not available");
    }

    #[test]
    fn an_image_serialised_borrowed_reads_back_as_the_owned_image() {
        let index = index();
        let bytes = postcard::to_allocvec(&index.image()).expect("encodes");
        let read: RosterImage = postcard::from_bytes(&bytes).expect("decodes");
        assert_eq!(read, index.image().to_image());
        assert_eq!(bytes, postcard::to_allocvec(&read).expect("encodes"), "the same bytes either way");
    }

    #[test]
    fn an_image_takes_later_changes_before_it_is_built() {
        let mut roster = RosterBuilder::from_image(index().image().to_image()).expect("valid");
        assert!(roster.remove("c"));
        roster.put(&v("b", 116.41, 39.91, true, &["first_aid", "boat"])).expect("valid");
        roster.put(&v("d", 116.43, 39.93, true, &["boat"])).expect("valid");
        let built = roster.build();
        let ids: Vec<String> = sorted(built.positions()).into_iter().map(|p| p.id).collect();
        assert_eq!(ids, ["a", "b", "d"]);
        assert_eq!(built.nearest(116.40, 39.90, "boat", 5, 10_000.0).0.len(), 2);
        assert_eq!(built.nearest(116.40, 39.90, "first_aid", 5, 10_000.0).0.len(), 2, "b is available now");
    }

    #[test]
    fn an_image_with_any_wrong_part_is_refused_whole() {
        let good = index().image().to_image();
        let with = |f: &dyn Fn(&mut RosterImage)| {
            let mut image = good.clone();
            f(&mut image);
            RosterBuilder::from_image(image).map(|_| ()).expect_err("refused")
        };
        let volunteer =
            |index: usize| move |e: BadImage| matches!(e, BadImage::Volunteer { index: i, .. } if i == index);
        assert!(volunteer(1)(with(&|i| i.volunteers[1].id = "no spaces".into())));
        assert!(volunteer(1)(with(&|i| i.volunteers[1].id = String::new())));
        assert!(volunteer(2)(with(&|i| i.volunteers[2].id = "a".into())), "a twice");
        assert!(volunteer(0)(with(&|i| i.volunteers[0].xyz = [1.0, 1.0, 0.0])));
        assert!(volunteer(0)(with(&|i| i.volunteers[0].xyz = [0.0, 0.0, 0.0])));
        assert!(volunteer(0)(with(&|i| i.volunteers[0].xyz = [f64::NAN, 0.0, 1.0])));
        assert!(volunteer(2)(with(&|i| i.volunteers[2].skills = 0b100)), "bit 2 has no name");
        assert!(matches!(with(&|i| i.skills.push("cpr".into())), BadImage::Skills(_)));
        assert!(matches!(with(&|i| i.skills[0] = "CPR".into()), BadImage::Skills(_)));
        assert!(matches!(with(&|i| i.skills = (0..65).map(|n| format!("s{n}")).collect()), BadImage::Skills(_)));
        // The edges that are fine: 64 skills, the highest bit named; a vector off by rounding.
        let mut full = good.clone();
        full.skills = (0..64).map(|n| format!("s{n}")).collect();
        full.volunteers[0].skills = 1 << 63;
        full.volunteers[1].xyz[0] += 1e-12;
        let built = RosterBuilder::from_image(full).expect("64 skills and rounding are fine").build();
        assert_eq!(built.nearest(116.40, 39.90, "s63", 5, 10_000.0).0.len(), 1);
    }
}
