//! Real TLS 1.3 handshakes (tokio-rustls over an in-memory duplex) between configurations built by
//! `sigil_tls::server_config` and `sigil_tls::client_config`, with X509-SVIDs issued in the test
//! by `sigil-ca`: who is accepted, who is refused, and that live roots and SVIDs take effect on
//! the next handshake.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a broken assumption must fail the test loudly"
)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, NamedGroup, ServerConfig};
use sigil_ca::{X509Authority, intermediate, self_signed_root};
use sigil_keys::PrivateKey;
use sigil_spiffe::{Clock, SpiffeId, SystemClock, TrustDomain};
use sigil_tls::{
    LiveRoots, LiveSvid, SpiffeClientVerifier, SpiffeServerVerifier, TlsError, TlsPolicy,
    client_config, peer_spiffe_id, server_config,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SERVER_ID: &str = "spiffe://example.org/sigil/server";
const CLIENT_ID: &str = "spiffe://example.org/sigil/agent/join_token/n1";

fn now() -> SystemTime {
    SystemClock.now()
}

fn td(name: &str) -> TrustDomain {
    TrustDomain::parse(name).unwrap()
}

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

/// A fresh self-signed root CA for `trust_domain`.
fn root(trust_domain: &str) -> X509Authority {
    let key = Arc::new(PrivateKey::generate().unwrap());
    self_signed_root(&td(trust_domain), key, 3_600, now()).unwrap()
}

/// An X509-SVID for `spiffe_id` issued by `ca`: (chain leaf first, PKCS#8 key).
fn svid(ca: &X509Authority, spiffe_id: &str) -> (Vec<Vec<u8>>, PrivateKey) {
    let key = PrivateKey::generate().unwrap();
    let leaf = ca
        .sign_x509_svid_for_key(&key.public_key(), &id(spiffe_id), 600, &[], now())
        .unwrap();
    (ca.svid_chain(leaf), key)
}

fn live_svid(ca: &X509Authority, spiffe_id: &str) -> Arc<LiveSvid> {
    let (chain, key) = svid(ca, spiffe_id);
    Arc::new(LiveSvid::new(&chain, key.pkcs8_der()).unwrap())
}

fn live_roots(cas: &[&X509Authority]) -> Arc<LiveRoots> {
    let ders: Vec<Vec<u8>> = cas.iter().map(|ca| ca.cert_der().to_vec()).collect();
    Arc::new(LiveRoots::new(&ders))
}

fn server_side(
    svid: Arc<LiveSvid>,
    client_roots: Arc<LiveRoots>,
    trust_domain: &str,
    optional: bool,
) -> ServerConfig {
    let verifier = SpiffeClientVerifier::new(client_roots, td(trust_domain), optional);
    server_config(svid, Arc::new(verifier), TlsPolicy::default()).unwrap()
}

fn client_side(
    svid: Option<Arc<LiveSvid>>,
    server_roots: Arc<LiveRoots>,
    expected_server: &str,
) -> ClientConfig {
    let verifier = SpiffeServerVerifier::new(server_roots, id(expected_server));
    client_config(svid, Arc::new(verifier), TlsPolicy::default()).unwrap()
}

/// What each side learnt from one handshake.
struct Outcome {
    /// The client's SPIFFE ID as the server saw it (`Ok(None)`: no client certificate).
    server: Result<Option<SpiffeId>, String>,
    /// The server's leaf certificate as the client saw it.
    client: Result<Vec<u8>, String>,
    /// The key-exchange group the server negotiated, when its side of the handshake finished.
    group: Option<NamedGroup>,
}

impl Outcome {
    fn accepted(&self) -> bool {
        self.server.is_ok() && self.client.is_ok()
    }
}

/// Runs one handshake, then a one-byte exchange (in TLS 1.3 a client learns that the server
/// refused its certificate only when it next reads).
async fn handshake(server: ServerConfig, client: ClientConfig) -> Outcome {
    handshake_shared(Arc::new(server), Arc::new(client)).await
}

/// [`handshake`] with configurations that outlive it, as a long-running server and a client that
/// reconnects hold theirs.
async fn handshake_shared(server: Arc<ServerConfig>, client: Arc<ClientConfig>) -> Outcome {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    let connector = tokio_rustls::TlsConnector::from(client);
    let server_task = async move {
        let mut tls = acceptor
            .accept(server_io)
            .await
            .map_err(|e| e.to_string())?;
        let group = tls
            .get_ref()
            .1
            .negotiated_key_exchange_group()
            .map(|g| g.name());
        let peer = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first())
            .map(|leaf| peer_spiffe_id(leaf).map_err(|e| e.to_string()))
            .transpose()?;
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).await.map_err(|e| e.to_string())?;
        tls.write_all(&byte).await.map_err(|e| e.to_string())?;
        tls.flush().await.map_err(|e| e.to_string())?;
        Ok((peer, group))
    };
    let client_task = async move {
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = connector
            .connect(name, client_io)
            .await
            .map_err(|e| e.to_string())?;
        let leaf = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first())
            .map(|c| c.as_ref().to_vec())
            .ok_or_else(|| "no server certificate".to_owned())?;
        tls.write_all(b"x").await.map_err(|e| e.to_string())?;
        tls.flush().await.map_err(|e| e.to_string())?;
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).await.map_err(|e| e.to_string())?;
        Ok(leaf)
    };
    let (server, client) = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(server_task, client_task)
    })
    .await
    .expect("the handshake neither finished nor failed");
    let group = server.as_ref().ok().and_then(|(_, group)| *group);
    Outcome {
        server: server.map(|(peer, _)| peer),
        client,
        group,
    }
}

