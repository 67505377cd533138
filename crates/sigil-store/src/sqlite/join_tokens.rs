//! Join tokens in SQLite: stored by hash, consumed at most once.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{backend, change_feed, is_unique_violation};
use crate::{Change, JoinToken, StoreError, StoreResult};

const KIND: &str = "join token";

/// Stores a checked token; `AlreadyExists` when its id or hash is taken.
pub(super) fn create(conn: &Connection, token: &JoinToken) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO join_tokens (id, token_hash, expires_at, used_at, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            token.id,
            token.token_hash,
            token.expires_at,
            token.used_at,
            token.created_at
        ],
    )
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
    change_feed::append(conn, &Change::JoinTokenChanged(token.id.clone()), None)
}

/// Marks the token used, inside the caller's (immediate) transaction, so two concurrent
/// consumers cannot both see it unused.
pub(super) fn consume(conn: &Connection, token_hash: &str, now: i64) -> StoreResult<JoinToken> {
    let mut token = conn
        .query_row(
            "SELECT id, token_hash, expires_at, used_at, created_at \
             FROM join_tokens WHERE token_hash = ?1",
            [token_hash],
            read_row,
        )
        .optional()
        .map_err(backend)?
        .ok_or_else(|| StoreError::NotFound {
            kind: KIND,
            // The hash, never the secret: the caller may log this.
            id: token_hash.to_owned(),
        })?;
    if token.used_at.is_some() {
        return Err(StoreError::JoinTokenUsed);
    }
    if token.expires_at <= now {
        return Err(StoreError::JoinTokenExpired);
    }
    conn.execute(
        "UPDATE join_tokens SET used_at = ?2 WHERE id = ?1",
        params![token.id, now],
    )
    .map_err(backend)?;
    change_feed::append(conn, &Change::JoinTokenChanged(token.id.clone()), Some(now))?;
    token.used_at = Some(now);
    Ok(token)
}

/// The token with `token_hash`, if any.
pub(super) fn get(conn: &Connection, token_hash: &str) -> StoreResult<Option<JoinToken>> {
    conn.query_row(
        "SELECT id, token_hash, expires_at, used_at, created_at \
         FROM join_tokens WHERE token_hash = ?1",
        [token_hash],
        read_row,
    )
    .optional()
    .map_err(backend)
}

/// Deletes tokens with `expires_at < before`, one change event each; returns how many.
pub(super) fn prune(conn: &Connection, before: i64) -> StoreResult<u64> {
    let mut stmt = conn
        .prepare("DELETE FROM join_tokens WHERE expires_at < ?1 RETURNING id")
        .map_err(backend)?;
    let mut ids = stmt
        .query_map([before], |row| row.get::<_, String>(0))
        .map_err(backend)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(backend)?;
    // RETURNING order is unspecified; sort so the feed is deterministic.
    ids.sort();
    for id in &ids {
        change_feed::append(conn, &Change::JoinTokenChanged(id.clone()), None)?;
    }
    Ok(u64::try_from(ids.len()).unwrap_or(u64::MAX))
}

/// Every token, used or not, ordered by creation time then id.
pub(super) fn list(conn: &Connection) -> StoreResult<Vec<JoinToken>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, token_hash, expires_at, used_at, created_at \
             FROM join_tokens ORDER BY created_at, id",
        )
        .map_err(backend)?;
    let rows = stmt.query_map([], read_row).map_err(backend)?;
    rows.collect::<Result<_, _>>().map_err(backend)
}

fn read_row(row: &Row<'_>) -> rusqlite::Result<JoinToken> {
    Ok(JoinToken {
        id: row.get(0)?,
        token_hash: row.get(1)?,
        expires_at: row.get(2)?,
        used_at: row.get(3)?,
        created_at: row.get(4)?,
    })
}
