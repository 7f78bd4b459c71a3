//! What is due and the escalation ladder: a missed accept or resolve deadline takes the case one
//! step up its departments' ladder (at the top, to the dispatchers); expired offers cascade.

use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp};
use linkbus_wire::explain::{Overdue, SystemNote};
use linkbus_wire::{Actor, AssignmentReason, CaseRecord, CaseState, OfferStatus, TimelineEvent, VolunteerChoice};

use super::offers::cascade;
use super::outcome::{Effect, Outcome, log, log_noted};
use super::policy::Policy;

/// What the loop needs to know of the region's departments.
#[derive(Debug, Clone, Default)]
pub struct Ladder {
    parents: HashMap<String, Option<String>>,
    catch_all: String,
}

impl Ladder {
    /// From `(department, parent)` pairs and the catch-all (the dispatchers' desk).
    pub fn new(departments: impl IntoIterator<Item = (String, Option<String>)>, catch_all: &str) -> Self {
        Self { parents: departments.into_iter().collect(), catch_all: catch_all.to_owned() }
    }

    /// True when the department exists.
    pub fn exists(&self, department: &str) -> bool {
        self.parents.contains_key(department)
    }

    fn parent(&self, department: &str) -> Option<&str> {
        self.parents.get(department)?.as_deref()
    }
}

/// The earliest time something is due on the case: a deadline or an offer's expiry.
pub fn next_due(r: &CaseRecord) -> Option<Timestamp> {
    let offers = r.offers.iter().filter(|o| o.status == OfferStatus::Offered).map(|o| o.expires_at);
    [r.accept_by, r.resolve_by].into_iter().flatten().chain(offers).min()
}

/// What is due at `now`: expired offers cascade, a missed accept or resolve deadline escalates.
/// `None` when nothing was due (so a late or repeated tick changes nothing).
pub fn tick(
    record: &CaseRecord,
    now: Timestamp,
    policy: &Policy,
    ladder: &Ladder,
    next: impl FnOnce(&[&str]) -> Vec<VolunteerChoice>,
) -> Option<Outcome> {
    if next_due(record).is_none_or(|due| due > now) || record.merged_into.is_some() {
        return None;
    }
    let mut r = record.clone();
    let mut effects = Vec::new();
    let system = Actor::system();

    let mut expired = false;
    for o in r.offers.iter_mut().filter(|o| o.status == OfferStatus::Offered && o.expires_at <= now) {
        o.status = OfferStatus::Expired;
        effects.push(Effect::CloseOffer { volunteer_id: o.volunteer_id.clone(), reason: "expired" });
        expired = true;
    }
    if expired {
        log(&mut r, now, TimelineEvent::VolunteerExpired, &system, None, None);
        cascade(&mut r, now, policy, next, &mut effects);
    }

    let deadlines = policy.deadlines(r.priority);
    if r.state == CaseState::Routed && r.accept_by.is_some_and(|t| t <= now) {
        let from: Vec<String> = r.departments.clone();
        escalate(&mut r, now, &from, Overdue::NotAccepted, deadlines.accept, ladder, &mut effects, |r, t| {
            r.accept_by = t
        });
    }
    if matches!(r.state, CaseState::Accepted | CaseState::InProgress) && r.resolve_by.is_some_and(|t| t <= now) {
        let from: Vec<String> = r.accepted_by.iter().cloned().collect();
        escalate(&mut r, now, &from, Overdue::NotResolved, deadlines.resolve, ladder, &mut effects, |r, t| {
            r.resolve_by = t
        });
    }
    Some(Outcome { record: r, effects })
}

/// One step up the ladder from `from`: the parent departments not yet involved, else the
/// catch-all; at the top, the dispatchers are alerted and the deadline stops.
#[allow(clippy::too_many_arguments)]
fn escalate(
    r: &mut CaseRecord,
    now: Timestamp,
    from: &[String],
    overdue: Overdue,
    deadline: SignedDuration,
    ladder: &Ladder,
    effects: &mut Vec<Effect>,
    set_deadline: impl Fn(&mut CaseRecord, Option<Timestamp>),
) {
    let mut up: Vec<String> = from
        .iter()
        .filter_map(|d| ladder.parent(d))
        .filter(|p| !r.departments.iter().any(|d| d == p))
        .map(str::to_owned)
        .collect();
    up.dedup();
    if up.is_empty() && !r.departments.contains(&ladder.catch_all) {
        up.push(ladder.catch_all.clone());
    }
    r.escalations += 1;
    r.escalation_open = true;
    if up.is_empty() {
        set_deadline(r, None);
        let note = SystemNote::Escalated { overdue, to: None };
        log_noted(r, now, TimelineEvent::Escalated, &Actor::system(), None, note);
        return;
    }
    set_deadline(r, Some(now + deadline));
    for department in up {
        let note = SystemNote::Escalated { overdue, to: Some(department.clone()) };
        log_noted(r, now, TimelineEvent::Escalated, &Actor::system(), Some(&department), note);
        r.departments.push(department.clone());
        effects.push(Effect::Assign { department, reason: AssignmentReason::Escalated });
    }
}
