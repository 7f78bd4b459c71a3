//! The emergency and commercial adapters end to end, over real HTTP and a real nats-server with
//! an in-process service: a CAP 1.2 flood warning over the Mission Creek basin is broadcast to
//! every community its polygon touches (the list checked against an independent computation),
//! and its Update and Cancel act on it; an Exercise is marked; hostile CAP documents (a
//! billion-laughs DTD, 10 MB, invalid UTF-8, lat 91, NaN) get a 4xx and a dead letter, over HTTP
//! and NATS. A CAD incident is opened, updated and cancelled by its incident id. A commerce
//! platform's signed order opens a case and its status changes move it; unsigned, badly signed,
//! stale and replayed deliveries are refused, a captured one replayed under a new delivery id too. The same message twice is one case throughout. A
//! `linkbus up` process configured from TOML takes all three.

use jiff::Timestamp;
use linkbus::config::{AdaptersConfig, Config};
use linkbus::service::Service;
use linkbus_adapters::cad::CadConfig;
use linkbus_adapters::cap::{self, CapConfig};
use linkbus_adapters::commerce::{self, CommerceConfig, PlatformConfig};
use linkbus_adapters::vocabulary::CategoryMap;
use linkbus_bus::nats::{HEADER_REASON, HEADER_REASON_CODE, STREAM_DEADLETTER, STREAM_ROUTED};
use linkbus_cases::webhooks;
use linkbus_geo_data::Region;
use linkbus_http::auth;
use linkbus_http::config::{ApiKey, ApiRole};
use linkbus_routers::regions;
use linkbus_tests::{
    TestBus, WAIT, header, read_community, read_stream, repo_root, sf_region, sf_region_next_version, wait_for_case,
};
use linkbus_wire::{CaseRecord, CaseState};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The warning centre's key (role source).
const CENTRE: &str = "k-sfdem-warning-centre-41c7e2a9";
/// The dispatch (CAD) system's source key (source `/cad`).
const DISPATCH: &str = "k-sfdem-cad-5e0b71d3";
/// A department's key: not a source key.
const DEPARTMENT: &str = "k-puc-sewer-ops-7d30b1e4c9a2";
/// The meal platform's signing secret.
const MEALS_SECRET: &str = "meals-shared-secret-8f2c51d0";
/// A realistic flood warning (Mission Creek basin polygon).
const FLOOD: &str = include_str!("../../adapters/tests/data/cap_flood_warning.xml");
/// OASIS CAP 1.2 Appendix A.3: an earthquake at a point (`<circle>` of radius 0), an Update of
/// an alert linkbus never saw (`TRI13970876.1`), moved into the Mission.
const QUAKE: &str = include_str!("../../adapters/tests/data/cap_oasis_a3_earthquake.xml");
/// The communities the flood polygon touches, computed independently (ray casting and segment
/// crossings over the region's GeoJSON, not the router's code).
const FLOODED: [&str; 4] = ["mission", "mission-bay", "potrero-hill", "south-of-market"];

struct Setup {
    bus: TestBus,
    service: Service,
    base: String,
    http: reqwest::Client,
    stop: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
}

impl Setup {
    async fn start() -> Self {
        Self::start_in(&sf_region()).await
    }

    /// A service routing in `region`.
    async fn start_in(region: &Region) -> Self {
        let bus = TestBus::start().await;
        let mut config: Config = bus.config();
        config.api.listen = "127.0.0.1:0".into();
        let key = |role, id: &str, key: &str, source: Option<&str>| ApiKey {
            role,
            id: id.into(),
            sha256: auth::hash_key(key),
            source: source.map(str::to_owned),
        };
        config.api.keys = vec![
            key(ApiRole::Source, "sfdem", CENTRE, Some("/cap")),
            key(ApiRole::Source, "sfdem-cad", DISPATCH, Some("/cad")),
            key(ApiRole::Department, "puc-sewer-ops", DEPARTMENT, None),
        ];
        config.adapters = AdaptersConfig {
            cap: CapConfig {
                categories: CategoryMap::from_pairs([("Flood Warning", "sewer_issues"), ("Fire", "fire")]),
                ..Default::default()
            },
            cad: CadConfig { categories: CategoryMap::from_pairs([("STRUCTURE FIRE", "fire")]), ..Default::default() },
            commerce: CommerceConfig {
                platforms: vec![PlatformConfig {
                    id: "meals".into(),
                    secret: MEALS_SECRET.into(),
                    categories: CategoryMap::from_pairs([("meal_delivery", "elderly_assistance")]),
                    priority: 3,
                    ..Default::default()
                }],
                ..Default::default()
            },
            ..Default::default()
        };
        let client = linkbus::service::connect(&bus.server.url(), WAIT).await.expect("service connects");
        let service = Service::start(&config, region, client, "/linkbus/test".into()).await.expect("service starts");
        let listener = tokio::net::TcpListener::bind(&config.api.listen).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = linkbus::up::api_app(&config, region, &service).expect("app");
        let stop = CancellationToken::new();
        let server = tokio::spawn(linkbus_http::serve(listener, app, stop.clone().cancelled_owned()));
        let http = reqwest::Client::builder().timeout(WAIT).build().expect("client");
        Self { bus, service, base: format!("http://{addr}"), http, stop, server }
    }

