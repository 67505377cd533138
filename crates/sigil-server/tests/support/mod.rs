//! Fixture for the agent API tests: an in-process server on a fake clock (set to the real time at
//! start) bound to 127.0.0.1:0, and a tonic client over mutual TLS built the way the real agent
//! builds it (a tokio-rustls connector verifying the server as `spiffe://<td>/sigil/server`).

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the fixture"
)]

use std::sync::Arc;
use std::time::Duration;

use sigil_keys::{MemoryKeyManager, PrivateKey};
use sigil_proto::agent::v1 as pb;
use sigil_proto::agent::v1::agent_service_client::AgentServiceClient;
use sigil_server::{ServerConfig, ServerHandle};
use sigil_spiffe::{Clock, Selector, SpiffeId, SystemClock, TrustDomain};
use sigil_store::{Datastore, Entry, NewEntry, SqliteStore};
use sigil_testkit::FakeClock;
use sigil_tls::{LiveRoots, LiveSvid, ServerName, SpiffeServerVerifier, TlsConnector};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};

/// Longest a test waits for something the server pushes or answers; only ever a failure bound.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// An agent's credentials: its SPIFFE ID, X509-SVID chain (leaf first) and private key.
pub struct AgentSvid {
    pub id: SpiffeId,
    pub chain: Vec<Vec<u8>>,
    pub key: PrivateKey,
}

/// A running server with its fake clock; shut down when [`TestServer::stop`] is awaited.
pub struct TestServer {
    pub handle: ServerHandle,
    pub clock: FakeClock,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server for `example.org` on an in-memory store and key manager.
    pub async fn start() -> Self {
        Self::start_on(Arc::new(SqliteStore::open_in_memory().unwrap())).await
    }

    /// Starts a server for `example.org` on `store` (which may already hold entries, agents and
    /// join tokens) and an in-memory key manager.
    pub async fn start_on(store: Arc<dyn Datastore>) -> Self {
        Self::try_start(store, None).await.unwrap()
    }

    /// Starts a server for `example.org` on an in-memory store with the public listener `public`,
    /// or fails as `sigil_server::start` does.
    pub async fn try_start_public(
        public: sigil_server::public::PublicConfig,
    ) -> Result<Self, sigil_server::ServerError> {
        Self::try_start(
            Arc::new(SqliteStore::open_in_memory().unwrap()),
            Some(public),
        )
        .await
    }

    /// Starts a server for `example.org` on an in-memory store with the public listener `public`
    /// and token exchange configured as `oauth`.
    pub async fn start_oauth(
        public: sigil_server::public::PublicConfig,
        oauth: sigil_server::oauth::OAuthConfig,
    ) -> Self {
        Self::try_start_with(
            Arc::new(SqliteStore::open_in_memory().unwrap()),
            Some(public),
            Some(oauth),
        )
        .await
        .unwrap()
    }

    /// Like [`TestServer::start_oauth`], deciding by the Cedar policies of `policy_dir`.
    pub async fn try_start_with_policies(
        public: sigil_server::public::PublicConfig,
        oauth: sigil_server::oauth::OAuthConfig,
        policy_dir: &std::path::Path,
    ) -> Result<Self, sigil_server::ServerError> {
        Self::try_start_full(
            Arc::new(SqliteStore::open_in_memory().unwrap()),
            Some(public),
            Some(oauth),
            Some(policy_dir.to_path_buf()),
        )
        .await
    }

    async fn try_start(
        store: Arc<dyn Datastore>,
        public: Option<sigil_server::public::PublicConfig>,
    ) -> Result<Self, sigil_server::ServerError> {
        Self::try_start_with(store, public, None).await
    }

    async fn try_start_with(
        store: Arc<dyn Datastore>,
        public: Option<sigil_server::public::PublicConfig>,
        oauth: Option<sigil_server::oauth::OAuthConfig>,
    ) -> Result<Self, sigil_server::ServerError> {
        Self::try_start_full(store, public, oauth, None).await
    }

    /// Starts a server for `example.org` on an in-memory store with `audit` as its audit log
    /// configuration and the public listener `public`.
    pub async fn start_audited(
        audit: sigil_server::audit::AuditConfig,
        public: Option<sigil_server::public::PublicConfig>,
    ) -> Self {
        Self::try_start_config(
            Arc::new(SqliteStore::open_in_memory().unwrap()),
            public,
            None,
            None,
            audit,
        )
        .await
        .unwrap()
    }

