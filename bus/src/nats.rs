//! NATS and JetStream plumbing: the streams the bus needs, provisioned idempotently with their
//! byte limits ([`StorageLimits`]), and the publishing conventions every component follows
//! (`Nats-Msg-Id` from the event id, dead letters that keep the original bytes, or a bounded
//! excerpt of oversized ones, with the reason in headers).
//!
//! Case reports arrive on one stream per kind of source system ([`ingest_stream`]): JetStream
//! drops a repeated `Nats-Msg-Id` within a stream's duplicate window whatever the subject, so a
//! system allowed to publish on `ingest.<system>.>` only can reserve ids in its own stream only.

use std::time::Duration;

use async_nats::HeaderMap;
use std::future::Future;

use async_nats::jetstream::{self, consumer, context::PublishAckFuture, kv, stream};
use bytes::Bytes;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use linkbus_wire::{SourceSystem, subjects};

pub use crate::limits::StorageLimits;
pub use crate::names::*;

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
/// Header with the original message's size, bytes, on a dead letter that keeps an excerpt.
pub const HEADER_ORIGINAL_SIZE: &str = "Linkbus-Original-Size";
/// Header with the stream that still holds the original of an excerpt…
pub const HEADER_ORIGINAL_STREAM: &str = "Linkbus-Original-Stream";
/// …and its sequence there.
pub const HEADER_ORIGINAL_SEQUENCE: &str = "Linkbus-Original-Seq";
/// How much of an oversized message a dead letter keeps.
pub const EXCERPT_BYTES: usize = 4 * 1024;

/// The ingest stream of `system`'s case reports.
pub fn ingest_stream(system: SourceSystem) -> &'static str {
    match system {
        SourceSystem::Emergency => STREAM_INGEST_EMERGENCY,
        SourceSystem::Commercial => STREAM_INGEST_COMMERCIAL,
        SourceSystem::PublicService => STREAM_INGEST_PUBLIC_SERVICE,
        SourceSystem::Management => STREAM_INGEST_MANAGEMENT,
    }
}

/// The stream of linkbus's that stores what is published on `subject`, if any.
pub fn stream_of(subject: &str) -> Option<String> {
    let (first, rest) = subject.split_once('.')?;
    let stream = match first {
        "ingest" => ingest_stream(SourceSystem::parse(rest.split('.').next()?)?),
        "routed" => STREAM_ROUTED,
        "case" => STREAM_CASES,
        "deadletter" => STREAM_DEADLETTER,
        "volunteer" if subject.ends_with(".offer") || subject.ends_with(".offer_closed") => STREAM_OFFERS,
        "$KV" => return rest.split('.').next().map(|bucket| format!("KV_{bucket}")),
        _ => return None,
    };
    Some(stream.to_owned())
}

/// How the bus's streams are set up.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// JetStream's duplicate window: an event id seen again within it is dropped.
    pub duplicate_window: Duration,
    /// How long messages are kept.
    pub max_age: Duration,
    /// Replicas per stream (1 on a single server, 3 in a cluster).
    pub replicas: usize,
    /// Byte limits of every stream and bucket.
    pub storage: StorageLimits,
}

