//! `linkbus deadletter list | replay`: the operator's view of `LINKBUS_DEADLETTER`, where every
//! refused input is kept with its original bytes and the reason (`linkbus_bus::nats::DeadLetter`).
//!
//! - [`list`] reads the dead letters that match a [`Filter`] (stage, reason code, original
//!   subject with NATS wildcards, time range, stream sequences), each with its stage, reason,
//!   time, size, original subject and whether it was replayed.
//! - [`replay`] publishes the chosen ones, byte for byte, to the subject they first arrived on,
//!   once the cause is fixed (a limit raised, a receiver back, a mapping added). Each replay is
//!   recorded in the KV bucket [`BUCKET_REPLAYS`] under the dead letter's sequence, and a dead
//!   letter recorded there is not replayed again: running the same replay twice sends nothing the
//!   second time. The replay's `Nats-Msg-Id` is derived from that sequence too
//!   (`<original Nats-Msg-Id>:replay:<sequence>`, which the router takes as the event's own id),
//!   so a replay interrupted between publishing and recording is dropped by JetStream when it is
//!   run again (within the duplicate window). An input refused again goes back to the dead
//!   letters, as a new one with the new reason. A dead letter that keeps only an excerpt of an
//!   oversized message is replayed from the original, read back from the stream that holds it.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, kv};
use futures::StreamExt;
use jiff::Timestamp;
use linkbus_bus::nats::{
    self, HEADER_ORIGINAL_ID, HEADER_ORIGINAL_SEQUENCE, HEADER_ORIGINAL_SIZE, HEADER_ORIGINAL_STREAM,
    HEADER_ORIGINAL_SUBJECT, HEADER_REASON, HEADER_REASON_CODE, HEADER_STAGE, STREAM_DEADLETTER, StreamSettings,
};
use serde::{Deserialize, Serialize};

/// KV bucket recording replayed dead letters, keyed by their stream sequence.
pub const BUCKET_REPLAYS: &str = "linkbus_deadletter_replays";
/// Header on a replayed message: the stream sequence of the dead letter it came from.
pub const HEADER_REPLAY_OF: &str = "Linkbus-Replay-Of";
/// How long one read of the stream waits for the next dead letter before giving up.
const READ_WAIT: Duration = Duration::from_secs(10);

/// Which dead letters to take; every field set must match.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Refused at this stage (`ingest`, `cases`, `volunteers`, `webhook`, `adapter`, …).
    pub stage: Option<String>,
    /// With this reason code (`malformed`, `too_large`, `undeliverable`, …).
    pub code: Option<String>,
    /// Arrived on a subject matching this NATS pattern (`*` one token, `>` the rest).
    pub subject: Option<String>,
    /// Dead-lettered at or after.
    pub since: Option<Timestamp>,
    /// Dead-lettered before.
    pub until: Option<Timestamp>,
    /// Only these stream sequences (all when empty).
    pub sequences: Vec<u64>,
}

impl Filter {
    fn matches(&self, letter: &Letter) -> bool {
        self.stage.as_ref().is_none_or(|s| *s == letter.stage)
            && self.code.as_ref().is_none_or(|c| *c == letter.code)
            && self.subject.as_ref().is_none_or(|p| subject_matches(p, &letter.subject))
            && self.since.is_none_or(|t| letter.time >= t)
            && self.until.is_none_or(|t| letter.time < t)
            && (self.sequences.is_empty() || self.sequences.contains(&letter.sequence))
    }
}

/// One dead letter.
#[derive(Debug, Clone, Serialize)]
pub struct Letter {
    /// Its sequence in `LINKBUS_DEADLETTER`: what `replay --seq` takes.
    pub sequence: u64,
    /// When it was dead-lettered.
    pub time: Timestamp,
    /// The stage that refused it.
    pub stage: String,
    /// The reason code.
    pub code: String,
    /// The reason, in words.
    pub reason: String,
    /// The subject the original arrived on, where a replay sends it.
    pub subject: String,
    /// The original's `Nats-Msg-Id`, if it had one.
    pub original_msg_id: Option<String>,
    /// Size of the original bytes.
    pub size: usize,
    /// Where the original is kept when the dead letter holds only an excerpt of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excerpt_of: Option<(String, u64)>,
    /// When and where it was replayed, if it was.
    pub replayed: Option<Replayed>,
    /// The original bytes.
    #[serde(skip)]
    pub payload: bytes::Bytes,
}

