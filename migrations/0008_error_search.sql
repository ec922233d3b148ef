-- Full-text search (FTS5) over error messages: the batch's own (batch_errors) and its
-- requests' (batch_requests), kept current by triggers. Datasette finds both indexes and
-- shows a search box on those tables; in SQL:
--   SELECT * FROM batch_requests WHERE rowid IN
--     (SELECT rowid FROM batch_requests_fts WHERE batch_requests_fts MATCH 'context length');
-- Only rows with a message or a code are indexed: output lines, most rows, cost nothing.

-- The index points at rows by rowid: batch_errors gets one (it was WITHOUT ROWID).
-- A copy, not a rename, so that no view is checked against a table half replaced.
CREATE TEMP TABLE batch_errors_copy AS SELECT * FROM batch_errors;
DROP TABLE batch_errors;
CREATE TABLE batch_errors (
    batch_id TEXT NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,  -- index in errors.data
    code     TEXT,
    message  TEXT,
    param    TEXT,
    line     INTEGER,
    PRIMARY KEY (batch_id, position)
);
INSERT INTO batch_errors (batch_id, position, code, message, param, line)
SELECT batch_id, position, code, message, param, line FROM temp.batch_errors_copy;
DROP TABLE temp.batch_errors_copy;

CREATE VIRTUAL TABLE batch_errors_fts USING fts5 (
    message, code, content="batch_errors", content_rowid="rowid"
);
INSERT INTO batch_errors_fts (rowid, message, code)
SELECT rowid, message, code FROM batch_errors WHERE message IS NOT NULL OR code IS NOT NULL;

CREATE TRIGGER batch_errors_fts_insert AFTER INSERT ON batch_errors
WHEN new.message IS NOT NULL OR new.code IS NOT NULL BEGIN
    INSERT INTO batch_errors_fts (rowid, message, code) VALUES (new.rowid, new.message, new.code);
END;
CREATE TRIGGER batch_errors_fts_delete AFTER DELETE ON batch_errors
WHEN old.message IS NOT NULL OR old.code IS NOT NULL BEGIN
    INSERT INTO batch_errors_fts (batch_errors_fts, rowid, message, code)
    VALUES ('delete', old.rowid, old.message, old.code);
END;
CREATE TRIGGER batch_errors_fts_update AFTER UPDATE OF message, code ON batch_errors BEGIN
    INSERT INTO batch_errors_fts (batch_errors_fts, rowid, message, code)
    SELECT 'delete', old.rowid, old.message, old.code
    WHERE old.message IS NOT NULL OR old.code IS NOT NULL;
    INSERT INTO batch_errors_fts (rowid, message, code)
    SELECT new.rowid, new.message, new.code
    WHERE new.message IS NOT NULL OR new.code IS NOT NULL;
END;

CREATE VIRTUAL TABLE batch_requests_fts USING fts5 (
    error_message, error_code, content="batch_requests", content_rowid="rowid"
);
INSERT INTO batch_requests_fts (rowid, error_message, error_code)
SELECT rowid, error_message, error_code FROM batch_requests
WHERE error_message IS NOT NULL OR error_code IS NOT NULL;

CREATE TRIGGER batch_requests_fts_insert AFTER INSERT ON batch_requests
WHEN new.error_message IS NOT NULL OR new.error_code IS NOT NULL BEGIN
    INSERT INTO batch_requests_fts (rowid, error_message, error_code)
    VALUES (new.rowid, new.error_message, new.error_code);
END;
CREATE TRIGGER batch_requests_fts_delete AFTER DELETE ON batch_requests
WHEN old.error_message IS NOT NULL OR old.error_code IS NOT NULL BEGIN
    INSERT INTO batch_requests_fts (batch_requests_fts, rowid, error_message, error_code)
    VALUES ('delete', old.rowid, old.error_message, old.error_code);
END;
CREATE TRIGGER batch_requests_fts_update AFTER UPDATE OF error_message, error_code
ON batch_requests BEGIN
    INSERT INTO batch_requests_fts (batch_requests_fts, rowid, error_message, error_code)
    SELECT 'delete', old.rowid, old.error_message, old.error_code
    WHERE old.error_message IS NOT NULL OR old.error_code IS NOT NULL;
    INSERT INTO batch_requests_fts (rowid, error_message, error_code)
    SELECT new.rowid, new.error_message, new.error_code
    WHERE new.error_message IS NOT NULL OR new.error_code IS NOT NULL;
END;
