//! Signed CRLs in SQLite, one row per X.509 authority, replaced only by a CRL with a higher
//! number, and deleted with their authority (the foreign key cascades).

use rusqlite::{Connection, Row, params};

use super::{backend, change_feed, from_sql_int, to_sql_int};
use crate::{Change, StoreError, StoreResult, StoredCrl};

const KIND: &str = "CRL";

/// Stores `crl` (already validated) unless a CRL of its authority with the same or a higher
/// number is stored, in one conditional upsert; returns whether it wrote, and appends
/// `CrlChanged` only then. `NotFound` (kind `authority`) when there is no such authority.
pub(super) fn put(conn: &Connection, crl: &StoredCrl) -> StoreResult<bool> {
    let number = to_sql_int("number", crl.number)?;
    let written = conn
        .prepare_cached(
            "INSERT INTO crls (authority_id, replica, number, der, next_update) \
             VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (authority_id) DO UPDATE SET replica = excluded.replica, \
               number = excluded.number, der = excluded.der, \
               next_update = excluded.next_update \
             WHERE crls.number < excluded.number",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                crl.authority_id,
                crl.replica,
                number,
                crl.der,
                crl.next_update,
            ])
        })
        .map_err(|e| {
            if is_foreign_key_violation(&e) {
                StoreError::NotFound {
                    kind: "authority",
                    id: crl.authority_id.clone(),
                }
            } else {
                backend(e)
            }
        })?;
    if written == 0 {
        return Ok(false);
    }
    change_feed::append(conn, &Change::CrlChanged(crl.authority_id.clone()), None)?;
    Ok(true)
}

/// Every stored CRL, ordered by authority id.
pub(super) fn list(conn: &Connection) -> StoreResult<Vec<StoredCrl>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT authority_id, replica, number, der, next_update FROM crls \
             ORDER BY authority_id",
        )
        .map_err(backend)?;
    let rows = stmt.query_map([], CrlRow::read).map_err(backend)?;
    rows.map(|row| row.map_err(backend).and_then(CrlRow::into_crl))
        .collect()
}

/// Whether `e` is a FOREIGN KEY constraint failure (the authority is gone).
fn is_foreign_key_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(failure, _)
            if failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY
    )
}

/// A `crls` row as SQLite returns it, before its number is checked.
struct CrlRow {
    authority_id: String,
    replica: String,
    number: i64,
    der: Vec<u8>,
    next_update: i64,
}

impl CrlRow {
    fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            authority_id: row.get(0)?,
            replica: row.get(1)?,
            number: row.get(2)?,
            der: row.get(3)?,
            next_update: row.get(4)?,
        })
    }

    fn into_crl(self) -> StoreResult<StoredCrl> {
        Ok(StoredCrl {
            number: from_sql_int(KIND, &self.authority_id, "number", self.number)?,
            authority_id: self.authority_id,
            replica: self.replica,
            der: self.der,
            next_update: self.next_update,
        })
    }
}
