//! Forced rotation with real processes, seen by a third-party client (py-spiffe, unmodified):
//! `sigil authority prepare|activate|taint|revoke` on the intermediate, the root and the JWT
//! key. Tainting makes the agent replace at once what the tainted key signed (the workload's
//! open X.509 stream carries a chain under another intermediate; its next JWT-SVID is signed by
//! another key although the old one was cached); revoking takes the key out of the bundle the
//! workload holds. And an agent that was stopped while keys rotated catches up when it starts
//! again, without attesting again.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

/// Only ever a failure bound.
const PATIENCE: Duration = Duration::from_secs(30);
const WORKLOAD: &str = "spiffe://example.org/rotated";
const AUDIENCE: &str = "spiffe://example.org/relying-party";

/// A server and an agent under `dir`, serving [`WORKLOAD`] to this uid (fetched once).
fn node(dir: &Path) -> (TestServer, AgentPaths, Daemon) {
    let server = TestServer::start(dir);
    let (token, agent_id) = server.join_token("10m");
    let paths = agent_config(&dir.join("agent"), &server, Some(&token));
    let agent = start_agent(&paths);
    create_uid_entry(&server, WORKLOAD, &agent_id);
    fetch_svid_files(&paths.socket, &dir.join("warmup"));
    (server, paths, agent)
}

/// `sigil authority list --output json`: every authority.
fn authorities(server: &TestServer) -> Vec<Value> {
    let o = server.admin(&["authority", "list", "--output", "json"]);
    assert!(o.status.success(), "authority list: {}", stderr(&o));
    let list: Value = serde_json::from_slice(&o.stdout).unwrap();
    list["authorities"].as_array().unwrap().clone()
}

/// The id of the one authority of `kind` in `state`.
fn the(server: &TestServer, kind: &str, state: &str) -> String {
    let found: Vec<String> = authorities(server)
        .iter()
        .filter(|a| a["kind"] == kind && a["state"] == state)
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(found.len(), 1, "one {state} {kind}: {found:?}");
    found.into_iter().next().unwrap()
}

/// SHA-256 (hex) of the certificate of authority `id`, as py-spiffe's watcher reports it.
fn fingerprint(server: &TestServer, id: &str) -> String {
    let all = authorities(server);
    let a = all.iter().find(|a| a["id"] == id).unwrap();
    let der = sigil_keys::pem::decode_all("CERTIFICATE", a["certificate_pem"].as_str().unwrap())
        .unwrap()
        .remove(0);
    sigil_keys::sha256_hex(&der)
}

