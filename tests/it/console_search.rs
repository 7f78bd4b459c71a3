//! Finding a case and calling the caller back, in a real headless Chromium against a real
//! `linkbus up` (the harness of `console.rs`): the search field above the board finds a case by
//! its source's id and by the last digits of the caller's phone (`GET /api/cases?q=`) and opens
//! it; the detail shows the caller's name and phone, the flags translated, the link to the case,
//! and the other report at the same place among its repeats; that link (`/#case/<id>`) opens
//! the case when the page loads. Before issue 18 there was no search field, no caller, no flags,
//! no repeats and no link.

use fantoccini::{Client, Locator};
use linkbus_tests::{WAIT, case, publish_case};
use linkbus_wire::{Contact, SourceSystem};
use serde_json::{Value, json};

use crate::console::{DISPATCHER, Setup, find_case, until};

/// Mission District: inside one community.
const MISSION: (f64, f64) = (-122.4194, 37.7599);

/// What the search lists: the case ids of its matches, once it has answered for `q`.
const RESULTS: &str = "const list = document.getElementById('search-results'); \
    if (list.hidden || list.dataset.q !== arguments[0]) return null; \
    const items = [...list.querySelectorAll('li[data-case]')].map((li) => li.dataset.case); \
    return list.querySelector('.search-head') && { items, head: list.querySelector('.search-head').textContent };";

/// What the detail shows of the caller, the flags, the link and the repeats, once `case_id` is
/// open and its repeats are read.
const DETAIL: &str = "const d = document.getElementById('detail'); \
    if (d.hidden || d.dataset.caseId !== arguments[0] || !document.getElementById('detail-repeats')) return null; \
    const text = (id) => document.getElementById(id)?.textContent ?? null; \
    return { errors: window.linkbusErrors, caller: text('detail-caller'), flags: text('detail-flags'), \
      phone: document.querySelector('#detail-caller a')?.getAttribute('href') ?? null, \
      link: document.getElementById('detail-link')?.getAttribute('href') ?? null, \
      repeats: [...document.querySelectorAll('#detail-repeats li[data-case]')].map((li) => li.dataset.case) };";

/// Types `q` into the search field (replacing what it held) and waits for its matches.
async fn search(browser: &Client, q: &str) -> Value {
    let field = browser.find(Locator::Id("search")).await.expect("a search field");
    field.clear().await.expect("clear the field");
    field.send_keys(q).await.expect("type");
    until(browser, &format!("the matches of {q:?}"), RESULTS, vec![json!(q)]).await
}

/// Waits until the detail shows `case_id` with its repeats; what it shows (`DETAIL`).
async fn detail(browser: &Client, case_id: &str) -> Value {
    until(browser, &format!("case {case_id} opened with its repeats"), DETAIL, vec![json!(case_id)]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_search_finds_a_case_by_source_id_and_phone_and_its_link_opens_it() {
    let setup = Setup::start().await;
    let (bus, linkbus) = (&setup.bus, &setup.linkbus);
    let browser = setup.signed_in("profile", DISPATCHER).await;

    // An elderly caller's sewer report, and another kind of report 11 m away (not merged: another
    // category), by another caller.
    let mut caller = case("search-caller", SourceSystem::PublicService, "sewer_issues", MISSION.0, MISSION.1);
    caller.data.source_id = "SR-2026-4242".into();
    caller.data.reporter =
        Some(Contact { name: Some("王芳".into()), phone: Some("138-0013-8000".into()), ..Default::default() });
    caller.data.flags = vec!["elderly_alone".into(), "persons_trapped".into()];
    let mut nearby =
        case("search-nearby", SourceSystem::PublicService, "graffiti_public_property", MISSION.0, MISSION.1 + 0.0001);
    nearby.data.reporter =
        Some(Contact { name: Some("Li Lei".into()), phone: Some("13900001111".into()), ..Default::default() });
    publish_case(&bus.js, &caller).await;
    publish_case(&bus.js, &nearby).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while find_case(linkbus, "search-caller").await.is_none() || find_case(linkbus, "search-nearby").await.is_none() {
        assert!(tokio::time::Instant::now() < deadline, "the cases were not routed");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // By the source's id: found, and opened with a click.
    let found = search(&browser, "SR-2026-4242").await;
    assert_eq!(found["items"], json!(["search-caller"]), "{found}");
    browser
        .find(Locator::Css("#search-results li[data-case=\"search-caller\"]"))
        .await
        .expect("a match")
        .click()
        .await
        .expect("open");
    let shown = detail(&browser, "search-caller").await;
    assert_eq!(shown["errors"], json!([]), "{shown}");
    assert_eq!(shown["caller"], "王芳 · 138-0013-8000", "{shown}");
    assert_eq!(shown["phone"], "tel:13800138000", "{shown}");
    assert_eq!(shown["flags"], "elderly living alone persons trapped", "{shown}");
    assert_eq!(shown["link"], "#case/search-caller", "{shown}");
    assert_eq!(shown["repeats"], json!(["search-nearby"]), "{shown}");

    // By the last four digits of the phone the caller reads out, and by the whole number.
    let found = search(&browser, "8000").await;
    assert_eq!(found["items"], json!(["search-caller"]), "{found}");
    let found = search(&browser, "138 0013 8000").await;
    assert_eq!(found["items"], json!(["search-caller"]), "{found}");
    let found = search(&browser, "13999999999").await;
    assert_eq!((found["items"].clone(), found["head"].clone()), (json!([]), json!("No case found.")), "{found}");

    // The link opens the case when the page loads (the session is the cookie's).
    browser.goto(&format!("{}#case/search-nearby", linkbus.base)).await.expect("the link loads");
    let shown = detail(&browser, "search-nearby").await;
    assert_eq!(shown["repeats"], json!(["search-caller"]), "{shown}");
    assert_eq!(shown["caller"], "Li Lei · 13900001111", "{shown}");
    assert_eq!(shown["flags"], Value::Null, "no flags, no row: {shown}");

    // In Chinese: the flags too.
    browser.find(Locator::Id("lang")).await.expect("language button").click().await.expect("switch");
    browser.goto(&format!("{}#case/search-caller", linkbus.base)).await.expect("the link loads");
    let shown = detail(&browser, "search-caller").await;
    assert_eq!(shown["flags"], "独居老人 有人被困", "{shown}");
    browser.close().await.expect("close the browser");
}
