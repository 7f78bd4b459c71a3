//! The names of the streams and KV buckets linkbus makes, in one place that depends on nothing
//! (the provisioning in [`crate::nats`] and the limits in [`crate::limits`] both use them).

/// Stream of emergency systems' case reports (`ingest.emergency.>`).
pub const STREAM_INGEST_EMERGENCY: &str = "LINKBUS_INGEST_EMERGENCY";
/// Stream of commercial services' case reports (`ingest.commercial.>`).
pub const STREAM_INGEST_COMMERCIAL: &str = "LINKBUS_INGEST_COMMERCIAL";
/// Stream of public services' case reports (`ingest.public_service.>`).
pub const STREAM_INGEST_PUBLIC_SERVICE: &str = "LINKBUS_INGEST_PUBLIC_SERVICE";
/// Stream of management systems' case reports (`ingest.management.>`).
pub const STREAM_INGEST_MANAGEMENT: &str = "LINKBUS_INGEST_MANAGEMENT";
/// The ingest streams, in `SourceSystem::ALL`'s order (emergency first).
pub const INGEST_STREAMS: [&str; 4] =
    [STREAM_INGEST_EMERGENCY, STREAM_INGEST_COMMERCIAL, STREAM_INGEST_PUBLIC_SERVICE, STREAM_INGEST_MANAGEMENT];
/// The one ingest stream of every system before the streams were split (`ingest.>`); removed by
/// `nats::provision` once its routers have acknowledged all of it.
pub const LEGACY_STREAM_INGEST: &str = "LINKBUS_INGEST";
/// Stream of routed cases (`routed.>`).
pub const STREAM_ROUTED: &str = "LINKBUS_ROUTED";
/// Stream of volunteer offers (`volunteer.*.offer`).
pub const STREAM_OFFERS: &str = "LINKBUS_OFFERS";
/// Stream of case timeline events (`case.>`).
pub const STREAM_CASES: &str = "LINKBUS_CASES";
/// Stream of dead letters (`deadletter.>`).
pub const STREAM_DEADLETTER: &str = "LINKBUS_DEADLETTER";
/// KV bucket of volunteers' live state, keyed by volunteer id.
pub const BUCKET_VOLUNTEERS: &str = "linkbus_volunteers";
/// KV bucket of case records, keyed by case id (`:` written as `=`, which KV keys allow).
pub const BUCKET_CASES: &str = "linkbus_cases";
/// Object store of the routers' snapshots (the volunteer index saved aside, to start from).
pub const OBJECTS_SNAPSHOTS: &str = "linkbus_snapshots";
