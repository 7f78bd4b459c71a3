//! The dispatcher's actions are safe, in a real headless Chromium against a real `linkbus up` (the
//! harness of `console.rs`): reassigning starts with no department chosen and is not sent without
//! a department and a reason; cancelling is not sent without a reason; closing or cancelling a
//! priority 1 or 2 case asks first, and "no" sends nothing; a priority 3 case closes at once. What
//! the page sends is recorded (`console.rs`'s `WATCH` spies on `fetch`), so "not sent" is checked, not assumed; what was
//! done is read back from the API's timeline. The messages are checked in English and Chinese.

use fantoccini::{Client, Locator};
use linkbus_tests::{case, publish_case};
use linkbus_wire::SourceSystem;
use serde_json::{Value, json};

use crate::console::{DISPATCHER, Linkbus, Setup, find_case, shows_case, until};

/// What the actions part of the detail shows: the message, the question (if asked) and how many
/// actions the page has posted.
const ACTIONS: &str = "const confirm = document.getElementById('action-confirm'); \
    return { msg: document.getElementById('action-msg').textContent, \
      question: confirm.hidden ? null : confirm.querySelector('p').textContent, \
      posts: window.linkbusPosts.filter((p) => p.url.endsWith('/actions')).map((p) => p.body), \
      errors: window.linkbusErrors };";

async fn click(browser: &Client, css: &str) {
    browser.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("no {css}: {e}")).click().await.expect("click");
}

async fn type_into(browser: &Client, id: &str, text: &str) {
    let field = browser.find(Locator::Id(id)).await.unwrap_or_else(|e| panic!("no #{id}: {e}"));
    field.clear().await.expect("clear");
    field.send_keys(text).await.expect("type");
}

async fn actions(browser: &Client) -> Value {
    browser.execute(ACTIONS, vec![]).await.expect("the actions read")
}

/// Opens `case_id` from the board; returns once its detail (and its actions) are shown.
async fn open(browser: &Client, case_id: &str) {
    shows_case(browser, case_id).await;
    click(browser, &format!("#board-rows .row[data-case-id=\"{case_id}\"]")).await;
    browser
        .wait()
        .at_most(linkbus_tests::WAIT)
        .for_element(Locator::Css(&format!(
            "#detail[data-case-id=\"{case_id}\"] #detail-actions button[data-act=\"close\"]"
        )))
        .await
        .unwrap_or_else(|e| panic!("case {case_id} does not open with its actions: {e}"));
}

/// The events of `case_id`'s timeline, as the API has them.
async fn events(linkbus: &Linkbus, case_id: &str) -> Vec<String> {
    let record = find_case(linkbus, case_id).await.unwrap_or_else(|| panic!("no case {case_id}"));
    record["timeline"]
        .as_array()
        .expect("a timeline")
        .iter()
        .map(|e| e["event"].as_str().expect("event").to_owned())
        .collect()
}

