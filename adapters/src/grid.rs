//! Grid management (网格化管理): inspection and patrol reports from grid workers' apps, over
//! NATS one at a time and over HTTP as a batch file.
//!
//! A report names what was found by the urban grid-management classification (GB/T 30428, after
//! CJ/T 214): a **component** (部件: a manhole cover, a street lamp, a bus shelter…) or an
//! **event** (事件: exposed rubbish, illegal advertising, a burst pipe…), each by a major class
//! (大类, two digits) and a subclass (小类, two more):
//!
//! | kind | classes |
//! |---|---|
//! | `component` (部件) | 01 公用设施 public utilities, 02 道路交通 roads and traffic, 03 市容环境 city appearance, 04 园林绿化 landscaping, 05 房屋土地 buildings and land, 06 其他设施 other |
//! | `event` (事件) | 01 市容环境 city appearance, 02 宣传广告 advertising, 03 施工管理 construction, 04 突发事件 emergencies, 05 街面秩序 street order, 06 其他事件 other |
//!
//! The configuration maps `component:0101`-style codes to bus categories; a subclass not in the
//! map falls back to its major class (`component:01`), and a code in neither is routed as the
//! map's `unknown` category with the flag `unmapped_category`.
//!
//! **One report** is a JSON object ([`GridReport`]) published on `adapter.grid.report` (use a
//! request to get the answer: `{"case_id": …, "duplicate": …}` or `{"error": …}`). **A batch**
//! is a CSV file (a header row with the same field names) or JSON lines, posted to
//! `/api/adapters/grid/batch` with a source key speaking for this adapter's source; the answer
//! lists each row's case id or error. Every refused report or row is kept in `deadletter.adapter_grid`
//! with its row number and the reason; the good rows of a batch are taken all the same.
//!
//! The event id is `grid-<report_id>`, so a report sent twice (or a batch uploaded twice) is one
//! case per report.

use std::collections::VecDeque;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::Request;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use futures::future::BoxFuture;
use jiff::Timestamp;
use linkbus_wire::http_error::ErrorCode;
use linkbus_wire::{self as wire, CaseReport, CloudEvent, Contact, Datum, Location, SourceSystem};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::adapter::{
    self, Adapter, AdapterConfig, BuildContext, BuildError, ConfigError, RouteContext, Routed, check_categories,
    check_source_and_priority,
};
use crate::intake::{Caller, Gate, Intake, IntakeError, PendingSubmit, event_id};
use crate::kind::AdapterKind;
use crate::tracking::TrackingLink;
use crate::vocabulary::CategoryMap;
use crate::web::{self, BodyError};

/// The event id prefix (`grid-<report_id>`).
const PREFIX: &str = "grid";
/// NATS queue group of the report listener: replicas share the reports.
pub const QUEUE_GROUP: &str = "linkbus-grid";
/// The subject single reports arrive on.
pub const SUBJECT: &str = linkbus_wire::subjects::GRID_REPORT;
/// The HTTP path of batch uploads.
pub const BATCH_PATH: &str = "/api/adapters/grid/batch";
/// Largest single report over NATS, bytes.
pub const MAX_REPORT: usize = 16 * 1024;
/// Most rows of a batch published and not yet acknowledged. JetStream contexts share a budget of
/// outstanding acknowledgements (async-nats's `max_ack_inflight`, 5000) with the router and the
/// case book: a batch holding them all would stall every publish of the service.
pub const PIPELINE: usize = 256;

/// `[adapters.grid]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GridConfig {
    /// Listen on `adapter.grid.report` and serve the batch upload.
    pub enabled: bool,
    /// The CloudEvents `source` of its reports; a source key must speak for it to upload.
    pub source: String,
    /// `component:<code>` / `event:<code>` (a four-digit subclass or a two-digit major class) →
    /// bus category.
    pub categories: CategoryMap,
    /// The priority of reports that do not give one, 1 to 4.
    pub priority: u8,
    /// Largest batch file, bytes.
    pub max_batch_bytes: usize,
    /// Most rows in one batch.
    pub max_batch_rows: usize,
}

