//! The closed loop against a real nats-server: departments accept, reject, resolve over NATS
//! request/reply; deadlines escalate (once, across a restart and across replicas); two replicas
//! changing one case at once agree on it; duplicates
//! merge and split; a "not solved" rating reopens; volunteers decline, cascade, accept, and the
//! hourly cap holds.

use std::time::Duration;

use linkbus::config::{Config, DeadlineConfig};
use linkbus_bus::nats::{STREAM_CASES, STREAM_OFFERS, STREAM_ROUTED};
use linkbus_tests::{TestBus, case, department_action, publish_case, read_stream, volunteer_answer, wait_for_case};
use linkbus_wire::{Action, Actor, ActorKind, CaseAssigned, CaseState, CloudEvent, OfferStatus, SourceSystem};

/// Mission District: sewer issues go to PUC Sewer Ops (region-wide rule), fire and cardiac
/// arrest to Fire Station 7 (community rule), with the SFFD dispatch centre as fallback.
const MISSION: (f64, f64) = (-122.4194, 37.7599);

fn quick(bus: &TestBus, accept_secs: u64) -> Config {
    let mut config = bus.config();
    config.lifecycle.deadlines = [DeadlineConfig { accept_secs, resolve_secs: 3600 }; 4];
    config.lifecycle.tick_ms = 50;
    config
}

#[tokio::test]
async fn a_department_accepts_works_and_resolves_over_nats_and_others_are_refused() {
    let bus = TestBus::start().await;
    let service = bus.service(&quick(&bus, 3600)).await;
    publish_case(&bus.js, &case("lc-accept", SourceSystem::PublicService, "sewer_issues", MISSION.0, MISSION.1)).await;
    wait_for_case(&service, "lc-accept", "routed", |r| r.state == CaseState::Routed).await;

    let refused = department_action(&bus.client, "dpw-ops-queue", "lc-accept", Action::Accept {}).await;
    assert!(!refused.ok && refused.error.as_deref().is_some_and(|e| e.contains("forbidden")), "{refused:?}");

    let reply = department_action(&bus.client, "puc-sewer-ops", "lc-accept", Action::Accept {}).await;
    assert_eq!((reply.ok, reply.state), (true, Some(CaseState::Accepted)), "{reply:?}");
    let progress = Action::Progress { note: "crew dispatched".into() };
    assert!(department_action(&bus.client, "puc-sewer-ops", "lc-accept", progress).await.ok);
    let resolve = Action::Resolve { note: "drain cleared".into() };
    let reply = department_action(&bus.client, "puc-sewer-ops", "lc-accept", resolve).await;
    assert_eq!(reply.state, Some(CaseState::Resolved));
    assert!(department_action(&bus.client, "puc-sewer-ops", "lc-accept", Action::Close { note: None }).await.ok);

    // Each step is on the timeline stream, once, for dispatchers and audit.
    let events = read_stream(&bus.js, STREAM_CASES, "case.lc-accept.>", 5).await;
    let subjects: Vec<&str> = events.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(
        subjects,
        [
            "case.lc-accept.routed",
            "case.lc-accept.accepted",
            "case.lc-accept.progress",
            "case.lc-accept.resolved",
            "case.lc-accept.closed"
        ]
    );
    let record = service.cases.get("lc-accept").expect("record");
    assert_eq!(record.timeline[1].actor, Actor { kind: ActorKind::Department, id: "puc-sewer-ops".into() });

    // Garbage on the action subject gets a clear error, not silence.
    let reply = bus.client.request("action.puc-sewer-ops", "{\"case_id\": 1}".into()).await.expect("reply");
    let reply: linkbus_wire::ActionReply = serde_json::from_slice(&reply.payload).expect("json");
    assert!(!reply.ok && reply.error.is_some_and(|e| e.contains("not an action request")));
    service.stop().await;
}

