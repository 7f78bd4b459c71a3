//! The raw NATS floor of `linkbus-bench load`: two forwarders that do nothing but decode a case
//! report's JSON and encode it again, so that what linkbus adds on top of NATS can be told from
//! what NATS itself costs on the same machine in the same run.
//!
//! - **core**: a plain subscription on `benchfloor.core.in.<id>`, republished on
//!   `benchfloor.core.out.<id>`; nothing stored, nothing acknowledged.
//! - **JetStream**: stream `BENCHFLOOR_IN` (`benchfloor.js.in.>`) read by a durable pull consumer
//!   with explicit acks, each output published to stream `BENCHFLOOR_OUT`
//!   (`benchfloor.js.out.>`) with a `Nats-Msg-Id` and its ack awaited before the input is acked,
//!   as the router does, with the router's default batch and concurrency (256). It publishes
//!   one output per event where linkbus stores three or more (decision, department, community,
//!   offers).
//!
//! The forwarders run in the `linkbus-bench load` process, each on a connection of its own; their
//! streams are created at the start and deleted at the end.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt as _;
use linkbus_bus::nats;
use linkbus_wire::{CaseReport, CloudEvent};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Where the core forwarder listens (`<CORE_IN>.<id>`).
pub const CORE_IN: &str = "benchfloor.core.in";
/// Where the core forwarder publishes (`<CORE_OUT>.<id>`).
pub const CORE_OUT: &str = "benchfloor.core.out";
/// Where the JetStream forwarder reads (`<JETSTREAM_IN>.<id>`), stored in [`STREAM_IN`].
pub const JETSTREAM_IN: &str = "benchfloor.js.in";
/// Where the JetStream forwarder publishes (`<JETSTREAM_OUT>.<id>`), stored in [`STREAM_OUT`].
pub const JETSTREAM_OUT: &str = "benchfloor.js.out";
/// What the floor's stream names begin with.
pub const STREAM_PREFIX: &str = "BENCHFLOOR_";
/// The JetStream forwarder's input stream.
pub const STREAM_IN: &str = "BENCHFLOOR_IN";
/// The JetStream forwarder's output stream.
pub const STREAM_OUT: &str = "BENCHFLOOR_OUT";
/// Messages the JetStream forwarder pulls per batch and handles concurrently (the router's
/// default `max_in_flight`).
const IN_FLIGHT: usize = 256;

/// Both forwarders, running.
pub struct Floors {
    js: jetstream::Context,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Floors {
    /// Creates the floor's streams (anew) and starts both forwarders on connections to `url`.
    pub async fn start(url: &str) -> anyhow::Result<Self> {
        let core = crate::load::connect(url).await?;
        let js = jetstream::new(crate::load::connect(url).await?);
        for (name, subject) in [(STREAM_IN, JETSTREAM_IN), (STREAM_OUT, JETSTREAM_OUT)] {
            // Left over from an interrupted run: start empty.
            let _ = js.delete_stream(name).await;
            js.create_stream(stream::Config {
                name: name.to_owned(),
                description: Some("linkbus bench: raw JetStream floor".into()),
                subjects: vec![format!("{subject}.>")],
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .with_context(|| format!("cannot create stream {name}"))?;
        }
        let input = js.get_stream(STREAM_IN).await.context("cannot open the floor's input stream")?;
        let consumer: consumer::PullConsumer = input
            .create_consumer(consumer::pull::Config {
                durable_name: Some("benchfloor".into()),
                ack_policy: consumer::AckPolicy::Explicit,
                max_ack_pending: 20_000,
                ..Default::default()
            })
            .await
            .context("cannot create the floor's consumer")?;
        let shutdown = CancellationToken::new();
        let subscription = core.subscribe(format!("{CORE_IN}.>")).await?;
        core.flush().await?;
        let tasks = vec![
            tokio::spawn(forward_core(core, subscription, shutdown.clone())),
            tokio::spawn(forward_jetstream(js.clone(), consumer, shutdown.clone())),
        ];
        Ok(Self { js, shutdown, tasks })
    }

    /// Stops both forwarders and deletes their streams.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        for name in [STREAM_IN, STREAM_OUT] {
            if let Err(e) = self.js.delete_stream(name).await {
                tracing::warn!(stream = name, error = %e, "cannot delete a floor stream");
            }
        }
    }
}

/// Decodes a case report and encodes it again: all the work a floor does. `None` for what does
/// not decode (the bench sends none).
fn reencode(payload: &[u8]) -> Option<(String, bytes::Bytes)> {
    let event: CloudEvent<CaseReport> = serde_json::from_slice(payload).ok()?;
    let body = serde_json::to_vec(&event).ok()?;
    Some((event.id, body.into()))
}

async fn forward_core(client: async_nats::Client, mut input: async_nats::Subscriber, shutdown: CancellationToken) {
    loop {
        let msg = tokio::select! {
            () = shutdown.cancelled() => return,
            msg = input.next() => match msg { Some(msg) => msg, None => return },
        };
        let Some((id, body)) = reencode(&msg.payload) else { continue };
        if let Err(e) = client.publish(format!("{CORE_OUT}.{id}"), body).await {
            tracing::warn!(error = %e, "core floor cannot publish");
        }
    }
}

async fn forward_jetstream(js: jetstream::Context, consumer: consumer::PullConsumer, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        let messages = match consumer.stream().max_messages_per_batch(IN_FLIGHT).messages().await {
            Ok(messages) => messages,
            Err(e) => {
                tracing::warn!(error = %e, "JetStream floor cannot pull; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        messages
            .take_until(shutdown.cancelled())
            .filter_map(|m| std::future::ready(m.ok()))
            .for_each_concurrent(IN_FLIGHT, |msg| {
                let js = &js;
                async move {
                    let Some((id, body)) = reencode(&msg.payload) else {
                        let _ = msg.ack().await;
                        return;
                    };
                    let stored = match nats::publish(js, format!("{JETSTREAM_OUT}.{id}"), &id, body).await {
                        Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    match stored {
                        Ok(()) => {
                            let _ = msg.ack().await;
                        }
                        Err(e) => tracing::warn!(error = %e, "JetStream floor cannot publish; left for redelivery"),
                    }
                }
            })
            .await;
    }
}
