//! The adapters' metrics, registered into the binary's registry:
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `linkbus_adapter_messages_total` | counter | `adapter` (`open311`, `grid`), `outcome` (`reported`, `duplicate`, `refused`) |
//!
//! and their dead letters in `linkbus_deadletters_total` (stages `adapter_open311` and `adapter_grid`, reasons
//! `too_large`, `malformed`, `invalid`), registered by the router's metrics.

use prometheus::{IntCounterVec, Opts, Registry};

/// The `adapter` label's values.
const ADAPTERS: [&str; 2] = [crate::open311::STAGE, crate::grid::STAGE];

/// The adapters' counters.
#[derive(Debug, Clone)]
pub struct AdapterMetrics {
    reports: IntCounterVec,
    deadletters: IntCounterVec,
}

impl AdapterMetrics {
    /// Registers `linkbus_adapter_messages_total` in `registry`; dead letters count into
    /// `deadletters` (`linkbus_deadletters_total`).
    pub fn new(registry: &Registry, deadletters: &IntCounterVec) -> prometheus::Result<Self> {
        let reports = IntCounterVec::new(
            Opts::new(
                "linkbus_adapter_messages_total",
                "Reports received by the source-system adapters: published as a case (reported), already known \
                 (duplicate), or refused and dead-lettered.",
            ),
            &["adapter", "outcome"],
        )?;
        registry.register(Box::new(reports.clone()))?;
        // Every series exists from the start (at 0), so rates and alerts see the first report.
        for adapter in ADAPTERS {
            for outcome in ["reported", "duplicate", "refused"] {
                reports.with_label_values(&[adapter, outcome]);
            }
        }
        Ok(Self { reports, deadletters: deadletters.clone() })
    }

    /// Metrics registered nowhere (tests, tools).
    pub fn unregistered() -> Self {
        let vec = |name: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, "unregistered"), labels).expect("valid metric options")
        };
        Self {
            reports: vec("linkbus_adapter_messages_total", &["adapter", "outcome"]),
            deadletters: vec("linkbus_deadletters_total", &["stage", "reason"]),
        }
    }

    /// Counts one report of `adapter` with `outcome` (`reported`, `duplicate`, `refused`).
    pub(crate) fn report(&self, adapter: &str, outcome: &str) {
        self.reports.with_label_values(&[adapter, outcome]).inc();
    }

    /// Counts one message of `adapter` refused and dead-lettered on `stage` with the reason `code`.
    pub(crate) fn dead_letter(&self, adapter: &str, stage: &str, code: &str) {
        self.deadletters.with_label_values(&[stage, code]).inc();
        self.report(adapter, "refused");
    }
}
