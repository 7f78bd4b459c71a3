//! linkbus benchmarks, kept out of the service's crates:
//!
//! - [`synthetic`]: a seeded synthetic city at any scale (communities of any vertex count,
//!   departments, categories, volunteers, cases), shared by everything below;
//! - `benches/matching.rs`: criterion benches of the matching (`cargo bench -p linkbus-bench`);
//! - [`decisions`]: the decision-latency harness (percentiles from an HDR histogram, growth
//!   with scale, volunteer updates absorbed while routing, start-up time and memory);
//! - [`bucket`]: start-up through a real nats-server (the volunteers bucket filled, a fresh
//!   process timed taking them as the service does);
//! - [`postgis`]: the same decision answered by PostGIS over connections from Rust, checked
//!   against linkbus on a sample before it is timed, and the CPU time its backends spent;
//! - [`cpu`]: CPU time of a thread or a process, for work per CPU-second;
//! - [`load`]: the load generator that drives a running linkbus through NATS, and the raw NATS
//!   floors measured beside it.
//!
//! The `linkbus-bench` binary runs `bucket`, `decisions`, `postgis` and `load`; `ops/scripts/bench` runs everything and writes
//! `docs/BENCHMARKS.md`'s tables and plots.

pub mod bucket;
pub mod cpu;
pub mod decisions;
pub mod load;
pub mod postgis;
pub mod synthetic;
