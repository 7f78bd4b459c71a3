//! A running router on a real nats-server: cases in on `ingest.…`, out on their department's,
//! community's and volunteers' subjects, once; bad input kept in the dead letter with a reason;
//! volunteer changes used within a second.

use std::time::Duration;

use async_nats::jetstream::consumer;
use bytes::Bytes;
use futures::StreamExt;
use linkbus_bus::nats::{
    self, BUCKET_VOLUNTEERS, HEADER_REASON, HEADER_REASON_CODE, STREAM_CASES, STREAM_DEADLETTER, STREAM_OFFERS,
    STREAM_ROUTED,
};
use linkbus_tests::{TestBus, WAIT, case, header, publish_case, publish_raw, read_community, read_stream};
use linkbus_wire::{CloudEvent, Location, RoutedCase, SourceSystem, VolunteerOffer, VolunteerStatus};

/// Mission District, San Francisco: inside the `mission` neighborhood.
const MISSION: (f64, f64) = (-122.4194, 37.7599);

#[tokio::test]
async fn a_case_comes_out_on_its_department_community_and_volunteer_subjects_once() {
    let bus = TestBus::start().await;
    let service = bus.service(&bus.config()).await;

    // A department listening with a plain core-NATS subscription, as any client can.
    let mut department = bus.client.subscribe("routed.dept.puc-sewer-ops.>").await.expect("subscribe");
    bus.client.flush().await.expect("flush");

    let event = case("it-sewer-1", SourceSystem::PublicService, "sewer_issues", MISSION.0, MISSION.1);
    let ack = publish_case(&bus.js, &event).await;
    assert!(!ack.duplicate);
    // The same event again: JetStream drops it as a duplicate.
    assert!(publish_case(&bus.js, &event).await.duplicate);

    let msg =
        tokio::time::timeout(WAIT, department.next()).await.expect("department receives the case").expect("message");
    assert_eq!(msg.subject.as_str(), "routed.dept.puc-sewer-ops.sewer_issues.mission", "names its community");
    let routed: CloudEvent<RoutedCase> = serde_json::from_slice(&msg.payload).expect("routed event");
    assert_eq!(routed.data.case_id, "it-sewer-1");
    assert_eq!(routed.data.case, event.data);
    let community = routed.data.decision.community.community.as_ref().expect("community");
    assert_eq!(community.id, "mission");
    assert!(routed.data.decision.explanation.iter().any(|line| line.contains("Mission")));

    // Exactly one copy on each output subject.
    let timeline = read_stream(&bus.js, STREAM_CASES, "case.it-sewer-1.>", 1).await;
    assert_eq!(timeline.len(), 1);
    // One stored copy serves the department and the community it happened in.
    assert_eq!(read_stream(&bus.js, STREAM_ROUTED, "routed.>", 1).await.len(), 1);
    let for_community = read_community(&bus.js, "mission", 1).await;
    assert_eq!(for_community.iter().map(|m| m.subject.as_str()).collect::<Vec<_>>(), [msg.subject.as_str()]);
    assert!(read_community(&bus.js, "castro-upper-market", 0).await.is_empty());
    // Sewer issues call for no volunteers.
    assert!(routed.data.decision.volunteers.is_empty());

    // A cleanup case does get volunteers, each with their own offer and no reporter contact.
    let cleanup =
        case("it-cleanup-1", SourceSystem::PublicService, "street_and_sidewalk_cleaning", MISSION.0, MISSION.1);
    publish_case(&bus.js, &cleanup).await;
    let timeline = read_stream(&bus.js, STREAM_CASES, "case.it-cleanup-1.routed", 1).await;
    let routed: CloudEvent<RoutedCase> = serde_json::from_slice(&timeline[0].payload).expect("routed");
    let offered = &routed.data.decision.volunteers;
    assert!(!offered.is_empty(), "{:?}", routed.data.decision.explanation);
    let offers = read_stream(&bus.js, STREAM_OFFERS, "volunteer.*.offer", offered.len()).await;
    assert_eq!(offers.len(), offered.len());
    for (msg, chosen) in offers.iter().zip(offered) {
        assert_eq!(msg.subject.as_str(), format!("volunteer.{}.offer", chosen.id));
        let text = String::from_utf8_lossy(&msg.payload);
        assert!(!text.contains("555-0100"), "an offer leaks the reporter's phone: {text}");
        let offer: CloudEvent<VolunteerOffer> = serde_json::from_slice(&msg.payload).expect("offer");
        assert_eq!(offer.data.case_id, "it-cleanup-1");
    }
    service.stop().await;
}

