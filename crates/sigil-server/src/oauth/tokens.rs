//! Verifying the JWTs a client presents (subject and actor tokens, client assertions) into a
//! [`Principal`]: who the token speaks for, as a SPIFFE ID Sigil can issue for.
//!
//! A token is routed by its unverified `iss` and `sub`: an `iss` of a configured external issuer
//! is verified with that issuer's keys, its claims mapped to attributes and its SPIFFE ID
//! rendered from the template (which of its tokens may be exchanged, the Cedar policies decide
//! on those attributes at the endpoint); otherwise a `sub` that is a SPIFFE ID makes it a
//! JWT-SVID, verified with the bundle of the SPIFFE ID's trust domain (this server's own, or a
//! federated one's held bundle). Anything else is refused. Every refusal says why in words the
//! client can act on; the endpoint maps it to the protocol's error code.

use serde_json::Value;
use sigil_keys::jose::{self, JwsAlgorithm, VerifyingKey};
use sigil_keys::jws::{JsonObject, JwsError};
use sigil_spiffe::jwt::EXP_LEEWAY_SECS;
use sigil_spiffe::{SpiffeId, TrustBundle, TrustDomain};
use sigil_store::CredentialKind;

use super::OAuth;
use super::mapping::{AttrValue, Attributes};

/// The algorithms JWT-SVIDs may be signed with (Sigil signs ES256; other SPIFFE servers may use
/// ES384).
pub(crate) const JWT_SVID_ALGORITHMS: [JwsAlgorithm; 2] =
    [JwsAlgorithm::Es256, JwsAlgorithm::Es384];
/// Most cached verification keys of JWT-SVID authorities.
const MAX_CACHED_KEYS: usize = 256;

/// Where a verified token came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A JWT this server's trust domain signed (a JWT-SVID, or a token exchange issued).
    OwnDomain,
    /// A JWT-SVID of a federated trust domain.
    Federated(TrustDomain),
    /// A JWT of the configured external issuer with this `iss`.
    External(String),
}

/// Whom a verified token speaks for.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The identity: the token's own SPIFFE ID, or the one mapped from its claims.
    pub spiffe_id: SpiffeId,
    pub source: Source,
    /// Every claim of the token.
    pub claims: JsonObject,
    /// `exp`, Unix seconds.
    pub expires_at: i64,
    /// The scopes this principal may be granted.
    pub allowed_scopes: Vec<String>,
    /// The attributes its claims were mapped to (external issuers), as `name`, `value` strings
    /// for policy decisions; empty for JWT-SVIDs.
    pub attributes: Vec<(String, String)>,
}

/// What the token is presented as; decides which audience it must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented {
    /// A subject or actor token: a JWT-SVID must name this server (its issuer URL or token
    /// endpoint, as RFC 7523 asks of assertions), an external token one of its issuer's
    /// configured audiences.
    Subject,
    /// A client assertion: it must name this server, whoever issued it.
    ClientAssertion,
}

/// Why a presented token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    #[error("the token is larger than {max} bytes", max = jose_max())]
    TooLarge,
    #[error("the token is not a JWT: {0}")]
    Malformed(String),
    #[error("the token's algorithm `{0}` is not accepted")]
    Algorithm(String),
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token's key id is not known: {0}")]
    UnknownKey(String),
    #[error("the token's issuer `{0}` is not trusted for token exchange")]
    UntrustedIssuer(String),
    #[error("the token's subject is not a SPIFFE ID and its issuer is not a configured one")]
    NoIssuer,
    #[error("trust domain `{0}` is not accepted for token exchange")]
    UntrustedTrustDomain(String),
    #[error("the token expired at {exp}")]
    Expired { exp: i64 },
    #[error("the token is not valid before {nbf}")]
    NotYetValid { nbf: i64 },
    #[error("the token was issued at {iat}, longer ago than the {max_age} s its issuer allows")]
    TooOld { iat: i64, max_age: u64 },
    #[error("the token has no `{0}` claim of the right type")]
    MissingClaim(&'static str),
    #[error("the token's audience {got:?} names none of {expected:?}")]
    Audience {
        got: Vec<String>,
        expected: Vec<String>,
    },
    #[error("the token has been revoked")]
    Revoked,
    #[error("the token's claims cannot be mapped: {0}")]
    Mapping(String),
    #[error("{0}")]
    Keys(String),
}

