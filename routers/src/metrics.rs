//! The router's Prometheus metrics, registered into the binary's registry.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `linkbus_router_cases_total` | counter | `system` (the four source systems) |
//! | `linkbus_router_community_matches_total` | counter | `outcome`: `inside`, `on_border`, `nearest`, `unmatched`, `near_border` |
//! | `linkbus_router_department_rules_total` | counter | `kind`: `jurisdiction`, `catch_all` |
//! | `linkbus_router_decision_duration_seconds` | histogram | |
//! | `linkbus_router_ingest_to_routed_seconds` | histogram | |
//! | `linkbus_router_ingest_backlog_messages` | gauge | |
//! | `linkbus_router_volunteers` | gauge | `state`: `available`, `unavailable` |
//! | `linkbus_router_region_swaps_total` | counter | |
//! | `linkbus_deadletters_total` | counter | `stage`, `reason` (fixed codes) |
//! | `linkbus_bus_storage_refused_total` | counter | `stream` (the bus's streams, `other`) |
//!
//! Every labelled series is resolved once, here, into a handle: counting a routed case is a few
//! atomic additions, with no label lookup and no allocation. `linkbus_deadletters_total` is
//! registered here (the router is the first stage that dead-letters) and shared with the later
//! stages through [`RouterMetrics::deadletters`].

use linkbus_bus::metrics::DeadLetterCounter;
use linkbus_bus::storage::StorageHealth;
use linkbus_wire::{CommunityOutcome, Decision, DepartmentRule, SourceSystem};
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// Reason codes of `deadletter.ingest` ([`linkbus_wire::decode::Rejection::code`]).
pub const INGEST_REASONS: [&str; 11] = linkbus_wire::decode::REJECTION_CODES;
/// Reason codes of `deadletter.volunteers`.
pub const VOLUNTEER_REASONS: [&str; 2] = ["malformed", "invalid"];

/// Buckets of the decision duration: a decision takes microseconds (≈ 14 µs with 10⁴
/// communities and 10⁶ volunteers), so 1 µs to 100 ms.
const DECISION_BUCKETS: [f64; 14] =
    [1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 0.1];
/// Buckets of ingest → routed: milliseconds normally, minutes when a backlog builds up.
const INGEST_BUCKETS: [f64; 16] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// The router's metrics: registered series and their pre-resolved label handles.
#[derive(Debug, Clone)]
pub struct RouterMetrics {
    cases: [IntCounter; 4],
    community: [IntCounter; 5],
    rules: [IntCounter; 2],
    /// Wall time of one decision (community, departments, volunteers).
    pub decision_seconds: Histogram,
    /// From the ingest message's JetStream timestamp to the routed case's outputs stored.
    pub ingest_to_routed_seconds: Histogram,
    /// Messages of the routers' durable consumers (one per ingest stream) not yet acked: pending
    /// plus handed out.
    pub backlog: IntGauge,
    volunteers_available: IntGauge,
    volunteers_unavailable: IntGauge,
    /// `linkbus_deadletters_total{stage, reason}`, for the stages after the router to resolve
    /// their own handles ([`DeadLetterCounter::new`]).
    pub deadletters: IntCounterVec,
    deadletter_ingest: DeadLetterCounter,
    deadletter_volunteers: DeadLetterCounter,
    deadletter_regions: DeadLetterCounter,
    /// Region versions swapped in by live reload.
    pub region_swaps: IntCounter,
    /// Volunteer snapshots saved, and saves that failed.
    snapshots: [IntCounter; 2],
    /// Publishes refused for lack of storage (`linkbus_bus_storage_refused_total`), shared with
    /// the adapters' intake and asked by `/readyz`.
    pub storage: StorageHealth,
}