/// A chain to an untrusted root is refused. Every root of a trust domain has the same subject
/// name, so webpki may find the trusted root by name and report its signature as bad rather than
/// the issuer as unknown; both mean the chain does not lead to a current root.
fn assert_refused_chain(err: &str) {
    assert!(
        err.contains("UnknownIssuer") || err.contains("BadSignature"),
        "expected an untrusted-chain refusal, got {err}"
    );
}

#[tokio::test]
async fn mutual_handshake_succeeds_and_each_side_sees_the_others_spiffe_id() {
    let ca = root("example.org");
    let server_svid = live_svid(&ca, SERVER_ID);
    let outcome = handshake(
        server_side(server_svid, live_roots(&[&ca]), "example.org", false),
        client_side(
            Some(live_svid(&ca, CLIENT_ID)),
            live_roots(&[&ca]),
            SERVER_ID,
        ),
    )
    .await;
    assert_eq!(outcome.server.unwrap(), Some(id(CLIENT_ID)));
    assert_eq!(
        peer_spiffe_id(&outcome.client.unwrap()).unwrap(),
        id(SERVER_ID)
    );
}

#[tokio::test]
async fn default_policy_negotiates_the_post_quantum_hybrid_and_the_switch_turns_it_off() {
    let ca = root("example.org");
    let client_with = |policy: TlsPolicy| {
        let verifier = SpiffeServerVerifier::new(live_roots(&[&ca]), id(SERVER_ID));
        client_config(Some(live_svid(&ca, CLIENT_ID)), Arc::new(verifier), policy).unwrap()
    };
    let server_with = |policy: TlsPolicy| {
        let verifier = SpiffeClientVerifier::new(live_roots(&[&ca]), td("example.org"), false);
        server_config(live_svid(&ca, SERVER_ID), Arc::new(verifier), policy).unwrap()
    };
    let classical = TlsPolicy {
        post_quantum: false,
    };

    let both_default = handshake(
        server_with(TlsPolicy::default()),
        client_with(TlsPolicy::default()),
    )
    .await;
    assert!(both_default.accepted());
    assert_eq!(both_default.group, Some(NamedGroup::X25519MLKEM768));
    assert_eq!(sigil_tls::POST_QUANTUM_GROUP, NamedGroup::X25519MLKEM768);

    // Either side switched off: the classical X25519 is what both still share.
    for (server, client) in [
        (TlsPolicy::default(), classical),
        (classical, TlsPolicy::default()),
        (classical, classical),
    ] {
        let outcome = handshake(server_with(server), client_with(client)).await;
        assert!(outcome.accepted());
        assert_eq!(
            outcome.group,
            Some(NamedGroup::X25519),
            "{server:?} {client:?}"
        );
    }
}

