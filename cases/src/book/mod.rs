//! The case book: every case record, kept in the `linkbus_cases` KV bucket and moved only by
//! revision-checked updates, so two linkbus replicas never both move the same case.
//!
//! Each replica follows the bucket into an in-memory copy (for listing, deadlines and duplicate
//! detection) and runs the same loops: open a record for every `case.<id>.routed`, answer
//! departments' requests on `action.<department>` and volunteers' on `volunteer.<id>.answer`,
//! and fire what is due (deadlines, offer expiries). A transition stores the new record together
//! with the messages it must send (an outbox); they are published under stable `Nats-Msg-Id`s and
//! then cleared, so a crash between the two re-sends them and JetStream drops the copies.
//!
//! One concept per module; each uses only those listed before it, never one after:
//! - `error`: [`ActError`]; `config`: [`BookConfig`];
//! - `outbox`: the messages a transition sends; `stored`: the bucket's value per case and its
//!   key; `search`: finding a case by its ids, address, reporter or phone, and its repeats
//!   ([`SearchQuery`]); `index`: what is due, unsent and open where, the listing, the search;
//! - `handle`: the [`CaseBook`] itself and the [`NextVolunteers`] it asks;
//! - `archive`: the hot set, closed cases leaving memory after `closed_retention`;
//! - `store`: revision-checked transitions, the in-memory copy, publishing outboxes;
//! - `read`: listing by pages and lookups, in memory or from the bucket ([`CaseFilter`],
//!   [`Cursor`], [`CasePage`], [`involves`]); `stats`: [`DepartmentStats`] and the supervision
//!   figures the index keeps ([`crate::supervision`]);
//! - `actions`: acting on a case and answering offers;
//! - the loops: `opening` (a record per routed case, merging duplicates), `requests` (NATS
//!   requests from departments and volunteers), `deadlines` (the ticker), and `archive`'s sweep;
//! - `case_store`: [`CaseStore`], the trait the API and the adapters take the book as;
//! - here: [`CaseBook::start`], which starts them.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream;
use linkbus_bus::nats;
use linkbus_bus::sync::read;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use error::store_err;
use index::BookIndex;
use requests::Requests;

use crate::lifecycle::Ladder;
use crate::metrics::CaseMetrics;

mod actions;
mod archive;
mod case_store;
mod config;
mod deadlines;
mod error;
mod handle;
mod index;
mod opening;
mod outbox;
mod read;
mod requests;
mod search;
mod stats;
mod store;
mod stored;

pub use case_store::CaseStore;
pub use config::BookConfig;
pub use error::ActError;
pub use handle::{CaseBook, NextVolunteers};
pub use opening::OPEN_IN_FLIGHT;
pub use read::{CaseFilter, CasePage, Cursor, RepeatAddress, involves};
pub use search::{MAX_QUERY_CHARS, MIN_PHONE_DIGITS, MIN_QUERY_CHARS, REPEAT_DAYS, REPEAT_RADIUS_M, SearchQuery};
pub use stats::DepartmentStats;

/// Changes of case records held for subscribers ([`CaseBook::subscribe`]) not yet read by them.
const CHANGES_CAPACITY: usize = 4096;

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
            index: RwLock::new(BookIndex::new(config.time_zone.clone())),
            merging: tokio::sync::Mutex::new(()),
            followed: tokio::sync::watch::Sender::new(0),
            merge_lock: tokio::sync::OnceCell::new(),
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
        // The follower outlives the book's writers: an opening waits for it to reach the
        // record it stored, also while the opener finishes its cases in flight at shutdown.
        let writers_done = CancellationToken::new();
        tasks.push(spawn("follower", Box::pin(book.clone().follow(ready.clone(), writers_done.clone()))));
        tokio::time::timeout(Duration::from_secs(60), ready.cancelled()).await.map_err(|_| {
            writers_done.cancel();
            ActError::Store("timed out reading the cases bucket".into())
        })?;
        let writers = [
            spawn("opener", Box::pin(book.clone().open_routed(shutdown.clone()))),
            spawn("actions", Box::pin(book.clone().serve(Requests::Actions, shutdown.clone()))),
            spawn("answers", Box::pin(book.clone().serve(Requests::Answers, shutdown.clone()))),
            spawn("replays", Box::pin(book.clone().serve(Requests::Replays, shutdown.clone()))),
            spawn("ticker", Box::pin(book.clone().tick_loop(shutdown.clone()))),
            spawn("archiver", Box::pin(book.clone().archive_loop(shutdown))),
        ];
        tasks.push(tokio::spawn(async move {
            futures::future::join_all(writers).await;
            writers_done.cancel();
        }));
        info!(cases = read(&book.cache).len(), "case book open");
        Ok((book, tasks))
    }
}
