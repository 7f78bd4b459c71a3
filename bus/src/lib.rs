//! The bus: how linkbus messages travel over NATS. What they are is `linkbus-wire`.
//!
//! - [`names`]: the names of the streams and KV buckets; [`limits`]: their byte limits.
//! - [`metrics`]: a stage's series of `linkbus_deadletters_total`.
//! - [`nats`]: stream and bucket provisioning, publishing with `Nats-Msg-Id`, dead letters.
//! - [`storage`]: what a publish refused for lack of storage says (`/readyz`'s "storage
//!   refused").
//! - [`pull`]: the consuming loop of a pull consumer, with a bounded read-ahead that a shutdown
//!   hands back at once (routers and the case book both use it).
//! - [`sync`]: lock helpers that survive a poisoned lock.
//! - [`server`]: the embedded `nats-server` child used when no NATS URL is configured.
//!
//! This crate knows nothing of geography; routing lives in `linkbus-matching` and
//! `linkbus-routers`.

pub mod limits;
pub mod metrics;
pub mod names;
pub mod nats;
pub mod pull;
pub mod server;
pub mod storage;
pub mod sync;
