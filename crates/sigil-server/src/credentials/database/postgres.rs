//! The PostgreSQL target database: a lazy deadpool-postgres pool, creation and renewal
//! statements in one transaction, and revocation that locks the role, terminates its backends
//! and runs the revocation statements.

use std::str::FromStr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime, TimeoutType,
};
use tokio_postgres::config::Host;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Config, NoTls};
use zeroize::Zeroizing;

use super::{
    AdminConnection, CONNECT_TIMEOUT, DatabaseError, DatabaseKind, MAX_CONNECTIONS,
    OPERATION_TIMEOUT, TargetDatabase, bounded, check_username, error_chain, redact,
};
use crate::credentials::password::check_password_characters;
use crate::credentials::template::{Template, TemplateValues};

/// A PostgreSQL database whose roles Sigil manages.
pub(super) struct Postgres {
    /// Swapped for a pool with the new password by `rotate_root`.
    pool: ArcSwap<Pool>,
    /// The connection settings, password included.
    config: std::sync::Mutex<Config>,
    /// Serialises password rotations.
    rotation: tokio::sync::Mutex<()>,
    /// `host:port` for error messages.
    address: String,
    /// The admin user, for error messages.
    user: String,
}

impl Postgres {
    /// Parses the URL (already checked for a password) and builds a pool that connects lazily.
    pub(super) fn open(connection: &AdminConnection) -> Result<Self, DatabaseError> {
        let mut config =
            Config::from_str(&connection.url).map_err(|e| DatabaseError::InvalidUrl {
                reason: error_chain(&e),
            })?;
        if config.get_password().is_some() {
            return Err(DatabaseError::PasswordInUrl);
        }
        if !connection.password.is_empty() {
            config.password(connection.password.as_bytes());
        }
        config
            .connect_timeout(CONNECT_TIMEOUT)
            .application_name("sigil");
        let address = describe_address(&config);
        let user = config.get_user().unwrap_or_default().to_owned();
        let pool = build_pool(config.clone())?;
        Ok(Self {
            pool: ArcSwap::from_pointee(pool),
            config: std::sync::Mutex::new(config),
            rotation: tokio::sync::Mutex::new(()),
            address,
            user,
        })
    }

    /// A pooled connection; connection failures become `Unreachable` or `Authentication`.
    async fn conn(&self) -> Result<Object, DatabaseError> {
        // A rotation may close the pool just loaded; the second try uses its successor.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let pool = self.pool.load_full();
            match pool.get().await {
                Ok(conn) => return Ok(conn),
                Err(PoolError::Closed) if attempt < 2 => {}
                Err(e) => return Err(self.connect_error(e)),
            }
        }
    }

    fn connect_error(&self, error: PoolError) -> DatabaseError {
        match error {
            PoolError::Backend(e) => {
                let auth_code = e.code().is_some_and(|c| {
                    *c == SqlState::INVALID_PASSWORD
                        || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
                });
                if auth_code || e.to_string().starts_with("authentication error") {
                    DatabaseError::Authentication {
                        user: self.user.clone(),
                        cause: describe(&e, &[]),
                    }
                } else if e.as_db_error().is_some() {
                    DatabaseError::Other {
                        cause: describe(&e, &[]),
                    }
                } else {
                    DatabaseError::Unreachable {
                        address: self.address.clone(),
                        cause: describe(&e, &[]),
                    }
                }
            }
            PoolError::Timeout(TimeoutType::Create | TimeoutType::Recycle) => {
                DatabaseError::Unreachable {
                    address: self.address.clone(),
                    cause: format!("no connection within {} s", CONNECT_TIMEOUT.as_secs()),
                }
            }
            PoolError::Timeout(TimeoutType::Wait) => DatabaseError::Other {
                cause: format!(
                    "all {MAX_CONNECTIONS} connections stayed busy for {} s",
                    OPERATION_TIMEOUT.as_secs()
                ),
            },
            other => DatabaseError::Other {
                cause: other.to_string(),
            },
        }
    }

    /// Runs each rendered statement in one transaction.
    async fn run_in_transaction(
        &self,
        statements: &[Template],
        values: &TemplateValues<'_>,
    ) -> Result<(), DatabaseError> {
        if statements.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(|e| other(&e, values))?;
        for (index, statement) in statements.iter().enumerate() {
            tx.batch_execute(&statement.render(values))
                .await
                .map_err(|e| DatabaseError::Statement {
                    index,
                    cause: describe(&e, &[values.password]),
                })?;
        }
        tx.commit().await.map_err(|e| other(&e, values))
    }

    async fn revoke(
        &self,
        username: &str,
        statements: &[Template],
        values: &TemplateValues<'_>,
    ) -> Result<(), DatabaseError> {
        check_username(username)?;
        let conn = self.conn().await?;
        if !role_exists(&conn, username)
            .await
            .map_err(|e| other(&e, values))?
        {
            return Ok(());
        }
        // 1. No new logins. The role may vanish in between (a concurrent revocation).
        match conn
            .batch_execute(&format!("ALTER ROLE \"{username}\" NOLOGIN"))
            .await
        {
            Err(e) if e.code() != Some(&SqlState::UNDEFINED_OBJECT) => {
                return Err(other(&e, values));
            }
            _ => {}
        }
        // 2. End its sessions.
        conn.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE usename = $1 AND pid <> pg_backend_pid()",
            &[&username],
        )
        .await
        .map_err(|e| other(&e, values))?;
        drop(conn);
        // 3. The revocation statements.
        self.run_in_transaction(statements, values).await
    }

    async fn rotate(&self, new_password: &str) -> Result<(), DatabaseError> {
        check_password_characters(new_password).map_err(|_| DatabaseError::InvalidPassword)?;
        let _rotation = self.rotation.lock().await;
        let conn = self.conn().await?;
        let statement = Zeroizing::new(format!(
            "ALTER ROLE CURRENT_USER WITH PASSWORD '{new_password}'"
        ));
        conn.batch_execute(&statement)
            .await
            .map_err(|e| DatabaseError::Statement {
                index: 0,
                cause: describe(&e, &[new_password]),
            })?;
        drop(conn);
        let config = {
            let mut config = self
                .config
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            config.password(new_password.as_bytes());
            config.clone()
        };
        let old = self.pool.swap(Arc::new(build_pool(config)?));
        old.close();
        Ok(())
    }
}

