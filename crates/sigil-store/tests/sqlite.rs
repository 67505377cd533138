//! The SQLite backend against the conformance suite (on disk and in memory), plus what only
//! SQLite has: migrations on reopen, WAL, file mode, refusing a newer schema, corrupt rows. And
//! the audit tamper matrix (`common/tamper.rs`), tampering through a connection of its own.

#![expect(
    clippy::unwrap_used,
    reason = "fixtures outside #[test] functions: a failed unwrap is a failed test"
)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rusqlite::Connection;
use sigil_store::conformance::{NOW, issued_credential, new_entry, spiffe_federation};
use sigil_store::sqlite::LATEST_SCHEMA_VERSION;
use sigil_store::{CredentialKind, Datastore, EntryFilter, SqliteStore, StoreError};
use tempfile::TempDir;

/// A fresh store in a database file of its own; the directory lives as long as the guard.
async fn store_on_disk() -> (SqliteStore, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&db_path(&dir)).unwrap();
    (store, dir)
}

async fn store_in_memory() -> (SqliteStore, ()) {
    (SqliteStore::open_in_memory().unwrap(), ())
}

fn db_path(dir: &TempDir) -> PathBuf {
    dir.path().join("sigil.db")
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

mod on_disk {
    use super::*;
    sigil_store::datastore_conformance_tests!(store_on_disk());
}

mod in_memory {
    use super::*;
    sigil_store::datastore_conformance_tests!(store_in_memory());
}

#[path = "common/tamper.rs"]
mod tamper;

/// The audit tamper matrix on a database file, tampered with through a connection of its own.
mod tamper_matrix {
    use super::*;
    tamper::tamper_tests!(async {
        let (store, dir) = store_on_disk().await;
        Some((store, RawSqlite(db_path(&dir)), dir))
    });
}

/// Raw SQL on the store's database file, through a connection of its own.
struct RawSqlite(PathBuf);

impl tamper::RawSql for RawSqlite {
    async fn run(&self, sql: &str) {
        let conn = Connection::open(&self.0).unwrap();
        conn.execute_batch(sql).unwrap();
    }
}

#[tokio::test]
async fn reopen_keeps_data_and_does_not_rerun_migrations() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let created = {
        let store = SqliteStore::open(&path).unwrap();
        store
            .create_entry(
                new_entry(
                    "spiffe://example.org/web",
                    "spiffe://example.org/agent",
                    &["unix:uid:1"],
                ),
                NOW,
            )
            .await
            .unwrap()
    };
    let applied_before: Vec<(i64, i64)> = applied_migrations(&path);
    assert_eq!(
        applied_before.len(),
        usize::try_from(LATEST_SCHEMA_VERSION).unwrap()
    );

    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.schema_version().await.unwrap(), LATEST_SCHEMA_VERSION);
    assert_eq!(store.get_entry(&created.id).await.unwrap(), Some(created));
    assert_eq!(store.latest_change().await.unwrap(), 1);
    assert_eq!(
        *store.watch_changes().borrow(),
        1,
        "watch starts at the stored sequence"
    );
    drop(store);
    assert_eq!(applied_migrations(&path), applied_before);
}

#[tokio::test]
async fn file_store_uses_write_ahead_logging() {
    let (_store, dir) = store_on_disk().await;
    let conn = Connection::open(db_path(&dir)).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn database_files_are_private_to_the_owner() {
    let (store, dir) = store_on_disk().await;
    store
        .create_entry(
            new_entry(
                "spiffe://example.org/web",
                "spiffe://example.org/agent",
                &["unix:uid:1"],
            ),
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(mode_of(&db_path(&dir)), 0o600);
    let wal = dir.path().join("sigil.db-wal");
    assert!(wal.exists(), "a write creates the WAL file");
    assert_eq!(mode_of(&wal), 0o600);
}

#[tokio::test]
async fn open_tightens_a_world_readable_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    drop(SqliteStore::open(&path).unwrap());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    drop(SqliteStore::open(&path).unwrap());
    assert_eq!(mode_of(&path), 0o600);
}

#[tokio::test]
async fn database_from_a_newer_build_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    drop(SqliteStore::open(&path).unwrap());
    let conn = Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, 'future', 0)",
        [LATEST_SCHEMA_VERSION + 1],
    )
    .unwrap();
    drop(conn);

    let err = SqliteStore::open(&path).unwrap_err();
    assert!(
        matches!(err, StoreError::SchemaTooNew { found, supported }
            if found == LATEST_SCHEMA_VERSION + 1 && supported == LATEST_SCHEMA_VERSION),
        "{err:?}"
    );
    assert!(err.to_string().contains("newer"), "{err}");
}

#[tokio::test]
async fn file_that_is_not_a_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    std::fs::write(
        &path,
        b"this is not an SQLite database, just some text long enough",
    )
    .unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
}

#[tokio::test]
async fn corrupt_entry_row_is_reported_not_panicked_on() {
    let (store, dir) = store_on_disk().await;
    let created = store
        .create_entry(
            new_entry(
                "spiffe://example.org/web",
                "spiffe://example.org/agent",
                &["unix:uid:1"],
            ),
            NOW,
        )
        .await
        .unwrap();
    let conn = Connection::open(db_path(&dir)).unwrap();
    conn.execute(
        "UPDATE entries SET spiffe_id = 'https://example.org/web' WHERE id = ?1",
        [&created.id],
    )
    .unwrap();

    let got = store.get_entry(&created.id).await;
    assert!(
        matches!(&got, Err(StoreError::Corrupt { kind: "entry", id, .. }) if *id == created.id),
        "{got:?}"
    );
    let listed = store.list_entries(&EntryFilter::default()).await;
    assert!(
        matches!(listed, Err(StoreError::Corrupt { .. })),
        "{listed:?}"
    );

    // An update rewrites every column, so it repairs the row.
    let repaired = store
        .update_entry(&created.id, created.spec.clone(), Some(1), NOW + 1)
        .await
        .unwrap();
    assert_eq!(store.get_entry(&created.id).await.unwrap(), Some(repaired));
}

