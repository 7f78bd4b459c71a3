//! The supervision figures (三率, 退单率, reopen rate, overdue, times) by group and period, kept
//! incrementally from the case records: defined in `docs/supervision.md`. Pure: no I/O, no clock
//! (the caller says what "now" is), so every replica that holds the same records holds the same
//! figures.
//!
//! - `mark`: [`Mark`], a record's part in the figures, derived from that record alone;
//! - `figures`: [`Figures`], the counters per group, key and day that marks are added to and
//!   taken from, and the queries: [`Figures::rows`] and [`Figures::ranking`];
//! - `report`: [`MonthlyReport`], a closed month as issued, and its public part;
//! - `rising`: [`Rising`], a place's categories above their own baseline this month, and how
//!   sure (a Poisson test), for [`Figures::rising`];
//! - here: the names the API speaks — [`Group`], [`Period`], [`Rate`], [`Row`], [`Ranked`].

use jiff::Timestamp;
use jiff::civil::Date;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod figures;
mod mark;
mod report;
mod rising;
#[cfg(test)]
mod tests;

pub use figures::{Figures, PLACES};
pub use mark::Mark;
pub use report::{MonthRows, MonthlyReport, PublicReport};
pub use rising::{BASELINE_MONTHS, Confidence, Rising};

/// What the rows are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    /// The community's district (区).
    District,
    /// The community's sub-district (街道/乡镇).
    SubDistrict,
    /// The community (社区/村).
    Community,
    /// A department the case was given to.
    Department,
    /// The first report's category.
    Category,
    /// The first report's kind of source system.
    System,
}

impl Group {
    /// Every group, in order.
    pub const ALL: [Self; 6] =
        [Self::District, Self::SubDistrict, Self::Community, Self::Department, Self::Category, Self::System];

    /// Its name in the API (`by=`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::District => "district",
            Self::SubDistrict => "sub_district",
            Self::Community => "community",
            Self::Department => "department",
            Self::Category => "category",
            Self::System => "system",
        }
    }

    /// The group named `name` in the API.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.as_str() == name)
    }
}

/// How long a row's period is, in the region's time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// A calendar day.
    Day,
    /// An ISO week, Monday first.
    Week,
    /// A calendar month.
    Month,
}

impl Period {
    /// Its name in the API (`period=`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
        }
    }

    /// The period named `name` in the API.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Day, Self::Week, Self::Month].into_iter().find(|p| p.as_str() == name)
    }

    /// The first day of the period `day` is in.
    pub fn start(self, day: Date) -> Date {
        match self {
            Self::Day => day,
            Self::Week => {
                day.checked_sub(jiff::Span::new().days(i64::from(day.weekday().to_monday_zero_offset()))).unwrap_or(day)
            }
            Self::Month => day.first_of_month(),
        }
    }

    /// The last day of the period `day` is in.
    pub fn end(self, day: Date) -> Date {
        match self {
            Self::Day => day,
            Self::Week => self.start(day).checked_add(jiff::Span::new().days(6)).unwrap_or(day),
            Self::Month => day.last_of_month(),
        }
    }
}

/// What [`Figures::rows`] is asked.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsQuery {
    /// Rows of this group.
    pub group: Group,
    /// Per period of this length.
    pub period: Period,
    /// The periods whose first day is in `from..=to`.
    pub from: Date,
    /// See `from`.
    pub to: Date,
    /// "Now", for `overdue`.
    pub now: Timestamp,
    /// Only this key's rows (a department's own), when given.
    pub only: Option<String>,
}

/// What [`Figures::ranking`] is asked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RankingQuery {
    /// Rank the keys of this group.
    pub group: Group,
    /// By this rate.
    pub rate: Rate,
    /// In the month this day is in.
    pub month: Date,
    /// "Now", for `overdue`.
    pub now: Timestamp,
}

/// What [`Figures::rising`] is asked.
#[derive(Debug, Clone, PartialEq)]
pub struct RisingQuery {
    /// The place (a district, sub-district or community: its group and key); none: the region.
    pub place: Option<(Group, String)>,
    /// In the month this day is in.
    pub month: Date,
    /// "Now": a month under way is judged against the part of it gone.
    pub now: Timestamp,
}

