//! The dispatcher console in a real headless Chromium (Debian's `chromium` and `chromium-driver`,
//! installed by `ops/scripts/ensure-test-tools`), driven over WebDriver by fantoccini, against a
//! real `linkbus up` on a real nats-server: the page signs in with a dispatcher key and draws the
//! region's community boundaries; a case published on NATS appears on the board and on the map of
//! every open console; opening it shows the routing explanation and the source's id; an action in
//! one console changes the case's state in the other; the console reconnects after `linkbus up`
//! restarts and shows what was published meanwhile; a screenshot with live cases is saved under
//! the target folder (`UPDATE_SCREENSHOT=1` also writes `docs/console.png`). With 1,000 live cases
//! it measures how long the page takes to apply them and its frame times while scrolling the board
//! (printed; `docs/console.md` reports them).

use std::io::BufRead as _;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use geo::Centroid as _;
use linkbus_bus::wire::SourceSystem;
use linkbus_tests::{Running, TestBus, WAIT, case, publish_case, sf_region, sf_region_dir};
use serde_json::{Value, json};

const DISPATCHER: &str = "k-console-dispatcher-7c2e91d04ab35f68";
const DISPATCHER_2: &str = "k-console-dispatcher-2-19e4c7a05b3d86f2";

/// A free TCP port on the loopback interface.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// `linkbus up` on `bus` with two dispatcher keys, serving the API and the console on `port`.
struct Linkbus {
    _process: Running,
    base: String,
}

impl Linkbus {
    fn start(bus: &TestBus, dir: &std::path::Path, port: u16) -> Self {
        let hash = |key: &str| linkbus::api::hash_key(key);
        let config = linkbus_tests::write_config(
            dir,
            &format!(
                "[nats]\nurl = \"{}\"\n[region]\ndir = \"{}\"\n[api]\nlisten = \"127.0.0.1:{port}\"\n\
                 [[api.keys]]\nrole = \"dispatcher\"\nid = \"dana\"\nsha256 = \"{}\"\n\
                 [[api.keys]]\nrole = \"dispatcher\"\nid = \"li.wei\"\nsha256 = \"{}\"\n",
                bus.server.url(),
                sf_region_dir().display(),
                hash(DISPATCHER),
                hash(DISPATCHER_2),
            ),
        );
        let mut process = Running(
            Command::new(env!("CARGO_BIN_EXE_linkbus-under-test"))
                .args(["up", "--config"])
                .arg(&config)
                .env_remove("LINKBUS_NATS_URL")
                .stderr(Stdio::piped())
                .spawn()
                .expect("linkbus up starts"),
        );
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = process.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("console http://").nth(1) {
                    let _ = tx.send(rest.split(['/', ' ', ',']).next().unwrap_or_default().to_owned());
                }
            }
        });
        let addr = rx.recv_timeout(WAIT).expect("linkbus up prints the console's address");
        assert_eq!(addr, format!("127.0.0.1:{port}"));
        Self { _process: process, base: format!("http://{addr}/") }
    }
}

/// chromedriver, stopped with the test.
struct Driver {
    _process: Running,
    url: String,
}

