//! Reading the book: listing with filters, a page at a time, one case, a report by its source's
//! id, and following changes. From the in-memory copy, in the listing order of the book's index
//! (so a page costs what it returns, not what the book holds); a record that left memory
//! ([`super::archive`]) is read from the bucket.

use std::cmp::Reverse;
use std::collections::HashMap;

use futures::{StreamExt as _, TryStreamExt as _};
use jiff::Timestamp;
use linkbus_bus::sync::read;
use linkbus_wire::{self as wire, CaseRecord, CaseState};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::error::ActError;
use super::handle::CaseBook;
use super::index::BookIndex;
use super::index::{ListKey, Listed, Row};
use super::search::{REPEAT_DAYS, REPEAT_RADIUS_M, SearchKeys, SearchQuery};
use crate::supervision::Group;

/// An address several cases were reported at ([`CaseBook::repeat_addresses`]).
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct RepeatAddress {
    /// The address as its newest case gives it.
    pub address: String,
    /// How many cases.
    pub count: usize,
    /// Their ids, newest first.
    pub case_ids: Vec<String>,
}

/// Archived records a page reads from the bucket at once.
const ARCHIVE_READS: usize = 16;

/// Filters for [`CaseBook::list`] and [`CaseBook::page`]; every field set must match.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct CaseFilter {
    /// In this state.
    pub state: Option<CaseState>,
    /// In this community.
    pub community: Option<String>,
    /// Involving this department (responsible, accepted, or rejected it).
    pub department: Option<String>,
    /// And involving this one too (a department's own view, whatever `department` asks).
    #[serde(default)]
    pub visible_to: Option<String>,
    /// Reported by this kind of system.
    pub system: Option<wire::SourceSystem>,
    /// Created at or after.
    pub since: Option<Timestamp>,
    /// Created before.
    pub until: Option<Timestamp>,
    /// Also the cases that left memory (closed or cancelled longer than the book's
    /// `closed_retention` ago): [`CaseBook::page`] reads them from the bucket. A filter on state
    /// `closed` or `cancelled` includes them anyway.
    #[serde(default)]
    pub archived: bool,
    /// Found by this search ([`SearchQuery`]: ids, address, reporter's name or phone), in memory
    /// or not: a search includes the cases that left memory, and reads them from the bucket.
    #[serde(skip)]
    pub text: Option<SearchQuery>,
}

impl CaseFilter {
    /// True when the record matches.
    pub fn matches(&self, r: &CaseRecord) -> bool {
        self.matches_listed(r.created_at, &Listed::of(r))
            && self.text.as_ref().is_none_or(|q| SearchKeys::of(r).matches(q))
    }

    /// True when a record created at `created_at`, as the index lists it, matches, but for
    /// `text` (the rows a search gives are those it found: [`CaseFilter::rows`]).
    pub(super) fn matches_listed(&self, created_at: Timestamp, r: &Listed) -> bool {
        let involves = |d: &String| r.involved.contains(d);
        self.state.is_none_or(|s| s == r.state)
            && self.community.as_ref().is_none_or(|c| r.community.as_ref() == Some(c))
            && self.department.as_ref().is_none_or(involves)
            && self.visible_to.as_ref().is_none_or(involves)
            && self.system.is_none_or(|s| r.systems.contains(&s))
            && self.since.is_none_or(|t| created_at >= t)
            && self.until.is_none_or(|t| created_at < t)
    }

    /// Whether the cases that left memory are asked for.
    fn wants_archived(&self) -> bool {
        self.archived || self.text.is_some() || matches!(self.state, Some(CaseState::Closed | CaseState::Cancelled))
    }

    /// The rows to filter from just after `after` on: every record, or those `hits` (the
    /// search's) names.
    fn rows<'a>(
        index: &'a BookIndex,
        hits: Option<&'a [ListKey]>,
        after: Option<&'a ListKey>,
    ) -> Box<dyn Iterator<Item = Row<'a>> + 'a> {
        match hits {
            Some(keys) => Box::new(index.rows(keys, after)),
            None => Box::new(index.listing(after)),
        }
    }
}

/// True when the department has or had the case.
pub fn involves(r: &CaseRecord, department: &str) -> bool {
    r.departments.iter().any(|d| d == department)
        || r.accepted_by.as_deref() == Some(department)
        || r.rejected_by.iter().any(|d| d == department)
}

