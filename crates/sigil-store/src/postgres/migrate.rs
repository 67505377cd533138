//! Schema migrations on PostgreSQL: numbered SQL files in `src/migrations/postgres/`, applied
//! in order in one transaction that holds an advisory lock, and recorded in `schema_migrations`.
//!
//! PostgreSQL's DDL is transactional, so servers starting at once cannot half-migrate: the first
//! to take the lock migrates and commits, the others wait, then find nothing left to do.

use deadpool_postgres::{GenericClient, Object};

use super::{PostgresError, backend, column, query, query_opt};
use crate::{StoreError, StoreResult};

/// First key of the migration advisory lock ("SIGM"); the second is the schema's OID, so
/// deployments in separate schemas of one database do not wait for each other.
const MIGRATION_LOCK_CLASS: i32 = 0x5349_474d;

/// One schema step.
struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

/// Every migration this build knows, oldest first, versions 1, 2, 3... without gaps; the same
/// steps as SQLite's, so both backends have the same schema version.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("../migrations/postgres/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "revocation",
        sql: include_str!("../migrations/postgres/0002_revocation.sql"),
    },
    Migration {
        version: 3,
        name: "authority_replica",
        sql: include_str!("../migrations/postgres/0003_authority_replica.sql"),
    },
    Migration {
        version: 4,
        name: "federation",
        sql: include_str!("../migrations/postgres/0004_federation.sql"),
    },
    Migration {
        version: 5,
        name: "governance",
        sql: include_str!("../migrations/postgres/0005_governance.sql"),
    },
    Migration {
        version: 6,
        name: "credentials",
        sql: include_str!("../migrations/postgres/0006_credentials.sql"),
    },
    Migration {
        version: 7,
        name: "entry_labels",
        sql: include_str!("../migrations/postgres/0007_entry_labels.sql"),
    },
    Migration {
        version: 8,
        name: "crls",
        sql: include_str!("../migrations/postgres/0008_crls.sql"),
    },
];

/// The schema version a database has once every known migration is applied.
pub const LATEST_SCHEMA_VERSION: i64 = 8;

const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at BIGINT NOT NULL
)";

/// The schema the store's tables live in: the connection's `current_schema()`.
#[derive(Debug, Clone)]
pub(super) struct Schema {
    pub(super) name: String,
    /// Its OID, which keys the advisory locks and the NOTIFY channel.
    pub(super) oid: u32,
}

impl Schema {
    /// The OID as the second key of a two-key advisory lock (an `int4`, so its bits).
    pub(super) fn lock_key(&self) -> i32 {
        i32::from_ne_bytes(self.oid.to_ne_bytes())
    }
}

/// The schema new tables go to; fails when `search_path` names no existing schema.
pub(super) async fn current_schema(db: &impl GenericClient) -> StoreResult<Schema> {
    let row = query_opt(
        db,
        "SELECT n.nspname::text, n.oid FROM pg_namespace n WHERE n.nspname = current_schema()",
        &[],
    )
    .await?;
    match row {
        Some(row) => Ok(Schema {
            name: column(&row, 0)?,
            oid: column(&row, 1)?,
        }),
        None => {
            let rows = query(db, "SELECT current_setting('search_path')", &[]).await?;
            let search_path = match rows.first() {
                Some(row) => column(row, 0)?,
                None => String::new(),
            };
            Err(StoreError::Backend(Box::new(PostgresError::NoSchema {
                search_path,
            })))
        }
    }
}

/// Applies every migration newer than the database's version, all in one transaction under
/// the migration lock. Refuses a database whose version is newer than
/// [`LATEST_SCHEMA_VERSION`], before changing anything in it.
pub(super) async fn apply_pending(conn: &mut Object, schema: &Schema) -> StoreResult<()> {
    let tx = conn.transaction().await.map_err(backend)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[&MIGRATION_LOCK_CLASS, &schema.lock_key()],
    )
    .await
    .map_err(backend)?;
    // Under the lock: another server may have migrated while this one waited, and each
    // statement in read-committed mode sees what was committed before it started.
    tx.batch_execute(CREATE_MIGRATIONS_TABLE)
        .await
        .map_err(backend)?;
    let found = current_version(&tx).await?;
    if found > LATEST_SCHEMA_VERSION {
        // Dropping `tx` rolls back, so not even the table above is left behind.
        return Err(StoreError::SchemaTooNew {
            found,
            supported: LATEST_SCHEMA_VERSION,
        });
    }
    let pending: Vec<&Migration> = MIGRATIONS.iter().filter(|m| m.version > found).collect();
    for migration in &pending {
        tx.batch_execute(migration.sql).await.map_err(backend)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) \
             VALUES ($1, $2, floor(extract(epoch FROM now()))::bigint)",
            &[&migration.version, &migration.name],
        )
        .await
        .map_err(backend)?;
    }
    tx.commit().await.map_err(backend)?;
    for migration in pending {
        tracing::info!(
            version = migration.version,
            name = migration.name,
            schema = %schema.name,
            "applied datastore migration"
        );
    }
    Ok(())
}

/// The newest applied migration, 0 for an empty database.
pub(super) async fn current_version(db: &impl GenericClient) -> StoreResult<i64> {
    let rows = query(
        db,
        "SELECT coalesce(max(version), 0)::bigint FROM schema_migrations",
        &[],
    )
    .await?;
    match rows.first() {
        Some(row) => column(row, 0),
        None => Ok(0),
    }
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
        assert_eq!(LATEST_SCHEMA_VERSION, crate::sqlite::LATEST_SCHEMA_VERSION);
    }
}
