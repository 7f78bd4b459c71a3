//! The HTTP API of the closed loop, served by `linkbus up` on `[api].listen`.
//!
//! | endpoint | who | what | module |
//! |---|---|---|---|
//! | `GET /api/cases` | dispatcher, department or operator key | cases, newest first, filtered by `q` (a search over ids, address, reporter's name and phone, closed cases included), `state`, `community`, `department`, `system`, `since`, `until`, `limit` | `cases` |
//! | `GET /api/cases/{id}/repeats` | dispatcher, department or operator key | other reports within 50 m or at the same address, 90 days either way | `cases` |
//! | `GET /api/cases/{id}` | dispatcher, department or operator key | one case: timeline, decision and its explanation, reports, offers, ratings | `cases` |
//! | `POST /api/cases/{id}/actions` | dispatcher or department key | a [`linkbus_wire::Action`] (`{"action": "accept"}`…); answers the updated case | `cases` |
//! | `GET /api/requests/{source_id}` | source, dispatcher or operator key (rate-limited) | a resident's follow-up by the source system's id: a reduced, public view | `residents` |
//! | `POST /api/requests/{source_id}/rating` | source or dispatcher key (rate-limited) | the resident's rating; `solved: false` reopens the case | `residents` |
//! | `POST /api/track/{id}` | anyone with the case's tracking token or its reporter's last 4 phone digits (rate-limited, locked after misses) | the resident's tracking page's data: the same public view, of the case handling the report `{id}` | `track` |
//! | `POST /api/track/{id}/rating` | the same | the resident's rating from the tracking page; `solved: false` reopens the case | `track` |
//! | `GET /track`, `/track/{id}`, `/track/assets/{file}`, `/track/{id}/qr.svg` | anyone (the QR code: the token's holder) | the tracking page, its files, its link as a QR code | [`crate::track`] |
//! | `GET /api/webhooks/{department}/deliveries` | dispatcher, operator or that department's key | the department's webhook delivery records, newest first (`limit`) | `oversight` |
//! | `GET /api/stats/departments` | dispatcher, operator or department key | per-department figures for dashboards; a department key gets its own row only | `oversight` |
//! | `POST`, `DELETE /api/volunteers/{id}/credential` | dispatcher or operator key | issue (answered once) or revoke a volunteer's app credential | [`crate::volunteer`] |
//! | `GET /api/volunteer/me`, `PUT /api/volunteer/me/status`, `GET /api/volunteer/me/offers` (SSE), `POST /api/volunteer/me/offers/{case_id}/answer`, `POST /api/volunteer/me/offers/{case_id}/step`, `GET /api/volunteer/me/history` | that volunteer's credential | the volunteers' app: its own status, offers, answers, steps (arrived, handed over) and hours | [`crate::volunteer`] |
//! | `GET /api/stats` | dispatcher, operator or department key | supervision figures (`docs/supervision.md`) `by` district, sub_district, community, department, category or system, per `period` day, week or month, `from`–`to`, one `key`'s or all; JSON, or CSV with `Accept: text/csv`; a department key only `by=department`, its own rows | `supervision` |
//! | `GET /api/stats/ranking` | dispatcher or operator key | the 街道 (`by=sub_district`, or communities, districts) of a `month` ranked by a `rate`, each with the month before; JSON, or CSV with `Accept: text/csv` | `supervision` |
//! | `GET /api/stats/rising` | dispatcher or operator key | the categories rising in a `place` (of `by`; none: the region) in a `month` against its own previous months, with how sure | `supervision` |
//! | `GET /api/stats/repeats` | dispatcher or operator key | the addresses with several cases in a `place` in a `month` | `supervision` |
//! | `GET /api/reports` | dispatcher, operator or department key | the monthly reports issued: month and version | `reports` |
//! | `POST /api/reports/{month}` | dispatcher key | issue the closed month's figures as its next version; a correction needs `{"reason": "…"}` | `reports` |
//! | `GET /api/reports/{month}` | dispatcher, operator or department key | the month's report, latest version or `version`; a department key its own rows only | `reports` |
//! | `GET /public/stats/{month}` | anyone, where `[api.public_stats]` enables it (rate-limited) | the latest report by 街道 and category, groups below `min_count` left out; JSON, or CSV of `by` | `reports` |
//! | `GET /healthz` | anyone | `ok` | `operations` |
//! | `GET /readyz` | anyone | 200 `{"ready": true}` when NATS is connected, the streams exist and the region is loaded ([`crate::state::Readiness`]); 503 with the reason otherwise | `operations` |
//! | `GET /metrics` | anyone | the Prometheus metrics ([`crate::state::ApiState::with_metrics`]), text format 0.0.4 | `operations` |
//! | `GET /api/openapi.json` | anyone | the OpenAPI 3.1 document (committed as `docs/openapi.json`) | [`crate::openapi`] |
//! | `POST /api/adapters/cap`, `/api/adapters/cad` | source key | a CAP 1.2 alert / a CAD incident message | `linkbus_adapters::intake` |
//! | `POST /api/adapters/commerce/{platform}/orders` | the platform's HMAC signature | an order event | `linkbus_adapters::commerce` |
//!
//! **Keys** ([`crate::auth`]). `Authorization: Bearer <key>`; the configuration holds only
//! SHA-256 hashes of the keys (`[[api.keys]]`, [`crate::auth::hash_key`]). A department key sees
//! only the cases its department has or had ([`linkbus_cases::book::involves`]) and acts as that
//! department; a dispatcher key sees everything and acts as that dispatcher; an operator key only
//! reads cases (both issue and revoke volunteers' app credentials); a source key may only use the residents' endpoints and the adapters. A key whose role
//! may not use an endpoint gets 403. What may be done to a case is the lifecycle's decision
//! (`linkbus_cases::lifecycle`), which records the actor in the timeline. A request without an
//! `Authorization` header may instead carry the dispatcher console's session cookie (and, to
//! change anything, its CSRF token): see [`crate::console`].
//!
//! **Residents** reach linkbus through their source system's app (a 12345/311 app), which relays
//! their follow-ups and ratings with its source key (as Open311 requires an `api_key`); source ids
//! are sequential, so these endpoints are not open to anyone who guesses one, and they are
//! rate-limited per client IP (`[api].public_rate_per_minute`, `rate_limit`) so a leaked
//! key cannot walk the source ids quickly. A dispatcher may read a follow-up and record a rating
//! taken by phone (回访); a department key may do neither. A resident may also follow and rate their
//! own request without any key on the tracking page (`/track/…`, [`crate::track`]): proved by the
//! tracking token of their receipt or their phone's last digits, locked after repeated misses.
//!
//! **Adapters.** The source-system adapters' routes (Open311 at `/open311/v2/`, the grid batch
//! upload, CAP, CAD and commerce at `/api/adapters/…`) are merged in
//! ([`crate::state::ApiState::with_adapters`]); they take the same keys and rate limit through
//! [`linkbus_adapters::intake::Gate`], and are described in `docs/adapters.md`.
//!
//! **Errors** ([`crate::error::ApiError`]) are a [`linkbus_wire::http_error::ErrorBody`],
//! `{"error": "…", "code": "…"}`: `unauthorized` 401, `forbidden` 403, `not_found` 404,
//! `conflict` 409 (the case's state refuses the action), `invalid` 422 (the request is
//! malformed), `too_large` 413, `rate_limited` 429, `unavailable` 503 (the case store; try
//! again).

