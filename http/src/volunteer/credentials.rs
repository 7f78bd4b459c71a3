//! Per-volunteer credentials: issued and revoked by a dispatcher or operator, kept hashed in
//! [`super::BUCKET_VOLUNTEER_KEYS`], checked on every request of the app ([`Volunteer`]).

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use linkbus_adapters::web;
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tracing::info;

use super::{AppState, VolunteerApp};
use crate::auth::{Principal, constant_time_eq, hash_key};
use crate::config::ApiRole;
use crate::error::ApiError;

/// Who may issue and revoke volunteers' credentials.
const ISSUERS: &[ApiRole] = &[ApiRole::Dispatcher, ApiRole::Operator];

/// What [`super::BUCKET_VOLUNTEER_KEYS`] keeps of a credential.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    /// SHA-256 of the whole credential, lowercase hex.
    sha256: String,
    issued_by: String,
    issued_at: Timestamp,
}

/// The answer to `POST /api/volunteers/{id}/credential`: the credential, shown this once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Issued {
    /// The volunteer it stands for.
    pub volunteer_id: String,
    /// `<volunteer id>.<64 hex digits>`: what the volunteer signs in to the app with (sent as
    /// `Authorization: Bearer …`). Only its SHA-256 is kept.
    pub credential: String,
    /// The dispatcher or operator who issued it.
    pub issued_by: String,
    /// When.
    #[schemars(with = "String")]
    pub issued_at: Timestamp,
}

/// A volunteer's id as the path names it: 422 unless it is a subject token.
fn volunteer_id(id: &str) -> Result<&str, ApiError> {
    if linkbus_wire::is_token(id, 64, b"-_") {
        Ok(id)
    } else {
        Err(ApiError::Invalid("a volunteer id is 1-64 ASCII letters, digits, '-' or '_'".into()))
    }
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!("the volunteers' buckets are unavailable: {e}; try again"))
}

/// `POST /api/volunteers/{id}/credential`: a fresh credential for a volunteer the bucket knows,
/// replacing any earlier one.
pub(super) async fn issue(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require(ISSUERS, "issue volunteers' credentials")?;
    let app = state.app()?;
    let id = volunteer_id(&id)?;
    let known = app.statuses.entry(id).await.map_err(unavailable)?;
    if !known.is_some_and(|e| e.operation == async_nats::jetstream::kv::Operation::Put) {
        return Err(ApiError::NotFound(format!("no volunteer {id} in the volunteers bucket")));
    }
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let credential = format!("{id}.{}", hex::encode(secret));
    let issued_at = Timestamp::now();
    let stored = Stored { sha256: hash_key(&credential), issued_by: principal.id.clone(), issued_at };
    let value = serde_json::to_vec(&stored).map_err(|e| ApiError::Invalid(e.to_string()))?;
    let result = app.keys.put(id, Bytes::from(value)).await.map(|_| ()).map_err(unavailable);
    app.metrics.count("credential", &result);
    result?;
    info!(volunteer = id, actor = %principal.id, "volunteer credential issued");
    let issued = Issued { volunteer_id: id.to_owned(), credential, issued_by: principal.id, issued_at };
    Ok((StatusCode::CREATED, axum::Json(issued)).into_response())
}

/// `DELETE /api/volunteers/{id}/credential`: revokes it (404 if there is none).
pub(super) async fn revoke(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require(ISSUERS, "revoke volunteers' credentials")?;
    let app = state.app()?;
    let id = volunteer_id(&id)?;
    if stored(app, id).await?.is_none() {
        return Err(ApiError::NotFound(format!("volunteer {id} has no credential")));
    }
    app.keys.delete(id).await.map_err(unavailable)?;
    info!(volunteer = id, actor = %principal.id, "volunteer credential revoked");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The credential kept for volunteer `id`, if one is (not revoked).
async fn stored(app: &VolunteerApp, id: &str) -> Result<Option<Stored>, ApiError> {
    let entry = app.keys.entry(id).await.map_err(unavailable)?;
    Ok(entry
        .filter(|e| e.operation == async_nats::jetstream::kv::Operation::Put)
        .and_then(|e| serde_json::from_slice(&e.value).ok()))
}

/// The SHA-256 kept for volunteer `id`'s credential, if it has one.
async fn kept_hash(app: &VolunteerApp, id: &str) -> Result<Option<[u8; 32]>, ApiError> {
    let Some(stored) = stored(app, id).await? else { return Ok(None) };
    let mut kept = [0u8; 32];
    Ok(hex::decode_to_slice(&stored.sha256, &mut kept).is_ok().then_some(kept))
}

/// Whether `volunteer`'s credential still stands: not revoked, nor replaced by a new one (an open
/// offer stream ends otherwise; a bucket that cannot be read keeps it open).
pub(super) async fn still_valid(app: &VolunteerApp, volunteer: &Volunteer) -> bool {
    match kept_hash(app, &volunteer.0).await {
        Ok(Some(kept)) => constant_time_eq(&kept, &volunteer.1),
        Ok(None) => false,
        Err(_) => true,
    }
}

/// The volunteer a request's credential stands for, and the credential's SHA-256.
#[derive(Debug, Clone)]
pub(crate) struct Volunteer(pub(crate) String, pub(super) [u8; 32]);

impl FromRequestParts<AppState> for Volunteer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let app = state.app()?;
        let refused = || ApiError::Unauthorized("unknown or revoked volunteer credential".into());
        let presented = web::bearer(&parts.headers)
            .ok_or_else(|| ApiError::Unauthorized("an Authorization: Bearer <credential> header is required".into()))?;
        let (id, _) = presented.rsplit_once('.').ok_or_else(refused)?;
        let id = volunteer_id(id).map_err(|_| refused())?;
        let kept = kept_hash(app, id).await?.ok_or_else(refused)?;
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        if constant_time_eq(&kept, &digest) { Ok(Self(id.to_owned(), digest)) } else { Err(refused()) }
    }
}

#[cfg(test)]
mod tests {
    use super::volunteer_id;

    #[test]
    fn volunteer_ids_are_subject_tokens() {
        assert_eq!(volunteer_id("sf-v00001"), Ok("sf-v00001"));
        for bad in ["", "a.b", "a*", "a b", &"x".repeat(65)] {
            assert!(volunteer_id(bad).is_err(), "{bad:?}");
        }
    }
}
