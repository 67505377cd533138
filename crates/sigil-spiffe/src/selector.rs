//! Selectors: `type:value` facts about a node or workload (`unix:uid:1000`, `unix:sha256:ab…`).
//! The type is the text before the first `:`; the value is everything after it and may itself
//! contain `:`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest selector type accepted, in bytes.
pub const MAX_SELECTOR_TYPE_BYTES: usize = 64;
/// Longest selector value accepted, in bytes.
pub const MAX_SELECTOR_VALUE_BYTES: usize = 1024;

/// Why a string is not a selector.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("selector `{0}` has no `:` between type and value (expected `type:value`)")]
    MissingSeparator(String),
    #[error("selector type is empty")]
    EmptyType,
    #[error("selector value is empty")]
    EmptyValue,
    #[error("selector type is longer than {MAX_SELECTOR_TYPE_BYTES} bytes")]
    TypeTooLong,
    #[error("selector value is longer than {MAX_SELECTOR_VALUE_BYTES} bytes")]
    ValueTooLong,
    #[error("selector type `{0}` may only hold lowercase letters, digits, `_` and `-`")]
    BadType(String),
    #[error("selector value has a control or whitespace character")]
    BadValue,
}

/// A valid selector.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Selector {
    kind: String,
    value: String,
}

impl Selector {
    /// Parses `type:value`.
    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        let (kind, value) = input
            .split_once(':')
            .ok_or_else(|| SelectorError::MissingSeparator(input.chars().take(80).collect()))?;
        Self::new(kind, value)
    }

    /// Builds a selector from its two parts, with the same checks as [`Selector::parse`].
    pub fn new(kind: &str, value: &str) -> Result<Self, SelectorError> {
        if kind.is_empty() {
            return Err(SelectorError::EmptyType);
        }
        if value.is_empty() {
            return Err(SelectorError::EmptyValue);
        }
        if kind.len() > MAX_SELECTOR_TYPE_BYTES {
            return Err(SelectorError::TypeTooLong);
        }
        if value.len() > MAX_SELECTOR_VALUE_BYTES {
            return Err(SelectorError::ValueTooLong);
        }
        if !kind
            .chars()
            .all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_' | '-'))
        {
            return Err(SelectorError::BadType(kind.chars().take(80).collect()));
        }
        if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(SelectorError::BadValue);
        }
        Ok(Self {
            kind: kind.to_owned(),
            value: value.to_owned(),
        })
    }

    /// The type, such as `unix`.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The value, such as `uid:1000`.
    pub fn value(&self) -> &str {
        &self.value
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.value)
    }
}

impl FromStr for Selector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Selector {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Selector {
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
    fn value_may_contain_colons() {
        let s = Selector::parse("unix:uid:1000").unwrap();
        assert_eq!(s.kind(), "unix");
        assert_eq!(s.value(), "uid:1000");
        assert_eq!(s.to_string(), "unix:uid:1000");
    }

    #[test]
    fn rejects_missing_parts() {
        assert!(matches!(
            Selector::parse("unix"),
            Err(SelectorError::MissingSeparator(_))
        ));
        assert_eq!(Selector::parse(":uid"), Err(SelectorError::EmptyType));
        assert_eq!(Selector::parse("unix:"), Err(SelectorError::EmptyValue));
        assert!(matches!(
            Selector::parse("Un ix:uid:1"),
            Err(SelectorError::BadType(_))
        ));
        assert_eq!(Selector::parse("unix:uid 1"), Err(SelectorError::BadValue));
    }

    proptest! {
        #[test]
        fn round_trips(kind in "[a-z0-9_-]{1,20}", value in "[!-~]{1,100}") {
            let s = Selector::parse(&format!("{kind}:{value}")).unwrap();
            prop_assert_eq!(s.kind(), kind.as_str());
            prop_assert_eq!(s.value(), value.as_str());
            prop_assert_eq!(Selector::parse(&s.to_string()).unwrap(), s);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,100}") {
            let _ = Selector::parse(&s);
        }
    }
}
