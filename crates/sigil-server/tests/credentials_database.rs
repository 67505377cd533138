//! The target-database drivers of brokered credentials against real PostgreSQL and MariaDB:
//! creating a user and logging in as it, revoking it while its session is open, idempotent
//! revocation, statement errors (with the index, no password in the message, nothing left
//! behind), unreachable databases, a wrong admin password, and admin password rotation on a
//! temporary admin user (never on `postgres` or `root`).
//!
//! The databases are `SIGIL_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`) and `SIGIL_TEST_MARIADB_URL` (default
//! `mysql://root@127.0.0.1:3306/test`), both with an empty admin password. When one is
//! unreachable its tests print a notice and pass without running, unless `CI` is set: then they
//! fail.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "fixtures outside #[test] functions: a failed unwrap is a failed test"
)]

use std::io::Write as _;
use std::sync::Arc;

use mysql_async::prelude::Queryable;
use sigil_server::credentials::database::{
    AdminConnection, DatabaseError, DatabaseKind, TargetDatabase, default_renewal_statements,
    default_revocation_statements, open,
};
use sigil_server::credentials::password::{PasswordPolicy, generate_username};
use sigil_server::credentials::template::{Template, TemplateValues};
use zeroize::Zeroizing;

const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const DEFAULT_MARIADB_URL: &str = "mysql://root@127.0.0.1:3306/test";
const EXPIRATION: &str = "2099-01-01 00:00:00+00";

fn postgres_url() -> String {
    std::env::var("SIGIL_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned())
}

fn mariadb_url() -> String {
    std::env::var("SIGIL_TEST_MARIADB_URL").unwrap_or_else(|_| DEFAULT_MARIADB_URL.to_owned())
}

fn templates(statements: &[&str]) -> Vec<Template> {
    statements
        .iter()
        .map(|s| Template::parse(s).unwrap())
        .collect()
}

fn admin(kind: DatabaseKind, url: &str, password: &str) -> Arc<dyn TargetDatabase> {
    open(AdminConnection {
        kind,
        url: url.to_owned(),
        password: Zeroizing::new(password.to_owned()),
    })
    .unwrap()
}

/// The admin connection to the test database, or `None` (after a notice) when it is
/// unreachable outside CI.
async fn reachable(kind: DatabaseKind, url: &str) -> Option<Arc<dyn TargetDatabase>> {
    let db = admin(kind, url, "");
    match db.check().await {
        Ok(()) => Some(db),
        Err(e @ DatabaseError::Unreachable { .. }) if std::env::var_os("CI").is_none() => {
            let _ = writeln!(
                std::io::stderr(),
                "skipping: {kind} test database unreachable ({e}); set CI=1 to fail instead"
            );
            None
        }
        Err(e) => panic!("{kind} test database: {e}"),
    }
}

/// A credential's values: a fresh user name and password.
struct Credential {
    name: String,
    password: Zeroizing<String>,
}

impl Credential {
    fn new(role: &str) -> Self {
        Self {
            name: generate_username(role).unwrap(),
            password: PasswordPolicy::default().generate().unwrap(),
        }
    }

    fn values(&self) -> TemplateValues<'_> {
        TemplateValues {
            name: &self.name,
            password: &self.password,
            expiration: EXPIRATION,
        }
    }
}

mod postgres {
    use super::*;

    const CREATE: &[&str] = &[
        "CREATE ROLE \"{{name}}\" LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'",
        "GRANT CONNECT ON DATABASE test TO \"{{name}}\"",
    ];
    /// The role was granted a privilege, so it must lose it before it can be dropped.
    const REVOKE: &[&str] = &[
        "DROP OWNED BY \"{{name}}\"",
        "DROP ROLE IF EXISTS \"{{name}}\"",
    ];

    async fn raw(
        user: &str,
        password: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let mut config: tokio_postgres::Config = postgres_url().parse().unwrap();
        config.user(user).password(password);
        let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        Ok(client)
    }

    async fn superuser() -> tokio_postgres::Client {
        let config: tokio_postgres::Config = postgres_url().parse().unwrap();
        let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        client
    }

    #[tokio::test]
    async fn creates_logs_in_renews_and_revokes_while_connected() {
        let Some(db) = reachable(DatabaseKind::Postgresql, &postgres_url()).await else {
            return;
        };
        assert_eq!(db.kind(), DatabaseKind::Postgresql);
        let cred = Credential::new("orders");
        db.create_user(&templates(CREATE), &cred.values())
            .await
            .unwrap();
        assert!(db.user_exists(&cred.name).await.unwrap());

        let session = raw(&cred.name, &cred.password).await.unwrap();
        let row = session
            .query_one("SELECT current_user::text", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), cred.name);

