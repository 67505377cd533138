//! Federation relationships in SQLite, one row per foreign trust domain. Updates write only the
//! columns they name; deleting a relationship also deletes the foreign trust domain's bundle.

use rusqlite::{Connection, OptionalExtension, Row, ToSql, params};
use sigil_spiffe::TrustDomain;

use super::{backend, bundles, change_feed, is_check_violation, is_unique_violation};
use crate::model::profile_rule_violation;
use crate::rows::{FEDERATION_COLUMNS, FEDERATION_KIND, FEDERATION_PROFILE_CHECK, FederationRow};
use crate::{
    Change, FederationRelationship, FederationUpdate, NewFederationRelationship, StoreError,
    StoreResult,
};

const KIND: &str = FEDERATION_KIND;

/// Stores `new` (already validated) created at `now`; `AlreadyExists` if its trust domain has
/// a relationship.
pub(super) fn create(
    conn: &Connection,
    new: NewFederationRelationship,
    now: i64,
) -> StoreResult<FederationRelationship> {
    conn.execute(
        &format!("INSERT INTO federation_relationships ({FEDERATION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)"),
        params![
            new.trust_domain.as_str(),
            new.bundle_endpoint_url,
            new.profile.as_str(),
            new.endpoint_spiffe_id.as_ref().map(|id| id.as_str()),
            now,
            new.owner,
        ],
    )
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
    change_feed::append(
        conn,
        &Change::FederationChanged(new.trust_domain.to_string()),
        Some(now),
    )?;
    Ok(FederationRelationship::created(new, now))
}

/// The relationship with `trust_domain` (a name or `spiffe://` trust domain ID), if any.
pub(super) fn get(
    conn: &Connection,
    trust_domain: &str,
) -> StoreResult<Option<FederationRelationship>> {
    // A string that is not a trust domain cannot name a stored relationship.
    let Ok(trust_domain) = TrustDomain::parse(trust_domain) else {
        return Ok(None);
    };
    get_parsed(conn, &trust_domain)
}

/// Every relationship, ordered by trust domain.
pub(super) fn list(conn: &Connection) -> StoreResult<Vec<FederationRelationship>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {FEDERATION_COLUMNS} FROM federation_relationships ORDER BY trust_domain"
        ))
        .map_err(backend)?;
    let rows = stmt.query_map([], federation_row).map_err(backend)?;
    rows.map(|row| {
        row.map_err(backend)
            .and_then(FederationRow::into_relationship)
    })
    .collect()
}

/// Writes the fields `update` (already validated) sets and `updated_at`, in one UPDATE of only
/// those columns, and returns the row as it is then. The table's CHECK refuses a row whose
/// endpoint SPIFFE ID no longer fits its profile: that is `Invalid`, and nothing changes.
pub(super) fn update(
    conn: &Connection,
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
        return get_parsed(conn, &parsed)?.ok_or_else(not_found);
    }

    let key = parsed.as_str();
    let profile = update.profile.map(|profile| profile.as_str());
    let endpoint_spiffe_id = update
        .endpoint_spiffe_id
        .as_ref()
        .map(|id| id.as_ref().map(|id| id.as_str()));
    // ?1 and ?2 are the key and the time; each column set gets the next number.
    let mut values: Vec<&dyn ToSql> = vec![&key, &now];
    let mut assignments = vec!["updated_at = ?2".to_owned()];
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
        "UPDATE federation_relationships SET {} WHERE trust_domain = ?1 \
         RETURNING {FEDERATION_COLUMNS}",
        assignments.join(", ")
    );
    let row = conn
        .prepare_cached(&sql)
        .and_then(|mut stmt| stmt.query_row(values.as_slice(), federation_row).optional())
        .map_err(write_error)?
        .ok_or_else(not_found)?;
    let relationship = row.into_relationship()?;
    change_feed::append(conn, &Change::FederationChanged(key.to_owned()), Some(now))?;
    Ok(relationship)
}

/// Deletes the relationship with `trust_domain` and the trust domain's bundle, if any, with
/// their events; `NotFound` (and nothing deleted) if there is no relationship.
pub(super) fn delete(conn: &Connection, trust_domain: &str) -> StoreResult<()> {
    let not_found = || StoreError::NotFound {
        kind: KIND,
        id: trust_domain.to_owned(),
    };
    let parsed = TrustDomain::parse(trust_domain).map_err(|_| not_found())?;
    let deleted = conn
        .execute(
            "DELETE FROM federation_relationships WHERE trust_domain = ?1",
            [parsed.as_str()],
        )
        .map_err(backend)?;
    if deleted == 0 {
        return Err(not_found());
    }
    change_feed::append(conn, &Change::FederationDeleted(parsed.to_string()), None)?;
    bundles::delete_if_present(conn, &parsed)?;
    Ok(())
}

fn get_parsed(
    conn: &Connection,
    trust_domain: &TrustDomain,
) -> StoreResult<Option<FederationRelationship>> {
    conn.prepare_cached(&format!(
        "SELECT {FEDERATION_COLUMNS} FROM federation_relationships WHERE trust_domain = ?1"
    ))
    .and_then(|mut stmt| {
        stmt.query_row([trust_domain.as_str()], federation_row)
            .optional()
    })
    .map_err(backend)?
    .map(FederationRow::into_relationship)
    .transpose()
}

/// Adds `column = ?n` to `assignments`, `value` being parameter `n`.
fn assign<'a>(
    values: &mut Vec<&'a dyn ToSql>,
    assignments: &mut Vec<String>,
    column: &str,
    value: &'a dyn ToSql,
) {
    values.push(value);
    assignments.push(format!("{column} = ?{}", values.len()));
}

/// A failed insert or update: the profile rule's CHECK is the caller's mistake, anything else
/// the backend's.
fn write_error(e: rusqlite::Error) -> StoreError {
    if is_check_violation(&e, FEDERATION_PROFILE_CHECK) {
        profile_rule_violation()
    } else {
        backend(e)
    }
}

/// Reads the columns of `FEDERATION_COLUMNS`, in order.
fn federation_row(row: &Row<'_>) -> rusqlite::Result<FederationRow> {
    Ok(FederationRow {
        trust_domain: row.get(0)?,
        bundle_endpoint_url: row.get(1)?,
        profile: row.get(2)?,
        endpoint_spiffe_id: row.get(3)?,
        created_at: row.get(4)?,
        updated_at: row.get(5)?,
        owner: row.get(6)?,
    })
}
