//! The audit log on PostgreSQL: records appended to one hash chain shared by every replica,
//! signed checkpoints and the audit keys that sign them.
//!
//! # One chain, one order
//!
//! An append takes a transaction-scoped advisory lock (the schema's [`AuditLock`]) before it
//! reads the head, and PostgreSQL releases it only after the commit is visible to other
//! sessions. So the next appender, on whichever replica, reads a head that includes every
//! record committed before it, and sequences are handed out without gaps or forks. The same
//! argument as the change feed's (see `change_feed`) makes records visible in sequence order,
//! so a reader paging by `seq > cursor` never passes one that commits later.
//!
//! Appends are bookkeeping, not changes readers follow: they append no change event.

use deadpool_postgres::GenericClient;
use sigil_audit::GENESIS_HASH;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::migrate::Schema;
use super::{WriteTx, backend, column, execute, is_unique_violation, query, query_opt, to_sql_int};
use crate::model::ActionMatch;
use crate::rows::{
    AUDIT_CHECKPOINT_COLUMNS, AUDIT_CHECKPOINT_KIND, AUDIT_KEY_COLUMNS, AUDIT_KEY_KIND,
    AUDIT_RECORD_COLUMNS, AUDIT_RECORD_KIND, AuditRecordRow, CheckpointRow, non_negative,
};
use crate::{AuditEvent, AuditFilter, AuditKey, AuditRecord, Checkpoint, StoreError, StoreResult};

/// First key of the audit chain's advisory lock ("SIGA"), distinct from the feed's and the
/// migrations'; the second is the schema's OID.
const AUDIT_LOCK_CLASS: i32 = 0x5349_4741;

/// The advisory lock that serialises one schema's appends.
#[derive(Debug, Clone, Copy)]
pub(super) struct AuditLock {
    schema_key: i32,
}

impl AuditLock {
    /// The lock of the chain in `schema`.
    pub(super) fn for_schema(schema: &Schema) -> Self {
        Self {
            schema_key: schema.lock_key(),
        }
    }
}

/// Appends checked `events` after the head, holding `lock` until the caller's transaction
/// ends; returns the records as stored.
pub(super) async fn append(
    tx: &WriteTx<'_>,
    lock: AuditLock,
    events: Vec<AuditEvent>,
) -> StoreResult<Vec<AuditRecord>> {
    let db = tx.db();
    let take = db
        .prepare_cached("SELECT pg_advisory_xact_lock($1, $2)")
        .await
        .map_err(backend)?;
    db.execute(&take, &[&AUDIT_LOCK_CLASS, &lock.schema_key])
        .await
        .map_err(backend)?;
    // A statement after the lock: its snapshot holds every earlier appender's commit.
    let (mut seq, mut prev_hash) = match head(db).await? {
        Some(head) => head,
        None => (0, GENESIS_HASH.to_owned()),
    };
    let mut records = Vec::with_capacity(events.len());
    for event in events {
        seq = seq.checked_add(1).ok_or_else(|| StoreError::Invalid {
            field: "events",
            reason: "the audit chain is full".to_owned(),
        })?;
        let record = event.into_record(seq, prev_hash);
        prev_hash = record.hash.clone();
        records.push(record);
    }
    let seqs = records
        .iter()
        .map(|r| to_sql_int("seq", r.seq))
        .collect::<StoreResult<Vec<i64>>>()?;
    let times: Vec<i64> = records.iter().map(|r| r.event.time).collect();
    let text =
        |field: fn(&AuditRecord) -> &str| -> Vec<&str> { records.iter().map(field).collect() };
    let replicas = text(|r| &r.event.replica);
    let actors = text(|r| &r.event.actor);
    let actions = text(|r| &r.event.action);
    let targets = text(|r| &r.event.target);
    let outcomes = text(|r| r.event.outcome.as_str());
    let details = text(|r| &r.event.details);
    let prev_hashes = text(|r| &r.prev_hash);
    let hashes = text(|r| &r.hash);
    execute(
        db,
        &format!(
            "INSERT INTO audit_records ({AUDIT_RECORD_COLUMNS}) \
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], \
               $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[])"
        ),
        &[
            &seqs,
            &times,
            &replicas,
            &actors,
            &actions,
            &targets,
            &outcomes,
            &details,
            &prev_hashes,
            &hashes,
        ],
    )
    .await
    .map_err(backend)?;
    Ok(records)
}

/// The last record's sequence and hash, if any.
pub(super) async fn head(db: &impl GenericClient) -> StoreResult<Option<(u64, String)>> {
    let Some(row) = query_opt(
        db,
        "SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1",
        &[],
    )
    .await?
    else {
        return Ok(None);
    };
    let seq: i64 = column(&row, 0)?;
    let hash: String = column(&row, 1)?;
    let id = seq.to_string();
    Ok(Some((
        non_negative(AUDIT_RECORD_KIND, &id, "seq", seq)?,
        hash,
    )))
}

