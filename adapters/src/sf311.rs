//! San Francisco 311 service requests, as DataSF exports them in CSV (`CaseID`, `Opened`,
//! `Category`, `Request.Type`, `Request.Details`, `Address`, `Lat`, `Long`, …).
//!
//! Each row becomes a `public_service` case: the category is the `Category` column as a token,
//! the event id `sf311-<CaseID>` (so a row replayed twice is one case), the time `Opened` read
//! in the city's time zone (America/Los_Angeles). The columns an evaluation needs but a case does
//! not carry (`Responsible.Agency`, `C.Neighborhood`, `Closed`, `Status`, `Status.Notes`) are
//! kept on [`Row`]; [`real_outcome`] reads what really became of the request.

use std::io::Read;

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use linkbus_wire::{self as wire, CaseReport, CloudEvent, Location, SourceSystem};
use serde::Deserialize;

/// The CloudEvents `source` of SF 311 cases.
pub const SOURCE: &str = "/sf311";
/// The city's time zone, in which `Opened` is written.
pub const TIME_ZONE: &str = "America/Los_Angeles";

/// One CSV row, the columns linkbus reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Row {
    /// The city's case number.
    #[serde(rename = "CaseID")]
    pub case_id: String,
    /// `YYYY-MM-DD HH:MM:SS`, local time.
    #[serde(rename = "Opened")]
    pub opened: String,
    /// The agency queue that handled it.
    #[serde(rename = "Responsible.Agency")]
    pub responsible_agency: String,
    /// Service category, e.g. `Street and Sidewalk Cleaning`.
    #[serde(rename = "Category")]
    pub category: String,
    /// Sub-type.
    #[serde(rename = "Request.Type")]
    pub request_type: String,
    /// Details.
    #[serde(rename = "Request.Details")]
    pub request_details: String,
    /// Street address.
    #[serde(rename = "Address")]
    pub address: String,
    /// How it was reported (Voice In, Open311, …).
    #[serde(rename = "Source")]
    pub source: String,
    /// Latitude, as text.
    #[serde(rename = "Lat")]
    pub lat: String,
    /// Longitude, as text.
    #[serde(rename = "Long")]
    pub long: String,
    /// The analysis neighborhood DataSF assigned.
    #[serde(rename = "C.Neighborhood")]
    pub neighborhood: String,
    /// When it was closed, `YYYY-MM-DD HH:MM:SS` local time; `NA` or empty while open.
    #[serde(rename = "Closed", default)]
    pub closed: String,
    /// `Open` or `Closed`.
    #[serde(rename = "Status", default)]
    pub status: String,
    /// How it was closed, e.g. `Case Resolved - …`, `Case is a Duplicate`; `NA` when not said.
    #[serde(rename = "Status.Notes", default)]
    pub status_notes: String,
}

/// What really became of a request, by its `Status`, `Closed` and `Status.Notes`.
#[derive(Debug, Clone, PartialEq)]
pub enum RealOutcome {
    /// Still open in the data (`Status` `Open`, no `Closed`).
    Open,
    /// Closed.
    Closed {
        /// Seconds from `Opened` to `Closed`, real time; 0 when the record closes before it opens.
        after_secs: f64,
        /// The record's `Closed` is earlier than its `Opened` (a data error): taken as closed at opening.
        before_opened: bool,
        /// Closed with the problem dealt with, or closed without a resolution ([`is_unresolved`]).
        resolved: bool,
        /// `Status.Notes`, trimmed; empty for `NA`.
        notes: String,
    },
}

/// `Status.Notes` openings of requests that SF 311 closed without the agency resolving anything:
/// duplicates, invalid or meritless requests, administrative closures, requests the agency did
/// not accept, and requests transferred out of 311 to another agency's own system.
pub const UNRESOLVED_NOTES: [&str; 6] = [
    "case is a duplicate",
    "case is invalid",
    "no merit",
    "administrative closure",
    "not accepted",
    "case transferred",
];

/// Whether `notes` (a `Status.Notes`) says the request was closed without being resolved.
pub fn is_unresolved(notes: &str) -> bool {
    let notes = notes.trim().to_ascii_lowercase();
    UNRESOLVED_NOTES.iter().any(|prefix| notes.starts_with(prefix))
}

/// Reads what became of `row`: open, or closed how long after it opened and how. A `Status`
/// other than `Open` or `Closed`, a closed row without a readable `Closed`, or an open one with a
/// `Closed` is refused with the reason.
pub fn real_outcome(row: &Row, tz: &TimeZone) -> Result<RealOutcome, String> {
    let closed = row.closed.trim();
    let has_close = !(closed.is_empty() || closed.eq_ignore_ascii_case("NA"));
    match (row.status.trim(), has_close) {
        ("Open", false) => Ok(RealOutcome::Open),
        ("Closed", true) => {
            let opened = opened_at(&row.opened, tz).map_err(|e| format!("Opened {:?}: {e}", row.opened))?;
            let closed = opened_at(closed, tz).map_err(|e| format!("Closed {closed:?}: {e}"))?;
            let secs = (closed - opened).as_secs_f64();
            let notes = row.status_notes.trim();
            let notes = if notes.eq_ignore_ascii_case("NA") { "" } else { notes };
            Ok(RealOutcome::Closed {
                after_secs: secs.max(0.0),
                before_opened: secs < 0.0,
                resolved: !is_unresolved(notes),
                notes: notes.to_owned(),
            })
        }
        ("Closed", false) => Err("Status Closed without a Closed time".into()),
        ("Open", true) => Err(format!("Status Open with a Closed time {closed:?}")),
        (other, _) => Err(format!("Status {other:?} is neither Open nor Closed")),
    }
}

