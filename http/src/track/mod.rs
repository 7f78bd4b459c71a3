//! The resident's tracking page (全程查询): a page served by `linkbus up` that a resident opens
//! from the link in their receipt, `/track/<case id>?t=<token>`, without an account. Its data
//! comes from `POST /api/track/{id}` and its rating goes to `POST /api/track/{id}/rating`
//! (`crate::api`'s module `track`), both answering the residents' public view
//! ([`crate::api::PublicCase`]).
//!
//! | endpoint | who | what |
//! |---|---|---|
//! | `GET /track`, `GET /track/{id}` | anyone | the page (`http/track/index.html`): it reads the token from the link, or asks for the last 4 digits of the reporter's phone |
//! | `GET /track/assets/{file}` | anyone | its script and styles |
//! | `GET /track/{id}/qr.svg?t=<token>` | holder of the case's token | the page's link as a QR code (SVG) |
//!
//! **Proofs** ([`Track::check`]): the case's tracking token ([`linkbus_adapters::tracking`]), or
//! the last 4 digits of its reporter's phone. A wrong one answers exactly as an unknown case does
//! (404), so nothing tells a guesser which cases exist. Module `lockout` counts misses: 5 wrong
//! phone digits lock that case's phone proof for an hour (the token still works, so a guesser
//! cannot lock its resident out), 10 wrong proofs of any kind lock the client address (an IPv6
//! /64) out of every case for an hour; locked requests are answered 429 with `Retry-After`. The
//! residents' per-address rate limit (`[api].public_rate_per_minute`) applies as well.
//!
//! **No CSRF token**: the page's requests carry their proof in the body and no cookie, so another
//! site's page could only send a proof it already has. **Headers**: a Content Security Policy
//! allowing only this origin's script, styles and images (no inline code), `nosniff`, no
//! framing, and `Referrer-Policy: no-referrer`, so the token in the page's address is not sent on.
//!
//! Counted in `linkbus_track_views_total` (by proof), `linkbus_track_refusals_total` (by reason:
//! `no_match`, `locked`) and `linkbus_track_lockouts_total` (by scope: `case`, `client`).

pub mod lockout;

use std::net::IpAddr;
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use linkbus_adapters::tracking::Tracking;
use linkbus_wire::CaseRecord;
use prometheus::{IntCounterVec, Opts, Registry};
use qrcode::QrCode;
use qrcode::render::svg;
use tracing::info;

use self::lockout::{Lockouts, Scope};
use crate::console::delivery::Compressed;
use crate::console::page::protect_with;
use crate::error::ApiError;
use crate::rate_limit::ClientIp;

/// The page's policy: only this origin's files, no inline code, no framing, no form posts.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
                   base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
/// Digits of the reporter's phone the page asks for.
pub const PHONE_DIGITS: usize = 4;

/// A proof that the caller may see a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    /// Its tracking token.
    Token(String),
    /// The last [`PHONE_DIGITS`] digits of its reporter's phone.
    Phone(String),
}

impl Proof {
    /// The one proof of a request's `token` and `phone`; 422 for none, both, or malformed ones.
    pub fn of(token: Option<String>, phone: Option<String>) -> Result<Self, ApiError> {
        match (token, phone) {
            (Some(token), None) if !token.is_empty() && token.len() <= 64 => Ok(Self::Token(token)),
            (None, Some(phone)) if phone.len() == PHONE_DIGITS && phone.bytes().all(|b| b.is_ascii_digit()) => {
                Ok(Self::Phone(phone))
            }
            (Some(_), None) => Err(ApiError::Invalid("token: 1 to 64 characters".into())),
            (None, Some(_)) => Err(ApiError::Invalid(format!("phone: the last {PHONE_DIGITS} digits"))),
            _ => Err(ApiError::Invalid("give either token or phone".into())),
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Self::Token(_) => "token",
            Self::Phone(_) => "phone",
        }
    }
}

