//! Schema migrations: numbered SQL files in `src/migrations/`, each applied once, in order, in
//! its own transaction, and recorded in `schema_migrations`.

use rusqlite::{Connection, TransactionBehavior, params};

use super::backend;
use crate::{StoreError, StoreResult};

/// One schema step.
struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

/// Every migration this build knows, oldest first, versions 1, 2, 3... without gaps.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("../migrations/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "revocation",
        sql: include_str!("../migrations/0002_revocation.sql"),
    },
    Migration {
        version: 3,
        name: "authority_replica",
        sql: include_str!("../migrations/0003_authority_replica.sql"),
    },
    Migration {
        version: 4,
        name: "federation",
        sql: include_str!("../migrations/0004_federation.sql"),
    },
    Migration {
        version: 5,
        name: "governance",
        sql: include_str!("../migrations/0005_governance.sql"),
    },
    Migration {
        version: 6,
        name: "credentials",
        sql: include_str!("../migrations/0006_credentials.sql"),
    },
    Migration {
        version: 7,
        name: "entry_labels",
        sql: include_str!("../migrations/0007_entry_labels.sql"),
    },
    Migration {
        version: 8,
        name: "crls",
        sql: include_str!("../migrations/0008_crls.sql"),
    },
];

/// The schema version a database has once every known migration is applied.
pub const LATEST_SCHEMA_VERSION: i64 = 8;

const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    applied_at INTEGER NOT NULL
) STRICT";

/// Applies every migration newer than the database's version. Refuses a database whose version
/// is newer than [`LATEST_SCHEMA_VERSION`], before changing anything in it.
pub(super) fn apply_pending(conn: &mut Connection) -> StoreResult<()> {
    conn.execute(CREATE_MIGRATIONS_TABLE, []).map_err(backend)?;
    let found = current_version(conn)?;
    if found > LATEST_SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: LATEST_SCHEMA_VERSION,
        });
    }
    for migration in MIGRATIONS.iter().filter(|m| m.version > found) {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        // Re-checked inside the transaction: another process may have migrated meanwhile.
        if current_version(&tx)? >= migration.version {
            continue;
        }
        tx.execute_batch(migration.sql).map_err(backend)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) \
             VALUES (?1, ?2, unixepoch())",
            params![migration.version, migration.name],
        )
        .map_err(backend)?;
        tx.commit().map_err(backend)?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applied datastore migration"
        );
    }
    Ok(())
}

/// The newest applied migration, 0 for an empty database.
pub(super) fn current_version(conn: &Connection) -> StoreResult<i64> {
    conn.query_row(
        "SELECT coalesce(max(version), 0) FROM schema_migrations",
        [],
        |row| row.get(0),
    )
    .map_err(backend)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_without_gaps_up_to_latest() {
        for (expected, migration) in (1..).zip(MIGRATIONS) {
            assert_eq!(migration.version, expected, "{}", migration.name);
        }
        assert_eq!(
            MIGRATIONS.last().map(|m| m.version),
            Some(LATEST_SCHEMA_VERSION)
        );
    }

    #[test]
    fn applying_twice_records_each_migration_once() {
        let mut conn = Connection::open_in_memory().unwrap();
        apply_pending(&mut conn).unwrap();
        apply_pending(&mut conn).unwrap();
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, LATEST_SCHEMA_VERSION);
        assert_eq!(current_version(&conn).unwrap(), LATEST_SCHEMA_VERSION);
    }

    #[test]
    fn upgrades_a_version_1_database_and_keeps_its_rows() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute(CREATE_MIGRATIONS_TABLE, []).unwrap();
        let first = MIGRATIONS.first().unwrap();
        conn.execute_batch(first.sql).unwrap();
        conn.execute(
            "INSERT INTO schema_migrations VALUES (?1, ?2, 0)",
            params![first.version, first.name],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO bundles VALUES ('example.org', x'7b7d', 1, 0)",
            [],
        )
        .unwrap();

        apply_pending(&mut conn).unwrap();
        assert_eq!(current_version(&conn).unwrap(), LATEST_SCHEMA_VERSION);
        let bundles: i64 = conn
            .query_row("SELECT count(*) FROM bundles", [], |r| r.get(0))
            .unwrap();
        assert_eq!(bundles, 1);
        let new_tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema \
                 WHERE type = 'table' AND name IN ('issued_credentials', 'revocations')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(new_tables, 2);
    }

    #[test]
    fn refuses_newer_schema_without_touching_it() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute(CREATE_MIGRATIONS_TABLE, []).unwrap();
        conn.execute(
            "INSERT INTO schema_migrations VALUES (?1, 'future', 0)",
            [LATEST_SCHEMA_VERSION + 1],
        )
        .unwrap();
        let err = apply_pending(&mut conn).unwrap_err();
        assert!(
            matches!(err, StoreError::SchemaTooNew { found, supported }
                if found == LATEST_SCHEMA_VERSION + 1 && supported == LATEST_SCHEMA_VERSION),
            "{err:?}"
        );
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name = 'entries'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 0);
    }
}
