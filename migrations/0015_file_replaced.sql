-- A batch that names another file than the one stored (a gateway minting new ids): the
-- new file is fetched (store/writes.py), and the old file's lines are no longer the
-- batch's record.
CREATE TRIGGER batch_files_replaced AFTER UPDATE OF file_id ON batch_files
WHEN old.file_id != new.file_id BEGIN
    DELETE FROM batch_requests WHERE batch_id = old.batch_id AND file_id = old.file_id;
END;
