//! Brokered-credential leases and stored credential targets in SQLite. Every write is one
//! statement whose WHERE clause is the whole check (renewal within the lease's bounds, the
//! revocation claim's compare-and-swap, the target's revision), so concurrent callers never
//! undo each other; a failed write reads the row only to say why. Neither appends a change
//! event: leases and targets do not change what is served.

use rusqlite::{Connection, OptionalExtension, Row, ToSql, params};

use super::{backend, is_unique_violation};
use crate::{Lease, LeaseFilter, LeaseState, StoreError, StoreResult, StoredCredentialTarget};

const LEASE: &str = Lease::KIND;
const TARGET: &str = StoredCredentialTarget::KIND;
const LEASE_COLUMNS: &str = Lease::COLUMNS;
const TARGET_COLUMNS: &str = StoredCredentialTarget::COLUMNS;

/// Stores a validated lease; `AlreadyExists` when its id is taken.
pub(super) fn create(conn: &Connection, lease: &Lease) -> StoreResult<()> {
    conn.execute(
        &format!(
            "INSERT INTO credential_leases ({LEASE_COLUMNS}) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
        ),
        params![
            lease.id,
            lease.target,
            lease.role,
            lease.spiffe_id,
            lease.entry_id,
            lease.agent_id,
            lease.username,
            lease.created_at,
            lease.expires_at,
            lease.max_expires_at,
            lease.renewed_at,
            lease.state.as_str(),
            lease.claim_until,
            lease.revoked_at,
            lease.revoke_reason,
            lease.replica,
        ],
    )
    .map_err(|e| {
        if is_unique_violation(&e) {
            StoreError::AlreadyExists {
                kind: LEASE,
                detail: format!("id `{}`", lease.id),
            }
        } else {
            backend(e)
        }
    })?;
    Ok(())
}

/// The lease `id`, if any.
pub(super) fn get(conn: &Connection, id: &str) -> StoreResult<Option<Lease>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {LEASE_COLUMNS} FROM credential_leases WHERE id = ?1"
        ))
        .map_err(backend)?;
    stmt.query_row([id], lease_row)
        .optional()
        .map_err(backend)?
        .map(LeaseRow::into_lease)
        .transpose()
}

/// The leases matching every field `filter` sets, ordered by id, at most one page.
pub(super) fn list(conn: &Connection, filter: &LeaseFilter) -> StoreResult<Vec<Lease>> {
    let state = filter.state.map(LeaseState::as_str);
    let limit = i64::from(LeaseFilter::page_size(filter.limit));
    let bound: Vec<(&str, &str)> = [
        ("target = ", filter.target.as_deref()),
        ("role = ", filter.role.as_deref()),
        ("spiffe_id = ", filter.spiffe_id.as_deref()),
        ("entry_id = ", filter.entry_id.as_deref()),
        ("agent_id = ", filter.agent_id.as_deref()),
        ("state = ", state),
        ("id > ", filter.after.as_deref()),
    ]
    .into_iter()
    .filter_map(|(condition, value)| value.map(|value| (condition, value)))
    .collect();
    let mut values: Vec<&dyn ToSql> = Vec::with_capacity(bound.len() + 1);
    let mut conditions: Vec<String> = Vec::with_capacity(bound.len());
    for (condition, value) in &bound {
        values.push(value);
        conditions.push(format!("{condition}?{}", values.len()));
    }
    values.push(&limit);
    let limit_param = values.len();
    let filter_sql = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {LEASE_COLUMNS} FROM credential_leases{filter_sql} \
             ORDER BY id LIMIT ?{limit_param}"
        ))
        .map_err(backend)?;
    let rows = stmt
        .query_map(values.as_slice(), lease_row)
        .map_err(backend)?;
    rows.map(|row| row.map_err(backend).and_then(LeaseRow::into_lease))
        .collect()
}

/// Moves an active, unexpired lease's `expires_at` within its `max_expires_at`, in one
/// statement; when nothing matched, reads the lease to say why.
pub(super) fn renew(conn: &Connection, id: &str, expires_at: i64, now: i64) -> StoreResult<Lease> {
    let renewed = conn
        .prepare_cached(&format!(
            "UPDATE credential_leases SET expires_at = ?2, renewed_at = ?3 \
             WHERE id = ?1 AND state = 'active' AND expires_at > ?3 AND ?2 <= max_expires_at \
             RETURNING {LEASE_COLUMNS}"
        ))
        .map_err(backend)?
        .query_row(params![id, expires_at, now], lease_row)
        .optional()
        .map_err(backend)?;
    match renewed {
        Some(row) => row.into_lease(),
        None => Err(Lease::renewal_refusal(
            get(conn, id)?.as_ref(),
            id,
            expires_at,
            now,
        )),
    }
}

