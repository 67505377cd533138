//! The workload-facing endpoints on the public listener:
//! - `POST /creds/v1/credentials` `{"target", "role", "ttl"?}` → 201 with the credential (the
//!   only place its password appears);
//! - `POST /creds/v1/leases/{id}/renew` `{"increment"?}` and `POST /creds/v1/leases/{id}/revoke`
//!   for the caller's own leases (another workload's lease is a 404).
//!
//! The caller authenticates as in [`super::caller`] and must have a registration entry with its
//! SPIFFE ID right now (a deleted entry's SVID gets nothing more). Errors are the listener's JSON
//! error body `{"error", "error_description"}`: `invalid_request` 400, `invalid_client` 401,
//! `access_denied` 403, `not_found` 404, `conflict` 409, `bad_gateway` 502 (the target database
//! refused), `temporarily_unavailable` 503 (it could not be reached), `server_error` 500.

use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::de::DeserializeOwned;
use sigil_api::credentials::{CREDENTIALS_PATH, LEASE_RENEW_PATH, LEASE_REVOKE_PATH};
use sigil_api::{CredentialRequest, LeaseRenewed, RenewLeaseRequest, TtlValue};
use sigil_spiffe::{Clock, SpiffeId, Ttl};
use sigil_store::{Datastore, EntryFilter};

use super::caller::CallerAuth;
use super::{Credentials, CredentialsError, Requester};
use crate::public::{PeerInfo, error};

/// Largest request body, in bytes.
pub const MAX_BODY_BYTES: usize = 4096;

/// What the endpoints need.
#[derive(Clone)]
pub struct CredsState {
    pub credentials: Arc<Credentials>,
    pub auth: CallerAuth,
    pub store: Arc<dyn Datastore>,
    pub clock: Arc<dyn Clock>,
}

/// The routes, to merge into the public router.
pub fn router(state: CredsState) -> Router {
    Router::new()
        .route(CREDENTIALS_PATH, post(create))
        .route(LEASE_RENEW_PATH, post(renew))
        .route(LEASE_REVOKE_PATH, post(revoke))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// The HTTP status and error code of `e`.
pub fn status_of(e: &CredentialsError) -> (StatusCode, &'static str) {
    use super::database::DatabaseError;
    match e {
        CredentialsError::UnknownTarget(_)
        | CredentialsError::UnknownRole { .. }
        | CredentialsError::UnknownLease(_) => (StatusCode::NOT_FOUND, "not_found"),
        CredentialsError::TtlTooLong { .. } | CredentialsError::InvalidTarget { .. } => {
            (StatusCode::BAD_REQUEST, "invalid_request")
        }
        CredentialsError::RotateNeedsFile(_) | CredentialsError::ConfiguredTarget(_) => {
            (StatusCode::CONFLICT, "conflict")
        }
        CredentialsError::Denied { .. } => (StatusCode::FORBIDDEN, "access_denied"),
        CredentialsError::LeaseNotActive { .. } => (StatusCode::CONFLICT, "conflict"),
        CredentialsError::Database { source, .. } => match source {
            DatabaseError::Unreachable { .. } | DatabaseError::Timeout { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
            }
            _ => (StatusCode::BAD_GATEWAY, "bad_gateway"),
        },
        CredentialsError::AdminPassword { .. } | CredentialsError::Audit(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
        }
        CredentialsError::Random(_) => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
        CredentialsError::Store(e) => match e.cause() {
            sigil_store::StoreError::Invalid { .. } => (StatusCode::CONFLICT, "conflict"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
        },
    }
}

/// `e` as the endpoint's error response. Store failures are logged, not shown.
pub fn error_response(e: &CredentialsError) -> Response {
    let (status, code) = status_of(e);
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::warn!(error = %e, "credentials request failed");
        return error(status, code, "internal error; see the server log");
    }
    error(status, code, &e.to_string())
}

/// A TTL of a request body in seconds.
pub fn ttl_seconds(field: &str, raw: Option<&TtlValue>) -> Result<Option<u64>, String> {
    match raw {
        None => Ok(None),
        Some(TtlValue::Seconds(n)) => Ok(Some(*n)),
        Some(TtlValue::Text(text)) => Ttl::parse(text)
            .map(|t| Some(t.as_secs()))
            .map_err(|e| format!("`{field}` `{text}`: {e}")),
    }
}

struct Caller {
    spiffe_id: SpiffeId,
    requester: Requester,
}

/// What the caller presented: its bearer token, its client certificate's SPIFFE ID, its
/// address. Read before anything is awaited (a request is not `Sync`).
struct Presented {
    bearer: Option<String>,
    tls_client: Option<SpiffeId>,
    source_address: Option<String>,
}

fn presented(request: &Request) -> Result<Presented, &'static str> {
    let peer = request.extensions().get::<ConnectInfo<PeerInfo>>();
    let bearer = match request.headers().get(header::AUTHORIZATION) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::to_owned)
                .ok_or("the Authorization header must be `Bearer <JWT-SVID>`")?,
        ),
    };
    Ok(Presented {
        bearer,
        tls_client: peer.and_then(|info| info.0.client_spiffe_id.clone()),
        source_address: peer.map(|info| info.0.remote.ip().to_string()),
    })
}

