//! Two server replicas on one PostgreSQL database, as real processes: each holds its own keys
//! (separate data directories) and both publish the union of what they trust. An agent attests
//! and syncs through replica B; an entry created through replica A reaches its workload (the
//! change travels through PostgreSQL's notifications and the change feed); after `kill -9` of B
//! the agent continues through A without attesting again, and SVIDs signed by either replica
//! verify under the same bundle with openssl.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::postgres::{Database, postgres_table};

const PATIENCE: Duration = Duration::from_secs(30);

fn start_replica(dir: &Path, replica: &str, db: &Database) -> TestServer {
    TestServer::start_with(
        dir,
        &format!("replica_id = \"{replica}\"\n{}", postgres_table(&db.url())),
    )
}

/// How many certificates `sigil bundle show` of `server` prints.
fn bundle_roots(server: &TestServer) -> usize {
    let o = server.admin(&["bundle", "show"]);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o).matches("BEGIN CERTIFICATE").count()
}

/// The workload's SVID files once its default SVID is `spiffe_id`; returns the directory.
fn svid_for(socket: &Path, dir: &Path, spiffe_id: &str) -> std::path::PathBuf {
    wait_for(PATIENCE, spiffe_id, || {
        let o = workload(socket, &["svid", "fetch", "--write", dir.to_str().unwrap()]);
        if !o.status.success() {
            return None;
        }
        let pem = std::fs::read_to_string(dir.join("svid.pem")).ok()?;
        let leaf = sigil_keys::pem::decode_all("CERTIFICATE", &pem).ok()?;
        let id = sigil_tls::peer_spiffe_id(leaf.first()?).ok()?;
        (id.as_str() == spiffe_id).then_some(())
    });
    dir.to_owned()
}

/// The intermediate (second certificate) of `svid.pem` in `dir`.
fn intermediate_of(dir: &Path) -> String {
    let pem = std::fs::read_to_string(dir.join("svid.pem")).unwrap();
    let der = sigil_keys::pem::decode_all("CERTIFICATE", &pem).unwrap();
    assert_eq!(der.len(), 2, "leaf and intermediate");
    sigil_keys::sha256_hex(&der[1])
}

#[test]
fn two_replicas_on_one_postgres_serve_one_trust_domain() {
    let Some(db) = Database::create() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let a = start_replica(&tmp.path().join("a"), "a", &db);
    let mut b = start_replica(&tmp.path().join("b"), "b", &db);
    // Each replica's root reaches the other through the database.
    wait_for(PATIENCE, "both roots in both bundles", || {
        (bundle_roots(&a) == 2 && bundle_roots(&b) == 2).then_some(())
    });
    let shared_bundle = tmp.path().join("bundle-from-a.pem");
    a.write_bundle(&shared_bundle);

    // A join token made through A; the agent talks to B first, A second.
    let (token, agent_id) = a.join_token("10m");
    let paths = agent_config_with_addresses(
        &tmp.path().join("agent"),
        &a,
        Some(&token),
        &[
            format!("127.0.0.1:{}", b.port),
            format!("127.0.0.1:{}", a.port),
        ],
    );
    let agent = start_agent(&paths);

    // An entry created through A reaches the workload of the agent on B.
    let started = Instant::now();
    let first_entry = create_uid_entry(&a, "spiffe://example.org/replicated/one", &agent_id);
    let first = svid_for(
        &paths.socket,
        &tmp.path().join("svid-1"),
        "spiffe://example.org/replicated/one",
    );
    eprintln!(
        "entry created through A → workload of the agent on B: {:?}",
        started.elapsed()
    );
    openssl_verifies(&first, &shared_bundle);
    let b_bundle = tmp.path().join("bundle-from-b.pem");
    b.write_bundle(&b_bundle);
    openssl_verifies(&first, &b_bundle);

    // kill -9 of B: the agent moves to A and goes on without attesting again.
    b.daemon_mut().kill9();
    let started = Instant::now();
    let second_id = "spiffe://example.org/replicated/two";
    // The workload's only identity from now on, so the files written are this SVID's.
    let o = a.admin(&["entry", "delete", "--id", &first_entry]);
    assert!(o.status.success(), "{}", stderr(&o));
    create_uid_entry(&a, second_id, &agent_id);
    let second = svid_for(&paths.socket, &tmp.path().join("svid-2"), second_id);
    eprintln!(
        "after kill -9 of B, a new entry through A: {:?}",
        started.elapsed()
    );
    assert_ne!(
        intermediate_of(&first),
        intermediate_of(&second),
        "the second SVID is signed by A's intermediate, the first by B's"
    );
    // Both replicas' SVIDs verify under either replica's bundle.
    openssl_verifies(&second, &b_bundle);
    openssl_verifies(&second, &shared_bundle);
    let log = agent.log();
    assert_eq!(
        log.matches("attested with a join token").count(),
        1,
        "the agent attested once: {log}"
    );
}

/// A burst of admin writes through replica B, killed with SIGKILL in the middle, three times:
/// every write B acknowledged is there when read through replica A (an acknowledgement means the
/// PostgreSQL transaction committed), and B starts again on the same database and keys.
#[test]
fn kill_9_of_a_replica_during_a_burst_of_writes_loses_no_acknowledged_write() {
    let Some(db) = Database::create() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let a = start_replica(&tmp.path().join("a"), "a", &db);
    let mut b = start_replica(&tmp.path().join("b"), "b", &db);
    let mut acknowledged: Vec<String> = Vec::new();
    for round in 0..3 {
        let socket = b.admin_socket.to_str().unwrap().to_owned();
        let stop = std::sync::atomic::AtomicBool::new(false);
        let written = std::thread::scope(|scope| {
            let writer = scope.spawn(|| {
                let mut ids = Vec::new();
                for i in 0.. {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) && i > 0 {
                        break;
                    }
                    let spiffe_id = format!("spiffe://example.org/burst/r{round}/w{i}");
                    let o = sigil(&[
                        "entry",
                        "create",
                        "--spiffe-id",
                        &spiffe_id,
                        "--parent-id",
                        "spiffe://example.org/sigil/agent/join_token/burst",
                        "--selector",
                        "unix:uid:1",
                        "--owner",
                        "team-e2e",
                        "--output",
                        "json",
                        "--admin-socket",
                        &socket,
                    ]);
                    if !o.status.success() {
                        // B is gone: every later write would fail too.
                        eprintln!("round {round}: write {i} refused: {}", stderr(&o));
                        break;
                    }
                    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
                    ids.push(v["id"].as_str().unwrap().to_owned());
                }
                ids
            });
            std::thread::sleep(Duration::from_millis(400));
            b.daemon_mut().kill9();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            writer.join().unwrap()
        });
        assert!(
            !written.is_empty(),
            "round {round}: no write before the kill"
        );
        eprintln!(
            "round {round}: {} writes acknowledged before kill -9",
            written.len()
        );
        acknowledged.extend(written);
        for id in &acknowledged {
            let o = a.admin(&["entry", "show", "--id", id]);
            assert!(
                o.status.success(),
                "acknowledged entry {id} lost: {}",
                stderr(&o)
            );
        }
        b.respawn();
    }
}
