//! The audit log in SQLite: records appended to one hash chain, signed checkpoints and the
//! audit keys that sign them. Appends run in the store's immediate transaction, which holds the
//! database's write lock from the head read to the commit, so concurrent appenders (tasks or
//! processes) are serialised and the chain has one order.
//!
//! Appends are bookkeeping, not changes readers follow: they append no change event.

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};

use super::{backend, is_unique_violation, to_sql_int};
use crate::model::ActionMatch;
use crate::rows::{
    AUDIT_CHECKPOINT_COLUMNS, AUDIT_CHECKPOINT_KIND, AUDIT_KEY_COLUMNS, AUDIT_KEY_KIND,
    AUDIT_RECORD_COLUMNS, AUDIT_RECORD_KIND, AuditRecordRow, CheckpointRow, non_negative,
};
use crate::{AuditEvent, AuditFilter, AuditKey, AuditRecord, Checkpoint, StoreError, StoreResult};
use sigil_audit::GENESIS_HASH;

/// Appends checked `events` after the head, inside the caller's immediate transaction; returns
/// the records as stored.
pub(super) fn append(conn: &Connection, events: Vec<AuditEvent>) -> StoreResult<Vec<AuditRecord>> {
    let (mut seq, mut prev_hash) = match head(conn)? {
        Some(head) => head,
        None => (0, GENESIS_HASH.to_owned()),
    };
    let mut stmt = conn
        .prepare_cached(&format!(
            "INSERT INTO audit_records ({AUDIT_RECORD_COLUMNS}) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
        ))
        .map_err(backend)?;
    let mut records = Vec::with_capacity(events.len());
    for event in events {
        seq = seq.checked_add(1).ok_or_else(|| StoreError::Invalid {
            field: "events",
            reason: "the audit chain is full".to_owned(),
        })?;
        let record = event.into_record(seq, prev_hash);
        stmt.execute(params![
            to_sql_int("seq", record.seq)?,
            record.event.time,
            record.event.replica,
            record.event.actor,
            record.event.action,
            record.event.target,
            record.event.outcome.as_str(),
            record.event.details,
            record.prev_hash,
            record.hash,
        ])
        .map_err(backend)?;
        prev_hash = record.hash.clone();
        records.push(record);
    }
    Ok(records)
}

/// The last record's sequence and hash, if any.
pub(super) fn head(conn: &Connection) -> StoreResult<Option<(u64, String)>> {
    let row = conn
        .query_row(
            "SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1",
            [],
            |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?)),
        )
        .optional()
        .map_err(backend)?;
    row.map(|(seq, hash)| {
        let id = seq.to_string();
        Ok((non_negative(AUDIT_RECORD_KIND, &id, "seq", seq)?, hash))
    })
    .transpose()
}

