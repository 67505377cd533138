//! The filter of `GET /api/v1/entries` and its query-string form:
//! `?spiffe_id=…&parent_id=…&selector=…&selector=…&owner=…` (`selector` repeats; the others may
//! appear once). Values are percent-encoded UTF-8; `+` decodes to a space as in HTML forms.

use percent_encoding::percent_decode_str;

use crate::WireError;
use crate::paths::encode_segment;

/// Most parameters accepted in one query string.
pub const MAX_QUERY_PARAMETERS: usize = 256;

/// Which entries to list; empty fields match everything, `selectors` must all be present.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryQuery {
    pub spiffe_id: Option<String>,
    pub parent_id: Option<String>,
    pub selectors: Vec<String>,
    pub owner: Option<String>,
}

impl EntryQuery {
    /// The query string, without the leading `?` (empty when nothing is filtered).
    pub fn to_query_string(&self) -> String {
        let singles = [
            ("spiffe_id", &self.spiffe_id),
            ("parent_id", &self.parent_id),
            ("owner", &self.owner),
        ];
        let mut pairs: Vec<String> = singles
            .iter()
            .filter_map(|(key, value)| {
                value
                    .as_deref()
                    .map(|v| format!("{key}={}", encode_segment(v)))
            })
            .collect();
        pairs.extend(
            self.selectors
                .iter()
                .map(|s| format!("selector={}", encode_segment(s))),
        );
        pairs.join("&")
    }

    /// Decodes a query string (without the leading `?`). Fails on unknown parameters, repeated
    /// single-valued ones, bad percent-encoding, or more than [`MAX_QUERY_PARAMETERS`] pairs.
    pub fn parse(query: &str) -> Result<Self, WireError> {
        let mut out = Self::default();
        for (count, pair) in query.split('&').filter(|p| !p.is_empty()).enumerate() {
            if count >= MAX_QUERY_PARAMETERS {
                return Err(WireError::TooManyQueryParameters {
                    max: MAX_QUERY_PARAMETERS,
                });
            }
            let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = decode(raw_key, raw_key)?;
            let value = decode(raw_value, &key)?;
            let slot = match key.as_str() {
                "selector" => {
                    out.selectors.push(value);
                    continue;
                }
                "spiffe_id" => &mut out.spiffe_id,
                "parent_id" => &mut out.parent_id,
                "owner" => &mut out.owner,
                _ => return Err(WireError::UnknownQueryParameter(truncate(&key))),
            };
            if slot.replace(value).is_some() {
                return Err(WireError::RepeatedQueryParameter(key));
            }
        }
        Ok(out)
    }
}

fn decode(raw: &str, key_for_error: &str) -> Result<String, WireError> {
    let spaced = raw.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|v| v.into_owned())
        .map_err(|_| WireError::BadQueryEncoding(truncate(key_for_error)))
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_field() {
        let q = EntryQuery {
            spiffe_id: Some("spiffe://td/a b".into()),
            parent_id: Some("spiffe://td/p".into()),
            selectors: vec!["unix:uid:1000".into(), "k8s:ns:a&b=c+d".into()],
            owner: Some("team x".into()),
        };
        let s = q.to_query_string();
        assert_eq!(EntryQuery::parse(&s).unwrap(), q);
    }

    #[test]
    fn empty_query_matches_everything() {
        assert_eq!(EntryQuery::parse("").unwrap(), EntryQuery::default());
        assert_eq!(EntryQuery::default().to_query_string(), "");
    }

    #[test]
    fn plus_decodes_to_space() {
        let q = EntryQuery::parse("owner=team+x").unwrap();
        assert_eq!(q.owner.as_deref(), Some("team x"));
    }

    #[test]
    fn rejects_unknown_repeated_and_badly_encoded_parameters() {
        assert_eq!(
            EntryQuery::parse("selectors=unix:uid:1"),
            Err(WireError::UnknownQueryParameter("selectors".into()))
        );
        assert_eq!(
            EntryQuery::parse("owner=a&owner=b"),
            Err(WireError::RepeatedQueryParameter("owner".into()))
        );
        assert_eq!(
            EntryQuery::parse("owner=%FF"),
            Err(WireError::BadQueryEncoding("owner".into()))
        );
    }

    #[test]
    fn rejects_too_many_parameters() {
        let q = vec!["selector=a:b"; MAX_QUERY_PARAMETERS + 1].join("&");
        assert!(matches!(
            EntryQuery::parse(&q),
            Err(WireError::TooManyQueryParameters { .. })
        ));
    }
}
