//! The OpenAPI 3.1 document of the HTTP API, served at `/api/openapi.json` and committed as
//! `docs/openapi.json` (a test checks the two agree; `UPDATE_OPENAPI=1` rewrites the file).
//!
//! Its schemas are generated from the Rust types: responses as they serialize, request bodies as
//! they deserialize, the error body from [`linkbus_wire::http_error::ErrorBody`], the one every
//! endpoint answers with. The paths and their prose are written here.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use linkbus_wire::http_error::ErrorBody;
use linkbus_wire::{Action, CaseRecord};
use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

use crate::api::{
    CaseList, DEFAULT_LIMIT, DeliveryList, DepartmentStatsList, IssueRequest, MAX_LIMIT, MAX_REASON_CHARS, MAX_REPEATS,
    PublicCase, RankingTable, RatingRequest, ReadyBody, RepeatList, ReportList, StatsTable, TrackRating, TrackRequest,
};
use linkbus_cases::book::{MAX_QUERY_CHARS, MIN_PHONE_DIGITS, MIN_QUERY_CHARS};

/// `GET /api/openapi.json`: [`document`], rendered once.
pub(crate) async fn serve() -> Response {
    static DOCUMENT: LazyLock<String> = LazyLock::new(|| document().to_string());
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT.as_str()).into_response()
}

