-- The account whose listing named a batch's file: a file id is one API's, and two accounts
-- may list one batch under file ids of their own (a gateway minting them). The batch's
-- owner names its files; another account's listing never replaces them, and fetches them
-- only when the owner is not synced in the same run (one API listed by a new account name).
-- NULL for files recorded before: any account that lists the batch fetches them.
ALTER TABLE batch_files ADD COLUMN named_by TEXT;
