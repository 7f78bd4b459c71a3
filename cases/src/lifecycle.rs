//! The case state machine, pure: a record and an event in, the next record and the messages to
//! send out. No NATS, no clock of its own (`now` is an argument), so every rule is testable.
//!
//! ```text
//! routed ──accept──► accepted ──progress──► in_progress ──resolve──► resolved ──close──► closed
//!   │  ▲                 │                      │                       │ rate(solved=false)
//!   │  └─ reject: next candidate (else `rejected`, dispatchers alerted)  └──► accepted (reopened)
//!   └── no accept by the deadline: escalate up the department's ladder, alert dispatchers
//! any open state ──cancel (dispatcher, or the source)──► cancelled
//! any open state ──update (the source)──► same state, `source_updated` on the timeline
//! ```
//!
//! **Source updates.** The system that reported a case (actor kind `source`, id its CloudEvents
//! `source`) may update it (`update`), withdraw it (`cancel`) or say it is done (`resolve`, from
//! any open state before resolved) — its own cases only. A source message delivered twice is
//! recorded once ([`is_repeat`]).

use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp};
use linkbus_matching::geodesy;
use linkbus_wire::{
    Action, Actor, ActorKind, AssignmentReason, CaseRecord, CaseState, OfferState, OfferStatus, Rating, ReportRef,
    RoutedCase, TimelineEntry, TimelineEvent, VolunteerChoice,
};

/// Deadlines for one priority.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Deadlines {
    /// A department must accept within this.
    pub accept: SignedDuration,
    /// The accepting department must resolve within this.
    pub resolve: SignedDuration,
}

/// When reports are the same incident.
#[derive(Debug, Clone, PartialEq)]
pub struct MergePolicy {
    /// At most this far apart, metres.
    pub distance_m: f64,
    /// Reported at most this far apart in time.
    pub window: SignedDuration,
    /// Categories that describe the same kind of incident (a category is always compatible with
    /// itself), e.g. `["fire", "smoke"]`.
    pub groups: Vec<Vec<String>>,
}

/// The rules of the loop.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Deadlines by priority: `[p1, p2, p3, p4]`.
    pub deadlines: [Deadlines; 4],
    /// A volunteer who has not answered an offer within this is passed over.
    pub offer_timeout: SignedDuration,
    /// Duplicate detection.
    pub merge: MergePolicy,
}

impl Default for Policy {
    fn default() -> Self {
        let d = |accept_s: i64, resolve_s: i64| Deadlines {
            accept: SignedDuration::from_secs(accept_s),
            resolve: SignedDuration::from_secs(resolve_s),
        };
        Self {
            deadlines: [d(60, 3_600), d(300, 4 * 3_600), d(3_600, 3 * 86_400), d(4 * 3_600, 7 * 86_400)],
            offer_timeout: SignedDuration::from_secs(120),
            merge: MergePolicy { distance_m: 200.0, window: SignedDuration::from_secs(1_800), groups: vec![] },
        }
    }
}

impl Policy {
    /// The deadlines of a priority (clamped to 1–4).
    pub fn deadlines(&self, priority: u8) -> Deadlines {
        self.deadlines[usize::from(priority.clamp(1, 4) - 1)]
    }
}

/// What the loop needs to know of the region's departments.
#[derive(Debug, Clone, Default)]
pub struct Ladder {
    parents: HashMap<String, Option<String>>,
    catch_all: String,
}

impl Ladder {
    /// From `(department, parent)` pairs and the catch-all (the dispatchers' desk).
    pub fn new(departments: impl IntoIterator<Item = (String, Option<String>)>, catch_all: &str) -> Self {
        Self { parents: departments.into_iter().collect(), catch_all: catch_all.to_owned() }
    }

    /// True when the department exists.
    pub fn exists(&self, department: &str) -> bool {
        self.parents.contains_key(department)
    }

    fn parent(&self, department: &str) -> Option<&str> {
        self.parents.get(department)?.as_deref()
    }
}

/// A message the loop wants sent once the new record is stored.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Give the case to a department (`routed.dept.<department>.<category>`).
    Assign {
        /// The department.
        department: String,
        /// Why.
        reason: AssignmentReason,
    },
    /// Tell a department of a timeline event on a case it had (e.g. merged into another).
    Notify {
        /// The department.
        department: String,
        /// Index of the entry in the record's timeline.
        entry: usize,
    },
    /// Offer the case to a volunteer (`volunteer.<id>.offer`).
    Offer {
        /// The volunteer.
        volunteer_id: String,
        /// Their distance, metres.
        distance_m: f64,
    },
    /// Tell a volunteer their offer is closed (`volunteer.<id>.offer_closed`).
    CloseOffer {
        /// The volunteer.
        volunteer_id: String,
        /// `taken`, `expired` or `case_closed`.
        reason: &'static str,
    },
}

/// The result of a transition.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The record after it.
    pub record: CaseRecord,
    /// What to send.
    pub effects: Vec<Effect>,
}

/// Why an action was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refused {
    /// The actor may not do this to this case.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// Not possible in the case's state, or the request is wrong.
    #[error("{0}")]
    Invalid(String),
}

fn entry(
    now: Timestamp,
    event: TimelineEvent,
    actor: &Actor,
    department: Option<&str>,
    note: Option<String>,
) -> TimelineEntry {
    TimelineEntry { at: now, event, actor: actor.clone(), department: department.map(str::to_owned), note }
}

fn log(
    r: &mut CaseRecord,
    now: Timestamp,
    event: TimelineEvent,
    actor: &Actor,
    department: Option<&str>,
    note: Option<String>,
) {
    r.timeline.push(entry(now, event, actor, department, note));
    r.updated_at = now;
}

