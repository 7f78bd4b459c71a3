//! How the case book runs: its rules, its durable consumer, its tick, its CloudEvents source.

use std::time::Duration;

use crate::lifecycle::Policy;

/// How the case book runs.
#[derive(Debug, Clone)]
pub struct BookConfig {
    /// The rules of the loop.
    pub policy: Policy,
    /// Durable consumer of routed cases, shared by every replica.
    pub durable: String,
    /// How often due deadlines and offers are looked for.
    pub tick: Duration,
    /// The CloudEvents `source` of the events the loop emits.
    pub source: String,
}

impl Default for BookConfig {
    fn default() -> Self {
        Self {
            policy: Policy::default(),
            durable: "linkbus-cases".into(),
            tick: Duration::from_millis(250),
            source: "/linkbus/cases".into(),
        }
    }
}
