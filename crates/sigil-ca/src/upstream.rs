//! An upstream authority: a CA certificate and key that an operator holds outside Sigil (a
//! corporate or offline CA) and gives every server replica of a trust domain. When one is
//! configured, each replica's root authority is a CA certificate signed by the upstream key
//! instead of a self-signed one, and relying parties trust the upstream's root alone: the
//! replicas' own roots rotate without the trust bundle changing for them.
//!
//! The upstream key signs only at root rotation (once a year by default); the replicas'
//! intermediates, which sign SVIDs, stay under each replica's root.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use sigil_keys::{PrivateKey, PublicKey};
use sigil_spiffe::TrustDomain;
use sigil_spiffe::time::unix_secs;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::CaError;
use crate::authority::{AuthorityKey, X509Authority, ca_params};

/// Most certificates read from an upstream certificate or bundle file.
pub const MAX_UPSTREAM_CERTS: usize = 16;
/// Largest upstream certificate accepted, in bytes.
const MAX_UPSTREAM_CERT_BYTES: usize = 64 * 1024;
/// CA certificates a path may hold below the upstream's certificate: the replica's root and its
/// intermediate.
const CAS_BELOW_UPSTREAM: u32 = 2;

/// The upstream CA: its certificate, key and the certificates relying parties trust.
pub struct UpstreamAuthority {
    cert_der: Vec<u8>,
    /// Certificates between the upstream certificate and its root, nearest first, root excluded.
    chain: Vec<Vec<u8>>,
    self_signed: bool,
    not_after: i64,
    /// The trust anchors to publish: the upstream's root (or roots).
    anchors: Vec<Vec<u8>>,
    issuer: rcgen::Issuer<'static, AuthorityKey>,
}

/// What was read from one certificate (only what the checks need).
struct Parsed {
    self_signed: bool,
    not_after: i64,
}

impl UpstreamAuthority {
    /// Builds the upstream from its certificate chain (DER, the upstream's own certificate first,
    /// then any intermediates up to and possibly including its root), its P-256 key, and
    /// optionally the trust anchors to publish (DER). Without anchors, the chain must end in a
    /// self-signed root, which becomes the anchor.
    ///
    /// Checks, each with its own error: the certificate is a CA whose key usage (if present)
    /// allows certificate signing, whose path length (if limited) leaves room for a replica root
    /// and an intermediate, that has not expired at `now`, and whose key is `key`.
    pub fn new(
        chain_der: Vec<Vec<u8>>,
        key: Arc<PrivateKey>,
        anchors: Option<Vec<Vec<u8>>>,
        now: SystemTime,
    ) -> Result<Self, CaError> {
        let invalid = |reason| CaError::InvalidUpstream { reason };
        let mut certs = chain_der.into_iter();
        let cert_der = certs
            .next()
            .ok_or(invalid("the certificate file holds no certificate"))?;
        let rest: Vec<Vec<u8>> = certs.collect();
        if rest.len() >= MAX_UPSTREAM_CERTS {
            return Err(invalid(
                "the certificate file holds more than 16 certificates",
            ));
        }
        let own = check_upstream_cert(&cert_der, &key, unix_secs(now))?;
        let mut chain = Vec::with_capacity(rest.len());
        let mut chain_root = own.self_signed.then(|| cert_der.clone());
        for der in rest {
            let parsed = parse_ca(&der)?;
            if parsed.self_signed {
                if chain_root.is_some() {
                    return Err(invalid("the certificate file holds more than one root"));
                }
                chain_root = Some(der);
            } else if chain_root.is_some() {
                return Err(invalid(
                    "the certificate file holds certificates after its root",
                ));
            } else {
                chain.push(der);
            }
        }
        let anchors = match anchors {
            Some(anchors) if anchors.is_empty() => {
                return Err(invalid("the bundle file holds no certificate"));
            }
            Some(anchors) if anchors.len() > MAX_UPSTREAM_CERTS => {
                return Err(invalid("the bundle file holds more than 16 certificates"));
            }
            Some(anchors) => {
                for der in &anchors {
                    parse_ca(der)?;
                }
                anchors
            }
            None => vec![chain_root.ok_or(invalid(
                "the certificate file does not end in a self-signed root: name the upstream's \
                 root in a bundle file",
            ))?],
        };
        let issuer =
            rcgen::Issuer::from_ca_cert_der(&cert_der.as_slice().into(), AuthorityKey::new(key))?;
        Ok(Self {
            cert_der,
            chain,
            self_signed: own.self_signed,
            not_after: own.not_after,
            anchors,
            issuer,
        })
    }

