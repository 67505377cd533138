//! TLS client configurations for database connections (the datastore's PostgreSQL), with the
//! three server checks libpq's `sslmode` names: none (`require`), the chain only (`verify-ca`),
//! and the chain and the host name (`verify-full`); the client certificate libpq's `sslcert` and
//! `sslkey` name; and the `tls-server-end-point` channel binding (RFC 5929) that SCRAM's
//! `-PLUS` mechanisms bind the login to.

use std::fmt;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
    ServerName, UnixTime,
};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};
use x509_parser::prelude::FromDer as _;
use zeroize::Zeroizing;

use crate::{TlsError, TlsPolicy, aws_lc_rs_provider, client, provider};

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

/// How a client private key is encoded, as its PEM label says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseClientKeyFormat {
    /// PKCS#8 (`PRIVATE KEY`), any algorithm.
    Pkcs8,
    /// PKCS#1 (`RSA PRIVATE KEY`), an RSA key.
    Pkcs1,
    /// SEC1 (`EC PRIVATE KEY`), an elliptic-curve key.
    Sec1,
}

/// The certificate chain (end entity first, DER) and private key a database client presents when
/// the server asks for one (libpq's `sslcert` and `sslkey`). `Debug` never shows the key, and its
/// bytes are zeroised on drop; the copy rustls parses into its signing key is rustls' own.
pub struct DatabaseClientCert {
    chain: Vec<Vec<u8>>,
    format: DatabaseClientKeyFormat,
    key: Zeroizing<Vec<u8>>,
}

impl DatabaseClientCert {
    /// The chain `chain` (end entity first, DER) with the private key `key` (DER, encoded as
    /// `format` says). Whether they are usable, and belong together, is checked by
    /// [`database_client_config`].
    pub fn new(
        chain: Vec<Vec<u8>>,
        format: DatabaseClientKeyFormat,
        key: Zeroizing<Vec<u8>>,
    ) -> Self {
        Self { chain, format, key }
    }

    /// The private key in the form rustls takes.
    fn key_der(&self) -> PrivateKeyDer<'static> {
        let der = self.key.to_vec();
        match self.format {
            DatabaseClientKeyFormat::Pkcs8 => PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der)),
            DatabaseClientKeyFormat::Pkcs1 => PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(der)),
            DatabaseClientKeyFormat::Sec1 => PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(der)),
        }
    }
}

impl fmt::Debug for DatabaseClientCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseClientCert")
            .field("chain_len", &self.chain.len())
            .field("format", &self.format)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// A client configuration for a database server checked as `auth` says, offering `alpn` (e.g.
