//! The case book: every case record, kept in the `linkbus_cases` KV bucket and moved only by
//! revision-checked updates, so two linkbus replicas never both move the same case.
//!
//! Each replica follows the bucket into an in-memory copy (for listing, deadlines and duplicate
//! detection) and runs the same loops: open a record for every `case.<id>.routed`, answer
//! departments' requests on `action.<department>` and volunteers' on `volunteer.<id>.answer`,
//! and fire what is due (deadlines, offer expiries). A transition stores the new record together
//! with the messages it must send (an outbox); they are published under stable `Nats-Msg-Id`s and
//! then cleared, so a crash between the two re-sends them and JetStream drops the copies.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv};
use bytes::Bytes;
use futures::StreamExt;
use jiff::Timestamp;
use linkbus_bus::nats::{self, DeadLetter};
use linkbus_bus::pull;
use linkbus_bus::sync::read;
use linkbus_wire::subjects;
use linkbus_wire::{
    self as wire, Action, ActionReply, ActionRequest, Actor, ActorKind, CaseAssigned, CaseEvent, CaseRecord,
    CaseReport, CaseState, CloudEvent, OfferClosed, RoutedCase, VolunteerAnswer, VolunteerAssignment, VolunteerChoice,
    VolunteerOffer,
};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::lifecycle::{self, Effect, Ladder, Outcome, Policy, Refused};
use crate::metrics::CaseMetrics;

mod index;
use index::BookIndex;

/// Records the case book opens at once ([`pull::Limits::in_flight`]; as many are read ahead).
/// Opening them concurrently is safe: each `case.<id>.routed` creates its record with a
/// create-if-absent (a second delivery of the same case finds it and changes nothing), and the
/// duplicate check that follows runs one at a time (`merging`) after the record is cached.
/// Measured (`ops/scripts/bench`, release): at 64 the last of 250,000 records of a 50 k/s run
/// was stored as the departments got their copies (58.5 s); in a debug build the flood fault
/// test was faster one at a time (38 s vs 51–65 s), for a cause not found.
pub const OPEN_IN_FLIGHT: usize = 64;

/// Changes of case records held for subscribers ([`CaseBook::subscribe`]) not yet read by them.
const CHANGES_CAPACITY: usize = 4096;

/// How the case book runs.
#[derive(Debug, Clone)]
pub struct BookConfig {
    /// The rules of the loop.
    pub policy: Policy,
    /// Durable consumer of routed cases, shared by every replica.
    pub durable: String,
    /// How often due deadlines and offers are looked for.
    pub tick: Duration,
    /// The CloudEvents `source` of the events the loop emits.
    pub source: String,
}

impl Default for BookConfig {
    fn default() -> Self {
        Self {
            policy: Policy::default(),
            durable: "linkbus-cases".into(),
            tick: Duration::from_millis(250),
            source: "/linkbus/cases".into(),
        }
    }
}

/// Why an action could not be done.
#[derive(Debug, thiserror::Error)]
pub enum ActError {
    /// No such case.
    #[error("no case {0}")]
    NotFound(String),
    /// The loop's rules refuse it.
    #[error(transparent)]
    Refused(#[from] Refused),
    /// NATS trouble; try again.
    #[error("case store: {0}")]
    Store(String),
}

/// What the KV bucket holds per case: the record, and the messages still to send.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    record: CaseRecord,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    outbox: Vec<Outgoing>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Outgoing {
    subject: String,
    msg_id: String,
    body: String,
}

/// A record of the cache and the bucket revision it was stored at.
#[derive(Debug)]
struct Cached {
    stored: Stored,
    revision: u64,
}

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

/// The bucket key of a case: its id with `:` (not allowed in keys) as `=` (not allowed in ids).
fn key(case_id: &str) -> String {
    case_id.replace(':', "=")
}

/// The case id of a bucket key ([`key`] undone).
fn case_id_of(key: &str) -> String {
    key.replace('=', ":")
}

/// The case book of one linkbus process.
pub struct CaseBook {
    js: jetstream::Context,
    store: kv::Store,
    /// Every record, with the bucket revision it was stored at.
    cache: RwLock<HashMap<String, Cached>>,
    /// What is due, unsent and open where, over `cache`; locked after it, never before.
    index: RwLock<BookIndex>,
    /// Held while looking for a new case's duplicates and merging them.
    merging: tokio::sync::Mutex<()>,
    /// (CloudEvents source, the source's own id) of each record's own report → its case id.
    by_source: RwLock<HashMap<(String, String), String>>,
    ladder: Ladder,
    volunteers: Arc<dyn NextVolunteers>,
    config: BookConfig,
    metrics: CaseMetrics,
    changes: broadcast::Sender<CaseRecord>,
}

