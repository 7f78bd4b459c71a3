//! Hostile input: one check per parser that sees outside bytes, shared by the fuzz targets
//! (`fuzz/fuzz_targets/`, each a one-line call of its check) and by the normal suite, which
//! replays the inputs kept in `fuzz/regressions/<target>/` (every crash found becomes one) through
//! [`TARGETS`]. A check returns normally for any input, refused or not; a panic is the bug.
//!
//! Adding a target: a function here, a line in [`TARGETS`], a file in `fuzz/fuzz_targets/` and a
//! `[[bin]]` in `fuzz/Cargo.toml`.

use jiff::Timestamp;
use linkbus_cases::lifecycle::{self, Ladder, Policy};
use linkbus_wire::decode::decode_case_report;
use linkbus_wire::{
    ActionRequest, Actor, ActorKind, CaseRecord, CloudEvent, RoutedCase, VolunteerAnswer, VolunteerStatus,
};

/// A check: any bytes in, a panic only for a bug.
pub type Check = fn(&[u8]);

/// Every check, by fuzz target name.
pub const TARGETS: &[(&str, Check)] = &[
    ("case_envelope", case_envelope),
    ("action_request", action_request),
    ("volunteer_answer", volunteer_answer),
    ("api_bodies", api_bodies),
    ("volunteer_status", volunteer_status),
    ("geojson_region", geojson_region),
    ("sf311_row", sf311_row),
    ("cap_alert", cap_alert),
    ("cad_message", cad_message),
    ("open311_form", open311_form),
    ("commerce_webhook", commerce_webhook),
    ("grid_rows", grid_rows),
];

/// Ingest subjects the first byte of a case envelope input picks from.
const SUBJECTS: [&str; 4] =
    ["ingest.public_service.sewer_issues", "ingest.emergency.fire", "ingest.commercial.meal_delivery", "ingest.bogus"];

/// The case envelope on `ingest.<system>.<category>` (first byte: which subject). Whatever
/// decodes has a valid WGS-84 location, and decodes again to the same after a round trip.
pub fn case_envelope(data: &[u8]) {
    let Some((first, payload)) = data.split_first() else { return };
    let subject = SUBJECTS[usize::from(*first) % SUBJECTS.len()];
    if let Ok(event) = decode_case_report(subject, payload, 64 * 1024) {
        let location = event.data.location;
        location.validate("data.location").expect("a decoded location is WGS-84 lon/lat");
        assert!(event.data.datum.is_wgs84(), "a decoded case is in WGS-84");
        // Converted from another datum, it carries what arrived, which sources may not send.
        if event.data.received_location.is_none() {
            let again = serde_json::to_vec(&event).expect("serialises");
            let back = decode_case_report(subject, &again, usize::MAX).expect("a decoded case decodes again");
            assert_eq!((back.id, back.data.location), (event.id, location));
        }
    }
}

/// A department's request on `action.<department>` (first byte: who sends it), applied by the
/// lifecycle to a routed and an accepted case.
pub fn action_request(data: &[u8]) {
    let Some((who, payload)) = data.split_first() else { return };
    let Ok(request) = serde_json::from_slice::<ActionRequest>(payload) else { return };
    act_on_every_record(*who, &request.action);
}

/// A volunteer's answer, or step report, on `volunteer.<id>.answer` (first byte: which
/// volunteer, offered or not), applied to a case with two offers out.
pub fn volunteer_answer(data: &[u8]) {
    const VOLUNTEERS: [&str; 3] = ["sf-v00001", "sf-v00002", "sf-v09999"];
    let Some((who, payload)) = data.split_first() else { return };
    let volunteer = VOLUNTEERS[usize::from(*who) % VOLUNTEERS.len()];
    if let Ok(answer) = serde_json::from_slice::<VolunteerAnswer>(payload) {
        for record in records() {
            let _ = lifecycle::answer(&record, volunteer, answer.accept, now(), &Policy::default(), |_| vec![]);
        }
    } else if let Ok(report) = serde_json::from_slice::<linkbus_wire::VolunteerStepReport>(payload) {
        for record in records() {
            let _ = lifecycle::volunteer_step(&record, volunteer, report.step, now());
        }
    }
}

