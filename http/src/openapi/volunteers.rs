//! The volunteers' app's part of the OpenAPI document ([`volunteer_paths`]).

use serde_json::{Value, json};

/// The schemas the volunteers' endpoints answer and take.
pub(super) struct VolunteerSchemas {
    pub(super) issued: schemars::Schema,
    pub(super) me: schemars::Schema,
    pub(super) status: schemars::Schema,
    pub(super) offer: schemars::Schema,
    pub(super) history: schemars::Schema,
    pub(super) reply: schemars::Schema,
    pub(super) update: schemars::Schema,
    pub(super) error_body: schemars::Schema,
}

/// The volunteers' app's API ([`crate::volunteer`]): credentials, issued by dispatchers and
/// operators; and what a volunteer's credential may do, all of it about that volunteer only.
pub(super) fn volunteer_paths(s: VolunteerSchemas) -> Value {
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
