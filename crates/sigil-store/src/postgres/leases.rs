//! Brokered-credential leases and stored credential targets on PostgreSQL. Every write is one
//! statement whose WHERE clause is the whole check (renewal within the lease's bounds, the
//! revocation claim's compare-and-swap, the target's revision): under read committed a
//! concurrent writer of the same row waits for its lock and then re-checks the WHERE clause on
//! the committed row, so of several replicas claiming one lease exactly one wins. A failed
//! write reads the row only to say why. Neither appends a change event: leases and targets do
//! not change what is served.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{backend, column, execute, is_unique_violation, query, query_opt};
use crate::{Lease, LeaseFilter, LeaseState, StoreError, StoreResult, StoredCredentialTarget};

const LEASE: &str = Lease::KIND;
const TARGET: &str = StoredCredentialTarget::KIND;
const LEASE_COLUMNS: &str = Lease::COLUMNS;
const TARGET_COLUMNS: &str = StoredCredentialTarget::COLUMNS;

/// Stores a validated lease; `AlreadyExists` when its id is taken.
pub(super) async fn create(db: &impl GenericClient, lease: &Lease) -> StoreResult<()> {
    execute(
        db,
        &format!(
            "INSERT INTO credential_leases ({LEASE_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
        ),
        &[
            &lease.id,
            &lease.target,
            &lease.role,
            &lease.spiffe_id,
            &lease.entry_id,
            &lease.agent_id,
            &lease.username,
            &lease.created_at,
            &lease.expires_at,
            &lease.max_expires_at,
            &lease.renewed_at,
            &lease.state.as_str(),
            &lease.claim_until,
            &lease.revoked_at,
            &lease.revoke_reason,
            &lease.replica,
        ],
    )
    .await
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
pub(super) async fn get(db: &impl GenericClient, id: &str) -> StoreResult<Option<Lease>> {
    query_opt(
        db,
        &format!("SELECT {LEASE_COLUMNS} FROM credential_leases WHERE id = $1"),
        &[&id],
    )
    .await?
    .map(|row| lease_row(&row))
    .transpose()
}

/// The leases matching every field `filter` sets, ordered by id (bytewise), at most one page.
pub(super) async fn list(db: &impl GenericClient, filter: &LeaseFilter) -> StoreResult<Vec<Lease>> {
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
    let mut values: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(bound.len() + 1);
    let mut conditions: Vec<String> = Vec::with_capacity(bound.len());
    for (condition, value) in &bound {
        values.push(value);
        conditions.push(format!("{condition}${}", values.len()));
    }
    values.push(&limit);
    let limit_param = values.len();
    let filter_sql = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    let rows = query(
        db,
        &format!(
            "SELECT {LEASE_COLUMNS} FROM credential_leases{filter_sql} \
             ORDER BY id LIMIT ${limit_param}"
        ),
        &values,
    )
    .await?;
    rows.iter().map(lease_row).collect()
}

/// Moves an active, unexpired lease's `expires_at` within its `max_expires_at`, in one
/// statement; when nothing matched, reads the lease to say why.
pub(super) async fn renew(
    db: &impl GenericClient,
    id: &str,
    expires_at: i64,
    now: i64,
) -> StoreResult<Lease> {
    let renewed = query_opt(
        db,
        &format!(
            "UPDATE credential_leases SET expires_at = $2, renewed_at = $3 \
             WHERE id = $1 AND state = 'active' AND expires_at > $3 AND $2 <= max_expires_at \
             RETURNING {LEASE_COLUMNS}"
        ),
        &[&id, &expires_at, &now],
    )
    .await?;
    match renewed {
        Some(row) => lease_row(&row),
        None => Err(Lease::renewal_refusal(
            get(db, id).await?.as_ref(),
            id,
            expires_at,
            now,
        )),
    }
}

/// Claims the lease for revocation in one compare-and-swap; `None` when it is revoked or
/// another claim holds it, `NotFound` when there is no lease.
pub(super) async fn claim(
    db: &impl GenericClient,
    id: &str,
    reason: &str,
    now: i64,
    claim_until: i64,
) -> StoreResult<Option<Lease>> {
    let claimed = query_opt(
        db,
        &format!(
            "UPDATE credential_leases SET state = 'revoking', claim_until = $4, \
               revoke_reason = coalesce(revoke_reason, $2) \
             WHERE id = $1 AND (state = 'active' OR (state = 'revoking' AND claim_until < $3)) \
             RETURNING {LEASE_COLUMNS}"
        ),
        &[&id, &reason, &now, &claim_until],
    )
    .await?;
    match claimed {
        Some(row) => lease_row(&row).map(Some),
        None if exists(db, id).await? => Ok(None),
        None => Err(lease_not_found(id)),
    }
}

/// Marks a revoking lease revoked at `now`; a revoked one is left alone. `NotFound` for no
/// lease, `Invalid` (field `state`) for an active one (it was never claimed).
pub(super) async fn finish(db: &impl GenericClient, id: &str, now: i64) -> StoreResult<()> {
    let finished = execute(
        db,
        "UPDATE credential_leases SET state = 'revoked', revoked_at = $2, claim_until = NULL \
         WHERE id = $1 AND state = 'revoking'",
        &[&id, &now],
    )
    .await
    .map_err(backend)?;
    if finished > 0 {
        return Ok(());
    }
    match get(db, id).await? {
        None => Err(lease_not_found(id)),
        Some(lease) => lease.finish_refusal(),
    }
}

/// Leases due at `now`, soonest first, at most one page.
pub(super) async fn due(db: &impl GenericClient, now: i64, limit: u32) -> StoreResult<Vec<Lease>> {
    let rows = query(
        db,
        &format!(
            "SELECT {LEASE_COLUMNS} FROM ( \
               SELECT {LEASE_COLUMNS}, expires_at AS due_at FROM credential_leases \
                 WHERE state = 'active' AND expires_at <= $1 \
               UNION ALL \
               SELECT {LEASE_COLUMNS}, claim_until AS due_at FROM credential_leases \
                 WHERE state = 'revoking' AND claim_until < $1) AS due \
             ORDER BY due_at, id LIMIT $2"
        ),
        &[&now, &i64::from(LeaseFilter::page_size(limit))],
    )
    .await?;
    rows.iter().map(lease_row).collect()
}

/// The least `expires_at` of active leases and `claim_until` of revoking ones.
pub(super) async fn next_due(db: &impl GenericClient) -> StoreResult<Option<i64>> {
    let rows = query(
        db,
        "SELECT least( \
           (SELECT min(expires_at) FROM credential_leases WHERE state = 'active'), \
           (SELECT min(claim_until) FROM credential_leases WHERE state = 'revoking'))",
        &[],
    )
    .await?;
    match rows.first() {
        Some(row) => column(row, 0),
        None => Ok(None),
    }
}

/// Deletes leases revoked before `before`; returns how many.
pub(super) async fn prune(db: &impl GenericClient, before: i64) -> StoreResult<u64> {
    execute(
        db,
        "DELETE FROM credential_leases WHERE state = 'revoked' AND revoked_at < $1",
        &[&before],
    )
    .await
    .map_err(backend)
}

/// Stores a validated target at revision 1; `AlreadyExists` when the name is taken.
pub(super) async fn create_target(
    db: &impl GenericClient,
    name: &str,
    owner: &str,
    spec: &str,
    now: i64,
) -> StoreResult<StoredCredentialTarget> {
    execute(
        db,
        &format!(
            "INSERT INTO credential_targets ({TARGET_COLUMNS}) VALUES ($1, $2, $3, 1, $4, $4)"
        ),
        &[&name, &owner, &spec, &now],
    )
    .await
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
pub(super) async fn get_target(
    db: &impl GenericClient,
    name: &str,
) -> StoreResult<Option<StoredCredentialTarget>> {
    query_opt(
        db,
        &format!("SELECT {TARGET_COLUMNS} FROM credential_targets WHERE name = $1"),
        &[&name],
    )
    .await?
    .map(|row| target_row(&row))
    .transpose()
}

/// Every stored target, by name (bytewise).
pub(super) async fn list_targets(
    db: &impl GenericClient,
) -> StoreResult<Vec<StoredCredentialTarget>> {
    let rows = query(
        db,
        &format!("SELECT {TARGET_COLUMNS} FROM credential_targets ORDER BY name"),
        &[],
    )
    .await?;
    rows.iter().map(target_row).collect()
}

/// Replaces owner and spec when the revision is `expected_revision`, in one statement; when
/// nothing matched, reads the revision to tell `NotFound` from `RevisionConflict`.
pub(super) async fn update_target(
    db: &impl GenericClient,
    name: &str,
    owner: &str,
    spec: &str,
    expected_revision: i64,
    now: i64,
) -> StoreResult<StoredCredentialTarget> {
    let updated = query_opt(
        db,
        &format!(
            "UPDATE credential_targets \
             SET owner = $2, spec = $3, revision = revision + 1, updated_at = $5 \
             WHERE name = $1 AND revision = $4 RETURNING {TARGET_COLUMNS}"
        ),
        &[&name, &owner, &spec, &expected_revision, &now],
    )
    .await?;
    if let Some(row) = updated {
        return target_row(&row);
    }
    let found = query_opt(
        db,
        "SELECT revision FROM credential_targets WHERE name = $1",
        &[&name],
    )
    .await?;
    Err(match found {
        None => target_not_found(name),
        Some(row) => StoreError::RevisionConflict {
            kind: TARGET,
            id: name.to_owned(),
            expected: expected_revision,
            found: column(&row, 0)?,
        },
    })
}

/// Deletes the stored target `name` and returns it; `NotFound` if there is none.
pub(super) async fn delete_target(
    db: &impl GenericClient,
    name: &str,
) -> StoreResult<StoredCredentialTarget> {
    let row = query_opt(
        db,
        &format!("DELETE FROM credential_targets WHERE name = $1 RETURNING {TARGET_COLUMNS}"),
        &[&name],
    )
    .await?
    .ok_or_else(|| target_not_found(name))?;
    target_row(&row)
}

async fn exists(db: &impl GenericClient, id: &str) -> StoreResult<bool> {
    let rows = query(
        db,
        "SELECT EXISTS (SELECT 1 FROM credential_leases WHERE id = $1)",
        &[&id],
    )
    .await?;
    match rows.first() {
        Some(row) => column(row, 0),
        None => Ok(false),
    }
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

/// Reads the columns of [`Lease::COLUMNS`], in order; `Corrupt` for an unknown state.
fn lease_row(row: &Row) -> StoreResult<Lease> {
    let id: String = column(row, 0)?;
    let state: String = column(row, 11)?;
    let state = LeaseState::from_stored(&id, &state)?;
    Ok(Lease {
        target: column(row, 1)?,
        role: column(row, 2)?,
        spiffe_id: column(row, 3)?,
        entry_id: column(row, 4)?,
        agent_id: column(row, 5)?,
        username: column(row, 6)?,
        created_at: column(row, 7)?,
        expires_at: column(row, 8)?,
        max_expires_at: column(row, 9)?,
        renewed_at: column(row, 10)?,
        state,
        claim_until: column(row, 12)?,
        revoked_at: column(row, 13)?,
        revoke_reason: column(row, 14)?,
        replica: column(row, 15)?,
        id,
    })
}

/// Reads the columns of [`StoredCredentialTarget::COLUMNS`], in order.
fn target_row(row: &Row) -> StoreResult<StoredCredentialTarget> {
    Ok(StoredCredentialTarget {
        name: column(row, 0)?,
        owner: column(row, 1)?,
        spec: column(row, 2)?,
        revision: column(row, 3)?,
        created_at: column(row, 4)?,
        updated_at: column(row, 5)?,
    })
}
