//! The MariaDB target database (MySQL protocol, `mysql_async` without TLS): a lazy pool,
//! statements run in order (user-management statements commit on their own), and revocation
//! that locks every account of the user, kills its connections and runs the revocation
//! statements.

use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts};
use zeroize::Zeroizing;

use super::{
    AdminConnection, CONNECT_TIMEOUT, DatabaseError, DatabaseKind, MAX_CONNECTIONS, TargetDatabase,
    bounded, check_username, error_chain, redact,
};
use crate::credentials::password::check_password_characters;
use crate::credentials::template::{Template, TemplateValues};

/// Login refusals: `ER_ACCESS_DENIED_ERROR` (wrong user or password),
/// `ER_ACCESS_DENIED_NO_PASSWORD_ERROR` (some refusals of unknown users),
/// `ER_ACCOUNT_HAS_BEEN_LOCKED`.
const ACCESS_DENIED: [u16; 3] = [1045, 1698, 4151];
/// `ER_NO_SUCH_THREAD`: the connection to kill has already gone.
const NO_SUCH_THREAD: u16 = 1094;
/// `ER_CANNOT_USER`: the account to alter has already gone.
const CANNOT_USER: u16 = 1396;

/// A MariaDB database whose users Sigil manages.
pub(super) struct Mariadb {
    /// Swapped for a pool with the new password by `rotate_root`.
    pool: ArcSwap<Pool>,
    /// The connection settings, password included.
    opts: std::sync::Mutex<Opts>,
    /// Serialises password rotations.
    rotation: tokio::sync::Mutex<()>,
    /// `host:port` for error messages.
    address: String,
    /// The admin user, for error messages.
    user: String,
}

impl Mariadb {
    /// Parses the URL (already checked for a password) and builds a pool that connects lazily.
    pub(super) fn open(connection: &AdminConnection) -> Result<Self, DatabaseError> {
        let url = match connection.url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("mariadb") => {
                format!("mysql://{rest}")
            }
            _ => connection.url.clone(),
        };
        let parsed = Opts::from_url(&url).map_err(|e| DatabaseError::InvalidUrl {
            reason: error_chain(&e),
        })?;
        if parsed.pass().is_some() {
            return Err(DatabaseError::PasswordInUrl);
        }
        let address = format!("{}:{}", parsed.ip_or_hostname(), parsed.tcp_port());
        let user = parsed.user().unwrap_or_default().to_owned();
        let password = (!connection.password.is_empty()).then(|| connection.password.to_string());
        let opts = Opts::from(
            OptsBuilder::from_opts(parsed)
                .pass(password)
                // Never switch to the server's Unix socket: that changes the account matched.
                .prefer_socket(false)
                .pool_opts(PoolOpts::default().with_constraints(
                    PoolConstraints::new(0, MAX_CONNECTIONS).unwrap_or_default(),
                )),
        );
        Ok(Self {
            pool: ArcSwap::from_pointee(Pool::new(opts.clone())),
            opts: std::sync::Mutex::new(opts),
            rotation: tokio::sync::Mutex::new(()),
            address,
            user,
        })
    }

    /// A pooled connection; connection failures become `Unreachable` or `Authentication`.
    async fn conn(&self) -> Result<Conn, DatabaseError> {
        // A rotation may disconnect the pool just loaded; the second try uses its successor.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let pool = self.pool.load_full();
            let Ok(result) = tokio::time::timeout(CONNECT_TIMEOUT, pool.get_conn()).await else {
                return Err(DatabaseError::Unreachable {
                    address: self.address.clone(),
                    cause: format!("no connection within {} s", CONNECT_TIMEOUT.as_secs()),
                });
            };
            match result {
                Ok(conn) => return Ok(conn),
                Err(mysql_async::Error::Driver(mysql_async::DriverError::PoolDisconnected))
                    if attempt < 2 => {}
                Err(e) => return Err(self.connect_error(&e)),
            }
        }
    }

    fn connect_error(&self, error: &mysql_async::Error) -> DatabaseError {
        match error {
            mysql_async::Error::Server(e) if ACCESS_DENIED.contains(&e.code) => {
                DatabaseError::Authentication {
                    user: self.user.clone(),
                    cause: e.to_string(),
                }
            }
            mysql_async::Error::Server(e) => DatabaseError::Other {
                cause: e.to_string(),
            },
            other => DatabaseError::Unreachable {
                address: self.address.clone(),
                cause: error_chain(other),
            },
        }
    }

    /// Runs each rendered statement in order, stopping at the first failure.
    async fn run_in_order(
        &self,
        statements: &[Template],
        values: &TemplateValues<'_>,
    ) -> Result<(), DatabaseError> {
        if statements.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn().await?;
        for (index, statement) in statements.iter().enumerate() {
            conn.query_drop(statement.render(values).as_str())
                .await
                .map_err(|e| DatabaseError::Statement {
                    index,
                    cause: describe(&e, &[values.password]),
                })?;
        }
        Ok(())
    }

    async fn revoke(
        &self,
        username: &str,
        statements: &[Template],
        values: &TemplateValues<'_>,
    ) -> Result<(), DatabaseError> {
        check_username(username)?;
        let mut conn = self.conn().await?;
        let hosts: Vec<String> = conn
            .exec("SELECT Host FROM mysql.user WHERE User = ?", (username,))
            .await
            .map_err(|e| other(&e, values))?;
        if hosts.is_empty() {
            return Ok(());
        }
        // 1. No new logins, on every host the user may log in from.
        for host in &hosts {
            let lock = format!(
                "ALTER USER {}@{} ACCOUNT LOCK",
                quote_identifier(username),
                quote_identifier(host)
            );
            match conn.query_drop(lock).await {
                Err(mysql_async::Error::Server(e)) if e.code == CANNOT_USER => {}
                Err(e) => return Err(other(&e, values)),
                Ok(()) => {}
            }
        }
        // 2. End its connections; one may end by itself in between.
        let ids: Vec<u64> = conn
            .exec(
                "SELECT ID FROM information_schema.PROCESSLIST \
                 WHERE USER = ? AND ID <> CONNECTION_ID()",
                (username,),
            )
            .await
            .map_err(|e| other(&e, values))?;
        for id in ids {
            match conn.query_drop(format!("KILL CONNECTION {id}")).await {
                Err(mysql_async::Error::Server(e)) if e.code == NO_SUCH_THREAD => {}
                Err(e) => return Err(other(&e, values)),
                Ok(()) => {}
            }
        }
        drop(conn);
        // 3. The revocation statements.
        self.run_in_order(statements, values).await
    }

    async fn rotate(&self, new_password: &str) -> Result<(), DatabaseError> {
        check_password_characters(new_password).map_err(|_| DatabaseError::InvalidPassword)?;
        let _rotation = self.rotation.lock().await;
        let mut conn = self.conn().await?;
        // Not `ALTER USER CURRENT_USER() IDENTIFIED BY`: MariaDB 10.11 accepts it and leaves
        // the password unchanged.
        let statement = Zeroizing::new(format!("SET PASSWORD = PASSWORD('{new_password}')"));
        conn.query_drop(statement.as_str())
            .await
            .map_err(|e| DatabaseError::Statement {
                index: 0,
                cause: describe(&e, &[new_password]),
            })?;
        drop(conn);
        let opts = {
            let mut opts = self
                .opts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *opts = Opts::from(
                OptsBuilder::from_opts(opts.clone()).pass(Some(new_password.to_owned())),
            );
            opts.clone()
        };
        let old = self.pool.swap(Arc::new(Pool::new(opts)));
        // Closes the idle connections opened with the old password; waits for busy ones to be
        // returned, which the operation timeout bounds.
        let _closed = (*old).clone().disconnect().await;
        Ok(())
    }
}

