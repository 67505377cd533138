//! `GET /api/v1/bundle`: the server's own trust bundle document.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use sigil_spiffe::BundleDocument;

use super::AdminState;
use super::api_error::ApiError;

/// `GET /api/v1/bundle` → the stored SPIFFE bundle document of the server's trust domain, or 404
/// when the CA has not published one yet. The stored JSON is checked before it is served.
pub(crate) async fn show(State(state): State<AdminState>) -> Result<Response, ApiError> {
    let td = &state.trust_domain;
    let bundle = state.store.get_bundle(td.as_str()).await?.ok_or_else(|| {
        ApiError::not_found(format!(
            "no trust bundle for `{td}` yet: the CA has not published it"
        ))
    })?;
    BundleDocument::parse(&bundle.document)
        .map_err(|err| ApiError::internal("stored trust bundle does not parse", &err))?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        bundle.document,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use axum::http::{Method, StatusCode};
    use serde_json::json;
    use sigil_spiffe::TrustDomain;
    use sigil_store::StoredBundle;

    use crate::admin::test_support::Harness;

    #[tokio::test]
    async fn serves_the_bundle_the_ca_published() {
        let h = Harness::new().await;
        let (status, served) = h.call(Method::GET, "/api/v1/bundle", None).await;
        assert_eq!(status, StatusCode::OK, "{served}");
        let kids: Vec<&str> = served["keys"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|k| k["kid"].as_str())
            .collect();
        let jwt = &h.ca.bundle().jwt_authorities;
        assert_eq!(jwt.len(), 1);
        assert!(kids.contains(&jwt[0].kid.as_str()), "{served}");
    }

    #[tokio::test]
    async fn bundle_is_404_until_published_then_the_stored_document() {
        let h = Harness::new().await;
        h.store.delete_bundle("example.org").await.unwrap();
        let (status, err) = h.call(Method::GET, "/api/v1/bundle", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(err["error"]["code"], "not_found");

        let document = json!({"keys": [{"kty": "EC", "use": "jwt-svid", "kid": "k1", "crv": "P-256", "x": "AA", "y": "AA"}],
                              "spiffe_sequence": 3, "spiffe_refresh_hint": 300});
        h.store
            .put_bundle(StoredBundle {
                trust_domain: TrustDomain::parse("example.org").unwrap(),
                document: serde_json::to_vec(&document).unwrap(),
                sequence: 3,
                updated_at: 1,
            })
            .await
            .unwrap();
        let (status, served) = h.call(Method::GET, "/api/v1/bundle", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(served, document);
    }

    #[tokio::test]
    async fn corrupt_stored_bundle_is_500_without_details() {
        let h = Harness::new().await;
        h.store
            .put_bundle(StoredBundle {
                trust_domain: TrustDomain::parse("example.org").unwrap(),
                document: b"{broken".to_vec(),
                sequence: 1,
                updated_at: 1,
            })
            .await
            .unwrap();
        let (status, err) = h.call(Method::GET, "/api/v1/bundle", None).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(err["error"]["code"], "internal");
    }
}
