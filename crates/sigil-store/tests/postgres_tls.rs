//! libpq's client certificates (`sslcert`, `sslkey`) and SCRAM channel binding
//! (`channel_binding`) against real PostgreSQL servers: a private postmaster
//! (`common/postmaster.rs`) with SCRAM and certificate authentication for the logins, and the
//! shared trust-authentication server (`SIGIL_TEST_POSTGRES_URL`) for a server that never binds.
//! A key file others may read is refused before any connection is tried.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "fixtures outside #[test] functions: a failed unwrap is a failed test"
)]

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use sigil_store::{PostgresConfig, PostgresPassword, PostgresStore, StoreError};

#[path = "common/postmaster.rs"]
mod postmaster;

use postmaster::{Postmaster, ServerTls};

const SCRAM_PASSWORD: &str = "scram-user-password";

/// pg_hba.conf of the private server: `certuser` only with a client certificate, everyone else
/// with a SCRAM password, over TCP with or without TLS and over the Unix-domain socket.
const HBA: &str = "\
hostssl all certuser 127.0.0.1/32 cert
hostssl all all 127.0.0.1/32 scram-sha-256
host all all 127.0.0.1/32 scram-sha-256
local all all scram-sha-256
";

/// A throwaway CA, a server certificate it issued for `localhost` and 127.0.0.1, and a client
/// certificate for `certuser`, each with its PKCS#8 key, in PEM.
struct Pki {
    ca: String,
    server: (String, String),
    client: (String, String),
}

impl Pki {
    fn new() -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "sigil test database CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);

        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&server_key, &issuer)
            .unwrap();

        let client_key = KeyPair::generate().unwrap();
        let mut client = CertificateParams::new(Vec::new()).unwrap();
        client
            .distinguished_name
            .push(DnType::CommonName, "certuser");
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client = client.signed_by(&client_key, &issuer).unwrap();

        Self {
            ca: ca_cert.pem(),
            server: (server.pem(), server_key.serialize_pem()),
            client: (client.pem(), client_key.serialize_pem()),
        }
    }

    /// A private server with this PKI and [`HBA`], with the logins `certuser` (certificate
    /// only) and `scramuser` (password), each owning a schema of its name for the store.
    async fn start_server(&self) -> Option<Postmaster> {
        let server = Postmaster::start(
            &ServerTls {
                cert: &self.server.0,
                key: &self.server.1,
                client_ca: &self.ca,
            },
            HBA,
        )?;
        server
            .superuser()
            .await
            .batch_execute(&format!(
                "CREATE ROLE certuser LOGIN; \
                 CREATE SCHEMA certuser AUTHORIZATION certuser; \
                 CREATE ROLE scramuser LOGIN PASSWORD '{SCRAM_PASSWORD}'; \
                 CREATE SCHEMA scramuser AUTHORIZATION scramuser;"
            ))
            .await
            .unwrap();
        Some(server)
    }
}

/// Writes `contents` to `dir/name` with `mode`.
fn write_file(dir: &Path, name: &str, contents: &str, mode: u32) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

fn config(url: String, password: Option<&str>) -> PostgresConfig {
    let mut config = PostgresConfig::new(url);
    config.password = password.map(PostgresPassword::new);
    config.pool_size = 2;
    config.connect_timeout = Duration::from_secs(10);
    config
}

/// The message of a failed connect.
async fn connect_error(config: &PostgresConfig) -> StoreError {
    match PostgresStore::connect(config).await {
        Ok(_) => panic!("{config:?} connected"),
        Err(e) => e,
    }
}

/// (sessions of `user`, of them encrypted, of them with a client certificate for `/CN=user`).
async fn sessions(server: &Postmaster, user: &str) -> (i64, i64, i64) {
    let row = server
        .superuser()
        .await
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE s.ssl), \
                    count(*) FILTER (WHERE s.client_dn = '/CN=' || $1) \
             FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.usename = $1",
            &[&user],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

