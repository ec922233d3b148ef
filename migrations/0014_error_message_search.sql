-- Request errors are searched by their distinct messages, not line by line: an error file
-- repeats a few messages over thousands of lines, and indexing every line cost the database
-- thread about 40 % more time per error line (and the files' writer is what a first sync
-- waits on); one more message to index is rare. Find the requests by their message:
--   SELECT * FROM batch_requests WHERE error_message IN
--     (SELECT message FROM request_error_messages_fts
--      WHERE request_error_messages_fts MATCH 'context length');
-- Messages are kept once seen (a message no request holds any more finds no request).
DROP TRIGGER batch_requests_fts_insert;
DROP TRIGGER batch_requests_fts_delete;
DROP TRIGGER batch_requests_fts_update;
DROP TABLE batch_requests_fts;

CREATE TABLE request_error_messages (
    id      INTEGER PRIMARY KEY,
    message TEXT NOT NULL UNIQUE
);
CREATE VIRTUAL TABLE request_error_messages_fts USING fts5 (
    message, content="request_error_messages", content_rowid="id"
);
CREATE TRIGGER request_error_messages_fts_insert AFTER INSERT ON request_error_messages BEGIN
    INSERT INTO request_error_messages_fts (rowid, message) VALUES (new.id, new.message);
END;
CREATE TRIGGER request_error_messages_fts_delete AFTER DELETE ON request_error_messages BEGIN
    INSERT INTO request_error_messages_fts (request_error_messages_fts, rowid, message)
    VALUES ('delete', old.id, old.message);
END;

INSERT INTO request_error_messages (message)
SELECT DISTINCT error_message FROM batch_requests WHERE error_message IS NOT NULL;

-- NOT EXISTS, not INSERT OR IGNORE: an upsert's own conflict handling overrides a trigger's.
CREATE TRIGGER batch_requests_error_message_insert AFTER INSERT ON batch_requests
WHEN new.error_message IS NOT NULL BEGIN
    INSERT INTO request_error_messages (message) SELECT new.error_message
    WHERE NOT EXISTS (SELECT 1 FROM request_error_messages WHERE message = new.error_message);
END;
CREATE TRIGGER batch_requests_error_message_update AFTER UPDATE OF error_message ON batch_requests
WHEN new.error_message IS NOT NULL AND new.error_message IS NOT old.error_message BEGIN
    INSERT INTO request_error_messages (message) SELECT new.error_message
    WHERE NOT EXISTS (SELECT 1 FROM request_error_messages WHERE message = new.error_message);
END;
