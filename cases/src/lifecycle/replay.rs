//! Replayed and simulated actions ([`linkbus_wire::ReplayRequest`]): an action a party really
//! took according to a record (a city's closed 311 request), or a simulated one, applied with
//! the time it happened instead of the clock's, and marked on the timeline as replayed.
//!
//! Why a time of its own: figures computed from the timeline (time to accept, time to resolve)
//! must be the record's, not the replayer's scheduling delay. The time is given relative to the
//! case's opening, so the replayer needs no clock of the case book's; it must not lie in the
//! future (no one can replay what has not happened yet) nor before the case's last entry (the
//! timeline stays in order).

use jiff::{SignedDuration, Timestamp};
use linkbus_wire::{Action, ActorKind, CaseRecord, ReplayRequest};

use super::actions::act;
use super::escalation::Ladder;
use super::outcome::{Outcome, Refused};
use super::policy::Policy;

/// The longest `origin` a replayed action may carry, in characters.
pub const MAX_ORIGIN_CHARS: usize = 200;
/// The latest a replayed action may lie after the case's opening: 30 years, in seconds.
pub const MAX_AFTER_OPEN_SECS: f64 = 30.0 * 365.25 * 86_400.0;

/// Applies `req` to `record` at the case's opening plus `req.after_open_secs`, if that is not
/// later than `now` nor earlier than the record's last entry; every timeline entry the action
/// writes gets `req.origin` in its note.
pub fn replay(
    record: &CaseRecord,
    req: &ReplayRequest,
    now: Timestamp,
    policy: &Policy,
    ladder: &Ladder,
) -> Result<Outcome, Refused> {
    if !matches!(req.actor.kind, ActorKind::Department | ActorKind::Source | ActorKind::Resident) {
        return Err(Refused::Forbidden("a replay acts as a department, the source system or the resident".into()));
    }
    if matches!(req.action, Action::Split { .. }) {
        return Err(Refused::Invalid("a split cannot be replayed".into()));
    }
    let origin = req.origin.trim();
    if origin.is_empty() || origin.chars().count() > MAX_ORIGIN_CHARS {
        return Err(Refused::Invalid(format!("origin must be 1 to {MAX_ORIGIN_CHARS} characters")));
    }
    let secs = req.after_open_secs;
    if !(0.0..=MAX_AFTER_OPEN_SECS).contains(&secs) {
        return Err(Refused::Invalid(format!("after_open_secs {secs} is not between 0 and {MAX_AFTER_OPEN_SECS}")));
    }
    let after = SignedDuration::try_from_secs_f64(secs).map_err(|e| Refused::Invalid(e.to_string()))?;
    let at = record.created_at.checked_add(after).map_err(|e| Refused::Invalid(e.to_string()))?;
    if at > now {
        return Err(Refused::Invalid(format!("not yet: {at} is in the future")));
    }
    if let Some(last) = record.timeline.last().filter(|last| at < last.at) {
        return Err(Refused::Invalid(format!("{at} is before the case's last entry ({})", last.at)));
    }
    let mut outcome = act(record, &req.actor, &req.action, at, policy, ladder)?;
    for entry in outcome.record.timeline.iter_mut().skip(record.timeline.len()) {
        // The origin (SIMULATED, or the record replayed) must stay with the words, in every
        // language: such an entry keeps only its English note.
        entry.system_note = None;
        entry.note = Some(match entry.note.take() {
            Some(note) => format!("{note} ({origin})"),
            None => origin.to_owned(),
        });
    }
    Ok(outcome)
}
