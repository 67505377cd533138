-- 0003: each authority belongs to the server replica that holds its private key and runs its
-- life cycle. Records written before replicas existed belong to '' (a single server).
ALTER TABLE authorities ADD COLUMN replica TEXT NOT NULL DEFAULT '';
