//! Join tokens in PostgreSQL: stored by hash, consumed at most once.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::{WriteTx, backend, column, execute, is_unique_violation, query, query_opt};
use crate::{Change, JoinToken, StoreError, StoreResult};

const KIND: &str = "join token";

const COLUMNS: &str = "id, token_hash, expires_at, used_at, created_at";

/// Stores a checked token; `AlreadyExists` when its id or hash is taken.
pub(super) async fn create(tx: &mut WriteTx<'_>, token: &JoinToken) -> StoreResult<()> {
    execute(
        tx.db(),
        &format!("INSERT INTO join_tokens ({COLUMNS}) VALUES ($1, $2, $3, $4, $5)"),
        &[
            &token.id,
            &token.token_hash,
            &token.expires_at,
            &token.used_at,
            &token.created_at,
        ],
    )
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            StoreError::AlreadyExists {
                kind: KIND,
                detail: format!("id `{}` or its secret is already registered", token.id),
            }
        } else {
            backend(e)
        }
    })?;
    tx.record(Change::JoinTokenChanged(token.id.clone()), None);
    Ok(())
}

/// Marks the token used. The row is locked (`FOR UPDATE`) from the check to the commit, so of
/// two concurrent consumers the second waits, then sees it used.
pub(super) async fn consume(
    tx: &mut WriteTx<'_>,
    token_hash: &str,
    now: i64,
) -> StoreResult<JoinToken> {
    let row = query_opt(
        tx.db(),
        &format!("SELECT {COLUMNS} FROM join_tokens WHERE token_hash = $1 FOR UPDATE"),
        &[&token_hash],
    )
    .await?
    .ok_or_else(|| StoreError::NotFound {
        kind: KIND,
        // The hash, never the secret: the caller may log this.
        id: token_hash.to_owned(),
    })?;
    let mut token = read(&row)?;
    if token.used_at.is_some() {
        return Err(StoreError::JoinTokenUsed);
    }
    if token.expires_at <= now {
        return Err(StoreError::JoinTokenExpired);
    }
    execute(
        tx.db(),
        "UPDATE join_tokens SET used_at = $2 WHERE id = $1",
        &[&token.id, &now],
    )
    .await
    .map_err(backend)?;
    tx.record(Change::JoinTokenChanged(token.id.clone()), Some(now));
    token.used_at = Some(now);
    Ok(token)
}

/// The token with `token_hash`, if any.
pub(super) async fn get(
    db: &impl GenericClient,
    token_hash: &str,
) -> StoreResult<Option<JoinToken>> {
    query_opt(
        db,
        &format!("SELECT {COLUMNS} FROM join_tokens WHERE token_hash = $1"),
        &[&token_hash],
    )
    .await?
    .map(|row| read(&row))
    .transpose()
}

/// Deletes tokens with `expires_at < before`, one change event each; returns how many.
pub(super) async fn prune(tx: &mut WriteTx<'_>, before: i64) -> StoreResult<u64> {
    let rows = query(
        tx.db(),
        "DELETE FROM join_tokens WHERE expires_at < $1 RETURNING id",
        &[&before],
    )
    .await?;
    let mut ids = rows
        .iter()
        .map(|row| column::<String>(row, 0))
        .collect::<StoreResult<Vec<_>>>()?;
    // RETURNING order is unspecified; sort so the feed is deterministic.
    ids.sort();
    let pruned = u64::try_from(ids.len()).unwrap_or(u64::MAX);
    for id in ids {
        tx.record(Change::JoinTokenChanged(id), None);
    }
    Ok(pruned)
}

/// Every token, used or not, ordered by creation time then id.
pub(super) async fn list(db: &impl GenericClient) -> StoreResult<Vec<JoinToken>> {
    let rows = query(
        db,
        &format!("SELECT {COLUMNS} FROM join_tokens ORDER BY created_at, id"),
        &[],
    )
    .await?;
    rows.iter().map(read).collect()
}

/// Reads the columns of [`COLUMNS`], in order.
fn read(row: &Row) -> StoreResult<JoinToken> {
    Ok(JoinToken {
        id: column(row, 0)?,
        token_hash: column(row, 1)?,
        expires_at: column(row, 2)?,
        used_at: column(row, 3)?,
        created_at: column(row, 4)?,
    })
}
