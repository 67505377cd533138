//! Shared by the `workload_api_*` integration tests: synthetic trust domains (an rcgen CA and a
//! JWT signing key each), X509-SVIDs issued by them, a fake JWT-SVID minter, and a harness that
//! serves the real [`WorkloadApi`] on a temporary Unix socket with a snapshot the test controls.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the fixture"
)]

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, IsCa, Issuer,
    KeyIdMethod, KeyUsagePurpose, RevokedCertParams, SanType, SerialNumber, date_time_ymd,
};
use serde_json::json;
use sigil_agent::attestor::{UnixAttestor, WorkloadAttestor};
use sigil_agent::revocation::RevokedIds;
use sigil_agent::snapshot::{
    IdentitySnapshot, JwtMintError, JwtSvidMinter, WorkloadApiContext, WorkloadIdentity,
    X509SvidMaterial,
};
use sigil_agent::workload::{ServeOptions, WorkloadApi, WorkloadServerError, serve_with_options};
use sigil_keys::PrivateKey;
use sigil_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use sigil_spiffe::{
    Clock, JwtAuthorityKey, Selector, SpiffeId, SystemClock, TrustBundle, TrustDomain,
};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};

/// A trust domain with an X.509 CA and a JWT authority.
pub struct Domain {
    pub td: TrustDomain,
    ca_params: CertificateParams,
    ca_key: PrivateKey,
    pub ca_der: Vec<u8>,
    pub jwt_key: PrivateKey,
    pub kid: String,
    pub bundle: Arc<TrustBundle>,
}

impl Domain {
    pub fn new(name: &str) -> Self {
        let td = TrustDomain::parse(name).unwrap();
        let ca_key = PrivateKey::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca_params
            .subject_alt_names
            .push(SanType::URI(td.id_string().try_into().unwrap()));
        let ca_der = ca_params.self_signed(&ca_key).unwrap().der().to_vec();
        let jwt_key = PrivateKey::generate().unwrap();
        let kid = format!("{name}-jwt-1");
        let bundle = Arc::new(TrustBundle {
            trust_domain: td.clone(),
            x509_authorities: vec![ca_der.clone()],
            jwt_authorities: vec![JwtAuthorityKey {
                kid: kid.clone(),
                public_key_der: jwt_key.public_key().spki_der().to_vec(),
                expires_at: 0,
            }],
            sequence: 1,
            refresh_hint: 300,
        });
        Self {
            td,
            ca_params,
            ca_key,
            ca_der,
            jwt_key,
            kid,
            bundle,
        }
    }

    pub fn id(&self, path: &str) -> SpiffeId {
        self.td.id_with_path(path).unwrap()
    }

    /// An X509-SVID for `id` signed by this domain's CA (leaf, then the CA).
    pub fn issue_svid(&self, id: &SpiffeId) -> Arc<X509SvidMaterial> {
        let key = PrivateKey::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params
            .subject_alt_names
            .push(SanType::URI(id.as_str().to_owned().try_into().unwrap()));
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let leaf = params.signed_by(&key, &issuer).unwrap().der().to_vec();
        Arc::new(X509SvidMaterial {
            cert_chain: vec![leaf, self.ca_der.clone()],
            key,
            expires_at: SystemClock.unix_secs() + 3600,
        })
    }

    /// A DER CRL signed by this domain's CA, numbered `number`, revoking the leaf of each chain
    /// in `revoked`.
    pub fn crl(&self, number: u64, revoked: &[&X509SvidMaterial]) -> Vec<u8> {
        let revoked_certs = revoked
            .iter()
            .map(|m| {
                let hex = sigil_keys::cert_ids::serial_hex(&m.cert_chain[0]).unwrap();
                let serial: Vec<u8> = (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                    .collect();
                RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&serial),
                    revocation_time: date_time_ymd(2026, 1, 1),
                    reason_code: None,
                    invalidity_date: None,
                }
            })
            .collect();
        let params = CertificateRevocationListParams {
            this_update: date_time_ymd(2026, 1, 1),
            next_update: date_time_ymd(2099, 1, 1),
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        params.signed_by(&issuer).unwrap().der().to_vec()
    }

