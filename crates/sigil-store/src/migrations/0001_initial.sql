-- 0001: the first schema. STRICT tables, so a value of the wrong type cannot be stored.
-- Identifiers are stored as their canonical text and re-parsed on load.

CREATE TABLE entries (
    id TEXT PRIMARY KEY NOT NULL,
    spiffe_id TEXT NOT NULL,
    parent_id TEXT NOT NULL,
    -- The canonical selector set: sorted, deduplicated, joined by newlines (a selector never
    -- holds whitespace), so the uniqueness rule is one UNIQUE index.
    selectors TEXT NOT NULL,
    x509_svid_ttl INTEGER NOT NULL,
    jwt_svid_ttl INTEGER NOT NULL,
    dns_names TEXT NOT NULL,       -- JSON array of strings
    federates_with TEXT NOT NULL,  -- JSON array of trust domain names
    admin INTEGER NOT NULL,
    downstream INTEGER NOT NULL,
    hint TEXT NOT NULL,
    owner TEXT NOT NULL,
    description TEXT NOT NULL,
    expires_at INTEGER,
    revision INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

CREATE UNIQUE INDEX entries_identity ON entries (spiffe_id, parent_id, selectors);
CREATE INDEX entries_parent_id ON entries (parent_id);
CREATE INDEX entries_owner ON entries (owner);

-- One row per selector of an entry: the index behind "entries whose selectors include these".
CREATE TABLE entry_selectors (
    entry_id TEXT NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
    selector TEXT NOT NULL,
    PRIMARY KEY (entry_id, selector)
) STRICT, WITHOUT ROWID;

CREATE INDEX entry_selectors_by_selector ON entry_selectors (selector, entry_id);

CREATE TABLE join_tokens (
    id TEXT PRIMARY KEY NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    expires_at INTEGER NOT NULL,
    used_at INTEGER,
    created_at INTEGER NOT NULL
) STRICT;

CREATE INDEX join_tokens_expires_at ON join_tokens (expires_at);

CREATE TABLE agents (
    spiffe_id TEXT PRIMARY KEY NOT NULL,
    attestation_type TEXT NOT NULL,
    selectors TEXT NOT NULL,       -- JSON array of selectors, sorted
    serial TEXT NOT NULL,
    new_serial TEXT,
    expires_at INTEGER NOT NULL,
    banned INTEGER NOT NULL,
    can_reattest INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    last_seen INTEGER NOT NULL
) STRICT;

CREATE TABLE authorities (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    cert_der BLOB,
    public_key_der BLOB NOT NULL,
    key_id TEXT NOT NULL,
    issuer_id TEXT,
    not_before INTEGER NOT NULL,
    not_after INTEGER NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE bundles (
    trust_domain TEXT PRIMARY KEY NOT NULL,
    document BLOB NOT NULL,
    sequence INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

-- The change feed. AUTOINCREMENT: a sequence number is never reused, even after old events
-- are pruned, so a reader's cursor stays meaningful.
CREATE TABLE change_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    at INTEGER NOT NULL
) STRICT;
