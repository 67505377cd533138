//! The error every admin handler returns: an [`ErrorCode`] and a one-line message, answered as
//! `{"error": {"code", "message"}}` with the code's HTTP status. Internal causes are logged here
//! and replaced by a generic message, so nothing about the server's internals reaches callers.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sigil_api::{ErrorBody, ErrorCode, WireError};
use sigil_store::StoreError;

/// Longest piece of caller input quoted back in an error message, in characters.
const MAX_QUOTED_CHARS: usize = 200;

/// A failed admin call, ready to be answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
}

impl ApiError {
    /// 400 `invalid_argument`.
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self {
            code: ErrorCode::InvalidArgument,
            message: message.into(),
        }
    }

    /// 400 naming the field, the offending value and the reason:
    /// ``invalid <field> `<value>`: <reason>``.
    pub(crate) fn invalid_value(field: &str, value: &str, reason: impl std::fmt::Display) -> Self {
        Self::invalid(format!("invalid {field} `{}`: {reason}", quote(value)))
    }

    /// 404 `not_found`.
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self {
            code: ErrorCode::NotFound,
            message: message.into(),
        }
    }

    /// 500 `internal`: logs `cause` with `context` and answers a generic message.
    pub(crate) fn internal(context: &str, cause: &dyn std::error::Error) -> Self {
        tracing::error!(error = %cause, "admin API: {context}");
        Self {
            code: ErrorCode::Internal,
            message: "internal error; the cause is in the server log".to_owned(),
        }
    }
}

/// `value` cut to a bounded length with control characters replaced, safe to quote in a
/// one-line message.
pub(crate) fn quote(value: &str) -> String {
    let mut out: String = value
        .chars()
        .take(MAX_QUOTED_CHARS)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if value.chars().nth(MAX_QUOTED_CHARS).is_some() {
        out.push('…');
    }
    out
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        // A batch's refusal has the code of the entry's own error, and says which entry.
        let code = match err.cause() {
            StoreError::NotFound { .. } => ErrorCode::NotFound,
            StoreError::AlreadyExists { .. } => ErrorCode::AlreadyExists,
            StoreError::RevisionConflict { .. } | StoreError::CredentialExpired { .. } => {
                ErrorCode::Conflict
            }
            StoreError::Invalid { .. } => ErrorCode::InvalidArgument,
            StoreError::Backend(_) => {
                tracing::error!(error = %err, "admin API: datastore call failed");
                return Self {
                    code: ErrorCode::Internal,
                    message: "the datastore failed or cannot be reached (the cause is in the \
                              server log); retry once it is back"
                        .to_owned(),
                };
            }
            _ => return Self::internal("datastore call failed", &err),
        };
        Self {
            code,
            message: err.to_string(),
        }
    }
}

impl From<WireError> for ApiError {
    fn from(err: WireError) -> Self {
        Self::invalid(err.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(ErrorBody::new(self.code, self.message))).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_map_to_documented_codes() {
        let not_found = ApiError::from(StoreError::NotFound {
            kind: "entry",
            id: "x".into(),
        });
        assert_eq!(not_found.code, ErrorCode::NotFound);
        assert_eq!(not_found.message, "entry `x` not found");
        let conflict = ApiError::from(StoreError::RevisionConflict {
            kind: "entry",
            id: "x".into(),
            expected: 1,
            found: 2,
        });
        assert_eq!(conflict.code, ErrorCode::Conflict);
        let exists = ApiError::from(StoreError::AlreadyExists {
            kind: "entry",
            detail: "same".into(),
        });
        assert_eq!(exists.code, ErrorCode::AlreadyExists);
        let expired = ApiError::from(StoreError::CredentialExpired {
            kind: sigil_store::CredentialKind::X509Svid,
            id: "4a".into(),
            expired_at: 5,
        });
        assert_eq!(expired.code, ErrorCode::Conflict);
        let invalid = ApiError::from(StoreError::Invalid {
            field: "reason",
            reason: "too long".into(),
        });
        assert_eq!(invalid.code, ErrorCode::InvalidArgument);
        let in_batch = ApiError::from(
            StoreError::AlreadyExists {
                kind: "entry",
                detail: "same".into(),
            }
            .in_batch(7),
        );
        assert_eq!(in_batch.code, ErrorCode::AlreadyExists);
        assert_eq!(
            in_batch.message,
            "entry 7 of the batch: entry already exists: same"
        );
    }

    #[test]
    fn internal_errors_do_not_leak_their_cause() {
        let err = ApiError::from(StoreError::Backend("disk /var/lib/secret is full".into()));
        assert_eq!(err.code, ErrorCode::Internal);
        assert!(!err.message.contains("secret"), "{}", err.message);
        let err =
            ApiError::from(StoreError::Backend("disk /var/lib/secret is full".into()).in_batch(0));
        assert_eq!(err.code, ErrorCode::Internal);
        assert!(!err.message.contains("secret"), "{}", err.message);
    }

    #[test]
    fn quoted_input_is_bounded_and_single_line() {
        assert_eq!(quote("a\nb"), "a?b");
        let long = "x".repeat(MAX_QUOTED_CHARS + 10);
        let q = quote(&long);
        assert_eq!(q.chars().count(), MAX_QUOTED_CHARS + 1);
        assert!(q.ends_with('…'));
        assert_eq!(
            quote(&"y".repeat(MAX_QUOTED_CHARS)),
            "y".repeat(MAX_QUOTED_CHARS)
        );
    }
}
