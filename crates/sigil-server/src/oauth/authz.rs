//! `POST /authz/v1/decide`: any service asks "may this principal do this action on this resource
//! in this context?" and gets the decision of the policy set in force, the ids of the policies
//! that decided and any errors. The caller authenticates as a SPIFFE workload, with a JWT-SVID for
//! this server (`Authorization: Bearer …`, audience the issuer URL or the token endpoint) or with
//! its X509-SVID over mutual TLS. The principal is the caller itself (no `principal`), a JWT-SVID
//! the caller received (`token`: it must name the caller's SPIFFE ID as audience), or one the
//! caller describes (`principal`, as in `sigil policy decide`). A principal named by SPIFFE ID
//! alone (the caller, a token's subject) is described from the live entry index: the union of
//! the selectors and labels of the entries that issue it, their owner when they all agree, and
//! their agent when they all have the same attested one.
//!
//! Body: JSON of at most [`MAX_BODY_BYTES`] bytes,
//! `{"principal"?: …, "token"?: "…", "action": "…", "resource": {"id", "kind"}, "context"?: {…}}`.
//! Answer: `{"decision": "allow"|"deny", "allowed", "policies", "errors", "policy_hash"}`.
//! Errors: the OAuth error body (`invalid_request` 400, `invalid_client` 401).

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::entry_index::IndexedEntry;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use sigil_policy::{
    AgentRef, ContextInput, DecisionRequest, Principal as PolicyPrincipal, ResourceRef,
};
use sigil_spiffe::SpiffeId;

use super::OAuth;
use super::error::OAuthError;
use super::tokens::{Presented, Source, check_audience, check_times};
use crate::agent_index::AgentView;
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
        (None, Some(token)) => {
            let subject = received_token_subject(oauth, &token, &caller, now)?;
            registered_workload(oauth, subject)
        }
        (None, None) => registered_workload(oauth, caller.clone()),
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

/// Workload `spiffe_id` as the live entry index describes it ([`describe_workload`]).
pub(super) fn registered_workload(oauth: &OAuth, spiffe_id: SpiffeId) -> PolicyPrincipal {
    let entries = oauth.issuer.entries_with_spiffe_id(&spiffe_id);
    describe_workload(spiffe_id, &entries, |agent| oauth.issuer.agent(agent))
}

