//! What a receiver checks: the headers of each POST, and its signature (HMAC-SHA256 over the
//! timestamp and the body).

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Header: the message's `Nats-Msg-Id`, stable across retries.
pub const HEADER_WEBHOOK_ID: &str = "Linkbus-Webhook-Id";
/// Header: unix seconds when the attempt was made; part of the signed bytes.
pub const HEADER_TIMESTAMP: &str = "Linkbus-Timestamp";
/// Header: `sha256=<hex HMAC-SHA256 over "<timestamp>.<body>">`.
pub const HEADER_SIGNATURE: &str = "Linkbus-Signature";
/// Header: the attempt number, from 1.
pub const HEADER_ATTEMPT: &str = "Linkbus-Attempt";
/// Content type of every POST: a CloudEvent in JSON structured mode.
pub const CONTENT_TYPE: &str = "application/cloudevents+json";
/// How far a receiver should let `Linkbus-Timestamp` be from its clock ([`verify`]).
pub const TIMESTAMP_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// `Linkbus-Signature` for a body sent at `timestamp`: `sha256=` and the lowercase hex
/// HMAC-SHA256, keyed with `secret`, of `"<timestamp>.<body>"`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(mac(secret, timestamp, body).finalize().into_bytes()))
}

/// What a receiver does with a request ([module docs](super)): true when `signature` is the
/// signature of `body` at `timestamp` (the header values as received) with `secret`, compared in
/// constant time, and `timestamp` is within [`TIMESTAMP_TOLERANCE`] of `now` (unix seconds).
pub fn verify(secret: &[u8], timestamp: &str, body: &[u8], signature: &str, now: i64) -> bool {
    let Ok(ts) = timestamp.parse::<i64>() else { return false };
    if ts.to_string() != timestamp || now.abs_diff(ts) > TIMESTAMP_TOLERANCE.as_secs() {
        return false;
    }
    let Some(given) = signature.strip_prefix("sha256=").and_then(|h| hex::decode(h).ok()) else { return false };
    mac(secret, ts, body).verify_slice(&given).is_ok()
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("hmac accepts any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_reject_tampering_and_stale_timestamps() {
        let body = br#"{"id":"x"}"#;
        let sig = sign(b"s3cret", 1_700_000_000, body);
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64);
        assert!(verify(b"s3cret", "1700000000", body, &sig, 1_700_000_100));
        assert!(!verify(b"other", "1700000000", body, &sig, 1_700_000_100));
        assert!(!verify(b"s3cret", "1700000000", br#"{"id":"y"}"#, &sig, 1_700_000_100));
        assert!(!verify(b"s3cret", "1700000001", body, &sig, 1_700_000_100));
        assert!(!verify(b"s3cret", "1700000000", body, &sig, 1_700_000_000 + 301));
        assert!(!verify(b"s3cret", "01700000000", body, &sig, 1_700_000_100));
    }

    #[test]
    fn signature_matches_a_known_vector() {
        // python3 -c 'import hmac, hashlib; print(hmac.new(b"s3cret", b"1700000000.{\"id\":\"x\"}", hashlib.sha256).hexdigest())'
        assert_eq!(
            sign(b"s3cret", 1_700_000_000, br#"{"id":"x"}"#),
            "sha256=2382c1d0968a5e57238c68de957f44d87e83d3049a5588ec251442ca372b8aec"
        );
    }
}
