//! Test only: a stand-in for the server's agent API over mutual TLS on a loopback port (it
//! attests any join token, if given a CA to sign with; its sync stream sends one message, or a
//! given sequence such as the parts of one set, then stays open until the server stops), the
//! test PKI it and the agent use (a root for `example.org`, X509-SVIDs under it), and a TCP
//! listener that only counts connection attempts.
//! Enough to drive the agent's connections for real.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt as _};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyUsagePurpose, SanType,
};
use sigil_keys::PrivateKey;
use sigil_proto::agent::v1 as pb;
use sigil_proto::agent::v1::agent_service_server::{AgentService, AgentServiceServer};
use sigil_spiffe::{SpiffeId, TrustBundle, TrustDomain};
use sigil_tls::server::TlsStream;
use sigil_tls::{LiveRoots, LiveSvid, SpiffeClientVerifier, TlsAcceptor, TlsPolicy};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::server::Connected;
use tonic::{Request, Response, Status};

use crate::state::AgentIdentity;

/// The server's SPIFFE ID in the test trust domain.
pub(crate) const SERVER_ID: &str = "spiffe://example.org/sigil/server";
/// The agent's SPIFFE ID in the test trust domain.
pub(crate) const AGENT_ID: &str = "spiffe://example.org/sigil/agent/join_token/n1";
/// Expiry the fake server gives the agent SVIDs it signs at attestation.
pub(crate) const ATTESTED_EXPIRES_AT: i64 = 4_000_000_000;

/// A root CA for one trust domain that issues X509-SVIDs.
pub(crate) struct TestCa {
    root: Vec<u8>,
    issuer: Issuer<'static, PrivateKey>,
}

impl TestCa {
    /// A fresh self-signed root for `trust_domain`.
    pub(crate) fn new(trust_domain: &str) -> Self {
        let key = PrivateKey::generate().unwrap();
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{trust_domain} test root"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.subject_alt_names = vec![SanType::URI(
            format!("spiffe://{trust_domain}").try_into().unwrap(),
        )];
        let root = params.self_signed(&key).unwrap().der().to_vec();
        Self {
            root,
            issuer: Issuer::new(params, key),
        }
    }

    /// The root certificate, DER.
    pub(crate) fn root(&self) -> Vec<u8> {
        self.root.clone()
    }

    /// An X509-SVID for `spiffe_id`: (chain, leaf first; key).
    pub(crate) fn svid(&self, spiffe_id: &str) -> (Vec<Vec<u8>>, PrivateKey) {
        let key = PrivateKey::generate().unwrap();
        let leaf = svid_params(spiffe_id)
            .signed_by(&key, &self.issuer)
            .unwrap();
        (vec![leaf.der().to_vec()], key)
    }

    /// An X509-SVID for `spiffe_id` for the key of the PKCS#10 request `csr` (its subject is
    /// ignored, as the server ignores it): the chain, leaf first.
    fn sign_csr(&self, csr: &[u8], spiffe_id: &str) -> Vec<Vec<u8>> {
        let mut request = CertificateSigningRequestParams::from_der(&csr.to_vec().into()).unwrap();
        request.params = svid_params(spiffe_id);
        vec![request.signed_by(&self.issuer).unwrap().der().to_vec()]
    }

    /// An agent identity under this root, valid (for the session) until `expires_at`.
    pub(crate) fn agent_identity(&self, expires_at: i64) -> AgentIdentity {
        let (cert_chain, key) = self.svid(AGENT_ID);
        AgentIdentity {
            spiffe_id: SpiffeId::parse(AGENT_ID).unwrap(),
            cert_chain,
            expires_at,
            key: Arc::new(key),
            bundle: self.bundle(),
        }
    }

    fn bundle(&self) -> TrustBundle {
        TrustBundle {
            trust_domain: TrustDomain::parse("example.org").unwrap(),
            x509_authorities: vec![self.root()],
            jwt_authorities: Vec::new(),
            sequence: 1,
            refresh_hint: 300,
        }
    }
}