/// HTTP API bodies (first byte: who calls): `POST /api/cases/{id}/actions` through the API's
/// parser and the lifecycle, a rating as `POST /api/requests/{source_id}/rating` decodes it, and
/// a volunteer's status update as `PUT /api/volunteer/me/status` does.
pub fn api_bodies(data: &[u8]) {
    let Some((who, body)) = data.split_first() else { return };
    let _ = serde_json::from_slice::<linkbus_http::api::RatingRequest>(body);
    let _ = serde_json::from_slice::<linkbus_http::volunteer::StatusUpdate>(body);
    if let Ok(action) = linkbus_http::api::parse_action(body) {
        act_on_every_record(*who, &action);
    }
}

/// A volunteer app's value in the volunteers bucket: decoded, validated and indexed as the router
/// does.
pub fn volunteer_status(data: &[u8]) {
    let Ok(status) = serde_json::from_slice::<VolunteerStatus>(data) else { return };
    if status.validate().is_err() {
        return;
    }
    let mut index = linkbus_matching::VolunteerIndex::new();
    if index.upsert(&status).is_ok() {
        assert_eq!(index.len(), 1);
        let _ = index.nearest(status.location.lon, status.location.lat, "first_aid", 5, 3_000.0);
    }
}

/// A region's GeoJSON (communities, facilities) as the region loader reads it.
pub fn geojson_region(data: &[u8]) {
    thread_local! {
        // The loaders read files: one per process and thread, in memory-backed /dev/shm if any.
        static PATH: std::path::PathBuf = {
            let shm = std::path::Path::new("/dev/shm");
            let dir = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
            let thread = format!("{:?}", std::thread::current().id()).replace(|c: char| !c.is_ascii_digit(), "");
            dir.join(format!("linkbus-hostile-{}-{thread}.geojson", std::process::id()))
        };
    }
    PATH.with(|path| {
        std::fs::write(path, data).expect("write the input");
        let _ = linkbus_geo_data::load_communities(path);
        let _ = linkbus_geo_data::load_facilities(path);
        let _ = std::fs::remove_file(path);
    });
}

/// An SF 311 CSV export as the adapter reads it: every row becomes a valid case or an error.
pub fn sf311_row(data: &[u8]) {
    for converted in linkbus_adapters::sf311::read(data).flatten() {
        converted.event.data.validate().expect("an adapted case is valid");
    }
}

/// A CAP 1.2 alert as the CAP adapter takes it (HTTP body or NATS payload): whatever parses and
/// converts into a new case is a valid case report.
pub fn cap_alert(data: &[u8]) {
    let Ok(alert) = linkbus_adapters::cap::parse(data) else { return };
    if let Ok(linkbus_adapters::intake::Message::Report(event)) = linkbus_adapters::cap::to_intake(
        &alert,
        &linkbus_adapters::cap::CapConfig::default(),
        &linkbus_matching::areas::Gazetteer::default(),
    ) {
        event.data.validate().expect("an adapted alert is a valid case");
    }
}

/// A CAD incident message (JSON) as the CAD adapter takes it: a new incident converts into a
/// valid case report.
pub fn cad_message(data: &[u8]) {
    if let Ok(linkbus_adapters::intake::Message::Report(event)) =
        linkbus_adapters::cad::to_intake(data, &linkbus_adapters::cad::CadConfig::default())
    {
        event.data.validate().expect("an adapted incident is a valid case");
    }
}

/// An Open311 `POST requests` body (application/x-www-form-urlencoded): decoded pairs are
/// UTF-8 and decoding is all-or-nothing.
pub fn open311_form(data: &[u8]) {
    if let Ok(pairs) = linkbus_adapters::open311::parse_form(data) {
        assert!(pairs.len() <= data.len() + 1, "no more pairs than separators");
    }
}

