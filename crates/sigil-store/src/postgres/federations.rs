//! Federation relationships in PostgreSQL, one row per foreign trust domain. Updates write only
//! the columns they name; deleting a relationship also deletes the foreign trust domain's bundle.

use deadpool_postgres::GenericClient;
use sigil_spiffe::TrustDomain;
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use super::{WriteTx, backend, bundles, column, execute, is_unique_violation, query, query_opt};
use crate::model::profile_rule_violation;
use crate::rows::{FEDERATION_COLUMNS, FEDERATION_KIND, FEDERATION_PROFILE_CHECK, FederationRow};
use crate::{
    Change, FederationRelationship, FederationUpdate, NewFederationRelationship, StoreError,
    StoreResult,
};

const KIND: &str = FEDERATION_KIND;

/// Stores `new` (already validated) created at `now`; `AlreadyExists` if its trust domain has
/// a relationship.
pub(super) async fn create(
    tx: &mut WriteTx<'_>,
    new: NewFederationRelationship,
    now: i64,
) -> StoreResult<FederationRelationship> {
    execute(
        tx.db(),
        &format!(
            "INSERT INTO federation_relationships ({FEDERATION_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $5, $6)"
        ),
        &[
            &new.trust_domain.as_str(),
            &new.bundle_endpoint_url,
            &new.profile.as_str(),
            &new.endpoint_spiffe_id.as_ref().map(|id| id.as_str()),
            &now,
            &new.owner,
        ],
    )
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            StoreError::AlreadyExists {
                kind: KIND,
                detail: format!("trust domain `{}`", new.trust_domain),
            }
        } else {
            write_error(e)
        }
    })?;
    tx.record(
        Change::FederationChanged(new.trust_domain.to_string()),
        Some(now),
    );
    Ok(FederationRelationship::created(new, now))
}

/// The relationship with `trust_domain` (a name or `spiffe://` trust domain ID), if any.
pub(super) async fn get(
    db: &impl GenericClient,
    trust_domain: &str,
) -> StoreResult<Option<FederationRelationship>> {
    // A string that is not a trust domain cannot name a stored relationship.
    let Ok(trust_domain) = TrustDomain::parse(trust_domain) else {
        return Ok(None);
    };
    get_parsed(db, &trust_domain).await
}

/// Every relationship, ordered by trust domain (collation "C": bytewise).
pub(super) async fn list(db: &impl GenericClient) -> StoreResult<Vec<FederationRelationship>> {
    let rows = query(
        db,
        &format!("SELECT {FEDERATION_COLUMNS} FROM federation_relationships ORDER BY trust_domain"),
        &[],
    )
    .await?;
    rows.iter()
        .map(|row| federation_row(row)?.into_relationship())
        .collect()
}

