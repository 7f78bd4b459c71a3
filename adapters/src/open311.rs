//! Open311 GeoReport v2 (<http://wiki.open311.org/GeoReport_v2>), the API of 311 / 12345
//! citizen-request apps, served at `/open311/v2/` so that a client of the standard works
//! unchanged:
//!
//! | method and path | what |
//! |---|---|
//! | `GET services.{json,xml}` | the services: the configured `service_code` map, and the region's public-service categories (their id as the code) |
//! | `GET services/{code}.{json,xml}` | a service definition (no attributes: every service is `metadata=false`) |
//! | `POST requests.{json,xml}` | a new request, form-encoded as the spec says; answers its `service_request_id` |
//! | `GET requests.{json,xml}` | requests by `service_request_id` (comma-separated), or filtered by `start_date`, `end_date`, `status`, `service_code` |
//! | `GET requests/{id}.{json,xml}` | one request, with the status linkbus knows |
//!
//! Errors are the spec's: a list of `{code, description}` (`<errors><error>…` in XML), `code`
//! being the HTTP status. A request refused for its content (malformed, oversized, wrongly
//! encoded, out of range) is also kept in `deadletter.adapter_open311` with the reason.
//!
//! **Keys.** `api_key` (the form field, a query parameter, or `Authorization: Bearer`) is an API
//! key of the linkbus configuration: a source key speaking for this adapter's source may post
//! and read; dispatcher and operator keys may read. Reading without a key is refused unless
//! `public_reads` is set. Posting and reading take from the residents' per-address rate limit.
//!
//! **Ids.** The `service_request_id` is a digest of what was posted (every field but
//! `api_key`), so the same request posted twice (a double tap, a retry after a timeout) is one
//! request and one case (`open311-<id>`).
//!
//! **Datum.** A non-standard `datum` field (`wgs84`, the default; `gcj02`; `bd09`) lets Chinese
//! 12345 apps post the coordinates their maps give; the bus converts them to WGS-84, and answers
//! `lat`/`long` in WGS-84 as the spec requires.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use bytes::Bytes;
use jiff::Timestamp;
use linkbus_wire::{
    self as wire, CaseRecord, CaseReport, CaseState, CloudEvent, Contact, Datum, Location, SourceSystem,
};
use percent_encoding::percent_decode;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::intake::{Caller, Gate, Intake, digest_id, event_id};
use crate::vocabulary::CategoryMap;
use crate::web::{self, BodyError, Xml};

/// The adapter's name: its metrics' label, its dead letters' stage (`deadletter.adapter_open311`)
/// and the event id prefix (`open311-<id>`).
pub const STAGE: &str = "open311";
/// Largest body accepted on `POST requests`, bytes.
pub const MAX_BODY: usize = 64 * 1024;
/// Longest `description`, characters (the spec's limit).
pub const MAX_DESCRIPTION: usize = 4000;
/// Most requests `GET requests` answers (the spec's default limit).
pub const MAX_LISTED: usize = 1000;
/// Days `GET requests` looks back without a `start_date` (the spec's default).
pub const DEFAULT_DAYS: i64 = 90;
/// Most `attribute[…]` fields a request may carry.
pub const MAX_ATTRIBUTES: usize = 32;

/// `[adapters.open311]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Open311Config {
    /// Serve Open311 at `/open311/v2/` on the API's address.
    pub enabled: bool,
    /// The CloudEvents `source` of its requests; a source key must speak for it (`[[api.keys]]`
    /// `source`) to post, and may read only its requests.
    pub source: String,
    /// `service_code` → bus category. A code not in the map (nor a region category) is still
    /// taken: routed as the map's `unknown` category, flagged `unmapped_category`.
    pub categories: CategoryMap,
    /// Also offer every public-service category of the region as a service, its id as the code.
    pub region_services: bool,
    /// The priority of its cases, 1 (life-threatening) to 4 (low); the routing's priority rules
    /// may raise it.
    pub priority: u8,
    /// Answer `GET requests…` without a key (as most public 311 servers do). Off: a source,
    /// dispatcher or operator key is needed, as for `/api/requests/…`.
    pub public_reads: bool,
    /// The `service_notice` of every request: what the resident can expect.
    pub service_notice: String,
}

