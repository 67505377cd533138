//! The core path: server CA -> agent -> SPIFFE Workload API -> a workload process, driven only
//! through the CLI and the sockets; plus the refusals (reused/expired join tokens, other uids,
//! JWTs that parse but must be refused) and restarts.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use x509_parser::prelude::*;

use crate::harness::*;

#[test]
fn workload_gets_x509_and_jwt_svids_through_server_agent_and_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(tmp.path());
    let (token, agent_id) = server.join_token("10m");
    let agent_paths = agent_config(&tmp.path().join("agent"), &server, Some(&token));
    let _agent = start_agent(&agent_paths);

    let spiffe_id = "spiffe://example.org/e2e/workload";
    let entry_id = create_uid_entry(&server, spiffe_id, &agent_id);

    // The workload (a separate process of this uid) fetches its SVID and writes the files.
    let out = tmp.path().join("svid");
    let fetched = fetch_svid_files(&agent_paths.socket, &out);
    assert!(stdout(&fetched).contains(spiffe_id), "{}", stdout(&fetched));
    let key_mode = std::fs::metadata(out.join("svid.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(key_mode, 0o600, "svid.key must be private");

    // openssl, strict mode: the chain verifies against the bundle.
    let verify = Command::new("openssl")
        .args(["verify", "-x509_strict", "-CAfile"])
        .arg(out.join("bundle.pem"))
        .arg("-untrusted")
        .arg(out.join("svid.pem"))
        .arg(out.join("svid.pem"))
        .output()
        .expect("openssl must be installed (scripts/test.sh installs it)");
    assert!(
        verify.status.success(),
        "openssl verify failed: {}{}",
        stdout(&verify),
        stderr(&verify)
    );
    assert!(stdout(&verify).contains(": OK"));

    // The leaf profile.
    let pem_text = std::fs::read_to_string(out.join("svid.pem")).unwrap();
    let first_pem = x509_parser::pem::Pem::iter_from_buffer(pem_text.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    let leaf = first_pem.parse_x509().unwrap();
    assert_leaf_profile(&leaf, spiffe_id);

    // JWT-SVID: fetch, validate through the Workload API (positive first), then refuse tokens
    // that parse but are bad in exactly one way each (see `sigil_keys::jwt_forgery`).
    let jwt = workload(&agent_paths.socket, &["jwt", "fetch", "--audience", "db"]);
    assert!(jwt.status.success(), "jwt fetch: {}", stderr(&jwt));
    let token = stdout(&jwt).trim().to_owned();
    assert_eq!(token.split('.').count(), 3);
    assert_jwt_refusal_matrix(&server, &agent_paths.socket, &token, spiffe_id);

    // The agent and entry are visible through the admin CLI.
    let agents = server.admin(&["agent", "list", "--output", "json"]);
    assert!(stdout(&agents).contains(&agent_id), "{}", stdout(&agents));

    // Deleting the entry is pushed to the agent: the workload loses its identity.
    let del = server.admin(&["entry", "delete", "--id", &entry_id]);
    assert!(del.status.success(), "entry delete: {}", stderr(&del));
    wait_for(
        Duration::from_secs(10),
        "the deleted entry to stop being served",
        || {
            let o = workload(&agent_paths.socket, &["svid", "fetch"]);
            (!o.status.success() && stderr(&o).contains("permission denied")).then_some(())
        },
    );
}

fn assert_leaf_profile(leaf: &X509Certificate<'_>, spiffe_id: &str) {
    let san = leaf.subject_alternative_name().unwrap().expect("SAN");
    let uris: Vec<&str> = san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some(*u),
            _ => None,
        })
        .collect();
    assert_eq!(uris, vec![spiffe_id], "exactly one URI SAN");
    let bc = leaf.basic_constraints().unwrap().expect("basicConstraints");
    assert!(!bc.value.ca, "CA must be false");
    let ku = leaf.key_usage().unwrap().expect("keyUsage");
    assert!(ku.critical);
    assert!(ku.value.digital_signature());
    assert!(!ku.value.key_cert_sign());
    let eku = leaf
        .extended_key_usage()
        .unwrap()
        .expect("extendedKeyUsage");
    assert!(eku.value.server_auth && eku.value.client_auth);
    assert!(
        leaf.raw_serial().len() >= 8,
        "serial must carry at least 64 bits"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let nbf = leaf.validity().not_before.timestamp();
    assert!(
        nbf <= now && now - nbf <= 70,
        "NotBefore back-dated by at most 10 s at issuance"
    );
}

/// `sigil jwt validate` accepts `genuine` for its audience `db`, then refuses, each through
/// ValidateJWTSVID and each for the reason its check gives, a token signed by a foreign key with
/// the real `kid`, one with the genuine signature over other claims, `alg: none`, HS256 keyed
/// with the public key (DER and PEM), an expired and a wrong-audience token signed by the real
/// key (read from the server's key directory).
fn assert_jwt_refusal_matrix(server: &TestServer, socket: &Path, genuine: &str, spiffe_id: &str) {
    let ok = workload(
        socket,
        &["jwt", "validate", "--audience", "db", "--token", genuine],
    );
    assert!(ok.status.success(), "jwt validate: {}", stderr(&ok));
    assert!(stdout(&ok).contains(spiffe_id));
    let wrong = workload(
        socket,
        &["jwt", "validate", "--audience", "other", "--token", genuine],
    );
    assert_one_line_error(&wrong, "audience mismatch");

    let cases = server.jwt_refusal_matrix(genuine, "db");
    assert_eq!(cases.len(), 7, "the whole matrix is built");
    for case in &cases {
        let bad = workload(
            socket,
            &[
                "jwt",
                "validate",
                "--audience",
                "db",
                "--token",
                &case.token,
            ],
        );
        assert_one_line_error(&bad, "InvalidArgument");
        let reason = agent_refusal_reason(case.guarded_by);
        assert!(
            stderr(&bad).contains(reason),
            "{}: expected a refusal for `{reason}`, got: {}",
            case.name,
            stderr(&bad)
        );
    }
}

#[test]
fn join_tokens_are_one_time_and_expire() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(tmp.path());

    let (token, _) = server.join_token("10m");
    let first = agent_config(&tmp.path().join("a1"), &server, Some(&token));
    let _a1 = start_agent(&first);

    // The same token on a second node is refused, and the agent exits with one clear line.
    let second = agent_config(&tmp.path().join("a2"), &server, Some(&token));
    let o = sigil(&["agent", "run", "-c", second.config.to_str().unwrap()]);
    assert_one_line_error(&o, "already used");

    // An expired token is refused.
    let (short, _) = server.join_token("1s");
    std::thread::sleep(Duration::from_millis(2100));
    let third = agent_config(&tmp.path().join("a3"), &server, Some(&short));
    let o = sigil(&["agent", "run", "-c", third.config.to_str().unwrap()]);
    assert_one_line_error(&o, "expired");

    // A token that never existed is refused too.
    let fourth = agent_config(&tmp.path().join("a4"), &server, Some("not-a-real-token"));
    let o = sigil(&["agent", "run", "-c", fourth.config.to_str().unwrap()]);
    assert_one_line_error(&o, "not valid");
}