    /// A JWT-SVID for `sub` signed by this domain's JWT authority.
    pub fn sign_jwt(&self, sub: &str, audience: &[String], exp: i64) -> String {
        let header = json!({"alg": "ES256", "kid": self.kid, "typ": "JWT"});
        let now = SystemClock.unix_secs();
        let claims = json!({
            "sub": sub, "aud": audience, "exp": exp, "iat": now,
            "jti": format!("jti-{}", NEXT_JTI.fetch_add(1, Ordering::Relaxed)),
            "nested": {"list": [1, 2.5, "x", true, null]},
        });
        sigil_keys::jws::sign_compact(&header, &claims, &self.jwt_key).unwrap()
    }
}

static NEXT_JTI: AtomicUsize = AtomicUsize::new(0);

/// Mints JWT-SVIDs with a [`Domain`]'s key for the entries it was told about.
pub struct FakeMinter {
    domain: Arc<Domain>,
    entries: Mutex<HashMap<String, SpiffeId>>,
    pub unavailable: AtomicBool,
    /// Hand out one token per (entry, audiences) again and again, as the agent's JWT cache does
    /// between mints (for benchmarks of the cached path).
    pub caching: AtomicBool,
    cache: Mutex<HashMap<(String, Vec<String>), String>>,
}

#[async_trait]
impl JwtSvidMinter for FakeMinter {
    async fn mint(&self, entry_id: &str, audience: &[String]) -> Result<String, JwtMintError> {
        if self.unavailable.load(Ordering::Relaxed) {
            return Err(JwtMintError::Unavailable("test says so".into()));
        }
        let caching = self.caching.load(Ordering::Relaxed);
        let mut audiences = audience.to_vec();
        audiences.sort();
        audiences.dedup();
        let key = (entry_id.to_owned(), audiences);
        if caching && let Some(token) = self.cache.lock().unwrap().get(&key) {
            return Ok(token.clone());
        }
        let id = self.entries.lock().unwrap().get(entry_id).cloned();
        let id = id.ok_or_else(|| JwtMintError::Refused(format!("unknown entry `{entry_id}`")))?;
        let token = self
            .domain
            .sign_jwt(id.as_str(), audience, SystemClock.unix_secs() + 300);
        if caching {
            self.cache.lock().unwrap().insert(key, token.clone());
        }
        Ok(token)
    }
}

/// The selector every process of the test's user has.
pub fn my_uid_selector() -> Selector {
    Selector::parse(&format!("unix:uid:{}", nix::unistd::geteuid())).unwrap()
}

/// A selector nobody in the test has.
pub fn foreign_selector() -> Selector {
    Selector::parse(&format!(
        "unix:uid:{}",
        nix::unistd::geteuid().as_raw().wrapping_add(4242)
    ))
    .unwrap()
}

/// A Workload API server on a temporary socket, serving snapshots the test publishes.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub home: Arc<Domain>,
    pub foreign: Arc<Domain>,
    pub minter: Arc<FakeMinter>,
    snapshots: watch::Sender<Arc<IdentitySnapshot>>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), WorkloadServerError>>>,
}

impl Harness {
    /// Serves an empty snapshot of `example.org` (which federates with `other.org`).
    pub async fn start(options: ServeOptions) -> Self {
        Self::start_with_attestor(options, Arc::new(UnixAttestor::default())).await
    }

