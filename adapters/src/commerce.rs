//! Order webhooks of commercial platforms (elderly meal delivery, home repair, domestic help):
//! `POST /api/adapters/commerce/{platform}/orders` with an [`OrderEvent`] in JSON.
//!
//! **Signed** with the platform's shared secret from `[[adapters.commerce.platforms]]`, over the
//! timestamp, the delivery id and the body ([`sign`]):
//!
//! ```text
//! Linkbus-Timestamp: 1795766400                (unix seconds, when the platform sent it)
//! Linkbus-Delivery: <the platform's unique id of this delivery: 1-256 visible ASCII, no '.'>
//! Linkbus-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<delivery>.<body>")>
//! ```
//!
//! The delivery id is signed so that a captured request cannot be replayed under a new one:
//! within the timestamp window a replay keeps its delivery id, and that id is remembered for
//! longer than the window lasts. (linkbus's own outgoing webhooks, `linkbus_cases::webhooks`,
//! sign `"<timestamp>.<body>"` with the same HMAC; a platform's signer differs from it only by
//! the delivery id and its `.`.)
//!
//! Refused: no signature or timestamp (401), a signature that does not match (401, compared in
//! constant time), a timestamp more than 5 minutes old or ahead (401, saying which), no or a
//! badly formed delivery id (400), a delivery id already received within [`DELIVERY_MEMORY`]
//! (409, remembered in the JetStream KV bucket `linkbus_commerce_deliveries` so every replica
//! sees it), an unknown platform (401).
//!
//! **Statuses**: `created` opens a case (`commercial` system, category from the platform's map
//! of its `service`, id `commerce:<platform>:<order_id>`); later statuses update that case as
//! source updates: `accepted` and `in_progress` are recorded on its timeline, `delivered` and
//! `completed` resolve it, `cancelled` withdraws it.
//!
//! [`CommerceConfig`] (`[adapters.commerce]`) builds the running [`Commerce`] adapter; its
//! messages are taken as CAP's and CAD's are ([`crate::messages`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use bytes::Bytes;
use futures::future::BoxFuture;
use jiff::Timestamp;
use linkbus_bus::nats;
use linkbus_cases::webhooks::{self, HEADER_SIGNATURE, HEADER_TIMESTAMP, TIMESTAMP_TOLERANCE};
use linkbus_wire::http_error::ErrorCode;
use linkbus_wire::{self as wire, Action, CaseReport, CloudEvent, Contact, Datum, Location, SourceSystem};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::adapter::{Adapter, AdapterConfig, BuildContext, BuildError, ConfigError, RouteContext, check_categories};
use crate::intake::{IntakeError, Message, Receipt};
use crate::kind::AdapterKind;
use crate::messages::{MAX_BODY, Messages, content_type_is, read_body};
use crate::vocabulary::CategoryMap;

/// Header with the platform's id of this delivery (signed, and remembered to refuse replays).
pub const HEADER_DELIVERY: &str = "Linkbus-Delivery";
/// Longest delivery id accepted, bytes.
pub const MAX_DELIVERY_LEN: usize = 256;
/// KV bucket of the delivery ids received in the last [`DELIVERY_MEMORY`].
pub const BUCKET_DELIVERIES: &str = "linkbus_commerce_deliveries";
/// How long a delivery id is remembered: longer than a signed request stays on time (a
/// timestamp up to 5 minutes ahead is accepted until it is 5 minutes old: 10 minutes), so
/// within its window a replay always finds its delivery id.
pub const DELIVERY_MEMORY: Duration = Duration::from_secs(11 * 60);
/// The route orders are posted to.
pub const ROUTE: &str = "/api/adapters/commerce/{platform}/orders";

/// `[adapters.commerce]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CommerceConfig {
    /// Run this adapter (on by default, as every adapter; `false` turns it off). It serves
    /// orders only when at least one platform is configured.
    pub enabled: bool,
    /// The platforms allowed to send orders.
    pub platforms: Vec<PlatformConfig>,
}

impl Default for CommerceConfig {
    fn default() -> Self {
        Self { enabled: true, platforms: Vec::new() }
    }
}

/// `[[adapters.commerce.platforms]]`: one platform.
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformConfig {
    /// Its id in the URL path (`/api/adapters/commerce/<id>/orders`) and case ids: ASCII
    /// letters, digits, `-`, `_`.
    pub id: String,
    /// The shared signing secret (or leave empty and name `secret_env`).
    #[serde(default)]
    pub secret: String,
    /// The environment variable holding the secret, instead of `secret`.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// The platform's `service` values → bus categories, e.g. `meal_delivery = "elderly_assistance"`.
    #[serde(default)]
    pub categories: CategoryMap,
    /// The priority of its orders, 1–4 (raised by the routing's priority rules for flags
    /// such as `elderly_alone`).
    #[serde(default = "default_priority")]
    pub priority: u8,
}