    async fn post(
        &self,
        path: &str,
        content_type: &str,
        key: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> (u16, Value) {
        let mut request =
            self.http.post(format!("{}{path}", self.base)).header("content-type", content_type).body(body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.expect("a response");
        let status = response.status().as_u16();
        let body = response.bytes().await.expect("body");
        (status, serde_json::from_slice(&body).unwrap_or_else(|_| json!(String::from_utf8_lossy(&body))))
    }

    /// A request declaring a 10 MB body, over a raw connection, sending none of it: the server
    /// must answer from the `Content-Length` alone. (Sending the 10 MB too races the server's
    /// early answer and close against the client's writes: a broken pipe, not a test.)
    async fn declare_ten_megabytes(&self, path: &str) -> (u16, Value) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self.base.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {CENTRE}\r\n\
             Content-Type: application/cap+xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            10 * 1024 * 1024
        );
        stream.write_all(head.as_bytes()).await.expect("send the head");
        let mut response = Vec::new();
        tokio::time::timeout(WAIT, stream.read_to_end(&mut response)).await.expect("answered in time").expect("read");
        let text = String::from_utf8_lossy(&response);
        let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status line");
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    async fn cap(&self, xml: impl Into<reqwest::Body>) -> (u16, Value) {
        self.post("/api/adapters/cap", "application/cap+xml", Some(CENTRE), xml).await
    }

    /// A NATS request to an adapter subject; the JSON reply.
    async fn request(&self, subject: &str, payload: impl Into<bytes::Bytes>) -> Value {
        let reply = tokio::time::timeout(WAIT, self.bus.client.request(subject.to_owned(), payload.into()))
            .await
            .expect("a reply in time")
            .expect("request");
        serde_json::from_slice(&reply.payload).expect("a JSON reply")
    }

    async fn routed(&self, case_id: &str) -> CaseRecord {
        wait_for_case(&self.service, case_id, "routed", |_| true).await
    }

    async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(WAIT, self.server).await;
        self.service.stop().await;
    }
}

/// `FLOOD` as another message of the same sender: a new identifier, this `msgType`, referencing
/// the flood warning.
fn follow_up(msg_type: &str, identifier: &str, headline: &str) -> String {
    FLOOD
        .replace(
            "<msgType>Alert</msgType>",
            &format!(
                "<msgType>{msg_type}</msgType><references>sfdem@sfgov.org,SFDEM-2026-1127-FLOOD-01,2026-11-27T06:00:00-08:00</references>"
            ),
        )
        .replace("SFDEM-2026-1127-FLOOD-01</identifier>", &format!("{identifier}</identifier>"))
        .replace("Flood warning: Mission Creek, SoMa and Mission Bay streets flooding", headline)
}

