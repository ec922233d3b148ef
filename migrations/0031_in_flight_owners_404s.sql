-- A batch is gone from in_flight once its owner's route answered 404 on three of its runs
-- (not_found_by; not_found_runs where none is recorded, as before 0021): counting every
-- account's 404s (a gateway knowing only its own batches), the view hid a batch its owner
-- still refreshed in flight.
DROP VIEW in_flight;

CREATE VIEW in_flight AS
SELECT id AS batch_id, account, status, model, endpoint, created_at,
       CAST(strftime('%s', 'now') AS INTEGER) - created_at AS age_seconds,
       request_counts_completed, request_counts_failed, request_counts_total,
       round(100.0 * (coalesce(request_counts_completed, 0) + coalesce(request_counts_failed, 0))
             / nullif(request_counts_total, 0), 1) AS percent_done
FROM batches
WHERE (status IS NULL OR status NOT IN ('completed', 'failed', 'expired', 'cancelled'))
  AND CASE WHEN json_valid(not_found_by)
           THEN coalesce((SELECT value FROM json_each(not_found_by) WHERE key = account
                          AND typeof(value) = 'integer'), 0) < 3
           ELSE not_found_runs < 3 END
ORDER BY created_at;
