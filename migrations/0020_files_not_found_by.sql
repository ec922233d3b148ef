-- A failure other than a 404 (a 503, a reset, a 403: one account's route) says nothing of
-- a file, and must not count as that account agreeing that the file is gone: not_found_by
-- holds the accounts whose ask answered 404 since the file was last read (a JSON array),
-- and a file is expired for good after three syncs of 404s only once each account that
-- may read it is among them. failed_by keeps every account whose ask failed, the last to
-- fail last: the one that failed longest ago asks first.
ALTER TABLE batch_files ADD COLUMN not_found_by TEXT;

-- Where one account's asks failed since the file was last read, and it was answered 404,
-- those were its 404s; where several failed, which answered 404 is not known, and each
-- asks again (taken as agreeing, one whose failure was a 503 expired the file for good).
UPDATE batch_files SET not_found_by = failed_by
WHERE not_found_runs > 0 AND json_valid(failed_by) AND json_array_length(failed_by) = 1;
