//! Open311 GeoReport v2 over real HTTP, on a real nats-server with the service in process and the
//! API served as `linkbus up` serves it: a 311 app posts a request form-encoded exactly as the
//! spec says, gets its `service_request_id`, the request is routed as a case on the right
//! subjects, and `GET requests/{id}` shows its status in JSON and XML, changing as the department
//! accepts and resolves it. The same request posted twice is one case; every bad request gets the
//! spec's error list (JSON or XML) with the right status and is kept in `deadletter.adapter_open311`.

use std::time::Duration;

use linkbus::config::Config;
use linkbus::service::Service;
use linkbus_bus::nats;
use linkbus_http::auth;
use linkbus_http::config::{ApiKey, ApiRole};
use linkbus_tests::{TestBus, WAIT, department_action, header, read_stream, repo_root, sf_region, wait_for_case};
use linkbus_wire::{self as wire, Datum, SourceSystem};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The city's 311 app, posting as the Open311 source.
const APP: &str = "k-open311-app-4b1d8e0c2a6f9357";
/// The grid system's key: a source key, but for another source.
const GRID: &str = "k-grid-7a3c5e9b1d0f2468";
const DISPATCHER: &str = "k-dispatcher-5f0c3a9e61d24b7c8e1f";

/// 19th St and Guerrero, in the Mission: sewer issues go to `puc-sewer-ops`.
const MISSION: (&str, &str) = ("37.7599673", "-122.4236412");

fn keys() -> Vec<ApiKey> {
    let key = |role, id: &str, key: &str, source: Option<&str>| ApiKey {
        role,
        id: id.into(),
        sha256: auth::hash_key(key),
        source: source.map(str::to_owned),
    };
    vec![
        key(ApiRole::Source, "sf-311-app", APP, Some("/open311")),
        key(ApiRole::Source, "grid", GRID, None),
        key(ApiRole::Dispatcher, "ada", DISPATCHER, None),
    ]
}

/// Serves the API of `service` as `linkbus up` does, on a real socket; its base URL.
async fn serve(config: &Config, service: &Service) -> (String, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let app = linkbus::up::api_app(config, &sf_region(), service).expect("app");
    let stop = CancellationToken::new();
    tokio::spawn(linkbus_http::serve(listener, app, stop.clone().cancelled_owned()));
    (base, stop)
}

struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    /// Posts a body exactly as given.
    async fn post(&self, path: &str, content_type: &str, body: impl Into<reqwest::Body>) -> (u16, String, Vec<u8>) {
        self.post_as(path, content_type, body, None).await
    }

    /// Posts a body exactly as given, with `Authorization: Bearer <key>` if given.
    async fn post_as(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
        key: Option<&str>,
    ) -> (u16, String, Vec<u8>) {
        let mut request =
            self.http.post(format!("{}{path}", self.base)).header("content-type", content_type).body(body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = tokio::time::timeout(WAIT, request.send()).await.expect("in time").expect("response");
        let status = response.status().as_u16();
        let content_type = response.headers()["content-type"].to_str().expect("ascii").to_owned();
        (status, content_type, response.bytes().await.expect("body").to_vec())
    }

    async fn get(&self, path: &str) -> (u16, String, Vec<u8>) {
        let response = tokio::time::timeout(WAIT, self.http.get(format!("{}{path}", self.base)).send())
            .await
            .expect("in time")
            .expect("response");
        let status = response.status().as_u16();
        let content_type = response.headers()["content-type"].to_str().expect("ascii").to_owned();
        (status, content_type, response.bytes().await.expect("body").to_vec())
    }

    async fn get_json(&self, path: &str) -> (u16, Value) {
        let (status, content_type, body) = self.get(path).await;
        assert!(content_type.starts_with("application/json"), "{path}: {content_type}");
        (status, serde_json::from_slice(&body).expect("JSON"))
    }
}

/// A form as a 311 app sends it.
fn form(service_code: &str, lat: &str, long: &str, description: &str) -> String {
    format!(
        "api_key={APP}&jurisdiction_id=sfgov.org&service_code={service_code}&lat={lat}&long={long}\
         &address_string=Intersection+of+19TH+ST+and+GUERRERO+ST&email=resident%40example.org\
         &device_id=ios-3f2a&account_id=acct-77&first_name=Ada&last_name=Lovelace&phone=555-0100\
         &description={description}&media_url=https%3A%2F%2Fphotos.example.org%2F1.jpg\
         &attribute%5BWHERE%5D=street"
    )
}

