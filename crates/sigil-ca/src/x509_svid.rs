//! X509-SVID leaves (SPIFFE X509-SVID spec §4 and §5), issued by an [`X509Authority`] with exactly
//! this profile: one URI SAN (the SPIFFE ID) plus the given DNS SANs; critical `CA:FALSE`;
//! critical KU digitalSignature + keyEncipherment + keyAgreement; EKU serverAuth + clientAuth;
//! AKI = the issuer's SKI; random positive 16-byte serial; NotBefore = now − 10 s; NotAfter =
//! min(now + ttl, issuer NotAfter); subject `O=Sigil` (and `CN=<first DNS name>` if any).

use std::time::SystemTime;

use rcgen::{DnType, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose, SanType};
use sigil_keys::PublicKey;
use sigil_keys::csr::verify_csr;
use sigil_spiffe::SpiffeId;
use sigil_spiffe::time::unix_secs;

use crate::validity::{MAX_COMMON_NAME_LEN, base_params};
use crate::{CaError, X509Authority};

/// Longest DNS name accepted (RFC 1035 §2.3.4, without the trailing dot).
const MAX_DNS_NAME_LEN: usize = 253;
/// Longest DNS label accepted.
const MAX_DNS_LABEL_LEN: usize = 63;

impl X509Authority {
    /// Issues an X509-SVID for `spiffe_id` to the holder of the key in `csr_der`.
    ///
    /// The CSR (at most 16 KiB) must carry a valid self-signature; only its public key is used,
    /// its subject and requested extensions are ignored. Fails with [`CaError::Key`] for a bad
    /// CSR, [`CaError::ForeignTrustDomain`], [`CaError::InvalidDnsName`], [`CaError::ZeroTtl`] or
    /// [`CaError::AuthorityExpired`].
    pub fn sign_x509_svid(
        &self,
        csr_der: &[u8],
        spiffe_id: &SpiffeId,
        ttl_secs: u64,
        dns_names: &[String],
        now: SystemTime,
    ) -> Result<Vec<u8>, CaError> {
        let csr = verify_csr(csr_der)?;
        self.sign_x509_svid_for_key(&csr.public_key, spiffe_id, ttl_secs, dns_names, now)
    }

    /// Issues an X509-SVID for `spiffe_id` and `public_key` directly (the server's own SVID, whose
    /// key never leaves the process). Same profile and errors as [`Self::sign_x509_svid`].
    pub fn sign_x509_svid_for_key(
        &self,
        public_key: &PublicKey,
        spiffe_id: &SpiffeId,
        ttl_secs: u64,
        dns_names: &[String],
        now: SystemTime,
    ) -> Result<Vec<u8>, CaError> {
        self.check_member(spiffe_id)?;
        let now = unix_secs(now);
        let not_after = self.clamp_not_after(now, ttl_secs)?;

        let mut params = base_params(now, not_after)?;
        if let Some(first) = dns_names.first().filter(|n| n.len() <= MAX_COMMON_NAME_LEN) {
            params
                .distinguished_name
                .push(DnType::CommonName, first.as_str());
        }
        let mut sans = Vec::with_capacity(1 + dns_names.len());
        sans.push(SanType::URI(spiffe_id.as_str().try_into()?));
        for name in dns_names {
            check_dns_name(name)?;
            sans.push(SanType::DnsName(name.as_str().try_into()?));
        }
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyAgreement,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;

        let cert = params.signed_by(public_key, &self.issuer)?;
        Ok(cert.der().to_vec())
    }
}

