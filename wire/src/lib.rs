//! The wire contract: what travels on the bus, as Rust types.
//!
//! Every message is a CloudEvents 1.0 event in JSON structured mode ([`CloudEvent`]). Its `data`
//! is one of the payloads below: a [`CaseReport`] on `ingest.…`, a [`RoutedCase`] on `routed.…`
//! and `case.<id>.routed`, a [`VolunteerOffer`] on `volunteer.<id>.offer`. Volunteers' live
//! state is a [`VolunteerStatus`] stored in a JetStream KV bucket. `docs/wire.md` explains the
//! contract for clients in other languages; `docs/schemas/` holds the JSON Schemas generated
//! from these types by `wire/tests/schemas.rs` (`UPDATE_SCHEMAS=1 cargo test -p linkbus-wire --test schemas`).
//!
//! Besides the payloads (here and in `lifecycle`, re-exported):
//! - [`decode`]: bytes from `ingest.…` to a checked case event, or a [`decode::Rejection`]
//!   that says why;
//! - [`explain`]: a decision's explanation as data, rendered in English or Chinese;
//! - [`claims`]: which id prefixes and sources each kind of source system may issue;
//! - [`subjects`]: the subject names, built in one place;
//! - [`http_error`]: the one error body of every HTTP endpoint;
//! - [`schema`]: how the JSON Schemas of these types are written for clients (string enums).
//!
//! Nothing here does I/O: this crate is what every other one, and any client, can depend on.

pub mod claims;
mod datum;
pub mod decode;
pub mod explain;
pub mod http_error;
mod lifecycle;
pub mod schema;
pub mod subjects;
mod trace;

pub use datum::Datum;
pub use lifecycle::*;
pub use trace::{TRACEPARENT, TRACESTATE, TraceContext, is_traceparent};

use std::collections::BTreeMap;

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// JSON Schema of a [`Timestamp`]: an RFC 3339 date-time string.
pub(crate) fn timestamp_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "string", "format": "date-time" })
}

/// The CloudEvents `specversion` this bus speaks.
pub const SPEC_VERSION: &str = "1.0";
/// `type` of an event that reports a new case to the bus.
pub const TYPE_CASE_REPORTED: &str = "org.linkbus.case.reported";
/// `type` of an event that carries a routed case and its routing decision.
pub const TYPE_CASE_ROUTED: &str = "org.linkbus.case.routed";
/// `type` of an event that offers a case to one volunteer.
pub const TYPE_VOLUNTEER_OFFER: &str = "org.linkbus.volunteer.offer";
/// The only `datacontenttype` the bus uses.
pub const JSON: &str = "application/json";
/// The longest event id accepted (it is also the case id and part of subjects).
pub const MAX_ID_LEN: usize = 128;

/// A CloudEvents 1.0 event in JSON structured mode. Attributes it does not name are extension
/// attributes ([`CloudEvent::extensions`]); the ingest decoder checks them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CloudEvent<T> {
    /// Always `"1.0"`.
    pub specversion: String,
    /// Unique per `source`; doubles as the JetStream `Nats-Msg-Id`, so a re-sent event is
    /// dropped as a duplicate. Letters, digits, `-`, `_` and `:` only, at most 128 characters,
    /// because it also names the case in subjects (`case.<id>.…`).
    pub id: String,
    /// URI-reference of the system that produced the event, e.g. `/sf311` or `/linkbus/router`.
    pub source: String,
    /// What happened, e.g. `org.linkbus.case.reported`.
    #[serde(rename = "type")]
    pub ty: String,
    /// What the event is about: the source system's own id for a report, the case id after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// When it happened (RFC 3339).
    #[schemars(schema_with = "timestamp_schema")]
    pub time: Timestamp,
    /// `application/json` on everything linkbus emits. A report without one is read as JSON (the
    /// CloudEvents JSON format says so); media-type parameters (`; charset=utf-8`) are allowed.
    #[serde(default = "json_media_type")]
    pub datacontenttype: String,
    /// URI of the schema `data` follows, if the producer names one (`null` reads as unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataschema: Option<String>,
    /// The payload.
    pub data: T,
    /// Extension attributes, e.g. the distributed-tracing extension's `traceparent` and
    /// `tracestate`: names of 1-20 lowercase letters and digits, values strings, integers or
    /// booleans (checked on ingest: [`decode::check_extensions`]). linkbus keeps a report's and
    /// forwards them on the routed copies and offers of its case.
    #[serde(flatten)]
    pub extensions: BTreeMap<String, serde_json::Value>,
}

