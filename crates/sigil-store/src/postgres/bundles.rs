//! Trust bundles in PostgreSQL, one row per trust domain (own and federated).

use deadpool_postgres::GenericClient;
use sigil_spiffe::TrustDomain;
use tokio_postgres::Row;

use super::{
    WriteTx, backend, column, corrupt, execute, from_sql_int, query, query_opt, to_sql_int,
};
use crate::{Change, StoreError, StoreResult, StoredBundle};

const KIND: &str = "bundle";

/// Inserts or replaces the bundle of `bundle.trust_domain` (already validated).
pub(super) async fn put(tx: &mut WriteTx<'_>, bundle: &StoredBundle) -> StoreResult<()> {
    execute(
        tx.db(),
        "INSERT INTO bundles (trust_domain, document, sequence, updated_at) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (trust_domain) DO UPDATE SET document = excluded.document, \
           sequence = excluded.sequence, updated_at = excluded.updated_at",
        &[
            &bundle.trust_domain.as_str(),
            &bundle.document,
            &to_sql_int("sequence", bundle.sequence)?,
            &bundle.updated_at,
        ],
    )
    .await
    .map_err(backend)?;
    tx.record(Change::BundleChanged(bundle.trust_domain.to_string()), None);
    Ok(())
}

/// Stores `bundle` (already validated) unless a bundle with the same or a higher sequence is
/// stored, in one conditional upsert: a concurrent writer of the same trust domain waits for
/// the row lock, then compares against the committed row. Returns whether it wrote, and queues
/// `BundleChanged` only then.
pub(super) async fn put_if_newer(tx: &mut WriteTx<'_>, bundle: &StoredBundle) -> StoreResult<bool> {
    let written = execute(
        tx.db(),
        "INSERT INTO bundles (trust_domain, document, sequence, updated_at) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (trust_domain) DO UPDATE SET document = excluded.document, \
           sequence = excluded.sequence, updated_at = excluded.updated_at \
         WHERE bundles.sequence < excluded.sequence",
        &[
            &bundle.trust_domain.as_str(),
            &bundle.document,
            &to_sql_int("sequence", bundle.sequence)?,
            &bundle.updated_at,
        ],
    )
    .await
    .map_err(backend)?;
    if written == 0 {
        return Ok(false);
    }
    tx.record(Change::BundleChanged(bundle.trust_domain.to_string()), None);
    Ok(true)
}

/// The bundle of `trust_domain` (a name or `spiffe://` trust domain ID), if any.
pub(super) async fn get(
    db: &impl GenericClient,
    trust_domain: &str,
) -> StoreResult<Option<StoredBundle>> {
    // A string that is not a trust domain cannot name a stored bundle.
    let Ok(trust_domain) = TrustDomain::parse(trust_domain) else {
        return Ok(None);
    };
    query_opt(
        db,
        "SELECT trust_domain, document, sequence, updated_at FROM bundles \
         WHERE trust_domain = $1",
        &[&trust_domain.as_str()],
    )
    .await?
    .map(|row| read(&row))
    .transpose()
}

/// Every bundle, ordered by trust domain.
pub(super) async fn list(db: &impl GenericClient) -> StoreResult<Vec<StoredBundle>> {
    let rows = query(
        db,
        "SELECT trust_domain, document, sequence, updated_at FROM bundles \
         ORDER BY trust_domain",
        &[],
    )
    .await?;
    rows.iter().map(read).collect()
}

/// Deletes the bundle of `trust_domain`; `NotFound` if there is none.
pub(super) async fn delete(tx: &mut WriteTx<'_>, trust_domain: &str) -> StoreResult<()> {
    let not_found = || StoreError::NotFound {
        kind: KIND,
        id: trust_domain.to_owned(),
    };
    let parsed = TrustDomain::parse(trust_domain).map_err(|_| not_found())?;
    if delete_if_present(tx, &parsed).await? {
        Ok(())
    } else {
        Err(not_found())
    }
}

/// Deletes the bundle of `trust_domain` if there is one, queueing `BundleDeleted` then;
/// returns whether there was one.
pub(super) async fn delete_if_present(
    tx: &mut WriteTx<'_>,
    trust_domain: &TrustDomain,
) -> StoreResult<bool> {
    let deleted = execute(
        tx.db(),
        "DELETE FROM bundles WHERE trust_domain = $1",
        &[&trust_domain.as_str()],
    )
    .await
    .map_err(backend)?;
    if deleted == 0 {
        return Ok(false);
    }
    tx.record(Change::BundleDeleted(trust_domain.to_string()), None);
    Ok(true)
}

/// A `bundles` row, its trust domain parsed again.
fn read(row: &Row) -> StoreResult<StoredBundle> {
    let id: String = column(row, 0)?;
    let trust_domain =
        TrustDomain::parse(&id).map_err(|e| corrupt(KIND, &id, format!("trust_domain: {e}")))?;
    let sequence: i64 = column(row, 2)?;
    Ok(StoredBundle {
        trust_domain,
        document: column(row, 1)?,
        sequence: from_sql_int(KIND, &id, "sequence", sequence)?,
        updated_at: column(row, 3)?,
    })
}
