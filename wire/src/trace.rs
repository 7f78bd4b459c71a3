//! W3C Trace Context (the CloudEvents distributed-tracing extension): the `traceparent` and
//! `tracestate` a report arrives with, kept on its case and carried on everything linkbus emits
//! about it, so that one trace id follows an incident from intake to the department's answer.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The extension attribute (and HTTP header) naming the trace and the caller's span.
pub const TRACEPARENT: &str = "traceparent";
/// The extension attribute (and HTTP header) with vendors' trace state.
pub const TRACESTATE: &str = "tracestate";
/// The longest `tracestate` kept: 32 list members of at most 256 characters and their commas.
const MAX_TRACESTATE: usize = 32 * 257;

/// The trace a case belongs to. Only the two W3C attributes are kept on the record: they are
/// what a tracing system needs to join the case's later events to the caller's trace, and they
/// are bounded by their standard; other extension attributes belong to the one report that
/// carried them and stay on its routed copies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TraceContext {
    /// `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`, lowercase.
    pub traceparent: String,
    /// Vendors' trace state, as received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// The trace of `traceparent` (and `tracestate`), or `None` when `traceparent` is not a
    /// valid version-00 value: the W3C spec says to ignore an invalid one, not refuse the request.
    /// A `tracestate` without a valid `traceparent`, or too long, is dropped too.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<Self> {
        let traceparent = traceparent.trim();
        if !is_traceparent(traceparent) {
            return None;
        }
        let tracestate = tracestate.map(str::trim).filter(|s| !s.is_empty() && s.len() <= MAX_TRACESTATE);
        Some(Self { traceparent: traceparent.to_owned(), tracestate: tracestate.map(str::to_owned) })
    }

    /// The trace in an event's extension attributes, if it has a valid one.
    pub fn from_extensions(ext: &BTreeMap<String, serde_json::Value>) -> Option<Self> {
        let parent = ext.get(TRACEPARENT)?.as_str()?;
        Self::parse(parent, ext.get(TRACESTATE).and_then(serde_json::Value::as_str))
    }

    /// The trace of a CloudEvent in JSON format (its top-level `traceparent`, `tracestate`), if
    /// it has a valid one; other attributes and `data` are not looked at.
    pub fn from_event_json(event: &[u8]) -> Option<Self> {
        #[derive(Deserialize)]
        struct Attributes {
            #[serde(default)]
            traceparent: Option<serde_json::Value>,
            #[serde(default)]
            tracestate: Option<serde_json::Value>,
        }
        let a: Attributes = serde_json::from_slice(event).ok()?;
        Self::parse(a.traceparent?.as_str()?, a.tracestate.as_ref().and_then(serde_json::Value::as_str))
    }

    /// Sets `traceparent` (and `tracestate`) in `ext`.
    pub fn set_on(&self, ext: &mut BTreeMap<String, serde_json::Value>) {
        ext.insert(TRACEPARENT.to_owned(), self.traceparent.clone().into());
        if let Some(state) = &self.tracestate {
            ext.insert(TRACESTATE.to_owned(), state.clone().into());
        }
    }

    /// The 32-hex trace id.
    pub fn trace_id(&self) -> &str {
        &self.traceparent[3..35]
    }
}

/// Whether `s` is a version-00 `traceparent`: `00-<32 hex>-<16 hex>-<2 hex>`, lowercase, with
/// neither id all zeros.
pub fn is_traceparent(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let [version, trace_id, parent_id, flags] = parts[..] else {
        return false;
    };
    version == "00" && is_id(trace_id, 32) && is_id(parent_id, 16) && is_hex(flags, 2)
}

fn is_id(s: &str, len: usize) -> bool {
    is_hex(s, len) && s.bytes().any(|b| b != b'0')
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_version_00_traceparent_is_valid() {
        assert!(is_traceparent(GOOD));
        assert!(is_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"));
    }

    #[test]
    fn malformed_traceparents_are_not() {
        for bad in [
            "",
            "00",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
        ] {
            assert!(!is_traceparent(bad), "{bad}");
        }
    }

    #[test]
    fn parse_keeps_a_valid_trace_and_its_state_and_ignores_an_invalid_one() {
        let t = TraceContext::parse(&format!(" {GOOD} "), Some(" congo=t61rcWkgMzE ")).expect("valid");
        assert_eq!(t.traceparent, GOOD);
        assert_eq!(t.tracestate.as_deref(), Some("congo=t61rcWkgMzE"));
        assert_eq!(t.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(TraceContext::parse(GOOD, Some("  ")).expect("valid").tracestate, None);
        assert_eq!(
            TraceContext::parse(GOOD, Some(&"a".repeat(8224))).expect("valid").tracestate.map(|s| s.len()),
            Some(8224)
        );
        assert_eq!(TraceContext::parse(GOOD, Some(&"a".repeat(8225))).expect("valid").tracestate, None);
        assert_eq!(TraceContext::parse("00-zz", Some("congo=1")), None);
    }

    #[test]
    fn a_record_written_before_traces_were_kept_reads_and_one_with_a_trace_round_trips() {
        let old = include_str!("../../docs/examples/case-record.json");
        assert!(!old.contains("\"trace\""), "the example predates traces");
        let mut record: crate::CaseRecord = serde_json::from_str(old).expect("an old record reads");
        assert_eq!(record.trace, None);
        assert!(!serde_json::to_string(&record).expect("json").contains("\"trace\""), "none is not written");
        record.trace = TraceContext::parse(GOOD, None);
        let json = serde_json::to_string(&record).expect("json");
        let back: crate::CaseRecord = serde_json::from_str(&json).expect("reads");
        assert_eq!(back.trace, record.trace);
    }

    #[test]
    fn extensions_round_trip() {
        let mut ext = BTreeMap::new();
        ext.insert("other".to_owned(), json!(1));
        assert_eq!(TraceContext::from_extensions(&ext), None);
        ext.insert(TRACEPARENT.to_owned(), json!(7));
        assert_eq!(TraceContext::from_extensions(&ext), None);
        let t = TraceContext { traceparent: GOOD.to_owned(), tracestate: Some("a=1".to_owned()) };
        t.set_on(&mut ext);
        assert_eq!(ext[TRACEPARENT], json!(GOOD));
        assert_eq!(ext[TRACESTATE], json!("a=1"));
        assert_eq!(TraceContext::from_extensions(&ext), Some(t.clone()));
        let body = json!({"id": "x", "data": {"traceparent": "no"}, "traceparent": GOOD, "tracestate": "a=1"});
        assert_eq!(TraceContext::from_event_json(body.to_string().as_bytes()), Some(t.clone()));
        let untraced = json!({"id": "x", "data": {"traceparent": GOOD}, "tracestate": "a=1"});
        assert_eq!(TraceContext::from_event_json(untraced.to_string().as_bytes()), None);
        assert_eq!(TraceContext::from_event_json(b"not json"), None);
        assert_eq!(TraceContext::from_event_json(json!({"traceparent": 1}).to_string().as_bytes()), None);
        let stateless = json!({"traceparent": GOOD, "tracestate": 2}).to_string();
        assert_eq!(TraceContext::from_event_json(stateless.as_bytes()).expect("traced").tracestate, None);
        let mut only = BTreeMap::new();
        TraceContext { traceparent: GOOD.to_owned(), tracestate: None }.set_on(&mut only);
        assert_eq!(only.len(), 1);
    }
}
