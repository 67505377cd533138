//! Join tokens: one-time secrets that let a new agent attest. Only the SHA-256 of the secret is
//! stored; the plaintext is returned once, to whoever created it.

use sigil_spiffe::{SpiffeId, TrustDomain};
use sigil_store::{Datastore, JoinToken, StoreError};

use crate::naming;

/// Longest join token lifetime, in seconds (7 days).
pub const MAX_JOIN_TOKEN_TTL: u64 = 7 * 24 * 3600;

/// A join token just created: the secret (shown once), its record, and the agent ID it yields.
/// `Debug` redacts the secret.
pub struct IssuedJoinToken {
    pub token: String,
    pub record: JoinToken,
    pub agent_id: SpiffeId,
}

impl std::fmt::Debug for IssuedJoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedJoinToken")
            .field("token", &"<redacted>")
            .field("record", &self.record)
            .field("agent_id", &self.agent_id)
            .finish()
    }
}

/// Why a join token could not be created.
#[derive(Debug, thiserror::Error)]
pub enum JoinTokenError {
    #[error("join token TTL must be between 1 second and {MAX_JOIN_TOKEN_TTL} seconds")]
    BadTtl,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot generate a join token: {0}")]
    Random(#[from] sigil_keys::KeyError),
    #[error("cannot form the agent ID: {0}")]
    AgentId(#[from] sigil_spiffe::SpiffeIdError),
}

/// Creates and stores a join token valid for `ttl_secs` from `now` (Unix seconds).
pub async fn create(
    store: &dyn Datastore,
    trust_domain: &TrustDomain,
    ttl_secs: u64,
    now: i64,
) -> Result<IssuedJoinToken, JoinTokenError> {
    if ttl_secs == 0 || ttl_secs > MAX_JOIN_TOKEN_TTL {
        return Err(JoinTokenError::BadTtl);
    }
    let token = sigil_keys::random_token()?;
    let id = sigil_keys::digest::hex(&sigil_keys::random_bytes(16)?);
    let record = JoinToken {
        id: id.clone(),
        token_hash: sigil_keys::sha256_hex(token.as_bytes()),
        expires_at: now.saturating_add(i64::try_from(ttl_secs).unwrap_or(i64::MAX)),
        used_at: None,
        created_at: now,
    };
    store.create_join_token(record.clone()).await?;
    let agent_id = naming::join_token_agent_id(trust_domain, &id)?;
    Ok(IssuedJoinToken {
        token,
        record,
        agent_id,
    })
}
