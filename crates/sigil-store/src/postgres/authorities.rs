//! Signing authority records in PostgreSQL (metadata and public parts only; never private
//! keys): created whole once, then only their state moves, by compare-and-swap.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::{WriteTx, backend, column, execute, is_unique_violation, query, query_opt};
use crate::rows::{AUTHORITY_KIND, AuthorityRow};
use crate::{AuthorityRecord, AuthorityState, Change, StoreError, StoreResult};

const KIND: &str = AUTHORITY_KIND;
const COLUMNS: &str = "id, kind, state, cert_der, public_key_der, key_id, issuer_id, not_before, \
                       not_after, created_at, replica";

/// Inserts a new record; `AlreadyExists` if `authority.id` is taken.
pub(super) async fn create(tx: &mut WriteTx<'_>, authority: &AuthorityRecord) -> StoreResult<()> {
    execute(
        tx.db(),
        &format!(
            "INSERT INTO authorities ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ),
        &[
            &authority.id,
            &authority.kind.as_str(),
            &authority.state.as_str(),
            &authority.cert_der,
            &authority.public_key_der,
            &authority.key_id,
            &authority.issuer_id,
            &authority.not_before,
            &authority.not_after,
            &authority.created_at,
            &authority.replica,
        ],
    )
    .await
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
    tx.record(Change::AuthorityChanged(authority.id.clone()), None);
    Ok(())
}

/// Moves `id` from `expected` to `new` in one conditional UPDATE: of two concurrent transitions
/// from the same state, the second waits for the first's row lock, then re-checks the state on
/// the committed row and matches nothing.
pub(super) async fn set_state(
    tx: &mut WriteTx<'_>,
    id: &str,
    expected: AuthorityState,
    new: AuthorityState,
) -> StoreResult<AuthorityRecord> {
    let updated = query_opt(
        tx.db(),
        &format!(
            "UPDATE authorities SET state = $3 WHERE id = $1 AND state = $2 RETURNING {COLUMNS}"
        ),
        &[&id, &expected.as_str(), &new.as_str()],
    )
    .await?;
    if let Some(row) = updated {
        let record = authority_row(&row)?.into_record()?;
        tx.record(Change::AuthorityChanged(id.to_owned()), None);
        return Ok(record);
    }
    let record = get(tx.db(), id).await?.ok_or_else(|| not_found(id))?;
    Err(StoreError::AuthorityStateConflict {
        id: id.to_owned(),
        expected,
        found: record.state,
    })
}

/// Deletes `id` and returns what it was.
pub(super) async fn delete(tx: &mut WriteTx<'_>, id: &str) -> StoreResult<AuthorityRecord> {
    let row = query_opt(
        tx.db(),
        &format!("DELETE FROM authorities WHERE id = $1 RETURNING {COLUMNS}"),
        &[&id],
    )
    .await?
    .ok_or_else(|| not_found(id))?;
    let record = authority_row(&row)?.into_record()?;
    tx.record(Change::AuthorityDeleted(id.to_owned()), None);
    Ok(record)
}

/// Every authority, ordered by creation time then id.
pub(super) async fn list(db: &impl GenericClient) -> StoreResult<Vec<AuthorityRecord>> {
    let rows = query(
        db,
        &format!("SELECT {COLUMNS} FROM authorities ORDER BY created_at, id"),
        &[],
    )
    .await?;
    rows.iter()
        .map(|row| authority_row(row)?.into_record())
        .collect()
}

async fn get(db: &impl GenericClient, id: &str) -> StoreResult<Option<AuthorityRecord>> {
    query_opt(
        db,
        &format!("SELECT {COLUMNS} FROM authorities WHERE id = $1"),
        &[&id],
    )
    .await?
    .map(|row| authority_row(&row)?.into_record())
    .transpose()
}

fn not_found(id: &str) -> StoreError {
    StoreError::NotFound {
        kind: KIND,
        id: id.to_owned(),
    }
}

/// Reads the columns of `COLUMNS`, in order.
fn authority_row(row: &Row) -> StoreResult<AuthorityRow> {
    Ok(AuthorityRow {
        id: column(row, 0)?,
        kind: column(row, 1)?,
        state: column(row, 2)?,
        cert_der: column(row, 3)?,
        public_key_der: column(row, 4)?,
        key_id: column(row, 5)?,
        issuer_id: column(row, 6)?,
        not_before: column(row, 7)?,
        not_after: column(row, 8)?,
        created_at: column(row, 9)?,
        replica: column(row, 10)?,
    })
}
