//! TLS for Sigil's agent <-> server channel: rustls configurations fed from live SVIDs, and the
//! SPIFFE peer verifiers.
//!
//! This is the one place that picks the crypto provider (aws-lc-rs) and pins the TLS policy:
//! TLS 1.3 only, ALPN `h2`, the hybrid post-quantum key exchange X25519MLKEM768 preferred (see
//! [`TlsPolicy`]), X.509 chains verified against the current trust bundle (which can change at
//! any time, e.g. on CA rotation) and the peer's SPIFFE ID checked after the chain.

#![forbid(unsafe_code)]

mod database;
mod live;
mod verify;

use std::sync::Arc;

use rustls::crypto::aws_lc_rs::kx_group;
use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::{ClientConfig, NamedGroup, ServerConfig};

pub use database::{
    DatabaseClientCert, DatabaseClientKeyFormat, DatabaseServerAuth, database_client_config,
    tls_server_end_point,
};
pub use live::{LiveRoots, LiveSvid};
pub use verify::{SpiffeClientVerifier, SpiffeServerVerifier, peer_spiffe_id};

/// Re-exported so callers need not name rustls' pki types crate.
pub use rustls::pki_types::{CertificateDer, ServerName};
/// Accepting and connecting with the configurations built here, so that no other crate names
/// rustls or tokio-rustls (deny.toml enforces it).
pub use tokio_rustls::{TlsAcceptor, TlsConnector, client, server};

/// What went wrong building TLS material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("the private key is not usable for TLS: {0}")]
    BadKey(rustls::Error),
    #[error("the certificate chain is empty")]
    EmptyChain,
    #[error("cannot build the TLS configuration: {0}")]
    Config(rustls::Error),
    #[error("certificate is not a valid X509-SVID: {0}")]
    NotAnSvid(String),
    #[error("no usable trust anchor to verify the server with")]
    NoRoots,
    #[error("the private key does not belong to the certificate")]
    KeyMismatch,
}

/// The part of the TLS policy an operator may change (`[tls]` in the server and agent
/// configuration files). Everything else (TLS 1.3 only, no resumption, SPIFFE verification) is
/// fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsPolicy {
    /// Offer and prefer the hybrid post-quantum key exchange X25519MLKEM768 (default `true`),
    /// with X25519, P-256 and P-384 after it for peers without it. When `false`, only those
    /// classical groups are used (for peers or middleboxes that mishandle the larger key share).
    pub post_quantum: bool,
}

impl Default for TlsPolicy {
    fn default() -> Self {
        Self { post_quantum: true }
    }
}

impl TlsPolicy {
    /// The key-exchange groups offered, most preferred first. A client sends a key share for the
    /// first one only, and a server picks the first of its own list that the client offers, so
    /// two Sigil peers with the default policy always agree on X25519MLKEM768.
    pub fn key_exchange_groups(self) -> Vec<&'static dyn SupportedKxGroup> {
        let classical = [kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1];
        let hybrid = self.post_quantum.then_some(kx_group::X25519MLKEM768);
        hybrid.into_iter().chain(classical).collect()
    }
}

/// The name of the post-quantum hybrid group [`TlsPolicy`] prefers, for callers that report the
/// negotiated group (`X25519MLKEM768`).
pub const POST_QUANTUM_GROUP: NamedGroup = NamedGroup::X25519MLKEM768;

/// The crypto provider every Sigil TLS configuration uses: aws-lc-rs with the key-exchange
/// groups of `policy`.
pub fn provider(policy: TlsPolicy) -> Arc<CryptoProvider> {
    let mut provider = aws_lc_rs_provider();
    provider.kx_groups = policy.key_exchange_groups();
    Arc::new(provider)
}

/// aws-lc-rs with its own defaults, for what does not depend on the policy (loading keys,
/// signature verification algorithms).
pub(crate) fn aws_lc_rs_provider() -> CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

/// Installs aws-lc-rs as the process-wide rustls provider; harmless if already installed.
pub fn install_default_provider() {
    let _ = Arc::unwrap_or_clone(provider(TlsPolicy::default())).install_default();
}

