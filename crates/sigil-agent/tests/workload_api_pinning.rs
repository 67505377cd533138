//! Workload attestation pinned at accept time, with real processes: a python process connects to
//! the agent (so the agent pins it) and relays a test client's gRPC over that connection
//! (`pinning/peer_pump.py`). After its first call has been answered, the process execs another
//! binary (a copy of python at another path, which an entry trusts by `unix:path`), or forks and
//! lets the child keep the connection while it execs that binary; neither gets the trusted
//! binary's identity, and once the pinned process is gone the connection is refused.
//!
//! Attesting per call (reading `/proc/<pid>/exe` when the call arrives) would hand out the
//! trusted identity after the exec: these tests fail without the pinning.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a broken assumption must fail the test loudly"
)]

mod workload_api_fixture;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sigil_agent::workload::ServeOptions;
use sigil_proto::workload::JwtsvidRequest;
use sigil_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use sigil_spiffe::Selector;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tonic::Code;
use tonic::transport::Channel;
use workload_api_fixture::{Harness, client_at, with_header};

const AUD: &str = "spiffe://example.org/audience";

/// The real python binary behind `python3` (which may be a shim script), resolved by python.
fn python_binary() -> PathBuf {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import os, sys; print(os.path.realpath(sys.executable))",
        ])
        .output()
        .expect("python3 is required by these tests");
    assert!(out.status.success(), "python3 failed: {out:?}");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn path_selector(binary: &Path) -> Selector {
    Selector::parse(&format!("unix:path:{}", binary.display())).unwrap()
}

/// A pump process connected to the harness's socket, with a test client through it.
struct Peer {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    client: SpiffeWorkloadApiClient<Channel>,
}

impl Peer {
    /// Starts `python` on the pump script; `trusted` is what it will exec.
    async fn connect(h: &Harness, python: &Path, trusted: &Path) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let front = h.dir.path().join(format!(
            "front-{}.sock",
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let mut child = Command::new(python)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pinning/peer_pump.py"))
            .arg("connect")
            .arg(&h.socket)
            .arg(&front)
            .arg(trusted)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        expect_line(&mut lines, "ready").await;
        let client = client_at(front).await;
        Self {
            child,
            lines,
            client,
        }
    }

    /// Sends `command` to the pump and waits for its acknowledgement `ack`.
    async fn command(&mut self, command: &str, ack: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
        expect_line(&mut self.lines, ack).await;
    }

    /// The SPIFFE IDs of the JWT-SVIDs the pinned process gets.
    async fn identities(&mut self) -> Result<BTreeSet<String>, tonic::Status> {
        let response = self
            .client
            .fetch_jwtsvid(with_header(JwtsvidRequest {
                audience: vec![AUD.into()],
                spiffe_id: String::new(),
            }))
            .await?;
        Ok(response
            .into_inner()
            .svids
            .into_iter()
            .map(|s| s.spiffe_id)
            .collect())
    }
}

async fn expect_line(lines: &mut Lines<BufReader<ChildStdout>>, want: &str) {
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the peer did not answer")
        .unwrap();
    assert_eq!(line.as_deref(), Some(want));
}

/// A harness where the real python binary is `/python` and a copy of it at another path is
/// `/trusted`; returns the harness and the copy's path.
async fn harness() -> (Harness, PathBuf, PathBuf) {
    let h = Harness::start(ServeOptions::default()).await;
    let python = python_binary();
    let trusted = h.dir.path().join("trusted-python");
    std::fs::copy(&python, &trusted).unwrap();
    h.publish(vec![
        h.identity("e-python", "/python", vec![path_selector(&python)], ""),
        h.identity("e-trusted", "/trusted", vec![path_selector(&trusted)], ""),
    ]);
    (h, python, trusted)
}

fn ids(paths: &[&str]) -> BTreeSet<String> {
    paths
        .iter()
        .map(|p| format!("spiffe://example.org{p}"))
        .collect()
}

#[tokio::test]
async fn a_caller_that_execs_after_it_was_accepted_keeps_the_identity_it_connected_with() {
    let (h, python, trusted) = harness().await;
    let mut peer = Peer::connect(&h, &python, &trusted).await;
    assert_eq!(peer.identities().await.unwrap(), ids(&["/python"]));

    peer.command("exec", "execd").await;
    let exe = std::fs::read_link(format!("/proc/{}/exe", peer.child.id().unwrap())).unwrap();
    assert_eq!(
        exe, trusted,
        "the connecting process now runs the trusted binary"
    );
    assert_eq!(
        peer.identities().await.unwrap(),
        ids(&["/python"]),
        "selectors are those of the binary that connected, not of the one it exec'd"
    );

    // A fresh connection from the same process is pinned to what it runs now.
    let mut again = Peer::connect(&h, &trusted, &trusted).await;
    assert_eq!(again.identities().await.unwrap(), ids(&["/trusted"]));
    drop(again);
    drop(peer);
    h.stop().await.unwrap();
}

#[tokio::test]
async fn a_forked_child_holding_the_connection_gets_no_new_selectors_and_nothing_after_its_parent_exits()
 {
    let (h, python, trusted) = harness().await;
    let mut peer = Peer::connect(&h, &python, &trusted).await;
    assert_eq!(peer.identities().await.unwrap(), ids(&["/python"]));

    // The child relays; the pinned (parent) process execs the trusted binary and only holds.
    peer.command("fork", "holding").await;
    let pid = peer.child.id().unwrap();
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/exe")).unwrap(),
        trusted
    );
    assert_eq!(
        peer.identities().await.unwrap(),
        ids(&["/python"]),
        "the child gets the pinned process's selectors, not the trusted binary's"
    );

    // The pinned process exits; its child still holds the connection and is refused.
    peer.child.kill().await.unwrap();
    let status = peer.identities().await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    drop(peer);
    h.stop().await.unwrap();
}
