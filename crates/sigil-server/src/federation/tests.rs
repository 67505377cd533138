//! The refresher against a peer's bundle endpoint played by this test (TLS with a certificate
//! the test made, then canned HTTP answers): a good bundle is stored and a repeat is unchanged;
//! a lower sequence, malformed or oversized JSON, another trust domain's authority, an error
//! status, a slow or absent endpoint and a TLS identity that is not the expected one are each
//! refused with their own error, the last good bundle kept and the failure counted. And the
//! relationships of the configuration file: created, then kept as configured (owner included).

use std::sync::Arc;
use std::time::Duration;

use sigil_ca::X509Authority;
use sigil_keys::PrivateKey;
use sigil_spiffe::{SpiffeId, SystemClock, TrustBundle, TrustDomain};
use sigil_store::{
    BundleEndpointProfile, Datastore, NewFederationRelationship, SqliteStore, StoredBundle,
};
use sigil_tls::{LiveSvid, TlsAcceptor};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

use super::ForeignBundles;
use super::refresher::{RefreshHandle, Refreshed, Refresher};
use crate::metrics::{Metrics, RefreshLabel};

fn peer() -> TrustDomain {
    TrustDomain::parse("peer.org").unwrap()
}

fn now() -> std::time::SystemTime {
    use sigil_spiffe::Clock;
    SystemClock.now()
}

/// What the fake endpoint answers.
#[derive(Clone)]
enum Answer {
    Body(Vec<u8>),
    Status(u16),
    Silence,
}

/// A peer CA: a Sigil root of `td` (also serving as a web root: its leaves carry DNS names).
struct PeerCa {
    root: X509Authority,
}

impl PeerCa {
    fn new(td: &TrustDomain) -> Self {
        let key = Arc::new(PrivateKey::generate().unwrap());
        Self {
            root: sigil_ca::self_signed_root(td, key, 86_400, now()).unwrap(),
        }
    }

    /// A server certificate for `id` and DNS name `localhost`, as TLS material.
    fn server(&self, id: &str) -> Arc<LiveSvid> {
        let key = PrivateKey::generate().unwrap();
        let leaf = self
            .root
            .sign_x509_svid_for_key(
                &key.public_key(),
                &SpiffeId::parse(id).unwrap(),
                3_600,
                &["localhost".to_owned()],
                now(),
            )
            .unwrap();
        Arc::new(LiveSvid::new(&self.root.svid_chain(leaf), key.pkcs8_der()).unwrap())
    }

    /// The bundle document of this CA's trust domain with `sequence`.
    fn document(&self, sequence: u64) -> Vec<u8> {
        self.document_hinting(sequence, 60)
    }

    /// Like [`PeerCa::document`], with `spiffe_refresh_hint` `hint` seconds.
    fn document_hinting(&self, sequence: u64, hint: u64) -> Vec<u8> {
        let bundle = TrustBundle {
            trust_domain: self.root.trust_domain().clone(),
            x509_authorities: vec![self.root.cert_der().to_vec()],
            jwt_authorities: Vec::new(),
            sequence,
            refresh_hint: hint,
        };
        sigil_keys::bundle_json::to_document(&bundle)
            .unwrap()
            .to_json()
    }
}

/// Serves `answer` (changeable) over TLS with `certificate` on a loopback port.
async fn endpoint(certificate: Arc<LiveSvid>) -> (u16, watch::Sender<Answer>) {
    let (port, answer, _) = counted_endpoint(certificate).await;
    (port, answer)
}