/// Workload `spiffe_id` as policy sees it, from the `entries` that issue it: the union of their
/// registration selectors and of their labels (`key=value`); their owner when they all have the
/// same, otherwise empty, so no `owner ==` policy matches an identity that several teams
/// register; and their parent as the agent when they all have the same one and `agent_of` knows
/// it as an attested, unbanned agent. With no entry, the workload is bare: its SPIFFE ID alone.
fn describe_workload(
    spiffe_id: SpiffeId,
    entries: &[Arc<IndexedEntry>],
    agent_of: impl Fn(&SpiffeId) -> Option<Arc<AgentView>>,
) -> PolicyPrincipal {
    let selectors: BTreeSet<String> = entries
        .iter()
        .flat_map(|entry| entry.selectors().iter().map(ToString::to_string))
        .collect();
    let labels: BTreeSet<String> = entries
        .iter()
        .flat_map(|entry| sigil_store::label_strings(entry.labels()))
        .collect();
    let owner = match entries.split_first() {
        Some((first, rest)) if rest.iter().all(|e| e.owner() == first.owner()) => {
            first.owner().to_owned()
        }
        _ => String::new(),
    };
    let agent = match entries.split_first() {
        Some((first, rest)) if rest.iter().all(|e| e.parent_id() == first.parent_id()) => {
            agent_of(first.parent_id())
                .filter(|agent| !agent.banned)
                .map(|agent| AgentRef {
                    spiffe_id: agent.spiffe_id.clone(),
                    attestation_type: crate::naming::agent_attestor(&agent.spiffe_id)
                        .unwrap_or_default()
                        .to_owned(),
                    node_selectors: agent.selectors.iter().map(ToString::to_string).collect(),
                })
        }
        _ => None,
    };
    PolicyPrincipal::Workload {
        spiffe_id,
        selectors: selectors.into_iter().collect(),
        owner,
        labels: labels.into_iter().collect(),
        agent,
    }
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

#[cfg(test)]
mod tests {
    use sigil_spiffe::Selector;
    use sigil_store::{Entry, NewEntry};

    use super::*;

    const AGENT: &str = "spiffe://example.org/sigil/agent/join_token/a1";

    fn id(s: &str) -> SpiffeId {
        SpiffeId::parse(s).unwrap()
    }

    fn entry(n: u32, parent: &str, owner: &str, labels: &[(&str, &str)]) -> Arc<IndexedEntry> {
        let mut spec = NewEntry::new(
            id("spiffe://example.org/web"),
            id(parent),
            vec![Selector::parse(&format!("unix:uid:{n}")).unwrap()],
            owner,
        );
        spec.labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Arc::new(IndexedEntry::from(Entry {
            id: format!("e{n}"),
            spec,
            revision: 1,
            created_at: 0,
            updated_at: 0,
        }))
    }

    fn agents(banned: bool) -> impl Fn(&SpiffeId) -> Option<Arc<AgentView>> {
        move |agent: &SpiffeId| {
            (agent.as_str() == AGENT).then(|| {
                Arc::new(AgentView {
                    spiffe_id: agent.clone(),
                    selectors: vec![Selector::parse("join_token:a1").unwrap()],
                    serial: "01".to_owned(),
                    new_serial: None,
                    expires_at: 0,
                    banned,
                })
            })
        }
    }

    fn parts(principal: PolicyPrincipal) -> (Vec<String>, String, Vec<String>, Option<AgentRef>) {
        match principal {
            PolicyPrincipal::Workload {
                selectors,
                owner,
                labels,
                agent,
                ..
            } => (selectors, owner, labels, agent),
            other => panic!("a workload, not {other:?}"),
        }
    }

    #[test]
    fn entries_that_agree_describe_the_workload_fully() {
        let entries = [
            entry(1, AGENT, "team-web", &[("tier", "web")]),
            entry(2, AGENT, "team-web", &[("tier", "web"), ("zone", "a=b")]),
        ];
        let (selectors, owner, labels, agent) = parts(describe_workload(
            id("spiffe://example.org/web"),
            &entries,
            agents(false),
        ));
        assert_eq!(selectors, ["unix:uid:1", "unix:uid:2"]);
        assert_eq!(owner, "team-web");
        assert_eq!(labels, ["tier=web", "zone=a=b"]);
        let agent = agent.unwrap();
        assert_eq!(agent.spiffe_id.as_str(), AGENT);
        assert_eq!(agent.attestation_type, "join_token");
        assert_eq!(agent.node_selectors, ["join_token:a1"]);
    }

    #[test]
    fn disagreeing_entries_leave_owner_and_agent_empty() {
        let other_parent = "spiffe://example.org/sigil/agent/join_token/a2";
        let entries = [
            entry(1, AGENT, "team-web", &[("tier", "web")]),
            entry(2, other_parent, "team-other", &[]),
        ];
        let (selectors, owner, labels, agent) = parts(describe_workload(
            id("spiffe://example.org/web"),
            &entries,
            agents(false),
        ));
        assert_eq!(selectors.len(), 2);
        assert_eq!(owner, "", "owners differ");
        assert_eq!(labels, ["tier=web"], "labels are a union");
        assert_eq!(agent, None, "parents differ");
    }

    #[test]
    fn the_agent_is_named_only_when_attested_and_not_banned() {
        let entries = [entry(1, AGENT, "team-web", &[])];
        let described = |agents| parts(describe_workload(id(AGENT), &entries, agents)).3;
        assert!(described(agents(false)).is_some());
        assert_eq!(described(agents(true)), None, "banned");
        let nested = [entry(1, "spiffe://example.org/parent-workload", "t", &[])];
        let (_, _, _, agent) = parts(describe_workload(id(AGENT), &nested, agents(false)));
        assert_eq!(agent, None, "a parent that is no agent");
    }

    #[test]
    fn an_unregistered_identity_stays_bare() {
        let (selectors, owner, labels, agent) = parts(describe_workload(
            id("spiffe://example.org/x"),
            &[],
            agents(false),
        ));
        assert!(selectors.is_empty() && owner.is_empty() && labels.is_empty());
        assert_eq!(agent, None);
    }
}
