-- An incremental walk cut by the budget after it met its stop: how many pages
-- it had read past the stop (NULL: it had not met it). The next run goes on from its cursor
-- as the same walk, and ends it where it would have ended; begun again from the top, a
-- walk whose runs each read fewer pages than the head's creation second spans never ended.
ALTER TABLE walk_state ADD COLUMN pages_past_stop INTEGER;
