-- 0005: NHI governance, the PostgreSQL twin of ../0005_governance.sql: the tamper-evident audit
-- log (records chained by hash, checkpoints signed by a replica's audit key, and the public
-- halves of those keys), owners' reviews of entries, the workloads seen using each entry's
-- identity, and an owner for each federation relationship.
-- Audit times are Unix milliseconds; every other time is Unix seconds. Bounds mirror the
-- store's own checks (sigil-audit's AuditEvent::validate, the governance model).

-- One chain for every replica: `seq` is 1, 2, 3... without gaps, assigned by the store while it
-- holds the audit advisory lock (see src/postgres/audit.rs), and `hash` covers every other
-- column (sigil-audit's canonical encoding). The store never updates or deletes a record.
CREATE TABLE audit_records (
    seq BIGINT PRIMARY KEY,
    time BIGINT NOT NULL,
    replica TEXT COLLATE "C" NOT NULL CHECK (octet_length(replica) <= 256),
    actor TEXT COLLATE "C" NOT NULL CHECK (octet_length(actor) <= 2048),
    action TEXT COLLATE "C" NOT NULL CHECK (action <> '' AND octet_length(action) <= 2048),
    target TEXT COLLATE "C" NOT NULL CHECK (octet_length(target) <= 2048),
    outcome TEXT NOT NULL,
    details TEXT NOT NULL CHECK (octet_length(details) <= 8192),
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);

-- Each filter of `list_audit` walks its index in sequence order (the action prefix as a range).
CREATE INDEX audit_records_actor ON audit_records (actor, seq);
CREATE INDEX audit_records_action ON audit_records (action, seq);
CREATE INDEX audit_records_target ON audit_records (target, seq);
CREATE INDEX audit_records_time ON audit_records (time);

CREATE TABLE audit_checkpoints (
    seq BIGINT NOT NULL,
    key_id TEXT COLLATE "C" NOT NULL CHECK (octet_length(key_id) <= 256),
    hash TEXT NOT NULL CHECK (octet_length(hash) <= 256),
    time BIGINT NOT NULL,
    replica TEXT NOT NULL CHECK (octet_length(replica) <= 256),
    signature TEXT NOT NULL CHECK (octet_length(signature) <= 1024),
    PRIMARY KEY (seq, key_id)
);

CREATE TABLE audit_keys (
    key_id TEXT COLLATE "C" PRIMARY KEY CHECK (octet_length(key_id) <= 256),
    replica TEXT NOT NULL CHECK (octet_length(replica) <= 256),
    public_key TEXT NOT NULL CHECK (octet_length(public_key) <= 4096),  -- base64 DER SPKI
    created_at BIGINT NOT NULL
);

-- The latest review of each entry; it goes with the entry.
CREATE TABLE entry_reviews (
    entry_id TEXT COLLATE "C" PRIMARY KEY REFERENCES entries (id) ON DELETE CASCADE,
    reviewed_by TEXT NOT NULL CHECK (reviewed_by <> '' AND octet_length(reviewed_by) <= 1024),
    reviewed_at BIGINT NOT NULL,
    note TEXT NOT NULL CHECK (octet_length(note) <= 1024)
);

-- Counters per (entry, agent, uid, binary), merged column-wise from the agents' reports; they
-- go with the entry and are pruned by last_seen.
-- The key is the SQLite table's (entry, agent, uid, path, hash), but a B-tree index entry is
-- limited to about 2.7 kB while an agent ID may be 2 kB and a path 4 kB, so the unique key is
-- the entry and a SHA-256 of the rest, computed by the store (src/postgres/governance.rs): agent
-- ID, uid and binary hash (none holds a newline) each followed by a newline, then the path,
-- which makes the encoding unambiguous.
CREATE TABLE workload_usage (
    entry_id TEXT COLLATE "C" NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
    agent_id TEXT COLLATE "C" NOT NULL,
    uid BIGINT NOT NULL CHECK (uid BETWEEN 0 AND 4294967295),
    binary_path TEXT COLLATE "C" NOT NULL CHECK (octet_length(binary_path) <= 4096),
    binary_sha256 TEXT COLLATE "C" NOT NULL CHECK (binary_sha256 ~ '^([0-9a-f]{64})?$'),
    key_digest BYTEA NOT NULL CHECK (octet_length(key_digest) = 32),
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    fetches BIGINT NOT NULL CHECK (fetches >= 0),
    svids_issued BIGINT NOT NULL CHECK (svids_issued >= 0),
    PRIMARY KEY (entry_id, key_digest)
);

CREATE INDEX workload_usage_last_seen ON workload_usage (last_seen);

-- An identity's credentials, newest first (the inventory's "what was issued to it").
CREATE INDEX issued_credentials_spiffe_id ON issued_credentials (spiffe_id, issued_at);

-- Relationships made before owners existed have none ('').
ALTER TABLE federation_relationships ADD COLUMN owner TEXT COLLATE "C" NOT NULL DEFAULT '';
