//! The case book of one process: the bucket, the in-memory records and their indexes, the rules.
//! Its operations are in the sibling modules, one concept each (see the [module map](super)).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_nats::jetstream::{self, kv};
use jiff::Timestamp;
use linkbus_wire::{CaseRecord, CaseReport, VolunteerChoice};
use tokio::sync::broadcast;

use super::config::BookConfig;
use super::index::BookIndex;
use super::stored::Cached;
use crate::lifecycle::Ladder;
use crate::metrics::CaseMetrics;

/// The case book of one linkbus process.
pub struct CaseBook {
    /// JetStream, to publish outboxes and read the routed cases.
    pub(super) js: jetstream::Context,
    /// The `linkbus_cases` bucket.
    pub(super) store: kv::Store,
    /// Every record, with the bucket revision it was stored at. Boxed: a record is 1.4 KB, and
    /// growing the map moves every value, which held a runtime thread for milliseconds at a time
    /// once tens of thousands of records were in.
    pub(super) cache: RwLock<HashMap<String, Box<Cached>>>,
    /// What is due, unsent and open where, over `cache`; locked after it, never before.
    pub(super) index: RwLock<BookIndex>,
    /// Held while looking for a new case's duplicates and merging them.
    pub(super) merging: tokio::sync::Mutex<()>,
    /// The bucket revision the follower has brought the cache up to (`opening` waits on it).
    pub(super) followed: tokio::sync::watch::Sender<u64>,
    /// The bucket of the merge lock every replica shares, once opened (`opening`).
    pub(super) merge_lock: tokio::sync::OnceCell<kv::Store>,
    /// (CloudEvents source, the source's own id) of each record's own report → its case id.
    pub(super) by_source: RwLock<HashMap<(String, String), String>>,
    /// The departments' escalation ladder.
    pub(super) ladder: Ladder,
    /// Who is offered a case next when a volunteer declines or lets an offer expire.
    pub(super) volunteers: Arc<dyn NextVolunteers>,
    /// The rules, the consumer's name, the tick.
    pub(super) config: BookConfig,
    /// What the loop counts.
    pub(super) metrics: CaseMetrics,
    /// Every change of a record, for [`CaseBook::subscribe`].
    pub(super) changes: broadcast::Sender<CaseRecord>,
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