mod cases;
mod operations;
mod oversight;
mod query;
mod reports;
mod residents;
mod supervision;
mod track;

use axum::Router;
use axum::routing::{get, post};

pub(crate) use self::cases::MAX_REPEATS;
pub use self::cases::{CaseList, RepeatList, parse_action};
pub use self::operations::{ReadyBody, render};
pub use self::oversight::{DeliveryList, DepartmentStatsList};
pub(crate) use self::query::{DEFAULT_LIMIT, MAX_LIMIT};
pub(crate) use self::reports::MAX_REASON_CHARS;
pub use self::reports::{IssueRequest, ReportList};
pub use self::residents::{Deadline, PublicCase, PublicEntry, RatingRequest};
pub(crate) use self::supervision::{MAX_REPEAT_ADDRESSES, MAX_SPAN_DAYS};
pub use self::supervision::{RankingTable, RepeatTable, RisingTable, StatsTable};
pub use self::track::{TrackRating, TrackRequest};
use crate::state::ApiState;

#[cfg(test)]
pub(crate) use self::operations::METRICS_CONTENT_TYPE;

/// The API's routes (the residents' behind their rate limit), on `state`.
pub(crate) fn routes(state: &ApiState) -> Router<ApiState> {
    Router::new()
        .route("/healthz", get(operations::healthz))
        .route("/readyz", get(operations::readyz))
        .route("/metrics", get(operations::metrics))
        .route("/api/cases", get(cases::list_cases))
        .route("/api/cases/{id}", get(cases::get_case))
        .route("/api/cases/{id}/actions", post(cases::act))
        .route("/api/cases/{id}/repeats", get(cases::repeats))
        .route("/api/webhooks/{department}/deliveries", get(oversight::list_deliveries))
        .route("/api/stats/departments", get(oversight::department_stats))
        .route("/api/stats", get(supervision::stats))
        .route("/api/stats/ranking", get(supervision::ranking))
        .route("/api/stats/rising", get(supervision::rising))
        .route("/api/stats/repeats", get(supervision::repeats))
        .route("/api/reports", get(reports::list_reports))
        .route("/api/reports/{month}", get(reports::get_report).post(reports::issue))
        .merge(reports::public_routes(state))
        .merge(residents::routes(state))
        .merge(
            Router::new()
                .route("/api/track/{id}", post(track::view))
                .route("/api/track/{id}/rating", post(track::rate))
                .route_layer(axum::middleware::from_fn_with_state(state.clone(), residents::limit)),
        )
}