/// What the case book asks of the matching in force: the next volunteers to offer a case to when
/// one declines or an offer expires. The service answers it from the router's live index.
pub trait NextVolunteers: Send + Sync + 'static {
    /// The nearest available volunteers with `skill` for `case` at `now`, leaving out those in
    /// `already` (offered it before).
    fn next_volunteers(&self, case: &CaseReport, skill: &str, already: &[&str], now: Timestamp)
    -> Vec<VolunteerChoice>;
}

impl std::fmt::Debug for CaseBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaseBook").field("config", &self.config).finish_non_exhaustive()
    }
}

impl CaseBook {
    /// Opens the book and starts its loops (until `shutdown`), counting into `metrics`; returns
    /// once the bucket is read. Escalations climb `ladder`; declined and expired offers go on to
    /// the volunteers `volunteers` names.
    pub async fn start(
        js: jetstream::Context,
        ladder: Ladder,
        volunteers: Arc<dyn NextVolunteers>,
        config: BookConfig,
        metrics: CaseMetrics,
        shutdown: CancellationToken,
    ) -> Result<(Arc<Self>, Vec<tokio::task::JoinHandle<()>>), ActError> {
        let store = js.get_key_value(nats::BUCKET_CASES).await.map_err(store_err)?;
        let (changes, _) = broadcast::channel(CHANGES_CAPACITY);
        let book = Arc::new(Self {
            js,
            store,
            cache: RwLock::new(HashMap::new()),
            index: RwLock::new(BookIndex::default()),
            merging: tokio::sync::Mutex::new(()),
            by_source: RwLock::new(HashMap::new()),
            ladder,
            volunteers,
            config,
            metrics,
            changes,
        });
        let ready = CancellationToken::new();
        let mut tasks = Vec::new();
        let spawn = |name: &'static str, f: futures::future::BoxFuture<'static, Result<(), ActError>>| {
            tokio::spawn(async move {
                if let Err(e) = f.await {
                    warn!(error = %e, "case book {name} stopped");
                }
            })
        };
        tasks.push(spawn("follower", Box::pin(book.clone().follow(ready.clone(), shutdown.clone()))));
        tokio::time::timeout(Duration::from_secs(60), ready.cancelled())
            .await
            .map_err(|_| ActError::Store("timed out reading the cases bucket".into()))?;
        tasks.push(spawn("opener", Box::pin(book.clone().open_routed(shutdown.clone()))));
        tasks.push(spawn("actions", Box::pin(book.clone().serve_actions(shutdown.clone()))));
        tasks.push(spawn("answers", Box::pin(book.clone().serve_answers(shutdown.clone()))));
        tasks.push(spawn("ticker", Box::pin(book.clone().tick_loop(shutdown))));
        info!(cases = book.cache_len(), "case book open");
        Ok((book, tasks))
    }

    fn cache_len(&self) -> usize {
        read(&self.cache).len()
    }

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

    /// Applies an action by `actor` (see [`lifecycle::act`]; `Split` goes through [`lifecycle::split`]).
    pub async fn act(&self, case_id: &str, actor: &Actor, action: &Action) -> Result<CaseRecord, ActError> {
        if let Action::Split { report_id } = action {
            return self.split(case_id, report_id, actor).await;
        }
        let now = Timestamp::now();
        self.transact(case_id, |r| {
            if lifecycle::is_repeat(r, actor, action) {
                return Ok(None);
            }
            lifecycle::act(r, actor, action, now, &self.config.policy, &self.ladder).map(Some)
        })
        .await
    }

    async fn split(&self, case_id: &str, report_id: &str, actor: &Actor) -> Result<CaseRecord, ActError> {
        if actor.kind != ActorKind::Dispatcher {
            return Err(Refused::Forbidden("only dispatchers split merged cases".into()).into());
        }
        let now = Timestamp::now();
        let report = self.load(report_id).await?.0.record;
        let primary = self
            .transact(case_id, |p| {
                let (p, _) = lifecycle::split(p, &report, actor, now, &self.config.policy)?;
                Ok(Some(p))
            })
            .await?;
        self.transact(report_id, |r| {
            if r.merged_into.is_none() {
                return Ok(None);
            }
            Ok(Some(lifecycle::split(&primary, r, actor, now, &self.config.policy)?.1))
        })
        .await?;
        Ok(primary)
    }

