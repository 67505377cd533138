//! Interop: clients nobody on the project wrote, used unmodified against a real agent — the Rust
//! `spiffe` crate (interop/rust-spiffe) and py-spiffe 0.3.2 on grpcio (interop/python). Each also
//! refuses, through ValidateJWTSVID and locally, every token of the JWT refusal matrix (tokens
//! that parse but are bad in exactly one way), after accepting the genuine token.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::*;

const AUDIENCE: &str = "interop-audience";

/// Environment variable through which the clients receive the refusal matrix.
const REFUSAL_CASES_ENV: &str = "SIGIL_INTEROP_REFUSAL_CASES";

/// A server, an agent and an entry for this uid, and the refusal matrix built from a JWT-SVID the
/// agent issued to this uid for [`AUDIENCE`].
struct RunningAgent {
    socket: PathBuf,
    spiffe_id: &'static str,
    refusal_cases: Vec<sigil_keys::jwt_forgery::RefusalCase>,
    _server: TestServer,
    _agent: Daemon,
    _tmp: tempfile::TempDir,
}

fn running_agent() -> RunningAgent {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(tmp.path());
    let (token, agent_id) = server.join_token("10m");
    let paths = agent_config(&tmp.path().join("agent"), &server, Some(&token));
    let agent = start_agent(&paths);
    let spiffe_id = "spiffe://example.org/interop/client";
    create_uid_entry(&server, spiffe_id, &agent_id);
    fetch_svid_files(&paths.socket, &tmp.path().join("warmup"));
    let jwt = workload(&paths.socket, &["jwt", "fetch", "--audience", AUDIENCE]);
    assert!(jwt.status.success(), "jwt fetch: {}", stderr(&jwt));
    let refusal_cases = server.jwt_refusal_matrix(stdout(&jwt).trim(), AUDIENCE);
    RunningAgent {
        socket: paths.socket,
        spiffe_id,
        refusal_cases,
        _server: server,
        _agent: agent,
        _tmp: tmp,
    }
}

fn client_command(program: &Path, agent: &RunningAgent) -> Command {
    let mut command = Command::new(program);
    command
        .env(
            "SPIFFE_ENDPOINT_SOCKET",
            format!("unix://{}", agent.socket.display()),
        )
        .env(REFUSAL_CASES_ENV, refusal_cases_json(&agent.refusal_cases));
    command
}

/// Every case of the matrix is in `refusals` (the client's report), refused through the Workload
/// API with INVALID_ARGUMENT and the agent's reason for its check, and refused locally.
fn assert_every_case_refused(
    agent: &RunningAgent,
    refusals: &serde_json::Value,
    invalid_argument: &str,
) {
    for case in &agent.refusal_cases {
        let outcome = &refusals[case.name];
        let remote = outcome["workload_api"].as_str().unwrap_or_else(|| {
            panic!(
                "{}: accepted through ValidateJWTSVID: {refusals:#}",
                case.name
            )
        });
        let reason = agent_refusal_reason(case.guarded_by);
        assert!(
            remote.contains(invalid_argument)
                && remote.contains("invalid JWT-SVID")
                && remote.contains(reason),
            "{}: expected the agent's {invalid_argument} for `{reason}`, got: {remote}",
            case.name
        );
        assert!(
            outcome["local"].is_string(),
            "{}: accepted by local validation: {refusals:#}",
            case.name
        );
    }
}

#[test]
fn rust_spiffe_crate_fetches_validates_and_refuses_forged_jwts() {
    let bin = target_bin_dir().join("interop-rust-spiffe");
    if !bin.exists() {
        missing_prerequisite(&format!(
            "{} is not built (run `cargo build -p interop-rust-spiffe`)",
            bin.display()
        ));
        return;
    }
    let agent = running_agent();
    let o = client_command(&bin, &agent).arg(AUDIENCE).output().unwrap();
    assert!(
        o.status.success(),
        "rust spiffe client failed: {}{}",
        stdout(&o),
        stderr(&o)
    );
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let spiffe_id = agent.spiffe_id;
    assert_eq!(report["x509_svid"]["spiffe_id"], spiffe_id);
    assert_eq!(report["x509_svid"]["chain_length"], 2);
    assert!(report["x509_bundle_authorities"].as_u64().unwrap() >= 1);
    assert_eq!(report["jwt_svid"]["spiffe_id"], spiffe_id);
    assert_eq!(report["jwt_bundle_found"], true);
    // Positive first: the genuine token validates locally and through the API.
    assert_eq!(report["local_validation_spiffe_id"], spiffe_id);
    assert_eq!(report["remote_validation_spiffe_id"], spiffe_id);
    assert_eq!(report["wrong_audience_refused"], true);
    assert_every_case_refused(&agent, &report["refusals"], "invalid_argument");
}

#[test]
fn py_spiffe_on_grpcio_fetches_validates_and_refuses_forged_jwts() {
    let Some(python) = pyspiffe_python() else {
        return;
    };
    let agent = running_agent();
    let o = client_command(&python, &agent)
        .arg(pyspiffe_dir().join("pyspiffe_client.py"))
        .args(["--audience", AUDIENCE])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "py-spiffe client failed: {}{}",
        stdout(&o),
        stderr(&o)
    );
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let spiffe_id = agent.spiffe_id;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["x509_svid"]["spiffe_id"], spiffe_id);
    assert_eq!(report["x509_svid"]["chain_length"], 2);
    assert_eq!(report["x509_bundles"]["example.org"], 1, "{report}");
    assert_eq!(report["jwt_svid"]["spiffe_id"], spiffe_id);
    // Positive first: the genuine token validates through the API and locally.
    assert_eq!(report["validated_spiffe_id"], spiffe_id);
    assert_eq!(report["locally_validated_spiffe_id"], spiffe_id);
    assert!(report["wrong_audience_error"].is_string(), "{report}");
    assert_every_case_refused(&agent, &report["refusals"], "INVALID_ARGUMENT");
}
