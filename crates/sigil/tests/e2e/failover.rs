//! Agents with several server addresses, with the real binaries: a dead address is skipped at
//! attestation and for the sync stream, and when the server goes away the agent tries the next
//! address at once, serves workloads meanwhile, and resumes without attesting again. (One
//! server: real replicas come with the PostgreSQL backend.)

use std::time::Duration;

use crate::harness::*;

/// The agent log's lines that mention `address` and `message`.
fn lines_with(log: &str, address: &str, message: &str) -> usize {
    log.lines()
        .filter(|l| l.contains(address) && l.contains(message))
        .count()
}

/// Fetches an X509-SVID as a workload until it is `spiffe_id`.
fn fetch_until(socket: &std::path::Path, out: &std::path::Path, spiffe_id: &str) {
    wait_for(Duration::from_secs(30), spiffe_id, || {
        let o = workload(socket, &["svid", "fetch", "--write", out.to_str().unwrap()]);
        (o.status.success() && stdout(&o).contains(spiffe_id)).then_some(())
    });
}

#[test]
fn a_dead_first_address_is_skipped_for_attestation_sync_and_workloads() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(tmp.path());
    let (token, agent_id) = server.join_token("10m");
    let dead = format!("127.0.0.1:{}", free_port());
    let live = format!("127.0.0.1:{}", server.port);
    let paths = agent_config_with_addresses(
        &tmp.path().join("agent"),
        &server,
        Some(&token),
        &[dead.clone(), live.clone()],
    );
    let agent = start_agent(&paths);

    let spiffe_id = "spiffe://example.org/e2e/failover";
    create_uid_entry(&server, spiffe_id, &agent_id);
    fetch_until(&paths.socket, &tmp.path().join("svid"), spiffe_id);

    let log = agent.log();
    assert_eq!(
        lines_with(&log, &dead, "cannot attest through this server address"),
        1,
        "the dead address was tried first, once:\n{log}"
    );
    assert_eq!(
        lines_with(&log, &live, "attested with a join token"),
        1,
        "{log}"
    );
}

#[test]
fn when_the_server_goes_away_the_next_address_is_tried_at_once_and_workloads_are_served() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = TestServer::start(tmp.path());
    let (token, agent_id) = server.join_token("10m");
    let live = format!("127.0.0.1:{}", server.port);
    let dead = format!("127.0.0.1:{}", free_port());
    let paths = agent_config_with_addresses(
        &tmp.path().join("agent"),
        &server,
        Some(&token),
        &[live.clone(), dead.clone()],
    );
    let mut agent = start_agent(&paths);
    let first = "spiffe://example.org/e2e/before";
    create_uid_entry(&server, first, &agent_id);
    let out = tmp.path().join("svid");
    fetch_until(&paths.socket, &out, first);

    server.restart_after(|| {
        // The stream to the server ended: the dead address is tried next at once (no backoff
        // between them), and after it failed too, a backoff starts the next round.
        let log = wait_for(
            Duration::from_secs(30),
            "the agent to try the next address",
            || {
                let log = agent.log();
                (lines_with(&log, &dead, "retrying after a backoff") > 0).then_some(log)
            },
        );
        let switched = log
            .lines()
            .find(|l| l.contains("trying the next server address"))
            .unwrap_or_else(|| panic!("no immediate switch to the next address:\n{log}"));
        assert!(
            switched.contains(&live) && switched.contains(&dead),
            "{switched}"
        );
        // Meanwhile workloads are served from what the agent holds.
        let o = workload(
            &paths.socket,
            &["svid", "fetch", "--write", out.to_str().unwrap()],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stdout(&o).contains(first), "{}", stdout(&o));
    });

    // The server is back: the agent reconnects with its SVID (no new attestation; the token is
    // spent anyway) and new entries reach the workload again.
    let second = "spiffe://example.org/e2e/after";
    create_uid_entry(&server, second, &agent_id);
    fetch_until(&paths.socket, &out, second);
    assert!(agent.exited().is_none(), "{}", agent.log());
    let log = agent.log();
    assert_eq!(
        log.matches("attested with a join token").count(),
        1,
        "{log}"
    );
}