    /// A volunteer's answer to an offer; an accept gets where to go and the nearest facility.
    pub async fn answer(
        &self,
        volunteer_id: &str,
        answer: &VolunteerAnswer,
    ) -> Result<(CaseRecord, Option<VolunteerAssignment>), ActError> {
        let now = Timestamp::now();
        let record = self
            .transact(&answer.case_id, |r| {
                lifecycle::answer(r, volunteer_id, answer.accept, now, &self.config.policy, |already| {
                    self.next_volunteers(r, already, now)
                })
                .map(Some)
            })
            .await?;
        let assignment = answer.accept.then(|| VolunteerAssignment {
            location: record.case.location,
            address: record.case.address.clone(),
            facility: record.decision.facility.clone(),
        });
        Ok((record, assignment))
    }

    fn next_volunteers(&self, r: &CaseRecord, already: &[&str], now: Timestamp) -> Vec<wire::VolunteerChoice> {
        let Some(skill) = r.decision.volunteer_search.skill.as_deref() else { return vec![] };
        self.volunteers.next_volunteers(&r.case, skill, already, now)
    }

    async fn load(&self, case_id: &str) -> Result<(Stored, u64), ActError> {
        let entry = self.store.entry(key(case_id)).await.map_err(store_err)?;
        let entry = entry
            .filter(|e| e.operation == kv::Operation::Put)
            .ok_or_else(|| ActError::NotFound(case_id.to_owned()))?;
        let stored: Stored = serde_json::from_slice(&entry.value).map_err(|e| ActError::Store(e.to_string()))?;
        Ok((stored, entry.revision))
    }

    /// Reads the case, applies `f`, and stores the result if the case did not change meanwhile
    /// (else reads it again and retries); then sends what the transition produced.
    async fn transact(
        &self,
        case_id: &str,
        mut f: impl FnMut(&CaseRecord) -> Result<Option<Outcome>, Refused>,
    ) -> Result<CaseRecord, ActError> {
        for _ in 0..32 {
            let (stored, revision) = self.load(case_id).await?;
            let Some(outcome) = f(&stored.record)? else { return Ok(stored.record) };
            let mut outbox = stored.outbox;
            outbox.extend(self.messages(&stored.record, &outcome));
            let next = Stored { record: outcome.record, outbox };
            let body = Bytes::from(serde_json::to_vec(&next).map_err(|e| ActError::Store(e.to_string()))?);
            match self.store.update(key(case_id), body, revision).await {
                Ok(revision) => {
                    self.metrics.transition(&stored.record, &next.record);
                    self.remember(next.clone(), revision);
                    self.flush(case_id, &next.outbox).await;
                    return Ok(next.record);
                }
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                Err(e) => return Err(store_err(e)),
            }
        }
        Err(ActError::Store(format!("case {case_id} kept changing; gave up after 32 tries")))
    }

    /// Takes a record stored at `revision` into the cache, unless the cache holds it at that
    /// revision or a later one already: this replica's own writes come back through the
    /// follower, and a write's answer can arrive after the follower brought a newer one.
    fn remember(&self, stored: Stored, revision: u64) {
        if let Some(own) = stored.record.reports.first() {
            let key = (own.source.clone(), stored.record.case.source_id.clone());
            let mut index = self.by_source.write().unwrap_or_else(|p| p.into_inner());
            index.entry(key).or_insert_with(|| stored.record.case_id.clone());
        }
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        let old = cache.get(&stored.record.case_id);
        if old.is_some_and(|old| old.revision >= revision) {
            return;
        }
        let old = old.map(|c| &c.stored);
        self.index.write().unwrap_or_else(|p| p.into_inner()).update(old, &stored);
        let changed = old.is_none_or(|old| old.record != stored.record);
        if changed && self.changes.receiver_count() > 0 {
            // No receiver is not an error: nobody is watching.
            let _ = self.changes.send(stored.record.clone());
        }
        cache.insert(stored.record.case_id.clone(), Cached { stored, revision });
    }

