//! OASIS Common Alerting Protocol 1.2 alerts (XML) from warning centres and 110/119/120.
//!
//! [`parse`] decodes an alert as XML 1.0 says (byte-order mark, else the XML declaration's
//! `encoding`, else UTF-8; with `encoding_rs`) and reads it with `roxmltree`, which refuses any DTD (so entity declarations, and
//! with them billion-laughs documents, never expand), and checks the CAP 1.2 rules: the required
//! elements, the value lists (`status`, `msgType`, `scope`, `category`, `urgency`, `severity`,
//! `certainty`), `sent` as a date-time with a numeric offset, `polygon` as at least 4 closed
//! `lat,lon` pairs and `circle` as `lat,lon radius_km`. [`to_intake`] turns it into what the bus
//! does with it:
//!
//! - `Alert` → a new `emergency` case whose id derives from `sender` and `identifier` (the same
//!   alert twice is one case). Its areas' polygons and circles make it a **broadcast**: the case
//!   carries the area and the router sends it to every community the area touches; `location`
//!   is the area's centre. An `<area>` with neither gives its `<geocode>`s, which the router
//!   resolves through the region's geocode table (a district's or 街道's code reaches the
//!   communities within; an unknown code is said in the explanation); `location` is then the
//!   centre of the communities they name ([`Gazetteer`]), and an alert none of whose geocodes
//!   the region knows is refused. The category is the first `info`'s `event` mapped by
//!   `[adapters.cap.categories]` (else its CAP `category` codes, else `uncategorized` + the
//!   `unmapped_category` flag); the priority follows `severity`, raised one step for an
//!   `Immediate` and `Observed`/`Likely` alert.
//! - `Update` / `Cancel` → a source update / withdrawal of each alert in `references` (which
//!   must be the same sender's): the referenced case's timeline gets the new alert's headline.
//!   When linkbus has none of the referenced alerts, the message is also the case it describes
//!   (flagged [`UNSEEN_ORIGINAL`], with the first reference's id), reported instead.
//! - `status` `Exercise` and `Test` are routed like real alerts but flagged `exercise` / `test`
//!   and their text starts with `EXERCISE:` / `TEST:`, so consumers filter them and nobody
//!   mistakes them for real ones; `Draft` and `System` alerts, and `msgType` `Ack` / `Error`, are
//!   refused (not for routing).
//!
//! [`CapConfig`] (`[adapters.cap]`) is also the format its running adapter reads: a
//! [`Keyed`] adapter, taking alerts on `POST /api/adapters/cap` and the NATS subject
//! `adapter.cap` ([`crate::messages`]).
//!
//! Left out, on purpose: XML digital signatures and encryption (CAP's optional
//! `<Signature>`/`<EncryptedData>`; senders authenticate with a source key instead), `resource`
//! (attachments: not fetched), `altitude`/`ceiling`, and `effective`/`onset`/`expires`
//! (kept in the alert, not enforced).

use std::sync::Arc;

use bytes::Bytes;

use futures::future::BoxFuture;
use jiff::Timestamp;
use linkbus_wire::http_error::ErrorCode;
use linkbus_wire::{
    self as wire, Action, Area, CaseReport, Circle, CloudEvent, Contact, Geocode, Location, SourceSystem,
};
use serde::Deserialize;

use crate::adapter::{Adapter, AdapterConfig, BuildContext, BuildError, ConfigError, LiveGazetteer, check_categories};
use crate::intake::{IntakeError, Message};
use crate::kind::AdapterKind;
use crate::messages::{Keyed, KeyedFormat};
use crate::vocabulary::CategoryMap;
use linkbus_matching::areas::Gazetteer;

/// The CAP 1.2 XML namespace.
pub const NAMESPACE: &str = "urn:oasis:names:tc:emergency:cap:1.2";
/// The CloudEvents `source` of CAP cases, and the source actor of their updates.
pub const SOURCE: &str = "/cap";
/// The flag of a case opened by an Update or Cancel whose original alert linkbus never received.
pub const UNSEEN_ORIGINAL: &str = "unseen_original";
/// The largest alert taken, bytes: real alerts embed their resources (IPAWS audio and images,
/// base64 in `<derefUri>`), which run to megabytes.
pub const MAX_ALERT_BYTES: usize = 4 * 1024 * 1024;
/// What a dead letter keeps of each embedded resource (`<derefUri>`'s content), bytes.
const DEREF_KEPT: usize = 64;
/// Elements an alert may have at most (a bound on memory for hostile input).
const MAX_NODES: u32 = 20_000;

/// `[adapters.cap]`: CAP alerts over HTTP (`POST /api/adapters/cap`) and NATS.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CapConfig {
    /// Run this adapter (on by default, as every adapter; `false` turns it off).
    pub enabled: bool,
    /// CAP `event` text or `category` code → bus category, e.g. `"Flood Warning" = "flood"`.
    #[serde(default)]
    pub categories: CategoryMap,
    /// The NATS subject on which raw CAP XML is accepted (replies with the result when the
    /// message has a reply subject; dead letter on error).
    #[serde(default = "default_subject")]
    pub subject: String,
}

impl Default for CapConfig {
    fn default() -> Self {
        Self { enabled: true, categories: CategoryMap::default(), subject: default_subject() }
    }
}

fn default_subject() -> String {
    linkbus_wire::subjects::CAP_ALERTS.to_owned()
}

impl AdapterConfig for CapConfig {
    fn kind(&self) -> AdapterKind {
        AdapterKind::Cap
    }

    fn enabled(&self) -> bool {
        self.enabled
    }

