//! Volunteers' answers to offers and the cascade to the next nearest volunteer when one declines
//! or lets an offer expire; withdrawing the open offers when the case is taken or ends; the steps
//! the volunteer who took it reports (arrived, handed over).

use jiff::Timestamp;
use linkbus_wire::explain::SystemNote;
use linkbus_wire::{
    Actor, ActorKind, CaseRecord, OfferState, OfferStatus, TimelineEvent, VolunteerChoice, VolunteerStep,
};

use super::outcome::{Effect, Outcome, Refused, log, log_noted};
use super::policy::Policy;

/// Withdraws the offers still open, telling each volunteer why (`taken`, `case_closed`).
pub(super) fn withdraw_offers(r: &mut CaseRecord, reason: &'static str) -> Vec<Effect> {
    r.offers
        .iter_mut()
        .filter(|o| o.status == OfferStatus::Offered)
        .map(|o| {
            o.status = OfferStatus::Withdrawn;
            Effect::CloseOffer { volunteer_id: o.volunteer_id.clone(), reason }
        })
        .collect()
}

/// A volunteer's answer to an offer. `next` finds the next nearest volunteers, passing over
/// those already offered, for the cascade after a decline.
pub fn answer(
    record: &CaseRecord,
    volunteer_id: &str,
    accept: bool,
    now: Timestamp,
    policy: &Policy,
    next: impl FnOnce(&[&str]) -> Vec<VolunteerChoice>,
) -> Result<Outcome, Refused> {
    let Some(n) = record.offers.iter().position(|o| o.volunteer_id == volunteer_id) else {
        return Err(Refused::Forbidden(format!("case {} was not offered to {volunteer_id}", record.case_id)));
    };
    match record.offers[n].status {
        OfferStatus::Offered => {}
        OfferStatus::Withdrawn if record.offers.iter().any(|o| o.status == OfferStatus::Accepted) => {
            return Err(Refused::Invalid("another volunteer has already taken this case".into()));
        }
        status => return Err(Refused::Invalid(format!("the offer is no longer open ({status:?})"))),
    }
    if !record.state.is_open() {
        return Err(Refused::Invalid(format!("the case is {}", record.state.as_str())));
    }
    let mut r = record.clone();
    let volunteer = Actor { kind: ActorKind::Volunteer, id: volunteer_id.to_owned() };
    let mut effects = Vec::new();
    if accept {
        r.offers[n].status = OfferStatus::Accepted;
        let note = SystemNote::Away { distance_m: r.offers[n].distance_m };
        log_noted(&mut r, now, TimelineEvent::VolunteerAccepted, &volunteer, None, note);
        effects.extend(withdraw_offers(&mut r, "taken"));
    } else {
        r.offers[n].status = OfferStatus::Declined;
        log(&mut r, now, TimelineEvent::VolunteerDeclined, &volunteer, None, None);
        cascade(&mut r, now, policy, next, &mut effects);
    }
    Ok(Outcome { record: r, effects })
}

/// A step reported by the volunteer who took the case: `arrived`, then `handed_over`, each once,
/// while the case is open. Only the volunteer whose offer was accepted may report; the entry is
/// theirs, with no note.
pub fn volunteer_step(
    record: &CaseRecord,
    volunteer_id: &str,
    step: VolunteerStep,
    now: Timestamp,
) -> Result<Outcome, Refused> {
    let took = record.offers.iter().any(|o| o.volunteer_id == volunteer_id && o.status == OfferStatus::Accepted);
    if !took {
        return Err(Refused::Forbidden(format!("case {} was not taken by {volunteer_id}", record.case_id)));
    }
    if !record.state.is_open() {
        return Err(Refused::Invalid(format!("the case is {}", record.state.as_str())));
    }
    let done = |event: TimelineEvent| {
        record
            .timeline
            .iter()
            .any(|e| e.event == event && e.actor.kind == ActorKind::Volunteer && e.actor.id == volunteer_id)
    };
    let event = step.event();
    if done(event.clone()) {
        return Err(Refused::Invalid(format!("{event} was already reported")));
    }
    if step == VolunteerStep::HandedOver && !done(TimelineEvent::VolunteerArrived) {
        return Err(Refused::Invalid("report arriving before handing over".into()));
    }
    let mut r = record.clone();
    let volunteer = Actor { kind: ActorKind::Volunteer, id: volunteer_id.to_owned() };
    log(&mut r, now, event, &volunteer, None, None);
    Ok(Outcome { record: r, effects: Vec::new() })
}

/// Offers the case to the next nearest volunteer(s) while nobody has accepted.
pub(super) fn cascade(
    r: &mut CaseRecord,
    now: Timestamp,
    policy: &Policy,
    next: impl FnOnce(&[&str]) -> Vec<VolunteerChoice>,
    effects: &mut Vec<Effect>,
) {
    let open = r.offers.iter().filter(|o| o.status == OfferStatus::Offered).count();
    let taken = r.offers.iter().any(|o| o.status == OfferStatus::Accepted);
    if taken
        || !r.state.is_open()
        || open >= r.decision.volunteer_search.k
        || r.decision.volunteer_search.skill.is_none()
    {
        return;
    }
    let already: Vec<&str> = r.offers.iter().map(|o| o.volunteer_id.as_str()).collect();
    let chosen = next(&already);
    for v in chosen.into_iter().take(r.decision.volunteer_search.k - open) {
        r.offers.push(OfferState {
            volunteer_id: v.id.clone(),
            distance_m: v.distance_m,
            status: OfferStatus::Offered,
            offered_at: now,
            expires_at: now + policy.offer_timeout,
        });
        let note = SystemNote::Away { distance_m: v.distance_m };
        log_noted(r, now, TimelineEvent::VolunteerOffered, &Actor::system(), None, note);
        effects.push(Effect::Offer { volunteer_id: v.id, distance_m: v.distance_m });
    }
}
