//! The PostgreSQL backend: pooled connections (deadpool-postgres over tokio-postgres) to a
//! database that several server replicas may share, plus one dedicated connection per store that
//! LISTENs for the change notifications of every replica.
//!
//! Every mutation runs in one transaction. The record modules queue its change events on a
//! [`WriteTx`]; at the very end the events are appended under the feed's advisory lock, with a
//! notification that PostgreSQL delivers at commit (`change_feed` says why this keeps the feed
//! gap-free for readers). After the commit the local watch channel moves at once; the listener
//! moves it for changes made by other processes.
//!
//! The tables live in the connection's `current_schema()` (the first existing schema on its
//! `search_path`), so several deployments can share one database in separate schemas: the
//! advisory locks and the notification channel are keyed by that schema's OID.

mod agents;
mod audit;
mod authorities;
mod bundles;
mod change_feed;
mod credentials;
mod crls;
mod entries;
mod federations;
mod governance;
mod join_tokens;
mod leases;
mod listener;
mod migrate;
mod tls;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_postgres::config::Host;
use tokio_postgres::error::SqlState;

use crate::model::{
    check_audit_batch, check_audit_key, check_checkpoint, check_page_limit, check_usage_batch,
    normalized_batch,
};
use crate::rows::corrupt;
use crate::{
    AttestedAgent, AuditEvent, AuditFilter, AuditKey, AuditRecord, AuthorityRecord, AuthorityState,
    Change, ChangeEvent, Checkpoint, CredentialKind, Datastore, Entry, EntryFilter, EntryReview,
    EntryUsage, FederationRelationship, FederationUpdate, IssuedCredential, JoinToken, Lease,
    LeaseFilter, NewEntry, NewFederationRelationship, Revocation, StoreError, StoreResult,
    StoredBundle, StoredCredentialTarget, StoredCrl, WorkloadUsage,
};

pub use migrate::LATEST_SCHEMA_VERSION;

/// Connections the pool opens at most, unless configured otherwise.
pub const DEFAULT_POOL_SIZE: usize = 16;
/// How long opening one connection may take, unless configured otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest pool accepted: PostgreSQL's default `max_connections` is 100, shared by every replica.
pub const MAX_POOL_SIZE: usize = 256;

/// How to reach the database. The password is kept apart from the URL so that it can come from
/// a file or an environment variable; neither it nor a password written into the URL is ever
/// shown by `Debug`.
#[derive(Clone)]
pub struct PostgresConfig {
    /// A libpq-style connection string: `postgres://user@host:port/db?options=...` or
    /// `host=... user=... dbname=...`. TLS as libpq's `sslmode`, `sslrootcert`, `sslcert`,
    /// `sslkey` and `channel_binding` say (default `prefer`; see the `tls` module).
    pub url: String,
    /// The password, when it is not in `url` (it overrides one that is).
    pub password: Option<PostgresPassword>,
    /// Connections the pool keeps open at most (1 to [`MAX_POOL_SIZE`]); the change listener
    /// uses one more.
    pub pool_size: usize,
    /// How long opening one connection may take before it fails.
    pub connect_timeout: Duration,
}

/// A database password: it has no `Display`, and its `Debug` prints `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresPassword(String);

/// A [`Datastore`] on a PostgreSQL database, safe to share between several server processes.
pub struct PostgresStore {
    pool: Pool,
    feed: change_feed::Feed,
    audit_lock: audit::AuditLock,
    latest: Arc<watch::Sender<u64>>,
    /// Keeps `latest` current with the changes of every process; aborted on drop.
    listener: JoinHandle<()>,
    /// `host:port` of the database, for error messages.
    target: Arc<str>,
}