fn default_priority() -> u8 {
    3
}

impl std::fmt::Debug for PlatformConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformConfig").field("id", &self.id).field("priority", &self.priority).finish_non_exhaustive()
    }
}

impl AdapterConfig for CommerceConfig {
    fn kind(&self) -> AdapterKind {
        AdapterKind::Commerce
    }

    /// On unless `enabled = false`, and only once a platform is configured.
    fn enabled(&self) -> bool {
        self.enabled && !self.platforms.is_empty()
    }

    /// Checks every platform: id, secret (reading `secret_env`), categories, priority.
    fn validate(&self) -> Result<(), ConfigError> {
        for p in &self.platforms {
            let field = |name: &str| format!("platforms[{:?}].{name}", p.id);
            if !wire::is_token(&p.id, 64, b"-_") {
                return Err(ConfigError::field(
                    AdapterKind::Commerce,
                    field("id"),
                    "must be 1-64 ASCII letters, digits, '-' or '_'",
                ));
            }
            webhooks::resolve_secret(&p.secret, p.secret_env.as_deref())
                .map_err(|reason| ConfigError::field(AdapterKind::Commerce, field("secret"), reason))?;
            check_categories(AdapterKind::Commerce, &field("categories"), &p.categories)?;
            if !(1..=4).contains(&p.priority) {
                return Err(ConfigError::field(AdapterKind::Commerce, field("priority"), "must be 1-4"));
            }
        }
        Ok(())
    }

    fn category_maps(&self) -> Vec<&CategoryMap> {
        self.platforms.iter().map(|p| &p.categories).collect()
    }

    fn build<'a>(&'a self, cx: &'a BuildContext) -> BoxFuture<'a, Result<Arc<dyn Adapter>, BuildError>> {
        Box::pin(async move {
            let adapter: Arc<dyn Adapter> = Arc::new(Commerce::open(self, cx).await?);
            Ok(adapter)
        })
    }
}

/// An order event as a platform posts it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderEvent {
    /// The platform's order id (1-96 characters).
    pub order_id: String,
    /// `created`, `accepted`, `in_progress`, `delivered`, `completed` or `cancelled`.
    pub status: String,
    /// What the order is, in the platform's vocabulary (required for `created`).
    #[serde(default)]
    pub service: Option<String>,
    /// Where (required for `created`).
    #[serde(default)]
    pub location: Option<Location>,
    /// The datum of `location`: `wgs84` (default), `gcj02`, `bd09`.
    #[serde(default)]
    pub datum: Datum,
    /// Street address.
    #[serde(default)]
    pub address: Option<String>,
    /// The customer, for the department to call.
    #[serde(default)]
    pub customer: Option<Contact>,
    /// Free text: the order's details, or what the status change means.
    #[serde(default)]
    pub note: Option<String>,
    /// Who is at risk (`elderly_alone`, `disabled`…), as bus flags.
    #[serde(default)]
    pub flags: Vec<String>,
    /// When it happened at the platform (default: when linkbus received it).
    #[serde(default)]
    pub occurred_at: Option<Timestamp>,
}

/// The configured platforms with their secrets read: what checks a request's signature and
/// reads its order, all without the bus ([`Commerce`] adds the delivery-id memory).
pub struct Senders {
    platforms: HashMap<String, (PlatformConfig, Vec<u8>)>,
}

impl std::fmt::Debug for Senders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Senders").field("platforms", &self.platforms.keys().collect::<Vec<_>>()).finish()
    }
}

impl Senders {
    /// Checks `config` and reads the secrets.
    pub fn new(config: &CommerceConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut platforms = HashMap::new();
        for p in &config.platforms {
            let secret = webhooks::resolve_secret(&p.secret, p.secret_env.as_deref()).map_err(|reason| {
                ConfigError::field(AdapterKind::Commerce, format!("platforms[{:?}].secret", p.id), reason)
            })?;
            platforms.insert(p.id.clone(), (p.clone(), secret.into_bytes()));
        }
        Ok(Self { platforms })
    }

