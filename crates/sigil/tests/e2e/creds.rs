//! Brokered database credentials against the real PostgreSQL and MariaDB on 127.0.0.1: a
//! workload proves itself with its JWT-SVID (curl as the client), gets a user, logs in with
//! `psql` and the `mariadb` client and queries; `sigil lease revoke` and, separately, TTL expiry
//! end its open sessions and its logins; a workload the policy does not permit gets a 403 and no
//! user is created; bad targets, roles, TTLs, templates, an unreachable database and a wrong
//! administrative password each get their own clear error; kill -9 of the server with live
//! leases leaves no user behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

pub(crate) const ALLOWED: &str = "spiffe://example.org/creds/orders";
pub(crate) const INTRUDER: &str = "spiffe://example.org/creds/intruder";

/// Whether the command-line clients are installed; in CI they must be.
pub(crate) fn clients_present() -> bool {
    let present = |bin: &str| {
        Command::new(bin)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if present("psql") && present("mariadb") {
        return true;
    }
    missing_prerequisite("psql and the mariadb client");
    false
}

fn policies(dir: &Path) -> PathBuf {
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(
        policies.join("sigil.cedar"),
        format!(
            "@id(\"issue\")\npermit (principal, action in [Sigil::Action::\"IssueX509Svid\", Sigil::Action::\"IssueJwtSvid\"], resource);\n\n\
             @id(\"orders-read\")\npermit (principal, action == Sigil::Action::\"RequestCredential\", resource)\n\
             when {{ principal.spiffe_id == \"{ALLOWED}\" && resource.kind == \"credential_role\" }};\n"
        ),
    )
    .unwrap();
    policies
}

/// `[[credentials.targets]]` for the local PostgreSQL (trust auth: the password file's content
/// is not checked) and MariaDB (root, empty password), plus targets that cannot work.
fn targets(dir: &Path, role: &str) -> String {
    let unused = dir.join("pg.password");
    std::fs::write(&unused, "unused\n").unwrap();
    let empty = dir.join("maria.password");
    std::fs::write(&empty, "").unwrap();
    let wrong = dir.join("wrong.password");
    std::fs::write(&wrong, "not-the-root-password\n").unwrap();
    format!(
        r#"
[[credentials.targets]]
name = "pg"
type = "postgresql"
url = "postgres://postgres@127.0.0.1:5432/test"
password_file = "{unused}"
owner = "team-orders"
max_ttl = "10m"
[[credentials.targets.roles]]
name = "{role}"
creation_statements = ["CREATE ROLE \"{{{{name}}}}\" LOGIN PASSWORD '{{{{password}}}}' VALID UNTIL '{{{{expiration}}}}'"]
[[credentials.targets.roles]]
name = "broken"
creation_statements = ["CREATE ROLE \"{{{{name}}}}\" LOGIN PASSWORD '{{{{password}}}}'", "GRANT NOTHING TO \"{{{{name}}}}\""]

[[credentials.targets]]
name = "maria"
type = "mariadb"
url = "mysql://root@127.0.0.1:3306/test"
password_file = "{empty}"
owner = "team-orders"
max_ttl = "10m"
[[credentials.targets.roles]]
name = "{role}"
creation_statements = ["CREATE USER '{{{{name}}}}'@'%' IDENTIFIED BY '{{{{password}}}}'", "GRANT SELECT ON test.* TO '{{{{name}}}}'@'%'"]
[[credentials.targets.roles]]
name = "broken"
creation_statements = ["CREATE USER '{{{{name}}}}'@'%' IDENTIFIED BY '{{{{password}}}}'", "GRANT NOTHING ON test.* TO '{{{{name}}}}'@'%'"]

[[credentials.targets]]
name = "down"
type = "postgresql"
url = "postgres://postgres@127.0.0.1:1/test"
password_file = "{unused}"
owner = "team-orders"
[[credentials.targets.roles]]
name = "{role}"
creation_statements = ["CREATE ROLE \"{{{{name}}}}\" LOGIN"]

[[credentials.targets]]
name = "maria-wrong-password"
type = "mariadb"
url = "mysql://root@127.0.0.1:3306/test"
password_file = "{wrong}"
owner = "team-orders"
[[credentials.targets.roles]]
name = "{role}"
creation_statements = ["CREATE USER '{{{{name}}}}'@'%' IDENTIFIED BY '{{{{password}}}}'"]
"#,
        unused = unused.display(),
        empty = empty.display(),
        wrong = wrong.display(),
    )
}

/// A server with the targets and the policy, an agent, and entries for the allowed workload and
/// the intruder (both this test's uid); returns them with the issuer URL and the web PKI CA.
pub(crate) struct Setup {
    _tmp: tempfile::TempDir,
    pub(crate) server: TestServer,
    _agent: Daemon,
    pub(crate) socket: PathBuf,
    issuer: String,
    ca: PathBuf,
}

pub(crate) fn setup(role: &str) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert, key) = crate::oidc::web_pki(&tmp.path().join("pki"));
    let policies = policies(tmp.path());
    let port = free_port();
    let issuer = format!("https://localhost:{port}");
    let server = TestServer::start_with(
        &tmp.path().join("server"),
        &format!(
            "\n[public]\nbind_address = \"127.0.0.1:{port}\"\ntls = \"files\"\ncert_file = \"{}\"\n\
             key_file = \"{}\"\nissuer = \"{issuer}\"\n[policy]\ndir = \"{}\"\n{}",
            cert.display(),
            key.display(),
            policies.display(),
            targets(tmp.path(), role),
        ),
    );
    let (token, agent_id) = server.join_token("10m");
    let paths = agent_config(&tmp.path().join("agent"), &server, Some(&token));
    let agent = start_agent(&paths);
    create_uid_entry(&server, ALLOWED, &agent_id);
    create_uid_entry(&server, INTRUDER, &agent_id);
    let o = fetch_svid_files(&paths.socket, &tmp.path().join("svid"));
    assert!(o.status.success(), "svid fetch: {}", stderr(&o));
    Setup {
        _tmp: tmp,
        server,
        _agent: agent,
        socket: paths.socket.clone(),
        issuer,
        ca,
    }
}

