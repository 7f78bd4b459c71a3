//! The resident's tracking proofs over real HTTP, on a real nats-server with the service in
//! process and the API served as `linkbus up` serves it: an Open311 POST's answer carries the
//! case's tracking token and link (under `[api].public_url`) and a QR code of it; the token (or the
//! last 4 digits of the reporter's phone) shows the public view of the case through acceptance,
//! a dispatcher's internal reassignment and resolution, with nothing of the reporter, the
//! dispatcher's reason or other ids; a rating with the token reopens it. A wrong token or wrong
//! digits answer exactly as an unknown case; a merged neighbour's own proof shows the case
//! handling both; 5 wrong digits from a guesser (at 127.0.0.2) lock the case's phone proof (its
//! token still works), 10 misses lock the guesser's address out of everything but not the
//! resident's, counted in the metrics.

use linkbus::config::Config;
use linkbus::service::Service;
use linkbus_http::auth;
use linkbus_http::config::{ApiKey, ApiRole};
use linkbus_tests::{TestBus, WAIT, department_action, wait_for_case};
use linkbus_wire as wire;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const APP: &str = "k-track-open311-app-8d2f4a6c1e3b5079";
const DISPATCHER: &str = "k-track-dispatcher-3e9a1c7b5d2f4068";
const PUBLIC_URL: &str = "https://linkbus.example.gov";

fn keys() -> Vec<ApiKey> {
    let key = |role, id: &str, key: &str, source: Option<&str>| ApiKey {
        role,
        id: id.into(),
        sha256: auth::hash_key(key),
        source: source.map(str::to_owned),
    };
    vec![key(ApiRole::Source, "sf-311-app", APP, Some("/open311")), key(ApiRole::Dispatcher, "ada", DISPATCHER, None)]
}

async fn serve(config: &Config, service: &Service) -> (String, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let app = linkbus::up::api_app(config, &linkbus_tests::sf_region(), service).expect("app");
    let stop = CancellationToken::new();
    tokio::spawn(linkbus_http::serve(listener, app, stop.clone().cancelled_owned()));
    (base, stop)
}

struct Http {
    base: String,
    http: reqwest::Client,
}

impl Http {
    async fn post_json(&self, path: &str, body: Value) -> (u16, Value, reqwest::header::HeaderMap) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("response");
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        let bytes = response.bytes().await.expect("body");
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null), headers)
    }

    async fn get(&self, path: &str) -> (u16, reqwest::header::HeaderMap, String) {
        let response = self.http.get(format!("{}{path}", self.base)).send().await.expect("response");
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        (status, headers, response.text().await.expect("body"))
    }
}

/// A request as a 311 app posts it, by a reporter whose phone ends in 0100.
const FORM: &str = "api_key=k-track-open311-app-8d2f4a6c1e3b5079&service_code=SEWER&lat=37.7599673&long=-122.4236412\
    &address_string=Intersection+of+19TH+ST+and+GUERRERO+ST&email=resident%40example.org&first_name=Ada\
    &last_name=Lovelace&phone=555-0100&description=Sewer+backing+up+into+the+street";

/// Every key and text of a public view except its timestamps, whose nanoseconds may hold any
/// digits (a run once had "…065556033Z").
fn shown_text(view: &Value) -> String {
    match view {
        Value::Object(fields) => fields.iter().map(|(key, value)| format!("{key} {}\n", shown_text(value))).collect(),
        Value::Array(items) => items.iter().map(shown_text).collect(),
        Value::String(text) if text.parse::<jiff::Timestamp>().is_ok() => String::new(),
        other => other.to_string(),
    }
}

