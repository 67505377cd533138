//! The session loop, a thin driver: connect to the server, follow the sync stream, apply each
//! authorized set, ask the server to sign the SVIDs [`SvidCache`] says are due (keys are
//! generated here; only CSRs leave the node), renew the agent's own SVID, and publish every
//! change as a new snapshot. What to sign and when is decided in `svid_cache`, what to serve in
//! `publish`; this module only does the I/O.
//!
//! Offline operation: when the server is unreachable the agent keeps serving what it holds, and
//! keeps retrying with capped exponential backoff (each wait drawn between half and all of it, so
//! agents cut off together do not reconnect in step), until the SVIDs expire.
//!
//! Failover: with several server addresses (replicas of one trust domain), a connection that
//! fails or ends moves to the next address at once; only a full round of failures waits the
//! backoff (see `failover`). Every replica is verified as today's single server is: its TLS
//! certificate must chain to the agent's trust bundle and carry `spiffe://<td>/sigil/server`.
//! The agent presents its current SVID to whichever replica it reaches (they share the trust
//! domain's CA), so resuming on another replica needs no new attestation.
//!
//! Revocation: each sync message carries the whole deny-list and the CRLs. Held X509-SVIDs whose
//! serial is listed are re-signed at once (see `svid_cache` for what is served meanwhile),
//! cached JWT-SVIDs whose `jti` is listed are no longer served and `ValidateJWTSVID` refuses
//! them, and the CRLs are served to workloads.
//!
//! Refusal: when the server refuses the agent itself (`PermissionDenied` on any call or at the
//! end of the sync stream: banned, evicted, or its SVID replaced), the agent stops serving at
//! once (every held SVID dropped, an empty snapshot published, so Workload API streams end with
//! `PermissionDenied`), deletes its stored identity so it is never presented again, and the
//! session ends with [`AgentError::Rejected`].
//!
//! Open question (several replicas): a refusal is final, whichever replica sends it, so a
//! replica that has not caught up with the database could wrongly refuse a valid agent, which
//! would then delete a good identity. Not handled yet: see the comment on [`classify`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use sigil_keys::PrivateKey;
use sigil_proto::agent::v1 as pb;
use sigil_spiffe::{Clock, SpiffeId, TrustBundle, TrustDomain};
use sigil_tls::{LiveRoots, LiveSvid};
use tokio::sync::watch;

use crate::config::AgentConfig;
use crate::error::{AgentError, with_causes};
use crate::failover::{NextAttempt, ServerFailover};
use crate::jwt::TaintedAuthorities;
use crate::publish::{build_snapshot, publish};
use crate::revocation::{RevokedIds, RevokedJwtSvids, bounded_crls};
use crate::server_client::{self, Client};
use crate::snapshot::{IdentitySnapshot, X509SvidMaterial};
use crate::state::AgentIdentity;
use crate::svid_cache::{SvidCache, jittered_backoff, random_sample, renew_at};
use crate::wire::bundle_from_pb;

/// Shortest wait between two wake-ups of a session with nothing to receive.
const MIN_WAKE: Duration = Duration::from_millis(100);
/// First wait before reconnecting; doubles up to the configured maximum.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// The agent's state while it runs: its own identity, the server connection it shares with the
/// JWT minter, the held SVIDs and the snapshot feed of the Workload API.
pub(crate) struct Session {
    config: AgentConfig,
    clock: Arc<dyn Clock>,
    identity: AgentIdentity,
    identity_renew_at: i64,
    roots: Arc<LiveRoots>,
    svid: Arc<LiveSvid>,
    client: Arc<ArcSwapOption<Client>>,
    /// The server addresses, which one is used now, and the backoff.
    servers: ServerFailover,
    snapshot_tx: watch::Sender<Arc<IdentitySnapshot>>,
    cache: SvidCache,
    bundle: Arc<TrustBundle>,
    /// The tainted authorities, shared with the JWT minter.
    tainted: TaintedAuthorities,
    /// The revoked JWT-SVIDs, shared with the JWT minter and published in every snapshot.
    revoked_jwt: RevokedJwtSvids,
    /// The CRLs the server last sent, bounded, published in every snapshot.
    crls: Arc<Vec<Vec<u8>>>,
    /// The federated trust domains' bundles the server last sent, published in every snapshot
    /// (each workload sees those its identities federate with).
    federated: Arc<FederatedBundles>,
}

/// Foreign trust domains' bundles, by trust domain.
type FederatedBundles = std::collections::BTreeMap<TrustDomain, Arc<TrustBundle>>;

/// Most federated bundles one sync message may carry.
const MAX_FEDERATED_BUNDLES: usize = 256;

/// Most bytes the parts of one authorized set may hold before its last part arrives: the size
/// limit of one sync message ([`server_client::MAX_MESSAGE_BYTES`]), so a set sent in parts may
/// be as large as one sent whole and no larger. Each held entry counts its encoded size plus its
/// in-memory size, so even empty entries use the budget up.
const MAX_PENDING_PART_BYTES: usize = server_client::MAX_MESSAGE_BYTES;

/// The parts of one authorized set sent over several sync messages (see `entries_continue` in
/// `agent.proto`), held until the last one, bounded.
struct EntryParts {
    /// The entries of the parts received so far; `None` between sets.
    entries: Option<Vec<pb::Entry>>,
    /// What `entries` count against `max_bytes`: encoded and in-memory size of each.
    bytes: usize,
    max_bytes: usize,
}

/// How a server broke the protocol of a set sent in parts.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
enum PartsError {
    #[error(
        "the server sent a sync message with `entries_continue` that carries more than `entries`"
    )]
    NotEntriesOnly,
    #[error("the parts of one authorized set exceed {max} bytes")]
    TooLarge { max: usize },
    #[error("the server sent `entries_unchanged` as the last part of an authorized set")]
    UnchangedAfterParts,
}

impl EntryParts {
    /// No parts held; parts holding more than `max_bytes` are refused.
    fn new(max_bytes: usize) -> Self {
        Self {
            entries: None,
            bytes: 0,
            max_bytes,
        }
    }

