//! `VerifyingKey`: one public signing key of an external issuer, read from a JWK (RSA 2048 to
//! 8192 bits, EC P-256 or P-384, OKP Ed25519), that verifies JWS signatures with the algorithms
//! its type allows.

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::signature::{self, ParsedPublicKey, RsaPublicKeyComponents};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::{JoseError, JwsAlgorithm};
use crate::{Curve, PublicKey};

/// Smallest RSA modulus accepted, in bits (RFC 7518 §3.3 requires at least 2048).
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits (bounds the cost of one verification).
pub const MAX_RSA_BITS: usize = 8192;

/// JWK members that only a private or symmetric key has (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037
/// §2). A key carrying any of them was published by mistake and is refused.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];
/// Bytes of an Ed25519 public key.
const ED25519_KEY_LEN: usize = 32;

/// A public key of an external issuer that verifies JWS signatures, with the JWK's `kid` and
/// `alg`. Built only by [`VerifyingKey::from_jwk`], so holding one means the key is well formed
/// (RSA modulus in range, EC point on its curve). Cloning is cheap (reference counted).
#[derive(Clone)]
pub struct VerifyingKey {
    inner: Arc<Inner>,
}

struct Inner {
    kid: Option<String>,
    /// The JWK's own `alg`, which then is the only algorithm the key verifies.
    alg: Option<JwsAlgorithm>,
    material: Material,
}

enum Material {
    Rsa {
        bits: usize,
        pkcs1: ParsedPublicKey,
        pss: ParsedPublicKey,
    },
    Ec(PublicKey),
    Ed25519(ParsedPublicKey),
}

impl Material {
    /// A short description for errors and `Debug`: `RSA`, `EC P-256`, `EC P-384`, `OKP Ed25519`.
    fn description(&self) -> &'static str {
        match self {
            Self::Rsa { .. } => "RSA",
            Self::Ec(key) => match key.curve() {
                Curve::P256 => "EC P-256",
                Curve::P384 => "EC P-384",
            },
            Self::Ed25519(_) => "OKP Ed25519",
        }
    }

    fn can_verify(&self, alg: JwsAlgorithm) -> bool {
        match self {
            Self::Rsa { .. } => matches!(alg, JwsAlgorithm::Rs256 | JwsAlgorithm::Ps256),
            Self::Ec(key) => match key.curve() {
                Curve::P256 => alg == JwsAlgorithm::Es256,
                Curve::P384 => alg == JwsAlgorithm::Es384,
            },
            Self::Ed25519(_) => alg == JwsAlgorithm::EdDsa,
        }
    }
}

impl VerifyingKey {
    /// Reads one JWK (a JSON object):
    ///
    /// - `kty: RSA` with `n` and `e` (base64url, no padding), modulus of 2048 to 8192 bits
    ///   ([`JoseError::RsaModulusSize`]), verifying RS256 and PS256;
    /// - `kty: EC` with `crv` `P-256` or `P-384` and `x`, `y` of one coordinate each, the point on
    ///   the curve, verifying ES256 or ES384;
    /// - `kty: OKP` with `crv: Ed25519` and a 32-byte `x`, verifying EdDSA.
    ///
    /// Fails with [`JoseError::PrivateKeyMaterial`] if it carries private members (`d`, `p`,
    /// `q`, ..., or `k`), [`JoseError::KeyNotForSignatures`] if `use` is not `sig` or `key_ops`
    /// lacks `verify`, [`JoseError::UnsupportedAlgorithm`] or [`JoseError::AlgorithmMismatch`]
    /// if `alg` is not one of [`JwsAlgorithm::ALL`] or does not fit the key type and curve,
    /// [`JoseError::UnsupportedKeyType`] / [`JoseError::UnsupportedCurve`] for other key types,
    /// and [`JoseError::BadKey`] for anything malformed.
    pub fn from_jwk(jwk: &Value) -> Result<Self, JoseError> {
        let jwk = jwk.as_object().ok_or(JoseError::BadKey {
            reason: "JWK is not a JSON object",
        })?;
        if PRIVATE_MEMBERS.iter().any(|name| jwk.contains_key(*name)) {
            return Err(JoseError::PrivateKeyMaterial);
        }
        check_intended_use(jwk)?;
        let kid = optional_str(jwk, "kid", "`kid` is not a string")?.map(str::to_owned);
        let alg =
            match optional_str(jwk, "alg", "`alg` is not a string")? {
                None => None,
                Some(name) => Some(JwsAlgorithm::parse(name).ok_or_else(|| {
                    JoseError::UnsupportedAlgorithm {
                        alg: name.to_owned(),
                    }
                })?),
            };
        let kty = optional_str(jwk, "kty", "`kty` is not a string")?.ok_or(JoseError::BadKey {
            reason: "JWK has no `kty`",
        })?;
        let material = match kty {
            "RSA" => rsa(jwk)?,
            "EC" => ec(jwk)?,
            "OKP" => okp(jwk)?,
            other => {
                return Err(JoseError::UnsupportedKeyType {
                    kty: other.to_owned(),
                });
            }
        };
        if let Some(alg) = alg
            && !material.can_verify(alg)
        {
            return Err(JoseError::AlgorithmMismatch {
                alg,
                key: material.description(),
            });
        }
        Ok(Self {
            inner: Arc::new(Inner { kid, alg, material }),
        })
    }