#[async_trait]
impl TargetDatabase for Postgres {
    async fn check(&self) -> Result<(), DatabaseError> {
        bounded("check", async {
            let conn = self.conn().await?;
            conn.batch_execute("SELECT 1")
                .await
                .map_err(|e| DatabaseError::Other {
                    cause: describe(&e, &[]),
                })
        })
        .await
    }

    async fn create_user(
        &self,
        statements: &[Template],
        values: &TemplateValues<'_>,
    ) -> Result<(), DatabaseError> {
        bounded("create_user", self.run_in_transaction(statements, values)).await
    }

    async fn renew_user(
        &self,
        statements: &[Template],
        values: &TemplateValues<'_>,
    ) -> Result<(), DatabaseError> {
        bounded("renew_user", self.run_in_transaction(statements, values)).await
    }

    async fn revoke_user(
        &self,
        username: &str,
        statements: &[Template],
        values: &TemplateValues<'_>,
    ) -> Result<(), DatabaseError> {
        bounded("revoke_user", self.revoke(username, statements, values)).await
    }

    async fn user_exists(&self, username: &str) -> Result<bool, DatabaseError> {
        bounded("user_exists", async {
            check_username(username)?;
            let conn = self.conn().await?;
            role_exists(&conn, username)
                .await
                .map_err(|e| DatabaseError::Other {
                    cause: describe(&e, &[]),
                })
        })
        .await
    }

    async fn rotate_root(&self, new_password: &str) -> Result<(), DatabaseError> {
        bounded("rotate_root", self.rotate(new_password)).await
    }

    fn kind(&self) -> DatabaseKind {
        DatabaseKind::Postgresql
    }
}

fn build_pool(config: Config) -> Result<Pool, DatabaseError> {
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(MAX_CONNECTIONS)
        .runtime(Runtime::Tokio1)
        .create_timeout(Some(CONNECT_TIMEOUT))
        .recycle_timeout(Some(CONNECT_TIMEOUT))
        .wait_timeout(Some(OPERATION_TIMEOUT))
        .build()
        .map_err(|e| DatabaseError::Other {
            cause: e.to_string(),
        })
}

async fn role_exists(conn: &Object, username: &str) -> Result<bool, tokio_postgres::Error> {
    conn.query_one(
        "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)",
        &[&username],
    )
    .await?
    .try_get(0)
}

/// `host:port` of the first host in the configuration (or the socket directory).
fn describe_address(config: &Config) -> String {
    let port = config.get_ports().first().copied().unwrap_or(5432);
    match config.get_hosts().first() {
        Some(Host::Tcp(host)) if host.contains(':') => format!("[{host}]:{port}"),
        Some(Host::Tcp(host)) => format!("{host}:{port}"),
        Some(Host::Unix(path)) => format!("{}/.s.PGSQL.{port}", path.display()),
        None => format!("localhost:{port}"),
    }
}

/// The database's own message (`SQLSTATE: message`, with detail and hint) or the driver's error
/// chain, with `secrets` cut out.
fn describe(error: &tokio_postgres::Error, secrets: &[&str]) -> String {
    let text = match error.as_db_error() {
        Some(db) => {
            let mut text = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
            if let Some(detail) = db.detail() {
                text.push_str(&format!(" (detail: {detail})"));
            }
            if let Some(hint) = db.hint() {
                text.push_str(&format!(" (hint: {hint})"));
            }
            text
        }
        None => error_chain(error),
    };
    redact(&text, secrets)
}

fn other(error: &tokio_postgres::Error, values: &TemplateValues<'_>) -> DatabaseError {
    DatabaseError::Other {
        cause: describe(error, &[values.password]),
    }
}
