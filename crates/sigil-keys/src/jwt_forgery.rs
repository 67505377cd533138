//! Test support (feature `test-forgery`, never enabled in a shipped build): JWT-SVIDs that parse
//! as compact JWS but must be refused, each bad in exactly one way, built from a genuine token and
//! the key of the authority that signed it. Tests hand them to validators (Sigil's and third-party
//! clients') so that removing any one check makes a test fail.

use serde_json::{Value, json};

use crate::jws::{self, JsonObject, JwsError};
use crate::test_issuer::{alg_none, encode_part, sign_hs256};
use crate::{KeyError, PrivateKey};

/// How far in the past the expired case's `exp` lies, in seconds: far beyond any clock-skew
/// leeway a validator may allow (Sigil's is 30 s).
pub const EXPIRED_BY_SECS: i64 = 3600;

/// One token that must be refused, and the check that refuses it.
#[derive(Debug, Clone)]
pub struct RefusalCase {
    /// A stable name (`foreign_key_same_kid`, `alg_none`, ...), used as a report key.
    pub name: &'static str,
    /// The check that must refuse it: `signature`, `alg`, `exp` or `aud`.
    pub guarded_by: &'static str,
    /// The compact JWS.
    pub token: String,
}

/// Builds the refusal matrix from `genuine`, a JWT-SVID signed by `authority` for `audience`,
/// at Unix time `now`:
///
/// - `foreign_key_same_kid`: the genuine header and claims, a well-formed ES256 signature by
///   another P-256 key (it verifies with that key, not with the authority's);
/// - `genuine_signature_other_claims`: the genuine header and signature over changed claims
///   (another `sub`);
/// - `alg_none`: `{"alg":"none","kid":<kid>,"typ":"JWT"}`, the genuine claims, an empty
///   signature;
/// - `hs256_public_key_der` / `hs256_public_key_pem`: HS256 with the authority's public key
///   (SPKI DER, or its PEM text) as the HMAC secret, the classic algorithm-confusion attack;
/// - `expired`: correctly signed, `exp` [`EXPIRED_BY_SECS`] before `now`;
/// - `wrong_audience`: correctly signed, valid, for another audience only.
///
/// Fails with [`KeyError::BadSignature`] if `genuine` does not verify with `authority`, with
/// [`KeyError::Jws`] if it is not a JWT with a `kid`, or if a forged token is not bad in exactly
/// the intended way (checked here, so a test cannot pass on a token broken in another way).
pub fn refusal_matrix(
    genuine: &str,
    authority: &PrivateKey,
    audience: &str,
    now: i64,
) -> Result<Vec<RefusalCase>, KeyError> {
    let public = authority.public_key();
    let (header, claims) = jws::verify_compact(genuine, |_| Some(public.clone()))
        .map_err(|_| KeyError::BadSignature)?;
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .ok_or(JwsError::MissingKeyId)?
        .to_owned();
    let header = Value::Object(header);
    let mut cases = Vec::new();

    let foreign = PrivateKey::generate()?;
    let forged = jws::sign_compact(&header, &Value::Object(claims.clone()), &foreign)?;
    let foreign_public = foreign.public_key();
    let verifies_with = |token: &str, key: &crate::PublicKey| {
        jws::verify_compact(token, |_| Some(key.clone())).is_ok()
    };
    if !verifies_with(&forged, &foreign_public) || verifies_with(&forged, &public) {
        return Err(malformed(
            "the foreign-key token is not a valid foreign signature",
        ));
    }
    cases.push(case("foreign_key_same_kid", "signature", forged));

    let mut other_claims = claims.clone();
    let sub = other_claims
        .get("sub")
        .and_then(Value::as_str)
        .ok_or(malformed("the genuine token has no `sub`"))?;
    let impostor = format!("{sub}-impostor");
    other_claims.insert("sub".into(), Value::String(impostor));
    let mut parts = genuine.split('.');
    let (Some(genuine_header), Some(_), Some(genuine_signature)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("the genuine token does not have three parts"));
    };
    cases.push(case(
        "genuine_signature_other_claims",
        "signature",
        format!(
            "{genuine_header}.{}.{genuine_signature}",
            encode_part(&Value::Object(other_claims))
        ),
    ));

    let none_header = json!({"alg": "none", "kid": kid, "typ": "JWT"});
    cases.push(case(
        "alg_none",
        "alg",
        alg_none(&none_header, &Value::Object(claims.clone())),
    ));

    let hs_header = json!({"alg": "HS256", "kid": kid, "typ": "JWT"});
    let spki = public.spki_der().to_vec();
    let pem = crate::pem::encode("PUBLIC KEY", &spki).into_bytes();
    for (name, secret) in [
        ("hs256_public_key_der", spki),
        ("hs256_public_key_pem", pem),
    ] {
        let token = sign_hs256(&hs_header, &Value::Object(claims.clone()), &secret);
        cases.push(case(name, "alg", token));
    }

    let lifetime = match (claim_i64(&claims, "exp"), claim_i64(&claims, "iat")) {
        (Some(exp), Some(iat)) if exp > iat => exp - iat,
        _ => 300,
    };
    let mut expired = claims.clone();
    let exp = now.saturating_sub(EXPIRED_BY_SECS);
    expired.insert("exp".into(), json!(exp));
    expired.insert("iat".into(), json!(exp.saturating_sub(lifetime)));
    let expired = jws::sign_compact(&header, &Value::Object(expired), authority)?;
    cases.push(case("expired", "exp", expired));

    let mut other_audience = claims;
    other_audience.insert("aud".into(), json!([format!("{audience}-not-this-one")]));
    let other_audience = jws::sign_compact(&header, &Value::Object(other_audience), authority)?;
    cases.push(case("wrong_audience", "aud", other_audience));

    for c in &cases {
        let correctly_signed = verifies_with(&c.token, &public);
        if correctly_signed != matches!(c.guarded_by, "exp" | "aud") {
            return Err(malformed(
                "a forged token is not bad in exactly the intended way",
            ));
        }
    }
    Ok(cases)
}

