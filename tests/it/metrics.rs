//! Metrics and probes of a running linkbus, over real HTTP: a service on a real nats-server
//! routes a few cases (one dead-lettered), a department accepts and resolves one, a volunteer
//! declines an offer; `/metrics` shows the series moved and `promtool check metrics` accepts the
//! exposition; `/readyz` is 200, then 503 once the nats-server is killed, then 200 again once it is
//! back. The alert rules and scrape configuration in `ops/prometheus/` pass `promtool check`, and
//! the Grafana dashboard in `ops/grafana/` parses and uses only (and every one of) the metrics
//! linkbus exports.
//!
//! promtool comes from Debian's `prometheus` package; `ops/scripts/ensure-test-tools` installs it.
//! Without it these tests fail, saying so.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use linkbus::metrics::Metrics;
use linkbus::service::{self, Service};
use linkbus_http::state::ApiState;
use linkbus_tests::{
    TestBus, WAIT, case, department_action, publish_case, publish_raw, repo_root, sf_region, volunteer_answer,
    wait_for_case,
};
use linkbus_wire::{Action, CaseState, SourceSystem};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// Mission District, San Francisco: inside the `mission` neighborhood.
const MISSION: (f64, f64) = (-122.4194, 37.7599);
/// In the Pacific, 60 km south-west of the city: no community within the tolerance.
const OFFSHORE: (f64, f64) = (-122.9, 37.3);

/// The promtool to run: `LINKBUS_PROMTOOL`, else `promtool` on the `PATH` or in `/usr/bin`.
fn promtool() -> PathBuf {
    let from_env = std::env::var_os("LINKBUS_PROMTOOL").map(PathBuf::from);
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("promtool")).collect::<Vec<_>>())
        .unwrap_or_default();
    from_env
        .into_iter()
        .chain(on_path)
        .chain([PathBuf::from("/usr/bin/promtool")])
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "promtool is not installed, and these tests need it to check the metrics, alert rules and \
                 scrape configuration: run ops/scripts/ensure-test-tools (it installs Debian's package \
                 `prometheus`), or set LINKBUS_PROMTOOL to a promtool binary"
            )
        })
}

/// Runs promtool with `args` (and `stdin`, if given); its combined output, or a panic with it.
fn run_promtool(args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new(promtool())
        .args(args)
        .current_dir(repo_root())
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    if let Some(input) = stdin {
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write to promtool");
    }
    let out = child.wait_with_output().expect("promtool runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {} failed ({}):\n{text}", args.join(" "), out.status);
    text
}

/// The value of the series written exactly `series` (name and labels as exposed) in `text`.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}

/// The sum of every series of metric `name` in `text`.
fn total(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' ')))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

struct Http {
    base: String,
    client: reqwest::Client,
}

