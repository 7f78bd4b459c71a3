//! Chinese throughout: a Beijing case opened in the console with the page in Chinese reads in
//! Chinese — its routing explanation (rendered by the API from the decision's reasons), the rules
//! and departments that chose it, its category, its community and linkbus's own notes on its
//! timeline (from their system notes) — in a real headless Chromium
//! against a real `linkbus up` on the Beijing region (the harness of `console_map.rs`). The API
//! answers the same case in the language `Accept-Language` asks for, and without it the English
//! sentences stored with the decision. `UPDATE_SCREENSHOT=1` writes the screenshot of the opened
//! case to `docs/console.png`.

use linkbus_tests::{WAIT, case, publish_case};
use linkbus_wire::SourceSystem;
use serde_json::Value;

use fantoccini::Locator;

use crate::console::{DISPATCHER, shows_case, until};
use crate::console_map::Beijing;
use crate::console_shapes::open;

/// 多福巷社区居委会 (东华门街道, 东城区), at its registry centre.
const DUOFUXIANG: (f64, f64) = (116.406901, 39.921554);

/// The words of two or more Latin letters in `text`: what an English sentence leaves behind.
fn latin_words(text: &str) -> Vec<&str> {
    text.split(|c: char| !c.is_ascii_alphabetic()).filter(|w| w.len() >= 2).collect()
}