#[tokio::test]
async fn a_resident_tracks_a_request_by_its_token_and_guessers_are_locked_out() {
    let bus = TestBus::start().await;
    let mut config = bus.config();
    config.api.keys = keys();
    config.api.public_rate_per_minute = 1000;
    config.api.public_url = format!("{PUBLIC_URL}/");
    let service = bus.service(&config).await;
    let (base, _stop) = serve(&config, &service).await;
    let client = Http { base, http: reqwest::Client::builder().timeout(WAIT).build().expect("client") };

    // The Open311 answer carries the token, the link and its QR code.
    let response = client
        .http
        .post(format!("{}/open311/v2/requests.json", client.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(FORM)
        .send()
        .await
        .expect("posted");
    assert_eq!(response.status().as_u16(), 201);
    let created: Value = serde_json::from_slice(&response.bytes().await.expect("body")).expect("JSON");
    let id = created[0]["service_request_id"].as_str().expect("an id");
    let case_id = format!("open311-{id}");
    let token = created[0]["tracking_token"].as_str().expect("a tracking token").to_owned();
    assert!(token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit()), "{token}");
    assert_eq!(created[0]["tracking_url"], json!(format!("{PUBLIC_URL}/track/{case_id}?t={token}")));
    assert_eq!(created[0]["tracking_qr"], json!(format!("{PUBLIC_URL}/track/{case_id}/qr.svg?t={token}")));
    let record = wait_for_case(&service, &case_id, "routed", |_| true).await;
    assert!(!serde_json::to_string(&record).expect("JSON").contains(&token), "the case record does not hold the token");

    // The token shows the public view.
    let track = format!("/api/track/{case_id}");
    let (status, view, _) = client.post_json(&track, json!({ "token": token })).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!((view["case_id"].as_str(), view["state"].as_str()), (Some(case_id.as_str()), Some("routed")));
    assert_eq!(view["department"], "PUC Sewer Ops");
    assert_eq!(view["category_name"], "Sewer Issues");
    assert_eq!(view["reports"], 1);
    assert!(view["accept_deadline"]["by"].is_string() && view["accept_deadline"].get("met").is_none(), "{view}");

    // A neighbour reports the same overflow 40 m away: merged, their own token (and their own
    // phone digits, not the first reporter's) show the case handling it, joined by 2 reports.
    let neighbour_form = FORM.replace("lat=37.7599673", "lat=37.7603").replace("555-0100", "555-0199");
    let response = client
        .http
        .post(format!("{}/open311/v2/requests.json", client.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(neighbour_form)
        .send()
        .await
        .expect("posted");
    let created: Value = serde_json::from_slice(&response.bytes().await.expect("body")).expect("JSON");
    let neighbour = format!("open311-{}", created[0]["service_request_id"].as_str().expect("an id"));
    let neighbour_token = created[0]["tracking_token"].as_str().expect("a token").to_owned();
    assert_ne!(neighbour_token, token);
    wait_for_case(&service, &neighbour, "merged", |r| r.merged_into.is_some()).await;
    let neighbour_track = format!("/api/track/{neighbour}");
    let (status, view, _) = client.post_json(&neighbour_track, json!({ "token": neighbour_token })).await;
    assert_eq!((status, view["case_id"].as_str(), view["reports"].as_u64()), (200, Some(case_id.as_str()), Some(2)));
    let (status, view, _) = client.post_json(&neighbour_track, json!({ "phone": "0199" })).await;
    assert_eq!((status, view["case_id"].as_str()), (200, Some(case_id.as_str())));
    let (status, _, _) = client.post_json(&neighbour_track, json!({ "phone": "0100" })).await;
    assert_eq!(status, 404, "the first reporter's digits are not the neighbour's proof");
    let (status, _, _) = client.post_json(&track, json!({ "token": neighbour_token })).await;
    assert_eq!(status, 404, "the neighbour's token is not the first report's");

    // A dispatcher reassigns it with an internal reason; the new department accepts and resolves.
    let reassign = json!({ "action": "reassign", "department": "dpw-ops-queue", "reason": "INTERNAL-crew-short" });
    let response = client
        .http
        .post(format!("{}/api/cases/{case_id}/actions", client.base))
        .bearer_auth(DISPATCHER)
        .header("content-type", "application/json")
        .body(reassign.to_string())
        .send()
        .await
        .expect("reassigned");
    assert_eq!(response.status().as_u16(), 200, "{}", response.text().await.unwrap_or_default());
    assert!(department_action(&bus.client, "dpw-ops-queue", &case_id, wire::Action::Accept {}).await.ok);
    let resolve = wire::Action::Resolve { note: "Main unblocked, street cleaned".into() };
    assert!(department_action(&bus.client, "dpw-ops-queue", &case_id, resolve).await.ok);
    let (status, view, _) = client.post_json(&track, json!({ "token": token })).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!((view["state"].as_str(), view["can_rate"].as_bool()), (Some("resolved"), Some(true)));
    assert_eq!(view["department"], "DPW Ops Queue", "named from the region: {view}");
    assert_eq!(view["accept_deadline"], json!({ "met": true }), "{view}");
    assert_eq!(view["resolve_deadline"], json!({ "met": true }), "{view}");
    let events: Vec<&str> =
        view["timeline"].as_array().expect("timeline").iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(events, ["routed", "report_merged", "reassigned", "accepted", "resolved"]);
    assert_eq!(view["timeline"][4]["note"], "Main unblocked, street cleaned");
    let text = shown_text(&view).replace(&case_id, "");
    for private in ["INTERNAL-crew-short", "555", "0100", "Ada", "Lovelace", "resident@", "\"ada\""] {
        assert!(!text.contains(private), "{private} is not shown: {view}");
    }

    // The phone's last digits show the same; the page and the QR code are served with the
    // console's headers.
    let (status, by_phone, _) = client.post_json(&track, json!({ "phone": "0100" })).await;
    assert_eq!((status, by_phone["case_id"].as_str()), (200, Some(case_id.as_str())));
    let (status, by_number, _) = client.post_json(&format!("/api/track/{id}"), json!({ "phone": "0100" })).await;
    assert_eq!((status, by_number["case_id"].as_str()), (200, Some(case_id.as_str())), "by the request number");
    let (status, headers, svg) = client.get(&format!("/track/{case_id}/qr.svg?t={token}")).await;
    assert_eq!((status, headers["content-type"].to_str().ok()), (200, Some("image/svg+xml")));
    assert!(svg.contains("<svg") && svg.contains("<path"), "{svg}");
    let (status, headers, page) = client.get(&format!("/track/{case_id}?t={token}")).await;
    assert_eq!(status, 200);
    assert!(page.contains("/track/assets/track.js"), "{page}");
    let csp = headers["content-security-policy"].to_str().expect("a CSP");
    assert!(
        csp.starts_with("default-src 'none'; script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["x-content-type-options"], "nosniff");

    // Malformed proofs are 422 and count for nothing.
    for bad in
        [json!({}), json!({ "token": token, "phone": "0100" }), json!({ "phone": "01a0" }), json!({ "phone": "100" })]
    {
        let (status, error, _) = client.post_json(&track, bad.clone()).await;
        assert_eq!((status, error["code"].as_str()), (422, Some("invalid")), "{bad}");
    }

    // A wrong token is answered as an unknown case is, and so is the QR code's.
    let wrong = format!("{}{}", &token[..31], if token.ends_with('0') { '1' } else { '0' });
    let (status, refused, _) = client.post_json(&track, json!({ "token": wrong })).await;
    let (unknown_status, unknown, _) =
        client.post_json("/api/track/open311-0000000000000000", json!({ "token": token })).await;
    assert_eq!((status, unknown_status), (404, 404));
    assert_eq!(refused, unknown, "nothing tells a wrong proof from an unknown case");
    assert_eq!(client.get(&format!("/track/{case_id}/qr.svg?t={wrong}")).await.0, 404);

    // Resolved, not solved: the rating reopens it.
    let rating = json!({ "token": token, "score": 2, "solved": false, "comment": "still smells" });
    let (status, rated, _) = client.post_json(&format!("{track}/rating"), rating).await;
    assert_eq!(status, 200, "{rated}");
    assert_ne!(rated["state"], "resolved", "{rated}");
    let events: Vec<&str> =
        rated["timeline"].as_array().expect("timeline").iter().filter_map(|e| e["event"].as_str()).collect();
    assert!(events.ends_with(&["rated", "reopened"]), "{events:?}");

    // A guesser at another address: 5 wrong digits lock the case's phone proof for everyone
    // (the resident's right digits are refused 429), but its token still works.
    let guesser = Http {
        base: client.base.clone(),
        http: reqwest::Client::builder()
            .timeout(WAIT)
            .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
            .build()
            .expect("client"),
    };
    for n in 1..=5 {
        let (status, _, _) = guesser.post_json(&track, json!({ "phone": format!("{:04}", 9000 + n) })).await;
        assert_eq!(status, 404, "wrong digits {n}");
    }
    let (status, _, headers) = client.post_json(&track, json!({ "phone": "0100" })).await;
    assert_eq!(status, 429, "the case's phone proof is locked");
    let retry: u64 = headers["retry-after"].to_str().expect("ascii").parse().expect("seconds");
    assert!((3000..=3600).contains(&retry), "locked for about an hour: {retry}");
    let (status, _, _) = client.post_json(&track, json!({ "token": token })).await;
    assert_eq!(status, 200, "the token still works");

    // 5 more misses make 10: the guesser is locked out of every case, even with a valid token;
    // the resident (5 misses at its address) is not.
    for n in 0..5 {
        let (status, _, _) =
            guesser.post_json(&format!("/api/track/open311-{n:016}"), json!({ "phone": "1234" })).await;
        assert_eq!(status, 404);
    }
    let (status, error, _) = guesser.post_json(&track, json!({ "token": token })).await;
    assert_eq!((status, error["code"].as_str()), (429, Some("rate_limited")));
    let (status, _, _) = client.post_json(&track, json!({ "token": token })).await;
    assert_eq!(status, 200, "another address is not locked");

    let (_, _, metrics) = client.get("/metrics").await;
    for line in [
        "linkbus_track_lockouts_total{scope=\"case\"} 1",
        "linkbus_track_lockouts_total{scope=\"client\"} 1",
        "linkbus_track_views_total{proof=\"phone\"} 3",
        "linkbus_track_refusals_total{reason=\"no_match\"} 15",
        "linkbus_track_refusals_total{reason=\"locked\"} 2",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
}
