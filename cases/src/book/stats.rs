//! Per-department handling figures for the dashboards.

use std::collections::HashMap;

use linkbus_bus::sync::read;
use serde::Serialize;

use super::handle::CaseBook;

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
    pub fn department_stats(&self) -> Vec<DepartmentStats> {
        let cache = read(&self.cache);
        let mut stats: HashMap<String, DepartmentStats> = HashMap::new();
        for r in cache.values().map(|c| &c.stored.record).filter(|r| r.merged_into.is_none()) {
            let mut involved: Vec<&str> = r.departments.iter().chain(&r.rejected_by).map(String::as_str).collect();
            involved.extend(r.accepted_by.as_deref());
            involved.sort_unstable();
            involved.dedup();
            for d in involved {
                let s = stats_of(&mut stats, d);
                s.cases += 1;
                s.accepted += usize::from(r.accepted_by.as_deref() == Some(d));
                s.rejected += usize::from(r.rejected_by.iter().any(|x| x == d));
            }
            for rating in &r.ratings {
                let Some(d) = rating.department.as_deref() else { continue };
                let s = stats_of(&mut stats, d);
                s.ratings += 1;
                s.not_solved += usize::from(!rating.solved);
                let total = s.average_score.unwrap_or(0.0) * (s.ratings - 1) as f64 + f64::from(rating.score);
                s.average_score = Some(total / s.ratings as f64);
            }
        }
        let mut out: Vec<DepartmentStats> = stats
            .into_values()
            .map(|mut s| {
                s.reopen_rate = (s.ratings > 0).then(|| s.not_solved as f64 / s.ratings as f64);
                s
            })
            .collect();
        out.sort_by(|a, b| a.department.cmp(&b.department));
        out
    }
}

fn stats_of<'a>(stats: &'a mut HashMap<String, DepartmentStats>, department: &str) -> &'a mut DepartmentStats {
    stats
        .entry(department.to_owned())
        .or_insert_with(|| DepartmentStats { department: department.to_owned(), ..Default::default() })
}