    /// Checks the signature, timestamp and delivery id of a request from `platform` at `now`
    /// (unix seconds); its delivery key.
    pub fn verify(&self, platform: &str, headers: &HeaderMap, body: &[u8], now: i64) -> Result<String, IntakeError> {
        let unauthorized = |why: &str| Err(IntakeError::Unauthorized(why.to_owned()));
        let Some((_, secret)) = self.platforms.get(platform) else { return unauthorized("unknown platform") };
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
        let (Some(timestamp), Some(signature)) = (header(HEADER_TIMESTAMP), header(HEADER_SIGNATURE)) else {
            return unauthorized("unsigned: Linkbus-Timestamp and Linkbus-Signature headers are required");
        };
        let Ok(ts) = timestamp.parse::<i64>() else { return unauthorized("Linkbus-Timestamp is not unix seconds") };
        let tolerance = TIMESTAMP_TOLERANCE.as_secs() as i64;
        if ts < now - tolerance {
            return unauthorized("stale: Linkbus-Timestamp is more than 5 minutes old");
        }
        if ts > now + tolerance {
            return unauthorized("Linkbus-Timestamp is more than 5 minutes in the future");
        }
        let Some(delivery) = header(HEADER_DELIVERY).filter(|d| is_delivery_id(d)) else {
            return Err(IntakeError::Malformed(
                "a Linkbus-Delivery header (1-256 visible ASCII characters, no '.') is required".into(),
            ));
        };
        if !webhooks::verify(secret, timestamp, &signed_bytes(delivery, body), signature, now) {
            return unauthorized(
                "bad signature: expected sha256=<hex HMAC-SHA256 of \"<timestamp>.<delivery>.<body>\">",
            );
        }
        let digest = hex::encode(Sha256::digest(delivery.as_bytes()));
        Ok(format!("{platform}.{}", &digest[..32]))
    }

    /// What an order event from `platform` asks, received at `now`.
    pub fn to_intake(&self, platform: &str, body: &[u8], now: Timestamp) -> Result<Message, IntakeError> {
        let Some((config, _)) = self.platforms.get(platform) else {
            return Err(IntakeError::Unauthorized("unknown platform".into()));
        };
        let text = std::str::from_utf8(body).map_err(IntakeError::NotUtf8)?;
        let order: OrderEvent =
            serde_json::from_str(text).map_err(|source| IntakeError::Json { what: "an order event", source })?;
        order_intake(platform, config, order, now)
    }
}

/// The running commerce adapter: the configured platforms ([`Senders`]) and the delivery-id
/// memory.
pub struct Commerce {
    senders: Senders,
    deliveries: kv::Store,
    messages: Messages,
}

impl std::fmt::Debug for Commerce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Commerce").field("senders", &self.senders).finish_non_exhaustive()
    }
}

impl Commerce {
    /// Reads the secrets and opens (creating if needed) the delivery bucket.
    async fn open(config: &CommerceConfig, cx: &BuildContext) -> Result<Self, BuildError> {
        let senders = Senders::new(config)?;
        let about = "commerce webhook deliveries already received";
        nats::provision_bucket(&cx.js, BUCKET_DELIVERIES, about, DELIVERY_MEMORY, &cx.streams)
            .await
            .map_err(|source| BuildError::Bus { adapter: AdapterKind::Commerce, source })?;
        let deliveries = cx.js.get_key_value(BUCKET_DELIVERIES).await.map_err(|source| BuildError::Bucket {
            adapter: AdapterKind::Commerce,
            bucket: BUCKET_DELIVERIES,
            source,
        })?;
        Ok(Self { senders, deliveries, messages: Messages::new(cx, AdapterKind::Commerce) })
    }

    /// Records the delivery; 409 if it was already received. The KV `create` fails if the key
    /// exists, which is what detects a replay across every linkbus replica.
    async fn claim(&self, delivery: &str) -> Result<(), IntakeError> {
        match self.deliveries.create(delivery, Bytes::from_static(b"1")).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Err(IntakeError::Replayed),
            Err(e) => Err(IntakeError::DeliveryStore(e)),
        }
    }

    /// Forgets a delivery that could not be processed (the bus was unavailable), so the
    /// platform's retry is not taken for a replay.
    async fn release(&self, delivery: &str) {
        if let Err(e) = self.deliveries.delete(delivery).await {
            tracing::warn!(error = %e, "cannot forget a commerce delivery id");
        }
    }

    /// Takes an order posted by `platform`: signature, content type, order, delivery id, then
    /// the message.
    async fn take(&self, platform: &str, headers: &HeaderMap, bytes: &[u8]) -> Result<Receipt, IntakeError> {
        let now = Timestamp::now();
        let delivery = self.senders.verify(platform, headers, bytes, now.as_second())?;
        content_type_is(headers, &["application/json"])?;
        let message = self.senders.to_intake(platform, bytes, now)?;
        self.claim(&delivery).await?;
        let taken = self.messages.take(message).await;
        if taken.as_ref().is_err_and(|e| e.code() == ErrorCode::Unavailable) {
            self.release(&delivery).await;
        }
        taken
    }
}