/// A server configuration presenting `svid` and verifying clients with `verifier`, under
/// `policy`. Sessions are never resumed, so every handshake sees the current roots and SVID.
pub fn server_config(
    svid: Arc<LiveSvid>,
    verifier: Arc<SpiffeClientVerifier>,
    policy: TlsPolicy,
) -> Result<ServerConfig, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider(policy))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Config)?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(svid);
    config.alpn_protocols = vec![b"h2".to_vec()];
    // No session resumption: a resumed session skips client verification and keeps the peer
    // certificates of the original handshake, so a replaced root or SVID would not take effect.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// A server configuration for a public HTTPS listener (bundle endpoint, OIDC discovery, OAuth):
/// presents `certificate` (the server's SVID, or a web PKI certificate loaded the same way),
/// offers HTTP/1.1, under `policy`. TLS 1.3 only, as everywhere. With `client_verifier` (which
/// should be optional) a client may present an X509-SVID (mutual TLS client authentication for
/// OAuth); without, no client certificate is asked for.
pub fn public_server_config(
    certificate: Arc<LiveSvid>,
    client_verifier: Option<Arc<SpiffeClientVerifier>>,
    policy: TlsPolicy,
) -> Result<ServerConfig, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider(policy))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Config)?;
    let builder = match client_verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(certificate);
    // No session resumption when clients authenticate: a resumed session would keep the client
    // certificate of the first handshake past a rotation or revocation.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// How an HTTPS client (a federation bundle fetch) authenticates the server.
#[derive(Debug, Clone)]
pub enum HttpsServerAuth {
    /// Web PKI (bundle profile `https_web`): a certificate for the URL's host chaining to one of
    /// `roots` (DER; [`system_roots`] in production).
    WebPki(Vec<Vec<u8>>),
    /// SPIFFE (bundle profile `https_spiffe`): an X509-SVID chaining to `roots` (the peer trust
    /// domain's bundle) whose SPIFFE ID is `expected`.
    Spiffe {
        roots: Vec<Vec<u8>>,
        expected: sigil_spiffe::SpiffeId,
    },
}

/// The system's trust anchors (DER), as the platform's TLS clients see them (`SSL_CERT_FILE` and
/// `SSL_CERT_DIR` are honoured); certificates that cannot be read are skipped with a warning.
pub fn system_roots() -> Vec<Vec<u8>> {
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::warn!(error = %error, "a system trust anchor could not be read");
    }
    found.certs.into_iter().map(|c| c.to_vec()).collect()
}

/// A client configuration for HTTPS (HTTP/1.1) to a server authenticated by `auth`, presenting no
/// client certificate, under `policy`. Web PKI servers may speak TLS 1.2 or 1.3; SPIFFE ones
/// TLS 1.3 only, as everywhere between SPIFFE peers. Fails with [`TlsError::NoRoots`] when not
/// one root is usable.
pub fn https_client_config(
    auth: &HttpsServerAuth,
    policy: TlsPolicy,
) -> Result<ClientConfig, TlsError> {
    let mut config = match auth {
        HttpsServerAuth::WebPki(roots) => {
            let mut store = rustls::RootCertStore::empty();
            let (added, _ignored) = store.add_parsable_certificates(
                roots
                    .iter()
                    .map(|der| rustls::pki_types::CertificateDer::from(der.clone())),
            );
            if added == 0 {
                return Err(TlsError::NoRoots);
            }
            ClientConfig::builder_with_provider(provider(policy))
                .with_safe_default_protocol_versions()
                .map_err(TlsError::Config)?
                .with_root_certificates(store)
                .with_no_client_auth()
        }
        HttpsServerAuth::Spiffe { roots, expected } => {
            if roots.is_empty() {
                return Err(TlsError::NoRoots);
            }
            let verifier = Arc::new(SpiffeServerVerifier::new(
                Arc::new(LiveRoots::new(roots)),
                expected.clone(),
            ));
            ClientConfig::builder_with_provider(provider(policy))
                .with_protocol_versions(&[&rustls::version::TLS13])
                .map_err(TlsError::Config)?
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth()
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A client configuration verifying the server with `verifier` and presenting `svid`, if any,
/// under `policy`. Sessions are never resumed, so every handshake sees the current roots and SVID.
pub fn client_config(
    svid: Option<Arc<LiveSvid>>,
    verifier: Arc<SpiffeServerVerifier>,
    policy: TlsPolicy,
) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider(policy))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Config)?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match svid {
        Some(svid) => builder.with_client_cert_resolver(svid),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    // No session resumption, for the same reason as in `server_config`.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}
