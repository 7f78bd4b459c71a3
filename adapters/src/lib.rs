//! Adapters: one module per source-system format, each turning the foreign record into the
//! bus's case events (`linkbus_bus::wire`), and saying clearly why a record cannot be.
//!
//! - [`sf311`]: San Francisco 311 service requests (the DataSF CSV export), a public-service
//!   (12345 / 311) source.
//! - [`open311`]: the Open311 GeoReport v2 API of 311 / 12345 apps (public service), over HTTP.
//! - [`grid`]: grid-management (网格化管理) inspection and patrol reports, over NATS and as
//!   batch files over HTTP (management).
//! - [`vocabulary`]: a source's category vocabulary mapped to bus categories in configuration.
//! - [`intake`]: what every adapter shares: publishing under the source's own id, dead letters,
//!   and what HTTP adapters ask of the API serving them ([`intake::Gate`]).
//! - [`metrics`]: what the adapters count (reports by outcome, dead letters).
//! - [`web`]: HTTP helpers (caller's key and address, bounded bodies, an XML writer).

pub mod grid;
pub mod intake;
pub mod metrics;
pub mod open311;
pub mod sf311;
pub mod vocabulary;
pub mod web;

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
