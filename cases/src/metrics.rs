//! The closed loop's Prometheus metrics, registered into the binary's registry.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `linkbus_cases_routed_to_accepted_seconds` | histogram | |
//! | `linkbus_cases_accepted_to_resolved_seconds` | histogram | |
//! | `linkbus_cases_volunteer_offers_total` | counter | `outcome`: `sent`, `accepted`, `declined`, `expired`, `withdrawn` |
//! | `linkbus_cases_escalations_total` | counter | |
//! | `linkbus_webhook_deliveries_total` | counter | `outcome`: `delivered`, `retried`, `failed` (resolved by [`WebhookMetrics`]) |
//!
//! and the closed loop's stages of `linkbus_deadletters_total` (registered by
//! `linkbus_routers::metrics`): `cases`, `action`, `answer` (`malformed`) and `webhook`
//! (`undeliverable`).
//!
//! The case book counts a transition once it is stored (revision-checked, so one replica counts
//! it, once), from the difference between the record before and after: new timeline entries give
//! the stage durations and escalations, offers whose status changed give the offer outcomes.

use jiff::Timestamp;
use linkbus_bus::metrics::DeadLetterCounter;
use linkbus_wire::{CaseRecord, OfferStatus, TimelineEntry, TimelineEvent};
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};

use crate::webhooks::WebhookMetrics;

/// Buckets of routed → accepted: departments accept within seconds to hours.
const ACCEPT_BUCKETS: [f64; 14] =
    [1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0, 86400.0];
/// Buckets of accepted → resolved: minutes to a week.
const RESOLVE_BUCKETS: [f64; 12] =
    [60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0, 172800.0, 345600.0, 604800.0];

/// The closed loop's metrics: registered series and their pre-resolved label handles.
#[derive(Debug, Clone)]
pub struct CaseMetrics {
    /// From a case routed (or reopened) to a department accepting it.
    pub routed_to_accepted_seconds: Histogram,
    /// From a department accepting a case to resolving it.
    pub accepted_to_resolved_seconds: Histogram,
    offers_sent: IntCounter,
    offers_accepted: IntCounter,
    offers_declined: IntCounter,
    offers_expired: IntCounter,
    offers_withdrawn: IntCounter,
    /// Escalations: a missed accept or resolve deadline.
    pub escalations: IntCounter,
    /// Webhook deliveries by outcome.
    pub webhooks: WebhookMetrics,
    pub(crate) deadletter_cases: DeadLetterCounter,
    pub(crate) deadletter_action: DeadLetterCounter,
    pub(crate) deadletter_answer: DeadLetterCounter,
    pub(crate) deadletter_replay: DeadLetterCounter,
}

impl CaseMetrics {
    /// Creates the closed loop's metrics in `registry`; its dead letters count into
    /// `deadletters` (`linkbus_deadletters_total`, registered by the router's metrics).
    pub fn new(registry: &Registry, deadletters: &IntCounterVec) -> prometheus::Result<Self> {
        let routed_to_accepted_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "linkbus_cases_routed_to_accepted_seconds",
                "From a case routed (or reopened) to a department accepting it.",
            )
            .buckets(ACCEPT_BUCKETS.to_vec()),
        )?;
        let accepted_to_resolved_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "linkbus_cases_accepted_to_resolved_seconds",
                "From a department accepting a case to resolving it.",
            )
            .buckets(RESOLVE_BUCKETS.to_vec()),
        )?;
        let offers = IntCounterVec::new(
            Opts::new(
                "linkbus_cases_volunteer_offers_total",
                "Offers to volunteers: sent, and how each ended (accepted, declined, expired, withdrawn when another took the case or it ended).",
            ),
            &["outcome"],
        )?;
        let escalations = IntCounter::new(
            "linkbus_cases_escalations_total",
            "Cases escalated because nobody accepted or resolved them in time.",
        )?;
        let deliveries = IntCounterVec::new(
            Opts::new(
                "linkbus_webhook_deliveries_total",
                "Webhook attempts by outcome: delivered (2xx), retried (failed, another attempt scheduled), failed (given up).",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(routed_to_accepted_seconds.clone()))?;
        registry.register(Box::new(accepted_to_resolved_seconds.clone()))?;
        registry.register(Box::new(offers.clone()))?;
        registry.register(Box::new(escalations.clone()))?;
        registry.register(Box::new(deliveries.clone()))?;
        let offer = |outcome: &str| offers.with_label_values(&[outcome]);
        let malformed = |stage| DeadLetterCounter::new(deadletters, stage, &["malformed"]);
        Ok(Self {
            routed_to_accepted_seconds,
            accepted_to_resolved_seconds,
            offers_sent: offer("sent"),
            offers_accepted: offer("accepted"),
            offers_declined: offer("declined"),
            offers_expired: offer("expired"),
            offers_withdrawn: offer("withdrawn"),
            escalations,
            webhooks: WebhookMetrics::new(&deliveries, deadletters),
            deadletter_cases: malformed("cases"),
            deadletter_action: malformed("action"),
            deadletter_answer: malformed("answer"),
            deadletter_replay: malformed("replay"),
        })
    }

    /// Metrics registered nowhere: for a case book whose figures nobody scrapes (tests, tools).
    pub fn unregistered() -> Self {
        let deadletters =
            IntCounterVec::new(Opts::new("linkbus_deadletters_total", "unregistered"), &["stage", "reason"])
                .expect("valid metric options");
        Self::new(&Registry::new(), &deadletters).expect("fresh metrics register into an empty registry")
    }

    /// Counts a newly opened record: the offers the router sent with it.
    pub fn opened(&self, record: &CaseRecord) {
        self.offers_sent.inc_by(record.offers.len() as u64);
    }

    /// Counts what a stored transition from `before` to `after` did.
    pub fn transition(&self, before: &CaseRecord, after: &CaseRecord) {
        let new = after.timeline.get(before.timeline.len()..).unwrap_or_default();
        for (n, entry) in new.iter().enumerate() {
            let earlier = &after.timeline[..before.timeline.len() + n];
            match entry.event {
                TimelineEvent::Accepted => {
                    let waiting = [
                        TimelineEvent::Routed,
                        TimelineEvent::Reopened,
                        TimelineEvent::Rerouted,
                        TimelineEvent::Reassigned,
                    ];
                    if let Some(from) = last_of(earlier, &waiting) {
                        self.routed_to_accepted_seconds.observe(seconds(from, entry.at));
                    }
                }
                TimelineEvent::Resolved => {
                    if let Some(from) = last_of(earlier, &[TimelineEvent::Accepted]) {
                        self.accepted_to_resolved_seconds.observe(seconds(from, entry.at));
                    }
                }
                _ => {}
            }
        }
        self.escalations.inc_by(u64::from(after.escalations.saturating_sub(before.escalations)));
        for (n, offer) in after.offers.iter().enumerate() {
            let was = before.offers.get(n).filter(|o| o.volunteer_id == offer.volunteer_id).map(|o| o.status);
            if was == Some(offer.status) {
                continue;
            }
            match (was, offer.status) {
                (None, _) => self.offers_sent.inc(),
                (_, OfferStatus::Accepted) => self.offers_accepted.inc(),
                (_, OfferStatus::Declined) => self.offers_declined.inc(),
                (_, OfferStatus::Expired) => self.offers_expired.inc(),
                (_, OfferStatus::Withdrawn) => self.offers_withdrawn.inc(),
                (_, OfferStatus::Offered) => {}
            }
        }
    }
}

