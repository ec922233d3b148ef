-- The batches ended naming no file (a list may leave file ids out: a gateway's), which
-- their owner asks for by id a few times while the API keeps their files
-- (reads.select_ended_without_files): few, found at once in a database of millions.
CREATE INDEX batches_ended_without_files ON batches (account, created_at)
WHERE output_file_id IS NULL AND error_file_id IS NULL
  AND status IN ('cancelled', 'completed', 'expired');
