//! Decoding and validating what arrives on `ingest.…`: bytes in, a checked case event or a
//! [`Rejection`] that says, in words and as a short code, why it was refused.
//!
//! [`decode_ingest`] is what the router runs: besides the report itself it checks that the
//! message's `Nats-Msg-Id` is the event id and that the id and the source belong to the
//! subject's system ([`crate::claims`]), so that no system can reserve or take over another's
//! case ids.

use std::collections::BTreeMap;

use crate as wire;
use crate::claims::{ClaimError, Claims};
use crate::subjects;
use crate::{CaseReport, CloudEvent, SourceSystem};

/// Why an ingest message was refused. The `Display` text is what the dead letter's reason
/// header says; [`Rejection::code`] is a short, fixed label for metrics and filtering.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    /// Bigger than the configured limit.
    #[error("payload of {size} bytes exceeds the {limit}-byte limit")]
    TooLarge {
        /// Payload size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Not JSON, or JSON not of the event's shape (missing field, wrong type, unknown field…).
    #[error("malformed event: {0}")]
    Malformed(String),
    /// A CloudEvents attribute the bus does not accept.
    #[error("unsupported event: {0}")]
    Unsupported(String),
    /// A field out of range or badly formed.
    #[error("invalid {0}")]
    Invalid(#[from] wire::Invalid),
    /// The subject does not agree with the event.
    #[error("subject {subject:?} does not match the event: {reason}")]
    SubjectMismatch {
        /// The subject it arrived on.
        subject: String,
        /// What disagrees.
        reason: String,
    },
    /// The `Nats-Msg-Id` (the id JetStream deduplicates on) is not the event id: the message
    /// reserved an id other than its own.
    #[error("Nats-Msg-Id {msg_id:?} is not the event id {id:?}")]
    MsgIdMismatch {
        /// The message's `Nats-Msg-Id`, if it had one.
        msg_id: Option<String>,
        /// The event id.
        id: String,
    },
    /// The id (or the `Nats-Msg-Id`) or the source is not the subject's system's to issue.
    #[error(transparent)]
    Claim(#[from] ClaimError),
    /// The id was already routed for another report (another source, source id or system): a
    /// second report under it would take that case over.
    #[error("id {id:?} was already routed for another report ({other})")]
    IdTaken {
        /// The event id.
        id: String,
        /// Whose report holds it.
        other: String,
    },
}

impl Rejection {
    /// A CloudEvent in binary content mode (attributes as `ce-` headers): not read.
    pub fn binary_mode() -> Self {
        Self::Unsupported(
            "binary content mode (ce- headers): send the event in structured mode, the whole CloudEvent as \
             the JSON body"
                .into(),
        )
    }

    /// A short fixed label: `too_large`, `malformed`, `unsupported`, `invalid`, `subject_mismatch`,
    /// `msg_id_mismatch`, `foreign_id`, `unknown_id`, `foreign_source`, `unknown_source`,
    /// `id_taken`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::Malformed(_) => "malformed",
            Self::Unsupported(_) => "unsupported",
            Self::Invalid(_) => "invalid",
            Self::SubjectMismatch { .. } => "subject_mismatch",
            Self::MsgIdMismatch { .. } => "msg_id_mismatch",
            Self::Claim(e) => e.code(),
            Self::IdTaken { .. } => "id_taken",
        }
    }
}

/// Every [`Rejection::code`], for metrics that show each at zero before the first.
pub const REJECTION_CODES: [&str; 11] = [
    "too_large",
    "malformed",
    "unsupported",
    "invalid",
    "subject_mismatch",
    "msg_id_mismatch",
    "foreign_id",
    "unknown_id",
    "foreign_source",
    "unknown_source",
    "id_taken",
];

