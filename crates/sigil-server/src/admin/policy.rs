//! `GET /api/v1/policy`, `POST /api/v1/policy/decide` and `POST /api/v1/policy/reload`: the
//! Cedar policy set in force, a dry-run decision against it, and a reload on demand (the same as
//! `SIGHUP`). A server without a policy set answers 503.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use sigil_api::{ErrorCode, PolicyDecision, PolicyReloaded, PolicyStatus};
use sigil_policy::DecisionRequest;

use super::AdminState;
use super::api_error::ApiError;
use super::body::{decode_json, require_empty};
use crate::policy::Policies;

/// `GET /api/v1/policy`.
pub(crate) async fn show(State(state): State<AdminState>) -> Result<Json<PolicyStatus>, ApiError> {
    let policies = policies(&state)?;
    let current = policies.current();
    Ok(Json(PolicyStatus {
        hash: current.hash().to_owned(),
        policies: u64::try_from(current.len()).unwrap_or(u64::MAX),
        ids: current.ids().to_vec(),
        actions: current
            .action_names()
            .into_iter()
            .map(str::to_owned)
            .collect(),
        dir: policies.dir().map(|d| d.display().to_string()),
    }))
}

/// `POST /api/v1/policy/decide`: the decision on the request at the server's current time. It
/// only reads the set in force, so it changes nothing.
pub(crate) async fn decide(
    State(state): State<AdminState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<PolicyDecision>, ApiError> {
    let policies = policies(&state)?;
    let request: DecisionRequest = decode_json(body, None)?;
    let decision = policies.decide(&request, state.clock.unix_secs());
    Ok(Json(PolicyDecision::new(
        decision.allowed,
        decision.policies,
        decision.errors,
        decision.policy_hash,
    )))
}

/// `POST /api/v1/policy/reload`: 200 with the hash in force after it, or 409 with the first
/// error (`file:line:column: message`) and the hash kept.
pub(crate) async fn reload(
    State(state): State<AdminState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<PolicyReloaded>, ApiError> {
    let policies = policies(&state)?;
    require_empty(body)?;
    // Parsing and validating a large set takes a while: off the async threads.
    let reloading = Arc::clone(policies);
    let outcome = tokio::task::spawn_blocking(move || reloading.reload())
        .await
        .map_err(|err| ApiError::internal("policy reload task failed", &err))?;
    match outcome {
        Ok(hash) => Ok(Json(PolicyReloaded { hash })),
        Err(err) => Err(ApiError {
            code: ErrorCode::Conflict,
            message: format!(
                "policy reload refused, the set in force stays (hash {}): {err}",
                policies.hash()
            ),
        }),
    }
}

fn policies(state: &AdminState) -> Result<&Arc<Policies>, ApiError> {
    state.policies.as_ref().ok_or_else(|| ApiError {
        code: ErrorCode::Unavailable,
        message: "this server holds no policy set".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use axum::http::{Method, StatusCode};
    use serde_json::{Value, json};

    use crate::admin::test_support::{Harness, state_and_clock};

    const PERMIT_READ: &str = r#"@id("reports-read")
permit (
  principal is Sigil::Workload,
  action == Sigil::Action::"db:read",
  resource
)
when { principal.spiffe_id == "spiffe://example.org/reports" };
"#;
    const ACTIONS: &str = r#"namespace Sigil {
  action "db:read" appliesTo { principal: Workload, resource: Resource, context: Context };
}
"#;

    fn read_request(spiffe_id: &str) -> Value {
        json!({
            "principal": {"type": "workload", "spiffe_id": spiffe_id},
            "action": "db:read",
            "resource": {"id": "orders", "kind": "database"},
        })
    }

    /// A harness whose policy set is read from a temporary directory holding `files`.
    async fn harness_with(files: &[(&str, &str)]) -> (Harness, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let (mut state, clock) = state_and_clock().await;
        state.policies = Some(crate::admin::test_support::policies(Some(dir.path())));
        (Harness::with_state(state, clock), dir)
    }

    #[tokio::test]
    async fn shows_the_set_in_force() {
        let (h, dir) =
            harness_with(&[("read.cedar", PERMIT_READ), ("db.cedarschema", ACTIONS)]).await;
        let (status, body) = h.call(Method::GET, "/api/v1/policy", None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["policies"], 1);
        assert_eq!(body["ids"], json!(["reports-read"]));
        assert_eq!(body["hash"].as_str().unwrap().len(), 64);
        assert!(
            body["actions"]
                .as_array()
                .unwrap()
                .contains(&json!("db:read")),
            "{body}"
        );
        assert_eq!(body["dir"], dir.path().display().to_string());
    }

    #[tokio::test]
    async fn the_default_set_has_no_directory() {
        let h = Harness::new().await;
        let (status, body) = h.call(Method::GET, "/api/v1/policy", None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["hash"], sigil_policy::DEFAULT_POLICY_HASH);
        assert_eq!(body["dir"], Value::Null);
    }

    #[tokio::test]
    async fn decides_allow_and_deny_with_the_policies_that_decided() {
        let (h, _dir) =
            harness_with(&[("read.cedar", PERMIT_READ), ("db.cedarschema", ACTIONS)]).await;
        let (status, allow) = h
            .call(
                Method::POST,
                "/api/v1/policy/decide",
                Some(read_request("spiffe://example.org/reports")),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{allow}");
        assert_eq!(allow["allowed"], true);
        assert_eq!(allow["decision"], "allow");
        assert_eq!(allow["policies"], json!(["reports-read"]));
        assert_eq!(allow["errors"], json!([]));
        let (status, deny) = h
            .call(
                Method::POST,
                "/api/v1/policy/decide",
                Some(read_request("spiffe://example.org/web")),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{deny}");
        assert_eq!(deny["decision"], "deny");
        assert_eq!(deny["policies"], json!([]));
        assert_eq!(deny["policy_hash"], allow["policy_hash"]);
    }

    #[tokio::test]
    async fn every_shape_the_openapi_document_allows_is_decided() {
        let (h, _dir) =
            harness_with(&[("read.cedar", PERMIT_READ), ("db.cedarschema", ACTIONS)]).await;
        let agent = json!({"type": "agent", "spiffe_id": "spiffe://example.org/sigil/agent/x/1"});
        let external = json!({
            "type": "external", "issuer": "https://ci", "subject": "repo:a",
            "spiffe_id": null, "attributes": {"ref": "main"},
        });
        let workload = json!({
            "type": "workload", "spiffe_id": "spiffe://other.org/x", "selectors": ["a:b"],
            "owner": "", "labels": [], "agent": null,
        });
        let context = json!({
            "audience": ["a"], "scopes": [], "source_address": null, "intent": null,
            "actors": [], "claims": {"n": 1, "s": "x", "o": {"deep": [true]}},
        });
        for principal in [agent, external, workload] {
            let mut request = read_request("spiffe://example.org/reports");
            request["principal"] = principal;
            request["context"] = context.clone();
            let (status, body) = h
                .call(Method::POST, "/api/v1/policy/decide", Some(request))
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(body["decision"], "deny", "{body}");
        }
    }

    #[tokio::test]
    async fn an_unknown_action_is_a_denial_with_the_reason() {
        let (h, _dir) =
            harness_with(&[("read.cedar", PERMIT_READ), ("db.cedarschema", ACTIONS)]).await;
        let mut request = read_request("spiffe://example.org/reports");
        request["action"] = json!("db:drop");
        let (status, body) = h
            .call(Method::POST, "/api/v1/policy/decide", Some(request))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["decision"], "deny");
        let errors = body["errors"].to_string();
        assert!(errors.contains("db:drop"), "{errors}");
    }

    #[tokio::test]
    async fn a_body_that_is_not_a_request_is_a_400_naming_the_problem() {
        let (h, _dir) =
            harness_with(&[("read.cedar", PERMIT_READ), ("db.cedarschema", ACTIONS)]).await;
        // The positive path first, so the refusals below are about the body alone.
        let (status, _) = h
            .call(
                Method::POST,
                "/api/v1/policy/decide",
                Some(read_request("spiffe://example.org/reports")),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let mut bad_id = read_request("spiffe://example.org/reports");
        bad_id["principal"]["spiffe_id"] = json!("https://example.org/reports");
        let mut unknown_field = read_request("spiffe://example.org/reports");
        unknown_field["context"] = json!({"mood": "good"});
        let mut bad_type = read_request("spiffe://example.org/reports");
        bad_type["principal"]["type"] = json!("robot");
        let mut extra_field = read_request("spiffe://example.org/reports");
        extra_field["principal"]["issuer"] = json!("https://issuer.example");
        let mut no_resource = read_request("spiffe://example.org/reports");
        no_resource.as_object_mut().unwrap().remove("resource");
        for (body, needle) in [
            (bad_id, "spiffe"),
            (unknown_field, "mood"),
            (bad_type, "robot"),
            (extra_field, "issuer"),
            (no_resource, "resource"),
            (json!([1]), "JSON object"),
        ] {
            let (status, answer) = h
                .call(Method::POST, "/api/v1/policy/decide", Some(body.clone()))
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
            assert_eq!(answer["error"]["code"], "invalid_argument");
            let message = answer["error"]["message"].as_str().unwrap();
            assert!(message.contains(needle), "{body}: {message}");
        }
        let (status, _) = h.call_raw(Method::POST, "/api/v1/policy/decide", "").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn reload_puts_a_valid_set_in_force_and_refuses_an_invalid_one() {
        let (h, dir) =
            harness_with(&[("read.cedar", PERMIT_READ), ("db.cedarschema", ACTIONS)]).await;
        let (_, before) = h.call(Method::GET, "/api/v1/policy", None).await;
        let old_hash = before["hash"].as_str().unwrap().to_owned();

        // Unchanged files: the same hash.
        let (status, body) = h.call(Method::POST, "/api/v1/policy/reload", None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, json!({"hash": old_hash}));

        // A syntax error: 409, located, and the old set stays in force.
        std::fs::write(dir.path().join("broken.cedar"), "permit (\n  principal,\n").unwrap();
        let (status, body) = h.call(Method::POST, "/api/v1/policy/reload", None).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["error"]["code"], "conflict");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("broken.cedar:"), "{message}");
        assert!(message.contains(&old_hash), "{message}");
        let (_, after) = h.call(Method::GET, "/api/v1/policy", None).await;
        assert_eq!(after["hash"], old_hash);

        // Fixed: a new set, and decisions use it.
        std::fs::remove_file(dir.path().join("broken.cedar")).unwrap();
        std::fs::write(
            dir.path().join("web.cedar"),
            PERMIT_READ
                .replace("reports-read", "web-read")
                .replace("/reports", "/web"),
        )
        .unwrap();
        let (status, body) = h.call(Method::POST, "/api/v1/policy/reload", None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let new_hash = body["hash"].as_str().unwrap();
        assert_ne!(new_hash, old_hash);
        let (_, decision) = h
            .call(
                Method::POST,
                "/api/v1/policy/decide",
                Some(read_request("spiffe://example.org/web")),
            )
            .await;
        assert_eq!(decision["decision"], "allow", "{decision}");
        assert_eq!(decision["policy_hash"], new_hash);
    }

    #[tokio::test]
    async fn reload_takes_no_body() {
        let h = Harness::new().await;
        let (status, body) = h
            .call(Method::POST, "/api/v1/policy/reload", Some(json!({})))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }

    #[tokio::test]
    async fn a_server_without_a_policy_set_answers_503() {
        let (mut state, clock) = state_and_clock().await;
        state.policies = None;
        let h = Harness::with_state(state, clock);
        for (method, path, body) in [
            (Method::GET, "/api/v1/policy", None),
            (
                Method::POST,
                "/api/v1/policy/decide",
                Some(read_request("spiffe://example.org/reports")),
            ),
            (Method::POST, "/api/v1/policy/reload", None),
        ] {
            let (status, answer) = h.call(method, path, body).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {answer}");
            assert_eq!(answer["error"]["code"], "unavailable");
        }
    }
}