/// `GET /api/cases/{id}` with `Accept-Language: lang` (none when empty): its `Content-Language`
/// and the decision's explanation.
async fn explanation(base: &str, case_id: &str, lang: &str) -> (Option<String>, Vec<String>) {
    let http = reqwest::Client::builder().timeout(WAIT).build().expect("client");
    let mut request = http.get(format!("{base}api/cases/{case_id}")).bearer_auth(DISPATCHER);
    if !lang.is_empty() {
        request = request.header("accept-language", lang);
    }
    let response = request.send().await.expect("an answer");
    assert_eq!(response.status(), 200);
    let language = response.headers().get("content-language").map(|v| v.to_str().expect("ascii").to_owned());
    let record: Value = serde_json::from_slice(&response.bytes().await.expect("body")).expect("a record");
    let lines = record["decision"]["explanation"].as_array().expect("explanation").iter();
    (language, lines.map(|l| l.as_str().expect("a line").to_owned()).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_beijing_case_reads_in_chinese() {
    let beijing = Beijing::start().await;
    let (lon, lat) = DUOFUXIANG;
    // A cardiac arrest reported at priority 3: raised by the life-threatening rule, offered to
    // volunteers who know CPR, sent to the district's health commission.
    let mut arrest = case("bj-arrest", SourceSystem::Emergency, "cardiac_arrest", lon, lat);
    arrest.data.address = Some("东城区多福巷 12 号".into());
    arrest.data.description = Some("老人在家中突然倒地，呼之不应".into());
    // A street defect: the 街道 office's, a sub-district rule.
    let defect = case("bj-defect", SourceSystem::PublicService, "street_defects", lon + 0.001, lat);
    // A category Beijing does not know: the 12345 desk takes it.
    let unknown = case("bj-unknown", SourceSystem::PublicService, "unlisted_hazard", lon, lat + 0.001);
    // Far outside the city: no community, the desk again.
    let outside = case("bj-outside", SourceSystem::PublicService, "streetlights", 118.9, 41.9);
    for event in [&arrest, &defect, &unknown, &outside] {
        publish_case(&beijing.bus.js, event).await;
    }
    // Around them, the day's other cases of the 311 vocabulary, for the screenshot.
    let around =
        ["noise_report", "abandoned_vehicle", "streetlights", "tree_maintenance", "sewer_issues", "elderly_assistance"];
    for n in 0..24 {
        let (dx, dy) = (f64::from(n % 6) * 0.012 - 0.03, f64::from(n / 6) * 0.01 - 0.015);
        let event = case(&format!("bj-{n}"), SourceSystem::PublicService, around[n as usize % 6], lon + dx, lat + dy);
        publish_case(&beijing.bus.js, &event).await;
    }
    for id in ["bj-arrest", "bj-defect", "bj-unknown", "bj-outside"] {
        shows_case(&beijing.browser, id).await;
        let shown = open(&beijing.browser, id).await;
        assert!(shown.get("error").is_none(), "case {id} does not open: {shown}");
        // An unknown category has no name to show but its id.
        let unnamed = if id == "bj-unknown" { "unlisted_hazard" } else { "" };
        for part in ["explanation", "rules", "fallbacks", "community"] {
            let text = shown[part].as_str().unwrap_or_default().replace(unnamed, "");
            assert!(latin_words(&text).is_empty(), "case {id}'s {part} is not all Chinese: {text}");
        }
        assert!(!shown["explanation"].as_str().unwrap_or_default().is_empty(), "case {id}: no explanation");
        // The timeline: linkbus's own notes in Chinese, departments by name; only the actor
        // `linkbus` and the cases' ids are Latin.
        let timeline = beijing
            .browser
            .execute("return document.querySelector('#detail .timeline').textContent", vec![])
            .await
            .expect("the timeline");
        let timeline = timeline.as_str().unwrap_or_default();
        let ids = ["linkbus", "bj", "arrest", "defect", "unknown", "outside"];
        let english: Vec<&str> = latin_words(timeline).into_iter().filter(|w| !ids.contains(w)).collect();
        assert!(english.is_empty(), "case {id}'s timeline is not all Chinese: {timeline}");
        assert!(timeline.contains("派至"), "case {id}'s routing note: {timeline}");
        let head = beijing
            .browser
            .execute("return document.getElementById('detail-head').textContent", vec![])
            .await
            .expect("the detail's head");
        let head = head.as_str().unwrap_or_default();
        assert!(!head.replace(unnamed, "").contains('_'), "case {id}'s category is shown by its id: {head}");
    }

    // The screenshot of the README: the cardiac arrest opened, in Chinese.
    let shown = open(&beijing.browser, "bj-arrest").await;
    assert!(shown.get("error").is_none(), "{shown}");
    let png = beijing.browser.screenshot().await.expect("a screenshot");
    std::fs::write(std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-beijing.png"), &png)
        .expect("save the screenshot");
    if std::env::var_os("UPDATE_SCREENSHOT").is_some() {
        std::fs::write(linkbus_tests::repo_root().join("docs/console.png"), &png).expect("write docs/console.png");
    }

    // The board names departments, Leaflet's buttons speak Chinese, and switching the page to
    // English brings the opened case's explanation in English.
    let read = |script: &'static str| {
        let browser = beijing.browser.clone();
        async move { browser.execute(script, vec![]).await.expect("the page reads") }
    };
    let row =
        read("return document.querySelector('#board-rows .row[data-case-id=\"bj-arrest\"] .sub').textContent").await;
    assert!(row.as_str().unwrap_or_default().contains("东城区卫生健康委员会"), "{row}");
    let zoom = read("return document.querySelector('.leaflet-control-zoom-in').title").await;
    assert_eq!(zoom, "放大");
    beijing.browser.find(Locator::Id("lang")).await.expect("the language button").click().await.expect("English");
    until(
        &beijing.browser,
        "the explanation in English",
        "const e = document.getElementById('detail-explanation'); return e && e.textContent.includes('is inside community') && e.textContent;",
        vec![],
    )
    .await;

    // The API: Chinese when asked, English with the region's names when asked, and the stored
    // English sentences when nothing is asked.
    let base = &beijing.linkbus.base;
    let (language, zh) = explanation(base, "bj-arrest", "zh-CN,zh;q=0.9").await;
    assert_eq!(language.as_deref(), Some("zh-CN"));
    assert!(zh.iter().any(|l| l.contains("优先级由 3 级提升为 1 级")), "{zh:?}");
    assert!(zh.iter().all(|l| latin_words(l).is_empty()), "{zh:?}");
    let (language, en) = explanation(base, "bj-arrest", "en-US,en;q=0.9").await;
    assert_eq!(language.as_deref(), Some("en"));
    assert!(en.iter().any(|l| l.contains("category Cardiac arrest")), "{en:?}");
    let (language, stored) = explanation(base, "bj-arrest", "").await;
    assert_eq!(language, None);
    assert!(stored.iter().any(|l| l.contains("category cardiac_arrest")), "{stored:?}");
}

/// Types `text` into the field `id` (emptied first).
async fn type_into(browser: &fantoccini::Client, id: &str, text: &str) {
    let field = browser.find(Locator::Id(id)).await.unwrap_or_else(|e| panic!("no field {id}: {e}"));
    field.clear().await.expect("clear");
    field.send_keys(text).await.expect("type");
}

/// Clicks the detail's button for the action `act`.
async fn press(browser: &fantoccini::Client, act: &str) {
    let button = format!("#detail-actions button[data-act=\"{act}\"]");
    browser.find(Locator::Css(&button)).await.expect("the action's button").click().await.expect("click");
}

/// Waits until the opened case's timeline contains `text`.
async fn timeline_shows(browser: &fantoccini::Client, text: &str) {
    until(
        browser,
        &format!("{text} on the timeline"),
        "const l = document.querySelector('#detail .timeline'); return l && l.textContent.includes(arguments[0]);",
        vec![serde_json::json!(text)],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatcher_urges_notes_and_calls_back_in_chinese() {
    use futures::StreamExt as _;

    let beijing = Beijing::start().await;
    let browser = &beijing.browser;
    let (lon, lat) = DUOFUXIANG;
    // The health commission's subject, where a 督办 reaches it.
    let mut department = beijing.bus.client.subscribe("routed.dept.health-110101.>").await.expect("subscribe");
    let arrest = case("bj-urge", SourceSystem::Emergency, "cardiac_arrest", lon, lat);
    publish_case(&beijing.bus.js, &arrest).await;
    shows_case(browser, "bj-urge").await;
    let shown = open(browser, "bj-urge").await;
    assert!(shown.get("error").is_none(), "{shown}");

    // 督办: on the timeline under the department's name, and on the department's subject.
    press(browser, "supervise").await;
    until(
        browser,
        "the note asked for",
        "return document.getElementById('action-msg').textContent.includes('请先填写')",
        vec![],
    )
    .await;
    type_into(browser, "supervise-note", "请立即出车").await;
    press(browser, "supervise").await;
    timeline_shows(browser, "督办 · 调度员 dana → 东城区卫生健康委员会（120急救）: 请立即出车").await;
    let urged = loop {
        let message = tokio::time::timeout(WAIT, department.next()).await.expect("in time").expect("a message");
        let event: Value = serde_json::from_slice(&message.payload).expect("an event");
        if event["data"]["entry"]["event"] == "supervised" {
            break event;
        }
    };
    assert_eq!(urged["data"]["entry"]["note"], "请立即出车", "{urged}");
    assert_eq!(urged["data"]["entry"]["department"], "health-110101", "{urged}");

    // A note, and a call back that did not reach the reporter.
    type_into(browser, "note-text", "已联系家属").await;
    press(browser, "note").await;
    timeline_shows(browser, "备注 · 调度员 dana: 已联系家属").await;
    browser.find(Locator::Id("follow-up-reached")).await.expect("reached?").select_by_value("no").await.expect("no");
    type_into(browser, "follow-up-note", "无人接听").await;
    press(browser, "follow_up").await;
    timeline_shows(browser, "回访 · 调度员 dana: 未联系上：无人接听").await;

    // Pickers narrow as one types: 400 departments, 2,300 communities.
    type_into(browser, "reassign-find", "西城区消防").await;
    let chosen = browser.execute("return document.getElementById('reassign-to').value", vec![]).await.expect("value");
    assert_eq!(chosen, "fire-110102");
    type_into(browser, "f-community-find", "多福巷").await;
    until(
        browser,
        "the community chosen",
        "return document.getElementById('f-community').value === '110101001001'",
        vec![],
    )
    .await;
}

/// Asserts that `text`, a message the console shows, is Chinese: some Chinese and no Latin word
/// but those of the ids in it (`ids`).
fn assert_chinese(what: &str, text: &str, ids: &[&str]) {
    let english: Vec<&str> = latin_words(text).into_iter().filter(|w| !ids.contains(w)).collect();
    assert!(english.is_empty(), "{what} is not all Chinese: {text:?}");
    assert!(text.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)), "{what} has no Chinese: {text:?}");
}

/// Waits until the element `id` shows a text; the text.
async fn message(browser: &fantoccini::Client, what: &str, id: &str) -> String {
    // An empty text is no text yet (the message comes when the request is answered or fails).
    let script = "const e = document.getElementById(arguments[0]); return (e && !e.closest('[hidden]') && e.textContent) || null";
    let text = until(browser, what, script, vec![serde_json::json!(id)]).await;
    text.as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_failures_read_in_chinese() {
    let beijing = Beijing::start().await;
    let browser = beijing.browser.clone();
    let (lon, lat) = DUOFUXIANG;
    publish_case(&beijing.bus.js, &case("bj-refused", SourceSystem::PublicService, "street_defects", lon, lat)).await;
    shows_case(&browser, "bj-refused").await;
    let shown = open(&browser, "bj-refused").await;
    assert!(shown.get("error").is_none(), "{shown}");
    // Leaflet's own buttons too.
    let titles = browser
        .execute(
            "return ['zoom-in', 'zoom-out', 'layers-toggle'].map((b) => document.querySelector('.leaflet-control-' + b).title)",
            vec![],
        )
        .await
        .expect("Leaflet's buttons");
    assert_eq!(titles, serde_json::json!(["放大", "缩小", "图层"]));

    // Refused by the case book: a reassign to a department the region does not have (the picker
    // lists only those it has; the test adds one). The server's reason is English.
    browser
        .execute(
            "const s = document.getElementById('reassign-to'); s.add(new Option('不存在的部门', 'no-such-department')); \
             s.value = 'no-such-department';",
            vec![],
        )
        .await
        .expect("a department that does not exist");
    type_into(&browser, "reassign-reason", "转交").await;
    press(&browser, "reassign").await;
    let refused = message(&browser, "the refusal", "action-msg").await;
    assert_chinese("the reassign's refusal", &refused, &[]);

    // Not found: a link to a case that does not exist.
    browser.execute("location.hash = '#case/bj-missing'", vec![]).await.expect("follow the link");
    let missing = until(
        &browser,
        "the missing case",
        "const e = document.querySelector('#detail-head .error'); return e && e.textContent",
        vec![],
    )
    .await;
    assert_chinese("the missing case's error", missing.as_str().unwrap_or_default(), &["bj", "missing"]);

    // The session ends (its cookie is gone): the next action asks to sign in again, saying why.
    shows_case(&browser, "bj-refused").await;
    let shown = open(&browser, "bj-refused").await;
    assert!(shown.get("error").is_none(), "{shown}");
    browser.delete_all_cookies().await.expect("forget the session");
    type_into(&browser, "note-text", "已联系").await;
    press(&browser, "note").await;
    let signed_out = message(&browser, "the sign-in's reason", "login-error").await;
    assert_chinese("the signed-out session's message", &signed_out, &[]);

    // The server is gone: an action fails on the network.
    crate::console::sign_in(&browser, &beijing.linkbus.base, DISPATCHER).await;
    until(&browser, "the page in Chinese", "return document.documentElement.lang === 'zh-CN'", vec![]).await;
    shows_case(&browser, "bj-refused").await;
    let shown = open(&browser, "bj-refused").await;
    assert!(shown.get("error").is_none(), "{shown}");
    drop(beijing.linkbus);
    type_into(&browser, "note-text", "已联系").await;
    press(&browser, "note").await;
    let failed = message(&browser, "the network failure", "action-msg").await;
    assert_chinese("the network failure's message", &failed, &[]);
}
