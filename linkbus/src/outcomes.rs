//! `linkbus replay --outcomes real`: acts out what really became of each SF 311 request once
//! linkbus has routed it, on `replay.action` ([`linkbus_wire::ReplayRequest`]), at the record's
//! times divided by `--speed`, each timeline entry noted as replayed from the SF record.
//!
//! The map from the record to the lifecycle (also in docs/operations.md):
//!
//! | the record | replayed as | at |
//! |---|---|---|
//! | every request | `accept` by the department linkbus routed it to — SF 311 records no acceptance, so it is taken as accepted when opened, and the entry says so | `Opened` (0) |
//! | `Status` `Closed`, notes other than those below | `resolve` (note: the record's `Status.Notes`) and `close` by that department | `Closed` − `Opened` |
//! | `Status` `Closed`, notes `Case is a Duplicate`, `Case is Invalid`, `NO MERIT`, `Administrative Closure`, `Not Accepted`, `Case Transferred` | `cancel` by the source `/sf311` (the reason quotes the notes) | `Closed` − `Opened` |
//! | `Status` `Open` | nothing more: the case stays `accepted` | — |
//! | `Closed` before `Opened` (55 rows of the sample) | as above, at 0, and the note says so | 0 |

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use linkbus_adapters::sf311::{self, RealOutcome};
use linkbus_wire::{Action, Actor, ActorKind, CaseState, ReplayRequest};
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client;

/// The actor id of SF 311 itself, withdrawing a request it closed without a resolution: the
/// CloudEvents source of its cases.
const SF311: &str = sf311::SOURCE;
/// How long an action may wait for the case book to open its case or for its time to come.
const PATIENCE: Duration = Duration::from_secs(30);
/// Requests on `replay.action` in flight at once: the case book answers them one at a time per
/// replica, so thousands due at the same instant (every acceptance at its case's opening) would
/// wait past the request timeout. Their times do not suffer from waiting: each carries its own.
const IN_FLIGHT: usize = 32;

/// One action to replay, `after_secs` (compressed) after the case was opened.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Compressed seconds after the case's opening.
    pub after_secs: f64,
    /// Who.
    pub actor: Actor,
    /// What.
    pub action: Action,
    /// Where it comes from, for the timeline note.
    pub origin: String,
}

/// The actions that replay `outcome` of SF 311 request `case_number` for a case linkbus routed to
/// `department`, at the record's times divided by `speed` (see the module's table).
pub fn steps(outcome: &RealOutcome, case_number: &str, department: &str, speed: f64) -> Vec<Step> {
    let origin = format!("replayed from SF 311 record {case_number}, time ÷ {speed}");
    let dept = Actor { kind: ActorKind::Department, id: department.to_owned() };
    let accept = Step {
        after_secs: 0.0,
        actor: dept.clone(),
        action: Action::Accept {},
        origin: format!("SF 311 records no acceptance: taken as accepted when opened; {origin}"),
    };
    let RealOutcome::Closed { after_secs, before_opened, resolved, notes } = outcome else { return vec![accept] };
    let after_secs = after_secs / speed;
    let notes = match (notes.as_str(), before_opened) {
        ("", false) => "closed (no status notes)".to_owned(),
        (notes, false) => notes.to_owned(),
        (notes, true) => format!("the record closes before it opens, taken as closed at opening; {notes}"),
    };
    let step = |actor: &Actor, action| Step { after_secs, actor: actor.clone(), action, origin: origin.clone() };
    if *resolved {
        vec![
            accept,
            step(&dept, Action::Resolve { note: format!("SF 311: {notes}") }),
            step(&dept, Action::Close { note: None }),
        ]
    } else {
        let source = Actor { kind: ActorKind::Source, id: SF311.to_owned() };
        vec![accept, step(&source, Action::Cancel { reason: format!("SF 311 closed it unresolved: {notes}") })]
    }
}

/// What the replayed outcomes came to.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OutcomeSummary {
    /// Real seconds per replayed second.
    pub speed: f64,
    /// Cases accepted (at their opening).
    pub accepted: usize,
    /// Cases resolved and closed as the record says.
    pub resolved: usize,
    /// Cases SF 311 closed unresolved, replayed as withdrawn (`cancelled`).
    pub withdrawn: usize,
    /// Cases open in the record, left open.
    pub left_open: usize,
    /// Records whose `Closed` is before their `Opened`, replayed as closed at opening.
    pub closed_before_opened: usize,
    /// Records whose outcome could not be read (see the refusals): only routed.
    pub unreadable: usize,
    /// Actions the case book refused (a case merged into another by linkbus among them).
    pub refused: usize,
    /// The first few refusals, in words.
    pub refusals: Vec<String>,
}

/// The real outcomes of one SF 311 replay, acted out as their cases come out routed.
pub struct RealOutcomes {
    enactor: Enactor,
    speed: f64,
    closed_before_opened: usize,
    unreadable: Vec<String>,
}

impl RealOutcomes {
    /// Replays at `speed` (> 0) on `client`.
    pub fn new(client: async_nats::Client, speed: f64) -> Self {
        Self { enactor: Enactor::new(client), speed, closed_before_opened: 0, unreadable: Vec::new() }
    }

