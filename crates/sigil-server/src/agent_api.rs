//! The agent API (`sigil.agent.v1.AgentService`): join-token node attestation, agent SVID
//! renewal, the pushed stream of authorized entries, batch X509-SVID signing, JWT-SVID
//! minting, workload usage reports (checked in [`crate::usage`]), and database credentials for
//! the workloads an agent serves (through [`Credentials`], when targets are configured). Every
//! SVID comes from the [`Issuer`]; this module only speaks the protocol.
//!
//! Every call but `AttestAgent` is authenticated by the agent's X509-SVID: the TLS layer has
//! already verified the chain against the trust bundle; here the SPIFFE ID must name a known,
//! unbanned agent and the certificate's serial must be the agent's current (or just-renewed) one,
//! so an SVID that was replaced or belongs to an evicted agent is refused. Those checks read the
//! [`AgentIndex`] in memory; the store is written only when something changes (a renewed SVID
//! used for the first time) and, at most once a minute per agent, for `last_seen`.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use sigil_proto::agent::v1 as pb;
use sigil_proto::agent::v1::agent_service_server::AgentService;
use sigil_proto::creds::v1 as creds_pb;
use sigil_spiffe::{Clock, SpiffeId, TrustBundle};
use sigil_store::{AttestedAgent, CredentialKind, Datastore, Outcome, StoreError};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::agent_index::{AgentIndex, AgentView, AgentWatch};
use crate::agent_listener::AgentPeer;
use crate::credentials::{Credentials, CredentialsError, Issued, Requester, Via};
use crate::entry_index::{EntryAccess, EntryIndex, IndexedEntry};
use crate::federation::{BundleMap, ForeignBundles};
pub use crate::issuer::IssuanceDefaults;
use crate::issuer::{IssuedX509, Issuer, Refusal};
use crate::naming;
use crate::usage::{EntryServed, accept_report};

/// Most CSRs in one batch.
const MAX_BATCH: usize = 1000;
/// `last_seen` is written at most this often per agent, in seconds.
const LAST_SEEN_GRANULARITY: i64 = 60;
/// Most encoded entry bytes in one part of an authorized set sent in parts (to an agent that
/// accepts them; a lone entry larger than this is a part of its own). Small, so the gRPC encode
/// buffer each open stream keeps for its life stays small (see `sigil_proto::codec`).
const ENTRY_PART_BYTES: usize = 4 * 1024;

/// The agent API service.
#[derive(Clone)]
pub struct AgentApi {
    issuer: Arc<Issuer>,
    store: Arc<dyn Datastore>,
    entries: Arc<EntryIndex>,
    agents: Arc<AgentIndex>,
    clock: Arc<dyn Clock>,
    /// Becomes `true` when the server stops; open sync streams end then, so a graceful shutdown
    /// does not wait for agents to hang up.
    shutdown: Option<watch::Receiver<bool>>,
    /// The federated trust domains' bundles, pushed with every trust message.
    foreign: Option<Arc<ForeignBundles>>,
    /// Database credentials for the agents' workloads; `None`: the credential RPCs are
    /// `Unimplemented`.
    credentials: Option<Arc<Credentials>>,
}

/// A caller that passed agent authentication.
struct AuthenticatedAgent {
    view: Arc<AgentView>,
    /// Hex serial of the SVID this call was made with.
    serial: String,
    /// When that SVID expires (Unix seconds).
    not_after: i64,
}

fn store_status(e: StoreError) -> Status {
    match e {
        StoreError::NotFound { .. } => Status::not_found(e.to_string()),
        StoreError::AlreadyExists { .. } => Status::already_exists(e.to_string()),
        other => {
            tracing::error!(error = %other, "datastore failure in agent API");
            Status::internal("datastore failure")
        }
    }
}

/// Join-token failures as the caller sees them: all `PermissionDenied`, each with its reason.
fn join_token_status(e: StoreError) -> Status {
    match e {
        StoreError::NotFound { .. } => Status::permission_denied("join token is not valid"),
        StoreError::JoinTokenUsed => Status::permission_denied("join token was already used"),
        StoreError::JoinTokenExpired => Status::permission_denied("join token has expired"),
        other => store_status(other),
    }
}

/// Refusals as the caller sees them: what it asked for wrongly is `InvalidArgument`, what it
/// may not have is `PermissionDenied`, a failure of ours is `Internal` (logged, not sent).
fn refusal_status(refusal: Refusal) -> Status {
    match refusal {
        Refusal::EntryNotAuthorized { .. }
        | Refusal::EntryExpired { .. }
        | Refusal::AgentBanned { .. } => Status::permission_denied(refusal.to_string()),
        Refusal::InvalidCsr(_) | Refusal::InvalidAudience(_) => {
            Status::invalid_argument(refusal.to_string())
        }
        // Not PermissionDenied: the agent reads that as a refusal of itself and stops. A
        // policy withholds one credential; the agent asks again when the policy set changes.
        Refusal::PolicyDenied { .. } => Status::failed_precondition(refusal.to_string()),
        Refusal::Signing(_) | Refusal::Unrecorded(_) => {
            tracing::error!(error = %refusal, "issuance failed");
            Status::internal("cannot issue the credential")
        }
    }
}