fn events(record: &CaseRecord, event: &str) -> usize {
    record.timeline.iter().filter(|e| e.event == event).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cap_flood_warning_is_broadcast_then_updated_and_cancelled() {
    let s = Setup::start().await;
    let case_id = cap::case_id("sfdem@sfgov.org", "SFDEM-2026-1127-FLOOD-01");

    let (status, receipt) = s.cap(FLOOD).await;
    assert_eq!(status, 202, "{receipt}");
    assert_eq!(linkbus_tests::untracked(&receipt["cases"][0]), json!({"case_id": case_id, "outcome": "reported"}));
    let record = s.routed(&case_id).await;
    let broadcast: Vec<&str> = record.decision.broadcast.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(broadcast, FLOODED, "{:#?}", record.decision.explanation);
    assert_eq!(record.case.category, "sewer_issues");
    assert_eq!(record.priority, 1, "Severe, Immediate and Observed");
    assert!(record.departments.contains(&"puc-sewer-ops".to_owned()));
    for community in FLOODED {
        assert_eq!(read_community(&s.bus.js, community, 1).await.len(), 1, "{community}");
    }

    // The same alert again: still one case.
    let (status, receipt) = s.cap(FLOOD).await;
    assert_eq!((status, receipt["cases"][0]["outcome"].clone()), (202, json!("duplicate")));
    assert_eq!(read_community(&s.bus.js, "potrero-hill", 2).await.len(), 1);

    // An Update over NATS, twice: recorded once on the referenced case, state unchanged.
    let update = follow_up("Update", "SFDEM-2026-1127-FLOOD-02", "Flood warning extended to 18:00");
    let reply = s.request("adapter.cap", update.clone()).await;
    assert_eq!(reply["cases"], json!([{"case_id": case_id, "outcome": "updated", "state": "routed"}]), "{reply}");
    s.request("adapter.cap", update).await;
    let record = s.service.cases.get(&case_id).expect("the case");
    assert_eq!(events(&record, "source_updated"), 1);
    let entry = record.timeline.iter().find(|e| e.event == "source_updated").expect("the update");
    assert_eq!(
        (entry.actor.id.as_str(), entry.note.as_deref()),
        (cap::SOURCE, Some("CAP Update SFDEM-2026-1127-FLOOD-02: Flood warning extended to 18:00"))
    );

    // Another sender may not cancel it; the sender's Cancel withdraws it.
    let foreign = follow_up("Cancel", "X-1", "all clear")
        .replace("<references>sfdem@sfgov.org,", "<references>prank@example.org,");
    let (status, error) = s.cap(foreign).await;
    assert_eq!((status, error["code"].clone()), (422, json!("invalid")), "{error}");
    let (status, receipt) = s.cap(follow_up("Cancel", "SFDEM-2026-1127-FLOOD-03", "Water receding: all clear")).await;
    assert_eq!((status, receipt["cases"][0]["state"].clone()), (200, json!("cancelled")), "{receipt}");
    assert_eq!(s.service.cases.get(&case_id).expect("the case").state, CaseState::Cancelled);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cap_exercise_is_marked_and_reaches_every_station() {
    let s = Setup::start().await;
    let drill = FLOOD
        .replace("<status>Actual</status>", "<status>Exercise</status>")
        .replace("<event>Flood Warning</event>", "<event>Urban fire drill</event>")
        .replace("<category>Met</category>", "<category>Fire</category>")
        .replace("SFDEM-2026-1127-FLOOD-01", "SFDEM-DRILL-7");
    let reply = s.request("adapter.cap", drill).await;
    let case_id = cap::case_id("sfdem@sfgov.org", "SFDEM-DRILL-7");
    assert_eq!(reply["cases"][0]["case_id"], json!(case_id), "{reply}");
    let record = s.routed(&case_id).await;
    assert!(record.case.flags.contains(&"exercise".to_owned()), "{:?}", record.case.flags);
    assert!(record.case.description.as_deref().is_some_and(|d| d.starts_with("EXERCISE: ")));
    assert_eq!(record.case.category, "fire", "the CAP category code Fire, since the event is not mapped");
    assert!(record.decision.volunteers.is_empty(), "a broadcast offers nothing to volunteers at its centre");
    for station in ["sffd-station-1", "sffd-station-37", "sffd-station-4", "sffd-station-7"] {
        assert!(record.departments.contains(&station.to_owned()), "{station} in {:?}", record.departments);
    }
    s.stop().await;
}

/// The spec's earthquake update, of an alert linkbus never saw, at a point: routed as the
/// alert it describes, to the one community containing the point; the same update again, in
/// UTF-16 over NATS, and a Cancel then act on that case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cap_point_update_of_an_unseen_alert_is_routed_as_that_alert() {
    let s = Setup::start().await;
    let original = cap::case_id("trinet@caltech.edu", "TRI13970876.1");
    let (status, receipt) = s.cap(QUAKE).await;
    assert_eq!((status, receipt["cases"][0]["outcome"].clone()), (202, json!("reported")), "{receipt}");
    assert_eq!(receipt["cases"][0]["case_id"], json!(original));
    let record = s.routed(&original).await;
    let broadcast: Vec<&str> = record.decision.broadcast.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(broadcast, ["mission"], "{:#?}", record.decision.explanation);
    assert!(record.case.flags.contains(&cap::UNSEEN_ORIGINAL.to_owned()), "{:?}", record.case.flags);
    // The same update in UTF-16 (with a byte-order mark), as its declaration says, over NATS.
    let utf16: Vec<u8> = "\u{feff}"
        .chars()
        .chain(QUAKE.replace("encoding = \"UTF-8\"", "encoding = \"UTF-16\"").chars())
        .collect::<String>()
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let reply = s.request("adapter.cap", utf16).await;
    assert_eq!(reply["cases"], json!([{"case_id": original, "outcome": "updated", "state": "routed"}]), "{reply}");
    let cancel = QUAKE
        .replace("<msgType>Update</msgType>", "<msgType>Cancel</msgType>")
        .replace("TRI13970876.2</identifier>", "TRI13970876.3</identifier>");
    let (status, receipt) = s.cap(cancel).await;
    assert_eq!((status, receipt["cases"][0]["state"].clone()), (200, json!("cancelled")), "{receipt}");
    s.stop().await;
}

/// OASIS CAP 1.2 Appendix A.2 (a thunderstorm warning, moved into San Francisco) with 2 MiB of
/// audio embedded as base64 in `<derefUri>`, as IPAWS messages carry: taken over HTTP and NATS;
/// refused (`sent` in Z), its dead letter keeps the alert but not the audio.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cap_alert_with_megabytes_of_embedded_audio_is_taken() {
    let s = Setup::start().await;
    let storm = include_str!("../../adapters/tests/data/cap_oasis_a2_thunderstorm.xml");
    let audio = format!(
        "<resource><resourceDesc>EAS audio</resourceDesc><mimeType>audio/x-ipaws-audio-mp3</mimeType>\
         <derefUri>{}</derefUri></resource>\n    <area>",
        "SUQzBAAAAAAA".repeat(2 * 1024 * 1024 / 12)
    );
    let big = storm.replace("    <area>", &audio);
    assert!(big.len() > 2 * 1024 * 1024);
    let (status, receipt) = s.cap(big.clone()).await;
    assert_eq!(status, 202, "{receipt}");
    let record = s.routed(&cap::case_id("KSTO@NWS.NOAA.GOV", "KSTO1055887203")).await;
    assert!(!record.decision.broadcast.is_empty(), "{:#?}", record.decision.explanation);
    let over_nats = big.replace("KSTO1055887203", "KSTO1055887204");
    let reply = s.request("adapter.cap", over_nats).await;
    assert_eq!(reply["cases"][0]["outcome"], "reported", "{reply}");

    let zulu = big.replace("2003-06-17T14:57:00-07:00", "2003-06-17T21:57:00Z");
    let (status, error) = s.cap(zulu.clone()).await;
    assert_eq!((status, error["code"].clone()), (422, json!("invalid")), "{error}");
    let reply = s.request("adapter.cap", zulu.replace("KSTO1055887203", "KSTO1055887205")).await;
    assert_eq!(reply["code"], "invalid", "{reply}");
    let letters = read_stream(&s.bus.js, STREAM_DEADLETTER, "deadletter.adapter_cap", 2).await;
    assert_eq!(letters.len(), 2);
    for letter in &letters {
        let kept = std::str::from_utf8(&letter.payload).expect("UTF-8");
        assert!(kept.len() < storm.len() + 1024, "{} bytes kept", kept.len());
        assert!(
            kept.contains("bytes of embedded resource not kept]</derefUri>") && kept.contains("21:57:00Z"),
            "{kept}"
        );
    }
    s.stop().await;
}

