//! SPIFFE peer verification: the chain must lead to a current trust-bundle root (webpki path
//! building, validity, EKU), then the leaf must carry exactly one URI SAN that is a SPIFFE ID the
//! caller accepts.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use sigil_spiffe::{SpiffeId, TrustDomain};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::{LiveRoots, TlsError, aws_lc_rs_provider};

/// Largest certificate accepted for SPIFFE ID extraction, in bytes.
const MAX_CERT_BYTES: usize = 16 * 1024;

/// The SPIFFE ID of an X509-SVID: its one URI SAN. Fails when the certificate does not parse or
/// carries no, or several, URI SANs, or the URI is not a SPIFFE ID.
pub fn peer_spiffe_id(cert_der: &[u8]) -> Result<SpiffeId, TlsError> {
    if cert_der.len() > MAX_CERT_BYTES {
        return Err(TlsError::NotAnSvid("certificate too large".into()));
    }
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(cert_der)
        .map_err(|e| TlsError::NotAnSvid(format!("unparseable certificate: {e}")))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| TlsError::NotAnSvid(format!("bad subjectAltName: {e}")))?
        .ok_or_else(|| TlsError::NotAnSvid("no subjectAltName".into()))?;
    let mut uris = san.value.general_names.iter().filter_map(|n| match n {
        GeneralName::URI(u) => Some(*u),
        _ => None,
    });
    let first = uris
        .next()
        .ok_or_else(|| TlsError::NotAnSvid("no URI SAN".into()))?;
    if uris.next().is_some() {
        return Err(TlsError::NotAnSvid("more than one URI SAN".into()));
    }
    SpiffeId::parse(first).map_err(|e| TlsError::NotAnSvid(format!("URI SAN `{first}`: {e}")))
}

/// What both verifiers share: the live roots and the signature algorithms, and the checks
/// made with them.
struct ChainCheck {
    roots: Arc<LiveRoots>,
    algs: WebPkiSupportedAlgorithms,
}

impl ChainCheck {
    fn new(roots: Arc<LiveRoots>) -> Self {
        Self {
            roots,
            algs: aws_lc_rs_provider().signature_verification_algorithms,
        }
    }

    /// Verifies the chain for `usage` and returns the leaf's SPIFFE ID.
    fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        usage: webpki::KeyUsage,
    ) -> Result<SpiffeId, rustls::Error> {
        let current = self.roots.current();
        let anchors: Vec<_> = current
            .iter()
            .filter_map(|c| webpki::anchor_from_trusted_cert(c).ok())
            .collect();
        if anchors.is_empty() {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            ));
        }
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|e| rustls::Error::InvalidCertificate(cert_error(e)))?;
        cert.verify_for_usage(
            self.algs.all,
            &anchors,
            intermediates,
            now,
            usage,
            None,
            None,
        )
        .map_err(|e| rustls::Error::InvalidCertificate(cert_error(e)))?;
        peer_spiffe_id(end_entity).map_err(|e| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
                Arc::new(e),
            )))
        })
    }

    fn tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// TLS 1.2 is never negotiated (the configs pin TLS 1.3), so its signatures are never accepted.
fn no_tls12() -> Result<HandshakeSignatureValid, rustls::Error> {
    Err(rustls::Error::PeerIncompatible(
        rustls::PeerIncompatible::Tls12NotOffered,
    ))
}

fn cert_error(e: webpki::Error) -> rustls::CertificateError {
    use rustls::CertificateError as C;
    match e {
        webpki::Error::CertExpired { .. } => C::Expired,
        webpki::Error::CertNotValidYet { .. } => C::NotValidYet,
        webpki::Error::UnknownIssuer => C::UnknownIssuer,
        webpki::Error::InvalidSignatureForPublicKey => C::BadSignature,
        _ => C::BadEncoding,
    }
}

/// Verifies a server's X509-SVID against the live roots and requires an exact SPIFFE ID.
pub struct SpiffeServerVerifier {
    check: ChainCheck,
    expected: SpiffeId,
}

impl fmt::Debug for SpiffeServerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpiffeServerVerifier")
            .field("expected", &self.expected)
            .finish()
    }
}

impl SpiffeServerVerifier {
    /// Accepts only a server whose SVID chains to `roots` and names `expected`.
    pub fn new(roots: Arc<LiveRoots>, expected: SpiffeId) -> Self {
        Self {
            check: ChainCheck::new(roots),
            expected,
        }
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let id = self.check.verify(
            end_entity,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
        )?;
        if id != self.expected {
            tracing::warn!(got = %id, expected = %self.expected, "server presented an unexpected SPIFFE ID");
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName,
            ));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        no_tls12()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.check.tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.check.schemes()
    }
}

/// Verifies client X509-SVIDs against the live roots; accepts members of one trust domain.
/// With `optional`, a client may also connect without a certificate (the application then
/// decides what such a connection may do).
pub struct SpiffeClientVerifier {
    check: ChainCheck,
    trust_domain: TrustDomain,
    optional: bool,
}

impl fmt::Debug for SpiffeClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpiffeClientVerifier")
            .field("trust_domain", &self.trust_domain)
            .field("optional", &self.optional)
            .finish()
    }
}

impl SpiffeClientVerifier {
    /// A verifier for clients of `trust_domain` chaining to `roots`.
    pub fn new(roots: Arc<LiveRoots>, trust_domain: TrustDomain, optional: bool) -> Self {
        Self {
            check: ChainCheck::new(roots),
            trust_domain,
            optional,
        }
    }
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        !self.optional
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let id = self.check.verify(
            end_entity,
            intermediates,
            now,
            webpki::KeyUsage::client_auth(),
        )?;
        if !id.is_member_of(&self.trust_domain) {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        no_tls12()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.check.tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.check.schemes()
    }
}
