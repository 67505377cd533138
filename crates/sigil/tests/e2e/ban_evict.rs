//! `sigil agent ban` and `sigil agent evict` with real processes: a server, an agent attested
//! with a join token, and a workload watching its X509-SVIDs through py-spiffe (unmodified, on
//! grpcio). After the admin command the workload's stream ends and it has no identity any more,
//! the agent process deletes its stored identity and exits non-zero with one error line, and it
//! cannot come back (its join token is spent). Banning or evicting an agent the server does not
//! know is one error line and changes nothing, while the real agent keeps serving.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

/// Only ever a failure bound: the refusal is pushed, so everything below happens in well under a
/// second on a quiet machine.
const PATIENCE: Duration = Duration::from_secs(30);

/// A server, an agent attested with a join token, and an entry for this uid the agent serves.
struct Node {
    server: TestServer,
    agent: Daemon,
    paths: AgentPaths,
    agent_id: String,
    workload_id: &'static str,
    _tmp: tempfile::TempDir,
}

impl Node {
    /// Starts everything and waits until the workload (this process's uid) has its identity.
    fn start(workload_id: &'static str) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let server = TestServer::start(tmp.path());
        let (token, agent_id) = server.join_token("10m");
        let paths = agent_config(&tmp.path().join("agent"), &server, Some(&token));
        let agent = start_agent(&paths);
        create_uid_entry(&server, workload_id, &agent_id);
        fetch_svid_files(&paths.socket, &tmp.path().join("warmup"));
        Self {
            server,
            agent,
            paths,
            agent_id,
            workload_id,
            _tmp: tmp,
        }
    }

    /// The agent's stored identity: its private key and its state (SVID chain, bundle).
    fn identity_files(&self) -> [PathBuf; 2] {
        let data = self.paths.dir.join("data");
        [data.join("agent.key"), data.join("agent-state.json")]
    }

    fn assert_identity_stored(&self) {
        for file in self.identity_files() {
            assert!(file.exists(), "{} is missing", file.display());
        }
    }

    /// `sigil agent list --output json` without `last_seen` (bookkeeping a heartbeat may move).
    fn agents(&self) -> Value {
        let o = self.server.admin(&["agent", "list", "--output", "json"]);
        assert!(o.status.success(), "agent list: {}", stderr(&o));
        let mut list: Value = serde_json::from_slice(&o.stdout).unwrap();
        for agent in list["agents"].as_array_mut().unwrap() {
            agent.as_object_mut().unwrap().remove("last_seen");
        }
        list
    }

    /// Waits for the agent process to exit on its own.
    fn agent_exit(&mut self) -> ExitStatus {
        wait_for(PATIENCE, "the agent process to exit", || {
            self.agent.exited()
        })
    }

    /// Runs the agent again on the same configuration and data directory; it must stop on its
    /// own. Returns its exit status and log.
    fn rerun_agent(&self) -> (ExitStatus, String) {
        let mut again = Daemon::spawn(
            "agent-again",
            &self.paths.dir,
            &["agent", "run", "-c", self.paths.config.to_str().unwrap()],
        );
        let status = wait_for(PATIENCE, "the restarted agent to stop", || again.exited());
        (status, again.log())
    }
}

/// Runs `admin_args` (a ban or an eviction of the node's agent) while py-spiffe watches, and
/// checks what every ban and eviction must do: the workload's stream ends and it has no identity
/// any more; the agent deletes its identity, exits non-zero with one error line, and cannot
/// start again. Returns the admin command's stdout.
fn refuse_agent_and_check_it_stops(node: &mut Node, admin_args: &[&str]) -> String {
    // The positive path first: the agent stores its identity and serves the workload.
    node.assert_identity_stored();
    let watch = PySpiffeWatch::start(&node.paths.socket);
    if let Some(watch) = &watch {
        let first = watch.next();
        assert_eq!(first["event"], "update", "{first}");
        assert_eq!(first["spiffe_ids"], serde_json::json!([node.workload_id]));
    }
    assert!(node.agent.exited().is_none(), "the agent is running");

    let o = node.server.admin(admin_args);
    assert!(
        o.status.success(),
        "{admin_args:?}: {}{}",
        stdout(&o),
        stderr(&o)
    );

    if let Some(watch) = &watch {
        let (end, after) = watch.wait_end();
        eprintln!("the workload's stream ended {after:?} after the admin command: {end}");
        assert_eq!(end["event"], "error", "{end}");
        // No identity, not merely an agent going away.
        let error = end["error"].as_str().unwrap();
        assert!(error.contains("PERMISSION_DENIED"), "{error}");
        let refetch = watch.next();
        assert_eq!(refetch["event"], "refetch", "{refetch}");
        assert_eq!(
            refetch["ok"], false,
            "the workload still has an identity: {refetch}"
        );
    }

    let status = node.agent_exit();
    let log = node.agent.log();
    assert!(!status.success(), "the agent exited with {status}:\n{log}");
    let errors: Vec<&str> = log.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one error line expected:\n{log}");
    let line = errors[0];
    eprintln!("the agent's last words: {line}");
    assert!(
        line.contains("refused this agent")
            && line.contains(&node.agent_id)
            && line.contains("stored identity was deleted"),
        "{line}"
    );
    for file in node.identity_files() {
        assert!(!file.exists(), "{} was not deleted", file.display());
    }
    assert!(
        !node.paths.socket.exists(),
        "the Workload API socket is removed"
    );

    // Nothing brings it back: no identity is left, and the join token was used.
    let (status, log) = node.rerun_agent();
    assert!(!status.success(), "the agent started again:\n{log}");
    assert!(log.contains("join token was already used"), "{log}");
    for file in node.identity_files() {
        assert!(!file.exists(), "{} reappeared", file.display());
    }
    stdout(&o)
}

