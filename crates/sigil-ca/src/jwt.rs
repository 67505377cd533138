//! JWT-SVID minting (SPIFFE JWT-SVID spec): compact JWS with header
//! `{"alg":"ES256","kid":…,"typ":"JWT"}` and claims `sub`, `aud` (always an array), `exp` (never
//! past the authority's NotAfter), `iat` and a random `jti`; and the tokens token exchange issues
//! with the same key: JWT-SVIDs carrying `scope`, `client_id` and `act`, and OAuth access tokens
//! (RFC 9068, header `typ: at+jwt`).

use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use sigil_keys::{PrivateKey, jws};
use sigil_spiffe::time::unix_secs;
use sigil_spiffe::{JwtAuthorityKey, SpiffeId};

use crate::CaError;
use crate::validity::end_of_ttl;

/// Length of a key id made by [`new_kid`], in characters.
pub const KID_LEN: usize = 32;
/// Random bytes in a `jti`.
const JTI_BYTES: usize = 16;

/// A JWT signing authority: key id, private key and the time after which it must not sign.
#[derive(Debug)]
pub struct JwtAuthority {
    kid: String,
    key: Arc<PrivateKey>,
    not_after: i64,
    /// The base64url header, built once: it never changes for an authority.
    encoded_header: String,
    /// The same with `typ: at+jwt`, for access tokens.
    encoded_access_token_header: String,
}

/// What a token issued by token exchange says beyond `sub`, `aud`, `exp`, `iat` and `jti`.
#[derive(Debug, Clone, Copy)]
pub struct ExchangedClaims<'a> {
    /// `true`: an RFC 9068 access token (`typ: at+jwt`); `false`: a JWT-SVID (`typ: JWT`).
    pub access_token: bool,
    /// `sub`: a SPIFFE ID (the only subjects Sigil issues for).
    pub sub: &'a SpiffeId,
    pub audience: &'a [String],
    pub ttl_secs: u64,
    /// `scope`, space-separated, if any was granted.
    pub scope: Option<&'a str>,
    /// `client_id`: the authenticated client, if any.
    pub client_id: Option<&'a str>,
    /// `act` (RFC 8693 §4.1): the actor, nesting earlier actors.
    pub act: Option<&'a serde_json::Value>,
}

/// A freshly minted JWT-SVID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintedJwt {
    /// The compact JWS.
    pub token: String,
    /// `iat`, Unix seconds.
    pub issued_at: i64,
    /// `exp`, Unix seconds.
    pub expires_at: i64,
    /// `jti`: the token's unique id, by which it can be revoked.
    pub jti: String,
    /// `kid` of the key that signed it.
    pub kid: String,
}

#[derive(Serialize)]
struct Claims<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    sub: &'a str,
    aud: &'a [String],
    exp: i64,
    iat: i64,
    jti: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    act: Option<&'a serde_json::Value>,
}

/// A new random key id: 24 random bytes, base64url without padding (32 characters).
pub fn new_kid() -> Result<String, CaError> {
    Ok(URL_SAFE_NO_PAD.encode(sigil_keys::random_bytes(KID_LEN / 4 * 3)?))
}

impl JwtAuthority {
    /// An authority signing with `key` under `kid` until `not_after` (Unix seconds).
    pub fn new(kid: String, key: Arc<PrivateKey>, not_after: i64) -> Self {
        let header = serde_json::json!({"alg": jws::ES256, "kid": kid, "typ": "JWT"});
        let access_token_header =
            serde_json::json!({"alg": jws::ES256, "kid": kid, "typ": "at+jwt"});
        Self {
            encoded_header: jws::encode_header(header.to_string().as_bytes()),
            encoded_access_token_header: jws::encode_header(
                access_token_header.to_string().as_bytes(),
            ),
            kid,
            key,
            not_after,
        }
    }

    /// The key id, sent as the `kid` header and published in the bundle.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The private key.
    pub fn key(&self) -> &Arc<PrivateKey> {
        &self.key
    }

    /// Unix seconds after which this authority must not sign.
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    /// The public half as published in a trust bundle.
    pub fn bundle_key(&self) -> JwtAuthorityKey {
        JwtAuthorityKey {
            kid: self.kid.clone(),
            public_key_der: self.key.public_key_ref().spki_der().to_vec(),
            expires_at: self.not_after,
        }
    }

