-- Several accounts listing one batch. Each account other than its owner whose list or
-- refresh showed the batch refreshes it while in flight: with three accounts, the batch
-- was left to the last one listing it (batches.listed_by, kept for its files), and when
-- that one was no longer synced, to none of the others.
CREATE TABLE batch_listings (
    batch_id TEXT NOT NULL,
    account  TEXT NOT NULL,
    PRIMARY KEY (batch_id, account)
) WITHOUT ROWID;
INSERT INTO batch_listings SELECT id, listed_by FROM batches WHERE listed_by IS NOT NULL;
-- Which others listed a batch before is not known: a batch in flight that another listed
-- is refreshed by every other account with a walk (one whose route lacks it stops after
-- three 404s), rather than left to one no longer synced.
INSERT OR IGNORE INTO batch_listings
SELECT b.id, w.account FROM batches AS b JOIN walk_state AS w ON w.account != b.account
WHERE b.listed_by IS NOT NULL
  AND (b.status IS NULL OR b.status NOT IN ('completed', 'failed', 'expired', 'cancelled'));

-- A 404 by id is one account's route's answer (a gateway knowing only its own batches): a
-- batch is no longer asked about by an account once three of its own syncs were answered
-- 404 since it was last listed or answered (not_found_by, a JSON object of each account's
-- 404s; not_found_runs stays every account's); another account listing it asks on.
ALTER TABLE batches ADD COLUMN not_found_by TEXT;

-- Where no other account lists a batch, its owner's asks were the 404s.
UPDATE batches SET not_found_by = json_object(account, not_found_runs)
WHERE not_found_runs > 0 AND listed_by IS NULL;

-- A batch another account's listing (or refresh) stored ended, and the account (NULL: none,
-- or its owner has shown it ended since): a gateway may leave fields out (usage, errors,
-- file ids), and its owner, which may list the batch no more, refreshes it once. Those
-- ended so before are not known.
ALTER TABLE batches ADD COLUMN ended_by TEXT;
