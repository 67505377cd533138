//! Attested agents in PostgreSQL, keyed by SPIFFE ID. Every write names only the columns it
//! means, in one statement, so concurrent writers cannot undo each other.

use deadpool_postgres::GenericClient;
use sigil_spiffe::{Selector, SpiffeId};
use tokio_postgres::Row;

use super::{WriteTx, backend, column, corrupt, execute, is_unique_violation, query, query_opt};
use crate::{AttestedAgent, Change, StoreError, StoreResult};

const KIND: &str = "agent";

const COLUMNS: &str = "spiffe_id, attestation_type, selectors, serial, new_serial, expires_at, \
    banned, can_reattest, created_at, last_seen";

/// Stores a new agent; `AlreadyExists` if its SPIFFE ID is taken.
pub(super) async fn create(tx: &mut WriteTx<'_>, agent: AttestedAgent) -> StoreResult<()> {
    let selectors = sorted_selectors(&agent.selectors);
    execute(
        tx.db(),
        &format!("INSERT INTO agents ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"),
        &[
            &agent.spiffe_id.as_str(),
            &agent.attestation_type,
            &selectors,
            &agent.serial,
            &agent.new_serial,
            &agent.expires_at,
            &agent.banned,
            &agent.can_reattest,
            &agent.created_at,
            &agent.last_seen,
        ],
    )
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            StoreError::AlreadyExists {
                kind: KIND,
                detail: format!("spiffe_id `{}` is already attested", agent.spiffe_id),
            }
        } else {
            backend(e)
        }
    })?;
    tx.record(Change::AgentChanged(agent.spiffe_id.to_string()), None);
    Ok(())
}

/// The agent with `spiffe_id`, if any.
pub(super) async fn get(
    db: &impl GenericClient,
    spiffe_id: &str,
) -> StoreResult<Option<AttestedAgent>> {
    query_opt(
        db,
        &format!("SELECT {COLUMNS} FROM agents WHERE spiffe_id = $1"),
        &[&spiffe_id],
    )
    .await?
    .map(|row| AgentRow::read(&row)?.into_agent())
    .transpose()
}

/// Every agent, ordered by SPIFFE ID.
pub(super) async fn list(db: &impl GenericClient) -> StoreResult<Vec<AttestedAgent>> {
    let rows = query(
        db,
        &format!("SELECT {COLUMNS} FROM agents ORDER BY spiffe_id"),
        &[],
    )
    .await?;
    rows.iter()
        .map(|row| AgentRow::read(row)?.into_agent())
        .collect()
}

/// At most `limit` agents with a SPIFFE ID greater than `after` (every one when `None`),
/// ordered by SPIFFE ID.
pub(super) async fn list_page(
    db: &impl GenericClient,
    after: Option<&str>,
    limit: u32,
) -> StoreResult<Vec<AttestedAgent>> {
    let limit = i64::from(limit);
    let rows =
        match after {
            Some(after) => query(
                db,
                &format!(
                    "SELECT {COLUMNS} FROM agents WHERE spiffe_id > $1 ORDER BY spiffe_id LIMIT $2"
                ),
                &[&after, &limit],
            )
            .await?,
            None => {
                query(
                    db,
                    &format!("SELECT {COLUMNS} FROM agents ORDER BY spiffe_id LIMIT $1"),
                    &[&limit],
                )
                .await?
            }
        };
    rows.iter()
        .map(|row| AgentRow::read(row)?.into_agent())
        .collect()
}

/// Sets `new_serial` only; `NotFound` if there is no such agent.
pub(super) async fn record_renewal(
    tx: &mut WriteTx<'_>,
    spiffe_id: &str,
    new_serial: &str,
) -> StoreResult<()> {
    let changed = execute(
        tx.db(),
        "UPDATE agents SET new_serial = $2 WHERE spiffe_id = $1",
        &[&spiffe_id, &new_serial],
    )
    .await
    .map_err(backend)?;
    if changed == 0 {
        return Err(not_found(spiffe_id));
    }
    tx.record(Change::AgentChanged(spiffe_id.to_owned()), None);
    Ok(())
}

