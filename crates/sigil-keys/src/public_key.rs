//! `PublicKey`: an ECDSA P-256 or P-384 public key, parsed once from its SubjectPublicKeyInfo,
//! that verifies X.509 (ASN.1 DER) and JWS (fixed r||s) signatures and converts to and from JWK.

use std::fmt;

use aws_lc_rs::signature::{self, ParsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sigil_spiffe::Jwk;

use crate::KeyError;

/// DER prefix of a SubjectPublicKeyInfo for an uncompressed P-256 point: SEQUENCE {
/// AlgorithmIdentifier { id-ecPublicKey, prime256v1 }, BIT STRING (65 bytes follow) }.
const P256_SPKI_PREFIX: &[u8] = &[
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
/// The same for P-384: AlgorithmIdentifier { id-ecPublicKey, secp384r1 }, 97-byte point.
const P384_SPKI_PREFIX: &[u8] = &[
    0x30, 0x76, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b,
    0x81, 0x04, 0x00, 0x22, 0x03, 0x62, 0x00,
];
/// SEC1 tag of an uncompressed point.
const UNCOMPRESSED_POINT_TAG: u8 = 0x04;

/// The elliptic curves Sigil verifies signatures for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Curve {
    /// NIST P-256 (secp256r1), used with SHA-256: ES256.
    P256,
    /// NIST P-384 (secp384r1), used with SHA-384: ES384.
    P384,
}

impl Curve {
    /// The JWK `crv` name: `P-256` or `P-384`.
    pub fn jwk_name(self) -> &'static str {
        match self {
            Self::P256 => "P-256",
            Self::P384 => "P-384",
        }
    }

    /// The JWS `alg` that uses this curve: `ES256` or `ES384`.
    pub fn jws_alg(self) -> &'static str {
        match self {
            Self::P256 => "ES256",
            Self::P384 => "ES384",
        }
    }

    /// Bytes in one coordinate (and in each of `r` and `s`).
    pub fn coordinate_len(self) -> usize {
        match self {
            Self::P256 => 32,
            Self::P384 => 48,
        }
    }

    fn spki_prefix(self) -> &'static [u8] {
        match self {
            Self::P256 => P256_SPKI_PREFIX,
            Self::P384 => P384_SPKI_PREFIX,
        }
    }

    fn asn1_algorithm(self) -> &'static signature::EcdsaVerificationAlgorithm {
        match self {
            Self::P256 => &signature::ECDSA_P256_SHA256_ASN1,
            Self::P384 => &signature::ECDSA_P384_SHA384_ASN1,
        }
    }

    fn fixed_algorithm(self) -> &'static signature::EcdsaVerificationAlgorithm {
        match self {
            Self::P256 => &signature::ECDSA_P256_SHA256_FIXED,
            Self::P384 => &signature::ECDSA_P384_SHA384_FIXED,
        }
    }

    fn rcgen_algorithm(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            Self::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Self::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        }
    }
}

/// An ECDSA public key on P-256 or P-384, validated (point on the curve) at construction.
///
/// Cloning is cheap: the parsed key handles are reference counted by the crypto library.
#[derive(Clone)]
pub struct PublicKey {
    curve: Curve,
    /// Canonical DER SubjectPublicKeyInfo (named curve, uncompressed point).
    spki: Vec<u8>,
    /// Verifier for ASN.1 DER signatures (X.509, CSRs).
    asn1: ParsedPublicKey,
    /// Verifier for fixed-width `r || s` signatures (JWS).
    fixed: ParsedPublicKey,
}

