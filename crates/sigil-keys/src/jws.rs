//! Compact JWS (RFC 7515 §7.1) signed with ES256 only. Verification is strict: bounded size,
//! exactly three base64url parts without padding, JSON object header and payload, `alg` must be
//! `ES256` (so `none` and HMAC algorithms are refused), `typ` if present `JWT` or `JOSE`, no
//! `crit`, and the key is chosen by the caller from the `kid` header.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use crate::{KeyError, PrivateKey, PublicKey};

/// Largest compact JWS accepted by [`verify_compact`], in bytes.
pub const MAX_JWS_BYTES: usize = 16 * 1024;
/// The only algorithm Sigil signs and verifies JWS with.
pub const ES256: &str = "ES256";

/// A JSON object: a JWS header or claims set.
pub type JsonObject = Map<String, Value>;

/// Why a compact JWS was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    /// The token is longer than [`MAX_JWS_BYTES`].
    #[error("token is {len} bytes, more than the limit of {max} bytes", max = MAX_JWS_BYTES)]
    TooLarge { len: usize },
    /// The token is not a well-formed compact JWS.
    #[error("malformed token: {reason}")]
    Malformed { reason: &'static str },
    /// The `alg` header is not one the verifier accepts (`ES256` for [`verify_compact`]; the
    /// caller's list for [`crate::jose::verify`]). `none` and HMAC algorithms are never accepted.
    #[error("unsupported algorithm `{alg}`")]
    UnsupportedAlgorithm { alg: String },
    /// The `typ` header is neither `JWT` nor `JOSE`.
    #[error("unsupported token type `{typ}`: expected `JWT` or `JOSE`")]
    UnsupportedType { typ: String },
    /// The header has no `kid` and no key could be chosen without one.
    #[error("token has no key id (`kid`)")]
    MissingKeyId,
    /// No key is known for the `kid` header.
    #[error("no key is known for key id `{kid}`")]
    UnknownKeyId { kid: String },
    /// The signature does not verify with the chosen key.
    #[error("token signature does not verify")]
    BadSignature,
}

/// Signs `claims` with `key` as a compact JWS. `header` must be a JSON object whose `alg` is
/// `ES256`; it is used as given (add `kid` and `typ` there). Fails with [`KeyError::Jws`] when the
/// header or claims are not objects or `alg` is wrong, or [`KeyError::Sign`].
pub fn sign_compact(header: &Value, claims: &Value, key: &PrivateKey) -> Result<String, KeyError> {
    let header_obj = header.as_object().ok_or(JwsError::Malformed {
        reason: "header is not a JSON object",
    })?;
    match header_obj.get("alg").and_then(Value::as_str) {
        Some(ES256) => {}
        Some(other) => {
            return Err(JwsError::UnsupportedAlgorithm {
                alg: other.to_owned(),
            }
            .into());
        }
        None => {
            return Err(JwsError::Malformed {
                reason: "header has no string `alg`",
            }
            .into());
        }
    }
    if !claims.is_object() {
        return Err(JwsError::Malformed {
            reason: "claims are not a JSON object",
        }
        .into());
    }
    let header_json = serde_json::to_vec(header).map_err(|_| JwsError::Malformed {
        reason: "header cannot be serialised",
    })?;
    let claims_json = serde_json::to_vec(claims).map_err(|_| JwsError::Malformed {
        reason: "claims cannot be serialised",
    })?;
    sign_json_parts(&header_json, &claims_json, key)
}

/// Signs already-serialised header and claims JSON (trusted, produced by the caller). The building
/// block of [`sign_compact`].
pub fn sign_json_parts(
    header_json: &[u8],
    claims_json: &[u8],
    key: &PrivateKey,
) -> Result<String, KeyError> {
    sign_with_encoded_header(&URL_SAFE_NO_PAD.encode(header_json), claims_json, key)
}

/// Signs claims JSON under an already base64url-encoded header (from [`encode_header`]), for
/// signers whose header never changes and is encoded once.
pub fn sign_with_encoded_header(
    encoded_header: &str,
    claims_json: &[u8],
    key: &PrivateKey,
) -> Result<String, KeyError> {
    // header . claims (4/3 expansion) . 64-byte signature (86 characters)
    let mut token = String::with_capacity(encoded_header.len() + claims_json.len() * 4 / 3 + 92);
    token.push_str(encoded_header);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(claims_json, &mut token);
    let signature = key.sign_jws(token.as_bytes())?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut token);
    Ok(token)
}

