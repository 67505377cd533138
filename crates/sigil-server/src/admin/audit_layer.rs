//! Auditing of admin changes: one layer around every admin route that changes something records
//! who (the Unix user on the admin socket), what (the route's action), to what (the path's
//! parameter, or what the handler names), and the outcome (from the status), and answers only
//! once the record is committed, so no change is acknowledged that the chain does not hold. A
//! change whose record cannot be written is answered 503 (it was made; the caller is told it is
//! unaudited).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::IncomingStream;
use sigil_api::ErrorCode;
use sigil_store::Outcome;
use tokio::net::UnixListener;

use super::AdminState;
use super::api_error::ApiError;

/// Which action each changing route is audited as, by method and path template.
pub(crate) type AuditedRoutes = Arc<HashMap<(Method, &'static str), &'static str>>;

/// The admin socket's peer: its Unix user, from the socket's credentials.
#[derive(Debug, Clone, Copy)]
pub struct AdminPeer {
    pub uid: Option<u32>,
}

impl Connected<IncomingStream<'_, UnixListener>> for AdminPeer {
    fn connect_info(stream: IncomingStream<'_, UnixListener>) -> Self {
        Self {
            uid: stream.io().peer_cred().ok().map(|cred| cred.uid()),
        }
    }
}

/// What a handler adds to its change's audit record: the target when the path does not name
/// it (a created entry's id), and details. Put in the response's extensions.
#[derive(Debug, Clone, Default)]
pub(crate) struct AuditNote {
    target: Option<String>,
    details: serde_json::Map<String, serde_json::Value>,
}

impl AuditNote {
    /// A note naming `target`.
    pub(crate) fn target(target: &str) -> Self {
        Self {
            target: Some(target.to_owned()),
            details: serde_json::Map::new(),
        }
    }

    /// Adds `key: value` to the details.
    pub(crate) fn detail(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }
}

/// The layer: records the change made by an audited route (and passes every other request
/// through untouched).
pub(crate) async fn record_changes(
    State((state, routes)): State<(AdminState, AuditedRoutes)>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let action = request
        .extensions()
        .get::<MatchedPath>()
        .and_then(|path| routes.get(&(method.clone(), path.as_str())))
        .copied();
    let Some(action) = action.filter(|_| state.audit.enabled()) else {
        return next.run(request).await;
    };
    let actor = match request.extensions().get::<ConnectInfo<AdminPeer>>() {
        Some(ConnectInfo(AdminPeer { uid: Some(uid) })) => format!("uid:{uid}"),
        _ => "local-admin".to_owned(),
    };
    let path = request.uri().path().to_owned();
    let (mut parts, body) = request.into_parts();
    let path_target = RawPathParams::from_request_parts(&mut parts, &())
        .await
        .ok()
        .and_then(|params| params.iter().next().map(|(_, value)| value.to_owned()));
    let response = next.run(Request::from_parts(parts, body)).await;
    let status = response.status();
    let note = response
        .extensions()
        .get::<AuditNote>()
        .cloned()
        .unwrap_or_default();
    let outcome = if status.is_success() {
        Outcome::Success
    } else if status.as_u16() == 403 {
        Outcome::Denied
    } else {
        Outcome::Failure
    };
    let target = note.target.or(path_target).unwrap_or_default();
    let mut draft = state
        .audit
        .event(&actor, action, &target, outcome)
        .detail("method", method.as_str())
        .detail("path", path)
        .detail("status", status.as_u16());
    for (key, value) in note.details {
        draft = draft.detail(&key, value);
    }
    match state.audit.record(draft).await {
        Ok(()) => response,
        Err(e) if status.is_success() => {
            tracing::error!(error = %e, action, target, "an admin change was made but could not be audited");
            ApiError {
                code: ErrorCode::Unavailable,
                message: format!(
                    "the change was made but could not be recorded in the audit log: {e}"
                ),
            }
            .into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, action, "a refused admin request could not be audited");
            response
        }
    }
}
