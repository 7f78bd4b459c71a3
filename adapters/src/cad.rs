//! Incidents from a computer-aided dispatch (CAD) system of 110 / 119 / 120, as JSON
//! ([`CadMessage`]), over HTTP (`POST /api/adapters/cad`) and NATS (`adapter.cad`).
//!
//! Every message names the CAD's own `incident_id`: `new` opens an `emergency` case with id
//! `cad:<incident_id>` (so the same incident sent twice is one case), category from the CAD
//! `type` through `[adapters.cad.categories]`; `update` records the `narrative` on that case's
//! timeline, `close` resolves it and `cancel` withdraws it (source updates: only the CAD's own
//! cases).
//!
//! [`CadConfig`] (`[adapters.cad]`) is also the format its running adapter reads: a [`Keyed`]
//! adapter ([`crate::messages`]).
//!
//! ```json
//! {"kind": "new", "incident_id": "F26-112701", "type": "STRUCTURE FIRE", "priority": 1,
//!  "lon": -122.4148, "lat": 37.7605, "datum": "wgs84", "address": "2400 Mission St",
//!  "narrative": "Smoke from 2nd floor, caller reports elderly resident inside",
//!  "caller": {"name": "J. Chan", "phone": "+1-415-555-0100"}, "flags": ["persons_trapped"],
//!  "reported_at": "2026-11-27T14:02:11Z"}
//! {"kind": "update", "incident_id": "F26-112701", "narrative": "2nd alarm; E7 and T7 on scene"}
//! {"kind": "cancel", "incident_id": "F26-112701", "narrative": "duplicate call"}
//! ```

use std::sync::Arc;

use futures::future::BoxFuture;
use jiff::Timestamp;
use linkbus_wire::{self as wire, Action, CaseReport, CloudEvent, Contact, Datum, Location, SourceSystem};
use serde::Deserialize;

use crate::adapter::{Adapter, AdapterConfig, BuildContext, BuildError, ConfigError, check_categories};
use crate::intake::{IntakeError, Message};
use crate::kind::AdapterKind;
use crate::messages::{Keyed, KeyedFormat};
use crate::vocabulary::CategoryMap;

/// The CloudEvents `source` of CAD cases, and the source actor of their updates.
pub const SOURCE: &str = "/cad";

/// `[adapters.cad]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CadConfig {
    /// Run this adapter (on by default, as every adapter; `false` turns it off).
    pub enabled: bool,
    /// CAD incident `type` → bus category, e.g. `"STRUCTURE FIRE" = "fire"`.
    #[serde(default)]
    pub categories: CategoryMap,
    /// The NATS subject on which CAD JSON is accepted (replies with the result when the message
    /// has a reply subject; dead letter on error).
    #[serde(default = "default_subject")]
    pub subject: String,
}

impl Default for CadConfig {
    fn default() -> Self {
        Self { enabled: true, categories: CategoryMap::default(), subject: default_subject() }
    }
}

fn default_subject() -> String {
    linkbus_wire::subjects::CAD_INCIDENTS.to_owned()
}

impl AdapterConfig for CadConfig {
    fn kind(&self) -> AdapterKind {
        AdapterKind::Cad
    }

    fn enabled(&self) -> bool {
        self.enabled
    }

    fn validate(&self) -> Result<(), ConfigError> {
        check_categories(AdapterKind::Cad, "categories", &self.categories)
    }

    fn category_maps(&self) -> Vec<&CategoryMap> {
        vec![&self.categories]
    }

    fn build<'a>(&'a self, cx: &'a BuildContext) -> BoxFuture<'a, Result<Arc<dyn Adapter>, BuildError>> {
        let adapter: Arc<dyn Adapter> = Arc::new(Keyed::new(self.clone(), cx));
        Box::pin(std::future::ready(Ok(adapter)))
    }
}

impl KeyedFormat for CadConfig {
    const KIND: AdapterKind = AdapterKind::Cad;
    const SOURCE: &'static str = SOURCE;
    const ROUTE: &'static str = "/api/adapters/cad";
    const CONTENT_TYPES: &'static [&'static str] = &["application/json"];

    fn subject(&self) -> &str {
        &self.subject
    }

    fn read(&self, bytes: &[u8]) -> Result<Message, IntakeError> {
        to_intake(bytes, self)
    }
}

/// What happened to the incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CadKind {
    /// A new incident.
    New,
    /// More information on it.
    Update,
    /// The incident is over (units cleared).
    Close,
    /// Entered in error, a duplicate, a hoax: withdrawn.
    Cancel,
}

/// One CAD message.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CadMessage {
    /// New, update, close or cancel.
    pub kind: CadKind,
    /// The CAD's incident number (1-96 characters).
    pub incident_id: String,
    /// The CAD incident type (required for `new`), mapped to a bus category.
    #[serde(default, rename = "type")]
    pub incident_type: Option<String>,
    /// 1 (life-threatening) to 4 (required for `new`).
    #[serde(default)]
    pub priority: Option<u8>,
    /// Longitude (required for `new`).
    #[serde(default)]
    pub lon: Option<f64>,
    /// Latitude (required for `new`).
    #[serde(default)]
    pub lat: Option<f64>,
    /// The datum of `lon`/`lat`: `wgs84` (default), `gcj02`, `bd09`.
    #[serde(default)]
    pub datum: Datum,
    /// Street address.
    #[serde(default)]
    pub address: Option<String>,
    /// The call taker's narrative; what changed, for `update`, `close` and `cancel` (required
    /// for those).
    #[serde(default)]
    pub narrative: Option<String>,
    /// The caller.
    #[serde(default)]
    pub caller: Option<Contact>,
    /// Who is at risk (`persons_trapped`, `elderly_alone`…), as bus flags.
    #[serde(default)]
    pub flags: Vec<String>,
    /// When the call came in (default: when linkbus received it).
    #[serde(default)]
    pub reported_at: Option<Timestamp>,
}