/// Like [`endpoint`], also counting the requests answered.
async fn counted_endpoint(
    certificate: Arc<LiveSvid>,
) -> (
    u16,
    watch::Sender<Answer>,
    Arc<std::sync::atomic::AtomicUsize>,
) {
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    let config =
        sigil_tls::public_server_config(certificate, None, sigil_tls::TlsPolicy::default())
            .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = watch::channel(Answer::Status(503));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let answer = rx.borrow().clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0_u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let response = match answer {
                    Answer::Body(body) => {
                        let mut r = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                            body.len()
                        )
                        .into_bytes();
                        r.extend_from_slice(&body);
                        r
                    }
                    Answer::Status(code) => {
                        format!("HTTP/1.1 {code} Oops\r\ncontent-length: 0\r\n\r\n").into_bytes()
                    }
                    Answer::Silence => {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        return;
                    }
                };
                let _ = tls.write_all(&response).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (port, tx, hits)
}

struct Fixture {
    store: Arc<dyn Datastore>,
    foreign: Arc<ForeignBundles>,
    metrics: Arc<Metrics>,
    handle: RefreshHandle,
    /// Wakes the refresher as the change feed does when a relationship changes.
    changed: Arc<Notify>,
    _stop: watch::Sender<bool>,
}

impl Fixture {
    async fn new(web_roots: Vec<Vec<u8>>) -> Self {
        let store: Arc<dyn Datastore> = Arc::new(SqliteStore::open_in_memory().unwrap());
        let foreign = Arc::new(
            ForeignBundles::load(store.as_ref(), TrustDomain::parse("example.org").unwrap())
                .await
                .unwrap(),
        );
        let metrics = Arc::new(Metrics::new());
        let (stop, stop_rx) = watch::channel(false);
        let changed = Arc::new(Notify::new());
        let (handle, run) = Refresher {
            store: store.clone(),
            foreign: foreign.clone(),
            metrics: metrics.clone(),
            clock: Arc::new(SystemClock),
            policy: sigil_tls::TlsPolicy::default(),
            web_roots: Arc::new(web_roots),
            fetch_timeout: Duration::from_millis(500),
            audit: crate::audit::AuditLog::disabled(),
        }
        .start(changed.clone(), stop_rx);
        tokio::spawn(run);
        Self {
            store,
            foreign,
            metrics,
            handle,
            changed,
            _stop: stop,
        }
    }

    async fn relate(&self, url: String, profile: BundleEndpointProfile, id: Option<&str>) {
        self.store
            .create_federation(
                NewFederationRelationship {
                    trust_domain: peer(),
                    bundle_endpoint_url: url,
                    profile,
                    endpoint_spiffe_id: id.map(|i| SpiffeId::parse(i).unwrap()),
                    owner: "team-federation".to_owned(),
                },
                1,
            )
            .await
            .unwrap();
    }

    /// Refreshes now, then lets the held bundles follow the store (as the feed would).
    async fn refresh(&self) -> Result<Refreshed, String> {
        let outcome = self.handle.refresh_now(peer()).await;
        let changes = self.store.changes_since(0, 1_000).await.unwrap();
        self.foreign
            .apply_batch(self.store.as_ref(), &changes)
            .await
            .unwrap();
        outcome
    }

    async fn stored_sequence(&self) -> Option<u64> {
        self.store
            .get_bundle("peer.org")
            .await
            .unwrap()
            .map(|b| b.sequence)
    }

    fn failures(&self) -> u64 {
        self.metrics
            .federation_refreshes
            .get_or_create(&RefreshLabel {
                trust_domain: "peer.org".to_owned(),
                result: "error",
            })
            .get()
    }
}

