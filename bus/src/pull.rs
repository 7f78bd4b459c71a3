//! Consuming a JetStream pull consumer with a bounded read-ahead, and handing back on shutdown
//! what was pulled but not started.
//!
//! [`consume`] asks for messages itself, one pull request (a "batch") at a time, sized so that
//! it never holds more than [`Limits::ahead`] messages pulled but not started, and runs at most
//! [`Limits::in_flight`] handlers at once. When `shutdown` is cancelled it asks for nothing more,
//! starts nothing more, waits for the open pull request to end (within [`PULL_EXPIRES`]), naks
//! without delay every message it holds (JetStream hands each to another consumer of the same
//! durable at once; naked while the request was open, it would come back to this one), and
//! returns once the handlers under way have finished (each acks or naks its own message).
//!
//! [`consume_all`] does the same for several consumers sharing the handlers, in an [`Order`]:
//! the routers consume the four ingest streams so, emergency reports first.
//!
//! Why not async-nats's `consumer.stream()`: that keeps pull requests open ahead of time and
//! re-issues them as it is read, so what it has buffered cannot be handed back — naking it on
//! shutdown made the stream pull more while it was drained; left alone, it stays unacknowledged
//! until the consumer's ack wait.

use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use std::task::Poll;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::consumer::pull::Batch;
use async_nats::jetstream::{AckKind, Message};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// How long one pull request waits on the server for messages before it ends empty-handed. It
/// bounds how long [`consume`] waits, on shutdown, for the open request to end (what it brings
/// meanwhile is handed back), and how soon a lost request is noticed (async-nats gives up on
/// one 5 s after this).
pub const PULL_EXPIRES: Duration = Duration::from_secs(1);

/// How long [`consume`] waits before asking again after a pull request failed.
const RETRY_AFTER: Duration = Duration::from_millis(250);

/// How many messages [`consume`] handles and holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Messages handled concurrently (at least 1).
    pub in_flight: usize,
    /// Messages pulled but not started, at most, while running. A shutdown hands back these and
    /// what the pull request open at the time still brings (at most `ahead + in_flight` in all).
    pub ahead: usize,
}

/// What [`consume`] did, returned when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Consumed {
    /// Messages given to the handler.
    pub handled: u64,
    /// Messages pulled but not started when `shutdown` came, naked without delay.
    pub handed_back: u64,
    /// Pull requests made.
    pub pulls: u64,
}

/// In which order [`consume_all`] starts the messages it holds from several consumers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// The first consumer's first, then the second's…: a message of an earlier consumer starts
    /// at the next free handler, ahead of every message of a later one.
    Priority,
    /// In the order they arrived, whatever the consumer.
    Arrival,
}

/// Pulls from `consumer` and runs `handle` on each message within `limits` until `shutdown`;
/// then hands back what was pulled but not started (see the module's doc) and returns once every
/// handler has finished. `handle` acks or naks its message itself.
pub async fn consume<F, Fut>(
    consumer: &PullConsumer,
    limits: Limits,
    shutdown: &CancellationToken,
    mut handle: F,
) -> Consumed
where
    F: FnMut(Message) -> Fut,
    Fut: Future<Output = ()>,
{
    consume_all(std::slice::from_ref(consumer), limits, Order::Arrival, shutdown, |_, msg| handle(msg)).await
}

/// One consumer of [`consume_all`]: what it holds and its open pull request.
struct Source<'a> {
    consumer: &'a PullConsumer,
    /// Pulled, not started: with the order of arrival across every source.
    held: VecDeque<(u64, Message)>,
    batch: Option<Batch>,
    retry_at: Option<Instant>,
}

