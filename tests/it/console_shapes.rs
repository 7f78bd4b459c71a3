//! The console opens a case of every decision shape, in a real headless Chromium against a real
//! `linkbus up` (the harness of `console.rs`): a case held by the catch-all (its decision has no
//! `fallbacks`: the wire leaves out empty lists), a broadcast to several communities and
//! departments, two reports merged into one case, a case that calls for no volunteers, one on the
//! border of two communities and one outside every community. Each shape is checked on the API
//! first (so the test knows it publishes what it means to), then opened from the board: the detail
//! shows its routing and the dispatcher's actions, and the page reports no error (`error` and
//! `unhandledrejection` events and `console.error`, as `console.rs`'s `WATCH` collects them). Before the fix of issue 18 the
//! catch-all and unmatched cases showed "Cannot read properties of undefined (reading 'map')" and
//! no actions.

use std::collections::{BTreeMap, BTreeSet};

use fantoccini::{Client, Locator};
use linkbus_tests::{WAIT, case, publish_case, sf_region};
use linkbus_wire::{Area, Circle, Location, SourceSystem};
use serde_json::{Value, json};

use crate::console::{DISPATCHER, Linkbus, Setup, find_case, shows_case, until};

/// Mission District: inside one community.
const MISSION: (f64, f64) = (-122.4194, 37.7599);
/// South of Market, the centre of the broadcast.
const SOMA: (f64, f64) = (-122.4050, 37.7780);
/// In the Pacific, far from every community: unmatched.
const OFFSHORE: (f64, f64) = (-122.9, 37.3);

/// What the opened detail shows, as texts of its parts.
const DETAIL: &str = "const text = (id) => document.getElementById(id)?.textContent ?? null; \
    return { \
      errors: window.linkbusErrors, \
      actions: [...document.querySelectorAll('#detail-actions button[data-act]')].map((b) => b.dataset.act), \
      community: text('detail-community'), rules: text('detail-rules'), fallbacks: text('detail-fallbacks'), \
      broadcast: text('detail-broadcast'), volunteers: text('detail-volunteers'), explanation: text('detail-explanation'), \
      reports: document.querySelectorAll('#detail-reports li').length, \
      splits: [...document.querySelectorAll('#detail-reports button[data-split]')].map((b) => b.dataset.split), \
      rest: text('detail-rest') };";

/// A point on the boundary shared by two communities of San Francisco: a vertex both boundaries
/// have, the first in (longitude, latitude) order.
fn shared_vertex() -> (f64, f64) {
    let mut owners: BTreeMap<(u64, u64), BTreeSet<&str>> = BTreeMap::new();
    let region = sf_region();
    for community in &region.communities {
        for polygon in &community.boundary.0 {
            for ring in std::iter::once(polygon.exterior()).chain(polygon.interiors()) {
                for c in ring.coords() {
                    owners.entry((c.x.to_bits(), c.y.to_bits())).or_default().insert(&community.id);
                }
            }
        }
    }
    let ((x, y), _) = owners.into_iter().find(|(_, ids)| ids.len() == 2).expect("two communities share a vertex");
    (f64::from_bits(x), f64::from_bits(y))
}

/// Closes the detail, opens `case_id` from the board and waits until it is shown, or the page
/// shows why not: the detail's texts (`DETAIL`), or `{error}`.
pub(crate) async fn open(browser: &Client, case_id: &str) -> Value {
    browser.execute("document.getElementById('detail-close').click()", vec![]).await.expect("close the detail");
    browser
        .find(Locator::Css(&format!("#board-rows .row[data-case-id=\"{case_id}\"]")))
        .await
        .unwrap_or_else(|e| panic!("case {case_id} is not on the board: {e}"))
        .click()
        .await
        .expect("open");
    let settled = until(
        browser,
        &format!("case {case_id} opened"),
        "const d = document.getElementById('detail'); if (d.hidden) return null; \
         const error = document.querySelector('#detail-head .error'); \
         if (error) return { error: error.textContent }; \
         return d.dataset.caseId === arguments[0] && { opened: true };",
        vec![json!(case_id)],
    )
    .await;
    if settled.get("error").is_some() {
        return settled;
    }
    browser.execute(DETAIL, vec![]).await.expect("the detail reads")
}

