//! Adapters: one module per source-system format, each turning the foreign record into the
//! bus's case events (`linkbus_bus::wire`), and saying clearly why a record cannot be.
//!
//! - [`sf311`]: San Francisco 311 service requests (the DataSF CSV export), a public-service
//!   (12345 / 311) source.
//! - [`open311`]: the Open311 GeoReport v2 API of 311 / 12345 apps (public service), over HTTP.
//! - [`grid`]: grid-management (网格化管理) inspection and patrol reports, over NATS and as
//!   batch files over HTTP (management).
//! - [`cap`]: OASIS CAP 1.2 alerts (XML) from warning centres, an emergency source; broadcasts
//!   to every community an alert's area touches.
//! - [`cad`]: incidents from a dispatch (CAD) system as JSON: new, update, cancel.
//! - [`commerce`]: order webhooks of commercial platforms, signed with HMAC-SHA256.
//! - [`vocabulary`]: a source's category vocabulary mapped to bus categories in configuration.
//! - [`intake`]: what every adapter shares: publishing under the source's own id, dead letters,
//!   source updates applied to the case book, one error type, and what HTTP adapters ask of the
//!   API serving them ([`intake::Gate`]); the CAP, CAD and commerce routes and NATS listeners.
//! - [`metrics`]: what the adapters count (reports by outcome, dead letters).
//! - [`web`]: HTTP helpers (caller's key and address, bounded bodies, an XML writer).

pub mod cad;
pub mod cap;
pub mod commerce;
pub mod grid;
pub mod intake;
pub mod metrics;
pub mod open311;
pub mod sf311;
pub mod vocabulary;
pub mod web;

/// Cuts a text field to the bus's limit ([`linkbus_wire::MAX_TEXT_LEN`]) on a character
/// boundary: sources' long texts are kept, shortened, rather than refused.
pub fn clip(text: String) -> String {
    linkbus_wire::truncated(text, linkbus_wire::MAX_TEXT_LEN)
}

/// Checks an adapter's configured CloudEvents `source` (a URI reference starting with `/`, at
/// most 128 bytes) and default priority (1 to 4); the error names the field.
pub(crate) fn check_source_and_priority(source: &str, priority: u8) -> Result<(), String> {
    if !source.starts_with('/') || source.len() > 128 {
        return Err(format!("source = {source:?}: must start with '/' (a URI reference), at most 128 bytes"));
    }
    if !(1..=4).contains(&priority) {
        return Err(format!("priority = {priority}: must be 1 to 4"));
    }
    Ok(())
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
