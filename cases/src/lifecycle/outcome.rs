//! What a transition gives back: the next record and the messages to send ([`Outcome`],
//! [`Effect`]), or why it was refused ([`Refused`]); and the timeline entries it writes.

use jiff::Timestamp;
use linkbus_wire::explain::{self, Lang, SystemNote};
use linkbus_wire::{Actor, AssignmentReason, CaseRecord, TimelineEntry, TimelineEvent};

/// A message the loop wants sent once the new record is stored.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Give the case to a department (`routed.dept.<department>.<category>`).
    Assign {
        /// The department.
        department: String,
        /// Why.
        reason: AssignmentReason,
    },
    /// Tell a department of a timeline event on a case it had (e.g. merged into another).
    Notify {
        /// The department.
        department: String,
        /// Index of the entry in the record's timeline.
        entry: usize,
    },
    /// Offer the case to a volunteer (`volunteer.<id>.offer`).
    Offer {
        /// The volunteer.
        volunteer_id: String,
        /// Their distance, metres.
        distance_m: f64,
    },
    /// Tell a volunteer their offer is closed (`volunteer.<id>.offer_closed`).
    CloseOffer {
        /// The volunteer.
        volunteer_id: String,
        /// `taken`, `expired` or `case_closed`.
        reason: &'static str,
    },
}

/// The result of a transition.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The record after it.
    pub record: CaseRecord,
    /// What to send.
    pub effects: Vec<Effect>,
}

impl Outcome {
    /// This outcome as the next record of `previous`: its `updated_at` never goes back, though
    /// the transition was decided with another replica's clock or a time taken before a wait,
    /// since readers (the console, the API's pages) take the later-stamped copy of a case as the
    /// newer one.
    pub fn after(mut self, previous: &CaseRecord) -> Self {
        self.record.updated_at = self.record.updated_at.max(previous.updated_at);
        self
    }
}

/// Why an action was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refused {
    /// The actor may not do this to this case.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// Not possible in the case's state, or the request is wrong.
    #[error("{0}")]
    Invalid(String),
}

/// A timeline entry written at `now`.
pub(super) fn entry(
    now: Timestamp,
    event: TimelineEvent,
    actor: &Actor,
    department: Option<&str>,
    note: Option<String>,
) -> TimelineEntry {
    TimelineEntry {
        at: now,
        event,
        actor: actor.clone(),
        department: department.map(str::to_owned),
        note,
        system_note: None,
    }
}

/// A timeline entry written at `now` with linkbus's own `note`: as data, and in English.
pub(super) fn entry_noted(
    now: Timestamp,
    event: TimelineEvent,
    actor: &Actor,
    department: Option<&str>,
    note: SystemNote,
) -> TimelineEntry {
    TimelineEntry {
        note: Some(note.render(Lang::En, &explain::Ids)),
        system_note: Some(note),
        ..entry(now, event, actor, department, None)
    }
}

/// Appends an entry to the timeline; the record changed at `now`.
pub(super) fn log(
    r: &mut CaseRecord,
    now: Timestamp,
    event: TimelineEvent,
    actor: &Actor,
    department: Option<&str>,
    note: Option<String>,
) {
    r.timeline.push(entry(now, event, actor, department, note));
    r.updated_at = now;
}

/// Appends an entry with linkbus's own `note` to the timeline; the record changed at `now`.
pub(super) fn log_noted(
    r: &mut CaseRecord,
    now: Timestamp,
    event: TimelineEvent,
    actor: &Actor,
    department: Option<&str>,
    note: SystemNote,
) {
    r.timeline.push(entry_noted(now, event, actor, department, note));
    r.updated_at = now;
}
