//! Server composition: opens the datastore and key manager, loads the CA, builds the entry index,
//! and runs the agent API, the admin API and the background loops (change feed, CA rotation,
//! the server's own SVID) as owned tasks that stop together on shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sigil_keys::{KeyManager, PrivateKey};
use sigil_spiffe::{Clock, TrustBundle, TrustDomain};
use sigil_store::Datastore;
use sigil_tls::{LiveRoots, LiveSvid, SpiffeClientVerifier, TlsAcceptor, TlsPolicy};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::agent_api::{AgentApi, IssuanceDefaults};
use crate::agent_index::AgentIndex;
use crate::ca::{CaLifetimes, CaManager};
use crate::entry_index::EntryIndex;
use crate::federation::ForeignBundles;
use crate::issuer::Issuer;
use crate::revocation::RevocationIndex;
use crate::{admin, agent_listener, feed, naming};

/// Lifetime of the server's own TLS SVID, in seconds.
const SERVER_SVID_TTL: u64 = 3600;
/// How often the CA checks whether an authority is due for rotation.
const ROTATION_CHECK: Duration = Duration::from_secs(10);
/// How often expired credentials are pruned from the inventory and the deny-list.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Pause before reading the other replicas' CRLs again after a store failure.
const REPLICA_CRLS_RETRY: Duration = Duration::from_secs(1);
/// How long after its expiry a credential is kept on record.
const PRUNE_GRACE_SECS: i64 = 300;

/// Everything the server needs to run (the CLI builds this from `server.toml`).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub trust_domain: TrustDomain,
    /// This server among the replicas sharing one datastore: it rotates and signs with its own
    /// authorities (its keys never leave `key_dir`) and trusts every replica's. Empty for a
    /// single server.
    pub replica_id: String,
    /// Where the agent API listens (TLS).
    pub bind_address: SocketAddr,
    /// The admin API's Unix socket (mode 0600, in a 0700 directory).
    pub admin_socket: PathBuf,
    /// Directory of private key files (mode 0600).
    pub key_dir: PathBuf,
    pub ca: CaLifetimes,
    /// The upstream authority that signs this replica's roots (every replica of the trust domain
    /// should have the same); `None` for self-signed roots.
    pub upstream: Option<Arc<sigil_ca::UpstreamAuthority>>,
    pub issuance: IssuanceDefaults,
    /// Key-exchange policy of the agent API's TLS listener (and the public one).
    pub tls: TlsPolicy,
    /// The public listener (bundle endpoint, OIDC discovery, health, metrics); none if `None`.
    pub public: Option<crate::public::PublicConfig>,
    /// Federation relationships of the configuration file, created or updated in the datastore
    /// at start.
    pub federations: Vec<crate::federation::ConfiguredFederation>,
    /// Trust anchors for `https_web` bundle endpoints (and external OIDC issuers without their
    /// own); `None`: the system's.
    pub federation_web_roots: Option<Vec<Vec<u8>>>,
    /// Token exchange on the public listener (which then needs an issuer URL); off if `None`.
    pub oauth: Option<crate::oauth::OAuthConfig>,
    /// The Cedar policy directory; `None`: the built-in default (entries and `[oauth]` decide).
    pub policy_dir: Option<PathBuf>,
    /// The audit log (on unless switched off) and its external sinks.
    pub audit: crate::audit::AuditConfig,
    /// The inventory's finding thresholds and usage retention (`[inventory]`).
    pub inventory: crate::governance::InventoryConfig,
    /// Brokered database credentials: the targets of the configuration file and the password
    /// rules (`[credentials]`). Targets created through the admin API live in the datastore.
    pub credentials: crate::credentials::CredentialsConfig,
}