    /// Plans the record `row` of case `case_id`.
    pub fn plan(&mut self, case_id: String, row: &sf311::Row, tz: &jiff::tz::TimeZone) {
        match sf311::real_outcome(row, tz) {
            Ok(outcome) => {
                if let RealOutcome::Closed { before_opened: true, .. } = outcome {
                    self.closed_before_opened += 1;
                }
                let (number, speed) = (row.case_id.trim().to_owned(), self.speed);
                self.enactor.plan(case_id, Box::new(move |department| steps(&outcome, &number, department, speed)));
            }
            Err(e) => self.unreadable.push(format!("SF 311 record {}: {e}", row.case_id)),
        }
    }

    /// See [`Enactor::routed`].
    pub fn routed(&mut self, case_id: &str, routed: &async_nats::Message, seen: Instant) {
        self.enactor.routed(case_id, routed, seen);
    }

    /// Waits for every case's actions, and counts what they did.
    pub async fn finish(self) -> OutcomeSummary {
        let tally = self.enactor.finish().await;
        let ended = |state: CaseState| tally.ended.get(state.as_str()).copied().unwrap_or_default();
        let mut refusals = self.unreadable.clone();
        refusals.extend(tally.refusals);
        refusals.truncate(QUOTED_REFUSALS);
        OutcomeSummary {
            speed: self.speed,
            accepted: tally.done.get("accept").copied().unwrap_or_default(),
            resolved: ended(CaseState::Closed),
            withdrawn: ended(CaseState::Cancelled),
            left_open: ended(CaseState::Accepted),
            closed_before_opened: self.closed_before_opened,
            unreadable: self.unreadable.len(),
            refused: tally.refused + self.unreadable.len(),
            refusals,
        }
    }
}

/// What an [`Enactor`]'s actions came to.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Tally {
    /// Actions done, by name (`accept`, `resolve`, …).
    pub done: BTreeMap<String, usize>,
    /// Cases whose every planned action was done, by the state they ended in.
    pub ended: BTreeMap<String, usize>,
    /// Actions the case book refused (and cases whose routed message named no department).
    pub refused: usize,
    /// The first few refusals, in words.
    pub refusals: Vec<String>,
}

/// One replayed action: what it was and the case's state after it, or why it was refused.
type Done = Result<(Action, CaseState), String>;

/// What to do to a case, given the department it was routed to.
pub type Plan = Box<dyn FnOnce(&str) -> Vec<Step> + Send>;

/// How many refusals a summary quotes.
const QUOTED_REFUSALS: usize = 10;

/// Acts out planned actions on `replay.action` once their cases come out routed, each at the
/// case's opening plus its step's `after_secs`.
pub struct Enactor {
    client: async_nats::Client,
    in_flight: Arc<Semaphore>,
    plans: HashMap<String, Plan>,
    tasks: JoinSet<Vec<Done>>,
    tally: Tally,
}

impl Enactor {
    /// An enactor on `client`.
    pub fn new(client: async_nats::Client) -> Self {
        Self {
            client,
            in_flight: Arc::new(Semaphore::new(IN_FLIGHT)),
            plans: HashMap::new(),
            tasks: JoinSet::new(),
            tally: Tally::default(),
        }
    }

    /// Plans what to do to case `case_id` once it is routed.
    pub fn plan(&mut self, case_id: String, plan: Plan) {
        self.plans.insert(case_id, plan);
    }

    /// Case `case_id` came out routed (`routed` is its `case.<id>.routed` message), `seen` then:
    /// starts acting out its plan as the first department it was routed to, if there is a plan.
    pub fn routed(&mut self, case_id: &str, routed: &async_nats::Message, seen: Instant) {
        let Some(plan) = self.plans.remove(case_id) else { return };
        let event = serde_json::from_slice::<linkbus_wire::CloudEvent<linkbus_wire::RoutedCase>>(&routed.payload);
        let Some(department) = event.ok().and_then(|e| e.data.decision.departments.first().map(|d| d.id.clone()))
        else {
            self.refuse(format!("case {case_id}: its routed message names no department"));
            return;
        };
        let steps = plan(&department);
        let (client, case_id, in_flight) = (self.client.clone(), case_id.to_owned(), self.in_flight.clone());
        self.tasks.spawn(async move {
            let mut done = Vec::new();
            for step in steps {
                tokio::time::sleep_until(seen + Duration::from_secs_f64(step.after_secs)).await;
                let Ok(_permit) = in_flight.acquire().await else { break };
                let request = ReplayRequest {
                    case_id: case_id.clone(),
                    actor: step.actor,
                    after_open_secs: step.after_secs,
                    origin: step.origin,
                    action: step.action.clone(),
                };
                let result = match client::replay_action(&client, &request, PATIENCE).await {
                    Ok(reply) if reply.ok => Ok((step.action, reply.state.unwrap_or(CaseState::Routed))),
                    Ok(reply) => Err(format!("{case_id} {}: {}", step.action.name(), reply.error.unwrap_or_default())),
                    Err(e) => Err(format!("{case_id} {}: {e:#}", step.action.name())),
                };
                let failed = result.is_err();
                done.push(result);
                if failed {
                    break;
                }
            }
            done
        });
    }

