//! The agent's main loop: attest (or resume from disk), hold a sync stream to the server, keep
//! one X509-SVID per authorized entry (keys generated here; only CSRs leave the node), rotate
//! SVIDs at half-life with jitter, renew the agent's own SVID the same way, and publish every
//! change as a new [`IdentitySnapshot`] for the Workload API.
//!
//! Offline operation: when the server is unreachable the agent keeps serving what it holds, and
//! keeps retrying with capped exponential backoff, until the SVIDs expire.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use sigil_keys::PrivateKey;
use sigil_proto::agent::v1 as pb;
use sigil_proto::agent::v1::agent_service_client::AgentServiceClient;
use sigil_spiffe::{Clock, JwtAuthorityKey, Selector, SpiffeId, TrustBundle, TrustDomain};
use sigil_tls::{LiveRoots, LiveSvid};
use tokio::sync::watch;
use tonic::transport::Channel;

use crate::config::AgentConfig;
use crate::jwt::ServerJwtMinter;
use crate::server_client::{self, ConnectError};
use crate::snapshot::{IdentitySnapshot, WorkloadIdentity, WorkloadApiContext, X509SvidMaterial};
use crate::state::{AgentIdentity, StateError};

/// What stops the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("cannot generate a key: {0}")]
    Keys(#[from] sigil_keys::KeyError),
    #[error("TLS: {0}")]
    Tls(#[from] sigil_tls::TlsError),
    #[error("the agent has never attested and no join token is configured")]
    NoJoinToken,
    #[error("the agent SVID expired at {0}; attest again with a new join token")]
    SvidExpired(i64),
    #[error("the server refused attestation: {0}")]
    AttestationRefused(String),
    #[error("the server answered with an invalid {0}")]
    BadResponse(&'static str),
    #[error("the server no longer accepts this agent: {0}")]
    Rejected(String),
    #[error("workload API: {0}")]
    WorkloadApi(String),
}

pub(crate) type Client = AgentServiceClient<Channel>;

/// Converts a wire bundle.
pub(crate) fn bundle_from_pb(b: &pb::Bundle) -> Result<TrustBundle, AgentError> {
    Ok(TrustBundle {
        trust_domain: TrustDomain::parse(&b.trust_domain)
            .map_err(|_| AgentError::BadResponse("bundle trust domain"))?,
        x509_authorities: b.x509_authorities.clone(),
        jwt_authorities: b
            .jwt_authorities
            .iter()
            .map(|k| JwtAuthorityKey {
                kid: k.kid.clone(),
                public_key_der: k.public_key.clone(),
                expires_at: k.expires_at,
            })
            .collect(),
        sequence: b.sequence,
        refresh_hint: u64::try_from(b.refresh_hint).unwrap_or(0),
    })
}

/// When to renew something valid until `expires_at`, seen at `now`: half its remaining life,
/// minus up to a tenth of it as jitter so many SVIDs issued together don't renew together.
pub fn renew_at(now: i64, expires_at: i64) -> i64 {
    let remaining = expires_at.saturating_sub(now).max(0);
    let jitter_span = (remaining / 10).max(0);
    let jitter = if jitter_span > 0 {
        sigil_keys::random_bytes(8)
            .ok()
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map(|b| i64::try_from(u64::from_le_bytes(b) % u64::try_from(jitter_span).unwrap_or(1)).unwrap_or(0))
            .unwrap_or(0)
    } else {
        0
    };
    now + remaining / 2 - jitter
}

struct CachedSvid {
    revision: i64,
    material: Arc<X509SvidMaterial>,
    renew_at: i64,
}

/// The running agent's moving parts.
pub struct Agent {
    config: AgentConfig,
    clock: Arc<dyn Clock>,
    identity: AgentIdentity,
    identity_renew_at: i64,
    roots: Arc<LiveRoots>,
    svid: Arc<LiveSvid>,
    client: Arc<ArcSwapOption<Client>>,
    snapshot_tx: watch::Sender<Arc<IdentitySnapshot>>,
    entries: Vec<pb::Entry>,
    cache: HashMap<String, CachedSvid>,
    bundle: Arc<TrustBundle>,
}

impl Agent {
    /// Loads the agent's identity from disk, or attests with the configured join token.
    pub async fn start(config: AgentConfig, clock: Arc<dyn Clock>) -> Result<Self, AgentError> {
        sigil_tls::install_default_provider();
        std::fs::create_dir_all(&config.data_dir).map_err(|source| StateError::Write {
            path: config.data_dir.clone(),
            source,
        })?;
        let now = clock.unix_secs();
        let identity = match AgentIdentity::load(&config.data_dir)? {
            Some(id) if id.expires_at > now => {
                tracing::info!(agent = %id.spiffe_id, "resuming with the stored agent SVID");
                id
            }
            Some(id) if config.join_token.is_none() => return Err(AgentError::SvidExpired(id.expires_at)),
            _ => {
                let token = config.join_token.clone().ok_or(AgentError::NoJoinToken)?;
                let id = attest(&config, &token).await?;
                id.save(&config.data_dir)?;
                tracing::info!(agent = %id.spiffe_id, "attested with a join token");
                id
            }
        };
        let roots = Arc::new(LiveRoots::new(&identity.bundle.x509_authorities));
        let svid = Arc::new(LiveSvid::new(&identity.cert_chain, identity.key.pkcs8_der())?);
        let bundle = Arc::new(identity.bundle.clone());
        let (snapshot_tx, _) = watch::channel(Arc::new(IdentitySnapshot::empty(bundle.clone())));
        Ok(Self {
            identity_renew_at: renew_at(now, identity.expires_at),
            config,
            clock,
            identity,
            roots,
            svid,
            client: Arc::new(ArcSwapOption::empty()),
            snapshot_tx,
            entries: Vec::new(),
            cache: HashMap::new(),
            bundle,
        })
    }

    /// The agent's SPIFFE ID.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.identity.spiffe_id
    }

    /// What the Workload API needs: the snapshot feed, a JWT-SVID minter and the clock.
    pub fn workload_context(&self) -> WorkloadApiContext {
        WorkloadApiContext {
            snapshots: self.snapshot_tx.subscribe(),
            jwt: Arc::new(ServerJwtMinter::new(self.client.clone(), self.clock.clone())),
            clock: self.clock.clone(),
        }
    }

    /// Runs the sync loop until `shutdown` turns true. Returns an error only when the server
    /// definitively rejects this agent (banned, evicted, SVID expired).
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), AgentError> {
        let mut backoff = Duration::from_millis(250);
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            let now = self.clock.unix_secs();
            if self.identity.expires_at <= now {
                return Err(AgentError::SvidExpired(self.identity.expires_at));
            }
            match self.session(&mut shutdown).await {
                Ok(SessionEnd::Shutdown) => return Ok(()),
                Ok(SessionEnd::Reconnect) => {
                    backoff = Duration::from_millis(250);
                    continue;
                }
                Err(SessionError::Fatal(e)) => return Err(e),
                Err(SessionError::Retry(why)) => {
                    tracing::warn!(error = %why, retry_in = ?backoff, "server session ended");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => return Ok(()),
            }
            backoff = (backoff * 2).min(self.config.max_backoff);
        }
    }

    async fn session(&mut self, shutdown: &mut watch::Receiver<bool>) -> Result<SessionEnd, SessionError> {
        let mut client = server_client::connect(
            &self.config.server_address,
            &self.config.trust_domain,
            self.roots.clone(),
            Some(self.svid.clone()),
        )
        .await
        .map_err(|e| SessionError::Retry(e.to_string()))?;
        self.client.store(Some(Arc::new(client.clone())));
        let mut stream = client
            .sync_authorized_entries(pb::SyncAuthorizedEntriesRequest {})
            .await
            .map_err(classify)?
            .into_inner();
        loop {
            let next_deadline = self
                .cache
                .values()
                .map(|c| c.renew_at)
                .chain(std::iter::once(self.identity_renew_at))
                .min()
                .unwrap_or(i64::MAX);
            let wait = Duration::from_secs(
                u64::try_from(next_deadline.saturating_sub(self.clock.unix_secs())).unwrap_or(0),
            )
            .max(Duration::from_millis(100));
            tokio::select! {
                msg = stream.message() => match msg {
                    Ok(Some(m)) => self.apply(&mut client, m).await?,
                    Ok(None) => return Err(SessionError::Retry("the server closed the sync stream".into())),
                    Err(status) => return Err(classify(status)),
                },
                () = tokio::time::sleep(wait) => {
                    let now = self.clock.unix_secs();
                    if now >= self.identity_renew_at {
                        self.renew_agent_svid(&mut client).await?;
                        // Reconnect so the server sees the new SVID.
                        return Ok(SessionEnd::Reconnect);
                    }
                    self.refresh_svids(&mut client).await?;
                    self.publish();
                }
                _ = shutdown.changed() => return Ok(SessionEnd::Shutdown),
            }
        }
    }

    async fn apply(&mut self, client: &mut Client, msg: pb::SyncAuthorizedEntriesResponse) -> Result<(), SessionError> {
        if let Some(b) = &msg.bundle {
            let bundle = bundle_from_pb(b).map_err(SessionError::Fatal)?;
            if bundle.trust_domain != self.config.trust_domain {
                return Err(SessionError::Fatal(AgentError::BadResponse("bundle trust domain")));
            }
            if bundle != *self.bundle {
                self.roots.replace(&bundle.x509_authorities);
                self.identity.bundle = bundle.clone();
                self.identity.save(&self.config.data_dir).map_err(|e| SessionError::Fatal(e.into()))?;
                self.bundle = Arc::new(bundle);
            }
        }
        self.entries = msg.entries;
        let live: std::collections::HashSet<&str> = self.entries.iter().map(|e| e.id.as_str()).collect();
        self.cache.retain(|id, _| live.contains(id.as_str()));
        // Publish removals before signing anything new, so a deleted entry stops being served now.
        self.publish();
        self.refresh_svids(client).await?;
        self.publish();
        Ok(())
    }

    /// Signs SVIDs for entries that have none, changed, or are due for rotation.
    async fn refresh_svids(&mut self, client: &mut Client) -> Result<(), SessionError> {
        let now = self.clock.unix_secs();
        let mut keys: HashMap<String, PrivateKey> = HashMap::new();
        let mut params = Vec::new();
        for e in &self.entries {
            let stale = match self.cache.get(&e.id) {
                None => true,
                Some(c) => c.revision != e.revision || c.renew_at <= now,
            };
            if !stale {
                continue;
            }
            let Ok(id) = SpiffeId::parse(&e.spiffe_id) else {
                tracing::warn!(entry = %e.id, "server sent an entry with an invalid SPIFFE ID");
                continue;
            };
            let key = PrivateKey::generate().map_err(|e| SessionError::Fatal(e.into()))?;
            let csr = key.csr_der(&id).map_err(|e| SessionError::Fatal(e.into()))?;
            params.push(pb::NewX509SvidParams {
                entry_id: e.id.clone(),
                csr,
            });
            keys.insert(e.id.clone(), key);
        }
        if params.is_empty() {
            return Ok(());
        }
        let results = client
            .batch_new_x509_svid(pb::BatchNewX509SvidRequest { params })
            .await
            .map_err(classify)?
            .into_inner()
            .results;
        for r in results {
            let (Some(svid), Some(key)) = (r.svid, keys.remove(&r.entry_id)) else {
                if !r.error.is_empty() {
                    tracing::warn!(entry = %r.entry_id, error = %r.error, "server did not sign an SVID");
                }
                continue;
            };
            let Some(entry) = self.entries.iter().find(|e| e.id == r.entry_id) else {
                continue;
            };
            tracing::debug!(entry = %r.entry_id, spiffe_id = %svid.spiffe_id, "received X509-SVID");
            self.cache.insert(
                r.entry_id.clone(),
                CachedSvid {
                    revision: entry.revision,
                    renew_at: renew_at(now, svid.expires_at),
                    material: Arc::new(X509SvidMaterial {
                        cert_chain: svid.cert_chain,
                        key,
                        expires_at: svid.expires_at,
                    }),
                },
            );
        }
        Ok(())
    }

    async fn renew_agent_svid(&mut self, client: &mut Client) -> Result<(), SessionError> {
        let key = PrivateKey::generate().map_err(|e| SessionError::Fatal(e.into()))?;
        let csr = key
            .csr_der(&self.identity.spiffe_id)
            .map_err(|e| SessionError::Fatal(e.into()))?;
        let svid = client
            .renew_agent(pb::RenewAgentRequest { csr })
            .await
            .map_err(classify)?
            .into_inner()
            .svid
            .ok_or(SessionError::Fatal(AgentError::BadResponse("agent SVID")))?;
        let key = Arc::new(key);
        self.svid
            .replace(&svid.cert_chain, key.pkcs8_der())
            .map_err(|e| SessionError::Fatal(e.into()))?;
        self.identity.cert_chain = svid.cert_chain;
        self.identity.expires_at = svid.expires_at;
        self.identity.key = key;
        self.identity.save(&self.config.data_dir).map_err(|e| SessionError::Fatal(e.into()))?;
        let now = self.clock.unix_secs();
        self.identity_renew_at = renew_at(now, svid.expires_at);
        tracing::info!(expires_at = svid.expires_at, "renewed the agent SVID");
        Ok(())
    }

    /// Publishes the identities that have a current SVID.
    fn publish(&self) {
        let now = self.clock.unix_secs();
        let mut identities: Vec<WorkloadIdentity> = self
            .entries
            .iter()
            .filter_map(|e| {
                let cached = self.cache.get(&e.id)?;
                if cached.material.expires_at <= now {
                    return None;
                }
                let selectors = e
                    .selectors
                    .iter()
                    .filter_map(|s| Selector::new(&s.r#type, &s.value).ok())
                    .collect::<Vec<_>>();
                if selectors.len() != e.selectors.len() || selectors.is_empty() {
                    return None;
                }
                Some(WorkloadIdentity {
                    entry_id: e.id.clone(),
                    spiffe_id: SpiffeId::parse(&e.spiffe_id).ok()?,
                    selectors,
                    hint: e.hint.clone(),
                    federates_with: e
                        .federates_with
                        .iter()
                        .filter_map(|t| TrustDomain::parse(t).ok())
                        .collect(),
                    svid: cached.material.clone(),
                })
            })
            .collect();
        identities.sort_by(|a, b| (&a.spiffe_id, &a.entry_id).cmp(&(&b.spiffe_id, &b.entry_id)));
        let snapshot = IdentitySnapshot {
            trust_domain: self.config.trust_domain.clone(),
            bundle: self.bundle.clone(),
            federated_bundles: Default::default(),
            identities,
        };
        self.snapshot_tx.send_if_modified(|current| {
            let same = current.bundle == snapshot.bundle
                && current.identities.len() == snapshot.identities.len()
                && current
                    .identities
                    .iter()
                    .zip(&snapshot.identities)
                    .all(|(a, b)| a.entry_id == b.entry_id && Arc::ptr_eq(&a.svid, &b.svid) && a.selectors == b.selectors && a.hint == b.hint);
            if same {
                false
            } else {
                *current = Arc::new(snapshot);
                true
            }
        });
    }
}

enum SessionEnd {
    Shutdown,
    Reconnect,
}

enum SessionError {
    Retry(String),
    Fatal(AgentError),
}

fn classify(status: tonic::Status) -> SessionError {
    match status.code() {
        tonic::Code::PermissionDenied => {
            SessionError::Fatal(AgentError::Rejected(status.message().to_owned()))
        }
        _ => SessionError::Retry(format!("{}: {}", status.code(), status.message())),
    }
}

/// First attestation: connect trusting only the bootstrap roots, present no certificate, send
/// the join token and a CSR for a key generated here.
async fn attest(config: &AgentConfig, token: &str) -> Result<AgentIdentity, AgentError> {
    if config.bootstrap_roots.is_empty() {
        return Err(AgentError::AttestationRefused(
            "no trust bundle to verify the server with (set trust_bundle_path)".into(),
        ));
    }
    let roots = Arc::new(LiveRoots::new(&config.bootstrap_roots));
    let mut client = server_client::connect(&config.server_address, &config.trust_domain, roots, None).await?;
    let key = PrivateKey::generate()?;
    // The CSR's subject is ignored by the server, which assigns the agent ID; any valid ID will do.
    let placeholder = config
        .trust_domain
        .id_with_path("/sigil/agent/pending")
        .map_err(|_| AgentError::BadResponse("trust domain"))?;
    let csr = key.csr_der(&placeholder)?;
    let resp = client
        .attest_agent(pb::AttestAgentRequest {
            attestation_type: "join_token".into(),
            attestation_data: token.as_bytes().to_vec(),
            csr,
        })
        .await
        .map_err(|s| AgentError::AttestationRefused(s.message().to_owned()))?
        .into_inner();
    let svid = resp.svid.ok_or(AgentError::BadResponse("agent SVID"))?;
    let bundle = bundle_from_pb(resp.bundle.as_ref().ok_or(AgentError::BadResponse("bundle"))?)?;
    Ok(AgentIdentity {
        spiffe_id: SpiffeId::parse(&svid.spiffe_id).map_err(|_| AgentError::BadResponse("agent SPIFFE ID"))?,
        cert_chain: svid.cert_chain,
        expires_at: svid.expires_at,
        key: Arc::new(key),
        bundle,
    })
}
