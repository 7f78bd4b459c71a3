//! What the board and the map show, made from the case book and the region: the region's
//! description and community boundaries (made once, at start), and a case as a row of the board
//! ([`CaseSummary`]), of the live cases ([`live_cases`]).

use jiff::Timestamp;
use linkbus_geo_data::Region;
use linkbus_wire::{CaseRecord, CaseState, SourceSystem, TimelineEvent};
use serde::Serialize;
use serde_json::{Value, json};

use crate::config::ConsoleConfig;

/// Closed and cancelled cases stay on the board this long after their last change.
const RECENT_DONE: jiff::SignedDuration = jiff::SignedDuration::from_secs(3600);

/// `GET /console/region`: what the page needs to know of the region.
/// `labels` are the communities' label points and sizes ([`super::labels::community_labels`]).
pub(super) fn region_info(region: &Region, config: &ConsoleConfig, labels: &[(geo::Point<f64>, f64)]) -> Value {
    use geo::BoundingRect as _;
    let bounds = region
        .communities
        .iter()
        .filter_map(|c| c.boundary.bounding_rect())
        .reduce(|a, b| {
            geo::Rect::new(
                geo::coord! { x: a.min().x.min(b.min().x), y: a.min().y.min(b.min().y) },
                geo::coord! { x: a.max().x.max(b.max().x), y: a.max().y.max(b.max().y) },
            )
        })
        .map(|r| json!([[r.min().y, r.min().x], [r.max().y, r.max().x]]));
    json!({
        "id": region.manifest.id,
        "name": region.manifest.name,
        "version": region.manifest.version,
        "time_zone": region.manifest.time_zone,
        "bounds": bounds,
        "departments": region.departments.departments.iter().map(|d| json!({ "id": d.id, "name": d.name, "names": d.names })).collect::<Vec<_>>(),
        "categories": region.categories.iter().map(|c| json!({ "id": c.id, "name": c.name, "names": c.names })).collect::<Vec<_>>(),
        "communities": region.communities.iter().map(|c| json!({ "id": c.id, "name": c.name, "sub_district": c.sub_district.as_ref().map(|s| &s.code) })).collect::<Vec<_>>(),
        "areas": super::labels::area_labels(region, labels),
        "tile_url": config.tile_url,
        "tile_attribution": config.tile_attribution,
    })
}

/// `GET /console/region/communities`: every community's boundary, a GeoJSON FeatureCollection
/// whose features carry `id`, `name`, `district`, `sub_district` (or null), `label` (`[lat, lon]`)
/// and `size_m` (the square root of its area, metres) of `labels`.
pub(super) fn communities_geojson(region: &Region, labels: &[(geo::Point<f64>, f64)]) -> Value {
    let features: Vec<Value> = region
        .communities
        .iter()
        .zip(labels)
        .map(|(c, (label, size))| {
            let geometry = geojson::Geometry::new(geojson::GeometryValue::from(&c.boundary));
            json!({
                "type": "Feature",
                "id": c.id,
                "properties": {
                    "id": c.id, "name": c.name, "district": c.district.name,
                    "sub_district": c.sub_district.as_ref().map(|s| &s.name),
                    "label": [label.y(), label.x()], "size_m": size.round(),
                },
                "geometry": geometry,
            })
        })
        .collect();
    json!({ "type": "FeatureCollection", "features": features })
}

/// A case as the board shows it (the detail is read from `/api/cases/{id}` when opened).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseSummary {
    /// Case id.
    pub id: String,
    /// Where it is in its life.
    pub state: CaseState,
    /// 1 (life-threatening) to 4 (low).
    pub priority: u8,
    /// Category.
    pub category: String,
    /// Longitude (WGS-84).
    pub lon: f64,
    /// Latitude (WGS-84).
    pub lat: f64,
    /// Street address, if reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The community's id, if matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub community: Option<String>,
    /// The departments responsible now.
    pub departments: Vec<String>,
    /// The department that accepted it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted_by: Option<String>,
    /// The kinds of system its reports came from.
    pub systems: Vec<SourceSystem>,
    /// Each report's id in its source system (more than one: merged duplicates).
    pub source_ids: Vec<String>,
    /// An escalation waits for a dispatcher's acknowledgement.
    pub escalation_open: bool,
    /// The deadline that runs now: accepting while routed, resolving while accepted or in
    /// progress.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Timestamp>,
    /// When linkbus received it.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// Set when this report was merged into another case: the board drops it (the primary lists
    /// its report).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<String>,
    /// The source's last update of the case (`source_updated` on the timeline, e.g. a CAD "2nd
    /// alarm"), if any: the page alerts once per update of an urgent case.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_update: Option<SourceUpdate>,
}

