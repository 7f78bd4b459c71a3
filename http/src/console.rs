//! The dispatcher console: a web page served by `linkbus up` at `/` of the API's address, its
//! assets embedded in the binary (`ops/console/`, Leaflet vendored under `ops/console/vendor/`).
//! `docs/console.md` describes what it shows and how it signs in.
//!
//! | endpoint | who | what |
//! |---|---|---|
//! | `GET /`, `GET /console/assets/{file}` | anyone | the page and its scripts, styles and Leaflet |
//! | `POST /console/session` | a dispatcher or operator key in the body | signs in: sets the session cookie, answers [`SessionInfo`] |
//! | `GET /console/session` | session | who is signed in, and the CSRF token for actions |
//! | `DELETE /console/session` | anyone | signs out (clears the cookie) |
//! | `GET /console/region` | session or key | the region: name, time zone, departments, categories, bounds, base map |
//! | `GET /console/region/communities` | session or key | the communities' boundaries, GeoJSON |
//! | `GET /console/volunteers` | session or key | every volunteer's position, availability and skills |
//! | `GET /console/events` | session or key | Server-Sent Events: `reset` (every live case), then `case` per change |
//!
//! Cases themselves are read and acted on through the HTTP API (`/api/cases/{id}`,
//! `/api/cases/{id}/actions`), which takes the session cookie in place of a key
//! ([`session_principal`]).
//!
//! **Sessions.** EventSource cannot send an `Authorization` header, so the page exchanges the
//! dispatcher's key for a cookie: `linkbus_session`, `HttpOnly` (scripts cannot read it),
//! `SameSite=Strict` (no other site's page sends it), `Path=/`, `Max-Age` of
//! `[console].session_hours`, `Secure` with `[console].secure_cookie`. Its value names the key's
//! role and id and the expiry, signed with HMAC-SHA-256 under a secret kept in the
//! `linkbus_console` KV bucket (made once, shared by every replica, kept across restarts, so a
//! console survives a restart of the server). The signature also covers the key's hash: removing
//! or rotating the key in the configuration ends its sessions. A request that changes anything
//! (`POST`) with the cookie must also carry `X-Linkbus-Csrf`, a token derived from the cookie that
//! only a page of this origin can read (`GET /console/session`), so no other page can act with a
//! dispatcher's cookie even in a browser without `SameSite`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::kv;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use hmac::{Hmac, Mac};
use jiff::Timestamp;
use linkbus_bus::sync::read;
use linkbus_cases::book::{CaseBook, CaseFilter};
use linkbus_geo_data::Region;
use linkbus_routers::service::RouterState;
use linkbus_wire::{CaseRecord, CaseState, SourceSystem};
use prometheus::{IntCounterVec, IntGauge, Opts};
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::api::{ApiError, ApiState, Key, Principal};
use crate::config::{ApiRole, ConsoleConfig};

/// The KV bucket holding the console's session secret.
pub const BUCKET_CONSOLE: &str = "linkbus_console";
/// The key of the session secret in [`BUCKET_CONSOLE`].
const SECRET_KEY: &str = "session-secret";
/// The session cookie's name.
const COOKIE: &str = "linkbus_session";
/// The header carrying the CSRF token on requests that change something.
const CSRF_HEADER: &str = "x-linkbus-csrf";
/// Closed and cancelled cases stay on the board this long after their last change.
const RECENT_DONE: jiff::SignedDuration = jiff::SignedDuration::from_secs(3600);
/// The most cases a `reset` sends (the most recently changed first).
const MAX_LIVE: usize = 5000;
/// Who may sign in to the console: it shows every case.
const CONSOLE_ROLES: &[ApiRole] = &[ApiRole::Dispatcher, ApiRole::Operator];
/// Content Security Policy of the page without a base map: everything from this origin only.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

type HmacSha256 = Hmac<Sha256>;

