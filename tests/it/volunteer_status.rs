//! The volunteers bucket as a hostile or broken app writes it (issue 16, section 6), against a
//! real nats-server and the in-process service: skills no category of the region calls for
//! cannot use up the index's 64-skill budget, and a bad value written over a volunteer's good
//! status is refused (dead letter, metric) while the good one stays in force — in the running
//! router, in the bucket, and so after the router restarts.

use std::time::Duration;

use async_nats::jetstream::kv::Store;
use bytes::Bytes;
use linkbus::config::Config;
use linkbus::service::Service;
use linkbus_bus::nats::{self, BUCKET_VOLUNTEERS, HEADER_REASON, HEADER_REASON_CODE, STREAM_DEADLETTER};
use linkbus_tests::{TestBus, WAIT, case, header, metrics_text, read_stream};
use linkbus_wire::{Location, SourceSystem, VolunteerStatus};

/// Mission District, San Francisco.
const MISSION: (f64, f64) = (-122.4194, 37.7599);

fn status(id: &str, east: f64, skills: &[&str]) -> VolunteerStatus {
    VolunteerStatus {
        id: id.into(),
        location: Location { lon: MISSION.0 + east, lat: MISSION.1 },
        available: true,
        skills: skills.iter().map(|s| s.to_string()).collect(),
    }
}

async fn start(bus: &TestBus) -> (Config, Store) {
    let mut config = bus.config();
    config.region.seed_volunteers = false;
    nats::provision(&bus.js, &config.stream_settings()).await.expect("provision");
    let store = bus.js.get_key_value(BUCKET_VOLUNTEERS).await.expect("bucket");
    (config, store)
}

async fn put(store: &Store, key: &str, value: impl Into<Bytes>) {
    store.put(key, value.into()).await.expect("put");
}

async fn put_status(store: &Store, v: &VolunteerStatus) {
    put(store, &v.id, serde_json::to_vec(v).expect("json")).await;
}

/// The volunteers a cardiac arrest at the Mission is offered to (the category calls for `cpr`).
fn offered_for_cpr(service: &Service) -> Vec<String> {
    let decision =
        service.state.decide(&case("x", SourceSystem::Emergency, "cardiac_arrest", MISSION.0, MISSION.1).data);
    decision.volunteers.iter().map(|v| v.id.clone()).collect()
}

/// Waits until `check` holds of the service, for at most [`WAIT`].
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "not in time: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two volunteers claiming 32 junk skills each would fill the index's 64 skills, and the next
/// volunteer with `cpr` would be refused as bringing a 65th: a cardiac arrest would find nobody.
/// Skills are checked against the region's list: those no category calls for are left out of the
/// index, so the `cpr` volunteer is offered the case. Loaded from the bucket at start and put
/// while running, alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_skills_cannot_use_up_the_skill_budget() {
    let bus = TestBus::start().await;
    let (config, store) = start(&bus).await;
    let junk: Vec<String> = (0..96).map(|n| format!("junk_{n:02}")).collect();
    let junk: Vec<&str> = junk.iter().map(String::as_str).collect();
    // Before the router starts: 32 junk skills and one of the region's.
    let mut before = status("vol-junk-1", 0.0001, &junk[..31]);
    before.skills.push("first_aid".into());
    put_status(&store, &before).await;
    put_status(&store, &status("vol-junk-2", 0.0002, &junk[32..64])).await;
    let service = bus.service(&config).await;
    // While it runs: more junk, then a real volunteer with the region's skill.
    put_status(&store, &status("vol-junk-3", 0.0003, &junk[64..96])).await;
    put_status(&store, &status("vol-cpr", 0.001, &["cpr"])).await;
    until("the cpr volunteer is offered a cardiac arrest", || offered_for_cpr(&service) == ["vol-cpr"]).await;
    let positions = linkbus_bus::sync::read(&service.state.volunteers).positions();
    assert_eq!(positions.len(), 4, "every volunteer is known");
    let skills: Vec<&str> = positions.iter().flat_map(|p| p.skills.iter().map(String::as_str)).collect();
    assert!(skills.iter().all(|s| ["first_aid", "cpr"].contains(s)), "only the region's skills indexed: {skills:?}");
    let letters = read_stream(&bus.js, STREAM_DEADLETTER, "deadletter.volunteers", 0).await;
    assert!(
        letters.is_empty(),
        "nobody refused: {:?}",
        letters.iter().map(|l| header(l, HEADER_REASON)).collect::<Vec<_>>()
    );
    service.stop().await;
}

