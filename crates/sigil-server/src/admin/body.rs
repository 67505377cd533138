//! JSON request bodies: read within the body limit (the router sets it to
//! [`sigil_api::MAX_REQUEST_BODY_BYTES`]) and decoded with errors in the API's own vocabulary
//! instead of axum's plain-text rejections.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use sigil_api::{ErrorCode, MAX_REQUEST_BODY_BYTES};

use super::api_error::ApiError;

/// Decodes a JSON body. `empty_default` is returned for an empty body when given (for endpoints
/// whose every field is optional); otherwise an empty body is a 400.
pub(crate) fn decode_json<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    empty_default: Option<T>,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError {
                code: ErrorCode::PayloadTooLarge,
                message: format!("request body is larger than {MAX_REQUEST_BODY_BYTES} bytes"),
            }
        } else {
            ApiError::invalid(format!(
                "cannot read the request body: {}",
                rejection.body_text()
            ))
        }
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return empty_default
            .ok_or_else(|| ApiError::invalid("request body is empty (expected a JSON object)"));
    }
    serde_json::from_slice(&bytes)
        .map_err(|err| ApiError::invalid(format!("request body is not valid: {err}")))
}