/// Promotes `new_serial` to `serial` when it is `presented` (one conditional statement, so the
/// check and the write cannot be split by another writer); returns whether `presented` is the
/// current serial afterwards.
pub(super) async fn activate_serial(
    tx: &mut WriteTx<'_>,
    spiffe_id: &str,
    presented: &str,
    expires_at: i64,
) -> StoreResult<bool> {
    let changed = execute(
        tx.db(),
        "UPDATE agents SET serial = new_serial, new_serial = NULL, expires_at = $3 \
         WHERE spiffe_id = $1 AND new_serial = $2",
        &[&spiffe_id, &presented, &expires_at],
    )
    .await
    .map_err(backend)?;
    if changed > 0 {
        tx.record(Change::AgentChanged(spiffe_id.to_owned()), None);
        return Ok(true);
    }
    let current = query_opt(
        tx.db(),
        "SELECT serial FROM agents WHERE spiffe_id = $1",
        &[&spiffe_id],
    )
    .await?;
    match current {
        Some(row) => Ok(column::<String>(&row, 0)? == presented),
        None => Err(not_found(spiffe_id)),
    }
}

/// Sets `banned` only; `NotFound` if there is no such agent.
pub(super) async fn set_banned(
    tx: &mut WriteTx<'_>,
    spiffe_id: &str,
    banned: bool,
) -> StoreResult<()> {
    let changed = execute(
        tx.db(),
        "UPDATE agents SET banned = $2 WHERE spiffe_id = $1",
        &[&spiffe_id, &banned],
    )
    .await
    .map_err(backend)?;
    if changed == 0 {
        return Err(not_found(spiffe_id));
    }
    tx.record(Change::AgentChanged(spiffe_id.to_owned()), None);
    Ok(())
}

/// Moves `last_seen` forward only, with no change event; `NotFound` if there is no such agent.
pub(super) async fn touch_last_seen(
    db: &impl GenericClient,
    spiffe_id: &str,
    now: i64,
) -> StoreResult<()> {
    let matched = execute(
        db,
        "UPDATE agents SET last_seen = GREATEST(last_seen, $2) WHERE spiffe_id = $1",
        &[&spiffe_id, &now],
    )
    .await
    .map_err(backend)?;
    if matched == 0 {
        return Err(not_found(spiffe_id));
    }
    Ok(())
}

/// Deletes the agent and returns what it was; `NotFound` if there is none.
pub(super) async fn delete(tx: &mut WriteTx<'_>, spiffe_id: &str) -> StoreResult<AttestedAgent> {
    let row = query_opt(
        tx.db(),
        &format!("DELETE FROM agents WHERE spiffe_id = $1 RETURNING {COLUMNS}"),
        &[&spiffe_id],
    )
    .await?
    .ok_or_else(|| not_found(spiffe_id))?;
    let agent = AgentRow::read(&row)?.into_agent()?;
    tx.record(Change::AgentDeleted(spiffe_id.to_owned()), None);
    Ok(agent)
}

/// Node selectors sorted and deduplicated, as entry selectors are, in their text form.
fn sorted_selectors(selectors: &[Selector]) -> Vec<String> {
    let mut sorted = selectors.to_vec();
    sorted.sort();
    sorted.dedup();
    sorted.iter().map(ToString::to_string).collect()
}

fn not_found(spiffe_id: &str) -> StoreError {
    StoreError::NotFound {
        kind: KIND,
        id: spiffe_id.to_owned(),
    }
}

/// An `agents` row as PostgreSQL returns it, before the identifiers are parsed again.
struct AgentRow {
    spiffe_id: String,
    attestation_type: String,
    selectors: Vec<String>,
    serial: String,
    new_serial: Option<String>,
    expires_at: i64,
    banned: bool,
    can_reattest: bool,
    created_at: i64,
    last_seen: i64,
}

impl AgentRow {
    /// Reads the columns of [`COLUMNS`], in order.
    fn read(row: &Row) -> StoreResult<Self> {
        Ok(Self {
            spiffe_id: column(row, 0)?,
            attestation_type: column(row, 1)?,
            selectors: column(row, 2)?,
            serial: column(row, 3)?,
            new_serial: column(row, 4)?,
            expires_at: column(row, 5)?,
            banned: column(row, 6)?,
            can_reattest: column(row, 7)?,
            created_at: column(row, 8)?,
            last_seen: column(row, 9)?,
        })
    }

    fn into_agent(self) -> StoreResult<AttestedAgent> {
        let id = &self.spiffe_id;
        let spiffe_id =
            SpiffeId::parse(id).map_err(|e| corrupt(KIND, id, format!("spiffe_id: {e}")))?;
        let selectors = self
            .selectors
            .iter()
            .map(|s| Selector::parse(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| corrupt(KIND, id, format!("selectors: {e}")))?;
        Ok(AttestedAgent {
            spiffe_id,
            attestation_type: self.attestation_type,
            selectors,
            serial: self.serial,
            new_serial: self.new_serial,
            expires_at: self.expires_at,
            banned: self.banned,
            can_reattest: self.can_reattest,
            created_at: self.created_at,
            last_seen: self.last_seen,
        })
    }
}