/// Where a page of a listing ended: the last case on it. The next page starts after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The case's creation time.
    pub created_at: Timestamp,
    /// The case's id.
    pub case_id: String,
}

impl Cursor {
    /// The cursor of a page that ended with `r`.
    pub fn after(r: &CaseRecord) -> Self {
        Self { created_at: r.created_at, case_id: r.case_id.clone() }
    }

    fn key(&self) -> ListKey {
        (Reverse(self.created_at), self.case_id.clone())
    }

    /// Whether `r` comes after this cursor in a listing (newest first, then by id).
    pub fn precedes(&self, r: &CaseRecord) -> bool {
        (Reverse(r.created_at), r.case_id.as_str()) > (Reverse(self.created_at), self.case_id.as_str())
    }
}

/// `<creation time in nanoseconds since 1970>.<case id>`.
impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.created_at.as_nanosecond(), self.case_id)
    }
}

impl std::str::FromStr for Cursor {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not a cursor (the `next` of a page)");
        let (nanos, case_id) = s.split_once('.').ok_or_else(bad)?;
        let created_at = nanos.parse::<i128>().ok().and_then(|n| Timestamp::from_nanosecond(n).ok()).ok_or_else(bad)?;
        if !wire::is_event_id(case_id) {
            return Err(bad());
        }
        Ok(Self { created_at, case_id: case_id.to_owned() })
    }
}

/// A page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct CasePage {
    /// The cases, newest first.
    pub cases: Vec<CaseRecord>,
    /// Where the next page starts, when more cases match.
    pub next: Option<Cursor>,
}

impl CaseBook {
    /// The cases in memory matching `filter`, newest first (a case that left memory is not
    /// among them: see [`CaseBook::page`]).
    pub fn list(&self, filter: &CaseFilter) -> Vec<CaseRecord> {
        let cache = read(&self.cache);
        let index = read(&self.index);
        let hits = filter.text.as_ref().map(|q| index.search(q));
        CaseFilter::rows(&index, hits.as_deref(), None)
            .filter(|(key, listed, archived)| !archived && filter.matches_listed(key.0.0, listed))
            .filter_map(|(key, _, _)| cache.get(&key.1))
            .map(|c| c.stored.record.clone())
            .collect()
    }

    /// The cases in memory for which `keep` holds, newest first: only those are copied.
    pub fn list_where(&self, mut keep: impl FnMut(&CaseRecord) -> bool) -> Vec<CaseRecord> {
        let cache = read(&self.cache);
        let index = read(&self.index);
        index
            .listing(None)
            .filter(|(_, _, archived)| !archived)
            .filter_map(|((_, id), _, _)| cache.get(id))
            .map(|c| &c.stored.record)
            .filter(|r| keep(r))
            .cloned()
            .collect()
    }

    /// At most `limit` cases matching `filter` after `after` (from the first without), newest
    /// first, and where the next page starts. It walks the book's listing order from the cursor
    /// and copies only the cases it returns; those that left memory (when `filter` asks for
    /// them) are read from the bucket.
    pub async fn page(&self, filter: &CaseFilter, after: Option<&Cursor>, limit: usize) -> Result<CasePage, ActError> {
        // The cases found, by their place in the listing: in memory (copied), or archived (to read).
        let (found, more) = {
            let cache = read(&self.cache);
            let index = read(&self.index);
            let wants_archived = filter.wants_archived();
            let mut found: Vec<(ListKey, Option<CaseRecord>)> = Vec::new();
            let mut more = false;
            let after = after.map(Cursor::key);
            let hits = filter.text.as_ref().map(|q| index.search(q));
            for (key, listed, archived) in CaseFilter::rows(&index, hits.as_deref(), after.as_ref()) {
                if (archived && !wants_archived) || !filter.matches_listed(key.0.0, listed) {
                    continue;
                }
                if found.len() == limit {
                    more = true;
                    break;
                }
                let in_memory = match archived {
                    true => None,
                    false => match cache.get(&key.1) {
                        Some(c) => Some(c.stored.record.clone()),
                        None => continue,
                    },
                };
                found.push((key.clone(), in_memory));
            }
            (found, more)
        };
        let read_back = self.read_back(found).await?;
        let last = read_back.last().map(|(key, _)| key.clone());
        let cases = read_back.into_iter().filter_map(|(_, r)| r).collect();
        let next = last.filter(|_| more).map(|(Reverse(created_at), case_id)| Cursor { created_at, case_id });
        Ok(CasePage { cases, next })
    }

