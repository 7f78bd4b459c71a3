//! The page and what it loads once: its files, the region, the communities' boundaries and the
//! volunteers' positions.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use axum::response::Response;
use linkbus_bus::sync::read;
use serde_json::json;

use super::assets;
use super::delivery::compress_now;
use super::state::{Console, ConsoleState, require_console};
use crate::auth::Principal;
use crate::error::ApiError;

/// How long a browser keeps a file named under this build's version folder: a year, never
/// revalidated (another build names its files in another folder).
const FOR_GOOD: &str = "public, max-age=31536000, immutable";
/// What a browser revalidates each time (the page; a file asked for outside the version folder).
const REVALIDATE: &str = "no-cache";
/// The region's data: revalidated each time, kept by this browser only.
const PRIVATE_REVALIDATE: &str = "private, no-cache";

/// Headers every file of the page carries (the caching ones are set by `delivery`).
fn protect(console: &Console, response: &mut Response) {
    protect_with(&console.csp, response);
}

/// The security headers of a page and its files: the Content Security Policy `csp`, no MIME
/// sniffing, no `Referer` (a tracking page's link carries its token), no framing.
pub(crate) fn protect_with(csp: &str, response: &mut Response) {
    let headers = response.headers_mut();
    if let Ok(csp) = HeaderValue::from_str(csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// `GET /`: the page, naming its files in this build's version folder.
pub(super) async fn index(State(state): State<ConsoleState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let console = state.console()?;
    let mut response = assets::index().respond(&headers, "text/html; charset=utf-8", REVALIDATE).await;
    protect(console, &mut response);
    Ok(response)
}

/// `GET /console/assets/{file}` and `GET /console/assets/{version}/{file}`.
pub(super) async fn asset(
    State(state): State<ConsoleState>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let console = state.console()?;
    let (asset, encoded, versioned) =
        assets::find(&path).ok_or_else(|| ApiError::NotFound(format!("no console file {path}")))?;
    let caching = if versioned { FOR_GOOD } else { REVALIDATE };
    let mut response = encoded.respond(&headers, asset.content_type, caching).await;
    protect(console, &mut response);
    Ok(response)
}

const JSON: &str = "application/json";

/// `GET /console/region` (name, time zone, departments, categories, bounds, base map) and
/// `GET /console/region/communities` (the boundaries, GeoJSON): made once, revalidated by `ETag`.
pub(super) async fn region(
    State(state): State<ConsoleState>,
    principal: Principal,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_console(&principal)?;
    let console = state.console()?;
    let data = if uri.path().ends_with("/communities") { &console.communities } else { &console.region };
    Ok(data.respond(&headers, JSON, PRIVATE_REVALIDATE).await)
}

/// `GET /console/volunteers`: every volunteer's position, availability and skills (they move,
/// so compressed per request).
pub(super) async fn volunteers(
    State(state): State<ConsoleState>,
    principal: Principal,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_console(&principal)?;
    let console = state.console()?;
    let body = {
        let volunteers = read(&console.router.volunteers).positions();
        json!({ "volunteers": volunteers }).to_string()
    };
    Ok(compress_now(&headers, JSON, body.into()).await)
}
