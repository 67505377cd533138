//! The agent's own identity at start-up: resumed from the data directory while its SVID is
//! valid, otherwise obtained by join-token attestation (connect trusting only the bootstrap
//! roots, present no certificate, send the token and a CSR for a key generated here).
//!
//! With several server addresses, attestation tries each in turn (once, no waiting) and moves
//! on when a server cannot be reached, fails the TLS handshake (its certificate must chain to
//! the bootstrap roots and carry the server's SPIFFE ID, like any server's) or fails on its own
//! side ([`server_fault`]); a refusal of the token or the CSR is final.

use std::sync::Arc;

use sigil_keys::PrivateKey;
use sigil_proto::agent::v1 as pb;
use sigil_spiffe::SpiffeId;
use sigil_tls::LiveRoots;

use crate::config::AgentConfig;
use crate::error::{AgentError, AttemptError, with_causes};
use crate::server_client::{self, ConnectError};
use crate::state::AgentIdentity;
use crate::wire::bundle_from_pb;

/// The stored identity when its SVID is still valid at `now`; otherwise a new one from
/// attesting with the configured join token, saved before it is returned. Also returns the
/// index of the server address to start the session with: the one that attested the agent (it
/// knows the agent already), else the first. Fails with [`AgentError::SvidExpired`] or
/// [`AgentError::NoJoinToken`] when there is neither, and with [`AgentError::NoServerAnswered`]
/// when no server address could attest the agent.
pub(crate) async fn load_or_attest(
    config: &AgentConfig,
    now: i64,
) -> Result<(AgentIdentity, usize), AgentError> {
    match AgentIdentity::load(&config.data_dir)? {
        Some(id) if id.expires_at > now => {
            tracing::info!(agent = %id.spiffe_id, "resuming with the stored agent SVID");
            Ok((id, 0))
        }
        Some(id) if config.join_token.is_none() => Err(AgentError::SvidExpired(id.expires_at)),
        _ => {
            let token = config
                .join_token
                .as_deref()
                .ok_or(AgentError::NoJoinToken)?;
            let (id, server) = attest(config, token).await?;
            id.save(&config.data_dir)?;
            tracing::info!(
                agent = %id.spiffe_id,
                server = %config.server_addresses.get(server).map_or("", String::as_str),
                "attested with a join token"
            );
            Ok((id, server))
        }
    }
}

/// First attestation with join token `token`, on each server address in turn until one
/// attests the agent or refuses it; returns the identity and the index of the address that
/// attested it.
///
/// A join token is spent once: if a server consumed it but its answer was lost, the next server
/// refuses it as already used, and the agent needs a new token (as it would with one server).
async fn attest(config: &AgentConfig, token: &str) -> Result<(AgentIdentity, usize), AgentError> {
    if config.bootstrap_roots.is_empty() {
        return Err(AgentError::AttestationRefused(
            "no trust bundle to verify the server with (set trust_bundle_path)".into(),
        ));
    }
    if config.server_addresses.is_empty() {
        return Err(AgentError::NoServerAddress);
    }
    let roots = Arc::new(LiveRoots::new(&config.bootstrap_roots));
    let mut failures = Vec::new();
    for (index, addr) in config.server_addresses.iter().enumerate() {
        match attest_at(config, addr, roots.clone(), token).await {
            Ok(id) => return Ok((id, index)),
            Err(AttestAt::Next(e)) => {
                tracing::warn!(server = %addr, error = %with_causes(&e), "cannot attest through this server address");
                failures.push(e);
            }
            Err(AttestAt::Final(e)) => return Err(e),
        }
    }
    Err(AgentError::NoServerAnswered(failures))
}

/// Why attesting through one server address failed.
enum AttestAt {
    /// The server could not be used: worth trying the next address.
    Next(AttemptError),
    /// A refusal or a local failure, the same whichever server is asked.
    Final(AgentError),
}

/// One attestation through the server at `addr`, verified against `roots`.
async fn attest_at(
    config: &AgentConfig,
    addr: &str,
    roots: Arc<LiveRoots>,
    token: &str,
) -> Result<AgentIdentity, AttestAt> {
    let mut client = server_client::connect(addr, &config.trust_domain, roots, None, config.tls)
        .await
        .map_err(|e| match e {
            ConnectError::Transport { .. } => AttestAt::Next(AttemptError::Connect(e)),
            ConnectError::Tls(_) => AttestAt::Final(e.into()),
        })?;
    let key = PrivateKey::generate().map_err(|e| AttestAt::Final(e.into()))?;
    // The CSR's subject is ignored by the server, which assigns the agent ID; any valid ID will do.
    let placeholder = config
        .trust_domain
        .id_with_path("/sigil/agent/pending")
        .map_err(|_| AttestAt::Final(AgentError::BadResponse("trust domain")))?;
    let csr = key
        .csr_der(&placeholder)
        .map_err(|e| AttestAt::Final(e.into()))?;
    let resp = client
        .attest_agent(pb::AttestAgentRequest {
            attestation_type: "join_token".into(),
            attestation_data: token.as_bytes().to_vec(),
            csr,
        })
        .await
        .map_err(|s| {
            if server_fault(s.code()) {
                AttestAt::Next(AttemptError::Status {
                    addr: addr.to_owned(),
                    code: s.code(),
                    message: s.message().to_owned(),
                })
            } else {
                AttestAt::Final(AgentError::AttestationRefused(s.message().to_owned()))
            }
        })?
        .into_inner();
    identity_from(resp, key).map_err(AttestAt::Final)
}