fn jose_max() -> usize {
    sigil_keys::jws::MAX_JWS_BYTES
}

impl From<JwsError> for TokenRefusal {
    fn from(e: JwsError) -> Self {
        match e {
            JwsError::TooLarge { .. } => Self::TooLarge,
            JwsError::UnsupportedAlgorithm { alg } => Self::Algorithm(alg),
            JwsError::BadSignature => Self::BadSignature,
            JwsError::UnknownKeyId { kid } => Self::UnknownKey(kid),
            JwsError::MissingKeyId => Self::UnknownKey("(none)".to_owned()),
            other => Self::Malformed(other.to_string()),
        }
    }
}

impl OAuth {
    /// Verifies `token`, presented as `presented`, at Unix time `now`.
    pub(crate) async fn verify_presented(
        &self,
        token: &str,
        presented: Presented,
        now: i64,
    ) -> Result<Principal, TokenRefusal> {
        let (header, claims) = jose::peek(token)?;
        let iss = claims.get("iss").and_then(Value::as_str);
        if let Some(iss) = iss
            && let Some(index) = self.externals.iter().position(|e| e.config.issuer == iss)
        {
            return self
                .verify_external(token, &header, index, presented, now)
                .await;
        }
        let sub = claims.get("sub").and_then(Value::as_str);
        let Some(spiffe_id) = sub.and_then(|s| SpiffeId::parse(s).ok()) else {
            return Err(match iss {
                Some(iss) if iss != self.issuer_url.as_ref() => {
                    TokenRefusal::UntrustedIssuer(iss.chars().take(200).collect())
                }
                _ => TokenRefusal::NoIssuer,
            });
        };
        self.verify_spiffe(token, spiffe_id, now).await
    }

    /// A JWT signed by a SPIFFE trust domain's JWT authority: this server's own (a JWT-SVID, or a
    /// token a token exchange issued) or a federated one's (a JWT-SVID).
    async fn verify_spiffe(
        &self,
        token: &str,
        spiffe_id: SpiffeId,
        now: i64,
    ) -> Result<Principal, TokenRefusal> {
        let td = spiffe_id.trust_domain();
        let (bundle, source, allowed_scopes) = if td == self.trust_domain {
            (
                self.ca.bundle(),
                Source::OwnDomain,
                self.config.scopes.clone(),
            )
        } else {
            let Some(accepted) = self.config.federated.iter().find(|f| f.trust_domain == td) else {
                return Err(TokenRefusal::UntrustedTrustDomain(td.to_string()));
            };
            let bundle = self
                .foreign
                .get(&td)
                .ok_or_else(|| TokenRefusal::UntrustedTrustDomain(td.to_string()))?;
            (
                bundle,
                Source::Federated(td.clone()),
                accepted
                    .scopes
                    .clone()
                    .unwrap_or_else(|| self.config.scopes.clone()),
            )
        };
        let verified = jose::verify(token, &JWT_SVID_ALGORITHMS, |kid, alg| {
            self.bundle_key_for(&bundle, kid?, alg)
        })?;
        let claims = verified.claims;
        let expires_at = check_times(&claims, now, None)?;
        let audiences = self.own_audiences();
        check_audience(&claims, &audiences)?;
        if source == Source::OwnDomain
            && let Some(jti) = claims.get("jti").and_then(Value::as_str)
            && self
                .ca
                .revocations()
                .list
                .is_revoked(CredentialKind::JwtSvid, jti, now)
        {
            return Err(TokenRefusal::Revoked);
        }
        let spiffe_id = match &source {
            Source::Federated(td) => self.map_federated(td, spiffe_id, &claims)?,
            _ => spiffe_id,
        };
        Ok(Principal {
            spiffe_id,
            source,
            claims,
            expires_at,
            allowed_scopes,
            attributes: Vec::new(),
        })
    }

