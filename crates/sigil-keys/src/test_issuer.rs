//! Test support (feature `test-forgery`, never enabled in a shipped build): a stand-in for an
//! external OIDC issuer. `TestSigningKey` signs compact JWS with any [`JwsAlgorithm`] and
//! publishes its JWK; [`sign_hs256`] and [`alg_none`] build the tokens a verifier must refuse
//! (algorithm confusion with the public key as HMAC secret, and unsigned tokens).

use std::fmt;

use aws_lc_rs::encoding::{AsDer as _, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use aws_lc_rs::{error::Unspecified, hmac};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::KeyError;
use crate::jose::JwsAlgorithm;
use crate::jws::JwsError;

/// A private signing key of a test issuer for one [`JwsAlgorithm`]. `Debug` prints
/// `<redacted>`; the PKCS#8 text is zeroised on drop.
pub struct TestSigningKey {
    alg: JwsAlgorithm,
    pair: Pair,
    pkcs8_pem: Zeroizing<String>,
    public_key_pem: String,
}

enum Pair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl TestSigningKey {
    /// Generates a key for `alg`: RSA 2048 for RS256 and PS256, P-256 for ES256, P-384 for
    /// ES384, Ed25519 for EdDSA. Fails with [`KeyError::Generate`].
    pub fn generate(alg: JwsAlgorithm) -> Result<Self, KeyError> {
        let failed = |_: Unspecified| KeyError::Generate;
        let (pair, pkcs8, spki) = match alg {
            JwsAlgorithm::Rs256 | JwsAlgorithm::Ps256 => {
                let pair = RsaKeyPair::generate(KeySize::Rsa2048).map_err(failed)?;
                let pkcs8: Pkcs8V1Der<'static> = pair.as_der().map_err(failed)?;
                let spki: PublicKeyX509Der<'static> = pair.public_key().as_der().map_err(failed)?;
                (
                    Pair::Rsa(pair),
                    Zeroizing::new(pkcs8.as_ref().to_vec()),
                    spki.as_ref().to_vec(),
                )
            }
            JwsAlgorithm::Es256 | JwsAlgorithm::Es384 => {
                let signing = if alg == JwsAlgorithm::Es256 {
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING
                } else {
                    &signature::ECDSA_P384_SHA384_FIXED_SIGNING
                };
                let pair = EcdsaKeyPair::generate(signing).map_err(failed)?;
                let pkcs8 = pair.to_pkcs8v1().map_err(failed)?;
                let spki: PublicKeyX509Der<'static> = pair.public_key().as_der().map_err(failed)?;
                (
                    Pair::Ec(pair),
                    Zeroizing::new(pkcs8.as_ref().to_vec()),
                    spki.as_ref().to_vec(),
                )
            }
            JwsAlgorithm::EdDsa => {
                let pair = Ed25519KeyPair::generate().map_err(failed)?;
                let pkcs8 = pair.to_pkcs8v1().map_err(failed)?;
                let spki: PublicKeyX509Der<'static> = pair.public_key().as_der().map_err(failed)?;
                (
                    Pair::Ed25519(pair),
                    Zeroizing::new(pkcs8.as_ref().to_vec()),
                    spki.as_ref().to_vec(),
                )
            }
        };
        Ok(Self {
            alg,
            pair,
            pkcs8_pem: crate::pem::encode_secret(crate::pem::PRIVATE_KEY_LABEL, &pkcs8),
            public_key_pem: crate::pem::encode("PUBLIC KEY", &spki),
        })
    }

    /// The algorithm this key signs with.
    pub fn alg(&self) -> JwsAlgorithm {
        self.alg
    }

    /// The public key as a JWK with `kid`, `alg` and `use: sig`.
    pub fn public_jwk(&self, kid: &str) -> Value {
        let mut jwk = match &self.pair {
            Pair::Rsa(pair) => {
                let public = pair.public_key();
                json!({
                    "kty": "RSA",
                    "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
                    "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
                })
            }
            Pair::Ec(pair) => {
                let point = pair.public_key().as_ref();
                let coordinates = point.get(1..).unwrap_or_default();
                let (x, y) = coordinates.split_at(coordinates.len() / 2);
                let crv = if self.alg == JwsAlgorithm::Es256 {
                    "P-256"
                } else {
                    "P-384"
                };
                json!({
                    "kty": "EC",
                    "crv": crv,
                    "x": URL_SAFE_NO_PAD.encode(x),
                    "y": URL_SAFE_NO_PAD.encode(y),
                })
            }
            Pair::Ed25519(pair) => json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
            }),
        };
        if let Some(members) = jwk.as_object_mut() {
            members.insert("kid".into(), json!(kid));
            members.insert("alg".into(), json!(self.alg.name()));
            members.insert("use".into(), json!("sig"));
        }
        jwk
    }

    /// Signs `claims` (any JSON value, so tests can also build tokens with odd payloads) as a
    /// compact JWS under `header`, used as given: it must be an object whose `alg` is this key's
    /// (add `kid` and `typ` there). Fails with [`KeyError::Jws`] for another header, or
    /// [`KeyError::Sign`].
    pub fn sign(&self, header: &Value, claims: &Value) -> Result<String, KeyError> {
        let alg = header
            .as_object()
            .ok_or(JwsError::Malformed {
                reason: "header is not a JSON object",
            })?
            .get("alg")
            .and_then(Value::as_str)
            .ok_or(JwsError::Malformed {
                reason: "header has no string `alg`",
            })?;
        if alg != self.alg.name() {
            return Err(JwsError::UnsupportedAlgorithm {
                alg: alg.to_owned(),
            }
            .into());
        }
        let signing_input = signing_input(header, claims);
        let message = signing_input.as_bytes();
        let rng = SystemRandom::new();
        let signature = match &self.pair {
            Pair::Rsa(pair) => {
                let padding: &'static dyn signature::RsaEncoding = if alg == "PS256" {
                    &signature::RSA_PSS_SHA256
                } else {
                    &signature::RSA_PKCS1_SHA256
                };
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(padding, &rng, message, &mut signature)
                    .map_err(|_| KeyError::Sign)?;
                signature
            }
            Pair::Ec(pair) => pair
                .sign(&rng, message)
                .map_err(|_| KeyError::Sign)?
                .as_ref()
                .to_vec(),
            Pair::Ed25519(pair) => pair.sign(message).as_ref().to_vec(),
        };
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }

    /// The private key as PKCS#8 PEM, to hand to a third-party signer (PyJWT, jose).
    pub fn private_key_pkcs8_pem(&self) -> String {
        self.pkcs8_pem.as_str().to_owned()
    }

    /// The public key as SubjectPublicKeyInfo PEM (`PUBLIC KEY`): what an algorithm-confusion
    /// attacker uses as the HMAC secret ([`sign_hs256`]).
    pub fn public_key_pem(&self) -> String {
        self.public_key_pem.clone()
    }
}

