//! The query strings of the listing endpoints: every parameter known, none given twice.

use linkbus_cases::book::{CaseFilter, Cursor, SearchQuery};
use linkbus_wire as wire;
use serde_json::Value;

use crate::error::ApiError;

/// Records listed when `limit` is not given.
pub(crate) const DEFAULT_LIMIT: usize = 100;
/// The largest `limit`.
pub(crate) const MAX_LIMIT: usize = 1000;

/// The filter, `cursor` and `limit` of `GET /api/cases` (`q`: a [`SearchQuery`]).
pub(crate) fn parse_list_query(pairs: &[(String, String)]) -> Result<(CaseFilter, Option<Cursor>, usize), ApiError> {
    let mut filter = CaseFilter::default();
    let mut cursor = None;
    let mut limit = None;
    let mut seen = Vec::new();
    for (name, value) in pairs {
        if seen.contains(&name.as_str()) {
            return Err(ApiError::Invalid(format!("query parameter {name} is given twice")));
        }
        seen.push(name.as_str());
        let bad = |what: &str| ApiError::Invalid(format!("{name}={value:?}: {what}"));
        match name.as_str() {
            "state" => {
                filter.state = Some(
                    serde_json::from_value(Value::String(value.clone()))
                        .map_err(|_| bad("not a case state (routed, accepted, in_progress, …)"))?,
                );
            }
            "community" => filter.community = Some(value.clone()),
            "department" => filter.department = Some(value.clone()),
            "system" => {
                filter.system = Some(wire::SourceSystem::parse(value).ok_or_else(|| bad("not a source system"))?);
            }
            "since" => filter.since = Some(value.parse().map_err(|_| bad("not an RFC 3339 time"))?),
            "until" => filter.until = Some(value.parse().map_err(|_| bad("not an RFC 3339 time"))?),
            "q" => {
                filter.text =
                    Some(SearchQuery::parse(value).map_err(|e| ApiError::Invalid(format!("q: not a search: {e}")))?)
            }
            "archived" => filter.archived = value.parse().map_err(|_| bad("true or false"))?,
            "cursor" => cursor = Some(value.parse::<Cursor>().map_err(|e| ApiError::Invalid(format!("cursor: {e}")))?),
            "limit" => {
                let n: usize = value.parse().map_err(|_| bad("not a number"))?;
                if !(1..=MAX_LIMIT).contains(&n) {
                    return Err(bad(&format!("must be 1 to {MAX_LIMIT}")));
                }
                limit = Some(n);
            }
            _ => {
                return Err(ApiError::Invalid(format!(
                    "unknown query parameter {name}; known: q, state, community, department, system, since, \
                     until, archived, cursor, limit"
                )));
            }
        }
    }
    Ok((filter, cursor, limit.unwrap_or(DEFAULT_LIMIT)))
}

/// The `limit` of a query that takes nothing else.
pub(crate) fn parse_limit_query(pairs: &[(String, String)]) -> Result<usize, ApiError> {
    let mut limit = None;
    for (name, value) in pairs {
        if name != "limit" {
            return Err(ApiError::Invalid(format!("unknown query parameter {name}; known: limit")));
        }
        if limit.is_some() {
            return Err(ApiError::Invalid("query parameter limit is given twice".into()));
        }
        let n: usize = value.parse().map_err(|_| ApiError::Invalid(format!("limit={value:?}: not a number")))?;
        if !(1..=MAX_LIMIT).contains(&n) {
            return Err(ApiError::Invalid(format!("limit={value:?}: must be 1 to {MAX_LIMIT}")));
        }
        limit = Some(n);
    }
    Ok(limit.unwrap_or(DEFAULT_LIMIT))
}
