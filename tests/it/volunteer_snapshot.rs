//! The volunteer index saved aside (`[router] volunteer_snapshot_secs`), against a real
//! nats-server and the in-process service: a router saves it to the object store
//! `linkbus_snapshots`, and the next one starts from it, reading only the volunteers' changes
//! since (moves, deletes, newcomers) — and reads the whole bucket instead when the snapshot is not
//! the bucket's past any more.

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::kv::Store;
use linkbus::config::Config;
use linkbus::service::Service;
use linkbus_bus::nats::{self, BUCKET_VOLUNTEERS, OBJECTS_SNAPSHOTS};
use linkbus_routers::volunteer_snapshot::SNAPSHOT_OBJECT;
use linkbus_tests::{TestBus, WAIT, metrics_text};
use linkbus_wire::{Location, VolunteerStatus};

/// Mission District, San Francisco.
const MISSION: (f64, f64) = (-122.4194, 37.7599);

fn status(n: usize, east: f64) -> VolunteerStatus {
    VolunteerStatus {
        id: format!("vol-{n}"),
        location: Location { lon: MISSION.0 + east, lat: MISSION.1 + n as f64 * 1e-5 },
        available: !n.is_multiple_of(3),
        skills: if n.is_multiple_of(2) { vec!["cpr".into()] } else { vec![] },
    }
}

async fn put(store: &Store, v: &VolunteerStatus) -> u64 {
    store.put(&v.id, serde_json::to_vec(v).expect("json").into()).await.expect("put")
}

/// A bus with `volunteers` in its bucket, and a configuration saving a snapshot every second.
async fn filled(bus: &TestBus, volunteers: usize) -> (Config, Store, u64) {
    let mut config = bus.config();
    config.region.seed_volunteers = false;
    config.router.volunteer_snapshot_secs = 1;
    nats::provision(&bus.js, &config.stream_settings()).await.expect("provision");
    let store = bus.js.get_key_value(BUCKET_VOLUNTEERS).await.expect("bucket");
    let mut last = 0;
    for n in 0..volunteers {
        last = put(&store, &status(n, 0.0)).await;
    }
    (config, store, last)
}

/// Starts a service and waits until it has saved the snapshot of the bucket at `revision`, once.
async fn service_saving(bus: &TestBus, config: &Config, revision: u64) -> Service {
    let service = bus.service(config).await;
    let objects = bus.js.get_object_store(OBJECTS_SNAPSHOTS).await.expect("the snapshot store");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let saved = objects.info(SNAPSHOT_OBJECT).await.ok().and_then(|i| i.metadata.get("revision").cloned());
        let counted =
            metrics_text(&service).contains("linkbus_router_volunteer_snapshots_total{outcome=\"saved\"} 1\n");
        if saved == Some(revision.to_string()) && counted {
            return service;
        }
        assert!(tokio::time::Instant::now() < deadline, "no snapshot at revision {revision}: {saved:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the service's index holds: (id, lon, available, skills), by id.
fn held(service: &Service) -> Vec<(String, f64, bool, Vec<String>)> {
    let mut held: Vec<_> = linkbus_bus::sync::read(&service.state.volunteers)
        .positions()
        .into_iter()
        .map(|p| (p.id, (p.lon * 1e6).round() / 1e6, p.available, p.skills))
        .collect();
    held.sort_by(|a, b| a.0.cmp(&b.0));
    held
}

fn expected(statuses: impl IntoIterator<Item = VolunteerStatus>) -> Vec<(String, f64, bool, Vec<String>)> {
    let mut expected: Vec<_> =
        statuses.into_iter().map(|v| (v.id, (v.location.lon * 1e6).round() / 1e6, v.available, v.skills)).collect();
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    expected
}

/// A router saves the index; while no router runs, one volunteer moves, one is deleted, one
/// joins and one's app writes a broken value. The next router holds the bucket's volunteers, the
/// broken one with the status the snapshot kept, having taken only the three good entries from
/// the bucket (the broken one is refused): the rest came from the snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_starts_from_the_snapshot_and_takes_only_the_changes_since() {
    let bus = TestBus::start().await;
    let (config, store, last) = filled(&bus, 300).await;
    let first = service_saving(&bus, &config, last).await;
    assert_eq!(first.state.stats.volunteer_updates.load(Ordering::Relaxed), 300, "the first read the whole bucket");
    first.stop().await;

    put(&store, &status(0, 0.01)).await;
    store.delete("vol-1").await.expect("delete");
    put(&store, &status(300, 0.0)).await;
    // A broken app's value: refused, and the snapshot's good status stays.
    store.put("vol-2", "not json".into()).await.expect("put");

    let second = bus.service(&config).await;
    second.readiness().ready().await.expect("ready");
    let now = (0..=300).filter(|&n| n != 1).map(|n| status(n, if n == 0 { 0.01 } else { 0.0 }));
    assert_eq!(held(&second), expected(now), "the bucket's volunteers, as they are now");
    assert_eq!(
        second.state.stats.volunteer_updates.load(Ordering::Relaxed),
        3,
        "only the three changes since the snapshot were read from the bucket"
    );
    assert_eq!(second.state.stats.volunteer_rejected.load(Ordering::Relaxed), 1, "the broken value refused");
    second.stop().await;
}

/// The bucket's stream is purged after a snapshot (as an operator's `nats stream purge` would):
/// the snapshot's 50 volunteers are no longer in the bucket, and the next router must not bring
/// them back. It refuses the snapshot and reads the whole bucket: the one volunteer put since.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_the_bucket_no_longer_backs_is_not_used() {
    let bus = TestBus::start().await;
    let (config, store, last) = filled(&bus, 50).await;
    let first = service_saving(&bus, &config, last).await;
    first.stop().await;

    let mut stream = bus.js.get_stream(format!("KV_{BUCKET_VOLUNTEERS}")).await.expect("the bucket's stream");
    stream.purge().await.expect("purge");
    assert_eq!(stream.info().await.expect("info").state.messages, 0);
    put(&store, &status(77, 0.0)).await;

    let second = bus.service(&config).await;
    second.readiness().ready().await.expect("ready");
    assert_eq!(held(&second), expected([status(77, 0.0)]), "only what the bucket holds");
    second.stop().await;
}