fn json_media_type() -> String {
    JSON.to_owned()
}

impl<T> CloudEvent<T> {
    /// A new event with the fixed attributes filled in.
    pub fn new(id: String, source: &str, ty: &str, subject: Option<String>, time: Timestamp, data: T) -> Self {
        Self {
            specversion: SPEC_VERSION.to_owned(),
            id,
            source: source.to_owned(),
            ty: ty.to_owned(),
            subject,
            time,
            datacontenttype: JSON.to_owned(),
            dataschema: None,
            data,
            extensions: BTreeMap::new(),
        }
    }
}

/// Which kind of system a case came from; the second token of `ingest.<system>.<category>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SourceSystem {
    /// 110 police / 119 fire / 120 ambulance incidents and early warnings.
    Emergency,
    /// Meal delivery for the elderly, home repair, domestic help orders.
    Commercial,
    /// 12345 / 311 citizen requests, social assistance.
    PublicService,
    /// Grid inspections (网格化管理), patrol reports, hazards.
    Management,
}

impl SourceSystem {
    /// Every source system, in subject order.
    pub const ALL: [SourceSystem; 4] = [Self::Emergency, Self::Commercial, Self::PublicService, Self::Management];

    /// The subject token, e.g. `public_service`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Emergency => "emergency",
            Self::Commercial => "commercial",
            Self::PublicService => "public_service",
            Self::Management => "management",
        }
    }

    /// Parses a subject token.
    pub fn parse(token: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == token)
    }
}

impl std::fmt::Display for SourceSystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A point on the earth, WGS-84 degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Location {
    /// Longitude, −180 to 180.
    pub lon: f64,
    /// Latitude, −90 to 90.
    pub lat: f64,
}

/// A location in the datum the source system sent it in.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceivedLocation {
    /// The source's datum.
    pub datum: Datum,
    /// Longitude in that datum.
    pub lon: f64,
    /// Latitude in that datum.
    pub lat: f64,
}

/// Who reported the case, for the department to call back: personal data, seen by departments
/// and dispatchers only. Never sent to volunteers, never in a resident's or the public's view.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    /// Name as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Phone number as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Email address as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The reporter's device in the source's app (Open311 `device_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// The reporter's account in the source system (Open311 `account_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
}

/// One incident or request as a source system reports it: the `data` of
/// `org.linkbus.case.reported` events on `ingest.<system>.<category>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaseReport {
    /// The kind of system that reported it; must equal the subject's `<system>` token.
    pub system: SourceSystem,
    /// The bus category (lowercase letters, digits, `_`), e.g. `street_and_sidewalk_cleaning`;
    /// must equal the subject's `<category>` token.
    pub category: String,
    /// 1 = life-threatening, 2 = urgent, 3 = normal, 4 = low.
    pub priority: u8,
    /// Where it happens, in the datum named by `datum`. Once decoded by the bus (and so on every
    /// `routed.…` subject) it is WGS-84, and what the source sent is kept in `received_location`.
    pub location: Location,
    /// The datum of `location`: `wgs84` (the default), `gcj02` or `bd09`.
    #[serde(default, skip_serializing_if = "Datum::is_wgs84")]
    pub datum: Datum,
    /// The location exactly as the source sent it, when that was not WGS-84. Set by the bus when
    /// it converts; a source never sends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_location: Option<ReceivedLocation>,
    /// Street address as the source gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Who reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reporter: Option<Contact>,
    /// Free text from the reporter or the call taker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A link to a photo or video of it, as the reporter sent it (Open311 `media_url`): http(s),
    /// at most [`MAX_URL_LEN`] bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_url: Option<String>,
    /// The source system's own id for this case (its ticket or incident number).
    pub source_id: String,
    /// When the source system received the report.
    #[schemars(schema_with = "timestamp_schema")]
    pub reported_at: Timestamp,
    /// Who is at risk, as the source knows it: `elderly_alone`, `disabled`, `minor`,
    /// `persons_trapped`, … (same syntax as categories, at most 16). Priority rules read them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    /// For a broadcast (a CAP alert with an `area`): the whole area concerned, WGS-84 only;
    /// `location` is then its centre. The router sends the case to every community the area
    /// touches (`Decision::broadcast`), not only to the one holding `location`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area: Option<Area>,
}

