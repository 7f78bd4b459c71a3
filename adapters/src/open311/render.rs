//! The Open311 endpoint's answers, in JSON or XML as the path's extension asks: services, a
//! created request, requests, and the spec's error list.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::web::Xml;

/// One service of `GET services`.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Created {
    /// The request's id.
    pub service_request_id: String,
    /// What the resident can expect.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_notice: Option<String>,
    /// The `account_id` posted, if any (left out without one: the published GeoReport v2
    /// swagger has it a string, never null).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// The request's tracking token, the proof its tracking page asks for (an extension of the
    /// spec, as GeoReport v2 allows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracking_token: Option<String>,
    /// Its tracking page (with the token) for the resident.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracking_url: Option<String>,
    /// That link as a QR code (SVG).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracking_qr: Option<String>,
}

/// One request as `GET requests` answers it.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
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
    /// The photo or video link posted.
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
    pub(super) fn new(status: StatusCode, description: impl Into<String>) -> Self {
        Self { status, description: description.into(), retry_after: None }
    }

    pub(super) fn bad(description: impl Into<String>) -> Self {
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
pub(super) fn split_format(segment: &str) -> Option<(&str, Format)> {
    match segment.rsplit_once('.') {
        Some((name, "json")) => Some((name, Format::Json)),
        Some((name, "xml")) => Some((name, Format::Xml)),
        _ => None,
    }
}

/// The answer to a path without `.json` or `.xml`.
pub(super) fn unknown_format() -> Response {
    error(Format::Json, Open311Error::new(StatusCode::NOT_FOUND, "no such resource: use .json or .xml"))
}

pub(super) fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json; charset=utf-8")], bytes).into_response()
}

pub(super) fn xml_response(status: StatusCode, xml: Xml) -> Response {
    (status, [(header::CONTENT_TYPE, "text/xml; charset=utf-8")], xml.finish()).into_response()
}

pub(super) fn error(format: Format, e: Open311Error) -> Response {
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

pub(super) fn render_services(services: &[Service], format: Format) -> Response {
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

pub(super) fn render_created(created: &Created, format: Format) -> Response {
    match format {
        Format::Json => json_response(StatusCode::CREATED, &[created]),
        Format::Xml => {
            let mut xml = Xml::new();
            xml.open("service_requests").open("request");
            xml.field("service_request_id", Some(&created.service_request_id));
            xml.field("service_notice", created.service_notice.as_deref());
            xml.field("account_id", created.account_id.as_deref());
            let tracking = [
                ("tracking_token", &created.tracking_token),
                ("tracking_url", &created.tracking_url),
                ("tracking_qr", &created.tracking_qr),
            ];
            for (tag, value) in tracking {
                if let Some(value) = value {
                    xml.field(tag, Some(value));
                }
            }
            xml.close("request").close("service_requests");
            xml_response(StatusCode::CREATED, xml)
        }
    }
}

pub(super) fn render_requests(views: &[RequestView], format: Format) -> Response {
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
