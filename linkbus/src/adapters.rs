//! The source-system adapters as `linkbus up` runs them: built and listening on NATS when the
//! service starts ([`start`]), their HTTP routes served beside the API ([`routes`]). What each
//! adapter does is in the `linkbus-adapters` crate, and which adapters there are in its registry
//! (`linkbus_adapters::registry`); this module only hands them what the service and the region
//! give.

use std::sync::Arc;

use anyhow::Context as _;
use async_nats::jetstream;
use axum::Router;
use linkbus_adapters::adapter::{BuildContext, LiveGazetteer, RegionCategory, RouteContext};
use linkbus_adapters::intake::{Gate, Intake};
use linkbus_adapters::registry::{Adapters, AdaptersConfig};
use linkbus_geo_data::Region;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// The enabled adapters' HTTP routes (Open311 at `/open311/v2/`, the grid batch upload, CAP,
/// CAD and commerce at `/api/adapters/…`), offering `region`'s categories where an adapter
/// does; `gate` checks the callers' keys.
pub fn routes(config: &AdaptersConfig, region: &Region, adapters: &Adapters, gate: Arc<dyn Gate>) -> Router {
    for warning in check(config, region) {
        tracing::warn!("{warning}");
    }
    let categories: Vec<RegionCategory> = region
        .categories
        .iter()
        .map(|c| RegionCategory { id: c.id.clone(), name: c.name.clone(), system: c.system })
        .collect();
    adapters.routes(&RouteContext { gate, categories: &categories })
}

/// The adapters' category maps checked against the region: each target that is not one of its
/// categories (such a report is routed to the catch-all department, as an unknown category).
pub fn check(config: &AdaptersConfig, region: &Region) -> Vec<String> {
    let mut out = Vec::new();
    for table in config.tables() {
        for (from, to) in table.category_maps().into_iter().flat_map(|map| &map.map) {
            if region.category(to).is_none() {
                out.push(format!(
                    "adapters.{}.categories: {from:?} = {to:?} is not a category of region {}: such reports go to \
                     the catch-all department",
                    table.kind(),
                    region.manifest.id
                ));
            }
        }
    }
    out
}

/// Builds every enabled adapter, publishing through `intake`, and starts the NATS listeners of
/// those that have one (the grid's `adapter.grid.report`, CAP's and CAD's subjects) until
/// `shutdown`; they are subscribed when this returns. `gazetteer` places CAP areas named by
/// geocode.
pub async fn start(
    config: &Config,
    gazetteer: Arc<LiveGazetteer>,
    js: &jetstream::Context,
    client: async_nats::Client,
    intake: Intake,
    shutdown: CancellationToken,
) -> anyhow::Result<(Arc<Adapters>, Vec<JoinHandle<()>>)> {
    let cx = BuildContext {
        intake,
        js: js.clone(),
        max_report_bytes: config.router.max_payload_bytes,
        streams: config.stream_settings(),
        gazetteer,
    };
    let adapters = Adapters::build(&config.adapters, &cx).await.context("starting the adapters")?;
    let tasks = adapters.listen(&client, &shutdown).await.context("starting the adapters' listeners")?;
    client.flush().await.context("subscribing the adapters' listeners")?;
    Ok((Arc::new(adapters), tasks))
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
