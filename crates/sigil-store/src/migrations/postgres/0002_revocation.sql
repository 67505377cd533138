-- 0002: the inventory of issued credentials and the revocations made from it, the PostgreSQL
-- twin of ../0002_revocation.sql. Both are kept until the credential they name expires, then
-- pruned (hence the expires_at indexes). SPIFFE IDs are stored as text and re-parsed on load.

CREATE TABLE issued_credentials (
    kind TEXT COLLATE "C" NOT NULL CHECK (kind IN ('x509_svid', 'jwt_svid')),
    -- X509-SVID serial (lowercase hex) or JWT-SVID jti
    id TEXT COLLATE "C" NOT NULL CHECK (id <> '' AND octet_length(id) <= 128),
    spiffe_id TEXT NOT NULL,
    authority_id TEXT NOT NULL,
    issued_to TEXT NOT NULL,       -- SPIFFE ID of the agent it was issued to
    issued_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (kind, id)
);

CREATE INDEX issued_credentials_expires_at ON issued_credentials (expires_at);

-- spiffe_id, authority_id and expires_at are copied from the issued credential, so the
-- deny-list can be served and pruned without a join.
CREATE TABLE revocations (
    kind TEXT COLLATE "C" NOT NULL CHECK (kind IN ('x509_svid', 'jwt_svid')),
    id TEXT COLLATE "C" NOT NULL CHECK (id <> '' AND octet_length(id) <= 128),
    spiffe_id TEXT NOT NULL,
    authority_id TEXT NOT NULL,
    reason TEXT NOT NULL CHECK (octet_length(reason) <= 1024),
    revoked_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (kind, id)
);

CREATE INDEX revocations_expires_at ON revocations (expires_at);
