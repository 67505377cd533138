//! Verification of compact JWS issued by external OpenID Connect issuers (GitHub Actions,
//! Kubernetes service-account tokens, clouds) for token exchange: RS256, PS256, ES256, ES384 and
//! EdDSA with keys from the issuer's JWK Set. `none` and HMAC algorithms are never accepted.
//!
//! Sigil's own tokens go through [`crate::jws`] (ES256 only); both share its parsing of the
//! compact form and its [`JwsError`].

mod key_set;
mod verifying_key;

use crate::jws::{self, JsonObject, JwsError};

pub use key_set::KeySet;
pub use verifying_key::{MAX_RSA_BITS, MIN_RSA_BITS, VerifyingKey};

/// A JWS algorithm accepted from external issuers (RFC 7518 §3, RFC 8037 §3.1). There is no
/// variant for `none` or HMAC, so no caller can allow them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JwsAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PSS with SHA-256 and MGF1 with SHA-256.
    Ps256,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// ECDSA on P-384 with SHA-384.
    Es384,
    /// EdDSA on Ed25519.
    EdDsa,
}

impl JwsAlgorithm {
    /// Every accepted algorithm.
    pub const ALL: [JwsAlgorithm; 5] = [
        Self::Rs256,
        Self::Ps256,
        Self::Es256,
        Self::Es384,
        Self::EdDsa,
    ];

    /// The algorithm named `name` (`RS256`, `PS256`, `ES256`, `ES384`, `EdDSA`; case-sensitive),
    /// or `None` for any other name, including `none` and `HS256`/`HS384`/`HS512`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|alg| alg.name() == name)
    }

    /// The JWS `alg` name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Ps256 => "PS256",
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
            Self::EdDsa => "EdDSA",
        }
    }
}

/// Why a JWK or JWK Set cannot be used, or a signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoseError {
    /// The JWK's `kty` is not `RSA`, `EC` or `OKP`.
    #[error("unsupported key type `{kty}`")]
    UnsupportedKeyType { kty: String },
    /// The JWK's `crv` is not `P-256`, `P-384` (EC) or `Ed25519` (OKP).
    #[error("unsupported curve `{crv}`")]
    UnsupportedCurve { crv: String },
    /// The JWK's `alg` is not one of [`JwsAlgorithm::ALL`].
    #[error("unsupported algorithm `{alg}`")]
    UnsupportedAlgorithm { alg: String },
    /// The JWK is malformed.
    #[error("invalid JWK: {reason}")]
    BadKey { reason: &'static str },
    /// The RSA modulus is outside 2048 to 8192 bits.
    #[error(
        "RSA modulus of {bits} bits is outside the accepted {min} to {max} bits",
        min = MIN_RSA_BITS,
        max = MAX_RSA_BITS
    )]
    RsaModulusSize { bits: usize },
    /// The JWK carries private or symmetric key members (`d`, `p`, `q`, ..., `k`).
    #[error("JWK contains private key material")]
    PrivateKeyMaterial,
    /// The JWK is published for something other than signatures (`use`, `key_ops`).
    #[error("key is not for signatures: `{key_use}`")]
    KeyNotForSignatures { key_use: String },
    /// The algorithm cannot be used with this key (its type, curve or own `alg`).
    #[error("algorithm `{name}` cannot be used with this {key} key", name = .alg.name())]
    AlgorithmMismatch {
        alg: JwsAlgorithm,
        key: &'static str,
    },
    /// The JWK Set document is larger than [`KeySet::MAX_DOCUMENT_BYTES`].
    #[error(
        "JWK Set document is {len} bytes, more than the limit of {max} bytes",
        max = KeySet::MAX_DOCUMENT_BYTES
    )]
    DocumentTooLarge { len: usize },
    /// The JWK Set document has more than [`KeySet::MAX_KEYS`] entries.
    #[error(
        "JWK Set document has {count} keys, more than the limit of {max}",
        max = KeySet::MAX_KEYS
    )]
    TooManyKeys { count: usize },
    /// The JWK Set document is not JSON or not `{"keys": [...]}`.
    #[error("malformed JWK Set document: {reason}")]
    MalformedDocument { reason: &'static str },
    /// The signature does not verify with the key.
    #[error("signature does not verify")]
    BadSignature,
}

