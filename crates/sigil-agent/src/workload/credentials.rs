//! [`CredentialsApi`]: Sigil's credentials service (`sigil.creds.v1.Credentials`) on the
//! Workload API socket, for workloads that only speak to the agent. The caller is attested as
//! for the Workload API (the connection's [`ConnectionPeer`], the same attestor) and must carry
//! `workload.spiffe.io: true`; the identity asking is one of those the snapshot gives it (the
//! named `spiffe_id`, or its only one), and each call is forwarded to the server with that
//! identity's entry id ([`CredentialForwarder`]). The agent keeps nothing: the password passes
//! through.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use sigil_proto::WORKLOAD_API_HEADER;
use sigil_proto::agent::v1 as agent_pb;
use sigil_proto::creds::v1 as pb;
use sigil_proto::creds::v1::credentials_server::Credentials;
use sigil_spiffe::{Selector, SpiffeId};
use tokio::sync::{Semaphore, watch};
use tonic::{Request, Response, Status};

use super::peer::ConnectionPeer;
use super::service::{DEFAULT_MAX_CONCURRENT_ATTESTATIONS, MISSING_HEADER};
use super::stream::NO_IDENTITY;
use crate::attestor::WorkloadAttestor;
use crate::server_client::Client;
use crate::snapshot::{IdentitySnapshot, WorkloadIdentity};

/// Longest target or role name passed on, in bytes (the server allows 64).
const MAX_NAME_BYTES: usize = 256;
/// Longest lease id passed on, in bytes.
const MAX_LEASE_ID_BYTES: usize = 256;

/// Sends the credential calls of attested workloads to the server.
#[async_trait]
pub trait CredentialForwarder: Send + Sync + 'static {
    /// `AgentService.NewCredential`.
    async fn new_credential(
        &self,
        request: agent_pb::NewCredentialRequest,
    ) -> Result<pb::Credential, Status>;
    /// `AgentService.RenewCredentialLease`.
    async fn renew_lease(
        &self,
        request: agent_pb::RenewCredentialLeaseRequest,
    ) -> Result<pb::Lease, Status>;
    /// `AgentService.RevokeCredentialLease`.
    async fn revoke_lease(
        &self,
        request: agent_pb::RevokeCredentialLeaseRequest,
    ) -> Result<pb::Lease, Status>;
}

/// Forwards over the agent's current server connection.
pub struct ServerCredentialForwarder {
    client: Arc<ArcSwapOption<Client>>,
}

impl ServerCredentialForwarder {
    /// A forwarder using whatever connection `client` holds at call time.
    pub fn new(client: Arc<ArcSwapOption<Client>>) -> Self {
        Self { client }
    }

    fn client(&self) -> Result<Client, Status> {
        self.client
            .load_full()
            .map(|c| Client::clone(&c))
            .ok_or_else(|| Status::unavailable("the agent is not connected to the server"))
    }
}

/// The server's answer as the workload sees it: the server's code and message, except that
/// transport failures are `Unavailable`.
fn from_server(s: Status) -> Status {
    match s.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown => {
            Status::unavailable(format!("the server cannot be reached: {}", s.message()))
        }
        code => Status::new(code, s.message().to_owned()),
    }
}

#[async_trait]
impl CredentialForwarder for ServerCredentialForwarder {
    async fn new_credential(
        &self,
        request: agent_pb::NewCredentialRequest,
    ) -> Result<pb::Credential, Status> {
        self.client()?
            .new_credential(request)
            .await
            .map(Response::into_inner)
            .map_err(from_server)
    }

    async fn renew_lease(
        &self,
        request: agent_pb::RenewCredentialLeaseRequest,
    ) -> Result<pb::Lease, Status> {
        self.client()?
            .renew_credential_lease(request)
            .await
            .map(Response::into_inner)
            .map_err(from_server)
    }

    async fn revoke_lease(
        &self,
        request: agent_pb::RevokeCredentialLeaseRequest,
    ) -> Result<pb::Lease, Status> {
        self.client()?
            .revoke_credential_lease(request)
            .await
            .map(Response::into_inner)
            .map_err(from_server)
    }
}

/// The credentials service. Build it with [`CredentialsApi::new`] and hand it to
/// [`serve_listener_with_credentials`](super::server::serve_listener_with_credentials).
pub struct CredentialsApi {
    snapshots: watch::Receiver<Arc<IdentitySnapshot>>,
    attestor: Arc<dyn WorkloadAttestor>,
    attestations: Arc<Semaphore>,
    forwarder: Arc<dyn CredentialForwarder>,
}

