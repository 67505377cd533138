//! The credentials bench's OpenBao phase: OpenBao's `database` secrets engine (the
//! `postgresql-database-plugin`) issuing and revoking PostgreSQL roles from a `bao server -dev`
//! child on 127.0.0.1, driven over keep-alive HTTP/1.1 with the dev server's root token.
//!
//! Set-up (not timed): mount `database`; config `bench-pg` with the connection URL
//! `postgresql://{{username}}:{{password}}@127.0.0.1:5432/test?sslmode=disable`, user `postgres`
//! (trust authentication: any password), `allowed_roles=bench`, `verify_connection=true`, a
//! `username_template` that starts with [`ROLE_PREFIX`] (so the leftover check sees OpenBao's
//! roles too) and `max_open_connections` = callers (one PostgreSQL connection per caller, as the
//! bare loop has); role `bench` with the bench's [`CREATION_STATEMENTS`] and
//! [`REVOCATION_STATEMENT`], `default_ttl` 1 h. One checked cycle then proves the role appears
//! in and leaves `pg_roles`.
//!
//! A cycle: `GET /v1/database/creds/bench` (a 200 carrying `data.username`, `data.password`
//! and `lease_id`), then `PUT /v1/sys/leases/revoke` with the lease (a 204: OpenBao revokes
//! synchronously). Anything else fails the bench. The child is killed on drop.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::{CREATION_STATEMENTS, REVOCATION_STATEMENT, ROLE_PREFIX, connect as pg_connect};
use crate::openbao_dev::{self, Conn};

/// The dev server's root token, given to it on the command line.
const ROOT_TOKEN: &str = "sigil-credentials-bench";
const ROLE: &str = "bench";
const CONNECTION: &str = "bench-pg";
const CREDS_PATH: &str = "/v1/database/creds/bench";
const REVOKE_PATH: &str = "/v1/sys/leases/revoke";

/// A configured `bao server -dev` child on a free 127.0.0.1 port, killed on drop.
pub struct DevServer {
    bao: openbao_dev::DevServer,
    /// OpenBao's version, from `sys/health`.
    pub version: String,
}

impl DevServer {
    /// Starts the dev server, waits until it answers `sys/health` as unsealed, configures the
    /// `database` engine for `callers` callers and checks one cycle against `pg_roles`.
    pub async fn start(binary: &Path, callers: usize) -> Self {
        let mut server = Self {
            bao: openbao_dev::DevServer::start(binary, ROOT_TOKEN).await,
            version: String::new(),
        };
        server.version = server.setup(callers).await;
        server.check_one_cycle().await;
        server
    }

    /// Mounts `database`, configures the connection and the role; returns OpenBao's version.
    async fn setup(&self, callers: usize) -> String {
        let mut conn = self.bao.connect().await.unwrap();
        let steps = [
            ("/v1/sys/mounts/database", json!({ "type": "database" })),
            (
                &format!("/v1/database/config/{CONNECTION}"),
                json!({
                    "plugin_name": "postgresql-database-plugin",
                    "connection_url":
                        "postgresql://{{username}}:{{password}}@127.0.0.1:5432/test?sslmode=disable",
                    "username": "postgres",
                    // Trust authentication: PostgreSQL does not check it.
                    "password": "unused-under-trust-auth",
                    "allowed_roles": ROLE,
                    "verify_connection": true,
                    "username_template": format!("{ROLE_PREFIX}bao_{{{{random 20 | lowercase}}}}"),
                    "max_open_connections": callers,
                    "max_idle_connections": callers,
                }),
            ),
            (
                &format!("/v1/database/roles/{ROLE}"),
                json!({
                    "db_name": CONNECTION,
                    "creation_statements": CREATION_STATEMENTS,
                    "revocation_statements": [REVOCATION_STATEMENT],
                    "default_ttl": "1h",
                    "max_ttl": "1h",
                }),
            ),
        ];
        for (path, body) in steps {
            let (status, response) = conn.call("POST", path, Some(&body)).await.unwrap();
            assert!(
                status.is_success(),
                "OpenBao `{path}`: {status} {response}\n{}",
                self.bao.log()
            );
        }
        conn.version().await
    }

    /// One cycle whose role is looked up in `pg_roles` after the issue and after the revoke.
    async fn check_one_cycle(&self) {
        let pg = pg_connect().await;
        let exists = async |name: &str| -> bool {
            pg.query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&name])
                .await
                .unwrap()
                .is_some()
        };
        let mut conn = self.bao.connect().await.unwrap();
        let (username, lease_id) = issue(&mut conn).await;
        assert!(
            exists(&username).await,
            "OpenBao issued `{username}`, which PostgreSQL does not have"
        );
        revoke(&mut conn, &lease_id).await;
        assert!(
            !exists(&username).await,
            "OpenBao revoked `{username}`, which PostgreSQL still has"
        );
    }

    /// Cycles that `callers` connections complete (started before the deadline) in `secs`
    /// seconds.
    pub async fn cycles(&self, callers: usize, secs: u64) -> u64 {
        let mut conns = Vec::with_capacity(callers);
        for _ in 0..callers {
            conns.push(self.bao.connect().await.unwrap());
        }
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut tasks = JoinSet::new();
        for mut conn in conns {
            tasks.spawn(async move {
                let mut done = 0_u64;
                while Instant::now() < deadline {
                    let (_, lease_id) = issue(&mut conn).await;
                    revoke(&mut conn, &lease_id).await;
                    done += 1;
                }
                done
            });
        }
        tasks.join_all().await.into_iter().sum()
    }
}

/// `GET /v1/database/creds/bench`, checked; returns the username and the lease ID.
async fn issue(conn: &mut Conn) -> (String, String) {
    let (status, response) = conn.request("GET", CREDS_PATH, Bytes::new()).await.unwrap();
    let field = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned);
    let username = field(&response["data"]["username"]);
    let lease_id = field(&response["lease_id"]);
    let has_password = field(&response["data"]["password"]).is_some();
    match (status, username, lease_id, has_password) {
        (StatusCode::OK, Some(username), Some(lease_id), true)
            if username.starts_with(ROLE_PREFIX) =>
        {
            (username, lease_id)
        }
        // The body holds a password: show only what went wrong.
        (status, username, lease_id, has_password) => panic!(
            "OpenBao `GET {CREDS_PATH}`: {status}, username {username:?}, lease {lease_id:?}, password present: {has_password}, errors {}",
            response["errors"]
        ),
    }
}

/// `PUT /v1/sys/leases/revoke` of `lease_id`, checked for a 204.
async fn revoke(conn: &mut Conn, lease_id: &str) {
    let body = Bytes::from(serde_json::to_vec(&json!({ "lease_id": lease_id })).unwrap());
    let (status, response) = conn.request("PUT", REVOKE_PATH, body).await.unwrap();
    assert_eq!(
        status,
        StatusCode::NO_CONTENT,
        "OpenBao `PUT {REVOKE_PATH}` of `{lease_id}`: {response}"
    );
}
