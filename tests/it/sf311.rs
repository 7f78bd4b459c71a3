//! All 4,984 real SF 311 requests: routed offline and compared with an independent brute-force
//! point-in-polygon over the same GeoJSON, and replayed end to end through NATS.

use std::collections::HashSet;
use std::time::Duration;

use linkbus::replay::{ReplayOptions, replay};
use linkbus::route::Offline;
use linkbus_adapters::sf311;
use linkbus_bus::nats::STREAM_CASES;
use linkbus_tests::{TestBus, read_stream, sf_region, sf_region_dir};
use linkbus_wire::CommunityOutcome;

const ROWS: usize = 4_984;

/// Even-odd ray casting over every ring of one GeoJSON polygon (holes included), written here
/// without the `geo` crate so that it checks the router rather than repeats it.
fn polygon_contains(rings: &serde_json::Value, x: f64, y: f64) -> bool {
    let mut inside = false;
    for ring in rings.as_array().expect("rings") {
        let pts: Vec<(f64, f64)> = ring
            .as_array()
            .expect("ring")
            .iter()
            .map(|p| (p[0].as_f64().expect("x"), p[1].as_f64().expect("y")))
            .collect();
        for w in pts.windows(2) {
            let ((x1, y1), (x2, y2)) = (w[0], w[1]);
            if (y1 > y) != (y2 > y) && x < x1 + (y - y1) * (x2 - x1) / (y2 - y1) {
                inside = !inside;
            }
        }
    }
    inside
}

fn brute_force_communities(features: &[serde_json::Value], x: f64, y: f64) -> Vec<String> {
    features
        .iter()
        .filter(|f| {
            let g = &f["geometry"];
            match g["type"].as_str() {
                Some("Polygon") => polygon_contains(&g["coordinates"], x, y),
                Some("MultiPolygon") => {
                    g["coordinates"].as_array().expect("parts").iter().any(|p| polygon_contains(p, x, y))
                }
                other => panic!("unexpected geometry {other:?}"),
            }
        })
        .map(|f| f["properties"]["id"].as_str().expect("id").to_owned())
        .collect()
}

#[test]
fn every_sf311_row_routes_to_the_community_brute_force_finds() {
    let region = sf_region();
    let geojson: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sf_region_dir().join("communities.geojson")).expect("read"))
            .expect("json");
    let features = geojson["features"].as_array().expect("features").clone();
    let offline = Offline::load(region, Default::default()).expect("router");
    let csv = std::fs::File::open(sf_region_dir().join("sf311-cases-sample.csv")).expect("csv");

    let (mut rows, mut same_as_brute, mut brute_none, mut label_agrees, mut agency_agrees) = (0, 0, 0, 0, 0);
    for converted in sf311::read(csv) {
        let converted = converted.expect("every sample row converts");
        let case = &converted.event.data;
        let decision = offline.route(case).expect("routes");
        rows += 1;
        let expected = brute_force_communities(&features, case.location.lon, case.location.lat);
        let got = decision.community.community.as_ref().map(|c| c.id.clone());
        match expected.as_slice() {
            [one] => {
                assert_eq!(decision.community.outcome, CommunityOutcome::Inside, "row {}", converted.row.case_id);
                assert_eq!(got.as_deref(), Some(one.as_str()), "row {}", converted.row.case_id);
                same_as_brute += 1;
            }
            [] => {
                assert_ne!(decision.community.outcome, CommunityOutcome::Inside, "row {}", converted.row.case_id);
                brute_none += 1;
            }
            many => panic!("row {}: inside several communities {many:?}", converted.row.case_id),
        }
        let name = decision.community.community.as_ref().map(|c| c.name.as_str());
        if name == Some(converted.row.neighborhood.trim()) {
            label_agrees += 1;
        }
        if decision.departments.iter().any(|d| d.name == converted.row.responsible_agency.trim()) {
            agency_agrees += 1;
        }
    }
    assert_eq!(rows, ROWS);
    let pct = |n: usize| 100.0 * n as f64 / rows as f64;
    println!(
        "SF 311: {rows} rows; community equals brute force for all {same_as_brute} strictly inside one polygon \
         ({brute_none} outside all, routed by tolerance or unmatched); equals the row's C.Neighborhood label: {label_agrees} ({:.1} %); \
         department equals Responsible.Agency: {agency_agrees} ({:.1} %)",
        pct(label_agrees),
        pct(agency_agrees)
    );
    // The data's README: 96.5 % of points fall inside the polygon their own label names.
    assert!(pct(label_agrees) > 95.0, "label agreement {:.1} %", pct(label_agrees));
    assert!(pct(agency_agrees) > 60.0, "agency agreement {:.1} %", pct(agency_agrees));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sf311_row_is_routed_once_through_nats() {
    let bus = TestBus::start().await;
    let service = bus.service(&bus.config()).await;
    let options = ReplayOptions { rate: None, wait: Duration::from_secs(60), progress: false, real_outcomes: None };
    let summary = replay(&bus.client, &sf_region_dir().join("sf311-cases-sample.csv"), &options).await.expect("replay");
    println!("SF 311 replay through NATS: {summary:?}");
    assert_eq!(summary.records, ROWS);
    assert_eq!(summary.refused_by_adapter, 0);
    assert_eq!(summary.published, ROWS);
    assert_eq!(summary.routed, ROWS);
    assert_eq!((summary.dead_lettered, summary.missing), (0, 0));

    let timeline = read_stream(&bus.js, STREAM_CASES, "case.*.routed", ROWS).await;
    let ids: HashSet<&str> = timeline.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!((timeline.len(), ids.len()), (ROWS, ROWS), "each case routed exactly once");

    // Replaying again is idempotent: every event id is already on the bus.
    let again = replay(&bus.client, &sf_region_dir().join("sf311-cases-sample.csv"), &options).await.expect("replay");
    assert_eq!((again.duplicates, again.published, again.missing), (ROWS, 0, 0));
    service.stop().await;
}
