-- 0005: NHI governance: the tamper-evident audit log (records chained by hash, checkpoints
-- signed by a replica's audit key, and the public halves of those keys), owners' reviews of
-- entries, the workloads seen using each entry's identity, and an owner for each federation
-- relationship.
-- Audit times are Unix milliseconds; every other time is Unix seconds.

-- One chain for every replica: `seq` is 1, 2, 3... without gaps, assigned by the store inside
-- the transaction that reads the head, and `hash` covers every other column (sigil-audit's
-- canonical encoding). The store never updates or deletes a record.
CREATE TABLE audit_records (
    seq INTEGER PRIMARY KEY NOT NULL,
    time INTEGER NOT NULL,
    replica TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    outcome TEXT NOT NULL,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
) STRICT;

-- Each filter of `list_audit` walks its index in sequence order (the action prefix as a range).
CREATE INDEX audit_records_actor ON audit_records (actor, seq);
CREATE INDEX audit_records_action ON audit_records (action, seq);
CREATE INDEX audit_records_target ON audit_records (target, seq);
CREATE INDEX audit_records_time ON audit_records (time);

CREATE TABLE audit_checkpoints (
    seq INTEGER NOT NULL,
    key_id TEXT NOT NULL,
    hash TEXT NOT NULL,
    time INTEGER NOT NULL,
    replica TEXT NOT NULL,
    signature TEXT NOT NULL,
    PRIMARY KEY (seq, key_id)
) STRICT;

CREATE TABLE audit_keys (
    key_id TEXT PRIMARY KEY NOT NULL,
    replica TEXT NOT NULL,
    public_key TEXT NOT NULL,      -- base64 of the DER SubjectPublicKeyInfo
    created_at INTEGER NOT NULL
) STRICT;

-- The latest review of each entry; it goes with the entry.
CREATE TABLE entry_reviews (
    entry_id TEXT PRIMARY KEY NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
    reviewed_by TEXT NOT NULL,
    reviewed_at INTEGER NOT NULL,
    note TEXT NOT NULL
) STRICT;

-- Counters per (entry, agent, uid, binary), merged column-wise from the agents' reports; they
-- go with the entry and are pruned by last_seen.
CREATE TABLE workload_usage (
    entry_id TEXT NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
    agent_id TEXT NOT NULL,
    uid INTEGER NOT NULL,
    binary_path TEXT NOT NULL,
    binary_sha256 TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    fetches INTEGER NOT NULL,
    svids_issued INTEGER NOT NULL,
    PRIMARY KEY (entry_id, agent_id, uid, binary_path, binary_sha256)
) STRICT;

CREATE INDEX workload_usage_last_seen ON workload_usage (last_seen);

-- An identity's credentials, newest first (the inventory's "what was issued to it").
CREATE INDEX issued_credentials_spiffe_id ON issued_credentials (spiffe_id, issued_at);

-- Relationships made before owners existed have none ('').
ALTER TABLE federation_relationships ADD COLUMN owner TEXT NOT NULL DEFAULT '';