#[tokio::test]
async fn https_web_bundles_are_stored_when_newer_and_bad_answers_keep_the_last_good_one() {
    let ca = PeerCa::new(&peer());
    let (port, answer) = endpoint(ca.server("spiffe://peer.org/sigil/server")).await;
    let f = Fixture::new(vec![ca.root.cert_der().to_vec()]).await;
    f.relate(
        format!("https://localhost:{port}/bundle"),
        BundleEndpointProfile::HttpsWeb,
        None,
    )
    .await;

    answer.send_replace(Answer::Body(ca.document(5)));
    // The refresher may have fetched the new relationship on its own already.
    let first = f.refresh().await;
    assert!(
        matches!(
            first,
            Ok(Refreshed::Updated { sequence: 5 } | Refreshed::Unchanged { sequence: 5 })
        ),
        "{first:?}"
    );
    assert_eq!(f.stored_sequence().await, Some(5));
    assert_eq!(f.foreign.get(&peer()).unwrap().sequence, 5);
    assert_eq!(f.refresh().await, Ok(Refreshed::Unchanged { sequence: 5 }));
    assert_eq!(f.failures(), 0);

    let other = PeerCa::new(&TrustDomain::parse("evil.org").unwrap());
    let mut huge = b"{\"keys\":[".to_vec();
    huge.resize(2 * 1024 * 1024, b' ');
    let cases: Vec<(Answer, &str)> = vec![
        (Answer::Body(ca.document(3)), "went backwards"),
        (Answer::Body(b"{\"keys\": [".to_vec()), "invalid"),
        (Answer::Body(huge), "larger than"),
        (
            Answer::Body(other.document(9)),
            "names trust domain `evil.org`",
        ),
        (Answer::Status(500), "answered 500"),
        (Answer::Silence, "did not answer within"),
    ];
    for (i, (bad, expected)) in cases.into_iter().enumerate() {
        answer.send_replace(bad);
        let refused = f.refresh().await.unwrap_err();
        assert!(refused.contains(expected), "case {i}: {refused}");
        assert_eq!(
            f.stored_sequence().await,
            Some(5),
            "case {i}: last good kept"
        );
        assert_eq!(f.foreign.get(&peer()).unwrap().sequence, 5);
        assert_eq!(f.failures(), i as u64 + 1);
    }
    // A newer good one is taken again.
    answer.send_replace(Answer::Body(ca.document(6)));
    assert_eq!(f.refresh().await, Ok(Refreshed::Updated { sequence: 6 }));
}

#[tokio::test]
async fn endpoints_are_authenticated_as_their_profile_says() {
    let ca = PeerCa::new(&peer());
    // https_web with a certificate the web roots do not hold.
    let (port, answer) = endpoint(ca.server("spiffe://peer.org/sigil/server")).await;
    answer.send_replace(Answer::Body(ca.document(1)));
    let stranger = PeerCa::new(&TrustDomain::parse("stranger.org").unwrap());
    let f = Fixture::new(vec![stranger.root.cert_der().to_vec()]).await;
    f.relate(
        format!("https://localhost:{port}/bundle"),
        BundleEndpointProfile::HttpsWeb,
        None,
    )
    .await;
    let refused = f.refresh().await.unwrap_err();
    assert!(refused.contains("TLS"), "{refused}");
    assert_eq!(f.stored_sequence().await, None);

    // https_spiffe: without a bootstrap bundle there is nothing to authenticate with.
    let f = Fixture::new(Vec::new()).await;
    f.relate(
        format!("https://127.0.0.1:{port}/bundle"),
        BundleEndpointProfile::HttpsSpiffe,
        Some("spiffe://peer.org/sigil/server"),
    )
    .await;
    let refused = f.refresh().await.unwrap_err();
    assert!(refused.contains("bootstrap"), "{refused}");
    // With the peer's bundle, the expected SPIFFE ID is accepted ...
    f.store
        .put_bundle(StoredBundle {
            trust_domain: peer(),
            document: ca.document(0),
            sequence: 0,
            updated_at: 1,
        })
        .await
        .unwrap();
    let changes = f.store.changes_since(0, 1_000).await.unwrap();
    f.foreign
        .apply_batch(f.store.as_ref(), &changes)
        .await
        .unwrap();
    let accepted = f.refresh().await;
    assert!(
        matches!(
            accepted,
            Ok(Refreshed::Updated { sequence: 1 } | Refreshed::Unchanged { sequence: 1 })
        ),
        "{accepted:?}"
    );
    assert_eq!(f.stored_sequence().await, Some(1));
    // ... and another identity of the same trust domain is not.
    let (other_port, other_answer) = endpoint(ca.server("spiffe://peer.org/not-the-server")).await;
    other_answer.send_replace(Answer::Body(ca.document(2)));
    f.store
        .update_federation(
            "peer.org",
            sigil_store::FederationUpdate {
                bundle_endpoint_url: Some(format!("https://127.0.0.1:{other_port}/bundle")),
                ..Default::default()
            },
            2,
        )
        .await
        .unwrap();
    let refused = f.refresh().await.unwrap_err();
    assert!(refused.contains("TLS"), "{refused}");
    assert_eq!(f.stored_sequence().await, Some(1));

    // An endpoint that is down.
    drop(other_answer);
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    f.store
        .update_federation(
            "peer.org",
            sigil_store::FederationUpdate {
                bundle_endpoint_url: Some(format!("https://127.0.0.1:{closed_port}/bundle")),
                ..Default::default()
            },
            3,
        )
        .await
        .unwrap();
    let refused = f.refresh().await.unwrap_err();
    assert!(refused.contains("cannot connect"), "{refused}");
    assert_eq!(f.stored_sequence().await, Some(1));
}

