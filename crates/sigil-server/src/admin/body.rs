//! Request bodies: read within the body limit (the router sets it to
//! [`sigil_api::MAX_REQUEST_BODY_BYTES`]); JSON bodies required to be a JSON object and decoded,
//! bodies of requests that take none required to be empty, with errors in the API's own
//! vocabulary instead of axum's plain-text rejections.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use sigil_api::{ErrorCode, MAX_REQUEST_BODY_BYTES};

use super::api_error::ApiError;

/// Decodes a JSON body. `empty_default` is returned for an empty body when given (for endpoints
/// whose every field is optional); otherwise an empty body is a 400. Any top-level value other
/// than an object is a 400: serde would otherwise read a positional array (`[1]`) into a struct,
/// bypassing `deny_unknown_fields` and the OpenAPI document's `type: object`.
pub(crate) fn decode_json<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    empty_default: Option<T>,
) -> Result<T, ApiError> {
    let bytes = read(body)?;
    match bytes.iter().find(|b| !is_json_whitespace(**b)) {
        None => {
            return empty_default.ok_or_else(|| {
                ApiError::invalid("request body is empty (expected a JSON object)")
            });
        }
        Some(b'{') => {}
        Some(_) => {
            return Err(ApiError::invalid(
                "request body is not valid: expected a JSON object",
            ));
        }
    }
    serde_json::from_slice(&bytes)
        .map_err(|err| ApiError::invalid(format!("request body is not valid: {err}")))
}

/// Accepts only an empty body, for requests that take none: a body sent anyway is a 400 instead
/// of being ignored, so a caller that thinks it passes options learns that it does not.
pub(crate) fn require_empty(body: Result<Bytes, BytesRejection>) -> Result<(), ApiError> {
    if read(body)?.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid("this request takes no body"))
    }
}

/// The body's bytes, or the error for a body over the limit or unreadable.
fn read(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
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
    })
}

/// JSON's insignificant whitespace (RFC 8259 §2), the only bytes allowed before the value.
fn is_json_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}
