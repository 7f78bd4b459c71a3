//! The supervision figures (`docs/supervision.md`): `GET /api/stats` (JSON, or CSV with
//! `Accept: text/csv`) and the ranking of 街道 (or communities) by a rate, from the figures the
//! case book keeps ([`linkbus_cases::supervision`]); a place's rising categories and its repeat
//! addresses of a month. Dispatchers and operators read every row; a department key only its own
//! department's rows, and no ranking, rising categories or addresses.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use linkbus_cases::book::RepeatAddress;
use linkbus_cases::supervision::{
    BASELINE_MONTHS, Group, PLACES, Period, Ranked, RankingQuery, Rate, Rising, RisingQuery, Row, StatsQuery,
};
use schemars::JsonSchema;
use serde::Serialize;
use tracing::debug;

use crate::auth::Principal;
use crate::config::ApiRole;
use crate::error::ApiError;
use crate::state::ApiState;

/// Who may read the figures (a department key only its own rows).
const FIGURE_ROLES: &[ApiRole] = &[ApiRole::Dispatcher, ApiRole::Operator, ApiRole::Department];
/// Who may read rankings of places (not a department's own figures).
const RANKING_ROLES: &[ApiRole] = &[ApiRole::Dispatcher, ApiRole::Operator];
/// The longest `from`–`to` span, in days: a year of daily rows and some.
pub(crate) const MAX_SPAN_DAYS: i32 = 400;
/// The span without `from`: the last 31 days.
const DEFAULT_SPAN_DAYS: i64 = 30;

/// `GET /api/stats`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct StatsTable {
    /// The group of the rows.
    pub by: Group,
    /// Their period.
    pub period: Period,
    /// The first day asked for, `YYYY-MM-DD`.
    pub from: String,
    /// The last day asked for.
    pub to: String,
    /// The region's time zone, which the days are in.
    pub time_zone: String,
    /// One row per key and period, by key then period (a department key: its own only).
    pub rows: Vec<Row>,
}

/// `GET /api/stats/ranking`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RankingTable {
    /// The group ranked.
    pub by: Group,
    /// The rate it is ranked by.
    pub rate: Rate,
    /// The month, `YYYY-MM`.
    pub month: String,
    /// The region's time zone.
    pub time_zone: String,
    /// Best first.
    pub rows: Vec<Ranked>,
}

/// `GET /api/stats/rising`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RisingTable {
    /// The place's group, or none for the whole region.
    pub by: Option<Group>,
    /// The place's key, or none for the whole region.
    pub place: Option<String>,
    /// The month, `YYYY-MM`.
    pub month: String,
    /// The region's time zone.
    pub time_zone: String,
    /// The most previous months the baseline is the mean of.
    pub baseline_months: usize,
    /// The categories rising, most surely first.
    pub rows: Vec<Rising>,
}

/// `GET /api/stats/repeats`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RepeatTable {
    /// The place's group, or none for the whole region.
    pub by: Option<Group>,
    /// The place's key, or none for the whole region.
    pub place: Option<String>,
    /// The month, `YYYY-MM`.
    pub month: String,
    /// The region's time zone.
    pub time_zone: String,
    /// The addresses with two cases or more, the most first.
    pub rows: Vec<RepeatAddress>,
}

/// The most addresses `GET /api/stats/repeats` answers.
pub(crate) const MAX_REPEAT_ADDRESSES: usize = 20;
/// The longest place key.
const MAX_PLACE_CHARS: usize = 64;

/// The name of `tz`, for answers.
pub(crate) fn zone_name(tz: &TimeZone) -> String {
    tz.iana_name().unwrap_or("UTC").to_owned()
}

/// Each query parameter once, and only those in `known`.
fn params<'a>(pairs: &'a [(String, String)], known: &[&str]) -> Result<Vec<(&'a str, &'a str)>, ApiError> {
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for (name, value) in pairs {
        if !known.contains(&name.as_str()) {
            return Err(ApiError::Invalid(format!("unknown query parameter {name}; known: {}", known.join(", "))));
        }
        if seen.iter().any(|(n, _)| n == name) {
            return Err(ApiError::Invalid(format!("query parameter {name} is given twice")));
        }
        seen.push((name, value));
    }
    Ok(seen)
}

fn day(name: &str, value: &str) -> Result<Date, ApiError> {
    value.parse().map_err(|_| ApiError::Invalid(format!("{name}={value:?}: not a day (YYYY-MM-DD)")))
}

/// A month, `YYYY-MM`: its first day.
pub(crate) fn month(value: &str) -> Result<Date, ApiError> {
    let bad = || ApiError::Invalid(format!("month {value:?}: not a month (YYYY-MM)"));
    if value.len() != 7 {
        return Err(bad());
    }
    format!("{value}-01").parse().map_err(|_| bad())
}