impl Default for StreamSettings {
    /// Ten minutes' duplicate window, a week's retention, one replica, the default limits.
    fn default() -> Self {
        Self {
            duplicate_window: Duration::from_secs(10 * 60),
            max_age: Duration::from_secs(7 * 24 * 3600),
            replicas: 1,
            storage: StorageLimits::default(),
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
    /// JetStream has no room to reserve a stream's or bucket's byte limit.
    #[error(
        "cannot provision {name} with its limit of {mib} MiB ([storage]): JetStream has not that much room left \
         (its max_file_store, less what the other streams reserve). Lower the limits in [storage], or give \
         JetStream a larger store; see docs/operations.md, \"Storage\" ({source})"
    )]
    NoRoom {
        /// Stream or bucket name.
        name: String,
        /// Its limit, MiB.
        mib: i64,
        /// The JetStream error.
        #[source]
        source: async_nats::Error,
    },
    /// The single ingest stream of earlier versions still holds reports no router acknowledged.
    #[error(
        "stream {LEGACY_STREAM_INGEST} (of an earlier linkbus) still holds {unrouted} case reports no router has \
         acknowledged: run the earlier version until linkbus_router_ingest_backlog_messages is 0, then start this \
         one, which replaces it with one stream per kind of source system"
    )]
    LegacyIngest {
        /// Reports not acknowledged by a router.
        unrouted: u64,
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

impl BusError {
    fn provision(name: &str, limit: i64, source: impl Into<async_nats::Error>) -> Self {
        let source = source.into();
        let no_room =
            std::iter::successors(Some(&*source as &(dyn std::error::Error + 'static)), |e| e.source()).any(|e| {
                let code = match e.downcast_ref::<jetstream::context::CreateStreamError>().map(|e| e.kind()) {
                    Some(jetstream::context::CreateStreamErrorKind::JetStream(js)) => Some(js.error_code()),
                    _ => e.downcast_ref::<jetstream::Error>().map(jetstream::Error::error_code),
                };
                code == Some(jetstream::ErrorCode::STORAGE_RESOURCES_EXCEEDED)
            });
        if no_room {
            Self::NoRoom { name: name.to_owned(), mib: limit / (1024 * 1024), source }
        } else {
            Self::Provision { name: name.to_owned(), source }
        }
    }
}

/// Creates or updates every stream and bucket the bus uses, each with its byte limit. Safe to
/// call from every process at every start: the result is the same however many times it runs.
///
/// A stream at its limit refuses new messages (`DiscardPolicy::New`: nothing a reader has not
/// read is ever dropped to make room) but offers and dead letters, which drop their oldest (an
/// offer lives minutes; refused input must never block routing). The single ingest stream of
/// earlier versions is deleted first once its routers have acknowledged all of it.
pub async fn provision(js: &jetstream::Context, settings: &StreamSettings) -> Result<(), BusError> {
    retire_legacy_ingest(js).await?;
    let ingest_subjects = SourceSystem::ALL.map(|s| format!("ingest.{s}.>"));
    let mut streams: Vec<(&str, Vec<String>, String, stream::DiscardPolicy)> = SourceSystem::ALL
        .into_iter()
        .zip(ingest_subjects)
        .map(|(system, subject)| {
            let description = format!("case reports from {system} systems");
            (ingest_stream(system), vec![subject], description, stream::DiscardPolicy::New)
        })
        .collect();
    let owned = |filters: &[&str]| filters.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    streams.extend([
        (
            STREAM_ROUTED,
            owned(&[subjects::ROUTED_ALL]),
            "routed cases, per department and community".to_owned(),
            stream::DiscardPolicy::New,
        ),
        (
            STREAM_OFFERS,
            owned(&[subjects::OFFERS, subjects::OFFERS_CLOSED]),
            "offers to volunteers and their closing".to_owned(),
            stream::DiscardPolicy::Old,
        ),
        (STREAM_CASES, owned(&[subjects::CASES_ALL]), "case timeline events".to_owned(), stream::DiscardPolicy::New),
        (
            STREAM_DEADLETTER,
            owned(&[subjects::DEADLETTER_ALL]),
            "refused input with the reason".to_owned(),
            stream::DiscardPolicy::Old,
        ),
    ]);
    for (name, filters, description, discard) in streams {
        let max_bytes = settings.storage.stream_bytes(name);
        let config = stream::Config {
            name: name.to_owned(),
            description: Some(format!("linkbus: {description}")),
            subjects: filters,
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            duplicate_window: settings.duplicate_window,
            max_age: settings.max_age,
            max_bytes,
            discard,
            num_replicas: settings.replicas,
            ..Default::default()
        };
        js.create_or_update_stream(config).await.map_err(|e| BusError::provision(name, max_bytes, e))?;
    }
    let buckets = [
        (BUCKET_VOLUNTEERS, "volunteers' live position, availability and skills"),
        (BUCKET_CASES, "case records of the closed loop"),
    ];
    for (bucket, description) in buckets {
        // Live state: kept until replaced or deleted, however old.
        provision_bucket(js, bucket, description, Duration::ZERO, settings).await?;
    }
    provision_objects(js, OBJECTS_SNAPSHOTS, "routers' snapshots of the volunteer index", settings).await
}

/// Creates or updates an object store by its backing stream `OBJ_<bucket>` (at most
/// [`StorageLimits::bucket_bytes`]), configured as async-nats's `create_object_store` would.
async fn provision_objects(
    js: &jetstream::Context,
    bucket: &str,
    description: &str,
    settings: &StreamSettings,
) -> Result<(), BusError> {
    let subjects = vec![format!("$O.{bucket}.C.>"), format!("$O.{bucket}.M.>")];
    provision_backing(js, bucket, backing_stream(format!("OBJ_{bucket}"), description, subjects), settings).await
}

/// What the backing streams of KV buckets and object stores share: file storage, rollups and
/// direct gets allowed, new messages refused when full.
fn backing_stream(name: String, description: &str, subjects: Vec<String>) -> stream::Config {
    stream::Config {
        name,
        description: Some(format!("linkbus: {description}")),
        subjects,
        storage: stream::StorageType::File,
        allow_rollup: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    }
}

/// Creates or updates `bucket`'s backing stream `config` with `settings`' byte limit and replicas.
async fn provision_backing(
    js: &jetstream::Context,
    bucket: &str,
    config: stream::Config,
    settings: &StreamSettings,
) -> Result<(), BusError> {
    let max_bytes = settings.storage.bucket_bytes(bucket);
    let config = stream::Config { max_bytes, num_replicas: settings.replicas, ..config };
    js.create_or_update_stream(config).await.map_err(|e| BusError::provision(bucket, max_bytes, e))?;
    Ok(())
}

/// Deletes the single ingest stream of earlier versions ([`LEGACY_STREAM_INGEST`], `ingest.>`,
/// whose subjects the per-system streams take over) if it exists and its durable consumers (the
/// routers') have acknowledged every message; refuses to start while it holds reports not
/// routed yet, or any at all when no durable consumer read it.
async fn retire_legacy_ingest(js: &jetstream::Context) -> Result<(), BusError> {
    let legacy_err = |e: async_nats::Error| BusError::Provision { name: LEGACY_STREAM_INGEST.to_owned(), source: e };
    let stream = match js.get_stream(LEGACY_STREAM_INGEST).await {
        Ok(stream) => stream,
        Err(e)
            if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(js)
            if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
        {
            return Ok(());
        }
        Err(e) => return Err(legacy_err(e.into())),
    };
    let mut unrouted = None::<u64>;
    let mut consumers = stream.consumers();
    while let Some(info) = consumers.next().await {
        let info = info.map_err(|e| legacy_err(e.into()))?;
        if info.config.durable_name.is_some() {
            let behind = info.num_pending + info.num_ack_pending as u64;
            unrouted = Some(unrouted.unwrap_or(0).max(behind));
        }
    }
    let unrouted = unrouted.unwrap_or(stream.cached_info().state.messages);
    if unrouted > 0 {
        return Err(BusError::LegacyIngest { unrouted });
    }
    js.delete_stream(LEGACY_STREAM_INGEST).await.map_err(|e| legacy_err(e.into()))?;
    tracing::info!(stream = LEGACY_STREAM_INGEST, "deleted the single ingest stream of an earlier version: all routed");
    Ok(())
}

/// Creates or updates a KV bucket (one value per key; values older than `max_age` expire, none
/// when it is zero; at most [`StorageLimits::bucket_bytes`], then new keys are refused) by its
/// backing stream `KV_<bucket>`, with `settings`' replicas,
/// configured as async-nats's `create_key_value` would: that call first queries the account and
/// cannot parse the reply of nats-server 2.9 (Debian's version).
pub async fn provision_bucket(
    js: &jetstream::Context,
    bucket: &str,
    description: &str,
    max_age: Duration,
    settings: &StreamSettings,
) -> Result<(), BusError> {
    let config = stream::Config {
        max_messages_per_subject: 1,
        max_age,
        deny_delete: true,
        ..backing_stream(format!("KV_{bucket}"), description, vec![format!("$KV.{bucket}.>")])
    };
    provision_backing(js, bucket, config, settings).await
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
    follow_bucket_with(store, ">", 0, ready, shutdown, Each(apply)).await;
}

/// Follows the keys of a KV bucket matching `keys` (a subject filter of keys: `>` for all)
/// until `shutdown`, as `follower` wants them ([`BucketFollower`]); `ready` is cancelled once
/// the snapshot is in ([`BucketFollower::caught_up`] returned). With `after` above 0 the
/// follower holds the bucket as it was at that revision already, and the snapshot is only the
/// entries stored after it.
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
    after: u64,
    ready: &CancellationToken,
    shutdown: &CancellationToken,
    mut follower: F,
) {
    // Stream sequence of the last entry handed over (or held already); 0 before the first.
    let mut last_seen = after;
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
    let headers = deadletter_headers(&letter);
    publish_with(js, subjects::deadletter(letter.stage), headers, letter.payload).await
}

/// Where a message that is still in a stream is stored.
#[derive(Debug, Clone, Copy)]
pub struct Stored<'a> {
    /// The stream.
    pub stream: &'a str,
    /// Its sequence there.
    pub sequence: u64,
}

