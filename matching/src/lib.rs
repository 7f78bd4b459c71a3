//! Matching a case to its community, department(s) and nearest volunteers: pure and synchronous
//! (no NATS, no tokio in this crate's dependencies), benchable and testable alone.
//!
//! - [`geodesy`]: great-circle distances and unit vectors;
//! - [`areas`]: a broadcast's area (polygons, circles) → every community it touches;
//! - [`communities`]: point → community (R-tree + exact point-in-polygon, border tolerance);
//! - [`departments`]: category × jurisdiction → department(s), most specific first;
//! - [`volunteers`]: the live volunteer index, its k-nearest search and the hourly offer ledger;
//! - [`facilities`]: the nearest facility of a kind (AED, fire station);
//! - [`decision`]: the [`Router`] that combines them into an explained [`Decision`](linkbus_wire::Decision).
//!
//! The service that feeds this from JetStream is `linkbus-routers`.

pub mod areas;
pub mod communities;
pub mod decision;
pub mod departments;
pub mod facilities;
pub mod geodesy;
pub mod volunteers;

pub use decision::{PriorityRule, Router, RoutingParams};
pub use volunteers::{OfferLedger, RosterBuilder, RosterImage, VolunteerIndex};