/// `postgresql`, as PostgreSQL 17 expects), presenting `client_cert` when the server asks for a
/// certificate (none when `None`), under `policy`. TLS 1.2 and 1.3, since database servers often
/// still offer 1.2 only. Fails with [`TlsError::NoRoots`] when `auth` names roots and not one of
/// them is usable, [`TlsError::EmptyChain`] for a client certificate without a certificate,
/// [`TlsError::BadKey`] for a key rustls cannot use and [`TlsError::KeyMismatch`] for a key
/// that is not the certificate's.
pub fn database_client_config(
    auth: &DatabaseServerAuth,
    client_cert: Option<&DatabaseClientCert>,
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
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match client_cert {
        None => builder.with_no_client_auth(),
        Some(cert) => {
            if cert.chain.is_empty() {
                return Err(TlsError::EmptyChain);
            }
            let chain = cert
                .chain
                .iter()
                .map(|der| CertificateDer::from(der.clone()))
                .collect();
            builder
                .with_client_auth_cert(chain, cert.key_der())
                .map_err(|e| match e {
                    rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch,
                    other => TlsError::BadKey(other),
                })?
        }
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

/// The `tls-server-end-point` channel binding of a client session (RFC 5929 §4.1): the hash of
/// the server's end-entity certificate, with the hash function of the certificate's signature
/// algorithm, SHA-256 in place of MD5 and SHA-1. `None` when there is no server certificate or
/// its signature algorithm names no single hash function (Ed25519, RSA-PSS; PostgreSQL cannot
/// bind to those either), so SCRAM falls back to its mechanism without channel binding.
pub fn tls_server_end_point<IO>(stream: &client::TlsStream<IO>) -> Option<Vec<u8>> {
    let (_, session) = stream.get_ref();
    let end_entity = session.peer_certificates()?.first()?;
    server_end_point_hash(end_entity.as_ref())
}

/// The hash [`tls_server_end_point`] binds to, for the certificate `der`.
fn server_end_point_hash(der: &[u8]) -> Option<Vec<u8>> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).ok()?;
    match cert.signature_algorithm.algorithm.to_id_string().as_str() {
        // md5WithRSAEncryption, sha1WithRSAEncryption, sha256WithRSAEncryption, ecdsa-with-SHA1,
        // ecdsa-with-SHA256, dsa-with-sha1, dsa-with-sha256.
        "1.2.840.113549.1.1.4"
        | "1.2.840.113549.1.1.5"
        | "1.2.840.113549.1.1.11"
        | "1.2.840.10045.4.1"
        | "1.2.840.10045.4.3.2"
        | "1.2.840.10040.4.3"
        | "2.16.840.1.101.3.4.3.2" => Some(sigil_keys::sha256(der).to_vec()),
        // sha384WithRSAEncryption, ecdsa-with-SHA384.
        "1.2.840.113549.1.1.12" | "1.2.840.10045.4.3.3" => {
            Some(sigil_keys::digest::sha384(der).to_vec())
        }
        // sha512WithRSAEncryption, ecdsa-with-SHA512.
        "1.2.840.113549.1.1.13" | "1.2.840.10045.4.3.4" => {
            Some(sigil_keys::digest::sha512(der).to_vec())
        }
        _ => None,
    }
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
                database_client_config(&auth, None, b"postgresql", TlsPolicy::default()),
                Err(TlsError::NoRoots)
            ));
        }
    }

    #[test]
    fn offers_the_given_alpn() {
        let config = database_client_config(
            &DatabaseServerAuth::Unverified,
            None,
            b"postgresql",
            TlsPolicy::default(),
        )
        .unwrap();
        assert_eq!(config.alpn_protocols, vec![b"postgresql".to_vec()]);
        assert!(!config.client_auth_cert_resolver.has_certs());
    }

    fn self_signed(alg: &'static rcgen::SignatureAlgorithm) -> (Vec<u8>, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate_for(alg).expect("a key for the algorithm");
        let cert = rcgen::CertificateParams::new(vec!["db.example".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("a certificate");
        (cert.der().to_vec(), key)
    }

    fn client_cert(cert: Vec<u8>, key: &rcgen::KeyPair) -> DatabaseClientCert {
        DatabaseClientCert::new(
            vec![cert],
            DatabaseClientKeyFormat::Pkcs8,
            Zeroizing::new(key.serialize_der()),
        )
    }

    #[test]
    fn presents_a_client_certificate_whose_key_matches() {
        let (cert, key) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
        let config = database_client_config(
            &DatabaseServerAuth::Unverified,
            Some(&client_cert(cert.clone(), &key)),
            b"postgresql",
            TlsPolicy::default(),
        )
        .unwrap();
        assert!(config.client_auth_cert_resolver.has_certs());

        // Another key for the same certificate, a key that is not DER, and no certificate.
        let (_, other_key) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
        let mismatched = client_cert(cert.clone(), &other_key);
        let garbage = DatabaseClientCert::new(
            vec![cert],
            DatabaseClientKeyFormat::Sec1,
            Zeroizing::new(b"not a key".to_vec()),
        );
        let empty = DatabaseClientCert::new(
            Vec::new(),
            DatabaseClientKeyFormat::Pkcs8,
            Zeroizing::new(key.serialize_der()),
        );
        let build = |cert: &DatabaseClientCert| {
            database_client_config(
                &DatabaseServerAuth::Unverified,
                Some(cert),
                b"postgresql",
                TlsPolicy::default(),
            )
        };
        assert!(matches!(build(&mismatched), Err(TlsError::KeyMismatch)));
        assert!(matches!(build(&garbage), Err(TlsError::BadKey(_))));
        assert!(matches!(build(&empty), Err(TlsError::EmptyChain)));
    }

    #[test]
    fn client_certificate_debug_hides_the_key() {
        let (cert, key) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
        let shown = format!("{:?}", client_cert(cert, &key));
        assert!(shown.contains("<redacted>"), "{shown}");
        let der = key.serialize_der();
        assert!(!shown.contains(&format!("{der:?}")), "{shown}");
    }

    #[test]
    fn end_point_hash_follows_the_certificate_signature_algorithm() {
        let (p256, _) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
        assert_eq!(
            server_end_point_hash(&p256),
            Some(sigil_keys::sha256(&p256).to_vec())
        );
        let (p384, _) = self_signed(&rcgen::PKCS_ECDSA_P384_SHA384);
        assert_eq!(
            server_end_point_hash(&p384),
            Some(sigil_keys::digest::sha384(&p384).to_vec())
        );
        // Ed25519 signs without a separate hash: no binding, as in PostgreSQL.
        let (ed25519, _) = self_signed(&rcgen::PKCS_ED25519);
        assert_eq!(server_end_point_hash(&ed25519), None);
        assert_eq!(server_end_point_hash(b"not a certificate"), None);
    }
}