/// The tracking page's state: the tokens' key, the misses, the counters.
#[derive(Debug)]
pub struct Track {
    tracking: Arc<Tracking>,
    lockouts: Lockouts,
    metrics: TrackMetrics,
}

#[derive(Debug, Clone)]
struct TrackMetrics {
    views: IntCounterVec,
    refusals: IntCounterVec,
    lockouts: IntCounterVec,
}

impl TrackMetrics {
    fn new(registry: &Registry) -> prometheus::Result<Self> {
        let counter = |name: &str, help: &str, label: &str, values: &[&str]| -> prometheus::Result<IntCounterVec> {
            let counter = IntCounterVec::new(Opts::new(name, help), &[label])?;
            for value in values {
                counter.with_label_values(&[*value]);
            }
            registry.register(Box::new(counter.clone()))?;
            Ok(counter)
        };
        Ok(Self {
            views: counter(
                "linkbus_track_views_total",
                "Tracking page views (and ratings) let through, by proof (token, phone).",
                "proof",
                &["token", "phone"],
            )?,
            refusals: counter(
                "linkbus_track_refusals_total",
                "Tracking page requests refused, by reason (no_match: unknown case or wrong proof; locked).",
                "reason",
                &["no_match", "locked"],
            )?,
            lockouts: counter(
                "linkbus_track_lockouts_total",
                "Tracking page lockouts begun, by scope (case: its phone proof; client: an address).",
                "scope",
                &["case", "client"],
            )?,
        })
    }
}

impl Track {
    /// The page's state, with tokens checked by `tracking`, counting into `registry`.
    pub fn new(tracking: Arc<Tracking>, registry: &Registry) -> prometheus::Result<Self> {
        Ok(Self { tracking, lockouts: Lockouts::default(), metrics: TrackMetrics::new(registry)? })
    }

    /// Lets a caller at `ip` with `proof` see case `case_id` (the caller's own case, found by the
    /// id it asked for; `None`: no such case) whose reporter's phone is `phone`, or refuses: 429
    /// while the caller (or, for the phone proof, the case) is locked out, else 404 for an
    /// unknown case or a wrong proof, counting the miss.
    pub fn check(&self, case_id: Option<&str>, phone: Option<&str>, proof: &Proof, ip: IpAddr) -> Result<(), ApiError> {
        let now = Instant::now();
        let client = Scope::client(ip);
        let case_scope = case_id.filter(|_| matches!(proof, Proof::Phone(_))).map(|id| Scope::Case(id.to_owned()));
        let locked = self
            .lockouts
            .locked(&client, now)
            .or_else(|| case_scope.as_ref().and_then(|scope| self.lockouts.locked(scope, now)));
        if let Some(wait) = locked {
            self.metrics.refusals.with_label_values(&["locked"]).inc();
            return Err(ApiError::rate_limited(wait));
        }
        let matches = case_id.is_some_and(|id| match proof {
            Proof::Token(token) => self.tracking.verify(id, token),
            Proof::Phone(digits) => phone_ends_with(phone, digits),
        });
        if matches {
            self.metrics.views.with_label_values(&[proof.label()]).inc();
            return Ok(());
        }
        self.metrics.refusals.with_label_values(&["no_match"]).inc();
        for (scope, label) in [(Some(client), "client"), (case_scope, "case")] {
            if let Some(scope) = scope
                && self.lockouts.miss(scope, now)
            {
                info!(scope = label, %ip, case_id = case_id.unwrap_or_default(), "tracking page locked");
                self.metrics.lockouts.with_label_values(&[label]).inc();
            }
        }
        Err(not_found())
    }
}

/// What a wrong proof and an unknown case are both answered.
fn not_found() -> ApiError {
    ApiError::NotFound("no such request, or the proof does not match it".into())
}

/// The reporter's phone of `case`, if it has one.
pub fn reporter_phone(case: &CaseRecord) -> Option<&str> {
    case.case.reporter.as_ref().and_then(|r| r.phone.as_deref())
}

