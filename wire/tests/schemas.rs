//! The JSON Schemas in `docs/schemas/` and the examples in `docs/examples/`, held to the Rust
//! wire types so the docs cannot drift from the code.
//!
//! - The schemas are generated here from [`linkbus_wire`] with schemars, then tightened
//!   with what serde cannot say (the fixed CloudEvents attributes, id and category syntax,
//!   priority and coordinate ranges). `UPDATE_SCHEMAS=1 cargo test -p linkbus-wire --test schemas`
//!   rewrites the files; without it the test fails when a committed file differs.
//! - Each example must validate against its schema, deserialize into its Rust type and
//!   serialize back to the same JSON; the report must pass the router's own decoder; the routed
//!   event must be the one the router builds for the report, and the offer must fit the
//!   volunteer whose status is the status example. The closed-loop examples (case record,
//!   timeline event, assignment, action request and reply, volunteer answer, closed offer) must
//!   tell one story with them, with the ids and deadlines the case book (`cases/src/book/`)
//!   gives.
//! - Bad messages must be refused by the schema *and* by the Rust side, so neither is looser.

use std::fs;
use std::path::{Path, PathBuf};

use jiff::SignedDuration;
use jsonschema::Validator;
use linkbus_wire::decode::decode_case_report;
use linkbus_wire::subjects;
use linkbus_wire::{
    self as wire, ActionReply, ActionRequest, ActorKind, AssignmentReason, CaseAssigned, CaseEvent, CaseRecord,
    CaseReport, CaseState, CloudEvent, OfferClosed, ReplayRequest, RoutedCase, VolunteerAnswer, VolunteerOffer,
    VolunteerStatus, VolunteerStepReport,
};
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
/// Department ids (see `linkbus_geo_data::model::is_id`).
const DEPARTMENT_ID_PATTERN: &str = "^[A-Za-z0-9_-]{1,64}$";
/// Texts the case book requires (reasons, notes): not blank (see `required` in `cases/src/lifecycle/actions.rs`).
const NOT_BLANK_PATTERN: &str = "\\S";
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