/// The wire form of a freshly issued X509-SVID.
fn to_pb_svid(svid: IssuedX509) -> pb::X509Svid {
    pb::X509Svid {
        spiffe_id: svid.spiffe_id.to_string(),
        cert_chain: svid.chain,
        expires_at: svid.expires_at,
    }
}

/// The wire form of a trust bundle.
pub fn to_pb_bundle(b: &TrustBundle) -> pb::Bundle {
    pb::Bundle {
        trust_domain: b.trust_domain.to_string(),
        x509_authorities: b.x509_authorities.clone(),
        jwt_authorities: b
            .jwt_authorities
            .iter()
            .map(|k| pb::JwtKey {
                kid: k.kid.clone(),
                public_key: k.public_key_der.clone(),
                expires_at: k.expires_at,
            })
            .collect(),
        sequence: b.sequence,
        refresh_hint: i64::try_from(b.refresh_hint).unwrap_or(i64::MAX),
    }
}

fn to_pb_entry(e: &IndexedEntry) -> pb::Entry {
    pb::Entry {
        id: e.id().to_owned(),
        spiffe_id: e.spiffe_id().to_string(),
        parent_id: e.parent_id().to_string(),
        selectors: e
            .selectors()
            .iter()
            .map(|s| pb::Selector {
                r#type: s.kind().to_owned(),
                value: s.value().to_owned(),
            })
            .collect(),
        x509_svid_ttl: i64::try_from(e.x509_svid_ttl()).unwrap_or(i64::MAX),
        jwt_svid_ttl: i64::try_from(e.jwt_svid_ttl()).unwrap_or(i64::MAX),
        dns_names: e.dns_names().to_vec(),
        federates_with: e.federates_with().iter().map(ToString::to_string).collect(),
        admin: e.admin(),
        downstream: e.downstream(),
        hint: e.hint().to_owned(),
        revision: e.revision(),
        expires_at: e.expires_at().unwrap_or(0),
    }
}

/// The gRPC status of a credentials failure: the codes the public endpoint's HTTP statuses
/// ([`crate::credentials::http::status_of`]) stand for. Internal causes are logged, not sent.
fn credentials_status(e: &CredentialsError) -> Status {
    use axum::http::StatusCode;
    let (status, _) = crate::credentials::http::status_of(e);
    match status {
        StatusCode::NOT_FOUND => Status::not_found(e.to_string()),
        StatusCode::BAD_REQUEST => Status::invalid_argument(e.to_string()),
        StatusCode::FORBIDDEN => Status::permission_denied(e.to_string()),
        StatusCode::CONFLICT => Status::failed_precondition(e.to_string()),
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_GATEWAY => {
            Status::unavailable(e.to_string())
        }
        _ => {
            tracing::warn!(error = %e, "credentials request failed");
            Status::internal("internal error; see the server log")
        }
    }
}

/// The wire form of a freshly created credential.
fn to_pb_credential(issued: &Issued, now: i64) -> creds_pb::Credential {
    let wire = issued.to_wire(now);
    creds_pb::Credential {
        lease_id: wire.lease_id,
        target: wire.target,
        role: wire.role,
        username: wire.username,
        password: wire.password,
        expires_at: wire.expires_at,
        max_expires_at: wire.max_expires_at,
        database: Some(creds_pb::Database {
            r#type: wire.database.kind,
            host: wire.database.host,
            port: u32::from(wire.database.port),
            database: wire.database.database.unwrap_or_default(),
        }),
    }
}

/// The wire form of a lease after a renewal or a revocation.
fn to_pb_lease(lease: &sigil_store::Lease) -> creds_pb::Lease {
    creds_pb::Lease {
        lease_id: lease.id.clone(),
        expires_at: lease.expires_at,
        max_expires_at: lease.max_expires_at,
        state: lease.state.as_str().to_owned(),
    }
}

/// `0` on the wire: the role's default.
fn nonzero(seconds: u64) -> Option<u64> {
    (seconds != 0).then_some(seconds)
}

/// The workload asking through `agent` under `entry`, as [`Credentials`] sees it.
fn requester_of(
    entry: &IndexedEntry,
    agent: &AgentView,
    source_address: Option<String>,
) -> Requester {
    Requester {
        spiffe_id: entry.spiffe_id().clone(),
        entry_id: Some(entry.id().to_owned()),
        owner: entry.owner().to_owned(),
        selectors: entry.selectors().iter().map(ToString::to_string).collect(),
        labels: sigil_store::label_strings(entry.labels()),
        agent: Some(sigil_policy::AgentRef {
            spiffe_id: agent.spiffe_id.clone(),
            attestation_type: naming::agent_attestor(&agent.spiffe_id)
                .unwrap_or_default()
                .to_owned(),
            node_selectors: agent.selectors.iter().map(ToString::to_string).collect(),
        }),
        source_address,
        via: Via::Agent,
    }
}

