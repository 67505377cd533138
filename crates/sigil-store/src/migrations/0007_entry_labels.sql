-- 0007: entry labels, the operator's `key=value` pairs that policy reads as a workload's
-- `labels`. One JSON object of strings per entry; entries made before this read as none. The
-- bounds of keys and values are the store's own checks (model/labels.rs).
ALTER TABLE entries ADD COLUMN labels TEXT NOT NULL DEFAULT '{}'
    CHECK (json_valid(labels) AND json_type(labels) = 'object');
