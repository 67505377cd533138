//! `/api/v1/revocations`: revoking one credential this server issued (an X509-SVID by serial, a
//! JWT-SVID by `jti`) and listing the revocations still in force.
//!
//! The datastore decides, in one transaction, whether the credential can be revoked: it must
//! have been recorded at issuance, not be expired, and not be revoked already. This module parses
//! the request (normalising the serial to the form issuance records: lowercase hex, no colons, no
//! leading zeros) and words each refusal for the operator.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use sigil_api::revocations::{MAX_JTI_CHARS, MAX_REVOCATION_REASON_CHARS, MAX_SERIAL_TEXT_CHARS};
use sigil_api::{Revocation, RevocationList, RevokeRequest};
use sigil_store::{CredentialKind, StoreError};

use super::AdminState;
use super::api_error::ApiError;
use super::body::decode_json;

/// `POST /api/v1/revocations` with `{"serial": …}` or `{"jti": …}` and an optional `reason` →
/// 201 and the revocation. 400 for a malformed body (both or neither credential named, a serial
/// that is not hex, …), 404 for a credential this server did not issue (or has forgotten, once
/// expired), 409 for one already expired or already revoked; nothing is stored on any failure.
pub(crate) async fn revoke(
    State(state): State<AdminState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Revocation>), ApiError> {
    let req: RevokeRequest = decode_json(body, None)?;
    let credential = Credential::from_request(req.serial, req.jti)?;
    let reason = parse_reason(req.reason.unwrap_or_default())?;
    let now = state.clock.unix_secs();
    let revocation = state
        .store
        .revoke_credential(credential.kind, &credential.id, &reason, now)
        .await
        .map_err(|err| refusal(err, &credential))?;
    // Read-your-writes: when this call answers, this server's deny-list and CRLs name the
    // credential and its agents are being sent them.
    // The revocation task signs the CRLs and publishes once the index has the revocation; this
    // waits for that instead of signing a second time here.
    if state.publishes_revocations
        && !state
            .ca
            .revocation_published(credential.kind, &credential.id)
            .await
    {
        tracing::warn!(
            id = %credential.id,
            "the revocation is stored but not yet published; agents get it when it is"
        );
    }
    tracing::info!(
        kind = credential.kind.as_str(),
        id = %credential.id,
        spiffe_id = %revocation.spiffe_id,
        "credential revoked"
    );
    Ok((StatusCode::CREATED, Json(to_wire(&revocation))))
}

/// `GET /api/v1/revocations` → every revocation whose credential has not expired, in the
/// datastore's order (by revocation time, then kind and id).
pub(crate) async fn list(
    State(state): State<AdminState>,
) -> Result<Json<RevocationList>, ApiError> {
    let now = state.clock.unix_secs();
    let revocations = state.store.list_revocations().await?;
    Ok(Json(RevocationList {
        revocations: revocations
            .iter()
            .filter(|r| r.expires_at > now)
            .map(to_wire)
            .collect(),
    }))
}

/// The revocation as the API answers it.
pub(crate) fn to_wire(revocation: &sigil_store::Revocation) -> Revocation {
    Revocation {
        kind: revocation.kind.as_str().to_owned(),
        id: revocation.id.clone(),
        spiffe_id: revocation.spiffe_id.to_string(),
        authority_id: revocation.authority_id.clone(),
        reason: revocation.reason.clone(),
        revoked_at: revocation.revoked_at,
        expires_at: revocation.expires_at,
    }
}

/// The credential a request names, in the form issuance recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Credential {
    kind: CredentialKind,
    id: String,
}

impl Credential {
    /// Exactly one of `serial` and `jti`, parsed.
    fn from_request(serial: Option<String>, jti: Option<String>) -> Result<Self, ApiError> {
        match (serial, jti) {
            (Some(serial), None) => Ok(Self {
                kind: CredentialKind::X509Svid,
                id: parse_serial(&serial)?,
            }),
            (None, Some(jti)) => Ok(Self {
                kind: CredentialKind::JwtSvid,
                id: parse_jti(jti)?,
            }),
            (Some(_), Some(_)) => Err(ApiError::invalid(
                "give either serial (an X509-SVID) or jti (a JWT-SVID), not both",
            )),
            (None, None) => Err(ApiError::invalid(
                "serial (an X509-SVID) or jti (a JWT-SVID) is required",
            )),
        }
    }
}