impl AgentApi {
    /// A service issuing through `issuer`, authenticating agents with `agents` and serving the
    /// entries of `entries`; `store` takes the writes (attestation, renewal, `last_seen`).
    pub fn new(
        issuer: Arc<Issuer>,
        store: Arc<dyn Datastore>,
        entries: Arc<EntryIndex>,
        agents: Arc<AgentIndex>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            issuer,
            store,
            entries,
            agents,
            clock,
            shutdown: None,
            foreign: None,
            credentials: None,
        }
    }

    /// The same service, answering the credential RPCs (`NewCredential`,
    /// `RenewCredentialLease`, `RevokeCredentialLease`) with `credentials`.
    pub fn with_credentials(mut self, credentials: Arc<Credentials>) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// The same service, pushing `foreign` (the federated bundles) to every agent with the trust
    /// part of each sync message, and again whenever they change.
    pub fn with_foreign_bundles(mut self, foreign: Arc<ForeignBundles>) -> Self {
        self.foreign = Some(foreign);
        self
    }

    /// The same service, ending every open sync stream with `UNAVAILABLE` once `shutdown` turns
    /// `true` (or its sender is dropped). Without it, streams last until the agent hangs up.
    pub fn with_shutdown(mut self, shutdown: watch::Receiver<bool>) -> Self {
        self.shutdown = Some(shutdown);
        self
    }

    async fn authenticate<T>(&self, request: &Request<T>) -> Result<AuthenticatedAgent, Status> {
        let peer = request
            .extensions()
            .get::<AgentPeer>()
            .ok_or_else(|| Status::unauthenticated("no connection information"))?;
        let leaf = peer
            .leaf
            .as_deref()
            .ok_or_else(|| Status::unauthenticated("an agent SVID is required"))?
            .as_ref()
            .map_err(|e| Status::unauthenticated(e.clone()))?;
        let id = leaf.spiffe_id.clone();
        if !naming::is_agent_id(&id) || !id.is_member_of(self.issuer.trust_domain()) {
            return Err(Status::permission_denied(format!(
                "`{id}` is not an agent ID"
            )));
        }
        let (serial, not_after) = (leaf.serial.clone(), leaf.not_after);
        let now = self.clock.unix_secs();
        if not_after <= now {
            return Err(Status::unauthenticated("agent SVID has expired"));
        }
        let view = self
            .agents
            .get(&id)
            .ok_or_else(|| Status::permission_denied(format!("agent `{id}` is not attested")))?;
        if view.banned {
            return Err(Status::permission_denied(format!("agent `{id}` is banned")));
        }
        if self.svid_revoked(&serial, now) {
            return Err(Status::permission_denied(format!(
                "the SVID agent `{id}` presented has been revoked"
            )));
        }
        if view.serial != serial {
            if view.new_serial.as_deref() != Some(serial.as_str()) {
                return Err(Status::permission_denied(format!(
                    "agent `{id}` presented an SVID that is no longer current"
                )));
            }
            // The agent uses its renewed SVID: retire the previous one. A compare-and-swap, so a
            // concurrent renewal, ban or heartbeat is never overwritten.
            let current = self
                .store
                .activate_agent_serial(id.as_str(), &serial, not_after)
                .await
                .map_err(store_status)?;
            if !current {
                return Err(Status::permission_denied(format!(
                    "agent `{id}` presented an SVID that is no longer current"
                )));
            }
            self.agents.catch_up_with(self.store.as_ref()).await;
        }
        if self.agents.claim_last_seen(&id, now, LAST_SEEN_GRANULARITY)
            && let Err(e) = self.store.touch_agent_last_seen(id.as_str(), now).await
        {
            // Bookkeeping only: a failed heartbeat write does not refuse the call.
            tracing::warn!(agent = %id, error = %e, "cannot record last_seen");
        }
        Ok(AuthenticatedAgent {
            view,
            serial,
            not_after,
        })
    }

    /// Whether the X509-SVID with `serial` is on the deny-list at `now`.
    fn svid_revoked(&self, serial: &str, now: i64) -> bool {
        self.issuer
            .revocations()
            .list
            .is_revoked(CredentialKind::X509Svid, serial, now)
    }

    /// The credentials service, or `Unimplemented` when no targets are configured.
    fn credentials(&self) -> Result<&Arc<Credentials>, Status> {
        self.credentials
            .as_ref()
            .ok_or_else(|| Status::unimplemented("no credential targets are configured"))
    }

    /// Entry `entry_id` if `agent` may serve it now (as for SVIDs), else `PermissionDenied`.
    fn served_entry(&self, agent: &AgentView, entry_id: &str) -> Result<Arc<IndexedEntry>, Status> {
        self.entries
            .authorized_entry(&agent.spiffe_id, &agent.selectors, entry_id)
            .ok_or_else(|| {
                // The id is the caller's input: echo a bounded prefix only.
                Status::permission_denied(format!(
                    "entry `{}` is not authorized for this agent",
                    entry_id.chars().take(64).collect::<String>()
                ))
            })
    }

    /// The entries `agent` is authorized to serve, as the index holds them (shared, not copied).
    fn authorized_entries(&self, agent: &AgentView) -> Vec<Arc<IndexedEntry>> {
        self.entries
            .authorized_entries(&agent.spiffe_id, &agent.selectors)
    }

    /// What the trust part of a sync message is built from, as published now.
    fn trust_sources(&self) -> TrustSources {
        TrustSources {
            bundle: self.issuer.bundle(),
            tainted: self.issuer.tainted_authorities(),
            revocations: self.issuer.revocations(),
            federated: self.foreign.as_ref().map(|f| f.snapshot()),
            policies: self.issuer.policies().current(),
        }
    }

    /// A sync message carrying what every agent trusts (bundle, tainted authorities, deny-list,
    /// CRLs) from `sources`, and no entries.
    fn trust_message(&self, sources: &TrustSources) -> pb::SyncAuthorizedEntriesResponse {
        let revocations = &sources.revocations;
        let now = self.clock.unix_secs();
        let deny = |kind| {
            revocations
                .list
                .live(kind, now)
                .map(|r| pb::RevokedCredential {
                    id: r.id.clone(),
                    expires_at: r.expires_at,
                })
                .collect()
        };
        pb::SyncAuthorizedEntriesResponse {
            entries: Vec::new(),
            bundle: Some(to_pb_bundle(&sources.bundle)),
            federated_bundles: sources
                .federated
                .iter()
                .flat_map(|map| map.iter())
                .map(|(td, bundle)| (td.to_string(), to_pb_bundle(bundle)))
                .collect(),
            tainted_authorities: sources.tainted.to_vec(),
            revoked_x509_svids: deny(CredentialKind::X509Svid),
            revoked_jwt_svids: deny(CredentialKind::JwtSvid),
            crls: revocations.crls.clone(),
            policy_hash: sources.policies.hash().to_owned(),
            entries_unchanged: false,
            entries_continue: false,
        }
    }
}