/// A good status, then bad values over it (not JSON; lon 500; another volunteer's id): each is
/// refused with its reason in `deadletter.volunteers` and counted, the good status stays in force
/// and is put back in the bucket, so a router started afterwards still has the volunteer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_status_over_a_good_one_keeps_the_good_one_also_after_a_restart() {
    let bus = TestBus::start().await;
    let (config, store) = start(&bus).await;
    let service = bus.service(&config).await;
    let good = status("vol-good", 0.001, &["cpr"]);
    put_status(&store, &good).await;
    until("the good status is in force", || offered_for_cpr(&service) == ["vol-good"]).await;

    let bad: [(&str, &[u8]); 3] = [
        ("malformed", b"not json"),
        ("invalid", br#"{"id":"vol-good","location":{"lon":500,"lat":0},"available":true,"skills":["cpr"]}"#),
        ("invalid", br#"{"id":"vol-other","location":{"lon":-122.4,"lat":37.7},"available":false,"skills":[]}"#),
    ];
    for (n, (_, value)) in bad.iter().enumerate() {
        put(&store, "vol-good", Bytes::from_static(value)).await;
        let letters = read_stream(&bus.js, STREAM_DEADLETTER, "deadletter.volunteers", n + 1).await;
        assert_eq!(letters.len(), n + 1, "each bad value kept");
    }
    let letters = read_stream(&bus.js, STREAM_DEADLETTER, "deadletter.volunteers", bad.len()).await;
    for (letter, (code, value)) in letters.iter().zip(bad) {
        assert_eq!(letter.payload.as_ref(), value);
        assert_eq!(header(letter, HEADER_REASON_CODE).as_deref(), Some(code));
        assert!(header(letter, HEADER_REASON).is_some_and(|r| !r.is_empty()));
    }
    let text = metrics_text(&service);
    for series in [
        r#"linkbus_deadletters_total{reason="malformed",stage="volunteers"} 1"#,
        r#"linkbus_deadletters_total{reason="invalid",stage="volunteers"} 2"#,
    ] {
        assert!(text.contains(series), "{series} in\n{text}");
    }
    assert_eq!(offered_for_cpr(&service), ["vol-good"], "the good status stays in force");

    // The bucket holds a good status again (the last good one, put back over the refused value).
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let value = store.get("vol-good").await.expect("get").unwrap_or_default();
        match serde_json::from_slice::<VolunteerStatus>(&value) {
            Ok(v) if v.validate().is_ok() && v.id == "vol-good" => {
                assert_eq!((v.available, v.skills.clone()), (true, vec!["cpr".to_owned()]));
                assert!((v.location.lon - good.location.lon).abs() < 1e-9, "{v:?}");
                assert!((v.location.lat - good.location.lat).abs() < 1e-9, "{v:?}");
                break;
            }
            _ => assert!(tokio::time::Instant::now() < deadline, "the bucket still holds {value:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The router restarts: the volunteer is still there.
    service.stop().await;
    let service = bus.service(&config).await;
    service.readiness().ready().await.expect("ready");
    assert_eq!(offered_for_cpr(&service), ["vol-good"], "the last good status survives a restart");
    // A good status from the app itself still goes through afterwards.
    put_status(&store, &VolunteerStatus { available: false, ..good.clone() }).await;
    until("the app's own change applies", || offered_for_cpr(&service).is_empty()).await;
    service.stop().await;
}
