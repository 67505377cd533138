//! `POST /oauth2/introspect` (RFC 7662) and `POST /oauth2/revoke` (RFC 7009) for tokens this
//! trust domain issued (access tokens and JWT-SVIDs). Both require client authentication.
//!
//! Introspection answers `{"active": false}` for anything that is not a token this trust domain
//! signed, has expired, or is revoked; a revocation is seen at once, because revoking answers
//! only once this server's deny-list names the token. Revocation is allowed to the client the
//! token was issued to and to its subject; a token that is not this server's, or has expired,
//! is answered 200 with nothing done (RFC 7009 §2.2).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sigil_keys::jose;
use sigil_keys::jws::JsonObject;
use sigil_store::{CredentialKind, StoreError};

use super::OAuth;
use super::client_auth::Client;
use super::error::{ErrorCode, OAuthError};
use super::token::{MAX_TOKEN_BYTES, read_request};

/// The reason recorded with a revocation through this endpoint, before the client's id.
const REASON_PREFIX: &str = "revoked through /oauth2/revoke by";

pub(crate) async fn introspect(State(oauth): State<Arc<OAuth>>, request: Request) -> Response {
    match introspection(&oauth, request).await {
        Ok(body) => ([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response(),
        Err(e) => e.into_response(),
    }
}

pub(crate) async fn revoke(State(oauth): State<Arc<OAuth>>, request: Request) -> Response {
    match revocation(&oauth, request).await {
        Ok(()) => (StatusCode::OK, [(header::CACHE_CONTROL, "no-store")]).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The client of an introspection or revocation request, which must authenticate, and the
/// `token` it names.
async fn authenticated(
    oauth: &OAuth,
    request: Request,
    now: i64,
) -> Result<(Client, String), OAuthError> {
    let super::token::OAuthRequest {
        form, tls_client, ..
    } = read_request(request).await?;
    let client = oauth
        .authenticate_client(&form, tls_client.as_ref(), now)
        .await?
        .ok_or_else(|| {
            OAuthError::invalid_client(
                "client authentication is required (a JWT-SVID client assertion or mutual TLS)",
            )
        })?;
    let token = form.require("token")?;
    if token.len() > MAX_TOKEN_BYTES {
        return Err(OAuthError::invalid_request(format!(
            "`token` is larger than {MAX_TOKEN_BYTES} bytes"
        )));
    }
    Ok((client, token.to_owned()))
}

async fn introspection(oauth: &OAuth, request: Request) -> Result<Value, OAuthError> {
    let now = oauth.clock.unix_secs();
    let (_client, token) = authenticated(oauth, request, now).await?;
    let Some((header, claims)) = oauth.own_token(&token) else {
        return Ok(json!({"active": false}));
    };
    let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
    let jti = claims.get("jti").and_then(Value::as_str).unwrap_or("");
    let revoked = oauth
        .ca
        .revocations()
        .list
        .is_revoked(CredentialKind::JwtSvid, jti, now);
    if exp <= now || jti.is_empty() || revoked {
        return Ok(json!({"active": false}));
    }
    let mut body = serde_json::Map::new();
    body.insert("active".to_owned(), Value::Bool(true));
    for name in [
        "scope",
        "client_id",
        "sub",
        "aud",
        "exp",
        "iat",
        "nbf",
        "iss",
        "jti",
        "act",
    ] {
        if let Some(value) = claims.get(name) {
            body.insert(name.to_owned(), value.clone());
        }
    }
    let access_token = header.get("typ").and_then(Value::as_str) == Some("at+jwt");
    body.insert(
        "token_type".to_owned(),
        Value::String(if access_token { "Bearer" } else { "N_A" }.to_owned()),
    );
    Ok(Value::Object(body))
}

async fn revocation(oauth: &OAuth, request: Request) -> Result<(), OAuthError> {
    let now = oauth.clock.unix_secs();
    let (client, token) = authenticated(oauth, request, now).await?;
    let Some((_header, claims)) = oauth.own_token(&token) else {
        return Ok(());
    };
    let Some(jti) = claims.get("jti").and_then(Value::as_str) else {
        return Ok(());
    };
    let client_id = claims.get("client_id").and_then(Value::as_str);
    let sub = claims.get("sub").and_then(Value::as_str);
    if client_id != Some(client.id.as_str()) && sub != Some(client.id.as_str()) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            format!(
                "the token was not issued to `{}`, and is not its subject's",
                client.id
            ),
        ));
    }
    let reason = format!("{REASON_PREFIX} {}", client.id);
    match oauth
        .store
        .revoke_credential(CredentialKind::JwtSvid, jti, &reason, now)
        .await
    {
        Ok(_) => {}
        // Unknown to this trust domain's inventory, expired or revoked already: nothing to do.
        Err(
            StoreError::NotFound { .. }
            | StoreError::CredentialExpired { .. }
            | StoreError::AlreadyExists { .. },
        ) => return Ok(()),
        Err(e) => return Err(OAuthError::server("cannot store the revocation", &e)),
    }
    if !oauth
        .ca
        .revocation_published(CredentialKind::JwtSvid, jti)
        .await
    {
        tracing::warn!(%jti, "the revocation is stored but not yet published");
    }
    tracing::info!(%jti, client = %client.id, "token revoked through /oauth2/revoke");
    let audit = oauth.issuer.audit();
    audit.record_detached(
        audit
            .event(
                client.id.as_str(),
                "credential.revoke",
                &sigil_store::Revocation::feed_key(CredentialKind::JwtSvid, jti),
                sigil_store::Outcome::Success,
            )
            .detail("via", "/oauth2/revoke"),
    );
    Ok(())
}

impl OAuth {
    /// Header and claims of `token` if this trust domain's JWT authority signed it (whatever
    /// its expiry); `None` otherwise.
    pub(crate) fn own_token(&self, token: &str) -> Option<(JsonObject, JsonObject)> {
        let bundle = self.ca.bundle();
        let verified = jose::verify(
            token,
            &[jose::JwsAlgorithm::Es256, jose::JwsAlgorithm::Es384],
            |kid, alg| self.bundle_key_for(&bundle, kid?, alg),
        )
        .ok()?;
        Some((verified.header, verified.claims))
    }
}