type SyncStream =
    Pin<Box<dyn Stream<Item = Result<pb::SyncAuthorizedEntriesResponse, Status>> + Send + 'static>>;

impl AgentApi {
    /// Node attestation (join token): the response and the new agent's SPIFFE ID.
    async fn attest(
        &self,
        request: Request<pb::AttestAgentRequest>,
    ) -> Result<(Response<pb::AttestAgentResponse>, SpiffeId), Status> {
        let req = request.into_inner();
        if req.attestation_type != naming::JOIN_TOKEN_ATTESTATION {
            return Err(Status::invalid_argument(format!(
                "unsupported attestation type `{}` (supported: `{}`)",
                req.attestation_type.chars().take(64).collect::<String>(),
                naming::JOIN_TOKEN_ATTESTATION
            )));
        }
        if req.csr.len() > crate::issuer::MAX_CSR_BYTES {
            return Err(refusal_status(Refusal::InvalidCsr(format!(
                "csr is larger than {} bytes",
                crate::issuer::MAX_CSR_BYTES
            ))));
        }
        // Checked before the one-time token is consumed, so a bad CSR does not burn it.
        sigil_keys::csr::verify_csr(&req.csr)
            .map_err(|e| Status::invalid_argument(format!("csr is not acceptable: {e}")))?;
        if req.attestation_data.is_empty() || req.attestation_data.len() > 256 {
            return Err(Status::invalid_argument(
                "join token is missing or malformed",
            ));
        }
        let hash = sigil_keys::sha256_hex(&req.attestation_data);
        let now = self.clock.unix_secs();
        // Read the token to name the agent and sign its SVID; the token is consumed together
        // with storing the agent, so a failure anywhere before that leaves it usable.
        let token = match self.store.get_join_token(&hash).await {
            Ok(Some(t)) if t.used_at.is_some() => {
                return Err(join_token_status(StoreError::JoinTokenUsed));
            }
            Ok(Some(t)) if t.expires_at <= now => {
                return Err(join_token_status(StoreError::JoinTokenExpired));
            }
            Ok(Some(t)) => t,
            Ok(None) => {
                return Err(join_token_status(StoreError::NotFound {
                    kind: "join token",
                    id: hash,
                }));
            }
            Err(e) => return Err(store_status(e)),
        };
        let agent_id = naming::join_token_agent_id(self.issuer.trust_domain(), &token.id)
            .map_err(|e| Status::internal(format!("agent id: {e}")))?;
        let svid = self
            .issuer
            .attestation_svid(&agent_id, &req.csr)
            .await
            .map_err(refusal_status)?;
        let agent = AttestedAgent {
            spiffe_id: agent_id.clone(),
            attestation_type: naming::JOIN_TOKEN_ATTESTATION.to_owned(),
            selectors: Vec::new(),
            serial: svid.serial.clone(),
            new_serial: None,
            expires_at: svid.expires_at,
            banned: false,
            can_reattest: false,
            created_at: now,
            last_seen: now,
        };
        // A concurrent attestation with the same token loses here, and its SVID is never sent.
        self.store
            .attest_with_join_token(&hash, agent, now)
            .await
            .map_err(join_token_status)?;
        self.agents.catch_up_with(self.store.as_ref()).await;
        tracing::info!(agent = %agent_id, "agent attested with a join token");
        Ok((
            Response::new(pb::AttestAgentResponse {
                svid: Some(to_pb_svid(svid)),
                bundle: Some(to_pb_bundle(&self.issuer.bundle())),
            }),
            agent_id,
        ))
    }
}

