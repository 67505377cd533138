//! The PostgreSQL backend against the conformance suite (each case in a fresh schema of its
//! own), plus what only PostgreSQL has: a feed that stays gap-free when a lower sequence commits
//! last, changes made through another store (another server replica) moving the watch, the
//! listener's reconnect, concurrent first starts migrating once, refusing a newer schema, and
//! connection errors and `Debug` output that never show a password. And the audit tamper matrix
//! (`common/tamper.rs`), tampering through a plain client.
//!
//! The database is `SIGIL_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`);
//! the user must be allowed to create schemas. When it is unreachable the tests print a notice and
//! pass without running, unless `CI` is set: then they fail.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "fixtures outside #[test] functions: a failed unwrap is a failed test"
)]

use std::io::Write as _;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sigil_store::conformance::{NOW, bundle, new_entry};
use sigil_store::postgres::LATEST_SCHEMA_VERSION;
use sigil_store::{
    Datastore, EntryFilter, PostgresConfig, PostgresPassword, PostgresStore, StoreError,
};
use tokio_postgres::{Client, NoTls};

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// How long a test waits for something that should take milliseconds.
const PATIENCE: Duration = Duration::from_secs(10);

mod conformance {
    use super::*;
    sigil_store::datastore_conformance_tests!(optional: fresh_store());
}

#[path = "common/tamper.rs"]
mod tamper;

/// The audit tamper matrix, each case in a fresh schema, tampered with through a plain client.
mod tamper_matrix {
    use super::*;
    tamper::tamper_tests!(async {
        let schema = TestSchema::create().await?;
        let store = schema.store().await;
        let raw = RawPostgres(schema.client().await);
        Some((store, raw, schema))
    });
}

/// Raw SQL through a plain client in the test's schema.
struct RawPostgres(Client);

impl tamper::RawSql for RawPostgres {
    async fn run(&self, sql: &str) {
        self.0.batch_execute(sql).await.unwrap();
    }
}

/// A store on a fresh, empty schema; `None` (after a notice) when PostgreSQL is unreachable
/// outside CI.
async fn fresh_store() -> Option<(PostgresStore, TestSchema)> {
    let schema = TestSchema::create().await?;
    let store = schema.store().await;
    Some((store, schema))
}

/// A schema of its own for one test, dropped with everything in it when this goes. Stores and
/// clients made from it keep their tables there (through `search_path`) and name their
/// connections after it (`application_name`), so tests can find their own sessions.
struct TestSchema {
    name: String,
    admin_url: String,
}

impl TestSchema {
    async fn create() -> Option<Self> {
        let admin_url =
            std::env::var("SIGIL_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned());
        let admin = match raw_client(&admin_url).await {
            Ok(client) => client,
            Err(e) => {
                let detail = std::error::Error::source(&e)
                    .map_or_else(|| e.to_string(), |cause| format!("{e}: {cause}"));
                if std::env::var_os("CI").is_some_and(|ci| !ci.is_empty()) {
                    panic!(
                        "PostgreSQL (SIGIL_TEST_POSTGRES_URL) is unreachable and CI is set, so the \
                         PostgreSQL tests may not be skipped: {detail}"
                    );
                }
                // Straight to the stderr handle: libtest captures `eprintln!` of passing tests.
                static NOTICE: std::sync::Once = std::sync::Once::new();
                NOTICE.call_once(|| {
                    let _ = writeln!(
                        std::io::stderr(),
                        "NOTICE: skipping the PostgreSQL tests: the database \
                         (SIGIL_TEST_POSTGRES_URL, default {DEFAULT_URL}) is unreachable: {detail}"
                    );
                });
                return None;
            }
        };
        let name: String = admin
            .query_one(
                "SELECT 'sigil_test_' || translate(gen_random_uuid()::text, '-', '')",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        admin
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .unwrap();
        Some(Self { name, admin_url })
    }

    /// The admin URL with this schema as `search_path` and as `application_name`.
    fn url(&self) -> String {
        let name = &self.name;
        if self.admin_url.contains("://") {
            let separator = if self.admin_url.contains('?') {
                '&'
            } else {
                '?'
            };
            format!(
                "{}{separator}options=-c%20search_path%3D{name}&application_name={name}",
                self.admin_url
            )
        } else {
            format!(
                "{} options='-c search_path={name}' application_name={name}",
                self.admin_url
            )
        }
    }

    fn config(&self) -> PostgresConfig {
        let mut config = PostgresConfig::new(self.url());
        config.pool_size = 4;
        config
    }

    async fn store(&self) -> PostgresStore {
        PostgresStore::connect(&self.config()).await.unwrap()
    }

    /// A plain client in this schema.
    async fn client(&self) -> Client {
        raw_client(&self.url()).await.unwrap()
    }

    /// How many of this schema's sessions wait for a lock (stores' and clients' alike).
    async fn sessions_waiting_for_a_lock(&self, observer: &Client) -> i64 {
        observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE application_name = $1 AND wait_event_type = 'Lock'",
                &[&self.name],
            )
            .await
            .unwrap()
            .get(0)
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop cannot await; a thread of its own with a small runtime can.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let client = raw_client(&url).await.map_err(|e| e.to_string())?;
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                    .await
                    .map_err(|e| e.to_string())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test schema {}: {dropped:?}", self.name);
        }
    }
}