#[tokio::test]
async fn a_rejected_case_goes_to_the_next_candidate_then_the_dispatchers() {
    let bus = TestBus::start().await;
    let service = bus.service(&quick(&bus, 3600)).await;
    publish_case(&bus.js, &case("lc-reject", SourceSystem::Emergency, "fire", MISSION.0, MISSION.1)).await;
    let r = wait_for_case(&service, "lc-reject", "routed", |r| r.state == CaseState::Routed).await;
    assert_eq!(r.departments, ["sffd-station-7"]);
    assert_eq!(r.candidates, ["sffd-dispatch", "sf-311"]);

    let reject = || Action::Reject { reason: "engine out of service".into() };
    let reply = department_action(&bus.client, "sffd-station-7", "lc-reject", reject()).await;
    assert_eq!(reply.state, Some(CaseState::Routed));
    let assigned = read_stream(&bus.js, STREAM_ROUTED, "routed.dept.sffd-dispatch.fire", 1).await;
    let assignment = assigned
        .iter()
        .find_map(|m| serde_json::from_slice::<CloudEvent<CaseAssigned>>(&m.payload).ok())
        .expect("an assignment to the dispatch centre");
    assert_eq!(assignment.data.department, "sffd-dispatch");
    assert!(assignment.data.record.timeline.iter().any(|e| e.note.as_deref() == Some("engine out of service")));

    department_action(&bus.client, "sffd-dispatch", "lc-reject", reject()).await;
    let reply = department_action(&bus.client, "sf-311", "lc-reject", reject()).await;
    assert_eq!(reply.state, Some(CaseState::Rejected));
    let r = service.cases.get("lc-reject").expect("record");
    assert!(r.escalation_open, "dispatchers are alerted when every candidate rejects");
    assert_eq!(read_stream(&bus.js, STREAM_CASES, "case.lc-reject.escalated", 1).await.len(), 1);
    service.stop().await;
}

