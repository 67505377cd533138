//! py-spiffe (interop/python: the PyPI `spiffe` package on grpcio, pinned and unmodified) against
//! the real Workload API server on a Unix socket: every public Workload API call, local JWT-SVID
//! validation with the fetched bundles, and proof that it works only because of the
//! `:authority` adapter (grpcio sends the percent-encoded socket path, which h2 refuses); and
//! ValidateJWTSVID refusing every token of the JWT refusal matrix (tokens that parse but are bad
//! in exactly one way) after accepting the genuine one.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a broken assumption must fail the test loudly"
)]

mod workload_api_fixture;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use sigil_agent::workload::ServeOptions;
use sigil_keys::jwt_forgery::{RefusalCase, refusal_matrix};
use sigil_spiffe::{Clock as _, SystemClock};
use workload_api_fixture::{Harness, my_uid_selector};

const AUDIENCE: &str = "spiffe://example.org/interop";

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../interop/python")
}

/// Whether a missing prerequisite must fail the test instead of skipping it: on CI (`CI=true`)
/// or when `SIGIL_REQUIRE_INTEROP` is set.
fn prerequisites_required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
        || std::env::var_os("SIGIL_REQUIRE_INTEROP").is_some()
}

/// The venv's python, after running `setup.sh` once per test binary; `None` (test skipped with a
/// message) only if the venv is missing, `setup.sh` cannot create it, and skipping is allowed
/// ([`prerequisites_required`] is false).
fn venv_python() -> Option<PathBuf> {
    static PYTHON: OnceLock<Option<PathBuf>> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let dir = interop_dir();
            let python = dir.join(".venv/bin/python");
            let setup = std::process::Command::new("bash").arg(dir.join("setup.sh")).status();
            match setup {
                Ok(s) if s.success() => Some(python),
                _ if python.exists() => panic!("interop/python/setup.sh failed on an existing venv"),
                other => {
                    assert!(
                        !prerequisites_required(),
                        "interop/python/setup.sh failed ({other:?}); required because CI=true or \
                         SIGIL_REQUIRE_INTEROP is set"
                    );
                    eprintln!("SKIPPED: interop/python/.venv is missing and setup.sh cannot create it ({other:?})");
                    None
                }
            }
        })
        .clone()
}

/// Environment variable through which the client receives the refusal matrix.
const REFUSAL_CASES_ENV: &str = "SIGIL_INTEROP_REFUSAL_CASES";

/// The refusal matrix for `sub` in the harness's home trust domain, built from a genuine token
/// signed by the home JWT authority for [`AUDIENCE`].
fn refusal_cases(h: &Harness, sub: &str) -> Vec<RefusalCase> {
    let now = SystemClock.unix_secs();
    let genuine = h.home.sign_jwt(sub, &[AUDIENCE.to_owned()], now + 300);
    refusal_matrix(&genuine, &h.home.jwt_key, AUDIENCE, now).unwrap()
}

/// Runs `pyspiffe_client.py` against the harness and returns its JSON report.
async fn run_pyspiffe(python: &Path, h: &Harness) -> Value {
    let cases: serde_json::Map<String, Value> =
        refusal_cases(h, "spiffe://example.org/interop/python")
            .into_iter()
            .map(|c| (c.name.to_owned(), Value::String(c.token)))
            .collect();
    let child = tokio::process::Command::new(python)
        .arg(interop_dir().join("pyspiffe_client.py"))
        .args(["--audience", AUDIENCE, "--timeout", "10"])
        .env(
            "SPIFFE_ENDPOINT_SOCKET",
            format!("unix://{}", h.socket.display()),
        )
        .env(REFUSAL_CASES_ENV, Value::Object(cases).to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .expect("py-spiffe client timed out")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}); stdout: {stdout}; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(
        out.status.success(),
        report["ok"] == true,
        "exit status agrees with the report: {report}"
    );
    report
}

async fn harness_with_identity(options: ServeOptions) -> Harness {
    let h = Harness::start(options).await;
    h.publish(vec![h.identity(
        "e1",
        "/interop/python",
        vec![my_uid_selector()],
        "default",
    )]);
    h
}