/// The record of one replay (the value in [`BUCKET_REPLAYS`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replayed {
    /// When.
    pub at: Timestamp,
    /// The stream that stored the replayed message.
    pub stream: String,
    /// Its sequence there.
    pub sequence: u64,
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReplaySummary {
    /// Dead letters that matched the filter.
    pub matched: usize,
    /// Sent to their original subject now.
    pub replayed: usize,
    /// Left alone: replayed before.
    pub already_replayed: usize,
    /// Could not be sent, with the reason (e.g. no stream stores that subject).
    pub failed: Vec<(u64, String)>,
}

impl std::fmt::Display for ReplaySummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "matched           {}", self.matched)?;
        writeln!(f, "replayed          {}", self.replayed)?;
        writeln!(f, "already replayed  {}  (not sent again)", self.already_replayed)?;
        write!(f, "failed            {}", self.failed.len())?;
        for (sequence, reason) in &self.failed {
            write!(f, "\n  #{sequence}: {reason}")?;
        }
        Ok(())
    }
}

/// Every dead letter matching `filter`, oldest first, with its replay record.
pub async fn list(js: &jetstream::Context, filter: &Filter) -> anyhow::Result<Vec<Letter>> {
    let replays = replays(js).await?;
    read(js, filter, replays.as_ref()).await
}

async fn read(js: &jetstream::Context, filter: &Filter, replays: Option<&kv::Store>) -> anyhow::Result<Vec<Letter>> {
    let stream = js.get_stream(STREAM_DEADLETTER).await.context("opening the dead-letter stream")?;
    let filter_subject =
        filter.stage.as_deref().map_or_else(|| "deadletter.>".to_owned(), linkbus_wire::subjects::deadletter);
    // An ephemeral consumer (not an ordered one: that is created lazily, and its pending count
    // would not say whether anything matches).
    let consumer: consumer::PullConsumer = stream
        .create_consumer(consumer::pull::Config {
            filter_subject,
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        })
        .await
        .context("reading the dead-letter stream")?;
    let mut letters = Vec::new();
    if consumer.cached_info().num_pending == 0 {
        return Ok(letters);
    }
    let mut messages = consumer.messages().await.context("reading the dead-letter stream")?;
    loop {
        let msg = match tokio::time::timeout(READ_WAIT, messages.next()).await {
            Ok(Some(Ok(msg))) => msg,
            Ok(Some(Err(e))) => return Err(e).context("reading the dead-letter stream"),
            Ok(None) => break,
            Err(_) => anyhow::bail!("the dead-letter stream stopped answering within {READ_WAIT:?}"),
        };
        let info = msg.info().map_err(|e| anyhow::anyhow!("a dead letter without stream metadata: {e}"))?;
        let (sequence, pending) = (info.stream_sequence, info.pending);
        let time = Timestamp::from_nanosecond(info.published.unix_timestamp_nanos()).unwrap_or(Timestamp::UNIX_EPOCH);
        let header = |name: &str| msg.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_owned());
        let letter = Letter {
            sequence,
            time,
            stage: header(HEADER_STAGE).unwrap_or_else(|| msg.subject.trim_start_matches("deadletter.").to_owned()),
            code: header(HEADER_REASON_CODE).unwrap_or_default(),
            reason: header(HEADER_REASON).unwrap_or_default(),
            subject: header(HEADER_ORIGINAL_SUBJECT).unwrap_or_default(),
            original_msg_id: header(HEADER_ORIGINAL_ID),
            size: header(HEADER_ORIGINAL_SIZE).and_then(|s| s.parse().ok()).unwrap_or(msg.payload.len()),
            excerpt_of: header(HEADER_ORIGINAL_STREAM)
                .zip(header(HEADER_ORIGINAL_SEQUENCE).and_then(|s| s.parse().ok())),
            replayed: match replays {
                Some(store) => replay_record(store, sequence).await?,
                None => None,
            },
            payload: msg.payload.clone(),
        };
        if filter.matches(&letter) {
            letters.push(letter);
        }
        if pending == 0 {
            break;
        }
    }
    Ok(letters)
}