/// Claims the lease for revocation in one compare-and-swap; `None` when it is revoked or
/// another claim holds it, `NotFound` when there is no lease.
pub(super) fn claim(
    conn: &Connection,
    id: &str,
    reason: &str,
    now: i64,
    claim_until: i64,
) -> StoreResult<Option<Lease>> {
    let claimed = conn
        .prepare_cached(&format!(
            "UPDATE credential_leases SET state = 'revoking', claim_until = ?4, \
               revoke_reason = coalesce(revoke_reason, ?2) \
             WHERE id = ?1 AND (state = 'active' OR (state = 'revoking' AND claim_until < ?3)) \
             RETURNING {LEASE_COLUMNS}"
        ))
        .map_err(backend)?
        .query_row(params![id, reason, now, claim_until], lease_row)
        .optional()
        .map_err(backend)?;
    match claimed {
        Some(row) => row.into_lease().map(Some),
        None if exists(conn, id)? => Ok(None),
        None => Err(lease_not_found(id)),
    }
}

/// Marks a revoking lease revoked at `now`; a revoked one is left alone. `NotFound` for no
/// lease, `Invalid` (field `state`) for an active one (it was never claimed).
pub(super) fn finish(conn: &Connection, id: &str, now: i64) -> StoreResult<()> {
    let finished = conn
        .prepare_cached(
            "UPDATE credential_leases SET state = 'revoked', revoked_at = ?2, claim_until = NULL \
             WHERE id = ?1 AND state = 'revoking'",
        )
        .map_err(backend)?
        .execute(params![id, now])
        .map_err(backend)?;
    if finished > 0 {
        return Ok(());
    }
    match get(conn, id)? {
        None => Err(lease_not_found(id)),
        Some(lease) => lease.finish_refusal(),
    }
}

/// Leases due at `now`, soonest first, at most one page.
pub(super) fn due(conn: &Connection, now: i64, limit: u32) -> StoreResult<Vec<Lease>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {LEASE_COLUMNS} FROM ( \
               SELECT {LEASE_COLUMNS}, expires_at AS due_at FROM credential_leases \
                 WHERE state = 'active' AND expires_at <= ?1 \
               UNION ALL \
               SELECT {LEASE_COLUMNS}, claim_until AS due_at FROM credential_leases \
                 WHERE state = 'revoking' AND claim_until < ?1) \
             ORDER BY due_at, id LIMIT ?2"
        ))
        .map_err(backend)?;
    let rows = stmt
        .query_map(
            params![now, i64::from(LeaseFilter::page_size(limit))],
            lease_row,
        )
        .map_err(backend)?;
    rows.map(|row| row.map_err(backend).and_then(LeaseRow::into_lease))
        .collect()
}

/// The least `expires_at` of active leases and `claim_until` of revoking ones.
pub(super) fn next_due(conn: &Connection) -> StoreResult<Option<i64>> {
    conn.query_row(
        "SELECT min(due_at) FROM ( \
           SELECT min(expires_at) AS due_at FROM credential_leases WHERE state = 'active' \
           UNION ALL \
           SELECT min(claim_until) FROM credential_leases WHERE state = 'revoking')",
        [],
        |row| row.get(0),
    )
    .map_err(backend)
}

/// Deletes leases revoked before `before`; returns how many.
pub(super) fn prune(conn: &Connection, before: i64) -> StoreResult<u64> {
    let deleted = conn
        .execute(
            "DELETE FROM credential_leases WHERE state = 'revoked' AND revoked_at < ?1",
            [before],
        )
        .map_err(backend)?;
    Ok(u64::try_from(deleted).unwrap_or(u64::MAX))
}

/// Stores a validated target at revision 1; `AlreadyExists` when the name is taken.
pub(super) fn create_target(
    conn: &Connection,
    name: &str,
    owner: &str,
    spec: &str,
    now: i64,
) -> StoreResult<StoredCredentialTarget> {
    conn.execute(
        &format!(
            "INSERT INTO credential_targets ({TARGET_COLUMNS}) VALUES (?1, ?2, ?3, 1, ?4, ?4)"
        ),
        params![name, owner, spec, now],
    )
    .map_err(|e| {
        if is_unique_violation(&e) {
            StoreError::AlreadyExists {
                kind: TARGET,
                detail: format!("name `{name}`"),
            }
        } else {
            backend(e)
        }
    })?;
    Ok(StoredCredentialTarget {
        name: name.to_owned(),
        owner: owner.to_owned(),
        spec: spec.to_owned(),
        revision: 1,
        created_at: now,
        updated_at: now,
    })
}

