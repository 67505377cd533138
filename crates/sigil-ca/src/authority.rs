//! X.509 signing authorities: a CA certificate with its private key, parsed once at construction
//! (trust domain, validity, subject key identifier, rcgen issuer state) so that issuing a leaf
//! does no re-parsing. Builds self-signed roots and intermediates with the SPIFFE CA profile:
//! critical `CA:TRUE`, critical KU keyCertSign + cRLSign, SKI (and AKI when issued by another CA),
//! one URI SAN `spiffe://<trust domain>`.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyUsagePurpose, SanType};
use sigil_keys::{PrivateKey, PublicKey};
use sigil_spiffe::time::unix_secs;
use sigil_spiffe::{SpiffeId, TrustDomain};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use crate::CaError;
use crate::validity::{MAX_COMMON_NAME_LEN, base_params, end_of_ttl};

/// Largest authority certificate accepted by [`X509Authority::from_parts`], in bytes.
const MAX_AUTHORITY_CERT_BYTES: usize = 64 * 1024;

/// A CA certificate and its private key, ready to issue.
pub struct X509Authority {
    cert_der: Vec<u8>,
    key: Arc<PrivateKey>,
    trust_domain: TrustDomain,
    not_before: i64,
    not_after: i64,
    subject_key_id: Vec<u8>,
    self_signed: bool,
    /// Certificates between this authority and its root, nearest first, root excluded.
    upstream_chain: Vec<Vec<u8>>,
    /// rcgen's view of this issuer (subject name, key identifier, key), built once.
    pub(crate) issuer: rcgen::Issuer<'static, AuthorityKey>,
}

/// The authority's key as rcgen sees it (rcgen's traits cannot be implemented on `Arc` here).
pub(crate) struct AuthorityKey(Arc<PrivateKey>);

impl AuthorityKey {
    pub(crate) fn new(key: Arc<PrivateKey>) -> Self {
        Self(key)
    }
}

impl rcgen::PublicKeyData for AuthorityKey {
    fn subject_public_key_info(&self) -> Vec<u8> {
        self.0.subject_public_key_info()
    }

    fn der_bytes(&self) -> &[u8] {
        self.0.der_bytes()
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        rcgen::PublicKeyData::algorithm(self.0.as_ref())
    }
}

impl rcgen::SigningKey for AuthorityKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        rcgen::SigningKey::sign(self.0.as_ref(), msg)
    }
}

/// A self-signed root CA for `td`, valid from `now - 10 s` for `ttl_secs`: subject
/// `O=Sigil, CN=<td> root`, critical `CA:TRUE` without path length limit, critical KU
/// keyCertSign + cRLSign, SKI, one URI SAN `spiffe://<td>`, random 16-byte serial.
pub fn self_signed_root(
    td: &TrustDomain,
    key: Arc<PrivateKey>,
    ttl_secs: u64,
    now: SystemTime,
) -> Result<X509Authority, CaError> {
    let now = unix_secs(now);
    let params = ca_params(td, "root", now, end_of_ttl(now, ttl_secs)?, false)?;
    let cert = params.self_signed(key.as_ref())?;
    X509Authority::from_parts(cert.der().to_vec(), key, Vec::new())
}

/// An intermediate CA for `td` signed by `issuer`, with `subject_key`: the root profile plus an
/// AKI equal to the issuer's SKI, subject `O=Sigil, CN=<td> intermediate`, and NotAfter clamped to
/// the issuer's. Fails with [`CaError::AuthorityExpired`] if `issuer` has expired at `now` and
/// [`CaError::ForeignTrustDomain`] if `issuer` belongs to another trust domain.
pub fn intermediate(
    td: &TrustDomain,
    subject_key: Arc<PrivateKey>,
    issuer: &X509Authority,
    ttl_secs: u64,
    now: SystemTime,
) -> Result<X509Authority, CaError> {
    if issuer.trust_domain != *td {
        return Err(CaError::ForeignTrustDomain {
            id: td.id_string(),
            trust_domain: issuer.trust_domain.to_string(),
        });
    }
    let now = unix_secs(now);
    let not_after = issuer.clamp_not_after(now, ttl_secs)?;
    let params = ca_params(td, "intermediate", now, not_after, true)?;
    let cert = params.signed_by(subject_key.as_ref(), &issuer.issuer)?;
    X509Authority::from_parts(cert.der().to_vec(), subject_key, issuer.chain_for_issued())
}