const FORM: &str = "application/x-www-form-urlencoded";
/// A multipart form's content type, its boundary `b0undary`.
const MULTIPART: &str = "multipart/form-data; boundary=b0undary";

/// A multipart request of the Open311 app with a photo attached.
fn multipart_with_photo() -> Vec<u8> {
    let mut body = String::new();
    for (name, value) in [("service_code", "SEWER"), ("lat", MISSION.0), ("long", MISSION.1), ("description", "x")] {
        body.push_str(&format!("--b0undary\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"));
    }
    body.push_str("--b0undary\r\nContent-Disposition: form-data; name=\"media\"; filename=\"p.jpg\"\r\n");
    body.push_str("Content-Type: image/jpeg\r\n\r\nJFIF\r\n--b0undary--\r\n");
    body.into_bytes()
}

/// The `media_url` of [`form`].
const PHOTO: &str = "https://photos.example.org/1.jpg";

/// Checks an error answer has the spec's shape: `[{code, description}]` with `code` the status.
fn assert_spec_error(status: u16, content_type: &str, body: &[u8], expected: u16, mentions: &str) {
    assert_eq!(status, expected, "{}", String::from_utf8_lossy(body));
    if content_type.starts_with("application/json") {
        let errors: Value = serde_json::from_slice(body).expect("JSON");
        let list = errors.as_array().expect("an array of errors");
        assert_eq!(list.len(), 1, "{errors}");
        assert_eq!(list[0]["code"], json!(expected), "{errors}");
        let description = list[0]["description"].as_str().expect("description");
        assert!(description.contains(mentions), "{description:?} does not mention {mentions:?}");
    } else {
        assert!(content_type.starts_with("text/xml"), "{content_type}");
        let text = std::str::from_utf8(body).expect("UTF-8");
        let doc = roxmltree::Document::parse(text).expect("XML");
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "errors");
        let error = root.children().find(|n| n.has_tag_name("error")).expect("<error>");
        assert_eq!(child_text(error, "code"), Some(expected.to_string()));
        assert!(child_text(error, "description").is_some_and(|d| d.contains(mentions)), "{text}");
    }
}

fn child_text(node: roxmltree::Node, name: &str) -> Option<String> {
    node.children().find(|n| n.has_tag_name(name)).and_then(|n| n.text()).map(str::to_owned)
}

