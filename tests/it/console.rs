//! The dispatcher console in a real headless Chromium (Debian's `chromium` and `chromium-driver`,
//! installed by `ops/scripts/ensure-test-tools`), driven over WebDriver by fantoccini, against a
//! real `linkbus up` on a real nats-server: the page signs in with a dispatcher key and draws the
//! region's community boundaries; a case published on NATS appears on the board and on the map of
//! every open console; opening it shows the routing explanation and the source's id; an action in
//! one console changes the case's state in the other; two reports of one incident are one row with
//! both reports, split apart from the detail; a case every department rejected is on top of the
//! board, escalated, until a dispatcher acknowledges it; the console reconnects after `linkbus up`
//! restarts and shows what was published meanwhile; a countdown over a day reads in days and hours
//! ("due in 2d 23h", "剩余 2天23时"); a screenshot with live cases is saved under
//! the target folder (`UPDATE_SCREENSHOT=1` also writes `docs/console-sf.png`). With 1,000 live cases
//! it measures how long the page takes to apply them and its frame times while scrolling the board;
//! with 5,000 on Beijing (ignored: run it by name) its first paint, the time from signing in until
//! the map and the cases are drawn, the bytes it transfers and its frame times while the board
//! scrolls and the map is dragged (printed; `docs/console.md` reports them).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use geo::Contains as _;
use linkbus_tests::{Running, TestBus, WAIT, case, department_action, publish_case, sf_region, sf_region_dir};
use linkbus_wire::{Action, SourceSystem};
use serde_json::{Value, json};

pub(crate) const DISPATCHER: &str = "k-console-dispatcher-7c2e91d04ab35f68";
const DISPATCHER_2: &str = "k-console-dispatcher-2-19e4c7a05b3d86f2";

/// A free TCP port on the loopback interface.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// `linkbus up` on `bus` with two dispatcher keys, serving the API and the console on `port`.
pub(crate) struct Linkbus {
    _process: Running,
    pub(crate) base: String,
}

impl Linkbus {
    pub(crate) fn start(bus: &TestBus, dir: &std::path::Path, port: u16) -> Self {
        Self::start_with(bus, dir, port, "")
    }

    /// [`Linkbus::start`], with `extra` appended to the configuration.
    pub(crate) fn start_with(bus: &TestBus, dir: &std::path::Path, port: u16, extra: &str) -> Self {
        Self::start_in(bus, dir, port, &sf_region_dir(), extra)
    }

    /// [`Linkbus::start_with`], on the region in `region_dir`.
    pub(crate) fn start_in(
        bus: &TestBus,
        dir: &std::path::Path,
        port: u16,
        region_dir: &std::path::Path,
        extra: &str,
    ) -> Self {
        Self::start_region(bus, dir, port, region_dir, "", extra)
    }

    /// [`Linkbus::start_in`], with `region_extra` in its `[region]` table.
    pub(crate) fn start_region(
        bus: &TestBus,
        dir: &std::path::Path,
        port: u16,
        region_dir: &std::path::Path,
        region_extra: &str,
        extra: &str,
    ) -> Self {
        let hash = |key: &str| linkbus_http::auth::hash_key(key);
        let config = linkbus_tests::write_config(
            dir,
            &format!(
                "[nats]\nurl = \"{}\"\n[region]\ndir = \"{}\"\n{region_extra}[api]\nlisten = \"127.0.0.1:{port}\"\n\
                 [[api.keys]]\nrole = \"dispatcher\"\nid = \"dana\"\nsha256 = \"{}\"\n\
                 [[api.keys]]\nrole = \"dispatcher\"\nid = \"li.wei\"\nsha256 = \"{}\"\n{extra}",
                bus.server.url(),
                region_dir.display(),
                hash(DISPATCHER),
                hash(DISPATCHER_2),
            ),
        );
        let (process, announced) = linkbus_tests::start_up(
            Command::new(env!("CARGO_BIN_EXE_linkbus-under-test"))
                .args(["up", "--config"])
                .arg(&config)
                .env_remove("LINKBUS_NATS_URL"),
        );
        let addr = announced.console().to_owned();
        assert_eq!(addr, format!("127.0.0.1:{port}"));
        Self { _process: process, base: format!("http://{addr}/") }
    }
}

/// chromedriver in a process group of its own, with every Chromium it starts: on drop (a test
/// that ends, or fails) the whole group gets SIGTERM (SIGKILL after 10 s), so no browser outlives
/// the test.
pub(crate) struct Driver {
    process: std::process::Child,
    url: String,
}

impl Driver {
    pub(crate) fn start() -> Self {
        use std::os::unix::process::CommandExt as _;
        let binary = std::env::var("LINKBUS_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
        assert!(
            std::path::Path::new(&binary).exists(),
            "{binary} is missing: run ops/scripts/ensure-test-tools (Debian packages chromium, chromium-driver)"
        );
        let port = free_port();
        let process = Command::new(&binary)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = Self { process, url: format!("http://127.0.0.1:{port}") };
        let deadline = std::time::Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "chromedriver did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        driver
    }

    /// A fresh headless Chromium with its own profile (so its own cookies).
    pub(crate) async fn browser(&self, profile: &std::path::Path) -> Client {
        self.browser_with(profile, &[], json!(null)).await
    }

    /// [`Driver::browser`] emulating a phone: 390 × 844 CSS pixels at 3×, touch events, a mobile
    /// user agent (Chromium's `mobileEmulation`).
    pub(crate) async fn phone(&self, profile: &std::path::Path) -> Client {
        let phone = json!({
            "deviceMetrics": { "width": 390, "height": 844, "pixelRatio": 3.0, "touch": true, "mobile": true },
            "userAgent": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) \
                          Chrome/120.0 Mobile Safari/537.36",
        });
        self.browser_with(profile, &[], phone).await
    }