#[test]
fn agent_restarts_from_its_stored_svid_without_a_new_token() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(tmp.path());
    let (token, agent_id) = server.join_token("10m");
    let paths = agent_config(&tmp.path().join("agent"), &server, Some(&token));
    let mut agent = start_agent(&paths);
    create_uid_entry(&server, "spiffe://example.org/e2e/restart", &agent_id);
    fetch_svid_files(&paths.socket, &tmp.path().join("before"));
    let status = agent.terminate().expect("agent stops on SIGTERM");
    assert!(
        status.success(),
        "agent exit status {status}: {}",
        agent.log()
    );
    drop(agent);

    // Same data dir, no token this time.
    let paths = agent_config(&tmp.path().join("agent"), &server, None);
    let _agent = start_agent(&paths);
    let o = fetch_svid_files(&paths.socket, &tmp.path().join("after"));
    assert!(stdout(&o).contains("spiffe://example.org/e2e/restart"));
}

#[test]
fn process_of_another_uid_gets_permission_denied() {
    if !nix::unistd::getuid().is_root() {
        // Switching uid needs root; CI runs as root, so only a developer machine may skip.
        missing_prerequisite("running a workload as another uid needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = TestServer::start(tmp.path());
    let (token, agent_id) = server.join_token("10m");
    let paths = agent_config(&tmp.path().join("agent"), &server, Some(&token));
    std::fs::set_permissions(&paths.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let _agent = start_agent(&paths);
    create_uid_entry(&server, "spiffe://example.org/e2e/root-only", &agent_id);
    // Positive first: this uid is served.
    fetch_svid_files(&paths.socket, &tmp.path().join("mine"));

    // A copy of the binary in the world-readable test directory: the checkout (and its target
    // directory) may sit below a directory `nobody` cannot enter.
    let binary = tmp.path().join("sigil");
    std::fs::copy(sigil_bin(), &binary).unwrap();
    let other = Command::new(&binary)
        .args(["svid", "fetch"])
        .env(
            "SPIFFE_ENDPOINT_SOCKET",
            format!("unix://{}", paths.socket.display()),
        )
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run as nobody");
    assert_one_line_error(&other, "permission denied");
}

#[test]
fn server_restart_keeps_the_ca_and_agents_reconnect_on_their_own() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(tmp.path());
    let bundle_before = server.admin(&["bundle", "show"]);
    let (token, agent_id) = server.join_token("10m");
    let paths = agent_config(&tmp.path().join("agent"), &server, Some(&token));
    let _agent = start_agent(&paths);
    create_uid_entry(
        &server,
        "spiffe://example.org/e2e/before-restart",
        &agent_id,
    );
    fetch_svid_files(&paths.socket, &tmp.path().join("before"));

    server.restart();

    // Same root CA after the restart, so every SVID issued before still verifies.
    let bundle_after = server.admin(&["bundle", "show"]);
    assert_eq!(stdout(&bundle_before), stdout(&bundle_after));
    // The agent reconnects by itself and receives entries created after the restart.
    create_uid_entry(&server, "spiffe://example.org/e2e/after-restart", &agent_id);
    wait_for(
        Duration::from_secs(30),
        "the entry created after the restart",
        || {
            let o = workload(&paths.socket, &["svid", "fetch"]);
            stdout(&o)
                .contains("spiffe://example.org/e2e/after-restart")
                .then_some(())
        },
    );
}
