-- Several accounts in one database: OpenAI projects, Azure OpenAI resources, compatible APIs.
-- Each has its own walk of its own list, and its own ledger rows. A batch belongs to the
-- account that stored it first: ids are unique within a provider, and a batch that two
-- accounts list (one project reached directly and through a gateway) is kept once, each
-- listing updating it, and never moves from one account to the other. What was synced
-- before accounts existed belongs to the account named `default`, its walk kept as it was.

ALTER TABLE batches ADD COLUMN account TEXT NOT NULL DEFAULT 'default';
ALTER TABLE sync_runs ADD COLUMN account TEXT NOT NULL DEFAULT 'default';

CREATE TABLE walk_state_of_accounts (
    account          TEXT PRIMARY KEY NOT NULL,
    cursor           TEXT,     -- last id of the last committed page; NULL: start at the top
    stop_id          TEXT,     -- this walk ends on the page holding this id; NULL: at the end
    head_id          TEXT,     -- newest id of the walk, once its first page is committed
    finished         INTEGER NOT NULL DEFAULT 0,
    updated_at       INTEGER NOT NULL,
    by_id_failed_at  INTEGER
);
INSERT INTO walk_state_of_accounts
    SELECT 'default', cursor, stop_id, head_id, finished, updated_at, by_id_failed_at
    FROM walk_state;
DROP TABLE walk_state;
ALTER TABLE walk_state_of_accounts RENAME TO walk_state;
