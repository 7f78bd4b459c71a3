//! `linkbus route`: one decision, or one per JSON line on stdin, printed as JSON, with no NATS:
//! the region's data and its volunteer roster are loaded from disk.

use std::io::{BufRead, Write};

use anyhow::Context as _;
use jiff::Timestamp;
use linkbus_geo_data::Region;
use linkbus_matching::{OfferLedger, Router, RoutingParams, VolunteerIndex};
use linkbus_wire::{CaseReport, CloudEvent, Location, SourceSystem};
use serde_json::json;

/// The loaded matching: router and the roster's volunteers.
pub struct Offline {
    router: Router,
    volunteers: VolunteerIndex,
    region: Region,
}

impl Offline {
    /// Loads `region` and its roster.
    pub fn load(region: Region, params: RoutingParams) -> anyhow::Result<Self> {
        let roster = region.roster().context("reading the volunteer roster")?;
        let volunteers = VolunteerIndex::from_roster(&roster)?;
        Ok(Self { router: Router::new(&region, params), volunteers, region })
    }

    /// A case at a point for a category, with the category's default priority and system.
    pub fn case_at(&self, lon: f64, lat: f64, category: &str, priority: Option<u8>) -> CaseReport {
        let known = self.region.category(category);
        CaseReport {
            system: known.map_or(SourceSystem::PublicService, |c| c.system),
            category: category.to_owned(),
            priority: priority.or(known.map(|c| c.priority)).unwrap_or(3),
            location: Location { lon, lat },
            address: None,
            reporter: None,
            description: None,
            source_id: "cli".into(),
            reported_at: Timestamp::now(),
            flags: vec![],
            datum: linkbus_wire::Datum::Wgs84,
            received_location: None,
            area: None,
            media_url: None,
        }
    }

    /// Validates and routes one case.
    pub fn route(&self, case: &CaseReport) -> anyhow::Result<linkbus_wire::Decision> {
        case.validate()?;
        Ok(self.router.decide(case, &self.volunteers, &OfferLedger::new(), Timestamp::now().as_second()))
    }

    /// Reads cases as JSON lines (a bare case report, or a whole case-reported event) and writes
    /// one JSON line per input line: `{"line": n, "decision": …}` or `{"line": n, "error": …}`.
    pub fn route_lines(&self, input: impl BufRead, mut output: impl Write) -> anyhow::Result<(usize, usize)> {
        let (mut ok, mut failed) = (0, 0);
        for (n, line) in input.lines().enumerate() {
            let line = line.context("reading stdin")?;
            if line.trim().is_empty() {
                continue;
            }
            let result = parse_case(&line).and_then(|case| self.route(&case));
            let out = match result {
                Ok(decision) => {
                    ok += 1;
                    json!({ "line": n + 1, "decision": decision })
                }
                Err(e) => {
                    failed += 1;
                    json!({ "line": n + 1, "error": format!("{e:#}") })
                }
            };
            writeln!(output, "{out}")?;
        }
        Ok((ok, failed))
    }
}

fn parse_case(line: &str) -> anyhow::Result<CaseReport> {
    let value: serde_json::Value = serde_json::from_str(line).context("not JSON")?;
    if value.get("specversion").is_some() {
        Ok(serde_json::from_value::<CloudEvent<CaseReport>>(value).context("not a case-reported event")?.data)
    } else {
        serde_json::from_value(value).context("not a case report")
    }
}
