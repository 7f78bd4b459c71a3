//! The JSON Schemas in `docs/schemas/` and the examples in `docs/examples/`, held to the Rust
//! wire types so the docs cannot drift from the code.
//!
//! - The schemas are generated here from [`linkbus_bus::wire`] with schemars, then tightened
//!   with what serde cannot say (the fixed CloudEvents attributes, id and category syntax,
//!   priority and coordinate ranges). `UPDATE_SCHEMAS=1 cargo test -p linkbus-bus --test schemas`
//!   rewrites the files; without it the test fails when a committed file differs.
//! - Each example must validate against its schema, deserialize into its Rust type and
//!   serialize back to the same JSON; the report must pass the router's own decoder; the routed
//!   event must be the one the router builds for the report, and the offer must fit the
//!   volunteer whose status is the status example.
//! - Bad messages must be refused by the schema *and* by the Rust side, so neither is looser.

use std::fs;
use std::path::{Path, PathBuf};

use jsonschema::Validator;
use linkbus_bus::decode::decode_case_report;
use linkbus_bus::subjects;
use linkbus_bus::wire::{self, CaseReport, CloudEvent, RoutedCase, VolunteerOffer, VolunteerStatus};
use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

/// Ids of events sent to the bus: the case id that also names subjects (see `wire::is_event_id`).
const INGEST_ID_PATTERN: &str = "^[A-Za-z0-9_:-]{1,128}$";
/// Ids of events the router derives from a case id (`<case_id>:routed`, `<case_id>:offer:<v>`):
/// the same characters, but they may run past 128.
const DERIVED_ID_PATTERN: &str = "^[A-Za-z0-9_:-]+$";
/// Categories and skills (see `wire::is_category`).
const CATEGORY_PATTERN: &str = "^[a-z0-9_]{1,64}$";
/// Volunteer ids (see `VolunteerStatus::validate`).
const VOLUNTEER_ID_PATTERN: &str = "^[A-Za-z0-9_-]{1,64}$";
/// The payload limit the router applies by default (`ServiceConfig::max_payload`).
const MAX_PAYLOAD: usize = 64 * 1024;

/// One message kind: where its schema and example live and how to generate and check them.
struct Kind {
    /// File stem in `docs/schemas/` and `docs/examples/`.
    name: &'static str,
    /// Generates the schema.
    schema: fn() -> Value,
    /// Deserializes a message into the Rust type and serializes it back.
    round_trip: fn(&Value) -> Result<Value, String>,
}

static KINDS: [Kind; 4] = [
    Kind { name: "case-reported", schema: case_reported_schema, round_trip: round_trip::<CloudEvent<CaseReport>> },
    Kind { name: "case-routed", schema: case_routed_schema, round_trip: round_trip::<CloudEvent<RoutedCase>> },
    Kind {
        name: "volunteer-offer",
        schema: volunteer_offer_schema,
        round_trip: round_trip::<CloudEvent<VolunteerOffer>>,
    },
    Kind { name: "volunteer-status", schema: volunteer_status_schema, round_trip: round_trip::<VolunteerStatus> },
];

fn case_reported_schema() -> Value {
    cloud_event::<CaseReport>(
        wire::TYPE_CASE_REPORTED,
        INGEST_ID_PATTERN,
        "An org.linkbus.case.reported event: a source system reports a case on \
         ingest.<system>.<category>. See docs/wire.md.",
    )
}

fn case_routed_schema() -> Value {
    cloud_event::<RoutedCase>(
        wire::TYPE_CASE_ROUTED,
        DERIVED_ID_PATTERN,
        "An org.linkbus.case.routed event: a case and its routing decision, as the router publishes \
         it on routed.dept.<department>.<category>, routed.community.<community> and \
         case.<case_id>.routed. See docs/wire.md.",
    )
}

fn volunteer_offer_schema() -> Value {
    cloud_event::<VolunteerOffer>(
        wire::TYPE_VOLUNTEER_OFFER,
        DERIVED_ID_PATTERN,
        "An org.linkbus.volunteer.offer event: a case offered to one volunteer on \
         volunteer.<id>.offer. See docs/wire.md.",
    )
}

fn volunteer_status_schema() -> Value {
    let mut schema = generate::<VolunteerStatus>();
    tighten(&mut schema);
    schema
}

/// The schema schemars derives for `T`, draft 2020-12, describing what deserializes.
fn generate<T: JsonSchema>() -> Value {
    SchemaSettings::draft2020_12().into_generator().into_root_schema_for::<T>().to_value()
}

