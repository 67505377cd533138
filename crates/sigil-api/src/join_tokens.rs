//! Join tokens on the wire: `POST /api/v1/join-tokens` and its one-time answer.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::TtlValue;

/// Default join token lifetime, in seconds (1 hour).
pub const DEFAULT_JOIN_TOKEN_TTL_SECS: u64 = 3600;
/// Longest join token lifetime, in seconds (7 days).
pub const MAX_JOIN_TOKEN_TTL_SECS: u64 = 7 * 24 * 3600;

/// Body of `POST /api/v1/join-tokens` (an empty body means all defaults).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateJoinTokenRequest {
    /// Lifetime; absent = 1 hour, at most 7 days.
    #[serde(
        default,
        deserialize_with = "crate::present",
        skip_serializing_if = "Option::is_none"
    )]
    pub ttl: Option<TtlValue>,
}

/// Answer of `POST /api/v1/join-tokens`. `token` is the secret: the server keeps only its hash
/// and returns it this once. `Debug` redacts it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinTokenCreated {
    /// Public id, also the last segment of `agent_id`.
    pub id: String,
    /// The secret to give `sigil agent run` (base64url).
    pub token: String,
    /// The SPIFFE ID an agent attesting with this token receives.
    pub agent_id: String,
    /// Unix seconds.
    pub expires_at: i64,
}

impl fmt::Debug for JoinTokenCreated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinTokenCreated")
            .field("id", &self.id)
            .field("token", &"<redacted>")
            .field("agent_id", &self.agent_id)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_the_token() {
        let created = JoinTokenCreated {
            id: "abc".into(),
            token: "s3cr3t-token".into(),
            agent_id: "spiffe://td/sigil/agent/join_token/abc".into(),
            expires_at: 10,
        };
        let printed = format!("{created:?}");
        assert!(!printed.contains("s3cr3t"), "{printed}");
        assert!(printed.contains("<redacted>"));
    }

    #[test]
    fn empty_object_means_defaults_and_null_is_refused() {
        let req: CreateJoinTokenRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(req.ttl, None);
        assert!(serde_json::from_str::<CreateJoinTokenRequest>(r#"{"ttl": null}"#).is_err());
    }
}
