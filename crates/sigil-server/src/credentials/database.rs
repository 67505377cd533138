//! Target databases of brokered credentials: the [`TargetDatabase`] trait that creates, renews
//! and revokes short-lived users, its errors, the admin connection settings, and [`open`], which
//! picks the PostgreSQL or MariaDB driver.

mod mariadb;
mod postgres;

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use zeroize::Zeroizing;

use super::template::{Template, TemplateValues};

/// How long opening one connection to a target database may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one [`TargetDatabase`] operation may take in all, connecting included.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections kept open at most to one target database.
pub const MAX_CONNECTIONS: usize = 4;
/// Longest user name [`TargetDatabase::revoke_user`] and [`TargetDatabase::user_exists`] accept
/// (PostgreSQL's identifier limit).
pub const MAX_USERNAME_BYTES: usize = 63;

/// The kind of target database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatabaseKind {
    /// PostgreSQL (9.5 or newer).
    Postgresql,
    /// MariaDB (10.4 or newer), over the MySQL protocol.
    Mariadb,
}

/// A database kind other than `postgresql` or `mariadb`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown database kind `{kind}`: expected `postgresql` or `mariadb`")]
pub struct UnknownDatabaseKind {
    /// The rejected name.
    pub kind: String,
}

impl DatabaseKind {
    /// Parses `postgresql` or `mariadb`.
    pub fn parse(kind: &str) -> Result<Self, UnknownDatabaseKind> {
        match kind {
            "postgresql" => Ok(Self::Postgresql),
            "mariadb" => Ok(Self::Mariadb),
            other => Err(UnknownDatabaseKind {
                kind: other.to_owned(),
            }),
        }
    }

    /// The name [`DatabaseKind::parse`] accepts.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Postgresql => "postgresql",
            Self::Mariadb => "mariadb",
        }
    }
}

impl fmt::Display for DatabaseKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How Sigil logs in to a target database to manage its users.
///
/// `url` names the user, host, port and database, never the password:
/// `postgres://sigil_admin@127.0.0.1:5432/orders` (or `postgresql://`) for PostgreSQL,
/// `mysql://root@127.0.0.1:3306/test` (or `mariadb://`) for MariaDB. The password always comes
/// separately; `Debug` never shows it.
#[derive(Clone)]
pub struct AdminConnection {
    /// The kind of database `url` points at.
    pub kind: DatabaseKind,
    /// The connection URL, without a password.
    pub url: String,
    /// The admin user's password (empty when the database asks for none).
    pub password: Zeroizing<String>,
}

impl fmt::Debug for AdminConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminConnection")
            .field("kind", &self.kind)
            .field("url", &self.url)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// What went wrong talking to a target database. Causes are the database's or the driver's own
/// words, with any password Sigil sent cut out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatabaseError {
    /// The database could not be reached: connection refused, no route, DNS failure, or no
    /// connection within [`CONNECT_TIMEOUT`].
    #[error("cannot reach the database at `{address}`: {cause}")]
    Unreachable {
        /// `host:port` (or socket path) from the URL.
        address: String,
        /// Why, from the driver.
        cause: String,
    },
    /// The database refused the admin login (wrong password, unknown user, not allowed from
    /// this host): PostgreSQL SQLSTATE 28P01 or 28000, MariaDB error 1045 (or 1698,
    /// 4151 for a locked account).
    #[error("the database refused the login of `{user}`: {cause}")]
    Authentication {
        /// The admin user from the URL.
        user: String,
        /// The database's message.
        cause: String,
    },
    /// The database rejected a statement. `index` counts from 0 within the statements given to
    /// the call (the message counts from 1); `rotate_root`'s own statement is index 0.
    #[error("the database rejected statement {}: {cause}", index + 1)]
    Statement {
        /// Position of the failing statement, from 0.
        index: usize,
        /// The database's message (error code and text).
        cause: String,
    },
    /// The URL has a password in it; it must be given separately.
    #[error("the database URL contains a password: give the password separately")]
    PasswordInUrl,
    /// The URL cannot be used.
    #[error("invalid database URL: {reason}")]
    InvalidUrl {
        /// What is wrong with it.
        reason: String,
    },
    /// A user name to revoke or look up is not 1 to 63 characters of `[a-z0-9_]`.
    #[error("invalid database user name `{username}`: expected 1 to 63 characters of [a-z0-9_]")]
    InvalidUsername {
        /// The rejected name.
        username: String,
    },
    /// A new admin password has a character that cannot be put between quotes in a statement
    /// (see [`super::password::check_password_characters`]); the password is not shown.
    #[error(
        "the new password has a character that cannot be quoted in a statement (printable ASCII only, none of ' \" \\ ` $ ; or space)"
    )]
    InvalidPassword,
    /// An operation did not finish within [`OPERATION_TIMEOUT`].
    #[error("database operation `{operation}` did not finish within {} s", OPERATION_TIMEOUT.as_secs())]
    Timeout {
        /// The [`TargetDatabase`] method.
        operation: &'static str,
    },
    /// Anything else, e.g. the database named in the URL does not exist or a connection broke
    /// midway.
    #[error("database error: {cause}")]
    Other {
        /// What happened.
        cause: String,
    },
}

