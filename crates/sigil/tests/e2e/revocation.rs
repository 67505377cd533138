//! Per-credential revocation with real processes, seen by a third-party client (py-spiffe,
//! unmodified, with `cryptography` checking the CRLs): `sigil svid revoke --serial` makes the
//! agent replace the workload's X509-SVID at once and puts the old serial in a CRL signed by its
//! issuer; `sigil svid revoke --jti` makes ValidateJWTSVID refuse the token and the agent stop
//! serving it from its cache. Revoking a serial the server never issued is one clear error that
//! changes nothing.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

/// Only ever a failure bound.
const PATIENCE: Duration = Duration::from_secs(30);
const WORKLOAD: &str = "spiffe://example.org/revoked";
const AUDIENCE: &str = "spiffe://example.org/relying-party";

/// `interop/python/pyspiffe_revocation.py MODE ARGS…` against the agent at `socket`.
fn pyspiffe(python: &Path, socket: &Path, args: &[&str]) -> Value {
    pyspiffe_json(python, socket, "pyspiffe_revocation.py", args)
}

/// `sigil svid revoke ARGS… --output json`, which must succeed.
fn revoke(server: &TestServer, args: &[&str]) -> Value {
    let mut all = vec!["svid", "revoke"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--output", "json"]);
    let o = server.admin(&all);
    assert!(o.status.success(), "svid revoke {args:?}: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// `sigil svid revocations --output json`.
fn revocations(server: &TestServer) -> Vec<Value> {
    let o = server.admin(&["svid", "revocations", "--output", "json"]);
    assert!(o.status.success(), "svid revocations: {}", stderr(&o));
    let list: Value = serde_json::from_slice(&o.stdout).unwrap();
    list["revocations"].as_array().unwrap().clone()
}

#[test]
fn revoked_svids_reach_a_py_spiffe_workload() {
    let Some(python) = pyspiffe_python() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(tmp.path());
    let (token, agent_id) = server.join_token("10m");
    let paths = agent_config(&tmp.path().join("agent"), &server, Some(&token));
    let _agent = start_agent(&paths);
    create_uid_entry(&server, WORKLOAD, &agent_id);
    let watch = PySpiffeWatch::start(&paths.socket).expect("py-spiffe watcher");
    let first = watch.next();
    assert_eq!(
        first["spiffe_ids"],
        serde_json::json!([WORKLOAD]),
        "{first}"
    );
    let old_serial = first["serials"][0].as_str().unwrap().to_owned();

    // Before: the CRLs are there (root and intermediate), signed, and list nothing.
    let before = pyspiffe(&python, &paths.socket, &["crl"]);
    assert_eq!(before["leaf_serial"], old_serial.as_str(), "{before}");
    let crls = before["crls"].as_array().unwrap();
    assert_eq!(crls.len(), 2, "{before}");
    assert!(crls.iter().all(|c| c["revoked"] == serde_json::json!([])));
    assert!(
        crls.iter().any(|c| c["signed_by_leaf_issuer"] == true),
        "no CRL from the leaf's issuer: {before}"
    );
    assert!(crls.iter().any(|c| c["signed_by_root"] == true), "{before}");

    // Revoke the X509-SVID by its serial, as openssl prints it (upper case, colons).
    let openssl_style = sigil_keys::digest::from_hex(&old_serial)
        .unwrap()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    let started = Instant::now();
    let revoked = revoke(
        &server,
        &["--serial", &openssl_style, "--reason", "key leaked"],
    );
    assert_eq!(revoked["kind"], "x509_svid", "{revoked}");
    assert_eq!(revoked["id"], old_serial.as_str(), "{revoked}");
    assert_eq!(revoked["spiffe_id"], WORKLOAD, "{revoked}");

    // The open stream carries a replacement at once.
    let replaced = loop {
        let event = watch.next();
        assert_eq!(event["event"], "update", "{event}");
        if event["serials"][0] != old_serial.as_str() {
            break event;
        }
    };
    eprintln!(
        "X509-SVID replaced {:?} after the revocation",
        started.elapsed()
    );
    assert_eq!(replaced["spiffe_ids"], serde_json::json!([WORKLOAD]));

    // And the old serial is in a CRL that verifies under the old leaf's issuer.
    let after = wait_for(PATIENCE, "the revoked serial in a CRL", || {
        let got = pyspiffe(&python, &paths.socket, &["crl"]);
        got["crls"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["revoked"] == serde_json::json!([old_serial.clone()]))
            .then_some(got)
    });
    let listing: Vec<&Value> = after["crls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| !c["revoked"].as_array().unwrap().is_empty())
        .collect();
    assert_eq!(listing.len(), 1, "{after}");
    assert_eq!(listing[0]["signed_by_leaf_issuer"], true, "{after}");
    assert_ne!(after["leaf_serial"], old_serial.as_str());

    // JWT-SVID: valid, revoked by jti, then refused by ValidateJWTSVID; the agent's cache does
    // not hand the revoked token out again.
    let jwt = pyspiffe(&python, &paths.socket, &["jwt", "--audience", AUDIENCE]);
    let token = jwt["token"].as_str().unwrap().to_owned();
    let jti = jwt["jti"].as_str().unwrap().to_owned();
    let valid = pyspiffe(
        &python,
        &paths.socket,
        &["validate", "--audience", AUDIENCE, "--token", &token],
    );
    assert_eq!(valid["valid"], true, "{valid}");
    let cached = pyspiffe(&python, &paths.socket, &["jwt", "--audience", AUDIENCE]);
    assert_eq!(cached["jti"], jti.as_str(), "served from the cache");
    revoke(&server, &["--jti", &jti]);
    let refused = wait_for(
        PATIENCE,
        "ValidateJWTSVID to refuse the revoked token",
        || {
            let got = pyspiffe(
                &python,
                &paths.socket,
                &["validate", "--audience", AUDIENCE, "--token", &token],
            );
            (got["valid"] == false).then_some(got)
        },
    );
    assert!(
        refused["error"].as_str().unwrap().contains("revoked"),
        "{refused}"
    );
    let fresh = pyspiffe(&python, &paths.socket, &["jwt", "--audience", AUDIENCE]);
    assert_ne!(
        fresh["jti"],
        jti.as_str(),
        "the revoked token was served again"
    );
    let fresh_valid = pyspiffe(
        &python,
        &paths.socket,
        &[
            "validate",
            "--audience",
            AUDIENCE,
            "--token",
            fresh["token"].as_str().unwrap(),
        ],
    );
    assert_eq!(fresh_valid["valid"], true, "{fresh_valid}");

    let listed = revocations(&server);
    assert_eq!(listed.len(), 2, "{listed:?}");

    // A serial this server never issued: one clear line, non-zero exit, nothing changed.
    let unknown = server.admin(&[
        "svid",
        "revoke",
        "--serial",
        "7fffffffffffffffffffffffffffffff",
    ]);
    assert_one_line_error(&unknown, "7fffffffffffffffffffffffffffffff");
    assert_eq!(revocations(&server).len(), 2);
}
