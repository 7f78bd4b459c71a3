//! [`Figures`]: the counters of every group key per day and per month (in the region's time
//! zone), each mark added to the day and month its case was received and taken away when the
//! record changes; a week sums its days when asked. Times are kept as counts per value (to 3 significant digits), so
//! medians and percentiles can be taken away from too.

use std::collections::BTreeMap;

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;

use super::mark::{Mark, Part};
use super::rising::{BASELINE_MONTHS, Rising, rising};
use super::{Group, Period, Ranked, RankingQuery, RisingQuery, Row, StatsQuery};

/// The groups that are places, whose categories [`Figures::rising`] compares.
pub const PLACES: [Group; 3] = [Group::District, Group::SubDistrict, Group::Community];

/// One key's counters on one day (or, summed, in one period).
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Cell {
    received: u64,
    due: u64,
    responded: u64,
    rated: u64,
    solved: u64,
    satisfied: u64,
    assignments: u64,
    returns: u64,
    resolved: u64,
    reopened: u64,
    /// Open cases by their earliest deadline.
    deadlines: BTreeMap<Timestamp, u64>,
    /// Cases by their seconds routed → accepted.
    to_accept: BTreeMap<u32, u64>,
    /// Cases by their seconds accepted → resolved.
    to_resolve: BTreeMap<u32, u64>,
}

/// What one part of a mark adds to a cell.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Adds {
    /// `received`, `assignments`, `returns`, `due`, `responded`, `rated`, `solved`, `satisfied`,
    /// `resolved`, `reopened`, in [`Cell::counters`]' order.
    counters: [u64; 10],
    deadline: Option<Timestamp>,
    to_accept: Option<u32>,
    to_resolve: Option<u32>,
}

impl Adds {
    fn of(part: &Part, m: &Mark) -> Self {
        let mut adds = Self {
            counters: [1, part.assignments.into(), part.returns.into(), 0, 0, 0, 0, 0, 0, 0],
            ..Self::default()
        };
        if part.outcome {
            let rated = m.rating.is_some();
            let solved = m.rating.is_some_and(|(solved, _)| solved);
            let satisfied = m.rating.is_some_and(|(_, satisfied)| satisfied);
            let flags = [m.due, m.due && m.responded, rated, solved, satisfied, m.resolved, m.resolved && m.reopened];
            for (n, flag) in adds.counters[3..].iter_mut().zip(flags) {
                *n = u64::from(flag);
            }
            (adds.deadline, adds.to_accept, adds.to_resolve) = (m.deadline, m.to_accept, m.to_resolve);
        }
        adds
    }
}

/// Adds one to the count of `value` in `counts`, or takes one away (dropping what reaches 0).
fn step_key<K: Ord + Copy>(counts: &mut BTreeMap<K, u64>, value: Option<K>, add: bool) {
    let Some(value) = value else { return };
    let n = counts.entry(value).or_default();
    *n = if add { *n + 1 } else { n.saturating_sub(1) };
    if *n == 0 {
        counts.remove(&value);
    }
}

impl Cell {
    fn counters(&mut self) -> [&mut u64; 10] {
        [
            &mut self.received,
            &mut self.assignments,
            &mut self.returns,
            &mut self.due,
            &mut self.responded,
            &mut self.rated,
            &mut self.solved,
            &mut self.satisfied,
            &mut self.resolved,
            &mut self.reopened,
        ]
    }

    /// Takes `old` away and adds `new` (either may be nothing): a value both have is left alone.
    /// Never below 0: what is taken away was added before.
    fn replace(&mut self, old: &Adds, new: &Adds) {
        for (n, (o, a)) in self.counters().into_iter().zip(old.counters.iter().zip(new.counters)) {
            *n = (*n + a).saturating_sub(*o);
        }
        for (counts, o, a) in [
            (&mut self.to_accept, old.to_accept, new.to_accept),
            (&mut self.to_resolve, old.to_resolve, new.to_resolve),
        ] {
            if o != a {
                step_key(counts, o, false);
                step_key(counts, a, true);
            }
        }
        if old.deadline != new.deadline {
            step_key(&mut self.deadlines, old.deadline, false);
            step_key(&mut self.deadlines, new.deadline, true);
        }
    }