    /// [`Driver::browser`], with `args` added to Chromium's and `mobile` as its
    /// `mobileEmulation` (none if null).
    pub(crate) async fn browser_with(&self, profile: &std::path::Path, args: &[&str], mobile: Value) -> Client {
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
                    "--disable-crash-reporter", "--window-size=1600,1000", "--lang=en-US",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        if let Some(options) = caps.get_mut("goog:chromeOptions").and_then(Value::as_object_mut) {
            if let Some(all) = options.get_mut("args").and_then(Value::as_array_mut) {
                all.extend(args.iter().map(|a| json!(a)));
            }
            if !mobile.is_null() {
                options.insert("mobileEmulation".into(), mobile);
            }
        }
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        tokio::time::timeout(WAIT, ClientBuilder::new(connector).capabilities(caps).connect(&self.url))
            .await
            .expect("Chromium starts in time")
            .expect("a WebDriver session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        use nix::sys::signal::{Signal, killpg};
        let group = nix::unistd::Pid::from_raw(self.process.id() as i32);
        let _ = killpg(group, Signal::SIGTERM);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while matches!(self.process.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.process.wait();
    }
}

/// Watches the page from now on: what it reports as errors (`error` and `unhandledrejection`
/// events, `console.error`) in `window.linkbusErrors`, and every POST it sends (`{url, body}`) in
/// `window.linkbusPosts`, so a test can tell that something was not sent.
const WATCH: &str = "window.linkbusErrors = []; window.linkbusPosts = []; \
    window.addEventListener('error', (e) => window.linkbusErrors.push(String(e.message))); \
    window.addEventListener('unhandledrejection', (e) => window.linkbusErrors.push(String(e.reason?.message ?? e.reason))); \
    const error = console.error; \
    console.error = (...args) => { window.linkbusErrors.push(args.map(String).join(' ')); error.apply(console, args); }; \
    const fetch = window.fetch; \
    window.fetch = (url, options) => { \
      if (options?.method === 'POST') window.linkbusPosts.push({ url: String(url), body: JSON.parse(options.body || 'null') }); \
      return fetch(url, options); };";

/// What a console test starts with: a bus, `linkbus up` on it (`Linkbus::start`), chromedriver,
/// and the folder of the configuration and the browsers' profiles. The fields drop in order: the
/// browsers first, then `linkbus up`, then the bus.
pub(crate) struct Setup {
    pub(crate) driver: Driver,
    pub(crate) linkbus: Linkbus,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) bus: TestBus,
}

impl Setup {
    pub(crate) async fn start() -> Self {
        let bus = TestBus::start().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let linkbus = Linkbus::start(&bus, dir.path(), free_port());
        Self { driver: Driver::start(), linkbus, dir, bus }
    }

