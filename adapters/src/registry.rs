//! The adapters `linkbus up` runs, and the only module that knows them all: the `[adapters]`
//! table ([`AdaptersConfig`], one table per adapter) and the running set built from it
//! ([`Adapters`]). Every adapter is wired the same way, through [`AdapterConfig`] and
//! [`Adapter`]; adding one is a table here and its module.
//!
//! `sf311` is not among them: it reads DataSF CSV exports for `linkbus replay`, the simulator and
//! the region builder, with no table, route or listener in the service (a format, as a vector
//! codec is, not a source).

use std::sync::Arc;

use axum::Router;
use serde::Deserialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::adapter::{Adapter, AdapterConfig, BuildContext, BuildError, ConfigError, RouteContext};
use crate::cad::CadConfig;
use crate::cap::CapConfig;
use crate::commerce::CommerceConfig;
use crate::grid::GridConfig;
use crate::intake;
use crate::open311::Open311Config;

/// `[adapters]`: one table per source-system adapter. Every adapter runs unless its table says
/// `enabled = false` (the commerce adapter serves orders once a platform is configured).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaptersConfig {
    /// `[adapters.open311]`: the Open311 GeoReport v2 API at `/open311/v2/`.
    pub open311: Open311Config,
    /// `[adapters.grid]`: grid-management reports on `adapter.grid.report` and batch uploads.
    pub grid: GridConfig,
    /// `[adapters.cap]`: CAP 1.2 alerts over HTTP and NATS ([`crate::cap`]).
    pub cap: CapConfig,
    /// `[adapters.cad]`: dispatch-system incidents over HTTP and NATS ([`crate::cad`]).
    pub cad: CadConfig,
    /// `[adapters.commerce]`: signed order webhooks of commercial platforms ([`crate::commerce`]).
    pub commerce: CommerceConfig,
}

impl AdaptersConfig {
    /// Every adapter's table, in the order of [`AdapterKind::ALL`](crate::kind::AdapterKind::ALL).
    pub fn tables(&self) -> [&dyn AdapterConfig; 5] {
        [&self.open311, &self.grid, &self.cap, &self.cad, &self.commerce]
    }

    /// Checks every table, enabled or not; the error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.tables().iter().try_for_each(|table| table.validate())
    }
}

/// The running adapters of one linkbus process.
pub struct Adapters {
    running: Vec<Arc<dyn Adapter>>,
}

impl std::fmt::Debug for Adapters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.running.iter().map(|a| a.kind())).finish()
    }
}

impl Adapters {
    /// Builds every enabled adapter of `config`.
    pub async fn build(config: &AdaptersConfig, cx: &BuildContext) -> Result<Self, BuildError> {
        let mut running = Vec::new();
        for table in config.tables().into_iter().filter(|t| t.enabled()) {
            running.push(table.build(cx).await?);
        }
        Ok(Self { running })
    }

    /// Starts the NATS listeners of the adapters that have one, until `shutdown`; they are
    /// subscribed when this returns (flush the client before relying on it).
    pub async fn listen(
        &self,
        client: &async_nats::Client,
        shutdown: &CancellationToken,
    ) -> Result<Vec<JoinHandle<()>>, BuildError> {
        let mut tasks = Vec::new();
        for adapter in &self.running {
            tasks.extend(adapter.clone().listen(client.clone(), shutdown.clone()).await?);
        }
        Ok(tasks)
    }

    /// Every running adapter's HTTP routes, each request served with its W3C trace context
    /// ([`intake::with_trace`]).
    pub fn routes(&self, cx: &RouteContext<'_>) -> Router {
        self.running
            .iter()
            .fold(Router::new(), |router, adapter| router.merge(adapter.clone().routes(cx)))
            .layer(axum::middleware::from_fn(intake::with_trace))
    }
}
