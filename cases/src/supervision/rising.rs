//! What is rising: a place's categories whose count this month is above the place's own
//! baseline by more than chance would give (`docs/supervision.md`, "What is rising"). The baseline
//! is the mean of the category's counts over the place's previous months (up to
//! [`BASELINE_MONTHS`], at least [`MIN_BASELINE_MONTHS`] with cases), plus half a case so that a
//! category new to the place is not infinitely surprising; for the month still under way it is
//! scaled by the part of the month gone. A count is judged against a Poisson distribution of that
//! mean: `p = P(X ≥ count)`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The most previous months the baseline is the mean of.
pub const BASELINE_MONTHS: usize = 6;
/// The fewest previous months with cases a place needs for a baseline.
pub const MIN_BASELINE_MONTHS: usize = 3;
/// The fewest cases a category needs this month to be called rising.
pub const MIN_COUNT: u64 = 3;
/// `p` below this: "likely" rising.
pub const LIKELY_P: f64 = 0.01;
/// `p` below this: "possibly" rising.
pub const POSSIBLE_P: f64 = 0.05;

/// How sure a rise is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    /// `p` < [`LIKELY_P`].
    Likely,
    /// `p` < [`POSSIBLE_P`].
    Possible,
}

/// A category rising in a place this month.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Rising {
    /// The category.
    pub category: String,
    /// Cases of it received this month.
    pub count: u64,
    /// Its mean count per month over the baseline months.
    pub baseline: f64,
    /// The count expected this month: the baseline (plus half a case) scaled to the part of the
    /// month gone.
    pub expected: f64,
    /// `(count − expected) / √expected`.
    pub z: f64,
    /// `P(X ≥ count)` for X of a Poisson distribution with mean `expected`.
    pub p: f64,
    /// How sure the rise is.
    pub confidence: Confidence,
}

/// `P(X ≥ k)` for X Poisson-distributed with mean `mean` (> 0): the terms from `k` up, each the
/// one before times `mean / i`, summed until they no longer count (in logarithms, so a mean in
/// the thousands does not underflow).
pub fn poisson_upper_tail(k: u64, mean: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    let ln_factorial: f64 = (2..=k).map(|i| (i as f64).ln()).sum();
    let first = (k as f64 * mean.ln() - mean - ln_factorial).exp();
    let (mut term, mut sum, mut i) = (first, first, k);
    // Past the mean the terms fall at least geometrically; a few thousand are always enough.
    while term > sum * 1e-12 && i < k + 100_000 {
        i += 1;
        term *= mean / i as f64;
        sum += term;
    }
    sum.min(1.0)
}