    /// Whether the cache holds the record under bucket key `key` at `revision` or later.
    fn has_revision(&self, key: &str, revision: u64) -> bool {
        read(&self.cache).get(&case_id_of(key)).is_some_and(|c| c.revision >= revision)
    }

    /// The messages a transition sends: its new timeline entries on `case.<id>.<event>`, and its
    /// effects. Every id is derived from the case and the timeline, so re-sending is harmless.
    fn messages(&self, before: &CaseRecord, outcome: &Outcome) -> Vec<Outgoing> {
        let r = &outcome.record;
        let now = r.updated_at;
        let source = &self.config.source;
        let mut out = Vec::new();
        // Entry 0 ("routed") is the router's own `case.<id>.routed` event.
        for (n, entry) in r.timeline.iter().enumerate().skip(before.timeline.len().max(1)) {
            let id = format!("{}:t{n}", r.case_id);
            let event = CaseEvent { case_id: r.case_id.clone(), state: r.state, entry: entry.clone() };
            let ev = CloudEvent::new(id.clone(), source, wire::TYPE_CASE_EVENT, Some(r.case_id.clone()), now, event);
            out.push(outgoing(subjects::case_event(&r.case_id, entry.event.as_str()), id, &ev));
        }
        for effect in &outcome.effects {
            match effect {
                Effect::Assign { department, reason } => {
                    let id = format!("{}:assign:{department}:{}", r.case_id, r.timeline.len());
                    let data = CaseAssigned {
                        case_id: r.case_id.clone(),
                        department: department.clone(),
                        reason: *reason,
                        record: r.clone(),
                    };
                    let ev = CloudEvent::new(
                        id.clone(),
                        source,
                        wire::TYPE_CASE_ASSIGNED,
                        Some(r.case_id.clone()),
                        now,
                        data,
                    );
                    out.push(outgoing(subjects::routed_department(department, &r.case.category), id, &ev));
                }
                Effect::Notify { department, entry } => {
                    let id = format!("{}:notify:{department}:{entry}", r.case_id);
                    let event =
                        CaseEvent { case_id: r.case_id.clone(), state: r.state, entry: r.timeline[*entry].clone() };
                    let ev =
                        CloudEvent::new(id.clone(), source, wire::TYPE_CASE_EVENT, Some(r.case_id.clone()), now, event);
                    out.push(outgoing(subjects::routed_department(department, &r.case.category), id, &ev));
                }
                Effect::Offer { volunteer_id, distance_m } => {
                    let id = format!("{}:offer:{volunteer_id}", r.case_id);
                    let offer = VolunteerOffer {
                        case_id: r.case_id.clone(),
                        volunteer_id: volunteer_id.clone(),
                        rank: r.offers.iter().position(|o| &o.volunteer_id == volunteer_id).map_or(0, |n| n + 1),
                        category: r.case.category.clone(),
                        priority: r.priority,
                        location: r.case.location,
                        address: r.case.address.clone(),
                        description: r.case.description.clone(),
                        distance_m: *distance_m,
                        skill: r.decision.volunteer_search.skill.clone().unwrap_or_default(),
                    };
                    let ev = CloudEvent::new(
                        id.clone(),
                        source,
                        wire::TYPE_VOLUNTEER_OFFER,
                        Some(r.case_id.clone()),
                        now,
                        offer,
                    );
                    out.push(outgoing(subjects::volunteer_offer(volunteer_id), id, &ev));
                }
                Effect::CloseOffer { volunteer_id, reason } => {
                    let id = format!("{}:closed:{volunteer_id}", r.case_id);
                    let data = OfferClosed {
                        case_id: r.case_id.clone(),
                        volunteer_id: volunteer_id.clone(),
                        reason: (*reason).to_owned(),
                    };
                    let ev = CloudEvent::new(
                        id.clone(),
                        source,
                        wire::TYPE_OFFER_CLOSED,
                        Some(r.case_id.clone()),
                        now,
                        data,
                    );
                    out.push(outgoing(subjects::volunteer_offer_closed(volunteer_id), id, &ev));
                }
            }
        }
        out
    }

