//! Attested agents in SQLite, keyed by SPIFFE ID.

use rusqlite::{
    Connection, OptionalExtension, ParamsFromIter, Row, ToSql, params, params_from_iter,
};
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

/// At most `limit` agents with a SPIFFE ID greater than `after` (every one when `None`),
/// ordered by SPIFFE ID.
pub(super) fn list_page(
    conn: &Connection,
    after: Option<&str>,
    limit: u32,
) -> StoreResult<Vec<AttestedAgent>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM agents WHERE ?1 IS NULL OR spiffe_id > ?1 \
             ORDER BY spiffe_id LIMIT ?2"
        ))
        .map_err(backend)?;
    let rows = stmt
        .query_map(params![after, i64::from(limit)], AgentRow::read)
        .map_err(backend)?;
    rows.map(|row| row.map_err(backend).and_then(AgentRow::into_agent))
        .collect()
}

/// Sets `new_serial` only; `NotFound` if there is no such agent.
pub(super) fn record_renewal(
    conn: &Connection,
    spiffe_id: &str,
    new_serial: &str,
) -> StoreResult<()> {
    let changed = conn
        .execute(
            "UPDATE agents SET new_serial = ?2 WHERE spiffe_id = ?1",
            (spiffe_id, new_serial),
        )
        .map_err(backend)?;
    if changed == 0 {
        return Err(not_found(spiffe_id));
    }
    changed_event(conn, spiffe_id)
}

/// Promotes `new_serial` to `serial` when it is `presented` (one conditional statement, so the
/// check and the write cannot be split by another writer); returns whether `presented` is the
/// current serial afterwards.
pub(super) fn activate_serial(
    conn: &Connection,
    spiffe_id: &str,
    presented: &str,
    expires_at: i64,
) -> StoreResult<bool> {
    let changed = conn
        .execute(
            "UPDATE agents SET serial = new_serial, new_serial = NULL, expires_at = ?3 \
             WHERE spiffe_id = ?1 AND new_serial = ?2",
            (spiffe_id, presented, expires_at),
        )
        .map_err(backend)?;
    if changed > 0 {
        changed_event(conn, spiffe_id)?;
        return Ok(true);
    }
    let current: Option<String> = conn
        .query_row(
            "SELECT serial FROM agents WHERE spiffe_id = ?1",
            [spiffe_id],
            |row| row.get(0),
        )
        .optional()
        .map_err(backend)?;
    match current {
        Some(serial) => Ok(serial == presented),
        None => Err(not_found(spiffe_id)),
    }
}

/// Sets `banned` only; `NotFound` if there is no such agent.
pub(super) fn set_banned(conn: &Connection, spiffe_id: &str, banned: bool) -> StoreResult<()> {
    let changed = conn
        .execute(
            "UPDATE agents SET banned = ?2 WHERE spiffe_id = ?1",
            (spiffe_id, banned),
        )
        .map_err(backend)?;
    if changed == 0 {
        return Err(not_found(spiffe_id));
    }
    changed_event(conn, spiffe_id)
}

/// Moves `last_seen` forward only, with no change event; `NotFound` if there is no such agent.
pub(super) fn touch_last_seen(conn: &Connection, spiffe_id: &str, now: i64) -> StoreResult<()> {
    let matched = conn
        .execute(
            "UPDATE agents SET last_seen = MAX(last_seen, ?2) WHERE spiffe_id = ?1",
            (spiffe_id, now),
        )
        .map_err(backend)?;
    if matched == 0 {
        return Err(not_found(spiffe_id));
    }
    Ok(())
}

/// Deletes the agent and returns what it was; `NotFound` if there is none.
pub(super) fn delete(conn: &Connection, spiffe_id: &str) -> StoreResult<AttestedAgent> {
    let agent = get(conn, spiffe_id)?.ok_or_else(|| not_found(spiffe_id))?;
    conn.execute("DELETE FROM agents WHERE spiffe_id = ?1", [spiffe_id])
        .map_err(backend)?;
    change_feed::append(conn, &Change::AgentDeleted(spiffe_id.to_owned()), None)?;
    Ok(agent)
}

fn changed_event(conn: &Connection, spiffe_id: &str) -> StoreResult<()> {
    change_feed::append(conn, &Change::AgentChanged(spiffe_id.to_owned()), None)
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