async fn authenticate_presented(
    state: &CredsState,
    presented: Presented,
) -> Result<Caller, Response> {
    let now = state.clock.unix_secs();
    let Presented {
        bearer,
        tls_client,
        source_address,
    } = presented;
    let bearer = bearer.as_deref();
    let (spiffe_id, via) = state
        .auth
        .authenticate(bearer, tls_client.as_ref(), now)
        .map_err(|e| error(StatusCode::UNAUTHORIZED, "invalid_client", &e))?;
    let filter = EntryFilter {
        spiffe_id: Some(spiffe_id.clone()),
        ..EntryFilter::default()
    };
    let entries = state
        .store
        .list_entries_page(&filter, None, 2)
        .await
        .map_err(|e| error_response(&CredentialsError::Store(e)))?;
    let Some(entry) = entries.first() else {
        return Err(error(
            StatusCode::FORBIDDEN,
            "access_denied",
            &format!("no registration entry has SPIFFE ID `{spiffe_id}`"),
        ));
    };
    let requester = Requester {
        spiffe_id: spiffe_id.clone(),
        entry_id: (entries.len() == 1).then(|| entry.id.clone()),
        owner: entry.spec.owner.clone(),
        selectors: Vec::new(),
        // Only when the entry is the one with this SPIFFE ID: another's labels would not be its.
        labels: if entries.len() == 1 {
            sigil_store::label_strings(&entry.spec.labels)
        } else {
            Vec::new()
        },
        agent: None,
        source_address,
        via,
    };
    Ok(Caller {
        spiffe_id,
        requester,
    })
}

/// The JSON body of `request`; an empty body is `default` when there is one.
async fn body<T: DeserializeOwned>(request: Request, default: Option<T>) -> Result<T, Response> {
    let bytes = axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                &format!("the body is larger than {MAX_BODY_BYTES} bytes"),
            )
        })?;
    if bytes.is_empty()
        && let Some(default) = default
    {
        return Ok(default);
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("invalid request body: {e}"),
        )
    })
}

async fn create(State(state): State<CredsState>, request: Request) -> Response {
    let presented = match presented(&request) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::UNAUTHORIZED, "invalid_client", e),
    };
    let caller = match authenticate_presented(&state, presented).await {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    let wanted: CredentialRequest = match body(request, None).await {
        Ok(b) => b,
        Err(response) => return response,
    };
    let ttl = match ttl_seconds("ttl", wanted.ttl.as_ref()) {
        Ok(ttl) => ttl,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_request", &e),
    };
    match state
        .credentials
        .issue(&caller.requester, &wanted.target, &wanted.role, ttl)
        .await
    {
        Ok(issued) => (
            StatusCode::CREATED,
            [(header::CACHE_CONTROL, "no-store")],
            axum::Json(issued.to_wire(state.clock.unix_secs())),
        )
            .into_response(),
        Err(e) => error_response(&e),
    }
}

async fn renew(
    State(state): State<CredsState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let presented = match presented(&request) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::UNAUTHORIZED, "invalid_client", e),
    };
    let caller = match authenticate_presented(&state, presented).await {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    let wanted = match body(request, Some(RenewLeaseRequest::default())).await {
        Ok(b) => b,
        Err(response) => return response,
    };
    let increment = match ttl_seconds("increment", wanted.increment.as_ref()) {
        Ok(i) => i,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_request", &e),
    };
    let actor = caller.spiffe_id.to_string();
    match state
        .credentials
        .renew(&id, increment, Some(&caller.spiffe_id), &actor)
        .await
    {
        Ok(lease) => {
            let now = state.clock.unix_secs();
            axum::Json(LeaseRenewed {
                lease_id: lease.id,
                expires_at: lease.expires_at,
                max_expires_at: lease.max_expires_at,
                lease_duration: u64::try_from(lease.expires_at.saturating_sub(now)).unwrap_or(0),
            })
            .into_response()
        }
        Err(e) => error_response(&e),
    }
}

async fn revoke(
    State(state): State<CredsState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let presented = match presented(&request) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::UNAUTHORIZED, "invalid_client", e),
    };
    let caller = match authenticate_presented(&state, presented).await {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    let actor = caller.spiffe_id.to_string();
    match state
        .credentials
        .revoke(
            &id,
            &format!("revoked by {actor}"),
            Some(&caller.spiffe_id),
            &actor,
        )
        .await
    {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error_response(&e),
    }
}