/// The base64url (no padding) encoding of a header's JSON, for [`sign_with_encoded_header`].
pub fn encode_header(header_json: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(header_json)
}

/// The `kid` of a compact JWS's header, read without verifying anything: for bookkeeping of
/// tokens this process obtained itself (never to decide trust). `None` when there is none or
/// the token is malformed or larger than [`MAX_JWS_BYTES`].
pub fn unverified_kid(token: &str) -> Option<String> {
    if token.len() > MAX_JWS_BYTES {
        return None;
    }
    let header = decode_object(token.split('.').next()?, "header").ok()?;
    header.get("kid")?.as_str().map(str::to_owned)
}

/// The `jti` claim of a compact JWS's payload, read without verifying anything: for bookkeeping
/// of tokens this process obtained itself (never to decide trust). `None` when there is none, it
/// is not a string, or the token is malformed or larger than [`MAX_JWS_BYTES`].
pub fn unverified_jti(token: &str) -> Option<String> {
    if token.len() > MAX_JWS_BYTES {
        return None;
    }
    let claims = decode_object(token.split('.').nth(1)?, "payload").ok()?;
    claims.get("jti")?.as_str().map(str::to_owned)
}

/// Verifies a compact JWS and returns its header and claims.
///
/// `find_key` receives the `kid` header (if any) and returns the key to verify with, or `None`
/// ([`JwsError::UnknownKeyId`], or [`JwsError::MissingKeyId`] when there was no `kid`). The
/// signature is checked before the payload is parsed.
pub fn verify_compact(
    token: &str,
    find_key: impl Fn(Option<&str>) -> Option<PublicKey>,
) -> Result<(JsonObject, JsonObject), JwsError> {
    let parts = split_compact(token)?;
    let header = decode_object(parts.header, "header")?;
    let alg = header_alg(&header)?;
    if alg != ES256 {
        return Err(JwsError::UnsupportedAlgorithm {
            alg: alg.to_owned(),
        });
    }
    match header.get("typ") {
        None => {}
        Some(Value::String(typ)) if typ == "JWT" || typ == "JOSE" => {}
        Some(Value::String(typ)) => return Err(JwsError::UnsupportedType { typ: typ.clone() }),
        Some(_) => {
            return Err(JwsError::Malformed {
                reason: "`typ` is not a string",
            });
        }
    }
    refuse_crit(&header)?;
    let kid = header_kid(&header)?;
    let key = find_key(kid).ok_or_else(|| missing_key(kid))?;

    let signature = decode_signature(parts.signature)?;
    key.verify_jws(alg, parts.signing_input, &signature)
        .map_err(|e| match e {
            KeyError::UnsupportedAlgorithm { alg } => JwsError::UnsupportedAlgorithm { alg },
            _ => JwsError::BadSignature,
        })?;

    let claims = decode_object(parts.payload, "payload")?;
    Ok((header, claims))
}

/// The parts of a compact JWS, borrowed from the token.
pub(crate) struct CompactParts<'a> {
    /// The base64url header.
    pub(crate) header: &'a str,
    /// The base64url payload.
    pub(crate) payload: &'a str,
    /// The base64url signature.
    pub(crate) signature: &'a str,
    /// `header.payload`, the bytes the signature covers.
    pub(crate) signing_input: &'a [u8],
}

/// Splits a compact JWS into its three parts, after checking it is at most [`MAX_JWS_BYTES`]
/// ([`JwsError::TooLarge`]) and has exactly three parts ([`JwsError::Malformed`]).
pub(crate) fn split_compact(token: &str) -> Result<CompactParts<'_>, JwsError> {
    if token.len() > MAX_JWS_BYTES {
        return Err(JwsError::TooLarge { len: token.len() });
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwsError::Malformed {
            reason: "token must have exactly three parts",
        });
    };
    let signing_input = token
        .as_bytes()
        .get(..header.len() + 1 + payload.len())
        .unwrap_or_default();
    Ok(CompactParts {
        header,
        payload,
        signature,
        signing_input,
    })
}

/// The header's `alg`, which must be a string.
pub(crate) fn header_alg(header: &JsonObject) -> Result<&str, JwsError> {
    header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(JwsError::Malformed {
            reason: "header has no string `alg`",
        })
}

/// The header's `kid`: `None` when absent, an error when it is not a string.
pub(crate) fn header_kid(header: &JsonObject) -> Result<Option<&str>, JwsError> {
    match header.get("kid") {
        None => Ok(None),
        Some(Value::String(kid)) => Ok(Some(kid.as_str())),
        Some(_) => Err(JwsError::Malformed {
            reason: "`kid` is not a string",
        }),
    }
}

