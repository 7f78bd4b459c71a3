//! Duplicate merging across two case-book replicas (issue 16, section 6): two services on one
//! nats-server share the routers' and the case books' durable consumers, so the reports of one
//! incident, published at once, are opened half by one replica and half by the other. Round after
//! round, each incident must end as exactly one primary case with every report merged into it,
//! as both replicas see it. Before merging was made safe across replicas (a follower caught up
//! before each check, one decision at a time under a shared lock), this failed within the first
//! three rounds in each of two runs ("2 primaries").

use std::time::Duration;

use linkbus::config::Config;
use linkbus::service::Service;
use linkbus_tests::{TestBus, case, publish_case};
use linkbus_wire::{CaseRecord, SourceSystem};

/// Rounds, each a new incident somewhere else in San Francisco.
const ROUNDS: usize = 30;
/// Reports of each incident, published at once.
const REPORTS: usize = 6;
/// How long a round may take to settle.
const SETTLE: Duration = Duration::from_secs(20);

fn config(bus: &TestBus) -> Config {
    let mut config = bus.config();
    config.region.seed_volunteers = false;
    config
}

/// Where round `n`'s incident is: about 600 m apart (the merge distance is 200 m), all in the
/// city.
fn place(n: usize) -> (f64, f64) {
    (-122.47 + (n % 6) as f64 * 0.007, 37.73 + (n / 6) as f64 * 0.0055)
}

/// What the replica knows of the round's reports, once it knows all of them.
fn records(service: &Service, ids: &[String]) -> Option<Vec<CaseRecord>> {
    ids.iter().map(|id| service.cases.get(id)).collect()
}

/// The primaries among `records` (not merged into another), and whether every report is merged
/// into the one primary, which lists them all.
fn settled(records: &[CaseRecord]) -> Result<(), String> {
    let primaries: Vec<&CaseRecord> = records.iter().filter(|r| r.merged_into.is_none()).collect();
    let [primary] = primaries[..] else {
        let ids: Vec<&str> = primaries.iter().map(|r| r.case_id.as_str()).collect();
        return Err(format!("{} primaries: {ids:?}", primaries.len()));
    };
    for r in records {
        if r.case_id != primary.case_id && r.merged_into.as_deref() != Some(primary.case_id.as_str()) {
            return Err(format!("{} merged into {:?}, not {}", r.case_id, r.merged_into, primary.case_id));
        }
    }
    let mut listed: Vec<&str> = primary.reports.iter().map(|r| r.report_id.as_str()).collect();
    listed.sort_unstable();
    let mut all: Vec<&str> = records.iter().map(|r| r.case_id.as_str()).collect();
    all.sort_unstable();
    if listed != all {
        return Err(format!("the primary {} lists {listed:?}", primary.case_id));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reports_of_one_incident_opened_by_two_replicas_at_once_become_one_case() {
    let bus = TestBus::start().await;
    let config = config(&bus);
    let (a, b) = (bus.service(&config).await, bus.service(&config).await);
    for round in 0..ROUNDS {
        let (lon, lat) = place(round);
        let ids: Vec<String> = (0..REPORTS).map(|n| format!("mr-{round}-{n}")).collect();
        let events: Vec<_> = ids
            .iter()
            .enumerate()
            .map(|(n, id)| case(id, SourceSystem::Emergency, "fire", lon + n as f64 * 0.00003, lat))
            .collect();
        futures::future::join_all(events.iter().map(|event| publish_case(&bus.js, event))).await;
        // Both replicas must come to the one outcome; give the merges time to land.
        let deadline = tokio::time::Instant::now() + SETTLE;
        loop {
            let outcome = [&a, &b].map(|s| records(s, &ids).ok_or_else(|| "not all opened".to_owned()));
            let both =
                outcome.iter().map(|o| o.as_ref().map_err(Clone::clone).and_then(|r| settled(r))).collect::<Vec<_>>();
            if both.iter().all(Result::is_ok) {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "round {round}: {both:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    a.stop().await;
    b.stop().await;
}
