//! Workload usage and entry reviews on PostgreSQL: usage counters merged column-wise by one
//! upsert per reported row, and the latest review of each entry. Both go with their entry
//! (ON DELETE CASCADE) and neither appends a change event: they do not change what is served.
//!
//! Each write names its entry in `EXISTS (... FOR KEY SHARE)`: the entry row is locked against
//! a concurrent delete until the commit, so a row whose entry is being deleted is skipped (or
//! the delete waits) instead of failing the whole batch on the foreign key.

use deadpool_postgres::GenericClient;
use futures::future::try_join_all;
use tokio_postgres::Row;

use super::{backend, column, execute, query, to_sql_int};
use crate::rows::{ENTRY_KIND, REVIEW_COLUMNS, USAGE_COLUMNS, USAGE_KIND, UsageRow, non_negative};
use crate::{EntryReview, EntryUsage, StoreError, StoreResult, WorkloadUsage};

/// Merges checked usage rows inside the caller's transaction: one statement per row, which
/// inserts it or, when its key is stored, keeps the earliest `first_seen`, the latest
/// `last_seen` and adds the counters (saturating at `i64::MAX`). A row whose entry does not
/// exist inserts nothing.
///
/// Rows are written in one global order (entry, then key), so two transactions merging
/// overlapping batches take their row locks in the same order and cannot deadlock. The
/// statements are pipelined on the one connection: they still run one after the other.
pub(super) async fn record_usage(
    db: &impl GenericClient,
    usage: &[WorkloadUsage],
) -> StoreResult<()> {
    let mut rows: Vec<(&WorkloadUsage, Vec<u8>, i64, i64)> = Vec::with_capacity(usage.len());
    for row in usage {
        rows.push((
            row,
            row.key_bytes(),
            to_sql_int("fetches", row.fetches)?,
            to_sql_int("svids_issued", row.svids_issued)?,
        ));
    }
    rows.sort_by(|a, b| (&a.0.entry_id, &a.1).cmp(&(&b.0.entry_id, &b.1)));
    let statement = db
        .prepare_cached(&format!(
            "INSERT INTO workload_usage ({USAGE_COLUMNS}, key_digest) \
             SELECT $1::text, $2::text, $3::bigint, $4::text, $5::text, $6::bigint, $7::bigint, \
               $8::bigint, $9::bigint, sha256($10::bytea) \
             WHERE EXISTS (SELECT 1 FROM entries WHERE id = $1::text FOR KEY SHARE) \
             ON CONFLICT (entry_id, key_digest) DO UPDATE SET \
               first_seen = least(workload_usage.first_seen, excluded.first_seen), \
               last_seen = greatest(workload_usage.last_seen, excluded.last_seen), \
               fetches = CASE \
                 WHEN workload_usage.fetches > 9223372036854775807 - excluded.fetches \
                 THEN 9223372036854775807 ELSE workload_usage.fetches + excluded.fetches END, \
               svids_issued = CASE \
                 WHEN workload_usage.svids_issued > 9223372036854775807 - excluded.svids_issued \
                 THEN 9223372036854775807 \
                 ELSE workload_usage.svids_issued + excluded.svids_issued END"
        ))
        .await
        .map_err(backend)?;
    let uids: Vec<i64> = rows.iter().map(|(row, ..)| i64::from(row.uid)).collect();
    let writes = rows
        .iter()
        .zip(&uids)
        .map(|((row, key, fetches, svids), uid)| {
            let statement = &statement;
            async move {
                db.execute(
                    statement,
                    &[
                        &row.entry_id,
                        &row.agent_id.as_str(),
                        uid,
                        &row.binary_path,
                        &row.binary_sha256,
                        &row.first_seen,
                        &row.last_seen,
                        fetches,
                        svids,
                        key,
                    ],
                )
                .await
            }
        });
    try_join_all(writes).await.map_err(backend)?;
    Ok(())
}

