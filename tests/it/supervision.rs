//! The supervision figures (`docs/supervision.md`) against a real nats-server: hand-built case
//! records of February 2026 (as an earlier replica would have stored them) give every figure its
//! formula's value over HTTP; two replicas, and a replica started after the first stopped, give
//! the same figures; a department key reads only its own rows; February's report, once issued,
//! does not change when a late acceptance arrives, and its correction (a new version with a
//! reason) does; the public export holds no person, no case id and no group below its threshold;
//! the console's supervision view, in Chinese, shows a 街道's 三率. And `cost`, an ignored
//! measurement of keeping the figures beside routing (docs/BENCHMARKS.md).

use std::time::Duration;

use jiff::civil::date;
use jiff::{SignedDuration, Timestamp};
use linkbus::config::Config;
use linkbus::service::Service;
use linkbus_bus::nats::BUCKET_CASES;
use linkbus_cases::lifecycle::{self, Deadlines, Ladder, Policy};
use linkbus_cases::supervision::{Group, Period, Row, StatsQuery};
use linkbus_http::auth::hash_key;
use linkbus_http::config::{ApiKey, ApiRole};
use linkbus_tests::{TestBus, WAIT, department_action, sf_region};
use linkbus_wire::{Action, Actor, ActorKind, CaseRecord, CaseState, Contact};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const DISPATCHER: &str = "k-sup-dispatcher-8d2f61a0c4b9";
const SEWER: &str = "k-sup-puc-sewer-ops-3b7e90d1";
const OPERATOR: &str = "k-sup-operator-5a1c7e2f9d04";
/// The public export leaves out groups with fewer cases than this.
const MIN_COUNT: u64 = 3;

fn config(bus: &TestBus) -> Config {
    let mut config = bus.config();
    config.api.listen = "127.0.0.1:0".into();
    let key = |role, id: &str, key: &str| ApiKey { role, id: id.into(), sha256: hash_key(key), source: None };
    config.api.keys = vec![
        key(ApiRole::Dispatcher, "ada", DISPATCHER),
        key(ApiRole::Department, "puc-sewer-ops", SEWER),
        key(ApiRole::Operator, "olga", OPERATOR),
    ];
    config.api.public_stats.enabled = true;
    config.api.public_stats.min_count = MIN_COUNT;
    config
}

/// 2026-02-10 12:00 in San Francisco (20:00Z), plus `s` seconds.
fn t(s: i64) -> Timestamp {
    Timestamp::from_second(1_770_753_600 + s).expect("a time")
}

/// Deadlines of an hour to accept, three days to resolve.
fn short() -> Policy {
    Policy::default()
}

/// Deadlines far beyond the test's run, so the ticker leaves the records alone.
fn long() -> Policy {
    let d = Deadlines { accept: SignedDuration::from_hours(24 * 1000), resolve: SignedDuration::from_hours(24 * 1000) };
    Policy { deadlines: [d; 4], ..Policy::default() }
}

fn ladder() -> Ladder {
    Ladder::new(
        [("puc-sewer-ops", None), ("sf-311", None)].map(|(d, p): (&str, Option<&str>)| (d.into(), p.map(Into::into))),
        "sf-311",
    )
}

/// A case `id` of `category` routed at `at` to `puc-sewer-ops` (then `sf-311`) in `community`
/// of sub-district `sd-<community>`, with a reporter: the documented example record, as opened
/// then with `policy`'s deadlines.
fn routed(id: &str, community: &str, category: &str, at: Timestamp, policy: &Policy) -> CaseRecord {
    let mut r: CaseRecord =
        serde_json::from_str(include_str!("../../docs/examples/case-record.json")).expect("the example record");
    r.case_id = id.into();
    r.case.source_id = id.into();
    r.case.category = category.into();
    r.case.reported_at = at;
    r.case.reporter =
        Some(Contact { name: Some("Zhang San".into()), phone: Some("13800138000".into()), ..Default::default() });
    let first = &mut r.reports[0];
    (first.report_id, first.source_id, first.category, first.reported_at) = (id.into(), id.into(), category.into(), at);
    r.community = Some(linkbus_wire::CommunityRef {
        id: community.into(),
        name: community.into(),
        sub_district: Some(format!("sd-{community}")),
        district: "06075".into(),
    });
    r.state = CaseState::Routed;
    r.accepted_by = None;
    r.accept_by = Some(at + policy.deadlines(r.priority).accept);
    r.resolve_by = None;
    r.timeline.truncate(1);
    r.timeline[0].at = at;
    (r.created_at, r.updated_at) = (at, at);
    r
}

/// `r` after `by` (a department, or `resident`) did `action` at `at` under `policy`.
fn act(r: CaseRecord, by: &str, action: Action, at: Timestamp, policy: &Policy) -> CaseRecord {
    let kind = if by == "resident" { ActorKind::Resident } else { ActorKind::Department };
    let actor = Actor { kind, id: by.into() };
    lifecycle::act(&r, &actor, &action, at, policy, &ladder()).expect("allowed").record
}

fn resolve(r: CaseRecord, by: &str, at: Timestamp) -> CaseRecord {
    act(r, by, Action::Resolve { note: "fixed".into() }, at, &short())
}

fn rate(r: CaseRecord, score: u8, solved: bool, at: Timestamp) -> CaseRecord {
    act(r, "resident", Action::Rate { score, solved, comment: None }, at, &long())
}