/// Accepts host names (letters, digits, `-` in labels of 1 to 63 characters, no leading or
/// trailing `-`) and a leading `*` wildcard label.
fn check_dns_name(name: &str) -> Result<(), CaError> {
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= MAX_DNS_LABEL_LEN
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    let ok = !name.is_empty()
        && name.len() <= MAX_DNS_NAME_LEN
        && name
            .split('.')
            .enumerate()
            .all(|(i, label)| (i == 0 && label == "*" && name.len() > 2) || label_ok(label));
    if ok {
        Ok(())
    } else {
        Err(CaError::InvalidDnsName {
            name: name.chars().take(MAX_DNS_NAME_LEN).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use sigil_keys::{KeyError, PrivateKey};
    use sigil_spiffe::TrustDomain;
    use sigil_spiffe::time::from_unix_secs;
    use x509_parser::certificate::X509Certificate;
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    use x509_parser::oid_registry::OID_X509_EXT_SUBJECT_ALT_NAME;
    use x509_parser::prelude::FromDer;

    use super::*;
    use crate::validity::BACKDATE_SECS;
    use crate::{intermediate, self_signed_root};

    const NOW: i64 = 1_700_000_000;

    struct Ca {
        root: X509Authority,
        inter: X509Authority,
    }

    fn ca() -> Ca {
        let td = TrustDomain::parse("example.org").unwrap();
        let now = from_unix_secs(NOW);
        let root =
            self_signed_root(&td, Arc::new(PrivateKey::generate().unwrap()), 86_400, now).unwrap();
        let inter = intermediate(
            &td,
            Arc::new(PrivateKey::generate().unwrap()),
            &root,
            3_600,
            now,
        )
        .unwrap();
        Ca { root, inter }
    }

    fn id() -> SpiffeId {
        SpiffeId::parse("spiffe://example.org/ns/prod/sa/api").unwrap()
    }

    fn leaf(ca: &Ca, ttl: u64, dns: &[&str]) -> (PrivateKey, Vec<u8>) {
        let key = PrivateKey::generate().unwrap();
        let other_id = SpiffeId::parse("spiffe://evil.org/requested").unwrap();
        let csr = key.csr_der(&other_id).unwrap();
        let dns: Vec<String> = dns.iter().map(|s| (*s).to_owned()).collect();
        let der = ca
            .inter
            .sign_x509_svid(&csr, &id(), ttl, &dns, from_unix_secs(NOW))
            .unwrap();
        (key, der)
    }

    #[test]
    fn leaf_has_exactly_the_spiffe_profile() {
        let ca = ca();
        let (key, der) = leaf(&ca, 600, &["api.example.org", "api"]);
        let (rest, cert) = X509Certificate::from_der(&der).unwrap();
        assert!(rest.is_empty());
        assert_eq!(cert.version().0, 2, "v3");

        // Only the public key comes from the CSR.
        assert_eq!(cert.public_key().raw, key.public_key().spki_der());

        // One URI SAN, the requested SPIFFE ID (not the CSR's), plus the DNS names.
        let san = cert.subject_alternative_name().unwrap().unwrap();
        let uris: Vec<_> = san
            .value
            .general_names
            .iter()
            .filter_map(|n| {
                if let GeneralName::URI(u) = n {
                    Some(*u)
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(uris, vec!["spiffe://example.org/ns/prod/sa/api"]);
        let dns: Vec<_> = san
            .value
            .general_names
            .iter()
            .filter_map(|n| {
                if let GeneralName::DNSName(d) = n {
                    Some(*d)
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(dns, vec!["api.example.org", "api"]);
        assert_eq!(san.value.general_names.len(), 3);
        assert!(
            !cert
                .get_extension_unique(&OID_X509_EXT_SUBJECT_ALT_NAME)
                .unwrap()
                .unwrap()
                .critical
        );

        // CA:FALSE, critical.
        let bc = cert.basic_constraints().unwrap().unwrap();
        assert!(bc.critical);
        assert!(!bc.value.ca);
        assert!(bc.value.path_len_constraint.is_none());

        // KU digitalSignature + keyEncipherment + keyAgreement, critical, nothing else.
        let ku = cert.key_usage().unwrap().unwrap();
        assert!(ku.critical);
        assert!(ku.value.digital_signature());
        assert!(ku.value.key_encipherment());
        assert!(ku.value.key_agreement());
        assert!(!ku.value.key_cert_sign());
        assert!(!ku.value.crl_sign());
        assert!(!ku.value.non_repudiation());
        assert!(!ku.value.data_encipherment());

        // EKU serverAuth + clientAuth only.
        let eku = cert.extended_key_usage().unwrap().unwrap();
        assert!(eku.value.server_auth);
        assert!(eku.value.client_auth);
        assert!(!eku.value.any && !eku.value.code_signing && !eku.value.email_protection);
        assert!(eku.value.other.is_empty());

        // AKI = issuer SKI.
        let aki = cert
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(aki) => aki.key_identifier.clone(),
                _ => None,
            })
            .unwrap();
        assert_eq!(sigil_keys::digest::hex(aki.0), ca.inter.subject_key_id());

        // Issuer name is the intermediate's subject.
        let (_, inter_cert) = X509Certificate::from_der(ca.inter.cert_der()).unwrap();
        assert_eq!(cert.issuer().as_raw(), inter_cert.subject().as_raw());

        // Subject O=Sigil, CN = first DNS name.
        let org: Vec<_> = cert
            .subject()
            .iter_organization()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(org, vec!["Sigil"]);
        let cn: Vec<_> = cert
            .subject()
            .iter_common_name()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(cn, vec!["api.example.org"]);

        // Serial: positive, at least 64 bits.
        assert!(cert.raw_serial().len() >= 8);
        assert!(cert.serial.bits() >= 64);
        assert_eq!(cert.raw_serial()[0] & 0x80, 0);

        // Validity: NotBefore back-dated by at most 10 s, NotAfter = now + ttl.
        let not_before = cert.validity().not_before.timestamp();
        assert!(not_before <= NOW && NOW - not_before <= BACKDATE_SECS);
        assert_eq!(cert.validity().not_after.timestamp(), NOW + 600);

        // Signed by the intermediate.
        cert.verify_signature(Some(inter_cert.public_key()))
            .unwrap();
    }

    #[test]
    fn leaf_without_dns_names_has_no_common_name() {
        let ca = ca();
        let (_, der) = leaf(&ca, 600, &[]);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(cert.subject().iter_common_name().count(), 0);
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert_eq!(san.value.general_names.len(), 1);
    }

    #[test]
    fn not_after_is_clamped_to_the_issuer() {
        let ca = ca();
        let (_, der) = leaf(&ca, 30 * 86_400, &[]);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(cert.validity().not_after.timestamp(), ca.inter.not_after());
        assert_eq!(ca.inter.not_after(), NOW + 3_600);
    }

    #[test]
    fn serials_differ_between_leaves() {
        let ca = ca();
        let (_, a) = leaf(&ca, 600, &[]);
        let (_, b) = leaf(&ca, 600, &[]);
        let serial = |der: &[u8]| {
            X509Certificate::from_der(der)
                .unwrap()
                .1
                .raw_serial()
                .to_vec()
        };
        assert_ne!(serial(&a), serial(&b));
    }

    #[test]
    fn refuses_a_csr_with_a_bad_signature() {
        let ca = ca();
        let key = PrivateKey::generate().unwrap();
        let mut csr = key.csr_der(&id()).unwrap();
        let last = csr.len() - 1;
        csr[last] ^= 0x01;
        let err = ca
            .inter
            .sign_x509_svid(&csr, &id(), 600, &[], from_unix_secs(NOW))
            .unwrap_err();
        assert!(
            matches!(err, CaError::Key(KeyError::BadCsrSignature)),
            "{err:?}"
        );
    }

    #[test]
    fn refuses_ids_of_other_trust_domains() {
        let ca = ca();
        let key = PrivateKey::generate().unwrap();
        let other = SpiffeId::parse("spiffe://other.org/w").unwrap();
        let err = ca
            .inter
            .sign_x509_svid_for_key(&key.public_key(), &other, 600, &[], from_unix_secs(NOW))
            .unwrap_err();
        assert!(matches!(err, CaError::ForeignTrustDomain { .. }));
    }

    #[test]
    fn refuses_to_issue_after_the_authority_expired() {
        let ca = ca();
        let key = PrivateKey::generate().unwrap();
        let late = from_unix_secs(NOW) + Duration::from_secs(3_600);
        let err = ca
            .inter
            .sign_x509_svid_for_key(&key.public_key(), &id(), 600, &[], late)
            .unwrap_err();
        assert!(matches!(err, CaError::AuthorityExpired { .. }));
    }

    #[test]
    fn refuses_zero_ttl_and_bad_dns_names() {
        let ca = ca();
        let key = PrivateKey::generate().unwrap().public_key();
        let now = from_unix_secs(NOW);
        assert!(matches!(
            ca.inter.sign_x509_svid_for_key(&key, &id(), 0, &[], now),
            Err(CaError::ZeroTtl)
        ));
        for bad in [
            "",
            "a..b",
            "-a.b",
            "a b",
            "é.org",
            "*",
            "a.*.b",
            &"a".repeat(64),
        ] {
            let names = vec![bad.to_owned()];
            assert!(
                matches!(
                    ca.inter
                        .sign_x509_svid_for_key(&key, &id(), 60, &names, now),
                    Err(CaError::InvalidDnsName { .. })
                ),
                "{bad:?}"
            );
        }
        let ok = vec!["*.example.org".to_owned(), "localhost".to_owned()];
        ca.inter
            .sign_x509_svid_for_key(&key, &id(), 60, &ok, now)
            .unwrap();
    }

    #[test]
    fn root_can_issue_leaves_directly() {
        let ca = ca();
        let key = PrivateKey::generate().unwrap().public_key();
        let der = ca
            .root
            .sign_x509_svid_for_key(&key, &id(), 60, &[], from_unix_secs(NOW))
            .unwrap();
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let (_, root) = X509Certificate::from_der(ca.root.cert_der()).unwrap();
        cert.verify_signature(Some(root.public_key())).unwrap();
        assert_eq!(ca.root.svid_chain(der.clone()), vec![der]);
    }

    /// The ids an agent compares with tainted authorities: those of the intermediate and of the
    /// root, as the CA names them, and nothing else.
    #[test]
    fn a_chain_names_its_intermediate_and_root_by_their_authority_ids() {
        let ca = ca();
        let (_, der) = leaf(&ca, 60, &[]);
        let chain = ca.inter.svid_chain(der);
        let mut ids = sigil_keys::cert_ids::chain_authority_ids(&chain);
        ids.sort();
        let mut want = vec![ca.inter.subject_key_id(), ca.root.subject_key_id()];
        want.sort();
        assert_eq!(ids, want);
    }
}