/// The X509-SVID profile: one URI SAN, not a CA, for TLS clients and servers.
fn svid_params(spiffe_id: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![SanType::URI(spiffe_id.try_into().unwrap())];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params
}

/// The client's leaf certificate (DER) of one connection, as the fake server saw it.
#[derive(Debug, Clone)]
struct ClientLeaf(Option<Vec<u8>>);

/// A TLS connection to the fake server, carrying the client's leaf into each request.
struct Conn {
    tls: TlsStream<TcpStream>,
    leaf: ClientLeaf,
}

impl Connected for Conn {
    type ConnectInfo = ClientLeaf;
    fn connect_info(&self) -> ClientLeaf {
        self.leaf.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tls).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().tls).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tls).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tls).poll_shutdown(cx)
    }
}

/// What the fake server saw.
#[derive(Default)]
struct Seen {
    /// The client leaf of every sync stream opened.
    syncs: Mutex<Vec<Option<Vec<u8>>>>,
    /// The request of every sync stream opened.
    sync_requests: Mutex<Vec<pb::SyncAuthorizedEntriesRequest>>,
    /// Join tokens attested.
    attestations: Mutex<Vec<Vec<u8>>>,
    /// The rows of every usage report accepted, one list per report.
    usage_reports: Mutex<Vec<Vec<pb::WorkloadUsage>>>,
    /// The status usage reports are refused with, while set.
    refuse_usage: Mutex<Option<Status>>,
}

#[derive(Clone)]
struct FakeAgentApi {
    /// Signs agent SVIDs at attestation; without it attestation is `Unimplemented`.
    attest_with: Option<Arc<TestCa>>,
    /// What each sync stream sends first, in order.
    first_messages: Vec<pb::SyncAuthorizedEntriesResponse>,
    seen: Arc<Seen>,
    stop: watch::Receiver<bool>,
}

type SyncStream =
    Pin<Box<dyn Stream<Item = Result<pb::SyncAuthorizedEntriesResponse, Status>> + Send>>;

#[tonic::async_trait]
impl AgentService for FakeAgentApi {
    async fn attest_agent(
        &self,
        request: Request<pb::AttestAgentRequest>,
    ) -> Result<Response<pb::AttestAgentResponse>, Status> {
        let ca = self
            .attest_with
            .as_ref()
            .ok_or_else(|| Status::unimplemented("fake server"))?;
        let req = request.into_inner();
        self.seen
            .attestations
            .lock()
            .unwrap()
            .push(req.attestation_data);
        let bundle = ca.bundle();
        Ok(Response::new(pb::AttestAgentResponse {
            svid: Some(pb::X509Svid {
                spiffe_id: AGENT_ID.into(),
                cert_chain: ca.sign_csr(&req.csr, AGENT_ID),
                expires_at: ATTESTED_EXPIRES_AT,
            }),
            bundle: Some(pb::Bundle {
                trust_domain: bundle.trust_domain.to_string(),
                x509_authorities: bundle.x509_authorities,
                jwt_authorities: Vec::new(),
                sequence: bundle.sequence,
                refresh_hint: i64::try_from(bundle.refresh_hint).unwrap(),
            }),
        }))
    }

    async fn renew_agent(
        &self,
        _: Request<pb::RenewAgentRequest>,
    ) -> Result<Response<pb::RenewAgentResponse>, Status> {
        Err(Status::unimplemented("fake server"))
    }

    type SyncAuthorizedEntriesStream = SyncStream;