#[tokio::test]
async fn a_311_app_posts_a_request_and_follows_it_to_resolution() {
    let bus = TestBus::start().await;
    let mut config = bus.config();
    config.api.keys = keys();
    config.api.public_rate_per_minute = 200;
    let service = bus.service(&config).await;
    let (base, stop) = serve(&config, &service).await;
    let client = Client { base, http: reqwest::Client::builder().timeout(WAIT).build().expect("client") };

    // The services: the configured codes, named from the region, and the region's categories.
    let (status, services) = client.get_json("/open311/v2/services.json").await;
    assert_eq!(status, 200);
    let list = services.as_array().expect("an array of services");
    let sewer = list.iter().find(|s| s["service_code"] == "SEWER").expect("SEWER is offered");
    assert_eq!(sewer["service_name"], "Sewer Issues");
    assert_eq!((sewer["metadata"].clone(), sewer["type"].clone()), (json!(false), json!("realtime")));
    for field in ["service_code", "service_name", "description", "metadata", "type", "keywords", "group"] {
        assert!(list.iter().all(|s| s.get(field).is_some()), "every service has {field}");
    }
    assert!(list.iter().any(|s| s["service_code"] == "street_and_sidewalk_cleaning"), "region categories too");
    let (status, content_type, xml) = client.get("/open311/v2/services.xml").await;
    assert_eq!((status, content_type.as_str()), (200, "text/xml; charset=utf-8"));
    let xml = String::from_utf8(xml).expect("UTF-8");
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"utf-8\"?>"), "{xml}");
    let doc = roxmltree::Document::parse(&xml).expect("XML");
    assert_eq!(doc.root_element().tag_name().name(), "services");
    let services_xml: Vec<_> = doc.root_element().children().filter(|n| n.has_tag_name("service")).collect();
    assert_eq!(services_xml.len(), list.len());
    let (status, definition) = client.get_json("/open311/v2/services/SEWER.json").await;
    assert_eq!((status, definition), (200, json!({"service_code": "SEWER", "attributes": []})));
    let (status, content_type, body) = client.get("/open311/v2/services/NOPE.xml").await;
    assert_spec_error(status, &content_type, &body, 404, "NOPE");

    // A real-format request in: 201 with its id.
    let posted = form("SEWER", MISSION.0, MISSION.1, "Sewer+backing+up+into+the+street%2C+smells+bad");
    let (status, content_type, body) = client.post("/open311/v2/requests.json", FORM, posted.clone()).await;
    assert_eq!((status, content_type.as_str()), (201, "application/json; charset=utf-8"));
    let created: Value = serde_json::from_slice(&body).expect("JSON");
    let id = created[0]["service_request_id"].as_str().expect("an id").to_owned();
    assert!(created[0]["service_notice"].is_string(), "{created}");
    assert_eq!(created[0]["account_id"], "acct-77", "the poster's own account_id, echoed: {created}");
    let case_id = format!("open311-{id}");

    // Routed as a public-service case to the sewer department, on the right subjects.
    let record = wait_for_case(&service, &case_id, "routed", |_| true).await;
    assert_eq!((record.case.system, record.case.category.as_str()), (SourceSystem::PublicService, "sewer_issues"));
    assert_eq!(record.departments, ["puc-sewer-ops"]);
    assert_eq!(record.community.as_ref().map(|c| c.id.as_str()), Some("mission"));
    assert_eq!(record.reports[0].source, "/open311");
    let description = record.case.description.clone().unwrap_or_default();
    assert!(description.contains("smells bad") && !description.contains("photos.example.org"), "{description}");
    // Every personal field reaches the case, for the department and the dispatchers.
    let reporter = record.case.reporter.clone().expect("the reporter");
    assert_eq!(
        (reporter.name.as_deref(), reporter.phone.as_deref(), reporter.email.as_deref()),
        (Some("Ada Lovelace"), Some("555-0100"), Some("resident@example.org"))
    );
    assert_eq!((reporter.device_id.as_deref(), reporter.account_id.as_deref()), (Some("ios-3f2a"), Some("acct-77")));
    assert_eq!(record.case.media_url.as_deref(), Some(PHOTO));
    let ingested =
        read_stream(&bus.js, nats::STREAM_INGEST_PUBLIC_SERVICE, "ingest.public_service.sewer_issues", 1).await;
    assert_eq!(ingested.iter().filter(|m| header(m, "Nats-Msg-Id").as_deref() == Some(case_id.as_str())).count(), 1);
    let routed = read_stream(&bus.js, nats::STREAM_ROUTED, "routed.dept.puc-sewer-ops.sewer_issues.>", 1).await;
    assert!(routed.iter().any(|m| String::from_utf8_lossy(&m.payload).contains(&case_id)));

    // Its status, as the app reads it back.
    let one = format!("/open311/v2/requests/{id}.json?api_key={APP}");
    let (status, view) = client.get_json(&one).await;
    assert_eq!(status, 200, "{view}");
    let request = &view[0];
    assert_eq!(request["service_request_id"], json!(id));
    assert_eq!(request["status"], "open");
    assert_eq!(request["service_code"], "SEWER");
    assert_eq!(request["agency_responsible"], "PUC Sewer Ops");
    assert_eq!(request["address"], "Intersection of 19TH ST and GUERRERO ST");
    assert_eq!((request["lat"].as_f64(), request["long"].as_f64()), (Some(37.7599673), Some(-122.4236412)));
    assert_eq!(request["media_url"], PHOTO, "media_url is answered back");
    for field in ["status_notes", "requested_datetime", "updated_datetime", "service_notice", "media_url", "zipcode"] {
        assert!(request.get(field).is_some(), "{field} is there (null when unknown): {request}");
    }
    let requested = request["requested_datetime"].as_str().expect("a date-time");
    assert!(requested.len() == 20 && requested.ends_with('Z'), "w3c, whole seconds, UTC: {requested}");
    assert!(requested.parse::<jiff::Timestamp>().is_ok(), "{requested}");
    assert!(request.get("phone").is_none() && request.get("email").is_none(), "no contact details: {request}");

    // The same request posted again (a retry) is the same request and the same case.
    let (status, _, body) = client.post("/open311/v2/requests.xml", FORM, posted.clone()).await;
    assert_eq!(status, 201);
    let text = String::from_utf8(body).expect("UTF-8");
    let doc = roxmltree::Document::parse(&text).expect("XML");
    assert_eq!(doc.root_element().tag_name().name(), "service_requests");
    let again = doc.root_element().children().find(|n| n.has_tag_name("request")).expect("<request>");
    assert_eq!(child_text(again, "service_request_id"), Some(id.clone()));
    let ingested = read_stream(&bus.js, nats::STREAM_INGEST_PUBLIC_SERVICE, "ingest.public_service.>", 1).await;
    assert_eq!(ingested.iter().filter(|m| header(m, "Nats-Msg-Id").as_deref() == Some(case_id.as_str())).count(), 1);

    // The department accepts, then resolves: the status follows, in XML too.
    let accepted = department_action(&bus.client, "puc-sewer-ops", &case_id, wire::Action::Accept {}).await;
    assert!(accepted.ok, "{accepted:?}");
    let (_, view) = client.get_json(&one).await;
    assert_eq!(
        (view[0]["status"].clone(), view[0]["status_notes"].clone()),
        (json!("open"), json!("accepted by the department"))
    );
    assert!(view[0]["expected_datetime"].is_string(), "the resolve deadline: {view}");
    let resolve = wire::Action::Resolve { note: "Main unblocked, street cleaned".into() };
    assert!(department_action(&bus.client, "puc-sewer-ops", &case_id, resolve).await.ok);
    let (status, content_type, body) = client.get(&format!("/open311/v2/requests/{id}.xml?api_key={APP}")).await;
    assert_eq!((status, content_type.as_str()), (200, "text/xml; charset=utf-8"));
    let text = String::from_utf8(body).expect("UTF-8");
    let doc = roxmltree::Document::parse(&text).expect("XML");
    let request = doc.root_element().children().find(|n| n.has_tag_name("request")).expect("<request>");
    assert_eq!(child_text(request, "status").as_deref(), Some("closed"), "{text}");
    assert_eq!(child_text(request, "status_notes").as_deref(), Some("Main unblocked, street cleaned"));
    assert_eq!(child_text(request, "agency_responsible").as_deref(), Some("PUC Sewer Ops"));
    assert!(request.children().any(|n| n.has_tag_name("zipcode")), "empty elements for unknown fields: {text}");

    // A neighbour reports the same overflow 40 m away: merged into the case, the neighbour sees
    // what they posted and the state of the case handling it.
    let posted = form("SEWER", "37.7603", "-122.4236412", "Same+overflow%2C+seen+from+across+the+street");
    let (status, _, body) = client.post("/open311/v2/requests.json", FORM, posted).await;
    assert_eq!(status, 201);
    let created: Value = serde_json::from_slice(&body).expect("JSON");
    let neighbour = created[0]["service_request_id"].as_str().expect("id").to_owned();
    let merged = wait_for_case(&service, &format!("open311-{neighbour}"), "merged", |r| r.merged_into.is_some()).await;
    assert_eq!(merged.merged_into.as_deref(), Some(case_id.as_str()));
    let (_, view) = client.get_json(&format!("/open311/v2/requests/{neighbour}.json?api_key={APP}")).await;
    assert_eq!(view[0]["service_request_id"], json!(neighbour));
    assert_eq!(view[0]["description"], json!("Same overflow, seen from across the street\nAttributes: WHERE=street"));
    assert_eq!(view[0]["lat"].as_f64(), Some(37.7603));
    assert_eq!(
        (view[0]["status"].clone(), view[0]["status_notes"].clone()),
        (json!("closed"), json!("Main unblocked, street cleaned"))
    );

    // Listing by id (unknown ids left out), and by status.
    let (_, listed) =
        client.get_json(&format!("/open311/v2/requests.json?service_request_id={id},nope&api_key={APP}")).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    let (_, closed) = client.get_json(&format!("/open311/v2/requests.json?status=closed&api_key={APP}")).await;
    assert!(closed.as_array().expect("list").iter().any(|r| r["service_request_id"] == json!(id)));
    let (_, open) = client.get_json(&format!("/open311/v2/requests.json?status=open&api_key={APP}")).await;
    assert!(!open.as_array().expect("list").iter().any(|r| r["service_request_id"] == json!(id)));

    // Reading needs no key, as GeoReport v2 says, and shows nothing of the reporter: one request
    // or the list, in JSON or XML.
    for path in [format!("requests/{id}.json"), format!("requests/{id}.xml"), "requests.json".into()] {
        let (status, _, body) = client.get(&format!("/open311/v2/{path}")).await;
        assert_eq!(status, 200);
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains(&id) && text.contains(PHOTO), "{path}: {text}");
        for private in ["Lovelace", "555-0100", "resident@example.org", "ios-3f2a", "acct-77"] {
            assert!(!text.contains(private), "{private} in a public read of {path}: {text}");
        }
    }
    // The residents' follow-up endpoint is scoped the same way.
    let follow_up = |key: &'static str| {
        let http = client.http.clone();
        let url = format!("{}/api/requests/{id}", client.base);
        async move { http.get(url).bearer_auth(key).send().await.expect("response").status().as_u16() }
    };
    assert_eq!(follow_up(APP).await, 200);
    assert_eq!(follow_up(GRID).await, 404, "another source's key does not find Open311's request");

    // A service code the server does not offer is 404, as GeoReport v2 says (and the key may
    // come in the query string, as a few clients send it).
    let posted =
        form("UFO_SIGHTING", "37.7793", "-122.4193", "Lights+over+City+Hall").replace(&format!("api_key={APP}&"), "");
    let (status, content_type, body) =
        client.post(&format!("/open311/v2/requests.json?api_key={APP}"), FORM, posted).await;
    assert_spec_error(status, &content_type, &body, 404, "UFO_SIGHTING");

    // A 12345 app posting GCJ-02 coordinates: converted, and the case says so.
    let posted = format!("{}&datum=gcj02", form("STREETLIGHT", "37.7610", "-122.4350", "Lamp+out"));
    let (status, _, body) = client.post("/open311/v2/requests.json", FORM, posted).await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let created: Value = serde_json::from_slice(&body).expect("JSON");
    let gcj_id = format!("open311-{}", created[0]["service_request_id"].as_str().expect("id"));
    let record = wait_for_case(&service, &gcj_id, "routed", |_| true).await;
    let received = record.case.received_location.expect("the location as received");
    assert_eq!((received.datum, received.lat, received.lon), (Datum::Gcj02, 37.7610, -122.4350));
    // (GCJ-02 offsets only apply inside China: in San Francisco the converted point is the same.)
    assert_eq!(record.case.datum, Datum::Wgs84, "the case's location is WGS-84");

    stop.cancel();
    service.stop().await;
}