#[tonic::async_trait]
impl AgentService for AgentApi {
    async fn attest_agent(
        &self,
        request: Request<pb::AttestAgentRequest>,
    ) -> Result<Response<pb::AttestAgentResponse>, Status> {
        let peer = request
            .extensions()
            .get::<AgentPeer>()
            .map_or_else(|| "unknown".to_owned(), |peer| peer.remote.to_string());
        let result = self.attest(request).await;
        let audit = self.issuer.audit();
        let draft = match &result {
            Ok((_, agent_id)) => audit
                .event(
                    agent_id.as_str(),
                    "agent.attest",
                    agent_id.as_str(),
                    Outcome::Success,
                )
                .detail("attestation_type", naming::JOIN_TOKEN_ATTESTATION)
                .detail("peer", peer),
            Err(status) => audit
                .event(
                    &format!("peer:{peer}"),
                    "agent.attest",
                    "",
                    Outcome::Failure,
                )
                .detail("attestation_type", naming::JOIN_TOKEN_ATTESTATION)
                .detail("code", format!("{:?}", status.code()))
                .detail("error", status.message().to_owned()),
        };
        audit.record_detached(draft);
        result.map(|(response, _)| response)
    }

    async fn renew_agent(
        &self,
        request: Request<pb::RenewAgentRequest>,
    ) -> Result<Response<pb::RenewAgentResponse>, Status> {
        let agent = self.authenticate(&request).await?;
        let req = request.into_inner();
        let svid = self
            .issuer
            .renewal_svid(&agent.view, &req.csr)
            .await
            .map_err(refusal_status)?;
        // Only `new_serial` is written: a heartbeat or ban racing this call is kept.
        self.store
            .record_agent_renewal(agent.view.spiffe_id.as_str(), &svid.serial)
            .await
            .map_err(store_status)?;
        // The agent switches to the new SVID as soon as it has it: the index must know it then.
        self.agents.catch_up_with(self.store.as_ref()).await;
        tracing::debug!(agent = %agent.view.spiffe_id, "renewed agent SVID");
        Ok(Response::new(pb::RenewAgentResponse {
            svid: Some(to_pb_svid(svid)),
        }))
    }

    type SyncAuthorizedEntriesStream = SyncStream;

