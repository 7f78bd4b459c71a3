//! What every handler of the API shares: [`ApiState`] and its builder, and the traits through
//! which it reaches the rest of linkbus ([`Cases`], [`Deliveries`], [`Reports`], [`Readiness`]; traits so the
//! handlers can be tested without NATS); and the residents' rate limit, which the adapters share
//! through [`Gate`].
//!
//! **Whose budget** a resident request spends ([`Budget`]): its key holder's (a key, or a console
//! session), or, without a valid key, its client address's. So requests without a key cannot
//! spend a key's budget, and a leaked key still cannot go faster than its own. The Open311
//! adapter asks [`Gate::admit`] with the address alone, before it reads its form: the adapters'
//! routes are therefore served inside [`with_caller`], which finds the request's key first (the
//! `Authorization` header, an `api_key` in the query string or in a form body) and leaves its
//! budget where `admit` finds it (a task-local for the request).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{FromRef, Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt as _;
use futures::future::BoxFuture;
use linkbus_adapters::intake::{Caller, Gate};
use linkbus_adapters::{open311, web};
use linkbus_cases::book::CaseStore;
use linkbus_cases::reports::{ReportBook, ReportError, ReportVersion};
use linkbus_cases::supervision::MonthlyReport;
use linkbus_cases::webhooks::{self, Delivery, WebhookError};

use crate::auth::session::cookie;
use crate::auth::{Auth, Principal};
use crate::config::{ApiConfig, ApiRole, PublicStatsConfig};
use crate::console::Console;
use crate::error::Error;
use crate::names::RegionNames;
use crate::rate_limit::RateLimiter;
use crate::track::Track;
use crate::volunteer::VolunteerApp;

/// The most of a form body read to find its `api_key` (the Open311 adapter takes no more).
const FORM_KEY_MAX: usize = open311::MAX_BODY;

/// Whose rate-limit budget a resident request spends.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Budget {
    /// A key holder's (by role and id): a valid key, or a console session.
    Holder(ApiRole, String),
    /// A client address's: no valid key.
    Address(IpAddr),
}

impl Budget {
    fn of(principal: Option<Principal>, ip: IpAddr) -> Self {
        principal.map_or(Self::Address(ip), |p| Self::Holder(p.role, p.id))
    }
}

tokio::task_local! {
    /// The budget of the adapter request being served ([`with_caller`]), for [`Gate::admit`].
    static ADAPTER_BUDGET: Budget;
}

/// What the API needs of the webhooks' delivery records (implemented for a JetStream context by
/// [`webhooks::deliveries`]).
pub trait Deliveries: Send + Sync + 'static {
    /// The department's delivery records, oldest message first.
    fn deliveries<'a>(&'a self, department: &'a str) -> BoxFuture<'a, Result<Vec<Delivery>, WebhookError>>;
}

impl Deliveries for jetstream::Context {
    fn deliveries<'a>(&'a self, department: &'a str) -> BoxFuture<'a, Result<Vec<Delivery>, WebhookError>> {
        Box::pin(webhooks::deliveries(self, department))
    }
}

/// What the API needs of the issued monthly reports (implemented by
/// [`linkbus_cases::reports::ReportBook`]).
pub trait Reports: Send + Sync + 'static {
    /// Every version issued, by month then version.
    fn versions(&self) -> BoxFuture<'_, Result<Vec<ReportVersion>, ReportError>>;
    /// A month's report: `version`, or the latest.
    fn get<'a>(
        &'a self,
        month: &'a str,
        version: Option<u32>,
    ) -> BoxFuture<'a, Result<Option<MonthlyReport>, ReportError>>;
    /// Stores `report` as its month's next version.
    fn issue(&self, report: MonthlyReport) -> BoxFuture<'_, Result<MonthlyReport, ReportError>>;
}