#[tokio::test]
async fn bad_requests_get_the_spec_error_and_a_dead_letter() {
    let bus = TestBus::start().await;
    let mut config = bus.config();
    config.api.keys = keys();
    config.api.public_rate_per_minute = 30;
    config.adapters.open311.public_reads = false;
    let service = bus.service(&config).await;
    let (base, stop) = serve(&config, &service).await;
    let client = Client { base, http: reqwest::Client::builder().timeout(WAIT).build().expect("client") };
    // Every one with a good key: the key is checked first, and only a caller that may post has
    // its content checked and dead-lettered.
    let post = |path: &'static str, content_type: &'static str, body: Vec<u8>| {
        let client = &client;
        async move { client.post_as(path, content_type, body, Some(APP)).await }
    };

    // Content the sender must fix: 400 (415, 413) in the spec's format, and a dead letter.
    let good = form("SEWER", MISSION.0, MISSION.1, "x");
    const JSON_PATH: &str = "/open311/v2/requests.json";
    const XML_PATH: &str = "/open311/v2/requests.xml";
    let json_body = br#"{"service_code":"SEWER"}"#.to_vec();
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (JSON_PATH, FORM, good.replace("lat=37.7599673", "lat=91").into_bytes(), 400, "lat 91"),
        (XML_PATH, FORM, good.replace("long=-122.4236412", "long=181").into_bytes(), 400, "long 181"),
        (JSON_PATH, FORM, good.replace("lat=37.7599673", "lat=NaN").into_bytes(), 400, "lat NaN"),
        (JSON_PATH, FORM, good.replace("description=x", "description=%FF%FE").into_bytes(), 400, "UTF-8"),
        (XML_PATH, FORM, [good.as_bytes(), b"&note=\xff\xfe"].concat(), 400, "UTF-8"),
        (JSON_PATH, FORM, good.replace("service_code=SEWER&", "").into_bytes(), 400, "service_code"),
        (JSON_PATH, "application/json", json_body, 415, "x-www-form-urlencoded"),
        (XML_PATH, FORM, vec![b'a'; 10 * 1024 * 1024], 413, "larger than"),
        (JSON_PATH, MULTIPART, multipart_with_photo(), 415, "post its link as media_url"),
        (JSON_PATH, MULTIPART, b"--b0undary\r\nno header end".to_vec(), 400, "multipart"),
    ];
    let expected_letters = cases.len();
    for (path, content_type, body, status_expected, mentions) in cases {
        let (status, answer_type, answer) = post(path, content_type, body).await;
        assert_spec_error(status, &answer_type, &answer, status_expected, mentions);
    }
    let letters = read_stream(&bus.js, nats::STREAM_DEADLETTER, "deadletter.adapter_open311", expected_letters).await;
    assert_eq!(letters.len(), expected_letters, "every refused request is kept");
    let reasons: Vec<String> = letters.iter().filter_map(|m| header(m, nats::HEADER_REASON)).collect();
    for mention in
        ["lat 91", "long 181", "lat NaN", "UTF-8", "service_code", "x-www-form-urlencoded", "larger than", "media_url"]
    {
        assert!(reasons.iter().any(|r| r.contains(mention)), "a dead letter says {mention:?}: {reasons:?}");
    }
    let lat91 =
        letters.iter().find(|m| header(m, nats::HEADER_REASON).is_some_and(|r| r.contains("lat 91"))).expect("kept");
    assert!(String::from_utf8_lossy(&lat91.payload).contains("lat=91"), "the original body is kept");
    assert_eq!(header(lat91, nats::HEADER_ORIGINAL_SUBJECT).as_deref(), Some("POST /open311/v2/requests.json"));

    // Keys: none, unknown, another source's: 403, not dead-lettered (nothing to fix in the content).
    for (body, mentions) in [
        (good.replace(&format!("api_key={APP}&"), ""), "required"),
        (good.replace(APP, "guess"), "invalid api_key"),
        (good.replace(APP, GRID), "may not post"),
        (good.replace(APP, "guess").replace("lat=37.7599673", "lat=91"), "invalid api_key"),
    ] {
        let (status, content_type, answer) = client.post("/open311/v2/requests.json", FORM, body).await;
        assert_spec_error(status, &content_type, &answer, 403, mentions);
    }
    // With public_reads off, reading takes a key of this source, a dispatcher's or an
    // operator's; not another source's.
    let (status, content_type, body) = client.get("/open311/v2/requests/nope.json").await;
    assert_spec_error(status, &content_type, &body, 403, "api_key");
    let (status, content_type, body) = client.get(&format!("/open311/v2/requests/nope.xml?api_key={GRID}")).await;
    assert_spec_error(status, &content_type, &body, 403, "may not read");
    let (status, content_type, body) =
        client.get(&format!("/open311/v2/requests/nope.json?api_key={DISPATCHER}")).await;
    assert_spec_error(status, &content_type, &body, 404, "nope");
    let (status, content_type, body) = client.get("/open311/v2/discovery.txt").await;
    assert_spec_error(status, &content_type, &body, 404, "json or .xml");
    let (status, content_type, body) = client.get("/open311/v2/tokens.xml").await;
    assert_spec_error(status, &content_type, &body, 404, "tokens");
    let put = client.http.put(format!("{}/open311/v2/requests.xml", client.base)).send().await.expect("response");
    let (status, content_type) =
        (put.status().as_u16(), put.headers()["content-type"].to_str().expect("ascii").to_owned());
    assert_spec_error(status, &content_type, &put.bytes().await.expect("body"), 405, "method");
    assert_eq!(
        read_stream(&bus.js, nats::STREAM_DEADLETTER, "deadletter.adapter_open311", expected_letters).await.len(),
        expected_letters
    );
    assert!(service.cases.list(&Default::default()).is_empty(), "nothing refused became a case");

    // Posting is rate-limited per address: 429 with Retry-After, in the spec's format.
    let mut limited = None;
    for _ in 0..40 {
        let response = client
            .http
            .post(format!("{}/open311/v2/requests.json", client.base))
            .header("content-type", FORM)
            .body(good.replace(APP, "guess"))
            .send()
            .await
            .expect("response");
        if response.status() == 429 {
            limited = Some(response);
            break;
        }
    }
    let response = limited.expect("the limit is reached within 40 requests");
    assert!(response.headers().get("retry-after").is_some());
    let body = response.bytes().await.expect("body");
    assert_spec_error(429, "application/json", &body, 429, "too many requests");

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(30), service.stop()).await.expect("stops");
}

