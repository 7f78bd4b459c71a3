//! What the console's handlers share: the [`Console`], started once with the service, and the
//! keys and sessions to check callers with ([`ConsoleState`]).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use axum::body::Bytes;
use axum::extract::FromRef;
use linkbus_bus::nats::{self, BucketFollower};
use linkbus_cases::book::CaseBook;
use linkbus_geo_data::Region;
use linkbus_routers::service::RouterState;
use prometheus::{IntCounterVec, IntGauge, Opts};
use rand::Rng as _;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::board::{communities_geojson, region_info};
use super::delivery::Compressed;
use crate::auth::session::{CONSOLE_ROLES, Session, Sessions};
use crate::auth::{Auth, Principal};
use crate::config::ConsoleConfig;
use crate::error::{ApiError, Error};
use crate::rate_limit::RateLimiter;

/// The KV bucket holding the console's session secret and its key holders' sign-outs, and the
/// tracking tokens' key (`linkbus_adapters::tracking`).
pub const BUCKET_CONSOLE: &str = "linkbus_console";
/// The key of the session secret in [`BUCKET_CONSOLE`].
const SECRET_KEY: &str = "session-secret";
/// The keys of the key holders' session generations in [`BUCKET_CONSOLE`]:
/// `signed-out.<role>.<hex id>`, the generation in decimal (see [`crate::auth::session`]).
const SIGNED_OUT: &str = "signed-out";
/// How long starting waits for the sign-outs to be read.
const SIGN_OUTS_WAIT: Duration = Duration::from_secs(60);
/// Content Security Policy of the page without a base map: everything from this origin only.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// What the console serves besides the API: the region as the map draws it, the live cases, the
/// volunteers, and the session secret.
pub struct Console {
    pub(super) metrics: ConsoleMetrics,
    pub(super) book: Arc<CaseBook>,
    pub(super) router: Arc<RouterState>,
    /// `/console/region` and `/console/region/communities`, compressed once.
    pub(super) region: Arc<Compressed>,
    pub(super) communities: Arc<Compressed>,
    pub(super) sessions: Arc<Sessions>,
    /// [`BUCKET_CONSOLE`]: sign-outs are written there.
    store: kv::Store,
    /// Sign-in attempts per client address, and per key tried (its SHA-256).
    pub(super) sign_ins_by_ip: RateLimiter<IpAddr>,
    pub(super) sign_ins_by_key: RateLimiter<[u8; 32]>,
    pub(super) config: ConsoleConfig,
    pub(super) csp: String,
    pub(super) stop: CancellationToken,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Console {
    /// The console for a running service: reads (or makes, the first time) the session secret in
    /// `store`, the [`BUCKET_CONSOLE`] bucket, follows the sign-outs kept there (until `stop`;
    /// returns once those there are read), and registers its metrics in `registry`. Its event
    /// streams end when `stop` is cancelled.
    pub async fn start(
        registry: &prometheus::Registry,
        store: &kv::Store,
        book: Arc<CaseBook>,
        router: Arc<RouterState>,
        region: &Region,
        console: &ConsoleConfig,
        stop: CancellationToken,
    ) -> Result<Self, Error> {
        let secret = bucket_secret(store, SECRET_KEY).await?;
        let sessions = Arc::new(Sessions::new(secret, console.session_hours));
        let read = CancellationToken::new();
        let (follow_store, follower, ready, until) =
            (store.clone(), SignOuts(sessions.clone()), read.clone(), stop.clone());
        tokio::spawn(async move {
            nats::follow_bucket_with(&follow_store, &format!("{SIGNED_OUT}.>"), 0, &ready, &until, follower).await;
        });
        tokio::time::timeout(SIGN_OUTS_WAIT, read.cancelled())
            .await
            .map_err(|_| Error::SignOuts { bucket: BUCKET_CONSOLE })?;
        let csp = match tile_origin(&console.tile_url) {
            Some(origin) => CSP.replace("img-src 'self' data:", &format!("img-src 'self' data: {origin}")),
            None => CSP.to_owned(),
        };
        let labels = super::labels::community_labels(region);
        let region_json = Compressed::new(Bytes::from(region_info(region, console, &labels).to_string()), true);
        let communities = Compressed::new(Bytes::from(communities_geojson(region, &labels).to_string()), true);
        // Compress what every sign-in loads now, aside, rather than at the first sign-in.
        let warm = [region_json.clone(), communities.clone(), super::assets::index().clone()];
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            for body in warm.iter().chain(super::assets::encoded()) {
                body.warm();
            }
            tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "console files compressed");
        });
        Ok(Self {
            metrics: ConsoleMetrics::new(registry).map_err(Error::Metrics)?,
            book,
            router,
            region: region_json,
            communities,
            sessions,
            store: store.clone(),
            sign_ins_by_ip: RateLimiter::new(console.sign_in_per_minute),
            sign_ins_by_key: RateLimiter::new(console.sign_in_per_minute),
            config: console.clone(),
            csp,
            stop,
        })
    }

    /// What signs and checks this console's session cookies: the API takes them in place of a
    /// key ([`crate::state::ApiState::with_console`]).
    pub(crate) fn sessions(&self) -> Arc<Sessions> {
        self.sessions.clone()
    }

    /// Ends `session` and every other session of its key holder, on every replica: raises the
    /// holder's generation in the bucket (revision-checked, so two sign-outs at once both count),
    /// then here at once (the other replicas follow the bucket).
    pub(super) async fn sign_out(&self, session: &Session) -> Result<(), ApiError> {
        let key = format!("{SIGNED_OUT}.{}", session.holder);
        let unavailable = |e: &dyn std::fmt::Display| {
            ApiError::Unavailable(format!("the session could not be ended (the console's bucket: {e}); try again"))
        };
        for _ in 0..16 {
            let entry = self.store.entry(&key).await.map_err(|e| unavailable(&e))?;
            let stored =
                entry.as_ref().filter(|e| e.operation == kv::Operation::Put).and_then(|e| generation(&e.value));
            let next = stored.unwrap_or(0).max(session.generation) + 1;
            let value = Bytes::from(next.to_string());
            let written = match &entry {
                Some(entry) => match self.store.update(&key, value, entry.revision).await {
                    Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                    written => written.map(|_| ()).map_err(|e| unavailable(&e)),
                },
                None => match self.store.create(&key, value).await {
                    Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => continue,
                    written => written.map(|_| ()).map_err(|e| unavailable(&e)),
                },
            };
            written?;
            self.sessions.raise(&session.holder, next);
            return Ok(());
        }
        Err(ApiError::Unavailable("the session could not be ended (signed out elsewhere meanwhile); try again".into()))
    }
}

