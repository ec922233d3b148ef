-- A file read whole without one request line is failed and asked for again: it may be a
-- proxy's page or an empty 200 in place of the file. Some servers do name an empty file (an
-- error file of a batch where nothing failed): once three syncs in a row agree, it is
-- recorded complete with 0 lines and no longer asked for, as a 404 is (not_found_runs).
ALTER TABLE batch_files ADD COLUMN empty_runs INTEGER NOT NULL DEFAULT 0;