    /// The JWK's `kid`, if it had one.
    pub fn kid(&self) -> Option<&str> {
        self.inner.kid.as_deref()
    }

    /// The JWK's own `alg`, if it had one (then the only algorithm [`Self::supports`]).
    pub fn alg(&self) -> Option<JwsAlgorithm> {
        self.inner.alg
    }

    /// Whether this key can verify `alg`: RS256 and PS256 for RSA, ES256 for P-256, ES384 for
    /// P-384, EdDSA for Ed25519; and, when the JWK named an `alg`, only that one.
    pub fn supports(&self, alg: JwsAlgorithm) -> bool {
        self.inner.material.can_verify(alg) && self.inner.alg.is_none_or(|own| own == alg)
    }

    /// Verifies a JWS `signature` (RSA PKCS#1 v1.5 or PSS, fixed-width `r || s` for ECDSA,
    /// Ed25519) over `message` with `alg`. Fails with [`JoseError::AlgorithmMismatch`] if this
    /// key does not [`Self::supports`] `alg`, and [`JoseError::BadSignature`] if the signature
    /// does not verify.
    pub fn verify(
        &self,
        alg: JwsAlgorithm,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), JoseError> {
        if !self.supports(alg) {
            return Err(JoseError::AlgorithmMismatch {
                alg,
                key: self.inner.material.description(),
            });
        }
        let verified = match (&self.inner.material, alg) {
            (Material::Rsa { pss, .. }, JwsAlgorithm::Ps256) => pss.verify_sig(message, signature),
            (Material::Rsa { pkcs1, .. }, _) => pkcs1.verify_sig(message, signature),
            (Material::Ec(key), _) => {
                return key
                    .verify_jws(alg.name(), message, signature)
                    .map_err(|_| JoseError::BadSignature);
            }
            (Material::Ed25519(key), _) => key.verify_sig(message, signature),
        };
        verified.map_err(|_| JoseError::BadSignature)
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("VerifyingKey");
        out.field("kid", &self.inner.kid)
            .field("alg", &self.inner.alg)
            .field("type", &self.inner.material.description());
        if let Material::Rsa { bits, .. } = &self.inner.material {
            out.field("bits", bits);
        }
        out.finish()
    }
}

/// Refuses keys published for something other than signatures: `use` other than `sig`, or
/// `key_ops` without `verify` (RFC 7517 §4.2, §4.3).
fn check_intended_use(jwk: &Map<String, Value>) -> Result<(), JoseError> {
    match optional_str(jwk, "use", "`use` is not a string")? {
        None | Some("sig") => {}
        Some(other) => {
            return Err(JoseError::KeyNotForSignatures {
                key_use: other.to_owned(),
            });
        }
    }
    match jwk.get("key_ops") {
        None => Ok(()),
        Some(Value::Array(ops)) if ops.iter().any(|op| op.as_str() == Some("verify")) => Ok(()),
        Some(Value::Array(_)) => Err(JoseError::KeyNotForSignatures {
            key_use: "key_ops without `verify`".to_owned(),
        }),
        Some(_) => Err(JoseError::BadKey {
            reason: "`key_ops` is not an array",
        }),
    }
}