    async fn sync_authorized_entries(
        &self,
        request: Request<pb::SyncAuthorizedEntriesRequest>,
    ) -> Result<Response<SyncStream>, Status> {
        let leaf = request
            .extensions()
            .get::<ClientLeaf>()
            .and_then(|l| l.0.clone());
        self.seen.syncs.lock().unwrap().push(leaf);
        self.seen
            .sync_requests
            .lock()
            .unwrap()
            .push(*request.get_ref());
        let first = futures::stream::iter(self.first_messages.clone().into_iter().map(Ok));
        let mut stop = self.stop.clone();
        let end = futures::stream::once(async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
            Err(Status::unavailable("the server is stopping"))
        });
        Ok(Response::new(Box::pin(first.chain(end))))
    }

    async fn batch_new_x509_svid(
        &self,
        _: Request<pb::BatchNewX509SvidRequest>,
    ) -> Result<Response<pb::BatchNewX509SvidResponse>, Status> {
        Err(Status::unimplemented("fake server"))
    }

    async fn new_jwt_svid(
        &self,
        _: Request<pb::NewJwtSvidRequest>,
    ) -> Result<Response<pb::NewJwtSvidResponse>, Status> {
        Err(Status::unimplemented("fake server"))
    }

    async fn report_workload_usage(
        &self,
        request: Request<pb::ReportWorkloadUsageRequest>,
    ) -> Result<Response<pb::ReportWorkloadUsageResponse>, Status> {
        if let Some(status) = self.seen.refuse_usage.lock().unwrap().clone() {
            return Err(status);
        }
        let rows = request.into_inner().usage;
        let recorded = u32::try_from(rows.len()).unwrap();
        self.seen.usage_reports.lock().unwrap().push(rows);
        Ok(Response::new(pb::ReportWorkloadUsageResponse {
            recorded,
            dropped: 0,
        }))
    }

    async fn new_credential(
        &self,
        _: Request<pb::NewCredentialRequest>,
    ) -> Result<Response<sigil_proto::creds::v1::Credential>, Status> {
        Err(Status::unimplemented("fake server"))
    }

    async fn renew_credential_lease(
        &self,
        _: Request<pb::RenewCredentialLeaseRequest>,
    ) -> Result<Response<sigil_proto::creds::v1::Lease>, Status> {
        Err(Status::unimplemented("fake server"))
    }

    async fn revoke_credential_lease(
        &self,
        _: Request<pb::RevokeCredentialLeaseRequest>,
    ) -> Result<Response<sigil_proto::creds::v1::Lease>, Status> {
        Err(Status::unimplemented("fake server"))
    }
}

/// A fake agent API on a loopback port. Dropping it without [`FakeServer::stop`] leaves its
/// tasks to the test runtime, which ends with the test.
pub(crate) struct FakeServer {
    addr: String,
    seen: Arc<Seen>,
    stop: watch::Sender<bool>,
    accept: JoinHandle<()>,
    serve: JoinHandle<()>,
}

impl FakeServer {
    /// Serves with the X509-SVID `server_svid` (chain and key), accepting clients whose
    /// certificates chain to `client_roots` (and clients without one, for attestation); each
    /// sync stream sends `first_message`. Attestation is refused.
    pub(crate) async fn start(
        server_svid: (Vec<Vec<u8>>, PrivateKey),
        client_roots: &[Vec<u8>],
        first_message: pb::SyncAuthorizedEntriesResponse,
    ) -> Self {
        Self::start_with(server_svid, client_roots, vec![first_message], None).await
    }

    /// As [`FakeServer::start`], but each sync stream sends `first_messages` in order (for
    /// instance the parts of one authorized set).
    pub(crate) async fn start_sending(
        server_svid: (Vec<Vec<u8>>, PrivateKey),
        client_roots: &[Vec<u8>],
        first_messages: Vec<pb::SyncAuthorizedEntriesResponse>,
    ) -> Self {
        Self::start_with(server_svid, client_roots, first_messages, None).await
    }

    /// A server of `ca` (its SVID, trusting its root) that also attests any join token with an
    /// agent SVID `ca` signs.
    pub(crate) async fn start_attesting(ca: Arc<TestCa>) -> Self {
        let svid = ca.svid(SERVER_ID);
        let roots = [ca.root()];
        Self::start_with(svid, &roots, vec![Default::default()], Some(ca)).await
    }

