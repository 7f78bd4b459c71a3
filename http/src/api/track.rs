//! `/api/track/{id}…`: the resident's tracking page's data and rating (the page itself is served
//! by [`crate::track`], which says how the proofs are checked and locked). `{id}` is the id of the
//! resident's own case (the receipt's), or its id in the source system (the request number a
//! 12345 operator tells a caller); the answer is the residents' public view
//! ([`PublicCase`]) of the case handling it (the one it was merged into, if it was). Rate-limited
//! per client address, as the residents' endpoints are.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use jiff::Timestamp;
use linkbus_wire::CaseRecord;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::residents::{PublicCase, RatingRequest, rate_as_resident};
use crate::error::ApiError;
use crate::names::reader_lang;
use crate::rate_limit::ClientIp;
use crate::state::ApiState;
use crate::track::{Proof, reporter_phone};

/// `POST /api/track/{id}`: the proof, one of the two.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrackRequest {
    /// The case's tracking token, from the receipt's link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub token: Option<String>,
    /// Or the last 4 digits of the reporter's phone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]{4}$"))]
    pub phone: Option<String>,
}

/// `POST /api/track/{id}/rating`: the proof and the rating.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrackRating {
    /// The case's tracking token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Or the last 4 digits of the reporter's phone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
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

/// `POST /api/track/{id}`: the case, for the holder of its proof.
pub(super) async fn view(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<PublicCase>, ApiError> {
    let asked: TrackRequest =
        serde_json::from_slice(&body?).map_err(|e| ApiError::Invalid(format!("not a tracking request: {e}")))?;
    let shown = prove(&state, &id, &Proof::of(asked.token, asked.phone)?, ip).await?;
    Ok(axum::Json(named(&state, &headers, PublicCase::of(&shown, Timestamp::now()))))
}

/// `POST /api/track/{id}/rating`: the resident's rating, as `POST /api/requests/{source_id}/rating`
/// records it; `solved: false` reopens the case.
pub(super) async fn rate(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<PublicCase>, ApiError> {
    let asked: TrackRating =
        serde_json::from_slice(&body?).map_err(|e| ApiError::Invalid(format!("not a rating: {e}")))?;
    let shown = prove(&state, &id, &Proof::of(asked.token, asked.phone)?, ip).await?;
    let rating = RatingRequest { score: asked.score, solved: asked.solved, comment: asked.comment };
    let rated = rate_as_resident(&state, &shown, rating, "tracking-page", "resident").await?;
    Ok(axum::Json(named(&state, &headers, PublicCase::of(&rated, Timestamp::now()))))
}

/// `view` with the region's names in the reader's language (`Accept-Language`; without, the
/// region's own): the category's, and the department's where the record named it only by its id.
fn named(state: &ApiState, headers: &HeaderMap, mut view: PublicCase) -> PublicCase {
    let Some(names) = &state.names else { return view };
    let lang = reader_lang(headers);
    view.category_name = names.category(lang, &view.category).map(str::to_owned);
    if let Some(name) = view.department.as_deref().and_then(|d| names.department(lang, d)) {
        view.department = Some(name.to_owned());
    }
    view
}

/// The case whose own report is `source_id` in its source system (the number a 12345 operator
/// gives a caller), in whichever source has one (source ids are unique only within a source: a
/// wrong one fails the proof like any other).
async fn by_source_id(state: &ApiState, source_id: &str) -> Result<Option<CaseRecord>, ApiError> {
    let Some(found) = state.cases.fetch_by_source_id(None, source_id).await? else { return Ok(None) };
    let Some(own) = found.reports.iter().find(|r| r.source_id == source_id) else { return Ok(None) };
    if own.report_id == found.case_id {
        return Ok(Some(found));
    }
    Ok(state.cases.fetch(&own.report_id).await?)
}

/// The case to show the caller at `ip` who asks for case `id` with `proof`: checked (and
/// counted, and locked) by [`crate::track::Track::check`].
async fn prove(state: &ApiState, id: &str, proof: &Proof, ip: std::net::IpAddr) -> Result<CaseRecord, ApiError> {
    let track = state.track.as_ref().ok_or_else(|| ApiError::NotFound("the tracking page is off".into()))?;
    let own = match linkbus_wire::is_event_id(id) {
        true => state.cases.fetch(id).await?,
        false => None,
    };
    let own = match own {
        Some(own) => Some(own),
        None => by_source_id(state, id).await?,
    };
    track.check(own.as_ref().map(|c| c.case_id.as_str()), own.as_ref().and_then(reporter_phone), proof, ip)?;
    let gone = || ApiError::NotFound("no such request".into());
    let own = own.ok_or_else(gone)?;
    let shown = match &own.merged_into {
        Some(primary) => state.cases.fetch(primary).await?.ok_or_else(gone)?,
        None => own,
    };
    Ok(shown)
}