    /// `found` with those not in memory (`None`) read from the bucket, a few at a time; one gone
    /// meanwhile stays `None`.
    async fn read_back(
        &self,
        found: Vec<(ListKey, Option<CaseRecord>)>,
    ) -> Result<Vec<(ListKey, Option<CaseRecord>)>, ActError> {
        futures::stream::iter(found)
            .map(|(key, in_memory)| async move {
                if in_memory.is_some() {
                    return Ok((key, in_memory));
                }
                match self.load(&key.1).await {
                    Ok((stored, _)) => Ok((key, Some(stored.record))),
                    Err(ActError::NotFound(_)) => Ok((key, None)),
                    Err(e) => Err(e),
                }
            })
            .buffered(ARCHIVE_READS)
            .try_collect()
            .await
    }

    /// The other cases reported within [`REPEAT_RADIUS_M`] of the case `case_id` or at the same
    /// address (folded), created within [`REPEAT_DAYS`] of it either way, that match `filter`
    /// (a department's `visible_to`): at most `limit`, newest first, in memory or read from the
    /// bucket. From the book's search index, never a scan; `None` when there is no such case.
    pub async fn repeats(
        &self,
        case_id: &str,
        filter: &CaseFilter,
        limit: usize,
    ) -> Result<Option<Vec<CaseRecord>>, ActError> {
        let found = {
            let cache = read(&self.cache);
            let index = read(&self.index);
            let window = jiff::SignedDuration::from_hours(24 * REPEAT_DAYS);
            let Some(keys) = index.repeats(case_id, REPEAT_RADIUS_M, window) else { return Ok(None) };
            let found: Vec<(ListKey, Option<CaseRecord>)> = index
                .rows(&keys, None)
                .filter(|(key, listed, _)| filter.matches_listed(key.0.0, listed))
                .filter_map(|(key, _, archived)| match archived {
                    true => Some((key.clone(), None)),
                    false => cache.get(&key.1).map(|c| (key.clone(), Some(c.stored.record.clone()))),
                })
                .take(limit)
                .collect();
            found
        };
        Ok(Some(self.read_back(found).await?.into_iter().filter_map(|(_, r)| r).collect()))
    }