/// Writes the fields `update` (already validated) sets and `updated_at`, in one UPDATE of only
/// those columns, and returns the row as it is then. A concurrent update of the same row waits
/// for the row lock and then applies its columns to the committed row, so neither loses the
/// other's columns; the table's CHECK is evaluated on the row that results, and its refusal is
/// `Invalid`, with nothing changed.
pub(super) async fn update(
    tx: &mut WriteTx<'_>,
    trust_domain: &str,
    update: &FederationUpdate,
    now: i64,
) -> StoreResult<FederationRelationship> {
    let not_found = || StoreError::NotFound {
        kind: KIND,
        id: trust_domain.to_owned(),
    };
    let parsed = TrustDomain::parse(trust_domain).map_err(|_| not_found())?;
    if update.is_empty() {
        return get_parsed(tx.db(), &parsed).await?.ok_or_else(not_found);
    }

    let key = parsed.as_str();
    let profile = update.profile.map(|profile| profile.as_str());
    let endpoint_spiffe_id = update
        .endpoint_spiffe_id
        .as_ref()
        .map(|id| id.as_ref().map(|id| id.as_str()));
    // $1 and $2 are the key and the time; each column set gets the next number.
    let mut values: Vec<&(dyn ToSql + Sync)> = vec![&key, &now];
    let mut assignments = vec!["updated_at = $2".to_owned()];
    if let Some(url) = &update.bundle_endpoint_url {
        assign(&mut values, &mut assignments, "bundle_endpoint_url", url);
    }
    if let Some(profile) = &profile {
        assign(&mut values, &mut assignments, "profile", profile);
    }
    if let Some(endpoint_spiffe_id) = &endpoint_spiffe_id {
        assign(
            &mut values,
            &mut assignments,
            "endpoint_spiffe_id",
            endpoint_spiffe_id,
        );
    }
    if let Some(owner) = &update.owner {
        assign(&mut values, &mut assignments, "owner", owner);
    }
    let sql = format!(
        "UPDATE federation_relationships SET {} WHERE trust_domain = $1 \
         RETURNING {FEDERATION_COLUMNS}",
        assignments.join(", ")
    );
    let statement = tx.db().prepare_cached(&sql).await.map_err(backend)?;
    let row = tx
        .db()
        .query_opt(&statement, &values)
        .await
        .map_err(write_error)?
        .ok_or_else(not_found)?;
    let relationship = federation_row(&row)?.into_relationship()?;
    tx.record(Change::FederationChanged(key.to_owned()), Some(now));
    Ok(relationship)
}

/// Deletes the relationship with `trust_domain` and the trust domain's bundle, if any, queueing
/// their events; `NotFound` (and nothing deleted) if there is no relationship.
pub(super) async fn delete(tx: &mut WriteTx<'_>, trust_domain: &str) -> StoreResult<()> {
    let not_found = || StoreError::NotFound {
        kind: KIND,
        id: trust_domain.to_owned(),
    };
    let parsed = TrustDomain::parse(trust_domain).map_err(|_| not_found())?;
    let deleted = execute(
        tx.db(),
        "DELETE FROM federation_relationships WHERE trust_domain = $1",
        &[&parsed.as_str()],
    )
    .await
    .map_err(backend)?;
    if deleted == 0 {
        return Err(not_found());
    }
    tx.record(Change::FederationDeleted(parsed.to_string()), None);
    bundles::delete_if_present(tx, &parsed).await?;
    Ok(())
}

async fn get_parsed(
    db: &impl GenericClient,
    trust_domain: &TrustDomain,
) -> StoreResult<Option<FederationRelationship>> {
    query_opt(
        db,
        &format!(
            "SELECT {FEDERATION_COLUMNS} FROM federation_relationships WHERE trust_domain = $1"
        ),
        &[&trust_domain.as_str()],
    )
    .await?
    .map(|row| federation_row(&row)?.into_relationship())
    .transpose()
}

/// Adds `column = $n` to `assignments`, `value` being parameter `n`.
fn assign<'a>(
    values: &mut Vec<&'a (dyn ToSql + Sync)>,
    assignments: &mut Vec<String>,
    column: &str,
    value: &'a (dyn ToSql + Sync),
) {
    values.push(value);
    assignments.push(format!("{column} = ${}", values.len()));
}

/// A failed insert or update: the profile rule's CHECK is the caller's mistake, anything else
/// the backend's.
fn write_error(e: tokio_postgres::Error) -> StoreError {
    let is_profile_check = e.as_db_error().is_some_and(|db| {
        *db.code() == SqlState::CHECK_VIOLATION && db.constraint() == Some(FEDERATION_PROFILE_CHECK)
    });
    if is_profile_check {
        profile_rule_violation()
    } else {
        backend(e)
    }
}

/// Reads the columns of `FEDERATION_COLUMNS`, in order.
fn federation_row(row: &Row) -> StoreResult<FederationRow> {
    Ok(FederationRow {
        trust_domain: column(row, 0)?,
        bundle_endpoint_url: column(row, 1)?,
        profile: column(row, 2)?,
        endpoint_spiffe_id: column(row, 3)?,
        created_at: column(row, 4)?,
        updated_at: column(row, 5)?,
        owner: column(row, 6)?,
    })
}
