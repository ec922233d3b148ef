-- Which reading of its file last wrote a request row: a random number a reading draws. A
-- file read whole is the record of its batch's requests of its kind, so completing it
-- deletes the rows no line of it wrote: a file's own earlier lines (its content changed
-- under the same id, read again for bodies, or after a reading cut short while the batch
-- kept another file's lines) as well as those of a file the batch named before. Rows of
-- earlier versions have none, and go the same way when their file is next read whole.
ALTER TABLE batch_requests ADD COLUMN reading INTEGER;