    /// As [`Harness::start`], attesting callers with `attestor`.
    pub async fn start_with_attestor(
        options: ServeOptions,
        attestor: Arc<dyn WorkloadAttestor>,
    ) -> Self {
        let home = Arc::new(Domain::new("example.org"));
        let foreign = Arc::new(Domain::new("other.org"));
        let minter = Arc::new(FakeMinter {
            domain: Arc::clone(&home),
            entries: Mutex::new(HashMap::new()),
            unavailable: AtomicBool::new(false),
            caching: AtomicBool::new(false),
            cache: Mutex::new(HashMap::new()),
        });
        let (snapshots, rx) =
            watch::channel(Arc::new(IdentitySnapshot::empty(Arc::clone(&home.bundle))));
        let ctx = WorkloadApiContext {
            snapshots: rx,
            jwt: Arc::clone(&minter) as Arc<dyn JwtSvidMinter>,
            clock: Arc::new(SystemClock),
        };
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("agent.sock");
        let (shutdown, stop) = oneshot::channel::<()>();
        let path = socket.clone();
        let server = tokio::spawn(async move {
            serve_with_options(
                &path,
                WorkloadApi::with_attestor(ctx, attestor),
                options,
                async {
                    let _ = stop.await;
                },
            )
            .await
        });
        for _ in 0..500 {
            if socket.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(socket.exists(), "the server did not create its socket");
        Self {
            dir,
            socket,
            home,
            foreign,
            minter,
            snapshots,
            shutdown: Some(shutdown),
            server: Some(server),
        }
    }

    /// An identity in the home trust domain with a fresh SVID; the minter learns its entry.
    pub fn identity(
        &self,
        entry_id: &str,
        path: &str,
        selectors: Vec<Selector>,
        hint: &str,
    ) -> WorkloadIdentity {
        let spiffe_id = self.home.id(path);
        self.minter
            .entries
            .lock()
            .unwrap()
            .insert(entry_id.to_owned(), spiffe_id.clone());
        WorkloadIdentity {
            entry_id: entry_id.to_owned(),
            svid: self.home.issue_svid(&spiffe_id),
            spiffe_id,
            selectors,
            hint: hint.to_owned(),
            federates_with: vec![self.foreign.td.clone()],
        }
    }

    /// Publishes a snapshot with `identities` and the foreign bundle.
    pub fn publish(&self, identities: Vec<WorkloadIdentity>) {
        self.publish_with_revocations(identities, Vec::new(), RevokedIds::default());
    }

    /// Publishes a snapshot with `identities`, the foreign bundle, `crls` and the JWT-SVID
    /// deny-list `revoked_jwt_svids`.
    pub fn publish_with_revocations(
        &self,
        identities: Vec<WorkloadIdentity>,
        crls: Vec<Vec<u8>>,
        revoked_jwt_svids: RevokedIds,
    ) {
        let mut federated = BTreeMap::new();
        federated.insert(self.foreign.td.clone(), Arc::clone(&self.foreign.bundle));
        self.snapshots.send_replace(Arc::new(IdentitySnapshot {
            trust_domain: self.home.td.clone(),
            bundle: Arc::clone(&self.home.bundle),
            federated_bundles: federated,
            identities,
            crls: Arc::new(crls),
            revoked_jwt_svids: Arc::new(revoked_jwt_svids),
        }));
    }

    /// How many receivers watch the snapshot (the service holds one; each open stream one more).
    pub fn watchers(&self) -> usize {
        self.snapshots.receiver_count()
    }

    /// A tonic client over the socket.
    pub async fn client(&self) -> SpiffeWorkloadApiClient<Channel> {
        client_at(self.socket.clone()).await
    }

    /// Stops the server and returns how `serve` ended.
    pub async fn stop(mut self) -> Result<(), WorkloadServerError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let server = self.server.take().unwrap();
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("serve did not return after shutdown")
            .unwrap()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// A tonic client over the Unix socket at `path`.
pub async fn client_at(path: PathBuf) -> SpiffeWorkloadApiClient<Channel> {
    let channel = Endpoint::try_from("http://localhost")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                tokio::net::UnixStream::connect(path)
                    .await
                    .map(TokioIo::new)
            }
        }))
        .await
        .unwrap();
    SpiffeWorkloadApiClient::new(channel)
}

/// `message` with the Workload API security header.
pub fn with_header<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert(sigil_proto::WORKLOAD_API_HEADER, "true".parse().unwrap());
    request
}