#[tokio::test]
async fn client_certificate_logs_in_where_pg_hba_requires_one() {
    let pki = Pki::new();
    let Some(server) = pki.start_server().await else {
        return;
    };
    let files = tempfile::tempdir().unwrap();
    let ca = write_file(files.path(), "ca.pem", &pki.ca, 0o644);
    let cert = write_file(files.path(), "client.pem", &pki.client.0, 0o644);
    let key = write_file(files.path(), "client.key", &pki.client.1, 0o600);
    let base = format!(
        "postgres://certuser@127.0.0.1:{}/postgres?sslmode=verify-full&sslrootcert={}",
        server.port,
        ca.display()
    );

    let store = PostgresStore::connect(&config(
        format!("{base}&sslcert={}&sslkey={}", cert.display(), key.display()),
        None,
    ))
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    store.schema_version().await.unwrap();
    let (all, encrypted, with_cert) = sessions(&server, "certuser").await;
    assert!(
        all >= 2 && encrypted == all && with_cert == all,
        "{all} {encrypted} {with_cert}"
    );
    drop(store);

    // Without the certificate the server refuses the login, and says why.
    let err = connect_error(&config(base.clone(), None)).await.to_string();
    assert!(
        err.contains("connection requires a valid client certificate"),
        "{err}"
    );
    // Keyword form, same files: the login works there too.
    let keywords = format!(
        "host=127.0.0.1 port={} user=certuser dbname=postgres sslmode=verify-ca \
         sslrootcert='{}' sslcert='{}' sslkey='{}'",
        server.port,
        ca.display(),
        cert.display(),
        key.display()
    );
    PostgresStore::connect(&config(keywords, None))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
}

#[tokio::test]
async fn a_key_file_others_can_read_is_refused_before_connecting() {
    let pki = Pki::new();
    let files = tempfile::tempdir().unwrap();
    let cert = write_file(files.path(), "client.pem", &pki.client.0, 0o644);
    let key = write_file(files.path(), "client.key", &pki.client.1, 0o600);
    // Nothing listens on port 1: a check that passes leads to a connection error instead.
    let url = format!(
        "postgres://certuser@127.0.0.1:1/postgres?sslmode=require&sslcert={}&sslkey={}",
        cert.display(),
        key.display()
    );
    let mut unreachable = config(url, None);
    unreachable.connect_timeout = Duration::from_secs(2);
    let err = connect_error(&unreachable).await;
    assert!(
        matches!(&err, StoreError::Backend(_)) && err.to_string().contains("cannot connect"),
        "{err}"
    );

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = connect_error(&unreachable).await;
    let key = key.display().to_string();
    assert!(
        matches!(&err, StoreError::Invalid { field: "url", reason }
            if reason.contains(&key) && reason.contains("mode 0644") && reason.contains("group or world")),
        "{err}"
    );
    // Nor does the message show the key.
    assert!(!err.to_string().contains("PRIVATE KEY"), "{err}");
}

