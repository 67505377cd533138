//! The query strings of the list calls: the filter and page of `GET /api/v1/entries`
//! (`?spiffe_id=…&spiffe_id_prefix=…&parent_id=…&selector=…&selector=…&owner=…&federates_with=…
//! &page_size=…&page_token=…`; `selector` repeats, the others may appear once), the page of
//! `GET /api/v1/agents` and the filter of `GET /api/v1/federations` (`?owner=…`). Values are percent-encoded UTF-8; `+` decodes to a space as in HTML
//! forms. Values stay strings here: the server parses them and names the one that is wrong.

use percent_encoding::percent_decode_str;

use crate::WireError;
use crate::paths::encode_segment;

/// Most parameters accepted in one query string.
pub const MAX_QUERY_PARAMETERS: usize = 256;
/// Records in a page when `page_size` is absent.
pub const DEFAULT_PAGE_SIZE: u32 = 500;
/// Most records in one page.
pub const MAX_PAGE_SIZE: u32 = 1000;
/// Longest `page_token` accepted, in characters: the base64url of the longest key (a SPIFFE ID
/// of 2048 bytes) fits.
pub const MAX_PAGE_TOKEN_CHARS: usize = 2800;

/// Which page of a list to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageQuery {
    /// Most records in the page (decimal; the server's default when absent).
    pub page_size: Option<String>,
    /// `next_page_token` of the previous page; absent for the first page.
    pub page_token: Option<String>,
}

/// Which entries to list; empty fields match everything, `selectors` must all be present.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryQuery {
    pub spiffe_id: Option<String>,
    /// Entries whose SPIFFE ID starts with this, compared literally.
    pub spiffe_id_prefix: Option<String>,
    pub parent_id: Option<String>,
    pub selectors: Vec<String>,
    pub owner: Option<String>,
    /// Entries that federate with this trust domain.
    pub federates_with: Option<String>,
    pub page: PageQuery,
}

/// Which agents to list: a page of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentQuery {
    pub page: PageQuery,
}

/// Which federation relationships to list (all of them, in one answer).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FederationQuery {
    /// Only the relationships with exactly this owner.
    pub owner: Option<String>,
}

impl FederationQuery {
    /// The query string, without the leading `?` (empty when nothing is filtered).
    pub fn to_query_string(&self) -> String {
        encode_pairs(&[("owner", &self.owner)], &[])
    }

    /// Decodes a query string (without the leading `?`). Fails on unknown parameters, a
    /// repeated `owner`, bad percent-encoding, or more than [`MAX_QUERY_PARAMETERS`] pairs.
    pub fn parse(query: &str) -> Result<Self, WireError> {
        let mut out = Self::default();
        for_each_pair(query, |key, value| {
            let slot = match key {
                "owner" => &mut out.owner,
                _ => return Err(WireError::UnknownQueryParameter(truncate(key))),
            };
            set_once(slot, key, value)
        })?;
        Ok(out)
    }
}

impl AgentQuery {
    /// The query string, without the leading `?` (empty for the first page at the default size).
    pub fn to_query_string(&self) -> String {
        encode_pairs(&self.page.singles(), &[])
    }

    /// Decodes a query string (without the leading `?`). Fails on unknown parameters, repeated
    /// ones, bad percent-encoding, or more than [`MAX_QUERY_PARAMETERS`] pairs.
    pub fn parse(query: &str) -> Result<Self, WireError> {
        let mut out = Self::default();
        for_each_pair(query, |key, value| {
            let slot = match key {
                "page_size" => &mut out.page.page_size,
                "page_token" => &mut out.page.page_token,
                _ => return Err(WireError::UnknownQueryParameter(truncate(key))),
            };
            set_once(slot, key, value)
        })?;
        Ok(out)
    }
}

impl PageQuery {
    pub(crate) fn singles(&self) -> [(&'static str, &Option<String>); 2] {
        [
            ("page_size", &self.page_size),
            ("page_token", &self.page_token),
        ]
    }
}

impl EntryQuery {
    /// The query string, without the leading `?` (empty when nothing is filtered).
    pub fn to_query_string(&self) -> String {
        let [size, token] = self.page.singles();
        let singles = [
            ("spiffe_id", &self.spiffe_id),
            ("spiffe_id_prefix", &self.spiffe_id_prefix),
            ("parent_id", &self.parent_id),
            ("owner", &self.owner),
            ("federates_with", &self.federates_with),
            size,
            token,
        ];
        encode_pairs(&singles, &self.selectors)
    }

