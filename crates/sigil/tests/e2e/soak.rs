//! The rotation soak (issue 13): real processes on low TTLs for minutes, with the server
//! restarted once in the middle, while a workload using py-spiffe (unmodified) verifies every
//! X.509 update it receives against the bundle delivered with it. Every key rotates: the
//! intermediate (60 s) and the JWT key (60 s) several times, the root (150 s) once.
//!
//! Minutes long, so not part of the suite; run it as
//! `cargo test -p sigil --test e2e soak -- --ignored --nocapture` (`SIGIL_SOAK_SECS`, default
//! 200) and record its summary in BENCHMARKS.md.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

const SERVER_TOML: &str = "default_x509_svid_ttl = \"10s\"\nagent_svid_ttl = \"20s\"\n\
    [ca]\nca_ttl = \"60s\"\nroot_ca_ttl = \"150s\"\njwt_key_ttl = \"60s\"\nbundle_refresh_hint = \"5s\"\n";

#[test]
#[ignore = "minutes long: cargo test -p sigil --test e2e soak -- --ignored --nocapture"]
fn soak_every_update_verifies_against_the_bundle_held_while_every_key_rotates() {
    let secs: u64 = std::env::var("SIGIL_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let Some(python) = pyspiffe_python() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut server = TestServer::start_with(tmp.path(), SERVER_TOML);
    let (token, agent_id) = server.join_token("10m");
    let paths = agent_config(&tmp.path().join("agent"), &server, Some(&token));
    let mut agent = start_agent(&paths);
    create_uid_entry(&server, "spiffe://example.org/soak", &agent_id);
    fetch_svid_files(&paths.socket, &tmp.path().join("warmup"));

    let soak = Command::new(python)
        .arg(pyspiffe_dir().join("pyspiffe_soak.py"))
        .args(["--duration", &secs.to_string()])
        .env(
            "SPIFFE_ENDPOINT_SOCKET",
            format!("unix://{}", paths.socket.display()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the py-spiffe soak client");

    std::thread::sleep(Duration::from_secs(secs / 2));
    eprintln!("restarting the server");
    server.restart();

    let out = soak.wait_with_output().expect("soak client");
    assert!(out.status.success(), "soak client failed");
    let summary: Value = serde_json::from_slice(&out.stdout).expect("soak summary JSON");
    eprintln!("soak summary: {summary}");
    let authorities = server.admin(&["bundle", "show"]);
    assert!(authorities.status.success());

    assert_eq!(
        summary["failure_count"], 0,
        "verification failures: {summary}"
    );
    assert_eq!(summary["gaps"], serde_json::json!([]), "gaps: {summary}");
    assert!(
        summary["max_interval"].as_f64().unwrap() <= 10.0,
        "an interval between updates longer than one SVID TTL: {summary}"
    );
    assert!(
        summary["roots_seen"].as_u64().unwrap() >= 2,
        "the root did not roll over: {summary}"
    );
    assert!(
        summary["issuers_seen"].as_u64().unwrap() >= 3,
        "the intermediate did not rotate: {summary}"
    );
    assert!(
        agent.exited().is_none(),
        "the agent stopped:\n{}",
        agent.log()
    );
}
