//! The server on PostgreSQL (`[datastore] kind = "postgres"`), as real processes: the core path
//! (entry, attestation, a workload's SVID) on a fresh database created with `psql`, and an
//! unreachable database at start as one clear error line and a non-zero exit.
//!
//! PostgreSQL must answer on 127.0.0.1:5432 (`scripts/postgres.sh` sees to it in CI); without it
//! the tests return early, except under `CI`, where they fail.

use std::path::Path;
use std::process::Command;

use crate::harness::*;

const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A fresh, empty database, dropped when this is dropped.
pub struct Database {
    name: String,
}

impl Database {
    /// `None` (after a notice) when PostgreSQL does not answer and `CI` is not set.
    pub fn create() -> Option<Self> {
        let name = format!(
            "sigil_e2e_{}",
            sigil_keys::digest::hex(&sigil_keys::random_bytes(6).unwrap())
        );
        match Command::new("psql")
            .args([ADMIN_URL, "-qc", &format!("CREATE DATABASE {name}")])
            .output()
        {
            Ok(o) if o.status.success() => Some(Self { name }),
            other => {
                let why = match other {
                    Ok(o) => stderr(&o),
                    Err(e) => e.to_string(),
                };
                assert!(
                    std::env::var_os("CI").is_none(),
                    "PostgreSQL on 127.0.0.1:5432 is required under CI: {why}"
                );
                eprintln!("skipped: PostgreSQL on 127.0.0.1:5432 is not available: {why}");
                None
            }
        }
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.name)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                ADMIN_URL,
                "-qc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}

pub fn postgres_table(url: &str) -> String {
    format!("\n[datastore]\nkind = \"postgres\"\nurl = \"{url}\"\npool_size = 4\n")
}

#[test]
fn a_workload_gets_its_svid_through_a_server_on_postgres() {
    let Some(db) = Database::create() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(tmp.path(), &postgres_table(&db.url()));
    let (token, agent_id) = server.join_token("10m");
    let paths = agent_config(&tmp.path().join("agent"), &server, Some(&token));
    let _agent = start_agent(&paths);
    create_uid_entry(&server, "spiffe://example.org/on-postgres", &agent_id);
    let out = tmp.path().join("svid");
    let o = fetch_svid_files(&paths.socket, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    let leaf = std::fs::read_to_string(out.join("svid.pem")).unwrap();
    let der = sigil_keys::pem::decode_all("CERTIFICATE", &leaf)
        .unwrap()
        .remove(0);
    assert_eq!(
        sigil_tls::peer_spiffe_id(&der).unwrap().as_str(),
        "spiffe://example.org/on-postgres"
    );

    // The records are in PostgreSQL, as psql sees them.
    let count = Command::new("psql")
        .args([db.url().as_str(), "-Atqc", "SELECT count(*) FROM entries"])
        .output()
        .unwrap();
    assert_eq!(stdout(&count).trim(), "1", "{}", stderr(&count));
}

#[test]
fn an_unreachable_database_at_start_is_one_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = tmp.path().join("server.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ntrust_domain = \"example.org\"\nbind_address = \"127.0.0.1:{}\"\ndata_dir = \"{}\"\n{}",
            free_port(),
            tmp.path().join("data").display(),
            postgres_table(&format!("postgres://postgres@127.0.0.1:{port}/sigil"))
        ),
    )
    .unwrap();
    let o = sigil(&["server", "run", "-c", config.to_str().unwrap()]);
    assert_one_line_error(&o, &format!("127.0.0.1:{port}"));
    assert!(!Path::new(&tmp.path().join("data").join("admin.sock")).exists());
}
