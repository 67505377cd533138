//! `POST /oauth2/token` with the token exchange grant (RFC 8693 §2): the subject token (and an
//! actor token, for delegation) is verified, the requested scopes and targets checked against
//! what its principal may have, and an access token (RFC 9068) or a JWT-SVID is issued for it
//! through the issuance choke point. Errors follow RFC 8693 §2.2.2: a subject or actor token that
//! is invalid or unacceptable is `invalid_request`, an unacceptable target `invalid_target`, a
//! scope beyond what the principal may have `invalid_scope`.

use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sigil_ca::ExchangedClaims;

use super::error::{ErrorCode, OAuthError};
use super::form::Form;
use super::tokens::{Presented, Principal, Source};
use super::{
    GRANT_TOKEN_EXCHANGE, MAX_BODY_BYTES, OAuth, TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_ID_TOKEN,
    TOKEN_TYPE_JWT,
};
use crate::public::PeerInfo;

/// Most audiences and resources in one request.
pub const MAX_TARGETS: usize = 8;
/// Longest audience or resource, in bytes.
pub const MAX_TARGET_BYTES: usize = 1024;
/// Most scopes in one request.
pub const MAX_SCOPES: usize = 32;
/// Longest scope token, in bytes.
pub const MAX_SCOPE_BYTES: usize = 128;
/// Largest subject or actor token, in bytes.
pub const MAX_TOKEN_BYTES: usize = sigil_keys::jws::MAX_JWS_BYTES;

/// The handler.
pub(crate) async fn token(State(oauth): State<Arc<OAuth>>, request: Request) -> Response {
    match exchange(&oauth, request).await {
        Ok(body) => (
            [
                (header::CACHE_CONTROL, "no-store"),
                (header::PRAGMA, "no-cache"),
            ],
            axum::Json(body),
        )
            .into_response(),
        Err(e) => {
            let audit = oauth.issuer.audit();
            let outcome = match e.code {
                ErrorCode::UnauthorizedClient | ErrorCode::InvalidClient => {
                    sigil_store::Outcome::Denied
                }
                _ => sigil_store::Outcome::Failure,
            };
            audit.record_detached(
                audit
                    .event("anonymous", "token.exchange", "", outcome)
                    .detail("error", e.code.as_str())
                    .detail("error_description", e.description.clone()),
            );
            e.into_response()
        }
    }
}

/// What an OAuth request carries: its form, the SPIFFE ID of its verified client certificate
/// and the peer's address, when known.
pub(crate) struct OAuthRequest {
    pub form: Form,
    pub tls_client: Option<sigil_spiffe::SpiffeId>,
    pub remote: Option<std::net::SocketAddr>,
}

/// The form of `request`, the SPIFFE ID of its verified client certificate and its peer.
pub(crate) async fn read_request(request: Request) -> Result<OAuthRequest, OAuthError> {
    let peer = request
        .extensions()
        .get::<ConnectInfo<PeerInfo>>()
        .map(|info| info.0.clone());
    let tls_client = peer.as_ref().and_then(|p| p.client_spiffe_id.clone());
    let remote = peer.map(|p| p.remote);
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            OAuthError::invalid_request(format!(
                "the body is larger than {MAX_BODY_BYTES} bytes or could not be read"
            ))
        })?;
    Ok(OAuthRequest {
        form: Form::parse(&parts.headers, &body)?,
        tls_client,
        remote,
    })
}