impl Default for GridConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            source: "/grid".into(),
            categories: CategoryMap::from_pairs(DEFAULT_CLASSES.iter().copied()),
            priority: 3,
            max_batch_bytes: 8 * 1024 * 1024,
            max_batch_rows: 10_000,
        }
    }
}

/// The shipped classification map (kept equal to `ops/linkbus.example.toml`): major classes to
/// the SF region's nearest categories, and a few subclasses more precisely.
const DEFAULT_CLASSES: &[(&str, &str)] = &[
    // 部件 components
    ("component:01", "damaged_property"),             // 公用设施 public utilities
    ("component:0101", "sewer_issues"),               // 上水井盖 water-supply manhole cover
    ("component:0102", "sewer_issues"),               // 污水井盖 sewage manhole cover
    ("component:0103", "sewer_issues"),               // 雨水井盖 storm-drain manhole cover
    ("component:0104", "catch_basin_maintenance"),    // 雨水箅子 storm-drain grate
    ("component:02", "street_defects"),               // 道路交通 roads and traffic
    ("component:03", "litter_receptacles"),           // 市容环境 city appearance
    ("component:04", "tree_maintenance"),             // 园林绿化 landscaping
    ("component:05", "residential_building_request"), // 房屋土地 buildings and land
    ("component:06", "general_requests"),             // 其他设施 other
    // 事件 events
    ("event:01", "street_and_sidewalk_cleaning"), // 市容环境 city appearance
    ("event:02", "illegal_postings"),             // 宣传广告 advertising
    ("event:03", "blocked_street_or_sidewalk"),   // 施工管理 construction
    ("event:04", "damaged_property"),             // 突发事件 emergencies
    ("event:0402", "sewer_issues"),               // 自来水管破裂 burst water main
    ("event:05", "blocked_street_or_sidewalk"),   // 街面秩序 street order
    ("event:06", "general_requests"),             // 其他事件 other
];

impl AdapterConfig for GridConfig {
    fn kind(&self) -> AdapterKind {
        AdapterKind::Grid
    }

    fn enabled(&self) -> bool {
        self.enabled
    }

    fn validate(&self) -> Result<(), ConfigError> {
        check_source_and_priority(AdapterKind::Grid, &self.source, self.priority)?;
        if !(1024..=64 * 1024 * 1024).contains(&self.max_batch_bytes) {
            return Err(ConfigError::field(AdapterKind::Grid, "max_batch_bytes", "must be 1 KiB to 64 MiB"));
        }
        if self.max_batch_rows == 0 {
            return Err(ConfigError::field(AdapterKind::Grid, "max_batch_rows", "must be at least 1"));
        }
        if let Some(bad) = self.categories.map.keys().find(|k| parse_code(k).is_none()) {
            let reason = format!("{bad:?} is not component:<code> or event:<code> (2 or 4 digits)");
            return Err(ConfigError::field(AdapterKind::Grid, "categories", reason));
        }
        check_categories(AdapterKind::Grid, "categories", &self.categories)
    }

    fn category_maps(&self) -> Vec<&CategoryMap> {
        vec![&self.categories]
    }

    fn build<'a>(&'a self, cx: &'a BuildContext) -> BoxFuture<'a, Result<Arc<dyn Adapter>, BuildError>> {
        let grid: Arc<dyn Adapter> =
            Arc::new(Grid { config: self.clone(), intake: cx.intake.for_adapter(AdapterKind::Grid) });
        Box::pin(std::future::ready(Ok(grid)))
    }
}

