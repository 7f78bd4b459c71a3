//! The resident's tracking page in a real headless Chromium emulating a phone (390 × 844 CSS
//! pixels, touch), against a real `linkbus up` on a real nats-server: a resident's 311 app posts
//! an Open311 request, the resident opens the link of the receipt, follows the case as the
//! department (through the API) accepts and resolves it, reads the resolution note, rates it "not
//! solved", and the page says the case was reopened and what happens next; the page switches to
//! Chinese. With a wrong token the page shows nothing of the case; wrong phone digits lock the
//! case's phone proof, and the right digits are then refused too. It prints the page's
//! transferred bytes and first contentful paint (Performance API) and saves a screenshot under the
//! target folder (`UPDATE_SCREENSHOT=1` also writes `docs/track.png`).

use fantoccini::{Client, Locator};
use linkbus_tests::{TestBus, WAIT};
use serde_json::{Value, json};

use crate::console::{Driver, Linkbus, free_port, screenshot_path, until};

const APP: &str = "k-trackpage-open311-5c1e9a3f7b2d4860";
const SEWER_DEPT: &str = "k-trackpage-sewer-2b8e6d0a4c9f1375";

/// The text of element `id`, once it is shown and not empty.
async fn text_of(browser: &Client, id: &str) -> String {
    let script = "const e = document.getElementById(arguments[0]); \
                  return e && !e.hidden && e.offsetParent !== null && e.textContent.trim() ? e.textContent : null;";
    until(browser, &format!("#{id} shown"), script, vec![json!(id)]).await.as_str().unwrap_or_default().to_owned()
}

/// Waits until `#state` reads `state`.
async fn state_reads(browser: &Client, state: &str) {
    let script = "const e = document.getElementById('state'); \
                  return !document.getElementById('case-view').hidden && e.textContent === arguments[0];";
    until(browser, &format!("the state {state:?}"), script, vec![json!(state)]).await;
}

/// The department acts on the case through the API.
async fn department(http: &reqwest::Client, linkbus: &Linkbus, case_id: &str, action: Value) {
    let response = http
        .post(format!("{}api/cases/{case_id}/actions", linkbus.base))
        .bearer_auth(SEWER_DEPT)
        .header("content-type", "application/json")
        .body(action.to_string())
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), 200, "{action}: {}", response.text().await.unwrap_or_default());
}

