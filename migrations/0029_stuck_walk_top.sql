-- A walk stuck at its cursor (the list failing every request after it while its top
-- answers) walks the list's top down to its head on each run: where that walk of the top
-- stands, for the next stuck run to go on from (top_cursor NULL: not begun, or done), as
-- the state of a walk of its own: its cursor, its head (the batch its first page began
-- with), what the page ending at its cursor was asked after (NULL: the top), and the pages
-- it read past its stop. Begun again from the top on every run, a budget cutting each run
-- left the batches below its reach unstored while the list stayed stuck.
ALTER TABLE walk_state ADD COLUMN top_cursor TEXT;
ALTER TABLE walk_state ADD COLUMN top_head TEXT;
ALTER TABLE walk_state ADD COLUMN top_holder_after TEXT;
ALTER TABLE walk_state ADD COLUMN top_past_stop INTEGER;