/// One embedded file: its path under `/console/assets/`, content type and bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// The console's files, embedded at build time.
const ASSETS: &[Asset] = &[
    Asset { path: "app.js", content_type: "text/javascript; charset=utf-8", body: include_bytes!("../console/app.js") },
    Asset { path: "api.js", content_type: "text/javascript; charset=utf-8", body: include_bytes!("../console/api.js") },
    Asset {
        path: "board.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../console/board.js"),
    },
    Asset {
        path: "cases.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../console/cases.js"),
    },
    Asset {
        path: "detail.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../console/detail.js"),
    },
    Asset { path: "dom.js", content_type: "text/javascript; charset=utf-8", body: include_bytes!("../console/dom.js") },
    Asset {
        path: "events.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../console/events.js"),
    },
    Asset {
        path: "i18n.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../console/i18n.js"),
    },
    Asset { path: "map.js", content_type: "text/javascript; charset=utf-8", body: include_bytes!("../console/map.js") },
    Asset {
        path: "state.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../console/state.js"),
    },
    Asset { path: "app.css", content_type: "text/css; charset=utf-8", body: include_bytes!("../console/app.css") },
    Asset {
        path: "vendor/leaflet/leaflet.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../console/vendor/leaflet/leaflet.js"),
    },
    Asset {
        path: "vendor/leaflet/leaflet.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../console/vendor/leaflet/leaflet.css"),
    },
    Asset {
        path: "vendor/leaflet/LICENSE",
        content_type: "text/plain; charset=utf-8",
        body: include_bytes!("../console/vendor/leaflet/LICENSE"),
    },
    Asset {
        path: "vendor/leaflet/images/layers.png",
        content_type: "image/png",
        body: include_bytes!("../console/vendor/leaflet/images/layers.png"),
    },
    Asset {
        path: "vendor/leaflet/images/layers-2x.png",
        content_type: "image/png",
        body: include_bytes!("../console/vendor/leaflet/images/layers-2x.png"),
    },
];
/// The page.
const INDEX: &str = include_str!("../console/index.html");

/// What the console serves besides the API: the region as the map draws it, the live cases, the
/// volunteers, and the session secret.
pub struct Console {
    metrics: ConsoleMetrics,
    book: Arc<CaseBook>,
    router: Arc<RouterState>,
    region: Bytes,
    communities: Bytes,
    sessions: Sessions,
    config: ConsoleConfig,
    csp: String,
    stop: CancellationToken,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Console {
    /// The console for a running service: reads (or makes, the first time) the session secret in
    /// `store`, the [`BUCKET_CONSOLE`] bucket, and registers its metrics in `registry`. Its event
    /// streams end when `stop` is cancelled.
    pub async fn start(
        registry: &prometheus::Registry,
        store: &kv::Store,
        book: Arc<CaseBook>,
        router: Arc<RouterState>,
        region: &Region,
        console: &ConsoleConfig,
        stop: CancellationToken,
    ) -> anyhow::Result<Self> {
        let secret = session_secret(store).await?;
        let csp = match tile_origin(&console.tile_url) {
            Some(origin) => CSP.replace("img-src 'self' data:", &format!("img-src 'self' data: {origin}")),
            None => CSP.to_owned(),
        };
        Ok(Self {
            metrics: ConsoleMetrics::new(registry).context("registering the console's metrics")?,
            book,
            router,
            region: Bytes::from(serde_json::to_vec(&region_info(region, console))?),
            communities: Bytes::from(serde_json::to_vec(&communities_geojson(region))?),
            sessions: Sessions { secret },
            config: console.clone(),
            csp,
            stop,
        })
    }
}

/// Signs session cookies and their CSRF tokens with the console's secret, and checks them.
///
/// A cookie's value is `role.hex(id).expiry.mac`: `mac` is the HMAC-SHA-256 of the role, id,
/// expiry (unix seconds) and the key's hash, so it is valid only while a key of that role and id
/// with that hash is configured. The CSRF token is the HMAC of the cookie's value.
struct Sessions {
    secret: [u8; 32],
}

impl Sessions {
    fn mac(&self) -> HmacSha256 {
        // HMAC takes a key of any length: this cannot fail.
        <HmacSha256 as Mac>::new_from_slice(&self.secret).unwrap_or_else(|_| unreachable!("HMAC takes any key"))
    }

    fn session_mac(&self, role: &str, id_hex: &str, expires: i64, key_hash: &[u8; 32]) -> HmacSha256 {
        let mut mac = self.mac();
        mac.update(format!("linkbus-console-session|{role}|{id_hex}|{expires}|{}", hex::encode(key_hash)).as_bytes());
        mac
    }

