//! The dispatcher console: a web page served by `linkbus up` at `/` of the API's address, its
//! assets embedded in the binary (`http/console/`, Leaflet vendored under
//! `http/console/vendor/`). `docs/console.md` describes what it shows and how it signs in.
//!
//! | endpoint | who | what | module |
//! |---|---|---|---|
//! | `GET /`, `GET /console/assets/[{version}/]{file}` | anyone | the page and its scripts, styles and Leaflet, compressed and cached | `page`, `assets`, `delivery` |
//! | `POST /console/session` | a dispatcher or operator key in the body | signs in: sets the session cookie, answers [`SessionInfo`] | `session` |
//! | `GET /console/session` | session | who is signed in, and the CSRF token for actions | `session` |
//! | `DELETE /console/session` | anyone | signs out (clears the cookie) | `session` |
//! | `GET /console/region` | session or key | the region: name, time zone, departments, categories, bounds, base map | `page` |
//! | `GET /console/region/communities` | session or key | the communities' boundaries, GeoJSON | `page` |
//! | `GET /console/volunteers` | session or key | every volunteer's position, availability and skills | `page` |
//! | `GET /console/events` | session or key | Server-Sent Events: `reset` (every live case, [`live_cases`]), then `case` ([`CaseSummary`]) per change | `events` |
//!
//! [`Console`] (module `state`) is started once with the service; the board's data shapes are in
//! module `board`. Cases themselves are read and acted on through the HTTP API
//! (`/api/cases/{id}`, `/api/cases/{id}/actions`), which takes the session cookie in place of a
//! key ([`crate::state::ApiState::with_console`]).
//!
//! **Sessions** (signed and checked by [`crate::auth`]). EventSource cannot send an `Authorization` header,
//! so the page exchanges the dispatcher's key for a cookie: `linkbus_session`, `HttpOnly`
//! (scripts cannot read it), `SameSite=Strict` (no other site's page sends it), `Path=/`,
//! `Max-Age` of `[console].session_hours`, `Secure` with `[console].secure_cookie`. It is signed
//! under a secret kept in the `linkbus_console` KV bucket (made once, shared by every replica,
//! kept across restarts, so a console survives a restart of the server). A request that changes
//! anything (`POST`) with the cookie must also carry `X-Linkbus-Csrf`, a token derived from the
//! cookie that only a page of this origin can read (`GET /console/session`), so no other page
//! can act with a dispatcher's cookie even in a browser without `SameSite`.

mod assets;
mod board;
pub(crate) mod delivery;
mod events;
mod labels;
pub(crate) mod page;
mod session;
mod state;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;

pub use self::board::{CaseSummary, live_cases};
pub use self::session::SessionInfo;
use self::state::ConsoleState;
pub use self::state::{BUCKET_CONSOLE, Console, bucket_secret};
use crate::auth::Auth;

/// The console's routes, checking callers with `auth`; where `console` is `None` (the console is
/// off) they answer 404.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>(console: Option<Arc<Console>>, auth: Auth) -> Router<S> {
    Router::new()
        .route("/", get(page::index))
        .route("/console/assets/{*path}", get(page::asset))
        .route("/console/session", get(session::whoami).post(session::login).delete(session::logout))
        .route("/console/region", get(page::region))
        .route("/console/region/communities", get(page::region))
        .route("/console/volunteers", get(page::volunteers))
        .route("/console/events", get(events::events))
        .with_state(ConsoleState { console, auth })
}