/// The case id of a CAD incident.
pub fn case_id(incident_id: &str) -> String {
    crate::intake::event_id("cad", incident_id)
}

/// What a CAD message (the raw bytes) asks.
pub fn to_intake(bytes: &[u8], config: &CadConfig) -> Result<Message, IntakeError> {
    let text = std::str::from_utf8(bytes).map_err(IntakeError::NotUtf8)?;
    let message: CadMessage =
        serde_json::from_str(text).map_err(|source| IntakeError::Json { what: "a CAD message", source })?;
    message_intake(message, config, Timestamp::now())
}

fn message_intake(m: CadMessage, config: &CadConfig, now: Timestamp) -> Result<Message, IntakeError> {
    let invalid = |why: &str| IntakeError::Invalid(why.to_owned());
    if m.incident_id.trim().is_empty() || m.incident_id.len() > 96 {
        return Err(invalid("incident_id must be 1-96 characters"));
    }
    let id = case_id(&m.incident_id);
    if m.kind != CadKind::New {
        let narrative = m.narrative.as_deref().map(str::trim).filter(|n| !n.is_empty());
        let narrative = narrative.ok_or_else(|| invalid("update, close and cancel need a narrative"))?;
        let note = crate::clip(format!("CAD {}: {narrative}", m.incident_id));
        let action = match m.kind {
            CadKind::Update => Action::Update { note },
            CadKind::Close => Action::Resolve { note },
            _ => Action::Cancel { reason: note },
        };
        return Ok(Message::Act { source: SOURCE.to_owned(), case_ids: vec![id], action, unseen: None });
    }
    let incident_type = m.incident_type.as_deref().ok_or_else(|| invalid("a new incident needs type"))?;
    let priority = m.priority.ok_or_else(|| invalid("a new incident needs priority (1-4)"))?;
    let (Some(lon), Some(lat)) = (m.lon, m.lat) else { return Err(invalid("a new incident needs lon and lat")) };
    let mut flags = m.flags.clone();
    let category = config.categories.map_flagged(incident_type, &mut flags);
    let description = match &m.narrative {
        Some(n) => format!("{incident_type}: {n}"),
        None => incident_type.to_owned(),
    };
    let report = CaseReport {
        system: SourceSystem::Emergency,
        category,
        priority,
        location: Location { lon, lat },
        datum: m.datum,
        received_location: None,
        address: m.address.clone().map(crate::clip),
        reporter: m.caller.clone(),
        description: Some(crate::clip(description)),
        source_id: m.incident_id.clone(),
        reported_at: m.reported_at.unwrap_or(now),
        flags,
        area: None,
        media_url: None,
    };
    report.validate().map_err(IntakeError::Report)?;
    let event = CloudEvent::new(id, SOURCE, wire::TYPE_CASE_REPORTED, Some(m.incident_id), report.reported_at, report);
    Ok(Message::Report(Box::new(event)))
}

#[cfg(test)]
mod tests {
    use linkbus_wire::http_error::ErrorCode;

    use super::*;

    fn config() -> CadConfig {
        CadConfig { categories: CategoryMap::from_pairs([("STRUCTURE FIRE", "fire")]), ..Default::default() }
    }

    #[test]
    fn new_update_close_cancel() {
        let new =
            br#"{"kind":"new","incident_id":"F26-1","type":"STRUCTURE FIRE","priority":1,"lon":-122.41,"lat":37.76}"#;
        let Ok(Message::Report(event)) = to_intake(new, &config()) else { panic!() };
        assert_eq!((event.id.as_str(), event.data.category.as_str()), ("cad-F26-1", "fire"));
        let update = br#"{"kind":"update","incident_id":"F26-1","narrative":"2nd alarm"}"#;
        assert!(matches!(to_intake(update, &config()), Ok(Message::Act { action: Action::Update { .. }, .. })));
        let close = br#"{"kind":"close","incident_id":"F26-1","narrative":"units cleared"}"#;
        assert!(matches!(to_intake(close, &config()), Ok(Message::Act { action: Action::Resolve { .. }, .. })));
        let cancel = br#"{"kind":"cancel","incident_id":"F26-1"}"#;
        assert!(matches!(to_intake(cancel, &config()), Err(IntakeError::Invalid(_))));
    }

    #[test]
    fn hostile_input_is_refused_with_a_reason() {
        let unknown = br#"{"kind":"new","incident_id":"F26-2","type":"UFO","priority":2,"lon":-122.41,"lat":37.76}"#;
        let Ok(Message::Report(event)) = to_intake(unknown, &config()) else { panic!() };
        assert_eq!(event.data.category, "uncategorized");
        assert!(event.data.flags.contains(&"unmapped_category".to_owned()));
        let lat91 =
            br#"{"kind":"new","incident_id":"F26-3","type":"STRUCTURE FIRE","priority":1,"lon":-122.41,"lat":91}"#;
        let refused = |bytes: &[u8]| {
            let e = to_intake(bytes, &config()).expect_err("refused");
            (e.code(), e.to_string())
        };
        assert!(matches!(refused(lat91), (ErrorCode::Invalid, m) if m.contains("lat")));
        assert!(matches!(refused(b"\xff\xfe{"), (ErrorCode::Malformed, m) if m.contains("UTF-8")));
        let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(matches!(refused(nested.as_bytes()), (ErrorCode::Malformed, _)));
        let nan = br#"{"kind":"new","incident_id":"F26-4","type":"STRUCTURE FIRE","priority":1,"lon":NaN,"lat":37.7}"#;
        assert!(matches!(refused(nan), (ErrorCode::Malformed, _)));
    }
}
