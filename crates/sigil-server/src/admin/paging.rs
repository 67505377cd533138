//! Pages of the admin list calls: `page_size` and `page_token` parsed into a keyset bound, and
//! the `next_page_token` of an answer. The token is the unpadded base64url of the last key of
//! the previous page; it is opaque to callers, who only hand it back.

use base64::Engine as _;
use base64::alphabet::URL_SAFE;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use sigil_api::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, MAX_PAGE_TOKEN_CHARS, PageQuery};

use super::api_error::ApiError;

/// Unpadded base64url that also decodes tokens with non-zero trailing bits, so every string the
/// OpenAPI pattern allows decodes: the document states exactly what is accepted.
const TOKEN: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

/// One page to read: records with a key greater than `after`, at most `size` of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PageRequest {
    pub(crate) after: Option<String>,
    pub(crate) size: u32,
}

impl PageRequest {
    /// Parses `page_size` (1..=[`MAX_PAGE_SIZE`], default [`DEFAULT_PAGE_SIZE`]) and
    /// `page_token` (absent or empty for the first page). A 400 naming the parameter for
    /// anything else.
    pub(crate) fn parse(query: &PageQuery) -> Result<Self, ApiError> {
        let size = match query.page_size.as_deref() {
            None => DEFAULT_PAGE_SIZE,
            Some(raw) => parse_page_size(raw)?,
        };
        let after = match query.page_token.as_deref() {
            None | Some("") => None,
            Some(raw) => Some(decode_token(raw)?),
        };
        Ok(Self { after, size })
    }

    /// How many records to ask the store for: one more than the page, so a full page tells
    /// whether another follows without an extra round trip.
    pub(crate) fn fetch_limit(&self) -> u32 {
        self.size.saturating_add(1)
    }

    /// Cuts `records` (read with [`Self::fetch_limit`]) to the page and returns the token of the
    /// next page, `None` when this is the last one.
    pub(crate) fn finish<T>(
        &self,
        records: &mut Vec<T>,
        key: impl Fn(&T) -> &str,
    ) -> Option<String> {
        let size = usize::try_from(self.size).unwrap_or(usize::MAX);
        if records.len() <= size {
            return None;
        }
        records.truncate(size);
        records.last().map(|last| TOKEN.encode(key(last)))
    }
}

fn parse_page_size(raw: &str) -> Result<u32, ApiError> {
    let bad = |reason: &str| ApiError::invalid_value("page_size", raw, reason);
    // Digits only: `u32::from_str` would also take a leading `+`, which the document's
    // `integer` does not.
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("not a whole number"));
    }
    match raw.parse::<u32>() {
        Ok(size) if (1..=MAX_PAGE_SIZE).contains(&size) => Ok(size),
        _ => Err(bad(&format!("must be from 1 to {MAX_PAGE_SIZE}"))),
    }
}

/// The key a token names. Tokens this server issued are base64url of a UTF-8 key; a token
/// someone made up that still decodes names some position in the key order, which only reads a
/// different page, so its bytes are taken as they come (lossily) rather than refused.
fn decode_token(raw: &str) -> Result<String, ApiError> {
    if raw.chars().count() > MAX_PAGE_TOKEN_CHARS {
        return Err(ApiError::invalid(format!(
            "invalid page_token: longer than {MAX_PAGE_TOKEN_CHARS} characters"
        )));
    }
    let bytes = TOKEN.decode(raw).map_err(|_| {
        ApiError::invalid_value("page_token", raw, "not a page token of this server")
    })?;
    let key = String::from_utf8_lossy(&bytes);
    // No key holds NUL (and PostgreSQL text cannot), so a made-up one is cut there.
    let key = key.split('\0').next().unwrap_or_default();
    Ok(key.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(size: Option<&str>, token: Option<&str>) -> PageQuery {
        PageQuery {
            page_size: size.map(str::to_owned),
            page_token: token.map(str::to_owned),
        }
    }

    #[test]
    fn absent_parameters_read_the_first_page_at_the_default_size() {
        let page = PageRequest::parse(&query(None, None)).unwrap();
        assert_eq!(
            page,
            PageRequest {
                after: None,
                size: DEFAULT_PAGE_SIZE
            }
        );
        let page = PageRequest::parse(&query(Some("1000"), Some(""))).unwrap();
        assert_eq!(
            page,
            PageRequest {
                after: None,
                size: 1000
            }
        );
    }

    #[test]
    fn next_token_round_trips_the_last_key() {
        let page = PageRequest {
            after: None,
            size: 2,
        };
        let mut records = vec!["a", "b", "spiffe://td/ü"];
        let token = page.finish(&mut records, |r| r).unwrap();
        assert_eq!(records, ["a", "b"]);
        let next = PageRequest::parse(&query(Some("2"), Some(&token))).unwrap();
        assert_eq!(next.after.as_deref(), Some("b"));

        let mut last_page = vec!["c", "d"];
        assert_eq!(page.finish(&mut last_page, |r| r), None);
        assert_eq!(last_page, ["c", "d"]);
    }

    #[test]
    fn bad_page_size_is_refused_naming_it() {
        for raw in ["0", "1001", "-1", "+5", "", "ten", "99999999999"] {
            let err = PageRequest::parse(&query(Some(raw), None)).unwrap_err();
            assert!(err.message.contains("page_size"), "{raw}: {}", err.message);
        }
    }

    #[test]
    fn malformed_token_is_refused_naming_it() {
        // The positive path first: a token this module wrote decodes.
        let good = TOKEN.encode("0123abcd");
        assert!(PageRequest::parse(&query(None, Some(&good))).is_ok());
        let too_long = "A".repeat(MAX_PAGE_TOKEN_CHARS + 4);
        for raw in ["a", "abcde", "ab=", "a+b/", "%%%%", too_long.as_str()] {
            let err = PageRequest::parse(&query(None, Some(raw))).unwrap_err();
            assert!(err.message.contains("page_token"), "{raw}: {}", err.message);
        }
    }

    #[test]
    fn made_up_tokens_that_decode_are_accepted() {
        // Invalid UTF-8 and NUL bytes: a position in the key order, never an error.
        for bytes in [&[0xff, 0xfe][..], b"ab\0cd", b"\0"] {
            let token = TOKEN.encode(bytes);
            let page = PageRequest::parse(&query(None, Some(&token))).unwrap();
            assert!(!page.after.unwrap().contains('\0'));
        }
        // Non-zero trailing bits, as a generator following the pattern may write.
        assert!(PageRequest::parse(&query(None, Some("AB"))).is_ok());
    }
}
