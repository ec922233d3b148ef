-- A batch another account's listing ended (batches.ended_by) is asked for, by its owner
-- and every other account listing it, until the owner's answer is stored: asked of the
-- owner once, an answer that failed, was a 404 blip, or came from a replica behind (stale,
-- kept out) left the other account's copy, which may leave fields out, for good. Three
-- asks of each account at most (a JSON object of each account's asks), so that a route
-- refusing the batch is not asked on every sync for ever, nor one account's asks spending
-- another's (the owner's, synced less often).
ALTER TABLE batches ADD COLUMN ended_asks TEXT;