#[async_trait]
impl TargetDatabase for Mariadb {
    async fn check(&self) -> Result<(), DatabaseError> {
        bounded("check", async {
            let mut conn = self.conn().await?;
            conn.query_drop("SELECT 1")
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
        bounded("create_user", self.run_in_order(statements, values)).await
    }

    async fn renew_user(
        &self,
        statements: &[Template],
        values: &TemplateValues<'_>,
    ) -> Result<(), DatabaseError> {
        bounded("renew_user", self.run_in_order(statements, values)).await
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
            let mut conn = self.conn().await?;
            let count: Option<u64> = conn
                .exec_first(
                    "SELECT COUNT(*) FROM mysql.user WHERE User = ?",
                    (username,),
                )
                .await
                .map_err(|e| DatabaseError::Other {
                    cause: describe(&e, &[]),
                })?;
            Ok(count.unwrap_or(0) > 0)
        })
        .await
    }

    async fn rotate_root(&self, new_password: &str) -> Result<(), DatabaseError> {
        bounded("rotate_root", self.rotate(new_password)).await
    }

    fn kind(&self) -> DatabaseKind {
        DatabaseKind::Mariadb
    }
}

/// A backtick-quoted identifier (account names accept them; no backslash escapes apply).
fn quote_identifier(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// The server's message (`ERROR code (state): message`) or the driver's error chain, with
/// `secrets` cut out (MariaDB quotes the statement near a syntax error).
fn describe(error: &mysql_async::Error, secrets: &[&str]) -> String {
    let text = match error {
        mysql_async::Error::Server(e) => e.to_string(),
        other => error_chain(other),
    };
    redact(&text, secrets)
}

fn other(error: &mysql_async::Error, values: &TemplateValues<'_>) -> DatabaseError {
    DatabaseError::Other {
        cause: describe(error, &[values.password]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_identifiers_with_backticks() {
        assert_eq!(quote_identifier("%"), "`%`");
        assert_eq!(quote_identifier("a`b"), "`a``b`");
        assert_eq!(quote_identifier("it's\\"), "`it's\\`");
    }
}
