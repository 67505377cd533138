//! `/api/v1/agents` and `/api/v1/agents/{spiffe_id}`: the attested node agents; listing and
//! showing them, banning (`POST …/ban`) and evicting (`DELETE`) one.
//!
//! A ban writes only the agent's `banned` column (never the whole record, so a concurrent
//! renewal or heartbeat cannot undo it); an eviction deletes the record. Both append a change
//! event, from which the server's agent index refuses the agent and ends its sync stream.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use sigil_api::{Agent, AgentList, AgentQuery};
use sigil_spiffe::SpiffeId;
use sigil_store::AttestedAgent;

use super::AdminState;
use super::api_error::ApiError;
use super::body::require_empty;
use super::paging::PageRequest;

/// `GET /api/v1/agents?page_size=&page_token=` → one page of agents, ordered by SPIFFE ID,
/// with the token of the next page unless it is the last.
pub(crate) async fn list(
    State(state): State<AdminState>,
    RawQuery(query): RawQuery,
) -> Result<Json<AgentList>, ApiError> {
    let query = AgentQuery::parse(query.as_deref().unwrap_or_default())?;
    let page = PageRequest::parse(&query.page)?;
    let mut agents = state
        .store
        .list_agents_page(page.after.as_deref(), page.fetch_limit())
        .await?;
    let next_page_token = page.finish(&mut agents, |agent| agent.spiffe_id.as_str());
    Ok(Json(AgentList {
        agents: agents.iter().map(to_wire).collect(),
        next_page_token,
    }))
}

/// `GET /api/v1/agents/{spiffe_id}` (percent-encoded) → the agent, 400 for a malformed ID, or
/// 404.
pub(crate) async fn show(
    State(state): State<AdminState>,
    raw: Result<Path<String>, PathRejection>,
) -> Result<Json<Agent>, ApiError> {
    let id = agent_id(raw)?;
    Ok(Json(to_wire(&stored_agent(&state, &id).await?)))
}

