-- A walk left at a page said to be the list's last, whose check (one more request after
-- it) failed: a gateway that cannot page past the list's end fails that request on every
-- run, and every later sync failed there. The next run takes the same failure, while the
-- list's top answers, as the end.
ALTER TABLE walk_state ADD COLUMN end_unchecked INTEGER NOT NULL DEFAULT 0;