    /// Publishes `outbox`, then removes what was published from the stored record. What fails
    /// stays for the next tick.
    async fn flush(&self, case_id: &str, outbox: &[Outgoing]) {
        if outbox.is_empty() {
            return;
        }
        let mut sent = Vec::new();
        for m in outbox {
            let published =
                match nats::publish(&self.js, m.subject.clone(), &m.msg_id, Bytes::from(m.body.clone())).await {
                    Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
            match published {
                Ok(()) => sent.push(m.msg_id.clone()),
                Err(e) => {
                    warn!(case_id, subject = %m.subject, error = %e, "could not send; will retry");
                    break;
                }
            }
        }
        for _ in 0..32 {
            let Ok((mut stored, revision)) = self.load(case_id).await else { return };
            let before = stored.outbox.len();
            stored.outbox.retain(|m| !sent.contains(&m.msg_id));
            if stored.outbox.len() == before {
                return;
            }
            let Ok(body) = serde_json::to_vec(&stored) else { return };
            match self.store.update(key(case_id), body.into(), revision).await {
                Ok(revision) => {
                    self.remember(stored, revision);
                    return;
                }
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                Err(e) => {
                    warn!(case_id, error = %e, "could not clear the outbox; will retry");
                    return;
                }
            }
        }
    }

    /// Follows the bucket into the cache; `ready` once the current content is in.
    async fn follow(self: Arc<Self>, ready: CancellationToken, shutdown: CancellationToken) -> Result<(), ActError> {
        nats::follow_bucket(&self.store, &ready, &shutdown, |entry| {
            if entry.operation == kv::Operation::Put && !self.has_revision(&entry.key, entry.revision) {
                match serde_json::from_slice::<Stored>(&entry.value) {
                    Ok(stored) => self.remember(stored, entry.revision),
                    Err(e) => warn!(key = %entry.key, error = %e, "unreadable case record"),
                }
            }
            std::future::ready(())
        })
        .await;
        Ok(())
    }

    /// Opens a record for every routed case ([`OPEN_IN_FLIGHT`] at once), merging it into an open
    /// case of the same incident.
    async fn open_routed(self: Arc<Self>, shutdown: CancellationToken) -> Result<(), ActError> {
        let stream = self.js.get_stream(nats::STREAM_CASES).await.map_err(store_err)?;
        let consumer: consumer::PullConsumer = stream
            .get_or_create_consumer(
                &self.config.durable,
                consumer::pull::Config {
                    durable_name: Some(self.config.durable.clone()),
                    description: Some("linkbus case book: opens a record per routed case".into()),
                    filter_subject: subjects::case_event("*", "routed"),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: Duration::from_secs(30),
                    ..Default::default()
                },
            )
            .await
            .map_err(store_err)?;
        let limits = pull::Limits { in_flight: OPEN_IN_FLIGHT, ahead: OPEN_IN_FLIGHT };
        let book = &*self;
        let done = pull::consume(&consumer, limits, &shutdown, |msg| book.open_msg(msg)).await;
        info!(handled = done.handled, handed_back = done.handed_back, "case book stopped opening records");
        Ok(())
    }

    /// Opens the record of one `case.<id>.routed` message (or dead-letters what is not a routed
    /// case), then acks it; naks it for a retry in a second when the store failed.
    async fn open_msg(&self, msg: jetstream::Message) {
        let done = match serde_json::from_slice::<CloudEvent<RoutedCase>>(&msg.payload) {
            Ok(ev) => self.open_one(&ev.data).await,
            Err(e) => {
                // Not written by a router: keep it where operators look, then move on.
                let letter = DeadLetter {
                    stage: "cases",
                    reason: &format!("not a routed case: {e}"),
                    code: "malformed",
                    original_subject: &msg.subject,
                    original_msg_id: None,
                    msg_id: &format!("cases:{}", msg.info().map(|i| i.stream_sequence).unwrap_or_default()),
                    payload: msg.payload.clone(),
                };
                let stored = nats::store_deadletter(&self.js, letter).await.map_err(|e| ActError::Store(e.to_string()));
                if stored.is_ok() {
                    self.metrics.deadletter_cases.inc("malformed");
                }
                stored
            }
        };
        match done {
            Ok(()) => {
                let _ = msg.ack().await;
            }
            Err(e) => {
                warn!(error = %e, "could not open a case record; will retry");
                let _ = msg.ack_with(jetstream::AckKind::Nak(Some(Duration::from_secs(1)))).await;
            }
        }
    }

    async fn open_one(&self, routed: &RoutedCase) -> Result<(), ActError> {
        let now = Timestamp::now();
        let record = lifecycle::open(routed, now, &self.config.policy);
        let stored = Stored { record, outbox: vec![] };
        let body = Bytes::from(serde_json::to_vec(&stored).map_err(|e| ActError::Store(e.to_string()))?);
        match self.store.create(key(&routed.case_id), body).await {
            Ok(revision) => {
                self.metrics.opened(&stored.record);
                self.remember(stored, revision);
            }
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
            Err(e) => return Err(store_err(e)),
        }
        self.merge_duplicates(routed, now).await
    }

    /// Folds together the reports of one incident: of this routed case and the open cases it
    /// duplicates, the record opened first is the primary and the others are merged into it
    /// (idempotent: a retry finds it done). One check at a time (`merging`), each after its own
    /// record is in the cache, so of two duplicates opened at once the later check sees both.
    async fn merge_duplicates(&self, routed: &RoutedCase, now: Timestamp) -> Result<(), ActError> {
        let _one_at_a_time = self.merging.lock().await;
        let mut group: Vec<(Timestamp, String)> = {
            let cache = read(&self.cache);
            let index = read(&self.index);
            let at = routed.case.location;
            index
                .open_near(at.lon, at.lat, self.config.policy.merge.distance_m)
                .filter_map(|id| cache.get(id))
                .map(|c| &c.stored.record)
                .filter(|p| lifecycle::is_duplicate(p, routed, &self.config.policy.merge))
                .map(|p| (p.created_at, p.case_id.clone()))
                .collect()
        };
        if group.is_empty() {
            return Ok(());
        }
        let own = self.load(&routed.case_id).await?.0.record;
        if own.merged_into.is_some() || !own.state.is_open() {
            return Ok(());
        }
        group.push((own.created_at, own.case_id.clone()));
        group.sort_unstable();
        let (_, primary) = &group[0];
        if *primary == own.case_id {
            for (_, report) in &group[1..] {
                self.merge_into(primary, report, now).await?;
            }
            Ok(())
        } else {
            self.merge_into(primary, &own.case_id, now).await
        }
    }

    /// Merges the record of `report_id` into `primary_id`, unless it was merged or acted on.
    async fn merge_into(&self, primary_id: &str, report_id: &str, now: Timestamp) -> Result<(), ActError> {
        let report = self.load(report_id).await?.0.record;
        if report.merged_into.is_some() || report.timeline.len() > 1 {
            return Ok(());
        }
        let merged = self
            .transact(primary_id, |p| {
                if p.reports.iter().any(|r| r.report_id == report.case_id) || !p.state.is_open() {
                    return Ok(None);
                }
                Ok(Some(lifecycle::merge(p, &report, now).0))
            })
            .await?;
        self.transact(report_id, |r| {
            if r.merged_into.is_some() {
                return Ok(None);
            }
            Ok(Some(lifecycle::merge(&merged, r, now).1))
        })
        .await?;
        info!(case_id = %report_id, into = %primary_id, "merged a duplicate report");
        Ok(())
    }

    /// Answers departments' action requests on `action.<department>`.
    async fn serve_actions(self: Arc<Self>, shutdown: CancellationToken) -> Result<(), ActError> {
        let client = self.js.client();
        let mut requests =
            client.queue_subscribe(subjects::action("*"), "linkbus-cases".into()).await.map_err(store_err)?;
        while let Some(msg) = tokio::select! { _ = shutdown.cancelled() => None, m = requests.next() => m } {
            let Some(department) = msg.subject.split('.').nth(1).map(str::to_owned) else { continue };
            let actor = Actor { kind: ActorKind::Department, id: department };
            let reply = match serde_json::from_slice::<ActionRequest>(&msg.payload) {
                Ok(req) => match self.act(&req.case_id, &actor, &req.action).await {
                    Ok(r) => done(r, None),
                    Err(e) => self.refusal(&req.case_id, e),
                },
                Err(e) => self.malformed("action", &msg, &format!("not an action request: {e}")).await,
            };
            respond(&client, &msg, &reply).await;
        }
        Ok(())
    }

    /// Answers volunteers' answers on `volunteer.<id>.answer`.
    async fn serve_answers(self: Arc<Self>, shutdown: CancellationToken) -> Result<(), ActError> {
        let client = self.js.client();
        let mut requests =
            client.queue_subscribe(subjects::volunteer_answer("*"), "linkbus-cases".into()).await.map_err(store_err)?;
        while let Some(msg) = tokio::select! { _ = shutdown.cancelled() => None, m = requests.next() => m } {
            let Some(volunteer) = msg.subject.split('.').nth(1).map(str::to_owned) else { continue };
            let reply = match serde_json::from_slice::<VolunteerAnswer>(&msg.payload) {
                Ok(answer) => match self.answer(&volunteer, &answer).await {
                    Ok((r, assignment)) => done(r, assignment),
                    Err(e) => self.refusal(&answer.case_id, e),
                },
                Err(e) => self.malformed("answer", &msg, &format!("not a volunteer answer: {e}")).await,
            };
            respond(&client, &msg, &reply).await;
        }
        Ok(())
    }

    /// A request that is not what its subject takes: kept on `deadletter.<stage>`, and the
    /// sender told why.
    async fn malformed(&self, stage: &str, msg: &async_nats::Message, reason: &str) -> ActionReply {
        self.dead_letter(stage, msg, reason).await;
        ActionReply { ok: false, case_id: String::new(), state: None, error: Some(reason.to_owned()), assignment: None }
    }

    fn refusal(&self, case_id: &str, e: ActError) -> ActionReply {
        ActionReply {
            ok: false,
            case_id: case_id.to_owned(),
            state: self.get(case_id).map(|r| r.state),
            error: Some(e.to_string()),
            assignment: None,
        }
    }

    async fn dead_letter(&self, stage: &str, msg: &async_nats::Message, reason: &str) {
        let msg_id = format!("{stage}:{}", stable_id(&msg.payload, &msg.subject));
        let letter = DeadLetter {
            stage,
            reason,
            code: "malformed",
            original_subject: &msg.subject,
            original_msg_id: None,
            msg_id: &msg_id,
            payload: msg.payload.clone(),
        };
        if let Ok(ack) = nats::publish_deadletter(&self.js, letter).await
            && ack.await.is_ok()
        {
            match stage {
                "action" => self.metrics.deadletter_action.inc("malformed"),
                "answer" => self.metrics.deadletter_answer.inc("malformed"),
                _ => {}
            }
        }
    }

    /// Fires what is due and re-sends what a crash left in an outbox.
    async fn tick_loop(self: Arc<Self>, shutdown: CancellationToken) -> Result<(), ActError> {
        let mut interval = tokio::time::interval(self.config.tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = interval.tick() => {}
            }
            let now = Timestamp::now();
            let (due, unsent): (Vec<String>, Vec<(String, Vec<Outgoing>)>) = {
                let cache = read(&self.cache);
                let index = read(&self.index);
                let unsent = index
                    .unsent()
                    .filter_map(|id| cache.get(id))
                    .map(|c| (c.stored.record.case_id.clone(), c.stored.outbox.clone()))
                    .collect();
                (index.due_by(now), unsent)
            };
            for (case_id, outbox) in unsent {
                self.flush(&case_id, &outbox).await;
            }
            for case_id in due {
                let result = self
                    .transact(&case_id, |r| {
                        Ok(lifecycle::tick(r, now, &self.config.policy, &self.ladder, |already| {
                            self.next_volunteers(r, already, now)
                        }))
                    })
                    .await;
                if let Err(e) = result {
                    warn!(case_id, error = %e, "could not fire what is due; will retry");
                }
            }
        }
    }
}

