//! The agent ↔ server TLS key exchange with real processes: by default both sides negotiate the
//! hybrid post-quantum group X25519MLKEM768; an agent whose `[tls] post_quantum = false` falls
//! back to X25519 with the same server. Each side logs the group it negotiated (debug level,
//! which the harness turns on).

use std::time::Duration;

use crate::harness::*;

/// How each side names the group in its handshake log line.
const HYBRID: &str = "key_exchange=Some(X25519MLKEM768)";
const CLASSICAL: &str = "key_exchange=Some(X25519)";

/// The log lines of `daemon` that report a completed handshake.
fn handshake_lines(daemon: &Daemon, message: &str) -> Vec<String> {
    daemon
        .log()
        .lines()
        .filter(|l| l.contains(message))
        .map(str::to_owned)
        .collect()
}

#[test]
fn agent_and_server_negotiate_x25519mlkem768_unless_switched_off() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(tmp.path());

    // Default policy on both sides.
    let (token, _) = server.join_token("10m");
    let paths = agent_config(&tmp.path().join("pq"), &server, Some(&token));
    let agent = start_agent(&paths);
    let agent_lines = wait_for(Duration::from_secs(30), "the agent's handshake log", || {
        let lines = handshake_lines(&agent, "server TLS handshake completed");
        (!lines.is_empty()).then_some(lines)
    });
    assert!(
        agent_lines.iter().all(|l| l.contains(HYBRID)),
        "{agent_lines:#?}"
    );
    let server_lines = handshake_lines(server.daemon(), "agent TLS handshake completed");
    assert!(!server_lines.is_empty(), "{}", server.daemon().log());
    assert!(
        server_lines.iter().all(|l| l.contains(HYBRID)),
        "{server_lines:#?}"
    );

    // An agent that switches it off still connects, over X25519.
    let (token, _) = server.join_token("10m");
    let paths = agent_config(&tmp.path().join("classical"), &server, Some(&token));
    let mut text = std::fs::read_to_string(&paths.config).unwrap();
    text.push_str("[tls]\npost_quantum = false\n");
    std::fs::write(&paths.config, text).unwrap();
    let classical = start_agent(&paths);
    let lines = wait_for(
        Duration::from_secs(30),
        "the second agent's handshake log",
        || {
            let lines = handshake_lines(&classical, "server TLS handshake completed");
            (!lines.is_empty()).then_some(lines)
        },
    );
    assert!(lines.iter().all(|l| l.contains(CLASSICAL)), "{lines:#?}");
    wait_for(
        Duration::from_secs(10),
        "the server's classical handshake",
        || {
            handshake_lines(server.daemon(), "agent TLS handshake completed")
                .iter()
                .any(|l| l.contains(CLASSICAL))
                .then_some(())
        },
    );
}
