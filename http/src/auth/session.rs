//! The dispatcher console's sessions: a signed cookie standing in for a key, the CSRF token that
//! goes with it, and sign-outs.
//!
//! EventSource cannot send an `Authorization` header, so the console's page exchanges the
//! dispatcher's key for a cookie ([`COOKIE`]). Its value names the key's role and id, when the
//! session was issued and the key holder's session generation, signed with HMAC-SHA-256 under a
//! secret shared by every replica (`crate::console::Console::start` keeps it in a KV bucket). The
//! signature also covers the key's hash: removing or rotating the key in the configuration ends
//! its sessions. A request that changes anything with the cookie must also carry
//! [`CSRF_HEADER`], a token derived from the cookie that only a page of this origin can read.
//!
//! **Expiry is the server's**: a session ends `[console].session_hours` after it was issued, as
//! this server counts them now, whatever the cookie says; a cookie issued in the future (more
//! than [`CLOCK_SKEW_SECS`] ahead: forged) is refused.
//!
//! **Sign-out ends the session on the server**, on every replica: each key holder (role and id)
//! has a session generation, 0 until they first sign out; a cookie is valid only with the current
//! one, and signing out raises it (stored in the console's KV bucket, followed by every replica:
//! `crate::console`). A generation rather than a list of revoked session ids: it needs one small
//! entry per key holder, forever, instead of one per sign-out to be kept and purged for a
//! session's lifetime; and it also ends every other session of that key holder (another browser,
//! a copied or forged cookie), which is what signing out on a shared console should do.

use std::collections::HashMap;
use std::sync::RwLock;

use axum::http::{HeaderMap, header};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::watch;

use super::key::{Key, Principal};
use crate::config::ApiRole;

/// The session cookie's name.
pub(crate) const COOKIE: &str = "linkbus_session";
/// The header carrying the CSRF token on requests that change something.
pub(crate) const CSRF_HEADER: &str = "x-linkbus-csrf";
/// Who may sign in to the console (it shows every case): no session of another role is valid.
pub(crate) const CONSOLE_ROLES: &[ApiRole] = &[ApiRole::Dispatcher, ApiRole::Operator];
/// How far ahead of this server's clock a session may have been issued (another replica's clock).
pub(crate) const CLOCK_SKEW_SECS: i64 = 60;

type HmacSha256 = Hmac<Sha256>;

/// A genuine, current session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Session {
    /// Who it is.
    pub(crate) principal: Principal,
    /// When it ends, unix seconds: issued + `session_hours`.
    pub(crate) expires: i64,
    /// Its key holder, `role.hex(id)`: what a sign-out raises the generation of.
    pub(crate) holder: String,
    /// The holder's session generation it was issued in.
    pub(crate) generation: u64,
}

/// Signs session cookies and their CSRF tokens with the console's secret, checks them, and knows
/// every key holder's session generation.
///
/// A cookie's value is `role.hex(id).issued.generation.mac`: `mac` is the HMAC-SHA-256 of the
/// role, id, issue time (unix seconds), generation and the key's hash, so it is valid only while
/// a key of that role and id with that hash is configured. The CSRF token is the HMAC of the
/// cookie's value.
pub(crate) struct Sessions {
    secret: [u8; 32],
    /// How long a session lasts, seconds.
    lifetime: i64,
    /// Each key holder's session generation, where it is not 0.
    generations: RwLock<HashMap<String, u64>>,
    /// Told of every raised generation (open event streams end with their session).
    raised: watch::Sender<()>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").field("lifetime", &self.lifetime).finish_non_exhaustive()
    }
}

impl Sessions {
    /// Sessions signed with `secret`, lasting `session_hours` (at least 1).
    pub(crate) fn new(secret: [u8; 32], session_hours: u32) -> Self {
        Self {
            secret,
            lifetime: i64::from(session_hours.max(1)) * 3600,
            generations: RwLock::default(),
            raised: watch::Sender::new(()),
        }
    }

    /// How long a session lasts, seconds.
    pub(crate) fn lifetime(&self) -> i64 {
        self.lifetime
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes a key of any length: this cannot fail.
        <HmacSha256 as Mac>::new_from_slice(&self.secret).unwrap_or_else(|_| unreachable!("HMAC takes any key"))
    }

    fn session_mac(&self, holder: &str, issued: i64, generation: u64, key_hash: &[u8; 32]) -> HmacSha256 {
        let mut mac = self.mac();
        let hash = hex::encode(key_hash);
        mac.update(format!("linkbus-console-session-2|{holder}|{issued}|{generation}|{hash}").as_bytes());
        mac
    }

    fn csrf_mac(&self, value: &str) -> HmacSha256 {
        let mut mac = self.mac();
        mac.update(b"linkbus-console-csrf|");
        mac.update(value.as_bytes());
        mac
    }

