//! The agent API (`sigil.agent.v1.AgentService`): join-token node attestation, agent SVID
//! renewal, the pushed stream of authorized entries, batch X509-SVID signing and JWT-SVID
//! minting.
//!
//! Every call but `AttestAgent` is authenticated by the agent's X509-SVID: the TLS layer has
//! already verified the chain against the trust bundle; here the SPIFFE ID must name a known,
//! unbanned agent and the certificate's serial must be the agent's current (or just-renewed) one,
//! so an SVID that was replaced or belongs to an evicted agent is refused.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use sigil_proto::agent::v1 as pb;
use sigil_proto::agent::v1::agent_service_server::AgentService;
use sigil_spiffe::{Clock, SpiffeId, TrustBundle};
use sigil_store::{AttestedAgent, Datastore, Entry, StoreError};
use tokio::sync::watch;
use tonic::{Request, Response, Status};
use x509_parser::prelude::FromDer;

use crate::agent_listener::AgentPeer;
use crate::ca::CaManager;
use crate::entry_index::EntryIndex;
use crate::naming;

/// Largest CSR accepted, in bytes.
const MAX_CSR_BYTES: usize = 16 * 1024;
/// Most CSRs in one batch.
const MAX_BATCH: usize = 1000;
/// Most audiences in one JWT-SVID request.
const MAX_AUDIENCES: usize = 32;
/// `last_seen` is written at most this often per agent, in seconds.
const LAST_SEEN_GRANULARITY: i64 = 60;

/// Issuance defaults of the agent API, in seconds.
#[derive(Debug, Clone, Copy)]
pub struct IssuanceDefaults {
    pub agent_svid_ttl: u64,
    pub x509_svid_ttl: u64,
    pub jwt_svid_ttl: u64,
}

impl Default for IssuanceDefaults {
    fn default() -> Self {
        Self {
            agent_svid_ttl: 3600,
            x509_svid_ttl: 3600,
            jwt_svid_ttl: 300,
        }
    }
}

/// The agent API service.
#[derive(Clone)]
pub struct AgentApi {
    ca: Arc<CaManager>,
    store: Arc<dyn Datastore>,
    index: Arc<EntryIndex>,
    clock: Arc<dyn Clock>,
    defaults: IssuanceDefaults,
    /// Becomes `true` when the server stops; open sync streams end then, so a graceful shutdown
    /// does not wait for agents to hang up.
    shutdown: Option<watch::Receiver<bool>>,
}

/// A caller that passed agent authentication.
struct AuthenticatedAgent {
    record: AttestedAgent,
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

fn cert_serial_and_expiry(der: &[u8]) -> Result<(String, i64), Status> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
        .map_err(|_| Status::unauthenticated("client certificate does not parse"))?;
    let serial = cert
        .tbs_certificate
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((serial, cert.validity().not_after.timestamp()))
}