/// A case an earlier version routed half-way (before the department's copy named the community,
/// 2026-12-08: its department's copy stored on `routed.dept.<d>.<category>`, its community's copy
/// on `routed.community.<c>` not yet) gets that community copy when this version finishes it; a
/// case this version routed half-way gets nothing more (its one copy serves the community).
#[tokio::test]
async fn a_case_an_earlier_version_routed_half_way_gets_its_community_copy_and_no_other() {
    let bus = TestBus::start().await;
    let config = bus.config();
    let service = bus.service(&config).await;
    let routed_here = case("it-layout-here", SourceSystem::PublicService, "sewer_issues", MISSION.0, MISSION.1);
    publish_case(&bus.js, &routed_here).await;
    let timeline = read_stream(&bus.js, STREAM_CASES, "case.it-layout-here.routed", 1).await;
    assert_eq!(read_community(&bus.js, "mission", 1).await.len(), 1);

    // Two reports left half-way, each with its decision stored and its department's copy, under
    // the message ids the router uses: by an earlier version (the four-token subject) and by this
    // one. Apart, so that neither is merged into another as the same incident.
    let half_way = |id: &str, lat: f64, copy: &str| {
        let mut routed: serde_json::Value = serde_json::from_slice(&timeline[0].payload).expect("routed event");
        routed["id"] = format!("{id}:routed").into();
        routed["subject"] = id.into();
        routed["data"]["case_id"] = id.into();
        routed["data"]["case"]["source_id"] = id.into();
        routed["data"]["case"]["location"]["lat"] = lat.into();
        let body = Bytes::from(serde_json::to_vec(&routed).expect("serialise"));
        let mut report = routed_here.clone();
        (report.id, report.subject, report.data.source_id) = (id.into(), Some(id.into()), id.into());
        report.data.location.lat = lat;
        (report, body, copy.to_owned())
    };
    let reports = [
        half_way("it-layout-earlier", MISSION.1 + 0.004, "routed.dept.puc-sewer-ops.sewer_issues"),
        half_way("it-layout-half", MISSION.1 - 0.004, "routed.dept.puc-sewer-ops.sewer_issues.mission"),
    ];
    for (report, body, copy) in &reports {
        let id = &report.id;
        publish_raw(&bus.js, &format!("case.{id}.routed"), &format!("{id}:routed"), body.clone()).await;
        publish_raw(&bus.js, copy, &format!("{id}:routed:dept:puc-sewer-ops"), body.clone()).await;
        publish_case(&bus.js, report).await;
    }

    // Every report handled: nothing left for the routers.
    let stream = bus.js.get_stream(nats::STREAM_INGEST_PUBLIC_SERVICE).await.expect("ingest stream");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let info = stream.consumer_info(&config.router.durable).await.expect("the routers' consumer");
        if info.num_pending + info.num_ack_pending as u64 == 0 && info.delivered.stream_sequence >= 3 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the routers did not finish: {info:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ids = |msgs: &[async_nats::jetstream::Message]| -> Vec<Option<String>> {
        msgs.iter().map(|m| header(m, "Nats-Msg-Id")).collect()
    };
    let community = read_community(&bus.js, "mission", 3).await;
    assert_eq!(
        ids(&community),
        [
            Some("it-layout-here:routed:dept:puc-sewer-ops".into()),
            Some("it-layout-half:routed:dept:puc-sewer-ops".into()),
            Some("it-layout-earlier:routed:community:mission".into()),
        ],
        "the one copy of each case this version routed, and the earlier version's community copy"
    );
    let finished: CloudEvent<RoutedCase> = serde_json::from_slice(&community[2].payload).expect("routed event");
    assert_eq!(finished.data.case_id, "it-layout-earlier");
    let all = read_stream(&bus.js, STREAM_ROUTED, "routed.>", 4).await;
    assert_eq!(all.len(), 4, "nothing else was stored: {:?}", ids(&all));
    service.stop().await;
}

#[tokio::test]
async fn bad_input_is_dead_lettered_with_its_reason_and_original_bytes() {
    let bus = TestBus::start().await;
    let service = bus.service(&bus.config()).await;

    let good = serde_json::to_value(case("dl-x", SourceSystem::PublicService, "sewer_issues", MISSION.0, MISSION.1))
        .expect("json");
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = good.clone();
        f(&mut v);
        Bytes::from(v.to_string())
    };
    let subject = "ingest.public_service.sewer_issues";
    let inputs: Vec<(&str, Bytes, &str, &str)> = vec![
        ("dl-malformed", Bytes::from_static(b"{\"specversion\": \"1.0\", oops"), "malformed", "malformed event"),
        (
            "dl-missing",
            with(&|v| {
                v["data"].as_object_mut().expect("data").remove("category");
            }),
            "malformed",
            "missing field `category`",
        ),
        (
            "dl-lat91",
            with(&|v| v["data"]["location"]["lat"] = 91.0.into()),
            "invalid",
            "data.location.lat: 91 is not a latitude",
        ),
        ("dl-nan", Bytes::from(good.to_string().replace("37.7599", "NaN")), "malformed", "malformed event"),
        ("dl-big", Bytes::from(vec![b' '; 2 * 1024 * 1024]), "too_large", "exceeds the 65536-byte limit"),
    ];
    for (id, payload, _, _) in &inputs {
        publish_raw(&bus.js, subject, id, payload.clone()).await;
    }
    let letters = read_stream(&bus.js, STREAM_DEADLETTER, "deadletter.ingest", inputs.len()).await;
    assert_eq!(letters.len(), inputs.len());
    for (id, payload, code, reason) in &inputs {
        let letter = letters
            .iter()
            .find(|m| header(m, nats::HEADER_ORIGINAL_ID).as_deref() == Some(id))
            .unwrap_or_else(|| panic!("no dead letter for {id}"));
        assert_eq!(header(letter, HEADER_REASON_CODE).as_deref(), Some(*code), "{id}");
        let said = header(letter, HEADER_REASON).unwrap_or_default();
        assert!(said.contains(reason), "{id}: {said}");
        if *code == "too_large" {
            // Not stored twice: an excerpt, and where the original is.
            assert_eq!(&letter.payload[..], &payload[..nats::EXCERPT_BYTES], "{id}: an excerpt is kept");
            assert_eq!(header(letter, nats::HEADER_ORIGINAL_SIZE), Some(payload.len().to_string()), "{id}");
            assert_eq!(
                header(letter, nats::HEADER_ORIGINAL_STREAM).as_deref(),
                Some(nats::STREAM_INGEST_PUBLIC_SERVICE)
            );
        } else {
            assert_eq!(&letter.payload, payload, "{id}: the original bytes are kept");
        }
    }
    // Nothing bad was routed, and the router acked them all: nothing loops.
    assert!(read_stream(&bus.js, STREAM_CASES, "case.>", 0).await.is_empty());
    tokio::time::sleep(Duration::from_secs(3)).await; // past the 2 s ack wait: a redelivery would show
    assert_eq!(read_stream(&bus.js, STREAM_DEADLETTER, "deadletter.ingest", 0).await.len(), inputs.len());
    service.stop().await;
}