/// A commerce order webhook (`POST /api/adapters/commerce/{platform}/orders`) as its handler
/// takes it: [`Senders::verify`](linkbus_adapters::commerce::Senders::verify) on the headers and
/// body, then the order JSON ([`Senders::to_intake`](linkbus_adapters::commerce::Senders::to_intake),
/// tried whatever the signature, to reach it without forging one).
///
/// The input: a first byte, then `Name: value` header lines, a blank line and the body (no blank
/// line: all body, no headers). The first byte picks the platform (bit 7: configured `meals` or
/// unknown) and the signature (the rest, mod 3): as given; signed with the platform's secret over
/// the given `Linkbus-Timestamp` (or now, if none parses) and `Linkbus-Delivery`; or signed with
/// another secret. Accepted means signed with the secret over the timestamp, the delivery id and
/// the body, a timestamp within 5 minutes and a delivery id (1-256 characters, no `.`); a request
/// signed so, at now, with a delivery id of visible ASCII without `.`, is accepted. A read order is a valid case of
/// that platform or a source update of its case.
pub fn commerce_webhook(data: &[u8]) {
    use axum::http::{HeaderMap, HeaderName, HeaderValue};
    use linkbus_adapters::commerce::{self, HEADER_DELIVERY, Senders};
    use linkbus_adapters::intake::{IntakeError, Message};
    use linkbus_cases::webhooks::{HEADER_SIGNATURE, HEADER_TIMESTAMP};

    const SECRET: &str = "s3cret";
    static SENDERS: std::sync::OnceLock<Senders> = std::sync::OnceLock::new();
    let senders = SENDERS.get_or_init(|| {
        let config: commerce::CommerceConfig = serde_json::from_value(serde_json::json!({
            "platforms": [{"id": "meals", "secret": SECRET, "priority": 3,
                           "categories": {"map": {"meal_delivery": "elderly_assistance"}}}]
        }))
        .expect("the platform configuration");
        Senders::new(&config).expect("a valid platform configuration")
    });
    let Some((mode, rest)) = data.split_first() else { return };
    let (head, body) = match rest.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&rest[..at], &rest[at + 2..]),
        None => (&[][..], rest),
    };
    let mut headers = HeaderMap::new();
    for line in head.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let name = HeaderName::from_bytes(line[..colon].trim_ascii());
        let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii());
        if let (Ok(name), Ok(value)) = (name, value) {
            headers.append(name, value);
        }
    }
    let platform = if mode & 0x80 == 0 { "meals" } else { "unknown" };
    let signer = match (mode & 0x7f) % 3 {
        0 => None,
        1 => Some(SECRET),
        _ => Some("not-the-secret"),
    };
    let now = now();
    let text =
        |headers: &HeaderMap, name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(|v| v.trim().to_owned());
    if let Some(secret) = signer {
        let given = text(&headers, HEADER_TIMESTAMP).and_then(|t| t.parse::<i64>().ok());
        let timestamp = given.unwrap_or_else(|| {
            headers.insert(HEADER_TIMESTAMP, HeaderValue::from(now.as_second()));
            now.as_second()
        });
        let delivery = text(&headers, HEADER_DELIVERY).unwrap_or_default();
        let signature = commerce::sign(secret.as_bytes(), timestamp, &delivery, body);
        headers.insert(HEADER_SIGNATURE, HeaderValue::from_str(&signature).expect("a header value"));
    }
    let verified = senders.verify(platform, &headers, body, now.as_second());
    let timestamp = text(&headers, HEADER_TIMESTAMP).unwrap_or_default();
    let on_time = timestamp.parse::<i64>().is_ok_and(|ts| ts.abs_diff(now.as_second()) <= 300);
    let delivery = text(&headers, HEADER_DELIVERY).filter(|d| !d.is_empty() && d.len() <= 256 && !d.contains('.'));
    if let Ok(key) = &verified {
        assert_eq!(platform, "meals", "only a configured platform is accepted");
        assert!(on_time && delivery.is_some(), "accepted: a timestamp within 5 minutes and a delivery id");
        let signature = text(&headers, HEADER_SIGNATURE).unwrap_or_default();
        let ts: i64 = timestamp.parse().expect("checked");
        assert!(
            signature.eq_ignore_ascii_case(&commerce::sign(
                SECRET.as_bytes(),
                ts,
                delivery.as_deref().unwrap_or(""),
                body
            )),
            "accepted: signed with the platform's secret over the timestamp, delivery id and body"
        );
        assert!(key.starts_with("meals.") && key.len() == "meals.".len() + 32, "delivery key {key:?}");
    }
    let canonical = timestamp.parse::<i64>().is_ok_and(|ts| ts.to_string() == timestamp);
    let printable = delivery.as_deref().is_some_and(|d| d.bytes().all(|b| b.is_ascii_graphic()));
    if platform == "meals" && signer == Some(SECRET) && on_time && canonical && printable {
        assert!(verified.is_ok(), "signed with the secret at now, with a delivery id: {verified:?}");
    }
    match senders.to_intake(platform, body, now) {
        Ok(Message::Report(event)) => {
            assert_eq!(platform, "meals");
            event.data.validate().expect("an adapted order is a valid case");
            assert_eq!(event.source, commerce::source(platform));
            assert_eq!(event.id, commerce::case_id(platform, &event.data.source_id));
        }
        Ok(Message::Act { source, case_ids, .. }) => {
            assert_eq!((platform, source.as_str()), ("meals", "/commerce/meals"));
            assert!(case_ids.len() == 1 && case_ids[0].starts_with("commerce-meals-"), "{case_ids:?}");
        }
        Err(e) => {
            if platform != "meals" {
                assert!(matches!(e, IntakeError::Unauthorized(_)), "an unknown platform: {e:?}");
            }
        }
    }
}