fn outgoing<T: Serialize>(subject: String, msg_id: String, event: &CloudEvent<T>) -> Outgoing {
    // Wire types are plain structs with string keys: serialising them cannot fail.
    Outgoing { subject, msg_id, body: serde_json::to_string(event).expect("wire types always serialise") }
}

/// The reply to a request that was done.
fn done(r: CaseRecord, assignment: Option<VolunteerAssignment>) -> ActionReply {
    ActionReply { ok: true, case_id: r.case_id, state: Some(r.state), error: None, assignment }
}

async fn respond(client: &async_nats::Client, msg: &async_nats::Message, reply: &ActionReply) {
    let Some(to) = msg.reply.clone() else { return };
    let body = serde_json::to_vec(reply).expect("wire types always serialise");
    if let Err(e) = client.publish(to, body.into()).await {
        warn!(error = %e, "could not reply");
    }
}

/// A stable id for a refused request: a hash of its subject and bytes.
fn stable_id(payload: &[u8], subject: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (subject, payload).hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

fn store_err(e: impl std::fmt::Display) -> ActError {
    ActError::Store(e.to_string())
}

/// How one department handles its cases, for the dashboards.
#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct DepartmentStats {
    /// The department.
    pub department: String,
    /// Cases it has or had.
    pub cases: usize,
    /// Cases it accepted.
    pub accepted: usize,
    /// Cases it rejected.
    pub rejected: usize,
    /// Ratings of its handling.
    pub ratings: usize,
    /// Their average score, 1–5.
    pub average_score: Option<f64>,
    /// Ratings that said "not solved" (each reopened the case).
    pub not_solved: usize,
    /// `not_solved / ratings`.
    pub reopen_rate: Option<f64>,
}

