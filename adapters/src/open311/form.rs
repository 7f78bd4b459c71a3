//! What a resident posts to `POST requests`: the form as read ([`read_fields`]: url-encoded by
//! [`parse_form`], or multipart), the fields linkbus takes from it ([`Posted`]), and the case
//! event it becomes, or why it cannot ([`RequestError`]).

use axum::http::{HeaderMap, header};
use bytes::Bytes;
use jiff::Timestamp;
use linkbus_wire::{self as wire, CaseReport, CloudEvent, Contact, Datum, Location, SourceSystem};
use percent_encoding::percent_decode;

use super::config::Open311Config;
use crate::intake::{digest_id, event_id};
use crate::web;

/// The event id prefix of Open311 requests (`open311-<id>`).
pub(super) const PREFIX: &str = "open311";
/// Longest `description`, characters (the spec's limit).
pub const MAX_DESCRIPTION: usize = 4000;
/// Most `attribute[…]` fields a request may carry.
pub const MAX_ATTRIBUTES: usize = 32;

/// Why a posted request cannot be taken.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The form is not UTF-8 once percent-decoded.
    #[error("the form is not UTF-8 (after percent-decoding)")]
    NotUtf8(#[source] std::str::Utf8Error),
    /// The body is not a form.
    #[error(
        "content type {0:?}: post application/x-www-form-urlencoded, as GeoReport v2 says (or multipart/form-data)"
    )]
    ContentType(String),
    /// A multipart body that cannot be read.
    #[error("the multipart form cannot be read: {0}")]
    Multipart(#[source] multer::Error),
    /// A multipart form with a file in it (the part's name).
    #[error(
        "{0}: a media file is not stored here; upload it where the app keeps its photos and post its link as media_url"
    )]
    MediaFile(String),
    /// A field is missing, given twice, too long or out of range; the message names it.
    #[error("{0}")]
    Field(String),
    /// `lat` or `long` is not a number.
    #[error("{field} {text:?} is not a number")]
    NotANumber {
        /// `lat` or `long`.
        field: &'static str,
        /// What was posted.
        text: String,
        /// The parser's error.
        #[source]
        source: std::num::ParseFloatError,
    },
    /// A request whose case the bus would refuse.
    #[error("{0}")]
    Report(#[source] wire::Invalid),
}

/// The fields of a posted request that linkbus reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Posted {
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
    pub(super) account_id: Option<String>,
    attributes: Vec<(String, String)>,
    /// Every field but `api_key`, sorted: what the request id is a digest of.
    canonical: Vec<(String, String)>,
}

/// Fields the spec defines that linkbus accepts and ignores.
const IGNORED: &[&str] = &["api_key", "jurisdiction_id"];

