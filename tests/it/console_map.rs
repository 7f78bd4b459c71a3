//! A sense of place without a tile server, in a real headless Chromium against a real `linkbus up`
//! on the Beijing region (2,322 社区 in 332 街道 and 16 districts), the page in Chinese (the harness
//! of `console.rs`): at the region's zoom the districts' names are written on the map and no
//! community's; filtering the board by a community zooms to it and its name (short: `多福巷社区`
//! for `多福巷社区居委会`) is written, and zoomed out with the "−" button the 街道's; opening a
//! case from the board zooms the map to it (centred in what the detail panel leaves visible); the
//! "whole region" button (全域) returns to the region; 500 cases near one another are drawn at the
//! region's zoom as a few clusters whose counts add up to 500, with the P1 among them still drawn
//! on top. Nothing waits for a time to pass: each check waits for the page to show a state.

use fantoccini::{Client, Locator};
use linkbus_tests::{TestBus, case, publish_case, repo_root};
use linkbus_wire::SourceSystem;
use serde_json::{Value, json};

use crate::console::{DISPATCHER, Driver, Linkbus, free_port, shows_case, sign_in, until};
use crate::console_alerts::PIXEL;
use crate::console_shapes::open;

/// 多福巷社区居委会 (东华门街道, 东城区): its id and its registry centre (lon, lat).
const DUOFUXIANG: (&str, f64, f64) = ("110101001001", 116.406901, 39.921554);

/// `linkbus up` on Beijing, chromedriver, and a Chromium signed in with the page in Chinese.
pub(crate) struct Beijing {
    pub(crate) browser: Client,
    _driver: Driver,
    pub(crate) linkbus: Linkbus,
    _dir: tempfile::TempDir,
    pub(crate) bus: TestBus,
}

impl Beijing {
    pub(crate) async fn start() -> Self {
        let bus = TestBus::start().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let linkbus = Linkbus::start_in(&bus, dir.path(), free_port(), &repo_root().join("geo-data/beijing"), "");
        let driver = Driver::start();
        let browser = driver.browser(&dir.path().join("profile")).await;
        sign_in(&browser, &linkbus.base, DISPATCHER).await;
        browser.find(Locator::Id("lang")).await.expect("the language button").click().await.expect("中文");
        until(&browser, "the page in Chinese", "return document.documentElement.lang === 'zh-CN'", vec![]).await;
        until(&browser, "names on the map", "return window.linkbusConsole.mapLabels().length > 0", vec![]).await;
        Self { browser, _driver: driver, linkbus, _dir: dir, bus }
    }

    async fn view(&self) -> Value {
        self.browser.execute("return window.linkbusConsole.mapView()", vec![]).await.expect("the map's view")
    }

    async fn labels(&self) -> Vec<(String, String)> {
        let labels = self.browser.execute("return window.linkbusConsole.mapLabels()", vec![]).await.expect("labels");
        labels
            .as_array()
            .expect("a list")
            .iter()
            .map(|l| (l["level"].as_str().unwrap_or("").to_owned(), l["text"].as_str().unwrap_or("").to_owned()))
            .collect()
    }
}

/// Metres between two points (lat, lon), near enough for a few hundred metres.
fn metres(a: (f64, f64), b: (f64, f64)) -> f64 {
    let dy = (a.0 - b.0) * 111_320.0;
    let dx = (a.1 - b.1) * 111_320.0 * a.0.to_radians().cos();
    dx.hypot(dy)
}

/// Saves a screenshot of `browser` as `name` in the target folder's scratch space.
async fn screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.expect("screenshot");
    std::fs::write(std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name), png).expect("save");
}

