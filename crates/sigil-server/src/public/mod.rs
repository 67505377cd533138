//! The server's public HTTP listener: what relying parties, peers and monitoring read without
//! credentials. One listener, HTTPS (a web PKI certificate from files, or the server's own
//! X509-SVID), or plain HTTP on loopback for `sigil dev` only:
//! - `/bundle`: the SPIFFE bundle endpoint (profile `https_web` with a file certificate,
//!   `https_spiffe` with the SVID), `/crl`: the CRLs of the X.509 authorities;
//! - `/.well-known/openid-configuration` and `/keys`: OIDC discovery of the JWT-SVID keys;
//! - `/healthz`, `/readyz`, `/metrics` (Prometheus text).
//!
//! Requests carry no body worth reading: bodies are refused past [`MAX_BODY_BYTES`], and every
//! error is a JSON body `{"error": …, "error_description": …}` (the OAuth error format the
//! token endpoints on this listener speak too).

mod discovery;
mod listener;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use sigil_store::Datastore;
use zeroize::Zeroizing;

use crate::agent_index::AgentIndex;
use crate::ca::CaManager;
use crate::entry_index::EntryIndex;
use crate::metrics::Metrics;

pub use listener::{PeerInfo, PublicListener, bind};

/// Largest request body accepted, in bytes, except by the OAuth endpoints (which take
/// [`crate::oauth::MAX_BODY_BYTES`]).
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Longest `/readyz` waits for the datastore.
const READY_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the public listener listens and what it presents.
#[derive(Debug, Clone)]
pub struct PublicConfig {
    pub bind_address: SocketAddr,
    pub tls: PublicTls,
    /// The OIDC issuer URL: served in the discovery document and carried as `iss` by every
    /// JWT-SVID. Without it there is no discovery document.
    pub issuer: Option<String>,
}

/// The certificate the public listener presents.
#[derive(Clone)]
pub enum PublicTls {
    /// The server's own X509-SVID, renewed with it (bundle endpoint profile `https_spiffe`).
    Svid,
    /// A certificate chain (leaf first, DER) and its PKCS#8 key, e.g. from a web PKI CA (profile
    /// `https_web`).
    Files {
        chain: Vec<Vec<u8>>,
        key_pkcs8: Arc<Zeroizing<Vec<u8>>>,
    },
    /// No TLS: `sigil dev` on a loopback address only.
    PlainLoopback,
}

impl std::fmt::Debug for PublicTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Svid => f.write_str("Svid"),
            Self::Files { chain, .. } => f
                .debug_struct("Files")
                .field("certificates", &chain.len())
                .field("key", &"<redacted>")
                .finish(),
            Self::PlainLoopback => f.write_str("PlainLoopback"),
        }
    }
}

/// What the handlers read.
#[derive(Clone)]
pub(crate) struct PublicState {
    pub(crate) ca: Arc<CaManager>,
    pub(crate) store: Arc<dyn Datastore>,
    pub(crate) entries: Arc<EntryIndex>,
    pub(crate) agents: Arc<AgentIndex>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) issuer: Option<Arc<str>>,
    /// Token exchange and its endpoints, when configured.
    pub(crate) oauth: Option<Arc<crate::oauth::OAuth>>,
    /// The policy set in force (its hash is in `/readyz`).
    pub(crate) policies: Arc<crate::policy::Policies>,
    /// The audit log: its problems are warnings on `/readyz` (a failing sink or store never
    /// makes the server unready: serving is not blocked by auditing).
    pub(crate) audit: crate::audit::AuditLog,
    /// `/creds/v1`: brokered database credentials for workloads.
    pub(crate) credentials: Option<crate::credentials::http::CredsState>,
}

/// Every route of the public listener.
pub(crate) fn router(state: PublicState) -> Router {
    let oauth = state.oauth.clone().map(crate::oauth::router);
    let credentials = state
        .credentials
        .clone()
        .map(crate::credentials::http::router);
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/bundle", get(bundle))
        .route("/crl", get(crl))
        .route(
            "/.well-known/openid-configuration",
            get(discovery::configuration),
        )
        .route("/keys", get(discovery::keys))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state);
    let router = match oauth {
        Some(oauth) => router.merge(oauth),
        None => router,
    };
    match credentials {
        Some(credentials) => router.merge(credentials),
        None => router,
    }
    .fallback(not_found)
    .method_not_allowed_fallback(method_not_allowed)
}

/// An error response in the OAuth format.
pub(crate) fn error(status: StatusCode, code: &str, description: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({"error": code, "error_description": description})),
    )
        .into_response()
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

async fn method_not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method",
    )
}

async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

/// Ready when the datastore answers within [`READY_PROBE_TIMEOUT`] (the server serves from
/// memory without it, but cannot take writes).
async fn readyz(State(state): State<PublicState>) -> Response {
    match tokio::time::timeout(READY_PROBE_TIMEOUT, state.store.latest_change()).await {
        Ok(Ok(_)) => {
            let audit = state.audit.status();
            axum::Json(json!({
                "status": "ready",
                "policy_hash": state.policies.hash(),
                "audit": {
                    "enabled": audit.enabled,
                    "failing": audit.failing,
                    "dropped": audit.dropped,
                    "warnings": audit.warnings,
                },
            }))
            .into_response()
        }
        Ok(Err(e)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "datastore_unavailable",
            &format!("the datastore does not answer: {e}"),
        ),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "datastore_unavailable",
            "the datastore did not answer within 2 s",
        ),
    }
}

async fn metrics(State(state): State<PublicState>) -> Response {
    let m = &state.metrics;
    m.entries
        .set(i64::try_from(state.entries.len()).unwrap_or(i64::MAX));
    m.bundle_sequence
        .set(i64::try_from(state.ca.bundle().sequence).unwrap_or(i64::MAX));
    if let Ok(Ok(latest)) =
        tokio::time::timeout(READY_PROBE_TIMEOUT, state.store.latest_change()).await
    {
        let applied = state.agents.applied_position();
        m.change_feed_lag
            .set(i64::try_from(latest.saturating_sub(applied)).unwrap_or(i64::MAX));
    }
    // At most every five minutes, and only when the server attached its governance context.
    crate::governance::update_gauges(m).await;
    match m.encode() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "cannot encode the metrics",
        ),
    }
}

/// The SPIFFE bundle endpoint: the trust bundle document as published now.
async fn bundle(State(state): State<PublicState>) -> Response {
    match sigil_keys::bundle_json::to_document(&state.ca.bundle()) {
        Ok(document) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            document.to_json(),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode the trust bundle");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "cannot encode the trust bundle",
            )
        }
    }
}

/// The CRL of every X.509 authority that signs one, as PEM `X509 CRL` blocks.
async fn crl(State(state): State<PublicState>) -> Response {
    let revocations = state.ca.revocations();
    let pem = sigil_keys::pem::encode_many("X509 CRL", revocations.crls.iter().map(Vec::as_slice));
    (
        [
            (header::CONTENT_TYPE, "application/x-pem-file"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        pem,
    )
        .into_response()
}