impl Reports for ReportBook {
    fn versions(&self) -> BoxFuture<'_, Result<Vec<ReportVersion>, ReportError>> {
        Box::pin(ReportBook::versions(self))
    }

    fn get<'a>(
        &'a self,
        month: &'a str,
        version: Option<u32>,
    ) -> BoxFuture<'a, Result<Option<MonthlyReport>, ReportError>> {
        Box::pin(ReportBook::get(self, month, version))
    }

    fn issue(&self, report: MonthlyReport) -> BoxFuture<'_, Result<MonthlyReport, ReportError>> {
        Box::pin(ReportBook::issue(self, report))
    }
}

/// What `/readyz` asks (implemented by the running service, `linkbus::service::Service::readiness`).
pub trait Readiness: Send + Sync + 'static {
    /// `Ok` when the service can do its work; else why not, in words.
    fn ready(&self) -> BoxFuture<'_, Result<(), String>>;
}

/// The API's shared state: the case book, the webhook delivery records, the keys (and console
/// sessions), the residents' rate limiter, and what else is served beside the API (metrics,
/// readiness, the console, the adapters' routes).
#[derive(Clone)]
pub struct ApiState {
    pub(crate) cases: Arc<dyn CaseStore>,
    pub(crate) deliveries: Option<Arc<dyn Deliveries>>,
    pub(crate) reports: Option<Arc<dyn Reports>>,
    pub(crate) public_stats: PublicStatsConfig,
    pub(crate) auth: Auth,
    limiter: Arc<RateLimiter<Budget>>,
    pub(crate) metrics: prometheus::Registry,
    pub(crate) readiness: Option<Arc<dyn Readiness>>,
    pub(crate) console: Option<Arc<Console>>,
    pub(crate) volunteers: Option<Arc<VolunteerApp>>,
    pub(crate) track: Option<Arc<Track>>,
    pub(crate) adapters: Router,
    pub(crate) names: Option<Arc<RegionNames>>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState").field("auth", &self.auth).finish_non_exhaustive()
    }
}