impl PostgresConfig {
    /// A configuration for `url` with no separate password, [`DEFAULT_POOL_SIZE`] connections
    /// and [`DEFAULT_CONNECT_TIMEOUT`].
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            password: None,
            pool_size: DEFAULT_POOL_SIZE,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &redacted_url(&self.url))
            .field("password", &self.password)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl PostgresPassword {
    /// Wraps a password read from a file or the environment.
    pub fn new(password: impl Into<String>) -> Self {
        Self(password.into())
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PostgresPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl PostgresStore {
    /// Connects to the database, applies pending migrations (one transaction under an advisory
    /// lock, so servers starting together migrate once), and starts listening for changes.
    ///
    /// Fails with [`StoreError::Invalid`] (field `url` or `pool_size`) for a malformed
    /// configuration (an `sslrootcert` that cannot be read or holds no certificate included),
    /// [`StoreError::SchemaTooNew`] when the database was migrated by a newer build, and
    /// [`StoreError::Backend`] naming `host:port` when the database cannot be reached, refuses
    /// the login or presents a certificate that does not verify.
    pub async fn connect(config: &PostgresConfig) -> StoreResult<Self> {
        let (pg, tls) = pg_config(config)?;
        let tls = tls::PostgresTls::load(&tls).await?;
        let target: Arc<str> = describe_target(&pg).into();
        let manager = Manager::from_config(
            pg.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(config.connect_timeout))
            .recycle_timeout(Some(config.connect_timeout))
            // A caller waits for a busy pool no longer than for a fresh connection, plus the
            // time a few short transactions take.
            .wait_timeout(Some(config.connect_timeout.saturating_mul(2)))
            .build()
            .map_err(|e| StoreError::Backend(Box::new(e)))?;

        let mut conn = pool
            .get()
            .await
            .map_err(|e| unreachable_error(&target, e))?;
        let schema = migrate::current_schema(&conn).await?;
        migrate::apply_pending(&mut conn, &schema).await?;
        drop(conn);

        let feed = change_feed::Feed::for_schema(&schema);
        let audit_lock = audit::AuditLock::for_schema(&schema);
        let (sender, _) = watch::channel(0);
        let latest = Arc::new(sender);
        let listener = listener::start(
            pg,
            tls,
            feed.channel().to_owned(),
            Arc::clone(&latest),
            Arc::clone(&target),
            config.connect_timeout,
        )
        .await?;
        tracing::info!(target = %target, schema = %schema.name, "connected to the PostgreSQL datastore");
        Ok(Self {
            pool,
            feed,
            audit_lock,
            latest,
            listener,
            target,
        })
    }

    /// The schema version of the database (the newest applied migration).
    pub async fn schema_version(&self) -> StoreResult<i64> {
        let conn = self.conn().await?;
        migrate::current_version(&conn).await
    }

    /// A pooled connection.
    async fn conn(&self) -> StoreResult<Object> {
        self.pool
            .get()
            .await
            .map_err(|e| unreachable_error(&self.target, e))
    }

    /// Commits `tx`, appending its events, then moves the watch channel to the newest sequence.
    async fn commit(&self, tx: WriteTx<'_>) -> StoreResult<()> {
        if let Some(newest) = tx.commit(&self.feed).await? {
            // The listener would get there too, but a caller that reads its own write's
            // sequence from the watch must not wait for a round trip through the database.
            advance(&self.latest, newest);
        }
        Ok(())
    }
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.target)
            .field("channel", &self.feed.channel())
            .field("latest", &*self.latest.borrow())
            .finish_non_exhaustive()
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// One mutation's transaction and the change events it will append when it commits.
pub(super) struct WriteTx<'c> {
    tx: deadpool_postgres::Transaction<'c>,
    changes: Vec<change_feed::PendingChange>,
}

impl<'c> WriteTx<'c> {
    async fn begin(conn: &'c mut Object) -> StoreResult<Self> {
        let tx = conn.transaction().await.map_err(backend)?;
        Ok(Self {
            tx,
            changes: Vec::new(),
        })
    }

    /// The transaction, to run statements in.
    pub(super) fn db(&self) -> &deadpool_postgres::Transaction<'c> {
        &self.tx
    }

    /// Queues `change` for the feed. `at` is the caller's clock when the mutation carries one;
    /// otherwise the database's clock is used.
    pub(super) fn record(&mut self, change: Change, at: Option<i64>) {
        self.changes.push(change_feed::PendingChange { change, at });
    }

    /// Appends the queued events (if any) and commits; returns the newest sequence appended.
    /// Dropping a `WriteTx` instead rolls everything back.
    async fn commit(self, feed: &change_feed::Feed) -> StoreResult<Option<u64>> {
        let newest = if self.changes.is_empty() {
            None
        } else {
            Some(change_feed::append(&self.tx, feed, &self.changes).await?)
        };
        self.tx.commit().await.map_err(backend)?;
        Ok(newest)
    }
}

#[async_trait]
impl Datastore for PostgresStore {
    async fn create_entry(&self, entry: NewEntry, now: i64) -> StoreResult<Entry> {
        let entry = entry.normalized()?;
        let mut conn = self.conn().await?;
        let mut tx = WriteTx::begin(&mut conn).await?;
        let created = entries::create(&mut tx, entry, now).await?;
        self.commit(tx).await?;
        Ok(created)
    }

    async fn create_entries(&self, entries: Vec<NewEntry>, now: i64) -> StoreResult<Vec<Entry>> {
        let entries = normalized_batch(entries)?;
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn().await?;
        let mut tx = WriteTx::begin(&mut conn).await?;
        let created = entries::create_many(&mut tx, entries, now).await?;
        self.commit(tx).await?;
        Ok(created)
    }

    async fn get_entry(&self, id: &str) -> StoreResult<Option<Entry>> {
        let conn = self.conn().await?;
        entries::get(&conn, id).await
    }

    async fn list_entries(&self, filter: &EntryFilter) -> StoreResult<Vec<Entry>> {
        let conn = self.conn().await?;
        entries::list(&conn, filter, None, None).await
    }

