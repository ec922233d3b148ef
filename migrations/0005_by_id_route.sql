-- When requests by id (GET /batches/{id}) last kept failing while the list answered: until
-- a day later, syncs refresh in-flight batches by walking the list down to them instead.

ALTER TABLE walk_state ADD COLUMN by_id_failed_at INTEGER;
