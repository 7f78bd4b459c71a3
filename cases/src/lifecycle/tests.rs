//! The state machine's rules, one story per test.

use jiff::Timestamp;
use linkbus_wire::{
    Action, Actor, ActorKind, AssignmentReason, CaseRecord, CaseReport, CaseState, CommunityMatch, CommunityOutcome,
    Decision, DepartmentChoice, DepartmentRule, JurisdictionLevel, Location, RoutedCase, SourceSystem, VolunteerSearch,
};

use super::*;

fn t(s: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + s).expect("valid time")
}

fn choice(id: &str) -> DepartmentChoice {
    DepartmentChoice {
        id: id.into(),
        name: id.into(),
        rule: DepartmentRule::Jurisdiction { level: JurisdictionLevel::Community, area: "c".into() },
    }
}

fn routed(id: &str, volunteers: &[(&str, f64)]) -> RoutedCase {
    let case = CaseReport {
        system: SourceSystem::Emergency,
        category: "fire".into(),
        priority: 2,
        location: Location { lon: -122.4194, lat: 37.7599 },
        address: None,
        reporter: None,
        description: None,
        source_id: id.into(),
        reported_at: t(0),
        flags: vec![],
        datum: linkbus_wire::Datum::Wgs84,
        received_location: None,
        area: None,
    };
    let decision = Decision {
        geo_version: "test@1".into(),
        priority: 2,
        community: CommunityMatch {
            outcome: CommunityOutcome::Inside,
            community: None,
            distance_m: None,
            candidates: vec![],
        },
        broadcast: vec![],
        departments: vec![choice("station")],
        fallbacks: vec![choice("dispatch"), choice("desk")],
        volunteers: volunteers
            .iter()
            .map(|(v, d)| linkbus_wire::VolunteerChoice { id: v.to_string(), distance_m: *d })
            .collect(),
        volunteer_search: VolunteerSearch {
            skill: Some("first_aid".into()),
            k: 2,
            radius_m: 3000.0,
            examined: 0,
            skipped_unavailable: 0,
            skipped_skill: 0,
            skipped_capped: 0,
            reached_radius: false,
        },
        facility: None,
        explanation: vec![],
    };
    RoutedCase { case_id: id.into(), source: "/test".into(), case, decision, routed_at: t(0) }
}

fn ladder() -> Ladder {
    Ladder::new(
        [("station", Some("battalion")), ("battalion", Some("dispatch")), ("dispatch", None), ("desk", None)]
            .map(|(d, p)| (d.to_string(), p.map(str::to_string))),
        "desk",
    )
}

fn dept(id: &str) -> Actor {
    Actor { kind: ActorKind::Department, id: id.into() }
}

fn policy() -> Policy {
    Policy::default()
}

#[test]
fn accept_progress_resolve_close() {
    let p = policy();
    let r = open(&routed("c1", &[]), t(0), &p);
    assert_eq!((r.state, r.accept_by), (CaseState::Routed, Some(t(300))));
    let r = act(&r, &dept("station"), &Action::Accept {}, t(10), &p, &ladder()).expect("accept").record;
    assert_eq!(
        (r.state, r.accepted_by.as_deref(), r.resolve_by),
        (CaseState::Accepted, Some("station"), Some(t(10 + 4 * 3600)))
    );
    let progress = Action::Progress { note: "crew on site".into() };
    let r = act(&r, &dept("station"), &progress, t(20), &p, &ladder()).expect("progress").record;
    let resolve = Action::Resolve { note: "fire out".into() };
    let r = act(&r, &dept("station"), &resolve, t(30), &p, &ladder()).expect("resolve").record;
    let r = act(&r, &dept("station"), &Action::Close { note: None }, t(40), &p, &ladder()).expect("close").record;
    assert_eq!(r.state, CaseState::Closed);
    let events: Vec<&str> = r.timeline.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(events, ["routed", "accepted", "progress", "resolved", "closed"]);
    // Nothing more is due on a closed case.
    assert_eq!(next_due(&r), None);
}

