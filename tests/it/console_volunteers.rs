//! The volunteers offered for an opened case, on the map of a real headless Chromium against a
//! real `linkbus up` on San Francisco (the harness of `console.rs`): five volunteers a few metres
//! apart are each labelled with their id and distance, and no two labels lie on one another — at
//! the zoom the case opens at, and zoomed out.

use fantoccini::{Client, Locator};
use linkbus_bus::nats::BUCKET_VOLUNTEERS;
use linkbus_tests::{WAIT, case, publish_case};
use linkbus_wire::{Location, SourceSystem, VolunteerStatus};
use serde_json::{Value, json};

use crate::console::{DISPATCHER, Setup, shows_case, until};
use crate::console_shapes::open;

/// Mission District, San Francisco: where the cardiac arrest is.
const MISSION: (f64, f64) = (-122.4194, 37.7599);

/// The volunteers' labels on the map (`near-<k>: <n> m`, wherever they are drawn), with their
/// boxes in the window; null until four or more are drawn.
const LABELS: &str = "const labels = [...document.querySelectorAll('.leaflet-tooltip-pane .leaflet-tooltip')] \
      .filter((el) => /^near-\\d: \\d+ m$/.test(el.textContent)); \
    if (labels.length < 4) return null; \
    return labels.map((el) => { const r = el.getBoundingClientRect(); \
      return { text: el.textContent, x0: r.left, x1: r.right, y0: r.top, y1: r.bottom }; });";

/// The pairs of labels in `labels` (as [`LABELS`] returns them) whose boxes intersect.
fn overlapping(labels: &Value) -> Vec<(String, String)> {
    let boxes = labels.as_array().expect("a list");
    let side = |b: &Value, k: &str| b[k].as_f64().expect("a number");
    let mut pairs = Vec::new();
    for (i, a) in boxes.iter().enumerate() {
        for b in &boxes[i + 1..] {
            let apart = side(a, "x1") <= side(b, "x0")
                || side(b, "x1") <= side(a, "x0")
                || side(a, "y1") <= side(b, "y0")
                || side(b, "y1") <= side(a, "y0");
            if !apart {
                pairs.push((a["text"].to_string(), b["text"].to_string()));
            }
        }
    }
    pairs
}

/// The map's zoom.
async fn zoom(browser: &Client) -> f64 {
    let view = browser.execute("return window.linkbusConsole.mapView()", vec![]).await.expect("the map's view");
    view["zoom"].as_f64().expect("a zoom")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_of_volunteers_close_together_do_not_overlap() {
    let setup = Setup::start().await;
    // Five volunteers who know CPR, about 35 m north-east of the case and 3 m from one another:
    // among the five nearest, so offered (four at least: a volunteer of the region's roster may
    // be nearer).
    let store = setup.bus.js.get_key_value(BUCKET_VOLUNTEERS).await.expect("the volunteers bucket");
    for k in 0..5 {
        let status = VolunteerStatus {
            id: format!("near-{k}"),
            location: Location { lon: MISSION.0 + 0.0003 + f64::from(k) * 0.00003, lat: MISSION.1 + 0.0002 },
            available: true,
            skills: vec!["cpr".into()],
        };
        store.put(&status.id, serde_json::to_vec(&status).expect("json").into()).await.expect("put");
    }
    // linkbus knows them before the case is routed and the console reads them.
    let http = reqwest::Client::builder().timeout(WAIT).build().expect("client");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let answer = http
            .get(format!("{}console/volunteers", setup.linkbus.base))
            .bearer_auth(DISPATCHER)
            .send()
            .await
            .expect("an answer");
        let body: Value = serde_json::from_slice(&answer.bytes().await.expect("body")).expect("json");
        let known = body["volunteers"]
            .as_array()
            .map_or(0, |all| all.iter().filter(|v| v["id"].as_str().is_some_and(|id| id.starts_with("near-"))).count());
        if known == 5 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "linkbus does not know the volunteers");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let browser = setup.signed_in("profile", DISPATCHER).await;
    publish_case(&setup.bus.js, &case("vol-arrest", SourceSystem::Emergency, "cardiac_arrest", MISSION.0, MISSION.1))
        .await;
    shows_case(&browser, "vol-arrest").await;
    let shown = open(&browser, "vol-arrest").await;
    assert!(shown.get("error").is_none(), "{shown}");

    let labels = until(&browser, "the volunteers' labels", LABELS, vec![]).await;
    assert_eq!(overlapping(&labels), vec![], "labels overlap at zoom {}: {labels}", zoom(&browser).await);
    let texts: std::collections::BTreeSet<String> =
        labels.as_array().expect("a list").iter().map(|l| l["text"].to_string()).collect();
    assert_eq!(texts.len(), labels.as_array().expect("a list").len(), "a volunteer labelled twice: {labels}");
    let png = browser.screenshot().await.expect("a screenshot");
    std::fs::write(crate::console::screenshot_path("console-volunteers.png"), png).expect("save the screenshot");
    // Zoomed out they are closer still on the screen: placed again.
    let before = zoom(&browser).await;
    browser
        .find(Locator::Css(".leaflet-control-zoom-out"))
        .await
        .expect("the − button")
        .click()
        .await
        .expect("zoom out");
    until(
        &browser,
        "the map zoomed out",
        "return window.linkbusConsole.mapView().zoom < arguments[0]",
        vec![json!(before)],
    )
    .await;
    let labels = until(&browser, "the volunteers' labels", LABELS, vec![]).await;
    assert_eq!(overlapping(&labels), vec![], "labels overlap at zoom {}: {labels}", zoom(&browser).await);
    browser.close().await.expect("close");
}
