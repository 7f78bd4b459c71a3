//! `linkbus-bench load` against a real nats-server and an in-process linkbus: a tiny paced run and a
//! tiny unpaced one, each event routed exactly once, with the raw NATS floors beside them.

use linkbus_bench::load::{self as bench, BenchOptions, Target};
use linkbus_tests::{TestBus, WAIT, sf_region};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_bench_routes_every_event_exactly_once_and_measures_the_floors() {
    let bus = TestBus::start().await;
    let service = bus.service(&bus.config()).await;
    let options = BenchOptions {
        rates: vec![200],
        seconds: 1.0,
        unpaced: 300,
        targets: vec![Target::Linkbus, Target::CoreFloor, Target::JetstreamFloor],
        wait: WAIT,
        seed: 1,
    };

    let report = tokio::time::timeout(4 * WAIT, bench::bench(&bus.server.url(), &sf_region(), &options))
        .await
        .expect("the bench finishes in time")
        .expect("the bench runs");
    eprintln!("{report}");

    // One paced and one unpaced run for each of linkbus, the core floor and the JetStream floor.
    let targets: Vec<(Target, Option<u32>)> = report.runs.iter().map(|r| (r.target, r.rate)).collect();
    assert_eq!(
        targets,
        [
            (Target::Linkbus, Some(200)),
            (Target::CoreFloor, Some(200)),
            (Target::JetstreamFloor, Some(200)),
            (Target::Linkbus, None),
            (Target::CoreFloor, None),
            (Target::JetstreamFloor, None),
        ]
    );
    for run in &report.runs {
        let expected = if run.rate.is_some() { 200 } else { 300 };
        assert_eq!(run.sent, expected, "{run:?}");
        if run.target != Target::CoreFloor {
            // Core NATS promises no delivery; the stored paths must deliver everything once.
            assert!(run.exactly_once(), "{run:?}");
            assert_eq!(run.delivered, expected, "{run:?}");
        }
        assert!(run.events_per_second > 0.0 && run.latency.p99_ms > 0.0, "{run:?}");
        assert!(run.latency.p50_ms <= run.latency.p99_ms && run.latency.p99_ms <= run.latency.max_ms, "{run:?}");
        // What each event cost JetStream: the core floor stores nothing, the JetStream floor its
        // input and its output; linkbus at least the report, the decision, a department's copy
        // and the case record.
        match run.target {
            Target::CoreFloor => assert_eq!(run.stored_per_event, 0.0, "{run:?}"),
            Target::JetstreamFloor => assert_eq!(run.stored_per_event, 2.0, "{run:?}"),
            Target::Linkbus => assert!(run.stored_per_event >= 4.0, "{run:?}"),
        }
    }
    assert!(report.linkbus_exactly_once());
    // The floor's streams are gone afterwards.
    assert!(bus.js.get_stream(bench::floor::STREAM_IN).await.is_err());
    service.stop().await;
}