    async fn try_start_full(
        store: Arc<dyn Datastore>,
        public: Option<sigil_server::public::PublicConfig>,
        oauth: Option<sigil_server::oauth::OAuthConfig>,
        policy_dir: Option<std::path::PathBuf>,
    ) -> Result<Self, sigil_server::ServerError> {
        // On, as in a deployed server (the records go to the test's store).
        let audit = sigil_server::audit::AuditConfig::default();
        Self::try_start_config(store, public, oauth, policy_dir, audit).await
    }

    async fn try_start_config(
        store: Arc<dyn Datastore>,
        public: Option<sigil_server::public::PublicConfig>,
        oauth: Option<sigil_server::oauth::OAuthConfig>,
        policy_dir: Option<std::path::PathBuf>,
        audit: sigil_server::audit::AuditConfig,
    ) -> Result<Self, sigil_server::ServerError> {
        let dir = tempfile::tempdir().unwrap();
        // The fake clock starts at the real time so certificates are valid for rustls, which
        // reads the real clock; tests then move it to expire tokens or back-date SVIDs.
        let clock = FakeClock::new(SystemClock.now());
        let config = ServerConfig {
            trust_domain: td(),
            replica_id: String::new(),
            bind_address: "127.0.0.1:0".parse().unwrap(),
            admin_socket: dir.path().join("admin").join("admin.sock"),
            key_dir: dir.path().join("keys"),
            ca: sigil_server::ca::CaLifetimes::default(),
            upstream: None,
            issuance: sigil_server::agent_api::IssuanceDefaults::default(),
            tls: sigil_tls::TlsPolicy::default(),
            federations: Vec::new(),
            audit,
            inventory: sigil_server::governance::InventoryConfig::default(),
            credentials: sigil_server::credentials::CredentialsConfig::default(),
            federation_web_roots: None,
            policy_dir,
            oauth,
            public,
        };
        let handle = sigil_server::start(
            config,
            store,
            Arc::new(MemoryKeyManager::new()),
            Arc::new(clock.clone()),
        )
        .await?;
        Ok(Self {
            handle,
            clock,
            _dir: dir,
        })
    }

    /// Stops every server task; fails the test if that takes longer than [`PATIENCE`] (for
    /// instance because an open stream holds the agent API open).
    pub async fn stop(self) {
        tokio::time::timeout(PATIENCE, self.handle.shutdown())
            .await
            .expect("the server did not shut down");
    }

    /// Opens a channel presenting `svid` (or no client certificate). A server that refuses the
    /// client certificate makes this fail or makes the first call fail.
    pub async fn connect(
        &self,
        svid: Option<&AgentSvid>,
    ) -> Result<AgentServiceClient<Channel>, tonic::transport::Error> {
        self.channel(svid).await.map(AgentServiceClient::new)
    }

    /// The channel under [`TestServer::connect`], for calls the generated client cannot make.
    pub async fn channel(
        &self,
        svid: Option<&AgentSvid>,
    ) -> Result<Channel, tonic::transport::Error> {
        self.channel_on(svid, None).await
    }