async fn exchange(oauth: &OAuth, request: Request) -> Result<Value, OAuthError> {
    let OAuthRequest {
        form,
        tls_client,
        remote,
    } = read_request(request).await?;
    let grant_type = form.require("grant_type")?;
    if grant_type != GRANT_TOKEN_EXCHANGE {
        return Err(OAuthError::new(
            ErrorCode::UnsupportedGrantType,
            format!(
                "grant_type `{}` is not supported (only {GRANT_TOKEN_EXCHANGE})",
                grant_type.chars().take(100).collect::<String>()
            ),
        ));
    }
    let now = oauth.clock.unix_secs();
    let client = oauth
        .authenticate_client(&form, tls_client.as_ref(), now)
        .await?;

    let subject = presented_token(oauth, &form, "subject_token", now)
        .await?
        .ok_or_else(|| OAuthError::invalid_request("`subject_token` is required"))?;
    let actor = presented_token(oauth, &form, "actor_token", now).await?;

    let requested = form.get("requested_token_type");
    let access_token = match requested {
        None | Some(TOKEN_TYPE_ACCESS_TOKEN) => true,
        Some(TOKEN_TYPE_JWT) => false,
        Some(other) => {
            return Err(OAuthError::invalid_request(format!(
                "requested_token_type `{}` is not supported (supported: {TOKEN_TYPE_ACCESS_TOKEN}, {TOKEN_TYPE_JWT})",
                other.chars().take(100).collect::<String>()
            )));
        }
    };
    if !access_token && !subject.spiffe_id.is_member_of(&oauth.trust_domain) {
        return Err(OAuthError::invalid_request(format!(
            "a JWT-SVID names an identity of trust domain `{}`; `{}` is not one (map it with a SPIFFE ID template)",
            oauth.trust_domain, subject.spiffe_id
        )));
    }
    let targets = targets(oauth, &form)?;
    let scope = granted_scope(&form, &subject)?;
    let act = delegation(oauth, &subject, actor.as_ref())?;

    authorize_by_policy(
        oauth,
        &subject,
        &targets,
        scope.as_deref(),
        act.as_ref(),
        form.get("intent"),
        remote,
        now,
    )?;

    let cap = if access_token {
        oauth.config.access_token_ttl
    } else {
        oauth.config.jwt_svid_ttl
    };
    // Never beyond the tokens it was exchanged for.
    let presented_left = actor
        .iter()
        .map(|a| a.expires_at)
        .chain([subject.expires_at])
        .min()
        .unwrap_or(now)
        .saturating_sub(now);
    let ttl = cap.min(u64::try_from(presented_left).unwrap_or(0)).max(1);
    let client_id = client
        .as_ref()
        .map(|c| c.id.to_string())
        .unwrap_or_else(|| subject.spiffe_id.to_string());
    let issued_to = client
        .as_ref()
        .map(|c| c.id.clone())
        .unwrap_or_else(|| subject.spiffe_id.clone());
    let minted = oauth
        .issuer
        .exchanged_token(
            &ExchangedClaims {
                access_token,
                sub: &subject.spiffe_id,
                audience: &targets,
                ttl_secs: ttl,
                scope: scope.as_deref(),
                client_id: Some(&client_id),
                act: act.as_ref(),
            },
            &issued_to,
        )
        .await
        .map_err(|e| match e {
            crate::issuer::Refusal::InvalidAudience(reason) => {
                OAuthError::new(ErrorCode::InvalidTarget, reason)
            }
            other => OAuthError::server("cannot issue the token", &other),
        })?;
    tracing::info!(
        sub = %subject.spiffe_id,
        source = ?subject.source,
        client = %client_id,
        actor = ?actor.as_ref().map(|a| a.spiffe_id.to_string()),
        jti = %minted.jti,
        "token exchanged"
    );
    let mut body = json!({
        "access_token": minted.token,
        "issued_token_type": if access_token { TOKEN_TYPE_ACCESS_TOKEN } else { TOKEN_TYPE_JWT },
        "token_type": if access_token { "Bearer" } else { "N_A" },
        "expires_in": minted.expires_at.saturating_sub(minted.issued_at),
    });
    if let (Some(scope), Some(map)) = (scope, body.as_object_mut()) {
        map.insert("scope".to_owned(), Value::String(scope));
    }
    Ok(body)
}

