//! The one shape of an adapter, as vector's sources have it: a configuration table
//! ([`AdapterConfig`], `[adapters.<name>]`) that is checked when the file is read and `build`s
//! the running part ([`Adapter`]), which serves HTTP routes and may take messages on a NATS
//! subject. The registry ([`crate::registry`]) builds every enabled adapter this one way.
//!
//! Building is in two steps because the service starts before the API that serves the routes:
//! [`AdapterConfig::build`] gets what the service shares ([`BuildContext`]) and the NATS listener
//! starts at once ([`Adapter::listen`]); [`Adapter::routes`] gets what the API shares
//! ([`RouteContext`]) when the API is assembled.

use std::future::Future;
use std::sync::{Arc, RwLock};

use async_nats::jetstream;
use axum::Router;
use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use linkbus_bus::nats::BusError;
use linkbus_bus::sync::{read, write};
use linkbus_matching::areas::Gazetteer;
use linkbus_wire::SourceSystem;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::intake::{Gate, Intake};
use crate::kind::AdapterKind;
use crate::vocabulary::{CategoryMap, MapError};

/// One `[adapters.<name>]` table.
pub trait AdapterConfig: Send + Sync {
    /// Which adapter this table configures.
    fn kind(&self) -> AdapterKind;
    /// Whether the adapter runs (`enabled = false` turns any adapter off).
    fn enabled(&self) -> bool;
    /// Checks the table, enabled or not; the error names the field.
    fn validate(&self) -> Result<(), ConfigError>;
    /// Its category maps (source vocabulary → bus categories), for checking against a region.
    fn category_maps(&self) -> Vec<&CategoryMap>;
    /// Builds the running adapter.
    fn build<'a>(&'a self, cx: &'a BuildContext) -> BoxFuture<'a, Result<Arc<dyn Adapter>, BuildError>>;
}

/// A running adapter.
pub trait Adapter: Send + Sync + 'static {
    /// Which adapter it is.
    fn kind(&self) -> AdapterKind;
    /// Its HTTP routes, served beside the API's.
    fn routes(self: Arc<Self>, cx: &RouteContext<'_>) -> Router;
    /// Starts taking messages over NATS (until `shutdown`), if it does: subscribed when this
    /// returns. Without a subject, nothing.
    fn listen(
        self: Arc<Self>,
        _client: async_nats::Client,
        _shutdown: CancellationToken,
    ) -> BoxFuture<'static, Result<Option<JoinHandle<()>>, BuildError>> {
        Box::pin(std::future::ready(Ok(None)))
    }
}

/// What the service gives every adapter it builds.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// What reports are published through; each adapter takes its own
    /// ([`Intake::for_adapter`]).
    pub intake: Intake,
    /// JetStream, for an adapter's own state (commerce's delivery ids).
    pub js: jetstream::Context,
    /// The largest case report the routers accept (`[router] max_payload_bytes`): a message
    /// whose case would be larger is refused at the door, not dead-lettered after a 202.
    pub max_report_bytes: usize,
    /// Replicas and byte limits of the buckets an adapter makes (commerce's delivery ids).
    pub streams: linkbus_bus::nats::StreamSettings,
    /// The region's communities and geocode table, which place CAP areas named by geocode.
    pub gazetteer: Arc<LiveGazetteer>,
}

/// The gazetteer of the region version in force: swapped when a new version is (linkbus's region
/// follower does), so that CAP areas named by geocode are placed with the codes of the version
/// the routers use.
#[derive(Debug)]
pub struct LiveGazetteer(RwLock<Arc<Gazetteer>>);

impl LiveGazetteer {
    /// Starting with `gazetteer`.
    pub fn new(gazetteer: Gazetteer) -> Self {
        Self(RwLock::new(Arc::new(gazetteer)))
    }

    /// The one in force: held for a whole message.
    pub fn current(&self) -> Arc<Gazetteer> {
        read(&self.0).clone()
    }

    /// Puts `gazetteer` in force.
    pub fn replace(&self, gazetteer: Gazetteer) {
        *write(&self.0) = Arc::new(gazetteer);
    }
}

/// What the API gives every adapter's routes.
#[derive(Clone)]
pub struct RouteContext<'a> {
    /// Who the callers' keys belong to, and the residents' rate limit.
    pub gate: Arc<dyn Gate>,
    /// The region's categories, which an adapter may offer as its own (Open311's services).
    pub categories: &'a [RegionCategory],
}

/// The state of an adapter's route handlers: the adapter, and the API's [`Gate`].
pub(crate) type Routed<A> = (Arc<A>, Arc<dyn Gate>);