#[test]
fn actions_refuse_unknown_fields_even_without_fields_of_their_own() {
    let ok: linkbus_wire::ActionRequest =
        serde_json::from_str(r#"{"case_id": "c1", "action": "accept"}"#).expect("accept");
    assert_eq!(ok.action, Action::Accept {});
    for bad in [
        r#"{"case_id": "c1", "action": "accept", "urgent": true}"#,
        r#"{"case_id": "c1", "action": "acknowledge_escalation", "x": 1}"#,
        r#"{"case_id": "c1", "action": "reject"}"#,
        r#"{"case_id": "c1", "action": "explode"}"#,
        r#"{"action": "accept"}"#,
    ] {
        assert!(serde_json::from_str::<linkbus_wire::ActionRequest>(bad).is_err(), "{bad}");
    }
}

#[test]
fn only_the_responsible_department_acts_and_each_role_only_as_allowed() {
    let p = policy();
    let r = open(&routed("c1", &[]), t(0), &p);
    let err = act(&r, &dept("other"), &Action::Accept {}, t(1), &p, &ladder()).expect_err("not theirs");
    assert!(matches!(err, Refused::Forbidden(_)), "{err}");
    let dispatcher = Actor { kind: ActorKind::Dispatcher, id: "li".into() };
    assert!(matches!(act(&r, &dispatcher, &Action::Accept {}, t(1), &p, &ladder()), Err(Refused::Forbidden(_))));
    let resident = Actor { kind: ActorKind::Resident, id: "reporter".into() };
    let cancel = Action::Cancel { reason: "x".into() };
    assert!(matches!(act(&r, &resident, &cancel, t(1), &p, &ladder()), Err(Refused::Forbidden(_))));
    let resolve = Action::Resolve { note: "x".into() };
    assert!(matches!(act(&r, &dept("station"), &resolve, t(1), &p, &ladder()), Err(Refused::Forbidden(_))));
    let reject = Action::Reject { reason: " ".into() };
    assert!(matches!(act(&r, &dept("station"), &reject, t(1), &p, &ladder()), Err(Refused::Invalid(_))));
}

#[test]
fn a_source_updates_cancels_and_resolves_only_its_own_cases_once() {
    let p = policy();
    let r = open(&routed("c1", &[("v1", 100.0)]), t(0), &p);
    let source = Actor { kind: ActorKind::Source, id: "/test".into() };
    let update = Action::Update { note: "2nd alarm".into() };
    let out = act(&r, &source, &update, t(1), &p, &ladder()).expect("its own case");
    assert_eq!(out.record.state, CaseState::Routed);
    let last = out.record.timeline.last().expect("an entry");
    assert_eq!((last.event.as_str(), last.note.as_deref()), ("source_updated", Some("2nd alarm")));
    assert!(is_repeat(&out.record, &source, &update), "the same update again is a repeat");
    assert!(!is_repeat(&out.record, &source, &Action::Update { note: "3rd alarm".into() }));
    let other = Actor { kind: ActorKind::Source, id: "/other".into() };
    assert!(matches!(act(&r, &other, &update, t(1), &p, &ladder()), Err(Refused::Forbidden(_))));
    let accept = Action::Accept {};
    assert!(matches!(act(&r, &source, &accept, t(1), &p, &ladder()), Err(Refused::Forbidden(_))));
    let dispatcher = Actor { kind: ActorKind::Dispatcher, id: "li".into() };
    assert!(matches!(act(&r, &dispatcher, &update, t(1), &p, &ladder()), Err(Refused::Forbidden(_))));
    // Done at the source (an order delivered) straight from routed; offers withdrawn.
    let resolved =
        act(&r, &source, &Action::Resolve { note: "delivered".into() }, t(2), &p, &ladder()).expect("resolve");
    assert_eq!((resolved.record.state, resolved.record.accept_by), (CaseState::Resolved, None));
    assert_eq!(resolved.effects, [Effect::CloseOffer { volunteer_id: "v1".into(), reason: "case_closed" }]);
    let cancelled = act(&r, &source, &Action::Cancel { reason: "hoax".into() }, t(2), &p, &ladder()).expect("cancel");
    assert_eq!(cancelled.record.state, CaseState::Cancelled);
    assert_eq!(cancelled.effects, [Effect::CloseOffer { volunteer_id: "v1".into(), reason: "case_closed" }]);
    assert!(matches!(act(&cancelled.record, &source, &update, t(3), &p, &ladder()), Err(Refused::Invalid(_))));
}

#[test]
fn rejection_reroutes_to_the_next_candidate_then_the_dispatchers() {
    let p = policy();
    let r = open(&routed("c1", &[]), t(0), &p);
    let reject = |r: &CaseRecord, d: &str| {
        act(r, &dept(d), &Action::Reject { reason: "not ours".into() }, t(5), &p, &ladder()).expect("reject")
    };
    let out = reject(&r, "station");
    assert_eq!(out.record.departments, ["dispatch"]);
    assert_eq!(out.effects, [Effect::Assign { department: "dispatch".into(), reason: AssignmentReason::Rerouted }]);
    let out = reject(&out.record, "dispatch");
    assert_eq!(out.record.departments, ["desk"]);
    let out = reject(&out.record, "desk");
    assert_eq!((out.record.state, out.record.escalation_open), (CaseState::Rejected, true));
    assert!(out.effects.is_empty());
}

#[test]
fn missed_deadlines_climb_the_ladder_once_each() {
    let (p, l) = (policy(), ladder());
    let r = open(&routed("c1", &[]), t(0), &p);
    assert!(tick(&r, t(299), &p, &l, |_| vec![]).is_none(), "nothing is due before the deadline");
    let out = tick(&r, t(300), &p, &l, |_| vec![]).expect("due");
    assert_eq!(out.effects, [Effect::Assign { department: "battalion".into(), reason: AssignmentReason::Escalated }]);
    assert_eq!((out.record.escalations, out.record.accept_by), (1, Some(t(600))));
    assert!(tick(&out.record, t(301), &p, &l, |_| vec![]).is_none(), "a repeated tick changes nothing");
    let out = tick(&out.record, t(600), &p, &l, |_| vec![]).expect("due again");
    assert_eq!(out.record.departments, ["station", "battalion", "dispatch"]);
    let out = tick(&out.record, t(900), &p, &l, |_| vec![]).expect("top");
    assert_eq!(out.record.departments.last().map(String::as_str), Some("desk"));
    let out = tick(&out.record, t(1200), &p, &l, |_| vec![]).expect("top reached");
    assert_eq!((out.record.accept_by, out.record.escalation_open), (None, true));
    assert!(out.effects.is_empty());
    // Once accepted, the resolve deadline escalates from the accepting department.
    let accepted = act(&out.record, &dept("battalion"), &Action::Accept {}, t(1300), &p, &l).expect("accept").record;
    let due = accepted.resolve_by.expect("resolve deadline");
    let out = tick(&accepted, due, &p, &l, |_| vec![]).expect("resolve overdue");
    assert_eq!(out.record.escalations, 5);
    assert!(out.record.timeline.last().and_then(|e| e.note.as_deref()).is_some_and(|n| n.contains("not resolved")));
}

#[test]
fn volunteers_cascade_on_decline_and_expiry_and_one_accept_closes_the_rest() {
    let p = policy();
    let r = open(&routed("c1", &[("v1", 100.0), ("v2", 200.0)]), t(0), &p);
    let out = answer(&r, "v1", false, t(5), &p, |already| {
        assert_eq!(already, ["v1", "v2"]);
        vec![linkbus_wire::VolunteerChoice { id: "v3".into(), distance_m: 300.0 }]
    })
    .expect("decline");
    assert_eq!(out.effects, [Effect::Offer { volunteer_id: "v3".into(), distance_m: 300.0 }]);
    // v2 never answers: at its expiry the next one is asked.
    let out = tick(&out.record, t(120), &p, &ladder(), |_| {
        vec![linkbus_wire::VolunteerChoice { id: "v4".into(), distance_m: 400.0 }]
    })
    .expect("expiry");
    assert!(out.effects.contains(&Effect::CloseOffer { volunteer_id: "v2".into(), reason: "expired" }));
    assert!(out.effects.contains(&Effect::Offer { volunteer_id: "v4".into(), distance_m: 400.0 }));
    let out = answer(&out.record, "v4", true, t(130), &p, |_| vec![]).expect("accept");
    assert_eq!(out.effects, [Effect::CloseOffer { volunteer_id: "v3".into(), reason: "taken" }]);
    let err = answer(&out.record, "v3", true, t(131), &p, |_| vec![]).expect_err("taken");
    assert!(err.to_string().contains("already taken"), "{err}");
    assert!(matches!(answer(&out.record, "v9", true, t(131), &p, |_| vec![]), Err(Refused::Forbidden(_))));
}

#[test]
fn duplicates_merge_and_split_back() {
    let p = policy();
    let first = open(&routed("a", &[]), t(0), &p);
    let mut second_routed = routed("b", &[("v1", 10.0)]);
    second_routed.case.system = SourceSystem::PublicService;
    second_routed.case.location.lon += 0.001; // about 90 m east
    assert!(is_duplicate(&first, &second_routed, &p.merge));
    let mut far = second_routed.clone();
    far.case.location.lon += 0.01;
    assert!(!is_duplicate(&first, &far, &p.merge));
    let mut drill = second_routed.clone();
    drill.case.flags.push("exercise".into());
    assert!(!is_duplicate(&first, &drill, &p.merge), "a drill never merges with a real report");
    let mut broadcast = second_routed.clone();
    let ring = vec![first.case.location; 4];
    broadcast.case.area = Some(linkbus_wire::Area { polygons: vec![ring], circles: vec![] });
    assert!(!is_duplicate(&first, &broadcast, &p.merge), "a broadcast merges with nothing");
    let second = open(&second_routed, t(1), &p);
    let (primary, merged) = merge(&first, &second, t(2));
    assert_eq!(primary.record.reports.len(), 2);
    assert_eq!((merged.record.state, merged.record.merged_into.as_deref()), (CaseState::Cancelled, Some("a")));
    assert!(merged.effects.contains(&Effect::Notify { department: "station".into(), entry: 1 }));
    assert!(merged.effects.contains(&Effect::CloseOffer { volunteer_id: "v1".into(), reason: "case_closed" }));
    let err = act(&merged.record, &dept("station"), &Action::Accept {}, t(3), &p, &ladder()).expect_err("merged");
    assert!(err.to_string().contains("merged into a"), "{err}");

    let dispatcher = Actor { kind: ActorKind::Dispatcher, id: "li".into() };
    let (p2, revived) = split(&primary.record, &merged.record, &dispatcher, t(4), &p).expect("split");
    assert_eq!(p2.record.reports.len(), 1);
    assert_eq!((revived.record.state, revived.record.merged_into.clone()), (CaseState::Routed, None));
    assert_eq!(revived.effects, [Effect::Assign { department: "station".into(), reason: AssignmentReason::Split }]);
}

#[test]
fn a_not_solved_rating_reopens_the_case() {
    let p = policy();
    let r = open(&routed("c1", &[]), t(0), &p);
    let r = act(&r, &dept("station"), &Action::Accept {}, t(1), &p, &ladder()).expect("accept").record;
    let r = act(&r, &dept("station"), &Action::Resolve { note: "done".into() }, t(2), &p, &ladder())
        .expect("resolve")
        .record;
    let resident = Actor { kind: ActorKind::Resident, id: "reporter".into() };
    let rate = Action::Rate { score: 2, solved: false, comment: Some("still smoking".into()) };
    let out = act(&r, &resident, &rate, t(3), &p, &ladder()).expect("rate");
    assert_eq!((out.record.state, out.record.reopened), (CaseState::Accepted, 1));
    assert_eq!(out.record.ratings[0].department.as_deref(), Some("station"));
    assert_eq!(out.effects, [Effect::Assign { department: "station".into(), reason: AssignmentReason::Reopened }]);
    let bad = Action::Rate { score: 9, solved: true, comment: None };
    let resolved = act(&out.record, &dept("station"), &Action::Resolve { note: "really".into() }, t(4), &p, &ladder());
    let resolved = resolved.expect("resolve again").record;
    assert!(matches!(act(&resolved, &resident, &bad, t(5), &p, &ladder()), Err(Refused::Invalid(_))));
}
