//! An upstream authority made with openssl (a corporate root and an issuing CA under it) shared by
//! two server replicas on one PostgreSQL database: each replica's root is signed by the issuing
//! CA, the bundle every replica serves holds the corporate root alone, and openssl verifies SVIDs
//! of either replica against that root with nothing else. Bad upstream files stop the server with
//! one clear line.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::*;
use crate::postgres::{Database, postgres_table};

const PATIENCE: Duration = Duration::from_secs(30);

/// The corporate PKI, made with the openssl command line.
struct CorporatePki {
    root: PathBuf,
    root_key: PathBuf,
    /// The issuing CA's certificate followed by the root.
    chain: PathBuf,
    key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let o = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl must be installed (scripts/test.sh installs it)");
    assert!(o.status.success(), "openssl {args:?}: {}", stderr(&o));
}

fn corporate_pki(dir: &Path) -> CorporatePki {
    std::fs::create_dir_all(dir).unwrap();
    let ca_ext = "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n\
                  subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n";
    std::fs::write(dir.join("ca.ext"), ca_ext).unwrap();
    let p256 = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut root = vec!["req", "-x509"];
    root.extend(p256);
    root.extend([
        "-keyout",
        "root.key",
        "-out",
        "root.pem",
        "-days",
        "30",
        "-subj",
        "/O=Corp/CN=Corp Root",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &root);
    let mut csr = vec!["req", "-new"];
    csr.extend(p256);
    csr.extend([
        "-keyout",
        "issuing.key",
        "-out",
        "issuing.csr",
        "-subj",
        "/O=Corp/CN=Corp Issuing CA",
    ]);
    openssl(dir, &csr);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "issuing.csr",
            "-CA",
            "root.pem",
            "-CAkey",
            "root.key",
            "-CAcreateserial",
            "-days",
            "30",
            "-extfile",
            "ca.ext",
            "-out",
            "issuing.pem",
        ],
    );
    let chain = format!(
        "{}{}",
        std::fs::read_to_string(dir.join("issuing.pem")).unwrap(),
        std::fs::read_to_string(dir.join("root.pem")).unwrap()
    );
    std::fs::write(dir.join("chain.pem"), chain).unwrap();
    for key in ["root.key", "issuing.key"] {
        std::fs::set_permissions(dir.join(key), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    CorporatePki {
        root: dir.join("root.pem"),
        root_key: dir.join("root.key"),
        chain: dir.join("chain.pem"),
        key: dir.join("issuing.key"),
    }
}

fn ca_table(cert_file: &Path, key_file: &Path) -> String {
    format!(
        "\n[ca]\nupstream_cert_file = \"{}\"\nupstream_key_file = \"{}\"\n",
        cert_file.display(),
        key_file.display()
    )
}

fn der_certs(pem_path: &Path) -> Vec<Vec<u8>> {
    let pem = std::fs::read_to_string(pem_path).unwrap();
    sigil_keys::pem::decode_all("CERTIFICATE", &pem).unwrap()
}

#[test]
fn replicas_under_an_openssl_made_upstream_are_trusted_through_the_corporate_root() {
    let Some(db) = Database::create() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let pki = corporate_pki(&tmp.path().join("pki"));
    let extra = |replica: &str| {
        format!(
            "replica_id = \"{replica}\"\n{}{}",
            postgres_table(&db.url()),
            ca_table(&pki.chain, &pki.key)
        )
    };
    let a = TestServer::start_with(&tmp.path().join("a"), &extra("a"));
    let mut b = TestServer::start_with(&tmp.path().join("b"), &extra("b"));
    let corporate_root = der_certs(&pki.root);
    for server in [&a, &b] {
        let bundle = tmp.path().join("bundle.pem");
        server.write_bundle(&bundle);
        assert_eq!(
            der_certs(&bundle),
            corporate_root,
            "the bundle is the corporate root"
        );
    }

    let (token, agent_id) = a.join_token("10m");
    let paths = agent_config_with_addresses(
        &tmp.path().join("agent"),
        &a,
        Some(&token),
        &[
            format!("127.0.0.1:{}", b.port),
            format!("127.0.0.1:{}", a.port),
        ],
    );
    let _agent = start_agent(&paths);
    let first_entry = create_uid_entry(&a, "spiffe://example.org/upstream/one", &agent_id);
    let first = tmp.path().join("svid-1");
    wait_for(PATIENCE, "the SVID of the first entry", || {
        fetch_svid_files(&paths.socket, &first);
        let leaf = der_certs(&first.join("svid.pem")).into_iter().next()?;
        let id = sigil_tls::peer_spiffe_id(&leaf).ok()?;
        (id.as_str() == "spiffe://example.org/upstream/one").then_some(())
    });
    let chain = der_certs(&first.join("svid.pem"));
    assert_eq!(
        chain.len(),
        4,
        "leaf, intermediate, replica root, corporate issuing CA"
    );
    assert_eq!(chain[3], der_certs(&pki.chain)[0]);
    openssl_verifies(&first, &pki.root);
    // The workload's own bundle file is the corporate root too.
    assert_eq!(der_certs(&first.join("bundle.pem")), corporate_root);

    // After kill -9 of B, A signs: its chain differs below the issuing CA and verifies the same.
    b.daemon_mut().kill9();
    let o = a.admin(&["entry", "delete", "--id", &first_entry]);
    assert!(o.status.success(), "{}", stderr(&o));
    create_uid_entry(&a, "spiffe://example.org/upstream/two", &agent_id);
    let second = tmp.path().join("svid-2");
    wait_for(PATIENCE, "the SVID of the second entry", || {
        fetch_svid_files(&paths.socket, &second);
        let leaf = der_certs(&second.join("svid.pem")).into_iter().next()?;
        let id = sigil_tls::peer_spiffe_id(&leaf).ok()?;
        (id.as_str() == "spiffe://example.org/upstream/two").then_some(())
    });
    let second_chain = der_certs(&second.join("svid.pem"));
    assert_ne!(second_chain[2], chain[2], "another replica's root");
    openssl_verifies(&second, &pki.root);
}

/// The server does not start on unusable upstream files: one line naming the problem.
#[test]
fn unusable_upstream_files_stop_the_server_with_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = corporate_pki(&tmp.path().join("pki"));
    let run = |name: &str, ca: &str| {
        let config = tmp.path().join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "[server]\ntrust_domain = \"example.org\"\nbind_address = \"127.0.0.1:{}\"\n\
                 data_dir = \"{}\"\n{ca}",
                free_port(),
                tmp.path().join(name).display(),
            ),
        )
        .unwrap();
        sigil(&["server", "run", "-c", config.to_str().unwrap()])
    };
    // The root's key given with the issuing CA's certificate.
    let o = run("mismatch", &ca_table(&pki.chain, &pki.root_key));
    assert_one_line_error(&o, "does not match");
    // A key file others may read.
    let open_key = tmp.path().join("open.key");
    std::fs::copy(&pki.key, &open_key).unwrap();
    std::fs::set_permissions(&open_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = run("open", &ca_table(&pki.chain, &open_key));
    assert_one_line_error(&o, "chmod 600");
    // The issuing CA without its root and without a bundle file: no anchor to publish.
    let issuing_only = tmp.path().join("issuing-only.pem");
    std::fs::copy(tmp.path().join("pki").join("issuing.pem"), &issuing_only).unwrap();
    let o = run("no-anchor", &ca_table(&issuing_only, &pki.key));
    assert_one_line_error(&o, "bundle file");
    // A certificate without its key.
    let o = run(
        "half",
        &format!("\n[ca]\nupstream_cert_file = \"{}\"\n", pki.chain.display()),
    );
    assert_one_line_error(&o, "needs ca.upstream_key_file");
    // With a bundle file, the issuing CA alone is enough.
    let config = format!(
        "{}upstream_bundle_file = \"{}\"\n",
        ca_table(&issuing_only, &pki.key),
        pki.root.display()
    );
    let server = TestServer::start_with(&tmp.path().join("ok"), &config);
    let bundle = tmp.path().join("ok-bundle.pem");
    server.write_bundle(&bundle);
    assert_eq!(der_certs(&bundle), der_certs(&pki.root));
}
