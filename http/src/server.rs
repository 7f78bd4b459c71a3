//! Serving the app on a socket: hyper's HTTP/1.1 connections with the limits `axum::serve` lacks,
//! so that idle or slow clients cannot hold the API (and with it `/readyz`, the adapters and the
//! console) hostage.
//!
//! - **Header timeout** (`[api].header_timeout_secs`): a connection must send a complete request
//!   head within this time of opening or of its previous answer (hyper's
//!   `header_read_timeout`, whose clock runs while the connection waits for a request), so idle
//!   keep-alive and slowloris connections are closed.
//! - **Request timeout** (`[api].request_timeout_secs`): the body must arrive and the answer start
//!   in time, else 503 (a live event stream's answer starts at once, so it is not cut).
//! - **Connection cap** (`[api].max_connections`): at the cap, a new connection closes the one that
//!   has waited longest without a request in progress (connections that never sent a request
//!   first); only when every connection has a request in progress is the new one answered 503 and
//!   closed. Idle sockets therefore never lock out a client that sends a request.
//!
//! Metrics: `linkbus_http_connections_open`, `linkbus_http_connections_evicted_total`,
//! `linkbus_http_connections_refused_total`, `linkbus_http_timeouts_total{kind}`. Reaching the cap
//! is logged (at most every 10 s, with what was shed meanwhile).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::response::IntoResponse as _;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tower::Service as _;
use tracing::{debug, warn};

use crate::config::ApiConfig;
use crate::error::ApiError;

/// How often, at most, reaching the connection cap (or failing to accept) is logged.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// What a served connection may take: `[api]`'s `max_connections`, `header_timeout_secs` and
/// `request_timeout_secs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once, at most (at least 1).
    pub max_connections: usize,
    /// Time to send a request head, from the connection's start or its previous answer.
    pub header_timeout: Duration,
    /// Time for a request's body to arrive and its answer to start.
    pub request_timeout: Duration,
}

impl Limits {
    /// The limits `[api]` sets.
    pub fn of(config: &ApiConfig) -> Self {
        Self {
            max_connections: config.max_connections.max(1),
            header_timeout: Duration::from_secs(config.header_timeout_secs.max(1)),
            request_timeout: Duration::from_secs(config.request_timeout_secs.max(1)),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::of(&ApiConfig::default())
    }
}

/// `linkbus_http_*`: connections open, evicted and refused, and timeouts.
#[derive(Debug, Clone)]
struct ServerMetrics {
    open: IntGauge,
    evicted: IntCounter,
    refused: IntCounter,
    timeouts: IntCounterVec,
}

impl ServerMetrics {
    fn new() -> prometheus::Result<Self> {
        let timeouts = IntCounterVec::new(
            Opts::new(
                "linkbus_http_timeouts_total",
                "Connections closed for sending no complete request head in time (kind header, idle \
                 keep-alive included), requests answered 503 for taking too long (kind request).",
            ),
            &["kind"],
        )?;
        for kind in ["header", "request"] {
            timeouts.with_label_values(&[kind]);
        }
        Ok(Self {
            open: IntGauge::new("linkbus_http_connections_open", "HTTP connections open now.")?,
            evicted: IntCounter::new(
                "linkbus_http_connections_evicted_total",
                "Idle HTTP connections closed to make room for a new one at [api].max_connections.",
            )?,
            refused: IntCounter::new(
                "linkbus_http_connections_refused_total",
                "New HTTP connections answered 503 and closed: every one of [api].max_connections had a \
                 request in progress.",
            )?,
            timeouts,
        })
    }

    fn register(&self, registry: &prometheus::Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.open.clone()))?;
        registry.register(Box::new(self.evicted.clone()))?;
        registry.register(Box::new(self.refused.clone()))?;
        registry.register(Box::new(self.timeouts.clone()))
    }
}

/// Serves an app within [`Limits`], counting into its metrics.
#[derive(Debug, Clone)]
pub struct Server {
    limits: Limits,
    metrics: ServerMetrics,
}

impl Server {
    /// A server within `limits`, its metrics registered in `registry`.
    pub fn new(limits: Limits, registry: &prometheus::Registry) -> prometheus::Result<Self> {
        let metrics = ServerMetrics::new()?;
        metrics.register(registry)?;
        Ok(Self { limits, metrics })
    }

