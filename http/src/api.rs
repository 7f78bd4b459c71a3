//! The HTTP API of the closed loop, served by `linkbus up` on `[api].listen`.
//!
//! | endpoint | who | what |
//! |---|---|---|
//! | `GET /api/cases` | dispatcher, department or operator key | cases, newest first, filtered by `state`, `community`, `department`, `system`, `since`, `until`, `limit` |
//! | `GET /api/cases/{id}` | dispatcher, department or operator key | one case: timeline, decision and its explanation, reports, offers, ratings |
//! | `POST /api/cases/{id}/actions` | dispatcher or department key | a [`wire::Action`] (`{"action": "accept"}`…); answers the updated case |
//! | `GET /api/requests/{source_id}` | source, dispatcher or operator key (rate-limited) | a resident's follow-up by the source system's id: a reduced, public view |
//! | `POST /api/requests/{source_id}/rating` | source or dispatcher key (rate-limited) | the resident's rating; `solved: false` reopens the case |
//! | `GET /api/webhooks/{department}/deliveries` | dispatcher, operator or that department's key | the department's webhook delivery records, newest first (`limit`) |
//! | `GET /api/stats/departments` | dispatcher, operator or department key | per-department figures for dashboards; a department key gets its own row only |
//! | `POST /api/adapters/cap`, `/api/adapters/cad` | source key | a CAP 1.2 alert / a CAD incident message (`linkbus_adapters::intake`; not in the OpenAPI document) |
//! | `POST /api/adapters/commerce/{platform}/orders` | the platform's HMAC signature | an order event (`linkbus_adapters::commerce`) |
//! | `GET /api/openapi.json` | anyone | the OpenAPI 3.1 document ([`openapi`], committed as `docs/openapi.json`) |
//! | `GET /healthz` | anyone | `ok` |
//! | `GET /readyz` | anyone | 200 `{"ready": true}` when NATS is connected, the streams exist and the region is loaded ([`Readiness`]); 503 with the reason otherwise |
//! | `GET /metrics` | anyone | the Prometheus metrics ([`ApiState::with_metrics`]), text format 0.0.4 |
//!
//! **Keys.** `Authorization: Bearer <key>`; the configuration holds only SHA-256 hashes of the
//! keys (`[[api.keys]]`, [`hash_key`]). The presented key is hashed and compared with every
//! configured hash in constant time. A department key sees only the cases its department has or
//! had ([`involves`]) and acts as that department; a dispatcher key sees everything and acts as
//! that dispatcher; an operator key only reads; a source key may only use the residents'
//! endpoints and the adapters. A key whose role may not use an endpoint gets 403. What may be done to a case is the
//! lifecycle's decision (`linkbus_cases::lifecycle`), which records the actor in the timeline.
//! A request without an `Authorization` header may instead carry the dispatcher console's session
//! cookie (and, to change anything, its CSRF token): see [`crate::console`].
//!
//! **Residents** reach linkbus through their source system's app (a 12345/311 app), which relays
//! their follow-ups and ratings with its source key (as Open311 requires an `api_key`); source ids
//! are sequential, so these endpoints are not open to anyone who guesses one. A follow-up (by the
//! request's id in the source system, as Open311's `GET requests/{id}`) may also be read with a
//! dispatcher or operator key, and a dispatcher may record a rating taken by phone (回访); a
//! department key may do neither. The rating is recorded as the resident's (`resident`/`reporter`:
//! the lifecycle takes ratings only from residents), and the key that relayed it is logged
//! (`relayed_by`). Residents get the state and a timeline of event names — no contact details, no
//! volunteer or department ids, notes only of `progress`, `resolved` and `closed` (what a
//! department writes there is addressed to the reporter). These endpoints are also rate-limited
//! per client IP by an in-process token bucket (`[api].public_rate_per_minute`), so a leaked key
//! cannot walk the source ids quickly; per process, not shared between replicas. Source ids are
//! unique only within their source: a source key finds only the requests of the CloudEvents
//! source it speaks for (`[[api.keys]] source`); dispatchers and operators find any.
//!
//! **Adapters.** The source-system adapters' routes (Open311 at `/open311/v2/`, the grid batch
//! upload, CAP, CAD and commerce at `/api/adapters/…`) are merged in ([`ApiState::with_adapters`]); they take the same keys and rate limit
//! through [`linkbus_adapters::intake::Gate`], and are described in `docs/adapters.md`.
//!
//! **Errors** are `{"error": "…", "code": "…"}`: `unauthorized` 401, `forbidden` 403, `not_found`
//! 404, `invalid` 409 (the case's state refuses the action) or 422 (the request is malformed),
//! `too_large` 413, `rate_limited` 429, `unavailable` 503 (the case store; try again).

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use axum::Router;
use axum::body::Bytes;
use axum::extract::connect_info::MockConnectInfo;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::future::BoxFuture;
use jiff::Timestamp;
use linkbus_cases::book::{ActError, CaseBook, CaseFilter, DepartmentStats, involves};
use linkbus_cases::lifecycle::Refused;
use linkbus_cases::webhooks::{self, Delivery, WebhookError};
use linkbus_wire::{self as wire, Action, Actor, ActorKind, CaseRecord, CaseState};
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tracing::{debug, info};

use crate::config::{ApiConfig, ApiRole};

/// Largest request body accepted, bytes.
const MAX_BODY: usize = 64 * 1024;
/// Cases listed when `limit` is not given.
const DEFAULT_LIMIT: usize = 100;
/// The largest `limit`.
const MAX_LIMIT: usize = 1000;
/// Token buckets kept before idle (full) ones are dropped.
const MAX_BUCKETS: usize = 10_000;
/// Who may use `/api/cases…` (a source key may not).
const CASE_ROLES: &[ApiRole] = &[ApiRole::Dispatcher, ApiRole::Department, ApiRole::Operator];
/// Who may read a resident's follow-up.
const FOLLOW_UP_ROLES: &[ApiRole] = &[ApiRole::Source, ApiRole::Dispatcher, ApiRole::Operator];
/// Who may rate for a resident: their source system's app, or a dispatcher calling them back.
const RATE_ROLES: &[ApiRole] = &[ApiRole::Source, ApiRole::Dispatcher];
/// Who may read webhook deliveries and department figures (a department key only its own).
const OVERSIGHT_ROLES: &[ApiRole] = &[ApiRole::Dispatcher, ApiRole::Department, ApiRole::Operator];

/// What the API needs of the case book (implemented by [`CaseBook`]; a trait so the handlers can
/// be tested without NATS).
pub trait Cases: Send + Sync + 'static {
    /// Cases matching `filter`, newest first.
    fn list(&self, filter: &CaseFilter) -> Vec<CaseRecord>;
    /// One case.
    fn get(&self, case_id: &str) -> Option<CaseRecord>;
    /// The case a report with this source-system id belongs to, from the CloudEvents `source`
    /// given (`None`: from any source).
    fn by_source_id(&self, source: Option<&str>, source_id: &str) -> Option<CaseRecord>;
    /// Applies an action by `actor`; the updated case.
    fn act<'a>(
        &'a self,
        case_id: &'a str,
        actor: &'a Actor,
        action: &'a Action,
    ) -> BoxFuture<'a, Result<CaseRecord, ActError>>;
    /// Per-department handling figures, by department id.
    fn department_stats(&self) -> Vec<DepartmentStats>;
}

impl Cases for CaseBook {
    fn list(&self, filter: &CaseFilter) -> Vec<CaseRecord> {
        CaseBook::list(self, filter)
    }

    fn get(&self, case_id: &str) -> Option<CaseRecord> {
        CaseBook::get(self, case_id)
    }

    fn by_source_id(&self, source: Option<&str>, source_id: &str) -> Option<CaseRecord> {
        CaseBook::by_source_id(self, source, source_id)
    }

    fn act<'a>(
        &'a self,
        case_id: &'a str,
        actor: &'a Actor,
        action: &'a Action,
    ) -> BoxFuture<'a, Result<CaseRecord, ActError>> {
        Box::pin(CaseBook::act(self, case_id, actor, action))
    }

    fn department_stats(&self) -> Vec<DepartmentStats> {
        CaseBook::department_stats(self)
    }
}

/// What the API needs of the webhooks' delivery records (implemented for a JetStream context by
/// [`webhooks::deliveries`]; a trait so the handlers can be tested without NATS).
pub trait Deliveries: Send + Sync + 'static {
    /// The department's delivery records, oldest message first.
    fn deliveries<'a>(&'a self, department: &'a str) -> BoxFuture<'a, Result<Vec<Delivery>, WebhookError>>;
}

impl Deliveries for jetstream::Context {
    fn deliveries<'a>(&'a self, department: &'a str) -> BoxFuture<'a, Result<Vec<Delivery>, WebhookError>> {
        Box::pin(webhooks::deliveries(self, department))
    }
}

/// What `/readyz` asks (implemented by the running service,
/// [`Service::readiness`](crate::service::Service::readiness); a trait so the handlers can be
/// tested without NATS).
pub trait Readiness: Send + Sync + 'static {
    /// `Ok` when the service can do its work; else why not, in words.
    fn ready(&self) -> BoxFuture<'_, Result<(), String>>;
}

/// The SHA-256 of an API key, lowercase hex: what `[[api.keys]] sha256` holds.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// One configured key.
#[derive(Debug, Clone)]
pub(crate) struct Key {
    pub(crate) hash: [u8; 32],
    pub(crate) role: ApiRole,
    pub(crate) id: String,
    /// The CloudEvents source a source key speaks for.
    pub(crate) source: String,
}

/// Who is calling, from their key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// What the key allows.
    pub role: ApiRole,
    /// The dispatcher's or operator's name, or the department's id.
    pub id: String,
    /// For a source key, the CloudEvents source whose requests alone it may read and rate.
    pub source: Option<String>,
}

impl Principal {
    fn role_name(&self) -> &'static str {
        match self.role {
            ApiRole::Dispatcher => "dispatcher",
            ApiRole::Department => "department",
            ApiRole::Operator => "operator",
            ApiRole::Source => "source",
        }
    }

    /// 403 unless this key's role is one of `roles`; `what` is what it tried, for the message.
    fn require(&self, roles: &[ApiRole], what: &str) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            return Ok(());
        }
        info!(role = self.role_name(), actor = %self.id, refused = what, "request refused for the key's role");
        Err(ApiError::Forbidden(format!("a {} key may not {what}", self.role_name())))
    }

    /// The department whose cases alone this key may see, if it is a department's.
    fn department(&self) -> Option<&str> {
        (self.role == ApiRole::Department).then_some(self.id.as_str())
    }
}