    async fn sync_authorized_entries(
        &self,
        request: Request<pb::SyncAuthorizedEntriesRequest>,
    ) -> Result<Response<Self::SyncAuthorizedEntriesStream>, Status> {
        let agent = self.authenticate(&request).await?;
        let agent_id = agent.view.spiffe_id.clone();
        let watch = self.agents.watch(&agent_id).ok_or_else(|| {
            Status::permission_denied(format!("agent `{agent_id}` is banned or evicted"))
        })?;
        let credential = PresentedSvid {
            serial: agent.serial,
            not_after: agent.not_after,
        };
        let asked = *request.get_ref();
        let stream = async_stream_sync(self.clone(), agent_id, credential, watch, asked);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn batch_new_x509_svid(
        &self,
        request: Request<pb::BatchNewX509SvidRequest>,
    ) -> Result<Response<pb::BatchNewX509SvidResponse>, Status> {
        let agent = self.authenticate(&request).await?;
        let req = request.into_inner();
        if req.params.len() > MAX_BATCH {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_BATCH} CSRs per batch"
            )));
        }
        let requests: Vec<(&str, &[u8])> = req
            .params
            .iter()
            .map(|p| (p.entry_id.as_str(), p.csr.as_slice()))
            .collect();
        let signed = self
            .issuer
            .workload_x509_svids(&agent.view, &requests)
            .await
            .map_err(refusal_status)?;
        let results = req
            .params
            .into_iter()
            .zip(signed)
            .map(|(p, signed)| match signed {
                Ok(svid) => pb::BatchNewX509SvidResult {
                    entry_id: p.entry_id,
                    svid: Some(to_pb_svid(svid)),
                    error: String::new(),
                },
                Err(refusal) => {
                    if matches!(refusal, Refusal::Signing(_)) {
                        tracing::error!(error = %refusal, "X509-SVID signing failed");
                    }
                    pb::BatchNewX509SvidResult {
                        entry_id: p.entry_id,
                        svid: None,
                        error: refusal.to_string(),
                    }
                }
            })
            .collect();
        Ok(Response::new(pb::BatchNewX509SvidResponse { results }))
    }

    async fn new_jwt_svid(
        &self,
        request: Request<pb::NewJwtSvidRequest>,
    ) -> Result<Response<pb::NewJwtSvidResponse>, Status> {
        let agent = self.authenticate(&request).await?;
        let req = request.into_inner();
        let minted = self
            .issuer
            .workload_jwt_svid(&agent.view, &req.entry_id, &req.audience)
            .await
            .map_err(|refusal| match refusal {
                // The id is the caller's input: echo a bounded prefix only.
                Refusal::EntryNotAuthorized { entry_id } => Status::permission_denied(format!(
                    "entry `{}` is not authorized for this agent",
                    entry_id.chars().take(64).collect::<String>()
                )),
                other => refusal_status(other),
            })?;
        Ok(Response::new(pb::NewJwtSvidResponse {
            token: minted.token,
            expires_at: minted.expires_at,
            issued_at: minted.issued_at,
        }))
    }

    /// Stores the usage rows of entries the caller may serve (as the entry index decides it for
    /// SVIDs: an entry of its tree, or one that was until it expired) under the caller's own
    /// agent ID, and drops the others, counting them. A refused row never fails the call with
    /// `PermissionDenied`, which the agent would read as a refusal of itself.
    async fn report_workload_usage(
        &self,
        request: Request<pb::ReportWorkloadUsageRequest>,
    ) -> Result<Response<pb::ReportWorkloadUsageResponse>, Status> {
        let agent = self.authenticate(&request).await?;
        let rows = request.into_inner().usage;
        let view = &agent.view;
        let accepted =
            accept_report(
                rows,
                &view.spiffe_id,
                self.clock.unix_secs(),
                |entry_id| match self.entries.entry_access(
                    &view.spiffe_id,
                    &view.selectors,
                    entry_id,
                ) {
                    EntryAccess::Authorized(_) => EntryServed::Yes,
                    EntryAccess::Expired { expired_at } => EntryServed::ExpiredAt(expired_at),
                    EntryAccess::NotAuthorized => EntryServed::No,
                },
            )
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let (recorded, dropped) = (accepted.rows.len(), accepted.dropped);
        if dropped > 0 {
            tracing::debug!(agent = %view.spiffe_id, dropped, "usage rows for entries the agent may not serve dropped");
        }
        if recorded > 0 {
            self.store
                .record_workload_usage(accepted.rows)
                .await
                .map_err(store_status)?;
        }
        let metrics = self.issuer.metrics();
        metrics.usage_reports.inc();
        metrics.usage_rows_dropped.inc_by(dropped as u64);
        Ok(Response::new(pb::ReportWorkloadUsageResponse {
            recorded: u32::try_from(recorded).unwrap_or(u32::MAX),
            dropped: u32::try_from(dropped).unwrap_or(u32::MAX),
        }))
    }

    /// Creates a credential for the workload the agent serves under `entry_id`: the entry must
    /// be one the agent may serve; the server's policy decides on the entry's identity.
    async fn new_credential(
        &self,
        request: Request<pb::NewCredentialRequest>,
    ) -> Result<Response<creds_pb::Credential>, Status> {
        let agent = self.authenticate(&request).await?;
        let credentials = self.credentials()?;
        let source = request
            .extensions()
            .get::<AgentPeer>()
            .map(|peer| peer.remote.ip().to_string());
        let req = request.into_inner();
        let entry = self.served_entry(&agent.view, &req.entry_id)?;
        let requester = requester_of(&entry, &agent.view, source);
        let issued = credentials
            .issue(&requester, &req.target, &req.role, nonzero(req.ttl))
            .await
            .map_err(|e| credentials_status(&e))?;
        Ok(Response::new(to_pb_credential(
            &issued,
            self.clock.unix_secs(),
        )))
    }

    /// Renews a lease held by the identity of `entry_id` (another identity's lease is not
    /// found).
    async fn renew_credential_lease(
        &self,
        request: Request<pb::RenewCredentialLeaseRequest>,
    ) -> Result<Response<creds_pb::Lease>, Status> {
        let agent = self.authenticate(&request).await?;
        let credentials = self.credentials()?;
        let req = request.into_inner();
        let entry = self.served_entry(&agent.view, &req.entry_id)?;
        let holder = &entry.spiffe_id();
        let lease = credentials
            .renew(
                &req.lease_id,
                nonzero(req.increment),
                Some(holder),
                holder.as_str(),
            )
            .await
            .map_err(|e| credentials_status(&e))?;
        Ok(Response::new(to_pb_lease(&lease)))
    }

    /// Revokes a lease held by the identity of `entry_id`.
    async fn revoke_credential_lease(
        &self,
        request: Request<pb::RevokeCredentialLeaseRequest>,
    ) -> Result<Response<creds_pb::Lease>, Status> {
        let agent = self.authenticate(&request).await?;
        let credentials = self.credentials()?;
        let req = request.into_inner();
        let entry = self.served_entry(&agent.view, &req.entry_id)?;
        let holder = &entry.spiffe_id();
        let lease = credentials
            .revoke(
                &req.lease_id,
                &format!("revoked by {holder} through agent {}", agent.view.spiffe_id),
                Some(holder),
                holder.as_str(),
            )
            .await
            .map_err(|e| credentials_status(&e))?;
        Ok(Response::new(to_pb_lease(&lease)))
    }
}

