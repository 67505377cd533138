//! Selectors: `type:value` facts about a node or workload (`unix:uid:1000`, `unix:sha256:ab…`).
//! The type is the text before the first `:`; the value is everything after it and may itself
//! contain `:`. Values of the `unix` type, which Sigil's own workload attestor produces, must be
//! ones it can produce, so an entry that could never match is refused when it is written.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest selector type accepted, in bytes.
pub const MAX_SELECTOR_TYPE_BYTES: usize = 64;
/// Longest selector value accepted, in characters (so the admin API's OpenAPI document can state
/// it as a length).
pub const MAX_SELECTOR_VALUE_CHARS: usize = 1024;

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
    #[error("selector value is longer than {MAX_SELECTOR_VALUE_CHARS} characters")]
    ValueTooLong,
    #[error("selector type `{0}` may only hold lowercase letters, digits, `_` and `-`")]
    BadType(String),
    #[error("selector value has a control or whitespace character")]
    BadValue,
    #[error(
        "unknown unix selector `{0}` (expected one of {keys})",
        keys = UNIX_SELECTOR_KEYS.join(", ")
    )]
    UnknownUnixKey(String),
    #[error("unix selector `{key}` {expected}")]
    BadUnixValue {
        key: &'static str,
        expected: &'static str,
    },
}

/// The keys of `unix` selectors (`unix:<key>:<value>`), as the `unix` workload attestor emits
/// them.
pub const UNIX_SELECTOR_KEYS: [&str; 8] = [
    "uid",
    "gid",
    "user",
    "group",
    "supplementary_gid",
    "supplementary_group",
    "path",
    "sha256",
];

/// What a `unix` selector's value must look like, by key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UnixValueKind {
    /// A uid or gid: a `u32` in canonical decimal (no sign, no leading zero).
    Id,
    /// A user or group name: non-empty, without `:`.
    Name,
    /// An absolute path (starts with `/`).
    AbsolutePath,
    /// A SHA-256 digest: 64 lowercase hex digits.
    Sha256,
}

impl UnixValueKind {
    /// The kind of value `key` takes, or `None` for a key the attestor never emits.
    fn of_key(key: &str) -> Option<Self> {
        match key {
            "uid" | "gid" | "supplementary_gid" => Some(Self::Id),
            "user" | "group" | "supplementary_group" => Some(Self::Name),
            "path" => Some(Self::AbsolutePath),
            "sha256" => Some(Self::Sha256),
            _ => None,
        }
    }

    /// Checks `value` against this kind; the error text completes "unix selector `key` …".
    fn check(self, value: &str) -> Result<(), &'static str> {
        let ok = match self {
            Self::Id => {
                value.bytes().all(|b| b.is_ascii_digit())
                    && (value == "0" || !value.starts_with('0'))
                    && value.parse::<u32>().is_ok()
            }
            Self::Name => !value.is_empty() && !value.contains(':'),
            Self::AbsolutePath => value.starts_with('/'),
            Self::Sha256 => {
                value.len() == 64
                    && value
                        .bytes()
                        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            }
        };
        if ok {
            return Ok(());
        }
        Err(match self {
            Self::Id => "takes a decimal number from 0 to 4294967295, without sign or leading zero",
            Self::Name => "takes a non-empty name without `:`",
            Self::AbsolutePath => "takes an absolute path (starting with `/`)",
            Self::Sha256 => "takes 64 lowercase hex digits",
        })
    }
}

/// A valid selector.
///
/// Held as one `type:value` string (the type holds no `:`), as compact as a registration entry
/// with a million siblings wants it. Ordered by type, then value.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Selector {
    full: Box<str>,
    /// Length of the type in bytes: at most [`MAX_SELECTOR_TYPE_BYTES`].
    kind_len: u8,
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
        if value.chars().count() > MAX_SELECTOR_VALUE_CHARS {
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
        if kind == UNIX_SELECTOR_TYPE {
            check_unix_value(value)?;
        }
        Ok(Self {
            full: format!("{kind}:{value}").into_boxed_str(),
            kind_len: u8::try_from(kind.len()).map_err(|_| SelectorError::TypeTooLong)?,
        })
    }

    /// The type, such as `unix`.
    pub fn kind(&self) -> &str {
        self.full
            .get(..usize::from(self.kind_len))
            .unwrap_or_default()
    }

    /// The value, such as `uid:1000`.
    pub fn value(&self) -> &str {
        self.full
            .get(usize::from(self.kind_len) + 1..)
            .unwrap_or_default()
    }
}

// By type, then value (not by the joined string, where `a-b:x` would sort before `a:x`): the
// order stored entries' selector lists were sorted in.
impl Ord for Selector {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.kind(), self.value()).cmp(&(other.kind(), other.value()))
    }
}

impl PartialOrd for Selector {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Selector")
            .field("kind", &self.kind())
            .field("value", &self.value())
            .finish()
    }
}