/// Limits on what a report may carry, so that no field can be used to flood the bus.
pub const MAX_TEXT_LEN: usize = 4096;
/// The longest `media_url`, bytes.
pub const MAX_URL_LEN: usize = 2048;
/// The most vertices an [`Area`] may have, over all its polygons.
pub const MAX_AREA_VERTICES: usize = 4096;
/// The largest circle radius an [`Area`] may have, metres.
pub const MAX_CIRCLE_RADIUS_M: f64 = 500_000.0;

/// The area a broadcast concerns: polygons and circles, WGS-84 (as CAP's `<area>`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Area {
    /// Closed rings (first vertex = last, at least 4 vertices), at most [`MAX_AREA_VERTICES`]
    /// vertices in all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub polygons: Vec<Vec<Location>>,
    /// Circles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub circles: Vec<Circle>,
    /// Areas named by code (CAP's `<geocode>`): the router resolves them through the region's
    /// geocode table to the communities within; a code it does not know is said in the
    /// decision's explanation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub geocodes: Vec<Geocode>,
}

/// An area named by code, as CAP's `<geocode>`: `{"value_name": "SAME", "value": "006075"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Geocode {
    /// The coding scheme (`SAME`, `FIPS6`, `UGC`, `行政区划代码`…), 1–64 bytes.
    pub value_name: String,
    /// The code, 1–64 bytes.
    pub value: String,
}

impl std::fmt::Display for Geocode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.value_name, self.value)
    }
}

/// A circle on the earth.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Circle {
    /// The centre.
    pub center: Location,
    /// The radius, metres (0 to [`MAX_CIRCLE_RADIUS_M`]); 0 is a point (CAP's point alert):
    /// the community that contains it.
    pub radius_m: f64,
}

impl Area {
    /// Checks the shapes: at least one, rings closed with at least 4 vertices, coordinates and
    /// radii in range, at most [`MAX_AREA_VERTICES`] vertices.
    pub fn validate(&self, field: &str) -> Result<(), Invalid> {
        if self.polygons.is_empty() && self.circles.is_empty() && self.geocodes.is_empty() {
            return Err(invalid(field, "has no polygon, circle or geocode"));
        }
        if self.geocodes.len() > 256 {
            return Err(invalid(&format!("{field}.geocodes"), "more than 256 geocodes"));
        }
        for (n, g) in self.geocodes.iter().enumerate() {
            let fine =
                |s: &str| (1..=64).contains(&s.len()) && !s.trim().is_empty() && !s.chars().any(char::is_control);
            if !(fine(&g.value_name) && fine(&g.value)) {
                return Err(invalid(
                    &format!("{field}.geocodes[{n}]"),
                    "value_name and value must be 1-64 bytes, not blank",
                ));
            }
        }
        let vertices: usize = self.polygons.iter().map(Vec::len).sum();
        if vertices > MAX_AREA_VERTICES {
            return Err(invalid(&format!("{field}.polygons"), format!("more than {MAX_AREA_VERTICES} vertices")));
        }
        for (n, ring) in self.polygons.iter().enumerate() {
            let at = format!("{field}.polygons[{n}]");
            for (i, v) in ring.iter().enumerate() {
                v.validate(&format!("{at}[{i}]"))?;
            }
            if ring.len() < 4 {
                return Err(invalid(&at, format!("{} vertices; a polygon needs at least 4", ring.len())));
            }
            if ring.first() != ring.last() {
                return Err(invalid(&at, "is not closed: the first and last vertices differ"));
            }
        }
        if self.circles.len() > 64 {
            return Err(invalid(&format!("{field}.circles"), "more than 64 circles"));
        }
        for (n, c) in self.circles.iter().enumerate() {
            let at = format!("{field}.circles[{n}]");
            c.center.validate(&format!("{at}.center"))?;
            if !(0.0..=MAX_CIRCLE_RADIUS_M).contains(&c.radius_m) {
                return Err(invalid(
                    &format!("{at}.radius_m"),
                    format!("{} is not a radius in [0, {MAX_CIRCLE_RADIUS_M}] metres", c.radius_m),
                ));
            }
        }
        Ok(())
    }
}