/// The sync stream: a full snapshot now, then one whenever something this agent gets may have
/// changed: the entry index woke this agent (an entry of its tree changed or expired, the bundle
/// changed; changes for other agents do not wake it), the CA's bundle or tainted set changed, or
/// this agent's own record changed. A ban, an eviction or the retirement of the SVID the stream was
/// opened with ends it at once. Nothing here reads the store.
///
/// `asked` is what the agent asked for: `omit_unchanged_entries` (a push of trust alone leaves
/// the entries out) and `accept_entry_parts` (a set larger than [`ENTRY_PART_BYTES`] is sent in
/// parts, see [`send_leading_parts`]).
fn async_stream_sync(
    api: AgentApi,
    agent_id: SpiffeId,
    credential: PresentedSvid,
    mut agent: AgentWatch,
    asked: pb::SyncAuthorizedEntriesRequest,
) -> impl Stream<Item = Result<pb::SyncAuthorizedEntriesResponse, Status>> + Send + 'static {
    // Boxed: a bounded channel allocates its slots in blocks of 32, and with a message and a
    // `Status` inline each stream would hold about 8 KiB of empty slots.
    let (tx, rx) = tokio::sync::mpsc::channel::<Box<SyncItem>>(4);
    let mut shutdown = api.shutdown.clone();
    let mut versions = {
        let view = agent.borrow();
        let selectors = view
            .as_ref()
            .map(|v| v.selectors.as_slice())
            .unwrap_or_default();
        api.entries.subscribe_agent(&agent_id, selectors)
    };
    let mut trust = api.issuer.subscribe_trust();
    let mut policies = api.issuer.policies().subscribe();
    // Without foreign bundles, a channel that never changes (its sender kept alive here).
    let (no_foreign_tx, no_foreign_rx) = watch::channel(0_u64);
    let mut foreign = api
        .foreign
        .as_ref()
        .map_or(no_foreign_rx, |f| f.subscribe());
    let open = crate::metrics::GaugeGuard::hold(&api.issuer.metrics().agent_streams);
    tokio::spawn(async move {
        let _open = open;
        let _no_foreign = no_foreign_tx;
        // The entries and the trust part last sent, held as the shared values they were built
        // from (not as wire messages: with thousands of streams open, a copy per stream would
        // be most of the server's memory). The entries are recomputed only when the entry index
        // or the agent's record woke the stream, so a push of trust alone (a revocation, a new
        // bundle: every agent at once) costs no entry lookup and, for an agent that asked, sends
        // no entries.
        let mut sent_entries: Option<Vec<Arc<IndexedEntry>>> = None;
        let mut sent_trust: Option<TrustSources> = None;
        let mut entries_dirty = true;
        loop {
            versions.mark_unchanged();
            trust.mark_unchanged();
            policies.mark_unchanged();
            foreign.mark_unchanged();
            let view = agent.borrow_and_update().clone();
            let view = match view {
                Some(view)
                    if !view.banned
                        && api.svid_revoked(&credential.serial, api.clock.unix_secs()) =>
                {
                    let _ = tx
                        .send_boxed(Err(Status::permission_denied(format!(
                            "the SVID agent `{}` opened this stream with has been revoked",
                            view.spiffe_id
                        ))))
                        .await;
                    return;
                }
                Some(view) if !view.banned && view.accepts_serial(&credential.serial) => view,
                Some(view) if !view.banned => {
                    let _ = tx
                        .send_boxed(Err(Status::unauthenticated(
                            "the agent SVID this stream was opened with has been replaced",
                        )))
                        .await;
                    return;
                }
                _ => {
                    let _ = tx
                        .send_boxed(Err(Status::permission_denied(format!(
                            "agent `{agent_id}` is banned or evicted"
                        ))))
                        .await;
                    return;
                }
            };
            let mut entries_changed = false;
            if entries_dirty {
                let entries = api.authorized_entries(&view);
                if !sent_entries
                    .as_deref()
                    .is_some_and(|sent| same_entries(sent, &entries))
                {
                    sent_entries = Some(entries);
                    entries_changed = true;
                }
                entries_dirty = false;
            }
            let trust_now = api.trust_sources();
            if entries_changed || !sent_trust.as_ref().is_some_and(|t| t.same(&trust_now)) {
                let entries = sent_entries.as_deref().unwrap_or_default();
                let last_part = if !entries_changed && asked.omit_unchanged_entries {
                    None
                } else if asked.accept_entry_parts {
                    match send_leading_parts(&tx, entries).await {
                        Ok(rest) => Some(rest),
                        Err(()) => return,
                    }
                } else {
                    Some(entries.iter().map(|e| to_pb_entry(e)).collect())
                };
                let mut msg = api.trust_message(&trust_now);
                match last_part {
                    Some(entries) => msg.entries = entries,
                    None => msg.entries_unchanged = true,
                }
                if tx.send_boxed(Ok(msg)).await.is_err() {
                    return;
                }
                sent_trust = Some(trust_now);
            }
            let expires_in = credential
                .not_after
                .saturating_sub(api.clock.unix_secs())
                .max(0);
            tokio::select! {
                changed = versions.changed() => {
                    if changed.is_err() { return }
                    entries_dirty = true;
                },
                changed = trust.changed() => if changed.is_err() { return },
                changed = policies.changed() => if changed.is_err() { return },
                changed = foreign.changed() => if changed.is_err() { return },
                changed = agent.changed() => {
                    if changed.is_err() {
                        // The index dropped the agent's channel: it is gone.
                        let _ = tx.send_boxed(Err(Status::permission_denied(format!(
                                "agent `{agent_id}` is banned or evicted"
                            ))))
                            .await;
                        return;
                    }
                    // Its node selectors may have changed, and with them its entries.
                    entries_dirty = true;
                },
                () = tx.closed() => return,
                () = tokio::time::sleep(Duration::from_secs(expires_in.unsigned_abs())) => {
                    let _ = tx.send_boxed(Err(Status::unauthenticated("the agent SVID has expired"))).await;
                    return;
                }
                () = server_stopping(shutdown.as_mut()) => {
                    let _ = tx.send_boxed(Err(Status::unavailable("server is shutting down"))).await;
                    return;
                }
            }
        }
    });
    futures::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), |item| {
        *item
    })
}