/// The API's shared state: the case book, the webhook delivery records, the keys, the residents'
/// rate limiter.
#[derive(Clone)]
pub struct ApiState {
    cases: Arc<dyn Cases>,
    deliveries: Option<Arc<dyn Deliveries>>,
    pub(crate) keys: Arc<[Key]>,
    limiter: Arc<RateLimiter>,
    metrics: prometheus::Registry,
    readiness: Option<Arc<dyn Readiness>>,
    pub(crate) console: Option<Arc<crate::console::Console>>,
    adapters: Router,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState").field("keys", &self.keys.len()).finish_non_exhaustive()
    }
}

impl ApiState {
    /// The state for `cases` with the keys and limits of `config`.
    pub fn new(cases: Arc<dyn Cases>, config: &ApiConfig) -> anyhow::Result<Self> {
        let keys = config
            .keys
            .iter()
            .map(|k| {
                let mut hash = [0u8; 32];
                hex::decode_to_slice(k.sha256.to_ascii_lowercase(), &mut hash)
                    .map_err(|_| anyhow::anyhow!("api key {}: sha256 must be 64 hex digits", k.id))?;
                Ok(Key { hash, role: k.role, id: k.id.clone(), source: k.source() })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let limiter = Arc::new(RateLimiter::new(config.public_rate_per_minute.max(1)));
        Ok(Self {
            cases,
            deliveries: None,
            keys: keys.into(),
            limiter,
            metrics: prometheus::Registry::new(),
            readiness: None,
            console: None,
            adapters: Router::new(),
        })
    }

    /// Serves `registry` on `/metrics` (without, it serves an empty registry).
    pub fn with_metrics(mut self, registry: prometheus::Registry) -> Self {
        self.metrics = registry;
        self
    }

    /// Answers `/readyz` with `probe` (without, `/readyz` answers 503: nothing to be ready).
    pub fn with_readiness(mut self, probe: Arc<dyn Readiness>) -> Self {
        self.readiness = Some(probe);
        self
    }

    /// Serves the source-system adapters' routes too (`linkbus::adapters::routes`).
    pub fn with_adapters(mut self, adapters: Router) -> Self {
        self.adapters = adapters;
        self
    }

    /// Serves the webhook delivery records from `deliveries` (without, their endpoint answers
    /// 503).
    pub fn with_deliveries(mut self, deliveries: Arc<dyn Deliveries>) -> Self {
        self.deliveries = Some(deliveries);
        self
    }

    /// Serves the dispatcher console (`/`, `/console/…`; without, those answer 404).
    pub fn with_console(mut self, console: Arc<crate::console::Console>) -> Self {
        self.console = Some(console);
        self
    }

    /// The key whose hash is `presented`'s, comparing with every configured one in constant time.
    fn principal(&self, presented: &str) -> Option<Principal> {
        self.principal_with_hash(presented).map(|(principal, _)| principal)
    }

    /// [`ApiState::principal`], and the key's hash.
    pub(crate) fn principal_with_hash(&self, presented: &str) -> Option<(Principal, [u8; 32])> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for key in self.keys.iter() {
            if constant_time_eq(&key.hash, &digest) && found.is_none() {
                let source = (key.role == ApiRole::Source).then(|| key.source.clone());
                found = Some((Principal { role: key.role, id: key.id.clone(), source }, key.hash));
            }
        }
        found
    }
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

impl FromRequestParts<ApiState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Self::Rejection> {
        if !parts.headers.contains_key(header::AUTHORIZATION)
            && let Some(principal) = crate::console::session_principal(parts, state)?
        {
            return Ok(principal);
        }
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ApiError::Unauthorized("an Authorization: Bearer <key> header is required".into()))?;
        let key = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, key)| key.trim())
            .filter(|key| !key.is_empty())
            .ok_or_else(|| ApiError::Unauthorized("the Authorization header must be Bearer <key>".into()))?;
        state.principal(key).ok_or_else(|| ApiError::Unauthorized("unknown API key".into()))
    }
}

/// Every refusal the API answers, with its status and `code`.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// 401 `unauthorized`: no key, or an unknown one.
    Unauthorized(String),
    /// 403 `forbidden`: the key may not do this (or see this case).
    Forbidden(String),
    /// 404 `not_found`.
    NotFound(String),
    /// 409 `invalid`: the case's state (or the loop's rules) refuse the action.
    Conflict(String),
    /// 422 `invalid`: the request is malformed.
    Invalid(String),
    /// 413 `too_large`.
    TooLarge,
    /// 429 `rate_limited`: too many resident requests from this address.
    RateLimited {
        /// Seconds until the next request is allowed.
        retry_after_secs: u64,
    },
    /// 503 `unavailable`: the case store (or the webhook delivery records) could not be reached;
    /// try again.
    Unavailable(String),
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ErrorBody {
    /// What went wrong, for people.
    pub error: String,
    /// What went wrong, for programs.
    pub code: ErrorCode,
}

/// The `code` of an error response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 401: no key or an unknown key.
    Unauthorized,
    /// 403: the key may not do this.
    Forbidden,
    /// 404: no such case or request.
    NotFound,
    /// 409: the case's state refuses the action; 422: the request is malformed.
    Invalid,
    /// 413: the body is larger than 64 KiB.
    TooLarge,
    /// 429: too many requests from this address; see `Retry-After`.
    RateLimited,
    /// 503: the case store (or the webhook delivery records) is unavailable; try again.
    Unavailable,
}

impl ApiError {
    /// The status and `code` of this error.
    pub fn status(&self) -> (StatusCode, ErrorCode) {
        match self {
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, ErrorCode::Forbidden),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            Self::Conflict(_) => (StatusCode::CONFLICT, ErrorCode::Invalid),
            Self::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::Invalid),
            Self::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::TooLarge),
            Self::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable),
        }
    }

    fn message(&self) -> String {
        match self {
            Self::Unauthorized(m)
            | Self::Forbidden(m)
            | Self::NotFound(m)
            | Self::Conflict(m)
            | Self::Invalid(m)
            | Self::Unavailable(m) => m.clone(),
            Self::TooLarge => format!("the body is larger than {MAX_BODY} bytes"),
            Self::RateLimited { retry_after_secs } => {
                format!("too many requests from this address; retry in {retry_after_secs} s")
            }
        }
    }
}

impl From<ActError> for ApiError {
    fn from(e: ActError) -> Self {
        match e {
            ActError::NotFound(id) => Self::NotFound(format!("no case {id}")),
            ActError::Refused(Refused::Forbidden(why)) => Self::Forbidden(why),
            ActError::Refused(Refused::Invalid(why)) => Self::Conflict(why),
            ActError::Store(why) => Self::Unavailable(format!("the case store is unavailable: {why}")),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(e: BytesRejection) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE { Self::TooLarge } else { Self::Invalid(e.body_text()) }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status();
        let mut response = (status, axum::Json(ErrorBody { error: self.message(), code })).into_response();
        let headers = response.headers_mut();
        match self {
            Self::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::RateLimited { retry_after_secs } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            _ => {}
        }
        response
    }
}

/// `GET /api/cases`.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct CaseList {
    /// The cases, newest first.
    pub cases: Vec<CaseRecord>,
    /// True when more cases matched than `limit`.
    pub more: bool,
}

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

/// What a resident sees of their request: no contact details, no volunteer or department ids.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct PublicCase {
    /// The case id (the case the request belongs to: another resident's if it was merged into it).
    pub case_id: String,
    /// Where it is in its life.
    pub state: CaseState,
    /// Its category.
    pub category: String,
    /// When linkbus received it.
    #[schemars(schema_with = "timestamp_schema")]
    pub created_at: Timestamp,
    /// When it last changed.
    #[schemars(schema_with = "timestamp_schema")]
    pub updated_at: Timestamp,
    /// Whether it can be rated now (resolved or closed).
    pub can_rate: bool,
    /// What happened, oldest first.
    pub timeline: Vec<PublicEntry>,
}

/// One line of the public timeline.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct PublicEntry {
    /// When.
    #[schemars(schema_with = "timestamp_schema")]
    pub at: Timestamp,
    /// What: `routed`, `accepted`, `rejected`, `rerouted`, `reassigned`, `escalated`, `progress`,
    /// `resolved`, `closed`, `cancelled`, `rated`, `reopened`, `report_merged`, `split`,
    /// `volunteer_accepted`.
    pub event: String,
    /// The department's note to the reporter (`progress`, `resolved` and `closed` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl PublicCase {
    /// The public view of a case.
    pub fn of(r: &CaseRecord) -> Self {
        let timeline = r
            .timeline
            .iter()
            .filter(|e| e.event.is_public())
            .map(|e| PublicEntry {
                at: e.at,
                event: e.event.to_string(),
                note: if e.event.note_is_public() { e.note.clone() } else { None },
            })
            .collect();
        Self {
            case_id: r.case_id.clone(),
            state: r.state,
            category: r.case.category.clone(),
            created_at: r.created_at,
            updated_at: r.updated_at,
            can_rate: matches!(r.state, CaseState::Resolved | CaseState::Closed),
            timeline,
        }
    }
}

/// `POST /api/requests/{source_id}/rating`.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RatingRequest {
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

fn timestamp_schema(_: &mut SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "string", "format": "date-time" })
}

/// The API's routes on `state`.
pub fn app(state: ApiState) -> Router {
    let public = Router::new()
        .route("/api/requests/{source_id}", get(follow_up))
        .route("/api/requests/{source_id}/rating", post(rate))
        .route_layer(middleware::from_fn_with_state(state.clone(), limit_public));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/openapi.json", get(openapi_json))
        .route("/api/cases", get(list_cases))
        .route("/api/cases/{id}", get(get_case))
        .route("/api/cases/{id}/actions", post(act))
        .route("/api/webhooks/{department}/deliveries", get(list_deliveries))
        .route("/api/stats/departments", get(department_stats))
        .merge(public)
        .merge(crate::console::routes())
        .fallback(|| async { ApiError::NotFound("no such endpoint; see /api/openapi.json".into()) })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state.clone())
        .merge(state.adapters)
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets requests in progress finish.
/// Client addresses are passed to the handlers (the residents' rate limit is per address).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}