impl Http {
    async fn get(&self, path: &str) -> (u16, String) {
        let response = tokio::time::timeout(WAIT, self.client.get(format!("{}{path}", self.base)).send())
            .await
            .expect("answered in time")
            .expect("response");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    async fn scrape(&self) -> String {
        let (status, text) = self.get("/metrics").await;
        assert_eq!(status, 200, "{text}");
        text
    }

    /// Scrapes until `ready` accepts the exposition; the last one.
    async fn scrape_until(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let text = self.scrape().await;
            if ready(&text) {
                return text;
            }
            assert!(tokio::time::Instant::now() < deadline, "gave up waiting for {what}; last scrape:\n{text}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// GETs `/readyz` until it answers `status`; the body.
    async fn readyz_until(&self, status: u16) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (got, body) = self.get("/readyz").await;
            if got == status {
                return serde_json::from_str(&body).expect("a JSON body");
            }
            assert!(tokio::time::Instant::now() < deadline, "/readyz still answers {got} ({body}), not {status}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test]
async fn a_running_linkbus_exposes_valid_metrics_that_move_and_readyz_follows_nats() {
    promtool();
    let mut bus = TestBus::start().await;
    let config = bus.config();
    let region = sf_region();
    let metrics = Metrics::new().expect("metrics");
    let client = service::connect_with_metrics(&bus.server.url(), WAIT, &metrics.nats).await.expect("connects");
    let service = Service::start_with_metrics(&config, &region, client, "/linkbus/test-metrics".into(), metrics)
        .await
        .expect("service starts");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let state = ApiState::new(service.cases.clone(), &config.api)
        .expect("api state")
        .with_metrics(service.metrics.registry().clone())
        .with_readiness(service.readiness());
    let stop = CancellationToken::new();
    let server = tokio::spawn(linkbus_http::serve(listener, linkbus_http::app(state), stop.clone().cancelled_owned()));
    let http = Http {
        base: format!("http://{addr}"),
        client: reqwest::Client::builder().timeout(WAIT).build().expect("client"),
    };

    assert_eq!(http.readyz_until(200).await, serde_json::json!({ "ready": true }));
    let before = http.scrape().await;
    assert_eq!(total(&before, "linkbus_router_cases_total"), 0.0, "{before}");
    assert_eq!(value(&before, "linkbus_nats_connected"), Some(1.0), "{before}");

    // Three cases from three kinds of system (one offshore: unmatched, to the catch-all), and
    // one that is not JSON at all.
    let sewer = case("m-sewer-1", SourceSystem::PublicService, "sewer_issues", MISSION.0, MISSION.1);
    let cleanup = case("m-clean-1", SourceSystem::Management, "street_and_sidewalk_cleaning", MISSION.0, MISSION.1);
    let offshore = case("m-offshore-1", SourceSystem::Emergency, "sewer_issues", OFFSHORE.0, OFFSHORE.1);
    for event in [&sewer, &cleanup, &offshore] {
        publish_case(&bus.js, event).await;
    }
    publish_raw(&bus.js, "ingest.public_service.sewer_issues", "m-bad-1", "not json".into()).await;

    // The closed loop: the sewer department accepts and resolves its case; the nearest volunteer
    // offered the cleanup declines.
    let sewer_record = wait_for_case(&service, "m-sewer-1", "the sewer case opened", |_| true).await;
    let department = &sewer_record.departments[0];
    assert!(department_action(&service.client, department, "m-sewer-1", Action::Accept {}).await.ok);
    let resolve = Action::Resolve { note: "cleared the drain".into() };
    assert!(department_action(&service.client, department, "m-sewer-1", resolve).await.ok);
    wait_for_case(&service, "m-sewer-1", "resolved", |r| r.state == CaseState::Resolved).await;
    let cleanup_record = wait_for_case(&service, "m-clean-1", "the cleanup case opened", |_| true).await;
    let offered = cleanup_record.offers.first().expect("the cleanup case is offered to volunteers");
    assert!(volunteer_answer(&service.client, &offered.volunteer_id, "m-clean-1", false).await.ok);
    wait_for_case(&service, "m-offshore-1", "the offshore case opened", |_| true).await;

    let text = http
        .scrape_until("3 cases routed, 1 dead letter, 1 declined offer", |t| {
            total(t, "linkbus_router_cases_total") >= 3.0
                && value(t, r#"linkbus_deadletters_total{reason="malformed",stage="ingest"}"#) == Some(1.0)
                && value(t, r#"linkbus_cases_volunteer_offers_total{outcome="declined"}"#) == Some(1.0)
        })
        .await;
    let expect = |series: &str, want: f64| {
        assert_eq!(value(&text, series), Some(want), "{series} in\n{text}");
    };
    expect(r#"linkbus_router_cases_total{system="public_service"}"#, 1.0);
    expect(r#"linkbus_router_cases_total{system="management"}"#, 1.0);
    expect(r#"linkbus_router_cases_total{system="emergency"}"#, 1.0);
    expect(r#"linkbus_router_cases_total{system="commercial"}"#, 0.0);
    expect(r#"linkbus_router_community_matches_total{outcome="inside"}"#, 2.0);
    expect(r#"linkbus_router_community_matches_total{outcome="unmatched"}"#, 1.0);
    expect(r#"linkbus_router_department_rules_total{kind="jurisdiction"}"#, 2.0);
    expect(r#"linkbus_router_department_rules_total{kind="catch_all"}"#, 1.0);
    expect("linkbus_router_ingest_to_routed_seconds_count", 3.0);
    assert!(value(&text, "linkbus_router_decision_duration_seconds_count").is_some_and(|n| n >= 3.0), "{text}");
    expect(r#"linkbus_deadletters_total{reason="malformed",stage="ingest"}"#, 1.0);
    expect(r#"linkbus_deadletters_total{reason="undeliverable",stage="webhook"}"#, 0.0);
    expect("linkbus_cases_routed_to_accepted_seconds_count", 1.0);
    expect("linkbus_cases_accepted_to_resolved_seconds_count", 1.0);
    // Sent: the router's offers with each case, and the next nearest's after the decline.
    let offers_sent: usize = ["m-sewer-1", "m-clean-1", "m-offshore-1"]
        .iter()
        .map(|id| service.cases.get(id).map_or(0, |r| r.offers.len()))
        .sum();
    assert!(offers_sent > cleanup_record.offers.len(), "the decline passed the offer on");
    expect(r#"linkbus_cases_volunteer_offers_total{outcome="sent"}"#, offers_sent as f64);
    expect("linkbus_cases_escalations_total", 0.0);
    expect("linkbus_nats_connected", 1.0);
    let geo =
        format!(r#"linkbus_geo_data_info{{region="{}",version="{}"}}"#, region.manifest.id, region.manifest.version);
    expect(&geo, 1.0);
    assert!(value(&text, r#"linkbus_router_volunteers{state="available"}"#).is_some_and(|n| n > 0.0), "{text}");
    assert!(value(&text, "linkbus_router_ingest_backlog_messages").is_some(), "{text}");

    // promtool reads the scrape as Prometheus would, and lints it (names, units, suffixes).
    run_promtool(&["check", "metrics"], Some(&text));

    // NATS gone: not ready, and the connection gauge says so; NATS back: ready again.
    bus.server.kill().await;
    let down = http.readyz_until(503).await;
    assert_eq!(down["ready"], false, "{down}");
    assert!(down["reason"].as_str().is_some_and(|r| r.contains("NATS")), "{down}");
    let text = http.scrape_until("linkbus_nats_connected 0", |t| value(t, "linkbus_nats_connected") == Some(0.0)).await;
    assert!(value(&text, "linkbus_nats_disconnects_total").is_some_and(|n| n >= 1.0), "{text}");
    bus.server.restart().await.expect("nats-server restarts");
    assert_eq!(http.readyz_until(200).await, serde_json::json!({ "ready": true }));
    http.scrape_until("linkbus_nats_connected 1", |t| value(t, "linkbus_nats_connected") == Some(1.0)).await;

    stop.cancel();
    tokio::time::timeout(WAIT, server).await.expect("the API stops").expect("no panic").expect("served");
    tokio::time::timeout(WAIT, service.stop()).await.expect("the service stops");
}

/// The metric families a linkbus process exports, with the series names each adds (a histogram
/// `_bucket`, `_sum`, `_count`), from a registry set up as `linkbus up` sets it up.
fn exported() -> (BTreeSet<String>, BTreeSet<String>) {
    let metrics = Metrics::new().expect("metrics");
    let _registered = metrics.register_service().expect("registers");
    // `linkbus up` registers the HTTP server's when it serves the API.
    linkbus_http::Server::new(linkbus_http::server::Limits::default(), metrics.registry()).expect("the HTTP server's");
    metrics.region_loaded(&sf_region());
    let mut families = BTreeSet::new();
    let mut series = BTreeSet::new();
    for family in metrics.registry().gather() {
        let name = family.name().to_owned();
        if family.get_field_type() == prometheus::proto::MetricType::HISTOGRAM {
            for suffix in ["_bucket", "_sum", "_count"] {
                series.insert(format!("{name}{suffix}"));
            }
        }
        series.insert(name.clone());
        families.insert(name);
    }
    (families, series)
}

/// Every `linkbus_…` metric name in `text`.
fn linkbus_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("linkbus_") {
        let preceded = rest[..at].chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let name: String =
            rest[at..].chars().take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_').collect();
        if !preceded {
            names.insert(name.clone());
        }
        rest = &rest[at + name.len()..];
    }
    names
}

/// The family a series name belongs to.
fn family_of(series: &str, families: &BTreeSet<String>) -> Option<String> {
    ["_bucket", "_sum", "_count", ""]
        .iter()
        .filter_map(|suffix| series.strip_suffix(suffix))
        .find(|base| families.contains(*base))
        .map(str::to_owned)
}

#[test]
fn alert_rules_and_scrape_config_pass_promtool_and_use_exported_metrics() {
    let out = run_promtool(&["check", "rules", "ops/prometheus/alerts.yml"], None);
    assert!(out.contains("SUCCESS"), "{out}");
    let out = run_promtool(&["check", "config", "ops/prometheus/prometheus.yml"], None);
    assert!(out.contains("SUCCESS"), "{out}");

    let (families, series) = exported();
    let rules = std::fs::read_to_string(repo_root().join("ops/prometheus/alerts.yml")).expect("alerts.yml");
    let used = linkbus_names(&rules);
    let unknown: Vec<&String> = used.iter().filter(|n| !series.contains(*n)).collect();
    assert!(unknown.is_empty(), "alerts.yml uses metrics linkbus does not export: {unknown:?}\nexported: {series:?}");
    for must in [
        "linkbus_router_ingest_backlog_messages",
        "linkbus_deadletters_total",
        "linkbus_cases_escalations_total",
        "linkbus_router_cases_total",
        "linkbus_nats_connected",
    ] {
        assert!(used.contains(must), "alerts.yml has no rule on {must}");
    }
    assert!(families.contains("linkbus_geo_data_info"));
}

#[test]
fn the_dashboard_parses_and_covers_exactly_the_exported_metrics() {
    let path = repo_root().join("ops/grafana/linkbus.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("linkbus.json")).expect("JSON");
    assert!(dashboard["title"].is_string() && dashboard["panels"].is_array(), "not a Grafana dashboard");
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap_or_else(|| panic!("a target without expr in {panel}"));
            assert!(!expr.trim().is_empty(), "an empty expr in {}", panel["title"]);
            exprs.push(expr.to_owned());
        }
    }
    assert!(exprs.len() >= 15, "only {} queries", exprs.len());

    let (families, series) = exported();
    let used: BTreeSet<String> = exprs.iter().flat_map(|e| linkbus_names(e)).collect();
    let unknown: Vec<&String> = used.iter().filter(|n| !series.contains(*n)).collect();
    assert!(unknown.is_empty(), "the dashboard uses metrics linkbus does not export: {unknown:?}");
    let covered: BTreeSet<String> = used.iter().filter_map(|n| family_of(n, &families)).collect();
    let missing: Vec<&String> = families.difference(&covered).collect();
    assert!(missing.is_empty(), "the dashboard shows nothing of {missing:?}");
}
