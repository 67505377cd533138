//! Brokered database credentials through the agent: `sigil creds fetch` as a workload on the
//! agent's socket gets a PostgreSQL or MariaDB user (JSON and shell variables) that the real
//! `psql` and `mariadb` clients log in with; `--exec` hands the credential to a child, renews the
//! lease past its first TTL while the child runs, exits with the child's code and revokes the
//! lease; an identity the policy does not permit gets one "denied by policy" line and no user;
//! deleting the entry revokes the leases made under it.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::creds::*;
use crate::harness::*;

/// `sigil creds fetch TARGET ROLE --spiffe-id ID ARGS…` as a workload of the agent.
fn creds_fetch(
    s: &Setup,
    target: &str,
    role: &str,
    spiffe_id: &str,
    args: &[&str],
) -> std::process::Output {
    let mut all = vec!["creds", "fetch", target, role, "--spiffe-id", spiffe_id];
    all.extend_from_slice(args);
    workload(&s.socket, &all)
}

/// The credential `sigil creds fetch … --format json` prints.
fn fetch_json(s: &Setup, target: &str, role: &str) -> Value {
    let o = creds_fetch(s, target, role, ALLOWED, &["--format", "json"]);
    assert!(o.status.success(), "creds fetch {target}: {}", stderr(&o));
    serde_json::from_str(stdout(&o).trim()).unwrap_or_else(|e| panic!("{e}: {}", stdout(&o)))
}

/// The lease `id` as the admin API shows it.
fn lease(s: &Setup, id: &str) -> Value {
    let o = s.server.admin(&["lease", "show", id, "--output", "json"]);
    assert!(o.status.success(), "lease show: {}", stderr(&o));
    serde_json::from_str(stdout(&o).trim()).unwrap()
}

/// The id of the one entry with SPIFFE ID `spiffe_id`.
fn entry_id(s: &Setup, spiffe_id: &str) -> String {
    let o = s.server.admin(&[
        "entry",
        "list",
        "--spiffe-id",
        spiffe_id,
        "--output",
        "json",
    ]);
    assert!(o.status.success(), "entry list: {}", stderr(&o));
    let listed: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let entries = listed
        .as_array()
        .or_else(|| listed["entries"].as_array())
        .unwrap_or_else(|| panic!("entry list: {listed}"));
    assert_eq!(entries.len(), 1, "{listed}");
    entries[0]["id"].as_str().unwrap().to_owned()
}