    fn validate(&self) -> Result<(), ConfigError> {
        check_categories(AdapterKind::Cap, "categories", &self.categories)
    }

    fn category_maps(&self) -> Vec<&CategoryMap> {
        vec![&self.categories]
    }

    fn build<'a>(&'a self, cx: &'a BuildContext) -> BoxFuture<'a, Result<Arc<dyn Adapter>, BuildError>> {
        let format = Cap { config: self.clone(), gazetteer: cx.gazetteer.clone() };
        let adapter: Arc<dyn Adapter> = Arc::new(Keyed::new(format, cx));
        Box::pin(std::future::ready(Ok(adapter)))
    }
}

/// The running adapter's format: its configuration and the region's gazetteer, which places
/// areas named only by geocode.
#[derive(Debug)]
pub struct Cap {
    config: CapConfig,
    gazetteer: Arc<LiveGazetteer>,
}

impl KeyedFormat for Cap {
    const KIND: AdapterKind = AdapterKind::Cap;
    const SOURCE: &'static str = SOURCE;
    const ROUTE: &'static str = "/api/adapters/cap";
    const CONTENT_TYPES: &'static [&'static str] = &["application/cap+xml", "application/xml", "text/xml"];

    const MAX_BODY: usize = MAX_ALERT_BYTES;

    fn subject(&self) -> &str {
        &self.config.subject
    }

    fn read(&self, bytes: &[u8]) -> Result<Message, IntakeError> {
        Ok(to_intake(&parse(bytes)?, &self.config, &self.gazetteer.current())?)
    }

    fn kept(bytes: Bytes) -> Bytes {
        without_embedded_resources(bytes)
    }
}

/// The alert with each `<derefUri>`'s content (a resource embedded as base64: megabytes of
/// audio or images) cut to its first [`DEREF_KEPT`] bytes and a note of the size, so a dead
/// letter keeps the alert, not its attachments. Looks at the bytes as they are (UTF-8 or another
/// ASCII-compatible encoding; a UTF-16 alert is kept whole), so it works on alerts that do not
/// parse too.
pub fn without_embedded_resources(bytes: Bytes) -> Bytes {
    const TAG: &[u8] = b"derefUri>";
    let find = |from: usize| bytes[from..].windows(TAG.len()).position(|w| w == TAG).map(|p| from + p);
    let mut out: Vec<u8> = Vec::new();
    let (mut copied, mut at) = (0, 0);
    while let Some(found) = find(at) {
        let content = found + TAG.len();
        at = content;
        // An opening tag (`<derefUri>`, `<cap:derefUri>`); a closing one (stray) is passed over.
        let opening =
            bytes[..found].iter().rposition(|b| *b == b'<').is_some_and(|lt| bytes.get(lt + 1) != Some(&b'/'));
        if !opening {
            continue;
        }
        let Some(close) = find(content) else { break };
        // The content ends where the closing tag starts.
        let Some(end) = bytes[content..close].iter().rposition(|b| *b == b'<').map(|p| content + p) else { continue };
        if end - content > DEREF_KEPT {
            out.extend_from_slice(&bytes[copied..content + DEREF_KEPT]);
            out.extend_from_slice(format!("... [{} bytes of embedded resource not kept]", end - content).as_bytes());
            copied = end;
        }
        at = close;
    }
    if copied == 0 {
        return bytes;
    }
    out.extend_from_slice(&bytes[copied..]);
    Bytes::from(out)
}

/// Why an alert was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CapError {
    /// Not text in the encoding its BOM or XML declaration names (UTF-8 without either), or an
    /// encoding no XML parser is held to know.
    #[error("not acceptable XML: {0}")]
    Encoding(String),
    /// Not well-formed XML, or XML with a DTD (entity declarations are never expanded).
    #[error("not acceptable XML: {0}")]
    Xml(#[source] roxmltree::Error),
    /// Well-formed, but not a valid CAP 1.2 alert.
    #[error("not a valid CAP 1.2 alert: {0}")]
    Invalid(String),
    /// A valid alert that linkbus does not route (draft, system message, ack, no area…).
    #[error("alert not routed: {0}")]
    NotRouted(String),
}

impl CapError {
    /// The code of this refusal: `malformed` for what is not XML, else `invalid`.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Encoding(_) | Self::Xml(_) => ErrorCode::Malformed,
            Self::Invalid(_) | Self::NotRouted(_) => ErrorCode::Invalid,
        }
    }
}

impl From<CapError> for IntakeError {
    fn from(e: CapError) -> Self {
        IntakeError::Adapter { code: e.code(), source: Box::new(e) }
    }
}

fn bad(why: impl Into<String>) -> CapError {
    CapError::Invalid(why.into())
}

/// An alert's `<info>`: what linkbus reads of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Info {
    /// `category` codes (at least one).
    pub categories: Vec<String>,
    /// `event`: what kind of event, in words.
    pub event: String,
    /// `urgency`.
    pub urgency: String,
    /// `severity`.
    pub severity: String,
    /// `certainty`.
    pub certainty: String,
    /// `headline`.
    pub headline: Option<String>,
    /// `description`.
    pub description: Option<String>,
    /// `instruction`.
    pub instruction: Option<String>,
    /// `senderName`.
    pub sender_name: Option<String>,
    /// `contact`.
    pub contact: Option<String>,
    /// The polygons and circles of its `<area>`s, and their `areaDesc`s.
    pub area: Area,
    /// `areaDesc` of each `<area>`.
    pub area_descs: Vec<String>,
}