    fn is_empty(&self) -> bool {
        self.received == 0
    }

    fn merge(&mut self, other: &Self) {
        for (a, b) in [
            (&mut self.received, other.received),
            (&mut self.due, other.due),
            (&mut self.responded, other.responded),
            (&mut self.rated, other.rated),
            (&mut self.solved, other.solved),
            (&mut self.satisfied, other.satisfied),
            (&mut self.assignments, other.assignments),
            (&mut self.returns, other.returns),
            (&mut self.resolved, other.resolved),
            (&mut self.reopened, other.reopened),
        ] {
            *a += b;
        }
        for (mine, theirs) in [(&mut self.to_accept, &other.to_accept), (&mut self.to_resolve, &other.to_resolve)] {
            for (v, n) in theirs {
                *mine.entry(*v).or_default() += n;
            }
        }
        for (v, n) in &other.deadlines {
            *self.deadlines.entry(*v).or_default() += n;
        }
    }

    fn row(&self, key: &str, period: Date, now: Timestamp) -> Row {
        let rate = |n: u64, of: u64| (of > 0).then(|| n as f64 / of as f64);
        let (accept, resolve) = (median_and_p90(&self.to_accept), median_and_p90(&self.to_resolve));
        Row {
            key: key.to_owned(),
            period: period.to_string(),
            received: self.received,
            due: self.due,
            responded: self.responded,
            response_rate: rate(self.responded, self.due),
            rated: self.rated,
            solved: self.solved,
            resolution_rate: rate(self.solved, self.rated),
            satisfied: self.satisfied,
            satisfaction_rate: rate(self.satisfied, self.rated),
            assignments: self.assignments,
            returns: self.returns,
            return_rate: rate(self.returns, self.assignments),
            resolved: self.resolved,
            reopened: self.reopened,
            reopen_rate: rate(self.reopened, self.resolved),
            overdue: self.deadlines.range(..=now).map(|(_, n)| n).sum(),
            to_accept_median_s: accept[0],
            to_accept_p90_s: accept[1],
            to_resolve_median_s: resolve[0],
            to_resolve_p90_s: resolve[1],
        }
    }
}

/// The nearest-rank median and 90th percentile of the values counted in `counts`: the values at
/// ranks ⌈0.5·n⌉ and ⌈0.9·n⌉ (at least 1), in one pass after the count.
fn median_and_p90(counts: &BTreeMap<u32, u64>) -> [Option<u32>; 2] {
    let n: u64 = counts.values().sum();
    let rank = |q: f64| ((q * n as f64).ceil() as u64).max(1);
    let ranks = [rank(0.5), rank(0.9)];
    let mut out = [None; 2];
    let mut seen = 0;
    for (value, count) in counts {
        seen += count;
        for (slot, rank) in out.iter_mut().zip(ranks) {
            if slot.is_none() && seen >= rank {
                *slot = Some(*value);
            }
        }
        if out[1].is_some() {
            break;
        }
    }
    out
}

/// One key's counters per day and per month (by the period's first day): a month is read
/// without summing its days, so rankings and reports cost one counter set per key.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Keyed {
    days: BTreeMap<Date, Cell>,
    months: BTreeMap<Date, Cell>,
}

impl Keyed {
    /// Takes `old` from the day's and the month's cells of `day` and adds `new`, dropping a cell
    /// once empty.
    fn replace(&mut self, day: Date, old: &Adds, new: &Adds) {
        for (cells, start) in [(&mut self.days, day), (&mut self.months, day.first_of_month())] {
            let cell = cells.entry(start).or_default();
            cell.replace(old, new);
            if cell.is_empty() {
                cells.remove(&start);
            }
        }
    }
}

/// Cases per category per month, by category.
type CategoryMonths = BTreeMap<Date, BTreeMap<String, u64>>;

/// The figures of every group key per day, over the marks added to them.
#[derive(Debug, Clone)]
pub struct Figures {
    time_zone: TimeZone,
    pub(super) cells: BTreeMap<Group, BTreeMap<String, Keyed>>,
    /// Each place's (district, sub-district or community) cases per month by category: what
    /// [`Figures::rising`] compares.
    pub(super) categories: BTreeMap<(Group, String), CategoryMonths>,
}

