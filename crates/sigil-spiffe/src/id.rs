//! SPIFFE IDs and trust domains, parsed exactly as the SPIFFE-ID standard states.
//!
//! Rules (SPIFFE-ID spec §2): scheme `spiffe` in lowercase; the trust domain holds only
//! `a-z 0-9 . - _` (so no uppercase, port, userinfo or percent-encoding) and is at most 255 bytes;
//! the path is empty or a sequence of `/segment`, each segment non-empty, made of
//! `a-z A-Z 0-9 . - _`, and never `.` or `..`; no trailing slash, query or fragment; the whole ID
//! is at most 2048 bytes.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest SPIFFE ID accepted, in bytes (SPIFFE-ID spec §2.3).
pub const MAX_SPIFFE_ID_BYTES: usize = 2048;
/// Longest trust domain name accepted, in bytes (SPIFFE-ID spec §2.1).
pub const MAX_TRUST_DOMAIN_BYTES: usize = 255;

const SCHEME_PREFIX: &str = "spiffe://";

/// Path of the Sigil server's SPIFFE ID in every trust domain.
pub const SIGIL_SERVER_PATH: &str = "/sigil/server";

/// Why a string is not a SPIFFE ID or trust domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeIdError {
    #[error("SPIFFE ID is empty")]
    Empty,
    #[error("SPIFFE ID is longer than {MAX_SPIFFE_ID_BYTES} bytes")]
    TooLong,
    #[error("SPIFFE ID must start with `spiffe://` (lowercase scheme)")]
    WrongScheme,
    #[error("trust domain is missing")]
    MissingTrustDomain,
    #[error("trust domain is longer than {MAX_TRUST_DOMAIN_BYTES} bytes")]
    TrustDomainTooLong,
    #[error(
        "trust domain has the character `{0}`: only lowercase letters, digits, `.`, `-` and `_` are allowed (no port, userinfo or uppercase)"
    )]
    BadTrustDomainChar(char),
    #[error("path has an empty segment (`//` or a trailing `/`)")]
    EmptySegment,
    #[error("path has a `.` or `..` segment")]
    DotSegment,
    #[error(
        "path has the character `{0}`: only letters, digits, `.`, `-` and `_` are allowed in segments (no query, fragment or percent-encoding)"
    )]
    BadPathChar(char),
}

/// A valid SPIFFE trust domain name, such as `example.org`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TrustDomain(String);

/// A valid SPIFFE ID such as `spiffe://example.org/ns/prod/sa/api`.
///
/// Cloning is cheap and shares the text: the server's entry index holds each parent ID once for
/// all the entries under it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpiffeId {
    full: Arc<str>,
    /// Byte offset where the path starts (equals `full.len()` when the path is empty).
    path_start: usize,
}

impl TrustDomain {
    /// Parses a bare trust domain name (`example.org`) or a trust domain ID
    /// (`spiffe://example.org`, no path), as SPIFFE libraries accept both.
    pub fn parse(input: &str) -> Result<Self, SpiffeIdError> {
        if input.starts_with(SCHEME_PREFIX) {
            let id = SpiffeId::parse(input)?;
            if !id.path().is_empty() {
                return Err(SpiffeIdError::BadTrustDomainChar('/'));
            }
            return Ok(id.trust_domain());
        }
        if input.contains("://") {
            return Err(SpiffeIdError::WrongScheme);
        }
        validate_trust_domain(input)?;
        Ok(Self(input.to_owned()))
    }

    /// The name, such as `example.org`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The trust domain's own ID, `spiffe://<name>`.
    pub fn id_string(&self) -> String {
        format!("{SCHEME_PREFIX}{}", self.0)
    }

    /// `spiffe://<td>/sigil/server`: the Sigil server's own ID, which agents verify and which
    /// marks node-alias entries. Built without parsing: a valid trust domain (at most 255 bytes)
    /// plus this constant path is always a valid SPIFFE ID.
    pub fn sigil_server_id(&self) -> SpiffeId {
        SpiffeId {
            full: format!("{SCHEME_PREFIX}{}{SIGIL_SERVER_PATH}", self.0).into(),
            path_start: SCHEME_PREFIX.len() + self.0.len(),
        }
    }

    /// A SPIFFE ID in this trust domain with `path`, which must start with `/`.
    pub fn id_with_path(&self, path: &str) -> Result<SpiffeId, SpiffeIdError> {
        SpiffeId::parse(&format!("{SCHEME_PREFIX}{}{path}", self.0))
    }
}

