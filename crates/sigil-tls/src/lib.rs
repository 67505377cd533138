//! TLS for Sigil's agent <-> server channel: rustls configurations fed from live SVIDs, and the
//! SPIFFE peer verifiers.
//!
//! This is the one place that picks the crypto provider (aws-lc-rs) and pins the TLS policy:
//! TLS 1.3 only, ALPN `h2`, X.509 chains verified against the current trust bundle (which can
//! change at any time, e.g. on CA rotation) and the peer's SPIFFE ID checked after the chain.

#![forbid(unsafe_code)]

mod live;
mod verify;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, ServerConfig};

pub use live::{LiveRoots, LiveSvid};
pub use verify::{SpiffeClientVerifier, SpiffeServerVerifier, peer_spiffe_id};

/// Re-exported so callers need not name rustls' pki types crate.
pub use rustls::pki_types::CertificateDer;

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
}

/// The crypto provider every Sigil TLS configuration uses (aws-lc-rs).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Installs aws-lc-rs as the process-wide rustls provider; harmless if already installed.
pub fn install_default_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A server configuration presenting `svid` and verifying clients with `verifier`. Sessions are
/// never resumed, so every handshake sees the current roots and SVID.
pub fn server_config(
    svid: Arc<LiveSvid>,
    verifier: Arc<SpiffeClientVerifier>,
) -> Result<ServerConfig, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
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

/// A client configuration verifying the server with `verifier` and presenting `svid`, if any.
/// Sessions are never resumed, so every handshake sees the current roots and SVID.
pub fn client_config(
    svid: Option<Arc<LiveSvid>>,
    verifier: Arc<SpiffeServerVerifier>,
) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
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