/// Waits until the opened case's state, as the detail shows it, is `state`.
async fn detail_state(browser: &Client, state: &str) {
    until(
        browser,
        &format!("the {state} state in the detail"),
        "return document.getElementById('detail-state').dataset.state === arguments[0]",
        vec![json!(state)],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_and_cancelling_urgent_cases_ask_first_and_reasons_are_required() {
    let setup = Setup::start().await;
    let (bus, linkbus) = (&setup.bus, &setup.linkbus);
    let browser = setup.signed_in("profile", DISPATCHER).await;
    // A fire (priority 1), an old person needing help (priority 2), a sewer (priority 3).
    for (id, system, category, priority, lon, lat) in [
        ("act-fire", SourceSystem::Emergency, "fire", 1, -122.4194, 37.7599),
        ("act-elderly", SourceSystem::PublicService, "elderly_assistance", 2, -122.4330, 37.7840),
        ("act-sewer", SourceSystem::PublicService, "sewer_issues", 3, -122.4862, 37.7694),
    ] {
        let mut event = case(id, system, category, lon, lat);
        event.data.priority = priority;
        publish_case(&bus.js, &event).await;
    }

    // Reassign: no department chosen at first; neither without one nor without a reason is
    // anything sent.
    open(&browser, "act-fire").await;
    let picker = browser
        .execute(
            "const s = document.getElementById('reassign-to'); return [s.value, s.options[0].textContent, s.options[0].value]",
            vec![],
        )
        .await
        .expect("the picker");
    assert_eq!(picker, json!(["", "— choose a department —", ""]));
    click(&browser, "button[data-act=\"reassign\"]").await;
    assert_eq!(
        actions(&browser).await,
        json!({"msg": "Choose the department to reassign to.", "question": null, "posts": [], "errors": []})
    );
    browser
        .find(Locator::Id("reassign-to"))
        .await
        .expect("picker")
        .select_by_value("dpw-ops-queue")
        .await
        .expect("choose");
    type_into(&browser, "reassign-reason", "   ").await;
    click(&browser, "button[data-act=\"reassign\"]").await;
    assert_eq!(
        actions(&browser).await,
        json!({"msg": "A reason is required.", "question": null, "posts": [], "errors": []})
    );
    type_into(&browser, "reassign-reason", "the crew is nearer").await;
    click(&browser, "button[data-act=\"reassign\"]").await;
    until(
        &browser,
        "the reassignment done",
        "return document.getElementById('action-msg').textContent === 'Done.'",
        vec![],
    )
    .await;
    assert!(events(linkbus, "act-fire").await.contains(&"reassigned".to_owned()));

    // Cancel a priority 1 case: a reason first, then a question; "no" sends nothing.
    click(&browser, "button[data-act=\"cancel\"]").await;
    let shown = actions(&browser).await;
    assert_eq!((shown["msg"].clone(), shown["question"].clone()), (json!("A reason is required."), Value::Null));
    type_into(&browser, "cancel-reason", "the caller put it out").await;
    click(&browser, "button[data-act=\"cancel\"]").await;
    let shown = actions(&browser).await;
    assert_eq!(shown["question"], "Cancel this priority 1 case? Reason: the caller put it out", "{shown}");
    assert_eq!(shown["posts"].as_array().map(Vec::len), Some(1), "only the reassignment was sent: {shown}");
    click(&browser, "#action-confirm button[data-act=\"unconfirm\"]").await;
    let shown = actions(&browser).await;
    assert_eq!((shown["question"].clone(), shown["posts"].as_array().map(Vec::len)), (Value::Null, Some(1)), "{shown}");
    assert!(!events(linkbus, "act-fire").await.contains(&"cancelled".to_owned()));
    // Asked again and confirmed: cancelled, with the reason, by the dispatcher.
    click(&browser, "button[data-act=\"cancel\"]").await;
    click(&browser, "#action-confirm button[data-act=\"confirm\"]").await;
    detail_state(&browser, "cancelled").await;
    let record = find_case(linkbus, "act-fire").await.expect("the fire");
    let last = record["timeline"].as_array().and_then(|t| t.last()).cloned().expect("an entry");
    assert_eq!(
        (last["event"].clone(), last["note"].clone(), last["actor"].clone()),
        (json!("cancelled"), json!("the caller put it out"), json!({"kind": "dispatcher", "id": "dana"}))
    );
    assert_eq!(actions(&browser).await["posts"][1], json!({"action": "cancel", "reason": "the caller put it out"}));

    // In Chinese: closing a priority 2 case asks first, in Chinese.
    browser.find(Locator::Id("lang")).await.expect("language button").click().await.expect("switch");
    open(&browser, "act-elderly").await;
    click(&browser, "button[data-act=\"cancel\"]").await;
    assert_eq!(actions(&browser).await["msg"], "请填写原因。");
    type_into(&browser, "close-note", "家属已到场").await;
    click(&browser, "button[data-act=\"close\"]").await;
    let shown = actions(&browser).await;
    assert_eq!(shown["question"], "确定结案这件优先级 2 的事件？", "{shown}");
    assert_eq!(shown["posts"].as_array().map(Vec::len), Some(2), "{shown}");
    let yes = browser.find(Locator::Css("#action-confirm button[data-act=\"confirm\"]")).await.expect("yes");
    assert_eq!(yes.text().await.expect("text"), "确定结案");
    yes.click().await.expect("confirm");
    detail_state(&browser, "closed").await;
    assert_eq!(actions(&browser).await["posts"][2], json!({"action": "close", "note": "家属已到场"}));

    // A priority 3 case closes at once.
    open(&browser, "act-sewer").await;
    click(&browser, "button[data-act=\"close\"]").await;
    detail_state(&browser, "closed").await;
    let shown = actions(&browser).await;
    assert_eq!(
        (shown["question"].clone(), shown["posts"][3].clone()),
        (Value::Null, json!({"action": "close"})),
        "{shown}"
    );
    assert_eq!(events(linkbus, "act-sewer").await.last().map(String::as_str), Some("closed"));
    assert_eq!(shown["errors"], json!([]), "the page reported errors");

    browser.close().await.expect("close the browser");
}
