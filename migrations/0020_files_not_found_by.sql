-- A failure other than a 404 (a 503, a reset, a 403: one account's route) says nothing of
-- a file, and must not count as that account agreeing that the file is gone: not_found_by
-- holds the accounts whose ask answered 404 since the file was last read (a JSON array),
-- and a file is expired for good after three syncs of 404s only once each account that
-- may read it is among them. failed_by keeps every account whose ask failed, the last to
-- fail last: the one that failed longest ago asks first.
ALTER TABLE batch_files ADD COLUMN not_found_by TEXT;

-- The failures recorded before are taken as 404s where the file was answered 404 at all.
UPDATE batch_files SET not_found_by = failed_by WHERE not_found_runs > 0;