    fn csrf_mac(&self, value: &str) -> HmacSha256 {
        let mut mac = self.mac();
        mac.update(b"linkbus-console-csrf|");
        mac.update(value.as_bytes());
        mac
    }

    /// The cookie value of a session for `principal` (signed in with the key whose hash is
    /// `key_hash`) until `expires`, unix seconds.
    fn issue(&self, principal: &Principal, key_hash: &[u8; 32], expires: i64) -> String {
        let role = role_name(principal.role);
        let id_hex = hex::encode(principal.id.as_bytes());
        let mac = hex::encode(self.session_mac(role, &id_hex, expires, key_hash).finalize().into_bytes());
        format!("{role}.{id_hex}.{expires}.{mac}")
    }

    /// The principal a cookie value stands for, if it is genuine, unexpired at `now` (unix
    /// seconds), of a role that may use the console, and its key is among `keys`; and its expiry.
    fn verify(&self, value: &str, keys: &[Key], now: i64) -> Option<(Principal, i64)> {
        let mut parts = value.split('.');
        let (role, id_hex, expires, mac) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let expires: i64 = expires.parse().ok()?;
        if expires <= now {
            return None;
        }
        let mac = hex::decode(mac).ok()?;
        let id = String::from_utf8(hex::decode(id_hex).ok()?).ok()?;
        keys.iter()
            .filter(|k| role_name(k.role) == role && k.id == id && CONSOLE_ROLES.contains(&k.role))
            .find(|k| self.session_mac(role, id_hex, expires, &k.hash).verify_slice(&mac).is_ok())
            .map(|k| (Principal { role: k.role, id: k.id.clone(), source: None }, expires))
    }

    /// The CSRF token of a cookie value, hex.
    fn csrf(&self, value: &str) -> String {
        hex::encode(self.csrf_mac(value).finalize().into_bytes())
    }

