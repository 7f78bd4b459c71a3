//! The page and what it loads once: its files, the region, the communities' boundaries and the
//! volunteers' positions.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use linkbus_bus::sync::read;
use serde_json::json;

use super::assets::{ASSETS, INDEX};
use super::state::{Console, ConsoleState, require_console};
use crate::auth::Principal;
use crate::error::ApiError;

/// Headers every file of the page carries.
fn protect(console: &Console, response: &mut Response) {
    let headers = response.headers_mut();
    if let Ok(csp) = HeaderValue::from_str(&console.csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
}

/// `GET /`.
pub(super) async fn index(State(state): State<ConsoleState>) -> Result<Response, ApiError> {
    let console = state.console()?;
    let mut response = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX).into_response();
    protect(console, &mut response);
    Ok(response)
}

/// `GET /console/assets/{file}`.
pub(super) async fn asset(State(state): State<ConsoleState>, Path(path): Path<String>) -> Result<Response, ApiError> {
    let console = state.console()?;
    let asset =
        ASSETS.iter().find(|a| a.path == path).ok_or_else(|| ApiError::NotFound(format!("no console file {path}")))?;
    let mut response = ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response();
    protect(console, &mut response);
    Ok(response)
}

fn json_response(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `GET /console/region`: name, time zone, departments, categories, bounds, base map.
pub(super) async fn region(State(state): State<ConsoleState>, principal: Principal) -> Result<Response, ApiError> {
    require_console(&principal)?;
    Ok(json_response(state.console()?.region.clone()))
}

/// `GET /console/region/communities`: GeoJSON.
pub(super) async fn communities(State(state): State<ConsoleState>, principal: Principal) -> Result<Response, ApiError> {
    require_console(&principal)?;
    Ok(json_response(state.console()?.communities.clone()))
}

/// `GET /console/volunteers`: every volunteer's position, availability and skills.
pub(super) async fn volunteers(State(state): State<ConsoleState>, principal: Principal) -> Result<Response, ApiError> {
    require_console(&principal)?;
    let console = state.console()?;
    let volunteers = read(&console.router.volunteers).positions();
    Ok(axum::Json(json!({ "volunteers": volunteers })).into_response())
}