/// Why a grid report, or a row of a batch, was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A report over NATS larger than [`MAX_REPORT`].
    #[error("the report is larger than {MAX_REPORT} bytes")]
    TooLarge,
    /// A CSV row that is not UTF-8.
    #[error("the row is not UTF-8")]
    NotUtf8(#[source] csv::FromUtf8Error),
    /// A CSV row that cannot be read.
    #[error("unreadable CSV row: {0}")]
    Row(#[source] csv::Error),
    /// A CSV row that is not a report.
    #[error("not a grid report: {0}")]
    Csv(#[source] csv::Error),
    /// JSON that is not a report.
    #[error("not a grid report: {0}")]
    Json(#[source] serde_json::Error),
    /// A field out of its range; the message names it.
    #[error("{0}")]
    Field(String),
    /// A report whose case the bus would refuse.
    #[error("{0}")]
    Report(#[source] wire::Invalid),
}

impl ReportError {
    /// The dead letter's reason code: `malformed` for what cannot be read as a report, `invalid`
    /// for a report that cannot be a case.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::TooLarge | Self::NotUtf8(_) | Self::Row(_) | Self::Csv(_) | Self::Json(_) => ErrorCode::Malformed,
            Self::Field(_) | Self::Report(_) => ErrorCode::Invalid,
        }
    }
}

/// Why a batch was refused as a whole.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The CSV file has no readable header.
    #[error("the CSV header cannot be read: {0}")]
    Header(#[source] csv::Error),
    /// More rows than `max_batch_rows`.
    #[error("{rows} rows; at most {max} in one batch")]
    TooManyRows {
        /// Rows in the batch.
        rows: usize,
        /// The configured limit.
        max: usize,
    },
}

/// What a grid report found: a component (部件) or an event (事件).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// 部件: a fixture of the city (manhole cover, lamp, shelter…).
    #[serde(rename = "component", alias = "部件")]
    Component,
    /// 事件: something that happened (rubbish, advertising, a burst pipe…).
    #[serde(rename = "event", alias = "事件")]
    Event,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Component => "component",
            Self::Event => "event",
        }
    }
}

/// Splits `component:0101` into its kind and code, if it is one.
fn parse_code(key: &str) -> Option<(Kind, &str)> {
    let (kind, code) = key.split_once(':')?;
    let kind = match kind {
        "component" => Kind::Component,
        "event" => Kind::Event,
        _ => return None,
    };
    (matches!(code.len(), 2 | 4) && code.bytes().all(|b| b.is_ascii_digit())).then_some((kind, code))
}

/// One inspection or patrol report, as a JSON object or a CSV row (numbers may be text in CSV).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridReport {
    /// The patrol app's own id for the report (1-256 characters).
    pub report_id: String,
    /// `component` (部件) or `event` (事件).
    pub kind: Kind,
    /// The subclass (4 digits, e.g. `0101`) or major class (2 digits).
    pub code: String,
    /// Longitude, in `datum`.
    #[serde(deserialize_with = "number")]
    pub lon: f64,
    /// Latitude, in `datum`.
    #[serde(deserialize_with = "number")]
    pub lat: f64,
    /// `wgs84` (the default), `gcj02` (most Chinese apps) or `bd09` (Baidu).
    #[serde(default)]
    pub datum: Option<String>,
    /// Where, in words.
    #[serde(default)]
    pub address: Option<String>,
    /// What the grid worker saw.
    #[serde(default)]
    pub description: Option<String>,
    /// The grid worker (name or staff number).
    #[serde(default)]
    pub reporter: Option<String>,
    /// Their phone.
    #[serde(default)]
    pub phone: Option<String>,
    /// When it was found (RFC 3339 with an offset); the time of arrival when absent.
    #[serde(default)]
    pub reported_at: Option<String>,
    /// 1 (life-threatening) to 4 (low); the adapter's default when absent.
    #[serde(default)]
    pub priority: Option<u8>,
}

/// A number given as a JSON number or as text (CSV cells are text). `NaN` and infinities parse,
/// to be refused by the range check with a clear message.
fn number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrText {
        Number(f64),
        Text(String),
    }
    match NumberOrText::deserialize(d)? {
        NumberOrText::Number(n) => Ok(n),
        NumberOrText::Text(t) => {
            t.trim().parse().map_err(|_| serde::de::Error::custom(format!("{t:?} is not a number")))
        }
    }
}

