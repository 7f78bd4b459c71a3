//! Actions on a case by departments, dispatchers, residents and source systems: who may do
//! what, in which state, and what each does to the record.

use jiff::Timestamp;
use linkbus_wire::explain::SystemNote;
use linkbus_wire::{Action, Actor, ActorKind, AssignmentReason, CaseRecord, CaseState, Rating, TimelineEvent};

use super::escalation::Ladder;
use super::offers::withdraw_offers;
use super::outcome::{Effect, Outcome, Refused, log, log_noted};
use super::policy::Policy;
use super::rating;

/// Applies an action. `Split` involves two records and is done by [`split`](super::split).
pub fn act(
    record: &CaseRecord,
    actor: &Actor,
    action: &Action,
    now: Timestamp,
    policy: &Policy,
    ladder: &Ladder,
) -> Result<Outcome, Refused> {
    if let Some(primary) = &record.merged_into {
        return Err(Refused::Invalid(format!("case {} was merged into {primary}; act on that case", record.case_id)));
    }
    authorize(record, actor, action)?;
    if let Some(field) = action.blank_required() {
        return Err(Refused::Invalid(format!("{} needs a {field}", action.name())));
    }
    let mut r = record.clone();
    let mut effects = Vec::new();
    let dept = (actor.kind == ActorKind::Department).then_some(actor.id.as_str());
    let state = r.state;
    let invalid = |what: &str| Err(Refused::Invalid(format!("cannot {what} a case that is {}", state.as_str())));
    match action {
        Action::Accept {} => {
            if state != CaseState::Routed {
                return invalid("accept");
            }
            r.state = CaseState::Accepted;
            r.accepted_by = dept.map(str::to_owned);
            r.accept_by = None;
            r.resolve_by = Some(now + policy.deadlines(r.priority).resolve);
            log(&mut r, now, TimelineEvent::Accepted, actor, dept, None);
        }
        Action::Reject { reason } => {
            if state != CaseState::Routed {
                return invalid("reject");
            }
            let reason = reason.trim();
            let d = dept.unwrap_or_default().to_owned();
            r.departments.retain(|x| *x != d);
            r.rejected_by.push(d.clone());
            log(&mut r, now, TimelineEvent::Rejected, actor, Some(&d), Some(reason.to_owned()));
            if r.departments.is_empty() {
                reroute(&mut r, now, policy, &mut effects);
            }
        }
        Action::Progress { note } => {
            if !matches!(state, CaseState::Accepted | CaseState::InProgress) {
                return invalid("report progress on");
            }
            r.state = CaseState::InProgress;
            log(&mut r, now, TimelineEvent::Progress, actor, dept, Some(note.trim().to_owned()));
        }
        Action::Resolve { note } => {
            let from_source =
                actor.kind == ActorKind::Source && matches!(state, CaseState::Routed | CaseState::Rejected);
            if !(from_source || matches!(state, CaseState::Accepted | CaseState::InProgress)) {
                return invalid("resolve");
            }
            r.accept_by = None;
            r.state = CaseState::Resolved;
            r.resolve_by = None;
            log(&mut r, now, TimelineEvent::Resolved, actor, dept, Some(note.trim().to_owned()));
            if from_source {
                effects.extend(withdraw_offers(&mut r, "case_closed"));
            }
        }
        Action::Close { note } => {
            let allowed = if dept.is_some() { state == CaseState::Resolved } else { state.is_open() };
            if !allowed {
                return invalid("close");
            }
            r.state = CaseState::Closed;
            r.accept_by = None;
            r.resolve_by = None;
            log(&mut r, now, TimelineEvent::Closed, actor, dept, note.clone());
            effects.extend(withdraw_offers(&mut r, "case_closed"));
        }
        Action::Cancel { reason } => {
            if !state.is_open() {
                return invalid("cancel");
            }
            r.state = CaseState::Cancelled;
            r.accept_by = None;
            r.resolve_by = None;
            log(&mut r, now, TimelineEvent::Cancelled, actor, None, Some(reason.trim().to_owned()));
            effects.extend(withdraw_offers(&mut r, "case_closed"));
        }
        Action::Update { note } => {
            if !state.is_open() {
                return invalid("update");
            }
            log(&mut r, now, TimelineEvent::SourceUpdated, actor, None, Some(note.trim().to_owned()));
        }
        Action::Reassign { department, reason } => {
            if !state.is_open() {
                return invalid("reassign");
            }
            if !ladder.exists(department) {
                return Err(Refused::Invalid(format!("no department {department:?}")));
            }
            r.state = CaseState::Routed;
            r.departments = vec![department.clone()];
            r.accepted_by = None;
            r.accept_by = Some(now + policy.deadlines(r.priority).accept);
            r.resolve_by = None;
            r.escalation_open = false;
            let note = Some(reason.trim().to_owned());
            log(&mut r, now, TimelineEvent::Reassigned, actor, Some(department), note);
            effects.push(Effect::Assign { department: department.clone(), reason: AssignmentReason::Reassigned });
        }
        Action::AcknowledgeEscalation {} => {
            if !r.escalation_open {
                return Err(Refused::Invalid("no open escalation to acknowledge".into()));
            }
            r.escalation_open = false;
            log(&mut r, now, TimelineEvent::EscalationAcknowledged, actor, None, None);
        }
        Action::Split { .. } => return Err(Refused::Invalid("split is done on the merged case".into())),
        Action::Note { note } => log(&mut r, now, TimelineEvent::Noted, actor, None, Some(note.trim().to_owned())),
        Action::Supervise { note } => {
            if !state.is_open() {
                return invalid("supervise");
            }
            // The department that accepted it, else those it waits on.
            let responsible = match &r.accepted_by {
                Some(d) => vec![d.clone()],
                None => r.departments.clone(),
            };
            for department in responsible {
                log(&mut r, now, TimelineEvent::Supervised, actor, Some(&department), Some(note.trim().to_owned()));
                effects.push(Effect::Notify { department, entry: r.timeline.len() - 1 });
            }
        }
        Action::FollowUp { reached, note } => {
            let note = SystemNote::FollowUp { reached: *reached, said: note.trim().to_owned() };
            log_noted(&mut r, now, TimelineEvent::FollowedUp, actor, None, note);
        }
        Action::Rate { score, solved, comment } => {
            if !matches!(state, CaseState::Resolved | CaseState::Closed) {
                return invalid("rate");
            }
            let rating = Rating {
                score: *score,
                solved: *solved,
                comment: comment.clone(),
                department: r.accepted_by.clone(),
                at: now,
            };
            rating::rate(&mut r, actor, rating, policy, &mut effects)?;
        }
    }
    Ok(Outcome { record: r, effects })
}

