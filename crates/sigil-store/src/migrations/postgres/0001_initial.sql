-- 0001: the first schema, the PostgreSQL twin of ../0001_initial.sql. Typed columns and CHECK
-- constraints do what SQLite's STRICT tables and the store's own checks do there. Identifiers
-- are stored as their canonical text (collation "C", so ordering is bytewise as in SQLite) and
-- re-parsed on load. Times are Unix seconds in BIGINT.

CREATE TABLE entries (
    id TEXT COLLATE "C" PRIMARY KEY,
    spiffe_id TEXT COLLATE "C" NOT NULL,
    parent_id TEXT COLLATE "C" NOT NULL,
    -- The canonical selector set: sorted, deduplicated; what the selector filter searches.
    selectors TEXT[] COLLATE "C" NOT NULL CHECK (cardinality(selectors) > 0),
    -- SHA-256 of spiffe_id, parent_id and the selectors, newline-separated (none of them holds
    -- a newline). The uniqueness rule is on this digest, not on the text, because a B-tree
    -- index entry is limited to about 2.7 kB and a SPIFFE ID alone may be 2 kB.
    identity_digest BYTEA NOT NULL CHECK (octet_length(identity_digest) = 32),
    x509_svid_ttl BIGINT NOT NULL CHECK (x509_svid_ttl >= 0),
    jwt_svid_ttl BIGINT NOT NULL CHECK (jwt_svid_ttl >= 0),
    dns_names TEXT[] NOT NULL,
    federates_with TEXT[] COLLATE "C" NOT NULL,
    admin BOOLEAN NOT NULL,
    downstream BOOLEAN NOT NULL,
    hint TEXT NOT NULL,
    owner TEXT COLLATE "C" NOT NULL CHECK (owner <> '' AND octet_length(owner) <= 256),
    description TEXT NOT NULL CHECK (octet_length(description) <= 4096),
    expires_at BIGINT,
    revision BIGINT NOT NULL CHECK (revision >= 1),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE UNIQUE INDEX entries_identity ON entries (identity_digest);
CREATE INDEX entries_spiffe_id ON entries (spiffe_id);
CREATE INDEX entries_parent_id ON entries (parent_id);
CREATE INDEX entries_owner ON entries (owner);
-- "Entries whose selectors include these" is `selectors @> $1`, which this index answers.
CREATE INDEX entries_selectors ON entries USING GIN (selectors);

CREATE TABLE join_tokens (
    id TEXT COLLATE "C" PRIMARY KEY CHECK (id <> '' AND octet_length(id) <= 256),
    token_hash TEXT COLLATE "C" NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    created_at BIGINT NOT NULL
);

CREATE INDEX join_tokens_expires_at ON join_tokens (expires_at);

CREATE TABLE agents (
    spiffe_id TEXT COLLATE "C" PRIMARY KEY,
    attestation_type TEXT NOT NULL,
    selectors TEXT[] COLLATE "C" NOT NULL,  -- sorted, deduplicated
    serial TEXT COLLATE "C" NOT NULL,
    new_serial TEXT COLLATE "C",
    expires_at BIGINT NOT NULL,
    banned BOOLEAN NOT NULL,
    can_reattest BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen BIGINT NOT NULL
);

CREATE TABLE authorities (
    id TEXT COLLATE "C" PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('x509_root', 'x509_intermediate', 'jwt')),
    state TEXT NOT NULL CHECK (state IN ('prepared', 'active', 'old', 'tainted', 'revoked')),
    cert_der BYTEA,
    public_key_der BYTEA NOT NULL,
    key_id TEXT NOT NULL,
    issuer_id TEXT COLLATE "C",
    not_before BIGINT NOT NULL,
    not_after BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE bundles (
    trust_domain TEXT COLLATE "C" PRIMARY KEY,
    document BYTEA NOT NULL CHECK (octet_length(document) <= 1048576),
    sequence BIGINT NOT NULL CHECK (sequence >= 0),
    updated_at BIGINT NOT NULL
);

-- The change feed. An identity column never hands out a value twice, even after old events
-- are pruned, so a reader's cursor stays meaningful. Values are drawn only while the writer
-- holds the feed's advisory lock (see src/postgres/change_feed.rs), so events become visible
-- in sequence order and a reader of `seq > cursor` never passes one that commits later.
CREATE TABLE change_events (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    at BIGINT NOT NULL
);