impl Posted {
    pub(super) fn read(pairs: &[(String, String)]) -> Result<Self, RequestError> {
        let mut p = Posted::default();
        let mut seen: Vec<&str> = Vec::new();
        for (name, value) in pairs {
            if let Some(code) = name.strip_prefix("attribute[") {
                let code = code.strip_suffix("[]").unwrap_or(code).strip_suffix(']').unwrap_or_default();
                if code.is_empty() || code.len() > 64 || value.len() > 512 {
                    return Err(RequestError::Field(format!(
                        "{name}: an attribute is attribute[code]=value, code ≤ 64 and value ≤ 512 bytes"
                    )));
                }
                if p.attributes.len() == MAX_ATTRIBUTES {
                    return Err(RequestError::Field(format!("more than {MAX_ATTRIBUTES} attributes")));
                }
                p.attributes.push((code.to_owned(), value.clone()));
                continue;
            }
            if seen.contains(&name.as_str()) {
                return Err(RequestError::Field(format!("{name} is given twice")));
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

    /// The service code posted.
    pub(super) fn service_code(&self) -> &str {
        &self.service_code
    }

    /// The case event in `category` (the posted service's), or what is wrong with the request.
    pub(super) fn event(
        &self,
        config: &Open311Config,
        category: &str,
        now: Timestamp,
    ) -> Result<CloudEvent<CaseReport>, RequestError> {
        if self.service_code.is_empty() || self.service_code.len() > 64 {
            return Err(RequestError::Field("service_code is required (at most 64 bytes)".into()));
        }
        let (lat, long) = match (&self.lat, &self.long) {
            (Some(lat), Some(long)) => (lat, long),
            (None, None) if self.address_string.is_some() || self.address_id.is_some() => {
                return Err(RequestError::Field(
                    "lat and long are required: linkbus routes by location and does not geocode address_string or \
                     address_id"
                        .into(),
                ));
            }
            _ => return Err(RequestError::Field("lat and long are required".into())),
        };
        let number = |field: &'static str, text: &str| {
            text.parse::<f64>().map_err(|source| RequestError::NotANumber { field, text: text.to_owned(), source })
        };
        let location = Location { lon: number("long", long)?, lat: number("lat", lat)? };
        if !location.lat.is_finite() || !(-90.0..=90.0).contains(&location.lat) {
            return Err(RequestError::Field(format!("lat {lat} is not a latitude in [-90, 90]")));
        }
        if !location.lon.is_finite() || !(-180.0..=180.0).contains(&location.lon) {
            return Err(RequestError::Field(format!("long {long} is not a longitude in [-180, 180]")));
        }
        let datum = match &self.datum {
            None => Datum::Wgs84,
            Some(d) => {
                Datum::parse(d).ok_or_else(|| RequestError::Field(format!("datum {d:?}: wgs84, gcj02 or bd09")))?
            }
        };
        if self.description.as_ref().is_some_and(|d| d.chars().count() > MAX_DESCRIPTION) {
            return Err(RequestError::Field(format!("description is longer than {MAX_DESCRIPTION} characters")));
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
                return Err(RequestError::Field(format!("{name} is longer than 256 bytes")));
            }
        }
        let mut description = self.description.clone().unwrap_or_default();
        if !self.attributes.is_empty() {
            let list: Vec<String> = self.attributes.iter().map(|(k, v)| format!("{k}={v}")).collect();
            description.push_str(&format!("\nAttributes: {}", list.join("; ")));
        }
        let name = match (&self.first_name, &self.last_name) {
            (Some(f), Some(l)) => Some(format!("{f} {l}")),
            (Some(n), None) | (None, Some(n)) => Some(n.clone()),
            (None, None) => None,
        };
        // Personal data, kept for the departments and dispatchers (the case's reporter), never in
        // a public read.
        let reporter = Contact {
            name,
            phone: self.phone.clone(),
            email: self.email.clone(),
            device_id: self.device_id.clone(),
            account_id: self.account_id.clone(),
        };
        let reporter = (reporter != Contact::default()).then_some(reporter);
        let request_id = self.request_id();
        let report = CaseReport {
            system: SourceSystem::PublicService,
            category: category.to_owned(),
            priority: config.priority,
            location,
            datum,
            received_location: None,
            address: self.address_string.clone(),
            reporter,
            description: Some(description.trim().to_owned()).filter(|d| !d.is_empty()),
            media_url: self.media_url.clone(),
            source_id: request_id.clone(),
            reported_at: now,
            flags: vec![],
            area: None,
        };
        report.validate().map_err(RequestError::Report)?;
        Ok(CloudEvent::new(
            event_id(PREFIX, &request_id),
            &config.source,
            wire::TYPE_CASE_REPORTED,
            Some(request_id),
            now,
            report,
        ))
    }
}

/// The first value of field `name` in a form, if it decodes (the rest of the form may not).
pub(super) fn form_value(body: &[u8], name: &str) -> Option<String> {
    body.split(|&b| b == b'&').find_map(|part| {
        let mut halves = part.splitn(2, |&b| b == b'=');
        let field = halves.next()?;
        (field == name.as_bytes()).then(|| decode_component(halves.next().unwrap_or_default()).ok())?
    })
}

/// The form GeoReport v2 says to post.
const URLENCODED: &str = "application/x-www-form-urlencoded";
/// The form of clients that can attach a photo.
pub(super) const MULTIPART: &str = "multipart/form-data";

/// The fields of a posted form, and the name of a file part among them (a photo: refused, but
/// only once the caller's key, among the fields, was checked).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Form {
    /// The text fields, in order.
    pub pairs: Vec<(String, String)>,
    /// The name of the first part that carried a file, if any.
    pub file: Option<String>,
}

/// Reads the fields of a `POST requests` body: `application/x-www-form-urlencoded` as the spec
/// says, or `multipart/form-data` as clients that can attach a photo send it.
pub async fn read_fields(headers: &HeaderMap, body: Bytes) -> Result<Form, RequestError> {
    match web::media_type(headers).as_str() {
        URLENCODED => Ok(Form { pairs: parse_form(&body)?, file: None }),
        MULTIPART => parse_multipart(headers, body).await,
        other => Err(RequestError::ContentType(other.to_owned())),
    }
}

/// Whether a request's body is a form [`read_fields`] reads.
pub fn is_form(headers: &HeaderMap) -> bool {
    matches!(web::media_type(headers).as_str(), URLENCODED | MULTIPART)
}

