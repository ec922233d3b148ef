-- Incremental syncs: batches the API no longer has, and the figures of the new run modes.

ALTER TABLE batches ADD COLUMN gone_at INTEGER;  -- when GET /batches/{id} last answered 404

ALTER TABLE sync_runs ADD COLUMN refreshed_by_id INTEGER NOT NULL DEFAULT 0;  -- GET /batches/{id}
ALTER TABLE sync_runs ADD COLUMN gone INTEGER NOT NULL DEFAULT 0;             -- of those, 404
ALTER TABLE sync_runs ADD COLUMN limiter_waits INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sync_runs ADD COLUMN limiter_wait_seconds REAL NOT NULL DEFAULT 0;

-- Finding the batches still in flight is the first step of every incremental sync.
CREATE INDEX batches_in_flight ON batches (created_at)
WHERE status IN ('validating', 'in_progress', 'finalizing', 'cancelling') AND gone_at IS NULL;