impl Setup {
    fn jwt(&self, spiffe_id: &str) -> String {
        let o = workload(
            &self.socket,
            &[
                "jwt",
                "fetch",
                "--audience",
                &self.issuer,
                "--spiffe-id",
                spiffe_id,
            ],
        );
        assert!(o.status.success(), "jwt fetch: {}", stderr(&o));
        stdout(&o).trim().to_owned()
    }

    /// POSTs `body` to `path` as `spiffe_id`; returns the status and the JSON body.
    fn post(&self, spiffe_id: &str, path: &str, body: &str) -> (u16, Value) {
        let jwt = self.jwt(spiffe_id);
        let o = Command::new("curl")
            .args(["--silent", "--show-error", "--cacert"])
            .arg(&self.ca)
            .args([
                "-H",
                &format!("Authorization: Bearer {jwt}"),
                "-H",
                "Content-Type: application/json",
                "--data",
                body,
                "--write-out",
                "\n%{http_code}",
                &format!("{}{path}", self.issuer),
            ])
            .output()
            .expect("curl must be installed");
        assert!(o.status.success(), "curl: {}", stderr(&o));
        let out = stdout(&o);
        let (body, code) = out.trim_end().rsplit_once('\n').unwrap_or(("", out.trim()));
        let value = if body.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
        };
        (code.trim().parse().unwrap(), value)
    }

    fn fetch(&self, spiffe_id: &str, target: &str, role: &str, ttl: &str) -> (u16, Value) {
        self.post(
            spiffe_id,
            "/creds/v1/credentials",
            &format!("{{\"target\":\"{target}\",\"role\":\"{role}\",\"ttl\":\"{ttl}\"}}"),
        )
    }
}

pub(crate) fn psql(credential: &Value, sql: &str) -> Command {
    let mut c = Command::new("psql");
    c.env("PGPASSWORD", credential["password"].as_str().unwrap())
        .env("PGCONNECT_TIMEOUT", "5")
        .args(["-h", "127.0.0.1", "-p", "5432", "-d", "test", "-U"])
        .arg(credential["username"].as_str().unwrap())
        .args(["-X", "-tAc", sql]);
    c
}

