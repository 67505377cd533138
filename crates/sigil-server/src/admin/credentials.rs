//! `/api/v1/credential-targets` and `/api/v1/leases`: the admin side of brokered database
//! credentials. Targets: list (the configuration file's, then the stored ones), create, show,
//! replace, delete, rotate the administrative password. Leases: list (filtered, paged), show,
//! renew, revoke one, revoke every lease matching a filter.
//!
//! Every change to a lease or a target's database goes through [`Credentials`], so policy, the
//! lease record and the audit log stay in one place; this module parses requests as the OpenAPI
//! document states them (so a request the document refuses is refused here too), checks target
//! definitions without connecting to their database, and maps [`CredentialsError`] to the admin
//! API's error codes.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{ConnectInfo, FromRequestParts, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use sigil_api::credentials::{
    LeaseQuery, MAX_ENTRY_ID_FILTER_CHARS, MAX_ROLE_STATEMENTS, MAX_TARGET_OWNER_CHARS,
    MAX_TARGET_ROLES, is_valid_lease_id, is_valid_name,
};
use sigil_api::{
    CredentialTarget, CredentialTargetList, ErrorCode, LeaseFailure, LeaseList, LeasesRevoked,
    RenewLeaseRequest, RevokeLeasesRequest, RoleSpec, RootRotated, TargetSpec, TargetUpdateRequest,
    TtlValue,
};
use sigil_spiffe::SpiffeId;
use sigil_store::{Lease, LeaseFilter, LeaseState, MAX_LEASE_PAGE, StoreError};

use super::AdminState;
use super::api_error::ApiError;
use super::audit_layer::{AdminPeer, AuditNote};
use super::body::{decode_json, require_empty};
use super::entry_fields::parse_wire_ttl;
use super::paging::PageRequest;
use crate::credentials::database::DatabaseError;
use crate::credentials::targets::{PasswordSource, Target, TargetSource};
use crate::credentials::{Credentials, CredentialsError};

/// Who is calling: `uid:<n>` of the admin socket's peer, `admin` when it is not known.
pub(crate) struct Actor(String);

impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let actor = match parts.extensions.get::<ConnectInfo<AdminPeer>>() {
            Some(ConnectInfo(AdminPeer { uid: Some(uid) })) => format!("uid:{uid}"),
            _ => "admin".to_owned(),
        };
        Ok(Self(actor))
    }
}

// ---- targets ----

/// `GET /api/v1/credential-targets` → the configuration file's targets (source `config`,
/// revision 0), then the stored ones (source `api`), each by name.
pub(crate) async fn list_targets(
    State(state): State<AdminState>,
) -> Result<Json<CredentialTargetList>, ApiError> {
    let credentials = service(&state)?;
    let mut targets: Vec<CredentialTarget> = credentials
        .registry()
        .configured()
        .map(|live| configured_to_wire(&live.target))
        .collect();
    for stored in state.store.list_credential_targets().await? {
        targets.push(stored_to_wire(&stored)?);
    }
    Ok(Json(CredentialTargetList { targets }))
}

/// `POST /api/v1/credential-targets` → 201 and the stored target. 400 for a definition that
/// does not check or whose administrative password cannot be read (the database is not
/// contacted); 409 when a configured or stored target has the name.
pub(crate) async fn create_target(
    State(state): State<AdminState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let credentials = service(&state)?;
    let spec: TargetSpec = decode_json(body, None)?;
    let target = checked_target(spec)?;
    let name = target.name().to_owned();
    if credentials.registry().is_configured(&name) {
        return Err(ApiError {
            code: ErrorCode::AlreadyExists,
            message: format!("credential target `{name}` exists in the configuration file"),
        });
    }
    let json = spec_json(&target.spec)?;
    let now = state.clock.unix_secs();
    let stored = state
        .store
        .create_credential_target(&name, &target.spec.owner, &json, now)
        .await?;
    // A handle opened for an earlier target of that name (deleted since) is not reused.
    credentials.registry().forget(&name);
    tracing::info!(target = %name, "credential target created");
    let note = AuditNote::target(&name).detail("owner", target.spec.owner.clone());
    let mut response = (
        StatusCode::CREATED,
        Json(to_wire(target.spec, TargetSource::Api, stored.revision)),
    )
        .into_response();
    response.extensions_mut().insert(note);
    Ok(response)
}