/// Serves linkbus with the Open311 app's key, runs the stock clients' script
/// (`tests/tools/open311_clients.py`) against it, and returns its answers with the service.
async fn run_stock_clients(bus: &TestBus) -> (Value, Service, CancellationToken) {
    let mut config = bus.config();
    config.api.keys = keys();
    config.api.public_rate_per_minute = 200;
    let service = bus.service(&config).await;
    let (base, stop) = serve(&config, &service).await;
    let site = repo_root().join(".linkbus/tools/python-open311");
    let script = repo_root().join("tests/tools/open311_clients.py");
    let endpoint = format!("{base}/open311/v2");
    let run = tokio::process::Command::new("python3")
        .env("PYTHONPATH", &site)
        .arg(&script)
        .args([endpoint.as_str(), APP, PHOTO])
        .output();
    let out = tokio::time::timeout(WAIT * 4, run).await.expect("the clients finish").expect("python3 runs");
    assert!(
        out.status.success(),
        "the stock clients (run ops/scripts/ensure-test-tools): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (serde_json::from_slice(&out.stdout).expect("the script's JSON"), service, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_clients_post_and_read_unchanged() {
    let bus = TestBus::start().await;
    let (answers, service, stop) = run_stock_clients(&bus).await;

    // civicbot posted every field of the spec: 201, the id, the account echoed.
    let created = &answers["created"][0];
    let id = created["service_request_id"].as_str().expect("an id").to_owned();
    assert_eq!(created["account_id"], "acct-1906", "{created}");
    let record = wait_for_case(&service, &format!("open311-{id}"), "routed", |_| true).await;
    assert_eq!(record.departments, ["puc-sewer-ops"]);
    let reporter = record.case.reporter.clone().expect("the reporter");
    assert_eq!(
        (reporter.name.as_deref(), reporter.phone.as_deref(), reporter.email.as_deref()),
        (Some("Grace Hopper"), Some("555-0199"), Some("grace@example.org"))
    );
    assert_eq!(
        (reporter.device_id.as_deref(), reporter.account_id.as_deref()),
        (Some("android-77c1"), Some("acct-1906"))
    );
    assert_eq!(record.case.media_url.as_deref(), Some(PHOTO));
    assert_spec_error(
        answers["unknown_code"]["status"].as_u64().and_then(|s| u16::try_from(s).ok()).unwrap_or_default(),
        "application/json",
        answers["unknown_code"]["body"].to_string().as_bytes(),
        404,
        "UFO_SIGHTING",
    );

    // georeport read it back without a key, in JSON and XML: the request, media_url, no
    // personal data.
    for read in ["request", "civicbot_request"] {
        let request = &answers[read];
        assert_eq!(
            (request["service_request_id"].as_str(), request["status"].as_str()),
            (Some(id.as_str()), Some("open"))
        );
        assert_eq!(request["media_url"], PHOTO, "{read}: {request}");
    }
    assert_eq!(answers["requests_by_id"].as_array().map(Vec::len), Some(1));
    assert!(answers["requests_open"].as_array().expect("a list").iter().any(|r| r["service_request_id"] == json!(id)));
    let xml = &answers["xml_request"];
    assert_eq!((xml["service_request_id"].as_str(), xml["media_url"].as_str()), (Some(id.as_str()), Some(PHOTO)));
    assert_eq!(xml["service_code"], "SEWER");
    assert_eq!(answers["xml_services"].as_array().map(Vec::len), answers["services"].as_array().map(Vec::len));
    let reads = ["request", "civicbot_request", "requests_by_id", "requests_open", "xml_request"]
        .map(|r| answers[r].to_string());
    for private in ["Hopper", "555-0199", "grace@example.org", "android-77c1", "acct-1906"] {
        assert!(reads.iter().all(|text| !text.contains(private)), "{private} in a public read: {reads:?}");
    }

    // A multipart form with the key in its body is taken; with a photo attached it is refused with
    // what to do instead, not a misleading 403.
    assert_eq!(answers["multipart"]["status"], 201, "{}", answers["multipart"]);
    let multipart_id = answers["multipart"]["body"][0]["service_request_id"].as_str().expect("an id");
    let record = wait_for_case(&service, &format!("open311-{multipart_id}"), "routed", |_| true).await;
    assert_eq!(record.case.description.as_deref(), Some("Lamp out on the corner"));
    let photo = &answers["multipart_photo"];
    assert_spec_error(
        photo["status"].as_u64().and_then(|s| u16::try_from(s).ok()).unwrap_or_default(),
        "application/json",
        photo["body"].to_string().as_bytes(),
        415,
        "post its link as media_url",
    );

    stop.cancel();
    service.stop().await;
}

/// The GeoReport v2 JSON schemas the Open311 community publishes (`schema/georeport-v2/` of
/// github.com/open311/schema-validation, commit 47e06a443f36): `request.json`, `requests.json`,
/// `service.json`, `services.json`, `service-definition.json` and `swagger.json`, from the folder
/// `$LINKBUS_GEOREPORT_SCHEMAS`. They are third-party files, not committed here.
fn georeport_schema(name: &str) -> Value {
    let dir = std::env::var_os("LINKBUS_GEOREPORT_SCHEMAS").expect("$LINKBUS_GEOREPORT_SCHEMAS: see georeport_schema");
    let dir = std::path::PathBuf::from(dir);
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("the GeoReport v2 schema {} ({e}): see georeport_schema's comment", path.display()));
    let mut schema: Value = serde_json::from_str(&text).expect("a JSON schema");
    // `{"$ref": "request.json"}` names a sibling file: put it in place.
    if let Some(file) = schema["items"]["$ref"].as_str().map(str::to_owned) {
        schema["items"] = georeport_schema(&file);
    }
    schema
}