    /// True when `token` (hex) is the CSRF token of the cookie value (compared in constant time).
    fn csrf_matches(&self, value: &str, token: &str) -> bool {
        hex::decode(token).is_ok_and(|token| self.csrf_mac(value).verify_slice(&token).is_ok())
    }
}

/// `linkbus_console_*`: open event streams, sign-ins.
#[derive(Debug, Clone)]
struct ConsoleMetrics {
    streams: IntGauge,
    sign_ins: IntCounterVec,
}

impl ConsoleMetrics {
    fn new(registry: &prometheus::Registry) -> prometheus::Result<Self> {
        let streams =
            IntGauge::new("linkbus_console_event_streams", "Consoles following live cases (open event streams).")?;
        let sign_ins = IntCounterVec::new(
            Opts::new("linkbus_console_sign_ins_total", "Console sign-ins, by outcome (ok, refused)."),
            &["outcome"],
        )?;
        for outcome in ["ok", "refused"] {
            sign_ins.with_label_values(&[outcome]);
        }
        registry.register(Box::new(streams.clone()))?;
        registry.register(Box::new(sign_ins.clone()))?;
        Ok(Self { streams, sign_ins })
    }
}

/// Counts an open event stream while it lives.
struct OpenStream(IntGauge);

impl OpenStream {
    fn new(gauge: &IntGauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The session secret in `store`, made now if there is none yet (the first replica to write it
/// wins; the others read it).
async fn session_secret(store: &kv::Store) -> anyhow::Result<[u8; 32]> {
    let mut fresh = [0u8; 32];
    rand::rng().fill_bytes(&mut fresh);
    match store.create(SECRET_KEY, Bytes::copy_from_slice(&fresh)).await {
        Ok(_) => return Ok(fresh),
        Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).context("storing the console's session secret"),
    }
    let stored = store
        .get(SECRET_KEY)
        .await
        .context("reading the console's session secret")?
        .context("the console's session secret vanished")?;
    <[u8; 32]>::try_from(stored.as_ref()).map_err(|_| {
        anyhow::anyhow!(
            "the console's session secret in bucket {BUCKET_CONSOLE} is not 32 bytes; delete it to make a new one"
        )
    })
}

/// `scheme://host[:port]` of a tile URL template, for the Content Security Policy.
fn tile_origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split('/').next().filter(|h| !h.is_empty())?;
    let ok = |s: &str| s.chars().all(|c| c.is_ascii_alphanumeric() || "-.:[]{}".contains(c));
    if !(matches!(scheme, "http" | "https") && ok(host)) {
        return None;
    }
    // A placeholder such as `{s}` (sub-domains) may stand for anything: `*` in the policy.
    let mut origin = format!("{scheme}://");
    let mut in_placeholder = false;
    for c in host.chars() {
        match c {
            '{' => in_placeholder = true,
            '}' if in_placeholder => {
                in_placeholder = false;
                origin.push('*');
            }
            _ if in_placeholder => {}
            c => origin.push(c),
        }
    }
    Some(origin)
}

/// `GET /console/region`: what the page needs to know of the region.
fn region_info(region: &Region, config: &ConsoleConfig) -> Value {
    use geo::BoundingRect as _;
    let bounds = region
        .communities
        .iter()
        .filter_map(|c| c.boundary.bounding_rect())
        .reduce(|a, b| {
            geo::Rect::new(
                geo::coord! { x: a.min().x.min(b.min().x), y: a.min().y.min(b.min().y) },
                geo::coord! { x: a.max().x.max(b.max().x), y: a.max().y.max(b.max().y) },
            )
        })
        .map(|r| json!([[r.min().y, r.min().x], [r.max().y, r.max().x]]));
    json!({
        "id": region.manifest.id,
        "name": region.manifest.name,
        "version": region.manifest.version,
        "time_zone": region.manifest.time_zone,
        "bounds": bounds,
        "departments": region.departments.departments.iter().map(|d| json!({ "id": d.id, "name": d.name })).collect::<Vec<_>>(),
        "categories": region.categories.iter().map(|c| json!({ "id": c.id, "name": c.name })).collect::<Vec<_>>(),
        "communities": region.communities.iter().map(|c| json!({ "id": c.id, "name": c.name })).collect::<Vec<_>>(),
        "tile_url": config.tile_url,
        "tile_attribution": config.tile_attribution,
    })
}

/// `GET /console/region/communities`: every community's boundary, a GeoJSON FeatureCollection
/// whose features carry `id`, `name` and `district`.
fn communities_geojson(region: &Region) -> Value {
    let features: Vec<Value> = region
        .communities
        .iter()
        .map(|c| {
            let geometry = geojson::Geometry::new(geojson::GeometryValue::from(&c.boundary));
            json!({
                "type": "Feature",
                "id": c.id,
                "properties": { "id": c.id, "name": c.name, "district": c.district.name },
                "geometry": geometry,
            })
        })
        .collect();
    json!({ "type": "FeatureCollection", "features": features })
}

/// A case as the board shows it (the detail is read from `/api/cases/{id}` when opened).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseSummary {
    /// Case id.
    pub id: String,
    /// Where it is in its life.
    pub state: CaseState,
    /// 1 (life-threatening) to 4 (low).
    pub priority: u8,
    /// Category.
    pub category: String,
    /// Longitude (WGS-84).
    pub lon: f64,
    /// Latitude (WGS-84).
    pub lat: f64,
    /// Street address, if reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The community's id, if matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub community: Option<String>,
    /// The departments responsible now.
    pub departments: Vec<String>,
    /// The department that accepted it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted_by: Option<String>,
    /// The kinds of system its reports came from.
    pub systems: Vec<SourceSystem>,
    /// Each report's id in its source system (more than one: merged duplicates).
    pub source_ids: Vec<String>,
    /// An escalation waits for a dispatcher's acknowledgement.
    pub escalation_open: bool,
    /// The deadline that runs now: accepting while routed, resolving while accepted or in
    /// progress.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Timestamp>,
    /// When linkbus received it.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// Set when this report was merged into another case: the board drops it (the primary lists
    /// its report).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<String>,
}

impl CaseSummary {
    /// The board's view of a record.
    pub fn of(r: &CaseRecord) -> Self {
        let mut systems: Vec<SourceSystem> = r.reports.iter().map(|rep| rep.system).collect();
        if systems.is_empty() {
            systems.push(r.case.system);
        }
        systems.sort_by_key(|s| s.as_str());
        systems.dedup();
        let mut source_ids: Vec<String> = r.reports.iter().map(|rep| rep.source_id.clone()).collect();
        if source_ids.is_empty() {
            source_ids.push(r.case.source_id.clone());
        }
        let deadline = match r.state {
            CaseState::Routed | CaseState::Reported => r.accept_by,
            CaseState::Accepted | CaseState::InProgress => r.resolve_by,
            _ => None,
        };
        Self {
            id: r.case_id.clone(),
            state: r.state,
            priority: r.priority,
            category: r.case.category.clone(),
            lon: r.case.location.lon,
            lat: r.case.location.lat,
            address: r.case.address.clone(),
            community: r.community.as_ref().map(|c| c.id.clone()),
            departments: r.departments.clone(),
            accepted_by: r.accepted_by.clone(),
            systems,
            source_ids,
            escalation_open: r.escalation_open,
            deadline,
            created_at: r.created_at,
            updated_at: r.updated_at,
            merged_into: r.merged_into.clone(),
        }
    }
}

/// The cases a console shows, of `records`: every open one (merged reports are shown by their
/// primary) and those closed or cancelled within the last hour; at most `max`, most recently
/// changed first.
pub fn live_cases(records: Vec<CaseRecord>, now: Timestamp, max: usize) -> Vec<CaseSummary> {
    let recent = now - RECENT_DONE;
    let mut live: Vec<CaseRecord> = records
        .into_iter()
        .filter(|r| r.merged_into.is_none() && (r.state.is_open() || r.updated_at >= recent))
        .collect();
    live.sort_by_key(|r| std::cmp::Reverse(r.updated_at));
    live.truncate(max);
    live.iter().map(CaseSummary::of).collect()
}

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

/// The console's routes (answering 404 where the console is off).
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/", get(index))
        .route("/console/assets/{*path}", get(asset))
        .route("/console/session", get(whoami).post(login).delete(logout))
        .route("/console/region", get(region))
        .route("/console/region/communities", get(communities))
        .route("/console/volunteers", get(volunteers))
        .route("/console/events", get(events))
}