/// A report that failed validation: which field and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Invalid {
    /// The JSON path of the offending field, e.g. `data.location.lat`.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

fn invalid(field: &str, reason: impl Into<String>) -> Invalid {
    Invalid { field: field.to_owned(), reason: reason.into() }
}

/// True when `s` can be one subject token: not empty, at most `max` bytes, and only ASCII
/// letters, digits and the given extra characters.
pub fn is_token(s: &str, max: usize, extra: &[u8]) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
}

/// True when `s` is a valid category: lowercase ASCII letters, digits and `_`, at most 64 bytes.
pub fn is_category(s: &str) -> bool {
    is_token(s, 64, b"_") && !s.bytes().any(|b| b.is_ascii_uppercase())
}

/// True when `s` is a valid event or case id (see [`CloudEvent::id`]).
pub fn is_event_id(s: &str) -> bool {
    is_token(s, MAX_ID_LEN, b"-_:")
}

impl Location {
    /// Checks that both coordinates are finite and in range.
    pub fn validate(&self, field: &str) -> Result<(), Invalid> {
        if !self.lon.is_finite() || !(-180.0..=180.0).contains(&self.lon) {
            return Err(invalid(&format!("{field}.lon"), format!("{} is not a longitude in [-180, 180]", self.lon)));
        }
        if !self.lat.is_finite() || !(-90.0..=90.0).contains(&self.lat) {
            return Err(invalid(&format!("{field}.lat"), format!("{} is not a latitude in [-90, 90]", self.lat)));
        }
        Ok(())
    }
}

impl CaseReport {
    /// Checks every field against the contract.
    pub fn validate(&self) -> Result<(), Invalid> {
        if !is_category(&self.category) {
            return Err(invalid("data.category", "must be 1-64 lowercase letters, digits or '_'"));
        }
        if !(1..=4).contains(&self.priority) {
            return Err(invalid("data.priority", format!("{} is not a priority in 1..=4", self.priority)));
        }
        self.location.validate("data.location")?;
        if self.received_location.is_some() {
            return Err(invalid("data.received_location", "is set by the bus, not by sources"));
        }
        if self.source_id.trim().is_empty() || self.source_id.len() > 256 {
            return Err(invalid("data.source_id", "must be 1-256 characters"));
        }
        let texts = [
            ("data.address", self.address.as_deref()),
            ("data.description", self.description.as_deref()),
            ("data.reporter.name", self.reporter.as_ref().and_then(|r| r.name.as_deref())),
            ("data.reporter.phone", self.reporter.as_ref().and_then(|r| r.phone.as_deref())),
            ("data.reporter.email", self.reporter.as_ref().and_then(|r| r.email.as_deref())),
            ("data.reporter.device_id", self.reporter.as_ref().and_then(|r| r.device_id.as_deref())),
            ("data.reporter.account_id", self.reporter.as_ref().and_then(|r| r.account_id.as_deref())),
        ];
        for (field, text) in texts {
            if text.is_some_and(|t| t.len() > MAX_TEXT_LEN) {
                return Err(invalid(field, format!("longer than {MAX_TEXT_LEN} bytes")));
            }
        }
        if let Some(url) = &self.media_url {
            let lower = url.to_ascii_lowercase();
            if url.len() > MAX_URL_LEN || !(lower.starts_with("https://") || lower.starts_with("http://")) {
                return Err(invalid(
                    "data.media_url",
                    format!("must be an http(s) URL of at most {MAX_URL_LEN} bytes"),
                ));
            }
        }
        if self.flags.len() > 16 {
            return Err(invalid("data.flags", "more than 16 flags"));
        }
        if let Some(bad) = self.flags.iter().find(|f| !is_category(f)) {
            return Err(invalid("data.flags", format!("{bad:?} is not 1-64 lowercase letters, digits or '_'")));
        }
        if let Some(area) = &self.area {
            if !self.datum.is_wgs84() {
                return Err(invalid("data.area", "is WGS-84 only: send it with datum wgs84"));
            }
            area.validate("data.area")?;
        }
        Ok(())
    }