/// When the last entry of one of `events` happened.
fn last_of(timeline: &[TimelineEntry], events: &[TimelineEvent]) -> Option<Timestamp> {
    timeline.iter().rev().find(|e| events.contains(&e.event)).map(|e| e.at)
}

fn seconds(from: Timestamp, to: Timestamp) -> f64 {
    to.duration_since(from).as_secs_f64().max(0.0)
}

#[cfg(test)]
mod tests {
    use jiff::SignedDuration;
    use linkbus_wire::{Action, Actor, ActorKind, CloudEvent, RoutedCase};
    use prometheus::Encoder;

    use super::*;
    use crate::lifecycle::{self, Ladder, Policy};

    fn routed() -> RoutedCase {
        let event: CloudEvent<RoutedCase> =
            serde_json::from_str(include_str!("../../docs/examples/case-routed.json")).expect("example");
        event.data
    }

    #[test]
    fn stage_durations_escalations_and_offers_come_from_the_transitions() {
        let registry = Registry::new();
        let deadletters =
            IntCounterVec::new(Opts::new("linkbus_deadletters_total", "x"), &["stage", "reason"]).expect("opts");
        let metrics = CaseMetrics::new(&registry, &deadletters).expect("registers");
        let policy = Policy::default();
        let ladder = Ladder::new(["puc-sewer-ops", "sf-311"].map(|d| (d.to_owned(), None)), "sf-311");
        let t0 = Timestamp::now();
        let opened = lifecycle::open(&routed(), t0, &policy);
        metrics.opened(&opened);
        let department = Actor { kind: ActorKind::Department, id: opened.departments[0].clone() };
        let at = |s: i64| t0 + SignedDuration::from_secs(s);
        let accepted =
            lifecycle::act(&opened, &department, &Action::Accept {}, at(90), &policy, &ladder).expect("accepts").record;
        metrics.transition(&opened, &accepted);
        let resolve = Action::Resolve { note: "fixed".into() };
        let resolved =
            lifecycle::act(&accepted, &department, &resolve, at(3690), &policy, &ladder).expect("resolves").record;
        metrics.transition(&accepted, &resolved);
        metrics.transition(&resolved, &resolved);

        assert_eq!(metrics.routed_to_accepted_seconds.get_sample_count(), 1);
        assert_eq!(metrics.routed_to_accepted_seconds.get_sample_sum(), 90.0);
        assert_eq!(metrics.accepted_to_resolved_seconds.get_sample_count(), 1);
        assert_eq!(metrics.accepted_to_resolved_seconds.get_sample_sum(), 3600.0);
        assert_eq!(metrics.offers_sent.get(), opened.offers.len() as u64);
        assert_eq!(metrics.escalations.get(), 0);

        let mut text = Vec::new();
        prometheus::TextEncoder::new().encode(&registry.gather(), &mut text).expect("encodes");
        let text = String::from_utf8(text).expect("utf-8");
        assert!(text.contains("linkbus_webhook_deliveries_total{outcome=\"failed\"} 0"), "{text}");
        assert!(text.contains("linkbus_cases_volunteer_offers_total{outcome=\"expired\"} 0"), "{text}");
    }
}
