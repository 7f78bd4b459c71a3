//! The source-system adapters as `linkbus up` runs them: their HTTP routes, served beside the API
//! ([`routes`]), and their NATS listeners, run by the service ([`listen`]). What each adapter does
//! is in the `linkbus-adapters` crate; this module only builds them from the configuration.

use std::sync::Arc;

use anyhow::Context as _;

use axum::Router;
use linkbus_adapters::grid::Grid;
use linkbus_adapters::intake::{Gate, Intake};
use linkbus_adapters::open311::{Open311, RegionCategory};
use linkbus_bus::wire::SourceSystem;
use linkbus_geo_data::Region;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::AdaptersConfig;

/// The enabled adapters' HTTP routes: Open311 at `/open311/v2/`, the grid batch upload.
pub fn routes(config: &AdaptersConfig, region: &Region, intake: &Intake, gate: Arc<dyn Gate>) -> Router {
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
        router = router.merge(Arc::new(Grid::new(config.grid.clone(), intake.clone())).routes(gate));
    }
    router
}

/// The adapters' category maps checked against the region: each target that is not one of its
/// categories (such a report is routed to the catch-all department, as an unknown category).
pub fn check(config: &AdaptersConfig, region: &Region) -> Vec<String> {
    let maps = [("open311", &config.open311.categories), ("grid", &config.grid.categories)];
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

/// Starts the enabled adapters' NATS listeners (grid reports on `adapter.grid.report`) until
/// `shutdown`; they are subscribed when this returns.
pub async fn listen(
    config: &AdaptersConfig,
    client: async_nats::Client,
    intake: &Intake,
    shutdown: CancellationToken,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let mut tasks = Vec::new();
    if config.grid.enabled {
        let reports = Grid::subscribe(&client).await.context("subscribing to grid reports")?;
        client.flush().await.context("subscribing to grid reports")?;
        let grid = Arc::new(Grid::new(config.grid.clone(), intake.clone()));
        tasks.push(tokio::spawn(grid.serve(client, reports, shutdown)));
    }
    Ok(tasks)
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