    async fn list_entries_page(
        &self,
        filter: &EntryFilter,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Entry>> {
        check_page_limit(limit)?;
        let conn = self.conn().await?;
        entries::list(&conn, filter, after, Some(limit)).await
    }

    async fn update_entry(
        &self,
        id: &str,
        update: NewEntry,
        expected_revision: Option<i64>,
        now: i64,
    ) -> StoreResult<Entry> {
        let update = update.normalized()?;
        let mut conn = self.conn().await?;
        let mut tx = WriteTx::begin(&mut conn).await?;
        let updated = entries::update(&mut tx, id, update, expected_revision, now).await?;
        self.commit(tx).await?;
        Ok(updated)
    }

    async fn delete_entry(&self, id: &str) -> StoreResult<Entry> {
        let mut conn = self.conn().await?;
        let mut tx = WriteTx::begin(&mut conn).await?;
        let deleted = entries::delete(&mut tx, id).await?;
        self.commit(tx).await?;
        Ok(deleted)
    }

    async fn create_join_token(&self, token: JoinToken) -> StoreResult<()> {
        token.validate()?;
        let mut conn = self.conn().await?;
        let mut tx = WriteTx::begin(&mut conn).await?;
        join_tokens::create(&mut tx, &token).await?;
        self.commit(tx).await
    }

    async fn consume_join_token(&self, token_hash: &str, now: i64) -> StoreResult<JoinToken> {
        let mut conn = self.conn().await?;
        let mut tx = WriteTx::begin(&mut conn).await?;
        let token = join_tokens::consume(&mut tx, token_hash, now).await?;
        self.commit(tx).await?;
        Ok(token)
    }

    async fn get_join_token(&self, token_hash: &str) -> StoreResult<Option<JoinToken>> {
        let conn = self.conn().await?;
        join_tokens::get(&conn, token_hash).await
    }

    async fn attest_with_join_token(
        &self,
        token_hash: &str,
        agent: AttestedAgent,
        now: i64,
    ) -> StoreResult<JoinToken> {
        let mut conn = self.conn().await?;
        let mut tx = WriteTx::begin(&mut conn).await?;
        let token = join_tokens::consume(&mut tx, token_hash, now).await?;
        agents::create(&mut tx, agent).await?;
        self.commit(tx).await?;
        Ok(token)
    }

    async fn prune_join_tokens(&self, before: i64) -> StoreResult<u64> {
        let mut conn = self.conn().await?;
        let mut tx = WriteTx::begin(&mut conn).await?;
        let pruned = join_tokens::prune(&mut tx, before).await?;
        self.commit(tx).await?;
        Ok(pruned)
    }

    async fn create_agent(&self, agent: AttestedAgent) -> StoreResult<()> {
        let mut conn = self.conn().await?;
        let mut tx = WriteTx::begin(&mut conn).await?;
        agents::create(&mut tx, agent).await?;
        self.commit(tx).await
    }

    async fn get_agent(&self, spiffe_id: &str) -> StoreResult<Option<AttestedAgent>> {
        let conn = self.conn().await?;
        agents::get(&conn, spiffe_id).await
    }

    async fn list_agents(&self) -> StoreResult<Vec<AttestedAgent>> {
        let conn = self.conn().await?;
        agents::list(&conn).await
    }

    async fn list_agents_page(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<AttestedAgent>> {
        check_page_limit(limit)?;
        let conn = self.conn().await?;
        agents::list_page(&conn, after, limit).await
    }

    async fn record_agent_renewal(&self, spiffe_id: &str, new_serial: &str) -> StoreResult<()> {
        let mut conn = self.conn().await?;
        let mut tx = WriteTx::begin(&mut conn).await?;
        agents::record_renewal(&mut tx, spiffe_id, new_serial).await?;
        self.commit(tx).await
    }

    async fn activate_agent_serial(
        &self,
        spiffe_id: &str,
        presented_serial: &str,
        expires_at: i64,
    ) -> StoreResult<bool> {
        let mut conn = self.conn().await?;
        let mut tx = WriteTx::begin(&mut conn).await?;
        let current =
            agents::activate_serial(&mut tx, spiffe_id, presented_serial, expires_at).await?;
        self.commit(tx).await?;
        Ok(current)
    }

    async fn set_agent_banned(&self, spiffe_id: &str, banned: bool) -> StoreResult<()> {
        let mut conn = self.conn().await?;
        let mut tx = WriteTx::begin(&mut conn).await?;
        agents::set_banned(&mut tx, spiffe_id, banned).await?;
        self.commit(tx).await
    }

    async fn touch_agent_last_seen(&self, spiffe_id: &str, now: i64) -> StoreResult<()> {
        // One statement, no event: it needs no transaction of its own.
        let conn = self.conn().await?;
        agents::touch_last_seen(&conn, spiffe_id, now).await
    }

    async fn delete_agent(&self, spiffe_id: &str) -> StoreResult<AttestedAgent> {
        let mut conn = self.conn().await?;
        let mut tx = WriteTx::begin(&mut conn).await?;
        let deleted = agents::delete(&mut tx, spiffe_id).await?;
        self.commit(tx).await?;
        Ok(deleted)
    }

    async fn create_authority(&self, authority: AuthorityRecord) -> StoreResult<()> {
        let mut conn = self.conn().await?;
        let mut tx = WriteTx::begin(&mut conn).await?;
        authorities::create(&mut tx, &authority).await?;
        self.commit(tx).await
    }

    async fn set_authority_state(
        &self,
        id: &str,
        expected: AuthorityState,
        new: AuthorityState,
    ) -> StoreResult<AuthorityRecord> {
        let mut conn = self.conn().await?;
        let mut tx = WriteTx::begin(&mut conn).await?;
        let record = authorities::set_state(&mut tx, id, expected, new).await?;
        self.commit(tx).await?;
        Ok(record)
    }

    async fn delete_authority(&self, id: &str) -> StoreResult<AuthorityRecord> {
        let mut conn = self.conn().await?;
        let mut tx = WriteTx::begin(&mut conn).await?;
        let deleted = authorities::delete(&mut tx, id).await?;
        self.commit(tx).await?;
        Ok(deleted)
    }

    async fn list_authorities(&self) -> StoreResult<Vec<AuthorityRecord>> {
        let conn = self.conn().await?;
        authorities::list(&conn).await
    }

    async fn record_issued(&self, credentials: Vec<IssuedCredential>) -> StoreResult<()> {
        for credential in &credentials {
            credential.validate()?;
        }
        if credentials.is_empty() {
            return Ok(());
        }
        // One multi-row statement: all of the batch or none of it, without a transaction.
        let conn = self.conn().await?;
        credentials::record_issued(&conn, &credentials).await
    }

    async fn get_issued(
        &self,
        kind: CredentialKind,
        id: &str,
    ) -> StoreResult<Option<IssuedCredential>> {
        let conn = self.conn().await?;
        credentials::get_issued(&conn, kind, id).await
    }

    async fn revoke_credential(
        &self,
        kind: CredentialKind,
        id: &str,
        reason: &str,
        now: i64,
    ) -> StoreResult<Revocation> {
        let mut conn = self.conn().await?;
        let mut tx = WriteTx::begin(&mut conn).await?;
        let revocation = credentials::revoke(&mut tx, kind, id, reason, now).await?;
        self.commit(tx).await?;
        Ok(revocation)
    }

    async fn get_revocation(
        &self,
        kind: CredentialKind,
        id: &str,
    ) -> StoreResult<Option<Revocation>> {
        let conn = self.conn().await?;
        credentials::get_revocation(&conn, kind, id).await
    }

    async fn list_revocations(&self) -> StoreResult<Vec<Revocation>> {
        let conn = self.conn().await?;
        credentials::list_revocations(&conn).await
    }

    async fn prune_expired_credentials(&self, before: i64) -> StoreResult<u64> {
        let mut conn = self.conn().await?;
        let mut tx = WriteTx::begin(&mut conn).await?;
        let pruned = credentials::prune_expired(&mut tx, before).await?;
        self.commit(tx).await?;
        Ok(pruned)
    }

    async fn put_bundle(&self, bundle: StoredBundle) -> StoreResult<()> {
        bundle.validate()?;
        let mut conn = self.conn().await?;
        let mut tx = WriteTx::begin(&mut conn).await?;
        bundles::put(&mut tx, &bundle).await?;
        self.commit(tx).await
    }

    async fn get_bundle(&self, trust_domain: &str) -> StoreResult<Option<StoredBundle>> {
        let conn = self.conn().await?;
        bundles::get(&conn, trust_domain).await
    }

    async fn list_bundles(&self) -> StoreResult<Vec<StoredBundle>> {
        let conn = self.conn().await?;
        bundles::list(&conn).await
    }

    async fn delete_bundle(&self, trust_domain: &str) -> StoreResult<()> {
        let mut conn = self.conn().await?;
        let mut tx = WriteTx::begin(&mut conn).await?;
        bundles::delete(&mut tx, trust_domain).await?;
        self.commit(tx).await
    }

    async fn put_bundle_if_newer(&self, bundle: StoredBundle) -> StoreResult<bool> {
        bundle.validate()?;
        let mut conn = self.conn().await?;
        let mut tx = WriteTx::begin(&mut conn).await?;
        let written = bundles::put_if_newer(&mut tx, &bundle).await?;
        self.commit(tx).await?;
        Ok(written)
    }

    async fn put_crl(&self, crl: StoredCrl) -> StoreResult<bool> {
        crl.validate()?;
        let mut conn = self.conn().await?;
        let mut tx = WriteTx::begin(&mut conn).await?;
        let written = crls::put(&mut tx, &crl).await?;
        self.commit(tx).await?;
        Ok(written)
    }

    async fn list_crls(&self) -> StoreResult<Vec<StoredCrl>> {
        let conn = self.conn().await?;
        crls::list(&conn).await
    }

    async fn create_federation(
        &self,
        new: NewFederationRelationship,
        now: i64,
    ) -> StoreResult<FederationRelationship> {
        new.validate()?;
        let mut conn = self.conn().await?;
        let mut tx = WriteTx::begin(&mut conn).await?;
        let created = federations::create(&mut tx, new, now).await?;
        self.commit(tx).await?;
        Ok(created)
    }

    async fn get_federation(
        &self,
        trust_domain: &str,
    ) -> StoreResult<Option<FederationRelationship>> {
        let conn = self.conn().await?;
        federations::get(&conn, trust_domain).await
    }

    async fn list_federations(&self) -> StoreResult<Vec<FederationRelationship>> {
        let conn = self.conn().await?;
        federations::list(&conn).await
    }

    async fn update_federation(
        &self,
        trust_domain: &str,
        update: FederationUpdate,
        now: i64,
    ) -> StoreResult<FederationRelationship> {
        update.validate()?;
        let mut conn = self.conn().await?;
        let mut tx = WriteTx::begin(&mut conn).await?;
        let updated = federations::update(&mut tx, trust_domain, &update, now).await?;
        self.commit(tx).await?;
        Ok(updated)
    }

    async fn delete_federation(&self, trust_domain: &str) -> StoreResult<()> {
        let mut conn = self.conn().await?;
        let mut tx = WriteTx::begin(&mut conn).await?;
        federations::delete(&mut tx, trust_domain).await?;
        self.commit(tx).await
    }

    async fn append_audit(&self, events: Vec<AuditEvent>) -> StoreResult<Vec<AuditRecord>> {
        check_audit_batch(&events)?;
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn().await?;
        let tx = WriteTx::begin(&mut conn).await?;
        let records = audit::append(&tx, self.audit_lock, events).await?;
        self.commit(tx).await?;
        Ok(records)
    }

    async fn list_audit(
        &self,
        filter: &AuditFilter,
        after: u64,
        limit: u32,
    ) -> StoreResult<Vec<AuditRecord>> {
        check_page_limit(limit)?;
        filter.validate()?;
        let conn = self.conn().await?;
        audit::list(&conn, filter, after, limit).await
    }

    async fn audit_head(&self) -> StoreResult<Option<(u64, String)>> {
        let conn = self.conn().await?;
        audit::head(&conn).await
    }

    async fn put_audit_checkpoint(&self, checkpoint: Checkpoint) -> StoreResult<()> {
        check_checkpoint(&checkpoint)?;
        let conn = self.conn().await?;
        audit::put_checkpoint(&conn, &checkpoint).await
    }

    async fn list_audit_checkpoints(&self) -> StoreResult<Vec<Checkpoint>> {
        let conn = self.conn().await?;
        audit::list_checkpoints(&conn).await
    }

    async fn register_audit_key(&self, key: AuditKey) -> StoreResult<()> {
        check_audit_key(&key)?;
        let conn = self.conn().await?;
        audit::register_key(&conn, &key).await
    }

    async fn list_audit_keys(&self) -> StoreResult<Vec<AuditKey>> {
        let conn = self.conn().await?;
        audit::list_keys(&conn).await
    }

    async fn record_workload_usage(&self, usage: Vec<WorkloadUsage>) -> StoreResult<()> {
        check_usage_batch(&usage)?;
        if usage.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn().await?;
        let tx = WriteTx::begin(&mut conn).await?;
        governance::record_usage(tx.db(), &usage).await?;
        self.commit(tx).await
    }

    async fn list_workload_usage(
        &self,
        entry_id: &str,
        limit: u32,
    ) -> StoreResult<Vec<WorkloadUsage>> {
        check_page_limit(limit)?;
        let conn = self.conn().await?;
        governance::list_usage(&conn, entry_id, limit).await
    }

    async fn usage_by_entry(&self) -> StoreResult<Vec<EntryUsage>> {
        let conn = self.conn().await?;
        governance::usage_by_entry(&conn).await
    }

    async fn prune_workload_usage(&self, before: i64) -> StoreResult<u64> {
        let conn = self.conn().await?;
        governance::prune_usage(&conn, before).await
    }

    async fn review_entry(&self, review: EntryReview) -> StoreResult<EntryReview> {
        review.validate()?;
        let conn = self.conn().await?;
        governance::review(&conn, &review).await?;
        Ok(review)
    }

    async fn list_entry_reviews(&self) -> StoreResult<Vec<EntryReview>> {
        let conn = self.conn().await?;
        governance::list_reviews(&conn).await
    }

    async fn list_join_tokens(&self) -> StoreResult<Vec<JoinToken>> {
        let conn = self.conn().await?;
        join_tokens::list(&conn).await
    }

    async fn list_issued_for(
        &self,
        spiffe_id: &sigil_spiffe::SpiffeId,
        limit: u32,
    ) -> StoreResult<Vec<IssuedCredential>> {
        check_page_limit(limit)?;
        let conn = self.conn().await?;
        credentials::list_issued_for(&conn, spiffe_id.as_str(), limit).await
    }

    // Leases and targets: each write is one statement and appends no event, so none needs a
    // transaction of its own.

    async fn create_lease(&self, lease: Lease) -> StoreResult<()> {
        lease.validate()?;
        let conn = self.conn().await?;
        leases::create(&conn, &lease).await
    }

    async fn get_lease(&self, id: &str) -> StoreResult<Option<Lease>> {
        let conn = self.conn().await?;
        leases::get(&conn, id).await
    }

    async fn list_leases(&self, filter: &LeaseFilter) -> StoreResult<Vec<Lease>> {
        let conn = self.conn().await?;
        leases::list(&conn, filter).await
    }

    async fn renew_lease(&self, id: &str, expires_at: i64, now: i64) -> StoreResult<Lease> {
        let conn = self.conn().await?;
        leases::renew(&conn, id, expires_at, now).await
    }

    async fn claim_lease_revocation(
        &self,
        id: &str,
        reason: &str,
        now: i64,
        claim_until: i64,
    ) -> StoreResult<Option<Lease>> {
        let reason = Lease::stored_reason(reason)?;
        let conn = self.conn().await?;
        leases::claim(&conn, id, reason, now, claim_until).await
    }

    async fn finish_lease_revocation(&self, id: &str, now: i64) -> StoreResult<()> {
        let conn = self.conn().await?;
        leases::finish(&conn, id, now).await
    }

    async fn due_leases(&self, now: i64, limit: u32) -> StoreResult<Vec<Lease>> {
        let conn = self.conn().await?;
        leases::due(&conn, now, limit).await
    }

    async fn next_lease_due(&self) -> StoreResult<Option<i64>> {
        let conn = self.conn().await?;
        leases::next_due(&conn).await
    }

    async fn prune_leases(&self, before: i64) -> StoreResult<u64> {
        let conn = self.conn().await?;
        leases::prune(&conn, before).await
    }

    async fn create_credential_target(
        &self,
        name: &str,
        owner: &str,
        spec: &str,
        now: i64,
    ) -> StoreResult<StoredCredentialTarget> {
        StoredCredentialTarget::validate_fields(name, owner, spec)?;
        let conn = self.conn().await?;
        leases::create_target(&conn, name, owner, spec, now).await
    }

    async fn get_credential_target(
        &self,
        name: &str,
    ) -> StoreResult<Option<StoredCredentialTarget>> {
        let conn = self.conn().await?;
        leases::get_target(&conn, name).await
    }

    async fn list_credential_targets(&self) -> StoreResult<Vec<StoredCredentialTarget>> {
        let conn = self.conn().await?;
        leases::list_targets(&conn).await
    }

    async fn update_credential_target(
        &self,
        name: &str,
        owner: &str,
        spec: &str,
        expected_revision: i64,
        now: i64,
    ) -> StoreResult<StoredCredentialTarget> {
        StoredCredentialTarget::validate_fields(name, owner, spec)?;
        let conn = self.conn().await?;
        leases::update_target(&conn, name, owner, spec, expected_revision, now).await
    }

    async fn delete_credential_target(&self, name: &str) -> StoreResult<StoredCredentialTarget> {
        let conn = self.conn().await?;
        leases::delete_target(&conn, name).await
    }

    async fn changes_since(&self, after: u64, limit: u32) -> StoreResult<Vec<ChangeEvent>> {
        let conn = self.conn().await?;
        change_feed::since(&conn, after, limit).await
    }

    async fn latest_change(&self) -> StoreResult<u64> {
        let conn = self.conn().await?;
        change_feed::latest(&conn).await
    }

    fn watch_changes(&self) -> watch::Receiver<u64> {
        self.latest.subscribe()
    }
}

/// What can go wrong talking to PostgreSQL, inside [`StoreError::Backend`]. The messages carry
/// the server's own words (`Display` of a tokio-postgres error alone says only "db error").
#[derive(Debug, thiserror::Error)]
enum PostgresError {
    #[error("cannot connect to PostgreSQL at {target}: {detail}")]
    Unreachable { target: String, detail: String },
    #[error("postgres: {detail}")]
    Query {
        detail: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error(
        "no schema to keep the tables in: search_path `{search_path}` names no existing schema"
    )]
    NoSchema { search_path: String },
}

/// The tokio-postgres configuration for `config`, with the separate password applied, and the
/// TLS settings (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`) taken out of its URL.
fn pg_config(config: &PostgresConfig) -> StoreResult<(tokio_postgres::Config, tls::TlsParams)> {
    if config.pool_size == 0 || config.pool_size > MAX_POOL_SIZE {
        return Err(StoreError::Invalid {
            field: "pool_size",
            reason: format!(
                "`{}` is not between 1 and {MAX_POOL_SIZE}",
                config.pool_size
            ),
        });
    }
    let (url, tls) = tls::split_tls_params(&config.url)?;
    // The parser's messages name the offending option, never its value.
    let mut pg = tokio_postgres::Config::from_str(&url).map_err(|e| StoreError::Invalid {
        field: "url",
        reason: format!("not a PostgreSQL connection string: {}", describe(&e)),
    })?;
    pg.ssl_mode(tls.mode.wire());
    tls::check_channel_binding(tls.mode, pg.get_channel_binding())?;
    if let Some(password) = &config.password {
        pg.password(password.expose());
    }
    if pg.get_application_name().is_none() {
        pg.application_name("sigil");
    }
    pg.connect_timeout(config.connect_timeout);
    Ok((pg, tls))
}

/// `host:port` (comma-separated when there are several hosts) for error messages.
fn describe_target(pg: &tokio_postgres::Config) -> String {
    let ports = pg.get_ports();
    let port_of = |i: usize| -> u16 {
        match ports {
            [] => 5432,
            [one] => *one,
            many => many.get(i).copied().unwrap_or(5432),
        }
    };
    let hosts: Vec<String> = pg
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| match host {
            Host::Tcp(name) if name.contains(':') => format!("[{name}]:{}", port_of(i)),
            Host::Tcp(name) => format!("{name}:{}", port_of(i)),
            #[cfg(unix)]
            Host::Unix(dir) => format!("{}/.s.PGSQL.{}", dir.display(), port_of(i)),
        })
        .collect();
    if hosts.is_empty() {
        // libpq's default when the URL names no host.
        format!("localhost:{}", port_of(0))
    } else {
        hosts.join(",")
    }
}

/// `url` with any password in it (URL user info, `password=` parameter or keyword) replaced by
/// `<redacted>`.
fn redacted_url(url: &str) -> String {
    const REDACTED: &str = "<redacted>";
    let Some((scheme, rest)) = url
        .split_once("://")
        .filter(|(scheme, _)| matches!(*scheme, "postgres" | "postgresql"))
    else {
        return redacted_keywords(url);
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((user_info, hosts)) => match user_info.split_once(':') {
            Some((user, _password)) => format!("{user}:{REDACTED}@{hosts}"),
            None => format!("{user_info}@{hosts}"),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|param| match param.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                        format!("{key}={REDACTED}")
                    }
                    _ => param.to_owned(),
                })
                .collect();
            format!("{path}?{}", params.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// A `key=value` connection string with the value of `password` replaced (quoted values, with
/// `\'` escapes, included).
fn redacted_keywords(conninfo: &str) -> String {
    let mut out = String::with_capacity(conninfo.len());
    let mut rest = conninfo;
    loop {
        let Some(start) = find_password_key(rest) else {
            out.push_str(rest);
            return out;
        };
        let (before, from_key) = rest.split_at(start);
        out.push_str(before);
        let Some(eq) = from_key.find('=') else {
            out.push_str(from_key);
            return out;
        };
        let (key, value) = from_key.split_at(eq + 1);
        out.push_str(key);
        let value_start = value.len() - value.trim_start().len();
        let (spaces, value) = value.split_at(value_start);
        out.push_str(spaces);
        out.push_str("<redacted>");
        rest = skip_value(value);
    }
}

/// Where the keyword `password` (followed by optional spaces and `=`) starts in `s`.
fn find_password_key(s: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(found) = s.get(from..).and_then(|tail| tail.find("password")) {
        let start = from + found;
        let at_word_start = s
            .get(..start)
            .and_then(|before| before.chars().next_back())
            .is_none_or(char::is_whitespace);
        let after = s.get(start + "password".len()..).unwrap_or("");
        if at_word_start && after.trim_start().starts_with('=') {
            return Some(start);
        }
        from = start + "password".len();
    }
    None
}

/// What follows one keyword value at the start of `s` (quoted or bare).
fn skip_value(s: &str) -> &str {
    if let Some(quoted) = s.strip_prefix('\'') {
        let mut escaped = false;
        for (i, c) in quoted.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '\'' => return quoted.get(i + 1..).unwrap_or(""),
                _ => {}
            }
        }
        ""
    } else {
        let end = s.find(char::is_whitespace).unwrap_or(s.len());
        s.get(end..).unwrap_or("")
    }
}

