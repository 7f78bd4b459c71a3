//! The end-to-end tests, as one test binary (one link of every linkbus crate instead of one per
//! file): each module tests one area against real nats-servers, a real browser or real processes
//! that it starts itself. Run one area with `cargo test -p linkbus-tests --test it <module>::`.

mod adapters_emergency;
mod api;
mod bench;
mod cloudevents_sdk;
mod cluster;
mod console;
mod console_actions;
mod console_alerts;
mod console_chinese;
mod console_delivery;
mod console_map;
mod console_search;
mod console_shapes;
mod console_volunteers;
mod deadletter;
mod embedded;
mod faults;
mod geo;
mod grid;
mod hostile_input;
mod http_limits;
mod lifecycle;
mod merge_replicas;
mod metrics;
mod one_region;
mod open311;
mod openapi_clients;
mod outcomes;
mod permissions;
mod powercut;
mod processes;
mod reload;
mod routing;
mod scenario;
mod sf311;
mod storage;
mod supervision;
mod trace_context;
mod track;
mod track_page;
mod trust_ids;
mod volunteer_app;
mod volunteer_status;
mod webhooks;
