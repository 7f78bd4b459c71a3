//! Timeline events on the wire: every known event under its snake_case name, an unknown one
//! kept rather than refused, and what a resident is shown.

use linkbus_wire::{CaseRecord, TimelineEvent};
use serde_json::{Value, json};

/// The known events, as the schema lists them (one `const` per variant but `Other`).
fn known() -> Vec<String> {
    let schema = schemars::schema_for!(TimelineEvent).to_value();
    let names: Vec<String> = schema["anyOf"]
        .as_array()
        .expect("the events are alternatives")
        .iter()
        .filter_map(|alternative| alternative["const"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(names.len(), 26, "{names:?}");
    names
}

fn parse(name: &str) -> TimelineEvent {
    serde_json::from_value(json!(name)).expect("any string is an event")
}

#[test]
fn every_known_event_reads_as_its_own_variant_and_writes_its_name() {
    for name in known() {
        let event = parse(&name);
        assert!(!matches!(event, TimelineEvent::Other(_)), "{name} read as unknown");
        assert_eq!((event.as_str(), event.to_string()), (name.as_str(), name.clone()));
        assert_eq!(serde_json::to_value(&event).expect("serialises"), json!(name));
        assert!(event == name.as_str());
    }
    assert_eq!(parse("volunteer_offered"), TimelineEvent::VolunteerOffered);
}

#[test]
fn an_unknown_event_is_kept_not_refused() {
    let event = parse("evacuation_ordered");
    assert_eq!(event, TimelineEvent::Other("evacuation_ordered".into()));
    assert_eq!(serde_json::to_value(&event).expect("serialises"), json!("evacuation_ordered"));
    // Names are case-sensitive: a near miss is another event, not a known one.
    assert_eq!(parse("Accepted"), TimelineEvent::Other("Accepted".into()));
    assert!(serde_json::from_value::<TimelineEvent>(json!(3)).is_err(), "an event is a string");

    // A record written by a newer version reads, and writes back byte for byte the same.
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/examples/case-record.json");
    let mut record: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("the example")).expect("the example is JSON");
    let timeline = record["timeline"].as_array_mut().expect("a timeline");
    let mut newer = timeline[0].clone();
    newer["event"] = json!("evacuation_ordered");
    timeline.push(newer);
    let read: CaseRecord = serde_json::from_value(record.clone()).expect("still readable");
    assert_eq!(read.timeline.last().map(|e| &e.event), Some(&TimelineEvent::Other("evacuation_ordered".into())));
    assert_eq!(serde_json::to_value(&read).expect("serialises"), record);
}

#[test]
fn a_resident_sees_what_the_case_went_through_and_only_the_departments_words() {
    let public: Vec<String> = known().into_iter().filter(|name| parse(name).is_public()).collect();
    assert_eq!(
        public,
        [
            "routed",
            "accepted",
            "rejected",
            "rerouted",
            "progress",
            "resolved",
            "closed",
            "cancelled",
            "escalated",
            "reassigned",
            "report_merged",
            "split",
            "rated",
            "reopened",
            "volunteer_accepted",
        ]
    );
    let notes: Vec<String> = known().into_iter().filter(|name| parse(name).note_is_public()).collect();
    assert_eq!(notes, ["progress", "resolved", "closed"]);
    assert!(notes.iter().all(|name| parse(name).is_public()), "a public note is on a public event");
    let unknown = parse("evacuation_ordered");
    assert!(!unknown.is_public() && !unknown.note_is_public(), "an event not known stays internal");
}