impl Default for Figures {
    fn default() -> Self {
        Self::new(TimeZone::UTC)
    }
}

impl Figures {
    /// No figures yet; days are counted in `time_zone` (the region's).
    pub fn new(time_zone: TimeZone) -> Self {
        Self { time_zone, cells: BTreeMap::new(), categories: BTreeMap::new() }
    }

    /// The time zone days are counted in.
    pub fn time_zone(&self) -> &TimeZone {
        &self.time_zone
    }

    /// The day `at` is in, in the figures' time zone.
    pub fn day(&self, at: Timestamp) -> Date {
        self.time_zone.to_datetime(at).date()
    }

    /// Adds a case's mark to its groups (or, `add` false, takes it away).
    pub fn apply(&mut self, mark: &Mark, add: bool) {
        if add { self.replace(None, Some(mark)) } else { self.replace(Some(mark), None) }
    }

    /// Moves a case's figures from its `old` mark to its `new` one (either may be none: a new
    /// record, one merged away). When both count under the same keys on the same day — a record
    /// moving through its life — each cell is found once and only what changed is written.
    pub fn replace(&mut self, old: Option<&Mark>, new: Option<&Mark>) {
        if old == new {
            return;
        }
        let same_keys = |o: &Mark, n: &Mark| {
            o.received_at == n.received_at
                && o.parts.len() == n.parts.len()
                && o.parts.iter().zip(&n.parts).all(|(a, b)| a.group == b.group && a.key == b.key)
        };
        match (old, new) {
            (Some(o), Some(n)) if same_keys(o, n) => {
                let day = self.day(n.received_at);
                for (po, pn) in o.parts.iter().zip(&n.parts) {
                    self.update(pn, day, &Adds::of(po, o), &Adds::of(pn, n));
                }
            }
            _ => {
                for (m, add) in old.map(|o| (o, false)).into_iter().chain(new.map(|n| (n, true))) {
                    let day = self.day(m.received_at);
                    self.count_category(m, day.first_of_month(), add);
                    for part in &m.parts {
                        let (none, adds) = (Adds::default(), Adds::of(part, m));
                        let (from, to) = if add { (&none, &adds) } else { (&adds, &none) };
                        self.update(part, day, from, to);
                    }
                }
            }
        }
    }

    /// Adds one to the month's count of `m`'s category in each of its places (or takes it away).
    fn count_category(&mut self, m: &Mark, month: Date, add: bool) {
        let Some(category) = m.parts.iter().find(|p| p.group == Group::Category) else { return };
        for place in m.parts.iter().filter(|p| PLACES.contains(&p.group)) {
            let place_key = (place.group, place.key.clone());
            let months = self.categories.entry(place_key.clone()).or_default();
            let counts = months.entry(month).or_default();
            let n = counts.entry(category.key.clone()).or_default();
            *n = if add { *n + 1 } else { n.saturating_sub(1) };
            if *n == 0 {
                counts.remove(&category.key);
                if counts.is_empty() {
                    months.remove(&month);
                    if months.is_empty() {
                        self.categories.remove(&place_key);
                    }
                }
            }
        }
    }

    /// The categories rising in a place (`q.place`; none: the whole region) in `q.month`
    /// against its previous months: see [`super::rising`].
    pub fn rising(&self, q: &RisingQuery) -> Vec<Rising> {
        let month = q.month.first_of_month();
        let none = BTreeMap::new();
        let region: CategoryMonths;
        let months = match &q.place {
            Some(place) => self.categories.get(place).unwrap_or(&none),
            None => {
                let mut all = CategoryMonths::new();
                for (category, keyed) in self.cells.get(&Group::Category).into_iter().flatten() {
                    for (start, cell) in &keyed.months {
                        all.entry(*start).or_default().insert(category.clone(), cell.received);
                    }
                }
                region = all;
                &region
            }
        };
        let empty = BTreeMap::new();
        let mut before = Vec::with_capacity(BASELINE_MONTHS);
        let mut start = month;
        for _ in 0..BASELINE_MONTHS {
            let Some(previous) = start.yesterday().ok().map(Date::first_of_month) else { break };
            before.push(months.get(&previous).unwrap_or(&empty).clone());
            start = previous;
        }
        rising(months.get(&month).unwrap_or(&empty), &before, self.part_gone(month, q.now))
    }

