//! The public listener of an in-process server: the bundle endpoint's `https_spiffe` profile (a
//! client that trusts only the trust bundle and expects the server's SPIFFE ID reads `/bundle`
//! over TLS), `iss` on JWT-SVIDs once an issuer is configured, discovery off without one, and
//! plain HTTP refused off loopback.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a broken assumption must fail the test loudly"
)]

mod support;

use std::sync::Arc;

use base64::Engine as _;
use http_body_util::{BodyExt, Empty};
use sigil_proto::agent::v1 as pb;
use sigil_server::public::{PublicConfig, PublicTls};
use sigil_tls::{LiveRoots, ServerName, SpiffeServerVerifier, TlsConnector};
use support::{PATIENCE, TestServer};
use tokio::net::TcpStream;

fn public(tls: PublicTls, issuer: Option<&str>) -> PublicConfig {
    PublicConfig {
        bind_address: "127.0.0.1:0".parse().unwrap(),
        tls,
        issuer: issuer.map(str::to_owned),
    }
}

/// GET `path` over HTTP/1.1 on `io`: (status, body).
async fn get<T>(io: T, path: &str) -> (u16, serde_json::Value)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = http::Request::get(path)
        .header("host", "sigil")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = tokio::time::timeout(PATIENCE, sender.send_request(request))
        .await
        .unwrap()
        .unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

/// A TLS connection to `server`'s public listener trusting only its bundle and expecting the
/// server's SPIFFE ID.
async fn spiffe_tls(
    server: &TestServer,
) -> Result<sigil_tls::client::TlsStream<TcpStream>, std::io::Error> {
    spiffe_tls_trusting(server, &server.handle.bundle().x509_authorities).await
}

/// Like [`spiffe_tls`], trusting `roots` instead.
async fn spiffe_tls_trusting(
    server: &TestServer,
    roots: &[Vec<u8>],
) -> Result<sigil_tls::client::TlsStream<TcpStream>, std::io::Error> {
    let roots = Arc::new(LiveRoots::new(roots));
    let verifier = Arc::new(SpiffeServerVerifier::new(
        roots,
        sigil_server::naming::server_id(&support::td()),
    ));
    let mut config =
        sigil_tls::client_config(None, verifier, sigil_tls::TlsPolicy::default()).unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(server.handle.public_addr.unwrap())
        .await
        .unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("sigil").unwrap(), tcp)
        .await
}

#[tokio::test]
async fn the_bundle_endpoint_serves_https_spiffe_with_the_server_svid() {
    let server = TestServer::try_start_public(public(PublicTls::Svid, None))
        .await
        .unwrap();
    let tls = spiffe_tls(&server).await.unwrap();
    let (status, bundle) = get(tls, "/bundle").await;
    assert_eq!(status, 200);
    let document =
        sigil_spiffe::BundleDocument::parse(&serde_json::to_vec(&bundle).unwrap()).unwrap();
    let served = sigil_keys::bundle_json::from_document(support::td(), &document).unwrap();
    assert_eq!(
        served.x509_authorities,
        server.handle.bundle().x509_authorities
    );
    assert_eq!(served.sequence, server.handle.bundle().sequence);

    // A client that trusts another trust domain's bundle refuses the server.
    let stranger = TestServer::start().await;
    let refused = spiffe_tls_trusting(&server, &stranger.handle.bundle().x509_authorities).await;
    assert!(
        refused.is_err(),
        "a foreign bundle must not verify the server"
    );
    stranger.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn jwt_svids_carry_the_configured_issuer() {
    let issuer = "https://oidc.example.org";
    let server = TestServer::try_start_public(public(PublicTls::Svid, Some(issuer)))
        .await
        .unwrap();
    assert_eq!(server.handle.issuer.as_deref(), Some(issuer));
    let agent = server.attest().await;
    let entry = server
        .create_entry("spiffe://example.org/w", &agent.id)
        .await;
    server.agents_caught_up().await;
    let minted = server
        .client(&agent)
        .await
        .new_jwt_svid(pb::NewJwtSvidRequest {
            entry_id: entry.id,
            audience: vec!["rp".to_owned()],
        })
        .await
        .unwrap()
        .into_inner();
    let claims = minted.token.split('.').nth(1).unwrap().to_owned();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["iss"], issuer);
    let tls = spiffe_tls(&server).await.unwrap();
    let (status, discovery) = get(tls, "/.well-known/openid-configuration").await;
    assert_eq!(status, 200);
    assert_eq!(discovery["issuer"], issuer);
    assert_eq!(discovery["jwks_uri"], "https://oidc.example.org/keys");
    server.stop().await;
}