#[tokio::test]
async fn an_unaccepted_case_escalates_on_time_once_across_a_restart_and_two_replicas() {
    let bus = TestBus::start().await;
    let config = quick(&bus, 2);
    let first = bus.service(&config).await;
    publish_case(&bus.js, &case("lc-late", SourceSystem::PublicService, "sewer_issues", MISSION.0, MISSION.1)).await;
    let r = wait_for_case(&first, "lc-late", "routed", |r| r.state == CaseState::Routed).await;
    let deadline = r.accept_by.expect("accept deadline");
    // linkbus stops before the deadline…
    first.stop().await;
    assert_eq!(read_stream(&bus.js, STREAM_CASES, "case.lc-late.escalated", 0).await.len(), 0);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    // …and two replicas come back after it: the escalation fires, once. They come back with an
    // hour to accept, so the parent's own deadline cannot pass (and rightly escalate again)
    // while a loaded machine runs the rest of the test.
    let later = quick(&bus, 3600);
    let (a, b) = (bus.service(&later).await, bus.service(&later).await);
    let r = wait_for_case(&a, "lc-late", "escalation", |r| r.escalations >= 1).await;
    assert!(r.timeline.iter().any(|e| e.event == "escalated" && e.at >= deadline));
    assert_eq!(r.departments, ["puc-sewer-ops", "sf-311"], "escalated up the ladder to the parent");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let escalations = read_stream(&bus.js, STREAM_CASES, "case.lc-late.escalated", 1).await;
    assert_eq!(escalations.len(), 1, "two replicas, one escalation");
    assert_eq!(a.cases.get("lc-late").map(|r| r.escalations), Some(1));
    let assigned = read_stream(&bus.js, STREAM_ROUTED, "routed.dept.sf-311.sewer_issues", 1).await;
    assert_eq!(assigned.len(), 1);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn two_replicas_agree_on_a_case_changed_through_both_at_once() {
    let bus = TestBus::start().await;
    let config = quick(&bus, 3600);
    let (a, b) = (bus.service(&config).await, bus.service(&config).await);
    publish_case(&bus.js, &case("lc-both", SourceSystem::PublicService, "sewer_issues", MISSION.0, MISSION.1)).await;
    wait_for_case(&a, "lc-both", "routed", |r| r.state == CaseState::Routed).await;
    assert!(department_action(&bus.client, "puc-sewer-ops", "lc-both", Action::Accept {}).await.ok);
    // Progress notes at once: the queue group spreads them over both replicas, whose writes race
    // on the record's revision, and each replica's follower brings it the other's.
    const NOTES: usize = 16;
    let notes = (0..NOTES).map(|n| {
        department_action(&bus.client, "puc-sewer-ops", "lc-both", Action::Progress { note: format!("step {n}") })
    });
    for reply in futures::future::join_all(notes).await {
        assert!(reply.ok, "{reply:?}");
    }
    // Both end at the last record stored, whatever order the answers and the followers came in.
    let all = |r: &linkbus_wire::CaseRecord| r.timeline.len() == 2 + NOTES;
    let (ra, rb) =
        (wait_for_case(&a, "lc-both", "every note", all).await, wait_for_case(&b, "lc-both", "every note", all).await);
    assert_eq!(ra, rb);
    let progress = read_stream(&bus.js, STREAM_CASES, "case.lc-both.progress", NOTES).await;
    assert_eq!(progress.len(), NOTES, "each note on the timeline stream once");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn deadlines_survive_a_nats_crash() {
    let mut bus = TestBus::start().await;
    let service = bus.service(&quick(&bus, 2)).await;
    publish_case(&bus.js, &case("lc-crash", SourceSystem::PublicService, "sewer_issues", MISSION.0, MISSION.1)).await;
    let routed = wait_for_case(&service, "lc-crash", "routed", |r| r.state == CaseState::Routed).await;
    let accept_by = routed.accept_by.expect("accept deadline");
    // NATS dies (SIGKILL) before the deadline and comes back after it, on the same files.
    bus.server.kill().await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    bus.server.restart().await.expect("nats-server restarts");
    let r = wait_for_case(&service, "lc-crash", "escalation after the crash", |r| r.escalations >= 1).await;
    assert_eq!(r.departments[..2], ["puc-sewer-ops", "sf-311"]);
    // Each deadline fired once: escalations are at least one accept period (2 s) apart, the
    // first no earlier than the deadline, and the timeline and the stream agree.
    let deadline = accept_by;
    let times: Vec<jiff::Timestamp> = r.timeline.iter().filter(|e| e.event == "escalated").map(|e| e.at).collect();
    assert!(times[0] >= deadline, "escalated before its deadline");
    assert!(times.windows(2).all(|w| w[1] - w[0] >= jiff::SignedDuration::from_millis(1_900)), "{times:?}");
    let events = read_stream(&bus.js, STREAM_CASES, "case.lc-crash.escalated", times.len()).await;
    assert!(events.len() >= times.len() && events.len() <= times.len() + 1, "{} events, {times:?}", events.len());
    service.stop().await;
}

#[tokio::test]
async fn reports_of_one_incident_from_two_systems_merge_and_a_dispatcher_splits_them() {
    let bus = TestBus::start().await;
    let service = bus.service(&quick(&bus, 3600)).await;
    publish_case(&bus.js, &case("lc-119", SourceSystem::Emergency, "fire", MISSION.0, MISSION.1)).await;
    wait_for_case(&service, "lc-119", "routed", |_| true).await;
    // The same fire reported to 12345 a moment later, 80 m away.
    publish_case(&bus.js, &case("lc-12345", SourceSystem::PublicService, "fire", MISSION.0 + 0.0009, MISSION.1)).await;
    let merged = wait_for_case(&service, "lc-12345", "merge", |r| r.merged_into.is_some()).await;
    assert_eq!((merged.merged_into.as_deref(), merged.state), (Some("lc-119"), CaseState::Cancelled));
    let primary = service.cases.get("lc-119").expect("primary");
    let systems: Vec<SourceSystem> = primary.reports.iter().map(|r| r.system).collect();
    assert_eq!(systems, [SourceSystem::Emergency, SourceSystem::PublicService]);
    let by_source = service.cases.by_source_id(Some("/tests"), "lc-12345").expect("found by its source id");
    assert_eq!(by_source.case_id, "lc-119", "a merged report leads to the case it joined");
    assert!(service.cases.by_source_id(Some("/sf311"), "lc-12345").is_none(), "source ids are per source");

    let dispatcher = Actor { kind: ActorKind::Dispatcher, id: "dispatcher-li".into() };
    let split = Action::Split { report_id: "lc-12345".into() };
    let primary = service.cases.act("lc-119", &dispatcher, &split).await.expect("split");
    assert_eq!(primary.reports.len(), 1);
    let revived = wait_for_case(&service, "lc-12345", "split", |r| r.merged_into.is_none()).await;
    assert_eq!(revived.state, CaseState::Routed);
    assert!(revived.timeline.iter().any(|e| e.event == "split" && e.actor == dispatcher));
    service.stop().await;
}

#[tokio::test]
async fn a_burst_of_reports_of_one_incident_becomes_one_case() {
    let bus = TestBus::start().await;
    let service = bus.service(&quick(&bus, 3600)).await;
    // Eight reports of one fire, a few metres apart, sent at once among unrelated cases: the case
    // book opens them concurrently, and still every one but the first opened joins it.
    let ids: Vec<String> = (0..8).map(|n| format!("lc-burst-{n}")).collect();
    let mut sends = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        sends.push(case(id, SourceSystem::Emergency, "fire", MISSION.0 + n as f64 * 0.00005, MISSION.1));
        sends.push(case(&format!("lc-other-{n}"), SourceSystem::PublicService, "sewer_issues", -122.45, 37.77));
    }
    futures::future::join_all(sends.iter().map(|event| publish_case(&bus.js, event))).await;
    let records: Vec<_> = futures::future::join_all(
        ids.iter().map(|id| wait_for_case(&service, id, "opened", |r| r.merged_into.is_some() || r.reports.len() == 8)),
    )
    .await;
    let primaries: Vec<&str> = records.iter().filter(|r| r.merged_into.is_none()).map(|r| r.case_id.as_str()).collect();
    assert_eq!(primaries.len(), 1, "one case for the incident: {primaries:?}");
    for r in &records {
        assert_eq!(r.merged_into.as_deref().unwrap_or(primaries[0]), primaries[0], "{r:?}");
    }
    let primary = service.cases.get(primaries[0]).expect("the primary");
    let mut reports: Vec<&str> = primary.reports.iter().map(|r| r.report_id.as_str()).collect();
    reports.sort_unstable();
    assert_eq!(reports, ids.iter().map(String::as_str).collect::<Vec<_>>());
    // The unrelated reports (another category) stayed cases of their own.
    for n in 0..8 {
        let other = wait_for_case(&service, &format!("lc-other-{n}"), "opened", |_| true).await;
        assert!(other.merged_into.is_none() || other.merged_into.as_deref().is_some_and(|p| p.starts_with("lc-other")));
    }
    service.stop().await;
}

#[tokio::test]
async fn a_resident_saying_not_solved_reopens_the_case() {
    let bus = TestBus::start().await;
    let service = bus.service(&quick(&bus, 3600)).await;
    publish_case(&bus.js, &case("lc-rate", SourceSystem::PublicService, "sewer_issues", MISSION.0, MISSION.1)).await;
    wait_for_case(&service, "lc-rate", "routed", |_| true).await;
    department_action(&bus.client, "puc-sewer-ops", "lc-rate", Action::Accept {}).await;
    department_action(&bus.client, "puc-sewer-ops", "lc-rate", Action::Resolve { note: "cleared".into() }).await;
    let resident = Actor { kind: ActorKind::Resident, id: "reporter".into() };
    let rate = Action::Rate { score: 1, solved: false, comment: Some("still flooding".into()) };
    let r = service.cases.act("lc-rate", &resident, &rate).await.expect("rate");
    assert_eq!((r.state, r.reopened, r.ratings.len()), (CaseState::Accepted, 1, 1));
    assert_eq!(read_stream(&bus.js, STREAM_CASES, "case.lc-rate.reopened", 1).await.len(), 1);
    // Kept per department for the dashboards.
    let stats = service.cases.department_stats();
    let puc = stats.iter().find(|s| s.department == "puc-sewer-ops").expect("stats");
    assert_eq!((puc.cases, puc.accepted, puc.ratings, puc.not_solved), (1, 1, 1, 1));
    assert_eq!((puc.average_score, puc.reopen_rate), (Some(1.0), Some(1.0)));
    service.stop().await;
}

#[tokio::test]
async fn volunteers_decline_cascade_accept_and_the_hourly_cap_holds() {
    let bus = TestBus::start().await;
    let mut config = quick(&bus, 3600);
    config.routing.max_offers_per_hour = 1;
    let service = bus.service(&config).await;
    publish_case(&bus.js, &case("lc-cpr", SourceSystem::Emergency, "cardiac_arrest", MISSION.0, MISSION.1)).await;
    let r = wait_for_case(&service, "lc-cpr", "offers", |r| r.offers.len() == 5).await;
    let first: Vec<String> = r.offers.iter().map(|o| o.volunteer_id.clone()).collect();

    let reply = volunteer_answer(&bus.client, &first[0], "lc-cpr", false).await;
    assert!(reply.ok, "{reply:?}");
    let r = wait_for_case(&service, "lc-cpr", "cascade", |r| r.offers.len() == 6).await;
    let sixth = &r.offers[5];
    assert!(!first.contains(&sixth.volunteer_id) && sixth.distance_m >= r.offers[4].distance_m);
    let offers = read_stream(&bus.js, STREAM_OFFERS, &format!("volunteer.{}.offer", sixth.volunteer_id), 1).await;
    assert_eq!(offers.len(), 1, "the next nearest got an offer");

    let reply = volunteer_answer(&bus.client, &first[1], "lc-cpr", true).await;
    let assignment = reply.assignment.expect("the accepting volunteer is told where to go");
    let facility = assignment.facility.expect("and the nearest relevant facility");
    assert_eq!(facility.kind, "fire_station");
    let taken = volunteer_answer(&bus.client, &first[2], "lc-cpr", true).await;
    assert!(!taken.ok && taken.error.is_some_and(|e| e.contains("already taken")));
    let r = service.cases.get("lc-cpr").expect("record");
    let withdrawn = r.offers.iter().filter(|o| o.status == OfferStatus::Withdrawn).count();
    assert_eq!(withdrawn, 4, "one accept closes the offer to the rest");
    let closed = read_stream(&bus.js, STREAM_OFFERS, "volunteer.*.offer_closed", 4).await;
    assert_eq!(closed.len(), 4);
    // Volunteers never see each other or the reporter.
    assert!(closed.iter().all(|m| !String::from_utf8_lossy(&m.payload).contains("555-0100")));

    // Everyone offered once this hour is at the cap of 1: a second cardiac arrest next door
    // passes them over and says so.
    let deadline = tokio::time::Instant::now() + linkbus_tests::WAIT;
    while linkbus_bus::sync::read(&service.state.offers).in_last_hour(&first[0], jiff::Timestamp::now().as_second())
        == 0
    {
        assert!(tokio::time::Instant::now() < deadline, "the offer ledger never saw the offers");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    publish_case(&bus.js, &case("lc-cpr-2", SourceSystem::Emergency, "cardiac_arrest", MISSION.0 + 0.002, MISSION.1))
        .await;
    let second = wait_for_case(&service, "lc-cpr-2", "routed", |_| true).await;
    let capped = second.decision.volunteer_search.skipped_capped;
    assert!(capped >= 1, "{:?}", second.decision.explanation);
    assert!(second.offers.iter().all(|o| !r.offers.iter().any(|p| p.volunteer_id == o.volunteer_id)));
    assert!(
        second.decision.explanation.iter().any(|l| l.contains("alerted too often")),
        "{:?}",
        second.decision.explanation
    );
    service.stop().await;
}

/// What a department's action costs end to end, one at a time: 400 cases accepted, then resolved,
/// by NATS requests on `action.<department>` to an in-process service (printed per action: `cargo
/// test --release -p linkbus-tests --test it -- lifecycle::action_cost --ignored --nocapture`;
/// numbers in docs/bench/profile-durable.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run it by name"]
async fn action_cost_one_at_a_time() {
    const N: u32 = 400;
    let bus = TestBus::start().await;
    let mut config = bus.config();
    config.lifecycle.merge_distance_m = 0.0;
    let service = bus.service(&config).await;
    let ids: Vec<String> = (0..N).map(|n| format!("lc-cost-{n}")).collect();
    for (n, id) in (0..N).zip(&ids) {
        let (lon, lat) = (MISSION.0 + f64::from(n % 20) * 1e-4, MISSION.1 + f64::from(n / 20) * 1e-4);
        publish_case(&bus.js, &case(id, SourceSystem::PublicService, "sewer_issues", lon, lat)).await;
    }
    for id in &ids {
        wait_for_case(&service, id, "opened", |_| true).await;
    }
    let mut per_action = Vec::new();
    for action in [Action::Accept {}, Action::Resolve { note: "cleared".into() }] {
        let started = std::time::Instant::now();
        for id in &ids {
            let reply = department_action(&bus.client, "puc-sewer-ops", id, action.clone()).await;
            assert!(reply.ok, "{reply:?}");
        }
        per_action.push(started.elapsed() / N);
    }
    println!("per action, one at a time: accept {:?}, resolve {:?}", per_action[0], per_action[1]);
    service.stop().await;
}
