//! The dispatcher console's sessions: a signed cookie standing in for a key, and the CSRF token
//! that goes with it.
//!
//! EventSource cannot send an `Authorization` header, so the console's page exchanges the
//! dispatcher's key for a cookie ([`COOKIE`]). Its value names the key's role and id and the
//! expiry, signed with HMAC-SHA-256 under a secret shared by every replica
//! (`crate::console::Console::start` keeps it in a KV bucket). The signature also covers the
//! key's hash: removing or rotating the key in the configuration ends its sessions. A request
//! that changes anything with the cookie must also carry [`CSRF_HEADER`], a token derived from
//! the cookie that only a page of this origin can read.

use axum::http::{HeaderMap, header};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::key::{Key, Principal};
use crate::config::ApiRole;

/// The session cookie's name.
pub(crate) const COOKIE: &str = "linkbus_session";
/// The header carrying the CSRF token on requests that change something.
pub(crate) const CSRF_HEADER: &str = "x-linkbus-csrf";
/// Who may sign in to the console (it shows every case): no session of another role is valid.
pub(crate) const CONSOLE_ROLES: &[ApiRole] = &[ApiRole::Dispatcher, ApiRole::Operator];

type HmacSha256 = Hmac<Sha256>;

/// Signs session cookies and their CSRF tokens with the console's secret, and checks them.
///
/// A cookie's value is `role.hex(id).expiry.mac`: `mac` is the HMAC-SHA-256 of the role, id,
/// expiry (unix seconds) and the key's hash, so it is valid only while a key of that role and id
/// with that hash is configured. The CSRF token is the HMAC of the cookie's value.
pub(crate) struct Sessions {
    secret: [u8; 32],
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}

impl Sessions {
    /// Sessions signed with `secret`.
    pub(crate) fn new(secret: [u8; 32]) -> Self {
        Self { secret }
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes a key of any length: this cannot fail.
        <HmacSha256 as Mac>::new_from_slice(&self.secret).unwrap_or_else(|_| unreachable!("HMAC takes any key"))
    }

    fn session_mac(&self, role: &str, id_hex: &str, expires: i64, key_hash: &[u8; 32]) -> HmacSha256 {
        let mut mac = self.mac();
        mac.update(format!("linkbus-console-session|{role}|{id_hex}|{expires}|{}", hex::encode(key_hash)).as_bytes());
        mac
    }

    fn csrf_mac(&self, value: &str) -> HmacSha256 {
        let mut mac = self.mac();
        mac.update(b"linkbus-console-csrf|");
        mac.update(value.as_bytes());
        mac
    }

    /// The cookie value of a session for `principal` (signed in with the key whose hash is
    /// `key_hash`) until `expires`, unix seconds.
    pub(crate) fn issue(&self, principal: &Principal, key_hash: &[u8; 32], expires: i64) -> String {
        let role = principal.role.as_str();
        let id_hex = hex::encode(principal.id.as_bytes());
        let mac = hex::encode(self.session_mac(role, &id_hex, expires, key_hash).finalize().into_bytes());
        format!("{role}.{id_hex}.{expires}.{mac}")
    }

    /// The principal a cookie value stands for, if it is genuine, unexpired at `now` (unix
    /// seconds), of a role that may use the console, and its key is among `keys`; and its expiry.
    pub(crate) fn verify(&self, value: &str, keys: &[Key], now: i64) -> Option<(Principal, i64)> {
        let mut parts = value.split('.');
        let (role, id_hex, expires, mac) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let expires: i64 = expires.parse().ok()?;
        if expires <= now {
            return None;
        }
        let mac = hex::decode(mac).ok()?;
        let id = String::from_utf8(hex::decode(id_hex).ok()?).ok()?;
        keys.iter()
            .filter(|k| k.role.as_str() == role && k.id == id && CONSOLE_ROLES.contains(&k.role))
            .find(|k| self.session_mac(role, id_hex, expires, &k.hash).verify_slice(&mac).is_ok())
            .map(|k| (Principal { role: k.role, id: k.id.clone(), source: None }, expires))
    }

