//! NATS and JetStream plumbing: the streams the bus needs, provisioned idempotently, and the
//! publishing conventions every component follows (`Nats-Msg-Id` from the event id, dead
//! letters that keep the original bytes with the reason in headers).

use std::time::Duration;

use async_nats::HeaderMap;
use std::future::Future;

use async_nats::jetstream::{self, consumer, context::PublishAckFuture, kv, stream};
use bytes::Bytes;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use linkbus_wire::subjects;

/// Stream of case reports (`ingest.>`).
pub const STREAM_INGEST: &str = "LINKBUS_INGEST";
/// Stream of routed cases (`routed.>`).
pub const STREAM_ROUTED: &str = "LINKBUS_ROUTED";
/// Stream of volunteer offers (`volunteer.*.offer`).
pub const STREAM_OFFERS: &str = "LINKBUS_OFFERS";
/// Stream of case timeline events (`case.>`).
pub const STREAM_CASES: &str = "LINKBUS_CASES";
/// Stream of dead letters (`deadletter.>`).
pub const STREAM_DEADLETTER: &str = "LINKBUS_DEADLETTER";
/// KV bucket of volunteers' live state, keyed by volunteer id.
pub const BUCKET_VOLUNTEERS: &str = "linkbus_volunteers";
/// KV bucket of case records, keyed by case id (`:` written as `=`, which KV keys allow).
pub const BUCKET_CASES: &str = "linkbus_cases";

/// Header naming the pipeline stage that refused a dead letter.
pub const HEADER_STAGE: &str = "Linkbus-Stage";
/// Header with the human-readable reason a message was dead-lettered.
pub const HEADER_REASON: &str = "Linkbus-Reason";
/// Header with the short reason code (`malformed`, `invalid`, …).
pub const HEADER_REASON_CODE: &str = "Linkbus-Reason-Code";
/// Header with the subject the original message arrived on.
pub const HEADER_ORIGINAL_SUBJECT: &str = "Linkbus-Original-Subject";
/// Header with the original message's `Nats-Msg-Id`, when it had one.
pub const HEADER_ORIGINAL_ID: &str = "Linkbus-Original-Msg-Id";

/// How the bus's streams are set up.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// JetStream's duplicate window: an event id seen again within it is dropped.
    pub duplicate_window: Duration,
    /// How long messages are kept.
    pub max_age: Duration,
    /// Replicas per stream (1 on a single server, 3 in a cluster).
    pub replicas: usize,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            duplicate_window: Duration::from_secs(10 * 60),
            max_age: Duration::from_secs(7 * 24 * 3600),
            replicas: 1,
        }
    }
}

/// A failed bus operation.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// A stream or bucket could not be created or updated.
    #[error("cannot provision {name}: {source}")]
    Provision {
        /// Stream or bucket name.
        name: String,
        /// The JetStream error.
        #[source]
        source: async_nats::Error,
    },
    /// A publish was refused or not acknowledged.
    #[error("publish to {subject} failed: {source}")]
    Publish {
        /// The subject.
        subject: String,
        /// The JetStream error.
        #[source]
        source: async_nats::Error,
    },
}

/// Creates or updates every stream and bucket the bus uses. Safe to call from every process at
/// every start: the result is the same however many times it runs.
pub async fn provision(js: &jetstream::Context, settings: &StreamSettings) -> Result<(), BusError> {
    let streams = [
        (STREAM_INGEST, &[subjects::INGEST_ALL][..], "case reports from source systems"),
        (STREAM_ROUTED, &[subjects::ROUTED_ALL], "routed cases, per department and community"),
        (STREAM_OFFERS, &[subjects::OFFERS, subjects::OFFERS_CLOSED], "offers to volunteers and their closing"),
        (STREAM_CASES, &[subjects::CASES_ALL], "case timeline events"),
        (STREAM_DEADLETTER, &[subjects::DEADLETTER_ALL], "refused input with the reason"),
    ];
    for (name, filters, description) in streams {
        let config = stream::Config {
            name: name.to_owned(),
            description: Some(format!("linkbus: {description}")),
            subjects: filters.iter().map(|s| s.to_string()).collect(),
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            duplicate_window: settings.duplicate_window,
            max_age: settings.max_age,
            num_replicas: settings.replicas,
            ..Default::default()
        };
        js.create_or_update_stream(config)
            .await
            .map_err(|e| BusError::Provision { name: name.to_owned(), source: e.into() })?;
    }
    let buckets = [
        (BUCKET_VOLUNTEERS, "volunteers' live position, availability and skills"),
        (BUCKET_CASES, "case records of the closed loop"),
    ];
    for (bucket, description) in buckets {
        // Live state: kept until replaced or deleted, however old.
        provision_bucket(js, bucket, description, Duration::ZERO, settings.replicas).await?;
    }
    Ok(())
}

