-- The last account other than its owner whose list (or refresh by id) showed each batch. A batch stays the
-- account's that stored it first (0010), but its refresh and its files are the business of
-- every account that lists it: a database first synced as `default`, then through an
-- `[accounts.NAME]` table naming the same API, would otherwise leave `default`'s batches in
-- flight, and their files, to an account no longer synced. NULL: the account that owns it.

ALTER TABLE batches ADD COLUMN listed_by TEXT;
