"""batch-crawler: copy an organization's OpenAI Batches into SQLite."""