impl DatabaseError {
    /// Whether trying again later may succeed without changing anything: the database was
    /// unreachable or too slow.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unreachable { .. } | Self::Timeout { .. })
    }
}

/// A database in which Sigil creates short-lived users.
///
/// Every method is bounded by [`OPERATION_TIMEOUT`] and fails with [`DatabaseError::Timeout`]
/// beyond it.
#[async_trait]
pub trait TargetDatabase: Send + Sync {
    /// Connects and runs `SELECT 1`.
    async fn check(&self) -> Result<(), DatabaseError>;

    /// Runs the creation statements, rendered with `values`, in order.
    ///
    /// PostgreSQL runs them in one transaction, so a failure leaves nothing behind. MariaDB
    /// commits each user-management statement on its own, so a failure at statement `k` may
    /// leave statements `0..k` applied; either way the error is
    /// [`DatabaseError::Statement`] with `index: k`, and the caller must then call
    /// [`TargetDatabase::revoke_user`] to clean up.
    async fn create_user(
        &self,
        statements: &[Template],
        values: &TemplateValues<'_>,
    ) -> Result<(), DatabaseError>;

    /// Runs the renewal statements (e.g. a new `VALID UNTIL`), like
    /// [`TargetDatabase::create_user`]. No statements is a successful no-op.
    async fn renew_user(
        &self,
        statements: &[Template],
        values: &TemplateValues<'_>,
    ) -> Result<(), DatabaseError>;

    /// Removes `username`: (1) stops new logins (PostgreSQL `ALTER ROLE ... NOLOGIN`, MariaDB
    /// `ALTER USER ... ACCOUNT LOCK` on each of its hosts), (2) ends its open sessions
    /// (`pg_terminate_backend`, `KILL CONNECTION`), (3) runs the revocation statements (in one
    /// transaction on PostgreSQL, in order on MariaDB).
    ///
    /// Idempotent: when the user does not exist (already revoked, or its creation failed before
    /// creating it) nothing is run and the result is `Ok`. The admin user needs the right to
    /// end other sessions (PostgreSQL: `pg_signal_backend`; MariaDB: `PROCESS` and
    /// `CONNECTION ADMIN` or `SUPER`) and, on MariaDB, to read `mysql.user`.
    async fn revoke_user(
        &self,
        username: &str,
        statements: &[Template],
        values: &TemplateValues<'_>,
    ) -> Result<(), DatabaseError>;

    /// Whether a user (PostgreSQL role, MariaDB user on any host) named `username` exists.
    async fn user_exists(&self, username: &str) -> Result<bool, DatabaseError>;

    /// Changes the admin user's own password to `new_password`, then uses it for every later
    /// connection (pooled connections opened with the old password are dropped). On failure
    /// the old password stays in use.
    async fn rotate_root(&self, new_password: &str) -> Result<(), DatabaseError>;

    /// The kind of database.
    fn kind(&self) -> DatabaseKind;
}

/// Revocation statements for users created with the usual statements: PostgreSQL
/// `DROP ROLE IF EXISTS "{{name}}"` (a role that was granted privileges must lose them first,
/// e.g. with `DROP OWNED BY "{{name}}"` before it), MariaDB `DROP USER IF EXISTS '{{name}}'@'%'`.
pub fn default_revocation_statements(kind: DatabaseKind) -> &'static [&'static str] {
    match kind {
        DatabaseKind::Postgresql => &["DROP ROLE IF EXISTS \"{{name}}\""],
        DatabaseKind::Mariadb => &["DROP USER IF EXISTS '{{name}}'@'%'"],
    }
}

/// Renewal statements: PostgreSQL `ALTER ROLE "{{name}}" VALID UNTIL '{{expiration}}'`; none
/// for MariaDB, which has no account expiry (Sigil revokes the user when it expires).
pub fn default_renewal_statements(kind: DatabaseKind) -> &'static [&'static str] {
    match kind {
        DatabaseKind::Postgresql => &["ALTER ROLE \"{{name}}\" VALID UNTIL '{{expiration}}'"],
        DatabaseKind::Mariadb => &[],
    }
}

