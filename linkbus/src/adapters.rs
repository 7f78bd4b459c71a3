//! The source-system adapters as `linkbus up` runs them: their HTTP routes, served beside the API
//! ([`routes`]), and their NATS listeners, started by the service ([`start`]). What each adapter does
//! is in the `linkbus-adapters` crate; this module only builds them from the configuration.

use std::sync::Arc;

use anyhow::Context as _;

use axum::Router;
use linkbus_adapters::grid::Grid;
use linkbus_adapters::intake::{Adapters, Gate, Intake};
use linkbus_adapters::open311::{Open311, RegionCategory};
use linkbus_geo_data::Region;
use linkbus_wire::SourceSystem;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use async_nats::jetstream;
use linkbus_cases::book::CaseBook;

use crate::config::{AdaptersConfig, Config};

/// The enabled adapters' HTTP routes: Open311 at `/open311/v2/`, the grid batch upload, and
/// CAP, CAD and commerce at `/api/adapters/…`; `gate` checks the callers' keys.
pub fn routes(config: &AdaptersConfig, region: &Region, adapters: &Arc<Adapters>, gate: Arc<dyn Gate>) -> Router {
    let intake = adapters.intake();
    for warning in check(config, region) {
        tracing::warn!("{warning}");
    }
    let mut router = Router::new();
    if config.open311.enabled {
        let categories: Vec<RegionCategory> = region
            .categories
            .iter()
            .filter(|c| c.system == SourceSystem::PublicService)
            .map(|c| RegionCategory { id: c.id.clone(), name: c.name.clone() })
            .collect();
        router = router.merge(Open311::new(config.open311.clone(), &categories, intake.clone(), gate.clone()).routes());
    }
    if config.grid.enabled {
        router = router.merge(Arc::new(Grid::new(config.grid.clone(), intake.clone())).routes(gate.clone()));
    }
    router.merge(adapters.router(gate))
}

/// The adapters' category maps checked against the region: each target that is not one of its
/// categories (such a report is routed to the catch-all department, as an unknown category).
pub fn check(config: &AdaptersConfig, region: &Region) -> Vec<String> {
    let mut maps = vec![
        ("open311", &config.open311.categories),
        ("grid", &config.grid.categories),
        ("cap", &config.cap.categories),
        ("cad", &config.cad.categories),
    ];
    maps.extend(config.commerce.platforms.iter().map(|p| ("commerce", &p.categories)));
    let mut out = Vec::new();
    for (adapter, map) in maps {
        for (from, to) in &map.map {
            if region.category(to).is_none() {
                out.push(format!(
                    "adapters.{adapter}.categories: {from:?} = {to:?} is not a category of region {}: such reports go \
                     to the catch-all department",
                    region.manifest.id
                ));
            }
        }
    }
    out
}

/// Starts every enabled adapter publishing through `intake`: the grid's NATS listener
/// (`adapter.grid.report`) and the CAP, CAD and commerce adapters (listening on their subjects),
/// until `shutdown`; they are subscribed when this returns.
pub async fn start(
    config: &Config,
    js: &jetstream::Context,
    client: async_nats::Client,
    cases: Arc<CaseBook>,
    intake: Intake,
    shutdown: CancellationToken,
) -> anyhow::Result<(Arc<Adapters>, Vec<JoinHandle<()>>)> {
    let mut tasks = Vec::new();
    let adapters_config = &config.adapters;
    if adapters_config.grid.enabled {
        let reports = Grid::subscribe(&client).await.context("subscribing to grid reports")?;
        let grid = Arc::new(Grid::new(adapters_config.grid.clone(), intake.clone()));
        tasks.push(tokio::spawn(grid.serve(client.clone(), reports, shutdown.clone())));
    }
    let settings = adapters_config.settings(config.router.max_payload_bytes);
    let (adapters, listeners) = Adapters::start(js, client.clone(), cases, intake, settings, shutdown)
        .await
        .map_err(|e| anyhow::anyhow!("starting the adapters: {e}"))?;
    tasks.extend(listeners);
    client.flush().await.context("subscribing the adapters' listeners")?;
    Ok((adapters, tasks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_maps_name_categories_of_the_sf_region_and_others_are_reported() {
        let region = Region::load(concat!(env!("CARGO_MANIFEST_DIR"), "/../geo-data/san-francisco")).expect("SF");
        let mut config = AdaptersConfig::default();
        assert_eq!(check(&config, &region), Vec::<String>::new());
        config.grid.categories.map.insert("event:0701".into(), "potholes".into());
        let warnings = check(&config, &region);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("\"event:0701\" = \"potholes\""), "{warnings:?}");
    }
}
