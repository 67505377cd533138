//! Interop with the `openssl` CLI: chains Sigil issues must pass `openssl verify -x509_strict`,
//! and CSRs made by OpenSSL (P-256 and P-384) must be accepted. Each test is skipped, with a note,
//! only when `/usr/bin/openssl` is absent.

#![cfg(test)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use sigil_ca::{X509Authority, intermediate, self_signed_root};
use sigil_keys::PrivateKey;
use sigil_keys::pem::{self, CERTIFICATE_LABEL};
use sigil_spiffe::{Clock, SpiffeId, SystemClock, TrustDomain};

const OPENSSL: &str = "/usr/bin/openssl";

fn openssl_available() -> bool {
    if Path::new(OPENSSL).exists() {
        return true;
    }
    // CI installs openssl (scripts/test.sh): there a missing binary is a failure, not a skip.
    let required = std::env::var("CI").is_ok_and(|v| v == "true")
        || std::env::var_os("SIGIL_REQUIRE_INTEROP").is_some();
    assert!(
        !required,
        "{OPENSSL} is absent but CI=true or SIGIL_REQUIRE_INTEROP is set"
    );
    eprintln!("note: {OPENSSL} is absent, skipping the openssl interop test");
    false
}

fn openssl(args: &[&str], dir: &Path) -> Output {
    Command::new(OPENSSL)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn write_pem(dir: &Path, name: &str, der: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, pem::encode(CERTIFICATE_LABEL, der)).unwrap();
    path
}

struct Pki {
    root: X509Authority,
    inter: X509Authority,
}

fn new_pki() -> Pki {
    let td = TrustDomain::parse("example.org").unwrap();
    let now = SystemClock.now();
    let root =
        self_signed_root(&td, Arc::new(PrivateKey::generate().unwrap()), 86_400, now).unwrap();
    let inter = intermediate(
        &td,
        Arc::new(PrivateKey::generate().unwrap()),
        &root,
        3_600,
        now,
    )
    .unwrap();
    Pki { root, inter }
}

fn workload_id() -> SpiffeId {
    SpiffeId::parse("spiffe://example.org/ns/prod/sa/api").unwrap()
}

fn strict_verify(dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["verify", "-x509_strict"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[
        "-CAfile",
        "root.pem",
        "-untrusted",
        "intermediate.pem",
        "leaf.pem",
    ]);
    openssl(&args, dir)
}

#[test]
fn openssl_strictly_verifies_root_intermediate_leaf() {
    if !openssl_available() {
        return;
    }
    let pki = new_pki();
    let key = PrivateKey::generate().unwrap();
    let csr = key.csr_der(&workload_id()).unwrap();
    let dns = vec!["api.example.org".to_owned()];
    let leaf = pki
        .inter
        .sign_x509_svid(&csr, &workload_id(), 600, &dns, SystemClock.now())
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    write_pem(dir.path(), "root.pem", pki.root.cert_der());
    write_pem(dir.path(), "intermediate.pem", pki.inter.cert_der());
    write_pem(dir.path(), "leaf.pem", &leaf);

    let out = strict_verify(dir.path(), &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "openssl verify failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), "leaf.pem: OK");

    for purpose in ["sslclient", "sslserver"] {
        let out = strict_verify(dir.path(), &["-purpose", purpose]);
        assert!(
            out.status.success(),
            "purpose {purpose}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // The same leaf must fail against an unrelated root: the positive result above is not vacuous.
    let stranger = new_pki();
    write_pem(dir.path(), "root.pem", stranger.root.cert_der());
    let out = strict_verify(dir.path(), &[]);
    assert!(
        !out.status.success(),
        "verification against a foreign root must fail"
    );
}

#[test]
fn openssl_verifies_a_leaf_issued_directly_by_the_root() {
    if !openssl_available() {
        return;
    }
    let pki = new_pki();
    let key = PrivateKey::generate().unwrap();
    let leaf = pki
        .root
        .sign_x509_svid_for_key(
            key.public_key_ref(),
            &workload_id(),
            600,
            &[],
            SystemClock.now(),
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_pem(dir.path(), "root.pem", pki.root.cert_der());
    write_pem(dir.path(), "leaf.pem", &leaf);
    let out = openssl(
        &["verify", "-x509_strict", "-CAfile", "root.pem", "leaf.pem"],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn openssl_accepts_sigil_csrs() {
    if !openssl_available() {
        return;
    }
    let key = PrivateKey::generate().unwrap();
    let csr = key.csr_der(&workload_id()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("csr.der"), &csr).unwrap();
    let out = openssl(
        &[
            "req", "-inform", "DER", "-in", "csr.der", "-verify", "-noout", "-text",
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("URI:spiffe://example.org/ns/prod/sa/api"),
        "{text}"
    );
}

#[test]
fn sigil_accepts_openssl_csrs_on_p256_and_p384() {
    if !openssl_available() {
        return;
    }
    let pki = new_pki();
    for (curve, digest) in [("P-256", "-sha256"), ("P-384", "-sha384")] {
        let dir = tempfile::tempdir().unwrap();
        let curve_opt = format!("ec_paramgen_curve:{curve}");
        let out = openssl(
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                &curve_opt,
                "-nodes",
                digest,
                "-subj",
                "/CN=ignored",
                "-keyout",
                "key.pem",
                "-outform",
                "DER",
                "-out",
                "csr.der",
            ],
            dir.path(),
        );
        assert!(
            out.status.success(),
            "{curve}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let csr = std::fs::read(dir.path().join("csr.der")).unwrap();
        let leaf = pki
            .inter
            .sign_x509_svid(&csr, &workload_id(), 600, &[], SystemClock.now())
            .unwrap();
        write_pem(dir.path(), "root.pem", pki.root.cert_der());
        write_pem(dir.path(), "intermediate.pem", pki.inter.cert_der());
        write_pem(dir.path(), "leaf.pem", &leaf);
        let out = strict_verify(dir.path(), &[]);
        assert!(
            out.status.success(),
            "{curve}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The leaf certifies the key OpenSSL generated.
        let out = openssl(
            &["x509", "-in", "leaf.pem", "-noout", "-pubkey"],
            dir.path(),
        );
        let cert_pub = String::from_utf8_lossy(&out.stdout).into_owned();
        let out = openssl(&["pkey", "-in", "key.pem", "-pubout"], dir.path());
        assert_eq!(cert_pub, String::from_utf8_lossy(&out.stdout), "{curve}");
    }
}