    /// The CSRF token of a cookie value, hex.
    pub(crate) fn csrf(&self, value: &str) -> String {
        hex::encode(self.csrf_mac(value).finalize().into_bytes())
    }

    /// True when `token` (hex) is the CSRF token of the cookie value (compared in constant time).
    pub(crate) fn csrf_matches(&self, value: &str, token: &str) -> bool {
        hex::decode(token).is_ok_and(|token| self.csrf_mac(value).verify_slice(&token).is_ok())
    }
}

/// The session cookie's value in `headers`, if any.
pub(crate) fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use sha2::Digest as _;

    use super::*;

    fn key(role: ApiRole, id: &str, secret: &str) -> Key {
        Key { hash: Sha256::digest(secret.as_bytes()).into(), role, id: id.into(), source: String::new() }
    }

    #[test]
    fn sessions_are_signed_expire_and_end_with_their_key() {
        let sessions = Sessions { secret: [7; 32] };
        let dana = key(ApiRole::Dispatcher, "dana", "k1");
        let olga = key(ApiRole::Operator, "dana", "k2");
        let keys = [dana.clone(), olga.clone()];
        let principal = Principal { role: ApiRole::Dispatcher, id: "dana".into(), source: None };
        let value = sessions.issue(&principal, &dana.hash, 1_000);
        assert_eq!(sessions.verify(&value, &keys, 999), Some((principal.clone(), 1_000)));
        // Expired.
        assert_eq!(sessions.verify(&value, &keys, 1_000), None);
        // Another role, a later expiry, another id: the signature no longer matches.
        for forged in [
            value.replacen("dispatcher", "operator", 1),
            value.replacen(".1000.", ".2000.", 1),
            value.replacen(&hex::encode("dana"), &hex::encode("dan"), 1),
        ] {
            assert_eq!(sessions.verify(&forged, &keys, 999), None, "{forged}");
        }
        // Another secret (another deployment), or the key rotated or removed.
        assert_eq!(Sessions { secret: [8; 32] }.verify(&value, &keys, 999), None);
        assert_eq!(sessions.verify(&value, &[key(ApiRole::Dispatcher, "dana", "k3"), olga], 999), None);
        assert_eq!(sessions.verify(&value, &[], 999), None);
        // A department key's session is never valid, even signed.
        let dept = key(ApiRole::Department, "dpw", "k4");
        let dept_value =
            sessions.issue(&Principal { role: ApiRole::Department, id: "dpw".into(), source: None }, &dept.hash, 1_000);
        assert_eq!(sessions.verify(&dept_value, &[dept], 999), None);
        // Garbage.
        for garbage in ["", "a.b.c.d", "dispatcher.6461.1000", &format!("{value}.x")] {
            assert_eq!(sessions.verify(garbage, &keys, 999), None, "{garbage}");
        }
    }

    #[test]
    fn csrf_tokens_belong_to_their_session() {
        let sessions = Sessions { secret: [7; 32] };
        let token = sessions.csrf("dispatcher.6461.1000.ab");
        assert!(sessions.csrf_matches("dispatcher.6461.1000.ab", &token));
        assert!(!sessions.csrf_matches("dispatcher.6461.1000.ac", &token));
        assert!(!sessions.csrf_matches("dispatcher.6461.1000.ab", "zz"));
        assert!(!sessions.csrf_matches("dispatcher.6461.1000.ab", ""));
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; linkbus_session=x.y.z.w; b=2"));
        assert_eq!(cookie(&headers), Some("x.y.z.w"));
        headers.insert(header::COOKIE, HeaderValue::from_static("linkbus_sessionx=1"));
        assert_eq!(cookie(&headers), None);
    }
}