/// OASIS CAP 1.2 Appendix A.4: an Amber Alert in English and Spanish whose area is only a SAME
/// geocode (moved to San Francisco County, 006075).
const AMBER: &str = include_str!("../../adapters/tests/data/cap_oasis_a4_amber_alert.xml");

/// The ids of the communities of a region's `communities.geojson` whose properties satisfy
/// `within`: read from the file, not through the router's code.
fn communities_where(region: &str, within: impl Fn(&Value) -> bool) -> Vec<String> {
    let path = repo_root().join("geo-data").join(region).join("communities.geojson");
    let map: Value = serde_json::from_slice(&std::fs::read(path).expect("the map")).expect("GeoJSON");
    let mut ids: Vec<String> = map["features"]
        .as_array()
        .expect("features")
        .iter()
        .map(|f| &f["properties"])
        .filter(|p| within(p))
        .map(|p| p["id"].as_str().expect("an id").to_owned())
        .collect();
    ids.sort();
    ids
}

fn broadcast_of(record: &CaseRecord) -> Vec<String> {
    record.decision.broadcast.iter().map(|c| c.id.clone()).collect()
}

/// The spec's Amber Alert names San Francisco County by its SAME code: it reaches all of the
/// city's communities, also in ISO-8859-1 over NATS; a code the region does not know is said in
/// the explanation; an alert with only unknown codes is refused and dead-lettered, saying them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cap_geocode_only_alert_reaches_the_county_it_names() {
    let s = Setup::start().await;
    let case_id = cap::case_id("KARO@CLETS.DOJ.CA.GOV", "KAR0-0306112239-SW");
    let (status, receipt) = s.cap(AMBER).await;
    assert_eq!(status, 202, "{receipt}");
    let record = s.routed(&case_id).await;
    let county = communities_where("san-francisco", |p| p["district_code"] == "06075");
    assert_eq!(county.len(), 41);
    assert_eq!(broadcast_of(&record), county, "{:#?}", record.decision.explanation);
    let latin1 = include_bytes!("../../adapters/tests/data/cap_oasis_a4_amber_alert.latin1.xml");
    let reply = s.request("adapter.cap", latin1.as_slice()).await;
    assert_eq!(reply["cases"][0]["outcome"], "duplicate", "{reply}");

    // The Spanish block names Los Angeles County too, which San Francisco's table does not know.
    let partly = AMBER
        .replace("KAR0-0306112239-SW", "KAR0-0306112239-SW2")
        .replace("<areaDesc>condado de Los Ángeles</areaDesc>\n        <geocode>\n           <valueName>SAME</valueName>\n           <value>006075", "<areaDesc>condado de Los Ángeles</areaDesc>\n        <geocode>\n           <valueName>SAME</valueName>\n           <value>006037");
    assert_ne!(partly, AMBER.replace("KAR0-0306112239-SW", "KAR0-0306112239-SW2"));
    let (status, receipt) = s.cap(partly).await;
    assert_eq!(status, 202, "{receipt}");
    let record = s.routed(&cap::case_id("KARO@CLETS.DOJ.CA.GOV", "KAR0-0306112239-SW2")).await;
    assert_eq!(broadcast_of(&record), county);
    assert!(
        record.decision.explanation.iter().any(|e| e.contains("SAME 006037")),
        "{:#?}",
        record.decision.explanation
    );

    let elsewhere = AMBER.replace("<value>006075</value>", "<value>006037</value>");
    let (status, error) = s.cap(elsewhere.clone()).await;
    assert_eq!((status, error["code"].clone()), (422, json!("invalid")), "{error}");
    assert!(error["error"].as_str().is_some_and(|e| e.contains("SAME 006037")), "{error}");
    let letters = read_stream(&s.bus.js, STREAM_DEADLETTER, "deadletter.adapter_cap", 1).await;
    assert_eq!(letters.len(), 1);
    assert!(header(&letters[0], HEADER_REASON).is_some_and(|r| r.contains("SAME 006037")));
    s.stop().await;
}

/// A region version published while linkbus runs brings its geocodes with it: an alert naming
/// San Francisco by a scheme only the new version's `geocodes.toml` knows is refused before the
/// swap and reaches the county's communities after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cap_geocodes_of_a_region_version_published_later_are_used_once_it_is_in_force() {
    let s = Setup::start().await;
    let alert = AMBER
        .replace("KAR0-0306112239-SW", "KAR0-0306112239-X1")
        .replace("<valueName>SAME</valueName>", "<valueName>X-SFDEM</valueName>")
        .replace("<value>006075</value>", "<value>SF</value>");
    let (status, error) = s.cap(alert.clone()).await;
    assert_eq!((status, error["code"].clone()), (422, json!("invalid")), "{error}");
    assert!(error["error"].as_str().is_some_and(|e| e.contains("X-SFDEM SF")), "{error}");

    let dir = tempfile::tempdir().expect("temp dir");
    sf_region_next_version(dir.path());
    let geocodes = std::fs::read_to_string(dir.path().join("geocodes.toml")).expect("read");
    let scheme = "\n[[scheme]]\nvalue_names = [\"X-SFDEM\"]\ncodes = { \"SF\" = \"06075\" }\n";
    std::fs::write(dir.path().join("geocodes.toml"), geocodes + scheme).expect("write");
    let store = regions::open_bucket(&s.bus.js, &Default::default()).await.expect("bucket");
    regions::publish_region(&store, dir.path()).await.expect("publish");

    // The gazetteer is swapped just after the router: until then the alert is still refused.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, receipt) = s.cap(alert.clone()).await;
        if status == 202 {
            break;
        }
        assert_eq!(status, 422, "{receipt}");
        assert!(tokio::time::Instant::now() < deadline, "the new version's geocodes were not used: {receipt}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(s.service.state.router().geo_version(), "san-francisco@2026.11.28");
    let record = s.routed(&cap::case_id("KARO@CLETS.DOJ.CA.GOV", "KAR0-0306112239-X1")).await;
    assert_eq!(broadcast_of(&record), communities_where("san-francisco", |p| p["district_code"] == "06075"));
    s.stop().await;
}