/// Refuses a header with `crit`: no extension is understood, so every critical one must fail.
pub(crate) fn refuse_crit(header: &JsonObject) -> Result<(), JwsError> {
    if header.contains_key("crit") {
        return Err(JwsError::Malformed {
            reason: "critical header parameters are not supported",
        });
    }
    Ok(())
}

/// The error for a key lookup that found nothing for `kid`.
pub(crate) fn missing_key(kid: Option<&str>) -> JwsError {
    match kid {
        Some(kid) => JwsError::UnknownKeyId {
            kid: kid.to_owned(),
        },
        None => JwsError::MissingKeyId,
    }
}

/// Decodes the base64url (no padding) signature part.
pub(crate) fn decode_signature(part: &str) -> Result<Vec<u8>, JwsError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwsError::Malformed {
            reason: "signature is not base64url",
        })
}

/// Decodes a base64url (no padding) part holding a JSON object; `what` is `header` or `payload`.
pub(crate) fn decode_object(part: &str, what: &'static str) -> Result<JsonObject, JwsError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwsError::Malformed {
            reason: if what == "header" {
                "header is not base64url"
            } else {
                "payload is not base64url"
            },
        })?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(JwsError::Malformed {
            reason: if what == "header" {
                "header is not a JSON object"
            } else {
                "payload is not a JSON object"
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;
    use std::sync::OnceLock;

    fn key() -> &'static PrivateKey {
        static KEY: OnceLock<PrivateKey> = OnceLock::new();
        KEY.get_or_init(|| PrivateKey::generate().unwrap())
    }

    fn header() -> Value {
        json!({"alg": "ES256", "kid": "k1", "typ": "JWT"})
    }

    fn finder(kid: Option<&str>) -> Option<PublicKey> {
        (kid == Some("k1")).then(|| key().public_key())
    }

    /// A token with any header, signed by `key()` (to test header checks past the signature).
    fn forge(header: &Value, claims: &Value) -> String {
        sign_json_parts(
            &serde_json::to_vec(header).unwrap(),
            &serde_json::to_vec(claims).unwrap(),
            key(),
        )
        .unwrap()
    }

    #[test]
    fn signs_and_verifies() {
        let token = sign_compact(&header(), &json!({"sub": "x"}), key()).unwrap();
        let (h, c) = verify_compact(&token, finder).unwrap();
        assert_eq!(h.get("kid"), Some(&json!("k1")));
        assert_eq!(c.get("sub"), Some(&json!("x")));
        assert_eq!(token.split('.').count(), 3);
        assert!(!token.contains('='));
    }

    #[test]
    fn sign_refuses_other_algorithms_and_non_objects() {
        let err = sign_compact(&json!({"alg": "HS256"}), &json!({}), key()).unwrap_err();
        assert!(matches!(
            err,
            KeyError::Jws(JwsError::UnsupportedAlgorithm { .. })
        ));
        assert!(sign_compact(&json!({}), &json!({}), key()).is_err());
        assert!(sign_compact(&header(), &json!([1]), key()).is_err());
    }

    #[test]
    fn rejects_none_and_hmac_algorithms() {
        for alg in ["none", "HS256", "RS256", "ES384"] {
            let token = forge(&json!({"alg": alg, "kid": "k1"}), &json!({}));
            assert_eq!(
                verify_compact(&token, finder),
                Err(JwsError::UnsupportedAlgorithm {
                    alg: alg.to_owned()
                })
            );
        }
        let unsigned = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(b"{}")
        );
        assert!(matches!(
            verify_compact(&unsigned, finder),
            Err(JwsError::UnsupportedAlgorithm { .. })
        ));
    }

    #[test]
    fn rejects_unexpected_typ_and_crit() {
        let token = forge(
            &json!({"alg": "ES256", "kid": "k1", "typ": "at+jwt"}),
            &json!({}),
        );
        assert!(matches!(
            verify_compact(&token, finder),
            Err(JwsError::UnsupportedType { .. })
        ));
        let token = forge(
            &json!({"alg": "ES256", "kid": "k1", "typ": "JOSE"}),
            &json!({}),
        );
        assert!(verify_compact(&token, finder).is_ok());
        let token = forge(
            &json!({"alg": "ES256", "kid": "k1", "crit": ["x"]}),
            &json!({}),
        );
        assert!(matches!(
            verify_compact(&token, finder),
            Err(JwsError::Malformed { .. })
        ));
    }

    #[test]
    fn reports_unknown_and_missing_key_ids() {
        let token = forge(&json!({"alg": "ES256", "kid": "other"}), &json!({}));
        assert_eq!(
            verify_compact(&token, finder),
            Err(JwsError::UnknownKeyId {
                kid: "other".into()
            })
        );
        let token = forge(&json!({"alg": "ES256"}), &json!({}));
        assert_eq!(verify_compact(&token, finder), Err(JwsError::MissingKeyId));
    }

    #[test]
    fn rejects_a_signature_from_another_key() {
        let other = PrivateKey::generate().unwrap();
        let token = sign_compact(&header(), &json!({}), &other).unwrap();
        assert_eq!(verify_compact(&token, finder), Err(JwsError::BadSignature));
    }

    #[test]
    fn rejects_wrong_part_counts_padding_and_oversize() {
        let token = sign_compact(&header(), &json!({}), key()).unwrap();
        assert!(matches!(
            verify_compact(&format!("{token}.x"), finder),
            Err(JwsError::Malformed { .. })
        ));
        let two = token.rsplit_once('.').unwrap().0;
        assert!(matches!(
            verify_compact(two, finder),
            Err(JwsError::Malformed { .. })
        ));
        assert!(matches!(
            verify_compact(&format!("{token}="), finder),
            Err(JwsError::Malformed { .. })
        ));
        let big = "a".repeat(MAX_JWS_BYTES + 1);
        assert!(matches!(
            verify_compact(&big, finder),
            Err(JwsError::TooLarge { .. })
        ));
    }

    #[test]
    fn unverified_jti_reads_the_claim_of_a_well_formed_token_only() {
        let token = sign_compact(&header(), &json!({"sub": "x", "jti": "j-1"}), key()).unwrap();
        assert_eq!(unverified_jti(&token).as_deref(), Some("j-1"));
        assert_eq!(unverified_kid(&token).as_deref(), Some("k1"));

        let no_jti = sign_compact(&header(), &json!({"sub": "x"}), key()).unwrap();
        assert_eq!(unverified_jti(&no_jti), None);
        let numeric = sign_compact(&header(), &json!({"jti": 7}), key()).unwrap();
        assert_eq!(unverified_jti(&numeric), None);
        assert_eq!(unverified_jti("only-one-part"), None);
        assert_eq!(unverified_jti("a.!!!.c"), None);
        let padded = format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode("{}"),
            URL_SAFE_NO_PAD.encode(format!(
                r#"{{"jti":"j","pad":"{}"}}"#,
                "x".repeat(MAX_JWS_BYTES)
            ))
        );
        assert_eq!(unverified_jti(&padded), None, "larger than the limit");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn unverified_jti_never_panics(s in "\\PC{0,300}") {
            let _ = unverified_jti(&s);
        }

        #[test]
        fn sign_then_verify_round_trips(sub in "\\PC{0,40}", n in any::<i64>(), aud in proptest::collection::vec("[a-z]{1,8}", 0..4)) {
            let claims = json!({"sub": sub, "n": n, "aud": aud});
            let token = sign_compact(&header(), &claims, key()).unwrap();
            let (_, got) = verify_compact(&token, finder).unwrap();
            prop_assert_eq!(Value::Object(got), claims);
        }

        #[test]
        fn verify_never_panics_on_arbitrary_strings(s in "\\PC{0,300}") {
            let _ = verify_compact(&s, finder);
        }

        #[test]
        fn verify_never_panics_on_dotted_base64ish_strings(s in "[A-Za-z0-9_=-]{0,60}\\.[A-Za-z0-9_-]{0,60}\\.[A-Za-z0-9_-]{0,90}") {
            let _ = verify_compact(&s, finder);
        }

        #[test]
        fn tampering_any_payload_byte_fails(index in any::<prop::sample::Index>(), replacement in "[A-Za-z0-9_-]") {
            let token = sign_compact(&header(), &json!({"sub": "spiffe://td/w", "exp": 123}), key()).unwrap();
            let parts: Vec<&str> = token.split('.').collect();
            let payload = parts[1];
            let i = index.index(payload.len());
            prop_assume!(payload.as_bytes()[i] != replacement.as_bytes()[0]);
            let mut tampered = payload.as_bytes().to_vec();
            tampered[i] = replacement.as_bytes()[0];
            let tampered = format!("{}.{}.{}", parts[0], String::from_utf8(tampered).unwrap(), parts[2]);
            prop_assert!(verify_compact(&tampered, finder).is_err());
        }
    }
}
