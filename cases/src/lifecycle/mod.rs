//! The case state machine, pure: a record and an event in, the next record and the messages to
//! send out. No NATS, no clock of its own (`now` is an argument), so every rule is testable.
//!
//! ```text
//! routed ──accept──► accepted ──progress──► in_progress ──resolve──► resolved ──close──► closed
//!   │  ▲                 │                      │                       │ rate(solved=false)
//!   │  └─ reject: next candidate (else `rejected`, dispatchers alerted)  └──► accepted (reopened)
//!   └── no accept by the deadline: escalate up the department's ladder, alert dispatchers
//! any open state ──cancel (dispatcher, or the source)──► cancelled
//! any open state ──update (the source)──► same state, `source_updated` on the timeline
//! ```
//!
//! **Source updates.** The system that reported a case (actor kind `source`, id its CloudEvents
//! `source`) may update it (`update`), withdraw it (`cancel`) or say it is done (`resolve`, from
//! any open state before resolved) — its own cases only. A source message delivered twice is
//! recorded once ([`is_repeat`]).
//!
//! One concept per module, none using another in a cycle (each uses only those listed before
//! it):
//! - `policy`: the rules — deadlines by priority, the offer timeout, the duplicate policy;
//! - `outcome`: what a transition returns ([`Outcome`], [`Effect`], [`Refused`]) and the
//!   timeline entries it writes;
//! - `open`: the record of a newly routed case ([`open()`]);
//! - `offers`: volunteers' answers and the offer cascade ([`answer`]);
//! - `rating`: the reporter's rating and reopening;
//! - `escalation`: the departments' [`Ladder`], what is due ([`next_due`]) and firing it
//!   ([`tick`]);
//! - `merging`: duplicate reports ([`is_duplicate`], [`merge`], [`split`]);
//! - `actions`: departments', dispatchers', residents' and sources' actions ([`act`],
//!   [`is_repeat`]);
//! - `replay`: an action from a record or a simulation, at the time it happened ([`replay()`]).

mod actions;
mod escalation;
mod merging;
mod offers;
mod open;
mod outcome;
mod policy;
mod rating;
mod replay;

pub use actions::{act, is_repeat};
pub use escalation::{Ladder, next_due, tick};
pub use merging::{is_duplicate, merge, primary, split};
pub use offers::{answer, volunteer_step};
pub use open::{open, report_ref};
pub use outcome::{Effect, Outcome, Refused};
pub use policy::{Deadlines, MergePolicy, Policy};
pub use replay::{MAX_AFTER_OPEN_SECS, MAX_ORIGIN_CHARS, replay};

#[cfg(test)]
pub(crate) mod tests;
