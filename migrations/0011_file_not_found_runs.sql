-- One 404 for a file is not the last word (a replica behind, a blip): a file answered so is
-- asked for again on the next syncs, and taken as expired once three in a row agree, as
-- batches are (batches.not_found_runs).

ALTER TABLE batch_files ADD COLUMN not_found_runs INTEGER NOT NULL DEFAULT 0;

-- Files answered 404 before this version were asked once: they get the other two asks.
UPDATE batch_files SET not_found_runs = 1 WHERE state = 'expired';

DROP INDEX batch_files_to_fetch;
CREATE INDEX batch_files_to_fetch ON batch_files (kind)
    WHERE state IN ('pending', 'failed') OR (state = 'expired' AND not_found_runs < 3);