impl Default for Open311Config {
    fn default() -> Self {
        Self {
            enabled: true,
            source: "/open311".into(),
            categories: CategoryMap::from_pairs(DEFAULT_SERVICES.iter().copied()),
            region_services: true,
            priority: 3,
            public_reads: false,
            service_notice: "Routed to the responsible department of your community, which must accept it \
                             within the deadline of its priority."
                .into(),
        }
    }
}

/// The shipped `service_code` map (kept equal to `ops/linkbus.example.toml`).
const DEFAULT_SERVICES: &[(&str, &str)] = &[
    ("POTHOLE", "street_defects"),
    ("STREETLIGHT", "streetlights"),
    ("GRAFFITI", "graffiti_public_property"),
    ("ILLEGAL_DUMPING", "street_and_sidewalk_cleaning"),
    ("SEWER", "sewer_issues"),
    ("ABANDONED_VEHICLE", "abandoned_vehicle"),
    ("NOISE", "noise_report"),
    ("TREE", "tree_maintenance"),
];

impl Open311Config {
    /// Checks the values; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        crate::check_source_and_priority(&self.source, self.priority)?;
        self.categories.validate().map_err(|e| format!("categories: {e}"))
    }
}

/// A category of the region, as a service offers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionCategory {
    /// The bus category id.
    pub id: String,
    /// Its name, e.g. `Street Defects`.
    pub name: String,
}

/// One service of `GET services`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Service {
    /// The code to post.
    pub service_code: String,
    /// Human-readable name.
    pub service_name: String,
    /// What it is for.
    pub description: String,
    /// Whether it has attributes (never, here).
    pub metadata: bool,
    /// `realtime`: a posted request gets its id at once.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The bus category it is routed as.
    pub keywords: String,
    /// Grouping for clients' menus.
    pub group: String,
}

/// The answer to `POST requests`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Created {
    /// The request's id.
    pub service_request_id: String,
    /// What the resident can expect.
    pub service_notice: Option<String>,
    /// The `account_id` posted, if any.
    pub account_id: Option<String>,
}

/// One request as `GET requests` answers it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestView {
    /// The id.
    pub service_request_id: String,
    /// `open` or `closed` (resolved, closed and cancelled cases are closed).
    pub status: &'static str,
    /// What the department last told the reporter, or where the case stands.
    pub status_notes: Option<String>,
    /// The service's name.
    pub service_name: Option<String>,
    /// The service's code.
    pub service_code: String,
    /// The reporter's description.
    pub description: Option<String>,
    /// The department that accepted it, else the one responsible now.
    pub agency_responsible: Option<String>,
    /// What the resident can expect.
    pub service_notice: Option<String>,
    /// When it was posted.
    pub requested_datetime: String,
    /// When its case last changed.
    pub updated_datetime: String,
    /// When it should be resolved by (the case's resolve deadline, once accepted).
    pub expected_datetime: Option<String>,
    /// The address posted.
    pub address: Option<String>,
    /// Not kept: linkbus has no address register.
    pub address_id: Option<String>,
    /// Not kept.
    pub zipcode: Option<String>,
    /// WGS-84 latitude.
    pub lat: f64,
    /// WGS-84 longitude.
    #[serde(rename = "long")]
    pub lon: f64,
    /// Not kept as a field (it is in the description).
    pub media_url: Option<String>,
}

/// An Open311 error answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Open311Error {
    /// HTTP status, also the error's `code`.
    pub status: StatusCode,
    /// What is wrong.
    pub description: String,
    /// Seconds to wait before retrying (429).
    pub retry_after: Option<u64>,
}