/// The schema of a `CloudEvent<T>` whose fixed attributes are pinned to their only values.
fn cloud_event<T: JsonSchema>(ty: &str, id_pattern: &str, description: &str) -> Value {
    let mut schema = generate::<CloudEvent<T>>();
    schema["description"] = json!(description);
    constrain(&mut schema, "specversion", json!({ "const": wire::SPEC_VERSION }));
    constrain(&mut schema, "type", json!({ "const": ty }));
    constrain(&mut schema, "datacontenttype", json!({ "const": wire::JSON }));
    constrain(&mut schema, "id", json!({ "pattern": id_pattern }));
    constrain(&mut schema, "source", json!({ "minLength": 1 }));
    tighten(&mut schema);
    // schemars titles every instance "CloudEvent"; name the payload too (after `tighten`, which
    // finds a payload at the root by its title).
    schema["title"] = json!(format!("CloudEvent<{}>", T::schema_name()));
    schema
}

/// Adds to the payload definitions (wherever they appear: the root or `$defs`) the rules the
/// Rust side checks in `validate` rather than in the types.
fn tighten(schema: &mut Value) {
    let category = json!({ "pattern": CATEGORY_PATTERN });
    let priority = json!({ "minimum": 1, "maximum": 4 });
    let rules = [
        ("CaseReport", "category", category.clone()),
        ("CaseReport", "priority", priority.clone()),
        ("CaseReport", "source_id", json!({ "minLength": 1 })),
        ("Location", "lon", json!({ "minimum": -180, "maximum": 180 })),
        ("Location", "lat", json!({ "minimum": -90, "maximum": 90 })),
        ("VolunteerOffer", "category", category.clone()),
        ("VolunteerOffer", "priority", priority),
        ("VolunteerOffer", "skill", category.clone()),
        ("VolunteerOffer", "rank", json!({ "minimum": 1 })),
        ("VolunteerOffer", "volunteer_id", json!({ "pattern": VOLUNTEER_ID_PATTERN })),
        ("VolunteerStatus", "id", json!({ "pattern": VOLUNTEER_ID_PATTERN })),
        ("VolunteerStatus", "skills", json!({ "maxItems": 32, "items": category })),
    ];
    for (definition, property, extra) in rules {
        let is_root = schema["title"] == definition;
        let target = if is_root { Some(&mut *schema) } else { schema.pointer_mut(&format!("/$defs/{definition}")) };
        if let Some(target) = target {
            constrain(target, property, extra);
        }
    }
}

/// Merges `extra` into the schema of `object`'s `property`, which must exist.
fn constrain(object: &mut Value, property: &str, extra: Value) {
    let title = object["title"].clone();
    let target = object
        .pointer_mut(&format!("/properties/{property}"))
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("schema {title} has no property {property:?}: has the wire type changed?"));
    merge(target, extra);
}

fn merge(target: &mut Map<String, Value>, extra: Value) {
    let Value::Object(extra) = extra else { panic!("constraints must be an object") };
    for (key, value) in extra {
        match (target.get_mut(&key), value) {
            (Some(Value::Object(inner)), Value::Object(more)) => merge(inner, Value::Object(more)),
            (_, value) => {
                target.insert(key, value);
            }
        }
    }
}

fn round_trip<T: Serialize + DeserializeOwned>(message: &Value) -> Result<Value, String> {
    let parsed: T = serde_json::from_value(message.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(&parsed).map_err(|e| e.to_string())
}

fn docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs")
}

fn schema_path(name: &str) -> PathBuf {
    docs().join("schemas").join(format!("{name}.json"))
}

fn pretty(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("a JSON value always serialises");
    text.push('\n');
    text
}

fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn example(name: &str) -> Value {
    read_json(&docs().join("examples").join(format!("{name}.json")))
}

fn validator(schema: &Value) -> Validator {
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(schema)
        .unwrap_or_else(|e| panic!("schema {} does not compile: {e}", schema["title"]))
}

fn kind(name: &str) -> &'static Kind {
    KINDS.iter().find(|k| k.name == name).expect("a known kind")
}

