//! Webhooks against a real nats-server and a real HTTP receiver: a department without NATS gets
//! each of its cases POSTed once, signed, retried until its receiver is up, also across a restart
//! of the webhook; a receiver that keeps failing has the case dead-lettered and no more attempts;
//! a webhook sees its own department's cases only.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use linkbus_bus::nats::{HEADER_ORIGINAL_ID, HEADER_ORIGINAL_SUBJECT, HEADER_REASON, HEADER_REASON_CODE};
use linkbus_bus::nats::{STREAM_DEADLETTER, STREAM_ROUTED};
use linkbus_cases::webhooks::{self, Delivery, DeliveryStatus, WebhookConfig};
use linkbus_tests::{TestBus, WAIT, case, header, publish_case, read_stream};
use linkbus_wire::SourceSystem;
use sha2::Sha256;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Mission District, San Francisco: sewer issues go to `puc-sewer-ops`, street cleaning to
/// `dpw-ops-queue`.
const MISSION: (f64, f64) = (-122.4194, 37.7599);
const SECRET: &str = "test-secret-9b1d";
/// How long "nothing more arrives" is watched for.
const QUIET: Duration = Duration::from_secs(1);

/// One request as the receiver got it.
#[derive(Debug, Clone)]
struct Received {
    /// The last path segment: which webhook sent it.
    hook: String,
    /// Headers, names lowercase.
    headers: HashMap<String, String>,
    body: Bytes,
}

/// An HTTP receiver on 127.0.0.1 that records every request and answers with `status`.
#[derive(Clone)]
struct Receiver {
    received: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
}

impl Receiver {
    fn new(status: StatusCode) -> Self {
        Self { received: Arc::default(), status: Arc::new(AtomicU16::new(status.as_u16())) }
    }

    /// Serves on `addr` until `stop`.
    async fn serve(&self, addr: SocketAddr, stop: CancellationToken) -> JoinHandle<()> {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("receiver binds");
        let app = axum::Router::new().route("/hook/{hook}", axum::routing::post(record)).with_state(self.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await.expect("receiver serves");
        })
    }

    fn all(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }
}

async fn record(
    State(receiver): State<Receiver>,
    Path(hook): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let headers =
        headers.iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned())).collect();
    receiver.received.lock().expect("lock").push(Received { hook, headers, body });
    StatusCode::from_u16(receiver.status.load(Ordering::SeqCst)).expect("status")
}

/// A free port on 127.0.0.1 where nothing listens (yet).
fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

fn webhook(department: &str, addr: SocketAddr, max_attempts: i64, backoff_ms: &[u64]) -> WebhookConfig {
    let mut config = WebhookConfig::new(department, &format!("http://{addr}/hook/{department}"), SECRET);
    config.timeout = Duration::from_secs(2);
    config.max_attempts = max_attempts;
    config.backoff = backoff_ms.iter().copied().map(Duration::from_millis).collect();
    config
}

/// Runs a webhook until the returned token is cancelled.
fn start(bus: &TestBus, config: WebhookConfig) -> (CancellationToken, JoinHandle<Result<(), webhooks::WebhookError>>) {
    let stop = CancellationToken::new();
    (stop.clone(), tokio::spawn(webhooks::run(bus.js.clone(), config, stop)))
}

async fn stop(stop: CancellationToken, task: JoinHandle<Result<(), webhooks::WebhookError>>) {
    stop.cancel();
    tokio::time::timeout(WAIT, task).await.expect("webhook stops").expect("no panic").expect("webhook ran");
}