/// A tokio-postgres client on `url`, its connection driven by a task of its own.
async fn raw_client(url: &str) -> Result<Client, tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::from_str(url)?;
    config.connect_timeout(Duration::from_secs(3));
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Polls `done` every 10 ms until it holds; fails the test after [`PATIENCE`].
async fn wait_for<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !done().await {
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `watch` holds at least `wanted`; fails the test after [`PATIENCE`].
async fn watch_reaches(watch: &mut tokio::sync::watch::Receiver<u64>, wanted: u64) {
    tokio::time::timeout(PATIENCE, watch.wait_for(|seen| *seen >= wanted))
        .await
        .expect("the watch moves within the patience")
        .expect("the store is still open");
}

/// Transaction A draws its event's sequence first and commits last; transaction B comes later
/// and would commit first. A reader following `changes_since(cursor)` meanwhile must never move
/// its cursor past A's event before A commits. A trigger in the test schema holds A between
/// drawing its sequence and committing until the test opens a gate (an advisory lock held by
/// a plain client), so both writes go through the store's own code. Without the feed lock B
/// commits first and the reader skips A for good; with it, B waits for A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lower_sequence_committing_last_is_not_skipped_by_readers() {
    let Some(schema) = TestSchema::create().await else {
        return;
    };
    let store = Arc::new(schema.store().await);
    let gate = schema.client().await;
    gate.batch_execute(
        "CREATE FUNCTION hold_at_gate() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN \
           PERFORM pg_advisory_xact_lock_shared(4242, hashtext(current_schema())); \
           RETURN NEW; \
         END $$; \
         CREATE TRIGGER hold_slow_event AFTER INSERT ON change_events FOR EACH ROW \
           WHEN (NEW.key = 'slow.example') EXECUTE FUNCTION hold_at_gate(); \
         SELECT pg_advisory_lock(4242, hashtext(current_schema()));",
    )
    .await
    .unwrap();

    // A: its event row (and sequence) exists, and it waits at the gate.
    let slow = tokio::spawn({
        let store = Arc::clone(&store);
        async move { store.put_bundle(bundle("slow.example", 1)).await }
    });
    let (schema_ref, gate_ref) = (&schema, &gate);
    wait_for("A to wait at the gate", || async move {
        schema_ref.sessions_waiting_for_a_lock(gate_ref).await == 1
    })
    .await;
    // B: later, so a higher sequence; it either commits or waits for the feed lock.
    let fast = tokio::spawn({
        let store = Arc::clone(&store);
        async move { store.put_bundle(bundle("fast.example", 1)).await }
    });
    let fast_ref = &fast;
    wait_for("B to commit or wait for A", || async move {
        fast_ref.is_finished() || schema_ref.sessions_waiting_for_a_lock(gate_ref).await == 2
    })
    .await;

    let mut cursor = 0;
    let mut seen = Vec::new();
    for _ in 0..5 {
        let page = store.changes_since(cursor, 100).await.unwrap();
        if let Some(last) = page.last() {
            cursor = last.seq;
        }
        seen.extend(page);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    gate.execute(
        "SELECT pg_advisory_unlock(4242, hashtext(current_schema()))",
        &[],
    )
    .await
    .unwrap();
    slow.await.unwrap().unwrap();
    fast.await.unwrap().unwrap();
    let newest = store.latest_change().await.unwrap();
    while cursor < newest {
        let page = store.changes_since(cursor, 100).await.unwrap();
        let Some(last) = page.last() else { break };
        cursor = last.seq;
        seen.extend(page);
    }

    let all = store.changes_since(0, 100).await.unwrap();
    let keys: Vec<&str> = all.iter().map(|e| e.change.key()).collect();
    assert_eq!(
        keys,
        ["slow.example", "fast.example"],
        "A drew the lower sequence"
    );
    assert_eq!(
        seen, all,
        "the reader skipped an event that committed after a higher one"
    );
}

/// A change made through one store (one server replica) moves the watch of another store on
/// the same database, in both directions, to the writer's newest sequence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_one_store_move_the_watch_of_another() {
    let Some(schema) = TestSchema::create().await else {
        return;
    };
    let a = schema.store().await;
    let b = schema.store().await;
    let mut watch_a = a.watch_changes();
    let mut watch_b = b.watch_changes();
    assert_eq!(*watch_b.borrow_and_update(), 0);

    a.put_bundle(bundle("example.org", 1)).await.unwrap();
    let newest = a.latest_change().await.unwrap();
    assert_eq!(newest, 1);
    watch_reaches(&mut watch_b, newest).await;
    assert_eq!(*watch_b.borrow_and_update(), newest);

    b.create_entry(
        new_entry(
            "spiffe://example.org/web",
            "spiffe://example.org/agent",
            &["unix:uid:1"],
        ),
        NOW,
    )
    .await
    .unwrap();
    watch_reaches(&mut watch_a, 2).await;
    assert_eq!(a.latest_change().await.unwrap(), 2);
    assert_eq!(
        a.list_entries(&EntryFilter::default()).await.unwrap().len(),
        1
    );
}

