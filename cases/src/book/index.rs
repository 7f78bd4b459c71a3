//! The case book's indexes, kept in step with its in-memory records so that no loop scans them
//! all: when each case is next due (a time-ordered set the ticker reads from the front), which
//! records still have messages to send, and where the open cases a new report could duplicate
//! are (an R-tree of unit vectors, searched within the merge distance). With a city's history in
//! the book, a scan per routed case or per tick would grow with every case ever opened; these
//! grow with what is open.
//!
//! And, over every record, in memory or archived (only in the bucket, see [`BookIndex::archive`]):
//! the listing order (newest first, then by id: `GET /api/cases`) with what a filter needs of each
//! record ([`Listed`]), so a page costs what it returns; the closed and cancelled records still in
//! memory by their last change (what leaves memory first); and the departments' figures
//! ([`Tally`]) and the supervision figures ([`Figures`]), added to and taken from as records
//! change, never recounted.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use jiff::Timestamp;
use jiff::tz::TimeZone;
use linkbus_matching::geodesy;
use linkbus_wire::{CaseRecord, CaseState, SourceSystem};
use rstar::RTree;
use rstar::primitives::GeomWithData;

use super::search::{SearchIndex, SearchKeys, SearchQuery};
use super::stored::Stored;
use crate::lifecycle;
use crate::supervision::{Figures, Mark};

/// An open case at its place: a unit vector (see [`geodesy::unit_vector`]) and its id.
type Place = GeomWithData<[f64; 3], String>;

pub(super) use super::search::ListKey;

/// What a listing's filter and the departments' figures need of a record.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Listed {
    pub(super) state: CaseState,
    pub(super) community: Option<String>,
    /// Departments that have or had it (responsible, accepted or rejected it), once each.
    pub(super) involved: Vec<String>,
    pub(super) accepted_by: Option<String>,
    pub(super) rejected_by: Vec<String>,
    /// The kinds of system its reports came from.
    pub(super) systems: Vec<SourceSystem>,
    pub(super) merged: bool,
    /// Each rating's department, score and whether it said solved.
    pub(super) ratings: Vec<(Option<String>, u8, bool)>,
    /// Its part in the supervision figures: kept in the index only ([`Listed::indexed`]), so a
    /// record leaving memory can still be taken out of them when it changes.
    pub(super) mark: Option<Mark>,
}

impl Listed {
    pub(super) fn of(r: &CaseRecord) -> Self {
        let mut involved: Vec<String> =
            r.departments.iter().chain(&r.rejected_by).chain(&r.accepted_by).cloned().collect();
        involved.sort_unstable();
        involved.dedup();
        let mut systems: Vec<SourceSystem> = r.reports.iter().map(|rep| rep.system).collect();
        systems.dedup();
        Self {
            state: r.state,
            community: r.community.as_ref().map(|c| c.id.clone()),
            involved,
            accepted_by: r.accepted_by.clone(),
            rejected_by: r.rejected_by.clone(),
            systems,
            merged: r.merged_into.is_some(),
            ratings: r.ratings.iter().map(|g| (g.department.clone(), g.score, g.solved)).collect(),
            mark: None,
        }
    }

    /// [`Listed::of`] with the record's supervision mark, as the index keeps it.
    fn indexed(r: &CaseRecord) -> Self {
        Self { mark: Mark::of(r), ..Self::of(r) }
    }
}

/// One department's figures, over every record that is not merged into another.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Tally {
    pub(super) cases: usize,
    pub(super) accepted: usize,
    pub(super) rejected: usize,
    pub(super) ratings: usize,
    pub(super) not_solved: usize,
    pub(super) score_sum: u64,
}