        let renewed = TemplateValues {
            expiration: "2098-06-01 00:00:00+00",
            ..cred.values()
        };
        db.renew_user(
            &templates(default_renewal_statements(DatabaseKind::Postgresql)),
            &renewed,
        )
        .await
        .unwrap();
        let year: i32 = superuser()
            .await
            .query_one(
                "SELECT extract(year FROM rolvaliduntil)::int FROM pg_roles WHERE rolname = $1",
                &[&cred.name],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(year, 2098);

        db.revoke_user(&cred.name, &templates(REVOKE), &cred.values())
            .await
            .unwrap();
        assert!(
            session.query_one("SELECT 1", &[]).await.is_err(),
            "the open session must be terminated"
        );
        assert!(
            raw(&cred.name, &cred.password).await.is_err(),
            "a new login must fail"
        );
        assert!(!db.user_exists(&cred.name).await.unwrap());
        // Again, with the user gone: fine.
        db.revoke_user(&cred.name, &templates(REVOKE), &cred.values())
            .await
            .unwrap();
        db.revoke_user(
            &cred.name,
            &templates(default_revocation_statements(DatabaseKind::Postgresql)),
            &cred.values(),
        )
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn statement_errors_name_the_statement_and_leave_no_user() {
        let Some(db) = reachable(DatabaseKind::Postgresql, &postgres_url()).await else {
            return;
        };
        let cred = Credential::new("bad");
        let err = db
            .create_user(
                &templates(&["CREATE ROLEX \"{{name}}\" PASSWORD '{{password}}'"]),
                &cred.values(),
            )
            .await
            .unwrap_err();
        let DatabaseError::Statement { index: 0, cause } = &err else {
            panic!("expected a statement error, got {err:?}");
        };
        assert!(cause.contains("42601"), "{cause}");
        assert!(!err.to_string().contains(cred.password.as_str()));

        // The first statement succeeds, the second fails: one transaction, so no role remains.
        let mut statements = templates(CREATE);
        statements.push(Template::parse("GRANT SELECT ON no_such_table TO \"{{name}}\"").unwrap());
        let err = db
            .create_user(&statements, &cred.values())
            .await
            .unwrap_err();
        assert!(
            matches!(err, DatabaseError::Statement { index: 2, .. }),
            "{err:?}"
        );
        db.revoke_user(&cred.name, &templates(REVOKE), &cred.values())
            .await
            .unwrap();
        assert!(!db.user_exists(&cred.name).await.unwrap());
    }

    #[tokio::test]
    async fn unreachable_database_names_the_address() {
        let db = admin(
            DatabaseKind::Postgresql,
            "postgres://postgres@127.0.0.1:1/test",
            "",
        );
        let err = db.check().await.unwrap_err();
        let DatabaseError::Unreachable { address, .. } = &err else {
            panic!("expected unreachable, got {err:?}");
        };
        assert_eq!(address, "127.0.0.1:1");
        assert!(err.is_retryable());
        assert!(err.to_string().contains("`127.0.0.1:1`"), "{err}");
    }

    #[tokio::test]
    async fn refuses_a_password_in_the_url() {
        let err = open(AdminConnection {
            kind: DatabaseKind::Postgresql,
            url: "postgres://postgres:hunter2@127.0.0.1:5432/test".into(),
            password: Zeroizing::new(String::new()),
        })
        .err()
        .unwrap();
        assert_eq!(err, DatabaseError::PasswordInUrl);
        assert!(!err.to_string().contains("hunter2"));
    }

    /// PostgreSQL trusts every login from 127.0.0.1 here, so neither a wrong admin password nor
    /// the old password after rotation can be seen failing. What can be asserted: the stored
    /// password hash changes, and operations keep working over the new pool.
    #[tokio::test]
    async fn rotates_the_password_of_a_temporary_admin() {
        let Some(_) = reachable(DatabaseKind::Postgresql, &postgres_url()).await else {
            return;
        };
        let root = superuser().await;
        let adm = generate_username("adm").unwrap();
        let old = PasswordPolicy::default().generate().unwrap();
        root.batch_execute(&format!(
            "CREATE ROLE \"{adm}\" LOGIN CREATEROLE PASSWORD '{}'; GRANT pg_signal_backend TO \"{adm}\"",
            old.as_str()
        ))
        .await
        .unwrap();
        let stored = |adm: &str| {
            let adm = adm.to_owned();
            let root = &root;
            async move {
                root.query_one(
                    "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
                    &[&adm],
                )
                .await
                .unwrap()
                .get::<_, String>(0)
            }
        };
        let before = stored(&adm).await;

        let url = postgres_url().replacen("postgres@", &format!("{adm}@"), 1);
        let db = admin(DatabaseKind::Postgresql, &url, &old);
        db.check().await.unwrap();
        assert_eq!(
            db.rotate_root("bad'password-with-quote").await,
            Err(DatabaseError::InvalidPassword)
        );
        let new = PasswordPolicy::default().generate().unwrap();
        db.rotate_root(&new).await.unwrap();
        assert_ne!(stored(&adm).await, before);

        let cred = Credential::new("after");
        let create = templates(&[CREATE[0]]);
        let revoke = templates(default_revocation_statements(DatabaseKind::Postgresql));
        db.create_user(&create, &cred.values()).await.unwrap();
        db.revoke_user(&cred.name, &revoke, &cred.values())
            .await
            .unwrap();
        assert!(!db.user_exists(&cred.name).await.unwrap());

        drop(db);
        root.batch_execute(&format!("DROP ROLE \"{adm}\""))
            .await
            .unwrap();
    }
}

mod mariadb {
    use super::*;

