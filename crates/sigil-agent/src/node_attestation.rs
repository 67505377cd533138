//! The agent's own identity at start-up: resumed from the data directory while its SVID is
//! valid, otherwise obtained by join-token attestation (connect trusting only the bootstrap
//! roots, present no certificate, send the token and a CSR for a key generated here).

use std::sync::Arc;

use sigil_keys::PrivateKey;
use sigil_proto::agent::v1 as pb;
use sigil_spiffe::SpiffeId;
use sigil_tls::LiveRoots;

use crate::config::AgentConfig;
use crate::error::AgentError;
use crate::server_client;
use crate::state::AgentIdentity;
use crate::wire::bundle_from_pb;

/// The stored identity when its SVID is still valid at `now`; otherwise a new one from
/// attesting with the configured join token, saved before it is returned. Fails with
/// [`AgentError::SvidExpired`] or [`AgentError::NoJoinToken`] when there is neither.
pub(crate) async fn load_or_attest(
    config: &AgentConfig,
    now: i64,
) -> Result<AgentIdentity, AgentError> {
    match AgentIdentity::load(&config.data_dir)? {
        Some(id) if id.expires_at > now => {
            tracing::info!(agent = %id.spiffe_id, "resuming with the stored agent SVID");
            Ok(id)
        }
        Some(id) if config.join_token.is_none() => Err(AgentError::SvidExpired(id.expires_at)),
        _ => {
            let token = config
                .join_token
                .as_deref()
                .ok_or(AgentError::NoJoinToken)?;
            let id = attest(config, token).await?;
            id.save(&config.data_dir)?;
            tracing::info!(agent = %id.spiffe_id, "attested with a join token");
            Ok(id)
        }
    }
}

/// First attestation with join token `token`.
async fn attest(config: &AgentConfig, token: &str) -> Result<AgentIdentity, AgentError> {
    if config.bootstrap_roots.is_empty() {
        return Err(AgentError::AttestationRefused(
            "no trust bundle to verify the server with (set trust_bundle_path)".into(),
        ));
    }
    let roots = Arc::new(LiveRoots::new(&config.bootstrap_roots));
    let mut client = server_client::connect(
        &config.server_address,
        &config.trust_domain,
        roots,
        None,
        config.tls,
    )
    .await?;
    let key = PrivateKey::generate()?;
    // The CSR's subject is ignored by the server, which assigns the agent ID; any valid ID will do.
    let placeholder = config
        .trust_domain
        .id_with_path("/sigil/agent/pending")
        .map_err(|_| AgentError::BadResponse("trust domain"))?;
    let csr = key.csr_der(&placeholder)?;
    let resp = client
        .attest_agent(pb::AttestAgentRequest {
            attestation_type: "join_token".into(),
            attestation_data: token.as_bytes().to_vec(),
            csr,
        })
        .await
        .map_err(|s| AgentError::AttestationRefused(s.message().to_owned()))?
        .into_inner();
    let svid = resp.svid.ok_or(AgentError::BadResponse("agent SVID"))?;
    let bundle = bundle_from_pb(
        resp.bundle
            .as_ref()
            .ok_or(AgentError::BadResponse("bundle"))?,
    )?;
    Ok(AgentIdentity {
        spiffe_id: SpiffeId::parse(&svid.spiffe_id)
            .map_err(|_| AgentError::BadResponse("agent SPIFFE ID"))?,
        cert_chain: svid.cert_chain,
        expires_at: svid.expires_at,
        key: Arc::new(key),
        bundle,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::tests::test_config;
    use crate::state::tests::sample_identity;
    use crate::svid_cache::tests::NOW;

    #[tokio::test]
    async fn resumes_from_the_stored_identity_without_a_join_token() {
        let dir = tempfile::tempdir().unwrap();
        let config = test_config(dir.path());
        let stored = sample_identity(NOW + 3_600);
        stored.save(&config.data_dir).unwrap();
        let id = load_or_attest(&config, NOW).await.unwrap();
        assert_eq!(id.spiffe_id, stored.spiffe_id);
        assert_eq!(id.cert_chain, stored.cert_chain);
    }

    #[tokio::test]
    async fn without_state_or_join_token_start_fails() {
        let dir = tempfile::tempdir().unwrap();
        let result = load_or_attest(&test_config(dir.path()), NOW).await;
        assert!(matches!(result, Err(AgentError::NoJoinToken)));
    }

    #[tokio::test]
    async fn an_expired_svid_and_no_join_token_fails() {
        let dir = tempfile::tempdir().unwrap();
        let config = test_config(dir.path());
        sample_identity(NOW - 1).save(&config.data_dir).unwrap();
        let result = load_or_attest(&config, NOW).await;
        assert!(matches!(result, Err(AgentError::SvidExpired(t)) if t == NOW - 1));
    }

    #[tokio::test]
    async fn attestation_without_bootstrap_roots_is_refused_before_connecting() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        config.join_token = Some("token".into());
        let result = load_or_attest(&config, NOW).await;
        assert!(matches!(result, Err(AgentError::AttestationRefused(_))));
    }
}
