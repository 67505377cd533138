//! Issued credentials and revocations in SQLite: the inventory of what the server signed
//! (bookkeeping, no change events) and the deny-list made from it, both kept until the
//! credential they name expires.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{backend, change_feed, is_unique_violation};
use crate::rows::{
    CREDENTIAL_KIND, ISSUED_COLUMNS, ISSUED_KIND, IssuedRow, REVOCATION_COLUMNS, REVOCATION_KIND,
    RevocationRow,
};
use crate::{Change, CredentialKind, IssuedCredential, Revocation, StoreError, StoreResult};

/// Inserts every credential of a checked batch; `AlreadyExists` on the first `(kind, id)` that
/// is taken (also within the batch), after which the caller's transaction rolls the rest back.
pub(super) fn record_issued(conn: &Connection, issued: &[IssuedCredential]) -> StoreResult<()> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "INSERT INTO issued_credentials ({ISSUED_COLUMNS}) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
        ))
        .map_err(backend)?;
    for credential in issued {
        stmt.execute(params![
            credential.kind.as_str(),
            credential.id,
            credential.spiffe_id.as_str(),
            credential.authority_id,
            credential.issued_to.as_str(),
            credential.issued_at,
            credential.expires_at,
        ])
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::AlreadyExists {
                    kind: ISSUED_KIND,
                    detail: format!(
                        "`{}` is already recorded",
                        Revocation::feed_key(credential.kind, &credential.id)
                    ),
                }
            } else {
                backend(e)
            }
        })?;
    }
    Ok(())
}

/// The issued credential `id` of `kind`, if recorded and not pruned.
pub(super) fn get_issued(
    conn: &Connection,
    kind: CredentialKind,
    id: &str,
) -> StoreResult<Option<IssuedCredential>> {
    conn.query_row(
        &format!("SELECT {ISSUED_COLUMNS} FROM issued_credentials WHERE kind = ?1 AND id = ?2"),
        params![kind.as_str(), id],
        issued_row,
    )
    .optional()
    .map_err(backend)?
    .map(IssuedRow::into_credential)
    .transpose()
}

/// The credentials recorded for `spiffe_id`, newest first (ties by kind and id), at most
/// `limit`.
pub(super) fn list_issued_for(
    conn: &Connection,
    spiffe_id: &str,
    limit: u32,
) -> StoreResult<Vec<IssuedCredential>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {ISSUED_COLUMNS} FROM issued_credentials WHERE spiffe_id = ?1 \
             ORDER BY issued_at DESC, kind, id LIMIT ?2"
        ))
        .map_err(backend)?;
    let rows = stmt
        .query_map(params![spiffe_id, i64::from(limit)], issued_row)
        .map_err(backend)?;
    rows.map(|row| row.map_err(backend).and_then(IssuedRow::into_credential))
        .collect()
}

/// Revokes a recorded, unexpired, unrevoked credential inside the caller's (immediate)
/// transaction, so two concurrent revocations cannot both see it unrevoked; every check runs
/// before anything is written.
pub(super) fn revoke(
    conn: &Connection,
    kind: CredentialKind,
    id: &str,
    reason: &str,
    now: i64,
) -> StoreResult<Revocation> {
    let key = Revocation::feed_key(kind, id);
    let issued = get_issued(conn, kind, id)?.ok_or_else(|| StoreError::NotFound {
        kind: CREDENTIAL_KIND,
        id: key.clone(),
    })?;
    if issued.expires_at <= now {
        return Err(StoreError::CredentialExpired {
            kind,
            id: id.to_owned(),
            expired_at: issued.expires_at,
        });
    }
    Revocation::check_reason(reason)?;
    let revocation = Revocation {
        kind,
        id: issued.id,
        spiffe_id: issued.spiffe_id,
        authority_id: issued.authority_id,
        reason: reason.to_owned(),
        revoked_at: now,
        expires_at: issued.expires_at,
    };
    conn.execute(
        &format!(
            "INSERT INTO revocations ({REVOCATION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
        ),
        params![
            revocation.kind.as_str(),
            revocation.id,
            revocation.spiffe_id.as_str(),
            revocation.authority_id,
            revocation.reason,
            revocation.revoked_at,
            revocation.expires_at,
        ],
    )
    .map_err(|e| {
        if is_unique_violation(&e) {
            StoreError::AlreadyExists {
                kind: REVOCATION_KIND,
                detail: format!("`{key}` is already revoked"),
            }
        } else {
            backend(e)
        }
    })?;
    change_feed::append(conn, &Change::RevocationAdded(key), Some(now))?;
    Ok(revocation)
}

