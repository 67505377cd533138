//! Issued credentials and revocations in PostgreSQL: the inventory of what the server signed
//! (bookkeeping, no change events) and the deny-list made from it, both kept until the
//! credential they name expires.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::{WriteTx, backend, column, execute, is_unique_violation, query, query_opt};
use crate::rows::{
    CREDENTIAL_KIND, ISSUED_COLUMNS, ISSUED_KIND, IssuedRow, REVOCATION_COLUMNS, REVOCATION_KIND,
    RevocationRow,
};
use crate::{Change, CredentialKind, IssuedCredential, Revocation, StoreError, StoreResult};

/// Inserts every credential of a checked batch in one statement, so the batch is stored whole
/// or not at all; `AlreadyExists` when any `(kind, id)` is taken (also within the batch).
pub(super) async fn record_issued(
    db: &impl GenericClient,
    issued: &[IssuedCredential],
) -> StoreResult<()> {
    let kinds: Vec<&str> = issued.iter().map(|c| c.kind.as_str()).collect();
    let ids: Vec<&str> = issued.iter().map(|c| c.id.as_str()).collect();
    let spiffe_ids: Vec<&str> = issued.iter().map(|c| c.spiffe_id.as_str()).collect();
    let authorities: Vec<&str> = issued.iter().map(|c| c.authority_id.as_str()).collect();
    let issued_to: Vec<&str> = issued.iter().map(|c| c.issued_to.as_str()).collect();
    let issued_at: Vec<i64> = issued.iter().map(|c| c.issued_at).collect();
    let expires_at: Vec<i64> = issued.iter().map(|c| c.expires_at).collect();
    execute(
        db,
        &format!(
            "INSERT INTO issued_credentials ({ISSUED_COLUMNS}) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
               $6::bigint[], $7::bigint[])"
        ),
        &[
            &kinds,
            &ids,
            &spiffe_ids,
            &authorities,
            &issued_to,
            &issued_at,
            &expires_at,
        ],
    )
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            // PostgreSQL names the duplicate key, e.g. `Key (kind, id)=(x509_svid, 0a) ...`.
            let which = e
                .as_db_error()
                .and_then(|db| db.detail())
                .unwrap_or("a credential of the batch")
                .to_owned();
            StoreError::AlreadyExists {
                kind: ISSUED_KIND,
                detail: format!("{which} is already recorded"),
            }
        } else {
            backend(e)
        }
    })?;
    Ok(())
}

/// The issued credential `id` of `kind`, if recorded and not pruned.
pub(super) async fn get_issued(
    db: &impl GenericClient,
    kind: CredentialKind,
    id: &str,
) -> StoreResult<Option<IssuedCredential>> {
    query_opt(
        db,
        &format!("SELECT {ISSUED_COLUMNS} FROM issued_credentials WHERE kind = $1 AND id = $2"),
        &[&kind.as_str(), &id],
    )
    .await?
    .map(|row| issued_row(&row)?.into_credential())
    .transpose()
}