#[tokio::test]
async fn volunteer_changes_count_within_a_second_and_bad_ones_are_dead_lettered() {
    let bus = TestBus::start().await;
    let mut config = bus.config();
    config.region.seed_volunteers = false;
    let service = bus.service(&config).await;
    let store = bus.js.get_key_value(BUCKET_VOLUNTEERS).await.expect("bucket");

    let volunteer = VolunteerStatus {
        id: "vol-test-1".into(),
        location: Location { lon: MISSION.0 + 0.001, lat: MISSION.1 },
        available: true,
        skills: vec!["cpr".into()],
    };
    store.put("vol-test-1", serde_json::to_vec(&volunteer).expect("json").into()).await.expect("put");
    store
        .put(
            "vol-bad",
            Bytes::from_static(
                b"{\"id\": \"vol-bad\", \"location\": {\"lon\": 500, \"lat\": 0}, \"available\": true, \"skills\": []}",
            ),
        )
        .await
        .expect("put bad");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        let decision =
            service.state.decide(&case("x", SourceSystem::Emergency, "cardiac_arrest", MISSION.0, MISSION.1).data);
        if decision.volunteers.first().is_some_and(|v| v.id == "vol-test-1") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the new volunteer was not used within a second");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Off duty: no longer offered.
    let off = VolunteerStatus { available: false, ..volunteer };
    store.put("vol-test-1", serde_json::to_vec(&off).expect("json").into()).await.expect("put");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        let decision =
            service.state.decide(&case("x", SourceSystem::Emergency, "cardiac_arrest", MISSION.0, MISSION.1).data);
        if decision.volunteers.is_empty() && decision.volunteer_search.skipped_unavailable == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "going off duty was not seen within a second");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let letters = read_stream(&bus.js, STREAM_DEADLETTER, "deadletter.volunteers", 1).await;
    assert_eq!(letters.len(), 1);
    assert!(header(&letters[0], HEADER_REASON).unwrap_or_default().contains("location.lon"));
    service.stop().await;
}

