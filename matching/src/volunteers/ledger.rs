//! The hourly cap on offers: how many each volunteer was sent in the last hour.

use std::collections::VecDeque;

use foldhash::HashMap;

/// Offers sent to each volunteer in the last hour, for the cap that protects volunteers from
/// alert fatigue. Fed from the offers stream, so it counts the offers of every router replica.
#[derive(Debug, Default)]
pub struct OfferLedger {
    sent: HashMap<String, VecDeque<i64>>,
}

const HOUR_SECONDS: i64 = 3600;

impl OfferLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Notes an offer to `volunteer` at `at` (unix seconds). The times are kept in order (the
    /// replicas' offers arrive nearly in order, so the insert is at or near the end), which makes
    /// counting a binary search: the router asks for every volunteer it passes over.
    pub fn record(&mut self, volunteer: &str, at: i64) {
        let times = self.sent.entry(volunteer.to_owned()).or_default();
        let after = times.partition_point(|t| *t <= at);
        times.insert(after, at);
        let newest = times.back().copied().unwrap_or(at);
        while times.front().is_some_and(|t| *t <= newest - HOUR_SECONDS) {
            times.pop_front();
        }
    }

    /// Offers to `volunteer` in the hour before `now` (unix seconds).
    pub fn in_last_hour(&self, volunteer: &str, now: i64) -> usize {
        self.sent.get(volunteer).map_or(0, |times| times.len() - times.partition_point(|t| *t <= now - HOUR_SECONDS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_offers_of_the_hour_before_now_for_each_volunteer() {
        let mut ledger = OfferLedger::new();
        for at in [0, 10, 3_599] {
            ledger.record("a", at);
        }
        ledger.record("b", 3_000);
        assert_eq!(ledger.in_last_hour("a", 3_599), 3);
        // An offer exactly an hour old no longer counts.
        assert_eq!(ledger.in_last_hour("a", 3_600), 2);
        assert_eq!(ledger.in_last_hour("a", 3_610), 1);
        assert_eq!(ledger.in_last_hour("a", 7_198), 1);
        assert_eq!(ledger.in_last_hour("a", 7_199), 0);
        assert_eq!(ledger.in_last_hour("b", 3_599), 1);
        assert_eq!(ledger.in_last_hour("nobody", 3_599), 0);
    }

    #[test]
    fn recording_forgets_what_is_an_hour_old_or_more() {
        let mut ledger = OfferLedger::new();
        for at in [0, 1, 1_000, 3_601] {
            ledger.record("a", at);
        }
        // 0 and 1 were an hour old or more at 3 601; the rest are kept.
        assert_eq!(ledger.sent["a"], [1_000, 3_601]);
        assert_eq!(ledger.in_last_hour("a", 3_601), 2);
        ledger.record("a", 4_600);
        assert_eq!(ledger.sent["a"], [3_601, 4_600]);
        ledger.record("b", 9_999);
        assert_eq!(ledger.sent["a"], [3_601, 4_600], "another's offer forgets nothing of a's");
    }

    #[test]
    fn offers_recorded_out_of_order_count_as_in_order() {
        let mut ledger = OfferLedger::new();
        for at in [5_000, 1_000, 4_000, 2_000, 6_000] {
            ledger.record("a", at);
        }
        assert_eq!(ledger.sent["a"], [4_000, 5_000, 6_000], "kept in order, an hour before the newest forgotten");
        assert_eq!(ledger.in_last_hour("a", 6_000), 3);
        assert_eq!(ledger.in_last_hour("a", 7_599), 3);
        assert_eq!(ledger.in_last_hour("a", 7_600), 2);
        assert_eq!(ledger.in_last_hour("a", 8_600), 1);
        ledger.record("a", 2_400);
        assert_eq!(ledger.sent["a"], [4_000, 5_000, 6_000], "an hour older than the newest: not kept");
        ledger.record("a", 2_401);
        assert_eq!(ledger.sent["a"], [2_401, 4_000, 5_000, 6_000]);
        ledger.record("a", 5_500);
        assert_eq!(ledger.sent["a"], [2_401, 4_000, 5_000, 5_500, 6_000]);
    }
}