fn assert_fits(schema: &Value, instance: &Value, what: &str) {
    let validator = jsonschema::options().should_validate_formats(true).build(schema).expect("the schema compiles");
    let errors: Vec<String> =
        validator.iter_errors(instance).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{what} does not fit its GeoReport v2 schema: {errors:?}\n{instance}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs $LINKBUS_GEOREPORT_SCHEMAS, the published GeoReport v2 schemas (not committed: see georeport_schema)"]
async fn every_answer_fits_the_published_georeport_schemas() {
    let bus = TestBus::start().await;
    let (answers, service, stop) = run_stock_clients(&bus).await;
    let services = georeport_schema("services.json");
    let requests = georeport_schema("requests.json");
    for (answer, schema) in [
        ("services", &services),
        ("civicbot_services", &services),
        ("requests_by_id", &requests),
        ("requests_open", &requests),
    ] {
        assert!(answers[answer].as_array().is_some_and(|a| !a.is_empty()), "{answer}: {}", answers[answer]);
        assert_fits(schema, &answers[answer], answer);
    }
    assert_fits(&georeport_schema("service-definition.json"), &answers["definition"], "definition");
    for answer in ["request", "civicbot_request"] {
        assert_fits(&georeport_schema("request.json"), &answers[answer], answer);
    }
    // The POST answers (with an account_id, and without): the swagger's RequestResponse.
    let swagger = georeport_schema("swagger.json");
    let created = json!({
        "type": "array", "minItems": 1,
        "items": { "$ref": "#/definitions/RequestResponse" },
        "definitions": swagger["definitions"],
    });
    assert_fits(&created, &answers["created"], "created");
    assert_fits(&created, &answers["multipart"]["body"], "created (multipart)");
    stop.cancel();
    service.stop().await;
}
