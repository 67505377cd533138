//! The datastore: one async [`Datastore`] trait, the records it keeps, its change feed, and the
//! backends that implement it (SQLite, embedded; PostgreSQL, shared by several server replicas),
//! both run against the same conformance suite.
//!
//! Design: every mutation appends a [`ChangeEvent`] in the same transaction as the mutation, so a
//! reader that has applied events up to sequence `n` can catch up with
//! [`Datastore::changes_since`]`(n)` and never needs a full rescan. [`Datastore::watch_changes`]
//! wakes readers when the newest sequence moves (in-process for SQLite; LISTEN/NOTIFY for
//! PostgreSQL replicas).

#![forbid(unsafe_code)]

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod model;
pub mod postgres;
mod rows;
pub mod sqlite;

use async_trait::async_trait;
use tokio::sync::watch;

pub use model::*;
pub use postgres::{PostgresConfig, PostgresPassword, PostgresStore};
pub use sigil_audit::{AuditEvent, AuditKey, AuditRecord, Checkpoint, Outcome};
pub use sqlite::SqliteStore;

/// What went wrong in a datastore call.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} `{id}` not found")]
    NotFound { kind: &'static str, id: String },
    #[error("{kind} already exists: {detail}")]
    AlreadyExists { kind: &'static str, detail: String },
    #[error("{kind} `{id}` was changed concurrently (expected revision {expected}, found {found})")]
    RevisionConflict {
        kind: &'static str,
        id: String,
        expected: i64,
        found: i64,
    },
    #[error("authority `{id}` is {found}, not {expected}")]
    AuthorityStateConflict {
        id: String,
        expected: AuthorityState,
        found: AuthorityState,
    },
    /// A credential that has already expired cannot be revoked: there is nothing to deny.
    #[error("{kind} `{id}` expired at {expired_at}; there is nothing to revoke")]
    CredentialExpired {
        kind: CredentialKind,
        id: String,
        expired_at: i64,
    },
    #[error("join token has expired")]
    JoinTokenExpired,
    #[error("join token was already used")]
    JoinTokenUsed,
    #[error("stored {kind} `{id}` is corrupt: {detail}")]
    Corrupt {
        kind: &'static str,
        id: String,
        detail: String,
    },
    /// A record was refused before anything was stored (empty owner, no selectors, ...).
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// Entry `index` (counting from 0) of a batch was refused with `error`; nothing of the batch
    /// was stored. The inner error is part of the message, not a `source`, so a one-line error
    /// chain does not say it twice.
    #[error("entry {index} of the batch: {error}")]
    InBatch {
        index: usize,
        error: Box<StoreError>,
    },
    /// The database was written by a newer build; opening it could corrupt it.
    #[error(
        "datastore schema version {found} is newer than the newest this build knows ({supported}): upgrade sigil or restore a backup"
    )]
    SchemaTooNew { found: i64, supported: i64 },
    /// The message already carries the backend error's own message (and its causes, where the
    /// backend writes them into it), so it is not repeated as a `source`: an error chain printed
    /// as one line would say it twice.
    #[error("datastore backend failed: {0}")]
    Backend(Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// This error as the refusal of entry `index` of a batch.
    pub fn in_batch(self, index: usize) -> Self {
        Self::InBatch {
            index,
            error: Box::new(self),
        }
    }

    /// The error itself, or for [`StoreError::InBatch`] the error of the entry it names: what
    /// kind of failure it was, whether or not it came from a batch.
    pub fn cause(&self) -> &StoreError {
        match self {
            Self::InBatch { error, .. } => error.cause(),
            other => other,
        }
    }
}

/// Result alias for datastore calls.
pub type StoreResult<T> = Result<T, StoreError>;

