//! Workload usage and entry reviews in SQLite: usage counters merged column-wise by one upsert
//! per reported row, and the latest review of each entry. Both go with their entry (ON DELETE
//! CASCADE) and neither appends a change event: they do not change what is served.

use rusqlite::{Connection, Row, params};

use super::{backend, to_sql_int};
use crate::rows::{ENTRY_KIND, REVIEW_COLUMNS, USAGE_COLUMNS, USAGE_KIND, UsageRow, non_negative};
use crate::{EntryReview, EntryUsage, MAX_STORED_COUNT, StoreError, StoreResult, WorkloadUsage};

/// Merges checked usage rows inside the caller's transaction: one statement per row, which
/// inserts it or, when its key is stored, keeps the earliest `first_seen`, the latest
/// `last_seen` and adds the counters (saturating at `i64::MAX`). A row whose entry does not
/// exist inserts nothing.
pub(super) fn record_usage(conn: &Connection, usage: &[WorkloadUsage]) -> StoreResult<()> {
    // The SELECT needs its WHERE clause for SQLite to parse the upsert (see "Parsing
    // Ambiguity" in SQLite's UPSERT documentation); it is also what skips unknown entries.
    let mut stmt = conn
        .prepare_cached(&format!(
            "INSERT INTO workload_usage ({USAGE_COLUMNS}) \
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9 \
             WHERE EXISTS (SELECT 1 FROM entries WHERE id = ?1) \
             ON CONFLICT (entry_id, agent_id, uid, binary_path, binary_sha256) DO UPDATE SET \
               first_seen = min(first_seen, excluded.first_seen), \
               last_seen = max(last_seen, excluded.last_seen), \
               fetches = CASE WHEN fetches > 9223372036854775807 - excluded.fetches \
                 THEN 9223372036854775807 ELSE fetches + excluded.fetches END, \
               svids_issued = CASE WHEN svids_issued > 9223372036854775807 - excluded.svids_issued \
                 THEN 9223372036854775807 ELSE svids_issued + excluded.svids_issued END"
        ))
        .map_err(backend)?;
    for row in usage {
        stmt.execute(params![
            row.entry_id,
            row.agent_id.as_str(),
            i64::from(row.uid),
            row.binary_path,
            row.binary_sha256,
            row.first_seen,
            row.last_seen,
            to_sql_int("fetches", row.fetches)?,
            to_sql_int("svids_issued", row.svids_issued)?,
        ])
        .map_err(backend)?;
    }
    Ok(())
}

/// The usage rows of `entry_id`, in key order, at most `limit`.
pub(super) fn list_usage(
    conn: &Connection,
    entry_id: &str,
    limit: u32,
) -> StoreResult<Vec<WorkloadUsage>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {USAGE_COLUMNS} FROM workload_usage WHERE entry_id = ?1 \
             ORDER BY agent_id, uid, binary_path, binary_sha256 LIMIT ?2"
        ))
        .map_err(backend)?;
    let rows = stmt
        .query_map(params![entry_id, i64::from(limit)], usage_row)
        .map_err(backend)?;
    rows.map(|row| row.map_err(backend).and_then(UsageRow::into_usage))
        .collect()
}