fn console(state: &ApiState) -> Result<&Console, ApiError> {
    state.console.as_deref().ok_or_else(|| ApiError::NotFound("the console is off here ([console].enabled)".into()))
}

/// Headers every console response carries.
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

async fn index(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let console = console(&state)?;
    let mut response = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX).into_response();
    protect(console, &mut response);
    Ok(response)
}

async fn asset(State(state): State<ApiState>, Path(path): Path<String>) -> Result<Response, ApiError> {
    let console = console(&state)?;
    let asset =
        ASSETS.iter().find(|a| a.path == path).ok_or_else(|| ApiError::NotFound(format!("no console file {path}")))?;
    let mut response = ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response();
    protect(console, &mut response);
    Ok(response)
}

fn json_response(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// 403 unless the principal may watch every case.
fn require_console(principal: &Principal) -> Result<(), ApiError> {
    if CONSOLE_ROLES.contains(&principal.role) {
        Ok(())
    } else {
        Err(ApiError::Forbidden("only dispatcher and operator keys may use the console".into()))
    }
}

async fn region(State(state): State<ApiState>, principal: Principal) -> Result<Response, ApiError> {
    require_console(&principal)?;
    Ok(json_response(console(&state)?.region.clone()))
}

async fn communities(State(state): State<ApiState>, principal: Principal) -> Result<Response, ApiError> {
    require_console(&principal)?;
    Ok(json_response(console(&state)?.communities.clone()))
}

async fn volunteers(State(state): State<ApiState>, principal: Principal) -> Result<Response, ApiError> {
    require_console(&principal)?;
    let console = console(&state)?;
    let volunteers = read(&console.router.volunteers).positions();
    Ok(axum::Json(json!({ "volunteers": volunteers })).into_response())
}

/// `GET /console/events`: a `reset` with every live case, then a `case` per change; a `reset`
/// again if this stream fell behind the book's changes. Ends when `linkbus up` stops, or the
/// session it was opened with ends.
async fn events(State(state): State<ApiState>, headers: HeaderMap, principal: Principal) -> Result<Response, ApiError> {
    require_console(&principal)?;
    let console = state.console.clone().ok_or_else(|| ApiError::NotFound("the console is off here".into()))?;
    info!(role = ?principal.role, actor = %principal.id, "console watching");
    // A stream opened with a session ends with it: the page then reconnects, is refused, and asks
    // to sign in again.
    let session_left = match headers.contains_key(header::AUTHORIZATION) {
        true => None,
        false => cookie(&headers).and_then(|value| verify(&state, &console, value)).map(|(_, expires)| {
            Duration::from_secs(u64::try_from(expires - Timestamp::now().as_second()).unwrap_or_default())
        }),
    };
    let session_ended = async move {
        match session_left {
            Some(left) => tokio::time::sleep(left).await,
            None => std::future::pending().await,
        }
    };
    // Subscribe before reading the book, so no change falls between the two.
    let changes = console.book.subscribe();
    let reset = reset_event(&console.book);
    let open = (changes, console.book.clone(), OpenStream::new(&console.metrics.streams));
    let live = futures::stream::unfold(open, |(mut changes, book, open)| async move {
        let event = match changes.recv().await {
            Ok(record) => case_event(&record),
            Err(RecvError::Lagged(_)) => reset_event(&book),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok::<_, Infallible>(event), (changes, book, open)))
    });
    let stream = futures::stream::once(async move { Ok(reset.retry(Duration::from_secs(1))) })
        .chain(live)
        .take_until(console.stop.clone().cancelled_owned())
        .take_until(session_ended);
    let sse = Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)));
    // Proxies that buffer responses (nginx) would hold the events back.
    Ok(([(HeaderName::from_static("x-accel-buffering"), "no")], sse).into_response())
}

