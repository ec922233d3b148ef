-- A batch whose last ask by id by an account failed past its retries (a 5xx, a hang, a
-- broken answer; not a 429), or, asked for its files, outlasted the time budget: when,
-- for each account; an answer by id clears it. Such a batch is asked once, no retry, and
-- for its files after the others: one whose every ask hangs cost every sync its every
-- retry (four minutes with the defaults), or its whole time budget.
ALTER TABLE batches ADD COLUMN by_id_failed_by TEXT;