impl Adapter for Commerce {
    fn kind(&self) -> AdapterKind {
        AdapterKind::Commerce
    }

    fn routes(self: Arc<Self>, _cx: &RouteContext<'_>) -> Router {
        Router::new().route(ROUTE, post(post_order)).with_state(self)
    }
}

async fn post_order(
    State(commerce): State<Arc<Commerce>>,
    Path(platform): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (bytes, received) = read_body(&headers, body, MAX_BODY).await;
    let route = format!("/api/adapters/commerce/{}/orders", wire::truncated(platform.clone(), 64));
    let result = match received {
        Ok(()) => commerce.take(&platform, &headers, &bytes).await,
        Err(e) => Err(e),
    };
    commerce.messages.answer(&route, bytes, result).await
}

/// `Linkbus-Signature` of a platform's request: `sha256=` and the lowercase hex HMAC-SHA256,
/// keyed with `secret`, of `"<timestamp>.<delivery>.<body>"` (what [`Senders::verify`] checks).
pub fn sign(secret: &[u8], timestamp: i64, delivery: &str, body: &[u8]) -> String {
    webhooks::sign(secret, timestamp, &signed_bytes(delivery, body))
}

/// What follows `"<timestamp>."` in the signed bytes: `"<delivery>.<body>"`. A delivery id has
/// no `.` ([`is_delivery_id`]), so where it ends is never in doubt.
fn signed_bytes(delivery: &str, body: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(delivery.len() + 1 + body.len());
    bytes.extend_from_slice(delivery.as_bytes());
    bytes.push(b'.');
    bytes.extend_from_slice(body);
    bytes
}

/// A well-formed delivery id: 1-[`MAX_DELIVERY_LEN`] visible ASCII characters other than `.`.
pub fn is_delivery_id(delivery: &str) -> bool {
    (1..=MAX_DELIVERY_LEN).contains(&delivery.len()) && delivery.bytes().all(|b| b.is_ascii_graphic() && b != b'.')
}

/// The CloudEvents `source` of a platform's cases (and the source actor of its updates).
pub fn source(platform: &str) -> String {
    format!("/commerce/{platform}")
}

/// The case id of a platform's order.
pub fn case_id(platform: &str, order_id: &str) -> String {
    crate::intake::event_id(&format!("commerce-{platform}"), order_id)
}

