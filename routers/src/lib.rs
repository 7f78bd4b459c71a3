//! The routers: matching a case to its community, department(s) and nearest volunteers, and the
//! service that feeds that matching from JetStream.
//!
//! Pure and synchronous (no NATS, no tokio), benchable and testable alone:
//! - [`geodesy`]: great-circle distances and unit vectors;
//! - [`areas`]: a broadcast's area (polygons, circles) → every community it touches;
//! - [`communities`]: point → community (R-tree + exact point-in-polygon, border tolerance);
//! - [`departments`]: category × jurisdiction → department(s), most specific first;
//! - [`volunteers`]: the live volunteer index, its k-nearest search and the hourly offer ledger;
//! - [`facilities`]: the nearest facility of a kind (AED, fire station);
//! - [`decision`]: the [`Router`] that combines them into an explained [`Decision`](linkbus_bus::wire::Decision).
//!
//! The transport:
//! - [`metrics`]: the router's Prometheus metrics (cases, outcomes, decision time, backlog,
//!   volunteers on duty, dead letters);
//! - [`service`]: the durable JetStream consumer that decodes, routes, publishes and acks, and
//!   the follower that keeps the volunteer index in step with the KV bucket;
//! - [`regions`]: region versions in a KV bucket, and their live reload into the service.

pub mod areas;
pub mod communities;
pub mod decision;
pub mod departments;
pub mod facilities;
pub mod geodesy;
pub mod metrics;
pub mod regions;
pub mod service;
pub mod volunteers;

pub use decision::{PriorityRule, Router, RoutingParams};
pub use volunteers::{OfferLedger, RosterBuilder, VolunteerIndex};