/// Opens `case_id` and checks that it opened with no error and offers the dispatcher's actions;
/// returns what the detail shows.
async fn opens(browser: &Client, shape: &str, case_id: &str) -> Value {
    let shown = open(browser, case_id).await;
    assert!(shown.get("error").is_none(), "the {shape} case {case_id} does not open: {shown}");
    assert_eq!(shown["errors"], json!([]), "the page reported errors opening the {shape} case {case_id}");
    let actions: Vec<&str> = shown["actions"].as_array().expect("actions").iter().filter_map(Value::as_str).collect();
    for action in ["reassign", "cancel", "close"] {
        assert!(actions.contains(&action), "the {shape} case {case_id} lacks the action {action}: {shown}");
    }
    let explanation = shown["explanation"].as_str().unwrap_or_default();
    assert!(!explanation.is_empty(), "the {shape} case {case_id} shows no explanation: {shown}");
    shown
}

/// Waits until the API has routed `case_id`; its record.
async fn routed(linkbus: &Linkbus, case_id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(record) = find_case(linkbus, case_id).await {
            return record;
        }
        assert!(tokio::time::Instant::now() < deadline, "case {case_id} was not routed");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_decision_shape_opens_in_the_console() {
    let setup = Setup::start().await;
    let (bus, linkbus) = (&setup.bus, &setup.linkbus);
    let browser = setup.signed_in("profile", DISPATCHER).await;

    // Catch-all: a category the region does not know, inside the Mission.
    let catch_all = case("shape-catch-all", SourceSystem::PublicService, "unlisted_hazard", MISSION.0, MISSION.1);
    // Broadcast: a fire over 1.2 km around South of Market, several communities and stations.
    let mut broadcast = case("shape-broadcast", SourceSystem::Emergency, "fire", SOMA.0, SOMA.1);
    broadcast.data.area = Some(Area {
        polygons: vec![],
        circles: vec![Circle { center: Location { lon: SOMA.0, lat: SOMA.1 }, radius_m: 1200.0 }],
        geocodes: vec![],
    });
    // Merged: two reports of one blocked sewer, 44 m apart.
    let dup_a = case("shape-dup-a", SourceSystem::PublicService, "sewer_issues", -122.4862, 37.7694);
    let dup_b = case("shape-dup-b", SourceSystem::PublicService, "sewer_issues", -122.4857, 37.7694);
    // No volunteers: streetlights call for none.
    let no_volunteers = case("shape-no-volunteers", SourceSystem::PublicService, "streetlights", -122.4330, 37.7840);
    // On a border: a vertex two neighbourhoods share.
    let (lon, lat) = shared_vertex();
    let border = case("shape-border", SourceSystem::PublicService, "street_defects", lon, lat);
    // Unmatched: offshore, to the catch-all.
    let unmatched = case("shape-unmatched", SourceSystem::PublicService, "tree_maintenance", OFFSHORE.0, OFFSHORE.1);
    for event in [&catch_all, &broadcast, &dup_a, &dup_b, &no_volunteers, &border, &unmatched] {
        publish_case(&bus.js, event).await;
    }

    // Each shape is what it is meant to be, on the API.
    let record = routed(linkbus, "shape-catch-all").await;
    assert_eq!(record["decision"]["departments"][0]["rule"]["kind"], "catch_all", "{record}");
    assert!(record["decision"].get("fallbacks").is_none(), "the wire leaves out empty fall-backs: {record}");
    let record = routed(linkbus, "shape-broadcast").await;
    let broadcast_names: Vec<String> = record["decision"]["broadcast"]
        .as_array()
        .expect("a broadcast")
        .iter()
        .map(|c| c["name"].as_str().expect("a name").to_owned())
        .collect();
    assert!(broadcast_names.len() >= 2, "{record}");
    let departments = record["decision"]["departments"].as_array().expect("departments").len();
    assert!(departments >= 2, "{record}");
    let record = routed(linkbus, "shape-no-volunteers").await;
    assert_eq!(record["decision"]["volunteers"], json!([]), "{record}");
    assert!(record["decision"]["volunteer_search"].get("skill").is_none(), "{record}");
    let record = routed(linkbus, "shape-border").await;
    assert_eq!(record["decision"]["community"]["outcome"], "on_border", "({lon}, {lat}): {record}");
    let record = routed(linkbus, "shape-unmatched").await;
    assert_eq!(record["decision"]["community"]["outcome"], "unmatched", "{record}");
    assert!(record["decision"]["community"].get("community").is_none(), "{record}");
    assert_eq!(record["decision"]["departments"][0]["rule"]["kind"], "catch_all", "{record}");
    let (primary, other) = {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (a, b) = (routed(linkbus, "shape-dup-a").await, routed(linkbus, "shape-dup-b").await);
            if a.get("merged_into").is_some() {
                break ("shape-dup-b", "shape-dup-a");
            }
            if b.get("merged_into").is_some() {
                break ("shape-dup-a", "shape-dup-b");
            }
            assert!(tokio::time::Instant::now() < deadline, "the two sewer reports were not merged");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    for id in ["shape-catch-all", "shape-broadcast", primary, "shape-no-volunteers", "shape-border", "shape-unmatched"]
    {
        shows_case(&browser, id).await;
    }

    // Opened from the board, each with its routing and the actions.
    let shown = opens(&browser, "catch-all", "shape-catch-all").await;
    let rules = shown["rules"].as_str().expect("the rules");
    assert!(rules.contains("catch-all: the category is not in this region's list"), "{shown}");
    assert_eq!(shown["fallbacks"], "none", "{shown}");

    let shown = opens(&browser, "broadcast", "shape-broadcast").await;
    let listed = shown["broadcast"].as_str().expect("the communities broadcast to");
    for name in &broadcast_names {
        assert!(listed.contains(name.as_str()), "{name} is not listed: {shown}");
    }
    assert_eq!(shown["rules"].as_str().expect("rules").matches(" rule for ").count(), departments, "{shown}");

    let shown = opens(&browser, "merged", primary).await;
    assert_eq!((shown["reports"].clone(), shown["splits"].clone()), (json!(2), json!([other])), "{shown}");

    let shown = opens(&browser, "no-volunteers", "shape-no-volunteers").await;
    assert_eq!(shown["volunteers"], "", "{shown}");
    assert!(shown["rest"].as_str().expect("text").contains("No volunteers called for."), "{shown}");

    let shown = opens(&browser, "border", "shape-border").await;
    assert!(shown["community"].as_str().expect("community").contains("(on a border)"), "{shown}");
    assert!(shown["rest"].as_str().expect("text").contains("Candidates"), "{shown}");

    let shown = opens(&browser, "unmatched", "shape-unmatched").await;
    assert_eq!(shown["community"], "no community (no community matched)", "{shown}");
    assert!(
        shown["rules"].as_str().expect("rules").contains("catch-all: the location matched no community"),
        "{shown}"
    );

    // In Chinese too.
    browser.find(Locator::Id("lang")).await.expect("language button").click().await.expect("switch");
    let shown = opens(&browser, "catch-all (zh-CN)", "shape-catch-all").await;
    assert!(shown["rules"].as_str().expect("rules").contains("兜底："), "{shown}");
    assert_eq!(shown["fallbacks"], "无", "{shown}");
    let shown = opens(&browser, "unmatched (zh-CN)", "shape-unmatched").await;
    assert_eq!(shown["community"], "无社区 (未匹配到社区)", "{shown}");

    browser.close().await.expect("close the browser");
}