impl RouterMetrics {
    /// Creates the router's metrics and registers them into `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let cases = IntCounterVec::new(
            Opts::new(
                "linkbus_router_cases_total",
                "Cases routed and acknowledged, by the kind of system that reported them.",
            ),
            &["system"],
        )?;
        let community = IntCounterVec::new(
            Opts::new(
                "linkbus_router_community_matches_total",
                "Routed cases by how their community was found: inside one, on a shared border, nearest within the tolerance, or unmatched.",
            ),
            &["outcome"],
        )?;
        let rules = IntCounterVec::new(
            Opts::new(
                "linkbus_router_department_rules_total",
                "Routed cases by how their departments were chosen: a jurisdiction rule, or the region's catch-all.",
            ),
            &["kind"],
        )?;
        let decision_seconds = Histogram::with_opts(
            HistogramOpts::new("linkbus_router_decision_duration_seconds", "Time to decide one case's routing.")
                .buckets(DECISION_BUCKETS.to_vec()),
        )?;
        let ingest_to_routed_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "linkbus_router_ingest_to_routed_seconds",
                "From a case report stored in the ingest stream to its decision and outputs stored.",
            )
            .buckets(INGEST_BUCKETS.to_vec()),
        )?;
        let backlog = IntGauge::new(
            "linkbus_router_ingest_backlog_messages",
            "Ingest messages the routers' durable consumers (one per ingest stream) have not acknowledged yet (pending plus in flight); sampled every second.",
        )?;
        let volunteers = IntGaugeVec::new(
            Opts::new(
                "linkbus_router_volunteers",
                "Volunteers the router knows, by availability; sampled every second.",
            ),
            &["state"],
        )?;
        let deadletters = IntCounterVec::new(
            Opts::new(
                "linkbus_deadletters_total",
                "Messages dead-lettered, by the stage that refused them and the reason code.",
            ),
            &["stage", "reason"],
        )?;
        registry.register(Box::new(cases.clone()))?;
        registry.register(Box::new(community.clone()))?;
        registry.register(Box::new(rules.clone()))?;
        registry.register(Box::new(decision_seconds.clone()))?;
        registry.register(Box::new(ingest_to_routed_seconds.clone()))?;
        registry.register(Box::new(backlog.clone()))?;
        registry.register(Box::new(volunteers.clone()))?;
        let region_swaps = IntCounter::new(
            "linkbus_router_region_swaps_total",
            "Region versions published to the linkbus_regions bucket, checked and swapped in (refused ones are dead letters of stage regions).",
        )?;
        let snapshots = IntCounterVec::new(
            Opts::new(
                "linkbus_router_volunteer_snapshots_total",
                "Snapshots of the volunteer index this router saved to the linkbus_snapshots object store, and saves that failed.",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(deadletters.clone()))?;
        registry.register(Box::new(region_swaps.clone()))?;
        registry.register(Box::new(snapshots.clone()))?;
        let storage_refused = StorageHealth::counter()?;
        registry.register(Box::new(storage_refused.clone()))?;
        Ok(Self {
            cases: SourceSystem::ALL.map(|s| cases.with_label_values(&[s.as_str()])),
            community: ["inside", "on_border", "nearest", "unmatched", "near_border"]
                .map(|o| community.with_label_values(&[o])),
            rules: ["jurisdiction", "catch_all"].map(|k| rules.with_label_values(&[k])),
            decision_seconds,
            ingest_to_routed_seconds,
            backlog,
            volunteers_available: volunteers.with_label_values(&["available"]),
            volunteers_unavailable: volunteers.with_label_values(&["unavailable"]),
            deadletter_ingest: DeadLetterCounter::new(&deadletters, "ingest", &INGEST_REASONS),
            deadletter_volunteers: DeadLetterCounter::new(&deadletters, "volunteers", &VOLUNTEER_REASONS),
            deadletter_regions: DeadLetterCounter::new(&deadletters, "regions", &["invalid"]),
            region_swaps,
            snapshots: ["saved", "failed"].map(|o| snapshots.with_label_values(&[o])),
            deadletters,
            storage: StorageHealth::new(storage_refused),
        })
    }

    /// Metrics registered nowhere: for a router whose figures nobody scrapes (tests, tools).
    pub fn unregistered() -> Self {
        Self::new(&Registry::new()).expect("fresh metrics register into an empty registry")
    }

    /// Counts a routed (and acknowledged) case: its system, community outcome and department rule.
    pub fn routed(&self, routed: Routed) {
        let system = match routed.system {
            SourceSystem::Emergency => 0,
            SourceSystem::Commercial => 1,
            SourceSystem::PublicService => 2,
            SourceSystem::Management => 3,
        };
        self.cases[system].inc();
        let outcome = match routed.community {
            CommunityOutcome::Inside => 0,
            CommunityOutcome::OnBorder => 1,
            CommunityOutcome::Nearest => 2,
            CommunityOutcome::Unmatched => 3,
            CommunityOutcome::NearBorder => 4,
        };
        self.community[outcome].inc();
        self.rules[usize::from(routed.catch_all)].inc();
    }

    /// Counts an ingest message dead-lettered with reason `code`.
    pub fn deadletter_ingest(&self, code: &str) {
        self.deadletter_ingest.inc(code);
    }

    /// Counts a volunteer update dead-lettered with reason `code`.
    pub fn deadletter_volunteers(&self, code: &str) {
        self.deadletter_volunteers.inc(code);
    }

    /// Counts a refused region version.
    pub fn deadletter_region(&self) {
        self.deadletter_regions.inc("invalid");
    }

    /// Counts a volunteer snapshot saved (or a save that failed).
    pub fn volunteer_snapshot(&self, saved: bool) {
        self.snapshots[usize::from(!saved)].inc();
    }

    /// Sets the volunteer gauges.
    pub fn set_volunteers(&self, known: usize, available: usize) {
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.volunteers_available.set(gauge(available));
        self.volunteers_unavailable.set(gauge(known.saturating_sub(available)));
    }
}

