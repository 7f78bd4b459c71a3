//! Urgent things announce themselves, in a real headless Chromium against a real `linkbus up` (the
//! harness of `console.rs`). Notifications are really granted: WebDriver's permissions extension
//! (`POST /session/{id}/permissions`, which chromedriver implements) sets `notifications` to
//! `granted` for the console's origin, and the page makes real `Notification`s, which headless
//! Chromium shows (their `show` event fires). To see what the page made, the test wraps the real
//! `Notification` and `AudioContext` in subclasses that record each notification (title, body,
//! shown) and each oscillator started, and otherwise do what the real ones do. Nothing here waits
//! for a time to pass: each check waits for the page to show a state, then asserts what it did.
//!
//! A new P1 is announced (notification with category and address, title, counter, pinned strip,
//! beeps), one there before the page is not, a P3 is not and is drawn under a P1 at the same
//! place, a source's update of a P1 is announced once; an escalated P2 is announced (in Chinese)
//! and shows the time since its report; a P1 that came while the page reconnected is announced
//! once after, and not the one announced before.

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, Locator};
use linkbus_tests::{TestBus, WAIT, case, department_action, publish_case};
use linkbus_wire::{Action, SourceSystem};
use serde_json::{Value, json};

use crate::console::{DISPATCHER, Driver, Linkbus, Setup, find_case, free_port, shows_case, until};

/// `[adapters.cad]` maps a CAD structure fire to the region's `fire`.
const CAD: &str = "[adapters.cad.categories]\nmap = { \"STRUCTURE FIRE\" = \"fire\" }\n";

/// WebDriver's permissions extension: `notifications` granted to the page's origin.
#[derive(Debug)]
struct GrantNotifications;

