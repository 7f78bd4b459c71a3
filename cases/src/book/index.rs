//! The case book's indexes, kept in step with its in-memory records so that no loop scans them
//! all: when each case is next due (a time-ordered set the ticker reads from the front), which
//! records still have messages to send, and where the open cases a new report could duplicate
//! are (an R-tree of unit vectors, searched within the merge distance). With a city's history in
//! the book, a scan per routed case or per tick would grow with every case ever opened; these
//! grow with what is open.

use std::collections::{BTreeSet, HashSet};

use jiff::Timestamp;
use linkbus_matching::geodesy;
use linkbus_wire::CaseRecord;
use rstar::RTree;
use rstar::primitives::GeomWithData;

use super::stored::Stored;
use crate::lifecycle;

/// An open case at its place: a unit vector (see [`geodesy::unit_vector`]) and its id.
type Place = GeomWithData<[f64; 3], String>;

/// What the indexes hold of one record, derived from it alone.
#[derive(Debug, Clone, PartialEq)]
struct Keys {
    due: Option<Timestamp>,
    unsent: bool,
    place: Option<[f64; 3]>,
}

impl Keys {
    fn of(stored: &Stored) -> Self {
        let r = &stored.record;
        Self {
            due: lifecycle::next_due(r),
            unsent: !stored.outbox.is_empty(),
            place: mergeable(r).then(|| geodesy::unit_vector(r.case.location.lon, r.case.location.lat)),
        }
    }
}

/// A record a new report could be merged into (see [`lifecycle::is_duplicate`], which decides).
fn mergeable(r: &CaseRecord) -> bool {
    r.state.is_open() && r.merged_into.is_none() && r.case.area.is_none()
}

/// The indexes over every record of the book.
#[derive(Debug, Default)]
pub(super) struct BookIndex {
    due: BTreeSet<(Timestamp, String)>,
    unsent: HashSet<String>,
    open: RTree<Place>,
}

impl BookIndex {
    /// Follows a record from `old` (none when new to the book) to `new`.
    pub(super) fn update(&mut self, old: Option<&Stored>, new: &Stored) {
        let id = &new.record.case_id;
        let after = Keys::of(new);
        let before = old.map(Keys::of);
        if before.as_ref() == Some(&after) {
            return;
        }
        if let Some(before) = before {
            if let Some(due) = before.due {
                self.due.remove(&(due, id.clone()));
            }
            if before.unsent {
                self.unsent.remove(id);
            }
            if let Some(at) = before.place {
                self.open.remove(&Place::new(at, id.clone()));
            }
        }
        if let Some(due) = after.due {
            self.due.insert((due, id.clone()));
        }
        if after.unsent {
            self.unsent.insert(id.clone());
        }
        if let Some(at) = after.place {
            self.open.insert(Place::new(at, id.clone()));
        }
    }

    /// The cases due at or before `now`, soonest first.
    pub(super) fn due_by(&self, now: Timestamp) -> Vec<String> {
        self.due.iter().take_while(|(due, _)| *due <= now).map(|(_, id)| id.clone()).collect()
    }

    /// The cases with messages still to send.
    pub(super) fn unsent(&self) -> impl Iterator<Item = &str> {
        self.unsent.iter().map(String::as_str)
    }

    /// The open cases (not merged, not broadcasts) within `radius_m` of a point.
    pub(super) fn open_near(&self, lon: f64, lat: f64, radius_m: f64) -> impl Iterator<Item = &str> {
        let reach = geodesy::metres_to_chord(radius_m);
        self.open.locate_within_distance(geodesy::unit_vector(lon, lat), reach * reach).map(|p| p.data.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::book::outbox::Outgoing;
    use linkbus_wire::{CaseState, RoutedCase};

    fn stored(id: &str, lon: f64, lat: f64) -> Stored {
        let routed: RoutedCase = serde_json::from_value(serde_json::json!({
            "case_id": id,
            "source": "/test",
            "routed_at": "2026-11-28T00:00:00Z",
            "case": {
                "system": "public_service", "source_id": id, "category": "fire", "priority": 2,
                "location": {"lon": lon, "lat": lat}, "reported_at": "2026-11-28T00:00:00Z"
            },
            "decision": {
                "geo_version": "t@1", "priority": 2,
                "community": {"outcome": "unmatched"},
                "departments": [], "fallbacks": [], "volunteers": [],
                "volunteer_search": {"k": 5, "radius_m": 3000.0, "examined": 0, "skipped_unavailable": 0,
                    "skipped_skill": 0, "skipped_capped": 0, "reached_radius": false},
                "explanation": []
            }
        }))
        .expect("a valid routed case");
        let now: Timestamp = "2026-11-28T00:00:00Z".parse().expect("a timestamp");
        Stored { record: lifecycle::open(&routed, now, &lifecycle::Policy::default()), outbox: vec![] }
    }

    #[test]
    fn follows_records_through_their_changes() {
        let mut index = BookIndex::default();
        let a = stored("a", 116.40, 39.90);
        let b = stored("b", 116.40, 39.9005);
        let far = stored("far", 116.50, 39.90);
        for s in [&a, &b, &far] {
            index.update(None, s);
        }
        let mut near: Vec<&str> = index.open_near(116.40, 39.90, 200.0).collect();
        near.sort_unstable();
        assert_eq!(near, ["a", "b"]);
        let due = a.record.accept_by.expect("a routed case has an accept deadline");
        assert!(index.due_by(due - jiff::SignedDuration::from_secs(1)).is_empty());
        assert_eq!(index.due_by(due).len(), 3);

        // Closed: no longer due, no longer a duplicate candidate; an outbox makes it unsent.
        let mut closed = a.clone();
        closed.record.state = CaseState::Closed;
        closed.record.accept_by = None;
        closed.outbox.push(Outgoing { subject: "s".into(), msg_id: "m".into(), body: "{}".into() });
        index.update(Some(&a), &closed);
        assert_eq!(index.open_near(116.40, 39.90, 200.0).collect::<Vec<_>>(), ["b"]);
        assert_eq!(index.due_by(due).len(), 2);
        assert_eq!(index.unsent().collect::<Vec<_>>(), ["a"]);

        // Sent: the outbox emptied.
        let mut sent = closed.clone();
        sent.outbox.clear();
        index.update(Some(&closed), &sent);
        assert_eq!(index.unsent().count(), 0);
    }
}