    /// The upstream's certificate (DER).
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The trust anchors relying parties should hold for what this upstream signs (DER).
    pub fn anchors(&self) -> &[Vec<u8>] {
        &self.anchors
    }

    /// NotAfter of the upstream's certificate, Unix seconds.
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    /// The certificates a CA signed by this upstream chains through, nearest first, root
    /// excluded: the upstream's certificate unless it is itself a root, then its intermediates.
    pub fn chain_for_issued(&self) -> Vec<Vec<u8>> {
        let mut chain = Vec::with_capacity(self.chain.len() + 1);
        if !self.self_signed {
            chain.push(self.cert_der.clone());
        }
        chain.extend(self.chain.iter().cloned());
        chain
    }

    /// Whether `cert_der` (a replica root) was issued by this upstream: its issuer name is the
    /// upstream's subject and the upstream key verifies its signature.
    pub fn issued(&self, cert_der: &[u8]) -> bool {
        let (Ok((_, cert)), Ok((_, upstream))) = (
            X509Certificate::from_der(cert_der),
            X509Certificate::from_der(&self.cert_der),
        ) else {
            return false;
        };
        PublicKey::from_spki_der(upstream.public_key().raw)
            .is_ok_and(|key| signed_by(&cert, upstream.subject().as_raw(), &key))
    }
}

/// A root authority for `td` signed by `upstream` (not self-signed), with `key`: the CA profile
/// of a self-signed root plus an AKI naming the upstream's key, NotAfter clamped to the
/// upstream's. Its upstream chain is the upstream's [`UpstreamAuthority::chain_for_issued`].
/// Fails with [`CaError::AuthorityExpired`] when the upstream has expired at `now`.
pub fn upstream_signed_root(
    td: &TrustDomain,
    key: Arc<PrivateKey>,
    upstream: &UpstreamAuthority,
    ttl_secs: u64,
    now: SystemTime,
) -> Result<X509Authority, CaError> {
    let now = unix_secs(now);
    if upstream.not_after <= now {
        return Err(CaError::AuthorityExpired {
            not_after: upstream.not_after,
            now,
        });
    }
    let not_after = crate::validity::end_of_ttl(now, ttl_secs)?.min(upstream.not_after);
    let params = ca_params(td, "root", now, not_after, true)?;
    let cert = params.signed_by(key.as_ref(), &upstream.issuer)?;
    X509Authority::from_parts(cert.der().to_vec(), key, upstream.chain_for_issued())
}

/// Checks the upstream's own certificate against `key` at `now`.
fn check_upstream_cert(der: &[u8], key: &PrivateKey, now: i64) -> Result<Parsed, CaError> {
    let invalid = |reason| CaError::InvalidUpstream { reason };
    let parsed = parse_ca(der)?;
    let (_, cert) = X509Certificate::from_der(der).map_err(|_| invalid("not DER X.509"))?;
    let key_usage = cert
        .key_usage()
        .map_err(|_| invalid("duplicate keyUsage"))?;
    if key_usage.is_some_and(|ku| !ku.value.key_cert_sign()) {
        return Err(invalid("its key usage does not allow signing certificates"));
    }
    let path_len = cert
        .basic_constraints()
        .map_err(|_| invalid("duplicate basicConstraints"))?
        .and_then(|bc| bc.value.path_len_constraint);
    if path_len.is_some_and(|limit| limit < CAS_BELOW_UPSTREAM) {
        return Err(invalid(
            "its path length limit is below 2: it must sign each replica's root, which \
             signs intermediates",
        ));
    }
    if cert.validity().not_before.timestamp() > now {
        return Err(invalid("the certificate is not yet valid"));
    }
    if parsed.not_after <= now {
        return Err(CaError::AuthorityExpired {
            not_after: parsed.not_after,
            now,
        });
    }
    let cert_key = PublicKey::from_spki_der(cert.public_key().raw)?;
    if cert_key != *key.public_key_ref() {
        return Err(CaError::KeyMismatch);
    }
    Ok(parsed)
}

