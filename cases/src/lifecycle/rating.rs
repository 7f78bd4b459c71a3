//! The reporter's verdict (回访 / 评价) and reopening a case they say is not solved.

use jiff::Timestamp;
use linkbus_wire::explain::SystemNote;
use linkbus_wire::{Actor, AssignmentReason, CaseRecord, CaseState, Rating, TimelineEvent};

use super::outcome::{Effect, Refused, log, log_noted};
use super::policy::Policy;

/// Records the reporter's `rating` of a resolved or closed case; "not solved" reopens it.
pub(super) fn rate(
    r: &mut CaseRecord,
    actor: &Actor,
    rating: Rating,
    policy: &Policy,
    effects: &mut Vec<Effect>,
) -> Result<(), Refused> {
    let (score, solved, now) = (rating.score, rating.solved, rating.at);
    if !(1..=5).contains(&score) {
        return Err(Refused::Invalid(format!("score {score} is not 1-5")));
    }
    r.ratings.push(rating);
    log_noted(r, now, TimelineEvent::Rated, actor, None, SystemNote::Rated { score, solved });
    if !solved {
        reopen(r, now, policy, effects);
    }
    Ok(())
}

/// Back to the department that resolved it (accepted, with a new resolve deadline), else to the
/// responsible departments (routed, with a new accept deadline).
fn reopen(r: &mut CaseRecord, now: Timestamp, policy: &Policy, effects: &mut Vec<Effect>) {
    r.reopened += 1;
    let deadlines = policy.deadlines(r.priority);
    match r.accepted_by.clone() {
        Some(department) => {
            r.state = CaseState::Accepted;
            r.resolve_by = Some(now + deadlines.resolve);
            log(r, now, TimelineEvent::Reopened, &Actor::system(), Some(&department), None);
            effects.push(Effect::Assign { department, reason: AssignmentReason::Reopened });
        }
        None => {
            r.state = CaseState::Routed;
            r.accept_by = Some(now + deadlines.accept);
            log(r, now, TimelineEvent::Reopened, &Actor::system(), None, None);
            for department in r.departments.clone() {
                effects.push(Effect::Assign { department, reason: AssignmentReason::Reopened });
            }
        }
    }
}