#[tokio::test]
async fn scram_binds_to_the_tls_session_when_channel_binding_is_required() {
    let pki = Pki::new();
    let Some(server) = pki.start_server().await else {
        return;
    };
    let url = |params: &str| {
        format!(
            "postgres://scramuser@127.0.0.1:{}/postgres?{params}",
            server.port
        )
    };
    let connect = |params: &str| {
        let config = config(url(params), Some(SCRAM_PASSWORD));
        async move { PostgresStore::connect(&config).await }
    };

    // Bound: SCRAM-SHA-256-PLUS over TLS, with the SHA-256 hash of the P-256 certificate. A
    // wrong hash fails the server's check; no hash fails tokio-postgres' `require`.
    let store = connect("sslmode=require&channel_binding=require")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    store.schema_version().await.unwrap();
    let (all, encrypted, _) = sessions(&server, "scramuser").await;
    assert!(all >= 2 && encrypted == all, "{all} {encrypted}");
    drop(store);
    // The other settings log in too.
    for params in [
        "sslmode=verify-full&channel_binding=prefer&sslrootcert=",
        "sslmode=require&channel_binding=disable",
        "sslmode=disable",
    ] {
        let params = if params.ends_with('=') {
            let ca = write_file(server.socket_dir(), "scram-ca.pem", &pki.ca, 0o644);
            format!("{params}{}", ca.display())
        } else {
            params.to_owned()
        };
        connect(&params)
            .await
            .unwrap_or_else(|e| panic!("{params}: {e}\n{}", server.log()));
    }

    // No TLS, no binding: refused before connecting when sslmode says so...
    let err = connect_error(&config(
        url("sslmode=disable&channel_binding=require"),
        Some(SCRAM_PASSWORD),
    ))
    .await;
    assert!(
        matches!(&err, StoreError::Invalid { field: "url", reason }
            if reason.contains("channel_binding=require needs TLS")),
        "{err}"
    );
    // ...and at login when the connection has none (the Unix-domain socket never has TLS).
    let socket = format!(
        "host={} port={} user=scramuser dbname=postgres channel_binding=require",
        server.socket_dir().display(),
        server.port
    );
    let err = connect_error(&config(socket.clone(), Some(SCRAM_PASSWORD))).await;
    assert!(
        err.to_string()
            .contains("server did not use channel binding"),
        "{err}"
    );
    let plain = socket.replace("channel_binding=require", "channel_binding=prefer");
    PostgresStore::connect(&config(plain, Some(SCRAM_PASSWORD)))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));

    // A P-384 certificate signed with ECDSA-SHA384: the binding hashes with SHA-384.
    let p384_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let p384 = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&p384_key)
        .unwrap();
    let cert = server.write("server384.crt", &p384.pem(), 0o644);
    let key = server.write("server384.key", &p384_key.serialize_pem(), 0o600);
    let admin = server.superuser().await;
    // One statement each: ALTER SYSTEM cannot run in the implicit transaction of a batch.
    for sql in [
        format!("ALTER SYSTEM SET ssl_cert_file = '{}'", cert.display()),
        format!("ALTER SYSTEM SET ssl_key_file = '{}'", key.display()),
        "SELECT pg_reload_conf()".to_owned(),
    ] {
        admin.batch_execute(&sql).await.unwrap();
    }
    wait_for_certificate(&server, &p384.pem()).await;
    connect("sslmode=require&channel_binding=require")
        .await
        .unwrap_or_else(|e| panic!("P-384: {e}\n{}", server.log()));
}

/// Waits until the server's reload has put `cert_pem` in force (`ssl_cert_file` shows it).
async fn wait_for_certificate(server: &Postmaster, cert_pem: &str) {
    let admin = server.superuser().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let file: String = admin
            .query_one("SHOW ssl_cert_file", &[])
            .await
            .unwrap()
            .get(0);
        if std::fs::read_to_string(&file).is_ok_and(|pem| pem == cert_pem) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reload did not take the new certificate\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The shared server authenticates by trust, so it never binds: `require` refuses it as libpq
/// does (tokio-postgres: "server did not use channel binding"), `prefer` logs in. The store
/// works in a fresh schema, dropped afterwards.
#[tokio::test]
async fn require_refuses_a_server_that_does_not_authenticate_with_scram() {
    let url = std::env::var("SIGIL_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let raw = match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            client
        }
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none_or(|ci| ci.is_empty()),
                "the shared PostgreSQL server is unreachable under CI: {e}"
            );
            let _ = writeln!(
                std::io::stderr(),
                "NOTICE: skipping a channel-binding test (SIGIL_TEST_POSTGRES_URL): {e}"
            );
            return;
        }
    };
    let schema: String = raw
        .query_one(
            "SELECT 'sigil_cb_' || translate(gen_random_uuid()::text, '-', '')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    raw.batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
    let separator = if url.contains('?') { '&' } else { '?' };
    let with = |binding: &str| {
        config(
            format!(
                "{url}{separator}options=-c%20search_path%3D{schema}&channel_binding={binding}"
            ),
            None,
        )
    };
    // The positive case first: `prefer` logs in to the same server as the same user.
    let prefer = async {
        let store = PostgresStore::connect(&with("prefer")).await?;
        store.schema_version().await
    }
    .await;
    let err = connect_error(&with("require")).await.to_string();
    raw.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
    prefer.unwrap();
    assert!(
        err.contains("cannot connect to PostgreSQL")
            && err.contains("server did not use channel binding"),
        "{err}"
    );
}