/// What the metrics count of a routed case, kept once its decision is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Routed {
    /// The kind of system that reported it.
    pub system: SourceSystem,
    /// How its community was found.
    pub community: CommunityOutcome,
    /// Whether the region's catch-all took it (no jurisdiction rule applied).
    pub catch_all: bool,
}

impl Routed {
    /// The figures of `decision` for a case reported by `system`.
    pub fn of(system: SourceSystem, decision: &Decision) -> Self {
        // Every responsible department was chosen the same way: by one jurisdiction level, or
        // the catch-all alone.
        let catch_all =
            !matches!(decision.departments.first().map(|d| &d.rule), Some(DepartmentRule::Jurisdiction { .. }));
        Self { system, community: decision.community.outcome, catch_all }
    }
}

#[cfg(test)]
mod tests {
    use linkbus_wire::Invalid;
    use linkbus_wire::decode::Rejection;
    use prometheus::Encoder;

    use super::*;

    #[test]
    fn every_ingest_rejection_code_is_pre_resolved() {
        let invalid = Invalid { field: "x".into(), reason: "y".into() };
        let rejections = [
            Rejection::TooLarge { size: 2, limit: 1 },
            Rejection::Malformed(String::new()),
            Rejection::Unsupported(String::new()),
            Rejection::Invalid(invalid),
            Rejection::SubjectMismatch { subject: String::new(), reason: String::new() },
            Rejection::MsgIdMismatch { msg_id: None, id: String::new() },
            Rejection::IdTaken { id: String::new(), other: String::new() },
        ];
        for r in rejections {
            assert!(INGEST_REASONS.contains(&r.code()), "{} is not in INGEST_REASONS", r.code());
        }
    }

    #[test]
    fn series_exist_at_zero_and_count() {
        let registry = Registry::new();
        let metrics = RouterMetrics::new(&registry).expect("registers");
        metrics.deadletter_ingest("malformed");
        metrics.deadletter_ingest("something_new");
        metrics.set_volunteers(10, 7);
        let mut text = Vec::new();
        prometheus::TextEncoder::new().encode(&registry.gather(), &mut text).expect("encodes");
        let text = String::from_utf8(text).expect("utf-8");
        for line in [
            "linkbus_router_cases_total{system=\"management\"} 0",
            "linkbus_router_community_matches_total{outcome=\"unmatched\"} 0",
            "linkbus_router_department_rules_total{kind=\"catch_all\"} 0",
            "linkbus_deadletters_total{reason=\"malformed\",stage=\"ingest\"} 1",
            "linkbus_deadletters_total{reason=\"something_new\",stage=\"ingest\"} 1",
            "linkbus_deadletters_total{reason=\"invalid\",stage=\"volunteers\"} 0",
            "linkbus_router_volunteers{state=\"unavailable\"} 3",
            "linkbus_router_decision_duration_seconds_count 0",
            "linkbus_deadletters_total{reason=\"foreign_id\",stage=\"ingest\"} 0",
            "linkbus_bus_storage_refused_total{stream=\"LINKBUS_INGEST_EMERGENCY\"} 0",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(RouterMetrics::new(&registry).is_err(), "registering twice into one registry is refused");
    }
}