/// When the listener's connection is killed, the store logs, reconnects, and catches up with a
/// change made while it was away (its notification is lost with the connection), then follows
/// notifications again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_reconnects_and_catches_up_after_losing_its_connection() {
    let Some(schema) = TestSchema::create().await else {
        return;
    };
    let watched = schema.store().await;
    let writer = schema.store().await;
    let mut watch = watched.watch_changes();
    let admin = schema.client().await;

    let listeners = format!("{} listener", schema.name);
    let killed: Vec<i32> = admin
        .query(
            // Materialised first: in one WHERE the planner may call pg_terminate_backend on
            // rows the name test would have filtered out.
            "WITH listener AS MATERIALIZED \
               (SELECT pid FROM pg_stat_activity WHERE application_name = $1) \
             SELECT pid FROM listener WHERE pg_terminate_backend(pid)",
            &[&listeners],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(killed.len(), 2, "one listener per store");
    wait_for("the killed listeners to be gone", || {
        let (admin, killed) = (&admin, &killed);
        async move {
            let alive: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)",
                    &[killed],
                )
                .await
                .unwrap()
                .get(0);
            alive == 0
        }
    })
    .await;
    // Both listeners are down (or reconnecting) while this commits.
    writer.put_bundle(bundle("example.org", 1)).await.unwrap();
    watch_reaches(&mut watch, 1).await;

    // The watched store's listener is back (its watch moved); the writer's reconnects on its
    // own backoff, so wait for both rather than read the count once.
    wait_for("both listeners back on new connections", || {
        let (admin, killed, listeners) = (&admin, &killed, &listeners);
        async move {
            let reconnected: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE application_name = $1 AND NOT pid = ANY($2)",
                    &[listeners, killed],
                )
                .await
                .unwrap()
                .get(0);
            reconnected == 2
        }
    })
    .await;

    writer.put_bundle(bundle("example.org", 2)).await.unwrap();
    watch_reaches(&mut watch, 2).await;
    let seen = *watch.borrow();
    assert_eq!(seen, writer.latest_change().await.unwrap());
}

/// Several servers starting at once on an empty schema: every connect succeeds and the schema
/// is migrated once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_connects_migrate_once() {
    let Some(schema) = TestSchema::create().await else {
        return;
    };
    let config = schema.config();
    let mut starts = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let config = config.clone();
        starts.spawn(async move { PostgresStore::connect(&config).await });
    }
    let mut stores = Vec::new();
    while let Some(started) = starts.join_next().await {
        stores.push(started.unwrap().unwrap());
    }
    for store in &stores {
        assert_eq!(store.schema_version().await.unwrap(), LATEST_SCHEMA_VERSION);
    }
    let applied: Vec<i64> = schema
        .client()
        .await
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(applied, (1..=LATEST_SCHEMA_VERSION).collect::<Vec<_>>());
}

/// A database migrated by a newer build is refused, and nothing in it changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_from_a_newer_build_is_refused() {
    let Some(schema) = TestSchema::create().await else {
        return;
    };
    drop(schema.store().await);
    let client = schema.client().await;
    client
        .execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, 'future', 0)",
            &[&(LATEST_SCHEMA_VERSION + 1)],
        )
        .await
        .unwrap();

    let err = PostgresStore::connect(&schema.config()).await.unwrap_err();
    assert!(
        matches!(err, StoreError::SchemaTooNew { found, supported }
            if found == LATEST_SCHEMA_VERSION + 1 && supported == LATEST_SCHEMA_VERSION),
        "{err:?}"
    );
    let versions: i64 = client
        .query_one("SELECT count(*) FROM schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(versions, LATEST_SCHEMA_VERSION + 1);
}