/// Creates or updates a KV bucket (one value per key; values older than `max_age` expire, none
/// when it is zero) by its backing stream `KV_<bucket>`,
/// configured as async-nats's `create_key_value` would: that call first queries the account and
/// cannot parse the reply of nats-server 2.9 (Debian's version).
pub async fn provision_bucket(
    js: &jetstream::Context,
    bucket: &str,
    description: &str,
    max_age: Duration,
    replicas: usize,
) -> Result<(), BusError> {
    let config = stream::Config {
        name: format!("KV_{bucket}"),
        description: Some(format!("linkbus: {description}")),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_age,
        storage: stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        num_replicas: replicas,
        ..Default::default()
    };
    js.create_or_update_stream(config)
        .await
        .map_err(|e| BusError::Provision { name: bucket.to_owned(), source: e.into() })?;
    Ok(())
}

/// What follows a KV bucket with [`follow_bucket_with`]: first the bucket's content as it was
/// when the follow began (a snapshot: the last entry of each key, deletes included; a key that
/// changes meanwhile may come twice, the later last), entry by entry, then
/// [`BucketFollower::caught_up`], then every later change in order.
///
/// By default the snapshot's entries are applied as changes are; a follower that would rather
/// load them in one go (e.g. bulk-load an index) collects them in
/// [`BucketFollower::snapshot_entry`] and loads them in [`BucketFollower::caught_up`].
pub trait BucketFollower: Send {
    /// One entry of the snapshot.
    fn snapshot_entry(&mut self, entry: kv::Entry) -> impl Future<Output = ()> + Send {
        self.apply(entry)
    }

    /// Every entry of the snapshot has been handed over (none, for an empty bucket).
    fn caught_up(&mut self) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }

    /// One change after the snapshot.
    fn apply(&mut self, entry: kv::Entry) -> impl Future<Output = ()> + Send;
}

/// [`BucketFollower`] of a closure that applies every entry alike.
struct Each<F>(F);

impl<F, Fut> BucketFollower for Each<F>
where
    F: FnMut(kv::Entry) -> Fut + Send,
    Fut: Future<Output = ()> + Send,
{
    fn apply(&mut self, entry: kv::Entry) -> impl Future<Output = ()> + Send {
        (self.0)(entry)
    }
}

/// Follows a KV bucket until `shutdown`: every current entry, then each change as it happens,
/// handed to `apply` in order. `ready` is cancelled once the current entries are in
/// ([`follow_bucket_with`]).
pub async fn follow_bucket<F, Fut>(store: &kv::Store, ready: &CancellationToken, shutdown: &CancellationToken, apply: F)
where
    F: FnMut(kv::Entry) -> Fut + Send,
    Fut: Future<Output = ()> + Send,
{
    follow_bucket_with(store, ">", ready, shutdown, Each(apply)).await;
}