    const CREATE: &[&str] = &[
        "CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'",
        "GRANT SELECT ON test.* TO '{{name}}'@'%'",
    ];

    fn opts(user: &str, password: &str) -> mysql_async::Opts {
        let base = mysql_async::Opts::from_url(&mariadb_url()).unwrap();
        mysql_async::OptsBuilder::from_opts(base)
            .user(Some(user))
            .pass(Some(password))
            .prefer_socket(false)
            .into()
    }

    async fn raw(user: &str, password: &str) -> Result<mysql_async::Conn, mysql_async::Error> {
        mysql_async::Conn::new(opts(user, password)).await
    }

    async fn root() -> mysql_async::Conn {
        let base = mysql_async::Opts::from_url(&mariadb_url()).unwrap();
        mysql_async::Conn::new(mysql_async::OptsBuilder::from_opts(base).prefer_socket(false))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn creates_logs_in_and_revokes_while_connected() {
        let Some(db) = reachable(DatabaseKind::Mariadb, &mariadb_url()).await else {
            return;
        };
        assert_eq!(db.kind(), DatabaseKind::Mariadb);
        let cred = Credential::new("orders");
        db.create_user(&templates(CREATE), &cred.values())
            .await
            .unwrap();
        assert!(db.user_exists(&cred.name).await.unwrap());

        let mut session = raw(&cred.name, &cred.password).await.unwrap();
        let user: Option<String> = session.query_first("SELECT CURRENT_USER()").await.unwrap();
        assert_eq!(user.unwrap(), format!("{}@%", cred.name));

        // MariaDB has no renewal statements by default: a no-op.
        db.renew_user(
            &templates(default_renewal_statements(DatabaseKind::Mariadb)),
            &cred.values(),
        )
        .await
        .unwrap();

        let revoke = templates(default_revocation_statements(DatabaseKind::Mariadb));
        db.revoke_user(&cred.name, &revoke, &cred.values())
            .await
            .unwrap();
        assert!(
            session.query_drop("SELECT 1").await.is_err(),
            "the open session must be killed"
        );
        match raw(&cred.name, &cred.password).await {
            // 1045, or 1698 for some refusals of an unknown user.
            Err(mysql_async::Error::Server(e)) => assert!([1045, 1698].contains(&e.code), "{e}"),
            other => panic!("a new login must be refused, got {other:?}"),
        }
        assert!(!db.user_exists(&cred.name).await.unwrap());
        // Again, with the user gone: fine.
        db.revoke_user(&cred.name, &revoke, &cred.values())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn statement_errors_name_the_statement_and_hide_the_password() {
        let Some(db) = reachable(DatabaseKind::Mariadb, &mariadb_url()).await else {
            return;
        };
        let cred = Credential::new("bad");
        // MariaDB quotes the statement near a syntax error: the password would be in it.
        let err = db
            .create_user(
                &templates(&["CREATE USERR '{{name}}'@'%' IDENTIFIED BY '{{password}}'"]),
                &cred.values(),
            )
            .await
            .unwrap_err();
        let DatabaseError::Statement { index: 0, cause } = &err else {
            panic!("expected a statement error, got {err:?}");
        };
        assert!(cause.contains("1064"), "{cause}");
        assert!(cause.contains("<redacted>"), "{cause}");
        let prefix = cred.password.get(..8).unwrap();
        assert!(!err.to_string().contains(prefix), "{err}");
        let revoke = templates(default_revocation_statements(DatabaseKind::Mariadb));
        db.revoke_user(&cred.name, &revoke, &cred.values())
            .await
            .unwrap();
        assert!(!db.user_exists(&cred.name).await.unwrap());

        // The user is created, the grant fails: the caller cleans up with revoke_user.
        let statements = templates(&[CREATE[0], "GRANT SELECT ON test.* TO '{{name}}'@'%' BOGUS"]);
        let err = db
            .create_user(&statements, &cred.values())
            .await
            .unwrap_err();
        assert!(
            matches!(err, DatabaseError::Statement { index: 1, .. }),
            "{err:?}"
        );
        assert!(db.user_exists(&cred.name).await.unwrap());
        db.revoke_user(&cred.name, &revoke, &cred.values())
            .await
            .unwrap();
        assert!(!db.user_exists(&cred.name).await.unwrap());
    }

    #[tokio::test]
    async fn unreachable_database_names_the_address() {
        let db = admin(DatabaseKind::Mariadb, "mariadb://root@127.0.0.1:1/test", "");
        let err = db.check().await.unwrap_err();
        let DatabaseError::Unreachable { address, .. } = &err else {
            panic!("expected unreachable, got {err:?}");
        };
        assert_eq!(address, "127.0.0.1:1");
        assert!(err.is_retryable());
    }

    /// Creates an admin user with a password; returns its name and URL.
    async fn temporary_admin(root: &mut mysql_async::Conn, password: &str) -> (String, String) {
        let adm = generate_username("adm").unwrap();
        root.query_drop(format!(
            "CREATE USER '{adm}'@'%' IDENTIFIED BY '{password}'"
        ))
        .await
        .unwrap();
        root.query_drop(format!(
            "GRANT ALL PRIVILEGES ON *.* TO '{adm}'@'%' WITH GRANT OPTION"
        ))
        .await
        .unwrap();
        let url = mariadb_url().replacen("root@", &format!("{adm}@"), 1);
        (adm, url)
    }

    #[tokio::test]
    async fn wrong_admin_password_is_an_authentication_error() {
        let Some(_) = reachable(DatabaseKind::Mariadb, &mariadb_url()).await else {
            return;
        };
        let mut root = root().await;
        let password = PasswordPolicy::default().generate().unwrap();
        let (adm, url) = temporary_admin(&mut root, &password).await;

        admin(DatabaseKind::Mariadb, &url, &password)
            .check()
            .await
            .unwrap();
        let err = admin(DatabaseKind::Mariadb, &url, "wrong-password-123")
            .check()
            .await
            .unwrap_err();
        let DatabaseError::Authentication { user, cause } = &err else {
            panic!("expected an authentication error, got {err:?}");
        };
        assert_eq!(user, &adm);
        assert!(cause.contains("1045"), "{cause}");
        assert!(!err.is_retryable());
        assert!(!err.to_string().contains("wrong-password-123"));

        root.query_drop(format!("DROP USER '{adm}'@'%'"))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn rotates_the_password_of_a_temporary_admin() {
        let Some(_) = reachable(DatabaseKind::Mariadb, &mariadb_url()).await else {
            return;
        };
        let mut root = root().await;
        let old = PasswordPolicy::default().generate().unwrap();
        let (adm, url) = temporary_admin(&mut root, &old).await;

        let db = admin(DatabaseKind::Mariadb, &url, &old);
        db.check().await.unwrap();
        assert_eq!(
            db.rotate_root("bad;password-with-semicolon").await,
            Err(DatabaseError::InvalidPassword)
        );
        let new = PasswordPolicy::default().generate().unwrap();
        db.rotate_root(&new).await.unwrap();

        // Later operations use the new password (the pool was replaced).
        db.check().await.unwrap();
        let cred = Credential::new("after");
        db.create_user(&templates(CREATE), &cred.values())
            .await
            .unwrap();
        let revoke = templates(default_revocation_statements(DatabaseKind::Mariadb));
        db.revoke_user(&cred.name, &revoke, &cred.values())
            .await
            .unwrap();
        assert!(!db.user_exists(&cred.name).await.unwrap());

        // The old password no longer logs in; the new one does.
        let err = admin(DatabaseKind::Mariadb, &url, &old)
            .check()
            .await
            .unwrap_err();
        assert!(
            matches!(err, DatabaseError::Authentication { .. }),
            "{err:?}"
        );
        admin(DatabaseKind::Mariadb, &url, &new)
            .check()
            .await
            .unwrap();

        drop(db);
        root.query_drop(format!("DROP USER '{adm}'@'%'"))
            .await
            .unwrap();
    }
}
