//! Trust bundles in SQLite, one row per trust domain (own and federated).

use rusqlite::{Connection, OptionalExtension, Row, params};
use sigil_spiffe::TrustDomain;

use super::{backend, change_feed, corrupt, from_sql_int, to_sql_int};
use crate::{Change, StoreError, StoreResult, StoredBundle};

const KIND: &str = "bundle";

/// Inserts or replaces the bundle of `bundle.trust_domain` (already validated).
pub(super) fn put(conn: &Connection, bundle: &StoredBundle) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO bundles (trust_domain, document, sequence, updated_at) \
         VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (trust_domain) DO UPDATE SET document = excluded.document, \
           sequence = excluded.sequence, updated_at = excluded.updated_at",
        params![
            bundle.trust_domain.as_str(),
            bundle.document,
            to_sql_int("sequence", bundle.sequence)?,
            bundle.updated_at,
        ],
    )
    .map_err(backend)?;
    change_feed::append(
        conn,
        &Change::BundleChanged(bundle.trust_domain.to_string()),
        None,
    )
}

/// Stores `bundle` (already validated) unless a bundle with the same or a higher sequence is
/// stored, in one conditional upsert; returns whether it wrote, and appends `BundleChanged` only
/// then.
pub(super) fn put_if_newer(conn: &Connection, bundle: &StoredBundle) -> StoreResult<bool> {
    let sequence = to_sql_int("sequence", bundle.sequence)?;
    let written = conn
        .prepare_cached(
            "INSERT INTO bundles (trust_domain, document, sequence, updated_at) \
             VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (trust_domain) DO UPDATE SET document = excluded.document, \
               sequence = excluded.sequence, updated_at = excluded.updated_at \
             WHERE bundles.sequence < excluded.sequence",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                bundle.trust_domain.as_str(),
                bundle.document,
                sequence,
                bundle.updated_at,
            ])
        })
        .map_err(backend)?;
    if written == 0 {
        return Ok(false);
    }
    change_feed::append(
        conn,
        &Change::BundleChanged(bundle.trust_domain.to_string()),
        None,
    )?;
    Ok(true)
}

/// The bundle of `trust_domain` (a name or `spiffe://` trust domain ID), if any.
pub(super) fn get(conn: &Connection, trust_domain: &str) -> StoreResult<Option<StoredBundle>> {
    // A string that is not a trust domain cannot name a stored bundle.
    let Ok(trust_domain) = TrustDomain::parse(trust_domain) else {
        return Ok(None);
    };
    conn.query_row(
        "SELECT trust_domain, document, sequence, updated_at FROM bundles \
         WHERE trust_domain = ?1",
        [trust_domain.as_str()],
        BundleRow::read,
    )
    .optional()
    .map_err(backend)?
    .map(BundleRow::into_bundle)
    .transpose()
}

/// Every bundle, ordered by trust domain.
pub(super) fn list(conn: &Connection) -> StoreResult<Vec<StoredBundle>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT trust_domain, document, sequence, updated_at FROM bundles \
             ORDER BY trust_domain",
        )
        .map_err(backend)?;
    let rows = stmt.query_map([], BundleRow::read).map_err(backend)?;
    rows.map(|row| row.map_err(backend).and_then(BundleRow::into_bundle))
        .collect()
}

/// Deletes the bundle of `trust_domain`; `NotFound` if there is none.
pub(super) fn delete(conn: &Connection, trust_domain: &str) -> StoreResult<()> {
    let not_found = || StoreError::NotFound {
        kind: KIND,
        id: trust_domain.to_owned(),
    };
    let parsed = TrustDomain::parse(trust_domain).map_err(|_| not_found())?;
    if delete_if_present(conn, &parsed)? {
        Ok(())
    } else {
        Err(not_found())
    }
}

/// Deletes the bundle of `trust_domain` if there is one, appending `BundleDeleted` then;
/// returns whether there was one.
pub(super) fn delete_if_present(
    conn: &Connection,
    trust_domain: &TrustDomain,
) -> StoreResult<bool> {
    let deleted = conn
        .execute(
            "DELETE FROM bundles WHERE trust_domain = ?1",
            [trust_domain.as_str()],
        )
        .map_err(backend)?;
    if deleted == 0 {
        return Ok(false);
    }
    change_feed::append(conn, &Change::BundleDeleted(trust_domain.to_string()), None)?;
    Ok(true)
}

/// A `bundles` row as SQLite returns it, before the trust domain is parsed again.
struct BundleRow {
    trust_domain: String,
    document: Vec<u8>,
    sequence: i64,
    updated_at: i64,
}

impl BundleRow {
    fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            trust_domain: row.get(0)?,
            document: row.get(1)?,
            sequence: row.get(2)?,
            updated_at: row.get(3)?,
        })
    }

    fn into_bundle(self) -> StoreResult<StoredBundle> {
        let id = &self.trust_domain;
        let trust_domain =
            TrustDomain::parse(id).map_err(|e| corrupt(KIND, id, format!("trust_domain: {e}")))?;
        Ok(StoredBundle {
            sequence: from_sql_int(KIND, id, "sequence", self.sequence)?,
            trust_domain,
            document: self.document,
            updated_at: self.updated_at,
        })
    }
}