/// The record of a newly routed case: waiting for its departments to accept, its volunteers to
/// answer.
pub fn open(routed: &RoutedCase, now: Timestamp, policy: &Policy) -> CaseRecord {
    let d = &routed.decision;
    let departments: Vec<String> = d.departments.iter().map(|c| c.id.clone()).collect();
    let offers = d
        .volunteers
        .iter()
        .map(|v| OfferState {
            volunteer_id: v.id.clone(),
            distance_m: v.distance_m,
            status: OfferStatus::Offered,
            offered_at: now,
            expires_at: now + policy.offer_timeout,
        })
        .collect::<Vec<_>>();
    let note = format!(
        "to {}{}",
        departments.join(", "),
        if offers.is_empty() { String::new() } else { format!("; offered to {} volunteers", offers.len()) }
    );
    CaseRecord {
        case_id: routed.case_id.clone(),
        state: CaseState::Routed,
        case: routed.case.clone(),
        reports: vec![report_ref(routed)],
        merged_into: None,
        decision: d.clone(),
        priority: d.priority,
        community: d.community.community.clone(),
        departments,
        accepted_by: None,
        candidates: d.fallbacks.iter().map(|c| c.id.clone()).collect(),
        rejected_by: vec![],
        accept_by: Some(now + policy.deadlines(d.priority).accept),
        resolve_by: None,
        escalations: 0,
        escalation_open: false,
        offers,
        ratings: vec![],
        reopened: 0,
        timeline: vec![entry(now, TimelineEvent::Routed, &Actor::system(), None, Some(note))],
        created_at: now,
        updated_at: now,
    }
}

/// The [`ReportRef`] of a routed case.
pub fn report_ref(routed: &RoutedCase) -> ReportRef {
    ReportRef {
        report_id: routed.case_id.clone(),
        system: routed.case.system,
        source: routed.source.clone(),
        source_id: routed.case.source_id.clone(),
        category: routed.case.category.clone(),
        location: routed.case.location,
        reported_at: routed.case.reported_at,
    }
}

/// Flags that mark a report as a drill: such a report is never merged with a real one.
const DRILL_FLAGS: [&str; 2] = ["exercise", "test"];

/// True when `routed` reports the same incident as the open case `existing`: compatible
/// category, close in space and time. A broadcast (a report with an area, e.g. a flood warning)
/// is not an incident at a point and merges with nothing; a drill (`exercise`/`test` flag) merges
/// only with a drill.
pub fn is_duplicate(existing: &CaseRecord, routed: &RoutedCase, policy: &MergePolicy) -> bool {
    if !existing.state.is_open() || existing.merged_into.is_some() || existing.case_id == routed.case_id {
        return false;
    }
    let (a, b) = (&existing.case, &routed.case);
    let drill = |flags: &[String]| flags.iter().any(|f| DRILL_FLAGS.contains(&f.as_str()));
    if a.area.is_some() || b.area.is_some() || drill(&a.flags) != drill(&b.flags) {
        return false;
    }
    let compatible =
        a.category == b.category || policy.groups.iter().any(|g| g.contains(&a.category) && g.contains(&b.category));
    compatible
        && geodesy::haversine_m(a.location.lon, a.location.lat, b.location.lon, b.location.lat) <= policy.distance_m
        && (a.reported_at - b.reported_at).abs() <= policy.window
}

/// Folds the duplicate `report` (already opened as its own record) into `primary`: the primary
/// lists it, the report's record is cancelled as merged, and its departments are told.
pub fn merge(primary: &CaseRecord, report: &CaseRecord, now: Timestamp) -> (Outcome, Outcome) {
    let system = Actor::system();
    let mut p = primary.clone();
    p.reports.extend(report.reports.iter().cloned());
    let note = format!("{} ({} {})", report.case_id, report.case.system, report.case.source_id);
    log(&mut p, now, TimelineEvent::ReportMerged, &system, None, Some(note));

    let mut r = report.clone();
    r.state = CaseState::Cancelled;
    r.merged_into = Some(primary.case_id.clone());
    r.accept_by = None;
    r.resolve_by = None;
    log(&mut r, now, TimelineEvent::Merged, &system, None, Some(format!("same incident as {}", primary.case_id)));
    let last = r.timeline.len() - 1;
    let mut effects: Vec<Effect> =
        r.departments.iter().map(|d| Effect::Notify { department: d.clone(), entry: last }).collect();
    effects.extend(withdraw_offers(&mut r, "case_closed"));
    (Outcome { record: p, effects: vec![] }, Outcome { record: r, effects })
}

/// Undoes a merge: `report_id` leaves `primary`, and its own record (`report`) is routed again to
/// the departments its decision named.
pub fn split(
    primary: &CaseRecord,
    report: &CaseRecord,
    actor: &Actor,
    now: Timestamp,
    policy: &Policy,
) -> Result<(Outcome, Outcome), Refused> {
    if report.merged_into.as_deref() != Some(primary.case_id.as_str()) {
        return Err(Refused::Invalid(format!("{} is not merged into {}", report.case_id, primary.case_id)));
    }
    let mut p = primary.clone();
    p.reports.retain(|r| r.report_id != report.case_id);
    log(&mut p, now, TimelineEvent::Split, actor, None, Some(format!("{} is its own case again", report.case_id)));

    let mut r = report.clone();
    r.merged_into = None;
    r.state = CaseState::Routed;
    r.accepted_by = None;
    r.departments = r.decision.departments.iter().map(|c| c.id.clone()).collect();
    r.accept_by = Some(now + policy.deadlines(r.priority).accept);
    log(&mut r, now, TimelineEvent::Split, actor, None, Some(format!("split out of {}", primary.case_id)));
    let effects = r
        .departments
        .iter()
        .map(|d| Effect::Assign { department: d.clone(), reason: AssignmentReason::Split })
        .collect();
    Ok((Outcome { record: p, effects: vec![] }, Outcome { record: r, effects }))
}

