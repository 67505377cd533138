-- 0008: each X.509 authority's newest signed CRL, written by the replica that holds its key so
-- that every replica serves every replica's CRLs. A row is replaced only by a CRL with a higher
-- number (src/sqlite/crls.rs) and goes with its authority (the cascade). The size check only
-- caps what one row can hold; the store refuses a larger CRL first (model/crls.rs).
CREATE TABLE crls (
    authority_id TEXT PRIMARY KEY NOT NULL REFERENCES authorities (id) ON DELETE CASCADE,
    replica TEXT NOT NULL,
    number INTEGER NOT NULL CHECK (number >= 0),
    der BLOB NOT NULL CHECK (length(der) BETWEEN 1 AND 1048576),
    next_update INTEGER NOT NULL
) STRICT;