/// Revokes a recorded, unexpired, unrevoked credential; every check runs before anything is
/// written. Of two concurrent revocations, the second's insert waits for the first to commit
/// and then fails on the primary key, so it is `AlreadyExists`.
pub(super) async fn revoke(
    tx: &mut WriteTx<'_>,
    kind: CredentialKind,
    id: &str,
    reason: &str,
    now: i64,
) -> StoreResult<Revocation> {
    let key = Revocation::feed_key(kind, id);
    let issued = get_issued(tx.db(), kind, id)
        .await?
        .ok_or_else(|| StoreError::NotFound {
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
    execute(
        tx.db(),
        &format!(
            "INSERT INTO revocations ({REVOCATION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ),
        &[
            &revocation.kind.as_str(),
            &revocation.id,
            &revocation.spiffe_id.as_str(),
            &revocation.authority_id,
            &revocation.reason,
            &revocation.revoked_at,
            &revocation.expires_at,
        ],
    )
    .await
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
    tx.record(Change::RevocationAdded(key), Some(now));
    Ok(revocation)
}

/// The credentials recorded for `spiffe_id`, newest first (ties by kind and id), at most
/// `limit`.
pub(super) async fn list_issued_for(
    db: &impl GenericClient,
    spiffe_id: &str,
    limit: u32,
) -> StoreResult<Vec<IssuedCredential>> {
    let rows = query(
        db,
        &format!(
            "SELECT {ISSUED_COLUMNS} FROM issued_credentials WHERE spiffe_id = $1 \
             ORDER BY issued_at DESC, kind, id LIMIT $2"
        ),
        &[&spiffe_id, &i64::from(limit)],
    )
    .await?;
    rows.iter()
        .map(|row| issued_row(row)?.into_credential())
        .collect()
}

/// The revocation of credential `id` of `kind`, if any.
pub(super) async fn get_revocation(
    db: &impl GenericClient,
    kind: CredentialKind,
    id: &str,
) -> StoreResult<Option<Revocation>> {
    query_opt(
        db,
        &format!("SELECT {REVOCATION_COLUMNS} FROM revocations WHERE kind = $1 AND id = $2"),
        &[&kind.as_str(), &id],
    )
    .await?
    .map(|row| revocation_row(&row)?.into_revocation())
    .transpose()
}

/// Every revocation, ordered by `revoked_at`, kind name, id (bytewise: the columns use the "C"
/// collation).
pub(super) async fn list_revocations(db: &impl GenericClient) -> StoreResult<Vec<Revocation>> {
    let rows = query(
        db,
        &format!("SELECT {REVOCATION_COLUMNS} FROM revocations ORDER BY revoked_at, kind, id"),
        &[],
    )
    .await?;
    rows.iter()
        .map(|row| revocation_row(row)?.into_revocation())
        .collect()
}

/// Deletes issued credentials and revocations with `expires_at < before`, one
/// `RevocationDeleted` event per revocation; returns how many revocations were deleted.
pub(super) async fn prune_expired(tx: &mut WriteTx<'_>, before: i64) -> StoreResult<u64> {
    execute(
        tx.db(),
        "DELETE FROM issued_credentials WHERE expires_at < $1",
        &[&before],
    )
    .await
    .map_err(backend)?;
    let rows = query(
        tx.db(),
        "DELETE FROM revocations WHERE expires_at < $1 RETURNING kind, id",
        &[&before],
    )
    .await?;
    let mut removed = rows
        .iter()
        .map(|row| Ok((column::<String>(row, 0)?, column::<String>(row, 1)?)))
        .collect::<StoreResult<Vec<_>>>()?;
    // RETURNING order is unspecified; sort so the feed is deterministic.
    removed.sort();
    let pruned = u64::try_from(removed.len()).unwrap_or(u64::MAX);
    for (kind, id) in removed {
        // A row with an unknown kind (corrupt) is pruned all the same, so it cannot block
        // pruning forever; its event carries the stored name.
        let key = match CredentialKind::from_name(&kind) {
            Some(kind) => Revocation::feed_key(kind, &id),
            None => format!("{kind}:{id}"),
        };
        tx.record(Change::RevocationDeleted(key), None);
    }
    Ok(pruned)
}

/// Reads the columns of [`ISSUED_COLUMNS`], in order.
fn issued_row(row: &Row) -> StoreResult<IssuedRow> {
    Ok(IssuedRow {
        kind: column(row, 0)?,
        id: column(row, 1)?,
        spiffe_id: column(row, 2)?,
        authority_id: column(row, 3)?,
        issued_to: column(row, 4)?,
        issued_at: column(row, 5)?,
        expires_at: column(row, 6)?,
    })
}

/// Reads the columns of [`REVOCATION_COLUMNS`], in order.
fn revocation_row(row: &Row) -> StoreResult<RevocationRow> {
    Ok(RevocationRow {
        kind: column(row, 0)?,
        id: column(row, 1)?,
        spiffe_id: column(row, 2)?,
        authority_id: column(row, 3)?,
        reason: column(row, 4)?,
        revoked_at: column(row, 5)?,
        expires_at: column(row, 6)?,
    })
}
