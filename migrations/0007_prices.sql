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

-- A model's batch rates: the explicit ones, or half the standard ones, as the Batch API
-- bills; cached input at the cached batch rate, half the cached standard rate, or the batch
-- input rate.
CREATE VIEW model_rates AS
SELECT model,
       coalesce(batch_input, input * 0.5) AS input_rate,
       coalesce(batch_cached_input, cached_input * 0.5, batch_input, input * 0.5)
           AS cached_input_rate,
       coalesce(batch_output, output * 0.5) AS output_rate
FROM model_prices;

-- What each batch cost at batch rates, from its `usage` (sent for batches created after
-- 2025-09-07). A dated model name (gpt-4o-mini-2024-07-18) is priced as its base name when
-- only that is priced. An unknown model, or no usage, costs NULL, never 0.
CREATE VIEW batch_costs AS
WITH named AS (
    SELECT b.*,
           CASE WHEN EXISTS (SELECT 1 FROM model_prices WHERE model = b.model) THEN b.model
                WHEN b.model GLOB '*-[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]'
                THEN substr(b.model, 1, length(b.model) - 11)
           END AS priced_as
    FROM batches AS b
)
SELECT n.id AS batch_id, n.created_at, n.status, n.endpoint, n.model, r.model AS priced_as,
       n.input_tokens, n.cached_input_tokens, n.output_tokens, n.reasoning_tokens,
       n.total_tokens,
       (n.input_tokens - coalesce(n.cached_input_tokens, 0)) * r.input_rate / 1e6
           + coalesce(n.cached_input_tokens, 0) * r.cached_input_rate / 1e6 AS input_usd,
       iif(n.output_tokens = 0, 0, n.output_tokens * r.output_rate / 1e6) AS output_usd,
       (n.input_tokens - coalesce(n.cached_input_tokens, 0)) * r.input_rate / 1e6
           + coalesce(n.cached_input_tokens, 0) * r.cached_input_rate / 1e6
           + iif(n.output_tokens = 0, 0, n.output_tokens * r.output_rate / 1e6) AS usd
FROM named AS n LEFT JOIN model_rates AS r ON r.model = n.priced_as;

-- What each stored request cost at batch rates, priced by the model its answer names.
CREATE VIEW request_costs AS
WITH named AS (
    SELECT q.*,
           CASE WHEN EXISTS (SELECT 1 FROM model_prices WHERE model = q.model) THEN q.model
                WHEN q.model GLOB '*-[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]'
                THEN substr(q.model, 1, length(q.model) - 11)
           END AS priced_as
    FROM batch_requests AS q
)
SELECT n.batch_id, n.custom_id, n.kind, n.status_code, n.model, r.model AS priced_as,
       n.input_tokens, n.cached_input_tokens, n.output_tokens, n.total_tokens,
       (n.input_tokens - coalesce(n.cached_input_tokens, 0)) * r.input_rate / 1e6
           + coalesce(n.cached_input_tokens, 0) * r.cached_input_rate / 1e6
           + iif(coalesce(n.output_tokens, 0) = 0, 0, n.output_tokens * r.output_rate / 1e6)
           AS usd
FROM named AS n LEFT JOIN model_rates AS r ON r.model = n.priced_as;

-- Per UTC day of creation, model and endpoint: batches, requests, tokens and what they cost
-- (`unpriced_batches` of them had no price or no usage: `usd` leaves them out).
CREATE VIEW daily_usage AS
SELECT date(c.created_at, 'unixepoch') AS day, c.model, c.endpoint,
       count(*) AS batches,
       sum(b.request_counts_total) AS requests,
       sum(b.request_counts_failed) AS failed_requests,
       sum(c.input_tokens) AS input_tokens,
       sum(c.cached_input_tokens) AS cached_input_tokens,
       sum(c.output_tokens) AS output_tokens,
       sum(c.total_tokens) AS total_tokens,
       sum(c.usd) AS usd,
       sum(c.usd IS NULL) AS unpriced_batches
FROM batch_costs AS c JOIN batches AS b ON b.id = c.batch_id
GROUP BY 1, 2, 3;

-- Batches not settled yet, oldest first: their age in seconds and how far along they are.
CREATE VIEW in_flight AS
SELECT id AS batch_id, status, model, endpoint, created_at,
       CAST(strftime('%s', 'now') AS INTEGER) - created_at AS age_seconds,
       request_counts_completed, request_counts_failed, request_counts_total,
       round(100.0 * (coalesce(request_counts_completed, 0) + coalesce(request_counts_failed, 0))
             / nullif(request_counts_total, 0), 1) AS percent_done
FROM batches
WHERE (status IS NULL OR status NOT IN ('completed', 'failed', 'expired', 'cancelled'))
  AND not_found_runs < 3
ORDER BY created_at;

-- Per model and endpoint: batches that failed, requests that failed, and the three most
-- frequent error codes of the stored request lines.
CREATE VIEW failure_rates AS
SELECT b.model, b.endpoint,
       count(*) AS batches,
       sum(b.status = 'failed') AS failed_batches,
       sum(b.request_counts_total) AS requests,
       sum(b.request_counts_failed) AS failed_requests,
       round(100.0 * sum(b.request_counts_failed) / nullif(sum(b.request_counts_total), 0), 2)
           AS failed_percent,
       (SELECT group_concat(code, ', ') FROM (
            SELECT coalesce(q.error_code, q.error_type, 'HTTP ' || q.status_code) AS code
            FROM batch_requests AS q JOIN batches AS x ON x.id = q.batch_id
            WHERE q.kind = 'error' AND x.model IS b.model AND x.endpoint IS b.endpoint
            GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 3)) AS top_error_codes
FROM batches AS b
GROUP BY b.model, b.endpoint;

-- One row per metadata key of each batch, so that a tag can be grouped by without JSON.
CREATE VIEW batch_metadata AS
SELECT b.id AS batch_id, m.key, m.value
FROM batches AS b,
     json_each(CASE WHEN json_valid(b.metadata) AND json_type(b.metadata) = 'object'
                    THEN b.metadata ELSE '{}' END) AS m;