    /// Mints a JWT-SVID for `sub` and `audience` valid from `now` for `ttl_secs`, cut at the
    /// authority's `not_after`, with `iss` when `issuer` is given (the OIDC issuer URL). Fails with [`CaError::EmptyAudience`] or
    /// [`CaError::EmptyAudienceValue`], [`CaError::ZeroTtl`], [`CaError::AuthorityExpired`] when
    /// `now` is at or past `not_after`, or a signing error.
    pub fn mint(
        &self,
        sub: &SpiffeId,
        audience: &[String],
        ttl_secs: u64,
        issuer: Option<&str>,
        now: SystemTime,
    ) -> Result<MintedJwt, CaError> {
        self.mint_exchanged(
            &ExchangedClaims {
                access_token: false,
                sub,
                audience,
                ttl_secs,
                scope: None,
                client_id: None,
                act: None,
            },
            issuer,
            now,
        )
    }

    /// Mints what token exchange issues: a JWT-SVID or an access token (per
    /// [`ExchangedClaims::access_token`]) with the extra claims given. Fails as [`Self::mint`].
    pub fn mint_exchanged(
        &self,
        claims: &ExchangedClaims<'_>,
        issuer: Option<&str>,
        now: SystemTime,
    ) -> Result<MintedJwt, CaError> {
        if claims.audience.is_empty() {
            return Err(CaError::EmptyAudience);
        }
        if claims.audience.iter().any(String::is_empty) {
            return Err(CaError::EmptyAudienceValue);
        }
        let now = unix_secs(now);
        if self.not_after <= now {
            return Err(CaError::AuthorityExpired {
                not_after: self.not_after,
                now,
            });
        }
        let expires_at = end_of_ttl(now, claims.ttl_secs)?.min(self.not_after);
        let jti = URL_SAFE_NO_PAD.encode(sigil_keys::random_bytes(JTI_BYTES)?);
        let body = Claims {
            iss: issuer,
            sub: claims.sub.as_str(),
            aud: claims.audience,
            exp: expires_at,
            iat: now,
            jti: &jti,
            scope: claims.scope,
            client_id: claims.client_id,
            act: claims.act,
        };
        let claims_json = serde_json::to_vec(&body)?;
        let header = if claims.access_token {
            &self.encoded_access_token_header
        } else {
            &self.encoded_header
        };
        let token = jws::sign_with_encoded_header(header, &claims_json, &self.key)?;
        Ok(MintedJwt {
            token,
            issued_at: now,
            expires_at,
            jti,
            kid: self.kid.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use sigil_keys::jwt_svid::{self, JwtSvidError};
    use sigil_spiffe::time::from_unix_secs;
    use sigil_spiffe::{TrustBundle, TrustDomain};

    const NOW: i64 = 1_700_000_000;

    fn authority() -> JwtAuthority {
        JwtAuthority::new(
            new_kid().unwrap(),
            Arc::new(PrivateKey::generate().unwrap()),
            NOW + 3_600,
        )
    }

    fn bundle(a: &JwtAuthority) -> TrustBundle {
        TrustBundle {
            trust_domain: TrustDomain::parse("example.org").unwrap(),
            x509_authorities: vec![],
            jwt_authorities: vec![a.bundle_key()],
            sequence: 1,
            refresh_hint: 60,
        }
    }

    fn sub() -> SpiffeId {
        SpiffeId::parse("spiffe://example.org/w").unwrap()
    }

    #[test]
    fn exchanged_access_token_has_at_jwt_header_and_extra_claims() {
        let a = authority();
        let act = json!({"sub": "spiffe://example.org/agent"});
        let minted = a
            .mint_exchanged(
                &ExchangedClaims {
                    access_token: true,
                    sub: &sub(),
                    audience: &["https://api".to_owned()],
                    ttl_secs: 120,
                    scope: Some("read write"),
                    client_id: Some("spiffe://example.org/client"),
                    act: Some(&act),
                },
                Some("https://sigil.example.org"),
                from_unix_secs(NOW),
            )
            .unwrap();
        let parts: Vec<&str> = minted.token.split('.').collect();
        let decode = |part: &str| -> Value {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
        };
        let (header, claims) = (decode(parts[0]), decode(parts[1]));
        let signing_input = format!("{}.{}", parts[0], parts[1]);
        a.key()
            .public_key_ref()
            .verify_jws(
                jws::ES256,
                signing_input.as_bytes(),
                &URL_SAFE_NO_PAD.decode(parts[2]).unwrap(),
            )
            .unwrap();
        assert_eq!(header["typ"], "at+jwt");
        assert_eq!(claims["scope"], "read write");
        assert_eq!(claims["client_id"], "spiffe://example.org/client");
        assert_eq!(claims["act"], act);
        assert_eq!(claims["iss"], "https://sigil.example.org");
        assert_eq!(claims["exp"], NOW + 120);
        assert_eq!(claims["jti"], minted.jti.as_str());
    }

    #[test]
    fn kids_are_32_random_url_safe_characters() {
        let kid = new_kid().unwrap();
        assert_eq!(kid.len(), KID_LEN);
        assert!(
            kid.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert!(
            sigil_spiffe::is_authority_id(&kid),
            "the admin API accepts it"
        );
        assert_ne!(kid, new_kid().unwrap());
    }

    #[test]
    fn minted_token_has_the_spiffe_header_and_claims() {
        let a = authority();
        let minted = a
            .mint(&sub(), &["svc".to_owned()], 300, None, from_unix_secs(NOW))
            .unwrap();
        assert_eq!(minted.issued_at, NOW);
        assert_eq!(minted.expires_at, NOW + 300);
        let (header, claims) = jws::verify_compact(&minted.token, |kid| {
            (kid == Some(a.kid())).then(|| a.key().public_key())
        })
        .unwrap();
        assert_eq!(
            Value::Object(header),
            json!({"alg": "ES256", "kid": a.kid(), "typ": "JWT"})
        );
        assert_eq!(claims.get("sub"), Some(&json!("spiffe://example.org/w")));
        assert_eq!(
            claims.get("aud"),
            Some(&json!(["svc"])),
            "aud is an array even for one"
        );
        assert_eq!(claims.get("exp"), Some(&json!(NOW + 300)));
        assert_eq!(claims.get("iat"), Some(&json!(NOW)));
        let jti = claims.get("jti").and_then(Value::as_str).unwrap();
        assert_eq!(jti.len(), 22);
        assert_eq!(claims.get("iss"), None, "no issuer configured, no iss");
    }

    #[test]
    fn an_issuer_is_carried_as_iss() {
        let a = authority();
        let minted = a
            .mint(
                &sub(),
                &["svc".to_owned()],
                300,
                Some("https://oidc.example.org"),
                from_unix_secs(NOW),
            )
            .unwrap();
        let (_, claims) = jws::verify_compact(&minted.token, |kid| {
            (kid == Some(a.kid())).then(|| a.key().public_key())
        })
        .unwrap();
        assert_eq!(claims.get("iss"), Some(&json!("https://oidc.example.org")));
    }

    #[test]
    fn minted_token_validates_as_a_jwt_svid() {
        let a = authority();
        let auds = vec!["a".to_owned(), "b".to_owned()];
        let minted = a
            .mint(&sub(), &auds, 300, None, from_unix_secs(NOW))
            .unwrap();
        let v = jwt_svid::validate(&minted.token, &bundle(&a), "b", NOW + 10).unwrap();
        assert_eq!(v.spiffe_id, sub());
        assert!(matches!(
            jwt_svid::validate(&minted.token, &bundle(&a), "c", NOW + 10),
            Err(JwtSvidError::AudienceMismatch { .. })
        ));
    }

    #[test]
    fn exp_is_clamped_to_the_authority() {
        let a = authority();
        let minted = a
            .mint(&sub(), &["x".to_owned()], 86_400, None, from_unix_secs(NOW))
            .unwrap();
        assert_eq!(minted.expires_at, a.not_after());
    }

    #[test]
    fn refuses_empty_audience_zero_ttl_and_expired_authority() {
        let a = authority();
        let now = from_unix_secs(NOW);
        assert!(matches!(
            a.mint(&sub(), &[], 300, None, now),
            Err(CaError::EmptyAudience)
        ));
        assert!(matches!(
            a.mint(&sub(), &[String::new()], 300, None, now),
            Err(CaError::EmptyAudienceValue)
        ));
        assert!(matches!(
            a.mint(&sub(), &["x".to_owned()], 0, None, now),
            Err(CaError::ZeroTtl)
        ));
        assert!(matches!(
            a.mint(
                &sub(),
                &["x".to_owned()],
                300,
                None,
                from_unix_secs(NOW + 3_600)
            ),
            Err(CaError::AuthorityExpired { .. })
        ));
    }

    #[test]
    fn jtis_are_unique() {
        let a = authority();
        let now = from_unix_secs(NOW);
        let t1 = a
            .mint(&sub(), &["x".to_owned()], 300, None, now)
            .unwrap()
            .token;
        let t2 = a
            .mint(&sub(), &["x".to_owned()], 300, None, now)
            .unwrap()
            .token;
        assert_ne!(t1, t2);
    }
}