    async fn start_with(
        server_svid: (Vec<Vec<u8>>, PrivateKey),
        client_roots: &[Vec<u8>],
        first_messages: Vec<pb::SyncAuthorizedEntriesResponse>,
        attest_with: Option<Arc<TestCa>>,
    ) -> Self {
        sigil_tls::install_default_provider();
        let (chain, key) = server_svid;
        let svid = Arc::new(LiveSvid::new(&chain, key.pkcs8_der()).unwrap());
        let verifier = Arc::new(SpiffeClientVerifier::new(
            Arc::new(LiveRoots::new(client_roots)),
            TrustDomain::parse("example.org").unwrap(),
            true,
        ));
        let config = sigil_tls::server_config(svid, verifier, TlsPolicy::default()).unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (conn_tx, conn_rx) = tokio::sync::mpsc::channel::<std::io::Result<Conn>>(16);
        let accept = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let conn_tx = conn_tx.clone();
                tokio::spawn(async move {
                    // A client that refuses our certificate fails here; the test sees no sync.
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        let leaf = tls
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .map(|c| c.as_ref().to_vec());
                        let _ = conn_tx
                            .send(Ok(Conn {
                                tls,
                                leaf: ClientLeaf(leaf),
                            }))
                            .await;
                    }
                });
            }
        });
        let seen = Arc::new(Seen::default());
        let (stop, stop_rx) = watch::channel(false);
        let api = FakeAgentApi {
            attest_with,
            first_messages,
            seen: seen.clone(),
            stop: stop_rx.clone(),
        };
        let mut shutdown = stop_rx;
        let serve = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(AgentServiceServer::new(api))
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::ReceiverStream::new(conn_rx),
                    async move {
                        let _ = shutdown.wait_for(|stopped| *stopped).await;
                    },
                )
                .await;
        });
        Self {
            addr,
            seen,
            stop,
            accept,
            serve,
        }
    }

    /// `host:port` it listens on.
    pub(crate) fn addr(&self) -> String {
        self.addr.clone()
    }

    /// The client leaf (DER) of every sync stream opened so far.
    pub(crate) fn syncs(&self) -> Vec<Option<Vec<u8>>> {
        self.seen.syncs.lock().unwrap().clone()
    }

    /// The request of every sync stream opened so far.
    pub(crate) fn sync_requests(&self) -> Vec<pb::SyncAuthorizedEntriesRequest> {
        self.seen.sync_requests.lock().unwrap().clone()
    }

    /// The join tokens attested so far.
    pub(crate) fn attestations(&self) -> Vec<Vec<u8>> {
        self.seen.attestations.lock().unwrap().clone()
    }

    /// The rows of every usage report accepted so far, one list per report.
    pub(crate) fn usage_reports(&self) -> Vec<Vec<pb::WorkloadUsage>> {
        self.seen.usage_reports.lock().unwrap().clone()
    }

    /// Refuses usage reports with `status` from now on (`None`: accepts them again).
    pub(crate) fn refuse_usage_reports(&self, status: Option<Status>) {
        *self.seen.refuse_usage.lock().unwrap() = status;
    }

    /// Stops listening, ends every sync stream with `Unavailable` and waits for the server to
    /// stop, as a server going away does.
    pub(crate) async fn stop(self) {
        self.accept.abort();
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.serve).await;
    }
}

/// A TCP listener that accepts connections, counts them, and closes them at once: an address
/// where something listens but no server answers.
pub(crate) struct CountingListener {
    addr: String,
    count: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl CountingListener {
    pub(crate) async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let count = Arc::new(AtomicUsize::new(0));
        let counted = count.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                drop(tcp);
            }
        });
        Self { addr, count, task }
    }

    pub(crate) fn addr(&self) -> String {
        self.addr.clone()
    }

    /// Connections accepted so far.
    pub(crate) fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

impl Drop for CountingListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}
