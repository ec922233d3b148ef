-- Model prices, and what each batch cost at them.

-- USD per 1M tokens. The rows below are the default snapshot: OpenAI's standard rates from the
-- LiteLLM model price map as of 2026-07-24, with its explicit batch rates where it has them
-- (`batch-crawler prices load FILE` replaces or adds rates). A batch rate left NULL is billed
-- at 50 % of the standard one, as the Batch API bills.
CREATE TABLE model_prices (
    model              TEXT PRIMARY KEY NOT NULL,
    input              REAL,
    cached_input       REAL,
    output             REAL,
    batch_input        REAL,
    batch_cached_input REAL,
    batch_output       REAL,
    source             TEXT NOT NULL,
    as_of              TEXT NOT NULL  -- the date the rates were read, YYYY-MM-DD
);

INSERT INTO model_prices (model, input, cached_input, output, batch_input, batch_cached_input, batch_output, source, as_of)
SELECT column1, column2, column3, column4, column5, column6, column7,
       'OpenAI rates via the LiteLLM model price map', '2026-07-24'
FROM (VALUES
    ('gpt-3.5-turbo', 0.5, NULL, 1.5, NULL, NULL, NULL),
    ('gpt-3.5-turbo-0125', 0.5, NULL, 1.5, NULL, NULL, NULL),
    ('gpt-3.5-turbo-1106', 1, NULL, 2, NULL, NULL, NULL),
    ('gpt-3.5-turbo-16k', 3, NULL, 4, NULL, NULL, NULL),
    ('gpt-4', 30, NULL, 60, NULL, NULL, NULL),
    ('gpt-4-0125-preview', 10, NULL, 30, NULL, NULL, NULL),
    ('gpt-4-0314', 30, NULL, 60, NULL, NULL, NULL),
    ('gpt-4-0613', 30, NULL, 60, NULL, NULL, NULL),
    ('gpt-4-1106-preview', 10, NULL, 30, NULL, NULL, NULL),
    ('gpt-4-turbo', 10, NULL, 30, NULL, NULL, NULL),
    ('gpt-4-turbo-2024-04-09', 10, NULL, 30, NULL, NULL, NULL),
    ('gpt-4-turbo-preview', 10, NULL, 30, NULL, NULL, NULL),
    ('gpt-4.1', 2, 0.5, 8, 1, NULL, 4),
    ('gpt-4.1-2025-04-14', 2, 0.5, 8, 1, NULL, 4),
    ('gpt-4.1-mini', 0.4, 0.1, 1.6, 0.2, NULL, 0.8),
    ('gpt-4.1-mini-2025-04-14', 0.4, 0.1, 1.6, 0.2, NULL, 0.8),
    ('gpt-4.1-nano', 0.1, 0.025, 0.4, 0.05, NULL, 0.2),
    ('gpt-4.1-nano-2025-04-14', 0.1, 0.025, 0.4, 0.05, NULL, 0.2),
    ('gpt-4o', 2.5, 1.25, 10, 1.25, NULL, 5),
    ('gpt-4o-2024-05-13', 5, NULL, 15, 2.5, NULL, 7.5),
    ('gpt-4o-2024-08-06', 2.5, 1.25, 10, 1.25, NULL, 5),
    ('gpt-4o-2024-11-20', 2.5, 1.25, 10, 1.25, NULL, 5),
    ('gpt-4o-mini', 0.15, 0.075, 0.6, 0.075, NULL, 0.3),
    ('gpt-4o-mini-2024-07-18', 0.15, 0.075, 0.6, 0.075, NULL, 0.3),
    ('gpt-5', 1.25, 0.125, 10, NULL, NULL, NULL),
    ('gpt-5-2025-08-07', 1.25, 0.125, 10, NULL, NULL, NULL),
    ('gpt-5-chat', 1.25, 0.125, 10, NULL, NULL, NULL),
    ('gpt-5-chat-latest', 1.25, 0.125, 10, NULL, NULL, NULL),
    ('gpt-5-codex', 1.25, 0.125, 10, NULL, NULL, NULL),
    ('gpt-5-mini', 0.25, 0.025, 2, NULL, NULL, NULL),
    ('gpt-5-mini-2025-08-07', 0.25, 0.025, 2, NULL, NULL, NULL),
    ('gpt-5-nano', 0.05, 0.005, 0.4, NULL, NULL, NULL),
    ('gpt-5-nano-2025-08-07', 0.05, 0.005, 0.4, NULL, NULL, NULL),
    ('gpt-5-pro', 15, NULL, 120, 7.5, NULL, 60),
    ('gpt-5-pro-2025-10-06', 15, NULL, 120, 7.5, NULL, 60),
    ('gpt-5.1', 1.25, 0.125, 10, NULL, NULL, NULL),
    ('gpt-5.1-2025-11-13', 1.25, 0.125, 10, NULL, NULL, NULL),
    ('gpt-5.1-chat-latest', 1.25, 0.125, 10, NULL, NULL, NULL),
    ('gpt-5.1-codex', 1.25, 0.125, 10, NULL, NULL, NULL),
    ('gpt-5.1-codex-max', 1.25, 0.125, 10, NULL, NULL, NULL),
    ('gpt-5.1-codex-mini', 0.25, 0.025, 2, NULL, NULL, NULL),
    ('gpt-5.2', 1.75, 0.175, 14, NULL, NULL, NULL),
    ('gpt-5.2-2025-12-11', 1.75, 0.175, 14, NULL, NULL, NULL),
    ('gpt-5.2-chat-latest', 1.75, 0.175, 14, NULL, NULL, NULL),
    ('gpt-5.2-codex', 1.75, 0.175, 14, NULL, NULL, NULL),
    ('gpt-5.2-pro', 21, NULL, 168, NULL, NULL, NULL),
    ('gpt-5.2-pro-2025-12-11', 21, NULL, 168, NULL, NULL, NULL),
    ('gpt-5.3-chat-latest', 1.75, 0.175, 14, NULL, NULL, NULL),
    ('gpt-5.3-codex', 1.75, 0.175, 14, NULL, NULL, NULL),
    ('gpt-5.3-codex-spark', 1.75, 0.175, 14, NULL, NULL, NULL),
    ('gpt-5.4', 2.5, 0.25, 15, 1.25, NULL, 7.5),
    ('gpt-5.4-2026-03-05', 2.5, 0.25, 15, 1.25, NULL, 7.5),
    ('gpt-5.4-mini', 0.75, 0.075, 4.5, 0.375, NULL, 2.25),
    ('gpt-5.4-mini-2026-03-17', 0.75, 0.075, 4.5, 0.375, NULL, 2.25),
    ('gpt-5.4-nano', 0.2, 0.02, 1.25, 0.1, NULL, 0.625),
    ('gpt-5.4-nano-2026-03-17', 0.2, 0.02, 1.25, 0.1, NULL, 0.625),
    ('gpt-5.4-pro', 30, 3, 180, 15, NULL, 90),
    ('gpt-5.4-pro-2026-03-05', 30, 3, 180, 15, NULL, 90),
    ('gpt-5.5', 5, 0.5, 30, 2.5, NULL, 15),
    ('gpt-5.5-2026-04-23', 5, 0.5, 30, 2.5, NULL, 15),
    ('gpt-5.5-pro', 30, 3, 180, 15, NULL, 90),
    ('gpt-5.5-pro-2026-04-23', 30, 3, 180, 15, NULL, 90),
    ('gpt-5.6', 5, 0.5, 30, 2.5, NULL, 15),
    ('gpt-5.6-luna', 1, 0.1, 6, 0.5, NULL, 3),
    ('gpt-5.6-sol', 5, 0.5, 30, 2.5, NULL, 15),
    ('gpt-5.6-terra', 2.5, 0.25, 15, 1.25, NULL, 7.5),
    ('o1-2024-12-17', 15, 7.5, 60, NULL, NULL, NULL),
    ('o1-pro', 150, NULL, 600, 75, NULL, 300),
    ('o1-pro-2025-03-19', 150, NULL, 600, 75, NULL, 300),
    ('o3', 2, 0.5, 8, NULL, NULL, NULL),
    ('o3-2025-04-16', 2, 0.5, 8, NULL, NULL, NULL),
    ('o3-mini', 1.1, 0.55, 4.4, NULL, NULL, NULL),
    ('o3-mini-2025-01-31', 1.1, 0.55, 4.4, NULL, NULL, NULL),
    ('o3-pro', 20, NULL, 80, 10, NULL, 40),
    ('o3-pro-2025-06-10', 20, NULL, 80, 10, NULL, 40),
    ('o4-mini', 1.1, 0.275, 4.4, NULL, NULL, NULL),
    ('o4-mini-2025-04-16', 1.1, 0.275, 4.4, NULL, NULL, NULL),
    ('text-embedding-3-small', 0.02, NULL, NULL, NULL, NULL, NULL),
    ('text-embedding-3-large', 0.13, NULL, NULL, NULL, NULL, NULL),
    ('text-embedding-ada-002', 0.1, NULL, NULL, NULL, NULL, NULL)
);