impl CaseBook {
    /// Per-department handling figures: cases, acceptances, rejections, ratings, reopen rate.
    pub fn department_stats(&self) -> Vec<DepartmentStats> {
        let cache = read(&self.cache);
        let mut stats: HashMap<String, DepartmentStats> = HashMap::new();
        for r in cache.values().map(|c| &c.stored.record).filter(|r| r.merged_into.is_none()) {
            let mut involved: Vec<&str> = r.departments.iter().chain(&r.rejected_by).map(String::as_str).collect();
            involved.extend(r.accepted_by.as_deref());
            involved.sort_unstable();
            involved.dedup();
            for d in involved {
                let s = stats_of(&mut stats, d);
                s.cases += 1;
                s.accepted += usize::from(r.accepted_by.as_deref() == Some(d));
                s.rejected += usize::from(r.rejected_by.iter().any(|x| x == d));
            }
            for rating in &r.ratings {
                let Some(d) = rating.department.as_deref() else { continue };
                let s = stats_of(&mut stats, d);
                s.ratings += 1;
                s.not_solved += usize::from(!rating.solved);
                let total = s.average_score.unwrap_or(0.0) * (s.ratings - 1) as f64 + f64::from(rating.score);
                s.average_score = Some(total / s.ratings as f64);
            }
        }
        let mut out: Vec<DepartmentStats> = stats
            .into_values()
            .map(|mut s| {
                s.reopen_rate = (s.ratings > 0).then(|| s.not_solved as f64 / s.ratings as f64);
                s
            })
            .collect();
        out.sort_by(|a, b| a.department.cmp(&b.department));
        out
    }
}