    /// The part of `month` gone at `now` in the figures' time zone: 0 before it, 1 after it.
    fn part_gone(&self, month: Date, now: Timestamp) -> f64 {
        let at = |d: Date| self.time_zone.to_timestamp(d.to_datetime(jiff::civil::Time::midnight())).ok();
        let next = month.last_of_month().tomorrow().ok();
        match (at(month), next.and_then(at)) {
            (Some(start), Some(end)) => {
                let gone = now.duration_since(start).as_secs_f64() / end.duration_since(start).as_secs_f64();
                gone.clamp(0.0, 1.0)
            }
            _ => 1.0,
        }
    }

    /// Replaces `old` by `new` in the cells of `part`'s key on `day`, dropping what empties.
    fn update(&mut self, part: &Part, day: Date, old: &Adds, new: &Adds) {
        let keys = self.cells.entry(part.group).or_default();
        // One search for a key already counted (an update's); the key cloned only when new.
        let emptied = match keys.get_mut(&part.key) {
            Some(keyed) => {
                keyed.replace(day, old, new);
                keyed.days.is_empty()
            }
            None => {
                let mut keyed = Keyed::default();
                keyed.replace(day, old, new);
                if !keyed.days.is_empty() {
                    keys.insert(part.key.clone(), keyed);
                }
                false
            }
        };
        if emptied {
            keys.remove(&part.key);
        }
        if keys.is_empty() {
            self.cells.remove(&part.group);
        }
    }

    /// The rows `q` asks for, by key then period.
    pub fn rows(&self, q: &StatsQuery) -> Vec<Row> {
        let StatsQuery { group, period, from, to, now, .. } = *q;
        let Some(keys) = self.cells.get(&group) else { return Vec::new() };
        let (first, last) = (period.start(from), period.end(to));
        let mut out = Vec::new();
        for (key, keyed) in keys.iter().filter(|(k, _)| q.only.as_ref().is_none_or(|only| only == *k)) {
            if period == Period::Month {
                out.extend(keyed.months.range(from..=to).map(|(start, cell)| cell.row(key, *start, now)));
                continue;
            }
            let mut periods: BTreeMap<Date, Cell> = BTreeMap::new();
            for (day, cell) in keyed.days.range(first..=last) {
                let start = period.start(*day);
                if (from..=to).contains(&start) {
                    periods.entry(start).or_default().merge(cell);
                }
            }
            out.extend(periods.iter().map(|(start, cell)| cell.row(key, *start, now)));
        }
        out
    }

    /// The ranking `q` asks for: the keys of its group in its month by its rate (best first;
    /// ties by key; those without the rate last), each with the rate in the month before.
    pub fn ranking(&self, q: &RankingQuery) -> Vec<Ranked> {
        let RankingQuery { group, rate, now, .. } = *q;
        let month = q.month.first_of_month();
        let of = |month: Date| StatsQuery { group, period: Period::Month, from: month, to: month, now, only: None };
        let before = month.yesterday().ok().map(Date::first_of_month);
        let previous: BTreeMap<String, Option<f64>> = before
            .map(|b| self.rows(&of(b)))
            .unwrap_or_default()
            .into_iter()
            .map(|r| (r.key.clone(), rate.of(&r)))
            .collect();
        let mut ranked: Vec<Ranked> = self
            .rows(&of(month))
            .into_iter()
            .map(|row| {
                let value = rate.of(&row);
                let previous = previous.get(&row.key).copied().flatten();
                let change = value.zip(previous).map(|(v, p)| v - p);
                Ranked { rank: None, value, previous, change, row }
            })
            .collect();
        let better = |v: f64| if rate.lower_is_better() { v } else { -v };
        ranked.sort_by(|a, b| match (a.value, b.value) {
            (Some(x), Some(y)) => better(x).total_cmp(&better(y)).then_with(|| a.row.key.cmp(&b.row.key)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.row.key.cmp(&b.row.key),
        });
        for (i, r) in ranked.iter_mut().enumerate().filter(|(_, r)| r.value.is_some()) {
            r.rank = Some(i + 1);
        }
        ranked
    }
}