impl Tally {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// What the indexes hold of one record, derived from it alone.
#[derive(Debug, Clone, PartialEq)]
struct Keys {
    due: Option<Timestamp>,
    unsent: bool,
    place: Option<[f64; 3]>,
    /// When it was last changed, if it is closed or cancelled.
    done: Option<Timestamp>,
    listing: ListKey,
    listed: Listed,
    search: SearchKeys,
}

impl Keys {
    fn of(stored: &Stored) -> Self {
        let r = &stored.record;
        Self {
            due: lifecycle::next_due(r),
            unsent: !stored.outbox.is_empty(),
            place: mergeable(r).then(|| geodesy::unit_vector(r.case.location.lon, r.case.location.lat)),
            done: (!r.state.is_open()).then_some(r.updated_at),
            listing: (Reverse(r.created_at), r.case_id.clone()),
            listed: Listed::indexed(r),
            search: SearchKeys::of(r),
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
    /// Every record, in memory or archived, in listing order.
    listed: BTreeMap<ListKey, Listed>,
    /// The closed and cancelled records in memory, by their last change.
    done: BTreeSet<(Timestamp, String)>,
    /// The archived records (in the bucket only): their listing place and bucket revision.
    archived: HashMap<String, (ListKey, u64)>,
    /// Each department's figures.
    tallies: HashMap<String, Tally>,
    /// Every record's search keys (ids, address, reporter, place).
    search: SearchIndex,
    /// The supervision figures over every record.
    figures: Figures,
}

/// A record's row in a listing: its place, what a filter reads of it, and whether it is archived.
pub(super) type Row<'a> = (&'a ListKey, &'a Listed, bool);

impl BookIndex {
    /// Empty indexes, the supervision figures counting days in `time_zone`.
    pub(super) fn new(time_zone: TimeZone) -> Self {
        Self { figures: Figures::new(time_zone), ..Self::default() }
    }

    /// The supervision figures over every record.
    pub(super) fn figures(&self) -> &Figures {
        &self.figures
    }

    /// Follows a record from `old` (none when new to memory) to `new`. A record that comes back
    /// from the archive is first taken out of it ([`BookIndex::unarchive`]).
    pub(super) fn update(&mut self, old: Option<&Stored>, new: &Stored) {
        let id = &new.record.case_id;
        let after = Keys::of(new);
        let before = old.map(Keys::of);
        if before.as_ref() == Some(&after) {
            return;
        }
        let removed = before.and_then(|before| self.remove(id, &before));
        if let Some(due) = after.due {
            self.due.insert((due, id.clone()));
        }
        if after.unsent {
            self.unsent.insert(id.clone());
        }
        if let Some(at) = after.place {
            self.open.insert(Place::new(at, id.clone()));
        }
        if let Some(done) = after.done {
            self.done.insert((done, id.clone()));
        }
        self.count(&after.listed, true);
        // The old mark for the new in one step: most changes move a case within its groups.
        self.figures.replace(removed.as_ref().and_then(|l| l.mark.as_ref()), after.listed.mark.as_ref());
        self.search.set(&after.listing, after.search);
        self.listed.insert(after.listing, after.listed);
    }

    /// Takes what `keys` put in the indexes out of them, but for the supervision figures: the
    /// listed record taken out is handed back, its mark still counted.
    fn remove(&mut self, id: &str, keys: &Keys) -> Option<Listed> {
        if let Some(due) = keys.due {
            self.due.remove(&(due, id.to_owned()));
        }
        if keys.unsent {
            self.unsent.remove(id);
        }
        if let Some(at) = keys.place {
            self.open.remove(&Place::new(at, id.to_owned()));
        }
        if let Some(done) = keys.done {
            self.done.remove(&(done, id.to_owned()));
        }
        let listed = self.listed.remove(&keys.listing)?;
        self.count(&listed, false);
        Some(listed)
    }

    /// Adds a record's part of the departments' figures (or takes it away).
    fn count(&mut self, listed: &Listed, add: bool) {
        if listed.merged {
            return;
        }
        let step = |n: &mut usize, by: bool| {
            if by {
                *n = if add { *n + 1 } else { n.saturating_sub(1) };
            }
        };
        let mut touched: Vec<&str> = listed.involved.iter().map(String::as_str).collect();
        for d in &listed.involved {
            let t = self.tallies.entry(d.clone()).or_default();
            step(&mut t.cases, true);
            step(&mut t.accepted, listed.accepted_by.as_ref() == Some(d));
            step(&mut t.rejected, listed.rejected_by.contains(d));
        }
        for (department, score, solved) in &listed.ratings {
            let Some(d) = department else { continue };
            let t = self.tallies.entry(d.clone()).or_default();
            step(&mut t.ratings, true);
            step(&mut t.not_solved, !solved);
            t.score_sum =
                if add { t.score_sum + u64::from(*score) } else { t.score_sum.saturating_sub(u64::from(*score)) };
            touched.push(d);
        }
        for d in touched {
            if self.tallies.get(d).is_some_and(Tally::is_empty) {
                self.tallies.remove(d);
            }
        }
    }

    /// Leaves a record (just taken out of memory, stored at `revision`) in the listing and the
    /// figures only: it is read from the bucket when asked for.
    pub(super) fn archive(&mut self, stored: &Stored, revision: u64) {
        let keys = Keys::of(stored);
        let id = &stored.record.case_id;
        if let Some(done) = keys.done {
            self.done.remove(&(done, id.clone()));
        }
        self.archived.insert(id.clone(), (keys.listing, revision));
    }

    /// Takes a record out of the archive, to be followed in memory at `revision`: false when the
    /// archive holds it at that revision or a later one (then it stays there).
    pub(super) fn unarchive(&mut self, id: &str, revision: u64) -> bool {
        match self.archived.get(id) {
            Some((_, archived)) if *archived >= revision => false,
            Some(_) => {
                if let Some((listing, _)) = self.archived.remove(id)
                    && let Some(listed) = self.listed.remove(&listing)
                {
                    self.count(&listed, false);
                    self.figures.replace(listed.mark.as_ref(), None);
                }
                true
            }
            None => true,
        }
    }

    /// The bucket revision of an archived record.
    pub(super) fn archived_revision(&self, id: &str) -> Option<u64> {
        self.archived.get(id).map(|(_, revision)| *revision)
    }

    /// Closed and cancelled records in memory last changed before `cutoff`, oldest first.
    pub(super) fn done_before(&self, cutoff: Timestamp) -> Vec<String> {
        self.done.iter().take_while(|(at, _)| *at < cutoff).map(|(_, id)| id.clone()).collect()
    }

    /// Every record from just after `after` on, in listing order, and whether it is archived.
    pub(super) fn listing(&self, after: Option<&ListKey>) -> impl Iterator<Item = Row<'_>> {
        use std::ops::Bound::{Excluded, Unbounded};
        let from = after.map_or(Unbounded, |key| Excluded(key.clone()));
        self.listed.range((from, Unbounded)).map(|(key, listed)| (key, listed, self.archived.contains_key(&key.1)))
    }

    /// Every record created before `to`, newest first, and whether it is archived.
    pub(super) fn created_before(&self, to: Timestamp) -> impl Iterator<Item = Row<'_>> {
        self.listed
            .range((Reverse(to), String::new())..)
            .filter(move |(key, _)| key.0.0 < to)
            .map(|(key, listed)| (key, listed, self.archived.contains_key(&key.1)))
    }