pub(crate) fn mariadb(credential: &Value, sql: &str) -> Command {
    let mut c = Command::new("mariadb");
    c.args([
        "-h",
        "127.0.0.1",
        "-P",
        "3306",
        "--connect-timeout=5",
        "-N",
        "-B",
        "-u",
    ])
    .arg(credential["username"].as_str().unwrap())
    .arg(format!("-p{}", credential["password"].as_str().unwrap()))
    .args(["-e", sql]);
    c
}

/// The admin's view: a query as `postgres` or MariaDB's root.
pub(crate) fn pg_admin(sql: &str) -> String {
    let o = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "test",
            "-X",
            "-tAc",
            sql,
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "psql: {}", stderr(&o));
    stdout(&o).trim().to_owned()
}

fn maria_admin(sql: &str) -> String {
    let o = Command::new("mariadb")
        .args(["-h", "127.0.0.1", "-u", "root", "-N", "-B", "-e", sql])
        .output()
        .unwrap();
    assert!(o.status.success(), "mariadb: {}", stderr(&o));
    stdout(&o).trim().to_owned()
}

pub(crate) fn pg_role_exists(name: &str) -> bool {
    pg_admin(&format!(
        "SELECT count(*) FROM pg_roles WHERE rolname = '{name}'"
    )) != "0"
}

pub(crate) fn maria_user_exists(name: &str) -> bool {
    maria_admin(&format!(
        "SELECT count(*) FROM mysql.user WHERE user = '{name}'"
    )) != "0"
}

pub(crate) fn pg_roles_like(prefix: &str) -> String {
    pg_admin(&format!(
        "SELECT count(*) FROM pg_roles WHERE rolname LIKE '{prefix}%'"
    ))
}

pub(crate) fn maria_users_like(prefix: &str) -> String {
    maria_admin(&format!(
        "SELECT count(*) FROM mysql.user WHERE user LIKE '{prefix}%'"
    ))
}

/// A session held open by `command` (a long sleep), once the database shows it.
pub(crate) fn open_session(mut command: Command, visible: impl Fn() -> bool) -> Child {
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(10), "the session to open", || {
        visible().then_some(())
    });
    child
}

/// Waits for a held session to be ended by the server (not by its own sleep running out).
pub(crate) fn assert_terminated(mut child: Child, what: &str) {
    let status = wait_for(Duration::from_secs(20), what, || child.try_wait().unwrap());
    assert!(!status.success(), "{what}: the session ended normally");
}

pub(crate) fn output(mut c: Command) -> Output {
    c.output().unwrap()
}

