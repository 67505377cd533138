//! The `application/x-www-form-urlencoded` body of an OAuth request, parsed within bounds: the
//! content type is checked, at most [`MAX_PARAMETERS`] parameters are read, and every parameter
//! but the repeatable ones ([`REPEATABLE`]) appears at most once (RFC 6749 §3.2). Unknown
//! parameters are kept and ignored by the endpoints, as RFC 6749 asks.

use axum::http::{HeaderMap, header};

use super::error::OAuthError;

/// Most parameters one request may carry.
pub const MAX_PARAMETERS: usize = 32;
/// Parameters that may be repeated (RFC 8693 §2.1: `audience`, `resource`).
pub const REPEATABLE: [&str; 2] = ["audience", "resource"];

/// A parsed form body.
#[derive(Debug, Default)]
pub struct Form {
    params: Vec<(String, String)>,
}

impl Form {
    /// Parses `body` sent with `headers`. Fails with `invalid_request` for another content type,
    /// too many parameters, or a repeated single-valued parameter.
    pub fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Self, OAuthError> {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let media_type = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if media_type != "application/x-www-form-urlencoded" {
            return Err(OAuthError::invalid_request(
                "the body must be application/x-www-form-urlencoded",
            ));
        }
        let mut params: Vec<(String, String)> = Vec::new();
        for (name, value) in form_urlencoded::parse(body) {
            if params.len() == MAX_PARAMETERS {
                return Err(OAuthError::invalid_request(format!(
                    "more than {MAX_PARAMETERS} parameters"
                )));
            }
            if !REPEATABLE.contains(&name.as_ref()) && params.iter().any(|(n, _)| *n == name) {
                return Err(OAuthError::invalid_request(format!(
                    "parameter `{}` is repeated",
                    name.chars().take(64).collect::<String>()
                )));
            }
            params.push((name.into_owned(), value.into_owned()));
        }
        Ok(Self { params })
    }

    /// The value of single-valued parameter `name`; an empty value counts as absent (RFC 6749
    /// §3.1).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// `name`, which is required: `invalid_request` naming it when absent.
    pub fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("`{name}` is required")))
    }

    /// Every non-empty value of repeatable parameter `name`, in order.
    pub fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.params
            .iter()
            .filter(move |(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::error::ErrorCode;
    use axum::http::HeaderValue;

    fn form_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded; charset=UTF-8"),
        );
        headers
    }

    #[test]
    fn parses_percent_encoded_values_and_repeated_audiences() {
        let form = Form::parse(
            &form_headers(),
            b"grant_type=a%3Ab&audience=x&audience=y&scope=read+write&empty=",
        )
        .unwrap();
        assert_eq!(form.get("grant_type"), Some("a:b"));
        assert_eq!(form.all("audience").collect::<Vec<_>>(), ["x", "y"]);
        assert_eq!(form.get("scope"), Some("read write"));
        assert_eq!(form.get("empty"), None);
        assert_eq!(
            form.require("subject_token").unwrap_err().description,
            "`subject_token` is required"
        );
    }

    #[test]
    fn refuses_a_repeated_single_valued_parameter() {
        let err = Form::parse(&form_headers(), b"subject_token=a&subject_token=b").unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidRequest);
        assert!(err.description.contains("`subject_token` is repeated"));
    }

    #[test]
    fn refuses_other_content_types_and_too_many_parameters() {
        let mut json = HeaderMap::new();
        json.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        assert_eq!(
            Form::parse(&json, b"a=b").unwrap_err().code,
            ErrorCode::InvalidRequest
        );
        assert!(Form::parse(&HeaderMap::new(), b"a=b").is_err());
        let many: String = (0..=MAX_PARAMETERS)
            .map(|i| format!("audience=a{i}&"))
            .collect();
        assert!(
            Form::parse(&form_headers(), many.as_bytes())
                .unwrap_err()
                .description
                .contains("more than")
        );
    }
}
