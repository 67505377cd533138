//! The admin router: one table of (method, path, handler) from which the router is built, so the
//! OpenAPI document can be checked against exactly what is served. Also the two routes that
//! describe the API itself (`openapi.json`, `health`) and the JSON fallbacks for unknown routes.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::handler::Handler;
use axum::http::{Method, Uri};
use axum::middleware;
use axum::routing::{self, MethodRouter};
use axum::{Json, Router};
use serde_json::Value;
use sigil_api::{ErrorCode, Health, MAX_REQUEST_BODY_BYTES, paths};

use super::api_error::{ApiError, quote};
use super::audit_layer::{AuditedRoutes, record_changes};
use super::credentials;
use super::{
    AdminState, agents, audit, authorities, bundle, entries, federations, inventory, join_tokens,
    policy, revocations,
};

/// One served route.
pub(crate) struct Route {
    pub(crate) method: Method,
    pub(crate) path: &'static str,
    handler: MethodRouter<AdminState>,
    /// The action a call is audited as; `None` for routes that change nothing.
    pub(crate) action: Option<&'static str>,
}

impl Route {
    /// Audits calls of this route as `action`.
    fn audited(mut self, action: &'static str) -> Self {
        self.action = Some(action);
        self
    }
}

/// The admin API router over `state`: every route of [`route_table`], request bodies limited to
/// [`MAX_REQUEST_BODY_BYTES`], and JSON error bodies for unknown paths (404) and methods (405).
pub fn router(state: AdminState) -> Router {
    let table = route_table();
    let audited: AuditedRoutes = Arc::new(
        table
            .iter()
            .filter_map(|r| r.action.map(|a| ((r.method.clone(), r.path), a)))
            .collect(),
    );
    table
        .into_iter()
        .fold(Router::new(), |router, route| {
            router.route(route.path, route.handler)
        })
        .route_layer(middleware::from_fn_with_state(
            (state.clone(), audited),
            record_changes,
        ))
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY_BYTES))
        .with_state(state)
}

/// Every route the admin API serves.
pub(crate) fn route_table() -> Vec<Route> {
    vec![
        get(paths::OPENAPI, openapi),
        get(paths::HEALTH, health),
        post(paths::ENTRIES, entries::create).audited("entry.create"),
        post(paths::ENTRIES_BATCH_CREATE, entries::batch_create).audited("entry.batch_create"),
        get(paths::ENTRIES, entries::list),
        get(paths::ENTRY, entries::show),
        put(paths::ENTRY, entries::replace).audited("entry.update"),
        delete(paths::ENTRY, entries::delete).audited("entry.delete"),
        post(paths::ENTRY_REVIEW, audit::review).audited("entry.review"),
        post(paths::JOIN_TOKENS, join_tokens::create).audited("join_token.create"),
        get(paths::AGENTS, agents::list),
        get(paths::AGENT, agents::show),
        delete(paths::AGENT, agents::evict).audited("agent.evict"),
        post(paths::AGENT_BAN, agents::ban).audited("agent.ban"),
        get(paths::BUNDLE, bundle::show),
        get(paths::AUTHORITIES, authorities::list),
        post(paths::AUTHORITIES_PREPARE, authorities::prepare).audited("authority.prepare"),
        post(paths::AUTHORITY_ACTIVATE, authorities::activate).audited("authority.activate"),
        post(paths::AUTHORITY_TAINT, authorities::taint).audited("authority.taint"),
        post(paths::AUTHORITY_REVOKE, authorities::revoke).audited("authority.revoke"),
        post(paths::REVOCATIONS, revocations::revoke).audited("credential.revoke"),
        get(paths::REVOCATIONS, revocations::list),
        post(paths::FEDERATIONS, federations::create).audited("federation.create"),
        get(paths::FEDERATIONS, federations::list),
        get(paths::FEDERATION, federations::show),
        patch(paths::FEDERATION, federations::update).audited("federation.update"),
        delete(paths::FEDERATION, federations::delete).audited("federation.delete"),
        post(paths::FEDERATION_REFRESH, federations::refresh).audited("federation.refresh_request"),
        get(paths::POLICY, policy::show),
        post(paths::POLICY_DECIDE, policy::decide),
        post(paths::POLICY_RELOAD, policy::reload).audited("policy.reload_request"),
        get(paths::AUDIT, audit::list),
        get(paths::AUDIT_EXPORT, audit::export),
        post(paths::AUDIT_VERIFY, audit::verify),
        get(paths::AUDIT_KEYS, audit::keys),
        get(paths::INVENTORY, inventory::summary),
        get(paths::INVENTORY_ENTRIES, inventory::list_entries),
        get(paths::INVENTORY_ENTRY, inventory::show_entry),
        get(paths::INVENTORY_OWNERS, inventory::list_owners),
        get(paths::INVENTORY_REPORT, inventory::report),
        get(paths::CREDENTIAL_TARGETS, credentials::list_targets),
        post(paths::CREDENTIAL_TARGETS, credentials::create_target)
            .audited("credential_target.create"),
        get(paths::CREDENTIAL_TARGET, credentials::show_target),
        put(paths::CREDENTIAL_TARGET, credentials::update_target)
            .audited("credential_target.update"),
        delete(paths::CREDENTIAL_TARGET, credentials::delete_target)
            .audited("credential_target.delete"),
        post(
            paths::CREDENTIAL_TARGET_ROTATE_ROOT,
            credentials::rotate_root,
        )
        .audited("credential_target.rotate_root"),
        get(paths::LEASES, credentials::list_leases),
        post(paths::LEASES_REVOKE, credentials::revoke_matching).audited("lease.revoke_matching"),
        get(paths::LEASE, credentials::show_lease),
        post(paths::ADMIN_LEASE_RENEW, credentials::renew_lease).audited("lease.renew"),
        post(paths::ADMIN_LEASE_REVOKE, credentials::revoke_lease).audited("lease.revoke"),
    ]
}

