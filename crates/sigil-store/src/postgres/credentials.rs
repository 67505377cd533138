//! Issued credentials and revocations in PostgreSQL: the inventory of what the server signed
//! (bookkeeping, no change events) and the deny-list made from it, both kept until the
//! credential they name expires.

use deadpool_postgres::GenericClient;
use sigil_spiffe::SpiffeId;
use tokio_postgres::Row;

use super::{WriteTx, backend, column, corrupt, execute, is_unique_violation, query, query_opt};
use crate::{Change, CredentialKind, IssuedCredential, Revocation, StoreError, StoreResult};

const ISSUED_KIND: &str = "issued credential";
const REVOCATION_KIND: &str = "revocation";
/// The kind `NotFound` names when there is no issued record to revoke.
const CREDENTIAL_KIND: &str = "credential";

const ISSUED_COLUMNS: &str = "kind, id, spiffe_id, authority_id, issued_to, issued_at, expires_at";
const REVOCATION_COLUMNS: &str =
    "kind, id, spiffe_id, authority_id, reason, revoked_at, expires_at";

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
    .map(|row| IssuedRow::read(&row)?.into_credential())
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
    .map(|row| RevocationRow::read(&row)?.into_revocation())
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
        .map(|row| RevocationRow::read(row)?.into_revocation())
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

/// An `issued_credentials` row as PostgreSQL returns it, before the kind and SPIFFE IDs are
/// parsed.
struct IssuedRow {
    kind: String,
    id: String,
    spiffe_id: String,
    authority_id: String,
    issued_to: String,
    issued_at: i64,
    expires_at: i64,
}

impl IssuedRow {
    /// Reads the columns of [`ISSUED_COLUMNS`], in order.
    fn read(row: &Row) -> StoreResult<Self> {
        Ok(Self {
            kind: column(row, 0)?,
            id: column(row, 1)?,
            spiffe_id: column(row, 2)?,
            authority_id: column(row, 3)?,
            issued_to: column(row, 4)?,
            issued_at: column(row, 5)?,
            expires_at: column(row, 6)?,
        })
    }

    fn into_credential(self) -> StoreResult<IssuedCredential> {
        let key = format!("{}:{}", self.kind, self.id);
        let kind = parse_kind(ISSUED_KIND, &key, &self.kind)?;
        let spiffe_id = parse_spiffe_id(ISSUED_KIND, &key, "spiffe_id", &self.spiffe_id)?;
        let issued_to = parse_spiffe_id(ISSUED_KIND, &key, "issued_to", &self.issued_to)?;
        Ok(IssuedCredential {
            kind,
            id: self.id,
            spiffe_id,
            authority_id: self.authority_id,
            issued_to,
            issued_at: self.issued_at,
            expires_at: self.expires_at,
        })
    }
}

/// A `revocations` row as PostgreSQL returns it, before the kind and SPIFFE ID are parsed.
struct RevocationRow {
    kind: String,
    id: String,
    spiffe_id: String,
    authority_id: String,
    reason: String,
    revoked_at: i64,
    expires_at: i64,
}

impl RevocationRow {
    /// Reads the columns of [`REVOCATION_COLUMNS`], in order.
    fn read(row: &Row) -> StoreResult<Self> {
        Ok(Self {
            kind: column(row, 0)?,
            id: column(row, 1)?,
            spiffe_id: column(row, 2)?,
            authority_id: column(row, 3)?,
            reason: column(row, 4)?,
            revoked_at: column(row, 5)?,
            expires_at: column(row, 6)?,
        })
    }

    fn into_revocation(self) -> StoreResult<Revocation> {
        let key = format!("{}:{}", self.kind, self.id);
        let kind = parse_kind(REVOCATION_KIND, &key, &self.kind)?;
        let spiffe_id = parse_spiffe_id(REVOCATION_KIND, &key, "spiffe_id", &self.spiffe_id)?;
        Ok(Revocation {
            kind,
            id: self.id,
            spiffe_id,
            authority_id: self.authority_id,
            reason: self.reason,
            revoked_at: self.revoked_at,
            expires_at: self.expires_at,
        })
    }
}

fn parse_kind(record: &'static str, key: &str, name: &str) -> StoreResult<CredentialKind> {
    CredentialKind::from_name(name)
        .ok_or_else(|| corrupt(record, key, format!("unknown kind `{name}`")))
}

fn parse_spiffe_id(
    record: &'static str,
    key: &str,
    field: &str,
    value: &str,
) -> StoreResult<SpiffeId> {
    SpiffeId::parse(value).map_err(|e| corrupt(record, key, format!("{field}: {e}")))
}