/// The OpenAPI 3.1 document of the API and of the adapters' routes.
pub fn document() -> Value {
    let settings = || SchemaSettings::draft2020_12().with(|s| s.definitions_path = "/components/schemas".into());
    let mut out = settings().for_serialize().into_generator();
    let case_list = out.subschema_for::<CaseList>();
    let case_record = out.subschema_for::<CaseRecord>();
    let repeat_list = out.subschema_for::<RepeatList>();
    let public_case = out.subschema_for::<PublicCase>();
    let delivery_list = out.subschema_for::<DeliveryList>();
    let stats_list = out.subschema_for::<DepartmentStatsList>();
    let stats_table = out.subschema_for::<StatsTable>();
    let ranking_table = out.subschema_for::<RankingTable>();
    let report = out.subschema_for::<linkbus_cases::supervision::MonthlyReport>();
    let report_list = out.subschema_for::<ReportList>();
    let public_report = out.subschema_for::<linkbus_cases::supervision::PublicReport>();
    let error_body = out.subschema_for::<ErrorBody>();
    let ready_body = out.subschema_for::<ReadyBody>();
    let receipt = out.subschema_for::<linkbus_adapters::intake::Receipt>();
    let grid_batch = out.subschema_for::<linkbus_adapters::grid::BatchResult>();
    let volunteer_out = VolunteerSchemas {
        issued: out.subschema_for::<crate::volunteer::Issued>(),
        me: out.subschema_for::<crate::volunteer::Me>(),
        status: out.subschema_for::<linkbus_wire::VolunteerStatus>(),
        offer: out.subschema_for::<crate::volunteer::OfferView>(),
        history: out.subschema_for::<crate::volunteer::History>(),
        reply: out.subschema_for::<linkbus_wire::ActionReply>(),
        update: schemars::Schema::default(),
        error_body: error_body.clone(),
    };
    let mut schemas = out.take_definitions(true);
    let mut into = settings().for_deserialize().into_generator();
    let action = into.subschema_for::<Action>();
    let rating = into.subschema_for::<RatingRequest>();
    let volunteers = volunteer_paths(VolunteerSchemas {
        update: into.subschema_for::<crate::volunteer::StatusUpdate>(),
        ..volunteer_out
    });
    let track_request = into.subschema_for::<TrackRequest>();
    let track_rating = into.subschema_for::<TrackRating>();
    let issue_request = into.subschema_for::<IssueRequest>();
    for (name, schema) in into.take_definitions(true) {
        match schemas.get(&name) {
            Some(existing) if *existing != schema => {
                panic!("schema {name} differs between requests and responses: name one of them")
            }
            _ => {
                schemas.insert(name, schema);
            }
        }
    }

    let body = |description: &str, schema: &schemars::Schema| json!({ "description": description, "content": { "application/json": { "schema": schema } } });
    let error = |description: &str| body(description, &error_body);
    let unauthorized = error("No `Authorization: Bearer <key>` header, or an unknown key (`unauthorized`).");
    let not_found = |what: &str| error(&format!("No such {what} (`not_found`)."));
    let rate_limited = error(
        "Too many requests with this key, or from this address without a valid key (`rate_limited`); `Retry-After` says in how many seconds to retry.",
    );
    let too_large = error("The body is larger than 64 KiB (`too_large`).");
    let unavailable = error(
        "The case store is unavailable, or the request took longer than `[api].request_timeout_secs` (`unavailable`); try again.",
    );
    let id_param = |name: &str, description: &str| json!({ "name": name, "in": "path", "required": true, "description": description, "schema": { "type": "string" } });
    let query = |name: &str, description: &str, schema: Value| json!({ "name": name, "in": "query", "required": false, "description": description, "schema": schema });
    let language = json!({ "name": "Accept-Language", "in": "header", "required": false, "description": "The language of the decision's `explanation`: any `zh` tag reads Chinese, any `en` tag English, with the region's names of categories, departments and areas (rendered from the decision's `reasons`; the answer's `Content-Language` says which). Without it, the English sentences stored with the decision.", "schema": { "type": "string" } });
    let forbidden_cases =
        |more: &str| error(&format!("A source key, which may use only `/api/requests/…`{more} (`forbidden`)."));

    // The answers of an endpoint about one case, `ok` when it is found and visible.
    let of_one_case = |ok: Value| {
        json!({
            "200": ok,
            "401": unauthorized,
            "403": forbidden_cases(", or the case is another department's"),
            "404": not_found("case (or not a case id)"),
            "503": unavailable
        })
    };
    let adapters = adapter_paths(&receipt, &grid_batch, &error_body);
    let mut document = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "linkbus closed-loop API",
            "version": env!("CARGO_PKG_VERSION"),
            "summary": "Cases routed by linkbus: read them, act on them (accept, reject, progress, resolve, close, reassign, cancel, escalations), and let residents follow up and rate.",
            "description": "Every endpoint but `/healthz`, `/readyz`, `/metrics`, this document, the commercial order webhooks (signed instead) and Open311 (its `api_key`) takes `Authorization: Bearer <key>`; the configuration holds SHA-256 hashes of the keys (`[[api.keys]]`, `linkbus api hash-key`). A department key sees only cases its department has or had and acts as that department; a dispatcher key sees and acts on every case; an operator key only reads; a source key (a source system's app relaying its residents' follow-ups and ratings) may only read and rate requests under `/api/requests/…`, those of the CloudEvents source it speaks for (`[[api.keys]] source`), and post to its adapter (`docs/adapters.md`). Webhook deliveries and department figures are read with a dispatcher or operator key, or a department key for its own. Every action is recorded in the case's timeline with its actor. The server closes a connection that sends no complete request head within `[api].header_timeout_secs` (an idle keep-alive connection too), answers 503 to a request whose body and answer take longer than `[api].request_timeout_secs`, and holds at most `[api].max_connections` (closing the longest-idle one for a new one). Errors are `ErrorBody`: `unauthorized` 401, `forbidden` 403, `not_found` 404, `conflict` 409 (the case's state refuses the action), `invalid` 422 (malformed request), `too_large` 413, `rate_limited` 429, `unavailable` 503; the adapters' routes also answer `malformed` 400 and `unsupported_media_type` 415.",
            "license": { "name": "Apache-2.0", "identifier": "Apache-2.0" }
        },
        "security": [ { "bearer": [] } ],
        "paths": {
            "/healthz": {
                "get": {
                    "operationId": "healthz",
                    "summary": "Liveness: `ok`.",
                    "security": [],
                    "responses": {
                        "200": { "description": "Serving.", "content": { "text/plain": { "schema": { "const": "ok" } } } }
                    }
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "readyz",
                    "summary": "Readiness: NATS connected, every stream and bucket present, the region loaded.",
                    "security": [],
                    "responses": {
                        "200": body("Ready.", &ready_body),
                        "503": body("Not ready; `reason` says why.", &ready_body)
                    }
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics, text format 0.0.4 (`docs/operations.md` lists them).",
                    "security": [],
                    "responses": {
                        "200": { "description": "The metrics.", "content": { "text/plain": { "schema": { "type": "string" } } } }
                    }
                }
            },
            "/api/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document.",
                    "security": [],
                    "responses": {
                        "200": { "description": "The OpenAPI 3.1 document.", "content": { "application/json": { "schema": { "type": "object" } } } }
                    }
                }
            },
            "/api/cases": {
                "get": {
                    "operationId": "listCases",
                    "summary": "Cases, newest first, a page at a time.",
                    "description": "Every filter given must match. A department key lists only cases its department has or had, whatever the filters. A page costs what it returns; `next` is the `cursor` of the next page (same filters). Closed and cancelled cases leave the hot set `[lifecycle].closed_retention_secs` after their last change: they are listed only when asked for (`state=closed`, `state=cancelled`, `archived=true`, or a search `q`), and are still read by id.",
                    "parameters": [
                        query("q", &format!("A search, from the case book's index (not a scan), over every case ever opened, closed and archived ones included: the case id, its reports' event and source ids (a prefix of the id or of a part between `-`, `:` or spaces), the address and the reporter's name (anywhere inside); and, for a query of digits only, the reporter's phone (the whole number, how it starts or how it ends, at least {MIN_PHONE_DIGITS} digits: `138-0013 8000` and `8000` find `13800138000`). Case, spaces and punctuation aside, full-width ASCII as ASCII. {MIN_QUERY_CHARS} to {MAX_QUERY_CHARS} characters with at least {MIN_QUERY_CHARS} letters or digits, else 422. A department key finds only its own cases."), json!({ "type": "string", "minLength": MIN_QUERY_CHARS, "maxLength": MAX_QUERY_CHARS })),
                        query("state", "In this state.", json!({ "$ref": "#/components/schemas/CaseState" })),
                        query("community", "In this community (id, e.g. `mission`).", json!({ "type": "string" })),
                        query("department", "Involving this department (responsible, accepted or rejected it).", json!({ "type": "string" })),
                        query("system", "Reported by this kind of system.", json!({ "$ref": "#/components/schemas/SourceSystem" })),
                        query("since", "Created at or after (RFC 3339).", json!({ "type": "string", "format": "date-time" })),
                        query("until", "Created before (RFC 3339).", json!({ "type": "string", "format": "date-time" })),
                        query("archived", "Also closed and cancelled cases that left the hot set (read from the case book's bucket).", json!({ "type": "boolean", "default": false })),
                        query("cursor", "Start after this: the `next` of the previous page.", json!({ "type": "string" })),
                        query("limit", "At most this many.", json!({ "type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT })),
                    ],
                    "responses": {
                        "200": body("The matching cases.", &case_list),
                        "401": unauthorized,
                        "403": forbidden_cases(""),
                        "422": error("An unknown or malformed query parameter (`invalid`)."),
                        "503": unavailable
                    }
                }
            },
            "/api/cases/{id}": {
                "get": {
                    "operationId": "getCase",
                    "summary": "One case: timeline, decision with its explanation, reports, offers, ratings.",
                    "parameters": [ id_param("id", "The case id."), language ],
                    "responses": of_one_case(body("The case.", &case_record))
                }
            },
            "/api/cases/{id}/repeats": {
                "get": {
                    "operationId": "caseRepeats",
                    "summary": "Repeat reports: other cases at the same place or address.",
                    "description": format!("The other cases reported within `radius_m` (50 m) of the case or at the same address (compared folded: case, spaces and punctuation aside), created within `days` (90) of it either way; newest first, at most {MAX_REPEATS}, closed and archived ones included. From the case book's index. A department key gets only its own cases among them."),
                    "parameters": [ id_param("id", "The case id.") ],
                    "responses": of_one_case(body("The repeats.", &repeat_list))
                }
            },
            "/api/cases/{id}/actions": {
                "post": {
                    "operationId": "actOnCase",
                    "summary": "An action on a case, as the key's department or dispatcher.",
                    "description": "Departments accept or reject cases they are responsible for, and progress, resolve and close those they accepted; dispatchers reassign, cancel, close, acknowledge escalations and split merged reports. Notes of `progress`, `resolve` and `close` are shown to the reporter.",
                    "parameters": [ id_param("id", "The case id."), language ],
                    "requestBody": { "required": true, "content": { "application/json": { "schema": action } } },
                    "responses": {
                        "200": body("Done: the case afterwards.", &case_record),
                        "401": unauthorized,
                        "403": error("This key may not do this to this case (`forbidden`): an operator or source key, another department's case, or an action the role may not take."),
                        "404": not_found("case (or not a case id)"),
                        "409": error("The case's state or the loop's rules refuse it (`conflict`), e.g. accepting a case already accepted."),
                        "413": too_large,
                        "422": error("The body is not an action, or a reason, note or department the action requires is blank (`invalid`): e.g. a `cancel` or `reassign` without a reason."),
                        "503": unavailable
                    }
                }
            },
            "/api/requests/{source_id}": {
                "get": {
                    "operationId": "followUp",
                    "summary": "A resident's follow-up of their request, by the source system's id.",
                    "description": "Relayed by the resident's source system (its app) with a source key; a dispatcher or operator key may read it too, a department key may not. Rate-limited per key, and per client address for requests without a valid key (`[api].public_rate_per_minute`).",
                    "security": [ { "bearer": [] } ],
                    "parameters": [ id_param("source_id", "The request's id in the system it was reported to.") ],
                    "responses": {
                        "200": body("The public view of the case.", &public_case),
                        "401": unauthorized,
                        "403": error("A department key (`forbidden`): only source, dispatcher and operator keys read requests."),
                        "404": not_found("request"),
                        "429": rate_limited,
                        "503": unavailable
                    }
                }
            },
            "/api/requests/{source_id}/rating": {
                "post": {
                    "operationId": "rate",
                    "summary": "The resident's rating of a resolved or closed request; `solved: false` reopens it.",
                    "description": "Relayed by the resident's source system (its app) with a source key, or recorded by a dispatcher who called the resident back (回访). Recorded in the timeline as the resident's (`resident`/`reporter`); the relaying key is logged. Rate-limited per key, and per client address for requests without a valid key (`[api].public_rate_per_minute`).",
                    "security": [ { "bearer": [] } ],
                    "parameters": [ id_param("source_id", "The request's id in the system it was reported to.") ],
                    "requestBody": { "required": true, "content": { "application/json": { "schema": rating } } },
                    "responses": {
                        "200": body("Rated: the public view afterwards.", &public_case),
                        "401": unauthorized,
                        "403": error("A department or operator key (`forbidden`): only source and dispatcher keys rate."),
                        "404": not_found("request"),
                        "409": error("The case is not resolved or closed (`conflict`)."),
                        "413": too_large,
                        "422": error("The body is not a rating (`invalid`)."),
                        "429": rate_limited,
                        "503": unavailable
                    }
                }
            },
            "/api/track/{id}": {
                "post": {
                    "operationId": "track",
                    "summary": "The resident's tracking page's data: the public view of the case handling their report.",
                    "description": "No key: the body proves the caller may see the case, with its tracking token (from the receipt's link) or the last 4 digits of its reporter's phone. A wrong proof is answered as an unknown case (404). 5 wrong phone digits lock the case's phone proof for an hour (its token still works); 10 wrong proofs lock the client address (an IPv6 /64) for an hour (429). Rate-limited per client address (`[api].public_rate_per_minute`). The page itself is `GET /track/{id}`.",
                    "parameters": [ id_param("id", "The id of the resident's own case (the receipt's `case_id`), or its id in the source system (the request number).") ],
                    "requestBody": { "required": true, "content": { "application/json": { "schema": track_request } } },
                    "responses": {
                        "200": body("The public view.", &public_case),
                        "404": error("No such case, or the proof does not match it (`not_found`)."),
                        "413": too_large,
                        "422": error("Not a tracking request: neither or both proofs, or a malformed one (`invalid`)."),
                        "429": error("Locked out after wrong proofs, or too many requests from this address (`rate_limited`); `Retry-After` says in how many seconds to retry."),
                        "503": unavailable
                    }
                }
            },
            "/api/track/{id}/rating": {
                "post": {
                    "operationId": "trackRate",
                    "summary": "The resident's rating from the tracking page; `solved: false` reopens the case.",
                    "description": "Proved, counted and locked as `POST /api/track/{id}`; recorded as `POST /api/requests/{source_id}/rating` records it (the resident's, relayed by `tracking-page`).",
                    "parameters": [ id_param("id", "The id of the resident's own case.") ],
                    "requestBody": { "required": true, "content": { "application/json": { "schema": track_rating } } },
                    "responses": {
                        "200": body("Rated: the public view afterwards.", &public_case),
                        "404": error("No such case, or the proof does not match it (`not_found`)."),
                        "409": error("The case is not resolved or closed (`conflict`)."),
                        "413": too_large,
                        "422": error("Not a rating, or no single well-formed proof (`invalid`)."),
                        "429": error("Locked out after wrong proofs, or too many requests from this address (`rate_limited`)."),
                        "503": unavailable
                    }
                }
            },
            "/api/webhooks/{department}/deliveries": {
                "get": {
                    "operationId": "listWebhookDeliveries",
                    "summary": "A department's webhook deliveries, newest first: one record per message, with its status (`delivering`, `delivered`, `failed`), attempts and last error.",
                    "description": "Dispatcher and operator keys read any department's; a department key only its own.",
                    "parameters": [
                        id_param("department", "The department id (1–64 ASCII letters, digits, `-` or `_`)."),
                        query("limit", "At most this many.", json!({ "type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT })),
                    ],
                    "responses": {
                        "200": body("The deliveries (none if the department has no webhook).", &delivery_list),
                        "401": unauthorized,
                        "403": error("A source key, or another department's key (`forbidden`)."),
                        "422": error("Not a department id, or an unknown or malformed query parameter (`invalid`)."),
                        "503": error("The webhook delivery records are unavailable (`unavailable`); try again.")
                    }
                }
            },
            "/api/stats/departments": {
                "get": {
                    "operationId": "departmentStats",
                    "summary": "How each department handles its cases, for dashboards: cases, acceptances, rejections, ratings, average score, reopen rate.",
                    "description": "Dispatcher and operator keys get every department that has or had a case; a department key only its own row.",
                    "responses": {
                        "200": body("One row per department.", &stats_list),
                        "401": unauthorized,
                        "403": error("A source key (`forbidden`).")
                    }
                }
            },
            "/api/stats": {
                "get": {
                    "operationId": "supervisionStats",
                    "summary": "The supervision figures (三率, 退单率, reopen rate, overdue, times; `docs/supervision.md`) of every key of a group, per period, for the cases received in it.",
                    "description": "Dispatcher and operator keys read every group; a department key only `by=department`, its own rows. Days are the region's (`time_zone` in the answer). With `Accept: text/csv`, the rows as CSV (a header line, then one line per row, the fields of `Row`).",
                    "parameters": [
                        query("by", "Group the rows by.", json!({ "enum": ["district", "sub_district", "community", "department", "category", "system"], "default": "sub_district" })),
                        query("period", "One row per key per day, ISO week or month.", json!({ "enum": ["day", "week", "month"], "default": "day" })),
                        query("from", "The periods whose first day is on or after this day (`YYYY-MM-DD`); default: 30 days before `to`.", json!({ "type": "string", "format": "date" })),
                        query("to", &format!("… and on or before this day; default: today. At most {} days after `from`.", crate::api::MAX_SPAN_DAYS), json!({ "type": "string", "format": "date" })),
                    ],
                    "responses": {
                        "200": {
                            "description": "The rows.",
                            "content": {
                                "application/json": { "schema": stats_table },
                                "text/csv": { "schema": { "type": "string" } }
                            }
                        },
                        "401": unauthorized,
                        "403": error("A source key, or a department key asking for another group than `department` (`forbidden`)."),
                        "422": error("An unknown group or period, a malformed day, `from` after `to` or too far before it, an unknown or repeated parameter (`invalid`).")
                    }
                }
            },
            "/api/stats/ranking": {
                "get": {
                    "operationId": "supervisionRanking",
                    "summary": "The 街道 (or communities, districts) of a month ranked by a rate, best first, each with the month before and the change.",
                    "description": "Dispatcher and operator keys. For `return_rate` and `reopen_rate` lower is better; places without the rate (nothing to divide by) come last, unranked.",
                    "parameters": [
                        query("rate", "Rank by this rate.", json!({ "enum": ["response_rate", "resolution_rate", "satisfaction_rate", "return_rate", "reopen_rate"], "default": "satisfaction_rate" })),
                        query("month", "`YYYY-MM`; default: this month.", json!({ "type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$" })),
                        query("by", "Rank these places.", json!({ "enum": ["sub_district", "community", "district"], "default": "sub_district" })),
                    ],
                    "responses": {
                        "200": body("The ranking.", &ranking_table),
                        "401": unauthorized,
                        "403": error("A source or department key (`forbidden`)."),
                        "422": error("An unknown rate or group, a malformed month, an unknown or repeated parameter (`invalid`).")
                    }
                }
            },
            "/api/reports": {
                "get": {
                    "operationId": "listReports",
                    "summary": "The monthly reports issued: each month's versions.",
                    "description": "Dispatcher, operator and department keys.",
                    "responses": {
                        "200": body("Every version, by month then version.", &report_list),
                        "401": unauthorized,
                        "403": error("A source key (`forbidden`)."),
                        "503": error("The reports bucket is unavailable (`unavailable`); try again.")
                    }
                }
            },
            "/api/reports/{month}": {
                "get": {
                    "operationId": "getReport",
                    "summary": "A month's report as issued: every group's rows of the month, frozen when it was issued (later events change the live figures, not the report).",
                    "description": "Dispatcher and operator keys read all of it; a department key only its own row of `department`.",
                    "parameters": [
                        id_param("month", "`YYYY-MM`."),
                        query("version", "This version; default: the latest.", json!({ "type": "integer", "minimum": 1 })),
                    ],
                    "responses": {
                        "200": body("The report.", &report),
                        "401": unauthorized,
                        "403": error("A source key (`forbidden`)."),
                        "404": not_found("report (of this month, or this version)"),
                        "422": error("A malformed month or version, an unknown parameter (`invalid`)."),
                        "503": error("The reports bucket is unavailable (`unavailable`); try again.")
                    }
                },
                "post": {
                    "operationId": "issueReport",
                    "summary": "Issues a closed month's figures as its next version: version 1, or a correction with its reason. A version is never overwritten.",
                    "description": "Dispatcher keys. The month must be over in the region's time zone.",
                    "parameters": [ id_param("month", "`YYYY-MM`.") ],
                    "requestBody": {
                        "required": false,
                        "description": format!("`reason` (at most {MAX_REASON_CHARS} characters): required for a correction."),
                        "content": { "application/json": { "schema": issue_request } }
                    },
                    "responses": {
                        "200": body("The version issued.", &report),
                        "401": unauthorized,
                        "403": error("Not a dispatcher key (`forbidden`)."),
                        "409": error("The month is not over, or another version was issued at the same moment (`conflict`)."),
                        "422": error("A malformed month or body, a correction without a reason, a reason too long (`invalid`)."),
                        "503": error("The reports bucket is unavailable (`unavailable`); try again.")
                    }
                }
            },
            "/public/stats/{month}": {
                "get": {
                    "operationId": "publicStats",
                    "summary": "The public export (公共信息定期发布): the month's latest report by 街道 and by category, no group with fewer than `min_count` cases, nothing about any person or case.",
                    "description": "Anyone, where `[api.public_stats]` enables it; rate-limited per client address like the residents' endpoints. With `Accept: text/csv`, the rows of `by` as CSV.",
                    "security": [],
                    "parameters": [
                        id_param("month", "`YYYY-MM`."),
                        query("by", "The rows of the CSV.", json!({ "enum": ["sub_district", "category"], "default": "sub_district" })),
                    ],
                    "responses": {
                        "200": {
                            "description": "The public figures.",
                            "content": {
                                "application/json": { "schema": public_report },
                                "text/csv": { "schema": { "type": "string" } }
                            }
                        },
                        "404": not_found("report of this month, or the export is not enabled"),
                        "422": error("A malformed month, an unknown parameter (`invalid`)."),
                        "429": rate_limited,
                        "503": error("The reports bucket is unavailable (`unavailable`); try again.")
                    }
                }
            }
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key configured (as its SHA-256) under `[[api.keys]]`."
                },
                "volunteer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A volunteer's credential, `<volunteer id>.<64 hex digits>`, issued by `POST /api/volunteers/{id}/credential`."
                }
            }
        }
    });
    if let (Some(paths), Value::Object(adapters)) = (document["paths"].as_object_mut(), adapters) {
        paths.extend(adapters);
    }
    if let (Some(paths), Value::Object(volunteers)) = (document["paths"].as_object_mut(), volunteers) {
        paths.extend(volunteers);
    }
    document
}

