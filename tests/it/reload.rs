//! Live reload of region versions: published to the `linkbus_regions` bucket, built aside and
//! swapped in under steady routing load; a broken version is refused and the old one stays.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use linkbus_bus::nats::{STREAM_CASES, STREAM_DEADLETTER};
use linkbus_routers::regions::{self, Current};
use linkbus_tests::{TestBus, WAIT, case, publish_case, read_stream, sf_region_next_version};
use linkbus_wire::{CloudEvent, RoutedCase, SourceSystem};

const V1: &str = "san-francisco@2026.11.27";
const V2: &str = "san-francisco@2026.11.28";

/// A copy of the SF region as version 2026.11.28, with the Mission renamed.
fn sf_v2(dir: &std::path::Path) {
    sf_region_next_version(dir);
    let path = dir.join("communities.geojson");
    let text = std::fs::read_to_string(&path).expect("read");
    std::fs::write(path, text.replace("\"name\":\"Mission\"", "\"name\":\"Mission (v2)\"")).expect("write");
}

/// Waits (bounded) until `done` holds.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    tokio::time::timeout(WAIT, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_version_is_swapped_in_under_load_losing_no_case_and_mixing_no_versions() {
    let bus = TestBus::start().await;
    let service = bus.service(&bus.config()).await;
    let state = service.state.clone();
    assert_eq!(state.router().geo_version(), V1);

    // Steady load: cases in the Mission, published back to back until told to stop.
    let stop = tokio_util::sync::CancellationToken::new();
    let published = Arc::new(AtomicUsize::new(0));
    let publisher = {
        let (js, stop, published) = (bus.js.clone(), stop.clone(), published.clone());
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                let n = published.load(Ordering::Relaxed);
                let event =
                    case(&format!("reload-{n}"), SourceSystem::PublicService, "sewer_issues", -122.4194, 37.7599);
                publish_case(&js, &event).await;
                published.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    until("300 cases are routed with the first version", || state.stats.routed.load(Ordering::Relaxed) >= 300).await;

    let dir = tempfile::tempdir().expect("temp dir");
    sf_v2(dir.path());
    let store = regions::open_bucket(&bus.js, &Default::default()).await.expect("bucket");
    let current = regions::publish_region(&store, dir.path()).await.expect("publish");
    assert_eq!(current.version, "2026.11.28");
    until("the new version is in force", || state.router().geo_version() == V2).await;
    // Cases published from here on reach the router after the swap, so each must be decided
    // with the new version (the routed counter would also count decisions still in flight).
    let after_swap = published.load(Ordering::Relaxed) + 1;
    until("300 more cases are published", || published.load(Ordering::Relaxed) >= after_swap + 300).await;
    stop.cancel();
    publisher.await.expect("publisher");
    let total = published.load(Ordering::Relaxed);

    let routed = read_stream(&bus.js, STREAM_CASES, "case.*.routed", total).await;
    assert_eq!(routed.len(), total, "every case published is routed once");
    let (mut v1, mut v2) = (0, 0);
    for msg in &routed {
        let event: CloudEvent<RoutedCase> = serde_json::from_slice(&msg.payload).expect("routed case");
        let decision = &event.data.decision;
        let n: usize = event.data.case_id.trim_start_matches("reload-").parse().expect("a load case");
        if n >= after_swap {
            assert_eq!(decision.geo_version, V2, "reload-{n} was published after the swap");
        }
        let name = &decision.community.community.as_ref().expect("community").name;
        let explained = decision.explanation.join(" ");
        match decision.geo_version.as_str() {
            V1 => {
                assert_eq!(name, "Mission");
                assert!(!explained.contains("(v2)"), "{explained}");
                v1 += 1;
            }
            V2 => {
                assert_eq!(name, "Mission (v2)");
                assert!(explained.contains("Mission (v2)"), "{explained}");
                v2 += 1;
            }
            other => panic!("unknown version {other}"),
        }
    }
    assert!(v1 >= 300 && v2 >= 300, "{v1} decisions with the first version, {v2} with the second");
    eprintln!(
        "{total} cases under load: {v1} routed with {V1}, {v2} with {V2}; swap pause {} ns",
        state.stats.region_swap_pause_ns.load(Ordering::Relaxed)
    );

    // A dispatcher re-runs the first case: against the version it was routed with (fetched
    // from the bucket: same outcome), the one now current, and a map where the Mission's id
    // became mission-north.
    let params = bus.config().routing_params();
    let rerun = linkbus::geo_tools::rerun(&bus.client, "reload-0", None, &params).await.expect("rerun");
    assert_eq!(rerun.routed_with, V1);
    assert_eq!(rerun.same_version, rerun.stored);
    assert_eq!(rerun.against.0, V2);
    assert_eq!(rerun.stored.community.as_deref(), Some("mission"));
    let without = tempfile::tempdir().expect("temp dir");
    sf_v2(without.path());
    for file in ["communities.geojson", "departments.json"] {
        let path = without.path().join(file);
        let text = std::fs::read_to_string(&path).expect("read").replace("\"mission\"", "\"mission-north\"");
        std::fs::write(&path, text).expect("write");
    }
    let rerun = linkbus::geo_tools::rerun(&bus.client, "reload-0", Some(without.path()), &params).await.expect("rerun");
    assert_eq!(rerun.against.1.community.as_deref(), Some("mission-north"), "{rerun}");
    eprintln!("{rerun}");

    // A version whose map is broken (the Marina piled on Russian Hill), put in the bucket by
    // hand as a faulty publisher would: refused, with the ids named; the old one stays.
    let broken = tempfile::tempdir().expect("temp dir");
    sf_v2(broken.path());
    let path = broken.path().join("communities.geojson");
    let mut fc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    let features = fc["features"].as_array_mut().expect("features");
    let at = |id: &str| features.iter().position(|f| f["properties"]["id"] == id).expect("there");
    let (marina, russian_hill) = (at("marina"), at("russian-hill"));
    features[marina]["geometry"] = features[russian_hill]["geometry"].clone();
    std::fs::write(&path, fc.to_string()).expect("write");
    let version = "2026.11.29";
    let mut files = Vec::new();
    for file in ["manifest.toml", "communities.geojson", "departments.json", "categories.toml"] {
        let mut bytes = std::fs::read(broken.path().join(file)).expect("read");
        if file == "manifest.toml" {
            bytes = String::from_utf8(bytes).expect("utf-8").replace("2026.11.28", version).into_bytes();
        }
        store.put(format!("san-francisco.{version}.{file}.0"), bytes.into()).await.expect("put");
        files.push((file.to_owned(), 1));
    }
    let index = serde_json::to_vec(&regions::VersionIndex { files }).expect("json");
    store.put(format!("san-francisco.{version}.index"), index.into()).await.expect("put");
    let current = Current { version: version.into(), effective_date: "2026-11-29".into() };
    store
        .put(regions::current_key("san-francisco"), serde_json::to_vec(&current).expect("json").into())
        .await
        .expect("put");
    until("the broken version is refused", || state.stats.region_refused.load(Ordering::Relaxed) == 1).await;
    assert_eq!(state.router().geo_version(), V2, "the old version stays");
    assert_eq!(state.metrics.region_swaps.get(), 1);
    assert!(
        service.metrics.render().contains("linkbus_geo_data_info{region=\"san-francisco\",version=\"2026.11.28\"} 1")
    );
    let letters = read_stream(&bus.js, STREAM_DEADLETTER, "deadletter.regions", 1).await;
    let reason = linkbus_tests::header(&letters[0], linkbus_bus::nats::HEADER_REASON).unwrap_or_default();
    let letter = format!("{reason} {}", String::from_utf8_lossy(&letters[0].payload));
    assert!(letter.contains("marina") && letter.contains("russian-hill"), "{letter}");
    service.stop().await;
}
