-- A batch ended naming no file (a list may leave file ids out: a gateway's) is asked for
-- by id by its owner a few times while the API keeps its files
-- (reads.select_ended_without_files): the asks answered so far. Its own count: counted
-- with the asks for another account's ended copy (ended_asks), an owner's listing taken
-- as its answer used them all up, the files never asked for.
ALTER TABLE batches ADD COLUMN file_asks INTEGER NOT NULL DEFAULT 0;
-- Those still to ask: few, found at once in a database of millions.
CREATE INDEX batches_ended_without_files ON batches (account, created_at)
WHERE output_file_id IS NULL AND error_file_id IS NULL AND file_asks < 3
  AND status IN ('cancelled', 'completed', 'expired');
