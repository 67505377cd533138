//! Attested agents on the wire: `GET /api/v1/agents`, and `GET` (show), `DELETE` (evict) and
//! `POST …/ban` on `/api/v1/agents/{spiffe_id}`; each answers an [`Agent`].

use serde::{Deserialize, Serialize};

/// An attested node agent as the API answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    pub spiffe_id: String,
    /// Node attestation method, such as `join_token`.
    pub attestation_type: String,
    /// Node selectors from attestation.
    pub selectors: Vec<String>,
    /// Hex serial of the agent's current SVID.
    pub serial: String,
    /// Unix seconds when the current SVID expires.
    pub expires_at: i64,
    /// Whether the agent is banned: it is refused on every call until its record is evicted.
    pub banned: bool,
    pub can_reattest: bool,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds of the agent's last call.
    pub last_seen: i64,
}

/// Answer of `GET /api/v1/agents`: one page of agents, ordered by SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentList {
    pub agents: Vec<Agent>,
    /// Opaque token that reads the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}
