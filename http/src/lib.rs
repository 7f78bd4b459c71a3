//! The HTTP surface of linkbus, served by `linkbus up` on `[api].listen`: [`app`] assembles it,
//! [`Server`] serves it.
//!
//! - [`api`]: the closed loop's endpoints (cases, residents' follow-ups and ratings, webhook
//!   deliveries and department figures, `/healthz`, `/readyz`, `/metrics`), one module each;
//! - [`console`]: the dispatcher console (sign-in, live events over SSE, the embedded page and
//!   its assets under `http/console/`, the board's data);
//! - [`volunteer`]: the volunteers' phone app (per-volunteer credentials, status, live offers
//!   and answers, history; its page under `http/volunteer/`);
//! - [`track`]: the resident's tracking page (`/track/…`: the page, its files, its QR code), its
//!   proofs and their lockouts (its data and rating are `api`'s `/api/track/…`);
//! - [`state`]: [`state::ApiState`], what the API's handlers share, and the traits through which
//!   it reaches the case book, the webhook records and the service's readiness;
//! - [`auth`]: keys, the [`auth::Principal`] a request is made by, console sessions;
//! - [`error`]: [`error::ApiError`], every refusal, answered as the one wire error body;
//!   [`error::Error`], why the surface could not be built;
//! - `rate_limit`: token buckets (the residents' per key or address, the console's sign-ins);
//! - [`server`]: serving on a socket within `[api]`'s limits (timeouts, a connection cap);
//! - [`names`]: the region's names per language and the reader's (`Accept-Language`), for
//!   explanations written in it;
//! - [`openapi`]: the OpenAPI document (`/api/openapi.json`, `docs/openapi.json`);
//! - [`config`]: `[api]` and `[console]` of the configuration file.
//!
//! Modules depend downwards only, so none is reached back by what it uses: `config`, `error`, `names`
//! and `rate_limit` use nothing of this crate; `server` and `auth` use `config` and `error`;
//! `console` uses `auth` (sessions are signed there, and its handlers take their own state, so it
//! needs nothing of the API's);
//! `volunteer` uses `auth`, `rate_limit` and `console`'s compressed delivery; `track` uses
//! `console`'s file delivery and headers, `error` and `rate_limit`; `state` uses `auth`,
//! `rate_limit`, `console`, `volunteer` and `track` (it holds what it serves); `api` uses `state`
//! and `track`'s proofs; `openapi` uses `api`'s types; this file assembles them all. The source-system
//! adapters' routes are built by `linkbus-adapters` and merged in
//! ([`state::ApiState::with_adapters`]).

// The OpenAPI document (`openapi.rs`) is one `json!` literal per part; its paths part nests
// deeper than the macro's default recursion limit allows.
#![recursion_limit = "256"]

pub mod api;
pub mod auth;
pub mod config;
pub mod console;
pub mod error;
pub mod names;
pub mod openapi;
pub(crate) mod rate_limit;
pub mod server;
pub mod state;
pub mod track;
pub mod volunteer;

#[cfg(test)]
mod tests;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;

use crate::error::{ApiError, MAX_BODY};
use crate::state::ApiState;

/// Everything served on `[api].listen`: the API, the OpenAPI document, the console (404 where it
/// is off) and the adapters' routes.
pub fn app(state: ApiState) -> Router {
    let console = console::routes(state.console.clone(), state.auth.clone());
    let volunteers = volunteer::routes(state.volunteers.clone(), state.auth.clone());
    let track = track::routes(state.track.clone());
    api::routes(&state)
        .route("/api/openapi.json", get(openapi::serve))
        .merge(console)
        .merge(volunteers)
        .merge(track)
        .fallback(|| async { ApiError::NotFound("no such endpoint; see /api/openapi.json".into()) })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state.clone())
        .merge(state.adapters.clone().layer(axum::middleware::from_fn_with_state(state, state::with_caller)))
}

pub use server::{Server, serve};