/// [`consume`] of several consumers at once, sharing `limits.in_flight` handlers, each with its
/// own read-ahead of `limits.ahead`, started in `order`; `handle` is given the index of the
/// consumer a message came from. With [`Order::Priority`] a message of the first consumer waits
/// for one handler to finish, however many of the others' are held.
pub async fn consume_all<F, Fut>(
    consumers: &[PullConsumer],
    limits: Limits,
    order: Order,
    shutdown: &CancellationToken,
    mut handle: F,
) -> Consumed
where
    F: FnMut(usize, Message) -> Fut,
    Fut: Future<Output = ()>,
{
    let in_flight = limits.in_flight.max(1);
    // Ask again once half the read-ahead is free (or, without read-ahead, a handler is).
    let refill_at = limits.ahead.div_ceil(2).max(1);
    let mut done = Consumed::default();
    let mut sources: Vec<Source<'_>> = consumers
        .iter()
        .map(|consumer| Source { consumer, held: VecDeque::new(), batch: None, retry_at: None })
        .collect();
    let mut arrivals = 0u64;
    let mut running = FuturesUnordered::new();
    let mut stop_by: Option<Instant> = None;
    loop {
        while running.len() < in_flight && !shutdown.is_cancelled() {
            let Some(next) = next_to_start(&sources, order) else { break };
            let Some((_, msg)) = sources[next].held.pop_front() else { break };
            done.handled += 1;
            running.push(handle(next, msg));
        }
        let open = sources.iter().any(|s| s.batch.is_some());
        if shutdown.is_cancelled() {
            if stop_by.is_none() {
                stop_by = Some(Instant::now() + PULL_EXPIRES + Duration::from_secs(2));
            }
            // Handed back only once the open pull requests have ended: a message naked while
            // one is open would come straight back to it.
            if !open {
                for source in &mut sources {
                    for (_, msg) in source.held.drain(..) {
                        hand_back(&msg, &mut done).await;
                    }
                }
                if running.is_empty() {
                    return done;
                }
            }
        } else {
            // Of a full batch, the first `free` start at once (no message is held while a
            // handler is free); so what a source holds never exceeds `ahead`.
            let free = in_flight - running.len();
            for source in sources.iter_mut().filter(|s| s.batch.is_none()) {
                if source.retry_at.is_some_and(|at| at > Instant::now()) {
                    continue;
                }
                source.retry_at = None;
                let want = (limits.ahead + free).saturating_sub(source.held.len());
                if want < refill_at {
                    continue;
                }
                match source.consumer.batch().max_messages(want).expires(PULL_EXPIRES).messages().await {
                    Ok(b) => {
                        done.pulls += 1;
                        source.batch = Some(b);
                    }
                    Err(e) => {
                        warn!(error = %e, "cannot pull; asking again shortly");
                        source.retry_at = Some(Instant::now() + RETRY_AFTER);
                    }
                }
            }
        }
        let stopping = shutdown.is_cancelled();
        let open = sources.iter().any(|s| s.batch.is_some());
        let retry_at = sources.iter().filter_map(|s| s.retry_at).min();
        tokio::select! {
            _ = shutdown.cancelled(), if !stopping => {}
            Some(()) = running.next(), if !running.is_empty() => {}
            (i, msg) = next_pulled(&mut sources), if open => match msg {
                Some(Ok(msg)) => {
                    arrivals += 1;
                    sources[i].held.push_back((arrivals, msg));
                }
                Some(Err(e)) => {
                    // The server ended the request (e.g. a leader change); async-nats ends the
                    // batch after an error.
                    warn!(error = %e, "pull request ended with an error; asking again shortly");
                    sources[i].batch = None;
                    sources[i].retry_at = Some(Instant::now() + RETRY_AFTER);
                }
                None => sources[i].batch = None,
            },
            _ = sleep_until(retry_at), if retry_at.is_some() && !stopping => {}
            _ = sleep_until(stop_by), if stopping && open => {
                // The server did not end the requests in time; what they might still bring stays
                // unacknowledged until the ack wait.
                warn!("the open pull request did not end in time; stopping without it");
                for source in &mut sources {
                    source.batch = None;
                }
            }
        }
    }
}

/// The source whose held message starts next, in `order`.
fn next_to_start(sources: &[Source<'_>], order: Order) -> Option<usize> {
    let holding = sources.iter().enumerate().filter_map(|(i, s)| s.held.front().map(|(arrival, _)| (i, *arrival)));
    match order {
        Order::Priority => holding.map(|(i, _)| i).next(),
        Order::Arrival => holding.min_by_key(|(_, arrival)| *arrival).map(|(i, _)| i),
    }
}

/// The next message any open pull request brings (the first sources' first), with its source.
async fn next_pulled(sources: &mut [Source<'_>]) -> (usize, Option<Result<Message, async_nats::Error>>) {
    futures::future::poll_fn(|cx| {
        for (i, source) in sources.iter_mut().enumerate() {
            if let Some(batch) = source.batch.as_mut()
                && let Poll::Ready(msg) = batch.poll_next_unpin(cx)
            {
                return Poll::Ready((i, msg));
            }
        }
        Poll::Pending
    })
    .await
}

/// Naks `msg` without delay, so the consumer hands it to another subscriber at once.
async fn hand_back(msg: &Message, done: &mut Consumed) {
    match msg.ack_with(AckKind::Nak(None)).await {
        Ok(()) => done.handed_back += 1,
        Err(e) => debug!(error = %e, "handing a message back failed; it returns after the ack wait"),
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