#[test]
fn banned_agent_stops_serving_deletes_its_identity_and_exits_non_zero() {
    let mut node = Node::start("spiffe://example.org/e2e/banned-workload");
    let agent_id = node.agent_id.clone();
    let out =
        refuse_agent_and_check_it_stops(&mut node, &["agent", "ban", "--spiffe-id", &agent_id]);
    assert_eq!(out, format!("Banned agent {agent_id}\n"));

    // The server keeps the record, marked banned; banning again changes nothing.
    let shown = node.server.admin(&[
        "agent",
        "show",
        "--spiffe-id",
        &agent_id,
        "--output",
        "json",
    ]);
    assert!(shown.status.success(), "agent show: {}", stderr(&shown));
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["banned"], true, "{shown}");
    let before = node.agents();
    let again = node
        .server
        .admin(&["agent", "ban", "--spiffe-id", &agent_id, "--output", "json"]);
    assert!(again.status.success(), "second ban: {}", stderr(&again));
    let again: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["banned"], true);
    assert_eq!(node.agents(), before);
}

#[test]
fn evicted_agent_stops_serving_deletes_its_identity_and_cannot_come_back() {
    let mut node = Node::start("spiffe://example.org/e2e/evicted-workload");
    let agent_id = node.agent_id.clone();
    let out = refuse_agent_and_check_it_stops(
        &mut node,
        &[
            "agent",
            "evict",
            "--spiffe-id",
            &agent_id,
            "--output",
            "json",
        ],
    );
    let evicted: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(evicted["spiffe_id"], agent_id.as_str());
    assert_eq!(evicted["banned"], false, "evicted, not banned: {evicted}");

    // The record is gone.
    let shown = node
        .server
        .admin(&["agent", "show", "--spiffe-id", &agent_id]);
    assert_one_line_error(&shown, &format!("agent `{agent_id}` not found"));
    assert_eq!(node.agents(), serde_json::json!({"agents": []}));
}

#[test]
fn banning_or_evicting_an_unknown_agent_is_one_line_and_changes_nothing() {
    let mut node = Node::start("spiffe://example.org/e2e/bystander");
    let before = node.agents();
    assert_eq!(before["agents"][0]["spiffe_id"], node.agent_id.as_str());
    assert_eq!(before["agents"][0]["banned"], false);

    let unknown = "spiffe://example.org/sigil/agent/join_token/nobody";
    for command in ["ban", "evict"] {
        let o = node
            .server
            .admin(&["agent", command, "--spiffe-id", unknown]);
        assert_one_line_error(&o, &format!("error: agent `{unknown}` not found"));
        assert!(stdout(&o).is_empty(), "{}", stdout(&o));
        let o = node
            .server
            .admin(&["agent", command, "--spiffe-id", "spiffe://Bad/x"]);
        assert_one_line_error(&o, "error: invalid spiffe_id `spiffe://Bad/x`: ");
    }

    assert_eq!(node.agents(), before, "nothing changed");
    // The real agent is untouched: running, serving, its identity in place.
    assert!(node.agent.exited().is_none(), "{}", node.agent.log());
    node.assert_identity_stored();
    let o = workload(&node.paths.socket, &["svid", "fetch", "--output", "json"]);
    assert!(o.status.success(), "svid fetch: {}", stderr(&o));
    assert!(stdout(&o).contains(node.workload_id), "{}", stdout(&o));
}