/// Whether an attestation answered with `code` failed on the server's side or on the way (the
/// next server may succeed), rather than refusing what the agent sent (the same answer from
/// every server: a bad, used or expired token, a bad CSR).
fn server_fault(code: tonic::Code) -> bool {
    use tonic::Code;
    matches!(
        code,
        Code::Unavailable
            | Code::Unknown
            | Code::Internal
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::Cancelled
    )
}

/// The agent's identity from the server's answer and the key whose CSR it signed.
fn identity_from(
    resp: pb::AttestAgentResponse,
    key: PrivateKey,
) -> Result<AgentIdentity, AgentError> {
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
    use crate::fake_server::{AGENT_ID, ATTESTED_EXPIRES_AT, FakeServer, SERVER_ID, TestCa};
    use crate::session::tests::test_config;
    use crate::state::tests::sample_identity;
    use crate::svid_cache::tests::NOW;

    #[tokio::test]
    async fn resumes_from_the_stored_identity_without_a_join_token() {
        let dir = tempfile::tempdir().unwrap();
        let config = test_config(dir.path());
        let stored = sample_identity(NOW + 3_600);
        stored.save(&config.data_dir).unwrap();
        let (id, server) = load_or_attest(&config, NOW).await.unwrap();
        assert_eq!(server, 0);
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

    /// A configuration that attests with a join token, trusting `ca`, over `addresses`.
    fn attesting_config(dir: &std::path::Path, ca: &TestCa, addresses: Vec<String>) -> AgentConfig {
        let mut config = test_config(dir);
        config.join_token = Some("the-token".into());
        config.bootstrap_roots = vec![ca.root()];
        config.server_addresses = addresses;
        config
    }

    fn dead_address() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    }

    #[tokio::test]
    async fn attestation_skips_dead_and_impostor_servers_and_starts_the_session_where_it_worked() {
        sigil_tls::install_default_provider();
        let dir = tempfile::tempdir().unwrap();
        let ca = Arc::new(TestCa::new("example.org"));
        // An impostor under another root that would attest anyone.
        let impostor = FakeServer::start_attesting(Arc::new(TestCa::new("example.org"))).await;
        let server = FakeServer::start_attesting(ca.clone()).await;
        let config = attesting_config(
            dir.path(),
            &ca,
            vec![dead_address(), impostor.addr(), server.addr()],
        );

        let (id, first_server) = load_or_attest(&config, NOW).await.unwrap();
        assert_eq!(
            first_server, 2,
            "the session starts on the server that attested it"
        );
        assert_eq!(id.spiffe_id.as_str(), AGENT_ID);
        assert_eq!(id.expires_at, ATTESTED_EXPIRES_AT);
        assert_eq!(id.bundle.x509_authorities, vec![ca.root()]);
        assert_eq!(server.attestations(), [b"the-token".to_vec()]);
        assert!(
            impostor.attestations().is_empty(),
            "the token never reached it"
        );
        let stored = AgentIdentity::load(&config.data_dir).unwrap().unwrap();
        assert_eq!(stored.cert_chain, id.cert_chain);
        impostor.stop().await;
        server.stop().await;
    }

    #[tokio::test]
    async fn attestation_fails_with_every_address_named_when_none_answers() {
        sigil_tls::install_default_provider();
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("example.org");
        let (a, b) = (dead_address(), dead_address());
        let config = attesting_config(dir.path(), &ca, vec![a.clone(), b.clone()]);
        let err = load_or_attest(&config, NOW).await.unwrap_err();
        assert!(
            matches!(&err, AgentError::NoServerAnswered(f) if f.len() == 2),
            "{err}"
        );
        let line = err.to_string();
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(
            line.contains(&format!("`{a}`")) && line.contains(&format!("`{b}`")),
            "{line}"
        );
        assert!(line.find(&a) < line.find(&b), "in the order tried: {line}");
        assert!(AgentIdentity::load(&config.data_dir).unwrap().is_none());
    }

    #[tokio::test]
    async fn a_refused_token_is_final_and_the_next_server_is_not_asked() {
        sigil_tls::install_default_provider();
        let dir = tempfile::tempdir().unwrap();
        let ca = Arc::new(TestCa::new("example.org"));
        // Answers `Unimplemented` to attestation: a refusal, not a server failure.
        let refusing =
            FakeServer::start(ca.svid(SERVER_ID), &[ca.root()], Default::default()).await;
        let server = FakeServer::start_attesting(ca.clone()).await;
        let config = attesting_config(dir.path(), &ca, vec![refusing.addr(), server.addr()]);
        let err = load_or_attest(&config, NOW).await.unwrap_err();
        assert!(matches!(err, AgentError::AttestationRefused(_)), "{err}");
        assert!(server.attestations().is_empty());
        refusing.stop().await;
        server.stop().await;
    }

    #[test]
    fn only_failures_of_the_server_move_attestation_to_the_next_address() {
        use tonic::Code;
        for code in [
            Code::Unavailable,
            Code::Internal,
            Code::Unknown,
            Code::DeadlineExceeded,
        ] {
            assert!(server_fault(code), "{code:?}");
        }
        for code in [
            Code::PermissionDenied,
            Code::InvalidArgument,
            Code::Unauthenticated,
            Code::Unimplemented,
            Code::NotFound,
        ] {
            assert!(!server_fault(code), "{code:?}");
        }
    }
}
