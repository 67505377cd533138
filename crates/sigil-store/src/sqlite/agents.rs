//! Attested agents in SQLite, keyed by SPIFFE ID.

use rusqlite::{Connection, OptionalExtension, ParamsFromIter, Row, ToSql, params_from_iter};
use sigil_spiffe::{Selector, SpiffeId};

use super::{backend, change_feed, corrupt, is_unique_violation, to_json};
use crate::{AttestedAgent, Change, StoreError, StoreResult};

const KIND: &str = "agent";

const COLUMNS: &str = "spiffe_id, attestation_type, selectors, serial, new_serial, expires_at, \
    banned, can_reattest, created_at, last_seen";

/// The values of [`COLUMNS`], in order, as `?1`..`?10` (`selectors` already JSON-encoded).
fn column_values<'a>(
    agent: &'a AttestedAgent,
    selectors: &'a str,
) -> ParamsFromIter<[Box<dyn ToSql + 'a>; 10]> {
    params_from_iter([
        Box::new(agent.spiffe_id.as_str()) as Box<dyn ToSql>,
        Box::new(agent.attestation_type.as_str()),
        Box::new(selectors),
        Box::new(agent.serial.as_str()),
        Box::new(agent.new_serial.as_deref()),
        Box::new(agent.expires_at),
        Box::new(agent.banned),
        Box::new(agent.can_reattest),
        Box::new(agent.created_at),
        Box::new(agent.last_seen),
    ])
}

/// Stores a new agent; `AlreadyExists` if its SPIFFE ID is taken.
pub(super) fn create(conn: &Connection, agent: AttestedAgent) -> StoreResult<()> {
    let agent = normalized(agent);
    let selectors = to_json(&agent.selectors)?;
    conn.execute(
        &format!("INSERT INTO agents ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
        column_values(&agent, &selectors),
    )
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
    change_feed::append(
        conn,
        &Change::AgentChanged(agent.spiffe_id.to_string()),
        None,
    )
}

/// The agent with `spiffe_id`, if any.
pub(super) fn get(conn: &Connection, spiffe_id: &str) -> StoreResult<Option<AttestedAgent>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM agents WHERE spiffe_id = ?1"),
        [spiffe_id],
        AgentRow::read,
    )
    .optional()
    .map_err(backend)?
    .map(AgentRow::into_agent)
    .transpose()
}

/// Every agent, ordered by SPIFFE ID.
pub(super) fn list(conn: &Connection) -> StoreResult<Vec<AttestedAgent>> {
    let mut stmt = conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM agents ORDER BY spiffe_id"))
        .map_err(backend)?;
    let rows = stmt.query_map([], AgentRow::read).map_err(backend)?;
    rows.map(|row| row.map_err(backend).and_then(AgentRow::into_agent))
        .collect()
}

/// Replaces every field of an existing agent; `NotFound` if there is none.
pub(super) fn update(conn: &Connection, agent: AttestedAgent) -> StoreResult<()> {
    let agent = normalized(agent);
    let selectors = to_json(&agent.selectors)?;
    let changed = conn
        .execute(
            "UPDATE agents SET attestation_type = ?2, selectors = ?3, serial = ?4, \
               new_serial = ?5, expires_at = ?6, banned = ?7, can_reattest = ?8, \
               created_at = ?9, last_seen = ?10 \
             WHERE spiffe_id = ?1",
            column_values(&agent, &selectors),
        )
        .map_err(backend)?;
    if changed == 0 {
        return Err(not_found(agent.spiffe_id.as_str()));
    }
    change_feed::append(
        conn,
        &Change::AgentChanged(agent.spiffe_id.to_string()),
        None,
    )
}

/// Deletes the agent and returns what it was; `NotFound` if there is none.
pub(super) fn delete(conn: &Connection, spiffe_id: &str) -> StoreResult<AttestedAgent> {
    let agent = get(conn, spiffe_id)?.ok_or_else(|| not_found(spiffe_id))?;
    conn.execute("DELETE FROM agents WHERE spiffe_id = ?1", [spiffe_id])
        .map_err(backend)?;
    change_feed::append(conn, &Change::AgentDeleted(spiffe_id.to_owned()), None)?;
    Ok(agent)
}

/// Node selectors sorted and deduplicated, as entry selectors are.
fn normalized(mut agent: AttestedAgent) -> AttestedAgent {
    agent.selectors.sort();
    agent.selectors.dedup();
    agent
}

fn not_found(spiffe_id: &str) -> StoreError {
    StoreError::NotFound {
        kind: KIND,
        id: spiffe_id.to_owned(),
    }
}

/// An `agents` row as SQLite returns it, before the identifiers are parsed again.
struct AgentRow {
    spiffe_id: String,
    attestation_type: String,
    selectors: String,
    serial: String,
    new_serial: Option<String>,
    expires_at: i64,
    banned: bool,
    can_reattest: bool,
    created_at: i64,
    last_seen: i64,
}

impl AgentRow {
    fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            spiffe_id: row.get(0)?,
            attestation_type: row.get(1)?,
            selectors: row.get(2)?,
            serial: row.get(3)?,
            new_serial: row.get(4)?,
            expires_at: row.get(5)?,
            banned: row.get(6)?,
            can_reattest: row.get(7)?,
            created_at: row.get(8)?,
            last_seen: row.get(9)?,
        })
    }

    fn into_agent(self) -> StoreResult<AttestedAgent> {
        let id = &self.spiffe_id;
        let spiffe_id =
            SpiffeId::parse(id).map_err(|e| corrupt(KIND, id, format!("spiffe_id: {e}")))?;
        let selectors: Vec<Selector> = serde_json::from_str(&self.selectors)
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