#[tokio::test]
async fn without_an_issuer_there_is_no_discovery_and_no_iss() {
    let server = TestServer::try_start_public(public(PublicTls::PlainLoopback, None))
        .await
        .unwrap();
    // Plain HTTP on loopback is dev mode: the issuer is the listener's own URL.
    let addr = server.handle.public_addr.unwrap();
    assert_eq!(
        server.handle.issuer.as_deref(),
        Some(format!("http://{addr}").as_str())
    );
    server.stop().await;

    let server = TestServer::try_start_public(public(PublicTls::Svid, None))
        .await
        .unwrap();
    assert!(server.handle.issuer.is_none());
    let tls = spiffe_tls(&server).await.unwrap();
    let (status, error) = get(tls, "/.well-known/openid-configuration").await;
    assert_eq!(status, 404);
    assert_eq!(error["error"], "not_found");
    let tls = spiffe_tls(&server).await.unwrap();
    let (status, keys) = get(tls, "/keys").await;
    assert_eq!(status, 200);
    let key = &keys["keys"][0];
    assert_eq!(key["use"], "sig");
    assert_eq!(key["alg"], "ES256");
    server.stop().await;
}

#[tokio::test]
async fn plain_http_is_refused_off_loopback() {
    let mut config = public(PublicTls::PlainLoopback, None);
    config.bind_address = "0.0.0.0:0".parse().unwrap();
    let refused = TestServer::try_start_public(config).await;
    assert!(
        matches!(refused, Err(sigil_server::ServerError::PlainPublic(_))),
        "{:?}",
        refused.err()
    );
}

#[tokio::test]
async fn the_next_jwt_key_is_in_the_jwks_before_it_signs() {
    let server =
        TestServer::try_start_public(public(PublicTls::Svid, Some("https://oidc.example.org")))
            .await
            .unwrap();
    let agent = server.attest().await;
    let entry = server
        .create_entry("spiffe://example.org/w", &agent.id)
        .await;
    server.agents_caught_up().await;
    let next = server
        .handle
        .ca
        .command(&sigil_server::ca::Command::Prepare {
            kind: sigil_spiffe::AuthorityKind::Jwt,
        })
        .await
        .unwrap();
    let tls = spiffe_tls(&server).await.unwrap();
    let (status, keys) = get(tls, "/keys").await;
    assert_eq!(status, 200);
    let kids: Vec<&str> = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert!(
        kids.contains(&next.id.as_str()),
        "{kids:?} lacks {}",
        next.id
    );
    assert_eq!(kids.len(), 2, "the active key and the next one: {kids:?}");
    // The prepared key does not sign yet.
    let minted = server
        .client(&agent)
        .await
        .new_jwt_svid(pb::NewJwtSvidRequest {
            entry_id: entry.id,
            audience: vec!["rp".to_owned()],
        })
        .await
        .unwrap()
        .into_inner();
    let header = minted.token.split('.').next().unwrap().to_owned();
    let header: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap(),
    )
    .unwrap();
    assert_ne!(header["kid"], next.id.as_str());
    assert!(kids.contains(&header["kid"].as_str().unwrap()));
    server.stop().await;
}

#[tokio::test]
async fn readyz_reports_a_failing_audit_sink_as_a_warning_and_stays_ready() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir").join("audit.jsonl");
    let server = TestServer::start_audited(
        sigil_server::audit::AuditConfig {
            sinks: vec![sigil_server::audit::sinks::SinkConfig::File {
                path: missing.clone(),
            }],
            ..sigil_server::audit::AuditConfig::default()
        },
        Some(public(PublicTls::PlainLoopback, None)),
    )
    .await;
    let addr = server.handle.public_addr.unwrap();
    // An attestation is audited, and its record copied to the sink, which cannot write.
    server.attest().await;
    let started = std::time::Instant::now();
    let body = loop {
        let (status, body) = get(TcpStream::connect(addr).await.unwrap(), "/readyz").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["audit"]["enabled"], true, "{body}");
        let warned = body["audit"]["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("audit sink"));
        if warned {
            break body;
        }
        assert!(started.elapsed() < PATIENCE, "no sink warning: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(body["status"], "ready", "{body}");
    // Once the directory exists the sink delivers what it spooled and the warning goes.
    std::fs::create_dir_all(missing.parent().unwrap()).unwrap();
    let started = std::time::Instant::now();
    loop {
        let (_, body) = get(TcpStream::connect(addr).await.unwrap(), "/readyz").await;
        if body["audit"]["warnings"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(
            started.elapsed() < 4 * PATIENCE,
            "the sink did not recover: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let copied = std::fs::read_to_string(&missing).unwrap();
    assert!(copied.contains("agent.attest"), "{copied}");
    server.stop().await;
}
