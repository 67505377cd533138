//! `/api/v1/authorities`: the signing authorities, and the operator's forced rotation (prepare,
//! activate, taint, revoke). Each step is one operator command of the CA
//! ([`CaManager::command`](crate::ca::CaManager::command)), which decides whether it is allowed;
//! this module parses the request and maps a refusal to its answer: unknown authority 404, any
//! other refusal 409 with the refusal's own words, nothing changed either way.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use sigil_api::{Authority, AuthorityList, ErrorCode, PrepareAuthorityRequest};
use sigil_keys::pem::{CERTIFICATE_LABEL, encode as pem_encode};
use sigil_spiffe::{AuthorityKind, MAX_AUTHORITY_ID_CHARS, is_authority_id};
use sigil_store::{AuthorityRecord, StoreError};

use super::AdminState;
use super::api_error::ApiError;
use super::body::{decode_json, require_empty};
use crate::ca::{CaManagerError, Command, CommandError};

/// `GET /api/v1/authorities` → every authority in every state, in order of creation.
pub(crate) async fn list(State(state): State<AdminState>) -> Result<Json<AuthorityList>, ApiError> {
    let records = state.ca.authorities().await.map_err(command_error)?;
    Ok(Json(AuthorityList {
        authorities: records.iter().map(to_wire).collect(),
    }))
}

/// `POST /api/v1/authorities/prepare` with `{"kind": …}` → 201 and the prepared authority
/// (already published in the bundle, not yet signing); 409 when one of that kind is already
/// prepared, or no root can sign a new intermediate.
pub(crate) async fn prepare(
    State(state): State<AdminState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Authority>), ApiError> {
    let req: PrepareAuthorityRequest = decode_json(body, None)?;
    let kind = AuthorityKind::from_name(&req.kind).ok_or_else(|| {
        ApiError::invalid_value(
            "kind",
            &req.kind,
            "expected `x509_root`, `x509_intermediate` or `jwt`",
        )
    })?;
    let prepared = run(&state, Command::Prepare { kind }).await?;
    Ok((StatusCode::CREATED, Json(prepared)))
}