/// The wire form of a freshly issued chain, and the leaf's hex serial.
fn to_pb_svid(spiffe_id: &SpiffeId, chain: Vec<Vec<u8>>) -> Result<(pb::X509Svid, String), Status> {
    let leaf = chain
        .first()
        .ok_or_else(|| Status::internal("CA returned an empty chain"))?;
    let (serial, expires_at) = cert_serial_and_expiry(leaf)?;
    let svid = pb::X509Svid {
        spiffe_id: spiffe_id.to_string(),
        cert_chain: chain,
        expires_at,
    };
    Ok((svid, serial))
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

fn to_pb_entry(e: &Entry) -> pb::Entry {
    pb::Entry {
        id: e.id.clone(),
        spiffe_id: e.spec.spiffe_id.to_string(),
        parent_id: e.spec.parent_id.to_string(),
        selectors: e
            .spec
            .selectors
            .iter()
            .map(|s| pb::Selector {
                r#type: s.kind().to_owned(),
                value: s.value().to_owned(),
            })
            .collect(),
        x509_svid_ttl: i64::try_from(e.spec.x509_svid_ttl).unwrap_or(i64::MAX),
        jwt_svid_ttl: i64::try_from(e.spec.jwt_svid_ttl).unwrap_or(i64::MAX),
        dns_names: e.spec.dns_names.clone(),
        federates_with: e
            .spec
            .federates_with
            .iter()
            .map(ToString::to_string)
            .collect(),
        admin: e.spec.admin,
        downstream: e.spec.downstream,
        hint: e.spec.hint.clone(),
        revision: e.revision,
        expires_at: e.spec.expires_at.unwrap_or(0),
    }
}

fn check_csr(csr: &[u8]) -> Result<(), Status> {
    if csr.is_empty() {
        return Err(Status::invalid_argument("csr is empty"));
    }
    if csr.len() > MAX_CSR_BYTES {
        return Err(Status::invalid_argument(format!(
            "csr is larger than {MAX_CSR_BYTES} bytes"
        )));
    }
    Ok(())
}

impl AgentApi {
    /// A service issuing from `ca`, authorizing with `index`.
    pub fn new(
        ca: Arc<CaManager>,
        store: Arc<dyn Datastore>,
        index: Arc<EntryIndex>,
        clock: Arc<dyn Clock>,
        defaults: IssuanceDefaults,
    ) -> Self {
        Self {
            ca,
            store,
            index,
            clock,
            defaults,
            shutdown: None,
        }
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
        let certs = peer
            .certs
            .as_ref()
            .ok_or_else(|| Status::unauthenticated("an agent SVID is required"))?;
        let leaf = certs
            .first()
            .ok_or_else(|| Status::unauthenticated("an agent SVID is required"))?;
        let id = sigil_tls::peer_spiffe_id(leaf)
            .map_err(|e| Status::unauthenticated(format!("client certificate: {e}")))?;
        if !naming::is_agent_id(&id) || !id.is_member_of(self.ca.trust_domain()) {
            return Err(Status::permission_denied(format!(
                "`{id}` is not an agent ID"
            )));
        }
        let (serial, not_after) = cert_serial_and_expiry(leaf)?;
        let presented_serial = serial.clone();
        let now = self.clock.unix_secs();
        if not_after <= now {
            return Err(Status::unauthenticated("agent SVID has expired"));
        }
        let mut agent = self
            .store
            .get_agent(id.as_str())
            .await
            .map_err(store_status)?
            .ok_or_else(|| Status::permission_denied(format!("agent `{id}` is not attested")))?;
        if agent.banned {
            return Err(Status::permission_denied(format!("agent `{id}` is banned")));
        }
        let mut dirty = false;
        if agent.new_serial.as_deref() == Some(serial.as_str()) {
            // The agent uses its renewed SVID: the previous one is retired.
            agent.serial = serial;
            agent.new_serial = None;
            agent.expires_at = not_after;
            dirty = true;
        } else if agent.serial != serial {
            return Err(Status::permission_denied(format!(
                "agent `{id}` presented an SVID that is no longer current"
            )));
        }
        if now - agent.last_seen >= LAST_SEEN_GRANULARITY {
            agent.last_seen = now;
            dirty = true;
        }
        if dirty {
            self.store
                .update_agent(agent.clone())
                .await
                .map_err(store_status)?;
        }
        Ok(AuthenticatedAgent {
            record: agent,
            serial: presented_serial,
            not_after,
        })
    }

    fn sync_message(&self, agent: &AttestedAgent) -> pb::SyncAuthorizedEntriesResponse {
        let entries = self
            .index
            .authorized_entries(&agent.spiffe_id, &agent.selectors);
        pb::SyncAuthorizedEntriesResponse {
            entries: entries.iter().map(|e| to_pb_entry(e)).collect(),
            bundle: Some(to_pb_bundle(&self.ca.bundle())),
            federated_bundles: Default::default(),
        }
    }
}

type SyncStream =
    Pin<Box<dyn Stream<Item = Result<pb::SyncAuthorizedEntriesResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl AgentService for AgentApi {
    async fn attest_agent(
        &self,
        request: Request<pb::AttestAgentRequest>,
    ) -> Result<Response<pb::AttestAgentResponse>, Status> {
        let req = request.into_inner();
        if req.attestation_type != naming::JOIN_TOKEN_ATTESTATION {
            return Err(Status::invalid_argument(format!(
                "unsupported attestation type `{}` (supported: `{}`)",
                req.attestation_type.chars().take(64).collect::<String>(),
                naming::JOIN_TOKEN_ATTESTATION
            )));
        }
        check_csr(&req.csr)?;
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
        let agent_id = naming::join_token_agent_id(self.ca.trust_domain(), &token.id)
            .map_err(|e| Status::internal(format!("agent id: {e}")))?;
        let chain = self
            .ca
            .sign_x509_svid(&req.csr, &agent_id, self.defaults.agent_svid_ttl, &[])
            .map_err(|e| Status::invalid_argument(format!("cannot sign agent SVID: {e}")))?;
        let (svid, serial) = to_pb_svid(&agent_id, chain)?;
        let expires_at = svid.expires_at;
        let agent = AttestedAgent {
            spiffe_id: agent_id.clone(),
            attestation_type: naming::JOIN_TOKEN_ATTESTATION.to_owned(),
            selectors: Vec::new(),
            serial,
            new_serial: None,
            expires_at,
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
        tracing::info!(agent = %agent_id, "agent attested with a join token");
        Ok(Response::new(pb::AttestAgentResponse {
            svid: Some(svid),
            bundle: Some(to_pb_bundle(&self.ca.bundle())),
        }))
    }

    async fn renew_agent(
        &self,
        request: Request<pb::RenewAgentRequest>,
    ) -> Result<Response<pb::RenewAgentResponse>, Status> {
        let agent = self.authenticate(&request).await?;
        let req = request.into_inner();
        check_csr(&req.csr)?;
        let id = agent.record.spiffe_id.clone();
        let chain = self
            .ca
            .sign_x509_svid(&req.csr, &id, self.defaults.agent_svid_ttl, &[])
            .map_err(|e| Status::invalid_argument(format!("cannot sign agent SVID: {e}")))?;
        let (svid, serial) = to_pb_svid(&id, chain)?;
        let mut record = agent.record;
        record.new_serial = Some(serial);
        self.store
            .update_agent(record)
            .await
            .map_err(store_status)?;
        tracing::debug!(agent = %id, "renewed agent SVID");
        Ok(Response::new(pb::RenewAgentResponse { svid: Some(svid) }))
    }

    type SyncAuthorizedEntriesStream = SyncStream;

    async fn sync_authorized_entries(
        &self,
        request: Request<pb::SyncAuthorizedEntriesRequest>,
    ) -> Result<Response<Self::SyncAuthorizedEntriesStream>, Status> {
        let agent = self.authenticate(&request).await?;
        let api = self.clone();
        let mut versions: watch::Receiver<u64> = self.index.subscribe();
        let agent_id = agent.record.spiffe_id.clone();
        let credential = PresentedSvid {
            serial: agent.serial,
            not_after: agent.not_after,
        };
        let stream = async_stream_sync(api, agent_id, credential, versions.clone());
        versions.mark_unchanged();
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
        let authorized = self
            .index
            .authorized_entries(&agent.record.spiffe_id, &agent.record.selectors);
        let mut results = Vec::with_capacity(req.params.len());
        for p in req.params {
            let result = match authorized.iter().find(|e| e.id == p.entry_id) {
                None => Err(format!(
                    "entry `{}` is not authorized for this agent",
                    p.entry_id
                )),
                Some(entry) => check_csr(&p.csr)
                    .map_err(|s| s.message().to_owned())
                    .and_then(|()| {
                        let ttl = match entry.spec.x509_svid_ttl {
                            0 => self.defaults.x509_svid_ttl,
                            t => t,
                        };
                        self.ca
                            .sign_x509_svid(
                                &p.csr,
                                &entry.spec.spiffe_id,
                                ttl,
                                &entry.spec.dns_names,
                            )
                            .map_err(|e| e.to_string())
                    })
                    .and_then(|chain| {
                        to_pb_svid(&entry.spec.spiffe_id, chain)
                            .map(|(svid, _)| svid)
                            .map_err(|s| s.message().to_owned())
                    }),
            };
            results.push(match result {
                Ok(svid) => pb::BatchNewX509SvidResult {
                    entry_id: p.entry_id,
                    svid: Some(svid),
                    error: String::new(),
                },
                Err(error) => pb::BatchNewX509SvidResult {
                    entry_id: p.entry_id,
                    svid: None,
                    error,
                },
            });
        }
        Ok(Response::new(pb::BatchNewX509SvidResponse { results }))
    }

    async fn new_jwt_svid(
        &self,
        request: Request<pb::NewJwtSvidRequest>,
    ) -> Result<Response<pb::NewJwtSvidResponse>, Status> {
        let agent = self.authenticate(&request).await?;
        let req = request.into_inner();
        if req.audience.is_empty() || req.audience.iter().any(String::is_empty) {
            return Err(Status::invalid_argument("audience is required"));
        }
        if req.audience.len() > MAX_AUDIENCES || req.audience.iter().any(|a| a.len() > 1024) {
            return Err(Status::invalid_argument("too many or too long audiences"));
        }
        let entry = self
            .index
            .authorized_entry(
                &agent.record.spiffe_id,
                &agent.record.selectors,
                &req.entry_id,
            )
            .ok_or_else(|| {
                Status::permission_denied(format!(
                    "entry `{}` is not authorized for this agent",
                    req.entry_id.chars().take(64).collect::<String>()
                ))
            })?;
        let ttl = match entry.spec.jwt_svid_ttl {
            0 => self.defaults.jwt_svid_ttl,
            t => t,
        };
        let minted = self
            .ca
            .mint_jwt_svid(&entry.spec.spiffe_id, &req.audience, ttl)
            .map_err(|e| {
                tracing::error!(error = %e, "JWT-SVID minting failed");
                Status::internal("cannot mint JWT-SVID")
            })?;
        Ok(Response::new(pb::NewJwtSvidResponse {
            token: minted.token,
            expires_at: minted.expires_at,
            issued_at: minted.issued_at,
        }))
    }
}

/// The sync stream: a full snapshot now, then one after every index change that alters what
/// this agent gets. Re-checks the agent record on every change so a ban or eviction ends the
/// stream at once.
fn async_stream_sync(
    api: AgentApi,
    agent_id: SpiffeId,
    credential: PresentedSvid,
    mut versions: watch::Receiver<u64>,
) -> impl Stream<Item = Result<pb::SyncAuthorizedEntriesResponse, Status>> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut shutdown = api.shutdown.clone();
    tokio::spawn(async move {
        let mut last_sent: Option<pb::SyncAuthorizedEntriesResponse> = None;
        loop {
            let agent = match api.store.get_agent(agent_id.as_str()).await {
                Ok(Some(a))
                    if !a.banned
                        && (a.serial == credential.serial
                            || a.new_serial.as_deref() == Some(credential.serial.as_str())) =>
                {
                    a
                }
                Ok(Some(a)) if !a.banned => {
                    let _ = tx
                        .send(Err(Status::unauthenticated(
                            "the agent SVID this stream was opened with has been replaced",
                        )))
                        .await;
                    return;
                }
                Ok(_) => {
                    let _ = tx
                        .send(Err(Status::permission_denied(format!(
                            "agent `{agent_id}` is banned or evicted"
                        ))))
                        .await;
                    return;
                }
                Err(e) => {
                    let _ = tx.send(Err(store_status(e))).await;
                    return;
                }
            };
            let msg = api.sync_message(&agent);
            if last_sent.as_ref() != Some(&msg) {
                if tx.send(Ok(msg.clone())).await.is_err() {
                    return;
                }
                last_sent = Some(msg);
            }
            let expires_in = credential
                .not_after
                .saturating_sub(api.clock.unix_secs())
                .max(0);
            tokio::select! {
                changed = versions.changed() => if changed.is_err() { return },
                () = tx.closed() => return,
                () = tokio::time::sleep(Duration::from_secs(expires_in.unsigned_abs())) => {
                    let _ = tx.send(Err(Status::unauthenticated("the agent SVID has expired"))).await;
                    return;
                }
                () = server_stopping(shutdown.as_mut()) => {
                    let _ = tx.send(Err(Status::unavailable("server is shutting down"))).await;
                    return;
                }
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
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
