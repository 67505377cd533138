//! Registration entries in SQLite: the `entries` row, its `entry_selectors` index rows, and the
//! filters of [`EntryFilter`].

use std::collections::BTreeMap;

use rusqlite::types::Value;
use rusqlite::{
    Connection, OptionalExtension, ParamsFromIter, Row, ToSql, params, params_from_iter,
};
use sigil_spiffe::{Selector, SpiffeId, TrustDomain};

use super::{
    backend, change_feed, corrupt, from_sql_int, is_unique_violation, to_json, to_sql_int,
};
use crate::{Change, Entry, EntryFilter, NewEntry, StoreError, StoreResult};

const KIND: &str = "entry";

const COLUMNS: &str = "id, spiffe_id, parent_id, selectors, x509_svid_ttl, jwt_svid_ttl, \
    dns_names, federates_with, admin, downstream, hint, owner, description, expires_at, labels, \
    revision, created_at, updated_at";

/// Stores a normalised entry with a fresh random id and revision 1. Its statements are cached
/// on the connection, so a batch prepares each once.
pub(super) fn create(conn: &Connection, spec: NewEntry, now: i64) -> StoreResult<Entry> {
    let columns = EncodedSpec::new(&spec)?;
    let id: String = conn
        .prepare_cached("SELECT lower(hex(randomblob(16)))")
        .and_then(|mut stmt| stmt.query_row([], |row| row.get(0)))
        .map_err(backend)?;
    conn.prepare_cached(&format!(
        "INSERT INTO entries ({COLUMNS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, 1, ?16, ?16)"
    ))
    .and_then(|mut stmt| stmt.execute(columns.values(&id, &spec, [Box::new(now)])))
    .map_err(|e| duplicate_or_backend(e, &spec))?;
    insert_selector_rows(conn, &id, &spec.selectors)?;
    change_feed::append(conn, &Change::EntryCreated(id.clone()), Some(now))?;
    Ok(Entry {
        id,
        spec,
        revision: 1,
        created_at: now,
        updated_at: now,
    })
}

/// Stores normalised entries in order, as [`create`] does each; the first refusal is returned
/// as [`StoreError::InBatch`] naming its index (the caller's transaction then rolls back).
pub(super) fn create_many(
    conn: &Connection,
    specs: Vec<NewEntry>,
    now: i64,
) -> StoreResult<Vec<Entry>> {
    specs
        .into_iter()
        .enumerate()
        .map(|(index, spec)| create(conn, spec, now).map_err(|e| e.in_batch(index)))
        .collect()
}

/// The entry with `id`, if any.
pub(super) fn get(conn: &Connection, id: &str) -> StoreResult<Option<Entry>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM entries WHERE id = ?1"),
        [id],
        EntryRow::read,
    )
    .optional()
    .map_err(backend)?
    .map(EntryRow::into_entry)
    .transpose()
}

/// Entries matching every set field of `filter`, ordered by id: those with an id greater than
/// `after`, if given, and at most `limit`, if given.
pub(super) fn list(
    conn: &Connection,
    filter: &EntryFilter,
    after: Option<&str>,
    limit: Option<u32>,
) -> StoreResult<Vec<Entry>> {
    let mut sql = format!("SELECT {COLUMNS} FROM entries WHERE 1 = 1");
    let mut args: Vec<Value> = Vec::new();
    if let Some(after) = after {
        args.push(Value::Text(after.to_owned()));
        sql.push_str(&format!(" AND id > ?{}", args.len()));
    }
    if let Some(spiffe_id) = &filter.spiffe_id {
        args.push(Value::Text(spiffe_id.as_str().to_owned()));
        sql.push_str(&format!(" AND spiffe_id = ?{}", args.len()));
    }
    if let Some(prefix) = &filter.spiffe_id_prefix {
        // Not LIKE: `%` and `_` in a prefix are literal characters of the SPIFFE ID.
        args.push(Value::Text(prefix.clone()));
        let n = args.len();
        sql.push_str(&format!(" AND substr(spiffe_id, 1, length(?{n})) = ?{n}"));
    }
    if let Some(trust_domain) = &filter.federates_with {
        args.push(Value::Text(trust_domain.as_str().to_owned()));
        sql.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM json_each(entries.federates_with) WHERE value = ?{})",
            args.len()
        ));
    }
    if let Some(parent_id) = &filter.parent_id {
        args.push(Value::Text(parent_id.as_str().to_owned()));
        sql.push_str(&format!(" AND parent_id = ?{}", args.len()));
    }
    if let Some(owner) = &filter.owner {
        args.push(Value::Text(owner.clone()));
        sql.push_str(&format!(" AND owner = ?{}", args.len()));
    }
    let mut wanted: Vec<String> = filter.selectors.iter().map(ToString::to_string).collect();
    wanted.sort();
    wanted.dedup();
    if !wanted.is_empty() {
        let count = i64::try_from(wanted.len()).unwrap_or(i64::MAX);
        let wanted = serde_json::to_string(&wanted).map_err(|e| StoreError::Backend(e.into()))?;
        args.push(Value::Text(wanted));
        let set = args.len();
        args.push(Value::Integer(count));
        let count = args.len();
        // Each (entry, selector) pair is one row, so an entry has all of them exactly when it
        // matches as many distinct selectors as were asked for.
        sql.push_str(&format!(
            " AND id IN (SELECT entry_id FROM entry_selectors \
               WHERE selector IN (SELECT value FROM json_each(?{set})) \
               GROUP BY entry_id HAVING count(*) = ?{count})"
        ));
    }
    sql.push_str(" ORDER BY id");
    if let Some(limit) = limit {
        args.push(Value::Integer(i64::from(limit)));
        sql.push_str(&format!(" LIMIT ?{}", args.len()));
    }

    let mut stmt = conn.prepare(&sql).map_err(backend)?;
    let rows = stmt
        .query_map(params_from_iter(args), EntryRow::read)
        .map_err(backend)?;
    rows.map(|row| row.map_err(backend).and_then(EntryRow::into_entry))
        .collect()
}

