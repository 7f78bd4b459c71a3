//! The state machine's rules, one story per test.

use jiff::Timestamp;
use linkbus_wire::{
    Action, Actor, ActorKind, AssignmentReason, CaseRecord, CaseReport, CaseState, CommunityMatch, CommunityOutcome,
    Decision, DepartmentChoice, DepartmentRule, JurisdictionLevel, Location, OfferStatus, RoutedCase, SourceSystem,
    TimelineEvent, VolunteerChoice, VolunteerSearch,
};

use super::*;

fn t(s: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + s).expect("valid time")
}

/// A department chosen by a community rule (also the supervision tests').
pub(crate) fn choice(id: &str) -> DepartmentChoice {
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
        media_url: None,
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
        reasons: vec![],
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
    broadcast.case.area = Some(linkbus_wire::Area { polygons: vec![ring], circles: vec![], geocodes: vec![] });
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
fn a_transition_stamped_with_an_earlier_clock_never_moves_updated_at_back() {
    let p = policy();
    let first = open(&routed("a", &[]), t(0), &p);
    let second = open(&routed("b", &[]), t(5), &p);
    // A merge stamped with a time from before the report was opened (another replica's clock).
    let (_, merged) = merge(&first, &second, t(1));
    assert_eq!(merged.record.updated_at, t(1));
    assert_eq!(merged.after(&second).record.updated_at, t(5));
    let (_, later) = merge(&first, &second, t(9));
    assert_eq!(later.after(&second).record.updated_at, t(9));
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

fn dispatcher() -> Actor {
    Actor { kind: ActorKind::Dispatcher, id: "li".into() }
}

fn volunteer(id: &str, distance_m: f64) -> VolunteerChoice {
    VolunteerChoice { id: id.into(), distance_m }
}

#[test]
fn a_dispatcher_reassigns_an_open_case_to_a_known_department_with_a_fresh_deadline() {
    let (p, l) = (policy(), ladder());
    let r = open(&routed("c1", &[]), t(0), &p);
    let reassign = |department: &str| Action::Reassign { department: department.into(), reason: "closer".into() };
    let out = act(&r, &dispatcher(), &reassign("battalion"), t(10), &p, &l).expect("reassign");
    assert_eq!((out.record.state, out.record.departments.clone()), (CaseState::Routed, vec!["battalion".to_owned()]));
    assert_eq!((out.record.accept_by, out.record.escalation_open), (Some(t(310)), false));
    assert_eq!(out.effects, [Effect::Assign { department: "battalion".into(), reason: AssignmentReason::Reassigned }]);
    let err = act(&r, &dispatcher(), &reassign("nowhere"), t(10), &p, &l).expect_err("unknown department");
    assert!(err.to_string().contains("no department"), "{err}");
    let closed = act(&r, &dispatcher(), &Action::Close { note: None }, t(11), &p, &l).expect("close").record;
    assert!(matches!(act(&closed, &dispatcher(), &reassign("battalion"), t(12), &p, &l), Err(Refused::Invalid(_))));
}

#[test]
fn when_every_candidate_rejects_the_dispatchers_acknowledge_the_one_escalation() {
    let (p, l) = (policy(), ladder());
    let r = open(&routed("c1", &[]), t(0), &p);
    let ack = Action::AcknowledgeEscalation {};
    assert!(matches!(act(&r, &dispatcher(), &ack, t(1), &p, &l), Err(Refused::Invalid(_))), "nothing to acknowledge");
    let reject = |r: &CaseRecord, d: &str, at: i64| {
        act(r, &dept(d), &Action::Reject { reason: "not ours".into() }, t(at), &p, &l).expect("reject").record
    };
    let r = reject(&r, "station", 5);
    assert_eq!(r.accept_by, Some(t(305)), "the next candidate gets a full accept deadline");
    let r = reject(&reject(&r, "dispatch", 6), "desk", 7);
    assert_eq!((r.state, r.escalations, r.escalation_open), (CaseState::Rejected, 1, true));
    let r = act(&r, &dispatcher(), &ack, t(8), &p, &l).expect("acknowledge").record;
    assert!(!r.escalation_open);
}

#[test]
fn refusals_say_whether_the_case_or_the_action_is_not_the_actors() {
    let (p, l) = (policy(), ladder());
    let r = open(&routed("c1", &[]), t(0), &p);
    let cancel = Action::Cancel { reason: "x".into() };
    let own = act(&r, &dept("station"), &cancel, t(1), &p, &l).expect_err("departments do not cancel");
    assert!(own.to_string().contains("a department may not cancel"), "{own}");
    let other = act(&r, &dept("desk"), &Action::Accept {}, t(1), &p, &l).expect_err("not desk's");
    assert!(other.to_string().contains("is not desk's"), "{other}");
    // Only the source resolves a case nobody accepted.
    let resolve = Action::Resolve { note: "x".into() };
    assert!(matches!(act(&r, &dispatcher(), &resolve, t(1), &p, &l), Err(Refused::Invalid(_))));
}

#[test]
fn a_source_cancel_or_resolve_delivered_twice_is_a_repeat() {
    let (p, l) = (policy(), ladder());
    let r = open(&routed("c1", &[]), t(0), &p);
    let source = Actor { kind: ActorKind::Source, id: "/test".into() };
    for action in [Action::Cancel { reason: "hoax".into() }, Action::Resolve { note: "delivered".into() }] {
        assert!(!is_repeat(&r, &source, &action));
        let done = act(&r, &source, &action, t(1), &p, &l).expect("its own case").record;
        assert!(is_repeat(&done, &source, &action), "{action:?}");
    }
}

#[test]
fn only_open_offers_and_due_deadlines_count_and_an_offer_expiry_escalates_nothing() {
    let (p, l) = (policy(), ladder());
    let r = open(&routed("c1", &[("v1", 100.0), ("v2", 200.0)]), t(0), &p);
    assert_eq!(r.offers[0].expires_at, t(120));
    let taken = answer(&r, "v1", true, t(5), &p, |_| vec![]).expect("accept").record;
    assert_eq!(next_due(&taken), Some(t(300)), "answered and withdrawn offers are not due");
    // Offers expire before the accept deadline: the case is not escalated at their expiry…
    let expired = tick(&r, t(120), &p, &l, |_| vec![]).expect("expiry");
    assert_eq!((expired.record.escalations, expired.record.departments.len()), (0, 1));
    // …nor, once accepted, before the resolve deadline.
    let accepted = act(&r, &dept("station"), &Action::Accept {}, t(10), &p, &l).expect("accept").record;
    let expired = tick(&accepted, t(120), &p, &l, |_| vec![]).expect("expiry");
    assert_eq!((expired.record.escalations, expired.record.resolve_by), (0, Some(t(10 + 4 * 3600))));
}

#[test]
fn the_cascade_offers_only_up_to_k_only_with_a_skill_and_never_a_taken_case() {
    let p = policy();
    let three = |_: &[&str]| vec![volunteer("v3", 300.0), volunteer("v4", 400.0), volunteer("v5", 500.0)];
    let r = open(&routed("c1", &[("v1", 100.0), ("v2", 200.0)]), t(0), &p);
    let out = answer(&r, "v1", false, t(5), &p, three).expect("decline");
    assert_eq!(out.effects, [Effect::Offer { volunteer_id: "v3".into(), distance_m: 300.0 }], "k = 2: one more");

    // More offers open than k (the router offered three, k is one): none more, after a decline too.
    let mut more_than_k = open(&routed("c2", &[("v1", 100.0), ("v2", 200.0), ("v0", 250.0)]), t(0), &p);
    more_than_k.decision.volunteer_search.k = 1;
    let out = answer(&more_than_k, "v1", false, t(5), &p, three).expect("decline");
    assert!(out.effects.is_empty(), "v2 and v0 are still open: k = 1 is passed");

    let mut no_skill = r.clone();
    no_skill.decision.volunteer_search.skill = None;
    assert!(answer(&no_skill, "v1", false, t(5), &p, three).expect("decline").effects.is_empty());

    let mut taken = r.clone();
    taken.offers[1].status = OfferStatus::Accepted;
    assert!(answer(&taken, "v1", false, t(5), &p, three).expect("decline").effects.is_empty());
}

#[test]
fn an_offer_withdrawn_because_the_case_ended_is_not_called_taken() {
    let (p, l) = (policy(), ladder());
    let r = open(&routed("c1", &[("v1", 100.0)]), t(0), &p);
    let cancelled = act(&r, &dispatcher(), &Action::Cancel { reason: "hoax".into() }, t(1), &p, &l).expect("cancel");
    let err = answer(&cancelled.record, "v1", true, t(2), &p, |_| vec![]).expect_err("closed");
    assert!(err.to_string().contains("no longer open"), "{err}");
}

#[test]
fn only_the_same_open_incident_under_another_id_is_a_duplicate() {
    let mut p = policy();
    let first = open(&routed("a", &[]), t(0), &p);
    let mut smoke = routed("b", &[]);
    smoke.case.category = "smoke".into();
    assert!(!is_duplicate(&first, &smoke, &p.merge), "fire and smoke are not grouped");
    p.merge.groups = vec![vec!["smoke".into(), "gas".into()]];
    assert!(!is_duplicate(&first, &smoke, &p.merge), "a group must hold both categories");
    p.merge.groups = vec![vec!["fire".into(), "smoke".into()]];
    assert!(is_duplicate(&first, &smoke, &p.merge));

    assert!(!is_duplicate(&first, &routed("a", &[]), &p.merge), "a case is not its own duplicate");
    let mut merged = first.clone();
    merged.merged_into = Some("z".into());
    assert!(!is_duplicate(&merged, &smoke, &p.merge), "a merged report is not a case");
    let mut closed = first.clone();
    closed.state = CaseState::Closed;
    assert!(!is_duplicate(&closed, &smoke, &p.merge), "a closed case takes no more reports");
}

#[test]
fn a_split_leaves_the_primary_its_own_report_and_routes_the_other_afresh() {
    let p = policy();
    let first = open(&routed("a", &[]), t(0), &p);
    let second = open(&routed("b", &[]), t(1), &p);
    let (primary, merged) = merge(&first, &second, t(2));
    let (primary, revived) = split(&primary.record, &merged.record, &dispatcher(), t(4), &p).expect("split");
    let reports: Vec<&str> = primary.record.reports.iter().map(|r| r.report_id.as_str()).collect();
    assert_eq!(reports, ["a"]);
    assert_eq!(revived.record.accept_by, Some(t(304)));
}

#[test]
fn a_reopened_case_gets_a_fresh_deadline_from_whoever_has_it() {
    let (p, l) = (policy(), ladder());
    let resident = Actor { kind: ActorKind::Resident, id: "reporter".into() };
    let not_solved = Action::Rate { score: 1, solved: false, comment: None };
    let r = open(&routed("c1", &[]), t(0), &p);
    let accepted = act(&r, &dept("station"), &Action::Accept {}, t(1), &p, &l).expect("accept").record;
    let resolved =
        act(&accepted, &dept("station"), &Action::Resolve { note: "done".into() }, t(2), &p, &l).expect("resolve");
    let reopened = act(&resolved.record, &resident, &not_solved, t(3), &p, &l).expect("rate").record;
    assert_eq!(reopened.resolve_by, Some(t(3 + 4 * 3600)));
    // Resolved at the source before any department accepted: back to the responsible ones.
    let source = Actor { kind: ActorKind::Source, id: "/test".into() };
    let resolved = act(&r, &source, &Action::Resolve { note: "delivered".into() }, t(2), &p, &l).expect("resolve");
    let reopened = act(&resolved.record, &resident, &not_solved, t(3), &p, &l).expect("rate");
    assert_eq!((reopened.record.state, reopened.record.accept_by), (CaseState::Routed, Some(t(303))));
    assert_eq!(reopened.effects, [Effect::Assign { department: "station".into(), reason: AssignmentReason::Reopened }]);
}

#[test]
fn a_dispatcher_notes_supervises_and_follows_up_without_changing_the_state() {
    let p = policy();
    let dispatcher = Actor { kind: ActorKind::Dispatcher, id: "li".into() };
    let r = open(&routed("c1", &[]), t(0), &p);

    // 督办 while it waits to be accepted: the department it waits on is told.
    let urge = Action::Supervise { note: "  the resident called twice  ".into() };
    let out = act(&r, &dispatcher, &urge, t(5), &p, &ladder()).expect("supervise");
    let entry = out.record.timeline.last().expect("an entry");
    assert_eq!(
        (&entry.event, entry.department.as_deref(), entry.note.as_deref()),
        (&TimelineEvent::Supervised, Some("station"), Some("the resident called twice"))
    );
    assert_eq!(out.effects, [Effect::Notify { department: "station".into(), entry: 1 }]);
    assert_eq!((out.record.state, out.record.accept_by), (r.state, r.accept_by));

    // Once accepted, only the department that accepted it.
    let r = act(&out.record, &dept("station"), &Action::Accept {}, t(10), &p, &ladder()).expect("accept").record;
    let out = act(&r, &dispatcher, &urge, t(20), &p, &ladder()).expect("supervise");
    assert_eq!(out.effects, [Effect::Notify { department: "station".into(), entry: 3 }]);

    // A department may neither note, supervise nor follow up.
    for action in
        [Action::Note { note: "x".into() }, urge.clone(), Action::FollowUp { reached: true, note: "x".into() }]
    {
        assert!(matches!(act(&r, &dept("station"), &action, t(30), &p, &ladder()), Err(Refused::Forbidden(_))));
    }

    // Closed: a note and a follow-up still go on the timeline, a 督办 does not.
    let r = act(&r, &dispatcher, &Action::Close { note: None }, t(40), &p, &ladder()).expect("close").record;
    assert!(matches!(act(&r, &dispatcher, &urge, t(50), &p, &ladder()), Err(Refused::Invalid(_))));
    let noted = act(&r, &dispatcher, &Action::Note { note: "checked on site".into() }, t(50), &p, &ladder())
        .expect("note")
        .record;
    let call = Action::FollowUp { reached: false, note: "no answer".into() };
    let called = act(&noted, &dispatcher, &call, t(60), &p, &ladder()).expect("follow up");
    assert!(called.effects.is_empty());
    let entry = called.record.timeline.last().expect("an entry");
    assert_eq!((&entry.event, entry.note.as_deref()), (&TimelineEvent::FollowedUp, Some("not reached: no answer")));
    assert_eq!(called.record.state, CaseState::Closed);
    let events: Vec<&str> = called.record.timeline.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(&events[events.len() - 3..], ["closed", "noted", "followed_up"]);

    // Each needs its words.
    let blank = Action::Note { note: " ".into() };
    assert!(matches!(act(&r, &dispatcher, &blank, t(70), &p, &ladder()), Err(Refused::Invalid(_))));
}

#[test]
fn only_the_volunteer_who_took_the_case_reports_arriving_then_handing_over_once_each() {
    use linkbus_wire::VolunteerStep;
    let (p, l) = (policy(), ladder());
    let r = open(&routed("c1", &[("v1", 100.0), ("v2", 200.0)]), t(0), &p);
    // Before anyone took it, nobody reports.
    assert!(matches!(volunteer_step(&r, "v1", VolunteerStep::Arrived, t(1)), Err(Refused::Forbidden(_))));
    let r = answer(&r, "v1", true, t(2), &p, |_| vec![]).expect("accept").record;
    for (who, step) in [("v2", VolunteerStep::Arrived), ("v9", VolunteerStep::HandedOver)] {
        let err = volunteer_step(&r, who, step, t(3)).expect_err("not theirs");
        assert!(matches!(err, Refused::Forbidden(_)) && err.to_string().contains("not taken by"), "{err}");
    }
    let err = volunteer_step(&r, "v1", VolunteerStep::HandedOver, t(3)).expect_err("not there yet");
    assert!(err.to_string().contains("arriving before"), "{err}");
    let out = volunteer_step(&r, "v1", VolunteerStep::Arrived, t(4)).expect("arrived");
    assert!(out.effects.is_empty());
    let last = out.record.timeline.last().expect("an entry");
    assert_eq!(
        (&last.event, &last.actor, last.at),
        (&TimelineEvent::VolunteerArrived, &Actor { kind: ActorKind::Volunteer, id: "v1".into() }, t(4))
    );
    assert_eq!(out.record.state, r.state, "a volunteer's step does not change the case's state");
    let err = volunteer_step(&out.record, "v1", VolunteerStep::Arrived, t(5)).expect_err("twice");
    assert!(err.to_string().contains("already reported"), "{err}");
    let out = volunteer_step(&out.record, "v1", VolunteerStep::HandedOver, t(6)).expect("handed over");
    assert_eq!(out.record.timeline.last().map(|e| &e.event), Some(&TimelineEvent::VolunteerHandedOver));
    assert!(volunteer_step(&out.record, "v1", VolunteerStep::HandedOver, t(7)).is_err(), "once");
    // Nothing once the case has ended.
    let fresh =
        answer(&open(&routed("c2", &[("v1", 100.0)]), t(0), &p), "v1", true, t(1), &p, |_| vec![]).expect("accept");
    let cancelled =
        act(&fresh.record, &dispatcher(), &Action::Cancel { reason: "hoax".into() }, t(2), &p, &l).expect("cancel");
    let err = volunteer_step(&cancelled.record, "v1", VolunteerStep::Arrived, t(3)).expect_err("ended");
    assert!(err.to_string().contains("cancelled"), "{err}");
}

fn replayed(actor: Actor, after_open_secs: f64, action: Action) -> linkbus_wire::ReplayRequest {
    linkbus_wire::ReplayRequest {
        case_id: "c1".into(),
        actor,
        after_open_secs,
        origin: "from the record".into(),
        action,
    }
}

#[test]
fn a_replayed_action_happens_at_its_own_time_and_says_where_it_comes_from() {
    let (p, l) = (policy(), ladder());
    let r = open(&routed("c1", &[]), t(0), &p);
    let accept = replayed(dept("station"), 0.25, Action::Accept {});
    let r = replay(&r, &accept, t(100), &p, &l).expect("accept").record;
    let at = t(0) + jiff::SignedDuration::from_millis(250);
    assert_eq!((r.state, r.timeline[1].at, r.updated_at), (CaseState::Accepted, at, at));
    assert_eq!(r.timeline[1].note.as_deref(), Some("from the record"));
    assert_eq!(r.resolve_by, Some(at + p.deadlines(r.priority).resolve), "deadlines run from the replayed time");
    let resolve = replayed(dept("station"), 50.0, Action::Resolve { note: "Case Resolved".into() });
    let r = replay(&r, &resolve, t(100), &p, &l).expect("resolve").record;
    assert_eq!((r.state, r.timeline[2].at), (CaseState::Resolved, t(50)));
    assert_eq!(r.timeline[2].note.as_deref(), Some("Case Resolved (from the record)"));
    let close = replayed(dept("station"), 50.0, Action::Close { note: None });
    let closed = replay(&r, &close, t(100), &p, &l).expect("close at the same time as the last entry").record;
    assert_eq!((closed.state, closed.timeline[3].at), (CaseState::Closed, t(50)));
    let rate = replayed(
        Actor { kind: ActorKind::Resident, id: "reporter".into() },
        60.0,
        Action::Rate { score: 4, solved: true, comment: None },
    );
    let r = replay(&r, &rate, t(60), &p, &l).expect("rate, at exactly now").record;
    assert_eq!((r.ratings[0].at, r.timeline[3].at), (t(60), t(60)));
}

#[test]
fn a_replayed_action_is_refused_in_the_future_out_of_order_or_as_a_party_that_may_not_replay() {
    let (p, l) = (policy(), ladder());
    let r = open(&routed("c1", &[]), t(0), &p);
    let refused = |req: &linkbus_wire::ReplayRequest, now: i64| {
        replay(&r, req, t(now), &p, &l).map(|o| o.record.state).expect_err("refused").to_string()
    };
    assert!(refused(&replayed(dept("station"), 10.5, Action::Accept {}), 10).starts_with("not yet"));
    for secs in [-1.0, f64::NAN, f64::INFINITY, MAX_AFTER_OPEN_SECS * 2.0] {
        assert!(refused(&replayed(dept("station"), secs, Action::Accept {}), 10).contains("after_open_secs"), "{secs}");
    }
    let ten_years = 10.0 * 365.25 * 86_400.0;
    let long_after = replayed(dept("station"), ten_years, Action::Accept {});
    assert!(replay(&r, &long_after, t(11 * 366 * 86_400), &p, &l).is_ok(), "a record ten years long is replayed");
    let later = replay(&r, &replayed(dept("station"), 5.0, Action::Accept {}), t(10), &p, &l).expect("accept").record;
    let early = replayed(dept("station"), 4.0, Action::Resolve { note: "done".into() });
    let err = replay(&later, &early, t(10), &p, &l).expect_err("before the accept").to_string();
    assert!(err.contains("before the case's last entry"), "{err}");
    for kind in [ActorKind::Dispatcher, ActorKind::System, ActorKind::Volunteer] {
        let req = replayed(Actor { kind, id: "x".into() }, 1.0, Action::Close { note: None });
        assert!(refused(&req, 10).starts_with("forbidden"), "{kind:?}");
    }
    assert!(refused(&replayed(dept("other"), 1.0, Action::Accept {}), 10).starts_with("forbidden"), "not theirs");
    let mut blank = replayed(dept("station"), 1.0, Action::Accept {});
    blank.origin = " ".into();
    assert!(refused(&blank, 10).contains("origin"));
    blank.origin = "x".repeat(MAX_ORIGIN_CHARS + 1);
    assert!(refused(&blank, 10).contains("origin"));
    blank.origin = "x".repeat(MAX_ORIGIN_CHARS);
    assert!(replay(&r, &blank, t(10), &p, &l).is_ok(), "{MAX_ORIGIN_CHARS} characters are fine");
    assert!(refused(&replayed(dept("station"), 1.0, Action::Split { report_id: "c2".into() }), 10).contains("split"));
}

#[test]
fn replay_requests_refuse_unknown_and_missing_fields() {
    let ok: linkbus_wire::ReplayRequest = serde_json::from_str(
        r#"{"case_id":"c1","actor":{"kind":"department","id":"station"},"after_open_secs":1.5,"origin":"o","action":"accept"}"#,
    )
    .expect("a replay request");
    assert_eq!((ok.after_open_secs, ok.action), (1.5, Action::Accept {}));
    for bad in [
        r#"{"case_id":"c1","actor":{"kind":"department","id":"s"},"after_open_secs":1,"origin":"o","action":"accept","x":1}"#,
        r#"{"case_id":"c1","actor":{"kind":"department","id":"s"},"origin":"o","action":"accept"}"#,
        r#"{"case_id":"c1","actor":{"kind":"king","id":"s"},"after_open_secs":1,"origin":"o","action":"accept"}"#,
        r#"{"case_id":"c1","actor":{"kind":"department","id":"s"},"after_open_secs":"1","origin":"o","action":"accept"}"#,
        r#"{"actor":{"kind":"department","id":"s"},"after_open_secs":1,"origin":"o","action":"accept"}"#,
    ] {
        assert!(serde_json::from_str::<linkbus_wire::ReplayRequest>(bad).is_err(), "{bad}");
    }
}
