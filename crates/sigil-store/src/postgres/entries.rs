//! Registration entries in PostgreSQL: one `entries` row each (selectors as a sorted `TEXT[]`
//! under a GIN index, uniqueness on a digest of the identity), and the filters of
//! [`EntryFilter`].

use std::collections::BTreeMap;

use deadpool_postgres::GenericClient;
use sigil_spiffe::{Selector, SpiffeId, TrustDomain};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{
    WriteTx, backend, column, corrupt, execute, from_sql_int, is_unique_violation, query,
    query_opt, to_sql_int,
};
use crate::{Change, Entry, EntryFilter, NewEntry, StoreError, StoreResult};

const KIND: &str = "entry";

const COLUMNS: &str = "id, spiffe_id, parent_id, selectors, x509_svid_ttl, jwt_svid_ttl, \
    dns_names, federates_with, admin, downstream, hint, owner, description, expires_at, labels, \
    revision, created_at, updated_at";

/// Stores a normalised entry with a fresh random id and revision 1, in one round trip.
pub(super) async fn create(tx: &mut WriteTx<'_>, spec: NewEntry, now: i64) -> StoreResult<Entry> {
    let statement = tx
        .db()
        .prepare_cached(&insert_sql())
        .await
        .map_err(backend)?;
    let id = insert(tx.db(), &statement, &spec, now).await?;
    tx.record(Change::EntryCreated(id.clone()), Some(now));
    Ok(new_record(id, spec, now))
}

/// Stores normalised entries in order, as [`create`] does each, and queues their events in the
/// same order. The inserts are one prepared statement, sent all at once (tokio-postgres
/// pipelines requests that are in flight together), so a batch costs about one round trip, not
/// one per entry. The first refusal is returned as [`StoreError::InBatch`] naming its index;
/// PostgreSQL fails every later statement of the transaction, which the caller then drops.
pub(super) async fn create_many(
    tx: &mut WriteTx<'_>,
    specs: Vec<NewEntry>,
    now: i64,
) -> StoreResult<Vec<Entry>> {
    let db = tx.db();
    let statement = db.prepare_cached(&insert_sql()).await.map_err(backend)?;
    let inserted =
        futures::future::join_all(specs.iter().map(|spec| insert(db, &statement, spec, now))).await;
    let mut created = Vec::with_capacity(specs.len());
    for (index, (spec, id)) in specs.into_iter().zip(inserted).enumerate() {
        let id = id.map_err(|e| e.in_batch(index))?;
        tx.record(Change::EntryCreated(id.clone()), Some(now));
        created.push(new_record(id, spec, now));
    }
    Ok(created)
}

/// The INSERT of one new entry: `$1`..`$14` the spec's columns, `$15` the time, `$16` the
/// identity digest input; the id (128 bits from the database's strong random source) is drawn
/// by the statement and returned.
fn insert_sql() -> String {
    format!(
        "INSERT INTO entries ({COLUMNS}, identity_digest) \
         VALUES (left(encode(sha256(uuid_send(gen_random_uuid()) || \
             uuid_send(gen_random_uuid())), 'hex'), 32), \
           $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 1, $15, $15, \
           sha256($16)) \
         RETURNING id"
    )
}

/// Runs the [`insert_sql`] statement for `spec`; returns the new id.
async fn insert(
    db: &deadpool_postgres::Transaction<'_>,
    statement: &tokio_postgres::Statement,
    spec: &NewEntry,
    now: i64,
) -> StoreResult<String> {
    let columns = EncodedSpec::new(spec)?;
    let mut params = columns.spec_params();
    params.push(&now);
    params.push(&columns.identity);
    let row = db
        .query_one(statement, &params)
        .await
        .map_err(|e| duplicate_or_backend(e, spec))?;
    column(&row, 0)
}

/// The record of an entry just stored with `id`.
fn new_record(id: String, spec: NewEntry, now: i64) -> Entry {
    Entry {
        id,
        spec,
        revision: 1,
        created_at: now,
        updated_at: now,
    }
}

/// The entry with `id`, if any.
pub(super) async fn get(db: &impl GenericClient, id: &str) -> StoreResult<Option<Entry>> {
    query_opt(
        db,
        &format!("SELECT {COLUMNS} FROM entries WHERE id = $1"),
        &[&id],
    )
    .await?
    .map(|row| EntryRow::read(&row)?.into_entry())
    .transpose()
}