/// Replaces the mutable fields of entry `id`, checking `expected_revision` first.
pub(super) fn update(
    conn: &Connection,
    id: String,
    spec: NewEntry,
    expected_revision: Option<i64>,
    now: i64,
) -> StoreResult<Entry> {
    // Only the bookkeeping columns are read, so an update can also repair a corrupt row.
    let (found, created_at): (i64, i64) = conn
        .query_row(
            "SELECT revision, created_at FROM entries WHERE id = ?1",
            [&id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()
        .map_err(backend)?
        .ok_or_else(|| not_found(&id))?;
    if let Some(expected) = expected_revision.filter(|expected| *expected != found) {
        return Err(StoreError::RevisionConflict {
            kind: KIND,
            id,
            expected,
            found,
        });
    }
    let revision = found
        .checked_add(1)
        .ok_or_else(|| corrupt(KIND, &id, "revision cannot grow any more"))?;
    let columns = EncodedSpec::new(&spec)?;
    conn.execute(
        "UPDATE entries SET spiffe_id = ?2, parent_id = ?3, selectors = ?4, x509_svid_ttl = ?5, \
           jwt_svid_ttl = ?6, dns_names = ?7, federates_with = ?8, admin = ?9, downstream = ?10, \
           hint = ?11, owner = ?12, description = ?13, expires_at = ?14, labels = ?15, \
           revision = ?16, updated_at = ?17 \
         WHERE id = ?1",
        columns.values(&id, &spec, [Box::new(revision), Box::new(now)]),
    )
    .map_err(|e| duplicate_or_backend(e, &spec))?;
    conn.execute("DELETE FROM entry_selectors WHERE entry_id = ?1", [&id])
        .map_err(backend)?;
    insert_selector_rows(conn, &id, &spec.selectors)?;
    change_feed::append(conn, &Change::EntryUpdated(id.clone()), Some(now))?;
    Ok(Entry {
        id,
        spec,
        revision,
        created_at,
        updated_at: now,
    })
}

/// Deletes entry `id` (its selector rows go by cascade) and returns what it was.
pub(super) fn delete(conn: &Connection, id: &str) -> StoreResult<Entry> {
    let entry = get(conn, id)?.ok_or_else(|| not_found(id))?;
    conn.execute("DELETE FROM entries WHERE id = ?1", [id])
        .map_err(backend)?;
    change_feed::append(conn, &Change::EntryDeleted(id.to_owned()), None)?;
    Ok(entry)
}

fn insert_selector_rows(conn: &Connection, id: &str, selectors: &[Selector]) -> StoreResult<()> {
    let mut stmt = conn
        .prepare_cached("INSERT INTO entry_selectors (entry_id, selector) VALUES (?1, ?2)")
        .map_err(backend)?;
    for selector in selectors {
        stmt.execute(params![id, selector.to_string()])
            .map_err(backend)?;
    }
    Ok(())
}

fn not_found(id: &str) -> StoreError {
    StoreError::NotFound {
        kind: KIND,
        id: id.to_owned(),
    }
}

fn duplicate_or_backend(e: rusqlite::Error, spec: &NewEntry) -> StoreError {
    if !is_unique_violation(&e) {
        return backend(e);
    }
    let selectors: Vec<String> = spec.selectors.iter().map(ToString::to_string).collect();
    StoreError::AlreadyExists {
        kind: KIND,
        detail: format!(
            "spiffe_id `{}`, parent_id `{}` and selectors `{}` are already registered",
            spec.spiffe_id,
            spec.parent_id,
            selectors.join(", ")
        ),
    }
}

/// The columns of a spec that are not stored as they are.
struct EncodedSpec {
    selectors: String,
    x509_svid_ttl: i64,
    jwt_svid_ttl: i64,
    dns_names: String,
    federates_with: String,
    labels: String,
}

impl EncodedSpec {
    /// `?1` = `id`, `?2`..`?15` = the spec's columns in table order, then `extra`.
    fn values<'a, const N: usize>(
        &'a self,
        id: &'a str,
        spec: &'a NewEntry,
        extra: [Box<dyn ToSql + 'a>; N],
    ) -> ParamsFromIter<Vec<Box<dyn ToSql + 'a>>> {
        let mut values: Vec<Box<dyn ToSql + 'a>> = vec![
            Box::new(id),
            Box::new(spec.spiffe_id.as_str()),
            Box::new(spec.parent_id.as_str()),
            Box::new(self.selectors.as_str()),
            Box::new(self.x509_svid_ttl),
            Box::new(self.jwt_svid_ttl),
            Box::new(self.dns_names.as_str()),
            Box::new(self.federates_with.as_str()),
            Box::new(spec.admin),
            Box::new(spec.downstream),
            Box::new(spec.hint.as_str()),
            Box::new(spec.owner.as_str()),
            Box::new(spec.description.as_str()),
            Box::new(spec.expires_at),
            Box::new(self.labels.as_str()),
        ];
        values.extend(extra);
        params_from_iter(values)
    }

    fn new(spec: &NewEntry) -> StoreResult<Self> {
        Ok(Self {
            selectors: canonical_selectors(&spec.selectors),
            x509_svid_ttl: to_sql_int("x509_svid_ttl", spec.x509_svid_ttl)?,
            jwt_svid_ttl: to_sql_int("jwt_svid_ttl", spec.jwt_svid_ttl)?,
            dns_names: to_json(&spec.dns_names)?,
            federates_with: to_json(&spec.federates_with)?,
            labels: to_json(&spec.labels)?,
        })
    }
}