/// February's cases, by hand:
/// - a: accepted by puc-sewer-ops after 600 s, resolved 3,600 s later, rated 5, solved;
/// - b: rejected by puc-sewer-ops, accepted by sf-311 after 120 s (in time: the rejection gave
///   it a new deadline), resolved 7,200 s later, rated 3, solved;
/// - c: escalated to sf-311 at 3,601 s (not accepted within the hour), accepted by sf-311 at
///   4,000 s, resolved 12,345 s later, rated 2, not solved (reopened, to resolve again);
/// - d: not accepted yet (its deadline far off);
/// - e: street cleaning in another community, not accepted yet.
fn february() -> Vec<CaseRecord> {
    let a = routed("sup-a", "mission", "sewer_issues", t(0), &short());
    let a = act(a, "puc-sewer-ops", Action::Accept {}, t(600), &short());
    let a = rate(resolve(a, "puc-sewer-ops", t(4_200)), 5, true, t(5_000));
    let b = routed("sup-b", "mission", "sewer_issues", t(0), &short());
    let b = act(b, "puc-sewer-ops", Action::Reject { reason: "not ours".into() }, t(60), &short());
    let b = act(b, "sf-311", Action::Accept {}, t(120), &short());
    let b = rate(resolve(b, "sf-311", t(7_320)), 3, true, t(8_000));
    let c = routed("sup-c", "mission", "sewer_issues", t(0), &short());
    let c = lifecycle::tick(&c, t(3_601), &short(), &ladder(), |_| Vec::new()).expect("escalates").record;
    let c = act(c, "sf-311", Action::Accept {}, t(4_000), &short());
    let c = rate(resolve(c, "sf-311", t(16_345)), 2, false, t(17_000));
    let d = routed("sup-d", "mission", "sewer_issues", t(0), &long());
    let e = routed("sup-e", "castro", "street_cleaning", t(86_400), &long());
    vec![a, b, c, d, e]
}

/// Stores `r` in the case bucket, as a replica stores its records.
async fn store(bus: &TestBus, r: &CaseRecord) {
    let bucket = bus.js.get_key_value(BUCKET_CASES).await.expect("the case bucket");
    let value = serde_json::to_vec(&json!({ "record": r })).expect("JSON");
    bucket.put(&r.case_id, value.into()).await.expect("stored");
}

/// February's rows of every group and period, at `now`, from a replica's book.
fn all_rows(service: &Service, now: Timestamp) -> Vec<Vec<Row>> {
    let mut out = Vec::new();
    for group in Group::ALL {
        for period in [Period::Day, Period::Week, Period::Month] {
            let q = StatsQuery { group, period, from: date(2026, 2, 1), to: date(2026, 2, 28), now, only: None };
            out.push(service.cases.stats(&q));
        }
    }
    out
}

/// Waits until `service` has February's figures `want` (its follower catches up).
async fn wait_for_rows(service: &Service, want: &[Vec<Row>], now: Timestamp) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while all_rows(service, now) != want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the replica's figures never matched:\n{:?}\n{want:?}",
            all_rows(service, now)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Http {
    base: String,
    client: reqwest::Client,
    stop: CancellationToken,
}

impl Http {
    async fn serve(config: &Config, service: &Service) -> Self {
        let listener = tokio::net::TcpListener::bind(&config.api.listen).await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let app = linkbus::up::api_app(config, &sf_region(), service).expect("the API");
        let stop = CancellationToken::new();
        tokio::spawn(linkbus_http::serve(listener, app, stop.clone().cancelled_owned()));
        Self { base, client: reqwest::Client::builder().timeout(WAIT).build().expect("client"), stop }
    }

    async fn call(&self, method: reqwest::Method, path: &str, key: Option<&str>, body: Option<Value>) -> (u16, String) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        let response = request.send().await.expect("an answer");
        let status = response.status().as_u16();
        (status, response.text().await.expect("a body"))
    }

    async fn json(&self, method: reqwest::Method, path: &str, key: Option<&str>, body: Option<Value>) -> (u16, Value) {
        let (status, text) = self.call(method, path, key, body).await;
        (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON: {text}")))
    }

    async fn get(&self, path: &str, key: &str) -> Value {
        let (status, body) = self.json(reqwest::Method::GET, path, Some(key), None).await;
        assert_eq!(status, 200, "{path}: {body}");
        body
    }
}

/// The row of `key` in `body["rows"]`.
fn row<'a>(body: &'a Value, key: &str) -> &'a Value {
    body["rows"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["key"] == key))
        .unwrap_or_else(|| panic!("no row {key}: {body}"))
}