/// What went wrong starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Ca(#[from] crate::ca::CaManagerError),
    #[error(transparent)]
    Store(#[from] sigil_store::StoreError),
    #[error(transparent)]
    Keys(#[from] sigil_keys::KeyError),
    #[error(transparent)]
    Tls(#[from] sigil_tls::TlsError),
    #[error("admin API: {0}")]
    Admin(String),
    #[error("credentials: {0}")]
    Credentials(String),
    #[error("policy: {0}")]
    Policy(#[from] sigil_policy::PolicyError),
    #[error(
        "token exchange ([oauth]) needs the public listener with an issuer URL ([public] issuer)"
    )]
    OAuthWithoutIssuer,
    #[error("the public listener may serve plain HTTP on a loopback address only, not {0}")]
    PlainPublic(SocketAddr),
}

/// A running server. Dropping it does not stop it; call [`ServerHandle::shutdown`].
pub struct ServerHandle {
    /// The address the agent API actually listens on (useful with port 0).
    pub agent_api_addr: SocketAddr,
    /// The address the public listener actually listens on, when there is one.
    pub public_addr: Option<SocketAddr>,
    /// The OIDC issuer URL JWT-SVIDs carry, when there is one.
    pub issuer: Option<String>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Refreshes a federated bundle on demand.
    pub federation: crate::federation::refresher::RefreshHandle,
    /// The federated bundles held.
    pub foreign: Arc<ForeignBundles>,
    pub ca: Arc<CaManager>,
    pub store: Arc<dyn Datastore>,
    pub index: Arc<EntryIndex>,
    pub agents: Arc<AgentIndex>,
    pub trust_domain: TrustDomain,
    /// The policy set in force; `reload` it on SIGHUP.
    pub policies: Arc<crate::policy::Policies>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("agent_api_addr", &self.agent_api_addr)
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

impl ServerHandle {
    /// The current trust bundle.
    pub fn bundle(&self) -> Arc<TrustBundle> {
        self.ca.bundle()
    }

    /// Signals every task to stop and waits for them.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        while let Some(res) = self.tasks.join_next().await {
            if let Err(e) = res
                && e.is_panic()
            {
                tracing::error!("a server task panicked during shutdown");
            }
        }
    }

    /// Waits until any server task ends (which means something failed) — or forever.
    pub async fn wait_any(&mut self) {
        if self.tasks.join_next().await.is_none() {
            std::future::pending::<()>().await;
        }
    }
}

/// Signs the CRLs again and republishes the deny-list whenever the revocation index changes.
async fn publish_revocations(
    revocations: Arc<RevocationIndex>,
    ca: Arc<CaManager>,
    mut stop: watch::Receiver<bool>,
) {
    let mut changes = revocations.subscribe();
    loop {
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            _ = stop.changed() => return,
        }
        if let Err(e) = ca.set_revocations(revocations.snapshot()).await {
            tracing::error!(error = %e, "cannot publish the revocations");
        }
    }
}

/// Serves the CRLs other replicas stored for their authorities, read again whenever the feed
/// shows one of them (or one of their authorities) changed.
async fn publish_replica_crls(
    ca: Arc<CaManager>,
    changed: Arc<tokio::sync::Notify>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = changed.notified() => {}
            _ = stop.changed() => return,
        }
        // The feed does not say it again: a failed read is retried until it succeeds.
        while let Err(e) = ca.refresh_replica_crls().await {
            tracing::error!(error = %e, "cannot read the other replicas' CRLs; retrying");
            tokio::select! {
                () = tokio::time::sleep(REPLICA_CRLS_RETRY) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

/// Forgets, every [`PRUNE_EVERY`], issued credentials and revocations whose credential expired
/// more than [`PRUNE_GRACE_SECS`] ago (a margin for clocks that disagree).
async fn prune_credentials(
    store: Arc<dyn Datastore>,
    clock: Arc<dyn Clock>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(PRUNE_EVERY) => {}
            _ = stop.changed() => return,
        }
        let before = clock.unix_secs().saturating_sub(PRUNE_GRACE_SECS);
        match store.prune_expired_credentials(before).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(revocations = n, "pruned expired revocations"),
            Err(e) => tracing::warn!(error = %e, "cannot prune expired credentials"),
        }
    }
}