/// The schemas the volunteers' endpoints answer and take.
struct VolunteerSchemas {
    issued: schemars::Schema,
    me: schemars::Schema,
    status: schemars::Schema,
    offer: schemars::Schema,
    history: schemars::Schema,
    reply: schemars::Schema,
    update: schemars::Schema,
    error_body: schemars::Schema,
}

/// The volunteers' app's API ([`crate::volunteer`]): credentials, issued by dispatchers and
/// operators; and what a volunteer's credential may do, all of it about that volunteer only.
fn volunteer_paths(s: VolunteerSchemas) -> Value {
    let body = |description: &str, schema: &schemars::Schema| json!({ "description": description, "content": { "application/json": { "schema": schema } } });
    let error = |description: &str| body(description, &s.error_body);
    let credential =
        error("No `Authorization: Bearer <credential>` header, or a credential unknown or revoked (`unauthorized`).");
    let case_param = json!({ "name": "case_id", "in": "path", "required": true, "description": "The case offered.", "schema": { "type": "string" } });
    let volunteer_param = json!({ "name": "id", "in": "path", "required": true, "description": "The volunteer's id.", "schema": { "type": "string" } });
    let small_body =
        |schema: Value| json!({ "required": true, "content": { "application/json": { "schema": schema } } });
    let volunteer_security = json!([ { "volunteer": [] } ]);
    json!({
        "/api/volunteers/{id}/credential": {
            "post": {
                "operationId": "issueVolunteerCredential",
                "summary": "Issues (or replaces) a volunteer's credential for the volunteers' app; answered this once.",
                "description": "Dispatcher or operator keys. Only the credential's SHA-256 is kept, in the `linkbus_volunteer_keys` KV bucket, so every replica honours it at once and after a restart; an earlier credential of the volunteer stops working.",
                "parameters": [ volunteer_param ],
                "responses": {
                    "201": body("The credential.", &s.issued),
                    "401": error("No key, or an unknown one (`unauthorized`)."),
                    "403": error("A department or source key (`forbidden`)."),
                    "404": error("The volunteers bucket has no such volunteer (`not_found`)."),
                    "422": error("Not a volunteer id (`invalid`)."),
                    "503": error("The bucket is unavailable (`unavailable`); try again.")
                }
            },
            "delete": {
                "operationId": "revokeVolunteerCredential",
                "summary": "Revokes a volunteer's credential: every replica refuses it from now on.",
                "parameters": [ volunteer_param ],
                "responses": {
                    "204": { "description": "Revoked." },
                    "401": error("No key, or an unknown one (`unauthorized`)."),
                    "403": error("A department or source key (`forbidden`)."),
                    "404": error("The volunteer has no credential (`not_found`).")
                }
            }
        },
        "/api/volunteer/me": {
            "get": {
                "operationId": "volunteerMe",
                "summary": "The volunteer's status, the region's skills, and its offers in the last hour against the hourly cap.",
                "security": volunteer_security,
                "responses": { "200": body("The volunteer.", &s.me), "401": credential }
            }
        },
        "/api/volunteer/me/status": {
            "put": {
                "operationId": "volunteerStatus",
                "summary": "On or off duty, skills, the phone's position: put in the volunteers bucket the routers follow.",
                "description": "Skills must be from the region's list and the position inside the region; at most 6 updates a minute.",
                "security": volunteer_security,
                "requestBody": { "required": true, "content": { "application/json": { "schema": s.update } } },
                "responses": {
                    "200": body("The status put.", &s.status),
                    "401": credential,
                    "422": error("Not a status update, a skill the region does not call for, or a position outside the region (`invalid`)."),
                    "429": error("More than 6 updates a minute (`rate_limited`); `Retry-After` says when.")
                }
            }
        },
        "/api/volunteer/me/offers": {
            "get": {
                "operationId": "volunteerOffers",
                "summary": "Server-Sent Events: `reset` (`{offers: [OfferView], now}`, the open offers and open cases taken), then `offer` (an `OfferView`) per change of a case offered to the volunteer.",
                "security": volunteer_security,
                "responses": {
                    "200": { "description": "The event stream; an `OfferView` is as follows.", "content": { "text/event-stream": { "schema": s.offer } } },
                    "401": credential
                }
            }
        },
        "/api/volunteer/me/offers/{case_id}/answer": {
            "post": {
                "operationId": "volunteerAnswer",
                "summary": "Accepts or declines an offer, as `volunteer.<id>.answer` does; an accept answers where to go and the nearest facility.",
                "security": volunteer_security,
                "parameters": [ case_param ],
                "requestBody": small_body(json!({ "type": "object", "properties": { "accept": { "type": "boolean" } }, "required": ["accept"], "additionalProperties": false })),
                "responses": {
                    "200": body("Done.", &s.reply),
                    "401": credential,
                    "403": error("The case was not offered to this volunteer (`forbidden`)."),
                    "404": error("No such case (`not_found`)."),
                    "409": error("The offer is no longer open, e.g. another volunteer took the case (`conflict`)."),
                    "422": error("Not an answer (`invalid`).")
                }
            }
        },
        "/api/volunteer/me/offers/{case_id}/step": {
            "post": {
                "operationId": "volunteerStep",
                "summary": "The volunteer who took the case reports arriving, then handing over (`volunteer_arrived`, `volunteer_handed_over` in the timeline).",
                "security": volunteer_security,
                "parameters": [ case_param ],
                "requestBody": small_body(json!({ "type": "object", "properties": { "step": { "enum": ["arrived", "handed_over"] } }, "required": ["step"], "additionalProperties": false })),
                "responses": {
                    "200": body("Done.", &s.reply),
                    "401": credential,
                    "403": error("This volunteer did not take the case (`forbidden`)."),
                    "404": error("No such case (`not_found`)."),
                    "409": error("Out of order, repeated, or the case has ended (`conflict`)."),
                    "422": error("Not a step (`invalid`).")
                }
            }
        },
        "/api/volunteer/me/history": {
            "get": {
                "operationId": "volunteerHistory",
                "summary": "Every case offered to the volunteer, newest first, and its hours (acceptance to handing over or the case's end).",
                "security": volunteer_security,
                "responses": { "200": body("The history.", &s.history), "401": credential }
            }
        }
    })
}