/// Polls `check` every 50 ms until it gives a value; panics after `within`.
async fn eventually<T>(what: &str, within: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn records(bus: &TestBus, department: &str) -> Vec<Delivery> {
    webhooks::deliveries(&bus.js, department).await.expect("delivery records")
}

/// Every message on the department's subjects, once each of them has a record with `status`:
/// what its webhook had to deliver. (The case book adds case events to the routed copies, so the
/// tests count what the stream holds rather than assume a number.)
async fn settled(bus: &TestBus, department: &str, status: DeliveryStatus) -> Option<Vec<jetstream::Message>> {
    let messages = read_stream(&bus.js, STREAM_ROUTED, &format!("routed.dept.{department}.>"), 0).await;
    let records = records(bus, department).await;
    let done = !messages.is_empty()
        && records.len() == messages.len()
        && records.iter().all(|d| d.status == status)
        && messages.iter().all(|m| records.iter().any(|d| Some(&d.msg_id) == header(m, "Nats-Msg-Id").as_ref()));
    done.then_some(messages)
}

/// The `Nats-Msg-Id`s of messages, sorted.
fn msg_ids(messages: &[jetstream::Message]) -> Vec<String> {
    let mut ids: Vec<String> = messages.iter().filter_map(|m| header(m, "Nats-Msg-Id")).collect();
    ids.sort();
    ids
}

/// The `Linkbus-Webhook-Id`s a receiver got from one webhook, sorted (repeats kept).
fn received_ids(receiver: &Receiver, hook: &str) -> Vec<String> {
    let mut ids: Vec<String> = receiver
        .all()
        .into_iter()
        .filter(|r| r.hook == hook)
        .map(|r| r.headers["linkbus-webhook-id"].clone())
        .collect();
    ids.sort();
    ids
}

/// The signature as a receiver computes it, independently of linkbus's code.
fn expected_signature(timestamp: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test]
async fn a_case_reaches_a_receiver_that_comes_up_late_exactly_once_signed_and_unchanged() {
    let bus = TestBus::start().await;
    let service = bus.service(&bus.config()).await;
    let addr = free_addr();
    let (stop_hook, hook) = start(&bus, webhook("puc-sewer-ops", addr, 10, &[200, 400, 800]));

    let event = case("wh-late-1", SourceSystem::PublicService, "sewer_issues", MISSION.0, MISSION.1);
    publish_case(&bus.js, &event).await;

    // Nobody listens: the attempts fail, and the record says so.
    let failing = eventually("two failed attempts", WAIT, async || {
        records(&bus, "puc-sewer-ops")
            .await
            .into_iter()
            .find(|d| d.case_id.as_deref() == Some("wh-late-1") && d.attempts >= 2)
    })
    .await;
    assert_eq!(failing.status, DeliveryStatus::Delivering);
    assert_eq!(failing.last_http_status, None);
    let error = failing.last_error.as_deref().unwrap_or_default();
    assert!(error.contains("connect") || error.contains("refused"), "{error}");
    assert!(!error.contains(&addr.port().to_string()), "the URL is kept out of the record: {error}");
    assert!(failing.next_attempt_at.is_some());

    // The receiver comes up on that port: the next attempt gets through.
    let receiver = Receiver::new(StatusCode::OK);
    let stop_receiver = CancellationToken::new();
    let server = receiver.serve(addr, stop_receiver.clone()).await;
    eventually("every delivery", WAIT, async || settled(&bus, "puc-sewer-ops", DeliveryStatus::Delivered).await).await;
    tokio::time::sleep(QUIET).await; // a second copy would arrive within this
    let on_stream = eventually("every delivery, still", WAIT, async || {
        settled(&bus, "puc-sewer-ops", DeliveryStatus::Delivered).await
    })
    .await;
    assert_eq!(received_ids(&receiver, "puc-sewer-ops"), msg_ids(&on_stream), "each message exactly once");

    let msg_id = "wh-late-1:routed:dept:puc-sewer-ops";
    let stored = on_stream.iter().find(|m| header(m, "Nats-Msg-Id").as_deref() == Some(msg_id)).expect("routed copy");
    let got = receiver.all();
    let request = got.iter().find(|r| r.headers["linkbus-webhook-id"] == msg_id).expect("the routed case arrived");
    assert_eq!(request.body, stored.payload, "the body is the message on the stream, byte for byte");
    assert_eq!(request.headers["content-type"], "application/cloudevents+json");
    let timestamp = &request.headers["linkbus-timestamp"];
    let signature = &request.headers["linkbus-signature"];
    assert_eq!(signature, &expected_signature(timestamp, &request.body));
    let sent_at: i64 = timestamp.parse().expect("unix seconds");
    assert!((jiff::Timestamp::now().as_second() - sent_at).abs() < 60);
    assert!(webhooks::verify(SECRET.as_bytes(), timestamp, &request.body, signature, sent_at));
    let attempt: i64 = request.headers["linkbus-attempt"].parse().expect("attempt number");
    assert!(attempt >= 3, "attempt {attempt}");

    let delivered = records(&bus, "puc-sewer-ops").await.into_iter().find(|d| d.msg_id == msg_id).expect("record");
    assert_eq!(delivered.status, DeliveryStatus::Delivered);
    assert_eq!(delivered.attempts, attempt);
    assert_eq!(delivered.case_id.as_deref(), Some("wh-late-1"));
    assert_eq!(delivered.subject, "routed.dept.puc-sewer-ops.sewer_issues.mission");
    assert_eq!(delivered.event_type.as_deref(), Some("org.linkbus.case.routed"));
    assert_eq!(delivered.last_http_status, Some(200));
    assert_eq!(delivered.last_error, None);
    assert_eq!(delivered.next_attempt_at, None);
    assert!(delivered.delivered_at.is_some() && delivered.first_attempt_at < delivered.last_attempt_at);

    stop(stop_hook, hook).await;
    stop_receiver.cancel();
    server.await.expect("receiver stops");
    service.stop().await;
}

#[tokio::test]
async fn a_retry_pending_when_linkbus_stops_is_made_by_the_next_run() {
    let bus = TestBus::start().await;
    let service = bus.service(&bus.config()).await;
    let addr = free_addr();
    let config = webhook("puc-sewer-ops", addr, 10, &[500]);
    let (stop_hook, hook) = start(&bus, config.clone());
    publish_case(&bus.js, &case("wh-restart-1", SourceSystem::PublicService, "sewer_issues", MISSION.0, MISSION.1))
        .await;
    let msg_id = "wh-restart-1:routed:dept:puc-sewer-ops";
    eventually("a failed attempt", WAIT, async || {
        records(&bus, "puc-sewer-ops").await.into_iter().find(|d| d.msg_id == msg_id && d.attempts >= 1)
    })
    .await;
    stop(stop_hook, hook).await;

    // The receiver comes up while no webhook runs; the next run (with a new timeout, which
    // updates the consumer) makes the pending retry.
    let receiver = Receiver::new(StatusCode::OK);
    let stop_receiver = CancellationToken::new();
    let server = receiver.serve(addr, stop_receiver.clone()).await;
    let (stop_hook, hook) = start(&bus, WebhookConfig { timeout: Duration::from_secs(3), ..config });
    eventually("every delivery", WAIT, async || settled(&bus, "puc-sewer-ops", DeliveryStatus::Delivered).await).await;
    tokio::time::sleep(QUIET).await;
    let on_stream = eventually("every delivery, still", WAIT, async || {
        settled(&bus, "puc-sewer-ops", DeliveryStatus::Delivered).await
    })
    .await;
    assert_eq!(received_ids(&receiver, "puc-sewer-ops"), msg_ids(&on_stream), "each message exactly once");
    let delivered = records(&bus, "puc-sewer-ops").await.into_iter().find(|d| d.msg_id == msg_id).expect("record");
    assert!(delivered.attempts >= 2, "{delivered:?}");
    let mut consumer: jetstream::consumer::PullConsumer = bus
        .js
        .get_stream(STREAM_ROUTED)
        .await
        .expect("stream")
        .get_consumer("webhook-puc-sewer-ops")
        .await
        .expect("consumer");
    let info = consumer.info().await.expect("consumer info");
    assert_eq!(info.config.ack_wait, Duration::from_secs(33), "the consumer follows the configured timeout");

    stop(stop_hook, hook).await;
    stop_receiver.cancel();
    server.await.expect("receiver stops");
    service.stop().await;
}

#[tokio::test]
async fn a_receiver_that_keeps_failing_gets_max_attempts_then_the_case_is_dead_lettered() {
    let bus = TestBus::start().await;
    let service = bus.service(&bus.config()).await;
    let addr = free_addr();
    let receiver = Receiver::new(StatusCode::INTERNAL_SERVER_ERROR);
    let stop_receiver = CancellationToken::new();
    let server = receiver.serve(addr, stop_receiver.clone()).await;
    let config = webhook("puc-sewer-ops", addr, 3, &[100]);
    let durable = config.durable();
    let (stop_hook, hook) = start(&bus, config);

    publish_case(&bus.js, &case("wh-fail-1", SourceSystem::PublicService, "sewer_issues", MISSION.0, MISSION.1)).await;

    let on_stream = eventually("every delivery to fail", WAIT, async || {
        settled(&bus, "puc-sewer-ops", DeliveryStatus::Failed).await
    })
    .await;
    let msg_id = "wh-fail-1:routed:dept:puc-sewer-ops";
    let failed = records(&bus, "puc-sewer-ops").await.into_iter().find(|d| d.msg_id == msg_id).expect("record");
    assert_eq!(failed.attempts, 3);
    assert_eq!(failed.last_http_status, Some(500));
    assert!(failed.last_error.as_deref().unwrap_or_default().contains("500"), "{failed:?}");
    assert_eq!(failed.next_attempt_at, None);
    assert_eq!(failed.delivered_at, None);

    let letters = read_stream(&bus.js, STREAM_DEADLETTER, "deadletter.webhook", on_stream.len()).await;
    assert_eq!(letters.len(), on_stream.len(), "one dead letter per message given up");
    let letter = letters
        .iter()
        .find(|l| header(l, HEADER_ORIGINAL_ID).as_deref() == Some(msg_id))
        .expect("the routed case is dead-lettered");
    let reason = header(letter, HEADER_REASON).unwrap_or_default();
    assert!(reason.contains("puc-sewer-ops") && reason.contains("3 attempts") && reason.contains("500"), "{reason}");
    assert_eq!(header(letter, HEADER_REASON_CODE).as_deref(), Some("undeliverable"));
    assert_eq!(
        header(letter, HEADER_ORIGINAL_SUBJECT).as_deref(),
        Some("routed.dept.puc-sewer-ops.sewer_issues.mission")
    );
    let stored = on_stream.iter().find(|m| header(m, "Nats-Msg-Id").as_deref() == Some(msg_id)).expect("routed copy");
    assert_eq!(letter.payload, stored.payload, "the dead letter keeps the original bytes");

    // Given up: no fourth attempt, nothing pending on the consumer.
    tokio::time::sleep(QUIET).await;
    let attempts: Vec<String> = receiver
        .all()
        .iter()
        .filter(|r| r.headers["linkbus-webhook-id"] == msg_id)
        .map(|r| r.headers["linkbus-attempt"].clone())
        .collect();
    assert_eq!(attempts, ["1", "2", "3"]);
    assert_eq!(receiver.all().len(), 3 * on_stream.len());
    let mut consumer: jetstream::consumer::PullConsumer =
        bus.js.get_stream(STREAM_ROUTED).await.expect("stream").get_consumer(&durable).await.expect("consumer");
    let info = consumer.info().await.expect("consumer info");
    assert_eq!((info.num_pending, info.num_ack_pending), (0, 0), "{info:?}");
    assert!(settled(&bus, "puc-sewer-ops", DeliveryStatus::Failed).await.is_some());

    stop(stop_hook, hook).await;
    stop_receiver.cancel();
    server.await.expect("receiver stops");
    service.stop().await;
}

#[tokio::test]
async fn each_webhook_gets_its_own_departments_cases_only() {
    let bus = TestBus::start().await;
    let service = bus.service(&bus.config()).await;
    let addr = free_addr();
    let receiver = Receiver::new(StatusCode::NO_CONTENT);
    let stop_receiver = CancellationToken::new();
    let server = receiver.serve(addr, stop_receiver.clone()).await;
    let (stop_sewer, sewer) = start(&bus, webhook("puc-sewer-ops", addr, 5, &[100]));
    let (stop_dpw, dpw) = start(&bus, webhook("dpw-ops-queue", addr, 5, &[100]));

    let cases = [
        ("wh-own-clean", "street_and_sidewalk_cleaning"),
        ("wh-own-sewer", "sewer_issues"),
        ("wh-own-clean-2", "street_and_sidewalk_cleaning"),
    ];
    for (id, category) in cases {
        publish_case(&bus.js, &case(id, SourceSystem::PublicService, category, MISSION.0, MISSION.1)).await;
    }
    eventually("every delivery", WAIT, async || {
        let sewer = settled(&bus, "puc-sewer-ops", DeliveryStatus::Delivered).await?;
        let dpw = settled(&bus, "dpw-ops-queue", DeliveryStatus::Delivered).await?;
        let routed = |m: &Vec<jetstream::Message>| {
            m.iter().filter(|m| header(m, "Nats-Msg-Id").is_some_and(|id| id.contains(":routed:"))).count()
        };
        (routed(&sewer) == 1 && routed(&dpw) == 2).then_some(())
    })
    .await;
    tokio::time::sleep(QUIET).await; // a second copy, or a copy to the wrong webhook, would arrive within this
    let (sewer_stream, dpw_stream) = eventually("every delivery, still", WAIT, async || {
        Some((
            settled(&bus, "puc-sewer-ops", DeliveryStatus::Delivered).await?,
            settled(&bus, "dpw-ops-queue", DeliveryStatus::Delivered).await?,
        ))
    })
    .await;

    let sewer_ids = received_ids(&receiver, "puc-sewer-ops");
    let dpw_ids = received_ids(&receiver, "dpw-ops-queue");
    assert_eq!(sewer_ids, msg_ids(&sewer_stream), "each message exactly once");
    assert_eq!(dpw_ids, msg_ids(&dpw_stream), "each message exactly once");
    assert_eq!(receiver.all().len(), sewer_ids.len() + dpw_ids.len(), "no request from elsewhere");
    assert!(sewer_ids.iter().all(|id| id.starts_with("wh-own-sewer:")), "{sewer_ids:?}");
    assert!(dpw_ids.iter().all(|id| id.starts_with("wh-own-clean")), "{dpw_ids:?}");
    assert!(sewer_ids.contains(&"wh-own-sewer:routed:dept:puc-sewer-ops".to_owned()));
    assert!(dpw_ids.contains(&"wh-own-clean:routed:dept:dpw-ops-queue".to_owned()));
    assert!(dpw_ids.contains(&"wh-own-clean-2:routed:dept:dpw-ops-queue".to_owned()));
    let statuses: Vec<_> = records(&bus, "dpw-ops-queue").await.iter().map(|d| d.last_http_status).collect();
    assert!(statuses.iter().all(|s| *s == Some(204)), "{statuses:?}");

    stop(stop_sewer, sewer).await;
    stop(stop_dpw, dpw).await;
    stop_receiver.cancel();
    server.await.expect("receiver stops");
    service.stop().await;
}