/// Moves the watch channel forward to `newest`, never back. The common case (the listener
/// hearing of a change this store already announced) takes only the read lock, so it cannot
/// wait for a receiver that holds a borrow.
fn advance(latest: &watch::Sender<u64>, newest: u64) {
    if newest <= *latest.borrow() {
        return;
    }
    latest.send_if_modified(|seen| {
        let moved = newest > *seen;
        if moved {
            *seen = newest;
        }
        moved
    });
}

/// A failure to get a connection: the database is down, unreachable, or refused the login.
fn unreachable_error(target: &str, e: PoolError) -> StoreError {
    let detail = match &e {
        PoolError::Backend(e) => describe(e),
        other => other.to_string(),
    };
    StoreError::Backend(Box::new(PostgresError::Unreachable {
        target: target.to_owned(),
        detail,
    }))
}

/// Wraps a PostgreSQL failure that has no better name.
fn backend(e: tokio_postgres::Error) -> StoreError {
    StoreError::Backend(Box::new(PostgresError::Query {
        detail: describe(&e),
        source: e,
    }))
}

/// One line saying what went wrong: the server's message, SQLSTATE and detail for a database
/// error, or the client's error and its cause.
fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut line = format!("{} (SQLSTATE {})", db.message(), db.code().code());
        if let Some(detail) = db.detail() {
            line.push_str(": ");
            line.push_str(detail);
        }
        return line.replace('\n', " ");
    }
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