fn order_intake(
    platform: &str,
    config: &PlatformConfig,
    order: OrderEvent,
    now: Timestamp,
) -> Result<Message, IntakeError> {
    let invalid = IntakeError::Invalid;
    if order.order_id.trim().is_empty() || order.order_id.len() > 96 {
        return Err(invalid("order_id must be 1-96 characters".into()));
    }
    let id = case_id(platform, &order.order_id);
    let note = |what: &str| {
        crate::clip(match &order.note {
            Some(n) => format!("order {} {what}: {n}", order.order_id),
            None => format!("order {} {what}", order.order_id),
        })
    };
    let act = |action| Ok(Message::Act { source: source(platform), case_ids: vec![id.clone()], action, unseen: None });
    match order.status.as_str() {
        "created" => {}
        "accepted" => return act(Action::Update { note: note("accepted by the platform") }),
        "in_progress" => return act(Action::Update { note: note("in progress") }),
        "delivered" | "completed" => return act(Action::Resolve { note: note(&order.status) }),
        "cancelled" => return act(Action::Cancel { reason: note("cancelled") }),
        other => {
            return Err(invalid(format!(
                "status {other:?} is not one of created, accepted, in_progress, delivered, completed, cancelled"
            )));
        }
    }
    let service = order.service.as_deref().ok_or_else(|| invalid("a created order needs service".into()))?;
    let location = order.location.ok_or_else(|| invalid("a created order needs location".into()))?;
    let mut flags = order.flags.clone();
    let category = config.categories.map_flagged(service, &mut flags);
    let report = CaseReport {
        system: SourceSystem::Commercial,
        category,
        priority: config.priority,
        location,
        datum: order.datum,
        received_location: None,
        address: order.address.clone().map(crate::clip),
        reporter: order.customer.clone(),
        description: Some(crate::clip(format!("{service}: {}", order.note.as_deref().unwrap_or("new order")))),
        source_id: order.order_id.clone(),
        reported_at: order.occurred_at.unwrap_or(now),
        flags,
        area: None,
        media_url: None,
    };
    report.validate().map_err(IntakeError::Report)?;
    let event = CloudEvent::new(
        id,
        &source(platform),
        wire::TYPE_CASE_REPORTED,
        Some(order.order_id),
        report.reported_at,
        report,
    );
    Ok(Message::Report(Box::new(event)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform() -> PlatformConfig {
        PlatformConfig {
            id: "meals".into(),
            secret: "s3cret".into(),
            categories: CategoryMap::from_pairs([("meal_delivery", "elderly_assistance")]),
            priority: 3,
            ..Default::default()
        }
    }

    fn order(json: &str) -> Result<Message, IntakeError> {
        order_intake("meals", &platform(), serde_json::from_str(json).expect("json"), Timestamp::UNIX_EPOCH)
    }

    fn signed_headers(timestamp: i64, delivery: &str, signature: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_TIMESTAMP, timestamp.into());
        headers.insert(HEADER_DELIVERY, delivery.parse().expect("a header value"));
        headers.insert(HEADER_SIGNATURE, signature.parse().expect("a header value"));
        headers
    }

    #[test]
    fn the_delivery_id_is_signed_so_a_replay_under_a_new_one_is_refused() {
        let senders = Senders::new(&CommerceConfig { platforms: vec![platform()], ..Default::default() }).expect("ok");
        let (now, body) = (1_795_766_400, br#"{"order_id":"M-1","status":"accepted"}"#.as_slice());
        let signature = sign(b"s3cret", now, "d-1", body);
        let key = senders.verify("meals", &signed_headers(now, "d-1", &signature), body, now).expect("signed");
        assert!(key.starts_with("meals."));
        for (delivery, what) in [("d-2", "another delivery id"), ("d-1x", "a longer one")] {
            let replayed = senders.verify("meals", &signed_headers(now, delivery, &signature), body, now);
            assert!(matches!(replayed, Err(IntakeError::Unauthorized(ref e)) if e.contains("bad signature")), "{what}");
        }
        // Signed as linkbus's outgoing webhooks are (no delivery id): not a platform's signature.
        let unsigned_delivery = webhooks::sign(b"s3cret", now, body);
        let old = senders.verify("meals", &signed_headers(now, "d-1", &unsigned_delivery), body, now);
        assert!(matches!(old, Err(IntakeError::Unauthorized(_))));
        // Where the delivery id ends is never in doubt: it has no '.'.
        let dotted =
            senders.verify("meals", &signed_headers(now, "d.1", &sign(b"s3cret", now, "d.1", body)), body, now);
        assert!(matches!(dotted, Err(IntakeError::Malformed(_))));
        assert!(is_delivery_id("evt_01J9Z-3:x") && !is_delivery_id("") && !is_delivery_id(&"d".repeat(257)));
    }

    #[test]
    fn the_delivery_memory_outlasts_the_timestamp_window() {
        assert!(DELIVERY_MEMORY > 2 * TIMESTAMP_TOLERANCE);
    }

    #[test]
    fn created_orders_become_cases_and_statuses_source_updates() {
        let created = order(
            r#"{"order_id":"M-1","status":"created","service":"meal_delivery","location":{"lon":-122.41,"lat":37.76},"flags":["elderly_alone"]}"#,
        );
        let Ok(Message::Report(event)) = created else { panic!("{created:?}") };
        assert_eq!(event.id, "commerce-meals-M-1");
        assert_eq!(event.source, "/commerce/meals");
        assert_eq!(event.data.category, "elderly_assistance");
        let Ok(Message::Act { action, case_ids, .. }) = order(r#"{"order_id":"M-1","status":"delivered"}"#) else {
            panic!()
        };
        assert!(matches!(action, Action::Resolve { .. }));
        assert_eq!(case_ids, ["commerce-meals-M-1"]);
        assert!(matches!(
            order(r#"{"order_id":"M-1","status":"cancelled"}"#),
            Ok(Message::Act { action: Action::Cancel { .. }, .. })
        ));
        assert!(matches!(order(r#"{"order_id":"M-1","status":"lost"}"#), Err(IntakeError::Invalid(_))));
        let lat91 = order(r#"{"order_id":"M-1","status":"created","service":"x","location":{"lon":0,"lat":91}}"#);
        assert!(matches!(lat91, Err(e) if e.code() == ErrorCode::Invalid && e.to_string().contains("lat")));
    }
}
