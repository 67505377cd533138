//! Client authentication without secrets (draft-ietf-oauth-spiffe-client-auth, RFC 8705,
//! RFC 7523): the client is a SPIFFE ID, proven by
//! - a JWT-SVID as `client_assertion` with `client_assertion_type` `…:jwt-spiffe`,
//! - mutual TLS with an X509-SVID of this trust domain (verified by the listener's TLS) and
//!   `client_id` naming the same SPIFFE ID, or
//! - an RFC 7523 `…:jwt-bearer` assertion of a configured external issuer, whose claims map to
//!   the SPIFFE ID as a subject token's would.
//!
//! Assertions must name this server as their audience. RFC 7523 assertions are used once: their
//! `jti` (required) is kept until they expire ([`super::replay`]). JWT-SVID assertions are not:
//! SPIFFE agents (Sigil's, SPIRE's) cache a JWT-SVID per audience and hand the same token to the
//! workload until it nears expiry, and the SPIFFE client-auth draft makes `jti` optional for that
//! reason, so a one-time rule would refuse every second request of a correct client. Their short
//! lifetime, their audience (this server only) and revocation by `jti` bound a stolen one instead.
//! A `client_id` sent without any credential is refused rather than believed.

use sigil_spiffe::SpiffeId;

use super::error::OAuthError;
use super::form::Form;
use super::replay::ReplayRefusal;
use super::tokens::Presented;
use super::{ASSERTION_JWT_BEARER, ASSERTION_JWT_SPIFFE, OAuth};

/// How the client proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    JwtSvid,
    MutualTls,
    JwtBearer,
}

/// An authenticated client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub id: SpiffeId,
    pub method: Method,
}

impl OAuth {
    /// Records the first use of RFC 7523 assertion `principal`, or refuses a replay.
    fn first_use(&self, principal: &super::tokens::Principal, now: i64) -> Result<(), OAuthError> {
        let jti = principal
            .claims
            .get("jti")
            .and_then(serde_json::Value::as_str)
            .filter(|jti| !jti.is_empty() && jti.len() <= 256)
            .ok_or_else(|| {
                OAuthError::invalid_client(
                    "client assertion: a `jti` is required so that a replay can be refused",
                )
            })?;
        // Keyed by the assertion's issuer too: jti values are unique per issuer only.
        let key = format!("{:?}\u{0}{jti}", principal.source);
        match self.replay.first_use(&key, principal.expires_at, now) {
            Ok(()) => Ok(()),
            Err(ReplayRefusal::Replayed) => Err(OAuthError::invalid_client(
                "client assertion: it was used before (an RFC 7523 assertion is good for one request)",
            )),
            Err(ReplayRefusal::Full) => Err(OAuthError::server(
                "cannot take more client assertions now",
                &"the replay cache is full",
            )),
        }
    }

    /// The client of a request with `form`, over a connection whose verified client certificate
    /// names `tls_client` (if any), at `now`: `None` when the request carries no client
    /// authentication, `invalid_client` when it carries one that fails.
    pub(crate) async fn authenticate_client(
        &self,
        form: &Form,
        tls_client: Option<&SpiffeId>,
        now: i64,
    ) -> Result<Option<Client>, OAuthError> {
        let client_id = form.get("client_id");
        match (
            form.get("client_assertion_type"),
            form.get("client_assertion"),
        ) {
            (Some(kind), Some(assertion)) => {
                let method = match kind {
                    ASSERTION_JWT_SPIFFE => Method::JwtSvid,
                    ASSERTION_JWT_BEARER => Method::JwtBearer,
                    other => {
                        return Err(OAuthError::invalid_client(format!(
                            "unsupported client_assertion_type `{}`",
                            other.chars().take(100).collect::<String>()
                        )));
                    }
                };
                let principal = self
                    .verify_presented(assertion, Presented::ClientAssertion, now)
                    .await
                    .map_err(|e| OAuthError::invalid_client(format!("client assertion: {e}")))?;
                let is_svid = matches!(
                    principal.source,
                    super::tokens::Source::OwnDomain | super::tokens::Source::Federated(_)
                );
                if (method == Method::JwtSvid) != is_svid {
                    return Err(OAuthError::invalid_client(if is_svid {
                        "client assertion: a JWT-SVID is sent with client_assertion_type jwt-spiffe"
                    } else {
                        "client assertion: a jwt-spiffe assertion must be a JWT-SVID"
                    }));
                }
                if method == Method::JwtBearer {
                    self.first_use(&principal, now)?;
                }
                if let Some(claimed) = client_id
                    && claimed != principal.spiffe_id.as_str()
                {
                    return Err(OAuthError::invalid_client(format!(
                        "client_id `{}` is not the client assertion's subject `{}`",
                        claimed.chars().take(200).collect::<String>(),
                        principal.spiffe_id
                    )));
                }
                Ok(Some(Client {
                    id: principal.spiffe_id,
                    method,
                }))
            }
            (Some(_), None) => Err(OAuthError::invalid_client(
                "client_assertion_type is given without client_assertion",
            )),
            (None, Some(_)) => Err(OAuthError::invalid_client(
                "client_assertion is given without client_assertion_type",
            )),
            (None, None) => match (tls_client, client_id) {
                (Some(svid), Some(claimed)) if claimed == svid.as_str() => Ok(Some(Client {
                    id: svid.clone(),
                    method: Method::MutualTls,
                })),
                (Some(svid), Some(claimed)) => Err(OAuthError::invalid_client(format!(
                    "client_id `{}` is not the SPIFFE ID of the client certificate `{svid}`",
                    claimed.chars().take(200).collect::<String>()
                ))),
                (Some(_), None) => Err(OAuthError::invalid_client(
                    "client_id is required with mutual TLS client authentication",
                )),
                (None, Some(_)) => Err(OAuthError::invalid_client(
                    "client_id is given without client authentication (a JWT-SVID client assertion or mutual TLS)",
                )),
                (None, None) => Ok(None),
            },
        }
    }
}