/// Entries matching every set field of `filter`, ordered by id: those with an id greater than
/// `after`, if given, and at most `limit`, if given.
pub(super) async fn list(
    db: &impl GenericClient,
    filter: &EntryFilter,
    after: Option<&str>,
    limit: Option<u32>,
) -> StoreResult<Vec<Entry>> {
    let spiffe_id = filter.spiffe_id.as_ref().map(SpiffeId::as_str);
    let federates_with = filter.federates_with.as_ref().map(|td| vec![td.as_str()]);
    let limit = limit.map(i64::from);
    let parent_id = filter.parent_id.as_ref().map(SpiffeId::as_str);
    let mut wanted: Vec<String> = filter.selectors.iter().map(ToString::to_string).collect();
    wanted.sort();
    wanted.dedup();
    // Only the set filters become conditions, so each can use its index whatever plan the
    // server caches (`col = $1 OR $1 IS NULL` would defeat a generic plan); there are at most
    // few hundred statement texts, each prepared once per connection.
    let mut conditions: Vec<(&str, &(dyn ToSql + Sync))> = Vec::new();
    if let Some(after) = &after {
        conditions.push(("id >", after));
    }
    if let Some(spiffe_id) = &spiffe_id {
        conditions.push(("spiffe_id =", spiffe_id));
    }
    if let Some(prefix) = &filter.spiffe_id_prefix {
        // Not LIKE: `%` and `_` in a prefix are literal characters of the SPIFFE ID.
        conditions.push(("starts_with(spiffe_id,", prefix));
    }
    if let Some(federates_with) = &federates_with {
        conditions.push(("federates_with @>", federates_with));
    }
    if let Some(parent_id) = &parent_id {
        conditions.push(("parent_id =", parent_id));
    }
    if let Some(owner) = &filter.owner {
        conditions.push(("owner =", owner));
    }
    if !wanted.is_empty() {
        // Answered by the GIN index on the selector array.
        conditions.push(("selectors @>", &wanted));
    }
    let mut sql = format!("SELECT {COLUMNS} FROM entries WHERE true");
    for (n, (test, _)) in (1..).zip(&conditions) {
        let close = if test.ends_with(',') { ")" } else { "" };
        sql.push_str(&format!(" AND {test} ${n}{close}"));
    }
    sql.push_str(" ORDER BY id");
    let mut params: Vec<&(dyn ToSql + Sync)> = conditions.iter().map(|(_, value)| *value).collect();
    if let Some(limit) = &limit {
        params.push(limit);
        sql.push_str(&format!(" LIMIT ${}", params.len()));
    }
    let rows = query(db, &sql, &params).await?;
    rows.iter()
        .map(|row| EntryRow::read(row)?.into_entry())
        .collect()
}

/// Replaces the mutable fields of entry `id`, checking `expected_revision` first.
pub(super) async fn update(
    tx: &mut WriteTx<'_>,
    id: &str,
    spec: NewEntry,
    expected_revision: Option<i64>,
    now: i64,
) -> StoreResult<Entry> {
    // Locks the row until commit, so the revision check and the write cannot be split by
    // another writer. Only the bookkeeping columns are read, so an update can also repair a
    // corrupt row.
    let row = query_opt(
        tx.db(),
        "SELECT revision, created_at FROM entries WHERE id = $1 FOR UPDATE",
        &[&id],
    )
    .await?
    .ok_or_else(|| not_found(id))?;
    let found: i64 = column(&row, 0)?;
    let created_at: i64 = column(&row, 1)?;
    if let Some(expected) = expected_revision.filter(|expected| *expected != found) {
        return Err(StoreError::RevisionConflict {
            kind: KIND,
            id: id.to_owned(),
            expected,
            found,
        });
    }
    let revision = found
        .checked_add(1)
        .ok_or_else(|| corrupt(KIND, id, "revision cannot grow any more"))?;
    let columns = EncodedSpec::new(&spec)?;
    execute(
        tx.db(),
        "UPDATE entries SET spiffe_id = $2, parent_id = $3, selectors = $4, x509_svid_ttl = $5, \
           jwt_svid_ttl = $6, dns_names = $7, federates_with = $8, admin = $9, downstream = $10, \
           hint = $11, owner = $12, description = $13, expires_at = $14, labels = $15, \
           revision = $16, updated_at = $17, identity_digest = sha256($18) \
         WHERE id = $1",
        &columns.params(&id, &[&revision, &now]),
    )
    .await
    .map_err(|e| duplicate_or_backend(e, &spec))?;
    tx.record(Change::EntryUpdated(id.to_owned()), Some(now));
    Ok(Entry {
        id: id.to_owned(),
        spec,
        revision,
        created_at,
        updated_at: now,
    })
}

/// Deletes entry `id` and returns what it was.
pub(super) async fn delete(tx: &mut WriteTx<'_>, id: &str) -> StoreResult<Entry> {
    let row = query_opt(
        tx.db(),
        &format!("DELETE FROM entries WHERE id = $1 RETURNING {COLUMNS}"),
        &[&id],
    )
    .await?
    .ok_or_else(|| not_found(id))?;
    let entry = EntryRow::read(&row)?.into_entry()?;
    tx.record(Change::EntryDeleted(id.to_owned()), None);
    Ok(entry)
}

fn not_found(id: &str) -> StoreError {
    StoreError::NotFound {
        kind: KIND,
        id: id.to_owned(),
    }
}