fn case(name: &'static str, guarded_by: &'static str, token: String) -> RefusalCase {
    RefusalCase {
        name,
        guarded_by,
        token,
    }
}

fn malformed(reason: &'static str) -> KeyError {
    KeyError::Jws(JwsError::Malformed { reason })
}

fn claim_i64(claims: &JsonObject, name: &str) -> Option<i64> {
    claims.get(name).and_then(Value::as_i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt_svid::{JwtSvidError, validate};
    use aws_lc_rs::hmac;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use sigil_spiffe::{JwtAuthorityKey, TrustBundle, TrustDomain};

    const NOW: i64 = 1_900_000_000;

    fn bundle(key: &PrivateKey) -> TrustBundle {
        TrustBundle {
            trust_domain: TrustDomain::parse("example.org").unwrap(),
            x509_authorities: vec![],
            jwt_authorities: vec![JwtAuthorityKey {
                kid: "k1".into(),
                public_key_der: key.public_key().spki_der().to_vec(),
                expires_at: 0,
            }],
            sequence: 1,
            refresh_hint: 300,
        }
    }

    fn genuine(key: &PrivateKey) -> String {
        jws::sign_compact(
            &json!({"alg": "ES256", "kid": "k1", "typ": "JWT"}),
            &json!({"sub": "spiffe://example.org/w", "aud": ["db"], "exp": NOW + 300,
                    "iat": NOW, "jti": "j1"}),
            key,
        )
        .unwrap()
    }

    #[test]
    fn every_case_is_refused_by_the_check_it_names_and_the_genuine_token_is_not() {
        let key = PrivateKey::generate().unwrap();
        let bundle = bundle(&key);
        let token = genuine(&key);
        assert!(validate(&token, &bundle, "db", NOW).is_ok());
        let cases = refusal_matrix(&token, &key, "db", NOW).unwrap();
        let names: Vec<_> = cases.iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "foreign_key_same_kid",
                "genuine_signature_other_claims",
                "alg_none",
                "hs256_public_key_der",
                "hs256_public_key_pem",
                "expired",
                "wrong_audience"
            ]
        );
        for c in &cases {
            let err = validate(&c.token, &bundle, "db", NOW).unwrap_err();
            let by = match err {
                JwtSvidError::BadSignature => "signature",
                JwtSvidError::Malformed(JwsError::UnsupportedAlgorithm { .. }) => "alg",
                JwtSvidError::Expired { .. } => "exp",
                JwtSvidError::AudienceMismatch { .. } => "aud",
                other => panic!("{}: refused for another reason: {other}", c.name),
            };
            assert_eq!(by, c.guarded_by, "{}", c.name);
        }
    }

    #[test]
    fn hs256_cases_carry_a_correct_hmac_under_the_public_key() {
        let key = PrivateKey::generate().unwrap();
        let cases = refusal_matrix(&genuine(&key), &key, "db", NOW).unwrap();
        let der = cases
            .iter()
            .find(|c| c.name == "hs256_public_key_der")
            .unwrap();
        let (input, signature) = der.token.rsplit_once('.').unwrap();
        let tag = URL_SAFE_NO_PAD.decode(signature).unwrap();
        let secret = hmac::Key::new(hmac::HMAC_SHA256, key.public_key().spki_der());
        assert!(hmac::verify(&secret, input.as_bytes(), &tag).is_ok());
    }

    #[test]
    fn refuses_to_build_from_a_token_the_authority_did_not_sign() {
        let key = PrivateKey::generate().unwrap();
        let other = PrivateKey::generate().unwrap();
        assert!(matches!(
            refusal_matrix(&genuine(&key), &other, "db", NOW),
            Err(KeyError::BadSignature)
        ));
    }
}