    /// A client presenting `svid` whose connection runs on `runtime` (a bench keeps the
    /// callers' TLS and HTTP/2 work off the server's threads that way).
    #[allow(
        dead_code,
        reason = "used by the load bench only, not by every test binary"
    )]
    pub async fn client_on(
        &self,
        svid: &AgentSvid,
        runtime: tokio::runtime::Handle,
    ) -> AgentServiceClient<Channel> {
        AgentServiceClient::new(self.channel_on(Some(svid), Some(runtime)).await.unwrap())
    }

    async fn channel_on(
        &self,
        svid: Option<&AgentSvid>,
        runtime: Option<tokio::runtime::Handle>,
    ) -> Result<Channel, tonic::transport::Error> {
        channel_to(
            self.handle.agent_api_addr,
            &self.handle.bundle().x509_authorities,
            svid,
            runtime,
            PATIENCE,
        )
        .await
    }

    /// A client without a client certificate.
    pub async fn anonymous(&self) -> AgentServiceClient<Channel> {
        self.connect(None).await.unwrap()
    }

    /// A client presenting `svid`.
    pub async fn client(&self, svid: &AgentSvid) -> AgentServiceClient<Channel> {
        self.connect(Some(svid)).await.unwrap()
    }

    /// A fresh join token (valid for `ttl_secs` on the server's clock).
    pub async fn join_token(&self, ttl_secs: u64) -> String {
        sigil_server::join_token::create(
            self.handle.store.as_ref(),
            &td(),
            ttl_secs,
            self.clock.unix_secs(),
        )
        .await
        .unwrap()
        .token
    }

    /// Attests a new agent with a fresh join token and returns its credentials.
    pub async fn attest(&self) -> AgentSvid {
        self.attest_with(&self.join_token(600).await).await
    }

    /// Attests a new agent with `token` and returns its credentials.
    pub async fn attest_with(&self, token: &str) -> AgentSvid {
        attest_through(self.anonymous().await, token).await
    }

    /// An SVID for `id` signed by the server's CA, bypassing attestation.
    pub fn forge_signed_svid(&self, id: &SpiffeId, ttl_secs: u64) -> AgentSvid {
        let key = PrivateKey::generate().unwrap();
        let chain = self
            .handle
            .ca
            .sign_x509_svid_for_key(&key.public_key(), id, ttl_secs, &[])
            .unwrap();
        AgentSvid {
            id: id.clone(),
            chain,
            key,
        }
    }

    /// A JWT-SVID of entry `entry_id` for `audience`, asked for by `agent` over the agent API.
    pub async fn jwt_svid(
        &self,
        agent: &AgentSvid,
        entry_id: &str,
        audience: &str,
    ) -> Result<String, tonic::Status> {
        self.client(agent)
            .await
            .new_jwt_svid(pb::NewJwtSvidRequest {
                entry_id: entry_id.to_owned(),
                audience: vec![audience.to_owned()],
            })
            .await
            .map(|r| r.into_inner().token)
    }

    /// Registers `spiffe_id` under `parent`.
    pub async fn create_entry(&self, spiffe_id: &str, parent: &SpiffeId) -> Entry {
        self.create_entry_expiring(spiffe_id, parent, None).await
    }

    /// Registers `spiffe_id` under `parent`, expiring at `expires_at` (Unix seconds) if given.
    pub async fn create_entry_expiring(
        &self,
        spiffe_id: &str,
        parent: &SpiffeId,
        expires_at: Option<i64>,
    ) -> Entry {
        let mut spec = new_entry(spiffe_id, parent);
        spec.expires_at = expires_at;
        self.handle
            .store
            .create_entry(spec, self.clock.unix_secs())
            .await
            .unwrap()
    }

    /// Waits until the agent index reflects every store write made so far.
    pub async fn agents_caught_up(&self) {
        let written = self.handle.store.latest_change().await.unwrap();
        tokio::time::timeout(PATIENCE, self.handle.agents.applied_through(written))
            .await
            .expect("the agent index did not catch up");
    }

    /// Makes `serial` the current serial of `agent` directly in the store (as a renewal that was
    /// then used would) and waits for the agent index to see it.
    pub async fn set_current_serial(&self, agent: &SpiffeId, serial: &str) {
        let store = &self.handle.store;
        store
            .record_agent_renewal(agent.as_str(), serial)
            .await
            .unwrap();
        assert!(
            store
                .activate_agent_serial(agent.as_str(), serial, self.clock.unix_secs() + 600)
                .await
                .unwrap()
        );
        self.agents_caught_up().await;
    }
}

/// A channel to the agent API at `addr` whose server certificate chains to `roots`, presenting
/// `svid` (or no client certificate), built as the agent builds it; its connection runs on
/// `runtime` when given; connecting and each call fail after `patience`.
pub async fn channel_to(
    addr: std::net::SocketAddr,
    roots: &[Vec<u8>],
    svid: Option<&AgentSvid>,
    runtime: Option<tokio::runtime::Handle>,
    patience: Duration,
) -> Result<Channel, tonic::transport::Error> {
    let roots = Arc::new(LiveRoots::new(roots));
    let verifier = Arc::new(SpiffeServerVerifier::new(
        roots,
        sigil_server::naming::server_id(&td()),
    ));
    let live = svid.map(|s| Arc::new(LiveSvid::new(&s.chain, s.key.pkcs8_der()).unwrap()));
    let config = Arc::new(
        sigil_tls::client_config(live, verifier, sigil_tls::TlsPolicy::default()).unwrap(),
    );
    let connector = tower::service_fn(move |_uri: http::Uri| {
        let config = config.clone();
        async move {
            let tcp = TcpStream::connect(addr).await?;
            // As the agent's connector does: without it, a small request waits for the
            // delayed ACK of the previous one (about 40 ms per unary call).
            tcp.set_nodelay(true)?;
            // Any name: the verifier checks the SPIFFE ID, not the DNS name.
            let name = ServerName::try_from("sigil-server")
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let tls = TlsConnector::from(config).connect(name, tcp).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
        }
    });
    let mut endpoint = Endpoint::from_static("http://sigil-server")
        .connect_timeout(patience)
        .timeout(patience);
    if let Some(runtime) = runtime {
        endpoint = endpoint.executor(SpawnOn(runtime));
    }
    endpoint.connect_with_connector(connector).await
}

