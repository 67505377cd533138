//! The error body every failed admin API call answers with, `{"error": {"code", "message"}}`,
//! and the crate's error type for decoding wire formats.

use serde::{Deserialize, Serialize};

/// Why a wire format (here: a query string) could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("query parameter `{0}` is not valid percent-encoded UTF-8")]
    BadQueryEncoding(String),
    #[error("unknown query parameter `{0}`")]
    UnknownQueryParameter(String),
    #[error("query parameter `{0}` is given more than once")]
    RepeatedQueryParameter(String),
    #[error("query string has more than {max} parameters")]
    TooManyQueryParameters { max: usize },
}

/// The body of every non-2xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong, for machines (`code`) and people (`message`, one line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
}

/// Machine-readable error codes; each maps to one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: a field, parameter or body is malformed or breaks a rule.
    InvalidArgument,
    /// 404: the named record or route does not exist.
    NotFound,
    /// 405: the route exists but not with this method.
    MethodNotAllowed,
    /// 409: a record with the same identity already exists.
    AlreadyExists,
    /// 409: the record changed since the caller read it (revision mismatch), or its current
    /// state does not allow the operation (an authority step out of order).
    Conflict,
    /// 413: the request body is larger than [`crate::MAX_REQUEST_BODY_BYTES`].
    PayloadTooLarge,
    /// 500: the server failed; the cause is in the server log, not in the message.
    Internal,
    /// 502: a peer the server called for this request (a federated bundle endpoint) failed; the
    /// message says how.
    UpstreamFailed,
    /// 503: the part of the server this request needs is not running here.
    Unavailable,
    /// A code this client does not know (sent by a newer server).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// Every code a server sends, in documentation order.
    pub const ALL: [ErrorCode; 9] = [
        Self::InvalidArgument,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::AlreadyExists,
        Self::Conflict,
        Self::PayloadTooLarge,
        Self::Internal,
        Self::UpstreamFailed,
        Self::Unavailable,
    ];

    /// The HTTP status code this error is sent with.
    pub fn http_status(self) -> u16 {
        match self {
            Self::InvalidArgument => 400,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::AlreadyExists | Self::Conflict => 409,
            Self::PayloadTooLarge => 413,
            Self::Internal | Self::Unknown => 500,
            Self::UpstreamFailed => 502,
            Self::Unavailable => 503,
        }
    }

    /// The snake_case name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidArgument => "invalid_argument",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::AlreadyExists => "already_exists",
            Self::Conflict => "conflict",
            Self::PayloadTooLarge => "payload_too_large",
            Self::Internal => "internal",
            Self::UpstreamFailed => "upstream_failed",
            Self::Unavailable => "unavailable",
            Self::Unknown => "unknown",
        }
    }
}

impl ErrorBody {
    /// An error body with `code` and a one-line `message` (line breaks become spaces).
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let message: String = message.into();
        let message = if message.contains(['\n', '\r']) {
            message.replace(['\n', '\r'], " ")
        } else {
            message
        };
        Self {
            error: ErrorDetail { code, message },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_has_the_documented_shape() {
        let body = ErrorBody::new(ErrorCode::AlreadyExists, "entry already exists");
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({"error": {"code": "already_exists", "message": "entry already exists"}})
        );
    }

    #[test]
    fn wire_names_match_serde_names() {
        for code in ErrorCode::ALL {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
    }

    #[test]
    fn unknown_codes_from_newer_servers_still_decode() {
        let body: ErrorBody =
            serde_json::from_str(r#"{"error":{"code":"rate_limited","message":"slow down"}}"#)
                .unwrap();
        assert_eq!(body.error.code, ErrorCode::Unknown);
        assert_eq!(body.error.message, "slow down");
    }

    #[test]
    fn messages_are_kept_on_one_line() {
        let body = ErrorBody::new(ErrorCode::Internal, "a\nb\r\nc");
        assert_eq!(body.error.message, "a b  c");
    }
}