    /// The address of the case `id` as repeats compare it (folded), if it has one.
    pub(super) fn folded_address(&self, id: &str) -> Option<&str> {
        self.search.address(id)
    }

    /// The records `q` finds (in memory or archived), in listing order: see [`SearchIndex::find`].
    pub(super) fn search(&self, q: &SearchQuery) -> Vec<ListKey> {
        self.search.find(q)
    }

    /// The rows of `keys` (in listing order) from just after `after` on.
    pub(super) fn rows<'a>(
        &'a self,
        keys: &'a [ListKey],
        after: Option<&'a ListKey>,
    ) -> impl Iterator<Item = Row<'a>> + 'a {
        keys.iter()
            .filter(move |key| after.is_none_or(|after| *key > after))
            .filter_map(|key| self.listed.get_key_value(key))
            .map(|(key, listed)| (key, listed, self.archived.contains_key(&key.1)))
    }

    /// The records reported near the case `id` or at its address: see [`SearchIndex::repeats`].
    pub(super) fn repeats(&self, id: &str, radius_m: f64, window: jiff::SignedDuration) -> Option<Vec<ListKey>> {
        self.search.repeats(id, radius_m, window)
    }

    /// Each department's figures.
    pub(super) fn tallies(&self) -> &HashMap<String, Tally> {
        &self.tallies
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

    fn ids<'a>(listing: impl Iterator<Item = (&'a ListKey, &'a Listed, bool)>) -> Vec<(String, bool)> {
        listing.map(|((_, id), _, archived)| (id.clone(), archived)).collect()
    }

