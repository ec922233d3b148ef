-- What the page ending at a walk's cursor was asked after (holder_after, NULL for the top;
-- holder_known 0 for a walk saved by an earlier build). A resumed walk reads that page
-- again to tell whether its cursor is still listed: a batch may leave the list while it is
-- still answered by id, and a server answer `after` it with an empty page (the walk ended
-- there, the batches below never stored) or a 500 (every sync failed there).
ALTER TABLE walk_state ADD COLUMN holder_after TEXT;
ALTER TABLE walk_state ADD COLUMN holder_known INTEGER NOT NULL DEFAULT 0;
