//! One agent per data directory and per Workload API socket: a second `sigil agent run` with a
//! running agent's configuration, or another agent pointed at its socket, exits with one error
//! line and leaves the running agent serving its workloads.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

/// Runs `sigil agent run -c config` and waits for it to exit; fails the test if it is still
/// running after 30 s (a second agent that does not refuse to start would run forever).
fn run_agent_to_exit(config: &Path) -> Output {
    let mut child = Command::new(sigil_bin())
        .args(["agent", "run", "-c", config.to_str().unwrap()])
        .env_remove("SIGIL_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sigil");
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "the second agent is still running after 30 s: {}",
                stderr(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// `sigil svid fetch` through `socket` succeeds and names `spiffe_id`.
fn assert_served(socket: &Path, spiffe_id: &str) {
    let o = workload(socket, &["svid", "fetch"]);
    assert!(o.status.success(), "svid fetch: {}", stderr(&o));
    assert!(stdout(&o).contains(spiffe_id), "{}", stdout(&o));
}

#[test]
fn a_second_agent_is_refused_and_the_running_agent_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(tmp.path());
    let (token, agent_id) = server.join_token("10m");
    let paths = agent_config(&tmp.path().join("agent"), &server, Some(&token));
    let mut first = start_agent(&paths);
    let spiffe_id = "spiffe://example.org/e2e/lock";
    create_uid_entry(&server, spiffe_id, &agent_id);
    // The positive path first: the running agent serves the workload.
    fetch_svid_files(&paths.socket, &tmp.path().join("svid"));
    assert_served(&paths.socket, spiffe_id);
    let socket_inode = std::fs::metadata(&paths.socket).unwrap().ino();

    // The same configuration: the data directory is locked.
    let second = run_agent_to_exit(&paths.config);
    assert_one_line_error(&second, "another agent is running on the data directory");
    assert!(first.exited().is_none(), "the first agent is still running");
    assert_eq!(
        std::fs::metadata(&paths.socket).unwrap().ino(),
        socket_inode,
        "the running agent's socket was replaced"
    );
    assert_served(&paths.socket, spiffe_id);

    // Another data directory (and a fresh join token) aimed at the same socket: it is in use.
    let (other_token, _) = server.join_token("10m");
    let other = agent_config(&tmp.path().join("other"), &server, Some(&other_token));
    let text = std::fs::read_to_string(&other.config).unwrap().replace(
        other.socket.to_str().unwrap(),
        paths.socket.to_str().unwrap(),
    );
    std::fs::write(&other.config, text).unwrap();
    let third = run_agent_to_exit(&other.config);
    assert_one_line_error(&third, "in use");
    assert!(first.exited().is_none(), "the first agent is still running");
    assert_eq!(
        std::fs::metadata(&paths.socket).unwrap().ino(),
        socket_inode
    );
    assert_served(&paths.socket, spiffe_id);

    // The running agent still stops cleanly and removes its own socket.
    let status = first.terminate().expect("the agent stops on SIGTERM");
    assert!(
        status.success(),
        "agent exit status {status}: {}",
        first.log()
    );
    assert!(!paths.socket.exists());
}