/// Applies an action. `Split` involves two records and is done by [`split`].
pub fn act(
    record: &CaseRecord,
    actor: &Actor,
    action: &Action,
    now: Timestamp,
    policy: &Policy,
    ladder: &Ladder,
) -> Result<Outcome, Refused> {
    if let Some(primary) = &record.merged_into {
        return Err(Refused::Invalid(format!("case {} was merged into {primary}; act on that case", record.case_id)));
    }
    authorize(record, actor, action)?;
    let mut r = record.clone();
    let mut effects = Vec::new();
    let dept = (actor.kind == ActorKind::Department).then_some(actor.id.as_str());
    let state = r.state;
    let invalid = |what: &str| Err(Refused::Invalid(format!("cannot {what} a case that is {}", state.as_str())));
    match action {
        Action::Accept {} => {
            if state != CaseState::Routed {
                return invalid("accept");
            }
            r.state = CaseState::Accepted;
            r.accepted_by = dept.map(str::to_owned);
            r.accept_by = None;
            r.resolve_by = Some(now + policy.deadlines(r.priority).resolve);
            log(&mut r, now, TimelineEvent::Accepted, actor, dept, None);
        }
        Action::Reject { reason } => {
            if state != CaseState::Routed {
                return invalid("reject");
            }
            let reason = required(reason, "reject needs a reason")?;
            let d = dept.unwrap_or_default().to_owned();
            r.departments.retain(|x| *x != d);
            r.rejected_by.push(d.clone());
            log(&mut r, now, TimelineEvent::Rejected, actor, Some(&d), Some(reason.to_owned()));
            if r.departments.is_empty() {
                reroute(&mut r, now, policy, &mut effects);
            }
        }
        Action::Progress { note } => {
            if !matches!(state, CaseState::Accepted | CaseState::InProgress) {
                return invalid("report progress on");
            }
            r.state = CaseState::InProgress;
            log(
                &mut r,
                now,
                TimelineEvent::Progress,
                actor,
                dept,
                Some(required(note, "progress needs a note")?.to_owned()),
            );
        }
        Action::Resolve { note } => {
            let from_source =
                actor.kind == ActorKind::Source && matches!(state, CaseState::Routed | CaseState::Rejected);
            if !(from_source || matches!(state, CaseState::Accepted | CaseState::InProgress)) {
                return invalid("resolve");
            }
            r.accept_by = None;
            r.state = CaseState::Resolved;
            r.resolve_by = None;
            log(
                &mut r,
                now,
                TimelineEvent::Resolved,
                actor,
                dept,
                Some(required(note, "resolve needs a note")?.to_owned()),
            );
            if from_source {
                effects.extend(withdraw_offers(&mut r, "case_closed"));
            }
        }
        Action::Close { note } => {
            let allowed = if dept.is_some() { state == CaseState::Resolved } else { state.is_open() };
            if !allowed {
                return invalid("close");
            }
            r.state = CaseState::Closed;
            r.accept_by = None;
            r.resolve_by = None;
            log(&mut r, now, TimelineEvent::Closed, actor, dept, note.clone());
            effects.extend(withdraw_offers(&mut r, "case_closed"));
        }
        Action::Cancel { reason } => {
            if !state.is_open() {
                return invalid("cancel");
            }
            r.state = CaseState::Cancelled;
            r.accept_by = None;
            r.resolve_by = None;
            log(
                &mut r,
                now,
                TimelineEvent::Cancelled,
                actor,
                None,
                Some(required(reason, "cancel needs a reason")?.to_owned()),
            );
            effects.extend(withdraw_offers(&mut r, "case_closed"));
        }
        Action::Update { note } => {
            if !state.is_open() {
                return invalid("update");
            }
            log(
                &mut r,
                now,
                TimelineEvent::SourceUpdated,
                actor,
                None,
                Some(required(note, "update needs a note")?.to_owned()),
            );
        }
        Action::Reassign { department, reason } => {
            if !state.is_open() {
                return invalid("reassign");
            }
            if !ladder.exists(department) {
                return Err(Refused::Invalid(format!("no department {department:?}")));
            }
            r.state = CaseState::Routed;
            r.departments = vec![department.clone()];
            r.accepted_by = None;
            r.accept_by = Some(now + policy.deadlines(r.priority).accept);
            r.resolve_by = None;
            r.escalation_open = false;
            let note = Some(required(reason, "reassign needs a reason")?.to_owned());
            log(&mut r, now, TimelineEvent::Reassigned, actor, Some(department), note);
            effects.push(Effect::Assign { department: department.clone(), reason: AssignmentReason::Reassigned });
        }
        Action::AcknowledgeEscalation {} => {
            if !r.escalation_open {
                return Err(Refused::Invalid("no open escalation to acknowledge".into()));
            }
            r.escalation_open = false;
            log(&mut r, now, TimelineEvent::EscalationAcknowledged, actor, None, None);
        }
        Action::Split { .. } => return Err(Refused::Invalid("split is done on the merged case".into())),
        Action::Rate { score, solved, comment } => {
            if !matches!(state, CaseState::Resolved | CaseState::Closed) {
                return invalid("rate");
            }
            if !(1..=5).contains(score) {
                return Err(Refused::Invalid(format!("score {score} is not 1-5")));
            }
            let department = r.accepted_by.clone();
            r.ratings.push(Rating { score: *score, solved: *solved, comment: comment.clone(), department, at: now });
            let note = format!("{score}/5, {}", if *solved { "solved" } else { "not solved" });
            log(&mut r, now, TimelineEvent::Rated, actor, None, Some(note));
            if !solved {
                reopen(&mut r, now, policy, &mut effects);
            }
        }
    }
    Ok(Outcome { record: r, effects })
}

