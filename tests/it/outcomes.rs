//! Real and simulated outcomes against a real nats-server and service: a slice of the SF 311
//! sample replayed with `--outcomes real` ends in the states its records say, with acceptance and
//! closure at the records' compressed times; the simulated Beijing departments accept, reject,
//! resolve and are rated, every entry labelled SIMULATED.

use std::collections::HashMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use linkbus::replay::{ReplayOptions, replay};
use linkbus::simulate;
use linkbus_bus::nats::STREAM_DEADLETTER;
use linkbus_tests::{TestBus, read_stream, repo_root, sf_region_dir, wait_for_case};
use linkbus_wire::{ActorKind, CaseRecord, CaseState, TimelineEntry, TimelineEvent};
use tokio_util::sync::CancellationToken;

/// Rows of the sample, by CaseID, and the state each must end in: resolved within a day, a
/// duplicate, one transferred out of 311, two still open, one whose `Closed` precedes `Opened`.
const SLICE: [(&str, CaseState); 8] = [
    ("3600300", CaseState::Closed),
    ("5489340", CaseState::Closed),
    ("3449990", CaseState::Closed),
    ("4385626", CaseState::Cancelled),
    ("2016205", CaseState::Cancelled),
    ("3089516", CaseState::Accepted),
    ("5280970", CaseState::Accepted),
    ("3786572", CaseState::Closed),
];
/// Real seconds per replayed second: the slice's longest case (11 h) takes 2 s.
const SPEED: f64 = 20_000.0;

/// Writes the header and the slice's rows of the sample to `dir`; returns the file and each
/// row's `Opened` and `Closed` as the CSV has them.
fn write_slice(dir: &std::path::Path) -> (std::path::PathBuf, HashMap<String, (String, String)>) {
    let mut reader = csv::Reader::from_path(sf_region_dir().join("sf311-cases-sample.csv")).expect("sample");
    let headers = reader.headers().expect("header").clone();
    let column = |name: &str| headers.iter().position(|h| h == name).expect("column");
    let (id, opened, closed) = (column("CaseID"), column("Opened"), column("Closed"));
    let path = dir.join("slice.csv");
    let mut writer = csv::Writer::from_path(&path).expect("slice file");
    writer.write_record(&headers).expect("write");
    let mut times = HashMap::new();
    for record in reader.records() {
        let record = record.expect("record");
        if SLICE.iter().any(|(n, _)| *n == &record[id]) {
            writer.write_record(&record).expect("write");
            times.insert(record[id].to_owned(), (record[opened].to_owned(), record[closed].to_owned()));
        }
    }
    writer.flush().expect("flush");
    assert_eq!(times.len(), SLICE.len(), "every row of the slice is in the sample");
    (path, times)
}

/// `text` (`YYYY-MM-DD HH:MM:SS`) in San Francisco.
fn local(text: &str) -> Timestamp {
    let tz = jiff::tz::TimeZone::get("America/Los_Angeles").expect("tz");
    tz.to_timestamp(text.parse::<jiff::civil::DateTime>().expect("a local time")).expect("a time")
}

