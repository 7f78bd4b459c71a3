//! The binary's Prometheus registry, and the process-level metrics: the NATS connection and the
//! region data loaded. The routers', the closed loop's and the adapters' metrics
//! (`linkbus_routers::metrics`, `linkbus_cases::metrics`, `linkbus_adapters::metrics`) are registered into the same registry by
//! [`Service::start_with_metrics`](crate::service::Service::start_with_metrics); the HTTP API
//! serves it on `GET /metrics` (`docs/operations.md` lists every series).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `linkbus_nats_connected` | gauge | |
//! | `linkbus_nats_disconnects_total` | counter | |
//! | `linkbus_nats_slow_consumer_events_total` | counter | |
//! | `linkbus_geo_data_info` | gauge (always 1) | `region`, `version` |

use async_nats::Event;
use linkbus_adapters::metrics::AdapterMetrics;
use linkbus_cases::metrics::CaseMetrics;
use linkbus_geo_data::Region;
use linkbus_routers::metrics::RouterMetrics;
use prometheus::{IntCounter, IntGauge, IntGaugeVec, Opts, Registry};

/// The registry one `linkbus` process exposes, with its process-level metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// The NATS connection's state and events.
    pub nats: NatsMetrics,
    geo: IntGaugeVec,
}

/// The NATS connection's metrics, moved by the client's event callback
/// ([`NatsMetrics::observe`], wired by [`crate::service::connect_with_metrics`]).
#[derive(Debug, Clone)]
pub struct NatsMetrics {
    /// 1 while connected, 0 while not.
    pub connected: IntGauge,
    /// Connections lost.
    pub disconnects: IntCounter,
    /// Messages dropped because a subscription's buffer was full.
    pub slow_consumers: IntCounter,
}

impl Metrics {
    /// A fresh registry with the process-level metrics in it.
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let connected = IntGauge::new(
            "linkbus_nats_connected",
            "1 while this process is connected to NATS, 0 while it is not (from the client's connection events).",
        )?;
        let disconnects =
            IntCounter::new("linkbus_nats_disconnects_total", "Times this process's NATS connection was lost.")?;
        let slow_consumers = IntCounter::new(
            "linkbus_nats_slow_consumer_events_total",
            "Slow-consumer events: a subscription's buffer was full and messages were dropped by the client.",
        )?;
        let geo = IntGaugeVec::new(
            Opts::new(
                "linkbus_geo_data_info",
                "The region data loaded for routing: 1 for its region id and data version.",
            ),
            &["region", "version"],
        )?;
        registry.register(Box::new(connected.clone()))?;
        registry.register(Box::new(disconnects.clone()))?;
        registry.register(Box::new(slow_consumers.clone()))?;
        registry.register(Box::new(geo.clone()))?;
        Ok(Self { registry, nats: NatsMetrics { connected, disconnects, slow_consumers }, geo })
    }

    /// Registers the router's, the closed loop's and the adapters' metrics, for one service.
    pub fn register_service(&self) -> prometheus::Result<(RouterMetrics, CaseMetrics, AdapterMetrics)> {
        let router = RouterMetrics::new(&self.registry)?;
        let cases = CaseMetrics::new(&self.registry, &router.deadletters)?;
        let adapters = AdapterMetrics::new(&self.registry, &router.deadletters)?;
        Ok((router, cases, adapters))
    }

    /// The registry, to register more metrics into and to serve.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Records the region loaded: `linkbus_geo_data_info{region, version} 1`, the only series.
    pub fn region_loaded(&self, region: &Region) {
        self.geo.reset();
        self.geo.with_label_values(&[region.manifest.id.as_str(), region.manifest.version.as_str()]).set(1);
    }

    /// The registry in Prometheus's text format 0.0.4.
    pub fn render(&self) -> String {
        linkbus_http::api::render(&self.registry)
    }
}

impl NatsMetrics {
    /// Moves the metrics for one client event.
    pub fn observe(&self, event: &Event) {
        match event {
            Event::Connected => self.connected.set(1),
            Event::Disconnected => {
                self.connected.set(0);
                self.disconnects.inc();
            }
            Event::Closed => self.connected.set(0),
            Event::SlowConsumer(_) => self.slow_consumers.inc(),
            Event::LameDuckMode | Event::Draining | Event::ServerError(_) | Event::ClientError(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_move_the_connection_metrics() {
        let metrics = Metrics::new().expect("registers");
        let nats = &metrics.nats;
        nats.observe(&Event::Connected);
        assert_eq!(nats.connected.get(), 1);
        nats.observe(&Event::SlowConsumer(7));
        nats.observe(&Event::Disconnected);
        assert_eq!((nats.connected.get(), nats.disconnects.get(), nats.slow_consumers.get()), (0, 1, 1));
        nats.observe(&Event::Connected);
        assert_eq!(nats.connected.get(), 1);
        let text = metrics.render();
        assert!(text.contains("# TYPE linkbus_nats_slow_consumer_events_total counter"), "{text}");
        assert!(text.contains("linkbus_nats_connected 1"), "{text}");
    }
}