static KINDS: [Kind; 13] = [
    Kind { name: "case-reported", schema: case_reported_schema, round_trip: round_trip::<CloudEvent<CaseReport>> },
    Kind { name: "case-routed", schema: case_routed_schema, round_trip: round_trip::<CloudEvent<RoutedCase>> },
    Kind {
        name: "volunteer-offer",
        schema: volunteer_offer_schema,
        round_trip: round_trip::<CloudEvent<VolunteerOffer>>,
    },
    Kind { name: "volunteer-status", schema: volunteer_status_schema, round_trip: round_trip::<VolunteerStatus> },
    Kind { name: "case-record", schema: case_record_schema, round_trip: round_trip::<CaseRecord> },
    Kind { name: "case-event", schema: case_event_schema, round_trip: round_trip::<CloudEvent<CaseEvent>> },
    Kind { name: "case-assigned", schema: case_assigned_schema, round_trip: round_trip::<CloudEvent<CaseAssigned>> },
    Kind { name: "offer-closed", schema: offer_closed_schema, round_trip: round_trip::<CloudEvent<OfferClosed>> },
    Kind { name: "action-request", schema: action_request_schema, round_trip: round_trip::<ActionRequest> },
    Kind { name: "replay-request", schema: replay_request_schema, round_trip: round_trip::<ReplayRequest> },
    Kind { name: "action-reply", schema: action_reply_schema, round_trip: round_trip::<ActionReply> },
    Kind { name: "volunteer-answer", schema: volunteer_answer_schema, round_trip: round_trip::<VolunteerAnswer> },
    Kind { name: "volunteer-step", schema: volunteer_step_schema, round_trip: round_trip::<VolunteerStepReport> },
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
         it on routed.dept.<department>.<category>[.<community>], routed.community.<community> and \
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

fn case_record_schema() -> Value {
    let mut schema = generate::<CaseRecord>();
    schema["description"] = json!(
        "A case as linkbus keeps it (not a CloudEvent): the `record` of the value stored under the \
         case id in the linkbus_cases KV bucket ({\"record\": ..., \"outbox\": [...]}), what \
         GET /api/cases/{id} returns, and the `record` of an org.linkbus.case.assigned event. \
         See docs/lifecycle.md."
    );
    tighten(&mut schema);
    schema
}

fn case_event_schema() -> Value {
    cloud_event::<CaseEvent>(
        wire::TYPE_CASE_EVENT,
        DERIVED_ID_PATTERN,
        "An org.linkbus.case.event event: one line of a case's timeline and the state after it, as \
         the case book publishes it on case.<case_id>.<event> (id <case_id>:t<n>), and on \
         routed.dept.<department>.<category> to tell a department that a report it had was merged \
         into another case (id <case_id>:notify:<department>:<n>). See docs/lifecycle.md.",
    )
}

fn case_assigned_schema() -> Value {
    cloud_event::<CaseAssigned>(
        wire::TYPE_CASE_ASSIGNED,
        DERIVED_ID_PATTERN,
        "An org.linkbus.case.assigned event: a case given to a department after routing (rerouted \
         after a rejection, escalated, reassigned, split, reopened), on \
         routed.dept.<department>.<category> with id <case_id>:assign:<department>:<n>. See \
         docs/lifecycle.md.",
    )
}

fn offer_closed_schema() -> Value {
    cloud_event::<OfferClosed>(
        wire::TYPE_OFFER_CLOSED,
        DERIVED_ID_PATTERN,
        "An org.linkbus.volunteer.offer_closed event: an offer to a volunteer is no longer open \
         (another volunteer took the case, no answer in time, the case ended), on \
         volunteer.<id>.offer_closed with id <case_id>:closed:<volunteer_id>. See docs/lifecycle.md.",
    )
}

fn action_request_schema() -> Value {
    let mut schema = generate::<ActionRequest>();
    schema["description"] = json!(
        "A department's action on one of its cases, sent as a NATS request on action.<department> \
         (not a CloudEvent): `case_id` and the action, side by side, e.g. {\"case_id\": \
         \"sf311-4292128\", \"action\": \"reject\", \"reason\": \"not ours\"}. No other field. \
         The reply is an ActionReply. See docs/lifecycle.md."
    );
    beside_the_action(&mut schema, &["case_id"]);
    schema
}

fn replay_request_schema() -> Value {
    let mut schema = generate::<ReplayRequest>();
    schema["description"] = json!(
        "A replayed or simulated action, sent as a NATS request on replay.action by the service's \
         own user only (linkbus replay --outcomes real, the simulated feed), not a CloudEvent: the \
         case, who did it, when (seconds after the case was opened), where it comes from, and the \
         action beside them. No other field. The case book refuses a time in the future or before \
         the case's last entry, and an actor other than a department, the source or the resident. \
         The reply is an ActionReply. See docs/lifecycle.md."
    );
    beside_the_action(&mut schema, &["case_id", "actor", "after_open_secs", "origin"]);
    constrain(&mut schema, "after_open_secs", json!({ "minimum": 0 }));
    constrain(&mut schema, "origin", json!({ "minLength": 1, "maxLength": 200, "pattern": NOT_BLANK_PATTERN }));
    schema
}

/// Tightens the schema of a request that carries the `fields` beside a flattened [`wire::Action`].
fn beside_the_action(schema: &mut Value, fields: &[&str]) {
    constrain(schema, "case_id", json!({ "pattern": INGEST_ID_PATTERN }));
    // schemars renders the flattened, internally tagged `action` as a `oneOf` of its variants
    // next to the other fields, and loses `deny_unknown_fields` on the way: each variant must name
    // those fields and refuse everything else, as the hand-written `Deserialize`s do.
    let variants = schema["oneOf"].as_array_mut().expect("the schema is a oneOf of the actions");
    for variant in variants {
        for field in fields {
            variant["properties"][*field] = json!(true);
        }
        variant["additionalProperties"] = json!(false);
    }
    let not_blank = || json!({ "pattern": NOT_BLANK_PATTERN });
    let rules = [
        ("reject", "reason", not_blank()),
        ("progress", "note", not_blank()),
        ("resolve", "note", not_blank()),
        ("cancel", "reason", not_blank()),
        ("reassign", "department", json!({ "pattern": DEPARTMENT_ID_PATTERN })),
        ("reassign", "reason", not_blank()),
        ("split", "report_id", json!({ "pattern": INGEST_ID_PATTERN })),
        ("rate", "score", json!({ "minimum": 1, "maximum": 5 })),
    ];
    for (action, property, extra) in rules {
        constrain(variant(schema, action), property, extra);
    }
}

fn action_reply_schema() -> Value {
    let mut schema = generate::<ActionReply>();
    tighten(&mut schema);
    schema
}

fn volunteer_answer_schema() -> Value {
    let mut schema = generate::<VolunteerAnswer>();
    tighten(&mut schema);
    schema
}

fn volunteer_step_schema() -> Value {
    let mut schema = generate::<VolunteerStepReport>();
    tighten(&mut schema);
    schema
}

/// The variant of a request's `oneOf` whose `action` is `name`.
fn variant<'a>(schema: &'a mut Value, name: &str) -> &'a mut Value {
    schema["oneOf"]
        .as_array_mut()
        .and_then(|variants| variants.iter_mut().find(|v| v["properties"]["action"]["const"] == name))
        .unwrap_or_else(|| panic!("the request has no action {name:?}: has the wire type changed?"))
}