/// The policy decision on exchanging `subject`'s token for `targets`: one `Exchange` decision per
/// target (resource kind `audience`), each of which must allow. The context carries the targets,
/// the scopes, the actor chain (the new actor first), the subject token's string claims, the
/// caller's address and, when the client sends Sigil's `intent` parameter, its declared intent.
/// A denial is `invalid_request`, as RFC 8693 §2.2.2 asks for a token unacceptable by policy.
#[expect(
    clippy::too_many_arguments,
    reason = "the facts of one exchange, each from a different step"
)]
fn authorize_by_policy(
    oauth: &OAuth,
    subject: &Principal,
    targets: &[String],
    scope: Option<&str>,
    act: Option<&Value>,
    intent: Option<&str>,
    remote: Option<std::net::SocketAddr>,
    now: i64,
) -> Result<(), OAuthError> {
    use sigil_policy::{ContextInput, DecisionRequest, Principal as PolicyPrincipal, ResourceRef};
    let principal = match &subject.source {
        Source::External(issuer) => PolicyPrincipal::External {
            issuer: issuer.clone(),
            subject: subject
                .claims
                .get("sub")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            spiffe_id: Some(subject.spiffe_id.clone()),
            attributes: subject.attributes.clone(),
        },
        // A workload of this trust domain is described by its registration entries (selectors,
        // owner, labels), as at issuance; a federated one has no entry here.
        Source::OwnDomain => super::authz::registered_workload(oauth, subject.spiffe_id.clone()),
        Source::Federated(_) => PolicyPrincipal::Workload {
            spiffe_id: subject.spiffe_id.clone(),
            selectors: Vec::new(),
            owner: String::new(),
            labels: Vec::new(),
            agent: None,
        },
    };
    let mut actors = Vec::new();
    let mut current = act;
    while let Some(link) = current {
        if let Some(sub) = link.get("sub").and_then(Value::as_str) {
            actors.push(sub.to_owned());
        }
        current = link.get("act");
    }
    let claims = subject
        .claims
        .iter()
        .filter_map(|(name, value)| Some((name.clone(), value.as_str()?.to_owned())))
        .collect();
    let context = ContextInput {
        audience: targets.to_vec(),
        scopes: scope
            .map(|s| s.split(' ').map(str::to_owned).collect())
            .unwrap_or_default(),
        source_address: remote.map(|r| r.ip().to_string()),
        intent: intent.map(str::to_owned),
        actors,
        claims,
    };
    let policies = oauth.issuer.policies();
    for target in targets {
        let request = DecisionRequest {
            principal: principal.clone(),
            action: "Exchange".to_owned(),
            resource: ResourceRef {
                id: target.clone(),
                kind: "audience".to_owned(),
            },
            context: context.clone(),
        };
        let decision = policies.decide(&request, now);
        oauth
            .issuer
            .metrics()
            .policy_decision("Exchange", decision.allowed);
        if !decision.allowed {
            let refusal = crate::issuer::Refusal::PolicyDenied {
                policies: decision.policies,
                errors: decision.errors,
            };
            return Err(OAuthError::invalid_request(format!(
                "exchange for `{}`: {refusal}",
                target.chars().take(200).collect::<String>()
            )));
        }
    }
    Ok(())
}

/// The token in parameter `name` (`subject_token` or `actor_token`) with its `…_type`, verified;
/// `None` when absent.
async fn presented_token(
    oauth: &OAuth,
    form: &Form,
    name: &str,
    now: i64,
) -> Result<Option<Principal>, OAuthError> {
    let type_name = format!("{name}_type");
    let (token, token_type) = match (form.get(name), form.get(&type_name)) {
        (None, None) => return Ok(None),
        (Some(_), None) => {
            return Err(OAuthError::invalid_request(format!(
                "`{type_name}` is required with `{name}`"
            )));
        }
        (None, Some(_)) => {
            return Err(OAuthError::invalid_request(format!(
                "`{type_name}` is given without `{name}`"
            )));
        }
        (Some(token), Some(token_type)) => (token, token_type),
    };
    if ![TOKEN_TYPE_JWT, TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_ID_TOKEN].contains(&token_type) {
        return Err(OAuthError::invalid_request(format!(
            "{type_name} `{}` is not supported (supported: {TOKEN_TYPE_JWT}, {TOKEN_TYPE_ACCESS_TOKEN}, {TOKEN_TYPE_ID_TOKEN})",
            token_type.chars().take(100).collect::<String>()
        )));
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(OAuthError::invalid_request(format!(
            "`{name}` is larger than {MAX_TOKEN_BYTES} bytes"
        )));
    }
    oauth
        .verify_presented(token, Presented::Subject, now)
        .await
        .map(Some)
        .map_err(|e| OAuthError::invalid_request(format!("{name}: {e}")))
}

/// The audiences and resources asked for: at least one, each acceptable.
fn targets(oauth: &OAuth, form: &Form) -> Result<Vec<String>, OAuthError> {
    let mut targets: Vec<String> = Vec::new();
    for resource in form.all("resource") {
        // RFC 8707 §2: an absolute URI without a fragment.
        if !resource.contains("://") || resource.contains('#') {
            return Err(OAuthError::new(
                ErrorCode::InvalidTarget,
                format!(
                    "resource `{}` is not an absolute URI without a fragment",
                    resource.chars().take(200).collect::<String>()
                ),
            ));
        }
    }
    for target in form.all("audience").chain(form.all("resource")) {
        if target.len() > MAX_TARGET_BYTES {
            return Err(OAuthError::invalid_request(format!(
                "an audience or resource is longer than {MAX_TARGET_BYTES} bytes"
            )));
        }
        if let Some(allowed) = &oauth.config.audiences
            && !allowed.iter().any(|a| a == target)
        {
            return Err(OAuthError::new(
                ErrorCode::InvalidTarget,
                format!(
                    "tokens are not issued for `{}`",
                    target.chars().take(200).collect::<String>()
                ),
            ));
        }
        if !targets.iter().any(|t| t == target) {
            targets.push(target.to_owned());
        }
    }
    if targets.is_empty() {
        return Err(OAuthError::invalid_request(
            "name the service the token is for with `audience` or `resource`",
        ));
    }
    if targets.len() > MAX_TARGETS {
        return Err(OAuthError::invalid_request(format!(
            "more than {MAX_TARGETS} audiences and resources"
        )));
    }
    Ok(targets)
}

