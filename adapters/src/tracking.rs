//! The resident's tracking proof: every case gets a tracking token at intake, handed out in the
//! receipt (the Open311 answer, the CAD / CAP / commerce receipts, the grid's batch answer) with
//! the link of its tracking page (`/track/<case id>?t=<token>`) and of that link's QR code, so
//! the source system can pass them on to the resident.
//!
//! The token is keyed, not stored: the first 128 bits of HMAC-SHA256 under a secret kept in a
//! KV bucket (made once, shared by every replica, kept across restarts; `linkbus up` keeps it in
//! the console's bucket), over the case id. So the case record holds nothing a reader of it could
//! track the case with, any replica and a restarted one honour every token ever handed out, and a
//! report posted twice (a retry) gets the same token again. Checking it
//! ([`Tracking::verify`]) takes constant time.

use hmac::{Hmac, Mac};
use linkbus_wire::CaseRecord;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the MAC kept as the token (128 bits: unguessable, and short enough for a link).
const TOKEN_BYTES: usize = 16;
/// What the MAC covers before the case id, so this key signs nothing else by accident.
const DOMAIN: &[u8] = b"linkbus-track\0";

/// Makes and checks tracking tokens, and the links of the tracking page.
#[derive(Clone)]
pub struct Tracking {
    key: [u8; 32],
    /// The public base URL of the page (`[api].public_url`), without a trailing `/`; empty: links
    /// are relative (`/track/…`).
    base: String,
}

impl std::fmt::Debug for Tracking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracking").field("base", &self.base).finish_non_exhaustive()
    }
}

/// What a receipt says of a new case's tracking page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TrackingLink {
    /// The case's tracking token (the proof its page asks for).
    pub token: String,
    /// The tracking page, the token in its query.
    pub url: String,
    /// That link as a QR code (SVG).
    pub qr: String,
}

impl Tracking {
    /// Tokens under `key`, links under `public_url` (e.g. `https://linkbus.example.gov`).
    pub fn new(key: [u8; 32], public_url: &str) -> Self {
        Self { key, base: public_url.trim_end_matches('/').to_owned() }
    }

    fn mac(&self, case_id: &str) -> HmacSha256 {
        let mut mac =
            <HmacSha256 as Mac>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!("HMAC takes any key"));
        mac.update(DOMAIN);
        mac.update(case_id.as_bytes());
        mac
    }

    /// The tracking token of case `case_id`: 32 lowercase hex digits.
    pub fn token(&self, case_id: &str) -> String {
        hex::encode(&self.mac(case_id).finalize().into_bytes()[..TOKEN_BYTES])
    }

    /// Whether `token` is case `case_id`'s (in constant time; any malformed token is not).
    pub fn verify(&self, case_id: &str, token: &str) -> bool {
        let Ok(bytes) = hex::decode(token) else { return false };
        bytes.len() == TOKEN_BYTES && self.mac(case_id).verify_truncated_left(&bytes).is_ok()
    }

    /// The tracking page of case `case_id`, with its token.
    pub fn url(&self, case_id: &str) -> String {
        format!("{}/track/{case_id}?t={}", self.base, self.token(case_id))
    }

    /// The receipt's tracking part for case `case_id`.
    pub fn link(&self, case_id: &str) -> TrackingLink {
        let token = self.token(case_id);
        TrackingLink {
            url: format!("{}/track/{case_id}?t={token}", self.base),
            qr: format!("{}/track/{case_id}/qr.svg?t={token}", self.base),
            token,
        }
    }
}

/// What a resident is told handles case `r`: the name of the department that accepted it, else of
/// the first one responsible now (its id where the routing decision does not name it).
pub fn department_name(r: &CaseRecord) -> Option<String> {
    let id = r.accepted_by.as_ref().or(r.departments.first())?;
    let mut choices = r.decision.departments.iter().chain(&r.decision.fallbacks);
    Some(choices.find(|d| &d.id == id).map_or_else(|| id.clone(), |d| d.name.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracking() -> Tracking {
        Tracking::new([7; 32], "https://linkbus.example.gov/")
    }

    #[test]
    fn a_token_is_stable_per_case_and_differs_between_cases_and_keys() {
        let t = tracking();
        let token = t.token("open311-abc");
        assert_eq!(token.len(), 2 * TOKEN_BYTES);
        assert!(token.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "{token}");
        assert_eq!(token, t.token("open311-abc"), "a retried report gets the same token");
        assert_ne!(token, t.token("open311-abd"));
        assert_ne!(token, Tracking::new([8; 32], "").token("open311-abc"));
    }

    #[test]
    fn only_the_cases_own_token_verifies() {
        let t = tracking();
        let token = t.token("cad-1");
        assert!(t.verify("cad-1", &token));
        assert!(t.verify("cad-1", &token.to_uppercase()), "hex is read in either case");
        assert!(!t.verify("cad-2", &token));
        assert!(!t.verify("cad-1", &token[..30]), "a shorter token");
        assert!(!t.verify("cad-1", &format!("{token}00")), "a longer token");
        assert!(!t.verify("cad-1", "not hex at all, not hex at all!!"));
        assert!(!t.verify("cad-1", ""));
        let mut flipped = token.into_bytes();
        flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
        assert!(!t.verify("cad-1", &String::from_utf8(flipped).expect("hex")));
    }

    #[test]
    fn the_department_is_named_from_the_routing_decision() {
        let routed: linkbus_wire::CloudEvent<linkbus_wire::RoutedCase> =
            serde_json::from_str(include_str!("../../docs/examples/case-routed.json")).expect("example");
        let policy = linkbus_cases::lifecycle::Policy::default();
        let mut r = linkbus_cases::lifecycle::open(&routed.data, jiff::Timestamp::now(), &policy);
        assert_eq!(department_name(&r).as_deref(), Some("PUC Sewer Ops"), "the one responsible");
        r.accepted_by = Some("sf-311".into());
        assert_eq!(department_name(&r).as_deref(), Some("SF311 Customer Service Center (dispatch desk)"), "a fallback");
        r.accepted_by = Some("dpw-ops-queue".into());
        assert_eq!(department_name(&r).as_deref(), Some("dpw-ops-queue"), "not in the decision: its id");
        r.accepted_by = None;
        r.departments.clear();
        assert_eq!(department_name(&r), None);
    }

    #[test]
    fn debug_shows_the_base_url_not_the_key() {
        let shown = format!("{:?}", tracking());
        assert!(shown.contains("https://linkbus.example.gov") && !shown.contains("7, 7"), "{shown}");
    }

    #[test]
    fn links_are_under_the_public_url_without_a_double_slash() {
        let t = tracking();
        let link = t.link("cad-1");
        assert_eq!(link.url, format!("https://linkbus.example.gov/track/cad-1?t={}", link.token));
        assert_eq!(link.qr, format!("https://linkbus.example.gov/track/cad-1/qr.svg?t={}", link.token));
        assert_eq!(t.url("cad-1"), link.url);
        assert_eq!(Tracking::new([7; 32], "").url("cad-1"), format!("/track/cad-1?t={}", link.token));
    }
}