#[tokio::test]
async fn py_spiffe_uses_every_workload_api_call() {
    let Some(python) = venv_python() else { return };
    let h = harness_with_identity(ServeOptions::default()).await;
    let report = run_pyspiffe(&python, &h).await;
    assert_eq!(report["ok"], true, "{report}");
    let me = "spiffe://example.org/interop/python";
    assert_eq!(report["x509_svid"]["spiffe_id"], me);
    assert_eq!(report["x509_svid"]["chain_length"], 2);
    assert_eq!(report["x509_svids"], serde_json::json!([me]));
    assert_eq!(report["x509_bundles"]["example.org"], 1);
    assert_eq!(report["x509_bundles"]["other.org"], 1);
    assert_eq!(report["jwt_svid"]["spiffe_id"], me);
    assert_eq!(
        report["jwt_svid"]["audience"],
        serde_json::json!([AUDIENCE])
    );
    assert_eq!(
        report["jwt_bundles"]["example.org"],
        serde_json::json!([h.home.kid])
    );
    assert_eq!(
        report["jwt_bundles"]["other.org"],
        serde_json::json!([h.foreign.kid])
    );
    assert_eq!(report["validated_spiffe_id"], me);
    assert_eq!(report["locally_validated_spiffe_id"], me);
    let refusal = report["wrong_audience_error"].as_str().unwrap();
    assert!(refusal.contains("INVALID_ARGUMENT"), "{refusal}");
    // Every token of the matrix is refused by ValidateJWTSVID for its own reason, and locally.
    let refusals = &report["refusals"];
    for case in refusal_cases(&h, me) {
        let reason = match case.guarded_by {
            "signature" => "signature does not verify",
            "alg" => "unsupported algorithm",
            "exp" => "expired",
            "aud" => "audience mismatch",
            other => panic!("unknown check `{other}`"),
        };
        let remote = refusals[case.name]["workload_api"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: accepted by ValidateJWTSVID: {refusals:#}", case.name));
        assert!(
            remote.contains("INVALID_ARGUMENT")
                && remote.contains("invalid JWT-SVID")
                && remote.contains(reason),
            "{}: expected INVALID_ARGUMENT for `{reason}`, got: {remote}",
            case.name
        );
        assert!(
            refusals[case.name]["local"].is_string(),
            "{}: accepted locally: {refusals:#}",
            case.name
        );
    }
    h.stop().await.unwrap();
}

#[tokio::test]
async fn py_spiffe_works_only_because_of_the_authority_adapter() {
    let Some(python) = venv_python() else { return };
    // With the adapter (the default) the first call succeeds...
    let with = harness_with_identity(ServeOptions::default()).await;
    let report = run_pyspiffe(&python, &with).await;
    assert!(
        report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "fetch_x509_svid"),
        "{report}"
    );
    with.stop().await.unwrap();

    // ...and without it grpcio's percent-encoded `:authority` is refused by h2 on the first call.
    let without = harness_with_identity(ServeOptions {
        rewrite_authority: false,
        ..ServeOptions::default()
    })
    .await;
    let report = run_pyspiffe(&python, &without).await;
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["failed_step"], "fetch_x509_svid", "{report}");
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains("RST_STREAM"),
        "expected h2's RST_STREAM PROTOCOL_ERROR, got: {error}"
    );
    without.stop().await.unwrap();
}

#[tokio::test]
async fn py_spiffe_sees_permission_denied_without_an_identity() {
    let Some(python) = venv_python() else { return };
    let h = Harness::start(ServeOptions::default()).await;
    h.publish(vec![h.identity(
        "e1",
        "/w",
        vec![workload_api_fixture::foreign_selector()],
        "",
    )]);
    let report = run_pyspiffe(&python, &h).await;
    assert_eq!(report["failed_step"], "fetch_x509_svid", "{report}");
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("PERMISSION_DENIED"),
        "{report}"
    );
    h.stop().await.unwrap();
}
