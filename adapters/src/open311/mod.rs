//! Open311 GeoReport v2 (<http://wiki.open311.org/GeoReport_v2>), the API of 311 / 12345
//! citizen-request apps, served at `/open311/v2/` so that a client of the standard works
//! unchanged:
//!
//! | method and path | what |
//! |---|---|
//! | `GET services.{json,xml}` | the services: the configured `service_code` map, and the region's public-service categories (their id as the code) |
//! | `GET services/{code}.{json,xml}` | a service definition (no attributes: every service is `metadata=false`) |
//! | `POST requests.{json,xml}` | a new request, form-encoded as the spec says (or `multipart/form-data`, text fields only: a media file is refused, 415); answers its `service_request_id` |
//! | `GET requests.{json,xml}` | requests by `service_request_id` (comma-separated), or filtered by `start_date`, `end_date`, `status`, `service_code` |
//! | `GET requests/{id}.{json,xml}` | one request, with the status linkbus knows |
//!
//! Errors are the spec's: a list of `{code, description}` (`<errors><error>…` in XML), `code`
//! being the HTTP status. A request refused for its content (malformed, oversized, wrongly
//! encoded, out of range) is also kept in `deadletter.adapter_open311` with the reason.
//!
//! **Keys.** `api_key` (the form field, a query parameter, or `Authorization: Bearer`) is an API
//! key of the linkbus configuration: a source key speaking for this adapter's source may post.
//! Reading needs no key, as the spec says (the answers carry no reporter data); with
//! `public_reads = false` it takes this source's key, a dispatcher's or an operator's. Posting
//! and reading take from the residents' per-address rate limit. A `service_code` not among the
//! services is answered 404, as the spec says.
//!
//! **Tracking.** With `[api].public_url`'s tracking on, the answer to a POST also carries
//! `tracking_token`, `tracking_url` and `tracking_qr` (extra fields, as GeoReport v2 allows): the
//! resident's tracking page and its proof ([`crate::tracking`]).
//!
//! **Ids.** The `service_request_id` is a digest of what was posted (every field but
//! `api_key`), so the same request posted twice (a double tap, a retry after a timeout) is one
//! request and one case (`open311-<id>`).
//!
//! **Datum.** A non-standard `datum` field (`wgs84`, the default; `gcj02`; `bd09`) lets Chinese
//! 12345 apps post the coordinates their maps give; the bus converts them to WGS-84, and answers
//! `lat`/`long` in WGS-84 as the spec requires.
//!
//! Here: the adapter, its routes and who may use them; in `config.rs` its table
//! (`[adapters.open311]`), in `form.rs` what a resident posts and the case it becomes, in
//! `render.rs` the answers, in JSON or XML.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{Method, Request, StatusCode};
use axum::response::Response;
use axum::routing::any;
use bytes::Bytes;
use futures::future::BoxFuture;
use jiff::Timestamp;
use linkbus_cases::book::CaseFilter;
use linkbus_wire::http_error::ErrorCode;
use linkbus_wire::{CaseRecord, CaseState, SourceSystem};
use tracing::{info, warn};

use crate::adapter::{
    Adapter, AdapterConfig, BuildContext, BuildError, ConfigError, RegionCategory, RouteContext, check_categories,
    check_source_and_priority,
};
use crate::intake::{Caller, Gate, Intake, event_id};
use crate::kind::AdapterKind;
use crate::vocabulary::CategoryMap;
use crate::web::{self, BodyError, Xml};

mod config;
mod form;
mod render;

pub use config::Open311Config;
pub use form::{Form, MAX_ATTRIBUTES, MAX_DESCRIPTION, RequestError, is_form, parse_form, read_fields};
use form::{MULTIPART, PREFIX, Posted, form_value};
pub use render::{Created, Format, Open311Error, RequestView, Service};
use render::{
    error, json_response, render_created, render_requests, render_services, split_format, unknown_format, xml_response,
};

/// Largest body accepted on `POST requests`, bytes.
pub const MAX_BODY: usize = 64 * 1024;
/// Most requests `GET requests` answers (the spec's default limit).
pub const MAX_LISTED: usize = 1000;
/// Days `GET requests` looks back without a `start_date` (the spec's default).
pub const DEFAULT_DAYS: i64 = 90;

