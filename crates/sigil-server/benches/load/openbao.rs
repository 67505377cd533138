//! The load bench's OpenBao phase: OpenBao's PKI engine issuing EC P-256 certificates
//! (`no_store`) from a `bao server -dev` child on 127.0.0.1, timed beside Sigil's agent API in
//! the same run, on the same cores.
//!
//! Enabled by `SIGIL_LOAD_OPENBAO=<path of the bao binary>` (`scripts/openbao.sh` installs it and
//! prints that path). The dev server keeps its storage in memory and listens on plain HTTP; the
//! bench mounts `pki`, generates an internal EC P-256 root, creates a role (`key_type=ec`,
//! `key_bits=256`, `no_store=true`, any name, SPIFFE URI SANs, 1 h TTL), then, each for
//! `SIGIL_LOAD_SECS` with `SIGIL_LOAD_CALLERS` keep-alive HTTP/1.1 connections:
//! - `POST /v1/pki/issue/<role>`: OpenBao generates the key pair and signs;
//! - `POST /v1/pki/sign/<role>` with one pre-made CSR: OpenBao verifies the CSR and signs, the
//!   work Sigil's agent API does.
//!
//! Every response must be a 200 whose body carries a PEM certificate. The child is killed when
//! the phase ends or panics.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http::StatusCode;
use serde_json::{Value, json};
use sigil_keys::PrivateKey;
use tokio::task::JoinSet;

use crate::openbao_dev::DevServer;

/// The dev server's root token, given to it on the command line.
const ROOT_TOKEN: &str = "sigil-load-bench";
const ROLE: &str = "svid";
/// The SPIFFE ID that `issue` puts in the URI SAN, as Sigil's agent API does.
const SPIFFE_ID: &str = "spiffe://example.org/a0/w0";

/// Sigil's figures from the same run, to print beside OpenBao's.
pub struct Sigil {
    /// X509-SVIDs per second over the agent API.
    pub api_rate: f64,
    /// X509-SVIDs per second from `sign_x509_svid` on every core.
    pub ceiling_rate: f64,
    /// X509-SVIDs per CPU-second the server used over the agent API.
    pub api_per_cpu: f64,
    /// `sign_x509_svid` calls per CPU-second.
    pub ceiling_per_cpu: f64,
}

/// Runs the OpenBao phase when `SIGIL_LOAD_OPENBAO` names the `bao` binary, or prints how to
/// enable it.
pub async fn compare(secs: u64, callers: usize, cores: usize, sigil: &Sigil) {
    let Some(binary) = std::env::var_os("SIGIL_LOAD_OPENBAO").map(PathBuf::from) else {
        println!(
            "5b. OpenBao PKI `issue`/`sign`: skipped; set SIGIL_LOAD_OPENBAO to the `bao` binary (`SIGIL_LOAD_OPENBAO=\"$(scripts/openbao.sh)\"` installs it and prints its path)"
        );
        return;
    };
    let server = DevServer::start(&binary, ROOT_TOKEN).await;
    let version = setup(&server).await;
    let duration = Duration::from_secs(secs);

    let issue_body = json!({ "uri_sans": SPIFFE_ID, "ttl": "1h" });
    let (issue_rate, issue_per_cpu) = hammer(
        &server,
        &format!("/v1/pki/issue/{ROLE}"),
        &issue_body,
        callers,
        duration,
    )
    .await;
    let sign_body = json!({ "csr": csr_pem(), "ttl": "1h" });
    let (sign_rate, sign_per_cpu) = hammer(
        &server,
        &format!("/v1/pki/sign/{ROLE}"),
        &sign_body,
        callers,
        duration,
    )
    .await;
    drop(server);

    let per_core = |rate: f64| rate / cores as f64;
    println!(
        "5b. OpenBao {version} PKI (`bao server -dev`: in-memory storage, plain HTTP; EC P-256 root and role, `no_store`), {callers} callers, {secs} s each, sharing the {cores} cores with this process:"
    );
    println!(
        "    `issue` (OpenBao generates the key): {issue_rate:.0} certificates/s = {:.0} per core; ratio to the ceiling {:.2}",
        per_core(issue_rate),
        issue_rate / sigil.ceiling_rate,
    );
    println!(
        "    `sign` (one CSR, as Sigil's agent API): {sign_rate:.0} certificates/s = {:.0} per core; ratio to the ceiling {:.2}",
        per_core(sign_rate),
        sign_rate / sigil.ceiling_rate,
    );
    println!(
        "    per CPU-second of the `bao` process: `issue` {issue_per_cpu:.0}, `sign` {sign_per_cpu:.0} (ratio to the ceiling's {:.0}: {:.2} and {:.2}); Sigil's server {:.0} ({:.2}): {:.2}× OpenBao's `sign`",
        sigil.ceiling_per_cpu,
        issue_per_cpu / sigil.ceiling_per_cpu,
        sign_per_cpu / sigil.ceiling_per_cpu,
        sigil.api_per_cpu,
        sigil.api_per_cpu / sigil.ceiling_per_cpu,
        sigil.api_per_cpu / sign_per_cpu,
    );
    println!(
        "    Sigil's agent API (mTLS gRPC) in this run: {:.0} SVIDs/s = {:.0} per core; ratio to the ceiling {:.2}; {:.2}× OpenBao's `sign`, {:.2}× its `issue`",
        sigil.api_rate,
        per_core(sigil.api_rate),
        sigil.api_rate / sigil.ceiling_rate,
        sigil.api_rate / sign_rate,
        sigil.api_rate / issue_rate,
    );
}