/// The `scope` asked for, if every scope in it may be granted to `subject`.
fn granted_scope(form: &Form, subject: &Principal) -> Result<Option<String>, OAuthError> {
    let Some(scope) = form.get("scope") else {
        return Ok(None);
    };
    let mut granted: Vec<&str> = Vec::new();
    for item in scope.split(' ').filter(|s| !s.is_empty()) {
        // RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
        let well_formed = item.len() <= MAX_SCOPE_BYTES
            && item
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
        if !well_formed {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                "a scope holds characters RFC 6749 does not allow, or is too long",
            ));
        }
        if !subject.allowed_scopes.iter().any(|s| s == item) {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                format!(
                    "scope `{item}` may not be granted to `{}`",
                    subject.spiffe_id
                ),
            ));
        }
        if !granted.contains(&item) {
            granted.push(item);
        }
    }
    if granted.len() > MAX_SCOPES {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            format!("more than {MAX_SCOPES} scopes"),
        ));
    }
    Ok((!granted.is_empty()).then(|| granted.join(" ")))
}

/// The `act` claim of the issued token: the actor, nesting the subject token's own `act` (RFC
/// 8693 §4.1), within the depth limit; the subject token's `act` alone when there is no actor.
/// A `may_act` claim in the subject token must name the actor (§4.4).
fn delegation(
    oauth: &OAuth,
    subject: &Principal,
    actor: Option<&Principal>,
) -> Result<Option<Value>, OAuthError> {
    let earlier = subject.claims.get("act").cloned();
    let depth_of_earlier = match &earlier {
        Some(act) => act_depth(act, oauth.config.max_delegation_depth + 1).ok_or_else(|| {
            OAuthError::invalid_request("subject_token: its `act` claim is not a chain of actors")
        })?,
        None => 0,
    };
    let Some(actor) = actor else {
        return Ok(earlier);
    };
    if let Some(may_act) = subject.claims.get("may_act") {
        let allowed = may_act
            .get("sub")
            .and_then(Value::as_str)
            .is_some_and(|sub| sub == actor.spiffe_id.as_str());
        if !allowed {
            return Err(OAuthError::invalid_request(format!(
                "actor_token: `{}` is not allowed to act for the subject by its `may_act` claim",
                actor.spiffe_id
            )));
        }
    }
    if depth_of_earlier + 1 > oauth.config.max_delegation_depth {
        return Err(OAuthError::invalid_request(format!(
            "the delegation chain would hold more actors than the limit of {}",
            oauth.config.max_delegation_depth
        )));
    }
    let mut act = serde_json::Map::new();
    act.insert("sub".to_owned(), Value::String(actor.spiffe_id.to_string()));
    if let Source::External(iss) = &actor.source {
        act.insert("iss".to_owned(), Value::String(iss.clone()));
    }
    if let Some(earlier) = earlier {
        act.insert("act".to_owned(), earlier);
    }
    Ok(Some(Value::Object(act)))
}

/// How many actors `act` nests (each an object with a string `sub`), or `None` when it is not
/// such a chain or is deeper than `limit`.
fn act_depth(act: &Value, limit: usize) -> Option<usize> {
    let mut depth = 0;
    let mut current = act;
    loop {
        current.get("sub")?.as_str()?;
        depth += 1;
        if depth > limit {
            return None;
        }
        match current.get("act") {
            None => return Some(depth),
            Some(next) => current = next,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn act_depth_counts_nested_actors_and_refuses_malformed_chains() {
        let chain = json!({"sub": "a", "act": {"sub": "b", "act": {"sub": "c"}}});
        assert_eq!(act_depth(&chain, 5), Some(3));
        assert_eq!(act_depth(&chain, 2), None);
        assert_eq!(act_depth(&json!({"act": {"sub": "b"}}), 5), None);
        assert_eq!(act_depth(&json!("a"), 5), None);
    }
}