/// `POST /api/v1/authorities/{id}/activate` (no body) → the authority, now signing; the one it
/// replaces becomes old.
pub(crate) async fn activate(
    State(state): State<AdminState>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Authority>, ApiError> {
    by_id(&state, id, body, |id| Command::Activate { id }).await
}

/// `POST /api/v1/authorities/{id}/taint` (no body) → the authority, now tainted: agents replace
/// what it signed at once.
pub(crate) async fn taint(
    State(state): State<AdminState>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Authority>, ApiError> {
    by_id(&state, id, body, |id| Command::Taint { id }).await
}

/// `POST /api/v1/authorities/{id}/revoke` (no body) → the authority, now revoked: out of the
/// bundle.
pub(crate) async fn revoke(
    State(state): State<AdminState>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Authority>, ApiError> {
    by_id(&state, id, body, |id| Command::Revoke { id }).await
}

/// Runs the command `make` builds for the authority named in the path; the request has no body.
async fn by_id(
    state: &AdminState,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
    make: fn(String) -> Command,
) -> Result<Json<Authority>, ApiError> {
    let id = authority_id(id)?;
    require_empty(body)?;
    run(state, make(id)).await.map(Json)
}

/// The authority as the API answers it: no private key (records hold none), the certificate as
/// PEM for X.509 kinds.
pub(crate) fn to_wire(record: &AuthorityRecord) -> Authority {
    Authority {
        id: record.id.clone(),
        kind: record.kind.as_str().to_owned(),
        state: record.state.as_str().to_owned(),
        issuer_id: record.issuer_id.clone(),
        not_before: record.not_before,
        not_after: record.not_after,
        certificate_pem: record
            .cert_der
            .as_deref()
            .map(|der| pem_encode(CERTIFICATE_LABEL, der)),
    }
}

/// Runs `command` and answers the authority it created or moved.
async fn run(state: &AdminState, command: Command) -> Result<Authority, ApiError> {
    match state.ca.command(&command).await {
        Ok(record) => {
            tracing::info!(?command, authority = %record.id, state = %record.state, "authority command carried out");
            Ok(to_wire(&record))
        }
        Err(err) => {
            if let CaManagerError::Refused(refusal) = &err {
                tracing::info!(?command, reason = %refusal, "authority command refused");
            }
            Err(command_error(err))
        }
    }
}

/// The answer to a failed authority command: 404 for an unknown authority, 409 for every other
/// refusal (its message says why and what to do first) and for a step that lost a race with
/// another writer, 500 otherwise.
fn command_error(err: CaManagerError) -> ApiError {
    match err {
        CaManagerError::Refused(refusal @ CommandError::UnknownAuthority(_)) => {
            ApiError::not_found(refusal.to_string())
        }
        CaManagerError::Refused(refusal) => ApiError {
            code: ErrorCode::Conflict,
            message: refusal.to_string(),
        },
        other @ CaManagerError::OtherReplica { .. } => ApiError {
            code: ErrorCode::Conflict,
            message: other.to_string(),
        },
        CaManagerError::Store(
            race @ (StoreError::AuthorityStateConflict { .. } | StoreError::NotFound { .. }),
        ) => ApiError {
            code: ErrorCode::Conflict,
            message: format!(
                "the authorities changed while the command ran ({race}); list them and try again"
            ),
        },
        CaManagerError::Store(store) => ApiError::from(store),
        other => ApiError::internal("authority command failed", &other),
    }
}

/// The `{id}` path segment, which must have the shape of an authority id.
fn authority_id(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(id) = path.map_err(|rejection| {
        ApiError::invalid(format!("invalid authority id: {}", rejection.body_text()))
    })?;
    if !is_authority_id(&id) {
        return Err(ApiError::invalid_value(
            "authority id",
            &id,
            format!(
                "expected a hex subject key id or a JWT `kid`: 1 to {MAX_AUTHORITY_ID_CHARS} letters, digits, `-` or `_`"
            ),
        ));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::http::{Method, StatusCode};
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde_json::{Value, json};
    use sigil_api::paths;
    use sigil_spiffe::SpiffeId;

    use super::*;
    use crate::admin::test_support::{Harness, START};

    /// The authority list and the bundle, as the API answers them.
    async fn snapshot(h: &Harness) -> (Value, Value) {
        let (status, list) = h.call(Method::GET, paths::AUTHORITIES, None).await;
        assert_eq!(status, StatusCode::OK, "{list}");
        let (status, bundle) = h.call(Method::GET, paths::BUNDLE, None).await;
        assert_eq!(status, StatusCode::OK, "{bundle}");
        (list, bundle)
    }

    /// The listed authorities of `kind` in `state`.
    fn listed(list: &Value, kind: &str, state: &str) -> Vec<Value> {
        list["authorities"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["kind"] == kind && a["state"] == state)
            .cloned()
            .collect()
    }

    /// The one listed authority of `kind` in `state`, by id.
    fn only_id(list: &Value, kind: &str, state: &str) -> String {
        let found = listed(list, kind, state);
        assert_eq!(found.len(), 1, "one {state} {kind} in {list}");
        found[0]["id"].as_str().unwrap().to_owned()
    }

    fn bundle_kids(bundle: &Value) -> Vec<String> {
        bundle["keys"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["use"] == "jwt-svid")
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    }

    /// DER of every X.509 authority in the bundle.
    fn bundle_roots(bundle: &Value) -> Vec<Vec<u8>> {
        bundle["keys"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["use"] == "x509-svid")
            .flat_map(|k| k["x5c"].as_array().unwrap().clone())
            .map(|c| STANDARD.decode(c.as_str().unwrap()).unwrap())
            .collect()
    }

    fn pem_der(pem: &Value) -> Vec<u8> {
        sigil_keys::pem::decode_all(CERTIFICATE_LABEL, pem.as_str().unwrap())
            .unwrap()
            .remove(0)
    }

    async fn post(h: &Harness, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        h.call(Method::POST, path, body).await
    }

    async fn prepare(h: &Harness, kind: &str) -> Value {
        let (status, prepared) =
            post(h, paths::AUTHORITIES_PREPARE, Some(json!({"kind": kind}))).await;
        assert_eq!(status, StatusCode::CREATED, "{prepared}");
        assert_eq!(prepared["kind"], kind);
        assert_eq!(prepared["state"], "prepared");
        prepared
    }

    /// Asserts `path` answers `status` with exactly `message`, and changed neither the
    /// authorities nor the bundle.
    async fn assert_refused(
        h: &Harness,
        path: &str,
        body: Option<Value>,
        status: StatusCode,
        message: &str,
    ) {
        let before = snapshot(h).await;
        let (got, err) = post(h, path, body).await;
        assert_eq!(got, status, "{path}: {err}");
        let code = if status == StatusCode::NOT_FOUND {
            "not_found"
        } else if status == StatusCode::CONFLICT {
            "conflict"
        } else {
            "invalid_argument"
        };
        assert_eq!(err["error"]["code"], code, "{path}: {err}");
        assert_eq!(err["error"]["message"], message, "{path}");
        assert_eq!(snapshot(h).await, before, "{path} changed something");
    }

    #[tokio::test]
    async fn lists_every_authority_with_certificates_and_no_private_key() {
        let h = Harness::new().await;
        let (status, list) = h.call(Method::GET, paths::AUTHORITIES, None).await;
        assert_eq!(status, StatusCode::OK, "{list}");
        let records = h.store.list_authorities().await.unwrap();
        assert_eq!(list["authorities"].as_array().unwrap().len(), 3);
        assert_eq!(
            list,
            serde_json::to_value(AuthorityList {
                authorities: records.iter().map(to_wire).collect()
            })
            .unwrap()
        );
        let root = &listed(&list, "x509_root", "active")[0];
        let intermediate = &listed(&list, "x509_intermediate", "active")[0];
        let jwt = &listed(&list, "jwt", "active")[0];
        assert_eq!(intermediate["issuer_id"], root["id"]);
        assert!(root.get("issuer_id").is_none(), "{root}");
        for x509 in [root, intermediate] {
            let record = records.iter().find(|r| r.id == x509["id"]).unwrap();
            assert_eq!(Some(pem_der(&x509["certificate_pem"])), record.cert_der);
            assert_eq!(x509["not_before"], record.not_before);
            assert_eq!(x509["not_after"], record.not_after);
        }
        assert!(jwt.get("certificate_pem").is_none(), "{jwt}");
        assert_eq!(jwt["not_before"], START);
        let text = list.to_string();
        assert!(!text.contains("PRIVATE KEY"), "{text}");
        for record in &records {
            assert!(!text.contains(&record.key_id), "key names stay inside");
        }
    }

    /// The order an operator follows when a JWT key leaks: prepare, activate (the leaked one
    /// becomes old), taint, revoke (out of the bundle).
    #[tokio::test]
    async fn forced_jwt_rotation_ends_with_the_old_key_out_of_the_bundle() {
        let h = Harness::new().await;
        let (list, _) = snapshot(&h).await;
        let leaked = only_id(&list, "jwt", "active");

        let prepared = prepare(&h, "jwt").await;
        let next = prepared["id"].as_str().unwrap().to_owned();
        assert_ne!(next, leaked);
        assert!(prepared.get("certificate_pem").is_none());
        let (_, bundle) = snapshot(&h).await;
        assert_eq!(bundle_kids(&bundle).len(), 2, "published before it signs");
        assert!(bundle_kids(&bundle).contains(&next));

        h.clock.advance(Duration::from_secs(1));
        let (status, activated) = post(&h, &paths::authority_activate(&next), None).await;
        assert_eq!(status, StatusCode::OK, "{activated}");
        assert_eq!(activated["id"], next.as_str());
        assert_eq!(activated["state"], "active");
        let (list, _) = snapshot(&h).await;
        assert_eq!(
            only_id(&list, "jwt", "old"),
            leaked,
            "the previous one is old"
        );
        assert_eq!(only_id(&list, "jwt", "active"), next);
        let sub = SpiffeId::parse("spiffe://example.org/web").unwrap();
        let minted = h.ca.mint_jwt_svid(&sub, &["a".to_owned()], 60).unwrap();
        assert!(
            minted_kid(&minted.token) == next,
            "the CA signs with the activated key"
        );

        let (status, tainted) = post(&h, &paths::authority_taint(&leaked), None).await;
        assert_eq!(status, StatusCode::OK, "{tainted}");
        assert_eq!(tainted["state"], "tainted");
        let (_, bundle) = snapshot(&h).await;
        assert!(
            bundle_kids(&bundle).contains(&leaked),
            "a tainted key is still trusted"
        );

        let (status, revoked) = post(&h, &paths::authority_revoke(&leaked), None).await;
        assert_eq!(status, StatusCode::OK, "{revoked}");
        assert_eq!(revoked["state"], "revoked");
        assert_eq!(revoked["id"], leaked.as_str());
        let (list, bundle) = snapshot(&h).await;
        assert_eq!(only_id(&list, "jwt", "revoked"), leaked);
        assert_eq!(
            bundle_kids(&bundle),
            [next],
            "the revoked key left the bundle"
        );
    }

    /// A leaked root: once it is tainted the intermediate it signed is replaced under the new
    /// root, and once revoked it leaves the bundle.
    #[tokio::test]
    async fn forced_root_rotation_replaces_the_intermediate_and_drops_the_root() {
        let h = Harness::new().await;
        let (list, bundle) = snapshot(&h).await;
        let leaked = only_id(&list, "x509_root", "active");
        let leaked_der = pem_der(&listed(&list, "x509_root", "active")[0]["certificate_pem"]);
        let old_intermediate = only_id(&list, "x509_intermediate", "active");
        assert_eq!(bundle_roots(&bundle), std::slice::from_ref(&leaked_der));

        let next = prepare(&h, "x509_root").await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let (_, bundle) = snapshot(&h).await;
        assert_eq!(bundle_roots(&bundle).len(), 2, "published before it signs");
        h.clock.advance(Duration::from_secs(1));
        let (status, activated) = post(&h, &paths::authority_activate(&next), None).await;
        assert_eq!(status, StatusCode::OK, "{activated}");

        let (status, _) = post(&h, &paths::authority_taint(&leaked), None).await;
        assert_eq!(status, StatusCode::OK);
        let (list, _) = snapshot(&h).await;
        let intermediate = &listed(&list, "x509_intermediate", "active");
        assert_eq!(intermediate.len(), 1, "{list}");
        assert_ne!(intermediate[0]["id"], old_intermediate.as_str());
        assert_eq!(
            intermediate[0]["issuer_id"],
            next.as_str(),
            "replaced under the new root at once"
        );

        let (status, _) = post(&h, &paths::authority_revoke(&leaked), None).await;
        assert_eq!(status, StatusCode::OK);
        let (_, bundle) = snapshot(&h).await;
        let roots = bundle_roots(&bundle);
        assert_eq!(roots.len(), 1);
        assert!(
            !roots.contains(&leaked_der),
            "the revoked root left the bundle"
        );
    }

    /// Each refusal the operator can meet answers its own message and changes nothing.
    #[tokio::test]
    async fn refused_steps_answer_why_and_change_nothing() {
        let h = Harness::new().await;
        let (list, _) = snapshot(&h).await;
        let active_jwt = only_id(&list, "jwt", "active");
        let active_root = only_id(&list, "x509_root", "active");

        assert_refused(
            &h,
            &paths::authority_taint(&active_jwt),
            None,
            StatusCode::CONFLICT,
            &format!("authority `{active_jwt}` is the active jwt authority; prepare and activate a successor before tainting it"),
        )
        .await;
        assert_refused(
            &h,
            &paths::authority_taint(&active_root),
            None,
            StatusCode::CONFLICT,
            &format!("authority `{active_root}` is the active x509_root authority; prepare and activate a successor before tainting it"),
        )
        .await;
        assert_refused(
            &h,
            &paths::authority_revoke(&active_jwt),
            None,
            StatusCode::CONFLICT,
            &format!("authority `{active_jwt}` is active; only a tainted authority can be revoked (taint it first)"),
        )
        .await;
        for path in [
            paths::authority_activate("nope"),
            paths::authority_taint("nope"),
            paths::authority_revoke("nope"),
        ] {
            assert_refused(
                &h,
                &path,
                None,
                StatusCode::NOT_FOUND,
                "authority `nope` not found",
            )
            .await;
        }

        // Prepared this very second: not yet in anyone's bundle, so not activated.
        let prepared = prepare(&h, "jwt").await["id"].as_str().unwrap().to_owned();
        assert_refused(
            &h,
            &paths::authority_activate(&prepared),
            None,
            StatusCode::CONFLICT,
            &format!("authority `{prepared}` was prepared this very second and is not yet published; try again in a second"),
        )
        .await;
        assert_refused(
            &h,
            paths::AUTHORITIES_PREPARE,
            Some(json!({"kind": "jwt"})),
            StatusCode::CONFLICT,
            &format!("a prepared jwt authority (`{prepared}`) already exists; activate it first"),
        )
        .await;

        // Through to revoked; then it can never come back.
        h.clock.advance(Duration::from_secs(1));
        for path in [
            paths::authority_activate(&prepared),
            paths::authority_taint(&active_jwt),
            paths::authority_revoke(&active_jwt),
        ] {
            let (status, body) = post(&h, &path, None).await;
            assert_eq!(status, StatusCode::OK, "{path}: {body}");
        }
        assert_refused(
            &h,
            &paths::authority_activate(&active_jwt),
            None,
            StatusCode::CONFLICT,
            &format!("authority `{active_jwt}` is revoked and can never be activated"),
        )
        .await;
        assert_refused(
            &h,
            &paths::authority_taint(&active_jwt),
            None,
            StatusCode::CONFLICT,
            &format!("authority `{active_jwt}` is revoked; only an old authority can be tainted"),
        )
        .await;
    }

    #[tokio::test]
    async fn malformed_requests_are_400_and_change_nothing() {
        let h = Harness::new().await;
        let long = "k".repeat(MAX_AUTHORITY_ID_CHARS + 1);
        for id in ["a.b", "a b", "a/b", "é", long.as_str()] {
            let path = paths::authority_taint(id);
            let before = snapshot(&h).await;
            let (status, err) = post(&h, &path, None).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {err}");
            let message = err["error"]["message"].as_str().unwrap();
            assert!(message.starts_with("invalid authority id `"), "{message}");
            assert_eq!(snapshot(&h).await, before);
        }
        assert_refused(
            &h,
            paths::AUTHORITIES_PREPARE,
            Some(json!({"kind": "rsa"})),
            StatusCode::BAD_REQUEST,
            "invalid kind `rsa`: expected `x509_root`, `x509_intermediate` or `jwt`",
        )
        .await;
        for (raw, expected) in [
            ("", "request body is empty (expected a JSON object)"),
            (
                "[\"jwt\"]",
                "request body is not valid: expected a JSON object",
            ),
            (
                r#"{"kind": "jwt", "id": "x"}"#,
                "request body is not valid: unknown field `id`",
            ),
            ("{}", "request body is not valid: missing field `kind`"),
            (
                r#"{"kind": null}"#,
                "request body is not valid: invalid type: null",
            ),
        ] {
            let before = snapshot(&h).await;
            let (status, err) = h
                .call_raw(Method::POST, paths::AUTHORITIES_PREPARE, raw)
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{raw}: {err}");
            let message = err["error"]["message"].as_str().unwrap();
            assert!(message.starts_with(expected), "{raw}: {message}");
            assert_eq!(snapshot(&h).await, before);
        }
        // The positive path of the same body: accepted.
        let prepared = prepare(&h, "jwt").await["id"].as_str().unwrap().to_owned();
        // A step takes no body: one sent anyway is refused, not ignored.
        h.clock.advance(Duration::from_secs(1));
        let before = snapshot(&h).await;
        let (status, err) = h
            .call_raw(Method::POST, &paths::authority_activate(&prepared), "{}")
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
        assert_eq!(err["error"]["message"], "this request takes no body");
        assert_eq!(snapshot(&h).await, before);
        let (status, _) = h
            .call_raw(Method::POST, &paths::authority_activate(&prepared), "")
            .await;
        assert_eq!(status, StatusCode::OK, "the same step without a body");
    }

    #[test]
    fn store_races_are_conflicts_and_internal_causes_stay_inside() {
        let race = command_error(CaManagerError::Store(StoreError::AuthorityStateConflict {
            id: "k".into(),
            expected: sigil_spiffe::AuthorityState::Old,
            found: sigil_spiffe::AuthorityState::Tainted,
        }));
        assert_eq!(race.code, ErrorCode::Conflict);
        assert_eq!(
            race.message,
            "the authorities changed while the command ran (authority `k` is tainted, not old); list them and try again"
        );
        let gone = command_error(CaManagerError::Store(StoreError::NotFound {
            kind: "authority",
            id: "k".into(),
        }));
        assert_eq!(gone.code, ErrorCode::Conflict);
        let internal = command_error(CaManagerError::MissingKey("jwt-secret-name".into()));
        assert_eq!(internal.code, ErrorCode::Internal);
        assert!(!internal.message.contains("secret"), "{}", internal.message);
    }

    /// The `kid` in the header of a compact JWS.
    fn minted_kid(token: &str) -> String {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = token.split('.').next().unwrap();
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
        header["kid"].as_str().unwrap().to_owned()
    }
}