#[tokio::test]
async fn corrupt_selectors_and_change_kinds_are_reported() {
    let (store, dir) = store_on_disk().await;
    let created = store
        .create_entry(
            new_entry(
                "spiffe://example.org/web",
                "spiffe://example.org/agent",
                &["unix:uid:1"],
            ),
            NOW,
        )
        .await
        .unwrap();
    let conn = Connection::open(db_path(&dir)).unwrap();
    conn.execute("UPDATE entries SET selectors = 'no-separator'", [])
        .unwrap();
    conn.execute("UPDATE change_events SET kind = 'entry_exploded'", [])
        .unwrap();

    let got = store.get_entry(&created.id).await;
    assert!(matches!(got, Err(StoreError::Corrupt { .. })), "{got:?}");
    let changes = store.changes_since(0, 10).await;
    assert!(
        matches!(
            changes,
            Err(StoreError::Corrupt {
                kind: "change event",
                ..
            })
        ),
        "{changes:?}"
    );
}

#[tokio::test]
async fn corrupt_credential_rows_are_reported_not_panicked_on() {
    let (store, dir) = store_on_disk().await;
    let kind = CredentialKind::X509Svid;
    store
        .record_issued(vec![
            issued_credential(kind, "0a", NOW + 3600),
            issued_credential(kind, "0b", NOW + 3600),
        ])
        .await
        .unwrap();
    store
        .revoke_credential(kind, "0a", "compromised", NOW)
        .await
        .unwrap();
    // Proves the reads work before the rows are damaged.
    assert!(store.get_issued(kind, "0b").await.unwrap().is_some());
    assert_eq!(store.list_revocations().await.unwrap().len(), 1);

    let conn = Connection::open(db_path(&dir)).unwrap();
    conn.execute(
        "UPDATE issued_credentials SET issued_to = 'not a spiffe id' WHERE id = '0b'",
        [],
    )
    .unwrap();
    conn.execute("UPDATE revocations SET kind = 'crl_entry'", [])
        .unwrap();

    let issued = store.get_issued(kind, "0b").await;
    assert!(
        matches!(&issued, Err(StoreError::Corrupt { kind: "issued credential", id, detail })
            if id == "x509_svid:0b" && detail.contains("issued_to")),
        "{issued:?}"
    );
    let listed = store.list_revocations().await;
    assert!(
        matches!(
            listed,
            Err(StoreError::Corrupt {
                kind: "revocation",
                ..
            })
        ),
        "{listed:?}"
    );
}

#[tokio::test]
async fn corrupt_federation_rows_are_reported_not_panicked_on() {
    let (store, dir) = store_on_disk().await;
    for trust_domain in ["a.example", "b.example"] {
        store
            .create_federation(spiffe_federation(trust_domain), NOW)
            .await
            .unwrap();
    }
    // Proves the reads work before the rows are damaged.
    assert_eq!(store.list_federations().await.unwrap().len(), 2);

    let conn = Connection::open(db_path(&dir)).unwrap();
    // Past the CHECK constraints: a profile this build does not know, and a URL the store
    // would refuse to write.
    conn.execute_batch(
        "PRAGMA ignore_check_constraints = ON; \
         UPDATE federation_relationships SET profile = 'https_carrier_pigeon' \
           WHERE trust_domain = 'a.example'; \
         UPDATE federation_relationships SET bundle_endpoint_url = 'http://b.example' \
           WHERE trust_domain = 'b.example';",
    )
    .unwrap();

    let got = store.get_federation("a.example").await;
    assert!(
        matches!(&got, Err(StoreError::Corrupt { kind: "federation relationship", id, detail })
            if id == "a.example" && detail.contains("https_carrier_pigeon")),
        "{got:?}"
    );
    let got = store.get_federation("b.example").await;
    assert!(
        matches!(&got, Err(StoreError::Corrupt { id, detail, .. })
            if id == "b.example" && detail.contains("bundle_endpoint_url")),
        "{got:?}"
    );
    let listed = store.list_federations().await;
    assert!(
        matches!(listed, Err(StoreError::Corrupt { .. })),
        "{listed:?}"
    );
}

#[tokio::test]
async fn relationships_stored_before_owners_existed_read_with_an_empty_owner() {
    let (store, dir) = store_on_disk().await;
    store
        .create_federation(spiffe_federation("a.example"), NOW)
        .await
        .unwrap();
    // Proves the owner is stored before it is taken away.
    let read = store.get_federation("a.example").await.unwrap().unwrap();
    assert_eq!(read.owner, sigil_store::conformance::FEDERATION_OWNER);

    // What migration 5 leaves in a row created before it.
    let conn = Connection::open(db_path(&dir)).unwrap();
    conn.execute("UPDATE federation_relationships SET owner = ''", [])
        .unwrap();
    let read = store.get_federation("a.example").await.unwrap().unwrap();
    assert_eq!(read.owner, "");
    assert_eq!(store.list_federations().await.unwrap(), [read]);
}

/// `(version, applied_at)` of every recorded migration.
fn applied_migrations(path: &Path) -> Vec<(i64, i64)> {
    let conn = Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare("SELECT version, applied_at FROM schema_migrations ORDER BY version")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}
