//! Interop: clients nobody on the project wrote, used unmodified against a real agent — the Rust
//! `spiffe` crate (interop/rust-spiffe) and py-spiffe 0.3.2 on grpcio (interop/python).

use std::path::PathBuf;
use std::process::Command;

use crate::harness::*;

/// A server, an agent and an entry for this uid; returns (tempdir, socket, spiffe id, daemons).
fn running_agent() -> (tempfile::TempDir, PathBuf, &'static str, TestServer, Daemon) {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(tmp.path());
    let (token, agent_id) = server.join_token("10m");
    let paths = agent_config(&tmp.path().join("agent"), &server, Some(&token));
    let agent = start_agent(&paths);
    let spiffe_id = "spiffe://example.org/interop/client";
    create_uid_entry(&server, spiffe_id, &agent_id);
    fetch_svid_files(&paths.socket, &tmp.path().join("warmup"));
    (tmp, paths.socket, spiffe_id, server, agent)
}

fn required() -> bool {
    std::env::var("SIGIL_REQUIRE_INTEROP").is_ok()
}

#[test]
fn rust_spiffe_crate_fetches_and_validates() {
    let bin = target_bin_dir().join("interop-rust-spiffe");
    if !bin.exists() {
        assert!(
            !required(),
            "{} is missing: build the workspace first",
            bin.display()
        );
        eprintln!(
            "skipped: {} not built (run `cargo build --workspace`)",
            bin.display()
        );
        return;
    }
    let (_tmp, socket, spiffe_id, _server, _agent) = running_agent();
    let o = Command::new(&bin)
        .arg("interop-audience")
        .env(
            "SPIFFE_ENDPOINT_SOCKET",
            format!("unix://{}", socket.display()),
        )
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "rust spiffe client failed: {}{}",
        stdout(&o),
        stderr(&o)
    );
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["x509_svid"]["spiffe_id"], spiffe_id);
    assert_eq!(report["x509_svid"]["chain_length"], 2);
    assert!(report["x509_bundle_authorities"].as_u64().unwrap() >= 1);
    assert_eq!(report["jwt_svid"]["spiffe_id"], spiffe_id);
    assert_eq!(report["jwt_bundle_found"], true);
    assert_eq!(report["local_validation_spiffe_id"], spiffe_id);
    assert_eq!(report["remote_validation_spiffe_id"], spiffe_id);
    assert_eq!(report["wrong_audience_refused"], true);
    assert_eq!(report["tampered_refused"], true);
    assert_eq!(report["tampered_refused_locally"], true);
}

#[test]
fn py_spiffe_on_grpcio_fetches_and_validates() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../interop/python");
    let python = std::env::var("SIGIL_INTEROP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join(".venv/bin/python"));
    if !python.exists() {
        assert!(
            !required(),
            "{} is missing: run interop/python/setup.sh",
            python.display()
        );
        eprintln!("skipped: no py-spiffe venv (run interop/python/setup.sh)");
        return;
    }
    let (_tmp, socket, spiffe_id, _server, _agent) = running_agent();
    let o = Command::new(&python)
        .arg(root.join("pyspiffe_client.py"))
        .args(["--audience", "interop-audience"])
        .env(
            "SPIFFE_ENDPOINT_SOCKET",
            format!("unix://{}", socket.display()),
        )
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "py-spiffe client failed: {}{}",
        stdout(&o),
        stderr(&o)
    );
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["x509_svid"]["spiffe_id"], spiffe_id);
    assert_eq!(report["x509_svid"]["chain_length"], 2);
    assert_eq!(report["x509_bundles"]["example.org"], 1, "{report}");
    assert_eq!(report["jwt_svid"]["spiffe_id"], spiffe_id);
    assert_eq!(report["validated_spiffe_id"], spiffe_id);
    assert_eq!(report["locally_validated_spiffe_id"], spiffe_id);
    assert!(report["wrong_audience_error"].is_string(), "{report}");
    assert!(
        report["tampered_errors"]["workload_api"].is_string(),
        "{report}"
    );
    assert!(report["tampered_errors"]["local"].is_string(), "{report}");
}