/// Follows the keys of a KV bucket matching `keys` (a subject filter of keys: `>` for all)
/// until `shutdown`, as `follower` wants them ([`BucketFollower`]); `ready` is cancelled once
/// the snapshot is in ([`BucketFollower::caught_up`] returned).
///
/// It reads the bucket's stream (`KV_<bucket>`) with an ordered pull consumer, the last entry of
/// each key first (all of the stream when it keeps one entry per key, as linkbus's buckets do),
/// rather than through a KV watch. The snapshot ends at the first entry the
/// server says nothing follows (none at all for an empty bucket), or at the first whose stream
/// sequence reaches the stream's last one when the follow began: with the bucket changing
/// steadily there may never be nothing left to read. A broken read is resumed after the last
/// entry handed over.
pub async fn follow_bucket_with<F: BucketFollower>(
    store: &kv::Store,
    keys: &str,
    ready: &CancellationToken,
    shutdown: &CancellationToken,
    mut follower: F,
) {
    // Stream sequence of the last entry handed over; 0 before the first.
    let mut last_seen = 0u64;
    // The stream's last sequence when the follow began: the snapshot ends there at the latest.
    let mut snapshot_end = None;
    // Whether the stream keeps one message per key, so that reading all of it reads the last
    // entry of each key: nats-server 2.9 takes seconds to start a consumer delivering the last
    // message per subject of a million subjects (11 s, longer than a request waits).
    let mut history_of_one = false;
    let mut caught_up = false;
    let retry = || async {
        tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep(Duration::from_secs(1)) => true,
        }
    };
    loop {
        if snapshot_end.is_none() {
            match store.stream.get_info().await {
                Ok(info) => {
                    snapshot_end = Some(info.state.last_sequence);
                    history_of_one = info.config.max_messages_per_subject == 1;
                }
                Err(e) => {
                    tracing::warn!(bucket = %store.name, error = %e, "cannot read the bucket's stream; retrying");
                    if retry().await {
                        continue;
                    }
                    return;
                }
            }
        }
        let deliver_policy = match last_seen {
            0 if history_of_one => consumer::DeliverPolicy::All,
            0 => consumer::DeliverPolicy::LastPerSubject,
            seen => consumer::DeliverPolicy::ByStartSequence { start_sequence: seen + 1 },
        };
        // The whole bucket read whole is the whole stream: no filter then, which nats-server 2.9
        // would match against each of the stream's subjects when starting the consumer (seconds
        // at 10^6 keys); last per subject needs one.
        let whole = keys == ">" && deliver_policy != consumer::DeliverPolicy::LastPerSubject;
        let config = consumer::pull::OrderedConfig {
            filter_subject: if whole { String::new() } else { format!("{}{keys}", store.prefix) },
            deliver_policy,
            replay_policy: consumer::ReplayPolicy::Instant,
            ..Default::default()
        };
        let messages = match store.stream.create_consumer(config).await {
            Ok(consumer) => {
                if !caught_up && consumer.cached_info().num_pending == 0 {
                    caught_up = true;
                    follower.caught_up().await;
                    ready.cancel();
                }
                consumer.messages().await.map_err(async_nats::Error::from)
            }
            Err(e) => Err(e.into()),
        };
        let mut messages = match messages {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(bucket = %store.name, error = %e, "cannot read the bucket; retrying");
                if retry().await {
                    continue;
                }
                return;
            }
        };
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => return,
                message = messages.next() => message,
            };
            let message = match message {
                Some(Ok(message)) => message,
                Some(Err(e)) => {
                    tracing::warn!(bucket = %store.name, error = %e, "bucket read error; reading on");
                    break;
                }
                None => break,
            };
            let Some(entry) = entry_of(store, &message, caught_up) else { continue };
            last_seen = entry.revision;
            if caught_up {
                follower.apply(entry).await;
            } else {
                let last = entry.delta == 0 || snapshot_end.is_some_and(|end| entry.revision >= end);
                follower.snapshot_entry(entry).await;
                if last {
                    caught_up = true;
                    follower.caught_up().await;
                    ready.cancel();
                }
            }
        }
    }
}