impl std::fmt::Display for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            CredentialKind::X509Svid => write!(f, "X509-SVID with serial `{}`", self.id),
            CredentialKind::JwtSvid => write!(f, "JWT-SVID with jti `{}`", self.id),
        }
    }
}

/// A serial as typed or pasted (hex in any case, `:` separators as openssl prints them, leading
/// zeros) in the form issuance records: lowercase hex without colons or leading zeros. A 400
/// naming `serial` when it is empty, longer than [`MAX_SERIAL_TEXT_CHARS`], holds anything but
/// hex digits and colons, or is zero.
fn parse_serial(raw: &str) -> Result<String, ApiError> {
    if raw.chars().count() > MAX_SERIAL_TEXT_CHARS {
        return Err(ApiError::invalid(format!(
            "invalid serial: longer than {MAX_SERIAL_TEXT_CHARS} characters"
        )));
    }
    if raw.is_empty() {
        return Err(ApiError::invalid_value("serial", raw, "is empty"));
    }
    if let Some(bad) = raw.chars().find(|c| !c.is_ascii_hexdigit() && *c != ':') {
        return Err(ApiError::invalid_value(
            "serial",
            raw,
            format!(
                "`{}` is not a hex digit (expected hex such as `4a1b…` or `4A:1B:…`)",
                bad.escape_default()
            ),
        ));
    }
    let digits: String = raw
        .chars()
        .filter(|c| *c != ':')
        .skip_while(|c| *c == '0')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if digits.is_empty() {
        return Err(ApiError::invalid_value(
            "serial",
            raw,
            "is zero (or has no digit); serial numbers are positive",
        ));
    }
    Ok(digits)
}

/// A `jti` as issued: 1 to [`MAX_JTI_CHARS`] printable ASCII characters other than space; a 400
/// naming `jti` otherwise.
fn parse_jti(raw: String) -> Result<String, ApiError> {
    if raw.chars().count() > MAX_JTI_CHARS {
        return Err(ApiError::invalid(format!(
            "invalid jti: longer than {MAX_JTI_CHARS} characters"
        )));
    }
    if raw.is_empty() {
        return Err(ApiError::invalid_value("jti", &raw, "is empty"));
    }
    if !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::invalid_value(
            "jti",
            &raw,
            "must be printable ASCII without spaces",
        ));
    }
    Ok(raw)
}

/// The reason as given: at most [`MAX_REVOCATION_REASON_CHARS`] characters, one line.
fn parse_reason(raw: String) -> Result<String, ApiError> {
    if raw.chars().count() > MAX_REVOCATION_REASON_CHARS {
        return Err(ApiError::invalid(format!(
            "invalid reason: longer than {MAX_REVOCATION_REASON_CHARS} characters"
        )));
    }
    if raw.chars().any(char::is_control) {
        return Err(ApiError::invalid_value(
            "reason",
            &raw,
            "has a control character",
        ));
    }
    Ok(raw)
}