/// The selector type of Sigil's `unix` workload attestor.
pub const UNIX_SELECTOR_TYPE: &str = "unix";

/// `value` of a `unix` selector: `<key>:<value>` with a known key and a value of its kind.
fn check_unix_value(value: &str) -> Result<(), SelectorError> {
    let (key, rest) = value.split_once(':').unwrap_or((value, ""));
    let (key, kind) = UNIX_SELECTOR_KEYS
        .iter()
        .find(|k| **k == key)
        .and_then(|k| UnixValueKind::of_key(k).map(|kind| (*k, kind)))
        .ok_or_else(|| SelectorError::UnknownUnixKey(key.chars().take(80).collect()))?;
    kind.check(rest)
        .map_err(|expected| SelectorError::BadUnixValue { key, expected })
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
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

    #[test]
    fn accepts_every_unix_selector_the_attestor_emits() {
        let hash = "0123456789abcdef".repeat(4);
        for s in [
            "unix:uid:0".to_owned(),
            "unix:uid:1000".to_owned(),
            "unix:uid:4294967295".to_owned(),
            "unix:gid:50".to_owned(),
            "unix:supplementary_gid:27".to_owned(),
            "unix:user:root".to_owned(),
            "unix:group:www-data".to_owned(),
            "unix:supplementary_group:sudo".to_owned(),
            "unix:user:ñandú".to_owned(),
            "unix:path:/usr/bin/python3.11".to_owned(),
            "unix:path:/opt/a:b".to_owned(),
            format!("unix:sha256:{hash}"),
        ] {
            assert!(Selector::parse(&s).is_ok(), "{s}");
        }
    }

    #[test]
    fn unix_ids_must_be_u32_in_canonical_decimal() {
        let expected = Err(SelectorError::BadUnixValue {
            key: "uid",
            expected: "takes a decimal number from 0 to 4294967295, without sign or leading zero",
        });
        for bad in [
            "abc",
            "-1",
            "+1",
            "4294967296",
            "01",
            "1.0",
            "0x10",
            "",
            "1e3",
        ] {
            assert_eq!(
                Selector::parse(&format!("unix:uid:{bad}")),
                expected,
                "{bad}"
            );
        }
        assert!(matches!(
            Selector::parse("unix:gid:-1"),
            Err(SelectorError::BadUnixValue { key: "gid", .. })
        ));
        assert!(matches!(
            Selector::parse("unix:supplementary_gid:x"),
            Err(SelectorError::BadUnixValue {
                key: "supplementary_gid",
                ..
            })
        ));
    }

    #[test]
    fn unix_names_paths_and_hashes_are_checked() {
        for (bad, key) in [
            ("unix:user:", "user"),
            ("unix:group:a:b", "group"),
            ("unix:supplementary_group:", "supplementary_group"),
            ("unix:path:usr/bin/x", "path"),
            ("unix:path:", "path"),
            ("unix:sha256:ABCDEF", "sha256"),
            ("unix:sha256:abc", "sha256"),
        ] {
            assert!(
                matches!(Selector::parse(bad), Err(SelectorError::BadUnixValue { key: k, .. }) if k == key),
                "{bad}: {:?}",
                Selector::parse(bad)
            );
        }
        let upper = "A".repeat(64);
        assert!(Selector::parse(&format!("unix:sha256:{upper}")).is_err());
    }

    #[test]
    fn unknown_unix_keys_are_refused_and_other_types_are_free_form() {
        assert_eq!(
            Selector::parse("unix:pid:1"),
            Err(SelectorError::UnknownUnixKey("pid".into()))
        );
        assert!(matches!(
            Selector::parse("unix:uid"),
            Err(SelectorError::BadUnixValue { key: "uid", .. })
        ));
        let msg = Selector::parse("unix:uidd:1").unwrap_err().to_string();
        assert_eq!(
            msg,
            "unknown unix selector `uidd` (expected one of uid, gid, user, group, \
             supplementary_gid, supplementary_group, path, sha256)"
        );
        assert!(Selector::parse("docker:label:a").is_ok());
        assert!(Selector::parse("join_token:id:abc").is_ok());
    }

    #[test]
    fn orders_by_type_then_value_not_by_the_joined_string() {
        let mut list = [
            Selector::parse("a:x").unwrap(),
            Selector::parse("a-b:w").unwrap(),
            Selector::parse("a:w").unwrap(),
        ];
        list.sort();
        let sorted: Vec<String> = list.iter().map(ToString::to_string).collect();
        // `-` sorts before `:`, so the joined strings would put `a-b:w` first.
        assert_eq!(sorted, ["a:w", "a:x", "a-b:w"]);
        assert_eq!(
            format!("{:?}", list[0]),
            r#"Selector { kind: "a", value: "w" }"#
        );
    }

    proptest! {
        #[test]
        fn round_trips(kind in "[a-z0-9_-]{1,20}", value in "[!-~]{1,100}") {
            prop_assume!(kind != UNIX_SELECTOR_TYPE);
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