/// Mounts `pki`, generates the EC P-256 root and creates the role; returns OpenBao's version.
async fn setup(server: &DevServer) -> String {
    let mut conn = server.connect().await.unwrap();
    let steps = [
        ("/v1/sys/mounts/pki", json!({ "type": "pki" })),
        (
            "/v1/pki/root/generate/internal",
            json!({
                "common_name": "sigil load bench root",
                "key_type": "ec",
                "key_bits": 256,
                "ttl": "24h",
            }),
        ),
        (
            &format!("/v1/pki/roles/{ROLE}"),
            json!({
                "key_type": "ec",
                "key_bits": 256,
                "no_store": true,
                "allow_any_name": true,
                "require_cn": false,
                "allowed_uri_sans": "spiffe://example.org/*",
                "ttl": "1h",
                "max_ttl": "1h",
            }),
        ),
    ];
    for (path, body) in steps {
        let (status, response) = conn.call("POST", path, Some(&body)).await.unwrap();
        assert!(status.is_success(), "OpenBao `{path}`: {status} {response}");
    }
    conn.version().await
}

/// Certificates per second that `callers` connections obtain from `POST path` in `duration`,
/// each call checked for a 200 and a PEM certificate, and certificates per CPU-second of the
/// `bao` process.
async fn hammer(
    server: &DevServer,
    path: &str,
    body: &Value,
    callers: usize,
    duration: Duration,
) -> (f64, f64) {
    let body = Bytes::from(serde_json::to_vec(body).unwrap());
    let mut conns = Vec::with_capacity(callers);
    for _ in 0..callers {
        conns.push(server.connect().await.unwrap());
    }
    let pid = server.pid().to_string();
    let cpu_start = crate::cpu::process_secs(&pid);
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = JoinSet::new();
    for mut conn in conns {
        let (path, body) = (path.to_owned(), body.clone());
        tasks.spawn(async move {
            let mut issued = 0_u64;
            while Instant::now() < deadline {
                let (status, response) = conn.request("POST", &path, body.clone()).await.unwrap();
                assert_eq!(status, StatusCode::OK, "OpenBao `{path}`: {response}");
                let certificate = response["data"]["certificate"].as_str().unwrap_or("");
                assert!(
                    certificate.starts_with("-----BEGIN CERTIFICATE-----"),
                    "OpenBao `{path}` returned no certificate: {response}"
                );
                issued += 1;
            }
            issued
        });
    }
    let issued: u64 = tasks.join_all().await.into_iter().sum();
    let cpu = crate::cpu::process_secs(&pid) - cpu_start;
    (
        issued as f64 / start.elapsed().as_secs_f64(),
        issued as f64 / cpu,
    )
}

/// A CSR for an EC P-256 key with a SPIFFE URI SAN, PEM-encoded as OpenBao's `sign` takes it.
fn csr_pem() -> String {
    let der = super::support::csr(&PrivateKey::generate().unwrap());
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|l| std::str::from_utf8(l).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
        lines.join("\n")
    )
}