impl Open311Error {
    fn new(status: StatusCode, description: impl Into<String>) -> Self {
        Self { status, description: description.into(), retry_after: None }
    }

    fn bad(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, description)
    }
}

/// The answer formats, from the path's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.json`
    Json,
    /// `.xml`
    Xml,
}

/// Splits `requests.json` into `("requests", Json)`.
fn split_format(segment: &str) -> Option<(&str, Format)> {
    match segment.rsplit_once('.') {
        Some((name, "json")) => Some((name, Format::Json)),
        Some((name, "xml")) => Some((name, Format::Xml)),
        _ => None,
    }
}

/// The answer to a path without `.json` or `.xml`.
fn unknown_format() -> Response {
    error(Format::Json, Open311Error::new(StatusCode::NOT_FOUND, "no such resource: use .json or .xml"))
}

/// The Open311 endpoint: its configuration, its services, and what it needs of linkbus.
pub struct Open311 {
    config: Open311Config,
    services: Vec<Service>,
    intake: Intake,
    gate: Arc<dyn Gate>,
}

impl std::fmt::Debug for Open311 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Open311").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Open311 {
    /// The endpoint for `config`, offering `categories` (the region's public-service ones) as
    /// services where configured; `intake` is the service's (this adapter names its own stage).
    pub fn new(config: Open311Config, categories: &[RegionCategory], intake: Intake, gate: Arc<dyn Gate>) -> Self {
        let services = services(&config, categories);
        Self { config, services, intake: intake.for_adapter(STAGE), gate }
    }

    /// Its routes, under `/open311/v2/`.
    pub fn routes(self) -> Router {
        Router::new()
            .route("/open311/v2/{resource}", any(resource))
            .route("/open311/v2/services/{code}", any(service_definition))
            .route("/open311/v2/requests/{id}", any(one_request))
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .with_state(Arc::new(self))
    }

    /// The service name and code a case is shown with: the first configured code mapping to its
    /// category, else the category itself.
    fn service_of(&self, category: &str) -> (Option<String>, String) {
        let found = self.services.iter().find(|s| s.keywords == category);
        match found {
            Some(s) => (Some(s.service_name.clone()), s.service_code.clone()),
            None => (None, category.to_owned()),
        }
    }
}