/// A parsed, valid CAP 1.2 alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// `identifier`.
    pub identifier: String,
    /// `sender`.
    pub sender: String,
    /// `sent`.
    pub sent: Timestamp,
    /// `status`: Actual, Exercise, System, Test, Draft.
    pub status: String,
    /// `msgType`: Alert, Update, Cancel, Ack, Error.
    pub msg_type: String,
    /// `scope`: Public, Restricted, Private.
    pub scope: String,
    /// `note`.
    pub note: Option<String>,
    /// `references`, as (sender, identifier, sent) triples.
    pub references: Vec<(String, String, String)>,
    /// The `<info>` blocks.
    pub infos: Vec<Info>,
}

const STATUS: &[&str] = &["Actual", "Exercise", "System", "Test", "Draft"];
const MSG_TYPE: &[&str] = &["Alert", "Update", "Cancel", "Ack", "Error"];
const SCOPE: &[&str] = &["Public", "Restricted", "Private"];
const CATEGORY: &[&str] =
    &["Geo", "Met", "Safety", "Security", "Rescue", "Fire", "Health", "Env", "Transport", "Infra", "CBRNE", "Other"];
const URGENCY: &[&str] = &["Immediate", "Expected", "Future", "Past", "Unknown"];
const SEVERITY: &[&str] = &["Extreme", "Severe", "Moderate", "Minor", "Unknown"];
const CERTAINTY: &[&str] = &["Observed", "Likely", "Possible", "Unlikely", "Unknown"];

/// The document as text, decoded as XML 1.0 (§4.3.3, Appendix F) says: by its byte-order mark,
/// else by the `encoding` of its XML declaration (UTF-16 told apart by how `<?xml` is spelled
/// in it), else UTF-8. Decoding is `encoding_rs`'s (its labels are the WHATWG ones: ISO-8859-1
/// reads as windows-1252, a superset). Bytes invalid in the encoding are refused, not replaced.
fn decode(bytes: &[u8]) -> Result<std::borrow::Cow<'_, str>, CapError> {
    let (encoding, body) = match encoding_rs::Encoding::for_bom(bytes) {
        Some((encoding, bom)) => (encoding, &bytes[bom..]),
        None if bytes.starts_with(b"<\0?\0") => (encoding_rs::UTF_16LE, bytes),
        None if bytes.starts_with(b"\0<\0?") => (encoding_rs::UTF_16BE, bytes),
        None => (declared_encoding(bytes)?, bytes),
    };
    encoding
        .decode_without_bom_handling_and_without_replacement(body)
        .ok_or_else(|| CapError::Encoding(format!("not valid {} text", encoding.name())))
}

/// The encoding an ASCII-compatible document's XML declaration names; UTF-8 without one.
fn declared_encoding(bytes: &[u8]) -> Result<&'static encoding_rs::Encoding, CapError> {
    // The declaration is ASCII and comes first: look no further than its end.
    let head = &bytes[..bytes.len().min(256)];
    let declaration = match head.strip_prefix(b"<?xml") {
        Some(rest) => rest.split(|b| *b == b'>').next().unwrap_or_default(),
        None => return Ok(encoding_rs::UTF_8),
    };
    let declaration = String::from_utf8_lossy(declaration);
    let Some((_, after)) = declaration.split_once("encoding") else { return Ok(encoding_rs::UTF_8) };
    let label = after
        .trim_start()
        .strip_prefix('=')
        .map(str::trim_start)
        .and_then(|v| {
            let quote = v.chars().next().filter(|q| matches!(q, '"' | '\''))?;
            v[1..].split(quote).next()
        })
        .ok_or_else(|| CapError::Encoding("the XML declaration's encoding is not a quoted name".into()))?;
    match encoding_rs::Encoding::for_label(label.as_bytes()) {
        // A UTF-16 declaration read as ASCII means the document is not UTF-16 after all.
        Some(e) if e == encoding_rs::UTF_16LE || e == encoding_rs::UTF_16BE => {
            Err(CapError::Encoding(format!("declared {label}, but written in a single-byte encoding")))
        }
        Some(e) => Ok(e),
        None => Err(CapError::Encoding(format!("unknown encoding {label:?} in the XML declaration"))),
    }
}

/// Parses and validates a CAP 1.2 alert.
pub fn parse(bytes: &[u8]) -> Result<Alert, CapError> {
    let text = decode(bytes)?;
    let text = text.as_ref();
    let options = roxmltree::ParsingOptions { allow_dtd: false, nodes_limit: MAX_NODES, ..Default::default() };
    let doc = roxmltree::Document::parse_with_options(text, options).map_err(CapError::Xml)?;
    let root = doc.root_element();
    if root.tag_name().name() != "alert" || root.tag_name().namespace() != Some(NAMESPACE) {
        return Err(bad(format!("the root element must be <alert xmlns=\"{NAMESPACE}\">")));
    }
    let one = |name: &'static str| required(root, name);
    let identifier = one("identifier")?;
    let sender = one("sender")?;
    for (name, value) in [("identifier", &identifier), ("sender", &sender)] {
        if value.contains([' ', ',', '<', '&']) || value.len() > 256 {
            return Err(bad(format!("<{name}> must have no spaces, commas, '<' or '&' and at most 256 characters")));
        }
    }
    let sent = parse_time("sent", &one("sent")?)?;
    let status = in_list("status", one("status")?, STATUS)?;
    let msg_type = in_list("msgType", one("msgType")?, MSG_TYPE)?;
    let scope = in_list("scope", one("scope")?, SCOPE)?;
    if scope == "Restricted" && optional(root, "restriction").is_none() {
        return Err(bad("<scope>Restricted</scope> requires <restriction>"));
    }
    if scope == "Private" && optional(root, "addresses").is_none() {
        return Err(bad("<scope>Private</scope> requires <addresses>"));
    }
    let references = match optional(root, "references") {
        Some(text) => text
            .split_whitespace()
            .map(|r| match r.split(',').collect::<Vec<_>>()[..] {
                [s, i, t] if !s.is_empty() && !i.is_empty() => Ok((s.to_owned(), i.to_owned(), t.to_owned())),
                _ => Err(bad(format!("<references> entry {r:?} is not sender,identifier,sent"))),
            })
            .collect::<Result<Vec<_>, _>>()?,
        None => vec![],
    };
    let infos = children(root, "info").map(parse_info).collect::<Result<Vec<_>, _>>()?;
    Ok(Alert { identifier, sender, sent, status, msg_type, scope, note: optional(root, "note"), references, infos })
}

