//! `/api/requests/{source_id}…`: a resident's follow-up and rating, relayed by their source
//! system's app with its source key (or, for a rating taken by phone, a dispatcher's), by the
//! request's id in that system; rate-limited per key (per client address without one).
//!
//! Residents get a reduced view ([`PublicCase`]): the state and a timeline of event names, the
//! name of the department handling it, its deadlines met or missed, its escalations and how many
//! reports it joins; no contact details, no volunteer or department ids, notes only of
//! `progress`, `resolved` and `closed` (what a department writes there is addressed to the
//! reporter). The tracking page (`crate::track`) answers the same view and rates through
//! [`rate_as_resident`].

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jiff::Timestamp;
use linkbus_adapters::{tracking, web};
use linkbus_wire::{Action, Actor, ActorKind, CaseRecord, CaseState};
use schemars::{JsonSchema, SchemaGenerator};
use serde::Serialize;
use tracing::{debug, info};

use super::cases::check_texts;
use crate::auth::Principal;
use crate::config::ApiRole;
use crate::error::ApiError;
use crate::state::ApiState;

/// Who may read a resident's follow-up.
const FOLLOW_UP_ROLES: &[ApiRole] = &[ApiRole::Source, ApiRole::Dispatcher, ApiRole::Operator];
/// Who may rate for a resident: their source system's app, or a dispatcher calling them back.
const RATE_ROLES: &[ApiRole] = &[ApiRole::Source, ApiRole::Dispatcher];

/// What a resident sees of their request: no contact details, no volunteer or department ids,
/// nothing of the other reports it joins but their number.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct PublicCase {
    /// The case id (the case the request belongs to: another resident's if it was merged into it).
    pub case_id: String,
    /// Where it is in its life.
    pub state: CaseState,
    /// Its category.
    pub category: String,
    /// The category's name in the region (the tracking page's answers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category_name: Option<String>,
    /// When linkbus received it.
    #[schemars(schema_with = "timestamp_schema")]
    pub created_at: Timestamp,
    /// When it last changed.
    #[schemars(schema_with = "timestamp_schema")]
    pub updated_at: Timestamp,
    /// Whether it can be rated now (resolved or closed).
    pub can_rate: bool,
    /// The name of the department that accepted it, else of the one responsible now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// The department's deadline to accept it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept_deadline: Option<Deadline>,
    /// The deadline to resolve it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolve_deadline: Option<Deadline>,
    /// How many times it escalated (a deadline passed, or a dispatcher raised it).
    pub escalations: u32,
    /// Reports of this problem it joins, its own included (3: "joined with 2 other reports").
    pub reports: usize,
    /// What happened, oldest first.
    pub timeline: Vec<PublicEntry>,
}

/// A deadline, and whether it was met. The case record keeps a deadline only while it runs; one
/// met or missed is read from the timeline (a deadline that passes escalates the case).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Deadline {
    /// Due by, while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_timestamp_schema")]
    pub by: Option<Timestamp>,
    /// `true`: done in time; `false`: passed (done late, or not yet done); absent: running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub met: Option<bool>,
}

impl Deadline {
    /// The deadline of `r` for its last `done` event (`accepted`, `resolved`), counted from its
    /// last `from` event before it (the start without): running until `by` as of `now`, else met
    /// unless the case escalated in between. `None` before it began.
    fn of(r: &CaseRecord, by: Option<Timestamp>, from: Option<&str>, done: &str, now: Timestamp) -> Option<Self> {
        if let Some(by) = by {
            return Some(Self { by: Some(by), met: (now > by).then_some(false) });
        }
        let timeline = &r.timeline;
        let end = timeline.iter().rposition(|e| e.event.as_str() == done)?;
        let start = from.and_then(|f| timeline[..end].iter().rposition(|e| e.event.as_str() == f)).unwrap_or(0);
        let escalated = timeline[start..end].iter().any(|e| e.event.as_str() == "escalated");
        Some(Self { by: None, met: Some(!escalated) })
    }
}