#[test]
fn a_workload_fetches_credentials_through_the_agent_and_exec_renews_and_revokes_them() {
    if !clients_present() {
        return;
    }
    let s = setup("agentread");

    // PostgreSQL as JSON: psql logs in with it.
    let pg = fetch_json(&s, "pg", "agentread");
    let pg_user = pg["username"].as_str().unwrap().to_owned();
    assert!(pg_user.starts_with("v_agentread_"), "{pg}");
    assert!(!pg["password"].as_str().unwrap().is_empty(), "{pg}");
    assert_eq!(pg["database"]["type"], "postgresql", "{pg}");
    let o = output(psql(&pg, "SELECT current_user"));
    assert!(o.status.success(), "psql: {}", stderr(&o));
    assert_eq!(stdout(&o).trim(), pg_user);

    // MariaDB as shell variables: a shell reads them and the mariadb client logs in with them
    // (the password only from MYSQL_PWD).
    let o = creds_fetch(&s, "maria", "agentread", ALLOWED, &["--format", "env"]);
    assert!(o.status.success(), "creds fetch maria: {}", stderr(&o));
    let vars = stdout(&o);
    for line in [
        "MYSQL_HOST=127.0.0.1",
        "MYSQL_TCP_PORT=3306",
        "MYSQL_DATABASE=test",
    ] {
        assert!(vars.lines().any(|l| l == line), "no `{line}` in {vars}");
    }
    for name in [
        "SIGIL_LEASE_ID=",
        "MYSQL_USER=v_agentread_",
        "MYSQL_PWD=",
        "DATABASE_URL=",
    ] {
        assert!(
            vars.lines().any(|l| l.starts_with(name)),
            "no `{name}` in {vars}"
        );
    }
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "set -a\n{vars}set +a\necho \"$MYSQL_USER\"\n\
             exec mariadb -h \"$MYSQL_HOST\" -P \"$MYSQL_TCP_PORT\" -u \"$MYSQL_USER\" \
             --connect-timeout=5 -N -B -e 'SELECT CURRENT_USER()' \"$MYSQL_DATABASE\""
        ))
        .output()
        .unwrap();
    assert!(o.status.success(), "mariadb: {}", stderr(&o));
    let out = stdout(&o);
    let mut lines = out.lines();
    let maria_user = lines.next().unwrap().to_owned();
    assert!(maria_user.starts_with("v_agentread_"), "{out}");
    assert_eq!(
        lines.next(),
        Some(format!("{maria_user}@%").as_str()),
        "{out}"
    );

    // --exec: the child gets PG* variables, the lease outlives its first 6 s TTL because it is
    // renewed, sigil exits with the child's code, and the lease is revoked after it.
    let o = creds_fetch(
        &s,
        "pg",
        "agentread",
        ALLOWED,
        &[
            "--ttl",
            "6s",
            "--exec",
            "sh",
            "-c",
            "echo \"lease=$SIGIL_LEASE_ID\"; psql -X -tAc 'select current_user' && sleep 8 \
             && psql -X -tAc 'select 41 + 1' && exit 7",
        ],
    );
    let out = stdout(&o);
    assert_eq!(
        o.status.code(),
        Some(7),
        "creds fetch --exec: {out}{}",
        stderr(&o)
    );
    let mut lines = out.lines();
    let lease_id = lines
        .next()
        .and_then(|l| l.strip_prefix("lease="))
        .unwrap_or_else(|| panic!("{out}"))
        .to_owned();
    let exec_user = lines.next().unwrap_or_default().to_owned();
    assert!(exec_user.starts_with("v_agentread_"), "{out}");
    assert_eq!(lines.next(), Some("42"), "{out}");
    let shown = lease(&s, &lease_id);
    assert_eq!(shown["username"], exec_user.as_str(), "{shown}");
    assert!(
        shown["renewed_at"].is_i64(),
        "the lease was never renewed: {shown}"
    );
    assert_eq!(shown["state"], "revoked", "{shown}");
    assert!(!pg_role_exists(&exec_user), "`{exec_user}` outlived sigil");

    // Not permitted: one line naming the policy, a failure, and no user made.
    let before = (
        pg_roles_like("v_agentread_"),
        maria_users_like("v_agentread_"),
    );
    for target in ["pg", "maria"] {
        let o = creds_fetch(&s, target, "agentread", INTRUDER, &["--format", "json"]);
        assert_one_line_error(&o, "denied by policy");
        assert!(o.stdout.is_empty(), "{}", stdout(&o));
    }
    assert_eq!(
        (
            pg_roles_like("v_agentread_"),
            maria_users_like("v_agentread_")
        ),
        before
    );
}

#[test]
fn deleting_the_entry_revokes_the_leases_fetched_through_the_agent() {
    if !clients_present() {
        return;
    }
    let s = setup("agentgone");
    let entry = entry_id(&s, ALLOWED);
    let pg = fetch_json(&s, "pg", "agentgone");
    let maria = fetch_json(&s, "maria", "agentgone");
    let pg_user = pg["username"].as_str().unwrap().to_owned();
    let maria_user = maria["username"].as_str().unwrap().to_owned();
    // Leases made through the agent carry the entry and the agent.
    for credential in [&pg, &maria] {
        let shown = lease(&s, credential["lease_id"].as_str().unwrap());
        assert_eq!(shown["entry_id"], entry.as_str(), "{shown}");
        assert_eq!(shown["spiffe_id"], ALLOWED, "{shown}");
        assert!(shown["agent_id"].is_string(), "{shown}");
        assert_eq!(shown["state"], "active", "{shown}");
    }
    let session = open_session(psql(&pg, "SELECT pg_sleep(120)"), || {
        pg_admin(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = '{pg_user}'"
        )) != "0"
    });
    assert!(output(mariadb(&maria, "SELECT 1")).status.success());

    let o = s.server.admin(&["entry", "delete", "--id", &entry]);
    assert!(o.status.success(), "entry delete: {}", stderr(&o));
    wait_for(
        Duration::from_secs(10),
        "the entry's users to be dropped",
        || (!pg_role_exists(&pg_user) && !maria_user_exists(&maria_user)).then_some(()),
    );
    assert_terminated(session, "the psql session to end with its entry");
    assert!(!output(psql(&pg, "SELECT 1")).status.success());
    assert!(!output(mariadb(&maria, "SELECT 1")).status.success());
    for credential in [&pg, &maria] {
        let shown = lease(&s, credential["lease_id"].as_str().unwrap());
        assert_eq!(shown["state"], "revoked", "{shown}");
    }
}
