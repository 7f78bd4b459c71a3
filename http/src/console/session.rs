//! `/console/session`: signing in with a dispatcher's or operator's key (the cookie and its CSRF
//! token are made by [`crate::auth::session`]), who is signed in, signing out.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tracing::info;

use super::state::{Console, ConsoleState, require_console};
use crate::auth::Principal;
use crate::auth::session::{COOKIE, cookie};
use crate::error::ApiError;

/// `GET /console/session` and the answer to signing in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// `dispatcher` or `operator`.
    pub role: String,
    /// The dispatcher's (operator's) name, as the key's configuration gives it.
    pub id: String,
    /// Send this as `X-Linkbus-Csrf` with every `POST`.
    pub csrf: String,
    /// When the session ends.
    pub expires_at: Timestamp,
}

/// `POST /console/session`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    key: String,
}

fn session_info(console: &Console, principal: &Principal, value: &str, expires: i64) -> SessionInfo {
    SessionInfo {
        role: principal.role.as_str().to_owned(),
        id: principal.id.clone(),
        csrf: console.sessions.csrf(value),
        expires_at: Timestamp::from_second(expires).unwrap_or(Timestamp::MAX),
    }
}

/// The `Set-Cookie` header of the session cookie with `value` for `max_age` seconds (0: clears
/// it).
fn set_cookie(console: &Console, value: &str, max_age: i64) -> Result<(header::HeaderName, HeaderValue), ApiError> {
    let secure = if console.config.secure_cookie { "; Secure" } else { "" };
    let cookie = format!("{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}");
    let value = HeaderValue::from_str(&cookie).map_err(|e| ApiError::Invalid(e.to_string()))?;
    Ok((header::SET_COOKIE, value))
}

/// `POST /console/session`: `{"key": "…"}` of a dispatcher or operator; sets the cookie.
pub(super) async fn login(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let console = state.console()?;
    // JSON only: a cross-site form cannot send it without the browser asking this origin first.
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")));
    if !is_json {
        return Err(ApiError::Invalid("sign in with a JSON body {\"key\": \"…\"}".into()));
    }
    let login: Login = serde_json::from_slice(&body?).map_err(|e| ApiError::Invalid(format!("not a sign-in: {e}")))?;
    let refused = &console.metrics.sign_ins.with_label_values(&["refused"]);
    let (principal, hash) = state.auth.principal_with_hash(login.key.trim()).ok_or_else(|| {
        info!("console sign-in refused: unknown key");
        refused.inc();
        ApiError::Unauthorized("unknown API key".into())
    })?;
    require_console(&principal).inspect_err(|_| {
        info!(role = principal.role.as_str(), actor = %principal.id, "console sign-in refused for the key's role");
        refused.inc();
    })?;
    console.metrics.sign_ins.with_label_values(&["ok"]).inc();
    let max_age = i64::from(console.config.session_hours.max(1)) * 3600;
    let expires = Timestamp::now().as_second() + max_age;
    let value = console.sessions.issue(&principal, &hash, expires);
    let set_cookie = set_cookie(console, &value, max_age)?;
    info!(role = principal.role.as_str(), actor = %principal.id, "console sign-in");
    Ok(([set_cookie], axum::Json(session_info(console, &principal, &value, expires))).into_response())
}

/// `GET /console/session`: who is signed in, and the CSRF token for actions.
pub(super) async fn whoami(State(state): State<ConsoleState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let console = state.console()?;
    let value = cookie(&headers).ok_or_else(|| ApiError::Unauthorized("not signed in".into()))?;
    let (principal, expires) = state
        .auth
        .session(value)
        .ok_or_else(|| ApiError::Unauthorized("the console session has ended; sign in again".into()))?;
    Ok(axum::Json(session_info(console, &principal, value, expires)).into_response())
}

/// `DELETE /console/session`: signs out (clears the cookie).
pub(super) async fn logout(State(state): State<ConsoleState>) -> Result<Response, ApiError> {
    let console = state.console()?;
    Ok((StatusCode::NO_CONTENT, [set_cookie(console, "", 0)?]).into_response())
}