#[tokio::test]
async fn chains_through_an_intermediate_are_accepted() {
    let ca = root("example.org");
    let inter = intermediate(
        &td("example.org"),
        Arc::new(PrivateKey::generate().unwrap()),
        &ca,
        1_800,
        now(),
    )
    .unwrap();
    let outcome = handshake(
        server_side(
            live_svid(&inter, SERVER_ID),
            live_roots(&[&ca]),
            "example.org",
            false,
        ),
        client_side(
            Some(live_svid(&inter, CLIENT_ID)),
            live_roots(&[&ca]),
            SERVER_ID,
        ),
    )
    .await;
    assert_eq!(outcome.server.unwrap(), Some(id(CLIENT_ID)));
    outcome.client.unwrap();
}

#[tokio::test]
async fn client_verifier_rejects_a_client_of_another_trust_domain() {
    let ours = root("example.org");
    let theirs = root("other.org");
    // Both roots are trusted, so only the trust-domain rule can refuse the client.
    let roots = live_roots(&[&ours, &theirs]);
    let server = || {
        server_side(
            live_svid(&ours, SERVER_ID),
            roots.clone(),
            "example.org",
            false,
        )
    };
    let client_of = |ca: &X509Authority, spiffe_id: &str| {
        client_side(
            Some(live_svid(ca, spiffe_id)),
            live_roots(&[&ours]),
            SERVER_ID,
        )
    };

    let member = handshake(server(), client_of(&ours, CLIENT_ID)).await;
    assert!(member.accepted(), "positive control: {:?}", member.server);

    let foreign = handshake(server(), client_of(&theirs, "spiffe://other.org/agent")).await;
    let err = foreign.server.unwrap_err();
    assert!(err.contains("ApplicationVerificationFailure"), "{err}");
    assert!(
        foreign.client.is_err(),
        "the client must learn it was refused"
    );
}

#[tokio::test]
async fn client_verifier_rejects_a_chain_to_an_unknown_root() {
    let trusted = root("example.org");
    let unknown = root("example.org");
    let server = || {
        server_side(
            live_svid(&trusted, SERVER_ID),
            live_roots(&[&trusted]),
            "example.org",
            false,
        )
    };
    let client_of = |ca: &X509Authority| {
        client_side(
            Some(live_svid(ca, CLIENT_ID)),
            live_roots(&[&trusted]),
            SERVER_ID,
        )
    };

    assert!(handshake(server(), client_of(&trusted)).await.accepted());

    let outcome = handshake(server(), client_of(&unknown)).await;
    assert_refused_chain(&outcome.server.unwrap_err());
    assert!(outcome.client.is_err());
}

#[tokio::test]
async fn mandatory_client_auth_refuses_a_client_without_a_certificate() {
    let ca = root("example.org");
    let outcome = handshake(
        server_side(
            live_svid(&ca, SERVER_ID),
            live_roots(&[&ca]),
            "example.org",
            false,
        ),
        client_side(None, live_roots(&[&ca]), SERVER_ID),
    )
    .await;
    let err = outcome.server.unwrap_err();
    assert!(err.to_lowercase().contains("no certificate"), "{err}");
    assert!(outcome.client.is_err());
}

#[tokio::test]
async fn optional_client_auth_accepts_a_client_without_a_certificate() {
    let ca = root("example.org");
    let outcome = handshake(
        server_side(
            live_svid(&ca, SERVER_ID),
            live_roots(&[&ca]),
            "example.org",
            true,
        ),
        client_side(None, live_roots(&[&ca]), SERVER_ID),
    )
    .await;
    assert_eq!(outcome.server.unwrap(), None, "no client identity");
    outcome.client.unwrap();
}