impl std::fmt::Debug for CredentialsApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialsApi").finish_non_exhaustive()
    }
}

impl CredentialsApi {
    /// A service for the identities of `snapshots`, attesting callers with `attestor` (the
    /// Workload API's) and forwarding through `forwarder`.
    pub fn new(
        snapshots: watch::Receiver<Arc<IdentitySnapshot>>,
        attestor: Arc<dyn WorkloadAttestor>,
        forwarder: Arc<dyn CredentialForwarder>,
    ) -> Self {
        Self {
            snapshots,
            attestor,
            attestations: Arc::new(Semaphore::new(DEFAULT_MAX_CONCURRENT_ATTESTATIONS)),
            forwarder,
        }
    }

    /// The same service, running at most `limit` attestations at once (at least one).
    pub(crate) fn with_attestation_limit(mut self, limit: usize) -> Self {
        self.attestations = Arc::new(Semaphore::new(limit.max(1)));
        self
    }

    /// The selectors of the connection's pinned peer, as for the Workload API (attested once
    /// per connection, whichever service is called first).
    async fn attest<T>(&self, request: &Request<T>) -> Result<Arc<[Selector]>, Status> {
        let Some(peer) = request.extensions().get::<Arc<ConnectionPeer>>() else {
            tracing::warn!("credentials request without a pinned peer");
            return Err(Status::permission_denied("the caller cannot be identified"));
        };
        peer.selectors(&self.attestor, &self.attestations)
            .await
            .map_err(|e| {
                let caller = peer.caller();
                tracing::debug!(pid = caller.pid, uid = caller.uid, error = %e, "credentials call refused");
                Status::permission_denied("workload attestation failed")
            })
    }

    /// The entry id of the caller's identity `wanted` (empty: its only identity).
    async fn entry_of<T>(&self, request: &Request<T>, wanted: &str) -> Result<String, Status> {
        check_header(request)?;
        let wanted = match wanted {
            "" => None,
            id => Some(SpiffeId::parse(id).map_err(|e| {
                Status::invalid_argument(format!("`spiffe_id` is not a valid SPIFFE ID: {e}"))
            })?),
        };
        let selectors = self.attest(request).await?;
        let snapshot = Arc::clone(&self.snapshots.borrow());
        pick_identity(&snapshot.identities_for(&selectors), wanted.as_ref())
            .map(|id| id.entry_id.clone())
    }
}

/// Refuses requests without `workload.spiffe.io: true`, as the Workload API does.
fn check_header<T>(request: &Request<T>) -> Result<(), Status> {
    match request.metadata().get(WORKLOAD_API_HEADER) {
        Some(v) if v.as_bytes() == b"true" => Ok(()),
        _ => Err(Status::invalid_argument(MISSING_HEADER)),
    }
}