/// Sends `entries` but the last part as parts of an authorized set (entries only,
/// `entries_continue`), each of at most [`ENTRY_PART_BYTES`] encoded entries (a larger entry
/// alone), and returns the last part, which goes with the trust part in the final message. When
/// they all fit in one part, sends nothing and returns them all: the set goes in one message.
/// Each part is built as it is sent, never all of them at once. `Err` when the stream is gone.
async fn send_leading_parts(
    tx: &tokio::sync::mpsc::Sender<Box<SyncItem>>,
    entries: &[Arc<IndexedEntry>],
) -> Result<Vec<pb::Entry>, ()> {
    let mut part = Vec::new();
    let mut part_bytes = 0_usize;
    for entry in entries {
        let entry = to_pb_entry(entry);
        let bytes = entry_field_len(&entry);
        if !part.is_empty() && part_bytes.saturating_add(bytes) > ENTRY_PART_BYTES {
            let msg = pb::SyncAuthorizedEntriesResponse {
                entries: std::mem::take(&mut part),
                entries_continue: true,
                ..Default::default()
            };
            tx.send_boxed(Ok(msg)).await?;
            part_bytes = 0;
        }
        part_bytes = part_bytes.saturating_add(bytes);
        part.push(entry);
    }
    Ok(part)
}

/// The encoded size of `entry` as an element of a message's `entries`: tag, length, entry.
fn entry_field_len(entry: &pb::Entry) -> usize {
    let len = prost::Message::encoded_len(entry);
    1 + prost::length_delimiter_len(len) + len
}

/// One item of a sync stream.
type SyncItem = Result<pb::SyncAuthorizedEntriesResponse, Status>;

/// Sends an item of a sync stream boxed.
trait SendBoxed {
    async fn send_boxed(&self, item: SyncItem) -> Result<(), ()>;
}

impl SendBoxed for tokio::sync::mpsc::Sender<Box<SyncItem>> {
    async fn send_boxed(&self, item: SyncItem) -> Result<(), ()> {
        self.send(Box::new(item)).await.map_err(|_| ())
    }
}

/// What the trust part of a sync message is built from: values the CA publishes whole and
/// replaces on change, so two sets are the same exactly when they are the same allocations.
struct TrustSources {
    bundle: Arc<TrustBundle>,
    tainted: Arc<Vec<String>>,
    revocations: Arc<crate::ca::Revocations>,
    federated: Option<Arc<BundleMap>>,
    /// The policy set in force: a new one is announced so agents ask again for what it may now
    /// permit.
    policies: Arc<sigil_policy::LoadedPolicies>,
}

impl TrustSources {
    fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.bundle, &other.bundle)
            && Arc::ptr_eq(&self.policies, &other.policies)
            && Arc::ptr_eq(&self.tainted, &other.tainted)
            && Arc::ptr_eq(&self.revocations, &other.revocations)
            && match (&self.federated, &other.federated) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
    }
}

/// Whether two authorized-entry lists (both sorted by id, as the index returns them) are the
/// same: the same shared entries, or equal ones.
fn same_entries(a: &[Arc<IndexedEntry>], b: &[Arc<IndexedEntry>]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| Arc::ptr_eq(x, y) || x == y)
}

/// The credential a sync stream was opened with; the stream lives no longer than it is current.
struct PresentedSvid {
    serial: String,
    not_after: i64,
}

/// Resolves once `shutdown` is `true` or its sender is gone; never without a receiver.
async fn server_stopping(shutdown: Option<&mut watch::Receiver<bool>>) {
    match shutdown {
        Some(rx) => {
            let _ = rx.wait_for(|stopping| *stopping).await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    #[test]
    fn credentials_errors_map_to_the_codes_of_their_http_statuses() {
        let cases = [
            (CredentialsError::UnknownTarget("t".into()), Code::NotFound),
            (
                CredentialsError::UnknownRole {
                    target: "t".into(),
                    role: "r".into(),
                },
                Code::NotFound,
            ),
            (CredentialsError::UnknownLease("l".into()), Code::NotFound),
            (
                CredentialsError::TtlTooLong {
                    requested: 10,
                    max: 5,
                },
                Code::InvalidArgument,
            ),
            (
                CredentialsError::Denied {
                    target: "t".into(),
                    role: "r".into(),
                    policies: Vec::new(),
                    errors: Vec::new(),
                },
                Code::PermissionDenied,
            ),
            (
                CredentialsError::LeaseNotActive {
                    id: "l".into(),
                    state: "revoked",
                },
                Code::FailedPrecondition,
            ),
            (
                CredentialsError::AdminPassword {
                    target: "t".into(),
                    reason: "x".into(),
                },
                Code::Unavailable,
            ),
            (CredentialsError::Audit("x".into()), Code::Unavailable),
        ];
        for (error, code) in cases {
            let status = credentials_status(&error);
            assert_eq!(status.code(), code, "{error}");
            assert_eq!(status.message(), error.to_string());
        }
    }

    #[test]
    fn zero_seconds_is_the_roles_default() {
        assert_eq!(nonzero(0), None);
        assert_eq!(nonzero(90), Some(90));
    }
}