/// A [`TargetDatabase`] for `connection`, with a lazy pool of at most [`MAX_CONNECTIONS`]
/// connections: nothing is connected until the first operation ([`TargetDatabase::check`]
/// proves the settings). Fails with [`DatabaseError::PasswordInUrl`] or
/// [`DatabaseError::InvalidUrl`] for an unusable URL.
pub fn open(connection: AdminConnection) -> Result<Arc<dyn TargetDatabase>, DatabaseError> {
    check_url(connection.kind, &connection.url)?;
    match connection.kind {
        DatabaseKind::Postgresql => Ok(Arc::new(postgres::Postgres::open(&connection)?)),
        DatabaseKind::Mariadb => Ok(Arc::new(mariadb::Mariadb::open(&connection)?)),
    }
}

/// Checks the URL's scheme against `kind`, that it names a user, and that it carries no
/// password (in the user info or as a `password` query parameter).
/// Checks `url` for `kind` without connecting: scheme, a user, and no password in it.
pub fn check_url(kind: DatabaseKind, url: &str) -> Result<(), DatabaseError> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(invalid_url(kind, "it does not start with a scheme"));
    };
    let scheme_fits = match kind {
        DatabaseKind::Postgresql => {
            scheme.eq_ignore_ascii_case("postgres") || scheme.eq_ignore_ascii_case("postgresql")
        }
        DatabaseKind::Mariadb => {
            scheme.eq_ignore_ascii_case("mysql") || scheme.eq_ignore_ascii_case("mariadb")
        }
    };
    let (authority, after_authority) = match rest.find(['/', '?', '#']) {
        Some(end) => rest.split_at(end),
        None => (rest, ""),
    };
    let userinfo = authority.rsplit_once('@').map(|(userinfo, _)| userinfo);
    if userinfo.is_some_and(|u| u.contains(':')) {
        return Err(DatabaseError::PasswordInUrl);
    }
    let query = after_authority
        .split_once('?')
        .map(|(_, q)| q.split_once('#').map_or(q, |(q, _)| q));
    if let Some(query) = query {
        let has_password = query.split('&').any(|pair| {
            let key = pair.split_once('=').map_or(pair, |(k, _)| k);
            key.eq_ignore_ascii_case("password")
        });
        if has_password {
            return Err(DatabaseError::PasswordInUrl);
        }
    }
    if !scheme_fits {
        return Err(invalid_url(
            kind,
            &format!("scheme `{scheme}` does not fit"),
        ));
    }
    if userinfo.is_none_or(str::is_empty) {
        return Err(invalid_url(
            kind,
            "it names no user (`scheme://user@host/database`)",
        ));
    }
    Ok(())
}

fn invalid_url(kind: DatabaseKind, why: &str) -> DatabaseError {
    let expected = match kind {
        DatabaseKind::Postgresql => "`postgres://user@host:port/database`",
        DatabaseKind::Mariadb => "`mysql://user@host:port/database` or `mariadb://...`",
    };
    DatabaseError::InvalidUrl {
        reason: format!("{why}; expected {expected}"),
    }
}

/// Checks a user name to revoke or look up: 1 to [`MAX_USERNAME_BYTES`] of `[a-z0-9_]`, the
/// shape of [`super::password::generate_username`], so it can be quoted without escaping.
fn check_username(username: &str) -> Result<(), DatabaseError> {
    let valid = !username.is_empty()
        && username.len() <= MAX_USERNAME_BYTES
        && username
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(DatabaseError::InvalidUsername {
            username: username.chars().take(80).collect(),
        })
    }
}

/// Runs `operation`, failing with [`DatabaseError::Timeout`] after [`OPERATION_TIMEOUT`].
async fn bounded<T>(
    operation: &'static str,
    work: impl Future<Output = Result<T, DatabaseError>>,
) -> Result<T, DatabaseError> {
    tokio::time::timeout(OPERATION_TIMEOUT, work)
        .await
        .unwrap_or(Err(DatabaseError::Timeout { operation }))
}

/// Shortest piece of a secret that [`redact`] still removes when it appears truncated.
const MIN_REDACTED_PREFIX: usize = 6;

/// `message` with every occurrence of each secret replaced by `<redacted>`, and also the longest
/// leading piece of it (at least [`MIN_REDACTED_PREFIX`] characters): MariaDB quotes the
/// statement text near a syntax error, cut after 80 characters, which can end mid-password.
fn redact(message: &str, secrets: &[&str]) -> String {
    let mut out = message.to_owned();
    for secret in secrets.iter().filter(|s| s.len() >= MIN_REDACTED_PREFIX) {
        out = out.replace(secret, "<redacted>");
        let prefix = (MIN_REDACTED_PREFIX..secret.len())
            .rev()
            .filter_map(|n| secret.get(..n))
            .find(|prefix| out.contains(prefix));
        if let Some(prefix) = prefix {
            out = out.replace(prefix, "<redacted>");
        }
    }
    out
}

