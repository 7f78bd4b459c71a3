//! The volunteers' phone app against a real `linkbus up` on a real nats-server: per-volunteer
//! credentials (issued and revoked by a dispatcher, honoured only for their own volunteer, each
//! status checked and throttled) over the API; and, in headless Chromium with mobile emulation
//! (a phone's viewport, touch, a geolocation override), two volunteers go on duty, one moves, a
//! cardiac arrest near them is offered to both with the nearest AED, one accepts, the
//! dispatcher's API and console show the acceptance and the other's open app shows the offer
//! withdrawn with its reason; the one who took it reports arriving and handing over. The app's transferred bytes and first paint are printed (the README reports them);
//! `UPDATE_SCREENSHOT=1` writes `docs/volunteer.png`.
//!
//! San Francisco's region data lists fire stations, not AEDs: these tests run on a copy of it
//! whose cardiac arrests call for the nearest `aed` and which has one AED (a test fixture).

use std::time::Duration;

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, Locator};
use linkbus_bus::nats::BUCKET_VOLUNTEERS;
use linkbus_tests::{TestBus, WAIT, case, publish_case, sf_region_dir};
use linkbus_wire::{Location, SourceSystem, VolunteerStatus};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::console::{DISPATCHER, Driver, Linkbus, find_case, free_port, shows_case, sign_in, until};

/// The Mission, San Francisco, and the test's AED a little north-east of it.
const MISSION: (f64, f64) = (-122.4194, 37.7599);
const AED: (f64, f64) = (-122.4182, 37.7611);

/// A copy of the SF region in `dir` whose cardiac arrests call for the nearest AED, with one AED.
fn region_with_aed(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).expect("region dir");
    for file in ["manifest.toml", "communities.geojson", "departments.json", "categories.toml", "facilities.geojson"] {
        let text = std::fs::read_to_string(sf_region_dir().join(file)).expect("read");
        let text = match file {
            "categories.toml" => text.replace(
                "volunteer_skill = \"cpr\"\nfacility_kind = \"fire_station\"",
                "volunteer_skill = \"cpr\"\nfacility_kind = \"aed\"",
            ),
            "facilities.geojson" => text.replacen(
                "\"features\":[\n",
                &format!(
                    "\"features\":[\n{{\"type\":\"Feature\",\"properties\":{{\"id\":\"test-aed-1\",\"name\":\"AED at 24th St BART (test)\",\
                     \"kind\":\"aed\"}},\"geometry\":{{\"type\":\"Point\",\"coordinates\":[{},{}]}}}},\n",
                    AED.0, AED.1
                ),
                1,
            ),
            _ => text,
        };
        std::fs::write(dir.join(file), text).expect("write");
    }
    let categories = std::fs::read_to_string(dir.join("categories.toml")).expect("read");
    assert!(categories.contains("facility_kind = \"aed\""), "the cardiac arrest calls for an AED");
}

/// `linkbus up` on the AED region without seeded volunteers, an operator and a department key
/// besides the console's dispatchers, and an hourly cap of one offer.
struct Setup {
    linkbus: Linkbus,
    dir: tempfile::TempDir,
    bus: TestBus,
    http: reqwest::Client,
}

const OPERATOR: &str = "k-volunteer-app-operator-5d1f0e2a";
const DEPARTMENT: &str = "k-volunteer-app-department-9b3c4e7f";