    /// Takes one sync message. A part (`entries_continue`) is held and `None` returned; any other
    /// message is returned to be applied, with the entries of the parts held before it ahead of
    /// its own, and the parts are forgotten.
    fn take(
        &mut self,
        mut msg: pb::SyncAuthorizedEntriesResponse,
    ) -> Result<Option<pb::SyncAuthorizedEntriesResponse>, PartsError> {
        if msg.entries_continue {
            let entries = std::mem::take(&mut msg.entries);
            let entries_only = pb::SyncAuthorizedEntriesResponse {
                entries_continue: true,
                ..Default::default()
            };
            if msg != entries_only {
                return Err(PartsError::NotEntriesOnly);
            }
            let bytes = entries.iter().fold(self.bytes, |sum, e| {
                sum.saturating_add(prost::Message::encoded_len(e))
                    .saturating_add(std::mem::size_of::<pb::Entry>())
            });
            if bytes > self.max_bytes {
                return Err(PartsError::TooLarge {
                    max: self.max_bytes,
                });
            }
            self.bytes = bytes;
            self.entries.get_or_insert_default().extend(entries);
            return Ok(None);
        }
        let Some(mut entries) = self.entries.take() else {
            return Ok(Some(msg));
        };
        self.bytes = 0;
        if msg.entries_unchanged {
            return Err(PartsError::UnchangedAfterParts);
        }
        entries.append(&mut msg.entries);
        msg.entries = entries;
        Ok(Some(msg))
    }
}

/// How one connection to the server ended without an error.
enum SessionEnd {
    Shutdown,
    Reconnect,
}

/// How one connection to the server ended with an error.
enum SessionError {
    /// Worth reconnecting: to the next server address at once, or after a backoff when every
    /// address has failed in a row.
    Retry(String),
    /// The server refuses this agent (the status message says why): its identity is void.
    Refused(String),
    /// The agent cannot go on.
    Fatal(AgentError),
}

impl Session {
    /// A session for `identity`, serving nothing yet, that connects first to the server address
    /// at index `first_server` (the one attestation used, if it just happened). Fails with
    /// [`AgentError::NoServerAddress`] when the configuration names no server.
    pub(crate) fn new(
        config: AgentConfig,
        clock: Arc<dyn Clock>,
        identity: AgentIdentity,
        first_server: usize,
    ) -> Result<Self, AgentError> {
        let servers = ServerFailover::new(
            config.server_addresses.clone(),
            first_server,
            FIRST_BACKOFF,
            config.max_backoff,
        )
        .ok_or(AgentError::NoServerAddress)?;
        let roots = Arc::new(LiveRoots::new(&identity.bundle.x509_authorities));
        let svid = Arc::new(LiveSvid::new(
            &identity.cert_chain,
            identity.key.pkcs8_der(),
        )?);
        let bundle = Arc::new(identity.bundle.clone());
        let (snapshot_tx, _) = watch::channel(Arc::new(IdentitySnapshot::empty(bundle.clone())));
        Ok(Self {
            identity_renew_at: renew_at(clock.unix_secs(), identity.expires_at),
            config,
            clock,
            identity,
            roots,
            svid,
            client: Arc::new(ArcSwapOption::empty()),
            servers,
            snapshot_tx,
            cache: SvidCache::default(),
            bundle,
            tainted: Arc::new(ArcSwap::from_pointee(Vec::new())),
            revoked_jwt: Arc::new(ArcSwap::from_pointee(RevokedIds::default())),
            crls: Arc::new(Vec::new()),
            federated: Arc::default(),
        })
    }

    /// The agent's SPIFFE ID.
    pub(crate) fn spiffe_id(&self) -> &SpiffeId {
        &self.identity.spiffe_id
    }

    /// The feed of published snapshots.
    pub(crate) fn snapshots(&self) -> watch::Receiver<Arc<IdentitySnapshot>> {
        self.snapshot_tx.subscribe()
    }

    /// The tainted authorities as the server last sent them, for the JWT minter.
    pub(crate) fn tainted_slot(&self) -> TaintedAuthorities {
        self.tainted.clone()
    }

    /// The revoked JWT-SVIDs as the server last sent them, for the JWT minter.
    pub(crate) fn revoked_jwt_slot(&self) -> RevokedJwtSvids {
        self.revoked_jwt.clone()
    }

    /// The slot holding the current server connection (empty while disconnected).
    pub(crate) fn client_slot(&self) -> Arc<ArcSwapOption<Client>> {
        self.client.clone()
    }