impl Driver {
    fn start() -> Self {
        let binary = std::env::var("LINKBUS_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
        assert!(
            std::path::Path::new(&binary).exists(),
            "{binary} is missing: run ops/scripts/ensure-test-tools (Debian packages chromium, chromium-driver)"
        );
        let port = free_port();
        let process = Running(
            Command::new(&binary)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromedriver starts"),
        );
        let deadline = std::time::Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "chromedriver did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { _process: process, url: format!("http://127.0.0.1:{port}") }
    }

    /// A fresh headless Chromium with its own profile (so its own cookies).
    async fn browser(&self, profile: &std::path::Path) -> Client {
        let chromium = std::env::var("LINKBUS_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--window-size=1600,1000", "--lang=en-US",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        tokio::time::timeout(WAIT, ClientBuilder::new(connector).capabilities(caps).connect(&self.url))
            .await
            .expect("Chromium starts in time")
            .expect("a WebDriver session")
    }
}

/// Opens the console and signs in with `key`; returns once the region's boundaries are drawn.
async fn sign_in(browser: &Client, base: &str, key: &str) {
    browser.goto(base).await.expect("the console loads");
    let field = browser.wait().at_most(WAIT).for_element(Locator::Id("login-key")).await.expect("a sign-in form");
    field.send_keys(key).await.expect("type the key");
    browser.find(Locator::Id("login-submit")).await.expect("a sign-in button").click().await.expect("sign in");
    browser.wait().at_most(WAIT).for_element(Locator::Css("#app:not([hidden])")).await.expect("the console opens");
}

/// Evaluates `script` (a function body) until it returns something other than `null`/`false`.
async fn until(browser: &Client, what: &str, script: &str, args: Vec<Value>) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let value = browser.execute(script, args.clone()).await.expect("script runs");
        if !(value.is_null() || value == Value::Bool(false)) {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the board and the map of `browser` show `case_id`.
async fn shows_case(browser: &Client, case_id: &str) {
    browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(&format!("#board-rows .row[data-case-id=\"{case_id}\"]")))
        .await
        .unwrap_or_else(|e| panic!("case {case_id} is not on the board: {e}"));
    until(
        browser,
        &format!("case {case_id} on the map"),
        "return window.linkbusConsole.mapCaseIds().includes(arguments[0])",
        vec![json!(case_id)],
    )
    .await;
}

/// A point in each of the region's communities (their centroids), for spreading cases.
fn community_points() -> Vec<(f64, f64)> {
    sf_region().communities.iter().filter_map(|c| c.boundary.centroid()).map(|p| (p.x(), p.y())).collect()
}

/// Publishes `n` cases with ids `<prefix>-<k>`, spread over the communities, of several categories
/// and priorities, far enough apart not to be merged.
async fn publish_many(bus: &TestBus, prefix: &str, n: usize) -> Vec<String> {
    let kinds: [(&str, SourceSystem); 8] = [
        ("street_and_sidewalk_cleaning", SourceSystem::PublicService),
        ("graffiti_public_property", SourceSystem::PublicService),
        ("sewer_issues", SourceSystem::PublicService),
        ("streetlights", SourceSystem::PublicService),
        ("abandoned_vehicle", SourceSystem::Management),
        ("tree_maintenance", SourceSystem::PublicService),
        ("medical_emergency", SourceSystem::Emergency),
        ("fire", SourceSystem::Emergency),
    ];
    let points = community_points();
    let mut ids = Vec::with_capacity(n);
    for k in 0..n {
        let (lon, lat) = points[k % points.len()];
        // Rings of about 350 m steps around the centroid: never within the merge distance.
        let round = (k / points.len()) as f64;
        let angle = round * 2.399;
        let (dlon, dlat) = (0.004 * round.sqrt() * angle.cos(), 0.003 * round.sqrt() * angle.sin());
        let (category, system) = kinds[k % kinds.len()];
        let id = format!("{prefix}-{k}");
        let mut event = case(&id, system, category, lon + dlon, lat + dlat);
        event.data.priority = [3, 2, 4, 3, 1][k % 5];
        publish_case(&bus.js, &event).await;
        ids.push(id);
    }
    ids
}

/// Where screenshots of a test run go: the target folder's scratch space.
fn screenshot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_shows_live_cases_and_actions_reach_every_console() {
    let bus = TestBus::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let linkbus = Linkbus::start(&bus, dir.path(), free_port());
    let driver = Driver::start();
    let a = driver.browser(&dir.path().join("profile-a")).await;
    let b = driver.browser(&dir.path().join("profile-b")).await;

    // A wrong key is refused, on the page.
    a.goto(&linkbus.base).await.expect("the console loads");
    let field = a.wait().at_most(WAIT).for_element(Locator::Id("login-key")).await.expect("a sign-in form");
    field.send_keys("not-a-key").await.expect("type");
    a.find(Locator::Id("login-submit")).await.expect("button").click().await.expect("click");
    until(
        &a,
        "the refusal",
        "return document.getElementById('login-error').textContent.includes('unknown API key')",
        vec![],
    )
    .await;
    field.clear().await.expect("clear");

    sign_in(&a, &linkbus.base, DISPATCHER).await;
    sign_in(&b, &linkbus.base, DISPATCHER_2).await;
    for browser in [&a, &b] {
        // The region's 41 communities, drawn as SVG paths.
        let drawn = until(
            browser,
            "the community boundaries",
            "const n = document.querySelectorAll('path.community').length; return n > 0 && n",
            vec![],
        )
        .await;
        assert_eq!(drawn, json!(sf_region().communities.len()));
    }

    // Published on NATS: on both boards and maps.
    let mut event = case("console-1", SourceSystem::PublicService, "street_and_sidewalk_cleaning", -122.4194, 37.7599);
    event.data.source_id = "SR-2026-000123".into();
    publish_case(&bus.js, &event).await;
    shows_case(&a, "console-1").await;
    shows_case(&b, "console-1").await;

    // Opened: the explanation and the source's own id.
    a.find(Locator::Css("#board-rows .row[data-case-id=\"console-1\"]"))
        .await
        .expect("row")
        .click()
        .await
        .expect("open");
    let explanation = a
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#detail:not([hidden]) #detail-explanation"))
        .await
        .expect("the case opens")
        .text()
        .await
        .expect("text");
    assert!(explanation.contains("is inside community Mission"), "{explanation}");
    assert!(explanation.contains("dpw-ops-queue"), "{explanation}");
    let source_ids = a.find(Locator::Id("detail-source-ids")).await.expect("source ids").text().await.expect("text");
    assert_eq!(source_ids, "SR-2026-000123");

    // Closed in console A: closed in console B too, on its board, and recorded as dana's.
    a.find(Locator::Id("close-note")).await.expect("note").send_keys("duplicate of a phone call").await.expect("type");
    a.find(Locator::Css("button[data-act=\"close\"]")).await.expect("close button").click().await.expect("close");
    until(
        &a,
        "the closed state in A's detail",
        "return document.getElementById('detail-state').dataset.state === 'closed'",
        vec![],
    )
    .await;
    until(
        &b,
        "the closed state in B",
        "const row = document.querySelector('#board-rows .row[data-case-id=\"console-1\"] .badge.s-closed'); \
         return window.linkbusConsole.state('console-1') === 'closed' && row !== null",
        vec![],
    )
    .await;
    let timeline = a.find(Locator::Css("#detail .timeline")).await.expect("timeline").text().await.expect("text");
    assert!(timeline.contains("closed · dispatcher dana: duplicate of a phone call"), "{timeline}");

    // Live cases for the screenshot, in Chinese in one console.
    publish_many(&bus, "shot", 120).await;
    until(&a, "every case", "return window.linkbusConsole.caseCount() === 121", vec![]).await;
    b.find(Locator::Id("lang")).await.expect("language button").click().await.expect("switch");
    until(&b, "the Chinese board", "return document.getElementById('board-count').textContent.includes('件')", vec![])
        .await;
    // The top of the board: a case nobody accepted yet.
    a.find(Locator::Css("#board-rows .row.unaccepted")).await.expect("a row").click().await.expect("open");
    a.wait().at_most(WAIT).for_element(Locator::Css("#detail:not([hidden]) #detail-explanation")).await.expect("opens");
    let png = a.screenshot().await.expect("screenshot");
    let path = screenshot_path("console.png");
    std::fs::write(&path, &png).expect("save the screenshot");
    eprintln!("screenshot: {}", path.display());
    if std::env::var_os("UPDATE_SCREENSHOT").is_some() {
        std::fs::write(linkbus_tests::repo_root().join("docs/console.png"), &png).expect("write docs/console.png");
    }
    std::fs::write(screenshot_path("console-zh.png"), b.screenshot().await.expect("screenshot")).expect("save");

    a.close().await.expect("close A");
    b.close().await.expect("close B");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_reconnects_after_linkbus_restarts_and_catches_up() {
    let bus = TestBus::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let linkbus = Linkbus::start(&bus, dir.path(), port);
    let driver = Driver::start();
    let browser = driver.browser(&dir.path().join("profile")).await;
    sign_in(&browser, &linkbus.base, DISPATCHER).await;
    let before = case("before-restart", SourceSystem::PublicService, "sewer_issues", -122.4194, 37.7599);
    publish_case(&bus.js, &before).await;
    shows_case(&browser, "before-restart").await;

    drop(linkbus); // SIGTERM: the API and its event streams end.
    until(&browser, "the page to notice", "return document.getElementById('live').classList.contains('off')", vec![])
        .await;
    // Published while no linkbus runs: routed once it is back.
    let meanwhile = case("during-restart", SourceSystem::PublicService, "streetlights", -122.4862, 37.7694);
    publish_case(&bus.js, &meanwhile).await;
    let _linkbus = Linkbus::start(&bus, dir.path(), port);

    // Same page, no reload: still signed in (the session secret is in NATS), caught up.
    shows_case(&browser, "during-restart").await;
    shows_case(&browser, "before-restart").await;
    assert!(browser.find(Locator::Css("#login[hidden]")).await.is_ok(), "the page asked to sign in again");
    browser.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_with_a_thousand_live_cases() {
    const N: usize = 1000;
    let bus = TestBus::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let linkbus = Linkbus::start(&bus, dir.path(), free_port());
    let driver = Driver::start();
    let browser = driver.browser(&dir.path().join("profile")).await;
    sign_in(&browser, &linkbus.base, DISPATCHER).await;

    // Arriving live, one SSE event each.
    let started = std::time::Instant::now();
    publish_many(&bus, "load", N).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let count = browser.execute("return window.linkbusConsole.caseCount()", vec![]).await.expect("count");
        if count == json!(N) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{count} of {N} cases shown after 120 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let live_secs = started.elapsed().as_secs_f64();
    let frames_live = browser
        .execute_async("window.linkbusConsole.measureFrames(3000).then(arguments[0])", vec![])
        .await
        .expect("frame times");

    // All at once: a reload gets them in one `reset`.
    browser.refresh().await.expect("reload");
    until(&browser, "the reset", "return window.linkbusConsole.stats.lastResetCount === 1000", vec![]).await;
    let stats = browser.execute("return window.linkbusConsole.stats", vec![]).await.expect("stats");
    let frames = browser
        .execute_async("window.linkbusConsole.measureFrames(3000).then(arguments[0])", vec![])
        .await
        .expect("frame times");
    let on_map = browser.execute("return window.linkbusConsole.mapCaseIds().length", vec![]).await.expect("markers");
    assert_eq!(on_map, json!(N));
    let rows =
        browser.execute("return document.querySelectorAll('#board-rows .row').length", vec![]).await.expect("rows");
    eprintln!(
        "console with {N} cases: published and shown live in {live_secs:.1} s; frames while scrolling after they \
         arrived: {frames_live}; reset of {N} applied in {} ms; frames while scrolling: {frames}; board rows in the \
         DOM: {rows}",
        stats["lastResetMs"]
    );
    std::fs::write(screenshot_path("console-1000.png"), browser.screenshot().await.expect("screenshot")).expect("save");
    browser.close().await.expect("close");
}