    /// Converts `location` to WGS-84 when it arrived in another datum, keeping the original in
    /// `received_location`; a WGS-84 report is left as it is.
    pub fn convert_to_wgs84(&mut self) {
        if self.datum.is_wgs84() {
            return;
        }
        let Location { lon, lat } = self.location;
        self.received_location = Some(ReceivedLocation { datum: self.datum, lon, lat });
        let (lon, lat) = self.datum.to_wgs84(lon, lat);
        self.location = Location { lon, lat };
        self.datum = Datum::Wgs84;
    }
}

/// How a case's location was matched to a community.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CommunityOutcome {
    /// Strictly inside exactly one community.
    Inside,
    /// On the boundary shared by several communities: the first candidate (by id) was chosen.
    OnBorder,
    /// Inside one community but within the configured distance of another's border: ambiguous.
    /// The containing community was chosen; `candidates` lists it and the others, nearest
    /// first, and `distance_m` is the distance to the nearest other.
    NearBorder,
    /// Outside every community but within the configured tolerance of the nearest one.
    Nearest,
    /// Outside every community and beyond the tolerance: no community, never a guess.
    Unmatched,
}

/// A community as a decision names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CommunityRef {
    /// Community id (subject token), e.g. `mission` or a 12-digit code.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Parent sub-district (街道) code, where the region has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_district: Option<String>,
    /// Parent district (区) code.
    pub district: String,
}

/// The community part of a decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CommunityMatch {
    /// How it matched.
    pub outcome: CommunityOutcome,
    /// The chosen community; absent when unmatched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub community: Option<CommunityRef>,
    /// Distance to the chosen community's boundary in metres, for `nearest`; for
    /// `near_border`, to the nearest other community.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distance_m: Option<f64>,
    /// Every community id in the running, for `on_border` and `near_border` (and `nearest`
    /// when several were within the tolerance), nearest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<String>,
}

/// Administrative level of a department's jurisdiction, most specific first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JurisdictionLevel {
    /// Named communities (社区).
    Community,
    /// Named sub-districts (街道).
    SubDistrict,
    /// Named districts (区).
    District,
    /// The whole region.
    Region,
}

/// Why a department was chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DepartmentRule {
    /// The department handles the category in a jurisdiction that contains the community; it
    /// was the most specific such jurisdiction.
    Jurisdiction {
        /// The jurisdiction's level.
        level: JurisdictionLevel,
        /// The id (community, sub-district or district code, or region id) that matched.
        area: String,
    },
    /// No jurisdiction rule applied (unknown category, unmatched location, or no department
    /// handles the category there): the region's catch-all took it.
    CatchAll {
        /// Why no rule applied.
        reason: String,
    },
}

/// One department a case was routed to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DepartmentChoice {
    /// Department id (subject token).
    pub id: String,
    /// Display name.
    pub name: String,
    /// The rule that chose it.
    pub rule: DepartmentRule,
}

/// One volunteer a case was offered to, nearest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VolunteerChoice {
    /// Volunteer id.
    pub id: String,
    /// Great-circle distance from the case, metres.
    pub distance_m: f64,
}

/// How the volunteer search went: why the ones nearer than the last chosen were passed over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VolunteerSearch {
    /// The skill the category needs; no search when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skill: Option<String>,
    /// How many were wanted.
    pub k: usize,
    /// Search radius, metres.
    pub radius_m: f64,
    /// Volunteers looked at, nearest first, until `k` were found or the radius was reached.
    pub examined: usize,
    /// Passed over because they were not available.
    pub skipped_unavailable: usize,
    /// Passed over because they lack the skill.
    pub skipped_skill: usize,
    /// Passed over because they already had the hourly maximum of offers (alert fatigue).
    #[serde(default)]
    pub skipped_capped: usize,
    /// True when the search stopped at the radius (volunteers beyond it were not considered).
    pub reached_radius: bool,
}

