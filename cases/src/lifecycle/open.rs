//! The record of a newly routed case.

use jiff::Timestamp;
use linkbus_wire::explain::SystemNote;
use linkbus_wire::{Actor, CaseRecord, CaseState, OfferState, OfferStatus, ReportRef, RoutedCase, TimelineEvent};

use super::outcome::entry_noted;
use super::policy::Policy;

/// The record of a newly routed case: waiting for its departments to accept, its volunteers to
/// answer.
pub fn open(routed: &RoutedCase, now: Timestamp, policy: &Policy) -> CaseRecord {
    let d = &routed.decision;
    let departments: Vec<String> = d.departments.iter().map(|c| c.id.clone()).collect();
    let offers = d
        .volunteers
        .iter()
        .map(|v| OfferState {
            volunteer_id: v.id.clone(),
            distance_m: v.distance_m,
            status: OfferStatus::Offered,
            offered_at: now,
            expires_at: now + policy.offer_timeout,
        })
        .collect::<Vec<_>>();
    let note = SystemNote::Routed { departments: departments.clone(), offered: offers.len() };
    CaseRecord {
        case_id: routed.case_id.clone(),
        state: CaseState::Routed,
        case: routed.case.clone(),
        reports: vec![report_ref(routed)],
        merged_into: None,
        decision: d.clone(),
        priority: d.priority,
        community: d.community.community.clone(),
        departments,
        accepted_by: None,
        candidates: d.fallbacks.iter().map(|c| c.id.clone()).collect(),
        rejected_by: vec![],
        accept_by: Some(now + policy.deadlines(d.priority).accept),
        resolve_by: None,
        escalations: 0,
        escalation_open: false,
        offers,
        ratings: vec![],
        reopened: 0,
        timeline: vec![entry_noted(now, TimelineEvent::Routed, &Actor::system(), None, note)],
        created_at: now,
        updated_at: now,
        trace: None,
    }
}

/// The [`ReportRef`] of a routed case.
pub fn report_ref(routed: &RoutedCase) -> ReportRef {
    ReportRef {
        report_id: routed.case_id.clone(),
        system: routed.case.system,
        source: routed.source.clone(),
        source_id: routed.case.source_id.clone(),
        category: routed.case.category.clone(),
        location: routed.case.location,
        reported_at: routed.case.reported_at,
    }
}