async fn parse_multipart(headers: &HeaderMap, body: Bytes) -> Result<Form, RequestError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let boundary = multer::parse_boundary(content_type).map_err(RequestError::Multipart)?;
    let body = futures::stream::once(async move { Ok::<_, std::convert::Infallible>(body) });
    let mut parts = multer::Multipart::new(body, boundary);
    let mut form = Form::default();
    while let Some(part) = parts.next_field().await.map_err(RequestError::Multipart)? {
        let name = part.name().unwrap_or_default().to_owned();
        let is_file = part.file_name().is_some();
        let bytes = part.bytes().await.map_err(RequestError::Multipart)?;
        if is_file {
            // A browser's form sends an empty file part for a file input left empty.
            if !bytes.is_empty() && form.file.is_none() {
                form.file = Some(name);
            }
            continue;
        }
        let value = String::from_utf8(bytes.into()).map_err(|e| RequestError::NotUtf8(e.utf8_error()))?;
        form.pairs.push((name, value));
    }
    Ok(form)
}

/// Reads `application/x-www-form-urlencoded` pairs (also a query string): `+` is a space,
/// percent-escapes are decoded, and the result must be UTF-8.
pub fn parse_form(body: &[u8]) -> Result<Vec<(String, String)>, RequestError> {
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
fn decode_component(part: &[u8]) -> Result<String, RequestError> {
    let spaced: Vec<u8> = part.iter().map(|&b| if b == b'+' { b' ' } else { b }).collect();
    percent_decode(&spaced).decode_utf8().map(|s| s.into_owned()).map_err(RequestError::NotUtf8)
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
        let event = posted.event(&Open311Config::default(), "street_defects", Timestamp::UNIX_EPOCH).expect("event");
        let r = &event.data;
        assert_eq!((r.system, r.category.as_str()), (SourceSystem::PublicService, "street_defects"));
        assert_eq!((r.location.lat, r.location.lon), (37.7599, -122.4194));
        assert_eq!(r.address.as_deref(), Some("19th & Guerrero"));
        let reporter = Contact {
            name: Some("Ada L".into()),
            phone: Some("555-0100".into()),
            email: Some("a@example.org".into()),
            device_id: Some("d1".into()),
            account_id: Some("7".into()),
        };
        assert_eq!(r.reporter, Some(reporter), "every personal field is kept for the department");
        assert_eq!(r.media_url.as_deref(), Some("https://example.org/p.jpg"));
        let description = r.description.as_deref().expect("description");
        assert_eq!(description, "Deep hole, bikes swerve\nAttributes: SIZE=large; WHERE=lane");
        assert_eq!(event.id, format!("open311-{}", r.source_id));
        assert!(r.flags.is_empty());
        // The same request with another key is the same request.
        let again = Posted::read(&pairs(&FORM.replace("api_key=xyz", "api_key=other"))).expect("read");
        assert_eq!(again.request_id(), posted.request_id());
        let other = Posted::read(&pairs(&FORM.replace("lane", "kerb"))).expect("read");
        assert_ne!(other.request_id(), posted.request_id());
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let config = Open311Config::default();
        let refused = |form: &str| -> String {
            match Posted::read(&pairs(form)) {
                Err(e) => e.to_string(),
                Ok(p) => p.event(&config, "sewer_issues", Timestamp::UNIX_EPOCH).expect_err(form).to_string(),
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
        let huge = format!("service_code=SEWER&lat=37&long=-122&media_url=https://x.org/{}", "p".repeat(2048));
        assert!(refused(&huge).contains("media_url"));
        let device = format!("service_code=SEWER&lat=37&long=-122&device_id={}", "d".repeat(257));
        assert!(refused(&device).contains("device_id"));
        let long = format!("service_code=SEWER&lat=37&long=-122&description={}", "x".repeat(4001));
        assert!(refused(&long).contains("description"));
        assert!(parse_form(b"a=%FF%FE").expect_err("not UTF-8").to_string().contains("UTF-8"));
    }

    fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> (HeaderMap, Bytes) {
        let mut body = Vec::new();
        for (name, file, value) in parts {
            let file = file.map(|f| format!("; filename=\"{f}\"")).unwrap_or_default();
            body.extend_from_slice(
                format!("--XyZ\r\nContent-Disposition: form-data; name=\"{name}\"{file}\r\n\r\n").as_bytes(),
            );
            body.extend_from_slice(value);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"--XyZ--\r\n");
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, "multipart/form-data; boundary=XyZ".parse().expect("header"));
        (headers, body.into())
    }

    #[tokio::test]
    async fn a_multipart_form_is_read_as_its_text_fields_and_a_file_is_named() {
        let text: &[(&str, Option<&str>, &[u8])] = &[("service_code", None, b"SEWER"), ("lat", None, b"37.7")];
        let (headers, body) = multipart(&[text, &[("media", Some(""), b"")]].concat());
        let form = read_fields(&headers, body).await.expect("read");
        let expected = vec![("service_code".to_owned(), "SEWER".to_owned()), ("lat".to_owned(), "37.7".to_owned())];
        assert_eq!(form, Form { pairs: expected.clone(), file: None }, "an empty file input is no file");
        let (headers, body) = multipart(&[text, &[("media", Some("p.jpg"), b"JFIF")]].concat());
        assert_eq!(
            read_fields(&headers, body).await.expect("read"),
            Form { pairs: expected, file: Some("media".into()) }
        );
        let (headers, body) = multipart(&[("description", None, b"\xff\xfe")]);
        assert!(matches!(read_fields(&headers, body).await, Err(RequestError::NotUtf8(_))));
        let (mut headers, body) = multipart(text);
        headers.insert(header::CONTENT_TYPE, "multipart/form-data".parse().expect("header"));
        assert!(matches!(read_fields(&headers, body).await, Err(RequestError::Multipart(_))), "no boundary");
        headers.insert(header::CONTENT_TYPE, "application/json".parse().expect("header"));
        assert!(
            matches!(read_fields(&headers, Bytes::new()).await, Err(RequestError::ContentType(t)) if t == "application/json")
        );
        headers.insert(header::CONTENT_TYPE, "application/x-www-form-urlencoded".parse().expect("header"));
        let form = read_fields(&headers, Bytes::from_static(b"a=1&b=%20")).await.expect("read");
        assert_eq!(form.pairs, vec![("a".to_owned(), "1".to_owned()), ("b".to_owned(), " ".to_owned())]);
        assert!(is_form(&headers));
        headers.insert(header::CONTENT_TYPE, "text/plain".parse().expect("header"));
        assert!(!is_form(&headers));
    }

    #[test]
    fn each_limit_takes_its_bound_and_refuses_one_more() {
        let config = Open311Config::default();
        let base = "lat=37&long=-122";
        let event = |form: &str| {
            Posted::read(&pairs(form)).and_then(|p| p.event(&config, "sewer_issues", Timestamp::UNIX_EPOCH))
        };
        let code = |n: usize| format!("{base}&service_code={}", "C".repeat(n));
        assert!(event(&code(64)).is_ok());
        assert!(event(&code(65)).expect_err("65 bytes").to_string().contains("service_code"));
        let description = |n: usize| format!("{base}&service_code=S&description={}", "d".repeat(n));
        assert!(event(&description(MAX_DESCRIPTION)).is_ok());
        let device = |n: usize| format!("{base}&service_code=S&device_id={}", "d".repeat(n));
        assert!(event(&device(256)).is_ok());
        let attribute = |code: usize, value: usize| format!("attribute[{}]={}", "k".repeat(code), "v".repeat(value));
        assert!(Posted::read(&pairs(&attribute(64, 512))).is_ok());
        for (form, why) in
            [(attribute(65, 1), "code too long"), (attribute(1, 513), "value too long"), (attribute(0, 1), "no code")]
        {
            assert!(Posted::read(&pairs(&form)).expect_err(why).to_string().contains("attribute"), "{why}");
        }
        let many: Vec<String> = (0..=MAX_ATTRIBUTES).map(|i| format!("attribute[a{i}]=x")).collect();
        assert!(Posted::read(&pairs(&many[..MAX_ATTRIBUTES].join("&"))).is_ok());
        assert!(Posted::read(&pairs(&many.join("&"))).expect_err("33").to_string().contains("attributes"));
        let by_id = event("service_code=S&address_id=123").expect_err("no location").to_string();
        assert!(by_id.contains("does not geocode"), "{by_id}");
        let nowhere = event("service_code=S").expect_err("no location").to_string();
        assert!(!nowhere.contains("geocode"), "{nowhere}");
        assert_eq!(Posted::read(&pairs(FORM)).expect("read").service_code(), "POTHOLE");
    }

    #[test]
    fn the_key_is_found_in_a_form_whatever_else_it_holds() {
        assert_eq!(form_value(b"a=1&api_key=k%2B1&b=%FF", "api_key").as_deref(), Some("k+1"));
        assert_eq!(form_value(b"api_keys=x&xapi_key=y", "api_key"), None);
        assert_eq!(form_value(b"api_key", "api_key").as_deref(), Some(""));
    }

    #[test]
    fn gcj02_coordinates_are_taken_with_their_datum() {
        let form = "service_code=SEWER&lat=39.9087&long=116.3975&datum=gcj02";
        let posted = Posted::read(&pairs(form)).expect("read");
        let event = posted.event(&Open311Config::default(), "sewer_issues", Timestamp::UNIX_EPOCH);
        assert_eq!(event.expect("event").data.datum, Datum::Gcj02);
    }
}
