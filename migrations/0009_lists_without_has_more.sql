-- Compatible lists that never say has_more (Groq's, say) are walked until an empty page:
-- how many of a run's list pages came that way, so that the ledger shows the list's mode.

ALTER TABLE sync_runs ADD COLUMN pages_without_has_more INTEGER NOT NULL DEFAULT 0;
