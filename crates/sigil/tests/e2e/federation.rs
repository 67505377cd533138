//! Two Sigil trust domains federated both ways, as separate processes (each its own server and
//! agent): each server fetches the other's bundle from its bundle endpoint (profile
//! `https_spiffe`, bootstrapped from a bundle file), its agent hands it to workloads whose entry
//! federates with the other domain, and then
//! - `openssl s_server` / `s_client` (`-verify_return_error`) and rustls establish mutual TLS
//!   between a workload of each domain with their SVIDs and the federated bundles;
//! - a JWT-SVID of one domain validates in the other through ValidateJWTSVID.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::harness::*;

const PATIENCE: Duration = Duration::from_secs(30);

struct Domain {
    server: TestServer,
    agent: AgentPaths,
    _agent: Daemon,
    spiffe_id: String,
}

fn public_table(port: u16) -> String {
    format!("\n[public]\nbind_address = \"127.0.0.1:{port}\"\ntls = \"svid\"\n")
}

fn federation_table(peer: &str, port: u16, bootstrap: &Path) -> String {
    format!(
        "\n[[federation]]\ntrust_domain = \"{peer}\"\nowner = \"team-federation\"\n\
         bundle_endpoint_url = \"https://127.0.0.1:{port}/bundle\"\nprofile = \"https_spiffe\"\n\
         endpoint_spiffe_id = \"spiffe://{peer}/sigil/server\"\nbootstrap_bundle_file = \"{}\"\n",
        bootstrap.display()
    )
}

fn der_certs(path: &Path) -> Vec<Vec<u8>> {
    sigil_keys::pem::decode_all(
        "CERTIFICATE",
        &std::fs::read_to_string(path).unwrap_or_default(),
    )
    .unwrap_or_default()
}

/// Waits until the workload of `domain` holds `peer`'s authorities as its federated bundle;
/// returns the directory of its SVID files.
fn svid_with_federated(domain: &Domain, peer: &TestServer, dir: &Path) -> PathBuf {
    let peer_bundle = dir.with_extension("peer.pem");
    peer.write_bundle(&peer_bundle);
    let wanted = der_certs(&peer_bundle);
    wait_for(PATIENCE, "the peer's bundle at the workload", || {
        let o = workload(
            &domain.agent.socket,
            &["svid", "fetch", "--write", dir.to_str().unwrap()],
        );
        (o.status.success() && der_certs(&dir.join("federated_bundle.pem")) == wanted).then_some(())
    });
    dir.to_owned()
}