/// A grid batch (`POST /api/adapters/grid/batch`) as the grid adapter reads it (first byte: CSV
/// or JSON lines), every row converted with the shipped configuration: a row is a report or an
/// error of its own, rows are numbered upwards from 1, and a converted report is a valid
/// `management` case `grid-…`.
pub fn grid_rows(data: &[u8]) {
    use linkbus_adapters::grid::{self, BatchFormat, GridConfig};
    let Some((first, body)) = data.split_first() else { return };
    let format = if first & 1 == 0 { BatchFormat::Csv } else { BatchFormat::JsonLines };
    let Ok(rows) = grid::read_rows(body, format) else { return };
    let config = GridConfig::default();
    let mut last = 0;
    for row in rows {
        assert!(row.row > last, "rows numbered upwards from 1: {} after {last}", row.row);
        last = row.row;
        let Ok(report) = row.report else { continue };
        if let Ok(event) = report.event(&config, now()) {
            event.data.validate().expect("an adapted grid report is a valid case");
            assert_eq!(event.data.system, linkbus_wire::SourceSystem::Management);
            assert!(event.id.starts_with("grid-"), "{}", event.id);
            assert_eq!(event.source, config.source);
        }
    }
}

fn act_on_every_record(who: u8, action: &linkbus_wire::Action) {
    let (policy, ladder) = (Policy::default(), ladder());
    for record in records() {
        let _ = lifecycle::act(&record, &actor(who), action, now(), &policy, &ladder);
    }
}

/// Records to act on, from the documented examples: a freshly routed case with two volunteer
/// offers out, and an accepted one.
fn records() -> Vec<CaseRecord> {
    let routed: CloudEvent<RoutedCase> =
        serde_json::from_str(include_str!("../../docs/examples/case-routed.json")).expect("the routed example");
    let mut fresh = lifecycle::open(&routed.data, now(), &Policy::default());
    let offers = serde_json::json!([
        {"volunteer_id": "sf-v00001", "distance_m": 120.0, "status": "offered",
         "offered_at": "2026-01-01T00:00:00Z", "expires_at": "2026-01-01T00:05:00Z"},
        {"volunteer_id": "sf-v00002", "distance_m": 300.0, "status": "offered",
         "offered_at": "2026-01-01T00:00:00Z", "expires_at": "2026-01-01T00:05:00Z"}
    ]);
    fresh.offers = serde_json::from_value(offers).expect("offers");
    let accepted: CaseRecord =
        serde_json::from_str(include_str!("../../docs/examples/case-record.json")).expect("the record example");
    vec![fresh, accepted]
}

/// The departments of the examples, the dispatchers' desk as catch-all.
fn ladder() -> Ladder {
    Ladder::new(
        [("puc-sewer-ops".to_owned(), None), ("dpw-ops-queue".to_owned(), None), ("dispatch".to_owned(), None)],
        "dispatch",
    )
}

/// A fixed "now", so a crash reproduces.
fn now() -> Timestamp {
    Timestamp::from_second(1_767_225_900).expect("a valid time")
}

/// An actor of each kind, by `selector`.
fn actor(selector: u8) -> Actor {
    let (kind, id) = match selector % 4 {
        0 => (ActorKind::Department, "puc-sewer-ops"),
        1 => (ActorKind::Department, "dpw-ops-queue"),
        2 => (ActorKind::Dispatcher, "dispatcher-1"),
        _ => (ActorKind::Resident, "reporter"),
    };
    Actor { kind, id: id.to_owned() }
}