fn reset_event(book: &CaseBook) -> Event {
    let now = Timestamp::now();
    let body = json!({ "cases": live_cases(book.list(&CaseFilter::default()), now, MAX_LIVE), "now": now });
    Event::default().event("reset").data(body.to_string())
}

fn case_event(record: &CaseRecord) -> Event {
    let body = serde_json::to_string(&CaseSummary::of(record)).unwrap_or_else(|_| "{}".into());
    Event::default().event("case").data(body)
}

// Sessions.

/// The session cookie's value in `headers`, if any.
fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// The principal of the session cookie `value`, and its expiry: `None` unless it is genuine,
/// unexpired and its key still configured.
fn verify(state: &ApiState, console: &Console, value: &str) -> Option<(Principal, i64)> {
    console.sessions.verify(value, &state.keys, Timestamp::now().as_second())
}

fn role_name(role: ApiRole) -> &'static str {
    match role {
        ApiRole::Dispatcher => "dispatcher",
        ApiRole::Department => "department",
        ApiRole::Operator => "operator",
        ApiRole::Source => "source",
    }
}

/// The principal of a request without an `Authorization` header, from its session cookie:
/// `Ok(None)` without a cookie (or without a console); 401 for a cookie that is forged, expired or
/// whose key is gone; 403 for a request that changes something without the CSRF token.
pub fn session_principal(parts: &Parts, state: &ApiState) -> Result<Option<Principal>, ApiError> {
    let (Some(console), Some(value)) = (state.console.as_deref(), cookie(&parts.headers)) else { return Ok(None) };
    let (principal, _) = verify(state, console, value)
        .ok_or_else(|| ApiError::Unauthorized("the console session has ended; sign in again".into()))?;
    if !matches!(parts.method, Method::GET | Method::HEAD) {
        let token = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::Forbidden("a console request must carry X-Linkbus-Csrf".into()))?;
        if !console.sessions.csrf_matches(value, token) {
            return Err(ApiError::Forbidden("the X-Linkbus-Csrf token does not match the session".into()));
        }
    }
    Ok(Some(principal))
}

fn session_info(console: &Console, principal: &Principal, value: &str, expires: i64) -> SessionInfo {
    SessionInfo {
        role: role_name(principal.role).to_owned(),
        id: principal.id.clone(),
        csrf: console.sessions.csrf(value),
        expires_at: Timestamp::from_second(expires).unwrap_or(Timestamp::MAX),
    }
}