/// The routing decision for one case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Decision {
    /// Version of the region data (boundaries, departments) the decision used.
    pub geo_version: String,
    /// The priority the case is handled at: the reported one, raised by the priority rules
    /// (vulnerable people, life-threatening categories); the explanation says which fired.
    pub priority: u8,
    /// The community.
    pub community: CommunityMatch,
    /// For a broadcast (a report with an `area`): every community the area touches, by id;
    /// each but the case's own community gets it on `routed.community.<id>`, and `departments`
    /// covers them all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub broadcast: Vec<CommunityRef>,
    /// The department(s) responsible; never empty.
    pub departments: Vec<DepartmentChoice>,
    /// Who takes the case if the responsible departments reject it, in order: departments at
    /// the less specific levels, then the catch-all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<DepartmentChoice>,
    /// The volunteers offered the case, nearest first.
    pub volunteers: Vec<VolunteerChoice>,
    /// How the volunteer search went.
    pub volunteer_search: VolunteerSearch,
    /// The facility nearest the case of the kind its category calls for (an AED or fire
    /// station for a cardiac arrest), told to the volunteer who accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facility: Option<FacilityChoice>,
    /// The same decision in English sentences, for people.
    pub explanation: Vec<String>,
    /// The explanation as data, a line each, for readers to render in their own language
    /// ([`explain::Reason::render`]); absent from decisions made before it existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<explain::Reason>,
}

/// A facility near a case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FacilityChoice {
    /// Facility id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Kind, e.g. `aed`, `fire_station`.
    pub kind: String,
    /// Where it is.
    pub location: Location,
    /// Great-circle distance from the case, metres.
    pub distance_m: f64,
}

/// The `data` of `org.linkbus.case.routed` events: the case and where it went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RoutedCase {
    /// The case id (the id of the event that reported it).
    pub case_id: String,
    /// The CloudEvents `source` of the system that reported it, e.g. `/sf311`.
    pub source: String,
    /// The report as received.
    pub case: CaseReport,
    /// The routing decision.
    pub decision: Decision,
    /// When the router decided.
    #[schemars(schema_with = "timestamp_schema")]
    pub routed_at: Timestamp,
}

/// The `data` of `org.linkbus.volunteer.offer` events on `volunteer.<id>.offer`. Carries what a
/// volunteer needs to help, never the reporter's contact or other volunteers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VolunteerOffer {
    /// The case id.
    pub case_id: String,
    /// The volunteer offered.
    pub volunteer_id: String,
    /// 1-based rank among the volunteers offered this case.
    pub rank: usize,
    /// The case category.
    pub category: String,
    /// The case priority (1 = life-threatening).
    pub priority: u8,
    /// Where to go.
    pub location: Location,
    /// Street address, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// What is happening.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// How far the volunteer is, metres.
    pub distance_m: f64,
    /// The skill asked for.
    pub skill: String,
}

/// A volunteer's live state: the value stored under the volunteer's id in the
/// `linkbus_volunteers` KV bucket. Routers follow the bucket and use a change within a second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VolunteerStatus {
    /// Volunteer id; must equal the KV key.
    pub id: String,
    /// Last known position.
    pub location: Location,
    /// On duty and free to take an offer.
    pub available: bool,
    /// Skills, e.g. `first_aid`, `elderly_care` (same syntax as categories).
    pub skills: Vec<String>,
}

impl VolunteerStatus {
    /// True when `s` is a valid volunteer id (and so a valid KV key): 1-64 ASCII letters,
    /// digits, `-` or `_`.
    pub fn is_id(s: &str) -> bool {
        is_token(s, 64, b"-_")
    }

    /// Checks the id, position and skills.
    pub fn validate(&self) -> Result<(), Invalid> {
        if !Self::is_id(&self.id) {
            return Err(invalid("id", "must be 1-64 ASCII letters, digits, '-' or '_'"));
        }
        self.location.validate("location")?;
        if self.skills.len() > 32 {
            return Err(invalid("skills", "more than 32 skills"));
        }
        if let Some(bad) = self.skills.iter().find(|s| !is_category(s)) {
            return Err(invalid("skills", format!("{bad:?} is not 1-64 lowercase letters, digits or '_'")));
        }
        Ok(())
    }
}

/// `text` cut to at most `max` bytes, on a character boundary.
pub fn truncated(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}
