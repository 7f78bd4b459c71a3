//! The record store: reading a record from the bucket, revision-checked transitions, the
//! in-memory copy kept in step (from this replica's writes and the bucket's follower), and
//! publishing and clearing outboxes.

use std::sync::Arc;

use async_nats::jetstream::kv;
use bytes::Bytes;
use jiff::Timestamp;
use linkbus_bus::nats;
use linkbus_bus::sync::read;
use linkbus_wire::CaseRecord;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::error::{ActError, store_err};
use super::handle::CaseBook;
use super::outbox;
use super::stored::{Cached, Stored, case_id_of, key};
use crate::lifecycle::{Outcome, Refused};

impl CaseBook {
    pub(super) async fn load(&self, case_id: &str) -> Result<(Stored, u64), ActError> {
        let entry = self.store.entry(key(case_id)).await.map_err(store_err)?;
        let entry = entry
            .filter(|e| e.operation == kv::Operation::Put)
            .ok_or_else(|| ActError::NotFound(case_id.to_owned()))?;
        let stored: Stored = serde_json::from_slice(&entry.value).map_err(|e| ActError::Store(e.to_string()))?;
        Ok((stored, entry.revision))
    }

    /// Applies `f` to the case and stores the result if the case did not change meanwhile (else
    /// reads it again and retries); then sends what the transition produced.
    ///
    /// The first try starts from this replica's copy, when it holds the case: a write that the
    /// revision check lets through was computed on the record as it is, so reading it from the
    /// bucket first would cost a round trip for nothing. What ends in no write (nothing to do, or
    /// refused) is decided on the bucket's record, read afresh, as is every retry.
    pub(super) async fn transact(
        &self,
        case_id: &str,
        mut f: impl FnMut(&CaseRecord) -> Result<Option<Outcome>, Refused>,
    ) -> Result<CaseRecord, ActError> {
        let mut cached = read(&self.cache).get(case_id).map(|c| (c.stored.clone(), c.revision));
        for _ in 0..32 {
            let from_cache = cached.take();
            let fresh = from_cache.is_none();
            let (stored, revision) = match from_cache {
                Some(held) => held,
                None => self.load(case_id).await?,
            };
            let outcome = match f(&stored.record) {
                Ok(Some(outcome)) => outcome,
                _ if !fresh => continue,
                Ok(None) => return Ok(stored.record),
                Err(refused) => return Err(refused.into()),
            };
            let outcome = outcome.after(&stored.record);
            let mut outbox = stored.outbox;
            outbox.extend(outbox::messages(&self.config.source, &stored.record, &outcome));
            let next = Stored { record: outcome.record, outbox };
            let body = Bytes::from(serde_json::to_vec(&next).map_err(|e| ActError::Store(e.to_string()))?);
            match self.store.update(key(case_id), body, revision).await {
                Ok(revision) => {
                    self.metrics.transition(&stored.record, &next.record);
                    self.remember(next.clone(), revision);
                    self.flush(case_id, &next, revision).await;
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
    pub(super) fn remember(&self, stored: Stored, revision: u64) {
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
        let mut index = self.index.write().unwrap_or_else(|p| p.into_inner());
        if old.is_none() && !index.unarchive(&stored.record.case_id, revision) {
            return;
        }
        let old = old.map(|c| &c.stored);
        index.update(old, &stored);
        let changed = old.is_none_or(|old| old.record != stored.record);
        if changed && self.changes.receiver_count() > 0 {
            // No receiver is not an error: nobody is watching.
            let _ = self.changes.send(stored.record.clone());
        }
        if self.archivable(&stored, Timestamp::now()) {
            // Read at start-up (or changed by another replica) long after it was closed.
            cache.remove(&stored.record.case_id);
            index.archive(&stored, revision);
            return;
        }
        cache.insert(stored.record.case_id.clone(), Box::new(Cached { stored, revision }));
    }

    /// Whether the cache (or the archive) holds the record under bucket key `key` at `revision`
    /// or later.
    pub(super) fn has_revision(&self, key: &str, revision: u64) -> bool {
        let id = case_id_of(key);
        read(&self.cache).get(&id).map(|c| c.revision).or_else(|| read(&self.index).archived_revision(&id))
            >= Some(revision)
    }

    /// Publishes the outbox of `written` (the case as stored at `revision`), then removes what
    /// was published from the stored record, starting from `written` (a round trip fewer than
    /// reading it back; the revision check says when it changed meanwhile, and then it is read
    /// again). What fails stays for the next tick.
    pub(super) async fn flush(&self, case_id: &str, written: &Stored, revision: u64) {
        let outbox = &written.outbox;
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
        let mut known = Some((written.clone(), revision));
        for _ in 0..32 {
            let (mut stored, revision) = match known.take() {
                Some(written) => written,
                None => match self.load(case_id).await {
                    Ok(current) => current,
                    Err(_) => return,
                },
            };
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

    /// Follows the bucket into the cache, noting in `followed` how far; `ready` once the current
    /// content is in.
    pub(super) async fn follow(
        self: Arc<Self>,
        ready: CancellationToken,
        shutdown: CancellationToken,
    ) -> Result<(), ActError> {
        nats::follow_bucket(&self.store, &ready, &shutdown, |entry| {
            if entry.operation == kv::Operation::Put && !self.has_revision(&entry.key, entry.revision) {
                match serde_json::from_slice::<Stored>(&entry.value) {
                    Ok(stored) => self.remember(stored, entry.revision),
                    Err(e) => warn!(key = %entry.key, error = %e, "unreadable case record"),
                }
            }
            self.followed.send_if_modified(|followed| {
                let later = entry.revision > *followed;
                *followed = (*followed).max(entry.revision);
                later
            });
            std::future::ready(())
        })
        .await;
        Ok(())
    }
}