    /// Serves `app` on `listener` until `shutdown` resolves, then lets requests in progress finish
    /// (open event streams end with the console's own stop). Client addresses are passed to the
    /// handlers as [`ConnectInfo`] (the rate limits are per address).
    pub async fn serve(
        self,
        listener: TcpListener,
        app: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let slots = Arc::new(Slots::new(self.limits.max_connections, self.metrics.clone()));
        let draining = CancellationToken::new();
        // Every connection's task holds a sender: once all are dropped, every connection is done.
        let (done, mut all_done) = tokio::sync::mpsc::channel::<()>(1);
        let mut accept_errors = Throttled::default();
        let mut shutdown = pin!(shutdown);
        loop {
            let (stream, addr) = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        accept_error(&e, &mut accept_errors).await;
                        continue;
                    }
                },
            };
            let Some(slot) = slots.open() else {
                refuse(&stream);
                continue;
            };
            let connection = Connection {
                slot,
                addr,
                app: app.clone(),
                limits: self.limits.clone(),
                metrics: self.metrics.clone(),
                draining: draining.clone(),
                _done: done.clone(),
            };
            tokio::spawn(connection.run(stream));
        }
        draining.cancel();
        drop(done);
        // `None` once every connection's sender is dropped.
        let _ = all_done.recv().await;
        Ok(())
    }
}

/// Serves `app` on `listener` within the default [`Limits`] (metrics not exported) until
/// `shutdown` resolves; see [`Server::serve`].
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let server = Server::new(Limits::default(), &prometheus::Registry::new()).map_err(std::io::Error::other)?;
    server.serve(listener, app, shutdown).await
}

/// Answers a connection there is no room for with 503 and closes it, without waiting: the socket
/// is fresh, its send buffer empty.
fn refuse(stream: &TcpStream) {
    const BODY: &str = r#"{"error":"too many connections; retry shortly","code":"unavailable"}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    // Best effort: the connection is dropped (closed) either way.
    let _ = stream.try_write(answer.as_bytes());
}

