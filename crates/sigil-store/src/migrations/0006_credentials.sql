-- 0006: brokered database credentials: the lease of each credential the server created in a
-- target database, and the credential targets created through the admin API (those from the
-- config file are not stored). No target's administrative password is ever stored.
-- Times are Unix seconds.

-- One row per credential, kept until pruned after its revocation. No foreign key to entries or
-- agents: a lease outlives them (deleting an entry revokes its leases, which stay as a record).
CREATE TABLE credential_leases (
    id TEXT PRIMARY KEY NOT NULL,
    target TEXT NOT NULL,
    role TEXT NOT NULL,
    spiffe_id TEXT NOT NULL,
    entry_id TEXT,
    agent_id TEXT,
    username TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    max_expires_at INTEGER NOT NULL,
    renewed_at INTEGER,
    state TEXT NOT NULL CHECK (state IN ('active', 'revoking', 'revoked')),
    claim_until INTEGER,
    revoked_at INTEGER,
    revoke_reason TEXT,
    replica TEXT NOT NULL,
    CHECK (expires_at <= max_expires_at),
    CHECK (state <> 'revoking' OR claim_until IS NOT NULL),
    CHECK (state <> 'revoked' OR revoked_at IS NOT NULL)
) STRICT;

-- Due leases: active ones by expiry, revoking ones by the end of their claim; revoked ones by
-- revocation time for pruning.
CREATE INDEX credential_leases_state_expires ON credential_leases (state, expires_at);
CREATE INDEX credential_leases_state_claim ON credential_leases (state, claim_until);
CREATE INDEX credential_leases_state_revoked ON credential_leases (state, revoked_at);
-- The filters of `list_leases`, each walked in id order.
CREATE INDEX credential_leases_spiffe_id ON credential_leases (spiffe_id, id);
CREATE INDEX credential_leases_entry_id ON credential_leases (entry_id, id);
CREATE INDEX credential_leases_agent_id ON credential_leases (agent_id, id);
CREATE INDEX credential_leases_target ON credential_leases (target, role, id);

-- Targets created through the admin API; `spec` is the server's JSON definition, which names
-- where the administrative password comes from but never holds it.
CREATE TABLE credential_targets (
    name TEXT PRIMARY KEY NOT NULL,
    owner TEXT NOT NULL,
    spec TEXT NOT NULL,
    revision INTEGER NOT NULL CHECK (revision >= 1),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;