/// The persistence interface of the server. Every backend passes the conformance suite in the
/// `conformance` module (feature `conformance`).
///
/// Records that several tasks write are never rewritten whole: agents have one method per
/// column group (serials, ban, last seen), each a single statement, so concurrent writers cannot
/// undo each other; entries are replaced under a revision compare-and-swap.
#[async_trait]
pub trait Datastore: Send + Sync + 'static {
    // ---- registration entries ----

    /// Stores a new entry with revision 1 and returns it. Fails with `AlreadyExists` when an entry
    /// with the same spiffe_id, parent_id and selector set exists.
    async fn create_entry(&self, entry: NewEntry, now: i64) -> StoreResult<Entry>;
    /// Stores every entry of `entries` in one transaction, all or nothing, and returns them in
    /// the same order, each as [`Datastore::create_entry`] would have (same checks, revision 1,
    /// one `EntryCreated` event each, appended in order). At most [`MAX_ENTRY_BATCH`] entries:
    /// more is `Invalid` (field `entries`). When any entry is refused (invalid, or a duplicate of
    /// a stored entry or of an earlier one in the batch) fails with [`StoreError::InBatch`]
    /// naming the first such entry by index, and nothing is stored and no event appended. An
    /// empty batch stores nothing and returns nothing.
    async fn create_entries(&self, entries: Vec<NewEntry>, now: i64) -> StoreResult<Vec<Entry>>;
    /// The entry with `id`, if any.
    async fn get_entry(&self, id: &str) -> StoreResult<Option<Entry>>;
    /// Entries matching `filter`, ordered by id.
    async fn list_entries(&self, filter: &EntryFilter) -> StoreResult<Vec<Entry>>;
    /// One page of the entries matching `filter`: at most `limit` of them, ordered by id, each
    /// with an id greater than `after` (the last id of the previous page; `None` for the first
    /// page). Keyset paging, so a page costs the same wherever it starts, and an entry created
    /// or deleted between pages does not shift the others. `Invalid` (field `limit`) when
    /// `limit` is 0.
    async fn list_entries_page(
        &self,
        filter: &EntryFilter,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Entry>>;
    /// Replaces the mutable fields of entry `id`. When `expected_revision` is given and differs
    /// from the stored one, fails with `RevisionConflict` and changes nothing. Bumps the revision.
    async fn update_entry(
        &self,
        id: &str,
        update: NewEntry,
        expected_revision: Option<i64>,
        now: i64,
    ) -> StoreResult<Entry>;
    /// Deletes entry `id` and returns what it was.
    async fn delete_entry(&self, id: &str) -> StoreResult<Entry>;

    // ---- join tokens ----

    /// Stores a join token (only its hash is kept).
    async fn create_join_token(&self, token: JoinToken) -> StoreResult<()>;
    /// Atomically marks the token with `token_hash` used and returns it. `NotFound` if unknown,
    /// `JoinTokenUsed` if already used, `JoinTokenExpired` if `expires_at <= now`; in every
    /// failure case nothing changes.
    async fn consume_join_token(&self, token_hash: &str, now: i64) -> StoreResult<JoinToken>;
    /// The join token with `token_hash`, used or not; `None` if unknown. Attestation reads it
    /// to name the agent before committing with [`Datastore::attest_with_join_token`].
    async fn get_join_token(&self, token_hash: &str) -> StoreResult<Option<JoinToken>>;
    /// In one transaction: consumes the join token with `token_hash` (same checks and errors as
    /// [`Datastore::consume_join_token`]) and stores `agent` (`AlreadyExists` if its SPIFFE ID is
    /// taken). Either both happen or neither, so a failed attestation never burns the token.
    async fn attest_with_join_token(
        &self,
        token_hash: &str,
        agent: AttestedAgent,
        now: i64,
    ) -> StoreResult<JoinToken>;
    /// Deletes tokens that expired before `before`; returns how many.
    async fn prune_join_tokens(&self, before: i64) -> StoreResult<u64>;

    // ---- attested agents ----

    /// Stores a newly attested agent; `AlreadyExists` if the SPIFFE ID is taken.
    async fn create_agent(&self, agent: AttestedAgent) -> StoreResult<()>;
    /// The agent with this SPIFFE ID, if any.
    async fn get_agent(&self, spiffe_id: &str) -> StoreResult<Option<AttestedAgent>>;
    /// Every agent, ordered by SPIFFE ID.
    async fn list_agents(&self) -> StoreResult<Vec<AttestedAgent>>;
    /// One page of agents: at most `limit` of them, ordered by SPIFFE ID, each with a SPIFFE ID
    /// greater than `after` (the last one of the previous page; `None` for the first page).
    /// `Invalid` (field `limit`) when `limit` is 0.
    async fn list_agents_page(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<AttestedAgent>>;
    /// Records that agent `spiffe_id` was issued a renewed SVID with serial `new_serial`, not yet
    /// seen in use. Writes only `new_serial` (replacing an earlier unused one), so a concurrent
    /// ban or heartbeat is kept; appends an `AgentChanged` event. `NotFound` if there is no such
    /// agent.
    async fn record_agent_renewal(&self, spiffe_id: &str, new_serial: &str) -> StoreResult<()>;
    /// Compare-and-swap on the agent's serials: when its `new_serial` is `presented_serial`,
    /// makes that the current `serial` with `expires_at` and clears `new_serial` (appending an
    /// `AgentChanged` event); otherwise changes nothing. Returns whether `presented_serial` is
    /// the current serial afterwards, so a second activation of the same serial (a concurrent
    /// call, or a reader whose index lags) returns `true` and a stale serial `false`. Touches no
    /// other column. `NotFound` if there is no such agent.
    async fn activate_agent_serial(
        &self,
        spiffe_id: &str,
        presented_serial: &str,
        expires_at: i64,
    ) -> StoreResult<bool>;
    /// Sets or clears the agent's `banned` flag, touching no other column; appends an
    /// `AgentChanged` event. `NotFound` if there is no such agent.
    async fn set_agent_banned(&self, spiffe_id: &str, banned: bool) -> StoreResult<()>;
    /// Moves the agent's `last_seen` forward to `now` (never backwards). This is bookkeeping, not
    /// identity state: it touches only that column and appends **no** change event, so heartbeats
    /// do not wake change-feed readers. `NotFound` if there is no such agent.
    async fn touch_agent_last_seen(&self, spiffe_id: &str, now: i64) -> StoreResult<()>;
    /// Deletes an agent and returns what it was.
    async fn delete_agent(&self, spiffe_id: &str) -> StoreResult<AttestedAgent>;

    // ---- signing authorities ----

    // An authority record is written whole once, when it is created; afterwards only its state
    // moves, by compare-and-swap, so two writers (rotation here, an admin command or another
    // replica there) can never undo each other's transition.

    /// Stores a new authority record. `AlreadyExists` if an authority with `authority.id`
    /// exists (the existing record is left unchanged).
    async fn create_authority(&self, authority: AuthorityRecord) -> StoreResult<()>;
    /// Moves authority `id` from `expected` to `new` and returns the updated record, only if it
    /// is in state `expected`; otherwise fails with `AuthorityStateConflict` (naming the state it
    /// is in) and changes nothing. `NotFound` if there is no such authority. Whether the
    /// transition is allowed by the life cycle is the caller's decision.
    async fn set_authority_state(
        &self,
        id: &str,
        expected: AuthorityState,
        new: AuthorityState,
    ) -> StoreResult<AuthorityRecord>;
    /// Deletes authority `id` and returns what it was; `NotFound` if there is none.
    async fn delete_authority(&self, id: &str) -> StoreResult<AuthorityRecord>;
    /// Every authority, ordered by creation time then id.
    async fn list_authorities(&self) -> StoreResult<Vec<AuthorityRecord>>;

    // ---- issued credentials and revocations ----

    /// Records credentials just issued, all in one transaction (a batch of X509-SVIDs is one
    /// write). Appends no change event: issuance is bookkeeping, not a change readers follow.
    /// `AlreadyExists` if any `(kind, id)` is already recorded, and then nothing is stored;
    /// `Invalid` for an empty or over-long id.
    async fn record_issued(&self, credentials: Vec<IssuedCredential>) -> StoreResult<()>;
    /// The issued credential `id` of `kind`, if recorded and not pruned.
    async fn get_issued(
        &self,
        kind: CredentialKind,
        id: &str,
    ) -> StoreResult<Option<IssuedCredential>>;
    /// Revokes issued credential `id` of `kind` in one transaction: `NotFound` (kind
    /// `credential`) if it was never recorded or was pruned, `CredentialExpired` if it expired at
    /// or before `now`, `AlreadyExists` if it is already revoked, `Invalid` if `reason` is longer
    /// than [`MAX_REVOCATION_REASON_BYTES`]; in each case nothing changes. Otherwise stores the
    /// revocation (expiring with the credential), appends a `RevocationAdded` event and returns
    /// it.
    async fn revoke_credential(
        &self,
        kind: CredentialKind,
        id: &str,
        reason: &str,
        now: i64,
    ) -> StoreResult<Revocation>;
    /// The revocation of credential `id` of `kind`, if any.
    async fn get_revocation(
        &self,
        kind: CredentialKind,
        id: &str,
    ) -> StoreResult<Option<Revocation>>;
    /// Every stored revocation (expired ones too until pruned), ordered by `revoked_at`, kind
    /// (by its name, [`CredentialKind::as_str`]), id (bytewise).
    async fn list_revocations(&self) -> StoreResult<Vec<Revocation>>;
    /// Forgets issued credentials and revocations whose credential expired before `before`,
    /// appending one `RevocationDeleted` event per revocation removed. Returns how many
    /// revocations were removed.
    async fn prune_expired_credentials(&self, before: i64) -> StoreResult<u64>;

    // ---- trust bundles (own and federated) ----

    /// Inserts or replaces the bundle of `bundle.trust_domain`.
    async fn put_bundle(&self, bundle: StoredBundle) -> StoreResult<()>;
    /// The bundle of `trust_domain`, if any.
    async fn get_bundle(&self, trust_domain: &str) -> StoreResult<Option<StoredBundle>>;
    /// Every bundle, ordered by trust domain.
    async fn list_bundles(&self) -> StoreResult<Vec<StoredBundle>>;
    /// Deletes the bundle of `trust_domain`.
    async fn delete_bundle(&self, trust_domain: &str) -> StoreResult<()>;
    /// Compare-and-set on the bundle's sequence: stores `bundle` when its trust domain has no
    /// bundle yet or the stored one has a lower sequence, in one conditional statement, so of
    /// two concurrent writers (a federation refresher on each replica) the newer bundle wins
    /// whatever the commit order. Returns whether it wrote; appends a `BundleChanged` event only
    /// then. A bundle with an equal or lower sequence changes nothing and returns `false`.
    /// `Invalid` as for [`Datastore::put_bundle`].
    async fn put_bundle_if_newer(&self, bundle: StoredBundle) -> StoreResult<bool>;

    // ---- signed CRLs (model::crls) ----

    /// Stores `crl` as its authority's CRL when none is stored or the stored one has a lower
    /// number, in one conditional statement, so of two concurrent writers the higher number
    /// wins whatever the commit order. Returns whether it wrote; appends a `CrlChanged` event
    /// (keyed by the authority id) only then. A CRL with an equal or lower number changes
    /// nothing and returns `false`. `Invalid` when [`StoredCrl::validate`] refuses it;
    /// `NotFound` (kind `authority`) when its authority does not exist. The row is deleted with
    /// its authority, without an event of its own (the `AuthorityDeleted` says it).
    async fn put_crl(&self, crl: StoredCrl) -> StoreResult<bool>;
    /// Every stored CRL, ordered by authority id (bytewise).
    async fn list_crls(&self) -> StoreResult<Vec<StoredCrl>>;

    // ---- federation relationships ----

    // Several writers (admin commands, replicas) may change one relationship, so an update
    // writes only the columns it names; the rule tying `endpoint_spiffe_id` to `profile` is a
    // CHECK constraint of the table, so it holds for the row that results whatever ran before.

    /// Stores a new relationship created at `now` and appends a `FederationChanged` event.
    /// `Invalid` when [`NewFederationRelationship::validate`] refuses it; `AlreadyExists` when
    /// its trust domain has a relationship (which is left unchanged).
    async fn create_federation(
        &self,
        new: NewFederationRelationship,
        now: i64,
    ) -> StoreResult<FederationRelationship>;
    /// The relationship with `trust_domain` (a name or a `spiffe://` trust domain ID), if any;
    /// `None` for a string that is not a trust domain.
    async fn get_federation(
        &self,
        trust_domain: &str,
    ) -> StoreResult<Option<FederationRelationship>>;
    /// Every relationship, ordered by trust domain (bytewise).
    async fn list_federations(&self) -> StoreResult<Vec<FederationRelationship>>;
    /// Writes the fields `update` sets, and `updated_at = now`, in one UPDATE of only those
    /// columns, appends a `FederationChanged` event and returns the relationship as it is then.
    /// `Invalid` when [`FederationUpdate::validate`] refuses the update, or when the resulting
    /// row would break the profile rule (field `endpoint_spiffe_id`; nothing changes then).
    /// An update that sets nothing writes nothing and returns the stored relationship.
    /// `NotFound` if there is no relationship with `trust_domain`.
    async fn update_federation(
        &self,
        trust_domain: &str,
        update: FederationUpdate,
        now: i64,
    ) -> StoreResult<FederationRelationship>;
    /// Deletes the relationship with `trust_domain` and, in the same transaction, that trust
    /// domain's bundle if one is stored: appends `FederationDeleted`, then `BundleDeleted` when
    /// there was a bundle. `NotFound` if there is no relationship (then nothing is deleted).
    /// The store does not know the server's own trust domain: refusing a relationship with it
    /// (whose delete would take the server's own bundle) is the caller's job.
    async fn delete_federation(&self, trust_domain: &str) -> StoreResult<()>;

    // ---- audit log ----

    // One chain for every replica: appends are serialised (PostgreSQL: an advisory transaction
    // lock; SQLite: the immediate transaction), so the chain has one order that verifies
    // without merging. Records and checkpoints are never updated or deleted by the store.

    /// Appends `events` (at most [`MAX_AUDIT_BATCH`], each passing
    /// [`AuditEvent::validate`], else `Invalid` and nothing stored) as the next records of the
    /// chain, in order, in one transaction: each gets the next sequence and its hash over the
    /// previous record's. Returns the records as stored. An empty batch stores nothing.
    async fn append_audit(&self, events: Vec<AuditEvent>) -> StoreResult<Vec<AuditRecord>>;
    /// At most `limit` records matching `filter` with sequence greater than `after`, in
    /// sequence order. `Invalid` (field `limit`) when `limit` is 0.
    async fn list_audit(
        &self,
        filter: &AuditFilter,
        after: u64,
        limit: u32,
    ) -> StoreResult<Vec<AuditRecord>>;
    /// The last record's sequence and hash; `None` while the chain is empty.
    async fn audit_head(&self) -> StoreResult<Option<(u64, String)>>;
    /// Stores a signed checkpoint. `AlreadyExists` when one with the same sequence and key id
    /// is stored. The store does not check signatures: verifiers do.
    async fn put_audit_checkpoint(&self, checkpoint: Checkpoint) -> StoreResult<()>;
    /// Every checkpoint, ordered by sequence then key id.
    async fn list_audit_checkpoints(&self) -> StoreResult<Vec<Checkpoint>>;
    /// Registers a replica's audit key (its public half). Registering the same key again is
    /// a no-op; a different key under a registered key id is `AlreadyExists`.
    async fn register_audit_key(&self, key: AuditKey) -> StoreResult<()>;
    /// Every registered audit key, ordered by creation time then key id.
    async fn list_audit_keys(&self) -> StoreResult<Vec<AuditKey>>;

    // ---- governance: usage, reviews, join tokens ----

    /// Merges usage reports (at most [`MAX_USAGE_BATCH`]; `Invalid` otherwise, or for a row
    /// with an over-long path or a hash that is not empty or 64 hex digits) into the stored
    /// rows, one transaction, column-wise (earliest first_seen, latest last_seen, counters
    /// added), so concurrent reports of one workload all count. Rows naming an entry that does
    /// not exist are skipped. Appends no change event.
    async fn record_workload_usage(&self, usage: Vec<WorkloadUsage>) -> StoreResult<()>;
    /// The usage rows of entry `entry_id`, ordered by agent, uid, path, hash; at most `limit`.
    async fn list_workload_usage(
        &self,
        entry_id: &str,
        limit: u32,
    ) -> StoreResult<Vec<WorkloadUsage>>;
    /// Usage summed per entry, for every entry that has any, ordered by entry id.
    async fn usage_by_entry(&self) -> StoreResult<Vec<EntryUsage>>;
    /// Deletes usage rows last seen before `before`; returns how many.
    async fn prune_workload_usage(&self, before: i64) -> StoreResult<u64>;
    /// Records `review` as the latest review of its entry (replacing an earlier one).
    /// `NotFound` if the entry does not exist; `Invalid` for an empty reviewer or an over-long
    /// reviewer or note. Appends no change event (reviews do not change what is served).
    async fn review_entry(&self, review: EntryReview) -> StoreResult<EntryReview>;
    /// The latest review of every reviewed entry, ordered by entry id.
    async fn list_entry_reviews(&self) -> StoreResult<Vec<EntryReview>>;
    /// Every join token (used or not, until pruned), ordered by creation time then id.
    async fn list_join_tokens(&self) -> StoreResult<Vec<JoinToken>>;
    /// The credentials recorded for `spiffe_id` (not yet pruned), newest first, at most
    /// `limit`.
    async fn list_issued_for(
        &self,
        spiffe_id: &sigil_spiffe::SpiffeId,
        limit: u32,
    ) -> StoreResult<Vec<IssuedCredential>>;

    // --- brokered database credentials (model::leases) ---

    /// Stores a new lease. `AlreadyExists` if its id is taken; `Invalid` for an empty or
    /// over-long id, target, role, SPIFFE ID or user name, or `expires_at` past
    /// `max_expires_at`.
    async fn create_lease(&self, lease: Lease) -> StoreResult<()>;

    /// The lease `id`, `None` if there is none.
    async fn get_lease(&self, id: &str) -> StoreResult<Option<Lease>>;

    /// Leases matching `filter`, ordered by id, at most `filter.limit` (capped).
    async fn list_leases(&self, filter: &LeaseFilter) -> StoreResult<Vec<Lease>>;

    /// Moves an active lease's `expires_at` to `expires_at` (one column update) and sets
    /// `renewed_at = now`; returns the updated lease. `NotFound` for no lease;
    /// `Invalid { field: "expires_at" }` past its `max_expires_at`; `Invalid { field: "state" }`
    /// when it is not active or has already expired at `now`.
    async fn renew_lease(&self, id: &str, expires_at: i64, now: i64) -> StoreResult<Lease>;

    /// Claims the lease `id` for revocation until `claim_until`, in one compare-and-swap: an
    /// active lease, or a revoking one whose claim ended before `now`, becomes revoking with
    /// that claim; `reason` is kept if none was recorded before. Returns the claimed lease, or
    /// `None` when it is revoked already or another claim holds it. `NotFound` for no lease.
    async fn claim_lease_revocation(
        &self,
        id: &str,
        reason: &str,
        now: i64,
        claim_until: i64,
    ) -> StoreResult<Option<Lease>>;

    /// Marks a revoking lease revoked at `now` and drops its claim. `NotFound` for no lease;
    /// revoked leases are left as they are (finishing twice is not an error).
    async fn finish_lease_revocation(&self, id: &str, now: i64) -> StoreResult<()>;

    /// Leases due for revocation at `now`, soonest first, at most `limit` (capped): active ones
    /// with `expires_at <= now`, and revoking ones whose claim ended before `now`.
    async fn due_leases(&self, now: i64, limit: u32) -> StoreResult<Vec<Lease>>;

    /// The earliest time a lease falls due: the least `expires_at` of active leases and
    /// `claim_until` of revoking ones; `None` when there are none.
    async fn next_lease_due(&self) -> StoreResult<Option<i64>>;

    /// Deletes revoked leases revoked before `before`; returns how many.
    async fn prune_leases(&self, before: i64) -> StoreResult<u64>;

    /// Stores a target created through the admin API, at revision 1 with both timestamps `now`.
    /// `AlreadyExists` when the name is taken; `Invalid` for an empty or over-long name, an
    /// empty owner or a spec past [`MAX_TARGET_SPEC_BYTES`].
    async fn create_credential_target(
        &self,
        name: &str,
        owner: &str,
        spec: &str,
        now: i64,
    ) -> StoreResult<StoredCredentialTarget>;

    /// The stored target `name`, `None` if there is none.
    async fn get_credential_target(
        &self,
        name: &str,
    ) -> StoreResult<Option<StoredCredentialTarget>>;

    /// Every stored target, by name.
    async fn list_credential_targets(&self) -> StoreResult<Vec<StoredCredentialTarget>>;

    /// Replaces the owner and spec of target `name` when its revision is `expected_revision`
    /// (compare-and-swap); the revision grows by 1. `NotFound`, `RevisionConflict`, `Invalid`.
    async fn update_credential_target(
        &self,
        name: &str,
        owner: &str,
        spec: &str,
        expected_revision: i64,
        now: i64,
    ) -> StoreResult<StoredCredentialTarget>;

    /// Deletes the stored target `name` and returns it. `NotFound` if there is none.
    async fn delete_credential_target(&self, name: &str) -> StoreResult<StoredCredentialTarget>;

    // ---- change feed ----

    /// Events with sequence greater than `after`, oldest first, at most `limit`.
    async fn changes_since(&self, after: u64, limit: u32) -> StoreResult<Vec<ChangeEvent>>;
    /// The newest event sequence (0 when there is none).
    async fn latest_change(&self) -> StoreResult<u64>;
    /// A receiver whose value is the newest event sequence; it changes after every mutation.
    fn watch_changes(&self) -> watch::Receiver<u64>;
}
