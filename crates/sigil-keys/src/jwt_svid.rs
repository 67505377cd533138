//! JWT-SVID validation (SPIFFE JWT-SVID spec §4 and §7), shared by the agent (`ValidateJWTSVID`)
//! and the server (token exchange): the signing key is found by `kid` among the bundle's JWT
//! authorities, the ES256 signature is verified, then subject, audience and expiry are checked and
//! the subject must belong to the bundle's trust domain.

use serde_json::{Map, Value};
use sigil_spiffe::{JwtClaimError, JwtSvidClaims, SpiffeId, TrustBundle, TrustDomain};

use crate::PublicKey;
use crate::jws::{self, JwsError};

/// A JWT-SVID whose signature and claims were accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedJwtSvid {
    /// The subject, a SPIFFE ID in the bundle's trust domain.
    pub spiffe_id: SpiffeId,
    /// Every claim of the token, as sent.
    pub claims: Map<String, Value>,
}

/// Why a JWT-SVID was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtSvidError {
    /// The token is not a well-formed, acceptable JWS (size, shape, `alg`, `typ`).
    #[error("malformed JWT-SVID: {0}")]
    Malformed(JwsError),
    /// The token has no `kid` header.
    #[error("JWT-SVID has no key id (`kid`)")]
    MissingKeyId,
    /// The bundle has no JWT authority with the token's `kid`.
    #[error("no JWT authority with key id `{kid}` in the bundle of `{trust_domain}`")]
    UnknownKeyId {
        kid: String,
        trust_domain: TrustDomain,
    },
    /// The signature does not verify with the authority's key.
    #[error("JWT-SVID signature does not verify")]
    BadSignature,
    /// The claims are not JWT-SVID claims (`sub`, `aud`, `exp` missing or of the wrong type).
    #[error("JWT-SVID claims are malformed: {reason}")]
    MalformedClaims { reason: String },
    /// `aud` is empty.
    #[error("JWT-SVID has no audience")]
    MissingAudience,
    /// The expected audience is not among the token's.
    #[error("JWT-SVID audience mismatch: expected `{expected}`, token has {got:?}")]
    AudienceMismatch { expected: String, got: Vec<String> },
    /// The token expired (beyond the allowed skew).
    #[error("JWT-SVID expired at {exp} (now {now})")]
    Expired { exp: i64, now: i64 },
    /// `sub` is not a SPIFFE ID.
    #[error("JWT-SVID subject `{sub}` is not a valid SPIFFE ID")]
    BadSubject { sub: String },
    /// `sub` is a SPIFFE ID of another trust domain than the bundle's.
    #[error("JWT-SVID subject `{sub}` is not in trust domain `{trust_domain}`")]
    SubjectNotInTrustDomain {
        sub: String,
        trust_domain: TrustDomain,
    },
}

