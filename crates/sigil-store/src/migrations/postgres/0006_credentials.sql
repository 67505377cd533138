-- 0006: brokered database credentials, the PostgreSQL twin of ../0006_credentials.sql: the
-- lease of each credential the server created in a target database, and the credential targets
-- created through the admin API (those from the config file are not stored). No target's
-- administrative password is ever stored.
-- Times are Unix seconds. Bounds mirror the store's own checks (model/leases.rs).

-- One row per credential, kept until pruned after its revocation. No foreign key to entries or
-- agents: a lease outlives them (deleting an entry revokes its leases, which stay as a record).
CREATE TABLE credential_leases (
    id TEXT COLLATE "C" PRIMARY KEY CHECK (id <> '' AND octet_length(id) <= 128),
    target TEXT COLLATE "C" NOT NULL CHECK (target <> '' AND octet_length(target) <= 128),
    role TEXT COLLATE "C" NOT NULL CHECK (role <> '' AND octet_length(role) <= 128),
    spiffe_id TEXT COLLATE "C" NOT NULL
        CHECK (spiffe_id <> '' AND octet_length(spiffe_id) <= 2048),
    entry_id TEXT COLLATE "C" CHECK (octet_length(entry_id) <= 256),
    agent_id TEXT COLLATE "C" CHECK (octet_length(agent_id) <= 2048),
    username TEXT COLLATE "C" NOT NULL CHECK (username <> '' AND octet_length(username) <= 128),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    max_expires_at BIGINT NOT NULL,
    renewed_at BIGINT,
    state TEXT NOT NULL CHECK (state IN ('active', 'revoking', 'revoked')),
    claim_until BIGINT,
    revoked_at BIGINT,
    revoke_reason TEXT CHECK (octet_length(revoke_reason) <= 256),
    replica TEXT NOT NULL CHECK (octet_length(replica) <= 256),
    CHECK (expires_at <= max_expires_at),
    CHECK (state <> 'revoking' OR claim_until IS NOT NULL),
    CHECK (state <> 'revoked' OR revoked_at IS NOT NULL)
);

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
    name TEXT COLLATE "C" PRIMARY KEY CHECK (name <> '' AND octet_length(name) <= 128),
    owner TEXT NOT NULL CHECK (owner <> '' AND octet_length(owner) <= 256),
    spec TEXT NOT NULL CHECK (octet_length(spec) <= 65536),
    revision BIGINT NOT NULL CHECK (revision >= 1),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
