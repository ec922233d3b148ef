-- Incremental syncs: batches the API no longer has, and the figures of the new run modes.

ALTER TABLE batches ADD COLUMN gone_at INTEGER;  -- when GET /batches/{id} last answered 404

ALTER TABLE sync_runs ADD COLUMN refreshed_by_id INTEGER NOT NULL DEFAULT 0;  -- GET /batches/{id}
ALTER TABLE sync_runs ADD COLUMN gone INTEGER NOT NULL DEFAULT 0;             -- of those, 404
ALTER TABLE sync_runs ADD COLUMN limiter_waits INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sync_runs ADD COLUMN limiter_wait_seconds REAL NOT NULL DEFAULT 0;

-- Finding the batches that may still change (any status but the four terminal ones, so an
-- unknown new status counts too) is the first step of every incremental sync.
CREATE INDEX batches_unsettled ON batches (created_at)
WHERE status NOT IN ('completed', 'failed', 'expired', 'cancelled') AND gone_at IS NULL;