/// Whether `phone` ends with `digits` (its digits only: `+86 138-0000 1234` ends with `1234`);
/// no phone matches nothing.
fn phone_ends_with(phone: Option<&str>, digits: &str) -> bool {
    let own: String = phone.unwrap_or_default().chars().filter(char::is_ascii_digit).collect();
    own.len() >= PHONE_DIGITS && own.ends_with(digits)
}

/// The page's files, embedded at build time.
const PAGE: &[u8] = include_bytes!("../../track/index.html");
const FILES: &[(&str, &str, &[u8])] = &[
    ("track.js", "text/javascript; charset=utf-8", include_bytes!("../../track/track.js")),
    ("track.css", "text/css; charset=utf-8", include_bytes!("../../track/track.css")),
];

fn compressed() -> &'static [Arc<Compressed>] {
    static ALL: LazyLock<Vec<Arc<Compressed>>> = LazyLock::new(|| {
        std::iter::once(PAGE)
            .chain(FILES.iter().map(|f| f.2))
            .map(|b| Compressed::new(Bytes::from_static(b), true))
            .collect()
    });
    &ALL
}

/// The page's routes, on `track` (404 without: the service runs without tracking).
pub(crate) fn routes<S: Clone + Send + Sync + 'static>(track: Option<Arc<Track>>) -> Router<S> {
    Router::new()
        .route("/track", get(page))
        .route("/track/{id}", get(page))
        .route("/track/assets/{file}", get(asset))
        .route("/track/{id}/qr.svg", get(qr))
        .with_state(track)
}

/// How long a browser keeps the page and its files before asking again (they change only with
/// a new build; `ETag` makes the asking cheap).
const CACHING: &str = "no-cache";

async fn page(State(track): State<Option<Arc<Track>>>, headers: HeaderMap) -> Result<Response, ApiError> {
    present(&track)?;
    let mut response = compressed()[0].respond(&headers, "text/html; charset=utf-8", CACHING).await;
    protect_with(CSP, &mut response);
    Ok(response)
}

async fn asset(
    State(track): State<Option<Arc<Track>>>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    present(&track)?;
    let at = FILES.iter().position(|f| f.0 == file).ok_or_else(|| ApiError::NotFound(format!("no file {file}")))?;
    let mut response = compressed()[at + 1].respond(&headers, FILES[at].1, CACHING).await;
    protect_with(CSP, &mut response);
    Ok(response)
}

fn present(track: &Option<Arc<Track>>) -> Result<&Arc<Track>, ApiError> {
    track.as_ref().ok_or_else(|| ApiError::NotFound("the tracking page is off".into()))
}

/// `?t=` of the QR code's address.
#[derive(Debug, serde::Deserialize)]
struct QrQuery {
    t: String,
}

/// `GET /track/{id}/qr.svg?t=<token>`: the page's link as a QR code, for the case's token holder
/// only (so it is no open QR service); checked and counted as the page's proofs are.
async fn qr(
    State(track): State<Option<Arc<Track>>>,
    Path(id): Path<String>,
    ClientIp(ip): ClientIp,
    query: Result<Query<QrQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let track = present(&track)?;
    let Query(QrQuery { t }) = query.map_err(|e| ApiError::Invalid(format!("t: the tracking token ({e})")))?;
    let proof = Proof::of(Some(t), None)?;
    // The case itself is not needed: the token is checked against the id it names.
    track.check(Some(id.as_str()).filter(|id| linkbus_wire::is_event_id(id)), None, &proof, ip)?;
    let code = QrCode::new(track.tracking.url(&id).as_bytes())
        .map_err(|e| ApiError::Invalid(format!("the link does not fit a QR code: {e}")))?;
    let image = code.render::<svg::Color<'_>>().min_dimensions(200, 200).quiet_zone(true).build();
    let mut response = ([(header::CONTENT_TYPE, HeaderValue::from_static("image/svg+xml"))], image).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=86400"));
    protect_with(CSP, &mut response);
    Ok(response)
}