impl SpiffeId {
    /// Parses a SPIFFE ID, rejecting anything the SPIFFE-ID standard rejects.
    pub fn parse(input: &str) -> Result<Self, SpiffeIdError> {
        if input.is_empty() {
            return Err(SpiffeIdError::Empty);
        }
        if input.len() > MAX_SPIFFE_ID_BYTES {
            return Err(SpiffeIdError::TooLong);
        }
        let rest = input
            .strip_prefix(SCHEME_PREFIX)
            .ok_or(SpiffeIdError::WrongScheme)?;
        let (td, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        validate_trust_domain(td)?;
        validate_path(path)?;
        Ok(Self {
            full: input.into(),
            path_start: SCHEME_PREFIX.len() + td.len(),
        })
    }

    /// The trust domain this ID belongs to.
    pub fn trust_domain(&self) -> TrustDomain {
        TrustDomain(self.trust_domain_str().to_owned())
    }

    /// The trust domain name as a string slice.
    pub fn trust_domain_str(&self) -> &str {
        self.full
            .get(SCHEME_PREFIX.len()..self.path_start)
            .unwrap_or_default()
    }

    /// The path, empty or starting with `/`.
    pub fn path(&self) -> &str {
        self.full.get(self.path_start..).unwrap_or_default()
    }

    /// Whether this ID belongs to `td`.
    pub fn is_member_of(&self, td: &TrustDomain) -> bool {
        self.trust_domain_str() == td.as_str()
    }

    /// The whole ID as a string.
    pub fn as_str(&self) -> &str {
        &self.full
    }
}

fn validate_trust_domain(td: &str) -> Result<(), SpiffeIdError> {
    if td.is_empty() {
        return Err(SpiffeIdError::MissingTrustDomain);
    }
    if td.len() > MAX_TRUST_DOMAIN_BYTES {
        return Err(SpiffeIdError::TrustDomainTooLong);
    }
    match td
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '-' | '_'))
    {
        Some(c) => Err(SpiffeIdError::BadTrustDomainChar(c)),
        None => Ok(()),
    }
}

fn validate_path(path: &str) -> Result<(), SpiffeIdError> {
    if path.is_empty() {
        return Ok(());
    }
    // `path` starts with '/', so the first split item is the empty string before it.
    for segment in path.split('/').skip(1) {
        if segment.is_empty() {
            return Err(SpiffeIdError::EmptySegment);
        }
        if segment == "." || segment == ".." {
            return Err(SpiffeIdError::DotSegment);
        }
        if let Some(c) = segment
            .chars()
            .find(|c| !matches!(c, 'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_'))
        {
            return Err(SpiffeIdError::BadPathChar(c));
        }
    }
    Ok(())
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl FromStr for TrustDomain {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for SpiffeId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.full)
    }
}

impl<'de> Deserialize<'de> for SpiffeId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for TrustDomain {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TrustDomain {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_spec_examples() {
        for ok in [
            "spiffe://example.org",
            "spiffe://example.org/ns/prod/sa/api",
            "spiffe://a_b-c.d9/A.b-C_9/..x/x..",
        ] {
            assert!(SpiffeId::parse(ok).is_ok(), "{ok}");
        }
        let id = SpiffeId::parse("spiffe://example.org/a/b").unwrap();
        assert_eq!(id.trust_domain().as_str(), "example.org");
        assert_eq!(id.path(), "/a/b");
    }

    #[test]
    fn rejects_wrong_scheme() {
        for bad in [
            "SPIFFE://example.org/a",
            "https://example.org/a",
            "example.org/a",
            "spiffe:/x",
        ] {
            assert_eq!(
                SpiffeId::parse(bad),
                Err(SpiffeIdError::WrongScheme),
                "{bad}"
            );
        }
    }

    #[test]
    fn rejects_trust_domain_with_port_userinfo_or_uppercase() {
        assert_eq!(
            SpiffeId::parse("spiffe://example.org:8080/a"),
            Err(SpiffeIdError::BadTrustDomainChar(':'))
        );
        assert_eq!(
            SpiffeId::parse("spiffe://user@example.org/a"),
            Err(SpiffeIdError::BadTrustDomainChar('@'))
        );
        assert_eq!(
            SpiffeId::parse("spiffe://Example.org/a"),
            Err(SpiffeIdError::BadTrustDomainChar('E'))
        );
        assert_eq!(
            SpiffeId::parse("spiffe:///a"),
            Err(SpiffeIdError::MissingTrustDomain)
        );
    }