/// A schema at version 1 is upgraded in place and keeps its rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_a_version_1_database_and_keeps_its_rows() {
    let Some(schema) = TestSchema::create().await else {
        return;
    };
    let client = schema.client().await;
    client
        .batch_execute(concat!(
            "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, \
             applied_at BIGINT NOT NULL);",
            include_str!("../src/migrations/postgres/0001_initial.sql"),
            "INSERT INTO schema_migrations VALUES (1, 'initial', 0);",
            "INSERT INTO bundles VALUES ('example.org', '\\x7b7d', 1, 0);",
        ))
        .await
        .unwrap();

    let store = schema.store().await;
    assert_eq!(store.schema_version().await.unwrap(), LATEST_SCHEMA_VERSION);
    let kept = store.get_bundle("example.org").await.unwrap().unwrap();
    assert_eq!(kept.document, b"{}");
    assert_eq!(store.list_revocations().await.unwrap(), []);
}

/// An unreachable database is one clear error naming `host:port`, with neither the separate
/// password nor one written into the URL in it, and no panic.
#[tokio::test]
async fn unreachable_database_is_a_clear_error_naming_host_and_port() {
    let mut config = PostgresConfig::new("postgres://sigil:url-secret@127.0.0.1:1/sigil");
    config.password = Some(PostgresPassword::new("separate-secret"));
    config.connect_timeout = Duration::from_secs(2);
    let started = Instant::now();
    let err = PostgresStore::connect(&config).await.unwrap_err();
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("cannot connect to PostgreSQL at 127.0.0.1:1"),
        "{message}"
    );
    for shown in [message, format!("{err:?}")] {
        assert!(!shown.contains("secret"), "{shown}");
    }
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// Neither the configuration nor a connected store shows a password in `Debug`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_is_not_in_debug_output() {
    let mut config = PostgresConfig::new("postgres://sigil:url-secret@db.example/sigil");
    config.password = Some(PostgresPassword::new("separate-secret"));
    let shown = format!("{config:?}");
    assert!(shown.contains("db.example"), "{shown}");
    assert!(!shown.contains("secret"), "{shown}");

    let Some(schema) = TestSchema::create().await else {
        return;
    };
    let mut config = schema.config();
    // The test server trusts local connections, so any password is accepted (and unused).
    config.password = Some(PostgresPassword::new("separate-secret"));
    let store = PostgresStore::connect(&config).await.unwrap();
    let shown = format!("{store:?} {config:?}");
    assert!(
        shown.contains("127.0.0.1") || shown.contains("localhost"),
        "{shown}"
    );
    assert!(!shown.contains("secret"), "{shown}");
}

/// A `search_path` naming no existing schema is a clear error, not a panic or a half-migrated
/// database elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_path_without_a_schema_is_a_clear_error() {
    let Some(schema) = TestSchema::create().await else {
        return;
    };
    let url = schema.url().replace(
        &format!("search_path%3D{}", schema.name),
        "search_path%3Dnowhere_at_all",
    );
    let err = PostgresStore::connect(&PostgresConfig::new(url))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("search_path `nowhere_at_all`"),
        "{err}"
    );
}

/// Rows damaged behind the store's back are reported as `Corrupt`, not panicked on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_rows_are_reported_not_panicked_on() {
    let Some(schema) = TestSchema::create().await else {
        return;
    };
    let store = schema.store().await;
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
    assert!(store.get_entry(&created.id).await.unwrap().is_some());
    let client = schema.client().await;
    client
        .batch_execute(
            "UPDATE entries SET spiffe_id = 'https://example.org/web'; \
             UPDATE change_events SET kind = 'entry_exploded';",
        )
        .await
        .unwrap();

    let got = store.get_entry(&created.id).await;
    assert!(
        matches!(&got, Err(StoreError::Corrupt { kind: "entry", id, .. }) if *id == created.id),
        "{got:?}"
    );
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
    // An update rewrites every column, so it repairs the row.
    let repaired = store
        .update_entry(&created.id, created.spec.clone(), Some(1), NOW + 1)
        .await
        .unwrap();
    assert_eq!(store.get_entry(&created.id).await.unwrap(), Some(repaired));
}