/// One line of the public timeline.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct PublicEntry {
    /// When.
    #[schemars(schema_with = "timestamp_schema")]
    pub at: Timestamp,
    /// What: `routed`, `accepted`, `rejected`, `rerouted`, `reassigned`, `escalated`, `progress`,
    /// `resolved`, `closed`, `cancelled`, `rated`, `reopened`, `report_merged`, `split`,
    /// `volunteer_accepted`.
    pub event: String,
    /// The department's note to the reporter (`progress`, `resolved` and `closed` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl PublicCase {
    /// The public view of a case as of `now` (for the deadlines).
    pub fn of(r: &CaseRecord, now: Timestamp) -> Self {
        let timeline = r
            .timeline
            .iter()
            .filter(|e| e.event.is_public())
            .map(|e| PublicEntry {
                at: e.at,
                event: e.event.to_string(),
                note: if e.event.note_is_public() { e.note.clone() } else { None },
            })
            .collect();
        Self {
            case_id: r.case_id.clone(),
            state: r.state,
            category: r.case.category.clone(),
            category_name: None,
            created_at: r.created_at,
            updated_at: r.updated_at,
            can_rate: matches!(r.state, CaseState::Resolved | CaseState::Closed),
            department: tracking::department_name(r),
            accept_deadline: Deadline::of(r, r.accept_by, None, "accepted", now),
            resolve_deadline: Deadline::of(r, r.resolve_by, Some("accepted"), "resolved", now),
            escalations: r.escalations,
            reports: r.reports.len(),
            timeline,
        }
    }
}

/// `POST /api/requests/{source_id}/rating`.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RatingRequest {
    /// 1 (bad) to 5 (excellent).
    #[schemars(range(min = 1, max = 5))]
    pub score: u8,
    /// Whether the problem is really solved; `false` reopens the case.
    pub solved: bool,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub comment: Option<String>,
}

fn timestamp_schema(_: &mut SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "string", "format": "date-time" })
}

fn optional_timestamp_schema(_: &mut SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": ["string", "null"], "format": "date-time" })
}

/// The residents' routes, behind the per-address rate limit of `state`.
pub(super) fn routes(state: &ApiState) -> Router<ApiState> {
    Router::new()
        .route("/api/requests/{source_id}", get(follow_up))
        .route("/api/requests/{source_id}/rating", post(rate))
        .route_layer(middleware::from_fn_with_state(state.clone(), limit))
}

/// The residents' rate limit: one token bucket per key holder, and one per client address for
/// requests without a valid key (which cannot spend a key's; see [`crate::state`]).
pub(crate) async fn limit(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let budget = state.budget(request.headers(), web::client_ip(&request));
    match state.spend(budget.clone()) {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            debug!(?budget, "resident request rate-limited");
            ApiError::rate_limited(wait).into_response()
        }
    }
}