/// Runs `sigil authority …`, which must succeed.
fn authority(server: &TestServer, args: &[&str]) -> Value {
    let mut all = vec!["authority"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--output", "json"]);
    let o = server.admin(&all);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Prepares a successor of `kind` and activates it once it has been published (the server
/// refuses activation in the second of preparation); returns the new id and the one it replaced.
fn rotate(server: &TestServer, kind: &str) -> (String, String) {
    let old = the(server, kind, "active");
    let new = authority(server, &["prepare", "--kind", kind])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let start = Instant::now();
    loop {
        let o = server.admin(&["authority", "activate", "--id", &new]);
        if o.status.success() {
            break;
        }
        assert!(
            stderr(&o).contains("not yet published") && start.elapsed() < PATIENCE,
            "activate: {}",
            stderr(&o)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(the(server, kind, "active"), new);
    assert_eq!(the(server, kind, "old"), old);
    (new, old)
}

/// One JWT-SVID and the JWT bundle as py-spiffe sees them (interop/python/pyspiffe_jwt.py).
fn pyspiffe_jwt(python: &Path, socket: &Path) -> Value {
    pyspiffe_json(python, socket, "pyspiffe_jwt.py", &["--audience", AUDIENCE])
}

/// Waits for the watcher's next update that satisfies `done`.
fn update_where(watch: &PySpiffeWatch, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let event = watch.next();
        assert_eq!(
            event["event"], "update",
            "while waiting for {what}: {event}"
        );
        if done(&event) {
            eprintln!("{what}: {:?} after the command", start.elapsed());
            return event;
        }
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn taint_and_revoke_reach_a_py_spiffe_workload() {
    let Some(python) = pyspiffe_python() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (server, paths, _agent) = node(tmp.path());
    let watch = PySpiffeWatch::start(&paths.socket).expect("py-spiffe watcher");
    let first = watch.next();
    assert_eq!(
        first["spiffe_ids"],
        serde_json::json!([WORKLOAD]),
        "{first}"
    );
    let intermediate = the(&server, "x509_intermediate", "active");
    assert_eq!(
        strings(&first["issuers"]),
        [fingerprint(&server, &intermediate)]
    );

    // JWT key: the token is cached by the agent; tainting its key makes the agent drop it.
    let before = pyspiffe_jwt(&python, &paths.socket);
    assert_eq!(before["valid"], true, "{before}");
    let (jwt_new, jwt_old) = rotate(&server, "jwt");
    assert_eq!(before["kid"], jwt_old.as_str());
    let cached = pyspiffe_jwt(&python, &paths.socket);
    assert_eq!(
        cached["kid"],
        jwt_old.as_str(),
        "served from the cache: {cached}"
    );
    authority(&server, &["taint", "--id", &jwt_old]);
    let after_taint = wait_for(PATIENCE, "a JWT-SVID signed by the new key", || {
        let got = pyspiffe_jwt(&python, &paths.socket);
        (got["kid"] == jwt_new.as_str()).then_some(got)
    });
    assert_eq!(after_taint["valid"], true, "{after_taint}");
    assert!(
        strings(&after_taint["bundle_kids"]).contains(&jwt_old),
        "tainted keys stay trusted"
    );
    authority(&server, &["revoke", "--id", &jwt_old]);
    let after_revoke = wait_for(PATIENCE, "the revoked key out of the JWT bundle", || {
        let got = pyspiffe_jwt(&python, &paths.socket);
        (!strings(&got["bundle_kids"]).contains(&jwt_old)).then_some(got)
    });
    assert_eq!(
        strings(&after_revoke["bundle_kids"]),
        std::slice::from_ref(&jwt_new)
    );
    assert_eq!(after_revoke["valid"], true, "{after_revoke}");

    // Intermediate: activating a successor changes nothing the workload holds; tainting the old
    // one makes the agent re-sign at once under the new one.
    let (int_new, int_old) = rotate(&server, "x509_intermediate");
    assert_eq!(int_old, intermediate);
    authority(&server, &["taint", "--id", &int_old]);
    let new_fp = fingerprint(&server, &int_new);
    update_where(&watch, "an SVID under the new intermediate", |u| {
        strings(&u["issuers"]) == [new_fp.clone()]
    });

    // Root: its successor is published first (two roots in the workload's bundle), then
    // activated; tainting the old root replaces the intermediate under it at once, and revoking
    // it leaves only the new root in the bundle.
    let root = the(&server, "x509_root", "active");
    let old_root_fp = fingerprint(&server, &root);
    let (root_new, root_old) = rotate(&server, "x509_root");
    assert_eq!(root_old, root);
    let new_root_fp = fingerprint(&server, &root_new);
    update_where(&watch, "both roots in the bundle", |u| {
        let roots = strings(&u["roots"]);
        roots.contains(&old_root_fp) && roots.contains(&new_root_fp)
    });
    authority(&server, &["taint", "--id", &root_old]);
    let under_new_root = wait_for(PATIENCE, "an intermediate under the new root", || {
        let active = the(&server, "x509_intermediate", "active");
        (active != int_new).then_some(active)
    });
    let fp = fingerprint(&server, &under_new_root);
    update_where(
        &watch,
        "an SVID under the intermediate of the new root",
        |u| strings(&u["issuers"]) == [fp.clone()],
    );
    authority(&server, &["revoke", "--id", &root_old]);
    update_where(&watch, "the revoked root out of the bundle", |u| {
        strings(&u["roots"]) == [new_root_fp.clone()]
    });
}

#[test]
fn an_agent_stopped_while_keys_rotated_catches_up_without_attesting_again() {
    let Some(python) = pyspiffe_python() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (server, paths, mut agent) = node(tmp.path());
    let before = pyspiffe_jwt(&python, &paths.socket);
    let status = agent.terminate().expect("the agent stops on SIGTERM");
    assert!(status.success(), "agent exit: {status}");

    // While it is away: a new intermediate and a new JWT key; the old key revoked.
    let (int_new, int_old) = rotate(&server, "x509_intermediate");
    authority(&server, &["taint", "--id", &int_old]);
    let (jwt_new, jwt_old) = rotate(&server, "jwt");
    assert_eq!(before["kid"], jwt_old.as_str());
    authority(&server, &["taint", "--id", &jwt_old]);
    authority(&server, &["revoke", "--id", &jwt_old]);

    // The same agent, from its data directory (its join token is spent: it cannot re-attest).
    let _agent = start_agent(&paths);
    let watch = PySpiffeWatch::start(&paths.socket).expect("py-spiffe watcher");
    let new_fp = fingerprint(&server, &int_new);
    update_where(
        &watch,
        "an SVID under the intermediate rotated while away",
        |u| strings(&u["issuers"]) == [new_fp.clone()],
    );
    let after = wait_for(PATIENCE, "a JWT-SVID from the new key", || {
        let got = pyspiffe_jwt(&python, &paths.socket);
        (got["kid"] == jwt_new.as_str()).then_some(got)
    });
    assert_eq!(after["valid"], true, "{after}");
    assert_eq!(strings(&after["bundle_kids"]), [jwt_new]);
}
