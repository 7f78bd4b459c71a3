//! Volunteers' live positions, availability and skills, the `k` nearest available ones with a
//! skill within a radius, and the hourly offer ledger.
//!
//! - `index`: the live [`VolunteerIndex`]: its updates, the nearest search and its account of
//!   who was passed over;
//! - `roster`: a whole roster indexed in one bulk load ([`RosterBuilder`],
//!   [`VolunteerIndex::from_roster`]);
//! - `slots`: who is known: a slot per volunteer, ids and skill names numbered, what a tree
//!   entry carries of them;
//! - `walk`: the walks over rstar's nodes that its API lacks: nearest first within a bound,
//!   and every entry within a distance;
//! - `tree`: the R-tree upkeep rstar lacks: a bulk load with even leaves, a move in place;
//! - `image`: an index's content as plain data, to save aside and load again ([`RosterImage`]);
//! - `ledger`: the [`OfferLedger`] of offers in the last hour;
//! - `testing` (tests only): a volunteer's status in one line.
//!
//! They depend on one another in one direction only: `walk` on nothing of the index, `tree` on
//! `walk`'s point, `slots` on `walk`'s point, `index` on `slots`, `tree` and `walk`, `roster`
//! on `index`, `slots` and `tree`, `image` on `index`, `roster` and `slots`; `ledger` stands
//! alone.

mod image;
mod index;
mod ledger;
mod roster;
mod slots;
#[cfg(test)]
mod testing;
mod tree;
mod walk;

pub use image::{BadImage, ImageEntry, ImageView, RosterImage};
pub(crate) use index::unsearched;
pub use index::{Skip, VolunteerIndex, VolunteerPosition};
pub use ledger::OfferLedger;
pub use roster::RosterBuilder;
pub use slots::TooManySkills;