// Operations: `/readyz` and `/metrics`, unauthenticated like `/healthz` (probes and Prometheus
// present no key).

/// The body of `/readyz`.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ReadyBody {
    /// True when NATS is connected, every stream and bucket exists and the region is loaded.
    pub ready: bool,
    /// Why not, when not ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

async fn readyz(State(state): State<ApiState>) -> Response {
    let verdict = match &state.readiness {
        Some(probe) => probe.ready().await,
        None => Err("no service behind this API to be ready".to_owned()),
    };
    match verdict {
        Ok(()) => axum::Json(ReadyBody { ready: true, reason: None }).into_response(),
        Err(reason) => {
            debug!(reason, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(ReadyBody { ready: false, reason: Some(reason) }))
                .into_response()
        }
    }
}

/// `registry` in Prometheus's text format 0.0.4.
pub fn render(registry: &prometheus::Registry) -> String {
    let mut out = String::new();
    // Encoding into a String fails only for metric families without a type, which the
    // registry's collectors never produce.
    if let Err(e) = prometheus::TextEncoder::new().encode_utf8(&registry.gather(), &mut out) {
        tracing::warn!(error = %e, "cannot encode the metrics");
    }
    out
}

/// The content type of Prometheus's text format.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

async fn metrics(State(state): State<ApiState>) -> Response {
    let body = render(&state.metrics);
    ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], body).into_response()
}

async fn openapi_json() -> Response {
    static DOCUMENT: LazyLock<String> = LazyLock::new(|| openapi().to_string());
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT.as_str()).into_response()
}

