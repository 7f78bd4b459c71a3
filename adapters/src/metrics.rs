//! The CAP, CAD and commerce adapters' Prometheus metrics, registered into the binary's registry.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `linkbus_adapter_messages_total` | counter | `adapter`: `cap`, `cad`, `commerce`; `outcome`: `reported`, `duplicate`, `updated`, `refused` |
//!
//! and the adapters' stages of `linkbus_deadletters_total` (registered by
//! `linkbus_routers::metrics`): `adapter_cap`, `adapter_cad`, `adapter_commerce`, with the
//! refusal codes of [`IntakeError::status`](crate::intake::IntakeError::status).

use linkbus_routers::metrics::DeadLetterCounter;
use prometheus::{IntCounterVec, Opts, Registry};

/// The refusal codes, resolved up front so that every series shows from the start.
const REASONS: [&str; 9] = [
    "unauthorized",
    "malformed",
    "too_large",
    "unsupported_media_type",
    "invalid",
    "not_found",
    "forbidden",
    "conflict",
    "unavailable",
];

/// The adapters' metrics.
#[derive(Debug, Clone)]
pub struct AdapterMetrics {
    messages: IntCounterVec,
    pub(crate) deadletter_cap: DeadLetterCounter,
    pub(crate) deadletter_cad: DeadLetterCounter,
    pub(crate) deadletter_commerce: DeadLetterCounter,
}

impl AdapterMetrics {
    /// Registers `linkbus_adapter_messages_total` into `registry`; the dead letters count into
    /// `deadletters` (`linkbus_deadletters_total`, already registered by the router).
    pub fn new(registry: &Registry, deadletters: &IntCounterVec) -> prometheus::Result<Self> {
        let messages = IntCounterVec::new(
            Opts::new(
                "linkbus_adapter_messages_total",
                "Messages the CAP, CAD and commerce adapters received, by adapter and outcome: a new case, \
                 a duplicate of one, a source update applied, or refused (and dead-lettered).",
            ),
            &["adapter", "outcome"],
        )?;
        registry.register(Box::new(messages.clone()))?;
        Ok(Self::with(messages, deadletters))
    }

    fn with(messages: IntCounterVec, deadletters: &IntCounterVec) -> Self {
        for adapter in ["cap", "cad", "commerce"] {
            for outcome in ["reported", "duplicate", "updated", "refused"] {
                messages.with_label_values(&[adapter, outcome]);
            }
        }
        Self {
            messages,
            deadletter_cap: DeadLetterCounter::new(deadletters, "adapter_cap", &REASONS),
            deadletter_cad: DeadLetterCounter::new(deadletters, "adapter_cad", &REASONS),
            deadletter_commerce: DeadLetterCounter::new(deadletters, "adapter_commerce", &REASONS),
        }
    }

    /// Counts one message of `adapter` with `outcome`.
    pub(crate) fn message(&self, adapter: &str, outcome: &str) {
        self.messages.with_label_values(&[adapter, outcome]).inc();
    }
}
