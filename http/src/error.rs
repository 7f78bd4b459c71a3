//! What goes wrong, in two kinds.
//!
//! - [`ApiError`]: every refusal the HTTP surface answers (the API and the console alike), each
//!   with its status and a [`linkbus_wire::http_error::ErrorBody`]: the one error body every
//!   linkbus endpoint answers with, adapters' included.
//! - [`Error`]: why the HTTP surface could not be built ([`crate::state::ApiState::new`],
//!   [`crate::console::Console::start`]); the binary reports it with its sources.

use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use linkbus_cases::book::ActError;
use linkbus_cases::lifecycle::Refused;
use linkbus_wire::http_error::{ErrorBody, ErrorCode};

/// Largest request body accepted, bytes: the API's and the console's `DefaultBodyLimit`, past
/// which a request is answered [`ApiError::TooLarge`].
pub const MAX_BODY: usize = 64 * 1024;

/// Every refusal the API and the console answer; its `Display` is the body's `error`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// 401 `unauthorized`: no key, or an unknown one (or a console session that has ended).
    #[error("{0}")]
    Unauthorized(String),
    /// 403 `forbidden`: the key may not do this (or see this case).
    #[error("{0}")]
    Forbidden(String),
    /// 404 `not_found`.
    #[error("{0}")]
    NotFound(String),
    /// 409 `conflict`: the case's state (or the loop's rules) refuse the action.
    #[error("{0}")]
    Conflict(String),
    /// 422 `invalid`: the request is malformed.
    #[error("{0}")]
    Invalid(String),
    /// 413 `too_large`: a body over [`MAX_BODY`].
    #[error("the body is larger than {MAX_BODY} bytes")]
    TooLarge,
    /// 429 `rate_limited`: too many resident requests with this key (or from this address,
    /// without one), or console sign-ins from this address or with this key.
    #[error("too many requests; retry in {retry_after_secs} s")]
    RateLimited {
        /// Seconds until the next request is allowed.
        retry_after_secs: u64,
    },
    /// 503 `unavailable`: the case store (or the webhook delivery records) could not be reached;
    /// try again.
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    /// 429, to retry after `wait` (whole seconds, at least one).
    pub(crate) fn rate_limited(wait: std::time::Duration) -> Self {
        Self::RateLimited { retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64 }
    }

    /// The body's `code`.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Unauthorized(_) => ErrorCode::Unauthorized,
            Self::Forbidden(_) => ErrorCode::Forbidden,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::Conflict(_) => ErrorCode::Conflict,
            Self::Invalid(_) => ErrorCode::Invalid,
            Self::TooLarge => ErrorCode::TooLarge,
            Self::RateLimited { .. } => ErrorCode::RateLimited,
            Self::Unavailable(_) => ErrorCode::Unavailable,
        }
    }

    /// The HTTP status: the one that goes with the code.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code().status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl From<ActError> for ApiError {
    fn from(e: ActError) -> Self {
        match e {
            ActError::NotFound(id) => Self::NotFound(format!("no case {id}")),
            ActError::Refused(Refused::Forbidden(why)) => Self::Forbidden(why),
            ActError::Refused(Refused::Invalid(why)) => Self::Conflict(why),
            ActError::Store(why) => Self::Unavailable(format!("the case store is unavailable: {why}")),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(e: BytesRejection) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE { Self::TooLarge } else { Self::Invalid(e.body_text()) }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: self.to_string(), code: self.code() };
        let mut response = (self.status(), axum::Json(body)).into_response();
        let headers = response.headers_mut();
        match self {
            Self::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::RateLimited { retry_after_secs } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            _ => {}
        }
        response
    }
}

/// Why the HTTP surface could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An `[[api.keys]]` entry's `sha256` is not 64 hex digits.
    #[error("api key {id}: sha256 must be 64 hex digits")]
    KeyHash {
        /// The key's `id`.
        id: String,
        /// What the hex decoder said.
        #[source]
        source: hex::FromHexError,
    },
    /// The console's metrics could not be registered (a name already taken in the registry).
    #[error("registering the console's metrics")]
    Metrics(#[source] prometheus::Error),
    /// The console's sign-outs could not be read from its bucket in time.
    #[error("reading the console's sign-outs from bucket {bucket}: timed out")]
    SignOuts {
        /// The KV bucket.
        bucket: &'static str,
    },
    /// The console's session secret could not be stored in its bucket.
    #[error("storing the console's session secret in bucket {bucket}")]
    StoreSecret {
        /// The KV bucket.
        bucket: &'static str,
        /// What JetStream said.
        #[source]
        source: async_nats::jetstream::kv::CreateError,
    },
    /// The console's session secret could not be read from its bucket.
    #[error("reading the console's session secret from bucket {bucket}")]
    ReadSecret {
        /// The KV bucket.
        bucket: &'static str,
        /// What JetStream said.
        #[source]
        source: async_nats::jetstream::kv::EntryError,
    },
    /// The session secret was there when it was to be made, and gone when it was read.
    #[error("the console's session secret in bucket {bucket} vanished")]
    SecretVanished {
        /// The KV bucket.
        bucket: &'static str,
    },
    /// The stored session secret is not 32 bytes.
    #[error("the console's session secret in bucket {bucket} is {len} bytes, not 32; delete it to make a new one")]
    SecretLength {
        /// The KV bucket.
        bucket: &'static str,
        /// Its length.
        len: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn act_errors_map_to_statuses_and_codes() {
        let cases = [
            (ActError::NotFound("x".into()), StatusCode::NOT_FOUND, ErrorCode::NotFound),
            (Refused::Forbidden("no".into()).into(), StatusCode::FORBIDDEN, ErrorCode::Forbidden),
            (Refused::Invalid("state".into()).into(), StatusCode::CONFLICT, ErrorCode::Conflict),
            (ActError::Store("down".into()), StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable),
        ];
        for (error, status, code) in cases {
            let error = ApiError::from(error);
            assert_eq!((error.status(), error.code()), (status, code));
        }
        let limited = ApiError::RateLimited { retry_after_secs: 3 }.into_response();
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.headers()[header::RETRY_AFTER], "3");
    }
}
