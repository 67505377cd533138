-- 0002: the inventory of issued credentials and the revocations made from it. Both are kept
-- until the credential they name expires, then pruned (hence the expires_at indexes).
-- kind is `x509_svid` or `jwt_svid`; SPIFFE IDs are stored as text and re-parsed on load.

CREATE TABLE issued_credentials (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,              -- X509-SVID serial (lowercase hex) or JWT-SVID jti
    spiffe_id TEXT NOT NULL,
    authority_id TEXT NOT NULL,
    issued_to TEXT NOT NULL,       -- SPIFFE ID of the agent it was issued to
    issued_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (kind, id)
) STRICT;

CREATE INDEX issued_credentials_expires_at ON issued_credentials (expires_at);

-- spiffe_id, authority_id and expires_at are copied from the issued credential, so the
-- deny-list can be served and pruned without a join.
CREATE TABLE revocations (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    spiffe_id TEXT NOT NULL,
    authority_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    revoked_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (kind, id)
) STRICT;

CREATE INDEX revocations_expires_at ON revocations (expires_at);
