//! `/api/requests/{source_id}…`: a resident's follow-up and rating, relayed by their source
//! system's app with its source key (or, for a rating taken by phone, a dispatcher's), by the
//! request's id in that system; rate-limited per key (per client address without one).
//!
//! Residents get a reduced view ([`PublicCase`]): the state and a timeline of event names, no
//! contact details, no volunteer or department ids, notes only of `progress`, `resolved` and
//! `closed` (what a department writes there is addressed to the reporter).

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jiff::Timestamp;
use linkbus_adapters::web;
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

/// What a resident sees of their request: no contact details, no volunteer or department ids.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct PublicCase {
    /// The case id (the case the request belongs to: another resident's if it was merged into it).
    pub case_id: String,
    /// Where it is in its life.
    pub state: CaseState,
    /// Its category.
    pub category: String,
    /// When linkbus received it.
    #[schemars(schema_with = "timestamp_schema")]
    pub created_at: Timestamp,
    /// When it last changed.
    #[schemars(schema_with = "timestamp_schema")]
    pub updated_at: Timestamp,
    /// Whether it can be rated now (resolved or closed).
    pub can_rate: bool,
    /// What happened, oldest first.
    pub timeline: Vec<PublicEntry>,
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
    /// The public view of a case.
    pub fn of(r: &CaseRecord) -> Self {
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
            created_at: r.created_at,
            updated_at: r.updated_at,
            can_rate: matches!(r.state, CaseState::Resolved | CaseState::Closed),
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

/// The residents' routes, behind the per-address rate limit of `state`.
pub(super) fn routes(state: &ApiState) -> Router<ApiState> {
    Router::new()
        .route("/api/requests/{source_id}", get(follow_up))
        .route("/api/requests/{source_id}/rating", post(rate))
        .route_layer(middleware::from_fn_with_state(state.clone(), limit))
}

/// The residents' rate limit: one token bucket per key holder, and one per client address for
/// requests without a valid key (which cannot spend a key's; see [`crate::state`]).
pub(super) async fn limit(State(state): State<ApiState>, request: Request, next: Next) -> Response {
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
    Ok(axum::Json(PublicCase::of(&record)))
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
    if !(1..=5).contains(&rating.score) {
        return Err(ApiError::Invalid(format!("score {} is not 1-5", rating.score)));
    }
    let action = Action::Rate { score: rating.score, solved: rating.solved, comment: rating.comment };
    check_texts(&action)?;
    let record = state
        .cases
        .fetch_by_source_id(principal.source.as_deref(), &source_id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such request".into()))?;
    let resident = Actor { kind: ActorKind::Resident, id: "reporter".into() };
    let result = state.cases.act(&record.case_id, &resident, &action).await.map_err(ApiError::from);
    match &result {
        Ok(r) => info!(
            actor = "reporter",
            relayed_by = %principal.id,
            role = principal.role.as_str(),
            action = "rate",
            case_id = %r.case_id,
            score = rating.score,
            solved = rating.solved,
            state = r.state.as_str(),
            "case rated"
        ),
        Err(e) => info!(
            actor = "reporter",
            relayed_by = %principal.id,
            role = principal.role.as_str(),
            action = "rate",
            case_id = %record.case_id,
            refused = %e,
            "rating refused"
        ),
    }
    Ok(axum::Json(PublicCase::of(&result?)))
}