fn children<'a, 'i>(
    node: roxmltree::Node<'a, 'i>,
    name: &'static str,
) -> impl Iterator<Item = roxmltree::Node<'a, 'i>> {
    node.children().filter(move |c| c.is_element() && c.tag_name().name() == name)
}

fn optional(node: roxmltree::Node, name: &'static str) -> Option<String> {
    children(node, name).next().and_then(|n| n.text()).map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned)
}

fn required(node: roxmltree::Node, name: &'static str) -> Result<String, CapError> {
    optional(node, name).ok_or_else(|| bad(format!("<{}> requires <{name}>", node.tag_name().name())))
}

fn in_list(name: &str, value: String, list: &[&str]) -> Result<String, CapError> {
    if list.contains(&value.as_str()) {
        Ok(value)
    } else {
        Err(bad(format!("<{name}> {value:?} is not one of {}", list.join(", "))))
    }
}

/// CAP date-times carry a numeric offset (`2026-11-27T08:00:00-08:00`); `Z` is not allowed.
fn parse_time(name: &str, text: &str) -> Result<Timestamp, CapError> {
    if text.ends_with(['Z', 'z']) {
        return Err(bad(format!("<{name}> {text:?}: CAP 1.2 requires a numeric offset (-00:00 for UTC), not Z")));
    }
    text.parse().map_err(|e| bad(format!("<{name}> {text:?} is not a date-time: {e}")))
}

fn parse_info(info: roxmltree::Node) -> Result<Info, CapError> {
    let categories = children(info, "category")
        .map(|c| in_list("category", c.text().unwrap_or_default().trim().to_owned(), CATEGORY))
        .collect::<Result<Vec<_>, _>>()?;
    if categories.is_empty() {
        return Err(bad("<info> requires at least one <category>"));
    }
    let mut area = Area::default();
    let mut area_descs = Vec::new();
    for a in children(info, "area") {
        area_descs.push(required(a, "areaDesc")?);
        let shapes = area.polygons.len() + area.circles.len();
        for p in children(a, "polygon") {
            area.polygons.push(parse_polygon(p.text().unwrap_or_default())?);
        }
        for c in children(a, "circle") {
            area.circles.push(parse_circle(c.text().unwrap_or_default())?);
        }
        let geocodes = children(a, "geocode")
            .map(|g| Ok(Geocode { value_name: required(g, "valueName")?, value: required(g, "value")? }))
            .collect::<Result<Vec<_>, CapError>>()?;
        // A polygon or circle is the area itself; its geocodes only name what it lies in.
        if area.polygons.len() + area.circles.len() == shapes {
            area.geocodes.extend(geocodes);
        }
    }
    let vertices: usize = area.polygons.iter().map(Vec::len).sum();
    if vertices > wire::MAX_AREA_VERTICES {
        return Err(bad(format!("the areas have more than {} polygon vertices", wire::MAX_AREA_VERTICES)));
    }
    Ok(Info {
        categories,
        event: required(info, "event")?,
        urgency: in_list("urgency", required(info, "urgency")?, URGENCY)?,
        severity: in_list("severity", required(info, "severity")?, SEVERITY)?,
        certainty: in_list("certainty", required(info, "certainty")?, CERTAINTY)?,
        headline: optional(info, "headline"),
        description: optional(info, "description"),
        instruction: optional(info, "instruction"),
        sender_name: optional(info, "senderName"),
        contact: optional(info, "contact"),
        area,
        area_descs,
    })
}

/// `lat,lon` → a checked location.
fn parse_pair(pair: &str, what: &str) -> Result<Location, CapError> {
    let (lat, lon) = pair.split_once(',').ok_or_else(|| bad(format!("{what}: {pair:?} is not \"lat,lon\"")))?;
    let number = |s: &str| s.trim().parse::<f64>().map_err(|_| bad(format!("{what}: {s:?} is not a number")));
    let location = Location { lon: number(lon)?, lat: number(lat)? };
    location.validate(what).map_err(|e| bad(e.to_string()))?;
    Ok(location)
}

/// `<polygon>`: at least four space-separated `lat,lon` pairs, the first equal to the last.
fn parse_polygon(text: &str) -> Result<Vec<Location>, CapError> {
    let ring = text.split_whitespace().map(|p| parse_pair(p, "polygon")).collect::<Result<Vec<_>, _>>()?;
    if ring.len() < 4 {
        return Err(bad(format!("<polygon> has {} pairs; CAP requires at least 4", ring.len())));
    }
    if ring.first() != ring.last() {
        return Err(bad("<polygon> is not closed: the first and last pairs differ"));
    }
    Ok(ring)
}