fn point(v: &Value) -> (f64, f64) {
    (v[0].as_f64().expect("lat"), v[1].as_f64().expect("lon"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_follow_the_zoom_from_districts_to_communities() {
    let page = Beijing::start().await;
    let beijing = linkbus_geo_data::Region::load(repo_root().join("geo-data/beijing")).expect("Beijing loads");
    let districts: std::collections::BTreeSet<&str> =
        beijing.communities.iter().map(|c| c.district.name.as_str()).collect();
    let sub_districts: std::collections::BTreeSet<&str> =
        beijing.communities.iter().filter_map(|c| c.sub_district.as_ref()).map(|s| s.name.as_str()).collect();

    // The whole region: districts' names only, most of the 16, none written over another.
    let labels = page.labels().await;
    assert!(labels.iter().all(|(level, _)| level == "district"), "{labels:?}");
    assert!(labels.len() >= 8, "{labels:?}");
    assert!(labels.iter().all(|(_, text)| districts.contains(text.as_str())), "{labels:?}");
    assert!(!labels.iter().any(|(_, text)| text.contains("社区")), "{labels:?}");
    screenshot(&page.browser, "console-map-region.png").await;

    // Filtered to 多福巷社区: the map zooms to it, and the communities' names are written, its own
    // among them, shortened.
    let (id, lon, lat) = DUOFUXIANG;
    page.browser
        .execute(
            "const f = document.getElementById('f-community'); f.value = arguments[0]; \
             f.dispatchEvent(new Event('change'));",
            vec![json!(id)],
        )
        .await
        .expect("filter by the community");
    let labels = until(
        &page.browser,
        "the communities' names",
        "const l = window.linkbusConsole.mapLabels(); return l.some((x) => x.level === 'community') && l",
        vec![],
    )
    .await;
    let texts: Vec<&str> = labels.as_array().expect("a list").iter().filter_map(|l| l["text"].as_str()).collect();
    assert!(texts.contains(&"多福巷社区"), "{texts:?}");
    let view = page.view().await;
    let bounds = &view["bounds"];
    let (south, west, north, east) =
        (bounds[0][0].as_f64(), bounds[0][1].as_f64(), bounds[1][0].as_f64(), bounds[1][1].as_f64());
    assert!(south < Some(lat) && Some(lat) < north && west < Some(lon) && Some(lon) < east, "{view}");
    assert!(view["zoom"].as_f64() >= Some(14.0), "{view}");
    screenshot(&page.browser, "console-map-community.png").await;

    // Zoomed out with the map's "−" button to below the communities' zoom: the 街道's names,
    // each a Beijing sub-district's (shortened: `东华门街道` for `东华门街道办事处`).
    let zoom_out = page.browser.find(Locator::Css(".leaflet-control-zoom-out")).await.expect("the − button");
    let mut zoom = view["zoom"].as_f64().expect("zoom");
    while zoom >= 12.0 {
        zoom_out.click().await.expect("zoom out");
        let now = until(
            &page.browser,
            "the map zoomed out",
            // A click while Leaflet still animates the last zoom is ignored: wait for its end.
            "const z = window.linkbusConsole.mapView().zoom; \
             return z < arguments[0] && !document.querySelector('.leaflet-zoom-anim') && z",
            vec![json!(zoom)],
        )
        .await;
        zoom = now.as_f64().expect("zoom");
    }
    let labels = until(
        &page.browser,
        "the sub-districts' names",
        "const l = window.linkbusConsole.mapLabels(); return l.length > 0 && l.every((x) => x.level === 'sub_district') && l",
        vec![],
    )
    .await;
    let texts: Vec<&str> = labels.as_array().expect("a list").iter().filter_map(|l| l["text"].as_str()).collect();
    assert!(texts.len() >= 5, "at zoom {zoom}: {texts:?}");
    for text in &texts {
        assert!(sub_districts.iter().any(|name| name.starts_with(text)), "{text} is no 街道 of Beijing: {texts:?}");
    }
    page.browser.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opened_case_is_zoomed_to_and_whole_region_returns() {
    let page = Beijing::start().await;
    let region = page.view().await;
    let (_, lon, lat) = DUOFUXIANG;
    let event = case("map-focus-1", SourceSystem::PublicService, "street_and_sidewalk_cleaning", lon, lat);
    publish_case(&page.bus.js, &event).await;
    shows_case(&page.browser, "map-focus-1").await;
    open(&page.browser, "map-focus-1").await;
    let view = until(
        &page.browser,
        "the map zoomed to the case",
        "const v = window.linkbusConsole.mapView(); \
         return !document.getElementById('detail').hidden && v.zoom >= 16 && v",
        vec![],
    )
    .await;
    let off = metres(point(&view["focus"]), (lat, lon));
    assert!(off < 30.0, "the case is {off:.0} m from the centre of the map's visible part: {view}");

    // 全域: back to the region's view.
    let button = page.browser.find(Locator::Id("whole-region")).await.expect("the whole-region button");
    assert_eq!(button.text().await.expect("text"), "全域");
    button.click().await.expect("whole region");
    let back = until(
        &page.browser,
        "the whole region",
        "const v = window.linkbusConsole.mapView(); return v.zoom === arguments[0] && v",
        vec![region["zoom"].clone()],
    )
    .await;
    for (corner, at) in [(0, "south-west"), (1, "north-east")] {
        let off = metres(point(&back["bounds"][corner]), point(&region["bounds"][corner]));
        assert!(off < 100.0, "the {at} corner is {off:.0} m from the region's: {back} vs {region}");
    }
    assert_eq!(back["zoom"], back["regionZoom"], "{back}");
    page.browser.close().await.expect("close");
}

/// Where the detail panel lies against the map and the window: `{detail: [left, right], map:
/// [left, right], width}` in client pixels.
const PANEL: &str = "const d = document.getElementById('detail').getBoundingClientRect(), \
    m = document.getElementById('map-wrap').getBoundingClientRect(); \
    return !document.getElementById('detail').hidden && d.width > 0 && \
      { detail: [d.left, d.right], map: [m.left, m.right], width: window.innerWidth };";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_narrow_screen_the_opened_case_is_whole_and_leaves_the_map_whole() {
    let page = Beijing::start().await;
    let (_, lon, lat) = DUOFUXIANG;
    let event = case("map-narrow-1", SourceSystem::PublicService, "street_and_sidewalk_cleaning", lon, lat);
    publish_case(&page.bus.js, &event).await;
    shows_case(&page.browser, "map-narrow-1").await;
    open(&page.browser, "map-narrow-1").await;
    let px = |v: &Value| v.as_f64().expect("pixels");
    // A wide screen: the detail over the map, inside it, and no more than half of it.
    let wide = until(&page.browser, "the detail open", PANEL, vec![]).await;
    let (detail, map) = (&wide["detail"], &wide["map"]);
    assert!(px(&detail[0]) >= px(&map[0]) && px(&detail[1]) <= px(&map[1]), "{wide}");
    assert!(px(&detail[1]) - px(&detail[0]) <= (px(&map[1]) - px(&map[0])) / 2.0, "{wide}");
    // A street office's 1024 and 800 pixels: the whole detail in the window, none of the map
    // under it.
    for (width, height) in [(1024, 768), (800, 700)] {
        page.browser.set_window_size(width, height).await.expect("resize");
        let narrow = until(
            &page.browser,
            &format!("the layout at {width} px"),
            &format!("const w = window.innerWidth; return w <= {width} && (() => {{ {PANEL} }})();"),
            vec![],
        )
        .await;
        let (detail, map) = (&narrow["detail"], &narrow["map"]);
        assert!(px(&detail[0]) >= 0.0 && px(&detail[1]) <= px(&narrow["width"]) + 0.5, "cut off at {width}: {narrow}");
        assert!(px(&detail[0]) >= px(&map[1]) - 0.5, "the detail covers the map at {width}: {narrow}");
        assert!(px(&map[1]) - px(&map[0]) >= 300.0, "the map is {narrow} at {width}");
    }
    // Opened again at 800 pixels: centred in the whole map, which the detail no longer covers.
    open(&page.browser, "map-narrow-1").await;
    let view = until(
        &page.browser,
        "the detail open again",
        "const v = window.linkbusConsole.mapView(); return !document.getElementById('detail').hidden && v",
        vec![],
    )
    .await;
    let off = metres(point(&view["focus"]), (lat, lon));
    assert!(off < 30.0, "the case is {off:.0} m from the middle of the map at 800 px: {view}");
    let actions = page.browser.find(Locator::Css("#detail-actions button[data-act=\"close\"]")).await.expect("close");
    assert!(actions.is_displayed().await.expect("shown"), "the detail's actions are reachable");
    page.browser.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dense_cases_cluster_at_the_regions_zoom_and_a_p1_stays_on_top() {
    const N: usize = 500;
    let page = Beijing::start().await;
    // A 25 × 20 grid of points 250 m apart (farther than the merge distance) in central Beijing,
    // one of them a priority 1 fire.
    let p1 = 212;
    for k in 0..N {
        let (lon, lat) = (116.36 + (k % 25) as f64 * 0.0029, 39.88 + (k / 25) as f64 * 0.00225);
        let id = format!("dense-{k}");
        let mut event = if k == p1 {
            case(&id, SourceSystem::Emergency, "fire", lon, lat)
        } else {
            case(&id, SourceSystem::PublicService, "street_and_sidewalk_cleaning", lon, lat)
        };
        event.data.priority = if k == p1 { 1 } else { 3 };
        publish_case(&page.bus.js, &event).await;
    }
    until(&page.browser, "every case", "return window.linkbusConsole.caseCount() === arguments[0]", vec![json!(N)])
        .await;
    let clusters = until(
        &page.browser,
        "the clusters",
        "const c = window.linkbusConsole.clusters(); \
         return c.reduce((n, x) => n + x.n, 0) === arguments[0] && \
           { clusters: c, written: [...document.querySelectorAll('.cluster-count')].map((e) => Number(e.textContent)) }",
        vec![json!(N)],
    )
    .await;
    let counts = clusters["clusters"].as_array().expect("a list");
    assert!((1..=6).contains(&counts.len()), "{clusters}");
    let mut written: Vec<u64> =
        clusters["written"].as_array().expect("a list").iter().filter_map(Value::as_u64).collect();
    written.sort_unstable();
    let mut drawn: Vec<u64> = counts.iter().filter_map(|c| c["n"].as_u64()).collect();
    drawn.sort_unstable();
    assert_eq!(written, drawn, "the counts written on the bubbles");
    assert_eq!(written.iter().sum::<u64>(), N as u64);
    screenshot(&page.browser, "console-map-clusters.png").await;
    // The P1's own dot is drawn, red, above its bubble (of priority 3, yellow).
    let pixel = page.browser.execute(PIXEL, vec![json!(format!("dense-{p1}"))]).await.expect("the pixel");
    let rgba: Vec<u64> = serde_json::from_value(pixel.clone()).unwrap_or_else(|_| panic!("no dot drawn: {pixel}"));
    // The P1 red (#d7263d, 90 % opaque) over the bubble's yellow (#e2b100), not the yellow.
    assert!(rgba[0] > 180 && rgba[1] < 100, "the fire's red is on top of its cluster: {rgba:?}");
    page.browser.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn choosing_a_street_shows_its_cases_and_zooms_to_it() {
    let page = Beijing::start().await;
    let (id, lon, lat) = DUOFUXIANG;
    let beijing = linkbus_geo_data::Region::load(repo_root().join("geo-data/beijing")).expect("Beijing loads");
    let street = beijing
        .communities
        .iter()
        .find(|c| c.id == id)
        .and_then(|c| c.sub_district.as_ref())
        .expect("多福巷 has a 街道")
        .code
        .clone();
    // One case in 东华门街道, one 8 km away in another.
    let inside = case("street-in", SourceSystem::PublicService, "streetlights", lon, lat);
    let outside = case("street-out", SourceSystem::PublicService, "streetlights", lon + 0.1, lat - 0.02);
    for event in [&inside, &outside] {
        publish_case(&page.bus.js, event).await;
        shows_case(&page.browser, &event.id).await;
    }
    let region = page.view().await;
    let select = page.browser.find(Locator::Id("f-street")).await.expect("the 街道 filter");
    select.select_by_value(&street).await.expect("choose 东华门街道");
    let view = until(
        &page.browser,
        "the board and map narrowed to the 街道",
        "const ids = window.linkbusConsole.mapCaseIds(); const v = window.linkbusConsole.mapView(); \
         return ids.length === 1 && ids[0] === 'street-in' && v.zoom > arguments[0] && v;",
        vec![region["zoom"].clone()],
    )
    .await;
    let (south_west, north_east) = (point(&view["bounds"][0]), point(&view["bounds"][1]));
    assert!(
        (south_west.0..=north_east.0).contains(&lat) && (south_west.1..=north_east.1).contains(&lon),
        "the 街道's case is outside the map's view: {view}"
    );
    page.browser.close().await.expect("close");
}