/// A compact JWS whose signature verified, with its header (including `typ`, unchecked: the
/// caller's profile decides) and claims.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedJws {
    /// The protected header.
    pub header: JsonObject,
    /// The payload, a JSON object.
    pub claims: JsonObject,
    /// The algorithm the signature was verified with.
    pub alg: JwsAlgorithm,
}

/// Decodes the header and claims of a compact JWS WITHOUT verifying anything, to route a token to
/// its issuer by `iss` before choosing keys. Never decide trust on the result.
///
/// Applies the shape checks of [`verify`]: at most [`jws::MAX_JWS_BYTES`]
/// ([`JwsError::TooLarge`]), exactly three base64url parts, header and payload JSON objects
/// ([`JwsError::Malformed`]).
pub fn peek(token: &str) -> Result<(JsonObject, JsonObject), JwsError> {
    let parts = jws::split_compact(token)?;
    let header = jws::decode_object(parts.header, "header")?;
    let claims = jws::decode_object(parts.payload, "payload")?;
    jws::decode_signature(parts.signature)?;
    Ok((header, claims))
}

/// Verifies a compact JWS from an external issuer and returns its header, claims and algorithm.
///
/// Refuses, in this order: a token over [`jws::MAX_JWS_BYTES`] ([`JwsError::TooLarge`]); one
/// that is not three base64url parts with a JSON object header ([`JwsError::Malformed`]); an
/// `alg` that is not in `allowed` ([`JwsError::UnsupportedAlgorithm`], always for `none` and
/// `HS*`, which no [`JwsAlgorithm`] names); a `crit` header or a non-string `kid`
/// ([`JwsError::Malformed`]); no key from `find_key(kid, alg)` ([`JwsError::UnknownKeyId`], or
/// [`JwsError::MissingKeyId`] without `kid`); a key that does not support `alg`
/// ([`JwsError::UnsupportedAlgorithm`]); a signature that does not verify
/// ([`JwsError::BadSignature`]); and only then a payload that is not a JSON object. `typ` is not
/// checked. Claims (`iss`, `aud`, `exp`, ...) are the caller's to check.
pub fn verify(
    token: &str,
    allowed: &[JwsAlgorithm],
    find_key: impl Fn(Option<&str>, JwsAlgorithm) -> Option<VerifyingKey>,
) -> Result<VerifiedJws, JwsError> {
    let parts = jws::split_compact(token)?;
    let header = jws::decode_object(parts.header, "header")?;
    let name = jws::header_alg(&header)?;
    let alg = JwsAlgorithm::parse(name)
        .filter(|alg| allowed.contains(alg))
        .ok_or_else(|| JwsError::UnsupportedAlgorithm {
            alg: name.to_owned(),
        })?;
    jws::refuse_crit(&header)?;
    let kid = jws::header_kid(&header)?;
    let key = find_key(kid, alg).ok_or_else(|| jws::missing_key(kid))?;

    let signature = jws::decode_signature(parts.signature)?;
    key.verify(alg, parts.signing_input, &signature)
        .map_err(|e| match e {
            JoseError::AlgorithmMismatch { alg, .. } => JwsError::UnsupportedAlgorithm {
                alg: alg.name().to_owned(),
            },
            _ => JwsError::BadSignature,
        })?;

    let claims = jws::decode_object(parts.payload, "payload")?;
    Ok(VerifiedJws {
        header,
        claims,
        alg,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_issuer::{self, TestSigningKey};
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use proptest::prelude::*;
    use serde_json::{Value, json};
    use std::collections::HashMap;
    use std::sync::OnceLock;

    /// One signing key per algorithm, generated once (RSA generation is slow).
    fn signer(alg: JwsAlgorithm) -> &'static TestSigningKey {
        static KEYS: OnceLock<HashMap<JwsAlgorithm, TestSigningKey>> = OnceLock::new();
        KEYS.get_or_init(|| {
            JwsAlgorithm::ALL
                .into_iter()
                .map(|alg| (alg, TestSigningKey::generate(alg).unwrap()))
                .collect()
        })
        .get(&alg)
        .unwrap()
    }

    fn key_set(keys: &[(JwsAlgorithm, &str)]) -> KeySet {
        let keys: Vec<Value> = keys
            .iter()
            .map(|(alg, kid)| signer(*alg).public_jwk(kid))
            .collect();
        KeySet::parse(&serde_json::to_vec(&json!({ "keys": keys })).unwrap()).unwrap()
    }

    fn sign(alg: JwsAlgorithm, kid: &str, claims: &Value) -> String {
        signer(alg)
            .sign(
                &json!({"alg": alg.name(), "kid": kid, "typ": "JWT"}),
                claims,
            )
            .unwrap()
    }

    fn verify_with(token: &str, set: &KeySet) -> Result<VerifiedJws, JwsError> {
        verify(token, &JwsAlgorithm::ALL, |kid, alg| {
            set.find(kid, alg).cloned()
        })
    }

    fn claims() -> Value {
        json!({"iss": "https://token.actions.githubusercontent.com", "sub": "repo:o/r:ref:refs/heads/main", "aud": "sigil"})
    }

    #[test]
    fn algorithm_names_round_trip_and_exclude_none_and_hmac() {
        for alg in JwsAlgorithm::ALL {
            assert_eq!(JwsAlgorithm::parse(alg.name()), Some(alg));
        }
        for name in [
            "none", "None", "HS256", "HS384", "HS512", "es256", "RS512", "",
        ] {
            assert_eq!(JwsAlgorithm::parse(name), None, "{name}");
        }
    }

    #[test]
    fn round_trips_every_algorithm() {
        for alg in JwsAlgorithm::ALL {
            let set = key_set(&[(alg, "k1")]);
            let verified = verify_with(&sign(alg, "k1", &claims()), &set).unwrap();
            assert_eq!(verified.alg, alg);
            assert_eq!(Value::Object(verified.claims), claims());
            assert_eq!(verified.header.get("typ"), Some(&json!("JWT")));
        }
    }

    #[test]
    fn rejects_the_genuine_signature_over_a_tampered_payload() {
        for alg in JwsAlgorithm::ALL {
            let set = key_set(&[(alg, "k1")]);
            let token = sign(alg, "k1", &claims());
            assert!(verify_with(&token, &set).is_ok());
            let (header, rest) = token.split_once('.').unwrap();
            let (_, signature) = rest.split_once('.').unwrap();
            let mut other = claims();
            other["sub"] = json!("repo:attacker/r:ref:refs/heads/main");
            let forged = format!(
                "{header}.{}.{signature}",
                URL_SAFE_NO_PAD.encode(other.to_string())
            );
            assert_eq!(
                verify_with(&forged, &set),
                Err(JwsError::BadSignature),
                "{alg:?}"
            );
        }
    }

    #[test]
    fn rejects_a_signature_from_another_key_with_the_same_kid() {
        for alg in JwsAlgorithm::ALL {
            let set = key_set(&[(alg, "k1")]);
            assert!(verify_with(&sign(alg, "k1", &claims()), &set).is_ok());
            let impostor = TestSigningKey::generate(alg).unwrap();
            let token = impostor
                .sign(&json!({"alg": alg.name(), "kid": "k1"}), &claims())
                .unwrap();
            assert_eq!(
                verify_with(&token, &set),
                Err(JwsError::BadSignature),
                "{alg:?}"
            );
        }
    }

    #[test]
    fn refuses_alg_none_and_hs256_keyed_with_the_public_key() {
        for alg in [JwsAlgorithm::Rs256, JwsAlgorithm::Es256] {
            let set = key_set(&[(alg, "k1")]);
            assert!(verify_with(&sign(alg, "k1", &claims()), &set).is_ok());
            let none = test_issuer::alg_none(&json!({"alg": "none", "kid": "k1"}), &claims());
            assert_eq!(
                verify_with(&none, &set),
                Err(JwsError::UnsupportedAlgorithm { alg: "none".into() })
            );
            let pem = signer(alg).public_key_pem();
            let hs256 = test_issuer::sign_hs256(
                &json!({"alg": "HS256", "kid": "k1", "typ": "JWT"}),
                &claims(),
                pem.as_bytes(),
            );
            assert_eq!(
                verify_with(&hs256, &set),
                Err(JwsError::UnsupportedAlgorithm {
                    alg: "HS256".into()
                })
            );
        }
    }

    #[test]
    fn refuses_algorithms_the_caller_did_not_allow() {
        let set = key_set(&[(JwsAlgorithm::Rs256, "k1")]);
        let token = sign(JwsAlgorithm::Rs256, "k1", &claims());
        let find = |kid: Option<&str>, alg| set.find(kid, alg).cloned();
        assert!(verify(&token, &[JwsAlgorithm::Rs256], find).is_ok());
        assert_eq!(
            verify(&token, &[JwsAlgorithm::Es256, JwsAlgorithm::Ps256], find),
            Err(JwsError::UnsupportedAlgorithm {
                alg: "RS256".into()
            })
        );
        assert!(matches!(
            verify(&token, &[], find),
            Err(JwsError::UnsupportedAlgorithm { .. })
        ));
    }

    #[test]
    fn refuses_an_rsa_token_against_an_ec_key_with_the_same_kid() {
        let set = key_set(&[(JwsAlgorithm::Es256, "k1")]);
        assert!(verify_with(&sign(JwsAlgorithm::Es256, "k1", &claims()), &set).is_ok());
        let rsa_token = sign(JwsAlgorithm::Rs256, "k1", &claims());
        assert_eq!(
            verify_with(&rsa_token, &set),
            Err(JwsError::UnknownKeyId { kid: "k1".into() })
        );
        // A finder that ignores the algorithm still cannot make the EC key verify RS256.
        let ec_key = set.find(Some("k1"), JwsAlgorithm::Es256).cloned();
        assert_eq!(
            verify(&rsa_token, &JwsAlgorithm::ALL, |_, _| ec_key.clone()),
            Err(JwsError::UnsupportedAlgorithm {
                alg: "RS256".into()
            })
        );
    }

    #[test]
    fn reports_unknown_and_missing_key_ids() {
        let set = key_set(&[(JwsAlgorithm::Es256, "a"), (JwsAlgorithm::EdDsa, "b")]);
        let token = sign(JwsAlgorithm::Es256, "zzz", &claims());
        assert_eq!(
            verify_with(&token, &set),
            Err(JwsError::UnknownKeyId { kid: "zzz".into() })
        );
        let no_kid = signer(JwsAlgorithm::Es256)
            .sign(&json!({"alg": "ES256"}), &claims())
            .unwrap();
        assert!(
            verify_with(&no_kid, &set).is_ok(),
            "the only ES256 key is chosen"
        );
        let two = key_set(&[(JwsAlgorithm::Es256, "a"), (JwsAlgorithm::Es256, "c")]);
        assert_eq!(verify_with(&no_kid, &two), Err(JwsError::MissingKeyId));
    }

    #[test]
    fn refuses_crit_and_non_string_kid_but_not_any_typ() {
        let set = key_set(&[(JwsAlgorithm::Es256, "k1")]);
        let key = signer(JwsAlgorithm::Es256);
        let at_jwt = key
            .sign(
                &json!({"alg": "ES256", "kid": "k1", "typ": "at+jwt"}),
                &claims(),
            )
            .unwrap();
        let verified = verify_with(&at_jwt, &set).unwrap();
        assert_eq!(verified.header.get("typ"), Some(&json!("at+jwt")));
        for header in [
            json!({"alg": "ES256", "kid": "k1", "crit": ["exp"]}),
            json!({"alg": "ES256", "kid": 1}),
        ] {
            let token = key.sign(&header, &claims()).unwrap();
            assert!(matches!(
                verify_with(&token, &set),
                Err(JwsError::Malformed { .. })
            ));
        }
    }

    #[test]
    fn refuses_oversized_and_misshapen_tokens() {
        let set = key_set(&[(JwsAlgorithm::Es256, "k1")]);
        let big = sign(
            JwsAlgorithm::Es256,
            "k1",
            &json!({"pad": "x".repeat(jws::MAX_JWS_BYTES)}),
        );
        assert_eq!(
            verify_with(&big, &set),
            Err(JwsError::TooLarge { len: big.len() })
        );
        assert_eq!(peek(&big), Err(JwsError::TooLarge { len: big.len() }));
        let token = sign(JwsAlgorithm::Es256, "k1", &claims());
        for bad in [
            format!("{token}.x"),
            token.rsplit_once('.').unwrap().0.to_owned(),
            format!("{token}="),
            format!("e30.{}", token.split_once('.').unwrap().1),
        ] {
            assert!(
                matches!(
                    verify_with(&bad, &set),
                    Err(JwsError::Malformed { .. } | JwsError::UnsupportedAlgorithm { .. })
                ),
                "{bad}"
            );
        }
        let array_payload = signer(JwsAlgorithm::Es256)
            .sign(&json!({"alg": "ES256", "kid": "k1"}), &json!(["sub"]))
            .unwrap();
        assert_eq!(
            verify_with(&array_payload, &set),
            Err(JwsError::Malformed {
                reason: "payload is not a JSON object"
            })
        );
    }

    #[test]
    fn peek_reads_without_verifying() {
        let token = TestSigningKey::generate(JwsAlgorithm::Es256)
            .unwrap()
            .sign(&json!({"alg": "ES256", "kid": "k9"}), &claims())
            .unwrap();
        let (header, peeked) = peek(&token).unwrap();
        assert_eq!(header.get("kid"), Some(&json!("k9")));
        assert_eq!(Value::Object(peeked), claims());
        let none = test_issuer::alg_none(&json!({"alg": "none"}), &claims());
        assert!(peek(&none).is_ok(), "peek decides nothing");
        assert!(matches!(peek("a.b"), Err(JwsError::Malformed { .. })));
        assert!(matches!(
            peek(&format!("e30.W10.{}", "A".repeat(86))),
            Err(JwsError::Malformed { .. })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn verify_never_panics_on_arbitrary_strings(s in "\\PC{0,400}") {
            let set = key_set(&[(JwsAlgorithm::Es256, "k1"), (JwsAlgorithm::Rs256, "k2")]);
            let _ = verify_with(&s, &set);
            let _ = peek(&s);
        }

        #[test]
        fn verify_never_panics_on_dotted_base64ish_strings(s in "[A-Za-z0-9_=-]{0,80}\\.[A-Za-z0-9_-]{0,80}\\.[A-Za-z0-9_-]{0,400}") {
            let set = key_set(&[(JwsAlgorithm::Es256, "k1"), (JwsAlgorithm::Rs256, "k2")]);
            let _ = verify_with(&s, &set);
        }

        #[test]
        fn random_signatures_never_verify_or_panic(
            index in 0..JwsAlgorithm::ALL.len(),
            signature in proptest::collection::vec(any::<u8>(), 0..1100),
        ) {
            let alg = JwsAlgorithm::ALL[index];
            let set = key_set(&[(alg, "k1")]);
            let token = sign(alg, "k1", &claims());
            let input = token.rsplit_once('.').unwrap().0;
            let forged = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&signature));
            prop_assert_eq!(verify_with(&forged, &set), Err(JwsError::BadSignature));
        }

        #[test]
        fn key_set_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = KeySet::parse(&bytes);
        }
    }
}