    /// The key holder `role.hex(id)` of a principal.
    fn holder(principal: &Principal) -> String {
        format!("{}.{}", principal.role.as_str(), hex::encode(principal.id.as_bytes()))
    }

    /// The current session generation of a key holder.
    pub(crate) fn generation(&self, holder: &str) -> u64 {
        self.generations.read().unwrap_or_else(|p| p.into_inner()).get(holder).copied().unwrap_or(0)
    }

    /// Raises a key holder's session generation to `generation` (never lowers it): their sessions
    /// of earlier generations end.
    pub(crate) fn raise(&self, holder: &str, generation: u64) {
        let mut generations = self.generations.write().unwrap_or_else(|p| p.into_inner());
        let current = generations.entry(holder.to_owned()).or_insert(0);
        if generation > *current {
            *current = generation;
            drop(generations);
            self.raised.send_replace(());
        }
    }

    /// Told each time a generation is raised.
    pub(crate) fn raised(&self) -> watch::Receiver<()> {
        self.raised.subscribe()
    }

    /// The cookie value of a session for `principal` (signed in with the key whose hash is
    /// `key_hash`) issued at `now` (unix seconds), and the session.
    pub(crate) fn issue(&self, principal: &Principal, key_hash: &[u8; 32], now: i64) -> (String, Session) {
        let holder = Self::holder(principal);
        let generation = self.generation(&holder);
        let mac = hex::encode(self.session_mac(&holder, now, generation, key_hash).finalize().into_bytes());
        let value = format!("{holder}.{now}.{generation}.{mac}");
        let session = Session { principal: principal.clone(), expires: now + self.lifetime, holder, generation };
        (value, session)
    }