/// Sends every dead letter matching `filter` that was not replayed before to its original
/// subject, and records each replay (in a bucket made with `settings`).
pub async fn replay(
    js: &jetstream::Context,
    filter: &Filter,
    settings: &StreamSettings,
) -> anyhow::Result<ReplaySummary> {
    nats::provision_bucket(js, BUCKET_REPLAYS, "dead letters replayed by an operator", Duration::ZERO, settings)
        .await
        .context("creating the replay record bucket")?;
    let store = js.get_key_value(BUCKET_REPLAYS).await.context("opening the replay record bucket")?;
    let letters = read(js, filter, Some(&store)).await?;
    let mut summary = ReplaySummary { matched: letters.len(), ..Default::default() };
    for letter in letters {
        if letter.replayed.is_some() {
            summary.already_replayed += 1;
            continue;
        }
        if letter.subject.is_empty() {
            summary.failed.push((letter.sequence, "the dead letter does not say where it arrived".into()));
            continue;
        }
        let payload = match original(js, &letter).await {
            Ok(payload) => payload,
            Err(e) => {
                summary.failed.push((letter.sequence, format!("{e:#}")));
                continue;
            }
        };
        let mut headers = HeaderMap::new();
        let of = letter.original_msg_id.as_deref().unwrap_or("deadletter");
        headers.insert("Nats-Msg-Id", format!("{of}:replay:{}", letter.sequence).as_str());
        headers.insert(HEADER_REPLAY_OF, letter.sequence.to_string().as_str());
        let sent = match js.publish_with_headers(letter.subject.clone(), headers, payload).await {
            Ok(ack) => ack.await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let ack = match sent {
            Ok(ack) => ack,
            Err(e) => {
                summary.failed.push((letter.sequence, format!("cannot publish to {}: {e}", letter.subject)));
                continue;
            }
        };
        let record = Replayed { at: Timestamp::now(), stream: ack.stream, sequence: ack.sequence };
        let body = serde_json::to_vec(&record).context("serialising a replay record")?;
        store
            .put(letter.sequence.to_string(), body.into())
            .await
            .with_context(|| format!("recording the replay of dead letter {}", letter.sequence))?;
        summary.replayed += 1;
    }
    Ok(summary)
}

/// The bytes a replay sends: the dead letter's, or, when it keeps an excerpt, the original's,
/// read back from the stream that holds it.
async fn original(js: &jetstream::Context, letter: &Letter) -> anyhow::Result<bytes::Bytes> {
    let Some((stream, sequence)) = &letter.excerpt_of else { return Ok(letter.payload.clone()) };
    let held = js.get_stream(stream).await.with_context(|| format!("opening {stream}, which holds the original"))?;
    let message = held
        .get_raw_message(*sequence)
        .await
        .with_context(|| format!("the original ({stream} #{sequence}) is no longer stored: only an excerpt is kept"))?;
    Ok(message.payload)
}

/// The replay record bucket, if it exists (it does once anything was replayed; a NATS failure
/// to say is an error, not "none").
async fn replays(js: &jetstream::Context) -> anyhow::Result<Option<kv::Store>> {
    match js.get_stream(format!("KV_{BUCKET_REPLAYS}")).await {
        Ok(_) => Ok(Some(js.get_key_value(BUCKET_REPLAYS).await.context("opening the replay record bucket")?)),
        Err(e)
            if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(js)
                if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
        {
            Ok(None)
        }
        Err(e) => Err(e).context("opening the replay record bucket"),
    }
}

async fn replay_record(store: &kv::Store, sequence: u64) -> anyhow::Result<Option<Replayed>> {
    let value = store.get(sequence.to_string()).await.context("reading the replay records")?;
    Ok(value.and_then(|v| serde_json::from_slice(&v).ok()))
}

/// One line per dead letter, for `linkbus deadletter list`.
pub fn line(letter: &Letter) -> String {
    let replayed = letter
        .replayed
        .as_ref()
        .map_or_else(String::new, |r| format!("  [replayed {} as {} #{}]", r.at, r.stream, r.sequence));
    format!(
        "#{:<6} {}  {:<10} {:<16} {:>7} B  {}  {}{replayed}",
        letter.sequence,
        letter.time.strftime("%Y-%m-%dT%H:%M:%SZ"),
        letter.stage,
        letter.code,
        letter.size,
        letter.subject,
        letter.reason
    )
}

/// True when `subject` matches the NATS `pattern` (`*` is one token, a final `>` one or more).
pub fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut tokens = subject.split('.');
    for p in pattern.split('.') {
        match (p, tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (p, Some(t)) if p == t => {}
            _ => return false,
        }
    }
    tokens.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::subject_matches;

    #[test]
    fn subject_patterns_match_as_nats_does() {
        assert!(subject_matches("ingest.>", "ingest.public_service.sewer_issues"));
        assert!(subject_matches("ingest.*.sewer_issues", "ingest.public_service.sewer_issues"));
        assert!(subject_matches("ingest.public_service.sewer_issues", "ingest.public_service.sewer_issues"));
        assert!(!subject_matches("ingest.*", "ingest.public_service.sewer_issues"));
        assert!(!subject_matches("ingest.>", "ingest"));
        assert!(!subject_matches("routed.>", "ingest.a.b"));
        assert!(!subject_matches("ingest.a.b.c", "ingest.a.b"));
    }
}
