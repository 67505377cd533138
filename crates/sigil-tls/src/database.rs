//! TLS client configurations for database connections (the datastore's PostgreSQL), with the
//! three server checks libpq's `sslmode` names: none (`require`), the chain only (`verify-ca`),
//! and the chain and the host name (`verify-full`).

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};

use crate::{TlsError, TlsPolicy, aws_lc_rs_provider, provider};

/// How a database client checks the server's certificate.
#[derive(Debug, Clone)]
pub enum DatabaseServerAuth {
    /// No check at all: the session is encrypted, but anyone on the path can impersonate the
    /// server (libpq's `sslmode=require` without a root certificate). The handshake signature
    /// is still verified against the presented certificate.
    Unverified,
    /// The certificate must chain to one of `roots` (DER), whatever names it carries
    /// (`verify-ca`).
    Chain(Vec<Vec<u8>>),
    /// The certificate must chain to one of `roots` (DER) and be issued for the host name (or IP
    /// address) connected to (`verify-full`).
    ChainAndName(Vec<Vec<u8>>),
}

/// A client configuration for a database server checked as `auth` says, offering `alpn` (e.g.
/// `postgresql`, as PostgreSQL 17 expects), presenting no client certificate, under `policy`.
/// TLS 1.2 and 1.3, since database servers often still offer 1.2 only. Fails with
/// [`TlsError::NoRoots`] when `auth` names roots and not one of them is usable.
pub fn database_client_config(
    auth: &DatabaseServerAuth,
    alpn: &[u8],
    policy: TlsPolicy,
) -> Result<ClientConfig, TlsError> {
    let provider = provider(policy);
    let verifier: Arc<dyn ServerCertVerifier> = match auth {
        DatabaseServerAuth::Unverified => Arc::new(AnyCertificate {
            algs: aws_lc_rs_provider().signature_verification_algorithms,
        }),
        DatabaseServerAuth::Chain(roots) => {
            Arc::new(IgnoreName(webpki_verifier(roots, Arc::clone(&provider))?))
        }
        DatabaseServerAuth::ChainAndName(roots) => webpki_verifier(roots, Arc::clone(&provider))?,
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

/// The standard web PKI verifier (chain, validity, server EKU, name) over `roots`.
fn webpki_verifier(
    roots: &[Vec<u8>],
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, TlsError> {
    let mut store = rustls::RootCertStore::empty();
    let (added, _ignored) =
        store.add_parsable_certificates(roots.iter().map(|der| CertificateDer::from(der.clone())));
    if added == 0 {
        return Err(TlsError::NoRoots);
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider)
        .build()
        .map_err(|e| TlsError::Config(rustls::Error::General(e.to_string())))
}

/// `verify-ca`: the web PKI verifier with its name check waived. webpki checks the chain before
/// the name, so a name mismatch is only reported for a chain that verified.
#[derive(Debug)]
struct IgnoreName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for IgnoreName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `require` without roots: any certificate, as long as the server proves it holds its key.
#[derive(Debug)]
struct AnyCertificate {
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_roots_that_are_not_certificates() {
        for auth in [
            DatabaseServerAuth::Chain(vec![b"not a certificate".to_vec()]),
            DatabaseServerAuth::ChainAndName(Vec::new()),
        ] {
            assert!(matches!(
                database_client_config(&auth, b"postgresql", TlsPolicy::default()),
                Err(TlsError::NoRoots)
            ));
        }
    }

    #[test]
    fn offers_the_given_alpn() {
        let config = database_client_config(
            &DatabaseServerAuth::Unverified,
            b"postgresql",
            TlsPolicy::default(),
        )
        .unwrap();
        assert_eq!(config.alpn_protocols, vec![b"postgresql".to_vec()]);
    }
}
