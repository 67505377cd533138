//! A TTL as written in request bodies: a number of seconds (`3600`, `0` = server default) or a
//! duration string (`"1h"`). The server parses it into `sigil_spiffe::Ttl`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// A TTL as sent on the wire, not yet validated. A JSON number with an integral value (`60.0`)
/// is whole seconds too: JSON Schema calls it an integer, and the OpenAPI document says
/// `integer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum TtlValue {
    /// Whole seconds; `0` means "use the server default".
    Seconds(u64),
    /// A duration such as `"90s"`, `"15m"`, `"1h"` or `"2d"`.
    Text(String),
}

impl<'de> Deserialize<'de> for TtlValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(u64),
            Number(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Seconds(n) => Ok(Self::Seconds(n)),
            Raw::Text(t) => Ok(Self::Text(t)),
            Raw::Number(f) => whole_seconds(f).map(Self::Seconds).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "TTL `{f}` is not a whole, non-negative number of seconds"
                ))
            }),
        }
    }
}

/// `f` as whole seconds, when it is an integral, non-negative value.
fn whole_seconds(f: f64) -> Option<u64> {
    crate::integral(f).and_then(|n| u64::try_from(n).ok())
}

impl fmt::Display for TtlValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Seconds(n) => write!(f, "{n}"),
            Self::Text(t) => f.write_str(t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_numbers_and_strings() {
        let n: TtlValue = serde_json::from_str("3600").unwrap();
        assert_eq!(n, TtlValue::Seconds(3600));
        let t: TtlValue = serde_json::from_str("\"1h\"").unwrap();
        assert_eq!(t, TtlValue::Text("1h".into()));
        assert!(serde_json::from_str::<TtlValue>("-1").is_err());
        assert!(serde_json::from_str::<TtlValue>("true").is_err());
    }

    #[test]
    fn integral_numbers_written_with_a_fraction_are_seconds() {
        let n: TtlValue = serde_json::from_str("25.0").unwrap();
        assert_eq!(n, TtlValue::Seconds(25));
        let n: TtlValue = serde_json::from_str("3.6e3").unwrap();
        assert_eq!(n, TtlValue::Seconds(3600));
        let zero: TtlValue = serde_json::from_str("-0.0").unwrap();
        assert_eq!(zero, TtlValue::Seconds(0));
        for bad in ["25.5", "-1.0", "1e300", "-0.5"] {
            assert!(serde_json::from_str::<TtlValue>(bad).is_err(), "{bad}");
        }
    }
}
