//! What the `linkbus_cases` bucket holds per case (the record and its outbox), its key, and the
//! in-memory copy of it each replica keeps.

use linkbus_wire::CaseRecord;
use serde::{Deserialize, Serialize};

use super::outbox::Outgoing;

/// What the KV bucket holds per case: the record, and the messages still to send.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Stored {
    pub(super) record: CaseRecord,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) outbox: Vec<Outgoing>,
}

/// A record of the cache and the bucket revision it was stored at.
#[derive(Debug)]
pub(super) struct Cached {
    pub(super) stored: Stored,
    pub(super) revision: u64,
}

/// The bucket key of a case: its id with `:` (not allowed in keys) as `=` (not allowed in ids).
pub(super) fn key(case_id: &str) -> String {
    case_id.replace(':', "=")
}

/// The case id of a bucket key ([`key`] undone).
pub(super) fn case_id_of(key: &str) -> String {
    key.replace('=', ":")
}

#[cfg(test)]
mod tests {
    use linkbus_wire::{Action, Actor, ActorKind, TimelineEvent};

    use super::*;
    use crate::lifecycle::{self, Ladder, Policy};

    #[test]
    fn a_record_with_an_event_this_version_does_not_know_is_read_moved_and_stored_back_with_it() {
        // As a newer replica would store it during a rolling upgrade.
        let mut record: serde_json::Value =
            serde_json::from_str(include_str!("../../../docs/examples/case-record.json")).expect("the example");
        let timeline = record["timeline"].as_array_mut().expect("a timeline");
        let mut newer = timeline[1].clone();
        newer["event"] = "evacuation_ordered".into();
        timeline.push(newer);
        let value = serde_json::json!({ "record": record });

        let stored: Stored = serde_json::from_value(value.clone()).expect("the follower can read it");
        assert_eq!(serde_json::to_value(&stored).expect("serialises"), value, "read and written back unchanged");
        let unknown = TimelineEvent::Other("evacuation_ordered".into());
        assert_eq!(stored.record.timeline.last().map(|e| &e.event), Some(&unknown));

        let department = Actor { kind: ActorKind::Department, id: "puc-sewer-ops".into() };
        let progress = Action::Progress { note: "crew on site".into() };
        let ladder = Ladder::new([("puc-sewer-ops".to_owned(), None)], "puc-sewer-ops");
        let now = stored.record.updated_at + jiff::SignedDuration::from_secs(60);
        let moved = lifecycle::act(&stored.record, &department, &progress, now, &Policy::default(), &ladder)
            .expect("a transition on it");
        let events: Vec<&str> = moved.record.timeline.iter().map(|e| e.event.as_str()).collect();
        assert_eq!(events, ["routed", "accepted", "evacuation_ordered", "progress"]);
    }
}
