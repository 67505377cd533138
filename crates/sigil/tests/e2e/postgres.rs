//! The server on PostgreSQL (`[datastore] kind = "postgres"`), as real processes: the core path
//! (entry, attestation, a workload's SVID) on a fresh database created with `psql`, and an
//! unreachable database at start as one clear error line and a non-zero exit.
//!
//! PostgreSQL must answer on 127.0.0.1:5432 (`scripts/postgres.sh` sees to it in CI); without it
//! the tests return early, except under `CI`, where they fail.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

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

/// A TCP proxy from a local port to PostgreSQL that the test can cut (every open connection
/// reset, new ones refused by closing them at once) and restore: the database "lost" for one
/// server only.
struct CuttableProxy {
    port: u16,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    streams: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl CuttableProxy {
    fn to_postgres() -> Self {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let streams = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (accept_open, accept_streams) = (open.clone(), streams.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if !accept_open.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(upstream) = std::net::TcpStream::connect("127.0.0.1:5432") else {
                    continue;
                };
                let mut kept = accept_streams.lock().unwrap();
                kept.push(client.try_clone().unwrap());
                kept.push(upstream.try_clone().unwrap());
                drop(kept);
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), upstream.try_clone().unwrap()),
                    (upstream, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Self {
            port,
            open,
            streams,
        }
    }

    fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        for stream in self.streams.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The database lost while a server runs: its workloads keep being served from memory, admin
/// writes through it fail with a clear error, and once the database is back it recovers by
/// itself, including a change another replica made meanwhile (no change is lost).
#[test]
fn a_server_survives_losing_its_database_and_catches_up_when_it_returns() {
    let Some(db) = Database::create() else {
        return;
    };
    let proxy = CuttableProxy::to_postgres();
    let tmp = tempfile::tempdir().unwrap();
    let proxied = db.url().replace(":5432/", &format!(":{}/", proxy.port));
    let server = TestServer::start_with(
        &tmp.path().join("s"),
        &format!("replica_id = \"s\"\n{}", postgres_table(&proxied)),
    );
    // A second replica with a direct connection, to write while `server` has none.
    let other = TestServer::start_with(
        &tmp.path().join("o"),
        &format!("replica_id = \"o\"\n{}", postgres_table(&db.url())),
    );
    let (token, agent_id) = server.join_token("10m");
    let paths = agent_config(&tmp.path().join("agent"), &server, Some(&token));
    let _agent = start_agent(&paths);
    create_uid_entry(&server, "spiffe://example.org/before", &agent_id);
    let o = fetch_svid_files(&paths.socket, &tmp.path().join("svid-1"));
    assert!(stdout(&o).contains("spiffe://example.org/before"));

    proxy.cut();
    // Workloads are still served.
    let o = workload(
        &paths.socket,
        &[
            "svid",
            "fetch",
            "--write",
            tmp.path().join("svid-2").to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // Admin writes through this server fail, one clear line.
    let refused = wait_for(Duration::from_secs(30), "an admin write to fail", || {
        let o = server.admin(&[
            "entry",
            "create",
            "--spiffe-id",
            "spiffe://example.org/during",
            "--parent-id",
            &agent_id,
            "--selector",
            "unix:uid:1",
            "--owner",
            "team-e2e",
        ]);
        (!o.status.success()).then_some(o)
    });
    assert_one_line_error(&refused, "datastore");
    // Meanwhile another replica writes.
    create_uid_entry(&other, "spiffe://example.org/meanwhile", &agent_id);

    proxy.restore();
    // The change made while this server had no database reaches its agent's workload.
    wait_for(Duration::from_secs(60), "the change made meanwhile", || {
        let o = workload(
            &paths.socket,
            &[
                "svid",
                "fetch",
                "--write",
                tmp.path().join("svid-3").to_str().unwrap(),
            ],
        );
        stdout(&o)
            .contains("spiffe://example.org/meanwhile")
            .then_some(())
    });
    // And writes through this server work again.
    wait_for(Duration::from_secs(60), "an admin write to succeed", || {
        let o = server.admin(&["entry", "list", "--output", "json"]);
        o.status.success().then_some(())
    });
    create_uid_entry(&server, "spiffe://example.org/after", &agent_id);
}
