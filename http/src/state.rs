//! What every handler of the API shares: [`ApiState`] and its builder, and the traits through
//! which it reaches the rest of linkbus ([`Cases`], [`Deliveries`], [`Readiness`]; traits so the
//! handlers can be tested without NATS).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use axum::Router;
use axum::extract::FromRef;
use futures::future::BoxFuture;
use linkbus_adapters::intake::{Caller, Gate};
use linkbus_cases::book::CaseStore;
use linkbus_cases::webhooks::{self, Delivery, WebhookError};

use crate::auth::Auth;
use crate::config::{ApiConfig, ApiRole};
use crate::console::Console;
use crate::error::Error;
use crate::rate_limit::RateLimiter;

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
    pub(crate) auth: Auth,
    limiter: Arc<RateLimiter>,
    pub(crate) metrics: prometheus::Registry,
    pub(crate) readiness: Option<Arc<dyn Readiness>>,
    pub(crate) console: Option<Arc<Console>>,
    pub(crate) adapters: Router,
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
            auth: Auth::new(config)?,
            limiter: Arc::new(RateLimiter::new(config.public_rate_per_minute.max(1))),
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

    fn admit(&self, ip: IpAddr) -> Result<(), Duration> {
        self.limiter.check(ip, Instant::now())
    }
}