/// Validates `token` against `bundle` for `audience` at Unix time `now`.
///
/// The key is looked up by `kid` in `bundle.jwt_authorities` (keys that fail to parse are treated
/// as absent); claim checks are [`JwtSvidClaims::validate`]'s (expiry with its leeway).
pub fn validate(
    token: &str,
    bundle: &TrustBundle,
    audience: &str,
    now: i64,
) -> Result<ValidatedJwtSvid, JwtSvidError> {
    let find_key = |kid: Option<&str>| {
        let kid = kid?;
        bundle
            .jwt_authorities
            .iter()
            .find(|authority| authority.kid == kid)
            .and_then(|authority| PublicKey::from_spki_der(&authority.public_key_der).ok())
    };
    let (_header, claims) = jws::verify_compact(token, find_key).map_err(|e| match e {
        JwsError::MissingKeyId => JwtSvidError::MissingKeyId,
        JwsError::UnknownKeyId { kid } => JwtSvidError::UnknownKeyId {
            kid,
            trust_domain: bundle.trust_domain.clone(),
        },
        JwsError::BadSignature => JwtSvidError::BadSignature,
        other => JwtSvidError::Malformed(other),
    })?;

    let typed: JwtSvidClaims =
        serde_json::from_value(Value::Object(claims.clone())).map_err(|e| {
            JwtSvidError::MalformedClaims {
                reason: e.to_string(),
            }
        })?;
    let spiffe_id = typed.validate(audience, now).map_err(|e| match e {
        JwtClaimError::MissingAudience => JwtSvidError::MissingAudience,
        JwtClaimError::AudienceMismatch { expected, got } => {
            JwtSvidError::AudienceMismatch { expected, got }
        }
        JwtClaimError::Expired { exp, now } => JwtSvidError::Expired { exp, now },
        JwtClaimError::BadSubject(sub) => JwtSvidError::BadSubject { sub },
    })?;
    if !spiffe_id.is_member_of(&bundle.trust_domain) {
        return Err(JwtSvidError::SubjectNotInTrustDomain {
            sub: spiffe_id.to_string(),
            trust_domain: bundle.trust_domain.clone(),
        });
    }
    Ok(ValidatedJwtSvid { spiffe_id, claims })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PrivateKey;
    use crate::jws::sign_compact;
    use serde_json::json;
    use sigil_spiffe::JwtAuthorityKey;
    use sigil_spiffe::jwt::EXP_LEEWAY_SECS;

    struct Fixture {
        key: PrivateKey,
        bundle: TrustBundle,
    }

    fn fixture() -> Fixture {
        let key = PrivateKey::generate().unwrap();
        let bundle = TrustBundle {
            trust_domain: TrustDomain::parse("example.org").unwrap(),
            x509_authorities: vec![],
            jwt_authorities: vec![JwtAuthorityKey {
                kid: "k1".into(),
                public_key_der: key.public_key().spki_der().to_vec(),
                expires_at: 0,
            }],
            sequence: 1,
            refresh_hint: 300,
        };
        Fixture { key, bundle }
    }

    fn token(f: &Fixture, kid: &str, claims: Value) -> String {
        sign_compact(
            &json!({"alg": "ES256", "kid": kid, "typ": "JWT"}),
            &claims,
            &f.key,
        )
        .unwrap()
    }

    fn claims(sub: &str, aud: Value, exp: i64) -> Value {
        json!({"sub": sub, "aud": aud, "exp": exp, "iat": 900, "jti": "j"})
    }

    #[test]
    fn accepts_a_valid_token() {
        let f = fixture();
        let t = token(
            &f,
            "k1",
            claims("spiffe://example.org/w", json!(["a", "b"]), 1000),
        );
        let v = validate(&t, &f.bundle, "b", 950).unwrap();
        assert_eq!(v.spiffe_id.as_str(), "spiffe://example.org/w");
        assert_eq!(v.claims.get("jti"), Some(&json!("j")));
    }

    #[test]
    fn rejects_wrong_audience() {
        let f = fixture();
        let t = token(&f, "k1", claims("spiffe://example.org/w", json!("a"), 1000));
        assert!(matches!(
            validate(&t, &f.bundle, "c", 950),
            Err(JwtSvidError::AudienceMismatch { .. })
        ));
    }

    #[test]
    fn rejects_expired_token() {
        let f = fixture();
        let t = token(&f, "k1", claims("spiffe://example.org/w", json!("a"), 1000));
        assert!(matches!(
            validate(&t, &f.bundle, "a", 1000 + EXP_LEEWAY_SECS),
            Err(JwtSvidError::Expired { .. })
        ));
    }

    #[test]
    fn rejects_unknown_kid_and_bad_signature() {
        let f = fixture();
        let t = token(&f, "k2", claims("spiffe://example.org/w", json!("a"), 1000));
        assert!(matches!(
            validate(&t, &f.bundle, "a", 950),
            Err(JwtSvidError::UnknownKeyId { .. })
        ));
        let other = fixture();
        let forged = token(
            &other,
            "k1",
            claims("spiffe://example.org/w", json!("a"), 1000),
        );
        assert_eq!(
            validate(&forged, &f.bundle, "a", 950),
            Err(JwtSvidError::BadSignature)
        );
    }

    #[test]
    fn rejects_subject_outside_the_trust_domain() {
        let f = fixture();
        let t = token(&f, "k1", claims("spiffe://other.org/w", json!("a"), 1000));
        assert!(matches!(
            validate(&t, &f.bundle, "a", 950),
            Err(JwtSvidError::SubjectNotInTrustDomain { .. })
        ));
        let t = token(&f, "k1", claims("not-an-id", json!("a"), 1000));
        assert!(matches!(
            validate(&t, &f.bundle, "a", 950),
            Err(JwtSvidError::BadSubject { .. })
        ));
    }

    #[test]
    fn rejects_malformed_tokens_and_claims() {
        let f = fixture();
        assert!(matches!(
            validate("a.b", &f.bundle, "a", 950),
            Err(JwtSvidError::Malformed(_))
        ));
        let t = token(
            &f,
            "k1",
            json!({"sub": "spiffe://example.org/w", "aud": "a"}),
        );
        assert!(matches!(
            validate(&t, &f.bundle, "a", 950),
            Err(JwtSvidError::MalformedClaims { .. })
        ));
        let t = token(&f, "k1", claims("spiffe://example.org/w", json!([]), 1000));
        assert_eq!(
            validate(&t, &f.bundle, "a", 950),
            Err(JwtSvidError::MissingAudience)
        );
    }
}
