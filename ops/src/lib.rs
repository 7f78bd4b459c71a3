//! The `linkbus` binary's library: everything the command line runs, so tests can run it too.
//!
//! - [`cli`]: argument parsing and dispatch;
//! - [`client`]: `linkbus report | act | answer`, what source systems, departments and volunteers send;
//! - [`config`]: the TOML configuration (`ops/linkbus.example.toml`);
//! - [`service`]: one running service on a NATS connection (streams, volunteers, router);
//! - [`up`]: `linkbus up`, with the embedded, supervised nats-server;
//! - [`adapters`]: the source-system adapters (Open311, grid reports) built from the configuration;
//! - [`api`]: the HTTP API of the closed loop (cases, actions, residents' follow-up, OpenAPI),
//!   `/metrics`, `/healthz` and `/readyz`;
//! - [`metrics`]: the Prometheus registry and the process-level metrics (NATS connection, region);
//! - [`route`]: `linkbus route`, offline decisions;
//! - [`replay`]: `linkbus replay`, data files into the bus with a summary;
//! - [`watch`]: `linkbus watch`, a plain subscriber;
//! - [`grid_upload`]: `linkbus grid-upload`, a grid-management batch posted to a running linkbus;
//! - [`geo_build`]: `linkbus geo build-sf`, the San Francisco region from public data.

pub mod adapters;
pub mod api;
pub mod cli;
pub mod client;
pub mod config;
pub mod geo_build;
pub mod grid_upload;
pub mod metrics;
pub mod replay;
pub mod route;
pub mod service;
pub mod up;
pub mod watch;