/// `YYYY-MM` of the month `first` is in.
pub(crate) fn month_name(first: Date) -> String {
    first.strftime("%Y-%m").to_string()
}

/// The [`StatsQuery`] of `GET /api/stats`'s parameters, days in `tz`, at `now`.
pub(crate) fn stats_query(pairs: &[(String, String)], tz: &TimeZone, now: Timestamp) -> Result<StatsQuery, ApiError> {
    let mut q = StatsQuery {
        group: Group::SubDistrict,
        period: Period::Day,
        from: Date::MIN,
        to: tz.to_datetime(now).date(),
        now,
        only: None,
    };
    let mut from = None;
    for (name, value) in params(pairs, &["by", "period", "from", "to", "key"])? {
        match name {
            // One place's rows (a trend), not every key's: a city has 2,300 communities.
            "key" => q.only = Some(value.to_owned()),
            "by" => q.group = Group::parse(value).ok_or_else(|| {
                ApiError::Invalid(format!(
                    "by={value:?}: not a group; one of district, sub_district, community, department, category, system"
                ))
            })?,
            "period" => {
                q.period = Period::parse(value)
                    .ok_or_else(|| ApiError::Invalid(format!("period={value:?}: one of day, week, month")))?
            }
            "from" => from = Some(day(name, value)?),
            _ => q.to = day(name, value)?,
        }
    }
    q.from = match from {
        Some(from) => from,
        None => q.to.checked_sub(jiff::Span::new().days(DEFAULT_SPAN_DAYS)).unwrap_or(q.to),
    };
    let span = q.to.since(q.from).map(|s| s.get_days()).unwrap_or(i32::MAX);
    if !(0..=MAX_SPAN_DAYS).contains(&span) {
        return Err(ApiError::Invalid(format!(
            "from {} to {}: from must not be after to, and at most {MAX_SPAN_DAYS} days before it",
            q.from, q.to
        )));
    }
    Ok(q)
}

/// Whether the client asked for CSV (`Accept: text/csv`).
fn wants_csv(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT).iter().any(|v| v.to_str().is_ok_and(|v| v.contains("text/csv")))
}