/// An error and its sources, `: `-separated, skipping a source whose text the chain already
/// shows.
fn error_chain(error: &(dyn StdError + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kinds() {
        assert_eq!(
            DatabaseKind::parse("postgresql").unwrap(),
            DatabaseKind::Postgresql
        );
        assert_eq!(
            DatabaseKind::parse("mariadb").unwrap(),
            DatabaseKind::Mariadb
        );
        assert_eq!(
            DatabaseKind::parse("mysql").unwrap_err().to_string(),
            "unknown database kind `mysql`: expected `postgresql` or `mariadb`"
        );
        for kind in [DatabaseKind::Postgresql, DatabaseKind::Mariadb] {
            assert_eq!(DatabaseKind::parse(kind.as_str()).unwrap(), kind);
        }
    }

    #[test]
    fn refuses_passwords_in_urls() {
        let cases = [
            (
                DatabaseKind::Postgresql,
                "postgres://admin:pw@db:5432/orders",
            ),
            (DatabaseKind::Postgresql, "postgresql://admin:@db/orders"),
            (
                DatabaseKind::Postgresql,
                "postgres://admin@db/orders?password=pw",
            ),
            (
                DatabaseKind::Postgresql,
                "postgres://admin@db/orders?sslmode=disable&Password=x",
            ),
            (DatabaseKind::Mariadb, "mysql://root:pw@127.0.0.1:3306/test"),
            (DatabaseKind::Mariadb, "mariadb://root:p@ss@127.0.0.1/test"),
        ];
        for (kind, url) in cases {
            assert_eq!(
                check_url(kind, url),
                Err(DatabaseError::PasswordInUrl),
                "{url}"
            );
        }
    }

    #[test]
    fn accepts_urls_without_password() {
        let cases = [
            (
                DatabaseKind::Postgresql,
                "postgres://sigil_admin@127.0.0.1:5432/orders",
            ),
            (
                DatabaseKind::Postgresql,
                "postgresql://a@db/x?application_name=y",
            ),
            (DatabaseKind::Mariadb, "mysql://root@127.0.0.1:3306/test"),
            (DatabaseKind::Mariadb, "mariadb://root@127.0.0.1:3306/test"),
        ];
        for (kind, url) in cases {
            assert_eq!(check_url(kind, url), Ok(()), "{url}");
        }
    }

    #[test]
    fn rejects_wrong_scheme_and_missing_user() {
        let cases = [
            (DatabaseKind::Postgresql, "mysql://root@db/test"),
            (DatabaseKind::Mariadb, "postgres://root@db/test"),
            (DatabaseKind::Mariadb, "mysql://db/test"),
            (DatabaseKind::Mariadb, "root@db/test"),
        ];
        for (kind, url) in cases {
            assert!(
                matches!(check_url(kind, url), Err(DatabaseError::InvalidUrl { .. })),
                "{url}"
            );
        }
    }

    #[test]
    fn checks_usernames() {
        assert!(check_username("v_orders_abcdefghijklmnop").is_ok());
        for bad in ["", "Admin", "a\"b", "a'b", "a b", &"a".repeat(64)] {
            assert!(
                matches!(
                    check_username(bad),
                    Err(DatabaseError::InvalidUsername { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn redacts_whole_and_truncated_secrets() {
        let secret = "Abc123-xyz.789~QRS";
        assert_eq!(
            redact(
                &format!("near 'IDENTIFIED BY '{secret}'' at line 1"),
                &[secret]
            ),
            "near 'IDENTIFIED BY '<redacted>'' at line 1"
        );
        assert_eq!(
            redact("near 'IDENTIFIED BY 'Abc123-xyz' at line 1", &[secret]),
            "near 'IDENTIFIED BY '<redacted>' at line 1"
        );
        assert_eq!(redact("role exists", &[secret, ""]), "role exists");
    }

    #[test]
    fn debug_hides_the_admin_password() {
        let connection = AdminConnection {
            kind: DatabaseKind::Mariadb,
            url: "mysql://root@127.0.0.1:3306/test".into(),
            password: Zeroizing::new("hunter2-secret".into()),
        };
        let debug = format!("{connection:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("<redacted>"));
    }

    #[test]
    fn retryable_errors_are_unreachable_and_timeout() {
        assert!(
            DatabaseError::Unreachable {
                address: "db:5432".into(),
                cause: "refused".into()
            }
            .is_retryable()
        );
        assert!(DatabaseError::Timeout { operation: "check" }.is_retryable());
        assert!(
            !DatabaseError::Statement {
                index: 0,
                cause: "syntax".into()
            }
            .is_retryable()
        );
        assert!(!DatabaseError::PasswordInUrl.is_retryable());
    }

    #[test]
    fn statement_message_counts_from_one() {
        let e = DatabaseError::Statement {
            index: 0,
            cause: "ERROR 42601: syntax error".into(),
        };
        assert_eq!(
            e.to_string(),
            "the database rejected statement 1: ERROR 42601: syntax error"
        );
    }
}