impl ApiState {
    /// The state for `cases` with the keys and limits of `config`.
    pub fn new(cases: Arc<dyn CaseStore>, config: &ApiConfig) -> Result<Self, Error> {
        Ok(Self {
            cases,
            deliveries: None,
            reports: None,
            public_stats: config.public_stats.clone(),
            auth: Auth::new(config)?,
            limiter: Arc::new(RateLimiter::new(config.public_rate_per_minute)),
            metrics: prometheus::Registry::new(),
            readiness: None,
            console: None,
            volunteers: None,
            track: None,
            adapters: Router::new(),
            names: None,
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

    /// Writes case explanations in the reader's language with the region's names (without,
    /// the stored English sentences).
    pub fn with_region_names(mut self, names: Arc<RegionNames>) -> Self {
        self.names = Some(names);
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

    /// Serves the volunteers' app and its API (`/volunteer/`, `/api/volunteer/me…`,
    /// `/api/volunteers/{id}/credential`; without, those answer 404).
    pub fn with_volunteers(mut self, app: Arc<VolunteerApp>) -> Self {
        self.volunteers = Some(app);
        self
    }

    /// Serves the resident's tracking page (`/track/…`, `/api/track/…`; without, those answer
    /// 404), checking its proofs with `track`.
    pub fn with_track(mut self, track: Arc<Track>) -> Self {
        self.track = Some(track);
        self
    }

    /// Keeps and serves the monthly reports in `reports` (without, their endpoints answer 503).
    pub fn with_reports(mut self, reports: Arc<dyn Reports>) -> Self {
        self.reports = Some(reports);
        self
    }

    /// Serves the dispatcher console (`/`, `/console/…`; without, those answer 404), and takes its
    /// session cookie in place of a key.
    pub fn with_console(mut self, console: Arc<Console>) -> Self {
        self.auth = self.auth.with_sessions(console.sessions());
        self.console = Some(console);
        self
    }
}

impl FromRef<ApiState> for Auth {
    fn from_ref(state: &ApiState) -> Self {
        state.auth.clone()
    }
}

/// What the source-system adapters ask of the API: who holds a key, and the residents' rate limit.
impl Gate for ApiState {
    fn caller(&self, key: &str) -> Option<Caller> {
        let principal = self.auth.principal(key)?;
        Some(match (principal.role, principal.source) {
            (ApiRole::Source, Some(source)) => Caller::Source(source),
            (ApiRole::Dispatcher | ApiRole::Operator, _) => Caller::Staff,
            _ => Caller::Other,
        })
    }

    /// Spends the budget [`with_caller`] found for this request (the address's where it found
    /// none, or outside it).
    fn admit(&self, ip: IpAddr) -> Result<(), Duration> {
        let budget = ADAPTER_BUDGET.try_with(Budget::clone).unwrap_or(Budget::Address(ip));
        self.spend(budget)
    }
}

impl ApiState {
    /// Takes one resident request out of `budget`, or says how long until there is room.
    pub(crate) fn spend(&self, budget: Budget) -> Result<(), Duration> {
        self.limiter.check(budget, Instant::now())
    }

    /// The budget of a request to the residents' endpoints: its key's, else its console
    /// session's, else its address's.
    pub(crate) fn budget(&self, headers: &HeaderMap, ip: IpAddr) -> Budget {
        let principal = match web::bearer(headers) {
            Some(key) => self.auth.principal(&key),
            None if !headers.contains_key(header::AUTHORIZATION) => {
                cookie(headers).and_then(|value| self.auth.session(value)).map(|s| s.principal)
            }
            None => None,
        };
        Budget::of(principal, ip)
    }
}

/// Serves an adapter's request with its [`Budget`] where [`Gate::admit`] finds it: the key of its
/// `Authorization` header, of `api_key` in its query string, or of `api_key` in its form body (a
/// POST of a form [`open311::read_fields`] reads, url-encoded or multipart, read up to
/// [`FORM_KEY_MAX`] and handed on unchanged); the address's without a valid one.
pub(crate) async fn with_caller(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let ip = web::client_ip(&request);
    let query_key = || {
        let query = request.uri().query()?;
        let pairs = open311::parse_form(query.as_bytes()).ok()?;
        pairs.into_iter().find_map(|(name, value)| (name == "api_key").then_some(value))
    };
    let (request, key) = match web::bearer(request.headers()).or_else(query_key) {
        Some(key) => (request, Some(key)),
        None => form_key(request).await,
    };
    let budget = Budget::of(key.and_then(|k| state.auth.principal(&k)), ip);
    ADAPTER_BUDGET.scope(budget, next.run(request)).await
}

/// The `api_key` of a form body, and the request with its body as it was.
async fn form_key(request: Request) -> (Request, Option<String>) {
    if request.method() != Method::POST || !open311::is_form(request.headers()) {
        return (request, None);
    }
    let (parts, mut body) = request.into_parts();
    let mut read = Vec::new();
    let mut failed = None;
    let complete = loop {
        if read.len() > FORM_KEY_MAX {
            break false;
        }
        let frame = std::future::poll_fn(|cx| hyper::body::Body::poll_frame(std::pin::Pin::new(&mut body), cx)).await;
        match frame {
            Some(Ok(frame)) => read.extend_from_slice(&frame.into_data().unwrap_or_default()),
            Some(Err(e)) => {
                failed = Some(e);
                break false;
            }
            None => break true,
        }
    };
    let read = Bytes::from(read);
    let key = if complete {
        let form = open311::read_fields(&parts.headers, read.clone()).await.ok().unwrap_or_default();
        form.pairs.into_iter().find_map(|(name, value)| (name == "api_key").then_some(value))
    } else {
        None
    };
    let body = match (complete, failed) {
        (true, _) => Body::from(read),
        (false, Some(e)) => Body::from_stream(futures::stream::iter([Ok(read), Err(e)])),
        (false, None) => Body::from_stream(futures::stream::once(async { Ok(read) }).chain(body.into_data_stream())),
    };
    (Request::from_parts(parts, body), key)
}