    /// A fresh Chromium with the profile `profile`, signed in with `key`, watched (`WATCH`) until
    /// the page is loaded again.
    pub(crate) async fn signed_in(&self, profile: &str, key: &str) -> Client {
        let browser = self.driver.browser(&self.dir.path().join(profile)).await;
        sign_in(&browser, &self.linkbus.base, key).await;
        browser.execute(WATCH, vec![]).await.expect("watch the page");
        browser
    }
}

/// Opens the console and signs in with `key`; returns once the region's boundaries are drawn.
pub(crate) async fn sign_in(browser: &Client, base: &str, key: &str) {
    browser.goto(base).await.expect("the console loads");
    let field = browser.wait().at_most(WAIT).for_element(Locator::Id("login-key")).await.expect("a sign-in form");
    field.send_keys(key).await.expect("type the key");
    browser.find(Locator::Id("login-submit")).await.expect("a sign-in button").click().await.expect("sign in");
    browser.wait().at_most(WAIT).for_element(Locator::Css("#app:not([hidden])")).await.expect("the console opens");
}

/// Evaluates `script` (a function body) until it returns something other than `null`/`false`.
pub(crate) async fn until(browser: &Client, what: &str, script: &str, args: Vec<Value>) -> Value {
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
pub(crate) async fn shows_case(browser: &Client, case_id: &str) {
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

/// `n` points over San Francisco, a grid of about 330 m by 440 m cells (so no two cases are within
/// the merge distance of each other), those inside a community first.
fn points(n: usize) -> Vec<(f64, f64)> {
    let region = sf_region();
    let inside =
        |lon: f64, lat: f64| region.communities.iter().any(|c| c.boundary.contains(&geo::point!(x: lon, y: lat)));
    let grid =
        (0..60).flat_map(|row| (0..60).map(move |col| (-122.514 + col as f64 * 0.00375, 37.708 + row as f64 * 0.004)));
    let (within, outside): (Vec<_>, Vec<_>) = grid.partition(|&(lon, lat)| inside(lon, lat));
    // Spread over the city rather than filling it row by row; then the bay's shores.
    let step = (within.len() / n.max(1)).max(1);
    within.into_iter().step_by(step).chain(outside).take(n).collect()
}

/// Publishes a case at each point with ids `<prefix>-<k>`, of several categories and priorities.
async fn publish_many(bus: &TestBus, prefix: &str, points: &[(f64, f64)]) -> Vec<String> {
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
    let mut ids = Vec::with_capacity(points.len());
    for (k, &(lon, lat)) in points.iter().enumerate() {
        let (category, system) = kinds[k % kinds.len()];
        let id = format!("{prefix}-{k}");
        let mut event = case(&id, system, category, lon, lat);
        event.data.priority = [3, 2, 4, 3, 1][k % 5];
        publish_case(&bus.js, &event).await;
        ids.push(id);
    }
    ids
}

/// A case as the API gives it to a dispatcher.
async fn read_case(linkbus: &Linkbus, case_id: &str) -> Value {
    find_case(linkbus, case_id).await.unwrap_or_else(|| panic!("no case {case_id}"))
}

/// A case as the API gives it to a dispatcher; None while there is none (404).
pub(crate) async fn find_case(linkbus: &Linkbus, case_id: &str) -> Option<Value> {
    let http = reqwest::Client::builder().timeout(WAIT).build().expect("client");
    let response =
        http.get(format!("{}api/cases/{case_id}", linkbus.base)).bearer_auth(DISPATCHER).send().await.expect("answer");
    if response.status() == 404 {
        return None;
    }
    assert_eq!(response.status(), 200, "case {case_id}");
    Some(serde_json::from_slice(&response.bytes().await.expect("body")).expect("a record"))
}

/// Where screenshots of a test run go: the target folder's scratch space.
pub(crate) fn screenshot_path(name: &str) -> PathBuf {
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
    let publishing = std::time::SystemTime::now();
    publish_case(&bus.js, &event).await;
    shows_case(&a, "console-1").await;
    shows_case(&b, "console-1").await;
    // How long from publishing on NATS until the event reached each page (the same clock).
    let sent_ms = publishing.duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_millis() as f64;
    for (name, browser) in [("A", &a), ("B", &b)] {
        let arrived =
            browser.execute("return window.linkbusConsole.arrivedAt('console-1')", vec![]).await.expect("time");
        eprintln!("published on NATS to console {name}: {:.0} ms", arrived.as_f64().expect("a time") - sent_ms);
    }

    // Opened: the explanation and the source's own id.
    a.find(Locator::Css("#board-rows .row[data-case-id=\"console-1\"]"))
        .await
        .expect("row")
        .click()
        .await
        .expect("open");
    a.wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#detail:not([hidden]) #detail-explanation"))
        .await
        .expect("the case opens");
    let explanation = a.execute("return document.getElementById('detail-explanation').innerText", vec![]).await;
    let explanation = explanation.expect("explanation").as_str().expect("text").to_owned();
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
    // Read in one step: the detail is drawn again when its repeats arrive.
    let timeline = a.execute("return document.querySelector('#detail .timeline').innerText", vec![]).await;
    let timeline = timeline.expect("timeline").as_str().expect("text").to_owned();
    assert!(timeline.contains("closed · dispatcher dana: duplicate of a phone call"), "{timeline}");
    // Times are the region's (San Francisco's), not the machine's or the browser's.
    let record = read_case(&linkbus, "console-1").await;
    let at: jiff::Timestamp = record["timeline"][0]["at"].as_str().expect("a time").parse().expect("RFC 3339");
    let local = at.in_tz(&sf_region().manifest.time_zone).expect("the region's time zone");
    assert!(timeline.contains(&local.strftime("%H:%M:%S").to_string()), "{timeline} lacks {local}");

    // Two reports of one incident: one row with both reports; split from the detail, two rows
    // again, in both consoles.
    for (id, lon) in [("dup-a", -122.4862), ("dup-b", -122.4857)] {
        let mut event = case(id, SourceSystem::PublicService, "sewer_issues", lon, 37.7694);
        event.data.source_id = format!("SR-{id}");
        publish_case(&bus.js, &event).await;
    }
    let merged_row = "#board-rows .row[data-case-id^=\"dup-\"] .badge.merged";
    let primary = until(
        &a,
        "one row with both reports",
        &format!(
            "const badge = document.querySelector('{merged_row}'); \
             const ids = ['dup-a', 'dup-b'].filter((id) => window.linkbusConsole.state(id) !== undefined); \
             return badge !== null && ids.length === 1 && ids[0]"
        ),
        vec![],
    )
    .await;
    let primary = primary.as_str().expect("the primary's id").to_owned();
    let other = if primary == "dup-a" { "dup-b" } else { "dup-a" };
    a.find(Locator::Css(&format!("#board-rows .row[data-case-id=\"{primary}\"]")))
        .await
        .expect("row")
        .click()
        .await
        .expect("open");
    until(
        &a,
        "both source ids in the detail",
        "const t = document.getElementById('detail-source-ids'); return t && t.textContent.includes('SR-dup-a') && t.textContent.includes('SR-dup-b')",
        vec![],
    )
    .await;
    a.find(Locator::Css(&format!("button[data-split=\"{other}\"]")))
        .await
        .expect("a split button")
        .click()
        .await
        .expect("split");
    for browser in [&a, &b] {
        until(
            browser,
            "two rows after the split",
            "return ['dup-a', 'dup-b'].every((id) => window.linkbusConsole.state(id) !== undefined)",
            vec![],
        )
        .await;
    }

    // Reassigned from A to another department: B's board shows the new one, by name.
    a.find(Locator::Css("#board-rows .row[data-case-id=\"dup-b\"]")).await.expect("row").click().await.expect("open");
    a.wait().at_most(WAIT).for_element(Locator::Css("#detail[data-case-id=\"dup-b\"]")).await.expect("dup-b open");
    let select = a.find(Locator::Id("reassign-to")).await.expect("a department list");
    select.select_by_value("dpw-ops-queue").await.expect("choose a department");
    a.find(Locator::Id("reassign-reason"))
        .await
        .expect("reason")
        .send_keys("a blocked drain, not a sewer")
        .await
        .expect("type");
    a.find(Locator::Css("button[data-act=\"reassign\"]"))
        .await
        .expect("reassign button")
        .click()
        .await
        .expect("reassign");
    until(
        &b,
        "the reassignment in B",
        "const row = document.querySelector('#board-rows .row[data-case-id=\"dup-b\"] .sub'); \
         return row !== null && row.textContent.includes('DPW Ops Queue')",
        vec![],
    )
    .await;

    // Every candidate department rejects a case: escalated, on top of both boards; acknowledged in
    // A, no longer escalated in B.
    let event = case("esc-1", SourceSystem::PublicService, "sewer_issues", -122.4312, 37.7694);
    publish_case(&bus.js, &event).await;
    shows_case(&a, "esc-1").await;
    for _ in 0..5 {
        let record = read_case(&linkbus, "esc-1").await;
        if record["state"] == "rejected" {
            break;
        }
        let responsible =
            record["departments"].as_array().and_then(|d| d.last()).and_then(Value::as_str).expect("a department");
        let reply =
            department_action(&bus.client, responsible, "esc-1", Action::Reject { reason: "not ours".into() }).await;
        assert!(reply.ok, "{reply:?}");
    }
    for browser in [&a, &b] {
        until(
            browser,
            "the escalated case on top",
            "const top = document.querySelector('#board-rows .row'); \
             return top !== null && top.dataset.caseId === 'esc-1' && top.classList.contains('escalated')",
            vec![],
        )
        .await;
    }
    a.find(Locator::Css("#board-rows .row[data-case-id=\"esc-1\"]")).await.expect("row").click().await.expect("open");
    a.wait()
        .at_most(WAIT)
        .for_element(Locator::Css("button[data-act=\"ack\"]"))
        .await
        .expect("an acknowledge button")
        .click()
        .await
        .expect("acknowledge");
    until(
        &b,
        "the acknowledgement in B",
        "const row = document.querySelector('#board-rows .row[data-case-id=\"esc-1\"]'); \
         return row !== null && !row.classList.contains('escalated')",
        vec![],
    )
    .await;

    // Live cases for the screenshot, in Chinese in one console.
    publish_many(&bus, "shot", &points(120)).await;
    until(&a, "every case", "return window.linkbusConsole.caseCount() === 124", vec![]).await;
    b.find(Locator::Id("lang")).await.expect("language button").click().await.expect("switch");
    until(&b, "the Chinese board", "return document.getElementById('board-count').textContent.includes('件')", vec![])
        .await;
    // A priority-1 street cleaning in the Mission (volunteers offered), else the top of the board.
    let row = match a.find(Locator::Css("#board-rows .row[data-case-id=\"shot-64\"]")).await {
        Ok(row) => row,
        Err(_) => a.find(Locator::Css("#board-rows .row.unaccepted")).await.expect("a row"),
    };
    row.click().await.expect("open");
    a.wait().at_most(WAIT).for_element(Locator::Css("#detail:not([hidden]) #detail-explanation")).await.expect("opens");
    let png = a.screenshot().await.expect("screenshot");
    let path = screenshot_path("console.png");
    std::fs::write(&path, &png).expect("save the screenshot");
    eprintln!("screenshot: {}", path.display());
    if std::env::var_os("UPDATE_SCREENSHOT").is_some() {
        std::fs::write(linkbus_tests::repo_root().join("docs/console-sf.png"), &png)
            .expect("write docs/console-sf.png");
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
async fn countdowns_over_a_day_read_in_days_and_hours() {
    let setup = Setup::start().await;
    let browser = setup.signed_in("profile", DISPATCHER).await;
    // Priority 3, accepted: 72 hours to resolve. Priority 4, routed: 4 hours to accept.
    let sewer = case("due-sewer", SourceSystem::PublicService, "sewer_issues", -122.4194, 37.7599);
    let mut lights = case("due-lights", SourceSystem::PublicService, "streetlights", -122.4330, 37.7840);
    lights.data.priority = 4;
    publish_case(&setup.bus.js, &sewer).await;
    publish_case(&setup.bus.js, &lights).await;
    shows_case(&browser, "due-sewer").await;
    shows_case(&browser, "due-lights").await;
    let reply = department_action(&setup.bus.client, "puc-sewer-ops", "due-sewer", Action::Accept {}).await;
    assert!(reply.ok, "{reply:?}");
    // The countdown of a row, once it shows `state` and its text contains `word`.
    let due = |id: &str, state: &str, word: &str| {
        format!(
            "const row = document.querySelector('#board-rows .row[data-case-id=\"{id}\"]'); \
             const due = row && row.querySelector('.badge.s-{state}') && row.querySelector('.due').textContent; \
             return due && due.includes('{word}') && due"
        )
    };
    let sewer_due =
        until(&browser, "the accepted sewer's countdown", &due("due-sewer", "accepted", "due in"), vec![]).await;
    // 72 hours less the moments since it was accepted: 3d 0h within the first second, then 2d 23h.
    let sewer_due = sewer_due.as_str().expect("text");
    assert!(["due in 3d 0h", "due in 2d 23h"].contains(&sewer_due), "{sewer_due}");
    let lights_due =
        until(&browser, "the street light's countdown", &due("due-lights", "routed", "due in"), vec![]).await;
    let lights_due = lights_due.as_str().expect("text");
    assert!(lights_due.starts_with("due in 3:59:") && lights_due.len() == "due in 3:59:00".len(), "{lights_due}");

    browser.find(Locator::Id("lang")).await.expect("language button").click().await.expect("switch");
    let sewer_due = until(&browser, "the countdown in Chinese", &due("due-sewer", "accepted", "剩余"), vec![]).await;
    let sewer_due = sewer_due.as_str().expect("text");
    assert!(["剩余 3天0时", "剩余 2天23时"].contains(&sewer_due), "{sewer_due}");
    browser.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_with_a_thousand_live_cases() {
    const N: usize = 1000;
    let setup = Setup::start().await;
    let browser = setup.signed_in("profile", DISPATCHER).await;

    // Arriving live, one SSE event each, while the board scrolls: frame times meanwhile.
    browser
        .execute("window.linkbusConsole.measureFrames(8000).then((r) => { window.framesWhileArriving = r; })", vec![])
        .await
        .expect("start measuring");
    let started = std::time::Instant::now();
    let points = points(N);
    assert_eq!(points.len(), N);
    publish_many(&setup.bus, "load", &points).await;
    until(&browser, "every case", "return window.linkbusConsole.caseCount() === 1000", vec![]).await;
    let live_secs = started.elapsed().as_secs_f64();
    let frames_live = until(&browser, "the frame times", "return window.framesWhileArriving || null", vec![]).await;

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
        "console with {N} cases: published and shown live in {live_secs:.1} s; frames (ms) while they arrived \
         and the board scrolled: {frames_live}; reset of {N} applied in {} ms; frames (ms) while scrolling the board: {frames}; board rows in the \
         DOM: {rows}",
        stats["lastResetMs"]
    );
    std::fs::write(screenshot_path("console-1000.png"), browser.screenshot().await.expect("screenshot")).expect("save");
    browser.close().await.expect("close");
}

/// `n` points over central Beijing, row by row from the south-west, a grid of about 340 m by
/// 390 m cells (so no two cases are within the merge distance of each other).
fn beijing_points(n: usize) -> Vec<(f64, f64)> {
    const COLUMNS: usize = 100;
    (0..n).map(|k| (116.2 + (k % COLUMNS) as f64 * 0.004, 39.8 + (k / COLUMNS) as f64 * 0.0035)).collect()
}

/// What a page says of its load and the console's marks, ms from its navigation's start:
/// `{paint: {first-paint, first-contentful-paint}, navigation: {responseEnd, domContentLoaded,
/// load}, marks: {linkbus-sign-in, linkbus-map-drawn, linkbus-cases-drawn}}`.
const TIMINGS: &str = "const n = performance.getEntriesByType('navigation')[0]; \
    const by = (list) => Object.fromEntries(list.map((e) => [e.name, Math.round(e.startTime)])); \
    return { paint: by(performance.getEntriesByType('paint')), \
      navigation: { responseEnd: Math.round(n.responseEnd), domContentLoaded: Math.round(n.domContentLoadedEventEnd), \
        load: Math.round(n.loadEventEnd) }, \
      marks: by(performance.getEntriesByType('mark')) };";

/// The numbers of docs/console.md's "5,000 live cases in Beijing": `linkbus up` on Beijing with
/// 5,000 live cases; a Chromium with an empty cache signs in. Printed: first paint, the time from
/// signing in until the map (2,322 boundaries) and the cases are drawn, the bytes it transferred
/// (compressed) and the live stream's `reset` (compressed and not), the frame times while the
/// board scrolls and the map pans; then the same page loaded again, signed in by its cookie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run it by name"]
async fn console_with_five_thousand_live_cases_in_beijing() {
    use crate::console_delivery::{Browser, chromium_bytes, fetch, reset_cases};
    const N: usize = 5000;
    let bus = TestBus::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let beijing = linkbus_tests::repo_root().join("geo-data/beijing");
    let linkbus = Linkbus::start_in(&bus, dir.path(), free_port(), &beijing, "");
    let started = std::time::Instant::now();
    publish_many(&bus, "bj-load", &beijing_points(N)).await;
    // Every case routed and live: the stream's first event holds them all.
    let http = reqwest::Client::builder().timeout(WAIT).build().expect("client");
    let gzip = Browser { accept_encoding: Some("gzip"), cache: None };
    let deadline = std::time::Instant::now() + 10 * WAIT;
    let reset = loop {
        let events =
            fetch(&http, linkbus.base.trim_end_matches('/'), "/console/events", gzip).await.expect("the stream");
        if reset_cases(&events).len() == N {
            break events;
        }
        assert!(std::time::Instant::now() < deadline, "linkbus did not make {N} cases live");
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let live_secs = started.elapsed().as_secs_f64();

    let driver = Driver::start();
    let browser = driver.browser(&dir.path().join("profile")).await;
    sign_in(&browser, &linkbus.base, DISPATCHER).await;
    until(&browser, "every case", "return window.linkbusConsole.stats.lastResetCount === 5000", vec![]).await;
    until(&browser, "the cases drawn", "return performance.getEntriesByName('linkbus-cases-drawn').length > 0", vec![])
        .await;
    let cold = browser.execute(TIMINGS, vec![]).await.expect("timings");
    let (transferred, decoded, requests) = chromium_bytes(&browser).await;
    let stats = browser.execute("return window.linkbusConsole.stats", vec![]).await.expect("stats");
    let scrolling = browser
        .execute_async("window.linkbusConsole.measureFrames(5000).then(arguments[0])", vec![])
        .await
        .expect("frame times");
    let frames = browser
        .execute_async("window.linkbusConsole.measureFramesPanning(5000).then(arguments[0])", vec![])
        .await
        .expect("frame times");

    // The next morning: the same browser, signed in by its cookie, its cache warm.
    browser.goto("about:blank").await.expect("away");
    browser.goto(&linkbus.base).await.expect("the page again");
    until(
        &browser,
        "the cases drawn again",
        "return performance.getEntriesByName('linkbus-cases-drawn').length > 0 && window.linkbusConsole.stats.lastResetCount === 5000",
        vec![],
    )
    .await;
    let warm = browser.execute(TIMINGS, vec![]).await.expect("timings");
    let (transferred_again, _, requests_again) = chromium_bytes(&browser).await;
    eprintln!(
        "console with {N} live cases in Beijing (live after {live_secs:.0} s):\n\
         signing in, empty cache: {cold}\n  {transferred} bytes transferred in {requests} requests ({decoded} decoded), \
         besides the live stream's reset: {} bytes gzipped ({} characters); reset applied in {} ms\n\
         frames (ms) while the board scrolls: {scrolling}; while it scrolls and the map is dragged: {frames}\n\
         loaded again, signed in: {warm}\n  {transferred_again} bytes transferred in {requests_again} requests",
        reset.raw.len(),
        stats["lastResetChars"],
        stats["lastResetMs"],
    );
    std::fs::write(screenshot_path("console-beijing-5000.png"), browser.screenshot().await.expect("screenshot"))
        .expect("save");
    browser.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_sessions_are_signed_and_acting_needs_the_csrf_token() {
    const OPERATOR: &str = "k-console-operator-5d1f0a8c3e7b9264";
    const DEPARTMENT: &str = "k-console-dept-8a3c5e7f9b1d2460";
    let bus = TestBus::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let linkbus = Linkbus::start_with(
        &bus,
        dir.path(),
        port,
        &format!(
            "[[api.keys]]\nrole = \"operator\"\nid = \"olga\"\nsha256 = \"{}\"\n\
             [[api.keys]]\nrole = \"department\"\nid = \"dpw-ops-queue\"\nsha256 = \"{}\"\n\
             [console]\ntile_url = \"https://{{s}}.tiles.example.org/{{z}}/{{x}}/{{y}}.png\"\n\
             tile_attribution = \"© Example Tiles\"\n",
            linkbus_http::auth::hash_key(OPERATOR),
            linkbus_http::auth::hash_key(DEPARTMENT)
        ),
    );
    let base = linkbus.base.trim_end_matches('/').to_owned();
    let http = reqwest::Client::builder().timeout(WAIT).build().expect("client");
    let sign_in = |key: &str| {
        http.post(format!("{base}/console/session"))
            .header("content-type", "application/json")
            .body(json!({ "key": key }).to_string())
            .send()
    };
    let cookie_of = |response: &reqwest::Response| {
        let set = response.headers().get("set-cookie").expect("a cookie").to_str().expect("ASCII").to_owned();
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/"), "{set}");
        set.split(';').next().expect("name=value").to_owned()
    };

    // The page: no inline script, images only from here and the configured tile server.
    let page = http.get(format!("{base}/")).send().await.expect("answer");
    assert_eq!(page.status(), 200);
    let csp =
        page.headers().get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("img-src 'self' data: https://*.tiles.example.org;"),
        "{csp}"
    );
    assert_eq!(page.headers().get("x-frame-options").and_then(|v| v.to_str().ok()), Some("DENY"));
    let leaflet = http.get(format!("{base}/console/assets/vendor/leaflet/LICENSE")).send().await.expect("answer");
    assert!(leaflet.text().await.expect("text").contains("BSD 2-Clause"));
    assert_eq!(http.get(format!("{base}/console/assets/../src/main.rs")).send().await.expect("answer").status(), 404);

    // Department keys may not sign in; unknown keys neither; a form post is not a sign-in.
    assert_eq!(sign_in(DEPARTMENT).await.expect("answer").status(), 403);
    assert_eq!(sign_in("nope").await.expect("answer").status(), 401);
    let form = http
        .post(format!("{base}/console/session"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("key=x");
    assert_eq!(form.send().await.expect("answer").status(), 422);

    let response = sign_in(DISPATCHER).await.expect("answer");
    assert_eq!(response.status(), 200);
    let cookie = cookie_of(&response);
    let session: Value = response.bytes().await.map(|b| serde_json::from_slice(&b).expect("session")).expect("body");
    assert_eq!((session["role"].as_str(), session["id"].as_str()), (Some("dispatcher"), Some("dana")));
    let csrf = session["csrf"].as_str().expect("a CSRF token").to_owned();

    let event = case("session-1", SourceSystem::PublicService, "sewer_issues", -122.4194, 37.7599);
    publish_case(&bus.js, &event).await;
    let get = |path: &str, cookie: &str| http.get(format!("{base}{path}")).header("cookie", cookie).send();
    let deadline = tokio::time::Instant::now() + WAIT;
    while get("/api/cases/session-1", &cookie).await.expect("answer").status() != 200 {
        assert!(tokio::time::Instant::now() < deadline, "the case never opened");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The cookie reads the API and the console's own endpoints …
    let region: Value = get("/console/region", &cookie)
        .await
        .expect("answer")
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).expect("json"))
        .expect("body");
    assert_eq!(region["time_zone"], "America/Los_Angeles");
    assert_eq!(region["tile_url"], "https://{s}.tiles.example.org/{z}/{x}/{y}.png");
    let communities: Value = get("/console/region/communities", &cookie)
        .await
        .expect("answer")
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).expect("json"))
        .expect("body");
    assert_eq!(communities["features"].as_array().map(Vec::len), Some(41));
    let volunteers: Value = get("/console/volunteers", &cookie)
        .await
        .expect("answer")
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).expect("json"))
        .expect("body");
    assert!(volunteers["volunteers"].as_array().is_some_and(|v| !v.is_empty()));
    // … a forged or altered one does not.
    let forged = cookie.replace("dispatcher.", "dispatcher.00");
    assert_eq!(get("/api/cases/session-1", &forged).await.expect("answer").status(), 401);
    let flipped = if cookie.ends_with('0') { '1' } else { '0' };
    let tampered = format!("{}{flipped}", &cookie[..cookie.len() - 1]);
    assert_eq!(get("/console/events", &tampered).await.expect("answer").status(), 401);
    assert_eq!(get("/console/events", "").await.expect("answer").status(), 401);

    // Acting with the cookie needs the CSRF token of that session.
    let act = |csrf: Option<&str>| {
        let mut request = http
            .post(format!("{base}/api/cases/session-1/actions"))
            .header("cookie", &cookie)
            .header("content-type", "application/json")
            .body(r#"{"action": "close", "note": "by the console"}"#);
        if let Some(csrf) = csrf {
            request = request.header("x-linkbus-csrf", csrf);
        }
        request.send()
    };
    assert_eq!(act(None).await.expect("answer").status(), 403);
    assert_eq!(act(Some(&"0".repeat(64))).await.expect("answer").status(), 403);
    let done = act(Some(&csrf)).await.expect("answer");
    assert_eq!(done.status(), 200);
    let record: Value = done.bytes().await.map(|b| serde_json::from_slice(&b).expect("record")).expect("body");
    assert_eq!(record["state"], "closed");
    let last = record["timeline"].as_array().and_then(|t| t.last()).expect("an entry");
    assert_eq!((last["actor"]["kind"].as_str(), last["actor"]["id"].as_str()), (Some("dispatcher"), Some("dana")));

    // An operator watches but may not act.
    let response = sign_in(OPERATOR).await.expect("answer");
    let operator_cookie = cookie_of(&response);
    let operator: Value = response.bytes().await.map(|b| serde_json::from_slice(&b).expect("session")).expect("body");
    let refused = http
        .post(format!("{base}/api/cases/session-1/actions"))
        .header("cookie", &operator_cookie)
        .header("x-linkbus-csrf", operator["csrf"].as_str().expect("csrf"))
        .header("content-type", "application/json")
        .body(r#"{"action": "acknowledge_escalation"}"#)
        .send()
        .await
        .expect("answer");
    assert_eq!(refused.status(), 403);

    let metrics = http.get(format!("{base}/metrics")).send().await.expect("answer").text().await.expect("text");
    assert!(metrics.contains("linkbus_console_sign_ins_total{outcome=\"ok\"} 2"), "{metrics}");
    assert!(metrics.contains("linkbus_console_sign_ins_total{outcome=\"refused\"} 2"), "{metrics}");
    assert!(metrics.contains("linkbus_console_event_streams 0"), "{metrics}");

    // Signing out takes the session's CSRF token (no other page signs a dispatcher out), ends the
    // session on the server and clears the cookie.
    let sign_out = |csrf: Option<&str>| {
        let mut request = http.delete(format!("{base}/console/session")).header("cookie", &cookie);
        if let Some(csrf) = csrf {
            request = request.header("x-linkbus-csrf", csrf);
        }
        request.send()
    };
    assert_eq!(sign_out(None).await.expect("answer").status(), 403);
    let out = sign_out(Some(&csrf)).await.expect("answer");
    assert_eq!(out.status(), 204);
    assert!(out.headers().get("set-cookie").and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("Max-Age=0")));
    assert_eq!(get("/api/cases/session-1", &cookie).await.expect("answer").status(), 401);
}

/// The session secret as another process on the machine could read it from NATS (the finding of
/// issue 16, section 2), and a dispatcher's cookie signed with it as `linkbus` signs one, issued
/// at `issued` (unix seconds) in `generation`.
async fn forge_cookie(bus: &TestBus, key: &str, id: &str, issued: i64, generation: u64) -> String {
    use hmac::Mac as _;
    let bucket = bus.js.get_key_value("linkbus_console").await.expect("the console's bucket");
    let secret = bucket.get("session-secret").await.expect("read").expect("a secret");
    let holder = format!("dispatcher.{}", hex::encode(id));
    let signed =
        format!("linkbus-console-session-2|{holder}|{issued}|{generation}|{}", linkbus_http::auth::hash_key(key));
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&secret).expect("any key");
    mac.update(signed.as_bytes());
    format!("linkbus_session={holder}.{issued}.{generation}.{}", hex::encode(mac.finalize().into_bytes()))
}

/// The same forged in the cookie format before issue 16, whose expiry was the cookie's own:
/// `expires=4102444800` (2100) was accepted.
async fn forge_old_cookie(bus: &TestBus, key: &str, id: &str, expires: i64) -> String {
    use hmac::Mac as _;
    let bucket = bus.js.get_key_value("linkbus_console").await.expect("the console's bucket");
    let secret = bucket.get("session-secret").await.expect("read").expect("a secret");
    let id_hex = hex::encode(id);
    let signed = format!("linkbus-console-session|dispatcher|{id_hex}|{expires}|{}", linkbus_http::auth::hash_key(key));
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&secret).expect("any key");
    mac.update(signed.as_bytes());
    format!("linkbus_session=dispatcher.{id_hex}.{expires}.{}", hex::encode(mac.finalize().into_bytes()))
}

/// Issue 16: a session's expiry is the server's, not the cookie's (a cookie forged with the
/// secret to end in 2100 is refused); signing out on one replica ends the session on every
/// replica (its open event stream too), and it stays ended; sign-in is rate-limited per client
/// address and per key tried: the 61st attempt in a minute is 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_sessions_end_on_the_server_and_sign_in_is_rate_limited() {
    let bus = TestBus::start().await;
    let (dir_a, dir_b) = (tempfile::tempdir().expect("temp dir"), tempfile::tempdir().expect("temp dir"));
    let (a, b) = (Linkbus::start(&bus, dir_a.path(), free_port()), Linkbus::start(&bus, dir_b.path(), free_port()));
    let http = reqwest::Client::builder().timeout(WAIT).build().expect("client");
    let sign_in = |base: &str, key: &str| {
        http.post(format!("{base}console/session"))
            .header("content-type", "application/json")
            .body(json!({ "key": key }).to_string())
            .send()
    };
    let status = |base: &str, cookie: &str| {
        let request = http.get(format!("{base}api/cases")).header("cookie", cookie).send();
        async move { request.await.expect("answer").status().as_u16() }
    };

    // Forged with the secret: an expiry of 2100 in the old format, an issue time in 2100 in the
    // new one. Neither is a session; one issued now is (the secret must stay secret).
    let old = forge_old_cookie(&bus, DISPATCHER, "dana", 4_102_444_800).await;
    assert_eq!(status(&a.base, &old).await, 401, "a cookie's own expiry is not taken");
    let far = forge_cookie(&bus, DISPATCHER, "dana", 4_102_444_800, 0).await;
    assert_eq!(status(&a.base, &far).await, 401, "a session issued in the future is forged");
    let now = jiff::Timestamp::now().as_second();
    let stale = forge_cookie(&bus, DISPATCHER, "dana", now - 12 * 3600, 0).await;
    assert_eq!(status(&a.base, &stale).await, 401, "session_hours after it was issued, it is over");
    let current = forge_cookie(&bus, DISPATCHER, "dana", now, 0).await;
    assert_eq!(status(&a.base, &current).await, 200);

    // Signed in on A, the session works on B …
    let response = sign_in(&a.base, DISPATCHER).await.expect("answer");
    assert_eq!(response.status(), 200);
    let cookie =
        response.headers()["set-cookie"].to_str().expect("ASCII").split(';').next().expect("a cookie").to_owned();
    let session: Value = serde_json::from_slice(&response.bytes().await.expect("body")).expect("a session");
    let expires: jiff::Timestamp = session["expires_at"].as_str().expect("an expiry").parse().expect("a time");
    assert!((expires.as_second() - now - 12 * 3600).abs() < 60, "session_hours from now: {expires}");
    assert_eq!(status(&b.base, &cookie).await, 200);
    let mut stream =
        http.get(format!("{}console/events", b.base)).header("cookie", &cookie).send().await.expect("a stream");
    assert_eq!(stream.status(), 200);
    assert!(stream.chunk().await.expect("read").is_some_and(|c| c.starts_with(b"retry") || c.starts_with(b"event")));

    // … until it signs out on A: then on neither, and its event stream on B ends.
    let out = http
        .delete(format!("{}console/session", a.base))
        .header("cookie", &cookie)
        .header("x-linkbus-csrf", session["csrf"].as_str().expect("csrf"))
        .send()
        .await
        .expect("answer");
    assert_eq!(out.status(), 204);
    assert_eq!(status(&a.base, &cookie).await, 401, "signed out here");
    let deadline = tokio::time::Instant::now() + WAIT;
    while status(&b.base, &cookie).await != 401 {
        assert!(tokio::time::Instant::now() < deadline, "the other replica still takes the signed-out session");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ended = tokio::time::timeout(WAIT, async { while stream.chunk().await.expect("read").is_some() {} });
    ended.await.expect("the event stream ends with its session");
    // Every session of that dispatcher ended with it (a forged one too); signing in again works.
    assert_eq!(status(&a.base, &current).await, 401);
    let again = sign_in(&b.base, DISPATCHER).await.expect("answer");
    assert_eq!(again.status(), 200);
    let renewed =
        again.headers()["set-cookie"].to_str().expect("ASCII").split(';').next().expect("a cookie").to_owned();
    assert_eq!(status(&a.base, &renewed).await, 200);
    // A restarted replica remembers the sign-out.
    drop(a);
    let a = Linkbus::start(&bus, dir_a.path(), free_port());
    assert_eq!(status(&a.base, &cookie).await, 401, "still signed out after a restart");
    assert_eq!(status(&a.base, &renewed).await, 200);

    // 60 sign-in attempts a minute from one address, wrong keys, then 429 …
    let from = |last: u8| {
        reqwest::Client::builder()
            .timeout(WAIT)
            .local_address(std::net::IpAddr::from([127, 0, 0, last]))
            .build()
            .expect("client")
    };
    let attempt = |client: &reqwest::Client, key: &str| {
        let request = client
            .post(format!("{}console/session", b.base))
            .header("content-type", "application/json")
            .body(json!({ "key": key }).to_string())
            .send();
        async move { request.await.expect("answer").status().as_u16() }
    };
    // A token bucket: 60 at once, then one more each second. So the first 429 comes after 60
    // attempts, plus at most one for each second the attempts took.
    let allowed_before_429 = |attempts: Vec<(reqwest::Client, String)>| {
        let attempt = &attempt;
        async move {
            let started = std::time::Instant::now();
            for (n, (client, key)) in attempts.iter().enumerate() {
                match attempt(client, key).await {
                    401 => {}
                    429 => {
                        let refill = started.elapsed().as_secs_f64().ceil() as usize;
                        assert!((60..=60 + refill).contains(&n), "{n} attempts before 429 in {refill} s");
                        return;
                    }
                    other => panic!("attempt {}: {other}", n + 1),
                }
            }
            panic!("no attempt was refused");
        }
    };
    let guesser = from(2);
    allowed_before_429((0..200).map(|n| (guesser.clone(), format!("guess-{n}"))).collect()).await;
    // … and with one key, from any addresses.
    let (three, four) = (from(3), from(4));
    allowed_before_429(
        (0..200)
            .map(|n| (if n % 2 == 0 { three.clone() } else { four.clone() }, "the-same-guess".to_owned()))
            .collect(),
    )
    .await;
    assert_eq!(attempt(&from(5), DISPATCHER).await, 200, "another key from another address");
    let metrics = http.get(format!("{}metrics", b.base)).send().await.expect("answer").text().await.expect("text");
    assert!(metrics.contains("linkbus_console_sign_ins_total{outcome=\"rate_limited\"} 2"), "{metrics}");
}