impl PublicKey {
    /// Parses a DER SubjectPublicKeyInfo holding an uncompressed P-256 or P-384 point with a named
    /// curve. Fails with [`KeyError::InvalidPublicKey`] for anything else (other key types,
    /// explicit curve parameters, compressed points, points not on the curve).
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        let curve = [Curve::P256, Curve::P384]
            .into_iter()
            .find(|c| {
                der.starts_with(c.spki_prefix())
                    && der.len() == c.spki_prefix().len() + 1 + 2 * c.coordinate_len()
            })
            .ok_or(KeyError::InvalidPublicKey {
                reason: "only uncompressed named-curve P-256 and P-384 EC keys are supported",
            })?;
        let point = der.get(curve.spki_prefix().len()..).unwrap_or_default();
        Self::from_point(curve, point)
    }

    /// Builds a key from an uncompressed SEC1 point (`04 || x || y`) on `curve`.
    pub(crate) fn from_point(curve: Curve, point: &[u8]) -> Result<Self, KeyError> {
        if point.len() != 1 + 2 * curve.coordinate_len()
            || point.first() != Some(&UNCOMPRESSED_POINT_TAG)
        {
            return Err(KeyError::InvalidPublicKey {
                reason: "not an uncompressed point",
            });
        }
        let rejected = |_| KeyError::InvalidPublicKey {
            reason: "point is not on the curve",
        };
        let asn1 = ParsedPublicKey::new(curve.asn1_algorithm(), point).map_err(rejected)?;
        let fixed = ParsedPublicKey::new(curve.fixed_algorithm(), point).map_err(rejected)?;
        let mut spki = Vec::with_capacity(curve.spki_prefix().len() + point.len());
        spki.extend_from_slice(curve.spki_prefix());
        spki.extend_from_slice(point);
        Ok(Self {
            curve,
            spki,
            asn1,
            fixed,
        })
    }

    /// The DER SubjectPublicKeyInfo, in canonical form.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// The curve of this key.
    pub fn curve(&self) -> Curve {
        self.curve
    }

    /// The uncompressed SEC1 point `04 || x || y`.
    pub fn point(&self) -> &[u8] {
        self.spki
            .get(self.curve.spki_prefix().len()..)
            .unwrap_or_default()
    }

    /// Verifies an ASN.1 DER ECDSA signature over `msg`, hashed with SHA-256 on P-256 or SHA-384
    /// on P-384 (`ecdsa-with-SHA256` / `ecdsa-with-SHA384`). Fails with
    /// [`KeyError::BadSignature`].
    pub fn verify_x509(&self, msg: &[u8], sig_der: &[u8]) -> Result<(), KeyError> {
        self.asn1
            .verify_sig(msg, sig_der)
            .map_err(|_| KeyError::BadSignature)
    }

    /// Verifies a JWS signature (fixed-width `r || s`, RFC 7518 §3.4) over `msg`. `alg` must be
    /// the one this key's curve implies (`ES256` for P-256, `ES384` for P-384), otherwise
    /// [`KeyError::UnsupportedAlgorithm`]; a wrong signature gives [`KeyError::BadSignature`].
    pub fn verify_jws(&self, alg: &str, msg: &[u8], sig: &[u8]) -> Result<(), KeyError> {
        if alg != self.curve.jws_alg() {
            return Err(KeyError::UnsupportedAlgorithm {
                alg: alg.to_owned(),
            });
        }
        self.fixed
            .verify_sig(msg, sig)
            .map_err(|_| KeyError::BadSignature)
    }

    /// The key as a JWK: `kty: EC`, `crv`, `x`, `y` (base64url, no padding), `use: use_` and
    /// `kid` when given.
    pub fn to_jwk(&self, kid: Option<&str>, use_: &str) -> Jwk {
        let coordinates = self.point().get(1..).unwrap_or_default();
        let (x, y) = coordinates.split_at(coordinates.len() / 2);
        Jwk {
            kty: "EC".to_owned(),
            key_use: Some(use_.to_owned()),
            kid: kid.map(str::to_owned),
            alg: None,
            crv: Some(self.curve.jwk_name().to_owned()),
            x: Some(URL_SAFE_NO_PAD.encode(x)),
            y: Some(URL_SAFE_NO_PAD.encode(y)),
            n: None,
            e: None,
            x5c: None,
        }
    }

    /// Reads an EC JWK on P-256 or P-384 (`x` and `y` base64url without padding, each exactly one
    /// coordinate long). Other key types and malformed keys give [`KeyError::InvalidJwk`].
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, KeyError> {
        if jwk.kty != "EC" {
            return Err(KeyError::InvalidJwk {
                reason: "`kty` is not `EC`",
            });
        }
        let curve = match jwk.crv.as_deref() {
            Some("P-256") => Curve::P256,
            Some("P-384") => Curve::P384,
            _ => {
                return Err(KeyError::InvalidJwk {
                    reason: "`crv` is not `P-256` or `P-384`",
                });
            }
        };
        let coordinate = |value: Option<&String>| -> Result<Vec<u8>, KeyError> {
            let text = value.ok_or(KeyError::InvalidJwk {
                reason: "missing `x` or `y`",
            })?;
            let bytes = URL_SAFE_NO_PAD
                .decode(text)
                .map_err(|_| KeyError::InvalidJwk {
                    reason: "`x` or `y` is not base64url",
                })?;
            if bytes.len() != curve.coordinate_len() {
                return Err(KeyError::InvalidJwk {
                    reason: "`x` or `y` has the wrong length",
                });
            }
            Ok(bytes)
        };
        let x = coordinate(jwk.x.as_ref())?;
        let y = coordinate(jwk.y.as_ref())?;
        let mut point = Vec::with_capacity(1 + 2 * curve.coordinate_len());
        point.push(UNCOMPRESSED_POINT_TAG);
        point.extend_from_slice(&x);
        point.extend_from_slice(&y);
        Self::from_point(curve, &point).map_err(|_| KeyError::InvalidJwk {
            reason: "the point is not on the curve",
        })
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.spki == other.spki
    }
}