async fn list_cases(
    State(state): State<ApiState>,
    principal: Principal,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<axum::Json<CaseList>, ApiError> {
    principal.require(CASE_ROLES, "list cases")?;
    let Query(pairs) = query.map_err(|e| ApiError::Invalid(e.body_text()))?;
    let (mut filter, limit) = parse_list_query(&pairs)?;
    let asked = filter.department.clone();
    if let Some(own) = principal.department() {
        filter.department = Some(own.to_owned());
    }
    let mut cases = state.cases.list(&filter);
    if let Some(asked) = asked.filter(|_| principal.department().is_some()) {
        cases.retain(|r| involves(r, &asked));
    }
    let more = cases.len() > limit;
    cases.truncate(limit);
    debug!(role = principal.role_name(), actor = %principal.id, count = cases.len(), "cases listed");
    Ok(axum::Json(CaseList { cases, more }))
}

fn parse_list_query(pairs: &[(String, String)]) -> Result<(CaseFilter, usize), ApiError> {
    let mut filter = CaseFilter::default();
    let mut limit = None;
    let mut seen = Vec::new();
    for (name, value) in pairs {
        if seen.contains(&name.as_str()) {
            return Err(ApiError::Invalid(format!("query parameter {name} is given twice")));
        }
        seen.push(name.as_str());
        let bad = |what: &str| ApiError::Invalid(format!("{name}={value:?}: {what}"));
        match name.as_str() {
            "state" => {
                filter.state = Some(
                    serde_json::from_value(Value::String(value.clone()))
                        .map_err(|_| bad("not a case state (routed, accepted, in_progress, …)"))?,
                );
            }
            "community" => filter.community = Some(value.clone()),
            "department" => filter.department = Some(value.clone()),
            "system" => {
                filter.system = Some(wire::SourceSystem::parse(value).ok_or_else(|| bad("not a source system"))?);
            }
            "since" => filter.since = Some(value.parse().map_err(|_| bad("not an RFC 3339 time"))?),
            "until" => filter.until = Some(value.parse().map_err(|_| bad("not an RFC 3339 time"))?),
            "limit" => {
                let n: usize = value.parse().map_err(|_| bad("not a number"))?;
                if !(1..=MAX_LIMIT).contains(&n) {
                    return Err(bad(&format!("must be 1 to {MAX_LIMIT}")));
                }
                limit = Some(n);
            }
            _ => {
                return Err(ApiError::Invalid(format!(
                    "unknown query parameter {name}; known: state, community, department, system, since, until, limit"
                )));
            }
        }
    }
    Ok((filter, limit.unwrap_or(DEFAULT_LIMIT)))
}

/// The `limit` of a query that takes nothing else.
fn parse_limit_query(pairs: &[(String, String)]) -> Result<usize, ApiError> {
    let mut limit = None;
    for (name, value) in pairs {
        if name != "limit" {
            return Err(ApiError::Invalid(format!("unknown query parameter {name}; known: limit")));
        }
        if limit.is_some() {
            return Err(ApiError::Invalid("query parameter limit is given twice".into()));
        }
        let n: usize = value.parse().map_err(|_| ApiError::Invalid(format!("limit={value:?}: not a number")))?;
        if !(1..=MAX_LIMIT).contains(&n) {
            return Err(ApiError::Invalid(format!("limit={value:?}: must be 1 to {MAX_LIMIT}")));
        }
        limit = Some(n);
    }
    Ok(limit.unwrap_or(DEFAULT_LIMIT))
}

async fn list_deliveries(
    State(state): State<ApiState>,
    principal: Principal,
    Path(department): Path<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<axum::Json<DeliveryList>, ApiError> {
    principal.require(OVERSIGHT_ROLES, "read webhook deliveries")?;
    if let Some(own) = principal.department().filter(|own| *own != department) {
        info!(role = principal.role_name(), actor = %principal.id, department = %department, "webhook deliveries refused");
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
    debug!(role = principal.role_name(), actor = %principal.id, department = %department, count = deliveries.len(), "webhook deliveries listed");
    Ok(axum::Json(DeliveryList { deliveries }))
}

async fn department_stats(
    State(state): State<ApiState>,
    principal: Principal,
) -> Result<axum::Json<DepartmentStatsList>, ApiError> {
    principal.require(OVERSIGHT_ROLES, "read department statistics")?;
    let mut departments = state.cases.department_stats();
    if let Some(own) = principal.department() {
        let row = departments.into_iter().find(|s| s.department == own);
        departments = vec![row.unwrap_or_else(|| DepartmentStats { department: own.to_owned(), ..Default::default() })];
    }
    debug!(role = principal.role_name(), actor = %principal.id, count = departments.len(), "department statistics read");
    Ok(axum::Json(DepartmentStatsList { departments }))
}

/// The case, if `principal` may see it: 404 when there is none, 403 when it is another
/// department's.
fn visible(state: &ApiState, principal: &Principal, case_id: &str) -> Result<CaseRecord, ApiError> {
    let record = state.cases.get(case_id).ok_or_else(|| ApiError::NotFound(format!("no case {case_id}")))?;
    match principal.department() {
        Some(own) if !involves(&record, own) => Err(ApiError::Forbidden(format!("case {case_id} is not {own}'s"))),
        _ => Ok(record),
    }
}

async fn get_case(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<axum::Json<CaseRecord>, ApiError> {
    principal.require(CASE_ROLES, "read cases")?;
    let record = visible(&state, &principal, &id).inspect_err(|e| {
        info!(role = principal.role_name(), actor = %principal.id, case_id = %id, refused = ?e.status().1, "case read refused");
    })?;
    info!(role = principal.role_name(), actor = %principal.id, case_id = %id, "case read");
    Ok(axum::Json(record))
}

async fn act(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<CaseRecord>, ApiError> {
    principal.require(&[ApiRole::Dispatcher, ApiRole::Department], "act on cases")?;
    let action = parse_action(&body?)?;
    let result = act_as(&state, &principal, &id, &action).await;
    match &result {
        Ok(r) => info!(
            role = principal.role_name(),
            actor = %principal.id,
            action = action.name(),
            case_id = %id,
            state = r.state.as_str(),
            "case action done"
        ),
        Err(e) => info!(
            role = principal.role_name(),
            actor = %principal.id,
            action = action.name(),
            case_id = %id,
            refused = %e.message(),
            "case action refused"
        ),
    }
    result.map(axum::Json)
}

async fn act_as(state: &ApiState, principal: &Principal, id: &str, action: &Action) -> Result<CaseRecord, ApiError> {
    let actor = match principal.role {
        ApiRole::Operator => return Err(ApiError::Forbidden("operator keys are read-only".into())),
        ApiRole::Source => return Err(ApiError::Forbidden("source keys may only use /api/requests/…".into())),
        ApiRole::Department => {
            // Not another department's case, whatever the action (a merged case would otherwise
            // answer 409 and tell where it went).
            visible(state, principal, id)?;
            Actor { kind: ActorKind::Department, id: principal.id.clone() }
        }
        ApiRole::Dispatcher => Actor { kind: ActorKind::Dispatcher, id: principal.id.clone() },
    };
    Ok(state.cases.act(id, &actor, action).await?)
}

/// The action in a request body (also fuzzed: `fuzz/`, target `api_bodies`). Unknown fields are
/// refused by serde, on every variant (those without fields are empty struct variants,
/// `Accept {}`, for that).
pub fn parse_action(body: &[u8]) -> Result<Action, ApiError> {
    let action: Action = serde_json::from_slice(body).map_err(|e| ApiError::Invalid(format!("not an action: {e}")))?;
    check_texts(&action)?;
    Ok(action)
}

/// Refuses text fields longer than the bus accepts in a report.
fn check_texts(action: &Action) -> Result<(), ApiError> {
    let texts: Vec<&str> = match action {
        Action::Reject { reason } | Action::Cancel { reason } => vec![reason],
        Action::Progress { note } | Action::Resolve { note } | Action::Update { note } => vec![note],
        Action::Close { note } => note.iter().map(String::as_str).collect(),
        Action::Reassign { department, reason } => vec![department, reason],
        Action::Split { report_id } => vec![report_id],
        Action::Rate { comment, .. } => comment.iter().map(String::as_str).collect(),
        Action::Accept {} | Action::AcknowledgeEscalation {} => vec![],
    };
    match texts.iter().find(|t| t.len() > wire::MAX_TEXT_LEN) {
        Some(_) => Err(ApiError::Invalid(format!("a text field is longer than {} bytes", wire::MAX_TEXT_LEN))),
        None => Ok(()),
    }
}

async fn follow_up(
    State(state): State<ApiState>,
    principal: Principal,
    Path(source_id): Path<String>,
) -> Result<axum::Json<PublicCase>, ApiError> {
    principal.require(FOLLOW_UP_ROLES, "read residents' requests")?;
    let record = state
        .cases
        .by_source_id(principal.source.as_deref(), &source_id)
        .ok_or_else(|| ApiError::NotFound("no such request".into()))?;
    debug!(case_id = %record.case_id, role = principal.role_name(), relayed_by = %principal.id, "resident follow-up");
    Ok(axum::Json(PublicCase::of(&record)))
}

async fn rate(
    State(state): State<ApiState>,
    principal: Principal,
    Path(source_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<PublicCase>, ApiError> {
    principal.require(RATE_ROLES, "rate residents' requests")?;
    let rating: RatingRequest =
        serde_json::from_slice(&body?).map_err(|e| ApiError::Invalid(format!("not a rating: {e}")))?;
    if !(1..=5).contains(&rating.score) {
        return Err(ApiError::Invalid(format!("score {} is not 1-5", rating.score)));
    }
    let action = Action::Rate { score: rating.score, solved: rating.solved, comment: rating.comment };
    check_texts(&action)?;
    let record = state
        .cases
        .by_source_id(principal.source.as_deref(), &source_id)
        .ok_or_else(|| ApiError::NotFound("no such request".into()))?;
    // The lifecycle takes ratings only from the resident; the key that relayed it is logged.
    let resident = Actor { kind: ActorKind::Resident, id: "reporter".into() };
    let result = state.cases.act(&record.case_id, &resident, &action).await.map_err(ApiError::from);
    match &result {
        Ok(r) => info!(
            actor = "reporter",
            relayed_by = %principal.id,
            role = principal.role_name(),
            action = "rate",
            case_id = %r.case_id,
            score = rating.score,
            solved = rating.solved,
            state = r.state.as_str(),
            "case rated"
        ),
        Err(e) => info!(
            actor = "reporter",
            relayed_by = %principal.id,
            role = principal.role_name(),
            action = "rate",
            case_id = %record.case_id,
            refused = %e.message(),
            "rating refused"
        ),
    }
    Ok(axum::Json(PublicCase::of(&result?)))
}

/// What the source-system adapters ask of the API: who holds a key, and the residents' rate limit.
impl linkbus_adapters::intake::Gate for ApiState {
    fn caller(&self, key: &str) -> Option<linkbus_adapters::intake::Caller> {
        use linkbus_adapters::intake::Caller;
        let principal = self.principal(key)?;
        Some(match (principal.role, principal.source) {
            (ApiRole::Source, Some(source)) => Caller::Source(source),
            (ApiRole::Dispatcher | ApiRole::Operator, _) => Caller::Staff,
            _ => Caller::Other,
        })
    }

    fn admit(&self, ip: IpAddr) -> Result<(), Duration> {
        self.limiter.check(ip, Instant::now())
    }
}

/// The residents' rate limit: one token bucket per client address.
async fn limit_public(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let extensions = request.extensions();
    let ip = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
        .or_else(|| extensions.get::<MockConnectInfo<SocketAddr>>().map(|MockConnectInfo(addr)| addr.ip()))
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    match state.limiter.check(ip, Instant::now()) {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            debug!(%ip, "resident request rate-limited");
            ApiError::RateLimited { retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64 }.into_response()
        }
    }
}

/// Token buckets per client address: `per_minute` requests in a burst, refilled at `per_minute`
/// a minute.
#[derive(Debug)]
struct RateLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    fn new(per_minute: u32) -> Self {
        Self { per_minute, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes a token for `ip`, or says how long until one is there.
    fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let capacity = f64::from(self.per_minute);
        let per_sec = capacity / 60.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_BUCKETS {
            // A bucket idle for a minute is full again: forgetting it changes nothing.
            buckets.retain(|_, (_, at)| now.saturating_duration_since(*at) < Duration::from_secs(60));
        }
        let (tokens, at) = buckets.entry(ip).or_insert((capacity, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * per_sec).min(capacity);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / per_sec))
        }
    }
}

/// The OpenAPI 3.1 document of this API, its schemas generated from the Rust types (responses as
/// they serialize, request bodies as they deserialize). Served at `/api/openapi.json`; the copy in
/// `docs/openapi.json` is checked against it by a test (`UPDATE_OPENAPI=1` rewrites it).
pub fn openapi() -> Value {
    let settings = || SchemaSettings::draft2020_12().with(|s| s.definitions_path = "/components/schemas".into());
    let mut out = settings().for_serialize().into_generator();
    let case_list = out.subschema_for::<CaseList>();
    let case_record = out.subschema_for::<CaseRecord>();
    let public_case = out.subschema_for::<PublicCase>();
    let delivery_list = out.subschema_for::<DeliveryList>();
    let stats_list = out.subschema_for::<DepartmentStatsList>();
    let error_body = out.subschema_for::<ErrorBody>();
    let ready_body = out.subschema_for::<ReadyBody>();
    let receipt = out.subschema_for::<linkbus_adapters::intake::Receipt>();
    let grid_batch = out.subschema_for::<linkbus_adapters::grid::BatchResult>();
    let mut schemas = out.take_definitions(true);
    let mut into = settings().for_deserialize().into_generator();
    let action = into.subschema_for::<Action>();
    let rating = into.subschema_for::<RatingRequest>();
    for (name, schema) in into.take_definitions(true) {
        match schemas.get(&name) {
            Some(existing) if *existing != schema => {
                panic!("schema {name} differs between requests and responses: name one of them")
            }
            _ => {
                schemas.insert(name, schema);
            }
        }
    }

    let body = |description: &str, schema: &schemars::Schema| json!({ "description": description, "content": { "application/json": { "schema": schema } } });
    let error = |description: &str| body(description, &error_body);
    let unauthorized = error("No `Authorization: Bearer <key>` header, or an unknown key (`unauthorized`).");
    let not_found = |what: &str| error(&format!("No such {what} (`not_found`)."));
    let rate_limited =
        error("Too many requests from this address (`rate_limited`); `Retry-After` says in how many seconds to retry.");
    let too_large = error("The body is larger than 64 KiB (`too_large`).");
    let unavailable = error("The case store is unavailable (`unavailable`); try again.");
    let id_param = |name: &str, description: &str| json!({ "name": name, "in": "path", "required": true, "description": description, "schema": { "type": "string" } });
    let query = |name: &str, description: &str, schema: Value| json!({ "name": name, "in": "query", "required": false, "description": description, "schema": schema });
    let forbidden_cases =
        |more: &str| error(&format!("A source key, which may use only `/api/requests/…`{more} (`forbidden`)."));

    let adapters = adapter_paths(&receipt, &grid_batch, &error_body);
    let mut document = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "linkbus closed-loop API",
            "version": env!("CARGO_PKG_VERSION"),
            "summary": "Cases routed by linkbus: read them, act on them (accept, reject, progress, resolve, close, reassign, cancel, escalations), and let residents follow up and rate.",
            "description": "Every endpoint but `/healthz`, `/readyz`, `/metrics`, this document, the commercial order webhooks (signed instead) and Open311 (its `api_key`) takes `Authorization: Bearer <key>`; the configuration holds SHA-256 hashes of the keys (`[[api.keys]]`, `linkbus api hash-key`). A department key sees only cases its department has or had and acts as that department; a dispatcher key sees and acts on every case; an operator key only reads; a source key (a source system's app relaying its residents' follow-ups and ratings) may only read and rate requests under `/api/requests/…`, those of the CloudEvents source it speaks for (`[[api.keys]] source`), and post to its adapter (`docs/adapters.md`). Webhook deliveries and department figures are read with a dispatcher or operator key, or a department key for its own. Every action is recorded in the case's timeline with its actor. Errors are `ErrorBody`: `unauthorized` 401, `forbidden` 403, `not_found` 404, `invalid` 409 (the case's state refuses the action) or 422 (malformed request), `too_large` 413, `rate_limited` 429, `unavailable` 503.",
            "license": { "name": "Apache-2.0", "identifier": "Apache-2.0" }
        },
        "security": [ { "bearer": [] } ],
        "paths": {
            "/healthz": {
                "get": {
                    "operationId": "healthz",
                    "summary": "Liveness: `ok`.",
                    "security": [],
                    "responses": {
                        "200": { "description": "Serving.", "content": { "text/plain": { "schema": { "const": "ok" } } } }
                    }
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "readyz",
                    "summary": "Readiness: NATS connected, every stream and bucket present, the region loaded.",
                    "security": [],
                    "responses": {
                        "200": body("Ready.", &ready_body),
                        "503": body("Not ready; `reason` says why.", &ready_body)
                    }
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics, text format 0.0.4 (`docs/operations.md` lists them).",
                    "security": [],
                    "responses": {
                        "200": { "description": "The metrics.", "content": { "text/plain": { "schema": { "type": "string" } } } }
                    }
                }
            },
            "/api/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document.",
                    "security": [],
                    "responses": {
                        "200": { "description": "The OpenAPI 3.1 document.", "content": { "application/json": { "schema": { "type": "object" } } } }
                    }
                }
            },
            "/api/cases": {
                "get": {
                    "operationId": "listCases",
                    "summary": "Cases, newest first.",
                    "description": "Every filter given must match. A department key lists only cases its department has or had, whatever the filters.",
                    "parameters": [
                        query("state", "In this state.", json!({ "$ref": "#/components/schemas/CaseState" })),
                        query("community", "In this community (id, e.g. `mission`).", json!({ "type": "string" })),
                        query("department", "Involving this department (responsible, accepted or rejected it).", json!({ "type": "string" })),
                        query("system", "Reported by this kind of system.", json!({ "$ref": "#/components/schemas/SourceSystem" })),
                        query("since", "Created at or after (RFC 3339).", json!({ "type": "string", "format": "date-time" })),
                        query("until", "Created before (RFC 3339).", json!({ "type": "string", "format": "date-time" })),
                        query("limit", "At most this many.", json!({ "type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT })),
                    ],
                    "responses": {
                        "200": body("The matching cases.", &case_list),
                        "401": unauthorized,
                        "403": forbidden_cases(""),
                        "422": error("An unknown or malformed query parameter (`invalid`).")
                    }
                }
            },
            "/api/cases/{id}": {
                "get": {
                    "operationId": "getCase",
                    "summary": "One case: timeline, decision with its explanation, reports, offers, ratings.",
                    "parameters": [ id_param("id", "The case id.") ],
                    "responses": {
                        "200": body("The case.", &case_record),
                        "401": unauthorized,
                        "403": forbidden_cases(", or the case is another department's"),
                        "404": not_found("case")
                    }
                }
            },
            "/api/cases/{id}/actions": {
                "post": {
                    "operationId": "actOnCase",
                    "summary": "An action on a case, as the key's department or dispatcher.",
                    "description": "Departments accept or reject cases they are responsible for, and progress, resolve and close those they accepted; dispatchers reassign, cancel, close, acknowledge escalations and split merged reports. Notes of `progress`, `resolve` and `close` are shown to the reporter.",
                    "parameters": [ id_param("id", "The case id.") ],
                    "requestBody": { "required": true, "content": { "application/json": { "schema": action } } },
                    "responses": {
                        "200": body("Done: the case afterwards.", &case_record),
                        "401": unauthorized,
                        "403": error("This key may not do this to this case (`forbidden`): an operator or source key, another department's case, or an action the role may not take."),
                        "404": not_found("case"),
                        "409": error("The case's state or the loop's rules refuse it (`invalid`), e.g. accepting a case already accepted."),
                        "413": too_large,
                        "422": error("The body is not an action (`invalid`)."),
                        "503": unavailable
                    }
                }
            },
            "/api/requests/{source_id}": {
                "get": {
                    "operationId": "followUp",
                    "summary": "A resident's follow-up of their request, by the source system's id.",
                    "description": "Relayed by the resident's source system (its app) with a source key; a dispatcher or operator key may read it too, a department key may not. Rate-limited per client address as well (`[api].public_rate_per_minute`).",
                    "security": [ { "bearer": [] } ],
                    "parameters": [ id_param("source_id", "The request's id in the system it was reported to.") ],
                    "responses": {
                        "200": body("The public view of the case.", &public_case),
                        "401": unauthorized,
                        "403": error("A department key (`forbidden`): only source, dispatcher and operator keys read requests."),
                        "404": not_found("request"),
                        "429": rate_limited
                    }
                }
            },
            "/api/requests/{source_id}/rating": {
                "post": {
                    "operationId": "rate",
                    "summary": "The resident's rating of a resolved or closed request; `solved: false` reopens it.",
                    "description": "Relayed by the resident's source system (its app) with a source key, or recorded by a dispatcher who called the resident back (回访). Recorded in the timeline as the resident's (`resident`/`reporter`); the relaying key is logged. Rate-limited per client address as well (`[api].public_rate_per_minute`).",
                    "security": [ { "bearer": [] } ],
                    "parameters": [ id_param("source_id", "The request's id in the system it was reported to.") ],
                    "requestBody": { "required": true, "content": { "application/json": { "schema": rating } } },
                    "responses": {
                        "200": body("Rated: the public view afterwards.", &public_case),
                        "401": unauthorized,
                        "403": error("A department or operator key (`forbidden`): only source and dispatcher keys rate."),
                        "404": not_found("request"),
                        "409": error("The case is not resolved or closed (`invalid`)."),
                        "413": too_large,
                        "422": error("The body is not a rating (`invalid`)."),
                        "429": rate_limited,
                        "503": unavailable
                    }
                }
            },
            "/api/webhooks/{department}/deliveries": {
                "get": {
                    "operationId": "listWebhookDeliveries",
                    "summary": "A department's webhook deliveries, newest first: one record per message, with its status (`delivering`, `delivered`, `failed`), attempts and last error.",
                    "description": "Dispatcher and operator keys read any department's; a department key only its own.",
                    "parameters": [
                        id_param("department", "The department id (1–64 ASCII letters, digits, `-` or `_`)."),
                        query("limit", "At most this many.", json!({ "type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT })),
                    ],
                    "responses": {
                        "200": body("The deliveries (none if the department has no webhook).", &delivery_list),
                        "401": unauthorized,
                        "403": error("A source key, or another department's key (`forbidden`)."),
                        "422": error("Not a department id, or an unknown or malformed query parameter (`invalid`)."),
                        "503": error("The webhook delivery records are unavailable (`unavailable`); try again.")
                    }
                }
            },
            "/api/stats/departments": {
                "get": {
                    "operationId": "departmentStats",
                    "summary": "How each department handles its cases, for dashboards: cases, acceptances, rejections, ratings, average score, reopen rate.",
                    "description": "Dispatcher and operator keys get every department that has or had a case; a department key only its own row.",
                    "responses": {
                        "200": body("One row per department.", &stats_list),
                        "401": unauthorized,
                        "403": error("A source key (`forbidden`).")
                    }
                }
            }
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key configured (as its SHA-256) under `[[api.keys]]`."
                }
            }
        }
    });
    if let (Some(paths), Value::Object(adapters)) = (document["paths"].as_object_mut(), adapters) {
        paths.extend(adapters);
    }
    document
}

/// The source-system adapters' HTTP routes, served beside the API where `[adapters.*]` enables
/// them. Their formats are foreign (CAP XML, a CAD system's JSON, signed order webhooks, grid
/// batches, Open311's forms) and `docs/adapters.md` describes them; these entries say where they
/// are, who may call them, and what they answer.
fn adapter_paths(receipt: &schemars::Schema, grid_batch: &schemars::Schema, error_body: &schemars::Schema) -> Value {
    let json_body = |description: &str, schema: &schemars::Schema| json!({ "description": description, "content": { "application/json": { "schema": schema } } });
    let error = |description: &str| json_body(description, error_body);
    let text = |media: &[&str], description: &str| {
        let content: serde_json::Map<String, Value> =
            media.iter().map(|m| ((*m).to_owned(), json!({ "schema": { "type": "string" } }))).collect();
        json!({ "required": true, "description": description, "content": content })
    };
    // What CAP, CAD and order events answer, and the refusals particular to each.
    let answers = |more: serde_json::Map<String, Value>| {
        let mut responses = serde_json::Map::new();
        responses.insert(
            "202".into(),
            json_body(
                "Reported: a new case (`reported`), or one already reported (`duplicate`: still one case).",
                receipt,
            ),
        );
        responses.insert(
            "200".into(),
            json_body(
                "An update, resolution or cancellation of the source's earlier case, with its state afterwards.",
                receipt,
            ),
        );
        responses.insert("400".into(), error("Not readable (`malformed`); kept in the adapter's dead letters."));
        responses.insert("413".into(), error("A body over 256 KiB (`too_large`)."));
        responses.insert("415".into(), error("Another content type (`unsupported_media_type`)."));
        responses.insert(
            "422".into(),
            error("Readable but refused (`invalid`): the reason says which rule; kept in the adapter's dead letters."),
        );
        responses.insert("503".into(), error("NATS unavailable (`unavailable`): send again."));
        responses.extend(more);
        Value::Object(responses)
    };
    let intake = |name: &str, section: &str, request: Value, more: serde_json::Map<String, Value>| {
        json!({ "post": {
            "operationId": format!("adapter{name}"),
            "summary": format!("The {name} adapter: see docs/adapters.md#{section}."),
            "description": "Present only where the adapter is configured. Refusals are kept in `deadletter.adapter_<adapter>` with the reason.",
            "requestBody": request,
            "responses": answers(more)
        }})
    };
    let keyed = |source: &str| -> serde_json::Map<String, Value> {
        [
            ("401".to_owned(), error("No key, an unknown one, or not a source key (`unauthorized`).")),
            ("403".to_owned(), error(&format!("A source key of another source than `{source}` (`forbidden`)."))),
        ]
        .into_iter()
        .collect()
    };
    let mut cad = keyed("/cad");
    cad.insert("404".into(), error("An update or cancellation of an incident linkbus has no case for (`not_found`)."));
    cad.insert("409".into(), error("An update of a cancelled incident (`conflict`)."));
    let commerce: serde_json::Map<String, Value> = [
        ("401".to_owned(), error("An unknown platform, no or a wrong `Linkbus-Signature`, or a `Linkbus-Timestamp` more than 5 minutes off (`unauthorized`).")),
        ("404".to_owned(), error("A status change of an order linkbus has no case for (`not_found`).")),
        ("409".to_owned(), error("A `Linkbus-Delivery` id seen in the last 10 minutes (a replay), or a status change of a closed case (`conflict`).")),
    ]
    .into_iter()
    .collect();
    let open311 = |param: &str, summary: &str| json!({ "summary": summary, "parameters": [ { "name": param, "in": "path", "required": true, "description": "With the format's extension: `.json` or `.xml`.", "schema": { "type": "string" } } ], "description": "Open311 GeoReport v2 (docs/adapters.md#public-service-open311-georeport-v2): `{resource}` is `services.json`, `services.xml`, `requests.json` or `requests.xml`; `api_key` (form, query string or `Authorization: Bearer`) is a source key of the Open311 adapter's source, or for reading a dispatcher's or operator's. Answers and errors are the spec's, in the format the extension names (errors: a list of `{code, description}`: 400 a field missing or out of range, 403 no or a wrong key, 404 unknown, 405 another method, 413 over 64 KiB, 415 not a form, 429 over the per-address limit, 503 NATS unavailable).", "security": [] });
    json!({
        "/api/adapters/cap": intake("Cap", "emergency-cap-12", text(&["application/cap+xml", "application/xml", "text/xml"], "An OASIS CAP 1.2 alert; `Alert`/`Update`/`Cancel` with `references` act on the source's earlier case."), keyed("/cap")),
        "/api/adapters/cad": intake("Cad", "emergency-cad-incidents", text(&["application/json"], "A CAD incident (`kind` `new`, `update` or `cancel`)."), cad),
        "/api/adapters/commerce/{platform}/orders": {
            "post": {
                "operationId": "adapterCommerceOrder",
                "summary": "A commercial platform's order event, signed (`Linkbus-Timestamp`, `Linkbus-Signature`, `Linkbus-Delivery`): see docs/adapters.md#commercial-order-webhooks.",
                "description": "Present only where `[[adapters.commerce.platforms]]` are configured. `created` opens the case `commerce-<platform>-<order_id>`; `accepted` and `in_progress` are recorded on its timeline; `delivered` and `completed` resolve it; `cancelled` withdraws it.",
                "security": [],
                "parameters": [ { "name": "platform", "in": "path", "required": true, "description": "The platform's id in `[[adapters.commerce.platforms]]`.", "schema": { "type": "string" } } ],
                "requestBody": text(&["application/json"], "The order event (JSON)."),
                "responses": answers(commerce)
            }
        },
        "/api/adapters/grid/batch": {
            "post": {
                "operationId": "adapterGridBatch",
                "summary": "A batch of grid-management reports: a CSV file or JSON lines, one report per row (docs/adapters.md#management-grid-reports).",
                "description": "Present only where `[adapters.grid]` is configured. Each row is taken or refused on its own; refused rows are kept in `deadletter.adapter_grid`. At most `max_batch_bytes` (8 MiB) and `max_batch_rows` (10,000).",
                "requestBody": text(&["text/csv", "application/x-ndjson"], "A header row and one report per row (CSV), or one JSON report per line."),
                "responses": {
                    "200": json_body("Each row's case, or why it was refused.", grid_batch),
                    "400": error("The body could not be read (`invalid`)."),
                    "401": error("No key, or an unknown one (`unauthorized`)."),
                    "403": error("Not the grid system's source key (`forbidden`)."),
                    "413": error("Over `max_batch_bytes` (`too_large`)."),
                    "415": error("Neither `text/csv` nor `application/x-ndjson` (`invalid`)."),
                    "422": error("Not a batch at all, e.g. no header row or over `max_batch_rows` (`invalid`).")
                }
            }
        },
        "/open311/v2/{resource}": {
            "get": open311("resource", "Open311: the services, or requests by id or filters (`start_date`, `end_date`, `status`, `service_code`)."),
            "post": open311("resource", "Open311: a new service request (`requests.json` or `requests.xml`, `application/x-www-form-urlencoded`); 201 with `service_request_id`.")
        },
        "/open311/v2/services/{code}": { "get": open311("code", "Open311: one service's definition (`{code}.json` or `{code}.xml`).") },
        "/open311/v2/requests/{id}": { "get": open311("id", "Open311: one request as linkbus knows it (`{id}.json` or `{id}.xml`).") }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use axum::body::Body;
    use axum::http::Method;
    use linkbus_cases::lifecycle::{self, Ladder, Policy};
    use linkbus_cases::webhooks::DeliveryStatus;
    use linkbus_wire::{CloudEvent, Contact, RoutedCase};
    use tower::ServiceExt as _;

    use super::*;
    use crate::config::ApiKey;

    /// The case book without NATS: the lifecycle on records in memory.
    struct Memory {
        records: Mutex<HashMap<String, CaseRecord>>,
        ladder: Ladder,
    }

    impl Cases for Memory {
        fn list(&self, filter: &CaseFilter) -> Vec<CaseRecord> {
            let records = self.records.lock().expect("lock");
            records
                .values()
                .filter(|r| filter.department.as_ref().is_none_or(|d| involves(r, d)))
                .filter(|r| filter.state.is_none_or(|s| s == r.state))
                .cloned()
                .collect()
        }

        fn get(&self, case_id: &str) -> Option<CaseRecord> {
            self.records.lock().expect("lock").get(case_id).cloned()
        }

        fn by_source_id(&self, source: Option<&str>, source_id: &str) -> Option<CaseRecord> {
            let records = self.records.lock().expect("lock");
            let from = |r: &CaseRecord| source.is_none_or(|s| r.reports.first().is_some_and(|f| f.source == s));
            records.values().find(|r| r.case.source_id == source_id && from(r)).cloned()
        }

        fn act<'a>(
            &'a self,
            case_id: &'a str,
            actor: &'a Actor,
            action: &'a Action,
        ) -> BoxFuture<'a, Result<CaseRecord, ActError>> {
            Box::pin(async move {
                let mut records = self.records.lock().expect("lock");
                let r = records.get_mut(case_id).ok_or_else(|| ActError::NotFound(case_id.to_owned()))?;
                let outcome = lifecycle::act(r, actor, action, Timestamp::now(), &Policy::default(), &self.ladder)?;
                *r = outcome.record;
                Ok(r.clone())
            })
        }

        fn department_stats(&self) -> Vec<DepartmentStats> {
            let records = self.records.lock().expect("lock");
            let mut out: Vec<DepartmentStats> = Vec::new();
            for r in records.values() {
                for d in r.departments.iter().chain(&r.rejected_by).chain(&r.accepted_by) {
                    if out.iter().any(|s| &s.department == d) {
                        continue;
                    }
                    out.push(DepartmentStats {
                        department: d.clone(),
                        cases: 1,
                        accepted: usize::from(r.accepted_by.as_ref() == Some(d)),
                        rejected: usize::from(r.rejected_by.contains(d)),
                        ..Default::default()
                    });
                }
            }
            out.sort_by(|a, b| a.department.cmp(&b.department));
            out
        }
    }

    /// Webhook delivery records without NATS: a department's, or a read error.
    struct Hooks(Result<Vec<Delivery>, String>);

    impl Deliveries for Hooks {
        fn deliveries<'a>(&'a self, department: &'a str) -> BoxFuture<'a, Result<Vec<Delivery>, WebhookError>> {
            Box::pin(async move {
                match &self.0 {
                    Ok(all) => Ok(all.iter().filter(|d| d.department == department).cloned().collect()),
                    Err(e) => Err(WebhookError::Read { department: department.to_owned(), source: e.clone().into() }),
                }
            })
        }
    }

    fn delivery(department: &str, stream_sequence: u64, status: DeliveryStatus) -> Delivery {
        let at = Timestamp::now();
        Delivery {
            department: department.into(),
            stream_sequence,
            case_id: Some("sf311-4292128".into()),
            event_type: Some(wire::TYPE_CASE_ROUTED.into()),
            msg_id: format!("sf311-4292128:{stream_sequence}"),
            subject: format!("routed.dept.{department}.sewer_issues"),
            status,
            attempts: 1,
            last_http_status: Some(200),
            last_error: None,
            first_attempt_at: at,
            last_attempt_at: at,
            next_attempt_at: None,
            delivered_at: (status == DeliveryStatus::Delivered).then_some(at),
        }
    }

    const DISPATCHER: &str = "key-dispatcher";
    const SEWER: &str = "key-sewer";
    const OTHER: &str = "key-dpw";
    const OPERATOR: &str = "key-operator";
    const SOURCE: &str = "key-sf311-app";
    /// Another source system's app: it may not reach SF 311's requests.
    const OTHER_SOURCE: &str = "key-other-app";

    /// The documented example case (sewer issues in the Mission, for `puc-sewer-ops`, source id
    /// 4292128), with a reporter, opened by the lifecycle.
    fn state(rate_per_minute: u32) -> ApiState {
        let mut routed: CloudEvent<RoutedCase> =
            serde_json::from_str(include_str!("../../docs/examples/case-routed.json")).expect("example");
        routed.data.case.reporter = Some(Contact { name: Some("A. Resident".into()), phone: Some("555-0100".into()) });
        let record = lifecycle::open(&routed.data, Timestamp::now(), &Policy::default());
        let ladder = Ladder::new(["puc-sewer-ops", "dpw-ops-queue", "sf-311"].map(|d| (d.to_owned(), None)), "sf-311");
        let memory = Memory { records: Mutex::new(HashMap::from([(record.case_id.clone(), record)])), ladder };
        let key = |role, id: &str, key: &str| ApiKey { role, id: id.into(), sha256: hash_key(key), source: None };
        let config = ApiConfig {
            listen: String::new(),
            public_rate_per_minute: rate_per_minute,
            keys: vec![
                key(ApiRole::Dispatcher, "ada", DISPATCHER),
                key(ApiRole::Department, "puc-sewer-ops", SEWER),
                key(ApiRole::Department, "dpw-ops-queue", OTHER),
                key(ApiRole::Operator, "ops", OPERATOR),
                ApiKey { source: Some("/sf311".into()), ..key(ApiRole::Source, "sf311-app", SOURCE) },
                key(ApiRole::Source, "other-app", OTHER_SOURCE),
            ],
        };
        ApiState::new(Arc::new(memory), &config).expect("state")
    }

    const CASE: &str = "/api/cases/sf311-4292128";

    async fn call(
        app: &Router,
        method: Method,
        uri: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = axum::http::Request::builder().method(method).uri(uri);
        if let Some(key) = key {
            request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
        let response = app.clone().oneshot(request.body(body).expect("request")).await.expect("response");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
        let value =
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, value)
    }

    fn assert_error(got: &(StatusCode, Value), status: StatusCode, code: &str) {
        assert_eq!(got.0, status, "{}", got.1);
        assert_eq!(got.1["code"], code, "{}", got.1);
        assert!(got.1["error"].as_str().is_some_and(|e| !e.is_empty()), "{}", got.1);
    }

    #[test]
    fn act_errors_map_to_statuses_and_codes() {
        let cases = [
            (ActError::NotFound("x".into()), StatusCode::NOT_FOUND, ErrorCode::NotFound),
            (Refused::Forbidden("no".into()).into(), StatusCode::FORBIDDEN, ErrorCode::Forbidden),
            (Refused::Invalid("state".into()).into(), StatusCode::CONFLICT, ErrorCode::Invalid),
            (ActError::Store("down".into()), StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable),
        ];
        for (error, status, code) in cases {
            assert_eq!(ApiError::from(error).status(), (status, code));
        }
        let limited = ApiError::RateLimited { retry_after_secs: 3 }.into_response();
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.headers()[header::RETRY_AFTER], "3");
    }

    #[test]
    fn actions_without_fields_refuse_unknown_fields() {
        assert_eq!(parse_action(br#"{"action":"accept"}"#), Ok(Action::Accept {}));
        assert_eq!(parse_action(br#"{"action":"acknowledge_escalation"}"#), Ok(Action::AcknowledgeEscalation {}));
        for body in [&br#"{"action":"accept","x":1}"#[..], br#"{"action":"acknowledge_escalation","note":"x"}"#] {
            let error = parse_action(body).expect_err("an unknown field");
            assert!(matches!(&error, ApiError::Invalid(m) if m.contains("unknown field")), "{error:?}");
        }
    }

    #[test]
    fn keys_are_sha256_hex() {
        assert_eq!(hash_key("test"), "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
        let state = state(60);
        assert_eq!(
            state.principal(SEWER),
            Some(Principal { role: ApiRole::Department, id: "puc-sewer-ops".into(), source: None })
        );
        assert_eq!(state.principal("key-sewe"), None);
        assert_eq!(state.principal(&hash_key(SEWER)), None, "the hash is not the key");
    }

    #[tokio::test]
    async fn keys_are_required_and_checked() {
        let app = app(state(60));
        let missing = call(&app, Method::GET, "/api/cases", None, None).await;
        assert_error(&missing, StatusCode::UNAUTHORIZED, "unauthorized");
        assert_error(
            &call(&app, Method::GET, CASE, Some("nope"), None).await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        );
        let basic =
            axum::http::Request::get("/api/cases").header(header::AUTHORIZATION, "Basic a2V5").body(Body::empty());
        let response = app.clone().oneshot(basic.expect("request")).await.expect("response");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
        // Authentication comes before anything else is looked at.
        let post = call(&app, Method::POST, "/api/cases/nope/actions", None, Some(json!({"bad": 1}))).await;
        assert_error(&post, StatusCode::UNAUTHORIZED, "unauthorized");
        let (status, text) = call(&app, Method::GET, "/healthz", None, None).await;
        assert_eq!((status, text), (StatusCode::OK, Value::String("ok".into())));
        let (status, doc) = call(&app, Method::GET, "/api/openapi.json", None, None).await;
        assert_eq!((status, doc), (StatusCode::OK, openapi()));
        assert_error(&call(&app, Method::GET, "/api/nothing", None, None).await, StatusCode::NOT_FOUND, "not_found");
    }

    #[tokio::test]
    async fn departments_see_and_act_on_their_cases_only() {
        let app = app(state(60));
        let (status, list) = call(&app, Method::GET, "/api/cases", Some(OTHER), None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(list["cases"], json!([]));
        // Asking for another department's cases does not widen what a department key sees.
        let (_, list) = call(&app, Method::GET, "/api/cases?department=puc-sewer-ops", Some(OTHER), None).await;
        assert_eq!(list["cases"], json!([]));
        assert_error(&call(&app, Method::GET, CASE, Some(OTHER), None).await, StatusCode::FORBIDDEN, "forbidden");
        let accept = json!({"action": "accept"});
        let other = call(&app, Method::POST, &format!("{CASE}/actions"), Some(OTHER), Some(accept.clone())).await;
        assert_error(&other, StatusCode::FORBIDDEN, "forbidden");
        let operator = call(&app, Method::POST, &format!("{CASE}/actions"), Some(OPERATOR), Some(accept.clone())).await;
        assert_error(&operator, StatusCode::FORBIDDEN, "forbidden");
        let (status, _) = call(&app, Method::GET, CASE, Some(OPERATOR), None).await;
        assert_eq!(status, StatusCode::OK);

        let (status, list) = call(&app, Method::GET, "/api/cases", Some(SEWER), None).await;
        assert_eq!((status, list["cases"][0]["case_id"].clone()), (StatusCode::OK, json!("sf311-4292128")));
        let (status, record) =
            call(&app, Method::POST, &format!("{CASE}/actions"), Some(SEWER), Some(accept.clone())).await;
        assert_eq!(status, StatusCode::OK, "{record}");
        assert_eq!(record["state"], "accepted");
        let last = &record["timeline"].as_array().expect("timeline").last().cloned().expect("entry");
        assert_eq!(last["actor"], json!({"kind": "department", "id": "puc-sewer-ops"}));
        let again = call(&app, Method::POST, &format!("{CASE}/actions"), Some(SEWER), Some(accept)).await;
        assert_error(&again, StatusCode::CONFLICT, "invalid");
        // A dispatcher acts under their own name.
        let close = json!({"action": "close", "note": "duplicate of a known outage"});
        let (status, record) =
            call(&app, Method::POST, &format!("{CASE}/actions"), Some(DISPATCHER), Some(close)).await;
        assert_eq!(status, StatusCode::OK, "{record}");
        let last = &record["timeline"].as_array().expect("timeline").last().cloned().expect("entry");
        assert_eq!(last["actor"], json!({"kind": "dispatcher", "id": "ada"}));
        let missing =
            call(&app, Method::POST, "/api/cases/nope/actions", Some(DISPATCHER), Some(json!({"action": "accept"})));
        assert_error(&missing.await, StatusCode::NOT_FOUND, "not_found");
    }

    #[tokio::test]
    async fn malformed_requests_are_422() {
        let app = app(state(60));
        for uri in
            ["/api/cases?state=open", "/api/cases?colour=red", "/api/cases?limit=0", "/api/cases?since=yesterday"]
        {
            assert_error(
                &call(&app, Method::GET, uri, Some(DISPATCHER), None).await,
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
            );
        }
        let (status, list) = call(&app, Method::GET, "/api/cases?state=routed&limit=1", Some(DISPATCHER), None).await;
        assert_eq!((status, list["more"].clone()), (StatusCode::OK, json!(false)));
        for body in [
            json!({"action": "explode"}),
            json!({"action": "reject"}),
            json!({"action": "accept", "x": 1}),
            json!({"action": "acknowledge_escalation", "reason": "seen"}),
        ] {
            let got = call(&app, Method::POST, &format!("{CASE}/actions"), Some(SEWER), Some(body)).await;
            assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
        }
        let long = json!({"action": "reject", "reason": "x".repeat(wire::MAX_TEXT_LEN + 1)});
        let got = call(&app, Method::POST, &format!("{CASE}/actions"), Some(SEWER), Some(long)).await;
        assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
        let huge = json!({"action": "reject", "reason": "x".repeat(MAX_BODY)});
        let got = call(&app, Method::POST, &format!("{CASE}/actions"), Some(SEWER), Some(huge)).await;
        assert_error(&got, StatusCode::PAYLOAD_TOO_LARGE, "too_large");
    }

    #[tokio::test]
    async fn residents_see_a_reduced_view_and_rate_resolved_cases() {
        let app = app(state(60));
        let (status, view) = call(&app, Method::GET, "/api/requests/4292128", Some(SOURCE), None).await;
        assert_eq!(status, StatusCode::OK, "{view}");
        assert_eq!(view["state"], "routed");
        assert_eq!(view["can_rate"], false);
        let text = view.to_string();
        for private in ["555-0100", "A. Resident", "puc-sewer-ops", "GUERRERO", "-122.42"] {
            assert!(!text.contains(private), "the public view shows {private}: {text}");
        }
        let rating = json!({"score": 2, "solved": false});
        let early = call(&app, Method::POST, "/api/requests/4292128/rating", Some(SOURCE), Some(rating.clone())).await;
        assert_error(&early, StatusCode::CONFLICT, "invalid");
        for step in [json!({"action": "accept"}), json!({"action": "resolve", "note": "drain cleared"})] {
            let (status, _) = call(&app, Method::POST, &format!("{CASE}/actions"), Some(SEWER), Some(step)).await;
            assert_eq!(status, StatusCode::OK);
        }
        let (status, view) = call(&app, Method::POST, "/api/requests/4292128/rating", Some(SOURCE), Some(rating)).await;
        assert_eq!(status, StatusCode::OK, "{view}");
        assert_eq!(view["state"], "accepted");
        let events: Vec<&str> =
            view["timeline"].as_array().expect("timeline").iter().filter_map(|e| e["event"].as_str()).collect();
        assert_eq!(events, ["routed", "accepted", "resolved", "rated", "reopened"]);
        assert_eq!(view["timeline"][2]["note"], "drain cleared");
        assert!(view["timeline"][0].get("note").is_none(), "routing notes name departments");
        let bad = json!({"score": 6, "solved": true});
        let bad = call(&app, Method::POST, "/api/requests/4292128/rating", Some(SOURCE), Some(bad)).await;
        assert_error(&bad, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
        let missing = call(&app, Method::GET, "/api/requests/0", Some(SOURCE), None).await;
        assert_error(&missing, StatusCode::NOT_FOUND, "not_found");
    }

    #[tokio::test]
    async fn residents_endpoints_take_a_source_dispatcher_or_operator_key() {
        let app = app(state(60));
        const REQUEST: &str = "/api/requests/4292128";
        const RATING: &str = "/api/requests/4292128/rating";
        let rating = json!({"score": 2, "solved": false});
        // No key, an unknown key: 401 with a challenge, before the body or the request is looked at.
        for (method, uri, body) in [(Method::GET, REQUEST, None), (Method::POST, RATING, Some(rating.clone()))] {
            assert_error(
                &call(&app, method.clone(), uri, None, body.clone()).await,
                StatusCode::UNAUTHORIZED,
                "unauthorized",
            );
            assert_error(
                &call(&app, method.clone(), uri, Some("nope"), body).await,
                StatusCode::UNAUTHORIZED,
                "unauthorized",
            );
            let request = axum::http::Request::builder().method(method).uri(uri).body(Body::empty()).expect("request");
            let response = app.clone().oneshot(request).await.expect("response");
            assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
        }
        let unknown = call(&app, Method::POST, "/api/requests/0/rating", None, Some(json!({"bad": 1}))).await;
        assert_error(&unknown, StatusCode::UNAUTHORIZED, "unauthorized");
        // Another source system's key does not reach SF 311's requests: source ids are per source.
        assert_error(
            &call(&app, Method::GET, REQUEST, Some(OTHER_SOURCE), None).await,
            StatusCode::NOT_FOUND,
            "not_found",
        );
        let other = call(&app, Method::POST, RATING, Some(OTHER_SOURCE), Some(rating.clone())).await;
        assert_error(&other, StatusCode::NOT_FOUND, "not_found");
        // A department key may do neither, even for its own case; an operator reads but does not rate.
        assert_error(&call(&app, Method::GET, REQUEST, Some(SEWER), None).await, StatusCode::FORBIDDEN, "forbidden");
        let department = call(&app, Method::POST, RATING, Some(SEWER), Some(rating.clone())).await;
        assert_error(&department, StatusCode::FORBIDDEN, "forbidden");
        assert_error(
            &call(&app, Method::GET, "/api/requests/0", Some(SEWER), None).await,
            StatusCode::FORBIDDEN,
            "forbidden",
        );
        assert_eq!(call(&app, Method::GET, REQUEST, Some(OPERATOR), None).await.0, StatusCode::OK);
        let operator = call(&app, Method::POST, RATING, Some(OPERATOR), Some(rating.clone())).await;
        assert_error(&operator, StatusCode::FORBIDDEN, "forbidden");
        // A dispatcher reads, and records a rating taken by phone: as the resident's.
        assert_eq!(call(&app, Method::GET, REQUEST, Some(DISPATCHER), None).await.0, StatusCode::OK);
        for step in [json!({"action": "accept"}), json!({"action": "resolve", "note": "drain cleared"})] {
            let (status, _) = call(&app, Method::POST, &format!("{CASE}/actions"), Some(SEWER), Some(step)).await;
            assert_eq!(status, StatusCode::OK);
        }
        let (status, view) = call(&app, Method::POST, RATING, Some(DISPATCHER), Some(rating)).await;
        assert_eq!((status, view["state"].clone()), (StatusCode::OK, json!("accepted")), "{view}");
        let (_, record) = call(&app, Method::GET, CASE, Some(DISPATCHER), None).await;
        let rated = record["timeline"].as_array().expect("timeline").iter().find(|e| e["event"] == "rated").cloned();
        assert_eq!(rated.expect("rated")["actor"], json!({"kind": "resident", "id": "reporter"}));
    }

    #[tokio::test]
    async fn source_keys_may_not_use_the_cases_endpoints() {
        let app = app(state(60));
        for (method, uri, body) in [
            (Method::GET, "/api/cases", None),
            (Method::GET, CASE, None),
            (Method::GET, "/api/cases/nope", None),
            (Method::POST, "/api/cases/sf311-4292128/actions", Some(json!({"action": "accept"}))),
            (Method::POST, "/api/cases/sf311-4292128/actions", Some(json!({"bad": 1}))),
        ] {
            assert_error(&call(&app, method, uri, Some(SOURCE), body).await, StatusCode::FORBIDDEN, "forbidden");
        }
        let (_, record) = call(&app, Method::GET, CASE, Some(DISPATCHER), None).await;
        assert_eq!(record["state"], "routed");
    }

    #[tokio::test]
    async fn residents_are_rate_limited_per_address() {
        let app = app(state(2));
        let from = |ip: [u8; 4]| app.clone().layer(MockConnectInfo(SocketAddr::from((ip, 4000))));
        let (one, two) = (from([192, 0, 2, 1]), from([192, 0, 2, 2]));
        for _ in 0..2 {
            assert_eq!(call(&one, Method::GET, "/api/requests/4292128", Some(SOURCE), None).await.0, StatusCode::OK);
        }
        // A (leaked) key does not lift the limit.
        let third = call(&one, Method::GET, "/api/requests/4292128", Some(SOURCE), None).await;
        assert_error(&third, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
        let rating = json!({"score": 5, "solved": true});
        let rate = call(&one, Method::POST, "/api/requests/4292128/rating", Some(DISPATCHER), Some(rating)).await;
        assert_error(&rate, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
        assert_eq!(call(&two, Method::GET, "/api/requests/4292128", Some(SOURCE), None).await.0, StatusCode::OK);
        // The cases endpoints are not limited.
        assert_eq!(call(&one, Method::GET, CASE, Some(DISPATCHER), None).await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn webhook_deliveries_are_the_departments_own_newest_first() {
        let hooks = Hooks(Ok(vec![
            delivery("puc-sewer-ops", 3, DeliveryStatus::Delivered),
            delivery("puc-sewer-ops", 7, DeliveryStatus::Delivering),
            delivery("dpw-ops-queue", 5, DeliveryStatus::Failed),
        ]));
        let app = app(state(60).with_deliveries(Arc::new(hooks)));
        const SEWER_HOOKS: &str = "/api/webhooks/puc-sewer-ops/deliveries";
        for key in [DISPATCHER, OPERATOR, SEWER] {
            let (status, list) = call(&app, Method::GET, SEWER_HOOKS, Some(key), None).await;
            assert_eq!(status, StatusCode::OK, "{list}");
            let sequences: Vec<&Value> =
                list["deliveries"].as_array().expect("deliveries").iter().map(|d| &d["stream_sequence"]).collect();
            assert_eq!(sequences, [&json!(7), &json!(3)], "newest first");
            assert_eq!(list["deliveries"][1]["status"], "delivered");
        }
        let (_, list) = call(&app, Method::GET, &format!("{SEWER_HOOKS}?limit=1"), Some(DISPATCHER), None).await;
        assert_eq!(list["deliveries"].as_array().map(Vec::len), Some(1));
        assert_eq!(list["deliveries"][0]["stream_sequence"], 7);
        let (_, list) = call(&app, Method::GET, "/api/webhooks/sf-311/deliveries", Some(DISPATCHER), None).await;
        assert_eq!(list, json!({"deliveries": []}));
        // Another department's, or any with a source key: 403.
        for (key, uri) in
            [(OTHER, SEWER_HOOKS), (SEWER, "/api/webhooks/dpw-ops-queue/deliveries"), (SOURCE, SEWER_HOOKS)]
        {
            assert_error(&call(&app, Method::GET, uri, Some(key), None).await, StatusCode::FORBIDDEN, "forbidden");
        }
        assert_error(&call(&app, Method::GET, SEWER_HOOKS, None, None).await, StatusCode::UNAUTHORIZED, "unauthorized");
        for uri in [
            "/api/webhooks/puc.sewer/deliveries",
            "/api/webhooks/puc-sewer-ops/deliveries?limit=0",
            "/api/webhooks/puc-sewer-ops/deliveries?limit=1001",
            "/api/webhooks/puc-sewer-ops/deliveries?limit=1&limit=2",
            "/api/webhooks/puc-sewer-ops/deliveries?status=failed",
        ] {
            let got = call(&app, Method::GET, uri, Some(DISPATCHER), None).await;
            assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
        }
        let (status, _) =
            call(&app, Method::GET, "/api/webhooks/puc-sewer-ops/deliveries?limit=1000", Some(SEWER), None).await;
        assert_eq!(status, StatusCode::OK);

        // Records that cannot be read, or none to read: 503.
        let down = super::app(state(60).with_deliveries(Arc::new(Hooks(Err("no responders".into())))));
        let got = call(&down, Method::GET, SEWER_HOOKS, Some(DISPATCHER), None).await;
        assert_error(&got, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
        let none = super::app(state(60));
        let got = call(&none, Method::GET, SEWER_HOOKS, Some(DISPATCHER), None).await;
        assert_error(&got, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    }

    #[tokio::test]
    async fn department_stats_are_everyones_for_dispatchers_and_own_for_departments() {
        let app = app(state(60));
        let accept = json!({"action": "accept"});
        assert_eq!(
            call(&app, Method::POST, &format!("{CASE}/actions"), Some(SEWER), Some(accept)).await.0,
            StatusCode::OK
        );
        for key in [DISPATCHER, OPERATOR] {
            let (status, stats) = call(&app, Method::GET, "/api/stats/departments", Some(key), None).await;
            assert_eq!(status, StatusCode::OK, "{stats}");
            assert_eq!(stats["departments"].as_array().map(Vec::len), Some(1), "{stats}");
            assert_eq!(stats["departments"][0]["department"], "puc-sewer-ops");
            assert_eq!(stats["departments"][0]["accepted"], 1);
        }
        let (_, own) = call(&app, Method::GET, "/api/stats/departments", Some(SEWER), None).await;
        assert_eq!(own["departments"][0]["accepted"], 1);
        let (status, other) = call(&app, Method::GET, "/api/stats/departments", Some(OTHER), None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            other,
            json!({"departments": [{
                "department": "dpw-ops-queue", "cases": 0, "accepted": 0, "rejected": 0, "ratings": 0,
                "average_score": null, "not_solved": 0, "reopen_rate": null
            }]}),
            "a department with no case gets its own row, empty"
        );
        let got = call(&app, Method::GET, "/api/stats/departments", Some(SOURCE), None).await;
        assert_error(&got, StatusCode::FORBIDDEN, "forbidden");
        let got = call(&app, Method::GET, "/api/stats/departments", None, None).await;
        assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized");
    }

    #[test]
    fn the_bucket_refills_at_the_configured_rate() {
        let limiter = RateLimiter::new(60);
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let t0 = Instant::now();
        for _ in 0..60 {
            assert!(limiter.check(ip, t0).is_ok());
        }
        let wait = limiter.check(ip, t0).expect_err("empty");
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        assert!(limiter.check(ip, t0 + Duration::from_secs(1)).is_ok());
        assert!(limiter.check(ip, t0 + Duration::from_secs(1)).is_err());
    }

    /// A readiness probe with a fixed answer.
    struct Fixed(Result<(), String>);

    impl Readiness for Fixed {
        fn ready(&self) -> BoxFuture<'_, Result<(), String>> {
            Box::pin(std::future::ready(self.0.clone()))
        }
    }

    #[tokio::test]
    async fn readyz_and_metrics_answer_without_a_key() {
        let (status, body) = call(&app(state(60)), Method::GET, "/readyz", None, None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "no probe: not ready");
        assert_eq!(body["ready"], false, "{body}");
        let ready = app(state(60).with_readiness(Arc::new(Fixed(Ok(())))));
        assert_eq!(call(&ready, Method::GET, "/readyz", None, None).await, (StatusCode::OK, json!({ "ready": true })));
        let down = app(state(60).with_readiness(Arc::new(Fixed(Err("NATS is not connected".into())))));
        assert_eq!(
            call(&down, Method::GET, "/readyz", None, None).await,
            (StatusCode::SERVICE_UNAVAILABLE, json!({ "ready": false, "reason": "NATS is not connected" }))
        );

        let registry = prometheus::Registry::new();
        let counter = prometheus::IntCounter::new("linkbus_test_things_total", "Things.").expect("counter");
        registry.register(Box::new(counter.clone())).expect("registers");
        counter.inc();
        let response = app(state(60).with_metrics(registry))
            .oneshot(axum::http::Request::get("/metrics").body(Body::empty()).expect("request"))
            .await
            .expect("response");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], METRICS_CONTENT_TYPE);
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("# TYPE linkbus_test_things_total counter\nlinkbus_test_things_total 1\n"), "{text}");
    }

    #[test]
    fn committed_openapi_document_matches_the_code() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
        let mut generated = serde_json::to_string_pretty(&openapi()).expect("json");
        generated.push('\n');
        if std::env::var_os("UPDATE_OPENAPI").is_some_and(|v| v == "1") {
            std::fs::write(&path, &generated).expect("write docs/openapi.json");
            return;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/openapi.json is out of date with ops/src/api.rs; regenerate it with \
             `UPDATE_OPENAPI=1 cargo test -p linkbus --lib api::tests::committed_openapi_document_matches_the_code`"
        );
    }
}