/// Usage summed per entry, ordered by entry id. Counter sums saturate at `i64::MAX`: each is
/// summed as its high and low 32 bits apart (neither sum can overflow) and joined here, so an
/// agent reporting huge counters cannot make this query fail for everyone.
pub(super) fn usage_by_entry(conn: &Connection) -> StoreResult<Vec<EntryUsage>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT entry_id, count(*), min(first_seen), max(last_seen), \
               sum(fetches >> 32), sum(fetches & 4294967295), \
               sum(svids_issued >> 32), sum(svids_issued & 4294967295) \
             FROM workload_usage GROUP BY entry_id ORDER BY entry_id",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, i64>(3)?,
                [
                    row.get::<_, i64>(4)?,
                    row.get::<_, i64>(5)?,
                    row.get::<_, i64>(6)?,
                    row.get::<_, i64>(7)?,
                ],
            ))
        })
        .map_err(backend)?;
    rows.map(|row| {
        let (entry_id, workloads, first_seen, last_seen, [f_hi, f_lo, s_hi, s_lo]) =
            row.map_err(backend)?;
        Ok(EntryUsage {
            workloads: non_negative(USAGE_KIND, &entry_id, "count", workloads)?,
            first_seen,
            last_seen,
            fetches: joined_sum(&entry_id, "fetches", f_hi, f_lo)?,
            svids_issued: joined_sum(&entry_id, "svids_issued", s_hi, s_lo)?,
            entry_id,
        })
    })
    .collect()
}

/// Deletes usage rows with `last_seen < before`; returns how many.
pub(super) fn prune_usage(conn: &Connection, before: i64) -> StoreResult<u64> {
    let deleted = conn
        .execute("DELETE FROM workload_usage WHERE last_seen < ?1", [before])
        .map_err(backend)?;
    Ok(u64::try_from(deleted).unwrap_or(u64::MAX))
}

/// Stores a checked review as its entry's latest, replacing an earlier one; `NotFound` when
/// the entry does not exist.
pub(super) fn review(conn: &Connection, review: &EntryReview) -> StoreResult<()> {
    let written = conn
        .execute(
            &format!(
                "INSERT INTO entry_reviews ({REVIEW_COLUMNS}) \
                 SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM entries WHERE id = ?1) \
                 ON CONFLICT (entry_id) DO UPDATE SET reviewed_by = excluded.reviewed_by, \
                   reviewed_at = excluded.reviewed_at, note = excluded.note"
            ),
            params![
                review.entry_id,
                review.reviewed_by,
                review.reviewed_at,
                review.note
            ],
        )
        .map_err(backend)?;
    if written == 0 {
        return Err(StoreError::NotFound {
            kind: ENTRY_KIND,
            id: review.entry_id.clone(),
        });
    }
    Ok(())
}

/// The latest review of every reviewed entry, ordered by entry id.
pub(super) fn list_reviews(conn: &Connection) -> StoreResult<Vec<EntryReview>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {REVIEW_COLUMNS} FROM entry_reviews ORDER BY entry_id"
        ))
        .map_err(backend)?;
    let rows = stmt
        .query_map([], |row| {
            Ok(EntryReview {
                entry_id: row.get(0)?,
                reviewed_by: row.get(1)?,
                reviewed_at: row.get(2)?,
                note: row.get(3)?,
            })
        })
        .map_err(backend)?;
    rows.collect::<Result<_, _>>().map_err(backend)
}

/// A counter sum from the sums of its high and low 32 bits, saturating at `i64::MAX`;
/// `Corrupt` when a part is negative (a stored counter was).
fn joined_sum(entry_id: &str, field: &str, high: i64, low: i64) -> StoreResult<u64> {
    let high = non_negative(USAGE_KIND, entry_id, field, high)?;
    let low = non_negative(USAGE_KIND, entry_id, field, low)?;
    let total = (u128::from(high) << 32).saturating_add(u128::from(low));
    Ok(u64::try_from(total.min(u128::from(MAX_STORED_COUNT))).unwrap_or(MAX_STORED_COUNT))
}

/// Reads the columns of [`USAGE_COLUMNS`], in order.
fn usage_row(row: &Row<'_>) -> rusqlite::Result<UsageRow> {
    Ok(UsageRow {
        entry_id: row.get(0)?,
        agent_id: row.get(1)?,
        uid: row.get(2)?,
        binary_path: row.get(3)?,
        binary_sha256: row.get(4)?,
        first_seen: row.get(5)?,
        last_seen: row.get(6)?,
        fetches: row.get(7)?,
        svids_issued: row.get(8)?,
    })
}
