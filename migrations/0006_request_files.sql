-- Every request's outcome, from the output and error files of terminal batches, kept before
-- the API deletes them (30 days by default, an hour at the least).

-- One row per file a terminal batch names. A row is added `pending` in the transaction that
-- stores the batch, so the files still to fetch are a query, and survive any interruption.
-- Keyed by batch and kind, not by the file's random id: rows are then added at the end of
-- the key's index as batches are walked, instead of all over it (a walk recording its files
-- took 60 % longer keyed by file id).
CREATE TABLE batch_files (
    batch_id   TEXT NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
    kind       TEXT NOT NULL,     -- output, error
    file_id    TEXT NOT NULL,
    state      TEXT NOT NULL,     -- pending, complete, expired (404), failed (see error)
    bytes      INTEGER,           -- read, once complete
    lines      INTEGER,           -- request lines stored, once complete
    error      TEXT,              -- why the last attempt failed
    fetched_at INTEGER,           -- when it was last complete, expired or failed
    expires_at INTEGER,           -- when the API deletes it, where known
    PRIMARY KEY (batch_id, kind)
);

-- The files still to fetch, in the order they were recorded: a short index, whatever the
-- number of files stored already.
CREATE INDEX batch_files_to_fetch ON batch_files (kind) WHERE state IN ('pending', 'failed');

-- One row per request line; `custom_id` is unique within a batch, lines come in no order.
CREATE TABLE batch_requests (
    batch_id            TEXT NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
    custom_id           TEXT NOT NULL,
    batch_request_id    TEXT,      -- the line's batch_req_... id
    file_id             TEXT NOT NULL,
    kind                TEXT NOT NULL,  -- output, error: the file the line came from
    status_code         INTEGER,   -- NULL for a request never run (expired, cancelled)
    request_id          TEXT,
    error_code          TEXT,
    error_message       TEXT,
    error_type          TEXT,
    error_param         TEXT,
    model               TEXT,
    finish_reason       TEXT,      -- chat: the first choice's; responses: completed, or why not
    input_tokens        INTEGER,
    cached_input_tokens INTEGER,
    output_tokens       INTEGER,
    reasoning_tokens    INTEGER,
    total_tokens        INTEGER,
    body                TEXT,      -- the response body as JSON, only with `bodies = true`
    PRIMARY KEY (batch_id, custom_id)
);

CREATE INDEX batch_requests_failed ON batch_requests (batch_id) WHERE kind = 'error';

-- Files of batches stored by earlier versions: fetched by the next sync.
INSERT OR IGNORE INTO batch_files (file_id, batch_id, kind, state)
SELECT error_file_id, id, 'error', 'pending' FROM batches
WHERE status IN ('completed', 'failed', 'expired', 'cancelled') AND error_file_id IS NOT NULL;
INSERT OR IGNORE INTO batch_files (file_id, batch_id, kind, state)
SELECT output_file_id, id, 'output', 'pending' FROM batches
WHERE status IN ('completed', 'failed', 'expired', 'cancelled') AND output_file_id IS NOT NULL;

-- "Which requests failed and why", newest batch first.
CREATE VIEW failed_requests AS
SELECT r.batch_id, b.created_at, r.custom_id, r.status_code, r.error_code, r.error_type,
       r.error_message, r.model
FROM batch_requests AS r JOIN batches AS b ON b.id = r.batch_id
WHERE r.kind = 'error'
ORDER BY b.created_at DESC, r.custom_id;

-- Per batch: lines by status code and finish reason.
CREATE VIEW request_outcomes AS
SELECT batch_id, kind, status_code, finish_reason, count(*) AS requests,
       sum(total_tokens) AS total_tokens
FROM batch_requests
GROUP BY batch_id, kind, status_code, finish_reason;

ALTER TABLE sync_runs ADD COLUMN files INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sync_runs ADD COLUMN request_lines INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sync_runs ADD COLUMN file_bytes INTEGER NOT NULL DEFAULT 0;
