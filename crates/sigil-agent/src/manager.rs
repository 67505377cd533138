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
use crate::snapshot::{IdentitySnapshot, WorkloadApiContext, WorkloadIdentity, X509SvidMaterial};
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
            .map(|b| {
                i64::try_from(u64::from_le_bytes(b) % u64::try_from(jitter_span).unwrap_or(1))
                    .unwrap_or(0)
            })
            .unwrap_or(0)
    } else {
        0
    };
    now + remaining / 2 - jitter
}

/// Wait before retrying a renewal the server refused, in seconds.
const RENEWAL_RETRY_SECS: i64 = 5;

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
            Some(id) if config.join_token.is_none() => {
                return Err(AgentError::SvidExpired(id.expires_at));
            }
            _ => {
                let token = config.join_token.clone().ok_or(AgentError::NoJoinToken)?;
                let id = attest(&config, &token).await?;
                id.save(&config.data_dir)?;
                tracing::info!(agent = %id.spiffe_id, "attested with a join token");
                id
            }
        };
        let roots = Arc::new(LiveRoots::new(&identity.bundle.x509_authorities));
        let svid = Arc::new(LiveSvid::new(
            &identity.cert_chain,
            identity.key.pkcs8_der(),
        )?);
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
            jwt: Arc::new(ServerJwtMinter::new(
                self.client.clone(),
                self.clock.clone(),
            )),
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

    async fn session(
        &mut self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<SessionEnd, SessionError> {
        let mut client = server_client::connect(
            &self.config.server_address,
            &self.config.trust_domain,
            self.roots.clone(),
            Some(self.svid.clone()),
            self.config.tls,
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
            let now = self.clock.unix_secs();
            let next_deadline = self
                .cache
                .values()
                .map(|c| c.renew_at)
                .chain(std::iter::once(self.identity_renew_at))
                // Wake at each entry's expiry too, to stop serving it then.
                .chain(
                    self.entries
                        .iter()
                        .map(|e| e.expires_at)
                        .filter(|&at| at > now),
                )
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

    async fn apply(
        &mut self,
        client: &mut Client,
        msg: pb::SyncAuthorizedEntriesResponse,
    ) -> Result<(), SessionError> {
        if let Some(b) = &msg.bundle {
            let bundle = bundle_from_pb(b).map_err(SessionError::Fatal)?;
            if bundle.trust_domain != self.config.trust_domain {
                return Err(SessionError::Fatal(AgentError::BadResponse(
                    "bundle trust domain",
                )));
            }
            if bundle != *self.bundle {
                self.roots.replace(&bundle.x509_authorities);
                self.identity.bundle = bundle.clone();
                self.identity
                    .save(&self.config.data_dir)
                    .map_err(|e| SessionError::Fatal(e.into()))?;
                self.bundle = Arc::new(bundle);
            }
        }
        self.entries = msg.entries;
        let live: std::collections::HashSet<&str> =
            self.entries.iter().map(|e| e.id.as_str()).collect();
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
            let csr = key
                .csr_der(&id)
                .map_err(|e| SessionError::Fatal(e.into()))?;
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
                // Keep serving a still-valid SVID, and retry its renewal later rather than at
                // every wake-up.
                if let Some(cached) = self.cache.get_mut(&r.entry_id) {
                    cached.renew_at = (now + RENEWAL_RETRY_SECS)
                        .min(cached.material.expires_at)
                        .max(cached.renew_at);
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
        self.identity
            .save(&self.config.data_dir)
            .map_err(|e| SessionError::Fatal(e.into()))?;
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
                // An entry past its `expires_at` (0: never) is not served, even before the
                // server's push that drops it arrives.
                if e.expires_at != 0 && e.expires_at <= now {
                    return None;
                }
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
                    .all(|(a, b)| {
                        a.entry_id == b.entry_id
                            && Arc::ptr_eq(&a.svid, &b.svid)
                            && a.selectors == b.selectors
                            && a.hint == b.hint
                    });
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
    let mut client = server_client::connect(
        &config.server_address,
        &config.trust_domain,
        roots,
        None,
        config.tls,
    )
    .await?;
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
    let bundle = bundle_from_pb(
        resp.bundle
            .as_ref()
            .ok_or(AgentError::BadResponse("bundle"))?,
    )?;
    Ok(AgentIdentity {
        spiffe_id: SpiffeId::parse(&svid.spiffe_id)
            .map_err(|_| AgentError::BadResponse("agent SPIFFE ID"))?,
        cert_chain: svid.cert_chain,
        expires_at: svid.expires_at,
        key: Arc::new(key),
        bundle,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::Path;

    use proptest::prelude::*;
    use sigil_spiffe::FakeClock;
    use sigil_spiffe::time::from_unix_secs;

    use super::*;
    use crate::state::tests::{sample_identity, self_signed};

    const NOW: i64 = 1_700_000_000;

    proptest! {
        #[test]
        fn renewal_falls_between_four_and_five_tenths_of_the_remaining_life(
            now in -10_000_000_000i64..10_000_000_000,
            remaining in 0i64..10_000_000_000,
        ) {
            let offset = renew_at(now, now + remaining) - now;
            prop_assert!(offset <= remaining / 2, "{offset} > half of {remaining}");
            // Whole seconds: at least 0.4 of the remaining life, rounded down.
            prop_assert!(offset >= remaining * 4 / 10, "{offset} < 0.4 of {remaining}");
        }

        #[test]
        fn renewal_is_never_before_now_nor_after_expiry(now in any::<i64>(), expires_at in any::<i64>()) {
            let at = renew_at(now, expires_at);
            prop_assert!(at >= now);
            prop_assert!(at <= now.max(expires_at));
        }
    }

    #[test]
    fn expired_or_expiring_input_renews_now() {
        assert_eq!(renew_at(NOW, NOW), NOW);
        assert_eq!(renew_at(NOW, NOW - 1), NOW);
        assert_eq!(renew_at(NOW, i64::MIN), NOW);
        assert_eq!(renew_at(i64::MAX, i64::MIN), i64::MAX);
        assert_eq!(renew_at(NOW, NOW + 1), NOW);
    }

    #[test]
    fn svids_issued_together_renew_at_spread_out_times() {
        let times: HashSet<i64> = (0..64).map(|_| renew_at(NOW, NOW + 3_600)).collect();
        assert!(times.len() > 1, "no jitter: {times:?}");
    }

    fn config(dir: &Path) -> AgentConfig {
        // Nothing listens on a port just released: any server call fails fast.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        AgentConfig {
            trust_domain: TrustDomain::parse("example.org").unwrap(),
            server_address: format!("127.0.0.1:{port}"),
            bootstrap_roots: Vec::new(),
            join_token: None,
            data_dir: dir.join("data"),
            socket_path: dir.join("workload.sock"),
            max_hash_bytes: 1 << 20,
            max_backoff: Duration::from_secs(1),
            tls: sigil_tls::TlsPolicy::default(),
        }
    }

    /// An agent resumed from a stored identity valid for an hour, on a fake clock at `NOW`.
    async fn resumed_agent(dir: &Path) -> (Agent, FakeClock) {
        let config = config(dir);
        sample_identity(NOW + 3_600).save(&config.data_dir).unwrap();
        let clock = FakeClock::new(from_unix_secs(NOW));
        let agent = Agent::start(config, Arc::new(clock.clone())).await.unwrap();
        (agent, clock)
    }

    /// A client whose every call fails as unreachable.
    fn unreachable_client(agent: &Agent) -> Client {
        let uri = format!("http://{}", agent.config.server_address);
        AgentServiceClient::new(Channel::from_shared(uri).unwrap().connect_lazy())
    }

    fn entry(id: &str, spiffe_id: &str, revision: i64) -> pb::Entry {
        pb::Entry {
            id: id.into(),
            spiffe_id: spiffe_id.into(),
            selectors: vec![pb::Selector {
                r#type: "unix".into(),
                value: "uid:1000".into(),
            }],
            revision,
            ..Default::default()
        }
    }

    fn material(spiffe_id: &str, expires_at: i64) -> Arc<X509SvidMaterial> {
        let key = PrivateKey::generate().unwrap();
        let cert = self_signed(&SpiffeId::parse(spiffe_id).unwrap(), &key);
        Arc::new(X509SvidMaterial {
            cert_chain: vec![cert],
            key,
            expires_at,
        })
    }

    /// Gives `agent` entry `e` with a current SVID that is not yet due for renewal.
    fn hold(agent: &mut Agent, e: pb::Entry) {
        agent.cache.insert(
            e.id.clone(),
            CachedSvid {
                revision: e.revision,
                material: material(&e.spiffe_id, NOW + 600),
                renew_at: NOW + 300,
            },
        );
        agent.entries.push(e);
    }

    fn served(agent: &Agent) -> Vec<String> {
        agent
            .snapshot_tx
            .borrow()
            .identities
            .iter()
            .map(|i| i.entry_id.clone())
            .collect()
    }

    #[tokio::test]
    async fn publishes_entries_with_a_current_svid_in_spiffe_id_order() {
        let dir = tempfile::tempdir().unwrap();
        let (mut agent, _clock) = resumed_agent(dir.path()).await;
        hold(&mut agent, entry("e-b", "spiffe://example.org/b", 1));
        hold(&mut agent, entry("e-a", "spiffe://example.org/a", 1));
        // Not yet signed.
        agent
            .entries
            .push(entry("e-unsigned", "spiffe://example.org/c", 1));
        // Signed, but expired.
        let expired = entry("e-expired", "spiffe://example.org/d", 1);
        hold(&mut agent, expired.clone());
        if let Some(c) = agent.cache.get_mut(&expired.id) {
            c.material = material(&expired.spiffe_id, NOW - 1);
        }
        // A selector the agent cannot parse: never served (it could widen the match).
        let mut bad = entry("e-bad-selector", "spiffe://example.org/e", 1);
        bad.selectors.push(pb::Selector {
            r#type: "Unix".into(),
            value: "uid:0".into(),
        });
        hold(&mut agent, bad);
        // No selectors at all: would match every workload.
        let mut none = entry("e-no-selector", "spiffe://example.org/f", 1);
        none.selectors.clear();
        hold(&mut agent, none);

        agent.publish();
        assert_eq!(served(&agent), vec!["e-a", "e-b"]);
        let snapshot = agent.snapshot_tx.borrow().clone();
        assert_eq!(snapshot.trust_domain.as_str(), "example.org");
        assert_eq!(
            snapshot.identities.first().unwrap().spiffe_id.as_str(),
            "spiffe://example.org/a"
        );
    }

    #[tokio::test]
    async fn an_svid_that_expires_stops_being_served_at_the_next_publish() {
        let dir = tempfile::tempdir().unwrap();
        let (mut agent, clock) = resumed_agent(dir.path()).await;
        hold(&mut agent, entry("e-a", "spiffe://example.org/a", 1));
        agent.publish();
        assert_eq!(served(&agent), vec!["e-a"]);
        clock.advance(Duration::from_secs(600));
        agent.publish();
        assert!(served(&agent).is_empty());
    }

    #[tokio::test]
    async fn an_entry_past_its_expiry_stops_being_served_at_the_next_publish() {
        let dir = tempfile::tempdir().unwrap();
        let (mut agent, clock) = resumed_agent(dir.path()).await;
        let mut expiring = entry("e-a", "spiffe://example.org/a", 1);
        expiring.expires_at = NOW + 60;
        hold(&mut agent, expiring);
        hold(&mut agent, entry("e-b", "spiffe://example.org/b", 1));
        agent.publish();
        assert_eq!(served(&agent), vec!["e-a", "e-b"]);
        // Its SVID is still valid (until NOW + 600); the entry's expiry alone removes it.
        clock.advance(Duration::from_secs(60));
        agent.publish();
        assert_eq!(served(&agent), vec!["e-b"]);
    }

    #[tokio::test]
    async fn republishing_an_unchanged_state_does_not_wake_workload_streams() {
        let dir = tempfile::tempdir().unwrap();
        let (mut agent, _clock) = resumed_agent(dir.path()).await;
        let mut rx = agent.workload_context().snapshots;
        hold(&mut agent, entry("e-a", "spiffe://example.org/a", 1));
        agent.publish();
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();

        agent.publish();
        assert!(!rx.has_changed().unwrap(), "same state, no new message");

        // A rotated SVID is a change, even for the same entry.
        if let Some(c) = agent.cache.get_mut("e-a") {
            c.material = material("spiffe://example.org/a", NOW + 900);
        }
        agent.publish();
        assert!(rx.has_changed().unwrap());
    }

    #[tokio::test]
    async fn entries_the_server_no_longer_sends_stop_being_served() {
        let dir = tempfile::tempdir().unwrap();
        let (mut agent, _clock) = resumed_agent(dir.path()).await;
        let mut client = unreachable_client(&agent);
        let a = entry("e-a", "spiffe://example.org/a", 1);
        let b = entry("e-b", "spiffe://example.org/b", 1);
        hold(&mut agent, a.clone());
        hold(&mut agent, b);
        agent.publish();
        assert_eq!(served(&agent), vec!["e-a", "e-b"]);

        // Every remaining entry has a current SVID, so this needs no server call.
        let msg = pb::SyncAuthorizedEntriesResponse {
            entries: vec![a],
            ..Default::default()
        };
        assert!(agent.apply(&mut client, msg).await.is_ok());
        assert_eq!(served(&agent), vec!["e-a"]);
        assert!(!agent.cache.contains_key("e-b"), "its key is dropped");
    }

    #[tokio::test]
    async fn held_svids_keep_being_served_while_the_server_is_unreachable() {
        let dir = tempfile::tempdir().unwrap();
        let (mut agent, _clock) = resumed_agent(dir.path()).await;
        let mut client = unreachable_client(&agent);
        hold(&mut agent, entry("e-a", "spiffe://example.org/a", 1));
        agent.publish();

        // A new revision needs a new SVID; the server cannot be reached.
        let msg = pb::SyncAuthorizedEntriesResponse {
            entries: vec![entry("e-a", "spiffe://example.org/a", 2)],
            ..Default::default()
        };
        let result = agent.apply(&mut client, msg).await;
        assert!(matches!(result, Err(SessionError::Retry(_))));
        assert_eq!(served(&agent), vec!["e-a"], "the old SVID is still valid");
    }

    fn pb_bundle(identity_bundle: &TrustBundle, trust_domain: &str, root: Vec<u8>) -> pb::Bundle {
        pb::Bundle {
            trust_domain: trust_domain.into(),
            x509_authorities: vec![root],
            jwt_authorities: Vec::new(),
            sequence: identity_bundle.sequence + 1,
            refresh_hint: 60,
        }
    }

    #[tokio::test]
    async fn a_new_bundle_replaces_the_roots_and_is_saved() {
        let dir = tempfile::tempdir().unwrap();
        let (mut agent, _clock) = resumed_agent(dir.path()).await;
        let mut client = unreachable_client(&agent);
        let mut rx = agent.workload_context().snapshots;
        let new_root = self_signed(
            &SpiffeId::parse("spiffe://example.org/new-root").unwrap(),
            &PrivateKey::generate().unwrap(),
        );
        let msg = pb::SyncAuthorizedEntriesResponse {
            bundle: Some(pb_bundle(&agent.bundle, "example.org", new_root.clone())),
            ..Default::default()
        };
        assert!(agent.apply(&mut client, msg).await.is_ok());

        assert_eq!(
            agent
                .roots
                .current()
                .iter()
                .map(|c| c.as_ref().to_vec())
                .collect::<Vec<_>>(),
            vec![new_root.clone()]
        );
        assert!(rx.has_changed().unwrap());
        assert_eq!(
            rx.borrow_and_update().bundle.x509_authorities,
            vec![new_root.clone()]
        );
        let stored = AgentIdentity::load(&agent.config.data_dir)
            .unwrap()
            .unwrap();
        assert_eq!(stored.bundle.x509_authorities, vec![new_root]);
        assert_eq!(stored.bundle.refresh_hint, 60);
    }

    #[tokio::test]
    async fn a_bundle_of_another_trust_domain_is_fatal_and_not_applied() {
        let dir = tempfile::tempdir().unwrap();
        let (mut agent, _clock) = resumed_agent(dir.path()).await;
        let mut client = unreachable_client(&agent);
        let before = agent.roots.current();
        let msg = pb::SyncAuthorizedEntriesResponse {
            bundle: Some(pb_bundle(&agent.bundle, "evil.org", vec![1, 2, 3])),
            ..Default::default()
        };
        let result = agent.apply(&mut client, msg).await;
        assert!(matches!(
            result,
            Err(SessionError::Fatal(AgentError::BadResponse(_)))
        ));
        assert_eq!(agent.roots.current(), before);
    }

    #[test]
    fn wire_bundles_are_checked_and_negative_refresh_hints_ignored() {
        let mut b = pb::Bundle {
            trust_domain: "example.org".into(),
            x509_authorities: vec![vec![1]],
            jwt_authorities: vec![pb::JwtKey {
                kid: "k1".into(),
                public_key: vec![2],
                expires_at: 5,
            }],
            sequence: 4,
            refresh_hint: -1,
        };
        let bundle = bundle_from_pb(&b).unwrap();
        assert_eq!(bundle.refresh_hint, 0);
        assert_eq!(bundle.sequence, 4);
        assert_eq!(bundle.jwt_authorities.first().unwrap().kid, "k1");
        b.trust_domain = "Not A Domain".into();
        assert!(matches!(
            bundle_from_pb(&b),
            Err(AgentError::BadResponse(_))
        ));
    }

    #[test]
    fn only_permission_denied_ends_the_agent() {
        assert!(matches!(
            classify(tonic::Status::permission_denied("banned")),
            SessionError::Fatal(AgentError::Rejected(m)) if m == "banned"
        ));
        for status in [
            tonic::Status::unavailable("down"),
            tonic::Status::internal("oops"),
            tonic::Status::unauthenticated("who"),
        ] {
            assert!(matches!(classify(status), SessionError::Retry(_)));
        }
    }

    #[tokio::test]
    async fn resumes_from_the_stored_identity_without_a_join_token() {
        let dir = tempfile::tempdir().unwrap();
        let (agent, _clock) = resumed_agent(dir.path()).await;
        assert_eq!(
            agent.spiffe_id().as_str(),
            "spiffe://example.org/sigil/agent/join_token/n1"
        );
        let renew = agent.identity_renew_at;
        assert!((NOW + 1_440..=NOW + 1_800).contains(&renew), "{renew}");
        assert!(agent.snapshot_tx.borrow().identities.is_empty());
    }

    #[tokio::test]
    async fn start_without_state_or_join_token_fails() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(FakeClock::new(from_unix_secs(NOW)));
        let result = Agent::start(config(dir.path()), clock).await;
        assert!(matches!(result, Err(AgentError::NoJoinToken)));
    }

    #[tokio::test]
    async fn start_with_an_expired_svid_and_no_join_token_fails() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        sample_identity(NOW - 1).save(&config.data_dir).unwrap();
        let clock = Arc::new(FakeClock::new(from_unix_secs(NOW)));
        let result = Agent::start(config, clock).await;
        assert!(matches!(result, Err(AgentError::SvidExpired(t)) if t == NOW - 1));
    }

    #[tokio::test]
    async fn attestation_without_bootstrap_roots_is_refused_before_connecting() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path());
        config.join_token = Some("token".into());
        let clock = Arc::new(FakeClock::new(from_unix_secs(NOW)));
        let result = Agent::start(config, clock).await;
        assert!(matches!(result, Err(AgentError::AttestationRefused(_))));
    }

    #[tokio::test]
    async fn run_ends_when_the_agent_svid_has_expired() {
        let dir = tempfile::tempdir().unwrap();
        let (agent, clock) = resumed_agent(dir.path()).await;
        clock.advance(Duration::from_secs(3_600));
        let (_tx, rx) = watch::channel(false);
        let result = tokio::time::timeout(Duration::from_secs(5), agent.run(rx))
            .await
            .unwrap();
        assert!(matches!(result, Err(AgentError::SvidExpired(t)) if t == NOW + 3_600));
    }

    #[tokio::test]
    async fn run_keeps_retrying_an_unreachable_server_until_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let (agent, _clock) = resumed_agent(dir.path()).await;
        let (tx, rx) = watch::channel(false);
        let running = tokio::spawn(agent.run(rx));
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(!running.is_finished(), "an unreachable server is not fatal");
        tx.send(true).unwrap();
        let result = tokio::time::timeout(Duration::from_secs(5), running)
            .await
            .unwrap()
            .unwrap();
        assert!(result.is_ok());
    }
}
