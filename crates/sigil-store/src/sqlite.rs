//! The SQLite backend: one database file (WAL, `foreign_keys`, mode 0600) behind one connection
//! that only blocking-pool threads touch, so no tokio worker ever waits on SQLite.
//!
//! Every mutation runs in one `BEGIN IMMEDIATE` transaction that also appends its change
//! event; after the commit the watch channel is moved to the newest sequence.

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
mod migrate;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use tokio::sync::watch;

use crate::model::{
    check_audit_batch, check_audit_key, check_checkpoint, check_page_limit, check_usage_batch,
    normalized_batch,
};
use crate::rows::corrupt;
use crate::{
    AttestedAgent, AuditEvent, AuditFilter, AuditKey, AuditRecord, AuthorityRecord, AuthorityState,
    ChangeEvent, Checkpoint, CredentialKind, Datastore, Entry, EntryFilter, EntryReview,
    EntryUsage, FederationRelationship, FederationUpdate, IssuedCredential, JoinToken, Lease,
    LeaseFilter, NewEntry, NewFederationRelationship, Revocation, StoreError, StoreResult,
    StoredBundle, StoredCredentialTarget, StoredCrl, WorkloadUsage,
};

pub use migrate::LATEST_SCHEMA_VERSION;

/// How long a statement waits for a lock held by another connection before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A [`Datastore`] on an embedded SQLite database.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    latest: Arc<watch::Sender<u64>>,
}

impl SqliteStore {
    /// Opens the database file at `path`, creating it (mode 0600) if missing, tightening its mode
    /// to 0600 if it is readable by others, and applying pending migrations.
    ///
    /// Blocking: call it at startup or from `spawn_blocking`. Fails with
    /// [`StoreError::SchemaTooNew`] when the file was migrated by a newer build, and with
    /// [`StoreError::Backend`] when the file cannot be created or is not a SQLite database.
    pub fn open(path: &Path) -> StoreResult<Self> {
        prepare_file(path)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(backend)?;
        configure(&conn)?;
        let journal_mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(backend)?;
        if !journal_mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(
                path = %path.display(),
                journal_mode,
                "sqlite refused write-ahead logging; readers will wait for writers"
            );
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(backend)?;
        Self::from_connection(conn)
    }

    /// Opens a fresh database that lives in memory and disappears when the store is dropped.
    pub fn open_in_memory() -> StoreResult<Self> {
        let conn = Connection::open_in_memory().map_err(backend)?;
        configure(&conn)?;
        Self::from_connection(conn)
    }

    /// The schema version of the open database (the newest applied migration).
    pub async fn schema_version(&self) -> StoreResult<i64> {
        self.read(migrate::current_version).await
    }

    fn from_connection(mut conn: Connection) -> StoreResult<Self> {
        migrate::apply_pending(&mut conn)?;
        let latest = change_feed::latest(&conn)?;
        let (sender, _) = watch::channel(latest);
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            latest: Arc::new(sender),
        })
    }

    /// Runs `read` on the connection on the blocking pool.
    async fn read<T, F>(&self, read: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        run_blocking(move || read(&lock(&conn))).await
    }

    /// Runs `write` in one immediate transaction on the blocking pool, commits only if it
    /// succeeds, then moves the watch channel to the newest change sequence.
    async fn write<T, F>(&self, write: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        let latest = Arc::clone(&self.latest);
        run_blocking(move || {
            let mut conn = lock(&conn);
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            // An early return drops `tx`, which rolls back: a failed mutation leaves no trace.
            let out = write(&tx)?;
            // Read before the commit (the immediate transaction holds the write lock, so it is
            // exact): nothing may fail after the commit, or a stored change would look failed.
            let newest = change_feed::latest(&tx)?;
            tx.commit().map_err(backend)?;
            // Bumped here rather than after the await, so a caller that drops the future
            // cannot leave watchers behind a committed change.
            latest.send_if_modified(|seen| {
                let moved = newest > *seen;
                if moved {
                    *seen = newest;
                }
                moved
            });
            Ok(out)
        })
        .await
    }
}