impl Setup {
    async fn start() -> Self {
        let bus = TestBus::start().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let region = dir.path().join("region");
        region_with_aed(&region);
        let hash = linkbus_http::auth::hash_key;
        let extra = format!(
            "[[api.keys]]\nrole = \"operator\"\nid = \"olga\"\nsha256 = \"{}\"\n\
             [[api.keys]]\nrole = \"department\"\nid = \"sffd\"\nsha256 = \"{}\"\n\
             [routing]\nmax_offers_per_hour = 1\n",
            hash(OPERATOR),
            hash(DEPARTMENT)
        );
        let linkbus =
            Linkbus::start_region(&bus, dir.path(), free_port(), &region, "seed_volunteers = false\n", &extra);
        let http = reqwest::Client::builder().timeout(WAIT).build().expect("client");
        Self { linkbus, dir, bus, http }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.linkbus.base, path.trim_start_matches('/'))
    }

    /// Puts volunteer `id` in the bucket (as a roster sync would), off duty at the Mission.
    async fn enrol(&self, id: &str) {
        let store = self.bus.js.get_key_value(BUCKET_VOLUNTEERS).await.expect("volunteers bucket");
        let status = VolunteerStatus {
            id: id.into(),
            location: Location { lon: MISSION.0, lat: MISSION.1 },
            available: false,
            skills: vec![],
        };
        store.put(id, serde_json::to_vec(&status).expect("json").into()).await.expect("put");
    }

    /// `method path` with bearer `key` and JSON `body` (if not null): status and JSON answer.
    async fn call(&self, method: reqwest::Method, path: &str, key: &str, body: Value) -> (StatusCode, Value) {
        let mut request = self.http.request(method, self.url(path)).bearer_auth(key);
        if !body.is_null() {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        let response = request.send().await.expect("an answer");
        let status = response.status();
        let bytes = response.bytes().await.expect("body");
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// A credential for `id`, issued by the dispatcher.
    async fn credential(&self, id: &str) -> String {
        let (status, issued) =
            self.call(reqwest::Method::POST, &format!("api/volunteers/{id}/credential"), DISPATCHER, Value::Null).await;
        assert_eq!(status, StatusCode::CREATED, "{issued}");
        assert_eq!(issued["volunteer_id"], id);
        issued["credential"].as_str().expect("a credential").to_owned()
    }
}

/// A cardiac arrest at `at`, id `id`.
async fn cardiac_arrest(bus: &TestBus, id: &str, at: (f64, f64)) {
    let mut event = case(id, SourceSystem::Emergency, "cardiac_arrest", at.0, at.1);
    event.data.priority = 1;
    publish_case(&bus.js, &event).await;
}

/// Waits until the dispatcher's API has case `id` with `check` true of it.
async fn case_until(linkbus: &Linkbus, id: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(record) = find_case(linkbus, id).await
            && check(&record)
        {
            return record;
        }
        assert!(tokio::time::Instant::now() < deadline, "case {id}: gave up waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volunteer_credential_is_its_volunteer_s_only_and_revocable() {
    use reqwest::Method;
    let setup = Setup::start().await;
    for id in ["vol-a", "vol-b"] {
        setup.enrol(id).await;
    }
    // Only dispatchers and operators issue; nobody for a volunteer the bucket does not have.
    let (status, _) = setup.call(Method::POST, "api/volunteers/vol-a/credential", DEPARTMENT, Value::Null).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = setup.call(Method::POST, "api/volunteers/nobody/credential", DISPATCHER, Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = setup.call(Method::POST, "api/volunteers/a.b/credential", OPERATOR, Value::Null).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let a = setup.credential("vol-a").await;
    // The operator issues b's with the command line.
    let base = setup.linkbus.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_linkbus-under-test"))
            .args(["volunteer-credential", "--id", "vol-b", "--api", &base])
            .env("LINKBUS_API_KEY", OPERATOR)
            .output()
            .expect("linkbus volunteer-credential runs")
    })
    .await
    .expect("joined");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let issued: Value = serde_json::from_slice(&out.stdout).expect("the credential, as JSON");
    assert_eq!((&issued["volunteer_id"], &issued["issued_by"]), (&json!("vol-b"), &json!("olga")));
    let b = issued["credential"].as_str().expect("b's credential").to_owned();

    let (status, me) = setup.call(Method::GET, "api/volunteer/me", &a, Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["id"], "vol-a");
    assert!(me["region_skills"].as_array().expect("skills").contains(&json!("cpr")), "{me}");
    // Another volunteer's id with a's secret; a's credential on the keys' API, or issuing.
    let (_, secret) = a.split_once('.').expect("id.secret");
    for (path, key) in [
        ("api/volunteer/me", format!("vol-b.{secret}")),
        ("api/cases", a.clone()),
        ("api/volunteers/vol-b/credential", a.clone()),
    ] {
        let method = if path.ends_with("credential") { Method::POST } else { Method::GET };
        let (status, body) = setup.call(method, path, &key, Value::Null).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {body}");
    }

    // Checked: skills from the region's list, a position inside it, no unknown field.
    let on = |skills: Value, at: (f64, f64)| json!({"available": true, "skills": skills, "location": {"lon": at.0, "lat": at.1}});
    for (body, says) in [
        (on(json!(["juggling"]), MISSION), "juggling"),
        (on(json!(["cpr"]), (-122.0, 37.0)), "outside the region"),
        (json!({"available": true, "skills": [], "id": "vol-b"}), "unknown field"),
    ] {
        let (status, refused) = setup.call(Method::PUT, "api/volunteer/me/status", &a, body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
        assert!(refused["error"].as_str().is_some_and(|e| e.contains(says)), "{refused}");
    }
    let (status, put) = setup.call(Method::PUT, "api/volunteer/me/status", &a, on(json!(["cpr"]), MISSION)).await;
    assert_eq!(status, StatusCode::OK, "{put}");
    assert_eq!(put["id"], "vol-a", "the status is a's own");
    // b stays off duty: only a is offered the case.
    cardiac_arrest(&setup.bus, "va-1", (MISSION.0 + 0.001, MISSION.1)).await;
    let record = case_until(&setup.linkbus, "va-1", "a is offered it", |r| {
        r["offers"].as_array().is_some_and(|o| o.iter().any(|o| o["volunteer_id"] == "vol-a"))
    })
    .await;
    assert_eq!(record["offers"].as_array().map(Vec::len), Some(1), "only a: {record}");
    // b cannot answer a's offer: its credential answers as b, who was not offered the case.
    let (status, refused) =
        setup.call(Method::POST, "api/volunteer/me/offers/va-1/answer", &b, json!({"accept": true})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert!(refused["error"].as_str().is_some_and(|e| e.contains("not offered to vol-b")), "{refused}");
    let (status, _) = setup.call(Method::POST, "api/volunteer/me/offers/va-1/answer", &b, json!({"take": true})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // a takes it; only a reports its steps, in order, over the app's API or NATS alike.
    let (status, reply) =
        setup.call(Method::POST, "api/volunteer/me/offers/va-1/answer", &a, json!({"accept": true})).await;
    assert_eq!((status, reply["ok"].clone()), (StatusCode::OK, json!(true)), "{reply}");
    let (status, refused) =
        setup.call(Method::POST, "api/volunteer/me/offers/va-1/step", &b, json!({"step": "arrived"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    let step = |step: &str| {
        let body = json!({"case_id": "va-1", "step": step}).to_string();
        setup.bus.client.request(linkbus_wire::subjects::volunteer_answer("vol-a"), body.into())
    };
    let reply: Value = serde_json::from_slice(&step("handed_over").await.expect("a reply").payload).expect("json");
    assert!(reply["error"].as_str().is_some_and(|e| e.contains("arriving before")), "{reply}");
    let reply: Value = serde_json::from_slice(&step("arrived").await.expect("a reply").payload).expect("json");
    assert_eq!(reply["ok"], true, "{reply}");
    let (status, refused) =
        setup.call(Method::POST, "api/volunteer/me/offers/va-1/step", &a, json!({"step": "arrived"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "once: {refused}");

    // Throttled: at most 6 updates a minute (one was taken above).
    let mut statuses = vec![];
    for _ in 0..6 {
        statuses.push(setup.call(Method::PUT, "api/volunteer/me/status", &a, on(json!(["cpr"]), MISSION)).await.0);
    }
    assert_eq!(statuses.last(), Some(&StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");

    // a was sent one offer this hour, of at most 1 here (the ledger follows the offers stream).
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, me) = setup.call(Method::GET, "api/volunteer/me", &a, Value::Null).await;
        if me["offers_last_hour"] == 1 {
            assert_eq!(me["max_offers_per_hour"], 1, "{me}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "a's offer is not counted: {me}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Counted: 6 statuses put, 4 refused (3 invalid, 1 over the rate); an answer each way.
    let metrics = setup.http.get(setup.url("metrics")).send().await.expect("metrics").text().await.expect("text");
    for series in [
        r#"linkbus_volunteer_app_requests_total{outcome="ok",what="status"} 6"#,
        r#"linkbus_volunteer_app_requests_total{outcome="refused",what="status"} 4"#,
        r#"linkbus_volunteer_app_requests_total{outcome="ok",what="answer"} 1"#,
        r#"linkbus_volunteer_app_requests_total{outcome="refused",what="step"} 2"#,
        r#"linkbus_volunteer_app_requests_total{outcome="ok",what="credential"} 2"#,
    ] {
        assert!(metrics.contains(series), "{series} in\n{metrics}");
    }

    // Revoked: a's credential stops working at once.
    let (status, _) = setup.call(Method::DELETE, "api/volunteers/vol-a/credential", DISPATCHER, Value::Null).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for (method, path, body) in [
        (Method::GET, "api/volunteer/me", Value::Null),
        (Method::POST, "api/volunteer/me/offers/va-1/answer", json!({"accept": true})),
    ] {
        let (status, body) = setup.call(method, path, &a, body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {body}");
    }
    let (status, _) = setup.call(Method::GET, "api/volunteer/me", &b, Value::Null).await;
    assert_eq!(status, StatusCode::OK, "b's credential still works");
    // A new credential replaces the old one.
    let b2 = setup.credential("vol-b").await;
    assert_ne!(b2, b);
    assert_eq!(setup.call(Method::GET, "api/volunteer/me", &b, Value::Null).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(setup.call(Method::GET, "api/volunteer/me", &b2, Value::Null).await.0, StatusCode::OK);
    drop(setup.dir);
}

/// chromedriver's geolocation override (`POST /session/{id}/location`).
#[derive(Debug)]
struct SetLocation(f64, f64);

impl WebDriverCompatibleCommand for SetLocation {
    fn endpoint(
        &self,
        base: &reqwest::Url,
        session: Option<&str>,
    ) -> Result<reqwest::Url, <reqwest::Url as std::str::FromStr>::Err> {
        base.join(&format!("session/{}/location", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &reqwest::Url) -> (reqwest::Method, Option<String>) {
        let body = json!({"location": {"latitude": self.1, "longitude": self.0, "altitude": 0}});
        (reqwest::Method::POST, Some(body.to_string()))
    }
}

/// WebDriver's permissions extension: geolocation granted to the page's origin.
#[derive(Debug)]
struct GrantGeolocation;

impl WebDriverCompatibleCommand for GrantGeolocation {
    fn endpoint(
        &self,
        base: &reqwest::Url,
        session: Option<&str>,
    ) -> Result<reqwest::Url, <reqwest::Url as std::str::FromStr>::Err> {
        base.join(&format!("session/{}/permissions", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &reqwest::Url) -> (reqwest::Method, Option<String>) {
        let body = json!({"descriptor": {"name": "geolocation"}, "state": "granted"});
        (reqwest::Method::POST, Some(body.to_string()))
    }
}

/// A phone: 390×844 CSS pixels at 3×, touch, a mobile user agent.
/// A phone's Chromium at `at`, with the app open and signed in with `credential`.
async fn phone_signed_in(driver: &Driver, setup: &Setup, profile: &str, credential: &str, at: (f64, f64)) -> Client {
    let browser = driver.phone(&setup.dir.path().join(profile)).await;
    browser.goto(&setup.url("volunteer/")).await.expect("the app loads");
    browser.issue_cmd(GrantGeolocation).await.expect("geolocation granted");
    browser.issue_cmd(SetLocation(at.0, at.1)).await.expect("geolocation set");
    let field = browser.wait().at_most(WAIT).for_element(Locator::Id("login-key")).await.expect("a sign-in form");
    field.send_keys(credential).await.expect("type the credential");
    browser.find(Locator::Id("login-submit")).await.expect("a sign-in button").click().await.expect("sign in");
    browser.wait().at_most(WAIT).for_element(Locator::Css("#app:not([hidden])")).await.expect("the app opens");
    browser
}

/// Goes on duty with the skill `cpr`, and waits until the bucket has it.
async fn on_duty(browser: &Client, setup: &Setup, id: &str) {
    browser.find(Locator::Css("#skills-box summary")).await.expect("my skills").click().await.expect("open my skills");
    browser.find(Locator::Css("#skills input[value=cpr]")).await.expect("the cpr skill").click().await.expect("tick");
    until(browser, "cpr sent", "return window.linkbusVolunteer.status()?.skills?.includes('cpr')", vec![]).await;
    browser.find(Locator::Id("duty")).await.expect("the duty button").click().await.expect("go on duty");
    until(browser, "on duty", "return window.linkbusVolunteer.status()?.available === true", vec![]).await;
    kept_until(setup, id, "on duty with cpr", |v| v.available && v.skills == ["cpr"]).await;
}

/// Waits until the volunteers bucket holds a status of `id` that `check` accepts.
async fn kept_until(setup: &Setup, id: &str, what: &str, check: impl Fn(&VolunteerStatus) -> bool) -> VolunteerStatus {
    let store = setup.bus.js.get_key_value(BUCKET_VOLUNTEERS).await.expect("volunteers bucket");
    let deadline = tokio::time::Instant::now() + WAIT + Duration::from_secs(20);
    loop {
        let value = store.get(id).await.expect("get").unwrap_or_default();
        if let Ok(v) = serde_json::from_slice::<VolunteerStatus>(&value)
            && check(&v)
        {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "{id}: gave up waiting until {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volunteers_phones_take_a_cardiac_arrest_with_the_nearest_aed() {
    let setup = Setup::start().await;
    for id in ["vol-a", "vol-b"] {
        setup.enrol(id).await;
    }
    let (a_key, b_key) = (setup.credential("vol-a").await, setup.credential("vol-b").await);
    let driver = Driver::start();
    let a = phone_signed_in(&driver, &setup, "phone-a", &a_key, (MISSION.0 - 0.004, MISSION.1)).await;
    let b = phone_signed_in(&driver, &setup, "phone-b", &b_key, (MISSION.0 + 0.002, MISSION.1)).await;
    let viewport =
        a.execute("return [window.innerWidth, navigator.maxTouchPoints > 0]", vec![]).await.expect("viewport");
    assert_eq!(viewport, json!([390, true]), "a phone's viewport, with touch");
    on_duty(&a, &setup, "vol-a").await;
    on_duty(&b, &setup, "vol-b").await;
    let first =
        kept_until(&setup, "vol-a", "a's position", |v| (v.location.lon - (MISSION.0 - 0.004)).abs() < 1e-5).await;

    // a walks 350 m east: the app sends the new position (throttled, so within 15 s).
    a.issue_cmd(SetLocation(MISSION.0 - 0.0001, MISSION.1)).await.expect("move");
    let moved =
        kept_until(&setup, "vol-a", "a's new position", |v| (v.location.lon - (MISSION.0 - 0.0001)).abs() < 1e-5).await;
    assert!(moved.available && moved.location != first.location);

    cardiac_arrest(&setup.bus, "va-ca-1", MISSION).await;
    for (browser, who) in [(&a, "a"), (&b, "b")] {
        let shown = until(
            browser,
            &format!("the offer on {who}'s phone"),
            "const card = document.querySelector('article.offer[data-case-id=\"va-ca-1\"]'); \
             return card && card.querySelector('.map.leaflet-container canvas') && card.textContent",
            vec![],
        )
        .await;
        let text = shown.as_str().expect("text");
        assert!(text.contains("cardiac arrest") && text.contains("Priority 1"), "{text}");
        assert!(text.contains("AED at 24th St BART (test)"), "the nearest AED: {text}");
        assert!(text.contains("left to answer"), "the time left: {text}");
    }
    // One offer is the hourly cap here: the app says so.
    let cap = until(
        &a,
        "the hourly cap explained",
        "const c = document.getElementById('cap'); return !c.hidden && c.textContent",
        vec![],
    )
    .await;
    assert!(cap.as_str().is_some_and(|c| c.contains("Hourly cap reached: 1 of at most 1")), "{cap}");
    // Never the reporter's contact: the test case has one.
    let offered = a.execute("return JSON.stringify(window.linkbusVolunteer.offers())", vec![]).await.expect("offers");
    let reporter = case("x", SourceSystem::Emergency, "cardiac_arrest", 0.0, 0.0).data.reporter;
    if let Some(phone) = reporter.and_then(|r| r.phone) {
        assert!(!offered.as_str().unwrap_or_default().contains(&phone), "the reporter's phone reached the app");
    }

    // a accepts, on the phone.
    a.find(Locator::Css("article.offer[data-case-id=\"va-ca-1\"] button.accept"))
        .await
        .expect("an accept button")
        .click()
        .await
        .expect("accept");
    until(
        &a,
        "a took it",
        "return document.querySelector('article.offer.accepted[data-case-id=\"va-ca-1\"]') !== null",
        vec![],
    )
    .await;
    // The taken case, where to go and the AED, as the phone shows it.
    a.execute("window.scrollTo(0, document.getElementById('offers').offsetTop - 64)", vec![]).await.expect("scroll");
    let png = a.screenshot().await.expect("screenshot");
    let out = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("volunteer.png");
    std::fs::write(&out, &png).expect("screenshot written");
    if std::env::var_os("UPDATE_SCREENSHOT").is_some() {
        std::fs::write(linkbus_tests::repo_root().join("docs/volunteer.png"), &png).expect("docs/volunteer.png");
    }
    // The dispatcher's API shows the acceptance.
    let record = case_until(&setup.linkbus, "va-ca-1", "a's acceptance", |r| {
        r["timeline"].as_array().is_some_and(|t| t.iter().any(|e| e["event"] == "volunteer_accepted"))
    })
    .await;
    let accepted = record["timeline"].as_array().and_then(|t| t.iter().find(|e| e["event"] == "volunteer_accepted"));
    assert_eq!(accepted.map(|e| e["actor"].clone()), Some(json!({"kind": "volunteer", "id": "vol-a"})));
    // And the dispatcher console: the case's offers say vol-a accepted.
    let console = driver.browser(&setup.dir.path().join("console")).await;
    sign_in(&console, &setup.linkbus.base, DISPATCHER).await;
    shows_case(&console, "va-ca-1").await;
    console
        .find(Locator::Css("#board-rows .row[data-case-id=\"va-ca-1\"]"))
        .await
        .expect("the case's row")
        .click()
        .await
        .expect("open the case");
    let offers = until(
        &console,
        "the acceptance in the console",
        "const d = document.querySelector('#detail[data-case-id=\"va-ca-1\"] #detail-volunteers'); \
         return d && d.innerText.includes('vol-a') && d.innerText",
        vec![],
    )
    .await;
    let offers = offers.as_str().unwrap_or_default().to_owned();
    let a_line = offers.lines().find(|l| l.contains("vol-a")).unwrap_or_default();
    assert!(a_line.contains("accepted"), "the console shows vol-a's acceptance: {offers}");
    console.close().await.expect("close the console");
    // a arrives, then hands over; the dispatcher sees both.
    for (button, event) in [("arrived", "volunteer_arrived"), ("handed_over", "volunteer_handed_over")] {
        a.find(Locator::Css(&format!("article.offer[data-case-id=\"va-ca-1\"] button.step.{button}")))
            .await
            .unwrap_or_else(|e| panic!("a {button} button: {e}"))
            .click()
            .await
            .expect("report the step");
        case_until(&setup.linkbus, "va-ca-1", event, |r| {
            r["timeline"]
                .as_array()
                .is_some_and(|t| t.iter().any(|e| e["event"] == event && e["actor"]["id"] == "vol-a"))
        })
        .await;
    }
    let done = until(&a, "handed over on a's phone", "return document.querySelector('article.offer.accepted .taken:last-of-type')?.textContent.includes('Handed over')", vec![]).await;
    assert_eq!(done, json!(true));
    // b's open app: the offer is gone, with the reason.
    let notice = until(
        &b,
        "the offer withdrawn on b's phone",
        "return !document.querySelector('article.offer[data-case-id=\"va-ca-1\"]') && \
           document.querySelector('.notice[data-case-id=\"va-ca-1\"]')?.dataset.reason",
        vec![],
    )
    .await;
    assert_eq!(notice, json!("taken"));
    let text =
        b.find(Locator::Css(".notice[data-case-id=\"va-ca-1\"]")).await.expect("notice").text().await.expect("text");
    assert!(text.contains("Another volunteer took case va-ca-1"), "{text}");

    // a's history counts the case.
    a.find(Locator::Id("history-load")).await.expect("history").click().await.expect("load history");
    until(&a, "a's history", "return document.querySelector('#history li[data-case-id=\"va-ca-1\"]') !== null", vec![])
        .await;
    // b's credential is revoked: b's open app is told so and asks to sign in again.
    let (status, _) =
        setup.call(reqwest::Method::DELETE, "api/volunteers/vol-b/credential", DISPATCHER, Value::Null).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let deadline = tokio::time::Instant::now() + WAIT + Duration::from_secs(15);
    loop {
        let signed_out = b
            .execute(
                "return !document.getElementById('login').hidden && document.getElementById('login-error').textContent",
                vec![],
            )
            .await
            .expect("script");
        if let Some(text) = signed_out.as_str() {
            assert!(text.contains("revoked"), "{text}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "b's app still open after its credential was revoked");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // 中文: b's sign-in page in Chinese.
    b.find(Locator::Id("lang")).await.expect("the language button").click().await.expect("switch");
    let title = b.find(Locator::Css("#login h1")).await.expect("title").text().await.expect("text");
    assert_eq!(title, "志愿者登录", "the sign-in, in Chinese");
    for browser in [&a, &b] {
        let errors = browser.execute("return window.linkbusVolunteer.errors()", vec![]).await.expect("errors");
        assert_eq!(errors, json!([]), "no script errors");
    }

    // A fresh phone's first load of the app: bytes on the wire and first paint.
    let fresh = driver.phone(&setup.dir.path().join("phone-c")).await;
    fresh.goto(&setup.url("volunteer/")).await.expect("the app loads");
    fresh.wait().at_most(WAIT).for_element(Locator::Css("#login:not([hidden])")).await.expect("the sign-in form");
    let measured = until(
        &fresh,
        "the load's timings",
        "const all = [...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')]; \
         const paint = performance.getEntriesByName('first-contentful-paint')[0]; \
         const nav = performance.getEntriesByType('navigation')[0]; \
         return paint && nav.loadEventEnd > 0 && { bytes: all.reduce((n, e) => n + e.transferSize, 0), \
           decoded: all.reduce((n, e) => n + e.decodedBodySize, 0), files: all.length, \
           fcp_ms: Math.round(paint.startTime), load_ms: Math.round(nav.loadEventEnd) };",
        vec![],
    )
    .await;
    println!("volunteer app, first load on a phone-sized headless Chromium: {measured}");
    // Installable: the manifest, and the service worker active over the app's scope.
    let installable = fresh
        .execute_async(
            "const done = arguments[0]; \
             Promise.all([fetch(document.querySelector('link[rel=manifest]').href).then((r) => r.json()), \
                          navigator.serviceWorker.ready]) \
               .then(([m, sw]) => done([m.start_url, m.display, sw.scope, Boolean(sw.active)]), (e) => done(String(e)));",
            vec![],
        )
        .await
        .expect("manifest and service worker");
    assert_eq!(installable, json!(["/volunteer/", "standalone", setup.url("volunteer/"), true]));
    for browser in [a, b, fresh] {
        browser.close().await.expect("close");
    }
}