/// Decodes and validates a case report that arrived on `subject` under `Nats-Msg-Id: msg_id`,
/// and checks that it may be published there: a `Nats-Msg-Id` of another system's id is refused
/// before the body is read (an attempt to reserve it: `foreign_id`); then the report
/// ([`decode_case_report`]); then its `Nats-Msg-Id` must be its id (`msg_id_mismatch`), or
/// `<id>:replay:<n>` for an operator's replay of a dead letter; then its id's prefix and its
/// source must be claimed by the subject's system ([`Claims::check`]).
pub fn decode_ingest(
    subject: &str,
    msg_id: Option<&str>,
    payload: &[u8],
    max_bytes: usize,
    claims: &Claims,
) -> Result<CloudEvent<CaseReport>, Rejection> {
    if payload.len() > max_bytes {
        return Err(Rejection::TooLarge { size: payload.len(), limit: max_bytes });
    }
    let system = subjects::parse_ingest(subject).and_then(|(system, _)| SourceSystem::parse(system));
    if let (Some(system), Some(msg_id)) = (system, msg_id)
        && let Err(foreign @ ClaimError::ForeignId { .. }) = claims.check_id(system, msg_id)
    {
        return Err(foreign.into());
    }
    let event = decode_case_report(subject, payload, max_bytes)?;
    if !msg_id.is_some_and(|m| is_msg_id_of(m, &event.id)) {
        return Err(Rejection::MsgIdMismatch { msg_id: msg_id.map(str::to_owned), id: event.id });
    }
    claims.check(event.data.system, &event.id, &event.source)?;
    Ok(event)
}

/// True when `msg_id` is `id`, or `<id>:replay:<digits>` (an operator's replay of a dead letter,
/// under an id of its own so that JetStream does not drop it as the original's duplicate).
pub fn is_msg_id_of(msg_id: &str, id: &str) -> bool {
    match msg_id.strip_prefix(id) {
        Some("") => true,
        Some(rest) => {
            rest.strip_prefix(":replay:").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        }
        None => false,
    }
}

/// The most extension attributes a report may carry.
pub const MAX_EXTENSIONS: usize = 16;
/// The longest string value of an extension attribute (a W3C `tracestate` is at most 512).
pub const MAX_EXTENSION_LEN: usize = 1024;
/// The longest `dataschema`.
const MAX_DATASCHEMA_LEN: usize = 2048;

/// Whether `media_type` says JSON: `application/json` or a `+json` type, parameters allowed
/// (`application/json; charset=utf-8`), in any case.
fn is_json_media_type(media_type: &str) -> bool {
    let essence = media_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == wire::JSON || essence.split_once('/').is_some_and(|(_, sub)| sub.ends_with("+json"))
}

/// Checks a report's extension attributes as CloudEvents 1.0 names them: at most
/// [`MAX_EXTENSIONS`], each named by 1-20 lowercase ASCII letters and digits, with a string (at
/// most [`MAX_EXTENSION_LEN`] bytes), integer or boolean value (`null` is refused: an attribute
/// is either there or not).
pub fn check_extensions(extensions: &BTreeMap<String, serde_json::Value>) -> Result<(), Rejection> {
    let invalid = |field: String, reason: String| Err(wire::Invalid { field, reason }.into());
    if extensions.len() > MAX_EXTENSIONS {
        return invalid("extensions".into(), format!("{} attributes, at most {MAX_EXTENSIONS}", extensions.len()));
    }
    for (name, value) in extensions {
        let well_named =
            (1..=20).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !well_named {
            let shown: String = name.chars().take(40).collect();
            return invalid(
                "extensions".into(),
                format!("{shown:?} is not an attribute name: 1-20 lowercase letters and digits"),
            );
        }
        let fits = match value {
            serde_json::Value::String(s) => s.len() <= MAX_EXTENSION_LEN,
            serde_json::Value::Bool(_) => true,
            serde_json::Value::Number(n) => n.is_i64(),
            _ => false,
        };
        if !fits {
            let reason = format!("must be a string of at most {MAX_EXTENSION_LEN} bytes, an integer or a boolean");
            return invalid(name.clone(), reason);
        }
    }
    Ok(())
}

