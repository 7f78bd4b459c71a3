//! The volunteers' phone app: a web page served by `linkbus up` at `/volunteer/` (its files
//! under `http/volunteer/`, Leaflet shared with the console), and the thin API it uses, with a
//! per-volunteer credential. `README.md` ("The volunteer's app") says what it shows.
//!
//! | endpoint | who | what | module |
//! |---|---|---|---|
//! | `POST /api/volunteers/{id}/credential` | dispatcher or operator key | issues (or replaces) volunteer `id`'s credential; answers it once, [`Issued`] | `credentials` |
//! | `DELETE /api/volunteers/{id}/credential` | dispatcher or operator key | revokes it: every replica refuses it at once | `credentials` |
//! | `GET /api/volunteer/me` | volunteer credential | the volunteer's status, the region's skills, the hourly cap ([`Me`]) | `status` |
//! | `PUT /api/volunteer/me/status` | volunteer credential | on/off duty, skills, position ([`StatusUpdate`]), checked, throttled | `status` |
//! | `GET /api/volunteer/me/offers` | volunteer credential | Server-Sent Events: `reset` (its offers), then `offer` ([`OfferView`]) per change | `offers` |
//! | `POST /api/volunteer/me/offers/{case_id}/answer` | volunteer credential | `{"accept": bool}`, the answer `volunteer.<id>.answer` takes; answers an action reply | `offers` |
//! | `POST /api/volunteer/me/offers/{case_id}/step` | volunteer credential | `{"step": "arrived" \| "handed_over"}` of the case it took, as `volunteer.<id>.answer` takes it | `offers` |
//! | `GET /api/volunteer/me/history` | volunteer credential | every case offered to it, and its hours ([`History`]) | `offers` |
//! | `GET /volunteer/`, `/volunteer/{file}` | anyone | the app: page, scripts, manifest, service worker | `assets` |
//!
//! **Credentials** are `<volunteer id>.<64 hex digits>`; only their SHA-256 is kept, in the KV
//! bucket [`BUCKET_VOLUNTEER_KEYS`] under the volunteer's id, and read on every request, so a
//! credential issued or revoked on one replica counts on all of them and across restarts. A
//! credential stands for its volunteer only: every endpoint it may use is `…/me…`, so it cannot
//! name another volunteer, and the API keys' endpoints do not take it.
//!
//! **Not a second implementation.** A status is the volunteer-status value the app would put in
//! the volunteers bucket itself (the routers follow it); an answer goes through the case book's
//! [`CaseBook::answer`] (a step through [`CaseBook::volunteer_step`]), which
//! `volunteer.<id>.answer` also calls; the offers come from the case
//! book's records, the ones it writes `volunteer.<id>.offer` and `offer_closed` from, with the
//! record's nearest facility. Never the reporter's contact.

mod assets;
mod credentials;
mod offers;
mod status;

use std::sync::Arc;

use async_nats::jetstream::kv;
use axum::Router;
use axum::extract::FromRef;
use axum::routing::{get, post, put};
use linkbus_cases::book::CaseBook;
use linkbus_routers::service::RouterState;
use prometheus::{IntCounterVec, IntGauge, Opts};
use tokio_util::sync::CancellationToken;

pub use self::credentials::Issued;
pub use self::offers::{History, OfferView};
pub use self::status::{Me, StatusUpdate};
use crate::auth::Auth;
use crate::error::{ApiError, Error};
use crate::rate_limit::RateLimiter;

/// The KV bucket of the volunteers' credentials: key = volunteer id, value = [`credentials`]'s
/// record (the credential's SHA-256, who issued it, when).
pub const BUCKET_VOLUNTEER_KEYS: &str = "linkbus_volunteer_keys";

/// Status updates a volunteer may send a minute (the app sends a position at most every 15 s).
pub const STATUS_PER_MINUTE: u32 = 6;

