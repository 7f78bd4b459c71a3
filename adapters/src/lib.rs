//! Adapters: one module per source-system format, each turning the foreign record into the
//! bus's case events (`linkbus_wire`), and saying clearly why a record cannot be.
//!
//! Every adapter the service runs has one shape ([`adapter`]): a `[adapters.<name>]` table
//! ([`adapter::AdapterConfig`]) that `build`s the running part ([`adapter::Adapter`]: HTTP
//! routes, and a NATS listener for some). Modules depend downwards only, in this order:
//!
//! - [`registry`]: the `[adapters]` table and the running set built from it: the one module
//!   that knows every adapter.
//! - the adapters, one module each:
//!   - [`open311`]: the Open311 GeoReport v2 API of 311 / 12345 apps (public service), over HTTP.
//!   - [`grid`]: grid-management (网格化管理) inspection and patrol reports, over NATS and as
//!     batch files over HTTP (management).
//!   - [`cap`]: OASIS CAP 1.2 alerts (XML) from warning centres, an emergency source; broadcasts
//!     to every community an alert's area touches.
//!   - [`cad`]: incidents from a dispatch (CAD) system as JSON: new, update, cancel.
//!   - [`commerce`]: order webhooks of commercial platforms, signed with HMAC-SHA256.
//! - [`messages`]: what CAP, CAD and commerce share: a message is a new case or a source update,
//!   answered with a receipt, over HTTP and NATS alike.
//! - [`adapter`]: the adapter trait, what building and serving an adapter is given, and the
//!   configuration and start-up errors.
//! - [`intake`]: what every adapter shares, knowing none: publishing under the source's own id,
//!   source updates applied to the case book, dead letters, one error type answered as the one
//!   error body of linkbus, and what HTTP adapters ask of the API serving them
//!   ([`intake::Gate`]).
//! - [`tracking`]: each case's tracking token and the links of its tracking page, for the
//!   receipts (the page itself is served by `linkbus-http`).
//! - [`vocabulary`]: a source's category vocabulary mapped to bus categories in configuration.
//! - [`metrics`]: what the adapters count (reports by outcome, dead letters).
//! - [`kind`]: which adapter (the metrics' label, the dead letters' stage, the table's name).
//! - [`web`]: HTTP helpers (caller's key and address, bounded bodies, an XML writer).
//! - [`sf311`]: San Francisco 311 service requests (the DataSF CSV export), read for
//!   `linkbus replay` and the region builder: a file format, not an adapter of the service.

pub mod adapter;
pub mod cad;
pub mod cap;
pub mod commerce;
pub mod grid;
pub mod intake;
pub mod kind;
pub mod messages;
pub mod metrics;
pub mod open311;
pub mod registry;
pub mod sf311;
pub mod tracking;
pub mod vocabulary;
pub mod web;

/// Cuts a text field to the bus's limit ([`linkbus_wire::MAX_TEXT_LEN`]) on a character
/// boundary: sources' long texts are kept, shortened, rather than refused.
pub fn clip(text: String) -> String {
    linkbus_wire::truncated(text, linkbus_wire::MAX_TEXT_LEN)
}

/// Turns free text into a category token: lowercase ASCII letters and digits, runs of anything
/// else folded into one `_`, e.g. `"Street and Sidewalk Cleaning"` → `street_and_sidewalk_cleaning`.
pub fn category_token(label: &str) -> String {
    let mut out = String::with_capacity(label.len());
    for c in label.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') && !out.is_empty() {
            out.push('_');
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::category_token;

    #[test]
    fn tokens() {
        assert_eq!(category_token("Street and Sidewalk Cleaning"), "street_and_sidewalk_cleaning");
        assert_eq!(category_token("311 External Request"), "311_external_request");
        assert_eq!(category_token("Blocked Street or SideWalk"), "blocked_street_or_sidewalk");
        assert_eq!(category_token(" -- "), "");
    }
}