fn services(config: &Open311Config, categories: &[RegionCategory]) -> Vec<Service> {
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

type Shared = State<Arc<Open311>>;

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

fn get_request(o: &Open311, id: &str, format: Format, request: &Request<Body>) -> Result<Response, Open311Error> {
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
fn may_read(o: &Open311, request: &Request<Body>, pairs: &[(String, String)]) -> Result<(), Open311Error> {
    if !o.config.public_reads {
        let key = pairs.iter().find(|(k, _)| k == "api_key").map(|(_, v)| v.clone());
        authorize(o, key.or_else(|| web::bearer(request.headers())).as_deref(), "read")?;
    }
    admit(o, request)
}

/// Refuses a key that may not `what` (`post`, `read`) this adapter's requests: a source key
/// must speak for its source; dispatcher and operator keys may read.
fn authorize(o: &Open311, key: Option<&str>, what: &str) -> Result<(), Open311Error> {
    let forbidden = |why: String| Err(Open311Error::new(StatusCode::FORBIDDEN, why));
    match key.map(|k| o.gate.caller(k)) {
        None => forbidden(format!("an api_key is required to {what} requests")),
        Some(None) => forbidden("invalid api_key".into()),
        Some(Some(Caller::Source(source))) if source == o.config.source => Ok(()),
        Some(Some(Caller::Staff)) if what == "read" => Ok(()),
        Some(Some(_)) => forbidden(format!("this api_key may not {what} Open311 requests")),
    }
}

fn admit(o: &Open311, request: &Request<Body>) -> Result<(), Open311Error> {
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

fn list_requests(o: &Open311, format: Format, request: &Request<Body>) -> Result<Response, Open311Error> {
    let pairs = query_pairs(request)?;
    may_read(o, request, &pairs)?;
    let get = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim()).filter(|v| !v.is_empty());
    let cases = o.intake.cases();
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
    let views: Vec<RequestView> = cases
        .of_source(&o.config.source)
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
fn request_view(o: &Open311, id: &str) -> Option<RequestView> {
    let own = o.intake.cases().get(&event_id(STAGE, id))?;
    own.reports.first().is_some_and(|first| first.source == o.config.source).then(|| view(o, &own))
}

/// What a resident sees of their request: what they posted (`own`, the request's record), and
/// the state and the department's last word of the case handling it (the case it was merged
/// into, if it was); no contact details.
fn view(o: &Open311, own: &CaseRecord) -> RequestView {
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
    let agency = r.accepted_by.clone().or_else(|| r.departments.first().cloned()).map(|id| {
        let choices = r.decision.departments.iter().chain(&r.decision.fallbacks);
        choices.clone().find(|d| d.id == id).map_or(id, |d| d.name.clone())
    });
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
        media_url: None,
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

async fn post_request(o: &Open311, format: Format, request: Request<Body>) -> Result<Response, Open311Error> {
    admit(o, &request)?;
    let original = format!("POST {}", request.uri().path());
    let query = request.uri().query().map(str::to_owned);
    let headers = request.headers().clone();
    let bytes = match web::read_body(request).await {
        Ok(bytes) => bytes,
        Err(BodyError::TooLarge) => {
            let reason = format!("the body is larger than {MAX_BODY} bytes");
            o.intake.dead_letter("too_large", &reason, &original, Bytes::new()).await;
            return Err(Open311Error::new(StatusCode::PAYLOAD_TOO_LARGE, reason));
        }
        Err(BodyError::Broken(e)) => return Err(Open311Error::bad(format!("cannot read the body: {e}"))),
    };
    let refuse = async |code: &str, e: Open311Error| {
        o.intake.dead_letter(code, &e.description, &original, bytes.clone()).await;
        e
    };
    // The key first: only a caller that may post has its content checked (and dead-lettered).
    // Clients put it in the form, as the spec says, a few in the query string.
    let key = web::bearer(&headers)
        .or_else(|| form_value(&bytes, "api_key"))
        .or_else(|| query.as_deref().and_then(|q| form_value(q.as_bytes(), "api_key")));
    authorize(o, key.as_deref(), "post")?;
    let media = web::media_type(&headers);
    if media != "application/x-www-form-urlencoded" {
        let e = Open311Error::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content type {media:?}: post application/x-www-form-urlencoded, as GeoReport v2 says"),
        );
        return Err(refuse("malformed", e).await);
    }
    let pairs = match parse_form(&bytes) {
        Ok(pairs) => pairs,
        Err(e) => return Err(refuse("malformed", Open311Error::bad(e)).await),
    };
    let posted = match Posted::read(&pairs) {
        Ok(posted) => posted,
        Err(e) => return Err(refuse("invalid", Open311Error::bad(e)).await),
    };
    let event = match posted.event(&o.config, Timestamp::now()) {
        Ok(event) => event,
        Err(e) => return Err(refuse("invalid", Open311Error::bad(e)).await),
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
    };
    Ok(render_created(&created, format))
}

/// The fields of a posted request that linkbus reads.
#[derive(Debug, Clone, Default, PartialEq)]
struct Posted {
    service_code: String,
    lat: Option<String>,
    long: Option<String>,
    address_string: Option<String>,
    address_id: Option<String>,
    datum: Option<String>,
    description: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    phone: Option<String>,
    email: Option<String>,
    media_url: Option<String>,
    device_id: Option<String>,
    account_id: Option<String>,
    attributes: Vec<(String, String)>,
    /// Every field but `api_key`, sorted: what the request id is a digest of.
    canonical: Vec<(String, String)>,
}

/// Fields the spec defines that linkbus accepts and ignores.
const IGNORED: &[&str] = &["api_key", "jurisdiction_id"];

impl Posted {
    fn read(pairs: &[(String, String)]) -> Result<Self, String> {
        let mut p = Posted::default();
        let mut seen: Vec<&str> = Vec::new();
        for (name, value) in pairs {
            if let Some(code) = name.strip_prefix("attribute[") {
                let code = code.strip_suffix("[]").unwrap_or(code).strip_suffix(']').unwrap_or_default();
                if code.is_empty() || code.len() > 64 || value.len() > 512 {
                    return Err(format!(
                        "{name}: an attribute is attribute[code]=value, code ≤ 64 and value ≤ 512 bytes"
                    ));
                }
                if p.attributes.len() == MAX_ATTRIBUTES {
                    return Err(format!("more than {MAX_ATTRIBUTES} attributes"));
                }
                p.attributes.push((code.to_owned(), value.clone()));
                continue;
            }
            if seen.contains(&name.as_str()) {
                return Err(format!("{name} is given twice"));
            }
            seen.push(name);
            let slot = match name.as_str() {
                "service_code" => {
                    p.service_code = value.trim().to_owned();
                    continue;
                }
                "lat" => &mut p.lat,
                "long" => &mut p.long,
                "address_string" => &mut p.address_string,
                "address_id" => &mut p.address_id,
                "datum" => &mut p.datum,
                "description" => &mut p.description,
                "first_name" => &mut p.first_name,
                "last_name" => &mut p.last_name,
                "phone" => &mut p.phone,
                "email" => &mut p.email,
                "media_url" => &mut p.media_url,
                "device_id" => &mut p.device_id,
                "account_id" => &mut p.account_id,
                // Unknown fields are let through, as the spec's servers do (clients add their own).
                _ => continue,
            };
            *slot = Some(value.trim().to_owned()).filter(|v| !v.is_empty());
        }
        p.canonical = pairs.iter().filter(|(k, _)| !IGNORED.contains(&k.as_str())).cloned().collect();
        p.canonical.sort();
        Ok(p)
    }

    /// The request id: a digest of what was posted.
    fn request_id(&self) -> String {
        let mut text = Vec::new();
        for (k, v) in &self.canonical {
            text.extend_from_slice(k.as_bytes());
            text.push(b'=');
            text.extend_from_slice(v.as_bytes());
            text.push(0);
        }
        digest_id(&text)
    }

    /// The case event, or what is wrong with the request.
    fn event(&self, config: &Open311Config, now: Timestamp) -> Result<CloudEvent<CaseReport>, String> {
        if self.service_code.is_empty() || self.service_code.len() > 64 {
            return Err("service_code is required (at most 64 bytes)".into());
        }
        let (lat, long) = match (&self.lat, &self.long) {
            (Some(lat), Some(long)) => (lat, long),
            (None, None) if self.address_string.is_some() || self.address_id.is_some() => {
                return Err("lat and long are required: linkbus routes by location and does not geocode \
                            address_string or address_id"
                    .into());
            }
            _ => return Err("lat and long are required".into()),
        };
        let number =
            |name: &str, text: &str| text.parse::<f64>().map_err(|_| format!("{name} {text:?} is not a number"));
        let location = Location { lon: number("long", long)?, lat: number("lat", lat)? };
        if !location.lat.is_finite() || !(-90.0..=90.0).contains(&location.lat) {
            return Err(format!("lat {lat} is not a latitude in [-90, 90]"));
        }
        if !location.lon.is_finite() || !(-180.0..=180.0).contains(&location.lon) {
            return Err(format!("long {long} is not a longitude in [-180, 180]"));
        }
        let datum = match &self.datum {
            None => Datum::Wgs84,
            Some(d) => Datum::parse(d).ok_or_else(|| format!("datum {d:?}: wgs84, gcj02 or bd09"))?,
        };
        if self.description.as_ref().is_some_and(|d| d.chars().count() > MAX_DESCRIPTION) {
            return Err(format!("description is longer than {MAX_DESCRIPTION} characters"));
        }
        for (name, value) in [
            ("first_name", &self.first_name),
            ("last_name", &self.last_name),
            ("phone", &self.phone),
            ("email", &self.email),
            ("device_id", &self.device_id),
            ("account_id", &self.account_id),
            ("address_string", &self.address_string),
        ] {
            if value.as_ref().is_some_and(|v| v.len() > 256) {
                return Err(format!("{name} is longer than 256 bytes"));
            }
        }
        if let Some(url) = &self.media_url {
            let lower = url.to_ascii_lowercase();
            if url.len() > 2048 || !(lower.starts_with("https://") || lower.starts_with("http://")) {
                return Err("media_url must be an http(s) URL of at most 2048 bytes".into());
            }
        }
        let mut flags = Vec::new();
        let category = if config.region_services && wire::is_category(&self.service_code) {
            let mapped = config.categories.map(&self.service_code);
            if mapped.known { mapped.category } else { self.service_code.clone() }
        } else {
            config.categories.map_flagged(&self.service_code, &mut flags)
        };
        let mut description = self.description.clone().unwrap_or_default();
        if let Some(url) = &self.media_url {
            description.push_str(&format!("\nMedia: {url}"));
        }
        if !self.attributes.is_empty() {
            let list: Vec<String> = self.attributes.iter().map(|(k, v)| format!("{k}={v}")).collect();
            description.push_str(&format!("\nAttributes: {}", list.join("; ")));
        }
        let name = match (&self.first_name, &self.last_name) {
            (Some(f), Some(l)) => Some(format!("{f} {l}")),
            (Some(n), None) | (None, Some(n)) => Some(n.clone()),
            (None, None) => None,
        };
        let reporter = (name.is_some() || self.phone.is_some()).then(|| Contact { name, phone: self.phone.clone() });
        let request_id = self.request_id();
        let report = CaseReport {
            system: SourceSystem::PublicService,
            category,
            priority: config.priority,
            location,
            datum,
            received_location: None,
            address: self.address_string.clone(),
            reporter,
            description: Some(description.trim().to_owned()).filter(|d| !d.is_empty()),
            source_id: request_id.clone(),
            reported_at: now,
            flags,
            area: None,
        };
        report.validate().map_err(|e| e.to_string())?;
        Ok(CloudEvent::new(
            event_id(STAGE, &request_id),
            &config.source,
            wire::TYPE_CASE_REPORTED,
            Some(request_id),
            now,
            report,
        ))
    }
}

/// The first value of field `name` in a form, if it decodes (the rest of the form may not).
fn form_value(body: &[u8], name: &str) -> Option<String> {
    body.split(|&b| b == b'&').find_map(|part| {
        let mut halves = part.splitn(2, |&b| b == b'=');
        let field = halves.next()?;
        (field == name.as_bytes()).then(|| decode_component(halves.next().unwrap_or_default()).ok())?
    })
}

/// Reads `application/x-www-form-urlencoded` pairs (also a query string): `+` is a space,
/// percent-escapes are decoded, and the result must be UTF-8.
pub fn parse_form(body: &[u8]) -> Result<Vec<(String, String)>, String> {
    body.split(|&b| b == b'&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut halves = part.splitn(2, |&b| b == b'=');
            let name = decode_component(halves.next().unwrap_or_default())?;
            let value = decode_component(halves.next().unwrap_or_default())?;
            Ok((name, value))
        })
        .collect()
}

/// One name or value of a form: `+` is a space, percent-escapes decoded, UTF-8 required.
fn decode_component(part: &[u8]) -> Result<String, String> {
    let spaced: Vec<u8> = part.iter().map(|&b| if b == b'+' { b' ' } else { b }).collect();
    percent_decode(&spaced)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| "the form is not UTF-8 (after percent-decoding)".to_owned())
}

fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json; charset=utf-8")], bytes).into_response()
}

