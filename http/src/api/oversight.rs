//! What dispatchers, operators and departments watch the loop with: a department's webhook
//! deliveries and the per-department figures. A department key reads only its own.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use linkbus_cases::book::DepartmentStats;
use linkbus_cases::webhooks::{Delivery, WebhookError};
use linkbus_wire as wire;
use schemars::JsonSchema;
use serde::Serialize;
use tracing::{debug, info};

use super::query::parse_limit_query;
use crate::auth::Principal;
use crate::config::ApiRole;
use crate::error::ApiError;
use crate::state::ApiState;

/// Who may read webhook deliveries and department figures (a department key only its own).
const OVERSIGHT_ROLES: &[ApiRole] = &[ApiRole::Dispatcher, ApiRole::Department, ApiRole::Operator];

/// `GET /api/webhooks/{department}/deliveries`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct DeliveryList {
    /// The department's webhook deliveries, one per message, newest first.
    pub deliveries: Vec<Delivery>,
}

/// `GET /api/stats/departments`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct DepartmentStatsList {
    /// One row per department that has or had a case, by department id (a department key: its
    /// own row only).
    pub departments: Vec<DepartmentStats>,
}

/// `GET /api/webhooks/{department}/deliveries`: newest first, at most `limit`.
pub(super) async fn list_deliveries(
    State(state): State<ApiState>,
    principal: Principal,
    Path(department): Path<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<axum::Json<DeliveryList>, ApiError> {
    principal.require(OVERSIGHT_ROLES, "read webhook deliveries")?;
    if let Some(own) = principal.department().filter(|own| *own != department) {
        info!(role = principal.role.as_str(), actor = %principal.id, department = %department, "webhook deliveries refused");
        return Err(ApiError::Forbidden(format!("a department key may read only {own}'s webhook deliveries")));
    }
    let Query(pairs) = query.map_err(|e| ApiError::Invalid(e.body_text()))?;
    let limit = parse_limit_query(&pairs)?;
    if !wire::is_token(&department, 64, b"-_") {
        return Err(ApiError::Invalid(format!(
            "{department:?} is not a department id (1-64 ASCII letters, digits, '-' or '_')"
        )));
    }
    let source = state
        .deliveries
        .as_ref()
        .ok_or_else(|| ApiError::Unavailable("webhook deliveries are not served here".into()))?;
    let mut deliveries = source.deliveries(&department).await.map_err(|e| match e {
        WebhookError::Invalid { reason, .. } => ApiError::Invalid(format!("{department:?}: {reason}")),
        e => ApiError::Unavailable(format!("the webhook delivery records are unavailable: {e}")),
    })?;
    deliveries.sort_by_key(|d| std::cmp::Reverse(d.stream_sequence));
    deliveries.truncate(limit);
    debug!(role = principal.role.as_str(), actor = %principal.id, department = %department, count = deliveries.len(), "webhook deliveries listed");
    Ok(axum::Json(DeliveryList { deliveries }))
}

/// `GET /api/stats/departments`: a department key gets its own row, empty if it has no case.
pub(super) async fn department_stats(
    State(state): State<ApiState>,
    principal: Principal,
) -> Result<axum::Json<DepartmentStatsList>, ApiError> {
    principal.require(OVERSIGHT_ROLES, "read department statistics")?;
    let mut departments = state.cases.department_stats();
    if let Some(own) = principal.department() {
        let row = departments.into_iter().find(|s| s.department == own);
        departments = vec![row.unwrap_or_else(|| DepartmentStats { department: own.to_owned(), ..Default::default() })];
    }
    debug!(role = principal.role.as_str(), actor = %principal.id, count = departments.len(), "department statistics read");
    Ok(axum::Json(DepartmentStatsList { departments }))
}