/// Decodes and validates a case report that arrived on `subject`.
pub fn decode_case_report(
    subject: &str,
    payload: &[u8],
    max_bytes: usize,
) -> Result<CloudEvent<CaseReport>, Rejection> {
    if payload.len() > max_bytes {
        return Err(Rejection::TooLarge { size: payload.len(), limit: max_bytes });
    }
    let mut event: CloudEvent<CaseReport> =
        serde_json::from_slice(payload).map_err(|e| Rejection::Malformed(e.to_string()))?;
    if event.specversion != wire::SPEC_VERSION {
        return Err(Rejection::Unsupported(format!("specversion {:?}, expected \"1.0\"", event.specversion)));
    }
    if event.ty != wire::TYPE_CASE_REPORTED {
        return Err(Rejection::Unsupported(format!("type {:?}, expected {:?}", event.ty, wire::TYPE_CASE_REPORTED)));
    }
    if !is_json_media_type(&event.datacontenttype) {
        return Err(Rejection::Unsupported(format!(
            "datacontenttype {:?}, expected {:?}",
            event.datacontenttype,
            wire::JSON
        )));
    }
    if event.dataschema.as_ref().is_some_and(|s| s.is_empty() || s.len() > MAX_DATASCHEMA_LEN) {
        let reason = format!("must be a URI of 1-{MAX_DATASCHEMA_LEN} characters");
        return Err(wire::Invalid { field: "dataschema".into(), reason }.into());
    }
    check_extensions(&event.extensions)?;
    if !wire::is_event_id(&event.id) {
        return Err(wire::Invalid {
            field: "id".into(),
            reason: format!("must be 1-{} ASCII letters, digits, '-', '_' or ':'", wire::MAX_ID_LEN),
        }
        .into());
    }
    if event.source.is_empty() || event.source.len() > 256 {
        return Err(wire::Invalid { field: "source".into(), reason: "must be 1-256 characters".into() }.into());
    }
    event.data.validate()?;
    check_subject(subject, &event.data)?;
    event.data.convert_to_wgs84();
    Ok(event)
}