#[test]
fn a_workload_gets_database_users_by_policy_and_loses_them_on_revoke_and_expiry() {
    if !clients_present() {
        return;
    }
    let s = setup("reader");

    // PostgreSQL: issued, logged in with psql, queried.
    let (code, pg) = s.fetch(ALLOWED, "pg", "reader", "5m");
    assert_eq!(code, 201, "{pg}");
    let pg_user = pg["username"].as_str().unwrap().to_owned();
    assert!(pg_user.starts_with("v_reader_"), "{pg}");
    assert_eq!(pg["database"]["type"], "postgresql");
    let o = output(psql(&pg, "SELECT current_user"));
    assert!(o.status.success(), "psql: {}", stderr(&o));
    assert_eq!(stdout(&o).trim(), pg_user);

    // MariaDB: issued, logged in with the mariadb client, queried.
    let (code, maria) = s.fetch(ALLOWED, "maria", "reader", "5m");
    assert_eq!(code, 201, "{maria}");
    let maria_user = maria["username"].as_str().unwrap().to_owned();
    let o = output(mariadb(&maria, "SELECT CURRENT_USER()"));
    assert!(o.status.success(), "mariadb: {}", stderr(&o));
    assert_eq!(stdout(&o).trim(), format!("{maria_user}@%"));

    // `sigil lease revoke`: open sessions end, new logins fail, the users are gone.
    let pg_session = open_session(psql(&pg, "SELECT pg_sleep(120)"), || {
        pg_admin(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = '{pg_user}'"
        )) != "0"
    });
    let maria_session = open_session(mariadb(&maria, "SELECT SLEEP(120)"), || {
        maria_admin(&format!(
            "SELECT count(*) FROM information_schema.processlist WHERE user = '{maria_user}'"
        )) != "0"
    });
    for credential in [&pg, &maria] {
        let o = s
            .server
            .admin(&["lease", "revoke", credential["lease_id"].as_str().unwrap()]);
        assert!(o.status.success(), "lease revoke: {}", stderr(&o));
    }
    assert_terminated(pg_session, "the psql session to be terminated");
    assert_terminated(maria_session, "the mariadb session to be killed");
    assert!(!output(psql(&pg, "SELECT 1")).status.success());
    assert!(!output(mariadb(&maria, "SELECT 1")).status.success());
    assert!(!pg_role_exists(&pg_user));
    assert!(!maria_user_exists(&maria_user));

    // TTL expiry, separately: the server revokes on its own when the lease runs out.
    let (code, short_pg) = s.fetch(ALLOWED, "pg", "reader", "4s");
    assert_eq!(code, 201, "{short_pg}");
    let (code, short_maria) = s.fetch(ALLOWED, "maria", "reader", "4s");
    assert_eq!(code, 201, "{short_maria}");
    let short_pg_user = short_pg["username"].as_str().unwrap().to_owned();
    let short_maria_user = short_maria["username"].as_str().unwrap().to_owned();
    let pg_session = open_session(psql(&short_pg, "SELECT pg_sleep(120)"), || {
        pg_admin(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = '{short_pg_user}'"
        )) != "0"
    });
    let maria_session = open_session(mariadb(&short_maria, "SELECT SLEEP(120)"), || {
        maria_admin(&format!(
            "SELECT count(*) FROM information_schema.processlist WHERE user = '{short_maria_user}'"
        )) != "0"
    });
    assert_terminated(pg_session, "the psql session to end at expiry");
    assert_terminated(maria_session, "the mariadb session to end at expiry");
    assert!(!output(psql(&short_pg, "SELECT 1")).status.success());
    assert!(!output(mariadb(&short_maria, "SELECT 1")).status.success());
    assert!(!pg_role_exists(&short_pg_user));
    assert!(!maria_user_exists(&short_maria_user));

    // Not permitted: 403 with the policy's words, and no user created.
    let before = (pg_roles_like("v_reader_"), maria_users_like("v_reader_"));
    for target in ["pg", "maria"] {
        let (code, body) = s.fetch(INTRUDER, target, "reader", "5m");
        assert_eq!(code, 403, "{body}");
        assert_eq!(body["error"], "access_denied", "{body}");
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .contains("denied by policy"),
            "{body}"
        );
    }
    assert_eq!(
        (pg_roles_like("v_reader_"), maria_users_like("v_reader_")),
        before
    );
    // Every lease of the test is revoked, none left active.
    let o = s
        .server
        .admin(&["lease", "list", "--state", "active", "--output", "json"]);
    assert!(o.status.success(), "lease list: {}", stderr(&o));
    let listed: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(listed.as_array().map_or(0, Vec::len), 0, "{listed}");
}