-- What each batch cost at batch rates, from its `usage` (sent for batches created after
-- 2025-09-07): uncached input at the batch input rate, cached input at the cached batch
-- rate (or half the cached standard rate, or the batch input rate), output at the batch
-- output rate. A dated model name (gpt-4o-mini-2024-07-18) falls back to its base name when
-- only that is priced. An unknown model, or no usage, costs NULL, never 0.
CREATE VIEW batch_costs AS
WITH named AS (
    SELECT b.*,
           CASE WHEN EXISTS (SELECT 1 FROM model_prices WHERE model = b.model) THEN b.model
                WHEN b.model GLOB '*-[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]'
                THEN substr(b.model, 1, length(b.model) - 11)
           END AS priced_as
    FROM batches AS b
), rated AS (
    SELECT n.*,
           coalesce(p.batch_input, p.input * 0.5) AS input_rate,
           coalesce(p.batch_cached_input, p.cached_input * 0.5, p.batch_input, p.input * 0.5)
               AS cached_input_rate,
           coalesce(p.batch_output, p.output * 0.5) AS output_rate,
           p.model IS NOT NULL AS priced
    FROM named AS n LEFT JOIN model_prices AS p ON p.model = n.priced_as
), costed AS (
    SELECT r.*,
           CASE WHEN r.priced THEN
               (r.input_tokens - coalesce(r.cached_input_tokens, 0)) * r.input_rate / 1e6
               + coalesce(r.cached_input_tokens, 0) * r.cached_input_rate / 1e6
           END AS input_usd,
           CASE WHEN r.priced AND r.output_tokens IS NOT NULL THEN
               iif(r.output_tokens = 0, 0, r.output_tokens * r.output_rate / 1e6)
           END AS output_usd
    FROM rated AS r
)
SELECT id AS batch_id, created_at, status, endpoint, model,
       CASE WHEN priced THEN priced_as END AS priced_as,
       input_tokens, cached_input_tokens, output_tokens, reasoning_tokens, total_tokens,
       input_usd, output_usd, input_usd + output_usd AS usd
FROM costed;
