-- Which accounts may read a batch's file, and which answered 404 for it. A file id is one
-- API's: the accounts that may ask for it are the batch's owner, the account whose listing
-- named it (named_by), and another account whose listing names the same id (shared_with;
-- a gateway passing ids through). A gateway minting ids of its own is none of these.
ALTER TABLE batch_files ADD COLUMN shared_with TEXT;

-- The accounts whose API answered 404 in the syncs of the current run of 404s (a JSON
-- array; NULL once another answer came). A file is expired for good once three syncs in a
-- row answered 404 and each account that may read it was among them: one account's route
-- may lack the files another reads (not_found_runs stops at 2 until then).
ALTER TABLE batch_files ADD COLUMN not_found_by TEXT;

-- Files recorded under schema 18, still to fetch: the last other account listing the batch
-- may read them, as it did while the owner was not synced.
UPDATE batch_files SET shared_with = (SELECT listed_by FROM batches WHERE id = batch_id)
    WHERE named_by IS NOT NULL AND (state != 'complete' OR bodies = 0);