/// Whether `der` is a self-signed certificate (its issuer is its subject and its own key verifies
/// its signature); `false` for anything that does not parse.
pub fn is_self_signed(der: &[u8]) -> bool {
    X509Certificate::from_der(der).is_ok_and(|(_, cert)| signed_by_own_key(&cert))
}

fn signed_by_own_key(cert: &X509Certificate<'_>) -> bool {
    PublicKey::from_spki_der(cert.public_key().raw)
        .is_ok_and(|key| signed_by(cert, cert.subject().as_raw(), &key))
}

/// Whether `cert` names `issuer_name` (raw DER) as its issuer and `issuer_key` verifies its
/// signature.
pub(crate) fn signed_by(
    cert: &X509Certificate<'_>,
    issuer_name: &[u8],
    issuer_key: &PublicKey,
) -> bool {
    cert.issuer().as_raw() == issuer_name
        && issuer_key
            .verify_x509(cert.tbs_certificate.as_ref(), &cert.signature_value.data)
            .is_ok()
}

/// Parses a CA certificate of the upstream's chain or bundle.
fn parse_ca(der: &[u8]) -> Result<Parsed, CaError> {
    let invalid = |reason| CaError::InvalidUpstream { reason };
    if der.len() > MAX_UPSTREAM_CERT_BYTES {
        return Err(invalid("a certificate is larger than 64 KiB"));
    }
    let cert = match X509Certificate::from_der(der) {
        Ok(([], cert)) => cert,
        Ok(_) => return Err(invalid("trailing bytes after a certificate")),
        Err(_) => return Err(invalid("a certificate is not DER X.509")),
    };
    let is_ca = cert
        .basic_constraints()
        .map_err(|_| invalid("duplicate basicConstraints"))?
        .is_some_and(|bc| bc.value.ca);
    if !is_ca {
        return Err(invalid(
            "a certificate is not a CA (basicConstraints CA:TRUE missing)",
        ));
    }
    Ok(Parsed {
        self_signed: signed_by_own_key(&cert),
        not_after: cert.validity().not_after.timestamp(),
    })
}