fn check_subject(subject: &str, case: &CaseReport) -> Result<(), Rejection> {
    let mismatch = |reason: String| Rejection::SubjectMismatch { subject: subject.to_owned(), reason };
    let (system, category) =
        subjects::parse_ingest(subject).ok_or_else(|| mismatch("expected ingest.<system>.<category>".into()))?;
    if SourceSystem::parse(system) != Some(case.system) {
        return Err(mismatch(format!("data.system is {}", case.system)));
    }
    if category != case.category {
        return Err(mismatch(format!("data.category is {}", case.category)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> serde_json::Value {
        json!({
            "specversion": "1.0", "id": "sf311-1", "source": "/sf311",
            "type": "org.linkbus.case.reported", "time": "2024-01-01T00:00:00Z",
            "datacontenttype": "application/json",
            "data": {
                "system": "public_service", "category": "sewer_issues", "priority": 3,
                "location": {"lon": -122.4, "lat": 37.77}, "source_id": "1",
                "reported_at": "2024-01-01T00:00:00Z"
            }
        })
    }

    const SUBJECT: &str = "ingest.public_service.sewer_issues";

    fn decode(v: &serde_json::Value) -> Result<CloudEvent<CaseReport>, Rejection> {
        decode_case_report(SUBJECT, v.to_string().as_bytes(), 64 * 1024)
    }

    #[test]
    fn accepts_a_good_event() {
        let ev = decode(&event()).expect("valid");
        assert_eq!(ev.data.category, "sewer_issues");
    }

    /// The default events of the official Python and JavaScript SDKs (as
    /// tests/it/cloudevents_sdk.rs makes them): no `datacontenttype`, a `time` with micro- or
    /// milliseconds, a `traceparent` extension beside the core attributes.
    #[test]
    fn accepts_the_official_sdks_default_events() {
        for time in ["2026-12-07T20:09:47.464676Z", "2026-12-07T20:09:46.821Z"] {
            let mut v = event();
            let attributes = v.as_object_mut().expect("an event");
            attributes.remove("datacontenttype");
            attributes.insert("time".into(), json!(time));
            attributes.insert("traceparent".into(), json!("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
            let ev = decode(&v).expect("valid");
            assert_eq!(ev.datacontenttype, wire::JSON);
            assert_eq!(ev.time.to_string(), time);
            assert!(ev.extensions.contains_key("traceparent"));
        }
    }

    #[test]
    fn converts_chinese_datums_and_keeps_what_arrived() {
        let mut v = event();
        v["data"]["location"] = json!({"lon": 116.41024449916938, "lat": 39.91640428150164});
        v["data"]["datum"] = json!("gcj02");
        let ev = decode(&v).expect("valid");
        assert!((ev.data.location.lon - 116.404).abs() < 1e-8 && (ev.data.location.lat - 39.915).abs() < 1e-8);
        assert_eq!(ev.data.datum, wire::Datum::Wgs84);
        let received = ev.data.received_location.expect("kept");
        assert_eq!((received.datum, received.lon), (wire::Datum::Gcj02, 116.41024449916938));

        let mut v = event();
        v["data"]["received_location"] = json!({"datum": "gcj02", "lon": 1.0, "lat": 1.0});
        assert_eq!(decode(&v).expect_err("forged").code(), "invalid");
        let mut v = event();
        v["data"]["datum"] = json!("nad27");
        assert_eq!(decode(&v).expect_err("unknown datum").code(), "malformed");
    }

    #[test]
    fn refuses_each_kind_of_bad_input_with_its_reason() {
        let mut v = event();
        v["data"]["location"]["lat"] = json!(91.0);
        let err = decode(&v).expect_err("lat 91");
        assert_eq!(err.code(), "invalid");
        assert!(err.to_string().contains("data.location.lat"), "{err}");

        let mut v = event();
        v["data"].as_object_mut().expect("object").remove("category");
        let err = decode(&v).expect_err("missing category");
        assert_eq!(err.code(), "malformed");
        assert!(err.to_string().contains("missing field `category`"), "{err}");

        let err = decode_case_report(SUBJECT, br#"{"lat": NaN}"#, 1024).expect_err("NaN");
        assert_eq!(err.code(), "malformed");

        let err = decode_case_report(SUBJECT, &vec![b' '; 2048], 1024).expect_err("too big");
        assert_eq!(err, Rejection::TooLarge { size: 2048, limit: 1024 });

        let err = decode_case_report("ingest.emergency.sewer_issues", event().to_string().as_bytes(), 1 << 16)
            .expect_err("subject");
        assert_eq!(err.code(), "subject_mismatch");

        let mut v = event();
        v["id"] = json!("a.b");
        assert_eq!(decode(&v).expect_err("dotted id").code(), "invalid");

        let mut v = event();
        v["specversion"] = json!("0.3");
        assert_eq!(decode(&v).expect_err("old spec").code(), "unsupported");

        let deep = "[".repeat(10_000);
        assert_eq!(decode_case_report(SUBJECT, deep.as_bytes(), 1 << 16).expect_err("deep").code(), "malformed");

        let err = decode_case_report(SUBJECT, b"\xff\xfe{}", 1024).expect_err("not utf-8");
        assert_eq!(err.code(), "malformed");
    }

    fn ingest(subject: &str, msg_id: Option<&str>, v: &serde_json::Value) -> Result<CloudEvent<CaseReport>, Rejection> {
        decode_ingest(subject, msg_id, v.to_string().as_bytes(), 64 * 1024, &Claims::default())
    }

    #[test]
    fn ids_are_bound_to_the_message_and_to_the_system() {
        ingest(SUBJECT, Some("sf311-1"), &event()).expect("its own id, its own system");
        ingest(SUBJECT, Some("sf311-1:replay:17"), &event()).expect("an operator's replay");
        for msg_id in [None, Some("sf311-2"), Some("sf311-1:replay:"), Some("sf311-1:x"), Some("sf311-10")] {
            let err = ingest(SUBJECT, msg_id, &event()).expect_err("another message id");
            assert_eq!(err.code(), "msg_id_mismatch", "{msg_id:?}: {err}");
        }
        // Reserving a CAD incident's id from 12345: refused as such, whatever the body.
        let squat = decode_ingest(SUBJECT, Some("cad-F26-200002"), b"{}", 1024, &Claims::default());
        assert_eq!(squat.expect_err("squat").code(), "foreign_id");
        let garbage = decode_ingest(SUBJECT, Some("sf311-9"), b"{}", 1024, &Claims::default());
        assert_eq!(garbage.expect_err("own garbage").code(), "malformed");
        // Taking one over: a valid report under a CAD id and source, from 12345.
        let mut v = event();
        v["id"] = json!("cad-F26-200001");
        let err = ingest(SUBJECT, Some("cad-F26-200001"), &v).expect_err("takeover");
        assert_eq!(err.code(), "foreign_id");
        let mut v = event();
        v["source"] = json!("/cad");
        assert_eq!(ingest(SUBJECT, Some("sf311-1"), &v).expect_err("foreign source").code(), "foreign_source");
        let mut v = event();
        v["id"] = json!("app-1");
        assert_eq!(ingest(SUBJECT, Some("app-1"), &v).expect_err("unclaimed").code(), "unknown_id");
        let mut v = event();
        v["source"] = json!("/app");
        assert_eq!(ingest(SUBJECT, Some("sf311-1"), &v).expect_err("unclaimed").code(), "unknown_source");
        for code in REJECTION_CODES {
            assert_eq!(REJECTION_CODES.iter().filter(|c| **c == code).count(), 1);
        }
    }

    #[test]
    fn extension_attributes_follow_the_cloudevents_naming_rules() {
        let ext = |pairs: &[(&str, serde_json::Value)]| {
            pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect::<BTreeMap<_, _>>()
        };
        let trace = json!("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        check_extensions(&ext(&[("traceparent", trace), ("seq2", json!(7)), ("sampled", json!(true))]))
            .expect("a string, an integer and a boolean");
        check_extensions(&ext(&[(&"a".repeat(20), json!("x"))])).expect("a name of 20");
        for bad in [
            ext(&[(&"a".repeat(21), json!("x"))]),
            ext(&[("", json!("x"))]),
            ext(&[("traceParent", json!("x"))]),
            ext(&[("trace_parent", json!("x"))]),
            ext(&[("rate", json!(0.5))]),
            ext(&[("gone", serde_json::Value::Null)]),
            ext(&[("list", json!(["a"]))]),
            ext(&[("note", json!("x".repeat(MAX_EXTENSION_LEN + 1)))]),
        ] {
            assert_eq!(check_extensions(&bad).expect_err("refused").code(), "invalid", "{bad:?}");
        }
        check_extensions(&ext(&[("note", json!("x".repeat(MAX_EXTENSION_LEN)))])).expect("the longest value");
        let many = |n: usize| (0..n).map(|i| (format!("x{i}"), json!(i))).collect::<BTreeMap<_, _>>();
        check_extensions(&many(MAX_EXTENSIONS)).expect("as many as allowed");
        assert_eq!(check_extensions(&many(MAX_EXTENSIONS + 1)).expect_err("one too many").code(), "invalid");
        assert_eq!(Rejection::binary_mode().code(), "unsupported");
        assert!(Rejection::binary_mode().to_string().contains("structured mode"));
    }

    #[test]
    fn media_types_of_json_are_json() {
        for json in ["application/json", "Application/JSON", "application/json; charset=utf-8", "application/ld+json"] {
            assert!(is_json_media_type(json), "{json}");
        }
        for other in ["text/plain", "application/jsonx", "json", "application/xml; x=+json", ""] {
            assert!(!is_json_media_type(other), "{other}");
        }
    }

    #[test]
    fn limits_hold_at_their_bounds() {
        let body = event().to_string();
        let exact = body.len();
        decode_case_report(SUBJECT, body.as_bytes(), exact).expect("exactly at the size limit");
        let err = decode_case_report(SUBJECT, body.as_bytes(), exact - 1).expect_err("a byte over");
        assert_eq!(err, Rejection::TooLarge { size: exact, limit: exact - 1 });
        decode_ingest(SUBJECT, Some("sf311-1"), body.as_bytes(), exact, &Claims::default()).expect("at the limit");
        // Too large is said first, before the id is looked at: an oversized message is kept as an
        // excerpt, whatever id it claims.
        let err = decode_ingest(SUBJECT, Some("cad-F26-1"), body.as_bytes(), exact - 1, &Claims::default());
        assert_eq!(err.expect_err("too large").code(), "too_large");

        let mut v = event();
        v["source"] = json!(format!("/{}", "s".repeat(255)));
        decode_case_report(SUBJECT, v.to_string().as_bytes(), 1 << 16).expect("a source of 256 characters");
        v["source"] = json!(format!("/{}", "s".repeat(256)));
        let err = decode_case_report(SUBJECT, v.to_string().as_bytes(), 1 << 16).expect_err("257 characters");
        assert!(err.to_string().contains("source"), "{err}");
        v["source"] = json!("");
        assert_eq!(decode(&v).expect_err("an empty source").code(), "invalid");

        let mut v = event();
        v["dataschema"] = json!(format!("https://e.org/{}", "s".repeat(MAX_DATASCHEMA_LEN - 14)));
        decode(&v).expect("a dataschema of the longest length");
        v["dataschema"] = json!(format!("https://e.org/{}", "s".repeat(MAX_DATASCHEMA_LEN - 13)));
        assert_eq!(decode(&v).expect_err("a character longer").code(), "invalid");
    }
}