    #[test]
    fn rejects_dot_empty_and_trailing_segments() {
        assert_eq!(
            SpiffeId::parse("spiffe://td/a/./b"),
            Err(SpiffeIdError::DotSegment)
        );
        assert_eq!(
            SpiffeId::parse("spiffe://td/a/.."),
            Err(SpiffeIdError::DotSegment)
        );
        assert_eq!(
            SpiffeId::parse("spiffe://td/a//b"),
            Err(SpiffeIdError::EmptySegment)
        );
        assert_eq!(
            SpiffeId::parse("spiffe://td/a/"),
            Err(SpiffeIdError::EmptySegment)
        );
        assert_eq!(
            SpiffeId::parse("spiffe://td/"),
            Err(SpiffeIdError::EmptySegment)
        );
    }

    #[test]
    fn rejects_query_fragment_and_percent_encoding() {
        assert_eq!(
            SpiffeId::parse("spiffe://td/a?x=1"),
            Err(SpiffeIdError::BadPathChar('?'))
        );
        assert_eq!(
            SpiffeId::parse("spiffe://td/a#f"),
            Err(SpiffeIdError::BadPathChar('#'))
        );
        assert_eq!(
            SpiffeId::parse("spiffe://td/a%20b"),
            Err(SpiffeIdError::BadPathChar('%'))
        );
        assert_eq!(
            SpiffeId::parse("spiffe://td?x"),
            Err(SpiffeIdError::BadTrustDomainChar('?'))
        );
    }

    #[test]
    fn rejects_ids_over_2048_bytes() {
        let long = format!("spiffe://td/{}", "a".repeat(MAX_SPIFFE_ID_BYTES));
        assert_eq!(SpiffeId::parse(&long), Err(SpiffeIdError::TooLong));
        let exact = format!("spiffe://td/{}", "a".repeat(MAX_SPIFFE_ID_BYTES - 12));
        assert!(SpiffeId::parse(&exact).is_ok());
        let td = format!("spiffe://{}", "a".repeat(256));
        assert_eq!(SpiffeId::parse(&td), Err(SpiffeIdError::TrustDomainTooLong));
    }

    #[test]
    fn sigil_server_id_equals_the_parsed_id() {
        for td in ["example.org", &"a".repeat(MAX_TRUST_DOMAIN_BYTES)] {
            let td = TrustDomain::parse(td).unwrap();
            let built = td.sigil_server_id();
            assert_eq!(built, SpiffeId::parse(built.as_str()).unwrap());
            assert_eq!(built.path(), SIGIL_SERVER_PATH);
            assert!(built.is_member_of(&td));
        }
    }

    #[test]
    fn trust_domain_accepts_name_or_id() {
        assert_eq!(
            TrustDomain::parse("example.org").unwrap().as_str(),
            "example.org"
        );
        assert_eq!(
            TrustDomain::parse("spiffe://example.org").unwrap().as_str(),
            "example.org"
        );
        assert!(TrustDomain::parse("spiffe://example.org/x").is_err());
        assert!(TrustDomain::parse("Example.org").is_err());
        assert!(TrustDomain::parse("").is_err());
    }

    fn td_strategy() -> impl Strategy<Value = String> {
        "[a-z0-9._-]{1,40}"
    }
    fn segment_strategy() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9._-]{1,20}".prop_filter("no dot segments", |s| s != "." && s != "..")
    }

    proptest! {
        #[test]
        fn valid_ids_round_trip(td in td_strategy(), segs in proptest::collection::vec(segment_strategy(), 0..6)) {
            let s = format!("spiffe://{td}{}", segs.iter().map(|s| format!("/{s}")).collect::<String>());
            let id = SpiffeId::parse(&s).unwrap();
            prop_assert_eq!(id.as_str(), s.as_str());
            prop_assert_eq!(id.trust_domain_str(), td.as_str());
            let reparsed = SpiffeId::parse(&id.to_string()).unwrap();
            prop_assert_eq!(reparsed, id);
        }

        #[test]
        fn any_char_outside_the_alphabet_is_rejected(td in td_strategy(), seg in segment_strategy(), c in any::<char>(), at_td in any::<bool>()) {
            prop_assume!(!c.is_ascii_alphanumeric() && !matches!(c, '.' | '-' | '_' | '/'));
            let s = if at_td { format!("spiffe://{td}{c}/{seg}") } else { format!("spiffe://{td}/{seg}{c}") };
            prop_assert!(SpiffeId::parse(&s).is_err());
        }

        #[test]
        fn uppercase_trust_domains_are_rejected(td in "[a-z]{0,10}[A-Z][a-z]{0,10}") {
            let id = format!("spiffe://{td}/x");
            prop_assert!(SpiffeId::parse(&id).is_err());
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,64}") {
            let _ = SpiffeId::parse(&s);
            let _ = SpiffeId::parse(&format!("spiffe://{s}"));
            let _ = TrustDomain::parse(&s);
        }
    }
}
