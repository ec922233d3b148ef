-- A batch to refresh that an account asked for by id and looked for in its list, finding
-- nothing it could store (refused by id, and gone from the list): when, for each account
-- (a JSON object; one account's misses are not another's, whose route may list it).
-- Refreshes take the least recently seen or missed first; ordered by when it was last
-- seen alone, such a batch was first on every run on a budget, and those after it were
-- never reached.
ALTER TABLE batches ADD COLUMN missed_by TEXT;
-- A batch an account asked for by id as its time budget ran out: when, for each account.
-- Its retries may outlast every run's budget: it is looked for in the list before it is
-- asked by id again (others missed are asked by id first: most answer again).
ALTER TABLE batches ADD COLUMN cut_by TEXT;
-- A visit on a budget (reading the list for a batch, from a stored neighbour or from the
-- top) stopped after this cursor: the next run goes on from there for that batch, so that
-- runs on a budget reach a batch deeper than one run reads.
ALTER TABLE walk_state ADD COLUMN visit_target TEXT;
ALTER TABLE walk_state ADD COLUMN visit_cursor TEXT;
