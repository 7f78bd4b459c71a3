//! [`MonthlyReport`]: a closed month's figures as issued, once, with its version and reason
//! (kept in NATS by [`crate::reports`]); what a department and the public may read of one.

use jiff::Timestamp;
use jiff::civil::Date;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[cfg(doc)]
use super::Figures;
use super::{Group, Period, Row, StatsQuery};

/// A month's rows of every group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct MonthRows {
    /// By district.
    pub district: Vec<Row>,
    /// By sub-district (街道).
    pub sub_district: Vec<Row>,
    /// By community.
    pub community: Vec<Row>,
    /// By department.
    pub department: Vec<Row>,
    /// By category.
    pub category: Vec<Row>,
    /// By source system.
    pub system: Vec<Row>,
}

impl MonthRows {
    fn group_mut(&mut self, group: Group) -> &mut Vec<Row> {
        match group {
            Group::District => &mut self.district,
            Group::SubDistrict => &mut self.sub_district,
            Group::Community => &mut self.community,
            Group::Department => &mut self.department,
            Group::Category => &mut self.category,
            Group::System => &mut self.system,
        }
    }

    /// Only `department`'s own row: what its key may read of a report.
    pub fn of_department(self, department: &str) -> Self {
        Self { department: self.department.into_iter().filter(|r| r.key == department).collect(), ..Self::default() }
    }
}

/// A closed month's figures as issued: version 1 first, each correction the next version with
/// its reason. Never changed once stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct MonthlyReport {
    /// The month, `YYYY-MM`.
    pub month: String,
    /// 1, then 2 for the first correction, …
    pub version: u32,
    /// When it was issued (and the "now" of its `overdue`).
    #[schemars(schema_with = "timestamp_schema")]
    pub issued_at: Timestamp,
    /// Who issued it (a dispatcher).
    pub issued_by: String,
    /// Why: required for a correction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The time zone its days are in.
    pub time_zone: String,
    /// Its rows, every group.
    pub rows: MonthRows,
}

fn timestamp_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "string", "format": "date-time" })
}

/// What the public may read of a report ([`MonthlyReport::public`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct PublicReport {
    /// The month, `YYYY-MM`.
    pub month: String,
    /// The report's version.
    pub version: u32,
    /// When it was issued.
    #[schemars(schema_with = "timestamp_schema")]
    pub issued_at: Timestamp,
    /// Groups with fewer cases received than this are left out.
    pub min_count: u64,
    /// By sub-district (街道), those with at least `min_count` cases.
    pub sub_district: Vec<Row>,
    /// By category, those with at least `min_count` cases.
    pub category: Vec<Row>,
}

impl MonthlyReport {
    /// The report of the month starting `month`, issued at `now` by `issued_by` for `reason`
    /// (its version set when stored), days in `time_zone`, its rows from `rows` (such as
    /// [`Figures::rows`]).
    pub fn issue(
        rows: impl Fn(&StatsQuery) -> Vec<Row>,
        month: Date,
        now: Timestamp,
        issued_by: &str,
        reason: Option<String>,
        time_zone: &jiff::tz::TimeZone,
    ) -> Self {
        Self {
            month: month.strftime("%Y-%m").to_string(),
            version: 0,
            issued_at: now,
            issued_by: issued_by.to_owned(),
            reason,
            time_zone: time_zone.iana_name().unwrap_or("UTC").to_owned(),
            rows: Self::rows_of(rows, month, now),
        }
    }

    /// The rows of the month starting `month` at `now`, every group, from `rows` (such as
    /// [`Figures::rows`]).
    fn rows_of(rows: impl Fn(&StatsQuery) -> Vec<Row>, month: Date, now: Timestamp) -> MonthRows {
        let mut out = MonthRows::default();
        for group in Group::ALL {
            let q = StatsQuery { group, period: Period::Month, from: month, to: month, now, only: None };
            *out.group_mut(group) = rows(&q);
        }
        out
    }

    /// The public part: by 街道 and by category only (no person, address or case is in a
    /// report), without the groups of fewer than `min_count` cases.
    pub fn public(&self, min_count: u64) -> PublicReport {
        let enough = |rows: &[Row]| rows.iter().filter(|r| r.received >= min_count).cloned().collect();
        PublicReport {
            month: self.month.clone(),
            version: self.version,
            issued_at: self.issued_at,
            min_count,
            sub_district: enough(&self.rows.sub_district),
            category: enough(&self.rows.category),
        }
    }
}