/// In Beijing the same alert names areas by their administrative codes: a 街道 reaches each of
/// its 社区, a 社区 itself, and a code of no area here is said in the explanation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cap_geocodes_reach_beijing_sub_districts_and_communities() {
    let beijing = Region::load(repo_root().join("geo-data/beijing")).expect("Beijing loads");
    let s = Setup::start_in(&beijing).await;
    let code = |value: &str| format!("<valueName>行政区划代码</valueName>\n           <value>{value}</value>");
    let same = "<valueName>SAME</valueName>\n           <value>006075</value>";
    let alert = AMBER.replacen(same, &code("110101001000"), 1).replacen(
        same,
        &format!(
            "{}\n        </geocode>\n        <geocode>\n           {}",
            code("110102001001"),
            code("110199000000")
        ),
        1,
    );
    let (status, receipt) = s.cap(alert).await;
    assert_eq!(status, 202, "{receipt}");
    let record = s.routed(&cap::case_id("KARO@CLETS.DOJ.CA.GOV", "KAR0-0306112239-SW")).await;
    let expected =
        communities_where("beijing", |p| p["sub_district_code"] == "110101001000" || p["id"] == "110102001001");
    assert_eq!(expected.len(), 12);
    assert_eq!(broadcast_of(&record), expected, "{:#?}", record.decision.explanation);
    assert!(
        record.decision.explanation.iter().any(|e| e.contains("行政区划代码 110199000000")),
        "{:#?}",
        record.decision.explanation
    );
    s.stop().await;
}

/// The flood warning's polygon, as written in it.
const POLYGON: &str =
    "37.7600,-122.4150 37.7600,-122.3950 37.7700,-122.3900 37.7750,-122.4000 37.7700,-122.4150 37.7600,-122.4150";