    /// A federated JWT-SVID's identity: its own SPIFFE ID, or the one its trust domain's
    /// template renders.
    fn map_federated(
        &self,
        td: &TrustDomain,
        spiffe_id: SpiffeId,
        claims: &JsonObject,
    ) -> Result<SpiffeId, TokenRefusal> {
        let Some(accepted) = self.config.federated.iter().find(|f| f.trust_domain == *td) else {
            return Err(TokenRefusal::UntrustedTrustDomain(td.to_string()));
        };
        let mut attrs = Attributes::new();
        attrs.insert(
            "spiffe_id".to_owned(),
            AttrValue::Str(spiffe_id.to_string()),
        );
        attrs.insert("trust_domain".to_owned(), AttrValue::Str(td.to_string()));
        attrs.insert(
            "path".to_owned(),
            AttrValue::Str(spiffe_id.path().trim_start_matches('/').to_owned()),
        );
        for (name, value) in claims {
            if let Value::String(s) = value
                && !attrs.contains_key(name)
            {
                attrs.insert(name.clone(), AttrValue::Str(s.clone()));
            }
        }
        match &accepted.spiffe_id {
            Some(template) => template
                .render(&attrs)
                .map_err(|e| TokenRefusal::Mapping(e.to_string())),
            None => Ok(spiffe_id),
        }
    }

    /// A JWT of configured external issuer `index`.
    async fn verify_external(
        &self,
        token: &str,
        header: &JsonObject,
        index: usize,
        presented: Presented,
        now: i64,
    ) -> Result<Principal, TokenRefusal> {
        let Some(external) = self.externals.get(index) else {
            return Err(TokenRefusal::NoIssuer);
        };
        let config = &external.config;
        let alg_name = header.get("alg").and_then(Value::as_str).unwrap_or("");
        let alg = JwsAlgorithm::parse(alg_name)
            .filter(|alg| config.algorithms.contains(alg))
            .ok_or_else(|| TokenRefusal::Algorithm(alg_name.chars().take(32).collect()))?;
        let kid = header.get("kid").and_then(Value::as_str);
        let key = external.key(kid, alg).await.map_err(|e| match e {
            super::external::KeyLookupError::Unknown { kid, .. } => TokenRefusal::UnknownKey(kid),
            other => TokenRefusal::Keys(other.to_string()),
        })?;
        let verified = jose::verify(token, &config.algorithms, |_, candidate| {
            (candidate == alg).then(|| key.clone())
        })?;
        let claims = verified.claims;
        let expires_at = check_times(&claims, now, config.max_token_age)?;
        match presented {
            Presented::Subject => check_audience(&claims, &config.audiences)?,
            Presented::ClientAssertion => check_audience(&claims, &self.own_audiences())?,
        }
        let attrs = config
            .attributes
            .apply(&claims)
            .map_err(|e| TokenRefusal::Mapping(e.to_string()))?;
        let spiffe_id = config
            .spiffe_id
            .render(&attrs)
            .map_err(|e| TokenRefusal::Mapping(e.to_string()))?;
        let attributes = attrs
            .iter()
            .filter_map(|(name, value)| {
                let text = match value {
                    AttrValue::Str(s) => s.clone(),
                    AttrValue::Int(i) => i.to_string(),
                    AttrValue::Bool(b) => b.to_string(),
                    AttrValue::List(_) => return None,
                };
                Some((name.clone(), text))
            })
            .collect();
        Ok(Principal {
            spiffe_id,
            source: Source::External(config.issuer.clone()),
            claims,
            expires_at,
            attributes,
            allowed_scopes: config
                .scopes
                .clone()
                .unwrap_or_else(|| self.config.scopes.clone()),
        })
    }