/// The answer to a refused revocation: the status from the datastore error's usual mapping
/// (404, 409, 400, 500), with a message naming the credential as the operator gave it.
fn refusal(err: StoreError, credential: &Credential) -> ApiError {
    let message = match &err {
        StoreError::NotFound { .. } => format!(
            "no {credential} was issued by this server (or it already expired and was pruned)"
        ),
        StoreError::AlreadyExists { .. } => format!("{credential} is already revoked"),
        StoreError::CredentialExpired { expired_at, .. } => format!(
            "{credential} expired at {expired_at} (Unix seconds); there is nothing to revoke"
        ),
        _ => return ApiError::from(err),
    };
    ApiError {
        message,
        ..ApiError::from(err)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::http::{Method, StatusCode};
    use serde_json::{Value, json};
    use sigil_api::paths;
    use sigil_spiffe::SpiffeId;
    use sigil_store::{Datastore, IssuedCredential, MAX_CREDENTIAL_ID_BYTES};

    use super::*;
    use crate::admin::test_support::{Harness, START};

    /// A 16-byte serial as issuance records it (top bits 01, so 32 digits, no leading zero).
    const SERIAL: &str = "4a1b2c3d4e5f60718293a4b5c6d7e8f9";
    const JTI: &str = "Zm9vYmFyYmF6cXV4cXV1eA";
    const LIFETIME: i64 = 3600;

    fn issued(kind: CredentialKind, id: &str, expires_at: i64) -> IssuedCredential {
        IssuedCredential {
            kind,
            id: id.to_owned(),
            spiffe_id: SpiffeId::parse("spiffe://example.org/web").unwrap(),
            authority_id: "ab12".to_owned(),
            issued_to: SpiffeId::parse("spiffe://example.org/sigil/agent/join_token/abc").unwrap(),
            issued_at: START,
            expires_at,
        }
    }

    /// A harness whose store has recorded the X509-SVID [`SERIAL`] and the JWT-SVID [`JTI`],
    /// both valid for [`LIFETIME`] from [`START`].
    async fn with_issued() -> Harness {
        let h = Harness::new().await;
        h.store
            .record_issued(vec![
                issued(CredentialKind::X509Svid, SERIAL, START + LIFETIME),
                issued(CredentialKind::JwtSvid, JTI, START + LIFETIME),
            ])
            .await
            .unwrap();
        h
    }

    async fn revoke(h: &Harness, body: Value) -> (StatusCode, Value) {
        h.call(Method::POST, paths::REVOCATIONS, Some(body)).await
    }

    async fn listed(h: &Harness) -> Value {
        let (status, list) = h.call(Method::GET, paths::REVOCATIONS, None).await;
        assert_eq!(status, StatusCode::OK, "{list}");
        list["revocations"].clone()
    }

    /// Every stored revocation and the change-feed position: what "nothing changed" compares.
    async fn snapshot(store: &dyn Datastore) -> (Vec<sigil_store::Revocation>, u64) {
        (
            store.list_revocations().await.unwrap(),
            store.latest_change().await.unwrap(),
        )
    }

    /// Asserts the answer is `status` with `code` and exactly `message`.
    fn assert_error(answer: &(StatusCode, Value), status: StatusCode, code: &str, message: &str) {
        let (got, body) = answer;
        assert_eq!(*got, status, "{body}");
        assert_eq!(
            body,
            &json!({"error": {"code": code, "message": message}}),
            "{body}"
        );
    }

    #[tokio::test]
    async fn revokes_an_issued_serial_and_lists_it() {
        let h = with_issued().await;
        assert_eq!(listed(&h).await, json!([]));
        h.clock.advance(Duration::from_secs(10));

        let (status, body) = revoke(&h, json!({"serial": SERIAL, "reason": "key leaked"})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(
            body,
            json!({
                "kind": "x509_svid",
                "id": SERIAL,
                "spiffe_id": "spiffe://example.org/web",
                "authority_id": "ab12",
                "reason": "key leaked",
                "revoked_at": START + 10,
                "expires_at": START + LIFETIME,
            })
        );
        let stored = h
            .store
            .get_revocation(CredentialKind::X509Svid, SERIAL)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(body, serde_json::to_value(to_wire(&stored)).unwrap());
        assert_eq!(listed(&h).await, json!([body]));
    }

    #[tokio::test]
    async fn revokes_a_jwt_svid_by_jti_without_a_reason() {
        let h = with_issued().await;
        let (status, body) = revoke(&h, json!({"jti": JTI})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["kind"], "jwt_svid");
        assert_eq!(body["id"], JTI);
        assert_eq!(body["reason"], "");
        assert_eq!(listed(&h).await, json!([body]));
        assert!(
            h.store
                .get_revocation(CredentialKind::X509Svid, SERIAL)
                .await
                .unwrap()
                .is_none(),
            "only the named credential is revoked"
        );
    }

    #[tokio::test]
    async fn serials_as_openssl_prints_them_name_the_recorded_serial() {
        let colons = "4A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9";
        let leading_zero_byte = format!("00:{}", colons.to_lowercase());
        for written in [colons, &SERIAL.to_uppercase(), &leading_zero_byte] {
            let h = with_issued().await;
            let (status, body) = revoke(&h, json!({"serial": written})).await;
            assert_eq!(status, StatusCode::CREATED, "{written}: {body}");
            assert_eq!(body["id"], SERIAL, "{written}");
        }
    }

    #[tokio::test]
    async fn unknown_serial_and_jti_are_404_and_store_nothing() {
        let h = with_issued().await;
        let before = snapshot(h.store.as_ref()).await;
        let unknown = "7f00000000000000000000000000000a";
        let answer = revoke(&h, json!({"serial": unknown})).await;
        assert_error(
            &answer,
            StatusCode::NOT_FOUND,
            "not_found",
            "no X509-SVID with serial `7f00000000000000000000000000000a` was issued by this server \
             (or it already expired and was pruned)",
        );
        let answer = revoke(&h, json!({"jti": "nope"})).await;
        assert_error(
            &answer,
            StatusCode::NOT_FOUND,
            "not_found",
            "no JWT-SVID with jti `nope` was issued by this server (or it already expired and was \
             pruned)",
        );
        // The recorded serial as a JWT id is another credential.
        let (status, _) = revoke(&h, json!({"jti": SERIAL})).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(snapshot(h.store.as_ref()).await, before, "nothing changed");
        assert_eq!(listed(&h).await, json!([]));
        // The store does hold what issuance recorded: the same call on it succeeds.
        let (status, body) = revoke(&h, json!({"serial": SERIAL})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    #[tokio::test]
    async fn revoking_twice_is_409_and_keeps_the_first_revocation() {
        let h = with_issued().await;
        let (status, first) = revoke(&h, json!({"serial": SERIAL, "reason": "first"})).await;
        assert_eq!(status, StatusCode::CREATED, "{first}");
        let before = snapshot(h.store.as_ref()).await;
        h.clock.advance(Duration::from_secs(5));
        let answer = revoke(
            &h,
            json!({"serial": SERIAL.to_uppercase(), "reason": "again"}),
        )
        .await;
        assert_error(
            &answer,
            StatusCode::CONFLICT,
            "already_exists",
            &format!("X509-SVID with serial `{SERIAL}` is already revoked"),
        );
        assert_eq!(snapshot(h.store.as_ref()).await, before, "nothing changed");
        assert_eq!(listed(&h).await, json!([first]));
    }

    #[tokio::test]
    async fn expired_credentials_are_409_and_leave_the_list() {
        let h = with_issued().await;
        let (status, revoked) = revoke(&h, json!({"jti": JTI})).await;
        assert_eq!(status, StatusCode::CREATED, "{revoked}");
        assert_eq!(listed(&h).await, json!([revoked]));

        // At its expiry the credential is no longer revocable, and no longer listed.
        h.clock
            .advance(Duration::from_secs(LIFETIME.unsigned_abs()));
        let before = snapshot(h.store.as_ref()).await;
        let answer = revoke(&h, json!({"serial": SERIAL})).await;
        assert_error(
            &answer,
            StatusCode::CONFLICT,
            "conflict",
            &format!(
                "X509-SVID with serial `{SERIAL}` expired at {} (Unix seconds); there is nothing \
                 to revoke",
                START + LIFETIME
            ),
        );
        assert_eq!(snapshot(h.store.as_ref()).await, before, "nothing changed");
        assert_eq!(
            listed(&h).await,
            json!([]),
            "expired revocations are not listed"
        );
        assert_eq!(
            h.store.list_revocations().await.unwrap().len(),
            1,
            "the store keeps it until pruned; the list filters it"
        );
    }

    #[tokio::test]
    async fn malformed_requests_are_400_naming_the_field_and_store_nothing() {
        let h = with_issued().await;
        let before = snapshot(h.store.as_ref()).await;
        let long_serial = "1".repeat(MAX_SERIAL_TEXT_CHARS + 1);
        let long_jti = "j".repeat(MAX_JTI_CHARS + 1);
        let long_reason = "r".repeat(MAX_REVOCATION_REASON_CHARS + 1);
        for (body, message) in [
            (
                json!({"serial": SERIAL, "jti": JTI}),
                "give either serial (an X509-SVID) or jti (a JWT-SVID), not both",
            ),
            (
                json!({}),
                "serial (an X509-SVID) or jti (a JWT-SVID) is required",
            ),
            (
                json!({"reason": "no credential"}),
                "serial (an X509-SVID) or jti (a JWT-SVID) is required",
            ),
            (json!({"serial": ""}), "invalid serial ``: is empty"),
            (
                json!({"serial": "0x4a1b"}),
                "invalid serial `0x4a1b`: `x` is not a hex digit (expected hex such as `4a1b…` \
                 or `4A:1B:…`)",
            ),
            (
                json!({"serial": "serial=4A1B"}),
                "invalid serial `serial=4A1B`: `s` is not a hex digit (expected hex such as \
                 `4a1b…` or `4A:1B:…`)",
            ),
            (
                json!({"serial": "00:00"}),
                "invalid serial `00:00`: is zero (or has no digit); serial numbers are positive",
            ),
            (
                json!({"serial": ":"}),
                "invalid serial `:`: is zero (or has no digit); serial numbers are positive",
            ),
            (
                json!({"serial": long_serial}),
                "invalid serial: longer than 64 characters",
            ),
            (json!({"jti": ""}), "invalid jti ``: is empty"),
            (
                json!({"jti": "a b"}),
                "invalid jti `a b`: must be printable ASCII without spaces",
            ),
            (
                json!({"jti": long_jti}),
                "invalid jti: longer than 128 characters",
            ),
            (
                json!({"serial": SERIAL, "reason": "a\nb"}),
                "invalid reason `a?b`: has a control character",
            ),
            (
                json!({"serial": SERIAL, "reason": long_reason}),
                "invalid reason: longer than 256 characters",
            ),
        ] {
            let answer = revoke(&h, body.clone()).await;
            assert_error(
                &answer,
                StatusCode::BAD_REQUEST,
                "invalid_argument",
                message,
            );
        }
        for raw in [
            r#"{"serial": null}"#,
            r#"{"serial": 74}"#,
            r#"{"serial": "4a", "kind": "x509_svid"}"#,
            r#"["4a"]"#,
            "",
        ] {
            let (status, body) = h.call_raw(Method::POST, paths::REVOCATIONS, raw).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{raw}: {body}");
            assert_eq!(body["error"]["code"], "invalid_argument", "{raw}");
        }
        assert_eq!(snapshot(h.store.as_ref()).await, before, "nothing changed");
        // Well-formed, the same fields are accepted.
        let (status, body) = revoke(&h, json!({"serial": SERIAL, "reason": "a b"})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    #[tokio::test]
    async fn the_longest_accepted_fields_fit_the_datastore() {
        // A character is at most 4 bytes of UTF-8; a jti is ASCII.
        assert_eq!(
            MAX_REVOCATION_REASON_CHARS * 4,
            sigil_store::MAX_REVOCATION_REASON_BYTES
        );
        assert_eq!(MAX_JTI_CHARS, MAX_CREDENTIAL_ID_BYTES);
        let h = Harness::new().await;
        // The longest serial text is looked up (and not found), not refused by the store.
        let serial = "f".repeat(MAX_SERIAL_TEXT_CHARS);
        let (status, body) = revoke(&h, json!({"serial": serial})).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        let jti = "j".repeat(MAX_JTI_CHARS);
        h.store
            .record_issued(vec![issued(CredentialKind::JwtSvid, &jti, START + 60)])
            .await
            .unwrap();
        let reason = "🦀".repeat(MAX_REVOCATION_REASON_CHARS);
        let (status, body) = revoke(&h, json!({"jti": jti, "reason": reason})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["reason"], reason.as_str());
    }

    #[test]
    fn serial_normalisation_strips_colons_case_and_leading_zeros() {
        for (raw, id) in [
            ("4A:1B", "4a1b"),
            ("004a1b", "4a1b"),
            ("0:0:4a", "4a"),
            ("1", "1"),
            ("10", "10"),
            (":f0:", "f0"),
        ] {
            assert_eq!(parse_serial(raw).unwrap(), id, "{raw}");
        }
        for bad in ["", "0", "00:00", "::", "4g", " 4a", "é", "4a1b\n"] {
            assert!(parse_serial(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn documented_kinds_are_the_stored_kinds() {
        let doc = sigil_api::openapi_document(&sigil_spiffe::TrustDomain::parse("td").unwrap());
        assert_eq!(
            doc["components"]["schemas"]["Revocation"]["properties"]["kind"]["enum"],
            json!(CredentialKind::ALL.map(CredentialKind::as_str))
        );
    }
}