/// `<circle>`: `lat,lon radius`, the radius in kilometres; 0 is a point (CAP 1.2 Appendix A.3).
fn parse_circle(text: &str) -> Result<Circle, CapError> {
    let (pair, radius) = text
        .trim()
        .split_once(char::is_whitespace)
        .ok_or_else(|| bad(format!("<circle> {text:?} is not \"lat,lon radius_km\"")))?;
    let center = parse_pair(pair, "circle")?;
    let km: f64 = radius.trim().parse().map_err(|_| bad(format!("<circle> radius {radius:?} is not a number")))?;
    let radius_m = km * 1000.0;
    if !(0.0..=wire::MAX_CIRCLE_RADIUS_M).contains(&radius_m) {
        return Err(bad(format!("<circle> radius {km} km is not in [0, {}] km", wire::MAX_CIRCLE_RADIUS_M / 1000.0)));
    }
    Ok(Circle { center, radius_m })
}

/// The case id of the alert `identifier` from `sender` (`cap-h` and 16 hex digits: CAP senders
/// hold characters that ids cannot).
pub fn case_id(sender: &str, identifier: &str) -> String {
    crate::intake::event_id("cap", &format!("{sender},{identifier}"))
}

/// CAP severity (raised one step when `Immediate` and `Observed`/`Likely`) → priority 1–4.
pub fn priority(info: &Info) -> u8 {
    let base: u8 = match info.severity.as_str() {
        "Extreme" => 1,
        "Severe" => 2,
        "Moderate" => 3,
        _ => 4,
    };
    let imminent = info.urgency == "Immediate" && matches!(info.certainty.as_str(), "Observed" | "Likely");
    if imminent { base.saturating_sub(1).max(1) } else { base }
}

/// What the alert asks linkbus to do; `gazetteer` places areas named only by geocode.
pub fn to_intake(alert: &Alert, config: &CapConfig, gazetteer: &Gazetteer) -> Result<Message, CapError> {
    match alert.status.as_str() {
        "Draft" => return Err(CapError::NotRouted("status Draft: drafts are not for distribution".into())),
        "System" => return Err(CapError::NotRouted("status System: network messages are not incidents".into())),
        _ => {}
    }
    let marker = match alert.status.as_str() {
        "Exercise" => Some(("exercise", "EXERCISE: ")),
        "Test" => Some(("test", "TEST: ")),
        _ => None,
    };
    match alert.msg_type.as_str() {
        "Alert" => new_case(alert, config, gazetteer, marker, None).map(Message::Report),
        "Update" | "Cancel" => {
            if alert.references.is_empty() {
                return Err(bad(format!("msgType {} requires <references>", alert.msg_type)));
            }
            if let Some((s, _, _)) = alert.references.iter().find(|(s, _, _)| *s != alert.sender) {
                return Err(CapError::NotRouted(format!(
                    "a {} may only reference alerts of its own sender ({}), not {s}",
                    alert.msg_type, alert.sender
                )));
            }
            let what = alert
                .infos
                .first()
                .and_then(|i| i.headline.clone().or_else(|| i.description.clone()))
                .or_else(|| alert.note.clone())
                .unwrap_or_default();
            let prefix = marker.map_or("", |m| m.1);
            let note = crate::clip(format!("{prefix}CAP {} {}: {what}", alert.msg_type, alert.identifier));
            let action =
                if alert.msg_type == "Cancel" { Action::Cancel { reason: note } } else { Action::Update { note } };
            let case_ids = alert.references.iter().map(|(s, i, _)| case_id(s, i)).collect();
            // None of the alerts it references was seen: this one describes the incident.
            let (sender, original, _) = &alert.references[0];
            let unseen = new_case(alert, config, gazetteer, marker, Some((sender, original))).ok();
            Ok(Message::Act { source: SOURCE.to_owned(), case_ids, action, unseen })
        }
        other => Err(CapError::NotRouted(format!("msgType {other} is a reply to another alert, not an incident"))),
    }
}

