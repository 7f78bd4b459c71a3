//! San Francisco 311 service requests, as DataSF exports them in CSV (`CaseID`, `Opened`,
//! `Category`, `Request.Type`, `Request.Details`, `Address`, `Lat`, `Long`, …).
//!
//! Each row becomes a `public_service` case: the category is the `Category` column as a token,
//! the event id `sf311-<CaseID>` (so a row replayed twice is one case), the time `Opened` read
//! in the city's time zone (America/Los_Angeles). The columns an evaluation needs but a case does
//! not carry (`Responsible.Agency`, `C.Neighborhood`) are kept on [`Row`].

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
}
