-- Before schema 23, a batch another account also lists, ended first in its owner's list,
-- was asked of no other account, and one ended first in another account's list was asked
-- of its owner until its answer was stored (schema 22) or once, whatever the answer
-- (schema 21): the copy stored may leave out what another account's route gives (a
-- gateway leaves fields out). Which copy is stored is not known: every account listing
-- such a batch, its owner too, asks for it until it answered (ended_by '*', which names
-- no account), about one walk of each account's list on its first sync.
UPDATE batches SET ended_by = '*', ended_asks = NULL
WHERE ended_by IS NULL AND listed_by IS NOT NULL
  AND status IN ('completed', 'expired', 'failed', 'cancelled');
