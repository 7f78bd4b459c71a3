//! Reading the book: listing with filters, one case, a report by its source's id, and following
//! changes. All from the in-memory copy: no NATS round trip.

use jiff::Timestamp;
use linkbus_bus::sync::read;
use linkbus_wire::{self as wire, CaseRecord, CaseState};
use serde::Deserialize;
use tokio::sync::broadcast;

use super::handle::CaseBook;

/// Filters for [`CaseBook::list`]; every field set must match.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct CaseFilter {
    /// In this state.
    pub state: Option<CaseState>,
    /// In this community.
    pub community: Option<String>,
    /// Involving this department (responsible, accepted, or rejected it).
    pub department: Option<String>,
    /// Reported by this kind of system.
    pub system: Option<wire::SourceSystem>,
    /// Created at or after.
    pub since: Option<Timestamp>,
    /// Created before.
    pub until: Option<Timestamp>,
}

impl CaseFilter {
    fn matches(&self, r: &CaseRecord) -> bool {
        self.state.is_none_or(|s| s == r.state)
            && self.community.as_ref().is_none_or(|c| r.community.as_ref().is_some_and(|rc| &rc.id == c))
            && self.department.as_ref().is_none_or(|d| involves(r, d))
            && self.system.is_none_or(|s| r.reports.iter().any(|rep| rep.system == s))
            && self.since.is_none_or(|t| r.created_at >= t)
            && self.until.is_none_or(|t| r.created_at < t)
    }
}

/// True when the department has or had the case.
pub fn involves(r: &CaseRecord, department: &str) -> bool {
    r.departments.iter().any(|d| d == department)
        || r.accepted_by.as_deref() == Some(department)
        || r.rejected_by.iter().any(|d| d == department)
}

impl CaseBook {
    /// Cases matching `filter`, newest first.
    pub fn list(&self, filter: &CaseFilter) -> Vec<CaseRecord> {
        let mut out: Vec<CaseRecord> =
            read(&self.cache).values().map(|c| &c.stored.record).filter(|r| filter.matches(r)).cloned().collect();
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| a.case_id.cmp(&b.case_id)));
        out
    }

    /// Every change of a case record from now on, whichever replica made it (records as the
    /// bucket's follower or this replica's own transitions store them; a record stored again
    /// unchanged is not sent). A receiver that falls more than 4,096 changes behind gets
    /// [`broadcast::error::RecvError::Lagged`] and should read the book afresh ([`CaseBook::list`]).
    pub fn subscribe(&self) -> broadcast::Receiver<CaseRecord> {
        self.changes.subscribe()
    }

    /// One case.
    pub fn get(&self, case_id: &str) -> Option<CaseRecord> {
        read(&self.cache).get(case_id).map(|c| c.stored.record.clone())
    }

    /// The case a report with this source-system id belongs to (the merged-into case for a
    /// merged report), as a resident following up would look it up. Source ids are unique only
    /// within their source: `source` (a CloudEvents `source`, e.g. `/open311`) scopes the lookup,
    /// so one system cannot reach another's requests; `None` (dispatchers, who see every case)
    /// takes the first report with that id from any source.
    pub fn by_source_id(&self, source: Option<&str>, source_id: &str) -> Option<CaseRecord> {
        let own_id = match source {
            Some(source) => read(&self.by_source).get(&(source.to_owned(), source_id.to_owned())).cloned(),
            None => None,
        };
        let cache = read(&self.cache);
        let own = match own_id {
            Some(id) => &cache.get(&id)?.stored.record,
            None if source.is_some() => return None,
            None => cache.values().map(|c| &c.stored.record).find(|r| r.case.source_id == source_id)?,
        };
        match &own.merged_into {
            Some(primary) => cache.get(primary).map(|c| c.stored.record.clone()),
            None => Some(own.clone()),
        }
    }
}