/// The KV entry a message of the bucket's stream carries (`None` if it is not one).
fn entry_of(store: &kv::Store, message: &jetstream::Message, seen_current: bool) -> Option<kv::Entry> {
    let info = message
        .info()
        .map_err(|e| tracing::warn!(bucket = %store.name, error = %e, "bucket message without metadata; skipped"))
        .ok()?;
    let key = message.subject.strip_prefix(store.prefix.as_str())?.to_owned();
    let headers = message.headers.as_ref();
    let header = |name: &str| headers.and_then(|h| h.get(name)).map(|v| v.as_str());
    let operation = match (header("KV-Operation"), header("Nats-Marker-Reason")) {
        (Some("DEL"), _) | (None, Some("Remove")) => kv::Operation::Delete,
        (Some("PURGE"), _) | (None, Some("MaxAge" | "Purge")) => kv::Operation::Purge,
        _ => kv::Operation::Put,
    };
    Some(kv::Entry {
        bucket: store.name.clone(),
        key,
        value: message.payload.clone(),
        revision: info.stream_sequence,
        delta: info.pending,
        created: info.published,
        operation,
        seen_current,
    })
}

/// Publishes `payload` to a stream with `Nats-Msg-Id: msg_id`; the returned future resolves
/// when JetStream has stored it (or recognised it as a duplicate).
pub async fn publish(
    js: &jetstream::Context,
    subject: String,
    msg_id: &str,
    payload: Bytes,
) -> Result<PublishAckFuture, BusError> {
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", msg_id);
    headers.insert("Content-Type", "application/cloudevents+json");
    publish_with(js, subject, headers, payload).await
}

/// Publishes a dead letter: the original bytes as the payload, the reason in headers.
/// `msg_id` makes a retried dead letter a duplicate, not a second copy.
pub async fn publish_deadletter(js: &jetstream::Context, letter: DeadLetter<'_>) -> Result<PublishAckFuture, BusError> {
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", letter.msg_id);
    headers.insert(HEADER_STAGE, letter.stage);
    headers.insert(HEADER_REASON, header_safe(letter.reason).as_str());
    headers.insert(HEADER_REASON_CODE, letter.code);
    headers.insert(HEADER_ORIGINAL_SUBJECT, header_safe(letter.original_subject).as_str());
    if let Some(id) = letter.original_msg_id {
        headers.insert(HEADER_ORIGINAL_ID, header_safe(id).as_str());
    }
    publish_with(js, subjects::deadletter(letter.stage), headers, letter.payload).await
}

/// Publishes a dead letter ([`publish_deadletter`]) and waits until JetStream has stored it.
pub async fn store_deadletter(js: &jetstream::Context, letter: DeadLetter<'_>) -> Result<(), BusError> {
    let subject = subjects::deadletter(letter.stage);
    let ack = publish_deadletter(js, letter).await?;
    ack.await.map(|_| ()).map_err(|e| BusError::Publish { subject, source: e.into() })
}

/// One refused message, as [`publish_deadletter`] keeps it.
#[derive(Debug, Clone)]
pub struct DeadLetter<'a> {
    /// Pipeline stage that refused it (`ingest`, `volunteers`, …); the subject's last token.
    pub stage: &'a str,
    /// Why, in words.
    pub reason: &'a str,
    /// Why, as a short fixed code.
    pub code: &'a str,
    /// Where it arrived.
    pub original_subject: &'a str,
    /// Its `Nats-Msg-Id`, if it had one.
    pub original_msg_id: Option<&'a str>,
    /// Id for the dead letter itself, stable across retries.
    pub msg_id: &'a str,
    /// The original bytes, unchanged.
    pub payload: Bytes,
}

async fn publish_with(
    js: &jetstream::Context,
    subject: String,
    headers: HeaderMap,
    payload: Bytes,
) -> Result<PublishAckFuture, BusError> {
    js.publish_with_headers(subject.clone(), headers, payload)
        .await
        .map_err(|e| BusError::Publish { subject, source: e.into() })
}

/// Header values are one line of printable text: control characters become spaces and the
/// value is cut at 1 KiB, on a character boundary.
fn header_safe(value: &str) -> String {
    let out: String = value.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    linkbus_wire::truncated(out, 1024)
}

#[cfg(test)]
mod tests {
    use super::header_safe;

    #[test]
    fn header_values_are_one_bounded_line() {
        assert_eq!(header_safe("a\r\nb"), "a  b");
        let long = "字".repeat(1000);
        let cut = header_safe(&long);
        assert!(cut.len() <= 1024 && cut.chars().all(|c| c == '字'));
    }
}