impl AdapterConfig for Open311Config {
    fn kind(&self) -> AdapterKind {
        AdapterKind::Open311
    }

    fn enabled(&self) -> bool {
        self.enabled
    }

    fn validate(&self) -> Result<(), ConfigError> {
        check_source_and_priority(AdapterKind::Open311, &self.source, self.priority)?;
        check_categories(AdapterKind::Open311, "categories", &self.categories)
    }

    fn category_maps(&self) -> Vec<&CategoryMap> {
        vec![&self.categories]
    }

    fn build<'a>(&'a self, cx: &'a BuildContext) -> BoxFuture<'a, Result<Arc<dyn Adapter>, BuildError>> {
        let open311 = Open311 { config: self.clone(), intake: cx.intake.for_adapter(AdapterKind::Open311) };
        Box::pin(std::future::ready(Ok(Arc::new(open311) as Arc<dyn Adapter>)))
    }
}

/// The running Open311 adapter: its configuration and the intake it publishes through.
#[derive(Debug)]
pub struct Open311 {
    config: Open311Config,
    intake: Intake,
}

impl Adapter for Open311 {
    fn kind(&self) -> AdapterKind {
        AdapterKind::Open311
    }

    /// Its routes, under `/open311/v2/`, offering the region's public-service categories as
    /// services where configured.
    fn routes(self: Arc<Self>, cx: &RouteContext<'_>) -> Router {
        let public: Vec<&RegionCategory> =
            cx.categories.iter().filter(|c| c.system == SourceSystem::PublicService).collect();
        let served = Served {
            services: services(&self.config, &public),
            config: self.config.clone(),
            intake: self.intake.clone(),
            gate: cx.gate.clone(),
        };
        Router::new()
            .route("/open311/v2/{resource}", any(resource))
            .route("/open311/v2/services/{code}", any(service_definition))
            .route("/open311/v2/requests/{id}", any(one_request))
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .with_state(Arc::new(served))
    }
}

/// The Open311 endpoint: its configuration, its services, and what it needs of linkbus.
struct Served {
    config: Open311Config,
    services: Vec<Service>,
    intake: Intake,
    gate: Arc<dyn Gate>,
}

impl Served {
    /// The service name and code a case is shown with: the first configured code mapping to its
    /// category, else the category itself.
    fn service_of(&self, category: &str) -> (Option<String>, String) {
        let found = self.services.iter().find(|s| s.keywords == category);
        match found {
            Some(s) => (Some(s.service_name.clone()), s.service_code.clone()),
            None => (None, category.to_owned()),
        }
    }

    /// Every case whose first report came from this adapter's source, newest first.
    fn own_cases(&self) -> Vec<CaseRecord> {
        let mut all = self.intake.cases().list(&CaseFilter::default());
        all.retain(|r| r.reports.first().is_some_and(|first| first.source == self.config.source));
        all
    }
}

fn services(config: &Open311Config, categories: &[&RegionCategory]) -> Vec<Service> {
    let name_of = |id: &str| categories.iter().find(|c| c.id == id).map(|c| c.name.clone());
    let mut out: Vec<Service> = config
        .categories
        .map
        .iter()
        .map(|(code, category)| Service {
            service_code: code.clone(),
            service_name: name_of(category).unwrap_or_else(|| code.clone()),
            description: format!("Routed as {category}."),
            metadata: false,
            kind: "realtime",
            keywords: category.clone(),
            group: "mapped".into(),
        })
        .collect();
    if config.region_services {
        out.extend(categories.iter().filter(|c| !config.categories.map.contains_key(&c.id)).map(|c| Service {
            service_code: c.id.clone(),
            service_name: c.name.clone(),
            description: format!("Routed as {}.", c.id),
            metadata: false,
            kind: "realtime",
            keywords: c.id.clone(),
            group: "region".into(),
        }));
    }
    out
}

type Shared = State<Arc<Served>>;