impl GridReport {
    /// The case event of this report, or what is wrong with it.
    pub fn event(&self, config: &GridConfig, now: Timestamp) -> Result<CloudEvent<CaseReport>, ReportError> {
        let field = |reason: String| ReportError::Field(reason);
        let report_id = self.report_id.trim();
        if report_id.is_empty() || report_id.len() > 256 || report_id.chars().any(char::is_control) {
            return Err(field("report_id must be 1-256 characters, no control characters".into()));
        }
        let code = self.code.trim();
        let key = format!("{}:{code}", self.kind.as_str());
        if parse_code(&key).is_none() {
            return Err(field(format!("code {code:?}: a 4-digit subclass or 2-digit major class, e.g. 0101")));
        }
        let location = Location { lon: self.lon, lat: self.lat };
        location.validate("location").map_err(ReportError::Report)?;
        let datum = match &self.datum {
            None => Datum::Wgs84,
            Some(d) => Datum::parse(d).ok_or_else(|| field(format!("datum {d:?}: wgs84, gcj02 or bd09")))?,
        };
        let priority = self.priority.unwrap_or(config.priority);
        if !(1..=4).contains(&priority) {
            return Err(field(format!("priority {priority}: 1 to 4")));
        }
        let reported_at = match &self.reported_at {
            None => now,
            Some(t) => t.trim().parse().map_err(|_| field(format!("reported_at {t:?} is not an RFC 3339 time")))?,
        };
        let mut flags = Vec::new();
        let major = format!("{}:{}", self.kind.as_str(), &code[..2]);
        let category = match config.categories.map(&key) {
            found if found.known => found.category,
            _ => config.categories.map_flagged(&major, &mut flags),
        };
        let text = |v: &Option<String>| v.as_ref().map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
        let name = text(&self.reporter);
        let phone = text(&self.phone);
        let reporter = (name.is_some() || phone.is_some()).then_some(Contact { name, phone, ..Default::default() });
        let label = format!("[{} {code}]", self.kind.as_str());
        let description = match text(&self.description) {
            Some(d) => format!("{label} {d}"),
            None => label,
        };
        let report = CaseReport {
            system: SourceSystem::Management,
            category,
            priority,
            location,
            datum,
            received_location: None,
            address: text(&self.address),
            reporter,
            description: Some(description),
            source_id: report_id.to_owned(),
            reported_at,
            flags,
            area: None,
            media_url: None,
        };
        report.validate().map_err(ReportError::Report)?;
        Ok(CloudEvent::new(
            event_id(PREFIX, report_id),
            &config.source,
            wire::TYPE_CASE_REPORTED,
            Some(report_id.to_owned()),
            now,
            report,
        ))
    }
}

/// What became of one report: its case, or why not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(rename = "GridRowOutcome")]
#[serde(untagged)]
pub enum Outcome {
    /// Taken.
    Accepted {
        /// 1-based data row (0 for a single report over NATS).
        row: usize,
        /// The case id.
        case_id: String,
        /// True when it was already on the bus or in the case book: nothing new was sent.
        duplicate: bool,
        /// The case's tracking page, for the resident.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tracking: Option<TrackingLink>,
    },
    /// Refused (and kept in `deadletter.adapter_grid`).
    Refused {
        /// 1-based data row (0 for a single report over NATS).
        row: usize,
        /// Why.
        error: String,
    },
}

/// The answer to a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(rename = "GridBatchResult")]
pub struct BatchResult {
    /// Rows taken (new or duplicate).
    pub accepted: usize,
    /// Of those, rows already known.
    pub duplicates: usize,
    /// Rows refused.
    pub rejected: usize,
    /// Each row's outcome, in order.
    pub rows: Vec<Outcome>,
}

/// The batch formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchFormat {
    /// A header row, then one report per row.
    Csv,
    /// One JSON object per line (blank lines skipped).
    JsonLines,
}

impl BatchFormat {
    /// The format of a media type: `text/csv`, or `application/x-ndjson` (or `jsonl`,
    /// `json-lines`, `x-jsonlines`).
    pub fn of(media_type: &str) -> Option<Self> {
        match media_type {
            "text/csv" => Some(Self::Csv),
            "application/x-ndjson" | "application/jsonl" | "application/json-lines" | "application/x-jsonlines" => {
                Some(Self::JsonLines)
            }
            _ => None,
        }
    }
}

