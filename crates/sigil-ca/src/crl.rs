//! Certificate revocation lists (RFC 5280 §5): an X.509 authority signs the list of the
//! certificates it issued that are revoked and have not expired. Workloads get them in the
//! Workload API `crl` fields.
//!
//! A CRL is valid from the moment it is signed until its issuer expires (`nextUpdate` is the
//! issuer's `notAfter`): the server signs a new one whenever the list changes, so there is no
//! other schedule to keep, and a CRL never outlives the authority that vouches for it.

use std::time::SystemTime;

use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};
use sigil_spiffe::time::unix_secs;

use crate::X509Authority;
use crate::error::CaError;
use crate::validity::to_datetime;

/// Most certificates listed in one CRL: a deny-list larger than this is an operational problem
/// to surface, not a document to sign.
pub const MAX_CRL_ENTRIES: usize = 100_000;

/// One certificate to list as revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedCert {
    /// The certificate's serial number: the content octets of its DER INTEGER.
    pub serial: Vec<u8>,
    /// When it was revoked, Unix seconds.
    pub revoked_at: i64,
}

impl X509Authority {
    /// A DER CRL signed by this authority listing `revoked`, numbered `crl_number` (which must
    /// grow from one CRL of this authority to the next), valid from `now` until this authority
    /// expires. Fails with [`CaError::AuthorityExpired`] if it has expired at `now` and
    /// [`CaError::TooManyRevocations`] beyond [`MAX_CRL_ENTRIES`].
    pub fn sign_crl(
        &self,
        revoked: &[RevokedCert],
        crl_number: u64,
        now: SystemTime,
    ) -> Result<Vec<u8>, CaError> {
        let now = unix_secs(now);
        if self.not_after() <= now {
            return Err(CaError::AuthorityExpired {
                not_after: self.not_after(),
                now,
            });
        }
        if revoked.len() > MAX_CRL_ENTRIES {
            return Err(CaError::TooManyRevocations {
                count: revoked.len(),
                max: MAX_CRL_ENTRIES,
            });
        }
        let revoked_certs = revoked
            .iter()
            .map(|r| {
                Ok(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&r.serial),
                    revocation_time: to_datetime(r.revoked_at)?,
                    reason_code: None,
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>, CaError>>()?;
        let params = CertificateRevocationListParams {
            this_update: to_datetime(now)?,
            next_update: to_datetime(self.not_after())?,
            crl_number: SerialNumber::from_slice(&crl_number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs,
            // The authority key identifier must equal this authority's subject key identifier,
            // however that was derived.
            key_identifier_method: KeyIdMethod::PreSpecified(self.subject_key_id_bytes().to_vec()),
        };
        Ok(params.signed_by(&self.issuer)?.der().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    use sigil_keys::PrivateKey;
    use sigil_spiffe::{SpiffeId, TrustDomain};
    use x509_parser::prelude::{FromDer, X509Certificate};
    use x509_parser::revocation_list::CertificateRevocationList;

    use super::*;
    use crate::{intermediate, self_signed_root};

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn authorities() -> (X509Authority, X509Authority) {
        let td = TrustDomain::parse("example.org").unwrap();
        let root = self_signed_root(
            &td,
            Arc::new(PrivateKey::generate().unwrap()),
            10_000,
            at(1_000_000),
        )
        .unwrap();
        let inter = intermediate(
            &td,
            Arc::new(PrivateKey::generate().unwrap()),
            &root,
            5_000,
            at(1_000_000),
        )
        .unwrap();
        (root, inter)
    }

    fn verify(
        crl: &CertificateRevocationList<'_>,
        by: &X509Authority,
    ) -> Result<(), sigil_keys::KeyError> {
        by.key()
            .public_key_ref()
            .verify_x509(crl.tbs_cert_list.as_ref(), &crl.signature_value.data)
    }

    #[test]
    fn crl_lists_the_revoked_serials_and_verifies_under_its_issuer() {
        let (_, inter) = authorities();
        let key = PrivateKey::generate().unwrap();
        let id = SpiffeId::parse("spiffe://example.org/w").unwrap();
        let leaf = inter
            .sign_x509_svid_for_key(key.public_key_ref(), &id, 600, &[], at(1_000_010))
            .unwrap();
        let (_, leaf_cert) = X509Certificate::from_der(&leaf).unwrap();
        let serial = leaf_cert.tbs_certificate.raw_serial().to_vec();
        let revoked = [RevokedCert {
            serial: serial.clone(),
            revoked_at: 1_000_020,
        }];
        let der = inter.sign_crl(&revoked, 7, at(1_000_030)).unwrap();

        let (rest, crl) = CertificateRevocationList::from_der(&der).unwrap();
        assert!(rest.is_empty());
        let (_, issuer) = X509Certificate::from_der(inter.cert_der()).unwrap();
        verify(&crl, &inter).unwrap();
        assert_eq!(crl.issuer(), issuer.subject());
        let listed: Vec<&[u8]> = crl
            .iter_revoked_certificates()
            .map(|r| r.raw_serial())
            .collect();
        assert_eq!(listed, vec![serial.as_slice()]);
        assert_eq!(crl.last_update().timestamp(), 1_000_030);
        assert_eq!(
            crl.next_update().map(|t| t.timestamp()),
            Some(inter.not_after())
        );
        assert_eq!(
            crl.crl_number().map(|n| n.to_string()),
            Some("7".to_owned())
        );
        // The AKI names the issuer's SKI, so a verifier finds the right CRL for a chain.
        let aki = crl
            .extensions()
            .iter()
            .find_map(|ext| match ext.parsed_extension() {
                x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(aki) => aki
                    .key_identifier
                    .as_ref()
                    .map(|k| sigil_keys::digest::hex(k.0)),
                _ => None,
            });
        assert_eq!(aki, Some(inter.subject_key_id()));
    }

    #[test]
    fn crl_signed_by_another_authority_does_not_verify() {
        let (root, inter) = authorities();
        let der = root.sign_crl(&[], 1, at(1_000_030)).unwrap();
        let (_, crl) = CertificateRevocationList::from_der(&der).unwrap();
        assert!(verify(&crl, &inter).is_err());
        verify(&crl, &root).unwrap();
        assert_eq!(crl.iter_revoked_certificates().count(), 0);
    }

    #[test]
    fn an_expired_authority_signs_no_crl() {
        let (_, inter) = authorities();
        let err = inter
            .sign_crl(&[], 1, at(inter.not_after().unsigned_abs()))
            .unwrap_err();
        assert!(matches!(err, CaError::AuthorityExpired { .. }), "{err}");
    }
}
