//! The monthly reports (`docs/supervision.md`): a dispatcher issues a closed month's figures as
//! an immutable version (`POST /api/reports/{month}`; a correction is the next version, with its
//! reason), dispatchers, operators and departments (their own rows) read them, and, where
//! `[api.public_stats]` enables it, anyone reads the public part: by 街道 and category, no group
//! below the configured count.

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jiff::Timestamp;
use linkbus_cases::reports::{ReportError, ReportVersion};
use linkbus_cases::supervision::{Group, MonthlyReport};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tracing::info;

use super::residents::limit;
use super::supervision::{answer, month, month_name, zone_name};
use crate::auth::Principal;
use crate::config::ApiRole;
use crate::error::ApiError;
use crate::state::{ApiState, Reports};

/// Who may read reports (a department key only its own rows).
const READ_ROLES: &[ApiRole] = &[ApiRole::Dispatcher, ApiRole::Operator, ApiRole::Department];
/// Who may issue and correct them.
const ISSUE_ROLES: &[ApiRole] = &[ApiRole::Dispatcher];
/// The longest reason, in characters.
pub(crate) const MAX_REASON_CHARS: usize = 500;

/// `POST /api/reports/{month}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueRequest {
    /// Why this version: required for a correction (any version after the first).
    #[serde(default)]
    pub reason: Option<String>,
}

/// `GET /api/reports`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ReportList {
    /// Every version issued, by month then version.
    pub reports: Vec<ReportVersion>,
}

/// The public export's routes (rate-limited like the residents').
pub(super) fn public_routes(state: &ApiState) -> Router<ApiState> {
    Router::new()
        .route("/public/stats/{month}", get(public_stats))
        .route_layer(middleware::from_fn_with_state(state.clone(), limit))
}

fn book(state: &ApiState) -> Result<&dyn Reports, ApiError> {
    state.reports.as_deref().ok_or_else(|| ApiError::Unavailable("the monthly reports are not kept here".into()))
}

fn report_err(e: ReportError) -> ApiError {
    match e {
        ReportError::NeedsReason { .. } => ApiError::Invalid(e.to_string()),
        ReportError::Taken { .. } => ApiError::Conflict(e.to_string()),
        ReportError::Store(_) => ApiError::Unavailable(e.to_string()),
    }
}

/// The `version` of a query that takes nothing else.
fn version_query(pairs: &[(String, String)]) -> Result<Option<u32>, ApiError> {
    match pairs {
        [] => Ok(None),
        [(name, value)] if name == "version" => value
            .parse()
            .ok()
            .filter(|v| *v >= 1)
            .map(Some)
            .ok_or_else(|| ApiError::Invalid(format!("version={value:?}: not a version (1, 2, …)"))),
        _ => Err(ApiError::Invalid("unknown or repeated query parameter; known: version".into())),
    }
}

/// `POST /api/reports/{month}`: the month's figures now, as its next version.
pub(super) async fn issue(
    State(state): State<ApiState>,
    principal: Principal,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    principal.require(ISSUE_ROLES, "issue monthly reports")?;
    let first = month(&name)?;
    let body = body.map_err(|e| ApiError::Invalid(e.body_text()))?;
    let request: IssueRequest = if body.is_empty() {
        IssueRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::Invalid(format!("not a report request: {e}")))?
    };
    let reason = request.reason.map(|r| r.trim().to_owned()).filter(|r| !r.is_empty());
    if reason.as_ref().is_some_and(|r| r.chars().count() > MAX_REASON_CHARS) {
        return Err(ApiError::Invalid(format!("the reason is longer than {MAX_REASON_CHARS} characters")));
    }
    let tz = state.cases.time_zone();
    let now = Timestamp::now();
    let today = tz.to_datetime(now).date();
    if today <= first.last_of_month() {
        return Err(ApiError::Conflict(format!(
            "{name} is not over yet in {}: a report is of a closed month",
            zone_name(&tz)
        )));
    }
    let report = MonthlyReport::issue(|q| state.cases.stats(q), first, now, &principal.id, reason, &tz);
    let issued = book(&state)?.issue(report).await.map_err(report_err)?;
    info!(actor = %principal.id, month = %issued.month, version = issued.version, reason = issued.reason.as_deref(), "monthly report issued");
    Ok(axum::Json(issued).into_response())
}

/// `GET /api/reports/{month}?version=`: the latest version, or the one asked for.
pub(super) async fn get_report(
    State(state): State<ApiState>,
    principal: Principal,
    Path(name): Path<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<axum::Json<MonthlyReport>, ApiError> {
    principal.require(READ_ROLES, "read monthly reports")?;
    let Query(pairs) = query.map_err(|e| ApiError::Invalid(e.body_text()))?;
    let version = version_query(&pairs)?;
    let name = month_name(month(&name)?);
    let mut report = book(&state)?
        .get(&name, version)
        .await
        .map_err(report_err)?
        .ok_or_else(|| ApiError::NotFound(format!("no report of {name} (version {version:?}) was issued")))?;
    if let Some(own) = principal.department() {
        report.rows = report.rows.of_department(own);
    }
    Ok(axum::Json(report))
}

/// `GET /api/reports`.
pub(super) async fn list_reports(
    State(state): State<ApiState>,
    principal: Principal,
) -> Result<axum::Json<ReportList>, ApiError> {
    principal.require(READ_ROLES, "read monthly reports")?;
    Ok(axum::Json(ReportList { reports: book(&state)?.versions().await.map_err(report_err)? }))
}

/// `GET /public/stats/{month}?by=`: the latest report's public part, JSON, or with
/// `Accept: text/csv` the rows of `by` (`sub_district`, the default, or `category`).
async fn public_stats(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    if !state.public_stats.enabled {
        return Err(ApiError::NotFound("the public export is not enabled here ([api.public_stats])".into()));
    }
    let Query(pairs) = query.map_err(|e| ApiError::Invalid(e.body_text()))?;
    let by = match pairs.as_slice() {
        [] => Group::SubDistrict,
        [(name, value)] if name == "by" => Group::parse(value)
            .filter(|g| matches!(g, Group::SubDistrict | Group::Category))
            .ok_or_else(|| ApiError::Invalid(format!("by={value:?}: one of sub_district, category")))?,
        _ => return Err(ApiError::Invalid("unknown or repeated query parameter; known: by".into())),
    };
    let name = month_name(month(&name)?);
    let report = book(&state)?
        .get(&name, None)
        .await
        .map_err(report_err)?
        .ok_or_else(|| ApiError::NotFound(format!("no report of {name} was issued")))?;
    let public = report.public(state.public_stats.min_count);
    let rows = if by == Group::Category { &public.category } else { &public.sub_district };
    answer(&headers, &public, rows)
}