#[async_trait]
impl Datastore for SqliteStore {
    async fn create_entry(&self, entry: NewEntry, now: i64) -> StoreResult<Entry> {
        let entry = entry.normalized()?;
        self.write(move |tx| entries::create(tx, entry, now)).await
    }

    async fn create_entries(&self, entries: Vec<NewEntry>, now: i64) -> StoreResult<Vec<Entry>> {
        let entries = normalized_batch(entries)?;
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        self.write(move |tx| entries::create_many(tx, entries, now))
            .await
    }

    async fn get_entry(&self, id: &str) -> StoreResult<Option<Entry>> {
        let id = id.to_owned();
        self.read(move |conn| entries::get(conn, &id)).await
    }

    async fn list_entries(&self, filter: &EntryFilter) -> StoreResult<Vec<Entry>> {
        let filter = filter.clone();
        self.read(move |conn| entries::list(conn, &filter, None, None))
            .await
    }

    async fn list_entries_page(
        &self,
        filter: &EntryFilter,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Entry>> {
        check_page_limit(limit)?;
        let filter = filter.clone();
        let after = after.map(str::to_owned);
        self.read(move |conn| entries::list(conn, &filter, after.as_deref(), Some(limit)))
            .await
    }

    async fn update_entry(
        &self,
        id: &str,
        update: NewEntry,
        expected_revision: Option<i64>,
        now: i64,
    ) -> StoreResult<Entry> {
        let update = update.normalized()?;
        let id = id.to_owned();
        self.write(move |tx| entries::update(tx, id, update, expected_revision, now))
            .await
    }

    async fn delete_entry(&self, id: &str) -> StoreResult<Entry> {
        let id = id.to_owned();
        self.write(move |tx| entries::delete(tx, &id)).await
    }

    async fn create_join_token(&self, token: JoinToken) -> StoreResult<()> {
        token.validate()?;
        self.write(move |tx| join_tokens::create(tx, &token)).await
    }

    async fn consume_join_token(&self, token_hash: &str, now: i64) -> StoreResult<JoinToken> {
        let token_hash = token_hash.to_owned();
        self.write(move |tx| join_tokens::consume(tx, &token_hash, now))
            .await
    }

    async fn get_join_token(&self, token_hash: &str) -> StoreResult<Option<JoinToken>> {
        let token_hash = token_hash.to_owned();
        self.read(move |conn| join_tokens::get(conn, &token_hash))
            .await
    }

    async fn attest_with_join_token(
        &self,
        token_hash: &str,
        agent: AttestedAgent,
        now: i64,
    ) -> StoreResult<JoinToken> {
        let token_hash = token_hash.to_owned();
        self.write(move |tx| {
            let token = join_tokens::consume(tx, &token_hash, now)?;
            agents::create(tx, agent)?;
            Ok(token)
        })
        .await
    }

    async fn prune_join_tokens(&self, before: i64) -> StoreResult<u64> {
        self.write(move |tx| join_tokens::prune(tx, before)).await
    }

    async fn create_agent(&self, agent: AttestedAgent) -> StoreResult<()> {
        self.write(move |tx| agents::create(tx, agent)).await
    }

    async fn get_agent(&self, spiffe_id: &str) -> StoreResult<Option<AttestedAgent>> {
        let spiffe_id = spiffe_id.to_owned();
        self.read(move |conn| agents::get(conn, &spiffe_id)).await
    }

    async fn list_agents(&self) -> StoreResult<Vec<AttestedAgent>> {
        self.read(agents::list).await
    }

    async fn list_agents_page(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<AttestedAgent>> {
        check_page_limit(limit)?;
        let after = after.map(str::to_owned);
        self.read(move |conn| agents::list_page(conn, after.as_deref(), limit))
            .await
    }

    async fn record_agent_renewal(&self, spiffe_id: &str, new_serial: &str) -> StoreResult<()> {
        let spiffe_id = spiffe_id.to_owned();
        let new_serial = new_serial.to_owned();
        self.write(move |tx| agents::record_renewal(tx, &spiffe_id, &new_serial))
            .await
    }

    async fn activate_agent_serial(
        &self,
        spiffe_id: &str,
        presented_serial: &str,
        expires_at: i64,
    ) -> StoreResult<bool> {
        let spiffe_id = spiffe_id.to_owned();
        let presented = presented_serial.to_owned();
        self.write(move |tx| agents::activate_serial(tx, &spiffe_id, &presented, expires_at))
            .await
    }

    async fn set_agent_banned(&self, spiffe_id: &str, banned: bool) -> StoreResult<()> {
        let spiffe_id = spiffe_id.to_owned();
        self.write(move |tx| agents::set_banned(tx, &spiffe_id, banned))
            .await
    }

    async fn touch_agent_last_seen(&self, spiffe_id: &str, now: i64) -> StoreResult<()> {
        let spiffe_id = spiffe_id.to_owned();
        self.write(move |tx| agents::touch_last_seen(tx, &spiffe_id, now))
            .await
    }

    async fn delete_agent(&self, spiffe_id: &str) -> StoreResult<AttestedAgent> {
        let spiffe_id = spiffe_id.to_owned();
        self.write(move |tx| agents::delete(tx, &spiffe_id)).await
    }

    async fn create_authority(&self, authority: AuthorityRecord) -> StoreResult<()> {
        self.write(move |tx| authorities::create(tx, &authority))
            .await
    }

    async fn set_authority_state(
        &self,
        id: &str,
        expected: AuthorityState,
        new: AuthorityState,
    ) -> StoreResult<AuthorityRecord> {
        let id = id.to_owned();
        self.write(move |tx| authorities::set_state(tx, &id, expected, new))
            .await
    }

    async fn delete_authority(&self, id: &str) -> StoreResult<AuthorityRecord> {
        let id = id.to_owned();
        self.write(move |tx| authorities::delete(tx, &id)).await
    }

    async fn list_authorities(&self) -> StoreResult<Vec<AuthorityRecord>> {
        self.read(authorities::list).await
    }

    async fn record_issued(&self, credentials: Vec<IssuedCredential>) -> StoreResult<()> {
        for credential in &credentials {
            credential.validate()?;
        }
        if credentials.is_empty() {
            return Ok(());
        }
        self.write(move |tx| credentials::record_issued(tx, &credentials))
            .await
    }

    async fn get_issued(
        &self,
        kind: CredentialKind,
        id: &str,
    ) -> StoreResult<Option<IssuedCredential>> {
        let id = id.to_owned();
        self.read(move |conn| credentials::get_issued(conn, kind, &id))
            .await
    }

    async fn revoke_credential(
        &self,
        kind: CredentialKind,
        id: &str,
        reason: &str,
        now: i64,
    ) -> StoreResult<Revocation> {
        let id = id.to_owned();
        let reason = reason.to_owned();
        self.write(move |tx| credentials::revoke(tx, kind, &id, &reason, now))
            .await
    }

    async fn get_revocation(
        &self,
        kind: CredentialKind,
        id: &str,
    ) -> StoreResult<Option<Revocation>> {
        let id = id.to_owned();
        self.read(move |conn| credentials::get_revocation(conn, kind, &id))
            .await
    }

    async fn list_revocations(&self) -> StoreResult<Vec<Revocation>> {
        self.read(credentials::list_revocations).await
    }

    async fn prune_expired_credentials(&self, before: i64) -> StoreResult<u64> {
        self.write(move |tx| credentials::prune_expired(tx, before))
            .await
    }

    async fn put_bundle(&self, bundle: StoredBundle) -> StoreResult<()> {
        bundle.validate()?;
        self.write(move |tx| bundles::put(tx, &bundle)).await
    }

    async fn get_bundle(&self, trust_domain: &str) -> StoreResult<Option<StoredBundle>> {
        let trust_domain = trust_domain.to_owned();
        self.read(move |conn| bundles::get(conn, &trust_domain))
            .await
    }

    async fn list_bundles(&self) -> StoreResult<Vec<StoredBundle>> {
        self.read(bundles::list).await
    }

    async fn delete_bundle(&self, trust_domain: &str) -> StoreResult<()> {
        let trust_domain = trust_domain.to_owned();
        self.write(move |tx| bundles::delete(tx, &trust_domain))
            .await
    }

    async fn put_bundle_if_newer(&self, bundle: StoredBundle) -> StoreResult<bool> {
        bundle.validate()?;
        self.write(move |tx| bundles::put_if_newer(tx, &bundle))
            .await
    }

    async fn put_crl(&self, crl: StoredCrl) -> StoreResult<bool> {
        crl.validate()?;
        self.write(move |tx| crls::put(tx, &crl)).await
    }

    async fn list_crls(&self) -> StoreResult<Vec<StoredCrl>> {
        self.read(crls::list).await
    }

    async fn create_federation(
        &self,
        new: NewFederationRelationship,
        now: i64,
    ) -> StoreResult<FederationRelationship> {
        new.validate()?;
        self.write(move |tx| federations::create(tx, new, now))
            .await
    }

    async fn get_federation(
        &self,
        trust_domain: &str,
    ) -> StoreResult<Option<FederationRelationship>> {
        let trust_domain = trust_domain.to_owned();
        self.read(move |conn| federations::get(conn, &trust_domain))
            .await
    }

    async fn list_federations(&self) -> StoreResult<Vec<FederationRelationship>> {
        self.read(federations::list).await
    }

    async fn update_federation(
        &self,
        trust_domain: &str,
        update: FederationUpdate,
        now: i64,
    ) -> StoreResult<FederationRelationship> {
        update.validate()?;
        let trust_domain = trust_domain.to_owned();
        self.write(move |tx| federations::update(tx, &trust_domain, &update, now))
            .await
    }

    async fn delete_federation(&self, trust_domain: &str) -> StoreResult<()> {
        let trust_domain = trust_domain.to_owned();
        self.write(move |tx| federations::delete(tx, &trust_domain))
            .await
    }

    async fn append_audit(&self, events: Vec<AuditEvent>) -> StoreResult<Vec<AuditRecord>> {
        check_audit_batch(&events)?;
        if events.is_empty() {
            return Ok(Vec::new());
        }
        self.write(move |tx| audit::append(tx, events)).await
    }

    async fn list_audit(
        &self,
        filter: &AuditFilter,
        after: u64,
        limit: u32,
    ) -> StoreResult<Vec<AuditRecord>> {
        check_page_limit(limit)?;
        filter.validate()?;
        let filter = filter.clone();
        self.read(move |conn| audit::list(conn, &filter, after, limit))
            .await
    }

    async fn audit_head(&self) -> StoreResult<Option<(u64, String)>> {
        self.read(audit::head).await
    }

    async fn put_audit_checkpoint(&self, checkpoint: Checkpoint) -> StoreResult<()> {
        check_checkpoint(&checkpoint)?;
        self.write(move |tx| audit::put_checkpoint(tx, &checkpoint))
            .await
    }

    async fn list_audit_checkpoints(&self) -> StoreResult<Vec<Checkpoint>> {
        self.read(audit::list_checkpoints).await
    }

    async fn register_audit_key(&self, key: AuditKey) -> StoreResult<()> {
        check_audit_key(&key)?;
        self.write(move |tx| audit::register_key(tx, &key)).await
    }

    async fn list_audit_keys(&self) -> StoreResult<Vec<AuditKey>> {
        self.read(audit::list_keys).await
    }

    async fn record_workload_usage(&self, usage: Vec<WorkloadUsage>) -> StoreResult<()> {
        check_usage_batch(&usage)?;
        if usage.is_empty() {
            return Ok(());
        }
        self.write(move |tx| governance::record_usage(tx, &usage))
            .await
    }

    async fn list_workload_usage(
        &self,
        entry_id: &str,
        limit: u32,
    ) -> StoreResult<Vec<WorkloadUsage>> {
        check_page_limit(limit)?;
        let entry_id = entry_id.to_owned();
        self.read(move |conn| governance::list_usage(conn, &entry_id, limit))
            .await
    }

    async fn usage_by_entry(&self) -> StoreResult<Vec<EntryUsage>> {
        self.read(governance::usage_by_entry).await
    }

    async fn prune_workload_usage(&self, before: i64) -> StoreResult<u64> {
        self.write(move |tx| governance::prune_usage(tx, before))
            .await
    }

    async fn review_entry(&self, review: EntryReview) -> StoreResult<EntryReview> {
        review.validate()?;
        self.write(move |tx| {
            governance::review(tx, &review)?;
            Ok(review)
        })
        .await
    }

    async fn list_entry_reviews(&self) -> StoreResult<Vec<EntryReview>> {
        self.read(governance::list_reviews).await
    }

    async fn list_join_tokens(&self) -> StoreResult<Vec<JoinToken>> {
        self.read(join_tokens::list).await
    }

    async fn list_issued_for(
        &self,
        spiffe_id: &sigil_spiffe::SpiffeId,
        limit: u32,
    ) -> StoreResult<Vec<IssuedCredential>> {
        check_page_limit(limit)?;
        let spiffe_id = spiffe_id.as_str().to_owned();
        self.read(move |conn| credentials::list_issued_for(conn, &spiffe_id, limit))
            .await
    }

    async fn create_lease(&self, lease: Lease) -> StoreResult<()> {
        lease.validate()?;
        self.write(move |tx| leases::create(tx, &lease)).await
    }

    async fn get_lease(&self, id: &str) -> StoreResult<Option<Lease>> {
        let id = id.to_owned();
        self.read(move |conn| leases::get(conn, &id)).await
    }

    async fn list_leases(&self, filter: &LeaseFilter) -> StoreResult<Vec<Lease>> {
        let filter = filter.clone();
        self.read(move |conn| leases::list(conn, &filter)).await
    }

    async fn renew_lease(&self, id: &str, expires_at: i64, now: i64) -> StoreResult<Lease> {
        let id = id.to_owned();
        self.write(move |tx| leases::renew(tx, &id, expires_at, now))
            .await
    }

    async fn claim_lease_revocation(
        &self,
        id: &str,
        reason: &str,
        now: i64,
        claim_until: i64,
    ) -> StoreResult<Option<Lease>> {
        let reason = Lease::stored_reason(reason)?.to_owned();
        let id = id.to_owned();
        self.write(move |tx| leases::claim(tx, &id, &reason, now, claim_until))
            .await
    }

    async fn finish_lease_revocation(&self, id: &str, now: i64) -> StoreResult<()> {
        let id = id.to_owned();
        self.write(move |tx| leases::finish(tx, &id, now)).await
    }

    async fn due_leases(&self, now: i64, limit: u32) -> StoreResult<Vec<Lease>> {
        self.read(move |conn| leases::due(conn, now, limit)).await
    }

    async fn next_lease_due(&self) -> StoreResult<Option<i64>> {
        self.read(leases::next_due).await
    }

    async fn prune_leases(&self, before: i64) -> StoreResult<u64> {
        self.write(move |tx| leases::prune(tx, before)).await
    }

    async fn create_credential_target(
        &self,
        name: &str,
        owner: &str,
        spec: &str,
        now: i64,
    ) -> StoreResult<StoredCredentialTarget> {
        StoredCredentialTarget::validate_fields(name, owner, spec)?;
        let (name, owner, spec) = (name.to_owned(), owner.to_owned(), spec.to_owned());
        self.write(move |tx| leases::create_target(tx, &name, &owner, &spec, now))
            .await
    }

    async fn get_credential_target(
        &self,
        name: &str,
    ) -> StoreResult<Option<StoredCredentialTarget>> {
        let name = name.to_owned();
        self.read(move |conn| leases::get_target(conn, &name)).await
    }

    async fn list_credential_targets(&self) -> StoreResult<Vec<StoredCredentialTarget>> {
        self.read(leases::list_targets).await
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
        let (name, owner, spec) = (name.to_owned(), owner.to_owned(), spec.to_owned());
        self.write(move |tx| {
            leases::update_target(tx, &name, &owner, &spec, expected_revision, now)
        })
        .await
    }

    async fn delete_credential_target(&self, name: &str) -> StoreResult<StoredCredentialTarget> {
        let name = name.to_owned();
        self.write(move |tx| leases::delete_target(tx, &name)).await
    }

    async fn changes_since(&self, after: u64, limit: u32) -> StoreResult<Vec<ChangeEvent>> {
        self.read(move |conn| change_feed::since(conn, after, limit))
            .await
    }

    async fn latest_change(&self) -> StoreResult<u64> {
        self.read(change_feed::latest).await
    }

    fn watch_changes(&self) -> watch::Receiver<u64> {
        self.latest.subscribe()
    }
}

/// Settings every connection gets, file-backed or in memory.
fn configure(conn: &Connection) -> StoreResult<()> {
    conn.busy_timeout(BUSY_TIMEOUT).map_err(backend)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(backend)?;
    // Schema SQL is ours alone; nothing in the file may run functions with side effects.
    conn.pragma_update(None, "trusted_schema", "OFF")
        .map_err(backend)?;
    Ok(())
}

/// Creates the database file with mode 0600, or tightens an existing one that others can read.
#[cfg(unix)]
fn prepare_file(path: &Path) -> StoreResult<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| StoreError::Backend(Box::new(e)))?;
    let mode = file
        .metadata()
        .map_err(|e| StoreError::Backend(Box::new(e)))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format_args!("{:o}", mode & 0o777),
            "datastore file was accessible to other users; setting mode 0600"
        );
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| StoreError::Backend(Box::new(e)))?;
    }
    Ok(())
}