/// The case an alert reports: for an `Alert`, its own; for an Update or Cancel of an `original`
/// (sender, identifier) linkbus never received, the original's, told by this message and flagged
/// `unseen_original` (so the original arriving later is the same case, and so are further updates).
fn new_case(
    alert: &Alert,
    config: &CapConfig,
    gazetteer: &Gazetteer,
    marker: Option<(&str, &str)>,
    original: Option<(&str, &str)>,
) -> Result<Box<CloudEvent<CaseReport>>, CapError> {
    let info = alert.infos.first().ok_or_else(|| CapError::NotRouted("the alert has no <info>".into()))?;
    let mut area = Area::default();
    for i in &alert.infos {
        area.polygons.extend(i.area.polygons.iter().cloned());
        area.circles.extend(i.area.circles.iter().copied());
        for g in &i.area.geocodes {
            if !area.geocodes.contains(g) {
                area.geocodes.push(g.clone());
            }
        }
    }
    area.polygons.dedup();
    area.circles.dedup();
    if area.polygons.is_empty() && area.circles.is_empty() && area.geocodes.is_empty() {
        return Err(CapError::NotRouted(
            "no <area> with a <polygon>, <circle> or <geocode>: linkbus cannot place the alert".into(),
        ));
    }
    area.validate("area").map_err(|e| bad(e.to_string()))?;
    // Placed by its shapes; with none, by the communities its geocodes name.
    let location = match linkbus_matching::areas::centre(&area) {
        Some(centre) => centre,
        None => match gazetteer.place(&area.geocodes) {
            (_, Some(centre), _) => centre,
            (_, None, unknown) => {
                let codes: Vec<String> = unknown.iter().map(ToString::to_string).collect();
                return Err(CapError::NotRouted(format!(
                    "no geocode the region's geocode table knows ({}): linkbus cannot place the alert",
                    codes.join(", ")
                )));
            }
        },
    };
    let mut flags = Vec::new();
    let category = category(info, &config.categories, &mut flags);
    if let Some((flag, _)) = marker {
        flags.push(flag.to_owned());
    }
    let mut text = String::new();
    if let Some((_, prefix)) = marker {
        text.push_str(prefix);
    }
    if original.is_some() {
        flags.push(UNSEEN_ORIGINAL.to_owned());
        text.push_str(&format!("CAP {} {} of an alert linkbus never received: ", alert.msg_type, alert.identifier));
    }
    let (sender, identifier) = original.unwrap_or((&alert.sender, &alert.identifier));
    for part in
        [info.headline.as_deref(), info.description.as_deref(), info.instruction.as_deref()].into_iter().flatten()
    {
        if !text.is_empty() && !text.ends_with(' ') {
            text.push_str("\n\n");
        }
        text.push_str(part);
    }
    let report = CaseReport {
        system: SourceSystem::Emergency,
        category,
        priority: priority(info),
        location,
        datum: wire::Datum::Wgs84,
        received_location: None,
        address: Some(crate::clip(info.area_descs.join("; "))).filter(|a| !a.is_empty()),
        reporter: Some(Contact {
            name: Some(crate::clip(info.sender_name.clone().unwrap_or_else(|| alert.sender.clone()))),
            phone: info.contact.clone().map(crate::clip),
            ..Default::default()
        }),
        description: Some(crate::clip(text)).filter(|t| !t.is_empty()),
        source_id: format!("{sender},{identifier}"),
        reported_at: alert.sent,
        flags,
        area: Some(area),
        media_url: None,
    };
    report.validate().map_err(|e| bad(e.to_string()))?;
    let id = case_id(sender, identifier);
    let event = CloudEvent::new(id, SOURCE, wire::TYPE_CASE_REPORTED, Some(identifier.to_owned()), alert.sent, report);
    Ok(Box::new(event))
}