fn duplicate_or_backend(e: tokio_postgres::Error, spec: &NewEntry) -> StoreError {
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

/// The columns of a spec as they are bound to statements.
struct EncodedSpec<'a> {
    spiffe_id: &'a str,
    parent_id: &'a str,
    /// Sorted and deduplicated, in the selectors' own order.
    selectors: Vec<String>,
    x509_svid_ttl: i64,
    jwt_svid_ttl: i64,
    dns_names: &'a [String],
    federates_with: Vec<&'a str>,
    admin: bool,
    downstream: bool,
    hint: &'a str,
    owner: &'a str,
    description: &'a str,
    expires_at: Option<i64>,
    /// The labels as one JSON object.
    labels: String,
    /// `spiffe_id \n parent_id \n selector \n selector...`, hashed by the database into
    /// `identity_digest`. None of the parts holds a newline, so equal inputs mean equal
    /// identities.
    identity: Vec<u8>,
}

impl<'a> EncodedSpec<'a> {
    fn new(spec: &'a NewEntry) -> StoreResult<Self> {
        let mut sorted = spec.selectors.clone();
        sorted.sort();
        sorted.dedup();
        let selectors: Vec<String> = sorted.iter().map(ToString::to_string).collect();
        let identity = format!(
            "{}\n{}\n{}",
            spec.spiffe_id,
            spec.parent_id,
            selectors.join("\n")
        )
        .into_bytes();
        Ok(Self {
            spiffe_id: spec.spiffe_id.as_str(),
            parent_id: spec.parent_id.as_str(),
            selectors,
            x509_svid_ttl: to_sql_int("x509_svid_ttl", spec.x509_svid_ttl)?,
            jwt_svid_ttl: to_sql_int("jwt_svid_ttl", spec.jwt_svid_ttl)?,
            dns_names: &spec.dns_names,
            federates_with: spec
                .federates_with
                .iter()
                .map(TrustDomain::as_str)
                .collect(),
            admin: spec.admin,
            downstream: spec.downstream,
            hint: &spec.hint,
            owner: &spec.owner,
            description: &spec.description,
            expires_at: spec.expires_at,
            labels: serde_json::to_string(&spec.labels)
                .map_err(|e| StoreError::Backend(e.into()))?,
            identity,
        })
    }

    /// `$1` = `id`, `$2`..`$15` = the spec's columns in table order, then `extra`, then the
    /// identity digest input.
    fn params<'s>(
        &'s self,
        id: &'s &'s str,
        extra: &[&'s (dyn ToSql + Sync)],
    ) -> Vec<&'s (dyn ToSql + Sync)> {
        let mut params: Vec<&'s (dyn ToSql + Sync)> = vec![id];
        params.extend(self.spec_params());
        params.extend_from_slice(extra);
        params.push(&self.identity);
        params
    }

    /// The spec's columns in table order (14 of them, `spiffe_id` to `labels`).
    fn spec_params(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.spiffe_id,
            &self.parent_id,
            &self.selectors,
            &self.x509_svid_ttl,
            &self.jwt_svid_ttl,
            &self.dns_names,
            &self.federates_with,
            &self.admin,
            &self.downstream,
            &self.hint,
            &self.owner,
            &self.description,
            &self.expires_at,
            &self.labels,
        ]
    }
}

/// An `entries` row as PostgreSQL returns it, before the identifiers are parsed again.
struct EntryRow {
    id: String,
    spiffe_id: String,
    parent_id: String,
    selectors: Vec<String>,
    x509_svid_ttl: i64,
    jwt_svid_ttl: i64,
    dns_names: Vec<String>,
    federates_with: Vec<String>,
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
    /// Reads the columns of [`COLUMNS`], in order.
    fn read(row: &Row) -> StoreResult<Self> {
        Ok(Self {
            id: column(row, 0)?,
            spiffe_id: column(row, 1)?,
            parent_id: column(row, 2)?,
            selectors: column(row, 3)?,
            x509_svid_ttl: column(row, 4)?,
            jwt_svid_ttl: column(row, 5)?,
            dns_names: column(row, 6)?,
            federates_with: column(row, 7)?,
            admin: column(row, 8)?,
            downstream: column(row, 9)?,
            hint: column(row, 10)?,
            owner: column(row, 11)?,
            description: column(row, 12)?,
            expires_at: column(row, 13)?,
            labels: column(row, 14)?,
            revision: column(row, 15)?,
            created_at: column(row, 16)?,
            updated_at: column(row, 17)?,
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
            .iter()
            .map(|s| Selector::parse(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad("selectors", &e))?;
        selectors.sort();
        selectors.dedup();
        let federates_with = self
            .federates_with
            .iter()
            .map(|td| TrustDomain::parse(td))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad("federates_with", &e))?;
        let labels: BTreeMap<String, String> =
            serde_json::from_str(&self.labels).map_err(|e| bad("labels", &e))?;
        let spec = NewEntry {
            spiffe_id,
            parent_id,
            selectors,
            x509_svid_ttl: from_sql_int(KIND, &id, "x509_svid_ttl", self.x509_svid_ttl)?,
            jwt_svid_ttl: from_sql_int(KIND, &id, "jwt_svid_ttl", self.jwt_svid_ttl)?,
            dns_names: self.dns_names,
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