fn stats_of<'a>(stats: &'a mut HashMap<String, DepartmentStats>, department: &str) -> &'a mut DepartmentStats {
    stats
        .entry(department.to_owned())
        .or_insert_with(|| DepartmentStats { department: department.to_owned(), ..Default::default() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use linkbus_wire::TimelineEvent;

    #[test]
    fn a_record_with_an_event_this_version_does_not_know_is_read_moved_and_stored_back_with_it() {
        // As a newer replica would store it during a rolling upgrade.
        let mut record: serde_json::Value =
            serde_json::from_str(include_str!("../../docs/examples/case-record.json")).expect("the example");
        let timeline = record["timeline"].as_array_mut().expect("a timeline");
        let mut newer = timeline[1].clone();
        newer["event"] = "evacuation_ordered".into();
        timeline.push(newer);
        let value = serde_json::json!({ "record": record });

        let stored: Stored = serde_json::from_value(value.clone()).expect("the follower can read it");
        assert_eq!(serde_json::to_value(&stored).expect("serialises"), value, "read and written back unchanged");
        let unknown = TimelineEvent::Other("evacuation_ordered".into());
        assert_eq!(stored.record.timeline.last().map(|e| &e.event), Some(&unknown));

        let department = Actor { kind: ActorKind::Department, id: "puc-sewer-ops".into() };
        let progress = Action::Progress { note: "crew on site".into() };
        let ladder = Ladder::new([("puc-sewer-ops".to_owned(), None)], "puc-sewer-ops");
        let now = stored.record.updated_at + jiff::SignedDuration::from_secs(60);
        let moved = lifecycle::act(&stored.record, &department, &progress, now, &Policy::default(), &ladder)
            .expect("a transition on it");
        let events: Vec<&str> = moved.record.timeline.iter().map(|e| e.event.as_str()).collect();
        assert_eq!(events, ["routed", "accepted", "evacuation_ordered", "progress"]);
    }
}
