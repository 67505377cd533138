//! The SPIFFE IDs Sigil reserves for itself under `/sigil/`: agent IDs
//! (`/sigil/agent/<attestor>/<id>`) and the server's own ID (`/sigil/server`, also the parent of
//! node-alias entries). Registration entries may not claim this path.

use sigil_spiffe::{SpiffeId, SpiffeIdError, TrustDomain};

/// Attestation type of agents that attested with a join token.
pub const JOIN_TOKEN_ATTESTATION: &str = "join_token";

/// Path prefix reserved for identities Sigil mints itself (agents, the server).
pub const RESERVED_PATH_PREFIX: &str = "/sigil/";

const AGENT_PATH_PREFIX: &str = "/sigil/agent/";

/// `spiffe://<td>/sigil/agent/join_token/<token_id>`: the ID of an agent attested with join
/// token `token_id`. Fails when `token_id` is not a valid path segment.
pub fn join_token_agent_id(td: &TrustDomain, token_id: &str) -> Result<SpiffeId, SpiffeIdError> {
    if token_id.contains('/') {
        // One segment only: a `/` would let a token id pick an arbitrary agent path.
        return Err(SpiffeIdError::BadPathChar('/'));
    }
    td.id_with_path(&format!(
        "{AGENT_PATH_PREFIX}{JOIN_TOKEN_ATTESTATION}/{token_id}"
    ))
}

/// `spiffe://<td>/sigil/server`: the server's own ID, and the parent ID that marks node-alias
/// entries.
pub fn server_id(td: &TrustDomain) -> SpiffeId {
    td.sigil_server_id()
}

/// Whether `id` is an agent ID (its path starts with `/sigil/agent/`).
pub fn is_agent_id(id: &SpiffeId) -> bool {
    id.path().starts_with(AGENT_PATH_PREFIX)
}

/// The attestor of agent ID `id` (`join_token` in `/sigil/agent/join_token/<id>`), or `None`
/// when `id` is not an agent ID.
pub fn agent_attestor(id: &SpiffeId) -> Option<&str> {
    id.path()
        .strip_prefix(AGENT_PATH_PREFIX)?
        .split('/')
        .next()
        .filter(|s| !s.is_empty())
}

/// Whether `id` lies in the path Sigil reserves for itself (`/sigil/...`).
pub fn is_reserved(id: &SpiffeId) -> bool {
    let path = id.path();
    path.starts_with(RESERVED_PATH_PREFIX) || path == RESERVED_PATH_PREFIX.trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn td() -> TrustDomain {
        TrustDomain::parse("example.org").unwrap()
    }

    #[test]
    fn join_token_agent_id_has_the_documented_shape() {
        let id = join_token_agent_id(&td(), "0a1b").unwrap();
        assert_eq!(
            id.as_str(),
            "spiffe://example.org/sigil/agent/join_token/0a1b"
        );
        assert!(is_agent_id(&id));
        assert!(is_reserved(&id));
    }

    #[test]
    fn join_token_agent_id_rejects_ids_that_are_not_one_segment() {
        assert!(join_token_agent_id(&td(), "a/b").is_err());
        assert!(join_token_agent_id(&td(), "..").is_err());
        assert!(join_token_agent_id(&td(), "").is_err());
    }

    #[test]
    fn server_id_is_reserved_but_not_an_agent() {
        let id = server_id(&td());
        assert_eq!(id.as_str(), "spiffe://example.org/sigil/server");
        assert!(!is_agent_id(&id));
        assert!(is_reserved(&id));
    }

    #[test]
    fn workload_ids_are_neither_agents_nor_reserved() {
        for s in [
            "spiffe://example.org/web",
            "spiffe://example.org/sigilx/agent/a",
            "spiffe://example.org/ns/sigil/agent/a",
        ] {
            let id = SpiffeId::parse(s).unwrap();
            assert!(!is_agent_id(&id), "{s}");
            assert!(!is_reserved(&id), "{s}");
        }
        let bare = SpiffeId::parse("spiffe://example.org/sigil").unwrap();
        assert!(is_reserved(&bare));
    }
}