/// A row that cannot become a case, with the record as read, for the dead letter.
#[derive(Debug, Clone, thiserror::Error)]
#[error("record {record}{}: {message}", case_id.as_ref().map(|id| format!(" (CaseID {id})")).unwrap_or_default())]
pub struct RowError {
    /// 1-based record number (the header is record 0).
    pub record: usize,
    /// The row's CaseID, when it could be read.
    pub case_id: Option<String>,
    /// What is wrong.
    pub message: String,
    /// The record re-encoded as one CSV line (empty when the CSV itself could not be read).
    pub raw: String,
}

/// A converted row: the case event, and the raw row it came from.
#[derive(Debug, Clone)]
pub struct Converted {
    /// The event to publish on `ingest.public_service.<category>`.
    pub event: CloudEvent<CaseReport>,
    /// The row.
    pub row: Row,
}

/// Reads every record of an SF 311 CSV, converting each; a bad record yields its error and
/// reading goes on with the next.
pub fn read<'a, R: Read + 'a>(reader: R) -> Box<dyn Iterator<Item = Result<Converted, RowError>> + 'a> {
    let tz = TimeZone::get(TIME_ZONE).expect("the time zone database is bundled");
    let mut csv = csv::Reader::from_reader(reader);
    let headers = match csv.headers() {
        Ok(headers) => headers.clone(),
        Err(e) => {
            let error = RowError { record: 0, case_id: None, message: e.to_string(), raw: String::new() };
            return Box::new(std::iter::once(Err(error)));
        }
    };
    Box::new(csv.into_records().enumerate().map(move |(n, record)| {
        let record_no = n + 1;
        let error = |message: String, raw: String| RowError { record: record_no, case_id: None, message, raw };
        let record = record.map_err(|e| error(e.to_string(), String::new()))?;
        let raw = csv_line(&record);
        let row: Row = record.deserialize(Some(&headers)).map_err(|e| error(e.to_string(), raw.clone()))?;
        convert(row, record_no, &tz).map_err(|e| RowError { raw, ..e })
    }))
}

/// One record as a CSV line, quoted where needed.
fn csv_line(record: &csv::StringRecord) -> String {
    let mut writer = csv::WriterBuilder::new().terminator(csv::Terminator::Any(b'\n')).from_writer(Vec::new());
    let _ = writer.write_record(record);
    let bytes = writer.into_inner().unwrap_or_default();
    String::from_utf8_lossy(&bytes).trim_end().to_owned()
}

/// Converts one row (record number `record`, for error messages).
pub fn convert(row: Row, record: usize, tz: &TimeZone) -> Result<Converted, RowError> {
    let field = |message: String| RowError { record, case_id: Some(row.case_id.clone()), message, raw: String::new() };
    let case_id = row.case_id.trim();
    if case_id.is_empty() || !case_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(field(format!("CaseID {case_id:?} is not an id")));
    }
    let number = |name: &str, text: &str| {
        text.trim().parse::<f64>().map_err(|_| field(format!("{name} {text:?} is not a number")))
    };
    let location = Location { lon: number("Long", &row.long)?, lat: number("Lat", &row.lat)? };
    location.validate("Lat/Long").map_err(|e| field(e.to_string()))?;
    let category = crate::category_token(&row.category);
    if !wire::is_category(&category) {
        return Err(field(format!("Category {:?} gives no usable category", row.category)));
    }
    let reported_at = opened_at(&row.opened, tz).map_err(|e| field(format!("Opened {:?}: {e}", row.opened)))?;
    let description = match (row.request_type.trim(), row.request_details.trim()) {
        ("", "") => None,
        (t, "") | ("", t) => Some(t.to_owned()),
        (t, d) if t == d => Some(t.to_owned()),
        (t, d) => Some(format!("{t}: {d}")),
    };
    let report = CaseReport {
        system: SourceSystem::PublicService,
        category,
        priority: 3,
        location,
        address: Some(row.address.trim().to_owned()).filter(|a| !a.is_empty()),
        reporter: None,
        description,
        source_id: case_id.to_owned(),
        reported_at,
        flags: vec![],
        datum: wire::Datum::Wgs84,
        received_location: None,
        area: None,
        media_url: None,
    };
    report.validate().map_err(|e| field(e.to_string()))?;
    let event = CloudEvent::new(
        format!("sf311-{case_id}"),
        SOURCE,
        wire::TYPE_CASE_REPORTED,
        Some(case_id.to_owned()),
        reported_at,
        report,
    );
    Ok(Converted { event, row })
}