#[test]
fn bad_requests_and_failing_targets_get_clear_errors_and_leave_no_user() {
    if !clients_present() {
        return;
    }
    let s = setup("checker");
    // The positive path first, so the refusals below cannot pass vacuously.
    let (code, ok) = s.fetch(ALLOWED, "pg", "checker", "1m");
    assert_eq!(code, 201, "{ok}");

    let cases: [(&str, &str, &str, u16, &str, &str); 6] = [
        (
            "nosuch",
            "checker",
            "1m",
            404,
            "not_found",
            "no credential target `nosuch`",
        ),
        (
            "pg",
            "nosuch",
            "1m",
            404,
            "not_found",
            "has no role `nosuch`",
        ),
        (
            "pg",
            "checker",
            "11m",
            400,
            "invalid_request",
            "longer than the role's maximum",
        ),
        (
            "pg",
            "broken",
            "1m",
            502,
            "bad_gateway",
            "rejected statement 2",
        ),
        (
            "down",
            "checker",
            "1m",
            503,
            "temporarily_unavailable",
            "cannot reach the database at `127.0.0.1:1`",
        ),
        (
            "maria-wrong-password",
            "checker",
            "1m",
            502,
            "bad_gateway",
            "refused the login of `root`",
        ),
    ];
    for (target, role, ttl, status, error, words) in cases {
        let (code, body) = s.fetch(ALLOWED, target, role, ttl);
        assert_eq!(code, status, "{target}/{role}: {body}");
        assert_eq!(body["error"], error, "{body}");
        let description = body["error_description"].as_str().unwrap();
        assert!(
            description.contains(words),
            "{target}/{role}: {description}"
        );
    }
    // MariaDB commits the first statement before the second fails: the user it made is dropped.
    let (code, body) = s.fetch(ALLOWED, "maria", "broken", "1m");
    assert_eq!(code, 502, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("rejected statement 2"),
        "{body}"
    );
    assert_eq!(maria_users_like("v_broken_"), "0");
    assert_eq!(pg_roles_like("v_broken_"), "0");
    // Malformed bodies and a missing credential.
    let (code, body) = s.post(ALLOWED, "/creds/v1/credentials", "{\"target\":\"pg\"}");
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["error"], "invalid_request");
    let o = Command::new("curl")
        .args(["--silent", "--cacert"])
        .arg(&s.ca)
        .args(["--data", "{}", "--write-out", "\n%{http_code}"])
        .arg(format!("{}/creds/v1/credentials", s.issuer))
        .output()
        .unwrap();
    assert!(stdout(&o).trim_end().ends_with("401"), "{}", stdout(&o));

    // A template error in the configuration stops start-up, naming the target and field.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("server.toml");
    std::fs::write(dir.path().join("pw"), "x").unwrap();
    std::fs::write(
        &config,
        format!(
            "[server]\ntrust_domain = \"example.org\"\nbind_address = \"127.0.0.1:{}\"\n\
             data_dir = \"{}\"\n[[credentials.targets]]\nname = \"pg\"\ntype = \"postgresql\"\n\
             url = \"postgres://postgres@127.0.0.1:5432/test\"\npassword_file = \"{}\"\n\
             owner = \"team-orders\"\n[[credentials.targets.roles]]\nname = \"reader\"\n\
             creation_statements = [\"CREATE ROLE {{{{nmae}}}} LOGIN\"]\n",
            free_port(),
            dir.path().join("data").display(),
            dir.path().join("pw").display(),
        ),
    )
    .unwrap();
    let o = sigil(&["server", "run", "-c", config.to_str().unwrap()]);
    assert_one_line_error(&o, "credentials.targets[0]");
    assert!(stderr(&o).contains("nmae"), "{}", stderr(&o));
}

#[test]
fn leases_live_through_kill_9_and_are_revoked_at_their_expiry() {
    if !clients_present() {
        return;
    }
    let mut s = setup("survivor");
    // One lease expires while the server is down, one after it is back.
    let (code, early) = s.fetch(ALLOWED, "pg", "survivor", "3s");
    assert_eq!(code, 201, "{early}");
    let (code, late) = s.fetch(ALLOWED, "maria", "survivor", "12s");
    assert_eq!(code, 201, "{late}");
    let (code, late_pg) = s.fetch(ALLOWED, "pg", "survivor", "12s");
    assert_eq!(code, 201, "{late_pg}");
    let early_user = early["username"].as_str().unwrap().to_owned();
    let late_user = late["username"].as_str().unwrap().to_owned();
    let late_pg_user = late_pg["username"].as_str().unwrap().to_owned();
    let session = open_session(psql(&late_pg, "SELECT pg_sleep(120)"), || {
        pg_admin(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = '{late_pg_user}'"
        )) != "0"
    });
    s.server.daemon_mut().kill9();
    std::thread::sleep(Duration::from_secs(5));
    // Down past the first expiry: the user is still there, nobody revoked it.
    assert!(pg_role_exists(&early_user));
    s.server.respawn();
    wait_for(
        Duration::from_secs(15),
        "the lease that expired while down to be revoked",
        || (!pg_role_exists(&early_user)).then_some(()),
    );
    // The others still live until their own expiry, then go, with their session.
    assert!(maria_user_exists(&late_user));
    assert!(pg_role_exists(&late_pg_user));
    assert_terminated(session, "the session to end at the lease's expiry");
    wait_for(
        Duration::from_secs(20),
        "the remaining users to be dropped",
        || (!maria_user_exists(&late_user) && !pg_role_exists(&late_pg_user)).then_some(()),
    );
    assert_eq!(pg_roles_like("v_survivor_"), "0");
    assert_eq!(maria_users_like("v_survivor_"), "0");
}