/// Records matching a checked `filter` with a sequence above `after`, in sequence order, at
/// most `limit`.
pub(super) fn list(
    conn: &Connection,
    filter: &AuditFilter,
    after: u64,
    limit: u32,
) -> StoreResult<Vec<AuditRecord>> {
    // Sequences never exceed i64::MAX, so a larger cursor simply has nothing after it.
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let mut conditions = vec!["seq > ?1".to_owned()];
    let mut values = vec![Value::Integer(after)];
    let mut bind = |condition: &str, value: Value| {
        values.push(value);
        conditions.push(condition.replace('?', &format!("?{}", values.len())));
    };
    if let Some(actor) = &filter.actor {
        bind("actor = ?", Value::Text(actor.clone()));
    }
    match filter.action_match() {
        Some(ActionMatch::Exact(action)) => bind("action = ?", Value::Text(action)),
        Some(ActionMatch::Prefix { from, to }) => {
            bind("action >= ?", Value::Text(from));
            bind("action < ?", Value::Text(to));
        }
        None => {}
    }
    if let Some(target) = &filter.target {
        bind("target = ?", Value::Text(target.clone()));
    }
    if let Some(outcome) = filter.outcome {
        bind("outcome = ?", Value::Text(outcome.as_str().to_owned()));
    }
    if let Some(since) = filter.since {
        bind("time >= ?", Value::Integer(since));
    }
    if let Some(until) = filter.until {
        bind("time < ?", Value::Integer(until));
    }
    values.push(Value::Integer(i64::from(limit)));
    let sql = format!(
        "SELECT {AUDIT_RECORD_COLUMNS} FROM audit_records WHERE {} ORDER BY seq LIMIT ?{}",
        conditions.join(" AND "),
        values.len()
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(backend)?;
    let rows = stmt
        .query_map(params_from_iter(values), record_row)
        .map_err(backend)?;
    rows.map(|row| row.map_err(backend).and_then(AuditRecordRow::into_record))
        .collect()
}

/// Stores a checked checkpoint; `AlreadyExists` when one with its sequence and key id is stored.
pub(super) fn put_checkpoint(conn: &Connection, checkpoint: &Checkpoint) -> StoreResult<()> {
    conn.execute(
        &format!(
            "INSERT INTO audit_checkpoints ({AUDIT_CHECKPOINT_COLUMNS}) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
        ),
        params![
            to_sql_int("seq", checkpoint.seq)?,
            checkpoint.key_id,
            checkpoint.hash,
            checkpoint.time,
            checkpoint.replica,
            checkpoint.signature,
        ],
    )
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

/// Every checkpoint, ordered by sequence then key id.
pub(super) fn list_checkpoints(conn: &Connection) -> StoreResult<Vec<Checkpoint>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {AUDIT_CHECKPOINT_COLUMNS} FROM audit_checkpoints ORDER BY seq, key_id"
        ))
        .map_err(backend)?;
    let rows = stmt
        .query_map([], |row| {
            Ok(CheckpointRow {
                seq: row.get(0)?,
                key_id: row.get(1)?,
                hash: row.get(2)?,
                time: row.get(3)?,
                replica: row.get(4)?,
                signature: row.get(5)?,
            })
        })
        .map_err(backend)?;
    rows.map(|row| {
        row.map_err(backend)
            .and_then(CheckpointRow::into_checkpoint)
    })
    .collect()
}

/// Registers a checked key inside the caller's immediate transaction: a no-op when the same
/// key (id, replica and public key) is registered, `AlreadyExists` when another is under its id.
pub(super) fn register_key(conn: &Connection, key: &AuditKey) -> StoreResult<()> {
    let inserted = conn
        .execute(
            &format!(
                "INSERT INTO audit_keys ({AUDIT_KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (key_id) DO NOTHING"
            ),
            params![key.key_id, key.replica, key.public_key, key.created_at],
        )
        .map_err(backend)?;
    if inserted == 1 {
        return Ok(());
    }
    let stored = conn
        .query_row(
            "SELECT replica, public_key FROM audit_keys WHERE key_id = ?1",
            [&key.key_id],
            |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)),
        )
        .map_err(backend)?;
    if stored == (key.replica.clone(), key.public_key.clone()) {
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
pub(super) fn list_keys(conn: &Connection) -> StoreResult<Vec<AuditKey>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {AUDIT_KEY_COLUMNS} FROM audit_keys ORDER BY created_at, key_id"
        ))
        .map_err(backend)?;
    let rows = stmt
        .query_map([], |row| {
            Ok(AuditKey {
                key_id: row.get(0)?,
                replica: row.get(1)?,
                public_key: row.get(2)?,
                created_at: row.get(3)?,
            })
        })
        .map_err(backend)?;
    rows.collect::<Result<_, _>>().map_err(backend)
}

/// Reads the columns of [`AUDIT_RECORD_COLUMNS`], in order.
fn record_row(row: &Row<'_>) -> rusqlite::Result<AuditRecordRow> {
    Ok(AuditRecordRow {
        seq: row.get(0)?,
        time: row.get(1)?,
        replica: row.get(2)?,
        actor: row.get(3)?,
        action: row.get(4)?,
        target: row.get(5)?,
        outcome: row.get(6)?,
        details: row.get(7)?,
        prev_hash: row.get(8)?,
        hash: row.get(9)?,
    })
}