/// A session generation as the bucket stores it.
fn generation(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value).ok()?.trim().parse().ok()
}

/// Follows the sign-outs of [`BUCKET_CONSOLE`] into [`Sessions`].
struct SignOuts(Arc<Sessions>);

impl BucketFollower for SignOuts {
    fn apply(&mut self, entry: kv::Entry) -> impl std::future::Future<Output = ()> + Send {
        let holder = entry.key.strip_prefix(SIGNED_OUT).and_then(|k| k.strip_prefix('.'));
        match (holder, generation(&entry.value)) {
            (Some(holder), Some(generation)) if entry.operation == kv::Operation::Put => {
                self.0.raise(holder, generation);
            }
            _ if entry.operation == kv::Operation::Put => {
                warn!(key = %entry.key, "unreadable console sign-out; ignored");
            }
            _ => {}
        }
        std::future::ready(())
    }
}

/// `linkbus_console_*`: open event streams, sign-ins.
#[derive(Debug, Clone)]
pub(super) struct ConsoleMetrics {
    pub(super) streams: IntGauge,
    pub(super) sign_ins: IntCounterVec,
}

impl ConsoleMetrics {
    fn new(registry: &prometheus::Registry) -> prometheus::Result<Self> {
        let streams =
            IntGauge::new("linkbus_console_event_streams", "Consoles following live cases (open event streams).")?;
        let sign_ins = IntCounterVec::new(
            Opts::new("linkbus_console_sign_ins_total", "Console sign-ins, by outcome (ok, refused, rate_limited)."),
            &["outcome"],
        )?;
        for outcome in ["ok", "refused", "rate_limited"] {
            sign_ins.with_label_values(&[outcome]);
        }
        registry.register(Box::new(streams.clone()))?;
        registry.register(Box::new(sign_ins.clone()))?;
        Ok(Self { streams, sign_ins })
    }
}