/// Attests a new agent with `token` through `client` (without client certificate) and returns
/// its credentials.
pub async fn attest_through(mut client: AgentServiceClient<Channel>, token: &str) -> AgentSvid {
    let key = PrivateKey::generate().unwrap();
    let response = client
        .attest_agent(attest_request(token, &key))
        .await
        .unwrap()
        .into_inner();
    let svid = response.svid.unwrap();
    AgentSvid {
        id: SpiffeId::parse(&svid.spiffe_id).unwrap(),
        chain: svid.cert_chain,
        key,
    }
}

/// The trust domain every test server runs.
pub fn td() -> TrustDomain {
    TrustDomain::parse("example.org").unwrap()
}

/// The spec of an entry for `spiffe_id` under `parent`, selected by `unix:uid:1000`, owned by
/// `team-test`.
pub fn new_entry(spiffe_id: &str, parent: &SpiffeId) -> NewEntry {
    NewEntry::new(
        SpiffeId::parse(spiffe_id).unwrap(),
        parent.clone(),
        vec![Selector::parse("unix:uid:1000").unwrap()],
        "team-test",
    )
}

/// A join-token attestation request for `token` with a CSR from `key`.
pub fn attest_request(token: &str, key: &PrivateKey) -> pb::AttestAgentRequest {
    pb::AttestAgentRequest {
        attestation_type: "join_token".to_owned(),
        attestation_data: token.as_bytes().to_vec(),
        csr: csr(key),
    }
}

/// A CSR for `key` (the requested name is ignored by the server).
pub fn csr(key: &PrivateKey) -> Vec<u8> {
    key.csr_der(&SpiffeId::parse("spiffe://example.org/csr").unwrap())
        .unwrap()
}

/// Hex of the leaf certificate's serial, as the server records it.
pub fn serial_hex(chain: &[Vec<u8>]) -> String {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&chain[0]).unwrap();
    cert.tbs_certificate
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Spawns a client connection's tasks on a given runtime.
#[derive(Clone)]
struct SpawnOn(tokio::runtime::Handle);

impl<F> hyper::rt::Executor<F> for SpawnOn
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    fn execute(&self, future: F) {
        self.0.spawn(future);
    }
}

/// An HTTP/1.1 answer: status, headers and body as JSON (`Null` when empty).
pub struct HttpAnswer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub json: serde_json::Value,
}

/// POSTs `body` as `content_type` (with `Authorization: Bearer` when `bearer` is given) to `path`
/// over `io`, within [`PATIENCE`].
pub async fn http_post<T>(
    io: T,
    path: &str,
    content_type: &str,
    body: String,
    bearer: Option<&str>,
) -> HttpAnswer
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use http_body_util::BodyExt;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
            .await
            .unwrap();
    tokio::spawn(connection);
    let mut request = http::Request::post(path)
        .header("host", "sigil")
        .header("content-type", content_type);
    if let Some(token) = bearer {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let response = tokio::time::timeout(PATIENCE, sender.send_request(request))
        .await
        .unwrap()
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    HttpAnswer {
        status,
        headers,
        json,
    }
}

/// A public listener on a free loopback port, plain HTTP (as `sigil dev` serves it).
pub fn plain_loopback_public() -> sigil_server::public::PublicConfig {
    sigil_server::public::PublicConfig {
        bind_address: "127.0.0.1:0".parse().unwrap(),
        tls: sigil_server::public::PublicTls::PlainLoopback,
        issuer: None,
    }
}
