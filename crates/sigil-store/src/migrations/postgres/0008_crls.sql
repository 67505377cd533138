-- 0008: each X.509 authority's newest signed CRL, the PostgreSQL twin of ../0008_crls.sql:
-- written by the replica that holds the authority's key so that every replica serves every
-- replica's CRLs. A row is replaced only by a CRL with a higher number, in one conditional
-- upsert (src/postgres/crls.rs), and goes with its authority (the cascade). The size check only
-- caps what one row can hold; the store refuses a larger CRL first (model/crls.rs).
CREATE TABLE crls (
    authority_id TEXT COLLATE "C" PRIMARY KEY REFERENCES authorities (id) ON DELETE CASCADE,
    replica TEXT NOT NULL,
    number BIGINT NOT NULL CHECK (number >= 0),
    der BYTEA NOT NULL CHECK (octet_length(der) BETWEEN 1 AND 1048576),
    next_update BIGINT NOT NULL
);