/// True when `action` by a source is one it already made (same event, same note): a source
/// message delivered twice is recorded once.
pub fn is_repeat(record: &CaseRecord, actor: &Actor, action: &Action) -> bool {
    if actor.kind != ActorKind::Source {
        return false;
    }
    let (event, note) = match action {
        Action::Update { note } => (TimelineEvent::SourceUpdated, note),
        Action::Cancel { reason } => (TimelineEvent::Cancelled, reason),
        Action::Resolve { note } => (TimelineEvent::Resolved, note),
        _ => return false,
    };
    record.timeline.iter().any(|e| e.actor == *actor && e.event == event && e.note.as_deref() == Some(note.trim()))
}

fn required<'a>(text: &'a str, message: &str) -> Result<&'a str, Refused> {
    let text = text.trim();
    if text.is_empty() { Err(Refused::Invalid(message.to_owned())) } else { Ok(text) }
}

fn authorize(r: &CaseRecord, actor: &Actor, action: &Action) -> Result<(), Refused> {
    let forbidden = |why: String| Err(Refused::Forbidden(why));
    match actor.kind {
        ActorKind::Department => {
            let responsible = r.departments.contains(&actor.id);
            let accepted = r.accepted_by.as_deref() == Some(actor.id.as_str());
            let ok = match action {
                Action::Accept {} | Action::Reject { .. } => responsible,
                Action::Progress { .. } | Action::Resolve { .. } | Action::Close { .. } => accepted,
                _ => false,
            };
            if !ok {
                let own = responsible || accepted;
                return forbidden(if own {
                    format!("a department may not {} a case", action.name())
                } else {
                    format!("case {} is not {}'s", r.case_id, actor.id)
                });
            }
        }
        ActorKind::Source => {
            let own = r.reports.first().is_some_and(|first| first.source == actor.id);
            if !own {
                return forbidden(format!("case {} was not reported by {}", r.case_id, actor.id));
            }
            if !matches!(action, Action::Update { .. } | Action::Cancel { .. } | Action::Resolve { .. }) {
                return forbidden(format!("a source may not {} a case", action.name()));
            }
        }
        ActorKind::Dispatcher => {
            if matches!(action, Action::Rate { .. } | Action::Accept {} | Action::Reject { .. } | Action::Update { .. })
            {
                return forbidden(format!("a dispatcher may not {} a case", action.name()));
            }
        }
        ActorKind::Resident => {
            if !matches!(action, Action::Rate { .. }) {
                return forbidden(format!("a resident may not {} a case", action.name()));
            }
        }
        ActorKind::Volunteer | ActorKind::System => {
            return forbidden(format!("{:?} actors answer offers, not case actions", actor.kind));
        }
    }
    Ok(())
}

/// After the responsible departments all rejected: the next candidate, else the dispatchers.
fn reroute(r: &mut CaseRecord, now: Timestamp, policy: &Policy, effects: &mut Vec<Effect>) {
    let next = r.candidates.iter().position(|c| !r.rejected_by.contains(c));
    match next {
        Some(n) => {
            let department = r.candidates.remove(n);
            r.departments = vec![department.clone()];
            r.accept_by = Some(now + policy.deadlines(r.priority).accept);
            log(r, now, TimelineEvent::Rerouted, &Actor::system(), Some(&department), None);
            effects.push(Effect::Assign { department, reason: AssignmentReason::Rerouted });
        }
        None => {
            r.state = CaseState::Rejected;
            r.accept_by = None;
            r.escalation_open = true;
            let note = Some("every candidate department rejected it: dispatchers must act".to_owned());
            log(r, now, TimelineEvent::Escalated, &Actor::system(), None, note);
            r.escalations += 1;
        }
    }
}

fn reopen(r: &mut CaseRecord, now: Timestamp, policy: &Policy, effects: &mut Vec<Effect>) {
    r.reopened += 1;
    let deadlines = policy.deadlines(r.priority);
    match r.accepted_by.clone() {
        Some(department) => {
            r.state = CaseState::Accepted;
            r.resolve_by = Some(now + deadlines.resolve);
            log(r, now, TimelineEvent::Reopened, &Actor::system(), Some(&department), None);
            effects.push(Effect::Assign { department, reason: AssignmentReason::Reopened });
        }
        None => {
            r.state = CaseState::Routed;
            r.accept_by = Some(now + deadlines.accept);
            log(r, now, TimelineEvent::Reopened, &Actor::system(), None, None);
            for department in r.departments.clone() {
                effects.push(Effect::Assign { department, reason: AssignmentReason::Reopened });
            }
        }
    }
}

fn withdraw_offers(r: &mut CaseRecord, reason: &'static str) -> Vec<Effect> {
    r.offers
        .iter_mut()
        .filter(|o| o.status == OfferStatus::Offered)
        .map(|o| {
            o.status = OfferStatus::Withdrawn;
            Effect::CloseOffer { volunteer_id: o.volunteer_id.clone(), reason }
        })
        .collect()
}

