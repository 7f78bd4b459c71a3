//! The monthly reports as issued ([`MonthlyReport`]), kept in the `linkbus_reports` KV bucket
//! under `<YYYY-MM>.v<version>`, each written with a create-only put: a version, once stored, is
//! never overwritten, so a ranking once issued does not change; a correction is the next version,
//! with its reason (`docs/supervision.md`). [`ReportBook::issue_if_due`] issues last month's
//! first version on a day of the month, where configured (`[supervision] issue_on_day`).

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures::TryStreamExt as _;
use linkbus_bus::nats::{self, StreamSettings};
use schemars::JsonSchema;
use serde::Serialize;

use crate::book::CaseBook;
use crate::supervision::MonthlyReport;

/// Who a report issued on schedule says issued it.
pub const SCHEDULED_BY: &str = "linkbus (scheduled)";

/// KV bucket of the issued monthly reports.
pub const BUCKET_REPORTS: &str = "linkbus_reports";

/// What can go wrong keeping reports.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A correction without a reason.
    #[error("month {month} has version {latest}: a correction needs a reason")]
    NeedsReason {
        /// The month.
        month: String,
        /// Its latest version.
        latest: u32,
    },
    /// Another version was issued at the same moment.
    #[error("version {version} of {month} was just issued by someone else: read it, then correct it if need be")]
    Taken {
        /// The month.
        month: String,
        /// The version taken.
        version: u32,
    },
    /// The bucket could not be read or written.
    #[error("the reports bucket: {0}")]
    Store(String),
}

fn store_err(e: impl std::fmt::Display) -> ReportError {
    ReportError::Store(e.to_string())
}

/// One issued version, as listed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, JsonSchema)]
pub struct ReportVersion {
    /// The month, `YYYY-MM`.
    pub month: String,
    /// The version.
    pub version: u32,
}

/// The bucket key of a version.
fn key(month: &str, version: u32) -> String {
    format!("{month}.v{version}")
}

/// The month and version of a bucket key (none for a key this version does not write).
fn parse_key(key: &str) -> Option<ReportVersion> {
    let (month, version) = key.split_once(".v")?;
    Some(ReportVersion { month: month.to_owned(), version: version.parse().ok()? })
}

/// The issued reports.
#[derive(Debug, Clone)]
pub struct ReportBook {
    store: kv::Store,
}

impl ReportBook {
    /// Opens the bucket, creating it if needed.
    pub async fn open(js: &jetstream::Context, settings: &StreamSettings) -> Result<Self, ReportError> {
        nats::provision_bucket(js, BUCKET_REPORTS, "monthly supervision reports as issued", Duration::ZERO, settings)
            .await
            .map_err(store_err)?;
        Ok(Self { store: js.get_key_value(BUCKET_REPORTS).await.map_err(store_err)? })
    }

    /// Every version issued, by month then version.
    pub async fn versions(&self) -> Result<Vec<ReportVersion>, ReportError> {
        let keys: Vec<String> = self.store.keys().await.map_err(store_err)?.try_collect().await.map_err(store_err)?;
        let mut out: Vec<ReportVersion> = keys.iter().filter_map(|k| parse_key(k)).collect();
        out.sort();
        Ok(out)
    }

    /// The latest version of `month`'s report, if any was issued.
    async fn latest(&self, month: &str) -> Result<Option<u32>, ReportError> {
        Ok(self.versions().await?.into_iter().filter(|v| v.month == month).map(|v| v.version).max())
    }

    /// `month`'s report: `version`, or the latest.
    pub async fn get(&self, month: &str, version: Option<u32>) -> Result<Option<MonthlyReport>, ReportError> {
        let Some(version) = (match version {
            Some(v) => Some(v),
            None => self.latest(month).await?,
        }) else {
            return Ok(None);
        };
        let Some(value) = self.store.get(key(month, version)).await.map_err(store_err)? else { return Ok(None) };
        serde_json::from_slice(&value).map(Some).map_err(store_err)
    }

    /// Stores `report` as its month's next version (its `version` is set here): the first needs
    /// no reason, a correction does.
    pub async fn issue(&self, mut report: MonthlyReport) -> Result<MonthlyReport, ReportError> {
        let latest = self.latest(&report.month).await?;
        if let Some(latest) = latest
            && report.reason.as_deref().is_none_or(|r| r.trim().is_empty())
        {
            return Err(ReportError::NeedsReason { month: report.month, latest });
        }
        report.version = latest.unwrap_or(0) + 1;
        let value = serde_json::to_vec(&report).map_err(store_err)?;
        match self.store.create(key(&report.month, report.version), value.into()).await {
            Ok(_) => Ok(report),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                Err(ReportError::Taken { month: report.month, version: report.version })
            }
            Err(e) => Err(store_err(e)),
        }
    }
}

impl ReportBook {
    /// Issues last month's first version from `book`'s figures when, at `now` in the region's
    /// time zone, it is day `day` of this month or later and last month has no version yet:
    /// the report issued, or none. Any replica may call it at any time: a month with a version
    /// is left alone, and of two replicas issuing at once one stores it (the create-only write),
    /// the other gets none.
    pub async fn issue_if_due(
        &self,
        book: &CaseBook,
        day: i8,
        now: jiff::Timestamp,
    ) -> Result<Option<MonthlyReport>, ReportError> {
        let tz = book.time_zone();
        let today = tz.to_datetime(now).date();
        let Some(last) = today.first_of_month().yesterday().ok().map(jiff::civil::Date::first_of_month) else {
            return Ok(None);
        };
        if today.day() < day || self.latest(&last.strftime("%Y-%m").to_string()).await?.is_some() {
            return Ok(None);
        }
        match self.issue(MonthlyReport::issue(|q| book.stats(q), last, now, SCHEDULED_BY, None, &tz)).await {
            Ok(report) => Ok(Some(report)),
            Err(ReportError::NeedsReason { .. } | ReportError::Taken { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_month_and_version() {
        assert_eq!(key("2026-03", 2), "2026-03.v2");
        assert_eq!(parse_key("2026-03.v2"), Some(ReportVersion { month: "2026-03".into(), version: 2 }));
        assert_eq!(parse_key("2026-03"), None);
        assert_eq!(parse_key("2026-03.vx"), None);
    }
}
