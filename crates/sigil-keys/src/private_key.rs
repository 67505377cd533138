//! `PrivateKey`: an ECDSA P-256 private key. It keeps its PKCS#8 DER in a zeroising buffer,
//! never prints it, and signs X.509 structures (ASN.1 DER signatures), JWS (fixed `r || s`) and
//! its own PKCS#10 CSRs. It implements rcgen's key traits so `sigil-ca` can issue with it.

use std::fmt;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _};
use sigil_spiffe::SpiffeId;
use zeroize::Zeroizing;

use crate::pem::{self, PRIVATE_KEY_LABEL};
use crate::{Curve, KeyError, PublicKey};

/// Largest PKCS#8 document accepted, in bytes (a P-256 key is about 140).
pub const MAX_PKCS8_BYTES: usize = 8 * 1024;

/// An ECDSA P-256 private key.
///
/// `Debug` prints `PrivateKey(<redacted>)`. The PKCS#8 bytes are zeroised on drop, and AWS-LC
/// clears its own copy of the scalar when the key handles are freed. Not `Clone`: share it with
/// `Arc<PrivateKey>`.
pub struct PrivateKey {
    pkcs8: Zeroizing<Vec<u8>>,
    /// Signs with ASN.1 DER signatures (X.509, CSRs).
    asn1: EcdsaKeyPair,
    /// Signs with fixed-width `r || s` signatures (JWS ES256).
    fixed: EcdsaKeyPair,
    public: PublicKey,
}

impl PrivateKey {
    /// Generates a new key from the system random number generator.
    pub fn generate() -> Result<Self, KeyError> {
        let rng = SystemRandom::new();
        // `Document` zeroises its bytes on drop.
        let document =
            EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
                .map_err(|_| KeyError::Generate)?;
        Self::from_pkcs8_der(document.as_ref())
    }

    /// Reads a PKCS#8 (v1 or v2) DER ECDSA P-256 private key. Other curves, other key types and
    /// malformed input give [`KeyError::InvalidPrivateKey`].
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        if der.len() > MAX_PKCS8_BYTES {
            return Err(KeyError::InvalidPrivateKey {
                reason: "larger than 8 KiB",
            });
        }
        let rejected = |_| KeyError::InvalidPrivateKey {
            reason: "not a well-formed PKCS#8 document for a P-256 key",
        };
        let asn1 = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, der)
            .map_err(rejected)?;
        let fixed = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der)
            .map_err(rejected)?;
        let public = PublicKey::from_point(Curve::P256, asn1.public_key().as_ref())?;
        Ok(Self {
            pkcs8: Zeroizing::new(der.to_vec()),
            asn1,
            fixed,
            public,
        })
    }

    /// Reads a PEM `PRIVATE KEY` block (PKCS#8) holding an ECDSA P-256 key.
    pub fn from_pkcs8_pem(text: &str) -> Result<Self, KeyError> {
        let der = pem::decode_secret(PRIVATE_KEY_LABEL, text)?;
        Self::from_pkcs8_der(&der)
    }

    /// The PKCS#8 DER, as given or generated. Handle with care: this is the secret.
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The key as a PEM `PRIVATE KEY` block, in a buffer zeroised on drop.
    pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        pem::encode_secret(PRIVATE_KEY_LABEL, &self.pkcs8)
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        self.public.clone()
    }

    /// The public half, borrowed.
    pub fn public_key_ref(&self) -> &PublicKey {
        &self.public
    }

    /// Signs `msg` with ECDSA P-256 SHA-256 and returns the ASN.1 DER signature, as X.509
    /// certificates, CRLs and CSRs carry it (`ecdsa-with-SHA256`).
    pub fn sign_x509(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        let sig = self
            .asn1
            .sign(&SystemRandom::new(), msg)
            .map_err(|_| KeyError::Sign)?;
        Ok(sig.as_ref().to_vec())
    }

    /// Signs `msg` with ECDSA P-256 SHA-256 and returns the 64-byte `r || s` signature of JWS
    /// `ES256` (RFC 7518 §3.4).
    pub fn sign_jws(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        let sig = self
            .fixed
            .sign(&SystemRandom::new(), msg)
            .map_err(|_| KeyError::Sign)?;
        Ok(sig.as_ref().to_vec())
    }

    /// A PKCS#10 CSR for this key whose only content is `spiffe_id` as the single URI SAN (empty
    /// subject), self-signed with this key. The CA takes only the public key from it.
    pub fn csr_der(&self, spiffe_id: &SpiffeId) -> Result<Vec<u8>, KeyError> {
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        let uri = rcgen::string::Ia5String::try_from(spiffe_id.as_str()).map_err(KeyError::Csr)?;
        params.subject_alt_names = vec![rcgen::SanType::URI(uri)];
        let csr = params.serialize_request(self).map_err(KeyError::Csr)?;
        Ok(csr.der().to_vec())
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(<redacted>)")
    }
}