fn issue_server_svid(ca: &CaManager) -> Result<(Vec<Vec<u8>>, PrivateKey), ServerError> {
    let key = PrivateKey::generate()?;
    let chain = ca.sign_x509_svid_for_key(
        &key.public_key(),
        &naming::server_id(ca.trust_domain()),
        SERVER_SVID_TTL,
        &[],
    )?;
    Ok((chain, key))
}

/// Starts the server on `store` with keys from `keys`; returns once every listener is bound.
pub async fn start(
    config: ServerConfig,
    store: Arc<dyn Datastore>,
    keys: Arc<dyn KeyManager>,
    clock: Arc<dyn Clock>,
) -> Result<ServerHandle, ServerError> {
    sigil_tls::install_default_provider();
    let td = config.trust_domain.clone();
    let ca = CaManager::load_or_init(
        td.clone(),
        &config.replica_id,
        keys.clone(),
        store.clone(),
        clock.clone(),
        config.ca,
        config.upstream.clone(),
    )
    .await?;
    let (index, entries_position) = EntryIndex::load(store.as_ref(), &td, clock.clone()).await?;
    let (agents, agents_position) = AgentIndex::load(store.as_ref()).await?;
    let (revocations, revocations_position) = RevocationIndex::load(store.as_ref()).await?;
    ca.set_revocations(revocations.snapshot()).await?;
    // The CRLs the other replicas stored; later ones arrive through the feed.
    ca.refresh_replica_crls().await?;
    // Re-applying a change is idempotent, so the feed is followed from the oldest position.
    let position = entries_position
        .min(agents_position)
        .min(revocations_position);

    let metrics = Arc::new(crate::metrics::Metrics::new());
    let (chain, key) = issue_server_svid(&ca)?;
    let svid = Arc::new(LiveSvid::new(&chain, key.pkcs8_der())?);
    let roots = Arc::new(LiveRoots::new(&ca.bundle().x509_authorities));
    let verifier = Arc::new(SpiffeClientVerifier::new(roots.clone(), td.clone(), true));
    let tls = sigil_tls::server_config(svid.clone(), verifier.clone(), config.tls)?;
    let acceptor = sigil_tls::TlsAcceptor::from(Arc::new(tls));

    let listener = TcpListener::bind(config.bind_address)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.bind_address,
            source,
        })?;
    let agent_api_addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: config.bind_address,
        source,
    })?;

    if config.oauth.is_some() && config.public.is_none() {
        return Err(ServerError::OAuthWithoutIssuer);
    }
    let policies = Arc::new(crate::policy::Policies::load(
        config.policy_dir.as_deref(),
        metrics.clone(),
    )?);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();

    // The audit log first, so everything after it can record through it.
    let (audit, audit_tasks) = crate::audit::AuditLog::start(
        crate::audit::AuditSetup {
            config: config.audit.clone(),
            store: store.clone(),
            keys: keys.clone(),
            clock: clock.clone(),
            replica: config.replica_id.clone(),
            metrics: metrics.clone(),
        },
        shutdown_rx.clone(),
    )
    .await?;
    for task in audit_tasks {
        tasks.spawn(task);
    }
    policies.set_audit(audit.clone());

    // Brokered database credentials: the targets, and the task that revokes leases when they
    // expire (its first pass revokes those that expired while the server was down).
    let credentials = Arc::new(
        crate::credentials::Credentials::new(
            config.credentials.clone(),
            store.clone(),
            clock.clone(),
            policies.clone(),
            audit.clone(),
            config.replica_id.clone(),
        )
        .map_err(|e| ServerError::Credentials(e.to_string()))?,
    );
    tasks.spawn(credentials.clone().run_expiry(shutdown_rx.clone()));

    // Federation: the relationships of the configuration, the foreign bundles held, and the
    // refresher that keeps them fresh.
    for configured in &config.federations {
        crate::federation::apply_configured(store.as_ref(), configured, clock.unix_secs()).await?;
    }
    let foreign = Arc::new(ForeignBundles::load(store.as_ref(), td.clone()).await?);
    let web_roots = Arc::new(
        config
            .federation_web_roots
            .clone()
            .unwrap_or_else(sigil_tls::system_roots),
    );
    let federations_changed = Arc::new(tokio::sync::Notify::new());
    let (federation, refresher) = crate::federation::refresher::Refresher {
        store: store.clone(),
        foreign: foreign.clone(),
        metrics: metrics.clone(),
        clock: clock.clone(),
        policy: config.tls,
        web_roots: web_roots.clone(),
        fetch_timeout: crate::federation::fetch::FETCH_TIMEOUT,
        audit: audit.clone(),
    }
    .start(federations_changed.clone(), shutdown_rx.clone());
    tasks.spawn(refresher);

    // Governance: what the inventory routes and gauges read, and the usage rows' retention.
    let governance = Arc::new(
        crate::governance::GovernanceContext::new(
            store.clone(),
            clock.clone(),
            td.clone(),
            config.inventory,
            config
                .oauth
                .iter()
                .flat_map(|oauth| oauth.issuers.iter())
                .map(crate::governance::IssuerFacts::from)
                .collect(),
            Some(federation.statuses()),
        )
        .with_policies(policies.clone()),
    );
    metrics.attach_inventory(governance.clone());
    tasks.spawn(crate::usage::prune_usage_periodically(
        store.clone(),
        clock.clone(),
        Duration::from_secs(config.inventory.usage_retention),
        shutdown_rx.clone(),
    ));

    // Change feed -> entry, agent and revocation indexes, foreign bundles, federation
    // relationships; entry expiry -> entry index version.
    let authorities_changed = Arc::new(tokio::sync::Notify::new());
    let replica_crls_changed = Arc::new(tokio::sync::Notify::new());
    tasks.spawn(feed::follow(
        store.clone(),
        feed::Followers {
            entries: index.clone(),
            agents: agents.clone(),
            revocations: revocations.clone(),
            authorities: authorities_changed.clone(),
            foreign: Some(foreign.clone()),
            federations: federations_changed,
            ca: ca.clone(),
            replica_crls: replica_crls_changed.clone(),
        },
        position,
        shutdown_rx.clone(),
    ));
    tasks.spawn(index.clone().run_expiry(shutdown_rx.clone()));

    // Deny-list -> CRLs signed again and pushed with it (and stored for the other replicas);
    // the other replicas' stored CRLs -> pushed next to ours; expired credentials pruned from
    // the inventory and the deny-list.
    tasks.spawn(publish_revocations(
        revocations.clone(),
        ca.clone(),
        shutdown_rx.clone(),
    ));
    tasks.spawn(publish_replica_crls(
        ca.clone(),
        replica_crls_changed,
        shutdown_rx.clone(),
    ));
    tasks.spawn(prune_credentials(
        store.clone(),
        clock.clone(),
        shutdown_rx.clone(),
    ));

    // CA rotation (on a timer, and at once when the feed shows an authority change), trust
    // roots and the server's own SVID.
    {
        let ca = ca.clone();
        let roots = roots.clone();
        let svid = svid.clone();
        let clock = clock.clone();
        let mut stop = shutdown_rx.clone();
        tasks.spawn(async move {
            let mut svid_renew_at =
                clock.unix_secs() + i64::try_from(SERVER_SVID_TTL / 2).unwrap_or(0);
            loop {
                // Until the life cycle's next transition or the server SVID's renewal, and at
                // most ROTATION_CHECK (which also picks up a stepped clock).
                let next = ca.next_transition();
                let now = clock.unix_secs();
                let wait = next
                    .into_iter()
                    .chain([svid_renew_at])
                    .map(|at| u64::try_from(at.saturating_sub(now)).unwrap_or(0))
                    .map(Duration::from_secs)
                    .fold(ROTATION_CHECK, Duration::min)
                    // A failing renewal is retried a second later, not in a busy loop.
                    .max(Duration::from_secs(1));
                let authorities_moved = tokio::select! {
                    () = tokio::time::sleep(wait) => false,
                    // An operator command, here or on another replica.
                    () = authorities_changed.notified() => true,
                    _ = stop.changed() => return,
                };
                // An operator command on this replica has already settled the CA itself (so
                // `rotate_if_due` may find nothing to do); the TLS roots and the server's own
                // SVID still follow it.
                match ca.rotate_if_due().await {
                    Ok(changed) if changed || authorities_moved => {
                        roots.replace(&ca.bundle().x509_authorities);
                        svid_renew_at = 0;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "CA rotation check failed"),
                }
                if clock.unix_secs() >= svid_renew_at {
                    match issue_server_svid(&ca).and_then(|(chain, key)| {
                        svid.replace(&chain, key.pkcs8_der())
                            .map_err(ServerError::from)
                    }) {
                        Ok(()) => {
                            svid_renew_at =
                                clock.unix_secs() + i64::try_from(SERVER_SVID_TTL / 2).unwrap_or(0);
                            tracing::debug!("renewed the server SVID");
                        }
                        Err(e) => tracing::error!(error = %e, "cannot renew the server SVID"),
                    }
                }
            }
        });
    }

    // The one issuance choke point, shared by the agent API and token exchange, deciding by the
    // policy set in force (reloaded when its directory changes, or on SIGHUP through the handle).
    let issuer_choke = Arc::new(
        Issuer::new(
            ca.clone(),
            index.clone(),
            store.clone(),
            clock.clone(),
            config.issuance,
            metrics.clone(),
            policies.clone(),
        )
        .with_audit(audit.clone())
        .with_agents(agents.clone()),
    );
    if policies.dir().is_some() {
        tasks.spawn(crate::policy::watch_dir(
            policies.clone(),
            shutdown_rx.clone(),
        ));
    }

    // Public listener.
    let (public_addr, public_issuer) = match &config.public {
        Some(public) => {
            // Clients may authenticate with an X509-SVID of this trust domain (OAuth mutual TLS,
            // and workloads asking for database credentials).
            let client_verifier = Some(verifier.clone());
            let listener = crate::public::bind(public.bind_address)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: public.bind_address,
                    source,
                })?;
            let listener = match &public.tls {
                crate::public::PublicTls::PlainLoopback => {
                    if !public.bind_address.ip().is_loopback() {
                        return Err(ServerError::PlainPublic(public.bind_address));
                    }
                    crate::public::PublicListener::Plain(listener)
                }
                crate::public::PublicTls::Svid | crate::public::PublicTls::Files { .. } => {
                    let certificate = match &public.tls {
                        crate::public::PublicTls::Files { chain, key_pkcs8 } => {
                            Arc::new(LiveSvid::new(chain, key_pkcs8)?)
                        }
                        _ => svid.clone(),
                    };
                    let tls = sigil_tls::public_server_config(
                        certificate,
                        client_verifier.clone(),
                        config.tls,
                    )?;
                    crate::public::PublicListener::tls(listener, TlsAcceptor::from(Arc::new(tls)))
                        .map_err(|source| ServerError::Bind {
                        addr: public.bind_address,
                        source,
                    })?
                }
            };
            let addr = axum::serve::Listener::local_addr(&listener)
                .map_err(|source| ServerError::Bind {
                    addr: public.bind_address,
                    source,
                })?
                .remote;
            // In dev mode (plain HTTP on loopback) the issuer defaults to the listener's own URL.
            let issuer = public.issuer.clone().or_else(|| {
                matches!(public.tls, crate::public::PublicTls::PlainLoopback)
                    .then(|| format!("http://{addr}"))
            });
            if let Some(issuer) = &issuer {
                ca.set_jwt_issuer(issuer.clone());
            }
            let oauth = match (&config.oauth, &issuer) {
                (Some(oauth_config), Some(issuer_url)) => Some(Arc::new(crate::oauth::OAuth::new(
                    crate::oauth::OAuthParts {
                        config: oauth_config.clone(),
                        issuer_url: issuer_url.clone(),
                        ca: ca.clone(),
                        issuer: issuer_choke.clone(),
                        foreign: foreign.clone(),
                        store: store.clone(),
                        clock: clock.clone(),
                        policy: config.tls,
                        system_roots: web_roots.clone(),
                    },
                ))),
                (Some(_), None) => return Err(ServerError::OAuthWithoutIssuer),
                (None, _) => None,
            };
            let state = crate::public::PublicState {
                ca: ca.clone(),
                store: store.clone(),
                entries: index.clone(),
                agents: agents.clone(),
                metrics: metrics.clone(),
                issuer: issuer.as_deref().map(Arc::from),
                oauth,
                policies: policies.clone(),
                audit: audit.clone(),
                credentials: Some(crate::credentials::http::CredsState {
                    credentials: credentials.clone(),
                    auth: crate::credentials::caller::CallerAuth::new(
                        ca.clone(),
                        td.clone(),
                        issuer.as_deref(),
                    ),
                    store: store.clone(),
                    clock: clock.clone(),
                }),
            };
            let mut stop = shutdown_rx.clone();
            tasks.spawn(async move {
                let served = axum::serve(
                    listener,
                    crate::public::router(state)
                        .into_make_service_with_connect_info::<crate::public::PeerInfo>(),
                )
                .with_graceful_shutdown(async move {
                    let _ = stop.changed().await;
                })
                .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "public listener stopped");
                }
            });
            tracing::info!(address = %addr, issuer = ?issuer, "public listener started");
            (Some(addr), issuer)
        }
        None => (None, None),
    };

    // Agent API.
    {
        let api = AgentApi::new(
            issuer_choke.clone(),
            store.clone(),
            index.clone(),
            agents.clone(),
            clock.clone(),
        )
        .with_shutdown(shutdown_rx.clone())
        .with_foreign_bundles(foreign.clone())
        .with_credentials(credentials.clone());
        let (incoming, accept_task) = agent_listener::accept_tls(listener, acceptor);
        let mut stop = shutdown_rx.clone();
        tasks.spawn(async move {
            let server = tonic::transport::Server::builder()
                .http2_keepalive_interval(Some(Duration::from_secs(30)))
                .add_service(
                    sigil_proto::agent::v1::agent_service_server::AgentServiceServer::new(api),
                )
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = stop.changed().await;
                });
            if let Err(e) = server.await {
                tracing::error!(error = %e, "agent API stopped");
            }
            accept_task.abort();
        });
    }

    // Admin API.
    {
        let state = admin::AdminState {
            store: store.clone(),
            trust_domain: td.clone(),
            clock: clock.clone(),
            agents: Some(agents.clone()),
            publishes_revocations: true,
            ca: ca.clone(),
            federation: Some(federation.clone()),
            policies: Some(policies.clone()),
            audit: audit.clone(),
            governance,
            credentials: Some(credentials.clone()),
        };
        let mut stop = shutdown_rx.clone();
        let path = config.admin_socket.clone();
        let ready = admin::bind(&path)
            .await
            .map_err(|e| ServerError::Admin(e.to_string()))?;
        tasks.spawn(async move {
            let stopped = async move {
                let _ = stop.changed().await;
            };
            if let Err(e) = admin::serve_bound(ready, &path, state, stopped).await {
                tracing::error!(error = %e, "admin API stopped");
            }
        });
    }

    tracing::info!(trust_domain = %td, agent_api = %agent_api_addr, admin_socket = %config.admin_socket.display(), "sigil server started");
    Ok(ServerHandle {
        agent_api_addr,
        public_addr,
        issuer: public_issuer,
        metrics,
        federation,
        foreign,
        ca,
        store,
        index,
        agents,
        trust_domain: td,
        policies,
        shutdown,
        tasks,
    })
}