    /// The session a cookie value stands for, if it is genuine, of a role that may use the
    /// console, its key among `keys`, issued no later than `now` (unix seconds, give or take
    /// [`CLOCK_SKEW_SECS`]) and less than the session lifetime before it, and of its holder's
    /// current generation.
    pub(crate) fn verify(&self, value: &str, keys: &[Key], now: i64) -> Option<Session> {
        let mut parts = value.split('.');
        let (role, id_hex, issued, generation, mac) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let issued: i64 = issued.parse().ok()?;
        let expires = issued.checked_add(self.lifetime)?;
        if issued > now + CLOCK_SKEW_SECS || expires <= now {
            return None;
        }
        let holder = format!("{role}.{id_hex}");
        let generation: u64 = generation.parse().ok()?;
        if generation != self.generation(&holder) {
            return None;
        }
        let mac = hex::decode(mac).ok()?;
        let id = String::from_utf8(hex::decode(id_hex).ok()?).ok()?;
        keys.iter()
            .filter(|k| k.role.as_str() == role && k.id == id && CONSOLE_ROLES.contains(&k.role))
            .find(|k| self.session_mac(&holder, issued, generation, &k.hash).verify_slice(&mac).is_ok())
            .map(|k| Session {
                principal: Principal { role: k.role, id: k.id.clone(), source: None },
                expires,
                holder,
                generation,
            })
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

/// The CSRF token in `headers`, if any.
pub(crate) fn csrf_token(headers: &HeaderMap) -> Option<&str> {
    headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use sha2::Digest as _;

    use super::*;

    fn key(role: ApiRole, id: &str, secret: &str) -> Key {
        Key { hash: Sha256::digest(secret.as_bytes()).into(), role, id: id.into(), source: String::new() }
    }

    /// Signs a cookie as [`Sessions::issue`] does, with any issue time and generation: what someone
    /// holding the secret and the key's hash could forge.
    fn forge(sessions: &Sessions, holder: &str, issued: i64, generation: u64, key: &Key) -> String {
        let mac = hex::encode(sessions.session_mac(holder, issued, generation, &key.hash).finalize().into_bytes());
        format!("{holder}.{issued}.{generation}.{mac}")
    }

    #[test]
    fn sessions_are_signed_expire_and_end_with_their_key() {
        let sessions = Sessions::new([7; 32], 1);
        let dana = key(ApiRole::Dispatcher, "dana", "k1");
        let olga = key(ApiRole::Operator, "dana", "k2");
        let keys = [dana.clone(), olga.clone()];
        let principal = Principal { role: ApiRole::Dispatcher, id: "dana".into(), source: None };
        let (value, session) = sessions.issue(&principal, &dana.hash, 1_000);
        assert_eq!(session.expires, 4_600);
        assert_eq!(sessions.verify(&value, &keys, 4_599), Some(session.clone()));
        // Expired: an hour after it was issued.
        assert_eq!(sessions.verify(&value, &keys, 4_600), None);
        // Another role, another issue time, another id or generation: the signature no longer
        // matches.
        for forged in [
            value.replacen("dispatcher", "operator", 1),
            value.replacen(".1000.", ".2000.", 1),
            value.replacen(".0.", ".1.", 1),
            value.replacen(&hex::encode("dana"), &hex::encode("dan"), 1),
        ] {
            assert_eq!(sessions.verify(&forged, &keys, 1_001), None, "{forged}");
        }
        // Another secret (another deployment), or the key rotated or removed.
        assert_eq!(Sessions::new([8; 32], 1).verify(&value, &keys, 1_001), None);
        assert_eq!(sessions.verify(&value, &[key(ApiRole::Dispatcher, "dana", "k3"), olga], 1_001), None);
        assert_eq!(sessions.verify(&value, &[], 1_001), None);
        // A department key's session is never valid, even signed.
        let dept = key(ApiRole::Department, "dpw", "k4");
        let dept_principal = Principal { role: ApiRole::Department, id: "dpw".into(), source: None };
        let (dept_value, _) = sessions.issue(&dept_principal, &dept.hash, 1_000);
        assert_eq!(sessions.verify(&dept_value, &[dept], 1_001), None);
        // Garbage, and the old format (role.id.expiry.mac).
        for garbage in
            ["", "a.b.c.d.e", "dispatcher.6461.1000.0", &format!("{value}.x"), "dispatcher.6461.4102444800.ab"]
        {
            assert_eq!(sessions.verify(garbage, &keys, 1_001), None, "{garbage}");
        }
    }

    #[test]
    fn the_server_decides_when_a_session_ends_whatever_the_cookie_says() {
        let sessions = Sessions::new([7; 32], 12);
        let dana = key(ApiRole::Dispatcher, "dana", "k1");
        let keys = [dana.clone()];
        let holder = format!("dispatcher.{}", hex::encode("dana"));
        let now = 1_800_000_000;
        // Signed with the secret, but issued in 2100 (the expiry `4102444800` of the finding):
        // refused, not valid until 2100 + 12 h.
        let far = forge(&sessions, &holder, 4_102_444_800, 0, &dana);
        assert_eq!(sessions.verify(&far, &keys, now), None);
        // A minute ahead is another replica's clock; more is not.
        assert!(sessions.verify(&forge(&sessions, &holder, now + 60, 0, &dana), &keys, now).is_some());
        assert!(sessions.verify(&forge(&sessions, &holder, now + 61, 0, &dana), &keys, now).is_none());
        // Issued 12 h ago: over, even if `session_hours` was longer when it was issued.
        assert!(sessions.verify(&forge(&sessions, &holder, now - 12 * 3600, 0, &dana), &keys, now).is_none());
    }

    #[test]
    fn signing_out_ends_every_session_of_the_key_holder() {
        let sessions = Sessions::new([7; 32], 12);
        let dana = key(ApiRole::Dispatcher, "dana", "k1");
        let li = key(ApiRole::Dispatcher, "li", "k2");
        let keys = [dana.clone(), li.clone()];
        let principal = |id: &str| Principal { role: ApiRole::Dispatcher, id: id.into(), source: None };
        let (first, session) = sessions.issue(&principal("dana"), &dana.hash, 1_000);
        let (second, _) = sessions.issue(&principal("dana"), &dana.hash, 1_001);
        let (other, _) = sessions.issue(&principal("li"), &li.hash, 1_001);
        let raised = sessions.raised();
        sessions.raise(&session.holder, session.generation + 1);
        assert!(raised.has_changed().expect("open"), "open event streams are told");
        assert_eq!(sessions.verify(&first, &keys, 1_002), None);
        assert_eq!(sessions.verify(&second, &keys, 1_002), None, "every session of the holder");
        assert!(sessions.verify(&other, &keys, 1_002).is_some(), "another holder's is not touched");
        // Signing in again starts a session of the new generation; a generation never goes back.
        let (again, session) = sessions.issue(&principal("dana"), &dana.hash, 1_003);
        assert_eq!(session.generation, 1);
        sessions.raise(&session.holder, 0);
        assert!(sessions.verify(&again, &keys, 1_004).is_some());
    }

    #[test]
    fn csrf_tokens_belong_to_their_session() {
        let sessions = Sessions::new([7; 32], 12);
        let token = sessions.csrf("dispatcher.6461.1000.0.ab");
        assert!(sessions.csrf_matches("dispatcher.6461.1000.0.ab", &token));
        assert!(!sessions.csrf_matches("dispatcher.6461.1000.0.ac", &token));
        assert!(!sessions.csrf_matches("dispatcher.6461.1000.0.ab", "zz"));
        assert!(!sessions.csrf_matches("dispatcher.6461.1000.0.ab", ""));
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
