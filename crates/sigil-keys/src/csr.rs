//! PKCS#10 certificate signing requests from untrusted peers: bounded parsing and verification of
//! the self-signature (proof that the requester holds the private key). A CA takes only the public
//! key from the result; the requested names are reported for logging and never trusted.

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ECDSA_WITH_SHA384};
use x509_parser::prelude::FromDer;

use crate::{Curve, KeyError, PublicKey};

/// Largest CSR accepted, in bytes.
pub const MAX_CSR_BYTES: usize = 16 * 1024;

/// A CSR whose self-signature verified.
#[derive(Debug, Clone)]
pub struct VerifiedCsr {
    /// The requester's public key, proven by the signature.
    pub public_key: PublicKey,
    /// URI SANs the requester asked for (informational only: never copy them into a certificate).
    pub uri_sans: Vec<String>,
}

/// Parses a DER PKCS#10 CSR of at most [`MAX_CSR_BYTES`] and verifies its signature with its own
/// public key. Accepted: P-256 keys signed with `ecdsa-with-SHA256` and P-384 keys signed with
/// `ecdsa-with-SHA384`, without algorithm parameters.
///
/// Fails with [`KeyError::CsrTooLarge`], [`KeyError::MalformedCsr`] (including trailing bytes),
/// [`KeyError::InvalidPublicKey`], [`KeyError::UnsupportedCsrSignature`] or
/// [`KeyError::BadCsrSignature`].
pub fn verify_csr(der: &[u8]) -> Result<VerifiedCsr, KeyError> {
    if der.len() > MAX_CSR_BYTES {
        return Err(KeyError::CsrTooLarge { len: der.len() });
    }
    let (rest, csr) =
        X509CertificationRequest::from_der(der).map_err(|_| KeyError::MalformedCsr {
            reason: "not a DER PKCS#10 request",
        })?;
    if !rest.is_empty() {
        return Err(KeyError::MalformedCsr {
            reason: "trailing bytes after the request",
        });
    }
    let info = &csr.certification_request_info;
    if info.version.0 != 0 {
        return Err(KeyError::MalformedCsr {
            reason: "version is not v1",
        });
    }
    let public_key = PublicKey::from_spki_der(info.subject_pki.raw)?;

    let sig_alg = &csr.signature_algorithm;
    let expected_oid = match public_key.curve() {
        Curve::P256 => &OID_SIG_ECDSA_WITH_SHA256,
        Curve::P384 => &OID_SIG_ECDSA_WITH_SHA384,
    };
    if sig_alg.algorithm != *expected_oid || sig_alg.parameters.is_some() {
        return Err(KeyError::UnsupportedCsrSignature {
            oid: sig_alg.algorithm.to_id_string(),
        });
    }
    if csr.signature_value.unused_bits != 0 {
        return Err(KeyError::MalformedCsr {
            reason: "signature has unused bits",
        });
    }
    public_key
        .verify_x509(info.raw, &csr.signature_value.data)
        .map_err(|_| KeyError::BadCsrSignature)?;

    let uri_sans = csr
        .requested_extensions()
        .into_iter()
        .flatten()
        .filter_map(|ext| match ext {
            ParsedExtension::SubjectAlternativeName(san) => Some(&san.general_names),
            _ => None,
        })
        .flatten()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some((*uri).to_owned()),
            _ => None,
        })
        .collect();
    Ok(VerifiedCsr {
        public_key,
        uri_sans,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PrivateKey;
    use sigil_spiffe::SpiffeId;

    fn csr() -> (PrivateKey, Vec<u8>) {
        let key = PrivateKey::generate().unwrap();
        let id = SpiffeId::parse("spiffe://example.org/a").unwrap();
        let der = key.csr_der(&id).unwrap();
        (key, der)
    }

    #[test]
    fn accepts_a_well_signed_csr() {
        let (key, der) = csr();
        let verified = verify_csr(&der).unwrap();
        assert_eq!(verified.public_key, key.public_key());
        assert_eq!(verified.uri_sans, vec!["spiffe://example.org/a".to_owned()]);
    }

    #[test]
    fn rejects_a_csr_with_a_bad_signature() {
        let (_, mut der) = csr();
        let last = der.len() - 1;
        der[last] ^= 0x01;
        assert!(matches!(verify_csr(&der), Err(KeyError::BadCsrSignature)));
    }

    #[test]
    fn rejects_a_csr_whose_request_info_was_altered() {
        let (_, der) = csr();
        // Flip a byte inside the SAN URI (the request info), keeping the structure valid.
        let pos = der.windows(7).position(|w| w == b"example").unwrap();
        let mut altered = der.clone();
        altered[pos] = b'f';
        assert!(matches!(
            verify_csr(&altered),
            Err(KeyError::BadCsrSignature)
        ));
    }

    #[test]
    fn rejects_oversized_truncated_and_trailing_input() {
        let (_, der) = csr();
        assert!(matches!(
            verify_csr(&vec![0x30; MAX_CSR_BYTES + 1]),
            Err(KeyError::CsrTooLarge { .. })
        ));
        assert!(matches!(
            verify_csr(&der[..der.len() - 3]),
            Err(KeyError::MalformedCsr { .. })
        ));
        let mut trailing = der.clone();
        trailing.push(0);
        assert!(matches!(
            verify_csr(&trailing),
            Err(KeyError::MalformedCsr { .. })
        ));
        assert!(verify_csr(b"").is_err());
    }

    #[test]
    fn rejects_a_signature_made_by_another_key() {
        // Request info from one CSR, algorithm and signature from another key's CSR.
        let (_, der) = csr();
        let (_, other_der) = csr();
        let info_end = |bytes: &[u8]| {
            let (_, parsed) = X509CertificationRequest::from_der(bytes).unwrap();
            let info = parsed.certification_request_info.raw;
            bytes.windows(info.len()).position(|w| w == info).unwrap() + info.len()
        };
        let (_, parsed) = X509CertificationRequest::from_der(&der).unwrap();
        let mut body = parsed.certification_request_info.raw.to_vec();
        body.extend_from_slice(&other_der[info_end(&other_der)..]);
        let mut spliced = match body.len() {
            len @ 0..=127 => vec![0x30, len as u8],
            len @ 128..=255 => vec![0x30, 0x81, len as u8],
            len => {
                let [hi, lo] = u16::try_from(len).unwrap().to_be_bytes();
                vec![0x30, 0x82, hi, lo]
            }
        };
        spliced.extend_from_slice(&body);
        assert!(matches!(
            verify_csr(&spliced),
            Err(KeyError::BadCsrSignature)
        ));
    }
}
