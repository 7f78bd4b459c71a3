//! The volunteer's own status: what the app shows at sign-in ([`Me`]) and what it changes
//! ([`StatusUpdate`]): on or off duty, skills from the region's list, the phone's position inside
//! the region; put in the volunteers bucket as the volunteer-status value the routers follow.

use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use jiff::Timestamp;
use linkbus_bus::sync::read;
use linkbus_matching::communities::Located;
use linkbus_wire::{Location, VolunteerStatus};
use serde::{Deserialize, Serialize};
use tracing::info;

use super::credentials::Volunteer;
use super::{AppState, STATUS_PER_MINUTE, VolunteerApp};
use crate::error::ApiError;

/// `GET /api/volunteer/me`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Me {
    /// The volunteer.
    pub id: String,
    /// Its status in the volunteers bucket, if it has one.
    pub status: Option<VolunteerStatus>,
    /// The community its position is in (name), if any.
    pub community: Option<String>,
    /// The skills the region's categories call for: the only ones a status may list.
    pub region_skills: Vec<String>,
    /// Offers it was sent in the last hour, and the most anyone is sent an hour: at the cap it
    /// is passed over until an hour after its oldest offer of the hour.
    pub offers_last_hour: usize,
    /// The hourly cap (`[routing].max_offers_per_hour`).
    pub max_offers_per_hour: usize,
    /// Status updates it may send a minute.
    pub status_per_minute: u32,
}

/// `PUT /api/volunteer/me/status`: the whole status but the id. Without `location`, the one
/// kept stays (a volunteer going off duty need not share where it is).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusUpdate {
    /// On duty and free.
    pub available: bool,
    /// Skills, each from the region's list ([`Me::region_skills`]).
    pub skills: Vec<String>,
    /// Where the phone is; inside the region.
    #[serde(default)]
    pub location: Option<Location>,
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!("the volunteers bucket is unavailable: {e}; try again"))
}

/// The status kept for `id`, if there is a readable one.
async fn kept(app: &VolunteerApp, id: &str) -> Result<Option<VolunteerStatus>, ApiError> {
    let entry = app.statuses.entry(id).await.map_err(unavailable)?;
    Ok(entry
        .filter(|e| e.operation == async_nats::jetstream::kv::Operation::Put)
        .and_then(|e| serde_json::from_slice(&e.value).ok()))
}

/// The region's volunteer skills, sorted.
fn region_skills(app: &VolunteerApp) -> Vec<String> {
    let mut skills: Vec<String> = app.router.router().volunteer_skills().map(str::to_owned).collect();
    skills.sort();
    skills.dedup();
    skills
}

/// The name of the community at `at`, or `None` outside the region (beyond the border tolerance).
pub(super) fn community_at(app: &VolunteerApp, at: Location) -> Option<String> {
    let router = app.router.router();
    let communities = router.communities();
    let index = match communities.locate(at.lon, at.lat) {
        Located::Inside(c) => c,
        Located::OnBorder(cs) => *cs.first()?,
        Located::Nearest(cs) => cs.first()?.0,
        Located::Unmatched => return None,
    };
    communities.communities().get(index).map(|c| c.name.clone())
}

/// `GET /api/volunteer/me`.
pub(super) async fn me(State(state): State<AppState>, Volunteer(id, _): Volunteer) -> Result<Json<Me>, ApiError> {
    let app = state.app()?;
    let status = kept(app, &id).await?;
    let community = status.as_ref().and_then(|s| community_at(app, s.location));
    let offers_last_hour = read(&app.router.offers).in_last_hour(&id, Timestamp::now().as_second());
    Ok(Json(Me {
        id,
        status,
        community,
        region_skills: region_skills(app),
        offers_last_hour,
        max_offers_per_hour: app.router.router().params().max_offers_per_hour,
        status_per_minute: STATUS_PER_MINUTE,
    }))
}

/// `PUT /api/volunteer/me/status`: checked (skills from the region's list, a position inside
/// it), at most [`STATUS_PER_MINUTE`] a minute, then put in the volunteers bucket; answers the
/// status put.
pub(super) async fn update(
    State(state): State<AppState>,
    Volunteer(id, _): Volunteer,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<VolunteerStatus>, ApiError> {
    let app = state.app()?;
    let result = put_status(app, &id, &body?).await;
    app.metrics.count("status", &result);
    result.map(Json)
}

async fn put_status(app: &VolunteerApp, id: &str, body: &[u8]) -> Result<VolunteerStatus, ApiError> {
    let update: StatusUpdate =
        serde_json::from_slice(body).map_err(|e| ApiError::Invalid(format!("not a status update: {e}")))?;
    let allowed = region_skills(app);
    if let Some(bad) = update.skills.iter().find(|s| !allowed.contains(s)) {
        return Err(ApiError::Invalid(format!(
            "skill {bad:?} is not one the region calls for ({})",
            allowed.join(", ")
        )));
    }
    let location = match update.location {
        Some(at) => at,
        None => kept(app, id)
            .await?
            .map(|s| s.location)
            .ok_or_else(|| ApiError::Invalid("the first status must carry a location".into()))?,
    };
    let mut skills = update.skills;
    skills.sort();
    skills.dedup();
    let status = VolunteerStatus { id: id.to_owned(), location, available: update.available, skills };
    status.validate().map_err(|e| ApiError::Invalid(e.to_string()))?;
    if community_at(app, location).is_none() {
        return Err(ApiError::Invalid(format!(
            "the position {:.5}, {:.5} is outside the region",
            location.lat, location.lon
        )));
    }
    app.throttle.check(id.to_owned(), Instant::now()).map_err(ApiError::rate_limited)?;
    let value = serde_json::to_vec(&status).map_err(|e| ApiError::Invalid(e.to_string()))?;
    app.statuses.put(id, Bytes::from(value)).await.map_err(unavailable)?;
    info!(volunteer = id, available = status.available, "volunteer status from the app");
    Ok(status)
}
