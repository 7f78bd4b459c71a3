//! `linkbus replay FILE`: publishes a data file's cases to a running linkbus, paced or as fast
//! as JetStream takes them, then waits for each to come out routed (`case.<id>.routed`) or
//! dead-lettered, and reports the count of each and the end-to-end throughput.
//!
//! Formats, by extension: `.csv` is an SF 311 export (`linkbus_adapters::sf311`); `.jsonl` /
//! `.ndjson` holds one `org.linkbus.case.reported` CloudEvent per line. A record the adapter
//! cannot turn into a case is published to `deadletter.adapter` with the reason, and counted.
//!
//! With `--outcomes real` (SF 311 only) each routed case then lives what its record says — the
//! responsible department's acceptance and closure at the record's times ÷ `--speed`, replayed
//! on `replay.action` and marked so on the timeline (`crate::outcomes`).

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream;
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use linkbus_adapters::sf311;
use linkbus_bus::nats::{self, DeadLetter};
use linkbus_wire::subjects;
use linkbus_wire::{CaseReport, CloudEvent};
use serde::Serialize;

use crate::outcomes::{OutcomeSummary, RealOutcomes};

/// How to replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Cases per second; `None` publishes as fast as JetStream acknowledges.
    pub rate: Option<f64>,
    /// How long to wait, after the last publish, for outcomes still outstanding.
    pub wait: Duration,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Replay each SF 311 request's real outcome at this speed-up (real seconds per replayed
    /// second, > 0); `None` only routes.
    pub real_outcomes: Option<f64>,
}

/// What became of a replay.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReplaySummary {
    /// Records read from the file.
    pub records: usize,
    /// Records the adapter refused (sent to `deadletter.adapter`).
    pub refused_by_adapter: usize,
    /// Cases published and stored as new.
    pub published: usize,
    /// Cases JetStream already had (same event id within the duplicate window): not routed again.
    pub duplicates: usize,
    /// Published cases seen routed.
    pub routed: usize,
    /// Published cases the router dead-lettered.
    pub dead_lettered: usize,
    /// Published cases with no outcome by the end of the wait.
    pub missing: usize,
    /// Seconds from the first publish to the last outcome.
    pub seconds: f64,
    /// `published / seconds`: cases per second end to end through NATS.
    pub cases_per_second: f64,
    /// With `--outcomes real`: what the replayed outcomes came to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcomes: Option<OutcomeSummary>,
}

enum Item {
    /// A case, with its SF 311 row when it came from one.
    Case(Box<CloudEvent<CaseReport>>, Option<Box<sf311::Row>>),
    Refused {
        reason: String,
        raw: String,
        record: usize,
    },
}

fn load(path: &Path) -> anyhow::Result<Vec<Item>> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
    let items = match ext.as_str() {
        "csv" => sf311::read(std::io::BufReader::new(file))
            .map(|r| match r {
                Ok(c) => Item::Case(Box::new(c.event), Some(Box::new(c.row))),
                Err(e) => Item::Refused { reason: e.to_string(), raw: e.raw, record: e.record },
            })
            .collect(),
        "jsonl" | "ndjson" => {
            let text = std::io::read_to_string(file).with_context(|| format!("cannot read {}", path.display()))?;
            text.lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
                .map(|(n, line)| match serde_json::from_str::<CloudEvent<CaseReport>>(line) {
                    Ok(ev) => Item::Case(Box::new(ev), None),
                    Err(e) => {
                        Item::Refused { reason: format!("line {}: {e}", n + 1), raw: line.to_owned(), record: n + 1 }
                    }
                })
                .collect()
        }
        other => anyhow::bail!("{}: unknown format {other:?} (expected .csv for SF 311, or .jsonl)", path.display()),
    };
    Ok(items)
}