/// The selectors in their own order, deduplicated, joined by newlines; a selector never holds
/// whitespace, so this is unambiguous, and equal sets give equal strings.
fn canonical_selectors(selectors: &[Selector]) -> String {
    let mut sorted = selectors.to_vec();
    sorted.sort();
    sorted.dedup();
    let names: Vec<String> = sorted.iter().map(ToString::to_string).collect();
    names.join("\n")
}

/// An `entries` row as SQLite returns it, before the identifiers are parsed again.
struct EntryRow {
    id: String,
    spiffe_id: String,
    parent_id: String,
    selectors: String,
    x509_svid_ttl: i64,
    jwt_svid_ttl: i64,
    dns_names: String,
    federates_with: String,
    admin: bool,
    downstream: bool,
    hint: String,
    owner: String,
    description: String,
    expires_at: Option<i64>,
    labels: String,
    revision: i64,
    created_at: i64,
    updated_at: i64,
}

impl EntryRow {
    fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            spiffe_id: row.get(1)?,
            parent_id: row.get(2)?,
            selectors: row.get(3)?,
            x509_svid_ttl: row.get(4)?,
            jwt_svid_ttl: row.get(5)?,
            dns_names: row.get(6)?,
            federates_with: row.get(7)?,
            admin: row.get(8)?,
            downstream: row.get(9)?,
            hint: row.get(10)?,
            owner: row.get(11)?,
            description: row.get(12)?,
            expires_at: row.get(13)?,
            labels: row.get(14)?,
            revision: row.get(15)?,
            created_at: row.get(16)?,
            updated_at: row.get(17)?,
        })
    }

    fn into_entry(self) -> StoreResult<Entry> {
        let id = self.id;
        let bad =
            |field: &str, e: &dyn std::fmt::Display| corrupt(KIND, &id, format!("{field}: {e}"));
        let spiffe_id = SpiffeId::parse(&self.spiffe_id).map_err(|e| bad("spiffe_id", &e))?;
        let parent_id = SpiffeId::parse(&self.parent_id).map_err(|e| bad("parent_id", &e))?;
        let mut selectors = self
            .selectors
            .split('\n')
            .map(Selector::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad("selectors", &e))?;
        selectors.sort();
        selectors.dedup();
        let dns_names: Vec<String> =
            serde_json::from_str(&self.dns_names).map_err(|e| bad("dns_names", &e))?;
        let federates_with: Vec<TrustDomain> =
            serde_json::from_str(&self.federates_with).map_err(|e| bad("federates_with", &e))?;
        let labels: BTreeMap<String, String> =
            serde_json::from_str(&self.labels).map_err(|e| bad("labels", &e))?;
        let spec = NewEntry {
            spiffe_id,
            parent_id,
            selectors,
            x509_svid_ttl: from_sql_int(KIND, &id, "x509_svid_ttl", self.x509_svid_ttl)?,
            jwt_svid_ttl: from_sql_int(KIND, &id, "jwt_svid_ttl", self.jwt_svid_ttl)?,
            dns_names,
            federates_with,
            admin: self.admin,
            downstream: self.downstream,
            hint: self.hint,
            owner: self.owner,
            description: self.description,
            expires_at: self.expires_at,
            labels,
        };
        Ok(Entry {
            id,
            spec,
            revision: self.revision,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}