/// The revocation of credential `id` of `kind`, if any.
pub(super) fn get_revocation(
    conn: &Connection,
    kind: CredentialKind,
    id: &str,
) -> StoreResult<Option<Revocation>> {
    conn.query_row(
        &format!("SELECT {REVOCATION_COLUMNS} FROM revocations WHERE kind = ?1 AND id = ?2"),
        params![kind.as_str(), id],
        revocation_row,
    )
    .optional()
    .map_err(backend)?
    .map(RevocationRow::into_revocation)
    .transpose()
}

/// Every revocation, ordered by `revoked_at`, kind name, id (byte order, as SQLite's default
/// `BINARY` collation compares text).
pub(super) fn list_revocations(conn: &Connection) -> StoreResult<Vec<Revocation>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {REVOCATION_COLUMNS} FROM revocations ORDER BY revoked_at, kind, id"
        ))
        .map_err(backend)?;
    let rows = stmt.query_map([], revocation_row).map_err(backend)?;
    rows.map(|row| {
        row.map_err(backend)
            .and_then(RevocationRow::into_revocation)
    })
    .collect()
}

/// Deletes issued credentials and revocations with `expires_at < before`, one
/// `RevocationDeleted` event per revocation; returns how many revocations were deleted.
pub(super) fn prune_expired(conn: &Connection, before: i64) -> StoreResult<u64> {
    conn.execute(
        "DELETE FROM issued_credentials WHERE expires_at < ?1",
        [before],
    )
    .map_err(backend)?;
    let mut stmt = conn
        .prepare("DELETE FROM revocations WHERE expires_at < ?1 RETURNING kind, id")
        .map_err(backend)?;
    let mut removed = stmt
        .query_map([before], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })
        .map_err(backend)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(backend)?;
    // RETURNING order is unspecified; sort so the feed is deterministic.
    removed.sort();
    for (kind, id) in &removed {
        // A row with an unknown kind (corrupt) is pruned all the same, so it cannot block
        // pruning forever; its event carries the stored name.
        let key = match CredentialKind::from_name(kind) {
            Some(kind) => Revocation::feed_key(kind, id),
            None => format!("{kind}:{id}"),
        };
        change_feed::append(conn, &Change::RevocationDeleted(key), None)?;
    }
    Ok(u64::try_from(removed.len()).unwrap_or(u64::MAX))
}

/// Reads the columns of [`ISSUED_COLUMNS`], in order.
fn issued_row(row: &Row<'_>) -> rusqlite::Result<IssuedRow> {
    Ok(IssuedRow {
        kind: row.get(0)?,
        id: row.get(1)?,
        spiffe_id: row.get(2)?,
        authority_id: row.get(3)?,
        issued_to: row.get(4)?,
        issued_at: row.get(5)?,
        expires_at: row.get(6)?,
    })
}

/// Reads the columns of [`REVOCATION_COLUMNS`], in order.
fn revocation_row(row: &Row<'_>) -> rusqlite::Result<RevocationRow> {
    Ok(RevocationRow {
        kind: row.get(0)?,
        id: row.get(1)?,
        spiffe_id: row.get(2)?,
        authority_id: row.get(3)?,
        reason: row.get(4)?,
        revoked_at: row.get(5)?,
        expires_at: row.get(6)?,
    })
}
