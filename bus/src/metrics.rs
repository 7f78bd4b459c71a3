//! What every stage that dead-letters counts: its series of `linkbus_deadletters_total`
//! (registered once, by the router's metrics).

use prometheus::{IntCounter, IntCounterVec};

/// The `linkbus_deadletters_total` series of one stage, resolved once for its known reason
/// codes (so they show as 0 before the first dead letter, and alerts see them rise).
#[derive(Debug, Clone)]
pub struct DeadLetterCounter {
    stage: &'static str,
    vec: IntCounterVec,
    known: Vec<(&'static str, IntCounter)>,
}

impl DeadLetterCounter {
    /// The series of `stage` for each of `reasons`.
    pub fn new(vec: &IntCounterVec, stage: &'static str, reasons: &[&'static str]) -> Self {
        let known = reasons.iter().map(|r| (*r, vec.with_label_values(&[stage, r]))).collect();
        Self { stage, vec: vec.clone(), known }
    }

    /// Counts one dead letter with reason `code` (a code not listed at creation is resolved now).
    pub fn inc(&self, code: &str) {
        match self.known.iter().find(|(r, _)| *r == code) {
            Some((_, counter)) => counter.inc(),
            None => self.vec.with_label_values(&[self.stage, code]).inc(),
        }
    }
}
