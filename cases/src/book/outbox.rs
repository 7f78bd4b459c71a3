//! The outbox: the messages a transition must send, stored with the record it produced and
//! cleared once published, each under an id derived from the case and its timeline.

use linkbus_wire::subjects;
use linkbus_wire::{self as wire, CaseAssigned, CaseEvent, CaseRecord, CloudEvent, OfferClosed, VolunteerOffer};
use serde::{Deserialize, Serialize};

use crate::lifecycle::{Effect, Outcome};

/// One message to publish: where, under which `Nats-Msg-Id`, and its bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Outgoing {
    pub(super) subject: String,
    pub(super) msg_id: String,
    pub(super) body: String,
}

/// The messages a transition sends: its new timeline entries on `case.<id>.<event>`, and its
/// effects. Every id is derived from the case and the timeline, so re-sending is harmless.
pub(super) fn messages(source: &str, before: &CaseRecord, outcome: &Outcome) -> Vec<Outgoing> {
    let r = &outcome.record;
    let now = r.updated_at;
    let mut out = Vec::new();
    // Entry 0 ("routed") is the router's own `case.<id>.routed` event.
    for (n, entry) in r.timeline.iter().enumerate().skip(before.timeline.len().max(1)) {
        let id = format!("{}:t{n}", r.case_id);
        let event = CaseEvent { case_id: r.case_id.clone(), state: r.state, entry: entry.clone() };
        let ev =
            traced(CloudEvent::new(id.clone(), source, wire::TYPE_CASE_EVENT, Some(r.case_id.clone()), now, event), r);
        out.push(outgoing(subjects::case_event(&r.case_id, entry.event.as_str()), id, &ev));
    }
    for effect in &outcome.effects {
        match effect {
            Effect::Assign { department, reason } => {
                let id = format!("{}:assign:{department}:{}", r.case_id, r.timeline.len());
                let data = CaseAssigned {
                    case_id: r.case_id.clone(),
                    department: department.clone(),
                    reason: *reason,
                    record: r.clone(),
                };
                let ev = traced(
                    CloudEvent::new(id.clone(), source, wire::TYPE_CASE_ASSIGNED, Some(r.case_id.clone()), now, data),
                    r,
                );
                out.push(outgoing(subjects::routed_department(department, &r.case.category), id, &ev));
            }
            Effect::Notify { department, entry } => {
                let id = format!("{}:notify:{department}:{entry}", r.case_id);
                let event = CaseEvent { case_id: r.case_id.clone(), state: r.state, entry: r.timeline[*entry].clone() };
                let ev = traced(
                    CloudEvent::new(id.clone(), source, wire::TYPE_CASE_EVENT, Some(r.case_id.clone()), now, event),
                    r,
                );
                out.push(outgoing(subjects::routed_department(department, &r.case.category), id, &ev));
            }
            Effect::Offer { volunteer_id, distance_m } => {
                let id = format!("{}:offer:{volunteer_id}", r.case_id);
                let offer = VolunteerOffer {
                    case_id: r.case_id.clone(),
                    volunteer_id: volunteer_id.clone(),
                    rank: r.offers.iter().position(|o| &o.volunteer_id == volunteer_id).map_or(0, |n| n + 1),
                    category: r.case.category.clone(),
                    priority: r.priority,
                    location: r.case.location,
                    address: r.case.address.clone(),
                    description: r.case.description.clone(),
                    distance_m: *distance_m,
                    skill: r.decision.volunteer_search.skill.clone().unwrap_or_default(),
                };
                let ev = traced(
                    CloudEvent::new(
                        id.clone(),
                        source,
                        wire::TYPE_VOLUNTEER_OFFER,
                        Some(r.case_id.clone()),
                        now,
                        offer,
                    ),
                    r,
                );
                out.push(outgoing(subjects::volunteer_offer(volunteer_id), id, &ev));
            }
            Effect::CloseOffer { volunteer_id, reason } => {
                let id = format!("{}:closed:{volunteer_id}", r.case_id);
                let data = OfferClosed {
                    case_id: r.case_id.clone(),
                    volunteer_id: volunteer_id.clone(),
                    reason: (*reason).to_owned(),
                };
                let ev = traced(
                    CloudEvent::new(id.clone(), source, wire::TYPE_OFFER_CLOSED, Some(r.case_id.clone()), now, data),
                    r,
                );
                out.push(outgoing(subjects::volunteer_offer_closed(volunteer_id), id, &ev));
            }
        }
    }
    out
}

/// Every event about a case carries its trace (`traceparent`, `tracestate`), so a tracing system
/// joins it to the report's trace.
fn traced<T>(mut event: CloudEvent<T>, record: &CaseRecord) -> CloudEvent<T> {
    if let Some(trace) = &record.trace {
        trace.set_on(&mut event.extensions);
    }
    event
}

fn outgoing<T: Serialize>(subject: String, msg_id: String, event: &CloudEvent<T>) -> Outgoing {
    // Wire types are plain structs with string keys: serialising them cannot fail.
    Outgoing { subject, msg_id, body: serde_json::to_string(event).expect("wire types always serialise") }
}
