//! Two server replicas on one PostgreSQL database: an X509-SVID replica B issued and that is
//! then revoked is listed by B's intermediate's CRL as replica A serves it, at `/crl` and in
//! the sync messages A pushes to its agents, and that CRL verifies under B's intermediate.
//!
//! The database is `SIGIL_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`),
//! each test in a schema of its own; when it is unreachable the test prints a notice and passes
//! without running, unless `CI` is set: then it fails.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a broken assumption must fail the test loudly"
)]

mod support;

use std::io::Write as _;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use sigil_keys::MemoryKeyManager;
use sigil_proto::agent::v1 as pb;
use sigil_server::{ServerConfig, ServerHandle};
use sigil_spiffe::{Clock, SystemClock};
use sigil_store::{CredentialKind, Datastore, PostgresConfig, PostgresStore};
use sigil_testkit::FakeClock;
use support::{AgentSvid, PATIENCE, attest_through, channel_to, td};
use tokio::net::TcpStream;
use tokio_postgres::NoTls;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A schema of its own for one test, dropped with everything in it when this goes.
struct TestSchema {
    name: String,
    admin_url: String,
}

impl TestSchema {
    /// A fresh schema; `None` (after a notice) when PostgreSQL is unreachable outside CI.
    async fn create() -> Option<Self> {
        let admin_url =
            std::env::var("SIGIL_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned());
        let admin = match raw_client(&admin_url).await {
            Ok(client) => client,
            Err(e) => {
                if std::env::var_os("CI").is_some_and(|ci| !ci.is_empty()) {
                    panic!(
                        "PostgreSQL (SIGIL_TEST_POSTGRES_URL) is unreachable and CI is set: {e}"
                    );
                }
                let _ = writeln!(
                    std::io::stderr(),
                    "NOTICE: skipping the replica CRL test: PostgreSQL \
                     (SIGIL_TEST_POSTGRES_URL, default {DEFAULT_URL}) is unreachable: {e}"
                );
                return None;
            }
        };
        let name: String = admin
            .query_one(
                "SELECT 'sigil_test_' || translate(gen_random_uuid()::text, '-', '')",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        admin
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .unwrap();
        Some(Self { name, admin_url })
    }

    /// A store (one replica's connection pool and listener) in this schema.
    async fn store(&self) -> Arc<dyn Datastore> {
        let name = &self.name;
        let separator = if self.admin_url.contains('?') {
            '&'
        } else {
            '?'
        };
        let url = format!(
            "{}{separator}options=-c%20search_path%3D{name}&application_name={name}",
            self.admin_url
        );
        let mut config = PostgresConfig::new(url);
        config.pool_size = 4;
        Arc::new(PostgresStore::connect(&config).await.unwrap())
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop cannot await; a thread of its own with a small runtime can.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let client = raw_client(&url).await.map_err(|e| e.to_string())?;
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                    .await
                    .map_err(|e| e.to_string())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            let _ = writeln!(
                std::io::stderr(),
                "could not drop test schema {}: {dropped:?}",
                self.name
            );
        }
    }
}

/// A tokio-postgres client on `url`, its connection driven by a task of its own.
async fn raw_client(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::from_str(url)?;
    config.connect_timeout(Duration::from_secs(3));
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// A running replica and what lives as long as it does.
struct Replica {
    handle: ServerHandle,
    _dir: tempfile::TempDir,
}

impl Replica {
    /// Starts server replica `replica_id` on `store` with keys of its own and a plain-HTTP
    /// public listener on loopback.
    async fn start(replica_id: &str, store: Arc<dyn Datastore>, clock: &FakeClock) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = ServerConfig {
            trust_domain: td(),
            replica_id: replica_id.to_owned(),
            bind_address: "127.0.0.1:0".parse().unwrap(),
            admin_socket: dir.path().join("admin").join("admin.sock"),
            key_dir: dir.path().join("keys"),
            ca: sigil_server::ca::CaLifetimes::default(),
            upstream: None,
            issuance: sigil_server::agent_api::IssuanceDefaults::default(),
            tls: sigil_tls::TlsPolicy::default(),
            federations: Vec::new(),
            audit: sigil_server::audit::AuditConfig::default(),
            inventory: sigil_server::governance::InventoryConfig::default(),
            credentials: sigil_server::credentials::CredentialsConfig::default(),
            federation_web_roots: None,
            policy_dir: None,
            oauth: None,
            public: Some(support::plain_loopback_public()),
        };
        let handle = sigil_server::start(
            config,
            store,
            Arc::new(MemoryKeyManager::new()),
            Arc::new(clock.clone()),
        )
        .await
        .unwrap();
        Self { handle, _dir: dir }
    }

    /// Attests a new agent through this replica's agent API.
    async fn attest(&self, clock: &FakeClock) -> AgentSvid {
        let token = sigil_server::join_token::create(
            self.handle.store.as_ref(),
            &td(),
            600,
            clock.unix_secs(),
        )
        .await
        .unwrap()
        .token;
        let channel = channel_to(
            self.handle.agent_api_addr,
            &self.handle.bundle().x509_authorities,
            None,
            None,
            PATIENCE,
        )
        .await
        .unwrap();
        attest_through(
            pb::agent_service_client::AgentServiceClient::new(channel),
            &token,
        )
        .await
    }

    /// The DER CRLs this replica's public listener serves at `/crl`.
    async fn crl_endpoint(&self) -> Vec<Vec<u8>> {
        let addr = self.handle.public_addr.unwrap();
        let io = TcpStream::connect(addr).await.unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
                .await
                .unwrap();
        tokio::spawn(connection);
        let request = http::Request::get("/crl")
            .header("host", "sigil")
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = tokio::time::timeout(PATIENCE, sender.send_request(request))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let text = std::str::from_utf8(&body).unwrap();
        sigil_keys::pem::decode_all("X509 CRL", text).unwrap()
    }
}

/// The hex serials listed by the CRL among `crls` that verifies under the key of certificate
/// `issuer_der` and names its subject as issuer; `None` when none does. (Replicas' authorities
/// share their subject names, so only the signature tells whose CRL it is.)
fn serials_signed_by(crls: &[Vec<u8>], issuer_der: &[u8]) -> Option<Vec<String>> {
    let (_, issuer) = X509Certificate::from_der(issuer_der).unwrap();
    let key = sigil_keys::PublicKey::from_spki_der(issuer.public_key().raw).unwrap();
    crls.iter()
        .map(|der| CertificateRevocationList::from_der(der).unwrap().1)
        .find(|crl| {
            crl.issuer() == issuer.subject()
                && key
                    .verify_x509(crl.tbs_cert_list.as_ref(), &crl.signature_value.data)
                    .is_ok()
        })
        .map(|crl| {
            crl.iter_revoked_certificates()
                .map(|r| sigil_keys::digest::hex(r.raw_serial()))
                .collect()
        })
}

/// Polls `done` every 20 ms until it holds; fails the test after [`PATIENCE`].
async fn wait_for<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !done().await {
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_serves_the_crl_of_another_replicas_intermediate() {
    let Some(schema) = TestSchema::create().await else {
        return;
    };
    // One clock for both, at the real time so that rustls accepts the certificates.
    let clock = FakeClock::new(SystemClock.now());
    let a = Replica::start("a", schema.store().await, &clock).await;
    let b = Replica::start("b", schema.store().await, &clock).await;

    // An agent of B: its X509-SVID is signed by B's intermediate, which A has no key of.
    let agent_b = b.attest(&clock).await;
    let serial = support::serial_hex(&agent_b.chain);
    let b_intermediate = agent_b.chain[1].clone();
    let b_record = b
        .handle
        .ca
        .authorities()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.cert_der.as_deref() == Some(b_intermediate.as_slice()))
        .expect("B's intermediate is on record");
    assert_eq!(b_record.replica, "b");
    assert!(!a.handle.ca.holds_authority(&b_record.id));

    // B's CRLs reach A through the store and the feed: B's intermediate's, empty so far.
    wait_for("A to serve B's intermediate's CRL", || async {
        serials_signed_by(&a.crl_endpoint().await, &b_intermediate) == Some(Vec::new())
    })
    .await;

    // An agent of A follows its sync stream, where A pushes the CRLs.
    let agent_a = a.attest(&clock).await;
    let channel = channel_to(
        a.handle.agent_api_addr,
        &a.handle.bundle().x509_authorities,
        Some(&agent_a),
        None,
        PATIENCE,
    )
    .await
    .unwrap();
    let mut stream = pb::agent_service_client::AgentServiceClient::new(channel)
        .sync_authorized_entries(pb::SyncAuthorizedEntriesRequest::default())
        .await
        .unwrap()
        .into_inner();

    // B's SVID is revoked (as `sigil svid revoke` does, through the store).
    wait_for("B to record the SVID it issued", || async {
        b.handle
            .store
            .get_issued(CredentialKind::X509Svid, &serial)
            .await
            .unwrap()
            .is_some()
    })
    .await;
    b.handle
        .store
        .revoke_credential(
            CredentialKind::X509Svid,
            &serial,
            "key compromise",
            clock.unix_secs(),
        )
        .await
        .unwrap();

    wait_for(
        "A's /crl to list the SVID under B's intermediate",
        || async {
            serials_signed_by(&a.crl_endpoint().await, &b_intermediate)
                == Some(vec![serial.clone()])
        },
    )
    .await;
    // A's own intermediate's CRL is there too, listing nothing.
    let a_intermediate = a
        .handle
        .ca
        .sign_x509_svid_for_key(
            &sigil_keys::PrivateKey::generate().unwrap().public_key(),
            &sigil_server::naming::server_id(&td()),
            60,
            &[],
        )
        .unwrap()[1]
        .clone();
    assert_eq!(
        serials_signed_by(&a.crl_endpoint().await, &a_intermediate),
        Some(Vec::new())
    );

    // The same CRL is pushed to A's agent.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let message = tokio::time::timeout_at(deadline.into(), stream.message())
            .await
            .expect("A did not push B's CRL listing the SVID")
            .unwrap()
            .expect("the sync stream ended");
        if serials_signed_by(&message.crls, &b_intermediate) == Some(vec![serial.clone()]) {
            break;
        }
    }

    drop(stream);
    for replica in [a, b] {
        tokio::time::timeout(PATIENCE, replica.handle.shutdown())
            .await
            .expect("the replica did not shut down");
    }
}
