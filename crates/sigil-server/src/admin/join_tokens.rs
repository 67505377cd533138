//! `POST /api/v1/join-tokens`: creates a one-time join token. The plaintext token is in the
//! answer only; the datastore keeps its SHA-256 and nothing logs it.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use sigil_api::join_tokens::{DEFAULT_JOIN_TOKEN_TTL_SECS, MAX_JOIN_TOKEN_TTL_SECS};
use sigil_api::{CreateJoinTokenRequest, JoinTokenCreated, TtlValue};

use super::AdminState;
use super::api_error::ApiError;
use super::body::decode_json;
use super::entry_fields::parse_wire_ttl;
use crate::join_token::{self, JoinTokenError};

/// `POST /api/v1/join-tokens` → 201 with the token, its id, agent ID and expiry.
pub(crate) async fn create(
    State(state): State<AdminState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<JoinTokenCreated>), ApiError> {
    let req: CreateJoinTokenRequest = decode_json(body, Some(CreateJoinTokenRequest::default()))?;
    let ttl_secs = parse_token_ttl(req.ttl.as_ref())?;
    let now = state.clock.unix_secs();
    let issued = join_token::create(state.store.as_ref(), &state.trust_domain, ttl_secs, now)
        .await
        .map_err(|err| match err {
            JoinTokenError::Store(store) => ApiError::from(store),
            other => ApiError::internal("cannot create a join token", &other),
        })?;
    tracing::info!(
        token_id = %issued.record.id,
        agent_id = %issued.agent_id,
        expires_at = issued.record.expires_at,
        "join token created"
    );
    Ok((
        StatusCode::CREATED,
        Json(JoinTokenCreated {
            id: issued.record.id,
            token: issued.token,
            agent_id: issued.agent_id.to_string(),
            expires_at: issued.record.expires_at,
        }),
    ))
}

/// Absent = 1 hour; otherwise a valid TTL of at most 7 days.
fn parse_token_ttl(raw: Option<&TtlValue>) -> Result<u64, ApiError> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_JOIN_TOKEN_TTL_SECS);
    };
    let ttl = parse_wire_ttl("ttl", raw)?;
    if ttl.as_secs() > MAX_JOIN_TOKEN_TTL_SECS {
        return Err(ApiError::invalid_value(
            "ttl",
            &raw.to_string(),
            format!("join tokens live at most 7 days ({MAX_JOIN_TOKEN_TTL_SECS} seconds)"),
        ));
    }
    Ok(ttl.as_secs())
}

#[cfg(test)]
mod tests {
    use axum::http::{Method, StatusCode};
    use serde_json::json;

    use crate::admin::test_support::{Harness, START};

    #[tokio::test]
    async fn creates_a_token_whose_hash_alone_is_stored() {
        let h = Harness::new().await;
        let (status, created) = h
            .call(
                Method::POST,
                "/api/v1/join-tokens",
                Some(json!({"ttl": "2h"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let token = created["token"].as_str().unwrap();
        let id = created["id"].as_str().unwrap();
        assert_eq!(id.len(), 32);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(
            created["agent_id"],
            format!("spiffe://example.org/sigil/agent/join_token/{id}")
        );
        assert_eq!(created["expires_at"], START + 7200);
        let hash = sigil_keys::sha256_hex(token.as_bytes());
        let consumed = h.store.consume_join_token(&hash, START).await.unwrap();
        assert_eq!(consumed.id, id);
        assert_ne!(consumed.token_hash, token);
    }

    #[tokio::test]
    async fn empty_body_means_one_hour() {
        let h = Harness::new().await;
        let (status, created) = h.call_raw(Method::POST, "/api/v1/join-tokens", "").await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        assert_eq!(created["expires_at"], START + 3600);
        let (_, created) = h
            .call(Method::POST, "/api/v1/join-tokens", Some(json!({})))
            .await;
        assert_eq!(created["expires_at"], START + 3600);
    }

    #[tokio::test]
    async fn top_level_values_other_than_objects_are_refused() {
        let h = Harness::new().await;
        let (status, _) = h
            .call_raw(Method::POST, "/api/v1/join-tokens", r#"{"ttl": 60}"#)
            .await;
        assert_eq!(status, StatusCode::CREATED, "the object form is accepted");
        for raw in ["[1]", "[60]", "[]", "60", "\"1h\"", "null", "false"] {
            let (status, err) = h.call_raw(Method::POST, "/api/v1/join-tokens", raw).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{raw}");
            assert_eq!(
                err["error"]["message"], "request body is not valid: expected a JSON object",
                "{raw}"
            );
        }
    }

    #[tokio::test]
    async fn tokens_are_unique() {
        let h = Harness::new().await;
        let (_, a) = h.call(Method::POST, "/api/v1/join-tokens", None).await;
        let (_, b) = h.call(Method::POST, "/api/v1/join-tokens", None).await;
        assert_ne!(a["token"], b["token"]);
        assert_ne!(a["id"], b["id"]);
    }

    #[tokio::test]
    async fn rejects_ttls_over_seven_days_or_malformed() {
        let h = Harness::new().await;
        for (ttl, expected) in [
            (
                json!("8d"),
                "invalid ttl `8d`: join tokens live at most 7 days",
            ),
            (json!(0), "invalid ttl `0`: "),
            (json!("soon"), "invalid ttl `soon`: "),
        ] {
            let (status, err) = h
                .call(
                    Method::POST,
                    "/api/v1/join-tokens",
                    Some(json!({"ttl": ttl})),
                )
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
            let message = err["error"]["message"].as_str().unwrap();
            assert!(message.starts_with(expected), "{message}");
        }
        let (status, _) = h
            .call(
                Method::POST,
                "/api/v1/join-tokens",
                Some(json!({"ttl": "7d"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
}