/// A row of a batch, read: the report, or why it could not be read; and the row's text.
#[derive(Debug)]
pub struct ReadRow {
    /// 1-based: the data row after the CSV header, or the line of JSON lines (blank ones counted).
    pub row: usize,
    /// The report, or why the row is not one.
    pub report: Result<GridReport, ReportError>,
    /// The row as received (its cells joined by commas for CSV), for the dead letter.
    pub raw: Bytes,
}

/// Reads every row of a batch; a bad row is an error for that row alone. `Err` when the file as
/// a whole cannot be read (no CSV header).
pub fn read_rows(body: &[u8], format: BatchFormat) -> Result<Vec<ReadRow>, BatchError> {
    match format {
        BatchFormat::JsonLines => Ok(body
            .split(|&b| b == b'\n')
            .enumerate()
            .filter(|(_, line)| !line.trim_ascii().is_empty())
            .map(|(n, line)| ReadRow {
                row: n + 1,
                report: serde_json::from_slice(line).map_err(ReportError::Json),
                raw: Bytes::copy_from_slice(line),
            })
            .collect()),
        BatchFormat::Csv => {
            let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(body);
            let headers = reader.headers().map_err(BatchError::Header)?.clone();
            let mut rows = Vec::new();
            for (n, record) in reader.into_byte_records().enumerate() {
                let row = n + 1;
                let (report, raw) = match record {
                    Ok(record) => {
                        let raw = record.iter().collect::<Vec<_>>().join(&b","[..]);
                        let report = csv::StringRecord::from_byte_record(record)
                            .map_err(ReportError::NotUtf8)
                            .and_then(|strings| {
                                let mut report: GridReport =
                                    strings.deserialize(Some(&headers)).map_err(ReportError::Csv)?;
                                blank_is_none(&mut report);
                                Ok(report)
                            });
                        (report, Bytes::from(raw))
                    }
                    Err(e) => (Err(ReportError::Row(e)), Bytes::new()),
                };
                rows.push(ReadRow { row, report, raw });
            }
            Ok(rows)
        }
    }
}

/// Empty CSV cells of optional columns mean "not given".
fn blank_is_none(report: &mut GridReport) {
    for field in [
        &mut report.datum,
        &mut report.address,
        &mut report.description,
        &mut report.reporter,
        &mut report.phone,
        &mut report.reported_at,
    ] {
        if field.as_ref().is_some_and(|v| v.trim().is_empty()) {
            *field = None;
        }
    }
}

/// The running grid adapter: its configuration and what it needs of linkbus.
pub struct Grid {
    config: GridConfig,
    intake: Intake,
}