/// True when `action` by a source is one it already made (same event, same note): a source
/// message delivered twice is recorded once.
pub fn is_repeat(record: &CaseRecord, actor: &Actor, action: &Action) -> bool {
    if actor.kind != ActorKind::Source {
        return false;
    }
    let (event, note) = match action {
        Action::Update { note } => (TimelineEvent::SourceUpdated, note),
        Action::Cancel { reason } => (TimelineEvent::Cancelled, reason),
        Action::Resolve { note } => (TimelineEvent::Resolved, note),
        _ => return false,
    };
    record.timeline.iter().any(|e| e.actor == *actor && e.event == event && e.note.as_deref() == Some(note.trim()))
}

fn authorize(r: &CaseRecord, actor: &Actor, action: &Action) -> Result<(), Refused> {
    let forbidden = |why: String| Err(Refused::Forbidden(why));
    match actor.kind {
        ActorKind::Department => {
            let responsible = r.departments.contains(&actor.id);
            let accepted = r.accepted_by.as_deref() == Some(actor.id.as_str());
            let ok = match action {
                Action::Accept {} | Action::Reject { .. } => responsible,
                Action::Progress { .. } | Action::Resolve { .. } | Action::Close { .. } => accepted,
                _ => false,
            };
            if !ok {
                let own = responsible || accepted;
                return forbidden(if own {
                    format!("a department may not {} a case", action.name())
                } else {
                    format!("case {} is not {}'s", r.case_id, actor.id)
                });
            }
        }
        ActorKind::Source => {
            let own = r.reports.first().is_some_and(|first| first.source == actor.id);
            if !own {
                return forbidden(format!("case {} was not reported by {}", r.case_id, actor.id));
            }
            if !matches!(action, Action::Update { .. } | Action::Cancel { .. } | Action::Resolve { .. }) {
                return forbidden(format!("a source may not {} a case", action.name()));
            }
        }
        ActorKind::Dispatcher => {
            if matches!(action, Action::Rate { .. } | Action::Accept {} | Action::Reject { .. } | Action::Update { .. })
            {
                return forbidden(format!("a dispatcher may not {} a case", action.name()));
            }
        }
        ActorKind::Resident => {
            if !matches!(action, Action::Rate { .. }) {
                return forbidden(format!("a resident may not {} a case", action.name()));
            }
        }
        ActorKind::Volunteer | ActorKind::System => {
            return forbidden(format!("{:?} actors answer offers, not case actions", actor.kind));
        }
    }
    Ok(())
}

/// After the responsible departments all rejected: the next candidate, else the dispatchers.
fn reroute(r: &mut CaseRecord, now: Timestamp, policy: &Policy, effects: &mut Vec<Effect>) {
    let next = r.candidates.iter().position(|c| !r.rejected_by.contains(c));
    match next {
        Some(n) => {
            let department = r.candidates.remove(n);
            r.departments = vec![department.clone()];
            r.accept_by = Some(now + policy.deadlines(r.priority).accept);
            log(r, now, TimelineEvent::Rerouted, &Actor::system(), Some(&department), None);
            effects.push(Effect::Assign { department, reason: AssignmentReason::Rerouted });
        }
        None => {
            r.state = CaseState::Rejected;
            r.accept_by = None;
            r.escalation_open = true;
            log_noted(r, now, TimelineEvent::Escalated, &Actor::system(), None, SystemNote::AllRejected);
            r.escalations += 1;
        }
    }
}