    /// Decodes a query string (without the leading `?`). Fails on unknown parameters, repeated
    /// single-valued ones, bad percent-encoding, or more than [`MAX_QUERY_PARAMETERS`] pairs.
    pub fn parse(query: &str) -> Result<Self, WireError> {
        let mut out = Self::default();
        for_each_pair(query, |key, value| {
            let slot = match key {
                "selector" => {
                    out.selectors.push(value);
                    return Ok(());
                }
                "spiffe_id" => &mut out.spiffe_id,
                "spiffe_id_prefix" => &mut out.spiffe_id_prefix,
                "parent_id" => &mut out.parent_id,
                "owner" => &mut out.owner,
                "federates_with" => &mut out.federates_with,
                "page_size" => &mut out.page.page_size,
                "page_token" => &mut out.page.page_token,
                _ => return Err(WireError::UnknownQueryParameter(truncate(key))),
            };
            set_once(slot, key, value)
        })?;
        Ok(out)
    }
}

pub(crate) fn encode_pairs(singles: &[(&str, &Option<String>)], selectors: &[String]) -> String {
    let mut pairs: Vec<String> = singles
        .iter()
        .filter_map(|(key, value)| {
            value
                .as_deref()
                .map(|v| format!("{key}={}", encode_segment(v)))
        })
        .collect();
    pairs.extend(
        selectors
            .iter()
            .map(|s| format!("selector={}", encode_segment(s))),
    );
    pairs.join("&")
}

/// Calls `each` with every decoded `(key, value)` pair of `query`, at most
/// [`MAX_QUERY_PARAMETERS`] of them.
pub(crate) fn for_each_pair(
    query: &str,
    mut each: impl FnMut(&str, String) -> Result<(), WireError>,
) -> Result<(), WireError> {
    for (count, pair) in query.split('&').filter(|p| !p.is_empty()).enumerate() {
        if count >= MAX_QUERY_PARAMETERS {
            return Err(WireError::TooManyQueryParameters {
                max: MAX_QUERY_PARAMETERS,
            });
        }
        let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(raw_key, raw_key)?;
        let value = decode(raw_value, &key)?;
        each(&key, value)?;
    }
    Ok(())
}

pub(crate) fn set_once(
    slot: &mut Option<String>,
    key: &str,
    value: String,
) -> Result<(), WireError> {
    if slot.replace(value).is_some() {
        return Err(WireError::RepeatedQueryParameter(key.to_owned()));
    }
    Ok(())
}

fn decode(raw: &str, key_for_error: &str) -> Result<String, WireError> {
    let spaced = raw.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|v| v.into_owned())
        .map_err(|_| WireError::BadQueryEncoding(truncate(key_for_error)))
}

pub(crate) fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_field() {
        let q = EntryQuery {
            spiffe_id: Some("spiffe://td/a b".into()),
            spiffe_id_prefix: Some("spiffe://td/%_".into()),
            parent_id: Some("spiffe://td/p".into()),
            selectors: vec!["unix:uid:1000".into(), "k8s:ns:a&b=c+d".into()],
            owner: Some("team x".into()),
            federates_with: Some("other.org".into()),
            page: PageQuery {
                page_size: Some("2".into()),
                page_token: Some("YWJj=".into()),
            },
        };
        let s = q.to_query_string();
        assert_eq!(EntryQuery::parse(&s).unwrap(), q);
    }

    #[test]
    fn federation_query_round_trips_its_owner_and_refuses_anything_else() {
        let q = FederationQuery {
            owner: Some("team x&y=z".into()),
        };
        assert_eq!(FederationQuery::parse(&q.to_query_string()).unwrap(), q);
        assert_eq!(FederationQuery::default().to_query_string(), "");
        assert_eq!(
            FederationQuery::parse("").unwrap(),
            FederationQuery::default()
        );
        assert!(matches!(
            FederationQuery::parse("owner=a&owner=b"),
            Err(WireError::RepeatedQueryParameter(_))
        ));
        assert!(matches!(
            FederationQuery::parse("page_size=1"),
            Err(WireError::UnknownQueryParameter(_))
        ));
    }

    #[test]
    fn agent_query_round_trips_and_refuses_entry_filters() {
        let q = AgentQuery {
            page: PageQuery {
                page_size: Some("10".into()),
                page_token: Some("x y".into()),
            },
        };
        assert_eq!(AgentQuery::parse(&q.to_query_string()).unwrap(), q);
        assert_eq!(AgentQuery::default().to_query_string(), "");
        assert_eq!(
            AgentQuery::parse("owner=a"),
            Err(WireError::UnknownQueryParameter("owner".into()))
        );
        assert_eq!(
            AgentQuery::parse("page_size=1&page_size=2"),
            Err(WireError::RepeatedQueryParameter("page_size".into()))
        );
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