fn xml_response(status: StatusCode, xml: Xml) -> Response {
    (status, [(header::CONTENT_TYPE, "text/xml; charset=utf-8")], xml.finish()).into_response()
}

fn error(format: Format, e: Open311Error) -> Response {
    let code = e.status.as_u16().to_string();
    let mut response = match format {
        Format::Json => {
            json_response(e.status, &serde_json::json!([{ "code": e.status.as_u16(), "description": e.description }]))
        }
        Format::Xml => {
            let mut xml = Xml::new();
            xml.open("errors").open("error").field("code", Some(&code));
            xml.field("description", Some(&e.description)).close("error").close("errors");
            xml_response(e.status, xml)
        }
    };
    if let Some(secs) = e.retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

fn render_services(services: &[Service], format: Format) -> Response {
    match format {
        Format::Json => json_response(StatusCode::OK, &services),
        Format::Xml => {
            let mut xml = Xml::new();
            xml.open("services");
            for s in services {
                xml.open("service").field("service_code", Some(&s.service_code));
                xml.field("service_name", Some(&s.service_name)).field("description", Some(&s.description));
                xml.field("metadata", Some(if s.metadata { "true" } else { "false" })).field("type", Some(s.kind));
                xml.field("keywords", Some(&s.keywords)).field("group", Some(&s.group)).close("service");
            }
            xml.close("services");
            xml_response(StatusCode::OK, xml)
        }
    }
}

fn render_created(created: &Created, format: Format) -> Response {
    match format {
        Format::Json => json_response(StatusCode::CREATED, &[created]),
        Format::Xml => {
            let mut xml = Xml::new();
            xml.open("service_requests").open("request");
            xml.field("service_request_id", Some(&created.service_request_id));
            xml.field("service_notice", created.service_notice.as_deref());
            xml.field("account_id", created.account_id.as_deref()).close("request").close("service_requests");
            xml_response(StatusCode::CREATED, xml)
        }
    }
}

fn render_requests(views: &[RequestView], format: Format) -> Response {
    match format {
        Format::Json => json_response(StatusCode::OK, &views),
        Format::Xml => {
            let mut xml = Xml::new();
            xml.open("service_requests");
            for v in views {
                let (lat, lon) = (v.lat.to_string(), v.lon.to_string());
                xml.open("request").field("service_request_id", Some(&v.service_request_id));
                xml.field("status", Some(v.status)).field("status_notes", v.status_notes.as_deref());
                xml.field("service_name", v.service_name.as_deref()).field("service_code", Some(&v.service_code));
                xml.field("description", v.description.as_deref());
                xml.field("agency_responsible", v.agency_responsible.as_deref());
                xml.field("service_notice", v.service_notice.as_deref());
                xml.field("requested_datetime", Some(&v.requested_datetime));
                xml.field("updated_datetime", Some(&v.updated_datetime));
                xml.field("expected_datetime", v.expected_datetime.as_deref());
                xml.field("address", v.address.as_deref()).field("address_id", v.address_id.as_deref());
                xml.field("zipcode", v.zipcode.as_deref()).field("lat", Some(&lat)).field("long", Some(&lon));
                xml.field("media_url", v.media_url.as_deref()).close("request");
            }
            xml.close("service_requests");
            xml_response(StatusCode::OK, xml)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(form: &str) -> Vec<(String, String)> {
        parse_form(form.as_bytes()).expect("form")
    }

    const FORM: &str = "api_key=xyz&jurisdiction_id=sf&service_code=POTHOLE&lat=37.7599&long=-122.4194\
        &address_string=19th+%26+Guerrero&email=a%40example.org&device_id=d1&account_id=7\
        &first_name=Ada&last_name=L&phone=555-0100&description=Deep+hole%2C+bikes+swerve\
        &media_url=https%3A%2F%2Fexample.org%2Fp.jpg&attribute%5BSIZE%5D=large&attribute%5BWHERE%5D%5B%5D=lane";

    #[test]
    fn a_spec_form_becomes_a_public_service_case() {
        let posted = Posted::read(&pairs(FORM)).expect("read");
        let event = posted.event(&Open311Config::default(), Timestamp::UNIX_EPOCH).expect("event");
        let r = &event.data;
        assert_eq!((r.system, r.category.as_str()), (SourceSystem::PublicService, "street_defects"));
        assert_eq!((r.location.lat, r.location.lon), (37.7599, -122.4194));
        assert_eq!(r.address.as_deref(), Some("19th & Guerrero"));
        assert_eq!(r.reporter, Some(Contact { name: Some("Ada L".into()), phone: Some("555-0100".into()) }));
        let description = r.description.as_deref().expect("description");
        assert!(description.starts_with("Deep hole, bikes swerve\nMedia: https://example.org/p.jpg"), "{description}");
        assert!(description.ends_with("Attributes: SIZE=large; WHERE=lane"), "{description}");
        assert_eq!(event.id, format!("open311-{}", r.source_id));
        assert!(r.flags.is_empty());
        // The same request with another key is the same request.
        let again = Posted::read(&pairs(&FORM.replace("api_key=xyz", "api_key=other"))).expect("read");
        assert_eq!(again.request_id(), posted.request_id());
        let other = Posted::read(&pairs(&FORM.replace("lane", "kerb"))).expect("read");
        assert_ne!(other.request_id(), posted.request_id());
    }

    #[test]
    fn codes_map_to_categories_or_the_flagged_catch_all() {
        let config = Open311Config::default();
        let category = |code: &str| {
            let form = format!("service_code={code}&lat=37.7&long=-122.4");
            let event = Posted::read(&pairs(&form)).expect("read").event(&config, Timestamp::UNIX_EPOCH);
            let event = event.expect("event");
            (event.data.category, event.data.flags)
        };
        assert_eq!(category("SEWER"), ("sewer_issues".into(), vec![]));
        assert_eq!(category("sewer_issues"), ("sewer_issues".into(), vec![]), "a region category as code");
        assert_eq!(category("UFO-SIGHTING"), ("uncategorized".into(), vec!["unmapped_category".into()]));
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let config = Open311Config::default();
        let refused = |form: &str| -> String {
            match Posted::read(&pairs(form)) {
                Err(e) => e,
                Ok(p) => p.event(&config, Timestamp::UNIX_EPOCH).expect_err(form),
            }
        };
        assert!(refused("lat=37.7&long=-122.4").contains("service_code"));
        assert!(refused("service_code=SEWER&lat=91&long=-122.4").contains("lat 91"));
        assert!(refused("service_code=SEWER&lat=37&long=181").contains("long 181"));
        assert!(refused("service_code=SEWER&lat=NaN&long=-122.4").contains("lat NaN"));
        assert!(refused("service_code=SEWER&lat=abc&long=-122.4").contains("not a number"));
        assert!(refused("service_code=SEWER&address_string=1+Main+St").contains("does not geocode"));
        assert!(refused("service_code=SEWER&lat=37&long=-122&datum=osgb36").contains("datum"));
        assert!(refused("service_code=SEWER&lat=37&long=-122&lat=38").contains("twice"));
        assert!(refused("service_code=SEWER&lat=37&long=-122&media_url=javascript:x").contains("media_url"));
        let long = format!("service_code=SEWER&lat=37&long=-122&description={}", "x".repeat(4001));
        assert!(refused(&long).contains("description"));
        assert!(parse_form(b"a=%FF%FE").expect_err("not UTF-8").contains("UTF-8"));
    }

    #[test]
    fn gcj02_coordinates_are_taken_with_their_datum() {
        let form = "service_code=SEWER&lat=39.9087&long=116.3975&datum=gcj02";
        let event = Posted::read(&pairs(form)).expect("read").event(&Open311Config::default(), Timestamp::UNIX_EPOCH);
        assert_eq!(event.expect("event").data.datum, Datum::Gcj02);
    }
}