fn optional_str<'a>(
    jwk: &'a Map<String, Value>,
    name: &str,
    not_a_string: &'static str,
) -> Result<Option<&'a str>, JoseError> {
    match jwk.get(name) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.as_str())),
        Some(_) => Err(JoseError::BadKey {
            reason: not_a_string,
        }),
    }
}

/// Decodes a required base64url (no padding) member.
fn base64_member(
    jwk: &Map<String, Value>,
    name: &str,
    missing: &'static str,
    malformed: &'static str,
) -> Result<Vec<u8>, JoseError> {
    let text = optional_str(jwk, name, malformed)?.ok_or(JoseError::BadKey { reason: missing })?;
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| JoseError::BadKey { reason: malformed })
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    bytes.get(first..).unwrap_or_default()
}

fn rsa(jwk: &Map<String, Value>) -> Result<Material, JoseError> {
    let n = base64_member(jwk, "n", "RSA JWK has no `n`", "`n` is not base64url")?;
    let e = base64_member(jwk, "e", "RSA JWK has no `e`", "`e` is not base64url")?;
    // Some issuers prefix a zero byte (a DER habit); the integer is the same.
    let n = strip_leading_zeros(&n);
    let e = strip_leading_zeros(&e);
    let bits = match n.first() {
        Some(&top) => n.len() * 8 - top.leading_zeros() as usize,
        None => 0,
    };
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(JoseError::RsaModulusSize { bits });
    }
    // An even or tiny exponent is never a real key; 8 bytes bounds the verification cost.
    let odd = e.last().is_some_and(|last| last & 1 == 1);
    if !odd || e.len() > 8 || e == [1] {
        return Err(JoseError::BadKey {
            reason: "`e` is not an odd exponent of at least 3",
        });
    }
    let components = RsaPublicKeyComponents { n, e };
    let rejected = |_| JoseError::BadKey {
        reason: "not a valid RSA public key",
    };
    let pkcs1 = components
        .to_parsed_public_key(&signature::RSA_PKCS1_2048_8192_SHA256)
        .map_err(rejected)?;
    let pss = components
        .to_parsed_public_key(&signature::RSA_PSS_2048_8192_SHA256)
        .map_err(rejected)?;
    Ok(Material::Rsa { bits, pkcs1, pss })
}

fn ec(jwk: &Map<String, Value>) -> Result<Material, JoseError> {
    let curve = match optional_str(jwk, "crv", "`crv` is not a string")? {
        Some("P-256") => Curve::P256,
        Some("P-384") => Curve::P384,
        Some(other) => {
            return Err(JoseError::UnsupportedCurve {
                crv: other.to_owned(),
            });
        }
        None => {
            return Err(JoseError::BadKey {
                reason: "EC JWK has no `crv`",
            });
        }
    };
    let x = base64_member(jwk, "x", "EC JWK has no `x`", "`x` is not base64url")?;
    let y = base64_member(jwk, "y", "EC JWK has no `y`", "`y` is not base64url")?;
    if x.len() != curve.coordinate_len() || y.len() != curve.coordinate_len() {
        return Err(JoseError::BadKey {
            reason: "`x` or `y` has the wrong length for the curve",
        });
    }
    let mut point = Vec::with_capacity(1 + x.len() + y.len());
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    let key = PublicKey::from_point(curve, &point).map_err(|_| JoseError::BadKey {
        reason: "the point is not on the curve",
    })?;
    Ok(Material::Ec(key))
}