#[tokio::test]
async fn february_by_formula_on_two_replicas_after_a_restart_and_only_ones_own() {
    let bus = TestBus::start().await;
    let config = config(&bus);
    let first = bus.service(&config).await;
    let second = bus.service(&config).await;
    for r in february() {
        store(&bus, &r).await;
    }
    let now = Timestamp::now();
    let http = Http::serve(&config, &first).await;

    // Every figure of Mission's February, by its formula (docs/supervision.md).
    let path = "/api/stats?by=community&period=month&from=2026-02-01&to=2026-02-28";
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut body = http.get(path, DISPATCHER).await;
    while body["rows"].as_array().map_or(0, |r| r.iter().map(|r| r["received"].as_u64().unwrap_or(0)).sum()) < 5 {
        assert!(tokio::time::Instant::now() < deadline, "the records never reached the figures: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
        body = http.get(path, DISPATCHER).await;
    }
    assert_eq!((body["time_zone"].clone(), body["period"].clone()), (json!("America/Los_Angeles"), json!("month")));
    let mission = row(&body, "mission");
    let expect = json!({
        "key": "mission", "period": "2026-02-01",
        "received": 4,
        // a and b in time; c escalated first; d not yet.
        "due": 4, "responded": 2, "response_rate": 0.5,
        // a, b, c rated; a, b solved; a 5 (satisfied), b 3, c 2.
        "rated": 3, "solved": 2, "resolution_rate": 2.0 / 3.0,
        "satisfied": 1, "satisfaction_rate": 1.0 / 3.0,
        // a: puc; b: puc, sf-311; c: puc, sf-311; d: puc. b rejected once.
        "assignments": 6, "returns": 1, "return_rate": 1.0 / 6.0,
        "resolved": 3, "reopened": 1, "reopen_rate": 1.0 / 3.0,
        "overdue": 0,
        // 600, 120, 4,000 s; 3,600, 7,200, 12,345 s (kept to 3 significant digits: 12,300).
        "to_accept_median_s": 600, "to_accept_p90_s": 4000,
        "to_resolve_median_s": 7200, "to_resolve_p90_s": 12300
    });
    assert_eq!(mission, &expect);
    let castro = row(&body, "castro");
    assert_eq!((castro["received"].clone(), castro["response_rate"].clone()), (json!(1), json!(0.0)));
    let ranking = http.get("/api/stats/ranking?rate=response_rate&month=2026-02&by=sub_district", OPERATOR).await;
    let order: Vec<(Value, Value)> = ranking["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| (r["row"]["key"].clone(), r["rank"].clone()))
        .collect();
    assert_eq!(order, [(json!("sd-mission"), json!(1)), (json!("sd-castro"), json!(2))]);
    // The same ranking as CSV: a header, then a line per place, its rank first.
    let csv = http
        .client
        .get(format!("{}/api/stats/ranking?rate=response_rate&month=2026-02&by=sub_district", http.base))
        .bearer_auth(OPERATOR)
        .header("accept", "text/csv")
        .send()
        .await
        .expect("an answer")
        .text()
        .await
        .expect("a body");
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("rank,value,previous,change,key,period,received,"), "{csv}");
    assert!(
        lines[1].starts_with("1,0.5,,,sd-mission,2026-02-01,4,") && lines[2].starts_with("2,0.0,,,sd-castro,"),
        "{csv}"
    );
    assert_eq!(lines.len(), 3, "{csv}");

    // A department key: its own rows only.
    let own = http.get("/api/stats?by=department&period=month&from=2026-02-01&to=2026-02-01", SEWER).await;
    let keys: Vec<&Value> = own["rows"].as_array().expect("rows").iter().map(|r| &r["key"]).collect();
    assert_eq!(keys, [&json!("puc-sewer-ops")], "{own}");
    // Given all five, rejected b; answers for a (accepted) and d, e (responsible, none accepted).
    let sewer = row(&own, "puc-sewer-ops");
    assert_eq!(
        (sewer["received"].clone(), sewer["returns"].clone(), sewer["due"].clone()),
        (json!(5), json!(1), json!(3))
    );
    // sf-311 accepted b in time, c after the escalation.
    let all = http.get("/api/stats?by=department&period=month&from=2026-02-01&to=2026-02-01", DISPATCHER).await;
    let sf311 = row(&all, "sf-311");
    assert_eq!(
        (sf311["received"].clone(), sf311["due"].clone(), sf311["responded"].clone()),
        (json!(2), json!(2), json!(1)),
        "{all}"
    );
    for refused in [
        "/api/stats?by=community",
        "/api/stats/ranking",
        "/api/stats/rising",
        "/api/stats/repeats",
        "/api/stats?by=department&key=sf-311",
    ] {
        let (status, body) = http.json(reqwest::Method::GET, refused, Some(SEWER), None).await;
        assert_eq!((status, body["code"].clone()), (403, json!("forbidden")), "{refused}");
    }
    // One key's rows; bad places and months of the rising categories and repeat addresses.
    let one = http.get("/api/stats?by=community&period=month&from=2026-02-01&to=2026-02-28&key=castro", OPERATOR).await;
    let keys: Vec<&Value> = one["rows"].as_array().expect("rows").iter().map(|r| &r["key"]).collect();
    assert_eq!(keys, [&json!("castro")]);
    for bad in ["/api/stats/rising?by=category&place=x", "/api/stats/repeats?place=", "/api/stats/rising?month=2026-13"]
    {
        let (status, body) = http.json(reqwest::Method::GET, bad, Some(OPERATOR), None).await;
        assert_eq!((status, body["code"].clone()), (422, json!("invalid")), "{bad}: {body}");
    }
    // Mission's February: no history, nothing rising; the one address of its four cases (the
    // example record's) repeated four times.
    let rising = http.get("/api/stats/rising?by=community&place=mission&month=2026-02", OPERATOR).await;
    assert_eq!((rising["rows"].clone(), rising["baseline_months"].clone()), (json!([]), json!(6)));
    let repeats = http.get("/api/stats/repeats?by=sub_district&place=sd-mission&month=2026-02", OPERATOR).await;
    let counts: Vec<(Value, usize)> = repeats["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| (r["count"].clone(), r["case_ids"].as_array().map_or(0, Vec::len)))
        .collect();
    assert_eq!(counts, [(json!(4), 4)], "{repeats}");

    // The same figures from the other replica, and from one started after the first stopped.
    let want = all_rows(&first, now);
    assert!(want.iter().any(|rows| !rows.is_empty()));
    wait_for_rows(&second, &want, now).await;
    http.stop.cancel();
    first.stop().await;
    let third = bus.service(&config).await;
    wait_for_rows(&third, &want, now).await;
    second.stop().await;
    third.stop().await;
}

#[tokio::test]
async fn an_issued_month_stays_as_issued_until_corrected_and_its_public_part_names_nobody() {
    let bus = TestBus::start().await;
    let config = config(&bus);
    let service = bus.service(&config).await;
    for r in february() {
        store(&bus, &r).await;
    }
    let http = Http::serve(&config, &service).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while service.cases.get("sup-e").is_none() {
        assert!(tokio::time::Instant::now() < deadline, "the records never reached the book");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let post = |body: Option<Value>, key: &'static str| {
        http.json(reqwest::Method::POST, "/api/reports/2026-02", Some(key), body)
    };
    let (status, refused) = post(None, OPERATOR).await;
    assert_eq!((status, refused["code"].clone()), (403, json!("forbidden")));
    let (status, v1) = post(None, DISPATCHER).await;
    assert_eq!(status, 200, "{v1}");
    assert_eq!((v1["version"].clone(), v1["issued_by"].clone()), (json!(1), json!("ada")));
    assert_eq!(row(&json!({"rows": v1["rows"]["community"]}), "mission")["responded"], 2);

    // A late acceptance: the live figures move, the report does not.
    let reply = department_action(&bus.client, "puc-sewer-ops", "sup-d", Action::Accept {}).await;
    assert!(reply.ok, "{reply:?}");
    let live = "/api/stats?by=community&period=month&from=2026-02-01&to=2026-02-01";
    let deadline = tokio::time::Instant::now() + WAIT;
    while row(&http.get(live, DISPATCHER).await, "mission")["responded"] != 3 {
        assert!(tokio::time::Instant::now() < deadline, "the late acceptance never reached the figures");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(http.get("/api/reports/2026-02", OPERATOR).await, v1);

    // A correction needs a reason; with one it is version 2, and version 1 is still there.
    let (status, refused) = post(Some(json!({"reason": " "})), DISPATCHER).await;
    assert_eq!((status, refused["code"].clone()), (422, json!("invalid")), "{refused}");
    let (status, v2) = post(Some(json!({"reason": "sup-d accepted late, after the month closed"})), DISPATCHER).await;
    assert_eq!((status, v2["version"].clone()), (200, json!(2)), "{v2}");
    assert_eq!(row(&json!({"rows": v2["rows"]["community"]}), "mission")["responded"], 3);
    assert_eq!(http.get("/api/reports/2026-02", OPERATOR).await, v2);
    assert_eq!(http.get("/api/reports/2026-02?version=1", OPERATOR).await, v1);
    let list = http.get("/api/reports", OPERATOR).await;
    assert_eq!(list["reports"], json!([{"month": "2026-02", "version": 1}, {"month": "2026-02", "version": 2}]));
    // A department reads its own row of a report, nothing else.
    let own = http.get("/api/reports/2026-02", SEWER).await;
    assert_eq!(own["rows"]["community"], json!([]));
    let departments: Vec<&Value> =
        own["rows"]["department"].as_array().expect("rows").iter().map(|r| &r["key"]).collect();
    assert_eq!(departments, [&json!("puc-sewer-ops")]);
    // This month is not over: no report of it.
    let this_month = Timestamp::now().in_tz("America/Los_Angeles").expect("zone").strftime("%Y-%m").to_string();
    let (status, _) =
        http.json(reqwest::Method::POST, &format!("/api/reports/{this_month}"), Some(DISPATCHER), None).await;
    assert_eq!(status, 409);

    // The public export: no key, by 街道 and category, nobody named, no group below MIN_COUNT.
    for (path, csv) in [("/public/stats/2026-02", false), ("/public/stats/2026-02?by=category", true)] {
        let mut request = http.client.get(format!("{}{path}", http.base));
        if csv {
            request = request.header("accept", "text/csv");
        }
        let text = request.send().await.expect("an answer").text().await.expect("a body");
        for personal in ["Zhang San", "13800138000", "sup-", "reporter", "phone", "address"] {
            assert!(!text.contains(personal), "{path} holds {personal:?}: {text}");
        }
        if csv {
            assert_eq!(
                text.lines().count(),
                2,
                "a header and sewer_issues (4 cases); street_cleaning (1) left out: {text}"
            );
            assert!(text.lines().nth(1).is_some_and(|l| l.starts_with("sewer_issues,2026-02-01,4,")), "{text}");
        } else {
            let public: Value = serde_json::from_str(&text).expect("JSON");
            assert_eq!((public["version"].clone(), public["min_count"].clone()), (json!(2), json!(MIN_COUNT)));
            let keys = |group: &str| {
                public[group].as_array().expect("rows").iter().map(|r| r["key"].clone()).collect::<Vec<_>>()
            };
            assert_eq!(
                (keys("sub_district"), keys("category")),
                (vec![json!("sd-mission")], vec![json!("sewer_issues")])
            );
        }
    }
    http.stop.cancel();
    service.stop().await;
}

/// The cost of keeping the figures, against the cost of routing, in one run: a month of cases
/// (`SUPERVISION_CASES`, default 10⁶) over Beijing's communities, each routed by the real router,
/// opened, accepted, resolved and rated by the lifecycle, its figures updated at each of the four
/// changes as the case book's index does (the record's old mark replaced by its new one);
/// then the month's 街道 ranking and community rows, timed. A measurement, not a check: run with
/// `cargo test -p linkbus-tests --test it supervision::cost -- --ignored --nocapture`; the
/// numbers are in docs/BENCHMARKS.md.
#[test]
#[ignore = "a measurement: run with --ignored --nocapture"]
fn cost() {
    use std::time::Instant;

    use geo::InteriorPoint as _;
    use linkbus_cases::supervision::{Figures, Mark, RankingQuery, Rate};
    use linkbus_geo_data::Region;
    use linkbus_matching::{OfferLedger, Router, RoutingParams, VolunteerIndex};
    use linkbus_wire::{CaseReport, Location, RoutedCase};

    let n: usize = std::env::var("SUPERVISION_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let region = Region::load(linkbus_tests::repo_root().join("geo-data/beijing")).expect("Beijing");
    let router = Router::new(&region, RoutingParams::default());
    let (volunteers, offers) = (VolunteerIndex::new(), OfferLedger::new());
    let places: Vec<Location> = region
        .communities
        .iter()
        .filter_map(|c| c.boundary.interior_point())
        .map(|p| Location { lon: p.x(), lat: p.y() })
        .collect();
    let tz = jiff::tz::TimeZone::get("Asia/Shanghai").expect("bundled");
    let month = tz.to_timestamp(date(2026, 11, 1).at(0, 0, 0, 0)).expect("a time");
    let step = SignedDuration::from_secs(30 * 86_400) / i32::try_from(n).expect("cases fit");
    let policy = Policy::default();
    let departments = Ladder::new(region.departments.departments.iter().map(|d| (d.id.clone(), None)), "none");
    let mut figures = Figures::new(tz);
    let (mut routing, mut marking, mut keeping, mut changes) = (Duration::ZERO, Duration::ZERO, Duration::ZERO, 0u64);
    let mut report = CaseReport {
        system: linkbus_wire::SourceSystem::PublicService,
        category: String::new(),
        priority: 3,
        location: places[0],
        address: None,
        reporter: None,
        description: None,
        source_id: String::new(),
        reported_at: month,
        flags: vec![],
        datum: linkbus_wire::Datum::Wgs84,
        received_location: None,
        area: None,
        media_url: None,
    };
    let mut keep = |old: Option<&Mark>, new: &CaseRecord, figures: &mut Figures| {
        let started = Instant::now();
        let mark = Mark::of(new).expect("not merged");
        let marked = Instant::now();
        figures.replace(old, Some(&mark));
        marking += marked - started;
        keeping += marked.elapsed();
        changes += 1;
        mark
    };
    for i in 0..n {
        let at = month + step * i32::try_from(i).expect("cases fit");
        report.location = places[i % places.len()];
        report.category = region.categories[i % region.categories.len()].id.clone();
        report.source_id = format!("bj-{i}");
        let started = Instant::now();
        let decision = router.decide(&report, &volunteers, &offers, at.as_second());
        routing += started.elapsed();
        let routed = RoutedCase {
            case_id: report.source_id.clone(),
            source: "/bench".into(),
            case: report.clone(),
            decision,
            routed_at: at,
        };
        let r = lifecycle::open(&routed, at, &policy);
        let mut mark = keep(None, &r, &mut figures);
        let Some(department) = r.departments.first().cloned() else { continue };
        let dept = Actor { kind: ActorKind::Department, id: department };
        let resident = Actor { kind: ActorKind::Resident, id: "reporter".into() };
        let mut r = r;
        for (k, (actor, action)) in [
            (&dept, Action::Accept {}),
            (&dept, Action::Resolve { note: "done".into() }),
            (&resident, Action::Rate { score: 1 + (i % 5) as u8, solved: i % 7 != 0, comment: None }),
        ]
        .into_iter()
        .enumerate()
        {
            let later = at + SignedDuration::from_secs(600 * (k as i64 + 1) + (i % 3_600) as i64);
            r = lifecycle::act(&r, actor, &action, later, &policy, &departments).expect("allowed").record;
            mark = keep(Some(&mark), &r, &mut figures);
        }
    }
    let routed_per_s = n as f64 / routing.as_secs_f64();
    let kept_per_s = changes as f64 / (marking + keeping).as_secs_f64();
    let now = month + SignedDuration::from_secs(31 * 86_400);
    let timed = |f: &dyn Fn() -> usize| {
        let mut times: Vec<Duration> = (0..21)
            .map(|_| {
                let started = Instant::now();
                std::hint::black_box(f());
                started.elapsed()
            })
            .collect();
        times.sort();
        (times[10], f())
    };
    let month_day = date(2026, 11, 1);
    let (ranking, places_ranked) = timed(&|| {
        figures
            .ranking(&RankingQuery { group: Group::SubDistrict, rate: Rate::SatisfactionRate, month: month_day, now })
            .len()
    });
    let rows = |group, period| StatsQuery { group, period, from: month_day, to: date(2026, 11, 30), now, only: None };
    let (communities, community_rows) = timed(&|| figures.rows(&rows(Group::Community, Period::Month)).len());
    let (daily, daily_rows) = timed(&|| figures.rows(&rows(Group::Community, Period::Day)).len());
    eprintln!(
        "{n} cases over {} communities: routing {routed_per_s:.0} decisions/s ({:.1} s); figures {kept_per_s:.0} record changes/s ({changes} changes, {:.1} s: marks {:.1} s, counters {:.1} s), {:.2}× the routing rate\n\
         ranking of {places_ranked} 街道 by satisfaction rate: {:.2} ms (median of 21)\n\
         the month by community ({community_rows} rows): {:.2} ms; by community and day ({daily_rows} rows): {:.2} ms",
        places.len(),
        routing.as_secs_f64(),
        (marking + keeping).as_secs_f64(),
        marking.as_secs_f64(),
        keeping.as_secs_f64(),
        kept_per_s / routed_per_s,
        ranking.as_secs_f64() * 1e3,
        communities.as_secs_f64() * 1e3,
        daily.as_secs_f64() * 1e3,
    );
}

/// The console's supervision view in Chinese: February's 街道 ranked by response rate, the
/// hand-built Mission cases placed in Beijing's 东华门街道 (code 110101001000), read off the table
/// as a dispatcher sees it.
#[tokio::test]
async fn the_console_ranks_a_streets_three_rates_in_chinese() {
    use crate::console::{DISPATCHER as CONSOLE_DISPATCHER, Driver, Linkbus, free_port, sign_in, until};

    let bus = TestBus::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let beijing = linkbus_tests::repo_root().join("geo-data/beijing");
    let linkbus = Linkbus::start_in(&bus, dir.path(), free_port(), &beijing, "");
    for mut r in february() {
        if let Some(c) = r.community.as_mut().filter(|c| c.id == "mission") {
            c.sub_district = Some("110101001000".into());
        }
        store(&bus, &r).await;
    }
    let driver = Driver::start();
    let browser = driver.browser(&dir.path().join("profile")).await;
    sign_in(&browser, &linkbus.base, CONSOLE_DISPATCHER).await;
    let lang = browser.find(fantoccini::Locator::Id("lang")).await.expect("the language button");
    if lang.text().await.expect("its text") == "中文" {
        lang.click().await.expect("switch to Chinese");
    }
    browser
        .find(fantoccini::Locator::Id("supervision"))
        .await
        .expect("the supervision button")
        .click()
        .await
        .expect("open");
    let choose = "const [id, value] = arguments; const el = document.getElementById(id); el.value = value; \
                  el.dispatchEvent(new Event('change')); return true;";
    browser.execute(choose, vec![json!("sup-rate"), json!("response_rate")]).await.expect("choose the rate");
    browser.execute(choose, vec![json!("sup-month"), json!("2026-02")]).await.expect("choose the month");
    let cells = until(
        &browser,
        "东华门街道's row",
        "const row = document.querySelector('#sup-rows tr[data-key=\"110101001000\"]'); \
         return row && [...row.cells].map((c) => c.textContent);",
        vec![],
    )
    .await;
    // Rank 1 of two; 4 cases; 三率: 2 of 4 in time, 2 of 3 solved, 1 of 3 satisfied; no January.
    assert_eq!(cells, json!(["1", "东华门街道办事处", "4", "50.0%", "66.7%", "33.3%", "—"]));
    let head = browser.execute("return document.getElementById('sup-head').textContent;", vec![]).await.expect("head");
    for word in ["排名", "街道", "响应率", "解决率", "满意率", "较上月"] {
        assert!(head.as_str().is_some_and(|h| h.contains(word)), "{word} in {head}");
    }
    browser.close().await.expect("the browser closes");
}

/// Noon on the 10th of month `m` of 2026 (0: January; negative: 2025's) in Beijing.
fn beijing_month(m: i8) -> Timestamp {
    let (year, month) = if m < 0 { (2025, 13 + m) } else { (2026, m + 1) };
    date(year, month, 10).at(12, 0, 0, 0).in_tz("Asia/Shanghai").expect("a time").timestamp()
}

/// Case `id` of `category` received at `at` in Beijing's community `c`, given to a department;
/// with a `score` (1–5), accepted, resolved and rated solved; without, never accepted.
fn in_community(
    id: &str,
    c: &linkbus_geo_data::Community,
    category: &str,
    at: Timestamp,
    score: Option<u8>,
) -> CaseRecord {
    let policy = if score.is_some() { short() } else { long() };
    let mut r = routed(id, &c.id, category, at, &policy);
    r.case.address = None;
    r.community = Some(linkbus_wire::CommunityRef {
        id: c.id.clone(),
        name: c.name.clone(),
        sub_district: c.sub_district.as_ref().map(|s| s.code.clone()),
        district: c.district.code.clone(),
    });
    let Some(score) = score else { return r };
    let r = act(r, "puc-sewer-ops", Action::Accept {}, at + SignedDuration::from_secs(60), &short());
    rate(
        resolve(r, "puc-sewer-ops", at + SignedDuration::from_secs(600)),
        score,
        true,
        at + SignedDuration::from_secs(1_200),
    )
}

/// 东华门街道's code.
const DONGHUAMEN: &str = "110101001000";
/// Where the seeded repeat complaints come from.
const REPEAT_ADDRESS: &str = "东城区多福巷12号";

/// Six months of cases in Beijing, September 2025 to February 2026: in 东华门街道's first
/// community (A) six street cleanings a month rated 5; in February also twelve noise reports
/// never accepted, three of them from one address; in its second (B) six in February, three rated
/// 5 and three 2; in each of `spread` other communities, cases rated by their place in the list
/// (for a coloured map); in one more community of another 街道, two rated cases only (too few to
/// shade). The ids of A, B and that one.
fn beijing_months(region: &linkbus_geo_data::Region, spread: usize) -> (Vec<CaseRecord>, [String; 3]) {
    let street = |c: &&linkbus_geo_data::Community| c.sub_district.as_ref().is_some_and(|s| s.code == DONGHUAMEN);
    let mut ours = region.communities.iter().filter(street);
    let (a, b) = (ours.next().expect("a community of 东华门"), ours.next().expect("a second"));
    let others: Vec<&linkbus_geo_data::Community> = region.communities.iter().filter(|c| !street(c)).collect();
    let few = others[0];
    let mut out = Vec::new();
    for m in -4..=1i8 {
        for i in 0..6 {
            out.push(in_community(&format!("a-{m}-{i}"), a, "street_and_sidewalk_cleaning", beijing_month(m), Some(5)));
        }
    }
    let feb = beijing_month(1);
    for i in 0..12 {
        let mut r = in_community(&format!("noise-{i}"), a, "noise_report", feb + SignedDuration::from_secs(i), None);
        if i < 3 {
            r.case.address = Some(REPEAT_ADDRESS.into());
        }
        out.push(r);
    }
    for i in 0..6u8 {
        out.push(in_community(&format!("b-{i}"), b, "tree_maintenance", feb, Some(if i < 3 { 5 } else { 2 })));
    }
    for i in 0..2 {
        out.push(in_community(&format!("few-{i}"), few, "streetlights", feb, Some(5)));
    }
    // Others all over the city, one community in every so many, each a month's worth of cases.
    let elsewhere: Vec<_> = others.iter().filter(|c| c.sub_district != few.sub_district).collect();
    let step = (elsewhere.len() / spread.max(1)).max(1);
    for (n, c) in elsewhere.iter().step_by(step).take(spread).enumerate() {
        for m in -4..=1i8 {
            for i in 0..6u8 {
                let score = if (usize::from(i) + n + m.unsigned_abs() as usize) % 7 < 5 { 5 } else { 2 };
                out.push(in_community(&format!("o-{n}-{m}-{i}"), c, "sewer_issues", beijing_month(m), Some(score)));
            }
        }
    }
    (out, [a.id.clone(), b.id.clone(), few.id.clone()])
}

/// The supervision view in Chinese on Beijing's hand-built months: 东华门街道's 三率, its
/// communities opened and ranked, the map shaded by the satisfaction rate (a 街道 colour, each
/// community's own once opened, grey with too few), the trend's six months, the noise reports
/// rising and the address they repeat from; and back. `UPDATE_SCREENSHOT=1` writes the view, 东华门
/// opened, as `docs/supervision.png`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_view_opens_a_streets_communities_shades_the_map_and_shows_trends_rises_and_repeats() {
    use crate::console::{DISPATCHER as CONSOLE_DISPATCHER, Driver, Linkbus, free_port, sign_in, until};

    let bus = TestBus::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let beijing = linkbus_tests::repo_root().join("geo-data/beijing");
    let region = linkbus_geo_data::Region::load(&beijing).expect("Beijing");
    let linkbus = Linkbus::start_in(&bus, dir.path(), free_port(), &beijing, "");
    let (records, [a, b, few]) = beijing_months(&region, 60);
    for r in &records {
        store(&bus, r).await;
    }
    let driver = Driver::start();
    let browser = driver.browser(&dir.path().join("profile")).await;
    sign_in(&browser, &linkbus.base, CONSOLE_DISPATCHER).await;
    let lang = browser.find(fantoccini::Locator::Id("lang")).await.expect("the language button");
    if lang.text().await.expect("its text") == "中文" {
        lang.click().await.expect("switch to Chinese");
    }
    // Every record in the figures before the view reads them.
    let http = reqwest::Client::builder().timeout(WAIT).build().expect("client");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = http
            .get(format!("{}api/stats?by=district&period=month&from=2025-09-01&to=2026-02-28", linkbus.base))
            .bearer_auth(CONSOLE_DISPATCHER)
            .send()
            .await
            .expect("an answer")
            .text()
            .await
            .expect("a body");
        let body: Value = serde_json::from_str(&text).expect("JSON");
        let received: u64 =
            body["rows"].as_array().map_or(0, |r| r.iter().filter_map(|r| r["received"].as_u64()).sum());
        if received == records.len() as u64 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{received} of {} records in the figures", records.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    browser.find(fantoccini::Locator::Id("supervision")).await.expect("the button").click().await.expect("open");
    let choose = "const [id, value] = arguments; const el = document.getElementById(id); el.value = value; \
                  el.dispatchEvent(new Event('change')); return true;";
    browser.execute(choose, vec![json!("sup-rate"), json!("satisfaction_rate")]).await.expect("choose the rate");
    browser.execute(choose, vec![json!("sup-month"), json!("2026-02")]).await.expect("choose the month");
    let row = |key: &str| {
        format!(
            "const row = document.querySelector('#sup-rows tr[data-key=\"{key}\"]'); \
             return row && [...row.cells].map((c) => c.textContent).slice(1);"
        )
    };
    // 东华门: 24 cases; 12 of 24 accepted in time (the noise reports never); 12 of 12 solved;
    // 9 of 12 satisfied, against January's 6 of 6.
    let cells = until(&browser, "东华门街道's row", &row(DONGHUAMEN), vec![]).await;
    assert_eq!(cells, json!(["东华门街道办事处", "24", "50.0%", "100.0%", "75.0%", "-25.0"]));
    let fill = |id: &str| format!("return window.linkbusConsole.communityFill('{id}');");
    // The map: 东华门's communities in its 75% colour, the community with two ratings grey.
    until(
        &browser,
        "A in 东华门's colour",
        &format!("return window.linkbusConsole.communityFill('{a}') === '#ffffbf';"),
        vec![],
    )
    .await;
    assert_eq!(browser.execute(&fill(&few), vec![]).await.expect("fill"), json!("#bdbdbd"));

    // Its communities: A (6 of 6) first, B (3 of 6) second; each shaded by its own rate.
    browser
        .execute(
            &format!("document.querySelector('#sup-rows tr[data-key=\"{DONGHUAMEN}\"]').click(); return true;"),
            vec![],
        )
        .await
        .expect("open 东华门");
    let ranks = until(
        &browser,
        "东华门's communities",
        "const rows = [...document.querySelectorAll('#sup-rows tr')]; \
         return !document.getElementById('sup-back').hidden && rows.map((r) => [r.dataset.key, r.cells[0].textContent, r.cells[5].textContent]);",
        vec![],
    )
    .await;
    assert_eq!(ranks, json!([[a, "1", "100.0%"], [b, "2", "50.0%"]]));
    assert_eq!(browser.execute(&fill(&a), vec![]).await.expect("fill"), json!("#1a9641"));
    assert_eq!(browser.execute(&fill(&b), vec![]).await.expect("fill"), json!("#d7191c"));
    // 东华门's trend: a point for each of the six months; the noise reports rising, surely; the
    // address they repeat from.
    let points = until(
        &browser,
        "the trend",
        "const n = document.querySelectorAll('#sup-trend circle.pt').length; return n > 0 && n;",
        vec![],
    )
    .await;
    assert_eq!(points, json!(6));
    let rising = until(
        &browser,
        "the rising categories",
        "const li = document.querySelector('#sup-rising li[data-category]'); return li && [li.dataset.category, li.textContent];",
        vec![],
    )
    .await;
    assert_eq!(rising[0], "noise_report", "{rising}");
    assert!(rising[1].as_str().is_some_and(|t| t.contains("12件") && t.contains("很可能上升")), "{rising}");
    let repeats =
        browser.execute("return document.getElementById('sup-repeats').textContent;", vec![]).await.expect("repeats");
    assert!(repeats.as_str().is_some_and(|t| t.contains(REPEAT_ADDRESS) && t.contains("3件")), "{repeats}");
    let png = browser.screenshot().await.expect("a screenshot");
    if std::env::var_os("UPDATE_SCREENSHOT").is_some() {
        std::fs::write(linkbus_tests::repo_root().join("docs/supervision.png"), &png)
            .expect("write docs/supervision.png");
    }

    // By week: the twelve weeks up to February's last, three of them with ratings (the 10ths of
    // December, January and February).
    browser.execute(choose, vec![json!("sup-period"), json!("week")]).await.expect("by week");
    until(
        &browser,
        "the weekly trend",
        "return document.querySelectorAll('#sup-trend circle.pt').length === 3;",
        vec![],
    )
    .await;
    browser.execute(choose, vec![json!("sup-period"), json!("month")]).await.expect("by month");
    // B chosen: its own trend, one month; back: the 街道 again, and A in 东华门's colour again.
    browser
        .execute(&format!("document.querySelector('#sup-rows tr[data-key=\"{b}\"]').click(); return true;"), vec![])
        .await
        .expect("choose B");
    until(&browser, "B's trend", "return document.querySelectorAll('#sup-trend circle.pt').length === 1;", vec![])
        .await;
    browser.find(fantoccini::Locator::Id("sup-back")).await.expect("back").click().await.expect("back");
    until(&browser, "the 街道 again", &row(DONGHUAMEN), vec![]).await;
    assert_eq!(browser.execute(&fill(&a), vec![]).await.expect("fill"), json!("#ffffbf"));
    browser.close().await.expect("the browser closes");
}

/// `[supervision] issue_on_day`: two replicas issue last month's report once, as "linkbus
/// (scheduled)"; asked again, neither issues another; a day a month may lack is refused.
#[tokio::test]
async fn last_months_report_is_issued_once_on_its_day_by_any_replica() {
    let bus = TestBus::start().await;
    let mut config = config(&bus);
    config.supervision.issue_on_day = Some(1);
    let (first, second) = (bus.service(&config).await, bus.service(&config).await);
    let last = (Timestamp::now().in_tz("America/Los_Angeles").expect("zone").date().first_of_month().yesterday())
        .expect("a day")
        .strftime("%Y-%m")
        .to_string();
    let deadline = tokio::time::Instant::now() + WAIT;
    let versions = loop {
        let versions = first.reports.versions().await.expect("the versions");
        if !versions.is_empty() {
            break versions;
        }
        assert!(tokio::time::Instant::now() < deadline, "last month's report was never issued");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(versions.iter().map(|v| (v.month.as_str(), v.version)).collect::<Vec<_>>(), [(last.as_str(), 1)]);
    let report = first.reports.get(&last, None).await.expect("read").expect("issued");
    assert_eq!(report.issued_by, linkbus_cases::reports::SCHEDULED_BY);
    for replica in [&first, &second] {
        let again = replica.reports.issue_if_due(&replica.cases, 1, Timestamp::now()).await.expect("asked again");
        assert_eq!(again, None);
    }
    assert_eq!(first.reports.versions().await.expect("the versions").len(), 1);
    first.stop().await;
    second.stop().await;
    // Without the schedule, on a bus of its own: not due before its day, issued on it.
    let quiet = TestBus::start().await;
    let service = quiet.service(&quiet.config()).await;
    let today = Timestamp::now().in_tz("America/Los_Angeles").expect("zone").day();
    if today < 28 {
        assert_eq!(
            service.reports.issue_if_due(&service.cases, today + 1, Timestamp::now()).await.expect("asked"),
            None
        );
        assert!(service.reports.versions().await.expect("the versions").is_empty());
    }
    let issued = service.reports.issue_if_due(&service.cases, today, Timestamp::now()).await.expect("asked");
    assert_eq!(issued.map(|r| (r.month, r.version)), Some((last, 1)));
    service.stop().await;
    let refused = Config::parse("[supervision]\nissue_on_day = 29\n").expect_err("day 29 refused");
    assert!(refused.to_string().contains("issue_on_day"), "{refused}");
}