    /// The addresses with two cases or more received in `from..to` in `place` (a district,
    /// sub-district or community; none: anywhere): the most first (then by address), at most
    /// `limit`, each with its cases' ids (newest first) and the address as its newest case gives
    /// it. Addresses are compared folded, as repeats are ([`super::search`]); a report merged into
    /// another case counts in that case. The month's part of the listing is read (it is in
    /// creation order), not the whole book.
    pub async fn repeat_addresses(
        &self,
        place: Option<(Group, &str)>,
        from: Timestamp,
        to: Timestamp,
        limit: usize,
    ) -> Result<Vec<RepeatAddress>, ActError> {
        let (groups, found) = {
            let cache = read(&self.cache);
            let index = read(&self.index);
            let mut by_address: HashMap<&str, Vec<&ListKey>> = HashMap::new();
            for (key, listed, _) in index.created_before(to).take_while(|(key, _, _)| key.0.0 >= from) {
                let Some(mark) = &listed.mark else { continue };
                if place.is_some_and(|(group, place)| !mark.counts_under(group, place)) {
                    continue;
                }
                if let Some(address) = index.folded_address(&key.1) {
                    by_address.entry(address).or_default().push(key);
                }
            }
            let mut groups: Vec<(&str, Vec<&ListKey>)> = by_address.into_iter().filter(|(_, k)| k.len() >= 2).collect();
            groups.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(b.0)));
            groups.truncate(limit);
            let found: Vec<(ListKey, Option<CaseRecord>)> = groups
                .iter()
                .map(|(_, keys)| (keys[0].clone(), cache.get(&keys[0].1).map(|c| c.stored.record.clone())))
                .collect();
            let groups: Vec<Vec<String>> =
                groups.into_iter().map(|(_, keys)| keys.into_iter().map(|k| k.1.clone()).collect()).collect();
            (groups, found)
        };
        let newest = self.read_back(found).await?;
        Ok(groups
            .into_iter()
            .zip(newest)
            .map(|(case_ids, (_, r))| RepeatAddress {
                address: r.and_then(|r| r.case.address).unwrap_or_default(),
                count: case_ids.len(),
                case_ids,
            })
            .collect())
    }

    /// Every change of a case record from now on, whichever replica made it (records as the
    /// bucket's follower or this replica's own transitions store them; a record stored again
    /// unchanged is not sent). A receiver that falls more than 4,096 changes behind gets
    /// [`broadcast::error::RecvError::Lagged`] and should read the book afresh ([`CaseBook::list`]).
    pub fn subscribe(&self) -> broadcast::Receiver<CaseRecord> {
        self.changes.subscribe()
    }

    /// One case in memory (see [`CaseBook::fetch`] for one that left it).
    pub fn get(&self, case_id: &str) -> Option<CaseRecord> {
        read(&self.cache).get(case_id).map(|c| c.stored.record.clone())
    }

    /// One case, in memory or read from the bucket if it left memory.
    pub async fn fetch(&self, case_id: &str) -> Result<Option<CaseRecord>, ActError> {
        if let Some(r) = self.get(case_id) {
            return Ok(Some(r));
        }
        if read(&self.index).archived_revision(case_id).is_none() {
            return Ok(None);
        }
        match self.load(case_id).await {
            Ok((stored, _)) => Ok(Some(stored.record)),
            Err(ActError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The case a report with this source-system id belongs to (the merged-into case for a
    /// merged report), as a resident following up would look it up. Source ids are unique only
    /// within their source: `source` (a CloudEvents `source`, e.g. `/open311`) scopes the lookup,
    /// so one system cannot reach another's requests; `None` (dispatchers, who see every case)
    /// takes a report with that id from any source. In memory only: see
    /// [`CaseBook::fetch_by_source_id`].
    pub fn by_source_id(&self, source: Option<&str>, source_id: &str) -> Option<CaseRecord> {
        let own = self.own_case_id(source, source_id)?;
        let cache = read(&self.cache);
        let own = &cache.get(&own)?.stored.record;
        match &own.merged_into {
            Some(primary) => cache.get(primary).map(|c| c.stored.record.clone()),
            None => Some(own.clone()),
        }
    }

    /// [`CaseBook::by_source_id`], reading from the bucket the cases that left memory.
    pub async fn fetch_by_source_id(
        &self,
        source: Option<&str>,
        source_id: &str,
    ) -> Result<Option<CaseRecord>, ActError> {
        let Some(own) = self.own_case_id(source, source_id) else { return Ok(None) };
        let Some(own) = self.fetch(&own).await? else { return Ok(None) };
        match &own.merged_into {
            Some(primary) => self.fetch(primary).await,
            None => Ok(Some(own)),
        }
    }

    /// The id of the case whose own report this is.
    fn own_case_id(&self, source: Option<&str>, source_id: &str) -> Option<String> {
        let by_source = read(&self.by_source);
        match source {
            Some(source) => by_source.get(&(source.to_owned(), source_id.to_owned())).cloned(),
            None => by_source.iter().find(|((_, id), _)| id == source_id).map(|(_, case_id)| case_id.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_and_orders_newest_first() {
        let at: Timestamp = "2026-11-28T08:00:00.123456789Z".parse().expect("a time");
        let cursor = Cursor { created_at: at, case_id: "sf311-42:7".into() };
        assert_eq!(cursor.to_string().parse::<Cursor>(), Ok(cursor.clone()));
        for bad in ["", "12", "x.sf311-1", "12.a.b", "12.>", "99999999999999999999999999999.a"] {
            assert!(bad.parse::<Cursor>().is_err(), "{bad}");
        }
        let mut r: CaseRecord =
            serde_json::from_str(include_str!("../../../docs/examples/case-record.json")).expect("the example");
        r.created_at = at;
        r.case_id = "sf311-42:8".into();
        assert!(cursor.precedes(&r), "same time: by id");
        r.created_at = at - jiff::SignedDuration::from_secs(1);
        r.case_id = "a".into();
        assert!(cursor.precedes(&r), "older comes after");
        r.created_at = at + jiff::SignedDuration::from_secs(1);
        assert!(!cursor.precedes(&r), "newer comes before");
    }
}
