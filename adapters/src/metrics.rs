//! The adapters' metrics, registered into the binary's registry:
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `linkbus_adapter_messages_total` | counter | `adapter` (`open311`, `grid`, `cap`, `cad`, `commerce`), `outcome` (`reported`, `duplicate`, `updated`, `refused`) |
//!
//! and their dead letters in `linkbus_deadletters_total` (stages `adapter_<adapter>`, reasons the
//! refusal codes: `too_large`, `malformed`, `invalid`, and for CAP, CAD and commerce those of
//! [`IntakeError::code`](crate::intake::IntakeError::code)), registered by the router's
//! metrics. Registered once per process (`linkbus`'s `Metrics::register_service`): a second
//! registration fails.

use prometheus::{IntCounterVec, Opts, Registry};

use crate::kind::AdapterKind;

/// The `outcome` label's values.
const OUTCOMES: [&str; 4] = ["reported", "duplicate", "updated", "refused"];

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
                "Messages received by the source-system adapters: published as a case (reported), already known \
                 (duplicate), a source update applied to its case (updated), or refused and dead-lettered.",
            ),
            &["adapter", "outcome"],
        )?;
        registry.register(Box::new(reports.clone()))?;
        // Every series exists from the start (at 0), so rates and alerts see the first report.
        for adapter in AdapterKind::ALL {
            for outcome in OUTCOMES {
                reports.with_label_values(&[adapter.name(), outcome]);
            }
        }
        Ok(Self { reports, deadletters: deadletters.clone() })
    }

    /// Counts one message of `adapter` with `outcome` (`reported`, `duplicate`, `updated`, `refused`).
    pub(crate) fn report(&self, adapter: &str, outcome: &str) {
        self.reports.with_label_values(&[adapter, outcome]).inc();
    }

    /// Counts one message of `adapter` refused and dead-lettered on `stage` with the reason `code`.
    pub(crate) fn dead_letter(&self, adapter: &str, stage: &str, code: &str) {
        self.deadletters.with_label_values(&[stage, code]).inc();
        self.report(adapter, "refused");
    }
}