/// A category of the region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionCategory {
    /// The bus category id.
    pub id: String,
    /// Its name, e.g. `Street Defects`.
    pub name: String,
    /// The kind of source system whose cases it is for.
    pub system: SourceSystem,
}

/// A `[adapters.<name>]` table that cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A field out of its range.
    #[error("adapters.{adapter}.{field}: {reason}")]
    Field {
        /// The adapter.
        adapter: AdapterKind,
        /// The field, e.g. `priority` or `platforms[meals].id`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A category map with a target that is not a bus category.
    #[error("adapters.{adapter}.{field}: {source}")]
    Categories {
        /// The adapter.
        adapter: AdapterKind,
        /// The map, e.g. `categories` or `platforms[meals].categories`.
        field: String,
        /// What is wrong with it.
        #[source]
        source: MapError,
    },
}

impl ConfigError {
    /// `field` of `adapter`'s table is wrong: `reason`.
    pub fn field(adapter: AdapterKind, field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Field { adapter, field: field.into(), reason: reason.into() }
    }
}

/// An adapter that cannot start.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Its table does not check.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Its state on the bus cannot be created.
    #[error("the {adapter} adapter: {source}")]
    Bus {
        /// The adapter.
        adapter: AdapterKind,
        /// The bus's error.
        #[source]
        source: BusError,
    },
    /// Its KV bucket cannot be opened.
    #[error("the {adapter} adapter cannot open the bucket {bucket}: {source}")]
    Bucket {
        /// The adapter.
        adapter: AdapterKind,
        /// The bucket.
        bucket: &'static str,
        /// JetStream's error.
        #[source]
        source: jetstream::context::KeyValueError,
    },
    /// Its NATS subject cannot be subscribed to.
    #[error("the {adapter} adapter cannot subscribe to {subject}: {source}")]
    Subscribe {
        /// The adapter.
        adapter: AdapterKind,
        /// The subject.
        subject: String,
        /// NATS's error.
        #[source]
        source: async_nats::SubscribeError,
    },
}

/// Checks an adapter's configured CloudEvents `source` (a URI reference starting with `/`, at
/// most 128 bytes) and default priority (1 to 4).
pub(crate) fn check_source_and_priority(adapter: AdapterKind, source: &str, priority: u8) -> Result<(), ConfigError> {
    if !source.starts_with('/') || source.len() > 128 {
        let reason = format!("{source:?} must start with '/' (a URI reference), at most 128 bytes");
        return Err(ConfigError::field(adapter, "source", reason));
    }
    if !(1..=4).contains(&priority) {
        return Err(ConfigError::field(adapter, "priority", format!("{priority} must be 1 to 4")));
    }
    Ok(())
}

/// Checks a category map of `adapter`'s table, `field` naming it.
pub(crate) fn check_categories(adapter: AdapterKind, field: &str, map: &CategoryMap) -> Result<(), ConfigError> {
    map.validate().map_err(|source| ConfigError::Categories { adapter, field: field.to_owned(), source })
}

/// Takes the messages of `subject` for `adapter`, in `queue_group` so replicas share them,
/// until `shutdown`: each message answered by `answer`, whose reply is sent when the message is a
/// request. Subscribed when this returns.
pub(crate) async fn listen<F, Fut>(
    adapter: AdapterKind,
    client: async_nats::Client,
    subject: String,
    queue_group: &'static str,
    shutdown: CancellationToken,
    answer: F,
) -> Result<Option<JoinHandle<()>>, BuildError>
where
    F: Fn(async_nats::Message) -> Fut + Send + 'static,
    Fut: Future<Output = Bytes> + Send,
{
    let mut subscriber = client
        .queue_subscribe(subject.clone(), queue_group.to_owned())
        .await
        .map_err(|source| BuildError::Subscribe { adapter, subject: subject.clone(), source })?;
    info!(%adapter, %subject, "adapter listening on NATS");
    Ok(Some(tokio::spawn(async move {
        loop {
            let msg = tokio::select! {
                _ = shutdown.cancelled() => break,
                msg = subscriber.next() => match msg { Some(m) => m, None => break },
            };
            let reply_to = msg.reply.clone();
            let reply = answer(msg).await;
            if let Some(to) = reply_to
                && let Err(e) = client.publish(to, reply).await
            {
                warn!(%adapter, error = %e, "cannot reply to a NATS request");
            }
        }
        let _ = subscriber.unsubscribe().await;
    })))
}