/// A volunteer's answer to an offer. `next` finds the next nearest volunteers, passing over
/// those already offered, for the cascade after a decline.
pub fn answer(
    record: &CaseRecord,
    volunteer_id: &str,
    accept: bool,
    now: Timestamp,
    policy: &Policy,
    next: impl FnOnce(&[&str]) -> Vec<VolunteerChoice>,
) -> Result<Outcome, Refused> {
    let Some(n) = record.offers.iter().position(|o| o.volunteer_id == volunteer_id) else {
        return Err(Refused::Forbidden(format!("case {} was not offered to {volunteer_id}", record.case_id)));
    };
    match record.offers[n].status {
        OfferStatus::Offered => {}
        OfferStatus::Withdrawn if record.offers.iter().any(|o| o.status == OfferStatus::Accepted) => {
            return Err(Refused::Invalid("another volunteer has already taken this case".into()));
        }
        status => return Err(Refused::Invalid(format!("the offer is no longer open ({status:?})"))),
    }
    if !record.state.is_open() {
        return Err(Refused::Invalid(format!("the case is {}", record.state.as_str())));
    }
    let mut r = record.clone();
    let volunteer = Actor { kind: ActorKind::Volunteer, id: volunteer_id.to_owned() };
    let mut effects = Vec::new();
    if accept {
        r.offers[n].status = OfferStatus::Accepted;
        let note = Some(format!("{:.0} m away", r.offers[n].distance_m));
        log(&mut r, now, TimelineEvent::VolunteerAccepted, &volunteer, None, note);
        effects.extend(withdraw_offers(&mut r, "taken"));
    } else {
        r.offers[n].status = OfferStatus::Declined;
        log(&mut r, now, TimelineEvent::VolunteerDeclined, &volunteer, None, None);
        cascade(&mut r, now, policy, next, &mut effects);
    }
    Ok(Outcome { record: r, effects })
}

/// Offers the case to the next nearest volunteer(s) while nobody has accepted.
fn cascade(
    r: &mut CaseRecord,
    now: Timestamp,
    policy: &Policy,
    next: impl FnOnce(&[&str]) -> Vec<VolunteerChoice>,
    effects: &mut Vec<Effect>,
) {
    let open = r.offers.iter().filter(|o| o.status == OfferStatus::Offered).count();
    let taken = r.offers.iter().any(|o| o.status == OfferStatus::Accepted);
    if taken
        || !r.state.is_open()
        || open >= r.decision.volunteer_search.k
        || r.decision.volunteer_search.skill.is_none()
    {
        return;
    }
    let already: Vec<&str> = r.offers.iter().map(|o| o.volunteer_id.as_str()).collect();
    let chosen = next(&already);
    for v in chosen.into_iter().take(r.decision.volunteer_search.k - open) {
        r.offers.push(OfferState {
            volunteer_id: v.id.clone(),
            distance_m: v.distance_m,
            status: OfferStatus::Offered,
            offered_at: now,
            expires_at: now + policy.offer_timeout,
        });
        let note = Some(format!("{:.0} m away", v.distance_m));
        log(r, now, TimelineEvent::VolunteerOffered, &Actor::system(), None, note);
        effects.push(Effect::Offer { volunteer_id: v.id, distance_m: v.distance_m });
    }
}

/// The earliest time something is due on the case: a deadline or an offer's expiry.
pub fn next_due(r: &CaseRecord) -> Option<Timestamp> {
    let offers = r.offers.iter().filter(|o| o.status == OfferStatus::Offered).map(|o| o.expires_at);
    [r.accept_by, r.resolve_by].into_iter().flatten().chain(offers).min()
}

/// What is due at `now`: expired offers cascade, a missed accept or resolve deadline escalates.
/// `None` when nothing was due (so a late or repeated tick changes nothing).
pub fn tick(
    record: &CaseRecord,
    now: Timestamp,
    policy: &Policy,
    ladder: &Ladder,
    next: impl FnOnce(&[&str]) -> Vec<VolunteerChoice>,
) -> Option<Outcome> {
    if next_due(record).is_none_or(|due| due > now) || record.merged_into.is_some() {
        return None;
    }
    let mut r = record.clone();
    let mut effects = Vec::new();
    let system = Actor::system();

    let mut expired = false;
    for o in r.offers.iter_mut().filter(|o| o.status == OfferStatus::Offered && o.expires_at <= now) {
        o.status = OfferStatus::Expired;
        effects.push(Effect::CloseOffer { volunteer_id: o.volunteer_id.clone(), reason: "expired" });
        expired = true;
    }
    if expired {
        log(&mut r, now, TimelineEvent::VolunteerExpired, &system, None, None);
        cascade(&mut r, now, policy, next, &mut effects);
    }

    let deadlines = policy.deadlines(r.priority);
    if r.state == CaseState::Routed && r.accept_by.is_some_and(|t| t <= now) {
        let from: Vec<String> = r.departments.clone();
        escalate(&mut r, now, &from, "not accepted in time", deadlines.accept, ladder, &mut effects, |r, t| {
            r.accept_by = t
        });
    }
    if matches!(r.state, CaseState::Accepted | CaseState::InProgress) && r.resolve_by.is_some_and(|t| t <= now) {
        let from: Vec<String> = r.accepted_by.iter().cloned().collect();
        escalate(&mut r, now, &from, "not resolved in time", deadlines.resolve, ladder, &mut effects, |r, t| {
            r.resolve_by = t
        });
    }
    Some(Outcome { record: r, effects })
}

