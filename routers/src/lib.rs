//! The router service: feeds the matching (`linkbus-matching`) from JetStream and publishes its
//! decisions.
//!
//! - [`service`]: the durable JetStream consumer that decodes, routes, publishes and acks, and
//!   the state a router process shares ([`service::RouterState`]);
//! - [`volunteers`]: the follower that keeps the volunteer index in step with the KV bucket;
//! - [`volunteer_snapshot`]: the volunteer index saved aside, so a router starts from it and
//!   reads only the bucket's changes since;
//! - [`regions`]: region versions in a KV bucket, and their live reload into the service;
//! - [`metrics`]: the router's Prometheus metrics (cases, outcomes, decision time, backlog,
//!   volunteers on duty, dead letters).

pub mod metrics;
pub mod regions;
pub mod service;
pub mod volunteer_snapshot;
pub mod volunteers;