/// The stored target `name`, if any.
pub(super) fn get_target(
    conn: &Connection,
    name: &str,
) -> StoreResult<Option<StoredCredentialTarget>> {
    conn.prepare_cached(&format!(
        "SELECT {TARGET_COLUMNS} FROM credential_targets WHERE name = ?1"
    ))
    .map_err(backend)?
    .query_row([name], target_row)
    .optional()
    .map_err(backend)
}

/// Every stored target, by name.
pub(super) fn list_targets(conn: &Connection) -> StoreResult<Vec<StoredCredentialTarget>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {TARGET_COLUMNS} FROM credential_targets ORDER BY name"
        ))
        .map_err(backend)?;
    let rows = stmt.query_map([], target_row).map_err(backend)?;
    rows.collect::<Result<_, _>>().map_err(backend)
}

/// Replaces owner and spec when the revision is `expected_revision`, in one statement; when
/// nothing matched, reads the revision to tell `NotFound` from `RevisionConflict`.
pub(super) fn update_target(
    conn: &Connection,
    name: &str,
    owner: &str,
    spec: &str,
    expected_revision: i64,
    now: i64,
) -> StoreResult<StoredCredentialTarget> {
    let updated = conn
        .prepare_cached(&format!(
            "UPDATE credential_targets \
             SET owner = ?2, spec = ?3, revision = revision + 1, updated_at = ?5 \
             WHERE name = ?1 AND revision = ?4 RETURNING {TARGET_COLUMNS}"
        ))
        .map_err(backend)?
        .query_row(
            params![name, owner, spec, expected_revision, now],
            target_row,
        )
        .optional()
        .map_err(backend)?;
    if let Some(target) = updated {
        return Ok(target);
    }
    let found: Option<i64> = conn
        .query_row(
            "SELECT revision FROM credential_targets WHERE name = ?1",
            [name],
            |row| row.get(0),
        )
        .optional()
        .map_err(backend)?;
    Err(match found {
        None => target_not_found(name),
        Some(found) => StoreError::RevisionConflict {
            kind: TARGET,
            id: name.to_owned(),
            expected: expected_revision,
            found,
        },
    })
}

/// Deletes the stored target `name` and returns it; `NotFound` if there is none.
pub(super) fn delete_target(conn: &Connection, name: &str) -> StoreResult<StoredCredentialTarget> {
    conn.prepare_cached(&format!(
        "DELETE FROM credential_targets WHERE name = ?1 RETURNING {TARGET_COLUMNS}"
    ))
    .map_err(backend)?
    .query_row([name], target_row)
    .optional()
    .map_err(backend)?
    .ok_or_else(|| target_not_found(name))
}

fn exists(conn: &Connection, id: &str) -> StoreResult<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM credential_leases WHERE id = ?1)",
        [id],
        |row| row.get(0),
    )
    .map_err(backend)
}

fn lease_not_found(id: &str) -> StoreError {
    StoreError::NotFound {
        kind: LEASE,
        id: id.to_owned(),
    }
}

fn target_not_found(name: &str) -> StoreError {
    StoreError::NotFound {
        kind: TARGET,
        id: name.to_owned(),
    }
}

/// A `credential_leases` row before its state is parsed.
struct LeaseRow {
    lease: Lease,
    state: String,
}

impl LeaseRow {
    fn into_lease(self) -> StoreResult<Lease> {
        let state = LeaseState::from_stored(&self.lease.id, &self.state)?;
        Ok(Lease {
            state,
            ..self.lease
        })
    }
}

/// Reads the columns of [`Lease::COLUMNS`], in order.
fn lease_row(row: &Row<'_>) -> rusqlite::Result<LeaseRow> {
    Ok(LeaseRow {
        lease: Lease {
            id: row.get(0)?,
            target: row.get(1)?,
            role: row.get(2)?,
            spiffe_id: row.get(3)?,
            entry_id: row.get(4)?,
            agent_id: row.get(5)?,
            username: row.get(6)?,
            created_at: row.get(7)?,
            expires_at: row.get(8)?,
            max_expires_at: row.get(9)?,
            renewed_at: row.get(10)?,
            // Replaced by the parsed column 11 in `into_lease`.
            state: LeaseState::Active,
            claim_until: row.get(12)?,
            revoked_at: row.get(13)?,
            revoke_reason: row.get(14)?,
            replica: row.get(15)?,
        },
        state: row.get(11)?,
    })
}

/// Reads the columns of [`StoredCredentialTarget::COLUMNS`], in order.
fn target_row(row: &Row<'_>) -> rusqlite::Result<StoredCredentialTarget> {
    Ok(StoredCredentialTarget {
        name: row.get(0)?,
        owner: row.get(1)?,
        spec: row.get(2)?,
        revision: row.get(3)?,
        created_at: row.get(4)?,
        updated_at: row.get(5)?,
    })
}
