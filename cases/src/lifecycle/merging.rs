//! Duplicate reports of one incident: detecting them, folding one into the case opened first,
//! and a dispatcher's split undoing it.

use jiff::Timestamp;
use linkbus_matching::geodesy;
use linkbus_wire::explain::SystemNote;
use linkbus_wire::{Actor, AssignmentReason, CaseRecord, CaseState, RoutedCase, TimelineEvent};

use super::offers::withdraw_offers;
use super::outcome::{Effect, Outcome, Refused, log_noted};
use super::policy::{MergePolicy, Policy};

/// Flags that mark a report as a drill: such a report is never merged with a real one.
const DRILL_FLAGS: [&str; 2] = ["exercise", "test"];

/// True when `routed` reports the same incident as the open case `existing`: compatible
/// category, close in space and time. A broadcast (a report with an area, e.g. a flood warning)
/// is not an incident at a point and merges with nothing; a drill (`exercise`/`test` flag) merges
/// only with a drill.
pub fn is_duplicate(existing: &CaseRecord, routed: &RoutedCase, policy: &MergePolicy) -> bool {
    if !existing.state.is_open() || existing.merged_into.is_some() || existing.case_id == routed.case_id {
        return false;
    }
    let (a, b) = (&existing.case, &routed.case);
    let drill = |flags: &[String]| flags.iter().any(|f| DRILL_FLAGS.contains(&f.as_str()));
    if a.area.is_some() || b.area.is_some() || drill(&a.flags) != drill(&b.flags) {
        return false;
    }
    let compatible =
        a.category == b.category || policy.groups.iter().any(|g| g.contains(&a.category) && g.contains(&b.category));
    compatible
        && geodesy::haversine_m(a.location.lon, a.location.lat, b.location.lon, b.location.lat) <= policy.distance_m
        && (a.reported_at - b.reported_at).abs() <= policy.window
}

/// Of the open records of one incident, the one the others are merged into: a record that has
/// taken in other reports already stays the primary; else the one opened first (then the
/// smallest id, so that every replica deciding on the same records picks the same one).
pub fn primary<'a>(group: impl IntoIterator<Item = &'a CaseRecord>) -> Option<&'a CaseRecord> {
    group.into_iter().min_by(|a, b| {
        let order = |r: &'a CaseRecord| (r.reports.len() <= 1, r.created_at, r.case_id.as_str());
        order(a).cmp(&order(b))
    })
}

/// Folds the duplicate `report` (already opened as its own record) into `primary`: the primary
/// lists it, the report's record is cancelled as merged, and its departments are told.
pub fn merge(primary: &CaseRecord, report: &CaseRecord, now: Timestamp) -> (Outcome, Outcome) {
    let system = Actor::system();
    let mut p = primary.clone();
    p.reports.extend(report.reports.iter().cloned());
    let note = SystemNote::ReportMerged {
        report: report.case_id.clone(),
        system: report.case.system,
        source_id: report.case.source_id.clone(),
    };
    log_noted(&mut p, now, TimelineEvent::ReportMerged, &system, None, note);

    let mut r = report.clone();
    r.state = CaseState::Cancelled;
    r.merged_into = Some(primary.case_id.clone());
    r.accept_by = None;
    r.resolve_by = None;
    let note = SystemNote::SameIncident { primary: primary.case_id.clone() };
    log_noted(&mut r, now, TimelineEvent::Merged, &system, None, note);
    let last = r.timeline.len() - 1;
    let mut effects: Vec<Effect> =
        r.departments.iter().map(|d| Effect::Notify { department: d.clone(), entry: last }).collect();
    effects.extend(withdraw_offers(&mut r, "case_closed"));
    (Outcome { record: p, effects: vec![] }, Outcome { record: r, effects })
}

/// Undoes a merge: `report_id` leaves `primary`, and its own record (`report`) is routed again to
/// the departments its decision named.
pub fn split(
    primary: &CaseRecord,
    report: &CaseRecord,
    actor: &Actor,
    now: Timestamp,
    policy: &Policy,
) -> Result<(Outcome, Outcome), Refused> {
    if report.merged_into.as_deref() != Some(primary.case_id.as_str()) {
        return Err(Refused::Invalid(format!("{} is not merged into {}", report.case_id, primary.case_id)));
    }
    let mut p = primary.clone();
    p.reports.retain(|r| r.report_id != report.case_id);
    log_noted(
        &mut p,
        now,
        TimelineEvent::Split,
        actor,
        None,
        SystemNote::OwnCaseAgain { report: report.case_id.clone() },
    );

    let mut r = report.clone();
    r.merged_into = None;
    r.state = CaseState::Routed;
    r.accepted_by = None;
    r.departments = r.decision.departments.iter().map(|c| c.id.clone()).collect();
    r.accept_by = Some(now + policy.deadlines(r.priority).accept);
    log_noted(
        &mut r,
        now,
        TimelineEvent::Split,
        actor,
        None,
        SystemNote::SplitOutOf { primary: primary.case_id.clone() },
    );
    let effects = r
        .departments
        .iter()
        .map(|d| Effect::Assign { department: d.clone(), reason: AssignmentReason::Split })
        .collect();
    Ok((Outcome { record: p, effects: vec![] }, Outcome { record: r, effects }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, created_at: i64, reports: usize) -> CaseRecord {
        let mut r: CaseRecord =
            serde_json::from_str(include_str!("../../../docs/examples/case-record.json")).expect("the example");
        r.case_id = id.into();
        r.created_at = Timestamp::from_second(created_at).expect("a time");
        let own = r.reports[0].clone();
        r.reports = vec![own; reports];
        r
    }

    #[test]
    fn the_primary_is_the_case_that_took_in_reports_else_the_first_opened_else_the_smallest_id() {
        let (a, b, c) = (record("a", 20, 1), record("b", 10, 1), record("c", 10, 1));
        assert_eq!(primary([&a, &b, &c]).map(|p| p.case_id.as_str()), Some("b"), "opened first, then by id");
        let taken_in = record("d", 30, 3);
        assert_eq!(primary([&a, &taken_in, &b]).map(|p| p.case_id.as_str()), Some("d"), "already a primary");
        assert!(primary(std::iter::empty::<&CaseRecord>()).is_none());
    }
}
