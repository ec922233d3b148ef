-- A file id is one API's, and two accounts may list one batch: the accounts that may ask
-- for its files are its owner, the last other account listing it (batches.listed_by) and
-- the account whose listing named the file (named_by). One account's route may fail where
-- another's serves the files (a gateway without the files route): failed_by holds the
-- accounts whose ask failed since the file was last read (a JSON array), and another
-- account of the run that may read it asks first.
ALTER TABLE batch_files ADD COLUMN failed_by TEXT;

-- A file answered 404 is expired for good once three syncs answered 404 since it was last
-- read (another failure between says nothing of the file) and each account that may read
-- it was among them, or once six did, whoever answered (an account that never asks, not
-- synced or not asking for that kind, does not keep it asked for ever); not_found_runs is
-- then 6. Those expired for good before were
-- at 3, asked of the accounts listing the batch.
UPDATE batch_files SET not_found_runs = 6, failed_by = (
    SELECT CASE WHEN b.listed_by IS NULL THEN json_array(b.account)
        ELSE json_array(b.account, b.listed_by) END
    FROM batches AS b WHERE b.id = batch_files.batch_id
) WHERE not_found_runs >= 3;

DROP INDEX batch_files_to_fetch;
CREATE INDEX batch_files_to_fetch ON batch_files (kind)
    WHERE state IN ('pending', 'failed') OR (state = 'expired' AND not_found_runs < 6);
DROP INDEX batch_files_without_bodies;
CREATE INDEX batch_files_without_bodies ON batch_files (kind)
    WHERE state = 'complete' AND bodies = 0 AND not_found_runs < 6;

-- Those expired for good, each asked once of an account that may read it and has not
-- asked (one that syncs less often, or was down, than the one answering 404).
CREATE INDEX batch_files_expired ON batch_files (kind)
    WHERE state = 'expired' AND not_found_runs >= 6;
