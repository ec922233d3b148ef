-- Whether a file's lines were stored with their response bodies (1) or without (0); NULL
-- until it is stored whole. A sync that keeps bodies fetches again, while the API still
-- has them, the files stored without: turning `bodies` on after earlier syncs fills them
-- in, as turning `outputs` on fetches the output files.
ALTER TABLE batch_files ADD COLUMN bodies INTEGER;

-- Files stored before: with bodies if one of their lines holds one (a file whose requests
-- all went unanswered holds none either way, and is fetched once more).
UPDATE batch_files SET bodies = EXISTS (
    SELECT 1 FROM batch_requests AS r
    WHERE r.batch_id = batch_files.batch_id AND r.kind = batch_files.kind
        AND r.file_id = batch_files.file_id AND r.body IS NOT NULL
) WHERE state = 'complete';

-- The files to fetch again for their bodies: a 404 three syncs in a row ends the asking,
-- the lines stored before staying as they are.
CREATE INDEX batch_files_without_bodies ON batch_files (kind)
    WHERE state = 'complete' AND bodies = 0 AND not_found_runs < 3;