/// The identity asking: the one with SPIFFE ID `wanted`, or the caller's only one. None at all
/// is `PermissionDenied`; several without a choice is `InvalidArgument` naming them.
pub(crate) fn pick_identity<'a>(
    identities: &[&'a WorkloadIdentity],
    wanted: Option<&SpiffeId>,
) -> Result<&'a WorkloadIdentity, Status> {
    let first = identities
        .first()
        .ok_or_else(|| Status::permission_denied(NO_IDENTITY))?;
    match wanted {
        Some(wanted) => identities
            .iter()
            .find(|id| id.spiffe_id == *wanted)
            .copied()
            .ok_or_else(|| {
                Status::permission_denied(format!("no identity `{wanted}` for this workload"))
            }),
        None => {
            let mut ids: Vec<&str> = identities.iter().map(|id| id.spiffe_id.as_str()).collect();
            ids.dedup();
            if ids.len() > 1 {
                return Err(Status::invalid_argument(format!(
                    "this workload has several identities ({}); name one in `spiffe_id`",
                    ids.iter()
                        .map(|id| format!("`{id}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            Ok(first)
        }
    }
}

/// Refuses an empty or oversized field.
fn check_field(field: &str, value: &str, max: usize) -> Result<(), Status> {
    if value.is_empty() {
        return Err(Status::invalid_argument(format!("`{field}` is required")));
    }
    if value.len() > max {
        return Err(Status::invalid_argument(format!(
            "`{field}` is longer than {max} bytes"
        )));
    }
    Ok(())
}

#[tonic::async_trait]
impl Credentials for CredentialsApi {
    async fn fetch_credential(
        &self,
        request: Request<pb::FetchCredentialRequest>,
    ) -> Result<Response<pb::Credential>, Status> {
        let req = request.get_ref();
        check_field("target", &req.target, MAX_NAME_BYTES)?;
        check_field("role", &req.role, MAX_NAME_BYTES)?;
        let entry_id = self.entry_of(&request, &req.spiffe_id).await?;
        let req = request.into_inner();
        let credential = self
            .forwarder
            .new_credential(agent_pb::NewCredentialRequest {
                entry_id,
                target: req.target,
                role: req.role,
                ttl: req.ttl,
            })
            .await?;
        Ok(Response::new(credential))
    }

    async fn renew_lease(
        &self,
        request: Request<pb::RenewLeaseRequest>,
    ) -> Result<Response<pb::Lease>, Status> {
        let req = request.get_ref();
        check_field("lease_id", &req.lease_id, MAX_LEASE_ID_BYTES)?;
        let entry_id = self.entry_of(&request, &req.spiffe_id).await?;
        let req = request.into_inner();
        let lease = self
            .forwarder
            .renew_lease(agent_pb::RenewCredentialLeaseRequest {
                entry_id,
                lease_id: req.lease_id,
                increment: req.increment,
            })
            .await?;
        Ok(Response::new(lease))
    }

    async fn revoke_lease(
        &self,
        request: Request<pb::RevokeLeaseRequest>,
    ) -> Result<Response<pb::Lease>, Status> {
        let req = request.get_ref();
        check_field("lease_id", &req.lease_id, MAX_LEASE_ID_BYTES)?;
        let entry_id = self.entry_of(&request, &req.spiffe_id).await?;
        let req = request.into_inner();
        let lease = self
            .forwarder
            .revoke_lease(agent_pb::RevokeCredentialLeaseRequest {
                entry_id,
                lease_id: req.lease_id,
            })
            .await?;
        Ok(Response::new(lease))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(entry_id: &str, spiffe_id: &str) -> WorkloadIdentity {
        WorkloadIdentity {
            entry_id: entry_id.to_owned(),
            spiffe_id: SpiffeId::parse(spiffe_id).unwrap(),
            selectors: Vec::new(),
            hint: String::new(),
            federates_with: Vec::new(),
            svid: Arc::new(crate::snapshot::X509SvidMaterial {
                cert_chain: Vec::new(),
                key: sigil_keys::PrivateKey::generate().unwrap(),
                expires_at: 0,
            }),
        }
    }

    #[test]
    fn the_only_identity_is_picked_and_a_named_one_is_found() {
        let a = identity("e1", "spiffe://example.org/a");
        let b = identity("e2", "spiffe://example.org/b");
        assert_eq!(pick_identity(&[&a], None).unwrap().entry_id, "e1");
        let wanted = SpiffeId::parse("spiffe://example.org/b").unwrap();
        assert_eq!(
            pick_identity(&[&a, &b], Some(&wanted)).unwrap().entry_id,
            "e2"
        );
        // Two entries with the same SPIFFE ID are one identity.
        let a2 = identity("e3", "spiffe://example.org/a");
        assert_eq!(pick_identity(&[&a, &a2], None).unwrap().entry_id, "e1");
    }

    #[test]
    fn several_identities_without_a_choice_are_invalid_argument_naming_them() {
        let a = identity("e1", "spiffe://example.org/a");
        let b = identity("e2", "spiffe://example.org/b");
        let err = pick_identity(&[&a, &b], None).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(
            err.message()
                .contains("`spiffe://example.org/a`, `spiffe://example.org/b`"),
            "{err:?}"
        );
    }

    #[test]
    fn no_identity_or_an_unknown_one_is_permission_denied() {
        let err = pick_identity(&[], None).unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        let a = identity("e1", "spiffe://example.org/a");
        let other = SpiffeId::parse("spiffe://example.org/other").unwrap();
        let err = pick_identity(&[&a], Some(&other)).unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
    }

    #[test]
    fn the_header_is_required() {
        let err = check_header(&Request::new(())).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert_eq!(err.message(), MISSING_HEADER);
    }

    #[test]
    fn a_credential_never_prints_its_password() {
        let c = pb::Credential {
            password: "hunter2-secret".into(),
            ..pb::Credential::default()
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