/// One step up the ladder from `from`: the parent departments not yet involved, else the
/// catch-all; at the top, the dispatchers are alerted and the deadline stops.
#[allow(clippy::too_many_arguments)]
fn escalate(
    r: &mut CaseRecord,
    now: Timestamp,
    from: &[String],
    why: &str,
    deadline: SignedDuration,
    ladder: &Ladder,
    effects: &mut Vec<Effect>,
    set_deadline: impl Fn(&mut CaseRecord, Option<Timestamp>),
) {
    let mut up: Vec<String> = from
        .iter()
        .filter_map(|d| ladder.parent(d))
        .filter(|p| !r.departments.iter().any(|d| d == p))
        .map(str::to_owned)
        .collect();
    up.dedup();
    if up.is_empty() && !r.departments.contains(&ladder.catch_all) {
        up.push(ladder.catch_all.clone());
    }
    r.escalations += 1;
    r.escalation_open = true;
    if up.is_empty() {
        set_deadline(r, None);
        let note = Some(format!("{why}; top of the ladder reached: dispatchers must act"));
        log(r, now, TimelineEvent::Escalated, &Actor::system(), None, note);
        return;
    }
    set_deadline(r, Some(now + deadline));
    for department in up {
        log(
            r,
            now,
            TimelineEvent::Escalated,
            &Actor::system(),
            Some(&department),
            Some(format!("{why}; escalated to {department}")),
        );
        r.departments.push(department.clone());
        effects.push(Effect::Assign { department, reason: AssignmentReason::Escalated });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use linkbus_wire::{
        CaseReport, CommunityMatch, CommunityOutcome, Decision, DepartmentChoice, DepartmentRule, JurisdictionLevel,
        Location, SourceSystem, VolunteerSearch,
    };

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).expect("valid time")
    }

    fn choice(id: &str) -> DepartmentChoice {
        DepartmentChoice {
            id: id.into(),
            name: id.into(),
            rule: DepartmentRule::Jurisdiction { level: JurisdictionLevel::Community, area: "c".into() },
        }
    }

    fn routed(id: &str, volunteers: &[(&str, f64)]) -> RoutedCase {
        let case = CaseReport {
            system: SourceSystem::Emergency,
            category: "fire".into(),
            priority: 2,
            location: Location { lon: -122.4194, lat: 37.7599 },
            address: None,
            reporter: None,
            description: None,
            source_id: id.into(),
            reported_at: t(0),
            flags: vec![],
            datum: linkbus_wire::Datum::Wgs84,
            received_location: None,
            area: None,
        };
        let decision = Decision {
            geo_version: "test@1".into(),
            priority: 2,
            community: CommunityMatch {
                outcome: CommunityOutcome::Inside,
                community: None,
                distance_m: None,
                candidates: vec![],
            },
            broadcast: vec![],
            departments: vec![choice("station")],
            fallbacks: vec![choice("dispatch"), choice("desk")],
            volunteers: volunteers
                .iter()
                .map(|(v, d)| linkbus_wire::VolunteerChoice { id: v.to_string(), distance_m: *d })
                .collect(),
            volunteer_search: VolunteerSearch {
                skill: Some("first_aid".into()),
                k: 2,
                radius_m: 3000.0,
                examined: 0,
                skipped_unavailable: 0,
                skipped_skill: 0,
                skipped_capped: 0,
                reached_radius: false,
            },
            facility: None,
            explanation: vec![],
        };
        RoutedCase { case_id: id.into(), source: "/test".into(), case, decision, routed_at: t(0) }
    }

    fn ladder() -> Ladder {
        Ladder::new(
            [("station", Some("battalion")), ("battalion", Some("dispatch")), ("dispatch", None), ("desk", None)]
                .map(|(d, p)| (d.to_string(), p.map(str::to_string))),
            "desk",
        )
    }

    fn dept(id: &str) -> Actor {
        Actor { kind: ActorKind::Department, id: id.into() }
    }

    fn policy() -> Policy {
        Policy::default()
    }

    #[test]
    fn accept_progress_resolve_close() {
        let p = policy();
        let r = open(&routed("c1", &[]), t(0), &p);
        assert_eq!((r.state, r.accept_by), (CaseState::Routed, Some(t(300))));
        let r = act(&r, &dept("station"), &Action::Accept {}, t(10), &p, &ladder()).expect("accept").record;
        assert_eq!(
            (r.state, r.accepted_by.as_deref(), r.resolve_by),
            (CaseState::Accepted, Some("station"), Some(t(10 + 4 * 3600)))
        );
        let progress = Action::Progress { note: "crew on site".into() };
        let r = act(&r, &dept("station"), &progress, t(20), &p, &ladder()).expect("progress").record;
        let resolve = Action::Resolve { note: "fire out".into() };
        let r = act(&r, &dept("station"), &resolve, t(30), &p, &ladder()).expect("resolve").record;
        let r = act(&r, &dept("station"), &Action::Close { note: None }, t(40), &p, &ladder()).expect("close").record;
        assert_eq!(r.state, CaseState::Closed);
        let events: Vec<&str> = r.timeline.iter().map(|e| e.event.as_str()).collect();
        assert_eq!(events, ["routed", "accepted", "progress", "resolved", "closed"]);
        // Nothing more is due on a closed case.
        assert_eq!(next_due(&r), None);
    }

    #[test]
    fn actions_refuse_unknown_fields_even_without_fields_of_their_own() {
        let ok: linkbus_wire::ActionRequest =
            serde_json::from_str(r#"{"case_id": "c1", "action": "accept"}"#).expect("accept");
        assert_eq!(ok.action, Action::Accept {});
        for bad in [
            r#"{"case_id": "c1", "action": "accept", "urgent": true}"#,
            r#"{"case_id": "c1", "action": "acknowledge_escalation", "x": 1}"#,
            r#"{"case_id": "c1", "action": "reject"}"#,
            r#"{"case_id": "c1", "action": "explode"}"#,
            r#"{"action": "accept"}"#,
        ] {
            assert!(serde_json::from_str::<linkbus_wire::ActionRequest>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_the_responsible_department_acts_and_each_role_only_as_allowed() {
        let p = policy();
        let r = open(&routed("c1", &[]), t(0), &p);
        let err = act(&r, &dept("other"), &Action::Accept {}, t(1), &p, &ladder()).expect_err("not theirs");
        assert!(matches!(err, Refused::Forbidden(_)), "{err}");
        let dispatcher = Actor { kind: ActorKind::Dispatcher, id: "li".into() };
        assert!(matches!(act(&r, &dispatcher, &Action::Accept {}, t(1), &p, &ladder()), Err(Refused::Forbidden(_))));
        let resident = Actor { kind: ActorKind::Resident, id: "reporter".into() };
        let cancel = Action::Cancel { reason: "x".into() };
        assert!(matches!(act(&r, &resident, &cancel, t(1), &p, &ladder()), Err(Refused::Forbidden(_))));
        let resolve = Action::Resolve { note: "x".into() };
        assert!(matches!(act(&r, &dept("station"), &resolve, t(1), &p, &ladder()), Err(Refused::Forbidden(_))));
        let reject = Action::Reject { reason: " ".into() };
        assert!(matches!(act(&r, &dept("station"), &reject, t(1), &p, &ladder()), Err(Refused::Invalid(_))));
    }

    #[test]
    fn a_source_updates_cancels_and_resolves_only_its_own_cases_once() {
        let p = policy();
        let r = open(&routed("c1", &[("v1", 100.0)]), t(0), &p);
        let source = Actor { kind: ActorKind::Source, id: "/test".into() };
        let update = Action::Update { note: "2nd alarm".into() };
        let out = act(&r, &source, &update, t(1), &p, &ladder()).expect("its own case");
        assert_eq!(out.record.state, CaseState::Routed);
        let last = out.record.timeline.last().expect("an entry");
        assert_eq!((last.event.as_str(), last.note.as_deref()), ("source_updated", Some("2nd alarm")));
        assert!(is_repeat(&out.record, &source, &update), "the same update again is a repeat");
        assert!(!is_repeat(&out.record, &source, &Action::Update { note: "3rd alarm".into() }));
        let other = Actor { kind: ActorKind::Source, id: "/other".into() };
        assert!(matches!(act(&r, &other, &update, t(1), &p, &ladder()), Err(Refused::Forbidden(_))));
        let accept = Action::Accept {};
        assert!(matches!(act(&r, &source, &accept, t(1), &p, &ladder()), Err(Refused::Forbidden(_))));
        let dispatcher = Actor { kind: ActorKind::Dispatcher, id: "li".into() };
        assert!(matches!(act(&r, &dispatcher, &update, t(1), &p, &ladder()), Err(Refused::Forbidden(_))));
        // Done at the source (an order delivered) straight from routed; offers withdrawn.
        let resolved =
            act(&r, &source, &Action::Resolve { note: "delivered".into() }, t(2), &p, &ladder()).expect("resolve");
        assert_eq!((resolved.record.state, resolved.record.accept_by), (CaseState::Resolved, None));
        assert_eq!(resolved.effects, [Effect::CloseOffer { volunteer_id: "v1".into(), reason: "case_closed" }]);
        let cancelled =
            act(&r, &source, &Action::Cancel { reason: "hoax".into() }, t(2), &p, &ladder()).expect("cancel");
        assert_eq!(cancelled.record.state, CaseState::Cancelled);
        assert_eq!(cancelled.effects, [Effect::CloseOffer { volunteer_id: "v1".into(), reason: "case_closed" }]);
        assert!(matches!(act(&cancelled.record, &source, &update, t(3), &p, &ladder()), Err(Refused::Invalid(_))));
    }

    #[test]
    fn rejection_reroutes_to_the_next_candidate_then_the_dispatchers() {
        let p = policy();
        let r = open(&routed("c1", &[]), t(0), &p);
        let reject = |r: &CaseRecord, d: &str| {
            act(r, &dept(d), &Action::Reject { reason: "not ours".into() }, t(5), &p, &ladder()).expect("reject")
        };
        let out = reject(&r, "station");
        assert_eq!(out.record.departments, ["dispatch"]);
        assert_eq!(out.effects, [Effect::Assign { department: "dispatch".into(), reason: AssignmentReason::Rerouted }]);
        let out = reject(&out.record, "dispatch");
        assert_eq!(out.record.departments, ["desk"]);
        let out = reject(&out.record, "desk");
        assert_eq!((out.record.state, out.record.escalation_open), (CaseState::Rejected, true));
        assert!(out.effects.is_empty());
    }

    #[test]
    fn missed_deadlines_climb_the_ladder_once_each() {
        let (p, l) = (policy(), ladder());
        let r = open(&routed("c1", &[]), t(0), &p);
        assert!(tick(&r, t(299), &p, &l, |_| vec![]).is_none(), "nothing is due before the deadline");
        let out = tick(&r, t(300), &p, &l, |_| vec![]).expect("due");
        assert_eq!(
            out.effects,
            [Effect::Assign { department: "battalion".into(), reason: AssignmentReason::Escalated }]
        );
        assert_eq!((out.record.escalations, out.record.accept_by), (1, Some(t(600))));
        assert!(tick(&out.record, t(301), &p, &l, |_| vec![]).is_none(), "a repeated tick changes nothing");
        let out = tick(&out.record, t(600), &p, &l, |_| vec![]).expect("due again");
        assert_eq!(out.record.departments, ["station", "battalion", "dispatch"]);
        let out = tick(&out.record, t(900), &p, &l, |_| vec![]).expect("top");
        assert_eq!(out.record.departments.last().map(String::as_str), Some("desk"));
        let out = tick(&out.record, t(1200), &p, &l, |_| vec![]).expect("top reached");
        assert_eq!((out.record.accept_by, out.record.escalation_open), (None, true));
        assert!(out.effects.is_empty());
        // Once accepted, the resolve deadline escalates from the accepting department.
        let accepted =
            act(&out.record, &dept("battalion"), &Action::Accept {}, t(1300), &p, &l).expect("accept").record;
        let due = accepted.resolve_by.expect("resolve deadline");
        let out = tick(&accepted, due, &p, &l, |_| vec![]).expect("resolve overdue");
        assert_eq!(out.record.escalations, 5);
        assert!(out.record.timeline.last().and_then(|e| e.note.as_deref()).is_some_and(|n| n.contains("not resolved")));
    }

    #[test]
    fn volunteers_cascade_on_decline_and_expiry_and_one_accept_closes_the_rest() {
        let p = policy();
        let r = open(&routed("c1", &[("v1", 100.0), ("v2", 200.0)]), t(0), &p);
        let out = answer(&r, "v1", false, t(5), &p, |already| {
            assert_eq!(already, ["v1", "v2"]);
            vec![linkbus_wire::VolunteerChoice { id: "v3".into(), distance_m: 300.0 }]
        })
        .expect("decline");
        assert_eq!(out.effects, [Effect::Offer { volunteer_id: "v3".into(), distance_m: 300.0 }]);
        // v2 never answers: at its expiry the next one is asked.
        let out = tick(&out.record, t(120), &p, &ladder(), |_| {
            vec![linkbus_wire::VolunteerChoice { id: "v4".into(), distance_m: 400.0 }]
        })
        .expect("expiry");
        assert!(out.effects.contains(&Effect::CloseOffer { volunteer_id: "v2".into(), reason: "expired" }));
        assert!(out.effects.contains(&Effect::Offer { volunteer_id: "v4".into(), distance_m: 400.0 }));
        let out = answer(&out.record, "v4", true, t(130), &p, |_| vec![]).expect("accept");
        assert_eq!(out.effects, [Effect::CloseOffer { volunteer_id: "v3".into(), reason: "taken" }]);
        let err = answer(&out.record, "v3", true, t(131), &p, |_| vec![]).expect_err("taken");
        assert!(err.to_string().contains("already taken"), "{err}");
        assert!(matches!(answer(&out.record, "v9", true, t(131), &p, |_| vec![]), Err(Refused::Forbidden(_))));
    }

    #[test]
    fn duplicates_merge_and_split_back() {
        let p = policy();
        let first = open(&routed("a", &[]), t(0), &p);
        let mut second_routed = routed("b", &[("v1", 10.0)]);
        second_routed.case.system = SourceSystem::PublicService;
        second_routed.case.location.lon += 0.001; // about 90 m east
        assert!(is_duplicate(&first, &second_routed, &p.merge));
        let mut far = second_routed.clone();
        far.case.location.lon += 0.01;
        assert!(!is_duplicate(&first, &far, &p.merge));
        let mut drill = second_routed.clone();
        drill.case.flags.push("exercise".into());
        assert!(!is_duplicate(&first, &drill, &p.merge), "a drill never merges with a real report");
        let mut broadcast = second_routed.clone();
        let ring = vec![first.case.location; 4];
        broadcast.case.area = Some(linkbus_wire::Area { polygons: vec![ring], circles: vec![] });
        assert!(!is_duplicate(&first, &broadcast, &p.merge), "a broadcast merges with nothing");
        let second = open(&second_routed, t(1), &p);
        let (primary, merged) = merge(&first, &second, t(2));
        assert_eq!(primary.record.reports.len(), 2);
        assert_eq!((merged.record.state, merged.record.merged_into.as_deref()), (CaseState::Cancelled, Some("a")));
        assert!(merged.effects.contains(&Effect::Notify { department: "station".into(), entry: 1 }));
        assert!(merged.effects.contains(&Effect::CloseOffer { volunteer_id: "v1".into(), reason: "case_closed" }));
        let err = act(&merged.record, &dept("station"), &Action::Accept {}, t(3), &p, &ladder()).expect_err("merged");
        assert!(err.to_string().contains("merged into a"), "{err}");

        let dispatcher = Actor { kind: ActorKind::Dispatcher, id: "li".into() };
        let (p2, revived) = split(&primary.record, &merged.record, &dispatcher, t(4), &p).expect("split");
        assert_eq!(p2.record.reports.len(), 1);
        assert_eq!((revived.record.state, revived.record.merged_into.clone()), (CaseState::Routed, None));
        assert_eq!(revived.effects, [Effect::Assign { department: "station".into(), reason: AssignmentReason::Split }]);
    }

    #[test]
    fn a_not_solved_rating_reopens_the_case() {
        let p = policy();
        let r = open(&routed("c1", &[]), t(0), &p);
        let r = act(&r, &dept("station"), &Action::Accept {}, t(1), &p, &ladder()).expect("accept").record;
        let r = act(&r, &dept("station"), &Action::Resolve { note: "done".into() }, t(2), &p, &ladder())
            .expect("resolve")
            .record;
        let resident = Actor { kind: ActorKind::Resident, id: "reporter".into() };
        let rate = Action::Rate { score: 2, solved: false, comment: Some("still smoking".into()) };
        let out = act(&r, &resident, &rate, t(3), &p, &ladder()).expect("rate");
        assert_eq!((out.record.state, out.record.reopened), (CaseState::Accepted, 1));
        assert_eq!(out.record.ratings[0].department.as_deref(), Some("station"));
        assert_eq!(out.effects, [Effect::Assign { department: "station".into(), reason: AssignmentReason::Reopened }]);
        let bad = Action::Rate { score: 9, solved: true, comment: None };
        let resolved =
            act(&out.record, &dept("station"), &Action::Resolve { note: "really".into() }, t(4), &p, &ladder());
        let resolved = resolved.expect("resolve again").record;
        assert!(matches!(act(&resolved, &resident, &bad, t(5), &p, &ladder()), Err(Refused::Invalid(_))));
    }
}