/// A closed ring of `n` vertices around the Mission, as CAP `lat,lon` pairs.
fn big_ring(n: usize) -> String {
    let pairs: Vec<String> = (0..n)
        .map(|i| {
            let a = std::f64::consts::TAU * i as f64 / n as f64;
            format!("{:.6},{:.6}", 37.76 + 0.01 * a.sin(), -122.415 + 0.01 * a.cos())
        })
        .collect();
    format!("{} {}", pairs.join(" "), pairs[0])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_cap_documents_are_refused_and_dead_lettered() {
    let s = Setup::start().await;
    let laughs = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&lol2;</identifier></alert>"#;
    let mut utf8 = FLOOD.as_bytes().to_vec();
    utf8.extend_from_slice(b"<!-- \xff\xfe -->");
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("billion laughs", laughs.into(), 400, "malformed"),
        ("invalid UTF-8", utf8, 400, "malformed"),
        ("lat 91", FLOOD.replacen("37.7600,-122.4150", "91.0,-122.4150", 2).into(), 422, "invalid"),
        ("NaN", FLOOD.replacen("37.7600,-122.4150", "NaN,-122.4150", 2).into(), 422, "invalid"),
        (
            "no identifier",
            FLOOD.replace("<identifier>SFDEM-2026-1127-FLOOD-01</identifier>", "").into(),
            422,
            "invalid",
        ),
        ("no scope (CAP requires it)", FLOOD.replace("<scope>Public</scope>", "").into(), 422, "invalid"),
        (
            "sent in Z (CAP requires a numeric offset)",
            FLOOD.replace("-08:00</sent>", "Z</sent>").into(),
            422,
            "invalid",
        ),
        ("3000 vertices: a case over the bus's 64 KiB", FLOOD.replace(POLYGON, &big_ring(3000)).into(), 422, "invalid"),
    ];
    for (what, body, status, code) in &cases {
        let (got, error) = s.cap(body.clone()).await;
        assert_eq!((got, error["code"].clone()), (*status, json!(code)), "{what}: {error}");
        assert!(error["error"].as_str().is_some_and(|e| !e.is_empty()), "{what}: a reason");
        if *code == "invalid" && what.starts_with("3000") {
            assert!(error["error"].as_str().is_some_and(|e| e.contains("limit for a report")), "{error}");
        }
    }
    let (status, error) = s.declare_ten_megabytes("/api/adapters/cap").await;
    assert_eq!((status, error["code"].clone()), (413, json!("too_large")), "10 MB: {error}");
    let (status, _) = s.post("/api/adapters/cap", "application/cap+xml", None, FLOOD).await;
    assert_eq!(status, 401, "no key");
    let (status, _) = s.post("/api/adapters/cap", "application/cap+xml", Some(DEPARTMENT), FLOOD).await;
    assert_eq!(status, 401, "a department key is not a source key");
    let (status, error) = s.post("/api/adapters/cap", "application/cap+xml", Some(DISPATCH), FLOOD).await;
    assert_eq!((status, error["code"].clone()), (403, json!("forbidden")), "the CAD system's key is not CAP's");
    let (status, _) = s.post("/api/adapters/cap", "application/json", Some(CENTRE), FLOOD).await;
    assert_eq!(status, 415);
    // Over NATS: the reason in the reply and in the dead letter.
    let reply = s.request("adapter.cap", laughs).await;
    assert_eq!(reply["code"], "malformed", "{reply}");

    let letters = read_stream(&s.bus.js, STREAM_DEADLETTER, "deadletter.adapter_cap", cases.len() + 6).await;
    assert_eq!(letters.len(), cases.len() + 6, "every refusal is kept");
    let laughs_letter = letters.iter().find(|m| m.payload.as_ref() == laughs.as_bytes()).expect("the DTD kept as sent");
    assert_eq!(header(laughs_letter, HEADER_REASON_CODE).as_deref(), Some("malformed"));
    assert!(
        header(laughs_letter, HEADER_REASON).is_some_and(|r| r.to_lowercase().contains("dtd")),
        "a reason naming the DTD"
    );
    assert!(s.service.cases.list(&Default::default()).is_empty(), "no case from any of them");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cad_incident_is_opened_updated_and_cancelled_by_its_id() {
    let s = Setup::start().await;
    let new = json!({
        "kind": "new", "incident_id": "F26-112701", "type": "STRUCTURE FIRE", "priority": 1,
        "lon": -122.4194, "lat": 37.7599, "address": "2400 Mission St",
        "narrative": "Smoke from 2nd floor, elderly resident inside", "flags": ["persons_trapped"]
    });
    let (status, receipt) = s.post("/api/adapters/cad", "application/json", Some(DISPATCH), new.to_string()).await;
    assert_eq!((status, receipt["cases"][0]["case_id"].clone()), (202, json!("cad-F26-112701")), "{receipt}");
    let (_, again) = s.post("/api/adapters/cad", "application/json", Some(DISPATCH), new.to_string()).await;
    assert_eq!(again["cases"][0]["outcome"], "duplicate");
    let record = s.routed("cad-F26-112701").await;
    assert_eq!(
        (record.case.category.as_str(), record.departments.clone()),
        ("fire", vec!["sffd-station-7".to_owned()])
    );

    let update = json!({"kind": "update", "incident_id": "F26-112701", "narrative": "2nd alarm; E7 and T7 on scene"});
    let reply = s.request("adapter.cad", update.to_string()).await;
    assert_eq!(reply["cases"][0]["outcome"], "updated", "{reply}");
    let unknown = json!({"kind": "update", "incident_id": "F26-999", "narrative": "?"});
    assert_eq!(s.request("adapter.cad", unknown.to_string()).await["code"], "not_found");
    let cancel = json!({"kind": "cancel", "incident_id": "F26-112701", "narrative": "duplicate of F26-112699"});
    let (status, receipt) = s.post("/api/adapters/cad", "application/json", Some(DISPATCH), cancel.to_string()).await;
    assert_eq!((status, receipt["cases"][0]["state"].clone()), (200, json!("cancelled")), "{receipt}");
    let record = s.service.cases.get("cad-F26-112701").expect("the case");
    assert_eq!((events(&record, "source_updated"), events(&record, "cancelled")), (1, 1));
    let (status, _) = s.post("/api/adapters/cad", "application/json", Some(DISPATCH), update.to_string()).await;
    assert_eq!(status, 200, "the update delivered again: already recorded, answered the same");
    let late = json!({"kind": "update", "incident_id": "F26-112701", "narrative": "E7 returning"});
    let (status, error) = s.post("/api/adapters/cad", "application/json", Some(DISPATCH), late.to_string()).await;
    assert_eq!((status, error["code"].clone()), (409, json!("conflict")), "a cancelled case takes no new update");

    let bad = json!({"kind": "new", "incident_id": "F26-3", "type": "STRUCTURE FIRE", "priority": 1, "lon": 181.0, "lat": 37.7});
    let (status, error) = s.post("/api/adapters/cad", "application/json", Some(DISPATCH), bad.to_string()).await;
    assert_eq!((status, error["code"].clone()), (422, json!("invalid")), "{error}");
    let letters = read_stream(&s.bus.js, STREAM_DEADLETTER, "deadletter.adapter_cad", 3).await;
    assert_eq!(letters.len(), 3, "unknown incident, update after cancel, lon 181");
    s.stop().await;
}

/// Posts an order event signed at `timestamp` with `secret` (no signature when `None`).
async fn order(s: &Setup, body: &Value, delivery: &str, timestamp: i64, secret: Option<&str>) -> (u16, Value) {
    let body = body.to_string();
    let mut request = s
        .http
        .post(format!("{}/api/adapters/commerce/meals/orders", s.base))
        .header("content-type", "application/json")
        .header("Linkbus-Delivery", delivery)
        .body(body.clone());
    if let Some(secret) = secret {
        request = request.header(webhooks::HEADER_TIMESTAMP, timestamp.to_string()).header(
            webhooks::HEADER_SIGNATURE,
            commerce::sign(secret.as_bytes(), timestamp, delivery, body.as_bytes()),
        );
    }
    let response = request.send().await.expect("a response");
    let status = response.status().as_u16();
    (status, serde_json::from_slice(&response.bytes().await.expect("body")).expect("a JSON body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_orders_open_and_move_a_case_and_forgeries_are_refused() {
    let s = Setup::start().await;
    let now = Timestamp::now().as_second();
    let created = json!({
        "order_id": "M-20261127-0042", "status": "created", "service": "meal_delivery",
        "location": {"lon": -122.4143, "lat": 37.7543}, "datum": "gcj02",
        "address": "3200 24th St", "customer": {"name": "Mrs. Wong", "phone": "+1-415-555-0142"},
        "note": "lunch for one, soft diet", "flags": ["elderly_alone"]
    });
    let (status, receipt) = order(&s, &created, "d-1", now, Some(MEALS_SECRET)).await;
    assert_eq!((status, receipt["cases"][0]["case_id"].clone()), (202, json!("commerce-meals-M-20261127-0042")));
    let record = s.routed("commerce-meals-M-20261127-0042").await;
    assert_eq!(record.case.category, "elderly_assistance");
    assert!(record.case.received_location.is_some(), "GCJ-02 converted, the original kept");

    let (status, error) = order(&s, &created, "d-1", now, Some(MEALS_SECRET)).await;
    assert_eq!((status, error["code"].clone()), (409, json!("conflict")), "replayed delivery id");
    let (status, error) = order(&s, &created, "d-2", now, None).await;
    assert_eq!((status, error["code"].clone()), (401, json!("unauthorized")), "unsigned");
    let (status, _) = order(&s, &created, "d-3", now, Some("not-the-secret")).await;
    assert_eq!(status, 401, "bad signature");
    let (status, error) = order(&s, &created, "d-4", now - 600, Some(MEALS_SECRET)).await;
    assert!(status == 401 && error["error"].as_str().is_some_and(|e| e.contains("stale")), "{error}");
    let (status, error) = order(&s, &created, "d-5", now + 600, Some(MEALS_SECRET)).await;
    assert!(status == 401 && error["error"].as_str().is_some_and(|e| e.contains("future")), "{error}");

    let accepted = json!({"order_id": "M-20261127-0042", "status": "accepted", "note": "kitchen B"});
    let (status, receipt) = order(&s, &accepted, "d-6", now, Some(MEALS_SECRET)).await;
    assert_eq!((status, receipt["cases"][0]["outcome"].clone()), (200, json!("updated")), "{receipt}");
    let delivered = json!({"order_id": "M-20261127-0042", "status": "delivered", "note": "handed over at 12:10"});
    let (status, receipt) = order(&s, &delivered, "d-7", now, Some(MEALS_SECRET)).await;
    assert_eq!((status, receipt["cases"][0]["state"].clone()), (200, json!("resolved")), "{receipt}");
    let record = s.service.cases.get("commerce-meals-M-20261127-0042").expect("the case");
    assert_eq!(record.state, CaseState::Resolved);
    let by = record.timeline.iter().find(|e| e.event == "resolved").map(|e| e.actor.id.clone());
    assert_eq!(by.as_deref(), Some("/commerce/meals"));
    assert_eq!(s.service.cases.list(&Default::default()).len(), 1, "one case");
    let letters = read_stream(&s.bus.js, STREAM_DEADLETTER, "deadletter.adapter_commerce", 5).await;
    assert_eq!(letters.len(), 5, "replay, unsigned, bad signature, stale, future");
    let text = linkbus_tests::metrics_text(&s.service);
    for series in [
        r#"linkbus_adapter_messages_total{adapter="commerce",outcome="reported"} 1"#,
        r#"linkbus_adapter_messages_total{adapter="commerce",outcome="updated"} 2"#,
        r#"linkbus_adapter_messages_total{adapter="commerce",outcome="refused"} 5"#,
        r#"linkbus_deadletters_total{reason="unauthorized",stage="adapter_commerce"} 4"#,
        r#"linkbus_deadletters_total{reason="conflict",stage="adapter_commerce"} 1"#,
    ] {
        assert!(text.contains(series), "{series} in\n{text}");
    }
    s.stop().await;
}

/// A captured order, replayed with a new `Linkbus-Delivery`, is refused within the timestamp
/// window: the delivery id is part of what is signed (issue 16, section 6). The platform's own
/// request goes through once; each replay gets 401 with the one error body, is dead-lettered
/// with the reason `bad signature` and counted, and the case's timeline has the update once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_order_replayed_with_a_new_delivery_id_is_refused() {
    let s = Setup::start().await;
    let now = Timestamp::now().as_second();
    let created = json!({"order_id": "M-7", "status": "created", "service": "meal_delivery",
                         "location": {"lon": -122.4143, "lat": 37.7543}});
    assert_eq!(order(&s, &created, "r-1", now, Some(MEALS_SECRET)).await.0, 202);
    s.routed("commerce-meals-M-7").await;
    let accepted = json!({"order_id": "M-7", "status": "accepted", "note": "kitchen B"}).to_string();
    // What an eavesdropper captured: the platform's signed request, headers and body.
    let captured = signed(&accepted, "r-2", now, MEALS_SECRET);
    let send = |delivery: &'static str| {
        let (timestamp, signature) = (captured.0.clone(), captured.1.clone());
        s.http
            .post(format!("{}/api/adapters/commerce/meals/orders", s.base))
            .header("content-type", "application/json")
            .header(webhooks::HEADER_TIMESTAMP, timestamp)
            .header(webhooks::HEADER_SIGNATURE, signature)
            .header("Linkbus-Delivery", delivery)
            .body(accepted.clone())
            .send()
    };
    assert_eq!(send("r-2").await.expect("answered").status().as_u16(), 200, "the platform's own request");
    for delivery in ["r-2-replayed", "r-3"] {
        let response = send(delivery).await.expect("answered");
        let status = response.status().as_u16();
        let body: Value = serde_json::from_slice(&response.bytes().await.expect("body")).expect("the one error body");
        assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")), "replay as {delivery}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| e.contains("bad signature")), "{body}");
    }
    let record = s.service.cases.get("commerce-meals-M-7").expect("the case");
    assert_eq!(events(&record, "source_updated"), 1, "the update applied once: {:?}", record.timeline);
    // The same bytes refused for the same reason are one dead letter; the counter counts both.
    let letters = read_stream(&s.bus.js, STREAM_DEADLETTER, "deadletter.adapter_commerce", 1).await;
    assert_eq!(letters.len(), 1, "the replay kept once");
    let reason = header(&letters[0], HEADER_REASON).unwrap_or_default();
    let code = header(&letters[0], HEADER_REASON_CODE).unwrap_or_default();
    assert_eq!(code, "unauthorized", "{reason}");
    assert!(reason.contains("bad signature"), "{reason}");
    let text = linkbus_tests::metrics_text(&s.service);
    let series = r#"linkbus_deadletters_total{reason="unauthorized",stage="adapter_commerce"} 2"#;
    assert!(text.contains(series), "{series} in\n{text}");
    s.stop().await;
}

