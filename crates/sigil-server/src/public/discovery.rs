//! OIDC discovery of the JWT-SVID keys: `/.well-known/openid-configuration` names the issuer and
//! the JWKS URI, `/keys` lists every published JWT authority (the next key among them from half
//! its predecessor's life, before it signs) as a JWK with `use: sig` and its `alg`: common JOSE
//! libraries skip keys whose `use` is SPIFFE's `jwt-svid`.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{PublicState, error};

/// `/.well-known/openid-configuration`, or 404 when no issuer is configured.
pub(super) async fn configuration(State(state): State<PublicState>) -> Response {
    let Some(issuer) = state.issuer.as_deref() else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            "OIDC discovery is off: no issuer is configured ([public] issuer)",
        );
    };
    let base = issuer.trim_end_matches('/');
    let mut document = json!({
        "issuer": issuer,
        "jwks_uri": format!("{base}/keys"),
        "authorization_endpoint": format!("{base}/authorize"),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256", "ES384"],
        "claims_supported": ["sub", "aud", "exp", "iat", "iss", "jti"],
    });
    if let (Some(oauth), Some(map)) = (&state.oauth, document.as_object_mut()) {
        let [token, introspection, revocation] = oauth.endpoints();
        // RFC 8414 names; client authentication per draft-ietf-oauth-spiffe-client-auth: a
        // JWT-SVID or an RFC 7523 JWT as client assertion (both `private_key_jwt`-style
        // assertions, told apart by `client_assertion_type`), or mutual TLS with an X509-SVID.
        let auth_methods = json!(["none", "private_key_jwt", "tls_client_auth"]);
        for (name, value) in [
            ("token_endpoint", json!(token)),
            ("introspection_endpoint", json!(introspection)),
            ("revocation_endpoint", json!(revocation)),
            (
                "grant_types_supported",
                json!([crate::oauth::GRANT_TOKEN_EXCHANGE]),
            ),
            (
                "token_endpoint_auth_methods_supported",
                auth_methods.clone(),
            ),
            (
                "token_endpoint_auth_signing_alg_values_supported",
                json!(["ES256", "ES384", "RS256", "PS256", "EdDSA"]),
            ),
            (
                "introspection_endpoint_auth_methods_supported",
                json!(["private_key_jwt", "tls_client_auth"]),
            ),
            (
                "revocation_endpoint_auth_methods_supported",
                json!(["private_key_jwt", "tls_client_auth"]),
            ),
            (
                "client_assertion_types_supported",
                json!([
                    crate::oauth::ASSERTION_JWT_SPIFFE,
                    crate::oauth::ASSERTION_JWT_BEARER
                ]),
            ),
            ("tls_client_certificate_bound_access_tokens", json!(false)),
        ] {
            map.insert(name.to_owned(), value);
        }
    }
    (
        [(header::CACHE_CONTROL, "max-age=300")],
        axum::Json(document),
    )
        .into_response()
}

/// `/keys`: the JWT authorities of the published bundle as a JWK Set for relying parties.
pub(super) async fn keys(State(state): State<PublicState>) -> Response {
    let mut jwks = sigil_keys::bundle_json::jwks_for_jwt(&state.ca.bundle());
    for key in &mut jwks.keys {
        key.key_use = Some("sig".to_owned());
        key.alg = match key.crv.as_deref() {
            Some("P-256") => Some("ES256".to_owned()),
            Some("P-384") => Some("ES384".to_owned()),
            _ => None,
        };
    }
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            // Short: a relying party must see the next key soon after it is published.
            (header::CACHE_CONTROL, "max-age=60"),
        ],
        jwks.to_json(),
    )
        .into_response()
}
