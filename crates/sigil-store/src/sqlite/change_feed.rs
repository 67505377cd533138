//! The change feed table: appended to inside every mutation's transaction, read by sequence.

use rusqlite::{Connection, OptionalExtension, params};

use super::{backend, corrupt, from_sql_int};
use crate::{Change, ChangeEvent, StoreResult};

const KIND: &str = "change event";

/// Appends `change` to the feed. `at` is the caller's clock when the mutation carries one;
/// otherwise the database's clock is used.
pub(super) fn append(conn: &Connection, change: &Change, at: Option<i64>) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO change_events (kind, key, at) VALUES (?1, ?2, coalesce(?3, unixepoch()))",
    )
    .and_then(|mut stmt| stmt.execute(params![change.kind(), change.key(), at]))
    .map_err(backend)?;
    Ok(())
}

/// Events after `after`, oldest first, at most `limit`.
pub(super) fn since(conn: &Connection, after: u64, limit: u32) -> StoreResult<Vec<ChangeEvent>> {
    // Sequences never exceed i64::MAX, so a larger cursor simply has nothing after it.
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let mut stmt = conn
        .prepare_cached(
            "SELECT seq, kind, key, at FROM change_events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map(params![after, limit], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, i64>(3)?,
            ))
        })
        .map_err(backend)?;
    let mut events = Vec::new();
    for row in rows {
        let (seq, kind, key, at) = row.map_err(backend)?;
        let id = seq.to_string();
        let seq = from_sql_int(KIND, &id, "seq", seq)?;
        let change = Change::from_kind_and_key(&kind, key)
            .ok_or_else(|| corrupt(KIND, &id, format!("unknown kind `{kind}`")))?;
        events.push(ChangeEvent { seq, change, at });
    }
    Ok(events)
}

/// The newest sequence ever assigned, 0 when there is none. Read from `sqlite_sequence`, so it
/// stays right even if old events are pruned one day.
pub(super) fn latest(conn: &Connection) -> StoreResult<u64> {
    // Runs in every write transaction: a cached statement, not a parse per call.
    let seq: Option<i64> = conn
        .prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = 'change_events'")
        .and_then(|mut stmt| stmt.query_row([], |row| row.get(0)).optional())
        .map_err(backend)?;
    match seq {
        Some(seq) => from_sql_int(KIND, "sqlite_sequence", "seq", seq),
        None => Ok(0),
    }
}