    /// The audiences that name this server: its issuer URL and its token endpoint.
    pub(crate) fn own_audiences(&self) -> [String; 2] {
        [self.issuer_url.to_string(), self.token_endpoint.clone()]
    }

    /// The verification key of `bundle`'s JWT authority `kid`, if it can verify `alg`.
    pub(crate) fn bundle_key_for(
        &self,
        bundle: &TrustBundle,
        kid: &str,
        alg: JwsAlgorithm,
    ) -> Option<VerifyingKey> {
        let authority = bundle.jwt_authorities.iter().find(|a| a.kid == kid)?;
        let mut cache = self.key_cache.lock().ok()?;
        if let Some(key) = cache.get(&authority.public_key_der) {
            return key.supports(alg).then(|| key.clone());
        }
        let public = sigil_keys::PublicKey::from_spki_der(&authority.public_key_der).ok()?;
        let jwk = serde_json::to_value(public.to_jwk(Some(kid), "sig")).ok()?;
        let key = VerifyingKey::from_jwk(&jwk).ok()?;
        if cache.len() >= MAX_CACHED_KEYS {
            cache.clear();
        }
        cache.insert(authority.public_key_der.clone(), key.clone());
        key.supports(alg).then_some(key)
    }
}

/// Checks `exp` (required), `nbf` and `iat` (required when `max_age` is set) at `now`, with
/// [`EXP_LEEWAY_SECS`] of clock skew; returns `exp`.
pub(crate) fn check_times(
    claims: &JsonObject,
    now: i64,
    max_age: Option<u64>,
) -> Result<i64, TokenRefusal> {
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or(TokenRefusal::MissingClaim("exp"))?;
    if exp.saturating_add(EXP_LEEWAY_SECS) <= now {
        return Err(TokenRefusal::Expired { exp });
    }
    if let Some(nbf) = claims.get("nbf") {
        let nbf = nbf.as_i64().ok_or(TokenRefusal::MissingClaim("nbf"))?;
        if nbf > now.saturating_add(EXP_LEEWAY_SECS) {
            return Err(TokenRefusal::NotYetValid { nbf });
        }
    }
    let iat = match claims.get("iat") {
        Some(iat) => Some(iat.as_i64().ok_or(TokenRefusal::MissingClaim("iat"))?),
        None => None,
    };
    if let Some(max_age) = max_age {
        let iat = iat.ok_or(TokenRefusal::MissingClaim("iat"))?;
        let age = now.saturating_sub(iat);
        if age
            > i64::try_from(max_age)
                .unwrap_or(i64::MAX)
                .saturating_add(EXP_LEEWAY_SECS)
        {
            return Err(TokenRefusal::TooOld { iat, max_age });
        }
    }
    if let Some(iat) = iat
        && iat > now.saturating_add(EXP_LEEWAY_SECS)
    {
        return Err(TokenRefusal::NotYetValid { nbf: iat });
    }
    Ok(exp)
}

/// The token's `aud` (a string or an array of strings) must name one of `expected`.
pub(crate) fn check_audience(claims: &JsonObject, expected: &[String]) -> Result<(), TokenRefusal> {
    let got: Vec<String> = match claims.get("aud") {
        Some(Value::String(one)) => vec![one.clone()],
        Some(Value::Array(many)) => many
            .iter()
            .take(64)
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => return Err(TokenRefusal::MissingClaim("aud")),
    };
    if got.iter().any(|aud| expected.contains(aud)) {
        Ok(())
    } else {
        Err(TokenRefusal::Audience {
            got: got.into_iter().take(8).collect(),
            expected: expected.to_vec(),
        })
    }
}