impl X509Authority {
    /// Loads an authority from its DER certificate and private key (for instance from the
    /// datastore). `upstream_chain` lists the certificates between it and its root, nearest first,
    /// root excluded (empty for a root or an intermediate directly under the root).
    ///
    /// Checks that the certificate is a CA (`CA:TRUE`) with a subject key identifier, exactly one
    /// URI SAN that is a trust domain ID (`spiffe://<td>`), and that `key` is its key.
    pub fn from_parts(
        cert_der: Vec<u8>,
        key: Arc<PrivateKey>,
        upstream_chain: Vec<Vec<u8>>,
    ) -> Result<Self, CaError> {
        let invalid = |reason| CaError::InvalidAuthority { reason };
        if cert_der.len() > MAX_AUTHORITY_CERT_BYTES {
            return Err(invalid("certificate is larger than 64 KiB"));
        }
        let cert = match X509Certificate::from_der(&cert_der) {
            Ok(([], cert)) => cert,
            Ok(_) => return Err(invalid("trailing bytes after the certificate")),
            Err(_) => return Err(invalid("not a DER X.509 certificate")),
        };
        let is_ca = cert
            .basic_constraints()
            .map_err(|_| invalid("duplicate basicConstraints"))?
            .is_some_and(|bc| bc.value.ca);
        if !is_ca {
            return Err(invalid(
                "certificate is not a CA (basicConstraints CA:TRUE missing)",
            ));
        }
        let subject_key_id = cert
            .iter_extensions()
            .find_map(|ext| match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(ski) => Some(ski.0.to_vec()),
                _ => None,
            })
            .ok_or(invalid("certificate has no subject key identifier"))?;
        let cert_key = PublicKey::from_spki_der(cert.public_key().raw)?;
        if cert_key != *key.public_key_ref() {
            return Err(CaError::KeyMismatch);
        }
        let trust_domain = single_trust_domain_san(&cert)?;
        let not_before = cert.validity().not_before.timestamp();
        let not_after = cert.validity().not_after.timestamp();
        let self_signed =
            crate::upstream::signed_by(&cert, cert.subject().as_raw(), key.public_key_ref());
        drop(cert);

        let issuer = rcgen::Issuer::from_ca_cert_der(
            &cert_der.as_slice().into(),
            AuthorityKey(Arc::clone(&key)),
        )?;
        Ok(Self {
            cert_der,
            key,
            trust_domain,
            not_before,
            not_after,
            subject_key_id,
            self_signed,
            upstream_chain,
            issuer,
        })
    }

    /// The DER certificate.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// This authority with `upstream_chain` as the certificates between it and its root (for an
    /// authority loaded from the store, whose chain is not stored with it).
    #[must_use]
    pub fn with_upstream_chain(mut self, upstream_chain: Vec<Vec<u8>>) -> Self {
        self.upstream_chain = upstream_chain;
        self
    }

    /// The certificates a certificate issued by this authority chains through, nearest first,
    /// root excluded: this authority's certificate unless it is a root, then its upstream chain.
    pub fn chain_for_issued(&self) -> Vec<Vec<u8>> {
        let mut chain = Vec::with_capacity(self.upstream_chain.len() + 1);
        if !self.self_signed {
            chain.push(self.cert_der.clone());
        }
        chain.extend(self.upstream_chain.iter().cloned());
        chain
    }

    /// The certificate as PEM.
    pub fn cert_pem(&self) -> String {
        sigil_keys::pem::encode(sigil_keys::pem::CERTIFICATE_LABEL, &self.cert_der)
    }

    /// The private key.
    pub fn key(&self) -> &Arc<PrivateKey> {
        &self.key
    }

    /// The trust domain named by the certificate's URI SAN.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// NotBefore, Unix seconds.
    pub fn not_before(&self) -> i64 {
        self.not_before
    }

    /// NotAfter, Unix seconds.
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    /// The subject key identifier as lowercase hex (the authority's id in listings and AKIs).
    pub fn subject_key_id(&self) -> String {
        sigil_keys::digest::hex(&self.subject_key_id)
    }

    /// The subject key identifier's bytes.
    pub(crate) fn subject_key_id_bytes(&self) -> &[u8] {
        &self.subject_key_id
    }

    /// Whether the certificate is self-signed (a root).
    pub fn is_self_signed(&self) -> bool {
        self.self_signed
    }

    /// The certificates between this authority and its root, nearest first, root excluded.
    pub fn upstream_chain(&self) -> &[Vec<u8>] {
        &self.upstream_chain
    }

    /// The chain to serve with a leaf issued by this authority: the leaf, then this authority's
    /// certificate unless it is a root, then its upstream chain (the root is never included).
    pub fn svid_chain(&self, leaf_der: Vec<u8>) -> Vec<Vec<u8>> {
        let mut chain = vec![leaf_der];
        chain.extend(self.chain_for_issued());
        chain
    }

    /// NotAfter for something issued at `now` for `ttl_secs`: `min(now + ttl, self.not_after)`.
    /// Fails if this authority has expired at `now`.
    pub(crate) fn clamp_not_after(&self, now: i64, ttl_secs: u64) -> Result<i64, CaError> {
        if self.not_after <= now {
            return Err(CaError::AuthorityExpired {
                not_after: self.not_after,
                now,
            });
        }
        Ok(end_of_ttl(now, ttl_secs)?.min(self.not_after))
    }

    /// Checks that `id` belongs to this authority's trust domain.
    pub(crate) fn check_member(&self, id: &SpiffeId) -> Result<(), CaError> {
        if id.is_member_of(&self.trust_domain) {
            Ok(())
        } else {
            Err(CaError::ForeignTrustDomain {
                id: id.to_string(),
                trust_domain: self.trust_domain.to_string(),
            })
        }
    }
}