impl WebDriverCompatibleCommand for GrantNotifications {
    fn endpoint(
        &self,
        base: &reqwest::Url,
        session: Option<&str>,
    ) -> Result<reqwest::Url, <reqwest::Url as std::str::FromStr>::Err> {
        base.join(&format!("session/{}/permissions", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &reqwest::Url) -> (reqwest::Method, Option<String>) {
        let body = json!({"descriptor": {"name": "notifications"}, "state": "granted"});
        (reqwest::Method::POST, Some(body.to_string()))
    }
}

/// Records what the page makes of the real APIs: each notification in `window.linkbusNotes`
/// (`{title, body, tag, shown}`) and each oscillator started in `window.linkbusSounds` (`{hz}`).
const RECORD: &str = "window.linkbusNotes = []; window.linkbusSounds = []; \
    const RealNotification = window.Notification; \
    window.Notification = class extends RealNotification { \
      constructor(title, options) { super(title, options); \
        const note = { title, body: options?.body ?? '', tag: options?.tag ?? '', shown: false }; \
        window.linkbusNotes.push(note); this.addEventListener('show', () => { note.shown = true; }); } }; \
    const RealAudio = window.AudioContext; \
    window.AudioContext = class extends RealAudio { \
      createOscillator() { const osc = super.createOscillator(); const start = osc.start.bind(osc); \
        osc.start = (...args) => { window.linkbusSounds.push({ hz: osc.frequency.value }); return start(...args); }; \
        return osc; } };";

/// What the page has announced and shows as urgent.
const SEEN: &str = "const counts = {}; \
    document.querySelectorAll('#urgent [data-count]').forEach((el) => { counts[el.dataset.count] = Number(el.dataset.n); }); \
    return { notes: window.linkbusNotes, sounds: window.linkbusSounds.length, title: document.title, counts, \
      counter: document.getElementById('urgent').textContent, \
      pinned: [...document.querySelectorAll('#pinned .pin')].map((p) => p.dataset.caseId), \
      alerts: window.linkbusConsole.alerts().map((a) => [a.kind, a.id]), errors: window.linkbusErrors };";

/// The colour a dispatcher sees at case `id`'s dot: the topmost canvas pixel there that is not
/// transparent (`[r, g, b, a]`), or null.
pub(crate) const PIXEL: &str = "const at = window.linkbusConsole.dotPoint(arguments[0]); if (!at) return null; \
    for (const el of document.elementsFromPoint(at.x, at.y)) { \
      if (el.tagName !== 'CANVAS') continue; \
      const box = el.getBoundingClientRect(); \
      const x = Math.floor((at.x - box.left) * el.width / box.width), y = Math.floor((at.y - box.top) * el.height / box.height); \
      const px = el.getContext('2d').getImageData(x, y, 1, 1).data; \
      if (px[3] > 0) return [...px]; } \
    return null;";

async fn seen(browser: &Client) -> Value {
    browser.execute(SEEN, vec![]).await.expect("what the page announced")
}

/// Waits until the page has made `n` notifications and the last is shown; then what it announced.
async fn notified(browser: &Client, n: usize) -> Value {
    let script =
        "const notes = window.linkbusNotes; return notes.length === arguments[0] && notes[notes.length - 1].shown";
    until(browser, &format!("notification {n} shown"), script, vec![json!(n)]).await;
    seen(browser).await
}

/// A console whose notifications are granted, signed in, recording notifications and sound, with
/// alerts turned on by a click (a user gesture, as the browser requires for sound).
async fn alerting(setup: &Setup) -> Client {
    let browser = setup.signed_in("profile", DISPATCHER).await;
    browser.issue_cmd(GrantNotifications).await.expect("notifications granted");
    assert_eq!(browser.execute("return Notification.permission", vec![]).await.expect("permission"), "granted");
    browser.execute(RECORD, vec![]).await.expect("record notifications and sound");
    let button = browser.find(Locator::Id("alerts")).await.expect("an alerts button");
    assert_eq!(button.text().await.expect("text"), "Enable alerts");
    button.click().await.expect("enable alerts");
    until(&browser, "alerts on", "return document.getElementById('alerts').textContent === 'Alerts on'", vec![]).await;
    browser
}

/// Sends a CAD message over NATS and returns the adapter's reply.
async fn cad(bus: &TestBus, message: Value) -> Value {
    let reply = tokio::time::timeout(WAIT, bus.client.request("adapter.cad", message.to_string().into()))
        .await
        .expect("a reply in time")
        .expect("request");
    serde_json::from_slice(&reply.payload).expect("JSON")
}

/// Waits until the page's copy of case `id` is in the state `what`.
async fn page_case(browser: &Client, id: &str, what: &str) {
    until(
        browser,
        what,
        "return window.linkbusConsole.state(arguments[0]) === arguments[1]",
        vec![json!(id), json!(what)],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_p1_alerts_once_a_p3_does_not_and_p1_is_drawn_on_top() {
    let bus = TestBus::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let linkbus = Linkbus::start_with(&bus, dir.path(), free_port(), CAD);
    let setup = Setup { driver: Driver::start(), linkbus, dir, bus };
    let (bus, linkbus) = (&setup.bus, &setup.linkbus);

    // A priority 1 case that was there before the page: counted, not announced.
    let mut before = case("alert-before", SourceSystem::Emergency, "medical_emergency", -122.4862, 37.7694);
    before.data.priority = 1;
    publish_case(&bus.js, &before).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while find_case(linkbus, "alert-before").await.is_none() {
        assert!(tokio::time::Instant::now() < deadline, "the case before the page was never recorded");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let browser = alerting(&setup).await;
    shows_case(&browser, "alert-before").await;
    until(&browser, "the P1 count", "return document.title === '(1 P1) Dispatcher console'", vec![]).await;
    let start = seen(&browser).await;
    assert_eq!(start["notes"], json!([]), "a case already there is not announced: {start}");
    assert_eq!(start["sounds"], 1, "only the chime of turning alerts on: {start}");
    assert_eq!(start["counts"]["p1"], 1, "{start}");
    assert_eq!(start["pinned"], json!(["alert-before"]), "{start}");

    // A structure fire from the CAD, priority 1: a notification naming what and where, the title,
    // the counter, the pinned strip, and three beeps.
    let reply = cad(
        bus,
        json!({"kind": "new", "incident_id": "F26-9", "type": "STRUCTURE FIRE", "priority": 1,
               "lon": -122.4194, "lat": 37.7599, "address": "2450 Mission St"}),
    )
    .await;
    let fire = reply["cases"][0]["case_id"].as_str().expect("a case id").to_owned();
    shows_case(&browser, &fire).await;
    let after = notified(&browser, 1).await;
    let note = &after["notes"][0];
    assert_eq!(note["title"], "New priority 1 case", "{after}");
    let body = note["body"].as_str().expect("a body");
    assert!(body.starts_with("Fire") && body.ends_with(" · 2450 Mission St"), "category and address: {body}");
    assert_eq!(note["tag"], format!("linkbus-{fire}"));
    assert_eq!(after["title"], "(2 P1) Dispatcher console", "{after}");
    assert_eq!(after["counts"]["p1"], 2, "{after}");
    assert!(after["counter"].as_str().expect("text").starts_with("P1 2"), "{after}");
    assert_eq!(after["sounds"], 1 + 3, "three beeps for a priority 1: {after}");
    assert!(after["pinned"].as_array().expect("pins").contains(&json!(fire)), "{after}");
    assert_eq!(after["alerts"], json!([["new", fire]]), "{after}");

    // A priority 3 case at the same place: on the board and the map, announced by nothing, and
    // drawn under the fire although it came later.
    let mut sewer = case("alert-sewer", SourceSystem::PublicService, "sewer_issues", -122.4194, 37.7599);
    sewer.data.priority = 3;
    publish_case(&bus.js, &sewer).await;
    shows_case(&browser, "alert-sewer").await;
    let quiet = seen(&browser).await;
    assert_eq!((quiet["notes"].as_array().map(Vec::len), quiet["sounds"].clone()), (Some(1), json!(4)), "{quiet}");
    assert_eq!(quiet["counts"]["p1"], 2, "{quiet}");
    let pixel = browser.execute(PIXEL, vec![json!("alert-sewer")]).await.expect("the pixel");
    let rgba: Vec<u64> = serde_json::from_value(pixel.clone()).unwrap_or_else(|_| panic!("no dot drawn: {pixel}"));
    // The P1 red (#d7263d) over the P3 yellow (#e2b100), not the yellow over the red.
    assert!(rgba[0] > 180 && rgba[1] < 100, "the fire's red is on top, not the sewer's yellow: {rgba:?}");

    // The CAD's "2nd alarm": announced once, with what changed.
    let reply = cad(bus, json!({"kind": "update", "incident_id": "F26-9", "narrative": "2nd alarm"})).await;
    assert_eq!(reply["cases"][0]["outcome"], "updated", "{reply}");
    let updated = notified(&browser, 2).await;
    assert_eq!(updated["notes"][1]["title"], "Priority 1 case updated by its source", "{updated}");
    assert!(updated["notes"][1]["body"].as_str().expect("body").ends_with("\nCAD F26-9: 2nd alarm"), "{updated}");
    assert_eq!(updated["sounds"], 4 + 3, "{updated}");
    // The fire station accepts: the same update arrives again with the case, and is not announced
    // again.
    let record = find_case(linkbus, &fire).await.expect("the fire");
    let station = record["departments"][0].as_str().expect("a department").to_owned();
    let accepted = department_action(&bus.client, &station, &fire, Action::Accept {}).await;
    assert!(accepted.ok, "{accepted:?}");
    page_case(&browser, &fire, "accepted").await;
    let once = seen(&browser).await;
    assert_eq!((once["notes"].as_array().map(Vec::len), once["sounds"].clone()), (Some(2), json!(7)), "{once}");
    assert_eq!(once["alerts"], json!([["new", fire], ["update", fire]]), "{once}");

    let png = browser.screenshot().await.expect("screenshot");
    let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-alerts.png");
    std::fs::write(&path, &png).expect("save the screenshot");
    eprintln!("screenshot: {}", path.display());

    // In Chinese: the title and the counter.
    browser.find(Locator::Id("lang")).await.expect("language button").click().await.expect("switch");
    until(&browser, "the Chinese title", "return document.title === '(2 P1) 调度台'", vec![]).await;
    let zh = seen(&browser).await;
    assert!(zh["counter"].as_str().expect("text").contains("未签收"), "{zh}");
    assert_eq!(zh["errors"], json!([]), "the page reported errors");
    browser.close().await.expect("close the browser");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escalated_p2_alerts_and_shows_the_time_since_it_was_reported() {
    let setup = Setup::start().await;
    let (bus, linkbus) = (&setup.bus, &setup.linkbus);
    let browser = alerting(&setup).await;
    browser.find(Locator::Id("lang")).await.expect("language button").click().await.expect("switch");
    until(
        &browser,
        "the Chinese button",
        "return document.getElementById('alerts').textContent === '提醒已开启'",
        vec![],
    )
    .await;

    // Priority 2, and every department rejects it: new, then escalated to the dispatchers.
    let mut event = case("alert-esc", SourceSystem::PublicService, "sewer_issues", -122.4312, 37.7694);
    event.data.priority = 2;
    event.data.address = Some("300 Haight St".into());
    publish_case(&bus.js, &event).await;
    shows_case(&browser, "alert-esc").await;
    notified(&browser, 1).await;
    for _ in 0..5 {
        let record = find_case(linkbus, "alert-esc").await.expect("the case");
        if record["state"] == "rejected" {
            break;
        }
        let responsible =
            record["departments"].as_array().and_then(|d| d.last()).and_then(Value::as_str).expect("a department");
        let reply =
            department_action(&bus.client, responsible, "alert-esc", Action::Reject { reason: "not ours".into() })
                .await;
        assert!(reply.ok, "{reply:?}");
    }
    page_case(&browser, "alert-esc", "rejected").await;
    let shown = notified(&browser, 2).await;
    assert_eq!(shown["notes"][0]["title"], "新的优先级 2 事件", "{shown}");
    assert_eq!(shown["notes"][1]["title"], "优先级 2 事件已升级", "{shown}");
    assert!(shown["notes"][1]["body"].as_str().expect("body").ends_with(" · 300 Haight St"), "{shown}");
    assert_eq!(shown["sounds"], 1 + 2 + 2, "the chime, then two beeps each for priority 2: {shown}");
    assert_eq!(shown["alerts"], json!([["new", "alert-esc"], ["escalated", "alert-esc"]]), "{shown}");
    assert_eq!((shown["counts"]["escalated"].clone(), shown["counts"]["p1"].clone()), (json!(1), json!(0)), "{shown}");
    assert_eq!(shown["title"], "调度台", "no P1, no count in the title");

    // At the top of the ladder no deadline runs: the row says how long ago it was reported.
    let due = until(
        &browser,
        "the time since the report",
        "const due = document.querySelector('#board-rows .row[data-case-id=\"alert-esc\"] .due'); \
         return due !== null && due.textContent.startsWith('已上报 ') && due.textContent",
        vec![],
    )
    .await;
    assert!(due.as_str().is_some_and(|d| d.contains(':')), "a span such as 已上报 0:03: {due}");
    assert_eq!(shown["errors"], json!([]), "the page reported errors");
    browser.close().await.expect("close the browser");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_p1_that_came_while_reconnecting_alerts_once_after() {
    let bus = TestBus::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let setup = Setup { driver: Driver::start(), linkbus: Linkbus::start(&bus, dir.path(), port), dir, bus };
    let browser = alerting(&setup).await;
    let Setup { driver: _driver, linkbus, dir, bus } = setup;
    let mut live = case("alert-live", SourceSystem::Emergency, "fire", -122.4194, 37.7599);
    live.data.priority = 1;
    publish_case(&bus.js, &live).await;
    shows_case(&browser, "alert-live").await;
    assert_eq!(notified(&browser, 1).await["alerts"], json!([["new", "alert-live"]]));

    drop(linkbus); // SIGTERM: the event stream ends; the page reconnects by itself.
    until(&browser, "the page to notice", "return document.getElementById('live').classList.contains('off')", vec![])
        .await;
    let mut meanwhile = case("alert-meanwhile", SourceSystem::Emergency, "medical_emergency", -122.4862, 37.7694);
    meanwhile.data.priority = 1;
    publish_case(&bus.js, &meanwhile).await;
    let _linkbus = Linkbus::start(&bus, dir.path(), port);

    // The `reset` after reconnecting holds both: only the one the page had not seen alerts.
    shows_case(&browser, "alert-meanwhile").await;
    let after = notified(&browser, 2).await;
    assert_eq!(after["alerts"], json!([["new", "alert-live"], ["new", "alert-meanwhile"]]), "{after}");
    assert_eq!(
        (after["sounds"].clone(), after["title"].clone()),
        (json!(1 + 3 + 3), json!("(2 P1) Dispatcher console"))
    );
    assert_eq!(after["errors"], json!([]), "the page reported errors");
    browser.close().await.expect("close the browser");
}