/// Builders that set the documented method and the axum method filter together, so the table
/// cannot disagree with itself.
macro_rules! route_builder {
    ($name:ident, $method:expr, $filter:path) => {
        fn $name<H, T>(path: &'static str, handler: H) -> Route
        where
            H: Handler<T, AdminState>,
            T: 'static,
        {
            Route {
                method: $method,
                path,
                handler: $filter(handler),
                action: None,
            }
        }
    };
}
route_builder!(get, Method::GET, routing::get);
route_builder!(post, Method::POST, routing::post);
route_builder!(put, Method::PUT, routing::put);
route_builder!(patch, Method::PATCH, routing::patch);
route_builder!(delete, Method::DELETE, routing::delete);

/// `GET /api/v1/openapi.json`: the document for this server's trust domain.
async fn openapi(State(state): State<AdminState>) -> Json<Value> {
    Json(sigil_api::openapi_document(&state.trust_domain))
}

/// `GET /api/v1/health` → `{"status": "ok", "trust_domain": …}`.
async fn health(State(state): State<AdminState>) -> Json<Health> {
    Json(Health {
        status: "ok".to_owned(),
        trust_domain: state.trust_domain.to_string(),
    })
}

// The fallbacks read the request body (within the body limit) before answering: a body left
// unread makes the HTTP/1 connection close after the answer, and a client that already sent its
// next request on that kept-alive connection then sees it closed without a response.

async fn unknown_route(method: Method, uri: Uri, body: Result<Bytes, BytesRejection>) -> ApiError {
    drop(body);
    ApiError::not_found(format!("no route for {method} `{}`", quote(uri.path())))
}

async fn method_not_allowed(
    method: Method,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> ApiError {
    drop(body);
    ApiError {
        code: ErrorCode::MethodNotAllowed,
        message: format!("{method} is not allowed on `{}`", quote(uri.path())),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use axum::http::{Method, StatusCode};
    use serde_json::json;

    use super::*;
    use crate::admin::test_support::Harness;

    fn example_org() -> sigil_spiffe::TrustDomain {
        sigil_spiffe::TrustDomain::parse("example.org").unwrap()
    }

    fn documented_routes() -> BTreeSet<(String, String)> {
        let doc = sigil_api::openapi_document(&example_org());
        let mut out = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                if method != "parameters" {
                    out.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        out
    }

    #[test]
    fn openapi_document_lists_exactly_the_served_routes() {
        let served: BTreeSet<(String, String)> = route_table()
            .iter()
            .map(|r| (r.method.to_string(), r.path.to_owned()))
            .collect();
        assert_eq!(served, documented_routes());
    }

    #[tokio::test]
    async fn every_documented_route_is_answered_by_its_handler() {
        let h = Harness::new().await;
        for (method, path) in documented_routes() {
            let uri = path
                .replace("{id}", "some-id")
                .replace("{spiffe_id}", "spiffe%3A%2F%2Fexample.org%2Fa")
                .replace("{trust_domain}", "partner.org");
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            let body = (method == Method::POST || method == Method::PUT || method == Method::PATCH)
                .then(|| json!({}));
            let (status, body) = h.call(method.clone(), &uri, body).await;
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
            let message = body["error"]["message"].as_str().unwrap_or_default();
            assert!(
                !message.starts_with("no route"),
                "{method} {uri}: {message}"
            );
        }
    }

    #[tokio::test]
    async fn unknown_routes_and_methods_answer_json_errors() {
        let h = Harness::new().await;
        let (status, body) = h.call(Method::GET, "/api/v1/nothing", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"]["code"], "not_found");
        assert_eq!(
            body["error"]["message"],
            "no route for GET `/api/v1/nothing`"
        );
        let (status, body) = h.call(Method::DELETE, "/api/v1/health", None).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body["error"]["code"], "method_not_allowed");
    }

    #[tokio::test]
    async fn serves_the_openapi_document() {
        let h = Harness::new().await;
        let (status, doc) = h.call(Method::GET, "/api/v1/openapi.json", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(doc, sigil_api::openapi_document(&example_org()));
    }

    #[tokio::test]
    async fn health_reports_the_trust_domain() {
        let h = Harness::new().await;
        let (status, body) = h.call(Method::GET, "/api/v1/health", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({"status": "ok", "trust_domain": "example.org"}));
    }
}