/// Records matching a checked `filter` with a sequence above `after`, in sequence order, at
/// most `limit`.
pub(super) async fn list(
    db: &impl GenericClient,
    filter: &AuditFilter,
    after: u64,
    limit: u32,
) -> StoreResult<Vec<AuditRecord>> {
    // Sequences never exceed i64::MAX, so a larger cursor simply has nothing after it.
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let mut conditions = vec!["seq > $1".to_owned()];
    let mut values: Vec<Box<dyn ToSql + Sync + Send>> = vec![Box::new(after)];
    let mut bind = |condition: &str, value: Box<dyn ToSql + Sync + Send>| {
        values.push(value);
        conditions.push(condition.replace('$', &format!("${}", values.len())));
    };
    if let Some(actor) = &filter.actor {
        bind("actor = $", Box::new(actor.clone()));
    }
    match filter.action_match() {
        Some(ActionMatch::Exact(action)) => bind("action = $", Box::new(action)),
        Some(ActionMatch::Prefix { from, to }) => {
            bind("action >= $", Box::new(from));
            bind("action < $", Box::new(to));
        }
        None => {}
    }
    if let Some(target) = &filter.target {
        bind("target = $", Box::new(target.clone()));
    }
    if let Some(outcome) = filter.outcome {
        bind("outcome = $", Box::new(outcome.as_str()));
    }
    if let Some(since) = filter.since {
        bind("time >= $", Box::new(since));
    }
    if let Some(until) = filter.until {
        bind("time < $", Box::new(until));
    }
    values.push(Box::new(i64::from(limit)));
    let sql = format!(
        "SELECT {AUDIT_RECORD_COLUMNS} FROM audit_records WHERE {} ORDER BY seq LIMIT ${}",
        conditions.join(" AND "),
        values.len()
    );
    let params: Vec<&(dyn ToSql + Sync)> = values
        .iter()
        .map(|value| value.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let rows = query(db, &sql, &params).await?;
    rows.iter()
        .map(|row| record_row(row)?.into_record())
        .collect()
}

/// Stores a checked checkpoint; `AlreadyExists` when one with its sequence and key id is stored.
pub(super) async fn put_checkpoint(
    db: &impl GenericClient,
    checkpoint: &Checkpoint,
) -> StoreResult<()> {
    execute(
        db,
        &format!(
            "INSERT INTO audit_checkpoints ({AUDIT_CHECKPOINT_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6)"
        ),
        &[
            &to_sql_int("seq", checkpoint.seq)?,
            &checkpoint.key_id,
            &checkpoint.hash,
            &checkpoint.time,
            &checkpoint.replica,
            &checkpoint.signature,
        ],
    )
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            StoreError::AlreadyExists {
                kind: AUDIT_CHECKPOINT_KIND,
                detail: format!(
                    "key `{}` already signed a checkpoint at seq {}",
                    checkpoint.key_id, checkpoint.seq
                ),
            }
        } else {
            backend(e)
        }
    })?;
    Ok(())
}

/// Every checkpoint, ordered by sequence then key id (bytewise: the column uses "C").
pub(super) async fn list_checkpoints(db: &impl GenericClient) -> StoreResult<Vec<Checkpoint>> {
    let rows = query(
        db,
        &format!("SELECT {AUDIT_CHECKPOINT_COLUMNS} FROM audit_checkpoints ORDER BY seq, key_id"),
        &[],
    )
    .await?;
    rows.iter()
        .map(|row| {
            CheckpointRow {
                seq: column(row, 0)?,
                key_id: column(row, 1)?,
                hash: column(row, 2)?,
                time: column(row, 3)?,
                replica: column(row, 4)?,
                signature: column(row, 5)?,
            }
            .into_checkpoint()
        })
        .collect()
}

/// Registers a checked key: a no-op when the same key (id, replica and public key) is
/// registered, `AlreadyExists` when another is under its id. A concurrent registration of the
/// same id makes the insert wait for its commit, so the comparison sees the winner.
pub(super) async fn register_key(db: &impl GenericClient, key: &AuditKey) -> StoreResult<()> {
    let inserted = execute(
        db,
        &format!(
            "INSERT INTO audit_keys ({AUDIT_KEY_COLUMNS}) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (key_id) DO NOTHING"
        ),
        &[&key.key_id, &key.replica, &key.public_key, &key.created_at],
    )
    .await
    .map_err(backend)?;
    if inserted == 1 {
        return Ok(());
    }
    let row = query_opt(
        db,
        "SELECT replica, public_key FROM audit_keys WHERE key_id = $1",
        &[&key.key_id],
    )
    .await?;
    let same = match row {
        Some(row) => {
            column::<String>(&row, 0)? == key.replica
                && column::<String>(&row, 1)? == key.public_key
        }
        None => false,
    };
    if same {
        Ok(())
    } else {
        Err(StoreError::AlreadyExists {
            kind: AUDIT_KEY_KIND,
            detail: format!(
                "key id `{}` is registered for another key or replica",
                key.key_id
            ),
        })
    }
}

/// Every registered key, ordered by creation time then key id.
pub(super) async fn list_keys(db: &impl GenericClient) -> StoreResult<Vec<AuditKey>> {
    let rows = query(
        db,
        &format!("SELECT {AUDIT_KEY_COLUMNS} FROM audit_keys ORDER BY created_at, key_id"),
        &[],
    )
    .await?;
    rows.iter()
        .map(|row| {
            Ok(AuditKey {
                key_id: column(row, 0)?,
                replica: column(row, 1)?,
                public_key: column(row, 2)?,
                created_at: column(row, 3)?,
            })
        })
        .collect()
}

/// Reads the columns of [`AUDIT_RECORD_COLUMNS`], in order.
fn record_row(row: &Row) -> StoreResult<AuditRecordRow> {
    Ok(AuditRecordRow {
        seq: column(row, 0)?,
        time: column(row, 1)?,
        replica: column(row, 2)?,
        actor: column(row, 3)?,
        action: column(row, 4)?,
        target: column(row, 5)?,
        outcome: column(row, 6)?,
        details: column(row, 7)?,
        prev_hash: column(row, 8)?,
        hash: column(row, 9)?,
    })
}