#[tokio::test]
async fn optional_client_auth_still_verifies_a_presented_certificate() {
    let trusted = root("example.org");
    let unknown = root("example.org");
    let outcome = handshake(
        server_side(
            live_svid(&trusted, SERVER_ID),
            live_roots(&[&trusted]),
            "example.org",
            true,
        ),
        client_side(
            Some(live_svid(&unknown, CLIENT_ID)),
            live_roots(&[&trusted]),
            SERVER_ID,
        ),
    )
    .await;
    assert!(outcome.server.is_err());
}

#[tokio::test]
async fn server_verifier_rejects_an_unexpected_server_spiffe_id() {
    let ca = root("example.org");
    let server = || {
        server_side(
            live_svid(&ca, SERVER_ID),
            live_roots(&[&ca]),
            "example.org",
            false,
        )
    };
    let client_expecting = |expected: &str| {
        client_side(
            Some(live_svid(&ca, CLIENT_ID)),
            live_roots(&[&ca]),
            expected,
        )
    };

    assert!(
        handshake(server(), client_expecting(SERVER_ID))
            .await
            .accepted()
    );

    let outcome = handshake(
        server(),
        client_expecting("spiffe://example.org/someone-else"),
    )
    .await;
    let err = outcome.client.unwrap_err();
    assert!(err.contains("NotValidForName"), "{err}");
    assert!(outcome.server.is_err());
}

#[tokio::test]
async fn server_verifier_rejects_a_server_chaining_to_an_unknown_root() {
    let trusted = root("example.org");
    let unknown = root("example.org");
    let outcome = handshake(
        server_side(
            live_svid(&unknown, SERVER_ID),
            live_roots(&[&trusted]),
            "example.org",
            true,
        ),
        client_side(None, live_roots(&[&trusted]), SERVER_ID),
    )
    .await;
    assert_refused_chain(&outcome.client.unwrap_err());
}

#[tokio::test]
async fn replaced_roots_apply_to_the_next_handshake() {
    let old = root("example.org");
    let new = root("example.org");
    let client_roots = live_roots(&[&old]);
    let client_svid = live_svid(&old, CLIENT_ID);
    let server = || {
        server_side(
            live_svid(&new, SERVER_ID),
            client_roots.clone(),
            "example.org",
            false,
        )
    };
    let client = || client_side(Some(client_svid.clone()), live_roots(&[&new]), SERVER_ID);

    assert!(handshake(server(), client()).await.accepted());

    // The old root is retired: its SVIDs are refused from now on.
    client_roots.replace(&[new.cert_der().to_vec()]);
    let refused = handshake(server(), client()).await;
    assert_refused_chain(&refused.server.unwrap_err());

    // A client renewed under the new root is accepted again, through the same LiveSvid.
    let (chain, key) = svid(&new, CLIENT_ID);
    client_svid.replace(&chain, key.pkcs8_der()).unwrap();
    let renewed = handshake(server(), client()).await;
    assert_eq!(renewed.server.unwrap(), Some(id(CLIENT_ID)));
}

#[tokio::test]
async fn replaced_svid_is_presented_on_the_next_handshake() {
    let ca = root("example.org");
    let (first_chain, first_key) = svid(&ca, SERVER_ID);
    let (second_chain, second_key) = svid(&ca, SERVER_ID);
    let server_svid = Arc::new(LiveSvid::new(&first_chain, first_key.pkcs8_der()).unwrap());
    let server = || server_side(server_svid.clone(), live_roots(&[&ca]), "example.org", true);
    let client = || client_side(None, live_roots(&[&ca]), SERVER_ID);

    let before = handshake(server(), client()).await.client.unwrap();
    assert_eq!(Some(&before), first_chain.first());

    server_svid
        .replace(&second_chain, second_key.pkcs8_der())
        .unwrap();
    let after = handshake(server(), client()).await.client.unwrap();
    assert_eq!(Some(&after), second_chain.first());
    assert_ne!(before, after);
}