/// A rate the groups can be ranked by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Rate {
    /// 响应率.
    ResponseRate,
    /// 解决率.
    ResolutionRate,
    /// 满意率.
    SatisfactionRate,
    /// 退单率 (lower is better).
    ReturnRate,
    /// 重办率 (lower is better).
    ReopenRate,
}

impl Rate {
    /// Every rate, in order.
    pub const ALL: [Self; 5] =
        [Self::ResponseRate, Self::ResolutionRate, Self::SatisfactionRate, Self::ReturnRate, Self::ReopenRate];

    /// Its name in the API (`rate=`), the name of its field in a [`Row`].
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ResponseRate => "response_rate",
            Self::ResolutionRate => "resolution_rate",
            Self::SatisfactionRate => "satisfaction_rate",
            Self::ReturnRate => "return_rate",
            Self::ReopenRate => "reopen_rate",
        }
    }

    /// The rate named `name` in the API.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// Its value in `row`.
    pub fn of(self, row: &Row) -> Option<f64> {
        match self {
            Self::ResponseRate => row.response_rate,
            Self::ResolutionRate => row.resolution_rate,
            Self::SatisfactionRate => row.satisfaction_rate,
            Self::ReturnRate => row.return_rate,
            Self::ReopenRate => row.reopen_rate,
        }
    }

    /// True for the rates where less is better (returns, reopenings).
    pub fn lower_is_better(self) -> bool {
        matches!(self, Self::ReturnRate | Self::ReopenRate)
    }
}

/// One group's figures in one period: the cases received in the period (see
/// `docs/supervision.md` for each formula). A rate with nothing to divide by is absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Row {
    /// The group's key: a district, sub-district or community code, department id, category or
    /// source system.
    pub key: String,
    /// The period's first day, `YYYY-MM-DD` in the region's time zone.
    pub period: String,
    /// Cases received (受理量).
    pub received: u64,
    /// Of those, cases given to a department, so due to be accepted (应响应量).
    pub due: u64,
    /// Of those, cases accepted before their acceptance deadline passed (按时响应量).
    pub responded: u64,
    /// `responded / due` (响应率).
    pub response_rate: Option<f64>,
    /// Cases rated by their reporter (评价量).
    pub rated: u64,
    /// Rated cases whose latest rating says solved (解决量).
    pub solved: u64,
    /// `solved / rated` (解决率).
    pub resolution_rate: Option<f64>,
    /// Rated cases whose latest score is 4 or 5 (满意量).
    pub satisfied: u64,
    /// `satisfied / rated` (满意率).
    pub satisfaction_rate: Option<f64>,
    /// Departments the cases were given to (派单量).
    pub assignments: u64,
    /// Rejections by departments (退单量).
    pub returns: u64,
    /// `returns / assignments` (退单率).
    pub return_rate: Option<f64>,
    /// Cases resolved at least once (办结量).
    pub resolved: u64,
    /// Of those, cases reopened at least once (重办量).
    pub reopened: u64,
    /// `reopened / resolved` (重办率).
    pub reopen_rate: Option<f64>,
    /// Cases still open whose deadline is past now (当前超期).
    pub overdue: u64,
    /// Median seconds from routed to accepted (3 significant digits).
    pub to_accept_median_s: Option<u32>,
    /// 90th percentile seconds from routed to accepted.
    pub to_accept_p90_s: Option<u32>,
    /// Median seconds from accepted to resolved.
    pub to_resolve_median_s: Option<u32>,
    /// 90th percentile seconds from accepted to resolved.
    pub to_resolve_p90_s: Option<u32>,
}

/// A group's place in a ranking by a rate: its row of the period, and the rate in the period
/// before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Ranked {
    /// 1 for the best; groups without the rate (nothing to divide by) come last, unranked.
    pub rank: Option<usize>,
    /// The rate ranked by, in this period.
    pub value: Option<f64>,
    /// The rate in the period before.
    pub previous: Option<f64>,
    /// `value - previous`.
    pub change: Option<f64>,
    /// The group's figures in this period.
    pub row: Row,
}
