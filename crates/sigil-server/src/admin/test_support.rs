//! Test harness for the admin handlers: the router over an in-memory SQLite store, a fake clock,
//! trust domain `example.org`, a CA on that store (in-memory keys, default lifetimes) and the
//! built-in default policy set, driven with `tower::ServiceExt::oneshot`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};
use sigil_keys::MemoryKeyManager;
use sigil_spiffe::TrustDomain;
use sigil_store::{Datastore, SqliteStore};
use sigil_testkit::FakeClock;
use tower::ServiceExt;

use super::{AdminState, router};
use crate::ca::{CaLifetimes, CaManager};
use crate::metrics::Metrics;
use crate::policy::Policies;

/// Unix time the fake clock starts at.
pub(crate) const START: i64 = 1_700_000_000;

/// A router plus direct access to its store, clock and CA. The store holds no entries, agents
/// or tokens; it holds the CA's authorities and published bundle.
pub(crate) struct Harness {
    pub(crate) store: Arc<dyn Datastore>,
    pub(crate) clock: FakeClock,
    pub(crate) ca: Arc<CaManager>,
    router: Router,
}

/// Fresh admin state over an in-memory store holding only the CA's authorities and bundle.
pub(crate) async fn state() -> AdminState {
    state_and_clock().await.0
}

/// Fresh admin state as [`state`] gives it, and the fake clock it reads.
pub(crate) async fn state_and_clock() -> (AdminState, FakeClock) {
    let store: Arc<dyn Datastore> = Arc::new(SqliteStore::open_in_memory().unwrap());
    let start = std::time::UNIX_EPOCH + Duration::from_secs(START.unsigned_abs());
    let clock = FakeClock::new(start);
    let trust_domain = TrustDomain::parse("example.org").unwrap();
    let ca = CaManager::load_or_init(
        trust_domain.clone(),
        "",
        Arc::new(MemoryKeyManager::new()),
        store.clone(),
        Arc::new(clock.clone()),
        CaLifetimes::default(),
        None,
    )
    .await
    .unwrap();
    let governance = Arc::new(crate::governance::GovernanceContext::new(
        store.clone(),
        Arc::new(clock.clone()),
        trust_domain.clone(),
        crate::governance::InventoryConfig::default(),
        Vec::new(),
        None,
    ));
    let credentials = crate::credentials::Credentials::new(
        crate::credentials::CredentialsConfig::default(),
        store.clone(),
        Arc::new(clock.clone()),
        policies(None),
        crate::audit::AuditLog::disabled(),
        String::new(),
    )
    .unwrap();
    let state = AdminState {
        store,
        trust_domain,
        clock: Arc::new(clock.clone()),
        agents: None,
        publishes_revocations: false,
        ca,
        federation: None,
        policies: Some(policies(None)),
        audit: crate::audit::AuditLog::disabled(),
        governance,
        credentials: Some(Arc::new(credentials)),
    };
    (state, clock)
}

/// The policy set of `dir` (which must be valid), or the built-in default without one.
pub(crate) fn policies(dir: Option<&Path>) -> Arc<Policies> {
    Arc::new(Policies::load(dir, Arc::new(Metrics::new())).unwrap())
}

impl Harness {
    pub(crate) async fn new() -> Self {
        let (state, clock) = state_and_clock().await;
        Self::with_state(state, clock)
    }

    /// A harness over `state` and its `clock` (for tests that change what [`state_and_clock`]
    /// gives).
    pub(crate) fn with_state(state: AdminState, clock: FakeClock) -> Self {
        Self {
            store: state.store.clone(),
            clock,
            ca: state.ca.clone(),
            router: router(state),
        }
    }

    /// Sends `body` as JSON (when given) and decodes the JSON answer (`null` when empty).
    pub(crate) async fn call(
        &self,
        method: Method,
        uri: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let raw = body.map(|b| b.to_string()).unwrap_or_default();
        self.call_raw(method, uri, &raw).await
    }

    /// Sends `raw` bytes as the body and decodes the JSON answer (`null` when empty).
    pub(crate) async fn call_raw(
        &self,
        method: Method,
        uri: &str,
        raw: &str,
    ) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(raw.to_owned()))
            .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|err| {
                panic!(
                    "answer is not JSON ({err}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        (status, value)
    }
}

/// A valid entry request for `spiffe://example.org/<name>`.
pub(crate) fn entry_body(name: &str) -> Value {
    json!({
        "spiffe_id": format!("spiffe://example.org/{name}"),
        "parent_id": "spiffe://example.org/sigil/agent/join_token/abc",
        "selectors": ["unix:uid:1000"],
        "x509_svid_ttl": "1h",
        "owner": "team-web",
    })
}