    #[test]
    fn lists_newest_first_and_keeps_archived_records_listed_and_counted() {
        let mut index = BookIndex::default();
        let mut records = Vec::new();
        for (n, id) in ["a", "b", "c"].into_iter().enumerate() {
            let mut s = stored(id, 116.40 + n as f64 * 0.01, 39.90);
            s.record.created_at += jiff::SignedDuration::from_secs(n as i64);
            s.record.departments = vec!["d1".into()];
            s.record.case.address = Some(format!("建国路{n}号"));
            index.update(None, &s);
            records.push(s);
        }
        let owned = |pairs: &[(&str, bool)]| pairs.iter().map(|(id, a)| (id.to_string(), *a)).collect::<Vec<_>>();
        assert_eq!(ids(index.listing(None)), owned(&[("c", false), ("b", false), ("a", false)]));
        let after_c = (Reverse(records[2].record.created_at), "c".to_owned());
        assert_eq!(ids(index.listing(Some(&after_c))), owned(&[("b", false), ("a", false)]));
        assert_eq!(index.tallies()["d1"].cases, 3);

        // a: accepted, rated, closed; then out of memory. Still listed, still counted.
        let mut closed = records[0].clone();
        closed.record.accepted_by = Some("d1".into());
        closed.record.state = CaseState::Closed;
        closed.record.accept_by = None;
        closed.record.ratings.push(linkbus_wire::Rating {
            score: 4,
            solved: false,
            comment: None,
            department: Some("d1".into()),
            at: closed.record.updated_at,
        });
        index.update(Some(&records[0]), &closed);
        let figures = index.tallies()["d1"];
        assert_eq!(
            (figures.cases, figures.accepted, figures.ratings, figures.not_solved, figures.score_sum),
            (3, 1, 1, 1, 4)
        );
        let later = closed.record.updated_at + jiff::SignedDuration::from_secs(1);
        assert_eq!(index.done_before(later), ["a"]);
        index.archive(&closed, 5);
        assert!(index.done_before(later).is_empty());
        // Still found by a search, in listing order, and its row says it is archived.
        let street = SearchQuery::parse("建国路").expect("a query");
        let hits = index.search(&street);
        assert_eq!(ids(index.rows(&hits, None)), owned(&[("c", false), ("b", false), ("a", true)]));
        assert_eq!(ids(index.rows(&hits, Some(&hits[0]))), owned(&[("b", false), ("a", true)]));
        let window = jiff::SignedDuration::from_hours(24);
        assert_eq!(index.repeats("a", 5000.0, window).map(|r| r.len()), Some(2));
        assert_eq!(ids(index.listing(None)), owned(&[("c", false), ("b", false), ("a", true)]));
        assert_eq!((index.archived_revision("a"), index.tallies()["d1"]), (Some(5), figures));

        // An older revision stays archived; a newer one comes back to memory, counted once.
        assert!(!index.unarchive("a", 5));
        assert!(index.unarchive("a", 6));
        index.update(None, &closed);
        assert_eq!(ids(index.listing(None)), owned(&[("c", false), ("b", false), ("a", false)]));
        assert_eq!(index.search(&street).len(), 3, "found once, not twice");
        assert_eq!(index.tallies()["d1"], figures);
        // Merged into another: no longer counted for the department.
        let mut merged = records[1].clone();
        merged.record.merged_into = Some("c".into());
        index.update(Some(&records[1]), &merged);
        assert_eq!(index.tallies()["d1"].cases, 2);
    }

    /// What the indexes cost per record: opening 40,000 records, then one change of each that
    /// leaves its search keys as they were (an acceptance). Printed: `cargo test --release -p
    /// linkbus-cases --lib -- index::tests::update_cost --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement; run it by name"]
    fn update_cost_at_40k_records() {
        const N: u32 = 40_000;
        let opened: Vec<Stored> = (0..N)
            .map(|n| {
                stored(&format!("sf311-{n:07}"), -122.5 + f64::from(n % 200) * 3e-4, 37.7 + f64::from(n / 200) * 2e-4)
            })
            .collect();
        let accepted: Vec<Stored> = opened
            .iter()
            .map(|s| {
                let mut next = s.clone();
                next.record.accepted_by = Some("sfpd".into());
                next.record.updated_at += jiff::SignedDuration::from_secs(60);
                next
            })
            .collect();
        let mut index = BookIndex::new(TimeZone::UTC);
        let started = std::time::Instant::now();
        for s in &opened {
            index.update(None, s);
        }
        let open = started.elapsed() / N;
        let started = std::time::Instant::now();
        for (before, after) in opened.iter().zip(&accepted) {
            index.update(Some(before), after);
        }
        println!("per record: opened {open:?}, accepted {:?}", started.elapsed() / N);
    }
}