/// Whether `e` is a UNIQUE or PRIMARY KEY violation.
fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// `value` as a BIGINT, or `Invalid` when it does not fit.
fn to_sql_int(field: &'static str, value: u64) -> StoreResult<i64> {
    i64::try_from(value).map_err(|_| StoreError::Invalid {
        field,
        reason: format!("`{value}` is larger than {}", i64::MAX),
    })
}

/// A stored integer that must not be negative, or `Corrupt`.
fn from_sql_int(kind: &'static str, id: &str, field: &str, value: i64) -> StoreResult<u64> {
    u64::try_from(value).map_err(|_| corrupt(kind, id, format!("{field} is negative ({value})")))
}

/// Reads column `idx` of `row`; a type mismatch is a backend failure, not a panic.
fn column<'r, T: tokio_postgres::types::FromSql<'r>>(
    row: &'r tokio_postgres::Row,
    idx: usize,
) -> StoreResult<T> {
    row.try_get(idx).map_err(backend)
}

/// Runs `query` with `params` as a cached prepared statement and returns its rows.
async fn query(
    db: &impl GenericClient,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> StoreResult<Vec<tokio_postgres::Row>> {
    let statement = db.prepare_cached(sql).await.map_err(backend)?;
    db.query(&statement, params).await.map_err(backend)
}

/// Like [`query`], for at most one row.
async fn query_opt(
    db: &impl GenericClient,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> StoreResult<Option<tokio_postgres::Row>> {
    let statement = db.prepare_cached(sql).await.map_err(backend)?;
    db.query_opt(&statement, params).await.map_err(backend)
}

/// Runs a statement that returns no rows; returns how many rows it changed. The raw error is
/// returned so that callers can tell constraint violations apart.
async fn execute(
    db: &impl GenericClient,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<u64, tokio_postgres::Error> {
    let statement = db.prepare_cached(sql).await?;
    db.execute(&statement, params).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_separate_password_and_one_in_the_url() {
        let mut config = PostgresConfig::new("postgres://sigil:hunter2@db.example:6432/sigil");
        config.password = Some(PostgresPassword::new("correct-horse"));
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("correct-horse"), "{shown}");
        assert!(
            shown.contains("sigil:<redacted>@db.example:6432/sigil"),
            "{shown}"
        );
        assert!(shown.contains("password: Some(<redacted>)"), "{shown}");
    }

    #[test]
    fn redacts_passwords_in_every_url_form() {
        let cases = [
            (
                "postgres://u:p%40ss@h/db?sslmode=disable",
                "postgres://u:<redacted>@h/db?sslmode=disable",
            ),
            (
                "postgresql://u:pw@h1:5432,h2:5433",
                "postgresql://u:<redacted>@h1:5432,h2:5433",
            ),
            ("postgres://u@h/db", "postgres://u@h/db"),
            (
                "postgres://h/db?user=u&password=pw&x=1",
                "postgres://h/db?user=u&password=<redacted>&x=1",
            ),
            ("postgres://u:a@b@h/db", "postgres://u:<redacted>@h/db"),
            (
                "host=h password=pw user=u",
                "host=h password=<redacted> user=u",
            ),
            (
                "host=h password = 'p w\\' x' user=u",
                "host=h password = <redacted> user=u",
            ),
            (
                "host=h user=u password=pw",
                "host=h user=u password=<redacted>",
            ),
            ("host=h mypassword=x user=u", "host=h mypassword=x user=u"),
        ];
        for (url, expected) in cases {
            assert_eq!(redacted_url(url), expected, "{url}");
        }
    }

    #[test]
    fn password_debug_is_redacted() {
        assert_eq!(
            format!("{:?}", PostgresPassword::new("s3cret")),
            "<redacted>"
        );
    }

    #[test]
    fn target_names_host_and_port() {
        let pg = |url: &str| tokio_postgres::Config::from_str(url).unwrap();
        assert_eq!(
            describe_target(&pg("postgres://u@10.0.0.1:6000/db")),
            "10.0.0.1:6000"
        );
        assert_eq!(describe_target(&pg("postgres://u@db/x")), "db:5432");
        assert_eq!(describe_target(&pg("postgres://u@a:1,b:2/x")), "a:1,b:2");
        assert_eq!(
            describe_target(&pg("host=/run/postgresql port=5433")),
            "/run/postgresql/.s.PGSQL.5433"
        );
    }

    #[test]
    fn rejects_pool_sizes_out_of_range_and_malformed_urls() {
        for size in [0, MAX_POOL_SIZE + 1] {
            let mut config = PostgresConfig::new("postgres://u@h/db");
            config.pool_size = size;
            assert!(matches!(
                pg_config(&config),
                Err(StoreError::Invalid {
                    field: "pool_size",
                    ..
                })
            ));
        }
        let config = PostgresConfig::new("postgres://u@h:notaport/db");
        assert!(matches!(
            pg_config(&config),
            Err(StoreError::Invalid { field: "url", .. })
        ));
    }
}
