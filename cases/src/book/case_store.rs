//! [`CaseStore`]: what the rest of linkbus asks of the case book, as a trait.

use linkbus_wire::{Action, Actor, CaseRecord};

use super::error::ActError;
use super::handle::CaseBook;
use super::read::CaseFilter;
use super::stats::DepartmentStats;

/// What the rest of linkbus asks of the case book: the HTTP API (cases, residents' follow-ups,
/// figures) and the adapters (a source's own cases, its updates to them). One trait, implemented
/// by [`CaseBook`], so each of them is tested against an in-memory fake without NATS.
pub trait CaseStore: Send + Sync + 'static {
    /// Cases matching `filter`, newest first.
    fn list(&self, filter: &CaseFilter) -> Vec<CaseRecord>;
    /// One case.
    fn get(&self, case_id: &str) -> Option<CaseRecord>;
    /// The case a report with this source-system id belongs to, from the CloudEvents `source`
    /// given (`None`: from any source); see [`CaseBook::by_source_id`].
    fn by_source_id(&self, source: Option<&str>, source_id: &str) -> Option<CaseRecord>;
    /// Applies an action by `actor`; the updated case.
    fn act<'a>(
        &'a self,
        case_id: &'a str,
        actor: &'a Actor,
        action: &'a Action,
    ) -> futures::future::BoxFuture<'a, Result<CaseRecord, ActError>>;
    /// Per-department handling figures, by department id.
    fn department_stats(&self) -> Vec<DepartmentStats>;
}

impl CaseStore for CaseBook {
    fn list(&self, filter: &CaseFilter) -> Vec<CaseRecord> {
        CaseBook::list(self, filter)
    }

    fn get(&self, case_id: &str) -> Option<CaseRecord> {
        CaseBook::get(self, case_id)
    }

    fn by_source_id(&self, source: Option<&str>, source_id: &str) -> Option<CaseRecord> {
        CaseBook::by_source_id(self, source, source_id)
    }

    fn act<'a>(
        &'a self,
        case_id: &'a str,
        actor: &'a Actor,
        action: &'a Action,
    ) -> futures::future::BoxFuture<'a, Result<CaseRecord, ActError>> {
        Box::pin(CaseBook::act(self, case_id, actor, action))
    }

    fn department_stats(&self) -> Vec<DepartmentStats> {
        CaseBook::department_stats(self)
    }
}