#[tokio::test]
async fn a_case_whose_decision_is_already_stored_keeps_that_decision() {
    let bus = TestBus::start().await;
    let service = bus.service(&bus.config()).await;

    // As if an earlier delivery had decided and stored the decision, then died before the rest:
    // here that decision names a different department than today's rules would.
    let event = case("it-stored-1", SourceSystem::PublicService, "sewer_issues", MISSION.0, MISSION.1);
    let mut decision = service.state.decide(&event.data);
    decision.departments[0].id = "sf-das".into();
    let stored = CloudEvent::new(
        "it-stored-1:routed".to_owned(),
        "/linkbus/router/earlier",
        linkbus_wire::TYPE_CASE_ROUTED,
        Some("it-stored-1".to_owned()),
        event.time,
        RoutedCase {
            case_id: "it-stored-1".into(),
            source: "/tests".into(),
            case: event.data.clone(),
            decision,
            routed_at: event.time,
        },
    );
    let body = Bytes::from(serde_json::to_vec(&stored).expect("json"));
    publish_raw(&bus.js, "case.it-stored-1.routed", "it-stored-1:routed", body.clone()).await;

    publish_case(&bus.js, &event).await;
    let outputs = read_stream(&bus.js, STREAM_ROUTED, "routed.dept.>", 1).await;
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0].subject.as_str(), "routed.dept.sf-das.sewer_issues.mission");
    assert_eq!(outputs[0].payload, body, "the stored decision is republished byte for byte");
    assert_eq!(read_stream(&bus.js, STREAM_CASES, "case.it-stored-1.routed", 1).await.len(), 1);
    service.stop().await;
}

