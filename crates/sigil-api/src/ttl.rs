//! A TTL as written in request bodies: a number of seconds (`3600`, `0` = server default) or a
//! duration string (`"1h"`). The server parses it into `sigil_spiffe::Ttl`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A TTL as sent on the wire, not yet validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TtlValue {
    /// Whole seconds; `0` means "use the server default".
    Seconds(u64),
    /// A duration such as `"90s"`, `"15m"`, `"1h"` or `"2d"`.
    Text(String),
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
}