impl fmt::Debug for X509Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X509Authority")
            .field("trust_domain", &self.trust_domain.as_str())
            .field("subject_key_id", &self.subject_key_id())
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("self_signed", &self.self_signed)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// Parameters of a CA certificate for `td` (`role` is `root` or `intermediate`).
pub(crate) fn ca_params(
    td: &TrustDomain,
    role: &str,
    now: i64,
    not_after: i64,
    with_aki: bool,
) -> Result<CertificateParams, CaError> {
    let mut params = base_params(now, not_after)?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name(td.as_str(), role));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.subject_alt_names = vec![SanType::URI(td.id_string().try_into()?)];
    params.use_authority_key_identifier_extension = with_aki;
    Ok(params)
}

/// `<td> <role>`, with the trust domain shortened so the whole fits in 64 characters.
fn common_name(td: &str, role: &str) -> String {
    let room = MAX_COMMON_NAME_LEN.saturating_sub(role.len() + 1);
    // Trust domain names are ASCII, so byte and char boundaries agree.
    let td = td.get(..room.min(td.len())).unwrap_or(td);
    format!("{td} {role}")
}

/// The trust domain of a CA certificate's single URI SAN `spiffe://<td>`.
fn single_trust_domain_san(cert: &X509Certificate<'_>) -> Result<TrustDomain, CaError> {
    let invalid = |reason| CaError::InvalidAuthority { reason };
    let san = cert
        .subject_alternative_name()
        .map_err(|_| invalid("duplicate subjectAltName"))?
        .ok_or(invalid("certificate has no URI SAN"))?;
    let mut uris = san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        });
    let (Some(uri), None) = (uris.next(), uris.next()) else {
        return Err(invalid("certificate must have exactly one URI SAN"));
    };
    let id = SpiffeId::parse(uri).map_err(|_| invalid("URI SAN is not a SPIFFE ID"))?;
    if !id.path().is_empty() {
        return Err(invalid("URI SAN is not a trust domain ID (it has a path)"));
    }
    Ok(id.trust_domain())
}

#[cfg(test)]
mod tests {
    use sigil_keys::PrivateKey;
    use sigil_spiffe::time::from_unix_secs;
    use x509_parser::extensions::ParsedExtension;

    use super::*;
    use crate::validity::BACKDATE_SECS;

    const NOW: i64 = 1_700_000_000;

    fn td() -> TrustDomain {
        TrustDomain::parse("example.org").unwrap()
    }

    fn new_key() -> Arc<PrivateKey> {
        Arc::new(PrivateKey::generate().unwrap())
    }

    fn root() -> X509Authority {
        self_signed_root(&td(), new_key(), 86_400, from_unix_secs(NOW)).unwrap()
    }

    fn assert_ca_profile(der: &[u8], role: &str) {
        let (_, cert) = X509Certificate::from_der(der).unwrap();
        let bc = cert.basic_constraints().unwrap().unwrap();
        assert!(bc.critical && bc.value.ca);
        assert!(bc.value.path_len_constraint.is_none());
        let ku = cert.key_usage().unwrap().unwrap();
        assert!(ku.critical && ku.value.key_cert_sign() && ku.value.crl_sign());
        assert!(!ku.value.digital_signature());
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert_eq!(
            san.value.general_names,
            vec![GeneralName::URI("spiffe://example.org")]
        );
        let cn: Vec<_> = cert
            .subject()
            .iter_common_name()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(cn, vec![format!("example.org {role}")]);
        let not_before = cert.validity().not_before.timestamp();
        assert!(not_before <= NOW && NOW - not_before <= BACKDATE_SECS);
        assert!(cert.raw_serial().len() >= 8);
    }

