-- Several accounts in one database: the views that answer "what did it cost" and "what is
-- still running" say which account each row is of, and `daily_usage` sums per account.
-- A database of one account reads as before, with `account` = 'default'.

DROP VIEW daily_usage;
DROP VIEW batch_costs;
DROP VIEW in_flight;

CREATE VIEW batch_costs AS
WITH named AS (
    SELECT b.*,
           CASE WHEN EXISTS (SELECT 1 FROM model_prices WHERE model = b.model) THEN b.model
                WHEN b.model GLOB '*-[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]'
                THEN substr(b.model, 1, length(b.model) - 11)
           END AS priced_as
    FROM batches AS b
)
SELECT n.id AS batch_id, n.account, n.created_at, n.status, n.endpoint, n.model,
       r.model AS priced_as,
       n.input_tokens, n.cached_input_tokens, n.output_tokens, n.reasoning_tokens,
       n.total_tokens,
       (n.input_tokens - coalesce(n.cached_input_tokens, 0)) * r.input_rate / 1e6
           + coalesce(n.cached_input_tokens, 0) * r.cached_input_rate / 1e6 AS input_usd,
       iif(n.output_tokens = 0, 0, n.output_tokens * r.output_rate / 1e6) AS output_usd,
       (n.input_tokens - coalesce(n.cached_input_tokens, 0)) * r.input_rate / 1e6
           + coalesce(n.cached_input_tokens, 0) * r.cached_input_rate / 1e6
           + iif(n.output_tokens = 0, 0, n.output_tokens * r.output_rate / 1e6) AS usd
FROM named AS n LEFT JOIN model_rates AS r ON r.model = n.priced_as;

CREATE VIEW daily_usage AS
SELECT date(c.created_at, 'unixepoch') AS day, c.account, c.model, c.endpoint,
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
GROUP BY 1, 2, 3, 4;

CREATE VIEW in_flight AS
SELECT id AS batch_id, account, status, model, endpoint, created_at,
       CAST(strftime('%s', 'now') AS INTEGER) - created_at AS age_seconds,
       request_counts_completed, request_counts_failed, request_counts_total,
       round(100.0 * (coalesce(request_counts_completed, 0) + coalesce(request_counts_failed, 0))
             / nullif(request_counts_total, 0), 1) AS percent_done
FROM batches
WHERE (status IS NULL OR status NOT IN ('completed', 'failed', 'expired', 'cancelled'))
  AND not_found_runs < 3
ORDER BY created_at;