async fn login(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let console = console(&state)?;
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
    let (principal, hash) = state.principal_with_hash(login.key.trim()).ok_or_else(|| {
        info!("console sign-in refused: unknown key");
        refused.inc();
        ApiError::Unauthorized("unknown API key".into())
    })?;
    if !CONSOLE_ROLES.contains(&principal.role) {
        info!(role = role_name(principal.role), actor = %principal.id, "console sign-in refused for the key's role");
        refused.inc();
        return Err(ApiError::Forbidden("only dispatcher and operator keys may use the console".into()));
    }
    console.metrics.sign_ins.with_label_values(&["ok"]).inc();
    let max_age = i64::from(console.config.session_hours.max(1)) * 3600;
    let expires = Timestamp::now().as_second() + max_age;
    let role = role_name(principal.role);
    let value = console.sessions.issue(&principal, &hash, expires);
    let secure = if console.config.secure_cookie { "; Secure" } else { "" };
    let set_cookie = format!("{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}");
    info!(role, actor = %principal.id, "console sign-in");
    let mut response = axum::Json(session_info(console, &principal, &value, expires)).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, HeaderValue::from_str(&set_cookie).map_err(|e| ApiError::Invalid(e.to_string()))?);
    Ok(response)
}

async fn whoami(State(state): State<ApiState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let console = console(&state)?;
    let value = cookie(&headers).ok_or_else(|| ApiError::Unauthorized("not signed in".into()))?;
    let (principal, expires) = verify(&state, console, value)
        .ok_or_else(|| ApiError::Unauthorized("the console session has ended; sign in again".into()))?;
    Ok(axum::Json(session_info(console, &principal, value, expires)).into_response())
}