#[tokio::test]
async fn the_refresher_fetches_again_when_the_hint_says() {
    let ca = PeerCa::new(&peer());
    let (port, answer, hits) = counted_endpoint(ca.server("spiffe://peer.org/sigil/server")).await;
    // The shortest hint the refresher honours.
    answer.send_replace(Answer::Body(ca.document_hinting(1, 5)));
    let f = Fixture::new(vec![ca.root.cert_der().to_vec()]).await;
    f.relate(
        format!("https://localhost:{port}/bundle"),
        BundleEndpointProfile::HttpsWeb,
        None,
    )
    .await;
    f.changed.notify_one();
    let count = || hits.load(std::sync::atomic::Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while count() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never fetched");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(f.stored_sequence().await, Some(1));
    // Not again before the hint (5 s) ...
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(count(), 1, "fetched again before the hint");
    // ... and again after it, on its own.
    answer.send_replace(Answer::Body(ca.document_hinting(2, 5)));
    while count() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "not fetched again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while f.stored_sequence().await != Some(2) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the newer bundle was not stored"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn configured_relationships_are_created_then_only_what_differs_is_updated() {
    let store = SqliteStore::open_in_memory().unwrap();
    let mut configured = super::ConfiguredFederation {
        relationship: NewFederationRelationship {
            trust_domain: peer(),
            bundle_endpoint_url: "https://peer.org/bundle".to_owned(),
            profile: BundleEndpointProfile::HttpsWeb,
            endpoint_spiffe_id: None,
            owner: "team-a".to_owned(),
        },
        bootstrap_roots: Vec::new(),
    };
    super::apply_configured(&store, &configured, 10)
        .await
        .unwrap();
    let created = store.get_federation("peer.org").await.unwrap().unwrap();
    assert_eq!(created.owner, "team-a");
    assert_eq!(created.created_at, 10);

    // Unchanged: nothing is written.
    let before = store.latest_change().await.unwrap();
    super::apply_configured(&store, &configured, 20)
        .await
        .unwrap();
    assert_eq!(store.latest_change().await.unwrap(), before);
    assert_eq!(
        store.get_federation("peer.org").await.unwrap().unwrap(),
        created
    );

    // A new owner in the file: the owner (and only it) changes.
    configured.relationship.owner = "team-b".to_owned();
    super::apply_configured(&store, &configured, 30)
        .await
        .unwrap();
    let updated = store.get_federation("peer.org").await.unwrap().unwrap();
    assert_eq!(updated.owner, "team-b");
    assert_eq!(updated.updated_at, 30);
    assert_eq!(updated.bundle_endpoint_url, created.bundle_endpoint_url);
    assert_eq!(updated.profile, created.profile);
    assert_eq!(updated.created_at, 10);
}
