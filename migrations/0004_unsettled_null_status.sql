-- A batch listed without a status (null, or a value stored as NULL) has not settled: it is
-- refreshed like a status this version does not know, instead of never again.

DROP INDEX batches_unsettled;
CREATE INDEX batches_unsettled ON batches (created_at)
WHERE (status IS NULL OR status NOT IN ('completed', 'failed', 'expired', 'cancelled'))
  AND not_found_runs < 3;
