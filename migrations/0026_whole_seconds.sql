-- Times a compatible API sent as floats were stored as sent (REAL): one with a fraction
-- was found by no search by creation time (the walk's stop in the head's second, visits
-- to a batch refused by id). They are stored as whole unix seconds now; those stored
-- before are made so, or NULL past 64 bits, as a sync stores them.
UPDATE batches SET created_at = CASE WHEN abs(created_at) < 9.2e18 THEN CAST(created_at AS INTEGER) END
    WHERE typeof(created_at) = 'real';
UPDATE batches SET in_progress_at = CASE WHEN abs(in_progress_at) < 9.2e18 THEN CAST(in_progress_at AS INTEGER) END
    WHERE typeof(in_progress_at) = 'real';
UPDATE batches SET expires_at = CASE WHEN abs(expires_at) < 9.2e18 THEN CAST(expires_at AS INTEGER) END
    WHERE typeof(expires_at) = 'real';
UPDATE batches SET finalizing_at = CASE WHEN abs(finalizing_at) < 9.2e18 THEN CAST(finalizing_at AS INTEGER) END
    WHERE typeof(finalizing_at) = 'real';
UPDATE batches SET completed_at = CASE WHEN abs(completed_at) < 9.2e18 THEN CAST(completed_at AS INTEGER) END
    WHERE typeof(completed_at) = 'real';
UPDATE batches SET failed_at = CASE WHEN abs(failed_at) < 9.2e18 THEN CAST(failed_at AS INTEGER) END
    WHERE typeof(failed_at) = 'real';
UPDATE batches SET expired_at = CASE WHEN abs(expired_at) < 9.2e18 THEN CAST(expired_at AS INTEGER) END
    WHERE typeof(expired_at) = 'real';
UPDATE batches SET cancelling_at = CASE WHEN abs(cancelling_at) < 9.2e18 THEN CAST(cancelling_at AS INTEGER) END
    WHERE typeof(cancelling_at) = 'real';
UPDATE batches SET cancelled_at = CASE WHEN abs(cancelled_at) < 9.2e18 THEN CAST(cancelled_at AS INTEGER) END
    WHERE typeof(cancelled_at) = 'real';
