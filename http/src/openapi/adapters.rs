//! The source-system adapters' part of the OpenAPI document ([`adapter_paths`]), Open311's
//! operations among them.

use serde_json::{Value, json};

/// The source-system adapters' HTTP routes, served beside the API where `[adapters.*]` enables
/// them. Their formats are foreign (CAP XML, a CAD system's JSON, signed order webhooks, grid
/// batches, Open311's forms) and `docs/adapters.md` describes them; these entries say where they
/// are, who may call them, and what they answer.
pub(super) fn adapter_paths(
    receipt: &schemars::Schema,
    grid_batch: &schemars::Schema,
    error_body: &schemars::Schema,
    open311: &Open311Schemas,
) -> Value {
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
    let mut paths = json!({
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
        }
    });
    if let (Some(paths), Value::Object(more)) = (paths.as_object_mut(), open311_paths(open311)) {
        paths.extend(more);
    }
    paths
}

/// The schemas of the Open311 answers in JSON (the XML ones carry the same fields).
pub(super) struct Open311Schemas {
    pub(super) services: schemars::Schema,
    pub(super) created: schemars::Schema,
    pub(super) requests: schemars::Schema,
}

/// Open311 GeoReport v2 (`linkbus_adapters::open311`): one operation per resource and method, the
/// format named by the path's extension, errors the spec's list of `{code, description}`.
fn open311_paths(s: &Open311Schemas) -> Value {
    let errors = json!({ "type": "array", "items": { "$ref": "#/components/schemas/Open311Error" } });
    // JSON as `schema` says, or the spec's XML.
    let answer = |description: &str, schema: &Value| json!({ "description": description, "content": { "application/json": { "schema": schema }, "text/xml": { "schema": { "type": "string" } } } });
    let error = |description: &str| answer(&format!("{description} The spec's error list."), &errors);
    let format = json!({ "name": "format", "in": "path", "required": true, "description": "The answer's format: the path's extension.", "schema": { "$ref": "#/components/schemas/Open311Format" } });
    let api_key = |what: &str| json!({ "name": "api_key", "in": "query", "required": false, "description": format!("An API key (or `Authorization: Bearer`): {what}"), "schema": { "type": "string" } });
    let read_key = api_key(
        "needed only where `public_reads = false`: a source key of the adapter's source, a dispatcher's or an operator's.",
    );
    let code_param = json!({ "name": "service_code", "in": "path", "required": true, "description": "The service's code.", "schema": { "type": "string" } });
    let id_param = json!({ "name": "service_request_id", "in": "path", "required": true, "description": "The request's id.", "schema": { "type": "string" } });
    let filter = |name: &str, description: &str, schema: Value| json!({ "name": name, "in": "query", "required": false, "description": description, "schema": schema });
    let forbidden = error("No `api_key`, an unknown one, or one that may not do this (403, as the spec has it).");
    let rate_limited =
        error("Over the residents' rate limit (per key; per address without a valid key); `Retry-After` says when.");
    let unavailable = error("NATS is unavailable; try again.");
    let unknown = |what: &str| error(&format!("{what}."));
    let field = |description: &str| json!({ "type": "string", "description": description });
    let form = json!({
        "type": "object",
        "description": "The spec's fields; `attribute[<code>]` fields (at most 32) are kept in the case's description.",
        "properties": {
            "api_key": field("A source key speaking for the adapter's source (or `Authorization: Bearer`)."),
            "service_code": field("One of `GET services`' codes."),
            "lat": field("Latitude, in `datum` (with `long`, or an `address_string`)."),
            "long": field("Longitude, in `datum`."),
            "datum": { "type": "string", "enum": ["wgs84", "gcj02", "bd09"], "default": "wgs84", "description": "An extension: the datum of `lat`/`long`." },
            "address_string": field("The address."),
            "address_id": field("Not kept."),
            "description": field("What is wrong, at most 4000 characters."),
            "first_name": field("The reporter's first name."),
            "last_name": field("The reporter's last name."),
            "phone": field("The reporter's phone."),
            "email": field("The reporter's email."),
            "media_url": field("A photo's URL (http or https, at most 2048 bytes), kept and answered back."),
            "device_id": field("The app's device id."),
            "account_id": field("The reporter's account in the app.")
        },
        "required": ["service_code"],
        "additionalProperties": { "type": "string" }
    });
    let common = "Open311 GeoReport v2 (docs/adapters.md#public-service-open311-georeport-v2), present where `[adapters.open311]` is configured.";
    json!({
        "/open311/v2/services.{format}": {
            "get": {
                "operationId": "open311Services",
                "summary": "Open311: the services (the configured `service_code` map and the region's public-service categories).",
                "description": common,
                "security": [],
                "parameters": [ format, read_key ],
                "responses": {
                    "200": answer("The services.", &json!(s.services)),
                    "403": forbidden,
                    "429": rate_limited
                }
            }
        },
        "/open311/v2/services/{service_code}.{format}": {
            "get": {
                "operationId": "open311ServiceDefinition",
                "summary": "Open311: one service's definition (no attributes: every service is `metadata=false`).",
                "description": common,
                "security": [],
                "parameters": [ code_param, format ],
                "responses": {
                    "200": answer("The definition.", &json!({ "type": "object", "properties": { "service_code": { "type": "string" }, "attributes": { "type": "array", "items": { "type": "object" }, "maxItems": 0 } }, "required": ["service_code", "attributes"] })),
                    "404": unknown("No such service")
                }
            }
        },
        "/open311/v2/requests.{format}": {
            "get": {
                "operationId": "open311Requests",
                "summary": "Open311: requests by `service_request_id` (comma-separated), or those matching the filters, newest first (at most 1000).",
                "description": common,
                "security": [],
                "parameters": [
                    format,
                    read_key,
                    filter("service_request_id", "These requests (comma-separated ids); the filters are then ignored.", json!({ "type": "string" })),
                    filter("service_code", "Of this service.", json!({ "type": "string" })),
                    filter("start_date", "Requested at or after (RFC 3339); default: 90 days ago.", json!({ "type": "string", "format": "date-time" })),
                    filter("end_date", "Requested before (RFC 3339).", json!({ "type": "string", "format": "date-time" })),
                    filter("status", "`open` or `closed` (comma-separated).", json!({ "type": "string" }))
                ],
                "responses": {
                    "200": answer("The requests.", &json!(s.requests)),
                    "400": error("A malformed query or filter."),
                    "403": forbidden,
                    "429": rate_limited
                }
            },
            "post": {
                "operationId": "open311CreateRequest",
                "summary": "Open311: a new service request; the same fields posted twice are one request (a digest of them is its id) and one case (`open311-<id>`).",
                "description": common,
                "security": [],
                "parameters": [ format ],
                // Multipart is said, not listed as a second content type: openapi-python-client 0.29 emits a
                // client that does not import for an operation with two body types.
                "requestBody": { "required": true, "description": "Also taken as `multipart/form-data` with the same text fields (a file part is refused: 415).", "content": { "application/x-www-form-urlencoded": { "schema": form } } },
                "responses": {
                    "201": answer("Taken: the request's id (and its tracking link where tracking is on).", &json!(s.created)),
                    "400": error("A field missing, repeated, too long or out of range; kept in `deadletter.adapter_open311`."),
                    "403": forbidden,
                    "404": unknown("A `service_code` not among the services"),
                    "413": error("A body over 64 KiB."),
                    "415": error("Neither `application/x-www-form-urlencoded` nor `multipart/form-data`, or a file in a multipart form (post the photo's link as `media_url`)."),
                    "429": rate_limited,
                    "503": unavailable
                }
            }
        },
        "/open311/v2/requests/{service_request_id}.{format}": {
            "get": {
                "operationId": "open311Request",
                "summary": "Open311: one request, with the status linkbus knows (a list of one, as the spec has it).",
                "description": common,
                "security": [],
                "parameters": [ id_param, format, read_key ],
                "responses": {
                    "200": answer("The request.", &json!(s.requests)),
                    "400": error("A malformed query."),
                    "403": forbidden,
                    "404": unknown("No such request"),
                    "429": rate_limited
                }
            }
        }
    })
}
