//! A private PostgreSQL server for the tests that need what the shared one (trust
//! authentication, not to be reconfigured) cannot give: SCRAM passwords and client certificates
//! over TLS. `initdb` into a temporary directory, the caller's certificates and `pg_hba.conf`,
//! a free port on 127.0.0.1, stopped (`-m immediate`) and removed on drop. Run as `postgres`
//! through `runuser` when the tests run as root, since PostgreSQL refuses to.
//!
//! The binaries are PostgreSQL's own (`/usr/lib/postgresql/<version>/bin`, Debian's layout, which
//! `scripts/postgres.sh` installs). Where they are missing, `start` prints a notice and returns
//! `None`, unless `CI` is set: then it fails the test.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The superuser's password.
pub const SUPERUSER_PASSWORD: &str = "postmaster-superuser";

/// The server's TLS material, PEM.
pub struct ServerTls<'a> {
    pub cert: &'a str,
    pub key: &'a str,
    /// The CA that client certificates must chain to (`ssl_ca_file`).
    pub client_ca: &'a str,
}

/// A running private server.
pub struct Postmaster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// `postgres`'s uid and gid when this process is root (files are given to it, commands run
    /// as it).
    run_as: Option<(u32, u32)>,
    pub port: u16,
}

impl Postmaster {
    /// Starts a server with `tls` and the `pg_hba.conf` lines `hba`; `None`, after a notice, when
    /// PostgreSQL is not installed outside CI.
    pub fn start(tls: &ServerTls<'_>, hba: &str) -> Option<Self> {
        let Some(bin) = bin_dir() else {
            let why = "no /usr/lib/postgresql/*/bin/initdb (scripts/postgres.sh installs it)";
            assert!(
                std::env::var_os("CI").is_none_or(|ci| ci.is_empty()),
                "the private-postmaster tests may not be skipped under CI: {why}"
            );
            let _ = writeln!(
                std::io::stderr(),
                "NOTICE: skipping a private-postmaster test: {why}"
            );
            return None;
        };
        let run_as = nix::unistd::geteuid().is_root().then(|| {
            let user = nix::unistd::User::from_name("postgres")
                .expect("looking up the postgres user")
                .expect("a postgres user to run PostgreSQL as (it refuses to run as root)");
            (user.uid.as_raw(), user.gid.as_raw())
        });
        let server = Self {
            dir: tempfile::tempdir().expect("a temporary directory"),
            bin,
            run_as,
            port: free_port(),
        };
        server.give(server.dir.path());
        server.write("pwfile", SUPERUSER_PASSWORD, 0o600);
        server.write("server.crt", tls.cert, 0o644);
        server.write("server.key", tls.key, 0o600);
        server.write("client-ca.crt", tls.client_ca, 0o644);
        server.run(
            "initdb",
            &[
                "-D".as_ref(),
                server.data().as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "--auth=scram-sha-256".as_ref(),
                format!("--pwfile={}", server.path("pwfile").display()).as_ref(),
                "--no-locale".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--no-sync".as_ref(),
            ],
        );
        let conf = format!(
            "\nssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\nssl_ca_file = '{}'\n\
             fsync = off\nmax_connections = 40\n",
            server.path("server.crt").display(),
            server.path("server.key").display(),
            server.path("client-ca.crt").display()
        );
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(server.data().join("postgresql.conf"))
            .expect("postgresql.conf");
        file.write_all(conf.as_bytes())
            .expect("appending to postgresql.conf");
        std::fs::write(server.data().join("pg_hba.conf"), hba).expect("writing pg_hba.conf");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            server.port,
            server.dir.path().display()
        );
        server.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                server.data().as_os_str(),
                "-l".as_ref(),
                server.path("log").as_os_str(),
                "-o".as_ref(),
                options.as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "start".as_ref(),
            ],
        );
        Some(server)
    }

    /// The directory of the server's Unix-domain socket.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `contents` to `name` in the server's directory, readable by the server (for
    /// certificates swapped in with a reload).
    pub fn write(&self, name: &str, contents: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;

        let path = self.path(name);
        std::fs::write(&path, contents).expect("writing a file for the server");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .expect("setting a file's mode");
        self.give(&path);
        path
    }

    /// A superuser session over TCP, without TLS.
    pub async fn superuser(&self) -> tokio_postgres::Client {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user("postgres")
            .password(SUPERUSER_PASSWORD)
            .dbname("postgres")
            .ssl_mode(tokio_postgres::config::SslMode::Disable)
            .connect_timeout(Duration::from_secs(10));
        let (client, connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("superuser login: {e}\n{}", self.log()));
        tokio::spawn(connection);
        client
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("log")).unwrap_or_default()
    }

    fn data(&self) -> PathBuf {
        self.path("data")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Hands `path` to the `postgres` user when running as root.
    fn give(&self, path: &Path) {
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown to postgres");
        }
    }

    /// Runs PostgreSQL's `program` (as `postgres` when root); panics with its output on failure.
    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) {
        let program = self.bin.join(program);
        let mut command = if self.run_as.is_some() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program);
            command
        } else {
            Command::new(&program)
        };
        let output = command
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
        assert!(
            output.status.success(),
            "{} failed ({}):\n{}{}\n{}",
            program.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
    }
}

impl Drop for Postmaster {
    fn drop(&mut self) {
        let program = self.bin.join("pg_ctl");
        let mut command = if self.run_as.is_some() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program);
            command
        } else {
            Command::new(&program)
        };
        let _ = command
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The newest `/usr/lib/postgresql/<major>/bin` that has `initdb`.
fn bin_dir() -> Option<PathBuf> {
    std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let major: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((major, bin))
        })
        .max_by_key(|(major, _)| *major)
        .map(|(_, bin)| bin)
}

/// A port nothing listens on at the moment.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}
