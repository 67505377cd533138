//! Who is asking on the public `/creds/v1` endpoints: a workload of this trust domain, proven
//! by its X509-SVID over mutual TLS or by a JWT-SVID bearer token whose audience is this server
//! (its SPIFFE ID `spiffe://<td>/sigil/server`, or its issuer URL when it has one). JWT-SVIDs are
//! verified with this trust domain's JWT authorities and checked against the deny-list;
//! federated workloads get no database credentials here.

use std::sync::Arc;

use serde_json::Value;
use sigil_keys::jose::{self, VerifyingKey};
use sigil_spiffe::{SpiffeId, TrustDomain};
use sigil_store::CredentialKind;

use super::Via;
use crate::ca::CaManager;
use crate::oauth::tokens::{JWT_SVID_ALGORITHMS, check_audience, check_times};

/// Longest bearer token accepted, in bytes.
pub const MAX_BEARER_BYTES: usize = 16 * 1024;

/// Authenticates callers of the credentials endpoints.
#[derive(Debug, Clone)]
pub struct CallerAuth {
    ca: Arc<CaManager>,
    trust_domain: TrustDomain,
    audiences: Vec<String>,
}

impl CallerAuth {
    /// Accepts JWT-SVIDs for the server's SPIFFE ID and, when given, its issuer URL.
    pub fn new(ca: Arc<CaManager>, trust_domain: TrustDomain, issuer: Option<&str>) -> Self {
        let mut audiences = vec![crate::naming::server_id(&trust_domain).to_string()];
        audiences.extend(issuer.map(str::to_owned));
        Self {
            ca,
            trust_domain,
            audiences,
        }
    }

    /// The audiences a bearer JWT-SVID may name.
    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    /// The caller: the bearer token's subject when there is one (it wins over the TLS client
    /// certificate), else the client certificate's SPIFFE ID. The error says what is wrong.
    pub fn authenticate(
        &self,
        bearer: Option<&str>,
        tls_client: Option<&SpiffeId>,
        now: i64,
    ) -> Result<(SpiffeId, Via), String> {
        match (bearer, tls_client) {
            (Some(token), _) => self
                .verify_jwt_svid(token, now)
                .map(|id| (id, Via::JwtSvid)),
            (None, Some(id)) if id.trust_domain() == self.trust_domain => {
                Ok((id.clone(), Via::MutualTls))
            }
            (None, Some(id)) => Err(format!(
                "the client certificate's SPIFFE ID `{id}` is not of trust domain `{}`",
                self.trust_domain
            )),
            (None, None) => Err(
                "authenticate with a JWT-SVID (Authorization: Bearer) or an X509-SVID (mutual TLS)"
                    .to_owned(),
            ),
        }
    }

    fn verify_jwt_svid(&self, token: &str, now: i64) -> Result<SpiffeId, String> {
        if token.len() > MAX_BEARER_BYTES {
            return Err(format!(
                "the bearer token is longer than {MAX_BEARER_BYTES} bytes"
            ));
        }
        let bundle = self.ca.bundle();
        let verified = jose::verify(token, &JWT_SVID_ALGORITHMS, |kid, alg| {
            let authority = bundle
                .jwt_authorities
                .iter()
                .find(|a| Some(a.kid.as_str()) == kid)?;
            let public = sigil_keys::PublicKey::from_spki_der(&authority.public_key_der).ok()?;
            let jwk = serde_json::to_value(public.to_jwk(kid, "sig")).ok()?;
            let key = VerifyingKey::from_jwk(&jwk).ok()?;
            key.supports(alg).then_some(key)
        })
        .map_err(|e| format!("bearer JWT-SVID: {e}"))?;
        let claims = verified.claims;
        check_times(&claims, now, None).map_err(|e| format!("bearer JWT-SVID: {e}"))?;
        check_audience(&claims, &self.audiences).map_err(|e| format!("bearer JWT-SVID: {e}"))?;
        let spiffe_id = claims
            .get("sub")
            .and_then(Value::as_str)
            .and_then(|s| SpiffeId::parse(s).ok())
            .ok_or_else(|| "bearer JWT-SVID: `sub` is not a SPIFFE ID".to_owned())?;
        if spiffe_id.trust_domain() != self.trust_domain {
            return Err(format!(
                "bearer JWT-SVID: `{spiffe_id}` is not of trust domain `{}`",
                self.trust_domain
            ));
        }
        if let Some(jti) = claims.get("jti").and_then(Value::as_str)
            && self
                .ca
                .revocations()
                .list
                .is_revoked(CredentialKind::JwtSvid, jti, now)
        {
            return Err("bearer JWT-SVID has been revoked".to_owned());
        }
        Ok(spiffe_id)
    }
}
