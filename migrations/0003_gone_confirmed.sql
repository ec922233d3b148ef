-- A batch is no longer frozen by one 404: it is asked about again on later runs until the
-- API has answered 404 for it on 3 runs in a row, and listing it or an answer clears it.

ALTER TABLE batches ADD COLUMN not_found_runs INTEGER NOT NULL DEFAULT 0;  -- 404s in a row

-- Batches marked gone by one answer before this version are asked about again.
UPDATE batches SET not_found_runs = 1 WHERE gone_at IS NOT NULL;

DROP INDEX batches_unsettled;
CREATE INDEX batches_unsettled ON batches (created_at)
WHERE status NOT IN ('completed', 'failed', 'expired', 'cancelled') AND not_found_runs < 3;