/// The categories of `this` month (counts by category) rising against `before` (the previous
/// months' counts, most recent first; a month without cases is an empty map), with `part` of the
/// month gone (1 for a month over): most surely rising first (lowest `p`, then most cases), only
/// those with `p` < [`POSSIBLE_P`]. Nothing without enough months of history.
pub fn rising(this: &BTreeMap<String, u64>, before: &[BTreeMap<String, u64>], part: f64) -> Vec<Rising> {
    let months = before.iter().take(BASELINE_MONTHS).collect::<Vec<_>>();
    // The months since the place's first case: earlier empty months are before it had any.
    let span = months.iter().rposition(|m| !m.is_empty()).map_or(0, |last| last + 1);
    let with_cases = months.iter().filter(|m| !m.is_empty()).count();
    if with_cases < MIN_BASELINE_MONTHS || part <= 0.0 {
        return Vec::new();
    }
    let mut out: Vec<Rising> = this
        .iter()
        .filter(|(_, count)| **count >= MIN_COUNT)
        .filter_map(|(category, &count)| {
            let total: u64 = months[..span].iter().filter_map(|m| m.get(category)).sum();
            let baseline = total as f64 / span as f64;
            let expected = (total as f64 + 0.5) / span as f64 * part.min(1.0);
            if count as f64 <= expected {
                return None;
            }
            let p = poisson_upper_tail(count, expected);
            let confidence = if p < LIKELY_P {
                Confidence::Likely
            } else if p < POSSIBLE_P {
                Confidence::Possible
            } else {
                return None;
            };
            let z = (count as f64 - expected) / expected.sqrt();
            Some(Rising { category: category.clone(), count, baseline, expected, z, p, confidence })
        })
        .collect();
    out.sort_by(|a, b| a.p.total_cmp(&b.p).then(b.count.cmp(&a.count)).then_with(|| a.category.cmp(&b.category)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(c, n)| ((*c).to_owned(), *n)).collect()
    }

    #[test]
    fn the_poisson_tail_matches_its_closed_forms() {
        // P(X ≥ 1) = 1 − e^−λ; P(X ≥ 2) = 1 − e^−λ(1 + λ).
        for mean in [0.1, 1.0, 3.5] {
            assert!((poisson_upper_tail(1, mean) - (1.0 - (-mean).exp())).abs() < 1e-12, "{mean}");
            assert!((poisson_upper_tail(2, mean) - (1.0 - (-mean).exp() * (1.0 + mean))).abs() < 1e-12, "{mean}");
        }
        assert_eq!(poisson_upper_tail(0, 2.0), 1.0);
        // λ = 2: P(X ≥ 5) = 1 − e^−2 (1 + 2 + 2 + 4/3 + 2/3) = 0.052653…
        assert!((poisson_upper_tail(5, 2.0) - 0.052_653_017_343_711).abs() < 1e-12);
        // A mean in the thousands neither underflows nor loses its tail: 1,100 against 1,000 is
        // about 3.1 standard deviations (p ≈ 0.0009 by the normal approximation, continuity-corrected).
        let p = poisson_upper_tail(1_100, 1_000.0);
        assert!((0.000_5..0.001_5).contains(&p), "{p}");
        assert!(poisson_upper_tail(1_000, 1_000.0) > 0.49 && poisson_upper_tail(1_000, 1_000.0) < 0.51);
    }

    #[test]
    fn a_category_well_above_its_baseline_rises_one_near_it_does_not() {
        let before = vec![counts(&[("noise", 2), ("trash", 10)]); 6];
        let this = counts(&[("noise", 12), ("trash", 11), ("dogs", 2)]);
        let found = rising(&this, &before, 1.0);
        assert_eq!(found.len(), 1, "{found:?}");
        let noise = &found[0];
        assert_eq!((noise.category.as_str(), noise.count, noise.baseline), ("noise", 12, 2.0));
        assert!((noise.expected - (12.5 / 6.0)).abs() < 1e-12, "{}", noise.expected);
        assert!((noise.z - (12.0 - 12.5 / 6.0) / (12.5f64 / 6.0).sqrt()).abs() < 1e-12, "{}", noise.z);
        assert_eq!(noise.confidence, Confidence::Likely);
        assert!(noise.p < 1e-4 && noise.z > 5.0, "{noise:?}");
    }

    #[test]
    fn how_sure_follows_the_p_value() {
        // Baseline 2 a month (expected 2.0833…): 5 is possible (p ≈ 0.06 → not), 6 possible, 8 likely.
        let before = vec![counts(&[("noise", 2)]); 6];
        let judged = |n: u64| rising(&counts(&[("noise", n)]), &before, 1.0).first().map(|r| r.confidence);
        assert_eq!(judged(5), None);
        assert_eq!(judged(6), Some(Confidence::Possible));
        assert_eq!(judged(8), Some(Confidence::Likely));
        let p6 = poisson_upper_tail(6, 12.5 / 6.0);
        assert!((POSSIBLE_P * 0.2..POSSIBLE_P).contains(&p6), "{p6}");
    }

    #[test]
    fn the_month_under_way_is_judged_against_its_part() {
        let before = vec![counts(&[("noise", 10)]); 6];
        let this = counts(&[("noise", 10)]);
        // A whole month's cases in half of it: rising; at the month's end, as usual.
        assert_eq!(rising(&this, &before, 0.5).len(), 1);
        assert!(rising(&this, &before, 1.0).is_empty());
        assert!((rising(&this, &before, 0.5)[0].expected - 60.5 / 6.0 / 2.0).abs() < 1e-12);
        assert!(rising(&this, &before, 0.0).is_empty());
    }

    #[test]
    fn no_history_no_rise_and_new_places_count_from_their_first_month() {
        let this = counts(&[("noise", 30)]);
        // Two months with cases: too little history.
        let two = vec![counts(&[("noise", 1)]), counts(&[("trash", 1)]), BTreeMap::new(), BTreeMap::new()];
        assert!(rising(&this, &two, 1.0).is_empty());
        // Three months of history, then nothing before: the mean is over those three.
        let three = vec![counts(&[("noise", 3)]), counts(&[("trash", 1)]), counts(&[("noise", 3)]), BTreeMap::new()];
        let found = rising(&this, &three, 1.0);
        assert_eq!(found[0].baseline, 2.0);
        assert!((found[0].expected - 6.5 / 3.0).abs() < 1e-12);
        // A month with no case between two with cases counts as a month of none.
        let gap = vec![counts(&[("noise", 3)]), BTreeMap::new(), counts(&[("noise", 3)]), counts(&[("trash", 1)])];
        assert_eq!(rising(&this, &gap, 1.0)[0].baseline, 1.5);
        // Only the last BASELINE_MONTHS count.
        let mut long = vec![counts(&[("noise", 1)]); BASELINE_MONTHS];
        long.push(counts(&[("noise", 1000)]));
        assert_eq!(rising(&this, &long, 1.0)[0].baseline, 1.0);
    }

    #[test]
    fn too_few_cases_never_rise_and_the_surest_come_first() {
        let before = vec![counts(&[("trash", 1)]); 6];
        // A category never seen: expected half a case over 6 months; 2 cases are below MIN_COUNT.
        assert!(rising(&counts(&[("noise", 2)]), &before, 1.0).is_empty());
        let found = rising(&counts(&[("noise", 3), ("dogs", 9), ("trash", 9)]), &before, 1.0);
        let order: Vec<&str> = found.iter().map(|r| r.category.as_str()).collect();
        assert_eq!(order, ["dogs", "trash", "noise"], "{found:?}");
    }
}
