"""batch-crawler: copy an organization's OpenAI Batches into SQLite."""

__version__ = "0.1.0"