/// A local `YYYY-MM-DD HH:MM:SS` in `tz`.
fn opened_at(text: &str, tz: &TimeZone) -> Result<Timestamp, jiff::Error> {
    let local: DateTime = text.trim().parse()?;
    tz.to_timestamp(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "CaseID,Opened,Closed,Responsible.Agency,Category,Request.Type,Request.Details,Address,Source,Lat,Long,C.Neighborhood\n\
        1757188,2012-12-04 15:21:00,x,DPW BSM Queue,Street Defects,Utility_Excavation,Utility_Excavation,\"2820 GREENWICH ST, SAN FRANCISCO, CA, 94123\",Voice In,37.797838468,-122.446243791,Marina\n\
        2,2012-12-04 15:21:00,x,DPW,Sewer Issues,a,b,addr,Voice In,91,-122.4,Marina\n\
        3,not a time,x,DPW,Sewer Issues,a,b,addr,Voice In,37.7,-122.4,Marina\n";

    #[test]
    fn converts_good_rows_and_names_bad_ones() {
        let out: Vec<_> = read(CSV.as_bytes()).collect();
        let first = out[0].as_ref().expect("first row converts");
        assert_eq!(first.event.id, "sf311-1757188");
        assert_eq!(first.event.data.category, "street_defects");
        // 15:21 Pacific Standard Time is 23:21 UTC.
        assert_eq!(first.event.data.reported_at.to_string(), "2012-12-04T23:21:00Z");
        assert_eq!(first.event.data.description.as_deref(), Some("Utility_Excavation"));
        assert_eq!(first.row.responsible_agency, "DPW BSM Queue");
        let second = out[1].as_ref().expect_err("lat 91").to_string();
        assert!(second.contains("record 2") && second.contains("latitude"), "{second}");
        let third = out[2].as_ref().expect_err("bad time").to_string();
        assert!(third.contains("Opened"), "{third}");
    }

    fn row(opened: &str, closed: &str, status: &str, notes: &str) -> Row {
        let mut row = read(CSV.as_bytes()).next().and_then(Result::ok).expect("first row").row;
        (row.opened, row.closed, row.status, row.status_notes) =
            (opened.into(), closed.into(), status.into(), notes.into());
        row
    }

    #[test]
    fn real_outcomes_say_open_resolved_or_closed_unresolved_and_refuse_what_does_not_add_up() {
        let tz = TimeZone::get(TIME_ZONE).expect("tz");
        let outcome = |r: Row| real_outcome(&r, &tz);
        assert_eq!(outcome(row("2012-12-04 15:21:00", "NA", "Open", "NA")), Ok(RealOutcome::Open));
        assert_eq!(
            outcome(row("2012-12-04 15:21:00", "2012-12-06 04:39:00", "Closed", "Case Resolved - fixed")),
            Ok(RealOutcome::Closed {
                after_secs: 134_280.0,
                before_opened: false,
                resolved: true,
                notes: "Case Resolved - fixed".into()
            })
        );
        // Across the switch to daylight saving time (2013-03-10 02:00 PST): 23 hours, not 24.
        let Ok(RealOutcome::Closed { after_secs, notes, resolved: true, .. }) =
            outcome(row("2013-03-09 12:00:00", "2013-03-10 12:00:00", "Closed", "NA"))
        else {
            panic!("closed")
        };
        assert_eq!((after_secs, notes.as_str()), (23.0 * 3600.0, ""));
        for notes in [
            "Case is a Duplicate - 123",
            "case is invalid",
            "NO MERIT",
            "Administrative Closure",
            "Not Accepted",
            "Case Transferred -",
        ] {
            let Ok(RealOutcome::Closed { resolved, .. }) =
                outcome(row("2012-12-04 15:21:00", "2012-12-04 16:21:00", "Closed", notes))
            else {
                panic!("closed")
            };
            assert!(!resolved, "{notes}");
        }
        assert_eq!(
            outcome(row("2012-12-04 15:21:00", "2012-12-04 15:20:00", "Closed", "Case Completed")),
            Ok(RealOutcome::Closed {
                after_secs: 0.0,
                before_opened: true,
                resolved: true,
                notes: "Case Completed".into()
            })
        );
        let Ok(RealOutcome::Closed { after_secs, before_opened, .. }) =
            outcome(row("2012-12-04 15:21:00", "2012-12-04 15:21:00", "Closed", "Case Completed"))
        else {
            panic!("closed")
        };
        assert_eq!((after_secs, before_opened), (0.0, false), "closed the moment it opened is not a data error");
        assert!(outcome(row("2012-12-04 15:21:00", "NA", "Closed", "x")).is_err());
        assert!(outcome(row("2012-12-04 15:21:00", "2012-12-05 15:21:00", "Open", "x")).is_err());
        assert!(outcome(row("2012-12-04 15:21:00", "2012-12-05 15:21:00", "Pending", "x")).is_err());
        assert!(
            outcome(row("2012-12-04 15:21:00", "yesterday", "Closed", "x"))
                .expect_err("unreadable Closed")
                .contains("Closed")
        );
    }
}