#[test]
fn committed_schemas_match_the_code() {
    let update = std::env::var_os("UPDATE_SCHEMAS").is_some_and(|v| v == "1");
    let dir = docs().join("schemas");
    let mut stale = Vec::new();
    for kind in &KINDS {
        let path = schema_path(kind.name);
        let generated = pretty(&(kind.schema)());
        if update {
            fs::create_dir_all(&dir).expect("create docs/schemas");
            fs::write(&path, &generated).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        } else {
            match fs::read_to_string(&path) {
                Ok(committed) if committed == generated => {}
                Ok(committed) => {
                    let line = committed.lines().zip(generated.lines()).position(|(a, b)| a != b);
                    let at = line.map_or_else(|| "in length".to_owned(), |n| format!("from line {}", n + 1));
                    stale.push(format!("docs/schemas/{}.json differs {at}", kind.name));
                }
                Err(e) => stale.push(format!("docs/schemas/{}.json: {e}", kind.name)),
            }
        }
    }
    let expected: Vec<String> = KINDS.iter().map(|k| format!("{}.json", k.name)).collect();
    let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let name = entry.expect("read docs/schemas").file_name().to_string_lossy().into_owned();
        if !expected.contains(&name) {
            stale.push(format!("docs/schemas/{name} is not generated from any wire type; remove it"));
        }
    }
    assert!(
        stale.is_empty(),
        "docs/schemas/ is out of date with bus/src/wire.rs:\n  {}\n\
         Regenerate with `UPDATE_SCHEMAS=1 cargo test -p linkbus-bus --test schemas`, review the diff \
         and commit it (and update docs/wire.md and docs/examples/ if the contract changed).",
        stale.join("\n  ")
    );
}

#[test]
fn examples_validate_and_are_what_the_code_emits() {
    for kind in &KINDS {
        let message = example(kind.name);
        let validator = validator(&(kind.schema)());
        let errors: Vec<String> =
            validator.iter_errors(&message).map(|e| format!("{e} at {}", e.instance_path())).collect();
        assert!(errors.is_empty(), "docs/examples/{}.json breaks its schema:\n{}", kind.name, errors.join("\n"));
        let again = (kind.round_trip)(&message)
            .unwrap_or_else(|e| panic!("docs/examples/{}.json does not deserialize: {e}", kind.name));
        assert_eq!(again, message, "docs/examples/{}.json is not what the Rust type serializes", kind.name);
    }

    let status: VolunteerStatus = serde_json::from_value(example("volunteer-status")).expect("status");
    status.validate().expect("the example status passes VolunteerStatus::validate");
}

#[test]
fn the_example_report_passes_the_router_decoder() {
    let message = example("case-reported");
    let report: CloudEvent<CaseReport> = serde_json::from_value(message.clone()).expect("report");
    let subject = subjects::ingest(report.data.system, &report.data.category);
    assert_eq!(subject, "ingest.public_service.sewer_issues", "wire.md names this subject");
    let bytes = serde_json::to_vec(&message).expect("serialise");
    let decoded = decode_case_report(&subject, &bytes, MAX_PAYLOAD).expect("the example report is accepted");
    assert_eq!(decoded, report);
}

#[test]
fn the_examples_agree_with_each_other() {
    let report: CloudEvent<CaseReport> = serde_json::from_value(example("case-reported")).expect("report");
    let routed: CloudEvent<RoutedCase> = serde_json::from_value(example("case-routed")).expect("routed");
    let offer: CloudEvent<VolunteerOffer> = serde_json::from_value(example("volunteer-offer")).expect("offer");
    let status: VolunteerStatus = serde_json::from_value(example("volunteer-status")).expect("status");

    // The routed event is the one `routers::service` builds for the report.
    let case_id = &report.id;
    assert_eq!(routed.id, format!("{case_id}:routed"));
    assert_eq!(routed.subject.as_deref(), Some(case_id.as_str()));
    assert_eq!(&routed.data.case_id, case_id);
    assert_eq!(routed.data.case, report.data);
    assert_eq!(routed.time, routed.data.routed_at);
    assert!(routed.data.routed_at >= report.data.reported_at);
    assert!(!routed.data.decision.departments.is_empty(), "a decision always names a department");

    // The offer (for another case: sewer issues call for no volunteers) is built the same way,
    // for the volunteer whose status is the other example.
    let offered = &offer.data;
    assert_eq!(offer.id, format!("{}:offer:{}", offered.case_id, offered.volunteer_id));
    assert_eq!(offer.subject.as_ref(), Some(&offered.case_id));
    assert_eq!(offer.source, routed.source);
    assert_eq!(status.id, offered.volunteer_id);
    assert!(status.available && status.skills.contains(&offered.skill));
    let distance = haversine_m(offered.location, status.location);
    assert!(
        (distance - offered.distance_m).abs() <= 0.01,
        "the offer says {} m, the positions are {distance} m apart",
        offered.distance_m
    );
}

/// Great-circle distance on the sphere the router uses (`routers::geodesy`).
fn haversine_m(a: wire::Location, b: wire::Location) -> f64 {
    const EARTH_RADIUS_M: f64 = 6_371_008.8;
    let (p1, p2) = (a.lat.to_radians(), b.lat.to_radians());
    let (dp, dl) = (p2 - p1, (b.lon - a.lon).to_radians());
    let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
}

