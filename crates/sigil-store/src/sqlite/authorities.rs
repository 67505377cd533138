//! Signing authority records in SQLite (metadata and public parts only; never private keys):
//! created whole once, then only their state moves, by compare-and-swap.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{backend, change_feed, is_unique_violation};
use crate::rows::{AUTHORITY_KIND, AuthorityRow};
use crate::{AuthorityRecord, AuthorityState, Change, StoreError, StoreResult};

const KIND: &str = AUTHORITY_KIND;
const COLUMNS: &str = "id, kind, state, cert_der, public_key_der, key_id, issuer_id, not_before, \
                       not_after, created_at, replica";

/// Inserts a new record; `AlreadyExists` if `authority.id` is taken.
pub(super) fn create(conn: &Connection, authority: &AuthorityRecord) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO authorities (id, kind, state, cert_der, public_key_der, key_id, issuer_id, \
           not_before, not_after, created_at, replica) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            authority.id,
            authority.kind.as_str(),
            authority.state.as_str(),
            authority.cert_der,
            authority.public_key_der,
            authority.key_id,
            authority.issuer_id,
            authority.not_before,
            authority.not_after,
            authority.created_at,
            authority.replica,
        ],
    )
    .map_err(|e| {
        if is_unique_violation(&e) {
            StoreError::AlreadyExists {
                kind: KIND,
                detail: format!("id `{}`", authority.id),
            }
        } else {
            backend(e)
        }
    })?;
    change_feed::append(conn, &Change::AuthorityChanged(authority.id.clone()), None)
}

/// Moves `id` from `expected` to `new` in one conditional UPDATE, so of two concurrent
/// transitions from the same state exactly one matches a row.
pub(super) fn set_state(
    conn: &Connection,
    id: &str,
    expected: AuthorityState,
    new: AuthorityState,
) -> StoreResult<AuthorityRecord> {
    let updated = conn
        .execute(
            "UPDATE authorities SET state = ?3 WHERE id = ?1 AND state = ?2",
            params![id, expected.as_str(), new.as_str()],
        )
        .map_err(backend)?;
    let record = get(conn, id)?.ok_or_else(|| not_found(id))?;
    if updated == 0 {
        return Err(StoreError::AuthorityStateConflict {
            id: id.to_owned(),
            expected,
            found: record.state,
        });
    }
    change_feed::append(conn, &Change::AuthorityChanged(id.to_owned()), None)?;
    Ok(record)
}

/// Deletes `id` and returns what it was.
pub(super) fn delete(conn: &Connection, id: &str) -> StoreResult<AuthorityRecord> {
    let record = get(conn, id)?.ok_or_else(|| not_found(id))?;
    conn.execute("DELETE FROM authorities WHERE id = ?1", [id])
        .map_err(backend)?;
    change_feed::append(conn, &Change::AuthorityDeleted(id.to_owned()), None)?;
    Ok(record)
}

fn get(conn: &Connection, id: &str) -> StoreResult<Option<AuthorityRecord>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM authorities WHERE id = ?1"),
        [id],
        authority_row,
    )
    .optional()
    .map_err(backend)?
    .map(AuthorityRow::into_record)
    .transpose()
}

fn not_found(id: &str) -> StoreError {
    StoreError::NotFound {
        kind: KIND,
        id: id.to_owned(),
    }
}

/// Every authority, ordered by creation time then id.
pub(super) fn list(conn: &Connection) -> StoreResult<Vec<AuthorityRecord>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM authorities ORDER BY created_at, id"
        ))
        .map_err(backend)?;
    let rows = stmt.query_map([], authority_row).map_err(backend)?;
    rows.map(|row| row.map_err(backend).and_then(AuthorityRow::into_record))
        .collect()
}

/// Reads the columns of `COLUMNS`, in order.
fn authority_row(row: &Row<'_>) -> rusqlite::Result<AuthorityRow> {
    Ok(AuthorityRow {
        id: row.get(0)?,
        kind: row.get(1)?,
        state: row.get(2)?,
        cert_der: row.get(3)?,
        public_key_der: row.get(4)?,
        key_id: row.get(5)?,
        issuer_id: row.get(6)?,
        not_before: row.get(7)?,
        not_after: row.get(8)?,
        created_at: row.get(9)?,
        replica: row.get(10)?,
    })
}
