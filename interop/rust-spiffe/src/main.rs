//! Interop client: the third-party Rust `spiffe` crate, used unmodified through its public API
//! against whatever Workload API `SPIFFE_ENDPOINT_SOCKET` names. Prints a JSON report and exits
//! non-zero if any step fails; the end-to-end tests run it against a real Sigil agent.
//!
//! Usage: `SIGIL_INTEROP_REFUSAL_CASES='{"name":"token",...}' interop-rust-spiffe AUDIENCE`
//!
//! Every token in `SIGIL_INTEROP_REFUSAL_CASES` (built by the test: forged signatures, `alg: none`,
//! HS256, expired, wrong audience) must be refused both through ValidateJWTSVID and by the crate's
//! local validation; the report says how each was refused, or that it was accepted.

use std::collections::BTreeMap;
use std::process::ExitCode;

use serde_json::json;
use spiffe::{JwtSvid, WorkloadApiClient};

/// Environment variable holding the JSON object `{case name: token}` of tokens to refuse.
const REFUSAL_CASES_ENV: &str = "SIGIL_INTEROP_REFUSAL_CASES";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let audience = std::env::args().nth(1).unwrap_or_else(|| "interop".into());
    match run(&audience).await {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(audience: &str) -> Result<serde_json::Value, String> {
    let client = WorkloadApiClient::connect_env()
        .await
        .map_err(|e| format!("connect: {e}"))?;

    let svid = client
        .fetch_x509_svid()
        .await
        .map_err(|e| format!("fetch_x509_svid: {e}"))?;
    let td = svid.spiffe_id().trust_domain().clone();

    let bundles = client
        .fetch_x509_bundles()
        .await
        .map_err(|e| format!("fetch_x509_bundles: {e}"))?;
    let x509_bundle = bundles
        .get(&td)
        .ok_or_else(|| format!("no X.509 bundle for {td}"))?;

    let jwt = client
        .fetch_jwt_svid([audience], None)
        .await
        .map_err(|e| format!("fetch_jwt_svid: {e}"))?;
    let jwt_bundles = client
        .fetch_jwt_bundles()
        .await
        .map_err(|e| format!("fetch_jwt_bundles: {e}"))?;

    // Local validation with the fetched JWT bundles.
    let local = JwtSvid::parse_and_validate(jwt.token(), &jwt_bundles, &[audience])
        .map_err(|e| format!("local JWT-SVID validation: {e}"))?;
    // Validation through the Workload API.
    let remote = client
        .validate_jwt_token(audience, jwt.token())
        .await
        .map_err(|e| format!("ValidateJWTSVID: {e}"))?;

    // Negative checks, each after the positive ones above: the genuine token for a wrong
    // audience, then every token of the refusal matrix, through the API and locally.
    let wrong_audience = client
        .validate_jwt_token("not-the-audience", jwt.token())
        .await
        .is_err();
    let cases: BTreeMap<String, String> = std::env::var(REFUSAL_CASES_ENV)
        .map_err(|_| format!("{REFUSAL_CASES_ENV} is not set"))
        .and_then(|raw| {
            serde_json::from_str(&raw).map_err(|e| format!("{REFUSAL_CASES_ENV}: {e}"))
        })?;
    if cases.is_empty() {
        return Err(format!("{REFUSAL_CASES_ENV} has no cases"));
    }
    let mut refusals = serde_json::Map::new();
    for (name, token) in &cases {
        let remote = client
            .validate_jwt_token(audience, token)
            .await
            .err()
            .map(|e| error_chain(&e));
        let local = JwtSvid::parse_and_validate(token, &jwt_bundles, &[audience])
            .err()
            .map(|e| error_chain(&e));
        refusals.insert(
            name.clone(),
            json!({ "workload_api": remote, "local": local }),
        );
    }

    Ok(json!({
        "x509_svid": {
            "spiffe_id": svid.spiffe_id().to_string(),
            "chain_length": svid.cert_chain().len(),
            "hint": svid.hint(),
        },
        "x509_bundle_authorities": x509_bundle.authorities().len(),
        "jwt_svid": {
            "spiffe_id": jwt.spiffe_id().to_string(),
            "audience": jwt.audience(),
            "key_id": jwt.key_id(),
        },
        "jwt_bundle_found": jwt_bundles.get(&td).is_some(),
        "local_validation_spiffe_id": local.spiffe_id().to_string(),
        "remote_validation_spiffe_id": remote.spiffe_id().to_string(),
        "wrong_audience_refused": wrong_audience,
        "refusals": refusals,
    }))
}

/// `e` and its sources, joined with `: `, so the report carries the server's message.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