/// Replays `path` into the bus on `client`.
pub async fn replay(
    client: &async_nats::Client,
    path: &Path,
    options: &ReplayOptions,
) -> anyhow::Result<ReplaySummary> {
    let items = load(path)?;
    let enactor = match options.real_outcomes {
        None => None,
        Some(speed) => {
            anyhow::ensure!(speed.is_finite() && speed > 0.0, "--speed {speed}: must be a number above 0");
            let has_rows = items.iter().all(|i| matches!(i, Item::Case(_, Some(_)) | Item::Refused { .. }));
            anyhow::ensure!(has_rows, "{}: only an SF 311 .csv carries real outcomes", path.display());
            Some(RealOutcomes::new(client.clone(), speed))
        }
    };
    let tz = jiff::tz::TimeZone::get(sf311::TIME_ZONE)?;
    let js = jetstream::new(client.clone());

    // Subscribe before publishing, so no outcome can be missed.
    let mut routed_sub = client.subscribe(subjects::case_event("*", "routed")).await?;
    let mut dead_sub = client.subscribe(subjects::deadletter("ingest")).await?;
    client.flush().await?;

    let bar = if options.progress { ProgressBar::new(items.len() as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} cases  {per_sec}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );

    let started = Instant::now();
    let mut t = Tracker {
        summary: ReplaySummary { records: items.len(), ..Default::default() },
        pending: HashSet::new(),
        bar,
        last_outcome: started,
        enactor,
    };
    let mut acks = FuturesUnordered::new();

    for (n, item) in items.into_iter().enumerate() {
        if let Some(rate) = options.rate {
            let due = started + Duration::from_secs_f64(n as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        match item {
            Item::Case(event, row) => {
                if let (Some(enactor), Some(row)) = (t.enactor.as_mut(), row) {
                    enactor.plan(event.id.clone(), &row, &tz);
                }
                let subject = subjects::ingest(event.data.system, &event.data.category);
                let payload = Bytes::from(serde_json::to_vec(&*event)?);
                // Pending from before the publish: the outcome can arrive before the ack does.
                t.pending.insert(event.id.clone());
                let ack = nats::publish(&js, subject.clone(), &event.id, payload.clone()).await?;
                let id = event.id;
                acks.push(async move { (Resend { id, subject, payload }, ack.await) });
            }
            Item::Refused { reason, raw, record } => {
                let msg_id = format!("adapter:{}:{record}", path.display());
                let letter = DeadLetter {
                    stage: "adapter",
                    reason: &reason,
                    code: "invalid",
                    original_subject: &path.display().to_string(),
                    original_msg_id: None,
                    msg_id: &msg_id,
                    payload: Bytes::from(raw),
                };
                nats::publish_deadletter(&js, letter).await?.await?;
                t.summary.refused_by_adapter += 1;
                t.bar.inc(1);
            }
        }
        // Keep at most a few thousand publishes unacknowledged.
        while acks.len() >= 4096 {
            t.collect_ack(&js, acks.next().await).await?;
        }
        t.drain_outcomes(&mut routed_sub, &mut dead_sub);
    }
    while let Some(result) = acks.next().await {
        t.collect_ack(&js, Some(result)).await?;
    }

    let deadline = tokio::time::Instant::now() + options.wait;
    while !t.pending.is_empty() {
        tokio::select! {
            Some(msg) = routed_sub.next() => t.outcome(&msg, true),
            Some(msg) = dead_sub.next() => t.outcome(&msg, false),
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    t.drain_outcomes(&mut routed_sub, &mut dead_sub);
    t.bar.finish_and_clear();
    let mut summary = t.summary;
    summary.missing = t.pending.len();
    summary.seconds = t.last_outcome.duration_since(started).as_secs_f64();
    if summary.seconds > 0.0 {
        summary.cases_per_second = summary.published as f64 / summary.seconds;
    }
    if let Some(enactor) = t.enactor {
        summary.outcomes = Some(enactor.finish().await);
    }
    Ok(summary)
}

type AckResult = (Resend, Result<jetstream::publish::PublishAck, jetstream::context::PublishError>);

/// A published case, kept until JetStream acknowledges it, to publish again if it does not.
struct Resend {
    id: String,
    subject: String,
    payload: Bytes,
}

/// How many times a case whose publish was not acknowledged is published again (under the same
/// `Nats-Msg-Id`, so a copy JetStream did store is dropped as a duplicate) before the replay
/// gives up: a loaded server can take longer than the ack timeout.
const REPUBLISH: usize = 3;

/// A replay under way: what is counted so far, what is awaited.
struct Tracker {
    summary: ReplaySummary,
    /// Cases published and not yet seen routed or dead-lettered.
    pending: HashSet<String>,
    bar: ProgressBar,
    last_outcome: Instant,
    /// With `--outcomes real`: acts out the records of the cases seen routed.
    enactor: Option<RealOutcomes>,
}

impl Tracker {
    async fn collect_ack(&mut self, js: &jetstream::Context, result: Option<AckResult>) -> anyhow::Result<()> {
        let Some((resend, mut ack)) = result else { return Ok(()) };
        let mut republished = false;
        for _ in 0..REPUBLISH {
            if ack.is_ok() {
                break;
            }
            let again = nats::publish(js, resend.subject.clone(), &resend.id, resend.payload.clone()).await?;
            ack = again.await;
            republished = true;
        }
        let id = resend.id;
        let ack = ack.with_context(|| format!("JetStream did not store case {id}"))?;
        // A duplicate after a republish is most likely this replay's own first copy, stored
        // though its ack was lost: still awaited as routed.
        if ack.duplicate && !republished {
            self.summary.duplicates += 1;
            self.pending.remove(&id);
            self.bar.inc(1);
        } else {
            self.summary.published += 1;
        }
        Ok(())
    }

    fn drain_outcomes(&mut self, routed: &mut async_nats::Subscriber, dead: &mut async_nats::Subscriber) {
        use futures::FutureExt;
        while let Some(Some(msg)) = routed.next().now_or_never() {
            self.outcome(&msg, true);
        }
        while let Some(Some(msg)) = dead.next().now_or_never() {
            self.outcome(&msg, false);
        }
    }

    /// Counts one outcome message if it is about a case this replay sent. A routed case is named
    /// by its subject `case.<id>.routed`; a dead letter by its original `Nats-Msg-Id` header.
    fn outcome(&mut self, msg: &async_nats::Message, routed: bool) {
        let id = if routed {
            msg.subject.split('.').nth(1).map(str::to_owned)
        } else {
            msg.headers.as_ref().and_then(|h| h.get(nats::HEADER_ORIGINAL_ID)).map(|v| v.as_str().to_owned())
        };
        let Some(id) = id.filter(|id| self.pending.remove(id)) else { return };
        let now = Instant::now();
        if routed {
            self.summary.routed += 1;
            if let Some(enactor) = self.enactor.as_mut() {
                enactor.routed(&id, msg, now.into());
            }
        } else {
            self.summary.dead_lettered += 1;
        }
        self.bar.inc(1);
        self.last_outcome = now;
    }
}

impl std::fmt::Display for ReplaySummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "records read          {}", self.records)?;
        writeln!(f, "refused by adapter    {}  (kept on deadletter.adapter)", self.refused_by_adapter)?;
        writeln!(f, "published             {}", self.published)?;
        writeln!(
            f,
            "already on the bus    {}  (same event id within the duplicate window: not routed again)",
            self.duplicates
        )?;
        writeln!(f, "routed                {}", self.routed)?;
        writeln!(f, "dead-lettered         {}  (kept on deadletter.ingest)", self.dead_lettered)?;
        writeln!(f, "missing               {}", self.missing)?;
        write!(f, "end to end            {:.0} cases/s over {:.2} s", self.cases_per_second, self.seconds)?;
        match &self.outcomes {
            Some(outcomes) => write!(f, "\n{outcomes}"),
            None => Ok(()),
        }
    }
}