/// A source's update of a case, as the board's summary carries the last one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceUpdate {
    /// When it was recorded (identifies it: the page alerts once per update).
    pub at: Timestamp,
    /// What the source said changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl CaseSummary {
    /// The board's view of a record.
    pub fn of(r: &CaseRecord) -> Self {
        let mut systems: Vec<SourceSystem> = r.reports.iter().map(|rep| rep.system).collect();
        if systems.is_empty() {
            systems.push(r.case.system);
        }
        systems.sort_by_key(|s| s.as_str());
        systems.dedup();
        let mut source_ids: Vec<String> = r.reports.iter().map(|rep| rep.source_id.clone()).collect();
        if source_ids.is_empty() {
            source_ids.push(r.case.source_id.clone());
        }
        let deadline = match r.state {
            CaseState::Routed | CaseState::Reported => r.accept_by,
            CaseState::Accepted | CaseState::InProgress => r.resolve_by,
            _ => None,
        };
        Self {
            id: r.case_id.clone(),
            state: r.state,
            priority: r.priority,
            category: r.case.category.clone(),
            lon: r.case.location.lon,
            lat: r.case.location.lat,
            address: r.case.address.clone(),
            community: r.community.as_ref().map(|c| c.id.clone()),
            departments: r.departments.clone(),
            accepted_by: r.accepted_by.clone(),
            systems,
            source_ids,
            escalation_open: r.escalation_open,
            deadline,
            created_at: r.created_at,
            updated_at: r.updated_at,
            merged_into: r.merged_into.clone(),
            source_update: r
                .timeline
                .iter()
                .rev()
                .find(|e| e.event == TimelineEvent::SourceUpdated)
                .map(|e| SourceUpdate { at: e.at, note: e.note.clone() }),
        }
    }
}

/// Whether the board shows a case at `now`: open (and not merged into another), or closed or
/// cancelled within the last hour.
pub(super) fn is_live(r: &CaseRecord, now: Timestamp) -> bool {
    r.merged_into.is_none() && (r.state.is_open() || r.updated_at >= now - RECENT_DONE)
}

/// The cases a console shows, of `records`: every open one (merged reports are shown by their
/// primary) and those closed or cancelled within the last hour; at most `max`, most recently
/// changed first.
pub fn live_cases(records: Vec<CaseRecord>, now: Timestamp, max: usize) -> Vec<CaseSummary> {
    let mut live: Vec<CaseRecord> = records.into_iter().filter(|r| is_live(r, now)).collect();
    live.sort_by_key(|r| std::cmp::Reverse(r.updated_at));
    live.truncate(max);
    live.iter().map(CaseSummary::of).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed example record (`docs/examples/case-record.json`): accepted, one report.
    fn example() -> CaseRecord {
        serde_json::from_str(include_str!("../../../docs/examples/case-record.json")).expect("the example parses")
    }

    #[test]
    fn a_summary_runs_the_deadline_of_its_state_and_lists_every_report() {
        let mut r = example();
        let summary = CaseSummary::of(&r);
        assert_eq!((summary.id.as_str(), summary.state, summary.priority), ("sf311-4292128", CaseState::Accepted, 3));
        assert_eq!(summary.deadline, r.resolve_by);
        assert_eq!(summary.community.as_deref(), Some("mission"));
        assert_eq!(summary.source_ids, ["4292128"]);
        // A merged duplicate from another kind of system: both reports, both systems, once each.
        let mut other = r.reports[0].clone();
        other.report_id = "cad-77".into();
        other.source_id = "77".into();
        other.system = SourceSystem::Emergency;
        r.reports.push(other.clone());
        r.reports.push(other);
        r.state = CaseState::Routed;
        r.accept_by = Some(r.created_at + jiff::SignedDuration::from_secs(600));
        let summary = CaseSummary::of(&r);
        assert_eq!(summary.deadline, r.accept_by);
        assert_eq!(summary.source_ids, ["4292128", "77", "77"]);
        assert_eq!(summary.systems, [SourceSystem::Emergency, SourceSystem::PublicService]);
        r.state = CaseState::Closed;
        assert_eq!(CaseSummary::of(&r).deadline, None);
    }

    #[test]
    fn a_summary_carries_the_sources_last_update() {
        let mut r = example();
        assert_eq!(CaseSummary::of(&r).source_update, None);
        let entry = |at: Timestamp, note: &str| linkbus_wire::TimelineEntry {
            at,
            event: TimelineEvent::SourceUpdated,
            actor: linkbus_wire::Actor { kind: linkbus_wire::ActorKind::Source, id: "cad".into() },
            department: None,
            note: Some(note.into()),
            system_note: None,
        };
        let later = r.updated_at + jiff::SignedDuration::from_secs(60);
        r.timeline.push(entry(r.updated_at, "2nd alarm"));
        r.timeline.push(entry(later, "3rd alarm"));
        let update = CaseSummary::of(&r).source_update.expect("the last update");
        assert_eq!((update.at, update.note.as_deref()), (later, Some("3rd alarm")));
    }

    #[test]
    fn the_live_cases_are_open_or_recently_done_newest_first_and_capped() {
        let base = example();
        let now = base.updated_at + jiff::SignedDuration::from_secs(7200);
        let case = |id: &str, state: CaseState, minutes_ago: i64, merged: bool| {
            let mut r = base.clone();
            r.case_id = id.into();
            r.state = state;
            r.updated_at = now - jiff::SignedDuration::from_secs(minutes_ago * 60);
            r.merged_into = merged.then(|| "primary".into());
            r
        };
        let records = vec![
            case("open-old", CaseState::Routed, 100, false),
            case("open-new", CaseState::InProgress, 1, false),
            case("closed-recently", CaseState::Closed, 30, false),
            case("closed-long-ago", CaseState::Closed, 90, false),
            case("cancelled-recently", CaseState::Cancelled, 10, false),
            case("merged", CaseState::Cancelled, 5, true),
        ];
        let ids = |max| live_cases(records.clone(), now, max).into_iter().map(|s| s.id).collect::<Vec<_>>();
        assert_eq!(ids(10), ["open-new", "cancelled-recently", "closed-recently", "open-old"]);
        assert_eq!(ids(2), ["open-new", "cancelled-recently"]);
    }
}
