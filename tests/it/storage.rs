//! A full store (issue 16, section 4), on a small one: a nats-server with a 64 MiB
//! `max_file_store`, as the issue's. The default `[storage]` limits do not fit in it, and
//! start-up says so; limits that fit are reserved, so the streams together can never fill the
//! store. The CAD system posts fires until the emergency ingest stream is full: the next post is
//! refused with 503, `/readyz` answers 503 "storage refused" naming the stream, and
//! `linkbus_bus_storage_refused_total{stream}` rises; the other systems' streams still take
//! reports. The operator purges what the routers have acknowledged: the CAD is taken again and
//! `/readyz` is ready.

use std::time::Duration;

use linkbus::config::Config;
use linkbus::service::{self, Service};
use linkbus_bus::nats::{self, StorageLimits};
use linkbus_tests::nats_process::{NatsProcess, free_port};
use linkbus_tests::{WAIT, case, publish_case, sf_region, sf_region_dir, wait_for_case};
use linkbus_wire::SourceSystem;
use tokio_util::sync::CancellationToken;

use crate::trust_ids::{MISSION, cad_config, cad_key, post_fire};

/// The store: 64 MiB.
const STORE: u64 = 64 * 1024 * 1024;

async fn get(http: &reqwest::Client, url: String) -> (u16, String) {
    let response = http.get(url).send().await.expect("a response");
    (response.status().as_u16(), response.text().await.expect("body"))
}

/// The value of `series` on `/metrics` (0 when absent).
fn metric(text: &str, series: &str) -> f64 {
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok())).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_stream_says_storage_refused_and_recovers_once_space_is_freed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let conf = dir.path().join("nats-server.conf");
    let store = dir.path().join("js").display().to_string();
    std::fs::write(
        &conf,
        format!("host: 127.0.0.1\nport: {port}\njetstream {{ store_dir: {store:?}, max_file_store: {STORE} }}\n"),
    )
    .expect("server config");
    let server = NatsProcess::start(&conf, port, &[], &dir.path().join("nats-server.log")).await;
    let region = sf_region();

    // The default limits (4.8 GiB) do not fit in 64 MiB: start-up says so and what to do.
    let mut config = Config::default();
    config.nats.url = Some(server.url());
    config.region.dir = sf_region_dir();
    let client = service::connect(&server.url(), WAIT).await.expect("connects");
    let refused = Service::start(&config, &region, client, "/linkbus/storage".into()).await;
    let err = format!("{:#}", refused.err().expect("the defaults do not fit"));
    assert!(err.contains("JetStream has not that much room left") && err.contains("[storage]"), "{err}");

    // Limits that fit: 41 MiB in all.
    config.storage = StorageLimits {
        ingest_mib: 1,
        routed_mib: 8,
        cases_mib: 8,
        offers_mib: 2,
        deadletter_mib: 2,
        case_records_mib: 8,
        volunteers_mib: 4,
        snapshots_mib: 1,
        small_bucket_mib: 1,
    };
    assert!(config.storage.reserved_bytes() < STORE);
    config.ingest.unclaimed = linkbus_wire::claims::Unclaimed::Accept;
    config.api.listen = "127.0.0.1:0".into();
    config.api.keys = vec![cad_key()];
    config.adapters.cad = cad_config();
    let client = service::connect(&server.url(), WAIT).await.expect("connects");
    let service = Service::start(&config, &region, client, "/linkbus/storage".into()).await.expect("service starts");
    let listener = tokio::net::TcpListener::bind(&config.api.listen).await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let app = linkbus::up::api_app(&config, &region, &service).expect("app");
    let stop = CancellationToken::new();
    let api = tokio::spawn(linkbus_http::serve(listener, app, stop.clone().cancelled_owned()));
    let http = reqwest::Client::builder().timeout(WAIT).build().expect("client");
    assert_eq!(get(&http, format!("{base}/readyz")).await.0, 200);

    // Fires until the emergency stream (1 MiB) is full.
    let narrative = "smoke on every floor, residents evacuating; ".repeat(90);
    let mut posted = 0;
    let (status, error) = loop {
        let (status, body) = post_fire(&http, &base, &format!("F26-{posted:06}"), &narrative).await;
        if status != 202 {
            break (status, body);
        }
        posted += 1;
        assert!(posted < 1000, "1 MiB never filled");
    };
    assert_eq!((status, error["code"].as_str()), (503, Some("unavailable")), "{error}");
    assert!(error["error"].as_str().is_some_and(|e| e.contains("maximum bytes exceeded")), "{error}");
    let (status, ready) = get(&http, format!("{base}/readyz")).await;
    assert_eq!(status, 503, "{ready}");
    assert!(ready.contains("storage refused") && ready.contains(nats::STREAM_INGEST_EMERGENCY), "{ready}");
    let (_, metrics) = get(&http, format!("{base}/metrics")).await;
    let series = format!("linkbus_bus_storage_refused_total{{stream=\"{}\"}}", nats::STREAM_INGEST_EMERGENCY);
    assert!(metric(&metrics, &series) >= 1.0, "{series} in\n{metrics}");
    println!("{posted} fires filled the emergency stream; then: {status} {ready}");

    // One full stream stops no other: a public-service report is still taken and routed.
    let js = async_nats::jetstream::new(service.client.clone());
    publish_case(&js, &case("sf311-storage-1", SourceSystem::PublicService, "sewer_issues", MISSION.0, MISSION.1))
        .await;
    wait_for_case(&service, "sf311-storage-1", "routed", |_| true).await;

    // The operator frees space: purges what the routers have acknowledged.
    let routers = js
        .get_consumer_from_stream::<async_nats::jetstream::consumer::pull::Config, _, _>(
            "linkbus-routers",
            nats::STREAM_INGEST_EMERGENCY,
        )
        .await
        .expect("the routers' consumer")
        .info()
        .await
        .expect("its state")
        .ack_floor
        .stream_sequence;
    let stream = js.get_stream(nats::STREAM_INGEST_EMERGENCY).await.expect("stream");
    let purged = stream.purge().sequence(routers + 1).await.expect("purged");
    assert!(purged.purged as usize >= posted / 2, "{} of {posted} purged", purged.purged);

    let (status, receipt) = post_fire(&http, &base, "F26-999999", "one more").await;
    assert_eq!((status, receipt["cases"][0]["outcome"].as_str()), (202, Some("reported")), "{receipt}");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, ready) = get(&http, format!("{base}/readyz")).await;
        if status == 200 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never ready again: {ready}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    let _ = tokio::time::timeout(WAIT, api).await;
    service.stop().await;
}