    /// Runs until `shutdown` turns true. Returns an error only when the server definitively
    /// rejects this agent (banned, evicted: [`AgentError::Rejected`], after the agent stopped
    /// serving and deleted its stored identity) or its SVID expired.
    pub(crate) async fn run(
        mut self,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), AgentError> {
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            if self.identity.expires_at <= self.clock.unix_secs() {
                return Err(AgentError::SvidExpired(self.identity.expires_at));
            }
            let server = self.servers.address().to_owned();
            let why = match self.connection(&server, &mut shutdown).await {
                Ok(SessionEnd::Shutdown) => return Ok(()),
                // Same server, at once: it just renewed the agent SVID.
                Ok(SessionEnd::Reconnect) => continue,
                Err(SessionError::Fatal(e)) => return Err(e),
                Err(SessionError::Refused(reason)) => return Err(self.discard_identity(reason)),
                Err(SessionError::Retry(why)) => why,
            };
            let wait = match self.servers.failed() {
                NextAttempt::Now => {
                    tracing::warn!(
                        %server,
                        error = %why,
                        next_server = %self.servers.address(),
                        "server session ended; trying the next server address"
                    );
                    continue;
                }
                NextAttempt::After(backoff) => jittered_backoff(backoff, random_sample()),
            };
            tracing::warn!(
                %server,
                error = %why,
                retry_in = ?wait,
                next_server = %self.servers.address(),
                "server session ended and no server address answered; retrying after a backoff"
            );
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return Ok(()),
            }
        }
    }

    /// One connection to the server at `server`: follow the sync stream and wake for renewals
    /// until it ends.
    async fn connection(
        &mut self,
        server: &str,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<SessionEnd, SessionError> {
        let mut client = server_client::connect(
            server,
            &self.config.trust_domain,
            self.roots.clone(),
            Some(self.svid.clone()),
            self.config.tls,
        )
        .await
        .map_err(|e| SessionError::Retry(with_causes(&e)))?;
        self.client.store(Some(Arc::new(client.clone())));
        let mut stream = client
            .sync_authorized_entries(pb::SyncAuthorizedEntriesRequest {
                omit_unchanged_entries: true,
                accept_entry_parts: true,
            })
            .await
            .map_err(classify)?
            .into_inner();
        self.servers.connected();
        tracing::info!(%server, "sync stream open");
        // The parts of an authorized set received so far; a broken connection drops them.
        let mut parts = EntryParts::new(MAX_PENDING_PART_BYTES);
        loop {
            let now = self.clock.unix_secs();
            let next = self
                .cache
                .next_wake(now)
                .map_or(self.identity_renew_at, |at| at.min(self.identity_renew_at));
            let wait = Duration::from_secs(u64::try_from(next.saturating_sub(now)).unwrap_or(0))
                .max(MIN_WAKE);
            tokio::select! {
                msg = stream.message() => match msg {
                    Ok(Some(m)) => {
                        self.servers.served();
                        self.receive(&mut client, &mut parts, m).await?;
                    }
                    Ok(None) => return Err(SessionError::Retry("the server closed the sync stream".into())),
                    Err(status) => return Err(classify(status)),
                },
                () = tokio::time::sleep(wait) => {
                    if self.clock.unix_secs() >= self.identity_renew_at {
                        self.renew_agent_svid(&mut client).await?;
                        self.servers.served();
                        // Reconnect so the server sees the new SVID.
                        return Ok(SessionEnd::Reconnect);
                    }
                    self.publish();
                    self.sign_due_svids(&mut client).await?;
                    self.publish();
                }
                _ = shutdown.changed() => return Ok(SessionEnd::Shutdown),
            }
        }
    }

    /// Takes one sync message: a part of an authorized set is held in `parts`, anything else is
    /// applied (a last part with the entries of the parts before it). A malformed part, or parts
    /// beyond their budget, end the stream (the server breaks the protocol).
    async fn receive(
        &mut self,
        client: &mut Client,
        parts: &mut EntryParts,
        msg: pb::SyncAuthorizedEntriesResponse,
    ) -> Result<(), SessionError> {
        match parts.take(msg) {
            Ok(Some(whole)) => self.apply(client, whole).await,
            Ok(None) => Ok(()),
            Err(e) => Err(SessionError::Retry(e.to_string())),
        }
    }

    /// Applies one sync message: a new bundle (saved, and the TLS roots replaced), then the new
    /// authorized set, the tainted authorities (SVIDs chained to a newly tainted one are
    /// re-signed now, JWT-SVIDs it signed are no longer served from the cache) and the
    /// revocations ([`Session::apply_revocations`]).
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
        if msg.bundle.is_some() {
            // Every message with a bundle carries the whole trust part: the federated bundles
            // are all of them (none left means none).
            let federated = self.federated_from(&msg.federated_bundles);
            if federated != *self.federated {
                self.federated = Arc::new(federated);
            }
        }
        // A push of trust alone leaves the authorized set as it was (the agent asked for that).
        if !msg.entries_unchanged {
            self.cache.set_entries(msg.entries);
        }
        let mut tainted = msg.tainted_authorities;
        tainted.sort();
        tainted.dedup();
        if **self.tainted.load() != tainted {
            let now = self.clock.unix_secs();
            // The agent's own SVID too: renewed on the next wake (in a moment), then reconnected.
            let own = sigil_keys::cert_ids::chain_authority_ids(&self.identity.cert_chain);
            if own.iter().any(|id| tainted.binary_search(id).is_ok()) {
                tracing::info!("the agent SVID chains to a tainted authority; renewing it");
                self.identity_renew_at = self.identity_renew_at.min(now);
            }
            self.cache.set_tainted(tainted.clone(), now);
            self.tainted.store(Arc::new(tainted));
        }
        self.apply_revocations(
            msg.revoked_x509_svids,
            msg.revoked_jwt_svids,
            msg.crls,
            self.clock.unix_secs(),
        );
        // Publish removals before signing anything new, so a deleted entry stops being served now.
        self.publish();
        self.sign_due_svids(client).await?;
        self.publish();
        Ok(())
    }

    /// Takes the deny-list and CRLs of one sync message, which replace the previous ones (the
    /// server sends them whole), bounded and without entries already expired at `now`: held
    /// X509-SVIDs whose serial is newly listed become due at once, the JWT minter stops serving
    /// cached tokens whose `jti` is listed, and the next snapshot carries the JWT deny-list (for
    /// `ValidateJWTSVID`) and the CRLs.
    ///
    /// The agent's own SVID is deliberately not checked against the deny-list: if its serial is
    /// listed, the server refuses the agent's next call with `PermissionDenied` and [`classify`]
    /// turns that into the refusal that stops the agent.
    fn apply_revocations(
        &mut self,
        x509: Vec<pb::RevokedCredential>,
        jwt: Vec<pb::RevokedCredential>,
        crls: Vec<Vec<u8>>,
        now: i64,
    ) {
        self.cache
            .set_revoked(Arc::new(RevokedIds::x509_serials(x509, now)), now);
        let jwt = RevokedIds::jwt_ids(jwt, now);
        if **self.revoked_jwt.load() != jwt {
            self.revoked_jwt.store(Arc::new(jwt));
        }
        let crls = bounded_crls(crls);
        if *self.crls != crls {
            self.crls = Arc::new(crls);
        }
    }

    /// Asks the server to sign, in one batch, every SVID the cache says is due.
    async fn sign_due_svids(&mut self, client: &mut Client) -> Result<(), SessionError> {
        let now = self.clock.unix_secs();
        let due = self.cache.due(now);
        if due.is_empty() {
            return Ok(());
        }
        let mut keys: HashMap<String, PrivateKey> = HashMap::with_capacity(due.len());
        let mut params = Vec::with_capacity(due.len());
        for d in due {
            let key = PrivateKey::generate().map_err(|e| SessionError::Fatal(e.into()))?;
            let csr = key
                .csr_der(&d.spiffe_id)
                .map_err(|e| SessionError::Fatal(e.into()))?;
            params.push(pb::NewX509SvidParams {
                entry_id: d.entry_id.clone(),
                csr,
            });
            keys.insert(d.entry_id, key);
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
                self.cache.defer(&r.entry_id, now);
                continue;
            };
            tracing::debug!(entry = %r.entry_id, spiffe_id = %svid.spiffe_id, "received X509-SVID");
            let material = X509SvidMaterial {
                cert_chain: svid.cert_chain,
                key,
                expires_at: svid.expires_at,
            };
            self.cache.store(&r.entry_id, material, now);
        }
        Ok(())
    }

    /// Renews the agent's own SVID with a new key; saved before it is used.
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
        self.identity_renew_at = renew_at(self.clock.unix_secs(), svid.expires_at);
        tracing::info!(expires_at = svid.expires_at, "renewed the agent SVID");
        Ok(())
    }

    /// The server refused this agent: stop serving (every held SVID and its key dropped, an empty
    /// snapshot published, the server connection released), then delete the stored identity so
    /// a restart cannot present it again. Returns the error the agent stops with.
    fn discard_identity(&mut self, reason: String) -> AgentError {
        self.cache = SvidCache::default();
        self.client.store(None);
        publish(
            &self.snapshot_tx,
            IdentitySnapshot::empty(self.bundle.clone()),
        );
        match AgentIdentity::remove(&self.config.data_dir) {
            Ok(()) => AgentError::Rejected(reason),
            Err(source) => AgentError::RejectedIdentityKept { reason, source },
        }
    }

    /// The federated bundles of a sync message; a bundle that does not parse, whose trust domain
    /// is not its key or is this agent's own, is left out with a warning (one peer's bad bundle
    /// must not stop the agent); at most [`MAX_FEDERATED_BUNDLES`].
    fn federated_from(&self, wire: &HashMap<String, pb::Bundle>) -> FederatedBundles {
        let mut federated = FederatedBundles::new();
        for (name, b) in wire {
            if federated.len() >= MAX_FEDERATED_BUNDLES {
                tracing::warn!(
                    "more federated bundles than {MAX_FEDERATED_BUNDLES}; the rest are left out"
                );
                break;
            }
            match bundle_from_pb(b) {
                Ok(bundle)
                    if bundle.trust_domain.as_str() == name
                        && bundle.trust_domain != self.config.trust_domain =>
                {
                    let previous = self.federated.get(&bundle.trust_domain);
                    // Keep the same allocation when nothing changed.
                    let bundle = match previous {
                        Some(p) if **p == bundle => p.clone(),
                        _ => Arc::new(bundle),
                    };
                    federated.insert(bundle.trust_domain.clone(), bundle);
                }
                _ => {
                    tracing::warn!(trust_domain = %name.chars().take(255).collect::<String>(), "federated bundle left out: it does not parse or names another trust domain");
                }
            }
        }
        federated
    }

    /// Publishes what is servable now.
    fn publish(&self) {
        let mut snapshot = build_snapshot(
            &self.config.trust_domain,
            &self.bundle,
            &self.cache,
            &self.crls,
            &self.revoked_jwt.load_full(),
            self.clock.unix_secs(),
        );
        snapshot.federated_bundles = (*self.federated).clone();
        publish(&self.snapshot_tx, snapshot);
    }
}

