//! The rules of the loop: deadlines by priority, the offer timeout, when reports are duplicates.

use jiff::SignedDuration;

/// Deadlines for one priority.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Deadlines {
    /// A department must accept within this.
    pub accept: SignedDuration,
    /// The accepting department must resolve within this.
    pub resolve: SignedDuration,
}

/// When reports are the same incident.
#[derive(Debug, Clone, PartialEq)]
pub struct MergePolicy {
    /// At most this far apart, metres.
    pub distance_m: f64,
    /// Reported at most this far apart in time.
    pub window: SignedDuration,
    /// Categories that describe the same kind of incident (a category is always compatible with
    /// itself), e.g. `["fire", "smoke"]`.
    pub groups: Vec<Vec<String>>,
}

/// The rules of the loop.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Deadlines by priority: `[p1, p2, p3, p4]`.
    pub deadlines: [Deadlines; 4],
    /// A volunteer who has not answered an offer within this is passed over.
    pub offer_timeout: SignedDuration,
    /// Duplicate detection.
    pub merge: MergePolicy,
}

impl Default for Policy {
    fn default() -> Self {
        let d = |accept_s: i64, resolve_s: i64| Deadlines {
            accept: SignedDuration::from_secs(accept_s),
            resolve: SignedDuration::from_secs(resolve_s),
        };
        Self {
            deadlines: [d(60, 3_600), d(300, 4 * 3_600), d(3_600, 3 * 86_400), d(4 * 3_600, 7 * 86_400)],
            offer_timeout: SignedDuration::from_secs(120),
            merge: MergePolicy { distance_m: 200.0, window: SignedDuration::from_secs(1_800), groups: vec![] },
        }
    }
}

impl Policy {
    /// The deadlines of a priority (clamped to 1–4).
    pub fn deadlines(&self, priority: u8) -> Deadlines {
        self.deadlines[usize::from(priority.clamp(1, 4) - 1)]
    }
}
