//! How the case book runs: its rules, its durable consumer, its tick, its CloudEvents source, how
//! long closed cases stay in memory.

use std::time::Duration;

use jiff::tz::TimeZone;

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
    /// How long a closed or cancelled case stays in memory (the hot set) after its last change;
    /// then it is read from the bucket when asked for (see the book's `archive` module).
    pub closed_retention: Duration,
    /// The region's time zone: the supervision figures' days, weeks and months are its.
    pub time_zone: TimeZone,
}

impl Default for BookConfig {
    fn default() -> Self {
        Self {
            policy: Policy::default(),
            durable: "linkbus-cases".into(),
            tick: Duration::from_millis(250),
            source: "/linkbus/cases".into(),
            closed_retention: Duration::from_secs(24 * 3600),
            time_zone: TimeZone::UTC,
        }
    }
}
