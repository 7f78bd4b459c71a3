//! Who is calling: an API key or a console session, checked before a handler looks at anything
//! else.
//!
//! - `key`: the keys as configured (only their SHA-256, [`hash_key`]), and the [`Principal`]
//!   a presented key stands for, compared with every configured hash in constant time.
//! - `session`: the dispatcher console's signed session cookie, its CSRF token, sign-outs.
//! - [`Auth`]: both together, and the [`Principal`] extractor of every handler that takes one:
//!   `Authorization: Bearer <key>` (read by [`linkbus_adapters::web::bearer`], as the adapters
//!   read it), or, without that header, the console's session cookie (and, to change anything,
//!   its CSRF token).

mod key;
pub(crate) mod session;

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use jiff::Timestamp;
use linkbus_adapters::web;

pub(crate) use self::key::constant_time_eq;
use self::key::{Key, find};
pub use self::key::{Principal, hash_key};
use self::session::{Session, Sessions, cookie, csrf_token};
use crate::config::ApiConfig;
use crate::error::{ApiError, Error};

/// The configured keys and, where the console is served, its session signer: what a request's
/// [`Principal`] is found with.
#[derive(Clone)]
pub struct Auth {
    keys: Arc<[Key]>,
    sessions: Option<Arc<Sessions>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").field("keys", &self.keys.len()).field("sessions", &self.sessions.is_some()).finish()
    }
}

impl Auth {
    /// The keys of `config` (`[[api.keys]]`), without sessions.
    pub(crate) fn new(config: &ApiConfig) -> Result<Self, Error> {
        let keys = config
            .keys
            .iter()
            .map(|k| {
                let mut hash = [0u8; 32];
                hex::decode_to_slice(k.sha256.to_ascii_lowercase(), &mut hash)
                    .map_err(|source| Error::KeyHash { id: k.id.clone(), source })?;
                Ok(Key { hash, role: k.role, id: k.id.clone(), source: k.source() })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(Self { keys: keys.into(), sessions: None })
    }

    /// These keys, and console sessions signed by `sessions`.
    pub(crate) fn with_sessions(self, sessions: Arc<Sessions>) -> Self {
        Self { sessions: Some(sessions), ..self }
    }

    /// The holder of the key `presented`, if it is configured.
    pub(crate) fn principal(&self, presented: &str) -> Option<Principal> {
        find(&self.keys, presented).map(Key::principal)
    }

    /// [`Auth::principal`], and the key's hash (what a console session is signed with).
    pub(crate) fn principal_with_hash(&self, presented: &str) -> Option<(Principal, [u8; 32])> {
        find(&self.keys, presented).map(|key| (key.principal(), key.hash))
    }

    /// The session of the cookie `value`: `None` unless sessions are served here and it is
    /// genuine, unexpired, not signed out, and its key still configured.
    pub(crate) fn session(&self, value: &str) -> Option<Session> {
        self.sessions.as_deref()?.verify(value, &self.keys, Timestamp::now().as_second())
    }

    /// The principal of a request without an `Authorization` header, from its session cookie:
    /// `Ok(None)` without a cookie (or where no console is served); 401 for a cookie that is
    /// forged, expired or whose key is gone; 403 for a request that changes something without the
    /// CSRF token.
    fn session_principal(&self, parts: &Parts) -> Result<Option<Principal>, ApiError> {
        let (Some(sessions), Some(value)) = (self.sessions.as_deref(), cookie(&parts.headers)) else {
            return Ok(None);
        };
        let session = self
            .session(value)
            .ok_or_else(|| ApiError::Unauthorized("the console session has ended; sign in again".into()))?;
        if !matches!(parts.method, Method::GET | Method::HEAD) {
            check_csrf(sessions, value, &parts.headers)?;
        }
        Ok(Some(session.principal))
    }
}

/// 403 unless `headers` carry the CSRF token of the session cookie `value`.
pub(crate) fn check_csrf(sessions: &Sessions, value: &str, headers: &HeaderMap) -> Result<(), ApiError> {
    let token =
        csrf_token(headers).ok_or_else(|| ApiError::Forbidden("a console request must carry X-Linkbus-Csrf".into()))?;
    if sessions.csrf_matches(value, token) {
        Ok(())
    } else {
        Err(ApiError::Forbidden("the X-Linkbus-Csrf token does not match the session".into()))
    }
}

impl<S> FromRequestParts<S> for Principal
where
    Auth: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let auth = Auth::from_ref(state);
        if !parts.headers.contains_key(header::AUTHORIZATION) {
            return auth
                .session_principal(parts)?
                .ok_or_else(|| ApiError::Unauthorized("an Authorization: Bearer <key> header is required".into()));
        }
        let key = web::bearer(&parts.headers)
            .ok_or_else(|| ApiError::Unauthorized("the Authorization header must be Bearer <key>".into()))?;
        auth.principal(&key).ok_or_else(|| ApiError::Unauthorized("unknown API key".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ApiKey, ApiRole};

    #[test]
    fn keys_are_sha256_hex() {
        assert_eq!(hash_key("test"), "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
        let sewer = ApiKey {
            role: ApiRole::Department,
            id: "puc-sewer-ops".into(),
            sha256: hash_key("key-sewer"),
            source: None,
        };
        let auth = Auth::new(&ApiConfig { keys: vec![sewer], ..ApiConfig::default() }).expect("keys");
        assert_eq!(
            auth.principal("key-sewer"),
            Some(Principal { role: ApiRole::Department, id: "puc-sewer-ops".into(), source: None })
        );
        assert_eq!(auth.principal("key-sewe"), None);
        assert_eq!(auth.principal(&hash_key("key-sewer")), None, "the hash is not the key");
        let bad = ApiKey {
            sha256: "abc".into(),
            ..ApiKey { role: ApiRole::Operator, id: "olga".into(), sha256: String::new(), source: None }
        };
        let error = Auth::new(&ApiConfig { keys: vec![bad], ..ApiConfig::default() }).expect_err("not 64 hex digits");
        assert_eq!(error.to_string(), "api key olga: sha256 must be 64 hex digits");
    }
}