/// What the volunteers' app and its API use: the case book, the routers' state (the region's
/// skills and communities, the hourly offer ledger), the volunteers' and credentials' buckets.
pub struct VolunteerApp {
    pub(crate) book: Arc<CaseBook>,
    pub(crate) router: Arc<RouterState>,
    /// The volunteers bucket (`linkbus_volunteers`), where statuses are put.
    pub(crate) statuses: kv::Store,
    /// [`BUCKET_VOLUNTEER_KEYS`].
    pub(crate) keys: kv::Store,
    pub(crate) throttle: RateLimiter<String>,
    pub(crate) metrics: VolunteerMetrics,
    pub(crate) stop: CancellationToken,
}

impl std::fmt::Debug for VolunteerApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolunteerApp").finish_non_exhaustive()
    }
}

impl VolunteerApp {
    /// The app for a running service; its offer streams end when `stop` is cancelled.
    pub fn new(
        registry: &prometheus::Registry,
        book: Arc<CaseBook>,
        router: Arc<RouterState>,
        statuses: kv::Store,
        keys: kv::Store,
        stop: CancellationToken,
    ) -> Result<Self, Error> {
        Ok(Self {
            book,
            router,
            statuses,
            keys,
            throttle: RateLimiter::new(STATUS_PER_MINUTE),
            metrics: VolunteerMetrics::new(registry).map_err(Error::Metrics)?,
            stop,
        })
    }
}

/// `linkbus_volunteer_app_*`.
#[derive(Debug, Clone)]
pub(crate) struct VolunteerMetrics {
    pub(crate) streams: IntGauge,
    pub(crate) requests: IntCounterVec,
}

impl VolunteerMetrics {
    fn new(registry: &prometheus::Registry) -> prometheus::Result<Self> {
        let streams = IntGauge::new("linkbus_volunteer_app_offer_streams", "Volunteers' apps following their offers.")?;
        let requests = IntCounterVec::new(
            Opts::new(
                "linkbus_volunteer_app_requests_total",
                "Volunteers' app requests, by what (status, answer, step, credential) and outcome (ok, refused).",
            ),
            &["what", "outcome"],
        )?;
        registry.register(Box::new(streams.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        Ok(Self { streams, requests })
    }

    pub(crate) fn count<T>(&self, what: &str, result: &Result<T, ApiError>) {
        let outcome = if result.is_ok() { "ok" } else { "refused" };
        self.requests.with_label_values(&[what, outcome]).inc();
    }
}

/// What the app's handlers share: the app (404 where it is not served) and the API keys, which
/// issue and revoke credentials.
#[derive(Clone)]
pub(crate) struct AppState {
    app: Option<Arc<VolunteerApp>>,
    auth: Auth,
}

impl FromRef<AppState> for Auth {
    fn from_ref(state: &AppState) -> Self {
        state.auth.clone()
    }
}

impl AppState {
    pub(crate) fn app(&self) -> Result<&Arc<VolunteerApp>, ApiError> {
        self.app.as_ref().ok_or_else(|| ApiError::NotFound("the volunteers' app is not served here".into()))
    }
}

/// The app's routes and its API, checking keys with `auth`; where `app` is `None` they answer
/// 404.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>(app: Option<Arc<VolunteerApp>>, auth: Auth) -> Router<S> {
    Router::new()
        .route("/api/volunteers/{id}/credential", post(credentials::issue).delete(credentials::revoke))
        .route("/api/volunteer/me", get(status::me))
        .route("/api/volunteer/me/status", put(status::update))
        .route("/api/volunteer/me/offers", get(offers::stream))
        .route("/api/volunteer/me/offers/{case_id}/answer", post(offers::answer))
        .route("/api/volunteer/me/offers/{case_id}/step", post(offers::step))
        .route("/api/volunteer/me/history", get(offers::history))
        .route("/volunteer", get(assets::redirect))
        .route("/volunteer/", get(assets::page))
        .route("/volunteer/{*path}", get(assets::file))
        .with_state(AppState { app, auth })
}
