//! [`Mark`]: what one case record adds to the figures, derived from the record alone, so that
//! the same record gives the same mark on every replica and taking a record's old mark away
//! before adding its new one keeps the figures exact.

use jiff::Timestamp;
use linkbus_wire::{CaseRecord, TimelineEvent};

use super::Group;

/// A group key the case counts under.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Part {
    pub(super) group: Group,
    pub(super) key: String,
    /// Departments it was given to, under this key.
    pub(super) assignments: u32,
    /// Rejections, under this key.
    pub(super) returns: u32,
    /// Whether the outcome figures (response, ratings, resolution, overdue, times) count here:
    /// always, but for a department only the one that accepted it (or, while none has, those
    /// responsible now).
    pub(super) outcome: bool,
}

/// A case's part in the figures (none for a report merged into another case).
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    pub(super) received_at: Timestamp,
    pub(super) parts: Vec<Part>,
    pub(super) due: bool,
    pub(super) responded: bool,
    /// The latest rating: (solved, score ≥ 4).
    pub(super) rating: Option<(bool, bool)>,
    pub(super) resolved: bool,
    pub(super) reopened: bool,
    /// The open case's earliest deadline.
    pub(super) deadline: Option<Timestamp>,
    /// Seconds routed → accepted, kept to 3 significant digits.
    pub(super) to_accept: Option<u32>,
    /// Seconds accepted → resolved, kept to 3 significant digits.
    pub(super) to_resolve: Option<u32>,
}

/// The lowest score that counts as satisfied (of 1–5).
pub(super) const SATISFIED_SCORE: u8 = 4;

impl Mark {
    /// The mark of `r`; none when it is merged into another case (its primary counts).
    pub fn of(r: &CaseRecord) -> Option<Self> {
        if r.merged_into.is_some() {
            return None;
        }
        let mut involved: Vec<&String> = r.departments.iter().chain(&r.rejected_by).chain(&r.accepted_by).collect();
        involved.sort_unstable();
        involved.dedup();
        let returns = |d: &str| r.rejected_by.iter().filter(|x| *x == d).count() as u32;
        let all = |group, key: &str| Part {
            group,
            key: key.to_owned(),
            assignments: involved.len() as u32,
            returns: r.rejected_by.len() as u32,
            outcome: true,
        };
        let mut parts = Vec::with_capacity(5 + involved.len());
        if let Some(c) = &r.community {
            parts.push(all(Group::District, &c.district));
            if let Some(s) = &c.sub_district {
                parts.push(all(Group::SubDistrict, s));
            }
            parts.push(all(Group::Community, &c.id));
        }
        parts.push(all(Group::Category, &r.case.category));
        let system = r.reports.first().map_or(r.case.system, |f| f.system);
        parts.push(all(Group::System, system.as_str()));
        for d in &involved {
            let outcome = match &r.accepted_by {
                Some(a) => a == *d,
                None => r.departments.contains(d),
            };
            parts.push(Part {
                group: Group::Department,
                key: (*d).clone(),
                assignments: 1,
                returns: returns(d),
                outcome,
            });
        }

        let first = |event: TimelineEvent| r.timeline.iter().position(|e| e.event == event);
        let routed_at = first(TimelineEvent::Routed).map_or(r.created_at, |i| r.timeline[i].at);
        let accepted = first(TimelineEvent::Accepted);
        let escalated = first(TimelineEvent::Escalated);
        let resolved = accepted.and_then(|a| {
            r.timeline[a..].iter().find(|e| e.event == TimelineEvent::Resolved).map(|e| (r.timeline[a].at, e.at))
        });
        Some(Self {
            received_at: r.created_at,
            parts,
            due: !involved.is_empty(),
            responded: accepted.is_some_and(|a| escalated.is_none_or(|e| e > a)),
            rating: r.ratings.last().map(|g| (g.solved, g.score >= SATISFIED_SCORE)),
            resolved: first(TimelineEvent::Resolved).is_some(),
            reopened: r.reopened > 0,
            deadline: r.state.is_open().then(|| r.accept_by.into_iter().chain(r.resolve_by).min()).flatten(),
            to_accept: accepted.map(|a| keep(routed_at, r.timeline[a].at)),
            to_resolve: resolved.map(|(from, to)| keep(from, to)),
        })
    }
}

impl Mark {
    /// Whether the case counts under `key` of `group` (a place, a category …).
    pub fn counts_under(&self, group: Group, key: &str) -> bool {
        self.parts.iter().any(|p| p.group == group && p.key == key)
    }
}

/// Seconds from `from` to `to` (0 if before), to 3 significant digits: rounded down, so at most
/// 1% low, and exact below 1,000 s. A group's times are then a few hundred counters.
pub(super) fn keep(from: Timestamp, to: Timestamp) -> u32 {
    let secs = u32::try_from(to.duration_since(from).as_secs().max(0)).unwrap_or(u32::MAX);
    let mut unit = 1;
    while secs / unit >= 1000 {
        unit *= 10;
    }
    secs / unit * unit
}
