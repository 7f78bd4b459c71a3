//! Per-department handling figures for the dashboards, from the tallies the book's index keeps,
//! and the supervision figures ([`crate::supervision`]) it keeps beside them.

use linkbus_bus::sync::read;
use serde::Serialize;

use super::handle::CaseBook;
use crate::supervision::{Ranked, RankingQuery, Rising, RisingQuery, Row, StatsQuery};

/// How one department handles its cases, for the dashboards.
#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct DepartmentStats {
    /// The department.
    pub department: String,
    /// Cases it has or had.
    pub cases: usize,
    /// Cases it accepted.
    pub accepted: usize,
    /// Cases it rejected.
    pub rejected: usize,
    /// Ratings of its handling.
    pub ratings: usize,
    /// Their average score, 1–5.
    pub average_score: Option<f64>,
    /// Ratings that said "not solved" (each reopened the case).
    pub not_solved: usize,
    /// `not_solved / ratings`.
    pub reopen_rate: Option<f64>,
}

impl CaseBook {
    /// Per-department handling figures: cases, acceptances, rejections, ratings, reopen rate.
    /// Kept up to date as records change (by the book's index), over every record whether in
    /// memory or not: reading them counts nothing.
    pub fn department_stats(&self) -> Vec<DepartmentStats> {
        let index = read(&self.index);
        let mut out: Vec<DepartmentStats> = index
            .tallies()
            .iter()
            .map(|(department, t)| DepartmentStats {
                department: department.clone(),
                cases: t.cases,
                accepted: t.accepted,
                rejected: t.rejected,
                ratings: t.ratings,
                average_score: (t.ratings > 0).then(|| t.score_sum as f64 / t.ratings as f64),
                not_solved: t.not_solved,
                reopen_rate: (t.ratings > 0).then(|| t.not_solved as f64 / t.ratings as f64),
            })
            .collect();
        out.sort_by(|a, b| a.department.cmp(&b.department));
        out
    }

    /// The supervision figures `q` asks for, kept up to date as records change (by the book's
    /// index) over every record, in memory or not.
    pub fn stats(&self, q: &StatsQuery) -> Vec<Row> {
        read(&self.index).figures().rows(q)
    }

    /// The ranking `q` asks for, from the same figures.
    pub fn ranking(&self, q: &RankingQuery) -> Vec<Ranked> {
        read(&self.index).figures().ranking(q)
    }

    /// The categories rising in a place in a month, from the same figures.
    pub fn rising(&self, q: &RisingQuery) -> Vec<Rising> {
        read(&self.index).figures().rising(q)
    }

    /// The time zone the figures' days are counted in (the region's).
    pub fn time_zone(&self) -> jiff::tz::TimeZone {
        read(&self.index).figures().time_zone().clone()
    }
}