    fn aki(der: &[u8]) -> Option<Vec<u8>> {
        let (_, cert) = X509Certificate::from_der(der).unwrap();
        cert.iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(aki) => {
                    aki.key_identifier.as_ref().map(|k| k.0.to_vec())
                }
                _ => None,
            })
    }

    #[test]
    fn root_has_the_ca_profile_and_is_self_signed() {
        let root = root();
        assert_ca_profile(root.cert_der(), "root");
        assert!(root.is_self_signed());
        assert_eq!(root.trust_domain(), &td());
        assert_eq!(root.not_after(), NOW + 86_400);
        assert_eq!(root.subject_key_id().len(), 40);
        assert!(
            sigil_spiffe::is_authority_id(&root.subject_key_id()),
            "the admin API accepts it"
        );
        let (_, cert) = X509Certificate::from_der(root.cert_der()).unwrap();
        cert.verify_signature(None).unwrap();
    }

    #[test]
    fn intermediate_has_aki_of_the_root_and_is_clamped() {
        let root = root();
        let inter =
            intermediate(&td(), new_key(), &root, 10 * 86_400, from_unix_secs(NOW)).unwrap();
        assert_ca_profile(inter.cert_der(), "intermediate");
        assert!(!inter.is_self_signed());
        assert_eq!(
            sigil_keys::digest::hex(&aki(inter.cert_der()).unwrap()),
            root.subject_key_id()
        );
        assert_ne!(inter.subject_key_id(), root.subject_key_id());
        assert_eq!(inter.not_after(), root.not_after());
        let (_, cert) = X509Certificate::from_der(inter.cert_der()).unwrap();
        let (_, root_cert) = X509Certificate::from_der(root.cert_der()).unwrap();
        cert.verify_signature(Some(root_cert.public_key())).unwrap();
        assert!(inter.upstream_chain().is_empty());
        assert_eq!(
            inter.svid_chain(b"leaf".to_vec()),
            vec![b"leaf".to_vec(), inter.cert_der().to_vec()]
        );
    }

    #[test]
    fn nested_intermediates_carry_their_upstream_chain() {
        let root = root();
        let now = from_unix_secs(NOW);
        let first = intermediate(&td(), new_key(), &root, 3_600, now).unwrap();
        let second = intermediate(&td(), new_key(), &first, 3_600, now).unwrap();
        assert_eq!(second.upstream_chain(), &[first.cert_der().to_vec()]);
        assert_eq!(
            second.svid_chain(b"leaf".to_vec()),
            vec![
                b"leaf".to_vec(),
                second.cert_der().to_vec(),
                first.cert_der().to_vec()
            ]
        );
    }

    #[test]
    fn intermediate_refuses_an_expired_or_foreign_issuer() {
        let root = root();
        let late = from_unix_secs(NOW + 86_400);
        assert!(matches!(
            intermediate(&td(), new_key(), &root, 60, late),
            Err(CaError::AuthorityExpired { .. })
        ));
        let other = TrustDomain::parse("other.org").unwrap();
        assert!(matches!(
            intermediate(&other, new_key(), &root, 60, from_unix_secs(NOW)),
            Err(CaError::ForeignTrustDomain { .. })
        ));
    }

    #[test]
    fn from_parts_reloads_an_authority() {
        let root = root();
        let again =
            X509Authority::from_parts(root.cert_der().to_vec(), Arc::clone(root.key()), vec![])
                .unwrap();
        assert_eq!(again.subject_key_id(), root.subject_key_id());
        assert_eq!(again.not_after(), root.not_after());
        assert_eq!(again.not_before(), root.not_before());
    }

    #[test]
    fn from_parts_refuses_a_foreign_key_and_non_ca_certificates() {
        let root = root();
        assert!(matches!(
            X509Authority::from_parts(root.cert_der().to_vec(), new_key(), vec![]),
            Err(CaError::KeyMismatch)
        ));
        let leaf_key = new_key();
        let id = SpiffeId::parse("spiffe://example.org/w").unwrap();
        let leaf = root
            .sign_x509_svid_for_key(leaf_key.public_key_ref(), &id, 60, &[], from_unix_secs(NOW))
            .unwrap();
        assert!(matches!(
            X509Authority::from_parts(leaf, leaf_key, vec![]),
            Err(CaError::InvalidAuthority { .. })
        ));
        assert!(matches!(
            X509Authority::from_parts(b"junk".to_vec(), new_key(), vec![]),
            Err(CaError::InvalidAuthority { .. })
        ));
    }

    #[test]
    fn common_name_fits_64_characters() {
        let long = "a".repeat(255);
        let cn = common_name(&long, "intermediate");
        assert_eq!(cn.len(), 64);
        assert!(cn.ends_with(" intermediate"));
        assert_eq!(common_name("td", "root"), "td root");
    }

    #[test]
    fn debug_does_not_print_the_key() {
        let text = format!("{:?}", root());
        assert!(text.contains("PrivateKey(<redacted>)"));
        assert!(text.contains("example.org"));
    }
}
