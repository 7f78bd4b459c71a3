//! The bus: what travels between linkbus components, and how it travels over NATS.
//!
//! - [`wire`]: the CloudEvents envelope and every payload (case reports, routed cases,
//!   volunteer offers and status), with their validation.
//! - [`decode`]: bytes from `ingest.…` to a checked case event, or a [`decode::Rejection`]
//!   that says why.
//! - [`subjects`]: the subject names, built in one place.
//! - [`nats`]: stream and bucket provisioning, publishing with `Nats-Msg-Id`, dead letters.
//! - [`pull`]: the consuming loop of a pull consumer, with a bounded read-ahead that a shutdown
//!   hands back at once (routers and the case book both use it).
//! - [`server`]: the embedded `nats-server` child used when no NATS URL is configured.
//!
//! This crate knows nothing of geography; routing lives in `linkbus-routers`.

pub mod decode;
pub mod nats;
pub mod pull;
pub mod server;
pub mod subjects;
pub mod wire;