/// A failed `accept`: a client that gave up is nothing; anything else (out of file descriptors)
/// is logged, at most every [`LOG_EVERY`], and accepting pauses briefly so it cannot spin.
async fn accept_error(e: &std::io::Error, throttle: &mut Throttled) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    if let Some(suppressed) = throttle.due() {
        warn!(error = %e, suppressed, "cannot accept HTTP connections (out of open files? see LimitNOFILE)");
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Lets a repeated log line through at most every [`LOG_EVERY`].
#[derive(Debug, Default)]
struct Throttled {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttled {
    /// `Some(how many were held back since the last)` when the line may be logged now.
    fn due(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|last| now.duration_since(last) < LOG_EVERY) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// The open connections, oldest first, and whether each has a request in progress.
#[derive(Debug)]
struct Slots {
    max: usize,
    metrics: ServerMetrics,
    inner: Mutex<SlotsInner>,
}

#[derive(Debug, Default)]
struct SlotsInner {
    next: u64,
    open: BTreeMap<u64, Slot>,
    full: Throttled,
}

#[derive(Debug)]
struct Slot {
    /// Requests in progress (an answer whose body is still being sent counts).
    busy: u32,
    /// Whether it ever sent a request.
    served: bool,
    /// Cancelled to close it.
    evict: CancellationToken,
}

impl Slots {
    fn new(max: usize, metrics: ServerMetrics) -> Self {
        Self { max, metrics, inner: Mutex::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotsInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a new connection, closing an idle one at the cap; `None` when every
    /// connection has a request in progress.
    fn open(self: &Arc<Self>) -> Option<SlotGuard> {
        let mut inner = self.lock();
        if inner.open.len() >= self.max {
            let idle = |never_served: bool| {
                inner.open.iter().find(|(_, s)| s.busy == 0 && (!never_served || !s.served)).map(|(id, _)| *id)
            };
            let open = inner.open.len();
            match idle(true).or_else(|| idle(false)) {
                Some(id) => {
                    if let Some(slot) = inner.open.remove(&id) {
                        slot.evict.cancel();
                    }
                    self.metrics.evicted.inc();
                    if let Some(suppressed) = inner.full.due() {
                        warn!(
                            open,
                            max = self.max,
                            suppressed,
                            "HTTP connection limit reached: closing the longest-idle connection ([api].max_connections)"
                        );
                    }
                }
                None => {
                    self.metrics.refused.inc();
                    if let Some(suppressed) = inner.full.due() {
                        warn!(
                            open,
                            max = self.max,
                            suppressed,
                            "HTTP connection limit reached with every connection busy: refusing new ones ([api].max_connections)"
                        );
                    }
                    return None;
                }
            }
        }
        let id = inner.next;
        inner.next += 1;
        let evict = CancellationToken::new();
        inner.open.insert(id, Slot { busy: 0, served: false, evict: evict.clone() });
        self.metrics.open.inc();
        Some(SlotGuard { slots: self.clone(), id, evict })
    }

    /// Marks a request in progress on connection `id` until the returned guard is dropped.
    fn busy(self: &Arc<Self>, id: u64) -> Busy {
        if let Some(slot) = self.lock().open.get_mut(&id) {
            slot.busy += 1;
            slot.served = true;
        }
        Busy { slots: self.clone(), id }
    }
}

/// A connection's place among the open ones, given up when it closes.
#[derive(Debug)]
struct SlotGuard {
    slots: Arc<Slots>,
    id: u64,
    evict: CancellationToken,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.slots.lock().open.remove(&self.id);
        self.slots.metrics.open.dec();
    }
}

/// A request in progress on a connection.
#[derive(Debug)]
struct Busy {
    slots: Arc<Slots>,
    id: u64,
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(slot) = self.slots.lock().open.get_mut(&self.id) {
            slot.busy = slot.busy.saturating_sub(1);
        }
    }
}

/// An answer's body, keeping its request counted as in progress until it is sent (or dropped).
struct Busied {
    body: Body,
    _busy: Busy,
}

impl hyper::body::Body for Busied {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// One accepted connection and what it is served with.
struct Connection {
    slot: SlotGuard,
    addr: SocketAddr,
    app: Router,
    limits: Limits,
    metrics: ServerMetrics,
    draining: CancellationToken,
    _done: tokio::sync::mpsc::Sender<()>,
}

impl Connection {
    /// Serves the connection until it closes, times out, is evicted, or (once the server drains)
    /// its request in progress is answered.
    async fn run(self, stream: TcpStream) {
        // Small answers go out at once (best effort: a socket refusing it is served anyway).
        let _ = stream.set_nodelay(true);
        let (slots, id, addr) = (self.slot.slots.clone(), self.slot.id, self.addr);
        let (app, metrics, request_timeout) = (self.app.clone(), self.metrics.clone(), self.limits.request_timeout);
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let busy = slots.busy(id);
            let mut app = app.clone();
            let metrics = metrics.clone();
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(ConnectInfo(addr));
            async move {
                let response = match tokio::time::timeout(request_timeout, app.call(request)).await {
                    Ok(Ok(response)) => response,
                    Ok(Err(never)) => match never {},
                    Err(_) => {
                        metrics.timeouts.with_label_values(&["request"]).inc();
                        debug!(%addr, "request timed out");
                        let secs = request_timeout.as_secs();
                        ApiError::Unavailable(format!("no answer within {secs} s (a body sent too slowly?)"))
                            .into_response()
                    }
                };
                Ok::<_, Infallible>(response.map(|body| Busied { body, _busy: busy }))
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(self.limits.header_timeout);
        let mut connection = pin!(builder.serve_connection(TokioIo::new(stream), service));
        let mut draining = false;
        loop {
            tokio::select! {
                result = connection.as_mut() => {
                    match result {
                        Err(e) if e.is_timeout() => {
                            self.metrics.timeouts.with_label_values(&["header"]).inc();
                            debug!(%addr, "connection closed: no request head in time");
                        }
                        Err(e) => debug!(%addr, error = %e, "connection ended with an error"),
                        Ok(()) => {}
                    }
                    break;
                }
                () = self.slot.evict.cancelled() => {
                    debug!(%addr, "idle connection closed to make room for a new one");
                    break;
                }
                () = self.draining.cancelled(), if !draining => {
                    draining = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(max: usize) -> Arc<Slots> {
        Arc::new(Slots::new(max, ServerMetrics::new().expect("metrics")))
    }

    #[test]
    fn at_the_cap_the_idle_make_room_and_the_busy_do_not() {
        let slots = slots(3);
        let (a, b, c) = (slots.open().expect("a"), slots.open().expect("b"), slots.open().expect("c"));
        // a served a request and is idle again; b has one in progress; c never sent one.
        drop(slots.busy(a.id));
        let b_busy = slots.busy(b.id);
        // The connection that never sent a request goes first, then the longest idle.
        let d = slots.open().expect("d");
        assert!(c.evict.is_cancelled() && !a.evict.is_cancelled());
        drop(c);
        let d_busy = slots.busy(d.id);
        let e = slots.open().expect("e");
        assert!(a.evict.is_cancelled() && !b.evict.is_cancelled() && !d.evict.is_cancelled());
        drop(a);
        // b, d busy, e never served: e makes room; then all busy: refused.
        let e_busy = slots.busy(e.id);
        assert!(slots.open().is_none(), "every connection is busy");
        assert_eq!(slots.metrics.refused.get(), 1);
        assert_eq!(slots.metrics.evicted.get(), 2);
        assert_eq!(slots.metrics.open.get(), 3);
        // An answer sent: its connection may make room again.
        drop(e_busy);
        let f = slots.open().expect("f");
        assert!(e.evict.is_cancelled());
        drop((b_busy, d_busy, e, f));
        assert_eq!(slots.metrics.open.get(), 2, "b and d are still open");
    }
}
