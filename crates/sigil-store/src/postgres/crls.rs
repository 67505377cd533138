//! Signed CRLs in PostgreSQL, one row per X.509 authority, replaced only by a CRL with a higher
//! number, and deleted with their authority (the foreign key cascades).

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;

use super::{WriteTx, backend, column, execute, from_sql_int, query, to_sql_int};
use crate::{Change, StoreError, StoreResult, StoredCrl};

const KIND: &str = "CRL";

/// Stores `crl` (already validated) unless a CRL of its authority with the same or a higher
/// number is stored, in one conditional upsert: a concurrent writer of the same authority waits
/// for the row lock, then compares against the committed row. Returns whether it wrote, and
/// queues `CrlChanged` only then. `NotFound` (kind `authority`) when there is no such authority.
pub(super) async fn put(tx: &mut WriteTx<'_>, crl: &StoredCrl) -> StoreResult<bool> {
    let written = execute(
        tx.db(),
        "INSERT INTO crls (authority_id, replica, number, der, next_update) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (authority_id) DO UPDATE SET replica = excluded.replica, \
           number = excluded.number, der = excluded.der, next_update = excluded.next_update \
         WHERE crls.number < excluded.number",
        &[
            &crl.authority_id,
            &crl.replica,
            &to_sql_int("number", crl.number)?,
            &crl.der,
            &crl.next_update,
        ],
    )
    .await
    .map_err(|e| {
        if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) {
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
    tx.record(Change::CrlChanged(crl.authority_id.clone()), None);
    Ok(true)
}

/// Every stored CRL, ordered by authority id.
pub(super) async fn list(db: &impl GenericClient) -> StoreResult<Vec<StoredCrl>> {
    let rows = query(
        db,
        "SELECT authority_id, replica, number, der, next_update FROM crls \
         ORDER BY authority_id",
        &[],
    )
    .await?;
    rows.iter().map(read).collect()
}

/// A `crls` row, its number checked.
fn read(row: &Row) -> StoreResult<StoredCrl> {
    let authority_id: String = column(row, 0)?;
    let number: i64 = column(row, 2)?;
    Ok(StoredCrl {
        number: from_sql_int(KIND, &authority_id, "number", number)?,
        replica: column(row, 1)?,
        der: column(row, 3)?,
        next_update: column(row, 4)?,
        authority_id,
    })
}