/// `POST /api/v1/agents/{spiffe_id}/ban` (no body) → the agent, now banned; 400 for a malformed
/// ID or a body, 404 (nothing changed) for an unknown agent. Banning a banned agent is a no-op
/// that answers the same.
pub(crate) async fn ban(
    State(state): State<AdminState>,
    raw: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Agent>, ApiError> {
    let id = agent_id(raw)?;
    require_empty(body)?;
    // Only the `banned` column is written; `NotFound` (a 404) writes nothing.
    state.store.set_agent_banned(id.as_str(), true).await?;
    if let Some(index) = &state.agents {
        index.catch_up_with(state.store.as_ref()).await;
    }
    tracing::info!(agent = %id, "agent banned");
    revoke_agent_leases(&state, &id, "banned");
    // Read after the write only to answer; evicted in between, it is gone.
    Ok(Json(to_wire(&stored_agent(&state, &id).await?)))
}

/// `DELETE /api/v1/agents/{spiffe_id}` → the agent as it was before it was evicted; 400 for a
/// malformed ID, 404 for an unknown agent.
pub(crate) async fn evict(
    State(state): State<AdminState>,
    raw: Result<Path<String>, PathRejection>,
) -> Result<Json<Agent>, ApiError> {
    let id = agent_id(raw)?;
    let agent = state.store.delete_agent(id.as_str()).await?;
    if let Some(index) = &state.agents {
        index.catch_up_with(state.store.as_ref()).await;
    }
    tracing::info!(agent = %id, "agent evicted");
    revoke_agent_leases(&state, &id, "evicted");
    Ok(Json(to_wire(&agent)))
}

/// Revokes, in the background, the database credentials the agent's workloads hold.
fn revoke_agent_leases(state: &AdminState, id: &SpiffeId, what: &str) {
    if let Some(credentials) = &state.credentials {
        credentials.revoke_in_background(
            sigil_store::LeaseFilter {
                agent_id: Some(id.to_string()),
                ..sigil_store::LeaseFilter::default()
            },
            format!("agent {id} {what}"),
        );
    }
}

/// The `{spiffe_id}` path parameter, parsed; a 400 naming `spiffe_id` when it is not a SPIFFE ID.
fn agent_id(raw: Result<Path<String>, PathRejection>) -> Result<SpiffeId, ApiError> {
    let Path(raw) = raw.map_err(|rejection| {
        ApiError::invalid(format!(
            "invalid agent SPIFFE ID: {}",
            rejection.body_text()
        ))
    })?;
    SpiffeId::parse(&raw).map_err(|err| ApiError::invalid_value("spiffe_id", &raw, err))
}

fn not_found(id: &SpiffeId) -> ApiError {
    ApiError::not_found(format!("agent `{id}` not found"))
}

/// The stored agent `id`, or 404.
async fn stored_agent(state: &AdminState, id: &SpiffeId) -> Result<AttestedAgent, ApiError> {
    state
        .store
        .get_agent(id.as_str())
        .await?
        .ok_or_else(|| not_found(id))
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
    use std::sync::Arc;
    use std::time::Duration;

    use axum::http::{Method, StatusCode};
    use serde_json::json;
    use sigil_spiffe::{Selector, SpiffeId};
    use sigil_store::{AttestedAgent, Datastore};

    use crate::admin::test_support::{Harness, state_and_clock};
    use crate::agent_index::AgentIndex;

    const A: &str = "spiffe://example.org/sigil/agent/join_token/abc";
    const B: &str = "spiffe://example.org/sigil/agent/join_token/def";

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
    async fn list_pages_cover_every_agent_exactly_once() {
        let h = Harness::new().await;
        let mut expected = Vec::new();
        for n in [4, 0, 3, 1, 2] {
            let id = format!("spiffe://example.org/sigil/agent/join_token/{n}");
            h.store.create_agent(agent(&id)).await.unwrap();
            expected.push(id);
        }
        expected.sort();
        for size in [1, 2, 5] {
            let mut ids = Vec::new();
            let mut uri = format!("/api/v1/agents?page_size={size}");
            for _ in 0..10 {
                let (status, page) = h.call(Method::GET, &uri, None).await;
                assert_eq!(status, StatusCode::OK, "{page}");
                let agents = page["agents"].as_array().unwrap();
                assert!(agents.len() <= size);
                ids.extend(
                    agents
                        .iter()
                        .map(|a| a["spiffe_id"].as_str().unwrap().to_owned()),
                );
                match page["next_page_token"].as_str() {
                    Some(token) => {
                        uri = format!("/api/v1/agents?page_size={size}&page_token={token}")
                    }
                    None => break,
                }
            }
            assert_eq!(ids, expected, "pages of {size}");
        }
        let (_, all) = h.call(Method::GET, "/api/v1/agents", None).await;
        assert_eq!(all["agents"].as_array().unwrap().len(), 5);
        assert!(all.get("next_page_token").is_none());
    }

    #[tokio::test]
    async fn list_rejects_bad_page_parameters_naming_them() {
        let h = Harness::new().await;
        let (status, _) = h
            .call(Method::GET, "/api/v1/agents?page_size=1", None)
            .await;
        assert_eq!(status, StatusCode::OK);
        for (uri, expected) in [
            ("/api/v1/agents?page_size=0", "invalid page_size `0`"),
            (
                "/api/v1/agents?page_token=%25%25",
                "invalid page_token `%%`",
            ),
            ("/api/v1/agents?owner=x", "unknown query parameter `owner`"),
        ] {
            let (status, err) = h.call(Method::GET, uri, None).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {err}");
            let message = err["error"]["message"].as_str().unwrap();
            assert!(message.starts_with(expected), "{uri}: {message}");
        }
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

    /// A harness whose store holds agents `A` and `B`.
    async fn with_two_agents() -> Harness {
        let h = Harness::new().await;
        h.store.create_agent(agent(A)).await.unwrap();
        h.store.create_agent(agent(B)).await.unwrap();
        h
    }

    /// Every agent as stored, and the change-feed position: what "nothing changed" compares.
    async fn snapshot(store: &dyn Datastore) -> (Vec<AttestedAgent>, u64) {
        (
            store.list_agents().await.unwrap(),
            store.latest_change().await.unwrap(),
        )
    }

    #[tokio::test]
    async fn ban_sets_only_the_banned_flag_and_answers_the_agent() {
        let h = with_two_agents().await;
        let (status, body) = h
            .call(Method::POST, &sigil_api::paths::agent_ban(A), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["spiffe_id"], A);
        assert_eq!(body["banned"], true);

        let stored = h.store.get_agent(A).await.unwrap().unwrap();
        let mut expected = agent(A);
        expected.banned = true;
        assert_eq!(stored, expected, "no other column changed");
        assert_eq!(body, serde_json::to_value(super::to_wire(&stored)).unwrap());
        assert!(
            !h.store.get_agent(B).await.unwrap().unwrap().banned,
            "only the named agent is banned"
        );
        // The ban is on the record the agent index follows.
        let shown = h
            .call(Method::GET, &sigil_api::paths::agent(A), None)
            .await
            .1;
        assert_eq!(shown["banned"], true);
    }

    #[tokio::test]
    async fn banning_a_banned_agent_answers_the_same_and_changes_nothing_else() {
        let h = with_two_agents().await;
        let first = h
            .call(Method::POST, &sigil_api::paths::agent_ban(A), None)
            .await;
        assert_eq!(first.0, StatusCode::OK, "{}", first.1);
        let after_first = h.store.list_agents().await.unwrap();
        let second = h
            .call(Method::POST, &sigil_api::paths::agent_ban(A), None)
            .await;
        assert_eq!(second, first);
        assert_eq!(h.store.list_agents().await.unwrap(), after_first);
    }

    #[tokio::test]
    async fn evict_deletes_the_agent_and_answers_what_it_was() {
        let h = with_two_agents().await;
        let (status, body) = h
            .call(Method::DELETE, &sigil_api::paths::agent(A), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body,
            serde_json::to_value(super::to_wire(&agent(A))).unwrap()
        );
        assert!(h.store.get_agent(A).await.unwrap().is_none(), "deleted");
        assert!(h.store.get_agent(B).await.unwrap().is_some(), "B is kept");

        let (status, err) = h
            .call(Method::DELETE, &sigil_api::paths::agent(A), None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "evicting twice: {err}");
        let (status, _) = h.call(Method::GET, &sigil_api::paths::agent(A), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn ban_and_evict_of_an_unknown_agent_are_404_and_change_nothing() {
        let h = with_two_agents().await;
        let before = snapshot(h.store.as_ref()).await;
        let unknown = "spiffe://example.org/sigil/agent/join_token/nobody";
        for (method, path) in [
            (Method::POST, sigil_api::paths::agent_ban(unknown)),
            (Method::DELETE, sigil_api::paths::agent(unknown)),
        ] {
            let (status, err) = h.call(method.clone(), &path, None).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {err}");
            assert_eq!(
                err,
                json!({"error": {"code": "not_found", "message": format!("agent `{unknown}` not found")}}),
            );
        }
        assert_eq!(snapshot(h.store.as_ref()).await, before, "nothing changed");
    }

    #[tokio::test]
    async fn ban_and_evict_of_a_malformed_id_are_400_and_change_nothing() {
        let h = with_two_agents().await;
        let before = snapshot(h.store.as_ref()).await;
        for raw in ["spiffe://Bad", "not-a-spiffe-id"] {
            for (method, path) in [
                (Method::POST, sigil_api::paths::agent_ban(raw)),
                (Method::DELETE, sigil_api::paths::agent(raw)),
            ] {
                let (status, err) = h.call(method.clone(), &path, None).await;
                assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {path}: {err}");
                assert_eq!(err["error"]["code"], "invalid_argument");
                let message = err["error"]["message"].as_str().unwrap();
                assert!(
                    message.starts_with(&format!("invalid spiffe_id `{raw}`: ")),
                    "{message}"
                );
            }
        }
        assert_eq!(snapshot(h.store.as_ref()).await, before, "nothing changed");
    }

    #[tokio::test]
    async fn ban_with_a_body_is_400_and_changes_nothing() {
        let h = with_two_agents().await;
        let before = snapshot(h.store.as_ref()).await;
        let (status, err) = h
            .call(
                Method::POST,
                &sigil_api::paths::agent_ban(A),
                Some(json!({"reason": "compromised"})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
        assert_eq!(err["error"]["message"], "this request takes no body");
        assert_eq!(snapshot(h.store.as_ref()).await, before);
    }

    /// Applies the feed to `index` every 100 ms, starting 200 ms from now (so a handler that does
    /// not wait for the index answers before it has the change).
    fn slow_follower(store: Arc<dyn Datastore>, index: Arc<AgentIndex>, mut position: u64) {
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            loop {
                let batch = store.changes_since(position, 1000).await.unwrap();
                index.apply_batch(store.as_ref(), &batch).await.unwrap();
                position = batch.last().map_or(position, |e| e.seq);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }

    #[tokio::test]
    async fn ban_and_evict_answer_once_the_agent_index_refuses_the_agent() {
        let (mut state, clock) = state_and_clock().await;
        state.store.create_agent(agent(A)).await.unwrap();
        state.store.create_agent(agent(B)).await.unwrap();
        let (index, position) = AgentIndex::load(state.store.as_ref()).await.unwrap();
        state.agents = Some(index.clone());
        let h = Harness::with_state(state, clock);
        slow_follower(h.store.clone(), index.clone(), position);
        let a = SpiffeId::parse(A).unwrap();
        let b = SpiffeId::parse(B).unwrap();
        assert!(!index.get(&a).unwrap().banned);

        let (status, body) = h
            .call(Method::POST, &sigil_api::paths::agent_ban(A), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(
            index.get(&a).unwrap().banned,
            "answered before the agent index had the ban"
        );

        let (status, body) = h
            .call(Method::DELETE, &sigil_api::paths::agent(B), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(
            index.get(&b).is_none(),
            "answered before the agent index had the eviction"
        );
    }
}
