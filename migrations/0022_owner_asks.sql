-- A batch another account's listing ended (batches.ended_by) is asked of its owner until
-- the owner's answer is stored: once was not enough when that answer failed, was a 404
-- blip, or came from a replica behind (stale, kept out), and the other account's copy,
-- which may leave fields out, stayed for good. Three of the owner's syncs at most, so that
-- a route refusing the batch is not asked on every sync for ever.
ALTER TABLE batches ADD COLUMN owner_asks INTEGER NOT NULL DEFAULT 0;