/// The usage rows of `entry_id`, in key order (bytewise: the columns use "C"), at most
/// `limit`.
pub(super) async fn list_usage(
    db: &impl GenericClient,
    entry_id: &str,
    limit: u32,
) -> StoreResult<Vec<WorkloadUsage>> {
    let rows = query(
        db,
        &format!(
            "SELECT {USAGE_COLUMNS} FROM workload_usage WHERE entry_id = $1 \
             ORDER BY agent_id, uid, binary_path, binary_sha256 LIMIT $2"
        ),
        &[&entry_id, &i64::from(limit)],
    )
    .await?;
    rows.iter()
        .map(|row| usage_row(row)?.into_usage())
        .collect()
}

/// Usage summed per entry, ordered by entry id. Sums are `numeric`, so they cannot overflow;
/// they saturate at `i64::MAX` on the way out.
pub(super) async fn usage_by_entry(db: &impl GenericClient) -> StoreResult<Vec<EntryUsage>> {
    let rows = query(
        db,
        "SELECT entry_id, count(*), min(first_seen), max(last_seen), \
           least(sum(fetches), 9223372036854775807)::bigint, \
           least(sum(svids_issued), 9223372036854775807)::bigint \
         FROM workload_usage GROUP BY entry_id ORDER BY entry_id",
        &[],
    )
    .await?;
    rows.iter()
        .map(|row| {
            let entry_id: String = column(row, 0)?;
            let count = |idx: usize, field: &str| -> StoreResult<u64> {
                non_negative(USAGE_KIND, &entry_id, field, column(row, idx)?)
            };
            Ok(EntryUsage {
                workloads: count(1, "count")?,
                first_seen: column(row, 2)?,
                last_seen: column(row, 3)?,
                fetches: count(4, "fetches")?,
                svids_issued: count(5, "svids_issued")?,
                entry_id,
            })
        })
        .collect()
}

/// Deletes usage rows with `last_seen < before`; returns how many.
pub(super) async fn prune_usage(db: &impl GenericClient, before: i64) -> StoreResult<u64> {
    execute(
        db,
        "DELETE FROM workload_usage WHERE last_seen < $1",
        &[&before],
    )
    .await
    .map_err(backend)
}

/// Stores a checked review as its entry's latest, replacing an earlier one; `NotFound` when
/// the entry does not exist.
pub(super) async fn review(db: &impl GenericClient, review: &EntryReview) -> StoreResult<()> {
    let written = execute(
        db,
        &format!(
            "INSERT INTO entry_reviews ({REVIEW_COLUMNS}) \
             SELECT $1::text, $2::text, $3::bigint, $4::text \
             WHERE EXISTS (SELECT 1 FROM entries WHERE id = $1::text FOR KEY SHARE) \
             ON CONFLICT (entry_id) DO UPDATE SET reviewed_by = excluded.reviewed_by, \
               reviewed_at = excluded.reviewed_at, note = excluded.note"
        ),
        &[
            &review.entry_id,
            &review.reviewed_by,
            &review.reviewed_at,
            &review.note,
        ],
    )
    .await
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
pub(super) async fn list_reviews(db: &impl GenericClient) -> StoreResult<Vec<EntryReview>> {
    let rows = query(
        db,
        &format!("SELECT {REVIEW_COLUMNS} FROM entry_reviews ORDER BY entry_id"),
        &[],
    )
    .await?;
    rows.iter()
        .map(|row| {
            Ok(EntryReview {
                entry_id: column(row, 0)?,
                reviewed_by: column(row, 1)?,
                reviewed_at: column(row, 2)?,
                note: column(row, 3)?,
            })
        })
        .collect()
}

/// Reads the columns of [`USAGE_COLUMNS`], in order.
fn usage_row(row: &Row) -> StoreResult<UsageRow> {
    Ok(UsageRow {
        entry_id: column(row, 0)?,
        agent_id: column(row, 1)?,
        uid: column(row, 2)?,
        binary_path: column(row, 3)?,
        binary_sha256: column(row, 4)?,
        first_seen: column(row, 5)?,
        last_seen: column(row, 6)?,
        fetches: column(row, 7)?,
        svids_issued: column(row, 8)?,
    })
}