#[tokio::test]
async fn reused_configurations_check_current_roots_and_svids_on_every_handshake() {
    let old = root("example.org");
    let new = root("example.org");
    let client_roots = live_roots(&[&old]);
    let client_svid = live_svid(&old, CLIENT_ID);
    let server = Arc::new(server_side(
        live_svid(&new, SERVER_ID),
        client_roots.clone(),
        "example.org",
        false,
    ));
    let client = Arc::new(client_side(
        Some(client_svid.clone()),
        live_roots(&[&new]),
        SERVER_ID,
    ));

    let first = handshake_shared(server.clone(), client.clone()).await;
    assert_eq!(first.server.unwrap(), Some(id(CLIENT_ID)));

    // A resumed session would skip certificate verification and keep the old client identity.
    client_roots.replace(&[new.cert_der().to_vec()]);
    let refused = handshake_shared(server.clone(), client.clone()).await;
    assert!(
        refused.server.is_err(),
        "a client chaining to a removed root was accepted (session resumption?)"
    );

    let (chain, key) = svid(&new, CLIENT_ID);
    client_svid.replace(&chain, key.pkcs8_der()).unwrap();
    let renewed = handshake_shared(server, client).await;
    assert_eq!(renewed.server.unwrap(), Some(id(CLIENT_ID)));
}

#[test]
fn live_svid_refuses_an_empty_chain_and_a_bad_key() {
    let ca = root("example.org");
    let (chain, key) = svid(&ca, SERVER_ID);
    assert!(matches!(
        LiveSvid::new(&[], key.pkcs8_der()),
        Err(TlsError::EmptyChain)
    ));
    assert!(matches!(
        LiveSvid::new(&chain, b"not a key"),
        Err(TlsError::BadKey(_))
    ));
    let live = LiveSvid::new(&chain, key.pkcs8_der()).unwrap();
    assert!(live.replace(&[], key.pkcs8_der()).is_err());
    assert_eq!(format!("{live:?}"), "LiveSvid(<redacted>)");
}

/// A self-signed certificate with exactly `sans`.
fn cert_with_sans(sans: Vec<rcgen::SanType>) -> Vec<u8> {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = sans;
    params.self_signed(&key).unwrap().der().to_vec()
}

fn uri(s: &str) -> rcgen::SanType {
    rcgen::SanType::URI(s.try_into().unwrap())
}

#[test]
fn peer_spiffe_id_accepts_exactly_one_spiffe_uri_san() {
    let der = cert_with_sans(vec![
        rcgen::SanType::DnsName("api.example.org".try_into().unwrap()),
        uri("spiffe://example.org/api"),
    ]);
    assert_eq!(
        peer_spiffe_id(&der).unwrap(),
        id("spiffe://example.org/api")
    );
}

#[test]
fn peer_spiffe_id_rejects_two_uri_sans() {
    let der = cert_with_sans(vec![
        uri("spiffe://example.org/a"),
        uri("spiffe://example.org/b"),
    ]);
    let err = peer_spiffe_id(&der).unwrap_err();
    assert!(err.to_string().contains("more than one URI SAN"), "{err}");
}

#[test]
fn peer_spiffe_id_rejects_a_certificate_without_uri_san() {
    let dns_only = cert_with_sans(vec![rcgen::SanType::DnsName(
        "api.example.org".try_into().unwrap(),
    )]);
    let err = peer_spiffe_id(&dns_only).unwrap_err();
    assert!(err.to_string().contains("no URI SAN"), "{err}");

    let no_san = cert_with_sans(Vec::new());
    let err = peer_spiffe_id(&no_san).unwrap_err();
    assert!(err.to_string().contains("no subjectAltName"), "{err}");
}

#[test]
fn peer_spiffe_id_rejects_a_uri_san_that_is_not_a_spiffe_id() {
    let der = cert_with_sans(vec![uri("https://example.org/api")]);
    assert!(matches!(peer_spiffe_id(&der), Err(TlsError::NotAnSvid(_))));
}

#[test]
fn peer_spiffe_id_rejects_garbage_and_oversized_input() {
    assert!(peer_spiffe_id(b"").is_err());
    assert!(peer_spiffe_id(&[0x30, 0x82, 0xff, 0xff]).is_err());
    let err = peer_spiffe_id(&vec![0u8; 64 * 1024]).unwrap_err();
    assert!(err.to_string().contains("too large"), "{err}");
}
