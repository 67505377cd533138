//! The admin CLI end to end: the real `sigil` binary, run as a separate process, against an
//! admin API served in this test process (`sigil_server::admin::serve` on a temporary socket over
//! an in-memory store and a CA on it). Checks outputs, exit codes and the one-line error
//! contract.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sigil_keys::MemoryKeyManager;
use sigil_server::admin::{AdminState, serve};
use sigil_server::ca::{CaLifetimes, CaManager};
use sigil_spiffe::{Clock, SpiffeId, SystemClock, TrustDomain};
use sigil_store::{CredentialKind, Datastore, IssuedCredential, SqliteStore, StoredBundle};
use tokio::net::UnixStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// An admin API on a temporary socket, stopped when dropped.
struct AdminServer {
    dir: tempfile::TempDir,
    socket: PathBuf,
    store: Arc<dyn Datastore>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl AdminServer {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("run").join("admin.sock");
        let store: Arc<dyn Datastore> = Arc::new(SqliteStore::open_in_memory().unwrap());
        let trust_domain = TrustDomain::parse("example.org").unwrap();
        let ca = CaManager::load_or_init(
            trust_domain.clone(),
            "",
            Arc::new(MemoryKeyManager::new()),
            store.clone(),
            Arc::new(SystemClock),
            CaLifetimes::default(),
            None,
        )
        .await
        .unwrap();
        let state = AdminState {
            store: store.clone(),
            trust_domain: trust_domain.clone(),
            clock: Arc::new(SystemClock),
            agents: None,
            publishes_revocations: false,
            ca,
            federation: None,
            policies: None,
            audit: sigil_server::audit::AuditLog::disabled(),
            governance: Arc::new(sigil_server::governance::GovernanceContext::new(
                store.clone(),
                Arc::new(SystemClock),
                trust_domain.clone(),
                sigil_server::governance::InventoryConfig::default(),
                Vec::new(),
                None,
            )),
            credentials: None,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let path = socket.clone();
        let task = tokio::spawn(async move {
            serve(&path, state, async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        for _ in 0..500 {
            if UnixStream::connect(&socket).await.is_ok() {
                return Self {
                    dir,
                    socket,
                    store,
                    stop: Some(stop),
                    task: Some(task),
                };
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the admin socket never answered");
    }

    /// Runs `sigil <args> --admin-socket <socket>`.
    async fn admin(&self, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        all.push("--admin-socket");
        all.push(self.socket.to_str().unwrap());
        sigil(self.dir.path(), &all).await
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
        assert!(!self.socket.exists(), "the socket is removed on shutdown");
    }
}

/// Runs the `sigil` binary in `cwd` with a clean environment for the variables it reads.
async fn sigil(cwd: &Path, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_sigil"))
        .args(args)
        .current_dir(cwd)
        .env_remove("SIGIL_ADMIN_SOCKET")
        .env_remove("SIGIL_LOG")
        .env_remove("SPIFFE_ENDPOINT_SOCKET")
        .output()
        .await
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> Value {
    assert!(o.status.success(), "failed: {}", stderr(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(o)))
}

/// Asserts `o` failed with `code` and exactly one stderr line starting with `prefix`.
fn assert_one_line_failure(o: &Output, code: i32, prefix: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    assert_eq!(
        err.lines().count(),
        1,
        "exactly one line expected, got: {err:?}"
    );
    assert!(err.ends_with('\n'), "{err:?}");
    assert!(err.starts_with(prefix), "expected `{prefix}…`, got: {err}");
}

/// The flags of a valid `entry create`.
const WEB_ENTRY: &[(&str, &str)] = &[
    ("--spiffe-id", "spiffe://example.org/web"),
    (
        "--parent-id",
        "spiffe://example.org/sigil/agent/join_token/abc",
    ),
    ("--selector", "unix:uid:1000"),
    ("--x509-svid-ttl", "1h"),
    ("--dns-name", "web.example.org"),
    ("--owner", "team-web"),
    ("--description", "the web tier"),
];

/// `entry create` with [`WEB_ENTRY`]'s flags, `flag` set to `value` (or dropped when `None`),
/// followed by `extra`.
fn create_args<'a>(change: Option<(&'a str, Option<&'a str>)>, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["entry", "create"];
    let mut changed = false;
    for &(flag, value) in WEB_ENTRY {
        match change {
            Some((f, replacement)) if f == flag => {
                changed = true;
                if let Some(v) = replacement {
                    args.extend([flag, v]);
                }
            }
            _ => args.extend([flag, value]),
        }
    }
    assert!(change.is_none() || changed, "unknown flag in {change:?}");
    args.extend(extra);
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entry_create_list_show_update_delete() {
    let server = AdminServer::start().await;

    let created = json(
        &server
            .admin(&create_args(None, &["--output", "json"]))
            .await,
    );
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["spiffe_id"], "spiffe://example.org/web");
    assert_eq!(created["x509_svid_ttl"], 3600);
    assert_eq!(created["revision"], 1);

    let list = json(&server.admin(&["entry", "list", "--output", "json"]).await);
    assert_eq!(list["entries"].as_array().unwrap().len(), 1);
    assert_eq!(list["entries"][0], created);
    let filtered = json(
        &server
            .admin(&[
                "entry",
                "list",
                "--selector",
                "unix:uid:2",
                "--output",
                "json",
            ])
            .await,
    );
    assert_eq!(filtered["entries"].as_array().unwrap().len(), 0);

    let shown = server.admin(&["entry", "show", "--id", &id]).await;
    assert!(shown.status.success(), "{}", stderr(&shown));
    let text = stdout(&shown);
    assert!(
        text.starts_with(&format!("Entry ID      : {id}\n")),
        "{text}"
    );
    assert!(
        text.contains("SPIFFE ID     : spiffe://example.org/web\n"),
        "{text}"
    );
    assert!(text.contains("Selector      : unix:uid:1000\n"), "{text}");
    assert!(text.contains("X509-SVID TTL : 1h\n"), "{text}");
    assert!(text.contains("Owner         : team-web\n"), "{text}");

    let listed = server.admin(&["entry", "list"]).await;
    assert!(
        stdout(&listed).starts_with("Found 1 entry\n\nEntry ID"),
        "{}",
        stdout(&listed)
    );

    let updated = json(
        &server
            .admin(&[
                "entry",
                "update",
                "--id",
                &id,
                "--selector",
                "unix:uid:2000",
                "--admin",
                "--jwt-svid-ttl",
                "5m",
                "--output",
                "json",
            ])
            .await,
    );
    assert_eq!(updated["revision"], 2);
    assert_eq!(updated["selectors"], serde_json::json!(["unix:uid:2000"]));
    assert_eq!(updated["admin"], true);
    assert_eq!(updated["jwt_svid_ttl"], 300);
    assert_eq!(updated["owner"], "team-web", "fields not given are kept");
    assert_eq!(updated["description"], "the web tier");
    assert_eq!(updated["dns_names"], serde_json::json!(["web.example.org"]));
    assert_eq!(updated["x509_svid_ttl"], 3600);

    let deleted = server.admin(&["entry", "delete", "--id", &id]).await;
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    assert_eq!(
        stdout(&deleted),
        format!("Deleted entry {id} (spiffe://example.org/web)\n")
    );
    let list = json(&server.admin(&["entry", "list", "--output", "json"]).await);
    assert_eq!(list, serde_json::json!({"entries": []}));
    let gone = server.admin(&["entry", "show", "--id", &id]).await;
    assert_one_line_failure(&gone, 1, &format!("error: entry `{id}` not found"));

    server.stop().await;
}

/// More entries than one page: `entry list` follows the pages and writes one JSON document
/// equal to the one-page answer, and text output counts every entry; filters reach the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entry_list_follows_pages_to_the_end() {
    let server = AdminServer::start().await;
    for (path, federates) in [("a", None), ("b", Some("partner.org")), ("c", None)] {
        let id = format!("spiffe://example.org/paged/{path}");
        let mut args = create_args(Some(("--spiffe-id", Some(id.as_str()))), &[]);
        if let Some(td) = federates {
            args.extend(["--federates-with", td]);
        }
        let created = server.admin(&args).await;
        assert!(created.status.success(), "{}", stderr(&created));
    }
    // The positive path first: one page holds all three.
    let whole = server.admin(&["entry", "list", "--output", "json"]).await;
    assert!(whole.status.success(), "{}", stderr(&whole));
    let whole_json = json(&whole);
    assert_eq!(whole_json["entries"].as_array().unwrap().len(), 3);
    assert!(whole_json.get("next_page_token").is_none());

    let paged = server
        .admin(&["entry", "list", "--page-size", "2", "--output", "json"])
        .await;
    assert!(paged.status.success(), "{}", stderr(&paged));
    assert_eq!(
        stdout(&paged),
        stdout(&whole),
        "paged JSON equals the one-page JSON"
    );

    let text = server.admin(&["entry", "list", "--page-size", "2"]).await;
    let text = stdout(&text);
    assert_eq!(text.matches("Entry ID").count(), 3, "{text}");
    assert!(text.ends_with("Found 3 entries\n"), "{text}");

    let prefixed = json(
        &server
            .admin(&[
                "entry",
                "list",
                "--page-size",
                "1",
                "--spiffe-id-prefix",
                "spiffe://example.org/paged/",
                "--federates-with",
                "partner.org",
                "--output",
                "json",
            ])
            .await,
    );
    let entries = prefixed["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{prefixed}");
    assert_eq!(entries[0]["spiffe_id"], "spiffe://example.org/paged/b");

    let refused = server.admin(&["entry", "list", "--page-size", "0"]).await;
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("page_size"),
        "{}",
        stderr(&refused)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_entries_fail_with_one_line_and_store_nothing() {
    let server = AdminServer::start().await;
    let cases = [
        (
            create_args(Some(("--spiffe-id", Some("spiffe://Bad/x"))), &[]),
            "error: invalid spiffe_id `spiffe://Bad/x`: trust domain has the character `B`",
        ),
        (
            create_args(None, &["--selector", "unix"]),
            "error: invalid selector `unix`: ",
        ),
        (
            create_args(Some(("--x509-svid-ttl", Some("soon"))), &[]),
            "error: invalid x509_svid_ttl `soon`: ",
        ),
        (
            create_args(Some(("--x509-svid-ttl", Some("0"))), &[]),
            "error: invalid x509_svid_ttl `0`: ",
        ),
        (
            create_args(Some(("--owner", None)), &[]),
            "error: owner is required",
        ),
    ];
    for (args, expected) in cases {
        let o = server.admin(&args).await;
        assert_one_line_failure(&o, 1, expected);
        assert!(o.stdout.is_empty(), "{}", stdout(&o));
    }
    let list = json(&server.admin(&["entry", "list", "--output", "json"]).await);
    assert_eq!(list, serde_json::json!({"entries": []}));
    server.stop().await;
}

/// One line of an `entry create --file` input: a valid entry for `spiffe://example.org/<name>`.
fn entry_line(name: &str) -> String {
    serde_json::json!({
        "spiffe_id": format!("spiffe://example.org/{name}"),
        "parent_id": "spiffe://example.org/sigil/agent/join_token/abc",
        "selectors": ["unix:uid:1000"],
        "owner": "team-web",
    })
    .to_string()
}

/// `entry list --output json`, every page: the entries' SPIFFE IDs, sorted.
async fn listed_ids(server: &AdminServer) -> Vec<String> {
    let list = json(&server.admin(&["entry", "list", "--output", "json"]).await);
    let mut ids: Vec<String> = list["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["spiffe_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// `entry create --file`: newline-delimited entries, sent in batches of at most
/// `MAX_ENTRY_BATCH`, each all or nothing. A file of more than two batches lands whole and in
/// order; a refused entry in the second batch is named by its line, the first batch stays and
/// nothing of the second is stored; malformed lines and mixing `--file` with field flags fail
/// with one line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entry_create_from_file_sends_batches_all_or_nothing() {
    let server = AdminServer::start().await;
    let batch = sigil_api::MAX_ENTRY_BATCH;
    let names: Vec<String> = (0..2 * batch + 1).map(|i| format!("w{i:05}")).collect();
    let mut text: String = names.iter().map(|n| entry_line(n) + "\n").collect();
    text.push_str("\n   \n"); // blank lines are skipped
    let file = server.dir.path().join("entries.ndjson");
    std::fs::write(&file, &text).unwrap();
    let created = json(
        &server
            .admin(&[
                "entry",
                "create",
                "--file",
                file.to_str().unwrap(),
                "--output",
                "json",
            ])
            .await,
    );
    let created: Vec<&str> = created["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["spiffe_id"].as_str().unwrap())
        .collect();
    let wanted: Vec<String> = names
        .iter()
        .map(|n| format!("spiffe://example.org/{n}"))
        .collect();
    assert_eq!(created, wanted, "every entry, in the file's order");
    assert_eq!(listed_ids(&server).await, wanted);

    // The second batch holds a duplicate of an entry of the first call, at line batch + 5.
    let mut lines: Vec<String> = (0..batch + 10)
        .map(|i| entry_line(&format!("x{i:05}")))
        .collect();
    lines[batch + 4] = entry_line("w00003");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let o = server
        .admin(&["entry", "create", "--file", file.to_str().unwrap()])
        .await;
    assert_one_line_failure(
        &o,
        1,
        &format!("error: line {}: entry already exists: ", batch + 5),
    );
    assert!(
        stderr(&o).contains(&format!(
            "so only the {batch} entries before line {} were created",
            batch + 1
        )),
        "{}",
        stderr(&o)
    );
    let stored = listed_ids(&server).await;
    assert_eq!(stored.len(), wanted.len() + batch, "the first batch only");
    assert!(stored.contains(&format!("spiffe://example.org/x{:05}", batch - 1)));
    assert!(!stored.contains(&format!("spiffe://example.org/x{batch:05}")));

    // A line that is not an entry stops the command before anything is sent.
    std::fs::write(&file, entry_line("y1") + "\n{\"spiffe_id\": 5}\n").unwrap();
    let o = server
        .admin(&["entry", "create", "--file", file.to_str().unwrap()])
        .await;
    assert_one_line_failure(&o, 1, "error: line 2 is not an entry: ");
    assert!(stderr(&o).contains("nothing was created"), "{}", stderr(&o));
    let o = server
        .admin(&[
            "entry",
            "create",
            "--file",
            file.to_str().unwrap(),
            "--spiffe-id",
            "spiffe://example.org/z",
        ])
        .await;
    assert_one_line_failure(&o, 2, "error: ");
    assert_eq!(listed_ids(&server).await.len(), wanted.len() + batch);
    server.stop().await;
}

/// Each entry the server can never serve: refused with one line naming the field and the reason,
/// exit 1, nothing stored. Each case differs from an accepted request in exactly the rule it
/// breaks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impossible_entries_fail_with_one_line_and_store_nothing() {
    let server = AdminServer::start().await;
    // The positive path first: the request every case below alters in one rule is accepted.
    let created = json(
        &server
            .admin(&create_args(None, &["--output", "json"]))
            .await,
    );
    assert_eq!(created["spiffe_id"], "spiffe://example.org/web");
    let reserved_parent = "inside the reserved `/sigil` path only agents \
                           (`/sigil/agent/<attestor>/<id>`) and the server (`/sigil/server`) can be parents";
    let cases = [
        (
            create_args(
                Some(("--parent-id", Some("spiffe://example.org/sigil/bogus"))),
                &[],
            ),
            format!("error: invalid parent_id `spiffe://example.org/sigil/bogus`: {reserved_parent}\n"),
        ),
        (
            create_args(
                Some((
                    "--parent-id",
                    Some("spiffe://example.org/sigil/agents/join_token/abc"),
                )),
                &[],
            ),
            format!(
                "error: invalid parent_id `spiffe://example.org/sigil/agents/join_token/abc`: {reserved_parent}\n"
            ),
        ),
        (
            create_args(Some(("--parent-id", Some("spiffe://example.org/web"))), &[]),
            "error: invalid parent_id `spiffe://example.org/web`: an entry cannot be its own parent\n"
                .to_owned(),
        ),
        (
            create_args(Some(("--selector", Some("unix:uid:abc"))), &[]),
            "error: invalid selector `unix:uid:abc`: unix selector `uid` takes a decimal number \
             from 0 to 4294967295, without sign or leading zero\n"
                .to_owned(),
        ),
        (
            create_args(Some(("--selector", Some("unix:uid:-1"))), &[]),
            "error: invalid selector `unix:uid:-1`: unix selector `uid` takes a decimal number \
             from 0 to 4294967295, without sign or leading zero\n"
                .to_owned(),
        ),
        (
            create_args(
                Some(("--spiffe-id", Some("spiffe://example.org/sigil/web"))),
                &[],
            ),
            "error: invalid spiffe_id `spiffe://example.org/sigil/web`: the `/sigil/` path is \
             reserved for agents and the server\n"
                .to_owned(),
        ),
    ];
    for (args, expected) in &cases {
        let o = server.admin(args).await;
        assert_one_line_failure(&o, 1, expected);
        assert!(o.stdout.is_empty(), "{}", stdout(&o));
    }
    let list = json(&server.admin(&["entry", "list", "--output", "json"]).await);
    assert_eq!(list, serde_json::json!({"entries": [created]}));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_create_returns_the_secret_once() {
    let server = AdminServer::start().await;
    let created = json(
        &server
            .admin(&["token", "create", "--ttl", "10m", "--output", "json"])
            .await,
    );
    let token = created["token"].as_str().unwrap();
    assert!(token.len() >= 43, "{token}");
    let id = created["id"].as_str().unwrap();
    assert_eq!(
        created["agent_id"],
        format!("spiffe://example.org/sigil/agent/join_token/{id}")
    );

    let text = server.admin(&["token", "create"]).await;
    assert!(text.status.success(), "{}", stderr(&text));
    assert!(
        stdout(&text).starts_with("Token      : "),
        "{}",
        stdout(&text)
    );
    assert!(stdout(&text).contains("Agent ID   : spiffe://example.org/sigil/agent/join_token/"));

    let too_long = server.admin(&["token", "create", "--ttl", "30d"]).await;
    assert_one_line_failure(&too_long, 1, "error: invalid ttl `30d`: ");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_and_bundle_are_shown() {
    let server = AdminServer::start().await;
    let agents = server.admin(&["agent", "list"]).await;
    assert_eq!(stdout(&agents), "Found 0 agents\n", "{}", stderr(&agents));
    let unknown = server
        .admin(&[
            "agent",
            "show",
            "--spiffe-id",
            "spiffe://example.org/sigil/agent/join_token/x",
        ])
        .await;
    assert_one_line_failure(
        &unknown,
        1,
        "error: agent `spiffe://example.org/sigil/agent/join_token/x` not found",
    );

    // The CA published its bundle at start; without one stored, `bundle show` says so.
    let published = server.admin(&["bundle", "show"]).await;
    assert!(
        stdout(&published).starts_with("-----BEGIN CERTIFICATE-----\n"),
        "{}",
        stderr(&published)
    );
    server.store.delete_bundle("example.org").await.unwrap();
    let missing = server.admin(&["bundle", "show"]).await;
    assert_one_line_failure(&missing, 1, "error: no trust bundle for `example.org` yet");
    let document = serde_json::json!({
        "keys": [{"use": "x509-svid", "kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "x5c": ["MIIBAQID"]}],
        "spiffe_sequence": 1,
    });
    server
        .store
        .put_bundle(StoredBundle {
            trust_domain: TrustDomain::parse("example.org").unwrap(),
            document: serde_json::to_vec(&document).unwrap(),
            sequence: 1,
            updated_at: 1,
        })
        .await
        .unwrap();
    let pem = server.admin(&["bundle", "show"]).await;
    assert_eq!(
        stdout(&pem),
        "-----BEGIN CERTIFICATE-----\nMIIBAQID\n-----END CERTIFICATE-----\n",
        "{}",
        stderr(&pem)
    );
    let spiffe = json(
        &server
            .admin(&["bundle", "show", "--format", "spiffe"])
            .await,
    );
    assert_eq!(spiffe, document);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn svid_revoke_and_revocations() {
    let server = AdminServer::start().await;
    let serial = "4a1b2c3d4e5f60718293a4b5c6d7e8f9";
    let now = SystemClock.unix_secs();
    server
        .store
        .record_issued(vec![IssuedCredential {
            kind: CredentialKind::X509Svid,
            id: serial.to_owned(),
            spiffe_id: SpiffeId::parse("spiffe://example.org/web").unwrap(),
            authority_id: "ab12".to_owned(),
            issued_to: SpiffeId::parse("spiffe://example.org/sigil/agent/join_token/abc").unwrap(),
            issued_at: now,
            expires_at: now + 3600,
        }])
        .await
        .unwrap();
    let none = server.admin(&["svid", "revocations"]).await;
    assert_eq!(stdout(&none), "Found 0 revocations\n", "{}", stderr(&none));

    // As `openssl x509 -text` prints it.
    let revoked = json(
        &server
            .admin(&[
                "svid",
                "revoke",
                "--serial",
                "4A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9",
                "--reason",
                "key leaked",
                "--output",
                "json",
            ])
            .await,
    );
    assert_eq!(revoked["kind"], "x509_svid");
    assert_eq!(revoked["id"], serial);
    assert_eq!(revoked["reason"], "key leaked");
    let listed = server.admin(&["svid", "revocations"]).await;
    let text = stdout(&listed);
    assert!(
        text.starts_with("Found 1 revocation\n\n"),
        "{text}{}",
        stderr(&listed)
    );
    assert!(
        text.contains(&format!("Serial number   : {serial}\n")),
        "{text}"
    );

    let again = server.admin(&["svid", "revoke", "--serial", serial]).await;
    assert_one_line_failure(
        &again,
        1,
        &format!("error: X509-SVID with serial `{serial}` is already revoked\n"),
    );
    let unknown = server
        .admin(&["svid", "revoke", "--serial", "7F:00:01"])
        .await;
    assert_one_line_failure(
        &unknown,
        1,
        "error: no X509-SVID with serial `7f0001` was issued by this server (or it already expired and was pruned)\n",
    );
    let malformed = server
        .admin(&["svid", "revoke", "--serial", "serial=7F"])
        .await;
    assert_one_line_failure(&malformed, 1, "error: invalid serial `serial=7F`: ");
    let both = server
        .admin(&["svid", "revoke", "--serial", "7F", "--jti", "j"])
        .await;
    assert_one_line_failure(
        &both,
        2,
        "error: the argument '--serial <HEX>' cannot be used",
    );
    assert_eq!(
        server.store.list_revocations().await.unwrap().len(),
        1,
        "only the first revoke stored anything"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_admin_socket_is_one_actionable_line() {
    let cwd = tempfile::tempdir().unwrap();
    let o = sigil(cwd.path(), &["entry", "list"]).await;
    assert_one_line_failure(
        &o,
        1,
        "error: cannot reach the admin API at .sigil/admin.sock: no such file or directory (is the server running?)\n",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_are_one_line_with_exit_code_2() {
    let cwd = tempfile::tempdir().unwrap();
    for args in [
        &["entry", "create", "--bogus"][..],
        &["entry", "show"][..],
        &["bundle", "show", "--format", "der"][..],
        &["entry"][..],
        &[][..],
    ] {
        let o = sigil(cwd.path(), args).await;
        assert_one_line_failure(&o, 2, "error: ");
    }
    let help = sigil(cwd.path(), &["entry", "create", "--help"]).await;
    assert_eq!(help.status.code(), Some(0));
    assert!(stdout(&help).contains("--owner"), "{}", stdout(&help));
    let version = sigil(cwd.path(), &["--version"]).await;
    assert_eq!(version.status.code(), Some(0));
    assert!(stdout(&version).starts_with("sigil "));
}