impl std::fmt::Debug for Grid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grid").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Grid {
    /// Takes one report (its raw bytes, for the dead letter): its case, or the refusal.
    async fn take(&self, row: usize, report: Result<GridReport, ReportError>, raw: Bytes, origin: &str) -> Outcome {
        match report.and_then(|r| r.event(&self.config, Timestamp::now())) {
            Ok(event) => match self.intake.submit(&event).await {
                Ok(s) => Outcome::Accepted { row, case_id: s.case_id, duplicate: s.duplicate, tracking: s.tracking },
                Err(e) => self.bus_down(row, e),
            },
            Err(e) => self.refuse(row, e, raw, origin).await,
        }
    }

    async fn refuse(&self, row: usize, e: ReportError, raw: Bytes, origin: &str) -> Outcome {
        let error = e.to_string();
        let reason = if row == 0 { error.clone() } else { format!("row {row}: {error}") };
        self.intake.dead_letter(e.code(), &reason, origin, raw).await;
        Outcome::Refused { row, error }
    }

    fn bus_down(&self, row: usize, e: IntakeError) -> Outcome {
        warn!(error = %e, row, "cannot publish a grid report");
        Outcome::Refused { row, error: format!("the bus is unavailable, send it again: {e}") }
    }

    /// Takes a batch: every row converted, the good ones published back to back with at most
    /// [`PIPELINE`] acknowledgements outstanding, the bad ones dead-lettered.
    pub async fn batch(&self, body: &[u8], format: BatchFormat, origin: &str) -> Result<BatchResult, BatchError> {
        let rows = read_rows(body, format)?;
        if rows.len() > self.config.max_batch_rows {
            return Err(BatchError::TooManyRows { rows: rows.len(), max: self.config.max_batch_rows });
        }
        let now = Timestamp::now();
        let mut pending = VecDeque::with_capacity(PIPELINE);
        let mut outcomes = Vec::with_capacity(rows.len());
        for ReadRow { row, report, raw } in rows {
            let outcome = match report.and_then(|r| r.event(&self.config, now)) {
                Ok(event) => match self.intake.submit_pending(&event).await {
                    Ok(p) => {
                        if pending.len() == PIPELINE {
                            self.settle(pending.pop_front(), &mut outcomes).await;
                        }
                        pending.push_back((row, outcomes.len(), p));
                        None // Known once the acknowledgement is in.
                    }
                    Err(e) => Some(self.bus_down(row, e)),
                },
                Err(e) => Some(self.refuse(row, e, raw, origin).await),
            };
            outcomes.push(outcome);
        }
        while let Some(next) = pending.pop_front() {
            self.settle(Some(next), &mut outcomes).await;
        }
        let outcomes: Vec<Outcome> = outcomes.into_iter().flatten().collect();
        let accepted = outcomes.iter().filter(|o| matches!(o, Outcome::Accepted { .. })).count();
        let duplicates = outcomes.iter().filter(|o| matches!(o, Outcome::Accepted { duplicate: true, .. })).count();
        let result = BatchResult { accepted, duplicates, rejected: outcomes.len() - accepted, rows: outcomes };
        info!(accepted, duplicates, rejected = result.rejected, "grid batch taken");
        Ok(result)
    }

    /// Waits for one published row's acknowledgement and records its outcome.
    async fn settle(&self, next: Option<(usize, usize, PendingSubmit)>, outcomes: &mut [Option<Outcome>]) {
        let Some((row, at, p)) = next else { return };
        outcomes[at] = Some(match p.wait().await {
            Ok(s) => Outcome::Accepted { row, case_id: s.case_id, duplicate: s.duplicate, tracking: s.tracking },
            Err(e) => self.bus_down(row, e),
        });
    }

    /// Takes one report received over NATS; the answer: `{"case_id", "duplicate"}` or
    /// `{"error"}`.
    async fn reply(&self, msg: async_nats::Message) -> Bytes {
        let report = if msg.payload.len() > MAX_REPORT {
            Err(ReportError::TooLarge)
        } else {
            serde_json::from_slice::<GridReport>(&msg.payload).map_err(ReportError::Json)
        };
        let answer = match self.take(0, report, msg.payload.clone(), SUBJECT).await {
            Outcome::Accepted { case_id, duplicate, tracking, .. } => {
                serde_json::json!({ "case_id": case_id, "duplicate": duplicate, "tracking": tracking })
            }
            Outcome::Refused { error, .. } => serde_json::json!({ "error": error }),
        };
        Bytes::from(answer.to_string())
    }

    /// Takes a batch upload from a source key speaking for this adapter's source.
    async fn upload(&self, gate: &dyn Gate, request: Request<Body>) -> Result<BatchResult, IntakeError> {
        match web::bearer(request.headers()).map(|key| gate.caller(&key)) {
            Some(Some(Caller::Source(s))) if s == self.config.source => {}
            None | Some(None) => {
                return Err(IntakeError::Unauthorized("a source key (Authorization: Bearer) is required".into()));
            }
            Some(Some(_)) => {
                return Err(IntakeError::Forbidden("only the grid system's source key may upload".into()));
            }
        }
        let origin = format!("POST {BATCH_PATH}");
        let media = web::media_type(request.headers());
        let body = match web::read_body(request).await {
            Ok(body) => body,
            Err(BodyError::TooLarge) => {
                let e = IntakeError::TooLarge { limit: self.config.max_batch_bytes };
                self.intake.refuse(&e, &origin, Bytes::new()).await;
                return Err(e);
            }
            Err(e) => return Err(IntakeError::Adapter { code: ErrorCode::Malformed, source: Box::new(e) }),
        };
        // Dead-lettered as `malformed` (what was sent is not a batch), answered 415.
        let Some(format) = BatchFormat::of(&media) else {
            let reason = format!("content type {media:?}: send text/csv or application/x-ndjson");
            self.intake.dead_letter(ErrorCode::Malformed, &reason, &origin, body).await;
            return Err(IntakeError::UnsupportedMediaType(reason));
        };
        match self.batch(&body, format, &origin).await {
            Ok(result) => Ok(result),
            Err(e) => {
                self.intake.dead_letter(ErrorCode::Malformed, &e.to_string(), &origin, body).await;
                Err(IntakeError::Adapter { code: ErrorCode::Invalid, source: Box::new(e) })
            }
        }
    }
}