/// `GET /api/requests/{source_id}`: a source key finds only the requests of the CloudEvents
/// source it speaks for (source ids are unique only within their source); dispatchers and
/// operators find any.
async fn follow_up(
    State(state): State<ApiState>,
    principal: Principal,
    Path(source_id): Path<String>,
) -> Result<axum::Json<PublicCase>, ApiError> {
    principal.require(FOLLOW_UP_ROLES, "read residents' requests")?;
    let record = state
        .cases
        .fetch_by_source_id(principal.source.as_deref(), &source_id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such request".into()))?;
    debug!(case_id = %record.case_id, role = principal.role.as_str(), relayed_by = %principal.id, "resident follow-up");
    Ok(axum::Json(PublicCase::of(&record, Timestamp::now())))
}

/// `POST /api/requests/{source_id}/rating`: recorded as the resident's (`resident`/`reporter`:
/// the lifecycle takes ratings only from residents); the key that relayed it is logged
/// (`relayed_by`). `solved: false` reopens the case.
async fn rate(
    State(state): State<ApiState>,
    principal: Principal,
    Path(source_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<PublicCase>, ApiError> {
    principal.require(RATE_ROLES, "rate residents' requests")?;
    let rating: RatingRequest =
        serde_json::from_slice(&body?).map_err(|e| ApiError::Invalid(format!("not a rating: {e}")))?;
    let record = state
        .cases
        .fetch_by_source_id(principal.source.as_deref(), &source_id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such request".into()))?;
    let rated = rate_as_resident(&state, &record, rating, &principal.id, principal.role.as_str()).await?;
    Ok(axum::Json(PublicCase::of(&rated, Timestamp::now())))
}

/// Records `rating` on `record` as the resident's (`resident`/`reporter`: the lifecycle takes
/// ratings only from residents), logging who relayed it (`relayed_by`, in `role`); `solved:
/// false` reopens the case. The rated case, or why not.
pub(crate) async fn rate_as_resident(
    state: &ApiState,
    record: &CaseRecord,
    rating: RatingRequest,
    relayed_by: &str,
    role: &str,
) -> Result<CaseRecord, ApiError> {
    if !(1..=5).contains(&rating.score) {
        return Err(ApiError::Invalid(format!("score {} is not 1-5", rating.score)));
    }
    let (score, solved) = (rating.score, rating.solved);
    let action = Action::Rate { score, solved, comment: rating.comment };
    check_texts(&action)?;
    let resident = Actor { kind: ActorKind::Resident, id: "reporter".into() };
    let result = state.cases.act(&record.case_id, &resident, &action).await.map_err(ApiError::from);
    match &result {
        Ok(r) => info!(
            actor = "reporter",
            relayed_by,
            role,
            action = "rate",
            case_id = %r.case_id,
            score,
            solved,
            state = r.state.as_str(),
            "case rated"
        ),
        Err(e) => info!(
            actor = "reporter",
            relayed_by,
            role,
            action = "rate",
            case_id = %record.case_id,
            refused = %e,
            "rating refused"
        ),
    }
    result
}

#[cfg(test)]
mod tests {
    use jiff::SignedDuration;
    use linkbus_cases::lifecycle::{self, Policy};
    use linkbus_wire::{CloudEvent, RoutedCase, TimelineEntry};

    use super::*;

    /// The documented example case, opened at `at`, its timeline then made of `events` a minute
    /// apart.
    fn record(at: Timestamp, events: &[&str]) -> CaseRecord {
        let routed: CloudEvent<RoutedCase> =
            serde_json::from_str(include_str!("../../../docs/examples/case-routed.json")).expect("example");
        let mut r = lifecycle::open(&routed.data, at, &Policy::default());
        let first: TimelineEntry = r.timeline[0].clone();
        r.timeline = events
            .iter()
            .enumerate()
            .map(|(i, event)| TimelineEntry {
                at: at + SignedDuration::from_mins(i as i64),
                event: serde_json::from_value(serde_json::json!(event)).expect("an event"),
                ..first.clone()
            })
            .collect();
        r
    }

    #[test]
    fn a_running_deadline_is_open_until_it_passes() {
        let at: Timestamp = "2026-12-07T08:00:00Z".parse().expect("a time");
        let by = at + SignedDuration::from_hours(1);
        let r = record(at, &["routed"]);
        assert_eq!(Deadline::of(&r, Some(by), None, "accepted", by), Some(Deadline { by: Some(by), met: None }));
        let late = by + SignedDuration::from_secs(1);
        assert_eq!(
            Deadline::of(&r, Some(by), None, "accepted", late),
            Some(Deadline { by: Some(by), met: Some(false) })
        );
        assert_eq!(Deadline::of(&r, None, None, "accepted", late), None, "not begun: no deadline");
    }

    #[test]
    fn a_past_deadline_was_met_unless_the_case_escalated_on_the_way() {
        let at: Timestamp = "2026-12-07T08:00:00Z".parse().expect("a time");
        let met = Some(Deadline { by: None, met: Some(true) });
        let missed = Some(Deadline { by: None, met: Some(false) });
        let accept = |events: &[&str]| Deadline::of(&record(at, events), None, None, "accepted", at);
        let resolve = |events: &[&str]| Deadline::of(&record(at, events), None, Some("accepted"), "resolved", at);
        assert_eq!(accept(&["routed", "accepted"]), met);
        assert_eq!(accept(&["routed", "escalated", "accepted"]), missed);
        assert_eq!(accept(&["routed", "accepted", "escalated"]), met, "an escalation after it is another's");
        assert_eq!(resolve(&["routed", "escalated", "accepted", "resolved"]), met, "only since the acceptance");
        assert_eq!(resolve(&["routed", "accepted", "escalated", "resolved"]), missed);
        assert_eq!(
            resolve(&["routed", "accepted", "escalated", "resolved", "reopened", "accepted", "resolved"]),
            met,
            "the last resolution, since the last acceptance"
        );
    }

    #[test]
    fn the_public_view_counts_reports_and_escalations_and_names_the_department() {
        let at: Timestamp = "2026-12-07T08:00:00Z".parse().expect("a time");
        let mut r = record(at, &["routed", "escalated"]);
        r.escalations = 1;
        r.reports.push(r.reports[0].clone());
        let view = PublicCase::of(&r, at);
        assert_eq!((view.escalations, view.reports), (1, 2));
        assert_eq!(view.department.as_deref(), Some("PUC Sewer Ops"));
        assert_eq!(view.accept_deadline.map(|d| d.by), Some(r.accept_by));
    }
}
