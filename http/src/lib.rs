//! The HTTP surface of linkbus, served by `linkbus up` on `[api].listen`.
//!
//! - [`api`]: the closed loop's API (cases, actions, residents' follow-ups and ratings, webhook
//!   deliveries, figures), its keys and roles, its one error body, the residents' rate limit,
//!   the OpenAPI document, and `/healthz`, `/readyz`, `/metrics`;
//! - [`console`]: the dispatcher console (sign-in session, live events over SSE, the embedded
//!   page and its assets under `console/`);
//! - [`config`]: `[api]` and `[console]` of the configuration file.
//!
//! The source-system adapters' routes are built by `linkbus-adapters` and merged in
//! ([`api::ApiState::with_adapters`]).

pub mod api;
pub mod config;
pub mod console;