async fn logout(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let console = console(&state)?;
    let secure = if console.config.secure_cookie { "; Secure" } else { "" };
    let clear = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{secure}");
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, HeaderValue::from_str(&clear).map_err(|e| ApiError::Invalid(e.to_string()))?);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_origins_are_checked() {
        assert_eq!(
            tile_origin("https://tiles.example.org/{z}/{x}/{y}.png").as_deref(),
            Some("https://tiles.example.org")
        );
        assert_eq!(tile_origin("http://10.1.2.3:8080/t/{z}/{x}/{y}.png").as_deref(), Some("http://10.1.2.3:8080"));
        assert_eq!(
            tile_origin("https://{s}.tile.example.org/{z}/{x}/{y}.png").as_deref(),
            Some("https://*.tile.example.org")
        );
        assert_eq!(tile_origin(""), None);
        assert_eq!(tile_origin("javascript:alert(1)"), None);
        assert_eq!(tile_origin("https://evil.org; script-src *"), None);
    }

    /// The committed example record (`docs/examples/case-record.json`): accepted, one report.
    fn example() -> CaseRecord {
        serde_json::from_str(include_str!("../../docs/examples/case-record.json")).expect("the example parses")
    }

    #[test]
    fn a_summary_runs_the_deadline_of_its_state_and_lists_every_report() {
        let mut r = example();
        let summary = CaseSummary::of(&r);
        assert_eq!((summary.id.as_str(), summary.state, summary.priority), ("sf311-4292128", CaseState::Accepted, 3));
        assert_eq!(summary.deadline, r.resolve_by);
        assert_eq!(summary.community.as_deref(), Some("mission"));
        assert_eq!(summary.source_ids, ["4292128"]);
        // A merged duplicate from another kind of system: both reports, both systems, once each.
        let mut other = r.reports[0].clone();
        other.report_id = "cad-77".into();
        other.source_id = "77".into();
        other.system = SourceSystem::Emergency;
        r.reports.push(other.clone());
        r.reports.push(other);
        r.state = CaseState::Routed;
        r.accept_by = Some(r.created_at + jiff::SignedDuration::from_secs(600));
        let summary = CaseSummary::of(&r);
        assert_eq!(summary.deadline, r.accept_by);
        assert_eq!(summary.source_ids, ["4292128", "77", "77"]);
        assert_eq!(summary.systems, [SourceSystem::Emergency, SourceSystem::PublicService]);
        r.state = CaseState::Closed;
        assert_eq!(CaseSummary::of(&r).deadline, None);
    }

    #[test]
    fn the_live_cases_are_open_or_recently_done_newest_first_and_capped() {
        let base = example();
        let now = base.updated_at + jiff::SignedDuration::from_secs(7200);
        let case = |id: &str, state: CaseState, minutes_ago: i64, merged: bool| {
            let mut r = base.clone();
            r.case_id = id.into();
            r.state = state;
            r.updated_at = now - jiff::SignedDuration::from_secs(minutes_ago * 60);
            r.merged_into = merged.then(|| "primary".into());
            r
        };
        let records = vec![
            case("open-old", CaseState::Routed, 100, false),
            case("open-new", CaseState::InProgress, 1, false),
            case("closed-recently", CaseState::Closed, 30, false),
            case("closed-long-ago", CaseState::Closed, 90, false),
            case("cancelled-recently", CaseState::Cancelled, 10, false),
            case("merged", CaseState::Cancelled, 5, true),
        ];
        let ids = |max| live_cases(records.clone(), now, max).into_iter().map(|s| s.id).collect::<Vec<_>>();
        assert_eq!(ids(10), ["open-new", "cancelled-recently", "closed-recently", "open-old"]);
        assert_eq!(ids(2), ["open-new", "cancelled-recently"]);
    }

    fn key(role: ApiRole, id: &str, secret: &str) -> Key {
        use sha2::Digest as _;
        Key { hash: Sha256::digest(secret.as_bytes()).into(), role, id: id.into(), source: String::new() }
    }

    #[test]
    fn sessions_are_signed_expire_and_end_with_their_key() {
        let sessions = Sessions { secret: [7; 32] };
        let dana = key(ApiRole::Dispatcher, "dana", "k1");
        let olga = key(ApiRole::Operator, "dana", "k2");
        let keys = [dana.clone(), olga.clone()];
        let principal = Principal { role: ApiRole::Dispatcher, id: "dana".into(), source: None };
        let value = sessions.issue(&principal, &dana.hash, 1_000);
        assert_eq!(sessions.verify(&value, &keys, 999), Some((principal.clone(), 1_000)));
        // Expired.
        assert_eq!(sessions.verify(&value, &keys, 1_000), None);
        // Another role, a later expiry, another id: the signature no longer matches.
        for forged in [
            value.replacen("dispatcher", "operator", 1),
            value.replacen(".1000.", ".2000.", 1),
            value.replacen(&hex::encode("dana"), &hex::encode("dan"), 1),
        ] {
            assert_eq!(sessions.verify(&forged, &keys, 999), None, "{forged}");
        }
        // Another secret (another deployment), or the key rotated or removed.
        assert_eq!(Sessions { secret: [8; 32] }.verify(&value, &keys, 999), None);
        assert_eq!(sessions.verify(&value, &[key(ApiRole::Dispatcher, "dana", "k3"), olga], 999), None);
        assert_eq!(sessions.verify(&value, &[], 999), None);
        // A department key's session is never valid, even signed.
        let dept = key(ApiRole::Department, "dpw", "k4");
        let dept_value =
            sessions.issue(&Principal { role: ApiRole::Department, id: "dpw".into(), source: None }, &dept.hash, 1_000);
        assert_eq!(sessions.verify(&dept_value, &[dept], 999), None);
        // Garbage.
        for garbage in ["", "a.b.c.d", "dispatcher.6461.1000", &format!("{value}.x")] {
            assert_eq!(sessions.verify(garbage, &keys, 999), None, "{garbage}");
        }
    }

    #[test]
    fn csrf_tokens_belong_to_their_session() {
        let sessions = Sessions { secret: [7; 32] };
        let token = sessions.csrf("dispatcher.6461.1000.ab");
        assert!(sessions.csrf_matches("dispatcher.6461.1000.ab", &token));
        assert!(!sessions.csrf_matches("dispatcher.6461.1000.ac", &token));
        assert!(!sessions.csrf_matches("dispatcher.6461.1000.ab", "zz"));
        assert!(!sessions.csrf_matches("dispatcher.6461.1000.ab", ""));
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; linkbus_session=x.y.z.w; b=2"));
        assert_eq!(cookie(&headers), Some("x.y.z.w"));
        headers.insert(header::COOKIE, HeaderValue::from_static("linkbus_sessionx=1"));
        assert_eq!(cookie(&headers), None);
    }
}
