//! Signing authority records in SQLite (metadata and public parts only; never private keys).

use rusqlite::{Connection, Row, params};

use super::{backend, change_feed, corrupt};
use crate::{AuthorityKind, AuthorityRecord, AuthorityState, Change, StoreResult};

const KIND: &str = "authority";

/// Inserts or replaces the record with `authority.id`.
pub(super) fn put(conn: &Connection, authority: &AuthorityRecord) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO authorities (id, kind, state, cert_der, public_key_der, key_id, issuer_id, \
           not_before, not_after, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
         ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, state = excluded.state, \
           cert_der = excluded.cert_der, public_key_der = excluded.public_key_der, \
           key_id = excluded.key_id, issuer_id = excluded.issuer_id, \
           not_before = excluded.not_before, not_after = excluded.not_after, \
           created_at = excluded.created_at",
        params![
            authority.id,
            authority.kind.as_str(),
            authority.state.as_str(),
            authority.cert_der,
            authority.public_key_der,
            authority.key_id,
            authority.issuer_id,
            authority.not_before,
            authority.not_after,
            authority.created_at,
        ],
    )
    .map_err(backend)?;
    change_feed::append(conn, &Change::AuthorityChanged(authority.id.clone()), None)
}

/// Every authority, ordered by creation time then id.
pub(super) fn list(conn: &Connection) -> StoreResult<Vec<AuthorityRecord>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, kind, state, cert_der, public_key_der, key_id, issuer_id, not_before, \
               not_after, created_at \
             FROM authorities ORDER BY created_at, id",
        )
        .map_err(backend)?;
    let rows = stmt.query_map([], AuthorityRow::read).map_err(backend)?;
    rows.map(|row| row.map_err(backend).and_then(AuthorityRow::into_record))
        .collect()
}

/// An `authorities` row as SQLite returns it, before the kind and state are parsed.
struct AuthorityRow {
    id: String,
    kind: String,
    state: String,
    cert_der: Option<Vec<u8>>,
    public_key_der: Vec<u8>,
    key_id: String,
    issuer_id: Option<String>,
    not_before: i64,
    not_after: i64,
    created_at: i64,
}

impl AuthorityRow {
    fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            kind: row.get(1)?,
            state: row.get(2)?,
            cert_der: row.get(3)?,
            public_key_der: row.get(4)?,
            key_id: row.get(5)?,
            issuer_id: row.get(6)?,
            not_before: row.get(7)?,
            not_after: row.get(8)?,
            created_at: row.get(9)?,
        })
    }

    fn into_record(self) -> StoreResult<AuthorityRecord> {
        let kind = AuthorityKind::from_name(&self.kind)
            .ok_or_else(|| corrupt(KIND, &self.id, format!("unknown kind `{}`", self.kind)))?;
        let state = AuthorityState::from_name(&self.state)
            .ok_or_else(|| corrupt(KIND, &self.id, format!("unknown state `{}`", self.state)))?;
        Ok(AuthorityRecord {
            id: self.id,
            kind,
            state,
            cert_der: self.cert_der,
            public_key_der: self.public_key_der,
            key_id: self.key_id,
            issuer_id: self.issuer_id,
            not_before: self.not_before,
            not_after: self.not_after,
            created_at: self.created_at,
        })
    }
}