/// `message` with the field at the JSON pointer `at` set to `value`, or removed when `None`.
fn edit(message: &Value, at: &str, value: Option<Value>) -> Value {
    let mut message = message.clone();
    let (parent, key) = at.rsplit_once('/').expect("a JSON pointer");
    let object =
        message.pointer_mut(parent).and_then(Value::as_object_mut).unwrap_or_else(|| panic!("no object at {parent:?}"));
    match value {
        Some(value) => object.insert(key.to_owned(), value),
        None => object.remove(key),
    };
    message
}

/// Changes that spoil a report: what, where, the new value (`None`: removed), and the code the
/// router's decoder refuses it with.
fn bad_reports() -> Vec<(&'static str, &'static str, Option<Value>, &'static str)> {
    vec![
        ("missing category", "/data/category", None, "malformed"),
        ("missing location", "/data/location", None, "malformed"),
        ("missing time", "/time", None, "malformed"),
        ("priority as a string", "/data/priority", Some(json!("3")), "malformed"),
        ("unknown data field", "/data/severity", Some(json!("minor")), "malformed"),
        ("unknown envelope attribute", "/traceparent", Some(json!("00-0af7-b7ad-01")), "malformed"),
        ("unknown system", "/data/system", Some(json!("311")), "malformed"),
        ("time without an offset", "/time", Some(json!("2014-12-11T08:01:02")), "malformed"),
        ("specversion 0.3", "/specversion", Some(json!("0.3")), "unsupported"),
        ("another type", "/type", Some(json!(wire::TYPE_CASE_ROUTED)), "unsupported"),
        ("datacontenttype text/plain", "/datacontenttype", Some(json!("text/plain")), "unsupported"),
        ("id with a dot", "/id", Some(json!("sf311.4292128")), "invalid"),
        ("id of 129 characters", "/id", Some(json!("x".repeat(129))), "invalid"),
        ("empty source", "/source", Some(json!("")), "invalid"),
        ("category with capitals", "/data/category", Some(json!("Sewer_Issues")), "invalid"),
        ("priority 0", "/data/priority", Some(json!(0)), "invalid"),
        ("priority 5", "/data/priority", Some(json!(5)), "invalid"),
        ("latitude 91", "/data/location/lat", Some(json!(91.0)), "invalid"),
        ("longitude -181", "/data/location/lon", Some(json!(-181.0)), "invalid"),
        ("empty source_id", "/data/source_id", Some(json!("")), "invalid"),
    ]
}

#[test]
fn schemas_and_code_refuse_the_same_bad_reports() {
    let validator = validator(&(kind("case-reported").schema)());
    const SUBJECT: &str = "ingest.public_service.sewer_issues";
    let good = example("case-reported");
    for (what, at, value, code) in bad_reports() {
        let message = edit(&good, at, value);
        assert!(!validator.is_valid(&message), "the case-reported schema accepts a report with {what}");
        let bytes = serde_json::to_vec(&message).expect("serialise");
        let rejection = decode_case_report(SUBJECT, &bytes, MAX_PAYLOAD)
            .expect_err(&format!("the router accepts a report with {what}"));
        assert_eq!(rejection.code(), code, "{what}: {rejection}");
    }
}

#[test]
fn schemas_refuse_bad_offers_and_statuses() {
    let offer = validator(&(kind("volunteer-offer").schema)());
    let good = example("volunteer-offer");
    let bad_offers = [
        ("missing case_id", "/data/case_id", None),
        ("priority as a string", "/data/priority", Some(json!("3"))),
        ("rank 0", "/data/rank", Some(json!(0))),
        ("another type", "/type", Some(json!(wire::TYPE_CASE_ROUTED))),
    ];
    for (what, at, value) in bad_offers {
        let message = edit(&good, at, value);
        assert!(!offer.is_valid(&message), "the volunteer-offer schema accepts an offer with {what}");
    }

    let status = validator(&(kind("volunteer-status").schema)());
    let good = example("volunteer-status");
    let bad_statuses = [
        ("missing skills", "/skills", None),
        ("unknown field", "/name", Some(json!("Ana"))),
        ("id with a dot", "/id", Some(json!("sf.v00986"))),
        ("skill with a space", "/skills", Some(json!(["first aid"]))),
        ("33 skills", "/skills", Some(json!(vec!["cleanup"; 33]))),
        ("latitude 91", "/location/lat", Some(json!(91.0))),
        ("availability as a string", "/available", Some(json!("yes"))),
    ];
    for (what, at, value) in bad_statuses {
        let message = edit(&good, at, value);
        assert!(!status.is_valid(&message), "the volunteer-status schema accepts a status with {what}");
        let refused = serde_json::from_value::<VolunteerStatus>(message)
            .map_err(|e| e.to_string())
            .and_then(|s| s.validate().map_err(|e| e.to_string()));
        assert!(refused.is_err(), "the router accepts a volunteer status with {what}");
    }
}