async fn resource(State(o): Shared, Path(segment): Path<String>, request: Request<Body>) -> Response {
    let Some((name, format)) = split_format(&segment) else { return unknown_format() };
    let method = request.method().clone();
    let answer = match (name, &method) {
        ("services", &Method::GET) => Ok(render_services(&o.services, format)),
        ("requests", &Method::POST) => post_request(&o, format, request).await,
        ("requests", &Method::GET) => list_requests(&o, format, &request),
        ("services" | "requests", _) => Err(Open311Error::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")),
        _ => Err(Open311Error::new(StatusCode::NOT_FOUND, format!("no such resource {name:?}"))),
    };
    answer.unwrap_or_else(|e| error(format, e))
}

async fn service_definition(State(o): Shared, Path(segment): Path<String>, request: Request<Body>) -> Response {
    let Some((code, format)) = split_format(&segment) else { return unknown_format() };
    if request.method() != Method::GET {
        return error(format, Open311Error::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"));
    }
    let Some(service) = o.services.iter().find(|s| s.service_code == code) else {
        return error(format, Open311Error::new(StatusCode::NOT_FOUND, format!("no service_code {code:?}")));
    };
    match format {
        Format::Json => {
            let body = serde_json::json!({ "service_code": service.service_code, "attributes": [] });
            json_response(StatusCode::OK, &body)
        }
        Format::Xml => {
            let mut xml = Xml::new();
            xml.open("service_definition").field("service_code", Some(&service.service_code));
            xml.open("attributes").close("attributes").close("service_definition");
            xml_response(StatusCode::OK, xml)
        }
    }
}

async fn one_request(State(o): Shared, Path(segment): Path<String>, request: Request<Body>) -> Response {
    let Some((id, format)) = split_format(&segment) else { return unknown_format() };
    get_request(&o, id, format, &request).unwrap_or_else(|e| error(format, e))
}

fn get_request(o: &Served, id: &str, format: Format, request: &Request<Body>) -> Result<Response, Open311Error> {
    if request.method() != Method::GET {
        return Err(Open311Error::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"));
    }
    let pairs = query_pairs(request)?;
    may_read(o, request, &pairs)?;
    let found = request_view(o, id)
        .ok_or_else(|| Open311Error::new(StatusCode::NOT_FOUND, format!("no service request {id:?}")))?;
    Ok(render_requests(&[found], format))
}

/// Refuses a read without a key that may read this source's requests (unless reads are
/// public), then takes it from the rate limit.
fn may_read(o: &Served, request: &Request<Body>, pairs: &[(String, String)]) -> Result<(), Open311Error> {
    if !o.config.public_reads {
        let key = pairs.iter().find(|(k, _)| k == "api_key").map(|(_, v)| v.clone());
        authorize(o, key.or_else(|| web::bearer(request.headers())).as_deref(), "read")?;
    }
    admit(o, request)
}

/// Refuses a key that may not `what` (`post`, `read`) this adapter's requests: a source key
/// must speak for its source; dispatcher and operator keys may read.
fn authorize(o: &Served, key: Option<&str>, what: &str) -> Result<(), Open311Error> {
    let forbidden = |why: String| Err(Open311Error::new(StatusCode::FORBIDDEN, why));
    match key.map(|k| o.gate.caller(k)) {
        None => forbidden(format!("an api_key is required to {what} requests")),
        Some(None) => forbidden("invalid api_key".into()),
        Some(Some(Caller::Source(source))) if source == o.config.source => Ok(()),
        Some(Some(Caller::Staff)) if what == "read" => Ok(()),
        Some(Some(_)) => forbidden(format!("this api_key may not {what} Open311 requests")),
    }
}

fn admit(o: &Served, request: &Request<Body>) -> Result<(), Open311Error> {
    o.gate.admit(web::client_ip(request)).map_err(|wait| {
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        Open311Error {
            status: StatusCode::TOO_MANY_REQUESTS,
            description: format!("too many requests from this address; retry in {secs} s"),
            retry_after: Some(secs),
        }
    })
}

fn query_pairs(request: &Request<Body>) -> Result<Vec<(String, String)>, Open311Error> {
    parse_form(request.uri().query().unwrap_or_default().as_bytes())
        .map_err(|e| Open311Error::bad(format!("query: {e}")))
}

fn list_requests(o: &Served, format: Format, request: &Request<Body>) -> Result<Response, Open311Error> {
    let pairs = query_pairs(request)?;
    may_read(o, request, &pairs)?;
    let get = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim()).filter(|v| !v.is_empty());
    if let Some(ids) = get("service_request_id") {
        let views: Vec<RequestView> = ids
            .split(',')
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .take(MAX_LISTED)
            .filter_map(|id| request_view(o, id))
            .collect();
        return Ok(render_requests(&views, format));
    }
    let time = |name: &str| -> Result<Option<Timestamp>, Open311Error> {
        get(name)
            .map(|v| {
                v.parse::<Timestamp>().map_err(|_| Open311Error::bad(format!("{name} {v:?} is not a w3c date-time")))
            })
            .transpose()
    };
    let end = time("end_date")?.unwrap_or_else(Timestamp::now);
    let start = match time("start_date")? {
        Some(start) => start,
        None => end.checked_sub(jiff::SignedDuration::from_hours(24 * DEFAULT_DAYS)).unwrap_or(end),
    };
    let statuses: Vec<&str> = get("status").map(|s| s.split(',').map(str::trim).collect()).unwrap_or_default();
    if let Some(bad) = statuses.iter().find(|s| !matches!(**s, "open" | "closed")) {
        return Err(Open311Error::bad(format!("status {bad:?}: open or closed")));
    }
    let codes: Vec<&str> = get("service_code").map(|s| s.split(',').map(str::trim).collect()).unwrap_or_default();
    let views: Vec<RequestView> = o
        .own_cases()
        .iter()
        .filter(|r| r.created_at >= start && r.created_at <= end)
        .map(|own| view(o, own))
        .filter(|v| statuses.is_empty() || statuses.contains(&v.status))
        .filter(|v| codes.is_empty() || codes.contains(&v.service_code.as_str()))
        .take(MAX_LISTED)
        .collect();
    Ok(render_requests(&views, format))
}

/// The request `id` of this adapter's source, if there is one.
fn request_view(o: &Served, id: &str) -> Option<RequestView> {
    let own = o.intake.cases().get(&event_id(PREFIX, id))?;
    own.reports.first().is_some_and(|first| first.source == o.config.source).then(|| view(o, &own))
}

/// What a resident sees of their request: what they posted (`own`, the request's record), and
/// the state and the department's last word of the case handling it (the case it was merged
/// into, if it was); no contact details.
fn view(o: &Served, own: &CaseRecord) -> RequestView {
    let merged_into = own.merged_into.as_deref().and_then(|primary| o.intake.cases().get(primary));
    let r = merged_into.as_ref().unwrap_or(own);
    let status = match r.state {
        CaseState::Resolved | CaseState::Closed | CaseState::Cancelled => "closed",
        _ => "open",
    };
    let note = r
        .timeline
        .iter()
        .rev()
        .find(|e| matches!(e.event.as_str(), "progress" | "resolved" | "closed") && e.note.is_some())
        .and_then(|e| e.note.clone());
    let status_notes = note.or_else(|| Some(state_words(r.state).to_owned()));
    let agency = crate::tracking::department_name(r);
    let (service_name, service_code) = o.service_of(&own.case.category);
    // Whole seconds, UTC: the w3c form every client parses (some refuse fractions).
    let time = |t: Timestamp| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    RequestView {
        service_request_id: own.case.source_id.clone(),
        status,
        status_notes,
        service_name,
        service_code,
        description: own.case.description.clone(),
        agency_responsible: agency,
        service_notice: Some(o.config.service_notice.clone()).filter(|n| !n.is_empty()),
        requested_datetime: time(own.case.reported_at),
        updated_datetime: time(r.updated_at),
        expected_datetime: r.resolve_by.map(time),
        address: own.case.address.clone(),
        address_id: None,
        zipcode: None,
        lat: own.case.location.lat,
        lon: own.case.location.lon,
        media_url: own.case.media_url.clone(),
    }
}

fn state_words(state: CaseState) -> &'static str {
    match state {
        CaseState::Reported => "received",
        CaseState::Routed => "routed to the responsible department; waiting for it to accept",
        CaseState::Accepted => "accepted by the department",
        CaseState::Rejected => "being reassigned by the dispatchers",
        CaseState::InProgress => "work in progress",
        CaseState::Resolved => "resolved",
        CaseState::Closed => "closed",
        CaseState::Cancelled => "cancelled",
    }
}

async fn post_request(o: &Served, format: Format, request: Request<Body>) -> Result<Response, Open311Error> {
    admit(o, &request)?;
    let original = format!("POST {}", request.uri().path());
    let query = request.uri().query().map(str::to_owned);
    let headers = request.headers().clone();
    let bytes = match web::read_body(request).await {
        Ok(bytes) => bytes,
        Err(BodyError::TooLarge) => {
            let mut reason = format!("the body is larger than {MAX_BODY} bytes");
            if web::media_type(&headers) == MULTIPART {
                reason.push_str(" (a media file is not stored here: post its link as media_url)");
            }
            o.intake.dead_letter(ErrorCode::TooLarge, &reason, &original, Bytes::new()).await;
            return Err(Open311Error::new(StatusCode::PAYLOAD_TOO_LARGE, reason));
        }
        Err(e @ BodyError::Broken(_)) => return Err(Open311Error::bad(e.to_string())),
    };
    let refuse = async |code: ErrorCode, e: Open311Error| {
        o.intake.dead_letter(code, &e.description, &original, bytes.clone()).await;
        e
    };
    let fields = read_fields(&headers, bytes.clone()).await;
    // The key first: only a caller that may post has its content checked (and dead-lettered).
    // Clients put it in the form, as the spec says (a url-encoded form whose other fields are
    // broken still gives it), a few in the query string.
    let in_body = || match &fields {
        Ok(form) => form.pairs.iter().find(|(name, _)| name == "api_key").map(|(_, key)| key.clone()),
        Err(_) => form_value(&bytes, "api_key"),
    };
    let key = web::bearer(&headers)
        .or_else(in_body)
        .or_else(|| query.as_deref().and_then(|q| form_value(q.as_bytes(), "api_key")));
    if let (None, Err(e)) = (&key, &fields) {
        let why = format!("an api_key is required to post requests (none could be read from the body: {e})");
        return Err(Open311Error::new(StatusCode::FORBIDDEN, why));
    }
    authorize(o, key.as_deref(), "post")?;
    let unsupported = |e: RequestError| Open311Error::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, e.to_string());
    let pairs = match fields {
        Ok(Form { file: Some(name), .. }) => {
            return Err(refuse(ErrorCode::Malformed, unsupported(RequestError::MediaFile(name))).await);
        }
        Ok(Form { pairs, file: None }) => pairs,
        Err(e @ RequestError::ContentType(_)) => return Err(refuse(ErrorCode::Malformed, unsupported(e)).await),
        Err(e) => return Err(refuse(ErrorCode::Malformed, Open311Error::bad(e.to_string())).await),
    };
    let posted = match Posted::read(&pairs) {
        Ok(posted) => posted,
        Err(e) => return Err(refuse(ErrorCode::Invalid, Open311Error::bad(e.to_string())).await),
    };
    // GeoReport v2: a service_code the server does not offer is 404, not taken as something else.
    // (A missing code is the form's fault, 400, said by `event`.)
    let code = posted.service_code();
    let service = o.services.iter().find(|s| s.service_code == code);
    if service.is_none() && !code.is_empty() {
        let shown: String = code.chars().take(64).collect();
        let e = Open311Error::new(
            StatusCode::NOT_FOUND,
            format!("service_code {shown:?} not found (GET services lists them)"),
        );
        return Err(refuse(ErrorCode::Invalid, e).await);
    }
    let category = service.map_or("", |s| s.keywords.as_str());
    let event = match posted.event(&o.config, category, Timestamp::now()) {
        Ok(event) => event,
        Err(e) => return Err(refuse(ErrorCode::Invalid, Open311Error::bad(e.to_string())).await),
    };
    let submitted = o.intake.submit(&event).await.map_err(|e| {
        warn!(error = %e, "cannot publish an Open311 request");
        Open311Error::new(StatusCode::SERVICE_UNAVAILABLE, "the bus is unavailable; try again")
    })?;
    info!(
        case_id = %submitted.case_id,
        duplicate = submitted.duplicate,
        category = %event.data.category,
        "Open311 request taken"
    );
    let created = Created {
        service_request_id: event.data.source_id.clone(),
        service_notice: Some(o.config.service_notice.clone()).filter(|n| !n.is_empty()),
        account_id: posted.account_id,
        tracking_token: submitted.tracking.as_ref().map(|t| t.token.clone()),
        tracking_url: submitted.tracking.as_ref().map(|t| t.url.clone()),
        tracking_qr: submitted.tracking.map(|t| t.qr),
    };
    Ok(render_created(&created, format))
}
