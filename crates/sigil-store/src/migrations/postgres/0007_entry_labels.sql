-- 0007: entry labels, the PostgreSQL twin of ../0007_entry_labels.sql: the operator's
-- `key=value` pairs that policy reads as a workload's `labels`, one JSON object of strings per
-- entry; entries made before this read as none. The bounds of keys and values are the store's
-- own checks (model/labels.rs); the length check only caps what one row can hold (32 labels of
-- a 63-byte key and a 128-byte value, each character escaped at worst).
ALTER TABLE entries ADD COLUMN labels TEXT NOT NULL DEFAULT '{}'
    CHECK (octet_length(labels) <= 16384);