impl rcgen::PublicKeyData for PrivateKey {
    fn subject_public_key_info(&self) -> Vec<u8> {
        self.public.spki_der().to_vec()
    }

    fn der_bytes(&self) -> &[u8] {
        self.public.point()
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl rcgen::SigningKey for PrivateKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.sign_x509(msg)
            .map_err(|_| rcgen::Error::RingUnspecified)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer as _;

    #[test]
    fn debug_is_redacted() {
        let key = PrivateKey::generate().unwrap();
        assert_eq!(format!("{key:?}"), "PrivateKey(<redacted>)");
        assert_eq!(format!("{:#?}", key), "PrivateKey(<redacted>)");
    }

    #[test]
    fn pkcs8_der_and_pem_round_trip_to_the_same_key() {
        let key = PrivateKey::generate().unwrap();
        let from_der = PrivateKey::from_pkcs8_der(key.pkcs8_der()).unwrap();
        assert_eq!(from_der.public_key(), key.public_key());
        let pem = key.to_pkcs8_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let from_pem = PrivateKey::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(from_pem.public_key(), key.public_key());
    }

    #[test]
    fn public_spki_matches_aws_lc_encoding() {
        let key = PrivateKey::generate().unwrap();
        let expected = key.asn1.public_key().as_der().unwrap();
        assert_eq!(key.public_key().spki_der(), expected.as_ref());
    }

    #[test]
    fn rejects_garbage_and_other_curves() {
        assert!(PrivateKey::from_pkcs8_der(b"not a key").is_err());
        let rng = SystemRandom::new();
        let p384 =
            EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P384_SHA384_ASN1_SIGNING, &rng).unwrap();
        assert!(matches!(
            PrivateKey::from_pkcs8_der(p384.as_ref()),
            Err(KeyError::InvalidPrivateKey { .. })
        ));
        assert!(PrivateKey::from_pkcs8_der(&vec![0; MAX_PKCS8_BYTES + 1]).is_err());
    }

    #[test]
    fn x509_and_jws_signatures_verify_with_the_public_key() {
        let key = PrivateKey::generate().unwrap();
        let der_sig = key.sign_x509(b"tbs").unwrap();
        assert_eq!(der_sig.first(), Some(&0x30));
        key.public_key().verify_x509(b"tbs", &der_sig).unwrap();
        let jws_sig = key.sign_jws(b"input").unwrap();
        assert_eq!(jws_sig.len(), 64);
        key.public_key()
            .verify_jws("ES256", b"input", &jws_sig)
            .unwrap();
        assert!(key.public_key().verify_x509(b"tbs", &jws_sig).is_err());
    }

    #[test]
    fn csr_carries_the_spiffe_id_and_verifies() {
        let key = PrivateKey::generate().unwrap();
        let id = SpiffeId::parse("spiffe://example.org/workload").unwrap();
        let csr = crate::csr::verify_csr(&key.csr_der(&id).unwrap()).unwrap();
        assert_eq!(csr.public_key, key.public_key());
        assert_eq!(csr.uri_sans, vec![id.as_str().to_owned()]);
    }
}
