//! `/api/v1/agents` and `/api/v1/agents/{spiffe_id}`: the attested node agents.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use sigil_api::{Agent, AgentList};
use sigil_spiffe::SpiffeId;
use sigil_store::AttestedAgent;

use super::AdminState;
use super::api_error::ApiError;

/// `GET /api/v1/agents` → every agent, ordered by SPIFFE ID.
pub(crate) async fn list(State(state): State<AdminState>) -> Result<Json<AgentList>, ApiError> {
    let agents = state.store.list_agents().await?;
    Ok(Json(AgentList {
        agents: agents.iter().map(to_wire).collect(),
    }))
}

/// `GET /api/v1/agents/{spiffe_id}` (percent-encoded) → the agent, 400 for a malformed ID, or
/// 404.
pub(crate) async fn show(
    State(state): State<AdminState>,
    raw: Result<Path<String>, PathRejection>,
) -> Result<Json<Agent>, ApiError> {
    let Path(raw) = raw.map_err(|rejection| {
        ApiError::invalid(format!(
            "invalid agent SPIFFE ID: {}",
            rejection.body_text()
        ))
    })?;
    let id =
        SpiffeId::parse(&raw).map_err(|err| ApiError::invalid_value("spiffe_id", &raw, err))?;
    let agent = state
        .store
        .get_agent(id.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("agent `{id}` not found")))?;
    Ok(Json(to_wire(&agent)))
}

/// The agent as the API answers it.
pub(crate) fn to_wire(agent: &AttestedAgent) -> Agent {
    Agent {
        spiffe_id: agent.spiffe_id.to_string(),
        attestation_type: agent.attestation_type.clone(),
        selectors: agent.selectors.iter().map(ToString::to_string).collect(),
        serial: agent.serial.clone(),
        expires_at: agent.expires_at,
        banned: agent.banned,
        can_reattest: agent.can_reattest,
        created_at: agent.created_at,
        last_seen: agent.last_seen,
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{Method, StatusCode};
    use serde_json::json;
    use sigil_spiffe::{Selector, SpiffeId};
    use sigil_store::AttestedAgent;

    use crate::admin::test_support::Harness;

    fn agent(id: &str) -> AttestedAgent {
        AttestedAgent {
            spiffe_id: SpiffeId::parse(id).unwrap(),
            attestation_type: "join_token".into(),
            selectors: vec![Selector::parse("join_token:id:abc").unwrap()],
            serial: "0a".into(),
            new_serial: None,
            expires_at: 100,
            banned: false,
            can_reattest: false,
            created_at: 10,
            last_seen: 20,
        }
    }

    #[tokio::test]
    async fn lists_and_shows_agents_by_percent_encoded_id() {
        let h = Harness::new().await;
        let id = "spiffe://example.org/sigil/agent/join_token/abc";
        h.store.create_agent(agent(id)).await.unwrap();
        h.store
            .create_agent(agent("spiffe://example.org/sigil/agent/join_token/def"))
            .await
            .unwrap();

        let (status, list) = h.call(Method::GET, "/api/v1/agents", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(list["agents"].as_array().unwrap().len(), 2);

        let (status, shown) = h
            .call(Method::GET, &sigil_api::paths::agent(id), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{shown}");
        assert_eq!(
            shown,
            json!({
                "spiffe_id": id,
                "attestation_type": "join_token",
                "selectors": ["join_token:id:abc"],
                "serial": "0a",
                "expires_at": 100,
                "banned": false,
                "can_reattest": false,
                "created_at": 10,
                "last_seen": 20,
            })
        );
    }

    #[tokio::test]
    async fn unknown_agent_is_404_and_malformed_id_is_400() {
        let h = Harness::new().await;
        let (status, err) = h
            .call(
                Method::GET,
                &sigil_api::paths::agent("spiffe://example.org/sigil/agent/x"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            err["error"]["message"],
            "agent `spiffe://example.org/sigil/agent/x` not found"
        );
        let (status, err) = h
            .call(Method::GET, &sigil_api::paths::agent("spiffe://Bad"), None)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            err["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("invalid spiffe_id `spiffe://Bad`")
        );
    }
}
