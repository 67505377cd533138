//! The change feed on PostgreSQL: events appended at the end of each mutation's transaction
//! under one advisory lock per schema, read by sequence, announced with NOTIFY.
//!
//! # Why readers never skip an event
//!
//! A sequence value is drawn before its transaction commits. Were two writers free to draw
//! concurrently, transaction A could draw 7 and transaction B draw 8, B commit first, and a
//! reader of `seq > 6` see 8, move its cursor there, and never see 7 when A commits.
//!
//! So a writer draws its sequence values only while it holds a transaction-scoped advisory lock
//! ([`Feed`]'s key), taken right before the events are inserted, as the last statements of the
//! transaction, and released by PostgreSQL only after the commit is visible to other sessions
//! (locks are released after the transaction leaves the proc array). Hence if `e1 < e2` were
//! drawn by transactions T1 and T2, T2 drew `e2` after T1 released the lock, so after T1's
//! commit became visible. A reader's statement runs on one snapshot; if that snapshot sees `e2`
//! it was taken after T2 committed, so after T1 committed, so it sees `e1` too (unless T1 rolled
//! back, and then `e1` never exists). Events become visible in sequence order: `seq > cursor`
//! can never pass one that commits later.
//!
//! The locked span is short: the insert of the events and the commit, not the mutation itself,
//! and a mutation that fails never takes the lock. Sequence numbers may still have holes (a
//! transaction that fails after drawing, e.g. a lost connection at commit, burns its values),
//! which readers do not mind: they follow `seq > cursor`, not `cursor + 1`.
//!
//! The `pg_notify` in the same statement is delivered when the transaction commits, carrying the
//! newest sequence, to every process listening on the schema's channel (see `listener`).

use deadpool_postgres::{GenericClient, Transaction};

use super::migrate::Schema;
use super::{backend, column, corrupt, from_sql_int, query};
use crate::{Change, ChangeEvent, StoreResult};

const KIND: &str = "change event";

/// First key of the feed's advisory lock ("SIGF"); the second is the schema's OID.
pub(super) const FEED_LOCK_CLASS: i32 = 0x5349_4746;

/// Where one schema's feed serialises and announces: its advisory lock key and NOTIFY channel.
#[derive(Debug, Clone)]
pub(super) struct Feed {
    lock_key: i32,
    channel: String,
}

/// An event queued by a mutation, appended when its transaction commits.
pub(super) struct PendingChange {
    pub(super) change: Change,
    /// The caller's clock, or `None` for the database's.
    pub(super) at: Option<i64>,
}

impl Feed {
    /// The feed of the tables in `schema`.
    pub(super) fn for_schema(schema: &Schema) -> Self {
        Self {
            lock_key: schema.lock_key(),
            channel: format!("sigil_changes_{}", schema.oid),
        }
    }

    /// The NOTIFY channel (a lowercase identifier, no quoting needed).
    pub(super) fn channel(&self) -> &str {
        &self.channel
    }
}

/// Takes the feed lock, appends `changes` in order and queues the notification; returns the
/// newest sequence. Must be the last work of the transaction before its commit.
pub(super) async fn append(
    tx: &Transaction<'_>,
    feed: &Feed,
    changes: &[PendingChange],
) -> StoreResult<u64> {
    let lock = tx
        .prepare_cached("SELECT pg_advisory_xact_lock($1, $2)")
        .await
        .map_err(backend)?;
    tx.execute(&lock, &[&FEED_LOCK_CLASS, &feed.lock_key])
        .await
        .map_err(backend)?;

    let kinds: Vec<&str> = changes.iter().map(|c| c.change.kind()).collect();
    let keys: Vec<&str> = changes.iter().map(|c| c.change.key()).collect();
    let ats: Vec<Option<i64>> = changes.iter().map(|c| c.at).collect();
    // Rows are inserted, and their sequence values drawn, in ORDER BY order: the events keep
    // the order in which the mutation queued them.
    let rows = query(
        tx,
        "WITH appended AS ( \
           INSERT INTO change_events (kind, key, at) \
           SELECT e.kind, e.key, coalesce(e.at, floor(extract(epoch FROM statement_timestamp()))::bigint) \
           FROM unnest($1::text[], $2::text[], $3::bigint[]) WITH ORDINALITY AS e(kind, key, at, n) \
           ORDER BY e.n \
           RETURNING seq) \
         SELECT max(seq), pg_notify($4, max(seq)::text) FROM appended",
        &[&kinds, &keys, &ats, &feed.channel],
    )
    .await?;
    let newest: Option<i64> = match rows.first() {
        Some(row) => column(row, 0)?,
        None => None,
    };
    let newest = newest.ok_or_else(|| corrupt(KIND, "append", "no sequence was returned"))?;
    from_sql_int(KIND, "append", "seq", newest)
}

/// Events after `after`, oldest first, at most `limit`.
pub(super) async fn since(
    db: &impl GenericClient,
    after: u64,
    limit: u32,
) -> StoreResult<Vec<ChangeEvent>> {
    // Sequences never exceed i64::MAX, so a larger cursor simply has nothing after it.
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let rows = query(
        db,
        "SELECT seq, kind, key, at FROM change_events WHERE seq > $1 ORDER BY seq LIMIT $2",
        &[&after, &i64::from(limit)],
    )
    .await?;
    let mut events = Vec::with_capacity(rows.len());
    for row in &rows {
        let seq: i64 = column(row, 0)?;
        let kind: String = column(row, 1)?;
        let key: String = column(row, 2)?;
        let at: i64 = column(row, 3)?;
        let id = seq.to_string();
        let seq = from_sql_int(KIND, &id, "seq", seq)?;
        let change = Change::from_kind_and_key(&kind, key)
            .ok_or_else(|| corrupt(KIND, &id, format!("unknown kind `{kind}`")))?;
        events.push(ChangeEvent { seq, change, at });
    }
    Ok(events)
}

/// The newest committed sequence, 0 when there is none.
pub(super) async fn latest(db: &impl GenericClient) -> StoreResult<u64> {
    let rows = query(db, "SELECT coalesce(max(seq), 0) FROM change_events", &[]).await?;
    let seq: i64 = match rows.first() {
        Some(row) => column(row, 0)?,
        None => 0,
    };
    from_sql_int(KIND, "latest", "seq", seq)
}