impl fmt::Debug for TestSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TestSigningKey({}, <redacted>)", self.alg.name())
    }
}

/// A compact JWS of `header` and `claims` (used as given) with an HMAC-SHA256 signature keyed
/// with `secret`: with a public key (PEM or DER) as the secret, the algorithm-confusion attack
/// on verifiers that let the token choose between RSA/ECDSA and HMAC.
pub fn sign_hs256(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let signing_input = signing_input(header, claims);
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, secret),
        signing_input.as_bytes(),
    );
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// An unsigned compact JWS (empty signature part) of `header` and `claims`, used as given (put
/// `"alg": "none"` in the header).
pub fn alg_none(header: &Value, claims: &Value) -> String {
    format!("{}.", signing_input(header, claims))
}

/// The base64url (no padding) encoding of a JSON value, one part of a compact JWS.
pub(crate) fn encode_part(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

fn signing_input(header: &Value, claims: &Value) -> String {
    format!("{}.{}", encode_part(header), encode_part(claims))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::{self, KeySet, VerifyingKey};

    #[test]
    fn signs_with_every_algorithm_and_refuses_another_header_alg() {
        for alg in JwsAlgorithm::ALL {
            let key = TestSigningKey::generate(alg).unwrap();
            assert_eq!(key.alg(), alg);
            let public = VerifyingKey::from_jwk(&key.public_jwk("k")).unwrap();
            let token = key
                .sign(&json!({"alg": alg.name(), "kid": "k"}), &json!({"a": 1}))
                .unwrap();
            let verified = jose::verify(&token, &[alg], |_, _| Some(public.clone())).unwrap();
            assert_eq!(verified.claims.get("a"), Some(&json!(1)));
            let other = if alg == JwsAlgorithm::Es256 {
                "ES384"
            } else {
                "ES256"
            };
            assert!(matches!(
                key.sign(&json!({"alg": other}), &json!({})),
                Err(KeyError::Jws(JwsError::UnsupportedAlgorithm { .. }))
            ));
            assert!(key.sign(&json!([alg.name()]), &json!({})).is_err());
        }
    }

    #[test]
    fn jwk_carries_kid_alg_and_use() {
        let key = TestSigningKey::generate(JwsAlgorithm::Ps256).unwrap();
        let jwk = key.public_jwk("issuer-1");
        assert_eq!(jwk["kid"], "issuer-1");
        assert_eq!(jwk["alg"], "PS256");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["e"], "AQAB");
        let set = KeySet::from_keys(vec![VerifyingKey::from_jwk(&jwk).unwrap()]);
        assert!(set.find(Some("issuer-1"), JwsAlgorithm::Ps256).is_some());
    }

    #[test]
    fn pem_texts_are_labelled_and_debug_is_redacted() {
        let key = TestSigningKey::generate(JwsAlgorithm::EdDsa).unwrap();
        assert!(
            key.private_key_pkcs8_pem()
                .starts_with("-----BEGIN PRIVATE KEY-----\n")
        );
        assert!(
            key.public_key_pem()
                .starts_with("-----BEGIN PUBLIC KEY-----\n")
        );
        let debug = format!("{key:?}");
        assert_eq!(debug, "TestSigningKey(EdDSA, <redacted>)");
    }

    #[test]
    fn hs256_and_none_tokens_have_the_expected_shape() {
        let header = json!({"alg": "HS256"});
        let token = sign_hs256(&header, &json!({}), b"secret");
        let (input, tag) = token.rsplit_once('.').unwrap();
        let tag = URL_SAFE_NO_PAD.decode(tag).unwrap();
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"secret");
        assert!(hmac::verify(&key, input.as_bytes(), &tag).is_ok());
        let none = alg_none(&json!({"alg": "none"}), &json!({}));
        assert!(none.ends_with('.'));
        assert_eq!(none.split('.').count(), 3);
    }
}