/// Non-Unix platforms have no mode bits; SQLite creates the file.
#[cfg(not(unix))]
fn prepare_file(_path: &Path) -> StoreResult<()> {
    Ok(())
}

/// Locks the connection. A panic while it was held cannot leave a transaction open (dropping a
/// transaction rolls it back), so a poisoned lock is still safe to use.
fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    conn.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn run_blocking<T, F>(work: F) -> StoreResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> StoreResult<T> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Backend(Box::new(e)))?
}

/// Wraps a SQLite failure that has no better name.
fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(Box::new(e))
}

/// Whether `e` is a UNIQUE or PRIMARY KEY constraint failure.
fn is_unique_violation(e: &rusqlite::Error) -> bool {
    match e {
        rusqlite::Error::SqliteFailure(failure, _) => matches!(
            failure.extended_code,
            rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
        ),
        _ => false,
    }
}

/// Whether `e` is the failure of the CHECK constraint named `constraint`.
fn is_check_violation(e: &rusqlite::Error, constraint: &str) -> bool {
    match e {
        rusqlite::Error::SqliteFailure(failure, Some(message)) => {
            failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_CHECK
                // SQLite names the failed constraint only in the message:
                // "CHECK constraint failed: <name>".
                && message
                    .rsplit_once(": ")
                    .is_some_and(|(_, name)| name == constraint)
        }
        _ => false,
    }
}

/// `value` as an SQLite integer, or `Invalid` when it does not fit.
fn to_sql_int(field: &'static str, value: u64) -> StoreResult<i64> {
    i64::try_from(value).map_err(|_| StoreError::Invalid {
        field,
        reason: format!("`{value}` is larger than {}", i64::MAX),
    })
}

/// `value` as JSON text for a list column.
fn to_json<T: serde::Serialize>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Backend(e.into()))
}

/// A stored integer that must not be negative, or `Corrupt`.
fn from_sql_int(kind: &'static str, id: &str, field: &str, value: i64) -> StoreResult<u64> {
    u64::try_from(value).map_err(|_| corrupt(kind, id, format!("{field} is negative ({value})")))
}
