//! The one error body every HTTP endpoint of linkbus answers with: the closed loop's API, the
//! console and every adapter's routes alike, so a client handles one shape.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ErrorBody {
    /// What went wrong, for people.
    pub error: String,
    /// What went wrong, for programs.
    pub code: ErrorCode,
}

/// The `code` of an error response; each has one HTTP status ([`ErrorCode::status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: not parseable (not UTF-8, not XML or JSON, a DTD).
    Malformed,
    /// 401: no key or an unknown key, a bad signature, a stale timestamp.
    Unauthorized,
    /// 403: the caller may not do this (or see this case).
    Forbidden,
    /// 404: no such case, request or endpoint.
    NotFound,
    /// 409: the case's state refuses the action, or the delivery was already received.
    Conflict,
    /// 413: the body is larger than the endpoint takes.
    TooLarge,
    /// 415: the wrong `Content-Type`.
    UnsupportedMediaType,
    /// 422: parseable but invalid, or valid but not routable.
    Invalid,
    /// 429: too many requests from this address; see `Retry-After`.
    RateLimited,
    /// 503: the bus or the case store is unavailable; try again.
    Unavailable,
}

impl ErrorCode {
    /// The HTTP status code that goes with this code.
    pub fn status(self) -> u16 {
        match self {
            Self::Malformed => 400,
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::Conflict => 409,
            Self::TooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::Invalid => 422,
            Self::RateLimited => 429,
            Self::Unavailable => 503,
        }
    }

    /// The code as it is written in the body (and in a dead letter's reason code).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::TooLarge => "too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Invalid => "invalid",
            Self::RateLimited => "rate_limited",
            Self::Unavailable => "unavailable",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_code_is_written_as_serde_writes_it_and_has_its_own_status() {
        let all = [
            ErrorCode::Malformed,
            ErrorCode::Unauthorized,
            ErrorCode::Forbidden,
            ErrorCode::NotFound,
            ErrorCode::Conflict,
            ErrorCode::TooLarge,
            ErrorCode::UnsupportedMediaType,
            ErrorCode::Invalid,
            ErrorCode::RateLimited,
            ErrorCode::Unavailable,
        ];
        let mut statuses = std::collections::HashSet::new();
        for code in all {
            let json = serde_json::to_value(code).expect("serializes");
            assert_eq!(json, serde_json::Value::String(code.as_str().to_owned()));
            assert!(statuses.insert(code.status()), "{code:?} shares its status");
            assert!((400..600).contains(&code.status()));
        }
    }
}
