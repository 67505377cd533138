//! The audit log and the inventory through the real binary: a server killed with SIGKILL in the
//! middle of a burst of admin writes (on SQLite and on PostgreSQL), again and again, keeps a
//! chain that verifies and holds every change it acknowledged; an export verifies offline (and
//! a tampered one does not, naming where); the inventory report in its three formats; bad input
//! refused in one line.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{TestServer, assert_one_line_error, my_uid, sigil, stderr, stdout};

const WRITERS: usize = 3;
const ROUNDS: usize = 3;

/// Runs the admin CLI against the socket at `socket`.
fn admin_at(socket: &Path, args: &[&str]) -> std::process::Output {
    let mut all = args.to_vec();
    all.extend(["--admin-socket", socket.to_str().unwrap()]);
    sigil(&all)
}

fn json(o: &std::process::Output) -> Value {
    assert!(o.status.success(), "{}", stderr(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

/// The targets of every `entry.create` record in the server's chain.
fn audited_creations(server: &TestServer) -> BTreeSet<String> {
    let listed = json(&server.admin(&[
        "audit",
        "list",
        "--action",
        "entry.create",
        "--outcome",
        "success",
        "--output",
        "json",
    ]));
    listed["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["target"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn kill_9_mid_write_burst_keeps_a_verifiable_chain_with_every_acknowledged_change() {
    kill_9_mid_write_burst("");
}

#[test]
fn kill_9_mid_write_burst_on_postgres_keeps_a_verifiable_chain() {
    let Some(db) = crate::postgres::Database::create() else {
        return;
    };
    kill_9_mid_write_burst(&crate::postgres::postgres_table(&db.url()));
}

/// Rounds of: writers creating entries through the CLI, the server killed with SIGKILL under
/// them, started again; then the chain must verify and hold every creation that was answered.
/// Then the export checks. `datastore` is appended to the server's configuration.
fn kill_9_mid_write_burst(datastore: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start_with(
        dir.path(),
        &format!("[audit]\ncheckpoint_interval = \"1s\"\n{datastore}"),
    );
    let socket = server.admin_socket.clone();
    let uid_selector = format!("unix:uid:{}", my_uid());
    let acknowledged: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let counter = AtomicUsize::new(0);
    for round in 0..ROUNDS {
        let stop = AtomicBool::new(false);
        let before = acknowledged.lock().unwrap().len();
        std::thread::scope(|scope| {
            for _ in 0..WRITERS {
                scope.spawn(|| {
                    while !stop.load(Ordering::Relaxed) {
                        let n = counter.fetch_add(1, Ordering::Relaxed);
                        let spiffe_id = format!("spiffe://example.org/burst/{n}");
                        let o = admin_at(
                            &socket,
                            &[
                                "entry",
                                "create",
                                "--spiffe-id",
                                &spiffe_id,
                                "--parent-id",
                                "spiffe://example.org/sigil/agent/join_token/x",
                                "--selector",
                                &uid_selector,
                                "--owner",
                                "team-burst",
                                "--output",
                                "json",
                            ],
                        );
                        if o.status.success() {
                            let v: Value = serde_json::from_slice(&o.stdout).unwrap();
                            acknowledged
                                .lock()
                                .unwrap()
                                .push(v["id"].as_str().unwrap().to_owned());
                        }
                    }
                });
            }
            // Let the burst run (a checkpoint lands in it), then kill the server under it.
            let started = std::time::Instant::now();
            while acknowledged.lock().unwrap().len() < before + 20
                && started.elapsed() < Duration::from_secs(30)
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_millis(300 + 350 * round as u64));
            server.daemon_mut().kill9();
            stop.store(true, Ordering::Relaxed);
        });
        let acked = acknowledged.lock().unwrap().clone();
        assert!(
            acked.len() >= before + 20,
            "round {round}: the burst did not run"
        );
        server.respawn();
        let verified = server.admin(&["audit", "verify"]);
        assert!(
            verified.status.success(),
            "round {round}: {} {}",
            stdout(&verified),
            stderr(&verified)
        );
        assert!(
            stdout(&verified).contains("verifies"),
            "{}",
            stdout(&verified)
        );
        let audited = audited_creations(&server);
        let missing: Vec<&String> = acked.iter().filter(|id| !audited.contains(*id)).collect();
        assert!(
            missing.is_empty(),
            "round {round}: acknowledged entries missing from the audit log: {missing:?}"
        );
    }

    // The whole chain exports and verifies offline, against keys taken from the server.
    let export = dir.path().join("audit.jsonl");
    let keys = dir.path().join("keys.json");
    let o = server.admin(&["audit", "export", "--file", export.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = server.admin(&["audit", "keys", "--output", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::write(&keys, &o.stdout).unwrap();
    let o = sigil(&[
        "audit",
        "verify",
        "--file",
        export.to_str().unwrap(),
        "--trusted-keys",
        keys.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("the export verifies"), "{}", stdout(&o));
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&export).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Edit one record of the export (valid JSON, a wrong hash): verify names its sequence.
    let text = std::fs::read_to_string(&export).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let (index, seq) = lines
        .iter()
        .enumerate()
        .find_map(|(i, line)| {
            let v: Value = serde_json::from_str(line).unwrap();
            (v["type"] == "record" && v["seq"].as_u64() == Some(5)).then_some((i, 5))
        })
        .expect("record 5 in the export");
    let mut record: Value = serde_json::from_str(&lines[index]).unwrap();
    assert_ne!(record["target"], "forged");
    record["target"] = Value::from("forged");
    lines[index] = record.to_string();
    let tampered = dir.path().join("tampered.jsonl");
    std::fs::write(&tampered, lines.join("\n") + "\n").unwrap();
    let o = sigil(&["audit", "verify", "--file", tampered.to_str().unwrap()]);
    assert_one_line_error(&o, &format!("seq {seq}"));
    // Cut short (closing checkpoint and last record dropped): detected too.
    let cut = dir.path().join("cut.jsonl");
    std::fs::write(
        &cut,
        text.lines()
            .take(lines.len() - 2)
            .collect::<Vec<_>>()
            .join("\n")
            + "\n",
    )
    .unwrap();
    let o = sigil(&["audit", "verify", "--file", cut.to_str().unwrap()]);
    assert_one_line_error(&o, "truncated");
}

#[test]
fn inventory_review_and_bad_input_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let id = crate::harness::create_uid_entry_with(
        &server,
        "spiffe://example.org/inventoried",
        "spiffe://example.org/sigil/agent/join_token/gone",
        &["--admin"],
    );

    // The entry is orphaned (no such agent) and an admin entry: both in every format.
    let report = json(&server.admin(&["inventory", "report", "--output", "json"]));
    let kinds: BTreeSet<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["subject_id"] == id.as_str())
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    let mut expected = BTreeSet::from(["entry_orphaned", "privileged_entry"]);
    if my_uid() == 0 {
        // `unix:uid:0` alone: every root process.
        expected.insert("overbroad_selectors");
    }
    assert_eq!(kinds, expected, "{report}");
    let table = server.admin(&["inventory", "report"]);
    assert!(table.status.success(), "{}", stderr(&table));
    assert!(
        stdout(&table).contains("entry_orphaned"),
        "{}",
        stdout(&table)
    );
    let markdown = server.admin(&["inventory", "report", "--output", "markdown"]);
    assert!(
        stdout(&markdown).contains("| Severity |"),
        "{}",
        stdout(&markdown)
    );
    assert!(
        stdout(&markdown).contains("NHI1:2025"),
        "{}",
        stdout(&markdown)
    );

    // Reviewed by its owner: shown in the inventory, recorded in the audit log.
    let o = server.admin(&[
        "entry",
        "review",
        "--id",
        &id,
        "--by",
        "team-e2e",
        "--note",
        "still needed",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let shown = json(&server.admin(&["inventory", "show", "--id", &id, "--output", "json"]));
    assert_eq!(shown["last_review"]["reviewed_by"], "team-e2e", "{shown}");
    let listed = json(&server.admin(&[
        "audit",
        "list",
        "--action",
        "entry.review",
        "--output",
        "json",
    ]));
    assert_eq!(listed["records"][0]["target"], id.as_str(), "{listed}");
    let owners = json(&server.admin(&["inventory", "owners", "--output", "json"]));
    assert_eq!(owners["owners"][0]["owner"], "team-e2e", "{owners}");
    let summary = server.admin(&["inventory", "summary"]);
    assert!(stdout(&summary).contains("Entries"), "{}", stdout(&summary));

    // Bad input: one line on stderr, non-zero exit, naming what is wrong.
    let o = server.admin(&[
        "entry",
        "create",
        "--spiffe-id",
        "spiffe://example.org/no-owner",
        "--parent-id",
        "spiffe://example.org/sigil/agent/join_token/gone",
        "--selector",
        "unix:uid:1000",
    ]);
    assert_one_line_error(&o, "owner");
    assert_one_line_error(
        &server.admin(&["audit", "list", "--outcome", "maybe"]),
        "outcome",
    );
    assert_one_line_error(
        &server.admin(&["audit", "list", "--since", "yesterday"]),
        "since",
    );
    assert_one_line_error(
        &server.admin(&["inventory", "report", "--severity", "urgent"]),
        "severity",
    );
    assert_one_line_error(
        &server.admin(&["inventory", "entries", "--unused-for", "forever"]),
        "unused_for",
    );
    assert_one_line_error(
        &server.admin(&["audit", "export", "--file", "/nonexistent-dir/audit.jsonl"]),
        "/nonexistent-dir",
    );
    assert_one_line_error(
        &sigil(&[
            "audit",
            "verify",
            "--file",
            dir.path().join("missing.jsonl").to_str().unwrap(),
        ]),
        "missing.jsonl",
    );
}