fn okp(jwk: &Map<String, Value>) -> Result<Material, JoseError> {
    match optional_str(jwk, "crv", "`crv` is not a string")? {
        Some("Ed25519") => {}
        Some(other) => {
            return Err(JoseError::UnsupportedCurve {
                crv: other.to_owned(),
            });
        }
        None => {
            return Err(JoseError::BadKey {
                reason: "OKP JWK has no `crv`",
            });
        }
    }
    let x = base64_member(jwk, "x", "OKP JWK has no `x`", "`x` is not base64url")?;
    if x.len() != ED25519_KEY_LEN {
        return Err(JoseError::BadKey {
            reason: "`x` is not 32 bytes",
        });
    }
    let key = ParsedPublicKey::new(&signature::ED25519, &x).map_err(|_| JoseError::BadKey {
        reason: "not a valid Ed25519 public key",
    })?;
    Ok(Material::Ed25519(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_issuer::TestSigningKey;
    use serde_json::json;

    fn jwk(alg: JwsAlgorithm) -> Value {
        TestSigningKey::generate(alg).unwrap().public_jwk("k1")
    }

    /// An RSA JWK with an `n` of `bits` bits (not a real modulus: only its size matters here).
    fn rsa_jwk_with_modulus_bits(bits: usize) -> Value {
        let mut n = vec![0xff_u8; bits / 8];
        n[bits / 8 - 1] = 0xfb;
        json!({"kty": "RSA", "n": URL_SAFE_NO_PAD.encode(&n), "e": "AQAB"})
    }

    #[test]
    fn reads_every_key_type_and_reports_what_it_supports() {
        for alg in JwsAlgorithm::ALL {
            let key = VerifyingKey::from_jwk(&jwk(alg)).unwrap();
            assert_eq!(key.kid(), Some("k1"));
            assert_eq!(key.alg(), Some(alg));
            for other in JwsAlgorithm::ALL {
                assert_eq!(key.supports(other), other == alg, "{alg:?} key, {other:?}");
            }
        }
    }

    #[test]
    fn rsa_key_without_alg_supports_both_rsa_algorithms_only() {
        let mut value = jwk(JwsAlgorithm::Rs256);
        value.as_object_mut().unwrap().remove("alg");
        let key = VerifyingKey::from_jwk(&value).unwrap();
        let supported: Vec<_> = JwsAlgorithm::ALL
            .into_iter()
            .filter(|alg| key.supports(*alg))
            .collect();
        assert_eq!(supported, [JwsAlgorithm::Rs256, JwsAlgorithm::Ps256]);
    }

    #[test]
    fn refuses_rsa_moduli_outside_2048_to_8192_bits() {
        let real = VerifyingKey::from_jwk(&jwk(JwsAlgorithm::Rs256)).unwrap();
        assert!(format!("{real:?}").contains("bits: 2048"));
        assert_eq!(
            VerifyingKey::from_jwk(&rsa_jwk_with_modulus_bits(1024)).unwrap_err(),
            JoseError::RsaModulusSize { bits: 1024 }
        );
        assert_eq!(
            VerifyingKey::from_jwk(&rsa_jwk_with_modulus_bits(8200)).unwrap_err(),
            JoseError::RsaModulusSize { bits: 8200 }
        );
        assert!(VerifyingKey::from_jwk(&rsa_jwk_with_modulus_bits(2048)).is_ok());
    }

    #[test]
    fn refuses_even_exponents() {
        let mut value = jwk(JwsAlgorithm::Rs256);
        value["e"] = json!("AQAA");
        assert!(matches!(
            VerifyingKey::from_jwk(&value),
            Err(JoseError::BadKey { .. })
        ));
    }

    #[test]
    fn refuses_private_key_material() {
        for (alg, member) in [
            (JwsAlgorithm::Rs256, "d"),
            (JwsAlgorithm::Rs256, "p"),
            (JwsAlgorithm::Es256, "d"),
            (JwsAlgorithm::EdDsa, "d"),
        ] {
            let mut value = jwk(alg);
            assert!(VerifyingKey::from_jwk(&value).is_ok());
            value[member] = json!("AAAA");
            assert_eq!(
                VerifyingKey::from_jwk(&value).unwrap_err(),
                JoseError::PrivateKeyMaterial
            );
        }
        assert_eq!(
            VerifyingKey::from_jwk(&json!({"kty": "oct", "k": "c2VjcmV0"})).unwrap_err(),
            JoseError::PrivateKeyMaterial
        );
    }

    #[test]
    fn refuses_alg_inconsistent_with_the_key() {
        let mut value = jwk(JwsAlgorithm::Es256);
        value["alg"] = json!("ES384");
        assert_eq!(
            VerifyingKey::from_jwk(&value).unwrap_err(),
            JoseError::AlgorithmMismatch {
                alg: JwsAlgorithm::Es384,
                key: "EC P-256"
            }
        );
        value["alg"] = json!("HS256");
        assert_eq!(
            VerifyingKey::from_jwk(&value).unwrap_err(),
            JoseError::UnsupportedAlgorithm {
                alg: "HS256".into()
            }
        );
        let mut value = jwk(JwsAlgorithm::Rs256);
        value["alg"] = json!("EdDSA");
        assert!(matches!(
            VerifyingKey::from_jwk(&value),
            Err(JoseError::AlgorithmMismatch { .. })
        ));
    }

    #[test]
    fn refuses_keys_for_other_uses() {
        let mut value = jwk(JwsAlgorithm::Es256);
        value["use"] = json!("enc");
        assert_eq!(
            VerifyingKey::from_jwk(&value).unwrap_err(),
            JoseError::KeyNotForSignatures {
                key_use: "enc".into()
            }
        );
        let mut value = jwk(JwsAlgorithm::Es256);
        value["key_ops"] = json!(["encrypt"]);
        assert!(VerifyingKey::from_jwk(&value).is_err());
        value["key_ops"] = json!(["verify"]);
        assert!(VerifyingKey::from_jwk(&value).is_ok());
    }

    #[test]
    fn refuses_unknown_types_curves_and_malformed_members() {
        assert_eq!(
            VerifyingKey::from_jwk(&json!({"kty": "XYZ"})).unwrap_err(),
            JoseError::UnsupportedKeyType { kty: "XYZ".into() }
        );
        let mut value = jwk(JwsAlgorithm::Es256);
        value.as_object_mut().unwrap().remove("alg");
        value["crv"] = json!("P-521");
        assert_eq!(
            VerifyingKey::from_jwk(&value).unwrap_err(),
            JoseError::UnsupportedCurve {
                crv: "P-521".into()
            }
        );
        let mut value = jwk(JwsAlgorithm::EdDsa);
        value.as_object_mut().unwrap().remove("alg");
        value["crv"] = json!("X25519");
        assert!(matches!(
            VerifyingKey::from_jwk(&value),
            Err(JoseError::UnsupportedCurve { .. })
        ));
        let mut value = jwk(JwsAlgorithm::Es256);
        let y = value["y"].as_str().unwrap().to_owned();
        value["y"] = json!(format!("{y}="));
        assert!(matches!(
            VerifyingKey::from_jwk(&value),
            Err(JoseError::BadKey { .. })
        ));
        assert!(VerifyingKey::from_jwk(&json!("RSA")).is_err());
        assert!(VerifyingKey::from_jwk(&json!({"kid": "x"})).is_err());
        assert!(VerifyingKey::from_jwk(&json!({"kty": "RSA", "kid": 7})).is_err());
    }

    #[test]
    fn refuses_an_ec_point_off_the_curve() {
        let mut value = jwk(JwsAlgorithm::Es256);
        let mut y = URL_SAFE_NO_PAD
            .decode(value["y"].as_str().unwrap())
            .unwrap();
        y[31] ^= 1;
        value["y"] = json!(URL_SAFE_NO_PAD.encode(&y));
        assert_eq!(
            VerifyingKey::from_jwk(&value).unwrap_err(),
            JoseError::BadKey {
                reason: "the point is not on the curve"
            }
        );
    }

    #[test]
    fn verify_checks_the_algorithm_before_the_signature() {
        let signer = TestSigningKey::generate(JwsAlgorithm::Es256).unwrap();
        let key = VerifyingKey::from_jwk(&signer.public_jwk("k1")).unwrap();
        let token = signer
            .sign(&json!({"alg": "ES256"}), &json!({"sub": "x"}))
            .unwrap();
        let (input, sig) = token.rsplit_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        key.verify(JwsAlgorithm::Es256, input.as_bytes(), &sig)
            .unwrap();
        assert_eq!(
            key.verify(JwsAlgorithm::Es256, b"other", &sig),
            Err(JoseError::BadSignature)
        );
        assert!(matches!(
            key.verify(JwsAlgorithm::Rs256, input.as_bytes(), &sig),
            Err(JoseError::AlgorithmMismatch { .. })
        ));
    }
}
