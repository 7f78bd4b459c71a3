//! [`CaseStore`]: what the rest of linkbus asks of the case book, as a trait.

use std::cmp::Reverse;

use futures::future::BoxFuture;
use jiff::tz::TimeZone;
use linkbus_wire::{Action, Actor, CaseRecord};

use super::error::ActError;
use super::handle::CaseBook;
use super::read::{CaseFilter, CasePage, Cursor, RepeatAddress};
use super::stats::DepartmentStats;
use crate::supervision::{Figures, Group, Mark, Ranked, RankingQuery, Rising, RisingQuery, Row, StatsQuery};

/// What the rest of linkbus asks of the case book: the HTTP API (cases, residents' follow-ups,
/// figures) and the adapters (a source's own cases, its updates to them). One trait, implemented
/// by [`CaseBook`], so each of them is tested against an in-memory fake without NATS (the
/// methods with a default are answered from the others there).
pub trait CaseStore: Send + Sync + 'static {
    /// Cases in memory matching `filter`, newest first.
    fn list(&self, filter: &CaseFilter) -> Vec<CaseRecord>;
    /// One case in memory.
    fn get(&self, case_id: &str) -> Option<CaseRecord>;
    /// The case a report with this source-system id belongs to, from the CloudEvents `source`
    /// given (`None`: from any source); see [`CaseBook::by_source_id`].
    fn by_source_id(&self, source: Option<&str>, source_id: &str) -> Option<CaseRecord>;
    /// A page of the cases matching `filter` after `after`; see [`CaseBook::page`].
    fn page<'a>(
        &'a self,
        filter: &'a CaseFilter,
        after: Option<&'a Cursor>,
        limit: usize,
    ) -> BoxFuture<'a, Result<CasePage, ActError>> {
        let mut cases: Vec<CaseRecord> =
            self.list(filter).into_iter().filter(|r| after.is_none_or(|c| c.precedes(r))).collect();
        cases.sort_by(|a, b| (Reverse(a.created_at), &a.case_id).cmp(&(Reverse(b.created_at), &b.case_id)));
        let last = limit.checked_sub(1).and_then(|i| cases.get(i)).filter(|_| cases.len() > limit);
        let next = last.map(Cursor::after);
        cases.truncate(limit);
        Box::pin(std::future::ready(Ok(CasePage { cases, next })))
    }
    /// One case, in memory or not; see [`CaseBook::fetch`].
    fn fetch<'a>(&'a self, case_id: &'a str) -> BoxFuture<'a, Result<Option<CaseRecord>, ActError>> {
        Box::pin(std::future::ready(Ok(self.get(case_id))))
    }
    /// [`CaseStore::by_source_id`], in memory or not; see [`CaseBook::fetch_by_source_id`].
    fn fetch_by_source_id<'a>(
        &'a self,
        source: Option<&'a str>,
        source_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<CaseRecord>, ActError>> {
        Box::pin(std::future::ready(Ok(self.by_source_id(source, source_id))))
    }
    /// The repeats of a case visible through `filter`; see [`CaseBook::repeats`] (the default
    /// knows none: an empty list for a case [`CaseStore::get`] finds).
    fn repeats<'a>(
        &'a self,
        case_id: &'a str,
        filter: &'a CaseFilter,
        limit: usize,
    ) -> BoxFuture<'a, Result<Option<Vec<CaseRecord>>, ActError>> {
        let _ = (filter, limit);
        Box::pin(std::future::ready(Ok(self.get(case_id).map(|_| Vec::new()))))
    }
    /// Applies an action by `actor`; the updated case.
    fn act<'a>(
        &'a self,
        case_id: &'a str,
        actor: &'a Actor,
        action: &'a Action,
    ) -> BoxFuture<'a, Result<CaseRecord, ActError>>;
    /// Per-department handling figures, by department id.
    fn department_stats(&self) -> Vec<DepartmentStats>;
    /// The time zone of the supervision figures (the default: UTC).
    fn time_zone(&self) -> TimeZone {
        TimeZone::UTC
    }
    /// The supervision figures `q` asks for; see [`CaseBook::stats`] (the default counts the
    /// cases in memory afresh).
    fn stats(&self, q: &StatsQuery) -> Vec<Row> {
        self.figures().rows(q)
    }
    /// The ranking `q` asks for; see [`CaseBook::ranking`].
    fn ranking(&self, q: &RankingQuery) -> Vec<Ranked> {
        self.figures().ranking(q)
    }
    /// The categories rising in a place; see [`CaseBook::rising`].
    fn rising(&self, q: &RisingQuery) -> Vec<Rising> {
        self.figures().rising(q)
    }
    /// A place's addresses with several cases in `from..to`; see [`CaseBook::repeat_addresses`]
    /// (the default knows none).
    fn repeat_addresses<'a>(
        &'a self,
        place: Option<(Group, &'a str)>,
        from: jiff::Timestamp,
        to: jiff::Timestamp,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<RepeatAddress>, ActError>> {
        let _ = (place, from, to, limit);
        Box::pin(std::future::ready(Ok(Vec::new())))
    }
    /// The supervision figures of the cases in memory, counted afresh (what the defaults use).
    fn figures(&self) -> Figures {
        let mut figures = Figures::new(self.time_zone());
        for mark in self.list(&CaseFilter::default()).iter().filter_map(Mark::of) {
            figures.apply(&mark, true);
        }
        figures
    }
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

    fn page<'a>(
        &'a self,
        filter: &'a CaseFilter,
        after: Option<&'a Cursor>,
        limit: usize,
    ) -> BoxFuture<'a, Result<CasePage, ActError>> {
        Box::pin(CaseBook::page(self, filter, after, limit))
    }

    fn fetch<'a>(&'a self, case_id: &'a str) -> BoxFuture<'a, Result<Option<CaseRecord>, ActError>> {
        Box::pin(CaseBook::fetch(self, case_id))
    }

    fn fetch_by_source_id<'a>(
        &'a self,
        source: Option<&'a str>,
        source_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<CaseRecord>, ActError>> {
        Box::pin(CaseBook::fetch_by_source_id(self, source, source_id))
    }

    fn repeats<'a>(
        &'a self,
        case_id: &'a str,
        filter: &'a CaseFilter,
        limit: usize,
    ) -> BoxFuture<'a, Result<Option<Vec<CaseRecord>>, ActError>> {
        Box::pin(CaseBook::repeats(self, case_id, filter, limit))
    }

    fn act<'a>(
        &'a self,
        case_id: &'a str,
        actor: &'a Actor,
        action: &'a Action,
    ) -> BoxFuture<'a, Result<CaseRecord, ActError>> {
        Box::pin(CaseBook::act(self, case_id, actor, action))
    }

    fn department_stats(&self) -> Vec<DepartmentStats> {
        CaseBook::department_stats(self)
    }

    fn time_zone(&self) -> TimeZone {
        CaseBook::time_zone(self)
    }

    fn stats(&self, q: &StatsQuery) -> Vec<Row> {
        CaseBook::stats(self, q)
    }

    fn ranking(&self, q: &RankingQuery) -> Vec<Ranked> {
        CaseBook::ranking(self, q)
    }

    fn rising(&self, q: &RisingQuery) -> Vec<Rising> {
        CaseBook::rising(self, q)
    }

    fn repeat_addresses<'a>(
        &'a self,
        place: Option<(Group, &'a str)>,
        from: jiff::Timestamp,
        to: jiff::Timestamp,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<RepeatAddress>, ActError>> {
        Box::pin(CaseBook::repeat_addresses(self, place, from, to, limit))
    }
}
