//! `/console/session`: signing in with a dispatcher's or operator's key (the cookie and its CSRF
//! token are made by [`crate::auth::session`]), rate-limited per client address and per key
//! tried; who is signed in; signing out, which ends the session on every replica.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tracing::info;

use super::state::{Console, ConsoleState, require_console};
use crate::auth::check_csrf;
use crate::auth::session::{COOKIE, Session, cookie};
use crate::error::ApiError;
use crate::rate_limit::ClientIp;

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

fn session_info(console: &Console, session: &Session, value: &str) -> SessionInfo {
    SessionInfo {
        role: session.principal.role.as_str().to_owned(),
        id: session.principal.id.clone(),
        csrf: console.sessions.csrf(value),
        expires_at: Timestamp::from_second(session.expires).unwrap_or(Timestamp::MAX),
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

/// `POST /console/session`: `{"key": "…"}` of a dispatcher or operator; sets the cookie. At most
/// `[console].sign_in_per_minute` attempts from each address, and with each key tried.
pub(super) async fn login(
    State(state): State<ConsoleState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let console = state.console()?;
    let now = Instant::now();
    let limited = |wait: Duration| {
        info!(%ip, "console sign-in rate-limited");
        console.metrics.sign_ins.with_label_values(&["rate_limited"]).inc();
        ApiError::rate_limited(wait)
    };
    console.sign_ins_by_ip.check(ip, now).map_err(limited)?;
    // JSON only: a cross-site form cannot send it without the browser asking this origin first.
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")));
    if !is_json {
        return Err(ApiError::Invalid("sign in with a JSON body {\"key\": \"…\"}".into()));
    }
    let login: Login = serde_json::from_slice(&body?).map_err(|e| ApiError::Invalid(format!("not a sign-in: {e}")))?;
    let tried: [u8; 32] = Sha256::digest(login.key.trim().as_bytes()).into();
    console.sign_ins_by_key.check(tried, now).map_err(limited)?;
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
    let (value, session) = console.sessions.issue(&principal, &hash, Timestamp::now().as_second());
    let set_cookie = set_cookie(console, &value, console.sessions.lifetime())?;
    info!(role = principal.role.as_str(), actor = %principal.id, "console sign-in");
    Ok(([set_cookie], axum::Json(session_info(console, &session, &value))).into_response())
}

/// `GET /console/session`: who is signed in, and the CSRF token for actions.
pub(super) async fn whoami(State(state): State<ConsoleState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let console = state.console()?;
    let value = cookie(&headers).ok_or_else(|| ApiError::Unauthorized("not signed in".into()))?;
    let session = state
        .auth
        .session(value)
        .ok_or_else(|| ApiError::Unauthorized("the console session has ended; sign in again".into()))?;
    Ok(axum::Json(session_info(console, &session, value)).into_response())
}

/// `DELETE /console/session`: signs out. A current session (with its CSRF token, so no other
/// page can sign a dispatcher out) is ended on the server, with every other session of its key
/// holder; the cookie is cleared either way.
pub(super) async fn logout(State(state): State<ConsoleState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let console = state.console()?;
    if let Some(value) = cookie(&headers)
        && let Some(session) = state.auth.session(value)
    {
        check_csrf(&console.sessions, value, &headers)?;
        console.sign_out(&session).await?;
        let principal = &session.principal;
        info!(role = principal.role.as_str(), actor = %principal.id, "console sign-out");
    }
    Ok((StatusCode::NO_CONTENT, [set_cookie(console, "", 0)?]).into_response())
}
