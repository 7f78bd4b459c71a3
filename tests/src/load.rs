//! Steady load for the fault tests, and the audit that proves nothing was lost or done twice.
//!
//! - [`Load`] publishes cases at a steady rate as a source system would: each is retried under
//!   the same event id until JetStream acknowledges it, so a case counts as sent only once it is
//!   stored. Cases are sewer issues and street cleaning, alternately, each at its own point, so
//!   none is merged into another (the fault tests set `merge_distance_m = 0`).
//! - [`Acceptor`] acts as the departments: it accepts every [`ACCEPT_EVERY`]th case over NATS
//!   (`action.<department>`), retrying until the reply says the case is accepted, whatever the
//!   fault does to the requests and replies in between.
//! - [`audit`] then reads the streams and the case book: every case sent routed exactly once
//!   (one decision by event id), each department's copy once and byte for byte the stored
//!   decision, one case record each with one `routed` entry, and every accepted case accepted
//!   exactly once (one timeline entry, one `case.<id>.accepted` event).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use linkbus_bus::nats::{BUCKET_CASES, STREAM_CASES, STREAM_ROUTED};
use linkbus_wire::subjects;
use linkbus_wire::{self as wire, CaseReport, CaseState, CloudEvent, RoutedCase, SourceSystem};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{case, read_stream};

/// Every how many cases the [`Acceptor`] accepts one.
pub const ACCEPT_EVERY: usize = 5;
/// How long a case is retried (publishing, accepting) before the load gives up on it.
const PATIENCE: Duration = Duration::from_secs(120);
/// Pause between retries.
const RETRY: Duration = Duration::from_millis(200);

/// The `n`th case of a load: a sewer issue (even) or street cleaning (odd) in central San
/// Francisco, each at its own point about 30 m from the last.
pub fn load_case(prefix: &str, n: usize) -> CloudEvent<CaseReport> {
    let category = if n.is_multiple_of(2) { "sewer_issues" } else { "street_and_sidewalk_cleaning" };
    let lon = -122.47 + (n % 200) as f64 * 0.00035;
    let lat = 37.74 + (n / 200 % 150) as f64 * 0.0003;
    case(&format!("{prefix}-{n}"), SourceSystem::PublicService, category, lon, lat)
}

/// A steady stream of cases being published.
pub struct Load {
    stop: CancellationToken,
    stored: Arc<AtomicUsize>,
    task: JoinHandle<Vec<String>>,
}