impl fmt::Debug for UpstreamAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamAuthority")
            .field("self_signed", &self.self_signed)
            .field("not_after", &self.not_after)
            .field("chain", &self.chain.len())
            .field("anchors", &self.anchors.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyUsagePurpose};
    use sigil_spiffe::time::from_unix_secs;
    use x509_parser::extensions::ParsedExtension;

    use super::*;

    const NOW: i64 = 1_700_000_000;
    const DAY: i64 = 86_400;

    fn td() -> TrustDomain {
        TrustDomain::parse("example.org").unwrap()
    }

    fn new_key() -> Arc<PrivateKey> {
        Arc::new(PrivateKey::generate().unwrap())
    }

    /// CA parameters of a corporate-style CA (no SPIFFE SAN), valid around `NOW` for `days`.
    fn corporate_params(name: &str, days: i64, path_len: Option<u8>) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.not_before = crate::validity::to_datetime(NOW - DAY).unwrap();
        params.not_after = crate::validity::to_datetime(NOW + days * DAY).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(match path_len {
            Some(n) => BasicConstraints::Constrained(n),
            None => BasicConstraints::Unconstrained,
        });
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
    }

    /// A self-signed corporate root: (DER, key).
    fn corporate_root(days: i64) -> (Vec<u8>, Arc<PrivateKey>) {
        let key = new_key();
        let cert = corporate_params("Corp Root", days, None)
            .self_signed(key.as_ref())
            .unwrap();
        (cert.der().to_vec(), key)
    }

    /// A corporate intermediate under `root`: (DER, key).
    fn corporate_intermediate(
        root_der: &[u8],
        root_key: &Arc<PrivateKey>,
        path_len: Option<u8>,
    ) -> (Vec<u8>, Arc<PrivateKey>) {
        let issuer =
            rcgen::Issuer::from_ca_cert_der(&root_der.into(), AuthorityKey::new(root_key.clone()))
                .unwrap();
        let key = new_key();
        let mut params = corporate_params("Corp Issuing CA", 365, path_len);
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(key.as_ref(), &issuer).unwrap();
        (cert.der().to_vec(), key)
    }

    fn at_now() -> SystemTime {
        from_unix_secs(NOW)
    }

    fn ski(der: &[u8]) -> Vec<u8> {
        let (_, cert) = X509Certificate::from_der(der).unwrap();
        cert.iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                _ => None,
            })
            .unwrap()
    }

    fn aki(der: &[u8]) -> Vec<u8> {
        let (_, cert) = X509Certificate::from_der(der).unwrap();
        cert.iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(a) => {
                    a.key_identifier.as_ref().map(|k| k.0.to_vec())
                }
                _ => None,
            })
            .unwrap()
    }

    fn verifies(signer_der: &[u8], cert_der: &[u8]) -> bool {
        let (_, signer) = X509Certificate::from_der(signer_der).unwrap();
        let (_, cert) = X509Certificate::from_der(cert_der).unwrap();
        PublicKey::from_spki_der(signer.public_key().raw)
            .unwrap()
            .verify_x509(cert.tbs_certificate.as_ref(), &cert.signature_value.data)
            .is_ok()
    }

    #[test]
    fn a_self_signed_upstream_signs_replica_roots_and_is_the_anchor() {
        let (root_der, root_key) = corporate_root(3650);
        let upstream =
            UpstreamAuthority::new(vec![root_der.clone()], root_key, None, at_now()).unwrap();
        assert_eq!(upstream.anchors(), std::slice::from_ref(&root_der));
        assert!(upstream.chain_for_issued().is_empty());

        let replica_root =
            upstream_signed_root(&td(), new_key(), &upstream, 365 * 86_400, at_now()).unwrap();
        assert!(!replica_root.is_self_signed());
        assert!(verifies(&root_der, replica_root.cert_der()));
        assert_eq!(aki(replica_root.cert_der()), ski(&root_der));
        assert!(upstream.issued(replica_root.cert_der()));
        assert_eq!(replica_root.trust_domain(), &td());

        // An intermediate under the replica root chains through it; the upstream root is never
        // in a served chain.
        let inter = crate::intermediate(&td(), new_key(), &replica_root, 86_400, at_now()).unwrap();
        assert_eq!(
            inter.svid_chain(b"leaf".to_vec()),
            vec![
                b"leaf".to_vec(),
                inter.cert_der().to_vec(),
                replica_root.cert_der().to_vec()
            ]
        );
    }

    #[test]
    fn an_upstream_intermediate_is_served_in_the_chain_and_its_root_is_the_anchor() {
        let (root_der, root_key) = corporate_root(3650);
        let (inter_der, inter_key) = corporate_intermediate(&root_der, &root_key, None);
        let upstream = UpstreamAuthority::new(
            vec![inter_der.clone(), root_der.clone()],
            inter_key.clone(),
            None,
            at_now(),
        )
        .unwrap();
        assert_eq!(upstream.anchors(), std::slice::from_ref(&root_der));
        assert_eq!(upstream.chain_for_issued(), vec![inter_der.clone()]);
        let replica_root =
            upstream_signed_root(&td(), new_key(), &upstream, 86_400, at_now()).unwrap();
        assert_eq!(
            replica_root.upstream_chain(),
            std::slice::from_ref(&inter_der)
        );
        assert!(verifies(&inter_der, replica_root.cert_der()));

        // Without its root in the file, the anchor must come from a bundle.
        let no_root =
            UpstreamAuthority::new(vec![inter_der.clone()], inter_key.clone(), None, at_now());
        assert!(matches!(no_root, Err(CaError::InvalidUpstream { .. })));
        let with_bundle = UpstreamAuthority::new(
            vec![inter_der],
            inter_key,
            Some(vec![root_der.clone()]),
            at_now(),
        )
        .unwrap();
        assert_eq!(with_bundle.anchors(), &[root_der]);
    }

    #[test]
    fn replica_roots_end_with_the_upstream() {
        let (root_der, root_key) = corporate_root(30);
        let upstream = UpstreamAuthority::new(vec![root_der], root_key, None, at_now()).unwrap();
        let replica_root =
            upstream_signed_root(&td(), new_key(), &upstream, 365 * 86_400, at_now()).unwrap();
        assert_eq!(replica_root.not_after(), upstream.not_after());
        assert_eq!(upstream.not_after(), NOW + 30 * DAY);
        let later = from_unix_secs(NOW + 31 * DAY);
        assert!(matches!(
            upstream_signed_root(&td(), new_key(), &upstream, 86_400, later),
            Err(CaError::AuthorityExpired { .. })
        ));
    }

    #[test]
    fn unusable_upstreams_are_refused_each_with_its_reason() {
        let (root_der, root_key) = corporate_root(3650);
        // Another key than the certificate's.
        assert!(matches!(
            UpstreamAuthority::new(vec![root_der.clone()], new_key(), None, at_now()),
            Err(CaError::KeyMismatch)
        ));
        // Expired at load.
        let (old_der, old_key) = corporate_root(1);
        assert!(matches!(
            UpstreamAuthority::new(vec![old_der], old_key, None, from_unix_secs(NOW + 2 * DAY)),
            Err(CaError::AuthorityExpired { .. })
        ));
        // A path length that leaves no room for a replica root and its intermediate.
        let (short_der, short_key) = corporate_intermediate(&root_der, &root_key, Some(1));
        let refused =
            UpstreamAuthority::new(vec![short_der, root_der.clone()], short_key, None, at_now());
        assert!(
            matches!(&refused, Err(CaError::InvalidUpstream { reason }) if reason.contains("path length")),
            "{refused:?}"
        );
        // Not a CA.
        let leaf_key = new_key();
        let mut leaf = corporate_params("not a CA", 30, None);
        leaf.is_ca = IsCa::ExplicitNoCa;
        let leaf_der = leaf.self_signed(leaf_key.as_ref()).unwrap().der().to_vec();
        let refused = UpstreamAuthority::new(vec![leaf_der], leaf_key, None, at_now());
        assert!(
            matches!(&refused, Err(CaError::InvalidUpstream { reason }) if reason.contains("not a CA")),
            "{refused:?}"
        );
        // A key usage without keyCertSign.
        let ku_key = new_key();
        let mut ku = corporate_params("CRL only", 30, None);
        ku.key_usages = vec![KeyUsagePurpose::CrlSign];
        let ku_der = ku.self_signed(ku_key.as_ref()).unwrap().der().to_vec();
        let refused = UpstreamAuthority::new(vec![ku_der], ku_key, None, at_now());
        assert!(
            matches!(&refused, Err(CaError::InvalidUpstream { reason }) if reason.contains("key usage")),
            "{refused:?}"
        );
        // Nothing at all, or an empty bundle.
        assert!(matches!(
            UpstreamAuthority::new(Vec::new(), new_key(), None, at_now()),
            Err(CaError::InvalidUpstream { .. })
        ));
        assert!(matches!(
            UpstreamAuthority::new(vec![root_der], root_key, Some(Vec::new()), at_now()),
            Err(CaError::InvalidUpstream { .. })
        ));
    }

    #[test]
    fn issued_tells_the_upstreams_roots_from_others() {
        let (root_der, root_key) = corporate_root(3650);
        let upstream = UpstreamAuthority::new(vec![root_der], root_key, None, at_now()).unwrap();
        let mine = upstream_signed_root(&td(), new_key(), &upstream, 86_400, at_now()).unwrap();
        let own = crate::self_signed_root(&td(), new_key(), 86_400, at_now()).unwrap();
        assert!(upstream.issued(mine.cert_der()));
        assert!(!upstream.issued(own.cert_der()));
        assert!(!upstream.issued(b"not a certificate"));
    }
}
