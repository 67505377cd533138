//! Time-to-live values for SVIDs and tokens: whole seconds, bounded, written as `90`, `90s`,
//! `15m`, `1h` or `2d`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Shortest TTL accepted, in seconds.
pub const MIN_TTL_SECS: u64 = 1;
/// Longest TTL accepted (366 days), in seconds.
pub const MAX_TTL_SECS: u64 = 366 * 24 * 3600;

/// Why a string or number is not a TTL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TtlError {
    #[error("TTL `{0}` is not a number of seconds or a duration such as `90s`, `15m`, `1h`, `2d`")]
    Malformed(String),
    #[error(
        "TTL must be between {MIN_TTL_SECS} second and {MAX_TTL_SECS} seconds (366 days), got {0}"
    )]
    OutOfRange(u64),
}

/// A TTL in whole seconds, within [`MIN_TTL_SECS`]..=[`MAX_TTL_SECS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ttl(u64);

impl Ttl {
    /// A TTL of `secs` seconds, if within bounds.
    pub fn from_secs(secs: u64) -> Result<Self, TtlError> {
        if (MIN_TTL_SECS..=MAX_TTL_SECS).contains(&secs) {
            Ok(Self(secs))
        } else {
            Err(TtlError::OutOfRange(secs))
        }
    }

    /// Parses `90`, `90s`, `15m`, `1h` or `2d`.
    pub fn parse(input: &str) -> Result<Self, TtlError> {
        let malformed = || TtlError::Malformed(input.chars().take(40).collect());
        let trimmed = input.trim();
        let (digits, unit) = match trimmed.find(|c: char| !c.is_ascii_digit()) {
            Some(i) => trimmed.split_at(i),
            None => (trimmed, ""),
        };
        if digits.is_empty() || digits.len() > 12 {
            return Err(malformed());
        }
        let n: u64 = digits.parse().map_err(|_| malformed())?;
        let mult = match unit {
            "" | "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(malformed()),
        };
        Self::from_secs(n.saturating_mul(mult))
    }

    /// Seconds.
    pub fn as_secs(self) -> u64 {
        self.0
    }

    /// As a [`Duration`].
    pub fn as_duration(self) -> Duration {
        Duration::from_secs(self.0)
    }
}

impl fmt::Display for Ttl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s", self.0)
    }
}

impl FromStr for Ttl {
    type Err = TtlError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Ttl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for Ttl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(n) => Self::from_secs(n),
            Raw::Text(t) => Self::parse(&t),
        }
        .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_units() {
        assert_eq!(Ttl::parse("90").unwrap().as_secs(), 90);
        assert_eq!(Ttl::parse("90s").unwrap().as_secs(), 90);
        assert_eq!(Ttl::parse("15m").unwrap().as_secs(), 900);
        assert_eq!(Ttl::parse("1h").unwrap().as_secs(), 3600);
        assert_eq!(Ttl::parse("2d").unwrap().as_secs(), 172_800);
    }

    #[test]
    fn rejects_zero_negative_garbage_and_huge() {
        assert_eq!(Ttl::parse("0"), Err(TtlError::OutOfRange(0)));
        assert!(matches!(Ttl::parse("-5"), Err(TtlError::Malformed(_))));
        assert!(matches!(Ttl::parse("10x"), Err(TtlError::Malformed(_))));
        assert!(matches!(Ttl::parse("h"), Err(TtlError::Malformed(_))));
        assert!(matches!(
            Ttl::parse("999999999999999d"),
            Err(TtlError::Malformed(_))
        ));
        assert!(matches!(Ttl::parse("400d"), Err(TtlError::OutOfRange(_))));
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,30}") {
            let _ = Ttl::parse(&s);
        }
    }
}
