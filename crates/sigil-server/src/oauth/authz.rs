//! `POST /authz/v1/decide`: any service asks "may this principal do this action on this resource
//! in this context?" and gets the decision of the policy set in force, the ids of the policies
//! that decided and any errors. The caller authenticates as a SPIFFE workload, with a JWT-SVID for
//! this server (`Authorization: Bearer …`, audience the issuer URL or the token endpoint) or with
//! its X509-SVID over mutual TLS. The principal is the caller itself (no `principal`), a JWT-SVID
//! the caller received (`token`: it must name the caller's SPIFFE ID as audience), or one the
//! caller describes (`principal`, as in `sigil policy decide`).
//!
//! Body: JSON of at most [`MAX_BODY_BYTES`] bytes,
//! `{"principal"?: …, "token"?: "…", "action": "…", "resource": {"id", "kind"}, "context"?: {…}}`.
//! Answer: `{"decision": "allow"|"deny", "allowed", "policies", "errors", "policy_hash"}`.
//! Errors: the OAuth error body (`invalid_request` 400, `invalid_client` 401).

use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use sigil_policy::{ContextInput, DecisionRequest, Principal as PolicyPrincipal, ResourceRef};
use sigil_spiffe::SpiffeId;

use super::OAuth;
use super::error::OAuthError;
use super::tokens::{Presented, Source, check_audience, check_times};
use crate::public::PeerInfo;

/// Largest decision request, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideBody {
    principal: Option<PolicyPrincipal>,
    token: Option<String>,
    action: String,
    resource: ResourceRef,
    #[serde(default)]
    context: Option<Value>,
}

pub(crate) async fn decide(State(oauth): State<Arc<OAuth>>, request: Request) -> Response {
    match decision(&oauth, request).await {
        Ok(body) => ([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn decision(oauth: &OAuth, request: Request) -> Result<Value, OAuthError> {
    let now = oauth.clock.unix_secs();
    let tls_client = request
        .extensions()
        .get::<ConnectInfo<PeerInfo>>()
        .and_then(|info| info.0.client_spiffe_id.clone());
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let caller = match (bearer, tls_client) {
        (Some(token), _) => {
            let principal = oauth
                .verify_presented(&token, Presented::ClientAssertion, now)
                .await
                .map_err(|e| OAuthError::invalid_client(format!("bearer JWT-SVID: {e}")))?;
            if !matches!(principal.source, Source::OwnDomain | Source::Federated(_)) {
                return Err(OAuthError::invalid_client(
                    "the bearer token must be a JWT-SVID",
                ));
            }
            principal.spiffe_id
        }
        (None, Some(svid)) => svid,
        (None, None) => {
            return Err(OAuthError::invalid_client(
                "authenticate with a JWT-SVID (Authorization: Bearer) or mutual TLS",
            ));
        }
    };
    let body = axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            OAuthError::invalid_request(format!("the body is larger than {MAX_BODY_BYTES} bytes"))
        })?;
    let body: DecideBody = serde_json::from_slice(&body)
        .map_err(|e| OAuthError::invalid_request(format!("invalid decision request: {e}")))?;
    let principal = match (body.principal, body.token) {
        (Some(_), Some(_)) => {
            return Err(OAuthError::invalid_request(
                "give `principal` or `token`, not both",
            ));
        }
        (Some(principal), None) => principal,
        (None, Some(token)) => PolicyPrincipal::Workload {
            spiffe_id: received_token_subject(oauth, &token, &caller, now)?,
            selectors: Vec::new(),
            owner: String::new(),
            labels: Vec::new(),
            agent: None,
        },
        (None, None) => PolicyPrincipal::Workload {
            spiffe_id: caller.clone(),
            selectors: Vec::new(),
            owner: String::new(),
            labels: Vec::new(),
            agent: None,
        },
    };
    let context = match &body.context {
        Some(value) => ContextInput::from_json(value)
            .map_err(|e| OAuthError::invalid_request(format!("context: {e}")))?,
        None => ContextInput::default(),
    };
    let request = DecisionRequest {
        principal,
        action: body.action,
        resource: body.resource,
        context,
    };
    request
        .check_bounds()
        .map_err(|e| OAuthError::invalid_request(e.to_string()))?;
    let policies = oauth.issuer.policies();
    let decision = policies.decide(&request, now);
    oauth
        .issuer
        .metrics()
        .policy_decision(&request.action, decision.allowed);
    tracing::debug!(caller = %caller, action = %request.action, allowed = decision.allowed, "policy decision");
    Ok(json!({
        "decision": if decision.allowed { "allow" } else { "deny" },
        "allowed": decision.allowed,
        "policies": decision.policies,
        "errors": decision.errors,
        "policy_hash": decision.policy_hash,
    }))
}

/// The subject of a JWT-SVID `token` that `caller` received: signed by this or an accepted
/// federated trust domain, unexpired, not revoked, and addressed to `caller`.
fn received_token_subject(
    oauth: &OAuth,
    token: &str,
    caller: &SpiffeId,
    now: i64,
) -> Result<SpiffeId, OAuthError> {
    let refused = |e: &dyn std::fmt::Display| OAuthError::invalid_request(format!("token: {e}"));
    let (_header, claims) = oauth.own_token(token).ok_or_else(|| {
        refused(&"not a JWT-SVID of this trust domain, or its signature does not verify")
    })?;
    check_times(&claims, now, None).map_err(|e| refused(&e))?;
    check_audience(&claims, &[caller.to_string()]).map_err(|e| refused(&e))?;
    if let Some(jti) = claims.get("jti").and_then(Value::as_str)
        && oauth
            .ca
            .revocations()
            .list
            .is_revoked(sigil_store::CredentialKind::JwtSvid, jti, now)
    {
        return Err(refused(&"it has been revoked"));
    }
    claims
        .get("sub")
        .and_then(Value::as_str)
        .and_then(|sub| SpiffeId::parse(sub).ok())
        .ok_or_else(|| refused(&"its subject is not a SPIFFE ID"))
}
