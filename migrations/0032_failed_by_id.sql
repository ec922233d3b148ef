-- A batch whose last ask by id by an account failed past its retries (a 5xx, a hang, a
-- broken answer; not a 429): when, for each account; an answer by id clears it. Such a
-- batch is looked for in the list before it is asked by id again, as one cut by a time
-- budget is (cut_by): asked by id first, one whose every ask hangs cost every sync its
-- every retry (four minutes with the defaults), though the list showed it each time.
ALTER TABLE batches ADD COLUMN by_id_failed_by TEXT;