/// The source-system adapters' HTTP routes, served beside the API where `[adapters.*]` enables
/// them. Their formats are foreign (CAP XML, a CAD system's JSON, signed order webhooks, grid
/// batches, Open311's forms) and `docs/adapters.md` describes them; these entries say where they
/// are, who may call them, and what they answer.
fn adapter_paths(receipt: &schemars::Schema, grid_batch: &schemars::Schema, error_body: &schemars::Schema) -> Value {
    let json_body = |description: &str, schema: &schemars::Schema| json!({ "description": description, "content": { "application/json": { "schema": schema } } });
    let error = |description: &str| json_body(description, error_body);
    let text = |media: &[&str], description: &str| {
        let content: serde_json::Map<String, Value> =
            media.iter().map(|m| ((*m).to_owned(), json!({ "schema": { "type": "string" } }))).collect();
        json!({ "required": true, "description": description, "content": content })
    };
    // What CAP, CAD and order events answer, and the refusals particular to each.
    let answers = |more: serde_json::Map<String, Value>| {
        let mut responses = serde_json::Map::new();
        responses.insert(
            "202".into(),
            json_body(
                "Reported: a new case (`reported`), or one already reported (`duplicate`: still one case).",
                receipt,
            ),
        );
        responses.insert(
            "200".into(),
            json_body(
                "An update, resolution or cancellation of the source's earlier case, with its state afterwards.",
                receipt,
            ),
        );
        responses.insert("400".into(), error("Not readable (`malformed`); kept in the adapter's dead letters."));
        responses.insert("413".into(), error("A body over 256 KiB, a CAP alert over 4 MiB (`too_large`)."));
        responses.insert("415".into(), error("Another content type (`unsupported_media_type`)."));
        responses.insert(
            "422".into(),
            error("Readable but refused (`invalid`): the reason says which rule; kept in the adapter's dead letters."),
        );
        responses.insert("503".into(), error("NATS unavailable (`unavailable`): send again."));
        responses.extend(more);
        Value::Object(responses)
    };
    let intake = |name: &str, section: &str, request: Value, more: serde_json::Map<String, Value>| {
        json!({ "post": {
            "operationId": format!("adapter{name}"),
            "summary": format!("The {name} adapter: see docs/adapters.md#{section}."),
            "description": "Present only where the adapter is configured. Refusals are kept in `deadletter.adapter_<adapter>` with the reason.",
            "requestBody": request,
            "responses": answers(more)
        }})
    };
    let keyed = |source: &str| -> serde_json::Map<String, Value> {
        [
            ("401".to_owned(), error("No key, an unknown one, or not a source key (`unauthorized`).")),
            ("403".to_owned(), error(&format!("A source key of another source than `{source}` (`forbidden`)."))),
        ]
        .into_iter()
        .collect()
    };
    let mut cad = keyed("/cad");
    cad.insert("404".into(), error("An update or cancellation of an incident linkbus has no case for (`not_found`)."));
    cad.insert("409".into(), error("An update of a cancelled incident (`conflict`)."));
    let commerce: serde_json::Map<String, Value> = [
        ("401".to_owned(), error("An unknown platform, no or a wrong `Linkbus-Signature`, or a `Linkbus-Timestamp` more than 5 minutes off (`unauthorized`).")),
        ("404".to_owned(), error("A status change of an order linkbus has no case for (`not_found`).")),
        ("409".to_owned(), error("A `Linkbus-Delivery` id seen in the last 10 minutes (a replay), or a status change of a closed case (`conflict`).")),
    ]
    .into_iter()
    .collect();
    let open311 = |param: &str, summary: &str| json!({ "summary": summary, "parameters": [ { "name": param, "in": "path", "required": true, "description": "With the format's extension: `.json` or `.xml`.", "schema": { "type": "string" } } ], "description": "Open311 GeoReport v2 (docs/adapters.md#public-service-open311-georeport-v2): `{resource}` is `services.json`, `services.xml`, `requests.json` or `requests.xml`; `api_key` (form, query string or `Authorization: Bearer`) is a source key of the Open311 adapter's source, or for reading a dispatcher's or operator's. Answers and errors are the spec's, in the format the extension names (errors: a list of `{code, description}`: 400 a field missing or out of range, 403 no or a wrong key, 404 unknown, 405 another method, 413 over 64 KiB, 415 not a form, 429 over the rate limit (per key; per address without a valid key), 503 NATS unavailable).", "security": [] });
    json!({
        "/api/adapters/cap": intake("Cap", "emergency-cap-12", text(&["application/cap+xml", "application/xml", "text/xml"], "An OASIS CAP 1.2 alert (in the encoding its BOM or XML declaration names); `Update`/`Cancel` with `references` act on the source's earlier case, or, when linkbus never saw it, report the case they describe (flagged `unseen_original`)."), keyed("/cap")),
        "/api/adapters/cad": intake("Cad", "emergency-cad-incidents", text(&["application/json"], "A CAD incident (`kind` `new`, `update` or `cancel`)."), cad),
        "/api/adapters/commerce/{platform}/orders": {
            "post": {
                "operationId": "adapterCommerceOrder",
                "summary": "A commercial platform's order event, signed (`Linkbus-Timestamp`, `Linkbus-Signature`, `Linkbus-Delivery`): see docs/adapters.md#commercial-order-webhooks.",
                "description": "Present only where `[[adapters.commerce.platforms]]` are configured. `created` opens the case `commerce-<platform>-<order_id>`; `accepted` and `in_progress` are recorded on its timeline; `delivered` and `completed` resolve it; `cancelled` withdraws it.",
                "security": [],
                "parameters": [ { "name": "platform", "in": "path", "required": true, "description": "The platform's id in `[[adapters.commerce.platforms]]`.", "schema": { "type": "string" } } ],
                "requestBody": text(&["application/json"], "The order event (JSON)."),
                "responses": answers(commerce)
            }
        },
        "/api/adapters/grid/batch": {
            "post": {
                "operationId": "adapterGridBatch",
                "summary": "A batch of grid-management reports: a CSV file or JSON lines, one report per row (docs/adapters.md#management-grid-reports).",
                "description": "Present only where `[adapters.grid]` is configured. Each row is taken or refused on its own; refused rows are kept in `deadletter.adapter_grid`. At most `max_batch_bytes` (8 MiB) and `max_batch_rows` (10,000).",
                "requestBody": text(&["text/csv", "application/x-ndjson"], "A header row and one report per row (CSV), or one JSON report per line."),
                "responses": {
                    "200": json_body("Each row's case, or why it was refused.", grid_batch),
                    "400": error("The body could not be read (`invalid`)."),
                    "401": error("No key, or an unknown one (`unauthorized`)."),
                    "403": error("Not the grid system's source key (`forbidden`)."),
                    "413": error("Over `max_batch_bytes` (`too_large`)."),
                    "415": error("Neither `text/csv` nor `application/x-ndjson` (`invalid`)."),
                    "422": error("Not a batch at all, e.g. no header row or over `max_batch_rows` (`invalid`).")
                }
            }
        },
        "/open311/v2/{resource}": {
            "get": open311("resource", "Open311: the services, or requests by id or filters (`start_date`, `end_date`, `status`, `service_code`)."),
            "post": open311("resource", "Open311: a new service request (`requests.json` or `requests.xml`, `application/x-www-form-urlencoded`); 201 with `service_request_id`.")
        },
        "/open311/v2/services/{code}": { "get": open311("code", "Open311: one service's definition (`{code}.json` or `{code}.xml`).") },
        "/open311/v2/requests/{id}": { "get": open311("id", "Open311: one request as linkbus knows it (`{id}.json` or `{id}.xml`).") }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_openapi_document_matches_the_code() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
        let mut generated = serde_json::to_string_pretty(&document()).expect("json");
        generated.push('\n');
        if std::env::var_os("UPDATE_OPENAPI").is_some_and(|v| v == "1") {
            std::fs::write(&path, &generated).expect("write docs/openapi.json");
            return;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/openapi.json is out of date with http/src/openapi.rs; regenerate it with \
             `UPDATE_OPENAPI=1 cargo test -p linkbus-http --lib openapi::tests::committed_openapi_document_matches_the_code`"
        );
    }
}
