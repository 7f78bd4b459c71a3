//! Hostile input: one check per parser that sees outside bytes, shared by the fuzz targets
//! (`fuzz/fuzz_targets/`, each a one-line call of its check) and by the normal suite, which
//! replays the inputs kept in `fuzz/regressions/<target>/` (every crash found becomes one) through
//! [`TARGETS`]. A check returns normally for any input, refused or not; a panic is the bug.
//!
//! Adding a target: a function here, a line in [`TARGETS`], a file in `fuzz/fuzz_targets/` and a
//! `[[bin]]` in `fuzz/Cargo.toml`.

use jiff::Timestamp;
use linkbus_bus::decode::decode_case_report;
use linkbus_bus::wire::{
    ActionRequest, Actor, ActorKind, CaseRecord, CloudEvent, RoutedCase, VolunteerAnswer, VolunteerStatus,
};
use linkbus_cases::lifecycle::{self, Ladder, Policy};

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

/// A volunteer's answer on `volunteer.<id>.answer` (first byte: which volunteer, offered or
/// not), applied to a case with two offers out.
pub fn volunteer_answer(data: &[u8]) {
    const VOLUNTEERS: [&str; 3] = ["sf-v00001", "sf-v00002", "sf-v09999"];
    let Some((who, payload)) = data.split_first() else { return };
    let Ok(answer) = serde_json::from_slice::<VolunteerAnswer>(payload) else { return };
    let volunteer = VOLUNTEERS[usize::from(*who) % VOLUNTEERS.len()];
    for record in records() {
        let _ = lifecycle::answer(&record, volunteer, answer.accept, now(), &Policy::default(), |_| vec![]);
    }
}

/// HTTP API bodies (first byte: who calls): `POST /api/cases/{id}/actions` through the API's
/// parser and the lifecycle, and a rating as `POST /api/requests/{source_id}/rating` decodes it.
pub fn api_bodies(data: &[u8]) {
    let Some((who, body)) = data.split_first() else { return };
    let _ = serde_json::from_slice::<linkbus::api::RatingRequest>(body);
    if let Ok(action) = linkbus::api::parse_action(body) {
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
    let mut index = linkbus_routers::VolunteerIndex::new();
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
    if let Ok(linkbus_adapters::intake::Message::Report(event)) =
        linkbus_adapters::cap::to_intake(&alert, &linkbus_adapters::cap::CapConfig::default())
    {
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

fn act_on_every_record(who: u8, action: &linkbus_bus::wire::Action) {
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