fn entry_at(r: &CaseRecord, event: TimelineEvent) -> Option<&linkbus_wire::TimelineEntry> {
    r.timeline.iter().find(|e| e.event == event)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sf_slice_replayed_with_real_outcomes_ends_as_its_records_at_their_compressed_times() {
    let bus = TestBus::start().await;
    let service = bus.service(&bus.config()).await;
    let (path, times) = write_slice(bus.dir.path());
    let options =
        ReplayOptions { rate: None, wait: Duration::from_secs(60), progress: false, real_outcomes: Some(SPEED) };
    let summary = replay(&bus.client, &path, &options).await.expect("replay");
    println!("{summary}");
    let outcomes = summary.outcomes.expect("outcomes replayed");
    assert_eq!((summary.routed, outcomes.refused), (SLICE.len(), 0), "{:?}", outcomes.refusals);
    assert_eq!(
        (outcomes.accepted, outcomes.resolved, outcomes.withdrawn, outcomes.left_open, outcomes.closed_before_opened),
        (8, 4, 2, 2, 1)
    );

    // The tolerance the design guarantees: the case book writes each entry at the case's opening
    // plus the record's delay ÷ SPEED, whatever the replayer's scheduling delay; only the f64
    // division and its rounding to nanoseconds stand between them (1 µs is 20 ms of real time).
    let tolerance = SignedDuration::from_micros(1);
    for (number, state) in SLICE {
        let id = format!("sf311-{number}");
        let r = wait_for_case(&service, &id, "its replayed outcome", |r| r.state == state).await;
        let (opened, closed) = &times[number];
        let accepted = entry_at(&r, TimelineEvent::Accepted).expect("accepted");
        assert_eq!(accepted.at, r.created_at, "{id}: accepted when opened");
        assert_eq!(r.accepted_by.as_deref(), Some(r.decision.departments[0].id.as_str()), "{id}");
        assert!(
            accepted.note.as_deref().is_some_and(|n| n.contains("SF 311 records no acceptance")
                && n.contains(&format!("replayed from SF 311 record {number}, time ÷ 20000"))),
            "{id}: {:?}",
            accepted.note
        );
        let ending = match state {
            CaseState::Closed => Some(TimelineEvent::Resolved),
            CaseState::Cancelled => Some(TimelineEvent::Cancelled),
            _ => None,
        };
        let Some(ending) = ending else {
            assert!(closed == "NA" && r.timeline.len() == 2, "{id}: open in the record, open here: {:?}", r.timeline);
            continue;
        };
        let real = (local(closed) - local(opened)).as_secs_f64().max(0.0);
        let expected = r.created_at + SignedDuration::from_secs_f64(real / SPEED);
        let end = entry_at(&r, ending.clone()).expect("the record's ending");
        assert!((end.at - expected).abs() <= tolerance, "{id}: {ending:?} at {}, the record says {expected}", end.at);
        assert!(end.note.as_deref().is_some_and(|n| n.contains("replayed from SF 311 record")), "{id}: {:?}", end.note);
        if state == CaseState::Closed {
            assert_eq!(entry_at(&r, TimelineEvent::Closed).map(|e| e.at), Some(end.at), "{id}: closed as resolved");
        } else {
            assert_eq!(
                (end.actor.kind, end.actor.id.as_str()),
                (ActorKind::Source, "/sf311"),
                "{id}: SF 311 withdrew it"
            );
        }
    }
    service.stop().await;
}

#[tokio::test]
async fn a_replay_request_that_does_not_parse_is_refused_and_dead_lettered() {
    let bus = TestBus::start().await;
    let service = bus.service(&bus.config()).await;
    let reply = bus
        .client
        .request(linkbus_wire::subjects::REPLAY_ACTION, r#"{"case_id":"x","action":"accept"}"#.into())
        .await
        .expect("a reply");
    let reply: linkbus_wire::ActionReply = serde_json::from_slice(&reply.payload).expect("an action reply");
    assert!(!reply.ok && reply.error.as_deref().is_some_and(|e| e.contains("not a replay request")), "{reply:?}");
    let letters = read_stream(&bus.js, STREAM_DEADLETTER, "deadletter.replay", 1).await;
    assert_eq!(letters.len(), 1);
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beijing_simulated_departments_accept_send_back_resolve_and_are_rated_all_labelled() {
    let bus = TestBus::start().await;
    let dir = repo_root().join("geo-data/beijing");
    let region = linkbus_geo_data::Region::load(&dir).expect("Beijing loads");
    let mut config = bus.config();
    config.region.dir = dir;
    let client = linkbus::service::connect(&bus.server.url(), Duration::from_secs(10)).await.expect("connects");
    let service = linkbus::service::Service::start(&config, &region, client, "/linkbus/test".into())
        .await
        .expect("service starts");
    let profile = simulate::Profile::from_sf311(&repo_root().join("geo-data/san-francisco/sf311-cases-sample.csv"))
        .expect("profile");
    // 10 hours of simulated time a second: a median acceptance in 60 ms, a resolution in 0.8 s.
    let feed = simulate::FeedOptions { rate: 40.0, seed: 7, speedup: 36_000.0 };
    let stop = CancellationToken::new();
    let task = tokio::spawn(simulate::run(bus.client.clone(), region, profile, feed, stop.clone()));

    let simulated = |e: &TimelineEntry| e.note.as_deref().is_some_and(|n| n.contains("SIMULATED"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let seen = loop {
        let mut seen: HashMap<String, usize> = HashMap::new();
        for r in service.cases.list_where(|r| r.case_id.starts_with("sim-")) {
            for e in r.timeline.iter().skip(1) {
                // Every department's and resident's action on a simulated case is simulated, and
                // says so (linkbus's own entries, a merge or an escalation, are real).
                if matches!(e.actor.kind, ActorKind::Department | ActorKind::Resident) {
                    assert!(simulated(e), "{}: {e:?} is not labelled SIMULATED", r.case_id);
                }
                let who = match e.event {
                    TimelineEvent::Accepted | TimelineEvent::Rejected | TimelineEvent::Resolved => {
                        ActorKind::Department
                    }
                    TimelineEvent::Rated => ActorKind::Resident,
                    _ => continue,
                };
                assert_eq!(e.actor.kind, who, "{}: {e:?}", r.case_id);
                *seen.entry(e.event.as_str().to_owned()).or_default() += 1;
            }
            for rating in &r.ratings {
                assert!(rating.comment.as_deref().is_some_and(|c| c.starts_with("SIMULATED")), "{rating:?}");
            }
        }
        if ["accepted", "rejected", "resolved", "rated"].iter().all(|e| seen.get(*e).is_some_and(|n| *n >= 3)) {
            break seen;
        }
        assert!(tokio::time::Instant::now() < deadline, "gave up waiting for simulated answers: {seen:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!("simulated departments and residents: {seen:?}");
    stop.cancel();
    task.await.expect("the feed stops");
    service.stop().await;
}