/// `GET /api/v1/credential-targets/{name}` → the target; 400 for a malformed name, 404.
pub(crate) async fn show_target(
    State(state): State<AdminState>,
    raw: Result<Path<String>, PathRejection>,
) -> Result<Json<CredentialTarget>, ApiError> {
    let credentials = service(&state)?;
    let name = path_name(raw)?;
    if let Some(live) = credentials
        .registry()
        .configured()
        .find(|live| live.target.name() == name)
    {
        return Ok(Json(configured_to_wire(&live.target)));
    }
    let stored = stored_target(&state, &name).await?;
    Ok(Json(stored_to_wire(&stored)?))
}

/// `PUT /api/v1/credential-targets/{name}` → the target after the update. 400 for a definition
/// that does not check or names another target; 404; 409 for a configured target or a revision
/// mismatch.
pub(crate) async fn update_target(
    State(state): State<AdminState>,
    raw: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<CredentialTarget>, ApiError> {
    let credentials = service(&state)?;
    let name = path_name(raw)?;
    let request: TargetUpdateRequest = decode_json(body, None)?;
    if request.revision < 1 {
        return Err(ApiError::invalid_value(
            "revision",
            &request.revision.to_string(),
            "must be at least 1",
        ));
    }
    check_spec_fields(&request.spec)?;
    if request.spec.name != name {
        return Err(ApiError::invalid(format!(
            "invalid spec.name `{}`: the path names target `{name}`",
            request.spec.name
        )));
    }
    if credentials.registry().is_configured(&name) {
        return Err(credentials_error(CredentialsError::ConfiguredTarget(name)));
    }
    let target = checked_target(request.spec)?;
    let json = spec_json(&target.spec)?;
    let now = state.clock.unix_secs();
    let updated = state
        .store
        .update_credential_target(&name, &target.spec.owner, &json, request.revision, now)
        .await?;
    credentials.registry().forget(&name);
    tracing::info!(target = %name, revision = updated.revision, "credential target updated");
    Ok(Json(to_wire(
        target.spec,
        TargetSource::Api,
        updated.revision,
    )))
}

/// `DELETE /api/v1/credential-targets/{name}` → the target as it was. 404; 409 for a configured
/// target or one that still has active leases.
pub(crate) async fn delete_target(
    State(state): State<AdminState>,
    raw: Result<Path<String>, PathRejection>,
) -> Result<Json<CredentialTarget>, ApiError> {
    let credentials = service(&state)?;
    let name = path_name(raw)?;
    if credentials.registry().is_configured(&name) {
        return Err(credentials_error(CredentialsError::ConfiguredTarget(name)));
    }
    let stored = stored_target(&state, &name).await?;
    let active = state
        .store
        .list_leases(&LeaseFilter {
            target: Some(name.clone()),
            state: Some(LeaseState::Active),
            limit: 1,
            ..LeaseFilter::default()
        })
        .await?;
    if !active.is_empty() {
        return Err(ApiError {
            code: ErrorCode::Conflict,
            message: format!(
                "credential target `{name}` has active leases; revoke them first \
                 (`sigil lease revoke --target {name}`)"
            ),
        });
    }
    let answer = stored_to_wire(&stored)?;
    state.store.delete_credential_target(&name).await?;
    credentials.registry().forget(&name);
    tracing::info!(target = %name, "credential target deleted");
    Ok(Json(answer))
}

/// `POST /api/v1/credential-targets/{name}/rotate-root` (no body) → when the target's
/// administrative password was changed to a new random one, written to its password file.
pub(crate) async fn rotate_root(
    State(state): State<AdminState>,
    Actor(actor): Actor,
    raw: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RootRotated>, ApiError> {
    let credentials = service(&state)?;
    let name = path_name(raw)?;
    require_empty(body)?;
    let rotated_at = credentials
        .rotate_root(&name, &actor)
        .await
        .map_err(credentials_error)?;
    tracing::info!(target = %name, "administrative password of a credential target rotated");
    Ok(Json(RootRotated {
        target: name,
        rotated_at,
    }))
}

// ---- leases ----

/// `GET /api/v1/leases?target=&role=&spiffe_id=&entry_id=&agent_id=&state=&page_size=&page_token=`
/// → one page of the matching leases, ordered by id.
pub(crate) async fn list_leases(
    State(state): State<AdminState>,
    RawQuery(query): RawQuery,
) -> Result<Json<LeaseList>, ApiError> {
    let credentials = service(&state)?;
    let query = LeaseQuery::parse(query.as_deref().unwrap_or_default())?;
    let page = PageRequest::parse(&query.page)?;
    let mut filter = LeaseFilter {
        target: query.target.map(|v| name_value("target", v)).transpose()?,
        role: query.role.map(|v| name_value("role", v)).transpose()?,
        spiffe_id: query
            .spiffe_id
            .map(|v| spiffe_id_value("spiffe_id", v))
            .transpose()?,
        entry_id: query.entry_id.map(entry_id_value).transpose()?,
        agent_id: query
            .agent_id
            .map(|v| spiffe_id_value("agent_id", v))
            .transpose()?,
        state: query.state.map(|v| state_value(&v)).transpose()?,
        after: page.after.clone(),
        limit: page.fetch_limit().min(MAX_LEASE_PAGE),
    };
    let mut leases = state.store.list_leases(&filter).await?;
    // A page as large as the store's cap cannot hold the one extra lease that tells whether
    // another page follows: look for it on its own.
    let full = usize::try_from(filter.limit).unwrap_or(usize::MAX);
    if filter.limit < page.fetch_limit()
        && leases.len() >= full
        && let Some(last) = leases.last()
    {
        filter.after = Some(last.id.clone());
        filter.limit = 1;
        leases.extend(state.store.list_leases(&filter).await?);
    }
    let next_page_token = page.finish(&mut leases, |lease| lease.id.as_str());
    let owners = owners(&state, credentials).await?;
    Ok(Json(LeaseList {
        leases: leases
            .into_iter()
            .map(|lease| {
                let owner = owners.get(&lease.target).cloned().unwrap_or_default();
                lease_to_wire(lease, owner)
            })
            .collect(),
        next_page_token,
    }))
}

/// `GET /api/v1/leases/{id}` → the lease; 400 for a malformed id, 404.
pub(crate) async fn show_lease(
    State(state): State<AdminState>,
    raw: Result<Path<String>, PathRejection>,
) -> Result<Json<sigil_api::Lease>, ApiError> {
    let credentials = service(&state)?;
    let id = path_lease_id(raw)?;
    let lease = state
        .store
        .get_lease(&id)
        .await?
        .ok_or_else(|| credentials_error(CredentialsError::UnknownLease(id)))?;
    Ok(Json(with_owner(&state, credentials, lease).await?))
}

/// `POST /api/v1/leases/{id}/renew` (`{"increment"?}`, the body may be empty) → the lease after
/// the renewal. 404; 409 when it is not active; 502/503 when the target database fails.
pub(crate) async fn renew_lease(
    State(state): State<AdminState>,
    Actor(actor): Actor,
    raw: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<sigil_api::Lease>, ApiError> {
    let credentials = service(&state)?;
    let id = path_lease_id(raw)?;
    let request: RenewLeaseRequest = decode_json(body, Some(RenewLeaseRequest::default()))?;
    let increment = match &request.increment {
        None | Some(TtlValue::Seconds(0)) => None,
        Some(raw) => Some(parse_wire_ttl("increment", raw)?.as_secs()),
    };
    let lease = credentials
        .renew(&id, increment, None, &actor)
        .await
        .map_err(credentials_error)?;
    tracing::info!(lease = %id, expires_at = lease.expires_at, "lease renewed");
    Ok(Json(with_owner(&state, credentials, lease).await?))
}

/// `POST /api/v1/leases/{id}/revoke` (no body) → the lease after the revocation (a revoked lease
/// answers as it is). 404; 502/503 when the target database fails (the lease stays due and is
/// retried).
pub(crate) async fn revoke_lease(
    State(state): State<AdminState>,
    Actor(actor): Actor,
    raw: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<sigil_api::Lease>, ApiError> {
    let credentials = service(&state)?;
    let id = path_lease_id(raw)?;
    require_empty(body)?;
    let lease = credentials
        .revoke(&id, &format!("revoked by {actor}"), None, &actor)
        .await
        .map_err(credentials_error)?;
    tracing::info!(lease = %id, "lease revoked");
    Ok(Json(with_owner(&state, credentials, lease).await?))
}

/// `POST /api/v1/leases/revoke` (`{"spiffe_id"?, "entry_id"?, "target"?, "agent_id"?}`, at
/// least one) → the leases revoked and those whose revocation failed.
pub(crate) async fn revoke_matching(
    State(state): State<AdminState>,
    Actor(actor): Actor,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let credentials = service(&state)?;
    let request: RevokeLeasesRequest = decode_json(body, None)?;
    let filter = LeaseFilter {
        spiffe_id: request
            .spiffe_id
            .map(|v| spiffe_id_value("spiffe_id", v))
            .transpose()?,
        entry_id: request.entry_id.map(entry_id_value).transpose()?,
        target: request
            .target
            .map(|v| name_value("target", v))
            .transpose()?,
        agent_id: request
            .agent_id
            .map(|v| spiffe_id_value("agent_id", v))
            .transpose()?,
        ..LeaseFilter::default()
    };
    if filter == LeaseFilter::default() {
        return Err(ApiError::invalid(
            "name at least one of spiffe_id, entry_id, target and agent_id",
        ));
    }
    let mut note = AuditNote::default();
    for (key, value) in [
        ("spiffe_id", &filter.spiffe_id),
        ("entry_id", &filter.entry_id),
        ("target", &filter.target),
        ("agent_id", &filter.agent_id),
    ] {
        if let Some(value) = value {
            note = note.detail(key, value.clone());
        }
    }
    let (revoked, failed) = credentials
        .revoke_matching(filter, &format!("revoked by {actor}"), &actor)
        .await
        .map_err(credentials_error)?;
    tracing::info!(
        revoked = revoked.len(),
        failed = failed.len(),
        "leases revoked by filter"
    );
    let note = note
        .detail("revoked", revoked.len())
        .detail("failed", failed.len());
    let mut response = Json(LeasesRevoked {
        revoked,
        failed: failed
            .into_iter()
            .map(|(lease_id, error)| LeaseFailure { lease_id, error })
            .collect(),
    })
    .into_response();
    response.extensions_mut().insert(note);
    Ok(response)
}

// ---- helpers ----

/// The credentials service, or 503 when this server runs none.
fn service(state: &AdminState) -> Result<&Arc<Credentials>, ApiError> {
    state.credentials.as_ref().ok_or_else(|| ApiError {
        code: ErrorCode::Unavailable,
        message: "this server brokers no database credentials".to_owned(),
    })
}

/// `e` as an admin API error, with the codes of the workload endpoints
/// ([`crate::credentials::http::status_of`]). Store and random-source failures are logged, not
/// shown.
fn credentials_error(e: CredentialsError) -> ApiError {
    let e = match e {
        CredentialsError::Store(store) => {
            // The lease changed under the call (not active any more, expired, past its
            // maximum): a conflict with its state, as on the workload endpoints.
            if matches!(store.cause(), StoreError::Invalid { .. }) {
                return ApiError {
                    code: ErrorCode::Conflict,
                    message: store.to_string(),
                };
            }
            return ApiError::from(store);
        }
        other => other,
    };
    let code = match &e {
        CredentialsError::UnknownTarget(_)
        | CredentialsError::UnknownRole { .. }
        | CredentialsError::UnknownLease(_) => ErrorCode::NotFound,
        CredentialsError::TtlTooLong { .. } | CredentialsError::InvalidTarget { .. } => {
            ErrorCode::InvalidArgument
        }
        // No admin call asks the policy; were one to, a denial is a refusal of this request in
        // the current state, not a failure of the server (the admin API has no 403).
        CredentialsError::RotateNeedsFile(_)
        | CredentialsError::ConfiguredTarget(_)
        | CredentialsError::LeaseNotActive { .. }
        | CredentialsError::Denied { .. } => ErrorCode::Conflict,
        CredentialsError::Database { source, .. } => match source {
            DatabaseError::Unreachable { .. } | DatabaseError::Timeout { .. } => {
                ErrorCode::Unavailable
            }
            _ => ErrorCode::UpstreamFailed,
        },
        CredentialsError::AdminPassword { .. } | CredentialsError::Audit(_) => {
            ErrorCode::Unavailable
        }
        CredentialsError::Random(_) | CredentialsError::Store(_) => {
            return ApiError::internal("credentials call failed", &e);
        }
    };
    ApiError {
        code,
        message: e.to_string(),
    }
}

/// `spec` checked as the document states it, then as the server runs it, and its
/// administrative password read (and dropped): a 400 naming the field otherwise.
fn checked_target(spec: TargetSpec) -> Result<Target, ApiError> {
    check_spec_fields(&spec)?;
    let target = Target::from_spec(spec, TargetSource::Api, 1).map_err(credentials_error)?;
    if let Err(e) = target.read_password() {
        let field = match target.password {
            PasswordSource::File(_) => "password_file",
            PasswordSource::Env(_) => "password_env",
        };
        return Err(ApiError::invalid(format!("invalid {field}: {e}")));
    }
    Ok(target)
}

/// The rules the OpenAPI document states for a target definition (names, type, one password
/// source, owner, TTLs written canonically, list sizes); [`Target::from_spec`] checks the rest.
fn check_spec_fields(spec: &TargetSpec) -> Result<(), ApiError> {
    check_name("name", &spec.name)?;
    if !matches!(spec.kind.as_str(), "postgresql" | "mariadb") {
        return Err(ApiError::invalid_value(
            "type",
            &spec.kind,
            "expected `postgresql` or `mariadb`",
        ));
    }
    if spec.url.is_empty() {
        return Err(ApiError::invalid("invalid url: must not be empty"));
    }
    match (&spec.password_file, &spec.password_env) {
        (Some(file), None) if !file.is_empty() => {}
        (None, Some(env)) if !env.is_empty() => {}
        _ => {
            return Err(ApiError::invalid(
                "invalid password_file: give exactly one of `password_file` and `password_env`, \
                 not empty",
            ));
        }
    }
    if spec.owner.trim().is_empty() {
        return Err(ApiError::invalid(
            "invalid owner: must not be blank; name the team or contact accountable for this \
             target",
        ));
    }
    if spec.owner.chars().count() > MAX_TARGET_OWNER_CHARS {
        return Err(ApiError::invalid(format!(
            "invalid owner: longer than {MAX_TARGET_OWNER_CHARS} characters"
        )));
    }
    if spec.owner.chars().any(char::is_control) {
        return Err(ApiError::invalid_value(
            "owner",
            &spec.owner,
            "has a control character",
        ));
    }
    check_ttl("default_ttl", spec.default_ttl.as_ref())?;
    check_ttl("max_ttl", spec.max_ttl.as_ref())?;
    if spec.roles.is_empty() || spec.roles.len() > MAX_TARGET_ROLES {
        return Err(ApiError::invalid(format!(
            "invalid roles: give 1 to {MAX_TARGET_ROLES} roles"
        )));
    }
    for (i, role) in spec.roles.iter().enumerate() {
        check_role(role).map_err(|e| ApiError {
            code: e.code,
            message: format!("roles[{i}]: {}", e.message),
        })?;
    }
    Ok(())
}

fn check_role(role: &RoleSpec) -> Result<(), ApiError> {
    check_name("name", &role.name)?;
    if role.creation_statements.is_empty() {
        return Err(ApiError::invalid(
            "invalid creation_statements: give at least one statement",
        ));
    }
    for (field, list) in [
        ("creation_statements", Some(&role.creation_statements)),
        ("revocation_statements", role.revocation_statements.as_ref()),
        ("renewal_statements", role.renewal_statements.as_ref()),
    ] {
        if list.is_some_and(|l| l.len() > MAX_ROLE_STATEMENTS) {
            return Err(ApiError::invalid(format!(
                "invalid {field}: at most {MAX_ROLE_STATEMENTS} statements"
            )));
        }
    }
    check_ttl("default_ttl", role.default_ttl.as_ref())?;
    check_ttl("max_ttl", role.max_ttl.as_ref())
}

fn check_ttl(field: &str, raw: Option<&TtlValue>) -> Result<(), ApiError> {
    raw.map_or(Ok(()), |raw| parse_wire_ttl(field, raw).map(|_| ()))
}

fn check_name(field: &str, value: &str) -> Result<(), ApiError> {
    if is_valid_name(value) {
        Ok(())
    } else {
        Err(ApiError::invalid_value(
            field,
            value,
            "must be 1 to 64 of a-z 0-9 - _, starting with a letter",
        ))
    }
}

fn name_value(field: &str, value: String) -> Result<String, ApiError> {
    check_name(field, &value)?;
    Ok(value)
}

fn spiffe_id_value(field: &str, value: String) -> Result<String, ApiError> {
    SpiffeId::parse(&value)
        .map(|id| id.to_string())
        .map_err(|e| ApiError::invalid_value(field, &value, e))
}

fn entry_id_value(value: String) -> Result<String, ApiError> {
    let count = value.chars().count();
    if count == 0 || count > MAX_ENTRY_ID_FILTER_CHARS {
        return Err(ApiError::invalid(format!(
            "invalid entry_id: must be 1 to {MAX_ENTRY_ID_FILTER_CHARS} characters"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::invalid_value(
            "entry_id",
            &value,
            "has a control character",
        ));
    }
    Ok(value)
}

fn state_value(value: &str) -> Result<LeaseState, ApiError> {
    LeaseState::parse(value).ok_or_else(|| {
        ApiError::invalid_value("state", value, "expected `active`, `revoking` or `revoked`")
    })
}

/// The `{name}` path parameter, checked; a 400 naming `name` otherwise.
fn path_name(raw: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(name) = raw.map_err(|rejection| {
        ApiError::invalid(format!("invalid target name: {}", rejection.body_text()))
    })?;
    name_value("name", name)
}

/// The `{id}` path parameter, checked; a 400 naming `id` otherwise.
fn path_lease_id(raw: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(id) = raw.map_err(|rejection| {
        ApiError::invalid(format!("invalid lease id: {}", rejection.body_text()))
    })?;
    if is_valid_lease_id(&id) {
        Ok(id)
    } else {
        Err(ApiError::invalid_value(
            "id",
            &id,
            "expected `lease_` and 32 lowercase hex digits",
        ))
    }
}

/// The stored target `name`, or 404.
async fn stored_target(
    state: &AdminState,
    name: &str,
) -> Result<sigil_store::StoredCredentialTarget, ApiError> {
    state
        .store
        .get_credential_target(name)
        .await?
        .ok_or_else(|| credentials_error(CredentialsError::UnknownTarget(name.to_owned())))
}

fn spec_json(spec: &TargetSpec) -> Result<String, ApiError> {
    serde_json::to_string(spec)
        .map_err(|e| ApiError::internal("cannot encode a credential target", &e))
}

fn to_wire(spec: TargetSpec, source: TargetSource, revision: i64) -> CredentialTarget {
    CredentialTarget {
        spec,
        source: source.as_str().to_owned(),
        revision,
    }
}

fn configured_to_wire(target: &Target) -> CredentialTarget {
    to_wire(target.spec.clone(), TargetSource::Config, 0)
}

fn stored_to_wire(
    stored: &sigil_store::StoredCredentialTarget,
) -> Result<CredentialTarget, ApiError> {
    let spec: TargetSpec = serde_json::from_str(&stored.spec).map_err(|e| {
        ApiError::internal(
            &format!("stored credential target `{}` is unreadable", stored.name),
            &e,
        )
    })?;
    Ok(to_wire(spec, TargetSource::Api, stored.revision))
}

/// The owner of every target, by name.
async fn owners(
    state: &AdminState,
    credentials: &Credentials,
) -> Result<HashMap<String, String>, ApiError> {
    let mut owners: HashMap<String, String> = state
        .store
        .list_credential_targets()
        .await?
        .into_iter()
        .map(|t| (t.name, t.owner))
        .collect();
    // The configuration file's targets win, as in the registry.
    owners.extend(credentials.registry().configured().map(|live| {
        (
            live.target.name().to_owned(),
            live.target.owner().to_owned(),
        )
    }));
    Ok(owners)
}

/// `lease` as the API answers it, with its target's owner ("" when the target is gone).
async fn with_owner(
    state: &AdminState,
    credentials: &Credentials,
    lease: Lease,
) -> Result<sigil_api::Lease, ApiError> {
    let configured = credentials
        .registry()
        .configured()
        .find(|live| live.target.name() == lease.target)
        .map(|live| live.target.owner().to_owned());
    let owner = match configured {
        Some(owner) => owner,
        None => state
            .store
            .get_credential_target(&lease.target)
            .await?
            .map(|t| t.owner)
            .unwrap_or_default(),
    };
    Ok(lease_to_wire(lease, owner))
}

fn lease_to_wire(lease: Lease, owner: String) -> sigil_api::Lease {
    sigil_api::Lease {
        id: lease.id,
        target: lease.target,
        role: lease.role,
        spiffe_id: lease.spiffe_id,
        entry_id: lease.entry_id,
        agent_id: lease.agent_id,
        username: lease.username,
        owner,
        created_at: lease.created_at,
        expires_at: lease.expires_at,
        max_expires_at: lease.max_expires_at,
        renewed_at: lease.renewed_at,
        state: lease.state.as_str().to_owned(),
        revoked_at: lease.revoked_at,
        revoke_reason: lease.revoke_reason,
    }
}

#[cfg(test)]
mod tests;