#[test]
fn two_trust_domains_federated_both_ways_speak_mtls_and_accept_each_others_jwts() {
    let tmp = tempfile::tempdir().unwrap();
    let (port_a, port_b) = (free_port(), free_port());
    let mut a =
        TestServer::start_in_domain(&tmp.path().join("a"), "example.org", &public_table(port_a));
    let mut b =
        TestServer::start_in_domain(&tmp.path().join("b"), "other.org", &public_table(port_b));
    let (bundle_a, bundle_b) = (tmp.path().join("a.pem"), tmp.path().join("b.pem"));
    a.write_bundle(&bundle_a);
    b.write_bundle(&bundle_b);
    a.append_config(&federation_table("other.org", port_b, &bundle_b));
    b.append_config(&federation_table("example.org", port_a, &bundle_a));
    a.restart();
    b.restart();

    let domain = |server: TestServer, name: &str, spiffe_id: &str, peer: &str| {
        let (token, agent_id) = server.join_token("10m");
        let agent = agent_config(
            &tmp.path().join(format!("agent-{name}")),
            &server,
            Some(&token),
        );
        let daemon = start_agent(&agent);
        create_uid_entry_with(&server, spiffe_id, &agent_id, &["--federates-with", peer]);
        Domain {
            server,
            agent,
            _agent: daemon,
            spiffe_id: spiffe_id.to_owned(),
        }
    };
    let a = domain(a, "a", "spiffe://example.org/fed/client", "other.org");
    let b = domain(b, "b", "spiffe://other.org/fed/server", "example.org");
    let files_a = svid_with_federated(&a, &b.server, &tmp.path().join("svid-a"));
    let files_b = svid_with_federated(&b, &a.server, &tmp.path().join("svid-b"));

    // openssl: B's workload serves, A's connects; each verifies the other with the federated
    // bundle, and a failed verification fails the handshake.
    let port = free_port();
    let mut s_server = Command::new("openssl")
        .args(["s_server", "-accept", &port.to_string(), "-www"])
        .arg("-cert")
        .arg(files_b.join("svid.pem"))
        .arg("-cert_chain")
        .arg(files_b.join("svid.pem"))
        .arg("-key")
        .arg(files_b.join("svid.key"))
        .arg("-CAfile")
        .arg(files_b.join("federated_bundle.pem"))
        .args(["-Verify", "2", "-verify_return_error"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl must be installed");
    wait_for(PATIENCE, "openssl s_server", || {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .map(drop)
    });
    let s_client = |cafile: &Path| {
        let mut child = Command::new("openssl")
            .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
            .arg("-cert")
            .arg(files_a.join("svid.pem"))
            .arg("-cert_chain")
            .arg(files_a.join("svid.pem"))
            .arg("-key")
            .arg(files_a.join("svid.key"))
            .arg("-CAfile")
            .arg(cafile)
            .args(["-verify_return_error", "-quiet"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"GET / HTTP/1.0\r\n\r\n")
            .unwrap();
        child.wait_with_output().unwrap()
    };
    // Against its own bundle only, the client refuses B's server: the federated bundle matters.
    let refused = s_client(&files_a.join("bundle.pem"));
    assert!(!refused.status.success(), "verified B without B's bundle");
    let ok = s_client(&files_a.join("federated_bundle.pem"));
    assert!(
        ok.status.success(),
        "openssl mutual TLS across the federation: {}{}",
        stdout(&ok),
        stderr(&ok)
    );
    assert!(stdout(&ok).contains("HTTP/1.0 200"), "{}", stdout(&ok));
    let _ = s_server.kill();
    let _ = s_server.wait();

    // rustls: the same two SVIDs, each side verifying the other's SPIFFE ID in its trust domain.
    rustls_mtls(&files_a, &files_b, &b.spiffe_id, &a.spiffe_id);

    // A JWT-SVID of example.org validates at other.org's agent (ValidateJWTSVID).
    let o = workload(
        &a.agent.socket,
        &[
            "jwt",
            "fetch",
            "--audience",
            "spiffe://other.org/fed/server",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let token = stdout(&o).trim().to_owned();
    wait_for(
        PATIENCE,
        "example.org's JWT keys at other.org's agent",
        || {
            let o = workload(
                &b.agent.socket,
                &[
                    "jwt",
                    "validate",
                    "--audience",
                    "spiffe://other.org/fed/server",
                    "--token",
                    &token,
                    "--output",
                    "json",
                ],
            );
            o.status.success().then(|| {
                let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
                assert_eq!(v["spiffe_id"], a.spiffe_id);
            })
        },
    );
    // A token from a domain other.org does not federate with is refused.
    let stranger = TestServer::start_in_domain(&tmp.path().join("c"), "third.org", "");
    let (token_c, agent_c) = stranger.join_token("10m");
    let paths_c = agent_config(&tmp.path().join("agent-c"), &stranger, Some(&token_c));
    let _agent_c = start_agent(&paths_c);
    create_uid_entry(&stranger, "spiffe://third.org/w", &agent_c);
    fetch_svid_files(&paths_c.socket, &tmp.path().join("svid-c"));
    let o = workload(
        &paths_c.socket,
        &[
            "jwt",
            "fetch",
            "--audience",
            "spiffe://other.org/fed/server",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = workload(
        &b.agent.socket,
        &[
            "jwt",
            "validate",
            "--audience",
            "spiffe://other.org/fed/server",
            "--token",
            stdout(&o).trim(),
        ],
    );
    assert!(
        !o.status.success(),
        "a JWT-SVID of an unfederated domain validated"
    );
}

/// Mutual TLS with rustls between the SVID files of `client` and `server`: the client expects
/// `server_id` and trusts the federated bundle it holds, the server accepts clients of
/// `client_id`'s trust domain with the federated bundle it holds.
fn rustls_mtls(client: &Path, server: &Path, server_id: &str, client_id: &str) {
    let load = |dir: &Path| {
        let chain = der_certs(&dir.join("svid.pem"));
        let key = sigil_keys::pem::decode_secret(
            "PRIVATE KEY",
            &std::fs::read_to_string(dir.join("svid.key")).unwrap(),
        )
        .unwrap();
        Arc::new(sigil_tls::LiveSvid::new(&chain, &key).unwrap())
    };
    let client_svid = load(client);
    let server_svid = load(server);
    let server_td = sigil_spiffe::SpiffeId::parse(client_id)
        .unwrap()
        .trust_domain();
    let server_roots = Arc::new(sigil_tls::LiveRoots::new(&der_certs(
        &server.join("federated_bundle.pem"),
    )));
    let client_roots = Arc::new(sigil_tls::LiveRoots::new(&der_certs(
        &client.join("federated_bundle.pem"),
    )));
    let server_config = sigil_tls::server_config(
        server_svid,
        Arc::new(sigil_tls::SpiffeClientVerifier::new(
            server_roots,
            server_td,
            false,
        )),
        sigil_tls::TlsPolicy::default(),
    )
    .unwrap();
    let client_config = sigil_tls::client_config(
        Some(client_svid),
        Arc::new(sigil_tls::SpiffeServerVerifier::new(
            client_roots,
            sigil_spiffe::SpiffeId::parse(server_id).unwrap(),
        )),
        sigil_tls::TlsPolicy::default(),
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = sigil_tls::TlsAcceptor::from(Arc::new(server_config));
        let served = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let tls = acceptor.accept(tcp).await.unwrap();
            let peer = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
            sigil_tls::peer_spiffe_id(&peer).unwrap().to_string()
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let tls = sigil_tls::TlsConnector::from(Arc::new(client_config))
            .connect(sigil_tls::ServerName::try_from("workload").unwrap(), tcp)
            .await
            .unwrap();
        let peer = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
        assert_eq!(
            sigil_tls::peer_spiffe_id(&peer).unwrap().as_str(),
            server_id
        );
        assert_eq!(served.await.unwrap(), client_id);
    });
}