async fn tap(browser: &Client, id: &str) {
    browser.find(Locator::Id(id)).await.unwrap_or_else(|e| panic!("#{id}: {e}")).click().await.expect("tap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resident_tracks_an_open311_request_on_a_phone_and_rates_it() {
    let bus = TestBus::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let hash = linkbus_http::auth::hash_key;
    let keys = format!(
        "[[api.keys]]\nrole = \"source\"\nid = \"sf-311-app\"\nsource = \"/open311\"\nsha256 = \"{}\"\n\
         [[api.keys]]\nrole = \"department\"\nid = \"puc-sewer-ops\"\nsha256 = \"{}\"\n",
        hash(APP),
        hash(SEWER_DEPT)
    );
    let linkbus = Linkbus::start_with(&bus, dir.path(), free_port(), &keys);
    let driver = Driver::start();
    let http = reqwest::Client::builder().timeout(WAIT).build().expect("client");

    // The resident's 311 app posts the request; its receipt carries the tracking link.
    let form = format!(
        "api_key={APP}&service_code=SEWER&lat=37.7599673&long=-122.4236412&first_name=Ada&last_name=Lovelace\
         &phone=%2B1+415-555-0100&description=Sewer+backing+up+into+the+street"
    );
    let response = http
        .post(format!("{}open311/v2/requests.json", linkbus.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .expect("posted");
    assert_eq!(response.status(), 201);
    let receipt: Value = serde_json::from_slice(&response.bytes().await.expect("body")).expect("JSON");
    let link = receipt[0]["tracking_url"].as_str().expect("a tracking link").to_owned();
    let token = receipt[0]["tracking_token"].as_str().expect("a token").to_owned();
    let case_id = format!("open311-{}", receipt[0]["service_request_id"].as_str().expect("an id"));
    assert_eq!(link, format!("/track/{case_id}?t={token}"), "relative without [api].public_url");
    let url = format!("{}{}", linkbus.base.trim_end_matches('/'), link);

    // On the phone: the case, as soon as it is routed.
    let phone = driver.phone(&dir.path().join("phone")).await;
    phone.goto(&url).await.expect("the page loads");
    let viewport = phone
        .execute("return [window.innerWidth, navigator.maxTouchPoints > 0, 'ontouchstart' in window]", vec![])
        .await
        .expect("viewport");
    assert_eq!(viewport, json!([390, true, true]), "a phone's viewport with touch");
    // The case is in the case book once it is routed: until then the page finds nothing.
    let shown = "const state = document.getElementById('state').textContent; \
                 const error = document.getElementById('error'); \
                 return !document.getElementById('case-view').hidden && state ? state : error.hidden ? null : 'error';";
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let state = until(&phone, "the case or an error", shown, vec![]).await;
        if state == "Sent to the department" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the case was not routed: {state}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        phone.refresh().await.expect("reload");
    }
    assert_eq!(text_of(&phone, "department").await, "PUC Sewer Ops");
    assert_eq!(text_of(&phone, "category").await, "Sewer Issues");
    assert!(text_of(&phone, "next").await.contains("accepts it"));

    // The page's weight and first paint, as Chromium measured them.
    let perf = phone
        .execute(
            "const nav = performance.getEntriesByType('navigation')[0]; \
             const files = performance.getEntriesByType('resource'); \
             const paint = performance.getEntriesByName('first-contentful-paint')[0]; \
             return { page: nav.transferSize, files: files.map((f) => [f.name, f.transferSize]), \
                      bytes: nav.transferSize + files.reduce((n, f) => n + f.transferSize, 0), \
                      fcp: paint ? paint.startTime : null };",
            vec![],
        )
        .await
        .expect("performance entries");
    eprintln!("tracking page: {perf}");

    // The department accepts, then resolves; the resident opens the link again.
    department(&http, &linkbus, &case_id, json!({ "action": "accept" })).await;
    phone.refresh().await.expect("reload");
    state_reads(&phone, "Accepted by the department").await;
    assert_eq!(text_of(&phone, "accept").await, "met");
    department(&http, &linkbus, &case_id, json!({ "action": "resolve", "note": "Main unblocked, street cleaned" }))
        .await;
    phone.refresh().await.expect("reload");
    state_reads(&phone, "Resolved").await;
    assert_eq!(text_of(&phone, "note").await, "The department: Main unblocked, street cleaned");
    // The case id is random hex and may hold any digits.
    let page = text_of(&phone, "case-view").await.replace(case_id.trim_start_matches("open311-"), "");
    for private in ["Ada", "Lovelace", "555", "0100", "puc-sewer-ops"] {
        assert!(!page.contains(private), "{private} is not shown: {page}");
    }
    let png = phone.screenshot().await.expect("screenshot");
    let path = screenshot_path("track.png");
    std::fs::write(&path, &png).expect("save the screenshot");
    eprintln!("screenshot: {}", path.display());
    if std::env::var_os("UPDATE_SCREENSHOT").is_some() {
        std::fs::write(linkbus_tests::repo_root().join("docs/track.png"), &png).expect("write docs/track.png");
    }

    // Rated 2 of 5, not solved: reopened, and the page says what happens next.
    tap(&phone, "score-2").await;
    tap(&phone, "solved-no").await;
    tap(&phone, "send").await;
    let message = text_of(&phone, "message").await;
    assert!(message.contains("reopened"), "{message}");
    assert_eq!(text_of(&phone, "state").await, "Accepted by the department", "back to the department");
    let next = text_of(&phone, "next").await;
    assert!(next.starts_with("Next: the department works on it"), "{next}");
    let record: Value = {
        let response = http
            .get(format!("{}api/cases/{case_id}", linkbus.base))
            .bearer_auth(SEWER_DEPT)
            .send()
            .await
            .expect("an answer");
        serde_json::from_slice(&response.bytes().await.expect("body")).expect("a record")
    };
    assert_eq!(record["ratings"][0]["score"], 2, "{record}");
    assert_eq!(record["reopened"], 1, "{record}");

    // In Chinese.
    tap(&phone, "lang").await;
    assert_eq!(text_of(&phone, "title").await, "全程查询");
    assert_eq!(text_of(&phone, "state").await, "部门已签收");
    tap(&phone, "lang").await;

    // A wrong token shows nothing of the case, and offers the phone digits instead.
    let wrong = format!("{}{}", &token[..31], if token.ends_with('0') { '1' } else { '0' });
    let stranger = driver.phone(&dir.path().join("stranger")).await;
    stranger.goto(&format!("{}track/{case_id}?t={wrong}", linkbus.base)).await.expect("the page loads");
    let error = text_of(&stranger, "error").await;
    assert!(error.contains("Nothing found"), "{error}");
    let body = stranger.find(Locator::Css("body")).await.expect("body").text().await.expect("text");
    for shown in ["sewer", "PUC", "Main unblocked"] {
        assert!(!body.contains(shown), "{shown} is not shown to a wrong token: {body}");
    }
    // Five wrong guesses of the digits lock the case's phone proof: the right ones are refused.
    for guess in ["1111", "2222", "3333", "4444", "5555", "0100"] {
        let field = stranger.wait().at_most(WAIT).for_element(Locator::Css("#phone")).await.expect("the phone field");
        field.clear().await.expect("clear");
        field.send_keys(guess).await.expect("type");
        // Hidden before each try, so each answer is waited for.
        stranger.execute("document.getElementById('error').hidden = true", vec![]).await.expect("script runs");
        tap(&stranger, "look").await;
        let error = text_of(&stranger, "error").await;
        assert!(!error.contains("PUC"), "{error}");
    }
    let error = until(
        &stranger,
        "the lockout message",
        "const e = document.getElementById('error'); return e.textContent.includes('locked') ? e.textContent : null;",
        vec![],
    )
    .await;
    assert!(error.as_str().is_some_and(|e| e.contains("Try again in 60 minutes")), "{error}");
    let body = stranger.find(Locator::Css("body")).await.expect("body").text().await.expect("text");
    assert!(!body.contains("PUC"), "{body}");

    phone.close().await.expect("close");
    stranger.close().await.expect("close");
}