#[tokio::test]
async fn volunteers_in_the_bucket_before_start_are_loaded_before_ready_and_later_changes_apply() {
    let bus = TestBus::start().await;
    let mut config = bus.config();
    config.region.seed_volunteers = false;
    nats::provision(&bus.js, &config.stream_settings()).await.expect("provision");
    let store = bus.js.get_key_value(BUCKET_VOLUNTEERS).await.expect("bucket");
    let at = |id: &str, east: f64, available: bool| VolunteerStatus {
        id: id.into(),
        location: Location { lon: MISSION.0 + east, lat: MISSION.1 },
        available,
        skills: vec!["cpr".into()],
    };
    let put = |v: VolunteerStatus| {
        let store = store.clone();
        async move { store.put(v.id.clone(), serde_json::to_vec(&v).expect("json").into()).await.expect("put") }
    };
    put(at("vol-pre-1", 0.001, true)).await;
    put(at("vol-pre-2", 0.002, true)).await;
    put(at("vol-pre-gone", 0.0005, true)).await;
    store.delete("vol-pre-gone").await.expect("delete");
    put(at("vol-pre-3", 0.003, false)).await;
    store
        .put(
            "vol-pre-bad",
            Bytes::from_static(
                b"{\"id\": \"vol-pre-bad\", \"location\": {\"lon\": 500, \"lat\": 0}, \"available\": true, \"skills\": []}",
            ),
        )
        .await
        .expect("put bad");

    // Service::start returns once the volunteers are loaded; only then is /readyz served.
    let service = bus.service(&config).await;
    service.readiness().ready().await.expect("ready");
    assert_eq!(linkbus_bus::sync::read(&service.state.volunteers).len(), 3);
    let nearest = || {
        let decision =
            service.state.decide(&case("x", SourceSystem::Emergency, "cardiac_arrest", MISSION.0, MISSION.1).data);
        let ids: Vec<String> = decision.volunteers.iter().map(|v| v.id.clone()).collect();
        (ids, decision.volunteer_search.skipped_unavailable)
    };
    assert_eq!(nearest(), (vec!["vol-pre-1".to_owned(), "vol-pre-2".to_owned()], 1));
    let letters = read_stream(&bus.js, STREAM_DEADLETTER, "deadletter.volunteers", 1).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(
        letters[0].payload.as_ref(),
        b"{\"id\": \"vol-pre-bad\", \"location\": {\"lon\": 500, \"lat\": 0}, \"available\": true, \"skills\": []}"
    );
    assert!(header(&letters[0], HEADER_REASON).unwrap_or_default().contains("location.lon"));

    // Later changes, one by one: a delete, and going off duty.
    store.delete("vol-pre-1").await.expect("delete");
    put(at("vol-pre-2", 0.002, false)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while nearest() != (vec![], 2) {
        assert!(tokio::time::Instant::now() < deadline, "later changes not applied: {:?}", nearest());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Back on duty.
    put(at("vol-pre-3", 0.003, true)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while nearest() != (vec!["vol-pre-3".to_owned()], 1) {
        assert!(tokio::time::Instant::now() < deadline, "later put not applied: {:?}", nearest());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    service.stop().await;
}

#[tokio::test]
async fn a_department_consumer_of_an_earlier_version_is_widened_keeping_its_place_and_settings() {
    let bus = TestBus::start().await;
    bus.service(&bus.config()).await.stop().await;

    // As an earlier version left it: on the department's four-token subjects only, with an
    // operator's own ack wait, one copy (as that version published it) read and acknowledged.
    let routed = bus.js.get_stream(STREAM_ROUTED).await.expect("routed stream");
    let name = "dept-puc-sewer-ops";
    let mut config =
        routed.get_consumer::<consumer::pull::Config>(name).await.expect("made at start").cached_info().config.clone();
    (config.filter_subject, config.ack_wait) = ("routed.dept.puc-sewer-ops.*".into(), Duration::from_secs(77));
    routed.update_consumer(config).await.expect("narrowed");
    let earlier: consumer::PullConsumer = routed.get_consumer(name).await.expect("narrowed");
    let old_copy = "routed.dept.puc-sewer-ops.sewer_issues";
    publish_raw(&bus.js, old_copy, "it-old-1:routed:dept:puc-sewer-ops", Bytes::from_static(b"{}")).await;
    let first = earlier.fetch().max_messages(1).expires(WAIT).messages().await.expect("fetch").next().await;
    let first = first.expect("the earlier copy").expect("a message");
    assert_eq!(first.subject.as_str(), old_copy);
    first.double_ack().await.expect("acked");
    // A department's own consumer, made by its owner for the earlier layout.
    let own = consumer::pull::Config {
        durable_name: Some("puc-own".into()),
        filter_subject: "routed.dept.puc-sewer-ops.*".into(),
        ..Default::default()
    };
    routed.create_consumer(own).await.expect("the department's own consumer");

    let service = bus.service(&bus.config()).await;
    let own: consumer::PullConsumer = routed.get_consumer("puc-own").await.expect("still there");
    assert_eq!(own.cached_info().config.filter_subject, "routed.dept.puc-sewer-ops.*", "not linkbus's to change");
    let widened: consumer::PullConsumer = routed.get_consumer(name).await.expect("still there");
    let info = widened.cached_info();
    assert_eq!(info.config.filter_subject, "routed.dept.puc-sewer-ops.>");
    assert_eq!(info.config.ack_wait, Duration::from_secs(77), "the operator's setting is kept");
    publish_case(&bus.js, &case("it-widen-1", SourceSystem::PublicService, "sewer_issues", MISSION.0, MISSION.1)).await;
    let next = widened.fetch().max_messages(1).expires(WAIT).messages().await.expect("fetch").next().await;
    let next = next.expect("the next case").expect("a message");
    assert_eq!(next.subject.as_str(), "routed.dept.puc-sewer-ops.sewer_issues.mission");
    let next: CloudEvent<RoutedCase> = serde_json::from_slice(&next.payload).expect("routed");
    assert_eq!(next.data.case_id, "it-widen-1", "from where it was, with the copies that name the community");
    service.stop().await;
}