/// The 32-byte secret under `key` in `store` (the [`BUCKET_CONSOLE`] bucket), made now if there is
/// none yet (the first replica to write it wins; the others read it): the console's session
/// secret, the tracking tokens' key.
pub async fn bucket_secret(store: &kv::Store, key: &str) -> Result<[u8; 32], Error> {
    let mut fresh = [0u8; 32];
    rand::rng().fill_bytes(&mut fresh);
    match store.create(key, Bytes::copy_from_slice(&fresh)).await {
        Ok(_) => return Ok(fresh),
        Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
        Err(source) => return Err(Error::StoreSecret { bucket: BUCKET_CONSOLE, source }),
    }
    let stored = store
        .get(key)
        .await
        .map_err(|source| Error::ReadSecret { bucket: BUCKET_CONSOLE, source })?
        .ok_or(Error::SecretVanished { bucket: BUCKET_CONSOLE })?;
    <[u8; 32]>::try_from(stored.as_ref()).map_err(|_| Error::SecretLength { bucket: BUCKET_CONSOLE, len: stored.len() })
}

/// `scheme://host[:port]` of a tile URL template, for the Content Security Policy.
fn tile_origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split('/').next().filter(|h| !h.is_empty())?;
    let ok = |s: &str| s.chars().all(|c| c.is_ascii_alphanumeric() || "-.:[]{}".contains(c));
    if !(matches!(scheme, "http" | "https") && ok(host)) {
        return None;
    }
    // A placeholder such as `{s}` (sub-domains) may stand for anything: `*` in the policy.
    let mut origin = format!("{scheme}://");
    let mut in_placeholder = false;
    for c in host.chars() {
        match c {
            '{' => in_placeholder = true,
            '}' if in_placeholder => {
                in_placeholder = false;
                origin.push('*');
            }
            _ if in_placeholder => {}
            c => origin.push(c),
        }
    }
    Some(origin)
}

/// The state of the console's routes: the console, if it is served here (its routes answer 404
/// where it is not), and the keys and sessions callers are checked with.
#[derive(Clone)]
pub(super) struct ConsoleState {
    pub(super) console: Option<Arc<Console>>,
    pub(super) auth: Auth,
}

impl ConsoleState {
    /// The console, or 404 where it is off.
    pub(super) fn console(&self) -> Result<&Console, ApiError> {
        self.console.as_deref().ok_or_else(|| ApiError::NotFound("the console is off here ([console].enabled)".into()))
    }
}

impl FromRef<ConsoleState> for Auth {
    fn from_ref(state: &ConsoleState) -> Self {
        state.auth.clone()
    }
}

/// 403 unless the principal may watch every case.
pub(super) fn require_console(principal: &Principal) -> Result<(), ApiError> {
    if CONSOLE_ROLES.contains(&principal.role) {
        Ok(())
    } else {
        Err(ApiError::Forbidden("only dispatcher and operator keys may use the console".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_origins_are_checked() {
        assert_eq!(
            tile_origin("https://tiles.example.org/{z}/{x}/{y}.png").as_deref(),
            Some("https://tiles.example.org")
        );
        assert_eq!(tile_origin("http://10.1.2.3:8080/t/{z}/{x}/{y}.png").as_deref(), Some("http://10.1.2.3:8080"));
        assert_eq!(
            tile_origin("https://{s}.tile.example.org/{z}/{x}/{y}.png").as_deref(),
            Some("https://*.tile.example.org")
        );
        assert_eq!(tile_origin(""), None);
        assert_eq!(tile_origin("javascript:alert(1)"), None);
        assert_eq!(tile_origin("https://evil.org; script-src *"), None);
    }
}