/// The schema schemars derives for `T`, draft 2020-12, describing what deserializes.
fn generate<T: JsonSchema>() -> Value {
    SchemaSettings::draft2020_12()
        .with_transform(wire::schema::string_enums)
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}

/// `application/json` or a `+json` media type, parameters allowed (lowercase here; the decoder
/// reads media types in any case, as RFC 9110 says).
const JSON_MEDIA_TYPE_PATTERN: &str = "^(application/json|[a-z0-9.+-]+/[a-z0-9.+-]*\\+json)( *;.*)?$";

/// The schema of a `CloudEvent<T>` whose fixed attributes are pinned to their only values.
fn cloud_event<T: JsonSchema>(ty: &str, id_pattern: &str, description: &str) -> Value {
    let mut schema = generate::<CloudEvent<T>>();
    schema["description"] = json!(description);
    constrain(&mut schema, "specversion", json!({ "const": wire::SPEC_VERSION }));
    constrain(&mut schema, "type", json!({ "const": ty }));
    // A report may name any JSON media type, or none (read as JSON); linkbus emits only this one.
    let content_type = if ty == wire::TYPE_CASE_REPORTED {
        json!({ "pattern": JSON_MEDIA_TYPE_PATTERN })
    } else {
        json!({ "const": wire::JSON })
    };
    constrain(&mut schema, "datacontenttype", content_type);
    constrain(&mut schema, "dataschema", json!({ "minLength": 1, "maxLength": 2048 }));
    // Extension attributes: CloudEvents' naming rule, and the values linkbus keeps.
    schema["propertyNames"] = json!({ "pattern": "^[a-z0-9]{1,20}$" });
    schema["additionalProperties"] =
        json!({ "type": ["string", "integer", "boolean"], "maxLength": linkbus_wire::decode::MAX_EXTENSION_LEN });
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
    let case_id = json!({ "pattern": INGEST_ID_PATTERN });
    let department = json!({ "pattern": DEPARTMENT_ID_PATTERN });
    let departments = json!({ "items": department });
    let volunteer = json!({ "pattern": VOLUNTEER_ID_PATTERN });
    let rules = [
        ("CaseReport", "category", category.clone()),
        ("CaseReport", "priority", priority.clone()),
        ("CaseReport", "source_id", json!({ "minLength": 1 })),
        ("CaseReport", "flags", json!({ "maxItems": 16, "items": category })),
        ("Location", "lon", json!({ "minimum": -180, "maximum": 180 })),
        ("Location", "lat", json!({ "minimum": -90, "maximum": 90 })),
        ("Decision", "priority", priority.clone()),
        ("VolunteerOffer", "category", category.clone()),
        ("VolunteerOffer", "priority", priority.clone()),
        ("VolunteerOffer", "skill", category.clone()),
        ("VolunteerOffer", "rank", json!({ "minimum": 1 })),
        ("VolunteerOffer", "volunteer_id", volunteer.clone()),
        ("VolunteerStatus", "id", volunteer.clone()),
        ("VolunteerStatus", "skills", json!({ "maxItems": 32, "items": category })),
        ("CaseRecord", "case_id", case_id.clone()),
        ("CaseRecord", "merged_into", case_id.clone()),
        ("CaseRecord", "priority", priority),
        ("CaseRecord", "departments", departments.clone()),
        ("CaseRecord", "accepted_by", department.clone()),
        ("CaseRecord", "candidates", departments.clone()),
        ("CaseRecord", "rejected_by", departments),
        ("ReportRef", "report_id", case_id.clone()),
        ("ReportRef", "category", category.clone()),
        ("ReportRef", "source_id", json!({ "minLength": 1 })),
        ("TimelineEntry", "event", category.clone()),
        ("TimelineEntry", "department", department.clone()),
        ("OfferState", "volunteer_id", volunteer.clone()),
        ("Rating", "score", json!({ "minimum": 1, "maximum": 5 })),
        ("CaseEvent", "case_id", case_id.clone()),
        ("CaseAssigned", "case_id", case_id.clone()),
        ("CaseAssigned", "department", department),
        ("OfferClosed", "case_id", case_id.clone()),
        ("OfferClosed", "volunteer_id", volunteer),
        ("OfferClosed", "reason", json!({ "enum": ["taken", "expired", "case_closed"] })),
        ("VolunteerAnswer", "case_id", case_id.clone()),
        ("VolunteerStepReport", "case_id", case_id),
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
        "docs/schemas/ is out of date with wire/src/:\n  {}\n\
         Regenerate with `UPDATE_SCHEMAS=1 cargo test -p linkbus-wire --test schemas`, review the diff \
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

/// The deadlines of a priority-3 case under the default `[lifecycle]` policy
/// (`cases::lifecycle::Policy::default`): accept within an hour, resolve within three days.
const P3_ACCEPT: SignedDuration = SignedDuration::from_hours(1);
const P3_RESOLVE: SignedDuration = SignedDuration::from_hours(72);

#[test]
fn the_closed_loop_examples_tell_one_story() {
    let report: CloudEvent<CaseReport> = serde_json::from_value(example("case-reported")).expect("report");
    let routed: CloudEvent<RoutedCase> = serde_json::from_value(example("case-routed")).expect("routed");
    let record: CaseRecord = serde_json::from_value(example("case-record")).expect("record");
    let event: CloudEvent<CaseEvent> = serde_json::from_value(example("case-event")).expect("event");
    let assigned: CloudEvent<CaseAssigned> = serde_json::from_value(example("case-assigned")).expect("assigned");
    let request: ActionRequest = serde_json::from_value(example("action-request")).expect("request");
    let offer: CloudEvent<VolunteerOffer> = serde_json::from_value(example("volunteer-offer")).expect("offer");
    let answer: VolunteerAnswer = serde_json::from_value(example("volunteer-answer")).expect("answer");
    let reply: ActionReply = serde_json::from_value(example("action-reply")).expect("reply");
    let closed: CloudEvent<OfferClosed> = serde_json::from_value(example("offer-closed")).expect("closed");
    let case_id = &report.id;
    // `linkbus up` gives the case book the router's source with `/cases` appended.
    let book_source = format!("{}/cases", routed.source);

    // The record as the case book opens it from the routed case (`cases::lifecycle::open`)…
    let opened = &record.timeline[0];
    assert_eq!(&record.case_id, case_id);
    assert_eq!(record.case, report.data);
    assert_eq!(record.decision, routed.data.decision);
    assert_eq!(record.priority, routed.data.decision.priority);
    assert_eq!(record.community, routed.data.decision.community.community);
    let report_ref = &record.reports[..];
    assert!(matches!(report_ref, [r] if &r.report_id == case_id && r.source_id == report.data.source_id));
    assert_eq!(report_ref[0].source, report.source, "a report is known by the source that reported it");
    assert_eq!(routed.data.source, report.source, "the routed case names the reporting source");
    assert_eq!((opened.event.as_str(), opened.actor.kind), ("routed", ActorKind::System));
    assert_eq!(opened.at, record.created_at);
    assert!(record.created_at >= routed.data.routed_at);
    let fallbacks: Vec<&str> = routed.data.decision.fallbacks.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(fallbacks, ["sf-311"], "the region's catch-all is the only fallback for sewer_issues");

    // …then accepted by the department it was routed to (`cases::lifecycle::act`).
    let [_, accepted] = &record.timeline[..] else { panic!("the record is routed, then accepted") };
    assert_eq!((record.state, accepted.event.as_str()), (CaseState::Accepted, "accepted"));
    assert_eq!(record.departments, ["puc-sewer-ops"]);
    assert_eq!((accepted.actor.kind, accepted.actor.id.as_str()), (ActorKind::Department, "puc-sewer-ops"));
    assert_eq!(accepted.department.as_deref(), Some("puc-sewer-ops"));
    assert_eq!(record.accepted_by.as_deref(), Some("puc-sewer-ops"));
    assert_eq!((record.accept_by, record.resolve_by), (None, Some(accepted.at + P3_RESOLVE)));
    assert_eq!(record.candidates, fallbacks);
    assert_eq!(record.updated_at, accepted.at);

    // The timeline event the acceptance sends on `case.<id>.accepted`.
    assert_eq!(event.id, format!("{case_id}:t1"));
    assert_eq!((event.subject.as_ref(), &event.source, event.time), (Some(case_id), &book_source, accepted.at));
    assert_eq!((&event.data.case_id, event.data.state, &event.data.entry), (case_id, record.state, accepted));
    assert_eq!(
        subjects::case_event(case_id, accepted.event.as_str()),
        "case.sf311-4292128.accepted",
        "wire.md names it"
    );

    // The other history: puc-sewer-ops rejects with the example request instead, and the case
    // goes to its only fallback, the catch-all.
    assert_eq!(&request.case_id, case_id);
    let wire::Action::Reject { reason } = &request.action else { panic!("the example request is a reject") };
    let a = &assigned.data;
    let r = &a.record;
    let [_, rejected, rerouted] = &r.timeline[..] else { panic!("routed, rejected, rerouted") };
    assert_eq!(assigned.id, format!("{case_id}:assign:sf-311:{}", r.timeline.len()));
    assert_eq!(
        (assigned.subject.as_ref(), &assigned.source, assigned.time),
        (Some(case_id), &book_source, r.updated_at)
    );
    assert_eq!((&a.case_id, a.department.as_str(), a.reason), (case_id, "sf-311", AssignmentReason::Rerouted));
    assert_eq!(subjects::routed_department(&a.department, &r.case.category), "routed.dept.sf-311.sewer_issues");
    assert_eq!((&r.case_id, &r.case, &r.decision), (case_id, &report.data, &routed.data.decision));
    assert_eq!((&r.timeline[0], r.created_at), (opened, record.created_at));
    assert_eq!((rejected.event.as_str(), rejected.actor.id.as_str()), ("rejected", "puc-sewer-ops"));
    assert_eq!((rejected.department.as_deref(), rejected.note.as_ref()), (Some("puc-sewer-ops"), Some(reason)));
    assert_eq!((rerouted.event.as_str(), rerouted.actor.kind), ("rerouted", ActorKind::System));
    assert_eq!((rerouted.department.as_deref(), rerouted.at), (Some("sf-311"), rejected.at));
    assert_eq!(
        (r.state, &r.departments, &r.rejected_by),
        (CaseState::Routed, &vec!["sf-311".to_owned()], &vec!["puc-sewer-ops".to_owned()])
    );
    assert!(r.candidates.is_empty() && r.accepted_by.is_none());
    assert_eq!((r.accept_by, r.updated_at), (Some(rejected.at + P3_ACCEPT), rejected.at));

    // The street-cleaning offer: sf-v00986 accepts and is told where to go; the next nearest
    // volunteer offered the case is told it is taken.
    let o = &offer.data;
    assert_eq!((&answer.case_id, answer.accept), (&o.case_id, true));
    assert_eq!((reply.ok, &reply.case_id, reply.error.as_ref()), (true, &o.case_id, None));
    assert!(reply.state.is_some_and(CaseState::is_open));
    let to = reply.assignment.as_ref().expect("an accept is told where to go");
    assert_eq!((to.location, &to.address), (o.location, &o.address));
    let c = &closed.data;
    assert_eq!(closed.id, format!("{}:closed:{}", c.case_id, c.volunteer_id));
    assert_eq!((closed.subject.as_ref(), &closed.source), (Some(&o.case_id), &book_source));
    assert!(closed.time > offer.time);
    assert_eq!((&c.case_id, c.reason.as_str()), (&o.case_id, "taken"));
    assert_ne!(c.volunteer_id, o.volunteer_id);
    let roster = fs::read_to_string(docs().join("../geo-data/san-francisco/volunteers.jsonl")).expect("SF roster");
    let other: VolunteerStatus = roster
        .lines()
        .map(|line| serde_json::from_str::<VolunteerStatus>(line).expect("a roster line"))
        .find(|v| v.id == c.volunteer_id)
        .expect("the closed offer's volunteer is in the SF roster");
    assert!(other.available && other.skills.contains(&o.skill), "{} could have been offered the case", other.id);
    assert!(haversine_m(o.location, other.location) > o.distance_m, "{} is farther than the first", other.id);
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
        ("extension attribute with capitals", "/traceParent", Some(json!("00-0af7-b7ad-01")), "invalid"),
        ("extension attribute of an object", "/trace", Some(json!({ "id": 1 })), "invalid"),
        ("extension attribute of 1,025 bytes", "/note", Some(json!("x".repeat(1025))), "invalid"),
        ("empty dataschema", "/dataschema", Some(json!("")), "invalid"),
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
        ("flag with capitals", "/data/flags", Some(json!(["Elderly_Alone"])), "invalid"),
        ("17 flags", "/data/flags", Some(json!(vec!["minor"; 17])), "invalid"),
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

/// What the official CloudEvents SDKs send by default, and what the spec allows besides: both the
/// schema and the router take it.
#[test]
fn schemas_and_code_accept_what_cloudevents_producers_send() {
    let validator = validator(&(kind("case-reported").schema)());
    const SUBJECT: &str = "ingest.public_service.sewer_issues";
    let good = example("case-reported");
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let variants = [
        ("no datacontenttype", "/datacontenttype", None),
        ("a charset parameter", "/datacontenttype", Some(json!("application/json; charset=utf-8"))),
        ("a +json media type", "/datacontenttype", Some(json!("application/cloudevents+json"))),
        ("dataschema null", "/dataschema", Some(Value::Null)),
        ("a dataschema", "/dataschema", Some(json!("https://example.org/schemas/report.json"))),
        ("a trace context", "/traceparent", Some(json!(traceparent))),
        ("an integer extension", "/sequence", Some(json!(42))),
    ];
    for (what, at, value) in variants {
        let message = edit(&good, at, value);
        assert!(validator.is_valid(&message), "the case-reported schema refuses a report with {what}");
        let bytes = serde_json::to_vec(&message).expect("serialise");
        let event = decode_case_report(SUBJECT, &bytes, MAX_PAYLOAD)
            .unwrap_or_else(|e| panic!("the router refuses a report with {what}: {e}"));
        if what == "a trace context" {
            assert_eq!(event.extensions["traceparent"], traceparent, "kept");
        }
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

#[test]
fn schemas_and_code_refuse_the_same_bad_requests() {
    let requests = validator(&(kind("action-request").schema)());
    let good = example("action-request");
    let bad_requests = [
        ("an unknown action", "/action", Some(json!("escalate"))),
        ("no action", "/action", None),
        ("a reject without a reason", "/reason", None),
        ("a reason that is not a string", "/reason", Some(json!(7))),
        ("an unknown field", "/note", Some(json!("see photo"))),
        ("no case_id", "/case_id", None),
        ("a numeric case_id", "/case_id", Some(json!(4292128))),
    ];
    let mut bad: Vec<(String, Value)> =
        bad_requests.into_iter().map(|(what, at, value)| (what.to_owned(), edit(&good, at, value))).collect();
    // Actions without fields take none either.
    for action in ["accept", "acknowledge_escalation"] {
        bad.push((format!("{action} with a reason"), edit(&good, "/action", Some(json!(action)))));
    }
    let rate = json!({ "case_id": "sf311-4292128", "action": "rate", "score": 4, "solved": true });
    bad.push(("rate with a score of 3.5".to_owned(), edit(&rate, "/score", Some(json!(3.5)))));
    bad.push(("rate without solved".to_owned(), edit(&rate, "/solved", None)));
    for (what, message) in bad {
        assert!(!requests.is_valid(&message), "the action-request schema accepts {what}: {message}");
        assert!(
            serde_json::from_value::<ActionRequest>(message.clone()).is_err(),
            "the case book accepts an action request with {what}: {message}"
        );
    }
    // Every action a department or dispatcher sends is described, with `case_id` beside it.
    let good_requests = [
        json!({ "case_id": "sf311-4292128", "action": "accept" }),
        json!({ "case_id": "sf311-4292128", "action": "progress", "note": "crew on site" }),
        json!({ "case_id": "sf311-4292128", "action": "close" }),
        json!({ "case_id": "sf311-4292128", "action": "reassign", "department": "puc-water-g", "reason": "water" }),
        json!({ "case_id": "sf311-4292128", "action": "split", "report_id": "sf311-4292131" }),
        rate.clone(),
    ];
    for message in good_requests {
        let errors: Vec<String> = requests.iter_errors(&message).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "the action-request schema refuses {message}: {errors:?}");
        assert_eq!((kind("action-request").round_trip)(&message), Ok(message));
    }
    // What the case book refuses only when it acts: a blank reason, a score out of 1-5.
    let act_time = [
        ("a blank reason", edit(&good, "/reason", Some(json!(" ")))),
        ("score 6", edit(&rate, "/score", Some(json!(6)))),
    ];
    for (what, message) in act_time {
        assert!(!requests.is_valid(&message), "the action-request schema accepts {what}");
    }

    let replays = validator(&(kind("replay-request").schema)());
    let good = example("replay-request");
    let bad_replays = [
        ("an unknown field", "/occurred_at", Some(json!("2026-01-01T00:00:00Z"))),
        ("no actor", "/actor", None),
        ("an unknown actor kind", "/actor/kind", Some(json!("mayor"))),
        ("no time", "/after_open_secs", None),
        ("a time as a string", "/after_open_secs", Some(json!("0.1"))),
        ("no origin", "/origin", None),
        ("a resolve without a note", "/note", None),
    ];
    for (what, at, value) in bad_replays {
        let message = edit(&good, at, value);
        assert!(!replays.is_valid(&message), "the replay-request schema accepts {what}: {message}");
        assert!(
            serde_json::from_value::<ReplayRequest>(message.clone()).is_err(),
            "the case book accepts a replay request with {what}: {message}"
        );
    }
    // What the case book refuses only when it replays: a negative time, a blank origin.
    for (what, at, value) in
        [("a negative time", "/after_open_secs", json!(-1)), ("a blank origin", "/origin", json!(" "))]
    {
        assert!(!replays.is_valid(&edit(&good, at, Some(value))), "the replay-request schema accepts {what}");
    }

    let answers = validator(&(kind("volunteer-answer").schema)());
    let good = example("volunteer-answer");
    let bad_answers = [
        ("no case_id", "/case_id", None),
        ("no accept", "/accept", None),
        ("accept as a string", "/accept", Some(json!("yes"))),
        ("an unknown field", "/volunteer_id", Some(json!("sf-v00986"))),
    ];
    for (what, at, value) in bad_answers {
        let message = edit(&good, at, value);
        assert!(!answers.is_valid(&message), "the volunteer-answer schema accepts an answer with {what}");
        assert!(
            serde_json::from_value::<VolunteerAnswer>(message).is_err(),
            "the case book accepts a volunteer answer with {what}"
        );
    }
}