/// Only a refusal of the agent itself (`PermissionDenied`: the server's answer to a banned,
/// evicted or replaced agent) is final; everything else is retried, on the next server address.
//
// Open question with several replicas: each replica judges the agent from its own in-memory
// agent index, fed by the shared database's change feed. A replica that has not caught up (it
// has not yet applied an attestation or a renewal recorded through another replica) answers
// `PermissionDenied` ("not attested", "an SVID that is no longer current") to a valid agent,
// which then deletes its identity for good. Whether the server should catch up with the store
// before refusing an agent or serial it does not know, or the agent should have a refusal
// confirmed by another replica, is not decided; today a refusal is final, as with one server.
// (The session starts on the replica that attested the agent, which narrows the first case.)
fn classify(status: tonic::Status) -> SessionError {
    match status.code() {
        tonic::Code::PermissionDenied => SessionError::Refused(status.message().to_owned()),
        _ => SessionError::Retry(format!("{}: {}", status.code(), status.message())),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;

    use sigil_proto::agent::v1::agent_service_client::AgentServiceClient;
    use sigil_spiffe::TrustDomain;
    use sigil_spiffe::time::from_unix_secs;
    use sigil_testkit::FakeClock;
    use tonic::transport::Channel;

    use super::*;
    use crate::fake_server::{CountingListener, FakeServer, SERVER_ID, TestCa};
    use crate::state::tests::{sample_identity, self_signed};
    use crate::svid_cache::REVOKED_SVID_GRACE_SECS;
    use crate::svid_cache::tests::{NOW, current, entry, held_serial};

    /// A configuration for `dir` whose server address nothing listens on.
    pub(crate) fn test_config(dir: &Path) -> AgentConfig {
        // Nothing listens on a port just released: any server call fails fast.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        AgentConfig {
            trust_domain: TrustDomain::parse("example.org").unwrap(),
            server_addresses: vec![format!("127.0.0.1:{port}")],
            bootstrap_roots: Vec::new(),
            join_token: None,
            data_dir: dir.join("data"),
            socket_path: dir.join("workload.sock"),
            max_hash_bytes: 1 << 20,
            max_backoff: Duration::from_secs(1),
            usage_report_interval: crate::usage::DEFAULT_USAGE_REPORT_INTERVAL,
            tls: sigil_tls::TlsPolicy::default(),
        }
    }

    /// A session resumed from a stored identity valid for an hour, on a fake clock at `NOW`.
    fn resumed_session(dir: &Path) -> (Session, FakeClock) {
        let config = test_config(dir);
        let identity = sample_identity(NOW + 3_600);
        identity.save(&config.data_dir).unwrap();
        let clock = FakeClock::new(from_unix_secs(NOW));
        let session = Session::new(config, Arc::new(clock.clone()), identity, 0).unwrap();
        (session, clock)
    }

    /// A client whose every call fails as unreachable.
    fn unreachable_client(session: &Session) -> Client {
        let uri = format!("http://{}", session.servers.address());
        AgentServiceClient::new(Channel::from_shared(uri).unwrap().connect_lazy())
    }

    fn hold(session: &mut Session, e: pb::Entry) {
        let svid = current(&e);
        session.cache.hold(e, svid);
    }

    fn served(session: &Session) -> Vec<String> {
        session
            .snapshot_tx
            .borrow()
            .identities
            .iter()
            .map(|i| i.entry_id.clone())
            .collect()
    }

    #[test]
    fn a_resumed_session_renews_its_svid_near_half_life_and_serves_nothing_yet() {
        let dir = tempfile::tempdir().unwrap();
        let (session, _clock) = resumed_session(dir.path());
        assert_eq!(
            session.spiffe_id().as_str(),
            "spiffe://example.org/sigil/agent/join_token/n1"
        );
        let renew = session.identity_renew_at;
        assert!((NOW + 1_440..=NOW + 1_800).contains(&renew), "{renew}");
        assert!(session.snapshots().borrow().identities.is_empty());
    }

    #[tokio::test]
    async fn entries_the_server_no_longer_sends_stop_being_served() {
        let dir = tempfile::tempdir().unwrap();
        let (mut session, _clock) = resumed_session(dir.path());
        let mut client = unreachable_client(&session);
        let a = entry("e-a", "spiffe://example.org/a", 1);
        let b = entry("e-b", "spiffe://example.org/b", 1);
        hold(&mut session, a.clone());
        hold(&mut session, b);
        session.publish();
        assert_eq!(served(&session), vec!["e-a", "e-b"]);

        // Every remaining entry has a current SVID, so this needs no server call.
        let msg = pb::SyncAuthorizedEntriesResponse {
            entries: vec![a],
            ..Default::default()
        };
        assert!(session.apply(&mut client, msg).await.is_ok());
        assert_eq!(served(&session), vec!["e-a"]);
        assert!(session.cache.svid("e-b").is_none(), "its key is dropped");
    }

    #[tokio::test]
    async fn a_message_with_unchanged_entries_keeps_the_set_and_an_empty_one_clears_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut session, _clock) = resumed_session(dir.path());
        let mut client = unreachable_client(&session);
        hold(&mut session, entry("e-a", "spiffe://example.org/a", 1));
        session.publish();

        let trust_only = pb::SyncAuthorizedEntriesResponse {
            entries_unchanged: true,
            ..Default::default()
        };
        assert!(session.apply(&mut client, trust_only).await.is_ok());
        assert_eq!(served(&session), vec!["e-a"], "the set is kept");

        let empty = pb::SyncAuthorizedEntriesResponse::default();
        assert!(session.apply(&mut client, empty).await.is_ok());
        assert!(served(&session).is_empty(), "an empty set is an empty set");
    }

    /// Six entries `e-0`..`e-5` and the messages that send them as one set: two parts of two
    /// entries, then a last message with the last two and `crl` (its trust part).
    fn set_in_three_parts(crl: u8) -> (Vec<pb::Entry>, Vec<pb::SyncAuthorizedEntriesResponse>) {
        let entries: Vec<pb::Entry> = (0..6)
            .map(|i| entry(&format!("e-{i}"), &format!("spiffe://example.org/w{i}"), 1))
            .collect();
        let part = |chunk: &[pb::Entry]| pb::SyncAuthorizedEntriesResponse {
            entries: chunk.to_vec(),
            entries_continue: true,
            ..Default::default()
        };
        let last = pb::SyncAuthorizedEntriesResponse {
            entries: entries[4..].to_vec(),
            entries_unchanged: false,
            ..marked_message(crl)
        };
        let messages = vec![part(&entries[..2]), part(&entries[2..4]), last];
        (entries, messages)
    }

    #[tokio::test]
    async fn a_set_sent_in_parts_is_applied_once_whole_with_the_trust_part_of_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let (mut session, _clock) = resumed_session(dir.path());
        let mut client = unreachable_client(&session);
        let (entries, messages) = set_in_three_parts(9);
        // Every entry of the set has a current SVID (so applying it needs no server call), and
        // one more entry the set no longer has.
        for e in &entries {
            hold(&mut session, e.clone());
        }
        hold(&mut session, entry("e-old", "spiffe://example.org/old", 1));
        session.publish();
        let before = served(&session);
        assert_eq!(before.len(), 7);

        let mut parts = EntryParts::new(MAX_PENDING_PART_BYTES);
        let [first, second, last] = <[_; 3]>::try_from(messages).unwrap();
        for part in [first, second] {
            assert!(session.receive(&mut client, &mut parts, part).await.is_ok());
            assert_eq!(
                served(&session),
                before,
                "nothing applied before the last part"
            );
            assert_eq!(session.cache.entries().len(), 7);
            assert!(session.crls.is_empty());
        }
        assert!(session.receive(&mut client, &mut parts, last).await.is_ok());
        let ids: Vec<String> = entries.iter().map(|e| e.id.clone()).collect();
        assert_eq!(served(&session), ids, "the union of the parts, and only it");
        assert_eq!(session.cache.entries(), entries.as_slice());
        assert_eq!(*session.crls, [vec![0x30, 0x03, 0x02, 0x01, 9]]);
        assert!(
            parts.entries.is_none(),
            "the parts are forgotten once applied"
        );
    }

    #[test]
    fn a_part_with_anything_but_entries_is_refused() {
        let e = entry("e-a", "spiffe://example.org/a", 1);
        let part = pb::SyncAuthorizedEntriesResponse {
            entries: vec![e.clone()],
            entries_continue: true,
            ..Default::default()
        };
        let mut parts = EntryParts::new(MAX_PENDING_PART_BYTES);
        assert_eq!(parts.take(part.clone()), Ok(None), "entries only: held");
        let with_trust = [
            pb::SyncAuthorizedEntriesResponse {
                bundle: Some(pb::Bundle::default()),
                ..part.clone()
            },
            pb::SyncAuthorizedEntriesResponse {
                crls: vec![vec![1]],
                ..part.clone()
            },
            pb::SyncAuthorizedEntriesResponse {
                policy_hash: "h".into(),
                ..part.clone()
            },
            pb::SyncAuthorizedEntriesResponse {
                entries_unchanged: true,
                ..part.clone()
            },
        ];
        for bad in with_trust {
            let mut parts = EntryParts::new(MAX_PENDING_PART_BYTES);
            assert_eq!(parts.take(bad), Err(PartsError::NotEntriesOnly));
        }
    }

    #[test]
    fn parts_beyond_their_budget_are_refused() {
        let part = |id: &str| pb::SyncAuthorizedEntriesResponse {
            entries: vec![entry(id, "spiffe://example.org/a", 1)],
            entries_continue: true,
            ..Default::default()
        };
        let one =
            prost::Message::encoded_len(&part("e-0").entries[0]) + std::mem::size_of::<pb::Entry>();
        let mut parts = EntryParts::new(2 * one);
        assert_eq!(parts.take(part("e-0")), Ok(None));
        assert_eq!(parts.take(part("e-1")), Ok(None), "exactly the budget");
        assert_eq!(
            parts.take(part("e-2")),
            Err(PartsError::TooLarge { max: 2 * one })
        );
    }

    #[test]
    fn a_last_part_saying_unchanged_is_refused_and_a_whole_set_passes_through() {
        let part = pb::SyncAuthorizedEntriesResponse {
            entries: vec![entry("e-0", "spiffe://example.org/a", 1)],
            entries_continue: true,
            ..Default::default()
        };
        let unchanged = marked_message(1);
        let mut parts = EntryParts::new(MAX_PENDING_PART_BYTES);
        assert_eq!(
            parts.take(unchanged.clone()),
            Ok(Some(unchanged.clone())),
            "without parts before it, a message is applied as it is"
        );
        assert_eq!(parts.take(part), Ok(None));
        assert_eq!(parts.take(unchanged), Err(PartsError::UnchangedAfterParts));
    }

    #[tokio::test]
    async fn held_svids_keep_being_served_while_the_server_is_unreachable() {
        let dir = tempfile::tempdir().unwrap();
        let (mut session, _clock) = resumed_session(dir.path());
        let mut client = unreachable_client(&session);
        hold(&mut session, entry("e-a", "spiffe://example.org/a", 1));
        session.publish();

        // A new revision needs a new SVID; the server cannot be reached.
        let msg = pb::SyncAuthorizedEntriesResponse {
            entries: vec![entry("e-a", "spiffe://example.org/a", 2)],
            ..Default::default()
        };
        let result = session.apply(&mut client, msg).await;
        assert!(matches!(result, Err(SessionError::Retry(_))));
        assert_eq!(served(&session), vec!["e-a"], "the old SVID is still valid");
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
        let (mut session, _clock) = resumed_session(dir.path());
        let mut client = unreachable_client(&session);
        let mut rx = session.snapshots();
        let new_root = self_signed(
            &SpiffeId::parse("spiffe://example.org/new-root").unwrap(),
            &PrivateKey::generate().unwrap(),
        );
        let msg = pb::SyncAuthorizedEntriesResponse {
            bundle: Some(pb_bundle(&session.bundle, "example.org", new_root.clone())),
            ..Default::default()
        };
        assert!(session.apply(&mut client, msg).await.is_ok());

        assert_eq!(
            session
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
        let stored = AgentIdentity::load(&session.config.data_dir)
            .unwrap()
            .unwrap();
        assert_eq!(stored.bundle.x509_authorities, vec![new_root]);
        assert_eq!(stored.bundle.refresh_hint, 60);
    }

    #[tokio::test]
    async fn federated_bundles_are_published_replaced_and_bad_ones_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let (mut session, _clock) = resumed_session(dir.path());
        let mut client = unreachable_client(&session);
        let mut rx = session.snapshots();
        let own = session.bundle.clone();
        let with = |federated: Vec<(&str, pb::Bundle)>| pb::SyncAuthorizedEntriesResponse {
            bundle: Some(pb_bundle(
                &own,
                "example.org",
                own.x509_authorities[0].clone(),
            )),
            federated_bundles: federated
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            ..Default::default()
        };
        let peer = |root: u8| pb_bundle(&own, "peer.org", vec![root]);
        let msg = with(vec![
            ("peer.org", peer(1)),
            // Keyed under another name than its own trust domain, and this agent's own.
            ("liar.org", peer(2)),
            ("example.org", pb_bundle(&own, "example.org", vec![3])),
        ]);
        assert!(session.apply(&mut client, msg).await.is_ok());
        let federated = rx.borrow_and_update().federated_bundles.clone();
        let names: Vec<&str> = federated.keys().map(|td| td.as_str()).collect();
        assert_eq!(names, vec!["peer.org"]);
        assert_eq!(
            federated.values().next().unwrap().x509_authorities,
            vec![vec![1]]
        );

        // A new bundle of the peer reaches the published snapshot (and so every open stream).
        assert!(
            session
                .apply(&mut client, with(vec![("peer.org", peer(9))]))
                .await
                .is_ok()
        );
        assert!(rx.has_changed().unwrap());
        let federated = rx.borrow_and_update().federated_bundles.clone();
        assert_eq!(
            federated.values().next().unwrap().x509_authorities,
            vec![vec![9]]
        );
        // The same again publishes nothing new; a message without any removes it.
        assert!(
            session
                .apply(&mut client, with(vec![("peer.org", peer(9))]))
                .await
                .is_ok()
        );
        assert!(!rx.has_changed().unwrap());
        assert!(session.apply(&mut client, with(Vec::new())).await.is_ok());
        assert!(rx.borrow_and_update().federated_bundles.is_empty());
    }

    #[tokio::test]
    async fn a_bundle_of_another_trust_domain_is_fatal_and_not_applied() {
        let dir = tempfile::tempdir().unwrap();
        let (mut session, _clock) = resumed_session(dir.path());
        let mut client = unreachable_client(&session);
        let before = session.roots.current();
        let msg = pb::SyncAuthorizedEntriesResponse {
            bundle: Some(pb_bundle(&session.bundle, "evil.org", vec![1, 2, 3])),
            ..Default::default()
        };
        let result = session.apply(&mut client, msg).await;
        assert!(matches!(
            result,
            Err(SessionError::Fatal(AgentError::BadResponse(_)))
        ));
        assert_eq!(session.roots.current(), before);
    }

    fn revoked(id: &str, expires_at: i64) -> pb::RevokedCredential {
        pb::RevokedCredential {
            id: id.into(),
            expires_at,
        }
    }

    #[tokio::test]
    async fn a_revoked_serial_is_replaced_at_once_and_stops_being_served_after_the_grace() {
        let dir = tempfile::tempdir().unwrap();
        let (mut session, clock) = resumed_session(dir.path());
        let mut client = unreachable_client(&session);
        let a = entry("e-a", "spiffe://example.org/a", 1);
        let b = entry("e-b", "spiffe://example.org/b", 1);
        hold(&mut session, a.clone());
        hold(&mut session, b.clone());
        session.publish();
        let serial_a = held_serial(&session.cache, "e-a");

        let msg = pb::SyncAuthorizedEntriesResponse {
            entries: vec![a, b],
            // Sent in uppercase to prove the comparison does not depend on it.
            revoked_x509_svids: vec![revoked(&serial_a.to_ascii_uppercase(), NOW + 600)],
            ..Default::default()
        };
        // The replacement is asked for at once (same revision): the server is unreachable here.
        let result = session.apply(&mut client, msg).await;
        assert!(matches!(result, Err(SessionError::Retry(_))));
        let due: Vec<String> = session
            .cache
            .due(NOW)
            .into_iter()
            .map(|d| d.entry_id)
            .collect();
        assert_eq!(due, ["e-a"]);
        assert_eq!(
            served(&session),
            vec!["e-a", "e-b"],
            "served while its replacement is on its way"
        );

        clock.advance(Duration::from_secs(
            u64::try_from(REVOKED_SVID_GRACE_SECS).unwrap(),
        ));
        session.publish();
        assert_eq!(served(&session), vec!["e-b"], "no replacement came");
    }

    #[tokio::test]
    async fn a_sync_message_sets_the_jwt_deny_list_and_the_crls_without_expired_entries() {
        let dir = tempfile::tempdir().unwrap();
        let (mut session, _clock) = resumed_session(dir.path());
        let mut client = unreachable_client(&session);
        let minter_slot = session.revoked_jwt_slot();
        let mut rx = session.snapshots();
        rx.mark_unchanged();
        let crl = vec![0x30, 0x03, 0x02, 0x01, 0x01];
        let msg = pb::SyncAuthorizedEntriesResponse {
            revoked_jwt_svids: vec![
                revoked("jti-live", NOW + 60),
                revoked("jti-expired", NOW - 3_600),
            ],
            revoked_x509_svids: vec![revoked("0a0b", NOW - 3_600)],
            crls: vec![crl.clone()],
            ..Default::default()
        };
        assert!(session.apply(&mut client, msg).await.is_ok());

        let slot = minter_slot.load();
        assert!(slot.contains("jti-live"));
        assert!(!slot.contains("jti-expired"), "expired entries are dropped");
        assert!(session.cache.due(NOW).is_empty());
        assert!(rx.has_changed().unwrap(), "workload streams are woken");
        let snapshot = rx.borrow_and_update().clone();
        assert_eq!(*snapshot.crls, vec![crl]);
        assert!(snapshot.revoked_jwt_svids.contains("jti-live"));
        assert_eq!(snapshot.revoked_jwt_svids.len(), 1);

        // The lists are whole each time: an empty message clears them.
        let msg = pb::SyncAuthorizedEntriesResponse::default();
        assert!(session.apply(&mut client, msg).await.is_ok());
        assert!(minter_slot.load().is_empty());
        let snapshot = rx.borrow_and_update().clone();
        assert!(snapshot.crls.is_empty());
        assert!(snapshot.revoked_jwt_svids.is_empty());
    }

    #[test]
    fn only_permission_denied_ends_the_agent() {
        assert!(matches!(
            classify(tonic::Status::permission_denied("banned")),
            SessionError::Refused(m) if m == "banned"
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
    async fn a_refused_agent_stops_serving_and_deletes_its_identity() {
        let dir = tempfile::tempdir().unwrap();
        let (mut session, _clock) = resumed_session(dir.path());
        hold(&mut session, entry("e-a", "spiffe://example.org/a", 1));
        session.publish();
        let mut rx = session.snapshots();
        assert_eq!(served(&session), vec!["e-a"]);
        assert!(
            AgentIdentity::load(&session.config.data_dir)
                .unwrap()
                .is_some()
        );
        session
            .client
            .store(Some(Arc::new(unreachable_client(&session))));

        let err = session.discard_identity("agent `x` is banned or evicted".into());
        assert!(
            matches!(&err, AgentError::Rejected(m) if m == "agent `x` is banned or evicted"),
            "{err}"
        );
        assert!(rx.has_changed().unwrap(), "workload streams are woken");
        assert!(rx.borrow_and_update().identities.is_empty());
        assert!(session.cache.svid("e-a").is_none(), "its key is dropped");
        assert!(session.client.load().is_none(), "no more server calls");
        assert!(
            AgentIdentity::load(&session.config.data_dir)
                .unwrap()
                .is_none(),
            "the stored identity is deleted"
        );
        let line = err.to_string();
        assert!(
            line.contains("banned or evicted") && line.contains("deleted"),
            "{line}"
        );
    }

    #[tokio::test]
    async fn a_refused_agent_whose_identity_cannot_be_deleted_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let (mut session, _clock) = resumed_session(dir.path());
        hold(&mut session, entry("e-a", "spiffe://example.org/a", 1));
        session.publish();
        let state = session.config.data_dir.join("agent-state.json");
        std::fs::remove_file(&state).unwrap();
        std::fs::create_dir(&state).unwrap();

        let err = session.discard_identity("banned".into());
        assert!(
            matches!(&err, AgentError::RejectedIdentityKept { reason, .. } if reason == "banned"),
            "{err}"
        );
        assert!(served(&session).is_empty(), "it stops serving all the same");
    }

    #[tokio::test]
    async fn run_ends_when_the_agent_svid_has_expired() {
        let dir = tempfile::tempdir().unwrap();
        let (session, clock) = resumed_session(dir.path());
        clock.advance(Duration::from_secs(3_600));
        let (_tx, rx) = watch::channel(false);
        let result = tokio::time::timeout(Duration::from_secs(5), session.run(rx))
            .await
            .unwrap();
        assert!(matches!(result, Err(AgentError::SvidExpired(t)) if t == NOW + 3_600));
    }

    #[tokio::test]
    async fn run_keeps_retrying_an_unreachable_server_until_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let (session, _clock) = resumed_session(dir.path());
        let (tx, rx) = watch::channel(false);
        let running = tokio::spawn(session.run(rx));
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(!running.is_finished(), "an unreachable server is not fatal");
        tx.send(true).unwrap();
        let result = tokio::time::timeout(Duration::from_secs(5), running)
            .await
            .unwrap()
            .unwrap();
        assert!(result.is_ok());
    }

    /// A session on a fake clock at `NOW` for an agent identity issued by `ca`, over
    /// `addresses`, whose first backoff is a minute: any wait shows as a test timeout.
    fn failover_session(dir: &Path, ca: &TestCa, addresses: &[String]) -> Session {
        let mut config = test_config(dir);
        config.server_addresses = addresses.to_vec();
        config.max_backoff = Duration::from_secs(60);
        let identity = ca.agent_identity(NOW + 3_600);
        identity.save(&config.data_dir).unwrap();
        let clock = FakeClock::new(from_unix_secs(NOW));
        let mut session = Session::new(config, Arc::new(clock), identity, 0).unwrap();
        session.servers = ServerFailover::new(
            addresses.to_vec(),
            0,
            Duration::from_secs(60),
            Duration::from_secs(60),
        )
        .unwrap();
        session
    }

    /// A sync message that keeps the held entries and carries `crl`: the agent's snapshot shows
    /// which server it synced with.
    fn marked_message(crl: u8) -> pb::SyncAuthorizedEntriesResponse {
        pb::SyncAuthorizedEntriesResponse {
            entries_unchanged: true,
            crls: vec![vec![0x30, 0x03, 0x02, 0x01, crl]],
            ..Default::default()
        }
    }

    /// Waits until the published snapshot carries `crl` (see [`marked_message`]).
    async fn wait_for_crl(rx: &mut watch::Receiver<Arc<IdentitySnapshot>>, crl: u8) {
        let want = vec![vec![0x30, 0x03, 0x02, 0x01, crl]];
        tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|s| *s.crls == want))
            .await
            .expect("the agent did not sync in time")
            .unwrap();
    }

    /// A port nothing listens on.
    fn dead_address() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    }

    #[tokio::test]
    async fn a_dead_first_address_is_skipped_and_the_agent_syncs_through_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("example.org");
        let server = FakeServer::start(ca.svid(SERVER_ID), &[ca.root()], marked_message(7)).await;
        let session = failover_session(dir.path(), &ca, &[dead_address(), server.addr()]);
        let own_leaf = session.identity.cert_chain[0].clone();
        let mut rx = session.snapshots();
        let (stop, stop_rx) = watch::channel(false);
        let running = tokio::spawn(session.run(stop_rx));

        // Within seconds, where a backoff would take a minute: the next address came at once.
        wait_for_crl(&mut rx, 7).await;
        assert_eq!(
            server.syncs(),
            [Some(own_leaf)],
            "one stream, authenticated with the agent's current SVID (no new attestation)"
        );
        stop.send(true).unwrap();
        let result = tokio::time::timeout(Duration::from_secs(5), running).await;
        assert!(result.unwrap().unwrap().is_ok());
        server.stop().await;
    }

    #[tokio::test]
    async fn when_the_server_goes_away_the_next_address_is_tried_at_once_and_serving_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("example.org");
        let server = FakeServer::start(ca.svid(SERVER_ID), &[ca.root()], marked_message(1)).await;
        let next = CountingListener::start().await;
        let mut session = failover_session(dir.path(), &ca, &[server.addr(), next.addr()]);
        hold(&mut session, entry("e-a", "spiffe://example.org/a", 1));
        let mut rx = session.snapshots();
        let (stop, stop_rx) = watch::channel(false);
        let running = tokio::spawn(session.run(stop_rx));
        wait_for_crl(&mut rx, 1).await;
        assert_eq!(
            next.count(),
            0,
            "the first address worked: the next one is not tried"
        );
        let serving = |rx: &watch::Receiver<Arc<IdentitySnapshot>>| {
            rx.borrow()
                .identities
                .iter()
                .map(|i| i.entry_id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(serving(&rx), ["e-a"]);

        server.stop().await;
        tokio::time::timeout(Duration::from_secs(10), async {
            while next.count() == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the next address was not tried at once (a one-minute backoff came first?)");
        // Both addresses have now failed in a row: the agent waits its backoff, it does not spin.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(next.count(), 1);
        assert_eq!(serving(&rx), ["e-a"], "held SVIDs are served meanwhile");
        assert!(!running.is_finished());

        stop.send(true).unwrap();
        let result = tokio::time::timeout(Duration::from_secs(5), running).await;
        assert!(
            result.unwrap().unwrap().is_ok(),
            "shutdown ends the backoff"
        );
    }

    #[tokio::test]
    async fn the_agent_asks_for_parts_and_applies_a_set_sent_in_parts_over_the_wire() {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("example.org");
        let (entries, messages) = set_in_three_parts(5);
        let server = FakeServer::start_sending(ca.svid(SERVER_ID), &[ca.root()], messages).await;
        let mut session = failover_session(dir.path(), &ca, &[server.addr()]);
        for e in &entries {
            hold(&mut session, e.clone());
        }
        hold(&mut session, entry("e-old", "spiffe://example.org/old", 1));
        let mut rx = session.snapshots();
        let (stop, stop_rx) = watch::channel(false);
        let running = tokio::spawn(session.run(stop_rx));

        wait_for_crl(&mut rx, 5).await;
        let serving: Vec<String> = rx
            .borrow()
            .identities
            .iter()
            .map(|i| i.entry_id.clone())
            .collect();
        let ids: Vec<String> = entries.iter().map(|e| e.id.clone()).collect();
        assert_eq!(serving, ids);
        let requests = server.sync_requests();
        assert_eq!(requests.len(), 1, "one stream: the parts broke nothing");
        assert!(requests[0].accept_entry_parts);
        assert!(requests[0].omit_unchanged_entries);
        stop.send(true).unwrap();
        let result = tokio::time::timeout(Duration::from_secs(5), running).await;
        assert!(result.unwrap().unwrap().is_ok());
        server.stop().await;
    }

    #[tokio::test]
    async fn a_server_whose_certificate_does_not_verify_is_skipped_like_a_dead_one() {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("example.org");
        // Both impostors would accept the agent (they trust its root), so only the agent's own
        // check of their certificate keeps it from syncing with them.
        let other_ca = TestCa::new("example.org");
        let foreign_root =
            FakeServer::start(other_ca.svid(SERVER_ID), &[ca.root()], marked_message(2)).await;
        let wrong_id = FakeServer::start(
            ca.svid("spiffe://example.org/not-the-server"),
            &[ca.root()],
            marked_message(3),
        )
        .await;
        let server = FakeServer::start(ca.svid(SERVER_ID), &[ca.root()], marked_message(4)).await;
        let session = failover_session(
            dir.path(),
            &ca,
            &[foreign_root.addr(), wrong_id.addr(), server.addr()],
        );
        let mut rx = session.snapshots();
        let (stop, stop_rx) = watch::channel(false);
        let running = tokio::spawn(session.run(stop_rx));

        wait_for_crl(&mut rx, 4).await;
        assert_eq!(server.syncs().len(), 1);
        assert!(
            foreign_root.syncs().is_empty(),
            "a server under another root"
        );
        assert!(
            wrong_id.syncs().is_empty(),
            "a certificate without the server's ID"
        );
        stop.send(true).unwrap();
        let result = tokio::time::timeout(Duration::from_secs(5), running).await;
        assert!(result.unwrap().unwrap().is_ok());
        for s in [foreign_root, wrong_id, server] {
            s.stop().await;
        }
    }
}
