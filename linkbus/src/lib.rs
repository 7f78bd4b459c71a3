//! The `linkbus` binary's library: everything the command line runs, so tests can run it too.
//!
//! - [`cli`]: argument parsing and dispatch;
//! - [`client`]: `linkbus report | act | answer`, what source systems, departments and volunteers send;
//! - [`config`]: the TOML configuration (`ops/linkbus.example.toml`);
//! - [`embedded`]: the embedded nats-server's users and keys, and how the subcommands find it;
//! - [`nats_access`]: `[nats.auth]` / `[nats.tls]`, the credentials every NATS connection uses;
//! - [`nats_auth`]: `linkbus nats-auth`, the nats-server users and permissions of a deployment;
//! - [`deadletter`]: `linkbus deadletter list | replay`, for operators;
//! - [`service`]: one running service on a NATS connection (streams, volunteers, router);
//! - [`up`]: `linkbus up`, with the embedded, supervised nats-server;
//! - [`adapters`]: the source-system adapters (Open311, grid reports) built from the configuration;
//! - [`metrics`]: the Prometheus registry and the process-level metrics (NATS connection, region);
//! - [`route`]: `linkbus route`, offline decisions;
//! - [`replay`]: `linkbus replay`, data files into the bus with a summary;
//! - [`outcomes`]: `linkbus replay --outcomes real`, SF 311 requests' real acceptance and closure;
//! - [`simulate`]: `linkbus up --simulate`, the simulated feed for regions without public case data;
//! - [`watch`]: `linkbus watch`, a plain subscriber;
//! - [`geo_tools`]: `linkbus geo validate | stats | diff | rerun`;
//! - [`volunteer_credential`]: `linkbus volunteer-credential`, a volunteer's app credential
//!   issued or revoked through a running linkbus's API;
//! - [`grid_upload`]: `linkbus grid-upload`, a grid-management batch posted to a running linkbus;

pub mod adapters;
pub mod cli;
pub mod client;
pub mod config;
pub mod deadletter;
pub mod embedded;
pub mod geo_tools;
pub mod grid_upload;
pub mod metrics;
pub mod nats_access;
pub mod nats_auth;
pub mod outcomes;
pub mod replay;
pub mod route;
pub mod service;
pub mod simulate;
pub mod up;
pub mod volunteer_credential;
pub mod watch;