/// `rows` as CSV, a header line first: what a spreadsheet opens.
pub(crate) fn csv_response<T: Serialize>(rows: &[T]) -> Result<Response, ApiError> {
    let mut out = csv::Writer::from_writer(Vec::new());
    for row in rows {
        out.serialize(row).map_err(|e| ApiError::Unavailable(format!("could not write CSV: {e}")))?;
    }
    let body = out.into_inner().map_err(|e| ApiError::Unavailable(format!("could not write CSV: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response())
}

/// JSON `body`, or its `rows` as CSV when asked for.
pub(crate) fn answer<T: Serialize>(
    headers: &HeaderMap,
    body: impl Serialize,
    rows: &[T],
) -> Result<Response, ApiError> {
    if wants_csv(headers) { csv_response(rows) } else { Ok(axum::Json(body).into_response()) }
}

/// `GET /api/stats?by=&period=&from=&to=&key=`.
pub(super) async fn stats(
    State(state): State<ApiState>,
    principal: Principal,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    principal.require(FIGURE_ROLES, "read supervision figures")?;
    let Query(pairs) = query.map_err(|e| ApiError::Invalid(e.body_text()))?;
    let tz = state.cases.time_zone();
    let mut q = stats_query(&pairs, &tz, Timestamp::now())?;
    if let Some(own) = principal.department() {
        if q.group != Group::Department {
            return Err(ApiError::Forbidden(format!(
                "a department key may read only by=department (its own rows), not by={}",
                q.group.as_str()
            )));
        }
        if q.only.as_deref().is_some_and(|key| key != own) {
            return Err(ApiError::Forbidden("a department key may read only its own rows".into()));
        }
        q.only = Some(own.to_owned());
    }
    let rows = state.cases.stats(&q);
    debug!(role = principal.role.as_str(), actor = %principal.id, by = q.group.as_str(), count = rows.len(), "supervision figures read");
    let table = StatsTable {
        by: q.group,
        period: q.period,
        from: q.from.to_string(),
        to: q.to.to_string(),
        time_zone: zone_name(&tz),
        rows,
    };
    answer(&headers, &table, &table.rows)
}

/// A ranked place's own columns in CSV, before its row's (a tuple of the two serializes as one
/// flat record, headers and all).
#[derive(Serialize)]
struct RankCells {
    rank: Option<usize>,
    value: Option<f64>,
    previous: Option<f64>,
    change: Option<f64>,
}

/// `GET /api/stats/ranking?rate=&month=&by=`: JSON, or CSV with `Accept: text/csv`.
pub(super) async fn ranking(
    State(state): State<ApiState>,
    principal: Principal,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    principal.require(RANKING_ROLES, "read rankings")?;
    let Query(pairs) = query.map_err(|e| ApiError::Invalid(e.body_text()))?;
    let tz = state.cases.time_zone();
    let now = Timestamp::now();
    let mut q = RankingQuery {
        group: Group::SubDistrict,
        rate: Rate::SatisfactionRate,
        month: tz.to_datetime(now).date(),
        now,
    };
    for (name, value) in params(&pairs, &["rate", "month", "by"])? {
        match name {
            "rate" => q.rate = Rate::parse(value).ok_or_else(|| {
                ApiError::Invalid(format!(
                    "rate={value:?}: one of response_rate, resolution_rate, satisfaction_rate, return_rate, reopen_rate"
                ))
            })?,
            "month" => q.month = month(value)?,
            _ => {
                q.group = Group::parse(value)
                    .filter(|g| matches!(g, Group::SubDistrict | Group::Community | Group::District))
                    .ok_or_else(|| {
                        ApiError::Invalid(format!("by={value:?}: one of sub_district, community, district"))
                    })?
            }
        }
    }
    let rows = state.cases.ranking(&q);
    let table = RankingTable { by: q.group, rate: q.rate, month: month_name(q.month), time_zone: zone_name(&tz), rows };
    let cells: Vec<(RankCells, &Row)> = table
        .rows
        .iter()
        .map(|r| (RankCells { rank: r.rank, value: r.value, previous: r.previous, change: r.change }, &r.row))
        .collect();
    answer(&headers, &table, &cells)
}

/// The place (`by` and `place`; no `place`: the whole region) and month (`month`; default: this
/// month) of `GET /api/stats/rising` and `/api/stats/repeats`.
fn place_and_month(
    pairs: &[(String, String)],
    tz: &TimeZone,
    now: Timestamp,
) -> Result<(Option<(Group, String)>, Date), ApiError> {
    let (mut group, mut place, mut first) = (Group::SubDistrict, None, tz.to_datetime(now).date().first_of_month());
    for (name, value) in params(pairs, &["by", "place", "month"])? {
        match name {
            "by" => {
                group = Group::parse(value).filter(|g| PLACES.contains(g)).ok_or_else(|| {
                    ApiError::Invalid(format!("by={value:?}: one of sub_district, community, district"))
                })?
            }
            "month" => first = month(value)?,
            _ => {
                if value.is_empty() || value.chars().count() > MAX_PLACE_CHARS {
                    return Err(ApiError::Invalid(format!("place: 1 to {MAX_PLACE_CHARS} characters")));
                }
                place = Some(value.to_owned());
            }
        }
    }
    Ok((place.map(|p| (group, p)), first))
}

/// `GET /api/stats/rising?by=&place=&month=`.
pub(super) async fn rising(
    State(state): State<ApiState>,
    principal: Principal,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<axum::Json<RisingTable>, ApiError> {
    principal.require(RANKING_ROLES, "read what is rising in places")?;
    let Query(pairs) = query.map_err(|e| ApiError::Invalid(e.body_text()))?;
    let tz = state.cases.time_zone();
    let now = Timestamp::now();
    let (place, first) = place_and_month(&pairs, &tz, now)?;
    let rows = state.cases.rising(&RisingQuery { place: place.clone(), month: first, now });
    Ok(axum::Json(RisingTable {
        by: place.as_ref().map(|(g, _)| *g),
        place: place.map(|(_, p)| p),
        month: month_name(first),
        time_zone: zone_name(&tz),
        baseline_months: BASELINE_MONTHS,
        rows,
    }))
}

/// `GET /api/stats/repeats?by=&place=&month=`.
pub(super) async fn repeats(
    State(state): State<ApiState>,
    principal: Principal,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<axum::Json<RepeatTable>, ApiError> {
    principal.require(RANKING_ROLES, "read places' repeat addresses")?;
    let Query(pairs) = query.map_err(|e| ApiError::Invalid(e.body_text()))?;
    let tz = state.cases.time_zone();
    let (place, first) = place_and_month(&pairs, &tz, Timestamp::now())?;
    let start = |d: Date| tz.to_timestamp(d.to_datetime(jiff::civil::Time::midnight()));
    let next = first.last_of_month().tomorrow().map_err(|_| ApiError::Invalid("month: out of range".into()))?;
    let (from, to) = start(first)
        .and_then(|f| start(next).map(|t| (f, t)))
        .map_err(|_| ApiError::Invalid("month: out of range".into()))?;
    let rows = state
        .cases
        .repeat_addresses(place.as_ref().map(|(g, p)| (*g, p.as_str())), from, to, MAX_REPEAT_ADDRESSES)
        .await
        .map_err(|e| ApiError::Unavailable(format!("could not read the cases: {e}")))?;
    Ok(axum::Json(RepeatTable {
        by: place.as_ref().map(|(g, _)| *g),
        place: place.map(|(_, p)| p),
        month: month_name(first),
        time_zone: zone_name(&tz),
        rows,
    }))
}