impl Load {
    /// Publishes `per_second` cases a second (ids `<prefix>-<n>`) until [`Load::stop`]; every
    /// [`ACCEPT_EVERY`]th stored case is also handed to `accept`, if given.
    pub fn start(
        js: jetstream::Context,
        prefix: &str,
        per_second: f64,
        accept: Option<mpsc::UnboundedSender<String>>,
    ) -> Self {
        let stop = CancellationToken::new();
        let stored = Arc::new(AtomicUsize::new(0));
        let (prefix, token, count) = (prefix.to_owned(), stop.clone(), stored.clone());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut sent = Vec::new();
            for n in 0.. {
                tokio::select! {
                    _ = token.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let event = load_case(&prefix, n);
                if !publish_until_stored(&js, &event).await {
                    panic!("case {} not stored within {PATIENCE:?}", event.id);
                }
                if n.is_multiple_of(ACCEPT_EVERY)
                    && let Some(accept) = &accept
                {
                    let _ = accept.send(event.id.clone());
                }
                sent.push(event.id);
                count.fetch_add(1, Ordering::SeqCst);
            }
            sent
        });
        Self { stop, stored, task }
    }

    /// Cases stored so far.
    pub fn stored(&self) -> usize {
        self.stored.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` cases are stored (panics after `within`).
    pub async fn wait_stored(&self, n: usize, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while self.stored() < n {
            assert!(tokio::time::Instant::now() < deadline, "only {} of {n} cases stored in time", self.stored());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops publishing (the case being retried is finished first); the ids of every case sent.
    pub async fn stop(self) -> Vec<String> {
        self.stop.cancel();
        self.task.await.expect("the load task ran")
    }
}

/// Publishes `event` under its id until JetStream acknowledges it (or [`PATIENCE`] runs out).
async fn publish_until_stored(js: &jetstream::Context, event: &CloudEvent<CaseReport>) -> bool {
    let subject = subjects::ingest(event.data.system, &event.data.category);
    let body = bytes::Bytes::from(serde_json::to_vec(event).expect("serialise"));
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::time::Instant::now() < deadline {
        if let Ok(ack) = linkbus_bus::nats::publish(js, subject.clone(), &event.id, body.clone()).await
            && ack.await.is_ok()
        {
            return true;
        }
        tokio::time::sleep(RETRY).await;
    }
    false
}

/// Departments accepting the cases handed to them, each until it is accepted.
pub struct Acceptor {
    cases: mpsc::UnboundedSender<String>,
    task: JoinHandle<Vec<String>>,
}

impl Acceptor {
    /// Accepts over `client` every case id sent to [`Acceptor::sender`].
    pub fn start(client: async_nats::Client, js: jetstream::Context) -> Self {
        let (cases, mut ids) = mpsc::unbounded_channel::<String>();
        let task = tokio::spawn(async move {
            let stream = js.get_stream(STREAM_CASES).await.expect("the cases stream");
            let mut accepted = Vec::new();
            while let Some(id) = ids.recv().await {
                accept_until_done(&client, &stream, &id).await;
                accepted.push(id);
            }
            accepted
        });
        Self { cases, task }
    }

    /// Where to send the ids of cases to accept.
    pub fn sender(&self) -> mpsc::UnboundedSender<String> {
        self.cases.clone()
    }

    /// Finishes the cases handed over so far; the ids of every case accepted.
    pub async fn finish(self) -> Vec<String> {
        drop(self.cases);
        self.task.await.expect("the acceptor ran")
    }
}

/// Accepts `case_id` as the department its decision names, retrying until a reply says it is
/// accepted: a retried request whose first try went through is refused with the state
/// `accepted`, which also counts as done.
async fn accept_until_done(client: &async_nats::Client, cases: &jetstream::stream::Stream, case_id: &str) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let timeline = subjects::case_event(case_id, "routed");
    let mut last = String::from("not routed");
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "case {case_id} could not be accepted in {PATIENCE:?}; last: {last}"
        );
        let department = match cases.get_last_raw_message_by_subject(&timeline).await {
            Ok(stored) => serde_json::from_slice::<CloudEvent<RoutedCase>>(&stored.payload)
                .ok()
                .and_then(|r| r.data.decision.departments.first().map(|d| d.id.clone())),
            Err(_) => None,
        };
        let Some(department) = department else {
            tokio::time::sleep(RETRY).await;
            continue;
        };
        let request = wire::ActionRequest { case_id: case_id.to_owned(), action: wire::Action::Accept {} };
        let body = serde_json::to_vec(&request).expect("json");
        let reply = match tokio::time::timeout(
            Duration::from_secs(5),
            client.request(subjects::action(&department), body.into()),
        )
        .await
        {
            Ok(Ok(m)) => serde_json::from_slice::<wire::ActionReply>(&m.payload).map_err(|e| e.to_string()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no reply within 5 s".into()),
        };
        match reply {
            Ok(r) if r.ok || r.state == Some(CaseState::Accepted) => return,
            Ok(r) => last = format!("{r:?}"),
            Err(e) => last = e,
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// What the audit found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Cases stored on the ingest stream by the load.
    pub sent: usize,
    /// Of those, routed (a decision on `case.<id>.routed`).
    pub routed: usize,
    /// Cases with more than one decision.
    pub duplicated: usize,
    /// Cases sent and never routed.
    pub lost: usize,
    /// Routed cases whose department copies are missing, repeated, or differ from the decision.
    pub copies_wrong: usize,
    /// Routed cases without exactly one record holding exactly one `routed` entry.
    pub records_wrong: usize,
    /// Cases accepted (as the acceptor asked).
    pub accepted: usize,
    /// Accepted cases without exactly one `accepted` entry and one `case.<id>.accepted` event.
    pub accepted_wrong: usize,
}

impl Outcome {
    /// True when nothing was lost, duplicated or done twice.
    pub fn clean(&self) -> bool {
        self.routed == self.sent
            && self.duplicated == 0
            && self.lost == 0
            && self.copies_wrong == 0
            && self.records_wrong == 0
            && self.accepted_wrong == 0
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sent {}, routed {}, duplicated {}, lost {}, department copies wrong {}, records wrong {}, \
             accepted {} (wrong {})",
            self.sent,
            self.routed,
            self.duplicated,
            self.lost,
            self.copies_wrong,
            self.records_wrong,
            self.accepted,
            self.accepted_wrong
        )
    }
}

/// Waits (bounded by `within`) until every case `sent` is routed and has its record, then
/// checks each as the module says.
pub async fn audit(js: &jetstream::Context, sent: &[String], accepted: &[String], within: Duration) -> Outcome {
    let sent_set: HashSet<&str> = sent.iter().map(String::as_str).collect();
    let deadline = tokio::time::Instant::now() + within;
    // Decisions, by case id.
    let decisions = loop {
        let all = read_stream(js, STREAM_CASES, "case.*.routed", sent.len()).await;
        let mut by_case: HashMap<String, Vec<jetstream::Message>> = HashMap::new();
        for msg in all {
            let id = msg.subject.split('.').nth(1).unwrap_or_default().to_owned();
            by_case.entry(id).or_default().push(msg);
        }
        let routed = sent_set.iter().filter(|id| by_case.contains_key(**id)).count();
        if routed == sent.len() || tokio::time::Instant::now() > deadline {
            break by_case;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut outcome = Outcome { sent: sent.len(), accepted: accepted.len(), ..Default::default() };
    for id in sent {
        match decisions.get(id).map(Vec::len) {
            None => outcome.lost += 1,
            Some(1) => outcome.routed += 1,
            Some(_) => {
                outcome.routed += 1;
                outcome.duplicated += 1;
            }
        }
    }

    // Department copies: each department of the decision once, the decision's bytes exactly
    // (they are stored after the decision, so wait for them too).
    outcome.copies_wrong = settle(deadline, async || {
        let wrong = wrong_copies(js, sent, &decisions).await;
        (wrong, wrong == 0)
    })
    .await;

    // The case book: one record per case, one `routed` entry; accepted exactly once.
    let store = js.get_key_value(BUCKET_CASES).await.expect("the cases bucket");
    let accepted_set: HashSet<&str> = accepted.iter().map(String::as_str).collect();
    // Timeline events are sent from the record's outbox just after it is stored.
    let accepted_count = settle(deadline, async || {
        let mut count: HashMap<String, usize> = HashMap::new();
        for msg in read_stream(js, STREAM_CASES, "case.*.accepted", 0).await {
            *count.entry(msg.subject.split('.').nth(1).unwrap_or_default().to_owned()).or_default() += 1;
        }
        let all = accepted_set.iter().all(|id| count.contains_key(*id));
        (count, all)
    })
    .await;
    for id in sent {
        let record = loop {
            let record = store
                .get(id.replace(':', "="))
                .await
                .ok()
                .flatten()
                .and_then(|v| serde_json::from_slice::<serde_json::Value>(&v).ok());
            if record.is_some() || tokio::time::Instant::now() > deadline {
                break record;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let events: Vec<String> = record
            .as_ref()
            .and_then(|r| r["record"]["timeline"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|e| e["event"].as_str().map(str::to_owned))
            .collect();
        if events.iter().filter(|e| *e == "routed").count() != 1 {
            outcome.records_wrong += 1;
        }
        if accepted_set.contains(id.as_str())
            && (events.iter().filter(|e| *e == "accepted").count() != 1 || accepted_count.get(id).copied() != Some(1))
        {
            outcome.accepted_wrong += 1;
        }
    }
    outcome
}

/// Runs `check` until it says done or `deadline` passes; its last value.
async fn settle<T>(deadline: tokio::time::Instant, mut check: impl AsyncFnMut() -> (T, bool)) -> T {
    loop {
        let (value, done) = check().await;
        if done || tokio::time::Instant::now() > deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Routed cases whose department copies are missing, repeated, or not the decision's bytes.
async fn wrong_copies(
    js: &jetstream::Context,
    sent: &[String],
    decisions: &HashMap<String, Vec<jetstream::Message>>,
) -> usize {
    let mut copies_by_case: HashMap<String, Vec<(String, bytes::Bytes)>> = HashMap::new();
    for msg in read_stream(js, STREAM_ROUTED, "routed.dept.>", 0).await {
        let Ok(event) = serde_json::from_slice::<serde_json::Value>(&msg.payload) else { continue };
        if event["type"] != wire::TYPE_CASE_ROUTED {
            continue;
        }
        let case_id = event["data"]["case_id"].as_str().unwrap_or_default().to_owned();
        let department = msg.subject.split('.').nth(2).unwrap_or_default().to_owned();
        copies_by_case.entry(case_id).or_default().push((department, msg.payload.clone()));
    }
    let mut wrong = 0;
    for id in sent {
        let Some([decision]) = decisions.get(id).map(Vec::as_slice) else { continue };
        let routed: CloudEvent<RoutedCase> = serde_json::from_slice(&decision.payload).expect("a stored decision");
        let mut expected: Vec<&str> = routed.data.decision.departments.iter().map(|d| d.id.as_str()).collect();
        let copies = copies_by_case.get(id).map(Vec::as_slice).unwrap_or_default();
        let mut got: Vec<&str> = copies.iter().map(|(d, _)| d.as_str()).collect();
        expected.sort_unstable();
        got.sort_unstable();
        if expected != got || copies.iter().any(|(_, body)| body != &decision.payload) {
            wrong += 1;
        }
    }
    wrong
}
