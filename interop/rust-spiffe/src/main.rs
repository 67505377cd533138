//! Interop client: the third-party Rust `spiffe` crate, used unmodified through its public API
//! against whatever Workload API `SPIFFE_ENDPOINT_SOCKET` names. Prints a JSON report and exits
//! non-zero if any step fails; the end-to-end tests run it against a real Sigil agent.
//!
//! Usage: `interop-rust-spiffe AUDIENCE`

use std::process::ExitCode;

use serde_json::json;
use spiffe::{JwtSvid, WorkloadApiClient};

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

    // Negative checks: a wrong audience and a tampered token must both be refused.
    let wrong_audience = client
        .validate_jwt_token("not-the-audience", jwt.token())
        .await
        .is_err();
    let tampered_token = tamper(jwt.token());
    let tampered = client
        .validate_jwt_token(audience, &tampered_token)
        .await
        .is_err();
    let tampered_local =
        JwtSvid::parse_and_validate(&tampered_token, &jwt_bundles, &[audience]).is_err();

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
        "tampered_refused": tampered,
        "tampered_refused_locally": tampered_local,
    }))
}

/// Flips one character of the payload, keeping the token well-formed.
fn tamper(token: &str) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    if let Some(payload) = parts.get_mut(1) {
        let flipped: String = payload
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if i == 5 {
                    if c == 'A' { 'B' } else { 'A' }
                } else {
                    c
                }
            })
            .collect();
        *payload = flipped;
    }
    parts.join(".")
}
