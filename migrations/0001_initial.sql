-- The first schema: batches, their error lines, the walk state and the run ledger.
-- Times are unix seconds (INTEGER), as the API sends them.

CREATE TABLE batches (
    id                       TEXT PRIMARY KEY NOT NULL,
    object                   TEXT,
    endpoint                 TEXT,
    model                    TEXT,
    status                   TEXT,
    completion_window        TEXT,
    input_file_id            TEXT,
    output_file_id           TEXT,
    error_file_id            TEXT,
    created_at               INTEGER,
    in_progress_at           INTEGER,
    expires_at               INTEGER,
    finalizing_at            INTEGER,
    completed_at             INTEGER,
    failed_at                INTEGER,
    expired_at               INTEGER,
    cancelling_at            INTEGER,
    cancelled_at             INTEGER,
    request_counts_total     INTEGER,
    request_counts_completed INTEGER,
    request_counts_failed    INTEGER,
    input_tokens             INTEGER,
    cached_input_tokens      INTEGER,
    output_tokens            INTEGER,
    reasoning_tokens         INTEGER,
    total_tokens             INTEGER,
    metadata                 TEXT,     -- JSON object, or NULL
    raw                      TEXT NOT NULL,  -- the whole Batch object as the API sent it
    first_seen_at            INTEGER NOT NULL,
    last_seen_at             INTEGER NOT NULL
);

CREATE INDEX batches_status ON batches (status);
CREATE INDEX batches_created_at ON batches (created_at);
CREATE INDEX batches_model ON batches (model);

CREATE TABLE batch_errors (
    batch_id TEXT NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,  -- index in errors.data
    code     TEXT,
    message  TEXT,
    param    TEXT,
    line     INTEGER,
    PRIMARY KEY (batch_id, position)
) WITHOUT ROWID;

-- One row: where the current walk of the list stands.
CREATE TABLE walk_state (
    singleton   INTEGER PRIMARY KEY CHECK (singleton = 1),
    cursor      TEXT,     -- last id of the last committed page; NULL: start at the top
    stop_id     TEXT,     -- this walk ends on the page holding this id; NULL: at the end
    head_id     TEXT,     -- newest id of the walk, once its first page is committed
    finished    INTEGER NOT NULL DEFAULT 0,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE sync_runs (
    id              INTEGER PRIMARY KEY,
    started_at      INTEGER NOT NULL,
    ended_at        INTEGER,
    mode            TEXT NOT NULL,   -- full, resume
    outcome         TEXT NOT NULL,   -- running, complete, partial, failed, interrupted
    pages           INTEGER NOT NULL DEFAULT 0,
    batches_seen    INTEGER NOT NULL DEFAULT 0,
    batches_new     INTEGER NOT NULL DEFAULT 0,
    batches_updated INTEGER NOT NULL DEFAULT 0,
    error_lines     INTEGER NOT NULL DEFAULT 0,
    retries         INTEGER NOT NULL DEFAULT 0,
    warnings        TEXT,            -- JSON list of strings, or NULL
    error           TEXT,            -- the one-line error of a failed run
    base_url        TEXT NOT NULL
);

-- Seconds spent in each stage, for "how long did each stage take" questions.
CREATE VIEW batch_durations AS
SELECT
    id,
    status,
    model,
    created_at,
    in_progress_at - created_at                                   AS validating_seconds,
    finalizing_at - in_progress_at                                AS in_progress_seconds,
    completed_at - finalizing_at                                  AS finalizing_seconds,
    coalesce(completed_at, failed_at, expired_at, cancelled_at) - created_at AS total_seconds
FROM batches;