    fn refuse(&mut self, why: String) {
        self.tally.refused += 1;
        if self.tally.refusals.len() < QUOTED_REFUSALS {
            self.tally.refusals.push(why);
        }
    }

    fn count(&mut self, joined: Result<Vec<Done>, tokio::task::JoinError>) {
        let results = joined.unwrap_or_else(|e| vec![Err(format!("a replay task failed: {e}"))]);
        let (mut last, mut failed) = (None, false);
        for result in results {
            match result {
                Ok((action, state)) => {
                    *self.tally.done.entry(action.name().to_owned()).or_default() += 1;
                    last = Some(state);
                }
                Err(e) => {
                    failed = true;
                    self.refuse(e);
                }
            }
        }
        if let (false, Some(state)) = (failed, last) {
            *self.tally.ended.entry(state.as_str().to_owned()).or_default() += 1;
        }
    }

    /// Counts the cases whose actions are all done by now, without waiting.
    pub fn reap(&mut self) -> &Tally {
        while let Some(joined) = self.tasks.try_join_next() {
            self.count(joined);
        }
        &self.tally
    }

    /// Waits for every case's actions, and counts what they did.
    pub async fn finish(mut self) -> Tally {
        while let Some(joined) = self.tasks.join_next().await {
            self.count(joined);
        }
        self.tally
    }
}

impl std::fmt::Display for OutcomeSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "REPLAYED real outcomes from the SF 311 record, time ÷ {} (real seconds per replayed second):",
            self.speed
        )?;
        writeln!(
            f,
            "  accepted            {}  (SF 311 records no acceptance: taken as accepted when opened)",
            self.accepted
        )?;
        writeln!(f, "  resolved, closed    {}", self.resolved)?;
        writeln!(
            f,
            "  withdrawn           {}  (closed unresolved: duplicate, invalid, transferred …)",
            self.withdrawn
        )?;
        writeln!(f, "  left open           {}  (open in the record)", self.left_open)?;
        writeln!(
            f,
            "  closed before open  {}  (record error: replayed as closed at opening)",
            self.closed_before_opened
        )?;
        writeln!(f, "  unreadable outcome  {}", self.unreadable)?;
        write!(f, "  refused             {}", self.refused)?;
        for refusal in &self.refusals {
            write!(f, "\n    {refusal}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resolved_record_is_accepted_at_opening_then_resolved_and_closed_at_its_compressed_close() {
        let closed = RealOutcome::Closed {
            after_secs: 134_280.0,
            before_opened: false,
            resolved: true,
            notes: "Case Resolved".into(),
        };
        let s = steps(&closed, "1757188", "dpw", 1000.0);
        let what: Vec<(f64, &str, ActorKind)> =
            s.iter().map(|s| (s.after_secs, s.action.name(), s.actor.kind)).collect();
        assert_eq!(
            what,
            [
                (0.0, "accept", ActorKind::Department),
                (134.28, "resolve", ActorKind::Department),
                (134.28, "close", ActorKind::Department)
            ]
        );
        assert!(s.iter().all(|s| s.origin.contains("replayed from SF 311 record 1757188, time ÷ 1000")));
        assert!(s[0].origin.starts_with("SF 311 records no acceptance"));
        assert_eq!(s[1].action, Action::Resolve { note: "SF 311: Case Resolved".into() });
    }

    #[test]
    fn open_unresolved_and_backwards_records_map_to_the_nearest_action() {
        assert_eq!(steps(&RealOutcome::Open, "1", "dpw", 10.0).len(), 1, "an open record is only accepted");
        let duplicate = RealOutcome::Closed {
            after_secs: 50.0,
            before_opened: false,
            resolved: false,
            notes: "Case is a Duplicate".into(),
        };
        let s = steps(&duplicate, "1", "dpw", 10.0);
        assert_eq!(
            (s.len(), s[1].after_secs, s[1].actor.kind, s[1].actor.id.as_str()),
            (2, 5.0, ActorKind::Source, SF311)
        );
        assert_eq!(s[1].action, Action::Cancel { reason: "SF 311 closed it unresolved: Case is a Duplicate".into() });
        let backwards =
            RealOutcome::Closed { after_secs: 0.0, before_opened: true, resolved: true, notes: String::new() };
        let s = steps(&backwards, "1", "dpw", 10.0);
        let Action::Resolve { note } = &s[1].action else { panic!("resolve") };
        assert!(note.contains("closes before it opens") && s[1].after_secs == 0.0, "{note}");
        let silent =
            RealOutcome::Closed { after_secs: 1.0, before_opened: false, resolved: true, notes: String::new() };
        assert_eq!(
            steps(&silent, "1", "dpw", 1.0)[1].action,
            Action::Resolve { note: "SF 311: closed (no status notes)".into() }
        );
    }
}