/// The bus category: the `event` if the map knows it, else the first known CAP category code,
/// else the map's unknown category with the `unmapped_category` flag.
fn category(info: &Info, map: &CategoryMap, flags: &mut Vec<String>) -> String {
    if map.map(&info.event).known {
        return map.map(&info.event).category;
    }
    if let Some(known) = info.categories.iter().map(|c| map.map(c)).find(|m| m.known) {
        return known.category;
    }
    map.map_flagged(&info.event, flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A flood warning over the Mission and SoMa, as a warning centre would send it.
    const FLOOD: &str = include_str!("../tests/data/cap_flood_warning.xml");
    /// OASIS CAP 1.2 Appendix A.3, an earthquake report at a point, moved into San Francisco.
    const QUAKE: &str = include_str!("../tests/data/cap_oasis_a3_earthquake.xml");

    #[test]
    fn parses_a_real_alert() {
        let alert = parse(FLOOD.as_bytes()).expect("valid");
        assert_eq!(alert.msg_type, "Alert");
        assert_eq!(alert.infos.len(), 1);
        let info = &alert.infos[0];
        assert_eq!(info.area.polygons.len(), 1);
        assert_eq!(info.area.polygons[0].len(), 6);
        assert_eq!(priority(info), 1);
        let config =
            CapConfig { categories: CategoryMap::from_pairs([("Flood Warning", "flood")]), ..Default::default() };
        let Message::Report(event) = to_intake(&alert, &config, &Gazetteer::default()).expect("routable") else {
            panic!("not a report")
        };
        assert_eq!(event.data.category, "flood");
        assert!(event.data.area.is_some());
        assert_eq!(event.id, case_id("sfdem@sfgov.org", "SFDEM-2026-1127-FLOOD-01"));
    }

    #[test]
    fn a_circle_of_radius_zero_is_a_point_alert() {
        let quake = QUAKE.replace("<msgType>Update</msgType>", "<msgType>Alert</msgType>");
        let alert = parse(quake.as_bytes()).expect("the spec's own example");
        let point = Location { lon: -122.4148, lat: 37.7599 };
        assert_eq!(alert.infos[0].area.circles, [Circle { center: point, radius_m: 0.0 }]);
        let Message::Report(event) = to_intake(&alert, &CapConfig::default(), &Gazetteer::default()).expect("routable")
        else {
            panic!()
        };
        assert_eq!(event.data.location, point);
        assert!(parse(QUAKE.replace("-122.4148 0<", "-122.4148 -0.5<").as_bytes()).is_err(), "a negative radius");
    }

    /// OASIS CAP 1.2 Appendix A.4 (English and Spanish), moved into San Francisco.
    const AMBER: &str = include_str!("../tests/data/cap_oasis_a4_amber_alert.xml");

    #[test]
    fn decodes_by_the_byte_order_mark_or_the_xml_declaration() {
        let utf8 = parse(AMBER.as_bytes()).expect("UTF-8");
        assert_eq!(utf8.infos[1].event, "Abducción de Niño");
        let latin1 = include_bytes!("../tests/data/cap_oasis_a4_amber_alert.latin1.xml");
        assert_eq!(parse(latin1).expect("ISO-8859-1"), utf8);
        let utf16 = include_bytes!("../tests/data/cap_oasis_a4_amber_alert.utf16.xml");
        assert_eq!(parse(utf16).expect("UTF-16 with a BOM"), utf8);
        // UTF-16BE with no byte-order mark: told by how `<?xml` is spelled (XML 1.0 Appendix F).
        let declared = AMBER.replace("encoding = \"UTF-8\"", "encoding = \"UTF-16BE\"");
        let big_endian: Vec<u8> = declared.encode_utf16().flat_map(u16::to_be_bytes).collect();
        assert_eq!(parse(&big_endian).expect("UTF-16BE"), utf8);
        let declared = AMBER.replace("encoding = \"UTF-8\"", "encoding = \"UTF-16LE\"");
        let little_endian: Vec<u8> = declared.encode_utf16().flat_map(u16::to_le_bytes).collect();
        assert_eq!(parse(&little_endian).expect("UTF-16LE without a BOM"), utf8);
        // The Latin-1 bytes under a declaration saying UTF-8.
        let body = &latin1[latin1.iter().position(|b| *b == b'>').expect("a declaration") + 1..];
        let mislabelled = [br#"<?xml version="1.0" encoding="UTF-8"?>"#.as_slice(), body].concat();
        for (what, bytes) in [
            ("Latin-1 bytes declared UTF-8", mislabelled),
            ("an encoding nobody knows", AMBER.replacen("UTF-8", "X-KLINGON", 1).into_bytes()),
            ("UTF-16 declared, single bytes written", AMBER.replacen("UTF-8", "UTF-16", 1).into_bytes()),
            ("an unquoted encoding", AMBER.replacen("\"UTF-8\"", "UTF-8", 1).into_bytes()),
        ] {
            let refused = parse(&bytes);
            assert!(
                matches!(&refused, Err(e @ CapError::Encoding(_)) if e.code() == ErrorCode::Malformed),
                "{what}: {refused:?}"
            );
            if what.starts_with("UTF-16 declared") {
                assert!(refused.is_err_and(|e| e.to_string().contains("single-byte")), "{what}: said so");
            }
        }
    }

    /// OASIS CAP 1.2 Appendix A.2, a thunderstorm warning, moved into San Francisco.
    const STORM: &str = include_str!("../tests/data/cap_oasis_a2_thunderstorm.xml");

    /// `STORM` with a resource of `n` bytes embedded as `<derefUri>` (in the namespace `prefix`).
    fn with_resource(n: usize, prefix: &str) -> String {
        let (open, close) = if prefix.is_empty() {
            (String::new(), String::new())
        } else {
            (format!(" xmlns:{prefix}=\"{NAMESPACE}\""), format!("{prefix}:"))
        };
        let data = "QUJD".repeat(n / 4);
        STORM.replace(
            "    <area>",
            &format!(
                "    <{close}resource{open}><{close}resourceDesc>EAS audio</{close}resourceDesc>\
                 <{close}mimeType>audio/x-ipaws-audio-mp3</{close}mimeType><{close}size>{n}</{close}size>\
                 <{close}derefUri>{data}</{close}derefUri></{close}resource>\n    <area>"
            ),
        )
    }

    #[test]
    fn dead_letters_keep_the_alert_not_its_embedded_resources() {
        for prefix in ["", "cap"] {
            let big = with_resource(2 * 1024 * 1024, prefix);
            assert!(big.len() < MAX_ALERT_BYTES);
            let kept = without_embedded_resources(Bytes::from(big.clone()));
            assert!(kept.len() < STORM.len() + 1024, "{prefix}: {} bytes kept", kept.len());
            let text = std::str::from_utf8(&kept).expect("still UTF-8");
            assert!(text.contains("QUJDQUJD... [2097152 bytes of embedded resource not kept]</"), "{text}");
            assert_eq!(parse(&kept).expect("still the alert"), parse(big.as_bytes()).expect("valid"));
        }
        let small = with_resource(DEREF_KEPT, "");
        assert_eq!(without_embedded_resources(Bytes::from(small.clone())), small.as_bytes(), "short: kept whole");
        // Two resources, after a stray closing tag (the elements between are kept).
        let two = with_resource(1000, "").replace("<resource>", "</derefUri><keep/><resource>").replacen(
            "</resource>",
            &format!("</resource><resource><derefUri>{}</derefUri></resource>", "QUJD".repeat(30)),
            1,
        );
        let kept = without_embedded_resources(Bytes::from(two));
        let text = std::str::from_utf8(&kept).expect("UTF-8");
        assert_eq!(text.matches("bytes of embedded resource not kept").count(), 2, "{text}");
        assert!(text.contains("[1000 bytes") && text.contains("[120 bytes") && text.contains("<keep/>"), "{text}");
        let unclosed = Bytes::from(format!("{}<derefUri>QUJD", "x".repeat(100)));
        assert_eq!(without_embedded_resources(unclosed.clone()), unclosed, "not XML: kept whole");
    }

    #[test]
    fn geocodes_are_the_area_only_without_a_polygon_or_circle() {
        let amber = parse(AMBER.as_bytes()).expect("valid");
        let same = Geocode { value_name: "SAME".into(), value: "006075".into() };
        assert_eq!(amber.infos.iter().map(|i| i.area.geocodes.clone()).collect::<Vec<_>>(), [[same.clone()], [same]]);
        let storm = parse(STORM.as_bytes()).expect("valid");
        assert!(storm.infos[0].area.geocodes.is_empty(), "the polygon is the area");
        // Unknown to the region (here: no table at all): refused, the codes named.
        let refused = to_intake(&amber, &CapConfig::default(), &Gazetteer::default());
        assert!(matches!(&refused, Err(CapError::NotRouted(m)) if m.contains("SAME 006075")), "{refused:?}");
        let unnamed = AMBER.replacen("<valueName>SAME</valueName>\n           <value>006075", "<value>006075", 1);
        assert!(matches!(parse(unnamed.as_bytes()), Err(CapError::Invalid(m)) if m.contains("valueName")));
    }

    #[test]
    fn refuses_documents_of_too_many_nodes() {
        let many = FLOOD.replace("</info>", &format!("{}</info>", "<x/>".repeat(MAX_NODES as usize)));
        assert!(matches!(parse(many.as_bytes()), Err(CapError::Xml(_))));
    }

    #[test]
    fn refuses_dtds_and_entity_bombs() {
        let laughs = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">&lol2;</alert>"#;
        assert!(matches!(parse(laughs.as_bytes()), Err(CapError::Xml(_))));
    }

    #[test]
    fn validates_value_lists_and_geometry() {
        let swap = |from: &str, to: &str| parse(FLOOD.replacen(from, to, 1).as_bytes());
        assert!(
            matches!(swap("<status>Actual</status>", "<status>Real</status>"), Err(CapError::Invalid(m)) if m.contains("status"))
        );
        assert!(matches!(swap("<severity>Severe</severity>", "<severity>Bad</severity>"), Err(CapError::Invalid(_))));
        assert!(
            matches!(swap("<sender>sfdem@sfgov.org</sender>", ""), Err(CapError::Invalid(m)) if m.contains("sender"))
        );
        assert!(matches!(swap("-08:00</sent>", "Z</sent>"), Err(CapError::Invalid(_))));
        assert!(matches!(swap("37.7600,-122.3950", "91.0,-122.4250"), Err(CapError::Invalid(m)) if m.contains("lat")));
        assert!(matches!(swap("37.7600,-122.3950", "NaN,-122.4250"), Err(CapError::Invalid(_))));
        let circle = FLOOD.replace("</polygon>", "</polygon><circle>37.76,-122.41 2.5</circle>");
        let alert = parse(circle.as_bytes()).expect("with a circle");
        assert_eq!(alert.infos[0].area.circles[0].radius_m, 2500.0);
        assert!(parse(FLOOD.replace("</polygon>", "</polygon><circle>37.76,-122.41</circle>").as_bytes()).is_err());
    }

    #[test]
    fn update_and_cancel_act_on_the_referenced_alert() {
        let update = FLOOD
            .replace("<msgType>Alert</msgType>", "<msgType>Cancel</msgType><references>sfdem@sfgov.org,SFDEM-2026-1127-FLOOD-01,2026-11-27T06:00:00-08:00</references>")
            .replace("SFDEM-2026-1127-FLOOD-01</identifier>", "SFDEM-2026-1127-FLOOD-02</identifier>");
        let alert = parse(update.as_bytes()).expect("valid");
        let Message::Act { case_ids, action, .. } =
            to_intake(&alert, &CapConfig::default(), &Gazetteer::default()).expect("ok")
        else {
            panic!("not an action")
        };
        assert_eq!(case_ids, [case_id("sfdem@sfgov.org", "SFDEM-2026-1127-FLOOD-01")]);
        assert!(matches!(action, Action::Cancel { .. }));
        let foreign = update.replace("<references>sfdem@sfgov.org,", "<references>other@example.org,");
        assert!(matches!(
            to_intake(&parse(foreign.as_bytes()).expect("valid"), &CapConfig::default(), &Gazetteer::default()),
            Err(CapError::NotRouted(_))
        ));
    }

    #[test]
    fn an_update_of_an_unseen_alert_carries_the_alert_it_describes() {
        let alert = parse(QUAKE.as_bytes()).expect("the spec's own example");
        let Message::Act { case_ids, action, unseen: Some(event), .. } =
            to_intake(&alert, &CapConfig::default(), &Gazetteer::default()).expect("ok")
        else {
            panic!("an update with its own report")
        };
        let original = case_id("trinet@caltech.edu", "TRI13970876.1");
        assert_eq!(case_ids, std::slice::from_ref(&original));
        assert!(matches!(action, Action::Update { .. }));
        assert_eq!(
            (event.id.as_str(), event.data.source_id.as_str()),
            (original.as_str(), "trinet@caltech.edu,TRI13970876.1")
        );
        assert!(event.data.flags.contains(&UNSEEN_ORIGINAL.to_owned()), "{:?}", event.data.flags);
        assert!(event.data.description.as_deref().is_some_and(|d| d.starts_with(
            "CAP Update TRI13970876.2 of an alert linkbus never received: EQ 3.4 Imperial County CA\n\n"
        )));
        // With no area to place it, it is only an update (404 when the original is unknown).
        let placeless = QUAKE.replace("<circle>37.7599,-122.4148 0</circle>", "");
        let alert = parse(placeless.as_bytes()).expect("valid");
        assert!(matches!(
            to_intake(&alert, &CapConfig::default(), &Gazetteer::default()),
            Ok(Message::Act { unseen: None, .. })
        ));
    }

    #[test]
    fn exercises_are_flagged_and_drafts_refused() {
        let exercise =
            parse(FLOOD.replace("<status>Actual</status>", "<status>Exercise</status>").as_bytes()).expect("ok");
        let Message::Report(event) = to_intake(&exercise, &CapConfig::default(), &Gazetteer::default()).expect("ok")
        else {
            panic!()
        };
        assert!(event.data.flags.contains(&"exercise".to_owned()));
        assert!(event.data.description.as_deref().is_some_and(|d| d.starts_with("EXERCISE: ")));
        let draft = parse(FLOOD.replace("<status>Actual</status>", "<status>Draft</status>").as_bytes()).expect("ok");
        assert!(matches!(to_intake(&draft, &CapConfig::default(), &Gazetteer::default()), Err(CapError::NotRouted(_))));
    }
}