impl Eq for PublicKey {}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fingerprint = crate::sha256_hex(&self.spki);
        write!(
            f,
            "PublicKey({}, sha256:{})",
            self.curve.jwk_name(),
            fingerprint.get(..16).unwrap_or_default()
        )
    }
}

impl rcgen::PublicKeyData for PublicKey {
    fn subject_public_key_info(&self) -> Vec<u8> {
        self.spki.clone()
    }

    fn der_bytes(&self) -> &[u8] {
        self.point()
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.curve.rcgen_algorithm()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PrivateKey;

    #[test]
    fn spki_round_trips_and_is_canonical() {
        let key = PrivateKey::generate().unwrap().public_key();
        let again = PublicKey::from_spki_der(key.spki_der()).unwrap();
        assert_eq!(again, key);
        assert_eq!(key.spki_der().len(), 91);
        assert_eq!(key.curve(), Curve::P256);
    }

    #[test]
    fn rejects_truncated_or_foreign_spki() {
        let key = PrivateKey::generate().unwrap().public_key();
        let spki = key.spki_der();
        assert!(PublicKey::from_spki_der(&spki[..spki.len() - 1]).is_err());
        assert!(PublicKey::from_spki_der(b"").is_err());
        assert!(PublicKey::from_spki_der(&[0x30, 0x03, 0x02, 0x01, 0x00]).is_err());
    }

    #[test]
    fn rejects_point_not_on_curve() {
        let key = PrivateKey::generate().unwrap().public_key();
        let mut spki = key.spki_der().to_vec();
        let last = spki.len() - 1;
        spki[last] ^= 0x01;
        assert!(matches!(
            PublicKey::from_spki_der(&spki),
            Err(KeyError::InvalidPublicKey { .. })
        ));
    }

    #[test]
    fn jwk_round_trips() {
        let key = PrivateKey::generate().unwrap().public_key();
        let jwk = key.to_jwk(Some("k1"), "jwt-svid");
        assert_eq!(jwk.kty, "EC");
        assert_eq!(jwk.crv.as_deref(), Some("P-256"));
        assert_eq!(jwk.kid.as_deref(), Some("k1"));
        assert_eq!(jwk.key_use.as_deref(), Some("jwt-svid"));
        assert_eq!(jwk.x.as_ref().unwrap().len(), 43);
        assert!(!jwk.x.as_ref().unwrap().contains('='));
        assert_eq!(PublicKey::from_jwk(&jwk).unwrap(), key);
    }

    #[test]
    fn from_jwk_rejects_wrong_type_curve_and_lengths() {
        let good = PrivateKey::generate()
            .unwrap()
            .public_key()
            .to_jwk(None, "x");
        let mut rsa = good.clone();
        rsa.kty = "RSA".into();
        assert!(PublicKey::from_jwk(&rsa).is_err());
        let mut curve = good.clone();
        curve.crv = Some("P-521".into());
        assert!(PublicKey::from_jwk(&curve).is_err());
        let mut short = good.clone();
        short.x = Some("AAAA".into());
        assert!(PublicKey::from_jwk(&short).is_err());
        let mut padded = good;
        padded.y = padded.y.map(|y| format!("{y}="));
        assert!(PublicKey::from_jwk(&padded).is_err());
    }

    #[test]
    fn verify_jws_checks_algorithm_against_curve() {
        let private = PrivateKey::generate().unwrap();
        let sig = private.sign_jws(b"msg").unwrap();
        let public = private.public_key();
        public.verify_jws("ES256", b"msg", &sig).unwrap();
        assert!(matches!(
            public.verify_jws("ES384", b"msg", &sig),
            Err(KeyError::UnsupportedAlgorithm { .. })
        ));
        assert!(matches!(
            public.verify_jws("ES256", b"msh", &sig),
            Err(KeyError::BadSignature)
        ));
    }

    #[test]
    fn verifies_p384_keys() {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
            &rng,
        )
        .unwrap();
        let pair = signature::EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
            pkcs8.as_ref(),
        )
        .unwrap();
        use aws_lc_rs::signature::KeyPair as _;
        let point = pair.public_key().as_ref().to_vec();
        let public = PublicKey::from_point(Curve::P384, &point).unwrap();
        use aws_lc_rs::encoding::AsDer as _;
        assert_eq!(
            pair.public_key().as_der().unwrap().as_ref(),
            public.spki_der()
        );
        assert_eq!(PublicKey::from_spki_der(public.spki_der()).unwrap(), public);
        let sig = pair.sign(&rng, b"hello").unwrap();
        public.verify_x509(b"hello", sig.as_ref()).unwrap();
        assert!(public.verify_x509(b"hellO", sig.as_ref()).is_err());
        assert_eq!(
            PublicKey::from_jwk(&public.to_jwk(None, "x")).unwrap(),
            public
        );
    }
}
