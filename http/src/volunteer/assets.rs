//! The app's files, embedded at build time from `http/volunteer/` (Leaflet from the console's
//! `vendor/`), served compressed and revalidated by `ETag` (`crate::console::delivery`), with
//! the console's headers: everything from this origin only.

use std::sync::{Arc, LazyLock};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::AppState;
use crate::console::delivery::Compressed;
use crate::error::ApiError;

/// What a browser revalidates each time: small files, so an update reaches every phone.
const REVALIDATE: &str = "no-cache";
/// Everything from this origin only; geolocation for this page, nothing else.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; worker-src 'self'; manifest-src 'self'; frame-ancestors 'none'; \
                   base-uri 'none'; form-action 'self'";

/// One embedded file: its path under `/volunteer/`, content type and bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $file:literal, $content_type:expr) => {
        Asset { path: $path, content_type: $content_type, body: include_bytes!(concat!("../../", $file)) }
    };
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

const ASSETS: &[Asset] = &[
    asset!("", "volunteer/index.html", "text/html; charset=utf-8"),
    asset!("app.js", "volunteer/app.js", JS),
    asset!("i18n.js", "volunteer/i18n.js", JS),
    asset!("map.js", "volunteer/map.js", JS),
    asset!("app.css", "volunteer/app.css", CSS),
    asset!("sw.js", "volunteer/sw.js", JS),
    asset!("manifest.webmanifest", "volunteer/manifest.webmanifest", "application/manifest+json"),
    asset!("icon.svg", "volunteer/icon.svg", "image/svg+xml"),
    asset!("vendor/leaflet/leaflet.js", "console/vendor/leaflet/leaflet.js", JS),
    asset!("vendor/leaflet/leaflet.css", "console/vendor/leaflet/leaflet.css", CSS),
];

/// Each of [`ASSETS`], ready to send (in the same order).
fn encoded() -> &'static [Arc<Compressed>] {
    static ENCODED: LazyLock<Vec<Arc<Compressed>>> =
        LazyLock::new(|| ASSETS.iter().map(|a| Compressed::new(Bytes::from_static(a.body), true)).collect());
    &ENCODED
}

async fn serve(state: &AppState, path: &str, headers: &HeaderMap) -> Result<Response, ApiError> {
    state.app()?;
    let index = ASSETS
        .iter()
        .position(|a| a.path == path)
        .ok_or_else(|| ApiError::NotFound(format!("no volunteer app file {path}")))?;
    let mut response = encoded()[index].respond(headers, ASSETS[index].content_type, REVALIDATE).await;
    let out = response.headers_mut();
    out.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    out.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    out.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    out.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    Ok(response)
}

/// `GET /volunteer`: to `/volunteer/` (the app's scope).
pub(super) async fn redirect() -> Response {
    Redirect::permanent("/volunteer/").into_response()
}

/// `GET /volunteer/`: the page.
pub(super) async fn page(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    serve(&state, "", &headers).await
}

/// `GET /volunteer/{file}`.
pub(super) async fn file(
    State(state): State<AppState>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve(&state, &path, &headers).await
}

#[cfg(test)]
mod tests {
    use super::ASSETS;

    #[test]
    fn every_file_of_the_app_is_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("volunteer");
        for entry in std::fs::read_dir(&dir).expect("http/volunteer reads") {
            let name = entry.expect("an entry").file_name().to_string_lossy().into_owned();
            let path = if name == "index.html" { "" } else { name.as_str() };
            assert!(ASSETS.iter().any(|a| a.path == path), "{name} is not embedded");
        }
    }
}