impl Adapter for Grid {
    fn kind(&self) -> AdapterKind {
        AdapterKind::Grid
    }

    /// The batch upload route.
    fn routes(self: Arc<Self>, cx: &RouteContext<'_>) -> Router {
        let limit = self.config.max_batch_bytes;
        let state = (self, cx.gate.clone());
        Router::new().route(BATCH_PATH, post(upload)).layer(DefaultBodyLimit::max(limit)).with_state(state)
    }

    /// Takes the reports of `adapter.grid.report`, one per message, answered when it is a request.
    fn listen(
        self: Arc<Self>,
        client: async_nats::Client,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, Result<Option<JoinHandle<()>>, BuildError>> {
        Box::pin(adapter::listen(AdapterKind::Grid, client, SUBJECT.to_owned(), QUEUE_GROUP, shutdown, move |msg| {
            let grid = self.clone();
            async move { grid.reply(msg).await }
        }))
    }
}

async fn upload(State((grid, gate)): State<Routed<Grid>>, request: Request<Body>) -> Response {
    match grid.upload(gate.as_ref(), request).await {
        Ok(result) => axum::Json(result).into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(json: &str) -> Result<CloudEvent<CaseReport>, String> {
        let r: GridReport = serde_json::from_str(json).map_err(|e| e.to_string())?;
        r.event(&GridConfig::default(), Timestamp::UNIX_EPOCH).map_err(|e| e.to_string())
    }

    #[test]
    fn classes_map_by_subclass_then_major_class_else_flagged() {
        let at = |kind: &str, code: &str| {
            let json =
                format!(r#"{{"report_id":"GX-1","kind":"{kind}","code":"{code}","lon":-122.4194,"lat":37.7599}}"#);
            let e = report(&json).expect("converts");
            (e.data.category, e.data.flags)
        };
        assert_eq!(at("component", "0102"), ("sewer_issues".into(), vec![]));
        assert_eq!(at("部件", "0199"), ("damaged_property".into(), vec![]), "unknown subclass: its class");
        assert_eq!(at("事件", "0402"), ("sewer_issues".into(), vec![]));
        assert_eq!(at("event", "0201"), ("illegal_postings".into(), vec![]));
        assert_eq!(at("event", "0901"), ("uncategorized".into(), vec!["unmapped_category".into()]));
    }

    #[test]
    fn a_report_becomes_a_management_case_with_a_stable_id() {
        let json = r#"{"report_id":"GX-2026-000123","kind":"event","code":"0102","lon":116.3975,"lat":39.9087,
            "datum":"gcj02","address":"东城区 东华门街道","description":"暴露垃圾","reporter":"网格员 张三",
            "reported_at":"2026-11-27T08:00:00+08:00","priority":2}"#;
        let e = report(json).expect("converts");
        assert_eq!(e.id, "grid-GX-2026-000123");
        assert_eq!(e.source, "/grid");
        let r = &e.data;
        assert_eq!((r.system, r.priority, r.datum), (SourceSystem::Management, 2, Datum::Gcj02));
        assert_eq!(r.description.as_deref(), Some("[event 0102] 暴露垃圾"));
        assert_eq!(r.reported_at.to_string(), "2026-11-27T00:00:00Z");
        assert_eq!(r.reporter.as_ref().and_then(|c| c.name.as_deref()), Some("网格员 张三"));
    }

    #[test]
    fn bad_reports_say_why() {
        let refused = |json: &str| report(json).expect_err(json);
        let base = |extra: &str| {
            format!(r#"{{"report_id":"GX-1","kind":"event","code":"0102","lon":-122.4,"lat":37.7{extra}}}"#)
        };
        assert!(refused(&base(r#","priority":9"#)).contains("priority"));
        assert!(refused(&base(r#","datum":"nad27""#)).contains("datum"));
        assert!(refused(&base(r#","reported_at":"yesterday""#)).contains("reported_at"));
        assert!(refused(&base(r#","colour":"red""#)).contains("colour"));
        assert!(refused(&base("").replace("37.7", "91")).contains("lat"));
        assert!(refused(&base("").replace("-122.4", "181")).contains("lon"));
        assert!(refused(&base("").replace("\"0102\"", "\"012\"")).contains("code"));
        assert!(refused(&base("").replace("\"0102\"", "\"1x\"")).contains("code"));
    }

    #[test]
    fn hostile_json_is_refused_not_a_crash() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let rows = read_rows(deep.as_bytes(), BatchFormat::JsonLines).expect("lines");
        assert!(
            rows[0].report.as_ref().is_err_and(|e| e.to_string().contains("not a grid report")),
            "{:?}",
            rows[0].report
        );
        let deep = format!(r#"{{"report_id":{}"x"{}}}"#, "[".repeat(100_000), "]".repeat(100_000));
        let rows = read_rows(deep.as_bytes(), BatchFormat::JsonLines).expect("lines");
        assert!(rows[0].report.is_err(), "deeply nested");
        let nan = r#"{"report_id":"GX-1","kind":"event","code":"0102","lon":NaN,"lat":37.7}"#;
        let rows = read_rows(nan.as_bytes(), BatchFormat::JsonLines).expect("lines");
        assert!(rows[0].report.is_err(), "NaN is not JSON");
        let text_nan = r#"{"report_id":"GX-1","kind":"event","code":"0102","lon":"NaN","lat":37.7}"#;
        assert!(report(text_nan).expect_err("NaN as text").contains("NaN"));
    }

    #[test]
    fn csv_rows_are_read_one_by_one() {
        let csv = "report_id,kind,code,lon,lat,datum,address,description,reporter,phone,reported_at,priority\n\
            GX-1,component,0101,-122.4194,37.7599,,,cover missing,Zhang,,,\n\
            GX-2,event,0102,-122.4194,NaN,,,,,,,\n\
            GX-3,event,0102,-122.4194\n\
            GX-4,event,0102,-122.4194,37.7599,wgs84,x,y,z,1,2026-11-27T08:00:00Z,3\n";
        let rows = read_rows(csv.as_bytes(), BatchFormat::Csv).expect("header");
        assert_eq!(rows.len(), 4);
        let converted: Vec<Result<String, String>> = rows
            .into_iter()
            .map(|r| {
                let event = r.report.and_then(|g| g.event(&GridConfig::default(), Timestamp::now()));
                event.map(|e| e.id).map_err(|e| e.to_string())
            })
            .collect();
        assert_eq!(converted[0], Ok("grid-GX-1".into()));
        assert!(converted[1].as_ref().is_err_and(|e| e.contains("NaN")), "{converted:?}");
        assert!(converted[2].as_ref().is_err_and(|e| e.contains("CSV")), "{converted:?}");
        assert_eq!(converted[3], Ok("grid-GX-4".into()));
        let bad_utf8 = b"report_id,kind,code,lon,lat\nGX-\xff,event,0102,1,2\n";
        let rows = read_rows(bad_utf8, BatchFormat::Csv).expect("header");
        assert!(rows[0].report.as_ref().is_err_and(|e| e.to_string().contains("UTF-8")));
    }
}