/// The `Linkbus-Timestamp` and `Linkbus-Signature` a platform sends with `body` and `delivery`.
fn signed(body: &str, delivery: &str, timestamp: i64, secret: &str) -> (String, String) {
    (timestamp.to_string(), commerce::sign(secret.as_bytes(), timestamp, delivery, body.as_bytes()))
}

/// A `linkbus up` process configured from TOML as docs/adapters.md shows takes a CAP alert and a
/// signed order over HTTP and a CAD incident over NATS, and routes all three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linkbus_up_takes_cap_cad_and_orders_as_configured() {
    let bus = TestBus::start().await;
    let config = linkbus_tests::write_config(
        bus.dir.path(),
        &format!(
            "[nats]\nurl = \"{}\"\n[region]\ndir = \"{}\"\n[api]\nlisten = \"127.0.0.1:0\"\n\
             [[api.keys]]\nrole = \"source\"\nid = \"sfdem\"\nsource = \"/cap\"\nsha256 = \"{}\"\n\
             [adapters.cap.categories]\nmap = {{ \"Flood Warning\" = \"sewer_issues\" }}\n\
             [adapters.cad.categories]\nmap = {{ \"STRUCTURE FIRE\" = \"fire\" }}\n\
             [[adapters.commerce.platforms]]\nid = \"meals\"\nsecret_env = \"LINKBUS_TEST_MEALS_SECRET\"\n\
             categories = {{ map = {{ meal_delivery = \"elderly_assistance\" }} }}\n",
            bus.server.url(),
            linkbus_tests::sf_region_dir().display(),
            auth::hash_key(CENTRE)
        ),
    );
    let (mut up, announced) = linkbus_tests::start_up(
        std::process::Command::new(env!("CARGO_BIN_EXE_linkbus-under-test"))
            .args(["up", "--config"])
            .arg(&config)
            .env("LINKBUS_TEST_MEALS_SECRET", MEALS_SECRET)
            .env_remove("LINKBUS_NATS_URL"),
    );
    let addr = announced.api().to_owned();
    let http = reqwest::Client::builder().timeout(WAIT).build().expect("client");

    let response = http
        .post(format!("http://{addr}/api/adapters/cap"))
        .bearer_auth(CENTRE)
        .header("content-type", "application/cap+xml")
        .body(FLOOD)
        .send()
        .await
        .expect("CAP answered");
    assert_eq!(response.status().as_u16(), 202);
    let body = json!({"order_id": "M-1", "status": "created", "service": "meal_delivery",
                      "location": {"lon": -122.4143, "lat": 37.7543}})
    .to_string();
    let ts = Timestamp::now().as_second();
    let response = http
        .post(format!("http://{addr}/api/adapters/commerce/meals/orders"))
        .header("content-type", "application/json")
        .header(webhooks::HEADER_TIMESTAMP, ts.to_string())
        .header(webhooks::HEADER_SIGNATURE, commerce::sign(MEALS_SECRET.as_bytes(), ts, "up-1", body.as_bytes()))
        .header("Linkbus-Delivery", "up-1")
        .body(body)
        .send()
        .await
        .expect("order answered");
    assert_eq!(response.status().as_u16(), 202);
    let cad = json!({"kind": "new", "incident_id": "F26-9", "type": "STRUCTURE FIRE", "priority": 1,
                     "lon": -122.4194, "lat": 37.7599});
    let reply = tokio::time::timeout(WAIT, bus.client.request("adapter.cad", cad.to_string().into()))
        .await
        .expect("a reply in time")
        .expect("request");
    let reply: Value = serde_json::from_slice(&reply.payload).expect("JSON");
    assert_eq!(reply["cases"][0]["case_id"], "cad-F26-9", "{reply}");

    assert_eq!(read_community(&bus.js, "potrero-hill", 1).await.len(), 1, "the flood broadcast");
    for (filter, what) in [
        ("routed.dept.sffd-station-7.fire.>", "the CAD fire"),
        ("routed.dept.sf-das.elderly_assistance.>", "the meal order"),
    ] {
        assert_eq!(read_stream(&bus.js, STREAM_ROUTED, filter, 1).await.len(), 1, "{what} on {filter}");
    }
    let pid = nix::unistd::Pid::from_raw(i32::try_from(up.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let status = tokio::time::timeout(WAIT, tokio::task::spawn_blocking(move || up.wait()))
        .await
        .expect("linkbus up stops in time")
        .expect("join")
        .expect("wait");
    assert!(status.success(), "linkbus up exited with {status}");
}