/// Publishes a dead letter of an oversized message that `original` still holds: the first
/// [`EXCERPT_BYTES`] of it as the payload, its size and where it is stored in headers, so that
/// it is never stored twice (`linkbus deadletter replay` reads it back from there).
pub async fn publish_deadletter_excerpt(
    js: &jetstream::Context,
    letter: DeadLetter<'_>,
    original: Stored<'_>,
) -> Result<PublishAckFuture, BusError> {
    let mut headers = deadletter_headers(&letter);
    headers.insert(HEADER_ORIGINAL_SIZE, letter.payload.len().to_string().as_str());
    headers.insert(HEADER_ORIGINAL_STREAM, original.stream);
    headers.insert(HEADER_ORIGINAL_SEQUENCE, original.sequence.to_string().as_str());
    let excerpt = letter.payload.slice(..letter.payload.len().min(EXCERPT_BYTES));
    publish_with(js, subjects::deadletter(letter.stage), headers, excerpt).await
}

fn deadletter_headers(letter: &DeadLetter<'_>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", letter.msg_id);
    headers.insert(HEADER_STAGE, letter.stage);
    headers.insert(HEADER_REASON, header_safe(letter.reason).as_str());
    headers.insert(HEADER_REASON_CODE, letter.code);
    headers.insert(HEADER_ORIGINAL_SUBJECT, header_safe(letter.original_subject).as_str());
    if let Some(id) = letter.original_msg_id {
        headers.insert(HEADER_ORIGINAL_ID, header_safe(id).as_str());
    }
    headers
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
    use super::*;

    #[test]
    fn every_subject_maps_to_its_stream() {
        assert_eq!(stream_of("ingest.emergency.fire").as_deref(), Some(STREAM_INGEST_EMERGENCY));
        assert_eq!(stream_of("ingest.public_service.x").as_deref(), Some(STREAM_INGEST_PUBLIC_SERVICE));
        assert_eq!(stream_of("ingest.nowhere.x"), None);
        assert_eq!(stream_of("routed.dept.a.b").as_deref(), Some(STREAM_ROUTED));
        assert_eq!(stream_of("routed.dept.a.b.c").as_deref(), Some(STREAM_ROUTED));
        assert_eq!(stream_of("volunteer.v1.offer").as_deref(), Some(STREAM_OFFERS));
        assert_eq!(stream_of("volunteer.v1.answer"), None);
        assert_eq!(stream_of("$KV.linkbus_cases.x").as_deref(), Some("KV_linkbus_cases"));
        assert_eq!(stream_of("deadletter.ingest").as_deref(), Some(STREAM_DEADLETTER));
        for system in SourceSystem::ALL {
            assert_eq!(stream_of(&subjects::ingest(system, "x")).as_deref(), Some(ingest_stream(system)));
        }
    }

    #[test]
    fn header_values_are_one_bounded_line() {
        assert_eq!(header_safe("a\r\nb"), "a  b");
        let long = "字".repeat(1000);
        let cut = header_safe(&long);
        assert!(cut.len() <= 1024 && cut.chars().all(|c| c == '字'));
    }
}
